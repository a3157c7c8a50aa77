/* Model files: half conversion, writer/reader round trips, every kind of
 * malformed or hostile file (each must give the right status and a message
 * naming the file and the problem), and the atomic write. */
#include "diat-train.h"
#include "testutil.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static char temp_dir[64];

/* A fresh path in the test's temporary folder. */
static const char *temp_path(const char *name)
{
    static char path[512];
    snprintf(path, sizeof path, "%s/%s", temp_dir, name);
    return path;
}

static void write_bytes(const char *path, const void *data, size_t length)
{
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL);
    if (!f) return;
    CHECK(fwrite(data, 1, length, f) == length);
    fclose(f);
}

/* Whole file into a malloc'd buffer; NULL when absent. */
static unsigned char *read_bytes(const char *path, size_t *length)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *data = malloc(size > 0 ? (size_t)size : 1);
    *length = fread(data, 1, (size_t)size, f);
    fclose(f);
    return data;
}

/* A safetensors image: length field, `header` verbatim, then `data`. */
static unsigned char *make_image(const char *header, const void *data, size_t data_length,
                                 size_t *length)
{
    size_t header_length = strlen(header);
    *length = 8 + header_length + data_length;
    unsigned char *image = malloc(*length);
    for (int b = 0; b < 8; b++) image[b] = (unsigned char)((uint64_t)header_length >> (8 * b));
    memcpy(image + 8, header, header_length);
    if (data_length) memcpy(image + 8 + header_length, data, data_length);
    return image;
}

static int count_temp_files(void)
{
    int found = 0;
    DIR *dir = opendir(temp_dir);
    if (!dir) return -1;
    for (struct dirent *e; (e = readdir(dir));)
        if (strstr(e->d_name, ".tmp-")) found++;
    closedir(dir);
    return found;
}

/* Opening `path` must fail with `code`, naming the file and containing
 * `needle`. */
static void expect_open_failure(const char *path, diat_status code, const char *needle)
{
    diat_safetensors *st = NULL;
    diat_error err = {0};
    diat_status status = diat_safetensors_open(path, &st, &err);
    CHECK_MSG(status == code, "%s: status %d, expected %d (%s)", needle, status, code, err.message);
    CHECK(st == NULL && err.code == status);
    CHECK_MSG(strstr(err.message, path) != NULL, "message does not name %s: %s", path, err.message);
    CHECK_MSG(strstr(err.message, needle) != NULL, "expected '%s' in: %s", needle, err.message);
    if (st) diat_safetensors_close(st);
}

/* A hostile image, from a file and from memory: both refused as FORMAT. */
static void expect_rejected(const char *file, const char *header, const void *data,
                            size_t data_length, const char *needle)
{
    size_t length;
    unsigned char *image = make_image(header, data, data_length, &length);
    const char *path = temp_path(file);
    write_bytes(path, image, length);
    expect_open_failure(path, DIAT_ERR_FORMAT, needle);

    diat_safetensors *st = NULL;
    diat_error err = {0};
    CHECK(diat_safetensors_parse(image, length, "in-memory-label", &st, &err) == DIAT_ERR_FORMAT);
    CHECK(st == NULL);
    CHECK_MSG(strstr(err.message, "in-memory-label") && strstr(err.message, needle), "%s",
              err.message);
    free(image);
    unlink(path);
}

/* A valid image that read_f32 must refuse with `needle`. */
static void expect_read_failure(const char *header, const void *data, size_t data_length,
                                const char *name, int ndim, const int64_t *shape,
                                const char *needle)
{
    size_t length;
    unsigned char *image = make_image(header, data, data_length, &length);
    diat_safetensors *st = NULL;
    diat_error err = {0};
    CHECK_MSG(diat_safetensors_parse(image, length, "bad-values.safetensors", &st, &err) == DIAT_OK,
              "%s", err.message);
    if (st) {
        float out[16];
        CHECK(diat_safetensors_read_f32(st, name, ndim, shape, out, &err) == DIAT_ERR_FORMAT);
        CHECK_MSG(strstr(err.message, "bad-values.safetensors") && strstr(err.message, needle) &&
                      strstr(err.message, name),
                  "expected '%s' and '%s' in: %s", needle, name, err.message);
    }
    diat_safetensors_close(st);
    free(image);
}

/* ---- half precision ----------------------------------------------------- */

static void test_half_exact_cases(void)
{
    CHECK(diat_f32_to_f16(0.0f) == 0x0000);
    CHECK(diat_f32_to_f16(-0.0f) == 0x8000);
    CHECK(diat_f32_to_f16(1.0f) == 0x3c00);
    CHECK(diat_f32_to_f16(-2.0f) == 0xc000);
    CHECK(diat_f32_to_f16(0.1f) == 0x2e66);
    CHECK(diat_f32_to_f16(1.0f / 3.0f) == 0x3555);
    CHECK(diat_f32_to_f16(65504.0f) == 0x7bff);
    CHECK(diat_f32_to_f16(65519.99f) == 0x7bff);
    CHECK(diat_f32_to_f16(65520.0f) == 0x7c00); /* the tie goes to even: infinity */
    CHECK(diat_f32_to_f16(1e10f) == 0x7c00);
    CHECK(diat_f32_to_f16(-1e10f) == 0xfc00);
    CHECK(diat_f32_to_f16(INFINITY) == 0x7c00);
    CHECK(diat_f32_to_f16(-INFINITY) == 0xfc00);
    uint16_t nan16 = diat_f32_to_f16(NAN);
    CHECK((nan16 & 0x7c00) == 0x7c00 && (nan16 & 0x03ff) != 0);
    /* Ties to even between normals: 1 + 2^-11 is half-way 1 and 1 + 2^-10. */
    CHECK(diat_f32_to_f16(1.0f + 0x1p-11f) == 0x3c00);
    CHECK(diat_f32_to_f16(1.0f + 3 * 0x1p-11f) == 0x3c02);
    CHECK(diat_f32_to_f16(0x1p-14f) == 0x0400);            /* smallest normal */
    CHECK(diat_f32_to_f16(0x1p-24f) == 0x0001);            /* smallest subnormal */
    CHECK(diat_f32_to_f16(0x1p-25f) == 0x0000);            /* tie to even: zero */
    CHECK(diat_f32_to_f16(0x1.0002p-25f) == 0x0001);       /* just above the tie */
    CHECK(diat_f32_to_f16(1.5f * 0x1p-24f) == 0x0002);     /* tie, odd -> even */
    CHECK(diat_f32_to_f16(2.5f * 0x1p-24f) == 0x0002);     /* tie, even stays */
    CHECK(diat_f32_to_f16(-1023.5f * 0x1p-24f) == 0x8400); /* rounds into the normals */
    CHECK(diat_f32_to_f16(1e-30f) == 0x0000);
    CHECK(diat_f16_to_f32(0x0001) == 0x1p-24f);
    CHECK(diat_f16_to_f32(0x03ff) == 1023 * 0x1p-24f);
    CHECK(diat_f16_to_f32(0x8000) == 0.0f && signbit(diat_f16_to_f32(0x8000)));
    CHECK(isinf(diat_f16_to_f32(0xfc00)) && diat_f16_to_f32(0xfc00) < 0);
    CHECK(isnan(diat_f16_to_f32(0x7e00)));
}

static void test_half_every_value_round_trips(void)
{
    int wrong = 0;
    for (uint32_t h = 0; h <= 0xffff; h++) {
        float f = diat_f16_to_f32((uint16_t)h);
        uint16_t back = diat_f32_to_f16(f);
        int is_nan = (h & 0x7c00) == 0x7c00 && (h & 0x03ff);
        if (is_nan ? !isnan(f) || (back & 0x7c00) != 0x7c00 || !(back & 0x3ff) : back != h) wrong++;
    }
    CHECK_MSG(wrong == 0, "%d half values do not round trip", wrong);
}

#ifdef __FLT16_MAX__
/* Against the compiler's own conversion, over a spread of float patterns. */
static void test_half_matches_compiler(void)
{
    int wrong = 0;
    for (uint64_t bits = 0; bits <= 0xffffffffu; bits += 4093) {
        uint32_t b = (uint32_t)bits;
        float f;
        memcpy(&f, &b, sizeof f);
        if (isnan(f)) continue;
        _Float16 reference = (_Float16)f;
        uint16_t expected;
        memcpy(&expected, &reference, sizeof expected);
        if (diat_f32_to_f16(f) != expected && wrong++ < 5)
            fprintf(stderr, "f32 %08x -> f16 %04x, expected %04x\n", b, diat_f32_to_f16(f),
                    expected);
    }
    CHECK_MSG(wrong == 0, "%d conversions differ from _Float16", wrong);
}
#endif

/* ---- round trips ------------------------------------------------------- */

static diat_safetensors *save_and_open(diat_st_writer *w, const char *file)
{
    diat_error err = {0};
    const char *path = temp_path(file);
    CHECK_MSG(diat_st_writer_save(w, path, &err) == DIAT_OK, "%s", err.message);
    diat_safetensors *st = NULL;
    CHECK_MSG(diat_safetensors_open(path, &st, &err) == DIAT_OK, "%s", err.message);
    return st;
}

static void test_round_trip_f32(void)
{
    const float values[6] = {-7.25f, 1e-30f, 3.4e38f, 1e-45f /* float subnormal */, 0.0f, 42.0f};
    const int64_t shape23[2] = {2, 3}, shape_empty[2] = {0, 5};
    const float scalar = -1.5f;
    diat_error err = {0};
    diat_st_writer *w = diat_st_writer_new();
    CHECK(diat_st_writer_add(w, "T.down1.weight", DIAT_DTYPE_F32, 2, shape23, values, &err) ==
          DIAT_OK);
    CHECK(diat_st_writer_add(w, "scalar", DIAT_DTYPE_F32, 0, NULL, &scalar, &err) == DIAT_OK);
    CHECK(diat_st_writer_add(w, "empty", DIAT_DTYPE_F32, 2, shape_empty, NULL, &err) == DIAT_OK);
    diat_safetensors *st = save_and_open(w, "f32.safetensors");
    diat_st_writer_free(w);
    if (!st) return;

    CHECK(diat_safetensors_count(st) == 3);
    CHECK(strcmp(diat_safetensors_at(st, 0)->name, "T.down1.weight") == 0); /* added order */
    CHECK(strcmp(diat_safetensors_at(st, 2)->name, "empty") == 0);
    CHECK(diat_safetensors_at(st, 3) == NULL);
    const diat_st_tensor *t = diat_safetensors_find(st, "T.down1.weight");
    CHECK(t && t->dtype == DIAT_DTYPE_F32 && t->ndim == 2 && t->nbytes == 24);
    CHECK(diat_safetensors_find(st, "absent") == NULL);
    float out[6] = {0};
    CHECK(diat_safetensors_read_f32(st, "T.down1.weight", 2, shape23, out, &err) == DIAT_OK);
    CHECK(memcmp(out, values, sizeof values) == 0); /* bit-exact */
    float one = 0;
    CHECK(diat_safetensors_read_f32(st, "scalar", 0, NULL, &one, &err) == DIAT_OK);
    CHECK(one == scalar);
    CHECK(diat_safetensors_read_f32(st, "empty", 2, shape_empty, out, &err) == DIAT_OK);
    CHECK(diat_safetensors_metadata_count(st) == 0);
    diat_safetensors_close(st);
}

static void test_round_trip_f16_and_alignment(void)
{
    const float values[7] = {1.0f, -2.5f, 65504.0f, 6e-8f, 1e-5f, 0.1f, -300.7f};
    const int64_t shape7[1] = {7}, shape4[1] = {4};
    const float f32[4] = {1, 2, 3, 4};
    diat_error err = {0};
    diat_st_writer *w = diat_st_writer_new();
    /* An odd-sized F16 tensor first: the F32 one after it must stay aligned. */
    CHECK(diat_st_writer_add(w, "half", DIAT_DTYPE_F16, 1, shape7, values, &err) == DIAT_OK);
    CHECK(diat_st_writer_add(w, "single", DIAT_DTYPE_F32, 1, shape4, f32, &err) == DIAT_OK);
    diat_safetensors *st = save_and_open(w, "f16.safetensors");
    diat_st_writer_free(w);
    if (!st) return;
    const diat_st_tensor *half = diat_safetensors_find(st, "half");
    const diat_st_tensor *single = diat_safetensors_find(st, "single");
    CHECK(half && half->dtype == DIAT_DTYPE_F16 && half->nbytes == 14);
    CHECK(single && (uintptr_t)single->data % 4 == 0);
    float out[7];
    CHECK(diat_safetensors_read_f32(st, "half", 1, shape7, out, &err) == DIAT_OK);
    for (int i = 0; i < 7; i++) {
        CHECK(out[i] == diat_f16_to_f32(diat_f32_to_f16(values[i])));
        /* Half precision: 11 significant bits, or 2^-25 absolute for subnormals. */
        CHECK_NEAR(out[i], values[i], fmax(fabs(values[i]) * 0x1p-11, 0x1p-25));
    }
    diat_safetensors_close(st);

    /* Header padded with spaces to a multiple of 8 (the convention). */
    size_t length;
    unsigned char *image = read_bytes(temp_path("f16.safetensors"), &length);
    CHECK(image && length > 8);
    if (!image) return;
    uint64_t header_length = 0;
    for (int b = 7; b >= 0; b--) header_length = header_length << 8 | image[b];
    CHECK(header_length % 8 == 0 && 8 + header_length <= length);
    CHECK(length == 8 + header_length + 14 + 16);
    CHECK(image[8] == '{');
    free(image);
}

static void test_metadata_round_trip(void)
{
    diat_error err = {0};
    diat_st_writer *w = diat_st_writer_new();
    CHECK(diat_st_writer_set_metadata(w, "format", "diat-model", &err) == DIAT_OK);
    CHECK(diat_st_writer_set_metadata(w, "label", "Remove eyeglasses", &err) == DIAT_OK);
    CHECK(diat_st_writer_set_metadata(w, "empty", "", &err) == DIAT_OK);
    CHECK(diat_st_writer_set_metadata(w, "label", "Brille entfernen \xc3\xa4 \"q\"", &err) ==
          DIAT_OK);
    CHECK(diat_st_writer_set_metadata(w, "bad", "\xff\xfe", &err) == DIAT_ERR_ARGUMENT);
    diat_safetensors *st = save_and_open(w, "meta.safetensors");
    diat_st_writer_free(w);
    if (!st) return;
    CHECK(diat_safetensors_count(st) == 0);
    CHECK(diat_safetensors_metadata_count(st) == 3);
    const char *key, *value;
    diat_safetensors_metadata_at(st, 1, &key, &value); /* replacing kept the position */
    CHECK(strcmp(key, "label") == 0 && strcmp(value, "Brille entfernen \xc3\xa4 \"q\"") == 0);
    CHECK(strcmp(diat_safetensors_metadata(st, "format"), "diat-model") == 0);
    CHECK(strcmp(diat_safetensors_metadata(st, "empty"), "") == 0);
    CHECK(diat_safetensors_metadata(st, "absent") == NULL);
    diat_safetensors_metadata_at(st, 3, &key, &value);
    CHECK(key == NULL && value == NULL);
    diat_safetensors_close(st);
}

static void test_u8_tensors(void)
{
    const unsigned char q[4] = {0, 1, 128, 255};
    const int64_t shape[1] = {4};
    size_t length;
    unsigned char *image =
        make_image("{\"__metadata__\":{\"q.scale\":\"0.5\",\"q.min\":\"-2\"},"
                   "\"q\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]}}",
                   q, sizeof q, &length);
    diat_safetensors *st = NULL;
    diat_error err = {0};
    CHECK(diat_safetensors_parse(image, length, "u8", &st, &err) == DIAT_OK);
    float out[4];
    CHECK(st && diat_safetensors_read_f32(st, "q", 1, shape, out, &err) == DIAT_OK);
    CHECK(out[0] == -2.0f && out[1] == -1.5f && out[2] == 62.0f && out[3] == 125.5f);
    diat_safetensors_close(st);
    free(image);

    expect_read_failure("{\"q\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]}}", q, 4,
                        "q", 1, shape, "'q.scale'");
    expect_read_failure("{\"__metadata__\":{\"q.scale\":\"1\",\"q.min\":\"zero\"},"
                        "\"q\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]}}",
                        q, 4, "q", 1, shape, "'q.min'");
    expect_read_failure("{\"__metadata__\":{\"q.scale\":\"1e39\",\"q.min\":\"3e38\"},"
                        "\"q\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]}}",
                        q, 4, "q", 1, shape, "beyond the float range");
}

static void test_read_checks_shape_and_name(void)
{
    const float values[6] = {0};
    const int64_t shape23[2] = {2, 3}, shape32[2] = {3, 2}, shape6[1] = {6};
    diat_error err = {0};
    diat_st_writer *w = diat_st_writer_new();
    CHECK(diat_st_writer_add(w, "w", DIAT_DTYPE_F32, 2, shape23, values, &err) == DIAT_OK);
    diat_safetensors *st = save_and_open(w, "shape.safetensors");
    diat_st_writer_free(w);
    if (!st) return;
    float out[6];
    CHECK(diat_safetensors_read_f32(st, "w", 2, shape32, out, &err) == DIAT_ERR_FORMAT);
    CHECK_MSG(strstr(err.message, "'w'") && strstr(err.message, "shape.safetensors") &&
                  strstr(err.message, "has shape [2,3] but [3,2] was expected"),
              "%s", err.message);
    CHECK(diat_safetensors_read_f32(st, "w", 1, shape6, out, &err) == DIAT_ERR_FORMAT);
    CHECK(strstr(err.message, "[2,3] but [6] was expected") != NULL);
    CHECK(diat_safetensors_read_f32(st, "T.up5.weight", 2, shape23, out, &err) == DIAT_ERR_FORMAT);
    CHECK_MSG(strstr(err.message, "shape.safetensors has no tensor 'T.up5.weight'"), "%s",
              err.message);
    CHECK(diat_safetensors_read_f32(st, "w", 2, shape23, NULL, &err) == DIAT_ERR_ARGUMENT);
    CHECK(diat_safetensors_read_f32(st, "w", 9, shape23, out, &err) == DIAT_ERR_ARGUMENT);
    diat_safetensors_close(st);
}

static void test_writer_refuses_bad_tensors(void)
{
    const float values[2] = {NAN, 1.0f}, big[2] = {1.0f, 70000.0f};
    const int64_t shape[1] = {2}, negative[1] = {-2};
    diat_error err = {0};
    diat_st_writer *w = diat_st_writer_new();
    CHECK(diat_st_writer_add(w, "nan", DIAT_DTYPE_F32, 1, shape, values, &err) ==
          DIAT_ERR_ARGUMENT);
    CHECK(strstr(err.message, "'nan'") && strstr(err.message, "element 0"));
    CHECK(diat_st_writer_add(w, "big", DIAT_DTYPE_F16, 1, shape, big, &err) == DIAT_ERR_ARGUMENT);
    CHECK(strstr(err.message, "F16") && strstr(err.message, "element 1"));
    const float edge[2] = {65519.0f, -65504.0f}; /* both round to +-65504 */
    CHECK(diat_st_writer_add(w, "edge", DIAT_DTYPE_F16, 1, shape, edge, &err) == DIAT_OK);
    CHECK(diat_st_writer_add(w, "big", DIAT_DTYPE_F32, 1, shape, big, &err) == DIAT_OK);
    CHECK(diat_st_writer_add(w, "big", DIAT_DTYPE_F32, 1, shape, big, &err) == DIAT_ERR_ARGUMENT);
    CHECK(strstr(err.message, "twice") != NULL);
    CHECK(diat_st_writer_add(w, "u8", DIAT_DTYPE_U8, 1, shape, big, &err) == DIAT_ERR_ARGUMENT);
    CHECK(diat_st_writer_add(w, "__metadata__", DIAT_DTYPE_F32, 1, shape, big, &err) ==
          DIAT_ERR_ARGUMENT);
    CHECK(diat_st_writer_add(w, "neg", DIAT_DTYPE_F32, 1, negative, big, &err) ==
          DIAT_ERR_ARGUMENT);
    CHECK(diat_st_writer_add(w, "null", DIAT_DTYPE_F32, 1, shape, NULL, &err) == DIAT_ERR_ARGUMENT);
    diat_st_writer_free(w);
    diat_st_writer_free(NULL);
    diat_safetensors_close(NULL);
}

/* ---- hostile and malformed files ---------------------------------------- */

static void test_truncated_files(void)
{
    const char *path = temp_path("empty.safetensors");
    write_bytes(path, "", 0);
    expect_open_failure(path, DIAT_ERR_FORMAT, "is truncated: it is 0 bytes long");
    write_bytes(path, "\x10\0\0\0\0", 5);
    expect_open_failure(path, DIAT_ERR_FORMAT, "is truncated: it is 5 bytes long");
    unlink(path);

    /* The header claims 1000 bytes; fewer follow. */
    size_t length;
    unsigned char *image = make_image("{}", NULL, 0, &length);
    image[0] = 0xe8, image[1] = 0x03;
    path = temp_path("short-header.safetensors");
    write_bytes(path, image, length);
    expect_open_failure(path, DIAT_ERR_FORMAT, "goes beyond the end of the file");
    /* A header length beyond every file there is. */
    memset(image, 0xff, 8);
    write_bytes(path, image, length);
    expect_open_failure(path, DIAT_ERR_FORMAT, "absurd");
    unlink(path);
    free(image);

    /* Tensor data cut off: the file ends inside the tensor. */
    const float data[2] = {1, 2};
    expect_rejected("cut.safetensors",
                    "{\"w\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", data, 8,
                    "extends past the end of the data area (8 bytes)");
}

/* A 100 MB header length on a (sparse) file that really is that long: it
 * must be refused from the length field alone, without reading or
 * allocating the header. */
static void test_absurd_header_rejected_quickly(void)
{
    const uint64_t header_length = 100000001;
    const char *path = temp_path("absurd.safetensors");
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    CHECK(fd >= 0);
    if (fd < 0) return;
    unsigned char field[8];
    for (int b = 0; b < 8; b++) field[b] = (unsigned char)(header_length >> (8 * b));
    CHECK(write(fd, field, 8) == 8);
    CHECK(ftruncate(fd, (off_t)(8 + header_length + 64)) == 0);
    close(fd);

    struct rusage before, after;
    struct timespec start, end;
    getrusage(RUSAGE_SELF, &before);
    clock_gettime(CLOCK_MONOTONIC, &start);
    expect_open_failure(path, DIAT_ERR_FORMAT, "100000001 bytes, which is absurd");
    clock_gettime(CLOCK_MONOTONIC, &end);
    getrusage(RUSAGE_SELF, &after);
    double seconds =
        (double)(end.tv_sec - start.tv_sec) + 1e-9 * (double)(end.tv_nsec - start.tv_nsec);
    CHECK_MSG(seconds < 0.5, "took %.3f s", seconds);
    CHECK_MSG(after.ru_maxrss - before.ru_maxrss < 32 * 1024, "peak memory grew by %ld KiB",
              after.ru_maxrss - before.ru_maxrss);
    unlink(path);
}

static void test_bad_headers(void)
{
    expect_rejected("json.safetensors", "{\"w\": ", NULL, 0, "not valid JSON (line 1, column 6");
    expect_rejected("zero-length.safetensors", "", NULL, 0, "not valid JSON");
    expect_rejected("trailing.safetensors", "{} x", NULL, 0, "not valid JSON");
    expect_rejected("array.safetensors", "[1, 2]", NULL, 0, "not a JSON object");
    expect_rejected("nul-key.safetensors", "{\"a\\u0000b\": 1}", NULL, 0, "not valid JSON");
    expect_rejected("duplicate.safetensors",
                    "{\"w\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,4]},"
                    "\"w\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[4,8]}}",
                    "12345678", 8, "duplicate");
    expect_rejected("meta-duplicate.safetensors", "{\"__metadata__\":{\"a\":\"1\",\"a\":\"2\"}}",
                    NULL, 0, "duplicate");
    expect_rejected("meta-array.safetensors", "{\"__metadata__\":[\"a\"]}", NULL, 0,
                    "__metadata__ entry that is not a JSON object");
    expect_rejected("meta-number.safetensors", "{\"__metadata__\":{\"width\":24}}", NULL, 0,
                    "metadata entry 'width' whose value is not a string");
}

/* One tensor entry `entry` for "w" with 16 data bytes. */
static void expect_bad_entry(const char *entry, const char *needle)
{
    char header[512];
    snprintf(header, sizeof header, "{\"w\":%s}", entry);
    expect_rejected("entry.safetensors", header, "0123456789abcdef", 16, needle);
}

static void test_bad_tensor_entries(void)
{
    expect_bad_entry("5", "tensor 'w' whose entry is not a JSON object");
    expect_bad_entry("{\"shape\":[4],\"data_offsets\":[0,16]}", "tensor 'w' without a dtype");
    expect_bad_entry("{\"dtype\":7,\"shape\":[4],\"data_offsets\":[0,16]}", "without a dtype");
    expect_bad_entry("{\"dtype\":\"Q7\",\"shape\":[4],\"data_offsets\":[0,16]}",
                     "unknown dtype 'Q7'");
    expect_bad_entry("{\"dtype\":\"I64\",\"shape\":[2],\"data_offsets\":[0,16]}",
                     "dtype I64, which is not supported");
    expect_bad_entry("{\"dtype\":\"BF16\",\"shape\":[8],\"data_offsets\":[0,16]}",
                     "dtype BF16, which is not supported");
    expect_bad_entry("{\"dtype\":\"F32\",\"data_offsets\":[0,16]}", "without a shape array");
    expect_bad_entry("{\"dtype\":\"F32\",\"shape\":4,\"data_offsets\":[0,16]}",
                     "without a shape array");
    expect_bad_entry("{\"dtype\":\"F32\",\"shape\":[-4],\"data_offsets\":[0,16]}",
                     "not a list of non-negative integers");
    expect_bad_entry("{\"dtype\":\"F32\",\"shape\":[4.0],\"data_offsets\":[0,16]}",
                     "not a list of non-negative integers");
    expect_bad_entry("{\"dtype\":\"F32\",\"shape\":[\"4\"],\"data_offsets\":[0,16]}",
                     "not a list of non-negative integers");
    expect_bad_entry("{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,4],\"data_offsets\":[0,16]}",
                     "9 dimensions (at most 8");
    expect_bad_entry("{\"dtype\":\"U8\",\"shape\":[4294967296,4294967296,4294967296],"
                     "\"data_offsets\":[0,16]}",
                     "element count overflows");
    expect_bad_entry("{\"dtype\":\"U8\",\"shape\":[4294967296,4294967296,4294967296,0],"
                     "\"data_offsets\":[0,0]}",
                     "element count overflows");
    expect_bad_entry("{\"dtype\":\"F32\",\"shape\":[4611686018427387904],"
                     "\"data_offsets\":[0,16]}",
                     "byte size overflows");
    expect_bad_entry("{\"dtype\":\"F32\",\"shape\":[4]}", "without valid data_offsets");
    expect_bad_entry("{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0]}",
                     "without valid data_offsets");
    expect_bad_entry("{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16,32]}",
                     "without valid data_offsets");
    expect_bad_entry("{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,\"16\"]}",
                     "without valid data_offsets");
    expect_bad_entry("{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[-16,0]}",
                     "without valid data_offsets");
    expect_bad_entry("{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":{\"a\":1}}",
                     "without valid data_offsets");
    expect_bad_entry("{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[12,8]}",
                     "data_offsets [12, 8] end before they begin");
    expect_bad_entry("{\"dtype\":\"F32\",\"shape\":[100],\"data_offsets\":[0,400]}",
                     "(bytes 0 to 400) extends past the end of the data area (16 bytes)");
    expect_bad_entry("{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,"
                     "9223372036854775807]}",
                     "extends past the end of the data area");
    expect_bad_entry("{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,12]}",
                     "of 12 bytes, but shape [2] of F32 needs 8 bytes");
    expect_bad_entry("{\"dtype\":\"F16\",\"shape\":[2,3],\"data_offsets\":[0,16]}",
                     "of 16 bytes, but shape [2,3] of F16 needs 12 bytes");
}

static void test_overlapping_tensors(void)
{
    expect_rejected("overlap.safetensors",
                    "{\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]},"
                    "\"c\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[4,4]},"
                    "\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,12]}}",
                    "0123456789abcdef", 16, "tensors 'a' and 'b' whose bytes overlap");
    expect_rejected("same.safetensors",
                    "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                    "\"b\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]}}",
                    "0123", 4, "overlap");
    /* Gaps, an empty tensor inside another one's range and an F32 tensor at
     * an odd offset are fine (the reader never dereferences a float*). */
    size_t length;
    unsigned char *image =
        make_image("{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
                   "\"e\":{\"dtype\":\"F32\",\"shape\":[0,3],\"data_offsets\":[1,1]},"
                   "\"f\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[3,7]}}",
                   "\x01\x02\x03\x00\x00\xc0\x3f\x04", 8, &length);
    diat_safetensors *st = NULL;
    diat_error err = {0};
    CHECK_MSG(diat_safetensors_parse(image, length, "gaps", &st, &err) == DIAT_OK, "%s",
              err.message);
    float value = 0;
    const int64_t one[1] = {1};
    CHECK(st && diat_safetensors_read_f32(st, "f", 1, one, &value, &err) == DIAT_OK);
    CHECK(value == 1.5f);
    diat_safetensors_close(st);
    free(image);
}

static void test_non_finite_values(void)
{
    const int64_t shape[1] = {2};
    const float nan_data[2] = {1.0f, NAN}, inf_data[2] = {-INFINITY, 1.0f};
    const char *f32 = "{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
    expect_read_failure(f32, nan_data, 8, "w", 1, shape,
                        "non-finite value (NaN) in tensor 'w' "
                        "at element 1");
    expect_read_failure(f32, inf_data, 8, "w", 1, shape, "(-inf) in tensor 'w' at element 0");
    const unsigned char half_inf[4] = {0x00, 0x3c, 0x00, 0x7c}; /* 1.0, +inf */
    expect_read_failure("{\"w\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[0,4]}}",
                        half_inf, 4, "w", 1, shape, "(+inf) in tensor 'w' at element 1");
}

static void test_hostile_names_and_paths(void)
{
    /* Control characters in a name must not reach the user's terminal. */
    expect_rejected("escape.safetensors", "{\"\\u001b[2J\":{\"dtype\":\"Q\"}}", NULL, 0,
                    "tensor '?[2J'");
    /* A long path keeps its file name. */
    char name[220];
    memset(name, 'd', sizeof name);
    strcpy(name + 180, "-the-file-name.safetensors");
    const char *path = temp_path(name);
    write_bytes(path, "12", 2);
    diat_safetensors *st = NULL;
    diat_error err = {0};
    CHECK(diat_safetensors_open(path, &st, &err) == DIAT_ERR_FORMAT);
    CHECK_MSG(strstr(err.message, "...") && strstr(err.message, "-the-file-name.safetensors") &&
                  strstr(err.message, "truncated"),
              "%s", err.message);
    unlink(path);

    expect_open_failure(temp_path("does-not-exist.safetensors"), DIAT_ERR_IO, "Cannot open");
    expect_open_failure(temp_dir, DIAT_ERR_IO, "not a regular file");
}

/* ---- atomic writes ------------------------------------------------------- */

static diat_st_writer *small_model(float value, size_t count)
{
    float *data = malloc(count * sizeof *data);
    for (size_t i = 0; i < count; i++) data[i] = value;
    const int64_t shape[1] = {(int64_t)count};
    diat_error err = {0};
    diat_st_writer *w = diat_st_writer_new();
    CHECK(diat_st_writer_add(w, "w", DIAT_DTYPE_F32, 1, shape, data, &err) == DIAT_OK);
    free(data);
    return w;
}

/* `path` still holds exactly `expected`. */
static void check_unchanged(const char *path, const unsigned char *expected, size_t length)
{
    size_t now_length = 0;
    unsigned char *now = read_bytes(path, &now_length);
    CHECK_MSG(now && now_length == length && memcmp(now, expected, length) == 0,
              "%s was modified by a failed save", path);
    free(now);
}

static void test_save_replaces_atomically(void)
{
    char path[512];
    snprintf(path, sizeof path, "%s", temp_path("model.safetensors"));
    diat_error err = {0};
    diat_st_writer *first = small_model(1.0f, 4);
    CHECK(diat_st_writer_save(first, path, &err) == DIAT_OK);
    struct stat info;
    CHECK(stat(path, &info) == 0 && (info.st_mode & 0777) == 0644);
    CHECK(chmod(path, 0640) == 0);
    diat_st_writer *second = small_model(2.0f, 4);
    CHECK(diat_st_writer_save(second, path, &err) == DIAT_OK);
    CHECK(stat(path, &info) == 0 && (info.st_mode & 0777) == 0640); /* mode kept */
    diat_safetensors *st = NULL;
    float out[4] = {0};
    const int64_t shape[1] = {4};
    CHECK(diat_safetensors_open(path, &st, &err) == DIAT_OK);
    CHECK(st && diat_safetensors_read_f32(st, "w", 1, shape, out, &err) == DIAT_OK);
    CHECK(out[3] == 2.0f);
    diat_safetensors_close(st);
    CHECK(count_temp_files() == 0);

    size_t length;
    unsigned char *original = read_bytes(path, &length);

    /* The target is a folder: the rename fails, the temporary file goes. */
    const char *folder = temp_path("a-folder.safetensors");
    CHECK(mkdir(folder, 0755) == 0);
    CHECK(diat_st_writer_save(first, folder, &err) == DIAT_ERR_IO);
    CHECK_MSG(strstr(err.message, "Cannot replace model file") && strstr(err.message, folder) &&
                  strstr(err.message, strerror(EISDIR)),
              "%s", err.message);
    CHECK(count_temp_files() == 0);
    rmdir(folder);

    /* A missing folder: no temporary file can be made. */
    const char *nowhere = temp_path("missing/model.safetensors");
    CHECK(diat_st_writer_save(first, nowhere, &err) == DIAT_ERR_IO);
    CHECK_MSG(strstr(err.message, nowhere) && strstr(err.message, strerror(ENOENT)), "%s",
              err.message);

    /* The disk "fills up" half-way (a file size limit, which binds root too). */
    diat_st_writer *big = small_model(3.0f, 64 * 1024);
    struct rlimit saved, limited;
    getrlimit(RLIMIT_FSIZE, &saved);
    limited = saved;
    limited.rlim_cur = 16 * 1024;
    void (*previous)(int) = signal(SIGXFSZ, SIG_IGN);
    CHECK(setrlimit(RLIMIT_FSIZE, &limited) == 0);
    CHECK(diat_st_writer_save(big, path, &err) == DIAT_ERR_IO);
    setrlimit(RLIMIT_FSIZE, &saved);
    signal(SIGXFSZ, previous);
    CHECK_MSG(strstr(err.message, "Cannot write model file") && strstr(err.message, path) &&
                  strstr(err.message, strerror(EFBIG)),
              "%s", err.message);
    check_unchanged(path, original, length);
    CHECK(count_temp_files() == 0);

    /* An unwritable folder (root may write anywhere, so only as a user). */
    if (geteuid() != 0) {
        CHECK(chmod(temp_dir, 0555) == 0);
        CHECK(diat_st_writer_save(big, path, &err) == DIAT_ERR_IO);
        chmod(temp_dir, 0755);
        CHECK_MSG(strstr(err.message, path) && strstr(err.message, strerror(EACCES)), "%s",
                  err.message);
        check_unchanged(path, original, length);
    } else {
        printf("note: running as root, the read-only folder case is covered by the size limit\n");
    }
    CHECK(count_temp_files() == 0);

    free(original);
    unlink(path);
    diat_st_writer_free(first);
    diat_st_writer_free(second);
    diat_st_writer_free(big);
}

int main(void)
{
    snprintf(temp_dir, sizeof temp_dir, "/tmp/diat-test-st-XXXXXX");
    if (!mkdtemp(temp_dir)) {
        perror("mkdtemp");
        return 1;
    }
    RUN_TEST(test_half_exact_cases);
    RUN_TEST(test_half_every_value_round_trips);
#ifdef __FLT16_MAX__
    RUN_TEST(test_half_matches_compiler);
#endif
    RUN_TEST(test_round_trip_f32);
    RUN_TEST(test_round_trip_f16_and_alignment);
    RUN_TEST(test_metadata_round_trip);
    RUN_TEST(test_u8_tensors);
    RUN_TEST(test_read_checks_shape_and_name);
    RUN_TEST(test_writer_refuses_bad_tensors);
    RUN_TEST(test_truncated_files);
    RUN_TEST(test_absurd_header_rejected_quickly);
    RUN_TEST(test_bad_headers);
    RUN_TEST(test_bad_tensor_entries);
    RUN_TEST(test_overlapping_tensors);
    RUN_TEST(test_non_finite_values);
    RUN_TEST(test_hostile_names_and_paths);
    RUN_TEST(test_save_replaces_atomically);

    static const char *const leftovers[] = {"f32.safetensors", "f16.safetensors",
                                            "meta.safetensors", "shape.safetensors"};
    for (size_t i = 0; i < sizeof leftovers / sizeof leftovers[0]; i++)
        unlink(temp_path(leftovers[i]));
    CHECK_MSG(rmdir(temp_dir) == 0, "%s not empty after the tests", temp_dir);
    return TEST_SUMMARY();
}

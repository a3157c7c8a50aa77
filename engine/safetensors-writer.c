/* Writing safetensors model files.
 *
 * Tensors and metadata are collected in memory (converted to their stored
 * dtype as they arrive), then written in one go. The write is atomic: a
 * temporary file in the target's folder is filled, flushed to disk and
 * renamed over the target, so a crash or a full disk never leaves a half
 * written model where a good one was.
 *
 * The header lists tensors in the order they were added. In the data area
 * the F32 tensors come first, then the F16 ones, with no gaps (as the
 * reference implementation requires); as the data area starts on a multiple
 * of 8 this keeps every tensor aligned to its element size.
 */
#include "diat-train.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define F16_INFINITY 0x7c00u

typedef struct stored_tensor {
    char *name;
    diat_dtype dtype;
    int ndim;
    int64_t shape[DIAT_MAX_DIMS];
    unsigned char *bytes; /* little-endian, as stored in the file */
    size_t nbytes;
} stored_tensor;

typedef struct metadata_entry {
    char *key, *value;
} metadata_entry;

struct diat_st_writer {
    stored_tensor *tensors;
    size_t tensor_count, tensor_capacity;
    metadata_entry *metadata;
    size_t metadata_count, metadata_capacity;
};

/* `items` with room for at least one more than `count`, or NULL (leaving
 * `items` as it was) when out of memory. */
static void *make_room(void *items, size_t *capacity, size_t count, size_t item_size)
{
    if (count < *capacity) return items;
    size_t grown = *capacity ? *capacity * 2 : 16;
    void *bigger = realloc(items, grown * item_size);
    if (bigger) *capacity = grown;
    return bigger;
}

/* Names and values end up in JSON, which must be valid UTF-8. */
static int is_json_string(const char *text)
{
    json_t *probe = json_string(text);
    json_decref(probe);
    return probe != NULL;
}

diat_st_writer *diat_st_writer_new(void)
{
    return calloc(1, sizeof(diat_st_writer));
}

void diat_st_writer_free(diat_st_writer *w)
{
    if (!w) return;
    for (size_t i = 0; i < w->tensor_count; i++) {
        free(w->tensors[i].name);
        free(w->tensors[i].bytes);
    }
    for (size_t i = 0; i < w->metadata_count; i++) {
        free(w->metadata[i].key);
        free(w->metadata[i].value);
    }
    free(w->tensors);
    free(w->metadata);
    free(w);
}

/* Check the arguments of diat_st_writer_add and count the elements. */
static diat_status check_tensor(const diat_st_writer *w, const char *name, diat_dtype dtype,
                                int ndim, const int64_t *shape, const float *data, size_t *count,
                                diat_error *err)
{
    if (!w || !name || ndim < 0 || ndim > DIAT_MAX_DIMS || (ndim > 0 && !shape))
        return diat_set_error(err, DIAT_ERR_ARGUMENT, "Invalid arguments for storing a tensor.");
    if (!*name || strcmp(name, "__metadata__") == 0 || !is_json_string(name))
        return diat_set_error(err, DIAT_ERR_ARGUMENT,
                              "Cannot store a tensor named '%.80s': the name must be non-empty "
                              "UTF-8 and not __metadata__.",
                              name);
    if (dtype != DIAT_DTYPE_F32 && dtype != DIAT_DTYPE_F16)
        return diat_set_error(err, DIAT_ERR_ARGUMENT,
                              "Cannot store tensor '%.80s': only F32 and F16 can be written.",
                              name);
    for (size_t i = 0; i < w->tensor_count; i++)
        if (strcmp(w->tensors[i].name, name) == 0)
            return diat_set_error(err, DIAT_ERR_ARGUMENT,
                                  "Cannot store tensor '%.80s' twice in one model file.", name);
    size_t elements = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0 || (uint64_t)shape[i] > SIZE_MAX ||
            __builtin_mul_overflow(elements, (size_t)shape[i], &elements) ||
            elements > SIZE_MAX / sizeof(float))
            return diat_set_error(err, DIAT_ERR_ARGUMENT,
                                  "Cannot store tensor '%.80s': its shape is invalid or too large.",
                                  name);
    }
    if (elements > 0 && !data)
        return diat_set_error(err, DIAT_ERR_ARGUMENT, "Cannot store tensor '%.80s': no data.",
                              name);
    *count = elements;
    return DIAT_OK;
}

/* Convert to the stored dtype. A model file must hold finite values (the
 * reader rejects anything else), so catch NaN, inf and F16 overflow now,
 * when the caller can still tell which tensor went wrong. */
static diat_status encode(const char *name, diat_dtype dtype, const float *data, size_t count,
                          unsigned char *out, diat_error *err)
{
    for (size_t i = 0; i < count; i++) {
        float v = data[i];
        if (!isfinite(v))
            return diat_set_error(err, DIAT_ERR_ARGUMENT,
                                  "Cannot store tensor '%.80s': element %zu is not finite.", name,
                                  i);
        if (dtype == DIAT_DTYPE_F16) {
            uint16_t h = diat_f32_to_f16(v);
            if ((h & 0x7fffu) == F16_INFINITY)
                return diat_set_error(err, DIAT_ERR_ARGUMENT,
                                      "Cannot store tensor '%.80s' as F16: element %zu (%g) is "
                                      "beyond the F16 range of +-65504.",
                                      name, i, (double)v);
            out[2 * i] = (unsigned char)(h & 0xffu);
            out[2 * i + 1] = (unsigned char)(h >> 8);
        } else {
            uint32_t bits;
            memcpy(&bits, &v, sizeof bits);
            for (int b = 0; b < 4; b++) out[4 * i + (size_t)b] = (unsigned char)(bits >> (8 * b));
        }
    }
    return DIAT_OK;
}

diat_status diat_st_writer_add(diat_st_writer *w, const char *name, diat_dtype dtype, int ndim,
                               const int64_t *shape, const float *data, diat_error *err)
{
    size_t count = 0;
    diat_status status = check_tensor(w, name, dtype, ndim, shape, data, &count, err);
    if (status != DIAT_OK) return status;

    stored_tensor t = {.dtype = dtype, .ndim = ndim};
    for (int i = 0; i < ndim; i++) t.shape[i] = shape[i];
    t.nbytes = count * (dtype == DIAT_DTYPE_F16 ? 2 : 4);
    t.name = strdup(name);
    t.bytes = malloc(t.nbytes ? t.nbytes : 1);
    stored_tensor *tensors =
        make_room(w->tensors, &w->tensor_capacity, w->tensor_count, sizeof *tensors);
    if (tensors) w->tensors = tensors;
    if (!t.name || !t.bytes || !tensors) {
        free(t.name);
        free(t.bytes);
        return diat_set_error(err, DIAT_ERR_MEMORY, "Out of memory storing tensor '%.80s'.", name);
    }
    status = encode(name, dtype, data, count, t.bytes, err);
    if (status != DIAT_OK) {
        free(t.name);
        free(t.bytes);
        return status;
    }
    w->tensors[w->tensor_count++] = t;
    return DIAT_OK;
}

diat_status diat_st_writer_set_metadata(diat_st_writer *w, const char *key, const char *value,
                                        diat_error *err)
{
    if (!w || !key || !value)
        return diat_set_error(err, DIAT_ERR_ARGUMENT, "Invalid arguments for model metadata.");
    if (!is_json_string(key) || !is_json_string(value))
        return diat_set_error(err, DIAT_ERR_ARGUMENT, "Model metadata '%.80s' is not valid UTF-8.",
                              key);
    char *copy = strdup(value);
    if (!copy) return diat_set_error(err, DIAT_ERR_MEMORY, "Out of memory storing metadata.");
    for (size_t i = 0; i < w->metadata_count; i++) {
        if (strcmp(w->metadata[i].key, key) == 0) {
            free(w->metadata[i].value);
            w->metadata[i].value = copy;
            return DIAT_OK;
        }
    }
    char *key_copy = strdup(key);
    metadata_entry *metadata =
        make_room(w->metadata, &w->metadata_capacity, w->metadata_count, sizeof *metadata);
    if (metadata) w->metadata = metadata;
    if (!key_copy || !metadata) {
        free(key_copy);
        free(copy);
        return diat_set_error(err, DIAT_ERR_MEMORY, "Out of memory storing metadata.");
    }
    w->metadata[w->metadata_count++] = (metadata_entry){key_copy, copy};
    return DIAT_OK;
}

/* Data-area offsets: F32 tensors first, then F16 (see the top of the file). */
static void layout(const diat_st_writer *w, uint64_t *begin)
{
    uint64_t offset = 0;
    for (int pass = 0; pass < 2; pass++) {
        diat_dtype dtype = pass == 0 ? DIAT_DTYPE_F32 : DIAT_DTYPE_F16;
        for (size_t i = 0; i < w->tensor_count; i++) {
            if (w->tensors[i].dtype != dtype) continue;
            begin[i] = offset;
            offset += w->tensors[i].nbytes;
        }
    }
}

/* One tensor's header entry: {"dtype", "shape", "data_offsets"}. */
static json_t *tensor_entry(const stored_tensor *t, uint64_t begin)
{
    json_t *entry = json_object();
    json_t *shape = json_array();
    int failed = !entry || !shape;
    for (int d = 0; !failed && d < t->ndim; d++)
        failed = json_array_append_new(shape, json_integer(t->shape[d])) != 0;
    if (!failed) {
        /* The *_set_new calls take their value even when they fail. */
        const char *dtype = t->dtype == DIAT_DTYPE_F16 ? "F16" : "F32";
        failed = json_object_set_new(entry, "dtype", json_string(dtype)) != 0 ||
                 json_object_set(entry, "shape", shape) != 0 ||
                 json_object_set_new(
                     entry, "data_offsets",
                     json_pack("[I,I]", (json_int_t)begin, (json_int_t)(begin + t->nbytes))) != 0;
    }
    json_decref(shape);
    if (failed) {
        json_decref(entry);
        return NULL;
    }
    return entry;
}

/* The compact JSON header, or NULL when out of memory. */
static char *build_header(const diat_st_writer *w, const uint64_t *begin)
{
    json_t *root = json_object();
    json_t *metadata = w->metadata_count ? json_object() : NULL;
    int failed = !root || (w->metadata_count && !metadata);
    for (size_t i = 0; !failed && i < w->metadata_count; i++)
        failed = json_object_set_new(metadata, w->metadata[i].key,
                                     json_string(w->metadata[i].value)) != 0;
    if (metadata && !failed) failed = json_object_set(root, "__metadata__", metadata) != 0;
    for (size_t i = 0; !failed && i < w->tensor_count; i++) {
        json_t *entry = tensor_entry(&w->tensors[i], begin[i]);
        failed = !entry || json_object_set_new(root, w->tensors[i].name, entry) != 0;
    }
    char *text = failed ? NULL : json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(metadata);
    json_decref(root);
    return text;
}

/* write(2) until done; 0 with errno set on failure. */
static int write_all(int fd, const void *data, size_t length)
{
    const unsigned char *p = data;
    while (length > 0) {
        ssize_t written = write(fd, p, length);
        if (written < 0) {
            if (errno == EINTR) continue;
            return 0;
        }
        p += written;
        length -= (size_t)written;
    }
    return 1;
}

/* Length field, header padded with spaces to a multiple of 8, data. */
static int write_file(int fd, const diat_st_writer *w, const char *header)
{
    size_t header_length = strlen(header);
    size_t padded = (header_length + 7) & ~(size_t)7;
    unsigned char length_field[8];
    for (int b = 0; b < 8; b++) length_field[b] = (unsigned char)((uint64_t)padded >> (8 * b));
    static const char spaces[8] = "        ";
    if (!write_all(fd, length_field, sizeof length_field) ||
        !write_all(fd, header, header_length) || !write_all(fd, spaces, padded - header_length))
        return 0;
    /* The order of layout(): F32 tensors, then F16. */
    for (int pass = 0; pass < 2; pass++) {
        diat_dtype dtype = pass == 0 ? DIAT_DTYPE_F32 : DIAT_DTYPE_F16;
        for (size_t i = 0; i < w->tensor_count; i++) {
            const stored_tensor *t = &w->tensors[i];
            if (t->dtype == dtype && !write_all(fd, t->bytes, t->nbytes)) return 0;
        }
    }
    return 1;
}

/* Permissions of the file being replaced, or rw-r--r-- for a new one
 * (mkstemp creates 0600; reading the umask is not thread-safe). */
static mode_t target_mode(const char *path)
{
    struct stat info;
    if (stat(path, &info) == 0 && S_ISREG(info.st_mode)) return info.st_mode & 07777;
    return 0644;
}

/* Make the rename itself durable; failure here loses nothing already safe. */
static void sync_folder(const char *path)
{
    const char *slash = strrchr(path, '/');
    char *folder = slash ? strndup(path, slash == path ? 1 : (size_t)(slash - path)) : NULL;
    int fd = open(folder ? folder : ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
    free(folder);
}

/* Fill the temporary file `fd` and move it over `path`. On failure returns
 * what could not be done, with errno set; the caller removes the file. */
static const char *replace_with(int fd, const char *temp_path, const char *path,
                                const diat_st_writer *w, const char *header)
{
    if (fchmod(fd, target_mode(path)) != 0 || !write_file(fd, w, header)) {
        int saved = errno;
        close(fd);
        errno = saved;
        return "write";
    }
    if (fsync(fd) != 0) {
        int saved = errno;
        close(fd);
        errno = saved;
        return "flush";
    }
    if (close(fd) != 0) return "close";
    if (rename(temp_path, path) != 0) return "replace";
    return NULL;
}

diat_status diat_st_writer_save(diat_st_writer *w, const char *path, diat_error *err)
{
    if (!w || !path || !*path)
        return diat_set_error(err, DIAT_ERR_ARGUMENT, "No model file path was given.");
    uint64_t *begin = calloc(w->tensor_count ? w->tensor_count : 1, sizeof *begin);
    if (begin) layout(w, begin);
    char *header = begin ? build_header(w, begin) : NULL;
    free(begin);
    size_t temp_size = strlen(path) + sizeof ".tmp-XXXXXX";
    char *temp_path = header ? malloc(temp_size) : NULL;
    if (!temp_path) {
        free(header);
        return diat_set_error(err, DIAT_ERR_MEMORY, "Out of memory writing model file %s.", path);
    }
    snprintf(temp_path, temp_size, "%s.tmp-XXXXXX", path);

    diat_status status = DIAT_OK;
    int fd = mkstemp(temp_path);
    if (fd < 0) {
        status = diat_set_error(err, DIAT_ERR_IO,
                                "Cannot create a temporary file for model file %s: %s.", path,
                                strerror(errno));
    } else {
        const char *failed_step = replace_with(fd, temp_path, path, w, header);
        if (failed_step) {
            status = diat_set_error(err, DIAT_ERR_IO, "Cannot %s model file %s: %s.", failed_step,
                                    path, strerror(errno));
            unlink(temp_path); /* an existing PATH stays as it was */
        } else {
            sync_folder(path);
        }
    }
    free(temp_path);
    free(header);
    return status;
}

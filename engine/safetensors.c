/* Reading safetensors model files.
 *
 * Layout: an 8-byte little-endian header length N, N bytes of JSON mapping
 * each tensor name to {"dtype", "shape", "data_offsets": [begin, end]} (plus
 * an optional "__metadata__" object of strings), then the data area that the
 * offsets index. A model file may come from anywhere, so everything is
 * checked before any tensor byte is touched: every problem becomes a message
 * naming the file, never a crash or a read outside the buffer.
 *
 * The file is mapped, not read: tensors point straight into the mapping and
 * are converted to float32 only when asked for. Tensor data may sit at any
 * byte offset, so values are assembled from bytes, never read through a
 * float pointer. (Truncating a mapped file under a running reader would
 * still raise SIGBUS; the writer replaces files by rename, which cannot.)
 */
#include "diat-train.h"

#include <errno.h>
#include <fcntl.h>
#include <float.h>
#include <jansson.h>
#include <locale.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* The limit the reference implementation uses: a bigger header means a
 * damaged or hostile file, and is refused before anything is allocated. */
#define ST_MAX_HEADER_BYTES 100000000u
#define ST_LENGTH_FIELD_BYTES 8u
#define ST_METADATA_KEY "__metadata__"

/* Bytes of a file label or tensor name quoted in a message: the message
 * buffer is 512 bytes, and the problem must still fit after them. */
#define ST_LABEL_SHOWN 160
#define ST_NAME_SHOWN 80
#define ST_SHAPE_TEXT 200

struct diat_safetensors {
    json_t *header;           /* owns every name, key and value string below */
    diat_st_tensor *tensors;  /* header order */
    diat_st_tensor **by_name; /* sorted by name, for find */
    size_t tensor_count;
    struct {
        const char *key, *value;
    } * metadata;
    size_t metadata_count;
    void *mapping; /* set when opened from a file */
    size_t mapping_length;
    char label[ST_LABEL_SHOWN];
};

/* Copy `text` for a message. Control characters (a hostile name could carry
 * terminal escapes) become '?'; an over-long text is cut with "...", keeping
 * its end for file paths (where the file name is) or its start for names,
 * and not splitting a UTF-8 sequence. */
static void shown_text(const char *text, int keep_end, char *out, size_t out_size)
{
    size_t length = strlen(text);
    int cut = length > out_size - 1;
    size_t kept = cut ? out_size - 4 : length;
    const char *from = cut && keep_end ? text + length - kept : text;
    size_t used = 0;
    if (cut && keep_end) {
        for (; ((unsigned char)*from & 0xc0u) == 0x80u; from++) kept--;
        memcpy(out, "...", 3);
        used = 3;
    } else if (cut) {
        while (kept > 0 && ((unsigned char)from[kept] & 0xc0u) == 0x80u) kept--;
    }
    for (size_t i = 0; i < kept; i++) {
        unsigned char c = (unsigned char)from[i];
        out[used++] = (c < 0x20u || c == 0x7fu) ? '?' : (char)c;
    }
    if (cut && !keep_end) {
        memcpy(out + used, "...", 3);
        used += 3;
    }
    out[used] = '\0';
}

static void shown_name(const char *name, char out[ST_NAME_SHOWN])
{
    shown_text(name, 0, out, ST_NAME_SHOWN);
}

/* "Model file LABEL <problem>", always a format error. */
__attribute__((format(printf, 3, 4))) static diat_status
format_error(diat_error *err, const char *label, const char *problem_fmt, ...)
{
    char problem[384];
    va_list ap;
    va_start(ap, problem_fmt);
    vsnprintf(problem, sizeof problem, problem_fmt, ap);
    va_end(ap);
    return diat_set_error(err, DIAT_ERR_FORMAT, "Model file %s %s", label, problem);
}

static uint64_t read_le64(const unsigned char *p)
{
    uint64_t value = 0;
    for (int i = 7; i >= 0; i--) value = (value << 8) | p[i];
    return value;
}

/* The dtypes the engine reads, indexed by diat_dtype. */
static const struct {
    const char *name;
    size_t size;
} known_dtypes[] = {
    [DIAT_DTYPE_F32] = {"F32", 4}, [DIAT_DTYPE_F16] = {"F16", 2}, [DIAT_DTYPE_U8] = {"U8", 1}};
#define KNOWN_DTYPE_COUNT (sizeof known_dtypes / sizeof known_dtypes[0])

/* Map a dtype string: 1 supported, 0 a valid safetensors dtype the engine
 * does not read, -1 not a safetensors dtype at all. */
static int parse_dtype(const char *text, diat_dtype *out)
{
    static const char *const unsupported[] = {
        "BOOL", "I8",  "I16",     "U16",     "BF16",    "I32", "U32",     "F64",
        "I64",  "U64", "F8_E5M2", "F8_E4M3", "F8_E8M0", "F4",  "F6_E2M3", "F6_E3M2"};
    for (size_t i = 0; i < KNOWN_DTYPE_COUNT; i++) {
        if (strcmp(text, known_dtypes[i].name) == 0) {
            *out = (diat_dtype)i;
            return 1;
        }
    }
    for (size_t i = 0; i < sizeof unsupported / sizeof unsupported[0]; i++)
        if (strcmp(text, unsupported[i]) == 0) return 0;
    return -1;
}

/* "[a,b,c]" for messages. */
static void shape_text(int ndim, const int64_t *shape, char out[ST_SHAPE_TEXT])
{
    size_t used = 0;
    out[used++] = '[';
    for (int i = 0; i < ndim && used < ST_SHAPE_TEXT - 24; i++)
        used += (size_t)snprintf(out + used, ST_SHAPE_TEXT - used, i ? ",%lld" : "%lld",
                                 (long long)shape[i]);
    snprintf(out + used, ST_SHAPE_TEXT - used, "]");
}

/* Elements of a validated shape (cannot overflow: checked at parse). */
static size_t element_count(const diat_st_tensor *t)
{
    size_t count = 1;
    for (int i = 0; i < t->ndim; i++) count *= (size_t)t->shape[i];
    return count;
}

static diat_status parse_metadata(diat_safetensors *st, json_t *object, diat_error *err)
{
    if (!json_is_object(object))
        return format_error(err, st->label, "has a __metadata__ entry that is not a JSON object.");
    size_t count = json_object_size(object);
    st->metadata = calloc(count ? count : 1, sizeof *st->metadata);
    if (!st->metadata)
        return diat_set_error(err, DIAT_ERR_MEMORY, "Out of memory reading model file %s.",
                              st->label);
    for (void *it = json_object_iter(object); it; it = json_object_iter_next(object, it)) {
        const char *key = json_object_iter_key(it);
        json_t *value = json_object_iter_value(it);
        if (!json_is_string(value)) {
            char name[ST_NAME_SHOWN];
            shown_name(key, name);
            return format_error(err, st->label,
                                "has a metadata entry '%s' whose value is not a string.", name);
        }
        st->metadata[st->metadata_count].key = key;
        st->metadata[st->metadata_count].value = json_string_value(value);
        st->metadata_count++;
    }
    return DIAT_OK;
}

/* A JSON integer in [0, INT64_MAX], or -1. */
static int64_t non_negative_integer(const json_t *value)
{
    if (!json_is_integer(value)) return -1;
    json_int_t v = json_integer_value(value);
    return v < 0 ? -1 : (int64_t)v;
}

typedef struct byte_range {
    uint64_t begin, end;
    size_t tensor;
} byte_range;

/* Validate one header entry and fill `t`; `range` gets its bytes within
 * the data area, which is `data_length` bytes long. */
static diat_status parse_tensor(const diat_safetensors *st, const char *name, json_t *entry,
                                const unsigned char *data, size_t data_length, diat_st_tensor *t,
                                byte_range *range, diat_error *err)
{
    char shown[ST_NAME_SHOWN];
    shown_name(name, shown);
    if (!json_is_object(entry))
        return format_error(err, st->label, "has a tensor '%s' whose entry is not a JSON object.",
                            shown);
    t->name = name;

    json_t *dtype = json_object_get(entry, "dtype");
    if (!json_is_string(dtype))
        return format_error(err, st->label, "has a tensor '%s' without a dtype string.", shown);
    char dtype_shown[ST_NAME_SHOWN];
    shown_name(json_string_value(dtype), dtype_shown);
    int known = parse_dtype(json_string_value(dtype), &t->dtype);
    if (known < 0)
        return format_error(err, st->label, "has a tensor '%s' with unknown dtype '%s'.", shown,
                            dtype_shown);
    if (known == 0)
        return format_error(err, st->label,
                            "has a tensor '%s' with dtype %s, which is not supported "
                            "(F32, F16 or U8 expected).",
                            shown, dtype_shown);

    json_t *shape = json_object_get(entry, "shape");
    if (!json_is_array(shape))
        return format_error(err, st->label, "has a tensor '%s' without a shape array.", shown);
    size_t ndim = json_array_size(shape);
    if (ndim > DIAT_MAX_DIMS)
        return format_error(err, st->label,
                            "has a tensor '%s' with %zu dimensions (at most %d are supported).",
                            shown, ndim, DIAT_MAX_DIMS);
    t->ndim = (int)ndim;
    /* The product skips zeros so that [2^40, 2^40, 0] is caught too. */
    uint64_t product = 1;
    int has_zero = 0;
    for (size_t i = 0; i < ndim; i++) {
        int64_t dim = non_negative_integer(json_array_get(shape, i));
        if (dim < 0)
            return format_error(err, st->label,
                                "has a tensor '%s' whose shape is not a list of non-negative "
                                "integers.",
                                shown);
        t->shape[i] = dim;
        if (dim == 0)
            has_zero = 1;
        else if (__builtin_mul_overflow(product, (uint64_t)dim, &product))
            return format_error(err, st->label, "has a tensor '%s' whose element count overflows.",
                                shown);
    }
    uint64_t count = has_zero ? 0 : product;
    uint64_t expected_bytes;
    if (__builtin_mul_overflow(count, (uint64_t)known_dtypes[t->dtype].size, &expected_bytes))
        return format_error(err, st->label, "has a tensor '%s' whose byte size overflows.", shown);

    json_t *offsets = json_object_get(entry, "data_offsets");
    int64_t begin = -1, end = -1;
    if (json_is_array(offsets) && json_array_size(offsets) == 2) {
        begin = non_negative_integer(json_array_get(offsets, 0));
        end = non_negative_integer(json_array_get(offsets, 1));
    }
    if (begin < 0 || end < 0)
        return format_error(err, st->label,
                            "has a tensor '%s' without valid data_offsets "
                            "(two non-negative integers [begin, end] expected).",
                            shown);
    if (begin > end)
        return format_error(err, st->label,
                            "has a tensor '%s' whose data_offsets [%lld, %lld] end before "
                            "they begin.",
                            shown, (long long)begin, (long long)end);
    if ((uint64_t)end > data_length)
        return format_error(err, st->label,
                            "has a tensor '%s' whose data (bytes %lld to %lld) extends past the "
                            "end of the data area (%zu bytes); the file may be truncated.",
                            shown, (long long)begin, (long long)end, data_length);
    uint64_t bytes = (uint64_t)(end - begin);
    if (bytes != expected_bytes) {
        char shape_shown[ST_SHAPE_TEXT];
        shape_text(t->ndim, t->shape, shape_shown);
        return format_error(err, st->label,
                            "has a tensor '%s' of %llu bytes, but shape %s of %s needs %llu "
                            "bytes.",
                            shown, (unsigned long long)bytes, shape_shown,
                            known_dtypes[t->dtype].name, (unsigned long long)expected_bytes);
    }
    t->data = data + begin;
    t->nbytes = (size_t)bytes;
    range->begin = (uint64_t)begin;
    range->end = (uint64_t)end;
    return DIAT_OK;
}

static int compare_ranges(const void *a, const void *b)
{
    const byte_range *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    return (x->end > y->end) - (x->end < y->end);
}

/* Two tensors sharing bytes is never produced by a writer: reject it. Empty
 * ranges hold no bytes and cannot overlap anything. */
static diat_status check_overlaps(const diat_safetensors *st, byte_range *ranges, size_t count,
                                  diat_error *err)
{
    size_t kept = 0;
    for (size_t i = 0; i < count; i++)
        if (ranges[i].end > ranges[i].begin) ranges[kept++] = ranges[i];
    qsort(ranges, kept, sizeof *ranges, compare_ranges);
    /* Sorted and disjoint so far, so the previous range ends last. */
    for (size_t i = 1; i < kept; i++) {
        if (ranges[i].begin < ranges[i - 1].end) {
            char first[ST_NAME_SHOWN], second[ST_NAME_SHOWN];
            shown_name(st->tensors[ranges[i - 1].tensor].name, first);
            shown_name(st->tensors[ranges[i].tensor].name, second);
            return format_error(err, st->label, "has tensors '%s' and '%s' whose bytes overlap.",
                                first, second);
        }
    }
    return DIAT_OK;
}

static int compare_by_name(const void *a, const void *b)
{
    const diat_st_tensor *const *x = a, *const *y = b;
    return strcmp((*x)->name, (*y)->name);
}

/* Validate the metadata and every tensor entry of the parsed header. */
static diat_status parse_entries(diat_safetensors *st, const unsigned char *data,
                                 size_t data_length, diat_error *err)
{
    json_t *metadata = json_object_get(st->header, ST_METADATA_KEY);
    if (metadata) {
        diat_status status = parse_metadata(st, metadata, err);
        if (status != DIAT_OK) return status;
    }
    size_t capacity = json_object_size(st->header) - (metadata ? 1 : 0);
    st->tensors = calloc(capacity ? capacity : 1, sizeof *st->tensors);
    st->by_name = calloc(capacity ? capacity : 1, sizeof *st->by_name);
    byte_range *ranges = calloc(capacity ? capacity : 1, sizeof *ranges);
    if (!st->tensors || !st->by_name || !ranges) {
        free(ranges);
        return diat_set_error(err, DIAT_ERR_MEMORY, "Out of memory reading model file %s.",
                              st->label);
    }

    diat_status status = DIAT_OK;
    json_t *header = st->header;
    for (void *it = json_object_iter(header); it; it = json_object_iter_next(header, it)) {
        const char *name = json_object_iter_key(it);
        if (strcmp(name, ST_METADATA_KEY) == 0) continue;
        size_t i = st->tensor_count;
        ranges[i].tensor = i;
        status = parse_tensor(st, name, json_object_iter_value(it), data, data_length,
                              &st->tensors[i], &ranges[i], err);
        if (status != DIAT_OK) break;
        st->by_name[i] = &st->tensors[i];
        st->tensor_count++;
    }
    if (status == DIAT_OK) status = check_overlaps(st, ranges, st->tensor_count, err);
    free(ranges);
    if (status == DIAT_OK)
        qsort(st->by_name, st->tensor_count, sizeof *st->by_name, compare_by_name);
    return status;
}

diat_status diat_safetensors_parse(const void *buf, size_t len, const char *label,
                                   diat_safetensors **out, diat_error *err)
{
    if (!out) return diat_set_error(err, DIAT_ERR_ARGUMENT, "No result pointer was given.");
    *out = NULL;
    if (!buf && len) return diat_set_error(err, DIAT_ERR_ARGUMENT, "No file image was given.");

    diat_safetensors *st = calloc(1, sizeof *st);
    if (!st) return diat_set_error(err, DIAT_ERR_MEMORY, "Out of memory reading a model file.");
    shown_text(label ? label : "(in memory)", 1, st->label, sizeof st->label);

    diat_status status;
    const unsigned char *bytes = buf;
    if (len < ST_LENGTH_FIELD_BYTES) {
        status = format_error(err, st->label,
                              "is truncated: it is %zu bytes long, but a safetensors file starts "
                              "with an 8-byte header length.",
                              len);
        goto fail;
    }
    uint64_t header_length = read_le64(bytes);
    if (header_length > ST_MAX_HEADER_BYTES) {
        status = format_error(err, st->label,
                              "claims a header of %llu bytes, which is absurd (the limit is %u); "
                              "it is damaged or not a safetensors file.",
                              (unsigned long long)header_length, ST_MAX_HEADER_BYTES);
        goto fail;
    }
    size_t available = len - ST_LENGTH_FIELD_BYTES;
    if (header_length > available) {
        status = format_error(err, st->label,
                              "is truncated: its header length of %llu bytes goes beyond the end "
                              "of the file (%zu bytes follow the length field).",
                              (unsigned long long)header_length, available);
        goto fail;
    }

    json_error_t json_err;
    st->header = json_loadb((const char *)bytes + ST_LENGTH_FIELD_BYTES, (size_t)header_length,
                            JSON_REJECT_DUPLICATES, &json_err);
    if (!st->header) {
        status = format_error(err, st->label,
                              "has a header that is not valid JSON (line %d, column %d: %s).",
                              json_err.line, json_err.column, json_err.text);
        goto fail;
    }
    if (!json_is_object(st->header)) {
        status = format_error(err, st->label, "has a header that is not a JSON object.");
        goto fail;
    }
    size_t data_offset = ST_LENGTH_FIELD_BYTES + (size_t)header_length;
    status = parse_entries(st, bytes + data_offset, len - data_offset, err);
    if (status != DIAT_OK) goto fail;
    *out = st;
    return DIAT_OK;

fail:
    diat_safetensors_close(st);
    return status;
}

diat_status diat_safetensors_open(const char *path, diat_safetensors **out, diat_error *err)
{
    if (!out || !path)
        return diat_set_error(err, DIAT_ERR_ARGUMENT, "No model file path was given.");
    *out = NULL;
    char shown[ST_LABEL_SHOWN];
    shown_text(path, 1, shown, sizeof shown);

    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return diat_set_error(err, DIAT_ERR_IO, "Cannot open model file %s: %s.", shown,
                              strerror(errno));
    diat_status status = DIAT_OK;
    struct stat info;
    size_t length = 0;
    void *mapping = NULL;
    if (fstat(fd, &info) != 0)
        status = diat_set_error(err, DIAT_ERR_IO, "Cannot read model file %s: %s.", shown,
                                strerror(errno));
    else if (!S_ISREG(info.st_mode))
        status = diat_set_error(err, DIAT_ERR_IO, "Model file %s is not a regular file.", shown);
    else if ((uint64_t)info.st_size > SIZE_MAX)
        status = format_error(err, shown, "is too large to map into memory.");
    else if ((length = (size_t)info.st_size) > 0) { /* mmap refuses empty files */
        mapping = mmap(NULL, length, PROT_READ, MAP_PRIVATE, fd, 0);
        if (mapping == MAP_FAILED) {
            mapping = NULL;
            status = diat_set_error(err, DIAT_ERR_IO, "Cannot map model file %s: %s.", shown,
                                    strerror(errno));
        }
    }
    close(fd); /* a mapping keeps the file */
    if (status != DIAT_OK) return status;

    static const unsigned char empty[1]; /* parse reports it as truncated */
    status = diat_safetensors_parse(mapping ? mapping : empty, length, path, out, err);
    if (status != DIAT_OK) {
        if (mapping) munmap(mapping, length);
        return status;
    }
    (*out)->mapping = mapping;
    (*out)->mapping_length = length;
    return DIAT_OK;
}

void diat_safetensors_close(diat_safetensors *st)
{
    if (!st) return;
    if (st->mapping) munmap(st->mapping, st->mapping_length);
    json_decref(st->header);
    free(st->tensors);
    free(st->by_name);
    free(st->metadata);
    free(st);
}

size_t diat_safetensors_count(const diat_safetensors *st)
{
    return st ? st->tensor_count : 0;
}

const diat_st_tensor *diat_safetensors_at(const diat_safetensors *st, size_t i)
{
    return st && i < st->tensor_count ? &st->tensors[i] : NULL;
}

const diat_st_tensor *diat_safetensors_find(const diat_safetensors *st, const char *name)
{
    if (!st || !name || st->tensor_count == 0) return NULL;
    diat_st_tensor probe = {.name = name};
    const diat_st_tensor *key = &probe;
    diat_st_tensor **hit =
        bsearch(&key, st->by_name, st->tensor_count, sizeof *st->by_name, compare_by_name);
    return hit ? *hit : NULL;
}

size_t diat_safetensors_metadata_count(const diat_safetensors *st)
{
    return st ? st->metadata_count : 0;
}

void diat_safetensors_metadata_at(const diat_safetensors *st, size_t i, const char **key,
                                  const char **value)
{
    int valid = st && i < st->metadata_count;
    if (key) *key = valid ? st->metadata[i].key : NULL;
    if (value) *value = valid ? st->metadata[i].value : NULL;
}

const char *diat_safetensors_metadata(const diat_safetensors *st, const char *key)
{
    if (!st || !key) return NULL;
    for (size_t i = 0; i < st->metadata_count; i++)
        if (strcmp(st->metadata[i].key, key) == 0) return st->metadata[i].value;
    return NULL;
}

/* strtod in the C locale: metadata is written with '.', but a plug-in runs
 * in the user's locale, where the decimal separator may be ','. */
static int parse_metadata_number(const char *text, double *out)
{
    locale_t c_numeric = newlocale(LC_NUMERIC_MASK, "C", (locale_t)0);
    if (!c_numeric) return 0;
    locale_t previous = uselocale(c_numeric);
    char *end;
    double value = strtod(text, &end);
    uselocale(previous);
    freelocale(c_numeric);
    if (end == text || *end != '\0' || !isfinite(value)) return 0;
    *out = value;
    return 1;
}

/* The U8 dequantisation parameters "<name>.scale" and "<name>.min". */
static diat_status u8_parameters(const diat_safetensors *st, const diat_st_tensor *t, double *scale,
                                 double *minimum, diat_error *err)
{
    static const char *const suffixes[2] = {".scale", ".min"};
    double *values[2] = {scale, minimum};
    size_t name_length = strlen(t->name);
    char *key = malloc(name_length + sizeof ".scale");
    if (!key)
        return diat_set_error(err, DIAT_ERR_MEMORY, "Out of memory reading model file %s.",
                              st->label);
    for (int i = 0; i < 2; i++) {
        memcpy(key, t->name, name_length);
        strcpy(key + name_length, suffixes[i]);
        const char *text = diat_safetensors_metadata(st, key);
        if (!text || !parse_metadata_number(text, values[i])) {
            char shown[ST_NAME_SHOWN];
            shown_name(t->name, shown);
            free(key);
            return format_error(err, st->label,
                                "has a U8 tensor '%s' without a finite number in its metadata "
                                "entry '%s%s'.",
                                shown, shown, suffixes[i]);
        }
    }
    free(key);
    return DIAT_OK;
}

/* A little-endian float from possibly unaligned bytes. */
static float load_le_f32(const unsigned char *p)
{
    uint32_t bits =
        (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
    float value;
    memcpy(&value, &bits, sizeof value);
    return value;
}

diat_status diat_safetensors_read_f32(const diat_safetensors *st, const char *name, int ndim,
                                      const int64_t *shape, float *dst, diat_error *err)
{
    if (!st || !name || !dst || ndim < 0 || ndim > DIAT_MAX_DIMS || (ndim > 0 && !shape))
        return diat_set_error(err, DIAT_ERR_ARGUMENT,
                              "Invalid arguments for reading a tensor from a model file.");
    char shown[ST_NAME_SHOWN];
    shown_name(name, shown);
    const diat_st_tensor *t = diat_safetensors_find(st, name);
    if (!t) return format_error(err, st->label, "has no tensor '%s'.", shown);

    int same_shape = t->ndim == ndim;
    for (int i = 0; same_shape && i < ndim; i++) same_shape = t->shape[i] == shape[i];
    if (!same_shape) {
        char found[ST_SHAPE_TEXT], expected[ST_SHAPE_TEXT];
        shape_text(t->ndim, t->shape, found);
        shape_text(ndim, shape, expected);
        return diat_set_error(err, DIAT_ERR_FORMAT,
                              "Tensor '%s' in model file %s has shape %s but %s was expected.",
                              shown, st->label, found, expected);
    }

    size_t count = element_count(t);
    const unsigned char *bytes = t->data;
    switch (t->dtype) {
    case DIAT_DTYPE_F32:
        for (size_t i = 0; i < count; i++) dst[i] = load_le_f32(bytes + 4 * i);
        break;
    case DIAT_DTYPE_F16:
        for (size_t i = 0; i < count; i++)
            dst[i] = diat_f16_to_f32((uint16_t)(bytes[2 * i] | bytes[2 * i + 1] << 8));
        break;
    case DIAT_DTYPE_U8: {
        double scale, minimum;
        diat_status status = u8_parameters(st, t, &scale, &minimum, err);
        if (status != DIAT_OK) return status;
        for (size_t i = 0; i < count; i++) {
            double value = minimum + scale * bytes[i];
            if (!(fabs(value) <= FLT_MAX)) /* converting would be undefined */
                return format_error(err, st->label,
                                    "has a value beyond the float range in tensor '%s' at "
                                    "element %zu.",
                                    shown, i);
            dst[i] = (float)value;
        }
        break;
    }
    }

    for (size_t i = 0; i < count; i++) {
        if (!isfinite(dst[i])) {
            const char *what = isnan(dst[i]) ? "NaN" : dst[i] > 0 ? "+inf" : "-inf";
            return format_error(err, st->label,
                                "has a non-finite value (%s) in tensor '%s' at element %zu.", what,
                                shown, i);
        }
    }
    return DIAT_OK;
}

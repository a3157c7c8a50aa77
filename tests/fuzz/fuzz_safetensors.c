/* libFuzzer harness for the safetensors reader: whatever the bytes, parsing
 * and reading every tensor must either succeed or fail with a message, never
 * crash, leak or read out of bounds (the build adds ASan and UBSan).
 *
 *   fuzz_safetensors -max_total_time=60 -dict=tests/fuzz/safetensors.dict CORPUS_COPY
 */
#include "diat-train.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Tensors bigger than this are skipped (only possible when the harness is
 * run on real model files: the reader guarantees that a tensor's bytes lie
 * within the input, so small inputs make small tensors). */
#define FUZZ_MAX_ELEMENTS (16u * 1024u * 1024u)

/* Every message must be a terminated, non-empty sentence. */
static void check_message(const diat_error *err)
{
    size_t length = strnlen(err->message, sizeof err->message);
    if (length == 0 || length == sizeof err->message) abort();
}

/* Elements of a tensor the reader accepted: its byte size was checked
 * against the shape, so the product cannot overflow. */
static size_t element_count(const diat_st_tensor *t)
{
    size_t count = 1;
    for (int d = 0; d < t->ndim; d++) count *= (size_t)t->shape[d];
    return count;
}

static void read_every_tensor(const diat_safetensors *st)
{
    for (size_t i = 0; i < diat_safetensors_count(st); i++) {
        const diat_st_tensor *t = diat_safetensors_at(st, i);
        if (diat_safetensors_find(st, t->name) != t) abort();
        size_t count = element_count(t);
        if (count > FUZZ_MAX_ELEMENTS) continue;
        float *values = malloc((count ? count : 1) * sizeof *values);
        if (!values) continue;
        diat_error err = {0};
        if (diat_safetensors_read_f32(st, t->name, t->ndim, t->shape, values, &err) != DIAT_OK)
            check_message(&err);
        /* A wrong expected shape must be refused, not read (x ^ 1 differs
         * from x and cannot overflow). */
        int64_t wrong = t->ndim == 1 ? t->shape[0] ^ 1 : 1;
        if (diat_safetensors_read_f32(st, t->name, 1, &wrong, values, &err) == DIAT_OK) abort();
        free(values);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    diat_safetensors *st = NULL;
    diat_error err = {0};
    if (diat_safetensors_parse(data, size, "fuzz-input", &st, &err) != DIAT_OK) {
        check_message(&err);
        if (st) abort();
        return 0;
    }
    for (size_t i = 0; i < diat_safetensors_metadata_count(st); i++) {
        const char *key, *value;
        diat_safetensors_metadata_at(st, i, &key, &value);
        if (!key || !value || diat_safetensors_metadata(st, key) != value) abort();
    }
    read_every_tensor(st);
    static const char absent[] = "no such tensor";
    float scalar;
    if (!diat_safetensors_find(st, absent)) {
        if (diat_safetensors_read_f32(st, absent, 0, NULL, &scalar, &err) == DIAT_OK) abort();
        check_message(&err);
    }
    diat_safetensors_close(st);
    return 0;
}

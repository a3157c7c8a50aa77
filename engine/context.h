/* Private: the compute context shared by the engine's files. */
#ifndef DIAT_CONTEXT_H
#define DIAT_CONTEXT_H

#include "diat-train.h"

struct diat_context {
    const diat_backend *backend;
    int threads;
    /* Reusable host scratch (im2col buffers, ...). Grown, never shrunk. */
    float *scratch;
    size_t scratch_count;
};

/* Host scratch of at least `count` floats, valid until the next call;
 * NULL if out of memory. */
float *diat_context_scratch(diat_context *ctx, size_t count);

#endif

/* Private: the compute context shared by the engine's files. */
#ifndef DIAT_CONTEXT_H
#define DIAT_CONTEXT_H

#include "diat-train.h"

#ifdef __cplusplus
extern "C" { /* the CUDA backend's files are C++ */
#endif

struct diat_context {
    const diat_backend *backend;
    int threads;
    /* Reusable host scratch (im2col buffers, ...). Grown, never shrunk. */
    float *scratch;
    size_t scratch_count;
    /* The backend's own per-context state (see diat_backend.context_open). */
    void *backend_state;
    /* Why a requested backend was replaced by the CPU; "" if it was not. */
    char notice[256];
};

/* The CUDA backend from its module (engine/cuda-loader.c), or NULL with the
 * reason in `why` (not built, no driver, no device). Loaded once. */
const diat_backend *diat_cuda_backend_load(char *why, size_t why_size);

/* Host scratch of at least `count` floats, valid until the next call;
 * NULL if out of memory. */
float *diat_context_scratch(diat_context *ctx, size_t count);

#ifdef __cplusplus
}
#endif

#endif

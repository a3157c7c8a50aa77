/* Compute contexts and tensors: which backend, how many threads, memory. */
#include "context.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int diat_backend_kind_parse(const char *name, diat_backend_kind *out)
{
    if (!name) return -1;
    if (strcmp(name, "auto") == 0)
        *out = DIAT_BACKEND_AUTO;
    else if (strcmp(name, "cpu") == 0)
        *out = DIAT_BACKEND_CPU;
    else if (strcmp(name, "cuda") == 0)
        *out = DIAT_BACKEND_CUDA;
    else
        return -1;
    return 0;
}

diat_status diat_context_new(diat_backend_kind kind, int threads, diat_context **out,
                             diat_error *err)
{
    *out = NULL;
    if (threads <= 0) {
        long online = sysconf(_SC_NPROCESSORS_ONLN);
        threads = online > 0 ? (int)online : 1;
    }
    diat_context *ctx = calloc(1, sizeof *ctx);
    if (!ctx) return diat_set_error(err, DIAT_ERR_MEMORY, "Out of memory creating a context.");
    ctx->backend = diat_backend_cpu();
    ctx->threads = threads;
    if (kind == DIAT_BACKEND_CUDA || kind == DIAT_BACKEND_AUTO) {
        char why[200] = "";
        const diat_backend *cuda = diat_cuda_backend_load(why, sizeof why);
        if (cuda && cuda->context_open(ctx, why, sizeof why) == 0)
            ctx->backend = cuda;
        else if (kind == DIAT_BACKEND_CUDA)
            snprintf(ctx->notice, sizeof ctx->notice, "CUDA unavailable (%s); using the CPU.", why);
    }
    /* The CPU backend's BLAS also serves host-side work of a CUDA context. */
    diat_blas_set_threads(threads);
    *out = ctx;
    return DIAT_OK;
}

void diat_context_free(diat_context *ctx)
{
    if (!ctx) return;
    if (ctx->backend->context_close) ctx->backend->context_close(ctx);
    free(ctx->scratch);
    free(ctx);
}

const char *diat_context_notice(const diat_context *ctx)
{
    return ctx->notice[0] ? ctx->notice : NULL;
}

void diat_context_synchronize(diat_context *ctx)
{
    if (ctx->backend->synchronize) ctx->backend->synchronize(ctx);
}

const char *diat_context_backend_name(const diat_context *ctx)
{
    return ctx->backend->name;
}
int diat_context_threads(const diat_context *ctx)
{
    return ctx->threads;
}
const diat_backend *diat_context_backend(const diat_context *ctx)
{
    return ctx->backend;
}

float *diat_context_scratch(diat_context *ctx, size_t count)
{
    if (count > ctx->scratch_count) {
        float *grown = realloc(ctx->scratch, count * sizeof *grown);
        if (!grown) return NULL;
        ctx->scratch = grown;
        ctx->scratch_count = count;
    }
    return ctx->scratch;
}

size_t diat_tensor_count(const diat_tensor *t)
{
    return (size_t)t->n * (size_t)t->c * (size_t)t->h * (size_t)t->w;
}

diat_status diat_tensor_alloc(diat_context *ctx, diat_tensor *t, int n, int c, int h, int w,
                              diat_error *err)
{
    if (n <= 0 || c <= 0 || h <= 0 || w <= 0)
        return diat_set_error(err, DIAT_ERR_ARGUMENT, "Tensor shape %dx%dx%dx%d is empty.", n, c, h,
                              w);
    diat_tensor shaped = {n, c, h, w, NULL};
    shaped.data = ctx->backend->alloc(ctx, diat_tensor_count(&shaped));
    if (!shaped.data)
        return diat_set_error(err, DIAT_ERR_MEMORY, "Out of memory for a %dx%dx%dx%d tensor.", n, c,
                              h, w);
    *t = shaped;
    return DIAT_OK;
}

diat_status diat_tensor_ensure(diat_context *ctx, diat_tensor *t, int n, int c, int h, int w,
                               diat_error *err)
{
    if (t->data && t->n == n && t->c == c && t->h == h && t->w == w) return DIAT_OK;
    diat_tensor_release(ctx, t);
    return diat_tensor_alloc(ctx, t, n, c, h, w, err);
}

void diat_tensor_release(diat_context *ctx, diat_tensor *t)
{
    if (t->data) ctx->backend->release(ctx, t->data);
    memset(t, 0, sizeof *t);
}

void diat_tensor_zero(diat_context *ctx, diat_tensor *t)
{
    ctx->backend->fill(ctx, t->data, 0.0f, diat_tensor_count(t));
}

void diat_tensor_upload(diat_context *ctx, diat_tensor *t, const float *host)
{
    ctx->backend->upload(ctx, t->data, host, diat_tensor_count(t));
}

void diat_tensor_download(diat_context *ctx, const diat_tensor *t, float *host)
{
    ctx->backend->download(ctx, host, t->data, diat_tensor_count(t));
}

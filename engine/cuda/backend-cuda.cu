/* The CUDA backend: per-context state (stream, cuBLAS, scratch), device
 * memory, and the op table pointing at the kernels in the other files of
 * engine/cuda/. Built as the module libdiat-cuda.so, which libdiat loads
 * only when asked (engine/cuda-loader.c). */
#include "cuda-internal.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void diat_cuda_check(cudaError_t status, const char *what)
{
    if (status == cudaSuccess) return;
    fprintf(stderr, "diat: CUDA error in %s: %s\n", what, cudaGetErrorString(status));
    abort();
}

void diat_cuda_check_blas(cublasStatus_t status, const char *what)
{
    if (status == CUBLAS_STATUS_SUCCESS) return;
    fprintf(stderr, "diat: cuBLAS error %d in %s\n", (int)status, what);
    abort();
}

float *diat_cuda_scratch(diat_context *ctx, int slot, size_t count)
{
    diat_cuda_state *state = diat_cuda_state_of(ctx);
    if (count > state->scratch_count[slot]) {
        if (state->scratch[slot]) cudaFreeAsync(state->scratch[slot], state->stream);
        void *grown = NULL;
        diat_cuda_check(cudaMallocAsync(&grown, count * sizeof(float), state->stream),
                        "device scratch allocation");
        state->scratch[slot] = (float *)grown;
        state->scratch_count[slot] = count;
    }
    return state->scratch[slot];
}

static int cuda_context_open(diat_context *ctx, char *why, size_t why_size)
{
    diat_cuda_state *state = (diat_cuda_state *)calloc(1, sizeof *state);
    if (!state) {
        snprintf(why, why_size, "out of memory");
        return -1;
    }
    cudaError_t status = cudaStreamCreateWithFlags(&state->stream, cudaStreamNonBlocking);
    if (status != cudaSuccess) {
        snprintf(why, why_size, "cannot create a CUDA stream: %s", cudaGetErrorString(status));
        free(state);
        return -1;
    }
    if (cublasCreate(&state->cublas) != CUBLAS_STATUS_SUCCESS) {
        snprintf(why, why_size, "cannot initialise cuBLAS");
        cudaStreamDestroy(state->stream);
        free(state);
        return -1;
    }
    cublasSetStream(state->cublas, state->stream);
    /* FP32 by default, for parity with the CPU; TF32 tensor cores on request. */
    const char *tf32 = getenv("DIAT_CUDA_TF32");
    cublasSetMathMode(state->cublas, tf32 && strcmp(tf32, "1") == 0 ? CUBLAS_TF32_TENSOR_OP_MATH
                                                                    : CUBLAS_DEFAULT_MATH);
    ctx->backend_state = state;
    return 0;
}

static void cuda_context_close(diat_context *ctx)
{
    diat_cuda_state *state = diat_cuda_state_of(ctx);
    if (!state) return;
    for (int i = 0; i < DIAT_CUDA_SCRATCH_SLOTS; i++)
        if (state->scratch[i]) cudaFreeAsync(state->scratch[i], state->stream);
    cudaStreamSynchronize(state->stream);
    cublasDestroy(state->cublas);
    cudaStreamDestroy(state->stream);
    free(state);
    ctx->backend_state = NULL;
}

static void cuda_synchronize(diat_context *ctx)
{
    diat_cuda_check(cudaStreamSynchronize(diat_cuda_stream(ctx)), "synchronize");
}

/* Stream-ordered allocation from the device's pool: no device-wide sync,
 * and freed blocks are reused by the next step's tensors. */
static float *cuda_alloc(diat_context *ctx, size_t count)
{
    size_t bytes = count * sizeof(float);
    if (count != 0 && bytes / sizeof(float) != count) return NULL;
    void *p = NULL;
    if (cudaMallocAsync(&p, bytes ? bytes : sizeof(float), diat_cuda_stream(ctx)) != cudaSuccess) {
        cudaGetLastError(); /* clear the sticky-free error so later calls work */
        return NULL;
    }
    return (float *)p;
}

static void cuda_release(diat_context *ctx, float *p)
{
    if (p) cudaFreeAsync(p, diat_cuda_stream(ctx));
}

static void cuda_upload(diat_context *ctx, float *dst, const float *host, size_t count)
{
    if (!count) return;
    diat_cuda_check(cudaMemcpyAsync(dst, host, count * sizeof(float), cudaMemcpyHostToDevice,
                                    diat_cuda_stream(ctx)),
                    "upload");
    /* No wait: from pageable memory the copy is staged before the call
     * returns, so the caller may reuse `host` at once. */
}

static void cuda_download(diat_context *ctx, float *host, const float *src, size_t count)
{
    if (!count) return;
    diat_cuda_check(cudaMemcpyAsync(host, src, count * sizeof(float), cudaMemcpyDeviceToHost,
                                    diat_cuda_stream(ctx)),
                    "download");
    diat_cuda_check(cudaStreamSynchronize(diat_cuda_stream(ctx)), "download");
}

static diat_backend make_table(void)
{
    diat_backend t;
    memset(&t, 0, sizeof t);
    t.name = "cuda";
    t.context_open = cuda_context_open;
    t.context_close = cuda_context_close;
    t.synchronize = cuda_synchronize;

    t.alloc = cuda_alloc;
    t.release = cuda_release;
    t.upload = cuda_upload;
    t.download = cuda_download;
    t.fill = diat_cuda_fill;
    t.axpy = diat_cuda_axpy;
    t.add = diat_cuda_add;
    t.add_overlap = diat_cuda_add_overlap;

    t.conv2d_forward = diat_cuda_conv2d_forward;
    t.conv2d_backward = diat_cuda_conv2d_backward;
    t.linear_forward = diat_cuda_linear_forward;
    t.linear_backward = diat_cuda_linear_backward;

    t.batchnorm_forward_train = diat_cuda_batchnorm_forward_train;
    t.batchnorm_forward_infer = diat_cuda_batchnorm_forward_infer;
    t.batchnorm_backward = diat_cuda_batchnorm_backward;
    t.instancenorm_forward = diat_cuda_instancenorm_forward;
    t.instancenorm_backward = diat_cuda_instancenorm_backward;

    t.activation_forward = diat_cuda_activation_forward;
    t.activation_backward = diat_cuda_activation_backward;

    t.depth_to_space_forward = diat_cuda_depth_to_space_forward;
    t.depth_to_space_backward = diat_cuda_depth_to_space_backward;
    t.upsample_nearest_forward = diat_cuda_upsample_nearest_forward;
    t.upsample_nearest_backward = diat_cuda_upsample_nearest_backward;
    t.upsample_bilinear_forward = diat_cuda_upsample_bilinear_forward;
    t.upsample_bilinear_backward = diat_cuda_upsample_bilinear_backward;
    t.avgpool_forward = diat_cuda_avgpool_forward;
    t.avgpool_backward = diat_cuda_avgpool_backward;
    t.concat_forward = diat_cuda_concat_forward;
    t.concat_backward = diat_cuda_concat_backward;

    t.gaussian5_forward = diat_cuda_gaussian5_forward;
    t.gaussian5_backward = diat_cuda_gaussian5_backward;
    t.binarize_forward = diat_cuda_binarize_forward;
    t.binarize_backward = diat_cuda_binarize_backward;

    t.compose_forward = diat_cuda_compose_forward;
    t.compose_backward = diat_cuda_compose_backward;
    t.squared_error_forward = diat_cuda_squared_error_forward;
    t.squared_error_backward = diat_cuda_squared_error_backward;
    t.sum_forward = diat_cuda_sum_forward;
    t.ratio_loss_forward = diat_cuda_ratio_loss_forward;
    t.ratio_loss_backward = diat_cuda_ratio_loss_backward;
    t.gradient_penalty_forward = diat_cuda_gradient_penalty_forward;
    t.gradient_penalty_backward = diat_cuda_gradient_penalty_backward;
    t.mul = diat_cuda_mul;
    t.adam_update = diat_cuda_adam_update;
    t.resize_bilinear_forward = diat_cuda_resize_bilinear_forward;
    t.resize_bilinear_backward = diat_cuda_resize_bilinear_backward;
    t.maxpool_forward = diat_cuda_maxpool_forward;
    t.maxpool_backward = diat_cuda_maxpool_backward;

    t.depthwise_conv2d_forward = diat_cuda_depthwise_conv2d_forward;
    t.depthwise_conv2d_backward = diat_cuda_depthwise_conv2d_backward;
    return t;
}

static diat_backend cuda_backend;

/* The module's one entry point (engine/cuda-loader.c): the table when a
 * usable device is present, else NULL and the reason. */
extern "C" __attribute__((visibility("default"))) const diat_backend *
diat_cuda_module_backend(char *why, size_t why_size)
{
    int devices = 0;
    cudaError_t status = cudaGetDeviceCount(&devices);
    if (status != cudaSuccess) {
        if (status == cudaErrorNoDevice)
            snprintf(why, why_size, "no CUDA device found");
        else if (status == cudaErrorInsufficientDriver)
            snprintf(why, why_size, "no NVIDIA driver, or one older than CUDA %d.%d",
                     CUDART_VERSION / 1000, CUDART_VERSION % 1000 / 10);
        else
            snprintf(why, why_size, "%s", cudaGetErrorString(status));
        cudaGetLastError();
        return NULL;
    }
    if (devices == 0) {
        snprintf(why, why_size, "no CUDA device found");
        return NULL;
    }
    /* Keep freed blocks in the pool instead of returning them to the driver
     * at every synchronisation: training re-allocates the same sizes. */
    cudaMemPool_t pool;
    if (cudaDeviceGetDefaultMemPool(&pool, 0) == cudaSuccess) {
        uint64_t keep = UINT64_MAX;
        cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &keep);
    }
    cuda_backend = make_table();
    return &cuda_backend;
}

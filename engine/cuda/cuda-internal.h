/* Private: what the CUDA backend's files share. Each file holds one group of
 * ops (as engine/cpu/ does); backend-cuda.cu gathers them into the table.
 * The op signatures are exactly the table's (engine/diat-train.h), and each
 * op must match the CPU op's semantics, accumulation rule included. */
#ifndef DIAT_CUDA_INTERNAL_H
#define DIAT_CUDA_INTERNAL_H

#include "context.h"

#include <cublas_v2.h>
#include <cuda_runtime.h>

/* Kept in diat_context.backend_state: every launch of a context goes to its
 * own stream, so a whole training step queues without host round trips. */
enum { DIAT_CUDA_SCRATCH_SLOTS = 4 };

typedef struct diat_cuda_state {
    cudaStream_t stream;
    cublasHandle_t cublas;
    /* Device scratch, grown on demand, never shrunk; slots are independent
     * (an op may use several at once). */
    float *scratch[DIAT_CUDA_SCRATCH_SLOTS];
    size_t scratch_count[DIAT_CUDA_SCRATCH_SLOTS];
} diat_cuda_state;

enum { DIAT_CUDA_THREADS = 256 };

static inline diat_cuda_state *diat_cuda_state_of(diat_context *ctx)
{
    return (diat_cuda_state *)ctx->backend_state;
}

static inline cudaStream_t diat_cuda_stream(diat_context *ctx)
{
    return diat_cuda_state_of(ctx)->stream;
}

/* Blocks of DIAT_CUDA_THREADS covering `count` elements (grid-stride loops
 * take over beyond the cap). */
static inline unsigned diat_cuda_blocks(size_t count)
{
    size_t blocks = (count + DIAT_CUDA_THREADS - 1) / DIAT_CUDA_THREADS;
    if (blocks < 1) blocks = 1;
    return blocks > 65535u * 16u ? 65535u * 16u : (unsigned)blocks;
}

/* Device scratch of at least `count` floats in slot 0..3, valid until the
 * next request of the same slot. Aborts if the device is out of memory
 * (scratch is small next to the tensors, so that is a lost cause anyway). */
float *diat_cuda_scratch(diat_context *ctx, int slot, size_t count);

/* After a launch or a library call: a failure here is a bug or a lost
 * device, never bad user input, so it is reported and the process stops. */
void diat_cuda_check(cudaError_t status, const char *what);
void diat_cuda_check_blas(cublasStatus_t status, const char *what);
#define DIAT_CUDA_LAUNCHED(what) diat_cuda_check(cudaGetLastError(), what)

/* ---- the ops, by file --------------------------------------------------- */

/* conv.cu: im2col/col2im + cuBLAS */
void diat_cuda_conv2d_forward(diat_context *ctx, const diat_tensor *x, const diat_tensor *weight,
                              const diat_tensor *bias, diat_conv_geometry g, diat_activation act,
                              float slope, diat_tensor *y);
void diat_cuda_conv2d_backward(diat_context *ctx, const diat_tensor *x, const diat_tensor *weight,
                               const diat_tensor *dy, diat_conv_geometry g, diat_tensor *dx,
                               diat_tensor *dweight, diat_tensor *dbias);

/* linear.cu */
void diat_cuda_linear_forward(diat_context *ctx, const diat_tensor *x, const diat_tensor *weight,
                              const diat_tensor *bias, diat_tensor *y);
void diat_cuda_linear_backward(diat_context *ctx, const diat_tensor *x, const diat_tensor *weight,
                               const diat_tensor *dy, diat_tensor *dx, diat_tensor *dweight,
                               diat_tensor *dbias);

/* depthwise.cu */
void diat_cuda_depthwise_conv2d_forward(diat_context *ctx, const diat_tensor *x,
                                        const diat_tensor *weight, const diat_tensor *bias,
                                        diat_conv_geometry g, diat_activation act, float slope,
                                        diat_tensor *y);
void diat_cuda_depthwise_conv2d_backward(diat_context *ctx, const diat_tensor *x,
                                         const diat_tensor *weight, const diat_tensor *dy,
                                         diat_conv_geometry g, diat_tensor *dx,
                                         diat_tensor *dweight, diat_tensor *dbias);

/* norm.cu */
void diat_cuda_batchnorm_forward_train(diat_context *ctx, const diat_tensor *x,
                                       const diat_tensor *gamma, const diat_tensor *beta, float eps,
                                       float momentum, diat_tensor *running_mean,
                                       diat_tensor *running_var, diat_tensor *save_mean,
                                       diat_tensor *save_invstd, diat_tensor *y);
void diat_cuda_batchnorm_forward_infer(diat_context *ctx, const diat_tensor *x,
                                       const diat_tensor *gamma, const diat_tensor *beta,
                                       const diat_tensor *running_mean,
                                       const diat_tensor *running_var, float eps, diat_tensor *y);
void diat_cuda_batchnorm_backward(diat_context *ctx, const diat_tensor *x, const diat_tensor *gamma,
                                  const diat_tensor *save_mean, const diat_tensor *save_invstd,
                                  const diat_tensor *dy, diat_tensor *dx, diat_tensor *dgamma,
                                  diat_tensor *dbeta);
void diat_cuda_instancenorm_forward(diat_context *ctx, const diat_tensor *x,
                                    const diat_tensor *gamma, const diat_tensor *beta, float eps,
                                    diat_tensor *save_mean, diat_tensor *save_invstd,
                                    diat_tensor *y);
void diat_cuda_instancenorm_backward(diat_context *ctx, const diat_tensor *x,
                                     const diat_tensor *gamma, const diat_tensor *save_mean,
                                     const diat_tensor *save_invstd, const diat_tensor *dy,
                                     diat_tensor *dx, diat_tensor *dgamma, diat_tensor *dbeta);

/* elementwise.cu: fill, axpy, add, activations, binarize, compose, mul */
void diat_cuda_fill(diat_context *ctx, float *dst, float value, size_t count);
void diat_cuda_axpy(diat_context *ctx, float alpha, const float *x, float *y, size_t count);
void diat_cuda_add(diat_context *ctx, const float *a, const float *b, float *y, size_t count);
void diat_cuda_add_overlap(diat_context *ctx, const diat_tensor *from, diat_tensor *to);
void diat_cuda_activation_forward(diat_context *ctx, diat_activation kind, float slope,
                                  const float *x, float *y, size_t count);
void diat_cuda_activation_backward(diat_context *ctx, diat_activation kind, float slope,
                                   const float *y, const float *dy, float *dx, size_t count);
void diat_cuda_binarize_forward(diat_context *ctx, const float *x, float threshold, float *y,
                                size_t count);
void diat_cuda_binarize_backward(diat_context *ctx, const float *dy, float *dx, size_t count);
void diat_cuda_compose_forward(diat_context *ctx, const diat_tensor *m, const diat_tensor *a,
                               const diat_tensor *b, diat_tensor *y);
void diat_cuda_compose_backward(diat_context *ctx, const diat_tensor *m, const diat_tensor *a,
                                const diat_tensor *b, const diat_tensor *dy, diat_tensor *dm,
                                diat_tensor *da, diat_tensor *db);
void diat_cuda_mul(diat_context *ctx, const float *a, const float *b, float *y, size_t count);

/* loss.cu: reductions to device scalars, the gradient penalty, Adam */
void diat_cuda_squared_error_forward(diat_context *ctx, const float *a, const float *b,
                                     size_t count, float scale, float *out);
void diat_cuda_squared_error_backward(diat_context *ctx, const float *a, const float *b,
                                      size_t count, float scale, float *da, float *db);
void diat_cuda_sum_forward(diat_context *ctx, const float *x, size_t count, float scale,
                           float *out);
void diat_cuda_ratio_loss_forward(diat_context *ctx, const float *x, size_t count, float target,
                                  float scale, float *out);
void diat_cuda_ratio_loss_backward(diat_context *ctx, const float *x, size_t count, float target,
                                   float scale, float *dx);
void diat_cuda_gradient_penalty_forward(diat_context *ctx, const diat_tensor *g, float lambda,
                                        float *out);
void diat_cuda_gradient_penalty_backward(diat_context *ctx, const diat_tensor *g, float lambda,
                                         diat_tensor *dg);
void diat_cuda_adam_update(diat_context *ctx, float *param, const float *grad, float *m, float *v,
                           size_t count, float lr, float beta1, float beta2, float eps, int step);

/* resample.cu: depth-to-space, upsampling, bilinear resize, concat */
void diat_cuda_depth_to_space_forward(diat_context *ctx, const diat_tensor *x, int r,
                                      diat_tensor *y);
void diat_cuda_depth_to_space_backward(diat_context *ctx, const diat_tensor *dy, int r,
                                       diat_tensor *dx);
void diat_cuda_upsample_nearest_forward(diat_context *ctx, const diat_tensor *x, int f,
                                        diat_tensor *y);
void diat_cuda_upsample_nearest_backward(diat_context *ctx, const diat_tensor *dy, int f,
                                         diat_tensor *dx);
void diat_cuda_upsample_bilinear_forward(diat_context *ctx, const diat_tensor *x, int f,
                                         diat_tensor *y);
void diat_cuda_upsample_bilinear_backward(diat_context *ctx, const diat_tensor *dy, int f,
                                          diat_tensor *dx);
void diat_cuda_resize_bilinear_forward(diat_context *ctx, const diat_tensor *x, diat_tensor *y);
void diat_cuda_resize_bilinear_backward(diat_context *ctx, const diat_tensor *dy, diat_tensor *dx);
void diat_cuda_concat_forward(diat_context *ctx, const diat_tensor *a, const diat_tensor *b,
                              diat_tensor *y);
void diat_cuda_concat_backward(diat_context *ctx, const diat_tensor *dy, diat_tensor *da,
                               diat_tensor *db);

/* pool.cu */
void diat_cuda_avgpool_forward(diat_context *ctx, const diat_tensor *x, int k, int s,
                               diat_tensor *y);
void diat_cuda_avgpool_backward(diat_context *ctx, const diat_tensor *dy, int k, int s,
                                diat_tensor *dx);
void diat_cuda_maxpool_forward(diat_context *ctx, const diat_tensor *x, int k, int s, int p,
                               diat_tensor *y);
void diat_cuda_maxpool_backward(diat_context *ctx, const diat_tensor *x, const diat_tensor *dy,
                                int k, int s, int p, diat_tensor *dx);

/* gaussian.cu */
void diat_cuda_gaussian5_forward(diat_context *ctx, const diat_tensor *x, const float *taps,
                                 diat_tensor *y);
void diat_cuda_gaussian5_backward(diat_context *ctx, const diat_tensor *dy, const float *taps,
                                  diat_tensor *dx);

#endif

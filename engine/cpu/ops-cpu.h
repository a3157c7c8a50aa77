/* Private: the CPU backend's ops, one group per file in engine/cpu/.
 * backend-cpu.c gathers them into the diat_backend table; the signatures
 * are exactly the table's (see diat-train.h for what each op does). */
#ifndef DIAT_OPS_CPU_H
#define DIAT_OPS_CPU_H

#include "context.h"

/* conv.c */
void diat_cpu_conv2d_forward(diat_context *ctx, const diat_tensor *x, const diat_tensor *weight,
                             const diat_tensor *bias, diat_conv_geometry g, diat_activation act,
                             float slope, diat_tensor *y);
void diat_cpu_conv2d_backward(diat_context *ctx, const diat_tensor *x, const diat_tensor *weight,
                              const diat_tensor *dy, diat_conv_geometry g, diat_tensor *dx,
                              diat_tensor *dweight, diat_tensor *dbias);

/* conv-avx512.c: the forward on CPUs with AVX-512 (unless the environment
 * has DIAT_CPU_NO_AVX512=1). Returns 0, having done nothing, when it cannot
 * run here or cannot get its scratch; the caller then takes the BLAS path. */
int diat_cpu_conv2d_forward_avx512(diat_context *ctx, const diat_tensor *x,
                                   const diat_tensor *weight, const diat_tensor *bias,
                                   diat_conv_geometry g, diat_activation act, float slope,
                                   diat_tensor *y);

/* conv-backward-avx512.c: the backward on the same CPUs, for strides 1 and
 * 2. Sets each of *dx, *dweight and *dbias that it has computed to NULL;
 * the caller computes those left (all of them where it cannot run). */
void diat_cpu_conv2d_backward_avx512(diat_context *ctx, const diat_tensor *x,
                                     const diat_tensor *weight, const diat_tensor *dy,
                                     diat_conv_geometry g, diat_tensor **dx, diat_tensor **dweight,
                                     diat_tensor **dbias);

/* linear.c */
void diat_cpu_linear_forward(diat_context *ctx, const diat_tensor *x, const diat_tensor *weight,
                             const diat_tensor *bias, diat_tensor *y);
void diat_cpu_linear_backward(diat_context *ctx, const diat_tensor *x, const diat_tensor *weight,
                              const diat_tensor *dy, diat_tensor *dx, diat_tensor *dweight,
                              diat_tensor *dbias);

/* norm.c */
void diat_cpu_batchnorm_forward_train(diat_context *ctx, const diat_tensor *x,
                                      const diat_tensor *gamma, const diat_tensor *beta, float eps,
                                      float momentum, diat_tensor *running_mean,
                                      diat_tensor *running_var, diat_tensor *save_mean,
                                      diat_tensor *save_invstd, diat_tensor *y);
void diat_cpu_batchnorm_forward_infer(diat_context *ctx, const diat_tensor *x,
                                      const diat_tensor *gamma, const diat_tensor *beta,
                                      const diat_tensor *running_mean,
                                      const diat_tensor *running_var, float eps, diat_tensor *y);
void diat_cpu_batchnorm_backward(diat_context *ctx, const diat_tensor *x, const diat_tensor *gamma,
                                 const diat_tensor *save_mean, const diat_tensor *save_invstd,
                                 const diat_tensor *dy, diat_tensor *dx, diat_tensor *dgamma,
                                 diat_tensor *dbeta);
void diat_cpu_instancenorm_forward(diat_context *ctx, const diat_tensor *x,
                                   const diat_tensor *gamma, const diat_tensor *beta, float eps,
                                   diat_tensor *save_mean, diat_tensor *save_invstd,
                                   diat_tensor *y);
void diat_cpu_instancenorm_backward(diat_context *ctx, const diat_tensor *x,
                                    const diat_tensor *gamma, const diat_tensor *save_mean,
                                    const diat_tensor *save_invstd, const diat_tensor *dy,
                                    diat_tensor *dx, diat_tensor *dgamma, diat_tensor *dbeta);

/* activation.c: split over ctx's threads */
void diat_cpu_activation_forward(diat_context *ctx, diat_activation kind, float slope,
                                 const float *x, float *y, size_t count);
void diat_cpu_activation_backward(diat_context *ctx, diat_activation kind, float slope,
                                  const float *y, const float *dy, float *dx, size_t count);
/* The forward on the calling thread alone, for callers that are
 * themselves a worker-pool job (depthwise.c). */
void diat_cpu_activation_forward_serial(diat_activation kind, float slope, const float *x, float *y,
                                        size_t count);

/* resample.c */
void diat_cpu_depth_to_space_forward(diat_context *ctx, const diat_tensor *x, int r,
                                     diat_tensor *y);
void diat_cpu_depth_to_space_backward(diat_context *ctx, const diat_tensor *dy, int r,
                                      diat_tensor *dx);
void diat_cpu_upsample_nearest_forward(diat_context *ctx, const diat_tensor *x, int f,
                                       diat_tensor *y);
void diat_cpu_upsample_nearest_backward(diat_context *ctx, const diat_tensor *dy, int f,
                                        diat_tensor *dx);
void diat_cpu_upsample_bilinear_forward(diat_context *ctx, const diat_tensor *x, int f,
                                        diat_tensor *y);
void diat_cpu_upsample_bilinear_backward(diat_context *ctx, const diat_tensor *dy, int f,
                                         diat_tensor *dx);
void diat_cpu_avgpool_forward(diat_context *ctx, const diat_tensor *x, int k, int s,
                              diat_tensor *y);
void diat_cpu_avgpool_backward(diat_context *ctx, const diat_tensor *dy, int k, int s,
                               diat_tensor *dx);
void diat_cpu_concat_forward(diat_context *ctx, const diat_tensor *a, const diat_tensor *b,
                             diat_tensor *y);
void diat_cpu_concat_backward(diat_context *ctx, const diat_tensor *dy, diat_tensor *da,
                              diat_tensor *db);

/* pool.c */
void diat_cpu_resize_bilinear_forward(diat_context *ctx, const diat_tensor *x, diat_tensor *y);
void diat_cpu_resize_bilinear_backward(diat_context *ctx, const diat_tensor *dy, diat_tensor *dx);
void diat_cpu_maxpool_forward(diat_context *ctx, const diat_tensor *x, int k, int s, int p,
                              diat_tensor *y);
void diat_cpu_maxpool_backward(diat_context *ctx, const diat_tensor *x, const diat_tensor *dy,
                               int k, int s, int p, diat_tensor *dx);

/* gaussian.c */
void diat_cpu_gaussian5_forward(diat_context *ctx, const diat_tensor *x, const float *taps,
                                diat_tensor *y);
void diat_cpu_gaussian5_backward(diat_context *ctx, const diat_tensor *dy, const float *taps,
                                 diat_tensor *dx);
void diat_cpu_binarize_forward(diat_context *ctx, const float *x, float threshold, float *y,
                               size_t count);
void diat_cpu_binarize_backward(diat_context *ctx, const float *dy, float *dx, size_t count);

/* loss.c */
void diat_cpu_compose_forward(diat_context *ctx, const diat_tensor *m, const diat_tensor *a,
                              const diat_tensor *b, diat_tensor *y);
void diat_cpu_compose_backward(diat_context *ctx, const diat_tensor *m, const diat_tensor *a,
                               const diat_tensor *b, const diat_tensor *dy, diat_tensor *dm,
                               diat_tensor *da, diat_tensor *db);
void diat_cpu_squared_error_forward(diat_context *ctx, const float *a, const float *b, size_t count,
                                    float scale, float *out);
void diat_cpu_squared_error_backward(diat_context *ctx, const float *a, const float *b,
                                     size_t count, float scale, float *da, float *db);
void diat_cpu_sum_forward(diat_context *ctx, const float *x, size_t count, float scale, float *out);
void diat_cpu_ratio_loss_forward(diat_context *ctx, const float *x, size_t count, float target,
                                 float scale, float *out);
void diat_cpu_ratio_loss_backward(diat_context *ctx, const float *x, size_t count, float target,
                                  float scale, float *dx);
void diat_cpu_gradient_penalty_forward(diat_context *ctx, const diat_tensor *g, float lambda,
                                       float *out);
void diat_cpu_gradient_penalty_backward(diat_context *ctx, const diat_tensor *g, float lambda,
                                        diat_tensor *dg);
void diat_cpu_mul(diat_context *ctx, const float *a, const float *b, float *y, size_t count);
void diat_cpu_adam_update(diat_context *ctx, float *param, const float *grad, float *m, float *v,
                          size_t count, float lr, float beta1, float beta2, float eps, int step);

/* depthwise.c */
void diat_cpu_depthwise_conv2d_forward(diat_context *ctx, const diat_tensor *x,
                                       const diat_tensor *weight, const diat_tensor *bias,
                                       diat_conv_geometry g, diat_activation act, float slope,
                                       diat_tensor *y);
void diat_cpu_depthwise_conv2d_backward(diat_context *ctx, const diat_tensor *x,
                                        const diat_tensor *weight, const diat_tensor *dy,
                                        diat_conv_geometry g, diat_tensor *dx, diat_tensor *dweight,
                                        diat_tensor *dbias);

#endif

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

/* activation.c */
void diat_cpu_activation_forward(diat_context *ctx, diat_activation kind, float slope,
                                 const float *x, float *y, size_t count);
void diat_cpu_activation_backward(diat_context *ctx, diat_activation kind, float slope,
                                  const float *y, const float *dy, float *dx, size_t count);

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

/* gaussian.c */
void diat_cpu_gaussian5_forward(diat_context *ctx, const diat_tensor *x, const float *taps,
                                diat_tensor *y);
void diat_cpu_gaussian5_backward(diat_context *ctx, const diat_tensor *dy, const float *taps,
                                 diat_tensor *dx);
void diat_cpu_binarize_forward(diat_context *ctx, const float *x, float threshold, float *y,
                               size_t count);
void diat_cpu_binarize_backward(diat_context *ctx, const float *dy, float *dx, size_t count);

#endif

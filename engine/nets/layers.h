/* Private: building blocks shared by the four networks — the parameter
 * table of a net and convolution layers bound to their parameters. */
#ifndef DIAT_NETS_LAYERS_H
#define DIAT_NETS_LAYERS_H

#include "../context.h"

/* Reserve room for `capacity` parameters. */
diat_status diat_net_setup(diat_net *net, diat_context *ctx, int capacity, diat_error *err);

/* Release every parameter, its gradient and the table. */
void diat_net_release(diat_net *net);

/* Load the weights of a converted network (the face networks, faceres) from
 * `path`: its metadata format must be `format`, else the error says the file
 * is not `what` and that `tool` makes one. */
diat_status diat_net_load_converted(diat_net *net, const char *path, const char *format,
                                    const char *what, const char *tool, diat_error *err);

/* Append a parameter of file shape (n) / (n, c) / (n, c, h, w) by ndim;
 * trainable ones get a gradient buffer. */
diat_param *diat_net_add(diat_net *net, const char *name, int ndim, int n, int c, int h, int w,
                         int trainable, diat_error *err);

diat_status diat_conv_layer_add(diat_net *net, diat_conv_layer *layer, const char *prefix, int in,
                                int out, int kernel, int stride, int pad, int with_bias,
                                diat_error *err);

/* y = act(conv(x; weight, bias)) with the given geometry; y is (re)allocated
 * to the output shape. For weights that are not a layer's own (folded BN). */
diat_status diat_conv_apply(diat_context *ctx, diat_conv_geometry g, int out_channels,
                            const diat_tensor *weight, const diat_tensor *bias,
                            const diat_tensor *x, diat_activation act, float slope, diat_tensor *y,
                            diat_error *err);

/* y = act(conv(x)); y is (re)allocated to the output shape. */
diat_status diat_conv_layer_forward(diat_context *ctx, const diat_conv_layer *layer,
                                    const diat_tensor *x, diat_activation act, float slope,
                                    diat_tensor *y, diat_error *err);

/* Accumulate weight/bias gradients and dx (may be NULL). */
void diat_conv_layer_backward(diat_context *ctx, const diat_conv_layer *layer, const diat_tensor *x,
                              const diat_tensor *dy, diat_tensor *dx);

diat_status diat_batchnorm_layer_add(diat_net *net, diat_batchnorm_layer *layer, const char *prefix,
                                     int channels, diat_error *err);

/* Shape of a tensor's allocation as a template for another. */
diat_status diat_tensor_like(diat_context *ctx, diat_tensor *t, const diat_tensor *shape,
                             diat_error *err);

/* A zeroed view shaped like `shape` on `buffer`, which grows (never shrinks)
 * as needed: one backward scratch serves layers of different shapes. */
diat_status diat_scratch_view(diat_context *ctx, diat_tensor *buffer, const diat_tensor *shape,
                              diat_tensor *view, diat_error *err);

/* The same view left unzeroed, for an op that writes every element of it (a
 * forward): the zeroing would be a wasted pass over memory. */
diat_status diat_scratch_view_for_output(diat_context *ctx, diat_tensor *buffer,
                                         const diat_tensor *shape, diat_tensor *view,
                                         diat_error *err);

/* Apply an activation in place (y = f(y)). */
void diat_activate_inplace(diat_context *ctx, diat_activation kind, float slope, diat_tensor *y);

/* dst = src with one zero row appended to each plane and one zero column to
 * each row: TensorFlow's 'same' padding of a 3x3 stride-2 convolution on an
 * even side (the converted face networks). Host memory: CPU contexts only;
 * dst is [n*c planes of (h+1) x (w+1)]. */
void diat_pad_bottom_right(const diat_tensor *src, diat_tensor *dst);

#define DIAT_BN_EPS 1e-5f
#define DIAT_BN_MOMENTUM 0.1f
#define DIAT_LEAKY_SLOPE 0.2f

#endif

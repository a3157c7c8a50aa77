/* Transform network T: a 10-convolution U-Net whose decoder upsamples by
 * depth-to-space and joins skips by element-wise sum (DIAT's variant).
 * The input is the last skip, so T(x) = x + residual and a zero last layer
 * is the identity. Topology: engine/nets/ARCHITECTURE.md. */
#include "layers.h"

#include <stdio.h>
#include <string.h>

#define LEVELS 5

static void channels_of(int width, int ch[LEVELS])
{
    ch[0] = width;
    ch[1] = 2 * width;
    ch[2] = 4 * width;
    ch[3] = 8 * width;
    ch[4] = 8 * width;
}

diat_status diat_transform_init(diat_transform *t, diat_context *ctx, int width, diat_error *err)
{
    memset(t, 0, sizeof *t);
    if (width < 1 || width > 512)
        return diat_set_error(err, DIAT_ERR_ARGUMENT, "Transform width %d is out of range.", width);
    t->width = width;
    diat_status st = diat_net_setup(&t->net, ctx, 2 * 2 * LEVELS, err);
    if (st != DIAT_OK) return st;
    int ch[LEVELS];
    channels_of(width, ch);
    char name[DIAT_PARAM_NAME_MAX];
    for (int i = 0; i < LEVELS && st == DIAT_OK; i++) {
        snprintf(name, sizeof name, "T.down%d", i + 1);
        st = diat_conv_layer_add(&t->net, &t->down_layer[i], name, i == 0 ? 3 : ch[i - 1], ch[i], 3,
                                 2, 1, 1, err);
    }
    for (int i = 0; i < LEVELS && st == DIAT_OK; i++) {
        /* up(i+1) brings level 4-i to the resolution of level 3-i (or the image). */
        int in = i == 0 ? ch[4] : ch[4 - i];
        int out = i == LEVELS - 1 ? 3 : ch[3 - i];
        snprintf(name, sizeof name, "T.up%d", i + 1);
        st = diat_conv_layer_add(&t->net, &t->up_layer[i], name, in, 4 * out, 3, 1, 1, 1, err);
    }
    if (st != DIAT_OK) diat_transform_free(t);
    return st;
}

void diat_transform_free(diat_transform *t)
{
    diat_context *ctx = t->net.ctx;
    if (!ctx) return;
    for (int i = 0; i < LEVELS; i++) {
        diat_tensor_release(ctx, &t->down[i]);
        diat_tensor_release(ctx, &t->up_conv[i]);
        diat_tensor_release(ctx, &t->up[i]);
        diat_tensor_release(ctx, &t->grad_down[i]);
        diat_tensor_release(ctx, &t->grad_up[i]);
    }
    diat_tensor_release(ctx, &t->grad_up_conv);
    diat_tensor_release(ctx, &t->grad_pre);
    diat_net_release(&t->net);
    memset(t, 0, sizeof *t);
}

/* The tensor summed into up level i: the mirrored encoder level, or x. */
static const diat_tensor *skip_of(const diat_transform *t, int i)
{
    return i == LEVELS - 1 ? &t->input : &t->down[3 - i];
}

diat_status diat_transform_forward(diat_transform *t, const diat_tensor *x, diat_error *err)
{
    diat_context *ctx = t->net.ctx;
    const diat_backend *be = ctx->backend;
    if (x->c != 3 || x->h % 32 || x->w % 32 || x->h < 32 || x->w < 32)
        return diat_set_error(err, DIAT_ERR_ARGUMENT,
                              "T needs a 3-channel image whose sides are multiples of 32 (got "
                              "%dx%dx%d).",
                              x->c, x->h, x->w);
    t->input = *x;
    const diat_tensor *h = x;
    diat_status st;
    for (int i = 0; i < LEVELS; i++) {
        if ((st = diat_conv_layer_forward(ctx, &t->down_layer[i], h, DIAT_ACT_LEAKY_RELU,
                                          DIAT_LEAKY_SLOPE, &t->down[i], err)))
            return st;
        h = &t->down[i];
    }
    for (int i = 0; i < LEVELS; i++) {
        diat_tensor *conv = &t->up_conv[i], *up = &t->up[i];
        if ((st = diat_conv_layer_forward(ctx, &t->up_layer[i], h, DIAT_ACT_IDENTITY, 0.0f, conv,
                                          err)))
            return st;
        if ((st = diat_tensor_ensure(ctx, up, conv->n, conv->c / 4, conv->h * 2, conv->w * 2, err)))
            return st;
        be->depth_to_space_forward(ctx, conv, 2, up);
        be->add(ctx, up->data, skip_of(t, i)->data, up->data, diat_tensor_count(up));
        if (i < LEVELS - 1) diat_activate_inplace(ctx, DIAT_ACT_RELU, 0.0f, up);
        h = up;
    }
    return DIAT_OK;
}

diat_status diat_transform_backward(diat_transform *t, const diat_tensor *dout, diat_tensor *dx,
                                    diat_error *err)
{
    diat_context *ctx = t->net.ctx;
    const diat_backend *be = ctx->backend;
    diat_status st;
    for (int i = 0; i < LEVELS; i++) {
        if ((st = diat_tensor_like(ctx, &t->grad_down[i], &t->down[i], err))) return st;
        diat_tensor_zero(ctx, &t->grad_down[i]);
        if (i < LEVELS - 1) {
            if ((st = diat_tensor_like(ctx, &t->grad_up[i], &t->up[i], err))) return st;
            diat_tensor_zero(ctx, &t->grad_up[i]);
        }
    }
    /* Decoder, last level first. `grad` is dL/d(up[i]) after its activation. */
    for (int i = LEVELS - 1; i >= 0; i--) {
        const diat_tensor *grad = i == LEVELS - 1 ? dout : &t->grad_up[i];
        const diat_tensor *pre = grad;
        diat_tensor pre_view;
        if (i < LEVELS - 1) {
            if ((st = diat_scratch_view(ctx, &t->grad_pre, &t->up[i], &pre_view, err))) return st;
            be->activation_backward(ctx, DIAT_ACT_RELU, 0.0f, t->up[i].data, grad->data,
                                    pre_view.data, diat_tensor_count(&t->up[i]));
            pre = &pre_view;
        }
        /* The sum passes the gradient unchanged to the skip... */
        diat_tensor *skip_grad = i == LEVELS - 1 ? dx : &t->grad_down[3 - i];
        if (skip_grad) be->axpy(ctx, 1.0f, pre->data, skip_grad->data, diat_tensor_count(pre));
        /* ...and through the shuffle and the convolution to the level below. */
        diat_tensor conv_grad;
        if ((st = diat_scratch_view(ctx, &t->grad_up_conv, &t->up_conv[i], &conv_grad, err)))
            return st;
        be->depth_to_space_backward(ctx, pre, 2, &conv_grad);
        const diat_tensor *below = i == 0 ? &t->down[LEVELS - 1] : &t->up[i - 1];
        diat_tensor *below_grad = i == 0 ? &t->grad_down[LEVELS - 1] : &t->grad_up[i - 1];
        diat_conv_layer_backward(ctx, &t->up_layer[i], below, &conv_grad, below_grad);
    }
    /* Encoder. */
    for (int i = LEVELS - 1; i >= 0; i--) {
        diat_tensor pre_view;
        if ((st = diat_scratch_view(ctx, &t->grad_pre, &t->down[i], &pre_view, err))) return st;
        be->activation_backward(ctx, DIAT_ACT_LEAKY_RELU, DIAT_LEAKY_SLOPE, t->down[i].data,
                                t->grad_down[i].data, pre_view.data,
                                diat_tensor_count(&t->down[i]));
        const diat_tensor *below = i == 0 ? &t->input : &t->down[i - 1];
        diat_tensor *below_grad = i == 0 ? dx : &t->grad_down[i - 1];
        diat_conv_layer_backward(ctx, &t->down_layer[i], below, &pre_view, below_grad);
    }
    return DIAT_OK;
}

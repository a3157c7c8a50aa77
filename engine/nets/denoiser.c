/* Denoiser DN for the perceptual regularization: a plain fully
 * convolutional network that predicts the noise, DN(x) = x - noise(x), so
 * ||DN(y) - y||^2 measures the artifacts DN would remove from a result. */
#include "layers.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

diat_status diat_denoiser_init(diat_denoiser *dn, diat_context *ctx, int width, int depth,
                               diat_error *err)
{
    memset(dn, 0, sizeof *dn);
    if (width < 1 || width > 512 || depth < 2 || depth > 64)
        return diat_set_error(err, DIAT_ERR_ARGUMENT,
                              "Denoiser width %d / depth %d is out of range.", width, depth);
    dn->width = width;
    dn->depth = depth;
    dn->conv_layer = calloc((size_t)depth, sizeof *dn->conv_layer);
    dn->act = calloc((size_t)depth, sizeof *dn->act);
    dn->grad_act = calloc((size_t)depth, sizeof *dn->grad_act);
    if (!dn->conv_layer || !dn->act || !dn->grad_act) {
        free(dn->conv_layer);
        free(dn->act);
        free(dn->grad_act);
        return diat_set_error(err, DIAT_ERR_MEMORY, "Out of memory for the denoiser.");
    }
    diat_status st = diat_net_setup(&dn->net, ctx, 2 * depth, err);
    char name[DIAT_PARAM_NAME_MAX];
    for (int i = 0; i < depth && st == DIAT_OK; i++) {
        snprintf(name, sizeof name, "DN.conv%d", i + 1);
        st = diat_conv_layer_add(&dn->net, &dn->conv_layer[i], name, i == 0 ? 3 : width,
                                 i == depth - 1 ? 3 : width, 3, 1, 1, 1, err);
    }
    if (st != DIAT_OK) diat_denoiser_free(dn);
    return st;
}

void diat_denoiser_free(diat_denoiser *dn)
{
    diat_context *ctx = dn->net.ctx;
    if (!ctx) return;
    for (int i = 0; i < dn->depth; i++) {
        if (dn->act) diat_tensor_release(ctx, &dn->act[i]);
        if (dn->grad_act) diat_tensor_release(ctx, &dn->grad_act[i]);
    }
    diat_tensor_release(ctx, &dn->out);
    diat_tensor_release(ctx, &dn->grad_pre);
    free(dn->conv_layer);
    free(dn->act);
    free(dn->grad_act);
    diat_net_release(&dn->net);
    memset(dn, 0, sizeof *dn);
}

diat_status diat_denoiser_forward(diat_denoiser *dn, const diat_tensor *x, diat_error *err)
{
    diat_context *ctx = dn->net.ctx;
    const diat_backend *be = ctx->backend;
    if (x->c != 3)
        return diat_set_error(err, DIAT_ERR_ARGUMENT, "DN needs 3-channel images (got %d).", x->c);
    dn->input = *x;
    const diat_tensor *h = x;
    diat_status st;
    for (int i = 0; i < dn->depth; i++) {
        diat_activation act = i < dn->depth - 1 ? DIAT_ACT_RELU : DIAT_ACT_IDENTITY;
        if ((st = diat_conv_layer_forward(ctx, &dn->conv_layer[i], h, act, 0.0f, &dn->act[i], err)))
            return st;
        h = &dn->act[i];
    }
    if ((st = diat_tensor_like(ctx, &dn->out, x, err))) return st;
    size_t count = diat_tensor_count(x);
    diat_tensor_zero(ctx, &dn->out);
    be->axpy(ctx, 1.0f, x->data, dn->out.data, count);
    be->axpy(ctx, -1.0f, dn->act[dn->depth - 1].data, dn->out.data, count);
    return DIAT_OK;
}

diat_status diat_denoiser_backward(diat_denoiser *dn, const diat_tensor *dout, diat_tensor *dx,
                                   diat_error *err)
{
    diat_context *ctx = dn->net.ctx;
    const diat_backend *be = ctx->backend;
    int last = dn->depth - 1;
    size_t count = diat_tensor_count(dout);
    diat_status st;
    for (int i = 0; i < dn->depth; i++) {
        if ((st = diat_tensor_like(ctx, &dn->grad_act[i], &dn->act[i], err))) return st;
        diat_tensor_zero(ctx, &dn->grad_act[i]);
    }
    /* out = x - noise */
    if (dx) be->axpy(ctx, 1.0f, dout->data, dx->data, count);
    be->axpy(ctx, -1.0f, dout->data, dn->grad_act[last].data, count);
    for (int i = last; i >= 0; i--) {
        const diat_tensor *grad = &dn->grad_act[i];
        diat_tensor pre;
        if (i < last) {
            if ((st = diat_scratch_view(ctx, &dn->grad_pre, &dn->act[i], &pre, err))) return st;
            be->activation_backward(ctx, DIAT_ACT_RELU, 0.0f, dn->act[i].data, grad->data, pre.data,
                                    diat_tensor_count(&pre));
            grad = &pre;
        }
        const diat_tensor *below = i == 0 ? &dn->input : &dn->act[i - 1];
        diat_tensor *below_grad = i == 0 ? dx : &dn->grad_act[i - 1];
        diat_conv_layer_backward(ctx, &dn->conv_layer[i], below, grad, below_grad);
    }
    return DIAT_OK;
}

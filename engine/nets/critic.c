/* Critic D for the Wasserstein GAN with gradient penalty: five strided 4x4
 * convolutions with LeakyReLU and no normalisation (batch norm would break
 * the per-sample gradient penalty), then one linear score. Layer-4 and
 * layer-5 activations double as the adaptive perceptual loss's features. */
#include "layers.h"

#include <stdio.h>
#include <string.h>

#define LAYERS 5

diat_status diat_critic_init(diat_critic *d, diat_context *ctx, int width, diat_error *err)
{
    memset(d, 0, sizeof *d);
    if (width < 1 || width > 512)
        return diat_set_error(err, DIAT_ERR_ARGUMENT, "Critic width %d is out of range.", width);
    d->width = width;
    static const int mult[LAYERS] = {1, 2, 4, 8, 8};
    diat_status st = diat_net_setup(&d->net, ctx, 2 * LAYERS + 2, err);
    char name[DIAT_PARAM_NAME_MAX];
    for (int i = 0; i < LAYERS && st == DIAT_OK; i++) {
        snprintf(name, sizeof name, "D.conv%d", i + 1);
        st = diat_conv_layer_add(&d->net, &d->conv_layer[i], name, i == 0 ? 3 : mult[i - 1] * width,
                                 mult[i] * width, 4, 2, 1, 1, err);
    }
    /* The score layer sees the 4x4 map of a 128x128 input. */
    int fc_in = mult[LAYERS - 1] * width * 4 * 4;
    if (st == DIAT_OK &&
        !(d->fc_weight = diat_net_add(&d->net, "D.fc.weight", 2, 1, fc_in, 1, 1, 1, err)))
        st = err ? err->code : DIAT_ERR_MEMORY;
    if (st == DIAT_OK && !(d->fc_bias = diat_net_add(&d->net, "D.fc.bias", 1, 1, 1, 1, 1, 1, err)))
        st = err ? err->code : DIAT_ERR_MEMORY;
    if (st != DIAT_OK) diat_critic_free(d);
    return st;
}

void diat_critic_free(diat_critic *d)
{
    diat_context *ctx = d->net.ctx;
    if (!ctx) return;
    for (int i = 0; i < LAYERS; i++) {
        diat_tensor_release(ctx, &d->feat[i]);
        diat_tensor_release(ctx, &d->grad_feat[i]);
    }
    diat_tensor_release(ctx, &d->score);
    diat_tensor_release(ctx, &d->grad_pre);
    diat_net_release(&d->net);
    memset(d, 0, sizeof *d);
}

diat_status diat_critic_forward(diat_critic *d, const diat_tensor *x, diat_error *err)
{
    diat_context *ctx = d->net.ctx;
    if (x->c != 3 || x->h != DIAT_FACE_SIZE || x->w != DIAT_FACE_SIZE)
        return diat_set_error(err, DIAT_ERR_ARGUMENT, "D needs 3x128x128 faces (got %dx%dx%d).",
                              x->c, x->h, x->w);
    d->input = *x;
    const diat_tensor *h = x;
    diat_status st;
    for (int i = 0; i < LAYERS; i++) {
        if ((st = diat_conv_layer_forward(ctx, &d->conv_layer[i], h, DIAT_ACT_LEAKY_RELU,
                                          DIAT_LEAKY_SLOPE, &d->feat[i], err)))
            return st;
        h = &d->feat[i];
    }
    if ((st = diat_tensor_ensure(ctx, &d->score, x->n, 1, 1, 1, err))) return st;
    ctx->backend->linear_forward(ctx, h, &d->fc_weight->value, &d->fc_bias->value, &d->score);
    return DIAT_OK;
}

diat_status diat_critic_backward(diat_critic *d, const diat_tensor *dscore,
                                 const diat_tensor *dfeat4, const diat_tensor *dfeat5,
                                 diat_tensor *dx, diat_error *err)
{
    diat_context *ctx = d->net.ctx;
    const diat_backend *be = ctx->backend;
    diat_status st;
    for (int i = 0; i < LAYERS; i++) {
        if ((st = diat_tensor_like(ctx, &d->grad_feat[i], &d->feat[i], err))) return st;
        diat_tensor_zero(ctx, &d->grad_feat[i]);
    }
    if (dscore)
        be->linear_backward(ctx, &d->feat[LAYERS - 1], &d->fc_weight->value, dscore,
                            &d->grad_feat[LAYERS - 1], &d->fc_weight->grad, &d->fc_bias->grad);
    if (dfeat4) be->axpy(ctx, 1.0f, dfeat4->data, d->grad_feat[3].data, diat_tensor_count(dfeat4));
    if (dfeat5) be->axpy(ctx, 1.0f, dfeat5->data, d->grad_feat[4].data, diat_tensor_count(dfeat5));
    for (int i = LAYERS - 1; i >= 0; i--) {
        diat_tensor pre;
        if ((st = diat_scratch_view(ctx, &d->grad_pre, &d->feat[i], &pre, err))) return st;
        be->activation_backward(ctx, DIAT_ACT_LEAKY_RELU, DIAT_LEAKY_SLOPE, d->feat[i].data,
                                d->grad_feat[i].data, pre.data, diat_tensor_count(&pre));
        const diat_tensor *below = i == 0 ? &d->input : &d->feat[i - 1];
        diat_tensor *below_grad = i == 0 ? dx : &d->grad_feat[i - 1];
        diat_conv_layer_backward(ctx, &d->conv_layer[i], below, &pre, below_grad);
    }
    return DIAT_OK;
}

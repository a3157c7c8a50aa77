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
        diat_tensor_release(ctx, &d->gp_feat[i]);
        diat_tensor_release(ctx, &d->gp_pre[i]);
    }
    diat_tensor_release(ctx, &d->score);
    diat_tensor_release(ctx, &d->grad_pre);
    diat_tensor_release(ctx, &d->gp_ones);
    diat_tensor_release(ctx, &d->gp_state[0]);
    diat_tensor_release(ctx, &d->gp_state[1]);
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
                            &d->grad_feat[LAYERS - 1], diat_param_grad(d->fc_weight),
                            diat_param_grad(d->fc_bias));
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

/* ---- WGAN-GP: the input gradient and its exact backward -----------------
 *
 * Forward: a_0 = x, z_i = W_i * a_{i-1} + b_i, a_i = lrelu(z_i), s = w_fc . a_5.
 * The input gradient of sum(s) runs the ordinary backward with ones for
 * dscore, but builds no parameter gradient:
 *   h_5 = w_fc (per sample),  p_i = h_i (.) D_i,  h_{i-1} = W_i^T p_i,  g = h_0,
 * where D_i = lrelu'(z_i) is 1 or the slope. LeakyReLU is piecewise linear,
 * so D_i is constant almost everywhere: g is multilinear in the weights and
 * the biases enter only through D_i, so they get no gradient from a penalty
 * on g. Differentiating L(g) with u_0 = dL/dg = dL/dh_0:
 *   h_{i-1} = W_i^T p_i   gives   dL/dW_i = (weight gradient of a convolution
 *                                  with input u_{i-1} and output gradient p_i),
 *                                  dL/dp_i = W_i * u_{i-1} (a plain convolution);
 *   p_i = h_i (.) D_i     gives   u_i = dL/dh_i = (W_i * u_{i-1}) (.) D_i;
 *   h_5 = w_fc            gives   dL/dw_fc = sum over the batch of u_5.
 * That is a forward pass of u through D's convolutions (no bias, the same
 * slopes D_i), collecting the weight gradients on the way. */

diat_status diat_critic_input_gradient(diat_critic *d, diat_tensor *g, diat_error *err)
{
    diat_context *ctx = d->net.ctx;
    const diat_backend *be = ctx->backend;
    if (!d->input.data || !d->feat[LAYERS - 1].data || d->feat[LAYERS - 1].n != d->input.n)
        return diat_set_error(err, DIAT_ERR_ARGUMENT,
                              "D's input gradient needs a forward pass on the same batch first.");
    diat_status st;
    const int n = d->input.n;
    if ((st = diat_tensor_ensure(ctx, &d->gp_ones, n, 1, 1, 1, err))) return st;
    be->fill(ctx, d->gp_ones.data, 1.0f, (size_t)n);
    /* Keep the activations: the double backward needs their slopes even if
     * D runs on other batches (real, fake) before it. */
    for (int i = 0; i < LAYERS; i++) {
        if ((st = diat_tensor_like(ctx, &d->gp_feat[i], &d->feat[i], err))) return st;
        if ((st = diat_tensor_like(ctx, &d->gp_pre[i], &d->feat[i], err))) return st;
        /* The identity activation is the backends' device-side copy. */
        be->activation_forward(ctx, DIAT_ACT_IDENTITY, 0.0f, d->feat[i].data, d->gp_feat[i].data,
                               diat_tensor_count(&d->feat[i]));
    }

    /* h_5 = w_fc for every sample; NULL weight and bias gradients. */
    diat_tensor h;
    if ((st = diat_scratch_view(ctx, &d->grad_pre, &d->feat[LAYERS - 1], &h, err))) return st;
    be->linear_backward(ctx, &d->feat[LAYERS - 1], &d->fc_weight->value, &d->gp_ones, &h, NULL,
                        NULL);
    for (int i = LAYERS - 1; i >= 0; i--) {
        diat_tensor *pre = &d->gp_pre[i];
        diat_tensor_zero(ctx, pre);
        be->activation_backward(ctx, DIAT_ACT_LEAKY_RELU, DIAT_LEAKY_SLOPE, d->gp_feat[i].data,
                                h.data, pre->data, diat_tensor_count(pre));
        /* h_i is spent: its scratch now receives h_{i-1} (or g itself). */
        if (i > 0) {
            if ((st = diat_scratch_view(ctx, &d->grad_pre, &d->feat[i - 1], &h, err))) return st;
        } else {
            if ((st = diat_tensor_like(ctx, g, &d->input, err))) return st;
            diat_tensor_zero(ctx, g);
            h = *g;
        }
        const diat_tensor *below = i == 0 ? &d->input : &d->feat[i - 1];
        be->conv2d_backward(ctx, below, &d->conv_layer[i].weight->value, pre,
                            d->conv_layer[i].geometry, &h, NULL, NULL);
    }
    return DIAT_OK;
}

diat_status diat_critic_input_gradient_backward(diat_critic *d, const diat_tensor *u,
                                                diat_error *err)
{
    diat_context *ctx = d->net.ctx;
    const diat_backend *be = ctx->backend;
    if (!d->gp_pre[0].data)
        return diat_set_error(
            err, DIAT_ERR_ARGUMENT,
            "D's input-gradient backward needs diat_critic_input_gradient first.");
    if (u->n != d->gp_pre[0].n || u->c != 3 || u->h != DIAT_FACE_SIZE || u->w != DIAT_FACE_SIZE)
        return diat_set_error(err, DIAT_ERR_ARGUMENT,
                              "The gradient for D's input gradient is %dx%dx%dx%d; expected "
                              "%dx3x%dx%d.",
                              u->n, u->c, u->h, u->w, d->gp_pre[0].n, DIAT_FACE_SIZE,
                              DIAT_FACE_SIZE);
    diat_status st;
    diat_tensor below = *u; /* u_{i-1} */
    for (int i = 0; i < LAYERS; i++) {
        const diat_conv_layer *layer = &d->conv_layer[i];
        diat_tensor *dweight = diat_param_grad(layer->weight);
        be->conv2d_backward(ctx, &below, &layer->weight->value, &d->gp_pre[i], layer->geometry,
                            NULL, dweight, NULL);
        /* dL/dp_i = W_i * u_{i-1}: no bias, no activation (written, not added). */
        diat_tensor dpre, above;
        if ((st = diat_scratch_view_for_output(ctx, &d->grad_pre, &d->gp_pre[i], &dpre, err)))
            return st;
        be->conv2d_forward(ctx, &below, &layer->weight->value, NULL, layer->geometry,
                           DIAT_ACT_IDENTITY, 0.0f, &dpre);
        /* u_i = dL/dp_i (.) D_i, into the ping-pong buffer below does not use. */
        if ((st = diat_scratch_view(ctx, &d->gp_state[i % 2], &d->gp_feat[i], &above, err)))
            return st;
        be->activation_backward(ctx, DIAT_ACT_LEAKY_RELU, DIAT_LEAKY_SLOPE, d->gp_feat[i].data,
                                dpre.data, above.data, diat_tensor_count(&above));
        below = above;
    }
    if (diat_param_grad(d->fc_weight))
        be->linear_backward(ctx, &below, &d->fc_weight->value, &d->gp_ones, NULL,
                            diat_param_grad(d->fc_weight), NULL);
    return DIAT_OK;
}

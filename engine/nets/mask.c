/* Mask network M: five convolutions each followed by batch norm, ReLU after
 * the first four and a sigmoid after the last, giving the soft mask e at a
 * quarter of the image size. e is upsampled 4x, binarized at 0.5 with a
 * straight-through gradient (so M still learns through the hard mask), and
 * softened by a 5x5 Gaussian into the final mask m. */
#include "layers.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LAYERS 5
#define MASK_UPSAMPLE 4
#define MASK_THRESHOLD 0.5f

static void layer_shape(int width, int i, int *in, int *out, int *stride)
{
    static const int mult_in[LAYERS] = {0, 1, 2, 2, 2};
    static const int mult_out[LAYERS] = {1, 2, 2, 2, 0};
    *in = i == 0 ? 3 : mult_in[i] * width;
    *out = i == LAYERS - 1 ? 1 : mult_out[i] * width;
    *stride = i < 2 ? 2 : 1;
}

diat_status diat_mask_init(diat_mask *m, diat_context *ctx, int width, diat_error *err)
{
    memset(m, 0, sizeof *m);
    if (width < 1 || width > 512)
        return diat_set_error(err, DIAT_ERR_ARGUMENT, "Mask width %d is out of range.", width);
    m->width = width;
    diat_status st = diat_net_setup(&m->net, ctx, LAYERS * 5, err);
    char name[DIAT_PARAM_NAME_MAX];
    for (int i = 0; i < LAYERS && st == DIAT_OK; i++) {
        int in, out, stride;
        layer_shape(width, i, &in, &out, &stride);
        snprintf(name, sizeof name, "M.conv%d", i + 1);
        /* No conv bias: the batch norm's beta takes that role. */
        st = diat_conv_layer_add(&m->net, &m->conv_layer[i], name, in, out, 3, stride, 1, 0, err);
        if (st == DIAT_OK) {
            snprintf(name, sizeof name, "M.bn%d", i + 1);
            st = diat_batchnorm_layer_add(&m->net, &m->bn_layer[i], name, out, err);
        }
    }
    if (st != DIAT_OK) diat_mask_free(m);
    return st;
}

void diat_mask_free(diat_mask *m)
{
    diat_context *ctx = m->net.ctx;
    if (!ctx) return;
    for (int i = 0; i < LAYERS; i++) {
        diat_tensor_release(ctx, &m->conv[i]);
        diat_tensor_release(ctx, &m->norm[i]);
        diat_tensor_release(ctx, &m->save_mean[i]);
        diat_tensor_release(ctx, &m->save_invstd[i]);
        diat_tensor_release(ctx, &m->grad_norm[i]);
        diat_tensor_release(ctx, &m->folded_weight[i]);
        diat_tensor_release(ctx, &m->folded_bias[i]);
    }
    diat_tensor *rest[] = {&m->upsampled, &m->binary,  &m->mask,       &m->grad_pre,
                           &m->grad_conv, &m->grad_up, &m->grad_binary};
    for (size_t i = 0; i < sizeof rest / sizeof rest[0]; i++) diat_tensor_release(ctx, rest[i]);
    diat_net_release(&m->net);
    memset(m, 0, sizeof *m);
}

/* Training: batch statistics, kept for backward; updates running stats. */
static diat_status normalize(diat_mask *m, int i, diat_error *err)
{
    diat_context *ctx = m->net.ctx;
    const diat_batchnorm_layer *bn = &m->bn_layer[i];
    diat_tensor *x = &m->conv[i], *y = &m->norm[i];
    diat_status st;
    if ((st = diat_tensor_like(ctx, y, x, err)) ||
        (st = diat_tensor_ensure(ctx, &m->save_mean[i], x->c, 1, 1, 1, err)) ||
        (st = diat_tensor_ensure(ctx, &m->save_invstd[i], x->c, 1, 1, 1, err)))
        return st;
    ctx->backend->batchnorm_forward_train(
        ctx, x, &bn->gamma->value, &bn->beta->value, DIAT_BN_EPS, DIAT_BN_MOMENTUM,
        &bn->running_mean->value, &bn->running_var->value, &m->save_mean[i], &m->save_invstd[i], y);
    return DIAT_OK;
}

/* At inference batch norm is an affine map per channel, so it folds into the
 * convolution: w' = w * s, b' = beta - mean * s with s = gamma / sqrt(var +
 * eps). Then conv, bias and activation run as one fused op. Refolded on
 * every forward (a few thousand weights) so it can never go stale. */
static diat_status fold_batchnorm(diat_mask *m, int i, diat_error *err)
{
    diat_context *ctx = m->net.ctx;
    const diat_conv_layer *layer = &m->conv_layer[i];
    const diat_batchnorm_layer *bn = &m->bn_layer[i];
    const diat_tensor *weight = &layer->weight->value;
    diat_status st;
    if ((st = diat_tensor_like(ctx, &m->folded_weight[i], weight, err)) ||
        (st = diat_tensor_ensure(ctx, &m->folded_bias[i], layer->out, 1, 1, 1, err)))
        return st;
    size_t count = diat_tensor_count(weight), per_out = count / (size_t)layer->out;
    float *w = malloc((count + 5 * (size_t)layer->out) * sizeof *w);
    if (!w) return diat_set_error(err, DIAT_ERR_MEMORY, "Out of memory folding batch norm.");
    float *gamma = w + count, *beta = gamma + layer->out, *mean = beta + layer->out;
    float *var = mean + layer->out, *bias = var + layer->out;
    diat_tensor_download(ctx, weight, w);
    diat_tensor_download(ctx, &bn->gamma->value, gamma);
    diat_tensor_download(ctx, &bn->beta->value, beta);
    diat_tensor_download(ctx, &bn->running_mean->value, mean);
    diat_tensor_download(ctx, &bn->running_var->value, var);
    for (int o = 0; o < layer->out; o++) {
        float scale = gamma[o] / sqrtf(var[o] + DIAT_BN_EPS);
        for (size_t k = 0; k < per_out; k++) w[(size_t)o * per_out + k] *= scale;
        bias[o] = beta[o] - mean[o] * scale;
    }
    diat_tensor_upload(ctx, &m->folded_weight[i], w);
    diat_tensor_upload(ctx, &m->folded_bias[i], bias);
    free(w);
    return DIAT_OK;
}

static diat_activation activation_of(int i)
{
    return i == LAYERS - 1 ? DIAT_ACT_SIGMOID : DIAT_ACT_RELU;
}

diat_status diat_mask_forward(diat_mask *m, const diat_tensor *x, diat_error *err)
{
    diat_context *ctx = m->net.ctx;
    const diat_backend *be = ctx->backend;
    if (x->c != 3 || x->h % MASK_UPSAMPLE || x->w % MASK_UPSAMPLE)
        return diat_set_error(err, DIAT_ERR_ARGUMENT,
                              "M needs a 3-channel image whose sides are multiples of 4 (got "
                              "%dx%dx%d).",
                              x->c, x->h, x->w);
    m->input = *x;
    const diat_tensor *h = x;
    diat_status st;
    for (int i = 0; i < LAYERS; i++) {
        const diat_conv_layer *layer = &m->conv_layer[i];
        if (m->net.training) {
            if ((st = diat_conv_layer_forward(ctx, layer, h, DIAT_ACT_IDENTITY, 0.0f, &m->conv[i],
                                              err)) ||
                (st = normalize(m, i, err)))
                return st;
            ctx->backend->activation_forward(ctx, activation_of(i), 0.0f, m->norm[i].data,
                                             m->norm[i].data, diat_tensor_count(&m->norm[i]));
        } else if ((st = fold_batchnorm(m, i, err)) ||
                   (st = diat_conv_apply(ctx, layer->geometry, layer->out, &m->folded_weight[i],
                                         &m->folded_bias[i], h, activation_of(i), 0.0f, &m->norm[i],
                                         err))) {
            return st;
        }
        h = &m->norm[i];
    }
    const diat_tensor *e = &m->norm[LAYERS - 1];
    if ((st = diat_tensor_ensure(ctx, &m->upsampled, e->n, 1, e->h * MASK_UPSAMPLE,
                                 e->w * MASK_UPSAMPLE, err)) ||
        (st = diat_tensor_like(ctx, &m->binary, &m->upsampled, err)) ||
        (st = diat_tensor_like(ctx, &m->mask, &m->upsampled, err)))
        return st;
    be->upsample_bilinear_forward(ctx, e, MASK_UPSAMPLE, &m->upsampled);
    be->binarize_forward(ctx, m->upsampled.data, MASK_THRESHOLD, m->binary.data,
                         diat_tensor_count(&m->binary));
    be->gaussian5_forward(ctx, &m->binary, diat_gaussian5_taps(), &m->mask);
    return DIAT_OK;
}

diat_status diat_mask_backward(diat_mask *m, const diat_tensor *dmask, const diat_tensor *de,
                               diat_tensor *dx, diat_error *err)
{
    diat_context *ctx = m->net.ctx;
    const diat_backend *be = ctx->backend;
    if (!m->net.training)
        return diat_set_error(err, DIAT_ERR_ARGUMENT,
                              "M's backward pass needs a forward pass in training mode.");
    diat_status st;
    for (int i = 0; i < LAYERS; i++) {
        if ((st = diat_tensor_like(ctx, &m->grad_norm[i], &m->norm[i], err))) return st;
        diat_tensor_zero(ctx, &m->grad_norm[i]);
    }
    diat_tensor *grad_e = &m->grad_norm[LAYERS - 1];
    if (de) be->axpy(ctx, 1.0f, de->data, grad_e->data, diat_tensor_count(grad_e));
    if (dmask) {
        /* m = G(binarize(up(e))): adjoint of the Gaussian, straight through
         * the threshold, adjoint of the upsampling. */
        if ((st = diat_tensor_like(ctx, &m->grad_binary, &m->binary, err)) ||
            (st = diat_tensor_like(ctx, &m->grad_up, &m->upsampled, err)))
            return st;
        diat_tensor_zero(ctx, &m->grad_binary);
        diat_tensor_zero(ctx, &m->grad_up);
        be->gaussian5_backward(ctx, dmask, diat_gaussian5_taps(), &m->grad_binary);
        be->binarize_backward(ctx, m->grad_binary.data, m->grad_up.data,
                              diat_tensor_count(&m->grad_up));
        be->upsample_bilinear_backward(ctx, &m->grad_up, MASK_UPSAMPLE, grad_e);
    }
    for (int i = LAYERS - 1; i >= 0; i--) {
        const diat_batchnorm_layer *bn = &m->bn_layer[i];
        diat_tensor pre, conv_grad;
        if ((st = diat_scratch_view(ctx, &m->grad_pre, &m->norm[i], &pre, err))) return st;
        be->activation_backward(ctx, activation_of(i), 0.0f, m->norm[i].data, m->grad_norm[i].data,
                                pre.data, diat_tensor_count(&pre));
        if ((st = diat_scratch_view(ctx, &m->grad_conv, &m->conv[i], &conv_grad, err))) return st;
        be->batchnorm_backward(ctx, &m->conv[i], &bn->gamma->value, &m->save_mean[i],
                               &m->save_invstd[i], &pre, &conv_grad, diat_param_grad(bn->gamma),
                               diat_param_grad(bn->beta));
        const diat_tensor *below = i == 0 ? &m->input : &m->norm[i - 1];
        diat_tensor *below_grad = i == 0 ? dx : &m->grad_norm[i - 1];
        diat_conv_layer_backward(ctx, &m->conv_layer[i], below, &conv_grad, below_grad);
    }
    return DIAT_OK;
}

/* Attribute classifier C: judges whether a face has each of a few CelebA
 * attributes, independently of the critic D that trained the edit (issue 7's
 * "attribute success" needs a judge the generator never saw).
 *
 *   x [n, 3, S, S] in [-1, 1]
 *   C.conv{i}, C.bn{i}, i = 1..5: conv 4x4 stride 2 pad 1, no bias (the
 *       batch norm's beta is one), batch norm, LeakyReLU(0.2);
 *       channels w, 2w, 4w, 8w, 8w; S/2 .. S/32 (4x4 for S = 128)
 *   global average pool -> [n, 8w]
 *   C.fc: linear 8w -> outputs (logits); sigmoid -> probabilities
 *
 * Batch norm because the classifier, unlike D, has no per-sample gradient
 * penalty to respect, and it lets a small network train fast at a high
 * learning rate. Global average pooling keeps the head tiny (8w x outputs),
 * so almost every weight is convolutional and shared over the face. Only
 * ops every backend has are used, so it trains on the CPU and CUDA alike. */
#include "layers.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LAYERS DIAT_CLASSIFIER_LAYERS
#define CLASSIFIER_FORMAT "diat-classifier"

static const int kMult[LAYERS] = {1, 2, 4, 8, 8};

diat_status diat_classifier_init(diat_classifier *c, diat_context *ctx, int width, int outputs,
                                 diat_error *err)
{
    memset(c, 0, sizeof *c);
    if (width < 1 || width > 512)
        return diat_set_error(err, DIAT_ERR_ARGUMENT, "Classifier width %d is out of range.",
                              width);
    if (outputs < 1 || outputs > DIAT_CLASSIFIER_MAX_OUTPUTS)
        return diat_set_error(err, DIAT_ERR_ARGUMENT, "A classifier has 1 to %d outputs, not %d.",
                              DIAT_CLASSIFIER_MAX_OUTPUTS, outputs);
    c->width = width;
    c->outputs = outputs;
    diat_status st = diat_net_setup(&c->net, ctx, LAYERS * 5 + 2, err);
    char name[DIAT_PARAM_NAME_MAX];
    for (int i = 0; i < LAYERS && st == DIAT_OK; i++) {
        int in = i == 0 ? 3 : kMult[i - 1] * width;
        snprintf(name, sizeof name, "C.conv%d", i + 1);
        st = diat_conv_layer_add(&c->net, &c->conv_layer[i], name, in, kMult[i] * width, 4, 2, 1, 0,
                                 err);
        if (st == DIAT_OK) {
            snprintf(name, sizeof name, "C.bn%d", i + 1);
            st = diat_batchnorm_layer_add(&c->net, &c->bn_layer[i], name, kMult[i] * width, err);
        }
    }
    int features = kMult[LAYERS - 1] * width;
    if (st == DIAT_OK &&
        !(c->fc_weight = diat_net_add(&c->net, "C.fc.weight", 2, outputs, features, 1, 1, 1, err)))
        st = err ? err->code : DIAT_ERR_MEMORY;
    if (st == DIAT_OK &&
        !(c->fc_bias = diat_net_add(&c->net, "C.fc.bias", 1, outputs, 1, 1, 1, 1, err)))
        st = err ? err->code : DIAT_ERR_MEMORY;
    if (st != DIAT_OK) diat_classifier_free(c);
    return st;
}

void diat_classifier_free(diat_classifier *c)
{
    diat_context *ctx = c->net.ctx;
    if (!ctx) return;
    for (int i = 0; i < LAYERS; i++) {
        diat_tensor *per_layer[] = {&c->conv[i], &c->act[i], &c->save_mean[i], &c->save_invstd[i],
                                    &c->grad_act[i]};
        for (size_t k = 0; k < sizeof per_layer / sizeof per_layer[0]; k++)
            diat_tensor_release(ctx, per_layer[k]);
    }
    diat_tensor *rest[] = {&c->pooled,    &c->logits,      &c->prob,        &c->grad_pre,
                           &c->grad_conv, &c->grad_pooled, &c->grad_logits, &c->faces};
    for (size_t k = 0; k < sizeof rest / sizeof rest[0]; k++) diat_tensor_release(ctx, rest[k]);
    diat_net_release(&c->net);
    memset(c, 0, sizeof *c);
}

/* Batch norm of layer i, then LeakyReLU in place: batch statistics (kept
 * for backward) in training, running statistics at inference. */
static diat_status normalize(diat_classifier *c, int i, diat_error *err)
{
    diat_context *ctx = c->net.ctx;
    const diat_batchnorm_layer *bn = &c->bn_layer[i];
    diat_tensor *x = &c->conv[i], *y = &c->act[i];
    diat_status st;
    if ((st = diat_tensor_like(ctx, y, x, err))) return st;
    if (c->net.training) {
        if ((st = diat_tensor_ensure(ctx, &c->save_mean[i], x->c, 1, 1, 1, err)) ||
            (st = diat_tensor_ensure(ctx, &c->save_invstd[i], x->c, 1, 1, 1, err)))
            return st;
        ctx->backend->batchnorm_forward_train(ctx, x, &bn->gamma->value, &bn->beta->value,
                                              DIAT_BN_EPS, DIAT_BN_MOMENTUM,
                                              &bn->running_mean->value, &bn->running_var->value,
                                              &c->save_mean[i], &c->save_invstd[i], y);
    } else {
        ctx->backend->batchnorm_forward_infer(ctx, x, &bn->gamma->value, &bn->beta->value,
                                              &bn->running_mean->value, &bn->running_var->value,
                                              DIAT_BN_EPS, y);
    }
    diat_activate_inplace(ctx, DIAT_ACT_LEAKY_RELU, DIAT_LEAKY_SLOPE, y);
    return DIAT_OK;
}

diat_status diat_classifier_forward(diat_classifier *c, const diat_tensor *x, diat_error *err)
{
    diat_context *ctx = c->net.ctx;
    const diat_backend *be = ctx->backend;
    if (x->c != 3 || x->h != x->w || x->h < 32 || x->h % 32)
        return diat_set_error(err, DIAT_ERR_ARGUMENT,
                              "The classifier needs square 3-channel faces whose side is a "
                              "multiple of 32 (got %dx%dx%d).",
                              x->c, x->h, x->w);
    c->input = *x;
    const diat_tensor *h = x;
    diat_status st;
    for (int i = 0; i < LAYERS; i++) {
        if ((st = diat_conv_layer_forward(ctx, &c->conv_layer[i], h, DIAT_ACT_IDENTITY, 0.0f,
                                          &c->conv[i], err)) ||
            (st = normalize(c, i, err)))
            return st;
        h = &c->act[i];
    }
    if ((st = diat_tensor_ensure(ctx, &c->pooled, x->n, h->c, 1, 1, err)) ||
        (st = diat_tensor_ensure(ctx, &c->logits, x->n, c->outputs, 1, 1, err)) ||
        (st = diat_tensor_ensure(ctx, &c->prob, x->n, c->outputs, 1, 1, err)))
        return st;
    be->avgpool_forward(ctx, h, h->h, h->h, &c->pooled);
    be->linear_forward(ctx, &c->pooled, &c->fc_weight->value, &c->fc_bias->value, &c->logits);
    be->activation_forward(ctx, DIAT_ACT_SIGMOID, 0.0f, c->logits.data, c->prob.data,
                           diat_tensor_count(&c->prob));
    return DIAT_OK;
}

diat_status diat_classifier_backward(diat_classifier *c, const diat_tensor *dprob,
                                     const diat_tensor *dlogits, diat_tensor *dx, diat_error *err)
{
    diat_context *ctx = c->net.ctx;
    const diat_backend *be = ctx->backend;
    if (!c->net.training || !c->save_mean[0].data || c->act[LAYERS - 1].n != c->input.n)
        return diat_set_error(err, DIAT_ERR_ARGUMENT,
                              "The classifier's backward pass needs a forward pass in training "
                              "mode first.");
    diat_status st;
    if ((st = diat_tensor_like(ctx, &c->grad_logits, &c->logits, err)) ||
        (st = diat_tensor_like(ctx, &c->grad_pooled, &c->pooled, err)))
        return st;
    diat_tensor_zero(ctx, &c->grad_logits);
    diat_tensor_zero(ctx, &c->grad_pooled);
    size_t count = diat_tensor_count(&c->logits);
    if (dprob)
        be->activation_backward(ctx, DIAT_ACT_SIGMOID, 0.0f, c->prob.data, dprob->data,
                                c->grad_logits.data, count);
    if (dlogits) be->axpy(ctx, 1.0f, dlogits->data, c->grad_logits.data, count);
    be->linear_backward(ctx, &c->pooled, &c->fc_weight->value, &c->grad_logits, &c->grad_pooled,
                        diat_param_grad(c->fc_weight), diat_param_grad(c->fc_bias));
    for (int i = 0; i < LAYERS; i++) {
        if ((st = diat_tensor_like(ctx, &c->grad_act[i], &c->act[i], err))) return st;
        diat_tensor_zero(ctx, &c->grad_act[i]);
    }
    const diat_tensor *last = &c->act[LAYERS - 1];
    be->avgpool_backward(ctx, &c->grad_pooled, last->h, last->h, &c->grad_act[LAYERS - 1]);
    for (int i = LAYERS - 1; i >= 0; i--) {
        const diat_batchnorm_layer *bn = &c->bn_layer[i];
        diat_tensor pre, conv_grad;
        if ((st = diat_scratch_view(ctx, &c->grad_pre, &c->act[i], &pre, err))) return st;
        be->activation_backward(ctx, DIAT_ACT_LEAKY_RELU, DIAT_LEAKY_SLOPE, c->act[i].data,
                                c->grad_act[i].data, pre.data, diat_tensor_count(&pre));
        if ((st = diat_scratch_view(ctx, &c->grad_conv, &c->conv[i], &conv_grad, err))) return st;
        be->batchnorm_backward(ctx, &c->conv[i], &bn->gamma->value, &c->save_mean[i],
                               &c->save_invstd[i], &pre, &conv_grad, diat_param_grad(bn->gamma),
                               diat_param_grad(bn->beta));
        const diat_tensor *below = i == 0 ? &c->input : &c->act[i - 1];
        diat_tensor *below_grad = i == 0 ? dx : &c->grad_act[i - 1];
        diat_conv_layer_backward(ctx, &c->conv_layer[i], below, &conv_grad, below_grad);
    }
    return DIAT_OK;
}

/* ---- exported classifiers ----------------------------------------------- */

typedef char attribute_names[DIAT_CLASSIFIER_MAX_OUTPUTS][DIAT_PARAM_NAME_MAX];

/* "Eyeglasses,Smiling" into `names`; returns how many, or -1 when a name is
 * empty or too long, or there are too many. */
static int split_attributes(const char *list, attribute_names names)
{
    int count = 0;
    const char *p = list;
    for (;;) {
        const char *end = strchr(p, ',');
        size_t length = end ? (size_t)(end - p) : strlen(p);
        if (length == 0 || length >= DIAT_PARAM_NAME_MAX || count == DIAT_CLASSIFIER_MAX_OUTPUTS)
            return -1;
        memcpy(names[count], p, length);
        names[count][length] = '\0';
        count++;
        if (!end) return count;
        p = end + 1;
    }
}

diat_status diat_classifier_load(diat_classifier *c, diat_context *ctx, const char *path,
                                 diat_error *err)
{
    memset(c, 0, sizeof *c);
    diat_safetensors *st = NULL;
    diat_status status = diat_safetensors_open(path, &st, err);
    if (status != DIAT_OK) return status;
    const char *format = diat_safetensors_metadata(st, "format");
    const char *version = diat_safetensors_metadata(st, "format_version");
    const char *width_text = diat_safetensors_metadata(st, "width");
    const char *list = diat_safetensors_metadata(st, "attributes");
    char *end = NULL;
    long width = width_text ? strtol(width_text, &end, 10) : 0;
    attribute_names names; /* parsed before init, which clears c */
    int outputs = list ? split_attributes(list, names) : -1;
    if (!format || strcmp(format, CLASSIFIER_FORMAT) != 0)
        status = diat_set_error(err, DIAT_ERR_FORMAT,
                                "%s is not an attribute classifier (its format is '%s'; "
                                "`diat-train classifier --export` writes '" CLASSIFIER_FORMAT "').",
                                path, format ? format : "missing");
    else if (!version || strcmp(version, "1") != 0)
        status = diat_set_error(err, DIAT_ERR_FORMAT,
                                "%s has classifier format version '%s'; this build reads 1.", path,
                                version ? version : "missing");
    else if (!width_text || end == width_text || *end || width < 1 || width > 512)
        status = diat_set_error(err, DIAT_ERR_FORMAT,
                                "%s has no valid 'width' in its metadata (1 to 512).", path);
    else if (outputs < 1)
        status = diat_set_error(err, DIAT_ERR_FORMAT,
                                "%s has no valid 'attributes' in its metadata (1 to %d names, "
                                "comma-separated).",
                                path, DIAT_CLASSIFIER_MAX_OUTPUTS);
    if (status == DIAT_OK) status = diat_classifier_init(c, ctx, (int)width, outputs, err);
    if (status == DIAT_OK) {
        memcpy(c->attributes, names, sizeof c->attributes);
        status = diat_net_load(&c->net, st, err);
        if (status != DIAT_OK) diat_classifier_free(c);
    }
    diat_safetensors_close(st);
    return status;
}

diat_status diat_classifier_predict(diat_classifier *c, const float *faces, int n, int side,
                                    float *prob, diat_error *err)
{
    if (!c->net.ctx || !faces || !prob || n < 0 || side < 32 || side % 32)
        return diat_set_error(err, DIAT_ERR_ARGUMENT,
                              "diat_classifier_predict: no classifier, no buffers, or faces "
                              "whose side is not a multiple of 32.");
    diat_context *ctx = c->net.ctx;
    const size_t face_floats = (size_t)3 * side * side;
    const int was_training = c->net.training;
    c->net.training = 0;
    diat_status st = DIAT_OK;
    for (int first = 0; first < n && st == DIAT_OK; first += DIAT_CLASSIFIER_PREDICT_BATCH) {
        int count =
            n - first < DIAT_CLASSIFIER_PREDICT_BATCH ? n - first : DIAT_CLASSIFIER_PREDICT_BATCH;
        if ((st = diat_tensor_ensure(ctx, &c->faces, count, 3, side, side, err))) break;
        diat_tensor_upload(ctx, &c->faces, faces + (size_t)first * face_floats);
        if ((st = diat_classifier_forward(c, &c->faces, err))) break;
        diat_tensor_download(ctx, &c->prob, prob + (size_t)first * c->outputs);
    }
    c->net.training = was_training;
    return st;
}

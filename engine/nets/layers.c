/* Parameter tables and layer bindings shared by T, M, D and DN. */
#include "layers.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

diat_status diat_net_setup(diat_net *net, diat_context *ctx, int capacity, diat_error *err)
{
    memset(net, 0, sizeof *net);
    net->ctx = ctx;
    net->params = calloc((size_t)capacity, sizeof *net->params);
    if (!net->params) return diat_set_error(err, DIAT_ERR_MEMORY, "Out of memory for a network.");
    return DIAT_OK;
}

void diat_net_release(diat_net *net)
{
    for (int i = 0; i < net->param_count; i++) {
        diat_tensor_release(net->ctx, &net->params[i].value);
        diat_tensor_release(net->ctx, &net->params[i].grad);
    }
    free(net->params);
    net->params = NULL;
    net->param_count = 0;
}

diat_param *diat_net_add(diat_net *net, const char *name, int ndim, int n, int c, int h, int w,
                         int trainable, diat_error *err)
{
    diat_param *p = &net->params[net->param_count];
    memset(p, 0, sizeof *p);
    snprintf(p->name, sizeof p->name, "%s", name);
    p->ndim = ndim;
    p->trainable = trainable;
    if (diat_tensor_alloc(net->ctx, &p->value, n, c, h, w, err) != DIAT_OK) return NULL;
    if (trainable && diat_tensor_alloc(net->ctx, &p->grad, n, c, h, w, err) != DIAT_OK) {
        diat_tensor_release(net->ctx, &p->value);
        return NULL;
    }
    diat_tensor_zero(net->ctx, &p->value);
    if (trainable) diat_tensor_zero(net->ctx, &p->grad);
    net->param_count++;
    return p;
}

diat_status diat_conv_layer_add(diat_net *net, diat_conv_layer *layer, const char *prefix, int in,
                                int out, int kernel, int stride, int pad, int with_bias,
                                diat_error *err)
{
    char name[DIAT_PARAM_NAME_MAX];
    snprintf(name, sizeof name, "%s.weight", prefix);
    layer->weight = diat_net_add(net, name, 4, out, in, kernel, kernel, 1, err);
    if (!layer->weight) return err ? err->code : DIAT_ERR_MEMORY;
    layer->bias = NULL;
    if (with_bias) {
        snprintf(name, sizeof name, "%s.bias", prefix);
        layer->bias = diat_net_add(net, name, 1, out, 1, 1, 1, 1, err);
        if (!layer->bias) return err ? err->code : DIAT_ERR_MEMORY;
    }
    layer->geometry = (diat_conv_geometry){kernel, stride, pad};
    layer->in = in;
    layer->out = out;
    return DIAT_OK;
}

diat_status diat_conv_apply(diat_context *ctx, diat_conv_geometry g, int out_channels,
                            const diat_tensor *weight, const diat_tensor *bias,
                            const diat_tensor *x, diat_activation act, float slope, diat_tensor *y,
                            diat_error *err)
{
    if (x->c != weight->c)
        return diat_set_error(err, DIAT_ERR_ARGUMENT,
                              "A convolution expects %d input channels, got %d.", weight->c, x->c);
    int out_h = (x->h + 2 * g.pad - g.kernel) / g.stride + 1;
    int out_w = (x->w + 2 * g.pad - g.kernel) / g.stride + 1;
    diat_status st = diat_tensor_ensure(ctx, y, x->n, out_channels, out_h, out_w, err);
    if (st != DIAT_OK) return st;
    ctx->backend->conv2d_forward(ctx, x, weight, bias, g, act, slope, y);
    return DIAT_OK;
}

diat_status diat_conv_layer_forward(diat_context *ctx, const diat_conv_layer *layer,
                                    const diat_tensor *x, diat_activation act, float slope,
                                    diat_tensor *y, diat_error *err)
{
    return diat_conv_apply(ctx, layer->geometry, layer->out, &layer->weight->value,
                           layer->bias ? &layer->bias->value : NULL, x, act, slope, y, err);
}

void diat_conv_layer_backward(diat_context *ctx, const diat_conv_layer *layer, const diat_tensor *x,
                              const diat_tensor *dy, diat_tensor *dx)
{
    ctx->backend->conv2d_backward(ctx, x, &layer->weight->value, dy, layer->geometry, dx,
                                  diat_param_grad(layer->weight), diat_param_grad(layer->bias));
}

diat_status diat_batchnorm_layer_add(diat_net *net, diat_batchnorm_layer *layer, const char *prefix,
                                     int channels, diat_error *err)
{
    static const char *const suffix[4] = {"weight", "bias", "running_mean", "running_var"};
    diat_param **slots[4] = {&layer->gamma, &layer->beta, &layer->running_mean,
                             &layer->running_var};
    for (int i = 0; i < 4; i++) {
        char name[DIAT_PARAM_NAME_MAX];
        snprintf(name, sizeof name, "%s.%s", prefix, suffix[i]);
        *slots[i] = diat_net_add(net, name, 1, channels, 1, 1, 1, i < 2, err);
        if (!*slots[i]) return err ? err->code : DIAT_ERR_MEMORY;
    }
    return DIAT_OK;
}

diat_status diat_tensor_like(diat_context *ctx, diat_tensor *t, const diat_tensor *shape,
                             diat_error *err)
{
    return diat_tensor_ensure(ctx, t, shape->n, shape->c, shape->h, shape->w, err);
}

diat_status diat_scratch_view_for_output(diat_context *ctx, diat_tensor *buffer,
                                         const diat_tensor *shape, diat_tensor *view,
                                         diat_error *err)
{
    size_t need = diat_tensor_count(shape);
    if (!buffer->data || diat_tensor_count(buffer) < need) {
        diat_tensor_release(ctx, buffer);
        diat_status st = diat_tensor_alloc(ctx, buffer, (int)need, 1, 1, 1, err);
        if (st != DIAT_OK) return st;
    }
    *view = *shape;
    view->data = buffer->data;
    return DIAT_OK;
}

diat_status diat_scratch_view(diat_context *ctx, diat_tensor *buffer, const diat_tensor *shape,
                              diat_tensor *view, diat_error *err)
{
    diat_status st = diat_scratch_view_for_output(ctx, buffer, shape, view, err);
    if (st == DIAT_OK) ctx->backend->fill(ctx, view->data, 0.0f, diat_tensor_count(view));
    return st;
}

void diat_activate_inplace(diat_context *ctx, diat_activation kind, float slope, diat_tensor *y)
{
    ctx->backend->activation_forward(ctx, kind, slope, y->data, y->data, diat_tensor_count(y));
}

/* ---- whole-net helpers -------------------------------------------------- */

static uint64_t splitmix64(uint64_t *state)
{
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static int name_ends_with(const char *name, const char *suffix)
{
    size_t n = strlen(name), s = strlen(suffix);
    return n >= s && strcmp(name + n - s, suffix) == 0;
}

void diat_net_init_weights(diat_net *net, uint64_t seed)
{
    uint64_t state = seed;
    for (int i = 0; i < net->param_count; i++) {
        diat_param *p = &net->params[i];
        size_t count = diat_tensor_count(&p->value);
        float *host = malloc(count * sizeof *host);
        if (!host) continue;
        int is_bn = strstr(p->name, ".bn") != NULL;
        float fill = 0.0f;
        if (is_bn &&
            (name_ends_with(p->name, ".weight") || name_ends_with(p->name, ".running_var")))
            fill = 1.0f;
        if (p->ndim >= 2) {
            /* He-uniform: keeps activations' scale through ReLU-family layers. */
            size_t fan_in = count / (size_t)p->value.n;
            float bound = sqrtf(6.0f / (float)fan_in);
            for (size_t j = 0; j < count; j++)
                host[j] =
                    bound * (float)((double)(splitmix64(&state) >> 11) * 0x1.0p-53 * 2.0 - 1.0);
        } else {
            for (size_t j = 0; j < count; j++) host[j] = fill;
        }
        diat_tensor_upload(net->ctx, &p->value, host);
        free(host);
    }
}

void diat_net_set_trainable(diat_net *net, int trainable)
{
    for (int i = 0; i < net->param_count; i++)
        if (net->params[i].grad.data) net->params[i].trainable = trainable;
}

diat_tensor *diat_param_grad(diat_param *p)
{
    return p && p->trainable && p->grad.data ? &p->grad : NULL;
}

void diat_net_zero_grad(diat_net *net)
{
    for (int i = 0; i < net->param_count; i++)
        if (net->params[i].grad.data) diat_tensor_zero(net->ctx, &net->params[i].grad);
}

diat_param *diat_net_find(diat_net *net, const char *name)
{
    for (int i = 0; i < net->param_count; i++)
        if (strcmp(net->params[i].name, name) == 0) return &net->params[i];
    return NULL;
}

size_t diat_net_parameter_count(const diat_net *net)
{
    size_t total = 0;
    for (int i = 0; i < net->param_count; i++) total += diat_tensor_count(&net->params[i].value);
    return total;
}

static int file_shape(const diat_param *p, int64_t shape[4])
{
    const diat_tensor *t = &p->value;
    shape[0] = t->n;
    shape[1] = t->c;
    shape[2] = t->h;
    shape[3] = t->w;
    return p->ndim;
}

diat_status diat_net_load(diat_net *net, const diat_safetensors *st, diat_error *err)
{
    for (int i = 0; i < net->param_count; i++) {
        diat_param *p = &net->params[i];
        int64_t shape[4];
        int ndim = file_shape(p, shape);
        size_t count = diat_tensor_count(&p->value);
        float *host = malloc(count * sizeof *host);
        if (!host)
            return diat_set_error(err, DIAT_ERR_MEMORY, "Out of memory loading %s.", p->name);
        diat_status status = diat_safetensors_read_f32(st, p->name, ndim, shape, host, err);
        if (status == DIAT_OK) diat_tensor_upload(net->ctx, &p->value, host);
        free(host);
        if (status != DIAT_OK) return status;
    }
    return DIAT_OK;
}

diat_status diat_net_save(const diat_net *net, diat_st_writer *w, diat_dtype dtype, diat_error *err)
{
    for (int i = 0; i < net->param_count; i++) {
        const diat_param *p = &net->params[i];
        int64_t shape[4];
        int ndim = file_shape(p, shape);
        size_t count = diat_tensor_count(&p->value);
        float *host = malloc(count * sizeof *host);
        if (!host) return diat_set_error(err, DIAT_ERR_MEMORY, "Out of memory saving %s.", p->name);
        diat_tensor_download(net->ctx, &p->value, host);
        /* Running statistics stay F32: F16 would lose small variances. */
        diat_dtype stored = strstr(p->name, "running_") ? DIAT_DTYPE_F32 : dtype;
        diat_status status = diat_st_writer_add(w, p->name, stored, ndim, shape, host, err);
        free(host);
        if (status != DIAT_OK) return status;
    }
    return DIAT_OK;
}

void diat_pad_bottom_right(const diat_tensor *src, diat_tensor *dst)
{
    const int h = src->h, w = src->w;
    const size_t planes = (size_t)src->n * src->c;
    for (size_t c = 0; c < planes; c++) {
        const float *from = src->data + c * h * w;
        float *to = dst->data + c * (h + 1) * (w + 1);
        for (int y = 0; y < h; y++) {
            memcpy(to + (size_t)y * (w + 1), from + (size_t)y * w, (size_t)w * sizeof *to);
            to[(size_t)y * (w + 1) + w] = 0.0f;
        }
        memset(to + (size_t)h * (w + 1), 0, (size_t)(w + 1) * sizeof *to);
    }
}

diat_status diat_net_load_converted(diat_net *net, const char *path, const char *format,
                                    const char *what, const char *tool, diat_error *err)
{
    diat_safetensors *file = NULL;
    diat_status st = diat_safetensors_open(path, &file, err);
    if (st != DIAT_OK) return st;
    const char *found = diat_safetensors_metadata(file, "format");
    if (!found || strcmp(found, format) != 0)
        st = diat_set_error(err, DIAT_ERR_FORMAT,
                            "Model file %s is not %s (its format is '%s', expected '%s'); make "
                            "it with %s.",
                            path, what, found ? found : "(none)", format, tool);
    if (st == DIAT_OK) st = diat_net_load(net, file, err);
    diat_safetensors_close(file);
    return st;
}

/* The face recognition network phi: dlib's ResNet-29 face descriptor
 * (dlib_face_recognition_resnet_model_v1), with the weights face-api ships,
 * converted by tools/convert-face-api.py. Used frozen, for the identity loss:
 * forward and the gradient to the input, never parameter gradients.
 *
 * Topology (sizes for one 150x150 input; every conv has a bias, dlib's
 * per-channel affine "scale" layer already folded into it by the converter):
 *
 *   input            3 x 150 x 150, (rgb - mean) / 255 (folded into the stem)
 *   conv32_down      7x7 stride 2, no padding, ReLU        -> 32 x 72 x 72
 *   max pool         3x3 stride 2, no padding              -> 32 x 35 x 35
 *   conv32_1..3      residual                              -> 32 x 35 x 35
 *   conv64_down      residual, down-sampling               -> 64 x 17 x 17
 *   conv64_1..3      residual                              -> 64 x 17 x 17
 *   conv128_down     residual, down-sampling               -> 128 x 8 x 8
 *   conv128_1..2     residual                              -> 128 x 8 x 8
 *   conv256_down     residual, down-sampling               -> 256 x 4 x 4
 *   conv256_1..2     residual                              -> 256 x 4 x 4
 *   conv256_down_out residual, down-sampling               -> 256 x 2 x 2
 *   global average                                         -> 256
 *   fc               256 -> 128, no bias                   -> the embedding
 *
 * Residual: out = relu(conv2(relu(conv1(in))) + in), both convs 3x3 stride 1
 * padding 1. Down-sampling residual: conv1 is 3x3 stride 2 without padding,
 * and the skip is a 2x2 stride-2 average pool of the input whose missing
 * channels are zeros. Where the conv branch comes out smaller than the pool
 * (8x8 input: 3x3 vs 4x4; 4x4 input: 1x1 vs 2x2) the two are added aligned at
 * the top-left corner, the conv branch counting as zero beyond its extent:
 * that is how dlib's add_prev adds tensors of different sizes, and how
 * face-api reproduces it (zero rows and columns appended at the end). */
#include "layers.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FORMAT_NAME "diat-face-recognition"
#define STEM_CHANNELS 32
#define STEM_KERNEL 7
#define FEATURE_CHANNELS 256

/* dlib's mean RGB of its training faces, in 0..255 pixel units. */
static const double mean_rgb[3] = {122.782, 117.001, 104.298};

typedef struct block_spec {
    const char *name;
    int in, out, down;
} block_spec;

static const block_spec block_specs[DIAT_FACE_RECOGNITION_BLOCKS] = {
    {"conv32_1", 32, 32, 0},           /* 35x35 */
    {"conv32_2", 32, 32, 0},           /* 35x35 */
    {"conv32_3", 32, 32, 0},           /* 35x35 */
    {"conv64_down", 32, 64, 1},        /* -> 17x17 */
    {"conv64_1", 64, 64, 0},           /* 17x17 */
    {"conv64_2", 64, 64, 0},           /* 17x17 */
    {"conv64_3", 64, 64, 0},           /* 17x17 */
    {"conv128_down", 64, 128, 1},      /* -> 8x8 */
    {"conv128_1", 128, 128, 0},        /* 8x8 */
    {"conv128_2", 128, 128, 0},        /* 8x8 */
    {"conv256_down", 128, 256, 1},     /* -> 4x4 (conv branch 3x3) */
    {"conv256_1", 256, 256, 0},        /* 4x4 */
    {"conv256_2", 256, 256, 0},        /* 4x4 */
    {"conv256_down_out", 256, 256, 1}, /* -> 2x2 (conv branch 1x1) */
};

/* Parameters are stored non-trainable: no gradient buffers, and the conv
 * backward is then asked for dx only. */
static diat_status frozen_conv_add(diat_net *net, diat_conv_layer *layer, const char *prefix,
                                   int in, int out, int kernel, int stride, int pad,
                                   diat_error *err)
{
    char name[DIAT_PARAM_NAME_MAX];
    snprintf(name, sizeof name, "%s.weight", prefix);
    layer->weight = diat_net_add(net, name, 4, out, in, kernel, kernel, 0, err);
    if (!layer->weight) return err ? err->code : DIAT_ERR_MEMORY;
    snprintf(name, sizeof name, "%s.bias", prefix);
    layer->bias = diat_net_add(net, name, 1, out, 1, 1, 1, 0, err);
    if (!layer->bias) return err ? err->code : DIAT_ERR_MEMORY;
    layer->geometry = (diat_conv_geometry){kernel, stride, pad};
    layer->in = in;
    layer->out = out;
    return DIAT_OK;
}

diat_status diat_face_recognition_init(diat_face_recognition *f, diat_context *ctx, diat_error *err)
{
    memset(f, 0, sizeof *f);
    /* stem (2) + two convs per block (4 each) + fc */
    diat_status st = diat_net_setup(&f->net, ctx, 2 + 4 * DIAT_FACE_RECOGNITION_BLOCKS + 1, err);
    if (st != DIAT_OK) return st;
    st = frozen_conv_add(&f->net, &f->stem_layer, "conv32_down", 3, STEM_CHANNELS, STEM_KERNEL, 2,
                         0, err);
    char name[DIAT_PARAM_NAME_MAX];
    for (int i = 0; i < DIAT_FACE_RECOGNITION_BLOCKS && st == DIAT_OK; i++) {
        const block_spec *spec = &block_specs[i];
        diat_face_residual_block *b = &f->block[i];
        b->down = spec->down;
        snprintf(name, sizeof name, "%s.conv1", spec->name);
        st = frozen_conv_add(&f->net, &b->conv1, name, spec->in, spec->out, 3, spec->down ? 2 : 1,
                             spec->down ? 0 : 1, err);
        if (st != DIAT_OK) break;
        snprintf(name, sizeof name, "%s.conv2", spec->name);
        st = frozen_conv_add(&f->net, &b->conv2, name, spec->out, spec->out, 3, 1, 1, err);
    }
    if (st == DIAT_OK) {
        f->fc_weight = diat_net_add(&f->net, "fc.weight", 2, DIAT_FACE_RECOGNITION_DIM,
                                    FEATURE_CHANNELS, 1, 1, 0, err);
        if (!f->fc_weight) st = err ? err->code : DIAT_ERR_MEMORY;
    }
    if (st == DIAT_OK)
        st = diat_tensor_alloc(ctx, &f->stem_weight, STEM_CHANNELS, 3, STEM_KERNEL, STEM_KERNEL,
                               err);
    if (st == DIAT_OK) st = diat_tensor_alloc(ctx, &f->stem_bias, STEM_CHANNELS, 1, 1, 1, err);
    if (st != DIAT_OK) diat_face_recognition_free(f);
    return st;
}

void diat_face_recognition_free(diat_face_recognition *f)
{
    diat_context *ctx = f->net.ctx;
    if (!ctx) return;
    for (int i = 0; i < DIAT_FACE_RECOGNITION_BLOCKS; i++) {
        diat_tensor_release(ctx, &f->block[i].hidden);
        diat_tensor_release(ctx, &f->block[i].out);
        diat_tensor_release(ctx, &f->block[i].grad_out);
    }
    diat_tensor *owned[] = {&f->stem_weight, &f->stem_bias,   &f->resized,      &f->stem,
                            &f->pooled,      &f->feature,     &f->embedding,    &f->grad_feature,
                            &f->grad_stem,   &f->grad_pooled, &f->grad_resized, &f->scratch[0],
                            &f->scratch[1],  &f->scratch[2]};
    for (size_t i = 0; i < sizeof owned / sizeof owned[0]; i++) diat_tensor_release(ctx, owned[i]);
    diat_net_release(&f->net);
    memset(f, 0, sizeof *f);
}

/* The network sees v = (P - mean_c) / 255 for pixel values P in 0..255; our
 * faces are x = P / 127.5 - 1 in [-1, 1], so v = 0.5 x + (0.5 - mean_c / 255).
 * The stem has no padding, so that affine map folds exactly into it:
 * weight' = 0.5 weight, bias' = bias + sum over (c, i, j) of weight * offset_c.
 * Done once after loading, on the host, in double. */
static diat_status fold_input_normalisation(diat_face_recognition *f, diat_error *err)
{
    diat_context *ctx = f->net.ctx;
    const size_t taps = (size_t)STEM_KERNEL * STEM_KERNEL;
    const size_t count = diat_tensor_count(&f->stem_weight);
    float *weight = malloc(count * sizeof *weight);
    float *bias = malloc(STEM_CHANNELS * sizeof *bias);
    if (!weight || !bias) {
        free(weight);
        free(bias);
        return diat_set_error(err, DIAT_ERR_MEMORY, "Out of memory loading the face network.");
    }
    diat_tensor_download(ctx, &f->stem_layer.weight->value, weight);
    diat_tensor_download(ctx, &f->stem_layer.bias->value, bias);
    for (int o = 0; o < STEM_CHANNELS; o++) {
        double shifted = bias[o];
        for (int c = 0; c < 3; c++) {
            double offset = 0.5 - mean_rgb[c] / 255.0;
            float *w = weight + ((size_t)o * 3 + (size_t)c) * taps;
            for (size_t t = 0; t < taps; t++) {
                shifted += (double)w[t] * offset;
                w[t] *= 0.5f;
            }
        }
        bias[o] = (float)shifted;
    }
    diat_tensor_upload(ctx, &f->stem_weight, weight);
    diat_tensor_upload(ctx, &f->stem_bias, bias);
    free(weight);
    free(bias);
    return DIAT_OK;
}

diat_status diat_face_recognition_load(diat_face_recognition *f, const char *path, diat_error *err)
{
    diat_status status = diat_net_load_converted(
        &f->net, path, FORMAT_NAME, "a face recognition network", "tools/convert-face-api.py", err);
    if (status == DIAT_OK) status = fold_input_normalisation(f, err);
    f->loaded = status == DIAT_OK;
    return status;
}

/* to[n][0..from->c) += from[n]: the skip's channels are the first ones of the
 * block's output; the others get zeros (i.e. nothing). Same plane size. */
static void add_leading_channels(diat_context *ctx, const diat_tensor *from, diat_tensor *to)
{
    const size_t from_sample = (size_t)from->c * from->h * from->w;
    const size_t to_sample = (size_t)to->c * to->h * to->w;
    for (int n = 0; n < from->n; n++)
        ctx->backend->axpy(ctx, 1.0f, from->data + (size_t)n * from_sample,
                           to->data + (size_t)n * to_sample, from_sample);
}

/* Its inverse for gradients: to[n] += from[n][0..to->c). */
static void add_from_leading_channels(diat_context *ctx, const diat_tensor *from, diat_tensor *to)
{
    const size_t from_sample = (size_t)from->c * from->h * from->w;
    const size_t to_sample = (size_t)to->c * to->h * to->w;
    for (int n = 0; n < to->n; n++)
        ctx->backend->axpy(ctx, 1.0f, from->data + (size_t)n * from_sample,
                           to->data + (size_t)n * to_sample, to_sample);
}

static diat_status block_forward(diat_face_recognition *f, diat_face_residual_block *b,
                                 const diat_tensor *in, diat_error *err)
{
    diat_context *ctx = f->net.ctx;
    const diat_backend *be = ctx->backend;
    diat_status st;
    if ((st = diat_conv_layer_forward(ctx, &b->conv1, in, DIAT_ACT_RELU, 0.0f, &b->hidden, err)))
        return st;
    if (!b->down) {
        if ((st = diat_conv_layer_forward(ctx, &b->conv2, &b->hidden, DIAT_ACT_IDENTITY, 0.0f,
                                          &b->out, err)))
            return st;
        be->add(ctx, b->out.data, in->data, b->out.data, diat_tensor_count(&b->out));
    } else {
        /* The skip sets the output's size; the conv branch is added into it. */
        const int out_h = in->h / 2, out_w = in->w / 2;
        const diat_tensor skip_shape = {in->n, in->c, out_h, out_w, NULL};
        const diat_tensor branch_shape = {in->n, b->conv2.out, b->hidden.h, b->hidden.w, NULL};
        diat_tensor skip, branch;
        if ((st = diat_scratch_view_for_output(ctx, &f->scratch[0], &skip_shape, &skip, err)) ||
            (st = diat_scratch_view_for_output(ctx, &f->scratch[1], &branch_shape, &branch, err)))
            return st;
        be->avgpool_forward(ctx, in, 2, 2, &skip);
        be->conv2d_forward(ctx, &b->hidden, &b->conv2.weight->value, &b->conv2.bias->value,
                           b->conv2.geometry, DIAT_ACT_IDENTITY, 0.0f, &branch);
        if ((st = diat_tensor_ensure(ctx, &b->out, in->n, b->conv2.out, out_h, out_w, err)))
            return st;
        diat_tensor_zero(ctx, &b->out);
        be->add_overlap(ctx, &branch, &b->out);
        add_leading_channels(ctx, &skip, &b->out);
    }
    diat_activate_inplace(ctx, DIAT_ACT_RELU, 0.0f, &b->out);
    return DIAT_OK;
}

diat_status diat_face_recognition_forward(diat_face_recognition *f, const diat_tensor *x,
                                          diat_error *err)
{
    diat_context *ctx = f->net.ctx;
    const diat_backend *be = ctx->backend;
    if (!f->loaded)
        return diat_set_error(err, DIAT_ERR_ARGUMENT,
                              "The face recognition network has no weights loaded.");
    if (x->c != 3 || x->h < 1 || x->w < 1)
        return diat_set_error(err, DIAT_ERR_ARGUMENT,
                              "The face network needs a 3-channel image (got %dx%dx%d).", x->c,
                              x->h, x->w);
    f->input = *x;
    const int size = DIAT_FACE_RECOGNITION_SIZE;
    const diat_tensor *chip = x;
    diat_status st;
    if (x->h != size || x->w != size) {
        if ((st = diat_tensor_ensure(ctx, &f->resized, x->n, 3, size, size, err))) return st;
        be->resize_bilinear_forward(ctx, x, &f->resized);
        chip = &f->resized;
    }
    if ((st = diat_conv_apply(ctx, f->stem_layer.geometry, STEM_CHANNELS, &f->stem_weight,
                              &f->stem_bias, chip, DIAT_ACT_RELU, 0.0f, &f->stem, err)))
        return st;
    /* 3x3 stride 2 without padding: 72 -> 35 (floor). */
    if ((st = diat_tensor_ensure(ctx, &f->pooled, x->n, STEM_CHANNELS, (f->stem.h - 3) / 2 + 1,
                                 (f->stem.w - 3) / 2 + 1, err)))
        return st;
    be->maxpool_forward(ctx, &f->stem, 3, 2, 0, &f->pooled);
    const diat_tensor *h = &f->pooled;
    for (int i = 0; i < DIAT_FACE_RECOGNITION_BLOCKS; i++) {
        if ((st = block_forward(f, &f->block[i], h, err))) return st;
        h = &f->block[i].out;
    }
    /* Global average: one pooling window over the whole (square) plane. */
    if ((st = diat_tensor_ensure(ctx, &f->feature, x->n, FEATURE_CHANNELS, 1, 1, err))) return st;
    be->avgpool_forward(ctx, h, h->h, h->h, &f->feature);
    if ((st = diat_tensor_ensure(ctx, &f->embedding, x->n, DIAT_FACE_RECOGNITION_DIM, 1, 1, err)))
        return st;
    be->linear_forward(ctx, &f->feature, &f->fc_weight->value, NULL, &f->embedding);
    return DIAT_OK;
}

/* Accumulate dL/d(in) into grad_in from b->grad_out. */
static diat_status block_backward(diat_face_recognition *f, diat_face_residual_block *b,
                                  const diat_tensor *in, diat_tensor *grad_in, diat_error *err)
{
    diat_context *ctx = f->net.ctx;
    const diat_backend *be = ctx->backend;
    diat_status st;
    /* Through the final ReLU: the gradient of the sum. */
    diat_tensor grad_sum;
    if ((st = diat_scratch_view(ctx, &f->scratch[0], &b->out, &grad_sum, err))) return st;
    be->activation_backward(ctx, DIAT_ACT_RELU, 0.0f, b->out.data, b->grad_out.data, grad_sum.data,
                            diat_tensor_count(&b->out));
    /* The skip, and the gradient that reaches conv2's output. */
    const diat_tensor *grad_branch = &grad_sum;
    diat_tensor cropped;
    if (!b->down) {
        be->axpy(ctx, 1.0f, grad_sum.data, grad_in->data, diat_tensor_count(&grad_sum));
    } else {
        const diat_tensor skip_shape = {in->n, in->c, b->out.h, b->out.w, NULL};
        diat_tensor grad_skip;
        if ((st = diat_scratch_view(ctx, &f->scratch[1], &skip_shape, &grad_skip, err))) return st;
        add_from_leading_channels(ctx, &grad_sum, &grad_skip);
        be->avgpool_backward(ctx, &grad_skip, 2, 2, grad_in);
        /* conv2's output size, from conv1's (same padding, stride 1). */
        const diat_tensor branch_shape = {in->n, b->conv2.out, b->hidden.h, b->hidden.w, NULL};
        if (branch_shape.h != b->out.h || branch_shape.w != b->out.w) {
            if ((st = diat_scratch_view(ctx, &f->scratch[2], &branch_shape, &cropped, err)))
                return st;
            be->add_overlap(ctx, &grad_sum, &cropped);
            grad_branch = &cropped;
        }
    }
    /* conv2 (linear), then the inner ReLU, then conv1 into grad_in. The
     * scratch slots reused here hold nothing still needed. */
    diat_tensor grad_hidden, grad_pre;
    if ((st = diat_scratch_view(ctx, &f->scratch[1], &b->hidden, &grad_hidden, err))) return st;
    be->conv2d_backward(ctx, &b->hidden, &b->conv2.weight->value, grad_branch, b->conv2.geometry,
                        &grad_hidden, NULL, NULL);
    if ((st = diat_scratch_view(ctx, &f->scratch[2], &b->hidden, &grad_pre, err))) return st;
    be->activation_backward(ctx, DIAT_ACT_RELU, 0.0f, b->hidden.data, grad_hidden.data,
                            grad_pre.data, diat_tensor_count(&b->hidden));
    be->conv2d_backward(ctx, in, &b->conv1.weight->value, &grad_pre, b->conv1.geometry, grad_in,
                        NULL, NULL);
    return DIAT_OK;
}

diat_status diat_face_recognition_backward(diat_face_recognition *f, const diat_tensor *dembedding,
                                           diat_tensor *dx, diat_error *err)
{
    diat_context *ctx = f->net.ctx;
    const diat_backend *be = ctx->backend;
    if (!f->input.data)
        return diat_set_error(err, DIAT_ERR_ARGUMENT,
                              "The face network's backward needs its forward first.");
    if (diat_tensor_count(dembedding) != diat_tensor_count(&f->embedding))
        return diat_set_error(err, DIAT_ERR_ARGUMENT,
                              "The embedding gradient has %zu values, the embedding %zu.",
                              diat_tensor_count(dembedding), diat_tensor_count(&f->embedding));
    if (!dx) return DIAT_OK; /* the network is frozen: nothing else to compute */
    if (dx->n != f->input.n || dx->c != f->input.c || dx->h != f->input.h || dx->w != f->input.w)
        return diat_set_error(err, DIAT_ERR_ARGUMENT,
                              "The face network's input gradient is %dx%dx%dx%d, its input "
                              "%dx%dx%dx%d.",
                              dx->n, dx->c, dx->h, dx->w, f->input.n, f->input.c, f->input.h,
                              f->input.w);
    diat_status st;
    for (int i = 0; i < DIAT_FACE_RECOGNITION_BLOCKS; i++) {
        diat_face_residual_block *b = &f->block[i];
        if ((st = diat_tensor_like(ctx, &b->grad_out, &b->out, err))) return st;
        diat_tensor_zero(ctx, &b->grad_out);
    }
    if ((st = diat_tensor_like(ctx, &f->grad_feature, &f->feature, err))) return st;
    diat_tensor_zero(ctx, &f->grad_feature);
    be->linear_backward(ctx, &f->feature, &f->fc_weight->value, dembedding, &f->grad_feature, NULL,
                        NULL);
    diat_face_residual_block *last = &f->block[DIAT_FACE_RECOGNITION_BLOCKS - 1];
    be->avgpool_backward(ctx, &f->grad_feature, last->out.h, last->out.h, &last->grad_out);

    if ((st = diat_tensor_like(ctx, &f->grad_pooled, &f->pooled, err))) return st;
    diat_tensor_zero(ctx, &f->grad_pooled);
    for (int i = DIAT_FACE_RECOGNITION_BLOCKS - 1; i >= 0; i--) {
        const diat_tensor *in = i == 0 ? &f->pooled : &f->block[i - 1].out;
        diat_tensor *grad_in = i == 0 ? &f->grad_pooled : &f->block[i - 1].grad_out;
        if ((st = block_backward(f, &f->block[i], in, grad_in, err))) return st;
    }

    if ((st = diat_tensor_like(ctx, &f->grad_stem, &f->stem, err))) return st;
    diat_tensor_zero(ctx, &f->grad_stem);
    be->maxpool_backward(ctx, &f->stem, &f->grad_pooled, 3, 2, 0, &f->grad_stem);
    diat_tensor grad_pre;
    if ((st = diat_scratch_view(ctx, &f->scratch[0], &f->stem, &grad_pre, err))) return st;
    be->activation_backward(ctx, DIAT_ACT_RELU, 0.0f, f->stem.data, f->grad_stem.data,
                            grad_pre.data, diat_tensor_count(&f->stem));
    const int resized =
        f->input.h != DIAT_FACE_RECOGNITION_SIZE || f->input.w != DIAT_FACE_RECOGNITION_SIZE;
    if (!resized) {
        /* The stem saw x itself: its input gradient is dx's. */
        be->conv2d_backward(ctx, &f->input, &f->stem_weight, &grad_pre, f->stem_layer.geometry, dx,
                            NULL, NULL);
        return DIAT_OK;
    }
    if ((st = diat_tensor_like(ctx, &f->grad_resized, &f->resized, err))) return st;
    diat_tensor_zero(ctx, &f->grad_resized);
    be->conv2d_backward(ctx, &f->resized, &f->stem_weight, &grad_pre, f->stem_layer.geometry,
                        &f->grad_resized, NULL, NULL);
    be->resize_bilinear_backward(ctx, &f->grad_resized, dx);
    return DIAT_OK;
}

diat_status diat_face_recognition_embed_chip(diat_face_recognition *f, const float *rgb,
                                             float embedding[DIAT_FACE_RECOGNITION_DIM],
                                             diat_error *err)
{
    diat_context *ctx = f->net.ctx;
    const int size = DIAT_FACE_RECOGNITION_SIZE;
    const size_t plane = (size_t)size * size;
    float *planar = malloc(3 * plane * sizeof *planar);
    if (!planar) return diat_set_error(err, DIAT_ERR_MEMORY, "Out of memory for a face chip.");
    /* Interleaved [0, 1] -> planar [-1, 1], the engine's convention. */
    for (size_t i = 0; i < plane; i++)
        for (int c = 0; c < 3; c++) planar[(size_t)c * plane + i] = 2.0f * rgb[3 * i + c] - 1.0f;
    diat_tensor x = {0};
    diat_status st = diat_tensor_alloc(ctx, &x, 1, 3, size, size, err);
    if (st == DIAT_OK) {
        diat_tensor_upload(ctx, &x, planar);
        st = diat_face_recognition_forward(f, &x, err);
        if (st == DIAT_OK) diat_tensor_download(ctx, &f->embedding, embedding);
        diat_tensor_release(ctx, &x);
    }
    /* x is gone: no backward from this forward. */
    memset(&f->input, 0, sizeof f->input);
    free(planar);
    return st;
}

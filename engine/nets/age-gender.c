/* face-api's age and gender network (AgeGenderNet), with the weights face-api
 * ships, converted by tools/convert-face-api.py --model age-gender: the
 * evaluation's second opinion on Young and Male models, from a network
 * neither the trainer nor faceres share anything with. Inference only.
 *
 * Topology (TinyXception with two middle blocks; sizes for the 112x112
 * input; "sep" is a depthwise 3x3 without bias, then a pointwise 1x1 with a
 * bias; every 3x3 pads as TensorFlow's 'same'):
 *
 *   input          3 x 112 x 112, (rgb - mean) / 255, rgb in 0..255
 *   conv_in        relu(conv 3x3 stride 2)                   -> 32 x 56 x 56
 *   reduction 0    32 -> 64, input not activated             -> 64 x 28 x 28
 *   reduction 1    64 -> 128                                 -> 128 x 14 x 14
 *   main 0, 1      128, residual                             -> 128 x 14 x 14
 *   exit reduction 128 -> 256                                -> 256 x 7 x 7
 *   exit sep       relu(sep 256 -> 512)                      -> 512 x 7 x 7
 *   average pool   7x7 (stride 2, one window)                -> 512
 *   heads          age: linear 512 -> 1 (years);
 *                  gender: linear 512 -> 2, softmax (index 0: male)
 *
 * Reduction block on x: h = sep0(relu(x)) (x itself in reduction 0),
 * h = sep1(relu(h)), h = maxpool 3x3 stride 2 (h), plus a 1x1 stride-2
 * convolution of x (not activated). Main block: three times
 * h = sep(relu(h)) from h = x, then h + x.
 *
 * TensorFlow's 'same' with stride 2 on an even side pads one row and column
 * at the bottom and right only: conv_in's input is copied into a buffer one
 * row and column larger (diat_pad_bottom_right) and convolved unpadded; the
 * max pools are called with no padding on an output of half the side, so
 * their last window simply stops at the edge (padding never wins a max).
 * The 1x1 stride-2 convolutions need no padding.
 *
 * The face is cut out as face-api does it (face-api-input.c), with its
 * bilinear resize. Runs on a CPU context: the caller's when it is one, else
 * its own. */
#include "face-api-input.h"
#include "layers.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FORMAT_NAME "diat-face-age-gender"
#define INPUT_SIZE DIAT_FACE_API_INPUT_SIZE
#define STEM_CHANNELS 32
#define BLOCKS 5
#define MAX_SEPARABLE 3 /* per block */
#define FEATURES DIAT_AGE_GENDER_FEATURES

/* face-api's mean RGB of its training faces, in 0..255 pixel units (the same
 * as the landmark network's). */
static const float mean_rgb[3] = {122.782f, 117.001f, 104.298f};

typedef struct block_spec {
    const char *name;
    int in, out, separable, reduction;
} block_spec;

static const block_spec blocks[BLOCKS] = {
    {"entry0", 32, 64, 2, 1},  /* face-api's entry_flow/reduction_block_0 */
    {"entry1", 64, 128, 2, 1}, /* entry_flow/reduction_block_1 */
    {"main0", 128, 128, 3, 0}, /* middle_flow/main_block_0 */
    {"main1", 128, 128, 3, 0}, /* middle_flow/main_block_1 */
    {"exit", 128, 256, 2, 1},  /* exit_flow/reduction_block */
};

typedef struct separable_conv {
    diat_param *depthwise; /* [c, 1, 3, 3] */
    diat_param *pointwise; /* [out, c, 1, 1] */
    diat_param *bias;      /* [out] */
} separable_conv;

typedef struct block_params {
    separable_conv sep[MAX_SEPARABLE];
    diat_param *expansion_weight, *expansion_bias; /* reduction blocks: [out, in, 1, 1], [out] */
} block_params;

struct diat_age_gender {
    diat_context *cpu, *own_cpu;
    diat_net net;
    diat_param *stem_weight, *stem_bias; /* conv_in: [32, 3, 3, 3], [32] */
    block_params block[BLOCKS];
    separable_conv exit_sep; /* exit_flow/separable_conv: 256 -> 512 */
    diat_param *age_weight, *age_bias, *gender_weight, *gender_bias;
    /* Activations: each is viewed at the shape a layer needs, sized for the
     * largest (64 x 56 x 56, reduction 0's separable outputs). */
    diat_tensor input;  /* [1, 3, 112, 112] */
    diat_tensor padded; /* conv_in's input plus a zero row and column */
    diat_tensor x, h, t, depthwise, shortcut;
    diat_tensor pooled, age, gender; /* [1, 512], [1, 1], [1, 2] */
};

static diat_status add_param(diat_age_gender *ag, diat_param **slot, const char *name, int ndim,
                             int n, int c, int h, int w, diat_error *err)
{
    /* Frozen: no gradient buffers. */
    *slot = diat_net_add(&ag->net, name, ndim, n, c, h, w, 0, err);
    return *slot ? DIAT_OK : err ? err->code : DIAT_ERR_MEMORY;
}

static diat_status add_separable(diat_age_gender *ag, separable_conv *sc, const char *prefix,
                                 int in, int out, diat_error *err)
{
    char name[DIAT_PARAM_NAME_MAX];
    snprintf(name, sizeof name, "%.24s.depthwise.weight", prefix);
    diat_status st = add_param(ag, &sc->depthwise, name, 4, in, 1, 3, 3, err);
    snprintf(name, sizeof name, "%.24s.pointwise.weight", prefix);
    if (st == DIAT_OK) st = add_param(ag, &sc->pointwise, name, 4, out, in, 1, 1, err);
    snprintf(name, sizeof name, "%.24s.bias", prefix);
    if (st == DIAT_OK) st = add_param(ag, &sc->bias, name, 1, out, 1, 1, 1, err);
    return st;
}

static diat_status add_parameters(diat_age_gender *ag, diat_error *err)
{
    /* stem 2, separable convs 3 each (12 + 1), expansions 2 each (3), heads 4 */
    diat_status st = diat_net_setup(&ag->net, ag->cpu, 2 + 3 * 13 + 2 * 3 + 4, err);
    if (st == DIAT_OK)
        st = add_param(ag, &ag->stem_weight, "conv_in.weight", 4, STEM_CHANNELS, 3, 3, 3, err);
    if (st == DIAT_OK)
        st = add_param(ag, &ag->stem_bias, "conv_in.bias", 1, STEM_CHANNELS, 1, 1, 1, err);
    char prefix[24], name[DIAT_PARAM_NAME_MAX];
    for (int b = 0; b < BLOCKS && st == DIAT_OK; b++) {
        const block_spec *spec = &blocks[b];
        for (int k = 0; k < spec->separable && st == DIAT_OK; k++) {
            snprintf(prefix, sizeof prefix, "%.8s.sep%d", spec->name, k % 10);
            st = add_separable(ag, &ag->block[b].sep[k], prefix, k == 0 ? spec->in : spec->out,
                               spec->out, err);
        }
        if (!spec->reduction || st != DIAT_OK) continue;
        snprintf(name, sizeof name, "%.8s.expansion.weight", spec->name);
        st = add_param(ag, &ag->block[b].expansion_weight, name, 4, spec->out, spec->in, 1, 1, err);
        snprintf(name, sizeof name, "%.8s.expansion.bias", spec->name);
        if (st == DIAT_OK)
            st = add_param(ag, &ag->block[b].expansion_bias, name, 1, spec->out, 1, 1, 1, err);
    }
    if (st == DIAT_OK)
        st = add_separable(ag, &ag->exit_sep, "exit_sep", blocks[BLOCKS - 1].out, FEATURES, err);
    if (st == DIAT_OK)
        st = add_param(ag, &ag->age_weight, "fc.age.weight", 2, 1, FEATURES, 1, 1, err);
    if (st == DIAT_OK) st = add_param(ag, &ag->age_bias, "fc.age.bias", 1, 1, 1, 1, 1, err);
    if (st == DIAT_OK)
        st = add_param(ag, &ag->gender_weight, "fc.gender.weight", 2, 2, FEATURES, 1, 1, err);
    if (st == DIAT_OK) st = add_param(ag, &ag->gender_bias, "fc.gender.bias", 1, 2, 1, 1, 1, err);
    return st;
}

static diat_status alloc_activations(diat_age_gender *ag, diat_error *err)
{
    const int half = INPUT_SIZE / 2;
    const int largest = blocks[0].out * half * half;
    diat_tensor *plane_sized[] = {&ag->x, &ag->h, &ag->t, &ag->depthwise, &ag->shortcut};
    diat_status st = diat_tensor_alloc(ag->cpu, &ag->input, 1, 3, INPUT_SIZE, INPUT_SIZE, err);
    if (st == DIAT_OK)
        st = diat_tensor_alloc(ag->cpu, &ag->padded, 1, 3, INPUT_SIZE + 1, INPUT_SIZE + 1, err);
    for (size_t i = 0; i < sizeof plane_sized / sizeof plane_sized[0] && st == DIAT_OK; i++)
        st = diat_tensor_alloc(ag->cpu, plane_sized[i], 1, 1, 1, largest, err);
    if (st == DIAT_OK) st = diat_tensor_alloc(ag->cpu, &ag->pooled, 1, FEATURES, 1, 1, err);
    if (st == DIAT_OK) st = diat_tensor_alloc(ag->cpu, &ag->age, 1, 1, 1, 1, err);
    if (st == DIAT_OK) st = diat_tensor_alloc(ag->cpu, &ag->gender, 1, 2, 1, 1, err);
    return st;
}

void diat_age_gender_free(diat_age_gender *ag)
{
    if (!ag) return;
    if (ag->cpu) {
        diat_tensor *owned[] = {&ag->input,     &ag->padded,   &ag->x,      &ag->h,   &ag->t,
                                &ag->depthwise, &ag->shortcut, &ag->pooled, &ag->age, &ag->gender};
        for (size_t i = 0; i < sizeof owned / sizeof owned[0]; i++)
            diat_tensor_release(ag->cpu, owned[i]);
        if (ag->net.params) diat_net_release(&ag->net);
    }
    diat_context_free(ag->own_cpu);
    free(ag);
}

diat_status diat_age_gender_load(diat_context *ctx, const char *path, diat_age_gender **out,
                                 diat_error *err)
{
    if (out) *out = NULL;
    if (!ctx || !path || !out)
        return diat_set_error(err, DIAT_ERR_ARGUMENT,
                              "Loading the age and gender network needs a context, a model file "
                              "and an output.");
    diat_age_gender *ag = calloc(1, sizeof *ag);
    if (!ag)
        return diat_set_error(err, DIAT_ERR_MEMORY,
                              "Out of memory for the age and gender network.");
    diat_status st = DIAT_OK;
    ag->cpu = ctx;
    if (diat_context_backend(ctx) != diat_backend_cpu()) {
        st = diat_context_new(DIAT_BACKEND_CPU, diat_context_threads(ctx), &ag->own_cpu, err);
        ag->cpu = ag->own_cpu;
    }
    if (st == DIAT_OK) st = add_parameters(ag, err);
    if (st == DIAT_OK) st = alloc_activations(ag, err);
    if (st == DIAT_OK)
        st = diat_net_load_converted(&ag->net, path, FORMAT_NAME,
                                     "face-api's age and gender network",
                                     "tools/convert-face-api.py --model age-gender", err);
    if (st != DIAT_OK) {
        diat_age_gender_free(ag);
        return st;
    }
    *out = ag;
    return DIAT_OK;
}

/* ---- the network ---------------------------------------------------------- */

/* A [1, c, h, w] view of an activation buffer. */
static diat_tensor view(const diat_tensor *buffer, int c, int h, int w)
{
    return (diat_tensor){1, c, h, w, buffer->data};
}

/* y = act(pointwise(depthwise(x)) + bias), stride 1, padding 1. */
static void separable_forward(diat_age_gender *ag, const separable_conv *sc, const diat_tensor *x,
                              diat_activation act, diat_tensor *y)
{
    diat_context *ctx = ag->cpu;
    diat_tensor mid = view(&ag->depthwise, x->c, x->h, x->w);
    ctx->backend->depthwise_conv2d_forward(ctx, x, &sc->depthwise->value, NULL,
                                           (diat_conv_geometry){3, 1, 1}, DIAT_ACT_IDENTITY, 0.0f,
                                           &mid);
    ctx->backend->conv2d_forward(ctx, &mid, &sc->pointwise->value, &sc->bias->value,
                                 (diat_conv_geometry){1, 1, 0}, act, 0.0f, y);
}

/* One block on ag->x (its input, side x side), leaving its result in ag->x.
 * Returns the result's side. */
static int block_forward(diat_age_gender *ag, int b, int side)
{
    diat_context *ctx = ag->cpu;
    const diat_backend *be = ctx->backend;
    const block_spec *spec = &blocks[b];
    const block_params *params = &ag->block[b];
    diat_tensor x = view(&ag->x, spec->in, side, side);
    const size_t in_count = (size_t)spec->in * side * side;

    /* The separable convolutions, each on relu of the one before: that ReLU
     * is fused into the one before; the first one's, on x, is not (and
     * reduction 0 has none). They alternate between h and t. */
    diat_tensor outputs[2] = {view(&ag->h, spec->out, side, side),
                              view(&ag->t, spec->out, side, side)};
    diat_tensor activated = view(&ag->t, spec->in, side, side);
    const diat_tensor *source = &x;
    if (b > 0) {
        be->activation_forward(ctx, DIAT_ACT_RELU, 0.0f, x.data, activated.data, in_count);
        source = &activated;
    }
    for (int k = 0; k < spec->separable; k++) {
        const int last = k == spec->separable - 1;
        separable_forward(ag, &params->sep[k], source, last ? DIAT_ACT_IDENTITY : DIAT_ACT_RELU,
                          &outputs[k % 2]);
        source = &outputs[k % 2];
    }
    if (!spec->reduction) { /* main block: x += h */
        be->axpy(ctx, 1.0f, source->data, x.data, in_count);
        return side;
    }
    /* Reduction: maxpool(h) + expansion(x), both at half the side. */
    const int half = side / 2;
    diat_tensor shortcut = view(&ag->shortcut, spec->out, half, half);
    be->conv2d_forward(ctx, &x, &params->expansion_weight->value, &params->expansion_bias->value,
                       (diat_conv_geometry){1, 2, 0}, DIAT_ACT_IDENTITY, 0.0f, &shortcut);
    diat_tensor pooled = view(&ag->x, spec->out, half, half); /* x is spent */
    be->maxpool_forward(ctx, source, 3, 2, 0, &pooled);
    be->axpy(ctx, 1.0f, shortcut.data, pooled.data, (size_t)spec->out * half * half);
    return half;
}

/* ag->input -> pooled features, age and gender logits. */
static void network_forward(diat_age_gender *ag)
{
    diat_context *ctx = ag->cpu;
    const diat_backend *be = ctx->backend;
    int side = INPUT_SIZE / 2;
    diat_pad_bottom_right(&ag->input, &ag->padded);
    diat_tensor stem = view(&ag->x, STEM_CHANNELS, side, side);
    be->conv2d_forward(ctx, &ag->padded, &ag->stem_weight->value, &ag->stem_bias->value,
                       (diat_conv_geometry){3, 2, 0}, DIAT_ACT_RELU, 0.0f, &stem);
    for (int b = 0; b < BLOCKS; b++) side = block_forward(ag, b, side);
    diat_tensor x = view(&ag->x, blocks[BLOCKS - 1].out, side, side);
    diat_tensor features = view(&ag->h, FEATURES, side, side);
    separable_forward(ag, &ag->exit_sep, &x, DIAT_ACT_RELU, &features);
    /* 7x7 window, stride 2, no padding, on 7x7: the global average. */
    be->avgpool_forward(ctx, &features, side, 2, &ag->pooled);
    be->linear_forward(ctx, &ag->pooled, &ag->age_weight->value, &ag->age_bias->value, &ag->age);
    be->linear_forward(ctx, &ag->pooled, &ag->gender_weight->value, &ag->gender_bias->value,
                       &ag->gender);
}

diat_status diat_age_gender_run(diat_age_gender *ag, const diat_image *photo, const float box[4],
                                diat_age_gender_output *out, diat_error *err)
{
    if (!ag || !photo || !out)
        return diat_set_error(err, DIAT_ERR_ARGUMENT,
                              "The age and gender network needs a photo and room for its "
                              "output.");
    const float whole[4] = {0.0f, 0.0f, (float)photo->width, (float)photo->height};
    diat_status st = diat_face_api_input(photo, box ? box : whole, DIAT_FACE_API_FILTER_BILINEAR,
                                         mean_rgb, ag->input.data, NULL, err);
    if (st != DIAT_OK) return st;
    network_forward(ag);
    const float *logits = ag->gender.data;
    out->age = ag->age.data[0];
    out->logits[0] = logits[0];
    out->logits[1] = logits[1];
    /* softmax over (male, female): P(male) = 1 / (1 + exp(female - male)) */
    out->male = (float)(1.0 / (1.0 + exp((double)logits[1] - (double)logits[0])));
    memcpy(out->features, ag->pooled.data, sizeof out->features);
    return DIAT_OK;
}

/* The 68-point face landmark network: face-api's FaceLandmark68Net, with the
 * weights face-api ships, converted by tools/convert-face-api.py
 * (--model face-landmarks-68). Inference only.
 *
 * Topology (sizes for the 112x112 input; "sep" is a depthwise 3x3 without
 * bias followed by a pointwise 1x1 with bias; every 3x3 pads as TensorFlow's
 * 'same'):
 *
 *   input        3 x 112 x 112, (rgb - mean) / 255, rgb in 0..255
 *   dense0       conv0: plain 3x3 conv stride 2     -> 32 x 56 x 56
 *   dense1       conv0: sep stride 2                -> 64 x 28 x 28
 *   dense2       conv0: sep stride 2                -> 128 x 14 x 14
 *   dense3       conv0: sep stride 2                -> 256 x 7 x 7
 *   average pool 7x7 (stride 2, one window)         -> 256
 *   fc           256 -> 136                         -> 68 (x, y) pairs
 *
 * A dense block: out1 = relu(conv0(x)); out2 = sep1(out1);
 * out3 = sep2(relu(out1 + out2)); out4 = sep3(relu(out1 + out2 + out3));
 * result relu(out1 + out2 + out3 + out4). sep1..3 keep the size (stride 1,
 * padding 1 all round).
 *
 * TensorFlow's 'same' with stride 2 on an even side (all four conv0 here)
 * pads one zero row and column at the bottom and right only, never at the
 * top or left: output i sees input rows 2i..2i+2. A symmetric padding of 1
 * would shift every sample by a pixel, so those inputs are copied into a
 * buffer one row and column larger, zeros at the end, and convolved without
 * padding.
 *
 * Pre- and post-processing are face-api's (extractFaceTensors, then
 * FaceLandmark68NetBase): the box is cut out and resized to 112x112 by
 * face-api-input.c (which says where it differs from face-api: by default
 * a triangle filter when shrinking; DIAT_FACE_API_FILTER_BILINEAR is
 * face-api's own resize, for the tests), and the outputs, fractions of the
 * square, map back as corner + fraction * side - d / 2 on the shorter axis
 * (face-api takes d / 2 off even when d is odd; so do we, to agree with it;
 * it shifts by the unrounded corner, we by the rounded box). */
#include "face-landmarks.h"
#include "face-api-input.h"
#include "layers.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FORMAT_NAME "diat-face-landmarks-68"
#define INPUT_SIZE DIAT_FACE_API_INPUT_SIZE
#define POINTS 68
#define OUTPUTS (2 * POINTS)
#define BLOCKS 4
#define CONVS 4 /* per dense block */
#define FEATURES 256

/* face-api's mean RGB of its training faces, in 0..255 pixel units. */
static const float mean_rgb[3] = {122.782f, 117.001f, 104.298f};

/* Channels in and out of each dense block. */
static const int block_channels[BLOCKS + 1] = {3, 32, 64, 128, 256};

typedef struct separable_conv {
    diat_param *depthwise; /* [c, 1, 3, 3] */
    diat_param *pointwise; /* [out, c, 1, 1] */
    diat_param *bias;      /* [out] */
} separable_conv;

struct diat_landmark_net {
    diat_context *ctx;
    diat_face_api_filter filter;
    diat_net net;
    diat_param *stem_weight, *stem_bias; /* dense0.conv0: [32, 3, 3, 3], [32] */
    separable_conv conv[BLOCKS][CONVS];  /* conv[0][0] is the stem instead */
    diat_param *fc_weight, *fc_bias;     /* [136, 256], [136] */
    /* Activations: each block's tensors are views of these, shaped for it
     * (each sized for the block that needs the most). A block's input is only
     * read by its conv0, through `padded`, so the previous block's result
     * may live in `sum`, which the block then reuses. */
    diat_tensor input;  /* [1, 3, 112, 112] */
    diat_tensor padded; /* conv0's input plus a zero row and column */
    diat_tensor depthwise, out1, branch, sum, act;
    diat_tensor pooled; /* [1, 256, 1, 1] */
    diat_tensor output; /* [1, 136] */
};

static diat_status add_param(diat_landmark_net *lm, diat_param **slot, const char *name, int ndim,
                             int n, int c, int h, int w, diat_error *err)
{
    /* Frozen: no gradient buffers. */
    *slot = diat_net_add(&lm->net, name, ndim, n, c, h, w, 0, err);
    return *slot ? DIAT_OK : err ? err->code : DIAT_ERR_MEMORY;
}

static diat_status add_parameters(diat_landmark_net *lm, diat_error *err)
{
    /* stem (2) + 15 separable convs (3 each) + fc (2) */
    diat_status st = diat_net_setup(&lm->net, lm->ctx, 2 + 3 * (BLOCKS * CONVS - 1) + 2, err);
    if (st != DIAT_OK) return st;
    st = add_param(lm, &lm->stem_weight, "dense0.conv0.weight", 4, block_channels[1], 3, 3, 3, err);
    if (st == DIAT_OK)
        st = add_param(lm, &lm->stem_bias, "dense0.conv0.bias", 1, block_channels[1], 1, 1, 1, err);
    char name[DIAT_PARAM_NAME_MAX];
    for (int b = 0; b < BLOCKS && st == DIAT_OK; b++) {
        const int out = block_channels[b + 1];
        for (int k = b == 0 ? 1 : 0; k < CONVS && st == DIAT_OK; k++) {
            const int in = k == 0 ? block_channels[b] : out;
            separable_conv *sc = &lm->conv[b][k];
            snprintf(name, sizeof name, "dense%d.conv%d.depthwise.weight", b, k);
            st = add_param(lm, &sc->depthwise, name, 4, in, 1, 3, 3, err);
            if (st != DIAT_OK) break;
            snprintf(name, sizeof name, "dense%d.conv%d.pointwise.weight", b, k);
            st = add_param(lm, &sc->pointwise, name, 4, out, in, 1, 1, err);
            if (st != DIAT_OK) break;
            snprintf(name, sizeof name, "dense%d.conv%d.bias", b, k);
            st = add_param(lm, &sc->bias, name, 1, out, 1, 1, 1, err);
        }
    }
    if (st == DIAT_OK)
        st = add_param(lm, &lm->fc_weight, "fc.weight", 2, OUTPUTS, FEATURES, 1, 1, err);
    if (st == DIAT_OK) st = add_param(lm, &lm->fc_bias, "fc.bias", 1, OUTPUTS, 1, 1, 1, err);
    return st;
}

/* A [1, c, h, w] view of an activation buffer. */
static diat_tensor view(const diat_tensor *buffer, int c, int h, int w)
{
    return (diat_tensor){1, c, h, w, buffer->data};
}

static diat_status alloc_activations(diat_landmark_net *lm, diat_error *err)
{
    /* The largest plane of each kind, over the blocks: for the padded input,
     * max over b of c_in * (side + 1)^2 with side 112, 56, 28, 14 ... */
    size_t padded = 0, largest = 0;
    for (int b = 0, side = INPUT_SIZE; b < BLOCKS; b++, side /= 2) {
        size_t p = (size_t)block_channels[b] * (size_t)(side + 1) * (size_t)(side + 1);
        size_t a = (size_t)block_channels[b + 1] * (size_t)(side / 2) * (size_t)(side / 2);
        if (p > padded) padded = p;
        if (a > largest) largest = a;
    }
    diat_tensor *plane_sized[] = {&lm->depthwise, &lm->out1, &lm->branch, &lm->sum, &lm->act};
    diat_status st = diat_tensor_alloc(lm->ctx, &lm->input, 1, 3, INPUT_SIZE, INPUT_SIZE, err);
    if (st == DIAT_OK) st = diat_tensor_alloc(lm->ctx, &lm->padded, 1, 1, 1, (int)padded, err);
    for (size_t i = 0; i < sizeof plane_sized / sizeof plane_sized[0] && st == DIAT_OK; i++)
        st = diat_tensor_alloc(lm->ctx, plane_sized[i], 1, 1, 1, (int)largest, err);
    if (st == DIAT_OK) st = diat_tensor_alloc(lm->ctx, &lm->pooled, 1, FEATURES, 1, 1, err);
    if (st == DIAT_OK) st = diat_tensor_alloc(lm->ctx, &lm->output, 1, OUTPUTS, 1, 1, err);
    return st;
}

void diat_landmark_net_free(diat_landmark_net *lm)
{
    if (!lm) return;
    diat_tensor *owned[] = {&lm->input, &lm->padded, &lm->depthwise, &lm->out1,  &lm->branch,
                            &lm->sum,   &lm->act,    &lm->pooled,    &lm->output};
    for (size_t i = 0; i < sizeof owned / sizeof owned[0]; i++)
        diat_tensor_release(lm->ctx, owned[i]);
    if (lm->net.params) diat_net_release(&lm->net);
    free(lm);
}

diat_status diat_landmark_net_load(diat_context *ctx, const char *path, diat_landmark_net **out,
                                   diat_error *err)
{
    if (!ctx || !path || !out)
        return diat_set_error(err, DIAT_ERR_ARGUMENT,
                              "Loading the landmark network needs a context, a path and an "
                              "output.");
    *out = NULL;
    /* The crop and the padded copies are written on the host. */
    if (ctx->backend != diat_backend_cpu())
        return diat_set_error(err, DIAT_ERR_BACKEND,
                              "The landmark network runs on a CPU context (got '%s').",
                              ctx->backend->name);
    diat_landmark_net *lm = calloc(1, sizeof *lm);
    if (!lm)
        return diat_set_error(err, DIAT_ERR_MEMORY, "Out of memory loading the landmark network.");
    lm->ctx = ctx;
    diat_status st = add_parameters(lm, err);
    if (st == DIAT_OK) st = alloc_activations(lm, err);
    if (st == DIAT_OK)
        st = diat_net_load_converted(&lm->net, path, FORMAT_NAME, "a 68-point landmark network",
                                     "tools/convert-face-api.py --model face-landmarks-68", err);
    if (st != DIAT_OK) {
        diat_landmark_net_free(lm);
        return st;
    }
    *out = lm;
    return DIAT_OK;
}

void diat_landmark_net_set_filter(diat_landmark_net *lm, diat_face_api_filter filter)
{
    if (lm) lm->filter = filter;
}

/* ---- the network ---------------------------------------------------------- */

/* y = act(pointwise(depthwise(x)) + bias), stride 1 (padding 1) or 2 (x
 * already padded at the bottom and right, no padding). */
static void separable_forward(diat_landmark_net *lm, const separable_conv *sc, const diat_tensor *x,
                              int stride, diat_activation act, diat_tensor *y)
{
    diat_context *ctx = lm->ctx;
    const diat_conv_geometry depthwise = {3, stride, stride == 1 ? 1 : 0};
    const diat_conv_geometry pointwise = {1, 1, 0};
    diat_tensor mid = view(&lm->depthwise, x->c, y->h, y->w);
    ctx->backend->depthwise_conv2d_forward(ctx, x, &sc->depthwise->value, NULL, depthwise,
                                           DIAT_ACT_IDENTITY, 0.0f, &mid);
    ctx->backend->conv2d_forward(ctx, &mid, &sc->pointwise->value, &sc->bias->value, pointwise, act,
                                 0.0f, y);
}

/* One dense block on `x` (side 2 * side); its result is left in lm->sum. */
static void dense_block(diat_landmark_net *lm, int b, const diat_tensor *x, diat_tensor *result)
{
    diat_context *ctx = lm->ctx;
    const diat_backend *be = ctx->backend;
    const int c = block_channels[b + 1], side = x->h / 2;
    const size_t count = (size_t)c * side * side;
    diat_tensor padded = view(&lm->padded, x->c, x->h + 1, x->w + 1);
    diat_tensor out1 = view(&lm->out1, c, side, side);
    diat_tensor branch = view(&lm->branch, c, side, side);
    diat_tensor sum = view(&lm->sum, c, side, side);
    diat_tensor act = view(&lm->act, c, side, side);

    diat_pad_bottom_right(x, &padded);
    if (b == 0)
        be->conv2d_forward(ctx, &padded, &lm->stem_weight->value, &lm->stem_bias->value,
                           (diat_conv_geometry){3, 2, 0}, DIAT_ACT_RELU, 0.0f, &out1);
    else
        separable_forward(lm, &lm->conv[b][0], &padded, 2, DIAT_ACT_RELU, &out1);
    /* x is dead from here on: `sum` may have been the previous result. */
    separable_forward(lm, &lm->conv[b][1], &out1, 1, DIAT_ACT_IDENTITY, &branch);
    be->add(ctx, out1.data, branch.data, sum.data, count);
    for (int k = 2; k < CONVS; k++) {
        be->activation_forward(ctx, DIAT_ACT_RELU, 0.0f, sum.data, act.data, count);
        separable_forward(lm, &lm->conv[b][k], &act, 1, DIAT_ACT_IDENTITY, &branch);
        be->axpy(ctx, 1.0f, branch.data, sum.data, count);
    }
    be->activation_forward(ctx, DIAT_ACT_RELU, 0.0f, sum.data, sum.data, count);
    *result = sum;
}

/* lm->input -> lm->output (136 fractions of the input's side). */
static void network_forward(diat_landmark_net *lm)
{
    diat_context *ctx = lm->ctx;
    diat_tensor h = lm->input;
    for (int b = 0; b < BLOCKS; b++) {
        diat_tensor result;
        dense_block(lm, b, &h, &result);
        h = result;
    }
    /* 7x7 window, stride 2, no padding, on 7x7: the global average. */
    ctx->backend->avgpool_forward(ctx, &h, 7, 2, &lm->pooled);
    ctx->backend->linear_forward(ctx, &lm->pooled, &lm->fc_weight->value, &lm->fc_bias->value,
                                 &lm->output);
}

diat_status diat_landmark_net_run(diat_landmark_net *lm, const diat_image *photo,
                                  const float box[4], float landmarks[68][2], diat_error *err)
{
    if (!lm || !photo || !box || !landmarks)
        return diat_set_error(err, DIAT_ERR_ARGUMENT,
                              "The landmark network needs a photo, a box and room for the "
                              "landmarks.");
    diat_face_api_square square;
    diat_status st =
        diat_face_api_input(photo, box, lm->filter, mean_rgb, lm->input.data, &square, err);
    if (st != DIAT_OK) return st;
    network_forward(lm);

    /* FaceLandmark68NetBase.postProcess then shiftBy(box corner). */
    const float *out = lm->output.data;
    for (int i = 0; i < POINTS; i++) {
        landmarks[i][0] =
            (float)((double)square.x0 + (double)out[2 * i] * (double)square.side - square.pad_x);
        landmarks[i][1] = (float)((double)square.y0 + (double)out[2 * i + 1] * (double)square.side -
                                  square.pad_y);
    }
    return DIAT_OK;
}

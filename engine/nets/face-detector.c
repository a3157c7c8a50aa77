/* Face detection: face-api's tiny face detector (TinyFaceDetector, a tiny
 * YOLO v2 with depthwise-separable convolutions), with the weights face-api
 * ships, converted by tools/convert-face-api.py --model tiny-face-detector.
 *
 * Topology for the 416x416 input face-api uses by default (every "conv" has
 * a bias; "leaky" is LeakyReLU with slope 0.1; the pools are 2x2 max pools
 * with TensorFlow's 'same' padding, which for an odd size adds one row and
 * column at the bottom and right that never wins):
 *
 *   input      3 x 416 x 416, (rgb in 0..255 - mean) / 255 (folded into conv0)
 *   conv0      3x3, no padding, leaky                     -> 16 x 414 x 414
 *   pool       stride 2                                   -> 16 x 207 x 207
 *   conv1      separable 3x3 (depthwise, pointwise), pad 1 -> 32 x 207 x 207
 *   pool       stride 2                                   -> 32 x 104 x 104
 *   conv2      separable                                  -> 64 x 104 x 104
 *   pool       stride 2                                   -> 64 x 52 x 52
 *   conv3      separable                                  -> 128 x 52 x 52
 *   pool       stride 2                                   -> 128 x 26 x 26
 *   conv4      separable                                  -> 256 x 26 x 26
 *   pool       stride 2                                   -> 256 x 13 x 13
 *   conv5      separable                                  -> 512 x 13 x 13
 *   pool       stride 1                                   -> 512 x 13 x 13
 *   conv8      1x1, no activation                         -> 25 x 13 x 13
 *
 * A separable layer is a depthwise 3x3 (no bias) then a pointwise 1x1 with
 * the bias and the leaky activation (batch norm was folded in by face-api).
 * The 25 output channels are 5 anchors x (x, y, w, h, score) logits: for
 * cell (row, col) and anchor a the box centre is ((col, row) + sigmoid(x, y))
 * / 13 and its size exp(w, h) * anchor_a / 13, both as fractions of the
 * input square, and its score sigmoid(score) (TinyYolov2Base.extractBoxes).
 *
 * Before the network, the photo is letterboxed as face-api does it
 * (NetInput.toBatchTensor without centring): padded with black at the right
 * or bottom to a square and resized to 416x416 — exactly as face-api for
 * photos up to 832 pixels, and after an area-filter shrink for larger ones
 * (see "letterboxing" below), reading the photo a row at a time so that the
 * memory used does not grow with the photo's height. Boxes map back to the
 * photo with the exact scale. */
#include "layers.h"

#include "../faces-internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FORMAT_NAME "diat-face-detector-tiny"

enum {
    SEPARABLE_LAYERS = 5,
    ANCHORS = 5,
    BOX_FIELDS = 5,    /* x, y, w, h, score */
    INPUT_STRIDE = 32, /* input pixels per output cell */
    STEM_KERNEL = 3,
    RGB = 3,
};

static const float leaky_slope = 0.1f;

/* conv0's input, then the output channels of conv0 and conv1..conv5. */
static const int layer_channels[SEPARABLE_LAYERS + 2] = {3, 16, 32, 64, 128, 256, 512};

/* Box anchors in cells (width, height): src/tinyFaceDetector/const.ts. */
static const double anchor_size[ANCHORS][2] = {
    {1.603231, 2.094468}, {6.041143, 7.080126}, {2.882459, 3.518061},
    {4.266906, 5.178857}, {9.041765, 10.66308},
};

/* Mean RGB of the detector's training images, in 0..255 (const.ts). */
static const double mean_rgb[RGB] = {117.001, 114.697, 97.404};

typedef struct separable_layer {
    diat_param *depthwise, *pointwise, *bias;
} separable_layer;

struct diat_face_detector {
    diat_context *ctx;
    diat_net net; /* the file's parameters, frozen */
    diat_param *stem_weight, *stem_bias_raw;
    separable_layer separable[SEPARABLE_LAYERS];
    diat_param *head_weight, *head_bias;
    diat_tensor stem_bias; /* conv0's bias with the input normalisation folded in */
    diat_tensor input;     /* the letterboxed photo [1, 3, side, side] */
    /* Two buffers every layer's activations are views into, alternately
     * (each layer reads one and writes the other), sized for the largest
     * activation each one receives. */
    diat_tensor ping, pong;
    int buffers_side; /* the input side the buffers were sized for */
    diat_tensor grid; /* the network output [1, 25, cells, cells] */
};

/* ---- loading -------------------------------------------------------------- */

static diat_param *frozen_add(diat_net *net, const char *name, int ndim, int n, int c, int k,
                              diat_error *err)
{
    return diat_net_add(net, name, ndim, n, c, k, k, 0, err);
}

static diat_status add_parameters(diat_face_detector *d, diat_error *err)
{
    /* conv0 (2) + 3 per separable layer + conv8 (2) */
    diat_status st = diat_net_setup(&d->net, d->ctx, 2 + 3 * SEPARABLE_LAYERS + 2, err);
    if (st != DIAT_OK) return st;
    diat_net *net = &d->net;
    const int stem_out = layer_channels[1];
    if (!(d->stem_weight = frozen_add(net, "conv0.weight", 4, stem_out, RGB, STEM_KERNEL, err)) ||
        !(d->stem_bias_raw = frozen_add(net, "conv0.bias", 1, stem_out, 1, 1, err)))
        return err ? err->code : DIAT_ERR_MEMORY;
    char name[DIAT_PARAM_NAME_MAX];
    for (int i = 0; i < SEPARABLE_LAYERS; i++) {
        separable_layer *layer = &d->separable[i];
        int in = layer_channels[i + 1], out = layer_channels[i + 2];
        snprintf(name, sizeof name, "conv%d.depthwise.weight", i + 1);
        if (!(layer->depthwise = frozen_add(net, name, 4, in, 1, 3, err)))
            return err ? err->code : DIAT_ERR_MEMORY;
        snprintf(name, sizeof name, "conv%d.pointwise.weight", i + 1);
        if (!(layer->pointwise = frozen_add(net, name, 4, out, in, 1, err)))
            return err ? err->code : DIAT_ERR_MEMORY;
        snprintf(name, sizeof name, "conv%d.bias", i + 1);
        if (!(layer->bias = frozen_add(net, name, 1, out, 1, 1, err)))
            return err ? err->code : DIAT_ERR_MEMORY;
    }
    const int features = layer_channels[SEPARABLE_LAYERS + 1], outputs = ANCHORS * BOX_FIELDS;
    if (!(d->head_weight = frozen_add(net, "conv8.weight", 4, outputs, features, 1, err)) ||
        !(d->head_bias = frozen_add(net, "conv8.bias", 1, outputs, 1, 1, err)))
        return err ? err->code : DIAT_ERR_MEMORY;
    return diat_tensor_alloc(d->ctx, &d->stem_bias, stem_out, 1, 1, 1, err);
}

/* The network sees v = (255 p - mean_c) / 255 = p - mean_c / 255 for our
 * pixel values p in [0, 1]. conv0 has no padding, so that shift folds into
 * its bias exactly: bias' = bias - sum over (c, i, j) of weight * mean_c/255.
 * The letterbox's black (p = 0) then becomes -mean / 255, as in face-api,
 * which pads before normalising. */
static void fold_input_normalisation(diat_face_detector *d)
{
    const int out = layer_channels[1];
    const size_t taps = (size_t)STEM_KERNEL * STEM_KERNEL;
    const float *weight = d->stem_weight->value.data;
    const float *bias = d->stem_bias_raw->value.data;
    for (int o = 0; o < out; o++) {
        double shifted = bias[o];
        for (int c = 0; c < RGB; c++) {
            const float *w = weight + ((size_t)o * RGB + (size_t)c) * taps;
            for (size_t t = 0; t < taps; t++) shifted -= (double)w[t] * (mean_rgb[c] / 255.0);
        }
        d->stem_bias.data[o] = (float)shifted;
    }
}

diat_status diat_face_detector_load(diat_context *ctx, const char *path, diat_face_detector **out,
                                    diat_error *err)
{
    *out = NULL;
    if (!ctx || !path)
        return diat_set_error(err, DIAT_ERR_ARGUMENT, "No context or file for the face detector.");
    /* Letterboxing writes the input tensor and decoding reads the output
     * directly: both need host memory. */
    if (diat_context_backend(ctx) != diat_backend_cpu())
        return diat_set_error(err, DIAT_ERR_BACKEND,
                              "The face detector runs on a CPU context, not '%s'.",
                              diat_context_backend_name(ctx));
    diat_face_detector *d = calloc(1, sizeof *d);
    if (!d) return diat_set_error(err, DIAT_ERR_MEMORY, "Out of memory for the face detector.");
    d->ctx = ctx;
    diat_status status = add_parameters(d, err);
    if (status == DIAT_OK)
        status =
            diat_net_load_converted(&d->net, path, FORMAT_NAME, "a face detector",
                                    "tools/convert-face-api.py --model tiny-face-detector", err);
    if (status != DIAT_OK) {
        diat_face_detector_free(d);
        return status;
    }
    fold_input_normalisation(d);
    *out = d;
    return DIAT_OK;
}

void diat_face_detector_free(diat_face_detector *d)
{
    if (!d) return;
    diat_tensor *owned[] = {&d->stem_bias, &d->input, &d->ping, &d->pong, &d->grid};
    for (size_t i = 0; i < sizeof owned / sizeof owned[0]; i++)
        diat_tensor_release(d->ctx, owned[i]);
    if (d->net.params) diat_net_release(&d->net);
    free(d);
}

/* ---- the network ---------------------------------------------------------- */

/* TensorFlow 'same' pooling keeps ceil(size / stride). */
static int pooled_size(int size, int stride)
{
    return (size + stride - 1) / stride;
}

/* Largest activation (in floats) that lands in each of the two buffers in
 * the order forward() uses them: conv0 -> A, pool -> B, then per separable
 * layer depthwise -> A, pointwise -> B, pool -> A, and the roles swap. */
static void buffer_sizes(int side, size_t *first, size_t *second)
{
    size_t sizes[2] = {0, 0};
    int which = 0, size = side - (STEM_KERNEL - 1);
#define PLACE(floats)                                                                              \
    do {                                                                                           \
        size_t floats_ = (floats);                                                                 \
        if (floats_ > sizes[which]) sizes[which] = floats_;                                        \
        which ^= 1;                                                                                \
    } while (0)
    PLACE((size_t)layer_channels[1] * size * size); /* conv0 */
    size = pooled_size(size, 2);
    PLACE((size_t)layer_channels[1] * size * size);
    for (int i = 0; i < SEPARABLE_LAYERS; i++) {
        PLACE((size_t)layer_channels[i + 1] * size * size); /* depthwise */
        PLACE((size_t)layer_channels[i + 2] * size * size); /* pointwise */
        size = pooled_size(size, i + 1 < SEPARABLE_LAYERS ? 2 : 1);
        PLACE((size_t)layer_channels[i + 2] * size * size); /* pool */
    }
#undef PLACE
    *first = sizes[0];
    *second = sizes[1];
}

static diat_status ensure_buffers(diat_face_detector *d, int side, diat_error *err)
{
    if (d->buffers_side == side) return DIAT_OK;
    size_t first, second;
    buffer_sizes(side, &first, &second);
    diat_tensor_release(d->ctx, &d->ping);
    diat_tensor_release(d->ctx, &d->pong);
    d->buffers_side = 0;
    diat_status st = diat_tensor_alloc(d->ctx, &d->ping, 1, 1, 1, (int)first, err);
    if (st == DIAT_OK) st = diat_tensor_alloc(d->ctx, &d->pong, 1, 1, 1, (int)second, err);
    if (st == DIAT_OK) d->buffers_side = side;
    return st;
}

/* 2x2 max pooling with TensorFlow's 'same' padding: output (i, j) is the
 * largest of input rows i*stride .. +1 and columns j*stride .. +1 that exist
 * (the padding never wins). The backend's maxpool op computes the same
 * (its windows are clipped to the plane), but as a general k x k argmax it
 * took a third of the detector's time; this one is branch-free inside a
 * row. The detector runs on host memory (a CPU context), so it may. */
static void max_pool_same_2x2(const diat_tensor *x, int stride, diat_tensor *y)
{
    const int in_h = x->h, in_w = x->w, out_h = y->h, out_w = y->w;
    /* Output columns whose window lies wholly inside the row. */
    int full_cols = in_w >= 2 ? (in_w - 2) / stride + 1 : 0;
    if (full_cols > out_w) full_cols = out_w;
    for (size_t plane = 0; plane < (size_t)x->n * x->c; plane++) {
        const float *in = x->data + plane * in_h * in_w;
        float *out = y->data + plane * out_h * out_w;
        for (int i = 0; i < out_h; i++) {
            const float *upper = in + (size_t)i * stride * in_w;
            /* A window hanging past the last row uses that row alone. */
            const float *lower = i * stride + 1 < in_h ? upper + in_w : upper;
            float *dst = out + (size_t)i * out_w;
            for (int j = 0; j < full_cols; j++) {
                const int at = j * stride;
                float a = upper[at] > upper[at + 1] ? upper[at] : upper[at + 1];
                float b = lower[at] > lower[at + 1] ? lower[at] : lower[at + 1];
                dst[j] = a > b ? a : b;
            }
            for (int j = full_cols; j < out_w; j++) {
                const int at = j * stride; /* the last column alone */
                dst[j] = upper[at] > lower[at] ? upper[at] : lower[at];
            }
        }
    }
}

/* A view of `buffer` shaped [1, c, h, w]. */
static diat_tensor view_of(const diat_tensor *buffer, int c, int h, int w)
{
    return (diat_tensor){1, c, h, w, buffer->data};
}

diat_status diat_face_detector_forward(diat_face_detector *d, const diat_tensor *input,
                                       diat_tensor *grid, diat_error *err)
{
    const int side = input->h;
    if (input->n != 1 || input->c != RGB || input->w != side || side < INPUT_STRIDE ||
        side % INPUT_STRIDE != 0)
        return diat_set_error(err, DIAT_ERR_ARGUMENT,
                              "The face detector takes one RGB square whose side is a multiple "
                              "of %d, not %dx%dx%dx%d.",
                              INPUT_STRIDE, input->n, input->c, input->h, input->w);
    diat_status st = ensure_buffers(d, side, err);
    if (st != DIAT_OK) return st;
    diat_context *ctx = d->ctx;
    const diat_backend *be = ctx->backend;
    const diat_tensor *buffer[2] = {&d->ping, &d->pong};
    int which = 0, size = side - (STEM_KERNEL - 1);

    diat_tensor x = view_of(buffer[which], layer_channels[1], size, size);
    be->conv2d_forward(ctx, input, &d->stem_weight->value, &d->stem_bias,
                       (diat_conv_geometry){STEM_KERNEL, 1, 0}, DIAT_ACT_LEAKY_RELU, leaky_slope,
                       &x);
    size = pooled_size(size, 2);
    which ^= 1;
    diat_tensor pooled = view_of(buffer[which], layer_channels[1], size, size);
    max_pool_same_2x2(&x, 2, &pooled);
    for (int i = 0; i < SEPARABLE_LAYERS; i++) {
        const separable_layer *layer = &d->separable[i];
        const int in = layer_channels[i + 1], out = layer_channels[i + 2];
        which ^= 1;
        diat_tensor depthwise = view_of(buffer[which], in, size, size);
        be->depthwise_conv2d_forward(ctx, &pooled, &layer->depthwise->value, NULL,
                                     (diat_conv_geometry){3, 1, 1}, DIAT_ACT_IDENTITY, 0.0f,
                                     &depthwise);
        which ^= 1;
        diat_tensor pointwise = view_of(buffer[which], out, size, size);
        be->conv2d_forward(ctx, &depthwise, &layer->pointwise->value, &layer->bias->value,
                           (diat_conv_geometry){1, 1, 0}, DIAT_ACT_LEAKY_RELU, leaky_slope,
                           &pointwise);
        const int stride = i + 1 < SEPARABLE_LAYERS ? 2 : 1;
        size = pooled_size(size, stride);
        which ^= 1;
        pooled = view_of(buffer[which], out, size, size);
        max_pool_same_2x2(&pointwise, stride, &pooled);
    }
    if ((st = diat_tensor_ensure(ctx, grid, 1, ANCHORS * BOX_FIELDS, size, size, err))) return st;
    be->conv2d_forward(ctx, &pooled, &d->head_weight->value, &d->head_bias->value,
                       (diat_conv_geometry){1, 1, 0}, DIAT_ACT_IDENTITY, 0.0f, grid);
    return DIAT_OK;
}

/* ---- letterboxing the photo into the input square --------------------------
 * As face-api does it for an image tensor (NetInput.toBatchTensor without
 * centring): the photo is padded with black at the right or bottom to a
 * square of side S = max(width, height), which tf.image.resizeBilinear
 * (no corner alignment, no half-pixel centres) maps to the input side:
 * input pixel (r, c) interpolates the square at (r, c) * S / side, between
 * the pixel at the floor and the one at the ceiling (clamped to the square).
 * Reproducing that exactly makes the engine agree with face-api to float
 * precision on photos up to twice the input side.
 *
 * Beyond that, bilinear interpolation skips most pixels and aliases, so the
 * photo is first shrunk by the integer factor k = floor(S / side) with a box
 * (area) filter: every pixel of a k x k block counts once (a block cut by
 * the photo's edge averages the pixels it has). The interpolation then
 * shrinks the result by less than 2. Both steps stream: a row of blocks at
 * a time, kept for the two output rows that may need it, so memory grows
 * with the photo's width only, never with its area. */

typedef struct letterbox_source {
    const diat_image *photo;
    int x0, y0, width, height; /* the part of the photo letterboxed */
    int planes;                /* 3 (RGB) or 1 (gray, replicated) */
    int block;                 /* k: photo pixels per source pixel along each axis */
    int cols, rows;            /* source pixels with photo content */
    int square;                /* source square side, padding included */
    float *sum;                /* width * planes: one block row summed over its photo rows */
    float *row[2];             /* cols * planes: two source rows */
    int row_index[2];          /* which source rows they hold (-1: none) */
} letterbox_source;

/* acc += one photo row, as `planes` interleaved planes (RGB from RGB or
 * RGBA; gray from gray or gray+alpha: alpha is ignored). */
static void accumulate_row(const float *row, int width, int channels, float *acc)
{
    if (channels == 3) {
        for (size_t i = 0; i < (size_t)width * 3; i++) acc[i] += row[i];
    } else if (channels == 4) {
        for (int x = 0; x < width; x++)
            for (int c = 0; c < 3; c++) acc[3 * x + c] += row[4 * x + c];
    } else {
        for (int x = 0; x < width; x++) acc[x] += row[(size_t)x * channels];
    }
}

/* Source row `index` (< src->rows): one photo row, or the mean of a block
 * row, into one of the two row buffers; returns that buffer. */
static const float *source_row(letterbox_source *src, int index)
{
    for (int i = 0; i < 2; i++)
        if (src->row_index[i] == index) return src->row[i];
    /* Rows are asked for in increasing order: the older one goes. */
    int slot = src->row_index[0] < src->row_index[1] ? 0 : 1;
    float *out = src->row[slot];
    const diat_image *photo = src->photo;
    const int k = src->block, planes = src->planes;
    const int first = index * k, last = first + k < src->height ? first + k : src->height;
    memset(src->sum, 0, (size_t)src->width * planes * sizeof *src->sum);
    for (int y = first; y < last; y++)
        accumulate_row(photo->pixels + (size_t)(src->y0 + y) * photo->stride +
                           (size_t)src->x0 * photo->channels,
                       src->width, photo->channels, src->sum);
    for (int j = 0; j < src->cols; j++) {
        const int begin = j * k, end = begin + k < src->width ? begin + k : src->width;
        const float scale = 1.0f / (float)((end - begin) * (last - first));
        for (int c = 0; c < planes; c++) {
            float total = 0.0f;
            for (int x = begin; x < end; x++) total += src->sum[(size_t)x * planes + c];
            out[(size_t)j * planes + c] = total * scale;
        }
    }
    src->row_index[slot] = index;
    return out;
}

/* Where resizeBilinear samples for output i along an axis of `size` source
 * pixels: between `low` and `high` with weight `fraction` on `high`. */
static void bilinear_tap(double ratio, int i, int size, int *low, int *high, double *fraction)
{
    double at = ratio * i;
    double below = floor(at);
    *low = (int)below;
    *fraction = at - below;
    double above = ceil(at);
    *high = above < size - 1 ? (int)above : size - 1;
}

/* Fill d->input [1, 3, side, side] with the letterboxed region (x0, y0,
 * width, height) of `photo`; `*square_pixels` receives the side of the
 * photo square the input covers (k * source square). */
static diat_status letterbox(diat_face_detector *d, const diat_image *photo, int x0, int y0,
                             int width, int height, int side, double *square_pixels,
                             diat_error *err)
{
    diat_status st = diat_tensor_ensure(d->ctx, &d->input, 1, RGB, side, side, err);
    if (st != DIAT_OK) return st;
    const int longer = width > height ? width : height;
    letterbox_source src = {
        .photo = photo,
        .x0 = x0,
        .y0 = y0,
        .width = width,
        .height = height,
        .planes = photo->channels >= 3 ? 3 : 1,
        .block = longer > 2 * side ? longer / side : 1,
        .row_index = {-1, -1},
    };
    src.cols = (width + src.block - 1) / src.block;
    src.rows = (height + src.block - 1) / src.block;
    src.square = src.cols > src.rows ? src.cols : src.rows;
    *square_pixels = (double)src.square * src.block;
    src.sum = malloc((size_t)width * src.planes * sizeof *src.sum);
    src.row[0] = malloc((size_t)src.cols * src.planes * sizeof *src.row[0]);
    src.row[1] = malloc((size_t)src.cols * src.planes * sizeof *src.row[1]);
    int *col_low = malloc((size_t)side * sizeof *col_low);
    int *col_high = malloc((size_t)side * sizeof *col_high);
    double *col_fraction = malloc((size_t)side * sizeof *col_fraction);
    if (!src.sum || !src.row[0] || !src.row[1] || !col_low || !col_high || !col_fraction) {
        st = diat_set_error(err, DIAT_ERR_MEMORY, "Out of memory letterboxing a photo.");
        goto done;
    }
    const double ratio = (double)src.square / side;
    for (int c = 0; c < side; c++)
        bilinear_tap(ratio, c, src.square, &col_low[c], &col_high[c], &col_fraction[c]);

    const size_t plane = (size_t)side * side;
    float *out = d->input.data;
    for (int r = 0; r < side; r++) {
        int low, high;
        double row_fraction;
        bilinear_tap(ratio, r, src.square, &low, &high, &row_fraction);
        /* Rows past the photo are the black padding. */
        const float *top = low < src.rows ? source_row(&src, low) : NULL;
        const float *bottom = high < src.rows ? source_row(&src, high) : NULL;
        for (int c = 0; c < side; c++) {
            const size_t left = (size_t)col_low[c] * src.planes;
            const size_t right = (size_t)col_high[c] * src.planes;
            const int left_in = col_low[c] < src.cols, right_in = col_high[c] < src.cols;
            for (int p = 0; p < src.planes; p++) {
                /* In double, as resizeBilinear computes in JavaScript numbers. */
                double top_left = top && left_in ? top[left + p] : 0.0;
                double top_right = top && right_in ? top[right + p] : 0.0;
                double bottom_left = bottom && left_in ? bottom[left + p] : 0.0;
                double bottom_right = bottom && right_in ? bottom[right + p] : 0.0;
                double upper = top_left + (top_right - top_left) * col_fraction[c];
                double lower = bottom_left + (bottom_right - bottom_left) * col_fraction[c];
                float value = (float)(upper + (lower - upper) * row_fraction);
                if (src.planes == 3)
                    out[p * plane + (size_t)r * side + c] = value;
                else
                    for (int q = 0; q < RGB; q++) out[q * plane + (size_t)r * side + c] = value;
            }
        }
    }
done:
    free(src.sum);
    free(src.row[0]);
    free(src.row[1]);
    free(col_low);
    free(col_high);
    free(col_fraction);
    return st;
}

/* ---- decoding and non-maximum suppression --------------------------------- */

static double sigmoid(double v)
{
    return 1.0 / (1.0 + exp(-v));
}

static double iou(const diat_face_detection *a, const diat_face_detection *b)
{
    double w = fmin(a->x + a->width, b->x + b->width) - fmax(a->x, b->x);
    double h = fmin(a->y + a->height, b->y + b->height) - fmax(a->y, b->y);
    double inter = (w > 0.0 ? w : 0.0) * (h > 0.0 ? h : 0.0);
    double uni = (double)a->width * a->height + (double)b->width * b->height - inter;
    return uni > 0.0 ? inter / uni : 0.0;
}

static int by_decreasing_score(const void *pa, const void *pb)
{
    const diat_face_detection *a = pa, *b = pb;
    return (a->score < b->score) - (a->score > b->score);
}

/* Boxes of the grid scoring above `threshold` (every box if threshold <= 0),
 * mapped to photo pixels: the input square covers `square` photo pixels
 * from (x0, y0). Then greedy NMS: best first, dropping any box whose IoU
 * with a kept one exceeds DIAT_FACE_DETECTOR_IOU_THRESHOLD. */
static diat_status decode(const diat_tensor *grid, float threshold, double x0, double y0,
                          double square, diat_face_detection **out, size_t *out_count,
                          diat_error *err)
{
    const int cells = grid->h;
    const size_t plane = (size_t)cells * cells;
    diat_face_detection *boxes = malloc(plane * ANCHORS * sizeof *boxes);
    if (!boxes) return diat_set_error(err, DIAT_ERR_MEMORY, "Out of memory decoding faces.");
    size_t count = 0;
    for (int row = 0; row < cells; row++)
        for (int col = 0; col < cells; col++)
            for (int a = 0; a < ANCHORS; a++) {
                const float *field =
                    grid->data + (size_t)a * BOX_FIELDS * plane + (size_t)row * cells + col;
                double score = sigmoid(field[4 * plane]);
                if (threshold > 0.0f && !(score > threshold)) continue;
                /* Fractions of the input square. */
                double cx = (col + sigmoid(field[0])) / cells;
                double cy = (row + sigmoid(field[plane])) / cells;
                double w = exp(field[2 * plane]) * anchor_size[a][0] / cells;
                double h = exp(field[3 * plane]) * anchor_size[a][1] / cells;
                boxes[count++] = (diat_face_detection){
                    .x = (float)(x0 + (cx - w / 2) * square),
                    .y = (float)(y0 + (cy - h / 2) * square),
                    .width = (float)(w * square),
                    .height = (float)(h * square),
                    .score = (float)score,
                };
            }
    qsort(boxes, count, sizeof *boxes, by_decreasing_score);
    size_t kept = 0;
    for (size_t i = 0; i < count; i++) {
        int suppressed = 0;
        for (size_t k = 0; k < kept && !suppressed; k++)
            suppressed = iou(&boxes[k], &boxes[i]) > DIAT_FACE_DETECTOR_IOU_THRESHOLD;
        if (!suppressed) boxes[kept++] = boxes[i];
    }
    if (kept == 0) {
        free(boxes);
        boxes = NULL;
    }
    *out = boxes;
    *out_count = kept;
    return DIAT_OK;
}

/* ---- the whole detection -------------------------------------------------- */

diat_status diat_face_detector_run(diat_face_detector *d, const diat_image *photo,
                                   const diat_box *region, float score_threshold,
                                   diat_face_detection **detections, size_t *count, diat_error *err)
{
    if (detections) *detections = NULL;
    if (count) *count = 0;
    if (!d || !photo || !detections || !count)
        return diat_set_error(err, DIAT_ERR_ARGUMENT, "Missing argument for face detection.");
    if (!photo->pixels || photo->width < 1 || photo->height < 1 || photo->channels < 1 ||
        photo->channels > 4 || photo->stride < (size_t)photo->width * photo->channels)
        return diat_set_error(err, DIAT_ERR_ARGUMENT,
                              "Cannot look for faces in a %dx%d image with %d channels (stride "
                              "%zu): it must be at least 1x1, with 1 to 4 channels.",
                              photo->width, photo->height, photo->channels, photo->stride);
    int x0 = 0, y0 = 0, width = photo->width, height = photo->height;
    if (region) {
        /* Only the part of the region inside the photo. */
        long left = region->x > 0 ? region->x : 0, top = region->y > 0 ? region->y : 0;
        long right = (long)region->x + region->width, bottom = (long)region->y + region->height;
        if (right > photo->width) right = photo->width;
        if (bottom > photo->height) bottom = photo->height;
        if (region->width < 1 || region->height < 1 || right <= left || bottom <= top)
            return diat_set_error(err, DIAT_ERR_ARGUMENT,
                                  "The region %d,%d %dx%d to look for a face in lies outside the "
                                  "%dx%d image.",
                                  region->x, region->y, region->width, region->height, photo->width,
                                  photo->height);
        x0 = (int)left;
        y0 = (int)top;
        width = (int)(right - left);
        height = (int)(bottom - top);
    }
    const int side = DIAT_FACE_DETECTOR_INPUT_SIZE;
    double square = 0.0;
    diat_status st = letterbox(d, photo, x0, y0, width, height, side, &square, err);
    if (st == DIAT_OK) st = diat_face_detector_forward(d, &d->input, &d->grid, err);
    if (st != DIAT_OK) return st;
    return decode(&d->grid, score_threshold, x0, y0, square, detections, count, err);
}

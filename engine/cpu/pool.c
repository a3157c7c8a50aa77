/* Resizing and max pooling on the CPU, for the face recognition network:
 *  - bilinear resize to an arbitrary size with PyTorch's F.interpolate
 *    semantics (mode="bilinear", align_corners=False, no antialias);
 *  - max pooling with window k, stride s and padding p, where padded cells
 *    never win (as if they held -infinity).
 * Each backward is the exact adjoint of its forward and accumulates into dx.
 * Both act on every (sample, channel) plane independently. */
#include "ops-cpu.h"

#include <math.h>

static size_t plane_of(const diat_tensor *t)
{
    return (size_t)t->h * t->w;
}
static size_t planes_of(const diat_tensor *t)
{
    return (size_t)t->n * t->c;
}

/* ---- bilinear resize ------------------------------------------------------
 * Output index o samples source coordinate (o + 0.5) * in/out - 0.5 (pixel
 * centres line up), clamped at 0 from below; the upper neighbour is clamped
 * to the last index, so the edge pixel is repeated rather than blended with
 * zeros. This is PyTorch's upsample_bilinear2d when only the output size is
 * given, in upsampling and downsampling alike. */

typedef struct resize_tap {
    int lo, hi;
    float w_lo, w_hi;
} resize_tap;

static resize_tap resize_tap_of(int out_index, float ratio, int in_len)
{
    float src = ((float)out_index + 0.5f) * ratio - 0.5f;
    if (src < 0.0f) src = 0.0f;
    resize_tap t;
    t.lo = (int)src;
    if (t.lo > in_len - 1) t.lo = in_len - 1;
    t.hi = t.lo < in_len - 1 ? t.lo + 1 : t.lo;
    t.w_hi = src - (float)t.lo;
    t.w_lo = 1.0f - t.w_hi;
    return t;
}

void diat_cpu_resize_bilinear_forward(diat_context *ctx, const diat_tensor *x, diat_tensor *y)
{
    (void)ctx;
    const int h = x->h, w = x->w, out_h = y->h, out_w = y->w;
    const float ratio_h = (float)h / (float)out_h, ratio_w = (float)w / (float)out_w;
    for (size_t plane = 0; plane < planes_of(x); plane++) {
        const float *src = x->data + plane * plane_of(x);
        float *dst = y->data + plane * plane_of(y);
        for (int oh = 0; oh < out_h; oh++) {
            resize_tap th = resize_tap_of(oh, ratio_h, h);
            const float *row_lo = src + (size_t)th.lo * w, *row_hi = src + (size_t)th.hi * w;
            for (int ow = 0; ow < out_w; ow++) {
                resize_tap tw = resize_tap_of(ow, ratio_w, w);
                dst[(size_t)oh * out_w + ow] =
                    th.w_lo * (tw.w_lo * row_lo[tw.lo] + tw.w_hi * row_lo[tw.hi]) +
                    th.w_hi * (tw.w_lo * row_hi[tw.lo] + tw.w_hi * row_hi[tw.hi]);
            }
        }
    }
}

void diat_cpu_resize_bilinear_backward(diat_context *ctx, const diat_tensor *dy, diat_tensor *dx)
{
    (void)ctx;
    const int h = dx->h, w = dx->w, out_h = dy->h, out_w = dy->w;
    const float ratio_h = (float)h / (float)out_h, ratio_w = (float)w / (float)out_w;
    for (size_t plane = 0; plane < planes_of(dx); plane++) {
        const float *src = dy->data + plane * plane_of(dy);
        float *dst = dx->data + plane * plane_of(dx);
        for (int oh = 0; oh < out_h; oh++) {
            resize_tap th = resize_tap_of(oh, ratio_h, h);
            float *row_lo = dst + (size_t)th.lo * w, *row_hi = dst + (size_t)th.hi * w;
            for (int ow = 0; ow < out_w; ow++) {
                resize_tap tw = resize_tap_of(ow, ratio_w, w);
                float g = src[(size_t)oh * out_w + ow];
                row_lo[tw.lo] += th.w_lo * tw.w_lo * g;
                row_lo[tw.hi] += th.w_lo * tw.w_hi * g;
                row_hi[tw.lo] += th.w_hi * tw.w_lo * g;
                row_hi[tw.hi] += th.w_hi * tw.w_hi * g;
            }
        }
    }
}

/* ---- max pooling ----------------------------------------------------------
 * Window (oh, ow) covers rows oh*s - p .. oh*s - p + k - 1 (and likewise
 * columns), clipped to the plane: clipping is what "padding never wins"
 * means. The caller sizes y (out = (in + 2p - k) / s + 1 for PyTorch's
 * floor mode) and keeps p < k, so every window holds at least one cell. */

/* Index within the plane of the window's first maximum in row-major order
 * (a later cell must be strictly greater to take over), as PyTorch picks. */
static size_t window_argmax(const float *src, int h, int w, int row0, int col0, int k)
{
    int r_begin = row0 < 0 ? 0 : row0, r_end = row0 + k < h ? row0 + k : h;
    int c_begin = col0 < 0 ? 0 : col0, c_end = col0 + k < w ? col0 + k : w;
    size_t best = (size_t)r_begin * w + c_begin;
    float best_value = -INFINITY;
    for (int r = r_begin; r < r_end; r++)
        for (int c = c_begin; c < c_end; c++) {
            size_t at = (size_t)r * w + c;
            if (src[at] > best_value) best_value = src[at], best = at;
        }
    return best;
}

void diat_cpu_maxpool_forward(diat_context *ctx, const diat_tensor *x, int k, int s, int p,
                              diat_tensor *y)
{
    (void)ctx;
    const int h = x->h, w = x->w, out_h = y->h, out_w = y->w;
    for (size_t plane = 0; plane < planes_of(x); plane++) {
        const float *src = x->data + plane * plane_of(x);
        float *dst = y->data + plane * plane_of(y);
        for (int oh = 0; oh < out_h; oh++)
            for (int ow = 0; ow < out_w; ow++)
                dst[(size_t)oh * out_w + ow] =
                    src[window_argmax(src, h, w, oh * s - p, ow * s - p, k)];
    }
}

void diat_cpu_maxpool_backward(diat_context *ctx, const diat_tensor *x, const diat_tensor *dy,
                               int k, int s, int p, diat_tensor *dx)
{
    (void)ctx;
    const int h = x->h, w = x->w, out_h = dy->h, out_w = dy->w;
    for (size_t plane = 0; plane < planes_of(x); plane++) {
        const float *src = x->data + plane * plane_of(x);
        const float *grad = dy->data + plane * plane_of(dy);
        float *dst = dx->data + plane * plane_of(dx);
        /* The winner is found again rather than stored by the forward, so
         * the op needs no index buffer; the cost is one more pass over x. */
        for (int oh = 0; oh < out_h; oh++)
            for (int ow = 0; ow < out_w; ow++)
                dst[window_argmax(src, h, w, oh * s - p, ow * s - p, k)] +=
                    grad[(size_t)oh * out_w + ow];
    }
}

/* Resampling ops on the CPU: depth-to-space, nearest and bilinear
 * upsampling, average pooling, channel concatenation — each forward with
 * its exact adjoint as backward (accumulating into dx).
 *
 * All of them act on each (sample, channel) plane independently, except
 * depth-to-space and concat, which move whole planes between channels. */
#include "ops-cpu.h"

#include <string.h>

static size_t plane_of(const diat_tensor *t)
{
    return (size_t)t->h * t->w;
}
static size_t planes_of(const diat_tensor *t)
{
    return (size_t)t->n * t->c;
}

/* ---- depth to space (pixel shuffle) -------------------------------------
 * out[n][c][h*r+i][w*r+j] = in[n][c*r*r + i*r + j][h][w], PyTorch's order. */

void diat_cpu_depth_to_space_forward(diat_context *ctx, const diat_tensor *x, int r, diat_tensor *y)
{
    (void)ctx;
    const int h = x->h, w = x->w, out_w = y->w;
    const size_t in_plane = plane_of(x);
    for (size_t plane = 0; plane < planes_of(y); plane++) {
        /* Output plane (n, c) gathers input channels c*r*r .. c*r*r + r*r-1,
         * which are consecutive in memory: plane index * r*r. */
        const float *src = x->data + plane * r * r * in_plane;
        float *dst = y->data + plane * plane_of(y);
        for (int i = 0; i < r; i++)
            for (int j = 0; j < r; j++) {
                const float *sub = src + (size_t)(i * r + j) * in_plane;
                for (int ih = 0; ih < h; ih++) {
                    float *row = dst + (size_t)(ih * r + i) * out_w + j;
                    for (int iw = 0; iw < w; iw++) row[(size_t)iw * r] = sub[(size_t)ih * w + iw];
                }
            }
    }
}

void diat_cpu_depth_to_space_backward(diat_context *ctx, const diat_tensor *dy, int r,
                                      diat_tensor *dx)
{
    (void)ctx;
    const int h = dx->h, w = dx->w, out_w = dy->w;
    const size_t in_plane = plane_of(dx);
    for (size_t plane = 0; plane < planes_of(dy); plane++) {
        float *dst = dx->data + plane * r * r * in_plane;
        const float *src = dy->data + plane * plane_of(dy);
        for (int i = 0; i < r; i++)
            for (int j = 0; j < r; j++) {
                float *sub = dst + (size_t)(i * r + j) * in_plane;
                for (int ih = 0; ih < h; ih++) {
                    const float *row = src + (size_t)(ih * r + i) * out_w + j;
                    for (int iw = 0; iw < w; iw++) sub[(size_t)ih * w + iw] += row[(size_t)iw * r];
                }
            }
    }
}

/* ---- nearest upsampling by integer factor f ----------------------------- */

void diat_cpu_upsample_nearest_forward(diat_context *ctx, const diat_tensor *x, int f,
                                       diat_tensor *y)
{
    (void)ctx;
    const int h = x->h, w = x->w, out_w = y->w;
    for (size_t plane = 0; plane < planes_of(x); plane++) {
        const float *src = x->data + plane * plane_of(x);
        float *dst = y->data + plane * plane_of(y);
        for (int ih = 0; ih < h; ih++) {
            float *first = dst + (size_t)ih * f * out_w;
            for (int iw = 0; iw < w; iw++)
                for (int j = 0; j < f; j++) first[iw * f + j] = src[(size_t)ih * w + iw];
            /* The other f-1 output rows repeat the first. */
            for (int i = 1; i < f; i++)
                memcpy(first + (size_t)i * out_w, first, (size_t)out_w * sizeof *first);
        }
    }
}

void diat_cpu_upsample_nearest_backward(diat_context *ctx, const diat_tensor *dy, int f,
                                        diat_tensor *dx)
{
    (void)ctx;
    const int h = dx->h, w = dx->w, out_w = dy->w;
    for (size_t plane = 0; plane < planes_of(dx); plane++) {
        const float *src = dy->data + plane * plane_of(dy);
        float *dst = dx->data + plane * plane_of(dx);
        for (int ih = 0; ih < h; ih++)
            for (int i = 0; i < f; i++) {
                const float *row = src + (size_t)(ih * f + i) * out_w;
                for (int iw = 0; iw < w; iw++) {
                    float sum = 0.0f;
                    for (int j = 0; j < f; j++) sum += row[iw * f + j];
                    dst[(size_t)ih * w + iw] += sum;
                }
            }
    }
}

/* ---- bilinear upsampling by f ---------------------------------------------
 * The general bilinear resize (pool.c) to f times the size: the same PyTorch
 * align_corners=False mapping, source (o + 0.5) / f - 0.5. */

void diat_cpu_upsample_bilinear_forward(diat_context *ctx, const diat_tensor *x, int f,
                                        diat_tensor *y)
{
    (void)f; /* y's size already says it */
    diat_cpu_resize_bilinear_forward(ctx, x, y);
}

void diat_cpu_upsample_bilinear_backward(diat_context *ctx, const diat_tensor *dy, int f,
                                         diat_tensor *dx)
{
    (void)f;
    diat_cpu_resize_bilinear_backward(ctx, dy, dx);
}

/* ---- average pooling: window k, stride s, no padding -------------------- */

void diat_cpu_avgpool_forward(diat_context *ctx, const diat_tensor *x, int k, int s, diat_tensor *y)
{
    (void)ctx;
    const int w = x->w, out_h = y->h, out_w = y->w;
    const float inv_area = 1.0f / (float)(k * k);
    for (size_t plane = 0; plane < planes_of(x); plane++) {
        const float *src = x->data + plane * plane_of(x);
        float *dst = y->data + plane * plane_of(y);
        for (int oh = 0; oh < out_h; oh++)
            for (int ow = 0; ow < out_w; ow++) {
                const float *window = src + (size_t)oh * s * w + (size_t)ow * s;
                float sum = 0.0f;
                for (int i = 0; i < k; i++)
                    for (int j = 0; j < k; j++) sum += window[(size_t)i * w + j];
                dst[(size_t)oh * out_w + ow] = sum * inv_area;
            }
    }
}

void diat_cpu_avgpool_backward(diat_context *ctx, const diat_tensor *dy, int k, int s,
                               diat_tensor *dx)
{
    (void)ctx;
    const int w = dx->w, out_h = dy->h, out_w = dy->w;
    const float inv_area = 1.0f / (float)(k * k);
    for (size_t plane = 0; plane < planes_of(dx); plane++) {
        const float *src = dy->data + plane * plane_of(dy);
        float *dst = dx->data + plane * plane_of(dx);
        for (int oh = 0; oh < out_h; oh++)
            for (int ow = 0; ow < out_w; ow++) {
                float *window = dst + (size_t)oh * s * w + (size_t)ow * s;
                float g = src[(size_t)oh * out_w + ow] * inv_area;
                for (int i = 0; i < k; i++)
                    for (int j = 0; j < k; j++) window[(size_t)i * w + j] += g;
            }
    }
}

/* ---- channel concatenation: y = [a, b] along c -------------------------- */

void diat_cpu_concat_forward(diat_context *ctx, const diat_tensor *a, const diat_tensor *b,
                             diat_tensor *y)
{
    (void)ctx;
    const size_t a_len = (size_t)a->c * plane_of(a), b_len = (size_t)b->c * plane_of(b);
    for (int n = 0; n < y->n; n++) {
        float *dst = y->data + (size_t)n * (a_len + b_len);
        memcpy(dst, a->data + (size_t)n * a_len, a_len * sizeof *dst);
        memcpy(dst + a_len, b->data + (size_t)n * b_len, b_len * sizeof *dst);
    }
}

void diat_cpu_concat_backward(diat_context *ctx, const diat_tensor *dy, diat_tensor *da,
                              diat_tensor *db)
{
    (void)ctx;
    if (!da && !db) return;
    /* Either gradient may be NULL, so the split point comes from dy and
     * whichever part is present. */
    size_t sample_len = (size_t)dy->c * plane_of(dy);
    size_t a_len = da ? (size_t)da->c * plane_of(da) : sample_len - (size_t)db->c * plane_of(db);
    size_t b_len = sample_len - a_len;
    for (int n = 0; n < dy->n; n++) {
        const float *src = dy->data + (size_t)n * sample_len;
        if (da) {
            float *dst = da->data + (size_t)n * a_len;
            for (size_t i = 0; i < a_len; i++) dst[i] += src[i];
        }
        if (db) {
            float *dst = db->data + (size_t)n * b_len;
            for (size_t i = 0; i < b_len; i++) dst[i] += src[a_len + i];
        }
    }
}

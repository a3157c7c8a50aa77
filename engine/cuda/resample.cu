/* Resampling ops on the GPU: depth-to-space, nearest and bilinear upsampling,
 * general bilinear resize, channel concatenation. Semantics are those of
 * engine/cpu/resample.c and the resize in engine/cpu/pool.c (PyTorch's
 * conventions); every backward is a gather (one thread per dx element sums
 * what reaches it, then dx += sum), so no atomics and the results are
 * deterministic. All launches go to the context's stream. */
#include "cuda-internal.h"

#define GRID_STRIDE_LOOP(index, count)                                                             \
    for (size_t index = (size_t)blockIdx.x * blockDim.x + threadIdx.x; index < (count);            \
         index += (size_t)blockDim.x * gridDim.x)

static size_t plane_of(const diat_tensor *t)
{
    return (size_t)t->h * t->w;
}
static size_t count_of(const diat_tensor *t)
{
    return (size_t)t->n * t->c * t->h * t->w;
}

/* ---- depth to space (pixel shuffle) -------------------------------------
 * y[n][c][h*r+i][w*r+j] = x[n][c*r*r + i*r + j][h][w], PyTorch's order. */

static __global__ void depth_to_space_forward_kernel(const float *x, float *y, size_t count, int h,
                                                     int w, int r)
{
    const int out_h = h * r, out_w = w * r;
    const size_t in_plane = (size_t)h * w;
    GRID_STRIDE_LOOP(index, count)
    {
        const int ow = (int)(index % out_w);
        const size_t rest = index / out_w;
        const int oh = (int)(rest % out_h);
        const size_t plane = rest / out_h; /* y's (sample, channel) plane */
        /* y's plane (n, c) reads x's channels plane * r*r .. + r*r - 1. */
        const size_t channel = plane * r * r + (size_t)(oh % r) * r + (ow % r);
        y[index] = x[channel * in_plane + (size_t)(oh / r) * w + ow / r];
    }
}

/* One thread per dx element: each has exactly one source in dy. */
static __global__ void depth_to_space_backward_kernel(const float *dy, float *dx, size_t count,
                                                      int h, int w, int r)
{
    const int out_w = w * r;
    const size_t out_plane = (size_t)h * r * out_w;
    GRID_STRIDE_LOOP(index, count)
    {
        const int iw = (int)(index % w);
        const size_t rest = index / w;
        const int ih = (int)(rest % h);
        const size_t channel = rest / h; /* dx's (sample, channel) plane */
        const size_t plane = channel / ((size_t)r * r);
        const int sub = (int)(channel % ((size_t)r * r));
        const int i = sub / r, j = sub % r;
        dx[index] += dy[plane * out_plane + (size_t)(ih * r + i) * out_w + (size_t)iw * r + j];
    }
}

void diat_cuda_depth_to_space_forward(diat_context *ctx, const diat_tensor *x, int r,
                                      diat_tensor *y)
{
    const size_t count = count_of(y);
    if (!count) return;
    depth_to_space_forward_kernel<<<diat_cuda_blocks(count), DIAT_CUDA_THREADS, 0,
                                    diat_cuda_stream(ctx)>>>(x->data, y->data, count, x->h, x->w,
                                                             r);
    DIAT_CUDA_LAUNCHED("depth_to_space_forward");
}

void diat_cuda_depth_to_space_backward(diat_context *ctx, const diat_tensor *dy, int r,
                                       diat_tensor *dx)
{
    if (!dx) return;
    const size_t count = count_of(dx);
    if (!count) return;
    depth_to_space_backward_kernel<<<diat_cuda_blocks(count), DIAT_CUDA_THREADS, 0,
                                     diat_cuda_stream(ctx)>>>(dy->data, dx->data, count, dx->h,
                                                              dx->w, r);
    DIAT_CUDA_LAUNCHED("depth_to_space_backward");
}

/* ---- nearest upsampling by integer factor f ----------------------------- */

static __global__ void upsample_nearest_forward_kernel(const float *x, float *y, size_t count,
                                                       int h, int w, int f)
{
    const int out_h = h * f, out_w = w * f;
    const size_t in_plane = (size_t)h * w;
    GRID_STRIDE_LOOP(index, count)
    {
        const int ow = (int)(index % out_w);
        const size_t rest = index / out_w;
        const int oh = (int)(rest % out_h);
        const size_t plane = rest / out_h;
        y[index] = x[plane * in_plane + (size_t)(oh / f) * w + ow / f];
    }
}

/* Each dx element gathers its f x f block; summed row by row and added to
 * dx per row, in the CPU's order, so the rounding is the CPU's too. */
static __global__ void upsample_nearest_backward_kernel(const float *dy, float *dx, size_t count,
                                                        int h, int w, int f)
{
    const int out_w = w * f;
    const size_t out_plane = (size_t)h * f * out_w;
    GRID_STRIDE_LOOP(index, count)
    {
        const int iw = (int)(index % w);
        const size_t rest = index / w;
        const int ih = (int)(rest % h);
        const size_t plane = rest / h;
        const float *block = dy + plane * out_plane + (size_t)ih * f * out_w + (size_t)iw * f;
        float value = dx[index];
        for (int i = 0; i < f; i++) {
            float row_sum = 0.0f;
            for (int j = 0; j < f; j++) row_sum += block[(size_t)i * out_w + j];
            value += row_sum;
        }
        dx[index] = value;
    }
}

void diat_cuda_upsample_nearest_forward(diat_context *ctx, const diat_tensor *x, int f,
                                        diat_tensor *y)
{
    const size_t count = count_of(y);
    if (!count) return;
    upsample_nearest_forward_kernel<<<diat_cuda_blocks(count), DIAT_CUDA_THREADS, 0,
                                      diat_cuda_stream(ctx)>>>(x->data, y->data, count, x->h, x->w,
                                                               f);
    DIAT_CUDA_LAUNCHED("upsample_nearest_forward");
}

void diat_cuda_upsample_nearest_backward(diat_context *ctx, const diat_tensor *dy, int f,
                                         diat_tensor *dx)
{
    if (!dx) return;
    const size_t count = count_of(dx);
    if (!count) return;
    upsample_nearest_backward_kernel<<<diat_cuda_blocks(count), DIAT_CUDA_THREADS, 0,
                                       diat_cuda_stream(ctx)>>>(dy->data, dx->data, count, dx->h,
                                                                dx->w, f);
    DIAT_CUDA_LAUNCHED("upsample_nearest_backward");
}

/* ---- bilinear resize -------------------------------------------------------
 * Output index o samples source (o + 0.5) * in/out - 0.5, clamped at 0 from
 * below, the upper neighbour clamped to the last index (PyTorch's
 * align_corners=False). The ratio is computed on the host as the CPU does,
 * and the coordinate with round-to-nearest intrinsics, which nvcc never fuses
 * into an FMA: the CPU (C11, no contraction) rounds the product and the
 * difference separately, and the taps must come out bit for bit the same. */

struct resize_tap {
    int lo, hi;
    float w_lo, w_hi;
};

__device__ static resize_tap resize_tap_of(int out_index, float ratio, int in_len)
{
    float src = __fsub_rn(__fmul_rn(__fadd_rn((float)out_index, 0.5f), ratio), 0.5f);
    if (src < 0.0f) src = 0.0f;
    resize_tap t;
    t.lo = (int)src;
    if (t.lo > in_len - 1) t.lo = in_len - 1;
    t.hi = t.lo < in_len - 1 ? t.lo + 1 : t.lo;
    t.w_hi = __fsub_rn(src, (float)t.lo);
    t.w_lo = __fsub_rn(1.0f, t.w_hi);
    return t;
}

/* Weight with which a tap reads input index i (both neighbours may be i at
 * the edge, where the CPU adds both shares to the same cell). */
__device__ static float resize_tap_weight(resize_tap t, int i)
{
    return (t.lo == i ? t.w_lo : 0.0f) + (t.hi == i ? t.w_hi : 0.0f);
}

/* Output indices [*begin, *end) whose taps may read input index i: those
 * with source in [i - 1, i + 1), plus clamped ones at the edges, widened by
 * one on each side against float rounding. The caller tests each candidate
 * with resize_tap_of, so the range only has to contain the true set. */
__device__ static void resize_candidates(int i, float ratio, int out_len, int *begin, int *end)
{
    int first = (int)floorf(((float)i - 0.5f) / ratio - 0.5f) - 1;
    int last = (int)ceilf(((float)i + 1.5f) / ratio - 0.5f) + 1;
    *begin = first < 0 ? 0 : first;
    *end = last > out_len ? out_len : last;
}

static __global__ void resize_bilinear_forward_kernel(const float *x, float *y, size_t count, int h,
                                                      int w, int out_h, int out_w, float ratio_h,
                                                      float ratio_w)
{
    const size_t in_plane = (size_t)h * w;
    GRID_STRIDE_LOOP(index, count)
    {
        const int ow = (int)(index % out_w);
        const size_t rest = index / out_w;
        const int oh = (int)(rest % out_h);
        const size_t plane = rest / out_h;
        const resize_tap th = resize_tap_of(oh, ratio_h, h);
        const resize_tap tw = resize_tap_of(ow, ratio_w, w);
        const float *src = x + plane * in_plane;
        const float *row_lo = src + (size_t)th.lo * w, *row_hi = src + (size_t)th.hi * w;
        y[index] = th.w_lo * (tw.w_lo * row_lo[tw.lo] + tw.w_hi * row_lo[tw.hi]) +
                   th.w_hi * (tw.w_lo * row_hi[tw.lo] + tw.w_hi * row_hi[tw.hi]);
    }
}

/* Gather: each dx element visits the outputs whose taps may read it and
 * takes their share. The taps are recomputed exactly as in the forward, so
 * membership is decided by the same integers the CPU's scatter uses. */
static __global__ void resize_bilinear_backward_kernel(const float *dy, float *dx, size_t count,
                                                       int h, int w, int out_h, int out_w,
                                                       float ratio_h, float ratio_w)
{
    const size_t out_plane = (size_t)out_h * out_w;
    GRID_STRIDE_LOOP(index, count)
    {
        const int iw = (int)(index % w);
        const size_t rest = index / w;
        const int ih = (int)(rest % h);
        const size_t plane = rest / h;
        const float *grad = dy + plane * out_plane;
        int oh_begin, oh_end, ow_begin, ow_end;
        resize_candidates(ih, ratio_h, out_h, &oh_begin, &oh_end);
        resize_candidates(iw, ratio_w, out_w, &ow_begin, &ow_end);
        float sum = 0.0f;
        for (int oh = oh_begin; oh < oh_end; oh++) {
            const resize_tap th = resize_tap_of(oh, ratio_h, h);
            if (th.lo != ih && th.hi != ih) continue;
            /* Summed per output row first: two levels round less than one
             * long running sum when a large dy shrinks onto a small dx. */
            float row_sum = 0.0f;
            for (int ow = ow_begin; ow < ow_end; ow++) {
                const resize_tap tw = resize_tap_of(ow, ratio_w, w);
                if (tw.lo != iw && tw.hi != iw) continue;
                row_sum += resize_tap_weight(tw, iw) * grad[(size_t)oh * out_w + ow];
            }
            sum += resize_tap_weight(th, ih) * row_sum;
        }
        dx[index] += sum;
    }
}

void diat_cuda_resize_bilinear_forward(diat_context *ctx, const diat_tensor *x, diat_tensor *y)
{
    const size_t count = count_of(y);
    if (!count) return;
    const float ratio_h = (float)x->h / (float)y->h, ratio_w = (float)x->w / (float)y->w;
    resize_bilinear_forward_kernel<<<diat_cuda_blocks(count), DIAT_CUDA_THREADS, 0,
                                     diat_cuda_stream(ctx)>>>(x->data, y->data, count, x->h, x->w,
                                                              y->h, y->w, ratio_h, ratio_w);
    DIAT_CUDA_LAUNCHED("resize_bilinear_forward");
}

void diat_cuda_resize_bilinear_backward(diat_context *ctx, const diat_tensor *dy, diat_tensor *dx)
{
    if (!dx) return;
    const size_t count = count_of(dx);
    if (!count || !plane_of(dy)) return;
    const float ratio_h = (float)dx->h / (float)dy->h, ratio_w = (float)dx->w / (float)dy->w;
    resize_bilinear_backward_kernel<<<diat_cuda_blocks(count), DIAT_CUDA_THREADS, 0,
                                      diat_cuda_stream(ctx)>>>(
        dy->data, dx->data, count, dx->h, dx->w, dy->h, dy->w, ratio_h, ratio_w);
    DIAT_CUDA_LAUNCHED("resize_bilinear_backward");
}

/* Bilinear upsampling by f is the resize to y's size, as on the CPU: the
 * ratio in / out is then the same float as 1 / f, but computed the same way. */
void diat_cuda_upsample_bilinear_forward(diat_context *ctx, const diat_tensor *x, int f,
                                         diat_tensor *y)
{
    (void)f; /* y's size already says it */
    diat_cuda_resize_bilinear_forward(ctx, x, y);
}

void diat_cuda_upsample_bilinear_backward(diat_context *ctx, const diat_tensor *dy, int f,
                                          diat_tensor *dx)
{
    (void)f;
    diat_cuda_resize_bilinear_backward(ctx, dy, dx);
}

/* ---- channel concatenation: y = [a, b] along c --------------------------
 * Per sample, y holds a's a_len floats and then b's b_len floats. */

static __global__ void concat_forward_kernel(const float *a, const float *b, float *y, size_t count,
                                             size_t a_len, size_t b_len)
{
    const size_t sample_len = a_len + b_len;
    GRID_STRIDE_LOOP(index, count)
    {
        const size_t n = index / sample_len, at = index % sample_len;
        y[index] = at < a_len ? a[n * a_len + at] : b[n * b_len + (at - a_len)];
    }
}

/* part[i] += dy[sample n, offset + i within the sample], for one part. */
static __global__ void concat_backward_kernel(const float *dy, float *part, size_t count,
                                              size_t part_len, size_t offset, size_t sample_len)
{
    GRID_STRIDE_LOOP(index, count)
    {
        const size_t n = index / part_len, at = index % part_len;
        part[index] += dy[n * sample_len + offset + at];
    }
}

void diat_cuda_concat_forward(diat_context *ctx, const diat_tensor *a, const diat_tensor *b,
                              diat_tensor *y)
{
    const size_t a_len = (size_t)a->c * plane_of(a), b_len = (size_t)b->c * plane_of(b);
    const size_t count = (size_t)y->n * (a_len + b_len);
    if (!count) return;
    concat_forward_kernel<<<diat_cuda_blocks(count), DIAT_CUDA_THREADS, 0, diat_cuda_stream(ctx)>>>(
        a->data, b->data, y->data, count, a_len, b_len);
    DIAT_CUDA_LAUNCHED("concat_forward");
}

void diat_cuda_concat_backward(diat_context *ctx, const diat_tensor *dy, diat_tensor *da,
                               diat_tensor *db)
{
    if (!da && !db) return;
    /* Either gradient may be NULL, so the split point comes from dy and
     * whichever part is present (as on the CPU). */
    const size_t sample_len = (size_t)dy->c * plane_of(dy);
    const size_t a_len =
        da ? (size_t)da->c * plane_of(da) : sample_len - (size_t)db->c * plane_of(db);
    const size_t b_len = sample_len - a_len;
    const size_t a_count = (size_t)dy->n * a_len, b_count = (size_t)dy->n * b_len;
    if (da && a_count) {
        concat_backward_kernel<<<diat_cuda_blocks(a_count), DIAT_CUDA_THREADS, 0,
                                 diat_cuda_stream(ctx)>>>(dy->data, da->data, a_count, a_len, 0,
                                                          sample_len);
        DIAT_CUDA_LAUNCHED("concat_backward (a)");
    }
    if (db && b_count) {
        concat_backward_kernel<<<diat_cuda_blocks(b_count), DIAT_CUDA_THREADS, 0,
                                 diat_cuda_stream(ctx)>>>(dy->data, db->data, b_count, b_len, a_len,
                                                          sample_len);
        DIAT_CUDA_LAUNCHED("concat_backward (b)");
    }
}

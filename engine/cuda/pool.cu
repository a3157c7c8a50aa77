/* Pooling on the GPU: average pooling (window k, stride s, no padding) and
 * max pooling (window k, stride s, padding p, where padded cells never win),
 * matching engine/cpu/resample.c and engine/cpu/pool.c. The backwards are
 * gathers (one thread per dx element visits the windows that cover it, in
 * the CPU's order), so no atomics and the sums round as on the CPU. */
#include "cuda-internal.h"

#include <math.h>

#define GRID_STRIDE_LOOP(index, count)                                                             \
    for (size_t index = (size_t)blockIdx.x * blockDim.x + threadIdx.x; index < (count);            \
         index += (size_t)blockDim.x * gridDim.x)

static size_t count_of(const diat_tensor *t)
{
    return (size_t)t->n * t->c * t->h * t->w;
}

/* Outputs [*begin, *end) along one axis whose windows (starting at o*s - p,
 * k long) cover input index i: o*s - p <= i <= o*s - p + k - 1. */
__device__ static void covering_windows(int i, int k, int s, int p, int out_len, int *begin,
                                        int *end)
{
    const int low = i + p - k + 1; /* smallest o*s that still reaches i */
    *begin = low <= 0 ? 0 : (low + s - 1) / s;
    const int last = (i + p) / s;
    *end = last + 1 < out_len ? last + 1 : out_len;
}

/* ---- average pooling ------------------------------------------------------ */

static __global__ void avgpool_forward_kernel(const float *x, float *y, size_t count, int h, int w,
                                              int out_h, int out_w, int k, int s, float inv_area)
{
    GRID_STRIDE_LOOP(index, count)
    {
        const int ow = (int)(index % out_w);
        const size_t rest = index / out_w;
        const int oh = (int)(rest % out_h);
        const size_t plane = rest / out_h;
        const float *window = x + plane * h * w + (size_t)oh * s * w + (size_t)ow * s;
        float sum = 0.0f;
        for (int i = 0; i < k; i++)
            for (int j = 0; j < k; j++) sum += window[(size_t)i * w + j];
        y[index] = sum * inv_area;
    }
}

/* The CPU adds dy * inv_area window by window in row-major output order;
 * visiting the covering windows in that same order, with the product
 * rounded on its own (__fmul_rn is never fused into an FMA), keeps its
 * rounding. */
static __global__ void avgpool_backward_kernel(const float *dy, float *dx, size_t count, int h,
                                               int w, int out_h, int out_w, int k, int s,
                                               float inv_area)
{
    GRID_STRIDE_LOOP(index, count)
    {
        const int iw = (int)(index % w);
        const size_t rest = index / w;
        const int ih = (int)(rest % h);
        const size_t plane = rest / h;
        const float *grad = dy + plane * out_h * out_w;
        int oh_begin, oh_end, ow_begin, ow_end;
        covering_windows(ih, k, s, 0, out_h, &oh_begin, &oh_end);
        covering_windows(iw, k, s, 0, out_w, &ow_begin, &ow_end);
        float value = dx[index];
        for (int oh = oh_begin; oh < oh_end; oh++)
            for (int ow = ow_begin; ow < ow_end; ow++)
                value += __fmul_rn(grad[(size_t)oh * out_w + ow], inv_area);
        dx[index] = value;
    }
}

void diat_cuda_avgpool_forward(diat_context *ctx, const diat_tensor *x, int k, int s,
                               diat_tensor *y)
{
    const size_t count = count_of(y);
    if (!count) return;
    const float inv_area = 1.0f / (float)(k * k);
    avgpool_forward_kernel<<<diat_cuda_blocks(count), DIAT_CUDA_THREADS, 0,
                             diat_cuda_stream(ctx)>>>(x->data, y->data, count, x->h, x->w, y->h,
                                                      y->w, k, s, inv_area);
    DIAT_CUDA_LAUNCHED("avgpool_forward");
}

void diat_cuda_avgpool_backward(diat_context *ctx, const diat_tensor *dy, int k, int s,
                                diat_tensor *dx)
{
    if (!dx) return;
    const size_t count = count_of(dx);
    if (!count) return;
    const float inv_area = 1.0f / (float)(k * k);
    avgpool_backward_kernel<<<diat_cuda_blocks(count), DIAT_CUDA_THREADS, 0,
                              diat_cuda_stream(ctx)>>>(dy->data, dx->data, count, dx->h, dx->w,
                                                       dy->h, dy->w, k, s, inv_area);
    DIAT_CUDA_LAUNCHED("avgpool_backward");
}

/* ---- max pooling ----------------------------------------------------------
 * Window (oh, ow) covers rows oh*s - p .. oh*s - p + k - 1 (and likewise
 * columns), clipped to the plane. */

/* Index within the plane of the window's first maximum in row-major order (a
 * later cell must be strictly greater to take over), exactly the CPU's scan:
 * the same start cell and the same -infinity seed, so NaN windows agree too. */
__device__ static size_t window_argmax(const float *src, int h, int w, int row0, int col0, int k)
{
    const int r_begin = row0 < 0 ? 0 : row0, r_end = row0 + k < h ? row0 + k : h;
    const int c_begin = col0 < 0 ? 0 : col0, c_end = col0 + k < w ? col0 + k : w;
    size_t best = (size_t)r_begin * w + c_begin;
    float best_value = -INFINITY;
    for (int r = r_begin; r < r_end; r++)
        for (int c = c_begin; c < c_end; c++) {
            const size_t at = (size_t)r * w + c;
            const float value = src[at];
            if (value > best_value) best_value = value, best = at;
        }
    return best;
}

static __global__ void maxpool_forward_kernel(const float *x, float *y, size_t count, int h, int w,
                                              int out_h, int out_w, int k, int s, int p)
{
    GRID_STRIDE_LOOP(index, count)
    {
        const int ow = (int)(index % out_w);
        const size_t rest = index / out_w;
        const int oh = (int)(rest % out_h);
        const size_t plane = rest / out_h;
        const float *src = x + plane * h * w;
        y[index] = src[window_argmax(src, h, w, oh * s - p, ow * s - p, k)];
    }
}

/* Gather: each dx element re-finds the winner of every window covering it
 * and takes the gradients of the windows it won, in the CPU's (oh, ow)
 * order. No index buffer from the forward is needed, as on the CPU. */
static __global__ void maxpool_backward_kernel(const float *x, const float *dy, float *dx,
                                               size_t count, int h, int w, int out_h, int out_w,
                                               int k, int s, int p)
{
    GRID_STRIDE_LOOP(index, count)
    {
        const int iw = (int)(index % w);
        const size_t rest = index / w;
        const int ih = (int)(rest % h);
        const size_t plane = rest / h;
        const float *src = x + plane * h * w;
        const float *grad = dy + plane * out_h * out_w;
        const size_t self = (size_t)ih * w + iw;
        int oh_begin, oh_end, ow_begin, ow_end;
        covering_windows(ih, k, s, p, out_h, &oh_begin, &oh_end);
        covering_windows(iw, k, s, p, out_w, &ow_begin, &ow_end);
        float value = dx[index];
        for (int oh = oh_begin; oh < oh_end; oh++)
            for (int ow = ow_begin; ow < ow_end; ow++)
                if (window_argmax(src, h, w, oh * s - p, ow * s - p, k) == self)
                    value += grad[(size_t)oh * out_w + ow];
        dx[index] = value;
    }
}

void diat_cuda_maxpool_forward(diat_context *ctx, const diat_tensor *x, int k, int s, int p,
                               diat_tensor *y)
{
    const size_t count = count_of(y);
    if (!count) return;
    maxpool_forward_kernel<<<diat_cuda_blocks(count), DIAT_CUDA_THREADS, 0,
                             diat_cuda_stream(ctx)>>>(x->data, y->data, count, x->h, x->w, y->h,
                                                      y->w, k, s, p);
    DIAT_CUDA_LAUNCHED("maxpool_forward");
}

void diat_cuda_maxpool_backward(diat_context *ctx, const diat_tensor *x, const diat_tensor *dy,
                                int k, int s, int p, diat_tensor *dx)
{
    if (!dx) return;
    const size_t count = count_of(dx);
    if (!count) return;
    maxpool_backward_kernel<<<diat_cuda_blocks(count), DIAT_CUDA_THREADS, 0,
                              diat_cuda_stream(ctx)>>>(x->data, dy->data, dx->data, count, x->h,
                                                       x->w, dy->h, dy->w, k, s, p);
    DIAT_CUDA_LAUNCHED("maxpool_backward");
}

/* The mask's separable 5x5 Gaussian on the GPU, per (sample, channel) plane
 * with edge-replicated borders, matching engine/cpu/gaussian.c:
 * y = H(V(x)), V the vertical and H the horizontal 1-D pass, and the exact
 * adjoint dx += V^T(H^T(dy)) as backward. Both are one kernel with one
 * thread per output element (no scratch buffer between the passes); the
 * backward is a gather, so no atomics. The taps are not assumed symmetric. */
#include "cuda-internal.h"

enum { TAPS = 5, RADIUS = 2 };

/* The taps by value: the caller's pointer is host memory
 * (diat_gaussian5_taps() returns a static array), so it is copied into the
 * kernel's parameters rather than read on the device. */
struct gaussian_taps {
    float t[TAPS];
};

#define GRID_STRIDE_LOOP(index, count)                                                             \
    for (size_t index = (size_t)blockIdx.x * blockDim.x + threadIdx.x; index < (count);            \
         index += (size_t)blockDim.x * gridDim.x)

__device__ static int clamp_index(int i, int len)
{
    return i < 0 ? 0 : i >= len ? len - 1 : i;
}

/* acc + a * b with the product and the sum rounded separately, as the CPU
 * (C11, no FMA contraction) does: the forward then matches it bit for bit. */
__device__ static float add_product(float acc, float a, float b)
{
    return __fadd_rn(acc, __fmul_rn(a, b));
}

/* y[i][j] = sum_b taps[b] * V[i][clamp(j + b)], where
 * V[i][c] = sum_a taps[a] * x[clamp(i + a)][c]; both sums start at zero and
 * run over the offsets in increasing order, as the CPU's two passes do. */
static __global__ void gaussian5_forward_kernel(const float *x, float *y, size_t count, int h,
                                                int w, gaussian_taps taps)
{
    GRID_STRIDE_LOOP(index, count)
    {
        const int j = (int)(index % w);
        const size_t rest = index / w;
        const int i = (int)(rest % h);
        const float *src = x + (rest / h) * h * w;
        float sum = 0.0f;
        for (int b = -RADIUS; b <= RADIUS; b++) {
            const int column = clamp_index(j + b, w);
            float vertical = 0.0f;
            for (int a = -RADIUS; a <= RADIUS; a++)
                vertical = add_product(vertical, taps.t[a + RADIUS],
                                       src[(size_t)clamp_index(i + a, h) * w + column]);
            sum = add_product(sum, taps.t[b + RADIUS], vertical);
        }
        y[index] = sum;
    }
}

/* Weights with which input index i receives from output i + d - RADIUS
 * (d = 0..4) along one axis: output o scatters taps[e] to clamp(o + e), so
 * i receives the sum of the taps e with clamp(o + e) == i. Outputs that can
 * reach i lie within RADIUS of it, edges included (clamping only pulls
 * reads inwards). Outputs outside the plane get weight zero. */
__device__ static void adjoint_weights(int i, int len, const gaussian_taps &taps,
                                       float weights[TAPS])
{
    for (int d = 0; d < TAPS; d++) {
        const int o = i + d - RADIUS;
        float weight = 0.0f;
        if (o >= 0 && o < len)
            for (int e = -RADIUS; e <= RADIUS; e++)
                if (clamp_index(o + e, len) == i) weight += taps.t[e + RADIUS];
        weights[d] = weight;
    }
}

/* dx[i][j] += sum over outputs (oi, oj) of the row weight of oi times the
 * column weight of oj times dy[oi][oj]: V^T(H^T(dy)) as a gather. */
static __global__ void gaussian5_backward_kernel(const float *dy, float *dx, size_t count, int h,
                                                 int w, gaussian_taps taps)
{
    GRID_STRIDE_LOOP(index, count)
    {
        const int j = (int)(index % w);
        const size_t rest = index / w;
        const int i = (int)(rest % h);
        const float *grad = dy + (rest / h) * h * w;
        float row_weights[TAPS], column_weights[TAPS];
        adjoint_weights(i, h, taps, row_weights);
        adjoint_weights(j, w, taps, column_weights);
        float sum = 0.0f;
        for (int a = 0; a < TAPS; a++) {
            const int oi = i + a - RADIUS;
            if (oi < 0 || oi >= h) continue;
            const float *row = grad + (size_t)oi * w;
            float horizontal = 0.0f;
            for (int b = 0; b < TAPS; b++) {
                const int oj = j + b - RADIUS;
                if (oj >= 0 && oj < w) horizontal += column_weights[b] * row[oj];
            }
            sum += row_weights[a] * horizontal;
        }
        dx[index] += sum;
    }
}

static gaussian_taps taps_of(const float *host_taps)
{
    gaussian_taps taps;
    for (int d = 0; d < TAPS; d++) taps.t[d] = host_taps[d];
    return taps;
}

void diat_cuda_gaussian5_forward(diat_context *ctx, const diat_tensor *x, const float *taps,
                                 diat_tensor *y)
{
    const size_t count = (size_t)x->n * x->c * x->h * x->w;
    if (!count) return;
    gaussian5_forward_kernel<<<diat_cuda_blocks(count), DIAT_CUDA_THREADS, 0,
                               diat_cuda_stream(ctx)>>>(x->data, y->data, count, x->h, x->w,
                                                        taps_of(taps));
    DIAT_CUDA_LAUNCHED("gaussian5_forward");
}

void diat_cuda_gaussian5_backward(diat_context *ctx, const diat_tensor *dy, const float *taps,
                                  diat_tensor *dx)
{
    if (!dx) return;
    const size_t count = (size_t)dy->n * dy->c * dy->h * dy->w;
    if (!count) return;
    gaussian5_backward_kernel<<<diat_cuda_blocks(count), DIAT_CUDA_THREADS, 0,
                                diat_cuda_stream(ctx)>>>(dy->data, dx->data, count, dy->h, dy->w,
                                                         taps_of(taps));
    DIAT_CUDA_LAUNCHED("gaussian5_backward");
}

/* Element-wise ops on the CUDA backend: fill, axpy, add, the activations,
 * binarize, the mask composition and the element-wise product.
 *
 * Each op mirrors its CPU twin (engine/cpu/backend-cpu.c, activation.c,
 * gaussian.c, loss.c) formula for formula, so the two agree to rounding:
 * forwards overwrite their output, backwards accumulate (+=) and skip a
 * gradient passed NULL. Every kernel is a grid-stride loop over size_t
 * indices on the context's stream; nothing here synchronises. */
#include "cuda-device.cuh"

/* ---- fill, axpy, add, mul ------------------------------------------------ */

static __global__ void fill_kernel(float *dst, float value, size_t count)
{
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < count;
         i += (size_t)gridDim.x * blockDim.x)
        dst[i] = value;
}

static __global__ void axpy_kernel(float alpha, const float *x, float *y, size_t count)
{
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < count;
         i += (size_t)gridDim.x * blockDim.x)
        y[i] += alpha * x[i];
}

static __global__ void add_kernel(const float *a, const float *b, float *y, size_t count)
{
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < count;
         i += (size_t)gridDim.x * blockDim.x)
        y[i] = a[i] + b[i];
}

static __global__ void mul_kernel(const float *a, const float *b, float *y, size_t count)
{
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < count;
         i += (size_t)gridDim.x * blockDim.x)
        y[i] = a[i] * b[i];
}

void diat_cuda_fill(diat_context *ctx, float *dst, float value, size_t count)
{
    if (!count) return;
    fill_kernel<<<diat_cuda_blocks(count), DIAT_CUDA_THREADS, 0, diat_cuda_stream(ctx)>>>(
        dst, value, count);
    DIAT_CUDA_LAUNCHED("fill");
}

void diat_cuda_axpy(diat_context *ctx, float alpha, const float *x, float *y, size_t count)
{
    if (!count) return;
    axpy_kernel<<<diat_cuda_blocks(count), DIAT_CUDA_THREADS, 0, diat_cuda_stream(ctx)>>>(alpha, x,
                                                                                          y, count);
    DIAT_CUDA_LAUNCHED("axpy");
}

void diat_cuda_add(diat_context *ctx, const float *a, const float *b, float *y, size_t count)
{
    if (!count) return;
    add_kernel<<<diat_cuda_blocks(count), DIAT_CUDA_THREADS, 0, diat_cuda_stream(ctx)>>>(a, b, y,
                                                                                         count);
    DIAT_CUDA_LAUNCHED("add");
}

void diat_cuda_mul(diat_context *ctx, const float *a, const float *b, float *y, size_t count)
{
    if (!count) return;
    mul_kernel<<<diat_cuda_blocks(count), DIAT_CUDA_THREADS, 0, diat_cuda_stream(ctx)>>>(a, b, y,
                                                                                         count);
    DIAT_CUDA_LAUNCHED("mul");
}

/* to[n][c][i][j] += from[n][c][i][j] over the top-left rows x cols overlap:
 * one thread per overlapping element (the residual sums of the identity
 * network, whose branches differ by a row and a column). */
static __global__ void add_overlap_kernel(const float *from, int from_h, int from_w, float *to,
                                          int to_h, int to_w, int rows, int cols, size_t count)
{
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < count;
         i += (size_t)gridDim.x * blockDim.x) {
        const int col = (int)(i % cols), row = (int)(i / cols % rows);
        const size_t plane = i / ((size_t)cols * rows);
        to[(plane * to_h + row) * to_w + col] += from[(plane * from_h + row) * from_w + col];
    }
}

void diat_cuda_add_overlap(diat_context *ctx, const diat_tensor *from, diat_tensor *to)
{
    const int rows = from->h < to->h ? from->h : to->h;
    const int cols = from->w < to->w ? from->w : to->w;
    const size_t count = (size_t)from->n * from->c * rows * cols;
    if (!count) return;
    add_overlap_kernel<<<diat_cuda_blocks(count), DIAT_CUDA_THREADS, 0, diat_cuda_stream(ctx)>>>(
        from->data, from->h, from->w, to->data, to->h, to->w, rows, cols, count);
    DIAT_CUDA_LAUNCHED("add_overlap");
}

/* ---- activations ----------------------------------------------------------
 * One kernel instance per kind (a template argument), so the per-element
 * code has no switch. Backward works from the forward output y, as on the
 * CPU: relu' = y > 0, leaky' = y > 0 ? 1 : slope, sigmoid' = y (1 - y),
 * tanh' = 1 - y^2. */

template <int KIND>
static __device__ __forceinline__ float activation_gradient(float y, float dy, float slope)
{
    if (KIND == DIAT_ACT_RELU) return y > 0.0f ? dy : 0.0f;
    if (KIND == DIAT_ACT_LEAKY_RELU) return dy * (y > 0.0f ? 1.0f : slope);
    if (KIND == DIAT_ACT_SIGMOID) return dy * y * (1.0f - y);
    if (KIND == DIAT_ACT_TANH) return dy * (1.0f - y * y);
    return dy;
}

/* x and y may be the same buffer: each element is read before it is written,
 * by the same thread. */
template <int KIND>
static __global__ void activation_forward_kernel(float slope, const float *x, float *y,
                                                 size_t count)
{
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < count;
         i += (size_t)gridDim.x * blockDim.x)
        y[i] = diat_cuda_activate(x[i], (diat_activation)KIND, slope);
}

template <int KIND>
static __global__ void activation_backward_kernel(float slope, const float *y, const float *dy,
                                                  float *dx, size_t count)
{
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < count;
         i += (size_t)gridDim.x * blockDim.x)
        dx[i] += activation_gradient<KIND>(y[i], dy[i], slope);
}

template <int KIND>
static void launch_activation_forward(diat_context *ctx, float slope, const float *x, float *y,
                                      size_t count)
{
    activation_forward_kernel<KIND>
        <<<diat_cuda_blocks(count), DIAT_CUDA_THREADS, 0, diat_cuda_stream(ctx)>>>(slope, x, y,
                                                                                   count);
    DIAT_CUDA_LAUNCHED("activation forward");
}

template <int KIND>
static void launch_activation_backward(diat_context *ctx, float slope, const float *y,
                                       const float *dy, float *dx, size_t count)
{
    activation_backward_kernel<KIND>
        <<<diat_cuda_blocks(count), DIAT_CUDA_THREADS, 0, diat_cuda_stream(ctx)>>>(slope, y, dy, dx,
                                                                                   count);
    DIAT_CUDA_LAUNCHED("activation backward");
}

void diat_cuda_activation_forward(diat_context *ctx, diat_activation kind, float slope,
                                  const float *x, float *y, size_t count)
{
    if (!count) return;
    switch (kind) {
    case DIAT_ACT_IDENTITY:
        /* In place is a no-op, as on the CPU; otherwise a device-side copy. */
        if (y != x)
            diat_cuda_check(cudaMemcpyAsync(y, x, count * sizeof(float), cudaMemcpyDeviceToDevice,
                                            diat_cuda_stream(ctx)),
                            "identity activation copy");
        break;
    case DIAT_ACT_RELU: launch_activation_forward<DIAT_ACT_RELU>(ctx, slope, x, y, count); break;
    case DIAT_ACT_LEAKY_RELU:
        launch_activation_forward<DIAT_ACT_LEAKY_RELU>(ctx, slope, x, y, count);
        break;
    case DIAT_ACT_SIGMOID:
        launch_activation_forward<DIAT_ACT_SIGMOID>(ctx, slope, x, y, count);
        break;
    case DIAT_ACT_TANH: launch_activation_forward<DIAT_ACT_TANH>(ctx, slope, x, y, count); break;
    }
}

void diat_cuda_activation_backward(diat_context *ctx, diat_activation kind, float slope,
                                   const float *y, const float *dy, float *dx, size_t count)
{
    if (!count) return;
    switch (kind) {
    case DIAT_ACT_IDENTITY:
        launch_activation_backward<DIAT_ACT_IDENTITY>(ctx, slope, y, dy, dx, count);
        break;
    case DIAT_ACT_RELU:
        launch_activation_backward<DIAT_ACT_RELU>(ctx, slope, y, dy, dx, count);
        break;
    case DIAT_ACT_LEAKY_RELU:
        launch_activation_backward<DIAT_ACT_LEAKY_RELU>(ctx, slope, y, dy, dx, count);
        break;
    case DIAT_ACT_SIGMOID:
        launch_activation_backward<DIAT_ACT_SIGMOID>(ctx, slope, y, dy, dx, count);
        break;
    case DIAT_ACT_TANH:
        launch_activation_backward<DIAT_ACT_TANH>(ctx, slope, y, dy, dx, count);
        break;
    }
}

/* ---- binarize: hard threshold, straight-through backward ------------------ */

static __global__ void binarize_forward_kernel(const float *x, float threshold, float *y,
                                               size_t count)
{
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < count;
         i += (size_t)gridDim.x * blockDim.x)
        y[i] = x[i] > threshold ? 1.0f : 0.0f;
}

void diat_cuda_binarize_forward(diat_context *ctx, const float *x, float threshold, float *y,
                                size_t count)
{
    if (!count) return;
    binarize_forward_kernel<<<diat_cuda_blocks(count), DIAT_CUDA_THREADS, 0,
                              diat_cuda_stream(ctx)>>>(x, threshold, y, count);
    DIAT_CUDA_LAUNCHED("binarize forward");
}

/* dx += dy: the same update as axpy with alpha 1 (1 * dy is exact). */
void diat_cuda_binarize_backward(diat_context *ctx, const float *dy, float *dx, size_t count)
{
    if (!count) return;
    axpy_kernel<<<diat_cuda_blocks(count), DIAT_CUDA_THREADS, 0, diat_cuda_stream(ctx)>>>(
        1.0f, dy, dx, count);
    DIAT_CUDA_LAUNCHED("binarize backward");
}

/* ---- composition ------------------------------------------------------------
 * y[n,c,i] = m[n,i] a[n,c,i] + (1 - m[n,i]) b[n,c,i], computed as the CPU
 * does, b + m (a - b). Backward: da += m dy, db += (1 - m) dy,
 * dm += sum_c (a - b) dy (in double, as on the CPU). */

static __global__ void compose_forward_kernel(const float *m, const float *a, const float *b,
                                              float *y, size_t plane, size_t sample_size,
                                              size_t count)
{
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < count;
         i += (size_t)gridDim.x * blockDim.x) {
        const float mask = m[(i / sample_size) * plane + i % plane];
        y[i] = b[i] + mask * (a[i] - b[i]);
    }
}

/* One thread per (sample, pixel), looping over the channels: the channel sum
 * for dm then needs no reduction across threads, and neighbouring threads
 * still read neighbouring addresses. */
static __global__ void compose_backward_kernel(const float *m, const float *a, const float *b,
                                               const float *dy, float *dm, float *da, float *db,
                                               int channels, size_t plane, size_t pixels)
{
    for (size_t p = (size_t)blockIdx.x * blockDim.x + threadIdx.x; p < pixels;
         p += (size_t)gridDim.x * blockDim.x) {
        const size_t sample = p / plane, pixel = p % plane;
        const float mask = m[p];
        double sum = 0.0;
        for (int c = 0; c < channels; c++) {
            const size_t at = (sample * channels + c) * plane + pixel;
            const float g = dy[at];
            if (da) da[at] += mask * g;
            if (db) db[at] += (1.0f - mask) * g;
            if (dm) sum += ((double)a[at] - b[at]) * dy[at];
        }
        if (dm) dm[p] += (float)sum;
    }
}

void diat_cuda_compose_forward(diat_context *ctx, const diat_tensor *m, const diat_tensor *a,
                               const diat_tensor *b, diat_tensor *y)
{
    const size_t plane = (size_t)a->h * a->w;
    const size_t count = (size_t)a->n * a->c * plane;
    if (!count) return;
    compose_forward_kernel<<<diat_cuda_blocks(count), DIAT_CUDA_THREADS, 0,
                             diat_cuda_stream(ctx)>>>(m->data, a->data, b->data, y->data, plane,
                                                      (size_t)a->c * plane, count);
    DIAT_CUDA_LAUNCHED("compose forward");
}

void diat_cuda_compose_backward(diat_context *ctx, const diat_tensor *m, const diat_tensor *a,
                                const diat_tensor *b, const diat_tensor *dy, diat_tensor *dm,
                                diat_tensor *da, diat_tensor *db)
{
    if (!dm && !da && !db) return;
    const size_t plane = (size_t)a->h * a->w;
    const size_t pixels = (size_t)a->n * plane;
    if (!pixels) return;
    /* a and b are read only for dm; b need not be given otherwise (the CPU
     * reads neither then). */
    compose_backward_kernel<<<diat_cuda_blocks(pixels), DIAT_CUDA_THREADS, 0,
                              diat_cuda_stream(ctx)>>>(
        m->data, a->data, dm ? b->data : NULL, dy->data, dm ? dm->data : NULL, da ? da->data : NULL,
        db ? db->data : NULL, a->c, plane, pixels);
    DIAT_CUDA_LAUNCHED("compose backward");
}

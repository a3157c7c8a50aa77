/* Depthwise 2-D convolution on the CPU (groups = channels, one k x k filter
 * per channel), for the face detector's and landmark network's separable
 * convolutions.
 *
 * Layout: x [n, c, h, w], weight [c, 1, k, k], bias [c] or NULL,
 * y [n, c, oh, ow]. Each output plane depends on one input plane only, so
 * there is no GEMM to hand off to: the work is a few multiply-adds per
 * output, and what matters is that they run as long vector operations.
 * Every kernel here is therefore written as "one filter tap times one input
 * row, added to one output row" (stride 1: both rows contiguous), the range
 * of valid output columns for the tap computed once so the loop carries no
 * bounds test. The output row (at most a few KiB) stays in L1 across the
 * k*k taps.
 *
 * The baseline x86-64 target has only SSE2; the row loops are compiled
 * again for x86-64-v3 (AVX2) and v4 (AVX-512), chosen at load time
 * (target_clones), as the detector's cost budget needs the wide vectors.
 *
 * Threads (worker-pool.c): work is split by channel, so no two threads
 * write the same output plane, dweight row or dbias entry. */
#include "ops-cpu.h"
#include "worker-pool.h"

#if defined(__x86_64__) && defined(__has_attribute)
#if __has_attribute(target_clones)
#define ROW_KERNEL __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#endif
#endif
#ifndef ROW_KERNEL
#define ROW_KERNEL
#endif

enum {
    MAX_THREADS = 64,
    /* Below this many multiply-adds a call is not worth waking workers for
     * (a wake-up costs a few microseconds; this is about 50 of them). */
    MIN_WORK_PER_THREAD = 64 * 1024,
    /* Lanes of the partial sums in the weight-gradient dot products: enough
     * independent sums for the compiler to vectorise the reduction (it may
     * not reorder a single float sum) at any vector width up to 512 bits. */
    DOT_LANES = 16,
};

typedef struct depthwise_shape {
    int batch, channels;
    int in_h, in_w, out_h, out_w;
    int k, stride, pad;
    size_t in_plane, out_plane;
} depthwise_shape;

static depthwise_shape depthwise_shape_of(const diat_tensor *x, const diat_tensor *y,
                                          diat_conv_geometry g)
{
    depthwise_shape s;
    s.batch = x->n;
    s.channels = x->c;
    s.in_h = x->h;
    s.in_w = x->w;
    s.out_h = y->h;
    s.out_w = y->w;
    s.k = g.kernel;
    s.stride = g.stride;
    s.pad = g.pad;
    s.in_plane = (size_t)s.in_h * s.in_w;
    s.out_plane = (size_t)s.out_h * s.out_w;
    return s;
}

/* Output columns o in [0, out_len) whose input column o*stride + offset lies
 * in [0, in_len): [*lo, *hi). The others read padding (zero). */
static void valid_range(int offset, int stride, int in_len, int out_len, int *lo, int *hi)
{
    int first = offset >= 0 ? 0 : (-offset + stride - 1) / stride;
    int end = in_len - offset <= 0 ? 0 : (in_len - offset + stride - 1) / stride;
    if (end > out_len) end = out_len;
    if (first > end) first = end;
    *lo = first;
    *hi = end;
}

/* ---- row kernels ---------------------------------------------------------- */

/* The input column of output column o through a tap: o * stride + offset,
 * which valid_range keeps inside the row for o in [lo, hi). Indexing the
 * row itself (rather than a pointer moved by `offset`, which may lie before
 * the buffer) keeps the arithmetic defined. */

/* out[o] += tap * in[o * stride + offset] for o in [lo, hi). */
ROW_KERNEL
static void row_multiply_add(float tap, const float *restrict in, int offset, int stride,
                             float *restrict out, int lo, int hi)
{
    if (stride == 1)
        for (int o = lo; o < hi; o++) out[o] += tap * in[o + offset];
    else
        for (int o = lo; o < hi; o++) out[o] += tap * in[o * stride + offset];
}

/* in[o * stride + offset] += tap * out[o]: the adjoint of row_multiply_add,
 * for dx. The targets are distinct (stride apart), so there are no
 * conflicts even when stride > 1. */
ROW_KERNEL
static void row_scatter_add(float tap, const float *restrict out, int offset, int stride,
                            float *restrict in, int lo, int hi)
{
    if (stride == 1)
        for (int o = lo; o < hi; o++) in[o + offset] += tap * out[o];
    else
        for (int o = lo; o < hi; o++) in[o * stride + offset] += tap * out[o];
}

/* sum over o in [lo, hi) of a[o] * b[o * stride + offset], in DOT_LANES
 * partial sums so the loop vectorises. */
ROW_KERNEL
static float row_dot(const float *restrict a, const float *restrict b, int offset, int stride,
                     int lo, int hi)
{
    float lanes[DOT_LANES] = {0};
    int o = lo;
    if (stride == 1) {
        for (; o + DOT_LANES <= hi; o += DOT_LANES)
            for (int l = 0; l < DOT_LANES; l++) lanes[l] += a[o + l] * b[o + l + offset];
    }
    for (; o < hi; o++) lanes[0] += a[o] * b[o * stride + offset];
    float sum = 0.0f;
    for (int l = 0; l < DOT_LANES; l++) sum += lanes[l];
    return sum;
}

ROW_KERNEL
static float plane_sum(const float *restrict a, size_t count)
{
    float lanes[DOT_LANES] = {0};
    size_t i = 0;
    for (; i + DOT_LANES <= count; i += DOT_LANES)
        for (int l = 0; l < DOT_LANES; l++) lanes[l] += a[i + l];
    for (; i < count; i++) lanes[0] += a[i];
    float sum = 0.0f;
    for (int l = 0; l < DOT_LANES; l++) sum += lanes[l];
    return sum;
}

/* ---- planes --------------------------------------------------------------- */

/* y_plane = bias + filter (*) x_plane (no activation). */
static void plane_forward(const depthwise_shape *s, const float *x, const float *filter, float bias,
                          float *y)
{
    for (int oh = 0; oh < s->out_h; oh++) {
        float *out = y + (size_t)oh * s->out_w;
        for (int ow = 0; ow < s->out_w; ow++) out[ow] = bias;
        for (int ki = 0; ki < s->k; ki++) {
            int ih = oh * s->stride - s->pad + ki;
            if (ih < 0 || ih >= s->in_h) continue; /* a padding row adds nothing */
            const float *row = x + (size_t)ih * s->in_w;
            for (int kj = 0; kj < s->k; kj++) {
                int offset = kj - s->pad, lo, hi;
                valid_range(offset, s->stride, s->in_w, s->out_w, &lo, &hi);
                row_multiply_add(filter[ki * s->k + kj], row, offset, s->stride, out, lo, hi);
            }
        }
    }
}

/* dweight_filter += dy_plane (x) x_plane; dx_plane += filter^T (*) dy_plane. */
static void plane_backward(const depthwise_shape *s, const float *x, const float *filter,
                           const float *dy, float *dx, float *dfilter)
{
    for (int oh = 0; oh < s->out_h; oh++) {
        const float *grad = dy + (size_t)oh * s->out_w;
        for (int ki = 0; ki < s->k; ki++) {
            int ih = oh * s->stride - s->pad + ki;
            if (ih < 0 || ih >= s->in_h) continue;
            for (int kj = 0; kj < s->k; kj++) {
                int offset = kj - s->pad, lo, hi;
                valid_range(offset, s->stride, s->in_w, s->out_w, &lo, &hi);
                size_t row_start = (size_t)ih * s->in_w;
                if (dfilter)
                    dfilter[ki * s->k + kj] +=
                        row_dot(grad, x + row_start, offset, s->stride, lo, hi);
                if (dx)
                    row_scatter_add(filter[ki * s->k + kj], grad, offset, s->stride, dx + row_start,
                                    lo, hi);
            }
        }
    }
}

/* ---- the ops, split over channels ------------------------------------------ */

typedef struct depthwise_job {
    depthwise_shape shape;
    const float *x, *weight, *bias, *dy;
    float *y, *dx, *dweight, *dbias;
    diat_activation act;
    float slope;
    int threads;
} depthwise_job;

static void channel_range(const depthwise_job *job, int thread, int *first, int *end)
{
    int channels = job->shape.channels;
    *first = (int)((long)channels * thread / job->threads);
    *end = (int)((long)channels * (thread + 1) / job->threads);
}

static void forward_share(void *arg, int thread)
{
    const depthwise_job *job = arg;
    const depthwise_shape *s = &job->shape;
    const size_t taps = (size_t)s->k * s->k;
    int first, end;
    channel_range(job, thread, &first, &end);
    for (int n = 0; n < s->batch; n++)
        for (int c = first; c < end; c++) {
            size_t plane = (size_t)n * s->channels + c;
            float *y = job->y + plane * s->out_plane;
            plane_forward(s, job->x + plane * s->in_plane, job->weight + c * taps,
                          job->bias ? job->bias[c] : 0.0f, y);
            /* While the plane is still in cache. */
            if (job->act != DIAT_ACT_IDENTITY)
                diat_cpu_activation_forward_serial(job->act, job->slope, y, y, s->out_plane);
        }
}

static void backward_share(void *arg, int thread)
{
    const depthwise_job *job = arg;
    const depthwise_shape *s = &job->shape;
    const size_t taps = (size_t)s->k * s->k;
    int first, end;
    channel_range(job, thread, &first, &end);
    for (int c = first; c < end; c++)
        for (int n = 0; n < s->batch; n++) {
            size_t plane = (size_t)n * s->channels + c;
            const float *dy = job->dy + plane * s->out_plane;
            if (job->dbias) job->dbias[c] += plane_sum(dy, s->out_plane);
            if (!job->dx && !job->dweight) continue;
            plane_backward(s, job->x + plane * s->in_plane, job->weight + c * taps, dy,
                           job->dx ? job->dx + plane * s->in_plane : NULL,
                           job->dweight ? job->dweight + c * taps : NULL);
        }
}

/* Threads worth using for `work` multiply-adds over `channels` channels. */
static int thread_count(const diat_context *ctx, size_t work, int channels)
{
    int threads = ctx->threads < 1 ? 1 : ctx->threads > MAX_THREADS ? MAX_THREADS : ctx->threads;
    size_t useful = work / MIN_WORK_PER_THREAD;
    if (useful < (size_t)threads) threads = useful < 1 ? 1 : (int)useful;
    if (threads > channels) threads = channels < 1 ? 1 : channels;
    return threads;
}

void diat_cpu_depthwise_conv2d_forward(diat_context *ctx, const diat_tensor *x,
                                       const diat_tensor *weight, const diat_tensor *bias,
                                       diat_conv_geometry g, diat_activation act, float slope,
                                       diat_tensor *y)
{
    depthwise_job job = {
        .shape = depthwise_shape_of(x, y, g),
        .x = x->data,
        .weight = weight->data,
        .bias = bias ? bias->data : NULL,
        .y = y->data,
        .act = act,
        .slope = slope,
    };
    size_t work = diat_tensor_count(y) * (size_t)g.kernel * g.kernel;
    job.threads = thread_count(ctx, work, x->c);
    diat_worker_pool_run(job.threads, forward_share, &job);
}

void diat_cpu_depthwise_conv2d_backward(diat_context *ctx, const diat_tensor *x,
                                        const diat_tensor *weight, const diat_tensor *dy,
                                        diat_conv_geometry g, diat_tensor *dx, diat_tensor *dweight,
                                        diat_tensor *dbias)
{
    depthwise_job job = {
        .shape = depthwise_shape_of(x, dy, g),
        .x = x->data,
        .weight = weight->data,
        .dy = dy->data,
        .dx = dx ? dx->data : NULL,
        .dweight = dweight ? dweight->data : NULL,
        .dbias = dbias ? dbias->data : NULL,
    };
    size_t work = 2 * diat_tensor_count(dy) * (size_t)g.kernel * g.kernel;
    job.threads = thread_count(ctx, work, x->c);
    diat_worker_pool_run(job.threads, backward_share, &job);
}

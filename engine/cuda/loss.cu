/* The trainer's reducing ops on the CUDA backend: squared error, sum and
 * attribute-ratio losses, the WGAN-GP gradient penalty, and the Adam step.
 *
 * Losses land in a 1-float device scalar without leaving the device: a first
 * kernel writes one double partial sum per block into scratch slot 2, and a
 * single-block kernel adds the partials in a fixed order and writes the
 * result. Sums are in double as on the CPU (engine/cpu/loss.c), and the grid
 * depends only on the sizes, so a result is the same on every run. Backwards
 * accumulate (+=) and skip a gradient passed NULL. */
#include "cuda-device.cuh"

#include <math.h>

enum {
    REDUCE_THREADS = 256,
    /* Partial sums per reduction: enough blocks to fill a large GPU, few
     * enough for one block to add them up. */
    REDUCE_MAX_BLOCKS = 1024,
    /* Blocks per sample in the gradient penalty's per-sample sums. */
    PENALTY_MAX_CHUNKS = 64,
};

/* As on the CPU: keeps g_i / ||g_i|| finite when a sample's gradient vanishes. */
#define GP_NORM_EPS 1e-12

/* ---- first pass: partial sums ------------------------------------------------
 * The input is `segments` runs of `segment_length` terms (one run for a whole
 * tensor, one per sample for the penalty); block (x, y) sums its share of
 * run y into partials[y * gridDim.x + x]. Types here and below are file-local. */

namespace
{
struct plain_term {
    const float *x;
    __device__ double operator()(size_t i) const { return x[i]; }
};

struct squared_term {
    const float *x;
    __device__ double operator()(size_t i) const { return (double)x[i] * x[i]; }
};

struct squared_difference_term {
    const float *a, *b; /* b NULL meaning zeros */
    __device__ double operator()(size_t i) const
    {
        const double d = (double)a[i] - (b ? (double)b[i] : 0.0);
        return d * d;
    }
};
} // namespace

template <class Term>
static __global__ void partial_sums_kernel(Term term, size_t segment_length, int segments,
                                           double *partials)
{
    for (int segment = blockIdx.y; segment < segments; segment += gridDim.y) {
        const size_t base = (size_t)segment * segment_length;
        double sum = 0.0;
        for (size_t j = (size_t)blockIdx.x * blockDim.x + threadIdx.x; j < segment_length;
             j += (size_t)gridDim.x * blockDim.x)
            sum += term(base + j);
        sum = diat_cuda_block_sum(sum);
        if (threadIdx.x == 0) partials[(size_t)segment * gridDim.x + blockIdx.x] = sum;
    }
}

/* Blocks for a first pass over `count` terms: a function of the count only,
 * so the summation order (and the result) never changes between runs. */
static unsigned partial_blocks(size_t count, unsigned cap)
{
    size_t blocks = (count + REDUCE_THREADS - 1) / REDUCE_THREADS;
    if (blocks < 1) blocks = 1;
    return blocks > cap ? cap : (unsigned)blocks;
}

/* ---- second pass: one block adds the partials ------------------------------- */

namespace
{
typedef enum scalar_kind {
    SCALAR_SCALED_SUM, /* out = scale * sum */
    SCALAR_RATIO,      /* out = scale * |sum / count - target| */
} scalar_kind;

typedef struct scalar_finish {
    scalar_kind kind;
    float scale, target;
    size_t count;
} scalar_finish;
} // namespace

/* Writes the double total to *total (if non-NULL) and the loss to out[0]
 * (if non-NULL); the arithmetic is the CPU's, in the CPU's order. */
static __global__ void finish_sum_kernel(const double *partials, int partial_count,
                                         scalar_finish finish, double *total, float *out)
{
    double sum = 0.0;
    for (int i = threadIdx.x; i < partial_count; i += blockDim.x) sum += partials[i];
    sum = diat_cuda_block_sum(sum);
    if (threadIdx.x != 0) return;
    if (total) *total = sum;
    if (!out) return;
    if (finish.kind == SCALAR_SCALED_SUM) {
        out[0] = (float)(finish.scale * sum);
    } else {
        const double mean = finish.count ? sum / (double)finish.count : 0.0;
        out[0] = (float)(finish.scale * fabs(mean - finish.target));
    }
}

/* Reduce `count` terms into the scalar (and/or the double total, kept in
 * scratch slot 2 and returned). */
template <class Term>
static double *reduce_to_device(diat_context *ctx, Term term, size_t count, scalar_finish finish,
                                float *out, const char *what)
{
    /* Fixed size, so the slot is allocated once; the last double holds the total. */
    double *partials = (double *)diat_cuda_scratch(ctx, 2, 2 * (REDUCE_MAX_BLOCKS + 1));
    double *total = partials + REDUCE_MAX_BLOCKS;
    const unsigned blocks = partial_blocks(count, REDUCE_MAX_BLOCKS);
    cudaStream_t stream = diat_cuda_stream(ctx);
    partial_sums_kernel<<<dim3(blocks, 1), REDUCE_THREADS, 0, stream>>>(term, count, 1, partials);
    DIAT_CUDA_LAUNCHED(what);
    finish_sum_kernel<<<1, REDUCE_THREADS, 0, stream>>>(partials, (int)blocks, finish, total, out);
    DIAT_CUDA_LAUNCHED(what);
    return total;
}

/* ---- squared error, sum ------------------------------------------------------ */

void diat_cuda_squared_error_forward(diat_context *ctx, const float *a, const float *b,
                                     size_t count, float scale, float *out)
{
    const scalar_finish finish = {SCALAR_SCALED_SUM, scale, 0.0f, count};
    reduce_to_device(ctx, squared_difference_term{a, b}, count, finish, out,
                     "squared error forward");
}

static __global__ void squared_error_backward_kernel(const float *a, const float *b, size_t count,
                                                     float twice, float *da, float *db)
{
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < count;
         i += (size_t)gridDim.x * blockDim.x) {
        const float d = a[i] - (b ? b[i] : 0.0f);
        if (da) da[i] += twice * d;
        if (db) db[i] -= twice * d;
    }
}

void diat_cuda_squared_error_backward(diat_context *ctx, const float *a, const float *b,
                                      size_t count, float scale, float *da, float *db)
{
    if ((!da && !db) || !count) return;
    squared_error_backward_kernel<<<diat_cuda_blocks(count), DIAT_CUDA_THREADS, 0,
                                    diat_cuda_stream(ctx)>>>(a, b, count, 2.0f * scale, da, db);
    DIAT_CUDA_LAUNCHED("squared error backward");
}

void diat_cuda_sum_forward(diat_context *ctx, const float *x, size_t count, float scale, float *out)
{
    const scalar_finish finish = {SCALAR_SCALED_SUM, scale, 0.0f, count};
    reduce_to_device(ctx, plain_term{x}, count, finish, out, "sum forward");
}

/* ---- attribute ratio ---------------------------------------------------------- */

void diat_cuda_ratio_loss_forward(diat_context *ctx, const float *x, size_t count, float target,
                                  float scale, float *out)
{
    const scalar_finish finish = {SCALAR_RATIO, scale, target, count};
    reduce_to_device(ctx, plain_term{x}, count, finish, out, "ratio loss forward");
}

/* dx += scale * sign(mean - target) / count, the mean read from the device
 * total the reduction left; at the target (sign 0) dx is left alone, as on
 * the CPU. */
static __global__ void ratio_loss_backward_kernel(const double *total, size_t count, float target,
                                                  float scale, float *dx)
{
    const double excess = *total / (double)count - target;
    const double sign = excess > 0.0 ? 1.0 : excess < 0.0 ? -1.0 : 0.0;
    if (sign == 0.0) return;
    const float step = (float)(scale * sign / (double)count);
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < count;
         i += (size_t)gridDim.x * blockDim.x)
        dx[i] += step;
}

void diat_cuda_ratio_loss_backward(diat_context *ctx, const float *x, size_t count, float target,
                                   float scale, float *dx)
{
    if (!dx || count == 0) return;
    const scalar_finish finish = {SCALAR_RATIO, scale, target, count};
    const double *total =
        reduce_to_device(ctx, plain_term{x}, count, finish, NULL, "ratio loss backward");
    ratio_loss_backward_kernel<<<diat_cuda_blocks(count), DIAT_CUDA_THREADS, 0,
                                 diat_cuda_stream(ctx)>>>(total, count, target, scale, dx);
    DIAT_CUDA_LAUNCHED("ratio loss backward");
}

/* ---- WGAN-GP gradient penalty ---------------------------------------------------
 * out = lambda / n sum_i (r_i - 1)^2, r_i = sqrt(|g_i|^2 + GP_NORM_EPS);
 * backward dg_i += 2 lambda / n (r_i - 1) / r_i g_i. The squared norms are
 * reduced per sample (grid y = sample, x = chunk of the sample), then one
 * block turns each sample's partials into r_i and its coefficient. */

/* One thread per sample adds that sample's chunk partials in order; the
 * penalty is the block's sum of (r_i - 1)^2. */
static __global__ void penalty_finish_kernel(const double *partials, int chunks, int samples,
                                             float lambda, float *out, float *coefficients)
{
    double excess_squares = 0.0;
    for (int s = threadIdx.x; s < samples; s += blockDim.x) {
        double squares = 0.0;
        for (int k = 0; k < chunks; k++) squares += partials[(size_t)s * chunks + k];
        const double norm = sqrt(squares + GP_NORM_EPS);
        const double excess = norm - 1.0;
        excess_squares += excess * excess;
        /* d/dg (r - 1)^2 = 2 (r - 1) g / r, in the CPU's order of operations */
        if (coefficients) coefficients[s] = (float)(2.0 * lambda / samples * (norm - 1.0) / norm);
    }
    excess_squares = diat_cuda_block_sum(excess_squares);
    if (threadIdx.x == 0 && out) out[0] = (float)(lambda * excess_squares / samples);
}

static __global__ void penalty_backward_kernel(const float *g, const float *coefficients,
                                               size_t per_sample, size_t count, float *dg)
{
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < count;
         i += (size_t)gridDim.x * blockDim.x)
        dg[i] += coefficients[i / per_sample] * g[i];
}

/* Queue the per-sample reduction; writes out (if non-NULL) and the per-sample
 * coefficients (if non-NULL, `samples` floats). */
static void penalty_reduce(diat_context *ctx, const diat_tensor *g, float lambda, float *out,
                           float *coefficients, const char *what)
{
    const size_t per_sample = (size_t)g->c * g->h * g->w;
    const int samples = g->n;
    const unsigned chunks = partial_blocks(per_sample, PENALTY_MAX_CHUNKS);
    double *partials = (double *)diat_cuda_scratch(ctx, 2, 2 * (size_t)samples * chunks);
    const unsigned grid_samples = samples > 65535 ? 65535u : (unsigned)samples;
    cudaStream_t stream = diat_cuda_stream(ctx);
    partial_sums_kernel<<<dim3(chunks, grid_samples), REDUCE_THREADS, 0, stream>>>(
        squared_term{g->data}, per_sample, samples, partials);
    DIAT_CUDA_LAUNCHED(what);
    penalty_finish_kernel<<<1, REDUCE_THREADS, 0, stream>>>(partials, (int)chunks, samples, lambda,
                                                            out, coefficients);
    DIAT_CUDA_LAUNCHED(what);
}

void diat_cuda_gradient_penalty_forward(diat_context *ctx, const diat_tensor *g, float lambda,
                                        float *out)
{
    if (g->n <= 0) {
        /* The CPU writes 0 for an empty batch; 0.0f is all zero bits. */
        diat_cuda_check(cudaMemsetAsync(out, 0, sizeof(float), diat_cuda_stream(ctx)),
                        "gradient penalty forward");
        return;
    }
    penalty_reduce(ctx, g, lambda, out, NULL, "gradient penalty forward");
}

void diat_cuda_gradient_penalty_backward(diat_context *ctx, const diat_tensor *g, float lambda,
                                         diat_tensor *dg)
{
    const size_t per_sample = (size_t)g->c * g->h * g->w;
    const size_t count = (size_t)g->n * per_sample;
    if (!dg || g->n <= 0 || count == 0) return;
    float *coefficients = diat_cuda_scratch(ctx, 3, (size_t)g->n);
    penalty_reduce(ctx, g, lambda, NULL, coefficients, "gradient penalty backward");
    penalty_backward_kernel<<<diat_cuda_blocks(count), DIAT_CUDA_THREADS, 0,
                              diat_cuda_stream(ctx)>>>(g->data, coefficients, per_sample, count,
                                                       dg->data);
    DIAT_CUDA_LAUNCHED("gradient penalty backward");
}

/* ---- Adam ------------------------------------------------------------------------
 * PyTorch's Adam (no weight decay, no amsgrad), as on the CPU:
 *   m = b1 m + (1 - b1) g,  v = b2 v + (1 - b2) g^2,
 *   p -= lr (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps). */

static __global__ void adam_kernel(float *param, const float *grad, float *m, float *v,
                                   size_t count, float lr, float beta1, float beta2, float eps,
                                   float inv_correction1, float inv_correction2)
{
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < count;
         i += (size_t)gridDim.x * blockDim.x) {
        const float gi = grad[i];
        const float mi = beta1 * m[i] + (1.0f - beta1) * gi;
        const float vi = beta2 * v[i] + (1.0f - beta2) * gi * gi;
        m[i] = mi;
        v[i] = vi;
        const float m_hat = mi * inv_correction1;
        const float v_hat = vi * inv_correction2;
        param[i] -= lr * m_hat / (sqrtf(v_hat) + eps);
    }
}

void diat_cuda_adam_update(diat_context *ctx, float *param, const float *grad, float *m, float *v,
                           size_t count, float lr, float beta1, float beta2, float eps, int step)
{
    if (!count) return;
    /* The bias corrections on the host, in double, exactly as the CPU does:
     * they depend on the arguments only. */
    const double t = step < 1 ? 1.0 : (double)step;
    const float inv_correction1 = (float)(1.0 / (1.0 - pow((double)beta1, t)));
    const float inv_correction2 = (float)(1.0 / (1.0 - pow((double)beta2, t)));
    adam_kernel<<<diat_cuda_blocks(count), DIAT_CUDA_THREADS, 0, diat_cuda_stream(ctx)>>>(
        param, grad, m, v, count, lr, beta1, beta2, eps, inv_correction1, inv_correction2);
    DIAT_CUDA_LAUNCHED("adam update");
}

/* Batch and instance normalisation on the CUDA backend (PyTorch semantics),
 * matching engine/cpu/norm.c.
 *
 * As on the CPU, both normalise "groups": batch norm one group per channel
 * (that channel's plane in every sample), instance norm one per (sample,
 * channel) plane. A group is `runs` planes of `plane` floats, `run_stride`
 * apart, starting at group * plane, and one block handles one group, so its
 * statistics come from a block reduction, without atomics: the results are
 * the same on every run. Statistics are two-pass (mean, then squared
 * deviations) in double, as on the CPU. Backwards accumulate (+=) into dx,
 * dgamma and dbeta and skip any passed NULL; gamma and beta may be NULL
 * (meaning 1 and 0).
 *
 * The float arithmetic uses __fmul_rn/__fadd_rn, which nvcc never fuses
 * into an FMA, so it rounds exactly as the (unfused) CPU code: for a
 * near-constant group invstd approaches 1/sqrt(eps) and x * scale + shift
 * cancels, where a fused result would differ from the CPU's by ~1e-5. */
#include "cuda-device.cuh"

#include <math.h>

/* Groups hold up to ~10^6 values at training resolution: wide blocks. */
enum { NORM_THREADS = 512 };

namespace
{
typedef struct norm_group {
    size_t runs, run_stride, plane;
} norm_group;
} // namespace

/* Calls visit(address) for this thread's share of the group starting at
 * `base`: flat indices threadIdx.x, + blockDim.x, ..., as (run, offset)
 * pairs advanced without a 64-bit division per element. Consecutive threads
 * get consecutive addresses within a plane, however small the plane. */
template <class Visit>
static __device__ void for_each_in_group(norm_group g, size_t base, Visit visit)
{
    const size_t step_runs = blockDim.x / g.plane, step_offset = blockDim.x % g.plane;
    size_t run = threadIdx.x / g.plane, offset = threadIdx.x % g.plane;
    while (run < g.runs) {
        visit(base + run * g.run_stride + offset);
        run += step_runs;
        offset += step_offset;
        if (offset >= g.plane) {
            offset -= g.plane;
            run++;
        }
    }
}

/* ---- forward with the group's own statistics ------------------------------- */

/* Group `blockIdx.x` uses channel blockIdx.x % channels for gamma and beta,
 * and saves its statistics at index blockIdx.x. running_mean/var (batch norm
 * only) may be NULL. y may alias x: every read of the group precedes the
 * reductions' barriers, and only this block touches the group. */
static __global__ void norm_forward_kernel(const float *x, const float *gamma, const float *beta,
                                           float eps, float momentum, float *running_mean,
                                           float *running_var, float *save_mean, float *save_invstd,
                                           float *y, norm_group g, int channels)
{
    const size_t group = blockIdx.x;
    const int channel = (int)(group % channels);
    const size_t base = group * g.plane;
    const double count = (double)(g.runs * g.plane);

    double sum = 0.0;
    for_each_in_group(g, base, [&](size_t at) { sum += x[at]; });
    const double mean = diat_cuda_block_sum(sum) / count;
    double squares = 0.0;
    for_each_in_group(g, base, [&](size_t at) {
        const double u = x[at] - mean;
        squares += u * u;
    });
    const double variance = diat_cuda_block_sum(squares) / count;

    const float invstd = (float)(1.0 / sqrt(variance + eps));
    const float scale = (gamma ? gamma[channel] : 1.0f) * invstd;
    const float shift = __fsub_rn(beta ? beta[channel] : 0.0f, __fmul_rn((float)mean, scale));
    for_each_in_group(g, base,
                      [&](size_t at) { y[at] = __fadd_rn(__fmul_rn(x[at], scale), shift); });

    if (threadIdx.x != 0) return;
    if (save_mean) save_mean[group] = (float)mean;
    if (save_invstd) save_invstd[group] = invstd;
    /* The running variance is the unbiased estimate (as in PyTorch); a
     * single value per channel has none, so keep the biased one (0). */
    const double unbiased = count > 1.0 ? variance * count / (count - 1.0) : variance;
    if (running_mean)
        running_mean[channel] = __fadd_rn(__fmul_rn(1.0f - momentum, running_mean[channel]),
                                          __fmul_rn(momentum, (float)mean));
    if (running_var)
        running_var[channel] = __fadd_rn(__fmul_rn(1.0f - momentum, running_var[channel]),
                                         __fmul_rn(momentum, (float)unbiased));
}

static void launch_norm_forward(diat_context *ctx, const diat_tensor *x, const diat_tensor *gamma,
                                const diat_tensor *beta, float eps, float momentum,
                                diat_tensor *running_mean, diat_tensor *running_var,
                                diat_tensor *save_mean, diat_tensor *save_invstd, diat_tensor *y,
                                norm_group g, size_t groups, const char *what)
{
    if (!groups || !g.runs || !g.plane) return;
    norm_forward_kernel<<<(unsigned)groups, NORM_THREADS, 0, diat_cuda_stream(ctx)>>>(
        x->data, gamma ? gamma->data : NULL, beta ? beta->data : NULL, eps, momentum,
        running_mean ? running_mean->data : NULL, running_var ? running_var->data : NULL,
        save_mean ? save_mean->data : NULL, save_invstd ? save_invstd->data : NULL, y->data, g,
        x->c);
    DIAT_CUDA_LAUNCHED(what);
}

/* ---- backward ------------------------------------------------------------------
 * Of y = gamma (x - mean) invstd + beta with mean and invstd from the group:
 *   dbeta = sum dy,  dgamma = sum dy xhat,
 *   dx += gamma invstd (dy - dbeta / m - xhat dgamma / m).
 * Batch norm adds dgamma/dbeta straight into channel blockIdx.x (one block
 * per channel, so no race); instance norm stores each group's two sums in
 * group_sums for a second kernel to add up over the samples. */
static __global__ void norm_backward_kernel(const float *x, const float *gamma,
                                            const float *save_mean, const float *save_invstd,
                                            const float *dy, float *dx, float *dgamma, float *dbeta,
                                            double *group_sums, norm_group g, int channels)
{
    const size_t group = blockIdx.x;
    const int channel = (int)(group % channels);
    const size_t base = group * g.plane;
    const float mean = save_mean[group], invstd = save_invstd[group];

    double sum_dy = 0.0, sum_dy_xhat = 0.0;
    for_each_in_group(g, base, [&](size_t at) {
        const float gs = dy[at];
        sum_dy += gs;
        sum_dy_xhat += (double)gs * ((x[at] - mean) * invstd);
    });
    sum_dy = diat_cuda_block_sum(sum_dy);
    sum_dy_xhat = diat_cuda_block_sum(sum_dy_xhat);

    if (threadIdx.x == 0) {
        if (group_sums) {
            group_sums[2 * group] = sum_dy_xhat;
            group_sums[2 * group + 1] = sum_dy;
        }
        if (dgamma) dgamma[channel] += (float)sum_dy_xhat;
        if (dbeta) dbeta[channel] += (float)sum_dy;
    }
    if (!dx) return;
    const double m = (double)(g.runs * g.plane);
    const float mean_dy = (float)(sum_dy / m), mean_dy_xhat = (float)(sum_dy_xhat / m);
    const float k = (gamma ? gamma[channel] : 1.0f) * invstd;
    for_each_in_group(g, base, [&](size_t at) {
        const float xhat = (x[at] - mean) * invstd;
        const float centred = __fsub_rn(__fsub_rn(dy[at], mean_dy), __fmul_rn(xhat, mean_dy_xhat));
        dx[at] = __fadd_rn(dx[at], __fmul_rn(k, centred));
    });
}

/* dgamma[c] += sum_n group_sums[n, c].dgamma (and dbeta alike), the samples
 * added in order in double, as the CPU does. */
static __global__ void instance_parameter_grads_kernel(const double *group_sums, int samples,
                                                       int channels, float *dgamma, float *dbeta)
{
    for (int c = blockIdx.x * blockDim.x + threadIdx.x; c < channels; c += gridDim.x * blockDim.x) {
        double dgamma_sum = 0.0, dbeta_sum = 0.0;
        for (int n = 0; n < samples; n++) {
            const size_t group = (size_t)n * channels + c;
            dgamma_sum += group_sums[2 * group];
            dbeta_sum += group_sums[2 * group + 1];
        }
        if (dgamma) dgamma[c] += (float)dgamma_sum;
        if (dbeta) dbeta[c] += (float)dbeta_sum;
    }
}

/* ---- batch norm: one group per channel ------------------------------------------ */

static norm_group batch_group(const diat_tensor *x)
{
    norm_group g = {(size_t)x->n, (size_t)x->c * x->h * x->w, (size_t)x->h * x->w};
    return g;
}

void diat_cuda_batchnorm_forward_train(diat_context *ctx, const diat_tensor *x,
                                       const diat_tensor *gamma, const diat_tensor *beta, float eps,
                                       float momentum, diat_tensor *running_mean,
                                       diat_tensor *running_var, diat_tensor *save_mean,
                                       diat_tensor *save_invstd, diat_tensor *y)
{
    launch_norm_forward(ctx, x, gamma, beta, eps, momentum, running_mean, running_var, save_mean,
                        save_invstd, y, batch_group(x), (size_t)x->c, "batch norm forward");
}

/* Running statistics: a plain per-element affine map, scale and shift
 * computed per element exactly as the CPU computes them per channel. */
static __global__ void batchnorm_infer_kernel(const float *x, const float *gamma, const float *beta,
                                              const float *running_mean, const float *running_var,
                                              float eps, float *y, size_t plane, int channels,
                                              size_t count)
{
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < count;
         i += (size_t)gridDim.x * blockDim.x) {
        const int c = (int)((i / plane) % channels);
        const float invstd = 1.0f / sqrtf(running_var[c] + eps);
        const float scale = (gamma ? gamma[c] : 1.0f) * invstd;
        const float shift = __fsub_rn(beta ? beta[c] : 0.0f, __fmul_rn(running_mean[c], scale));
        y[i] = __fadd_rn(__fmul_rn(x[i], scale), shift);
    }
}

void diat_cuda_batchnorm_forward_infer(diat_context *ctx, const diat_tensor *x,
                                       const diat_tensor *gamma, const diat_tensor *beta,
                                       const diat_tensor *running_mean,
                                       const diat_tensor *running_var, float eps, diat_tensor *y)
{
    const size_t plane = (size_t)x->h * x->w;
    const size_t count = (size_t)x->n * x->c * plane;
    if (!count) return;
    batchnorm_infer_kernel<<<diat_cuda_blocks(count), DIAT_CUDA_THREADS, 0,
                             diat_cuda_stream(ctx)>>>(
        x->data, gamma ? gamma->data : NULL, beta ? beta->data : NULL, running_mean->data,
        running_var->data, eps, y->data, plane, x->c, count);
    DIAT_CUDA_LAUNCHED("batch norm inference");
}

void diat_cuda_batchnorm_backward(diat_context *ctx, const diat_tensor *x, const diat_tensor *gamma,
                                  const diat_tensor *save_mean, const diat_tensor *save_invstd,
                                  const diat_tensor *dy, diat_tensor *dx, diat_tensor *dgamma,
                                  diat_tensor *dbeta)
{
    const norm_group g = batch_group(x);
    if (!dx && !dgamma && !dbeta) return;
    if (!x->c || !g.runs || !g.plane) return;
    norm_backward_kernel<<<(unsigned)x->c, NORM_THREADS, 0, diat_cuda_stream(ctx)>>>(
        x->data, gamma ? gamma->data : NULL, save_mean->data, save_invstd->data, dy->data,
        dx ? dx->data : NULL, dgamma ? dgamma->data : NULL, dbeta ? dbeta->data : NULL, NULL, g,
        x->c);
    DIAT_CUDA_LAUNCHED("batch norm backward");
}

/* ---- instance norm: one group per (sample, channel) ------------------------------ */

static norm_group instance_group(const diat_tensor *x)
{
    norm_group g = {1, 0, (size_t)x->h * x->w};
    return g;
}

void diat_cuda_instancenorm_forward(diat_context *ctx, const diat_tensor *x,
                                    const diat_tensor *gamma, const diat_tensor *beta, float eps,
                                    diat_tensor *save_mean, diat_tensor *save_invstd,
                                    diat_tensor *y)
{
    launch_norm_forward(ctx, x, gamma, beta, eps, 0.0f, NULL, NULL, save_mean, save_invstd, y,
                        instance_group(x), (size_t)x->n * x->c, "instance norm forward");
}

void diat_cuda_instancenorm_backward(diat_context *ctx, const diat_tensor *x,
                                     const diat_tensor *gamma, const diat_tensor *save_mean,
                                     const diat_tensor *save_invstd, const diat_tensor *dy,
                                     diat_tensor *dx, diat_tensor *dgamma, diat_tensor *dbeta)
{
    const norm_group g = instance_group(x);
    const size_t groups = (size_t)x->n * x->c;
    const int want_parameters = dgamma || dbeta;
    if (!dx && !want_parameters) return;
    if (!groups || !g.plane) return;
    /* Two doubles per (sample, channel) in slot 2 (slots 0/1 are conv's). */
    double *group_sums =
        want_parameters ? (double *)diat_cuda_scratch(ctx, 2, 4 * groups) : (double *)NULL;
    cudaStream_t stream = diat_cuda_stream(ctx);
    norm_backward_kernel<<<(unsigned)groups, NORM_THREADS, 0, stream>>>(
        x->data, gamma ? gamma->data : NULL, save_mean->data, save_invstd->data, dy->data,
        dx ? dx->data : NULL, NULL, NULL, group_sums, g, x->c);
    DIAT_CUDA_LAUNCHED("instance norm backward");
    if (!want_parameters) return;
    instance_parameter_grads_kernel<<<diat_cuda_blocks((size_t)x->c), DIAT_CUDA_THREADS, 0,
                                      stream>>>(
        group_sums, x->n, x->c, dgamma ? dgamma->data : NULL, dbeta ? dbeta->data : NULL);
    DIAT_CUDA_LAUNCHED("instance norm parameter gradients");
}

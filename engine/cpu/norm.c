/* Batch and instance normalisation on the CPU (PyTorch semantics).
 *
 * Both normalise "groups" of values: batch norm one group per channel (the
 * channel's plane in every sample of the batch), instance norm one group per
 * (sample, channel) plane. A group is therefore `runs` planes of `plane`
 * floats, `run_stride` floats apart, and the whole file is written once over
 * that description.
 *
 * Statistics are accumulated in double, two-pass (mean, then squared
 * deviations), because a group can hold 10^5-10^6 values at training
 * resolution and float sums would lose the variance of near-constant maps.
 */
#include "ops-cpu.h"

#include <math.h>

typedef struct norm_group {
    size_t runs, run_stride, plane;
} norm_group;

static size_t group_count(norm_group g)
{
    return g.runs * g.plane;
}

/* Four independent accumulators so the double adds pipeline. */
static double sum_of(const float *p, size_t len)
{
    double a = 0.0, b = 0.0, c = 0.0, d = 0.0;
    size_t i = 0;
    for (; i + 4 <= len; i += 4) {
        a += p[i];
        b += p[i + 1];
        c += p[i + 2];
        d += p[i + 3];
    }
    for (; i < len; i++) a += p[i];
    return (a + b) + (c + d);
}

static double squared_deviation_of(const float *p, size_t len, double mean)
{
    double a = 0.0, b = 0.0;
    size_t i = 0;
    for (; i + 2 <= len; i += 2) {
        double u = p[i] - mean, v = p[i + 1] - mean;
        a += u * u;
        b += v * v;
    }
    for (; i < len; i++) a += (p[i] - mean) * (p[i] - mean);
    return a + b;
}

/* Mean and biased variance of one group. */
static void group_statistics(const float *x, norm_group g, double *mean, double *variance)
{
    double sum = 0.0, squares = 0.0;
    for (size_t r = 0; r < g.runs; r++) sum += sum_of(x + r * g.run_stride, g.plane);
    *mean = sum / (double)group_count(g);
    for (size_t r = 0; r < g.runs; r++)
        squares += squared_deviation_of(x + r * g.run_stride, g.plane, *mean);
    *variance = squares / (double)group_count(g);
}

/* y = x * scale + shift over one group. */
static void group_affine(const float *x, float *y, norm_group g, float scale, float shift)
{
    for (size_t r = 0; r < g.runs; r++) {
        const float *src = x + r * g.run_stride;
        float *dst = y + r * g.run_stride;
        for (size_t i = 0; i < g.plane; i++) dst[i] = src[i] * scale + shift;
    }
}

/* Backward of y = gamma * (x - mean) * invstd + beta with mean and invstd
 * computed from the group itself:
 *   dbeta  = sum dy,  dgamma = sum dy * xhat,
 *   dx     = gamma * invstd * (dy - dbeta / m - xhat * dgamma / m). */
static void group_backward(const float *x, const float *dy, float *dx, norm_group g, float mean,
                           float invstd, float gamma, double *dgamma_sum, double *dbeta_sum)
{
    double sum_dy = 0.0, sum_dy_xhat = 0.0;
    for (size_t r = 0; r < g.runs; r++) {
        const float *xs = x + r * g.run_stride, *gs = dy + r * g.run_stride;
        for (size_t i = 0; i < g.plane; i++) {
            sum_dy += gs[i];
            sum_dy_xhat += (double)gs[i] * ((xs[i] - mean) * invstd);
        }
    }
    *dgamma_sum = sum_dy_xhat;
    *dbeta_sum = sum_dy;
    if (!dx) return;
    const double m = (double)group_count(g);
    const float mean_dy = (float)(sum_dy / m), mean_dy_xhat = (float)(sum_dy_xhat / m);
    const float k = gamma * invstd;
    for (size_t r = 0; r < g.runs; r++) {
        const float *xs = x + r * g.run_stride, *gs = dy + r * g.run_stride;
        float *out = dx + r * g.run_stride;
        for (size_t i = 0; i < g.plane; i++) {
            float xhat = (xs[i] - mean) * invstd;
            out[i] += k * (gs[i] - mean_dy - xhat * mean_dy_xhat);
        }
    }
}

static float gamma_at(const diat_tensor *gamma, int c)
{
    return gamma ? gamma->data[c] : 1.0f;
}
static float beta_at(const diat_tensor *beta, int c)
{
    return beta ? beta->data[c] : 0.0f;
}

/* ---- batch norm: one group per channel --------------------------------- */

static norm_group batch_group(const diat_tensor *x)
{
    norm_group g = {(size_t)x->n, (size_t)x->c * x->h * x->w, (size_t)x->h * x->w};
    return g;
}

static size_t channel_offset(const diat_tensor *x, int c)
{
    return (size_t)c * x->h * x->w;
}

void diat_cpu_batchnorm_forward_train(diat_context *ctx, const diat_tensor *x,
                                      const diat_tensor *gamma, const diat_tensor *beta, float eps,
                                      float momentum, diat_tensor *running_mean,
                                      diat_tensor *running_var, diat_tensor *save_mean,
                                      diat_tensor *save_invstd, diat_tensor *y)
{
    (void)ctx;
    const norm_group g = batch_group(x);
    const double m = (double)group_count(g);
    for (int c = 0; c < x->c; c++) {
        size_t off = channel_offset(x, c);
        double mean, variance;
        group_statistics(x->data + off, g, &mean, &variance);
        float invstd = (float)(1.0 / sqrt(variance + eps));
        float scale = gamma_at(gamma, c) * invstd;
        group_affine(x->data + off, y->data + off, g, scale,
                     beta_at(beta, c) - (float)mean * scale);

        if (save_mean) save_mean->data[c] = (float)mean;
        if (save_invstd) save_invstd->data[c] = invstd;
        /* The running variance is the unbiased estimate (as in PyTorch); a
         * single value per channel has none, so keep the biased one (0). */
        double unbiased = m > 1.0 ? variance * m / (m - 1.0) : variance;
        if (running_mean)
            running_mean->data[c] =
                (1.0f - momentum) * running_mean->data[c] + momentum * (float)mean;
        if (running_var)
            running_var->data[c] =
                (1.0f - momentum) * running_var->data[c] + momentum * (float)unbiased;
    }
}

void diat_cpu_batchnorm_forward_infer(diat_context *ctx, const diat_tensor *x,
                                      const diat_tensor *gamma, const diat_tensor *beta,
                                      const diat_tensor *running_mean,
                                      const diat_tensor *running_var, float eps, diat_tensor *y)
{
    (void)ctx;
    const norm_group g = batch_group(x);
    for (int c = 0; c < x->c; c++) {
        size_t off = channel_offset(x, c);
        float invstd = 1.0f / sqrtf(running_var->data[c] + eps);
        float scale = gamma_at(gamma, c) * invstd;
        float shift = beta_at(beta, c) - running_mean->data[c] * scale;
        group_affine(x->data + off, y->data + off, g, scale, shift);
    }
}

void diat_cpu_batchnorm_backward(diat_context *ctx, const diat_tensor *x, const diat_tensor *gamma,
                                 const diat_tensor *save_mean, const diat_tensor *save_invstd,
                                 const diat_tensor *dy, diat_tensor *dx, diat_tensor *dgamma,
                                 diat_tensor *dbeta)
{
    (void)ctx;
    const norm_group g = batch_group(x);
    for (int c = 0; c < x->c; c++) {
        size_t off = channel_offset(x, c);
        double dgamma_sum, dbeta_sum;
        group_backward(x->data + off, dy->data + off, dx ? dx->data + off : NULL, g,
                       save_mean->data[c], save_invstd->data[c], gamma_at(gamma, c), &dgamma_sum,
                       &dbeta_sum);
        if (dgamma) dgamma->data[c] += (float)dgamma_sum;
        if (dbeta) dbeta->data[c] += (float)dbeta_sum;
    }
}

/* ---- instance norm: one group per (sample, channel) --------------------- */

static norm_group instance_group(const diat_tensor *x)
{
    norm_group g = {1, 0, (size_t)x->h * x->w};
    return g;
}

void diat_cpu_instancenorm_forward(diat_context *ctx, const diat_tensor *x,
                                   const diat_tensor *gamma, const diat_tensor *beta, float eps,
                                   diat_tensor *save_mean, diat_tensor *save_invstd, diat_tensor *y)
{
    (void)ctx;
    const norm_group g = instance_group(x);
    for (int n = 0; n < x->n; n++) {
        for (int c = 0; c < x->c; c++) {
            size_t plane_index = (size_t)n * x->c + c;
            size_t off = plane_index * g.plane;
            double mean, variance;
            group_statistics(x->data + off, g, &mean, &variance);
            float invstd = (float)(1.0 / sqrt(variance + eps));
            float scale = gamma_at(gamma, c) * invstd;
            group_affine(x->data + off, y->data + off, g, scale,
                         beta_at(beta, c) - (float)mean * scale);
            if (save_mean) save_mean->data[plane_index] = (float)mean;
            if (save_invstd) save_invstd->data[plane_index] = invstd;
        }
    }
}

void diat_cpu_instancenorm_backward(diat_context *ctx, const diat_tensor *x,
                                    const diat_tensor *gamma, const diat_tensor *save_mean,
                                    const diat_tensor *save_invstd, const diat_tensor *dy,
                                    diat_tensor *dx, diat_tensor *dgamma, diat_tensor *dbeta)
{
    (void)ctx;
    const norm_group g = instance_group(x);
    for (int c = 0; c < x->c; c++) {
        double dgamma_sum = 0.0, dbeta_sum = 0.0;
        for (int n = 0; n < x->n; n++) {
            size_t plane_index = (size_t)n * x->c + c;
            size_t off = plane_index * g.plane;
            double dg, db;
            group_backward(x->data + off, dy->data + off, dx ? dx->data + off : NULL, g,
                           save_mean->data[plane_index], save_invstd->data[plane_index],
                           gamma_at(gamma, c), &dg, &db);
            dgamma_sum += dg;
            dbeta_sum += db;
        }
        if (dgamma) dgamma->data[c] += (float)dgamma_sum;
        if (dbeta) dbeta->data[c] += (float)dbeta_sum;
    }
}

/* The trainer's element-wise and reducing ops on the CPU: the composition
 * y = m a + (1 - m) b, the loss terms (squared error, sum, attribute ratio,
 * WGAN-GP penalty), an element-wise product and the Adam step.
 *
 * Every reduction accumulates in double: the losses sum up to a few million
 * terms (a batch of 128x128 RGB images), where a float accumulator would lose
 * the low digits the gradient checks and the logged curves rely on. Every
 * backward accumulates (+=) into its outputs, and skips those passed NULL. */
#include "ops-cpu.h"
#include "worker-pool.h"

#include <math.h>

/* ---- composition --------------------------------------------------------
 * y[n,c,i] = m[n,i] a[n,c,i] + (1 - m[n,i]) b[n,c,i], the mask shared by all
 * channels. Backward: da = m dy, db = (1 - m) dy, dm = sum_c (a - b) dy. */

void diat_cpu_compose_forward(diat_context *ctx, const diat_tensor *m, const diat_tensor *a,
                              const diat_tensor *b, diat_tensor *y)
{
    (void)ctx;
    const size_t plane = (size_t)a->h * a->w;
    for (int n = 0; n < a->n; n++) {
        const float *mask = m->data + (size_t)n * plane;
        for (int c = 0; c < a->c; c++) {
            const size_t offset = ((size_t)n * a->c + c) * plane;
            const float *pa = a->data + offset, *pb = b->data + offset;
            float *py = y->data + offset;
            /* b + m (a - b): one multiply per pixel, same value as the definition. */
            for (size_t i = 0; i < plane; i++) py[i] = pb[i] + mask[i] * (pa[i] - pb[i]);
        }
    }
}

void diat_cpu_compose_backward(diat_context *ctx, const diat_tensor *m, const diat_tensor *a,
                               const diat_tensor *b, const diat_tensor *dy, diat_tensor *dm,
                               diat_tensor *da, diat_tensor *db)
{
    (void)ctx;
    const size_t plane = (size_t)a->h * a->w;
    for (int n = 0; n < a->n; n++) {
        const float *mask = m->data + (size_t)n * plane;
        for (int c = 0; c < a->c; c++) {
            const size_t offset = ((size_t)n * a->c + c) * plane;
            const float *g = dy->data + offset;
            if (da)
                for (size_t i = 0; i < plane; i++) da->data[offset + i] += mask[i] * g[i];
            if (db)
                for (size_t i = 0; i < plane; i++) db->data[offset + i] += (1.0f - mask[i]) * g[i];
        }
        if (!dm) continue;
        /* Channels summed per pixel (only 3 of them: float is exact enough
         * here, but double keeps it consistent with the other reductions). */
        float *dmask = dm->data + (size_t)n * plane;
        for (size_t i = 0; i < plane; i++) {
            double sum = 0.0;
            for (int c = 0; c < a->c; c++) {
                const size_t at = ((size_t)n * a->c + c) * plane + i;
                sum += ((double)a->data[at] - b->data[at]) * dy->data[at];
            }
            dmask[i] += (float)sum;
        }
    }
}

/* ---- squared error, sum, attribute ratio -------------------------------- */

void diat_cpu_squared_error_forward(diat_context *ctx, const float *a, const float *b, size_t count,
                                    float scale, float *out)
{
    (void)ctx;
    double sum = 0.0;
    for (size_t i = 0; i < count; i++) {
        double d = (double)a[i] - (b ? b[i] : 0.0);
        sum += d * d;
    }
    out[0] = (float)(scale * sum);
}

void diat_cpu_squared_error_backward(diat_context *ctx, const float *a, const float *b,
                                     size_t count, float scale, float *da, float *db)
{
    (void)ctx;
    const float twice = 2.0f * scale;
    for (size_t i = 0; i < count; i++) {
        float d = a[i] - (b ? b[i] : 0.0f);
        if (da) da[i] += twice * d;
        if (db) db[i] -= twice * d;
    }
}

void diat_cpu_sum_forward(diat_context *ctx, const float *x, size_t count, float scale, float *out)
{
    (void)ctx;
    double sum = 0.0;
    for (size_t i = 0; i < count; i++) sum += x[i];
    out[0] = (float)(scale * sum);
}

static double mean_of(const float *x, size_t count)
{
    double sum = 0.0;
    for (size_t i = 0; i < count; i++) sum += x[i];
    return count ? sum / (double)count : 0.0;
}

void diat_cpu_ratio_loss_forward(diat_context *ctx, const float *x, size_t count, float target,
                                 float scale, float *out)
{
    (void)ctx;
    out[0] = (float)(scale * fabs(mean_of(x, count) - target));
}

void diat_cpu_ratio_loss_backward(diat_context *ctx, const float *x, size_t count, float target,
                                  float scale, float *dx)
{
    (void)ctx;
    if (!dx || count == 0) return;
    double excess = mean_of(x, count) - target;
    /* |.| has no derivative at 0; take the subgradient 0 so that a mask
     * already at its target is left alone. */
    double sign = excess > 0.0 ? 1.0 : excess < 0.0 ? -1.0 : 0.0;
    if (sign == 0.0) return;
    const float step = (float)(scale * sign / (double)count);
    for (size_t i = 0; i < count; i++) dx[i] += step;
}

/* ---- WGAN-GP gradient penalty -------------------------------------------
 * out = lambda / n sum_i (r_i - 1)^2 with r_i = sqrt(|g_i|^2 + GP_NORM_EPS)
 * over all of sample i's elements. The epsilon (in both directions, so the
 * backward is the forward's exact derivative) keeps g_i / r_i finite when a
 * sample's gradient vanishes; it shifts r_i by at most 1e-6. */

#define GP_NORM_EPS 1e-12

static double sample_norm(const float *g, size_t count)
{
    double sum = 0.0;
    for (size_t j = 0; j < count; j++) sum += (double)g[j] * g[j];
    return sqrt(sum + GP_NORM_EPS);
}

void diat_cpu_gradient_penalty_forward(diat_context *ctx, const diat_tensor *g, float lambda,
                                       float *out)
{
    (void)ctx;
    const size_t per_sample = (size_t)g->c * g->h * g->w;
    double sum = 0.0;
    for (int n = 0; n < g->n; n++) {
        double excess = sample_norm(g->data + (size_t)n * per_sample, per_sample) - 1.0;
        sum += excess * excess;
    }
    out[0] = g->n ? (float)(lambda * sum / g->n) : 0.0f;
}

void diat_cpu_gradient_penalty_backward(diat_context *ctx, const diat_tensor *g, float lambda,
                                        diat_tensor *dg)
{
    (void)ctx;
    if (!dg) return;
    const size_t per_sample = (size_t)g->c * g->h * g->w;
    for (int n = 0; n < g->n; n++) {
        const float *gi = g->data + (size_t)n * per_sample;
        float *di = dg->data + (size_t)n * per_sample;
        double norm = sample_norm(gi, per_sample);
        /* d/dg (r - 1)^2 = 2 (r - 1) g / r */
        const float coeff = (float)(2.0 * lambda / g->n * (norm - 1.0) / norm);
        for (size_t j = 0; j < per_sample; j++) di[j] += coeff * gi[j];
    }
}

/* ---- element-wise product, Adam ----------------------------------------- */

void diat_cpu_mul(diat_context *ctx, const float *a, const float *b, float *y, size_t count)
{
    (void)ctx;
    for (size_t i = 0; i < count; i++) y[i] = a[i] * b[i];
}

/* PyTorch's Adam (no weight decay, no amsgrad):
 *   m = b1 m + (1 - b1) g,  v = b2 v + (1 - b2) g^2,
 *   p -= lr (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps). */
typedef struct adam_args {
    float *param, *m, *v;
    const float *grad;
    float lr, beta1, beta2, eps, inv_correction1, inv_correction2;
} adam_args;

static void adam_range(void *arg, size_t begin, size_t end)
{
    const adam_args *a = arg;
    const float beta1 = a->beta1, beta2 = a->beta2;
    for (size_t i = begin; i < end; i++) {
        const float gi = a->grad[i];
        a->m[i] = beta1 * a->m[i] + (1.0f - beta1) * gi;
        a->v[i] = beta2 * a->v[i] + (1.0f - beta2) * gi * gi;
        const float m_hat = a->m[i] * a->inv_correction1;
        const float v_hat = a->v[i] * a->inv_correction2;
        a->param[i] -= a->lr * m_hat / (sqrtf(v_hat) + a->eps);
    }
}

void diat_cpu_adam_update(diat_context *ctx, float *param, const float *grad, float *m, float *v,
                          size_t count, float lr, float beta1, float beta2, float eps, int step)
{
    /* The bias corrections in double: 1 - b2^t is ~1e-3 at t = 1, and pow in
     * float would put its rounding error into every step size. */
    const double t = step < 1 ? 1.0 : (double)step; /* step 0 would divide by 1 - 1 */
    adam_args a = {.param = param,
                   .m = m,
                   .v = v,
                   .grad = grad,
                   .lr = lr,
                   .beta1 = beta1,
                   .beta2 = beta2,
                   .eps = eps};
    a.inv_correction1 = (float)(1.0 / (1.0 - pow(beta1, t)));
    a.inv_correction2 = (float)(1.0 / (1.0 - pow(beta2, t)));
    diat_pool_for(ctx->threads, count, adam_range, &a);
}

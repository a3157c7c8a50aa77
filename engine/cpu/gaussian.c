/* The mask's smoothing and binarisation on the CPU.
 *
 * gaussian5: a separable 5x5 Gaussian per (sample, channel) plane with
 * edge-replicated borders, y = H(V(x)) with V the vertical and H the
 * horizontal 1-D pass; index i + d outside the plane reads the nearest edge
 * pixel. Its exact backward is the adjoint dx += V^T(H^T(dy)): every tap
 * scatters its share of the gradient back to the (clamped) pixel it read,
 * so edge pixels collect the shares of the taps that fell outside. The taps
 * are not assumed symmetric.
 *
 * binarize: a hard threshold whose backward is straight-through (dx += dy),
 * the estimator DIAT uses so the mask network trains through the step. */
#include "ops-cpu.h"

enum { TAPS = 5, RADIUS = 2 };

/* exp(-d^2 / 2) for d = -2..2 (sigma = 1 px), divided by their sum. */
static const float gaussian5_sigma1[TAPS] = {
    5.4488684550e-02f, 2.4420134200e-01f, 4.0261994689e-01f, 2.4420134200e-01f, 5.4488684550e-02f,
};

const float *diat_gaussian5_taps(void)
{
    return gaussian5_sigma1;
}

static int clamp_index(int i, int len)
{
    return i < 0 ? 0 : i >= len ? len - 1 : i;
}

/* tmp = V(src): each output row is a weighted sum of five whole rows. */
static void vertical_pass(const float *src, float *tmp, int h, int w, const float *taps)
{
    for (int i = 0; i < h; i++) {
        float *out = tmp + (size_t)i * w;
        for (int j = 0; j < w; j++) out[j] = 0.0f;
        for (int d = -RADIUS; d <= RADIUS; d++) {
            const float *row = src + (size_t)clamp_index(i + d, h) * w;
            const float t = taps[d + RADIUS];
            for (int j = 0; j < w; j++) out[j] += t * row[j];
        }
    }
}

/* dst = H(tmp). */
static void horizontal_pass(const float *tmp, float *dst, int h, int w, const float *taps)
{
    for (int i = 0; i < h; i++) {
        const float *row = tmp + (size_t)i * w;
        float *out = dst + (size_t)i * w;
        for (int j = 0; j < w; j++) {
            float sum = 0.0f;
            for (int d = -RADIUS; d <= RADIUS; d++)
                sum += taps[d + RADIUS] * row[clamp_index(j + d, w)];
            out[j] = sum;
        }
    }
}

/* tmp = H^T(src): output j scatters taps[d] * src[j] to clamp(j + d). */
static void horizontal_adjoint(const float *src, float *tmp, int h, int w, const float *taps)
{
    for (int i = 0; i < h; i++) {
        const float *row = src + (size_t)i * w;
        float *out = tmp + (size_t)i * w;
        for (int j = 0; j < w; j++) out[j] = 0.0f;
        for (int j = 0; j < w; j++)
            for (int d = -RADIUS; d <= RADIUS; d++)
                out[clamp_index(j + d, w)] += taps[d + RADIUS] * row[j];
    }
}

/* dst += V^T(tmp): row i scatters taps[d] * tmp[i] to row clamp(i + d). */
static void vertical_adjoint_accumulate(const float *tmp, float *dst, int h, int w,
                                        const float *taps)
{
    for (int i = 0; i < h; i++) {
        const float *row = tmp + (size_t)i * w;
        for (int d = -RADIUS; d <= RADIUS; d++) {
            float *out = dst + (size_t)clamp_index(i + d, h) * w;
            const float t = taps[d + RADIUS];
            for (int j = 0; j < w; j++) out[j] += t * row[j];
        }
    }
}

void diat_cpu_gaussian5_forward(diat_context *ctx, const diat_tensor *x, const float *taps,
                                diat_tensor *y)
{
    const int h = x->h, w = x->w;
    const size_t plane = (size_t)h * w, planes = (size_t)x->n * x->c;
    float *tmp = diat_context_scratch(ctx, plane);
    for (size_t p = 0; p < planes; p++) {
        const float *src = x->data + p * plane;
        float *dst = y->data + p * plane;
        if (tmp) {
            vertical_pass(src, tmp, h, w, taps);
            horizontal_pass(tmp, dst, h, w, taps);
            continue;
        }
        /* No scratch (out of memory): the same sum, unseparated. */
        for (int i = 0; i < h; i++)
            for (int j = 0; j < w; j++) {
                float sum = 0.0f;
                for (int a = -RADIUS; a <= RADIUS; a++)
                    for (int b = -RADIUS; b <= RADIUS; b++)
                        sum += taps[a + RADIUS] * taps[b + RADIUS] *
                               src[(size_t)clamp_index(i + a, h) * w + clamp_index(j + b, w)];
                dst[(size_t)i * w + j] = sum;
            }
    }
}

void diat_cpu_gaussian5_backward(diat_context *ctx, const diat_tensor *dy, const float *taps,
                                 diat_tensor *dx)
{
    const int h = dy->h, w = dy->w;
    const size_t plane = (size_t)h * w, planes = (size_t)dy->n * dy->c;
    float *tmp = diat_context_scratch(ctx, plane);
    for (size_t p = 0; p < planes; p++) {
        const float *src = dy->data + p * plane;
        float *dst = dx->data + p * plane;
        if (tmp) {
            horizontal_adjoint(src, tmp, h, w, taps);
            vertical_adjoint_accumulate(tmp, dst, h, w, taps);
            continue;
        }
        for (int i = 0; i < h; i++)
            for (int j = 0; j < w; j++)
                for (int a = -RADIUS; a <= RADIUS; a++)
                    for (int b = -RADIUS; b <= RADIUS; b++)
                        dst[(size_t)clamp_index(i + a, h) * w + clamp_index(j + b, w)] +=
                            taps[a + RADIUS] * taps[b + RADIUS] * src[(size_t)i * w + j];
    }
}

void diat_cpu_binarize_forward(diat_context *ctx, const float *x, float threshold, float *y,
                               size_t count)
{
    (void)ctx;
    for (size_t i = 0; i < count; i++) y[i] = x[i] > threshold ? 1.0f : 0.0f;
}

void diat_cpu_binarize_backward(diat_context *ctx, const float *dy, float *dx, size_t count)
{
    (void)ctx;
    for (size_t i = 0; i < count; i++) dx[i] += dy[i];
}

/* Element-wise activations on the CPU.
 *
 * Backward takes the forward OUTPUT y, not x, so callers may overwrite x
 * (forward runs in place) and still backpropagate. Every derivative here can
 * be written in terms of y:
 *   relu:       y > 0 ? 1 : 0
 *   leaky relu: y > 0 ? 1 : slope     (sign(y) == sign(x) needs slope > 0)
 *   sigmoid:    y (1 - y)
 *   tanh:       1 - y^2
 * One loop per kind keeps each loop branch-free so the compiler vectorises it.
 */
#include "ops-cpu.h"

#include <math.h>

void diat_cpu_activation_forward(diat_context *ctx, diat_activation kind, float slope,
                                 const float *x, float *y, size_t count)
{
    (void)ctx;
    switch (kind) {
    case DIAT_ACT_IDENTITY:
        if (y != x)
            for (size_t i = 0; i < count; i++) y[i] = x[i];
        break;
    case DIAT_ACT_RELU:
        for (size_t i = 0; i < count; i++) y[i] = x[i] > 0.0f ? x[i] : 0.0f;
        break;
    case DIAT_ACT_LEAKY_RELU:
        /* Written without a branch on the product so that GCC vectorises it
         * (it will not speculate the multiply under -ftrapping-math). */
        for (size_t i = 0; i < count; i++) {
            float v = x[i];
            y[i] = (v > 0.0f ? v : 0.0f) + slope * (v < 0.0f ? v : 0.0f);
        }
        break;
    case DIAT_ACT_SIGMOID:
        for (size_t i = 0; i < count; i++) y[i] = 1.0f / (1.0f + expf(-x[i]));
        break;
    case DIAT_ACT_TANH:
        for (size_t i = 0; i < count; i++) y[i] = tanhf(x[i]);
        break;
    }
}

void diat_cpu_activation_backward(diat_context *ctx, diat_activation kind, float slope,
                                  const float *y, const float *dy, float *dx, size_t count)
{
    (void)ctx;
    switch (kind) {
    case DIAT_ACT_IDENTITY:
        for (size_t i = 0; i < count; i++) dx[i] += dy[i];
        break;
    case DIAT_ACT_RELU:
        for (size_t i = 0; i < count; i++) dx[i] += y[i] > 0.0f ? dy[i] : 0.0f;
        break;
    case DIAT_ACT_LEAKY_RELU:
        for (size_t i = 0; i < count; i++) dx[i] += dy[i] * (y[i] > 0.0f ? 1.0f : slope);
        break;
    case DIAT_ACT_SIGMOID:
        for (size_t i = 0; i < count; i++) dx[i] += dy[i] * y[i] * (1.0f - y[i]);
        break;
    case DIAT_ACT_TANH:
        for (size_t i = 0; i < count; i++) dx[i] += dy[i] * (1.0f - y[i] * y[i]);
        break;
    }
}

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
#include "worker-pool.h"

#include <math.h>

void diat_cpu_activation_forward_serial(diat_activation kind, float slope, const float *x, float *y,
                                        size_t count)
{
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

/* dx += dy * f'(y), one loop per kind. The callers' buffers never overlap
 * (the table says dx may not alias dy), and restrict lets GCC vectorise
 * without runtime overlap checks; every load is unconditional, so the
 * selects compile to blends (it will not speculate a load under a branch). */
static void relu_backward(const float *restrict y, const float *restrict dy, float *restrict dx,
                          size_t count)
{
    for (size_t i = 0; i < count; i++) {
        float g = dy[i];
        dx[i] += y[i] > 0.0f ? g : 0.0f;
    }
}

static void leaky_relu_backward(float slope, const float *restrict y, const float *restrict dy,
                                float *restrict dx, size_t count)
{
    for (size_t i = 0; i < count; i++) dx[i] += dy[i] * (y[i] > 0.0f ? 1.0f : slope);
}

static void sigmoid_backward(const float *restrict y, const float *restrict dy, float *restrict dx,
                             size_t count)
{
    for (size_t i = 0; i < count; i++) dx[i] += dy[i] * y[i] * (1.0f - y[i]);
}

static void tanh_backward(const float *restrict y, const float *restrict dy, float *restrict dx,
                          size_t count)
{
    for (size_t i = 0; i < count; i++) dx[i] += dy[i] * (1.0f - y[i] * y[i]);
}

static void activation_backward(diat_activation kind, float slope, const float *y, const float *dy,
                                float *dx, size_t count)
{
    switch (kind) {
    case DIAT_ACT_IDENTITY:
        for (size_t i = 0; i < count; i++) dx[i] += dy[i];
        break;
    case DIAT_ACT_RELU: relu_backward(y, dy, dx, count); break;
    case DIAT_ACT_LEAKY_RELU: leaky_relu_backward(slope, y, dy, dx, count); break;
    case DIAT_ACT_SIGMOID: sigmoid_backward(y, dy, dx, count); break;
    case DIAT_ACT_TANH: tanh_backward(y, dy, dx, count); break;
    }
}

/* Both directions split their range over the context's threads. */
typedef struct activation_args {
    diat_activation kind;
    float slope;
    const float *in, *dy;
    float *out;
} activation_args;

static void forward_range(void *arg, size_t begin, size_t end)
{
    const activation_args *a = arg;
    diat_cpu_activation_forward_serial(a->kind, a->slope, a->in + begin, a->out + begin,
                                       end - begin);
}

void diat_cpu_activation_forward(diat_context *ctx, diat_activation kind, float slope,
                                 const float *x, float *y, size_t count)
{
    activation_args a = {kind, slope, x, NULL, y};
    diat_pool_for(ctx->threads, count, forward_range, &a);
}

static void backward_range(void *arg, size_t begin, size_t end)
{
    const activation_args *a = arg;
    activation_backward(a->kind, a->slope, a->in + begin, a->dy + begin, a->out + begin,
                        end - begin);
}

void diat_cpu_activation_backward(diat_context *ctx, diat_activation kind, float slope,
                                  const float *y, const float *dy, float *dx, size_t count)
{
    activation_args a = {kind, slope, y, dy, dx};
    diat_pool_for(ctx->threads, count, backward_range, &a);
}

/* Fully connected layer on the CPU: x [n, in] (any c*h*w flattened),
 * weight [out, in] as PyTorch stores it, y [n, out] = x * W^T + b.
 * All three products are single GEMMs over the whole batch. */
#include "ops-cpu.h"

/* Features per sample: the product of the non-batch dimensions. */
static int features_of(const diat_tensor *t)
{
    return t->c * t->h * t->w;
}

void diat_cpu_linear_forward(diat_context *ctx, const diat_tensor *x, const diat_tensor *weight,
                             const diat_tensor *bias, diat_tensor *y)
{
    (void)ctx;
    const int batch = x->n, in = features_of(x), out = weight->n;
    float beta = 0.0f;
    if (bias) {
        /* Seed every row with the bias and let the GEMM accumulate onto it. */
        for (int i = 0; i < batch; i++)
            for (int o = 0; o < out; o++) y->data[(size_t)i * out + o] = bias->data[o];
        beta = 1.0f;
    }
    diat_sgemm(0, 1, batch, out, in, 1.0f, x->data, in, weight->data, in, beta, y->data, out);
}

void diat_cpu_linear_backward(diat_context *ctx, const diat_tensor *x, const diat_tensor *weight,
                              const diat_tensor *dy, diat_tensor *dx, diat_tensor *dweight,
                              diat_tensor *dbias)
{
    (void)ctx;
    const int batch = x->n, in = features_of(x), out = weight->n;
    /* dx [n, in] += dy [n, out] * W [out, in] */
    if (dx)
        diat_sgemm(0, 0, batch, in, out, 1.0f, dy->data, out, weight->data, in, 1.0f, dx->data, in);
    /* dW [out, in] += dy^T [out, n] * x [n, in] */
    if (dweight)
        diat_sgemm(1, 0, out, in, batch, 1.0f, dy->data, out, x->data, in, 1.0f, dweight->data, in);
    if (dbias) {
        for (int o = 0; o < out; o++) {
            float sum = 0.0f;
            for (int i = 0; i < batch; i++) sum += dy->data[(size_t)i * out + o];
            dbias->data[o] += sum;
        }
    }
}

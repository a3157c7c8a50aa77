/* The depthwise convolution op (groups = channels), checked like the other
 * ops in test_ops.c:
 *  - forward, with each fused activation, against plain loops in double;
 *  - backward (dx, dweight, dbias) against central finite differences of
 *    that double reference for L = sum(r * y), r random. Gradient buffers
 *    start random and backward runs twice: the second run must add the same
 *    amount again (the accumulate convention);
 *  - a multi-threaded context gives bit-identical results (each plane is
 *    computed by one thread in the same order whatever the split).
 * Shapes cover the detector's and landmark network's layers (3x3, padding 1,
 * strides 1 and 2, rows wider than a vector and with a remainder) and the
 * edges: no padding, wide padding, 5x5, 1x1, kernel larger than the plane. */
#include "diat-train.h"
#include "testutil.h"

#include <string.h>

static diat_context *ctx;
static const diat_backend *be;
static unsigned long long rng = 0xd3b7ULL;

static const double FD_EPS = 1e-4;
static const double FORWARD_TOL = 1e-5; /* relative to the largest reference value */
static const double GRAD_TOL = 1e-4;    /* relative to the largest gradient */
static const float LEAKY_SLOPE = 0.1f;  /* face-api's */

typedef struct dw_case {
    int n, c, h, w, k, stride, pad, bias;
} dw_case;

static int out_size(int in, const dw_case *c)
{
    return (in + 2 * c->pad - c->k) / c->stride + 1;
}

static float *random_floats(size_t count)
{
    float *p = malloc(count * sizeof *p);
    for (size_t i = 0; i < count; i++) p[i] = test_rand(&rng);
    return p;
}

static diat_tensor tensor_of(int n, int c, int h, int w, const float *host)
{
    diat_tensor t;
    diat_error err;
    if (diat_tensor_alloc(ctx, &t, n, c, h, w, &err) != DIAT_OK) {
        fprintf(stderr, "tensor alloc failed: %s\n", err.message);
        exit(1);
    }
    if (host) diat_tensor_upload(ctx, &t, host);
    return t;
}

static float *download(const diat_tensor *t)
{
    float *p = malloc(diat_tensor_count(t) * sizeof *p);
    diat_tensor_download(ctx, t, p);
    return p;
}

/* The problem in double: inputs x, weight, bias (bias ignored unless the
 * case has one), output pre-activation. */
typedef struct reference {
    const dw_case *c;
    double *x, *weight, *bias;
    size_t x_len, weight_len;
    int out_h, out_w;
    size_t out_len;
} reference;

static void reference_forward(const reference *ref, double *y)
{
    const dw_case *c = ref->c;
    for (int n = 0; n < c->n; n++)
        for (int ch = 0; ch < c->c; ch++)
            for (int i = 0; i < ref->out_h; i++)
                for (int j = 0; j < ref->out_w; j++) {
                    double sum = c->bias ? ref->bias[ch] : 0.0;
                    for (int ki = 0; ki < c->k; ki++)
                        for (int kj = 0; kj < c->k; kj++) {
                            int ih = i * c->stride - c->pad + ki;
                            int iw = j * c->stride - c->pad + kj;
                            if (ih < 0 || ih >= c->h || iw < 0 || iw >= c->w) continue;
                            sum += ref->weight[(ch * c->k + ki) * c->k + kj] *
                                   ref->x[((size_t)(n * c->c + ch) * c->h + ih) * c->w + iw];
                        }
                    y[((size_t)(n * c->c + ch) * ref->out_h + i) * ref->out_w + j] = sum;
                }
}

static double reference_loss(const reference *ref, const double *r, double *scratch)
{
    reference_forward(ref, scratch);
    double loss = 0.0;
    for (size_t i = 0; i < ref->out_len; i++) loss += r[i] * scratch[i];
    return loss;
}

static double activate(diat_activation act, double v)
{
    switch (act) {
    case DIAT_ACT_RELU: return v > 0.0 ? v : 0.0;
    case DIAT_ACT_LEAKY_RELU: return v > 0.0 ? v : LEAKY_SLOPE * v;
    case DIAT_ACT_SIGMOID: return 1.0 / (1.0 + exp(-v));
    case DIAT_ACT_TANH: return tanh(v);
    case DIAT_ACT_IDENTITY: break;
    }
    return v;
}

/* Largest |got - want| relative to max(|want|, 1e-3). */
static double relative_error(const float *got, const double *want, size_t count)
{
    double scale = 1e-3, worst = 0.0;
    for (size_t i = 0; i < count; i++)
        if (fabs(want[i]) > scale) scale = fabs(want[i]);
    for (size_t i = 0; i < count; i++) {
        double d = fabs((double)got[i] - want[i]);
        if (!(d <= worst)) worst = d; /* NaN counts as the worst */
    }
    return worst / scale;
}

/* Central differences of L with respect to every element of `values`
 * (an input of `ref`, perturbed in place and restored). */
static double *finite_differences(const reference *ref, double *values, size_t len, const double *r)
{
    double *grad = malloc(len * sizeof *grad);
    double *scratch = malloc(ref->out_len * sizeof *scratch);
    for (size_t i = 0; i < len; i++) {
        double saved = values[i];
        values[i] = saved + FD_EPS;
        double plus = reference_loss(ref, r, scratch);
        values[i] = saved - FD_EPS;
        double minus = reference_loss(ref, r, scratch);
        values[i] = saved;
        grad[i] = (plus - minus) / (2.0 * FD_EPS);
    }
    free(scratch);
    return grad;
}

static void check_case(const dw_case *c)
{
    char label[96];
    snprintf(label, sizeof label, "depthwise n%d c%d %dx%d k%d s%d p%d%s", c->n, c->c, c->h, c->w,
             c->k, c->stride, c->pad, c->bias ? " bias" : "");
    reference ref = {.c = c, .out_h = out_size(c->h, c), .out_w = out_size(c->w, c)};
    ref.x_len = (size_t)c->n * c->c * c->h * c->w;
    ref.weight_len = (size_t)c->c * c->k * c->k;
    ref.out_len = (size_t)c->n * c->c * ref.out_h * ref.out_w;

    float *x_host = random_floats(ref.x_len), *w_host = random_floats(ref.weight_len);
    float *b_host = random_floats((size_t)c->c);
    ref.x = malloc(ref.x_len * sizeof *ref.x);
    ref.weight = malloc(ref.weight_len * sizeof *ref.weight);
    ref.bias = malloc((size_t)c->c * sizeof *ref.bias);
    for (size_t i = 0; i < ref.x_len; i++) ref.x[i] = x_host[i];
    for (size_t i = 0; i < ref.weight_len; i++) ref.weight[i] = w_host[i];
    for (int i = 0; i < c->c; i++) ref.bias[i] = b_host[i];

    diat_tensor x = tensor_of(c->n, c->c, c->h, c->w, x_host);
    diat_tensor w = tensor_of(c->c, 1, c->k, c->k, w_host);
    diat_tensor b = tensor_of(c->c, 1, 1, 1, b_host);
    diat_tensor y = tensor_of(c->n, c->c, ref.out_h, ref.out_w, NULL);
    diat_conv_geometry g = {c->k, c->stride, c->pad};

    /* Forward, each activation fused. */
    double *want = malloc(ref.out_len * sizeof *want),
           *activated = malloc(ref.out_len * sizeof *activated);
    reference_forward(&ref, want);
    static const char *act_names[] = {"identity", "relu", "leaky relu", "sigmoid", "tanh"};
    for (int act = DIAT_ACT_IDENTITY; act <= DIAT_ACT_TANH; act++) {
        for (size_t i = 0; i < ref.out_len; i++) activated[i] = activate(act, want[i]);
        be->depthwise_conv2d_forward(ctx, &x, &w, c->bias ? &b : NULL, g, act, LEAKY_SLOPE, &y);
        float *got = download(&y);
        double error = relative_error(got, activated, ref.out_len);
        CHECK_MSG(error <= FORWARD_TOL, "%s forward %s: relative error %.3g", label, act_names[act],
                  error);
        free(got);
    }

    /* Backward: dy = r, against finite differences, twice (accumulation). */
    float *r_host = random_floats(ref.out_len);
    double *r = malloc(ref.out_len * sizeof *r);
    for (size_t i = 0; i < ref.out_len; i++) r[i] = r_host[i];
    diat_tensor dy = tensor_of(c->n, c->c, ref.out_h, ref.out_w, r_host);
    float *dx0 = random_floats(ref.x_len), *dw0 = random_floats(ref.weight_len);
    float *db0 = random_floats((size_t)c->c);
    diat_tensor dx = tensor_of(c->n, c->c, c->h, c->w, dx0);
    diat_tensor dw = tensor_of(c->c, 1, c->k, c->k, dw0);
    diat_tensor db = tensor_of(c->c, 1, 1, 1, db0);

    double *want_dx = finite_differences(&ref, ref.x, ref.x_len, r);
    double *want_dw = finite_differences(&ref, ref.weight, ref.weight_len, r);
    double *want_db = finite_differences(&ref, ref.bias, (size_t)c->c, r);
    struct {
        const char *name;
        diat_tensor *grad;
        const float *start;
        const double *want;
        size_t len;
    } grads[3] = {{"dx", &dx, dx0, want_dx, ref.x_len},
                  {"dweight", &dw, dw0, want_dw, ref.weight_len},
                  {"dbias", &db, db0, want_db, (size_t)c->c}};
    const int grad_count = c->bias ? 3 : 2;
    for (int pass = 1; pass <= 2; pass++) {
        be->depthwise_conv2d_backward(ctx, &x, &w, &dy, g, &dx, &dw, c->bias ? &db : NULL);
        for (int k = 0; k < grad_count; k++) {
            float *got = download(grads[k].grad);
            double *expected = malloc(grads[k].len * sizeof *expected);
            for (size_t i = 0; i < grads[k].len; i++)
                expected[i] = grads[k].start[i] + pass * grads[k].want[i];
            double error = relative_error(got, expected, grads[k].len);
            CHECK_MSG(error <= GRAD_TOL, "%s %s after %d backward(s): relative error %.3g", label,
                      grads[k].name, pass, error);
            free(got), free(expected);
        }
    }

    /* Each gradient alone (the others NULL) gives the same as all together. */
    diat_tensor_upload(ctx, &dx, dx0);
    diat_tensor_upload(ctx, &dw, dw0);
    be->depthwise_conv2d_backward(ctx, &x, &w, &dy, g, &dx, NULL, NULL);
    be->depthwise_conv2d_backward(ctx, &x, &w, &dy, g, NULL, &dw, NULL);
    for (int k = 0; k < 2; k++) {
        float *got = download(grads[k].grad);
        double *expected = malloc(grads[k].len * sizeof *expected);
        for (size_t i = 0; i < grads[k].len; i++)
            expected[i] = grads[k].start[i] + grads[k].want[i];
        double error = relative_error(got, expected, grads[k].len);
        CHECK_MSG(error <= GRAD_TOL, "%s %s alone: relative error %.3g", label, grads[k].name,
                  error);
        free(got), free(expected);
    }

    diat_tensor *ts[] = {&x, &w, &b, &y, &dy, &dx, &dw, &db};
    for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++) diat_tensor_release(ctx, ts[i]);
    free(x_host), free(w_host), free(b_host), free(r_host), free(r);
    free(dx0), free(dw0), free(db0), free(want), free(activated);
    free(want_dx), free(want_dw), free(want_db);
    free(ref.x), free(ref.weight), free(ref.bias);
}

static void test_depthwise_shapes(void)
{
    static const dw_case cases[] = {
        {2, 3, 9, 11, 3, 1, 1, 1},  /* the detector's 3x3 same, batch 2 */
        {1, 4, 7, 45, 3, 1, 1, 1},  /* rows of 45: two 16-lane blocks and a remainder */
        {2, 3, 9, 10, 3, 2, 1, 1},  /* stride 2 (the landmark net's reductions) */
        {1, 2, 8, 7, 3, 2, 0, 0},   /* stride 2, no padding, no bias */
        {1, 3, 6, 9, 3, 1, 0, 1},   /* valid */
        {2, 2, 9, 8, 5, 1, 2, 1},   /* 5x5 */
        {1, 3, 5, 6, 1, 1, 0, 1},   /* 1x1: a per-channel scale */
        {1, 2, 4, 5, 3, 1, 2, 1},   /* padding wider than needed */
        {1, 2, 2, 3, 4, 1, 1, 0},   /* kernel larger than the plane */
        {1, 2, 13, 13, 3, 3, 1, 1}, /* stride 3 */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) check_case(&cases[i]);
}

/* The detector's widest depthwise layer (16 x 207 x 207), forward and
 * backward, on 1 and 3 threads: large enough that the op splits it. */
static void test_depthwise_threads(void)
{
    diat_context *three;
    diat_error err;
    if (diat_context_new(DIAT_BACKEND_CPU, 3, &three, &err) != DIAT_OK) {
        CHECK_MSG(0, "context: %s", err.message);
        return;
    }
    const int c = 16, side = 207;
    const size_t plane_count = (size_t)c * side * side;
    float *x_host = random_floats(plane_count), *w_host = random_floats((size_t)c * 9);
    float *b_host = random_floats((size_t)c), *dy_host = random_floats(plane_count);
    diat_tensor x = tensor_of(1, c, side, side, x_host), w = tensor_of(c, 1, 3, 3, w_host);
    diat_tensor b = tensor_of(c, 1, 1, 1, b_host), dy = tensor_of(1, c, side, side, dy_host);
    diat_tensor y[2], dx[2], dw[2], db[2];
    diat_context *contexts[2] = {ctx, three};
    diat_conv_geometry g = {3, 1, 1};
    for (int t = 0; t < 2; t++) {
        float *zeros = calloc(plane_count, sizeof *zeros);
        y[t] = tensor_of(1, c, side, side, zeros);
        dx[t] = tensor_of(1, c, side, side, zeros);
        dw[t] = tensor_of(c, 1, 3, 3, zeros);
        db[t] = tensor_of(c, 1, 1, 1, zeros);
        free(zeros);
        be->depthwise_conv2d_forward(contexts[t], &x, &w, &b, g, DIAT_ACT_LEAKY_RELU, LEAKY_SLOPE,
                                     &y[t]);
        be->depthwise_conv2d_backward(contexts[t], &x, &w, &dy, g, &dx[t], &dw[t], &db[t]);
    }
    struct {
        const char *name;
        diat_tensor *pair;
    } outputs[] = {{"y", y}, {"dx", dx}, {"dweight", dw}, {"dbias", db}};
    for (size_t i = 0; i < sizeof outputs / sizeof outputs[0]; i++) {
        float *one = download(&outputs[i].pair[0]), *many = download(&outputs[i].pair[1]);
        CHECK_MSG(memcmp(one, many, diat_tensor_count(&outputs[i].pair[0]) * sizeof *one) == 0,
                  "%s: 1 and 3 threads differ", outputs[i].name);
        free(one), free(many);
        diat_tensor_release(ctx, &outputs[i].pair[0]);
        diat_tensor_release(ctx, &outputs[i].pair[1]);
    }
    diat_tensor *ts[] = {&x, &w, &b, &dy};
    for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++) diat_tensor_release(ctx, ts[i]);
    free(x_host), free(w_host), free(b_host), free(dy_host);
    diat_context_free(three);
}

int main(void)
{
    diat_error err;
    if (diat_context_new(DIAT_BACKEND_CPU, 1, &ctx, &err) != DIAT_OK) {
        fprintf(stderr, "context: %s\n", err.message);
        return 1;
    }
    be = diat_context_backend(ctx);
    RUN_TEST(test_depthwise_shapes);
    RUN_TEST(test_depthwise_threads);
    diat_context_free(ctx);
    return TEST_SUMMARY();
}

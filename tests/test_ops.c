/* Every op of a backend, checked two ways:
 *  - forward against a naive reference written here (plain loops, double);
 *  - backward against central finite differences of that double reference
 *    for the scalar loss L = sum(r * y), r random: since the forward already
 *    matches the reference, the reference's exact gradient is the op's.
 * Gradient buffers start with random contents and backward runs twice, so
 * each check also proves the accumulate convention (g0 + grad, g0 + 2 grad).
 *
 * The backend is the CPU unless DIAT_TEST_BACKEND names another ("cuda");
 * tensors are only touched through upload/download, so the same file tests
 * any backend. Exit code 77 (meson's "skipped") if that backend is absent. */
#include "diat-train.h"
#include "testutil.h"

#include <stdint.h>
#include <string.h>

static diat_context *ctx;
static const diat_backend *be;
static unsigned long long rng = 0x5eedULL;
static int quiet; /* set while a test expects a mismatch */

enum { MAX_INPUTS = 6, FD_MAX_SAMPLES = 40 };
static const double FD_EPS = 1e-5;
static const double FORWARD_TOL = 1e-4; /* relative to the largest reference value */
static const double GRAD_TOL = 1e-3;    /* relative to the largest gradient */

/* ---- host and device buffers -------------------------------------------- */

static float *host_random(size_t count, float lo, float hi)
{
    float *p = malloc(count * sizeof *p);
    for (size_t i = 0; i < count; i++) p[i] = lo + (hi - lo) * 0.5f * (test_rand(&rng) + 1.0f);
    return p;
}

/* Random values in [-hi, -lo] u [lo, hi]: away from the kinks at 0. */
static float *host_random_away_from_zero(size_t count, float lo, float hi)
{
    float *p = host_random(count, lo, hi);
    for (size_t i = 0; i < count; i++)
        if (test_rand(&rng) < 0.0f) p[i] = -p[i];
    return p;
}

static double *to_double(const float *f, size_t count)
{
    double *d = malloc(count * sizeof *d);
    for (size_t i = 0; i < count; i++) d[i] = f[i];
    return d;
}

/* A device tensor holding `host` (or random values in [-1, 1] if NULL). */
static diat_tensor device_tensor(int n, int c, int h, int w, const float *host)
{
    diat_tensor t;
    diat_error err;
    if (diat_tensor_alloc(ctx, &t, n, c, h, w, &err) != DIAT_OK) {
        fprintf(stderr, "tensor alloc failed: %s\n", err.message);
        exit(1);
    }
    float *fill = host ? NULL : host_random(diat_tensor_count(&t), -1.0f, 1.0f);
    diat_tensor_upload(ctx, &t, host ? host : fill);
    free(fill);
    return t;
}

static float *download(const diat_tensor *t)
{
    float *p = malloc(diat_tensor_count(t) * sizeof *p);
    diat_tensor_download(ctx, t, p);
    return p;
}

static double *download_double(const diat_tensor *t)
{
    float *f = download(t);
    double *d = to_double(f, diat_tensor_count(t));
    free(f);
    return d;
}

/* ---- comparison ----------------------------------------------------------- */

/* |got - want| <= tol * max|want| everywhere (NAN in want: not checked);
 * a NaN in got always fails. Names the worst element when it fails. */
static int matches(const float *got, const double *want, size_t count, double tol, const char *what)
{
    double scale = 1e-3, worst = 0.0;
    size_t at = 0;
    int saw_nan = 0;
    for (size_t i = 0; i < count; i++)
        if (!isnan(want[i]) && fabs(want[i]) > scale) scale = fabs(want[i]);
    for (size_t i = 0; i < count; i++) {
        if (isnan(want[i])) continue;
        double d = fabs((double)got[i] - want[i]);
        if (isnan(d) && !saw_nan) saw_nan = 1, worst = d, at = i;
        if (!saw_nan && d > worst) worst = d, at = i;
    }
    int ok = !saw_nan && worst <= tol * scale;
    if (!ok && !quiet)
        fprintf(stderr, "  %s: element %zu is %.8g, expected %.8g (error %.3g, scale %.3g)\n", what,
                at, (double)got[at], want[at], worst, scale);
    return ok;
}

/* ---- reference problems and finite differences --------------------------- */

typedef void (*reference_fn)(const void *op, double *const *in, double *out);

typedef struct reference {
    reference_fn forward;
    const void *op;
    double *in[MAX_INPUTS];
    size_t in_len[MAX_INPUTS];
    size_t out_len;
} reference;

static double *reference_output(const reference *ref)
{
    double *out = calloc(ref->out_len, sizeof *out);
    ref->forward(ref->op, ref->in, out);
    return out;
}

static double reference_loss(const reference *ref, const double *r, double *out)
{
    ref->forward(ref->op, ref->in, out);
    double loss = 0.0;
    for (size_t i = 0; i < ref->out_len; i++) loss += r[i] * out[i];
    return loss;
}

/* dL/d in[which] by central differences: every element, or a random sample
 * of FD_MAX_SAMPLES for big inputs (the rest NAN, i.e. not checked). */
static double *fd_gradient(const reference *ref, int which, const double *r)
{
    size_t len = ref->in_len[which];
    double *grad = malloc(len * sizeof *grad), *out = malloc(ref->out_len * sizeof *out);
    int sampled = len > FD_MAX_SAMPLES;
    for (size_t i = 0; i < len; i++) grad[i] = sampled ? NAN : 0.0;
    for (size_t s = 0; s < (sampled ? (size_t)FD_MAX_SAMPLES : len); s++) {
        size_t i = sampled ? (size_t)((test_rand(&rng) + 1.0f) * 0.5f * (float)len) % len : s;
        double *v = &ref->in[which][i], saved = *v;
        *v = saved + FD_EPS;
        double plus = reference_loss(ref, r, out);
        *v = saved - FD_EPS;
        double minus = reference_loss(ref, r, out);
        *v = saved;
        grad[i] = (plus - minus) / (2.0 * FD_EPS);
    }
    free(out);
    return grad;
}

static void check_forward(const char *label, const reference *ref, const diat_tensor *y)
{
    double *want = reference_output(ref);
    float *got = download(y);
    CHECK_MSG(matches(got, want, ref->out_len, FORWARD_TOL, label), "%s forward", label);
    free(want);
    free(got);
}

/* One gradient the backward accumulates into, and the input it belongs to. */
typedef struct grad_output {
    const char *name;
    diat_tensor *grad;
    int input;
} grad_output;

typedef void (*backward_fn)(void *state);

/* Seeds each gradient with random g0, runs backward (dy = r, held by the
 * state) twice and checks g1 - g0 against finite differences and
 * g2 - g0 against 2 (g1 - g0). Returns whether all gradients matched. */
static int check_gradients(const char *label, const reference *ref, const double *r,
                           grad_output *outs, int count, backward_fn run, void *state)
{
    float *g0[MAX_INPUTS], *delta[MAX_INPUTS];
    int all_ok = 1;
    for (int k = 0; k < count; k++) {
        g0[k] = host_random(diat_tensor_count(outs[k].grad), -1.0f, 1.0f);
        diat_tensor_upload(ctx, outs[k].grad, g0[k]);
    }
    run(state);
    for (int k = 0; k < count; k++) {
        size_t len = diat_tensor_count(outs[k].grad);
        delta[k] = download(outs[k].grad);
        for (size_t i = 0; i < len; i++) delta[k][i] -= g0[k][i];
        double *want = fd_gradient(ref, outs[k].input, r);
        int ok = matches(delta[k], want, len, GRAD_TOL, outs[k].name);
        if (!quiet) CHECK_MSG(ok, "%s: %s vs finite differences", label, outs[k].name);
        all_ok &= ok;
        free(want);
    }
    run(state);
    for (int k = 0; k < count; k++) {
        size_t len = diat_tensor_count(outs[k].grad);
        float *twice = download(outs[k].grad);
        double *want = malloc(len * sizeof *want);
        for (size_t i = 0; i < len; i++) {
            twice[i] -= g0[k][i];
            want[i] = 2.0 * delta[k][i];
        }
        int ok = matches(twice, want, len, 1e-4, outs[k].name);
        if (!quiet) CHECK_MSG(ok, "%s: %s does not accumulate", label, outs[k].name);
        all_ok &= ok;
        free(twice);
        free(want);
        free(g0[k]);
        free(delta[k]);
    }
    return all_ok;
}

static void free_reference_inputs(reference *ref)
{
    for (int i = 0; i < MAX_INPUTS; i++) free(ref->in[i]);
}

/* ---- memory and element-wise helpers ------------------------------------- */

static void test_memory_ops(void)
{
    const size_t count = 1003;
    float *p = be->alloc(ctx, count);
    CHECK(p != NULL);
    if (strcmp(be->name, "cpu") == 0) CHECK((uintptr_t)p % 64 == 0);
    float *host = host_random(count, -1.0f, 1.0f), *x = host_random(count, -1.0f, 1.0f);
    float *back = malloc(count * sizeof *back);
    be->fill(ctx, p, 2.5f, count);
    be->download(ctx, back, p, count);
    int filled = 1;
    for (size_t i = 0; i < count; i++) filled &= back[i] == 2.5f;
    CHECK(filled);

    float *dx = be->alloc(ctx, count), *sum = be->alloc(ctx, count);
    be->upload(ctx, p, host, count);
    be->upload(ctx, dx, x, count);
    be->axpy(ctx, -0.5f, dx, p, count); /* p = host - 0.5 x */
    be->add(ctx, p, dx, sum, count);    /* sum = host + 0.5 x */
    be->download(ctx, back, sum, count);
    double *want = malloc(count * sizeof *want);
    for (size_t i = 0; i < count; i++) want[i] = (double)host[i] + 0.5 * x[i];
    CHECK(matches(back, want, count, 1e-6, "axpy + add"));

    be->release(ctx, p);
    be->release(ctx, dx);
    be->release(ctx, sum);
    float *empty = be->alloc(ctx, 0); /* zero-size requests still succeed */
    CHECK(empty != NULL);
    be->release(ctx, empty);
    free(host), free(x), free(back), free(want);
}

/* ---- convolution -------------------------------------------------------- */

typedef struct conv_case {
    int n, in_c, h, w, out_c, k, stride, pad, bias;
} conv_case;

static int conv_out(int len, const conv_case *c)
{
    return (len + 2 * c->pad - c->k) / c->stride + 1;
}

static void conv_reference(const void *op, double *const *in, double *out)
{
    const conv_case *c = op;
    const double *x = in[0], *w = in[1], *b = c->bias ? in[2] : NULL;
    int oh = conv_out(c->h, c), ow = conv_out(c->w, c);
    for (int n = 0; n < c->n; n++)
        for (int o = 0; o < c->out_c; o++)
            for (int i = 0; i < oh; i++)
                for (int j = 0; j < ow; j++) {
                    double sum = b ? b[o] : 0.0;
                    for (int ci = 0; ci < c->in_c; ci++)
                        for (int ki = 0; ki < c->k; ki++)
                            for (int kj = 0; kj < c->k; kj++) {
                                int ih = i * c->stride - c->pad + ki;
                                int iw = j * c->stride - c->pad + kj;
                                if (ih < 0 || ih >= c->h || iw < 0 || iw >= c->w) continue;
                                sum += w[((o * c->in_c + ci) * c->k + ki) * c->k + kj] *
                                       x[((n * c->in_c + ci) * c->h + ih) * c->w + iw];
                            }
                    out[((n * c->out_c + o) * oh + i) * ow + j] = sum;
                }
}

typedef struct conv_state {
    diat_conv_geometry g;
    diat_tensor x, w, b, dy, dx, dw, db;
    int bias, want_dx, want_dw;
} conv_state;

static void conv_backward(void *p)
{
    conv_state *s = p;
    be->conv2d_backward(ctx, &s->x, &s->w, &s->dy, s->g, s->want_dx ? &s->dx : NULL,
                        s->want_dw ? &s->dw : NULL, s->bias && s->want_dw ? &s->db : NULL);
}

/* Returns whether the gradients matched (the self-test expects a failure). */
static int check_conv(const conv_case *c, int corrupt_weight_grad)
{
    char label[96];
    snprintf(label, sizeof label, "conv n%d %dx%dx%d->%d k%d s%d p%d%s", c->n, c->in_c, c->h, c->w,
             c->out_c, c->k, c->stride, c->pad, c->bias ? " bias" : "");
    int oh = conv_out(c->h, c), ow = conv_out(c->w, c);
    conv_state s = {.g = {c->k, c->stride, c->pad}, .bias = c->bias, .want_dx = 1, .want_dw = 1};
    s.x = device_tensor(c->n, c->in_c, c->h, c->w, NULL);
    s.w = device_tensor(c->out_c, c->in_c, c->k, c->k, NULL);
    s.b = device_tensor(c->out_c, 1, 1, 1, NULL);
    s.dx = device_tensor(c->n, c->in_c, c->h, c->w, NULL);
    s.dw = device_tensor(c->out_c, c->in_c, c->k, c->k, NULL);
    s.db = device_tensor(c->out_c, 1, 1, 1, NULL);
    diat_tensor y = device_tensor(c->n, c->out_c, oh, ow, NULL);

    reference ref = {.forward = conv_reference, .op = c, .out_len = diat_tensor_count(&y)};
    ref.in[0] = download_double(&s.x), ref.in_len[0] = diat_tensor_count(&s.x);
    ref.in[1] = download_double(&s.w), ref.in_len[1] = diat_tensor_count(&s.w);
    ref.in[2] = download_double(&s.b), ref.in_len[2] = (size_t)c->out_c;
    if (corrupt_weight_grad) ref.in[1][0] += 0.05; /* the reference is now a different conv */

    be->conv2d_forward(ctx, &s.x, &s.w, c->bias ? &s.b : NULL, s.g, DIAT_ACT_IDENTITY, 0.0f, &y);
    if (!corrupt_weight_grad) check_forward(label, &ref, &y);

    float *r = host_random(ref.out_len, -1.0f, 1.0f);
    double *rd = to_double(r, ref.out_len);
    s.dy = device_tensor(c->n, c->out_c, oh, ow, r);
    grad_output all[3] = {{"dx", &s.dx, 0}, {"dweight", &s.dw, 1}, {"dbias", &s.db, 2}};
    int ok = check_gradients(label, &ref, rd, all, c->bias ? 3 : 2, conv_backward, &s);

    if (!corrupt_weight_grad) {
        /* Any gradient output may be NULL: each alone gives the same result. */
        s.want_dw = 0;
        check_gradients(label, &ref, rd, all, 1, conv_backward, &s);
        s.want_dw = 1, s.want_dx = 0;
        check_gradients(label, &ref, rd, all + 1, c->bias ? 2 : 1, conv_backward, &s);
    }
    diat_tensor *ts[] = {&s.x, &s.w, &s.b, &s.dy, &s.dx, &s.dw, &s.db, &y};
    for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++) diat_tensor_release(ctx, ts[i]);
    free_reference_inputs(&ref);
    free(r), free(rd);
    return ok;
}

static void test_conv2d(void)
{
    static const conv_case cases[] = {
        {2, 3, 7, 9, 4, 3, 1, 1, 1},    /* 3x3 same, non-square, batch 2 */
        {1, 5, 6, 8, 3, 1, 1, 0, 1},    /* pointwise: direct GEMM path */
        {2, 4, 5, 5, 6, 1, 2, 0, 0},    /* 1x1 stride 2: im2col path */
        {2, 3, 9, 8, 4, 4, 2, 1, 1},    /* the critic's 4x4 stride 2 */
        {1, 2, 8, 7, 3, 3, 2, 0, 0},    /* stride 2, no padding */
        {1, 3, 4, 5, 2, 3, 1, 2, 1},    /* padding wider than needed */
        {2, 2, 3, 4, 2, 4, 1, 1, 1},    /* kernel larger than an axis */
        {1, 64, 96, 96, 2, 3, 1, 1, 1}, /* several bands in forward and backward */
        /* Shapes aimed at the AVX-512 forward (conv-avx512.c) when the CPU
         * has it: batch folded into 32-column panels (4x4, 8x8 outputs),
         * channel counts that end in partial 12-row tiles, direct tiles. */
        {3, 4, 8, 8, 12, 3, 2, 1, 1},   /* 4x4 outputs, batch 3: panels cross images */
        {3, 5, 8, 8, 24, 3, 1, 1, 1},   /* 8x8 outputs, batch 3 */
        {1, 2, 4, 4, 768, 3, 1, 1, 1},  /* 16 columns, 768 channels (T.up1) */
        {2, 4, 32, 32, 1, 3, 1, 1, 1},  /* one output channel, direct */
        {2, 5, 32, 32, 24, 3, 1, 1, 0}, /* direct tiles, 2 images */
        {1, 3, 66, 66, 4, 4, 2, 1, 1},  /* k4 s2, 33x33: 1089 columns */
        /* Batch 16 at small outputs: the backward folds the batch into one
         * GEMM (conv.c), as in the critic's last layers and phi's. */
        {16, 8, 8, 8, 12, 4, 2, 1, 1},  /* the critic's k4 s2, 4x4 outputs */
        {16, 6, 16, 16, 8, 4, 2, 1, 0}, /* k4 s2, 8x8 outputs */
        {16, 3, 8, 8, 5, 3, 1, 1, 1},   /* 3 input channels, 8x8 */
        {16, 5, 8, 8, 3, 3, 1, 1, 1},   /* 3 output channels, 8x8 */
        {16, 4, 4, 4, 6, 3, 1, 1, 1},   /* 4x4 stride 1 */
        {6, 3, 64, 64, 4, 4, 2, 1, 1},  /* 32x32 outputs: chunks of 4 and 2 images */
        /* Stride-2 dx as four stride-1 sub-convolutions (conv-backward-avx512.c)
         * with 256 input channels, and a last group of images left partial;
         * with 128, the least that takes packed phases (D.conv4). */
        {3, 256, 8, 8, 4, 4, 2, 1, 1},
        {2, 128, 16, 16, 6, 4, 2, 1, 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) check_conv(&cases[i], 0);
}

/* The backward of a batch equals the backward of its images one at a time
 * (batch 1 takes the per-image path): every element of dx and dweight,
 * where check_conv samples big inputs. Both accumulate into the same seeds,
 * so chunk boundaries and the gathered dy order are covered exactly. */
static void test_conv2d_backward_batch(void)
{
    static const conv_case cases[] = {
        {16, 16, 8, 8, 24, 4, 2, 1, 1},  /* 4x4 outputs, whole batch in one chunk */
        {16, 3, 16, 16, 32, 4, 2, 1, 1}, /* 3 input channels, 8x8 outputs */
        {16, 12, 16, 16, 3, 3, 1, 1, 1}, /* 3 output channels, 16x16: chunks of 9, 7 */
        {16, 48, 16, 16, 8, 4, 2, 1, 1}, /* patch 768: chunks of 5, 5, 5 and 1 */
        {7, 5, 48, 48, 6, 3, 1, 1, 0},   /* 2304 columns: too wide to fold */
        {9, 4, 64, 64, 5, 4, 2, 1, 1},   /* 32x32 outputs: chunks of 4, 4 and 1 */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const conv_case *c = &cases[i];
        int oh = conv_out(c->h, c), ow = conv_out(c->w, c);
        diat_conv_geometry g = {c->k, c->stride, c->pad};
        size_t in_len = (size_t)c->in_c * c->h * c->w, out_len = (size_t)c->out_c * oh * ow;
        size_t w_len = (size_t)c->out_c * c->in_c * c->k * c->k;
        float *dx_seed = host_random(c->n * in_len, -1.0f, 1.0f);
        float *dw_seed = host_random(w_len, -1.0f, 1.0f);
        diat_tensor x = device_tensor(c->n, c->in_c, c->h, c->w, NULL);
        diat_tensor w = device_tensor(c->out_c, c->in_c, c->k, c->k, NULL);
        diat_tensor dy = device_tensor(c->n, c->out_c, oh, ow, NULL);
        diat_tensor dx[2], dw[2];
        for (int t = 0; t < 2; t++) {
            dx[t] = device_tensor(c->n, c->in_c, c->h, c->w, dx_seed);
            dw[t] = device_tensor(c->out_c, c->in_c, c->k, c->k, dw_seed);
        }
        be->conv2d_backward(ctx, &x, &w, &dy, g, &dx[0], &dw[0], NULL);
        for (int n = 0; n < c->n; n++) {
            diat_tensor xi = {1, c->in_c, c->h, c->w, x.data + n * in_len};
            diat_tensor dyi = {1, c->out_c, oh, ow, dy.data + n * out_len};
            diat_tensor dxi = {1, c->in_c, c->h, c->w, dx[1].data + n * in_len};
            be->conv2d_backward(ctx, &xi, &w, &dyi, g, &dxi, &dw[1], NULL);
        }
        const char *names[] = {"dx", "dweight"};
        diat_tensor *pairs[2][2] = {{&dx[0], &dx[1]}, {&dw[0], &dw[1]}};
        for (int k = 0; k < 2; k++) {
            float *got = download(pairs[k][0]), *one = download(pairs[k][1]);
            size_t len = diat_tensor_count(pairs[k][0]);
            double *want = to_double(one, len);
            CHECK_MSG(matches(got, want, len, 1e-5, names[k]),
                      "conv n%d %dx%dx%d->%d k%d s%d: batched %s differs from per image", c->n,
                      c->in_c, c->h, c->w, c->out_c, c->k, c->stride, names[k]);
            free(got), free(one), free(want);
        }
        diat_tensor *ts[] = {&x, &w, &dy, &dx[0], &dx[1], &dw[0], &dw[1]};
        for (size_t j = 0; j < sizeof ts / sizeof ts[0]; j++) diat_tensor_release(ctx, ts[j]);
        free(dx_seed), free(dw_seed);
    }
}

/* Forward only, with each fused activation: the reference applies it to
 * its double result (activation.c's formulas). */
typedef struct conv_act_case {
    conv_case conv;
    diat_activation act;
} conv_act_case;

static double activate_reference(diat_activation act, double v)
{
    switch (act) {
    case DIAT_ACT_RELU: return v > 0.0 ? v : 0.0;
    case DIAT_ACT_LEAKY_RELU: return v > 0.0 ? v : 0.2 * v;
    case DIAT_ACT_SIGMOID: return 1.0 / (1.0 + exp(-v));
    case DIAT_ACT_TANH: return tanh(v);
    case DIAT_ACT_IDENTITY: break;
    }
    return v;
}

static void check_conv_forward(const conv_act_case *ac)
{
    static const char *names[] = {"identity", "relu", "leaky relu", "sigmoid", "tanh"};
    const conv_case *c = &ac->conv;
    char label[128];
    snprintf(label, sizeof label, "conv n%d %dx%dx%d->%d k%d s%d p%d%s %s", c->n, c->in_c, c->h,
             c->w, c->out_c, c->k, c->stride, c->pad, c->bias ? " bias" : "", names[ac->act]);
    int oh = conv_out(c->h, c), ow = conv_out(c->w, c);
    diat_tensor x = device_tensor(c->n, c->in_c, c->h, c->w, NULL);
    diat_tensor w = device_tensor(c->out_c, c->in_c, c->k, c->k, NULL);
    diat_tensor b = device_tensor(c->out_c, 1, 1, 1, NULL);
    diat_tensor y = device_tensor(c->n, c->out_c, oh, ow, NULL);
    reference ref = {.forward = conv_reference, .op = c, .out_len = diat_tensor_count(&y)};
    ref.in[0] = download_double(&x), ref.in_len[0] = diat_tensor_count(&x);
    ref.in[1] = download_double(&w), ref.in_len[1] = diat_tensor_count(&w);
    ref.in[2] = download_double(&b), ref.in_len[2] = (size_t)c->out_c;

    diat_conv_geometry g = {c->k, c->stride, c->pad};
    be->conv2d_forward(ctx, &x, &w, c->bias ? &b : NULL, g, ac->act, 0.2f, &y);
    double *want = reference_output(&ref);
    for (size_t i = 0; i < ref.out_len; i++) want[i] = activate_reference(ac->act, want[i]);
    float *got = download(&y);
    CHECK_MSG(matches(got, want, ref.out_len, FORWARD_TOL, label), "%s forward", label);
    free(want), free(got);
    diat_tensor *ts[] = {&x, &w, &b, &y};
    for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++) diat_tensor_release(ctx, ts[i]);
    free_reference_inputs(&ref);
}

static void test_conv2d_forward_shapes(void)
{
    static const conv_act_case cases[] = {
        {{16, 6, 4, 4, 24, 3, 1, 1, 1}, DIAT_ACT_RELU},         /* 4x4 outputs, batch 16 */
        {{16, 3, 16, 16, 12, 3, 2, 1, 1}, DIAT_ACT_LEAKY_RELU}, /* 8x8 outputs, batch 16 */
        {{16, 8, 8, 8, 4, 4, 2, 1, 1}, DIAT_ACT_LEAKY_RELU},    /* the critic's k4 s2 */
        {{3, 16, 4, 4, 768, 3, 1, 1, 1}, DIAT_ACT_RELU},        /* 48 columns, 64 tiles */
        {{1, 3, 64, 64, 24, 3, 2, 1, 1}, DIAT_ACT_LEAKY_RELU},  /* T.down1 */
        {{1, 3, 64, 64, 12, 3, 2, 0, 0}, DIAT_ACT_IDENTITY},    /* s2, no padding: 31x31 */
        {{2, 7, 17, 23, 13, 3, 1, 1, 1}, DIAT_ACT_TANH},        /* odd sizes, 12 + 1 rows */
        {{1, 24, 64, 64, 12, 3, 1, 1, 1}, DIAT_ACT_IDENTITY},   /* T.up5: direct tiles */
        {{2, 16, 32, 32, 1, 3, 1, 1, 0}, DIAT_ACT_SIGMOID},     /* M.conv5 */
        {{1, 9, 16, 48, 40, 3, 1, 1, 1}, DIAT_ACT_RELU},        /* direct, 12*3 + 4 rows */
        {{1, 200, 16, 16, 60, 3, 1, 1, 1}, DIAT_ACT_RELU},      /* K 1800: several chunks */
        {{2, 4, 9, 11, 3, 5, 1, 2, 1}, DIAT_ACT_LEAKY_RELU},    /* 5x5 kernel */
        {{2, 6, 10, 10, 7, 1, 1, 0, 1}, DIAT_ACT_RELU},         /* pointwise */
        {{5, 3, 2, 2, 5, 3, 1, 1, 1}, DIAT_ACT_IDENTITY},       /* 2x2 outputs: 5 images/panel */
        {{1, 3, 64, 64, 5, 3, 3, 1, 1}, DIAT_ACT_RELU},         /* stride 3, 22-wide rows */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) check_conv_forward(&cases[i]);
}

/* However a backend splits a convolution across threads, every output sums
 * the same products in the same order: 1 and 3 threads agree exactly. */
static void test_conv2d_thread_split(void)
{
    /* Each over 12 MFLOP, so that a backend that skips threads for small
     * convolutions (conv-avx512.c: under 4 MFLOP a thread) still uses 3. */
    static const conv_case cases[] = {
        {1, 64, 4, 4, 768, 3, 1, 1, 1},  /* 16 columns: split by weight rows */
        {4, 16, 48, 48, 32, 3, 2, 1, 1}, /* split by panels */
        {2, 16, 32, 32, 40, 3, 1, 1, 1}, /* direct tiles */
        {16, 32, 8, 8, 36, 3, 1, 1, 0},  /* batch-folded 8x8 */
    };
    diat_context *one, *three;
    diat_error err;
    if (diat_context_new(DIAT_BACKEND_CPU, 1, &one, &err) != DIAT_OK ||
        diat_context_new(DIAT_BACKEND_CPU, 3, &three, &err) != DIAT_OK) {
        CHECK_MSG(0, "contexts: %s", err.message);
        return;
    }
    if (be != diat_context_backend(one)) { /* another backend under test: CPU only */
        diat_context_free(one), diat_context_free(three);
        return;
    }
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const conv_case *c = &cases[i];
        int oh = conv_out(c->h, c), ow = conv_out(c->w, c);
        diat_tensor x = device_tensor(c->n, c->in_c, c->h, c->w, NULL);
        diat_tensor w = device_tensor(c->out_c, c->in_c, c->k, c->k, NULL);
        diat_tensor b = device_tensor(c->out_c, 1, 1, 1, NULL);
        diat_tensor y1 = device_tensor(c->n, c->out_c, oh, ow, NULL);
        diat_tensor y3 = device_tensor(c->n, c->out_c, oh, ow, NULL);
        diat_conv_geometry g = {c->k, c->stride, c->pad};
        be->conv2d_forward(one, &x, &w, c->bias ? &b : NULL, g, DIAT_ACT_LEAKY_RELU, 0.2f, &y1);
        be->conv2d_forward(three, &x, &w, c->bias ? &b : NULL, g, DIAT_ACT_LEAKY_RELU, 0.2f, &y3);
        float *a = download(&y1), *z = download(&y3);
        CHECK_MSG(memcmp(a, z, diat_tensor_count(&y1) * sizeof *a) == 0,
                  "conv n%d %dx%dx%d->%d: 1 and 3 threads differ", c->n, c->in_c, c->h, c->w,
                  c->out_c);
        free(a), free(z);
        diat_tensor *ts[] = {&x, &w, &b, &y1, &y3};
        for (size_t t = 0; t < sizeof ts / sizeof ts[0]; t++) diat_tensor_release(ctx, ts[t]);
    }
    diat_context_free(one);
    diat_context_free(three);
}

/* The element-wise ops split long ranges over the threads (worker-pool.h):
 * 1 and 3 threads give the same bits, with no element skipped or done twice
 * at a range's edge. Outputs start random, so a skipped element shows. */
static void test_elementwise_thread_split(void)
{
    const size_t count = 3 * 32768 + 1001; /* 3 ranges and a ragged end */
    diat_context *ctxs[2];
    diat_error err;
    if (diat_context_new(DIAT_BACKEND_CPU, 1, &ctxs[0], &err) != DIAT_OK ||
        diat_context_new(DIAT_BACKEND_CPU, 3, &ctxs[1], &err) != DIAT_OK) {
        CHECK_MSG(0, "contexts: %s", err.message);
        return;
    }
    if (be != diat_context_backend(ctxs[0])) { /* another backend under test: CPU only */
        diat_context_free(ctxs[0]), diat_context_free(ctxs[1]);
        return;
    }
    float *x = host_random(count, -2.0f, 2.0f), *dy = host_random(count, -1.0f, 1.0f);
    float *start = host_random(count, -1.0f, 1.0f), *v0 = host_random(count, 0.0f, 1.0f);
    for (size_t i = 0; i < count; i++) v0[i] *= v0[i];
    static const diat_activation kinds[] = {DIAT_ACT_IDENTITY, DIAT_ACT_RELU, DIAT_ACT_LEAKY_RELU,
                                            DIAT_ACT_SIGMOID, DIAT_ACT_TANH};
    enum { OPS = 4 + 2 * 5, OUTS = 3 };
    float *out[2][OPS][OUTS];
    for (int t = 0; t < 2; t++) {
        diat_context *c = ctxs[t];
        for (int op = 0; op < OPS; op++) {
            float *y = malloc(count * sizeof *y), *m = malloc(count * sizeof *m),
                  *v = malloc(count * sizeof *v);
            memcpy(y, start, count * sizeof *y);
            memcpy(m, dy, count * sizeof *m);
            memcpy(v, v0, count * sizeof *v);
            if (op == 0) be->fill(c, y, 0.25f, count);
            if (op == 1) be->axpy(c, -0.75f, x, y, count);
            if (op == 2) be->add(c, x, dy, y, count);
            if (op == 3) be->adam_update(c, y, x, m, v, count, 1e-3f, 0.5f, 0.9f, 1e-8f, 7);
            if (op >= 4 && op < 9) be->activation_forward(c, kinds[op - 4], 0.2f, x, y, count);
            if (op >= 9) be->activation_backward(c, kinds[op - 9], 0.2f, x, dy, y, count);
            out[t][op][0] = y, out[t][op][1] = m, out[t][op][2] = v;
        }
    }
    /* The serial path itself is proven by the gradient checks; here the
     * 3-thread fill must have reached every element, the last one too. */
    size_t filled = 0;
    while (filled < count && out[1][0][0][filled] == 0.25f) filled++;
    CHECK_MSG(filled == count, "3-thread fill stopped at %zu of %zu", filled, count);
    for (int op = 0; op < OPS; op++)
        for (int k = 0; k < OUTS; k++) {
            CHECK_MSG(memcmp(out[0][op][k], out[1][op][k], count * sizeof(float)) == 0,
                      "element-wise op %d, output %d: 1 and 3 threads differ", op, k);
            free(out[0][op][k]), free(out[1][op][k]);
        }
    free(x), free(dy), free(start), free(v0);
    diat_context_free(ctxs[0]);
    diat_context_free(ctxs[1]);
}

/* The gradient checker must be able to fail: against a reference whose
 * weight differs in one element, the gradients cannot all match. */
static void test_checker_detects_errors(void)
{
    static const conv_case c = {1, 2, 5, 5, 2, 3, 1, 1, 1};
    quiet = 1;
    int ok = check_conv(&c, 1);
    quiet = 0;
    CHECK(!ok);
    double want[3] = {1.0, 2.0, 3.0};
    float nan_got[3] = {1.0f, NAN, 3.0f}, off[3] = {1.0f, 2.01f, 3.0f};
    quiet = 1;
    CHECK(!matches(nan_got, want, 3, 1e-3, "nan"));
    CHECK(!matches(off, want, 3, 1e-3, "off"));
    quiet = 0;
}

/* ---- linear --------------------------------------------------------------- */

typedef struct linear_case {
    int n, in, out;
} linear_case;

static void linear_reference(const void *op, double *const *in, double *out)
{
    const linear_case *c = op;
    for (int i = 0; i < c->n; i++)
        for (int o = 0; o < c->out; o++) {
            double sum = in[2][o];
            for (int k = 0; k < c->in; k++) sum += in[0][i * c->in + k] * in[1][o * c->in + k];
            out[i * c->out + o] = sum;
        }
}

typedef struct linear_state {
    diat_tensor x, w, dy, dx, dw, db;
} linear_state;

static void linear_backward(void *p)
{
    linear_state *s = p;
    be->linear_backward(ctx, &s->x, &s->w, &s->dy, &s->dx, &s->dw, &s->db);
}

static void test_linear(void)
{
    static const linear_case c = {3, 2 * 2 * 3, 5}; /* x [3, 2, 2, 3] flattens to 12 */
    linear_state s;
    s.x = device_tensor(c.n, 2, 2, 3, NULL);
    s.w = device_tensor(c.out, c.in, 1, 1, NULL);
    diat_tensor b = device_tensor(c.out, 1, 1, 1, NULL), y = device_tensor(c.n, c.out, 1, 1, NULL);
    s.dx = device_tensor(c.n, 2, 2, 3, NULL);
    s.dw = device_tensor(c.out, c.in, 1, 1, NULL);
    s.db = device_tensor(c.out, 1, 1, 1, NULL);
    reference ref = {.forward = linear_reference, .op = &c, .out_len = (size_t)c.n * c.out};
    ref.in[0] = download_double(&s.x), ref.in_len[0] = diat_tensor_count(&s.x);
    ref.in[1] = download_double(&s.w), ref.in_len[1] = diat_tensor_count(&s.w);
    ref.in[2] = download_double(&b), ref.in_len[2] = (size_t)c.out;
    be->linear_forward(ctx, &s.x, &s.w, &b, &y);
    check_forward("linear", &ref, &y);

    float *r = host_random(ref.out_len, -1.0f, 1.0f);
    double *rd = to_double(r, ref.out_len);
    s.dy = device_tensor(c.n, c.out, 1, 1, r);
    grad_output outs[] = {{"dx", &s.dx, 0}, {"dweight", &s.dw, 1}, {"dbias", &s.db, 2}};
    check_gradients("linear", &ref, rd, outs, 3, linear_backward, &s);

    diat_tensor *ts[] = {&s.x, &s.w, &b, &y, &s.dy, &s.dx, &s.dw, &s.db};
    for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++) diat_tensor_release(ctx, ts[i]);
    free_reference_inputs(&ref);
    free(r), free(rd);
}

/* ---- batch norm ------------------------------------------------------------ */

typedef struct norm_case {
    int n, c, h, w;
    float eps;
    int per_instance; /* 0: batch norm (per channel), 1: instance norm */
} norm_case;

/* Element i of run r of normalisation group g: channel g of sample r
 * (batch norm) or plane g (instance norm, one run). */
static double group_value(const norm_case *c, const double *x, int g, int r, int i)
{
    int plane = c->h * c->w;
    return c->per_instance ? x[g * plane + i] : x[(r * c->c + g) * plane + i];
}

/* Mean and biased variance of group g. */
static void norm_group_stats(const norm_case *c, const double *x, int g, double *mean, double *var)
{
    int plane = c->h * c->w, runs = c->per_instance ? 1 : c->n;
    double sum = 0.0, sq = 0.0;
    for (int r = 0; r < runs; r++)
        for (int i = 0; i < plane; i++) sum += group_value(c, x, g, r, i);
    *mean = sum / (runs * plane);
    for (int r = 0; r < runs; r++)
        for (int i = 0; i < plane; i++) {
            double d = group_value(c, x, g, r, i) - *mean;
            sq += d * d;
        }
    *var = sq / (runs * plane);
}

/* in: x, gamma, beta */
static void norm_reference(const void *op, double *const *in, double *out)
{
    const norm_case *c = op;
    int plane = c->h * c->w;
    for (int n = 0; n < c->n; n++)
        for (int ch = 0; ch < c->c; ch++) {
            double mean, var;
            norm_group_stats(c, in[0], c->per_instance ? n * c->c + ch : ch, &mean, &var);
            for (int i = 0; i < plane; i++) {
                size_t at = (size_t)(n * c->c + ch) * plane + i;
                out[at] = in[1][ch] * (in[0][at] - mean) / sqrt(var + c->eps) + in[2][ch];
            }
        }
}

typedef struct norm_state {
    diat_tensor x, gamma, save_mean, save_invstd, dy, dx, dgamma, dbeta;
    int per_instance;
} norm_state;

static void norm_backward(void *p)
{
    norm_state *s = p;
    if (s->per_instance)
        be->instancenorm_backward(ctx, &s->x, &s->gamma, &s->save_mean, &s->save_invstd, &s->dy,
                                  &s->dx, &s->dgamma, &s->dbeta);
    else
        be->batchnorm_backward(ctx, &s->x, &s->gamma, &s->save_mean, &s->save_invstd, &s->dy,
                               &s->dx, &s->dgamma, &s->dbeta);
}

static void check_norm(const norm_case *c)
{
    const char *label = c->per_instance ? "instancenorm" : "batchnorm train";
    const float momentum = 0.1f;
    int groups = c->per_instance ? c->n * c->c : c->c;
    norm_state s = {.per_instance = c->per_instance};
    /* An offset and scale per element make the statistics non-trivial. */
    float *xh = host_random((size_t)c->n * c->c * c->h * c->w, -1.0f, 1.0f);
    for (size_t i = 0; i < (size_t)c->n * c->c * c->h * c->w; i++) xh[i] = 3.0f * xh[i] + 0.5f;
    s.x = device_tensor(c->n, c->c, c->h, c->w, xh);
    s.gamma = device_tensor(c->c, 1, 1, 1, NULL);
    diat_tensor beta = device_tensor(c->c, 1, 1, 1, NULL);
    diat_tensor y = device_tensor(c->n, c->c, c->h, c->w, NULL);
    s.save_mean = device_tensor(groups, 1, 1, 1, NULL);
    s.save_invstd = device_tensor(groups, 1, 1, 1, NULL);
    s.dx = device_tensor(c->n, c->c, c->h, c->w, NULL);
    s.dgamma = device_tensor(c->c, 1, 1, 1, NULL);
    s.dbeta = device_tensor(c->c, 1, 1, 1, NULL);
    float *rm0 = host_random((size_t)c->c, -1.0f, 1.0f),
          *rv0 = host_random((size_t)c->c, 0.5f, 2.0f);
    diat_tensor rm = device_tensor(c->c, 1, 1, 1, rm0), rv = device_tensor(c->c, 1, 1, 1, rv0);

    reference ref = {.forward = norm_reference, .op = c, .out_len = diat_tensor_count(&y)};
    ref.in[0] = to_double(xh, ref.out_len), ref.in_len[0] = ref.out_len;
    ref.in[1] = download_double(&s.gamma), ref.in_len[1] = (size_t)c->c;
    ref.in[2] = download_double(&beta), ref.in_len[2] = (size_t)c->c;

    if (c->per_instance)
        be->instancenorm_forward(ctx, &s.x, &s.gamma, &beta, c->eps, &s.save_mean, &s.save_invstd,
                                 &y);
    else
        be->batchnorm_forward_train(ctx, &s.x, &s.gamma, &beta, c->eps, momentum, &rm, &rv,
                                    &s.save_mean, &s.save_invstd, &y);
    check_forward(label, &ref, &y);

    /* Saved statistics, and (batch norm) the running update with the
     * unbiased variance: running = (1 - momentum) running + momentum batch. */
    double *want_mean = malloc(groups * sizeof(double)),
           *want_invstd = malloc(groups * sizeof(double));
    double *want_rm = malloc(c->c * sizeof(double)), *want_rv = malloc(c->c * sizeof(double));
    int count = c->per_instance ? c->h * c->w : c->n * c->h * c->w;
    for (int g = 0; g < groups; g++) {
        double var;
        norm_group_stats(c, ref.in[0], g, &want_mean[g], &var);
        want_invstd[g] = 1.0 / sqrt(var + c->eps);
        if (!c->per_instance) {
            want_rm[g] = (1.0 - momentum) * rm0[g] + momentum * want_mean[g];
            want_rv[g] = (1.0 - momentum) * rv0[g] + momentum * var * count / (count - 1.0);
        }
    }
    float *got = download(&s.save_mean);
    CHECK_MSG(matches(got, want_mean, groups, 1e-5, "save_mean"), "%s", label);
    free(got), got = download(&s.save_invstd);
    CHECK_MSG(matches(got, want_invstd, groups, 1e-5, "save_invstd"), "%s", label);
    if (!c->per_instance) {
        free(got), got = download(&rm);
        CHECK(matches(got, want_rm, c->c, 1e-5, "running_mean"));
        free(got), got = download(&rv);
        CHECK(matches(got, want_rv, c->c, 1e-5, "running_var"));
    }
    free(got);

    float *r = host_random(ref.out_len, -1.0f, 1.0f);
    double *rd = to_double(r, ref.out_len);
    s.dy = device_tensor(c->n, c->c, c->h, c->w, r);
    grad_output outs[] = {{"dx", &s.dx, 0}, {"dgamma", &s.dgamma, 1}, {"dbeta", &s.dbeta, 2}};
    check_gradients(label, &ref, rd, outs, 3, norm_backward, &s);

    diat_tensor *ts[] = {&s.x,  &s.gamma,  &beta,    &y,  &s.save_mean, &s.save_invstd,
                         &s.dx, &s.dgamma, &s.dbeta, &rm, &rv,          &s.dy};
    for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++) diat_tensor_release(ctx, ts[i]);
    free_reference_inputs(&ref);
    free(xh), free(rm0), free(rv0), free(r), free(rd);
    free(want_mean), free(want_invstd), free(want_rm), free(want_rv);
}

static void test_batchnorm_train(void)
{
    static const norm_case cases[] = {
        {3, 4, 5, 6, 1e-5f, 0}, {2, 3, 1, 1, 1e-3f, 0}, {1, 2, 7, 3, 1e-5f, 0}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) check_norm(&cases[i]);
}

static void test_instancenorm(void)
{
    static const norm_case cases[] = {{2, 3, 5, 4, 1e-5f, 1}, {1, 2, 3, 7, 1e-3f, 1}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) check_norm(&cases[i]);
}

static void test_batchnorm_infer(void)
{
    const int n = 2, c = 3, h = 4, w = 5;
    const float eps = 1e-5f;
    diat_tensor x = device_tensor(n, c, h, w, NULL), y = device_tensor(n, c, h, w, NULL);
    diat_tensor gamma = device_tensor(c, 1, 1, 1, NULL), beta = device_tensor(c, 1, 1, 1, NULL);
    float *rv_host = host_random(c, 0.2f, 3.0f);
    diat_tensor rm = device_tensor(c, 1, 1, 1, NULL), rv = device_tensor(c, 1, 1, 1, rv_host);
    double *xd = download_double(&x), *g = download_double(&gamma), *b = download_double(&beta);
    double *m = download_double(&rm), *want = malloc(diat_tensor_count(&x) * sizeof *want);
    for (int i = 0; i < n; i++)
        for (int ch = 0; ch < c; ch++)
            for (int p = 0; p < h * w; p++) {
                size_t at = (size_t)(i * c + ch) * h * w + p;
                want[at] = g[ch] * (xd[at] - m[ch]) / sqrt((double)rv_host[ch] + eps) + b[ch];
            }
    be->batchnorm_forward_infer(ctx, &x, &gamma, &beta, &rm, &rv, eps, &y);
    float *got = download(&y);
    CHECK(matches(got, want, diat_tensor_count(&y), FORWARD_TOL, "batchnorm infer"));
    diat_tensor *ts[] = {&x, &y, &gamma, &beta, &rm, &rv};
    for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++) diat_tensor_release(ctx, ts[i]);
    free(rv_host), free(xd), free(g), free(b), free(m), free(want), free(got);
}

/* ---- activations ------------------------------------------------------------ */

typedef struct activation_case {
    diat_activation kind;
    float slope;
    const char *name;
    size_t count;
} activation_case;

static void activation_reference(const void *op, double *const *in, double *out)
{
    const activation_case *c = op;
    for (size_t i = 0; i < c->count; i++) {
        double x = in[0][i];
        switch (c->kind) {
        case DIAT_ACT_IDENTITY: out[i] = x; break;
        case DIAT_ACT_RELU: out[i] = x > 0 ? x : 0; break;
        case DIAT_ACT_LEAKY_RELU: out[i] = x > 0 ? x : c->slope * x; break;
        case DIAT_ACT_SIGMOID: out[i] = 1.0 / (1.0 + exp(-x)); break;
        case DIAT_ACT_TANH: out[i] = tanh(x); break;
        }
    }
}

typedef struct activation_state {
    const activation_case *c;
    diat_tensor y, dy, dx;
} activation_state;

static void activation_backward(void *p)
{
    activation_state *s = p;
    be->activation_backward(ctx, s->c->kind, s->c->slope, s->y.data, s->dy.data, s->dx.data,
                            s->c->count);
}

static void test_activations(void)
{
    static const activation_case cases[] = {
        {DIAT_ACT_IDENTITY, 0.0f, "identity", 37},
        {DIAT_ACT_RELU, 0.0f, "relu", 41},
        {DIAT_ACT_LEAKY_RELU, 0.2f, "leaky relu", 43},
        {DIAT_ACT_SIGMOID, 0.0f, "sigmoid", 29},
        {DIAT_ACT_TANH, 0.0f, "tanh", 31},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        const activation_case *c = &cases[k];
        float *xh = host_random_away_from_zero(c->count, 0.05f, 3.0f);
        activation_state s = {.c = c};
        diat_tensor x = device_tensor((int)c->count, 1, 1, 1, xh);
        s.y = device_tensor((int)c->count, 1, 1, 1, NULL);
        s.dx = device_tensor((int)c->count, 1, 1, 1, NULL);
        reference ref = {.forward = activation_reference, .op = c, .out_len = c->count};
        ref.in[0] = to_double(xh, c->count), ref.in_len[0] = c->count;
        be->activation_forward(ctx, c->kind, c->slope, x.data, s.y.data, c->count);
        check_forward(c->name, &ref, &s.y);
        /* In place (y aliases x) gives the same result. */
        be->activation_forward(ctx, c->kind, c->slope, x.data, x.data, c->count);
        check_forward(c->name, &ref, &x);

        float *r = host_random(c->count, -1.0f, 1.0f);
        double *rd = to_double(r, c->count);
        s.dy = device_tensor((int)c->count, 1, 1, 1, r);
        grad_output outs[] = {{"dx", &s.dx, 0}};
        check_gradients(c->name, &ref, rd, outs, 1, activation_backward, &s);
        diat_tensor *ts[] = {&x, &s.y, &s.dy, &s.dx};
        for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++) diat_tensor_release(ctx, ts[i]);
        free_reference_inputs(&ref);
        free(xh), free(r), free(rd);
    }
}

/* ---- single-input resampling ops and the Gaussian ---------------------------- */

typedef struct unary_case unary_case;
struct unary_case {
    const char *name;
    int n, c, h, w;          /* input shape */
    int out_c, out_h, out_w; /* output shape */
    int a, b;                /* r, f or (k, s) */
    const float *taps;       /* gaussian only */
    reference_fn reference;
    void (*forward)(const unary_case *, const diat_tensor *x, diat_tensor *y);
    void (*backward)(const unary_case *, const diat_tensor *dy, diat_tensor *dx);
};

/* Index of element (n_, c_, i_, j_) of the case's input / output. */
#define PLANE_AT(tc, th, tw, n_, c_, i_, j_)                                                       \
    ((((size_t)(n_) * (tc) + (c_)) * (th) + (i_)) * (tw) + (j_))
#define IN_AT(u_, n_, c_, i_, j_) PLANE_AT((u_)->c, (u_)->h, (u_)->w, n_, c_, i_, j_)
#define OUT_AT(u_, n_, c_, i_, j_) PLANE_AT((u_)->out_c, (u_)->out_h, (u_)->out_w, n_, c_, i_, j_)

static void depth_to_space_reference(const void *op, double *const *in, double *out)
{
    const unary_case *u = op;
    int r = u->a;
    for (int n = 0; n < u->n; n++)
        for (int c = 0; c < u->out_c; c++)
            for (int h = 0; h < u->h; h++)
                for (int w = 0; w < u->w; w++)
                    for (int i = 0; i < r; i++)
                        for (int j = 0; j < r; j++)
                            out[OUT_AT(u, n, c, h * r + i, w * r + j)] =
                                in[0][IN_AT(u, n, c * r * r + i * r + j, h, w)];
}

static void nearest_reference(const void *op, double *const *in, double *out)
{
    const unary_case *u = op;
    for (int n = 0; n < u->n; n++)
        for (int c = 0; c < u->c; c++)
            for (int i = 0; i < u->out_h; i++)
                for (int j = 0; j < u->out_w; j++)
                    out[OUT_AT(u, n, c, i, j)] = in[0][IN_AT(u, n, c, i / u->a, j / u->a)];
}

/* PyTorch bilinear, align_corners=False, for one axis: the two source
 * indices and the weight of the second. */
static void bilinear_axis(int o, int f, int len, int *i0, int *i1, double *frac)
{
    double src = (o + 0.5) / f - 0.5;
    if (src < 0.0) src = 0.0;
    *i0 = (int)floor(src);
    *i1 = *i0 + 1 < len ? *i0 + 1 : len - 1;
    *frac = src - *i0;
}

static void bilinear_reference(const void *op, double *const *in, double *out)
{
    const unary_case *u = op;
    for (int n = 0; n < u->n; n++)
        for (int c = 0; c < u->c; c++)
            for (int i = 0; i < u->out_h; i++)
                for (int j = 0; j < u->out_w; j++) {
                    int y0, y1, x0, x1;
                    double fy, fx;
                    bilinear_axis(i, u->a, u->h, &y0, &y1, &fy);
                    bilinear_axis(j, u->a, u->w, &x0, &x1, &fx);
                    double top = (1 - fx) * in[0][IN_AT(u, n, c, y0, x0)] +
                                 fx * in[0][IN_AT(u, n, c, y0, x1)];
                    double bottom = (1 - fx) * in[0][IN_AT(u, n, c, y1, x0)] +
                                    fx * in[0][IN_AT(u, n, c, y1, x1)];
                    out[OUT_AT(u, n, c, i, j)] = (1 - fy) * top + fy * bottom;
                }
}

static void avgpool_reference(const void *op, double *const *in, double *out)
{
    const unary_case *u = op;
    int k = u->a, s = u->b;
    for (int n = 0; n < u->n; n++)
        for (int c = 0; c < u->c; c++)
            for (int i = 0; i < u->out_h; i++)
                for (int j = 0; j < u->out_w; j++) {
                    double sum = 0.0;
                    for (int a = 0; a < k; a++)
                        for (int b = 0; b < k; b++)
                            sum += in[0][IN_AT(u, n, c, i * s + a, j * s + b)];
                    out[OUT_AT(u, n, c, i, j)] = sum / (k * k);
                }
}

static int clamp_to(int i, int len)
{
    return i < 0 ? 0 : i >= len ? len - 1 : i;
}

/* The full 5x5 sum with edge-replicated borders (no separation). */
static void gaussian_reference(const void *op, double *const *in, double *out)
{
    const unary_case *u = op;
    for (int n = 0; n < u->n; n++)
        for (int c = 0; c < u->c; c++)
            for (int i = 0; i < u->h; i++)
                for (int j = 0; j < u->w; j++) {
                    double sum = 0.0;
                    for (int a = -2; a <= 2; a++)
                        for (int b = -2; b <= 2; b++)
                            sum +=
                                (double)u->taps[a + 2] * u->taps[b + 2] *
                                in[0][IN_AT(u, n, c, clamp_to(i + a, u->h), clamp_to(j + b, u->w))];
                    out[OUT_AT(u, n, c, i, j)] = sum;
                }
}

static void d2s_fwd(const unary_case *u, const diat_tensor *x, diat_tensor *y)
{
    be->depth_to_space_forward(ctx, x, u->a, y);
}
static void d2s_bwd(const unary_case *u, const diat_tensor *dy, diat_tensor *dx)
{
    be->depth_to_space_backward(ctx, dy, u->a, dx);
}
static void nearest_fwd(const unary_case *u, const diat_tensor *x, diat_tensor *y)
{
    be->upsample_nearest_forward(ctx, x, u->a, y);
}
static void nearest_bwd(const unary_case *u, const diat_tensor *dy, diat_tensor *dx)
{
    be->upsample_nearest_backward(ctx, dy, u->a, dx);
}
static void bilinear_fwd(const unary_case *u, const diat_tensor *x, diat_tensor *y)
{
    be->upsample_bilinear_forward(ctx, x, u->a, y);
}
static void bilinear_bwd(const unary_case *u, const diat_tensor *dy, diat_tensor *dx)
{
    be->upsample_bilinear_backward(ctx, dy, u->a, dx);
}
static void avgpool_fwd(const unary_case *u, const diat_tensor *x, diat_tensor *y)
{
    be->avgpool_forward(ctx, x, u->a, u->b, y);
}
static void avgpool_bwd(const unary_case *u, const diat_tensor *dy, diat_tensor *dx)
{
    be->avgpool_backward(ctx, dy, u->a, u->b, dx);
}
static void gaussian_fwd(const unary_case *u, const diat_tensor *x, diat_tensor *y)
{
    be->gaussian5_forward(ctx, x, u->taps, y);
}
static void gaussian_bwd(const unary_case *u, const diat_tensor *dy, diat_tensor *dx)
{
    be->gaussian5_backward(ctx, dy, u->taps, dx);
}

typedef struct unary_state {
    const unary_case *u;
    diat_tensor dy, dx;
} unary_state;

static void unary_backward(void *p)
{
    unary_state *s = p;
    s->u->backward(s->u, &s->dy, &s->dx);
}

static void check_unary(const unary_case *u)
{
    char label[96];
    snprintf(label, sizeof label, "%s %dx%dx%dx%d (%d, %d)", u->name, u->n, u->c, u->h, u->w, u->a,
             u->b);
    unary_state s = {.u = u};
    diat_tensor x = device_tensor(u->n, u->c, u->h, u->w, NULL);
    diat_tensor y = device_tensor(u->n, u->out_c, u->out_h, u->out_w, NULL);
    s.dx = device_tensor(u->n, u->c, u->h, u->w, NULL);
    reference ref = {.forward = u->reference, .op = u, .out_len = diat_tensor_count(&y)};
    ref.in[0] = download_double(&x), ref.in_len[0] = diat_tensor_count(&x);
    u->forward(u, &x, &y);
    check_forward(label, &ref, &y);

    float *r = host_random(ref.out_len, -1.0f, 1.0f);
    double *rd = to_double(r, ref.out_len);
    s.dy = device_tensor(u->n, u->out_c, u->out_h, u->out_w, r);
    grad_output outs[] = {{"dx", &s.dx, 0}};
    check_gradients(label, &ref, rd, outs, 1, unary_backward, &s);
    diat_tensor *ts[] = {&x, &y, &s.dy, &s.dx};
    for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++) diat_tensor_release(ctx, ts[i]);
    free_reference_inputs(&ref);
    free(r), free(rd);
}

static void test_depth_to_space(void)
{
    static const unary_case cases[] = {
        {"depth_to_space", 2, 12, 3, 4, 3, 6, 8, 2, 0, NULL, depth_to_space_reference, d2s_fwd,
         d2s_bwd},
        {"depth_to_space", 1, 18, 2, 3, 2, 6, 9, 3, 0, NULL, depth_to_space_reference, d2s_fwd,
         d2s_bwd},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) check_unary(&cases[i]);

    /* PyTorch's pixel_shuffle of channels [0, 1, 2, 3] (1x1 each), r = 2. */
    float in[4] = {0, 1, 2, 3}, got[4];
    diat_tensor x = device_tensor(1, 4, 1, 1, in), y = device_tensor(1, 1, 2, 2, NULL);
    be->depth_to_space_forward(ctx, &x, 2, &y);
    diat_tensor_download(ctx, &y, got);
    CHECK(got[0] == 0 && got[1] == 1 && got[2] == 2 && got[3] == 3);
    diat_tensor_release(ctx, &x), diat_tensor_release(ctx, &y);
}

static void test_upsample_nearest(void)
{
    static const unary_case cases[] = {
        {"nearest", 2, 3, 4, 5, 3, 8, 10, 2, 0, NULL, nearest_reference, nearest_fwd, nearest_bwd},
        {"nearest", 1, 2, 3, 2, 2, 9, 6, 3, 0, NULL, nearest_reference, nearest_fwd, nearest_bwd},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) check_unary(&cases[i]);
}

static void test_upsample_bilinear(void)
{
    static const unary_case cases[] = {
        {"bilinear", 2, 2, 5, 4, 2, 10, 8, 2, 0, NULL, bilinear_reference, bilinear_fwd,
         bilinear_bwd},
        {"bilinear", 1, 1, 8, 8, 1, 32, 32, 4, 0, NULL, bilinear_reference, bilinear_fwd,
         bilinear_bwd},
        {"bilinear", 1, 2, 1, 3, 2, 3, 9, 3, 0, NULL, bilinear_reference, bilinear_fwd,
         bilinear_bwd},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) check_unary(&cases[i]);

    /* F.interpolate([[1, 2], [3, 4]], scale_factor=2, mode='bilinear',
     * align_corners=False), as PyTorch prints it. */
    static const double torch[16] = {1.0, 1.25, 1.75, 2.0, 1.5, 1.75, 2.25, 2.5,
                                     2.5, 2.75, 3.25, 3.5, 3.0, 3.25, 3.75, 4.0};
    float in[4] = {1, 2, 3, 4}, got[16];
    diat_tensor x = device_tensor(1, 1, 2, 2, in), y = device_tensor(1, 1, 4, 4, NULL);
    be->upsample_bilinear_forward(ctx, &x, 2, &y);
    diat_tensor_download(ctx, &y, got);
    CHECK(matches(got, torch, 16, 1e-6, "bilinear vs PyTorch"));
    diat_tensor_release(ctx, &x), diat_tensor_release(ctx, &y);
}

static void test_avgpool(void)
{
    static const unary_case cases[] = {
        {"avgpool", 2, 3, 6, 8, 3, 3, 4, 2, 2, NULL, avgpool_reference, avgpool_fwd, avgpool_bwd},
        {"avgpool", 1, 2, 6, 7, 2, 2, 3, 3, 2, NULL, avgpool_reference, avgpool_fwd, avgpool_bwd},
        {"avgpool", 1, 2, 4, 5, 2, 3, 4, 2, 1, NULL, avgpool_reference, avgpool_fwd, avgpool_bwd},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) check_unary(&cases[i]);
}

static void test_gaussian5(void)
{
    const float *taps = diat_gaussian5_taps();
    double norm = 0.0;
    for (int d = -2; d <= 2; d++) norm += exp(-0.5 * d * d);
    double sum = 0.0;
    for (int d = -2; d <= 2; d++) {
        CHECK_NEAR(taps[d + 2], exp(-0.5 * d * d) / norm, 1e-7);
        sum += taps[d + 2];
    }
    CHECK_NEAR(sum, 1.0, 1e-6);

    /* The backward must be the adjoint for any taps, so also lopsided ones. */
    static const float lopsided[5] = {0.05f, 0.1f, 0.5f, 0.3f, 0.05f};
    const unary_case cases[] = {
        {"gaussian5", 2, 2, 7, 6, 2, 7, 6, 0, 0, taps, gaussian_reference, gaussian_fwd,
         gaussian_bwd},
        {"gaussian5", 1, 1, 3, 2, 1, 3, 2, 0, 0, taps, gaussian_reference, gaussian_fwd,
         gaussian_bwd},
        {"gaussian5 lopsided", 1, 2, 6, 9, 2, 6, 9, 0, 0, lopsided, gaussian_reference,
         gaussian_fwd, gaussian_bwd},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) check_unary(&cases[i]);

    /* A constant image stays constant (the taps sum to 1, borders replicate). */
    float flat[20], got[20];
    for (int i = 0; i < 20; i++) flat[i] = 0.75f;
    diat_tensor x = device_tensor(1, 1, 4, 5, flat), y = device_tensor(1, 1, 4, 5, NULL);
    be->gaussian5_forward(ctx, &x, taps, &y);
    diat_tensor_download(ctx, &y, got);
    int constant = 1;
    for (int i = 0; i < 20; i++) constant &= fabsf(got[i] - 0.75f) < 1e-6f;
    CHECK(constant);
    diat_tensor_release(ctx, &x), diat_tensor_release(ctx, &y);
}

/* ---- concat -------------------------------------------------------------------- */

typedef struct concat_case {
    int n, ca, cb, h, w;
} concat_case;

static void concat_reference(const void *op, double *const *in, double *out)
{
    const concat_case *c = op;
    int plane = c->h * c->w;
    for (int n = 0; n < c->n; n++)
        for (int ch = 0; ch < c->ca + c->cb; ch++)
            for (int i = 0; i < plane; i++)
                out[((size_t)n * (c->ca + c->cb) + ch) * plane + i] =
                    ch < c->ca ? in[0][((size_t)n * c->ca + ch) * plane + i]
                               : in[1][((size_t)n * c->cb + ch - c->ca) * plane + i];
}

typedef struct concat_state {
    diat_tensor dy, da, db;
    int want_a, want_b;
} concat_state;

static void concat_backward(void *p)
{
    concat_state *s = p;
    be->concat_backward(ctx, &s->dy, s->want_a ? &s->da : NULL, s->want_b ? &s->db : NULL);
}

static void test_concat(void)
{
    static const concat_case c = {2, 3, 2, 4, 5};
    concat_state s = {.want_a = 1, .want_b = 1};
    diat_tensor a = device_tensor(c.n, c.ca, c.h, c.w, NULL),
                b = device_tensor(c.n, c.cb, c.h, c.w, NULL);
    diat_tensor y = device_tensor(c.n, c.ca + c.cb, c.h, c.w, NULL);
    s.da = device_tensor(c.n, c.ca, c.h, c.w, NULL);
    s.db = device_tensor(c.n, c.cb, c.h, c.w, NULL);
    reference ref = {.forward = concat_reference, .op = &c, .out_len = diat_tensor_count(&y)};
    ref.in[0] = download_double(&a), ref.in_len[0] = diat_tensor_count(&a);
    ref.in[1] = download_double(&b), ref.in_len[1] = diat_tensor_count(&b);
    be->concat_forward(ctx, &a, &b, &y);
    check_forward("concat", &ref, &y);

    float *r = host_random(ref.out_len, -1.0f, 1.0f);
    double *rd = to_double(r, ref.out_len);
    s.dy = device_tensor(c.n, c.ca + c.cb, c.h, c.w, r);
    grad_output outs[] = {{"da", &s.da, 0}, {"db", &s.db, 1}};
    check_gradients("concat", &ref, rd, outs, 2, concat_backward, &s);
    s.want_b = 0;
    check_gradients("concat (da only)", &ref, rd, outs, 1, concat_backward, &s);
    s.want_a = 0, s.want_b = 1;
    check_gradients("concat (db only)", &ref, rd, outs + 1, 1, concat_backward, &s);
    diat_tensor *ts[] = {&a, &b, &y, &s.dy, &s.da, &s.db};
    for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++) diat_tensor_release(ctx, ts[i]);
    free_reference_inputs(&ref);
    free(r), free(rd);
}

/* ---- binarize (straight-through) ---------------------------------------------- */

static void test_binarize(void)
{
    const size_t count = 57;
    const float threshold = 0.5f;
    float *xh = host_random_away_from_zero(count, 0.02f, 0.5f);
    for (size_t i = 0; i < count; i++) xh[i] += threshold; /* on both sides, never on it */
    float *dyh = host_random(count, -1.0f, 1.0f), *g0 = host_random(count, -1.0f, 1.0f);
    diat_tensor x = device_tensor((int)count, 1, 1, 1, xh),
                y = device_tensor((int)count, 1, 1, 1, NULL);
    diat_tensor dy = device_tensor((int)count, 1, 1, 1, dyh),
                dx = device_tensor((int)count, 1, 1, 1, g0);
    be->binarize_forward(ctx, x.data, threshold, y.data, count);
    float *got = download(&y);
    int exact = 1;
    for (size_t i = 0; i < count; i++) exact &= got[i] == (xh[i] > threshold ? 1.0f : 0.0f);
    CHECK(exact);

    /* Straight through: dx += dy exactly, whatever x was; twice gives 2 dy. */
    be->binarize_backward(ctx, dy.data, dx.data, count);
    float *once = download(&dx);
    be->binarize_backward(ctx, dy.data, dx.data, count);
    float *twice = download(&dx);
    int through = 1;
    for (size_t i = 0; i < count; i++) {
        through &= once[i] == g0[i] + dyh[i];
        through &= fabsf(twice[i] - (g0[i] + 2.0f * dyh[i])) <= 1e-6f;
    }
    CHECK(through);
    diat_tensor *ts[] = {&x, &y, &dy, &dx};
    for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++) diat_tensor_release(ctx, ts[i]);
    free(xh), free(dyh), free(g0), free(got), free(once), free(twice);
}

int main(void)
{
    diat_backend_kind kind = DIAT_BACKEND_CPU;
    const char *wanted = getenv("DIAT_TEST_BACKEND");
    if (wanted && *wanted && diat_backend_kind_parse(wanted, &kind) != 0) {
        fprintf(stderr, "DIAT_TEST_BACKEND=%s is not a backend name\n", wanted);
        return 1;
    }
    diat_error err;
    if (diat_context_new(kind, 0, &ctx, &err) != DIAT_OK) {
        fprintf(stderr, "no %s backend: %s\n", wanted ? wanted : "cpu", err.message);
        return kind == DIAT_BACKEND_CPU ? 1 : 77;
    }
    be = diat_context_backend(ctx);
    printf("backend %s, %d threads, %s\n", be->name, diat_context_threads(ctx),
           diat_blas_description());

    RUN_TEST(test_memory_ops);
    RUN_TEST(test_checker_detects_errors);
    RUN_TEST(test_conv2d);
    RUN_TEST(test_conv2d_backward_batch);
    RUN_TEST(test_conv2d_forward_shapes);
    RUN_TEST(test_conv2d_thread_split);
    RUN_TEST(test_elementwise_thread_split);
    RUN_TEST(test_linear);
    RUN_TEST(test_batchnorm_train);
    RUN_TEST(test_batchnorm_infer);
    RUN_TEST(test_instancenorm);
    RUN_TEST(test_activations);
    RUN_TEST(test_depth_to_space);
    RUN_TEST(test_upsample_nearest);
    RUN_TEST(test_upsample_bilinear);
    RUN_TEST(test_avgpool);
    RUN_TEST(test_concat);
    RUN_TEST(test_gaussian5);
    RUN_TEST(test_binarize);

    diat_context_free(ctx);
    return TEST_SUMMARY();
}

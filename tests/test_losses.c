/* The trainer's ops and the critic's WGAN-GP double backward.
 *
 * Ops (composition, squared error, sum, attribute ratio, gradient penalty,
 * element-wise product): every forward against a naive reference in
 * double; every backward against central differences of that reference,
 * taken in double, so a backward that is wrong by more than float rounding
 * fails. Backwards are run onto non-zero gradient buffers, checking that
 * they accumulate. Adam against a two-step sequence computed by hand.
 *
 * Critic: g = d(sum of scores)/dx against finite differences and against
 * the ordinary backward; the penalty's parameter gradient (input gradient,
 * penalty backward, input-gradient backward) against central differences
 * of GP(theta) = gradient_penalty(input_gradient(D, x)). */
#include "diat-train.h"
#include "testutil.h"

#include <string.h>

static diat_context *ctx;
static const diat_backend *be;
static unsigned long long seed = 20240611;

static void fill_random(float *v, size_t count, float scale)
{
    for (size_t i = 0; i < count; i++) v[i] = scale * test_rand(&seed);
}

static double *to_double(const float *v, size_t count)
{
    double *d = malloc(count * sizeof *d);
    for (size_t i = 0; i < count; i++) d[i] = v[i];
    return d;
}

/* ---- central differences of a double reference ----------------------- */

/* A scalar function of some double arrays (the reference op followed by a
 * fixed linear read-out when the op's output is a tensor). */
typedef double (*objective_fn)(void *state);

/* Numeric gradient with respect to every entry of `values`. The function is
 * smooth (or piecewise linear away from the point) and evaluated in double,
 * so the step can be small: truncation O(step^2), rounding O(1e-16 / step). */
static void numeric_gradient(objective_fn f, void *state, double *values, size_t count, double *out)
{
    const double step = 1e-6;
    for (size_t i = 0; i < count; i++) {
        double saved = values[i];
        values[i] = saved + step;
        double up = f(state);
        values[i] = saved - step;
        double down = f(state);
        values[i] = saved;
        out[i] = (up - down) / (2.0 * step);
    }
}

/* ||analytic - numeric|| / ||numeric|| (absolute when numeric is zero). */
static double relative_error(const double *numeric, const double *analytic, size_t count)
{
    double diff2 = 0.0, ref2 = 0.0;
    for (size_t i = 0; i < count; i++) {
        diff2 += (analytic[i] - numeric[i]) * (analytic[i] - numeric[i]);
        ref2 += numeric[i] * numeric[i];
    }
    return ref2 > 0.0 ? sqrt(diff2 / ref2) : sqrt(diff2);
}

/* Gradient an accumulating backward added onto `prior`. */
static double *added(const float *after, const float *prior, size_t count)
{
    double *d = malloc(count * sizeof *d);
    for (size_t i = 0; i < count; i++) d[i] = (double)after[i] - prior[i];
    return d;
}

/* Compare an accumulated gradient with central differences of f. */
static double check_gradient(objective_fn f, void *state, double *values, const float *after,
                             const float *prior, size_t count)
{
    double *numeric = malloc(count * sizeof *numeric);
    double *analytic = added(after, prior, count);
    numeric_gradient(f, state, values, count, numeric);
    double rel = relative_error(numeric, analytic, count);
    free(numeric);
    free(analytic);
    return rel;
}

/* Float op against double reference, relative to the reference's scale. */
static double max_relative_gap(const float *op, const double *ref, size_t count)
{
    double gap = 0.0, scale = 0.0;
    for (size_t i = 0; i < count; i++) {
        double d = fabs((double)op[i] - ref[i]);
        if (d > gap) gap = d;
        if (fabs(ref[i]) > scale) scale = fabs(ref[i]);
    }
    return gap / (scale > 0.0 ? scale : 1.0);
}

/* Gradients in float carry ~1e-7 relative rounding; a wrong backward is off
 * by O(1). */
#define GRAD_TOL 1e-5

/* ---- composition --------------------------------------------------------- */

enum { CN = 2, CC = 3, CH = 5, CW = 4, CPLANE = CH * CW, CCOUNT = CN * CC * CPLANE };

typedef struct compose_case {
    double *m, *a, *b, *readout;
} compose_case;

static void compose_reference(const compose_case *k, double *y)
{
    for (int n = 0; n < CN; n++)
        for (int c = 0; c < CC; c++)
            for (int i = 0; i < CPLANE; i++) {
                int at = (n * CC + c) * CPLANE + i;
                double mask = k->m[n * CPLANE + i];
                y[at] = mask * k->a[at] + (1.0 - mask) * k->b[at];
            }
}

static double compose_objective(void *state)
{
    compose_case *k = state;
    double y[CCOUNT], s = 0.0;
    compose_reference(k, y);
    for (int i = 0; i < CCOUNT; i++) s += k->readout[i] * y[i];
    return s;
}

static void test_compose(void)
{
    diat_error err;
    diat_tensor m = {0}, a = {0}, b = {0}, y = {0}, dy = {0}, dm = {0}, da = {0}, db = {0};
    diat_tensor_alloc(ctx, &m, CN, 1, CH, CW, &err);
    diat_tensor *full[] = {&a, &b, &y, &dy, &da, &db};
    for (size_t i = 0; i < 6; i++) diat_tensor_alloc(ctx, full[i], CN, CC, CH, CW, &err);
    diat_tensor_alloc(ctx, &dm, CN, 1, CH, CW, &err);
    for (int i = 0; i < CN * CPLANE; i++) m.data[i] = 0.5f + 0.5f * test_rand(&seed); /* [0, 1) */
    fill_random(a.data, CCOUNT, 1.0f);
    fill_random(b.data, CCOUNT, 1.0f);
    fill_random(dy.data, CCOUNT, 1.0f);

    compose_case k = {to_double(m.data, CN * CPLANE), to_double(a.data, CCOUNT),
                      to_double(b.data, CCOUNT), to_double(dy.data, CCOUNT)};
    double ref[CCOUNT];
    compose_reference(&k, ref);
    be->compose_forward(ctx, &m, &a, &b, &y);
    double gap = max_relative_gap(y.data, ref, CCOUNT);
    CHECK_MSG(gap < 1e-6, "compose forward off by %.2e", gap);

    float prior_m[CN * CPLANE], prior_a[CCOUNT], prior_b[CCOUNT];
    fill_random(prior_m, CN * CPLANE, 1.0f);
    fill_random(prior_a, CCOUNT, 1.0f);
    fill_random(prior_b, CCOUNT, 1.0f);
    memcpy(dm.data, prior_m, sizeof prior_m);
    memcpy(da.data, prior_a, sizeof prior_a);
    memcpy(db.data, prior_b, sizeof prior_b);
    be->compose_backward(ctx, &m, &a, &b, &dy, &dm, &da, &db);
    double rel_m = check_gradient(compose_objective, &k, k.m, dm.data, prior_m, CN * CPLANE);
    double rel_a = check_gradient(compose_objective, &k, k.a, da.data, prior_a, CCOUNT);
    double rel_b = check_gradient(compose_objective, &k, k.b, db.data, prior_b, CCOUNT);
    CHECK_MSG(rel_m < GRAD_TOL, "compose dm relative error %.2e", rel_m);
    CHECK_MSG(rel_a < GRAD_TOL, "compose da relative error %.2e", rel_a);
    CHECK_MSG(rel_b < GRAD_TOL, "compose db relative error %.2e", rel_b);
    printf("  compose: forward %.1e, dm %.1e, da %.1e, db %.1e\n", gap, rel_m, rel_a, rel_b);

    /* Any output may be NULL: only da changes. */
    memcpy(dm.data, prior_m, sizeof prior_m);
    memcpy(da.data, prior_a, sizeof prior_a);
    be->compose_backward(ctx, &m, &a, &b, &dy, NULL, &da, NULL);
    CHECK(memcmp(dm.data, prior_m, sizeof prior_m) == 0);
    CHECK_NEAR(da.data[7] - prior_a[7], m.data[7] * dy.data[7], 1e-6);

    free(k.m);
    free(k.a);
    free(k.b);
    free(k.readout);
    diat_tensor *all[] = {&m, &a, &b, &y, &dy, &dm, &da, &db};
    for (size_t i = 0; i < 8; i++) diat_tensor_release(ctx, all[i]);
}

/* ---- squared error and sum ---------------------------------------------- */

enum { SE_COUNT = 37 };

typedef struct squared_error_case {
    double *a, *b; /* b NULL: zeros */
    double scale;
} squared_error_case;

static double squared_error_objective(void *state)
{
    squared_error_case *k = state;
    double s = 0.0;
    for (int i = 0; i < SE_COUNT; i++) {
        double d = k->a[i] - (k->b ? k->b[i] : 0.0);
        s += d * d;
    }
    return k->scale * s;
}

static void test_squared_error(void)
{
    float a[SE_COUNT], b[SE_COUNT], da[SE_COUNT], db[SE_COUNT], prior_a[SE_COUNT],
        prior_b[SE_COUNT], out[1];
    fill_random(a, SE_COUNT, 2.0f);
    fill_random(b, SE_COUNT, 2.0f);
    fill_random(prior_a, SE_COUNT, 1.0f);
    fill_random(prior_b, SE_COUNT, 1.0f);
    const float scale = 0.37f;
    squared_error_case k = {to_double(a, SE_COUNT), to_double(b, SE_COUNT), scale};

    be->squared_error_forward(ctx, a, b, SE_COUNT, scale, out);
    double ref = squared_error_objective(&k);
    CHECK_MSG(fabs(out[0] - ref) <= 1e-6 * fabs(ref), "%.9g vs %.9g", out[0], ref);

    memcpy(da, prior_a, sizeof da);
    memcpy(db, prior_b, sizeof db);
    be->squared_error_backward(ctx, a, b, SE_COUNT, scale, da, db);
    double rel_a = check_gradient(squared_error_objective, &k, k.a, da, prior_a, SE_COUNT);
    double rel_b = check_gradient(squared_error_objective, &k, k.b, db, prior_b, SE_COUNT);
    CHECK_MSG(rel_a < GRAD_TOL, "squared error da relative error %.2e", rel_a);
    CHECK_MSG(rel_b < GRAD_TOL, "squared error db relative error %.2e", rel_b);

    /* b = NULL means zeros; db = NULL is skipped. */
    free(k.b);
    k.b = NULL;
    be->squared_error_forward(ctx, a, NULL, SE_COUNT, scale, out);
    ref = squared_error_objective(&k);
    CHECK_MSG(fabs(out[0] - ref) <= 1e-6 * fabs(ref), "%.9g vs %.9g", out[0], ref);
    memcpy(da, prior_a, sizeof da);
    be->squared_error_backward(ctx, a, NULL, SE_COUNT, scale, da, NULL);
    double rel_0 = check_gradient(squared_error_objective, &k, k.a, da, prior_a, SE_COUNT);
    CHECK_MSG(rel_0 < GRAD_TOL, "squared error (b = 0) da relative error %.2e", rel_0);
    printf("  squared error: da %.1e, db %.1e, da (b = 0) %.1e\n", rel_a, rel_b, rel_0);
    free(k.a);
}

static void test_sum(void)
{
    /* A million terms near 1: a float accumulator would drift by ~1e-3
     * relative here; the op must agree with double to float rounding. */
    const size_t count = 1000 * 1000;
    float *x = malloc(count * sizeof *x), out[1];
    double ref = 0.0;
    for (size_t i = 0; i < count; i++) {
        x[i] = 1.0f + 0.25f * test_rand(&seed);
        ref += x[i];
    }
    be->sum_forward(ctx, x, count, -0.5f, out);
    CHECK_MSG(fabs(out[0] - -0.5 * ref) <= 1e-7 * fabs(0.5 * ref), "%.9g vs %.9g", out[0],
              -0.5 * ref);
    free(x);
}

/* ---- attribute ratio ---------------------------------------------------- */

enum { RATIO_COUNT = 50 };

typedef struct ratio_case {
    double *x;
    double target, scale;
} ratio_case;

static double ratio_objective(void *state)
{
    ratio_case *k = state;
    double s = 0.0;
    for (int i = 0; i < RATIO_COUNT; i++) s += k->x[i];
    return k->scale * fabs(s / RATIO_COUNT - k->target);
}

static void test_ratio_loss(void)
{
    float x[RATIO_COUNT], dx[RATIO_COUNT], prior[RATIO_COUNT], out[1];
    fill_random(prior, RATIO_COUNT, 1.0f);
    for (int i = 0; i < RATIO_COUNT; i++) x[i] = 0.5f + 0.5f * test_rand(&seed);
    /* Mean above the target, then below: both signs of |.|. */
    const float targets[2] = {0.1f, 0.9f};
    for (int t = 0; t < 2; t++) {
        ratio_case k = {to_double(x, RATIO_COUNT), targets[t], 2.5};
        be->ratio_loss_forward(ctx, x, RATIO_COUNT, targets[t], 2.5f, out);
        double ref = ratio_objective(&k);
        CHECK_MSG(fabs(out[0] - ref) <= 1e-6 * fabs(ref), "%.9g vs %.9g", out[0], ref);
        memcpy(dx, prior, sizeof dx);
        be->ratio_loss_backward(ctx, x, RATIO_COUNT, targets[t], 2.5f, dx);
        double rel = check_gradient(ratio_objective, &k, k.x, dx, prior, RATIO_COUNT);
        CHECK_MSG(rel < GRAD_TOL, "ratio loss (target %g) relative error %.2e", targets[t], rel);
        printf("  ratio loss, target %.1f: dx %.1e\n", targets[t], rel);
        free(k.x);
    }
    /* At the target exactly (0.25 and its sums are exact in binary): loss 0,
     * subgradient 0, so the gradient buffer is untouched. */
    for (int i = 0; i < RATIO_COUNT; i++) x[i] = 0.25f;
    be->ratio_loss_forward(ctx, x, RATIO_COUNT, 0.25f, 2.5f, out);
    CHECK(out[0] == 0.0f);
    memcpy(dx, prior, sizeof dx);
    be->ratio_loss_backward(ctx, x, RATIO_COUNT, 0.25f, 2.5f, dx);
    CHECK(memcmp(dx, prior, sizeof dx) == 0);
}

/* ---- gradient penalty ---------------------------------------------------- */

typedef struct penalty_case {
    double *g;
    int n;
    size_t per_sample;
    double lambda;
} penalty_case;

/* lambda / n sum_i (||g_i|| - 1)^2, exactly as defined (no epsilon). */
static double penalty_objective(void *state)
{
    penalty_case *k = state;
    double total = 0.0;
    for (int i = 0; i < k->n; i++) {
        double sq = 0.0;
        for (size_t j = 0; j < k->per_sample; j++) {
            double v = k->g[(size_t)i * k->per_sample + j];
            sq += v * v;
        }
        total += (sqrt(sq) - 1.0) * (sqrt(sq) - 1.0);
    }
    return k->lambda * total / k->n;
}

static void test_gradient_penalty(void)
{
    diat_error err;
    diat_tensor g = {0}, dg = {0};
    diat_tensor_alloc(ctx, &g, 3, 2, 3, 4, &err);
    diat_tensor_alloc(ctx, &dg, 3, 2, 3, 4, &err);
    const size_t per = 24, count = 72;
    fill_random(g.data, count, 1.0f);
    /* Norms well below, near and above 1, so (||g|| - 1) takes both signs. */
    const float norms[3] = {0.3f, 1.2f, 3.0f};
    for (int i = 0; i < 3; i++) {
        double sq = 0.0;
        for (size_t j = 0; j < per; j++) sq += (double)g.data[i * per + j] * g.data[i * per + j];
        for (size_t j = 0; j < per; j++) g.data[i * per + j] *= norms[i] / (float)sqrt(sq);
    }
    float prior[72], out[1];
    fill_random(prior, count, 1.0f);
    penalty_case k = {to_double(g.data, count), 3, per, 10.0};

    be->gradient_penalty_forward(ctx, &g, 10.0f, out);
    double ref = penalty_objective(&k);
    CHECK_MSG(fabs(out[0] - ref) <= 1e-6 * fabs(ref), "%.9g vs %.9g", out[0], ref);

    memcpy(dg.data, prior, sizeof prior);
    be->gradient_penalty_backward(ctx, &g, 10.0f, &dg);
    double rel = check_gradient(penalty_objective, &k, k.g, dg.data, prior, count);
    CHECK_MSG(rel < GRAD_TOL, "gradient penalty relative error %.2e", rel);
    printf("  gradient penalty: forward %.1e, dg %.1e\n", fabs(out[0] - ref) / ref, rel);

    /* The check can fail: a backward 1% off is caught by three orders of
     * magnitude. */
    for (size_t i = 0; i < count; i++) dg.data[i] = prior[i] + 1.01f * (dg.data[i] - prior[i]);
    double wrong = check_gradient(penalty_objective, &k, k.g, dg.data, prior, count);
    CHECK_MSG(wrong > 100 * GRAD_TOL, "a 1%% error went unnoticed (%.2e)", wrong);

    /* A sample whose gradient vanishes: penalty lambda / n for it, a finite
     * (zero) gradient, no NaN from g / ||g||. */
    for (size_t j = 0; j < per; j++) g.data[j] = 0.0f;
    free(k.g);
    k.g = to_double(g.data, count);
    be->gradient_penalty_forward(ctx, &g, 10.0f, out);
    ref = penalty_objective(&k);
    CHECK_MSG(fabs(out[0] - ref) <= 1e-5 * fabs(ref), "%.9g vs %.9g", out[0], ref);
    diat_tensor_zero(ctx, &dg);
    be->gradient_penalty_backward(ctx, &g, 10.0f, &dg);
    int finite = 1;
    for (size_t i = 0; i < count; i++) finite &= isfinite(dg.data[i]) != 0;
    CHECK(finite);
    CHECK(dg.data[0] == 0.0f && dg.data[per - 1] == 0.0f);
    free(k.g);
    diat_tensor_release(ctx, &g);
    diat_tensor_release(ctx, &dg);
}

static void test_mul(void)
{
    float a[19], b[19], y[19];
    fill_random(a, 19, 3.0f);
    fill_random(b, 19, 3.0f);
    be->mul(ctx, a, b, y, 19);
    int exact = 1;
    for (int i = 0; i < 19; i++) exact &= y[i] == a[i] * b[i];
    CHECK(exact);
    /* In place (y aliasing a), as interpolation uses it. */
    be->mul(ctx, a, b, a, 19);
    CHECK(memcmp(a, y, sizeof y) == 0);
}

/* ---- Adam --------------------------------------------------------------- */

static void test_adam(void)
{
    /* lr 0.1, betas (0.9, 0.999), eps 1e-8, two steps. Element 0, worked:
     *  step 1, g = 0.5:   m = 0.05, v = 0.00025, m^ = 0.05 / 0.1 = 0.5,
     *                     v^ = 0.00025 / 0.001 = 0.25, p = 1 - 0.1 * 0.5 / (0.5 + 1e-8)
     *                     = 0.900000002;
     *  step 2, g = -0.25: m = 0.045 - 0.025 = 0.02, v = 0.00024975 + 0.0000625
     *                     = 0.00031225, m^ = 0.02 / 0.19 = 0.1052631579,
     *                     v^ = 0.00031225 / 0.001999 = 0.1562031016, sqrt = 0.3952254693,
     *                     p = 0.900000002 - 0.1 * 0.1052631579 / 0.3952254793
     *                     = 0.8733662987.
     * Element 1 (p -0.5, g -2 then -1) moves the other way; element 2 has no
     * gradient and stays put; element 3 (g 1e-3 then 4) shows that the bias
     * correction makes even a tiny first gradient a full lr step:
     * 0.3 - 0.1 * 1e-3 / (1e-3 + 1e-8) = 0.20000099999. */
    float p[4] = {1.0f, -0.5f, 2.0f, 0.3f}, m[4] = {0}, v[4] = {0};
    const float g1[4] = {0.5f, -2.0f, 0.0f, 1e-3f}, g2[4] = {-0.25f, -1.0f, 0.0f, 4.0f};
    const double p1[4] = {0.900000002, -0.4000000005, 2.0, 0.20000099999};
    const double p2[4] = {0.8733662987, -0.3067820372, 2.0, 0.1255705771};
    const double m2[4] = {0.02, -0.28, 0.0, 0.40009},
                 v2[4] = {0.00031225, 0.004996, 0.0, 0.016000000999};
    be->adam_update(ctx, p, g1, m, v, 4, 0.1f, 0.9f, 0.999f, 1e-8f, 1);
    for (int i = 0; i < 4; i++) CHECK_NEAR(p[i], p1[i], 1e-6);
    be->adam_update(ctx, p, g2, m, v, 4, 0.1f, 0.9f, 0.999f, 1e-8f, 2);
    for (int i = 0; i < 4; i++) {
        CHECK_NEAR(p[i], p2[i], 1e-6);
        CHECK_NEAR(m[i], m2[i], 1e-7 * (1.0 + fabs(m2[i])));
        /* 0.999f is 0.99900001287, so (1 - beta2) is 1.3e-5 below 0.001. */
        CHECK_NEAR(v[i], v2[i], 3e-5 * v2[i] + 1e-12);
    }
}

/* ---- the critic: input gradient and its double backward ----------------- */

enum { GP_BATCH = 2 };
#define GP_LAMBDA 10.0

/* Penalty of g in double (the op's definition; no float rounding in the
 * value whose differences we take). */
static double penalty_of(const diat_tensor *g)
{
    const size_t per = diat_tensor_count(g) / (size_t)g->n;
    double total = 0.0;
    for (int i = 0; i < g->n; i++) {
        double sq = 0.0;
        for (size_t j = 0; j < per; j++) sq += (double)g->data[i * per + j] * g->data[i * per + j];
        total += (sqrt(sq) - 1.0) * (sqrt(sq) - 1.0);
    }
    return GP_LAMBDA * total / g->n;
}

/* Which units of D are on the positive side of LeakyReLU. */
typedef struct sign_pattern {
    unsigned char *positive;
    size_t count;
} sign_pattern;

static void record_signs(const diat_critic *d, sign_pattern *s)
{
    size_t total = 0;
    for (int i = 0; i < 5; i++) total += diat_tensor_count(&d->feat[i]);
    if (!s->positive) s->positive = malloc(total);
    s->count = total;
    size_t at = 0;
    for (int i = 0; i < 5; i++)
        for (size_t j = 0; j < diat_tensor_count(&d->feat[i]); j++)
            s->positive[at++] = d->feat[i].data[j] > 0.0f;
}

static size_t sign_changes(const diat_critic *d, const sign_pattern *s)
{
    size_t changes = 0, at = 0;
    for (int i = 0; i < 5; i++)
        for (size_t j = 0; j < diat_tensor_count(&d->feat[i]); j++)
            changes += s->positive[at++] != (d->feat[i].data[j] > 0.0f);
    return changes;
}

typedef struct gp_state {
    diat_critic *d;
    diat_tensor *x, *g;
} gp_state;

/* GP(theta) = gradient_penalty(input_gradient(D, x)). `frozen` skips the
 * forward: the input gradient then uses the current weights with the
 * slopes (and every activation) of the last forward. */
static double gp_value(gp_state *s, int frozen)
{
    if (!frozen) diat_critic_forward(s->d, s->x, NULL);
    diat_critic_input_gradient(s->d, s->g, NULL);
    return penalty_of(s->g);
}

static double sum_of_scores(diat_critic *d, const diat_tensor *x)
{
    diat_critic_forward(d, x, NULL);
    double s = 0.0;
    for (int i = 0; i < d->score.n; i++) s += d->score.data[i];
    return s;
}

static void make_critic(diat_critic *d, diat_tensor *x, int width)
{
    diat_error err;
    CHECK(diat_critic_init(d, ctx, width, &err) == DIAT_OK);
    diat_net_init_weights(&d->net, 77);
    /* Non-zero biases, so the input gradient's independence of them is a
     * real property and not a zero times something. */
    for (int i = 0; i < d->net.param_count; i++)
        if (d->net.params[i].ndim == 1)
            fill_random(d->net.params[i].value.data, diat_tensor_count(&d->net.params[i].value),
                        0.1f);
    diat_tensor_alloc(ctx, x, GP_BATCH, 3, DIAT_FACE_SIZE, DIAT_FACE_SIZE, &err);
    fill_random(x->data, diat_tensor_count(x), 1.0f);
}

static void test_critic_input_gradient(void)
{
    diat_error err;
    diat_critic d;
    diat_tensor x = {0}, g = {0}, dx = {0}, ones = {0};
    make_critic(&d, &x, 2);

    /* Marked parameter gradients: the input gradient must not touch them. */
    for (int i = 0; i < d.net.param_count; i++) {
        diat_tensor *grad = &d.net.params[i].grad;
        for (size_t j = 0; j < diat_tensor_count(grad); j++) grad->data[j] = 0.125f * (float)j;
    }
    CHECK(diat_critic_input_gradient(&d, &g, &err) == DIAT_ERR_ARGUMENT); /* no forward yet */
    CHECK(diat_critic_forward(&d, &x, &err) == DIAT_OK);
    CHECK(diat_critic_input_gradient(&d, &g, &err) == DIAT_OK);
    CHECK(g.n == GP_BATCH && g.c == 3 && g.h == DIAT_FACE_SIZE && g.w == DIAT_FACE_SIZE);
    int untouched = 1;
    for (int i = 0; i < d.net.param_count; i++) {
        diat_tensor *grad = &d.net.params[i].grad;
        for (size_t j = 0; j < diat_tensor_count(grad); j++)
            untouched &= grad->data[j] == 0.125f * (float)j;
    }
    CHECK(untouched);

    /* Same as the ordinary backward with dscore = 1 (which does touch them). */
    diat_tensor_alloc(ctx, &ones, GP_BATCH, 1, 1, 1, &err);
    be->fill(ctx, ones.data, 1.0f, GP_BATCH);
    diat_tensor_alloc(ctx, &dx, GP_BATCH, 3, DIAT_FACE_SIZE, DIAT_FACE_SIZE, &err);
    diat_tensor_zero(ctx, &dx);
    diat_net_zero_grad(&d.net);
    CHECK(diat_critic_backward(&d, &ones, NULL, NULL, &dx, &err) == DIAT_OK);
    double gap = 0.0, scale = 0.0;
    for (size_t j = 0; j < diat_tensor_count(&g); j++) {
        gap = fmax(gap, fabs((double)g.data[j] - dx.data[j]));
        scale = fmax(scale, fabs((double)dx.data[j]));
    }
    CHECK_MSG(gap <= 1e-6 * scale, "input gradient vs backward: %.2e of %.2e", gap, scale);

    /* Finite differences of sum(scores) on sampled pixels. A pixel moves
     * sum(scores) by ~3e-3 per unit while the forward's float roundings
     * are ~3e-7, so a 1e-3 step measured rounding as much as the gradient
     * (1.7e-2 apart on an AMD EPYC): the step is 2e-2. sum(scores) is
     * piecewise linear in x, so away from a LeakyReLU kink both one-sided
     * differences equal the gradient; a probe whose two sides disagree
     * crossed a kink and is set aside (most probes cross none). */
    double diff2 = 0.0, ref2 = 0.0;
    const float step = 2e-2f;
    int kept = 0;
    const double center = sum_of_scores(&d, &x);
    for (int s = 0; s < 64; s++) {
        size_t j = (size_t)((test_rand(&seed) + 1.0f) * 0.5f * (float)diat_tensor_count(&x));
        j %= diat_tensor_count(&x);
        float saved = x.data[j];
        x.data[j] = saved + step;
        double up = sum_of_scores(&d, &x);
        x.data[j] = saved - step;
        double down = sum_of_scores(&d, &x);
        x.data[j] = saved;
        double ahead = (up - center) / step, behind = (center - down) / step;
        if (fabs(ahead - behind) > 5e-5) continue; /* rounding alone: ~1e-5 */
        double numeric = (up - down) / (2.0 * step);
        diff2 += (numeric - g.data[j]) * (numeric - g.data[j]);
        ref2 += numeric * numeric;
        kept++;
    }
    CHECK_MSG(kept >= 48, "only %d of 64 probes away from kinks", kept);
    double rel = sqrt(diff2 / ref2);
    CHECK_MSG(rel < 5e-3, "input gradient vs finite differences: %.2e", rel);
    printf("  input gradient: vs backward %.1e, vs finite differences %.1e (%d of 64 probes)\n",
           gap / scale, rel, kept);

    diat_tensor *all[] = {&x, &g, &dx, &ones};
    for (size_t i = 0; i < 4; i++) diat_tensor_release(ctx, all[i]);
    diat_critic_free(&d);
}

static void test_critic_penalty_double_backward(void)
{
    diat_error err;
    diat_critic d;
    diat_tensor x = {0}, g = {0}, u = {0};
    make_critic(&d, &x, 1);
    gp_state state = {&d, &x, &g};

    /* Analytic: forward, g, u = dGP/dg, then the double backward. */
    CHECK(diat_critic_forward(&d, &x, &err) == DIAT_OK);
    CHECK(diat_critic_input_gradient(&d, &g, &err) == DIAT_OK);
    float gp[1];
    be->gradient_penalty_forward(ctx, &g, (float)GP_LAMBDA, gp);
    diat_tensor_alloc(ctx, &u, GP_BATCH, 3, DIAT_FACE_SIZE, DIAT_FACE_SIZE, &err);
    diat_tensor_zero(ctx, &u);
    be->gradient_penalty_backward(ctx, &g, (float)GP_LAMBDA, &u);
    sign_pattern base = {0};
    record_signs(&d, &base);
    /* Another batch through D in between: the second half must rely only on
     * what the first half kept. */
    diat_tensor other = {0};
    diat_tensor_alloc(ctx, &other, GP_BATCH, 3, DIAT_FACE_SIZE, DIAT_FACE_SIZE, &err);
    fill_random(other.data, diat_tensor_count(&other), 1.0f);
    CHECK(diat_critic_forward(&d, &other, &err) == DIAT_OK);
    diat_net_zero_grad(&d.net);
    CHECK(diat_critic_input_gradient_backward(&d, &u, &err) == DIAT_OK);
    printf("  GP(theta) = %.4f\n", gp[0]);

    /* Central differences of GP(theta), per parameter tensor, two ways.
     *
     * GP is not smooth in theta: the slopes of the LeakyReLUs (1 or 0.2) are
     * factors of g, so when a pre-activation crosses zero GP JUMPS (by about
     * 1/(number of units) of itself). Width-1 D has 8192 conv1 units at batch
     * 2; a 1e-3 step of a conv1 weight crosses several, and the difference
     * quotient is then dominated by jumps (measured: relative error ~1).
     * Between crossings, GP equals the same computation with every slope
     * held fixed, which is smooth, and that is what the analytic gradient is
     * the derivative of.
     *
     *  - frozen: the forward is not re-run, so input_gradient sees the
     *    perturbed weights with the base point's slopes. Smooth (a function
     *    of sqrt of a quadratic in any one weight), so a large step (3e-3)
     *    keeps float rounding in g negligible: measured ~1e-5, tolerance 1e-3.
     *  - full: the forward re-run, GP(theta) exactly as training computes
     *    it. The step starts at 2e-3 and is quartered until neither side
     *    flips a unit (compared with the base forward); at that step the
     *    quotient is of the smooth piece. The small steps conv1 needs
     *    (~1e-5) leave float rounding of GP (~1e-8) over 2e-5 in the
     *    quotient, up to ~2% on tensors with small entries: tolerance 5%. A
     *    wrong term in the double backward is off by O(1). */
    for (int i = 0; i < d.net.param_count; i++) {
        diat_param *p = &d.net.params[i];
        if (!p->trainable) continue;
        const size_t count = diat_tensor_count(&p->value);
        double frozen_diff2 = 0.0, frozen_ref2 = 0.0, full_diff2 = 0.0, full_ref2 = 0.0;
        double largest = 0.0, smallest_step = 1.0;
        int shrunk = 0, discarded = 0;
        for (int probe = 0; probe < 12; probe++) {
            size_t j = (size_t)((test_rand(&seed) + 1.0f) * 0.5f * (float)count) % count;
            const float saved = p->value.data[j];
            const double analytic = p->grad.data[j];

            CHECK(diat_critic_forward(&d, &x, &err) == DIAT_OK); /* the base slopes */
            p->value.data[j] = saved + 3e-3f;
            double up = gp_value(&state, 1);
            p->value.data[j] = saved - 3e-3f;
            double down = gp_value(&state, 1);
            double numeric = (up - down) / ((double)(saved + 3e-3f) - (double)(saved - 3e-3f));
            frozen_diff2 += (numeric - analytic) * (numeric - analytic);
            frozen_ref2 += numeric * numeric;

            float step = 2e-3f;
            size_t flips;
            for (;; step *= 0.25f) {
                p->value.data[j] = saved + step;
                up = gp_value(&state, 0);
                flips = sign_changes(&d, &base);
                p->value.data[j] = saved - step;
                down = gp_value(&state, 0);
                flips += sign_changes(&d, &base);
                if (!flips || step < 1e-6f) break;
                shrunk++;
            }
            p->value.data[j] = saved;
            if (flips) { /* a unit within 1e-6 of its kink: no smooth piece to probe */
                discarded++;
                continue;
            }
            numeric = (up - down) / ((double)(saved + step) - (double)(saved - step));
            full_diff2 += (numeric - analytic) * (numeric - analytic);
            full_ref2 += numeric * numeric;
            largest = fmax(largest, fabs(numeric));
            smallest_step = fmin(smallest_step, step);
        }
        CHECK_MSG(discarded <= 4, "%s: %d of 12 probes sat on kinks", p->name, discarded);
        if (p->ndim == 1) {
            /* Biases move no slope while no unit flips: GP does not depend
             * on them at all, and neither does the double backward. */
            double gsum = 0.0;
            for (size_t j = 0; j < count; j++) gsum += fabs(p->grad.data[j]);
            CHECK_MSG(largest == 0.0 && frozen_ref2 == 0.0, "%s: GP moved by %.2e", p->name,
                      largest);
            CHECK_MSG(gsum == 0.0, "%s: got a penalty gradient %.2e", p->name, gsum);
            printf("  %-14s no gradient, GP constant in it\n", p->name);
            continue;
        }
        double frozen = sqrt(frozen_diff2 / frozen_ref2), full = sqrt(full_diff2 / full_ref2);
        CHECK_MSG(frozen < 1e-3, "%s: frozen-slope relative error %.2e", p->name, frozen);
        CHECK_MSG(full < 5e-2, "%s: relative error %.2e", p->name, full);
        printf("  %-14s frozen %.1e, full %.1e (smallest step %.0e, %d steps shrunk at kinks, "
               "%d probes discarded)\n",
               p->name, frozen, full, smallest_step, shrunk, discarded);
    }

    free(base.positive);
    diat_tensor *all[] = {&x, &g, &u, &other};
    for (size_t i = 0; i < 4; i++) diat_tensor_release(ctx, all[i]);
    diat_critic_free(&d);
}

int main(void)
{
    diat_error err;
    if (diat_context_new(DIAT_BACKEND_CPU, 1, &ctx, &err) != DIAT_OK) {
        fprintf(stderr, "%s\n", err.message);
        return 1;
    }
    be = diat_context_backend(ctx);
    RUN_TEST(test_compose);
    RUN_TEST(test_squared_error);
    RUN_TEST(test_sum);
    RUN_TEST(test_ratio_loss);
    RUN_TEST(test_gradient_penalty);
    RUN_TEST(test_mul);
    RUN_TEST(test_adam);
    RUN_TEST(test_critic_input_gradient);
    RUN_TEST(test_critic_penalty_double_backward);
    diat_context_free(ctx);
    return TEST_SUMMARY();
}

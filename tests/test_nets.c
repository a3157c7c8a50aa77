/* Whole-network checks: T, M, D and DN backward passes against central
 * finite differences (in double) of a random linear functional of their
 * outputs, on small sizes; M's straight-through path against its
 * definition; parameter naming and counts. */
#include "diat-train.h"
#include "testutil.h"

#include <string.h>

static diat_context *ctx;
static unsigned long long seed = 12345;

static void fill_random(diat_tensor *t, float scale)
{
    size_t n = diat_tensor_count(t);
    for (size_t i = 0; i < n; i++) t->data[i] = scale * test_rand(&seed);
}

static double dot(const diat_tensor *a, const float *r)
{
    double s = 0.0;
    size_t n = diat_tensor_count(a);
    for (size_t i = 0; i < n; i++) s += (double)a->data[i] * r[i];
    return s;
}

/* Check every trainable parameter tensor of `net` and the input. */
static void check_net(const char *label, test_loss_fn loss, void *state, diat_net *net,
                      diat_tensor *x, const diat_tensor *dx, float eps, double tol)
{
    for (int i = 0; i < net->param_count; i++) {
        diat_param *p = &net->params[i];
        if (!p->trainable) continue;
        double rel = test_fd_relative_error(loss, state, x, p->value.data, p->grad.data,
                                            diat_tensor_count(&p->value), 12, eps, &seed);
        CHECK_MSG(rel < tol, "%s: %s relative error %.2e", label, p->name, rel);
    }
    double rel = test_fd_relative_error(loss, state, x, x->data, dx->data, diat_tensor_count(x), 24,
                                        eps, &seed);
    CHECK_MSG(rel < tol, "%s: input relative error %.2e", label, rel);
}

/* ---- T ---- */
static float *t_weights;
static double transform_loss(void *state, const diat_tensor *x)
{
    diat_transform *t = state;
    diat_transform_forward(t, x, NULL);
    return dot(&t->up[4], t_weights);
}

static void test_transform_gradients(void)
{
    diat_error err;
    diat_transform t;
    CHECK(diat_transform_init(&t, ctx, 2, &err) == DIAT_OK);
    diat_net_init_weights(&t.net, 7);
    diat_tensor x = {0}, dx = {0}, dout = {0};
    diat_tensor_alloc(ctx, &x, 2, 3, 32, 32, &err);
    fill_random(&x, 1.0f);
    CHECK(diat_transform_forward(&t, &x, &err) == DIAT_OK);
    CHECK(t.up[4].c == 3 && t.up[4].h == 32 && t.up[4].w == 32);
    diat_tensor_alloc(ctx, &dout, 2, 3, 32, 32, &err);
    fill_random(&dout, 1.0f);
    t_weights = dout.data;
    diat_tensor_alloc(ctx, &dx, 2, 3, 32, 32, &err);
    diat_tensor_zero(ctx, &dx);
    diat_net_zero_grad(&t.net);
    CHECK(diat_transform_backward(&t, &dout, &dx, &err) == DIAT_OK);
    check_net("T", transform_loss, &t, &t.net, &x, &dx, 1e-3f, 2e-2);
    diat_tensor_release(ctx, &x);
    diat_tensor_release(ctx, &dx);
    diat_tensor_release(ctx, &dout);
    diat_transform_free(&t);
}

static void test_transform_identity_when_last_layer_zero(void)
{
    diat_error err;
    diat_transform t;
    diat_transform_init(&t, ctx, 3, &err);
    diat_net_init_weights(&t.net, 3);
    diat_tensor_zero(ctx, &diat_net_find(&t.net, "T.up5.weight")->value);
    diat_tensor_zero(ctx, &diat_net_find(&t.net, "T.up5.bias")->value);
    diat_tensor x = {0};
    diat_tensor_alloc(ctx, &x, 1, 3, 64, 64, &err);
    fill_random(&x, 1.0f);
    diat_transform_forward(&t, &x, &err);
    CHECK(memcmp(t.up[4].data, x.data, diat_tensor_count(&x) * sizeof(float)) == 0);
    diat_tensor_release(ctx, &x);
    diat_transform_free(&t);
}

/* ---- M ---- */
static float *m_weights;
static double mask_loss(void *state, const diat_tensor *x)
{
    diat_mask *m = state;
    diat_mask_forward(m, x, NULL);
    return dot(&m->norm[4], m_weights);
}

static void test_mask_gradients(void)
{
    diat_error err;
    diat_mask m;
    CHECK(diat_mask_init(&m, ctx, 2, &err) == DIAT_OK);
    diat_net_init_weights(&m.net, 11);
    m.net.training = 1;
    diat_tensor x = {0}, dx = {0}, de = {0};
    diat_tensor_alloc(ctx, &x, 3, 3, 16, 16, &err);
    fill_random(&x, 1.0f);
    CHECK(diat_mask_forward(&m, &x, &err) == DIAT_OK);
    CHECK(m.norm[4].c == 1 && m.norm[4].h == 4 && m.mask.h == 16 && m.mask.w == 16);
    diat_tensor_alloc(ctx, &de, 3, 1, 4, 4, &err);
    fill_random(&de, 1.0f);
    m_weights = de.data;
    diat_tensor_alloc(ctx, &dx, 3, 3, 16, 16, &err);
    diat_tensor_zero(ctx, &dx);
    diat_net_zero_grad(&m.net);
    CHECK(diat_mask_backward(&m, NULL, &de, &dx, &err) == DIAT_OK);
    check_net("M", mask_loss, &m, &m.net, &x, &dx, 1e-3f, 2e-2);

    /* Straight-through: dL/dm reaches e as upsample^T(G^T(dL/dm)). */
    diat_tensor dmask = {0}, g_bin = {0}, g_e = {0}, dx2 = {0};
    diat_tensor_alloc(ctx, &dmask, 3, 1, 16, 16, &err);
    fill_random(&dmask, 1.0f);
    diat_tensor_alloc(ctx, &g_bin, 3, 1, 16, 16, &err);
    diat_tensor_alloc(ctx, &g_e, 3, 1, 4, 4, &err);
    diat_tensor_alloc(ctx, &dx2, 3, 3, 16, 16, &err);
    diat_tensor_zero(ctx, &g_bin);
    diat_tensor_zero(ctx, &g_e);
    const diat_backend *be = diat_context_backend(ctx);
    be->gaussian5_backward(ctx, &dmask, diat_gaussian5_taps(), &g_bin);
    be->upsample_bilinear_backward(ctx, &g_bin, 4, &g_e);
    mask_loss(&m, &x);
    diat_tensor_zero(ctx, &dx);
    diat_tensor_zero(ctx, &dx2);
    diat_mask_backward(&m, &dmask, NULL, &dx, &err);
    diat_mask_backward(&m, NULL, &g_e, &dx2, &err);
    double worst = 0.0;
    for (size_t i = 0; i < diat_tensor_count(&dx); i++)
        worst = fmax(worst, fabs((double)dx.data[i] - dx2.data[i]));
    CHECK_MSG(worst < 1e-5, "straight-through path differs by %g", worst);
    diat_tensor *all[] = {&x, &dx, &de, &dmask, &g_bin, &g_e, &dx2};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) diat_tensor_release(ctx, all[i]);
    diat_mask_free(&m);
}

/* ---- D ---- */
static float *d_feat4, *d_feat5;
static double critic_loss(void *state, const diat_tensor *x)
{
    diat_critic *d = state;
    diat_critic_forward(d, x, NULL);
    double s = 0.0;
    for (int i = 0; i < d->score.n; i++) s += 0.7 * d->score.data[i];
    return s + dot(&d->feat[3], d_feat4) + dot(&d->feat[4], d_feat5);
}

static void test_critic_gradients(void)
{
    diat_error err;
    diat_critic d;
    CHECK(diat_critic_init(&d, ctx, 1, &err) == DIAT_OK);
    diat_net_init_weights(&d.net, 5);
    diat_tensor x = {0}, dx = {0}, ds = {0}, f4 = {0}, f5 = {0};
    diat_tensor_alloc(ctx, &x, 2, 3, 128, 128, &err);
    fill_random(&x, 1.0f);
    CHECK(diat_critic_forward(&d, &x, &err) == DIAT_OK);
    CHECK(d.feat[3].c == 8 && d.feat[3].h == 8 && d.feat[4].h == 4 && d.score.n == 2);
    diat_tensor_alloc(ctx, &ds, 2, 1, 1, 1, &err);
    ds.data[0] = ds.data[1] = 0.7f;
    diat_tensor_alloc(ctx, &f4, 2, 8, 8, 8, &err);
    diat_tensor_alloc(ctx, &f5, 2, 8, 4, 4, &err);
    fill_random(&f4, 0.1f);
    fill_random(&f5, 0.1f);
    d_feat4 = f4.data;
    d_feat5 = f5.data;
    diat_tensor_alloc(ctx, &dx, 2, 3, 128, 128, &err);
    diat_tensor_zero(ctx, &dx);
    diat_net_zero_grad(&d.net);
    CHECK(diat_critic_backward(&d, &ds, &f4, &f5, &dx, &err) == DIAT_OK);
    /* D's conv1 feeds 4096 LeakyReLU kinks per channel at 128x128; central
     * differences cross a few, so allow 5% (a wrong backward is off by O(1)). */
    check_net("D", critic_loss, &d, &d.net, &x, &dx, 1e-3f, 5e-2);
    diat_tensor *all[] = {&x, &dx, &ds, &f4, &f5};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) diat_tensor_release(ctx, all[i]);
    diat_critic_free(&d);
}

/* ---- DN ---- */
static float *dn_weights;
static double denoiser_loss(void *state, const diat_tensor *x)
{
    diat_denoiser *dn = state;
    diat_denoiser_forward(dn, x, NULL);
    return dot(&dn->out, dn_weights);
}

static void test_denoiser_gradients(void)
{
    diat_error err;
    diat_denoiser dn;
    CHECK(diat_denoiser_init(&dn, ctx, 4, 3, &err) == DIAT_OK);
    diat_net_init_weights(&dn.net, 9);
    diat_tensor x = {0}, dx = {0}, dout = {0};
    diat_tensor_alloc(ctx, &x, 2, 3, 12, 10, &err);
    fill_random(&x, 1.0f);
    CHECK(diat_denoiser_forward(&dn, &x, &err) == DIAT_OK);
    diat_tensor_alloc(ctx, &dout, 2, 3, 12, 10, &err);
    fill_random(&dout, 1.0f);
    dn_weights = dout.data;
    diat_tensor_alloc(ctx, &dx, 2, 3, 12, 10, &err);
    diat_tensor_zero(ctx, &dx);
    diat_net_zero_grad(&dn.net);
    CHECK(diat_denoiser_backward(&dn, &dout, &dx, &err) == DIAT_OK);
    check_net("DN", denoiser_loss, &dn, &dn.net, &x, &dx, 1e-3f, 2e-2);
    diat_tensor_release(ctx, &x);
    diat_tensor_release(ctx, &dx);
    diat_tensor_release(ctx, &dout);
    diat_denoiser_free(&dn);
}

/* A frozen network still passes input gradients but builds no parameter
 * gradients (DN and phi in training, D in the generator step). */
static void test_frozen_net_gives_input_gradient_only(void)
{
    diat_error err;
    diat_denoiser dn;
    diat_denoiser_init(&dn, ctx, 4, 3, &err);
    diat_net_init_weights(&dn.net, 9);
    diat_tensor x = {0}, dout = {0}, dx_trained = {0}, dx_frozen = {0};
    diat_tensor_alloc(ctx, &x, 2, 3, 8, 8, &err);
    diat_tensor_alloc(ctx, &dout, 2, 3, 8, 8, &err);
    diat_tensor_alloc(ctx, &dx_trained, 2, 3, 8, 8, &err);
    diat_tensor_alloc(ctx, &dx_frozen, 2, 3, 8, 8, &err);
    fill_random(&x, 1.0f);
    fill_random(&dout, 1.0f);
    diat_tensor_zero(ctx, &dx_trained);
    diat_tensor_zero(ctx, &dx_frozen);
    diat_denoiser_forward(&dn, &x, &err);
    diat_net_zero_grad(&dn.net);
    diat_denoiser_backward(&dn, &dout, &dx_trained, &err);
    diat_net_zero_grad(&dn.net);
    diat_net_set_trainable(&dn.net, 0);
    diat_denoiser_backward(&dn, &dout, &dx_frozen, &err);
    int grads_zero = 1;
    for (int i = 0; i < dn.net.param_count; i++)
        for (size_t j = 0; j < diat_tensor_count(&dn.net.params[i].grad); j++)
            grads_zero &= dn.net.params[i].grad.data[j] == 0.0f;
    CHECK(grads_zero);
    CHECK(memcmp(dx_trained.data, dx_frozen.data, diat_tensor_count(&x) * sizeof(float)) == 0);
    diat_net_set_trainable(&dn.net, 1);
    diat_denoiser_backward(&dn, &dout, NULL, &err);
    CHECK(dn.net.params[0].grad.data[0] != 0.0f);
    diat_tensor *all[] = {&x, &dout, &dx_trained, &dx_frozen};
    for (size_t i = 0; i < 4; i++) diat_tensor_release(ctx, all[i]);
    diat_denoiser_free(&dn);
}

static void test_default_model_size(void)
{
    /* The budget: a shipped T+M model is at most 10 MB in F16. */
    diat_error err;
    diat_transform t;
    diat_mask m;
    CHECK(diat_transform_init(&t, ctx, DIAT_DEFAULT_WIDTH, &err) == DIAT_OK);
    CHECK(diat_mask_init(&m, ctx, DIAT_DEFAULT_MASK_WIDTH, &err) == DIAT_OK);
    size_t params = diat_net_parameter_count(&t.net) + diat_net_parameter_count(&m.net);
    CHECK_MSG(params * 2 <= 10u * 1000 * 1000, "%zu parameters", params);
    CHECK(diat_net_find(&t.net, "T.up3.bias") != NULL);
    CHECK(diat_net_find(&m.net, "M.bn5.running_var") != NULL);
    CHECK(diat_net_find(&m.net, "M.conv5.bias") == NULL);
    diat_transform_free(&t);
    diat_mask_free(&m);
}

static void test_bad_shapes(void)
{
    diat_error err;
    diat_transform t;
    diat_transform_init(&t, ctx, 2, &err);
    diat_tensor x = {0};
    diat_tensor_alloc(ctx, &x, 1, 3, 40, 40, &err);
    CHECK(diat_transform_forward(&t, &x, &err) == DIAT_ERR_ARGUMENT);
    CHECK(strstr(err.message, "multiples of 32") != NULL);
    diat_tensor_release(ctx, &x);
    diat_transform_free(&t);
    CHECK(diat_transform_init(&t, ctx, 0, &err) == DIAT_ERR_ARGUMENT);
}

int main(void)
{
    diat_error err;
    if (diat_context_new(DIAT_BACKEND_CPU, 1, &ctx, &err) != DIAT_OK) {
        fprintf(stderr, "%s\n", err.message);
        return 1;
    }
    RUN_TEST(test_transform_gradients);
    RUN_TEST(test_transform_identity_when_last_layer_zero);
    RUN_TEST(test_mask_gradients);
    RUN_TEST(test_critic_gradients);
    RUN_TEST(test_denoiser_gradients);
    RUN_TEST(test_frozen_net_gives_input_gradient_only);
    RUN_TEST(test_default_model_size);
    RUN_TEST(test_bad_shapes);
    diat_context_free(ctx);
    return TEST_SUMMARY();
}

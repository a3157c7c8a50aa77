/* Backend parity, part 2: the whole networks (T, M, D with its input
 * gradient and the WGAN-GP double backward, DN, the face recognition
 * network phi) and one complete training step through the trainer library.
 *
 * Networks: each is built on both contexts with the same parameters (the
 * seeded initialisation writes host values; biases and norm parameters get
 * the same random values too, so none is a trivial zero), run forward on the
 * same input, and every activation it keeps is compared.
 *
 * The backward is then compared from ONE forward state: the DUT's kept
 * activations are copied into the reference network first. ReLU, LeakyReLU,
 * max pooling and M's binarization pick a branch by the sign (or the winner)
 * of a forward value; a deep network at batch 2 has ~10^6 such units and a
 * few of them lie within float rounding of their kink, so two correct
 * backends can send one unit's gradient different ways and then differ by
 * O(1e-2) at a few inputs. The forward values themselves are continuous in
 * those units and are compared as computed. A training step cannot be
 * split like this: it gets the reasoned, looser bounds documented there. */
#include "parity.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifdef PARITY_WITH_TRAINER
#include "trainer.h"
#endif

/* ---- helpers ---------------------------------------------------------------- */

/* A FAIL line for a network call that returned an error on one side. */
static int call_ok(const char *what, int side, diat_status st, const diat_error *err)
{
    if (st == DIAT_OK) return 1;
    check_with(name_of("%s (%s side)", what, side == REF ? "reference" : "DUT"), INFINITY,
               PARITY_TOL, err->message);
    return 0;
}

static int is_named(const char *name, const char *part)
{
    return strstr(name, part) != NULL;
}

/* The seeded He-uniform weights on both sides, then the same random values
 * for every 1-d parameter (biases, norm gamma/beta, running statistics),
 * which the initialisation would leave at 0 or 1. */
static void same_parameters(diat_net *ref, diat_net *dut, uint64_t seed)
{
    diat_net_init_weights(ref, seed);
    diat_net_init_weights(dut, seed);
    for (int i = 0; i < ref->param_count; i++) {
        diat_param *p = &ref->params[i];
        if (p->ndim != 1) continue;
        int positive = is_named(p->name, "running_var") ||
                       (is_named(p->name, ".bn") && is_named(p->name, ".weight"));
        size_t count = diat_tensor_count(&p->value);
        float *host = random_host(count, positive ? 0.5f : -0.2f, positive ? 1.5f : 0.2f);
        diat_tensor_upload(parity.ctx[REF], &p->value, host);
        diat_tensor_upload(parity.ctx[DUT], &dut->params[i].value, host);
        free(host);
    }
    jitter_net(dut);
}

/* Gradient buffers start with the same random values: nets accumulate too. */
static void same_gradients(diat_net *ref, diat_net *dut)
{
    for (int i = 0; i < ref->param_count; i++) {
        if (!ref->params[i].grad.data) continue;
        size_t count = diat_tensor_count(&ref->params[i].grad);
        float *host = random_host(count, -0.1f, 0.1f);
        diat_tensor_upload(parity.ctx[REF], &ref->params[i].grad, host);
        diat_tensor_upload(parity.ctx[DUT], &dut->params[i].grad, host);
        free(host);
    }
}

static void check_gradients(const char *label, const diat_net *ref, const diat_net *dut, double tol)
{
    for (int i = 0; i < ref->param_count; i++)
        if (ref->params[i].grad.data)
            check_tensors(name_of("%s: d%s", label, ref->params[i].name), &ref->params[i].grad,
                          &dut->params[i].grad, tol);
}

/* The DUT's forward state into the reference network (see the top). */
static void adopt(diat_tensor *ref, const diat_tensor *dut)
{
    copy_across(DUT, dut, REF, ref);
}

/* M's binary mask is a step function of the upsampled e: pixels the two
 * sides binarize differently are ties when the two upsampled values lie on
 * both sides of the threshold (|ref - 0.5| no more than their difference
 * there), which a correct pair of backends may do; any other is wrong. */
static void binary_differences(diat_mask *m[2], size_t *ties, size_t *wrong)
{
    size_t count = diat_tensor_count(&m[REF]->binary);
    float *ur = download(REF, &m[REF]->upsampled), *ud = download(DUT, &m[DUT]->upsampled);
    float *br = download(REF, &m[REF]->binary), *bd = download(DUT, &m[DUT]->binary);
    *ties = *wrong = 0;
    for (size_t i = 0; i < count; i++) {
        if (br[i] == bd[i]) continue;
        double margin = fabs((double)ud[i] - ur[i]) + 1e-7;
        if (fabs((double)ur[i] - 0.5) <= margin)
            ++*ties;
        else
            ++*wrong;
    }
    free(ur);
    free(ud);
    free(br);
    free(bd);
}

/* The binary mask compared exactly but for ties. Where ties exist the
 * reference's mask is recomputed from the DUT's binary mask, so that the
 * mask (the Gaussian) is still compared on identical inputs. */
static void check_binary_mask(const char *label, diat_mask *m[2])
{
    size_t ties, wrong;
    binary_differences(m, &ties, &wrong);
    char detail[96];
    snprintf(detail, sizeof detail, "err counts differing pixels; %zu ties at 0.5 allowed", ties);
    check_with(name_of("%s: binary (exact but for ties)", label), (double)wrong, 0.0, detail);
    if (ties) {
        adopt(&m[REF]->binary, &m[DUT]->binary);
        parity.be[REF]->gaussian5_forward(parity.ctx[REF], &m[REF]->binary, diat_gaussian5_taps(),
                                          &m[REF]->mask);
    }
}

/* ---- T ------------------------------------------------------------------------ */

static void check_transform(void)
{
    diat_transform t[2];
    diat_error err;
    int ok = 1;
    memset(t, 0, sizeof t);
    for (int side = 0; side < 2; side++)
        ok &=
            call_ok("T init", side, diat_transform_init(&t[side], parity.ctx[side], 3, &err), &err);
    twin x = twin_random(2, 3, 64, 64, -1.0f, 1.0f), dout = twin_random(2, 3, 64, 64, -1.0f, 1.0f);
    twin dx = twin_random(2, 3, 64, 64, -1.0f, 1.0f);
    if (ok) {
        same_parameters(&t[REF].net, &t[DUT].net, 101);
        for (int side = 0; side < 2; side++)
            ok &= call_ok("T forward", side, diat_transform_forward(&t[side], &x.t[side], &err),
                          &err);
    }
    if (ok) {
        for (int i = 0; i < 5; i++) {
            check_tensors(name_of("T 2x3x64x64 forward: down%d", i + 1), &t[REF].down[i],
                          &t[DUT].down[i], PARITY_TOL);
            check_tensors(name_of("T 2x3x64x64 forward: up%d conv", i + 1), &t[REF].up_conv[i],
                          &t[DUT].up_conv[i], PARITY_TOL);
            check_tensors(name_of("T 2x3x64x64 forward: up%d%s", i + 1, i == 4 ? " = T(x)" : ""),
                          &t[REF].up[i], &t[DUT].up[i], PARITY_TOL);
            adopt(&t[REF].down[i], &t[DUT].down[i]);
            adopt(&t[REF].up[i], &t[DUT].up[i]);
        }
        same_gradients(&t[REF].net, &t[DUT].net);
        for (int side = 0; side < 2; side++)
            ok &=
                call_ok("T backward", side,
                        diat_transform_backward(&t[side], &dout.t[side], &dx.t[side], &err), &err);
    }
    if (ok) {
        check_gradients("T backward", &t[REF].net, &t[DUT].net, PARITY_TOL);
        check_twin("T backward: dx", &dx, PARITY_TOL);
        /* dx NULL, as the trainer asks: the parameter gradients add up again. */
        for (int side = 0; side < 2; side++)
            ok &= call_ok("T backward, dx NULL", side,
                          diat_transform_backward(&t[side], &dout.t[side], NULL, &err), &err);
        if (ok) check_gradients("T backward again, dx NULL", &t[REF].net, &t[DUT].net, PARITY_TOL);
    }
    twin_release(&x);
    twin_release(&dout);
    twin_release(&dx);
    for (int side = 0; side < 2; side++) diat_transform_free(&t[side]);
}

/* ---- M ------------------------------------------------------------------------ */

static void check_mask_net(void)
{
    diat_mask m[2];
    diat_mask *mp[2] = {&m[REF], &m[DUT]};
    diat_error err;
    int ok = 1;
    memset(m, 0, sizeof m);
    for (int side = 0; side < 2; side++)
        ok &= call_ok("M init", side, diat_mask_init(&m[side], parity.ctx[side], 3, &err), &err);
    twin x = twin_random(3, 3, 32, 32, -1.0f, 1.0f), dx = twin_random(3, 3, 32, 32, -1.0f, 1.0f);
    twin dmask = twin_random(3, 1, 32, 32, -1.0f, 1.0f), de = twin_random(3, 1, 8, 8, -1.0f, 1.0f);
    const char *label = "M 3x3x32x32 training forward";
    if (ok) {
        same_parameters(&m[REF].net, &m[DUT].net, 202);
        for (int side = 0; side < 2; side++) {
            m[side].net.training = 1;
            ok &= call_ok("M forward", side, diat_mask_forward(&m[side], &x.t[side], &err), &err);
        }
    }
    if (ok) {
        for (int i = 0; i < 5; i++) {
            check_tensors(name_of("%s: conv%d", label, i + 1), &m[REF].conv[i], &m[DUT].conv[i],
                          PARITY_TOL);
            check_tensors(name_of("%s: bn%d save_mean", label, i + 1), &m[REF].save_mean[i],
                          &m[DUT].save_mean[i], PARITY_TOL);
            check_tensors(name_of("%s: bn%d save_invstd", label, i + 1), &m[REF].save_invstd[i],
                          &m[DUT].save_invstd[i], PARITY_TOL);
            check_tensors(name_of("%s: norm%d%s", label, i + 1, i == 4 ? " = e" : ""),
                          &m[REF].norm[i], &m[DUT].norm[i], PARITY_TOL);
        }
        for (int i = 0; i < m[REF].net.param_count; i++)
            if (is_named(m[REF].net.params[i].name, "running"))
                check_tensors(name_of("%s: %s", label, m[REF].net.params[i].name),
                              &m[REF].net.params[i].value, &m[DUT].net.params[i].value, PARITY_TOL);
        check_tensors(name_of("%s: e upsampled", label), &m[REF].upsampled, &m[DUT].upsampled,
                      PARITY_TOL);
        check_binary_mask(label, mp);
        check_tensors(name_of("%s: m", label), &m[REF].mask, &m[DUT].mask, PARITY_TOL);
        for (int i = 0; i < 5; i++) {
            adopt(&m[REF].conv[i], &m[DUT].conv[i]);
            adopt(&m[REF].norm[i], &m[DUT].norm[i]);
            adopt(&m[REF].save_mean[i], &m[DUT].save_mean[i]);
            adopt(&m[REF].save_invstd[i], &m[DUT].save_invstd[i]);
        }
        same_gradients(&m[REF].net, &m[DUT].net);
        for (int side = 0; side < 2; side++)
            ok &= call_ok(
                "M backward", side,
                diat_mask_backward(&m[side], &dmask.t[side], &de.t[side], &dx.t[side], &err), &err);
    }
    if (ok) {
        check_gradients("M backward from dm and de", &m[REF].net, &m[DUT].net, PARITY_TOL);
        check_twin("M backward from dm and de: dx", &dx, PARITY_TOL);
        /* Inference: batch norm folded into the convolutions, running stats. */
        label = "M 3x3x32x32 inference forward";
        for (int side = 0; side < 2 && ok; side++) {
            m[side].net.training = 0;
            ok &= call_ok("M inference forward", side,
                          diat_mask_forward(&m[side], &x.t[side], &err), &err);
        }
        if (ok) {
            check_tensors(name_of("%s: e", label), &m[REF].norm[4], &m[DUT].norm[4], PARITY_TOL);
            check_binary_mask(label, mp);
            check_tensors(name_of("%s: m", label), &m[REF].mask, &m[DUT].mask, PARITY_TOL);
        }
    }
    twin *all[] = {&x, &dx, &dmask, &de};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) twin_release(all[i]);
    for (int side = 0; side < 2; side++) diat_mask_free(&m[side]);
}

/* ---- D: forward, backward, input gradient, double backward ---------------------- */

static void check_critic(void)
{
    diat_critic d[2];
    diat_error err;
    int ok = 1;
    memset(d, 0, sizeof d);
    for (int side = 0; side < 2; side++)
        ok &= call_ok("D init", side, diat_critic_init(&d[side], parity.ctx[side], 2, &err), &err);
    const int n = 2, face = DIAT_FACE_SIZE;
    twin x = twin_random(n, 3, face, face, -1.0f, 1.0f), dx = twin_random(n, 3, face, face, -1, 1);
    twin other = twin_random(n, 3, face, face, -1.0f, 1.0f),
         u = twin_random(n, 3, face, face, -1, 1);
    twin dscore = twin_random(n, 1, 1, 1, -1.0f, 1.0f);
    twin dfeat4 = {{{0}}}, dfeat5 = {{{0}}};
    diat_tensor g[2] = {{0}};
    const char *label = "D 2x3x128x128";
    if (ok) {
        same_parameters(&d[REF].net, &d[DUT].net, 303);
        for (int side = 0; side < 2; side++)
            ok &= call_ok("D forward", side, diat_critic_forward(&d[side], &x.t[side], &err), &err);
    }
    if (ok) {
        for (int i = 0; i < 5; i++)
            check_tensors(name_of("%s forward: feat%d", label, i + 1), &d[REF].feat[i],
                          &d[DUT].feat[i], PARITY_TOL);
        check_tensors(name_of("%s forward: score", label), &d[REF].score, &d[DUT].score,
                      PARITY_TOL);
        for (int i = 0; i < 5; i++) adopt(&d[REF].feat[i], &d[DUT].feat[i]);
        const diat_tensor *f4 = &d[REF].feat[3], *f5 = &d[REF].feat[4];
        dfeat4 = twin_random(f4->n, f4->c, f4->h, f4->w, -0.1f, 0.1f);
        dfeat5 = twin_random(f5->n, f5->c, f5->h, f5->w, -0.1f, 0.1f);
        same_gradients(&d[REF].net, &d[DUT].net);
        for (int side = 0; side < 2; side++)
            ok &= call_ok("D backward", side,
                          diat_critic_backward(&d[side], &dscore.t[side], &dfeat4.t[side],
                                               &dfeat5.t[side], &dx.t[side], &err),
                          &err);
    }
    if (ok) {
        check_gradients("D backward from score, feat4, feat5", &d[REF].net, &d[DUT].net,
                        PARITY_TOL);
        check_twin("D backward from score, feat4, feat5: dx", &dx, PARITY_TOL);
        /* WGAN-GP: g = d(sum of scores)/dx, then (after a forward of another
         * batch, as in the critic step) the exact double backward from u. */
        for (int side = 0; side < 2; side++)
            ok &= call_ok("D input gradient", side,
                          diat_critic_input_gradient(&d[side], &g[side], &err), &err);
        if (ok) check_tensors(name_of("%s input gradient: g", label), &g[REF], &g[DUT], PARITY_TOL);
        for (int side = 0; side < 2 && ok; side++)
            ok &= call_ok("D forward (another batch)", side,
                          diat_critic_forward(&d[side], &other.t[side], &err), &err);
        if (ok) same_gradients(&d[REF].net, &d[DUT].net);
        for (int side = 0; side < 2 && ok; side++)
            ok &= call_ok("D input-gradient backward", side,
                          diat_critic_input_gradient_backward(&d[side], &u.t[side], &err), &err);
        if (ok)
            check_gradients("D input-gradient backward (WGAN-GP double backward)", &d[REF].net,
                            &d[DUT].net, PARITY_TOL);
    }
    twin *all[] = {&x, &dx, &other, &u, &dscore, &dfeat4, &dfeat5};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) twin_release(all[i]);
    for (int side = 0; side < 2; side++) {
        diat_tensor_release(parity.ctx[side], &g[side]);
        diat_critic_free(&d[side]);
    }
}

/* ---- DN ----------------------------------------------------------------------- */

static void check_denoiser(void)
{
    diat_denoiser dn[2];
    diat_error err;
    int ok = 1;
    memset(dn, 0, sizeof dn);
    for (int side = 0; side < 2; side++)
        ok &= call_ok("DN init", side, diat_denoiser_init(&dn[side], parity.ctx[side], 4, 3, &err),
                      &err);
    twin x = twin_random(2, 3, 13, 10, -1.0f, 1.0f), dout = twin_random(2, 3, 13, 10, -1.0f, 1.0f);
    twin dx = twin_random(2, 3, 13, 10, -1.0f, 1.0f);
    const char *label = "DN 2x3x13x10 width 4 depth 3";
    if (ok) {
        same_parameters(&dn[REF].net, &dn[DUT].net, 404);
        for (int side = 0; side < 2; side++)
            ok &= call_ok("DN forward", side, diat_denoiser_forward(&dn[side], &x.t[side], &err),
                          &err);
    }
    if (ok) {
        for (int i = 0; i < 3; i++) {
            check_tensors(name_of("%s forward: conv%d", label, i + 1), &dn[REF].act[i],
                          &dn[DUT].act[i], PARITY_TOL);
            adopt(&dn[REF].act[i], &dn[DUT].act[i]);
        }
        check_tensors(name_of("%s forward: DN(x)", label), &dn[REF].out, &dn[DUT].out, PARITY_TOL);
        same_gradients(&dn[REF].net, &dn[DUT].net);
        for (int side = 0; side < 2; side++)
            ok &=
                call_ok("DN backward", side,
                        diat_denoiser_backward(&dn[side], &dout.t[side], &dx.t[side], &err), &err);
    }
    if (ok) {
        check_gradients(name_of("%s backward", label), &dn[REF].net, &dn[DUT].net, PARITY_TOL);
        check_twin(name_of("%s backward: dx", label), &dx, PARITY_TOL);
    }
    twin_release(&x);
    twin_release(&dout);
    twin_release(&dx);
    for (int side = 0; side < 2; side++) diat_denoiser_free(&dn[side]);
}

/* ---- phi: the face recognition network, shipped weights ------------------------ */

static void check_face_pass(diat_face_recognition f[2], int n, int size)
{
    char label[96];
    snprintf(label, sizeof label, "phi %dx3x%dx%d", n, size, size);
    /* From a 128x128 crop everything follows the resize: see RESIZE_TOL. */
    const double tol = size == DIAT_FACE_RECOGNITION_SIZE ? PARITY_TOL : RESIZE_TOL;
    diat_error err;
    int ok = 1;
    twin x = twin_random(n, 3, size, size, -1.0f, 1.0f), dx = twin_random(n, 3, size, size, -1, 1);
    twin demb = twin_random(n, DIAT_FACE_RECOGNITION_DIM, 1, 1, -1.0f, 1.0f);
    for (int side = 0; side < 2; side++)
        ok &= call_ok("phi forward", side,
                      diat_face_recognition_forward(&f[side], &x.t[side], &err), &err);
    if (ok) {
        if (size != DIAT_FACE_RECOGNITION_SIZE) {
            check_tensors(name_of("%s forward: resized to 150x150", label), &f[REF].resized,
                          &f[DUT].resized, tol);
            adopt(&f[REF].resized, &f[DUT].resized);
        }
        check_tensors(name_of("%s forward: stem", label), &f[REF].stem, &f[DUT].stem, tol);
        check_tensors(name_of("%s forward: max pool", label), &f[REF].pooled, &f[DUT].pooled, tol);
        adopt(&f[REF].stem, &f[DUT].stem);
        adopt(&f[REF].pooled, &f[DUT].pooled);
        for (int i = 0; i < DIAT_FACE_RECOGNITION_BLOCKS; i++) {
            diat_face_residual_block *br = &f[REF].block[i], *bd = &f[DUT].block[i];
            check_tensors(name_of("%s forward: block%d hidden", label, i + 1), &br->hidden,
                          &bd->hidden, tol);
            check_tensors(name_of("%s forward: block%d out", label, i + 1), &br->out, &bd->out,
                          tol);
            adopt(&br->hidden, &bd->hidden);
            adopt(&br->out, &bd->out);
        }
        check_tensors(name_of("%s forward: feature", label), &f[REF].feature, &f[DUT].feature, tol);
        check_tensors(name_of("%s forward: embedding", label), &f[REF].embedding, &f[DUT].embedding,
                      tol);
        adopt(&f[REF].feature, &f[DUT].feature);
        for (int side = 0; side < 2; side++)
            ok &= call_ok(
                "phi backward", side,
                diat_face_recognition_backward(&f[side], &demb.t[side], &dx.t[side], &err), &err);
        if (ok) check_twin(name_of("%s backward: dx", label), &dx, tol);
    }
    twin_release(&x);
    twin_release(&dx);
    twin_release(&demb);
}

static void check_face_recognition(void)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/models/face-recognition-resnet29.safetensors",
             parity.source_root);
    diat_face_recognition f[2];
    diat_error err;
    int ok = 1;
    memset(f, 0, sizeof f);
    for (int side = 0; side < 2; side++) {
        ok &= call_ok("phi init", side,
                      diat_face_recognition_init(&f[side], parity.ctx[side], &err), &err);
        if (ok)
            ok &= call_ok(name_of("phi load %s", path), side,
                          diat_face_recognition_load(&f[side], path, &err), &err);
    }
    if (ok) {
        jitter_net(&f[DUT].net);
        jitter_tensor(&f[DUT].stem_weight);
        jitter_tensor(&f[DUT].stem_bias);
        check_face_pass(f, 2, DIAT_FACE_SIZE);             /* the trainer's crops: resized inside */
        check_face_pass(f, 1, DIAT_FACE_RECOGNITION_SIZE); /* a face chip: no resize */
    }
    for (int side = 0; side < 2; side++) diat_face_recognition_free(&f[side]);
}

void parity_nets(void)
{
    void (*const nets[])(void) = {check_transform, check_mask_net, check_critic, check_denoiser,
                                  check_face_recognition};
    for (size_t i = 0; i < sizeof nets / sizeof nets[0]; i++) {
        random_seed(3000 + i);
        nets[i]();
    }
}

/* ==== one training step ========================================================== */

#ifndef PARITY_WITH_TRAINER
void parity_training_step(void)
{
    note("training step: not built (configured with -Dtrainer=disabled)");
}
#else

/* Batch 4 and widths 4, to stay fast; every part of the step still runs:
 * the critic step with the WGAN-GP double backward, all five generator
 * terms (D's features, phi, DN, the ratio) and both Adam updates. n_critic 1
 * keeps D's gradients those of the identical initial parameters. Every
 * other setting is diat-train's default (lambdas, lr 1e-4, betas, flips).
 * STEP_BATCH is the --batch of STEP_OPTIONS. */
#define STEP_BATCH 4
#define STEP_OPTIONS                                                                               \
    "transfer --attribute Eyeglasses --direction remove --batch 4 --width 4 --mask-width 4 "       \
    "--critic-width 4 --n-critic 1 --quiet"
#define STEP_DN_WIDTH 4
#define STEP_DN_DEPTH 3
#define STEP_FIRST_SEED 7
#define STEP_SEEDS 8

/* Tolerances of the step. A step cannot adopt one forward state as the
 * network checks do: a unit within float rounding of its kink (ReLU,
 * LeakyReLU, max pooling; ~10^7 units in a step) may take the other branch
 * on the other backend. Most of them feed sums over a whole batch of
 * 128x128 images, where one unit is ~1e-6 of the sum; but the coarsest maps
 * of T (4x4, 8x8) and D (conv5: 4x4) feed weight gradients that sum only 64
 * or 256 positions at batch 4, and D's LeakyReLU slopes are factors of the
 * input gradient g that the penalty squares: one unit there moves a
 * gradient (or the penalty) by up to a few 1e-2. M's gradients follow
 * dm = (T(x) - x) dL/dy pixel by pixel. The generator step also runs on D
 * after one Adam step, lr g / (|g| + eps) ~ lr sign(g), where a gradient
 * within rounding of zero moves its weight the other way (2 lr = 2e-4).
 * Continuous in all of that are the critic's score means (identical
 * parameters; measured against the size of a score, since a mean of signed
 * scores may cancel) and M's running statistics: 1e-4; the generator's losses:
 * 1e-3; the penalty and the gradients of D, T and M: 5e-2. A wrong kernel
 * is off by O(1), or by a whole channel or batch element; the networks
 * above are held to 1e-5. Measured in the self-test with DIAT_PARITY_JITTER
 * (the DUT's parameters moved by that much, relative) over seeds 7 to 26,
 * as score means / generator losses / penalty and gradients: at 1e-7
 * (rounding-sized) up to 2.2e-6 / 7.3e-6 / 1.1e-3, at 1e-6 up to 6.3e-6 /
 * 8.9e-5 / 2.1e-2. The note after the step counts the units whose branch
 * differs where that can still be seen. M's binarization at 0.5 is kept
 * out of it: see binarization_ties. */
#define STEP_TOL 1e-4
#define STEP_LOSS_TOL 1e-3
#define STEP_KINK_TOL 5e-2

static const char *const loss_names[LOSS_SLOTS] = {"critic real (mean D(x_ref))",
                                                   "critic fake (mean D(y))",
                                                   "gradient penalty",
                                                   "adversarial (-mean D(y))",
                                                   "perceptual feat4",
                                                   "perceptual feat5",
                                                   "identity",
                                                   "perceptual regularization",
                                                   "attribute ratio (unused slot)",
                                                   "mask mean",
                                                   "denoise (unused here)"};

/* What the step needs on disk, and the argument vector of each trainer
 * (train_options points into it, so it lives as long as the trainer). */
typedef struct step_files {
    char celeba[4096], phi[4096], dir[32], denoiser[64];
} step_files;

typedef struct step_args {
    char words[sizeof STEP_OPTIONS], seed[16];
    char *argv[48];
    int argc;
} step_args;

static void step_arguments(step_args *a, const step_files *f, const char *backend, int seed)
{
    memcpy(a->words, STEP_OPTIONS, sizeof STEP_OPTIONS);
    snprintf(a->seed, sizeof a->seed, "%d", seed);
    a->argc = 0;
    a->argv[a->argc++] = "test-cuda-parity";
    char *save = NULL;
    for (char *w = strtok_r(a->words, " ", &save); w; w = strtok_r(NULL, " ", &save))
        a->argv[a->argc++] = w;
    const char *pairs[][2] = {{"--run-dir", f->dir},       {"--celeba", f->celeba},
                              {"--denoiser", f->denoiser}, {"--face-recognition", f->phi},
                              {"--seed", a->seed},         {"--backend", backend}};
    for (size_t i = 0; i < sizeof pairs / sizeof pairs[0]; i++) {
        a->argv[a->argc++] = (char *)pairs[i][0];
        a->argv[a->argc++] = (char *)pairs[i][1];
    }
    a->argv[a->argc] = NULL;
}

/* A denoiser file as `diat-train denoiser --export` writes it, with seeded
 * random weights (as bench/bench_train.c makes one). */
static diat_status write_denoiser(const char *path, diat_error *err)
{
    diat_context *ctx = NULL;
    diat_denoiser dn;
    memset(&dn, 0, sizeof dn);
    diat_st_writer *w = NULL;
    char text[16];
    diat_status st = diat_context_new(DIAT_BACKEND_CPU, 1, &ctx, err);
    if (st == DIAT_OK) st = diat_denoiser_init(&dn, ctx, STEP_DN_WIDTH, STEP_DN_DEPTH, err);
    if (st == DIAT_OK) {
        diat_net_init_weights(&dn.net, 505);
        if (!(w = diat_st_writer_new()))
            st = diat_set_error(err, DIAT_ERR_MEMORY, "Out of memory.");
    }
    if (st == DIAT_OK) st = diat_st_writer_set_metadata(w, "format", "diat-denoiser", err);
    snprintf(text, sizeof text, "%d", STEP_DN_WIDTH);
    if (st == DIAT_OK) st = diat_st_writer_set_metadata(w, "width", text, err);
    snprintf(text, sizeof text, "%d", STEP_DN_DEPTH);
    if (st == DIAT_OK) st = diat_st_writer_set_metadata(w, "depth", text, err);
    if (st == DIAT_OK) st = diat_net_save(&dn.net, w, DIAT_DTYPE_F32, err);
    if (st == DIAT_OK) st = diat_st_writer_save(w, path, err);
    diat_st_writer_free(w);
    diat_denoiser_free(&dn);
    diat_context_free(ctx);
    return st;
}

/* Both trainers, as diat-train builds them; the same T.up5 on both. The
 * trainer starts T as the identity (a zero last layer): then y = x and the
 * perceptual and identity terms would be rounding noise. */
static int make_trainers(trainer tr[2], step_args args[2], const step_files *f, int seed)
{
    const char *backend[2] = {"cpu", parity.dut_backend};
    train_options opt;
    diat_error err;
    int ok = 1;
    for (int side = 0; side < 2 && ok; side++) {
        step_arguments(&args[side], f, backend[side], seed);
        if (train_options_parse(args[side].argc, args[side].argv, &opt) != 0)
            return check_with("step: trainer options", INFINITY, PARITY_TOL, "rejected");
        ok = call_ok("step: trainer_init", side, trainer_init(&tr[side], &opt, &err), &err);
    }
    if (ok && strcmp(diat_context_backend_name(tr[DUT].ctx), parity.be[DUT]->name) != 0)
        ok = check_with("step: the DUT trainer's backend", INFINITY, PARITY_TOL,
                        diat_context_backend_name(tr[DUT].ctx));
    if (!ok) return 0;
    parity_use(tr[REF].ctx, tr[DUT].ctx);
    diat_param *up5[2] = {diat_net_find(&tr[REF].transform.net, "T.up5.weight"),
                          diat_net_find(&tr[DUT].transform.net, "T.up5.weight")};
    size_t count = diat_tensor_count(&up5[REF]->value);
    float bound = 0.5f / sqrtf((float)(count / (size_t)up5[REF]->value.n));
    float *host = random_host(count, -bound, bound);
    for (int side = 0; side < 2; side++)
        diat_tensor_upload(parity.ctx[side], &up5[side]->value, host);
    free(host);
    jitter_net(&tr[DUT].transform.net);
    jitter_net(&tr[DUT].mask.net);
    jitter_net(&tr[DUT].critic.net);
    return 1;
}

/* M binarizes its upsampled e at 0.5, and roughly one pixel in 10^6 of e
 * lies within rounding of 0.5: the two backends may then binarize it
 * differently, which moves m by a 5x5 Gaussian blob and the whole step by
 * up to ~1e-2. So before the step, M runs on both sides on the two batches
 * the step will draw (critic step, generator step; M's parameters do not
 * change in between), the data position rewound after; a seed whose
 * batches hold such a tie is passed over for the next. Returns the ties,
 * or -1 after a FAIL line (a pixel binarized differently that is no tie).
 *
 * It also measures the size of a critic score, mean |D(x_ref)| over the
 * critic step's references with the initial D (reference side): the
 * critic's losses are means of signed scores that may cancel far below
 * that size, and are compared against it. */
static long binarization_ties(trainer tr[2], double *score_size)
{
    const size_t floats = (size_t)STEP_BATCH * 3 * DIAT_FACE_SIZE * DIAT_FACE_SIZE;
    float *batch = malloc(3 * floats * sizeof *batch), *references = batch + 2 * floats;
    diat_error err;
    diat_dataset_position start;
    diat_dataset_get_position(tr[REF].data, &start);
    int ok = batch != NULL;
    for (int b = 0; b < 2 && ok; b++)
        ok = call_ok("step: read a batch ahead", REF,
                     diat_dataset_next(tr[REF].data, batch + b * floats,
                                       b == 0 ? references : tr[REF].host_references, &err),
                     &err);
    ok = ok && call_ok("step: rewind the data", REF,
                       diat_dataset_set_position(tr[REF].data, &start, &err), &err);
    *score_size = 0.0;
    if (ok) {
        diat_tensor_upload(parity.ctx[REF], &tr[REF].references, references);
        ok = call_ok("step: D forward ahead", REF,
                     diat_critic_forward(&tr[REF].critic, &tr[REF].references, &err), &err);
    }
    if (ok) {
        float *scores = download(REF, &tr[REF].critic.score);
        for (int i = 0; i < STEP_BATCH; i++) *score_size += fabs((double)scores[i]) / STEP_BATCH;
        free(scores);
    }
    /* M's training forward also moves its running statistics: keep them. */
    diat_net *nets[2] = {&tr[REF].mask.net, &tr[DUT].mask.net};
    enum { MAX_PARAMS = 64 }; /* M has 25 */
    float *kept[2][MAX_PARAMS] = {{NULL}};
    for (int side = 0; side < 2; side++)
        for (int i = 0; i < nets[side]->param_count && i < MAX_PARAMS; i++)
            if (!nets[side]->params[i].grad.data)
                kept[side][i] = download(side, &nets[side]->params[i].value);
    long ties = 0;
    for (int b = 0; b < 2 && ok; b++) {
        for (int side = 0; side < 2 && ok; side++) {
            diat_tensor_upload(parity.ctx[side], &tr[side].sources, batch + b * floats);
            ok = call_ok("step: M forward ahead", side,
                         diat_mask_forward(&tr[side].mask, &tr[side].sources, &err), &err);
        }
        if (!ok) break;
        diat_mask *m[2] = {&tr[REF].mask, &tr[DUT].mask};
        size_t tied, wrong;
        binary_differences(m, &tied, &wrong);
        if (wrong)
            ok = check_with(name_of("step: M binarization of batch %d", b + 1), (double)wrong, 0.0,
                            "err counts pixels binarized differently that are no ties");
        ties += (long)tied;
    }
    for (int side = 0; side < 2; side++)
        for (int i = 0; i < MAX_PARAMS; i++)
            if (kept[side][i]) {
                diat_tensor_upload(parity.ctx[side], &nets[side]->params[i].value, kept[side][i]);
                free(kept[side][i]);
            }
    free(batch);
    return ok ? ties : -1;
}

/* Parameters after the step. One Adam step moves each by lr * g / (|g| +
 * eps): where |g| is within the two sides' largest gradient difference dg
 * of zero, they may move it opposite ways (up to 2 lr apart); elsewhere the
 * step's sensitivity to dg is lr * eps * dg / |g|^2 (eps = 1e-8), i.e. ~0,
 * and the parameters agree to rounding. err is the largest difference over
 * its per-element bound (passes at <= 1). */
static void check_after_adam(const char *net, const diat_param *r, const diat_param *d, float lr)
{
    size_t count = diat_tensor_count(&r->value);
    float *pr = download(REF, &r->value), *pd = download(DUT, &d->value);
    float *gr = download(REF, &r->grad), *gd = download(DUT, &d->grad);
    double dg = 0.0, worst = 0.0;
    size_t near_zero = 0;
    for (size_t i = 0; i < count; i++) dg = fmax(dg, fabs((double)gd[i] - gr[i]));
    for (size_t i = 0; i < count; i++) {
        double g = fabs((double)gr[i]);
        double bound = 3e-7 * fabs((double)pr[i]) + 1e-5 * lr; /* rounding of p - lr u */
        if (g <= 2.0 * dg) {
            bound += 2.0 * lr;
            near_zero++;
        } else {
            bound += lr * 1e-8 * dg / ((g - dg) * (g - dg));
        }
        double gap = fabs((double)pd[i] - pr[i]);
        if (!(gap <= worst * bound)) worst = isfinite(gap) ? gap / bound : INFINITY;
    }
    char detail[128];
    snprintf(detail, sizeof detail, "difference / per-element Adam bound; %zu of %zu near g = 0",
             near_zero, count);
    check_with(name_of("step: %s %s after Adam", net, r->name), worst, 1.0, detail);
    free(pr);
    free(pd);
    free(gr);
    free(gd);
}

static void check_step_net(const char *net, diat_net *ref, diat_net *dut, double tol, float lr)
{
    for (int i = 0; i < ref->param_count; i++) {
        diat_param *r = &ref->params[i], *d = &dut->params[i];
        if (r->trainable) {
            check_tensors(name_of("step: %s d%s", net, r->name), &r->grad, &d->grad, tol);
            check_after_adam(net, r, d, lr);
        } else if (!r->grad.data) { /* running statistics */
            check_tensors(name_of("step: %s %s", net, r->name), &r->value, &d->value, STEP_TOL);
        }
    }
}

/* Units whose activation is on the other side of its kink (0 for ReLU, the
 * slope change for LeakyReLU) on the two sides. */
static size_t branch_flips(const diat_tensor *ref, const diat_tensor *dut)
{
    size_t count = diat_tensor_count(ref), flips = 0;
    float *r = download(REF, ref), *d = download(DUT, dut);
    for (size_t i = 0; i < count; i++) flips += (r[i] > 0.0f) != (d[i] > 0.0f);
    free(r);
    free(d);
    return flips;
}

/* What the networks kept of the step's forwards, for the note that helps
 * read a failure of the step (see the tolerances). */
static void note_branch_flips(trainer tr[2])
{
    size_t t = 0, m = 0, dy = 0, dgp = 0, phi = 0, dn = 0;
    for (int i = 0; i < 5; i++) {
        t += branch_flips(&tr[REF].transform.down[i], &tr[DUT].transform.down[i]);
        if (i < 4) t += branch_flips(&tr[REF].transform.up[i], &tr[DUT].transform.up[i]);
        if (i < 4) m += branch_flips(&tr[REF].mask.norm[i], &tr[DUT].mask.norm[i]);
        dy += branch_flips(&tr[REF].critic.feat[i], &tr[DUT].critic.feat[i]);
        dgp += branch_flips(&tr[REF].critic.gp_feat[i], &tr[DUT].critic.gp_feat[i]);
    }
    diat_face_recognition *f[2] = {&tr[REF].identity, &tr[DUT].identity};
    phi += branch_flips(&f[REF]->stem, &f[DUT]->stem);
    for (int i = 0; i < DIAT_FACE_RECOGNITION_BLOCKS; i++)
        phi += branch_flips(&f[REF]->block[i].hidden, &f[DUT]->block[i].hidden) +
               branch_flips(&f[REF]->block[i].out, &f[DUT]->block[i].out);
    for (int i = 0; i < tr[REF].denoiser.depth - 1; i++)
        dn += branch_flips(&tr[REF].denoiser.act[i], &tr[DUT].denoiser.act[i]);
    note("step: units on the other side of their kink: generator step T %zu, M %zu, D(y) %zu, "
         "phi %zu, DN %zu; critic step D(interpolates) %zu (the rest is not kept)",
         t, m, dy, phi, dn, dgp);
}

/* A mean of signed scores, measured against the size of a score. */
static void check_score_mean(const char *name, double ref, double dut, double size)
{
    size = fmax(fabs(ref), size);
    char detail[96];
    snprintf(detail, sizeof detail, "against max(|loss|, mean |score|) = %.3g", size);
    check_with(name, fabs(dut - ref) / fmax(size, 1e-30), STEP_TOL, detail);
}

static void compare_step(trainer tr[2], double score_size)
{
    float *sr = download(REF, &tr[REF].scalars), *sd = download(DUT, &tr[DUT].scalars);
    note("step losses (reference): critic real %.6g fake %.6g gp %.6g; adv %.6g ap4 %.6g "
         "ap5 %.6g id %.6g pr %.6g mask mean %.6g",
         sr[LOSS_CRITIC_REAL], sr[LOSS_CRITIC_FAKE], sr[LOSS_GP], sr[LOSS_ADV], sr[LOSS_AP4],
         sr[LOSS_AP5], sr[LOSS_ID], sr[LOSS_PR], sr[LOSS_MASK_MEAN]);
    for (int k = 0; k < LOSS_SLOTS; k++)
        if (k > LOSS_ADV || k == LOSS_GP)
            check_scalar(name_of("step: loss %s", loss_names[k]), sr[k], sd[k],
                         k == LOSS_GP ? STEP_KINK_TOL : STEP_LOSS_TOL);
        else if (k != LOSS_ADV)
            check_score_mean(name_of("step: loss %s", loss_names[k]), sr[k], sd[k], score_size);
    /* -mean D(y) of the generator step: its scores are still in D (its last
     * forward), and D has moved by one Adam step since: STEP_LOSS_TOL. */
    float *scores = download(REF, &tr[REF].critic.score);
    double size = 0.0;
    for (int i = 0; i < STEP_BATCH; i++) size += fabs((double)scores[i]) / STEP_BATCH;
    size = fmax(size, fabs((double)sr[LOSS_ADV]));
    char detail[96];
    snprintf(detail, sizeof detail, "against max(|loss|, mean |score|) = %.3g", size);
    check_with(name_of("step: loss %s", loss_names[LOSS_ADV]),
               fabs((double)sd[LOSS_ADV] - sr[LOSS_ADV]) / fmax(size, 1e-30), STEP_LOSS_TOL,
               detail);
    free(scores);
    for (int i = 0; i < STEP_BATCH; i++)
        check_scalar(name_of("step: loss attribute ratio, face %d", i + 1), sr[LOSS_SLOTS + i],
                     sd[LOSS_SLOTS + i], STEP_LOSS_TOL);
    free(sr);
    free(sd);
    note_branch_flips(tr);
    /* D's gradients are the critic step's (the generator step freezes D).
     * D.fc.bias gets -1/4 from each real and +1/4 from each fake score:
     * exactly 0 on any backend at batch 4, so its comparison is exact. */
    check_step_net("D", &tr[REF].critic.net, &tr[DUT].critic.net, STEP_KINK_TOL, tr[REF].opt.lr_d);
    check_step_net("T", &tr[REF].transform.net, &tr[DUT].transform.net, STEP_KINK_TOL,
                   tr[REF].opt.lr_g);
    check_step_net("M", &tr[REF].mask.net, &tr[DUT].mask.net, STEP_KINK_TOL, tr[REF].opt.lr_g);
}

void parity_training_step(void)
{
    step_files f;
    if (parity.shared_data)
        snprintf(f.celeba, sizeof f.celeba, "%s/celeba128", parity.shared_data);
    else
        snprintf(f.celeba, sizeof f.celeba, "%s/../shared/data/celeba128", parity.source_root);
    char labels[sizeof f.celeba + 32];
    snprintf(labels, sizeof labels, "%s/list_attr_celeba.txt", f.celeba);
    if (access(labels, R_OK) != 0) {
        note("training step: skipped (no CelebA at %s; DIAT_SHARED_DATA names its parent)",
             f.celeba);
        return;
    }
    snprintf(f.phi, sizeof f.phi, "%s/models/face-recognition-resnet29.safetensors",
             parity.source_root);
    snprintf(f.dir, sizeof f.dir, "/tmp/diat-parity-XXXXXX");
    if (!mkdtemp(f.dir)) {
        check_with("step: temporary folder", INFINITY, PARITY_TOL, "mkdtemp failed");
        return;
    }
    snprintf(f.denoiser, sizeof f.denoiser, "%s/denoiser.safetensors", f.dir);
    diat_error err;
    int done = 0;
    if (write_denoiser(f.denoiser, &err) != DIAT_OK) {
        check_with("step: write a denoiser", INFINITY, PARITY_TOL, err.message);
        done = 1;
    }
    for (int seed = STEP_FIRST_SEED; seed < STEP_FIRST_SEED + STEP_SEEDS && !done; seed++) {
        trainer tr[2];
        step_args args[2];
        memset(tr, 0, sizeof tr);
        random_seed(4000 + (unsigned long long)seed);
        done = 1; /* unless the seed is passed over */
        double score_size = 0.0;
        long ties = make_trainers(tr, args, &f, seed) ? binarization_ties(tr, &score_size) : -1;
        if (ties > 0) {
            note("step, seed %d: %ld pixels of M's e within rounding of 0.5; next seed", seed,
                 ties);
            done = 0;
        } else if (ties == 0) {
            check_with(name_of("step: M binarizes both batches alike (seed %d)", seed), 0.0, 0.0,
                       "err counts pixels binarized differently");
            step_figures figures[2];
            int ok = 1;
            for (int side = 0; side < 2 && ok; side++)
                ok = call_ok("step: trainer_step", side,
                             trainer_step(&tr[side], &figures[side], &err), &err);
            if (ok) compare_step(tr, score_size);
        }
        parity_use(NULL, NULL);
        for (int side = 0; side < 2; side++)
            if (tr[side].ctx) trainer_free(&tr[side]);
    }
    if (!done)
        check_with("step: a seed without binarization ties", INFINITY, PARITY_TOL,
                   "every seed tried had some: M's e differs by more than rounding");
    unlink(f.denoiser);
    rmdir(f.dir);
}
#endif

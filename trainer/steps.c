/* One training step of DIAT, every loss term as the paper defines it:
 *
 *  critic (n_critic times):  E[D(y)] - E[D(x_ref)] + lambda_gp E[(||grad D(x_hat)|| - 1)^2]
 *  T and M:  -E[D(y)]                                   adversarial attribute loss
 *          + lambda_ap ||D4(y) - D4(x)||^2 + ||D5(y) - D5(x)||^2   adaptive perceptual
 *          + lambda_id ||phi(y) - phi(x)||^2               identity
 *          + lambda_pr ||DN(y) - y||^2                     perceptual regularization
 *          + lambda_ar |mean(m) - p|                       attribute ratio
 *  with y = m * T(x) + (1 - m) * x.
 *
 * Every tensor stays in backend memory for the whole step; the losses are
 * written to `scalars` and downloaded once, for the log. */
#include "trainer.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define FACE DIAT_FACE_SIZE
#define FACE_PIXELS (FACE * FACE)

static uint64_t next_random(uint64_t *state)
{
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static double uniform01(uint64_t *state)
{
    return (double)(next_random(state) >> 11) * 0x1.0p-53;
}

static double gaussian(uint64_t *state)
{
    double u = uniform01(state), v = uniform01(state);
    return sqrt(-2.0 * log(u > 1e-300 ? u : 1e-300)) * cos(2.0 * M_PI * v);
}

/* dst = src (device side), dst (re)allocated like src. */
static diat_status copy_tensor(diat_context *ctx, const diat_tensor *src, diat_tensor *dst,
                               diat_error *err)
{
    diat_status st = diat_tensor_ensure(ctx, dst, src->n, src->c, src->h, src->w, err);
    if (st != DIAT_OK) return st;
    diat_tensor_zero(ctx, dst);
    diat_context_backend(ctx)->axpy(ctx, 1.0f, src->data, dst->data, diat_tensor_count(src));
    return DIAT_OK;
}

static float *slot(trainer *tr, int index)
{
    return tr->scalars.data + index;
}

static diat_status next_batch(trainer *tr, diat_error *err)
{
    diat_status st = diat_dataset_next(tr->data, tr->host_sources, tr->host_references, err);
    if (st != DIAT_OK) return st;
    diat_tensor_upload(tr->ctx, &tr->sources, tr->host_sources);
    diat_tensor_upload(tr->ctx, &tr->references, tr->host_references);
    return DIAT_OK;
}

/* y = m * T(x) + (1 - m) * x for the current sources. */
static diat_status generate(trainer *tr, diat_error *err)
{
    diat_context *ctx = tr->ctx;
    diat_status st;
    if ((st = diat_transform_forward(&tr->transform, &tr->sources, err)) ||
        (st = diat_mask_forward(&tr->mask, &tr->sources, err)))
        return st;
    diat_context_backend(ctx)->compose_forward(ctx, &tr->mask.mask, &tr->transform.up[4],
                                               &tr->sources, &tr->result);
    return DIAT_OK;
}

static void fill_dscore(trainer *tr, float value)
{
    diat_context_backend(tr->ctx)->fill(tr->ctx, tr->dscore.data, value,
                                        diat_tensor_count(&tr->dscore));
}

static diat_status critic_step(trainer *tr, diat_error *err)
{
    diat_context *ctx = tr->ctx;
    const diat_backend *be = diat_context_backend(ctx);
    const int n = tr->opt.batch;
    diat_critic *d = &tr->critic;
    diat_status st;
    if ((st = next_batch(tr, err)) || (st = generate(tr, err))) return st;
    diat_net_zero_grad(&d->net);

    /* E[D(y)] - E[D(x_ref)]: the critic learns to score references high. */
    if ((st = diat_critic_forward(d, &tr->references, err))) return st;
    be->sum_forward(ctx, d->score.data, (size_t)n, 1.0f / n, slot(tr, LOSS_CRITIC_REAL));
    fill_dscore(tr, -1.0f / n);
    if ((st = diat_critic_backward(d, &tr->dscore, NULL, NULL, NULL, err))) return st;
    if ((st = diat_critic_forward(d, &tr->result, err))) return st;
    be->sum_forward(ctx, d->score.data, (size_t)n, 1.0f / n, slot(tr, LOSS_CRITIC_FAKE));
    fill_dscore(tr, 1.0f / n);
    if ((st = diat_critic_backward(d, &tr->dscore, NULL, NULL, NULL, err))) return st;

    /* Gradient penalty on random interpolates x_hat = e x_ref + (1 - e) y. */
    float *weights = tr->host_noise;
    for (int i = 0; i < n; i++) {
        float e = (float)uniform01(&tr->rng);
        for (int p = 0; p < FACE_PIXELS; p++) weights[(size_t)i * FACE_PIXELS + p] = e;
    }
    diat_tensor_upload(ctx, &tr->interp_weight, weights);
    be->compose_forward(ctx, &tr->interp_weight, &tr->references, &tr->result, &tr->interp);
    if ((st = diat_critic_forward(d, &tr->interp, err)) ||
        (st = diat_critic_input_gradient(d, &tr->penalty_grad, err)))
        return st;
    be->gradient_penalty_forward(ctx, &tr->penalty_grad, tr->opt.lambda_gp, slot(tr, LOSS_GP));
    if ((st = diat_tensor_ensure(ctx, &tr->penalty_u, tr->penalty_grad.n, tr->penalty_grad.c,
                                 tr->penalty_grad.h, tr->penalty_grad.w, err)))
        return st;
    diat_tensor_zero(ctx, &tr->penalty_u);
    be->gradient_penalty_backward(ctx, &tr->penalty_grad, tr->opt.lambda_gp, &tr->penalty_u);
    if ((st = diat_critic_input_gradient_backward(d, &tr->penalty_u, err))) return st;
    optimizer_step(&tr->opt_d, ctx);
    return DIAT_OK;
}

/* Adaptive perceptual loss: D's own layer-4/5 features of y against x's. */
static diat_status perceptual_terms(trainer *tr, diat_error *err)
{
    diat_context *ctx = tr->ctx;
    const diat_backend *be = diat_context_backend(ctx);
    diat_critic *d = &tr->critic;
    const int n = tr->opt.batch;
    diat_status st;
    if ((st = diat_critic_forward(d, &tr->sources, err)) ||
        (st = copy_tensor(ctx, &d->feat[3], &tr->feat4_x, err)) ||
        (st = copy_tensor(ctx, &d->feat[4], &tr->feat5_x, err)) ||
        (st = diat_critic_forward(d, &tr->result, err)))
        return st;
    be->sum_forward(ctx, d->score.data, (size_t)n, -1.0f / n, slot(tr, LOSS_ADV));
    fill_dscore(tr, -1.0f / n);
    const diat_tensor *fy[2] = {&d->feat[3], &d->feat[4]}, *fx[2] = {&tr->feat4_x, &tr->feat5_x};
    diat_tensor *dfeat[2] = {&tr->dfeat4, &tr->dfeat5};
    for (int k = 0; k < 2; k++) {
        size_t count = diat_tensor_count(fy[k]);
        float scale = tr->opt.lambda_ap / (float)count;
        if ((st = diat_tensor_ensure(ctx, dfeat[k], fy[k]->n, fy[k]->c, fy[k]->h, fy[k]->w, err)))
            return st;
        diat_tensor_zero(ctx, dfeat[k]);
        be->squared_error_forward(ctx, fy[k]->data, fx[k]->data, count, scale,
                                  slot(tr, LOSS_AP4 + k));
        be->squared_error_backward(ctx, fy[k]->data, fx[k]->data, count, scale, dfeat[k]->data,
                                   NULL);
    }
    return diat_critic_backward(d, &tr->dscore, &tr->dfeat4, &tr->dfeat5, &tr->dresult, err);
}

static diat_status identity_term(trainer *tr, diat_error *err)
{
    diat_context *ctx = tr->ctx;
    diat_face_recognition *phi = &tr->identity;
    const int n = tr->opt.batch;
    diat_status st;
    if ((st = diat_face_recognition_forward(phi, &tr->sources, err)) ||
        (st = copy_tensor(ctx, &phi->embedding, &tr->embed_x, err)) ||
        (st = diat_face_recognition_forward(phi, &tr->result, err)) ||
        (st = diat_tensor_ensure(ctx, &tr->dembed, tr->embed_x.n, tr->embed_x.c, 1, 1, err)))
        return st;
    size_t count = diat_tensor_count(&tr->embed_x);
    float scale = tr->opt.lambda_id / (float)n;
    diat_tensor_zero(ctx, &tr->dembed);
    diat_context_backend(ctx)->squared_error_forward(ctx, phi->embedding.data, tr->embed_x.data,
                                                     count, scale, slot(tr, LOSS_ID));
    diat_context_backend(ctx)->squared_error_backward(ctx, phi->embedding.data, tr->embed_x.data,
                                                      count, scale, tr->dembed.data, NULL);
    return diat_face_recognition_backward(phi, &tr->dembed, &tr->dresult, err);
}

static diat_status regularization_term(trainer *tr, diat_error *err)
{
    diat_context *ctx = tr->ctx;
    diat_denoiser *dn = &tr->denoiser;
    diat_status st = diat_denoiser_forward(dn, &tr->result, err);
    if (st != DIAT_OK) return st;
    size_t count = diat_tensor_count(&tr->result);
    float scale = tr->opt.lambda_pr / (float)count;
    diat_tensor_zero(ctx, &tr->dtarget);
    diat_context_backend(ctx)->squared_error_forward(ctx, dn->out.data, tr->result.data, count,
                                                     scale, slot(tr, LOSS_PR));
    /* ||DN(y) - y||^2 depends on y twice: through DN and directly. */
    diat_context_backend(ctx)->squared_error_backward(ctx, dn->out.data, tr->result.data, count,
                                                      scale, tr->dtarget.data, tr->dresult.data);
    return diat_denoiser_backward(dn, &tr->dtarget, &tr->dresult, err);
}

static diat_status generator_step(trainer *tr, diat_error *err)
{
    diat_context *ctx = tr->ctx;
    const diat_backend *be = diat_context_backend(ctx);
    const int n = tr->opt.batch;
    diat_status st;
    if ((st = next_batch(tr, err)) || (st = generate(tr, err))) return st;
    diat_net_zero_grad(&tr->transform.net);
    diat_net_zero_grad(&tr->mask.net);
    diat_tensor_zero(ctx, &tr->dresult);

    /* D only passes gradients back to y here: its own are not used. */
    diat_net_set_trainable(&tr->critic.net, 0);
    st = perceptual_terms(tr, err);
    diat_net_set_trainable(&tr->critic.net, 1);
    if (st) return st;
    if (tr->have_identity && (st = identity_term(tr, err))) return st;
    if (tr->have_denoiser && (st = regularization_term(tr, err))) return st;

    diat_tensor_zero(ctx, &tr->dtransform);
    diat_tensor_zero(ctx, &tr->dmask);
    be->compose_backward(ctx, &tr->mask.mask, &tr->transform.up[4], &tr->sources, &tr->dresult,
                         &tr->dmask, &tr->dtransform, NULL);
    /* The ratio term per face: each result covers about p of its face. */
    const float *m = tr->mask.mask.data;
    for (int i = 0; i < n; i++) {
        const float *mi = m + (size_t)i * FACE_PIXELS;
        be->ratio_loss_forward(ctx, mi, FACE_PIXELS, tr->opt.ratio, tr->opt.lambda_ar / n,
                               slot(tr, LOSS_SLOTS + i));
        be->ratio_loss_backward(ctx, mi, FACE_PIXELS, tr->opt.ratio, tr->opt.lambda_ar / n,
                                tr->dmask.data + (size_t)i * FACE_PIXELS);
    }
    be->sum_forward(ctx, m, (size_t)n * FACE_PIXELS, 1.0f / ((float)n * FACE_PIXELS),
                    slot(tr, LOSS_MASK_MEAN));
    if ((st = diat_transform_backward(&tr->transform, &tr->dtransform, NULL, err)) ||
        (st = diat_mask_backward(&tr->mask, &tr->dmask, NULL, NULL, err)))
        return st;
    optimizer_step(&tr->opt_g, ctx);
    weight_average_update(&tr->average, ctx);
    return DIAT_OK;
}

static diat_status denoiser_step(trainer *tr, diat_error *err)
{
    diat_context *ctx = tr->ctx;
    diat_denoiser *dn = &tr->denoiser;
    const int n = tr->opt.batch;
    diat_status st = diat_dataset_next(tr->data, tr->host_sources, tr->host_references, err);
    if (st != DIAT_OK) return st;
    /* Noise of a random strength per face, up to twice --noise-sigma (x2 again:
     * network units span [-1, 1], pixels [0, 1]). */
    for (int i = 0; i < n; i++) {
        double sigma = 2.0 * tr->opt.noise_sigma * 2.0 * uniform01(&tr->rng);
        float *clean = tr->host_sources + (size_t)i * 3 * FACE_PIXELS;
        float *noisy = tr->host_noise + (size_t)i * 3 * FACE_PIXELS;
        for (int p = 0; p < 3 * FACE_PIXELS; p++)
            noisy[p] = clean[p] + (float)(sigma * gaussian(&tr->rng));
    }
    diat_tensor_upload(ctx, &tr->sources, tr->host_sources);
    diat_tensor_upload(ctx, &tr->interp, tr->host_noise);
    diat_net_zero_grad(&dn->net);
    if ((st = diat_denoiser_forward(dn, &tr->interp, err))) return st;
    size_t count = diat_tensor_count(&tr->sources);
    diat_tensor_zero(ctx, &tr->dtarget);
    diat_context_backend(ctx)->squared_error_forward(ctx, dn->out.data, tr->sources.data, count,
                                                     1.0f / (float)count, slot(tr, LOSS_DENOISE));
    diat_context_backend(ctx)->squared_error_backward(ctx, dn->out.data, tr->sources.data, count,
                                                      1.0f / (float)count, tr->dtarget.data, NULL);
    if ((st = diat_denoiser_backward(dn, &tr->dtarget, NULL, err))) return st;
    optimizer_step(&tr->opt_g, ctx);
    return DIAT_OK;
}

static void clear_scalars(trainer *tr)
{
    diat_context_backend(tr->ctx)->fill(tr->ctx, tr->scalars.data, 0.0f,
                                        diat_tensor_count(&tr->scalars));
}

/* Download the step's scalars (one transfer) into the logged figures. */
static void collect_figures(trainer *tr, long step, step_figures *figures)
{
    float host[LOSS_SLOTS + 4096];
    size_t count = diat_tensor_count(&tr->scalars);
    diat_tensor_download(tr->ctx, &tr->scalars, host);
    memset(figures, 0, sizeof *figures);
    figures->step = step;
    for (int k = 0; k < LOSS_SLOTS; k++) figures->value[k] = host[k];
    for (size_t k = LOSS_SLOTS; k < count; k++) figures->value[LOSS_AR] += host[k];
}

diat_status trainer_warmup_step(trainer *tr, step_figures *figures, diat_error *err)
{
    const int n = tr->opt.batch;
    clear_scalars(tr);
    /* Frozen means frozen: in inference mode M uses, and leaves, the running
     * statistics it came with, so D learns to judge the model's actual
     * results and the generator after the warm-up is exactly the model. */
    tr->transform.net.training = tr->mask.net.training = 0;
    diat_status st = critic_step(tr, err);
    tr->transform.net.training = tr->mask.net.training = 1;
    if (st != DIAT_OK) return st;
    /* The model's mask fraction on this batch: the one generator figure
     * that means something while T and M stand still. */
    diat_context_backend(tr->ctx)->sum_forward(tr->ctx, tr->mask.mask.data, (size_t)n * FACE_PIXELS,
                                               1.0f / ((float)n * FACE_PIXELS),
                                               slot(tr, LOSS_MASK_MEAN));
    tr->warmup_done++;
    collect_figures(tr, tr->warmup_done - tr->opt.critic_warmup - 1, figures);
    return DIAT_OK;
}

diat_status trainer_step(trainer *tr, step_figures *figures, diat_error *err)
{
    if (tr->opt.mode == TRAIN_CLASSIFIER) return classifier_step(tr, figures, err);
    diat_status st = DIAT_OK;
    clear_scalars(tr);
    if (tr->opt.mode == TRAIN_DENOISER) {
        st = denoiser_step(tr, err);
    } else {
        for (int c = 0; c < tr->opt.n_critic && st == DIAT_OK; c++) st = critic_step(tr, err);
        if (st == DIAT_OK) st = generator_step(tr, err);
    }
    if (st != DIAT_OK) return st;
    tr->step++;
    collect_figures(tr, tr->step, figures);
    return DIAT_OK;
}

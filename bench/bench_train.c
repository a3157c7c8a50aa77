/* Training-step benchmark: the trainer's own step (trainer/steps.c, linked
 * from trainer_lib), as `diat-train` runs it with its default options.
 *
 *   bench_train [--celeba DIR] [--threads N] [--steps N] [--warmup N]
 *               [--batch N] [--attribute NAME] [--direction add|remove]
 *               [--face-recognition FILE] [--denoiser FILE] [--parts N]
 *               [--layers N]
 *
 * One step is what diat-train calls one step: n_critic (5) WGAN-GP critic
 * steps (the exact double backward included), then one generator step with
 * all five terms (adversarial, adaptive perceptual on D's layer-4/5
 * features, identity through the face-recognition network phi, perceptual
 * regularization through the denoiser DN, attribute ratio) and Adam. Data
 * come from the real CelebA pipeline (decoding on its background thread).
 *
 * Reported, as medians over the timed steps after warm-up steps:
 *  - seconds per step and images/s = batch / step time (generator images;
 *    the critic also sees n_critic x batch references, fakes and
 *    interpolates per step);
 *  - the split between the critic steps and the generator step: the same
 *    trainer run with n_critic set to 0 gives the generator step alone;
 *  - with --parts N (default 2; 0 skips it), the engine calls a step is made
 *    of, timed one at a time on the trainer's own networks and buffers, in
 *    the order trainer/steps.c makes them (medians of N);
 *  - with --layers N (default 0), the convolutions that dominate a step
 *    alone at the step's batch: forward, backward to input and weights, and
 *    backward to the input only, with GFLOP/s (bench_train_torch.py prints
 *    the same table for PyTorch).
 *
 * The denoiser: unless --denoiser FILE is given, a DN of the default shape
 * (width 32, depth 5) with seeded random weights is written to a temporary
 * folder first; its weights do not change the work of a step.
 * Lines starting with "RESULT " are parsed by bench/run-train.sh. */
#include "trainer.h"

#include "context.h" /* count_step_flops swaps the context's op table */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench-timing.h"

#define MAX_SAMPLES 256
#define MAX_PART_REPEATS 32

typedef struct bench_options {
    const char *celeba;
    const char *attribute;
    const char *direction;
    const char *face_recognition;
    const char *denoiser;
    const char *backend;
    int threads, steps, warmup, batch, parts, layers;
} bench_options;

static void usage(FILE *out)
{
    fprintf(out,
            "usage: bench_train [options]\n"
            "  --celeba DIR            CelebA root (default ../shared/data/celeba128)\n"
            "  --attribute NAME        default Eyeglasses\n"
            "  --direction add|remove  default remove\n"
            "  --face-recognition FILE default models/face-recognition-resnet29.safetensors\n"
            "  --denoiser FILE         a DN from `diat-train denoiser --export` (default: a\n"
            "                          random DN of the default shape, 32 x 5, written first)\n"
            "  --backend cpu|cuda      compute backend (default cpu)\n"
            "  --threads N             CPU threads (default 1; with cuda: data-decoding threads)\n"
            "  --batch N               faces per step (default 16, diat-train's default)\n"
            "  --steps N               timed steps (default 5)\n"
            "  --warmup N              untimed steps first (default 1)\n"
            "  --parts N               repeats of the per-part timing (default 2; 0: skip)\n"
            "  --layers N              repeats of the per-convolution timing (default 0: skip)\n");
}

static int parse_int_arg(const char *name, const char *text, int lo, int hi, int *out)
{
    char *end = NULL;
    long v = strtol(text, &end, 10);
    if (end == text || *end || v < lo || v > hi) {
        fprintf(stderr, "bench_train: %s must be an integer in [%d, %d], got '%s'\n", name, lo, hi,
                text);
        return -1;
    }
    *out = (int)v;
    return 0;
}

/* 0: run; 1: --help printed; 2: usage error. */
static int parse_options(int argc, char **argv, bench_options *o)
{
    o->celeba = "../shared/data/celeba128";
    o->attribute = "Eyeglasses";
    o->direction = "remove";
    o->face_recognition = "models/face-recognition-resnet29.safetensors";
    o->denoiser = NULL;
    o->backend = "cpu";
    o->threads = 1;
    o->steps = 5;
    o->warmup = 1;
    o->batch = 16;
    o->parts = 2;
    o->layers = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return 1;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "bench_train: unknown option or missing value: %s (see --help)\n", a);
            return 2;
        }
        const char *v = argv[++i];
        int bad = 0;
        if (strcmp(a, "--celeba") == 0)
            o->celeba = v;
        else if (strcmp(a, "--attribute") == 0)
            o->attribute = v;
        else if (strcmp(a, "--direction") == 0)
            o->direction = v;
        else if (strcmp(a, "--face-recognition") == 0)
            o->face_recognition = v;
        else if (strcmp(a, "--denoiser") == 0)
            o->denoiser = v;
        else if (strcmp(a, "--backend") == 0)
            o->backend = v;
        else if (strcmp(a, "--threads") == 0)
            bad = parse_int_arg(a, v, 1, 1024, &o->threads);
        else if (strcmp(a, "--batch") == 0)
            bad = parse_int_arg(a, v, 1, 4096, &o->batch);
        else if (strcmp(a, "--steps") == 0)
            bad = parse_int_arg(a, v, 1, MAX_SAMPLES, &o->steps);
        else if (strcmp(a, "--warmup") == 0)
            bad = parse_int_arg(a, v, 0, 1000, &o->warmup);
        else if (strcmp(a, "--parts") == 0)
            bad = parse_int_arg(a, v, 0, MAX_PART_REPEATS, &o->parts);
        else if (strcmp(a, "--layers") == 0)
            bad = parse_int_arg(a, v, 0, MAX_PART_REPEATS, &o->layers);
        else {
            fprintf(stderr, "bench_train: unknown option %s (see --help)\n", a);
            return 2;
        }
        if (bad) return 2;
    }
    return 0;
}

/* A denoiser of the trainer's default shape with seeded random weights, in
 * the format `diat-train denoiser --export` writes. */
static diat_status write_random_denoiser(const char *path, diat_error *err)
{
    diat_context *ctx = NULL;
    diat_denoiser dn;
    memset(&dn, 0, sizeof dn);
    diat_st_writer *w = NULL;
    char text[16];
    diat_status st = diat_context_new(DIAT_BACKEND_CPU, 1, &ctx, err);
    if (st == DIAT_OK)
        st = diat_denoiser_init(&dn, ctx, DIAT_DEFAULT_DENOISER_WIDTH, DIAT_DEFAULT_DENOISER_DEPTH,
                                err);
    if (st == DIAT_OK) {
        diat_net_init_weights(&dn.net, 12345);
        w = diat_st_writer_new();
        if (!w) st = diat_set_error(err, DIAT_ERR_MEMORY, "Out of memory.");
    }
    if (st == DIAT_OK) st = diat_st_writer_set_metadata(w, "format", "diat-denoiser", err);
    if (st == DIAT_OK) {
        snprintf(text, sizeof text, "%d", DIAT_DEFAULT_DENOISER_WIDTH);
        st = diat_st_writer_set_metadata(w, "width", text, err);
    }
    if (st == DIAT_OK) {
        snprintf(text, sizeof text, "%d", DIAT_DEFAULT_DENOISER_DEPTH);
        st = diat_st_writer_set_metadata(w, "depth", text, err);
    }
    if (st == DIAT_OK)
        st = diat_st_writer_set_metadata(w, "training_data", "none (random weights, benchmark)",
                                         err);
    if (st == DIAT_OK) st = diat_net_save(&dn.net, w, DIAT_DTYPE_F32, err);
    if (st == DIAT_OK) st = diat_st_writer_save(w, path, err);
    diat_st_writer_free(w);
    diat_denoiser_free(&dn);
    diat_context_free(ctx);
    return st;
}

static void cpu_model(char *out, size_t size)
{
    snprintf(out, size, "unknown CPU");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) return;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "model name", 10) != 0) continue;
        const char *colon = strchr(line, ':');
        if (!colon) break;
        colon++;
        while (*colon == ' ') colon++;
        snprintf(out, size, "%s", colon);
        out[strcspn(out, "\n")] = '\0';
        break;
    }
    fclose(f);
}

/* ---- timing whole steps ------------------------------------------------- */

/* Runs `count` trainer steps, storing each one's wall seconds in `seconds`
 * and process CPU seconds in `cpu` (either may be NULL). */
static diat_status run_steps(trainer *tr, int count, double *seconds, double *cpu, diat_error *err)
{
    for (int i = 0; i < count; i++) {
        step_figures figures;
        double start = now_seconds(), cpu_start = cpu_seconds();
        diat_status st = trainer_step(tr, &figures, err);
        if (st != DIAT_OK) return st;
        if (seconds) seconds[i] = now_seconds() - start;
        if (cpu) cpu[i] = cpu_seconds() - cpu_start;
        for (int k = 0; k < LOSS_SLOTS; k++)
            if (figures.value[k] != figures.value[k])
                return diat_set_error(err, DIAT_ERR_ARGUMENT, "Step %ld: a loss is NaN.",
                                      figures.step);
    }
    return DIAT_OK;
}

/* ---- counting a step's floating-point work --------------------------------
 * One untimed step runs through a copy of the backend table whose
 * convolutions and linear layers add up their FLOPs (2 per multiply-add;
 * a backward counts its dx and dW products separately) before calling the
 * real op. Element-wise work is left out, so achieved TFLOP/s is a floor. */

static const diat_backend *counted_backend;
static double counted_flops;

static double conv_flops(const diat_tensor *weight, const diat_tensor *y)
{
    return 2.0 * (double)diat_tensor_count(y) * weight->c * weight->h * weight->w;
}

static void counting_conv2d_forward(diat_context *ctx, const diat_tensor *x,
                                    const diat_tensor *weight, const diat_tensor *bias,
                                    diat_conv_geometry g, diat_activation act, float slope,
                                    diat_tensor *y)
{
    counted_flops += conv_flops(weight, y);
    counted_backend->conv2d_forward(ctx, x, weight, bias, g, act, slope, y);
}

static void counting_conv2d_backward(diat_context *ctx, const diat_tensor *x,
                                     const diat_tensor *weight, const diat_tensor *dy,
                                     diat_conv_geometry g, diat_tensor *dx, diat_tensor *dweight,
                                     diat_tensor *dbias)
{
    counted_flops += conv_flops(weight, dy) * ((dx != NULL) + (dweight != NULL));
    counted_backend->conv2d_backward(ctx, x, weight, dy, g, dx, dweight, dbias);
}

static void counting_linear_forward(diat_context *ctx, const diat_tensor *x,
                                    const diat_tensor *weight, const diat_tensor *bias,
                                    diat_tensor *y)
{
    counted_flops += 2.0 * x->n * (double)diat_tensor_count(weight);
    counted_backend->linear_forward(ctx, x, weight, bias, y);
}

static void counting_linear_backward(diat_context *ctx, const diat_tensor *x,
                                     const diat_tensor *weight, const diat_tensor *dy,
                                     diat_tensor *dx, diat_tensor *dweight, diat_tensor *dbias)
{
    counted_flops +=
        2.0 * x->n * (double)diat_tensor_count(weight) * ((dx != NULL) + (dweight != NULL));
    counted_backend->linear_backward(ctx, x, weight, dy, dx, dweight, dbias);
}

/* FLOPs of one trainer step, counted as above. */
static diat_status count_step_flops(trainer *tr, double *flops, diat_error *err)
{
    diat_backend counting = *tr->ctx->backend;
    counted_backend = tr->ctx->backend;
    counting.conv2d_forward = counting_conv2d_forward;
    counting.conv2d_backward = counting_conv2d_backward;
    counting.linear_forward = counting_linear_forward;
    counting.linear_backward = counting_linear_backward;
    counted_flops = 0.0;
    tr->ctx->backend = &counting;
    step_figures figures;
    diat_status st = trainer_step(tr, &figures, err);
    tr->ctx->backend = counted_backend;
    *flops = counted_flops;
    return st;
}

/* ---- timing the parts of a step ------------------------------------------
 * The engine calls trainer/steps.c makes, grouped as below, each group timed
 * on its own on the trainer's networks and buffers (after real steps, so
 * every buffer has its size). The order follows steps.c, so each group finds
 * the state it needs (forward activations before their backward). */

enum part {
    PART_TM_FORWARD,   /* T and M forward and the composition, one batch */
    PART_D_REAL_FAKE,  /* critic: D forward + backward on references and on fakes */
    PART_GP_GRADIENT,  /* critic: D forward on interpolates + input gradient g */
    PART_GP_DOUBLE,    /* critic: penalty + exact double backward to D's weights */
    PART_ADAM_D,       /* critic: Adam over D */
    PART_D_PERCEPTUAL, /* generator: D on x (features), on y; backward to y */
    PART_PHI,          /* generator: phi(x), phi(y), backward to y */
    PART_DN,           /* generator: DN(y), backward to y */
    PART_TM_BACKWARD,  /* generator: composition, ratio, T and M backward */
    PART_ADAM_G,       /* generator: Adam over T and M */
    PART_COUNT
};

static const char *const part_names[PART_COUNT] = {
    "T+M forward + composition (1 batch)",
    "D fwd+bwd on references and fakes",
    "GP: D fwd on x_hat + input gradient",
    "GP: penalty + double backward",
    "Adam over D",
    "D on x and y + backward (adv, ap)",
    "phi(x), phi(y) + backward to y (id)",
    "DN(y) + backward to y (pr)",
    "T and M backward (+ compose, ratio)",
    "Adam over T and M",
};

static const char *const part_keys[PART_COUNT] = {
    "tm_forward",   "d_real_fake", "gp_gradient", "gp_double",   "adam_d",
    "d_perceptual", "phi",         "dn",          "tm_backward", "adam_g",
};

static diat_status generate(trainer *tr, diat_error *err)
{
    diat_status st;
    if ((st = diat_transform_forward(&tr->transform, &tr->sources, err)) ||
        (st = diat_mask_forward(&tr->mask, &tr->sources, err)))
        return st;
    diat_context_backend(tr->ctx)->compose_forward(tr->ctx, &tr->mask.mask, &tr->transform.up[4],
                                                   &tr->sources, &tr->result);
    return DIAT_OK;
}

static void fill(trainer *tr, diat_tensor *t, float value)
{
    diat_context_backend(tr->ctx)->fill(tr->ctx, t->data, value, diat_tensor_count(t));
}

/* dst = src, same shape (both already allocated by the trainer's steps). */
static void copy_into(trainer *tr, const diat_tensor *src, diat_tensor *dst)
{
    diat_tensor_zero(tr->ctx, dst);
    diat_context_backend(tr->ctx)->axpy(tr->ctx, 1.0f, src->data, dst->data,
                                        diat_tensor_count(src));
}

/* Seconds since *start, after the work queued so far has finished (a GPU
 * backend queues work asynchronously). */
static double elapsed_since(trainer *tr, double *start)
{
    diat_context_synchronize(tr->ctx);
    double now = now_seconds(), d = now - *start;
    *start = now;
    return d;
}

/* One pass over every part; seconds[part] receives each one's time. */
static diat_status time_parts_once(trainer *tr, double seconds[PART_COUNT], diat_error *err)
{
    diat_context *ctx = tr->ctx;
    const diat_backend *be = diat_context_backend(ctx);
    diat_critic *d = &tr->critic;
    const int n = tr->opt.batch;
    const size_t plane = (size_t)DIAT_FACE_SIZE * DIAT_FACE_SIZE;
    float *loss = tr->scalars.data; /* scratch scalars: values are not used */
    diat_status st;
    diat_context_synchronize(ctx);
    double t = now_seconds();

    /* ---- a critic step ---- */
    if ((st = generate(tr, err))) return st;
    seconds[PART_TM_FORWARD] = elapsed_since(tr, &t);

    diat_net_zero_grad(&d->net);
    if ((st = diat_critic_forward(d, &tr->references, err))) return st;
    be->sum_forward(ctx, d->score.data, (size_t)n, 1.0f / n, loss);
    fill(tr, &tr->dscore, -1.0f / n);
    if ((st = diat_critic_backward(d, &tr->dscore, NULL, NULL, NULL, err))) return st;
    if ((st = diat_critic_forward(d, &tr->result, err))) return st;
    be->sum_forward(ctx, d->score.data, (size_t)n, 1.0f / n, loss);
    fill(tr, &tr->dscore, 1.0f / n);
    if ((st = diat_critic_backward(d, &tr->dscore, NULL, NULL, NULL, err))) return st;
    seconds[PART_D_REAL_FAKE] = elapsed_since(tr, &t);

    float *weights = tr->host_noise;
    for (int i = 0; i < n; i++)
        for (size_t p = 0; p < plane; p++) weights[(size_t)i * plane + p] = 0.25f + 0.5f * i / n;
    diat_tensor_upload(ctx, &tr->interp_weight, weights);
    be->compose_forward(ctx, &tr->interp_weight, &tr->references, &tr->result, &tr->interp);
    if ((st = diat_critic_forward(d, &tr->interp, err)) ||
        (st = diat_critic_input_gradient(d, &tr->penalty_grad, err)))
        return st;
    seconds[PART_GP_GRADIENT] = elapsed_since(tr, &t);

    be->gradient_penalty_forward(ctx, &tr->penalty_grad, tr->opt.lambda_gp, loss);
    diat_tensor_zero(ctx, &tr->penalty_u);
    be->gradient_penalty_backward(ctx, &tr->penalty_grad, tr->opt.lambda_gp, &tr->penalty_u);
    if ((st = diat_critic_input_gradient_backward(d, &tr->penalty_u, err))) return st;
    seconds[PART_GP_DOUBLE] = elapsed_since(tr, &t);

    optimizer_step(&tr->opt_d, ctx);
    seconds[PART_ADAM_D] = elapsed_since(tr, &t);

    /* ---- the generator step (T+M forward timed above: the same calls) ---- */
    if ((st = generate(tr, err))) return st;
    diat_net_zero_grad(&tr->transform.net);
    diat_net_zero_grad(&tr->mask.net);
    diat_tensor_zero(ctx, &tr->dresult);
    diat_context_synchronize(ctx);
    t = now_seconds();

    /* As steps.c: D passes gradients back to y only, no weight gradients. */
    diat_net_set_trainable(&d->net, 0);
    if ((st = diat_critic_forward(d, &tr->sources, err))) return st;
    copy_into(tr, &d->feat[3], &tr->feat4_x);
    copy_into(tr, &d->feat[4], &tr->feat5_x);
    if ((st = diat_critic_forward(d, &tr->result, err))) return st;
    be->sum_forward(ctx, d->score.data, (size_t)n, -1.0f / n, loss);
    fill(tr, &tr->dscore, -1.0f / n);
    const diat_tensor *fy[2] = {&d->feat[3], &d->feat[4]}, *fx[2] = {&tr->feat4_x, &tr->feat5_x};
    diat_tensor *dfeat[2] = {&tr->dfeat4, &tr->dfeat5};
    for (int k = 0; k < 2; k++) {
        size_t count = diat_tensor_count(fy[k]);
        float scale = tr->opt.lambda_ap / (float)count;
        diat_tensor_zero(ctx, dfeat[k]);
        be->squared_error_forward(ctx, fy[k]->data, fx[k]->data, count, scale, loss);
        be->squared_error_backward(ctx, fy[k]->data, fx[k]->data, count, scale, dfeat[k]->data,
                                   NULL);
    }
    st = diat_critic_backward(d, &tr->dscore, &tr->dfeat4, &tr->dfeat5, &tr->dresult, err);
    diat_net_set_trainable(&d->net, 1);
    if (st) return st;
    seconds[PART_D_PERCEPTUAL] = elapsed_since(tr, &t);

    seconds[PART_PHI] = 0.0;
    if (tr->have_identity) {
        diat_face_recognition *phi = &tr->identity;
        if ((st = diat_face_recognition_forward(phi, &tr->sources, err))) return st;
        copy_into(tr, &phi->embedding, &tr->embed_x);
        if ((st = diat_face_recognition_forward(phi, &tr->result, err))) return st;
        size_t count = diat_tensor_count(&tr->embed_x);
        float scale = tr->opt.lambda_id / (float)n;
        diat_tensor_zero(ctx, &tr->dembed);
        be->squared_error_forward(ctx, phi->embedding.data, tr->embed_x.data, count, scale, loss);
        be->squared_error_backward(ctx, phi->embedding.data, tr->embed_x.data, count, scale,
                                   tr->dembed.data, NULL);
        if ((st = diat_face_recognition_backward(phi, &tr->dembed, &tr->dresult, err))) return st;
        seconds[PART_PHI] = elapsed_since(tr, &t);
    }

    seconds[PART_DN] = 0.0;
    if (tr->have_denoiser) {
        diat_denoiser *dn = &tr->denoiser;
        if ((st = diat_denoiser_forward(dn, &tr->result, err))) return st;
        size_t count = diat_tensor_count(&tr->result);
        float scale = tr->opt.lambda_pr / (float)count;
        diat_tensor_zero(ctx, &tr->dtarget);
        be->squared_error_forward(ctx, dn->out.data, tr->result.data, count, scale, loss);
        be->squared_error_backward(ctx, dn->out.data, tr->result.data, count, scale,
                                   tr->dtarget.data, tr->dresult.data);
        if ((st = diat_denoiser_backward(dn, &tr->dtarget, &tr->dresult, err))) return st;
        seconds[PART_DN] = elapsed_since(tr, &t);
    }

    diat_tensor_zero(ctx, &tr->dtransform);
    diat_tensor_zero(ctx, &tr->dmask);
    be->compose_backward(ctx, &tr->mask.mask, &tr->transform.up[4], &tr->sources, &tr->dresult,
                         &tr->dmask, &tr->dtransform, NULL);
    for (int i = 0; i < n; i++) {
        const float *mi = tr->mask.mask.data + (size_t)i * plane;
        be->ratio_loss_forward(ctx, mi, plane, tr->opt.ratio, tr->opt.lambda_ar / n, loss);
        be->ratio_loss_backward(ctx, mi, plane, tr->opt.ratio, tr->opt.lambda_ar / n,
                                tr->dmask.data + (size_t)i * plane);
    }
    if ((st = diat_transform_backward(&tr->transform, &tr->dtransform, NULL, err)) ||
        (st = diat_mask_backward(&tr->mask, &tr->dmask, NULL, NULL, err)))
        return st;
    seconds[PART_TM_BACKWARD] = elapsed_since(tr, &t);

    optimizer_step(&tr->opt_g, ctx);
    seconds[PART_ADAM_G] = elapsed_since(tr, &t);
    return DIAT_OK;
}

/* ---- the dominant convolutions alone -------------------------------------
 * Shapes of D, DN and phi at diat-train's default widths (keep in step with
 * the table in bench_train_torch.py). */

typedef struct conv_case {
    const char *name;
    int in_c, out_c, side, kernel, stride, pad;
} conv_case;

static const conv_case conv_cases[] = {
    {"D.conv1", 3, 32, 128, 4, 2, 1},      {"D.conv2", 32, 64, 64, 4, 2, 1},
    {"D.conv3", 64, 128, 32, 4, 2, 1},     {"D.conv4", 128, 256, 16, 4, 2, 1},
    {"D.conv5", 256, 256, 8, 4, 2, 1},     {"DN.conv1", 3, 32, 128, 3, 1, 1},
    {"DN.conv2-4", 32, 32, 128, 3, 1, 1},  {"DN.conv5", 32, 3, 128, 3, 1, 1},
    {"phi.stem", 3, 32, 150, 7, 2, 0},     {"phi.conv32", 32, 32, 35, 3, 1, 1},
    {"phi.conv64", 64, 64, 17, 3, 1, 1},   {"phi.conv128", 128, 128, 8, 3, 1, 1},
    {"phi.conv256", 256, 256, 4, 3, 1, 1},
};
#define CONV_CASES (int)(sizeof conv_cases / sizeof conv_cases[0])

static void fill_random(float *p, size_t count, uint64_t *state)
{
    for (size_t i = 0; i < count; i++) {
        *state = *state * 6364136223846793005ull + 1442695040888963407ull;
        p[i] = (float)((double)(*state >> 40) * 0x1.0p-24 * 2.0 - 1.0);
    }
}

static diat_status time_layers(diat_context *ctx, int batch, int repeats, diat_error *err)
{
    const diat_backend *be = diat_context_backend(ctx);
    uint64_t state = 7;
    printf("\nconvolutions alone, batch %d (median of %d; GFLOP/s = 2 MACs per tap; backward "
           "counts 2x the forward's FLOPs for dx + dW, 1x for dx):\n",
           batch, repeats);
    printf("  %-11s %-20s %8s | %9s %7s | %9s %7s | %9s %7s\n", "layer", "shape", "GFLOP", "fwd ms",
           "GFLOP/s", "dx+dW ms", "GFLOP/s", "dx ms", "GFLOP/s");
    for (int c = 0; c < CONV_CASES; c++) {
        const conv_case *k = &conv_cases[c];
        int out_side = (k->side + 2 * k->pad - k->kernel) / k->stride + 1;
        diat_tensor x = {0}, w = {0}, b = {0}, y = {0}, dx = {0}, dw = {0}, db = {0};
        diat_status st = diat_tensor_alloc(ctx, &x, batch, k->in_c, k->side, k->side, err);
        if (!st) st = diat_tensor_alloc(ctx, &dx, batch, k->in_c, k->side, k->side, err);
        if (!st) st = diat_tensor_alloc(ctx, &w, k->out_c, k->in_c, k->kernel, k->kernel, err);
        if (!st) st = diat_tensor_alloc(ctx, &dw, k->out_c, k->in_c, k->kernel, k->kernel, err);
        if (!st) st = diat_tensor_alloc(ctx, &b, k->out_c, 1, 1, 1, err);
        if (!st) st = diat_tensor_alloc(ctx, &db, k->out_c, 1, 1, 1, err);
        if (!st) st = diat_tensor_alloc(ctx, &y, batch, k->out_c, out_side, out_side, err);
        if (st) return st;
        diat_tensor *inputs[] = {&x, &w, &b};
        for (int j = 0; j < 3; j++) {
            float *host = malloc(diat_tensor_count(inputs[j]) * sizeof *host);
            if (!host) return diat_set_error(err, DIAT_ERR_MEMORY, "Out of memory.");
            fill_random(host, diat_tensor_count(inputs[j]), &state);
            diat_tensor_upload(ctx, inputs[j], host);
            free(host);
        }
        diat_conv_geometry g = {k->kernel, k->stride, k->pad};
        double fwd[MAX_PART_REPEATS], both[MAX_PART_REPEATS], input[MAX_PART_REPEATS];
        for (int r = -1; r < repeats; r++) { /* r = -1: untimed */
            diat_context_synchronize(ctx);
            double t = now_seconds();
            be->conv2d_forward(ctx, &x, &w, &b, g, DIAT_ACT_IDENTITY, 0.0f, &y);
            diat_context_synchronize(ctx);
            double t1 = now_seconds();
            diat_tensor_zero(ctx, &dx);
            diat_tensor_zero(ctx, &dw);
            diat_tensor_zero(ctx, &db);
            diat_context_synchronize(ctx);
            double t2 = now_seconds();
            be->conv2d_backward(ctx, &x, &w, &y, g, &dx, &dw, &db);
            diat_context_synchronize(ctx);
            double t3 = now_seconds();
            diat_tensor_zero(ctx, &dx);
            diat_context_synchronize(ctx);
            double t4 = now_seconds();
            be->conv2d_backward(ctx, &x, &w, &y, g, &dx, NULL, NULL);
            diat_context_synchronize(ctx);
            double t5 = now_seconds();
            if (r >= 0) {
                fwd[r] = t1 - t;
                both[r] = t3 - t2;
                input[r] = t5 - t4;
            }
        }
        double flops =
            2.0 * batch * k->out_c * (double)out_side * out_side * k->in_c * k->kernel * k->kernel;
        double f = median(fwd, repeats), a = median(both, repeats), i = median(input, repeats);
        char shape[48];
        snprintf(shape, sizeof shape, "%d^2 %d->%d k%d s%d", k->side, k->in_c, k->out_c, k->kernel,
                 k->stride);
        printf("  %-11s %-20s %8.3f | %9.2f %7.1f | %9.2f %7.1f | %9.2f %7.1f\n", k->name, shape,
               flops / 1e9, 1e3 * f, flops / f / 1e9, 1e3 * a, 2 * flops / a / 1e9, 1e3 * i,
               flops / i / 1e9);
        diat_tensor *all[] = {&x, &w, &b, &y, &dx, &dw, &db};
        for (size_t j = 0; j < sizeof all / sizeof all[0]; j++) diat_tensor_release(ctx, all[j]);
    }
    return DIAT_OK;
}

/* ---- main --------------------------------------------------------------- */

int main(int argc, char **argv)
{
    bench_options bo;
    int parsed = parse_options(argc, argv, &bo);
    if (parsed == 1) return 0;
    if (parsed) return 2;

    char tmp_dir[] = "/tmp/diat-bench-train-XXXXXX";
    if (!mkdtemp(tmp_dir)) {
        perror("bench_train: mkdtemp");
        return 1;
    }
    char dn_path[sizeof tmp_dir + 32];
    snprintf(dn_path, sizeof dn_path, "%s/denoiser.safetensors", tmp_dir);
    diat_error err = {0};
    int made_denoiser = 0;
    if (!bo.denoiser) {
        if (write_random_denoiser(dn_path, &err)) {
            fprintf(stderr, "bench_train: error: %s\n", err.message);
            rmdir(tmp_dir);
            return 1;
        }
        bo.denoiser = dn_path;
        made_denoiser = 1;
    }

    /* diat-train's own option parser, so every other setting is its default. */
    char threads_text[16], batch_text[16];
    snprintf(threads_text, sizeof threads_text, "%d", bo.threads);
    snprintf(batch_text, sizeof batch_text, "%d", bo.batch);
    char *train_argv[] = {"bench_train",
                          "transfer",
                          "--run-dir",
                          tmp_dir,
                          "--celeba",
                          (char *)bo.celeba,
                          "--attribute",
                          (char *)bo.attribute,
                          "--direction",
                          (char *)bo.direction,
                          "--denoiser",
                          (char *)bo.denoiser,
                          "--face-recognition",
                          (char *)bo.face_recognition,
                          "--threads",
                          threads_text,
                          "--batch",
                          batch_text,
                          "--backend",
                          (char *)bo.backend,
                          "--quiet",
                          NULL};
    int train_argc = (int)(sizeof train_argv / sizeof train_argv[0]) - 1;
    train_options opt;
    if (train_options_parse(train_argc, train_argv, &opt) != 0) {
        if (made_denoiser) unlink(dn_path);
        rmdir(tmp_dir);
        return 2;
    }

    trainer tr;
    diat_status st = trainer_init(&tr, &opt, &err);
    if (made_denoiser) unlink(dn_path);
    rmdir(tmp_dir);
    if (st != DIAT_OK) {
        fprintf(stderr, "bench_train: error: %s\n", err.message);
        trainer_free(&tr);
        return 1;
    }

    char cpu[256];
    cpu_model(cpu, sizeof cpu);
    double load[3] = {0, 0, 0};
    if (getloadavg(load, 3) < 0) load[0] = load[1] = load[2] = -1;
    const int n = opt.batch;
    printf("machine: %s, %ld online cores, load average %.2f %.2f %.2f\n", cpu,
           sysconf(_SC_NPROCESSORS_ONLN), load[0], load[1], load[2]);
    printf("engine: %s backend, %d thread(s), BLAS: %s\n", diat_context_backend_name(tr.ctx),
           diat_context_threads(tr.ctx), diat_blas_description());
    printf("trainer defaults: batch %d, widths T %d / M %d / D %d, DN %d x %d, n_critic %d, "
           "lambda gp %g ap %g id %g pr %g ar %g, p %.2f, Adam lr %g/%g betas (%g, %g)\n",
           n, opt.width, opt.mask_width, opt.critic_width, opt.denoiser_width, opt.denoiser_depth,
           opt.n_critic, opt.lambda_gp, opt.lambda_ap, opt.lambda_id, opt.lambda_pr, opt.lambda_ar,
           opt.ratio, opt.lr_g, opt.lr_d, opt.beta1, opt.beta2);
    printf("data: %s (%s %s), real faces decoded on the data thread\n", opt.celeba_root,
           opt.attribute, opt.add ? "add" : "remove");
    printf("phi: %s; DN: %s\n\n", opt.face_recognition_path,
           made_denoiser ? "random weights, default shape" : opt.denoiser_path);
    fflush(stdout);

    double step_s[MAX_SAMPLES], gen_s[MAX_SAMPLES], cpu_s[MAX_SAMPLES];
    if ((st = run_steps(&tr, bo.warmup, NULL, NULL, &err)) ||
        (st = run_steps(&tr, bo.steps, step_s, cpu_s, &err))) {
        fprintf(stderr, "bench_train: error: %s\n", err.message);
        trainer_free(&tr);
        return 1;
    }
    /* The generator step alone: the same trainer with no critic step. */
    const int n_critic = tr.opt.n_critic;
    tr.opt.n_critic = 0;
    st = run_steps(&tr, bo.steps, gen_s, NULL, &err);
    tr.opt.n_critic = n_critic;
    if (st != DIAT_OK) {
        fprintf(stderr, "bench_train: error: %s\n", err.message);
        trainer_free(&tr);
        return 1;
    }
    double best = step_s[0];
    for (int i = 1; i < bo.steps; i++)
        if (step_s[i] < best) best = step_s[i];
    double step = median(step_s, bo.steps);
    double gen = median(gen_s, bo.steps);
    double critic = (step - gen) / n_critic;
    double cpu_step = median(cpu_s, bo.steps);

    printf("training step (%d critic + 1 generator), %d timed after %d warm-up:\n", n_critic,
           bo.steps, bo.warmup);
    printf("  step      %8.3f s median (best %.3f)  %7.2f images/s (generator, batch %d)\n", step,
           best, n / step, n);
    printf("  critic    %8.3f s per critic step (x%d = %.3f s, %.0f%% of the step); the critic "
           "sees %d references, %d fakes and %d interpolates per step: %.1f critic images/s\n",
           critic, n_critic, critic * n_critic, 100.0 * critic * n_critic / step, n_critic * n,
           n_critic * n, n_critic * n, 3.0 * n_critic * n / step);
    printf("  generator %8.3f s (%.0f%% of the step; measured with n_critic = 0)\n", gen,
           100.0 * gen / step);
    printf("  CPU time  %8.3f s per step, all threads (wall x threads = %.3f s)\n", cpu_step,
           step * diat_context_threads(tr.ctx));
    double flops = 0.0;
    if ((st = count_step_flops(&tr, &flops, &err))) {
        fprintf(stderr, "bench_train: error: %s\n", err.message);
        trainer_free(&tr);
        return 1;
    }
    printf("  work      %8.1f GFLOP per step in convolutions and linear layers = %.2f TFLOP/s "
           "achieved\n\n",
           flops / 1e9, flops / step / 1e12);
    printf("RESULT step_gflop=%.2f\n", flops / 1e9);
    printf("RESULT tflops=%.4f\n", flops / step / 1e12);
    printf("RESULT step_s=%.4f\n", step);
    printf("RESULT images_per_s=%.3f\n", n / step);
    printf("RESULT critic_step_s=%.4f\n", critic);
    printf("RESULT generator_step_s=%.4f\n", gen);
    printf("RESULT step_cpu_s=%.4f\n", cpu_step);

    if (bo.parts > 0) {
        double samples[PART_COUNT][MAX_PART_REPEATS], sum = 0.0;
        /* r = -1: an untimed pass first, as the PyTorch side does. */
        for (int r = -1; r < bo.parts; r++) {
            double seconds[PART_COUNT];
            if ((st = time_parts_once(&tr, seconds, &err))) {
                fprintf(stderr, "bench_train: error: %s\n", err.message);
                trainer_free(&tr);
                return 1;
            }
            for (int p = 0; p < PART_COUNT && r >= 0; p++) samples[p][r] = seconds[p];
        }
        printf("parts (the engine calls of steps.c, timed one group at a time; median of %d after "
               "one untimed pass):\n",
               bo.parts);
        for (int p = 0; p < PART_COUNT; p++) {
            double m = median(samples[p], bo.parts);
            /* per step: the critic groups run n_critic times, T+M forward n_critic + 1 */
            int times = p == PART_TM_FORWARD ? n_critic + 1 : p <= PART_ADAM_D ? n_critic : 1;
            sum += m * times;
            printf("  %-38s %8.1f ms  x%d per step = %8.1f ms (%4.1f%%)\n", part_names[p], 1e3 * m,
                   times, 1e3 * m * times, 100.0 * m * times / step);
            printf("RESULT part_%s_ms=%.2f\n", part_keys[p], 1e3 * m);
        }
        printf("  %-38s %8s     %13.1f ms of the measured %.1f ms (rest: data, zeroing, "
               "copies)\n",
               "sum", "", 1e3 * sum, 1e3 * step);
    }
    if (bo.layers > 0 && (st = time_layers(tr.ctx, n, bo.layers, &err))) {
        fprintf(stderr, "bench_train: error: %s\n", err.message);
        trainer_free(&tr);
        return 1;
    }
    trainer_free(&tr);
    return 0;
}

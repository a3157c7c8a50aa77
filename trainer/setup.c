/* Building and releasing the training state: context, data, networks,
 * optimizers and the step's buffers. */
#include "trainer.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FACE DIAT_FACE_SIZE

static diat_status metadata_int(const diat_safetensors *st, const char *path, const char *key,
                                int *out, diat_error *err)
{
    const char *text = diat_safetensors_metadata(st, key);
    char *end = NULL;
    long value = text ? strtol(text, &end, 10) : 0;
    if (!text || *end || value < 1 || value > 4096)
        return diat_set_error(err, DIAT_ERR_FORMAT, "%s has no valid '%s' in its metadata.", path,
                              key);
    *out = (int)value;
    return DIAT_OK;
}

/* A denoiser written by `diat-train denoiser --export`. */
static diat_status load_denoiser(trainer *tr, const char *path, diat_error *err)
{
    diat_safetensors *st = NULL;
    diat_status status = diat_safetensors_open(path, &st, err);
    if (status != DIAT_OK) return status;
    const char *format = diat_safetensors_metadata(st, "format");
    int width = 0, depth = 0;
    if (!format || strcmp(format, "diat-denoiser") != 0)
        status =
            diat_set_error(err, DIAT_ERR_FORMAT,
                           "%s is not a denoiser written by `diat-train denoiser --export`.", path);
    if (status == DIAT_OK) status = metadata_int(st, path, "width", &width, err);
    if (status == DIAT_OK) status = metadata_int(st, path, "depth", &depth, err);
    if (status == DIAT_OK) status = diat_denoiser_init(&tr->denoiser, tr->ctx, width, depth, err);
    if (status == DIAT_OK) status = diat_net_load(&tr->denoiser.net, st, err);
    diat_safetensors_close(st);
    return status;
}

static diat_status open_data(trainer *tr, diat_error *err)
{
    const train_options *o = &tr->opt;
    diat_dataset_options d = {0};
    d.celeba_root = o->celeba_root;
    d.attribute = o->mode == TRAIN_DENOISER ? NULL : o->attribute;
    d.add = o->add;
    d.source_dir = o->source_dir;
    d.target_dir = o->target_dir;
    if (o->align_faces) {
        d.detector_path = o->face_detector_path;
        d.landmarks_path = o->face_landmarks_path;
    }
    d.split = 0; /* the official train split */
    d.batch = o->batch;
    d.flip = o->flip;
    d.seed = o->seed;
    /* On the CPU the step itself uses the cores, and one decoding thread
     * keeps ahead of it. A GPU step at batch 64 takes ~0.1 s and needs ~700
     * decoded faces: decode on every core but the one that drives the GPU. */
    d.threads = 1;
    if (diat_context_backend(tr->ctx) != diat_backend_cpu()) {
        int cores = diat_context_threads(tr->ctx) - 1;
        d.threads = cores < 1 ? 1 : cores > 32 ? 32 : cores;
    }
    return diat_dataset_open(&d, &tr->data, err);
}

/* Sample grids show the same validation faces all run long: the official
 * val split for CelebA, else the first faces of the source folder. */
#define SAMPLE_FACES 8
static diat_status load_sample_faces(trainer *tr, diat_error *err)
{
    const train_options *o = &tr->opt;
    tr->sample_faces = malloc(sizeof(float) * SAMPLE_FACES * 3 * FACE * FACE);
    if (!tr->sample_faces) return diat_set_error(err, DIAT_ERR_MEMORY, "Out of memory.");
    diat_dataset *source = tr->data, *val = NULL;
    if (o->celeba_root) {
        diat_dataset_options d = {0};
        d.celeba_root = o->celeba_root;
        d.attribute = o->mode == TRAIN_DENOISER ? NULL : o->attribute;
        d.add = o->add;
        d.split = 1;
        d.batch = SAMPLE_FACES;
        d.seed = o->seed;
        d.threads = 1;
        diat_status st = diat_dataset_open(&d, &val, err);
        if (st != DIAT_OK) return st;
        source = val;
    }
    diat_status st = diat_dataset_fixed_sources(source, SAMPLE_FACES, tr->sample_faces, err);
    diat_dataset_close(val);
    if (st == DIAT_OK) tr->sample_count = SAMPLE_FACES;
    return st;
}

static diat_status alloc_buffers(trainer *tr, diat_error *err)
{
    diat_context *ctx = tr->ctx;
    const int n = tr->opt.batch;
    size_t face_floats = (size_t)n * 3 * FACE * FACE;
    tr->host_sources = malloc(face_floats * sizeof(float));
    tr->host_references = malloc(face_floats * sizeof(float));
    tr->host_noise = malloc(face_floats * sizeof(float));
    if (!tr->host_sources || !tr->host_references || !tr->host_noise)
        return diat_set_error(err, DIAT_ERR_MEMORY, "Out of memory for a batch of %d faces.", n);
    diat_tensor *images[] = {&tr->sources, &tr->references, &tr->result, &tr->interp,
                             &tr->dresult, &tr->dtransform, &tr->dtarget};
    diat_status st = DIAT_OK;
    for (size_t i = 0; i < sizeof images / sizeof images[0] && st == DIAT_OK; i++)
        st = diat_tensor_alloc(ctx, images[i], n, 3, FACE, FACE, err);
    if (st == DIAT_OK) st = diat_tensor_alloc(ctx, &tr->interp_weight, n, 1, FACE, FACE, err);
    if (st == DIAT_OK) st = diat_tensor_alloc(ctx, &tr->dmask, n, 1, FACE, FACE, err);
    if (st == DIAT_OK) st = diat_tensor_alloc(ctx, &tr->dscore, n, 1, 1, 1, err);
    if (st == DIAT_OK) st = diat_tensor_alloc(ctx, &tr->scalars, LOSS_SLOTS + n, 1, 1, 1, err);
    return st;
}

/* M's last batch norm gives the mask logits zero mean and unit variance, so
 * with its beta at 0 the binarized mask covers half the face whatever p is,
 * and Adam moves beta by about lr per step: reaching p = 0.12 from there
 * takes ~10^4 steps. Starting beta at the standard normal quantile of p makes
 * the first masks cover about p of the face. */
static void mask_start_at_ratio(diat_mask *m, float ratio)
{
    if (!(ratio > 0.0f && ratio < 1.0f)) return;
    /* Bisect Phi(z) = 1 - p; with beta = -z, a logit is above 0 (the mask's
     * threshold) where the normalised value exceeds z: a fraction p. */
    double low = -8.0, high = 8.0;
    for (int i = 0; i < 60; i++) {
        double mid = 0.5 * (low + high);
        if (0.5 * erfc(-mid / sqrt(2.0)) < 1.0 - ratio)
            low = mid;
        else
            high = mid;
    }
    float value = (float)-low; /* M's last layer has one channel */
    diat_tensor_upload(m->net.ctx, &m->bn_layer[4].beta->value, &value);
}

diat_status trainer_init(trainer *tr, const train_options *opt, diat_error *err)
{
    memset(tr, 0, sizeof *tr);
    tr->opt = *opt;
    if (opt->attribute == opt->attribute_storage) tr->opt.attribute = tr->opt.attribute_storage;
    tr->rng = opt->seed * 0x2545F4914F6CDD1Dull + 1;
    diat_backend_kind kind;
    if (diat_backend_kind_parse(opt->backend, &kind))
        return diat_set_error(err, DIAT_ERR_ARGUMENT, "Unknown backend '%s'.", opt->backend);
    diat_status st = diat_context_new(kind, opt->threads, &tr->ctx, err);
    if (st == DIAT_OK && diat_context_notice(tr->ctx))
        fprintf(stderr, "diat-train: %s\n", diat_context_notice(tr->ctx));
    if (st == DIAT_OK && opt->mode == TRAIN_CLASSIFIER) return classifier_setup(tr, err);
    /* An export needs the networks only: no data, no frozen helpers. */
    int exporting = opt->export_path != NULL;
    if (st == DIAT_OK && !exporting) st = open_data(tr, err);
    if (st == DIAT_OK) st = alloc_buffers(tr, err);
    if (st == DIAT_OK && !exporting) st = load_sample_faces(tr, err);
    if (st != DIAT_OK) return st;
    diat_context *ctx = tr->ctx;

    if (opt->mode == TRAIN_DENOISER) {
        if ((st = diat_denoiser_init(&tr->denoiser, ctx, opt->denoiser_width, opt->denoiser_depth,
                                     err)))
            return st;
        tr->have_denoiser = 1;
        diat_net_init_weights(&tr->denoiser.net, opt->seed * 8 + 4);
        /* A zero last layer predicts no noise: DN starts as the identity. */
        char last[DIAT_PARAM_NAME_MAX];
        snprintf(last, sizeof last, "DN.conv%d.weight", opt->denoiser_depth);
        diat_tensor_zero(ctx, &diat_net_find(&tr->denoiser.net, last)->value);
        diat_net *nets[] = {&tr->denoiser.net};
        return optimizer_init(&tr->opt_g, ctx, nets, 1, opt->lr_g, opt->beta1, opt->beta2, err);
    }

    if ((st = diat_transform_init(&tr->transform, ctx, opt->width, err)) ||
        (st = diat_mask_init(&tr->mask, ctx, opt->mask_width, err)) ||
        (st = diat_critic_init(&tr->critic, ctx, opt->critic_width, err)))
        return st;
    diat_net_init_weights(&tr->transform.net, opt->seed * 8 + 1);
    diat_net_init_weights(&tr->mask.net, opt->seed * 8 + 2);
    diat_net_init_weights(&tr->critic.net, opt->seed * 8 + 3);
    /* T starts as the identity (a zero last layer), so early results are the
     * input and the critic first learns what the attribute looks like. */
    diat_tensor_zero(ctx, &diat_net_find(&tr->transform.net, "T.up5.weight")->value);
    mask_start_at_ratio(&tr->mask, opt->ratio);
    /* After the random initialisation, so D starts exactly as in a run from
     * scratch with this seed. */
    if (opt->init_from && !exporting && (st = init_from_load(tr, opt->init_from, err))) return st;
    tr->transform.net.training = 1;
    tr->mask.net.training = 1;
    tr->critic.net.training = 1;
    if (opt->lambda_id > 0.0f && !exporting) {
        if ((st = diat_face_recognition_init(&tr->identity, ctx, err))) return st;
        tr->have_identity = 1;
        if ((st = diat_face_recognition_load(&tr->identity, opt->face_recognition_path, err)))
            return st;
    }
    if (opt->lambda_pr > 0.0f && !exporting) {
        if ((st = load_denoiser(tr, opt->denoiser_path, err))) return st;
        tr->have_denoiser = 1;
        diat_net_set_trainable(&tr->denoiser.net, 0); /* pretrained, fixed */
    }
    diat_net *generator[] = {&tr->transform.net, &tr->mask.net};
    diat_net *critic[] = {&tr->critic.net};
    /* From the starting weights (--init-from's, or a checkpoint's, loaded
     * over them later with the average it holds). */
    if (opt->ema_decay > 0.0f &&
        (st = weight_average_init(&tr->average, ctx, generator, 2, opt->ema_decay, err)))
        return st;
    if ((st =
             optimizer_init(&tr->opt_g, ctx, generator, 2, opt->lr_g, opt->beta1, opt->beta2, err)))
        return st;
    return optimizer_init(&tr->opt_d, ctx, critic, 1, opt->lr_d, opt->beta1, opt->beta2, err);
}

void trainer_free(trainer *tr)
{
    diat_context *ctx = tr->ctx;
    if (ctx) {
        optimizer_free(&tr->opt_g, ctx);
        optimizer_free(&tr->opt_d, ctx);
        weight_average_free(&tr->average);
        diat_tensor *tensors[] = {
            &tr->sources,      &tr->references, &tr->result,  &tr->interp,  &tr->interp_weight,
            &tr->penalty_grad, &tr->penalty_u,  &tr->feat4_x, &tr->feat5_x, &tr->dfeat4,
            &tr->dfeat5,       &tr->dscore,     &tr->embed_x, &tr->dembed,  &tr->dresult,
            &tr->dtransform,   &tr->dmask,      &tr->dtarget, &tr->scalars};
        for (size_t i = 0; i < sizeof tensors / sizeof tensors[0]; i++)
            diat_tensor_release(ctx, tensors[i]);
    }
    diat_transform_free(&tr->transform);
    diat_mask_free(&tr->mask);
    diat_critic_free(&tr->critic);
    diat_denoiser_free(&tr->denoiser);
    classifier_release(tr);
    if (tr->have_identity) diat_face_recognition_free(&tr->identity);
    diat_dataset_close(tr->data);
    free(tr->host_sources);
    free(tr->host_references);
    free(tr->host_noise);
    free(tr->sample_faces);
    diat_context_free(ctx);
    memset(tr, 0, sizeof *tr);
}

/* Checkpoints and exported models. A checkpoint is a safetensors file with
 * every network, both optimizers' moments, and in its metadata the step
 * counters, the RNG and the data position, so --resume continues exactly.
 * Written atomically by the engine's writer. */
#include "trainer.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CHECKPOINT_FORMAT "diat-checkpoint"

static diat_status set_long(diat_st_writer *w, const char *key, long long value, diat_error *err)
{
    char text[32];
    snprintf(text, sizeof text, "%lld", value);
    return diat_st_writer_set_metadata(w, key, text, err);
}

static diat_status set_hex(diat_st_writer *w, const char *key, uint64_t value, diat_error *err)
{
    char text[32];
    snprintf(text, sizeof text, "%016" PRIx64, value);
    return diat_st_writer_set_metadata(w, key, text, err);
}

/* The run's shape: a checkpoint only resumes a run of the same shape. */
static void describe_shape(const train_options *o, char *text, size_t size)
{
    snprintf(text, size,
             "mode=%d width=%d mask=%d critic=%d dn=%dx%d batch=%d seed=%" PRIu64
             " attribute=%s add=%d",
             (int)o->mode, o->width, o->mask_width, o->critic_width, o->denoiser_width,
             o->denoiser_depth, o->batch, o->seed, o->attribute ? o->attribute : "-", o->add);
}

/* The files and folders a checkpoint records, with the option that gives
 * each (in the order of train_options.path_storage). */
static const struct {
    const char *key, *option;
} kRecordedPaths[TRAIN_RECORDED_PATHS] = {
    {"opt.celeba_root", "celeba"},
    {"opt.source_dir", "source-dir"},
    {"opt.target_dir", "target-dir"},
    {"opt.denoiser", "denoiser"},
    {"opt.face_recognition", "face-recognition"},
    {"opt.face_detector", "face-detector"},
    {"opt.face_landmarks", "face-landmarks"},
};

/* The options' fields for those, in the same order; NULL for a file the
 * run does not use (phi and DN serve transfer runs only, the face models
 * --align-faces only). */
static void recorded_path_fields(train_options *o, const char **fields[TRAIN_RECORDED_PATHS])
{
    const int transfer = o->mode == TRAIN_TRANSFER;
    fields[TRAIN_PATH_CELEBA] = &o->celeba_root;
    fields[TRAIN_PATH_SOURCE_DIR] = &o->source_dir;
    fields[TRAIN_PATH_TARGET_DIR] = &o->target_dir;
    fields[TRAIN_PATH_DENOISER] = transfer ? &o->denoiser_path : NULL;
    fields[TRAIN_PATH_FACE_RECOGNITION] = transfer ? &o->face_recognition_path : NULL;
    fields[TRAIN_PATH_FACE_DETECTOR] = o->align_faces ? &o->face_detector_path : NULL;
    fields[TRAIN_PATH_FACE_LANDMARKS] = o->align_faces ? &o->face_landmarks_path : NULL;
}

/* The settings an export needs, so `--run-dir DIR --export FILE` is enough. */
static diat_status save_settings(const train_options *o, diat_st_writer *w, diat_error *err)
{
    char ratio[32];
    snprintf(ratio, sizeof ratio, "%.9g", o->ratio);
    const struct {
        const char *key;
        long long value;
    } numbers[] = {{"opt.mode", o->mode},
                   {"opt.width", o->width},
                   {"opt.mask_width", o->mask_width},
                   {"opt.critic_width", o->critic_width},
                   {"opt.denoiser_width", o->denoiser_width},
                   {"opt.denoiser_depth", o->denoiser_depth},
                   {"opt.batch", o->batch},
                   {"opt.seed", (long long)o->seed},
                   {"opt.add", o->add},
                   {"opt.celeba", o->celeba_root != NULL},
                   {"opt.align_faces", o->align_faces},
                   {"opt.flip", o->flip},
                   {"opt.steps", o->steps}};
    diat_status st = diat_st_writer_set_metadata(w, "opt.ratio", ratio, err);
    if (!st && o->attribute)
        st = diat_st_writer_set_metadata(w, "opt.attribute", o->attribute, err);
    /* Where T and M came from, so every later export can say so. */
    if (!st && o->init_note[0])
        st = diat_st_writer_set_metadata(w, "opt.init_from", o->init_note, err);
    if (!st) st = set_long(w, "opt.critic_warmup", o->critic_warmup, err);
    /* The objective and optimizer, so an export records the run's values and
     * not the defaults of the command that exports. */
    if (!st && o->mode == TRAIN_TRANSFER) {
        char text[256];
        snprintf(text, sizeof text, "%.9g %.9g %.9g %.9g %.9g %d %.9g %.9g %.9g %.9g", o->lambda_gp,
                 o->lambda_ap, o->lambda_id, o->lambda_pr, o->lambda_ar, o->n_critic, o->lr_g,
                 o->lr_d, o->beta1, o->beta2);
        st = diat_st_writer_set_metadata(w, "opt.objective", text, err);
    }
    /* The data and the networks' files, absolute (as seen from any folder):
     * --resume needs none of them again, and a classifier's export and
     * --evaluate judge it on the val split of the CelebA folder it trained
     * on, unless told another. */
    const char **fields[TRAIN_RECORDED_PATHS];
    recorded_path_fields((train_options *)o, fields); /* only read here */
    for (int i = 0; !st && i < TRAIN_RECORDED_PATHS; i++) {
        const char *path = fields[i] ? *fields[i] : NULL;
        if (!path) continue;
        char *absolute = realpath(path, NULL);
        st = diat_st_writer_set_metadata(w, kRecordedPaths[i].key, absolute ? absolute : path, err);
        free(absolute);
    }
    if (!st && o->ema_decay > 0.0f) {
        char text[32];
        snprintf(text, sizeof text, "%.9g", o->ema_decay);
        st = diat_st_writer_set_metadata(w, "opt.ema", text, err);
    }
    if (!st && o->mode == TRAIN_DENOISER) {
        char text[32];
        snprintf(text, sizeof text, "%.9g", o->noise_sigma);
        st = diat_st_writer_set_metadata(w, "opt.noise_sigma", text, err);
    }
    /* and its export states how it was trained */
    if (!st && o->mode == TRAIN_CLASSIFIER) {
        char text[128];
        snprintf(text, sizeof text, "%.9g %.9g %.9g %d %d %d", o->lr_g, o->beta1, o->beta2,
                 o->loss_brier, o->lr_constant, o->flip);
        st = diat_st_writer_set_metadata(w, "opt.classifier", text, err);
    }
    for (size_t i = 0; !st && i < sizeof numbers / sizeof numbers[0]; i++)
        st = set_long(w, numbers[i].key, numbers[i].value, err);
    return st;
}

static diat_status save_moments(const optimizer *opt, const char *prefix, diat_st_writer *w,
                                diat_context *ctx, diat_error *err)
{
    for (int k = 0; k < opt->count; k++) {
        const diat_param *p = opt->params[k];
        const diat_tensor *moments[2] = {&opt->m[k], &opt->v[k]};
        int64_t shape[4] = {p->value.n, p->value.c, p->value.h, p->value.w};
        size_t count = diat_tensor_count(&p->value);
        float *host = malloc(count * sizeof *host);
        if (!host) return diat_set_error(err, DIAT_ERR_MEMORY, "Out of memory saving Adam state.");
        diat_status st = DIAT_OK;
        for (int j = 0; j < 2 && st == DIAT_OK; j++) {
            char name[DIAT_PARAM_NAME_MAX + 16];
            snprintf(name, sizeof name, "%s.%s.%s", prefix, p->name, j ? "v" : "m");
            diat_tensor_download(ctx, moments[j], host);
            st = diat_st_writer_add(w, name, DIAT_DTYPE_F32, p->ndim, shape, host, err);
        }
        free(host);
        if (st != DIAT_OK) return st;
    }
    return DIAT_OK;
}

static diat_status load_moments(optimizer *opt, const char *prefix, const diat_safetensors *st,
                                diat_context *ctx, diat_error *err)
{
    for (int k = 0; k < opt->count; k++) {
        const diat_param *p = opt->params[k];
        diat_tensor *moments[2] = {&opt->m[k], &opt->v[k]};
        int64_t shape[4] = {p->value.n, p->value.c, p->value.h, p->value.w};
        size_t count = diat_tensor_count(&p->value);
        float *host = malloc(count * sizeof *host);
        if (!host) return diat_set_error(err, DIAT_ERR_MEMORY, "Out of memory loading Adam state.");
        diat_status status = DIAT_OK;
        for (int j = 0; j < 2 && status == DIAT_OK; j++) {
            char name[DIAT_PARAM_NAME_MAX + 16];
            snprintf(name, sizeof name, "%s.%s.%s", prefix, p->name, j ? "v" : "m");
            status = diat_safetensors_read_f32(st, name, p->ndim, shape, host, err);
            if (status == DIAT_OK) diat_tensor_upload(ctx, moments[j], host);
        }
        free(host);
        if (status != DIAT_OK) return status;
    }
    return DIAT_OK;
}

/* The networks a run of this mode trains, in checkpoint order. */
static int run_nets(const trainer *tr, const diat_net *nets[3])
{
    switch (tr->opt.mode) {
    case TRAIN_DENOISER: nets[0] = &tr->denoiser.net; return 1;
    case TRAIN_CLASSIFIER: nets[0] = &tr->classifier.net; return 1;
    case TRAIN_TRANSFER: break;
    }
    nets[0] = &tr->transform.net;
    nets[1] = &tr->mask.net;
    nets[2] = &tr->critic.net;
    return 3;
}

diat_status checkpoint_save(const trainer *tr, const char *path, diat_error *err)
{
    diat_st_writer *w = diat_st_writer_new();
    if (!w) return diat_set_error(err, DIAT_ERR_MEMORY, "Out of memory writing a checkpoint.");
    char shape[256];
    describe_shape(&tr->opt, shape, sizeof shape);
    diat_dataset_position position;
    diat_dataset_get_position(tr->data, &position);
    diat_status st = diat_st_writer_set_metadata(w, "format", CHECKPOINT_FORMAT, err);
    if (!st) st = diat_st_writer_set_metadata(w, "run_shape", shape, err);
    if (!st) st = save_settings(&tr->opt, w, err);
    if (!st) st = set_long(w, "step", tr->step, err);
    if (!st) st = set_long(w, "warmup_done", tr->warmup_done, err);
    if (!st) st = set_long(w, "adam_g_step", tr->opt_g.step, err);
    if (!st) st = set_long(w, "adam_d_step", tr->opt_d.step, err);
    if (!st) st = set_hex(w, "rng", tr->rng, err);
    for (size_t i = 0; !st && i < sizeof position.words / sizeof position.words[0]; i++) {
        char key[32];
        snprintf(key, sizeof key, "data_position_%zu", i);
        st = set_hex(w, key, position.words[i], err);
    }
    const diat_net *nets[3];
    int net_count = run_nets(tr, nets);
    for (int i = 0; !st && i < net_count; i++) st = diat_net_save(nets[i], w, DIAT_DTYPE_F32, err);
    if (!st && tr->opt.mode == TRAIN_CLASSIFIER) st = classifier_save_eval(tr, w, err);
    if (!st) st = weight_average_save(&tr->average, w, err);
    if (!st) st = save_moments(&tr->opt_g, "adam_g", w, tr->ctx, err);
    if (!st) st = save_moments(&tr->opt_d, "adam_d", w, tr->ctx, err);
    if (!st) st = diat_st_writer_save(w, path, err);
    diat_st_writer_free(w);
    return st;
}

static diat_status read_counter(const diat_safetensors *st, const char *path, const char *key,
                                int hex, uint64_t *out, diat_error *err)
{
    const char *text = diat_safetensors_metadata(st, key);
    char *end = NULL;
    unsigned long long value = text ? strtoull(text, &end, hex ? 16 : 10) : 0;
    if (!text || *end)
        return diat_set_error(err, DIAT_ERR_FORMAT, "Checkpoint %s lacks a valid '%s'.", path, key);
    *out = value;
    return DIAT_OK;
}

/* The run's --init-from provenance into `o`; returns its warm-up length
 * (0 in checkpoints from before the warm-up existed). */
static long read_provenance(const diat_safetensors *st, train_options *o)
{
    const char *note = diat_safetensors_metadata(st, "opt.init_from");
    const char *warmup = diat_safetensors_metadata(st, "opt.critic_warmup");
    snprintf(o->init_note, sizeof o->init_note, "%s", note ? note : "");
    long value = warmup ? strtol(warmup, NULL, 10) : 0;
    o->critic_warmup = value > 0 && value <= 100000000 ? (int)value : 0;
    return o->critic_warmup;
}

diat_status checkpoint_read_settings(const char *path, train_options *o, diat_error *err)
{
    diat_safetensors *st = NULL;
    diat_status status = diat_safetensors_open(path, &st, err);
    if (status != DIAT_OK) return status;
    const char *format = diat_safetensors_metadata(st, "format");
    if (!format || strcmp(format, CHECKPOINT_FORMAT) != 0)
        status = diat_set_error(err, DIAT_ERR_FORMAT, "%s is not a diat-train checkpoint.", path);
    struct {
        const char *key;
        int *target;
    } numbers[] = {{"opt.width", &o->width},
                   {"opt.mask_width", &o->mask_width},
                   {"opt.critic_width", &o->critic_width},
                   {"opt.denoiser_width", &o->denoiser_width},
                   {"opt.denoiser_depth", &o->denoiser_depth},
                   {"opt.batch", &o->batch},
                   {"opt.add", &o->add}};
    uint64_t value = 0;
    for (size_t i = 0; !status && i < sizeof numbers / sizeof numbers[0]; i++) {
        status = read_counter(st, path, numbers[i].key, 0, &value, err);
        *numbers[i].target = (int)value;
    }
    if (!status) status = read_counter(st, path, "opt.mode", 0, &value, err);
    if (!status && value > TRAIN_CLASSIFIER)
        status = diat_set_error(err, DIAT_ERR_FORMAT,
                                "Checkpoint %s is of a kind of run (%llu) this diat-train does "
                                "not know.",
                                path, (unsigned long long)value);
    if (!status) o->mode = (train_mode)value;
    if (!status) status = read_counter(st, path, "opt.seed", 0, &o->seed, err);
    if (!status) status = read_counter(st, path, "opt.celeba", 0, &value, err);
    /* Only whether CelebA was used matters to an export (its licence text). */
    const char *given_root = o->celeba_root;
    if (!status) o->celeba_root = value ? "CelebA" : NULL;
    /* A classifier's val split: the folder given, else the run's own. */
    const char *root = diat_safetensors_metadata(st, "opt.celeba_root");
    const char *settings = diat_safetensors_metadata(st, "opt.classifier");
    if (!status && o->mode == TRAIN_CLASSIFIER) {
        const char *chosen = given_root ? given_root : root;
        char *storage = o->path_storage[TRAIN_PATH_CELEBA];
        snprintf(storage, sizeof o->path_storage[0], "%s", chosen ? chosen : "");
        o->celeba_root = chosen ? storage : NULL;
        if (!settings || sscanf(settings, "%f %f %f %d %d %d", &o->lr_g, &o->beta1, &o->beta2,
                                &o->loss_brier, &o->lr_constant, &o->flip) != 6)
            status = diat_set_error(err, DIAT_ERR_FORMAT,
                                    "Checkpoint %s lacks a valid 'opt.classifier'.", path);
    }
    /* Checkpoints from before opt.objective: the export states no settings. */
    const char *objective = diat_safetensors_metadata(st, "opt.objective");
    o->objective_known =
        objective && sscanf(objective, "%f %f %f %f %f %d %f %f %f %f", &o->lambda_gp,
                            &o->lambda_ap, &o->lambda_id, &o->lambda_pr, &o->lambda_ar,
                            &o->n_critic, &o->lr_g, &o->lr_d, &o->beta1, &o->beta2) == 10;
    const char *attribute = diat_safetensors_metadata(st, "opt.attribute");
    const char *ratio = diat_safetensors_metadata(st, "opt.ratio");
    if (!status) {
        o->attribute = NULL;
        if (attribute) {
            snprintf(o->attribute_storage, sizeof o->attribute_storage, "%s", attribute);
            o->attribute = o->attribute_storage;
        }
        o->ratio = ratio ? strtof(ratio, NULL) : o->ratio;
        /* The run's average, which the export holds; with --no-ema none is
         * built, so the export holds the weights as trained. */
        const char *ema = diat_safetensors_metadata(st, "opt.ema");
        o->ema_decay = ema && !o->export_last_weights ? strtof(ema, NULL) : 0.0f;
        read_provenance(st, o);
    }
    diat_safetensors_close(st);
    return status;
}

/* A setting of the objective or optimizer: the run's, unless the command
 * line gives another, which then applies from here on (said once). */
static void resume_float(const train_options *o, const char *option, float recorded, float *value)
{
    if (!train_option_given(o, option))
        *value = recorded;
    else if (*value != recorded)
        fprintf(stderr, "diat-train: --%s %g replaces the run's %g from here on\n", option,
                (double)*value, (double)recorded);
}

/* What the run was started with, for each setting the resuming command
 * line does not give: the kind of run, the data and the networks' files,
 * the shape, the objective and the optimizer. Checkpoints from before a
 * setting was recorded leave it to the command line. */
static diat_status resume_run_settings(const diat_safetensors *st, const char *path,
                                       train_options *o, diat_error *err)
{
    uint64_t value = 0;
    diat_status status = read_counter(st, path, "opt.mode", 0, &value, err);
    if (status) return status;
    if (value > TRAIN_CLASSIFIER || (o->mode_given && value != (uint64_t)o->mode)) {
        static const char *const kinds[] = {"transfer", "denoiser", "classifier"};
        return diat_set_error(err, DIAT_ERR_ARGUMENT,
                              "%s holds a %s run; resume it with `diat-train %s --resume`.", path,
                              value <= TRAIN_CLASSIFIER ? kinds[value] : "newer kind of",
                              value <= TRAIN_CLASSIFIER ? kinds[value] : "...");
    }
    o->mode = (train_mode)value;
    const struct {
        const char *key, *option;
        int *target;
    } numbers[] = {{"opt.critic_width", "critic-width", &o->critic_width},
                   {"opt.denoiser_width", "denoiser-width", &o->denoiser_width},
                   {"opt.denoiser_depth", "denoiser-depth", &o->denoiser_depth},
                   {"opt.batch", "batch", &o->batch},
                   {"opt.add", "direction", &o->add},
                   {"opt.align_faces", "align-faces", &o->align_faces},
                   {"opt.flip", "no-flip", &o->flip}};
    for (size_t i = 0; !status && i < sizeof numbers / sizeof numbers[0]; i++)
        if (diat_safetensors_metadata(st, numbers[i].key) &&
            !train_option_given(o, numbers[i].option) &&
            !(status = read_counter(st, path, numbers[i].key, 0, &value, err)))
            *numbers[i].target = (int)value;
    if (!status && !train_option_given(o, "seed"))
        status = read_counter(st, path, "opt.seed", 0, &o->seed, err);
    if (!status && diat_safetensors_metadata(st, "opt.steps") && !train_option_given(o, "steps") &&
        !(status = read_counter(st, path, "opt.steps", 0, &value, err)))
        o->steps = (long)value;
    if (status) return status;
    const char *attribute = diat_safetensors_metadata(st, "opt.attribute");
    if (attribute && !train_option_given(o, "attribute")) {
        snprintf(o->attribute_storage, sizeof o->attribute_storage, "%s", attribute);
        o->attribute = o->attribute_storage;
    }
    /* A path given for any of the data replaces all the recorded data (a
     * CelebA folder instead of two folders, say). */
    int data_given = train_option_given(o, "celeba") || train_option_given(o, "source-dir") ||
                     train_option_given(o, "target-dir");
    const char **fields[TRAIN_RECORDED_PATHS];
    recorded_path_fields(o, fields);
    for (int i = 0; i < TRAIN_RECORDED_PATHS; i++) {
        const char *recorded = diat_safetensors_metadata(st, kRecordedPaths[i].key);
        if (!fields[i] || !recorded || train_option_given(o, kRecordedPaths[i].option) ||
            (i <= TRAIN_PATH_TARGET_DIR && data_given))
            continue;
        snprintf(o->path_storage[i], sizeof o->path_storage[i], "%s", recorded);
        *fields[i] = o->path_storage[i];
    }
    float objective[10];
    int n_critic;
    const char *text = diat_safetensors_metadata(st, "opt.objective");
    if (o->mode == TRAIN_TRANSFER && text &&
        sscanf(text, "%f %f %f %f %f %d %f %f %f %f", &objective[0], &objective[1], &objective[2],
               &objective[3], &objective[4], &n_critic, &objective[6], &objective[7], &objective[8],
               &objective[9]) == 10) {
        static const char *const options[10] = {"lambda-gp", "lambda-ap", "lambda-id", "lambda-pr",
                                                "lambda-ar", "n-critic",  "lr-g",      "lr-d",
                                                "beta1",     "beta2"};
        float *targets[10] = {&o->lambda_gp, &o->lambda_ap, &o->lambda_id, &o->lambda_pr,
                              &o->lambda_ar, NULL,          &o->lr_g,      &o->lr_d,
                              &o->beta1,     &o->beta2};
        for (int i = 0; i < 10; i++)
            if (targets[i]) resume_float(o, options[i], objective[i], targets[i]);
        if (!train_option_given(o, "n-critic"))
            o->n_critic = n_critic;
        else if (o->n_critic != n_critic)
            fprintf(stderr, "diat-train: --n-critic %d replaces the run's %d from here on\n",
                    o->n_critic, n_critic);
    }
    text = diat_safetensors_metadata(st, "opt.classifier");
    int brier, constant, flip;
    if (o->mode == TRAIN_CLASSIFIER && text &&
        sscanf(text, "%f %f %f %d %d %d", &objective[0], &objective[1], &objective[2], &brier,
               &constant, &flip) == 6) {
        resume_float(o, "lr", objective[0], &o->lr_g);
        resume_float(o, "beta1", objective[1], &o->beta1);
        resume_float(o, "beta2", objective[2], &o->beta2);
        if (!train_option_given(o, "loss")) o->loss_brier = brier;
        if (!train_option_given(o, "lr-schedule")) o->lr_constant = constant;
        if (!train_option_given(o, "no-flip")) o->flip = flip;
    }
    /* A run keeps its --ema; one given starts or changes it from here on. */
    text = diat_safetensors_metadata(st, "opt.ema");
    if (text) resume_float(o, "ema", strtof(text, NULL), &o->ema_decay);
    text = diat_safetensors_metadata(st, "opt.noise_sigma");
    if (o->mode == TRAIN_DENOISER && text)
        resume_float(o, "noise-sigma", strtof(text, NULL), &o->noise_sigma);
    return DIAT_OK;
}

diat_status checkpoint_read_resume(const char *path, train_options *o, diat_error *err)
{
    diat_safetensors *st = NULL;
    diat_status status = diat_safetensors_open(path, &st, err);
    if (status != DIAT_OK) return status;
    const char *format = diat_safetensors_metadata(st, "format");
    if (!format || strcmp(format, CHECKPOINT_FORMAT) != 0)
        status = diat_set_error(err, DIAT_ERR_FORMAT, "%s is not a diat-train checkpoint.", path);
    /* Widths not given: the run's own (an --init-from run took them from its
     * model, and the command that resumes it need not know them). Given ones
     * are compared with the run's shape in checkpoint_load. */
    uint64_t value = 0;
    if (!status) status = resume_run_settings(st, path, o, err);
    if (!status && !o->width_given &&
        !(status = read_counter(st, path, "opt.width", 0, &value, err)))
        o->width = (int)value;
    if (!status && !o->mask_width_given &&
        !(status = read_counter(st, path, "opt.mask_width", 0, &value, err)))
        o->mask_width = (int)value;
    /* The ratio is part of the loss: the resumed run must keep the run's. */
    const char *ratio = diat_safetensors_metadata(st, "opt.ratio");
    if (!status && !o->ratio_given && ratio) o->ratio = strtof(ratio, NULL);
    /* The warm-up length belongs to the run, like its logged step numbers. */
    int given = o->critic_warmup;
    long warmup = status ? 0 : read_provenance(st, o);
    if (!status && o->critic_warmup_given && given != warmup)
        status = diat_set_error(err, DIAT_ERR_ARGUMENT,
                                "--critic-warmup %d: the run in %s has %ld; resume it without "
                                "--critic-warmup.",
                                given, path, warmup);
    diat_safetensors_close(st);
    return status;
}

diat_status checkpoint_load(trainer *tr, const char *path, diat_error *err)
{
    diat_safetensors *st = NULL;
    diat_status status = diat_safetensors_open(path, &st, err);
    if (status != DIAT_OK) return status;
    const char *format = diat_safetensors_metadata(st, "format");
    const char *shape = diat_safetensors_metadata(st, "run_shape");
    char expected[256];
    describe_shape(&tr->opt, expected, sizeof expected);
    if (!format || strcmp(format, CHECKPOINT_FORMAT) != 0)
        status = diat_set_error(err, DIAT_ERR_FORMAT, "%s is not a diat-train checkpoint.", path);
    else if (!shape || strcmp(shape, expected) != 0)
        status = diat_set_error(err, DIAT_ERR_ARGUMENT,
                                "Checkpoint %s belongs to another run (%s); these options give "
                                "(%s). Resume with the same options, or use a new --run-dir.",
                                path, shape ? shape : "unknown", expected);
    uint64_t step = 0, adam_g = 0, adam_d = 0;
    if (!status) status = read_counter(st, path, "step", 0, &step, err);
    /* Checkpoints from before the critic warm-up existed have none. */
    uint64_t warmup_done = 0;
    if (!status && diat_safetensors_metadata(st, "warmup_done"))
        status = read_counter(st, path, "warmup_done", 0, &warmup_done, err);
    if (!status) status = read_counter(st, path, "adam_g_step", 0, &adam_g, err);
    if (!status) status = read_counter(st, path, "adam_d_step", 0, &adam_d, err);
    if (!status) status = read_counter(st, path, "rng", 1, &tr->rng, err);
    diat_dataset_position position;
    for (size_t i = 0; !status && i < sizeof position.words / sizeof position.words[0]; i++) {
        char key[32];
        snprintf(key, sizeof key, "data_position_%zu", i);
        status = read_counter(st, path, key, 1, &position.words[i], err);
    }
    const diat_net *nets[3];
    int net_count = run_nets(tr, nets);
    for (int i = 0; !status && i < net_count; i++)
        status = diat_net_load((diat_net *)nets[i], st, err);
    if (!status && tr->opt.mode == TRAIN_CLASSIFIER) status = classifier_load_eval(tr, st, err);
    int average_found = 0;
    if (!status) status = weight_average_load(&tr->average, st, &average_found, err);
    if (!status && tr->average.count && !average_found) {
        /* --ema given on resuming a run without one: it starts here. */
        weight_average_reset(&tr->average, tr->ctx);
        if (!tr->opt.quiet)
            fprintf(stderr, "diat-train: the weight average (--ema %g) starts at step %llu\n",
                    (double)tr->opt.ema_decay, (unsigned long long)step);
    }
    if (!status) status = load_moments(&tr->opt_g, "adam_g", st, tr->ctx, err);
    if (!status) status = load_moments(&tr->opt_d, "adam_d", st, tr->ctx, err);
    if (!status && tr->data) status = diat_dataset_set_position(tr->data, &position, err);
    if (!status) {
        tr->step = (long)step;
        tr->warmup_done = (long)warmup_done;
        tr->opt_g.step = (int)adam_g;
        tr->opt_d.step = (int)adam_d;
    }
    diat_safetensors_close(st);
    return status;
}

static diat_status set_text(diat_st_writer *w, const char *key, const char *value, diat_error *err)
{
    return diat_st_writer_set_metadata(w, key, value, err);
}

/* "Remove eyeglasses", "Add smiling": a readable default label. */
static void label_of(const train_options *o, char *text, size_t size)
{
    snprintf(text, size, "%s %s", o->add ? "Add" : "Remove",
             o->attribute ? o->attribute : "attribute");
    for (char *c = text; *c; c++)
        if (*c == '_') *c = ' ';
}

diat_status export_model(trainer *tr, const char *path, diat_dtype dtype, diat_error *err)
{
    const train_options *o = &tr->opt;
    diat_st_writer *w = diat_st_writer_new();
    if (!w) return diat_set_error(err, DIAT_ERR_MEMORY, "Out of memory exporting.");
    char date[32], label[128], text[512];
    time_t now = time(NULL);
    strftime(date, sizeof date, "%Y-%m-%d", gmtime(&now));
    const char *data = o->celeba_root ? "CelebA train split (non-commercial research use only: "
                                        "https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html)"
                                      : "user-supplied folders";
    diat_status st;
    if (o->mode == TRAIN_CLASSIFIER) {
        st = classifier_export(tr, w, dtype, err);
    } else if (o->mode == TRAIN_DENOISER) {
        st = set_text(w, "format", "diat-denoiser", err);
        if (!st) st = set_long(w, "width", o->denoiser_width, err);
        if (!st) st = set_long(w, "depth", o->denoiser_depth, err);
        if (!st) st = diat_net_save(&tr->denoiser.net, w, dtype, err);
    } else {
        label_of(o, label, sizeof label);
        snprintf(text, sizeof text, "%.3f", o->ratio);
        st = set_text(w, "format", "diat-model", err);
        if (!st) st = set_text(w, "format_version", "1", err);
        if (!st) st = set_text(w, "architecture", "diat-unet-d2s-v1", err);
        if (!st) st = set_long(w, "width", o->width, err);
        if (!st) st = set_long(w, "mask_width", o->mask_width, err);
        if (!st) st = set_text(w, "image_size", "128", err);
        if (!st) st = set_text(w, "crop", "celeba-align-178x178-row20", err);
        if (!st) st = set_text(w, "attribute", o->attribute ? o->attribute : "custom", err);
        if (!st) st = set_text(w, "direction", o->add ? "add" : "remove", err);
        if (!st) st = set_text(w, "label", label, err);
        if (!st) st = set_text(w, "default_ratio", text, err);
        if (!st && o->init_note[0]) st = set_text(w, "initialised_from", o->init_note, err);
        if (!st && o->objective_known) {
            snprintf(text, sizeof text,
                     "lambda_gp=%g lambda_ap=%g lambda_id=%g lambda_pr=%g lambda_ar=%g "
                     "n_critic=%d lr_g=%g lr_d=%g betas=(%g,%g) batch=%d seed=%" PRIu64,
                     o->lambda_gp, o->lambda_ap, o->lambda_id, o->lambda_pr, o->lambda_ar,
                     o->n_critic, o->lr_g, o->lr_d, o->beta1, o->beta2, o->batch, o->seed);
            if (o->critic_warmup > 0)
                snprintf(text + strlen(text), sizeof text - strlen(text), " critic_warmup=%d",
                         o->critic_warmup);
            if (tr->average.count)
                snprintf(text + strlen(text), sizeof text - strlen(text), " ema=%g",
                         (double)tr->average.decay);
            st = set_text(w, "training_settings", text, err);
        }
        /* The average goes out through the networks, which get their own
         * weights back after. */
        weight_average_exchange(&tr->average, tr->ctx);
        if (!st) st = diat_net_save(&tr->transform.net, w, dtype, err);
        if (!st) st = diat_net_save(&tr->mask.net, w, dtype, err);
        weight_average_exchange(&tr->average, tr->ctx);
    }
    if (!st) st = set_text(w, "training_data", data, err);
    if (!st) st = set_long(w, "training_iterations", tr->step, err);
    if (!st) st = set_text(w, "date", date, err);
    if (!st)
        st = set_text(w, "license",
                      o->celeba_root ? "Weights: GPL-3.0-or-later, trained on CelebA: for "
                                       "non-commercial research purposes only"
                                     : "Weights: GPL-3.0-or-later; data terms as supplied",
                      err);
    if (!st) st = diat_st_writer_save(w, path, err);
    diat_st_writer_free(w);
    return st;
}

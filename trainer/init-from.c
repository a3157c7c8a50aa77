/* --init-from: a new run that starts from an inference model's T and M (the
 * file `diat-train --export` writes) instead of random weights.
 *
 * What such a file holds (export_model in checkpoint.c): every T and M
 * parameter under its state_dict name, F32 or, with --f16, F16, except M's
 * batch-norm running statistics, which diat_net_save always keeps in F32.
 * Nothing is folded into the file: M folds its batch norms into the
 * convolutions only at inference, on each forward (engine/nets/mask.c), so
 * gamma, beta, mean and variance load as they are, and
 * diat_safetensors_read_f32 widens F16 exactly. F16 -> F32 -> F16 is the
 * identity, so this run exported with --f16 before any generator step holds
 * the model's very bytes (tests/test_train.sh checks that). */
#include "trainer.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MODEL_FORMAT "diat-model"

/* FNV-1a of the whole file, and its size: enough to tell later which model a
 * run started from (provenance, not security: the model is trusted input). */
static diat_status fingerprint(const char *path, uint64_t *hash, uint64_t *size, diat_error *err)
{
    FILE *in = fopen(path, "rb");
    if (!in) return diat_set_error(err, DIAT_ERR_IO, "Cannot read %s: %s.", path, strerror(errno));
    uint64_t h = 0xcbf29ce484222325ull, n = 0;
    static unsigned char buffer[1 << 16];
    size_t got;
    while ((got = fread(buffer, 1, sizeof buffer, in)) > 0) {
        for (size_t i = 0; i < got; i++) h = (h ^ buffer[i]) * 0x100000001b3ull;
        n += got;
    }
    int failed = ferror(in);
    fclose(in);
    if (failed) return diat_set_error(err, DIAT_ERR_IO, "Cannot read %s.", path);
    *hash = h;
    *size = n;
    return DIAT_OK;
}

/* The engine's message (which names the file), marked as --init-from's. */
static diat_status from_option(diat_status status, diat_error *err)
{
    if (status != DIAT_OK && err) {
        char why[sizeof err->message];
        snprintf(why, sizeof why, "%s", err->message);
        diat_set_error(err, status, "--init-from: %s", why);
    }
    return status;
}

static const char *base_name(const char *path)
{
    const char *slash = strrchr(path, '/');
    return slash ? slash + 1 : path;
}

/* A width in the metadata, in the range diat_model_load accepts. */
static diat_status model_width(const diat_safetensors *st, const char *path, const char *key,
                               int *out, diat_error *err)
{
    const char *text = diat_safetensors_metadata(st, key);
    char *end = NULL;
    long value = text ? strtol(text, &end, 10) : 0;
    if (!text || end == text || *end || value < 1 || value > 256)
        return diat_set_error(err, DIAT_ERR_FORMAT,
                              "--init-from: %s has no valid '%s' in its metadata (an integer in "
                              "[1, 256]).",
                              path, key);
    *out = (int)value;
    return DIAT_OK;
}

/* A width the command line gave must be the model's; one it did not give is
 * taken from the model (a run cannot start from weights of another shape). */
static diat_status match_width(const char *path, const char *flag, int model, int given, int *value,
                               diat_error *err)
{
    if (given && *value != model)
        return diat_set_error(err, DIAT_ERR_ARGUMENT,
                              "--init-from: %s has %s %d, not %d: leave %s out to take the "
                              "model's.",
                              path, flag, model, *value, flag);
    *value = model;
    return DIAT_OK;
}

/* The model's attribute and direction must be the run's: its T and M start
 * where they stopped, and the data (sources without / references with the
 * attribute, or the reverse) must ask for the same edit. With
 * --init-other-edit they may differ (a related edit as the starting point);
 * `*same` says whether they do, and `edit` names the model's edit. */
static diat_status match_edit(const diat_safetensors *st, const char *path, const train_options *o,
                              int *same, char *edit, size_t edit_size, diat_error *err)
{
    const char *attribute = diat_safetensors_metadata(st, "attribute");
    const char *direction = diat_safetensors_metadata(st, "direction");
    const char *run_attribute = o->attribute ? o->attribute : "custom";
    const char *run_direction = o->add ? "add" : "remove";
    int same_attribute = attribute && strcmp(attribute, run_attribute) == 0;
    int same_direction = direction && strcmp(direction, run_direction) == 0;
    *same = same_attribute && same_direction;
    snprintf(edit, edit_size, "%.64s %.16s", attribute ? attribute : "(none given)",
             direction ? direction : "(none given)");
    if (o->init_other_edit) return DIAT_OK;
    if (!same_attribute)
        return diat_set_error(err, DIAT_ERR_ARGUMENT,
                              "--init-from: %s edits attribute '%s', this run trains '%s'%s (add "
                              "--init-other-edit to start from another edit).",
                              path, attribute ? attribute : "(none given)", run_attribute,
                              o->attribute ? " (--attribute)" : " (folder pairs)");
    if (!same_direction)
        return diat_set_error(err, DIAT_ERR_ARGUMENT,
                              "--init-from: %s has direction '%s'; this run's --direction is %s "
                              "(add --init-other-edit to start from another edit).",
                              path, direction ? direction : "(none given)", run_direction);
    return DIAT_OK;
}

diat_status init_from_read_settings(const char *path, train_options *o, diat_error *err)
{
    diat_safetensors *st = NULL;
    diat_status status = diat_safetensors_open(path, &st, err);
    if (status != DIAT_OK) return from_option(status, err);
    const char *format = diat_safetensors_metadata(st, "format");
    const char *version = diat_safetensors_metadata(st, "format_version");
    int width = 0, mask_width = 0, same_edit = 0;
    char edit[96] = "";
    if (!format || strcmp(format, MODEL_FORMAT) != 0)
        status = diat_set_error(err, DIAT_ERR_FORMAT,
                                "--init-from: %s is not a DIAT model written by `diat-train "
                                "--export` (its format is '%s'; a checkpoint or a denoiser will "
                                "not do).",
                                path, format ? format : "missing");
    else if (!version || strcmp(version, "1") != 0)
        status = diat_set_error(err, DIAT_ERR_FORMAT,
                                "--init-from: %s has model format version '%s'; this diat-train "
                                "reads version 1.",
                                path, version ? version : "missing");
    if (!status) status = model_width(st, path, "width", &width, err);
    if (!status) status = model_width(st, path, "mask_width", &mask_width, err);
    if (!status) status = match_edit(st, path, o, &same_edit, edit, sizeof edit, err);
    if (!status) status = match_width(path, "--width", width, o->width_given, &o->width, err);
    if (!status)
        status =
            match_width(path, "--mask-width", mask_width, o->mask_width_given, &o->mask_width, err);
    /* Fine-tuning keeps the mask fraction the model was trained towards,
     * unless --ratio says otherwise; another edit keeps the run's own. */
    const char *ratio = diat_safetensors_metadata(st, "default_ratio");
    if (!status && same_edit && !o->ratio_given && ratio) {
        char *end;
        float value = strtof(ratio, &end);
        if (end != ratio && !*end && value > 0.0f && value <= 1.0f) o->ratio = value;
    }
    const char *iterations = diat_safetensors_metadata(st, "training_iterations");
    char steps[64] = "";
    if (iterations) snprintf(steps, sizeof steps, ", %.32s training iterations", iterations);
    char other[128] = "";
    if (!same_edit) snprintf(other, sizeof other, ", another edit: %s", edit);
    diat_safetensors_close(st);
    uint64_t hash = 0, size = 0;
    if (!status) status = from_option(fingerprint(path, &hash, &size, err), err);
    if (!status)
        snprintf(o->init_note, sizeof o->init_note,
                 "%.240s (%" PRIu64 " bytes, FNV-1a-64 %016" PRIx64 "%s%s)", base_name(path), size,
                 hash, steps, other);
    return status;
}

diat_status init_from_load(trainer *tr, const char *path, diat_error *err)
{
    diat_safetensors *st = NULL;
    diat_status status = diat_safetensors_open(path, &st, err);
    if (status != DIAT_OK) return from_option(status, err);
    /* diat_net_load checks every tensor's presence, shape and finiteness and
     * names the tensor when one is wrong. */
    status = diat_net_load(&tr->transform.net, st, err);
    if (!status) status = diat_net_load(&tr->mask.net, st, err);
    diat_safetensors_close(st);
    return from_option(status, err);
}

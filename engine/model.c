/* Loading an inference model (T and M) from a safetensors file, with every
 * check DIAT's model format asks for (engine/model-format.md). */
#include "model.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static diat_status required_int(const diat_safetensors *st, const char *path, const char *key,
                                int lo, int hi, int *out, diat_error *err)
{
    const char *text = diat_safetensors_metadata(st, key);
    if (!text)
        return diat_set_error(err, DIAT_ERR_FORMAT,
                              "Model file %s has no '%s' in its metadata; is it a DIAT model?",
                              path, key);
    char *end;
    errno = 0;
    long value = strtol(text, &end, 10);
    if (errno || end == text || *end || value < lo || value > hi)
        return diat_set_error(err, DIAT_ERR_FORMAT,
                              "Model file %s: metadata '%s' is \"%s\", expected an integer in "
                              "[%d, %d].",
                              path, key, text, lo, hi);
    *out = (int)value;
    return DIAT_OK;
}

static diat_status copy_metadata(diat_model *model, const diat_safetensors *st, diat_error *err)
{
    size_t count = diat_safetensors_metadata_count(st);
    model->keys = calloc(count + 1, sizeof *model->keys);
    model->values = calloc(count + 1, sizeof *model->values);
    if (!model->keys || !model->values)
        return diat_set_error(err, DIAT_ERR_MEMORY, "Out of memory reading model metadata.");
    for (size_t i = 0; i < count; i++) {
        const char *key, *value;
        diat_safetensors_metadata_at(st, i, &key, &value);
        model->keys[i] = strdup(key);
        model->values[i] = strdup(value);
        if (!model->keys[i] || !model->values[i])
            return diat_set_error(err, DIAT_ERR_MEMORY, "Out of memory reading model metadata.");
        model->metadata_count = i + 1;
    }
    return DIAT_OK;
}

static float parse_ratio(const char *text)
{
    if (!text) return -1.0f;
    char *end;
    float value = strtof(text, &end);
    if (end == text || *end || !(value > 0.0f && value <= 1.0f)) return -1.0f;
    return value;
}

diat_status diat_model_load(diat_context *ctx, const char *path, diat_model **out, diat_error *err)
{
    *out = NULL;
    diat_safetensors *st = NULL;
    diat_status status = diat_safetensors_open(path, &st, err);
    if (status != DIAT_OK) return status;

    const char *format = diat_safetensors_metadata(st, "format");
    int version = 0, width = 0, mask_width = 0;
    if (!format || strcmp(format, "diat-model") != 0) {
        status = diat_set_error(err, DIAT_ERR_FORMAT,
                                "%s is a safetensors file but not a DIAT model (metadata 'format' "
                                "is %s%s%s, expected \"diat-model\").",
                                path, format ? "\"" : "", format ? format : "missing",
                                format ? "\"" : "");
    } else if ((status = required_int(st, path, "format_version", 1, 1000, &version, err)) ==
               DIAT_OK) {
        if (version != 1)
            status = diat_set_error(err, DIAT_ERR_FORMAT,
                                    "Model file %s has format version %d; this libdiat reads "
                                    "version 1. A newer diat may be needed.",
                                    path, version);
    }
    if (status == DIAT_OK) status = required_int(st, path, "width", 1, 512, &width, err);
    if (status == DIAT_OK) status = required_int(st, path, "mask_width", 1, 512, &mask_width, err);

    diat_model *model = NULL;
    if (status == DIAT_OK && !(model = calloc(1, sizeof *model)))
        status = diat_set_error(err, DIAT_ERR_MEMORY, "Out of memory loading %s.", path);
    if (status == DIAT_OK) {
        model->ctx = ctx;
        status = diat_transform_init(&model->transform, ctx, width, err);
        if (status == DIAT_OK) status = diat_mask_init(&model->mask, ctx, mask_width, err);
        if (status == DIAT_OK) status = diat_net_load(&model->transform.net, st, err);
        if (status == DIAT_OK) status = diat_net_load(&model->mask.net, st, err);
        if (status == DIAT_OK) status = copy_metadata(model, st, err);
        if (status == DIAT_OK)
            model->default_ratio = parse_ratio(diat_safetensors_metadata(st, "default_ratio"));
    }
    diat_safetensors_close(st);
    if (status != DIAT_OK) {
        diat_model_free(model);
        return status;
    }
    *out = model;
    return DIAT_OK;
}

void diat_model_free(diat_model *model)
{
    if (!model) return;
    diat_transform_free(&model->transform);
    diat_mask_free(&model->mask);
    for (size_t i = 0; i < model->metadata_count; i++) {
        free(model->keys[i]);
        free(model->values[i]);
    }
    free(model->keys);
    free(model->values);
    free(model);
}

const char *diat_model_metadata(const diat_model *model, const char *key)
{
    for (size_t i = 0; i < model->metadata_count; i++)
        if (strcmp(model->keys[i], key) == 0) return model->values[i];
    return NULL;
}

size_t diat_model_metadata_count(const diat_model *model)
{
    return model->metadata_count;
}

void diat_model_metadata_at(const diat_model *model, size_t i, const char **key, const char **value)
{
    *key = i < model->metadata_count ? model->keys[i] : NULL;
    *value = i < model->metadata_count ? model->values[i] : NULL;
}

float diat_model_default_ratio(const diat_model *model)
{
    return model->default_ratio;
}

size_t diat_model_parameter_count(const diat_model *model)
{
    return diat_net_parameter_count(&model->transform.net) +
           diat_net_parameter_count(&model->mask.net);
}

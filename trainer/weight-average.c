/* --ema DECAY: an exponential moving average of T and M's weights, which
 * the exports hold instead of the weights of the last step. A GAN's
 * generator swings from step to step (the mouth models' success moved by
 * ±10 points between exports 500 steps apart); averaging over the last
 * ~1/(1 - DECAY) steps is the usual damper. It lives in host memory: one
 * pass over T and M's ~2.8 M floats per generator step is small beside a
 * step's seconds, and needs no backend op. Batch-norm running statistics
 * are averaged too, so the exported M's statistics match its weights. */
#include "trainer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The checkpoint tensor holding the average of parameter `name`. */
static void average_name(char *out, size_t size, const char *name)
{
    snprintf(out, size, "ema.%s", name);
}

void weight_average_free(weight_average *avg)
{
    for (int k = 0; k < avg->count; k++) free(avg->values[k]);
    free(avg->values);
    free(avg->params);
    free(avg->scratch);
    memset(avg, 0, sizeof *avg);
}

void weight_average_reset(weight_average *avg, diat_context *ctx)
{
    for (int k = 0; k < avg->count; k++)
        diat_tensor_download(ctx, &avg->params[k]->value, avg->values[k]);
}

diat_status weight_average_init(weight_average *avg, diat_context *ctx, diat_net *const *nets,
                                int net_count, float decay, diat_error *err)
{
    memset(avg, 0, sizeof *avg);
    avg->decay = decay;
    int total = 0;
    for (int i = 0; i < net_count; i++) total += nets[i]->param_count;
    avg->params = calloc((size_t)total, sizeof *avg->params);
    avg->values = calloc((size_t)total, sizeof *avg->values);
    if (!avg->params || !avg->values) goto out_of_memory;
    size_t largest = 0;
    for (int i = 0; i < net_count; i++)
        for (int p = 0; p < nets[i]->param_count; p++) {
            diat_param *param = &nets[i]->params[p];
            size_t count = diat_tensor_count(&param->value);
            avg->params[avg->count] = param;
            if (!(avg->values[avg->count] = malloc(count * sizeof(float)))) goto out_of_memory;
            avg->count++;
            if (count > largest) largest = count;
        }
    if (!(avg->scratch = malloc(largest * sizeof *avg->scratch))) goto out_of_memory;
    weight_average_reset(avg, ctx);
    return DIAT_OK;
out_of_memory:
    weight_average_free(avg);
    return diat_set_error(err, DIAT_ERR_MEMORY, "Out of memory for the weight average (--ema).");
}

void weight_average_update(weight_average *avg, diat_context *ctx)
{
    const float keep = avg->decay, take = 1.0f - avg->decay;
    for (int k = 0; k < avg->count; k++) {
        const diat_tensor *value = &avg->params[k]->value;
        size_t count = diat_tensor_count(value);
        diat_tensor_download(ctx, value, avg->scratch);
        float *average = avg->values[k];
        for (size_t i = 0; i < count; i++) average[i] = keep * average[i] + take * avg->scratch[i];
    }
}

void weight_average_exchange(weight_average *avg, diat_context *ctx)
{
    for (int k = 0; k < avg->count; k++) {
        diat_tensor *value = &avg->params[k]->value;
        size_t count = diat_tensor_count(value);
        diat_tensor_download(ctx, value, avg->scratch);
        diat_tensor_upload(ctx, value, avg->values[k]);
        memcpy(avg->values[k], avg->scratch, count * sizeof *avg->scratch);
    }
}

diat_status weight_average_save(const weight_average *avg, diat_st_writer *w, diat_error *err)
{
    for (int k = 0; k < avg->count; k++) {
        const diat_param *p = avg->params[k];
        int64_t shape[4] = {p->value.n, p->value.c, p->value.h, p->value.w};
        char name[DIAT_PARAM_NAME_MAX + 8];
        average_name(name, sizeof name, p->name);
        diat_status st = diat_st_writer_add(w, name, DIAT_DTYPE_F32, 4, shape, avg->values[k], err);
        if (st != DIAT_OK) return st;
    }
    return DIAT_OK;
}

diat_status weight_average_load(weight_average *avg, const diat_safetensors *st, int *found,
                                diat_error *err)
{
    char name[DIAT_PARAM_NAME_MAX + 8];
    *found = 0;
    if (avg->count == 0) return DIAT_OK;
    average_name(name, sizeof name, avg->params[0]->name);
    if (!diat_safetensors_find(st, name)) return DIAT_OK;
    for (int k = 0; k < avg->count; k++) {
        const diat_param *p = avg->params[k];
        int64_t shape[4] = {p->value.n, p->value.c, p->value.h, p->value.w};
        average_name(name, sizeof name, p->name);
        diat_status status = diat_safetensors_read_f32(st, name, 4, shape, avg->values[k], err);
        if (status != DIAT_OK) return status;
    }
    *found = 1;
    return DIAT_OK;
}

/* Adam over the trainable parameters of one or more networks; the update
 * itself is a backend op so it runs where the parameters live. */
#include "trainer.h"

#include <stdlib.h>
#include <string.h>

/* PyTorch's default; small enough not to matter next to sqrt(v). */
#define ADAM_EPS 1e-8f

diat_status optimizer_init(optimizer *opt, diat_context *ctx, diat_net *const *nets, int net_count,
                           float lr, float beta1, float beta2, diat_error *err)
{
    memset(opt, 0, sizeof *opt);
    opt->lr = lr;
    opt->beta1 = beta1;
    opt->beta2 = beta2;
    int total = 0;
    for (int i = 0; i < net_count; i++)
        for (int p = 0; p < nets[i]->param_count; p++) total += nets[i]->params[p].trainable;
    opt->params = calloc((size_t)total, sizeof *opt->params);
    opt->m = calloc((size_t)total, sizeof *opt->m);
    opt->v = calloc((size_t)total, sizeof *opt->v);
    if (!opt->params || !opt->m || !opt->v) {
        optimizer_free(opt, ctx);
        return diat_set_error(err, DIAT_ERR_MEMORY, "Out of memory for the optimizer.");
    }
    for (int i = 0; i < net_count; i++)
        for (int p = 0; p < nets[i]->param_count; p++) {
            diat_param *param = &nets[i]->params[p];
            if (!param->trainable) continue;
            const diat_tensor *t = &param->value;
            int k = opt->count++;
            opt->params[k] = param;
            diat_status st;
            if ((st = diat_tensor_alloc(ctx, &opt->m[k], t->n, t->c, t->h, t->w, err)) ||
                (st = diat_tensor_alloc(ctx, &opt->v[k], t->n, t->c, t->h, t->w, err))) {
                optimizer_free(opt, ctx);
                return st;
            }
            diat_tensor_zero(ctx, &opt->m[k]);
            diat_tensor_zero(ctx, &opt->v[k]);
        }
    return DIAT_OK;
}

void optimizer_free(optimizer *opt, diat_context *ctx)
{
    for (int k = 0; k < opt->count; k++) {
        diat_tensor_release(ctx, &opt->m[k]);
        diat_tensor_release(ctx, &opt->v[k]);
    }
    free(opt->params);
    free(opt->m);
    free(opt->v);
    memset(opt, 0, sizeof *opt);
}

void optimizer_step(optimizer *opt, diat_context *ctx)
{
    opt->step++;
    for (int k = 0; k < opt->count; k++) {
        diat_param *p = opt->params[k];
        diat_context_backend(ctx)->adam_update(
            ctx, p->value.data, p->grad.data, opt->m[k].data, opt->v[k].data,
            diat_tensor_count(&p->value), opt->lr, opt->beta1, opt->beta2, ADAM_EPS, opt->step);
    }
}

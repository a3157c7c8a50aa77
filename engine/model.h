/* Private: the loaded inference model, shared by model.c and edit.c. */
#ifndef DIAT_MODEL_H
#define DIAT_MODEL_H

#include "context.h"

struct diat_model {
    diat_context *ctx;
    diat_transform transform;
    diat_mask mask;
    size_t metadata_count;
    char **keys, **values;
    float default_ratio;
};

#endif

/* Moving pixels between a photo and the 128x128 face square: crop with an
 * anti-aliasing filter, and paste back by enlarging the edit's residual and
 * mask row by row so that a face of any size costs O(side) memory. */
#include "image-resample.h"

#include "diat-train.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

diat_status diat_resample_plan_new(diat_resample_plan *plan, double src_start, double src_len,
                                   int src_limit, int dst_len, diat_error *err)
{
    memset(plan, 0, sizeof *plan);
    double scale = src_len / dst_len;          /* source pixels per output pixel */
    double radius = scale > 1.0 ? scale : 1.0; /* tent half-width in source pixels */
    int taps = (int)ceil(2.0 * radius) + 1;
    plan->dst_len = dst_len;
    plan->taps = taps;
    plan->index = malloc((size_t)dst_len * taps * sizeof *plan->index);
    plan->weight = malloc((size_t)dst_len * taps * sizeof *plan->weight);
    if (!plan->index || !plan->weight) {
        diat_resample_plan_free(plan);
        return diat_set_error(err, DIAT_ERR_MEMORY, "Out of memory planning a resample.");
    }
    for (int d = 0; d < dst_len; d++) {
        double center = src_start + (d + 0.5) * scale - 0.5; /* pixel centres align */
        int first = (int)floor(center - radius) + 1;
        double total = 0.0;
        int *index = plan->index + (size_t)d * taps;
        float *weight = plan->weight + (size_t)d * taps;
        for (int t = 0; t < taps; t++) {
            int s = first + t;
            double w = 1.0 - fabs((s - center) / radius);
            if (w < 0.0) w = 0.0;
            index[t] = s < 0 ? 0 : s >= src_limit ? src_limit - 1 : s;
            weight[t] = (float)w;
            total += w;
        }
        for (int t = 0; t < taps; t++) weight[t] = (float)(weight[t] / total);
    }
    return DIAT_OK;
}

void diat_resample_plan_free(diat_resample_plan *plan)
{
    free(plan->index);
    free(plan->weight);
    memset(plan, 0, sizeof *plan);
}

/* Luminance-free colour read: gray replicates, alpha is skipped. */
static void read_rgb(const diat_image *photo, int x, int y, float rgb[3])
{
    const float *p = photo->pixels + (size_t)y * photo->stride + (size_t)x * photo->channels;
    if (photo->channels >= 3) {
        rgb[0] = p[0];
        rgb[1] = p[1];
        rgb[2] = p[2];
    } else {
        rgb[0] = rgb[1] = rgb[2] = p[0];
    }
}

diat_status diat_crop_face(const diat_image *photo, int x0, int y0, int side, float *out,
                           diat_error *err)
{
    const int size = DIAT_FACE_SIZE;
    diat_resample_plan cols, rows;
    diat_status st = diat_resample_plan_new(&cols, x0, side, photo->width, size, err);
    if (st != DIAT_OK) return st;
    if ((st = diat_resample_plan_new(&rows, y0, side, photo->height, size, err)) != DIAT_OK) {
        diat_resample_plan_free(&cols);
        return st;
    }
    /* Each output row mixes a few source rows, each filtered horizontally. */
    memset(out, 0, (size_t)3 * size * size * sizeof *out);
    for (int oy = 0; oy < size; oy++) {
        for (int t = 0; t < rows.taps; t++) {
            float wy = rows.weight[(size_t)oy * rows.taps + t];
            if (wy == 0.0f) continue;
            int sy = rows.index[(size_t)oy * rows.taps + t];
            for (int ox = 0; ox < size; ox++) {
                float acc[3] = {0, 0, 0};
                for (int u = 0; u < cols.taps; u++) {
                    float wx = cols.weight[(size_t)ox * cols.taps + u];
                    if (wx == 0.0f) continue;
                    float rgb[3];
                    read_rgb(photo, cols.index[(size_t)ox * cols.taps + u], sy, rgb);
                    for (int c = 0; c < 3; c++) acc[c] += wx * rgb[c];
                }
                for (int c = 0; c < 3; c++)
                    out[(size_t)c * size * size + (size_t)oy * size + ox] += wy * acc[c];
            }
        }
    }
    diat_resample_plan_free(&cols);
    diat_resample_plan_free(&rows);
    return DIAT_OK;
}

diat_status diat_enlarge_face(const float *planes, int plane_count, int x0, int y0, int side,
                              int width, int height, diat_row_fn row_fn, void *user,
                              diat_error *err)
{
    const int size = DIAT_FACE_SIZE;
    int first_x = x0 < 0 ? 0 : x0, last_x = x0 + side > width ? width : x0 + side;
    int first_y = y0 < 0 ? 0 : y0, last_y = y0 + side > height ? height : y0 + side;
    if (first_x >= last_x || first_y >= last_y) return DIAT_OK;
    diat_resample_plan cols, rows;
    /* Output pixel d of the square samples face coordinate (d + 0.5) * 128 / side - 0.5. */
    diat_status st = diat_resample_plan_new(&cols, 0.0, size, size, side, err);
    if (st != DIAT_OK) return st;
    if ((st = diat_resample_plan_new(&rows, 0.0, size, size, side, err)) != DIAT_OK) {
        diat_resample_plan_free(&cols);
        return st;
    }
    int count = last_x - first_x;
    float *mixed = malloc((size_t)size * plane_count * sizeof *mixed);
    float *values = malloc((size_t)count * plane_count * sizeof *values);
    if (!mixed || !values) st = diat_set_error(err, DIAT_ERR_MEMORY, "Out of memory pasting back.");
    for (int y = first_y; st == DIAT_OK && y < last_y; y++) {
        int dy = y - y0;
        /* Vertical mix of the 128-wide source rows for this output row. */
        memset(mixed, 0, (size_t)size * plane_count * sizeof *mixed);
        for (int t = 0; t < rows.taps; t++) {
            float wy = rows.weight[(size_t)dy * rows.taps + t];
            if (wy == 0.0f) continue;
            int sy = rows.index[(size_t)dy * rows.taps + t];
            for (int p = 0; p < plane_count; p++) {
                const float *src = planes + (size_t)p * size * size + (size_t)sy * size;
                float *dst = mixed + (size_t)p * size;
                for (int sx = 0; sx < size; sx++) dst[sx] += wy * src[sx];
            }
        }
        for (int x = first_x; x < last_x; x++) {
            int dx = x - x0;
            for (int p = 0; p < plane_count; p++) {
                float acc = 0.0f;
                for (int u = 0; u < cols.taps; u++)
                    acc += cols.weight[(size_t)dx * cols.taps + u] *
                           mixed[(size_t)p * size + cols.index[(size_t)dx * cols.taps + u]];
                values[(size_t)(x - first_x) * plane_count + p] = acc;
            }
        }
        row_fn(user, y, first_x, count, values);
    }
    free(mixed);
    free(values);
    diat_resample_plan_free(&cols);
    diat_resample_plan_free(&rows);
    return st;
}

/* Private: resampling between photo pixels and the 128x128 face square. */
#ifndef DIAT_IMAGE_RESAMPLE_H
#define DIAT_IMAGE_RESAMPLE_H

#include "diat.h"

/* Separable resampling weights from a source span to `dst_len` samples:
 * a tent filter widened to the scale when shrinking (area-like, no aliasing)
 * and plain linear interpolation when enlarging. Source indices may fall
 * outside [0, src_limit); they are clamped (edge replication). */
typedef struct diat_resample_plan {
    int dst_len;
    int taps;   /* weights per output sample */
    int *index; /* dst_len * taps clamped source indices */
    float *weight;
} diat_resample_plan;

/* Plan a map of the source interval [src_start, src_start + src_len) onto
 * dst_len samples; sources are clamped to [0, src_limit). */
diat_status diat_resample_plan_new(diat_resample_plan *plan, double src_start, double src_len,
                                   int src_limit, int dst_len, diat_error *err);
void diat_resample_plan_free(diat_resample_plan *plan);

/* Crop the square (x0, y0, side) out of `photo` into 128x128 planar RGB in
 * [0, 1] (`out` = 3 planes of 128*128). Gray is replicated; alpha ignored. */
diat_status diat_crop_face(const diat_image *photo, int x0, int y0, int side, float *out,
                           diat_error *err);

/* Enlarge `planes` planar 128x128 maps to the square (x0, y0, side) of a
 * width x height canvas, one output row at a time: `row_fn` receives the
 * canvas row y, the first canvas column x, the count and the resampled
 * values (planes interleaved per pixel). Only rows and columns inside the
 * canvas are produced, so memory stays O(side). */
typedef void (*diat_row_fn)(void *user, int y, int x, int count, const float *values);
diat_status diat_enlarge_face(const float *planes, int plane_count, int x0, int y0, int side,
                              int width, int height, diat_row_fn row_fn, void *user,
                              diat_error *err);

#endif

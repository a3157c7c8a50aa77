/* Private: moving pixels between a photo and the 128x128 face square.
 *
 * Coordinates are continuous pixel-edge coordinates: pixel (i, j) covers
 * [i, i + 1) x [j, j + 1), its centre is (i + 0.5, j + 0.5). The face square
 * is [0, 128)^2 in face coordinates; a similarity transform places it in
 * the photo. A square box is the special case b = 0, a = side / 128. */
#ifndef DIAT_IMAGE_RESAMPLE_H
#define DIAT_IMAGE_RESAMPLE_H

#include "diat.h"

/* Face -> photo: x = a*u - b*v + tx, y = b*u + a*v + ty (u, v face
 * coordinates). a = s cos(angle), b = s sin(angle), s the photo pixels per
 * face pixel. */
typedef struct diat_face_transform {
    double a, b, tx, ty;
} diat_face_transform;

/* The axis-aligned square (x0, y0, side): face (0, 0) at photo (x0, y0). */
diat_face_transform diat_face_transform_square(double x0, double y0, double side);

/* Photo pixels per face pixel (the uniform scale s). */
double diat_face_transform_scale(const diat_face_transform *t);

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

/* The face square under `t` out of `photo` into 128x128 planar RGB in [0, 1]
 * (`out` = 3 planes of 128*128): each face pixel is a tent filter over the
 * photo, along the photo's axes, centred where the face pixel's centre
 * lands, of radius max(1, s) photo pixels (bilinear when enlarging, an
 * area-like average when shrinking, so large faces do not alias). Photo
 * pixels outside the image replicate its border. Gray is replicated; alpha
 * ignored. */
diat_status diat_warp_face(const diat_image *photo, const diat_face_transform *t, float *out,
                           diat_error *err);

/* diat_warp_face of the axis-aligned square (x0, y0, side). */
diat_status diat_crop_face(const diat_image *photo, int x0, int y0, int side, float *out,
                           diat_error *err);

/* Paste `planes` (plane_count planar 128x128 maps) back onto a width x height
 * canvas through the inverse of `t`, one canvas row at a time: each canvas
 * pixel whose centre falls in the warped face square gets the tent-filtered
 * (radius max(1, 1/s) face pixels, border replicated inside the square)
 * values at its face coordinates, times the fraction of the pixel the
 * square covers (1 inside; anti-aliases the edge of a rotated square; an
 * axis-aligned square on whole pixels covers its pixels exactly 1 and the
 * others 0). `row_fn` receives the canvas row y, the first column x, the
 * count and the values (planes interleaved per pixel; 0 where the square
 * does not reach). Only rows and columns inside the canvas are produced, so
 * memory stays O(width). */
typedef void (*diat_row_fn)(void *user, int y, int x, int count, const float *values);
diat_status diat_paste_face(const float *planes, int plane_count, const diat_face_transform *t,
                            int width, int height, diat_row_fn row_fn, void *user, diat_error *err);

#endif

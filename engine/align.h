/* Private: aligning a face found in a photo to the CelebA-128 template. */
#ifndef DIAT_ALIGN_H
#define DIAT_ALIGN_H

#include "image-resample.h"

/* The alignment's key points, in this order: eye centres (image left, image
 * right; the mean of landmarks 36-41 and 42-47), mouth corners (image left,
 * image right; landmarks 48 and 54). */
#define DIAT_ALIGN_POINTS 4

/* Where the key points sit in the aligned 128x128 face, in the face's edge
 * coordinates (pixel (i, j) covers [i, i + 1) x [j, j + 1)). */
extern const double diat_align_template[DIAT_ALIGN_POINTS][2];

/* The key points of `face` in photo edge coordinates. Landmarks are given
 * as the detector reports them, pixel centres at whole numbers (face-api's
 * convention), hence a half-pixel shift. */
void diat_align_key_points(const diat_face *face, double points[DIAT_ALIGN_POINTS][2]);

/* Least-squares similarity (rotation, uniform scale, translation) taking
 * `from[i]` to `to[i]`: minimises sum |M from[i] + t - to[i]|^2. Fails when
 * the `from` points coincide (no scale or angle can be read off them). */
diat_status diat_similarity_fit(const double from[][2], const double to[][2], int count,
                                diat_face_transform *out, diat_error *err);

/* The inverse map of `t` (photo -> face). */
diat_face_transform diat_face_transform_invert(const diat_face_transform *t);

/* The face -> photo transform that aligns `face`: the least-squares
 * similarity from its key points to the template, inverted. Fails with a
 * clear message for non-finite or degenerate landmarks, a face smaller than
 * `min_side` photo pixels, or one whose square misses the width x height
 * photo entirely. */
diat_status diat_align_transform(const diat_face *face, int width, int height, int min_side,
                                 diat_face_transform *out, diat_error *err);

#endif

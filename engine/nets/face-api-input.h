/* Private: the input of face-api's 112x112 face networks, the 68-point
 * landmarks (face-landmarks.c) and age and gender (age-gender.c). Both
 * cut the face box out of the photo the same way (face-api's
 * extractFaceTensors and NetInput.toBatchTensor): padded with black to a
 * centred square, resized to 112x112, normalised with one mean colour. */
#ifndef DIAT_NETS_FACE_API_INPUT_H
#define DIAT_NETS_FACE_API_INPUT_H

#include "../context.h"

#define DIAT_FACE_API_INPUT_SIZE 112

/* How a face square larger than the 112x112 input is shrunk. Enlarging is
 * bilinear either way. */
typedef enum diat_face_api_filter {
    /* A triangle as wide as the scale factor: every pixel of the square
     * counts, so the result does not jump with sub-pixel shifts. */
    DIAT_FACE_API_FILTER_TRIANGLE = 0,
    /* tf.image.resizeBilinear's four pixels, exactly as face-api. */
    DIAT_FACE_API_FILTER_BILINEAR,
} diat_face_api_filter;

/* Where the square lies in the photo: the box rounded to whole pixels
 * (x0, y0, width, height), the square's side, and how far the shorter side
 * was padded before the box (face-api's d / 2, kept unrounded). */
typedef struct diat_face_api_square {
    long x0, y0, width, height, side;
    double pad_x, pad_y;
} diat_face_api_square;

/* Fill `input` (planar [3, 112, 112] host floats) with the face inside
 * `box` (x, y, w, h in photo pixels; edges rounded to whole pixels),
 * padded with black to a centred square (the shorter side gets floor(d/2)
 * pixels before it), resampled to 112x112 (output pixel o samples the
 * square at o * side / 112, as tf.image.resizeBilinear without corner
 * alignment or half-pixel centres) and normalised as face-api does:
 * (255 * v - mean_rgb[c]) / 255 for photo values v in [0, 1]. Parts of the
 * box outside the photo are black too. `photo` has 1-4 channels (gray is
 * replicated, alpha ignored). Fails with a clear message on a bad photo or
 * box. `square` (may be NULL) receives the geometry. */
diat_status diat_face_api_input(const diat_image *photo, const float box[4],
                                diat_face_api_filter filter, const float mean_rgb[3], float *input,
                                diat_face_api_square *square, diat_error *err);

#endif

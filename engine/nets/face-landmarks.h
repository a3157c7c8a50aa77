/* Private, for the tests: the landmark network's resampling filter.
 * The network itself is declared in faces-internal.h. */
#ifndef DIAT_NETS_FACE_LANDMARKS_H
#define DIAT_NETS_FACE_LANDMARKS_H

#include "../faces-internal.h"

/* How a face square larger than the network's 112x112 input is shrunk.
 * Enlarging is bilinear either way. */
typedef enum diat_landmark_filter {
    /* A triangle as wide as the scale factor (the default): every pixel of
     * the square counts, so landmarks do not jump with sub-pixel shifts. */
    DIAT_LANDMARK_FILTER_TRIANGLE = 0,
    /* tf.image.resizeBilinear's four pixels, as face-api: the tests use it
     * to compare the rest of the pipeline with face-api to the last bit. */
    DIAT_LANDMARK_FILTER_BILINEAR,
} diat_landmark_filter;

void diat_landmark_net_set_filter(diat_landmark_net *net, diat_landmark_filter filter);

#endif

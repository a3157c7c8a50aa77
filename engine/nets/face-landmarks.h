/* Private, for the tests: the landmark network's resampling filter.
 * The network itself is declared in faces-internal.h. */
#ifndef DIAT_NETS_FACE_LANDMARKS_H
#define DIAT_NETS_FACE_LANDMARKS_H

#include "../faces-internal.h"
#include "face-api-input.h"

/* How a face box larger than the network's 112x112 input is shrunk
 * (default DIAT_FACE_API_FILTER_TRIANGLE). */
void diat_landmark_net_set_filter(diat_landmark_net *net, diat_face_api_filter filter);

#endif

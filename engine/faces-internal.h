/* Private: the pieces of diat_find_faces (engine/faces.c) — the face
 * detector (engine/nets/face-detector.c) and the 68-point landmark network
 * (engine/nets/face-landmarks.c) — as faces.c calls them.
 *
 * Both networks run on a CPU context: faces.c hands them one (the caller's
 * if it is a CPU context, else one of its own), so their tensors are host
 * memory and small host-side steps (letterboxing, decoding) need no copies. */
#ifndef DIAT_FACES_INTERNAL_H
#define DIAT_FACES_INTERNAL_H

#include "context.h"

/* ---- landmarks (engine/nets/face-landmarks.c) ---------------------------- */

typedef struct diat_landmark_net diat_landmark_net; /* defined by the landmarks colleague */
diat_status diat_landmark_net_load(diat_context *ctx, const char *path, diat_landmark_net **out,
                                   diat_error *err);
void diat_landmark_net_free(diat_landmark_net *net);
/* 68 landmarks (photo pixels) of the face inside `box` (x, y, w, h in photo pixels) */
diat_status diat_landmark_net_run(diat_landmark_net *net, const diat_image *photo,
                                  const float box[4], float landmarks[68][2], diat_error *err);

/* ---- detection (engine/nets/face-detector.c) ----------------------------- */

/* face-api's tiny face detector (topology: the comment at the top of
 * face-detector.c). */
typedef struct diat_face_detector diat_face_detector;

/* One detection: box in photo pixels (x, y = top-left corner; may reach
 * outside the photo a little, as face-api's do) and score in [0, 1]. */
typedef struct diat_face_detection {
    float x, y, width, height;
    float score;
} diat_face_detection;

/* face-api's defaults (TinyFaceDetectorOptions and its NMS). */
#define DIAT_FACE_DETECTOR_INPUT_SIZE 416
#define DIAT_FACE_DETECTOR_SCORE_THRESHOLD 0.5f
#define DIAT_FACE_DETECTOR_IOU_THRESHOLD 0.4f

/* Load models/face-detector-tiny.safetensors (metadata format
 * "diat-face-detector-tiny"). `ctx` must be a CPU context. */
diat_status diat_face_detector_load(diat_context *ctx, const char *path, diat_face_detector **out,
                                    diat_error *err);
void diat_face_detector_free(diat_face_detector *detector);

/* Detect faces in `photo` (any size, 1-4 channels; inside `region` only
 * when it is not NULL): the photo (or region) is letterboxed into the
 * network's input square as face-api does it — scaled so its longer side
 * fills the square, padded with black at the right or bottom — with an
 * area-filter shrink first when it is more than twice the square's side,
 * read a row at a time so no photo-sized copy is made. Boxes scoring above
 * `score_threshold` survive non-maximum suppression at IoU
 * DIAT_FACE_DETECTOR_IOU_THRESHOLD; `*detections` (free() it; NULL when
 * `*count` is 0) is sorted by decreasing score. `score_threshold` <= 0
 * keeps every box. */
diat_status diat_face_detector_run(diat_face_detector *detector, const diat_image *photo,
                                   const diat_box *region, float score_threshold,
                                   diat_face_detection **detections, size_t *count,
                                   diat_error *err);

/* The raw network output for an input already letterboxed to the input
 * square: `input` is [1, 3, side, side] planar RGB in [0, 1] (side a
 * multiple of 32); fills `grid` [1, 25, side/32, side/32] (5 anchors x
 * (x, y, w, h, score) logits, channel = anchor * 5 + field), reallocating it
 * as needed. For the tests' comparison with face-api's own network. */
diat_status diat_face_detector_forward(diat_face_detector *detector, const diat_tensor *input,
                                       diat_tensor *grid, diat_error *err);

#endif

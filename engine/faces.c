/* Finding faces in a photo (the public diat_face_finder API of diat.h):
 * face-api's tiny face detector (nets/face-detector.c) gives the boxes, then
 * the 68-point landmark network (nets/face-landmarks.c) runs on each box.
 *
 * Both networks are small and their pre- and post-processing reads and
 * writes tensors directly, so they run on a CPU context: the caller's when
 * it is one, else one made here with as many threads. */
#include "faces-internal.h"

#include <stdlib.h>
#include <string.h>

/* How far a user's region is grown on each side before detection, as a
 * fraction of its size. The detector was trained on whole photos and is
 * surest of faces that fill part of its input; a selection drawn tight
 * around a face would otherwise fill all of it. */
#define REGION_MARGIN 0.25

struct diat_face_finder {
    diat_context *cpu;     /* the context both networks run on */
    diat_context *own_cpu; /* made here when the caller's context is not a CPU one */
    diat_face_detector *detector;
    diat_landmark_net *landmarks;
};

diat_status diat_face_finder_load(diat_context *ctx, const char *detector_path,
                                  const char *landmarks_path, diat_face_finder **out,
                                  diat_error *err)
{
    if (out) *out = NULL;
    if (!ctx || !detector_path || !landmarks_path || !out)
        return diat_set_error(err, DIAT_ERR_ARGUMENT,
                              "Loading the face finder needs a context and both model files "
                              "(detector and landmarks).");
    diat_face_finder *finder = calloc(1, sizeof *finder);
    if (!finder) return diat_set_error(err, DIAT_ERR_MEMORY, "Out of memory for the face finder.");
    diat_status st = DIAT_OK;
    finder->cpu = ctx;
    if (diat_context_backend(ctx) != diat_backend_cpu()) {
        st = diat_context_new(DIAT_BACKEND_CPU, diat_context_threads(ctx), &finder->own_cpu, err);
        finder->cpu = finder->own_cpu;
    }
    if (st == DIAT_OK)
        st = diat_face_detector_load(finder->cpu, detector_path, &finder->detector, err);
    if (st == DIAT_OK)
        st = diat_landmark_net_load(finder->cpu, landmarks_path, &finder->landmarks, err);
    if (st != DIAT_OK) {
        diat_face_finder_free(finder);
        return st;
    }
    *out = finder;
    return DIAT_OK;
}

void diat_face_finder_free(diat_face_finder *finder)
{
    if (!finder) return;
    diat_face_detector_free(finder->detector);
    diat_landmark_net_free(finder->landmarks);
    diat_context_free(finder->own_cpu);
    free(finder);
}

void diat_faces_free(diat_face *faces)
{
    free(faces);
}

/* Largest first; equal sizes by score. */
static int by_decreasing_size(const void *pa, const void *pb)
{
    const diat_face *a = pa, *b = pb;
    double area_a = (double)a->width * a->height, area_b = (double)b->width * b->height;
    if (area_a != area_b) return (area_a < area_b) - (area_a > area_b);
    return (a->score < b->score) - (a->score > b->score);
}

/* The best-scoring detection whose centre lies in `region`, or failing
 * that the best of all (detections are sorted by decreasing score). */
static size_t best_in_region(const diat_face_detection *detections, size_t count,
                             const diat_box *region)
{
    for (size_t i = 0; i < count; i++) {
        double cx = detections[i].x + 0.5 * detections[i].width;
        double cy = detections[i].y + 0.5 * detections[i].height;
        if (cx >= region->x && cx < (double)region->x + region->width && cy >= region->y &&
            cy < (double)region->y + region->height)
            return i;
    }
    return 0;
}

/* Boxes from the detector: above its threshold over the whole photo, or the
 * single best in the user's region. */
static diat_status detect(diat_face_finder *finder, const diat_image *photo, const diat_box *region,
                          diat_face_detection **detections, size_t *count, diat_error *err)
{
    if (!region)
        return diat_face_detector_run(finder->detector, photo, NULL,
                                      DIAT_FACE_DETECTOR_SCORE_THRESHOLD, detections, count, err);
    if (region->width < 1 || region->height < 1 || region->x >= photo->width ||
        region->y >= photo->height || (long)region->x + region->width <= 0 ||
        (long)region->y + region->height <= 0)
        return diat_set_error(err, DIAT_ERR_ARGUMENT,
                              "The region %d,%d %dx%d to look for a face in lies outside the "
                              "%dx%d image.",
                              region->x, region->y, region->width, region->height, photo->width,
                              photo->height);
    /* Grown; diat_face_detector_run keeps only the part inside the photo. */
    long margin_x = (long)(REGION_MARGIN * region->width);
    long margin_y = (long)(REGION_MARGIN * region->height);
    long left = (long)region->x - margin_x, top = (long)region->y - margin_y;
    long right = (long)region->x + region->width + margin_x;
    long bottom = (long)region->y + region->height + margin_y;
    if (left < 0) left = 0;
    if (top < 0) top = 0;
    if (right > photo->width) right = photo->width;
    if (bottom > photo->height) bottom = photo->height;
    diat_box search = {(int)left, (int)top, (int)(right - left), (int)(bottom - top)};
    diat_status st =
        diat_face_detector_run(finder->detector, photo, &search, 0.0f, detections, count, err);
    if (st != DIAT_OK || *count == 0) return st;
    size_t best = best_in_region(*detections, *count, region);
    (*detections)[0] = (*detections)[best];
    *count = 1;
    return DIAT_OK;
}

diat_status diat_find_faces(diat_face_finder *finder, const diat_image *photo,
                            const diat_box *region, diat_face **faces, size_t *count,
                            diat_error *err)
{
    if (faces) *faces = NULL;
    if (count) *count = 0;
    if (!finder || !photo || !faces || !count)
        return diat_set_error(err, DIAT_ERR_ARGUMENT, "Missing argument for finding faces.");
    diat_face_detection *detections = NULL;
    size_t found = 0;
    diat_status st = detect(finder, photo, region, &detections, &found, err);
    if (st != DIAT_OK || found == 0) {
        free(detections);
        return st;
    }
    diat_face *list = calloc(found, sizeof *list);
    if (!list) {
        free(detections);
        return diat_set_error(err, DIAT_ERR_MEMORY, "Out of memory listing faces.");
    }
    for (size_t i = 0; i < found && st == DIAT_OK; i++) {
        const diat_face_detection *det = &detections[i];
        diat_face *face = &list[i];
        face->x = det->x;
        face->y = det->y;
        face->width = det->width;
        face->height = det->height;
        face->score = det->score;
        const float box[4] = {det->x, det->y, det->width, det->height};
        st = diat_landmark_net_run(finder->landmarks, photo, box, face->landmarks, err);
    }
    free(detections);
    if (st != DIAT_OK) {
        free(list);
        return st;
    }
    qsort(list, found, sizeof *list, by_decreasing_size);
    *faces = list;
    *count = found;
    return DIAT_OK;
}

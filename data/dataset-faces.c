/* One face of a data set: decoding (image-io), CelebA's crop or a folder
 * image's alignment by its largest face, flips, and the faces read outside
 * the batch queue (the sample grid's fixed sources, labeled faces). */
#include "dataset-state.h"

#include "diat-train.h"
#include "image-io.h"
#include "image-resample.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* Smallest face an aligned folder image may have: as for the engine's edits. */
#define MIN_ALIGNED_FACE 16

/* Flip if asked and move to [-1, 1]. */
static void finish_face(float *out, int flip)
{
    for (size_t r = 0; r < (size_t)3 * FACE; r++) {
        float *row = out + r * FACE;
        if (flip)
            for (int x = 0; x < FACE / 2; x++) {
                float t = row[x];
                row[x] = row[FACE - 1 - x];
                row[FACE - 1 - x] = t;
            }
        for (int x = 0; x < FACE; x++) row[x] = row[x] * 2.0f - 1.0f;
    }
}

diat_status diat_dataset_load_face(const char *path, int celeba_geometry, int flip, float *out,
                                   diat_error *err)
{
    imgio_image img;
    diat_status st = imgio_load(path, &img, err);
    if (st != DIAT_OK) return st;
    const int w = img.image.width, h = img.image.height;
    int x0 = 0, y0 = 0, side;
    if (w == h) {
        side = w;
    } else if (celeba_geometry) {
        /* The aligned originals put the face in the square below row 20 of
         * 178x218; a proportionally scaled copy keeps that geometry. */
        if ((long)w * 218 != (long)h * 178) {
            imgio_free(&img);
            return diat_set_error(err, DIAT_ERR_FORMAT,
                                  "The image '%s' is %dx%d: neither a 178x218 CelebA aligned "
                                  "original nor square.",
                                  path, w, h);
        }
        side = w;
        y0 = (int)lround(20.0 * w / 178.0);
    } else {
        side = w < h ? w : h;
        x0 = (w - side) / 2;
        y0 = (h - side) / 2;
    }
    /* The engine's crop: a tent filter as wide as the shrink factor (area
     * averaging, no aliasing), exact copy at 1:1, gray replicated, alpha
     * ignored. */
    st = diat_crop_face(&img.image, x0, y0, side, out, err);
    imgio_free(&img);
    if (st != DIAT_OK) return st;
    finish_face(out, flip);
    return DIAT_OK;
}

/* Image `index` of stream `s` aligned by its largest face (engine/align.c,
 * as `diat apply` aligns). */
static diat_status load_aligned_face(diat_dataset *d, int s, size_t index, int flip, float *out,
                                     diat_error *err)
{
    stream *str = &d->streams[s];
    const char *path = str->list.paths[index];
    imgio_image img;
    diat_status st = imgio_load(path, &img, err);
    if (st != DIAT_OK) return st;
    diat_face_transform t;
    pthread_mutex_lock(&d->align_lock);
    if (str->aligned_known[index]) {
        t = str->aligned[index];
    } else {
        diat_face *faces = NULL;
        size_t count = 0;
        st = diat_find_faces(d->finder, &img.image, NULL, &faces, &count, err);
        if (st == DIAT_OK && count == 0)
            st = diat_set_error(err, DIAT_ERR_FORMAT, "No face found in '%s'.", path);
        /* The largest face (the list is sorted by size). */
        if (st == DIAT_OK)
            st = diat_align_transform(&faces[0], img.image.width, img.image.height,
                                      MIN_ALIGNED_FACE, &t, err);
        if (st == DIAT_ERR_ARGUMENT && err) { /* a face too small to use, say: name the file */
            diat_error why = *err;
            st = diat_set_error(err, DIAT_ERR_FORMAT, "'%s': %s", path, why.message);
        }
        if (st == DIAT_OK) {
            str->aligned[index] = t;
            str->aligned_known[index] = 1;
        }
        diat_faces_free(faces);
    }
    pthread_mutex_unlock(&d->align_lock);
    if (st == DIAT_OK) st = diat_warp_face(&img.image, &t, out, err);
    imgio_free(&img);
    if (st != DIAT_OK) return st;
    finish_face(out, flip);
    return DIAT_OK;
}

diat_status dataset_load_stream_face(diat_dataset *d, int s, size_t index, int flip, float *out,
                                     diat_error *err)
{
    if (d->finder) return load_aligned_face(d, s, index, flip, out, err);
    return diat_dataset_load_face(d->streams[s].list.paths[index], d->celeba_geometry, flip, out,
                                  err);
}

void dataset_mark_bad(diat_dataset *d, int s, size_t index, const diat_error *why)
{
    stream *st = &d->streams[s];
    if (atomic_exchange(&st->bad[index], 1)) return; /* another thread got there first */
    atomic_fetch_add(&st->bad_count, 1);
    size_t total = atomic_fetch_add(&d->skipped, 1) + 1;
    char message[700];
    /* "unusable": unreadable, or (aligned folders) without a face */
    snprintf(message, sizeof message, "Skipping an unusable image (%zu so far): %s", total,
             why->message);
    pthread_mutex_lock(&d->warn_lock);
    if (d->warn)
        d->warn(d->warn_user, message);
    else
        fprintf(stderr, "warning: %s\n", message);
    pthread_mutex_unlock(&d->warn_lock);
}

diat_status diat_dataset_labeled_face(diat_dataset *d, size_t i, float *face, float *labels,
                                      diat_error *err)
{
    stream *st = &d->streams[SOURCES];
    if (i >= st->list.count)
        return diat_set_error(err, DIAT_ERR_ARGUMENT, "Face %zu asked for; the split has %zu.", i,
                              st->list.count);
    if (atomic_load(&st->bad[i]))
        return diat_set_error(err, DIAT_ERR_FORMAT, "The image '%s' is unreadable.",
                              st->list.paths[i]);
    diat_error e;
    diat_status status = dataset_load_stream_face(d, SOURCES, i, 0, face, &e);
    if (status != DIAT_OK) {
        dataset_mark_bad(d, SOURCES, i, &e);
        if (err) *err = e;
        return status;
    }
    if (labels) diat_dataset_labels_of(d, i, labels);
    return DIAT_OK;
}

diat_status diat_dataset_fixed_sources(diat_dataset *d, int count, float *sources, diat_error *err)
{
    if (!d || !sources || count < 0)
        return diat_set_error(err, DIAT_ERR_ARGUMENT, "diat_dataset_fixed_sources: bad argument.");
    stream *st = &d->streams[SOURCES];
    if ((size_t)count > st->list.count)
        return diat_set_error(err, DIAT_ERR_ARGUMENT,
                              "Asked for %d fixed source faces, but there are only %zu.", count,
                              st->list.count);
    int filled = 0;
    for (size_t i = 0; filled < count && i < st->list.count; i++) {
        if (atomic_load(&st->bad[i])) continue;
        diat_error e;
        if (dataset_load_stream_face(d, SOURCES, i, 0, sources + (size_t)filled * FACE_FLOATS,
                                     &e) == DIAT_OK)
            filled++;
        else
            dataset_mark_bad(d, SOURCES, i, &e);
    }
    if (filled < count)
        return diat_set_error(err, DIAT_ERR_FORMAT,
                              "Only %d of the %zu source images are readable; %d fixed faces "
                              "were asked for.",
                              filled, st->list.count, count);
    return DIAT_OK;
}

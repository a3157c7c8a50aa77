/* diat-train's data: source faces (without the attribute) and reference faces
 * (with it), as batches of 128x128 NCHW floats in [-1, 1].
 *
 * Two layouts:
 *  - CelebA as users download it: a root holding img_align_celeba/,
 *    list_attr_celeba.txt and list_eval_partition.txt (also found in the
 *    Google Drive layout's Img/, Anno/ and Eval/ subfolders). 178x218
 *    aligned originals are cropped to 178x178 from row 20 and resized to 128
 *    with an area (anti-aliased) filter; square images are only resized.
 *  - A plain pair of folders of face crops (PNG/JPEG, any size): the centred
 *    square of each image, resized to 128; or, with a face detector, any
 *    photos, each aligned by its largest face (see detector_path).
 *
 * Batches are decoded by background threads into a bounded queue. The
 * content of batch k is a pure function of (seed, k, the file lists): the
 * order of each stream is a seeded shuffle per epoch, flips and the stand-ins
 * for unreadable images come from counter-based hashes. So prefetching, the
 * thread count and checkpoint/resume never change what a run sees; the
 * position is just the next batch index (plus checks that the data match).
 *
 * Unreadable, corrupt or oddly sized images are skipped: each is reported
 * once (warning callback or stderr), counted, and replaced in its batch by
 * another face of the same stream chosen from (seed, position). Only when a
 * batch slot cannot be filled after many tries does diat_dataset_next fail.
 *
 * Every function that can fail fills a diat_error whose message names the
 * file (and line) at fault.
 */
#ifndef DIAT_DATA_DATASET_H
#define DIAT_DATA_DATASET_H

#include "diat.h"

#include <stddef.h>
#include <stdint.h>

/* Called once for each image found unreadable, from a decoding thread (calls
 * are serialised). `message` names the file and the reason. */
typedef void (*diat_dataset_warn_fn)(void *user, const char *message);

typedef struct diat_dataset_options {
    /* CelebA root (see above), or NULL to use source_dir/target_dir. */
    const char *celeba_root;
    /* CelebA attribute name exactly as in list_attr_celeba.txt ("Eyeglasses").
     * NULL or "": no selection, every face of the split is in both streams
     * (for the denoiser). Ignored for folder pairs. */
    const char *attribute;
    /* 1: sources lack the attribute and references have it; 0: the reverse. */
    int add;
    /* Folder pair: faces without / with the attribute (not recursive; files
     * named *.png, *.jpg, *.jpeg in any case; others are ignored). */
    const char *source_dir, *target_dir;
    /* Official CelebA partition: 0 train, 1 val, 2 test. Folder pairs have no
     * partition: every split gives all their files. */
    int split;
    int batch;                 /* faces per batch, >= 1 */
    int flip;                  /* nonzero: random horizontal flips (half of the faces) */
    uint64_t seed;             /* shuffles, flips and stand-ins */
    int threads;               /* decoding threads, >= 1 */
    diat_dataset_warn_fn warn; /* NULL: warnings go to stderr */
    void *warn_user;
    /* Folder pairs only: the face detector and landmark model files. When
     * both are set, each image is aligned to the CelebA-128 template by its
     * largest face, with the engine's alignment (the same as `diat apply`);
     * an image without a face is skipped like an unreadable one (warned
     * once, counted). NULL: the centred square, as above. */
    const char *detector_path, *landmarks_path;
    /* CelebA only: a labeled data set for classifiers. With label_count > 0
     * the one stream holds every face of the split (no selection, no
     * references, `attribute` and `add` ignored) and each face comes with
     * the 0/1 values of the attributes labels[0..label_count) (at most 32). */
    const char *const *labels;
    int label_count;
} diat_dataset_options;

typedef struct diat_dataset diat_dataset;

/* Read the label files or list the folders and select the two streams.
 * Decoding threads start on the first diat_dataset_next. */
diat_status diat_dataset_open(const diat_dataset_options *o, diat_dataset **out, diat_error *err);

/* The next batch: `sources` and `references` each [batch, 3, 128, 128]
 * (NCHW, RGB, [-1, 1]). Blocks until the batch is ready. On failure the
 * position does not move (calling again retries the same batch). */
diat_status diat_dataset_next(diat_dataset *d, float *sources, float *references, diat_error *err);

/* Labeled data sets: the next batch of faces [batch, 3, 128, 128] and their
 * labels [batch, label_count] (1 has the attribute, 0 not), under the same
 * determinism as diat_dataset_next (which a labeled data set refuses). A
 * stand-in for an unreadable face brings its own labels. */
diat_status diat_dataset_next_labeled(diat_dataset *d, float *faces, float *labels,
                                      diat_error *err);
int diat_dataset_label_count(const diat_dataset *d);
/* The labels of source i (file order), label_count floats. */
void diat_dataset_labels_of(const diat_dataset *d, size_t i, float *labels);
/* Source i in file order, unflipped, decoded on the calling thread, and its
 * labels (may be NULL): for evaluations that see every face once. An
 * unreadable face is an error (and is counted as skipped). */
diat_status diat_dataset_labeled_face(diat_dataset *d, size_t i, float *face, float *labels,
                                      diat_error *err);

/* The first `count` readable sources of the split in file order, unflipped,
 * [count, 3, 128, 128] in [-1, 1]: fixed faces for sample grids. Decoded on
 * the calling thread; does not touch the position. */
diat_status diat_dataset_fixed_sources(diat_dataset *d, int count, float *sources, diat_error *err);

size_t diat_dataset_source_count(const diat_dataset *d);
size_t diat_dataset_reference_count(const diat_dataset *d);
/* Path of source / reference i (0 <= i < count), in file order. */
const char *diat_dataset_source_path(const diat_dataset *d, size_t i);
const char *diat_dataset_reference_path(const diat_dataset *d, size_t i);
int diat_dataset_batch_size(const diat_dataset *d);
/* Distinct images found unreadable so far (by any thread). */
size_t diat_dataset_skipped(const diat_dataset *d);
/* Epochs of the source stream consumed so far (batches * batch / sources). */
double diat_dataset_epoch(const diat_dataset *d);

/* Where the stream stands, for checkpoints. Opaque words: a tag, the seed,
 * the next batch index, and what the data looked like (counts, batch size,
 * flips, a fingerprint of the file lists) so that a restore onto different
 * data is refused instead of silently giving other batches. */
typedef struct diat_dataset_position {
    uint64_t words[8];
} diat_dataset_position;

void diat_dataset_get_position(const diat_dataset *d, diat_dataset_position *p);
/* Continue from `p`: the next batches are exactly those the dataset that
 * produced `p` would have given (its seed is adopted). Prefetched batches are
 * discarded. Fails, leaving the position alone, when `p` is not a position or
 * was made from other files, another batch size or another flip setting. */
diat_status diat_dataset_set_position(diat_dataset *d, const diat_dataset_position *p,
                                      diat_error *err);

/* Stop the threads and free everything. NULL is allowed. */
void diat_dataset_close(diat_dataset *d);

/* One face as the dataset prepares it, into `out` [3, 128, 128] in [-1, 1]:
 * celeba_geometry nonzero crops 178x218 originals at row 20 (and accepts
 * square images), zero takes the centred square of any image. For tests
 * and tools. */
diat_status diat_dataset_load_face(const char *path, int celeba_geometry, int flip, float *out,
                                   diat_error *err);

/* The faces of one official CelebA split (0 train, 1 val, 2 test) whose
 * `attribute` is `with` (1: has it, 0: lacks it), read and checked exactly as
 * diat_dataset_open reads CelebA. *paths (free with
 * diat_celeba_free_paths) is in the partition file's order and may be empty;
 * *split_total receives the size of the whole split. */
diat_status diat_celeba_split_faces(const char *root, const char *attribute, int with, int split,
                                    char ***paths, size_t *count, size_t *split_total,
                                    diat_error *err);
void diat_celeba_free_paths(char **paths, size_t count);

/* "train", "val" or "test" for CelebA split 0, 1 or 2; NULL for any other. */
const char *diat_celeba_split_name(int split);

#endif /* DIAT_DATA_DATASET_H */

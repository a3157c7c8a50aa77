/* Private to the data library: the state of an open data set, shared by
 * dataset.c (the batch queue, positions) and dataset-faces.c (decoding one
 * face). */
#ifndef DIAT_DATA_DATASET_STATE_H
#define DIAT_DATA_DATASET_STATE_H

#include "align.h"
#include "dataset-internal.h"
#include "dataset.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#define FACE DIAT_FACE_SIZE
#define FACE_FLOATS ((size_t)3 * FACE * FACE)

enum { SOURCES = 0, REFERENCES = 1 };
enum { SLOT_EMPTY = 0, SLOT_FILLING, SLOT_READY };

typedef struct stream {
    dataset_list list;
    atomic_uchar *bad; /* per image: 1 once it failed to load (never retried) */
    atomic_size_t bad_count;
    /* Aligned folders: per image, its face's transform once found (guarded
     * by the dataset's align_lock), so each image meets the detector once. */
    diat_face_transform *aligned;
    unsigned char *aligned_known;
} stream;

/* One prepared batch in the queue. Batch k lives in slot k % queue_len. */
typedef struct slot {
    int state;
    uint64_t batch, generation, seed; /* seed copied at claim time (see set_position) */
    float *data;                      /* sources then references, batch * FACE_FLOATS each */
    uint32_t *index;                  /* labeled: the source image in each place */
    diat_status status;
    diat_error error;
} slot;

/* The last two epoch permutations of each stream, per thread: computing one
 * is O(n) and a batch rarely spans more than two epochs. */
typedef struct perm_cache {
    uint64_t seed[2], epoch[2];
    int valid[2], victim;
    uint32_t *perm[2];
} perm_cache;

typedef struct worker {
    diat_dataset *d;
    pthread_t thread;
    perm_cache cache[2];
} worker;

struct diat_dataset {
    stream streams[2];
    /* Labeled (label_count > 0): one stream, every face of the split, and
     * per source image its label bits (bit k: has labels[k]). */
    int stream_count, label_count;
    uint32_t *labels;
    int celeba_geometry, batch, flip, threads;
    uint64_t fingerprint;
    diat_dataset_warn_fn warn;
    void *warn_user;
    pthread_mutex_t warn_lock;
    atomic_size_t skipped;
    /* Folder pairs aligned by the face finder (NULL: centred squares). The
     * finder's networks keep state between calls, so one finder serves all
     * threads under align_lock; the transform cache makes that cost once
     * per image, not per epoch. */
    diat_context *align_ctx;
    diat_face_finder *finder;
    pthread_mutex_t align_lock;

    /* Everything below is guarded by `lock`. */
    pthread_mutex_t lock;
    pthread_cond_t changed; /* any slot or counter changed; broadcast */
    uint64_t seed;
    uint64_t next;       /* batch the consumer takes next */
    uint64_t claim;      /* batch the next idle worker prepares */
    uint64_t generation; /* bumped when the position jumps: older work is dropped */
    int started, stop, queue_len, worker_count;
    slot *slots;
    worker *workers;
};

/* Image `index` of stream `s` as the data set prepares it (decoded, cropped
 * or aligned, flipped if asked, in [-1, 1]). */
diat_status dataset_load_stream_face(diat_dataset *d, int s, size_t index, int flip, float *out,
                                     diat_error *err);

/* Record image `index` of stream `s` as unreadable; warns once per image. */
void dataset_mark_bad(diat_dataset *d, int s, size_t index, const diat_error *why);

#endif

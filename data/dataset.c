/* The trainer's data pipeline: shuffling, and a bounded queue of batches
 * prepared by background threads (each face is decoded by dataset-faces.c).
 *
 * Determinism is by construction rather than by careful sequencing: the face
 * at position p of a stream (p = batch * batch_size + slot) is entry p % n of
 * the permutation for epoch p / n, a Fisher-Yates shuffle seeded by hashing
 * (seed, stream, epoch); its flip and, if it is unreadable, its stand-ins are
 * hashes of (seed, stream, p). Nothing depends on which thread decoded what
 * or how far ahead it ran, so the only state to checkpoint is the index of
 * the next batch, and any number of threads gives the same batches.
 */
#include "dataset-state.h"

#include "diat-train.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Candidates tried for one batch slot before the batch is declared
 * unfillable: with a tenth of the images bad this fails with probability
 * 1e-64; with nearly all of them bad the user learns it within one batch. */
#define MAX_TRIES 64
#define MAX_BATCH 65536
/* "DIATDS" and a layout version, so foreign words are refused. */
#define POSITION_TAG 0x4449415444530001ull

/* Hash domains, so that shuffles, flips and stand-ins are independent. */
enum { TAG_SHUFFLE = 1, TAG_FLIP, TAG_STANDIN };

/* ---- counter-based randomness ------------------------------------------ */

/* SplitMix64's finaliser: a bijective mix with full avalanche. */
static uint64_t mix64(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

static uint64_t hash4(uint64_t a, uint64_t b, uint64_t c, uint64_t d)
{
    uint64_t h = mix64(a ^ 0x9e3779b97f4a7c15ull);
    h = mix64(h ^ b);
    h = mix64(h ^ c);
    return mix64(h ^ d);
}

static uint64_t rng_next(uint64_t *state)
{
    *state += 0x9e3779b97f4a7c15ull;
    return mix64(*state);
}

/* Uniform in [0, bound): rejection removes the modulo bias. */
static uint64_t rng_below(uint64_t *state, uint64_t bound)
{
    uint64_t threshold = (0 - bound) % bound;
    for (;;) {
        uint64_t r = rng_next(state);
        if (r >= threshold) return r % bound;
    }
}

static void shuffle(uint32_t *perm, uint32_t n, uint64_t seed, int stream_id, uint64_t epoch)
{
    uint64_t state = hash4(seed, TAG_SHUFFLE, (uint64_t)stream_id, epoch);
    for (uint32_t i = 0; i < n; i++) perm[i] = i;
    for (uint32_t i = n - 1; i > 0; i--) {
        uint32_t j = (uint32_t)rng_below(&state, (uint64_t)i + 1);
        uint32_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
}

/* Image index at position `pos` of stream `s`, or SIZE_MAX when out of
 * memory. */
static size_t image_at(worker *w, int s, uint64_t seed, uint64_t pos)
{
    const uint32_t n = (uint32_t)w->d->streams[s].list.count;
    const uint64_t epoch = pos / n;
    perm_cache *c = &w->cache[s];
    for (int i = 0; i < 2; i++)
        if (c->valid[i] && c->epoch[i] == epoch && c->seed[i] == seed) return c->perm[i][pos % n];
    int v = c->victim;
    c->victim ^= 1;
    if (!c->perm[v] && !(c->perm[v] = malloc(sizeof *c->perm[v] * n))) return SIZE_MAX;
    shuffle(c->perm[v], n, seed, s, epoch);
    c->valid[v] = 1;
    c->seed[v] = seed;
    c->epoch[v] = epoch;
    return c->perm[v][pos % n];
}

static const char *stream_name(int s)
{
    return s == SOURCES ? "source" : "reference";
}

/* The face at position `pos` of stream `s` into `out`, or a stand-in when it
 * is unreadable. */
static diat_status fill_face(worker *w, int s, uint64_t seed, uint64_t batch, uint64_t pos,
                             float *out, uint32_t *used, diat_error *err)
{
    diat_dataset *d = w->d;
    stream *st = &d->streams[s];
    const size_t n = st->list.count;
    size_t index = image_at(w, s, seed, pos);
    if (index == SIZE_MAX)
        return diat_set_error(err, DIAT_ERR_MEMORY, "Out of memory shuffling %zu images.", n);
    const int flip = d->flip && (hash4(seed, TAG_FLIP, (uint64_t)s, pos) & 1);
    const uint64_t standin = hash4(seed, TAG_STANDIN, (uint64_t)s, pos);
    diat_error last = {.code = DIAT_OK, .message = ""};
    for (int attempt = 0; attempt < MAX_TRIES; attempt++) {
        if (attempt) index = (size_t)(mix64(standin + (uint64_t)attempt) % n);
        if (atomic_load(&st->bad[index])) continue;
        diat_error e;
        if (dataset_load_stream_face(d, s, index, flip, out, &e) == DIAT_OK) {
            *used = (uint32_t)index; /* a stand-in brings its own labels */
            return DIAT_OK;
        }
        dataset_mark_bad(d, s, index, &e);
        last = e;
        if (atomic_load(&st->bad_count) == n) break;
    }
    return diat_set_error(err, DIAT_ERR_FORMAT,
                          "Cannot fill batch %llu: %d %s images in a row were unreadable (%zu of "
                          "%zu are so far)%s%s",
                          (unsigned long long)batch, MAX_TRIES, stream_name(s),
                          atomic_load(&st->bad_count), n, last.message[0] ? "; the last: " : ".",
                          last.message);
}

static diat_status fill_batch(worker *w, uint64_t batch, uint64_t seed, slot *into, diat_error *err)
{
    const int b = w->d->batch;
    for (int s = 0; s < w->d->stream_count; s++)
        for (int j = 0; j < b; j++) {
            float *out = into->data + ((size_t)s * b + (size_t)j) * FACE_FLOATS;
            uint32_t used, *index = s == SOURCES ? &into->index[j] : &used;
            diat_status st =
                fill_face(w, s, seed, batch, batch * (uint64_t)b + (uint64_t)j, out, index, err);
            if (st != DIAT_OK) return st;
        }
    return DIAT_OK;
}

/* ---- the queue --------------------------------------------------------- */

static void *worker_main(void *arg)
{
    worker *w = arg;
    diat_dataset *d = w->d;
    pthread_mutex_lock(&d->lock);
    for (;;) {
        /* Prepare the oldest unclaimed batch as soon as its slot is free and
         * it is at most queue_len ahead of the consumer. */
        slot *s = NULL;
        while (!d->stop) {
            s = &d->slots[d->claim % (uint64_t)d->queue_len];
            if (d->claim < d->next + (uint64_t)d->queue_len && s->state == SLOT_EMPTY) break;
            pthread_cond_wait(&d->changed, &d->lock);
        }
        if (d->stop) break;
        s->state = SLOT_FILLING;
        s->batch = d->claim++;
        s->generation = d->generation;
        s->seed = d->seed;
        pthread_mutex_unlock(&d->lock);

        diat_error e = {.code = DIAT_OK, .message = ""};
        diat_status status = fill_batch(w, s->batch, s->seed, s, &e);

        pthread_mutex_lock(&d->lock);
        if (s->generation != d->generation) {
            s->state = SLOT_EMPTY; /* the position jumped meanwhile */
        } else {
            s->state = SLOT_READY;
            s->status = status;
            s->error = e;
        }
        pthread_cond_broadcast(&d->changed);
    }
    pthread_mutex_unlock(&d->lock);
    return NULL;
}

/* Drop queued work and continue from batch `next` (lock held). */
static void restart_queue(diat_dataset *d, uint64_t next)
{
    d->generation++;
    d->next = d->claim = next;
    for (int i = 0; i < d->queue_len; i++)
        if (d->slots[i].state == SLOT_READY) d->slots[i].state = SLOT_EMPTY;
    pthread_cond_broadcast(&d->changed);
}

static void stop_workers(diat_dataset *d)
{
    pthread_mutex_lock(&d->lock);
    d->stop = 1;
    pthread_cond_broadcast(&d->changed);
    pthread_mutex_unlock(&d->lock);
    for (int i = 0; i < d->worker_count; i++) pthread_join(d->workers[i].thread, NULL);
    d->worker_count = 0;
}

/* Lock held. */
static diat_status start_workers(diat_dataset *d, diat_error *err)
{
    for (int i = 0; i < d->threads; i++) {
        int rc = pthread_create(&d->workers[i].thread, NULL, worker_main, &d->workers[i]);
        if (rc != 0) {
            pthread_mutex_unlock(&d->lock);
            stop_workers(d);
            pthread_mutex_lock(&d->lock);
            d->stop = 0;
            return diat_set_error(err, DIAT_ERR_MEMORY, "Cannot start a decoding thread: %s.",
                                  strerror(rc));
        }
        d->worker_count++;
    }
    d->started = 1;
    return DIAT_OK;
}

/* The next batch into `sources` and, unless NULL, `references` and the
 * sources' labels. */
static diat_status take_batch(diat_dataset *d, float *sources, float *references, float *labels,
                              diat_error *err)
{
    pthread_mutex_lock(&d->lock);
    if (!d->started) {
        diat_status st = start_workers(d, err);
        if (st != DIAT_OK) {
            pthread_mutex_unlock(&d->lock);
            return st;
        }
    }
    slot *s = &d->slots[d->next % (uint64_t)d->queue_len];
    while (!(s->state == SLOT_READY && s->batch == d->next && s->generation == d->generation))
        pthread_cond_wait(&d->changed, &d->lock);
    if (s->status != DIAT_OK) {
        diat_status st = s->status;
        if (err) *err = s->error;
        restart_queue(d, d->next); /* a retry prepares the same batch again */
        pthread_mutex_unlock(&d->lock);
        return st;
    }
    pthread_mutex_unlock(&d->lock);
    /* The slot is READY for the batch we wait for: no worker writes it until
     * it is EMPTY again, so the copy needs no lock. */
    const size_t count = (size_t)d->batch * FACE_FLOATS;
    memcpy(sources, s->data, count * sizeof *sources);
    if (references) memcpy(references, s->data + count, count * sizeof *references);
    for (int j = 0; labels && j < d->batch; j++)
        diat_dataset_labels_of(d, s->index[j], labels + (size_t)j * d->label_count);
    pthread_mutex_lock(&d->lock);
    s->state = SLOT_EMPTY;
    d->next++;
    pthread_cond_broadcast(&d->changed);
    pthread_mutex_unlock(&d->lock);
    return DIAT_OK;
}

diat_status diat_dataset_next(diat_dataset *d, float *sources, float *references, diat_error *err)
{
    if (!d || !sources || !references)
        return diat_set_error(err, DIAT_ERR_ARGUMENT, "diat_dataset_next: NULL argument.");
    if (d->label_count)
        return diat_set_error(err, DIAT_ERR_ARGUMENT,
                              "A labeled data set has no references: use "
                              "diat_dataset_next_labeled.");
    return take_batch(d, sources, references, NULL, err);
}

diat_status diat_dataset_next_labeled(diat_dataset *d, float *faces, float *labels, diat_error *err)
{
    if (!d || !faces || !labels)
        return diat_set_error(err, DIAT_ERR_ARGUMENT, "diat_dataset_next_labeled: NULL argument.");
    if (!d->label_count)
        return diat_set_error(err, DIAT_ERR_ARGUMENT,
                              "diat_dataset_next_labeled: the data set was opened without labels.");
    return take_batch(d, faces, NULL, labels, err);
}

int diat_dataset_label_count(const diat_dataset *d)
{
    return d->label_count;
}

void diat_dataset_labels_of(const diat_dataset *d, size_t i, float *labels)
{
    uint32_t bits = d->labels && i < d->streams[SOURCES].list.count ? d->labels[i] : 0;
    for (int k = 0; k < d->label_count; k++) labels[k] = (float)(bits >> k & 1);
}

/* ---- open, position, close --------------------------------------------- */

/* FNV-1a over the file names (not the folders: a moved data set resumes). */
static uint64_t fingerprint(const diat_dataset *d, const char *const *labels)
{
    uint64_t h = 0xcbf29ce484222325ull;
    /* Labels are part of the data: other names or values are other batches. */
    for (int k = 0; k < d->label_count; k++) {
        for (const char *p = labels[k]; *p; p++) h = (h ^ (unsigned char)*p) * 0x100000001b3ull;
        h = (h ^ ',') * 0x100000001b3ull;
    }
    for (size_t i = 0; d->labels && i < d->streams[SOURCES].list.count; i++)
        h = (h ^ d->labels[i]) * 0x100000001b3ull;
    for (int s = 0; s < 2; s++) {
        const dataset_list *list = &d->streams[s].list;
        for (size_t i = 0; i < list->count; i++) {
            const char *slash = strrchr(list->paths[i], '/');
            for (const char *p = slash ? slash + 1 : list->paths[i]; *p; p++)
                h = (h ^ (unsigned char)*p) * 0x100000001b3ull;
            h = (h ^ '\n') * 0x100000001b3ull;
        }
        h = (h ^ 0xff) * 0x100000001b3ull;
    }
    /* Aligned crops are other data: a checkpoint made on squares is refused. */
    return h ^ (uint64_t)d->celeba_geometry ^ (d->finder ? 0x616c69676e00ull : 0);
}

diat_status diat_dataset_open(const diat_dataset_options *o, diat_dataset **out, diat_error *err)
{
    if (out) *out = NULL;
    if (!o || !out)
        return diat_set_error(err, DIAT_ERR_ARGUMENT, "diat_dataset_open: NULL argument.");
    int folders = o->source_dir || o->target_dir;
    if (o->celeba_root && folders)
        return diat_set_error(err, DIAT_ERR_ARGUMENT,
                              "Give either a CelebA folder or a source and a target folder, not "
                              "both.");
    if (!o->celeba_root && !(o->source_dir && o->target_dir))
        return diat_set_error(err, DIAT_ERR_ARGUMENT,
                              "Give a CelebA folder, or both a source and a target folder.");
    if (o->batch < 1 || o->batch > MAX_BATCH)
        return diat_set_error(err, DIAT_ERR_ARGUMENT, "The batch size %d is not in 1..%d.",
                              o->batch, MAX_BATCH);
    if ((o->detector_path || o->landmarks_path) &&
        (o->celeba_root || !o->detector_path || !o->landmarks_path))
        return diat_set_error(err, DIAT_ERR_ARGUMENT,
                              "Aligning by the face detector needs both its model files and "
                              "applies to folder pairs (CelebA's faces are aligned already).");
    if (o->label_count && (!o->celeba_root || o->label_count > CELEBA_MAX_LABELS || !o->labels))
        return diat_set_error(err, DIAT_ERR_ARGUMENT,
                              "Labels come from CelebA's attribute file: give a CelebA folder "
                              "and 1 to %d attribute names.",
                              CELEBA_MAX_LABELS);
    if (o->threads < 1 || o->threads > 256)
        return diat_set_error(err, DIAT_ERR_ARGUMENT,
                              "The decoding thread count %d is not in "
                              "1..256.",
                              o->threads);

    diat_dataset *d = calloc(1, sizeof *d);
    if (!d) return diat_set_error(err, DIAT_ERR_MEMORY, "Out of memory opening the data set.");
    pthread_mutex_init(&d->lock, NULL);
    pthread_mutex_init(&d->warn_lock, NULL);
    pthread_mutex_init(&d->align_lock, NULL);
    pthread_cond_init(&d->changed, NULL);
    atomic_init(&d->skipped, 0);
    d->batch = o->batch;
    d->label_count = o->label_count > 0 ? o->label_count : 0;
    d->stream_count = d->label_count ? 1 : 2;
    d->flip = o->flip != 0;
    d->threads = o->threads;
    d->seed = o->seed;
    d->warn = o->warn;
    d->warn_user = o->warn_user;
    /* One slot per thread plus one, so a finished batch waits while every
     * thread works on the next ones. */
    d->queue_len = o->threads + 1;

    diat_status st;
    if (o->label_count) {
        d->celeba_geometry = 1;
        st = celeba_select_labeled(o->celeba_root, o->labels, d->label_count, o->split,
                                   &d->streams[SOURCES].list, &d->labels, err);
    } else if (o->celeba_root) {
        d->celeba_geometry = 1;
        st = celeba_select(o->celeba_root, o->attribute, o->add != 0, o->split,
                           &d->streams[SOURCES].list, &d->streams[REFERENCES].list, err);
    } else {
        st = dataset_folder_list(o->source_dir, "source folder", &d->streams[SOURCES].list, err);
        if (st == DIAT_OK)
            st = dataset_folder_list(o->target_dir, "target folder", &d->streams[REFERENCES].list,
                                     err);
    }
    for (int s = 0; st == DIAT_OK && s < d->stream_count; s++) {
        stream *str = &d->streams[s];
        if (str->list.count >= UINT32_MAX) {
            st = diat_set_error(err, DIAT_ERR_ARGUMENT, "Too many %s images (%zu).", stream_name(s),
                                str->list.count);
            break;
        }
        atomic_init(&str->bad_count, 0);
        str->bad = malloc(str->list.count * sizeof *str->bad);
        if (!str->bad) {
            st = diat_set_error(err, DIAT_ERR_MEMORY, "Out of memory for the image lists.");
            break;
        }
        for (size_t i = 0; i < str->list.count; i++) atomic_init(&str->bad[i], 0);
        if (o->detector_path) {
            str->aligned = malloc(str->list.count * sizeof *str->aligned);
            str->aligned_known = calloc(str->list.count, 1);
            if (!str->aligned || !str->aligned_known) {
                st = diat_set_error(err, DIAT_ERR_MEMORY, "Out of memory for the image lists.");
                break;
            }
        }
    }
    /* One thread: the decoding threads already run side by side. */
    if (st == DIAT_OK && o->detector_path &&
        (st = diat_context_new(DIAT_BACKEND_CPU, 1, &d->align_ctx, err)) == DIAT_OK)
        st = diat_face_finder_load(d->align_ctx, o->detector_path, o->landmarks_path, &d->finder,
                                   err);
    if (st == DIAT_OK) {
        d->slots = calloc((size_t)d->queue_len, sizeof *d->slots);
        d->workers = calloc((size_t)d->threads, sizeof *d->workers);
        if (!d->slots || !d->workers)
            st = diat_set_error(err, DIAT_ERR_MEMORY, "Out of memory for the batch queue.");
    }
    for (int i = 0; st == DIAT_OK && i < d->queue_len; i++)
        if (!(d->slots[i].data =
                  malloc((size_t)d->stream_count * d->batch * FACE_FLOATS * sizeof(float))) ||
            !(d->slots[i].index = malloc((size_t)d->batch * sizeof *d->slots[i].index)))
            st = diat_set_error(err, DIAT_ERR_MEMORY,
                                "Out of memory for a queue of %d batches of %d faces.",
                                d->queue_len, d->batch);
    if (st != DIAT_OK) {
        diat_dataset_close(d);
        return st;
    }
    for (int i = 0; i < d->threads; i++) d->workers[i].d = d;
    d->fingerprint = fingerprint(d, o->labels);
    *out = d;
    return DIAT_OK;
}

size_t diat_dataset_source_count(const diat_dataset *d)
{
    return d->streams[SOURCES].list.count;
}

size_t diat_dataset_reference_count(const diat_dataset *d)
{
    return d->streams[REFERENCES].list.count;
}

const char *diat_dataset_source_path(const diat_dataset *d, size_t i)
{
    return i < d->streams[SOURCES].list.count ? d->streams[SOURCES].list.paths[i] : NULL;
}

const char *diat_dataset_reference_path(const diat_dataset *d, size_t i)
{
    return i < d->streams[REFERENCES].list.count ? d->streams[REFERENCES].list.paths[i] : NULL;
}

int diat_dataset_batch_size(const diat_dataset *d)
{
    return d->batch;
}

size_t diat_dataset_skipped(const diat_dataset *d)
{
    return atomic_load(&d->skipped);
}

double diat_dataset_epoch(const diat_dataset *d)
{
    diat_dataset *m = (diat_dataset *)d; /* the lock is not part of the value */
    pthread_mutex_lock(&m->lock);
    uint64_t next = m->next;
    pthread_mutex_unlock(&m->lock);
    return (double)next * d->batch / (double)d->streams[SOURCES].list.count;
}

void diat_dataset_get_position(const diat_dataset *d, diat_dataset_position *p)
{
    diat_dataset *m = (diat_dataset *)d; /* the lock is not part of the value */
    memset(p, 0, sizeof *p);
    pthread_mutex_lock(&m->lock);
    p->words[1] = m->seed;
    p->words[2] = m->next;
    pthread_mutex_unlock(&m->lock);
    p->words[0] = POSITION_TAG;
    p->words[3] = d->streams[SOURCES].list.count;
    p->words[4] = d->streams[REFERENCES].list.count;
    p->words[5] = (uint64_t)d->batch | (uint64_t)d->flip << 32;
    p->words[6] = d->fingerprint;
}

diat_status diat_dataset_set_position(diat_dataset *d, const diat_dataset_position *p,
                                      diat_error *err)
{
    if (!d || !p) return diat_set_error(err, DIAT_ERR_ARGUMENT, "diat_dataset_set_position: NULL.");
    if (p->words[0] != POSITION_TAG || p->words[7] != 0)
        return diat_set_error(err, DIAT_ERR_FORMAT,
                              "The saved data position is not one this version wrote.");
    uint64_t batch = p->words[5] & 0xffffffffu, flip = p->words[5] >> 32;
    if (batch != (uint64_t)d->batch || flip != (uint64_t)d->flip)
        return diat_set_error(err, DIAT_ERR_ARGUMENT,
                              "The saved data position is for batches of %llu with flips %s; "
                              "this run has batches of %d with flips %s.",
                              (unsigned long long)batch, flip ? "on" : "off", d->batch,
                              d->flip ? "on" : "off");
    if (p->words[3] != d->streams[SOURCES].list.count ||
        p->words[4] != d->streams[REFERENCES].list.count || p->words[6] != d->fingerprint)
        return diat_set_error(err, DIAT_ERR_ARGUMENT,
                              "The saved data position was made on other data (%llu source and "
                              "%llu reference images; now %zu and %zu%s).",
                              (unsigned long long)p->words[3], (unsigned long long)p->words[4],
                              d->streams[SOURCES].list.count, d->streams[REFERENCES].list.count,
                              p->words[6] != d->fingerprint ? ", other file names" : "");
    pthread_mutex_lock(&d->lock);
    d->seed = p->words[1];
    restart_queue(d, p->words[2]);
    pthread_mutex_unlock(&d->lock);
    return DIAT_OK;
}

void diat_dataset_close(diat_dataset *d)
{
    if (!d) return;
    stop_workers(d);
    for (int i = 0; d->workers && i < d->threads; i++)
        for (int s = 0; s < 2; s++)
            for (int k = 0; k < 2; k++) free(d->workers[i].cache[s].perm[k]);
    free(d->workers);
    for (int i = 0; d->slots && i < d->queue_len; i++) {
        free(d->slots[i].data);
        free(d->slots[i].index);
    }
    free(d->labels);
    free(d->slots);
    for (int s = 0; s < 2; s++) {
        dataset_list_free(&d->streams[s].list);
        free(d->streams[s].bad);
        free(d->streams[s].aligned);
        free(d->streams[s].aligned_known);
    }
    diat_face_finder_free(d->finder);
    diat_context_free(d->align_ctx);
    pthread_cond_destroy(&d->changed);
    pthread_mutex_destroy(&d->lock);
    pthread_mutex_destroy(&d->warn_lock);
    pthread_mutex_destroy(&d->align_lock);
    free(d);
}

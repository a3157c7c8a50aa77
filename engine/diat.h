/* libdiat — Deep Identity-Aware Transfer of facial attributes (arXiv 1610.05586).
 *
 * Public API of the engine. The engine knows nothing of GIMP or GTK: callers
 * hand it float pixels and get float pixels back. Every function that can fail
 * returns a diat_status and, when `err` is non-NULL, fills it with a message
 * that names the file or argument at fault. The library never prints and
 * never aborts.
 */
#ifndef DIAT_H
#define DIAT_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#define DIAT_FACE_SIZE 128 /* side of the aligned face crop the networks see */
#define DIAT_MASK_SIZE 32  /* side of the soft mask e produced by the mask network */

typedef enum diat_status {
    DIAT_OK = 0,
    DIAT_ERR_ARGUMENT,  /* a caller passed something out of range */
    DIAT_ERR_IO,        /* a file could not be opened, read or written */
    DIAT_ERR_FORMAT,    /* a file is malformed, truncated or inconsistent */
    DIAT_ERR_MEMORY,    /* an allocation failed */
    DIAT_ERR_BACKEND,   /* the requested compute backend is unavailable */
    DIAT_ERR_CANCELLED, /* a progress callback asked to stop */
} diat_status;

/* Filled by a failing call; `message` is a complete sentence for a user. */
typedef struct diat_error {
    diat_status code;
    char message[512];
} diat_error;

/* Short English name of a status code ("format error", ...). */
const char *diat_status_name(diat_status status);

/* ---- compute context --------------------------------------------------- */

typedef enum diat_backend_kind {
    DIAT_BACKEND_AUTO = 0, /* CUDA when built in and a device is present, else CPU */
    DIAT_BACKEND_CPU,
    DIAT_BACKEND_CUDA,
} diat_backend_kind;

typedef struct diat_context diat_context;

/* Create a compute context. `threads` <= 0 means one per online core.
 * CUDA (or AUTO) where it is unavailable (not built, no driver, no device)
 * falls back to the CPU: the call succeeds and diat_context_notice() says
 * why, for CUDA; AUTO falls back silently. */
diat_status diat_context_new(diat_backend_kind kind, int threads, diat_context **out,
                             diat_error *err);

/* Release a context and its scratch memory. NULL is allowed. */
void diat_context_free(diat_context *ctx);

/* Name of the backend the context runs on ("cpu" or "cuda"). */
const char *diat_context_backend_name(const diat_context *ctx);

/* Number of worker threads the context uses. */
int diat_context_threads(const diat_context *ctx);

/* One line for the user when the context runs on another backend than the
 * one asked for (e.g. "CUDA unavailable (no CUDA device found); using the
 * CPU."), or NULL. The library never prints it itself. */
const char *diat_context_notice(const diat_context *ctx);

/* Wait until every operation queued on the context has finished (a no-op
 * on the CPU); for timing. */
void diat_context_synchronize(diat_context *ctx);

/* One line describing the BLAS in use, e.g. "OpenBLAS 0.3.21 SkylakeX (system
 * picked Prescott; reloaded with tuned kernels)". Loads the BLAS if needed. */
const char *diat_blas_description(void);

/* Parse "auto", "cpu" or "cuda"; returns 0 on success, -1 otherwise. */
int diat_backend_kind_parse(const char *name, diat_backend_kind *out);

/* ---- models ------------------------------------------------------------ */

typedef struct diat_model diat_model;

/* Load an inference model (transform T and mask M) from a .safetensors file.
 * The file is validated completely: shapes, dtypes, offsets, finite weights. */
diat_status diat_model_load(diat_context *ctx, const char *path, diat_model **out, diat_error *err);

/* Release a model. NULL is allowed. */
void diat_model_free(diat_model *model);

/* Metadata value for `key`, or NULL when absent. Keys are listed in
 * engine/model-format.md (attribute, direction, label, default_ratio, ...). */
const char *diat_model_metadata(const diat_model *model, const char *key);

/* Number of metadata entries, and the i-th key and value (for listing). */
size_t diat_model_metadata_count(const diat_model *model);
void diat_model_metadata_at(const diat_model *model, size_t i, const char **key,
                            const char **value);

/* The model's recommended mask ratio p, or a negative value if it has none. */
float diat_model_default_ratio(const diat_model *model);

/* Total number of learned parameters of T and M. */
size_t diat_model_parameter_count(const diat_model *model);

/* ---- images ------------------------------------------------------------ */

/* Interleaved float pixels, values nominally in [0, 1] as stored (no colour
 * conversion). channels: 1 gray, 2 gray+alpha, 3 RGB, 4 RGBA. `stride` is the
 * distance between rows in floats (>= width * channels). Alpha is never
 * modified; gray images are edited through their luminance. */
typedef struct diat_image {
    int width, height, channels;
    size_t stride;
    float *pixels;
} diat_image;

/* A rectangle in image pixels. The edit uses the square of side max(w, h)
 * centred on it; parts outside the image are padded by edge replication. */
typedef struct diat_box {
    int x, y, width, height;
} diat_box;

/* Pass as `ratio` to use the model's own binarization (e > 0.5). */
#define DIAT_RATIO_MODEL (-1.0f)

/* Progress callback: `fraction` in [0, 1]; return non-zero to cancel. */
typedef int (*diat_progress_fn)(void *user, float fraction, const char *stage);

/* ---- editing ----------------------------------------------------------- */

/* One face being edited. Holds the aligned input x, T(x) and the soft mask
 * e, so that re-rendering with another ratio p does not re-run the networks. */
typedef struct diat_edit diat_edit;

/* Run T and M on an already aligned 128x128 face: `face_rgb` is 128*128*3
 * interleaved floats in [0, 1]. */
diat_status diat_edit_new_face(diat_model *model, const float *face_rgb, diat_edit **out,
                               diat_error *err);

/* Crop the square around `box` (NULL: the whole image, which must then be
 * roughly square) out of `photo`, resample it to 128x128, run T and M. */
diat_status diat_edit_new_region(diat_model *model, const diat_image *photo, const diat_box *box,
                                 diat_progress_fn progress, void *progress_user, diat_edit **out,
                                 diat_error *err);

/* Release an edit. NULL is allowed. */
void diat_edit_free(diat_edit *edit);

/* The 128x128 result for ratio p (DIAT_RATIO_MODEL for e > 0.5, otherwise the
 * threshold is chosen so the binary mask covers a fraction p of the face).
 * Any output may be NULL: `result_rgb` 128*128*3, `mask` 128*128 (final
 * softened mask m), `soft_mask` 32*32 (e). Cheap: no network runs. */
diat_status diat_edit_render_face(const diat_edit *edit, float ratio, float *result_rgb,
                                  float *mask, float *soft_mask, diat_error *err);

/* Fraction of the 128x128 face the final mask covers for ratio p (mean m). */
float diat_edit_mask_coverage(const diat_edit *edit, float ratio);

/* Paste the edit back at full resolution: the residual m * (T(x) - x) and the
 * mask m are upsampled to the face square and added to `photo` in place.
 * Pixels where the upsampled mask is exactly 0 are not written at all.
 * `photo` must have the size of the image given to diat_edit_new_region.
 * `mask_out` (photo width*height floats, may be NULL) receives the mask,
 * 0 outside the face square. Cheap: no network runs. */
diat_status diat_edit_render(const diat_edit *edit, float ratio, diat_image *photo, float *mask_out,
                             diat_error *err);

/* ---- faces in photos ---------------------------------------------------- */

/* One face found in a photo: its box and score from the detector and 68
 * landmarks (iBUG 300-W order: 36-41 right eye of the person = left in the
 * image, 42-47 the other eye, 48-67 mouth), in photo pixels. */
typedef struct diat_face {
    float x, y, width, height; /* detector box */
    float score;               /* detector confidence in [0, 1] */
    float landmarks[68][2];    /* x, y */
} diat_face;

/* The face detector and landmark networks (shipped model files). */
typedef struct diat_face_finder diat_face_finder;

/* Load the detector and landmark model files (see models/README.md). */
diat_status diat_face_finder_load(diat_context *ctx, const char *detector_path,
                                  const char *landmarks_path, diat_face_finder **out,
                                  diat_error *err);

/* Release a face finder. NULL is allowed. */
void diat_face_finder_free(diat_face_finder *finder);

/* Find faces in `photo` (inside `region` if not NULL, e.g. the user's
 * selection; then the best face there is returned even below the usual score
 * threshold). `*faces` (free with diat_faces_free) holds `*count` faces,
 * sorted by decreasing size; zero faces is not an error. */
diat_status diat_find_faces(diat_face_finder *finder, const diat_image *photo,
                            const diat_box *region, diat_face **faces, size_t *count,
                            diat_error *err);

/* Release a face list. NULL is allowed. */
void diat_faces_free(diat_face *faces);

/* Like diat_edit_new_region, but the face is warped to the CelebA-128
 * alignment by a similarity transform from its eye and mouth landmarks
 * (rotation, scale, translation); diat_edit_render then pastes the result
 * back through the inverse warp. Faces at the border are padded. */
diat_status diat_edit_new_aligned(diat_model *model, const diat_image *photo, const diat_face *face,
                                  diat_progress_fn progress, void *progress_user, diat_edit **out,
                                  diat_error *err);

#ifdef __cplusplus
}
#endif

#endif /* DIAT_H */

/* One run of the attribute transfer on a photo held in memory: find the
 * faces, load the model, run its networks once per face (the expensive
 * part), then render any mask ratio p cheaply from the cached edits.
 *
 * Both the procedure (plugin/diat-plugin.c) and the dialog's background
 * worker (ui/attribute-dialog.c) call this, so the preview and the final
 * result come from one code path. GIMP-free (GLib and the engine only). */
#ifndef DIAT_FACE_EDIT_H
#define DIAT_FACE_EDIT_H

#include "diat.h"

#include <gio/gio.h>

G_BEGIN_DECLS

/* Smallest image side the plug-in accepts: below it no detector can see a
 * face and the 128x128 crop would be mostly invented. */
#define FACE_EDIT_MIN_IMAGE_SIDE 32

/* Which faces to edit (the PDB argument "face"). */
typedef enum {
    FACE_CHOICE_AUTO,      /* the largest face (inside the selection when there is one) */
    FACE_CHOICE_SELECTION, /* the face in the selection; the selection's square if none is seen */
    FACE_CHOICE_INDEX,     /* the n-th face found, largest first */
    FACE_CHOICE_ALL,       /* every face found */
} face_choice;

/* The faces found in one photo (or in one region of it): kept by the
 * dialog so that changing the model does not run the detector again. */
typedef struct face_list {
    diat_face *faces; /* largest first */
    size_t count;
    gboolean searched;   /* the search ran: zero faces is then a result, not "unknown" */
    gboolean has_region; /* found inside `region` rather than the whole photo */
    diat_box region;
} face_list;

void face_list_free(face_list *list);

/* What to do. */
typedef struct face_edit_request {
    const char *model_path;                     /* resolved file (model_catalog_resolve) */
    const char *detector_path, *landmarks_path; /* the face finder's files */
    diat_backend_kind backend;
    face_choice choice;
    int face_index;         /* 1-based, for FACE_CHOICE_INDEX */
    const diat_box *region; /* the selection's bounds in photo pixels, or NULL */
} face_edit_request;

/* The cached networks' outputs for the chosen faces. Rendering uses the
 * context the model was loaded on, so one prepared edit must not be
 * rendered from two threads at once (each preparation has its own context,
 * so distinct ones may). */
typedef struct face_edit {
    diat_context *ctx;
    diat_model *model;
    diat_edit **edits;
    size_t n_edits;
    int photo_width, photo_height;
    gboolean used_selection_square; /* no face seen in the selection: its square was edited */
    /* The request it was prepared for (face_edit_matches). */
    char *model_path;
    diat_backend_kind backend;
    face_choice choice;
    int face_index;
    gboolean has_region;
    diat_box region;
} face_edit;

void face_edit_free(face_edit *edit);

/* Whether `edit` was prepared for exactly this request, so that the
 * procedure can reuse what the dialog's preview already computed. */
gboolean face_edit_matches(const face_edit *edit, const face_edit_request *request);

/* Progress in [0, 1] with a short translated stage name. */
typedef void (*face_edit_progress_fn)(void *user, double fraction, const char *stage);

/* Find faces as `request` asks, unless `faces` already holds them for the
 * same region (then they are reused), and prepare the edits. `*faces` is
 * filled (or kept) even when a later step fails. `cancellable` is polled
 * between the networks. Errors are DIAT_PLUGIN_ERROR codes with messages
 * for users. */
gboolean face_edit_prepare(const face_edit_request *request, const diat_image *photo,
                           face_list *faces, face_edit_progress_fn progress, void *progress_user,
                           GCancellable *cancellable, face_edit **out, GError **error);

/* Paste every edit into `photo` (the image the edit was prepared on, or a
 * copy of it) for ratio p (DIAT_RATIO_MODEL: the model's own threshold),
 * and write the combined mask (the maximum over faces; 0 where no pixel was
 * touched) into `mask` (photo width * height floats). `scratch` is NULL or
 * width * height floats used when there are several faces. */
gboolean face_edit_render(const face_edit *edit, float ratio, diat_image *photo, float *mask,
                          float *scratch, GError **error);

/* The bounding rectangle of the nonzero pixels of a width * height mask;
 * FALSE when the mask is all zero. */
gboolean face_edit_mask_bounds(const float *mask, int width, int height, diat_box *bounds);

/* Turn an engine status into a GError with a user-facing message.
 * `what` names the file or step ("the model file “x”"). */
void face_edit_set_engine_error(GError **error, const diat_error *engine_error, int code,
                                const char *prefix);

G_END_DECLS

#endif

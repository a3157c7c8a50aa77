/* The attribute transfer on an in-memory photo (see face-edit.h). */
#include "face-edit.h"

#include "plugin-errors.h"

#include <glib/gi18n-lib.h>
#include <string.h>

G_DEFINE_QUARK(diat - plugin - error - quark, diat_plugin_error)

void face_list_free(face_list *list)
{
    if (!list) return;
    diat_faces_free(list->faces);
    memset(list, 0, sizeof *list);
}

void face_edit_free(face_edit *edit)
{
    if (!edit) return;
    for (size_t i = 0; i < edit->n_edits; i++) diat_edit_free(edit->edits[i]);
    g_free(edit->edits);
    diat_model_free(edit->model);
    diat_context_free(edit->ctx);
    g_free(edit->model_path);
    g_free(edit);
}

gboolean face_edit_matches(const face_edit *edit, const face_edit_request *request)
{
    if (!edit || g_strcmp0(edit->model_path, request->model_path) != 0 ||
        edit->backend != request->backend || edit->choice != request->choice)
        return FALSE;
    if (request->choice == FACE_CHOICE_INDEX && edit->face_index != request->face_index)
        return FALSE;
    if ((request->region != NULL) != edit->has_region) return FALSE;
    return !request->region || memcmp(&edit->region, request->region, sizeof edit->region) == 0;
}

void face_edit_set_engine_error(GError **error, const diat_error *engine_error, int code,
                                const char *prefix)
{
    if (engine_error->code == DIAT_ERR_CANCELLED) {
        g_set_error_literal(error, DIAT_PLUGIN_ERROR, DIAT_PLUGIN_ERROR_CANCELLED, _("Cancelled."));
        return;
    }
    /* The engine's own sentence names the file and the problem; it is
     * English, so the translated prefix says what the plug-in was doing. */
    g_set_error(error, DIAT_PLUGIN_ERROR, code, "%s %s", prefix, engine_error->message);
}

/* Forwards the engine's progress into a slice [from, to] of ours, and turns
 * a cancelled GCancellable into the engine's "stop" answer. */
typedef struct progress_relay {
    face_edit_progress_fn progress;
    void *user;
    GCancellable *cancellable;
    double from, to;
    const char *stage;
} progress_relay;

static int relay_engine_progress(void *user, float fraction, const char *stage)
{
    progress_relay *relay = user;
    (void)stage; /* the engine's stage names are English; ours are translated */
    if (relay->progress)
        relay->progress(relay->user, relay->from + (relay->to - relay->from) * fraction,
                        relay->stage);
    return relay->cancellable && g_cancellable_is_cancelled(relay->cancellable);
}

static gboolean check_cancelled(GCancellable *cancellable, GError **error)
{
    if (cancellable && g_cancellable_is_cancelled(cancellable)) {
        g_set_error_literal(error, DIAT_PLUGIN_ERROR, DIAT_PLUGIN_ERROR_CANCELLED, _("Cancelled."));
        return TRUE;
    }
    return FALSE;
}

static gboolean same_region(const face_list *faces, const diat_box *region)
{
    if (!region) return !faces->has_region;
    return faces->has_region && faces->region.x == region->x && faces->region.y == region->y &&
           faces->region.width == region->width && faces->region.height == region->height;
}

/* The detector and landmark networks run on their own CPU context: they
 * are small, and the model's context may be a GPU one. */
static gboolean find_faces(const face_edit_request *request, const diat_image *photo,
                           const diat_box *region, face_list *faces, GError **error)
{
    if (!request->detector_path || !request->landmarks_path) {
        g_set_error(error, DIAT_PLUGIN_ERROR, DIAT_PLUGIN_ERROR_FACE_FINDER,
                    _("The face detector's model files (face-detector-tiny.safetensors and "
                      "face-landmarks-68.safetensors) were not found; reinstall the plug-in "
                      "or select the face and choose “Face in the selection”."));
        return FALSE;
    }
    diat_error err = {0};
    diat_context *ctx = NULL;
    diat_face_finder *finder = NULL;
    diat_face *found = NULL;
    size_t count = 0;
    gboolean ok = FALSE;
    if (diat_context_new(DIAT_BACKEND_CPU, 0, &ctx, &err) != DIAT_OK ||
        diat_face_finder_load(ctx, request->detector_path, request->landmarks_path, &finder,
                              &err) != DIAT_OK) {
        face_edit_set_engine_error(error, &err, DIAT_PLUGIN_ERROR_FACE_FINDER,
                                   _("The face detector could not be loaded:"));
    } else if (diat_find_faces(finder, photo, region, &found, &count, &err) != DIAT_OK) {
        face_edit_set_engine_error(error, &err, DIAT_PLUGIN_ERROR_ENGINE,
                                   _("Looking for faces failed:"));
    } else {
        face_list_free(faces);
        faces->faces = found;
        faces->count = count;
        faces->searched = TRUE;
        faces->has_region = region != NULL;
        if (region) faces->region = *region;
        ok = TRUE;
    }
    diat_face_finder_free(finder);
    diat_context_free(ctx);
    return ok;
}

static gboolean load_model(const face_edit_request *request, face_edit *edit, GError **error)
{
    diat_error err = {0};
    /* A backend that is unavailable falls back to the CPU (with a notice the
     * procedure shows); what fails here is the context itself. */
    if (diat_context_new(request->backend, 0, &edit->ctx, &err) != DIAT_OK) {
        face_edit_set_engine_error(error, &err, DIAT_PLUGIN_ERROR_ENGINE,
                                   _("The compute backend could not be started:"));
        return FALSE;
    }
    if (diat_model_load(edit->ctx, request->model_path, &edit->model, &err) != DIAT_OK) {
        char *prefix =
            g_strdup_printf(_("The model file “%s” cannot be used:"), request->model_path);
        face_edit_set_engine_error(error, &err,
                                   err.code == DIAT_ERR_MEMORY ? DIAT_PLUGIN_ERROR_ENGINE
                                                               : DIAT_PLUGIN_ERROR_BAD_MODEL,
                                   prefix);
        g_free(prefix);
        return FALSE;
    }
    return TRUE;
}

gboolean face_edit_prepare(const face_edit_request *request, const diat_image *photo,
                           face_list *faces, face_edit_progress_fn progress, void *progress_user,
                           GCancellable *cancellable, face_edit **out, GError **error)
{
    *out = NULL;
    if (photo->width < FACE_EDIT_MIN_IMAGE_SIDE || photo->height < FACE_EDIT_MIN_IMAGE_SIDE) {
        g_set_error(error, DIAT_PLUGIN_ERROR, DIAT_PLUGIN_ERROR_IMAGE_TOO_SMALL,
                    _("The image is only %d × %d pixels; a face needs at least %d × %d."),
                    photo->width, photo->height, FACE_EDIT_MIN_IMAGE_SIDE,
                    FACE_EDIT_MIN_IMAGE_SIDE);
        return FALSE;
    }
    if (request->choice == FACE_CHOICE_SELECTION && !request->region) {
        g_set_error_literal(error, DIAT_PLUGIN_ERROR, DIAT_PLUGIN_ERROR_SELECTION_EMPTY,
                            _("The selection is empty. Select the face first, or choose "
                              "“Largest face” to find it automatically."));
        return FALSE;
    }
    /* Only "auto" and "selection" look inside the selection: "index" and
     * "all" number the faces of the whole layer. */
    const diat_box *region =
        request->choice == FACE_CHOICE_AUTO || request->choice == FACE_CHOICE_SELECTION
            ? request->region
            : NULL;
    if (!faces->searched || !same_region(faces, region)) {
        if (progress) progress(progress_user, 0.0, _("Looking for faces"));
        if (!find_faces(request, photo, region, faces, error)) return FALSE;
    }
    if (check_cancelled(cancellable, error)) return FALSE;

    size_t first = 0, n_chosen = faces->count ? 1 : 0;
    switch (request->choice) {
    case FACE_CHOICE_AUTO:
        if (faces->count == 0) {
            g_set_error_literal(error, DIAT_PLUGIN_ERROR, DIAT_PLUGIN_ERROR_NO_FACE,
                                region ? _("No face was found in the selection.")
                                       : _("No face was found in the layer. Select the face "
                                           "and choose “Face in the selection”."));
            return FALSE;
        }
        break;
    case FACE_CHOICE_SELECTION: break; /* no face seen: the selection's square is edited below */
    case FACE_CHOICE_INDEX:
        if (request->face_index < 1 || (size_t)request->face_index > faces->count) {
            if (faces->count == 0)
                g_set_error_literal(error, DIAT_PLUGIN_ERROR, DIAT_PLUGIN_ERROR_NO_FACE,
                                    _("No face was found in the layer."));
            else
                g_set_error(error, DIAT_PLUGIN_ERROR, DIAT_PLUGIN_ERROR_BAD_FACE_INDEX,
                            ngettext("Face %d was asked for, but only %zu face was found.",
                                     "Face %d was asked for, but only %zu faces were found.",
                                     faces->count),
                            request->face_index, faces->count);
            return FALSE;
        }
        first = (size_t)request->face_index - 1;
        break;
    case FACE_CHOICE_ALL:
        if (faces->count == 0) {
            g_set_error_literal(error, DIAT_PLUGIN_ERROR, DIAT_PLUGIN_ERROR_NO_FACE,
                                _("No face was found in the layer."));
            return FALSE;
        }
        n_chosen = faces->count;
        break;
    }

    face_edit *edit = g_new0(face_edit, 1);
    edit->photo_width = photo->width;
    edit->photo_height = photo->height;
    edit->model_path = g_strdup(request->model_path);
    edit->backend = request->backend;
    edit->choice = request->choice;
    edit->face_index = request->face_index;
    edit->has_region = request->region != NULL;
    if (request->region) edit->region = *request->region;
    if (progress) progress(progress_user, 0.4, _("Loading the model"));
    if (!load_model(request, edit, error)) {
        face_edit_free(edit);
        return FALSE;
    }
    size_t n_edits = n_chosen ? n_chosen : 1;
    edit->edits = g_new0(diat_edit *, n_edits);
    for (size_t i = 0; i < n_edits; i++) {
        progress_relay relay = {progress,
                                progress_user,
                                cancellable,
                                0.5 + 0.5 * (double)i / (double)n_edits,
                                0.5 + 0.5 * (double)(i + 1) / (double)n_edits,
                                _("Running the networks")};
        diat_error err = {0};
        diat_status st;
        if (n_chosen)
            st = diat_edit_new_aligned(edit->model, photo, &faces->faces[first + i],
                                       relay_engine_progress, &relay, &edit->edits[i], &err);
        else {
            edit->used_selection_square = TRUE;
            st = diat_edit_new_region(edit->model, photo, request->region, relay_engine_progress,
                                      &relay, &edit->edits[i], &err);
        }
        if (st != DIAT_OK) {
            face_edit_set_engine_error(error, &err, DIAT_PLUGIN_ERROR_ENGINE,
                                       _("Editing the face failed:"));
            face_edit_free(edit);
            return FALSE;
        }
        edit->n_edits++;
    }
    if (progress) progress(progress_user, 1.0, _("Done"));
    *out = edit;
    return TRUE;
}

gboolean face_edit_render(const face_edit *edit, float ratio, diat_image *photo, float *mask,
                          float *scratch, GError **error)
{
    const size_t pixels = (size_t)photo->width * (size_t)photo->height;
    for (size_t i = 0; i < edit->n_edits; i++) {
        diat_error err = {0};
        /* The first face writes the mask directly; later ones go through
         * `scratch` and are merged by maximum, so overlapping faces keep the
         * stronger mask. */
        float *target = i == 0 || !scratch ? mask : scratch;
        if (diat_edit_render(edit->edits[i], ratio, photo, target, &err) != DIAT_OK) {
            face_edit_set_engine_error(error, &err, DIAT_PLUGIN_ERROR_ENGINE,
                                       _("Rendering the edit failed:"));
            return FALSE;
        }
        if (target != mask)
            for (size_t k = 0; k < pixels; k++)
                if (scratch[k] > mask[k]) mask[k] = scratch[k];
    }
    return TRUE;
}

gboolean face_edit_mask_bounds(const float *mask, int width, int height, diat_box *bounds)
{
    int x0 = width, y0 = height, x1 = -1, y1 = -1;
    for (int y = 0; y < height; y++) {
        const float *row = mask + (size_t)y * width;
        int left = -1, right = -1;
        for (int x = 0; x < width; x++)
            if (row[x] > 0.0f) {
                if (left < 0) left = x;
                right = x;
            }
        if (left < 0) continue;
        if (left < x0) x0 = left;
        if (right > x1) x1 = right;
        if (y < y0) y0 = y;
        y1 = y;
    }
    if (x1 < 0) return FALSE;
    *bounds = (diat_box){x0, y0, x1 - x0 + 1, y1 - y0 + 1};
    return TRUE;
}

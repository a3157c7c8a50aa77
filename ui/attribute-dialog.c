/* The Attribute Transfer dialog (see attribute-dialog.h).
 *
 * Threads: the GTK main thread owns every field of attribute_dialog. A
 * background job (GTask) gets its own copies of what it reads — the
 * request, the cached faces — plus the read-only original pixels, and
 * creates its own engine context and model, so nothing is shared while it
 * runs. Its result is adopted on the main thread only if no newer job was
 * started meanwhile (the generation counter); superseded jobs are cancelled
 * and their results dropped. */
#include "attribute-dialog.h"

#include "model-catalog.h"
#include "plugin-errors.h"
#include "procedure-settings.h"

#include <libgimp/gimpui.h>

#include <glib/gi18n-lib.h>
#include <stdlib.h>
#include <string.h>

/* Wait this long after the last change of model, face or backend before
 * starting the networks, so that scrolling through a list starts one job. */
#define RECOMPUTE_DELAY_MS 150

/* The mask overlay: a blue that stands out on skin and against the red of
 * the test fixture, at most half opaque so the result shows through. */
static const float kOverlayColour[3] = {0.15f, 0.45f, 1.0f};
#define OVERLAY_OPACITY 0.55f

enum { MODEL_COLUMN_ID, MODEL_COLUMN_LABEL, MODEL_N_COLUMNS };

typedef struct attribute_dialog {
    GimpProcedureConfig *config;
    const layer_pixels *original; /* the procedure's pixels, never written */
    layer_pixels work;            /* the original with the current edit rendered in */
    float *mask;                  /* width * height: the current mask */
    float *scratch;               /* width * height, for several faces */
    diat_box dirty;               /* where `work` differs from the original */
    gboolean has_dirty;
    const diat_box *selection;
    char **model_dirs;
    char *detector_path, *landmarks_path;
    face_list *faces; /* the procedure's cache */
    face_edit *edit;  /* the edit shown, or NULL */
    guint generation; /* bumped by every new job */
    GCancellable *cancellable;
    int pending_jobs;
    guint recompute_source;

    GtkWidget *window, *preview, *status_label, *spinner, *model_combo, *face_combo;
    GtkListStore *model_store;
    gboolean syncing_widgets; /* set while we fill combos, so they do not write back */
} attribute_dialog;

typedef struct prepare_job {
    attribute_dialog *dialog;
    guint generation;
    char *model_path;
    face_edit_request request;
    diat_box region;
    face_list faces;
    face_edit *edit;
    GError *error;
} prepare_job;

/* ---- helpers -------------------------------------------------------------- */

static float current_ratio(attribute_dialog *d)
{
    gboolean use_model = TRUE;
    double ratio = RATIO_DEFAULT;
    g_object_get(d->config, ARG_USE_MODEL_RATIO, &use_model, ARG_RATIO, &ratio, NULL);
    return use_model ? DIAT_RATIO_MODEL : (float)ratio;
}

static void set_status(attribute_dialog *d, gboolean busy, const char *text)
{
    gtk_label_set_text(GTK_LABEL(d->status_label), text);
    if (busy) {
        gtk_widget_show(d->spinner);
        gtk_spinner_start(GTK_SPINNER(d->spinner));
    } else {
        gtk_spinner_stop(GTK_SPINNER(d->spinner));
        gtk_widget_hide(d->spinner);
    }
}

/* A copy the engine's diat_faces_free can release (it uses free()). */
static void copy_faces(const face_list *from, face_list *to)
{
    *to = *from;
    to->faces = NULL;
    if (from->count) {
        to->faces = malloc(from->count * sizeof *to->faces);
        if (!to->faces) {
            memset(to, 0, sizeof *to); /* the job searches again */
            return;
        }
        memcpy(to->faces, from->faces, from->count * sizeof *to->faces);
    }
}

/* ---- the preview ------------------------------------------------------------ */

static guchar to_byte(float value)
{
    return (guchar)(CLAMP(value, 0.0f, 1.0f) * 255.0f + 0.5f);
}

/* Draw what the preview's area shows of the result: nearest pixels of our
 * float buffers, mapped through the preview's own zoom and scroll. */
static void draw_preview(GimpPreview *preview, attribute_dialog *d)
{
    int width = 0, height = 0;
    gimp_preview_get_size(preview, &width, &height);
    if (width <= 0 || height <= 0) return;
    gboolean show_mask = FALSE, split = FALSE;
    g_object_get(d->config, ARG_SHOW_MASK, &show_mask, ARG_SPLIT_VIEW, &split, NULL);

    const diat_image *before = &d->original->image, *after = &d->work.image;
    const int channels = before->channels;
    int *source_x = g_new(int, width), *source_y = g_new(int, height);
    for (int x = 0; x < width; x++) {
        int sx, sy;
        gimp_preview_untransform(preview, x, 0, &sx, &sy);
        source_x[x] = CLAMP(sx, 0, before->width - 1);
    }
    for (int y = 0; y < height; y++) {
        int sx, sy;
        gimp_preview_untransform(preview, 0, y, &sx, &sy);
        source_y[y] = CLAMP(sy, 0, before->height - 1);
    }
    const int split_x = split ? width / 2 : -1;
    guchar *rgba = g_new(guchar, (size_t)width * height * 4);
    for (int y = 0; y < height; y++) {
        guchar *out = rgba + (size_t)y * width * 4;
        for (int x = 0; x < width; x++, out += 4) {
            if (x == split_x) { /* the dividing line */
                out[0] = out[1] = out[2] = out[3] = 255;
                continue;
            }
            const gboolean show_before = x < split_x;
            const diat_image *image = show_before ? before : after;
            const float *p = image->pixels + (size_t)source_y[y] * image->stride +
                             (size_t)source_x[x] * channels;
            float rgb[3] = {p[0], channels >= 3 ? p[1] : p[0], channels >= 3 ? p[2] : p[0]};
            if (show_mask && !show_before) {
                const float m = d->mask[(size_t)source_y[y] * before->width + source_x[x]];
                const float k = OVERLAY_OPACITY * CLAMP(m, 0.0f, 1.0f);
                for (int c = 0; c < 3; c++) rgb[c] = rgb[c] * (1.0f - k) + kOverlayColour[c] * k;
            }
            out[0] = to_byte(rgb[0]);
            out[1] = to_byte(rgb[1]);
            out[2] = to_byte(rgb[2]);
            out[3] = to_byte(p[channels - 1]);
        }
    }
    gimp_preview_area_draw(GIMP_PREVIEW_AREA(gimp_preview_get_area(preview)), 0, 0, width, height,
                           GIMP_RGBA_IMAGE, rgba, width * 4);
    g_free(rgba);
    g_free(source_x);
    g_free(source_y);
}

/* Put the original back where the last render changed `work`. */
static void restore_work(attribute_dialog *d)
{
    if (!d->has_dirty) return;
    const diat_image *from = &d->original->image;
    diat_image *to = &d->work.image;
    const size_t row_floats = (size_t)d->dirty.width * from->channels;
    for (int y = d->dirty.y; y < d->dirty.y + d->dirty.height; y++) {
        const size_t offset = (size_t)y * from->stride + (size_t)d->dirty.x * from->channels;
        memcpy(to->pixels + offset, from->pixels + offset, row_floats * sizeof(float));
        memset(d->mask + (size_t)y * from->width + d->dirty.x, 0, d->dirty.width * sizeof(float));
    }
    d->has_dirty = FALSE;
}

static void describe_result(attribute_dialog *d, float ratio)
{
    double coverage = 0.0;
    for (size_t i = 0; i < d->edit->n_edits; i++)
        coverage += diat_edit_mask_coverage(d->edit->edits[i], ratio);
    coverage /= (double)d->edit->n_edits;
    char *faces =
        d->edit->used_selection_square
            ? g_strdup(_("No face seen in the selection; its square is edited."))
            : g_strdup_printf(ngettext("%zu face found.", "%zu faces found.", d->faces->count),
                              d->faces->count);
    char *text =
        g_strdup_printf(_("%s The mask covers %.0f%% of the face."), faces, 100.0 * coverage);
    set_status(d, FALSE, text);
    g_free(text);
    g_free(faces);
}

/* Cheap: render the cached edit for the current p. No network runs. */
static void rerender(attribute_dialog *d)
{
    restore_work(d);
    if (d->edit) {
        const float ratio = current_ratio(d);
        GError *error = NULL;
        if (d->edit->n_edits > 1 && !d->scratch)
            d->scratch = g_try_new(float, (size_t)d->work.image.width * d->work.image.height);
        if (face_edit_render(d->edit, ratio, &d->work.image, d->mask, d->scratch, &error)) {
            d->has_dirty = face_edit_mask_bounds(d->mask, d->work.image.width, d->work.image.height,
                                                 &d->dirty);
            describe_result(d, ratio);
        } else {
            set_status(d, FALSE, error->message);
            g_error_free(error);
            /* A failed render may have written part of a face. */
            d->dirty = (diat_box){0, 0, d->work.image.width, d->work.image.height};
            d->has_dirty = TRUE;
            restore_work(d);
        }
    }
    gimp_preview_invalidate(GIMP_PREVIEW(d->preview));
}

/* ---- the face picker -------------------------------------------------------- */

static void fill_face_combo(attribute_dialog *d)
{
    int face_index = 1;
    g_object_get(d->config, ARG_FACE_INDEX, &face_index, NULL);
    d->syncing_widgets = TRUE;
    GtkComboBoxText *combo = GTK_COMBO_BOX_TEXT(d->face_combo);
    gtk_combo_box_text_remove_all(combo);
    const gboolean whole_layer_faces = d->faces->searched && !d->faces->has_region;
    const size_t count = whole_layer_faces ? d->faces->count : 0;
    for (size_t i = 0; i < count; i++) {
        const diat_face *face = &d->faces->faces[i];
        char *text = g_strdup_printf(_("%zu: %d × %d px at %d, %d"), i + 1, (int)face->width,
                                     (int)face->height, (int)face->x, (int)face->y);
        gtk_combo_box_text_append_text(combo, text);
        g_free(text);
    }
    if (count == 0) {
        char *text = g_strdup_printf(_("Face %d"), face_index);
        gtk_combo_box_text_append_text(combo, text);
        g_free(text);
        gtk_combo_box_set_active(GTK_COMBO_BOX(combo), 0);
    } else {
        gtk_combo_box_set_active(GTK_COMBO_BOX(combo), CLAMP(face_index, 1, (int)count) - 1);
    }
    d->syncing_widgets = FALSE;
    const gboolean by_number =
        gimp_procedure_config_get_choice_id(d->config, ARG_FACE) == FACE_CHOICE_INDEX;
    gtk_widget_set_sensitive(d->face_combo, by_number && count > 1);
}

static void face_combo_changed(GtkComboBox *combo, attribute_dialog *d)
{
    if (d->syncing_widgets) return;
    const int active = gtk_combo_box_get_active(combo);
    if (active >= 0 && d->faces->count > 0)
        g_object_set(d->config, ARG_FACE_INDEX, active + 1, NULL);
}

/* ---- background preparation ------------------------------------------------- */

static void prepare_job_free(prepare_job *job)
{
    face_edit_free(job->edit);
    face_list_free(&job->faces);
    g_clear_error(&job->error);
    g_free(job->model_path);
    g_free(job);
}

static void prepare_in_thread(GTask *task, gpointer source, gpointer task_data,
                              GCancellable *cancellable)
{
    (void)source;
    prepare_job *job = task_data;
    face_edit_prepare(&job->request, &job->dialog->original->image, &job->faces, NULL, NULL,
                      cancellable, &job->edit, &job->error);
    g_task_return_boolean(task, TRUE);
}

static void prepare_done(GObject *source, GAsyncResult *result, gpointer user_data)
{
    (void)source;
    (void)user_data;
    prepare_job *job = g_task_get_task_data(G_TASK(result));
    attribute_dialog *d = job->dialog;
    d->pending_jobs--;
    if (job->generation != d->generation) return; /* superseded: freed with the task */
    /* The faces are worth keeping even when the model failed. */
    if (job->faces.searched) {
        face_list_free(d->faces);
        *d->faces = job->faces;
        memset(&job->faces, 0, sizeof job->faces);
        fill_face_combo(d);
    }
    g_clear_pointer(&d->edit, face_edit_free);
    if (job->error) {
        restore_work(d);
        set_status(d, FALSE, job->error->message);
        gimp_preview_invalidate(GIMP_PREVIEW(d->preview));
        return;
    }
    d->edit = job->edit;
    job->edit = NULL;
    rerender(d);
}

static gboolean start_recompute(gpointer user_data)
{
    attribute_dialog *d = user_data;
    d->recompute_source = 0;
    if (d->cancellable) g_cancellable_cancel(d->cancellable);
    g_clear_object(&d->cancellable);
    d->generation++;

    procedure_settings settings;
    procedure_settings_read(d->config, &settings);
    GError *error = NULL;
    char *model_path = model_catalog_resolve(d->model_dirs, settings.model, &error);
    if (!model_path) {
        g_clear_pointer(&d->edit, face_edit_free);
        restore_work(d);
        set_status(d, FALSE, error->message);
        g_error_free(error);
        gimp_preview_invalidate(GIMP_PREVIEW(d->preview));
        procedure_settings_clear(&settings);
        return G_SOURCE_REMOVE;
    }
    prepare_job *job = g_new0(prepare_job, 1);
    job->dialog = d;
    job->generation = d->generation;
    job->model_path = model_path;
    if (d->selection) job->region = *d->selection;
    job->request = (face_edit_request){.model_path = job->model_path,
                                       .detector_path = d->detector_path,
                                       .landmarks_path = d->landmarks_path,
                                       .backend = settings.backend,
                                       .choice = settings.face,
                                       .face_index = settings.face_index,
                                       .region = d->selection ? &job->region : NULL};
    procedure_settings_clear(&settings);
    copy_faces(d->faces, &job->faces);

    d->cancellable = g_cancellable_new();
    GTask *task = g_task_new(NULL, d->cancellable, prepare_done, NULL);
    g_task_set_task_data(task, job, (GDestroyNotify)prepare_job_free);
    d->pending_jobs++;
    set_status(d, TRUE,
               d->faces->searched ? _("Running the model…")
                                  : _("Looking for faces and running the model…"));
    g_task_run_in_thread(task, prepare_in_thread);
    g_object_unref(task);
    return G_SOURCE_REMOVE;
}

static void schedule_recompute(attribute_dialog *d)
{
    if (d->recompute_source) g_source_remove(d->recompute_source);
    d->recompute_source = g_timeout_add(RECOMPUTE_DELAY_MS, start_recompute, d);
}

static void config_changed(GObject *config, GParamSpec *pspec, attribute_dialog *d)
{
    (void)config;
    const char *name = g_param_spec_get_name(pspec);
    if (!strcmp(name, ARG_MODEL) || !strcmp(name, ARG_BACKEND) || !strcmp(name, ARG_FACE) ||
        !strcmp(name, ARG_FACE_INDEX)) {
        if (!strcmp(name, ARG_FACE)) fill_face_combo(d);
        schedule_recompute(d);
    } else if (!strcmp(name, ARG_RATIO) || !strcmp(name, ARG_USE_MODEL_RATIO)) {
        rerender(d);
    } else if (!strcmp(name, ARG_SHOW_MASK) || !strcmp(name, ARG_SPLIT_VIEW)) {
        gimp_preview_invalidate(GIMP_PREVIEW(d->preview));
    }
}

/* ---- the model picker ------------------------------------------------------- */

static void model_combo_changed(GtkComboBox *combo, attribute_dialog *d)
{
    if (d->syncing_widgets) return;
    GtkTreeIter iter;
    if (!gtk_combo_box_get_active_iter(combo, &iter)) return;
    char *id = NULL;
    gtk_tree_model_get(GTK_TREE_MODEL(d->model_store), &iter, MODEL_COLUMN_ID, &id, -1);
    if (id) g_object_set(d->config, ARG_MODEL, id, NULL);
    g_free(id);
}

/* The models found, plus the configured one when it is a path outside the
 * search folders; the configured model is made the active row. */
static GtkWidget *build_model_picker(attribute_dialog *d)
{
    d->model_store = gtk_list_store_new(MODEL_N_COLUMNS, G_TYPE_STRING, G_TYPE_STRING);
    GPtrArray *models = model_catalog_scan(d->model_dirs);
    char *configured = NULL;
    g_object_get(d->config, ARG_MODEL, &configured, NULL);
    int active = -1;
    for (guint i = 0; i < models->len; i++) {
        const model_entry *entry = models->pdata[i];
        gtk_list_store_insert_with_values(d->model_store, NULL, -1, MODEL_COLUMN_ID, entry->name,
                                          MODEL_COLUMN_LABEL, model_entry_label(entry), -1);
        if (configured && (!strcmp(configured, entry->name) || !strcmp(configured, entry->path)))
            active = (int)i;
    }
    if (configured && *configured && active < 0) {
        char *base = g_path_get_basename(configured);
        gtk_list_store_insert_with_values(d->model_store, NULL, -1, MODEL_COLUMN_ID, configured,
                                          MODEL_COLUMN_LABEL, base, -1);
        active = (int)models->len;
        g_free(base);
    }
    if (active < 0 && models->len > 0) {
        /* Nothing chosen yet: show (and use) the first model. */
        active = 0;
        g_object_set(d->config, ARG_MODEL, ((model_entry *)models->pdata[0])->name, NULL);
    }
    g_free(configured);
    g_ptr_array_unref(models);

    d->model_combo = gtk_combo_box_new_with_model(GTK_TREE_MODEL(d->model_store));
    GtkCellRenderer *text = gtk_cell_renderer_text_new();
    g_object_set(text, "ellipsize", PANGO_ELLIPSIZE_END, NULL);
    gtk_cell_layout_pack_start(GTK_CELL_LAYOUT(d->model_combo), text, TRUE);
    gtk_cell_layout_add_attribute(GTK_CELL_LAYOUT(d->model_combo), text, "text",
                                  MODEL_COLUMN_LABEL);
    gtk_combo_box_set_active(GTK_COMBO_BOX(d->model_combo), active);
    gtk_widget_set_sensitive(d->model_combo, active >= 0);
    g_signal_connect(d->model_combo, "changed", G_CALLBACK(model_combo_changed), d);

    GtkWidget *row = gtk_box_new(GTK_ORIENTATION_HORIZONTAL, 6);
    GtkWidget *label = gtk_label_new_with_mnemonic(_("_Attribute:"));
    gtk_label_set_mnemonic_widget(GTK_LABEL(label), d->model_combo);
    gtk_box_pack_start(GTK_BOX(row), label, FALSE, FALSE, 0);
    gtk_box_pack_start(GTK_BOX(row), d->model_combo, TRUE, TRUE, 0);
    gtk_widget_show_all(row);
    return row;
}

/* ---- building and running ----------------------------------------------------- */

static int child_position(GtkWidget *box, GtkWidget *child)
{
    int position = -1;
    gtk_container_child_get(GTK_CONTAINER(box), child, "position", &position, NULL);
    return position;
}

static GtkWidget *build_dialog(attribute_dialog *d, GimpProcedure *procedure,
                               GimpDrawable *drawable)
{
    GtkWidget *window = gimp_procedure_dialog_new(procedure, d->config, _("Attribute Transfer"));
    GimpProcedureDialog *dialog = GIMP_PROCEDURE_DIALOG(window);

    /* Right column: the settings. */
    GtkWidget *ratio = gimp_procedure_dialog_get_spin_scale(dialog, ARG_RATIO, 1.0);
    GtkWidget *controls =
        gimp_procedure_dialog_fill_box(dialog, "diat-controls", ARG_USE_MODEL_RATIO, ARG_RATIO,
                                       ARG_FACE, ARG_OUTPUT, ARG_BACKEND, NULL);
    gtk_box_set_spacing(GTK_BOX(controls), 6);
    gimp_procedure_dialog_set_sensitive(dialog, ARG_RATIO, TRUE, G_OBJECT(d->config),
                                        ARG_USE_MODEL_RATIO, TRUE);

    GtkWidget *model_row = build_model_picker(d);
    gtk_box_pack_start(GTK_BOX(controls), model_row, FALSE, FALSE, 0);
    gtk_box_reorder_child(GTK_BOX(controls), model_row, 0);

    d->face_combo = gtk_combo_box_text_new();
    g_signal_connect(d->face_combo, "changed", G_CALLBACK(face_combo_changed), d);
    GtkWidget *face_row = gtk_box_new(GTK_ORIENTATION_HORIZONTAL, 6);
    GtkWidget *face_label = gtk_label_new_with_mnemonic(_("Face _number:"));
    gtk_label_set_mnemonic_widget(GTK_LABEL(face_label), d->face_combo);
    gtk_box_pack_start(GTK_BOX(face_row), face_label, FALSE, FALSE, 0);
    gtk_box_pack_start(GTK_BOX(face_row), d->face_combo, TRUE, TRUE, 0);
    gtk_widget_show_all(face_row);
    GtkWidget *face_widget = gimp_procedure_dialog_get_widget(dialog, ARG_FACE, G_TYPE_NONE);
    gtk_box_pack_start(GTK_BOX(controls), face_row, FALSE, FALSE, 0);
    gtk_box_reorder_child(GTK_BOX(controls), face_row, child_position(controls, face_widget) + 1);

    GtkWidget *status_row = gtk_box_new(GTK_ORIENTATION_HORIZONTAL, 6);
    d->spinner = gtk_spinner_new();
    d->status_label = gtk_label_new(NULL);
    gtk_label_set_line_wrap(GTK_LABEL(d->status_label), TRUE);
    gtk_label_set_max_width_chars(GTK_LABEL(d->status_label), 36);
    gtk_label_set_xalign(GTK_LABEL(d->status_label), 0.0f);
    gtk_box_pack_start(GTK_BOX(status_row), d->spinner, FALSE, FALSE, 0);
    gtk_box_pack_start(GTK_BOX(status_row), d->status_label, TRUE, TRUE, 0);
    gtk_widget_show(d->status_label);
    gtk_widget_show(status_row);
    gtk_box_pack_end(GTK_BOX(controls), status_row, FALSE, FALSE, 0);

    /* Left column: the preview and its two view toggles. */
    d->preview = gimp_zoom_preview_new_from_drawable(drawable);
    /* GIMP's previews default to 200 pixels; a face deserves more room. */
    GtkCssProvider *css = gtk_css_provider_new();
    gtk_css_provider_load_from_data(css, "* { -GimpPreview-size: 360; }", -1, NULL);
    gtk_style_context_add_provider(gtk_widget_get_style_context(d->preview),
                                   GTK_STYLE_PROVIDER(css),
                                   GTK_STYLE_PROVIDER_PRIORITY_APPLICATION);
    g_object_unref(css);
    g_signal_connect(d->preview, "invalidated", G_CALLBACK(draw_preview), d);
    GtkWidget *preview_column = gimp_procedure_dialog_fill_box(dialog, "diat-preview-column",
                                                               ARG_SHOW_MASK, ARG_SPLIT_VIEW, NULL);
    gtk_box_pack_start(GTK_BOX(preview_column), d->preview, TRUE, TRUE, 0);
    gtk_box_reorder_child(GTK_BOX(preview_column), d->preview, 0);
    gtk_widget_show(d->preview);

    GtkWidget *main_box = gimp_procedure_dialog_fill_box(dialog, "diat-main", "diat-preview-column",
                                                         "diat-controls", NULL);
    gtk_orientable_set_orientation(GTK_ORIENTABLE(main_box), GTK_ORIENTATION_HORIZONTAL);
    gtk_box_set_spacing(GTK_BOX(main_box), 12);
    gimp_procedure_dialog_fill(dialog, "diat-main", NULL);

    /* p is what one adjusts while watching the preview: when it is in use it
     * takes the focus, so the arrow keys move it at once, and Enter in it
     * still accepts the dialog as everywhere in GIMP. */
    gtk_entry_set_activates_default(GTK_ENTRY(ratio), TRUE);
    gboolean use_model = TRUE;
    g_object_get(d->config, ARG_USE_MODEL_RATIO, &use_model, NULL);
    if (!use_model) gtk_widget_grab_focus(ratio);
    return window;
}

gboolean attribute_dialog_run(GimpProcedure *procedure, GimpProcedureConfig *config,
                              GimpDrawable *drawable, const layer_pixels *pixels,
                              const diat_box *selection, char **model_dirs, face_list *faces,
                              face_edit **prepared)
{
    attribute_dialog d = {.config = config,
                          .original = pixels,
                          .selection = selection,
                          .model_dirs = model_dirs,
                          .faces = faces};
    GError *error = NULL;
    if (!layer_pixels_copy(pixels, &d.work, &error)) {
        /* No memory for a preview: the dialog is still worth having. */
        g_message("%s", error->message);
        g_clear_error(&error);
        return FALSE;
    }
    d.mask = g_try_new0(float, (size_t)pixels->image.width * pixels->image.height);
    if (!d.mask) {
        layer_pixels_clear(&d.work);
        g_message(_("Not enough memory for the preview's mask."));
        return FALSE;
    }
    d.detector_path = model_catalog_find_file(model_dirs, FACE_DETECTOR_FILE);
    d.landmarks_path = model_catalog_find_file(model_dirs, FACE_LANDMARKS_FILE);

    d.window = build_dialog(&d, procedure, drawable);
    fill_face_combo(&d);
    const gulong handler = g_signal_connect(config, "notify", G_CALLBACK(config_changed), &d);
    start_recompute(&d); /* at once: the first result should not wait */

    const gboolean accepted = gimp_procedure_dialog_run(GIMP_PROCEDURE_DIALOG(d.window));
    gtk_widget_hide(d.window);
    g_signal_handler_disconnect(config, handler);
    if (d.recompute_source) {
        /* A change the networks have not seen yet: the procedure prepares
         * the edit itself with the final settings. */
        g_source_remove(d.recompute_source);
        d.recompute_source = 0;
        d.generation++;
    }
    if (!accepted && d.cancellable) g_cancellable_cancel(d.cancellable);
    /* Jobs reference `d`: wait for them. An accepted dialog lets the newest
     * one finish, as the procedure would need its result anyway. */
    while (d.pending_jobs > 0) g_main_context_iteration(NULL, TRUE);
    if (accepted) {
        *prepared = d.edit;
        d.edit = NULL;
    }
    gtk_widget_destroy(d.window);
    face_edit_free(d.edit);
    g_clear_object(&d.cancellable);
    g_clear_object(&d.model_store);
    g_free(d.detector_path);
    g_free(d.landmarks_path);
    g_free(d.scratch);
    g_free(d.mask);
    layer_pixels_clear(&d.work);
    return accepted;
}

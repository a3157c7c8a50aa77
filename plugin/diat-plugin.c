/* DIAT for GIMP: the plug-in procedure "plug-in-diat-attribute-transfer",
 * Filters → Face → Attribute Transfer…
 *
 * The run, in order: check the drawable, read its pixels once (see
 * drawable-io.h for the format), show the dialog when interactive (it may
 * prepare the edit while the user chooses), resolve the model, find the
 * face(s) and run the networks (face-edit.c), paste the result back, and
 * only then touch the image: one undo group holding either a new layer with
 * its mask or the changed layer. Any failure before that point leaves the
 * image as it was and reports a message that names the problem. */
#include "drawable-io.h"
#include "face-edit.h"
#include "model-catalog.h"
#include "plugin-errors.h"
#include "procedure-settings.h"
#include "attribute-dialog.h"

#include <libgimp/gimp.h>
#include <libgimp/gimpui.h>

#include <glib/gi18n-lib.h>

typedef struct _DiatPlugIn {
    GimpPlugIn parent_instance;
} DiatPlugIn;

#define DIAT_TYPE_PLUG_IN (diat_plug_in_get_type())
G_DECLARE_FINAL_TYPE(DiatPlugIn, diat_plug_in, DIAT, PLUG_IN, GimpPlugIn)
G_DEFINE_TYPE(DiatPlugIn, diat_plug_in, GIMP_TYPE_PLUG_IN)

static GList *diat_plug_in_query_procedures(GimpPlugIn *plug_in);
static GimpProcedure *diat_plug_in_create_procedure(GimpPlugIn *plug_in, const gchar *name);
static gboolean diat_plug_in_set_i18n(GimpPlugIn *plug_in, const gchar *procedure_name,
                                      gchar **gettext_domain, gchar **catalog_dir);

GIMP_MAIN(DIAT_TYPE_PLUG_IN)

static void diat_plug_in_class_init(DiatPlugInClass *klass)
{
    GimpPlugInClass *plug_in_class = GIMP_PLUG_IN_CLASS(klass);
    plug_in_class->query_procedures = diat_plug_in_query_procedures;
    plug_in_class->create_procedure = diat_plug_in_create_procedure;
    plug_in_class->set_i18n = diat_plug_in_set_i18n;
}

static void diat_plug_in_init(DiatPlugIn *plug_in)
{
    (void)plug_in;
}

static GList *diat_plug_in_query_procedures(GimpPlugIn *plug_in)
{
    (void)plug_in;
    return g_list_append(NULL, g_strdup(PLUG_IN_PROC));
}

/* Our catalogue sits in locale/ beside the binary (GIMP's default place),
 * under our own domain: GIMP discourages plug-ins from "gimp30-" names. */
static gboolean diat_plug_in_set_i18n(GimpPlugIn *plug_in, const gchar *procedure_name,
                                      gchar **gettext_domain, gchar **catalog_dir)
{
    (void)plug_in;
    (void)procedure_name;
    *gettext_domain = g_strdup(GETTEXT_PACKAGE);
    *catalog_dir = NULL;
    return TRUE;
}

static GimpValueArray *run_attribute_transfer(GimpProcedure *procedure, GimpRunMode run_mode,
                                              GimpImage *image, GimpDrawable **drawables,
                                              GimpProcedureConfig *config, gpointer run_data);

static GimpProcedure *diat_plug_in_create_procedure(GimpPlugIn *plug_in, const gchar *name)
{
    if (g_strcmp0(name, PLUG_IN_PROC) != 0) return NULL;
    GimpProcedure *procedure = gimp_image_procedure_new(plug_in, name, GIMP_PDB_PROC_TYPE_PLUGIN,
                                                        run_attribute_transfer, NULL, NULL);
    gimp_procedure_set_image_types(procedure, "RGB*, GRAY*");
    gimp_procedure_set_sensitivity_mask(procedure, GIMP_PROCEDURE_SENSITIVE_DRAWABLE);
    gimp_procedure_set_menu_label(procedure, _("_Attribute Transfer…"));
    /* The label is passed untranslated: GIMP translates menu branches in
     * our domain itself. */
    gimp_plug_in_add_menu_branch(plug_in, "<Image>/Filters", N_("F_ace"));
    gimp_procedure_add_menu_path(procedure, "<Image>/Filters/Face");
    gimp_procedure_set_documentation(
        procedure, _("Change a facial attribute while keeping the person recognisable"),
        _("Deep Identity-Aware Transfer of facial attributes (DIAT): finds the face, aligns it, "
          "runs the attribute model's transform and mask networks and pastes the masked "
          "change back at full resolution. The result goes into a new layer whose layer mask "
          "holds the DIAT mask, or into the layer itself."),
        name);
    gimp_procedure_set_attribution(procedure, "DIAT for GIMP contributors",
                                   "DIAT for GIMP contributors", "2025");
    procedure_settings_add_arguments(procedure);
    return procedure;
}

/* ---- running ----------------------------------------------------------- */

static void report_progress(void *user, double fraction, const char *stage)
{
    const char **last_stage = user;
    if (g_strcmp0(*last_stage, stage) != 0) {
        gimp_progress_set_text(stage);
        *last_stage = stage;
    }
    gimp_progress_update(fraction);
}

/* The model path, the face finder's files and the request, from the
 * settings; FALSE with `error` set when no model is found. */
static gboolean build_request(const procedure_settings *settings, char **dirs,
                              const diat_box *selection, face_edit_request *request,
                              char **model_path, char **detector_path, char **landmarks_path,
                              GError **error)
{
    *model_path = model_catalog_resolve(dirs, settings->model, error);
    if (!*model_path) return FALSE;
    *detector_path = model_catalog_find_file(dirs, FACE_DETECTOR_FILE);
    *landmarks_path = model_catalog_find_file(dirs, FACE_LANDMARKS_FILE);
    *request = (face_edit_request){.model_path = *model_path,
                                   .detector_path = *detector_path,
                                   .landmarks_path = *landmarks_path,
                                   .backend = settings->backend,
                                   .choice = settings->face,
                                   .face_index = settings->face_index,
                                   .region = selection};
    return TRUE;
}

/* Everything after the settings are final: prepare (unless the dialog
 * already did), render, write. The image is changed only at the end. */
static gboolean apply_edit(GimpImage *image, GimpDrawable *drawable,
                           const procedure_settings *settings, char **dirs,
                           const diat_box *selection, layer_pixels *pixels, face_list *faces,
                           face_edit **prepared, GError **error)
{
    face_edit_request request;
    char *model_path = NULL, *detector_path = NULL, *landmarks_path = NULL;
    float *mask = NULL, *scratch = NULL;
    gboolean ok = build_request(settings, dirs, selection, &request, &model_path, &detector_path,
                                &landmarks_path, error);
    if (ok && !face_edit_matches(*prepared, &request)) {
        g_clear_pointer(prepared, face_edit_free);
        const char *stage = NULL;
        gimp_progress_init(_("Attribute transfer"));
        ok = face_edit_prepare(&request, &pixels->image, faces, report_progress, &stage, NULL,
                               prepared, error);
    }
    diat_box bounds = {0};
    if (ok && diat_context_notice((*prepared)->ctx))
        g_message("%s\n%s", _("The CUDA backend is not available here; the edit runs on the CPU."),
                  diat_context_notice((*prepared)->ctx));
    if (ok) {
        const size_t count = (size_t)pixels->image.width * pixels->image.height;
        mask = g_try_new(float, count);
        scratch = (*prepared)->n_edits > 1 ? g_try_new(float, count) : NULL;
        if (!mask || ((*prepared)->n_edits > 1 && !scratch)) {
            g_set_error_literal(error, DIAT_PLUGIN_ERROR, DIAT_PLUGIN_ERROR_ENGINE,
                                _("Not enough memory for the mask."));
            ok = FALSE;
        }
    }
    if (ok) ok = face_edit_render(*prepared, settings->ratio, &pixels->image, mask, scratch, error);
    if (ok && !face_edit_mask_bounds(mask, pixels->image.width, pixels->image.height, &bounds)) {
        g_set_error_literal(error, DIAT_PLUGIN_ERROR, DIAT_PLUGIN_ERROR_ENGINE,
                            _("The mask is empty: the model changes nothing on this face. Try a "
                              "larger mask ratio p."));
        ok = FALSE;
    }
    if (ok) {
        gimp_image_undo_group_start(image);
        if (settings->output == OUTPUT_IN_PLACE) {
            write_in_place(drawable, pixels, mask, &bounds);
        } else {
            diat_model *model = (*prepared)->model;
            const char *label = diat_model_metadata(model, "label");
            char *name = g_strdup_printf(_("%s (attribute transfer)"),
                                         label && *label ? g_dgettext(GETTEXT_PACKAGE, label)
                                                         : _("Attribute transfer"));
            write_new_layer(image, drawable, pixels, mask, &bounds, name);
            g_free(name);
        }
        gimp_image_undo_group_end(image);
        gimp_progress_update(1.0);
    }
    g_free(scratch);
    g_free(mask);
    g_free(model_path);
    g_free(detector_path);
    g_free(landmarks_path);
    return ok;
}

static GimpValueArray *fail(GimpProcedure *procedure, GimpPDBStatusType status, GError *error)
{
    if (error && g_error_matches(error, DIAT_PLUGIN_ERROR, DIAT_PLUGIN_ERROR_CANCELLED)) {
        g_error_free(error);
        return gimp_procedure_new_return_values(procedure, GIMP_PDB_CANCEL, NULL);
    }
    return gimp_procedure_new_return_values(procedure, status, error);
}

static GimpValueArray *run_attribute_transfer(GimpProcedure *procedure, GimpRunMode run_mode,
                                              GimpImage *image, GimpDrawable **drawables,
                                              GimpProcedureConfig *config, gpointer run_data)
{
    (void)run_data;
    GError *error = NULL;
    if (!drawables || !drawables[0] || drawables[1]) {
        g_set_error(&error, DIAT_PLUGIN_ERROR, DIAT_PLUGIN_ERROR_DRAWABLE,
                    _("Attribute Transfer works on exactly one layer; select one."));
        return fail(procedure, GIMP_PDB_CALLING_ERROR, error);
    }
    GimpDrawable *drawable = drawables[0];
    if (!GIMP_IS_LAYER(drawable)) {
        g_set_error(&error, DIAT_PLUGIN_ERROR, DIAT_PLUGIN_ERROR_DRAWABLE,
                    _("Attribute Transfer edits layers, not channels or layer masks; select "
                      "the photo's layer."));
        return fail(procedure, GIMP_PDB_CALLING_ERROR, error);
    }
    gegl_init(NULL, NULL);

    layer_pixels pixels;
    if (!layer_pixels_read(drawable, &pixels, &error))
        return fail(procedure, GIMP_PDB_EXECUTION_ERROR, error);
    diat_box selection_box;
    const diat_box *selection =
        drawable_selection_box(image, drawable, &selection_box) ? &selection_box : NULL;
    char **dirs = procedure_model_dirs();
    face_list faces = {0};
    face_edit *prepared = NULL;
    GimpPDBStatusType status = GIMP_PDB_SUCCESS;

    if (run_mode == GIMP_RUN_INTERACTIVE) {
        gimp_ui_init(PLUG_IN_BINARY);
        if (!attribute_dialog_run(procedure, config, drawable, &pixels, selection, dirs, &faces,
                                  &prepared))
            status = GIMP_PDB_CANCEL;
    }
    if (status == GIMP_PDB_SUCCESS) {
        procedure_settings settings;
        procedure_settings_read(config, &settings);
        if (!apply_edit(image, drawable, &settings, dirs, selection, &pixels, &faces, &prepared,
                        &error))
            status = GIMP_PDB_EXECUTION_ERROR;
        procedure_settings_clear(&settings);
    }
    face_edit_free(prepared);
    face_list_free(&faces);
    g_strfreev(dirs);
    layer_pixels_clear(&pixels);
    if (status != GIMP_PDB_SUCCESS) return fail(procedure, status, error);
    return gimp_procedure_new_return_values(procedure, GIMP_PDB_SUCCESS, NULL);
}

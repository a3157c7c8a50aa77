/* Registration and reading of the procedure's arguments. */
#include "procedure-settings.h"

#include "model-catalog.h"

#include <glib/gi18n-lib.h>

void procedure_settings_add_arguments(GimpProcedure *procedure)
{
    gimp_procedure_add_string_argument(
        procedure, ARG_MODEL, _("Attribute _model"),
        _("The attribute model: a name (a file NAME.safetensors in DIAT_MODEL_PATH, in the "
          "folder “diat-models” of the GIMP profile or in the installed models folder) or the "
          "path of a model file. Empty: the first model found."),
        "", G_PARAM_READWRITE);
    gimp_procedure_add_boolean_argument(
        procedure, ARG_USE_MODEL_RATIO, _("Use the model's _default mask"),
        _("Let the model decide which pixels to change (its mask above one half) instead of "
          "the mask ratio p."),
        TRUE, G_PARAM_READWRITE);
    gimp_procedure_add_double_argument(
        procedure, ARG_RATIO, _("Mask ratio _p"),
        _("The fraction of the face square the edit may change (the paper's p): small for "
          "eyeglasses or the mouth, large for age or gender. Used when the model's default "
          "is off."),
        RATIO_MIN, RATIO_MAX, RATIO_DEFAULT, G_PARAM_READWRITE);
    gimp_procedure_add_choice_argument(
        procedure, ARG_FACE, _("_Face"), _("Which face to edit."),
        gimp_choice_new_with_values(
            "auto", FACE_CHOICE_AUTO, _("Largest face"),
            _("The largest face found; inside the selection when there is one."), "selection",
            FACE_CHOICE_SELECTION, _("Face in the selection"),
            _("The face inside the selection; if the detector sees none there, the "
              "selection's square is taken as the face."),
            "index", FACE_CHOICE_INDEX, _("Face by number"),
            _("The face numbered “face-index”, counting from the largest."), "all", FACE_CHOICE_ALL,
            _("All faces"), _("Every face found in the layer."), NULL),
        "auto", G_PARAM_READWRITE);
    gimp_procedure_add_int_argument(procedure, ARG_FACE_INDEX, _("Face _number"),
                                    _("With face “index”: which face, 1 being the largest."), 1,
                                    FACE_INDEX_MAX, 1, G_PARAM_READWRITE);
    gimp_procedure_add_choice_argument(
        procedure, ARG_OUTPUT, _("O_utput"), _("Where the result goes."),
        gimp_choice_new_with_values(
            "new-layer", OUTPUT_NEW_LAYER, _("New layer with mask"),
            _("A new layer above, whose layer mask holds the DIAT mask: paint it to refine "
              "the edit."),
            "in-place", OUTPUT_IN_PLACE, _("Change the layer"),
            _("Write the result into the layer itself."), NULL),
        "new-layer", G_PARAM_READWRITE);
    gimp_procedure_add_choice_argument(
        procedure, ARG_BACKEND, _("Back_end"), _("Where the networks run."),
        gimp_choice_new_with_values(
            "auto", DIAT_BACKEND_AUTO, _("Automatic"), _("CUDA when available, else the CPU."),
            "cpu", DIAT_BACKEND_CPU, _("CPU"), _("The processor (OpenBLAS)."), "cuda",
            DIAT_BACKEND_CUDA, _("CUDA"), _("An NVIDIA graphics card."), NULL),
        "auto", G_PARAM_READWRITE);
    gimp_procedure_add_boolean_aux_argument(procedure, ARG_SHOW_MASK, _("Show _mask"),
                                            _("Tint the pixels the edit changes in the preview."),
                                            FALSE, G_PARAM_READWRITE);
    gimp_procedure_add_boolean_aux_argument(
        procedure, ARG_SPLIT_VIEW, _("_Before/after split"),
        _("Show the original on the left half of the preview and the result on the right."), FALSE,
        G_PARAM_READWRITE);
}

void procedure_settings_read(GimpProcedureConfig *config, procedure_settings *settings)
{
    gboolean use_model_ratio = TRUE;
    double ratio = RATIO_DEFAULT;
    char *model = NULL;
    g_object_get(config, ARG_MODEL, &model, ARG_USE_MODEL_RATIO, &use_model_ratio, ARG_RATIO,
                 &ratio, ARG_FACE_INDEX, &settings->face_index, NULL);
    settings->model = model ? model : g_strdup("");
    settings->ratio = use_model_ratio ? DIAT_RATIO_MODEL : (float)ratio;
    settings->face = gimp_procedure_config_get_choice_id(config, ARG_FACE);
    settings->output = gimp_procedure_config_get_choice_id(config, ARG_OUTPUT);
    settings->backend = gimp_procedure_config_get_choice_id(config, ARG_BACKEND);
}

void procedure_settings_clear(procedure_settings *settings)
{
    g_free(settings->model);
    settings->model = NULL;
}

char **procedure_model_dirs(void)
{
    char *user_dir = g_build_filename(gimp_directory(), "diat-models", NULL);
    char **dirs = model_catalog_search_dirs(user_dir);
    g_free(user_dir);
    return dirs;
}

/* The procedure's arguments: their names (shared by the procedure and the
 * dialog), their registration, and reading them back from a config. */
#ifndef DIAT_PROCEDURE_SETTINGS_H
#define DIAT_PROCEDURE_SETTINGS_H

#include "face-edit.h"

#include <libgimp/gimp.h>

G_BEGIN_DECLS

#define PLUG_IN_PROC "plug-in-diat-attribute-transfer"
/* The binary's name, and so its folder's in plug-ins/ (GIMP requires both
 * to match). */
#define PLUG_IN_BINARY "diat-attribute-transfer"

/* PDB arguments. */
#define ARG_MODEL "model"
#define ARG_USE_MODEL_RATIO "use-model-ratio"
#define ARG_RATIO "ratio"
#define ARG_FACE "face"
#define ARG_FACE_INDEX "face-index"
#define ARG_OUTPUT "output"
#define ARG_BACKEND "backend"
/* Dialog-only settings, remembered but not part of the PDB signature. */
#define ARG_SHOW_MASK "show-mask"
#define ARG_SPLIT_VIEW "split-view"

/* The mask ratio range offered: below 1% no face attribute fits, above 99%
 * the mask is the whole crop. */
#define RATIO_MIN 0.01
#define RATIO_MAX 0.99
#define RATIO_DEFAULT 0.15
#define FACE_INDEX_MAX 64

/* The model file names of the face finder, looked up like the models. */
#define FACE_DETECTOR_FILE "face-detector-tiny.safetensors"
#define FACE_LANDMARKS_FILE "face-landmarks-68.safetensors"

typedef enum { OUTPUT_NEW_LAYER, OUTPUT_IN_PLACE } output_mode;

/* The arguments as the run needs them. */
typedef struct procedure_settings {
    char *model; /* name or path as given; may be empty */
    float ratio; /* DIAT_RATIO_MODEL or p */
    face_choice face;
    int face_index;
    output_mode output;
    diat_backend_kind backend;
} procedure_settings;

/* Register every argument on `procedure`. */
void procedure_settings_add_arguments(GimpProcedure *procedure);

void procedure_settings_read(GimpProcedureConfig *config, procedure_settings *settings);
void procedure_settings_clear(procedure_settings *settings);

/* The folders searched for models: DIAT_MODEL_PATH, the user's GIMP folder
 * "diat-models", the installed folder (see model-catalog.h). */
char **procedure_model_dirs(void);

G_END_DECLS

#endif

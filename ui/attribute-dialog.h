/* The Attribute Transfer dialog: model picker, mask ratio p, face picker,
 * output mode, backend, and a zoomable preview of the result with a mask
 * overlay and a before/after split.
 *
 * The networks run in a background thread whenever the model, the face or
 * the backend changes; moving p only re-renders the cached edit (no network
 * runs), so the preview follows the slider. */
#ifndef DIAT_ATTRIBUTE_DIALOG_H
#define DIAT_ATTRIBUTE_DIALOG_H

#include "drawable-io.h"
#include "face-edit.h"

#include <libgimp/gimp.h>

G_BEGIN_DECLS

/* Show the dialog for `drawable` (whose pixels the procedure has read into
 * `pixels`) and return TRUE when the user pressed OK; `config` then holds
 * the chosen settings (GIMP saves them for the next run). `faces` is the
 * procedure's face cache, updated by the dialog. When the edit the dialog
 * prepared matches the final settings it is handed over in `*prepared`, so
 * the procedure does not run the networks again. */
gboolean attribute_dialog_run(GimpProcedure *procedure, GimpProcedureConfig *config,
                              GimpDrawable *drawable, const layer_pixels *pixels,
                              const diat_box *selection, char **model_dirs, face_list *faces,
                              face_edit **prepared);

G_END_DECLS

#endif

/* Moving pixels between a GIMP drawable and the engine.
 *
 * Pixel format: "R'G'B'A float" (or "Y'A float" for gray drawables), that
 * is sRGB-encoded values in [0, 1] with straight alpha, whatever the image's
 * precision. The networks were trained on 8-bit sRGB photos divided by 255,
 * so this is the encoding they understand; linear light would look to them
 * like a darker, flatter face. Float keeps 16- and 32-bit images from being
 * rounded on the way in, and babl converts exactly for 8- and 16-bit ones.
 * Only pixels the mask touches are ever written back, so every other pixel
 * of the layer keeps its stored value bit for bit, whatever the precision. */
#ifndef DIAT_DRAWABLE_IO_H
#define DIAT_DRAWABLE_IO_H

#include "diat.h"

#include <libgimp/gimp.h>

G_BEGIN_DECLS

/* A drawable's pixels in the engine's layout (see above). */
typedef struct layer_pixels {
    diat_image image; /* pixels owned; channels 4 (RGBA) or 2 (gray + alpha) */
    const Babl *format;
} layer_pixels;

/* Read the whole drawable. FALSE with `error` set when it is too large for
 * memory. */
gboolean layer_pixels_read(GimpDrawable *drawable, layer_pixels *out, GError **error);

/* A deep copy of `from` (for the dialog's preview). */
gboolean layer_pixels_copy(const layer_pixels *from, layer_pixels *to, GError **error);

void layer_pixels_clear(layer_pixels *pixels);

/* The bounds of the image's selection in the drawable's coordinates,
 * clipped to it; FALSE when there is no selection or it misses the
 * drawable. */
gboolean drawable_selection_box(GimpImage *image, GimpDrawable *drawable, diat_box *box);

/* Write the edited pixels where `mask` > 0 into the drawable through its
 * shadow buffer, as one undo step of the current undo group. `bounds`
 * encloses every nonzero mask value. */
void write_in_place(GimpDrawable *drawable, const layer_pixels *edited, const float *mask,
                    const diat_box *bounds);

/* Add a layer above `drawable` holding the full transform and a layer
 * mask holding the DIAT mask m, so that GIMP's own compositing gives
 * m * T(x) + (1 - m) * x, the paper's composition, and the user can paint
 * the mask. `edited` holds x + m * (T(x) - x) (face_edit_render's output);
 * the original is read back from the drawable. Returns the new layer. */
GimpLayer *write_new_layer(GimpImage *image, GimpDrawable *drawable, const layer_pixels *edited,
                           const float *mask, const diat_box *bounds, const char *name);

G_END_DECLS

#endif

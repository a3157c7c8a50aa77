/* The plug-in's error domain: one code per problem a user can meet, so that
 * tests and callers can tell them apart without parsing messages. */
#ifndef DIAT_PLUGIN_ERRORS_H
#define DIAT_PLUGIN_ERRORS_H

#include <glib.h>

G_BEGIN_DECLS

#define DIAT_PLUGIN_ERROR (diat_plugin_error_quark())

typedef enum {
    DIAT_PLUGIN_ERROR_NO_MODEL,        /* no model given or found by that name */
    DIAT_PLUGIN_ERROR_BAD_MODEL,       /* the model file is corrupt, truncated or not a model */
    DIAT_PLUGIN_ERROR_NO_FACE,         /* the detector found no face */
    DIAT_PLUGIN_ERROR_BAD_FACE_INDEX,  /* face "index" beyond the faces found */
    DIAT_PLUGIN_ERROR_SELECTION_EMPTY, /* face "selection" without a selection */
    DIAT_PLUGIN_ERROR_IMAGE_TOO_SMALL, /* too few pixels to hold a face */
    DIAT_PLUGIN_ERROR_FACE_FINDER,     /* the face detector's own files are missing or bad */
    DIAT_PLUGIN_ERROR_DRAWABLE,        /* the drawable cannot be edited (not a layer, ...) */
    DIAT_PLUGIN_ERROR_CANCELLED,       /* the user stopped the work */
    DIAT_PLUGIN_ERROR_ENGINE,          /* any other engine failure (memory, ...) */
} diat_plugin_error_code;

GQuark diat_plugin_error_quark(void);

G_END_DECLS

#endif

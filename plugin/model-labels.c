/* The English labels model files carry, marked for translation (see
 * model_catalog_known_labels in model-catalog.h). diat-train writes
 * "Add"/"Remove" followed by the CelebA attribute with spaces for
 * underscores; the tasks of the paper are listed, with both directions. */
#include "model-catalog.h"

#include <glib/gi18n-lib.h>

const char *const model_catalog_known_labels[] = {
    /* TRANSLATORS: model labels: what the model does to the face. */
    N_("Remove Eyeglasses"),
    N_("Add Eyeglasses"),
    N_("Add Mouth Slightly Open"),
    N_("Remove Mouth Slightly Open"),
    N_("Add Smiling"),
    N_("Remove Smiling"),
    /* TRANSLATORS: "Young" is the CelebA attribute: adding it makes the face younger. */
    N_("Add Young"),
    N_("Remove Young"),
    /* TRANSLATORS: "Male" is the CelebA attribute: adding it makes the face look male. */
    N_("Add Male"),
    N_("Remove Male"),
    N_("Add Bangs"),
    N_("Remove Bangs"),
    N_("Add Mustache"),
    N_("Remove Mustache"),
    /* TRANSLATORS: labels of the test models shipped with the sources. */
    N_("Test fixture (not a trained model)"),
    N_("Test fixture with red tint (not a trained model)"),
    NULL,
};

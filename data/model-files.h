/* The shipped model files (face detector and landmarks, dlib's ResNet,
 * faceres, the denoiser, the classifier, the attribute models) live in the
 * source tree's models/ and install to PREFIX/share/diat/models. `diat`
 * and diat-train find them the same way, from any folder. */
#ifndef DIAT_DATA_MODEL_FILES_H
#define DIAT_DATA_MODEL_FILES_H

#include <stddef.h>

/* Find the model file `name` (e.g. "faceres.safetensors"), looking in:
 *   1. each folder of $DIAT_MODEL_PATH (colon-separated);
 *   2. ../share/diat/models beside the running executable (a relocated or
 *      unpacked install);
 *   3. the configured install folder;
 *   4. the source tree's models/, so that a build runs uninstalled.
 * 0 with its path in `path`, else -1; `searched` receives the folders
 * tried, comma-separated, for the error message. */
int diat_model_file_find(const char *name, char *path, size_t size, char *searched,
                         size_t searched_size);

#endif

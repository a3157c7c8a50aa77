/* One split of a CelebA folder, for `diat eval`: read by the data
 * library (data/), the trainer's own reader, so the evaluation sees the same
 * files under the same checks and crops each face exactly as training did. */
#include "eval.h"

#include "dataset.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void eval_faces_free(eval_faces *faces)
{
    if (!faces) return;
    diat_celeba_free_paths(faces->paths, faces->count);
    faces->paths = NULL;
    faces->count = 0;
}

diat_status eval_select_faces(const char *root, int split, const char *attribute, int with,
                              size_t limit, eval_faces *out, size_t *split_total,
                              size_t *side_total, diat_error *err)
{
    memset(out, 0, sizeof *out);
    *split_total = *side_total = 0;
    diat_status st = diat_celeba_split_faces(root, attribute, with, split, &out->paths, &out->count,
                                             split_total, err);
    if (st != DIAT_OK) return st;
    *side_total = out->count;
    if (out->count == 0) {
        eval_faces_free(out);
        return diat_set_error(err, DIAT_ERR_ARGUMENT,
                              "None of the %zu %s faces in '%s' %s '%s': nothing to %s it %s.",
                              *split_total, diat_celeba_split_name(split), root,
                              with ? "has" : "lacks", attribute, with ? "remove" : "add",
                              with ? "from" : "to");
    }
    for (; limit && out->count > limit; out->count--) free(out->paths[out->count - 1]);
    return DIAT_OK;
}

diat_status eval_load_face(const char *path, float *rgb, diat_error *err)
{
    float *planes = malloc(sizeof *planes * EVAL_FLOATS);
    if (!planes) return diat_set_error(err, DIAT_ERR_MEMORY, "Out of memory.");
    diat_status st = diat_dataset_load_face(path, 1, 0, planes, err);
    /* [-1, 1] planes to interleaved [0, 1] on the 8-bit grid, as a photo
     * the plug-in edits would arrive. */
    if (st == DIAT_OK)
        for (int i = 0; i < EVAL_PIXELS; i++)
            for (int c = 0; c < 3; c++) {
                float v = 0.5f * (planes[c * EVAL_PIXELS + i] + 1.0f);
                v = v < 0.0f ? 0.0f : v > 1.0f ? 1.0f : v;
                rgb[3 * i + c] = (float)lrintf(v * 255.0f) / 255.0f;
            }
    free(planes);
    return st;
}

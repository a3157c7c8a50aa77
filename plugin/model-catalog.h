/* Finding DIAT attribute models for the plug-in: where they live, what each
 * is called, and turning the user's "name or path" into a file.
 *
 * GIMP-free on purpose (GLib and the engine only), so that the dialog, the
 * procedure and the host's unit tests share one implementation. */
#ifndef DIAT_MODEL_CATALOG_H
#define DIAT_MODEL_CATALOG_H

#include <glib.h>

G_BEGIN_DECLS

/* One attribute model found on disk. */
typedef struct model_entry {
    char *name;          /* file name without ".safetensors": what the PDB argument takes */
    char *path;          /* absolute file name */
    char *label;         /* English label from the metadata (translate with model_entry_label) */
    char *attribute;     /* CelebA attribute, may be empty */
    float default_ratio; /* the model's own p, negative when it has none */
    gboolean fixture;    /* a test fixture, not a trained model */
} model_entry;

/* The folders searched, in order of precedence: every entry of
 * DIAT_MODEL_PATH, then `user_dir` (the user's GIMP folder "diat-models";
 * may be NULL), then the installed models folder. Free with
 * g_strfreev(). */
char **model_catalog_search_dirs(const char *user_dir);

/* Every loadable attribute model in `dirs`, sorted by translated label. A
 * name found in several folders is listed once, from the first folder.
 * Files that are not attribute models (the face finder's networks) or do
 * not load are left out: the list offers what will work. Elements are
 * model_entry; free the array with g_ptr_array_unref(). */
GPtrArray *model_catalog_scan(char *const *dirs);

/* The label shown to users: the metadata's label translated, or the name
 * when the file has no label. */
const char *model_entry_label(const model_entry *entry);

/* The file for `name_or_path`: an existing file when it contains a
 * directory separator or ends in ".safetensors", else NAME.safetensors in
 * the first folder of `dirs` holding one. An empty name picks the first
 * model of the scan (alphabetical by label) so that a batch call without a
 * model still works when exactly the one wanted is installed. Returns a
 * newly allocated path or NULL with `error` set (DIAT_PLUGIN_ERROR_NO_MODEL)
 * naming the folders searched. */
char *model_catalog_resolve(char *const *dirs, const char *name_or_path, GError **error);

/* The labels of the models this project makes (as diat-train writes them:
 * "Add"/"Remove" and the CelebA attribute) and of its test fixtures,
 * NULL-terminated. Model files carry English labels; listing them here puts
 * them into the translation catalogue (plugin/model-labels.c). */
extern const char *const model_catalog_known_labels[];

/* A support file (face detector, landmarks) from the same folders, or NULL. */
char *model_catalog_find_file(char *const *dirs, const char *file_name);

G_END_DECLS

#endif

/* Model discovery for the plug-in (see model-catalog.h). */
#include "model-catalog.h"

#include "diat.h"
#include "plugin-errors.h"

#include <glib/gi18n-lib.h>
#include <string.h>

#ifndef DIAT_MODELS_DIR
#define DIAT_MODELS_DIR "/usr/local/share/diat/models"
#endif

#define MODEL_SUFFIX ".safetensors"

char **model_catalog_search_dirs(const char *user_dir)
{
    GPtrArray *dirs = g_ptr_array_new();
    const char *env = g_getenv("DIAT_MODEL_PATH");
    if (env && *env) {
        char **parts = g_strsplit(env, G_SEARCHPATH_SEPARATOR_S, -1);
        for (char **p = parts; *p; p++)
            if (**p) g_ptr_array_add(dirs, g_strdup(*p));
        g_strfreev(parts);
    }
    if (user_dir && *user_dir) g_ptr_array_add(dirs, g_strdup(user_dir));
    g_ptr_array_add(dirs, g_strdup(DIAT_MODELS_DIR));
    g_ptr_array_add(dirs, NULL);
    return (char **)g_ptr_array_free(dirs, FALSE);
}

static void model_entry_free(gpointer data)
{
    model_entry *entry = data;
    g_free(entry->name);
    g_free(entry->path);
    g_free(entry->label);
    g_free(entry->attribute);
    g_free(entry);
}

const char *model_entry_label(const model_entry *entry)
{
    /* Labels are English in the file; their translations are in our
     * catalogue (plugin/model-labels.c lists the known ones). */
    return entry->label && *entry->label ? g_dgettext(GETTEXT_PACKAGE, entry->label) : entry->name;
}

static gint by_label(gconstpointer a, gconstpointer b)
{
    const model_entry *ea = *(model_entry *const *)a, *eb = *(model_entry *const *)b;
    /* Trained models before fixtures, then alphabetically as the user reads them. */
    if (ea->fixture != eb->fixture) return ea->fixture ? 1 : -1;
    return g_utf8_collate(model_entry_label(ea), model_entry_label(eb));
}

static gboolean has_name(GPtrArray *entries, const char *name)
{
    for (guint i = 0; i < entries->len; i++)
        if (strcmp(((model_entry *)entries->pdata[i])->name, name) == 0) return TRUE;
    return FALSE;
}

/* The entry for one file, or NULL when it does not load as a model. */
static model_entry *read_entry(diat_context *ctx, const char *path, const char *name)
{
    diat_model *model = NULL;
    if (diat_model_load(ctx, path, &model, NULL) != DIAT_OK) return NULL;
    model_entry *entry = g_new0(model_entry, 1);
    entry->name = g_strdup(name);
    entry->path = g_strdup(path);
    entry->label = g_strdup(diat_model_metadata(model, "label"));
    entry->attribute = g_strdup(diat_model_metadata(model, "attribute"));
    entry->default_ratio = diat_model_default_ratio(model);
    const char *fixture = diat_model_metadata(model, "fixture");
    entry->fixture = fixture && strcmp(fixture, "true") == 0;
    diat_model_free(model);
    return entry;
}

GPtrArray *model_catalog_scan(char *const *dirs)
{
    GPtrArray *entries = g_ptr_array_new_with_free_func(model_entry_free);
    diat_context *ctx = NULL;
    /* One thread: loading only parses and validates, it runs no network. */
    if (diat_context_new(DIAT_BACKEND_CPU, 1, &ctx, NULL) != DIAT_OK) return entries;
    for (char *const *dir = dirs; dir && *dir; dir++) {
        GDir *folder = g_dir_open(*dir, 0, NULL);
        if (!folder) continue;
        /* Sorted, so that the listing does not depend on the file system. */
        GPtrArray *files = g_ptr_array_new_with_free_func(g_free);
        const char *file;
        while ((file = g_dir_read_name(folder)))
            if (g_str_has_suffix(file, MODEL_SUFFIX)) g_ptr_array_add(files, g_strdup(file));
        g_dir_close(folder);
        g_ptr_array_sort(files, (GCompareFunc)g_strcmp0);
        for (guint i = 0; i < files->len; i++) {
            const char *file_name = *(char **)&files->pdata[i];
            char *name = g_strndup(file_name, strlen(file_name) - strlen(MODEL_SUFFIX));
            if (!has_name(entries, name)) {
                char *path = g_build_filename(*dir, file_name, NULL);
                model_entry *entry = read_entry(ctx, path, name);
                if (entry) g_ptr_array_add(entries, entry);
                g_free(path);
            }
            g_free(name);
        }
        g_ptr_array_unref(files);
    }
    diat_context_free(ctx);
    g_ptr_array_sort(entries, by_label);
    return entries;
}

static gboolean looks_like_path(const char *name)
{
    return strchr(name, G_DIR_SEPARATOR) != NULL || strchr(name, '/') != NULL ||
           g_str_has_suffix(name, MODEL_SUFFIX);
}

static char *searched_list(char *const *dirs)
{
    GString *text = g_string_new(NULL);
    for (char *const *dir = dirs; dir && *dir; dir++)
        g_string_append_printf(text, "%s%s", text->len ? ", " : "", *dir);
    return g_string_free(text, FALSE);
}

char *model_catalog_resolve(char *const *dirs, const char *name_or_path, GError **error)
{
    const char *name = name_or_path ? name_or_path : "";
    while (g_ascii_isspace(*name)) name++;
    if (!*name) {
        GPtrArray *entries = model_catalog_scan(dirs);
        char *path = entries->len ? g_strdup(((model_entry *)entries->pdata[0])->path) : NULL;
        g_ptr_array_unref(entries);
        if (path) return path;
        char *searched = searched_list(dirs);
        g_set_error(error, DIAT_PLUGIN_ERROR, DIAT_PLUGIN_ERROR_NO_MODEL,
                    _("No attribute model was found. Put model files (*.safetensors) into "
                      "one of these folders: %s, or set DIAT_MODEL_PATH."),
                    searched);
        g_free(searched);
        return NULL;
    }
    if (looks_like_path(name)) {
        if (g_file_test(name, G_FILE_TEST_IS_REGULAR)) return g_strdup(name);
        if (strchr(name, '/') || strchr(name, G_DIR_SEPARATOR)) {
            g_set_error(error, DIAT_PLUGIN_ERROR, DIAT_PLUGIN_ERROR_NO_MODEL,
                        _("The model file “%s” does not exist."), name);
            return NULL;
        }
    }
    char *file_name = g_str_has_suffix(name, MODEL_SUFFIX) ? g_strdup(name)
                                                           : g_strconcat(name, MODEL_SUFFIX, NULL);
    for (char *const *dir = dirs; dir && *dir; dir++) {
        char *path = g_build_filename(*dir, file_name, NULL);
        if (g_file_test(path, G_FILE_TEST_IS_REGULAR)) {
            g_free(file_name);
            return path;
        }
        g_free(path);
    }
    g_free(file_name);
    char *searched = searched_list(dirs);
    g_set_error(error, DIAT_PLUGIN_ERROR, DIAT_PLUGIN_ERROR_NO_MODEL,
                _("No model named “%s” was found. Looked in: %s."), name, searched);
    g_free(searched);
    return NULL;
}

char *model_catalog_find_file(char *const *dirs, const char *file_name)
{
    for (char *const *dir = dirs; dir && *dir; dir++) {
        char *path = g_build_filename(*dir, file_name, NULL);
        if (g_file_test(path, G_FILE_TEST_IS_REGULAR)) return path;
        g_free(path);
    }
    return NULL;
}

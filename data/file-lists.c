/* File lists for the data pipeline: owned path lists, sorted folder
 * listings and the image files of a folder. */
#include "dataset-internal.h"

#include "dataset.h"
#include "diat-train.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

void dataset_list_free(dataset_list *list)
{
    if (!list) return;
    for (size_t i = 0; i < list->count; i++) free(list->paths[i]);
    free(list->paths);
    memset(list, 0, sizeof *list);
}

diat_status dataset_list_add(dataset_list *list, size_t *capacity, const char *dir,
                             const char *name, diat_error *err)
{
    if (list->count == *capacity) {
        size_t bigger = *capacity ? *capacity * 2 : 1024;
        char **paths = realloc(list->paths, bigger * sizeof *paths);
        if (!paths) return diat_set_error(err, DIAT_ERR_MEMORY, "Out of memory listing images.");
        list->paths = paths;
        *capacity = bigger;
    }
    size_t length = strlen(dir) + strlen(name) + 2;
    char *path = malloc(length);
    if (!path) return diat_set_error(err, DIAT_ERR_MEMORY, "Out of memory listing images.");
    snprintf(path, length, "%s/%s", dir, name);
    list->paths[list->count++] = path;
    return DIAT_OK;
}

void dataset_free_names(char **names, size_t count)
{
    for (size_t i = 0; names && i < count; i++) free(names[i]);
    free(names);
}

void diat_celeba_free_paths(char **paths, size_t count)
{
    dataset_free_names(paths, count);
}

static int compare_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int image_name(const char *name)
{
    const char *dot = strrchr(name, '.');
    return dot && (strcasecmp(dot, ".png") == 0 || strcasecmp(dot, ".jpg") == 0 ||
                   strcasecmp(dot, ".jpeg") == 0);
}

diat_status dataset_read_dir(const char *dir, const char *what, int images_only, char ***names_out,
                             size_t *count_out, diat_error *err)
{
    *names_out = NULL;
    *count_out = 0;
    DIR *handle = opendir(dir);
    if (!handle)
        return diat_set_error(err, DIAT_ERR_IO, "The %s '%s' cannot be opened: %s.", what, dir,
                              strerror(errno));
    char **names = NULL;
    size_t count = 0, capacity = 0;
    diat_status st = DIAT_OK;
    struct dirent *entry;
    while (st == DIAT_OK && (errno = 0, entry = readdir(handle))) {
        const char *name = entry->d_name;
        if (name[0] == '.') continue; /* ".", ".." and hidden files */
        if (images_only && !image_name(name)) continue;
        int is_dir = entry->d_type == DT_DIR;
        if (entry->d_type == DT_UNKNOWN || entry->d_type == DT_LNK) {
            /* Some file systems do not fill d_type; links count as what
             * they point to. */
            char path[4096];
            struct stat sb;
            snprintf(path, sizeof path, "%s/%s", dir, name);
            is_dir = stat(path, &sb) == 0 && S_ISDIR(sb.st_mode);
        }
        if (is_dir) continue;
        if (count == capacity) {
            size_t bigger = capacity ? capacity * 2 : 1024;
            char **grown = realloc(names, bigger * sizeof *grown);
            if (!grown) {
                st = diat_set_error(err, DIAT_ERR_MEMORY, "Out of memory listing '%s'.", dir);
                break;
            }
            names = grown;
            capacity = bigger;
        }
        if (!(names[count] = strdup(name))) {
            st = diat_set_error(err, DIAT_ERR_MEMORY, "Out of memory listing '%s'.", dir);
            break;
        }
        count++;
    }
    if (st == DIAT_OK && errno)
        st = diat_set_error(err, DIAT_ERR_IO, "Cannot list the %s '%s': %s.", what, dir,
                            strerror(errno));
    closedir(handle);
    if (st != DIAT_OK) {
        dataset_free_names(names, count);
        return st;
    }
    if (count) qsort(names, count, sizeof *names, compare_names);
    *names_out = names;
    *count_out = count;
    return DIAT_OK;
}

diat_status dataset_folder_list(const char *dir, const char *what, dataset_list *list,
                                diat_error *err)
{
    memset(list, 0, sizeof *list);
    char **names;
    size_t count, capacity = 0;
    diat_status st = dataset_read_dir(dir, what, 1, &names, &count, err);
    if (st != DIAT_OK) return st;
    if (count == 0)
        st = diat_set_error(err, DIAT_ERR_ARGUMENT,
                            "The %s '%s' has no PNG or JPEG files (*.png, *.jpg, *.jpeg).", what,
                            dir);
    for (size_t i = 0; st == DIAT_OK && i < count; i++)
        st = dataset_list_add(list, &capacity, dir, names[i], err);
    dataset_free_names(names, count);
    if (st != DIAT_OK) dataset_list_free(list);
    return st;
}

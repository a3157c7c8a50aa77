/* Private to the data library: file lists shared by file-lists.c, dataset.c
 * (batches), dataset-faces.c (decoding) and celeba.c (CelebA label files). */
#ifndef DIAT_DATA_DATASET_INTERNAL_H
#define DIAT_DATA_DATASET_INTERNAL_H

#include "diat.h"

#include <stddef.h>
#include <stdint.h>

/* Attributes a labeled data set can carry (bits of a uint32_t). */
#define CELEBA_MAX_LABELS 32

/* Owned paths, in the order the data defines (file order for CelebA, byte
 * order of the names for folders). */
typedef struct dataset_list {
    char **paths;
    size_t count;
} dataset_list;

void dataset_list_free(dataset_list *list);
/* Append a copy of dir + "/" + name. */
diat_status dataset_list_add(dataset_list *list, size_t *capacity, const char *dir,
                             const char *name, diat_error *err);

/* Names of the entries of `dir` that are not folders, sorted by strcmp;
 * `images_only` keeps *.png, *.jpg and *.jpeg (any case). Hidden files are
 * skipped. `what` names the folder's role in messages ("source folder"). */
diat_status dataset_read_dir(const char *dir, const char *what, int images_only, char ***names,
                             size_t *count, diat_error *err);
void dataset_free_names(char **names, size_t count);

/* The image files of `dir` (as dataset_read_dir with images_only) as paths;
 * a folder without any is an error. */
diat_status dataset_folder_list(const char *dir, const char *what, dataset_list *list,
                                diat_error *err);

/* Select the faces of one official split of a CelebA root: `sources` those
 * without the attribute when add is nonzero (with it otherwise), and
 * `references` the others. A NULL or empty attribute puts every face of the
 * split in both. Checks the label files line by line and that every
 * selected image is in the image folder. */
diat_status celeba_select(const char *root, const char *attribute, int add, int split,
                          dataset_list *sources, dataset_list *references, diat_error *err);

/* Every face of one official split, in file order, and its labels: bit k of
 * (*labels)[i] is set when face i has names[k] (count <= CELEBA_MAX_LABELS).
 * The same checks as celeba_select; *labels is the caller's to free. */
diat_status celeba_select_labeled(const char *root, const char *const *names, int count, int split,
                                  dataset_list *faces, uint32_t **labels, diat_error *err);

#endif

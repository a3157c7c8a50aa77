/* CelebA's label files, read strictly: a data set that trains for hours on
 * the wrong faces is worse than a refusal, so every malformed line is an
 * error that names the file and the line.
 *
 * list_attr_celeba.txt: the number of images, then the attribute names, then
 * one row per image: its file name and one value per attribute, 1 or -1.
 * list_eval_partition.txt: one row per image: its file name and its split,
 * 0 train, 1 val, 2 test. Rows are separated by any run of spaces or tabs;
 * CRLF line ends are accepted (copies edited on Windows have them).
 */
#include "dataset-internal.h"
#include "dataset.h"

#include "diat-train.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#define ATTR_FILE "list_attr_celeba.txt"
#define PARTITION_FILE "list_eval_partition.txt"
#define IMAGE_FOLDER "img_align_celeba"

static const char *const split_names[3] = {"train", "val", "test"};

const char *diat_celeba_split_name(int split)
{
    return split >= 0 && split < 3 ? split_names[split] : NULL;
}

/* A whole text file, NUL-terminated, and a cursor over its lines. */
typedef struct text_file {
    char path[4096];
    char *text;
    char *cursor;
    long line; /* number of the line last returned */
} text_file;

/* The first of root/<sub>/<name> that exists (sub "" = root itself), where
 * the torchvision layout (flat) and the Google Drive one (Anno/, Eval/,
 * Img/) put things. */
static int find_in_root(const char *root, const char *const *subs, const char *name, char *out,
                        size_t out_size)
{
    for (int i = 0; subs[i]; i++) {
        struct stat st;
        if (subs[i][0])
            snprintf(out, out_size, "%s/%s/%s", root, subs[i], name);
        else
            snprintf(out, out_size, "%s/%s", root, name);
        if (stat(out, &st) == 0) return 1;
    }
    return 0;
}

static diat_status text_open(text_file *f, const char *root, const char *const *subs,
                             const char *name, const char *places, diat_error *err)
{
    memset(f, 0, sizeof *f);
    if (!find_in_root(root, subs, name, f->path, sizeof f->path))
        return diat_set_error(err, DIAT_ERR_IO,
                              "The CelebA folder '%s' has no %s (looked in %s); it should hold "
                              "img_align_celeba/, " ATTR_FILE " and " PARTITION_FILE ".",
                              root, name, places);
    FILE *fp = fopen(f->path, "rb");
    if (!fp)
        return diat_set_error(err, DIAT_ERR_IO, "Cannot open '%s': %s.", f->path, strerror(errno));
    size_t capacity = 1 << 20, size = 0;
    char *text = malloc(capacity);
    while (text) {
        size += fread(text + size, 1, capacity - 1 - size, fp);
        if (size < capacity - 1) break;
        char *bigger = realloc(text, capacity * 2);
        if (!bigger) free(text);
        text = bigger;
        capacity *= 2;
    }
    int failed = text && ferror(fp);
    fclose(fp);
    if (!text) return diat_set_error(err, DIAT_ERR_MEMORY, "Out of memory reading '%s'.", f->path);
    if (failed) {
        free(text);
        return diat_set_error(err, DIAT_ERR_IO, "Cannot read '%s'.", f->path);
    }
    text[size] = '\0';
    if (memchr(text, '\0', size)) {
        free(text);
        return diat_set_error(err, DIAT_ERR_FORMAT, "'%s' is not a text file (it holds NUL bytes).",
                              f->path);
    }
    f->text = f->cursor = text;
    return DIAT_OK;
}

/* The next line with its end (and a CR before it) cut off, or NULL at the
 * end of the file. */
static char *text_line(text_file *f)
{
    if (!*f->cursor) return NULL;
    char *line = f->cursor;
    char *end = strchr(line, '\n');
    if (end) {
        *end = '\0';
        f->cursor = end + 1;
    } else {
        f->cursor = line + strlen(line);
    }
    size_t n = strlen(line);
    if (n && line[n - 1] == '\r') line[n - 1] = '\0';
    f->line++;
    return line;
}

/* Split `line` in place into at most `max` tokens; returns how many there
 * were (possibly more than max: the extra ones are counted, not stored).
 * With `tokens` NULL it only counts and leaves the line intact. */
static int split_tokens(char *line, char **tokens, int max)
{
    int n = 0;
    char *p = line;
    for (;;) {
        while (*p == ' ' || *p == '\t') p++;
        if (!*p) break;
        char *start = p;
        while (*p && *p != ' ' && *p != '\t') p++;
        if (n < max) tokens[n] = start;
        n++;
        if (*p && tokens) *p++ = '\0';
    }
    return n;
}

/* A file name we will join to the image folder: no folders, no "..". */
static int plain_name(const char *name)
{
    return name[0] && strchr(name, '/') == NULL && strcmp(name, ".") != 0 &&
           strcmp(name, "..") != 0;
}

/* One image row of the attribute file. */
typedef struct attr_row {
    const char *name;
    long line;
    uint32_t bits;      /* bit k: the image has the k-th chosen attribute */
    unsigned char used; /* seen in the partition file */
} attr_row;

static int compare_rows(const void *a, const void *b)
{
    return strcmp(((const attr_row *)a)->name, ((const attr_row *)b)->name);
}

static int compare_strings(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The error for an unknown attribute: the case-insensitive match if there is
 * one (the likeliest slip), then as many valid names as fit. */
static diat_status unknown_attribute(const char *path, const char *attribute, char **names,
                                     int count, diat_error *err)
{
    char list[600] = "";
    size_t used = 0;
    for (int i = 0; i < count && used < sizeof list; i++)
        used += (size_t)snprintf(list + used, sizeof list - used, "%s%s", i ? " " : "", names[i]);
    for (int i = 0; i < count; i++)
        if (strcasecmp(names[i], attribute) == 0)
            return diat_set_error(err, DIAT_ERR_ARGUMENT,
                                  "Unknown attribute '%.40s'; did you mean '%s'? (names are "
                                  "case-sensitive). Valid: %s",
                                  attribute, names[i], list);
    (void)path; /* the list is what helps; the path would crowd it out */
    return diat_set_error(err, DIAT_ERR_ARGUMENT, "Unknown attribute '%.40s'. Valid: %s", attribute,
                          list);
}

/* Parse the attribute file into rows (names point into f->text), keeping
 * the values of the `chosen_count` attributes `chosen` as bits. */
static diat_status read_attributes(text_file *f, const char *const *chosen, int chosen_count,
                                   attr_row **rows_out, size_t *count_out, diat_error *err)
{
    *rows_out = NULL;
    *count_out = 0;
    char *line = text_line(f);
    char *tokens[2];
    char *end = NULL;
    errno = 0;
    long declared = line && split_tokens(line, tokens, 1) == 1 ? strtol(tokens[0], &end, 10) : -1;
    if (!line || declared <= 0 || errno || *end)
        return diat_set_error(err, DIAT_ERR_FORMAT,
                              "%s:1: expected the number of images on the first line%s%s%s.",
                              f->path, line ? ", found '" : " (the file is empty)",
                              line ? line : "", line ? "'" : "");

    line = text_line(f);
    if (!line)
        return diat_set_error(err, DIAT_ERR_FORMAT,
                              "%s:2: missing the line of attribute "
                              "names.",
                              f->path);
    int name_count = split_tokens(line, NULL, 0);
    char **names = malloc(sizeof *names * (name_count ? name_count : 1));
    if (!names) return diat_set_error(err, DIAT_ERR_MEMORY, "Out of memory reading '%s'.", f->path);
    split_tokens(line, names, name_count);
    if (name_count == 0) {
        free(names);
        return diat_set_error(err, DIAT_ERR_FORMAT,
                              "%s:2: expected the attribute names, found "
                              "an empty line.",
                              f->path);
    }
    int columns[CELEBA_MAX_LABELS];
    for (int k = 0; k < chosen_count; k++) columns[k] = -1;
    for (int i = 0; i < name_count; i++) {
        for (int j = 0; j < i; j++)
            if (strcmp(names[i], names[j]) == 0) {
                diat_status st =
                    diat_set_error(err, DIAT_ERR_FORMAT, "%s:2: the attribute '%s' is named twice.",
                                   f->path, names[i]);
                free(names);
                return st;
            }
        for (int k = 0; k < chosen_count; k++)
            if (strcmp(names[i], chosen[k]) == 0) columns[k] = i;
    }
    for (int k = 0; k < chosen_count; k++)
        if (columns[k] < 0) {
            diat_status st = unknown_attribute(f->path, chosen[k], names, name_count, err);
            free(names);
            return st;
        }
    free(names);

    attr_row *rows = malloc(sizeof *rows * (size_t)declared);
    char **cells = malloc(sizeof *cells * ((size_t)name_count + 1));
    if (!rows || !cells) {
        free(rows);
        free(cells);
        return diat_set_error(err, DIAT_ERR_MEMORY, "Out of memory for %ld label rows.", declared);
    }
    size_t count = 0;
    diat_status st = DIAT_OK;
    while (st == DIAT_OK && (line = text_line(f))) {
        int n = split_tokens(line, cells, name_count + 1);
        if (n == 0) continue; /* blank lines (a trailing one is common) */
        if (n != name_count + 1) {
            st = diat_set_error(err, DIAT_ERR_FORMAT,
                                "%s:%ld: %d columns, expected %d (an image name and %d attribute "
                                "values).",
                                f->path, f->line, n, name_count + 1, name_count);
            break;
        }
        if (!plain_name(cells[0])) {
            st = diat_set_error(err, DIAT_ERR_FORMAT, "%s:%ld: '%s' is not an image file name.",
                                f->path, f->line, cells[0]);
            break;
        }
        for (int i = 1; i <= name_count; i++)
            if (strcmp(cells[i], "1") != 0 && strcmp(cells[i], "-1") != 0) {
                st = diat_set_error(err, DIAT_ERR_FORMAT,
                                    "%s:%ld: the value '%s' in column %d (for %s) is not 1 or -1.",
                                    f->path, f->line, cells[i], i + 1, cells[0]);
                break;
            }
        if (st != DIAT_OK) break;
        if (count == (size_t)declared) {
            st = diat_set_error(err, DIAT_ERR_FORMAT,
                                "%s:%ld: more image rows than the %ld the first line declares.",
                                f->path, f->line, declared);
            break;
        }
        attr_row *row = &rows[count++];
        row->name = cells[0];
        row->line = f->line;
        row->bits = 0;
        for (int k = 0; k < chosen_count; k++)
            if (cells[columns[k] + 1][0] != '-') row->bits |= (uint32_t)1 << k;
        row->used = 0;
    }
    free(cells);
    if (st == DIAT_OK && count != (size_t)declared)
        st = diat_set_error(err, DIAT_ERR_FORMAT,
                            "%s: the first line declares %ld images but the file lists %zu.",
                            f->path, declared, count);
    if (st != DIAT_OK) {
        free(rows);
        return st;
    }
    *rows_out = rows;
    *count_out = count;
    return DIAT_OK;
}

/* The faces of `split`. Labeled (labels non-NULL): every one into sources,
 * with bit k of (*labels)[i] telling whether face i has chosen[k]. Else the
 * selection by chosen[0] that celeba_select describes (chosen_count 0: every
 * face into both lists). */
static diat_status select_faces(const char *root, const char *const *chosen, int chosen_count,
                                int add, int split, dataset_list *sources, dataset_list *references,
                                uint32_t **labels, diat_error *err)
{
    memset(sources, 0, sizeof *sources);
    memset(references, 0, sizeof *references);
    if (labels) *labels = NULL;
    if (split < 0 || split > 2)
        return diat_set_error(err, DIAT_ERR_ARGUMENT,
                              "Unknown CelebA split %d (0 train, 1 val, 2 test).", split);
    if (chosen_count < 0 || chosen_count > CELEBA_MAX_LABELS)
        return diat_set_error(err, DIAT_ERR_ARGUMENT, "%d labels asked for; at most %d.",
                              chosen_count, CELEBA_MAX_LABELS);
    const char *attribute = !labels && chosen_count ? chosen[0] : NULL;
    struct stat st_root;
    if (stat(root, &st_root) != 0)
        return diat_set_error(err, DIAT_ERR_IO, "The CelebA folder '%s' cannot be opened: %s.",
                              root, strerror(errno));
    if (!S_ISDIR(st_root.st_mode))
        return diat_set_error(err, DIAT_ERR_IO, "The CelebA folder '%s' is not a folder.", root);

    static const char *const attr_places[] = {"", "Anno", NULL};
    static const char *const partition_places[] = {"", "Eval", NULL};
    static const char *const image_places[] = {"", "Img", NULL};
    text_file attr_file, partition_file;
    diat_status st = text_open(&attr_file, root, attr_places, ATTR_FILE, "it and Anno/", err);
    if (st != DIAT_OK) return st;
    if ((st = text_open(&partition_file, root, partition_places, PARTITION_FILE, "it and Eval/",
                        err)) != DIAT_OK) {
        free(attr_file.text);
        return st;
    }
    attr_row *rows = NULL;
    size_t row_count = 0;
    char **files = NULL;
    size_t file_count = 0;
    size_t *selected = NULL; /* rows of the split, in partition order */
    size_t selected_count = 0;
    long *selected_lines = NULL;
    size_t split_sizes[3] = {0, 0, 0};
    char image_dir[4096];

    st = read_attributes(&attr_file, chosen, chosen_count, &rows, &row_count, err);
    if (st != DIAT_OK) goto done;
    /* Sorted by name, for lookups from the partition file (and to find
     * duplicates). */
    qsort(rows, row_count, sizeof *rows, compare_rows);
    for (size_t i = 1; i < row_count; i++)
        if (strcmp(rows[i].name, rows[i - 1].name) == 0) {
            st = diat_set_error(
                err, DIAT_ERR_FORMAT,
                "%s:%ld: the image '%s' is listed again (first "
                "on line %ld).",
                attr_file.path, rows[i].line > rows[i - 1].line ? rows[i].line : rows[i - 1].line,
                rows[i].name, rows[i].line < rows[i - 1].line ? rows[i].line : rows[i - 1].line);
            goto done;
        }

    selected = malloc(sizeof *selected * (row_count ? row_count : 1));
    selected_lines = malloc(sizeof *selected_lines * (row_count ? row_count : 1));
    if (!selected || !selected_lines) {
        st = diat_set_error(err, DIAT_ERR_MEMORY, "Out of memory selecting CelebA rows.");
        goto done;
    }
    char *line;
    while ((line = text_line(&partition_file))) {
        char *cells[2];
        int n = split_tokens(line, cells, 2);
        if (n == 0) continue;
        if (n != 2) {
            st = diat_set_error(err, DIAT_ERR_FORMAT,
                                "%s:%ld: %d columns, expected 2 (an image name and its split).",
                                partition_file.path, partition_file.line, n);
            goto done;
        }
        if (strlen(cells[1]) != 1 || cells[1][0] < '0' || cells[1][0] > '2') {
            st = diat_set_error(err, DIAT_ERR_FORMAT,
                                "%s:%ld: the split '%s' of %s is not 0 (train), 1 (val) or 2 "
                                "(test).",
                                partition_file.path, partition_file.line, cells[1], cells[0]);
            goto done;
        }
        attr_row key = {.name = cells[0]};
        attr_row *row = bsearch(&key, rows, row_count, sizeof *rows, compare_rows);
        if (!row) {
            st = diat_set_error(err, DIAT_ERR_FORMAT, "%s:%ld: the image '%s' is not in %s.",
                                partition_file.path, partition_file.line, cells[0], attr_file.path);
            goto done;
        }
        if (row->used) {
            st = diat_set_error(err, DIAT_ERR_FORMAT, "%s:%ld: the image '%s' is listed again.",
                                partition_file.path, partition_file.line, cells[0]);
            goto done;
        }
        row->used = 1;
        int row_split = cells[1][0] - '0';
        split_sizes[row_split]++;
        if (row_split == split) {
            selected_lines[selected_count] = partition_file.line;
            selected[selected_count++] = (size_t)(row - rows);
        }
    }
    if (selected_count == 0) {
        st = diat_set_error(err, DIAT_ERR_FORMAT,
                            "%s puts no image in the %s split (%d); it has %zu train, %zu val "
                            "and %zu test images.",
                            partition_file.path, split_names[split], split, split_sizes[0],
                            split_sizes[1], split_sizes[2]);
        goto done;
    }
    size_t with = 0;
    for (size_t i = 0; i < selected_count; i++) with += rows[selected[i]].bits & 1;
    if (attribute && (with == 0 || with == selected_count)) {
        /* Sources lack the attribute when adding it and have it when
         * removing it; references are the other side. */
        const char *suffix;
        if (with == 0)
            suffix = add ? ", so there are no references to add it from"
                         : ", so there is nothing to remove it from";
        else
            suffix = add ? " already, so there is nothing to add it to"
                         : ", so there are no references without it";
        char what[200];
        snprintf(what, sizeof what, "%s '%s'%s", with == 0 ? "none has" : "every one has",
                 attribute, suffix);
        st = diat_set_error(err, DIAT_ERR_ARGUMENT,
                            "No %s faces in the %s split of '%s': of its %zu images, %s.",
                            (with == 0) == !add ? "source" : "reference", split_names[split], root,
                            selected_count, what);
        goto done;
    }

    if (!find_in_root(root, image_places, IMAGE_FOLDER, image_dir, sizeof image_dir)) {
        st = diat_set_error(err, DIAT_ERR_IO,
                            "The CelebA folder '%s' has no " IMAGE_FOLDER "/ (looked in it and "
                            "Img/); unpack img_align_celeba.zip there.",
                            root);
        goto done;
    }
    st = dataset_read_dir(image_dir, "CelebA image folder", 0, &files, &file_count, err);
    if (st != DIAT_OK) goto done;
    /* Every selected image must be there: a partial unpack would otherwise
     * train on a silently different selection. */
    size_t missing = 0, first_missing = 0;
    for (size_t i = 0; i < selected_count; i++) {
        const char *name = rows[selected[i]].name;
        if (!file_count || !bsearch(&name, files, file_count, sizeof *files, compare_strings)) {
            if (!missing) first_missing = i;
            missing++;
        }
    }
    if (missing) {
        st = diat_set_error(err, DIAT_ERR_IO,
                            "%zu of the %zu %s-split images are missing from '%s', the first "
                            "'%s' (%s:%ld).",
                            missing, selected_count, split_names[split], image_dir,
                            rows[selected[first_missing]].name, partition_file.path,
                            selected_lines[first_missing]);
        goto done;
    }

    if (labels && !(*labels = malloc(sizeof **labels * selected_count))) {
        st = diat_set_error(err, DIAT_ERR_MEMORY, "Out of memory for %zu labels.", selected_count);
        goto done;
    }
    size_t source_capacity = 0, reference_capacity = 0;
    for (size_t i = 0; st == DIAT_OK && i < selected_count; i++) {
        const attr_row *row = &rows[selected[i]];
        int has = (int)(row->bits & 1);
        if (labels) (*labels)[i] = row->bits;
        if (labels || !attribute || has != add)
            st = dataset_list_add(sources, &source_capacity, image_dir, row->name, err);
        if (st == DIAT_OK && !labels && (!attribute || has == add))
            st = dataset_list_add(references, &reference_capacity, image_dir, row->name, err);
    }

done:
    if (st != DIAT_OK) {
        dataset_list_free(sources);
        dataset_list_free(references);
        if (labels) {
            free(*labels);
            *labels = NULL;
        }
    }
    dataset_free_names(files, file_count);
    free(selected);
    free(selected_lines);
    free(rows);
    free(attr_file.text);
    free(partition_file.text);
    return st;
}

diat_status celeba_select(const char *root, const char *attribute, int add, int split,
                          dataset_list *sources, dataset_list *references, diat_error *err)
{
    int chosen = attribute && attribute[0];
    return select_faces(root, &attribute, chosen, add, split, sources, references, NULL, err);
}

diat_status celeba_select_labeled(const char *root, const char *const *names, int count, int split,
                                  dataset_list *faces, uint32_t **labels, diat_error *err)
{
    dataset_list unused;
    return select_faces(root, names, count, 1, split, faces, &unused, labels, err);
}

diat_status diat_celeba_split_faces(const char *root, const char *attribute, int with, int split,
                                    char ***paths, size_t *count, size_t *split_total,
                                    diat_error *err)
{
    *paths = NULL;
    *count = *split_total = 0;
    dataset_list faces;
    uint32_t *labels = NULL;
    diat_status st = celeba_select_labeled(root, &attribute, 1, split, &faces, &labels, err);
    if (st != DIAT_OK) return st;
    /* Keep the paths on the asked side, in order, freeing the others. */
    size_t kept = 0;
    for (size_t i = 0; i < faces.count; i++) {
        if ((int)(labels[i] & 1) == !!with)
            faces.paths[kept++] = faces.paths[i];
        else
            free(faces.paths[i]);
    }
    free(labels);
    *split_total = faces.count;
    *paths = faces.paths;
    *count = kept;
    return DIAT_OK;
}

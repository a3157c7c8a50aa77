/* The val split of a CelebA folder, for `diat eval`.
 *
 * The trainer (trainer/celeba.c) reads the same files, but `diat` does not
 * link the trainer: it builds before it and without it (-Dtrainer=disabled).
 * So this is a second, smaller reader of the two label files, as strict
 * about the lines it uses: an evaluation on a silently different set of
 * faces would be a wrong number, so a malformed line is an error naming the
 * file and line. Faces are cropped exactly as the trainer's
 * diat_dataset_load_face crops them (the engine's diat_crop_face over the
 * same square), so the model sees what it was trained on.
 *
 * list_attr_celeba.txt: the number of images, the attribute names, then one
 * row per image: its name and one 1 or -1 per attribute.
 * list_eval_partition.txt: one row per image: its name and 0 train, 1 val,
 * 2 test.
 */
#include "eval.h"

#include "image-io.h"
#include "image-resample.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#define ATTR_FILE "list_attr_celeba.txt"
#define PARTITION_FILE "list_eval_partition.txt"
#define IMAGE_FOLDER "img_align_celeba"
#define VAL_SPLIT '1'

/* A whole text file, NUL-terminated, read line by line in place. */
typedef struct text_file {
    char path[4096];
    char *text, *cursor;
    long line;
} text_file;

/* root/name, else root/sub/name (the Google Drive layout's subfolders). */
static int find_in_root(const char *root, const char *sub, const char *name, char *out, size_t size)
{
    for (int i = 0; i < 2; i++) {
        struct stat st;
        snprintf(out, size, "%s/%s%s%s", root, i ? sub : "", i ? "/" : "", name);
        if (stat(out, &st) == 0) return 1;
    }
    return 0;
}

static diat_status text_open(text_file *f, const char *root, const char *sub, const char *name,
                             diat_error *err)
{
    memset(f, 0, sizeof *f);
    if (!find_in_root(root, sub, name, f->path, sizeof f->path))
        return diat_set_error(err, DIAT_ERR_IO,
                              "The CelebA folder '%s' has no %s (looked in it and %s/); it should "
                              "hold " IMAGE_FOLDER "/, " ATTR_FILE " and " PARTITION_FILE ".",
                              root, name, sub);
    FILE *fp = fopen(f->path, "rb");
    if (!fp)
        return diat_set_error(err, DIAT_ERR_IO, "Cannot open '%s': %s.", f->path, strerror(errno));
    size_t size = 0, capacity = 1 << 20;
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
    if (failed || memchr(text, '\0', size)) {
        free(text);
        return diat_set_error(err, failed ? DIAT_ERR_IO : DIAT_ERR_FORMAT, "Cannot read '%s'%s.",
                              f->path,
                              failed ? "" : ": it is not a text file (it holds NUL bytes)");
    }
    text[size] = '\0';
    f->text = f->cursor = text;
    return DIAT_OK;
}

/* The next line without its end (LF or CRLF), or NULL at the end. */
static char *text_line(text_file *f)
{
    if (!*f->cursor) return NULL;
    char *line = f->cursor, *end = strchr(line, '\n');
    f->cursor = end ? end + 1 : line + strlen(line);
    if (end) *end = '\0';
    size_t n = strlen(line);
    if (n && line[n - 1] == '\r') line[n - 1] = '\0';
    f->line++;
    return line;
}

/* Split `line` in place at runs of spaces and tabs; stores at most `max`
 * tokens and returns how many there were. */
static int split_tokens(char *line, char **tokens, int max)
{
    int n = 0;
    char *p = line;
    for (;;) {
        while (*p == ' ' || *p == '\t') p++;
        if (!*p) return n;
        if (n < max) tokens[n] = p;
        n++;
        while (*p && *p != ' ' && *p != '\t') p++;
        if (*p) *p++ = '\0';
    }
}

typedef struct row {
    const char *name;
    int has; /* the chosen attribute: 1 or 0 */
} row;

static int compare_rows(const void *a, const void *b)
{
    return strcmp(((const row *)a)->name, ((const row *)b)->name);
}

/* The column of `attribute` on the names line, or an error that lists the
 * valid names (and the case-insensitive match, the likeliest slip). */
static diat_status find_column(const text_file *f, char **names, int count, const char *attribute,
                               int *column, diat_error *err)
{
    char list[700] = "";
    size_t used = 0;
    const char *near = NULL;
    for (int i = 0; i < count; i++) {
        if (strcmp(names[i], attribute) == 0) {
            *column = i;
            return DIAT_OK;
        }
        if (strcasecmp(names[i], attribute) == 0) near = names[i];
        if (used < sizeof list)
            used +=
                (size_t)snprintf(list + used, sizeof list - used, "%s%s", i ? " " : "", names[i]);
    }
    if (near)
        return diat_set_error(err, DIAT_ERR_ARGUMENT,
                              "'%.40s' is not a CelebA attribute of %s; did you mean '%s'? "
                              "(names are case-sensitive)",
                              attribute, f->path, near);
    /* The hint first: the list is long and the message has a size limit. */
    return diat_set_error(err, DIAT_ERR_ARGUMENT,
                          "'%.40s' is not a CelebA attribute; name the one the model edits with "
                          "--attribute NAME (CelebA's: %s)",
                          attribute, list);
}

/* Every row of the attribute file with the value of `attribute`, sorted by
 * name; names point into f->text. */
static diat_status read_attributes(text_file *f, const char *attribute, row **out, size_t *count,
                                   diat_error *err)
{
    char *line = text_line(f), *first[2], *end = NULL;
    errno = 0;
    long declared = line && split_tokens(line, first, 2) == 1 ? strtol(first[0], &end, 10) : -1;
    if (declared <= 0 || errno || *end)
        return diat_set_error(err, DIAT_ERR_FORMAT,
                              "%s:1: expected the number of images on the first line.", f->path);
    if (!(line = text_line(f)))
        return diat_set_error(err, DIAT_ERR_FORMAT, "%s:2: missing the attribute names.", f->path);
    char *names[64];
    int name_count = split_tokens(line, names, 64), column = -1;
    if (name_count < 1 || name_count > 64)
        return diat_set_error(err, DIAT_ERR_FORMAT, "%s:2: expected 1 to 64 attribute names.",
                              f->path);
    diat_status st = find_column(f, names, name_count, attribute, &column, err);
    if (st != DIAT_OK) return st;

    row *rows = malloc(sizeof *rows * (size_t)declared);
    if (!rows) return diat_set_error(err, DIAT_ERR_MEMORY, "Out of memory for %ld rows.", declared);
    size_t n = 0;
    char *cells[66];
    while ((line = text_line(f))) {
        int tokens = split_tokens(line, cells, 66);
        if (tokens == 0) continue; /* blank lines: a trailing one is common */
        int valid = tokens == name_count + 1 && !strchr(cells[0], '/');
        for (int i = 1; valid && i <= name_count; i++)
            valid = strcmp(cells[i], "1") == 0 || strcmp(cells[i], "-1") == 0;
        if (!valid)
            st = diat_set_error(err, DIAT_ERR_FORMAT,
                                "%s:%ld: expected an image name and %d values of 1 or -1.", f->path,
                                f->line, name_count);
        else if (n == (size_t)declared)
            st = diat_set_error(err, DIAT_ERR_FORMAT,
                                "%s:%ld: more rows than the %ld the first line declares.", f->path,
                                f->line, declared);
        if (st != DIAT_OK) break;
        rows[n++] = (row){cells[0], cells[column + 1][0] == '1'};
    }
    if (st == DIAT_OK && n != (size_t)declared)
        st = diat_set_error(err, DIAT_ERR_FORMAT,
                            "%s: the first line declares %ld images but the file lists %zu.",
                            f->path, declared, n);
    if (st != DIAT_OK) {
        free(rows);
        return st;
    }
    qsort(rows, n, sizeof *rows, compare_rows);
    *out = rows;
    *count = n;
    return DIAT_OK;
}

void eval_faces_free(eval_faces *faces)
{
    if (!faces) return;
    for (size_t i = 0; i < faces->count; i++) free(faces->paths[i]);
    free(faces->paths);
    faces->paths = NULL;
    faces->count = 0;
}

/* Append image_dir/name to `faces`. */
static diat_status add_face(eval_faces *faces, size_t *capacity, const char *dir, const char *name,
                            diat_error *err)
{
    if (faces->count == *capacity) {
        size_t bigger = *capacity ? *capacity * 2 : 256;
        char **paths = realloc(faces->paths, bigger * sizeof *paths);
        if (!paths) return diat_set_error(err, DIAT_ERR_MEMORY, "Out of memory listing faces.");
        faces->paths = paths;
        *capacity = bigger;
    }
    size_t size = strlen(dir) + strlen(name) + 2;
    char *path = malloc(size);
    if (!path) return diat_set_error(err, DIAT_ERR_MEMORY, "Out of memory listing faces.");
    snprintf(path, size, "%s/%s", dir, name);
    faces->paths[faces->count++] = path;
    return DIAT_OK;
}

/* The selected images are all checked before any network runs: a partial
 * unpack should fail in a second, not after an hour of evaluation. */
static diat_status check_images(const eval_faces *faces, const char *dir, diat_error *err)
{
    size_t missing = 0, first = 0;
    for (size_t i = 0; i < faces->count; i++) {
        struct stat st;
        if (stat(faces->paths[i], &st) != 0 || !S_ISREG(st.st_mode)) {
            if (!missing) first = i;
            missing++;
        }
    }
    if (!missing) return DIAT_OK;
    return diat_set_error(err, DIAT_ERR_IO,
                          "%zu of the %zu selected val images are missing from '%s', the first "
                          "'%s'.",
                          missing, faces->count, dir, faces->paths[first]);
}

diat_status eval_select_faces(const char *root, const char *attribute, int with, size_t limit,
                              eval_faces *out, size_t *val_total, size_t *side_total,
                              diat_error *err)
{
    memset(out, 0, sizeof *out);
    *val_total = *side_total = 0;
    struct stat st_root;
    if (stat(root, &st_root) != 0)
        return diat_set_error(err, DIAT_ERR_IO, "The CelebA folder '%s' cannot be opened: %s.",
                              root, strerror(errno));
    if (!S_ISDIR(st_root.st_mode))
        return diat_set_error(err, DIAT_ERR_IO, "The CelebA folder '%s' is not a folder.", root);
    text_file attr, partition = {0};
    row *rows = NULL;
    size_t row_count = 0, capacity = 0;
    char image_dir[4096];
    diat_status st = text_open(&attr, root, "Anno", ATTR_FILE, err);
    if (st == DIAT_OK) st = text_open(&partition, root, "Eval", PARTITION_FILE, err);
    if (st == DIAT_OK) st = read_attributes(&attr, attribute, &rows, &row_count, err);
    if (st == DIAT_OK && !find_in_root(root, "Img", IMAGE_FOLDER, image_dir, sizeof image_dir))
        st = diat_set_error(err, DIAT_ERR_IO,
                            "The CelebA folder '%s' has no " IMAGE_FOLDER "/ (looked in it and "
                            "Img/).",
                            root);
    char *line;
    while (st == DIAT_OK && (line = text_line(&partition))) {
        char *cells[2];
        int n = split_tokens(line, cells, 2);
        if (n == 0) continue;
        if (n != 2 || strlen(cells[1]) != 1 || cells[1][0] < '0' || cells[1][0] > '2') {
            st = diat_set_error(err, DIAT_ERR_FORMAT,
                                "%s:%ld: expected an image name and its split (0, 1 or 2).",
                                partition.path, partition.line);
            break;
        }
        if (cells[1][0] != VAL_SPLIT) continue;
        row key = {cells[0], 0};
        const row *r = bsearch(&key, rows, row_count, sizeof *rows, compare_rows);
        if (!r) {
            st = diat_set_error(err, DIAT_ERR_FORMAT, "%s:%ld: the image '%s' is not in %s.",
                                partition.path, partition.line, cells[0], attr.path);
            break;
        }
        ++*val_total;
        if (r->has != with) continue;
        ++*side_total;
        if (!limit || out->count < limit) st = add_face(out, &capacity, image_dir, r->name, err);
    }
    if (st == DIAT_OK && *val_total == 0)
        st = diat_set_error(err, DIAT_ERR_FORMAT,
                            "%s puts no image in the val split (1): there are no faces the "
                            "trainer never saw to evaluate on.",
                            partition.path);
    else if (st == DIAT_OK && out->count == 0)
        st = diat_set_error(err, DIAT_ERR_ARGUMENT,
                            "None of the %zu val faces in '%s' %s '%s': nothing to %s it %s.",
                            *val_total, root, with ? "has" : "lacks", attribute,
                            with ? "remove" : "add", with ? "from" : "to");
    if (st == DIAT_OK) st = check_images(out, image_dir, err);
    if (st != DIAT_OK) eval_faces_free(out);
    free(rows);
    free(attr.text);
    free(partition.text);
    return st;
}

diat_status eval_load_face(const char *path, float *rgb, diat_error *err)
{
    imgio_image img;
    diat_status st = imgio_load(path, &img, err);
    if (st != DIAT_OK) return st;
    const int w = img.image.width, h = img.image.height;
    int y0 = 0;
    /* The aligned originals put the face in the square below row 20 of
     * 178x218 (and proportionally in a scaled copy); square images are
     * crops already. */
    if (w != h && (long)w * 218 != (long)h * 178) {
        imgio_free(&img);
        return diat_set_error(err, DIAT_ERR_FORMAT,
                              "The image '%s' is %dx%d: neither a 178x218 CelebA aligned "
                              "original nor square.",
                              path, w, h);
    }
    if (w != h) y0 = (int)lround(20.0 * w / 178.0);
    float *planes = malloc(sizeof *planes * EVAL_FLOATS);
    if (!planes) st = diat_set_error(err, DIAT_ERR_MEMORY, "Out of memory.");
    if (st == DIAT_OK) st = diat_crop_face(&img.image, 0, y0, w, planes, err);
    imgio_free(&img);
    if (st == DIAT_OK)
        for (int i = 0; i < EVAL_PIXELS; i++)
            for (int c = 0; c < 3; c++) {
                float v = planes[c * EVAL_PIXELS + i];
                v = v < 0.0f ? 0.0f : v > 1.0f ? 1.0f : v;
                rgb[3 * i + c] = (float)lrintf(v * 255.0f) / 255.0f;
            }
    free(planes);
    return st;
}

/* The trainer's data pipeline (data/dataset.h).
 *
 * Synthetic data made here (small CelebA-like roots and folder pairs of
 * generated PNG/JPEG files, in a temporary folder) test the label-file
 * checks, the folder mode, skipping of corrupt images, shuffling, flips and
 * exact resume. The shared CelebA copies (DIAT_SHARED_DATA) test the real
 * layouts: attribute selection against the label files, splits, the
 * 178x218 crop geometry against the published 128x128 crops, and decoding
 * speed. Without the shared data the synthetic part still runs, then the
 * test reports itself skipped (77).
 */
#include "dataset.h"

#include "diat-train.h"
#include "image-io.h"
#include "image-resample.h"
#include "testutil.h"

#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define FACE_FLOATS ((size_t)3 * 128 * 128)

static char tmp_root[256];
static char shared[1024];
static int have_shared;

/* ---- helpers ----------------------------------------------------------- */

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "wb");
    if (!f) {
        perror(path);
        exit(1);
    }
    fputs(text, f);
    fclose(f);
}

/* An asymmetric pattern unique to `id`, so that faces, their order and their
 * flips can be told apart. */
static void write_image(const char *path, int width, int height, int channels, int depth, int id)
{
    imgio_image img;
    diat_error err;
    if (imgio_alloc(&img, width, height, channels, depth, &err) != DIAT_OK) {
        fprintf(stderr, "%s\n", err.message);
        exit(1);
    }
    int max = depth == 16 ? 65535 : 255;
    for (int y = 0; y < height; y++)
        for (int x = 0; x < width; x++)
            for (int c = 0; c < channels; c++) {
                int v = (x * (3 + id % 5) + y * (1 + c) + id * 41 + c * 70) % 256;
                if (channels % 2 == 0 && c == channels - 1) v = 255; /* opaque alpha */
                img.samples[((size_t)y * width + x) * channels + c] = (uint16_t)(v * max / 255);
            }
    if (imgio_save(path, &img, IMGIO_FORMAT_UNKNOWN, &err) != DIAT_OK) {
        fprintf(stderr, "%s\n", err.message);
        exit(1);
    }
    imgio_free(&img);
}

static void make_dir(const char *path)
{
    if (mkdir(path, 0777) != 0) {
        perror(path);
        exit(1);
    }
}

static void remove_tree(const char *path)
{
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", path);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", path);
}

static diat_dataset_options folder_options(const char *src, const char *dst, int batch)
{
    diat_dataset_options o = {0};
    o.source_dir = src;
    o.target_dir = dst;
    o.batch = batch;
    o.seed = 1;
    o.threads = 1;
    return o;
}

static diat_dataset_options celeba_options(const char *root, const char *attribute, int add,
                                           int split, int batch)
{
    diat_dataset_options o = {0};
    o.celeba_root = root;
    o.attribute = attribute;
    o.add = add;
    o.split = split;
    o.batch = batch;
    o.seed = 7;
    o.threads = 1;
    return o;
}

static char warnings[4096];
static int warning_count;

static void collect_warning(void *user, const char *message)
{
    (void)user;
    warning_count++;
    size_t used = strlen(warnings);
    snprintf(warnings + used, sizeof warnings - used, "%s\n", message);
}

/* Opening must fail with a message holding both substrings (b may be NULL). */
#define EXPECT_OPEN_ERROR(opts, a, b) expect_open_error(&(opts), a, b, __LINE__)
static void expect_open_error(const diat_dataset_options *o, const char *a, const char *b, int line)
{
    diat_dataset *d = NULL;
    diat_error err = {0};
    diat_status st = diat_dataset_open(o, &d, &err);
    CHECK_MSG(st != DIAT_OK && d == NULL, "line %d: opened where it should fail", line);
    CHECK_MSG(strstr(err.message, a) != NULL, "line %d: '%s' lacks '%s'", line, err.message, a);
    if (b)
        CHECK_MSG(strstr(err.message, b) != NULL, "line %d: '%s' lacks '%s'", line, err.message, b);
    if (st == DIAT_OK) diat_dataset_close(d);
}

static diat_dataset *open_or_report(const diat_dataset_options *o)
{
    diat_dataset *d = NULL;
    diat_error err = {0};
    if (diat_dataset_open(o, &d, &err) != DIAT_OK) {
        CHECK_MSG(0, "open failed: %s", err.message);
        return NULL;
    }
    return d;
}

static const char *base_name(const char *path)
{
    const char *slash = strrchr(path, '/');
    return slash ? slash + 1 : path;
}

/* ---- a synthetic CelebA root ------------------------------------------- */

/* 12 images: 1-8 train, 9-10 val, 11-12 test. Attributes Smiling (odd ids),
 * Eyeglasses (2, 5, 9), Young (all but 3). */
#define SYN_COUNT 12
static int syn_value(int id, int attr)
{
    switch (attr) {
    case 0: return id % 2 ? 1 : -1;
    case 1: return id == 2 || id == 5 || id == 9 ? 1 : -1;
    default: return id == 3 ? -1 : 1;
    }
}

static int syn_split(int id)
{
    return id <= 8 ? 0 : id <= 10 ? 1 : 2;
}

static void syn_attr_text(char *text, size_t size, const char *eol)
{
    size_t n = (size_t)snprintf(text, size, "%d%sSmiling Eyeglasses Young %s", SYN_COUNT, eol, eol);
    for (int id = 1; id <= SYN_COUNT; id++)
        n += (size_t)snprintf(text + n, size - n, "%06d.jpg %2d %2d %2d%s", id, syn_value(id, 0),
                              syn_value(id, 1), syn_value(id, 2), eol);
}

static void syn_partition_text(char *text, size_t size)
{
    size_t n = 0;
    for (int id = 1; id <= SYN_COUNT; id++)
        n += (size_t)snprintf(text + n, size - n, "%06d.jpg %d\n", id, syn_split(id));
}

/* A root with the flat layout; returns its path in `root`. */
static void make_syn_celeba(char *root, size_t size, const char *name)
{
    snprintf(root, size, "%s/%s", tmp_root, name);
    make_dir(root);
    char path[512], text[4096];
    snprintf(path, sizeof path, "%s/img_align_celeba", root);
    make_dir(path);
    for (int id = 1; id <= SYN_COUNT; id++) {
        snprintf(path, sizeof path, "%s/img_align_celeba/%06d.jpg", root, id);
        write_image(path, 178, 218, 3, 8, id);
    }
    syn_attr_text(text, sizeof text, "\n");
    snprintf(path, sizeof path, "%s/list_attr_celeba.txt", root);
    write_text(path, text);
    syn_partition_text(text, sizeof text);
    snprintf(path, sizeof path, "%s/list_eval_partition.txt", root);
    write_text(path, text);
}

/* Replace line `line` (1-based) of root/file with `replacement` (NULL:
 * delete it), keeping the original in `saved` to restore later. */
static void edit_line(const char *root, const char *file, int line, const char *replacement,
                      char *saved, size_t saved_size)
{
    char path[512], text[8192], out[8192];
    snprintf(path, sizeof path, "%s/%s", root, file);
    FILE *f = fopen(path, "rb");
    size_t n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[n] = '\0';
    snprintf(saved, saved_size, "%s", text);
    size_t o = 0;
    int current = 1;
    for (char *p = text; *p;) {
        char *end = strchr(p, '\n');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (current == line) {
            if (replacement) o += (size_t)snprintf(out + o, sizeof out - o, "%s\n", replacement);
        } else {
            o += (size_t)snprintf(out + o, sizeof out - o, "%.*s\n", (int)len, p);
        }
        current++;
        p += len + (end ? 1 : 0);
    }
    write_text(path, out);
}

static void restore_file(const char *root, const char *file, const char *saved)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", root, file);
    write_text(path, saved);
}

static void test_celeba_selection_synthetic(void)
{
    char root[300];
    make_syn_celeba(root, sizeof root, "syn");
    /* Add eyeglasses on train: sources are the train ids without them. */
    diat_dataset_options o = celeba_options(root, "Eyeglasses", 1, 0, 2);
    diat_dataset *d = open_or_report(&o);
    if (!d) return;
    CHECK(diat_dataset_source_count(d) == 6);
    CHECK(diat_dataset_reference_count(d) == 2);
    for (size_t i = 0; i < diat_dataset_source_count(d); i++) {
        int id = atoi(base_name(diat_dataset_source_path(d, i)));
        CHECK_MSG(syn_split(id) == 0 && syn_value(id, 1) == -1, "source %d", id);
    }
    for (size_t i = 0; i < diat_dataset_reference_count(d); i++) {
        int id = atoi(base_name(diat_dataset_reference_path(d, i)));
        CHECK_MSG(syn_split(id) == 0 && syn_value(id, 1) == 1, "reference %d", id);
    }
    /* File order: the first source is the first train row without them. */
    CHECK(strcmp(base_name(diat_dataset_source_path(d, 0)), "000001.jpg") == 0);
    diat_dataset_close(d);

    /* Remove: the streams swap. */
    o.add = 0;
    d = open_or_report(&o);
    if (d) {
        CHECK(diat_dataset_source_count(d) == 2 && diat_dataset_reference_count(d) == 6);
        diat_dataset_close(d);
    }
    /* No attribute: every face of the split in both streams. */
    o.attribute = NULL;
    o.split = 1;
    d = open_or_report(&o);
    if (d) {
        CHECK(diat_dataset_source_count(d) == 2 && diat_dataset_reference_count(d) == 2);
        diat_dataset_close(d);
    }

    /* Empty selections name the missing side. */
    o = celeba_options(root, "Young", 0, 1, 2); /* every val face is young */
    EXPECT_OPEN_ERROR(o, "No reference faces", "every one has 'Young'");
    o = celeba_options(root, "Eyeglasses", 1, 2, 2); /* no test face has them */
    EXPECT_OPEN_ERROR(o, "No reference faces", "test split");
    o.add = 0;
    EXPECT_OPEN_ERROR(o, "No source faces", "nothing to remove");

    /* Unknown attributes list the valid names, with a hint for case slips. */
    o = celeba_options(root, "Glasses", 1, 0, 2);
    EXPECT_OPEN_ERROR(o, "Unknown attribute 'Glasses'", "Smiling Eyeglasses Young");
    o.attribute = "eyeglasses";
    EXPECT_OPEN_ERROR(o, "did you mean 'Eyeglasses'", NULL);

    /* CRLF label files (edited on Windows) read the same. */
    char text[4096], path[512];
    syn_attr_text(text, sizeof text, "\r\n");
    snprintf(path, sizeof path, "%s/list_attr_celeba.txt", root);
    write_text(path, text);
    o = celeba_options(root, "Eyeglasses", 1, 0, 2);
    d = open_or_report(&o);
    if (d) {
        CHECK(diat_dataset_source_count(d) == 6);
        diat_dataset_close(d);
    }
    syn_attr_text(text, sizeof text, "\n");
    write_text(path, text);

    /* The Google Drive layout: Anno/, Eval/ and Img/. */
    char drive[300], cmd[4096];
    snprintf(drive, sizeof drive, "%s/drive", tmp_root);
    snprintf(cmd, sizeof cmd,
             "mkdir -p '%1$s/Anno' '%1$s/Eval' '%1$s/Img' && cp '%2$s/list_attr_celeba.txt' "
             "'%1$s/Anno/' && cp '%2$s/list_eval_partition.txt' '%1$s/Eval/' && cp -r "
             "'%2$s/img_align_celeba' '%1$s/Img/'",
             drive, root);
    CHECK(system(cmd) == 0);
    o.celeba_root = drive;
    d = open_or_report(&o);
    if (d) {
        CHECK(diat_dataset_source_count(d) == 6 && diat_dataset_reference_count(d) == 2);
        diat_dataset_close(d);
    }
}

static void test_celeba_malformed(void)
{
    char root[300], saved[8192], path[600];
    make_syn_celeba(root, sizeof root, "bad");
    diat_dataset_options o = celeba_options(root, "Eyeglasses", 1, 0, 2);
    const char *attr = "list_attr_celeba.txt", *part = "list_eval_partition.txt";

    edit_line(root, attr, 5, "000003.jpg  1 -1", saved, sizeof saved);
    EXPECT_OPEN_ERROR(o, "list_attr_celeba.txt:5:", "3 columns, expected 4");
    restore_file(root, attr, saved);
    edit_line(root, attr, 6, "000004.jpg  1  0  1", saved, sizeof saved);
    EXPECT_OPEN_ERROR(o, "list_attr_celeba.txt:6:", "'0' in column 3");
    restore_file(root, attr, saved);
    edit_line(root, attr, 4, "000002.jpg  1 yes  1", saved, sizeof saved);
    EXPECT_OPEN_ERROR(o, "list_attr_celeba.txt:4:", "is not 1 or -1");
    restore_file(root, attr, saved);
    edit_line(root, attr, 1, "twelve", saved, sizeof saved);
    EXPECT_OPEN_ERROR(o, "list_attr_celeba.txt:1:", "number of images");
    restore_file(root, attr, saved);
    edit_line(root, attr, 1, "13", saved, sizeof saved);
    EXPECT_OPEN_ERROR(o, "declares 13 images", "lists 12");
    restore_file(root, attr, saved);
    edit_line(root, attr, 1, "11", saved, sizeof saved);
    EXPECT_OPEN_ERROR(o, "list_attr_celeba.txt:14:", "more image rows");
    restore_file(root, attr, saved);
    edit_line(root, attr, 2, "Smiling Eyeglasses Smiling", saved, sizeof saved);
    EXPECT_OPEN_ERROR(o, "list_attr_celeba.txt:2:", "named twice");
    restore_file(root, attr, saved);
    edit_line(root, attr, 7, "000003.jpg -1 -1 -1", saved, sizeof saved);
    EXPECT_OPEN_ERROR(o, "listed again", "000003.jpg");
    restore_file(root, attr, saved);
    edit_line(root, attr, 7, "../000005.jpg -1 -1 -1", saved, sizeof saved);
    EXPECT_OPEN_ERROR(o, "list_attr_celeba.txt:7:", "not an image file name");
    restore_file(root, attr, saved);

    edit_line(root, part, 3, "999999.jpg 0", saved, sizeof saved);
    EXPECT_OPEN_ERROR(o, "list_eval_partition.txt:3:", "'999999.jpg' is not in");
    restore_file(root, part, saved);
    edit_line(root, part, 2, "000002.jpg 3", saved, sizeof saved);
    EXPECT_OPEN_ERROR(o, "list_eval_partition.txt:2:", "split '3'");
    restore_file(root, part, saved);
    edit_line(root, part, 4, "000004.jpg 0 extra", saved, sizeof saved);
    EXPECT_OPEN_ERROR(o, "list_eval_partition.txt:4:", "3 columns, expected 2");
    restore_file(root, part, saved);
    edit_line(root, part, 5, "000001.jpg 0", saved, sizeof saved);
    EXPECT_OPEN_ERROR(o, "list_eval_partition.txt:5:", "listed again");
    restore_file(root, part, saved);

    /* A split the partition leaves empty. */
    edit_line(root, part, 11, NULL, saved, sizeof saved);
    char saved2[8192];
    edit_line(root, part, 11, NULL, saved2, sizeof saved2);
    o.split = 2;
    EXPECT_OPEN_ERROR(o, "no image in the test split", "8 train, 2 val and 0 test");
    restore_file(root, part, saved);
    o.split = 3;
    EXPECT_OPEN_ERROR(o, "Unknown CelebA split 3", NULL);
    o.split = 0;

    /* Missing images, folders and files. */
    snprintf(path, sizeof path, "%s/img_align_celeba/000004.jpg", root);
    char moved[600];
    snprintf(moved, sizeof moved, "%s/moved.jpg", tmp_root);
    CHECK(rename(path, moved) == 0);
    EXPECT_OPEN_ERROR(o, "1 of the 8 train-split images are missing", "'000004.jpg'");
    EXPECT_OPEN_ERROR(o, "list_eval_partition.txt:4", NULL);
    CHECK(rename(moved, path) == 0);
    char images[600], hidden[600];
    snprintf(images, sizeof images, "%s/img_align_celeba", root);
    snprintf(hidden, sizeof hidden, "%s/elsewhere", root);
    CHECK(rename(images, hidden) == 0);
    EXPECT_OPEN_ERROR(o, "has no img_align_celeba/", NULL);
    CHECK(rename(hidden, images) == 0);
    snprintf(path, sizeof path, "%s/%s", root, attr);
    snprintf(hidden, sizeof hidden, "%s/attr.bak", root);
    CHECK(rename(path, hidden) == 0);
    EXPECT_OPEN_ERROR(o, "has no list_attr_celeba.txt", NULL);
    CHECK(rename(hidden, path) == 0);
    snprintf(path, sizeof path, "%s/%s", root, part);
    write_text(path, "");
    EXPECT_OPEN_ERROR(o, "no image in the train split", NULL);
    snprintf(path, sizeof path, "%s/%s", root, attr);
    write_text(path, "");
    EXPECT_OPEN_ERROR(o, "list_attr_celeba.txt:1:", "empty");

    o.celeba_root = "/nonexistent/celeba";
    EXPECT_OPEN_ERROR(o, "'/nonexistent/celeba' cannot be opened", NULL);

    /* Option checks. */
    o = celeba_options(root, "Eyeglasses", 1, 0, 0);
    EXPECT_OPEN_ERROR(o, "batch size 0", NULL);
    o.batch = 2;
    o.threads = 0;
    EXPECT_OPEN_ERROR(o, "thread count 0", NULL);
    o.threads = 1;
    o.source_dir = "/tmp";
    EXPECT_OPEN_ERROR(o, "not both", NULL);
}

/* ---- folder pairs ------------------------------------------------------ */

static char src_dir[300], dst_dir[300];
#define SRC_COUNT 5
#define DST_COUNT 4 /* readable ones; a corrupt file comes on top */

static void make_folders(void)
{
    char path[600];
    snprintf(src_dir, sizeof src_dir, "%s/src", tmp_root);
    snprintf(dst_dir, sizeof dst_dir, "%s/dst", tmp_root);
    make_dir(src_dir);
    make_dir(dst_dir);
    /* Sources: PNGs of every layout, square and not. */
    const int layouts[SRC_COUNT][4] = {
        {128, 128, 3, 8}, {200, 160, 4, 8}, {90, 140, 1, 8}, {256, 256, 3, 16}, {64, 64, 2, 8}};
    for (int i = 0; i < SRC_COUNT; i++) {
        snprintf(path, sizeof path, "%s/s%d.png", src_dir, i);
        write_image(path, layouts[i][0], layouts[i][1], layouts[i][2], layouts[i][3], 100 + i);
    }
    snprintf(path, sizeof path, "%s/notes.txt", src_dir);
    write_text(path, "not an image\n");
    snprintf(path, sizeof path, "%s/.hidden.png", src_dir);
    write_text(path, "not even a PNG");
    snprintf(path, sizeof path, "%s/sub.png", src_dir);
    make_dir(path); /* a folder with an image's name */
    /* Targets: JPEGs, one gray, upper-case extension, and a corrupt one. */
    for (int i = 0; i < DST_COUNT; i++) {
        snprintf(path, sizeof path, "%s/t%d.%s", dst_dir, i, i == 3 ? "JPEG" : "jpg");
        write_image(path, 150 + 10 * i, 150, i == 1 ? 1 : 3, 8, 200 + i);
    }
    snprintf(path, sizeof path, "%s/t9-corrupt.jpg", dst_dir);
    write_text(path, "\xff\xd8\xff\xe0 this is not really a JPEG");
}

/* The face of every image of a folder stream, unflipped and flipped. */
typedef struct known_faces {
    int count;
    float *plain, *flipped;
} known_faces;

static known_faces load_known(diat_dataset *d, int references)
{
    known_faces k = {0};
    int n = (int)(references ? diat_dataset_reference_count(d) : diat_dataset_source_count(d));
    k.plain = calloc((size_t)n, FACE_FLOATS * sizeof(float));
    k.flipped = calloc((size_t)n, FACE_FLOATS * sizeof(float));
    for (int i = 0; i < n; i++) {
        const char *p =
            references ? diat_dataset_reference_path(d, i) : diat_dataset_source_path(d, i);
        diat_error err;
        /* The corrupt one stays all zeros, which no decoded face equals. */
        diat_dataset_load_face(p, 0, 0, k.plain + i * FACE_FLOATS, &err);
        diat_dataset_load_face(p, 0, 1, k.flipped + i * FACE_FLOATS, &err);
    }
    k.count = n;
    return k;
}

/* Which image a face is (-1: none), and whether it is flipped. */
static int identify(const known_faces *k, const float *face, int *flipped)
{
    for (int i = 0; i < k->count; i++) {
        if (memcmp(face, k->plain + i * FACE_FLOATS, FACE_FLOATS * sizeof(float)) == 0) {
            *flipped = 0;
            return i;
        }
        if (memcmp(face, k->flipped + i * FACE_FLOATS, FACE_FLOATS * sizeof(float)) == 0) {
            *flipped = 1;
            return i;
        }
    }
    return -1;
}

static void test_folder_pairs(void)
{
    diat_dataset_options o = folder_options(src_dir, dst_dir, SRC_COUNT);
    o.flip = 1;
    o.threads = 2;
    o.warn = collect_warning;
    warnings[0] = '\0';
    warning_count = 0;
    diat_dataset *d = open_or_report(&o);
    if (!d) return;
    CHECK(diat_dataset_source_count(d) == SRC_COUNT);
    CHECK(diat_dataset_reference_count(d) == DST_COUNT + 1); /* the corrupt one is listed */
    CHECK(strcmp(base_name(diat_dataset_reference_path(d, 3)), "t3.JPEG") == 0);
    known_faces src = load_known(d, 0), dst = load_known(d, 1);
    float *s = malloc(SRC_COUNT * FACE_FLOATS * sizeof(float));
    float *r = malloc(SRC_COUNT * FACE_FLOATS * sizeof(float));
    int flips = 0, faces = 0, reshuffled = 0, first_order[SRC_COUNT];
    diat_error err;
    /* Batch = source count, so every batch is one source epoch. */
    for (int epoch = 0; epoch < 12; epoch++) {
        CHECK(diat_dataset_next(d, s, r, &err) == DIAT_OK);
        int seen[SRC_COUNT] = {0}, same_order = 1;
        for (int j = 0; j < SRC_COUNT; j++) {
            int flipped = 0;
            int id = identify(&src, s + j * FACE_FLOATS, &flipped);
            CHECK_MSG(id >= 0, "epoch %d face %d is no source image", epoch, j);
            if (id < 0) continue;
            seen[id]++;
            flips += flipped;
            faces++;
            if (epoch == 0) first_order[j] = id;
            same_order &= first_order[j] == id;
            int rid = identify(&dst, r + j * FACE_FLOATS, &flipped);
            CHECK_MSG(rid >= 0 && rid != DST_COUNT, "reference %d of epoch %d: %d", j, epoch, rid);
            flips += flipped;
            faces++;
        }
        for (int i = 0; i < SRC_COUNT; i++)
            CHECK_MSG(seen[i] == 1, "epoch %d shows source %d %d times", epoch, i, seen[i]);
        reshuffled += !same_order;
    }
    CHECK_MSG(reshuffled >= 8, "only %d of 11 epochs reshuffled", reshuffled);
    CHECK_MSG(flips > faces * 3 / 10 && flips < faces * 7 / 10, "%d flips of %d", flips, faces);
    /* The corrupt target (in every reference epoch) was skipped once,
     * counted and named. */
    CHECK(diat_dataset_skipped(d) == 1);
    CHECK(warning_count == 1);
    CHECK_MSG(strstr(warnings, "t9-corrupt.jpg") != NULL, "%s", warnings);
    /* Every value in range, gray replicated to RGB. */
    float lo = 1, hi = -1;
    for (size_t i = 0; i < SRC_COUNT * FACE_FLOATS; i++) {
        lo = s[i] < lo ? s[i] : lo;
        hi = s[i] > hi ? s[i] : hi;
    }
    CHECK(lo >= -1.0f && hi <= 1.0f && hi > lo);
    const float *gray = dst.plain + 1 * FACE_FLOATS;
    CHECK(memcmp(gray, gray + 128 * 128, 128 * 128 * sizeof(float)) == 0 &&
          memcmp(gray, gray + 2 * 128 * 128, 128 * 128 * sizeof(float)) == 0);
    /* Fixed sources: the first ones in name order, unflipped. */
    CHECK(diat_dataset_fixed_sources(d, 3, s, &err) == DIAT_OK);
    CHECK(memcmp(s, src.plain, 3 * FACE_FLOATS * sizeof(float)) == 0);
    CHECK(diat_dataset_fixed_sources(d, SRC_COUNT + 1, s, &err) == DIAT_ERR_ARGUMENT);
    diat_dataset_close(d);

    /* Without flips, no face is mirrored. */
    o.flip = 0;
    o.warn = NULL;
    d = open_or_report(&o);
    if (d) {
        int mirrored = 0;
        for (int b = 0; b < 4; b++) {
            CHECK(diat_dataset_next(d, s, r, &err) == DIAT_OK);
            for (int j = 0; j < SRC_COUNT; j++) {
                int flipped = 0;
                identify(&src, s + j * FACE_FLOATS, &flipped);
                mirrored += flipped;
            }
        }
        CHECK(mirrored == 0);
        diat_dataset_close(d);
    }
    free(src.plain);
    free(src.flipped);
    free(dst.plain);
    free(dst.flipped);
    free(s);
    free(r);
}

static void test_face_geometry(void)
{
    char path[600];
    float *face = malloc(FACE_FLOATS * sizeof(float));
    diat_error err;
    /* The centred square: a 300x100 image whose middle third is one colour. */
    imgio_image img;
    imgio_alloc(&img, 300, 100, 3, 8, &err);
    for (int y = 0; y < 100; y++)
        for (int x = 0; x < 300; x++)
            for (int c = 0; c < 3; c++)
                img.samples[((size_t)y * 300 + x) * 3 + c] =
                    (uint16_t)(x >= 100 && x < 200 ? 51 * (c + 1) : 255);
    snprintf(path, sizeof path, "%s/wide.png", tmp_root);
    imgio_save(path, &img, IMGIO_FORMAT_PNG, &err);
    imgio_free(&img);
    CHECK(diat_dataset_load_face(path, 0, 0, face, &err) == DIAT_OK);
    /* The filter reaches a pixel past the square's edges (as it would in
     * any photo), so only the columns inside are uniform. */
    float worst = 0;
    for (int c = 0; c < 3; c++)
        for (int y = 0; y < 128; y++)
            for (int x = 2; x < 126; x++) {
                float want = 51.0f * (c + 1) / 255.0f * 2 - 1;
                float diff = fabsf(face[(c * 128 + y) * 128 + x] - want);
                worst = diff > worst ? diff : worst;
            }
    CHECK_MSG(worst < 1e-5f, "centred crop off by %g", worst);
    /* CelebA geometry refuses sizes that are neither 178:218 nor square. */
    CHECK(diat_dataset_load_face(path, 1, 0, face, &err) == DIAT_ERR_FORMAT);
    CHECK_MSG(strstr(err.message, "300x100") != NULL, "%s", err.message);
    /* Alpha is dropped, not blended: an RGBA image with alpha 0 keeps its
     * colours. */
    imgio_alloc(&img, 128, 128, 4, 8, &err);
    for (int i = 0; i < 128 * 128; i++) {
        img.samples[i * 4 + 0] = 255;
        img.samples[i * 4 + 1] = 0;
        img.samples[i * 4 + 2] = 0;
        img.samples[i * 4 + 3] = 0;
    }
    snprintf(path, sizeof path, "%s/transparent.png", tmp_root);
    imgio_save(path, &img, IMGIO_FORMAT_PNG, &err);
    imgio_free(&img);
    CHECK(diat_dataset_load_face(path, 0, 0, face, &err) == DIAT_OK);
    CHECK(face[0] == 1.0f && face[128 * 128] == -1.0f && face[2 * 128 * 128] == -1.0f);
    /* Unreadable files say why, naming the file. */
    CHECK(diat_dataset_load_face("/nonexistent/x.png", 0, 0, face, &err) == DIAT_ERR_IO);
    CHECK(strstr(err.message, "/nonexistent/x.png") != NULL);
    free(face);
}

static void test_folder_errors(void)
{
    char empty[600], bad[600], path[700];
    snprintf(empty, sizeof empty, "%s/empty", tmp_root);
    make_dir(empty);
    diat_dataset_options o = folder_options(src_dir, empty, 2);
    EXPECT_OPEN_ERROR(o, "target folder", "has no PNG or JPEG files");
    o.target_dir = "/nonexistent/faces";
    EXPECT_OPEN_ERROR(o, "target folder '/nonexistent/faces' cannot be opened", NULL);
    o.target_dir = NULL;
    EXPECT_OPEN_ERROR(o, "Give a CelebA folder, or both", NULL);

    /* All references unreadable: the batch cannot be filled, a clear error,
     * and again when retried. */
    snprintf(bad, sizeof bad, "%s/allbad", tmp_root);
    make_dir(bad);
    for (int i = 0; i < 3; i++) {
        snprintf(path, sizeof path, "%s/b%d.png", bad, i);
        write_text(path, i == 0 ? "" : "\x89PNG\r\n\x1a\n truncated");
    }
    o = folder_options(src_dir, bad, 2);
    o.warn = collect_warning;
    warning_count = 0;
    warnings[0] = '\0';
    diat_dataset *d = open_or_report(&o);
    if (!d) return;
    float *s = malloc(2 * FACE_FLOATS * sizeof(float)),
          *r = malloc(2 * FACE_FLOATS * sizeof(float));
    diat_error err = {0};
    CHECK(diat_dataset_next(d, s, r, &err) == DIAT_ERR_FORMAT);
    CHECK_MSG(strstr(err.message, "Cannot fill batch 0") && strstr(err.message, "reference"), "%s",
              err.message);
    CHECK(diat_dataset_skipped(d) == 3 && warning_count == 3);
    CHECK_MSG(strstr(warnings, "b0.png") && strstr(warnings, "empty"), "%s", warnings);
    CHECK(diat_dataset_next(d, s, r, &err) == DIAT_ERR_FORMAT);
    diat_dataset_position p;
    diat_dataset_get_position(d, &p);
    CHECK(p.words[2] == 0); /* a failed batch does not advance */
    diat_dataset_close(d);
    free(s);
    free(r);
}

/* ---- determinism and resume -------------------------------------------- */

/* `count` batches of `d` into `out` (sources then references per batch). */
static int take(diat_dataset *d, int count, float *out)
{
    size_t per = (size_t)diat_dataset_batch_size(d) * FACE_FLOATS;
    diat_error err;
    for (int b = 0; b < count; b++)
        if (diat_dataset_next(d, out + 2 * b * per, out + (2 * b + 1) * per, &err) != DIAT_OK) {
            CHECK_MSG(0, "next: %s", err.message);
            return -1;
        }
    return 0;
}

static void check_resume(const diat_dataset_options *base, const char *what)
{
    const int before = 5, after = 6;
    diat_dataset_options o = *base;
    size_t per = (size_t)o.batch * FACE_FLOATS * 2;
    float *ref = malloc((before + after) * per * sizeof(float));
    float *got = malloc((before + after) * per * sizeof(float));
    diat_dataset *a = open_or_report(&o);
    if (!a) return;
    take(a, before + after, ref);
    diat_dataset_close(a);

    /* Same seed, other thread count: the same batches. */
    o.threads = base->threads == 1 ? 3 : 1;
    diat_dataset *b = open_or_report(&o);
    if (!b) return;
    take(b, before + after, got);
    CHECK_MSG(memcmp(ref, got, (before + after) * per * sizeof(float)) == 0,
              "%s: threads change the batches", what);
    diat_dataset_close(b);

    /* Checkpoint after `before` batches (prefetch is running ahead), then a
     * fresh data set with another seed restores and continues exactly. */
    o = *base;
    o.threads = 2;
    diat_dataset *c = open_or_report(&o);
    if (!c) return;
    take(c, before, got);
    diat_dataset_position p;
    diat_dataset_get_position(c, &p);
    take(c, 2, got); /* moves on; the restore must jump back */
    diat_error err;
    CHECK(diat_dataset_set_position(c, &p, &err) == DIAT_OK);
    take(c, after, got);
    CHECK_MSG(memcmp(ref + before * per, got, after * per * sizeof(float)) == 0,
              "%s: set_position on the same data set", what);
    diat_dataset_close(c);
    o.seed = base->seed + 12345;
    o.threads = 1;
    diat_dataset *e = open_or_report(&o);
    if (!e) return;
    CHECK(diat_dataset_set_position(e, &p, &err) == DIAT_OK);
    take(e, after, got);
    CHECK_MSG(memcmp(ref + before * per, got, after * per * sizeof(float)) == 0,
              "%s: restore in a new data set", what);
    CHECK_NEAR(diat_dataset_epoch(e),
               (double)(before + after) * o.batch / (double)diat_dataset_source_count(e), 1e-9);
    diat_dataset_close(e);

    /* Another seed: other batches. */
    e = open_or_report(&o);
    if (!e) return;
    take(e, 2, got);
    CHECK_MSG(memcmp(ref, got, 2 * per * sizeof(float)) != 0, "%s: seed has no effect", what);
    /* Positions from other data or settings are refused. */
    diat_dataset_position q = p;
    q.words[6] ^= 1;
    CHECK(diat_dataset_set_position(e, &q, &err) == DIAT_ERR_ARGUMENT);
    CHECK_MSG(strstr(err.message, "other data") != NULL, "%s", err.message);
    q = p;
    q.words[5] ^= 1;
    CHECK(diat_dataset_set_position(e, &q, &err) == DIAT_ERR_ARGUMENT);
    q = p;
    q.words[0] = 42;
    CHECK(diat_dataset_set_position(e, &q, &err) == DIAT_ERR_FORMAT);
    diat_dataset_close(e);
    free(ref);
    free(got);
}

static void test_determinism_folders(void)
{
    diat_dataset_options o = folder_options(src_dir, dst_dir, 3);
    o.flip = 1;
    o.warn = collect_warning; /* the corrupt target; already tested */
    check_resume(&o, "folders");
}

/* ---- the shared CelebA copies ------------------------------------------ */

/* Attribute values of every image named in a label file, by name. */
typedef struct label_table {
    int count, column;
    char (*names)[16];
    signed char *value;
    signed char *split;
} label_table;

static int find_label(const label_table *t, const char *name)
{
    int lo = 0, hi = t->count - 1; /* the files are sorted by name */
    while (lo <= hi) {
        int mid = (lo + hi) / 2, c = strcmp(t->names[mid], name);
        if (c == 0) return mid;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid - 1;
    }
    return -1;
}

/* An independent, simple reading of the label files for one attribute. */
static int read_labels(const char *root, const char *attribute, label_table *t)
{
    char path[1200], line[1024];
    snprintf(path, sizeof path, "%s/list_attr_celeba.txt", root);
    FILE *f = fopen(path, "r");
    if (!f || !fgets(line, sizeof line, f)) return -1;
    t->count = atoi(line);
    t->names = calloc((size_t)t->count, sizeof *t->names);
    t->value = calloc((size_t)t->count, 1);
    t->split = calloc((size_t)t->count, 1);
    if (!fgets(line, sizeof line, f)) return -1;
    t->column = -1;
    int col = 0;
    for (char *tok = strtok(line, " \r\n"); tok; tok = strtok(NULL, " \r\n"), col++)
        if (strcmp(tok, attribute) == 0) t->column = col;
    for (int i = 0; i < t->count && fgets(line, sizeof line, f); i++) {
        char *tok = strtok(line, " \r\n");
        snprintf(t->names[i], sizeof t->names[i], "%s", tok);
        for (int c = 0; c <= t->column; c++) tok = strtok(NULL, " \r\n");
        t->value[i] = (signed char)atoi(tok);
    }
    fclose(f);
    snprintf(path, sizeof path, "%s/list_eval_partition.txt", root);
    f = fopen(path, "r");
    char name[64];
    int split;
    while (f && fscanf(f, "%63s %d", name, &split) == 2) {
        int i = find_label(t, name);
        if (i >= 0) t->split[i] = (signed char)split;
    }
    if (f) fclose(f);
    return t->column >= 0 ? 0 : -1;
}

static void free_labels(label_table *t)
{
    free(t->names);
    free(t->value);
    free(t->split);
}

static void check_selection(const char *root, const char *attribute, int add, int split)
{
    label_table t = {0};
    if (read_labels(root, attribute, &t) != 0) {
        CHECK_MSG(0, "cannot read the labels of %s", root);
        return;
    }
    int want_sources = 0, want_references = 0;
    for (int i = 0; i < t.count; i++)
        if (t.split[i] == split) {
            int has = t.value[i] > 0;
            want_sources += has != add;
            want_references += has == add;
        }
    diat_dataset_options o = celeba_options(root, attribute, add, split, 4);
    diat_dataset *d = open_or_report(&o);
    if (d) {
        CHECK_MSG((int)diat_dataset_source_count(d) == want_sources, "%s %s: %zu sources, want %d",
                  attribute, add ? "add" : "remove", diat_dataset_source_count(d), want_sources);
        CHECK((int)diat_dataset_reference_count(d) == want_references);
        int wrong = 0;
        for (size_t i = 0; i < diat_dataset_source_count(d); i++) {
            int k = find_label(&t, base_name(diat_dataset_source_path(d, i)));
            wrong += k < 0 || t.split[k] != split || (t.value[k] > 0) == add;
        }
        for (size_t i = 0; i < diat_dataset_reference_count(d); i++) {
            int k = find_label(&t, base_name(diat_dataset_reference_path(d, i)));
            wrong += k < 0 || t.split[k] != split || (t.value[k] > 0) != add;
        }
        CHECK_MSG(wrong == 0, "%s: %d faces in the wrong stream or split", attribute, wrong);
        diat_dataset_close(d);
    }
    free_labels(&t);
}

static void test_celeba128(void)
{
    char root[1100];
    snprintf(root, sizeof root, "%s/celeba128", shared);
    check_selection(root, "Eyeglasses", 0, 0);
    check_selection(root, "Eyeglasses", 1, 1);
    check_selection(root, "Smiling", 1, 0);
    check_selection(root, "Mustache", 0, 1);
    diat_dataset_options o = celeba_options(root, "Eyeglasses", 0, 2, 4);
    EXPECT_OPEN_ERROR(o, "no image in the test split", "37540 train, 4535 val and 0 test");
    o = celeba_options(root, "Male", 1, 0, 8);
    o.flip = 1;
    check_resume(&o, "celeba128");
    /* Fixed faces: the first sources in file order, as load_face gives them. */
    o.split = 1;
    diat_dataset *d = open_or_report(&o);
    if (d) {
        float *fixed = malloc(4 * FACE_FLOATS * sizeof(float));
        float *one = malloc(FACE_FLOATS * sizeof(float));
        diat_error err;
        CHECK(diat_dataset_fixed_sources(d, 4, fixed, &err) == DIAT_OK);
        CHECK(diat_dataset_load_face(diat_dataset_source_path(d, 3), 1, 0, one, &err) == DIAT_OK);
        CHECK(memcmp(one, fixed + 3 * FACE_FLOATS, FACE_FLOATS * sizeof(float)) == 0);
        diat_dataset_close(d);
        free(fixed);
        free(one);
    }
}

/* Mean |a - b| over a face in [0, 1] units. */
static double face_diff(const float *a, const float *b)
{
    double sum = 0;
    for (size_t i = 0; i < FACE_FLOATS; i++) sum += fabs((double)a[i] - b[i]);
    return sum / FACE_FLOATS / 2;
}

static void test_celeba_orig_geometry(void)
{
    char root[1100], path[1200];
    snprintf(root, sizeof root, "%s/celeba-orig", shared);
    /* All 256 originals are val-split images that celeba128 also holds
     * (cropped at row 20, Lanczos-resized, JPEG 90). */
    diat_dataset_options o = celeba_options(root, "Smiling", 1, 1, 4);
    diat_dataset *d = open_or_report(&o);
    if (!d) return;
    CHECK(diat_dataset_source_count(d) + diat_dataset_reference_count(d) == 256);
    float *orig = malloc(FACE_FLOATS * sizeof(float)), *small = malloc(FACE_FLOATS * sizeof(float));
    float *other = malloc(FACE_FLOATS * sizeof(float));
    diat_error err;
    double same = 0, different = 0;
    int compared = 0, best_at_20 = 0;
    for (size_t i = 0; i < 12 && i < diat_dataset_source_count(d); i++) {
        const char *p = diat_dataset_source_path(d, i);
        snprintf(path, sizeof path, "%s/celeba128/img_align_celeba/%s", shared, base_name(p));
        if (access(path, R_OK) != 0) continue;
        CHECK(diat_dataset_load_face(p, 1, 0, orig, &err) == DIAT_OK);
        CHECK(diat_dataset_load_face(path, 1, 0, small, &err) == DIAT_OK);
        snprintf(path, sizeof path, "%s/celeba128/img_align_celeba/%s", shared,
                 base_name(diat_dataset_source_path(d, (i + 5) % diat_dataset_source_count(d))));
        CHECK(diat_dataset_load_face(path, 1, 0, other, &err) == DIAT_OK);
        same += face_diff(orig, small);
        different += face_diff(orig, other);
        compared++;
        /* Row 20 fits better than crops shifted by a few rows either way. */
        imgio_image img;
        CHECK(imgio_load(p, &img, &err) == DIAT_OK);
        double best = 1e9;
        int best_row = -1;
        for (int row = 14; row <= 26; row += 2) {
            diat_crop_face(&img.image, 0, row, 178, other, &err);
            for (size_t k = 0; k < FACE_FLOATS; k++) other[k] = other[k] * 2 - 1;
            double diff = face_diff(other, small);
            if (diff < best) best = diff, best_row = row;
        }
        imgio_free(&img);
        best_at_20 += best_row == 20;
    }
    CHECK(compared >= 10);
    same /= compared;
    different /= compared;
    printf("celeba-orig vs celeba128: mean |diff| %.4f same face, %.4f other face (of 1)\n", same,
           different);
    CHECK_MSG(same < 0.02, "cropped originals differ from celeba128 by %.4f", same);
    CHECK(different > 4 * same);
    CHECK_MSG(best_at_20 == compared, "row 20 fits best for %d of %d", best_at_20, compared);
    diat_dataset_close(d);
    /* The originals are all val: the train split is empty here. */
    o.split = 0;
    EXPECT_OPEN_ERROR(o, "no image in the train split", "0 train, 256 val");
    /* Batches of 178x218 originals through the threads. */
    o.split = 1;
    o.threads = 2;
    d = open_or_report(&o);
    if (d) {
        float *s = malloc(4 * FACE_FLOATS * sizeof(float)),
              *r = malloc(4 * FACE_FLOATS * sizeof(float));
        CHECK(diat_dataset_next(d, s, r, &err) == DIAT_OK);
        CHECK(diat_dataset_skipped(d) == 0);
        free(s);
        free(r);
        diat_dataset_close(d);
    }
    free(orig);
    free(small);
    free(other);
}

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

/* Not a check: how fast batches come (sources and references both count). */
static void report_throughput(void)
{
    char root[1100];
    snprintf(root, sizeof root, "%s/celeba128", shared);
    const int batch = 16, batches = 40;
    float *s = malloc(batch * FACE_FLOATS * sizeof(float)),
          *r = malloc(batch * FACE_FLOATS * sizeof(float));
    for (int threads = 1; threads <= 2; threads++) {
        diat_dataset_options o = celeba_options(root, "Eyeglasses", 0, 0, batch);
        o.threads = threads;
        o.flip = 1;
        diat_dataset *d = open_or_report(&o);
        if (!d) break;
        diat_error err;
        diat_dataset_next(d, s, r, &err); /* start the threads, warm the cache */
        double t0 = now();
        for (int b = 0; b < batches; b++) CHECK(diat_dataset_next(d, s, r, &err) == DIAT_OK);
        double dt = now() - t0;
        printf("celeba128 decode: %d thread%s: %.0f images/s\n", threads, threads > 1 ? "s" : "",
               2.0 * batch * batches / dt);
        diat_dataset_close(d);
    }
    free(s);
    free(r);
}

int main(void)
{
    snprintf(tmp_root, sizeof tmp_root, "%s/diat-test-dataset-XXXXXX",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(tmp_root)) {
        perror("mkdtemp");
        return 1;
    }
    const char *env = getenv("DIAT_SHARED_DATA");
    snprintf(shared, sizeof shared, "%s", env ? env : "");
    char probe[1200];
    snprintf(probe, sizeof probe, "%s/celeba128/list_attr_celeba.txt", shared);
    have_shared = env && access(probe, R_OK) == 0;
    snprintf(probe, sizeof probe, "%s/celeba-orig/list_attr_celeba.txt", shared);
    have_shared = have_shared && access(probe, R_OK) == 0;

    make_folders();
    RUN_TEST(test_celeba_selection_synthetic);
    RUN_TEST(test_celeba_malformed);
    RUN_TEST(test_face_geometry);
    RUN_TEST(test_folder_pairs);
    RUN_TEST(test_folder_errors);
    RUN_TEST(test_determinism_folders);
    if (have_shared) {
        RUN_TEST(test_celeba128);
        RUN_TEST(test_celeba_orig_geometry);
        report_throughput();
    }
    remove_tree(tmp_root);
    int rc = TEST_SUMMARY();
    if (rc == 0 && !have_shared) {
        printf("SKIP: the shared CelebA copies (DIAT_SHARED_DATA=%s: celeba128/, celeba-orig/) are "
               "absent; only the synthetic checks ran.\n",
               env ? env : "(unset)");
        return 77;
    }
    return rc;
}

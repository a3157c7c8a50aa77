/* diat — the command-line front end of libdiat.
 *
 *   diat info MODEL            what a model file holds
 *   diat apply -m MODEL IN OUT edit the faces in a PNG or JPEG photo
 *   diat detect IN             list the faces found in a photo
 *   diat eval -m MODEL --celeba DIR   measure a model on CelebA val (eval.c)
 *   diat version               versions of diat, its BLAS and backends
 *
 * The CLI calls the same engine pipeline as the GIMP plug-in. Exit codes:
 * 0 success, 1 a runtime failure (unreadable file, bad model, ...), 2 a usage
 * error (unknown option, malformed number, ...). Each failure is one line on
 * stderr starting "diat: error: ".
 */
#include "cli.h"
#include "diat.h"
#include "diat-train.h"
#include "eval.h"
#include "image-io.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef DIAT_VERSION
#define DIAT_VERSION "unknown"
#endif

#define MAX_ASPECT 1.25 /* beyond this, the whole image is no face crop */
#define DETECTOR_FILE "face-detector-tiny.safetensors"
#define LANDMARKS_FILE "face-landmarks-68.safetensors"

int report_error(int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("diat: error: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return code;
}

static int usage_error(const char *command, const char *what, const char *detail)
{
    fprintf(stderr, "diat: error: %s%s\nTry 'diat %s --help'.\n", what, detail ? detail : "",
            command);
    return EXIT_USAGE;
}

/* getopt_long reports with opterr = 0 and ':' first: turn its codes into one
 * clear line naming the option. */
static int option_error(const char *command, int code, char *const argv[])
{
    const char *arg = argv[optind - 1];
    char text[200];
    if (code == ':')
        snprintf(text, sizeof text, "option '%s' needs an argument", arg);
    else if (optopt && optopt < 128)
        snprintf(text, sizeof text, "unknown option '-%c'", optopt);
    else
        snprintf(text, sizeof text, "unknown option '%s'", arg);
    return usage_error(command, text, NULL);
}

static int parse_int(const char *text, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long value = strtol(text, &end, 10);
    if (errno || end == text || *end || value < lo || value > hi) return -1;
    *out = value;
    return 0;
}

/* "x,y,w,h" with w, h > 0; x and y may be negative (box partly outside). */
static int parse_box(const char *text, diat_box *box)
{
    long v[4];
    const char *p = text;
    for (int i = 0; i < 4; i++) {
        char *end;
        errno = 0;
        v[i] = strtol(p, &end, 10);
        if (errno || end == p || v[i] < -IMGIO_MAX_SIDE || v[i] > IMGIO_MAX_SIDE) return -1;
        if (i < 3 && *end != ',') return -1;
        if (i == 3 && *end) return -1;
        p = end + 1;
    }
    if (v[2] <= 0 || v[3] <= 0) return -1;
    *box = (diat_box){(int)v[0], (int)v[1], (int)v[2], (int)v[3]};
    return 0;
}

int cli_same_file(const char *a, const char *b)
{
    struct stat sa, sb;
    if (strcmp(a, b) == 0) return 1;
    return stat(a, &sa) == 0 && stat(b, &sb) == 0 && sa.st_dev == sb.st_dev &&
           sa.st_ino == sb.st_ino;
}

/* ---- face model files ---------------------------------------------------- */

/* The face detector and landmark models ship in models/ and install to
 * PREFIX/share/diat/models. Looked for, in order:
 *   1. each folder of $DIAT_MODEL_PATH (colon-separated);
 *   2. ../share/diat/models next to the running executable (a relocated or
 *      unpacked install);
 *   3. the configured install folder (DIAT_MODEL_DIR);
 *   4. the source tree's models/ (DIAT_SOURCE_MODEL_DIR), so a build runs
 *      uninstalled.
 * `searched` receives the folders tried, for the error message. */
int cli_find_model_file(const char *name, char *path, size_t size, char *searched,
                        size_t searched_size)
{
    enum { MAX_DIRS = 8, DIR_SIZE = 4096 };
    char dirs[MAX_DIRS][DIR_SIZE];
    int count = 0;
    const char *env = getenv("DIAT_MODEL_PATH");
    for (const char *p = env; p && *p && count < MAX_DIRS - 3;) {
        size_t len = strcspn(p, ":");
        if (len > 0 && len < DIR_SIZE) {
            memcpy(dirs[count], p, len);
            dirs[count++][len] = '\0';
        }
        p += len + (p[len] == ':');
    }
    char exe[DIR_SIZE - 32];
    ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
    char *slash = len > 0 ? (exe[len] = '\0', strrchr(exe, '/')) : NULL;
    if (slash) {
        *slash = '\0'; /* the bin folder */
        if (snprintf(dirs[count], DIR_SIZE, "%s/../share/diat/models", exe) < DIR_SIZE) count++;
    }
#ifdef DIAT_MODEL_DIR
    if (snprintf(dirs[count], DIR_SIZE, "%s", DIAT_MODEL_DIR) < DIR_SIZE) count++;
#endif
#ifdef DIAT_SOURCE_MODEL_DIR
    if (snprintf(dirs[count], DIR_SIZE, "%s", DIAT_SOURCE_MODEL_DIR) < DIR_SIZE) count++;
#endif
    size_t used = 0;
    searched[0] = '\0';
    for (int i = 0; i < count; i++) {
        int n = snprintf(path, size, "%s/%s", dirs[i], name);
        if (n > 0 && (size_t)n < size && access(path, R_OK) == 0) return 0;
        if (used < searched_size)
            used += (size_t)snprintf(searched + used, searched_size - used, "%s%s", i ? ", " : "",
                                     dirs[i]);
    }
    return -1;
}

/* Load the face finder from the given files or, for each one left NULL,
 * from the lookup above. Returns 0, or the exit code after reporting. */
static int load_finder(diat_context *ctx, const char *detector, const char *landmarks,
                       diat_face_finder **finder, diat_error *err)
{
    char found[2][4096], searched[2048];
    const char *paths[2] = {detector, landmarks};
    static const char *const names[2] = {DETECTOR_FILE, LANDMARKS_FILE};
    for (int i = 0; i < 2; i++) {
        if (paths[i]) continue;
        if (cli_find_model_file(names[i], found[i], sizeof found[i], searched, sizeof searched))
            return report_error(EXIT_RUNTIME,
                                "the face model '%s' was not found (looked in $DIAT_MODEL_PATH "
                                "and %s); set DIAT_MODEL_PATH to its folder, or give the face "
                                "with --box X,Y,W,H --no-align.",
                                names[i], searched);
        paths[i] = found[i];
    }
    if (diat_face_finder_load(ctx, paths[0], paths[1], finder, err) != DIAT_OK)
        return report_error(EXIT_RUNTIME, "%s", err->message);
    return 0;
}

/* "N" (1-based, as `diat detect` numbers faces) or "all" (0). */
static int parse_face(const char *text, int *out)
{
    long n;
    if (strcmp(text, "all") == 0) {
        *out = 0;
        return 0;
    }
    if (parse_int(text, 1, 100000, &n) != 0) return -1;
    *out = (int)n;
    return 0;
}

/* ---- progress ------------------------------------------------------------ */

typedef struct progress {
    int quiet, tty;
    char stage[96];
} progress;

/* One line per stage; on a terminal the line also counts up in place. */
static void progress_stage(progress *p, const char *stage)
{
    if (p->quiet || strcmp(stage, p->stage) == 0) return;
    snprintf(p->stage, sizeof p->stage, "%s", stage);
    fprintf(stderr, p->tty ? "\r\033[Kdiat: %s" : "diat: %s\n", stage);
    fflush(stderr);
}

static int progress_engine(void *user, float fraction, const char *stage)
{
    progress *p = user;
    if (p->quiet || strcmp(stage, "done") == 0) return 0;
    progress_stage(p, stage);
    if (p->tty) {
        fprintf(stderr, "\r\033[Kdiat: %s %3d%%", stage, (int)lrintf(fraction * 100.0f));
        fflush(stderr);
    }
    return 0;
}

static void progress_end(progress *p)
{
    if (!p->quiet && p->tty && p->stage[0]) fputs("\r\033[K", stderr);
}

/* ---- diat info ------------------------------------------------------------ */

static const char *dtype_name(diat_dtype dtype)
{
    switch (dtype) {
    case DIAT_DTYPE_F32: return "F32";
    case DIAT_DTYPE_F16: return "F16";
    case DIAT_DTYPE_U8: return "U8";
    }
    return "?";
}

/* Metadata values may span lines (licences): indent continuation lines. */
static void print_indented_value(const char *value)
{
    for (const char *p = value; *p; p++) {
        fputc(*p, stdout);
        if (*p == '\n' && p[1]) fputs("    ", stdout);
    }
    fputc('\n', stdout);
}

static void info_help(void)
{
    puts("Usage: diat info MODEL\n"
         "\n"
         "Print what a DIAT model file (.safetensors) holds: its metadata (one\n"
         "'key: value' per line), its tensors (name, dtype, shape), the number of\n"
         "learned parameters and the file size. The file is fully validated, as\n"
         "diat apply would load it; a file that does not validate is an error.\n"
         "\n"
         "Options:\n"
         "  -h, --help   show this help");
}

static int command_info(int argc, char *argv[])
{
    static const struct option options[] = {{"help", no_argument, NULL, 'h'}, {0, 0, 0, 0}};
    int c;
    opterr = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, ":h", options, NULL)) != -1) {
        if (c == 'h') {
            info_help();
            return 0;
        }
        return option_error("info", c, argv);
    }
    if (argc - optind != 1)
        return usage_error("info", argc - optind < 1 ? "no model file given" : "too many arguments",
                           NULL);
    const char *path = argv[optind];

    diat_error err = {0};
    diat_safetensors *st = NULL;
    if (diat_safetensors_open(path, &st, &err) != DIAT_OK)
        return report_error(EXIT_RUNTIME, "%s", err.message);
    struct stat sb;
    long long size = stat(path, &sb) == 0 ? (long long)sb.st_size : -1;

    printf("file: %s\n", path);
    printf("file size: %lld bytes (%.1f KiB)\n", size, (double)size / 1024.0);
    size_t meta = diat_safetensors_metadata_count(st);
    printf("metadata (%zu entries):\n", meta);
    for (size_t i = 0; i < meta; i++) {
        const char *key, *value;
        diat_safetensors_metadata_at(st, i, &key, &value);
        printf("  %s: ", key);
        print_indented_value(value);
    }
    size_t count = diat_safetensors_count(st);
    unsigned long long stored = 0;
    printf("tensors (%zu):\n", count);
    for (size_t i = 0; i < count; i++) {
        const diat_st_tensor *t = diat_safetensors_at(st, i);
        char shape[160] = "";
        size_t used = 0;
        unsigned long long elements = 1;
        for (int d = 0; d < t->ndim && used < sizeof shape; d++) {
            used += (size_t)snprintf(shape + used, sizeof shape - used, "%s%lld", d ? ", " : "",
                                     (long long)t->shape[d]);
            elements *= (unsigned long long)t->shape[d];
        }
        stored += elements;
        printf("  %-28s %-4s [%s]\n", t->name, dtype_name(t->dtype), shape);
    }
    /* The trainer's other files (denoiser, classifier) are not edit models:
     * describe them without judging them as one. */
    const char *format = diat_safetensors_metadata(st, "format");
    if (format &&
        (strcmp(format, "diat-classifier") == 0 || strcmp(format, "diat-denoiser") == 0)) {
        printf("stored values: %llu\n", stored);
        printf("kind: %s (used by diat-train and diat eval, not by diat apply)\n", format);
        diat_safetensors_close(st);
        return 0;
    }
    diat_safetensors_close(st);

    /* Validate the way `diat apply` loads it, and count what the engine uses. */
    diat_context *ctx = NULL;
    diat_model *model = NULL;
    int rc = 0;
    if (diat_context_new(DIAT_BACKEND_CPU, 1, &ctx, &err) != DIAT_OK ||
        diat_model_load(ctx, path, &model, &err) != DIAT_OK) {
        rc = report_error(EXIT_RUNTIME, "%s", err.message);
    } else {
        printf("stored values: %llu\n", stored);
        printf("parameters: %zu\n", diat_model_parameter_count(model));
        float ratio = diat_model_default_ratio(model);
        if (ratio >= 0.0f) printf("default ratio p: %g\n", (double)ratio);
        printf("valid: yes\n");
    }
    diat_model_free(model);
    diat_context_free(ctx);
    return rc;
}

/* ---- diat apply ------------------------------------------------------------ */

typedef struct apply_args {
    const char *model, *input, *output, *mask, *overlay, *detector, *landmarks;
    float ratio;
    int has_box, threads, quiet, whole, no_align, face; /* face: 1-based, 0 = all */
    int face_given;
    diat_box box;
    diat_backend_kind backend;
} apply_args;

static void apply_help(void)
{
    puts("Usage: diat apply -m MODEL [options] IN OUT\n"
         "\n"
         "Edit the faces in the photo IN with the attribute model MODEL and write\n"
         "OUT. IN and OUT are PNG or JPEG (by extension for OUT). Faces are found\n"
         "by the face detector, or given with --box; each is aligned by its eye and\n"
         "mouth landmarks (turned faces too) to the geometry the model was trained\n"
         "on, edited, and pasted back at full resolution. Only pixels under the\n"
         "model's mask change; every other pixel of a PNG output is bit for bit the\n"
         "input's. PNG output keeps the input's bit depth (8 or 16) and channel\n"
         "layout; JPEG output is 8-bit (quality 95) and has no alpha. OUT may be IN:\n"
         "the file is replaced only once the new one is complete. When no face is\n"
         "found, nothing is written (exit status 1).\n"
         "\n"
         "Options:\n"
         "  -m, --model MODEL      model file (.safetensors), required\n"
         "  -p, --ratio P          mask ratio, 0 < P < 1: the edited fraction of the\n"
         "                         face square (default: the model's own threshold\n"
         "                         e > 0.5)\n"
         "  -f, --face N|all       which detected faces to edit: N counts from 1 in\n"
         "                         the order 'diat detect' lists them (largest\n"
         "                         first); default all\n"
         "  -b, --box X,Y,W,H      the face is in this box (e.g. a selection): its\n"
         "                         landmarks are found inside it and the face is\n"
         "                         aligned; if none are found there, the square of\n"
         "                         side max(W, H) centred on the box is edited\n"
         "      --no-align         with --box: edit that square as it is, without\n"
         "                         looking for landmarks\n"
         "      --whole            IN is already an aligned face crop (as the models\n"
         "                         see it): edit the whole image, which must be\n"
         "                         roughly square; no detection\n"
         "  -t, --threads N        worker threads (default 0: one per core)\n"
         "      --backend NAME     cpu, cuda or auto (default auto)\n"
         "      --mask FILE.png    also write the full-size mask (8-bit gray; 0 means\n"
         "                         untouched, any touched pixel is at least 1)\n"
         "      --overlay FILE     also write the result with the mask tinted red\n"
         "      --detector FILE    face detector model (default: " DETECTOR_FILE ",\n"
         "                         looked for in $DIAT_MODEL_PATH, then the install's\n"
         "                         share/diat/models)\n"
         "      --landmarks FILE   landmark model (default: " LANDMARKS_FILE ")\n"
         "  -q, --quiet            no progress lines\n"
         "  -h, --help             show this help\n"
         "\n"
         "Examples:\n"
         "  diat apply -m eyeglasses-remove.safetensors in.jpg out.png\n"
         "  diat apply -m eyeglasses-remove.safetensors --face 2 in.jpg out.png\n"
         "  diat apply -m eyeglasses-remove.safetensors --box 120,80,200,200 in.jpg out.png");
}

/* Returns -1 when parsing succeeded, else the exit code (0 after --help). */
static int parse_apply(int argc, char *argv[], apply_args *a)
{
    enum {
        OPT_BACKEND = 256,
        OPT_MASK,
        OPT_OVERLAY,
        OPT_WHOLE,
        OPT_NO_ALIGN,
        OPT_DETECTOR,
        OPT_LANDMARKS
    };
    static const struct option options[] = {{"model", required_argument, NULL, 'm'},
                                            {"ratio", required_argument, NULL, 'p'},
                                            {"face", required_argument, NULL, 'f'},
                                            {"box", required_argument, NULL, 'b'},
                                            {"no-align", no_argument, NULL, OPT_NO_ALIGN},
                                            {"whole", no_argument, NULL, OPT_WHOLE},
                                            {"threads", required_argument, NULL, 't'},
                                            {"backend", required_argument, NULL, OPT_BACKEND},
                                            {"mask", required_argument, NULL, OPT_MASK},
                                            {"overlay", required_argument, NULL, OPT_OVERLAY},
                                            {"detector", required_argument, NULL, OPT_DETECTOR},
                                            {"landmarks", required_argument, NULL, OPT_LANDMARKS},
                                            {"quiet", no_argument, NULL, 'q'},
                                            {"help", no_argument, NULL, 'h'},
                                            {0, 0, 0, 0}};
    *a = (apply_args){.ratio = DIAT_RATIO_MODEL, .backend = DIAT_BACKEND_AUTO};
    int c;
    long number;
    opterr = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, ":m:p:f:b:t:qh", options, NULL)) != -1) {
        switch (c) {
        case 'm': a->model = optarg; break;
        case 'p': {
            char *end;
            errno = 0;
            float p = strtof(optarg, &end);
            if (errno || end == optarg || *end)
                return usage_error("apply", "the mask ratio is not a number: ", optarg);
            if (!(p > 0.0f && p < 1.0f))
                return usage_error("apply",
                                   "the mask ratio p must be between 0 and 1 "
                                   "(exclusive), got ",
                                   optarg);
            a->ratio = p;
            break;
        }
        case 'f':
            if (parse_face(optarg, &a->face) != 0)
                return usage_error("apply",
                                   "bad face (expected a number from 1, or all): ", optarg);
            a->face_given = 1;
            break;
        case 'b':
            if (parse_box(optarg, &a->box) != 0)
                return usage_error("apply", "bad box (expected X,Y,W,H with W, H > 0): ", optarg);
            a->has_box = 1;
            break;
        case 't':
            if (parse_int(optarg, 0, 1024, &number) != 0)
                return usage_error("apply", "bad thread count (expected 0 to 1024): ", optarg);
            a->threads = (int)number;
            break;
        case OPT_BACKEND:
            if (diat_backend_kind_parse(optarg, &a->backend) != 0)
                return usage_error("apply",
                                   "unknown backend (expected cpu, cuda or auto): ", optarg);
            break;
        case OPT_MASK: a->mask = optarg; break;
        case OPT_OVERLAY: a->overlay = optarg; break;
        case OPT_WHOLE: a->whole = 1; break;
        case OPT_NO_ALIGN: a->no_align = 1; break;
        case OPT_DETECTOR: a->detector = optarg; break;
        case OPT_LANDMARKS: a->landmarks = optarg; break;
        case 'q': a->quiet = 1; break;
        case 'h': apply_help(); return 0;
        default: return option_error("apply", c, argv);
        }
    }
    if (!a->model) return usage_error("apply", "no model given (use -m MODEL)", NULL);
    if (argc - optind < 2)
        return usage_error(
            "apply",
            argc - optind < 1 ? "no input and output image given" : "no output image given", NULL);
    if (argc - optind > 2) return usage_error("apply", "too many arguments: ", argv[optind + 2]);
    /* One way of choosing the face at a time. */
    if (a->whole && (a->has_box || a->face_given))
        return usage_error("apply", "--whole edits the whole image; it takes no ",
                           a->has_box ? "--box" : "--face");
    if (a->has_box && a->face_given)
        return usage_error("apply", "--box gives the face; it takes no --face", NULL);
    if (a->no_align && !a->has_box)
        return usage_error("apply", "--no-align needs --box (the square to edit)", NULL);
    a->input = argv[optind];
    a->output = argv[optind + 1];
    if (imgio_format_from_path(a->output) == IMGIO_FORMAT_UNKNOWN)
        return usage_error("apply", "the output must end in .png, .jpg or .jpeg: ", a->output);
    if (a->mask && imgio_format_from_path(a->mask) != IMGIO_FORMAT_PNG)
        return usage_error("apply", "the mask is written as PNG; name it *.png: ", a->mask);
    if (a->overlay && imgio_format_from_path(a->overlay) == IMGIO_FORMAT_UNKNOWN)
        return usage_error("apply", "the overlay must end in .png, .jpg or .jpeg: ", a->overlay);
    const char *extra[2] = {a->mask, a->overlay};
    for (int i = 0; i < 2; i++)
        if (extra[i] && (cli_same_file(extra[i], a->input) || cli_same_file(extra[i], a->output)))
            return usage_error("apply", "refusing to overwrite the input or output with ",
                               i == 0 ? "--mask" : "--overlay");
    return -1;
}

/* The mask as 8-bit gray: any touched pixel is at least 1, so a 0 in the
 * file means exactly "this pixel is the input's". */
static diat_status write_mask(const char *path, const float *mask, int width, int height,
                              diat_error *err)
{
    imgio_image img;
    diat_status st = imgio_alloc(&img, width, height, 1, 8, err);
    if (st != DIAT_OK) return st;
    size_t n = (size_t)width * (size_t)height;
    for (size_t i = 0; i < n; i++) {
        float m = mask[i];
        long q = m >= 1.0f ? 255 : lrintf(m * 255.0f);
        img.samples[i] = (uint16_t)(m > 0.0f ? (q < 1 ? 1 : q) : 0);
    }
    st = imgio_save(path, &img, IMGIO_FORMAT_PNG, err);
    imgio_free(&img);
    return st;
}

/* The result in 8-bit RGB with red laid over the mask at up to 50%. */
static diat_status write_overlay(const char *path, const imgio_image *result, const float *mask,
                                 diat_error *err)
{
    const int w = result->image.width, h = result->image.height, c = result->image.channels;
    const float scale = result->bit_depth == 16 ? 65535.0f : 255.0f;
    imgio_image img;
    diat_status st = imgio_alloc(&img, w, h, 3, 8, err);
    if (st != DIAT_OK) return st;
    static const float tint[3] = {1.0f, 0.0f, 0.0f};
    for (size_t i = 0; i < (size_t)w * (size_t)h; i++) {
        float m = mask[i] < 0.0f ? 0.0f : mask[i] > 1.0f ? 1.0f : mask[i];
        float a = 0.5f * m;
        for (int k = 0; k < 3; k++) {
            float v = (float)result->samples[i * c + (c >= 3 ? k : 0)] / scale;
            img.image.pixels[i * 3 + k] = v * (1.0f - a) + tint[k] * a;
        }
    }
    imgio_quantize(&img.image, 8, img.samples);
    st = imgio_save(path, &img, IMGIO_FORMAT_UNKNOWN, err);
    imgio_free(&img);
    return st;
}

/* Integer samples of the result: re-quantised only where the mask touched
 * the pixel, the input's own samples elsewhere and in the alpha channel. */
static size_t merge_result(const imgio_image *photo, const float *mask, uint16_t *out)
{
    const int c = photo->image.channels;
    const int alpha = c == 2 || c == 4;
    const size_t n = (size_t)photo->image.width * (size_t)photo->image.height;
    size_t touched = 0;
    imgio_quantize(&photo->image, photo->bit_depth, out);
    for (size_t i = 0; i < n; i++) {
        uint16_t *dst = out + i * c;
        const uint16_t *src = photo->samples + i * c;
        if (!(mask[i] > 0.0f)) {
            memcpy(dst, src, (size_t)c * sizeof *dst);
            continue;
        }
        touched++;
        if (alpha) dst[c - 1] = src[c - 1];
    }
    return touched;
}

/* Does the face found in the user's box belong to it? The finder returns
 * its best guess even when nothing in the box scores as a face; a guess
 * whose eyes lie outside the box is not the face the user meant. */
static int face_in_box(const diat_face *face, const diat_box *box)
{
    for (int eye = 0; eye < 2; eye++) {
        double x = 0, y = 0;
        for (int i = 0; i < 6; i++) {
            x += face->landmarks[36 + 6 * eye + i][0] / 6.0;
            y += face->landmarks[36 + 6 * eye + i][1] / 6.0;
        }
        if (x < box->x || y < box->y || x >= (double)box->x + box->width ||
            y >= (double)box->y + box->height)
            return 0;
    }
    return 1;
}

/* The faces to edit: an edit each, made from the untouched photo. Returns
 * 0, or the exit code after reporting. */
static int prepare_edits(const apply_args *a, diat_context *ctx, diat_model *model,
                         const imgio_image *photo, progress *prog, diat_edit ***edits_out,
                         size_t *count_out)
{
    diat_error err = {0};
    diat_face_finder *finder = NULL;
    diat_face *faces = NULL;
    size_t found = 0, first = 0, count = 1;
    diat_edit **edits = NULL;
    int rc = 0;
    int detect = !a->whole && !a->no_align;
    if (detect) {
        progress_stage(prog, "finding faces");
        if ((rc = load_finder(ctx, a->detector, a->landmarks, &finder, &err)) != 0) goto done;
        if (diat_find_faces(finder, &photo->image, a->has_box ? &a->box : NULL, &faces, &found,
                            &err) != DIAT_OK) {
            rc = report_error(EXIT_RUNTIME, "%s", err.message);
            goto done;
        }
        if (a->has_box && found && !face_in_box(&faces[0], &a->box)) found = 0;
        if (!a->has_box) {
            if (found == 0) {
                progress_end(prog);
                rc = report_error(EXIT_RUNTIME,
                                  "no face found in '%s'; give the face with --box X,Y,W,H (or "
                                  "--whole if the image is an aligned face crop).",
                                  a->input);
                goto done;
            }
            if (a->face > 0 && (size_t)a->face > found) {
                progress_end(prog);
                rc = report_error(EXIT_RUNTIME,
                                  "--face %d: only %zu face%s found in '%s' (see 'diat detect').",
                                  a->face, found, found == 1 ? " was" : "s were", a->input);
                goto done;
            }
            first = a->face > 0 ? (size_t)a->face - 1 : 0;
            count = a->face > 0 ? 1 : found;
        } else if (found == 0 && !a->quiet) {
            fprintf(stderr,
                    "%sdiat: note: no face landmarks found in the box; its square is edited "
                    "unaligned.\n",
                    prog->tty ? "\r\033[K" : "");
        }
    }
    edits = calloc(count, sizeof *edits);
    if (!edits) {
        rc = report_error(EXIT_RUNTIME, "out of memory.");
        goto done;
    }
    for (size_t i = 0; i < count; i++) {
        diat_status st;
        if (count > 1 && !a->quiet) {
            char stage[64];
            snprintf(stage, sizeof stage, "face %zu of %zu", i + 1, count);
            progress_stage(prog, stage);
        }
        int aligned = detect && found;
        if (aligned) {
            st = diat_edit_new_aligned(model, &photo->image, &faces[first + i], progress_engine,
                                       prog, &edits[i], &err);
            /* Landmarks found in a box but unusable (a face too small to
             * edit, say): the box itself still says where the face is. */
            if (st == DIAT_ERR_ARGUMENT && a->has_box) {
                if (!a->quiet)
                    fprintf(stderr, "%sdiat: note: %s The box's square is edited unaligned.\n",
                            prog->tty ? "\r\033[K" : "", err.message);
                aligned = 0;
            }
            /* Editing every face: one that cannot be (too small, say) is
             * left out with a note, the others still are. */
            if (st == DIAT_ERR_ARGUMENT && !a->has_box && a->face == 0) {
                if (!a->quiet)
                    fprintf(stderr, "%sdiat: note: face %zu left out: %s\n",
                            prog->tty ? "\r\033[K" : "", first + i + 1, err.message);
                edits[i] = NULL;
                continue;
            }
        }
        if (!aligned)
            st = diat_edit_new_region(model, &photo->image, a->has_box ? &a->box : NULL,
                                      progress_engine, prog, &edits[i], &err);
        if (st != DIAT_OK) {
            progress_end(prog);
            /* The user's box or image being unfit is a usage error. */
            rc = report_error(st == DIAT_ERR_ARGUMENT && !aligned ? EXIT_USAGE : EXIT_RUNTIME,
                              "%s%s", count > 1 ? "a face: " : "", err.message);
            goto done;
        }
    }
    size_t kept = 0;
    for (size_t i = 0; i < count; i++)
        if (edits[i]) edits[kept++] = edits[i];
    if (kept == 0) {
        progress_end(prog);
        rc = report_error(EXIT_RUNTIME, "none of the %zu faces found in '%s' can be edited.", count,
                          a->input);
        goto done;
    }
    count = kept;
done:
    if (rc != 0 && edits) {
        for (size_t i = 0; i < count; i++) diat_edit_free(edits[i]);
        free(edits);
        edits = NULL;
        count = 0;
    }
    diat_faces_free(faces);
    diat_face_finder_free(finder);
    *edits_out = edits;
    *count_out = rc == 0 ? count : 0;
    return rc;
}

static int run_apply(const apply_args *a)
{
    progress prog = {.quiet = a->quiet, .tty = isatty(STDERR_FILENO)};
    diat_error err = {0};
    imgio_image photo = {0};
    diat_context *ctx = NULL;
    diat_model *model = NULL;
    diat_edit **edits = NULL;
    size_t edit_count = 0;
    float *mask = NULL, *face_mask = NULL;
    uint16_t *result = NULL;
    int rc = EXIT_RUNTIME;

    progress_stage(&prog, "loading the image");
    if (imgio_load(a->input, &photo, &err) != DIAT_OK) goto engine_error;
    const int w = photo.image.width, h = photo.image.height;
    if (a->whole) {
        double aspect = w > h ? (double)w / h : (double)h / w;
        if (aspect > MAX_ASPECT) {
            progress_end(&prog);
            rc = report_error(EXIT_USAGE,
                              "'%s' is %dx%d (aspect %.2f); --whole takes the whole image as "
                              "the face, which must be roughly square (aspect at most %.2f). "
                              "Leave --whole out to find the faces, or give one with --box "
                              "X,Y,W,H.",
                              a->input, w, h, aspect, MAX_ASPECT);
            goto done;
        }
    } else if (a->has_box && (a->box.x >= w || a->box.y >= h || a->box.x + a->box.width <= 0 ||
                              a->box.y + a->box.height <= 0)) {
        progress_end(&prog);
        rc = report_error(EXIT_USAGE, "the box %d,%d,%d,%d lies outside the %dx%d image '%s'.",
                          a->box.x, a->box.y, a->box.width, a->box.height, w, h, a->input);
        goto done;
    }

    progress_stage(&prog, "loading the model");
    if (diat_context_new(a->backend, a->threads, &ctx, &err) != DIAT_OK) goto engine_error;
    if (!a->quiet && diat_context_notice(ctx))
        fprintf(stderr, "%sdiat: %s\n", prog.tty ? "\r\033[K" : "", diat_context_notice(ctx));
    if (diat_model_load(ctx, a->model, &model, &err) != DIAT_OK) goto engine_error;
    const char *fixture = diat_model_metadata(model, "fixture");
    if (!a->quiet && fixture && strcmp(fixture, "true") == 0)
        fprintf(stderr, "%sdiat: note: '%s' is a test fixture, not a trained model.\n",
                prog.tty ? "\r\033[K" : "", a->model);

    if ((rc = prepare_edits(a, ctx, model, &photo, &prog, &edits, &edit_count)) != 0) goto done;
    rc = EXIT_RUNTIME;

    progress_stage(&prog, "pasting back");
    size_t pixels = (size_t)w * (size_t)h;
    mask = malloc(pixels * sizeof *mask);
    if (edit_count > 1) face_mask = malloc(pixels * sizeof *face_mask);
    result = malloc(pixels * (size_t)photo.image.channels * sizeof *result);
    if (!mask || !result || (edit_count > 1 && !face_mask)) {
        progress_end(&prog);
        rc = report_error(EXIT_RUNTIME, "out of memory for a %dx%d result.", w, h);
        goto done;
    }
    /* Faces paste back one after the other; the mask is their union (the
     * largest value), so 0 still means "this pixel is the input's". */
    for (size_t i = 0; i < edit_count; i++) {
        float *target = i == 0 ? mask : face_mask;
        if (diat_edit_render(edits[i], a->ratio, &photo.image, target, &err) != DIAT_OK)
            goto engine_error;
        if (i > 0)
            for (size_t k = 0; k < pixels; k++)
                if (face_mask[k] > mask[k]) mask[k] = face_mask[k];
    }
    size_t touched = merge_result(&photo, mask, result);

    progress_stage(&prog, "writing");
    imgio_image out = photo;
    out.samples = result;
    imgio_format format = imgio_format_from_path(a->output);
    if (format == IMGIO_FORMAT_JPEG && (photo.image.channels == 2 || photo.image.channels == 4))
        fprintf(stderr, "%sdiat: note: JPEG has no alpha channel; the alpha of '%s' is dropped.\n",
                prog.tty && !a->quiet ? "\r\033[K" : "", a->input);
    if (imgio_save(a->output, &out, format, &err) != DIAT_OK) goto engine_error;
    if (a->mask && write_mask(a->mask, mask, w, h, &err) != DIAT_OK) goto engine_error;
    if (a->overlay && write_overlay(a->overlay, &out, mask, &err) != DIAT_OK) goto engine_error;
    progress_end(&prog);
    if (!a->quiet)
        fprintf(stderr, "diat: wrote '%s' (%zu face%s, %zu of %zu pixels edited, %.1f%%)\n",
                a->output, edit_count, edit_count == 1 ? "" : "s", touched, pixels,
                100.0 * (double)touched / (double)pixels);
    rc = 0;
    goto done;

engine_error:
    progress_end(&prog);
    rc = report_error(err.code == DIAT_ERR_ARGUMENT ? EXIT_USAGE : EXIT_RUNTIME, "%s", err.message);
done:
    free(result);
    free(face_mask);
    free(mask);
    for (size_t i = 0; i < edit_count; i++) diat_edit_free(edits[i]);
    free(edits);
    diat_model_free(model);
    diat_context_free(ctx);
    imgio_free(&photo);
    return rc;
}

static int command_apply(int argc, char *argv[])
{
    apply_args args;
    int rc = parse_apply(argc, argv, &args);
    return rc >= 0 ? rc : run_apply(&args);
}

/* ---- diat detect ------------------------------------------------------------ */

static void detect_help(void)
{
    puts("Usage: diat detect [options] IN\n"
         "\n"
         "List the faces the face detector finds in the photo IN (PNG or JPEG),\n"
         "largest first, numbered as 'diat apply --face N' counts them. One line per\n"
         "face: its box as X,Y,W,H (usable with --box), the detector's score and five\n"
         "of its 68 landmarks (x,y in pixels): the eye centres, the nose tip and the\n"
         "mouth corners. No face found is an error (exit status 1, nothing written).\n"
         "\n"
         "Options:\n"
         "      --overlay FILE     also write IN (8-bit RGB) with each face's box,\n"
         "                         number and 68 landmarks drawn on it\n"
         "  -b, --box X,Y,W,H      look only in this box; its best face is returned\n"
         "                         even when it scores low\n"
         "  -t, --threads N        worker threads (default 0: one per core)\n"
         "      --detector FILE    face detector model (default: " DETECTOR_FILE ",\n"
         "                         looked for in $DIAT_MODEL_PATH, then the install's\n"
         "                         share/diat/models)\n"
         "      --landmarks FILE   landmark model (default: " LANDMARKS_FILE ")\n"
         "  -h, --help             show this help\n"
         "\n"
         "Output, e.g.:\n"
         "  face 1: box 120,80,96,98 score 0.912 eyes 145.2,118.3 181.0,117.9 nose 163.4,\n"
         "  139.0 mouth 149.8,160.2 178.1,159.7");
}

/* 3x5 digits, one row per byte (bit 2 is the left column). */
static const unsigned char digit_font[10][5] = {
    {7, 5, 5, 5, 7}, {2, 6, 2, 2, 7}, {7, 1, 7, 4, 7}, {7, 1, 7, 1, 7}, {5, 5, 7, 1, 1},
    {7, 4, 7, 1, 7}, {7, 4, 7, 5, 7}, {7, 1, 1, 1, 1}, {7, 5, 7, 5, 7}, {7, 5, 7, 1, 7}};

typedef struct canvas {
    int width, height;
    uint16_t *rgb; /* 8-bit samples */
} canvas;

static void fill_rect(canvas *c, long x0, long y0, long x1, long y1, const uint16_t colour[3])
{
    if (x0 < 0) x0 = 0;
    if (y0 < 0) y0 = 0;
    if (x1 > c->width) x1 = c->width;
    if (y1 > c->height) y1 = c->height;
    for (long y = y0; y < y1; y++)
        for (long x = x0; x < x1; x++) memcpy(c->rgb + ((size_t)y * c->width + x) * 3, colour, 6);
}

static void draw_number(canvas *c, long x, long y, int number, int scale, const uint16_t colour[3])
{
    char text[16];
    int n = snprintf(text, sizeof text, "%d", number);
    for (int i = 0; i < n; i++)
        for (int row = 0; row < 5; row++)
            for (int col = 0; col < 3; col++)
                if (digit_font[text[i] - '0'][row] & (4 >> col))
                    fill_rect(c, x + (long)(4 * i + col) * scale, y + (long)row * scale,
                              x + (long)(4 * i + col + 1) * scale, y + (long)(row + 1) * scale,
                              colour);
}

/* Boxes, numbers and landmarks over an 8-bit RGB copy of the photo. */
static diat_status write_detections(const char *path, const imgio_image *photo,
                                    const diat_face *faces, size_t count, diat_error *err)
{
    const int w = photo->image.width, h = photo->image.height, ch = photo->image.channels;
    imgio_image img;
    diat_status st = imgio_alloc(&img, w, h, 3, 8, err);
    if (st != DIAT_OK) return st;
    for (size_t i = 0; i < (size_t)w * (size_t)h; i++)
        for (int k = 0; k < 3; k++) {
            uint16_t v = photo->samples[i * ch + (ch >= 3 ? k : 0)];
            img.samples[i * 3 + k] = photo->bit_depth == 16 ? (uint16_t)((v + 128) / 257) : v;
        }
    canvas c = {w, h, img.samples};
    /* Lines about a 500th of the photo, so they show at any size. */
    int t = (int)lround((w > h ? w : h) / 500.0);
    if (t < 1) t = 1;
    static const uint16_t green[3] = {0, 230, 0}, red[3] = {255, 40, 40}, yellow[3] = {255, 220, 0};
    for (size_t f = 0; f < count; f++) {
        const diat_face *face = &faces[f];
        long x0 = lround(face->x), y0 = lround(face->y);
        long x1 = lround(face->x + face->width), y1 = lround(face->y + face->height);
        fill_rect(&c, x0 - t, y0 - t, x1 + t, y0, green);
        fill_rect(&c, x0 - t, y1, x1 + t, y1 + t, green);
        fill_rect(&c, x0 - t, y0, x0, y1, green);
        fill_rect(&c, x1, y0, x1 + t, y1, green);
        int scale = 2 * t;
        long ny = y0 - t - 6L * scale >= 0 ? y0 - t - 6L * scale : y0 + t;
        draw_number(&c, x0, ny, (int)f + 1, scale, green);
        for (int i = 0; i < 68; i++) {
            long x = lround(face->landmarks[i][0]), y = lround(face->landmarks[i][1]);
            fill_rect(&c, x - t, y - t, x + t + 1, y + t + 1, red);
        }
        /* The alignment's key points, larger. */
        double key[5][2] = {{0, 0},
                            {0, 0},
                            {face->landmarks[30][0], face->landmarks[30][1]},
                            {face->landmarks[48][0], face->landmarks[48][1]},
                            {face->landmarks[54][0], face->landmarks[54][1]}};
        for (int e = 0; e < 2; e++)
            for (int i = 0; i < 6; i++)
                for (int k = 0; k < 2; k++) key[e][k] += face->landmarks[36 + 6 * e + i][k] / 6.0;
        for (int i = 0; i < 5; i++) {
            long x = lround(key[i][0]), y = lround(key[i][1]);
            fill_rect(&c, x - 2 * t, y - 2 * t, x + 2 * t + 1, y + 2 * t + 1, yellow);
        }
    }
    st = imgio_save(path, &img, IMGIO_FORMAT_UNKNOWN, err);
    imgio_free(&img);
    return st;
}

static int command_detect(int argc, char *argv[])
{
    enum { OPT_OVERLAY = 256, OPT_DETECTOR, OPT_LANDMARKS };
    static const struct option options[] = {{"overlay", required_argument, NULL, OPT_OVERLAY},
                                            {"box", required_argument, NULL, 'b'},
                                            {"threads", required_argument, NULL, 't'},
                                            {"detector", required_argument, NULL, OPT_DETECTOR},
                                            {"landmarks", required_argument, NULL, OPT_LANDMARKS},
                                            {"help", no_argument, NULL, 'h'},
                                            {0, 0, 0, 0}};
    const char *overlay = NULL, *detector = NULL, *landmarks = NULL;
    int threads = 0, has_box = 0, c;
    diat_box box;
    long number;
    opterr = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, ":b:t:h", options, NULL)) != -1) {
        switch (c) {
        case OPT_OVERLAY: overlay = optarg; break;
        case 'b':
            if (parse_box(optarg, &box) != 0)
                return usage_error("detect", "bad box (expected X,Y,W,H with W, H > 0): ", optarg);
            has_box = 1;
            break;
        case 't':
            if (parse_int(optarg, 0, 1024, &number) != 0)
                return usage_error("detect", "bad thread count (expected 0 to 1024): ", optarg);
            threads = (int)number;
            break;
        case OPT_DETECTOR: detector = optarg; break;
        case OPT_LANDMARKS: landmarks = optarg; break;
        case 'h': detect_help(); return 0;
        default: return option_error("detect", c, argv);
        }
    }
    if (argc - optind != 1)
        return usage_error("detect",
                           argc - optind < 1 ? "no input image given" : "too many arguments", NULL);
    const char *input = argv[optind];
    if (overlay && imgio_format_from_path(overlay) == IMGIO_FORMAT_UNKNOWN)
        return usage_error("detect", "the overlay must end in .png, .jpg or .jpeg: ", overlay);
    if (overlay && cli_same_file(overlay, input))
        return usage_error("detect", "refusing to overwrite the input with --overlay", NULL);

    diat_error err = {0};
    imgio_image photo = {0};
    diat_context *ctx = NULL;
    diat_face_finder *finder = NULL;
    diat_face *faces = NULL;
    size_t count = 0;
    int rc = EXIT_RUNTIME;
    if (imgio_load(input, &photo, &err) != DIAT_OK) {
        rc = report_error(EXIT_RUNTIME, "%s", err.message);
        goto done;
    }
    if (has_box && (box.x >= photo.image.width || box.y >= photo.image.height ||
                    box.x + box.width <= 0 || box.y + box.height <= 0)) {
        rc = report_error(EXIT_USAGE, "the box %d,%d,%d,%d lies outside the %dx%d image '%s'.",
                          box.x, box.y, box.width, box.height, photo.image.width,
                          photo.image.height, input);
        goto done;
    }
    if (diat_context_new(DIAT_BACKEND_CPU, threads, &ctx, &err) != DIAT_OK) {
        rc = report_error(EXIT_RUNTIME, "%s", err.message);
        goto done;
    }
    if ((rc = load_finder(ctx, detector, landmarks, &finder, &err)) != 0) goto done;
    rc = EXIT_RUNTIME;
    if (diat_find_faces(finder, &photo.image, has_box ? &box : NULL, &faces, &count, &err) !=
        DIAT_OK) {
        rc = report_error(EXIT_RUNTIME, "%s", err.message);
        goto done;
    }
    if (count == 0) {
        rc = report_error(EXIT_RUNTIME, "no face found in '%s'.", input);
        goto done;
    }
    for (size_t i = 0; i < count; i++) {
        const diat_face *f = &faces[i];
        double eye[2][2] = {{0, 0}, {0, 0}};
        for (int e = 0; e < 2; e++)
            for (int k = 0; k < 6; k++)
                for (int d = 0; d < 2; d++) eye[e][d] += f->landmarks[36 + 6 * e + k][d] / 6.0;
        printf("face %zu: box %ld,%ld,%ld,%ld score %.3f eyes %.1f,%.1f %.1f,%.1f nose %.1f,%.1f "
               "mouth %.1f,%.1f %.1f,%.1f\n",
               i + 1, lround(f->x), lround(f->y), lround(f->width), lround(f->height),
               (double)f->score, eye[0][0], eye[0][1], eye[1][0], eye[1][1],
               (double)f->landmarks[30][0], (double)f->landmarks[30][1],
               (double)f->landmarks[48][0], (double)f->landmarks[48][1],
               (double)f->landmarks[54][0], (double)f->landmarks[54][1]);
    }
    if (overlay && write_detections(overlay, &photo, faces, count, &err) != DIAT_OK) {
        rc = report_error(EXIT_RUNTIME, "%s", err.message);
        goto done;
    }
    rc = 0;
done:
    diat_faces_free(faces);
    diat_face_finder_free(finder);
    diat_context_free(ctx);
    imgio_free(&photo);
    return rc;
}

/* ---- diat version and help -------------------------------------------------- */

static int command_version(void)
{
    printf("diat %s\n", DIAT_VERSION);
    printf("BLAS: %s\n", diat_blas_description());
    diat_context *ctx = NULL;
    if (diat_context_new(DIAT_BACKEND_CUDA, 1, &ctx, NULL) != DIAT_OK) {
        printf("backends: cpu\n");
        return 0;
    }
    if (diat_context_notice(ctx))
        printf("backends: cpu (%s)\n", diat_context_notice(ctx));
    else
        printf("backends: cpu, cuda\n");
    diat_context_free(ctx);
    return 0;
}

static void main_help(FILE *out)
{
    fputs("Usage: diat COMMAND [options] [arguments]\n"
          "\n"
          "Edit facial attributes in photos with DIAT models (Deep Identity-Aware\n"
          "Transfer of facial attributes).\n"
          "\n"
          "Commands:\n"
          "  info MODEL                  show a model file's metadata and tensors\n"
          "  apply -m MODEL IN OUT       edit the faces in a PNG or JPEG photo\n"
          "  detect IN                   list the faces found in a photo\n"
          "  eval -m MODEL --celeba DIR  measure a model on CelebA val faces\n"
          "  version                     show versions of diat, its BLAS and backends\n"
          "  help [COMMAND]              show help for diat or a command\n"
          "\n"
          "Run 'diat COMMAND --help' for a command's options.\n"
          "Exit status: 0 success, 1 failure, 2 wrong usage.\n",
          out);
}

int main(int argc, char *argv[])
{
    if (argc < 2) {
        main_help(stderr);
        return EXIT_USAGE;
    }
    const char *command = argv[1];
    if (strcmp(command, "-h") == 0 || strcmp(command, "--help") == 0) {
        main_help(stdout);
        return 0;
    }
    if (strcmp(command, "help") == 0) {
        const char *topic = argc > 2 ? argv[2] : "";
        if (strcmp(topic, "info") == 0)
            info_help();
        else if (strcmp(topic, "apply") == 0)
            apply_help();
        else if (strcmp(topic, "detect") == 0)
            detect_help();
        else if (strcmp(topic, "eval") == 0)
            eval_help();
        else
            main_help(stdout);
        return 0;
    }
    if (strcmp(command, "version") == 0 || strcmp(command, "--version") == 0)
        return command_version();
    if (strcmp(command, "info") == 0) return command_info(argc - 1, argv + 1);
    if (strcmp(command, "apply") == 0) return command_apply(argc - 1, argv + 1);
    if (strcmp(command, "detect") == 0) return command_detect(argc - 1, argv + 1);
    if (strcmp(command, "eval") == 0) return command_eval(argc - 1, argv + 1);
    fprintf(stderr, "diat: error: unknown command '%s'\nTry 'diat --help'.\n", command);
    return EXIT_USAGE;
}

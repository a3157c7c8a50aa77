/* diat — the command-line front end of libdiat.
 *
 *   diat info MODEL            what a model file holds
 *   diat apply -m MODEL IN OUT edit a face in a PNG or JPEG photo
 *   diat version               versions of diat, its BLAS and backends
 *
 * The CLI calls the same engine pipeline as the GIMP plug-in. Exit codes:
 * 0 success, 1 a runtime failure (unreadable file, bad model, ...), 2 a usage
 * error (unknown option, malformed number, ...). Each failure is one line on
 * stderr starting "diat: error: ".
 */
#include "diat.h"
#include "diat-train.h"
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

#define EXIT_RUNTIME 1
#define EXIT_USAGE 2
#define MAX_ASPECT 1.25 /* beyond this, the whole image is no face crop */

static int report_error(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Print "diat: error: ..." and return `code` for the caller to exit with. */
static int report_error(int code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("diat: error: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return code;
}

static int usage_error(const char *command, const char *what, const char *detail) {
    fprintf(stderr, "diat: error: %s%s\nTry 'diat %s --help'.\n", what, detail ? detail : "",
            command);
    return EXIT_USAGE;
}

/* getopt_long reports with opterr = 0 and ':' first: turn its codes into one
 * clear line naming the option. */
static int option_error(const char *command, int code, char *const argv[]) {
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

static int parse_int(const char *text, long lo, long hi, long *out) {
    char *end;
    errno = 0;
    long value = strtol(text, &end, 10);
    if (errno || end == text || *end || value < lo || value > hi) return -1;
    *out = value;
    return 0;
}

/* "x,y,w,h" with w, h > 0; x and y may be negative (box partly outside). */
static int parse_box(const char *text, diat_box *box) {
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

static int same_file(const char *a, const char *b) {
    struct stat sa, sb;
    if (strcmp(a, b) == 0) return 1;
    return stat(a, &sa) == 0 && stat(b, &sb) == 0 && sa.st_dev == sb.st_dev &&
           sa.st_ino == sb.st_ino;
}

/* ---- progress ------------------------------------------------------------ */

typedef struct progress {
    int quiet, tty;
    char stage[96];
} progress;

/* One line per stage; on a terminal the line also counts up in place. */
static void progress_stage(progress *p, const char *stage) {
    if (p->quiet || strcmp(stage, p->stage) == 0) return;
    snprintf(p->stage, sizeof p->stage, "%s", stage);
    fprintf(stderr, p->tty ? "\r\033[Kdiat: %s" : "diat: %s\n", stage);
    fflush(stderr);
}

static int progress_engine(void *user, float fraction, const char *stage) {
    progress *p = user;
    if (p->quiet || strcmp(stage, "done") == 0) return 0;
    progress_stage(p, stage);
    if (p->tty) {
        fprintf(stderr, "\r\033[Kdiat: %s %3d%%", stage, (int)lrintf(fraction * 100.0f));
        fflush(stderr);
    }
    return 0;
}

static void progress_end(progress *p) {
    if (!p->quiet && p->tty && p->stage[0]) fputs("\r\033[K", stderr);
}

/* ---- diat info ------------------------------------------------------------ */

static const char *dtype_name(diat_dtype dtype) {
    switch (dtype) {
    case DIAT_DTYPE_F32:
        return "F32";
    case DIAT_DTYPE_F16:
        return "F16";
    case DIAT_DTYPE_U8:
        return "U8";
    }
    return "?";
}

/* Metadata values may span lines (licences): indent continuation lines. */
static void print_indented_value(const char *value) {
    for (const char *p = value; *p; p++) {
        fputc(*p, stdout);
        if (*p == '\n' && p[1]) fputs("    ", stdout);
    }
    fputc('\n', stdout);
}

static void info_help(void) {
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

static int command_info(int argc, char *argv[]) {
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
    const char *model, *input, *output, *mask, *overlay;
    float ratio;
    int has_box, threads, quiet;
    diat_box box;
    diat_backend_kind backend;
} apply_args;

static void apply_help(void) {
    puts("Usage: diat apply -m MODEL [options] IN OUT\n"
         "\n"
         "Edit the face in the photo IN with the attribute model MODEL and write\n"
         "OUT. IN and OUT are PNG or JPEG (by extension for OUT). Only pixels under\n"
         "the model's mask change; every other pixel of a PNG output is bit for bit\n"
         "the input's. PNG output keeps the input's bit depth (8 or 16) and channel\n"
         "layout; JPEG output is 8-bit (quality 95) and has no alpha. OUT may be IN:\n"
         "the file is replaced only once the new one is complete.\n"
         "\n"
         "Options:\n"
         "  -m, --model MODEL      model file (.safetensors), required\n"
         "  -p, --ratio P          mask ratio, 0 < P < 1: the edited fraction of the\n"
         "                         face square (default: the model's own threshold\n"
         "                         e > 0.5)\n"
         "  -b, --box X,Y,W,H      the face: the square of side max(W, H) centred on\n"
         "                         this box is edited (default: the whole image,\n"
         "                         which must then be roughly square)\n"
         "  -t, --threads N        worker threads (default 0: one per core)\n"
         "      --backend NAME     cpu, cuda or auto (default auto)\n"
         "      --mask FILE.png    also write the full-size mask (8-bit gray; 0 means\n"
         "                         untouched, any touched pixel is at least 1)\n"
         "      --overlay FILE     also write the result with the mask tinted red\n"
         "  -q, --quiet            no progress lines\n"
         "  -h, --help             show this help\n"
         "\n"
         "Example:\n"
         "  diat apply -m eyeglasses-remove.safetensors --box 120,80,200,200 in.jpg out.png");
}

/* Returns -1 when parsing succeeded, else the exit code (0 after --help). */
static int parse_apply(int argc, char *argv[], apply_args *a) {
    enum { OPT_BACKEND = 256, OPT_MASK, OPT_OVERLAY };
    static const struct option options[] = {{"model", required_argument, NULL, 'm'},
                                            {"ratio", required_argument, NULL, 'p'},
                                            {"box", required_argument, NULL, 'b'},
                                            {"threads", required_argument, NULL, 't'},
                                            {"backend", required_argument, NULL, OPT_BACKEND},
                                            {"mask", required_argument, NULL, OPT_MASK},
                                            {"overlay", required_argument, NULL, OPT_OVERLAY},
                                            {"quiet", no_argument, NULL, 'q'},
                                            {"help", no_argument, NULL, 'h'},
                                            {0, 0, 0, 0}};
    *a = (apply_args){.ratio = DIAT_RATIO_MODEL, .backend = DIAT_BACKEND_AUTO};
    int c;
    long number;
    opterr = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, ":m:p:b:t:qh", options, NULL)) != -1) {
        switch (c) {
        case 'm':
            a->model = optarg;
            break;
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
        case OPT_MASK:
            a->mask = optarg;
            break;
        case OPT_OVERLAY:
            a->overlay = optarg;
            break;
        case 'q':
            a->quiet = 1;
            break;
        case 'h':
            apply_help();
            return 0;
        default:
            return option_error("apply", c, argv);
        }
    }
    if (!a->model) return usage_error("apply", "no model given (use -m MODEL)", NULL);
    if (argc - optind < 2)
        return usage_error(
            "apply",
            argc - optind < 1 ? "no input and output image given" : "no output image given", NULL);
    if (argc - optind > 2) return usage_error("apply", "too many arguments: ", argv[optind + 2]);
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
        if (extra[i] && (same_file(extra[i], a->input) || same_file(extra[i], a->output)))
            return usage_error("apply", "refusing to overwrite the input or output with ",
                               i == 0 ? "--mask" : "--overlay");
    return -1;
}

/* The mask as 8-bit gray: any touched pixel is at least 1, so a 0 in the
 * file means exactly "this pixel is the input's". */
static diat_status write_mask(const char *path, const float *mask, int width, int height,
                              diat_error *err) {
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
                                 diat_error *err) {
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
static size_t merge_result(const imgio_image *photo, const float *mask, uint16_t *out) {
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

static int run_apply(const apply_args *a) {
    progress prog = {.quiet = a->quiet, .tty = isatty(STDERR_FILENO)};
    diat_error err = {0};
    imgio_image photo = {0};
    diat_context *ctx = NULL;
    diat_model *model = NULL;
    diat_edit *edit = NULL;
    float *mask = NULL;
    uint16_t *result = NULL;
    int rc = EXIT_RUNTIME;

    progress_stage(&prog, "loading the image");
    if (imgio_load(a->input, &photo, &err) != DIAT_OK) goto engine_error;
    const int w = photo.image.width, h = photo.image.height;
    if (!a->has_box) {
        double aspect = w > h ? (double)w / h : (double)h / w;
        if (aspect > MAX_ASPECT) {
            progress_end(&prog);
            rc = report_error(EXIT_USAGE,
                              "'%s' is %dx%d (aspect %.2f); without --box the whole image is "
                              "taken as the face and must be roughly square (aspect at most "
                              "%.2f). Give the face with --box X,Y,W,H.",
                              a->input, w, h, aspect, MAX_ASPECT);
            goto done;
        }
    } else if (a->box.x >= w || a->box.y >= h || a->box.x + a->box.width <= 0 ||
               a->box.y + a->box.height <= 0) {
        progress_end(&prog);
        rc = report_error(EXIT_USAGE, "the box %d,%d,%d,%d lies outside the %dx%d image '%s'.",
                          a->box.x, a->box.y, a->box.width, a->box.height, w, h, a->input);
        goto done;
    }

    progress_stage(&prog, "loading the model");
    if (diat_context_new(a->backend, a->threads, &ctx, &err) != DIAT_OK ||
        diat_model_load(ctx, a->model, &model, &err) != DIAT_OK)
        goto engine_error;
    const char *fixture = diat_model_metadata(model, "fixture");
    if (!a->quiet && fixture && strcmp(fixture, "true") == 0)
        fprintf(stderr, "%sdiat: note: '%s' is a test fixture, not a trained model.\n",
                prog.tty ? "\r\033[K" : "", a->model);

    if (diat_edit_new_region(model, &photo.image, a->has_box ? &a->box : NULL, progress_engine,
                             &prog, &edit, &err) != DIAT_OK)
        goto engine_error;

    progress_stage(&prog, "pasting back");
    size_t pixels = (size_t)w * (size_t)h;
    mask = malloc(pixels * sizeof *mask);
    result = malloc(pixels * (size_t)photo.image.channels * sizeof *result);
    if (!mask || !result) {
        progress_end(&prog);
        rc = report_error(EXIT_RUNTIME, "out of memory for a %dx%d result.", w, h);
        goto done;
    }
    if (diat_edit_render(edit, a->ratio, &photo.image, mask, &err) != DIAT_OK) goto engine_error;
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
        fprintf(stderr, "diat: wrote '%s' (%zu of %zu pixels edited, %.1f%%)\n", a->output, touched,
                pixels, 100.0 * (double)touched / (double)pixels);
    rc = 0;
    goto done;

engine_error:
    progress_end(&prog);
    rc = report_error(err.code == DIAT_ERR_ARGUMENT ? EXIT_USAGE : EXIT_RUNTIME, "%s", err.message);
done:
    free(result);
    free(mask);
    diat_edit_free(edit);
    diat_model_free(model);
    diat_context_free(ctx);
    imgio_free(&photo);
    return rc;
}

static int command_apply(int argc, char *argv[]) {
    apply_args args;
    int rc = parse_apply(argc, argv, &args);
    return rc >= 0 ? rc : run_apply(&args);
}

/* ---- diat version and help -------------------------------------------------- */

static int command_version(void) {
    printf("diat %s\n", DIAT_VERSION);
    printf("BLAS: %s\n", diat_blas_description());
    diat_context *ctx = NULL;
    int cuda = diat_context_new(DIAT_BACKEND_CUDA, 1, &ctx, NULL) == DIAT_OK;
    diat_context_free(ctx);
    printf("backends: cpu%s\n", cuda ? ", cuda" : " (cuda: not available)");
    return 0;
}

static void main_help(FILE *out) {
    fputs("Usage: diat COMMAND [options] [arguments]\n"
          "\n"
          "Edit facial attributes in photos with DIAT models (Deep Identity-Aware\n"
          "Transfer of facial attributes).\n"
          "\n"
          "Commands:\n"
          "  info MODEL                  show a model file's metadata and tensors\n"
          "  apply -m MODEL IN OUT       edit the face in a PNG or JPEG photo\n"
          "  version                     show versions of diat, its BLAS and backends\n"
          "  help [COMMAND]              show help for diat or a command\n"
          "\n"
          "Run 'diat COMMAND --help' for a command's options.\n"
          "Exit status: 0 success, 1 failure, 2 wrong usage.\n",
          out);
}

int main(int argc, char *argv[]) {
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
        else
            main_help(stdout);
        return 0;
    }
    if (strcmp(command, "version") == 0 || strcmp(command, "--version") == 0)
        return command_version();
    if (strcmp(command, "info") == 0) return command_info(argc - 1, argv + 1);
    if (strcmp(command, "apply") == 0) return command_apply(argc - 1, argv + 1);
    fprintf(stderr, "diat: error: unknown command '%s'\nTry 'diat --help'.\n", command);
    return EXIT_USAGE;
}

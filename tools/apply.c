/* `diat apply -m MODEL IN OUT`: find, align, edit and paste back the faces
 * of a photo, through the same engine pipeline as the GIMP plug-in. */
#include "cli.h"
#include "diat.h"
#include "image-io.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_ASPECT 1.25 /* beyond this, the whole image is no face crop */

static int parse_face(const char *text, int *out)
{
    long n;
    if (strcmp(text, "all") == 0) {
        *out = 0;
        return 0;
    }
    if (cli_parse_int(text, 1, 100000, &n) != 0) return -1;
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

typedef struct apply_args {
    const char *model, *input, *output, *mask, *overlay, *detector, *landmarks;
    float ratio;
    int has_box, threads, quiet, whole, no_align, face; /* face: 1-based, 0 = all */
    int face_given;
    diat_box box;
    diat_backend_kind backend;
} apply_args;

void apply_help(void)
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
                return cli_usage_error("apply", "the mask ratio is not a number: ", optarg);
            if (!(p > 0.0f && p < 1.0f))
                return cli_usage_error("apply",
                                       "the mask ratio p must be between 0 and 1 "
                                       "(exclusive), got ",
                                       optarg);
            a->ratio = p;
            break;
        }
        case 'f':
            if (parse_face(optarg, &a->face) != 0)
                return cli_usage_error("apply",
                                       "bad face (expected a number from 1, or all): ", optarg);
            a->face_given = 1;
            break;
        case 'b':
            if (cli_parse_box(optarg, &a->box) != 0)
                return cli_usage_error("apply",
                                       "bad box (expected X,Y,W,H with W, H > 0): ", optarg);
            a->has_box = 1;
            break;
        case 't':
            if (cli_parse_int(optarg, 0, 1024, &number) != 0)
                return cli_usage_error("apply", "bad thread count (expected 0 to 1024): ", optarg);
            a->threads = (int)number;
            break;
        case OPT_BACKEND:
            if (diat_backend_kind_parse(optarg, &a->backend) != 0)
                return cli_usage_error("apply",
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
        default: return cli_option_error("apply", c, argv);
        }
    }
    if (!a->model) return cli_usage_error("apply", "no model given (use -m MODEL)", NULL);
    if (argc - optind < 2)
        return cli_usage_error(
            "apply",
            argc - optind < 1 ? "no input and output image given" : "no output image given", NULL);
    if (argc - optind > 2)
        return cli_usage_error("apply", "too many arguments: ", argv[optind + 2]);
    /* One way of choosing the face at a time. */
    if (a->whole && (a->has_box || a->face_given))
        return cli_usage_error("apply", "--whole edits the whole image; it takes no ",
                               a->has_box ? "--box" : "--face");
    if (a->has_box && a->face_given)
        return cli_usage_error("apply", "--box gives the face; it takes no --face", NULL);
    if (a->no_align && !a->has_box)
        return cli_usage_error("apply", "--no-align needs --box (the square to edit)", NULL);
    a->input = argv[optind];
    a->output = argv[optind + 1];
    if (imgio_format_from_path(a->output) == IMGIO_FORMAT_UNKNOWN)
        return cli_usage_error("apply", "the output must end in .png, .jpg or .jpeg: ", a->output);
    if (a->mask && imgio_format_from_path(a->mask) != IMGIO_FORMAT_PNG)
        return cli_usage_error("apply", "the mask is written as PNG; name it *.png: ", a->mask);
    if (a->overlay && imgio_format_from_path(a->overlay) == IMGIO_FORMAT_UNKNOWN)
        return cli_usage_error("apply",
                               "the overlay must end in .png, .jpg or .jpeg: ", a->overlay);
    const char *extra[2] = {a->mask, a->overlay};
    for (int i = 0; i < 2; i++)
        if (extra[i] && (cli_same_file(extra[i], a->input) || cli_same_file(extra[i], a->output)))
            return cli_usage_error("apply", "refusing to overwrite the input or output with ",
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
        if ((rc = cli_load_face_finder(ctx, a->detector, a->landmarks, &finder, &err)) != 0)
            goto done;
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

int command_apply(int argc, char *argv[])
{
    apply_args args;
    int rc = parse_apply(argc, argv, &args);
    return rc >= 0 ? rc : run_apply(&args);
}

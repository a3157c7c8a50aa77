/* Faces in a large photo: detection + landmarks + alignment, the engine's
 * work before the networks run on a face in `diat apply` or the plug-in.
 *
 *   bench_faces [--photo PNG|JPEG] [--megapixels N] [--threads N] [--repeats N]
 *               [--detector FILE] [--landmarks FILE]
 *
 * The photo (default tests/data/photos/2009_004587.png: two people) is
 * enlarged to about N megapixels (default 12) by bilinear interpolation, once,
 * untimed: a stand-in for a camera photo with faces of several hundred
 * pixels. Then, per run: diat_find_faces on the whole photo (the detector
 * letterboxes the photo to its 416 input, then the landmark network runs on
 * each face) and, for every face found, diat_align_transform +
 * diat_warp_face (the 128x128 aligned crop). Reports the median of the runs
 * after one warm-up, for each part and the total, and the faces found.
 * Lines starting with "RESULT " are for scripts. */
#include "align.h"
#include "image-io.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench-timing.h"

#define MAX_RUNS 1000

/* Bilinear enlargement of an RGB(A)/gray photo to RGB, pixel centres aligned. */
static int enlarge(const diat_image *src, int width, int height, diat_image *out)
{
    *out = (diat_image){width, height, 3, (size_t)width * 3, NULL};
    out->pixels = malloc((size_t)width * height * 3 * sizeof(float));
    if (!out->pixels) return -1;
    const double sx = (double)src->width / width, sy = (double)src->height / height;
    for (int y = 0; y < height; y++) {
        double fy = (y + 0.5) * sy - 0.5;
        int y0 = (int)floor(fy);
        double wy = fy - y0;
        int ya = y0 < 0 ? 0 : y0, yb = y0 + 1 >= src->height ? src->height - 1 : y0 + 1;
        for (int x = 0; x < width; x++) {
            double fx = (x + 0.5) * sx - 0.5;
            int x0 = (int)floor(fx);
            double wx = fx - x0;
            int xa = x0 < 0 ? 0 : x0, xb = x0 + 1 >= src->width ? src->width - 1 : x0 + 1;
            for (int c = 0; c < 3; c++) {
                int k = src->channels >= 3 ? c : 0;
#define AT(xx, yy) src->pixels[(size_t)(yy)*src->stride + (size_t)(xx)*src->channels + k]
                double v = (1 - wy) * ((1 - wx) * AT(xa, ya) + wx * AT(xb, ya)) +
                           wy * ((1 - wx) * AT(xa, yb) + wx * AT(xb, yb));
#undef AT
                out->pixels[((size_t)y * width + x) * 3 + c] = (float)v;
            }
        }
    }
    return 0;
}

static void usage(FILE *f)
{
    fputs("usage: bench_faces [--photo FILE] [--megapixels N] [--threads N] [--repeats N]\n"
          "                   [--detector FILE] [--landmarks FILE]\n"
          "Detection + landmarks + alignment on a photo enlarged to N megapixels\n"
          "(default 12), median of --repeats runs (default 15), --threads threads\n"
          "(default 1).\n",
          f);
}

int main(int argc, char **argv)
{
    const char *root = getenv("DIAT_SOURCE_ROOT");
    char photo_path[4096], detector[4096], landmarks[4096];
    snprintf(photo_path, sizeof photo_path, "%s/tests/data/photos/2009_004587.png",
             root ? root : DIAT_SOURCE_DIR);
    snprintf(detector, sizeof detector, "%s/models/face-detector-tiny.safetensors",
             root ? root : DIAT_SOURCE_DIR);
    snprintf(landmarks, sizeof landmarks, "%s/models/face-landmarks-68.safetensors",
             root ? root : DIAT_SOURCE_DIR);
    double megapixels = 12.0;
    int threads = 1, repeats = 15;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i], *value = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            usage(stdout);
            return 0;
        }
        if (!value) {
            usage(stderr);
            return 2;
        }
        if (strcmp(arg, "--photo") == 0)
            snprintf(photo_path, sizeof photo_path, "%s", value);
        else if (strcmp(arg, "--megapixels") == 0)
            megapixels = atof(value);
        else if (strcmp(arg, "--threads") == 0)
            threads = atoi(value);
        else if (strcmp(arg, "--repeats") == 0)
            repeats = atoi(value);
        else if (strcmp(arg, "--detector") == 0)
            snprintf(detector, sizeof detector, "%s", value);
        else if (strcmp(arg, "--landmarks") == 0)
            snprintf(landmarks, sizeof landmarks, "%s", value);
        else {
            usage(stderr);
            return 2;
        }
        i++;
    }
    if (!(megapixels > 0.0 && megapixels <= 400.0) || repeats < 1 || repeats > MAX_RUNS ||
        threads < 0) {
        usage(stderr);
        return 2;
    }

    diat_error err;
    imgio_image src;
    diat_context *ctx = NULL;
    diat_face_finder *finder = NULL;
    if (imgio_load(photo_path, &src, &err) != DIAT_OK ||
        diat_context_new(DIAT_BACKEND_CPU, threads, &ctx, &err) != DIAT_OK ||
        diat_face_finder_load(ctx, detector, landmarks, &finder, &err) != DIAT_OK) {
        fprintf(stderr, "bench_faces: %s\n", err.message);
        return 1;
    }
    double scale = sqrt(megapixels * 1e6 / ((double)src.image.width * src.image.height));
    int width = (int)lround(src.image.width * scale),
        height = (int)lround(src.image.height * scale);
    diat_image photo;
    if (enlarge(&src.image, width, height, &photo) != 0) {
        fprintf(stderr, "bench_faces: out of memory for a %dx%d photo\n", width, height);
        return 1;
    }
    imgio_free(&src);
    printf("photo: %s enlarged %.2fx to %dx%d (%.1f MP), %d thread%s (%s)\n", photo_path, scale,
           width, height, width * (double)height / 1e6, diat_context_threads(ctx),
           diat_context_threads(ctx) == 1 ? "" : "s", diat_context_backend_name(ctx));

    static double t_find[MAX_RUNS], t_align[MAX_RUNS], t_total[MAX_RUNS];
    static float crop[3 * DIAT_FACE_SIZE * DIAT_FACE_SIZE];
    size_t faces_found = 0;
    double face_side = 0;
    for (int run = -1; run < repeats; run++) { /* run -1: warm-up */
        diat_face *faces = NULL;
        size_t count = 0;
        double t0 = 1e3 * now_seconds();
        if (diat_find_faces(finder, &photo, NULL, &faces, &count, &err) != DIAT_OK) {
            fprintf(stderr, "bench_faces: %s\n", err.message);
            return 1;
        }
        double t1 = 1e3 * now_seconds();
        for (size_t i = 0; i < count; i++) {
            diat_face_transform t;
            if (diat_align_transform(&faces[i], width, height, 16, &t, &err) != DIAT_OK ||
                diat_warp_face(&photo, &t, crop, &err) != DIAT_OK) {
                fprintf(stderr, "bench_faces: face %zu: %s\n", i + 1, err.message);
                return 1;
            }
            if (run < 0 && i == 0) face_side = DIAT_FACE_SIZE * diat_face_transform_scale(&t);
        }
        double t2 = 1e3 * now_seconds();
        faces_found = count;
        diat_faces_free(faces);
        if (run < 0) continue;
        t_find[run] = t1 - t0;
        t_align[run] = t2 - t1;
        t_total[run] = t2 - t0;
    }
    double find = median(t_find, repeats), align = median(t_align, repeats);
    double total = median(t_total, repeats);
    printf("faces found: %zu (largest aligned square %.0f px)\n", faces_found, face_side);
    printf("detection + landmarks (diat_find_faces): %8.1f ms\n", find);
    printf("alignment of %zu face%s (transform + crop): %8.1f ms\n", faces_found,
           faces_found == 1 ? "" : "s", align);
    printf("total:                                   %8.1f ms (median of %d)\n", total, repeats);
    printf("RESULT megapixels=%.1f threads=%d faces=%zu find_ms=%.2f align_ms=%.2f total_ms=%.2f\n",
           width * (double)height / 1e6, diat_context_threads(ctx), faces_found, find, align,
           total);
    free(photo.pixels);
    diat_face_finder_free(finder);
    diat_context_free(ctx);
    return 0;
}

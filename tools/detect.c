/* `diat detect IN`: the faces the detector finds, numbered as `diat apply
 * --face N` counts them, and optionally a picture of them. */
#include "cli.h"
#include "diat.h"
#include "image-io.h"

#include <getopt.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

void detect_help(void)
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

int command_detect(int argc, char *argv[])
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
            if (cli_parse_box(optarg, &box) != 0)
                return cli_usage_error("detect",
                                       "bad box (expected X,Y,W,H with W, H > 0): ", optarg);
            has_box = 1;
            break;
        case 't':
            if (cli_parse_int(optarg, 0, 1024, &number) != 0)
                return cli_usage_error("detect", "bad thread count (expected 0 to 1024): ", optarg);
            threads = (int)number;
            break;
        case OPT_DETECTOR: detector = optarg; break;
        case OPT_LANDMARKS: landmarks = optarg; break;
        case 'h': detect_help(); return 0;
        default: return cli_option_error("detect", c, argv);
        }
    }
    if (argc - optind != 1)
        return cli_usage_error(
            "detect", argc - optind < 1 ? "no input image given" : "too many arguments", NULL);
    const char *input = argv[optind];
    if (overlay && imgio_format_from_path(overlay) == IMGIO_FORMAT_UNKNOWN)
        return cli_usage_error("detect", "the overlay must end in .png, .jpg or .jpeg: ", overlay);
    if (overlay && cli_same_file(overlay, input))
        return cli_usage_error("detect", "refusing to overwrite the input with --overlay", NULL);

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
    if ((rc = cli_load_face_finder(ctx, detector, landmarks, &finder, &err)) != 0) goto done;
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

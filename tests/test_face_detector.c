/* The face detector (engine/nets/face-detector.c) and the face finder
 * (engine/faces.c), against face-api's own JavaScript detector:
 *  - the network alone, on an input both sides build without resampling:
 *    every one of the 13 x 13 x 25 output logits
 *    (tests/data/photos/face-api-detector-grid.txt);
 *  - whole detections on real photos (face-api-detections.txt, both files
 *    written by tests/face-detector/reference.mjs): the same faces, boxes
 *    within IoU 0.98 and scores within 0.001 (a box scoring within that
 *    tolerance of the 0.5 threshold may fall on either side of it, which
 *    the comparison allows); a photo enlarged 3 times by pixel replication
 *    (so shrunk by the area filter) gives the same faces, 3 times larger;
 *  - gray, gray+alpha, RGBA and padded rows give what RGB gives;
 *  - no face in a plain or smooth image; a 1x1 image, a bad image and a
 *    region outside the photo give a result or a clear error, no crash;
 *  - a 20000 x 20000 image is read without a photo-sized copy;
 *  - diat_find_faces: the same faces, largest first, each with landmarks
 *    inside its box; a user's region returns its best face.
 *
 *     test-face-detector [DETECTOR_MODEL] [LANDMARK_MODEL] [PHOTOS_DIR]
 * defaults: $DIAT_SOURCE_ROOT/models/face-detector-tiny.safetensors,
 * .../face-landmarks-68.safetensors and $DIAT_SOURCE_ROOT/tests/data/photos. */
#include "faces-internal.h"
#include "image-io.h"
#include "testutil.h"

#include <string.h>
#include <sys/resource.h>

#define GRID_CELLS 13
#define GRID_LOGITS 25
#define MAX_REFERENCE_BOXES 64

static const double MIN_IOU = 0.98; /* face-api rounds its scale: up to 0.1% */
static const double SCORE_TOLERANCE = 1e-3;
/* Logits of the network alone: face-api and the engine sum in different
 * orders in float32; |logit| reaches ~40. */
static const double LOGIT_TOLERANCE = 2e-3;

static diat_context *ctx;
static diat_face_detector *detector;
static char detector_path[4096], landmarks_path[4096], photos_dir[4096];

typedef struct reference_box {
    char photo[64];
    diat_face_detection box;
} reference_box;

static reference_box references[MAX_REFERENCE_BOXES];
static int reference_count;

/* Agreement figures, printed at the end. */
static double worst_logit_error, worst_score_error, worst_iou = 1.0;

static int load_photo(const char *name, imgio_image *img)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", photos_dir, name);
    diat_error err;
    if (imgio_load(path, img, &err) != DIAT_OK) {
        CHECK_MSG(0, "%s", err.message);
        return 0;
    }
    return 1;
}

static double box_iou(const diat_face_detection *a, const diat_face_detection *b)
{
    double w = fmin(a->x + a->width, b->x + b->width) - fmax(a->x, b->x);
    double h = fmin(a->y + a->height, b->y + b->height) - fmax(a->y, b->y);
    double inter = (w > 0 ? w : 0) * (h > 0 ? h : 0);
    return inter / ((double)a->width * a->height + (double)b->width * b->height - inter);
}

static void read_references(void)
{
    char path[4200], line[512];
    snprintf(path, sizeof path, "%s/face-api-detections.txt", photos_dir);
    FILE *f = fopen(path, "r");
    CHECK_MSG(f != NULL, "cannot open %s", path);
    if (!f) return;
    while (fgets(line, sizeof line, f) && reference_count < MAX_REFERENCE_BOXES) {
        if (line[0] == '#') continue;
        reference_box *r = &references[reference_count];
        if (sscanf(line, "%63s %f %f %f %f %f", r->photo, &r->box.x, &r->box.y, &r->box.width,
                   &r->box.height, &r->box.score) == 6)
            reference_count++;
    }
    fclose(f);
    CHECK_MSG(reference_count >= 10, "only %d reference boxes in %s", reference_count, path);
}

/* ---- the network alone ----------------------------------------------------- */

static void test_grid_matches_face_api(void)
{
    char path[4200], line[1024];
    snprintf(path, sizeof path, "%s/face-api-detector-grid.txt", photos_dir);
    FILE *f = fopen(path, "r");
    CHECK_MSG(f != NULL, "cannot open %s", path);
    if (!f) return;
    /* The input the reference describes: 2008_002506.png's columns 84..499
     * and its 375 rows, black below to make 416 x 416. */
    const int side = DIAT_FACE_DETECTOR_INPUT_SIZE, left = 84;
    imgio_image img;
    if (!load_photo("2008_002506.png", &img)) {
        fclose(f);
        return;
    }
    diat_tensor input = {0}, grid = {0};
    diat_error err;
    CHECK(diat_tensor_alloc(ctx, &input, 1, 3, side, side, &err) == DIAT_OK);
    memset(input.data, 0, diat_tensor_count(&input) * sizeof(float));
    for (int y = 0; y < img.image.height && y < side; y++)
        for (int x = 0; x < side; x++)
            for (int c = 0; c < 3; c++)
                input.data[((size_t)c * side + y) * side + x] =
                    img.image.pixels[y * img.image.stride + (size_t)(left + x) * 3 + c];
    CHECK(diat_face_detector_forward(detector, &input, &grid, &err) == DIAT_OK);
    CHECK(grid.c == GRID_LOGITS && grid.h == GRID_CELLS && grid.w == GRID_CELLS);

    int cells = 0;
    while (fgets(line, sizeof line, f)) {
        if (line[0] == '#') continue;
        char *p = line;
        int row = (int)strtol(p, &p, 10), col = (int)strtol(p, &p, 10);
        if (row < 0 || row >= GRID_CELLS || col < 0 || col >= GRID_CELLS) break;
        for (int k = 0; k < GRID_LOGITS; k++) {
            double want = strtod(p, &p);
            double got = grid.data[((size_t)k * GRID_CELLS + row) * GRID_CELLS + col];
            double error = fabs(got - want);
            if (error > worst_logit_error) worst_logit_error = error;
        }
        cells++;
    }
    fclose(f);
    CHECK_MSG(cells == GRID_CELLS * GRID_CELLS, "%d cells in %s", cells, path);
    CHECK_MSG(worst_logit_error <= LOGIT_TOLERANCE, "logits differ from face-api's by up to %g",
              worst_logit_error);
    diat_tensor_release(ctx, &input);
    diat_tensor_release(ctx, &grid);
    imgio_free(&img);
}

/* ---- whole detections -------------------------------------------------------- */

/* Each box scoring clearly above 0.5 on one side has a partner on the
 * other (IoU >= MIN_IOU, scores within SCORE_TOLERANCE). */
static void compare_with_face_api(const char *name, const diat_face_detection *got,
                                  size_t got_count)
{
    const double clear = DIAT_FACE_DETECTOR_SCORE_THRESHOLD + SCORE_TOLERANCE;
    int matched_reference = 0, reference_faces = 0;
    for (int r = 0; r < reference_count; r++) {
        if (strcmp(references[r].photo, name) != 0) continue;
        const diat_face_detection *want = &references[r].box;
        double best_iou = 0.0;
        size_t best = 0;
        for (size_t i = 0; i < got_count; i++)
            if (box_iou(want, &got[i]) > best_iou) best_iou = box_iou(want, &got[i]), best = i;
        if (best_iou >= MIN_IOU) {
            double score_error = fabs(got[best].score - want->score);
            if (best_iou < worst_iou) worst_iou = best_iou;
            if (score_error > worst_score_error) worst_score_error = score_error;
            CHECK_MSG(score_error <= SCORE_TOLERANCE,
                      "%s: face at %.0f,%.0f scores %.4f, face-api %.4f", name, want->x, want->y,
                      got[best].score, want->score);
            matched_reference++;
        } else if (want->score >= clear) {
            CHECK_MSG(0, "%s: face-api's face %.1f,%.1f %.1fx%.1f (%.3f) not found (best IoU %.3f)",
                      name, want->x, want->y, want->width, want->height, want->score, best_iou);
        }
        reference_faces += want->score > DIAT_FACE_DETECTOR_SCORE_THRESHOLD;
    }
    for (size_t i = 0; i < got_count; i++) {
        if (got[i].score < clear) continue;
        int partner = 0;
        for (int r = 0; r < reference_count && !partner; r++)
            partner = strcmp(references[r].photo, name) == 0 &&
                      box_iou(&references[r].box, &got[i]) >= MIN_IOU;
        CHECK_MSG(partner, "%s: face %.1f,%.1f %.1fx%.1f (%.3f) is not one of face-api's", name,
                  got[i].x, got[i].y, got[i].width, got[i].height, got[i].score);
    }
    size_t above = 0;
    for (size_t i = 0; i < got_count; i++)
        above += got[i].score > DIAT_FACE_DETECTOR_SCORE_THRESHOLD;
    printf("  %-16s face-api %d faces (> 0.5), engine %zu; %d of face-api's boxes >= 0.3 matched\n",
           name, reference_faces, above, matched_reference);
}

static void test_detections_match_face_api(void)
{
    static const char *photos[] = {"2008_001009.png", "2008_002506.png", "2008_002470.png",
                                   "2009_004587.png", "astronaut.png",   "camera.png"};
    for (size_t p = 0; p < sizeof photos / sizeof photos[0]; p++) {
        imgio_image img;
        if (!load_photo(photos[p], &img)) continue;
        diat_face_detection *found = NULL;
        size_t count = 0;
        diat_error err;
        /* The reference's threshold, to match its near misses too. */
        CHECK(diat_face_detector_run(detector, &img.image, NULL, 0.3f, &found, &count, &err) ==
              DIAT_OK);
        compare_with_face_api(photos[p], found, count);
        for (size_t i = 1; i < count; i++) CHECK(found[i - 1].score >= found[i].score);
        free(found);
        imgio_free(&img);
    }
}

/* ---- image layouts ----------------------------------------------------------- */

static int same_detections(const diat_face_detection *a, size_t a_count,
                           const diat_face_detection *b, size_t b_count, double tolerance)
{
    if (a_count != b_count) return 0;
    for (size_t i = 0; i < a_count; i++)
        if (fabs(a[i].x - b[i].x) > tolerance || fabs(a[i].y - b[i].y) > tolerance ||
            fabs(a[i].width - b[i].width) > tolerance ||
            fabs(a[i].height - b[i].height) > tolerance || fabs(a[i].score - b[i].score) > 1e-5)
            return 0;
    return 1;
}

/* Gray as RGB, gray + alpha, RGBA and rows with slack give what the plain
 * layout gives (alpha is ignored). */
static void test_layouts(void)
{
    imgio_image rgb_img, gray_img;
    if (!load_photo("2008_002506.png", &rgb_img) || !load_photo("camera.png", &gray_img)) return;
    diat_error err;
    struct {
        const diat_image *plain;
        int channels; /* of the variant */
        const char *what;
    } variants[] = {{&rgb_img.image, 4, "RGBA"},
                    {&gray_img.image, 2, "gray+alpha"},
                    {&gray_img.image, 3, "gray as RGB"}};
    for (size_t v = 0; v < sizeof variants / sizeof variants[0]; v++) {
        const diat_image *plain = variants[v].plain;
        const int channels = variants[v].channels, slack = 5;
        diat_image variant = {plain->width, plain->height, channels,
                              (size_t)plain->width * channels + slack, NULL};
        variant.pixels = malloc(variant.stride * variant.height * sizeof(float));
        for (int y = 0; y < plain->height; y++) {
            for (int x = 0; x < plain->width; x++) {
                const float *src = plain->pixels + y * plain->stride + (size_t)x * plain->channels;
                float *dst = variant.pixels + y * variant.stride + (size_t)x * channels;
                for (int c = 0; c < channels; c++) {
                    int is_alpha = channels == 2 ? c == 1 : channels == 4 ? c == 3 : 0;
                    dst[c] = is_alpha ? 0.25f : src[plain->channels == 1 ? 0 : c];
                }
            }
            for (int s = 0; s < slack; s++)
                variant.pixels[y * variant.stride + (size_t)plain->width * channels + s] = NAN;
        }
        diat_face_detection *a = NULL, *b = NULL;
        size_t a_count = 0, b_count = 0;
        CHECK(diat_face_detector_run(detector, plain, NULL, 0.3f, &a, &a_count, &err) == DIAT_OK);
        CHECK(diat_face_detector_run(detector, &variant, NULL, 0.3f, &b, &b_count, &err) ==
              DIAT_OK);
        CHECK_MSG(a_count > 0 && same_detections(a, a_count, b, b_count, 1e-3),
                  "%s: %zu faces vs %zu", variants[v].what, a_count, b_count);
        free(a), free(b), free(variant.pixels);
    }
    imgio_free(&rgb_img);
    imgio_free(&gray_img);
}

/* A photo enlarged 3 times by pixel replication is larger than twice the
 * input, so it goes through the area filter, which shrinks it by exactly 3:
 * back to the original pixels. The faces must be the original's, 3 times
 * larger. */
static void test_area_filter_path(void)
{
    imgio_image img;
    if (!load_photo("2008_002470.png", &img)) return;
    const diat_image *small = &img.image;
    const int factor = 3;
    diat_image large = {small->width * factor, small->height * factor, 3, 0, NULL};
    large.stride = (size_t)large.width * 3;
    large.pixels = malloc(large.stride * large.height * sizeof(float));
    for (int y = 0; y < large.height; y++)
        for (int x = 0; x < large.width; x++)
            for (int c = 0; c < 3; c++)
                large.pixels[y * large.stride + (size_t)x * 3 + c] =
                    small->pixels[(y / factor) * small->stride + (size_t)(x / factor) * 3 + c];
    diat_face_detection *a = NULL, *b = NULL;
    size_t a_count = 0, b_count = 0;
    diat_error err;
    CHECK(diat_face_detector_run(detector, small, NULL, 0.3f, &a, &a_count, &err) == DIAT_OK);
    CHECK(diat_face_detector_run(detector, &large, NULL, 0.3f, &b, &b_count, &err) == DIAT_OK);
    for (size_t i = 0; i < a_count; i++) {
        a[i].x *= factor, a[i].y *= factor, a[i].width *= factor, a[i].height *= factor;
    }
    CHECK_MSG(a_count == 5 && same_detections(a, a_count, b, b_count, 1e-2),
              "%zu faces at 1x, %zu at 3x", a_count, b_count);
    free(a), free(b), free(large.pixels);
    imgio_free(&img);
}

/* ---- no faces, odd sizes, errors -------------------------------------------- */

static void test_no_face(void)
{
    diat_error err;
    const int w = 640, h = 480;
    float *pixels = malloc((size_t)w * h * 3 * sizeof *pixels);
    for (int pattern = 0; pattern < 2; pattern++) {
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++)
                for (int c = 0; c < 3; c++)
                    pixels[((size_t)y * w + x) * 3 + c] =
                        pattern == 0 ? 0.5f
                                     : (float)(0.5 + 0.4 * sin(x * 0.02 + c) * cos(y * 0.03));
        diat_image image = {w, h, 3, (size_t)w * 3, pixels};
        diat_face_detection *found = NULL;
        size_t count = 7;
        CHECK(diat_face_detector_run(detector, &image, NULL, DIAT_FACE_DETECTOR_SCORE_THRESHOLD,
                                     &found, &count, &err) == DIAT_OK);
        CHECK_MSG(count == 0 && found == NULL, "%zu faces in a %s image", count,
                  pattern == 0 ? "plain gray" : "smooth synthetic");
        free(found);
    }
    free(pixels);
}

static void test_tiny_and_bad_images(void)
{
    diat_error err;
    diat_face_detection *found = NULL;
    size_t count = 0;
    float one_pixel[3] = {0.2f, 0.6f, 0.9f};
    diat_image tiny = {1, 1, 3, 3, one_pixel};
    CHECK(diat_face_detector_run(detector, &tiny, NULL, DIAT_FACE_DETECTOR_SCORE_THRESHOLD, &found,
                                 &count, &err) == DIAT_OK);
    CHECK_MSG(count == 0, "%zu faces in a 1x1 image", count);
    free(found);
    /* A thin strip: one axis enlarges, the other shrinks. */
    float strip[2000];
    for (int i = 0; i < 2000; i++) strip[i] = (float)(i % 7) / 7.0f;
    diat_image thin = {2000, 1, 1, 2000, strip};
    CHECK(diat_face_detector_run(detector, &thin, NULL, 0.5f, &found, &count, &err) == DIAT_OK);
    free(found);

    diat_image bad[] = {{0, 10, 3, 0, one_pixel},
                        {1, 1, 5, 5, one_pixel},
                        {1, 1, 3, 3, NULL},
                        {2, 1, 3, 3, one_pixel}}; /* stride shorter than a row */
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        count = 9;
        CHECK(diat_face_detector_run(detector, &bad[i], NULL, 0.5f, &found, &count, &err) ==
              DIAT_ERR_ARGUMENT);
        CHECK(count == 0 && found == NULL && strlen(err.message) > 20);
    }
    diat_box outside = {5, 5, 10, 10};
    CHECK(diat_face_detector_run(detector, &tiny, &outside, 0.5f, &found, &count, &err) ==
          DIAT_ERR_ARGUMENT);
    CHECK(strstr(err.message, "outside") != NULL);

    diat_face_detector *other = NULL;
    char path[4200];
    snprintf(path, sizeof path, "%s", landmarks_path);
    CHECK(diat_face_detector_load(ctx, path, &other, &err) == DIAT_ERR_FORMAT);
    CHECK(other == NULL && strstr(err.message, "face detector") != NULL);
}

/* 20000 x 20000 gray zeros held as file cache (test_map_zeros), already
 * resident, so the peak resident set grows only by what the detector
 * allocates, its first run's buffers included (about 20 MB). It must stay
 * far below one photo-sized float plane (1.6 GB). */
static void test_huge_image(void)
{
    const int side = 20000;
    float *pixels = test_map_zeros((size_t)side * side * sizeof *pixels);
    if (!pixels) {
        printf("  (skipped: cannot reserve a 20000x20000 image)\n");
        return;
    }
    struct rusage before, after;
    getrusage(RUSAGE_SELF, &before);
    diat_image huge = {side, side, 1, (size_t)side, pixels};
    diat_face_detection *found = NULL;
    size_t count = 0;
    diat_error err;
    CHECK(diat_face_detector_run(detector, &huge, NULL, 0.5f, &found, &count, &err) == DIAT_OK);
    CHECK(count == 0);
    free(found);
    getrusage(RUSAGE_SELF, &after);
    long grown_kb = after.ru_maxrss - before.ru_maxrss;
    printf("  20000x20000: peak memory grew by %ld KiB\n", grown_kb);
    CHECK_MSG(grown_kb < 64 * 1024, "peak memory grew by %ld KiB", grown_kb);
    munmap(pixels, (size_t)side * side * sizeof *pixels);
}

/* ---- the public finder ------------------------------------------------------- */

static void test_find_faces(void)
{
    diat_face_finder *finder = NULL;
    diat_error err;
    if (diat_face_finder_load(ctx, detector_path, landmarks_path, &finder, &err) != DIAT_OK) {
        CHECK_MSG(0, "%s", err.message);
        return;
    }
    imgio_image img;
    if (!load_photo("2008_002470.png", &img)) {
        diat_face_finder_free(finder);
        return;
    }
    diat_face *faces = NULL;
    size_t count = 0;
    CHECK(diat_find_faces(finder, &img.image, NULL, &faces, &count, &err) == DIAT_OK);
    diat_face_detection *boxes = NULL;
    size_t box_count = 0;
    CHECK(diat_face_detector_run(detector, &img.image, NULL, DIAT_FACE_DETECTOR_SCORE_THRESHOLD,
                                 &boxes, &box_count, &err) == DIAT_OK);
    CHECK_MSG(count == box_count && count == 5, "%zu faces, %zu detections", count, box_count);
    for (size_t i = 0; i < count; i++) {
        if (i > 0)
            CHECK(faces[i - 1].width * faces[i - 1].height >= faces[i].width * faces[i].height);
        double mean_x = 0, mean_y = 0;
        for (int k = 0; k < 68; k++)
            mean_x += faces[i].landmarks[k][0] / 68, mean_y += faces[i].landmarks[k][1] / 68;
        CHECK_MSG(mean_x > faces[i].x && mean_x < faces[i].x + faces[i].width &&
                      mean_y > faces[i].y && mean_y < faces[i].y + faces[i].height,
                  "face %zu: landmarks centred at %.1f,%.1f, outside its box", i, mean_x, mean_y);
    }
    diat_faces_free(faces);
    free(boxes);

    /* A region tight around the weakest of the five faces (score ~0.56) and
     * one around the grimacing man of 2008_002506 whom face-api scores 0.33:
     * each gives one face inside it. */
    diat_box tight = {172, 78, 50, 44};
    CHECK(diat_find_faces(finder, &img.image, &tight, &faces, &count, &err) == DIAT_OK);
    CHECK_MSG(count == 1 && faces[0].x + faces[0].width / 2 > tight.x &&
                  faces[0].x + faces[0].width / 2 < tight.x + tight.width,
              "%zu faces in the region", count);
    diat_faces_free(faces);
    imgio_free(&img);
    if (load_photo("2008_002506.png", &img)) {
        diat_box grimace = {215, 90, 100, 120};
        CHECK(diat_find_faces(finder, &img.image, &grimace, &faces, &count, &err) == DIAT_OK);
        CHECK_MSG(count == 1 && faces[0].x + faces[0].width / 2 > grimace.x &&
                      faces[0].x + faces[0].width / 2 < grimace.x + grimace.width,
                  "%zu faces in the grimacing man's region", count);
        if (count == 1) printf("  region around the grimacing man: score %.3f\n", faces[0].score);
        diat_faces_free(faces);
        diat_box outside = {600, 10, 50, 50};
        CHECK(diat_find_faces(finder, &img.image, &outside, &faces, &count, &err) ==
              DIAT_ERR_ARGUMENT);
        CHECK(faces == NULL && count == 0);
        imgio_free(&img);
    }
    diat_faces_free(NULL);
    diat_face_finder_free(finder);
    diat_face_finder_free(NULL);
}

int main(int argc, char **argv)
{
    diat_error err;
    if (diat_context_new(DIAT_BACKEND_CPU, 1, &ctx, &err) != DIAT_OK) {
        fprintf(stderr, "%s\n", err.message);
        return 1;
    }
    test_source_path(detector_path, sizeof detector_path, argc, argv, 1,
                     "models/face-detector-tiny.safetensors");
    test_source_path(landmarks_path, sizeof landmarks_path, argc, argv, 2,
                     "models/face-landmarks-68.safetensors");
    test_source_path(photos_dir, sizeof photos_dir, argc, argv, 3, "tests/data/photos");

    if (diat_face_detector_load(ctx, detector_path, &detector, &err) != DIAT_OK) {
        fprintf(stderr, "%s\n", err.message);
        return 1;
    }
    read_references();
    /* First, so that the peak memory it measures is not an earlier test's. */
    RUN_TEST(test_huge_image);
    RUN_TEST(test_grid_matches_face_api);
    RUN_TEST(test_detections_match_face_api);
    RUN_TEST(test_layouts);
    RUN_TEST(test_area_filter_path);
    RUN_TEST(test_no_face);
    RUN_TEST(test_tiny_and_bad_images);
    RUN_TEST(test_find_faces);
    printf("  against face-api: logits within %.2g; scores within %.2g; box IoU >= %.4f\n",
           worst_logit_error, worst_score_error, worst_iou);

    diat_face_detector_free(detector);
    diat_context_free(ctx);
    return TEST_SUMMARY();
}

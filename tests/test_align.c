/* Face alignment and the inverse-warp paste-back (engine/align.c,
 * engine/image-resample.c, diat_edit_new_aligned):
 *  - the similarity fit recovers a known transform from landmarks; bad
 *    landmarks, tiny faces and faces off the photo are clear errors;
 *  - the crop of an axis-aligned square is the separable filter it always
 *    was; crop and paste-back reproduce linear ramps exactly, through
 *    rotations and scales, the large-face box reduction included; the
 *    pasted square covers what it should and no more;
 *  - round trip: align -> identity edit -> paste back leaves 8-bit, 16-bit
 *    and float photos (values beyond [0, 1] too) bit for bit unchanged, for
 *    faces turned by +-30 degrees and faces cut by the border; an edit lands
 *    where its face content is;
 *  - a 1x1 image, and a 20000 x 20000 one without a photo-sized copy;
 *  - built with the trainer: its folder-pair data sets aligned by the face
 *    finder give exactly the engine's aligned crops; faceless images are
 *    skipped with a warning;
 *  - with the shared CelebA copies (DIAT_SHARED_DATA): aligning the 256
 *    native originals reproduces the celeba128 crops, from the template's
 *    points and from the landmarks the face finder detects; a copy turned by
 *    +-30 degrees and enlarged aligns back onto the upright crop.
 *
 *   test-align IDENTITY_MODEL TINT_MODEL [DETECTOR_MODEL LANDMARK_MODEL]
 * Without the shared data the synthetic checks run and the test exits 77
 * (skipped) if they pass; without the face models the detector-based
 * checks are left out (and said so). */
#include "align.h"
#include "image-io.h"
#include "testutil.h"
#include "dataset.h"

#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define FACE 128
#define FACE_PLANE (FACE * FACE)
#define PI 3.14159265358979323846

static diat_context *ctx;
static const char *identity_path, *tint_path;
static diat_face_finder *finder; /* NULL when the face models are absent */
static const char *detector_path, *landmarks_path;
static char shared[1024];

/* ---- helpers ------------------------------------------------------------- */

static diat_face_transform similarity(double angle_deg, double scale, double cx, double cy)
{
    /* face centre (64, 64) -> (cx, cy) */
    double a = scale * cos(angle_deg * PI / 180.0), b = scale * sin(angle_deg * PI / 180.0);
    return (diat_face_transform){a, b, cx - (a * 64 - b * 64), cy - (b * 64 + a * 64)};
}

static void apply(const diat_face_transform *t, double u, double v, double *x, double *y)
{
    *x = t->a * u - t->b * v + t->tx;
    *y = t->b * u + t->a * v + t->ty;
}

/* A face whose key points are the template's, placed by `t`, in the
 * detector's convention (pixel centres at whole numbers). */
static diat_face face_from_template(const diat_face_transform *t)
{
    diat_face face = {0};
    double pts[DIAT_ALIGN_POINTS][2];
    for (int k = 0; k < DIAT_ALIGN_POINTS; k++) {
        apply(t, diat_align_template[k][0], diat_align_template[k][1], &pts[k][0], &pts[k][1]);
        pts[k][0] -= 0.5, pts[k][1] -= 0.5;
    }
    double cx, cy;
    apply(t, 64, 64, &cx, &cy);
    for (int i = 0; i < 68; i++) face.landmarks[i][0] = (float)cx, face.landmarks[i][1] = (float)cy;
    for (int i = 0; i < 6; i++)
        for (int k = 0; k < 2; k++) {
            face.landmarks[36 + i][k] = (float)pts[0][k];
            face.landmarks[42 + i][k] = (float)pts[1][k];
        }
    for (int k = 0; k < 2; k++) {
        face.landmarks[48][k] = (float)pts[2][k];
        face.landmarks[54][k] = (float)pts[3][k];
    }
    face.width = face.height = (float)(128 * diat_face_transform_scale(t));
    face.score = 1.0f;
    return face;
}

static diat_image new_image(int w, int h, int channels)
{
    diat_image img = {w, h, channels, (size_t)w * channels, NULL};
    img.pixels = calloc((size_t)w * h * channels, sizeof(float));
    return img;
}

/* Smooth random colours, quantised to `levels` - 1 steps (255: 8-bit, 65535:
 * 16-bit, 0: unquantised floats reaching a little beyond [0, 1]). */
static diat_image textured_image(int w, int h, int channels, int levels, unsigned long long seed)
{
    diat_image img = new_image(w, h, channels);
    double f[4][3];
    for (int c = 0; c < 4; c++)
        for (int k = 0; k < 3; k++) f[c][k] = test_rand(&seed);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            for (int c = 0; c < channels; c++) {
                double v = 0.5 + 0.3 * sin(0.05 * f[c][0] * x + 0.07 * f[c][1] * y + 3 * f[c][2]) +
                           0.15 * test_rand(&seed);
                if (levels > 0) {
                    v = v < 0 ? 0 : v > 1 ? 1 : v;
                    v = (double)lrint(v * levels) / levels;
                } else {
                    v = 1.2 * v - 0.1;
                }
                img.pixels[((size_t)y * w + x) * channels + c] = (float)v;
            }
    return img;
}

static diat_image copy_image(const diat_image *src)
{
    diat_image img = *src;
    size_t n = src->stride * (size_t)src->height;
    img.pixels = malloc(n * sizeof(float));
    memcpy(img.pixels, src->pixels, n * sizeof(float));
    return img;
}

/* Mean |a - b| over the face's middle (a margin of 16) with b shifted by
 * (dx, dy): planar RGB faces. */
static double shifted_difference(const float *a, const float *b, int dx, int dy)
{
    double total = 0;
    long n = 0;
    for (int c = 0; c < 3; c++)
        for (int y = 16; y < FACE - 16; y++)
            for (int x = 16; x < FACE - 16; x++, n++)
                total += fabs(a[c * FACE_PLANE + y * FACE + x] -
                              b[c * FACE_PLANE + (y + dy) * FACE + x + dx]);
    return total / n;
}

/* The integer shift of b (up to 4 pixels each way) that matches a best. */
static double best_shift(const float *a, const float *b, int *sx, int *sy)
{
    double best = INFINITY;
    for (int dy = -4; dy <= 4; dy++)
        for (int dx = -4; dx <= 4; dx++) {
            double d = shifted_difference(a, b, dx, dy);
            if (d < best) best = d, *sx = dx, *sy = dy;
        }
    return best;
}

/* The process's anonymous memory now, what its allocations hold (not the
 * peak: earlier tests' peaks would hide it; not file pages). */
static long anonymous_resident_kb(void)
{
    long kb = 0;
    char line[256];
    FILE *f = fopen("/proc/self/status", "r");
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, "RssAnon:", 8) == 0) kb = atol(line + 8);
    if (f) fclose(f);
    return kb;
}

/* ---- the fit --------------------------------------------------------------- */

static void test_fit_recovers_transform(void)
{
    const double cases[][4] = {{0, 1.0, 64, 64},
                               {30, 2.5, 400, 300},
                               {-30, 0.7, 50, 900},
                               {170, 11.0, 3000, 2000},
                               {-90, 1.3, -20, 40}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        diat_face_transform want = similarity(cases[i][0], cases[i][1], cases[i][2], cases[i][3]);
        diat_face face = face_from_template(&want);
        diat_face_transform got;
        diat_error err;
        CHECK(diat_align_transform(&face, 4000, 3000, 16, &got, &err) == DIAT_OK);
        /* float landmarks: a few 1e-4 pixels of rounding */
        CHECK_MSG(fabs(got.a - want.a) < 1e-5 * cases[i][1] &&
                      fabs(got.b - want.b) < 1e-5 * cases[i][1] && fabs(got.tx - want.tx) < 2e-3 &&
                      fabs(got.ty - want.ty) < 2e-3,
                  "case %zu: got %g %g %g %g want %g %g %g %g", i, got.a, got.b, got.tx, got.ty,
                  want.a, want.b, want.tx, want.ty);
    }
    /* The inverse is the inverse. */
    diat_face_transform t = similarity(23, 3.1, 120, -40), inv = diat_face_transform_invert(&t);
    double x, y, u, v;
    apply(&t, 17.0, 99.0, &x, &y);
    apply(&inv, x, y, &u, &v);
    CHECK(fabs(u - 17.0) < 1e-9 && fabs(v - 99.0) < 1e-9);
}

static void test_bad_faces(void)
{
    diat_error err;
    diat_face_transform t;
    diat_face face = {0};
    for (int i = 0; i < 68; i++) face.landmarks[i][0] = face.landmarks[i][1] = 50.0f;
    CHECK(diat_align_transform(&face, 100, 100, 16, &t, &err) == DIAT_ERR_ARGUMENT);
    CHECK_MSG(strstr(err.message, "degenerate") != NULL, "%s", err.message);
    diat_face_transform place = similarity(0, 1.0, 50, 50);
    face = face_from_template(&place);
    face.landmarks[40][1] = NAN;
    CHECK(diat_align_transform(&face, 100, 100, 16, &t, &err) == DIAT_ERR_ARGUMENT);
    place = similarity(0, 0.05, 50, 50); /* a face 6 pixels wide */
    face = face_from_template(&place);
    CHECK(diat_align_transform(&face, 100, 100, 16, &t, &err) == DIAT_ERR_ARGUMENT);
    CHECK_MSG(strstr(err.message, "at least 16") != NULL, "%s", err.message);
    place = similarity(0, 1.0, 500, 50); /* beside the photo */
    face = face_from_template(&place);
    CHECK(diat_align_transform(&face, 100, 100, 16, &t, &err) == DIAT_ERR_ARGUMENT);
    CHECK_MSG(strstr(err.message, "outside") != NULL, "%s", err.message);
    /* The edit API says the same, and NULL faces are refused. */
    diat_model *model;
    CHECK(diat_model_load(ctx, identity_path, &model, &err) == DIAT_OK);
    diat_image photo = textured_image(100, 100, 3, 255, 1);
    diat_edit *edit = (diat_edit *)&err; /* must be reset to NULL */
    CHECK(diat_edit_new_aligned(model, &photo, &face, NULL, NULL, &edit, &err) ==
              DIAT_ERR_ARGUMENT &&
          edit == NULL);
    CHECK(diat_edit_new_aligned(model, &photo, NULL, NULL, NULL, &edit, &err) == DIAT_ERR_ARGUMENT);
    diat_model_free(model);
    free(photo.pixels);
}

/* ---- resampling -------------------------------------------------------------- */

/* An axis-aligned square is cropped exactly as the separable plan (the crop
 * the engine and the trainer's CelebA reader always used) crops it. */
static void test_square_is_the_separable_crop(void)
{
    diat_image photo = textured_image(300, 200, 3, 255, 2);
    const int squares[][3] = {
        {20, 30, 90}, {250, 40, 90}, {-30, -10, 128}, {10, 5, 300}, {0, 0, 500}};
    static float got[3 * FACE_PLANE], want[3 * FACE_PLANE];
    for (size_t k = 0; k < sizeof squares / sizeof squares[0]; k++) {
        int x0 = squares[k][0], y0 = squares[k][1], side = squares[k][2];
        diat_error err;
        CHECK(diat_crop_face(&photo, x0, y0, side, got, &err) == DIAT_OK);
        diat_resample_plan cols, rows;
        diat_resample_plan_new(&cols, x0, side, photo.width, FACE, &err);
        diat_resample_plan_new(&rows, y0, side, photo.height, FACE, &err);
        for (int oy = 0; oy < FACE; oy++)
            for (int ox = 0; ox < FACE; ox++)
                for (int c = 0; c < 3; c++) {
                    double acc = 0;
                    for (int t = 0; t < rows.taps; t++)
                        for (int u = 0; u < cols.taps; u++)
                            acc += rows.weight[oy * rows.taps + t] *
                                   cols.weight[ox * cols.taps + u] *
                                   photo.pixels[((size_t)rows.index[oy * rows.taps + t] * 300 +
                                                 cols.index[ox * cols.taps + u]) *
                                                    3 +
                                                c];
                    want[c * FACE_PLANE + oy * FACE + ox] = (float)acc;
                }
        diat_resample_plan_free(&cols);
        diat_resample_plan_free(&rows);
        double worst = 0;
        /* side 500 is 3.9 photo pixels per face pixel: still the direct filter */
        for (int i = 0; i < 3 * FACE_PLANE; i++) worst = fmax(worst, fabs(got[i] - want[i]));
        CHECK_MSG(worst < 2e-6, "square %d,%d,%d: off by %g", x0, y0, side, worst);
    }
    free(photo.pixels);
}

/* A 128-pixel square inside the photo is copied (the trainer's CelebA-128
 * faces): the same bits as the general warp at scale 1, for RGB, gray and
 * RGBA photos. */
static void test_one_to_one_crop_is_the_warp(void)
{
    static float got[3 * FACE_PLANE], want[3 * FACE_PLANE];
    const int squares[][2] = {{0, 0}, {17, 9}, {172, 72}};
    for (int channels = 1; channels <= 4; channels++) {
        diat_image photo = textured_image(300, 200, channels, 255, 3 + channels);
        for (size_t k = 0; k < sizeof squares / sizeof squares[0]; k++) {
            int x0 = squares[k][0], y0 = squares[k][1];
            diat_error err;
            diat_face_transform t = diat_face_transform_square(x0, y0, FACE);
            CHECK(diat_crop_face(&photo, x0, y0, FACE, got, &err) == DIAT_OK);
            CHECK(diat_warp_face(&photo, &t, want, &err) == DIAT_OK);
            CHECK_MSG(memcmp(got, want, sizeof got) == 0, "%d channels, square at %d,%d", channels,
                      x0, y0);
            const float *pixel =
                photo.pixels + (size_t)(y0 + 5) * photo.stride + (size_t)(x0 + 7) * channels;
            CHECK(got[5 * FACE + 7] == pixel[0] &&
                  got[2 * FACE_PLANE + 5 * FACE + 7] == pixel[channels >= 3 ? 2 : 0]);
        }
        free(photo.pixels);
    }
}

/* A linear ramp f(x, y) = alpha x + beta y + gamma (edge coordinates of the
 * pixel centre): every face pixel must equal f where its centre lands,
 * rotation or not, for the direct filter and for the box reduction of large
 * faces. Up to one thing: a tent sampled at whole pixels is not exactly
 * centred when its radius is not a whole number (up to 0.09 source pixels,
 * 0.07 face pixels at worst, see image-resample.c), so the allowance is
 * the ramp's change over 0.1 face pixel. */
static void test_crop_reproduces_ramps(void)
{
    const int w = 2600, h = 2600;
    diat_image photo = new_image(w, h, 3);
    const double coef[3][3] = {{3e-4, 1e-4, 0.1}, {-2e-4, 2.5e-4, 0.6}, {1e-5, -3e-4, 0.9}};
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            for (int c = 0; c < 3; c++)
                photo.pixels[((size_t)y * w + x) * 3 + c] =
                    (float)(coef[c][0] * (x + 0.5) + coef[c][1] * (y + 0.5) + coef[c][2]);
    /* scale: enlarging, 1:1, the direct shrink, the reduction (k = 3, 7) */
    const double cases[][2] = {{0, 0.6}, {30, 1.0}, {-30, 2.5}, {12, 3.99}, {-7, 6.5}, {41, 14.0}};
    static float face[3 * FACE_PLANE];
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        diat_face_transform t = similarity(cases[k][0], cases[k][1], 1300, 1300);
        diat_error err;
        CHECK(diat_warp_face(&photo, &t, face, &err) == DIAT_OK);
        double worst = 0; /* in face pixels */
        for (int j = 0; j < FACE; j++)
            for (int i = 0; i < FACE; i++) {
                double x, y;
                apply(&t, i + 0.5, j + 0.5, &x, &y);
                for (int c = 0; c < 3; c++) {
                    double want = coef[c][0] * x + coef[c][1] * y + coef[c][2];
                    double per_face_pixel = cases[k][1] * hypot(coef[c][0], coef[c][1]);
                    double off = fabs(face[c * FACE_PLANE + j * FACE + i] - want) - 2e-6;
                    worst = fmax(worst, off / per_face_pixel);
                }
            }
        printf("  crop angle %+4.0f scale %5.2f: worst %.4f face pixels off\n", cases[k][0],
               cases[k][1], worst);
        CHECK_MSG(worst < 0.1, "angle %g scale %g: off by %g face pixels", cases[k][0], cases[k][1],
                  worst);
    }
    free(photo.pixels);
}

typedef struct canvas {
    int width, planes;
    float *values; /* width * height * planes, NAN where no row reached */
} canvas;

static void to_canvas(void *user, int y, int x, int count, const float *values)
{
    canvas *c = user;
    memcpy(c->values + ((size_t)y * c->width + x) * c->planes, values,
           (size_t)count * c->planes * sizeof *values);
}

/* The paste-back samples linear maps exactly (inside the square, a pixel
 * from its edges), writes nothing outside the square, covers the inside
 * fully and the edge in proportion. */
static void test_paste_back_geometry(void)
{
    const int w = 700, h = 600;
    static float planes[2 * FACE_PLANE];
    for (int v = 0; v < FACE; v++)
        for (int u = 0; u < FACE; u++) {
            planes[v * FACE + u] = (float)(0.01 * u - 0.004 * v + 0.2); /* index coordinates */
            planes[FACE_PLANE + v * FACE + u] = 1.0f;
        }
    const double cases[][2] = {{0, 2.0}, {30, 3.3}, {-30, 0.75}, {90, 1.0}, {-161, 1.7}};
    canvas cv = {w, 2, malloc((size_t)w * h * 2 * sizeof(float))};
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        diat_face_transform t = similarity(cases[k][0], cases[k][1], 330, 290);
        diat_face_transform inv = diat_face_transform_invert(&t);
        double s = cases[k][1];
        for (size_t i = 0; i < (size_t)w * h * 2; i++) cv.values[i] = 0.0f;
        diat_error err;
        CHECK(diat_paste_face(planes, 2, &t, w, h, to_canvas, &cv, &err) == DIAT_OK);
        double worst = 0, covered = 0;
        int outside_written = 0, inside_partial = 0;
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++) {
                double u, v;
                apply(&inv, x + 0.5, y + 0.5, &u, &v);
                const float *val = cv.values + ((size_t)y * w + x) * 2;
                /* distance (photo pixels) inside the square's nearest edge */
                double inside = fmin(fmin(u, FACE - u), fmin(v, FACE - v)) * s;
                covered += val[1];
                if (inside <= -0.5) outside_written += val[0] != 0.0f || val[1] != 0.0f;
                if (inside >= 0.5) inside_partial += fabsf(val[1] - 1.0f) > 1e-6f;
                /* a face pixel and more from the edge: exact interpolation */
                if (inside > s + 1.0 && inside > 2.0) {
                    double want = 0.01 * (u - 0.5) - 0.004 * (v - 0.5) + 0.2;
                    worst = fmax(worst, (fabs(val[0] - want) - 1e-6) / hypot(0.01, 0.004));
                }
            }
        /* in face pixels; the tent's centring as in test_crop_reproduces_ramps */
        printf("  paste angle %+5.0f scale %4.2f: worst %.4f face pixels off\n", cases[k][0], s,
               worst);
        CHECK_MSG(worst < 0.1, "angle %g scale %g: off by %g face pixels", cases[k][0], s, worst);
        CHECK_MSG(outside_written == 0, "angle %g: %d pixels outside written", cases[k][0],
                  outside_written);
        CHECK_MSG(inside_partial == 0, "angle %g: %d inside pixels not fully covered", cases[k][0],
                  inside_partial);
        double area = (FACE * s) * (FACE * s);
        CHECK_MSG(fabs(covered - area) < 0.002 * area + 2.0, "angle %g: coverage %g of %g",
                  cases[k][0], covered, area);
    }
    /* An unrotated square on whole pixels covers exactly its pixels. */
    diat_face_transform square = diat_face_transform_square(100, 50, 256);
    for (size_t i = 0; i < (size_t)w * h * 2; i++) cv.values[i] = 0.0f;
    diat_error err;
    CHECK(diat_paste_face(planes, 2, &square, w, h, to_canvas, &cv, &err) == DIAT_OK);
    int wrong = 0;
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            int in = x >= 100 && x < 356 && y >= 50 && y < 306;
            wrong += cv.values[((size_t)y * w + x) * 2 + 1] != (in ? 1.0f : 0.0f);
        }
    CHECK_MSG(wrong == 0, "%d pixels of the whole-pixel square wrong", wrong);
    free(cv.values);
}

/* Faces reaching past the border are padded by replicating it. */
static void test_border_padding(void)
{
    diat_image photo = textured_image(200, 150, 3, 255, 3);
    diat_face_transform t = similarity(20, 1.6, 10, 140); /* centre near the bottom-left corner */
    static float face[3 * FACE_PLANE];
    diat_error err;
    CHECK(diat_warp_face(&photo, &t, face, &err) == DIAT_OK);
    int checked = 0, wrong = 0;
    for (int j = 0; j < FACE; j++)
        for (int i = 0; i < FACE; i++) {
            double x, y;
            apply(&t, i + 0.5, j + 0.5, &x, &y);
            /* far enough beyond both edges that every tap clamps to the corner */
            if (x < -3.0 && y > 153.0) {
                checked++;
                for (int c = 0; c < 3; c++)
                    wrong += fabsf(face[c * FACE_PLANE + j * FACE + i] -
                                   photo.pixels[((size_t)149 * 200 + 0) * 3 + c]) > 1e-6f;
            }
        }
    CHECK_MSG(checked > 100 && wrong == 0, "%d of %d padded pixels wrong", wrong, checked);
    free(photo.pixels);
}

/* ---- the edit: round trips ---------------------------------------------------- */

/* Align, edit with the identity model, paste back: nothing changes, bit for
 * bit, whatever the sample type, angle or border; the mask stays inside
 * the face's square. */
static void round_trip(const char *what, diat_image *photo, const diat_face_transform *place,
                       float ratio)
{
    diat_error err;
    diat_model *model;
    CHECK(diat_model_load(ctx, identity_path, &model, &err) == DIAT_OK);
    diat_image original = copy_image(photo);
    diat_face face = face_from_template(place);
    diat_edit *edit = NULL;
    diat_status st = diat_edit_new_aligned(model, photo, &face, NULL, NULL, &edit, &err);
    CHECK_MSG(st == DIAT_OK, "%s: %s", what, err.message);
    float *mask = malloc((size_t)photo->width * photo->height * sizeof *mask);
    if (st == DIAT_OK) {
        CHECK(diat_edit_render(edit, ratio, photo, mask, &err) == DIAT_OK);
        size_t bytes = photo->stride * (size_t)photo->height * sizeof(float);
        CHECK_MSG(memcmp(photo->pixels, original.pixels, bytes) == 0, "%s: pixels changed", what);
        /* The mask: some of the face, nothing a pixel beyond its square. */
        diat_face_transform inv = diat_face_transform_invert(place);
        double s = diat_face_transform_scale(place);
        size_t masked = 0, stray = 0;
        for (int y = 0; y < photo->height; y++)
            for (int x = 0; x < photo->width; x++) {
                if (!(mask[(size_t)y * photo->width + x] > 0.0f)) continue;
                masked++;
                double u, v;
                apply(&inv, x + 0.5, y + 0.5, &u, &v);
                double inside = fmin(fmin(u, FACE - u), fmin(v, FACE - v)) * s;
                stray += inside < -0.5 - 1e-3 * s; /* fitted from float landmarks */
            }
        CHECK_MSG(masked > 0 && stray == 0, "%s: %zu masked, %zu outside the square", what, masked,
                  stray);
    }
    free(mask);
    diat_edit_free(edit);
    diat_model_free(model);
    free(original.pixels);
}

static void test_round_trip_identity(void)
{
    diat_image rgb8 = textured_image(400, 300, 3, 255, 4);
    diat_face_transform p1 = similarity(30, 1.7, 200, 150);
    round_trip("8-bit RGB, +30 degrees", &rgb8, &p1, 0.8f);
    diat_face_transform p2 = similarity(-30, 0.9, 380, 20); /* cut by two borders */
    round_trip("8-bit RGB, -30 degrees at the border", &rgb8, &p2, 0.8f);
    diat_face_transform p3 = similarity(-4, 2.2, 210, 160);
    round_trip("8-bit RGB, model threshold", &rgb8, &p3, DIAT_RATIO_MODEL);
    diat_image ga16 = textured_image(257, 311, 2, 65535, 5);
    diat_face_transform p4 = similarity(13, 1.3, 120, 170);
    round_trip("16-bit gray+alpha", &ga16, &p4, 0.6f);
    diat_image f32 = textured_image(300, 300, 4, 0, 6); /* values in [-0.1, 1.1] */
    diat_face_transform p5 = similarity(-30, 2.0, 150, 150);
    round_trip("float RGBA beyond [0, 1]", &f32, &p5, 0.9f);
    /* Padded rows (stride beyond the width) keep their padding. */
    diat_image padded = textured_image(300, 200, 3, 255, 7);
    padded.width = 290;
    diat_face_transform p6 = similarity(25, 1.1, 280, 100);
    round_trip("padded rows", &padded, &p6, 0.8f);
    free(rgb8.pixels);
    free(ga16.pixels);
    free(f32.pixels);
    free(padded.pixels);
}

/* The tint fixture reddens what its mask marks (red-dominant pixels): a red
 * disc in a turned face gets redder where the disc is; the reddening in the
 * photo sits exactly where the 128x128 result has it, carried through the
 * face's transform; nothing the mask leaves out changes. */
static void test_edit_lands_in_place(void)
{
    diat_error err;
    diat_model *model;
    CHECK(diat_model_load(ctx, tint_path, &model, &err) == DIAT_OK);
    const int w = 500, h = 420;
    diat_image photo = new_image(w, h, 3);
    diat_face_transform place = similarity(-30, 2.0, 260, 200);
    double dx, dy; /* the disc: under the template's mouth, 24 face pixels across */
    apply(&place, 64.0, 96.0, &dx, &dy);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            float *p = photo.pixels + ((size_t)y * w + x) * 3;
            int in = hypot(x + 0.5 - dx, y + 0.5 - dy) < 24.0;
            p[0] = in ? 0.7f : 0.45f, p[1] = in ? 0.2f : 0.45f, p[2] = in ? 0.2f : 0.45f;
        }
    diat_image original = copy_image(&photo);
    diat_face face = face_from_template(&place);
    diat_edit *edit = NULL;
    CHECK(diat_edit_new_aligned(model, &photo, &face, NULL, NULL, &edit, &err) == DIAT_OK);
    float *mask = malloc((size_t)w * h * sizeof *mask);
    static float result[3 * FACE_PLANE], input[3 * FACE_PLANE];
    if (edit) {
        /* In the face: the result against the input (ratio 0 renders x). */
        CHECK(diat_edit_render_face(edit, DIAT_RATIO_MODEL, result, NULL, NULL, &err) == DIAT_OK);
        CHECK(diat_edit_render_face(edit, 0.0f, input, NULL, NULL, &err) == DIAT_OK);
        double fsum = 0, fu = 0, fv = 0;
        for (int v = 0; v < FACE; v++)
            for (int u = 0; u < FACE; u++) {
                double gain = result[(v * FACE + u) * 3] - input[(v * FACE + u) * 3];
                fsum += gain, fu += gain * (u + 0.5), fv += gain * (v + 0.5);
            }
        double want_x, want_y;
        apply(&place, fu / fsum, fv / fsum, &want_x, &want_y);
        /* In the photo. */
        CHECK(diat_edit_render(edit, DIAT_RATIO_MODEL, &photo, mask, &err) == DIAT_OK);
        double sum = 0, sx = 0, sy = 0;
        size_t unmasked_changed = 0;
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++) {
                size_t i = (size_t)y * w + x;
                float gain = photo.pixels[i * 3] - original.pixels[i * 3];
                if (mask[i] == 0.0f)
                    unmasked_changed += memcmp(photo.pixels + i * 3, original.pixels + i * 3,
                                               3 * sizeof(float)) != 0;
                sum += gain, sx += gain * (x + 0.5), sy += gain * (y + 0.5);
            }
        CHECK(unmasked_changed == 0);
        CHECK_MSG(sum > 100.0, "the disc got redder by %g in total", sum);
        /* area scales by s^2 = 4 from face to photo */
        CHECK_MSG(fabs(sum - 4.0 * fsum) < 0.01 * 4.0 * fsum,
                  "reddening %g in the photo, %g x 4 "
                  "in the face",
                  sum, fsum);
        double cx = sx / sum, cy = sy / sum;
        CHECK_MSG(hypot(cx - want_x, cy - want_y) < 0.25,
                  "edit centred at %.2f, %.2f in the photo; the face puts it at %.2f, %.2f", cx, cy,
                  want_x, want_y);
        CHECK_MSG(hypot(cx - dx, cy - dy) < 6.0, "edit centred at %.2f, %.2f; disc at %.2f, %.2f",
                  cx, cy, dx, dy);
    }
    free(mask);
    diat_edit_free(edit);
    diat_model_free(model);
    free(photo.pixels);
    free(original.pixels);
}

/* ---- odd sizes ------------------------------------------------------------- */

static void test_one_pixel_image(void)
{
    diat_error err;
    diat_model *model;
    CHECK(diat_model_load(ctx, identity_path, &model, &err) == DIAT_OK);
    diat_image one = textured_image(1, 1, 3, 255, 8);
    diat_edit *edit = NULL;
    /* A face that fits in the pixel is too small to edit... */
    diat_face_transform small = similarity(0, 1.0 / 128, 0.5, 0.5);
    diat_face face = face_from_template(&small);
    CHECK(diat_edit_new_aligned(model, &one, &face, NULL, NULL, &edit, &err) == DIAT_ERR_ARGUMENT);
    CHECK_MSG(strstr(err.message, "at least") != NULL, "%s", err.message);
    /* ...one around it is all border padding, and pastes back onto it. */
    diat_face_transform big = similarity(10, 0.5, 0.5, 0.5);
    face = face_from_template(&big);
    CHECK(diat_edit_new_aligned(model, &one, &face, NULL, NULL, &edit, &err) == DIAT_OK);
    float before[3] = {one.pixels[0], one.pixels[1], one.pixels[2]}, mask = -1;
    if (edit) {
        CHECK(diat_edit_render(edit, 0.5f, &one, &mask, &err) == DIAT_OK);
        CHECK(memcmp(before, one.pixels, sizeof before) == 0 && mask >= 0.0f);
    }
    diat_edit_free(edit);
    diat_model_free(model);
    free(one.pixels);
}

/* 20000 x 20000 gray floats are 1.6 GB: more than a test may take, and
 * exactly what the engine must never copy. The image is file cache
 * (test_map_zeros), so the growth of the anonymous resident set measures
 * only what the engine itself allocated and touched, while the image is
 * the real size (not a 20000 x 1 stand-in that would leave the row-by-row
 * rule untested). Only the face's rows are written (private copies, before
 * the measurement). */
static void test_huge_image_bounded_memory(void)
{
    const int side = 20000;
    size_t bytes = (size_t)side * side * sizeof(float);
    float *pixels = test_map_zeros(bytes);
    if (!pixels) {
        printf("note: cannot map a 20000 x 20000 image here; the check is left out\n");
        return;
    }
    diat_image photo = {side, side, 1, side, pixels};
    diat_face_transform place = similarity(12, 2.5, 9000, 11000);
    for (int y = 10500; y < 11500; y++)
        for (int x = 8500; x < 9500; x++)
            pixels[(size_t)y * side + x] = 0.25f + 0.5f * ((x ^ y) & 1);
    diat_error err;
    diat_model *model;
    CHECK(diat_model_load(ctx, identity_path, &model, &err) == DIAT_OK);
    long before = anonymous_resident_kb();
    diat_face face = face_from_template(&place);
    diat_edit *edit = NULL;
    CHECK(diat_edit_new_aligned(model, &photo, &face, NULL, NULL, &edit, &err) == DIAT_OK);
    if (edit) CHECK(diat_edit_render(edit, 0.7f, &photo, NULL, &err) == DIAT_OK);
    diat_edit_free(edit);
    /* A face as large as the image: the crop's box reduction reads its whole
     * footprint (a billion pixels' worth of area) into a few hundred KB. */
    diat_face_transform huge = similarity(-20, 19000.0 / 128, 10000, 10000);
    face = face_from_template(&huge);
    static float crop[3 * FACE_PLANE];
    diat_face_transform t;
    CHECK(diat_align_transform(&face, side, side, 16, &t, &err) == DIAT_OK);
    CHECK(diat_warp_face(&photo, &t, crop, &err) == DIAT_OK);
    long grown = anonymous_resident_kb() - before;
    printf("  20000 x 20000: the edits grew the resident set by %ld KB\n", grown);
    CHECK_MSG(grown < 64 * 1024, "grew by %ld KB", grown);
    diat_model_free(model);
    munmap(pixels, bytes);
}

/* ---- CelebA ------------------------------------------------------------------ */

static int load_planar(const char *path, float *out)
{
    imgio_image img;
    diat_error err;
    if (imgio_load(path, &img, &err) != DIAT_OK) {
        CHECK_MSG(0, "%s", err.message);
        return 0;
    }
    int ok = img.image.width == FACE && img.image.height == FACE && img.image.channels == 3;
    for (int i = 0; ok && i < FACE_PLANE; i++)
        for (int c = 0; c < 3; c++) out[c * FACE_PLANE + i] = img.image.pixels[i * 3 + c];
    imgio_free(&img);
    return ok;
}

static int compare_doubles(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double percentile(double *v, int n, double p)
{
    qsort(v, (size_t)n, sizeof *v, compare_doubles);
    int i = (int)ceil(p * n) - 1;
    return v[i < 0 ? 0 : i >= n ? n - 1 : i];
}

/* A copy of `src` turned by `angle` and enlarged `scale` times about the
 * CelebA face's centre, on a square canvas (bilinear, border replicated;
 * written here independently of the engine's warp). `*face_to_canvas`
 * places the CelebA-128 square in it. */
static diat_image turned_copy(const diat_image *src, double angle, double scale, int side,
                              diat_face_transform *face_to_canvas)
{
    diat_face_transform to_src = diat_face_transform_square(0, 20, 178);
    *face_to_canvas = similarity(angle, scale * 178.0 / 128, side / 2.0, side / 2.0);
    diat_face_transform from_canvas = diat_face_transform_invert(face_to_canvas);
    diat_image out = new_image(side, side, 3);
    for (int y = 0; y < side; y++)
        for (int x = 0; x < side; x++) {
            double u, v, sx, sy;
            apply(&from_canvas, x + 0.5, y + 0.5, &u, &v);
            apply(&to_src, u, v, &sx, &sy);
            sx -= 0.5, sy -= 0.5;
            int x0 = (int)floor(sx), y0 = (int)floor(sy);
            double fx = sx - x0, fy = sy - y0;
            for (int c = 0; c < 3; c++) {
                double acc = 0;
                for (int k = 0; k < 4; k++) {
                    int xi = x0 + (k & 1), yi = y0 + (k >> 1);
                    xi = xi < 0 ? 0 : xi >= src->width ? src->width - 1 : xi;
                    yi = yi < 0 ? 0 : yi >= src->height ? src->height - 1 : yi;
                    double w = ((k & 1) ? fx : 1 - fx) * ((k >> 1) ? fy : 1 - fy);
                    acc += w * src->pixels[((size_t)yi * src->width + xi) * 3 + c];
                }
                out.pixels[((size_t)y * side + x) * 3 + c] = (float)acc;
            }
        }
    return out;
}

static int detect_largest(const diat_image *photo, diat_face *face)
{
    diat_face *faces = NULL;
    size_t count = 0;
    diat_error err;
    if (diat_find_faces(finder, photo, NULL, &faces, &count, &err) != DIAT_OK) {
        CHECK_MSG(0, "%s", err.message);
        return 0;
    }
    if (count) *face = faces[0];
    diat_faces_free(faces);
    return count > 0;
}

static void test_celeba_originals(void)
{
    char list[1200];
    snprintf(list, sizeof list, "%s/celeba-orig/list_eval_partition.txt", shared);
    FILE *f = fopen(list, "r");
    CHECK_MSG(f != NULL, "cannot open %s", list);
    if (!f) return;
    enum { MAX_IMAGES = 256 };
    static double template_diff[MAX_IMAGES], detected_shift[MAX_IMAGES], eye_error[MAX_IMAGES],
        detected_diff[MAX_IMAGES], turned_diff[2 * MAX_IMAGES], turned_shift[2 * MAX_IMAGES];
    int images = 0, template_shifted = 0, detected = 0, turned = 0, turned_found = 0;
    static float aligned[3 * FACE_PLANE], reference[3 * FACE_PLANE], upright[3 * FACE_PLANE];
    char name[256], path[1600];
    int split;
    while (images < MAX_IMAGES && fscanf(f, "%255s %d", name, &split) == 2) {
        snprintf(path, sizeof path, "%s/celeba-orig/img_align_celeba/%s", shared, name);
        imgio_image orig;
        diat_error err;
        if (access(path, R_OK) != 0) continue;
        if (imgio_load(path, &orig, &err) != DIAT_OK) {
            CHECK_MSG(0, "%s", err.message);
            continue;
        }
        snprintf(path, sizeof path, "%s/celeba128/img_align_celeba/%s", shared, name);
        if (!load_planar(path, reference)) {
            imgio_free(&orig);
            continue;
        }
        /* 1. The template's own points where CelebA's crop puts them: the
         * alignment is that crop (only the filters differ: Lanczos and JPEG
         * there, the tent here). */
        diat_face_transform crop = diat_face_transform_square(0, 20, 178);
        diat_face face = face_from_template(&crop);
        diat_face_transform t;
        int sx = 0, sy = 0;
        CHECK(diat_align_transform(&face, 178, 218, 16, &t, &err) == DIAT_OK);
        CHECK(diat_warp_face(&orig.image, &t, upright, &err) == DIAT_OK);
        template_diff[images] = best_shift(reference, upright, &sx, &sy);
        template_shifted += sx != 0 || sy != 0;

        /* 2. Landmarks found by the face finder. */
        if (finder && detect_largest(&orig.image, &face)) {
            CHECK(diat_align_transform(&face, 178, 218, 16, &t, &err) == DIAT_OK);
            CHECK(diat_warp_face(&orig.image, &t, aligned, &err) == DIAT_OK);
            detected_diff[detected] = best_shift(reference, aligned, &sx, &sy);
            detected_shift[detected] = fmax(abs(sx), abs(sy)); /* per axis */
            /* Where the found eyes land: in our alignment and in CelebA's
             * crop (eye centres, 128 frame). */
            double pts[DIAT_ALIGN_POINTS][2], worst = 0;
            diat_align_key_points(&face, pts);
            diat_face_transform ours = diat_face_transform_invert(&t);
            diat_face_transform theirs = diat_face_transform_invert(&crop);
            for (int k = 0; k < 2; k++) {
                double u1, v1, u2, v2;
                apply(&ours, pts[k][0], pts[k][1], &u1, &v1);
                apply(&theirs, pts[k][0], pts[k][1], &u2, &v2);
                worst = fmax(worst, hypot(u1 - u2, v1 - v2));
            }
            eye_error[detected++] = worst;
        }

        /* 3. Turned by +-30 degrees and enlarged 1.5 times: aligns back
         * onto the upright crop (every 8th image; detection on every one of
         * those too). */
        if (images % 8 == 0)
            for (int sign = -1; sign <= 1; sign += 2) {
                diat_face_transform place;
                diat_image copy = turned_copy(&orig.image, 30.0 * sign, 1.5, 420, &place);
                face = face_from_template(&place);
                CHECK(diat_align_transform(&face, 420, 420, 16, &t, &err) == DIAT_OK);
                CHECK(diat_warp_face(&copy, &t, aligned, &err) == DIAT_OK);
                turned_diff[turned] = best_shift(upright, aligned, &sx, &sy);
                CHECK_MSG(sx == 0 && sy == 0, "%s turned %+d: best shift %d, %d", name, 30 * sign,
                          sx, sy);
                if (finder && detect_largest(&copy, &face)) {
                    CHECK(diat_align_transform(&face, 420, 420, 16, &t, &err) == DIAT_OK);
                    CHECK(diat_warp_face(&copy, &t, aligned, &err) == DIAT_OK);
                    best_shift(reference, aligned, &sx, &sy);
                    turned_shift[turned_found++] = fmax(abs(sx), abs(sy));
                }
                turned++;
                free(copy.pixels);
            }
        imgio_free(&orig);
        images++;
    }
    fclose(f);
    CHECK_MSG(images == MAX_IMAGES, "only %d of the 256 originals read", images);
    if (!images) return;
    double template_p100 = percentile(template_diff, images, 1.0);
    printf("celeba-orig, template points: %d images, mean |diff| median %.4f max %.4f, %d "
           "best-shifted\n",
           images, percentile(template_diff, images, 0.5), template_p100, template_shifted);
    CHECK_MSG(template_shifted == 0, "%d images best matched at a shift", template_shifted);
    CHECK_MSG(template_p100 < 0.02, "an aligned crop differs from celeba128 by %.4f",
              template_p100);
    double turned_p100 = percentile(turned_diff, turned, 1.0);
    printf("turned +-30 degrees x1.5 (%d copies): mean |diff| to the upright crop median %.4f "
           "max %.4f\n",
           turned, percentile(turned_diff, turned, 0.5), turned_p100);
    CHECK_MSG(turned_p100 < 0.03, "a turned copy aligns back with mean |diff| %.4f", turned_p100);
    if (!finder) {
        printf("note: no face models; the detected-landmark checks are left out\n");
        return;
    }
    /* The eyes' displacement is the measure of alignment; the best whole-
     * pixel shift of the image is a coarser one (a scale or angle
     * difference of a degree has no shift that undoes it). */
    printf("detected landmarks: %d of %d faces found; eye position vs CelebA's crop (128 px) "
           "median %.2f p90 %.2f p95 %.2f max %.2f; best shift (per axis) vs celeba128 median %.2f "
           "p90 "
           "%.2f max %.2f; mean |diff| at it median %.4f p90 %.4f\n",
           detected, images, percentile(eye_error, detected, 0.5),
           percentile(eye_error, detected, 0.9), percentile(eye_error, detected, 0.95),
           percentile(eye_error, detected, 1.0), percentile(detected_shift, detected, 0.5),
           percentile(detected_shift, detected, 0.9), percentile(detected_shift, detected, 1.0),
           percentile(detected_diff, detected, 0.5), percentile(detected_diff, detected, 0.9));
    CHECK_MSG(detected >= images * 85 / 100, "faces found in only %d of %d", detected, images);
    CHECK(percentile(eye_error, detected, 0.5) < 1.5);
    CHECK(percentile(eye_error, detected, 0.95) < 3.0);
    CHECK(percentile(eye_error, detected, 1.0) < 6.0);
    CHECK(percentile(detected_shift, detected, 0.5) <= 1.0);
    CHECK(percentile(detected_shift, detected, 0.9) <= 2.0);
    CHECK(percentile(detected_diff, detected, 0.5) < 0.05);
    if (turned_found) {
        printf("turned copies, detected: %d of %d found; best shift vs celeba128 median %.2f "
               "max %.2f\n",
               turned_found, turned, percentile(turned_shift, turned_found, 0.5),
               percentile(turned_shift, turned_found, 1.0));
        CHECK(percentile(turned_shift, turned_found, 0.5) <= 2.0);
        CHECK(percentile(turned_shift, turned_found, 1.0) <= 5.0);
    }
}

/* ---- the trainer's aligned folder pairs --------------------------------------- */

static char warnings[4096];
static int warning_count;

static void collect_warning(void *user, const char *message)
{
    (void)user;
    warning_count++;
    size_t used = strlen(warnings);
    snprintf(warnings + used, sizeof warnings - used, "%s\n", message);
}

static int link_photo(const char *dir, const char *name)
{
    char from[2048], to[2048];
    snprintf(from, sizeof from, "%s/%s", DIAT_TEST_DATA_DIR, name);
    const char *base = strrchr(name, '/');
    snprintf(to, sizeof to, "%s/%s", dir, base ? base + 1 : name);
    return access(from, R_OK) == 0 && symlink(from, to) == 0;
}

/* The engine's own aligned crop of a photo's largest face, in [-1, 1]. */
static int engine_crop(const char *name, float *out)
{
    char path[2048];
    snprintf(path, sizeof path, "%s/%s", DIAT_TEST_DATA_DIR, name);
    imgio_image img;
    diat_error err;
    diat_face face;
    diat_face_transform t;
    if (imgio_load(path, &img, &err) != DIAT_OK) return 0;
    int ok =
        detect_largest(&img.image, &face) &&
        diat_align_transform(&face, img.image.width, img.image.height, 16, &t, &err) == DIAT_OK &&
        diat_warp_face(&img.image, &t, out, &err) == DIAT_OK;
    imgio_free(&img);
    for (int i = 0; i < 3 * FACE_PLANE; i++) out[i] = out[i] * 2.0f - 1.0f;
    return ok;
}

static void test_dataset_aligned_folders(void)
{
    const char *detector = detector_path, *landmarks = landmarks_path;
    char root[] = "/tmp/diat-test-align-XXXXXX", src[600], dst[600];
    if (!mkdtemp(root)) {
        CHECK_MSG(0, "mkdtemp failed");
        return;
    }
    snprintf(src, sizeof src, "%s/without", root);
    snprintf(dst, sizeof dst, "%s/with", root);
    mkdir(src, 0700);
    mkdir(dst, 0700);
    /* In name order: two faces (the larger is taken), one face, no face. */
    CHECK(link_photo(src, "photos/2008_002506.png") && link_photo(src, "photos/astronaut.png") &&
          link_photo(src, "formats/interlaced.png"));
    CHECK(link_photo(dst, "photos/astronaut.jpg") && link_photo(dst, "photos/2009_004587.png"));
    diat_dataset_options o = {0};
    o.source_dir = src;
    o.target_dir = dst;
    o.batch = 2;
    o.threads = 2;
    o.seed = 5;
    o.warn = collect_warning;
    o.detector_path = detector;
    o.landmarks_path = landmarks;
    diat_dataset *d = NULL;
    diat_error err;
    CHECK_MSG(diat_dataset_open(&o, &d, &err) == DIAT_OK, "%s", err.message);
    static float got[3 * 3 * FACE_PLANE], want[2][3 * FACE_PLANE];
    diat_dataset_position position = {{0}};
    if (d) {
        CHECK(diat_dataset_fixed_sources(d, 2, got, &err) == DIAT_OK);
        CHECK(engine_crop("photos/2008_002506.png", want[0]) &&
              engine_crop("photos/astronaut.png", want[1]));
        CHECK_MSG(memcmp(got, want, sizeof want) == 0,
                  "the data set's aligned faces are not the engine's");
        /* The third source has no face: skipped, warned about once. */
        CHECK(diat_dataset_fixed_sources(d, 3, got, &err) == DIAT_ERR_FORMAT);
        CHECK(diat_dataset_skipped(d) == 1 && warning_count == 1);
        CHECK_MSG(strstr(warnings, "No face found") && strstr(warnings, "interlaced.png"), "%s",
                  warnings);
        static float sources[2 * 3 * FACE_PLANE], references[2 * 3 * FACE_PLANE];
        for (int b = 0; b < 3; b++)
            CHECK(diat_dataset_next(d, sources, references, &err) == DIAT_OK);
        CHECK(warning_count == 1);
        diat_dataset_get_position(d, &position);
        diat_dataset_close(d);
    }
    /* Square crops (no finder) are other data: a position does not carry over. */
    o.detector_path = o.landmarks_path = NULL;
    diat_dataset *plain = NULL;
    CHECK(diat_dataset_open(&o, &plain, &err) == DIAT_OK);
    if (plain) CHECK(diat_dataset_set_position(plain, &position, &err) == DIAT_ERR_ARGUMENT);
    diat_dataset_close(plain);
    /* CelebA is aligned already; one model file alone is a mistake. */
    o.celeba_root = root;
    o.source_dir = o.target_dir = NULL;
    o.detector_path = detector;
    o.landmarks_path = landmarks;
    CHECK(diat_dataset_open(&o, &d, &err) == DIAT_ERR_ARGUMENT);
    o.celeba_root = NULL;
    o.source_dir = src;
    o.target_dir = dst;
    o.landmarks_path = NULL;
    CHECK(diat_dataset_open(&o, &d, &err) == DIAT_ERR_ARGUMENT);
    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    CHECK(system(cmd) == 0);
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s IDENTITY_MODEL TINT_MODEL [DETECTOR LANDMARKS]\n", argv[0]);
        return 2;
    }
    identity_path = argv[1];
    tint_path = argv[2];
    diat_error err;
    if (diat_context_new(DIAT_BACKEND_CPU, 1, &ctx, &err) != DIAT_OK) {
        fprintf(stderr, "%s\n", err.message);
        return 1;
    }
    if (argc >= 5 && access(argv[3], R_OK) == 0 && access(argv[4], R_OK) == 0) {
        detector_path = argv[3];
        landmarks_path = argv[4];
        if (diat_face_finder_load(ctx, argv[3], argv[4], &finder, &err) != DIAT_OK) {
            CHECK_MSG(0, "%s", err.message);
            finder = NULL;
        }
    }
    const char *env = getenv("DIAT_SHARED_DATA");
    snprintf(shared, sizeof shared, "%s", env ? env : "");
    char probe[1200];
    snprintf(probe, sizeof probe, "%s/celeba-orig/list_eval_partition.txt", shared);
    int have_shared = env && access(probe, R_OK) == 0;

    RUN_TEST(test_fit_recovers_transform);
    RUN_TEST(test_bad_faces);
    RUN_TEST(test_square_is_the_separable_crop);
    RUN_TEST(test_one_to_one_crop_is_the_warp);
    RUN_TEST(test_crop_reproduces_ramps);
    RUN_TEST(test_paste_back_geometry);
    RUN_TEST(test_border_padding);
    RUN_TEST(test_round_trip_identity);
    RUN_TEST(test_edit_lands_in_place);
    RUN_TEST(test_one_pixel_image);
    RUN_TEST(test_huge_image_bounded_memory);
    if (finder) RUN_TEST(test_dataset_aligned_folders);
    if (have_shared) RUN_TEST(test_celeba_originals);
    diat_face_finder_free(finder);
    diat_context_free(ctx);
    int rc = TEST_SUMMARY();
    if (rc == 0 && !have_shared) {
        printf("SKIP: the shared CelebA copies (DIAT_SHARED_DATA=%s: celeba-orig/, celeba128/) "
               "are absent; only the synthetic checks ran.\n",
               env ? env : "(unset)");
        return 77;
    }
    return rc;
}

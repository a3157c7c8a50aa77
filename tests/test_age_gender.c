/* face-api's age and gender network (engine/nets/age-gender.c) against
 * face-api's own JavaScript network (tests/data/faces/face-api-age-gender.txt,
 * written by tests/face-age-gender/reference.mjs) on dlib's ten example
 * chips:
 *  - "crop": the 112x112 centre of each chip, which both sides feed without
 *    resampling, so the network itself is compared: age within 0.02 years,
 *    gender logits within 2e-3, and the 512 pooled features of the first
 *    chip within 1e-3 (float32 sums in different orders);
 *  - "chip": the whole 150x150 chip, resized to 112 by each side's own
 *    bilinear resize: the same tolerances;
 *  - every chip is a man (face-api says P(male) > 0.9), and the age is that
 *    of an adult;
 *  - a gray copy of a chip gives what its RGB replication gives; a bad box,
 *    a photo without pixels and a file of another network fail with a
 *    message.
 *
 *     test-age-gender [MODEL] [FACES_DIR]
 * defaults: $DIAT_SOURCE_ROOT/models/face-age-gender.safetensors and
 * $DIAT_SOURCE_ROOT/tests/data/faces. */
#include "diat-train.h"
#include "image-io.h"
#include "testutil.h"

#include <math.h>
#include <string.h>

#define MAX_REFERENCES 32
#define CHIP_SIDE 150
#define CROP_SIDE 112

static const double AGE_TOLERANCE = 0.02; /* years */
static const double LOGIT_TOLERANCE = 2e-3;
static const double FEATURE_TOLERANCE = 1e-3;

typedef struct reference {
    char mode[8], file[128];
    double age, logit_male, logit_female, p_male;
} reference;

static diat_context *ctx;
static diat_age_gender *net;
static char model_path[4096], faces_dir[4096], other_model_path[4096];
static reference references[MAX_REFERENCES];
static int reference_count;
static double pooled[DIAT_AGE_GENDER_FEATURES];
static int have_pooled;
static double worst_age, worst_logit, worst_feature;

/* '#' comment lines, then "MODE FILE AGE LOGIT_MALE LOGIT_FEMALE P_MALE"
 * lines, then "pooled v1 ... v512". */
static void read_references(void)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/face-api-age-gender.txt", faces_dir);
    FILE *f = fopen(path, "r");
    CHECK_MSG(f != NULL, "cannot open %s", path);
    if (!f) return;
    char line[16384];
    while (fgets(line, sizeof line, f)) {
        if (line[0] == '#' || line[0] == '\n') continue;
        if (strncmp(line, "pooled ", 7) == 0) {
            char *p = line + 7, *end;
            int i = 0;
            for (; i < DIAT_AGE_GENDER_FEATURES; i++, p = end) {
                pooled[i] = strtod(p, &end);
                if (end == p) break;
            }
            CHECK_MSG(i == DIAT_AGE_GENDER_FEATURES, "pooled line has %d values", i);
            have_pooled = i == DIAT_AGE_GENDER_FEATURES;
            continue;
        }
        if (reference_count == MAX_REFERENCES) break;
        reference *r = &references[reference_count];
        if (sscanf(line, "%7s %127s %lf %lf %lf %lf", r->mode, r->file, &r->age, &r->logit_male,
                   &r->logit_female, &r->p_male) == 6)
            reference_count++;
    }
    fclose(f);
    CHECK_MSG(reference_count == 20, "expected 20 reference lines, read %d", reference_count);
    CHECK(have_pooled);
}

static int load_chip(const char *file, imgio_image *img)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", faces_dir, file);
    diat_error err;
    if (imgio_load(path, img, &err) != DIAT_OK) {
        CHECK_MSG(0, "%s", err.message);
        return 0;
    }
    CHECK(img->image.width == CHIP_SIDE && img->image.height == CHIP_SIDE);
    return 1;
}

static void test_against_face_api(void)
{
    const float centre = (CHIP_SIDE - CROP_SIDE) / 2;
    const float crop_box[4] = {centre, centre, CROP_SIDE, CROP_SIDE};
    for (int i = 0; i < reference_count; i++) {
        const reference *r = &references[i];
        const int crop = strcmp(r->mode, "crop") == 0;
        imgio_image img;
        if (!load_chip(r->file, &img)) continue;
        diat_age_gender_output out;
        diat_error err;
        int ok =
            diat_age_gender_run(net, &img.image, crop ? crop_box : NULL, &out, &err) == DIAT_OK;
        CHECK_MSG(ok, "%s: %s", r->file, err.message);
        imgio_free(&img);
        if (!ok) continue;
        const double age_error = fabs(out.age - r->age);
        const double logit_error =
            fmax(fabs(out.logits[0] - r->logit_male), fabs(out.logits[1] - r->logit_female));
        CHECK_MSG(age_error <= AGE_TOLERANCE, "%s %s: age %.5f, face-api %.5f", r->mode, r->file,
                  out.age, r->age);
        CHECK_MSG(logit_error <= LOGIT_TOLERANCE,
                  "%s %s: logits (%.5f, %.5f), face-api (%.5f, %.5f)", r->mode, r->file,
                  out.logits[0], out.logits[1], r->logit_male, r->logit_female);
        CHECK_NEAR(out.male, r->p_male, 1e-4);
        /* dlib's example faces are all grown men */
        CHECK_MSG(out.male > 0.9f && out.age > 20.0f && out.age < 80.0f,
                  "%s %s: age %.1f P(male) %.3f", r->mode, r->file, out.age, out.male);
        if (age_error > worst_age) worst_age = age_error;
        if (logit_error > worst_logit) worst_logit = logit_error;
        if (crop && i == 0 && have_pooled)
            for (int k = 0; k < DIAT_AGE_GENDER_FEATURES; k++) {
                const double e = fabs(out.features[k] - pooled[k]);
                CHECK_MSG(e <= FEATURE_TOLERANCE, "feature %d: %.6f, face-api %.6f", k,
                          out.features[k], pooled[k]);
                if (e > worst_feature) worst_feature = e;
            }
    }
}

/* A one-channel copy of a chip's green channel against the same values
 * replicated over R, G and B. */
static void test_gray(void)
{
    imgio_image img;
    if (!load_chip(references[0].file, &img)) return;
    const size_t pixels = (size_t)CHIP_SIDE * CHIP_SIDE;
    float *gray = malloc(pixels * sizeof *gray), *rgb = malloc(3 * pixels * sizeof *rgb);
    CHECK(gray && rgb);
    if (gray && rgb) {
        for (size_t p = 0; p < pixels; p++) {
            const float *row = img.image.pixels + p / CHIP_SIDE * img.image.stride;
            gray[p] = row[(p % CHIP_SIDE) * (size_t)img.image.channels + 1];
            rgb[3 * p] = rgb[3 * p + 1] = rgb[3 * p + 2] = gray[p];
        }
        const diat_image one = {CHIP_SIDE, CHIP_SIDE, 1, CHIP_SIDE, gray};
        const diat_image three = {CHIP_SIDE, CHIP_SIDE, 3, 3 * CHIP_SIDE, rgb};
        diat_age_gender_output a, b;
        diat_error err;
        CHECK(diat_age_gender_run(net, &one, NULL, &a, &err) == DIAT_OK);
        CHECK(diat_age_gender_run(net, &three, NULL, &b, &err) == DIAT_OK);
        CHECK(a.age == b.age && a.male == b.male);
    }
    free(gray);
    free(rgb);
    imgio_free(&img);
}

static void test_bad_input(void)
{
    diat_error err;
    diat_age_gender_output out;
    float pixel[3] = {0.5f, 0.5f, 0.5f};
    const diat_image tiny = {1, 1, 3, 3, pixel};
    /* a 1x1 photo is a valid (if useless) face: enlarged, no crash */
    CHECK(diat_age_gender_run(net, &tiny, NULL, &out, &err) == DIAT_OK);
    CHECK(isfinite(out.age) && isfinite(out.male));
    const float outside[4] = {10.0f, 10.0f, 5.0f, 5.0f};
    CHECK(diat_age_gender_run(net, &tiny, outside, &out, &err) == DIAT_ERR_ARGUMENT);
    CHECK_MSG(strstr(err.message, "outside") != NULL, "%s", err.message);
    const float empty[4] = {0.0f, 0.0f, 0.0f, 1.0f};
    CHECK(diat_age_gender_run(net, &tiny, empty, &out, &err) == DIAT_ERR_ARGUMENT);
    const diat_image no_pixels = {4, 4, 3, 12, NULL};
    CHECK(diat_age_gender_run(net, &no_pixels, NULL, &out, &err) == DIAT_ERR_ARGUMENT);

    /* another network's file: refused by its format, with the tool to use */
    diat_age_gender *wrong = NULL;
    diat_status st = diat_age_gender_load(ctx, other_model_path, &wrong, &err);
    CHECK(st == DIAT_ERR_FORMAT && wrong == NULL);
    if (st == DIAT_ERR_FORMAT)
        CHECK_MSG(strstr(err.message, "--model age-gender") != NULL, "%s", err.message);
    CHECK(diat_age_gender_load(ctx, "/nonexistent/age-gender.safetensors", &wrong, &err) !=
          DIAT_OK);
    CHECK(wrong == NULL);
}

int main(int argc, char **argv)
{
    test_source_path(model_path, sizeof model_path, argc, argv, 1,
                     "models/face-age-gender.safetensors");
    test_source_path(faces_dir, sizeof faces_dir, argc, argv, 2, "tests/data/faces");
    /* another network's file, for the format check (never from argv) */
    test_source_path(other_model_path, sizeof other_model_path, 0, argv, 0,
                     "models/face-landmarks-68.safetensors");

    diat_error err;
    if (diat_context_new(DIAT_BACKEND_CPU, 1, &ctx, &err) != DIAT_OK) {
        fprintf(stderr, "%s\n", err.message);
        return 1;
    }
    if (diat_age_gender_load(ctx, model_path, &net, &err) != DIAT_OK) {
        fprintf(stderr, "%s\n", err.message);
        diat_context_free(ctx);
        return 1;
    }
    read_references();
    RUN_TEST(test_against_face_api);
    printf("  against face-api, %d runs: worst age error %.2g years, logit %.2g, pooled feature "
           "%.2g\n",
           reference_count, worst_age, worst_logit, worst_feature);
    RUN_TEST(test_gray);
    RUN_TEST(test_bad_input);
    diat_age_gender_free(net);
    diat_context_free(ctx);
    return TEST_SUMMARY();
}

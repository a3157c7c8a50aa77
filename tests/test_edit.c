/* The inference pipeline a user relies on: model files load, the ratio p
 * controls the mask without re-running the networks, and paste-back leaves
 * every pixel outside the mask bit-identical. */
#include "diat-train.h"
#include "testutil.h"

#include <string.h>
#include <unistd.h>

static diat_context *ctx;
static char model_path[256], identity_path[256];

/* Write a random-weight model; `identity` zeroes T's last layer. */
static int write_model(const char *path, int identity, diat_dtype dtype)
{
    diat_error err;
    diat_transform t;
    diat_mask m;
    if (diat_transform_init(&t, ctx, 4, &err) || diat_mask_init(&m, ctx, 4, &err)) return -1;
    diat_net_init_weights(&t.net, 21);
    diat_net_init_weights(&m.net, 22);
    /* A mask bias that makes e straddle 0.5 so thresholds matter. */
    diat_param *beta = diat_net_find(&m.net, "M.bn5.bias");
    beta->value.data[0] = 0.1f;
    if (identity) {
        diat_tensor_zero(ctx, &diat_net_find(&t.net, "T.up5.weight")->value);
        diat_tensor_zero(ctx, &diat_net_find(&t.net, "T.up5.bias")->value);
    }
    diat_st_writer *w = diat_st_writer_new();
    const char *meta[][2] = {
        {"format", "diat-model"}, {"format_version", "1"},   {"width", "4"},
        {"mask_width", "4"},      {"default_ratio", "0.25"}, {"label", "Test"}};
    for (size_t i = 0; i < sizeof meta / sizeof meta[0]; i++)
        diat_st_writer_set_metadata(w, meta[i][0], meta[i][1], &err);
    int rc = diat_net_save(&t.net, w, dtype, &err) || diat_net_save(&m.net, w, dtype, &err) ||
             diat_st_writer_save(w, path, &err);
    if (rc) fprintf(stderr, "write_model: %s\n", err.message);
    diat_st_writer_free(w);
    diat_transform_free(&t);
    diat_mask_free(&m);
    return rc;
}

static void random_face(float *rgb, unsigned long long s)
{
    for (int i = 0; i < 128 * 128 * 3; i++) rgb[i] = 0.5f + 0.45f * test_rand(&s);
}

static void test_model_metadata(void)
{
    diat_error err;
    diat_model *model;
    CHECK(diat_model_load(ctx, model_path, &model, &err) == DIAT_OK);
    if (!model) return;
    CHECK(strcmp(diat_model_metadata(model, "label"), "Test") == 0);
    CHECK(diat_model_metadata(model, "absent") == NULL);
    CHECK_NEAR(diat_model_default_ratio(model), 0.25, 1e-6);
    CHECK(diat_model_metadata_count(model) == 6);
    CHECK(diat_model_parameter_count(model) > 1000);
    diat_model_free(model);
}

static void test_ratio_controls_coverage(void)
{
    diat_error err;
    diat_model *model;
    diat_model_load(ctx, model_path, &model, &err);
    static float face[128 * 128 * 3], before[128 * 128 * 3], after[128 * 128 * 3];
    random_face(face, 3);
    diat_edit *edit;
    CHECK(diat_edit_new_face(model, face, &edit, &err) == DIAT_OK);
    const float ratios[] = {0.05f, 0.2f, 0.5f, 0.9f};
    for (size_t i = 0; i < 4; i++) {
        float coverage = diat_edit_mask_coverage(edit, ratios[i]);
        CHECK_MSG(fabsf(coverage - ratios[i]) < 0.03f, "p=%g coverage %g", ratios[i], coverage);
    }
    CHECK_NEAR(diat_edit_mask_coverage(edit, 0.0f), 0.0, 1e-9);
    CHECK_NEAR(diat_edit_mask_coverage(edit, 1.0f), 1.0, 1e-6);
    CHECK(diat_edit_render_face(edit, 1.5f, before, NULL, NULL, &err) == DIAT_ERR_ARGUMENT);
    /* Rendering is a function of the cached e and T(x) alone: running another
     * face through the model (overwriting its activations) changes nothing. */
    CHECK(diat_edit_render_face(edit, 0.3f, before, NULL, NULL, &err) == DIAT_OK);
    diat_edit *unrelated;
    random_face(face, 99);
    diat_edit_new_face(model, face, &unrelated, &err); /* overwrites the model's activations */
    CHECK(diat_edit_render_face(edit, 0.3f, after, NULL, NULL, &err) == DIAT_OK);
    CHECK(memcmp(before, after, sizeof before) == 0);
    diat_edit_free(unrelated);
    diat_edit_free(edit);
    diat_model_free(model);
}

static void test_model_binarization_default(void)
{
    diat_error err;
    diat_model *model;
    diat_model_load(ctx, model_path, &model, &err);
    static float face[128 * 128 * 3], mask[128 * 128], soft[32 * 32];
    random_face(face, 4);
    diat_edit *edit;
    diat_edit_new_face(model, face, &edit, &err);
    CHECK(diat_edit_render_face(edit, DIAT_RATIO_MODEL, NULL, mask, soft, &err) == DIAT_OK);
    /* Far from any e > 0.5 cell the mask is 0, next to a block of them 1. */
    int high = 0;
    for (int i = 0; i < 32 * 32; i++) high += soft[i] > 0.5f;
    double total = 0;
    for (int i = 0; i < 128 * 128; i++) total += mask[i];
    CHECK(high > 0 && high < 32 * 32);
    CHECK_MSG(fabs(total / (128 * 128) - high / 1024.0) < 0.1, "coverage %g vs %g",
              total / (128 * 128), high / 1024.0);
    diat_edit_free(edit);
    diat_model_free(model);
}

static diat_image make_photo(int w, int h, int channels)
{
    diat_image img = {w, h, channels, (size_t)w * channels, NULL};
    img.pixels = malloc(sizeof(float) * (size_t)w * h * channels);
    unsigned long long s = 77;
    for (size_t i = 0; i < (size_t)w * h * channels; i++)
        img.pixels[i] = (float)(lrintf((0.5f + 0.45f * test_rand(&s)) * 255.0f)) / 255.0f;
    return img;
}

static void check_paste_back(int channels)
{
    diat_error err;
    diat_model *model;
    diat_model_load(ctx, model_path, &model, &err);
    diat_image photo = make_photo(300, 200, channels);
    size_t n = (size_t)300 * 200 * channels;
    float *original = malloc(n * sizeof *original);
    memcpy(original, photo.pixels, n * sizeof *original);
    float *mask = malloc(sizeof(float) * 300 * 200);
    diat_box box = {250, 40, 90, 70}; /* runs off the right border */
    diat_edit *edit;
    CHECK(diat_edit_new_region(model, &photo, &box, NULL, NULL, &edit, &err) == DIAT_OK);
    CHECK(diat_edit_render(edit, 0.4f, &photo, mask, &err) == DIAT_OK);
    size_t unchanged_outside = 0, outside = 0, changed_inside = 0, inside = 0, alpha_kept = 1;
    size_t inside_square = 0;
    for (int y = 0; y < 200; y++)
        for (int x = 0; x < 300; x++) {
            size_t p = ((size_t)y * 300 + x) * channels;
            int colour = channels >= 3 ? 3 : 1;
            int same = memcmp(&photo.pixels[p], &original[p], colour * sizeof(float)) == 0;
            if (channels == 2 || channels == 4)
                alpha_kept &= photo.pixels[p + channels - 1] == original[p + channels - 1];
            if (mask[y * 300 + x] == 0.0f) {
                outside++;
                unchanged_outside += same;
            } else {
                inside++;
                changed_inside += !same;
                /* the square is centred on the box: x in [250, 340), y in [30, 120) */
                inside_square += x >= 250 && y >= 30 && y < 120;
            }
        }
    CHECK(outside > 0 && unchanged_outside == outside);
    CHECK(inside_square == inside);
    CHECK_MSG(inside > 500 && changed_inside > inside / 2, "inside %zu changed %zu", inside,
              changed_inside);
    CHECK(alpha_kept);
    diat_edit_free(edit);
    diat_model_free(model);
    free(photo.pixels);
    free(original);
    free(mask);
}

static void test_paste_back_rgb(void)
{
    check_paste_back(3);
}
static void test_paste_back_gray_alpha(void)
{
    check_paste_back(2);
}
static void test_paste_back_rgba(void)
{
    check_paste_back(4);
}

static void test_identity_model_leaves_photo_unchanged(void)
{
    diat_error err;
    diat_model *model;
    CHECK(diat_model_load(ctx, identity_path, &model, &err) == DIAT_OK);
    diat_image photo = make_photo(257, 311, 3);
    size_t n = (size_t)257 * 311 * 3;
    float *original = malloc(n * sizeof *original);
    memcpy(original, photo.pixels, n * sizeof *original);
    diat_edit *edit;
    diat_box box = {20, 30, 200, 180};
    CHECK(diat_edit_new_region(model, &photo, &box, NULL, NULL, &edit, &err) == DIAT_OK);
    CHECK(diat_edit_render(edit, 0.8f, &photo, NULL, &err) == DIAT_OK);
    CHECK(memcmp(photo.pixels, original, n * sizeof *original) == 0);
    diat_edit_free(edit);
    diat_model_free(model);
    free(photo.pixels);
    free(original);
}

static int cancel_at_networks(void *user, float fraction, const char *stage)
{
    (void)fraction;
    (*(int *)user)++;
    return strcmp(stage, "mask network") == 0;
}

static void test_bad_regions_and_cancel(void)
{
    diat_error err;
    diat_model *model;
    diat_model_load(ctx, model_path, &model, &err);
    diat_image photo = make_photo(100, 100, 3);
    diat_edit *edit = NULL;
    diat_box empty = {10, 10, 0, 20}, outside = {200, 10, 30, 30}, tiny = {5, 5, 8, 8};
    CHECK(diat_edit_new_region(model, &photo, &empty, NULL, NULL, &edit, &err) ==
          DIAT_ERR_ARGUMENT);
    CHECK(strstr(err.message, "empty") != NULL);
    CHECK(diat_edit_new_region(model, &photo, &outside, NULL, NULL, &edit, &err) ==
          DIAT_ERR_ARGUMENT);
    CHECK(strstr(err.message, "outside") != NULL);
    CHECK(diat_edit_new_region(model, &photo, &tiny, NULL, NULL, &edit, &err) == DIAT_ERR_ARGUMENT);
    CHECK(strstr(err.message, "at least") != NULL);
    diat_image one = make_photo(1, 1, 3);
    CHECK(diat_edit_new_region(model, &one, NULL, NULL, NULL, &edit, &err) == DIAT_ERR_ARGUMENT);
    int calls = 0;
    CHECK(diat_edit_new_region(model, &photo, NULL, cancel_at_networks, &calls, &edit, &err) ==
          DIAT_ERR_CANCELLED);
    CHECK(calls >= 2 && edit == NULL);
    free(one.pixels);
    free(photo.pixels);
    diat_model_free(model);
}

static void test_f16_model_matches_f32(void)
{
    char f16_path[300];
    snprintf(f16_path, sizeof f16_path, "%s.f16", model_path);
    CHECK(write_model(f16_path, 0, DIAT_DTYPE_F16) == 0);
    diat_error err;
    diat_model *a, *b;
    CHECK(diat_model_load(ctx, model_path, &a, &err) == DIAT_OK);
    CHECK(diat_model_load(ctx, f16_path, &b, &err) == DIAT_OK);
    static float face[128 * 128 * 3], ya[128 * 128 * 3], yb[128 * 128 * 3];
    random_face(face, 5);
    diat_edit *ea, *eb;
    diat_edit_new_face(a, face, &ea, &err);
    diat_edit_new_face(b, face, &eb, &err);
    diat_edit_render_face(ea, 1.0f, ya, NULL, NULL, &err);
    diat_edit_render_face(eb, 1.0f, yb, NULL, NULL, &err);
    double worst = 0;
    for (int i = 0; i < 128 * 128 * 3; i++) worst = fmax(worst, fabs(ya[i] - yb[i]));
    CHECK_MSG(worst < 0.02, "F16 model differs by %g", worst);
    diat_edit_free(ea);
    diat_edit_free(eb);
    diat_model_free(a);
    diat_model_free(b);
    unlink(f16_path);
}

int main(void)
{
    diat_error err;
    if (diat_context_new(DIAT_BACKEND_CPU, 1, &ctx, &err) != DIAT_OK) return 1;
    snprintf(model_path, sizeof model_path, "/tmp/diat-test-edit-%d.safetensors", (int)getpid());
    snprintf(identity_path, sizeof identity_path, "/tmp/diat-test-identity-%d.safetensors",
             (int)getpid());
    if (write_model(model_path, 0, DIAT_DTYPE_F32) || write_model(identity_path, 1, DIAT_DTYPE_F32))
        return 1;
    RUN_TEST(test_model_metadata);
    RUN_TEST(test_ratio_controls_coverage);
    RUN_TEST(test_model_binarization_default);
    RUN_TEST(test_paste_back_rgb);
    RUN_TEST(test_paste_back_gray_alpha);
    RUN_TEST(test_paste_back_rgba);
    RUN_TEST(test_identity_model_leaves_photo_unchanged);
    RUN_TEST(test_bad_regions_and_cancel);
    RUN_TEST(test_f16_model_matches_f32);
    unlink(model_path);
    unlink(identity_path);
    diat_context_free(ctx);
    return TEST_SUMMARY();
}

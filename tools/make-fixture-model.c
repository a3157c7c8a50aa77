/* diat-make-fixture-model — writes the test fixtures, never a trained model.
 *
 *   diat-make-fixture-model identity OUT.safetensors
 *   diat-make-fixture-model tint OUT.safetensors
 *   diat-make-fixture-model red-square OUT.png
 *   diat-make-fixture-model classifier OUT.safetensors NAME[,NAME...]
 *
 * Both models have a hand-set mask network M that marks the pixels where red
 * clearly dominates green, so tests know where an edit must land:
 *   e = sigmoid(MASK_GAIN * relu(xR - xG) - MASK_SHIFT),
 * with x = 2 * pixel - 1, so xR - xG = 2 (R - G) and e = 0.5 exactly where
 * R - G = MASK_SHIFT / (2 * MASK_GAIN) = 0.25 (pixel units). Channel 0 of
 * every layer carries the signal through the centre tap of each 3x3 kernel;
 * the batch norms pass it through (running mean 0, variance 1, gamma 1,
 * beta 0) except the last, whose beta is -MASK_SHIFT. Every other channel
 * is 0 after its ReLU.
 *
 * T is exactly the identity in "identity": T.up5 (weight and bias) is zero
 * and T(x) = x + up5 (engine/nets/ARCHITECTURE.md); the other T layers hold
 * seeded random weights so the whole network still runs. "tint" adds
 * TINT_RED (network units) to T's red output through T.up5's bias: the red
 * output channel is fed by up5 channels 0..3 (pixel-shuffle order).
 */
#include "diat-train.h"
#include "image-io.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FIXTURE_WIDTH 4      /* T width: keeps the file near 300 KB */
#define FIXTURE_MASK_WIDTH 4 /* M width */
#define FIXTURE_SEED 20161018u
#define MASK_GAIN 24.0f
#define MASK_SHIFT 12.0f
#define TINT_RED 0.5f /* +0.25 in pixel units */

/* Copy `count` floats into parameter `name`, checking that it exists with
 * exactly that many elements (a renamed or reshaped parameter fails loudly). */
static diat_status set_param(diat_net *net, const char *name, const float *values, size_t count,
                             diat_error *err)
{
    diat_param *p = diat_net_find(net, name);
    if (!p) return diat_set_error(err, DIAT_ERR_ARGUMENT, "No parameter named %s.", name);
    if (diat_tensor_count(&p->value) != count)
        return diat_set_error(err, DIAT_ERR_ARGUMENT, "Parameter %s has %zu values, expected %zu.",
                              name, diat_tensor_count(&p->value), count);
    diat_tensor_upload(net->ctx, &p->value, values);
    return DIAT_OK;
}

/* Fill parameter `name` with one value. */
static diat_status fill_param(diat_net *net, const char *name, float value, diat_error *err)
{
    diat_param *p = diat_net_find(net, name);
    if (!p) return diat_set_error(err, DIAT_ERR_ARGUMENT, "No parameter named %s.", name);
    size_t count = diat_tensor_count(&p->value);
    float *values = malloc(count * sizeof *values);
    if (!values) return diat_set_error(err, DIAT_ERR_MEMORY, "Out of memory.");
    for (size_t i = 0; i < count; i++) values[i] = value;
    diat_status st = set_param(net, name, values, count, err);
    free(values);
    return st;
}

/* The mask network described at the top of this file. */
static diat_status build_mask(diat_mask *m, diat_error *err)
{
    diat_status st = DIAT_OK;
    for (int layer = 1; layer <= 5 && st == DIAT_OK; layer++) {
        char name[DIAT_PARAM_NAME_MAX];
        snprintf(name, sizeof name, "M.conv%d.weight", layer);
        diat_param *p = diat_net_find(&m->net, name);
        if (!p) return diat_set_error(err, DIAT_ERR_ARGUMENT, "No parameter named %s.", name);
        const int k = p->value.h;
        const size_t count = diat_tensor_count(&p->value);
        float *w = calloc(count, sizeof *w);
        if (!w) return diat_set_error(err, DIAT_ERR_MEMORY, "Out of memory.");
        /* weight[out 0][in j][centre][centre] */
        const size_t centre = (size_t)(k / 2) * (size_t)k + (size_t)(k / 2);
#define TAP(j) w[(size_t)(j) * (size_t)k * (size_t)k + centre]
        if (layer == 1) {
            TAP(0) = 1.0f;  /* red */
            TAP(1) = -1.0f; /* minus green */
        } else {
            TAP(0) = layer == 5 ? MASK_GAIN : 1.0f;
        }
#undef TAP
        st = set_param(&m->net, name, w, count, err);
        free(w);
        const char *fills[4] = {"weight", "bias", "running_mean", "running_var"};
        const float values[4] = {1.0f, layer == 5 ? -MASK_SHIFT : 0.0f, 0.0f, 1.0f};
        for (int i = 0; i < 4 && st == DIAT_OK; i++) {
            snprintf(name, sizeof name, "M.bn%d.%s", layer, fills[i]);
            st = fill_param(&m->net, name, values[i], err);
        }
    }
    return st;
}

static diat_status set_metadata(diat_st_writer *w, int tint, diat_error *err)
{
    char width[16], mask_width[16];
    snprintf(width, sizeof width, "%d", FIXTURE_WIDTH);
    snprintf(mask_width, sizeof mask_width, "%d", FIXTURE_MASK_WIDTH);
    const char *entries[][2] = {
        {"format", "diat-model"},
        {"format_version", "1"},
        {"architecture", "diat-unet-d2s-v1"},
        {"width", width},
        {"mask_width", mask_width},
        {"image_size", "128"},
        {"crop", "none (test fixture: any square region)"},
        {"attribute", "TestFixture"},
        {"direction", "add"},
        {"label", tint ? "Test fixture with red tint (not a trained model)"
                       : "Test fixture (not a trained model)"},
        {"default_ratio", "0.1"},
        {"training_data", "none: hand-set mask weights, seeded random transform weights"},
        {"training_iterations", "0"},
        {"fixture", "true"},
        {"fixture_mask", "e > 0.5 where R - G > 0.25 (pixel units)"},
        {"fixture_transform", tint ? "identity plus 0.25 on red (pixel units)" : "identity"},
        {"license", "CC0-1.0 (generated test data of the DIAT for GIMP project)"},
    };
    diat_status st = DIAT_OK;
    for (size_t i = 0; i < sizeof entries / sizeof entries[0] && st == DIAT_OK; i++)
        st = diat_st_writer_set_metadata(w, entries[i][0], entries[i][1], err);
    return st;
}

static diat_status write_model(const char *path, int tint, diat_error *err)
{
    diat_context *ctx = NULL;
    diat_transform t;
    diat_mask m;
    memset(&t, 0, sizeof t);
    memset(&m, 0, sizeof m);
    diat_st_writer *w = NULL;
    diat_status st = diat_context_new(DIAT_BACKEND_CPU, 1, &ctx, err);
    if (st == DIAT_OK) st = diat_transform_init(&t, ctx, FIXTURE_WIDTH, err);
    if (st == DIAT_OK) st = diat_mask_init(&m, ctx, FIXTURE_MASK_WIDTH, err);
    if (st == DIAT_OK) {
        diat_net_init_weights(&t.net, FIXTURE_SEED);
        diat_net_init_weights(&m.net, FIXTURE_SEED + 1);
        st = fill_param(&t.net, "T.up5.weight", 0.0f, err);
    }
    if (st == DIAT_OK) {
        diat_param *bias = diat_net_find(&t.net, "T.up5.bias");
        float values[12] = {0};
        if (tint)
            for (int i = 0; i < 4; i++) values[i] = TINT_RED;
        st = bias ? set_param(&t.net, "T.up5.bias", values, 12, err)
                  : diat_set_error(err, DIAT_ERR_ARGUMENT, "No parameter named T.up5.bias.");
    }
    if (st == DIAT_OK) st = build_mask(&m, err);
    if (st == DIAT_OK && !(w = diat_st_writer_new()))
        st = diat_set_error(err, DIAT_ERR_MEMORY, "Out of memory.");
    if (st == DIAT_OK) st = set_metadata(w, tint, err);
    /* F32 so the hand-set values are exact. */
    if (st == DIAT_OK) st = diat_net_save(&t.net, w, DIAT_DTYPE_F32, err);
    if (st == DIAT_OK) st = diat_net_save(&m.net, w, DIAT_DTYPE_F32, err);
    if (st == DIAT_OK) st = diat_st_writer_save(w, path, err);
    diat_st_writer_free(w);
    if (ctx) {
        diat_mask_free(&m);
        diat_transform_free(&t);
    }
    diat_context_free(ctx);
    return st;
}

#define FIXTURE_CLASSIFIER_WIDTH 4

static diat_status write_classifier(const char *path, const char *attributes, diat_error *err)
{
    int outputs = 1;
    for (const char *p = attributes; *p; p++) outputs += *p == ',';
    char width[16];
    snprintf(width, sizeof width, "%d", FIXTURE_CLASSIFIER_WIDTH);
    diat_context *ctx = NULL;
    diat_classifier c;
    memset(&c, 0, sizeof c);
    diat_st_writer *w = NULL;
    diat_status st = diat_context_new(DIAT_BACKEND_CPU, 1, &ctx, err);
    if (st == DIAT_OK) st = diat_classifier_init(&c, ctx, FIXTURE_CLASSIFIER_WIDTH, outputs, err);
    if (st == DIAT_OK) diat_net_init_weights(&c.net, FIXTURE_SEED + 2);
    if (st == DIAT_OK && !(w = diat_st_writer_new()))
        st = diat_set_error(err, DIAT_ERR_MEMORY, "Out of memory.");
    const char *entries[][2] = {
        {"format", "diat-classifier"},
        {"format_version", "1"},
        {"width", width},
        {"attributes", attributes},
        {"fixture", "true"},
        {"training_data", "none: seeded random weights"},
        {"license", "CC0-1.0 (generated test data of the DIAT for GIMP project)"},
    };
    for (size_t i = 0; i < sizeof entries / sizeof entries[0] && st == DIAT_OK; i++)
        st = diat_st_writer_set_metadata(w, entries[i][0], entries[i][1], err);
    if (st == DIAT_OK) st = diat_net_save(&c.net, w, DIAT_DTYPE_F32, err);
    if (st == DIAT_OK) st = diat_st_writer_save(w, path, err);
    diat_st_writer_free(w);
    if (c.net.ctx) diat_classifier_free(&c);
    diat_context_free(ctx);
    return st;
}

/* 160x160 mid-gray with a 64x64 red square at (48, 48): R - G = 0.7 inside,
 * 0 outside, so the fixture mask covers the square and nothing else. */
static diat_status write_red_square(const char *path, diat_error *err)
{
    enum { SIDE = 160, SQUARE_AT = 48, SQUARE = 64 };
    imgio_image img;
    diat_status st = imgio_alloc(&img, SIDE, SIDE, 3, 8, err);
    if (st != DIAT_OK) return st;
    for (int y = 0; y < SIDE; y++)
        for (int x = 0; x < SIDE; x++) {
            int inside = x >= SQUARE_AT && x < SQUARE_AT + SQUARE && y >= SQUARE_AT &&
                         y < SQUARE_AT + SQUARE;
            uint16_t *px = img.samples + ((size_t)y * SIDE + (size_t)x) * 3;
            px[0] = inside ? 210 : 128;
            px[1] = inside ? 32 : 128;
            px[2] = inside ? 40 : 128;
        }
    st = imgio_save(path, &img, IMGIO_FORMAT_PNG, err);
    imgio_free(&img);
    return st;
}

int main(int argc, char *argv[])
{
    int classifier = argc == 4 && strcmp(argv[1], "classifier") == 0;
    if (!classifier &&
        (argc != 3 || (strcmp(argv[1], "identity") != 0 && strcmp(argv[1], "tint") != 0 &&
                       strcmp(argv[1], "red-square") != 0))) {
        fprintf(stderr,
                "Usage: %s identity|tint OUT.safetensors\n"
                "       %s red-square OUT.png\n"
                "       %s classifier OUT.safetensors NAME[,NAME...]\n"
                "Writes DIAT test fixtures (never trained models).\n",
                argv[0], argv[0], argv[0]);
        return 2;
    }
    diat_error err = {0};
    diat_status st = classifier ? write_classifier(argv[2], argv[3], &err)
                     : strcmp(argv[1], "red-square") == 0
                         ? write_red_square(argv[2], &err)
                         : write_model(argv[2], strcmp(argv[1], "tint") == 0, &err);
    if (st != DIAT_OK) {
        fprintf(stderr, "diat-make-fixture-model: error: %s\n", err.message);
        return 1;
    }
    return 0;
}

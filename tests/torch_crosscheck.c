/* Helper of tests/test_torch_reference.py: runs the engine on one aligned
 * face and writes what the PyTorch reference is compared against.
 *
 *   torch_crosscheck MODEL INPUT OUTPUT_PREFIX
 *
 * INPUT is 128*128*3 raw float32, interleaved RGB in [0, 1] (what
 * diat_edit_new_face takes). Written, all raw float32 in native order:
 *   PREFIX-transform.f32  T(x), [3, 128, 128] planar in [-1, 1] (the
 *                         transform network run directly: unclamped)
 *   PREFIX-result.f32     y from diat_edit_render_face, 128*128*3 in [0, 1]
 *   PREFIX-mask.f32       m, 128*128
 *   PREFIX-soft-mask.f32  e, 32*32
 *   PREFIX-net-mask.f32   m from diat_mask_forward (the training path), 128*128
 *   PREFIX-taps.f32       the engine's 5 Gaussian taps
 *
 *   torch_crosscheck --critic-denoiser WEIGHTS INPUT OUTPUT_PREFIX
 *
 * runs the critic D (width 4) and the denoiser DN (width 8, depth 4) whose
 * weights are in WEIGHTS on INPUT, raw float32 [2, 3, 128, 128] in [-1, 1],
 * and writes PREFIX-score.f32 [2], PREFIX-feat4.f32, PREFIX-feat5.f32 and
 * PREFIX-denoised.f32 (NCHW).
 * Exit status 0 on success, 1 with a message on stderr otherwise. */
#include "diat-train.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FACE_PIXELS (DIAT_FACE_SIZE * DIAT_FACE_SIZE)

static int read_floats(const char *path, float *dst, size_t count)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "torch_crosscheck: cannot open %s\n", path);
        return -1;
    }
    size_t got = fread(dst, sizeof *dst, count, f);
    fclose(f);
    if (got != count) {
        fprintf(stderr, "torch_crosscheck: %s holds %zu floats, expected %zu\n", path, got, count);
        return -1;
    }
    return 0;
}

static int write_floats(const char *prefix, const char *suffix, const float *src, size_t count)
{
    char path[4096];
    snprintf(path, sizeof path, "%s-%s.f32", prefix, suffix);
    FILE *f = fopen(path, "wb");
    if (!f) {
        fprintf(stderr, "torch_crosscheck: cannot create %s\n", path);
        return -1;
    }
    size_t put = fwrite(src, sizeof *src, count, f);
    int closed = fclose(f);
    if (put != count || closed != 0) {
        fprintf(stderr, "torch_crosscheck: writing %s failed\n", path);
        return -1;
    }
    return 0;
}

static int fail(const char *what, const diat_error *err)
{
    fprintf(stderr, "torch_crosscheck: %s: %s\n", what, err->message);
    return 1;
}

/* T(x) and M's m through the training API: the comparison then sees the
 * networks' own outputs rather than the edit's [0, 1] result (which may be
 * clamped), and covers the mask path training uses as well as the edit's. */
static int run_nets_directly(diat_context *ctx, const char *model_path, const float *face,
                             float *transformed, float *net_mask)
{
    diat_error err = {0};
    diat_safetensors *st = NULL;
    if (diat_safetensors_open(model_path, &st, &err) != DIAT_OK) return fail("open", &err);
    const char *width_text = diat_safetensors_metadata(st, "width");
    const char *mask_width_text = diat_safetensors_metadata(st, "mask_width");
    int width = width_text ? atoi(width_text) : 0;
    int mask_width = mask_width_text ? atoi(mask_width_text) : 0;
    diat_transform transform;
    diat_mask mask;
    memset(&transform, 0, sizeof transform);
    memset(&mask, 0, sizeof mask);
    diat_tensor x = {0};
    int status = 1;
    if (diat_transform_init(&transform, ctx, width, &err) != DIAT_OK) {
        fail("transform init", &err);
        goto done;
    }
    if (diat_mask_init(&mask, ctx, mask_width, &err) != DIAT_OK) {
        fail("mask init", &err);
        goto done;
    }
    if (diat_net_load(&transform.net, st, &err) != DIAT_OK ||
        diat_net_load(&mask.net, st, &err) != DIAT_OK) {
        fail("network load", &err);
        goto done;
    }
    transform.net.training = 0;
    mask.net.training = 0; /* batch norm on the running statistics */
    if (diat_tensor_alloc(ctx, &x, 1, 3, DIAT_FACE_SIZE, DIAT_FACE_SIZE, &err) != DIAT_OK) {
        fail("alloc", &err);
        goto done;
    }
    /* interleaved [0, 1] -> planar [-1, 1], the networks' convention */
    float *planar = malloc(3 * FACE_PIXELS * sizeof *planar);
    if (!planar) {
        fprintf(stderr, "torch_crosscheck: out of memory\n");
        goto done;
    }
    for (int c = 0; c < 3; c++)
        for (int i = 0; i < FACE_PIXELS; i++)
            planar[c * FACE_PIXELS + i] = 2.0f * face[3 * i + c] - 1.0f;
    diat_tensor_upload(ctx, &x, planar);
    free(planar);
    if (diat_transform_forward(&transform, &x, &err) != DIAT_OK) {
        fail("transform forward", &err);
        goto done;
    }
    if (diat_mask_forward(&mask, &x, &err) != DIAT_OK) {
        fail("mask forward", &err);
        goto done;
    }
    diat_tensor_download(ctx, &transform.up[4], transformed);
    diat_tensor_download(ctx, &mask.mask, net_mask);
    status = 0;
done:
    diat_tensor_release(ctx, &x);
    diat_mask_free(&mask);
    diat_transform_free(&transform);
    diat_safetensors_close(st);
    return status;
}

enum { CRITIC_WIDTH = 4, DENOISER_WIDTH = 8, DENOISER_DEPTH = 4, PAIR = 2 };

static int run_critic_denoiser(const char *weights, const char *input, const char *prefix)
{
    static float x_host[PAIR * 3 * FACE_PIXELS];
    if (read_floats(input, x_host, PAIR * 3 * FACE_PIXELS) != 0) return 1;
    diat_error err = {0};
    diat_context *ctx = NULL;
    diat_safetensors *st = NULL;
    diat_critic critic = {0};
    diat_denoiser denoiser = {0};
    diat_tensor x = {0};
    int status = 1;
    if (diat_context_new(DIAT_BACKEND_CPU, 1, &ctx, &err) != DIAT_OK) return fail("context", &err);
    if (diat_safetensors_open(weights, &st, &err) ||
        diat_critic_init(&critic, ctx, CRITIC_WIDTH, &err) ||
        diat_denoiser_init(&denoiser, ctx, DENOISER_WIDTH, DENOISER_DEPTH, &err) ||
        diat_net_load(&critic.net, st, &err) || diat_net_load(&denoiser.net, st, &err) ||
        diat_tensor_alloc(ctx, &x, PAIR, 3, DIAT_FACE_SIZE, DIAT_FACE_SIZE, &err)) {
        fail("setup", &err);
        goto done;
    }
    diat_tensor_upload(ctx, &x, x_host);
    if (diat_critic_forward(&critic, &x, &err) || diat_denoiser_forward(&denoiser, &x, &err)) {
        fail("forward", &err);
        goto done;
    }
    const diat_tensor *outputs[] = {&critic.score, &critic.feat[3], &critic.feat[4], &denoiser.out};
    const char *names[] = {"score", "feat4", "feat5", "denoised"};
    status = 0;
    for (int i = 0; i < 4 && status == 0; i++) {
        size_t count = diat_tensor_count(outputs[i]);
        float *host = malloc(count * sizeof *host);
        diat_tensor_download(ctx, outputs[i], host);
        status = write_floats(prefix, names[i], host, count) != 0;
        free(host);
    }
done:
    diat_tensor_release(ctx, &x);
    diat_critic_free(&critic);
    diat_denoiser_free(&denoiser);
    diat_safetensors_close(st);
    diat_context_free(ctx);
    return status;
}

int main(int argc, char **argv)
{
    if (argc == 5 && strcmp(argv[1], "--critic-denoiser") == 0)
        return run_critic_denoiser(argv[2], argv[3], argv[4]);
    if (argc != 4) {
        fprintf(stderr, "usage: torch_crosscheck MODEL INPUT OUTPUT_PREFIX\n");
        return 2;
    }
    const char *model_path = argv[1], *input_path = argv[2], *prefix = argv[3];

    static float face[3 * FACE_PIXELS], transformed[3 * FACE_PIXELS], result[3 * FACE_PIXELS],
        mask[FACE_PIXELS], net_mask[FACE_PIXELS], soft_mask[DIAT_MASK_SIZE * DIAT_MASK_SIZE];
    if (read_floats(input_path, face, 3 * FACE_PIXELS) != 0) return 1;

    diat_error err = {0};
    diat_context *ctx = NULL;
    /* one thread: the comparison should not depend on reduction order */
    if (diat_context_new(DIAT_BACKEND_CPU, 1, &ctx, &err) != DIAT_OK) return fail("context", &err);
    diat_model *model = NULL;
    diat_edit *edit = NULL;
    int status = 1;
    if (diat_model_load(ctx, model_path, &model, &err) != DIAT_OK) {
        fail("model load", &err);
        goto done;
    }
    if (diat_edit_new_face(model, face, &edit, &err) != DIAT_OK) {
        fail("edit", &err);
        goto done;
    }
    if (diat_edit_render_face(edit, DIAT_RATIO_MODEL, result, mask, soft_mask, &err) != DIAT_OK) {
        fail("render", &err);
        goto done;
    }
    if (run_nets_directly(ctx, model_path, face, transformed, net_mask) != 0) goto done;
    if (write_floats(prefix, "transform", transformed, 3 * FACE_PIXELS) != 0 ||
        write_floats(prefix, "result", result, 3 * FACE_PIXELS) != 0 ||
        write_floats(prefix, "mask", mask, FACE_PIXELS) != 0 ||
        write_floats(prefix, "net-mask", net_mask, FACE_PIXELS) != 0 ||
        write_floats(prefix, "soft-mask", soft_mask, DIAT_MASK_SIZE * DIAT_MASK_SIZE) != 0 ||
        write_floats(prefix, "taps", diat_gaussian5_taps(), 5) != 0)
        goto done;
    status = 0;
done:
    diat_edit_free(edit);
    diat_model_free(model);
    diat_context_free(ctx);
    return status;
}

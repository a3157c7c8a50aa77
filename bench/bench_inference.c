/* Inference benchmark of the DIAT networks T and M on the engine's backend.
 *
 *   bench_inference [--threads N] [--model PATH] [--repeats N] [--batch N]
 *
 * Reports medians over repeated runs, after warm-up runs:
 *  (a) T+M at batch 1 through the public API (diat_edit_new_face) and through
 *      the nets directly, and at batch `--batch` (default 16) through the nets;
 *  (b) every convolution of T and M alone (the backend's conv2d_forward on the
 *      real layer shapes), with GFLOP/s and the share of the FMA peak;
 *  (c) the other ops of the forward pass (activations, batch norm, shuffles,
 *      skip sums, the mask's upsampling, binarization and Gaussian) at batch
 *      1, so the gap between (a) and the sum of (b) can be attributed.
 * FLOPs are analytic: 2 * multiply-accumulates of the convolutions only
 * (batch norm, activations, shuffles and the mask post-processing are a few
 * percent of the work and are not counted, so network GFLOP/s is a slight
 * underestimate of the machine's throughput).
 * Lines starting with "RESULT " are for bench/run.sh to parse. */
#include "diat-train.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#endif

#include "bench-timing.h"

/* Single-core FMA peak measured on the project's machine (DESIGN.md,
 * "Machine facts"): 2 AVX-512 FMA units x 16 floats x 2 FLOPs x clock. */
#define FMA_PEAK_GFLOPS_PER_CORE 169.0

#define MAX_CONV_LAYERS 10

typedef struct bench_options {
    int threads;
    const char *model_path;
    int repeats;
    int batch;
    diat_backend_kind backend;
} bench_options;

typedef struct conv_layer {
    char name[24];
    int in_channels, out_channels;
    int stride;
    int in_side, out_side; /* square feature maps at a 128x128 input */
    int has_bias;
} conv_layer;

/* ---- helpers ------------------------------------------------------------ */

/* The one FLOP formula of this benchmark: 2 * MACs of a k x k convolution. */
static double conv_flops(const conv_layer *layer, int batch)
{
    const int kernel = 3;
    return 2.0 * batch * layer->out_channels * (double)layer->out_side * layer->out_side *
           layer->in_channels * kernel * kernel;
}

static uint64_t rng_state = 0x5EED1234ABCDull;

/* Uniform in [-1, 1) (splitmix64). */
static float random_unit(void)
{
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return (float)((double)(z >> 40) / (double)(1ull << 24) * 2.0 - 1.0);
}

static void fill_random(diat_context *ctx, diat_tensor *t, float scale)
{
    size_t count = diat_tensor_count(t);
    float *host = malloc(count * sizeof *host);
    if (!host) return;
    for (size_t i = 0; i < count; i++) host[i] = scale * random_unit();
    diat_tensor_upload(ctx, t, host);
    free(host);
}

static void cpu_model_name(char *out, size_t size)
{
    snprintf(out, size, "unknown CPU");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) return;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "model name", 10) != 0) continue;
        const char *colon = strchr(line, ':');
        if (!colon) break;
        snprintf(out, size, "%s", colon + 2);
        out[strcspn(out, "\n")] = '\0';
        break;
    }
    fclose(f);
}

/* FMA throughput of one core, measured now: independent chains of vector
 * FMAs, enough of them to cover the FMA latency on both ports. Printed next
 * to the fixed 169 GFLOP/s reference because a shared or virtual machine's
 * clock (turbo) can differ from the day that figure was taken. */
#if defined(__x86_64__) && defined(__GNUC__)
#define FMA_CHAINS 16

__attribute__((target("avx512f"))) static double fma_peak_avx512(long iterations)
{
    __m512 acc[FMA_CHAINS];
    const __m512 scale = _mm512_set1_ps(0.9999999f), shift = _mm512_set1_ps(1e-7f);
    for (int i = 0; i < FMA_CHAINS; i++) acc[i] = _mm512_set1_ps((float)i);
    double start = now_seconds();
    for (long k = 0; k < iterations; k++) {
#pragma GCC unroll 16
        for (int i = 0; i < FMA_CHAINS; i++) acc[i] = _mm512_fmadd_ps(acc[i], scale, shift);
    }
    double seconds = now_seconds() - start;
    float sink = 0;
    for (int i = 0; i < FMA_CHAINS; i++) sink += _mm512_reduce_add_ps(acc[i]);
    if (sink == 1234.5f) printf(" "); /* keeps the loop alive */
    return (double)iterations * FMA_CHAINS * 32.0 / seconds * 1e-9;
}

__attribute__((target("avx2,fma"))) static double fma_peak_avx2(long iterations)
{
    __m256 acc[FMA_CHAINS];
    const __m256 scale = _mm256_set1_ps(0.9999999f), shift = _mm256_set1_ps(1e-7f);
    for (int i = 0; i < FMA_CHAINS; i++) acc[i] = _mm256_set1_ps((float)i);
    double start = now_seconds();
    for (long k = 0; k < iterations; k++) {
#pragma GCC unroll 16
        for (int i = 0; i < FMA_CHAINS; i++) acc[i] = _mm256_fmadd_ps(acc[i], scale, shift);
    }
    double seconds = now_seconds() - start;
    float sink = 0;
    float lanes[8];
    for (int i = 0; i < FMA_CHAINS; i++) {
        _mm256_storeu_ps(lanes, acc[i]);
        for (int j = 0; j < 8; j++) sink += lanes[j];
    }
    if (sink == 1234.5f) printf(" ");
    return (double)iterations * FMA_CHAINS * 16.0 / seconds * 1e-9;
}

/* Best of three short runs (about 0.1 s each); 0 when no FMA unit is known. */
static double measure_fma_peak_per_core(void)
{
    __builtin_cpu_init();
    int avx512 = __builtin_cpu_supports("avx512f");
    int avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    double best = 0;
    for (int run = 0; run < 3 && (avx512 || avx2); run++) {
        double gflops = avx512 ? fma_peak_avx512(20000000) : fma_peak_avx2(20000000);
        if (gflops > best) best = gflops;
    }
    return best;
}
#else
static double measure_fma_peak_per_core(void)
{
    return 0;
}
#endif

static int die(const char *what, const diat_error *err)
{
    fprintf(stderr, "bench_inference: %s: %s\n", what, err->message);
    return 1;
}

/* The convolutions of T and M at a 128x128 input (ARCHITECTURE.md). */
static int transform_layers(int width, conv_layer *out)
{
    const int c[5] = {width, 2 * width, 4 * width, 8 * width, 8 * width};
    const int down_in[5] = {3, c[0], c[1], c[2], c[3]};
    int side = DIAT_FACE_SIZE, count = 0;
    for (int i = 0; i < 5; i++, side /= 2)
        out[count++] = (conv_layer){.in_channels = down_in[i],
                                    .out_channels = c[i],
                                    .stride = 2,
                                    .in_side = side,
                                    .out_side = side / 2,
                                    .has_bias = 1};
    /* each up convolution makes 4x the channels of the skip it is summed with */
    const int up_in[5] = {c[4], c[3], c[2], c[1], c[0]};
    const int skip[5] = {c[3], c[2], c[1], c[0], 3};
    for (int i = 0; i < 5; i++, side *= 2)
        out[count++] = (conv_layer){.in_channels = up_in[i],
                                    .out_channels = 4 * skip[i],
                                    .stride = 1,
                                    .in_side = side,
                                    .out_side = side,
                                    .has_bias = 1};
    for (int i = 0; i < 5; i++) {
        snprintf(out[i].name, sizeof out[i].name, "T.down%d", i + 1);
        snprintf(out[5 + i].name, sizeof out[5 + i].name, "T.up%d", i + 1);
    }
    return count;
}

static int mask_layers(int mask_width, conv_layer *out)
{
    const int channels[6] = {3, mask_width, 2 * mask_width, 2 * mask_width, 2 * mask_width, 1};
    const int strides[5] = {2, 2, 1, 1, 1};
    int side = DIAT_FACE_SIZE;
    for (int i = 0; i < 5; i++) {
        out[i] = (conv_layer){.in_channels = channels[i],
                              .out_channels = channels[i + 1],
                              .stride = strides[i],
                              .in_side = side,
                              .out_side = side / strides[i],
                              .has_bias = 0};
        snprintf(out[i].name, sizeof out[i].name, "M.conv%d", i + 1);
        side /= strides[i];
    }
    return 5;
}

/* ---- a random model when none is given ------------------------------------ */

static diat_status write_random_model(diat_context *ctx, const char *path, int width,
                                      int mask_width, diat_error *err)
{
    diat_transform transform;
    diat_mask mask;
    memset(&transform, 0, sizeof transform);
    memset(&mask, 0, sizeof mask);
    diat_st_writer *writer = diat_st_writer_new();
    diat_status status = writer ? DIAT_OK : diat_set_error(err, DIAT_ERR_MEMORY, "Out of memory.");
    if (status == DIAT_OK) status = diat_transform_init(&transform, ctx, width, err);
    if (status == DIAT_OK) status = diat_mask_init(&mask, ctx, mask_width, err);
    if (status == DIAT_OK) {
        diat_net_init_weights(&transform.net, 1);
        diat_net_init_weights(&mask.net, 2);
        status = diat_net_save(&transform.net, writer, DIAT_DTYPE_F32, err);
    }
    if (status == DIAT_OK) status = diat_net_save(&mask.net, writer, DIAT_DTYPE_F32, err);
    char width_text[16], mask_width_text[16];
    snprintf(width_text, sizeof width_text, "%d", width);
    snprintf(mask_width_text, sizeof mask_width_text, "%d", mask_width);
    const char *metadata[][2] = {
        {"format", "diat-model"},
        {"format_version", "1"},
        {"architecture", "diat-unet-d2s-v1"},
        {"width", width_text},
        {"mask_width", mask_width_text},
        {"image_size", "128"},
        {"crop", "celeba-align-178x178-row20"},
        {"attribute", "none"},
        {"direction", "add"},
        {"label", "Random weights (benchmark only)"},
        {"training_iterations", "0"},
        {"license", "CC0-1.0"},
        {"fixture", "true"},
    };
    for (size_t i = 0; status == DIAT_OK && i < sizeof metadata / sizeof metadata[0]; i++)
        status = diat_st_writer_set_metadata(writer, metadata[i][0], metadata[i][1], err);
    if (status == DIAT_OK) status = diat_st_writer_save(writer, path, err);
    diat_st_writer_free(writer);
    diat_transform_free(&transform);
    diat_mask_free(&mask);
    return status;
}

/* ---- (a) whole networks --------------------------------------------------- */

typedef struct nets {
    diat_transform transform;
    diat_mask mask;
    int width, mask_width;
} nets;

static diat_status nets_load(diat_context *ctx, const char *path, nets *out, diat_error *err)
{
    memset(out, 0, sizeof *out);
    diat_safetensors *st = NULL;
    diat_status status = diat_safetensors_open(path, &st, err);
    if (status != DIAT_OK) return status;
    const char *width = diat_safetensors_metadata(st, "width");
    const char *mask_width = diat_safetensors_metadata(st, "mask_width");
    out->width = width ? atoi(width) : 0;
    out->mask_width = mask_width ? atoi(mask_width) : 0;
    status = diat_transform_init(&out->transform, ctx, out->width, err);
    if (status == DIAT_OK) status = diat_mask_init(&out->mask, ctx, out->mask_width, err);
    if (status == DIAT_OK) status = diat_net_load(&out->transform.net, st, err);
    if (status == DIAT_OK) status = diat_net_load(&out->mask.net, st, err);
    out->transform.net.training = 0; /* batch norm on running statistics */
    out->mask.net.training = 0;
    diat_safetensors_close(st);
    return status;
}

static void nets_free(nets *n)
{
    diat_transform_free(&n->transform);
    diat_mask_free(&n->mask);
}

/* Median seconds of one T+M forward on `x`. */
static diat_status time_nets(nets *n, const diat_tensor *x, int warmup, int repeats,
                             double *seconds, diat_error *err)
{
    double *samples = malloc((size_t)repeats * sizeof *samples);
    if (!samples) return diat_set_error(err, DIAT_ERR_MEMORY, "Out of memory.");
    diat_status status = DIAT_OK;
    for (int i = 0; status == DIAT_OK && i < warmup + repeats; i++) {
        double start = now_seconds();
        status = diat_transform_forward(&n->transform, x, err);
        if (status == DIAT_OK) status = diat_mask_forward(&n->mask, x, err);
        diat_context_synchronize(n->transform.net.ctx);
        if (i >= warmup) samples[i - warmup] = now_seconds() - start;
    }
    if (status == DIAT_OK) *seconds = median(samples, repeats);
    free(samples);
    return status;
}

/* Median seconds of diat_edit_new_face, the public batch-1 path. */
static diat_status time_edit(diat_model *model, int warmup, int repeats, double *seconds,
                             diat_error *err)
{
    static float face[DIAT_FACE_SIZE * DIAT_FACE_SIZE * 3];
    for (size_t i = 0; i < sizeof face / sizeof face[0]; i++) face[i] = 0.5f + 0.4f * random_unit();
    double *samples = malloc((size_t)repeats * sizeof *samples);
    if (!samples) return diat_set_error(err, DIAT_ERR_MEMORY, "Out of memory.");
    diat_status status = DIAT_OK;
    for (int i = 0; status == DIAT_OK && i < warmup + repeats; i++) {
        diat_edit *edit = NULL;
        double start = now_seconds();
        status = diat_edit_new_face(model, face, &edit, err);
        if (i >= warmup) samples[i - warmup] = now_seconds() - start;
        diat_edit_free(edit);
    }
    if (status == DIAT_OK) *seconds = median(samples, repeats);
    free(samples);
    return status;
}

static void print_network_line(const char *what, int batch, double seconds, double flops,
                               double peak)
{
    double gflops = flops / seconds * 1e-9;
    printf("%-34s batch %2d: %8.2f ms  %8.1f images/s  %6.1f GFLOP/s  (%4.1f%% of peak)\n", what,
           batch, seconds * 1e3, batch / seconds, gflops, 100.0 * gflops / peak);
}

/* ---- (b) each convolution alone ------------------------------------------- */

static diat_status time_conv(diat_context *ctx, const conv_layer *layer, int batch, int warmup,
                             int repeats, double *seconds, diat_error *err)
{
    const diat_backend *backend = diat_context_backend(ctx);
    diat_tensor x = {0}, weight = {0}, bias = {0}, y = {0};
    double *samples = malloc((size_t)repeats * sizeof *samples);
    diat_status status = samples ? DIAT_OK : diat_set_error(err, DIAT_ERR_MEMORY, "Out of memory.");
    if (status == DIAT_OK)
        status = diat_tensor_alloc(ctx, &x, batch, layer->in_channels, layer->in_side,
                                   layer->in_side, err);
    if (status == DIAT_OK)
        status =
            diat_tensor_alloc(ctx, &weight, layer->out_channels, layer->in_channels, 3, 3, err);
    if (status == DIAT_OK && layer->has_bias)
        status = diat_tensor_alloc(ctx, &bias, layer->out_channels, 1, 1, 1, err);
    if (status == DIAT_OK)
        status = diat_tensor_alloc(ctx, &y, batch, layer->out_channels, layer->out_side,
                                   layer->out_side, err);
    if (status == DIAT_OK) {
        fill_random(ctx, &x, 1.0f);
        fill_random(ctx, &weight, 0.1f);
        if (layer->has_bias) fill_random(ctx, &bias, 0.1f);
        diat_conv_geometry geometry = {.kernel = 3, .stride = layer->stride, .pad = 1};
        for (int i = 0; i < warmup + repeats; i++) {
            double start = now_seconds();
            backend->conv2d_forward(ctx, &x, &weight, layer->has_bias ? &bias : NULL, geometry,
                                    DIAT_ACT_IDENTITY, 0.0f, &y);
            diat_context_synchronize(ctx);
            if (i >= warmup) samples[i - warmup] = now_seconds() - start;
        }
        *seconds = median(samples, repeats);
    }
    diat_tensor_release(ctx, &x);
    diat_tensor_release(ctx, &weight);
    if (layer->has_bias) diat_tensor_release(ctx, &bias);
    diat_tensor_release(ctx, &y);
    free(samples);
    return status;
}

typedef struct conv_totals {
    double flops, seconds;
} conv_totals;

/* Time a group of layers at batch 1 and at `batch`; print one row each. */
static diat_status bench_conv_group(diat_context *ctx, const conv_layer *layers, int count,
                                    const bench_options *options, double peak,
                                    conv_totals *totals_1, conv_totals *totals_n, diat_error *err)
{
    for (int i = 0; i < count; i++) {
        const conv_layer *layer = &layers[i];
        double seconds_1 = 0, seconds_n = 0;
        diat_status status = time_conv(ctx, layer, 1, 3, options->repeats, &seconds_1, err);
        if (status == DIAT_OK) {
            int repeats_n = options->repeats / 4 > 3 ? options->repeats / 4 : 3;
            status = time_conv(ctx, layer, options->batch, 1, repeats_n, &seconds_n, err);
        }
        if (status != DIAT_OK) return status;
        double flops_1 = conv_flops(layer, 1), flops_n = conv_flops(layer, options->batch);
        double gflops_1 = flops_1 / seconds_1 * 1e-9, gflops_n = flops_n / seconds_n * 1e-9;
        char shape[48];
        snprintf(shape, sizeof shape, "%dx%d %4d->%-4d s%d", layer->in_side, layer->in_side,
                 layer->in_channels, layer->out_channels, layer->stride);
        printf("  %-9s %-24s %8.1f | %8.3f %7.1f %5.1f%% | %8.3f %7.1f %5.1f%%\n", layer->name,
               shape, flops_1 * 1e-6, seconds_1 * 1e3, gflops_1, 100.0 * gflops_1 / peak,
               seconds_n * 1e3, gflops_n, 100.0 * gflops_n / peak);
        totals_1->flops += flops_1;
        totals_1->seconds += seconds_1;
        totals_n->flops += flops_n;
        totals_n->seconds += seconds_n;
    }
    return DIAT_OK;
}

static void print_conv_total(const char *what, const conv_totals *t1, const conv_totals *tn,
                             double peak)
{
    double gflops_1 = t1->flops / t1->seconds * 1e-9, gflops_n = tn->flops / tn->seconds * 1e-9;
    printf("  %-34s %8.1f | %8.3f %7.1f %5.1f%% | %8.3f %7.1f %5.1f%%\n", what, t1->flops * 1e-6,
           t1->seconds * 1e3, gflops_1, 100.0 * gflops_1 / peak, tn->seconds * 1e3, gflops_n,
           100.0 * gflops_n / peak);
}

static void print_conv_results(const char *key, const conv_totals *t1, const conv_totals *tn,
                               int batch, double peak)
{
    double gflops_1 = t1->flops / t1->seconds * 1e-9, gflops_n = tn->flops / tn->seconds * 1e-9;
    printf("RESULT conv_%s_batch1_gflops=%.2f\n", key, gflops_1);
    printf("RESULT conv_%s_batch1_peak_percent=%.1f\n", key, 100.0 * gflops_1 / peak);
    printf("RESULT conv_%s_batch%d_gflops=%.2f\n", key, batch, gflops_n);
}

/* ---- (c) the other ops of the forward pass ------------------------------------
 * Everything T+M does besides convolving, on the real shapes, so that
 * "network time - convolution time" can be attributed. */

typedef enum op_kind {
    OP_LEAKY_RELU,
    OP_RELU,
    OP_SIGMOID,
    OP_DEPTH_TO_SPACE,
    OP_SKIP_ADD,
    OP_BATCHNORM,
    OP_UPSAMPLE,
    OP_BINARIZE,
    OP_GAUSSIAN,
    OP_KINDS
} op_kind;

static const char *const op_names[OP_KINDS] = {
    "LeakyReLU (T down)",    "ReLU (T up, M)",   "sigmoid (M)",
    "depth-to-space (T up)", "skip sums (T up)", "batch norm (M)",
    "bilinear x4 (M)",       "binarize (M)",     "Gaussian 5x5 (M)",
};

/* One op on one shape: `channels` x `side`^2 is its output (for depth-to-space
 * the input has 4x the channels at half the side; for the upsampling the
 * input is a quarter of the side). */
typedef struct op_case {
    op_kind kind;
    int channels, side;
} op_case;

static int forward_op_cases(int width, int mask_width, op_case *out)
{
    const int c[5] = {width, 2 * width, 4 * width, 8 * width, 8 * width};
    const int skip[5] = {c[3], c[2], c[1], c[0], 3};
    int count = 0, side = DIAT_FACE_SIZE;
    for (int i = 0; i < 5; i++) {
        side /= 2;
        out[count++] = (op_case){OP_LEAKY_RELU, c[i], side};
    }
    for (int i = 0; i < 5; i++) {
        side *= 2;
        out[count++] = (op_case){OP_DEPTH_TO_SPACE, skip[i], side};
        out[count++] = (op_case){OP_SKIP_ADD, skip[i], side};
        if (i < 4) out[count++] = (op_case){OP_RELU, skip[i], side};
    }
    const int m_channels[5] = {mask_width, 2 * mask_width, 2 * mask_width, 2 * mask_width, 1};
    const int m_sides[5] = {64, 32, 32, 32, 32};
    for (int i = 0; i < 5; i++) {
        out[count++] = (op_case){OP_BATCHNORM, m_channels[i], m_sides[i]};
        out[count++] = (op_case){i < 4 ? OP_RELU : OP_SIGMOID, m_channels[i], m_sides[i]};
    }
    out[count++] = (op_case){OP_UPSAMPLE, 1, DIAT_FACE_SIZE};
    out[count++] = (op_case){OP_BINARIZE, 1, DIAT_FACE_SIZE};
    out[count++] = (op_case){OP_GAUSSIAN, 1, DIAT_FACE_SIZE};
    return count;
}

static void run_op(diat_context *ctx, const op_case *op, diat_tensor *x, diat_tensor *y,
                   diat_tensor *stats)
{
    const diat_backend *be = diat_context_backend(ctx);
    size_t count = diat_tensor_count(y);
    switch (op->kind) {
    /* Out of place from the same random x every time: run in place, repeated
     * LeakyReLU would shrink the negatives into denormals and time those. */
    case OP_LEAKY_RELU:
        be->activation_forward(ctx, DIAT_ACT_LEAKY_RELU, 0.2f, x->data, y->data, count);
        break;
    case OP_RELU: be->activation_forward(ctx, DIAT_ACT_RELU, 0.0f, x->data, y->data, count); break;
    case OP_SIGMOID:
        be->activation_forward(ctx, DIAT_ACT_SIGMOID, 0.0f, x->data, y->data, count);
        break;
    case OP_DEPTH_TO_SPACE: be->depth_to_space_forward(ctx, x, 2, y); break;
    case OP_SKIP_ADD: be->add(ctx, x->data, x->data, y->data, count); break;
    case OP_BATCHNORM:
        be->batchnorm_forward_infer(ctx, x, &stats[0], &stats[1], &stats[2], &stats[3], 1e-5f, y);
        break;
    case OP_UPSAMPLE: be->upsample_bilinear_forward(ctx, x, 4, y); break;
    case OP_BINARIZE: be->binarize_forward(ctx, x->data, 0.5f, y->data, count); break;
    case OP_GAUSSIAN: be->gaussian5_forward(ctx, x, diat_gaussian5_taps(), y); break;
    case OP_KINDS: break;
    }
}

static diat_status time_op(diat_context *ctx, const op_case *op, int batch, int repeats,
                           double *seconds, diat_error *err)
{
    int in_channels = op->channels, in_side = op->side;
    if (op->kind == OP_DEPTH_TO_SPACE) in_channels *= 4, in_side /= 2;
    if (op->kind == OP_UPSAMPLE) in_side /= 4;
    diat_tensor x = {0}, y = {0}, stats[4] = {{0}};
    double *samples = malloc((size_t)repeats * sizeof *samples);
    diat_status status = samples ? DIAT_OK : diat_set_error(err, DIAT_ERR_MEMORY, "Out of memory.");
    if (status == DIAT_OK)
        status = diat_tensor_alloc(ctx, &x, batch, in_channels, in_side, in_side, err);
    if (status == DIAT_OK)
        status = diat_tensor_alloc(ctx, &y, batch, op->channels, op->side, op->side, err);
    for (int i = 0; i < 4 && status == DIAT_OK; i++)
        status = diat_tensor_alloc(ctx, &stats[i], op->channels, 1, 1, 1, err);
    if (status == DIAT_OK) {
        fill_random(ctx, &x, 1.0f);
        for (int i = 0; i < 4; i++) fill_random(ctx, &stats[i], 0.1f);
        diat_context_backend(ctx)->fill(ctx, stats[0].data, 1.0f, (size_t)op->channels); /* gamma */
        diat_context_backend(ctx)->fill(ctx, stats[3].data, 1.0f,
                                        (size_t)op->channels); /* variance */
        for (int i = 0; i < 2 + repeats; i++) {
            double start = now_seconds();
            run_op(ctx, op, &x, &y, stats);
            diat_context_synchronize(ctx);
            if (i >= 2) samples[i - 2] = now_seconds() - start;
        }
        *seconds = median(samples, repeats);
    }
    diat_tensor_release(ctx, &x);
    diat_tensor_release(ctx, &y);
    for (int i = 0; i < 4; i++) diat_tensor_release(ctx, &stats[i]);
    free(samples);
    return status;
}

/* Prints one row per op kind (summed over the layers) and returns the total. */
static diat_status bench_other_ops(diat_context *ctx, int width, int mask_width, int batch,
                                   int repeats, double *total, diat_error *err)
{
    op_case cases[64];
    int count = forward_op_cases(width, mask_width, cases);
    double per_kind[OP_KINDS] = {0};
    int calls[OP_KINDS] = {0};
    for (int i = 0; i < count; i++) {
        double seconds = 0;
        diat_status status = time_op(ctx, &cases[i], batch, repeats, &seconds, err);
        if (status != DIAT_OK) return status;
        per_kind[cases[i].kind] += seconds;
        calls[cases[i].kind]++;
    }
    *total = 0;
    for (int k = 0; k < OP_KINDS; k++) {
        printf("  %-24s %2d call%s %8.3f ms\n", op_names[k], calls[k], calls[k] == 1 ? " " : "s",
               per_kind[k] * 1e3);
        *total += per_kind[k];
    }
    return DIAT_OK;
}

/* ---- main ------------------------------------------------------------------ */

static int parse_int(const char *text, int minimum, int *out)
{
    char *end = NULL;
    errno = 0;
    long value = strtol(text, &end, 10);
    if (errno || !end || *end || value < minimum || value > 100000) return -1;
    *out = (int)value;
    return 0;
}

static int parse_options(int argc, char **argv, bench_options *options)
{
    *options = (bench_options){
        .threads = 1, .model_path = NULL, .repeats = 50, .batch = 16, .backend = DIAT_BACKEND_CPU};
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        const char *value = i + 1 < argc ? argv[i + 1] : NULL;
        int ok = 0;
        if (strcmp(arg, "--threads") == 0 && value)
            ok = parse_int(value, 0, &options->threads) == 0;
        else if (strcmp(arg, "--repeats") == 0 && value)
            ok = parse_int(value, 1, &options->repeats) == 0;
        else if (strcmp(arg, "--batch") == 0 && value)
            ok = parse_int(value, 1, &options->batch) == 0;
        else if (strcmp(arg, "--backend") == 0 && value)
            ok = diat_backend_kind_parse(value, &options->backend) == 0;
        else if (strcmp(arg, "--model") == 0 && value) {
            options->model_path = value;
            ok = 1;
        } else if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            printf("usage: bench_inference [--threads N] [--model PATH] [--repeats N] "
                   "[--batch N] [--backend cpu|cuda]\n"
                   "  --threads N  worker threads (default 1; 0 = one per core)\n"
                   "  --model PATH model file (default: a random-weight model, widths %d/%d)\n"
                   "  --repeats N  timed runs per measurement at batch 1 (default 50; batch N\n"
                   "               uses a quarter as many), medians reported\n"
                   "  --batch N    the large batch (default 16)\n"
                   "  --backend B  cpu (default) or cuda\n",
                   DIAT_DEFAULT_WIDTH, DIAT_DEFAULT_MASK_WIDTH);
            exit(0);
        }
        if (!ok) {
            fprintf(stderr, "bench_inference: bad argument '%s' (see --help)\n", arg);
            return -1;
        }
        if (value && strcmp(arg, "--help") != 0) i++;
    }
    return 0;
}

int main(int argc, char **argv)
{
    bench_options options;
    if (parse_options(argc, argv, &options) != 0) return 2;

    diat_error err = {0};
    diat_context *ctx = NULL;
    if (diat_context_new(options.backend, options.threads, &ctx, &err) != DIAT_OK)
        return die("context", &err);
    if (diat_context_notice(ctx)) printf("note: %s\n", diat_context_notice(ctx));
    int threads = diat_context_threads(ctx);
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    int busy_cores = cores > 0 && threads > cores ? (int)cores : threads;
    double peak = FMA_PEAK_GFLOPS_PER_CORE * busy_cores;

    /* The random model lives in a private temporary folder, removed at exit. */
    char temp_dir[] = "/tmp/diat-bench-XXXXXX";
    char temp_model[sizeof temp_dir + 32] = "";
    const char *model_path = options.model_path;
    if (!model_path) {
        if (!mkdtemp(temp_dir)) {
            perror("bench_inference: mkdtemp");
            return 1;
        }
        snprintf(temp_model, sizeof temp_model, "%s/random.safetensors", temp_dir);
        if (write_random_model(ctx, temp_model, DIAT_DEFAULT_WIDTH, DIAT_DEFAULT_MASK_WIDTH,
                               &err) != DIAT_OK) {
            rmdir(temp_dir);
            return die("writing a random model", &err);
        }
        model_path = temp_model;
    }

    char cpu[256];
    cpu_model_name(cpu, sizeof cpu);
    printf("machine: %s, %ld online cores\n", cpu, cores);
    printf("BLAS: %s\n", diat_blas_description());
    double measured_peak = measure_fma_peak_per_core();
    printf("backend: %s, %d thread%s; FMA peak %.0f GFLOP/s (%.0f per core x %d), the "
           "reference for every %% below\n",
           diat_context_backend_name(ctx), threads, threads == 1 ? "" : "s", peak,
           FMA_PEAK_GFLOPS_PER_CORE, busy_cores);
    printf("FMA peak measured now on one core: %.0f GFLOP/s (%.0f%% of the %.0f reference)\n",
           measured_peak, 100.0 * measured_peak / FMA_PEAK_GFLOPS_PER_CORE,
           FMA_PEAK_GFLOPS_PER_CORE);
    printf("model: %s\n", options.model_path ? model_path
                                             : "random weights (written by the "
                                               "engine, widths 24/16)");

    int exit_code = 1;
    nets n;
    diat_model *model = NULL;
    diat_tensor x1 = {0}, xn = {0};
    if (nets_load(ctx, model_path, &n, &err) != DIAT_OK) {
        die("loading the networks", &err);
        goto done;
    }
    if (diat_model_load(ctx, model_path, &model, &err) != DIAT_OK) {
        die("loading the model", &err);
        goto done;
    }
    printf("widths: T %d, M %d; %zu parameters\n\n", n.width, n.mask_width,
           diat_model_parameter_count(model));

    conv_layer t_layers[MAX_CONV_LAYERS], m_layers[MAX_CONV_LAYERS];
    int t_count = transform_layers(n.width, t_layers);
    int m_count = mask_layers(n.mask_width, m_layers);
    double network_flops_1 = 0;
    for (int i = 0; i < t_count; i++) network_flops_1 += conv_flops(&t_layers[i], 1);
    for (int i = 0; i < m_count; i++) network_flops_1 += conv_flops(&m_layers[i], 1);
    printf("T+M convolutions: %.4f GFLOP per 128x128 image (2 x MACs)\n\n", network_flops_1 * 1e-9);

    /* (a) whole networks */
    double seconds_edit = 0, seconds_1 = 0, seconds_n = 0;
    int repeats_n = options.repeats / 4 > 3 ? options.repeats / 4 : 3;
    if (diat_tensor_alloc(ctx, &x1, 1, 3, DIAT_FACE_SIZE, DIAT_FACE_SIZE, &err) != DIAT_OK ||
        diat_tensor_alloc(ctx, &xn, options.batch, 3, DIAT_FACE_SIZE, DIAT_FACE_SIZE, &err) !=
            DIAT_OK) {
        die("allocating inputs", &err);
        goto done;
    }
    fill_random(ctx, &x1, 0.9f);
    fill_random(ctx, &xn, 0.9f);
    if (time_edit(model, 3, options.repeats, &seconds_edit, &err) != DIAT_OK ||
        time_nets(&n, &x1, 3, options.repeats, &seconds_1, &err) != DIAT_OK ||
        time_nets(&n, &xn, 1, repeats_n, &seconds_n, &err) != DIAT_OK) {
        die("running the networks", &err);
        goto done;
    }
    printf("T+M inference (medians; %d runs at batch 1, %d at batch %d)\n", options.repeats,
           repeats_n, options.batch);
    print_network_line("diat_edit_new_face (public API)", 1, seconds_edit, network_flops_1, peak);
    print_network_line("transform + mask forward", 1, seconds_1, network_flops_1, peak);
    print_network_line("transform + mask forward", options.batch, seconds_n,
                       network_flops_1 * options.batch, peak);

    /* (b) each convolution alone */
    printf("\nconvolutions alone (%s conv2d_forward; medians)\n", diat_context_backend_name(ctx));
    char batch_ms[16];
    snprintf(batch_ms, sizeof batch_ms, "b%d ms", options.batch);
    printf("  %-9s %-24s %8s | %8s %7s %6s | %8s %7s %6s\n", "layer", "input, channels", "MFLOP",
           "b1 ms", "GFLOP/s", "peak", batch_ms, "GFLOP/s", "peak");
    conv_totals t_1 = {0, 0}, t_n = {0, 0}, m_1 = {0, 0}, m_n = {0, 0};
    if (bench_conv_group(ctx, t_layers, t_count, &options, peak, &t_1, &t_n, &err) != DIAT_OK ||
        bench_conv_group(ctx, m_layers, m_count, &options, peak, &m_1, &m_n, &err) != DIAT_OK) {
        die("timing a convolution", &err);
        goto done;
    }
    conv_totals all_1 = {t_1.flops + m_1.flops, t_1.seconds + m_1.seconds};
    conv_totals all_n = {t_n.flops + m_n.flops, t_n.seconds + m_n.seconds};
    print_conv_total("all of T", &t_1, &t_n, peak);
    print_conv_total("all of M", &m_1, &m_n, peak);
    print_conv_total("all of T and M", &all_1, &all_n, peak);

    /* (c) the rest of the forward pass */
    double other_1 = 0;
    printf("\nother ops of the forward pass, batch 1 (backend ops on the real shapes; "
           "medians)\n");
    if (bench_other_ops(ctx, n.width, n.mask_width, 1, options.repeats, &other_1, &err) !=
        DIAT_OK) {
        die("timing an op", &err);
        goto done;
    }
    printf("  %-33s %8.3f ms\n", "total", other_1 * 1e3);
    printf("  batch 1: network %.3f ms = convolutions %.3f + other ops %.3f + unaccounted "
           "%.3f ms\n",
           seconds_1 * 1e3, all_1.seconds * 1e3, other_1 * 1e3,
           (seconds_1 - all_1.seconds - other_1) * 1e3);

    printf("\n");
    printf("RESULT threads=%d\n", threads);
    printf("RESULT measured_fma_peak_per_core_gflops=%.1f\n", measured_peak);
    printf("RESULT edit_batch1_ms=%.3f\n", seconds_edit * 1e3);
    printf("RESULT edit_batch1_images_per_s=%.2f\n", 1.0 / seconds_edit);
    printf("RESULT nets_batch1_ms=%.3f\n", seconds_1 * 1e3);
    printf("RESULT nets_batch1_images_per_s=%.2f\n", 1.0 / seconds_1);
    printf("RESULT nets_batch%d_ms=%.3f\n", options.batch, seconds_n * 1e3);
    printf("RESULT nets_batch%d_images_per_s=%.2f\n", options.batch, options.batch / seconds_n);
    printf("RESULT nets_batch1_gflops=%.2f\n", network_flops_1 / seconds_1 * 1e-9);
    printf("RESULT conv_seconds_share_of_nets_batch1=%.3f\n", all_1.seconds / seconds_1);
    printf("RESULT other_ops_batch1_ms=%.3f\n", other_1 * 1e3);
    print_conv_results("T", &t_1, &t_n, options.batch, peak);
    print_conv_results("M", &m_1, &m_n, options.batch, peak);
    print_conv_results("TM", &all_1, &all_n, options.batch, peak);
    exit_code = 0;

done:
    diat_tensor_release(ctx, &x1);
    diat_tensor_release(ctx, &xn);
    diat_model_free(model);
    nets_free(&n);
    diat_context_free(ctx);
    if (temp_model[0]) {
        unlink(temp_model);
        rmdir(temp_dir);
    }
    return exit_code;
}

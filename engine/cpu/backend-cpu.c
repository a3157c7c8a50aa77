/* The CPU backend: host memory, element-wise helpers, and the op table that
 * points at the kernels in the other files of engine/cpu/. */
#include "ops-cpu.h"
#include "worker-pool.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* 64 bytes: one cache line and one AVX-512 register, so vector loads of a
 * tensor's start never split a line. */
enum { CPU_ALIGNMENT = 64 };

static float *cpu_alloc(diat_context *ctx, size_t count)
{
    (void)ctx;
    size_t bytes = count * sizeof(float);
    if (count != 0 && bytes / sizeof(float) != count) return NULL; /* overflow */
    /* aligned_alloc wants a size that is a multiple of the alignment. */
    size_t rounded = (bytes + CPU_ALIGNMENT - 1) / CPU_ALIGNMENT * CPU_ALIGNMENT;
    if (rounded < bytes) return NULL;
    if (rounded == 0) rounded = CPU_ALIGNMENT;
    return aligned_alloc(CPU_ALIGNMENT, rounded);
}

static void cpu_release(diat_context *ctx, float *p)
{
    (void)ctx;
    free(p);
}

static void cpu_upload(diat_context *ctx, float *dst, const float *host, size_t count)
{
    (void)ctx;
    if (count) memcpy(dst, host, count * sizeof(float));
}

static void cpu_download(diat_context *ctx, float *host, const float *src, size_t count)
{
    (void)ctx;
    if (count) memcpy(host, src, count * sizeof(float));
}

/* The element-wise ops split their range over the context's threads
 * (worker-pool.h): each range is a plain loop. */
typedef struct elementwise_args {
    float alpha;
    const float *a, *b;
    float *y;
} elementwise_args;

static void fill_range(void *arg, size_t begin, size_t end)
{
    const elementwise_args *e = arg;
    /* Zeroing (gradients before they accumulate) is most fills. For
     * buffers beyond its cache threshold glibc's memset uses streaming
     * stores, which do not read the lines they overwrite as a plain loop
     * does (-2.3% of a one-thread step). +0.0f is all zero bits. */
    if (e->alpha == 0.0f && !signbit(e->alpha)) {
        memset(e->y + begin, 0, (end - begin) * sizeof *e->y);
        return;
    }
    for (size_t i = begin; i < end; i++) e->y[i] = e->alpha;
}

static void cpu_fill(diat_context *ctx, float *dst, float value, size_t count)
{
    elementwise_args e = {.alpha = value, .y = dst};
    diat_pool_for(ctx->threads, count, fill_range, &e);
}

static void axpy_range(void *arg, size_t begin, size_t end)
{
    const elementwise_args *e = arg;
    for (size_t i = begin; i < end; i++) e->y[i] += e->alpha * e->a[i];
}

static void cpu_axpy(diat_context *ctx, float alpha, const float *x, float *y, size_t count)
{
    elementwise_args e = {.alpha = alpha, .a = x, .y = y};
    diat_pool_for(ctx->threads, count, axpy_range, &e);
}

static void add_range(void *arg, size_t begin, size_t end)
{
    const elementwise_args *e = arg;
    for (size_t i = begin; i < end; i++) e->y[i] = e->a[i] + e->b[i];
}

static void cpu_add(diat_context *ctx, const float *a, const float *b, float *y, size_t count)
{
    elementwise_args e = {.a = a, .b = b, .y = y};
    diat_pool_for(ctx->threads, count, add_range, &e);
}

static void cpu_add_overlap(diat_context *ctx, const diat_tensor *from, diat_tensor *to)
{
    (void)ctx;
    const int rows = from->h < to->h ? from->h : to->h;
    const int cols = from->w < to->w ? from->w : to->w;
    const size_t planes = (size_t)from->n * from->c;
    for (size_t plane = 0; plane < planes; plane++)
        for (int r = 0; r < rows; r++) {
            const float *src = from->data + (plane * from->h + r) * (size_t)from->w;
            float *dst = to->data + (plane * to->h + r) * (size_t)to->w;
            for (int c = 0; c < cols; c++) dst[c] += src[c];
        }
}

static const diat_backend cpu_backend = {
    .name = "cpu",

    .alloc = cpu_alloc,
    .release = cpu_release,
    .upload = cpu_upload,
    .download = cpu_download,
    .fill = cpu_fill,
    .axpy = cpu_axpy,
    .add = cpu_add,
    .add_overlap = cpu_add_overlap,

    .conv2d_forward = diat_cpu_conv2d_forward,
    .conv2d_backward = diat_cpu_conv2d_backward,
    .linear_forward = diat_cpu_linear_forward,
    .linear_backward = diat_cpu_linear_backward,

    .batchnorm_forward_train = diat_cpu_batchnorm_forward_train,
    .batchnorm_forward_infer = diat_cpu_batchnorm_forward_infer,
    .batchnorm_backward = diat_cpu_batchnorm_backward,
    .instancenorm_forward = diat_cpu_instancenorm_forward,
    .instancenorm_backward = diat_cpu_instancenorm_backward,

    .activation_forward = diat_cpu_activation_forward,
    .activation_backward = diat_cpu_activation_backward,

    .depth_to_space_forward = diat_cpu_depth_to_space_forward,
    .depth_to_space_backward = diat_cpu_depth_to_space_backward,
    .upsample_nearest_forward = diat_cpu_upsample_nearest_forward,
    .upsample_nearest_backward = diat_cpu_upsample_nearest_backward,
    .upsample_bilinear_forward = diat_cpu_upsample_bilinear_forward,
    .upsample_bilinear_backward = diat_cpu_upsample_bilinear_backward,
    .avgpool_forward = diat_cpu_avgpool_forward,
    .avgpool_backward = diat_cpu_avgpool_backward,
    .concat_forward = diat_cpu_concat_forward,
    .concat_backward = diat_cpu_concat_backward,

    .gaussian5_forward = diat_cpu_gaussian5_forward,
    .gaussian5_backward = diat_cpu_gaussian5_backward,
    .binarize_forward = diat_cpu_binarize_forward,
    .binarize_backward = diat_cpu_binarize_backward,

    .resize_bilinear_forward = diat_cpu_resize_bilinear_forward,
    .resize_bilinear_backward = diat_cpu_resize_bilinear_backward,
    .maxpool_forward = diat_cpu_maxpool_forward,
    .maxpool_backward = diat_cpu_maxpool_backward,

    .compose_forward = diat_cpu_compose_forward,
    .compose_backward = diat_cpu_compose_backward,
    .squared_error_forward = diat_cpu_squared_error_forward,
    .squared_error_backward = diat_cpu_squared_error_backward,
    .sum_forward = diat_cpu_sum_forward,
    .ratio_loss_forward = diat_cpu_ratio_loss_forward,
    .ratio_loss_backward = diat_cpu_ratio_loss_backward,
    .gradient_penalty_forward = diat_cpu_gradient_penalty_forward,
    .gradient_penalty_backward = diat_cpu_gradient_penalty_backward,
    .mul = diat_cpu_mul,
    .adam_update = diat_cpu_adam_update,

    .depthwise_conv2d_forward = diat_cpu_depthwise_conv2d_forward,
    .depthwise_conv2d_backward = diat_cpu_depthwise_conv2d_backward,
};

const diat_backend *diat_backend_cpu(void)
{
    return &cpu_backend;
}

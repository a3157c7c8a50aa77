/* 2-D convolution on CUDA (groups = 1): im2col of the whole batch + one
 * cuBLAS SGEMM per convolution.
 *
 * Layout: x [n, in, h, w], weight [out, in, k, k] which, read row-major, is
 * the [out, patch] matrix the GEMM wants (patch = in*k*k); y [n, out, oh, ow].
 *
 * The column matrix col [patch][cols] puts the batch side by side in the
 * columns, column j = image * out_plane + position, so layers with 4x4
 * outputs still make one wide GEMM at training batch sizes:
 *   forward:  yg [out][cols] = W * col, then one pass permutes yg to NCHW
 *             while adding the bias and applying the activation;
 *   backward: dy' [out][cols] = dy permuted, then dW += dy' * col^T,
 *             dbias += dy' * ones, dcol = W^T * dy' and dx += col2im(dcol).
 * col2im is written as a gather (one thread per input pixel sums the column
 * entries that saw it), so it needs no atomics and is deterministic.
 *
 * cuBLAS is column-major: a row-major [r][c] matrix is, to cuBLAS, its
 * transpose, so the row-major product C = A * B is issued as C^T = B^T * A^T.
 * Batches whose column matrix would pass INT_MAX floats are split into
 * chunks of images (cuBLAS takes int sizes and leading dimensions).
 *
 * Scratch: slot 0 holds col (then dcol), slot 1 the [out][cols] GEMM output
 * or, in backward, a ones vector followed by dy'. */
#include "cuda-device.cuh"

#include <climits>
#include <cstdint>

namespace
{

struct conv_shape {
    int batch;
    int in_c, in_h, in_w;
    int out_c, out_h, out_w;
    int k, stride, pad;
    int patch;    /* in_c * k * k: rows of the column matrix */
    int in_plane; /* in_h * in_w */
    int out_plane;
    bool pointwise; /* 1x1, stride 1, no padding: an image is already its columns */
};

conv_shape conv_shape_of(const diat_tensor *x, const diat_tensor *weight, const diat_tensor *y,
                         diat_conv_geometry g)
{
    conv_shape s;
    s.batch = x->n;
    s.in_c = x->c;
    s.in_h = x->h;
    s.in_w = x->w;
    s.out_c = weight->n;
    s.out_h = y->h;
    s.out_w = y->w;
    s.k = g.kernel;
    s.stride = g.stride;
    s.pad = g.pad;
    s.patch = s.in_c * s.k * s.k;
    s.in_plane = s.in_h * s.in_w;
    s.out_plane = s.out_h * s.out_w;
    s.pointwise = s.k == 1 && s.stride == 1 && s.pad == 0;
    return s;
}

/* Images per GEMM: the whole batch unless a scratch matrix would exceed
 * INT_MAX floats (then at least one image, with size_t indexing inside). */
int chunk_images(const conv_shape &s)
{
    size_t rows = s.patch > s.out_c ? (size_t)s.patch : (size_t)s.out_c;
    size_t per_image = rows * (size_t)s.out_plane;
    size_t images = per_image ? (size_t)INT_MAX / per_image : (size_t)s.batch;
    if (images < 1) images = 1;
    if (images > (size_t)s.batch) images = (size_t)s.batch;
    return (int)images;
}

/* col[(c, ki, kj)][j] for j < cols: x is the chunk's first image. Threads
 * run along j (coalesced stores), blockIdx.y over input channels; each
 * thread splits j once and then writes its k*k taps without divisions. */
__global__ void im2col_kernel(const float *__restrict__ x, float *__restrict__ col, int in_c,
                              int in_h, int in_w, int k, int stride, int pad, int out_w,
                              int out_plane, int cols)
{
    const size_t tap_rows = (size_t)k * k;
    /* Unsigned: j + stride stays below 2^32 for any int cols. */
    for (unsigned j = blockIdx.x * blockDim.x + threadIdx.x; j < (unsigned)cols;
         j += blockDim.x * gridDim.x) {
        const int image = (int)(j / (unsigned)out_plane);
        const int position = (int)j - image * out_plane;
        const int oh = position / out_w;
        const int ow = position - oh * out_w;
        for (int c = blockIdx.y; c < in_c; c += gridDim.y) {
            const float *plane = x + ((size_t)image * in_c + c) * ((size_t)in_h * in_w);
            float *dst = col + (size_t)c * tap_rows * cols + j;
            for (int ki = 0; ki < k; ki++) {
                const int ih = oh * stride - pad + ki;
                const bool row_inside = ih >= 0 && ih < in_h;
                for (int kj = 0; kj < k; kj++, dst += cols) {
                    const int iw = ow * stride - pad + kj;
                    *dst =
                        row_inside && iw >= 0 && iw < in_w ? plane[(size_t)ih * in_w + iw] : 0.0f;
                }
            }
        }
    }
}

/* dx += col2im(dcol) for the chunk's `total` input pixels. Pixel (ih, iw)
 * was seen by tap ki from output row oh = (ih + pad - ki) / stride when that
 * divides exactly: stepping ki by stride steps oh by -1, so the loops need
 * no division. */
template <typename Index>
__global__ void col2im_gather_kernel(const float *__restrict__ dcol, float *__restrict__ dx,
                                     Index total, int in_c, int in_h, int in_w, int k, int stride,
                                     int pad, int out_h, int out_w, int cols)
{
    const Index step = (Index)blockDim.x * gridDim.x;
    for (Index i = (Index)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += step) {
        const int iw = (int)(i % in_w);
        Index rest = i / in_w;
        const int ih = (int)(rest % in_h);
        rest /= in_h;
        const int c = (int)(rest % in_c);
        const Index image = rest / in_c;
        const float *base =
            dcol + (size_t)c * k * k * cols + (size_t)image * ((size_t)out_h * out_w);
        float sum = 0.0f;
        const int first_ki = (ih + pad) % stride, first_kj = (iw + pad) % stride;
        for (int ki = first_ki, oh = (ih + pad) / stride; ki < k && oh >= 0; ki += stride, oh--) {
            if (oh >= out_h) continue;
            for (int kj = first_kj, ow = (iw + pad) / stride; kj < k && ow >= 0;
                 kj += stride, ow--) {
                if (ow >= out_w) continue;
                sum += base[(size_t)(ki * k + kj) * cols + oh * out_w + ow];
            }
        }
        dx[i] += sum;
    }
}

/* y (NCHW, the chunk's images) = act(gemm [out][cols] + bias), one pass.
 * Plane p of y is (image p / out_c, channel p % out_c). With one image the
 * GEMM output may be y itself: each thread reads then writes one element. */
__global__ void output_epilogue_kernel(const float *gemm, const float *__restrict__ bias, float *y,
                                       size_t planes, int out_c, int out_plane, int cols,
                                       diat_activation act, float slope)
{
    for (size_t p = blockIdx.y; p < planes; p += gridDim.y) {
        const int o = (int)(p % out_c);
        const size_t image = p / out_c;
        const float *src = gemm + (size_t)o * cols + image * out_plane;
        float *dst = y + p * out_plane;
        const float b = bias ? bias[o] : 0.0f;
        for (unsigned i = blockIdx.x * blockDim.x + threadIdx.x; i < (unsigned)out_plane;
             i += blockDim.x * gridDim.x)
            dst[i] = diat_cuda_activate(src[i] + b, act, slope);
    }
}

/* dy' [out][cols] from dy (NCHW, the chunk's images): the inverse permute. */
__global__ void gather_output_grad_kernel(const float *__restrict__ dy, float *__restrict__ dyp,
                                          size_t planes, int out_c, int out_plane, int cols)
{
    for (size_t p = blockIdx.y; p < planes; p += gridDim.y) {
        const int o = (int)(p % out_c);
        const size_t image = p / out_c;
        const float *src = dy + p * out_plane;
        float *dst = dyp + (size_t)o * cols + image * out_plane;
        for (unsigned i = blockIdx.x * blockDim.x + threadIdx.x; i < (unsigned)out_plane;
             i += blockDim.x * gridDim.x)
            dst[i] = src[i];
    }
}

__global__ void fill_ones_kernel(float *dst, int count)
{
    for (unsigned i = blockIdx.x * blockDim.x + threadIdx.x; i < (unsigned)count;
         i += blockDim.x * gridDim.x)
        dst[i] = 1.0f;
}

void launch_im2col(cudaStream_t stream, const conv_shape &s, const float *x, float *col, int cols)
{
    unsigned blocks_x = diat_cuda_blocks((size_t)cols);
    unsigned blocks_y = s.in_c > 65535 ? 65535u : (unsigned)s.in_c;
    im2col_kernel<<<dim3(blocks_x, blocks_y), DIAT_CUDA_THREADS, 0, stream>>>(
        x, col, s.in_c, s.in_h, s.in_w, s.k, s.stride, s.pad, s.out_w, s.out_plane, cols);
    DIAT_CUDA_LAUNCHED("conv2d im2col");
}

void launch_col2im(cudaStream_t stream, const conv_shape &s, const float *dcol, float *dx,
                   int images, int cols)
{
    size_t total = (size_t)images * s.in_c * s.in_plane;
    unsigned blocks = diat_cuda_blocks(total);
    /* 32-bit indices (cheaper divisions) whenever the grid-stride sum cannot overflow. */
    if (total <= (size_t)INT_MAX)
        col2im_gather_kernel<uint32_t><<<blocks, DIAT_CUDA_THREADS, 0, stream>>>(
            dcol, dx, (uint32_t)total, s.in_c, s.in_h, s.in_w, s.k, s.stride, s.pad, s.out_h,
            s.out_w, cols);
    else
        col2im_gather_kernel<size_t><<<blocks, DIAT_CUDA_THREADS, 0, stream>>>(
            dcol, dx, total, s.in_c, s.in_h, s.in_w, s.k, s.stride, s.pad, s.out_h, s.out_w, cols);
    DIAT_CUDA_LAUNCHED("conv2d col2im");
}

} // namespace

void diat_cuda_conv2d_forward(diat_context *ctx, const diat_tensor *x, const diat_tensor *weight,
                              const diat_tensor *bias, diat_conv_geometry g, diat_activation act,
                              float slope, diat_tensor *y)
{
    const conv_shape s = conv_shape_of(x, weight, y, g);
    if (s.batch == 0 || s.out_c == 0 || s.out_plane == 0) return;
    cudaStream_t stream = diat_cuda_stream(ctx);
    cublasHandle_t blas = diat_cuda_state_of(ctx)->cublas;
    const int chunk = chunk_images(s);
    const size_t chunk_cols = (size_t)chunk * s.out_plane;
    const bool single = chunk == 1;
    /* One image needs no scratch for a 1x1 layer's columns nor for the GEMM
     * output, which is then that image's NCHW output already. */
    float *col_buffer =
        single && s.pointwise ? NULL : diat_cuda_scratch(ctx, 0, (size_t)s.patch * chunk_cols);
    float *gemm_buffer = single ? NULL : diat_cuda_scratch(ctx, 1, (size_t)s.out_c * chunk_cols);
    const float one = 1.0f, zero = 0.0f;

    for (int n0 = 0; n0 < s.batch; n0 += chunk) {
        const int images = s.batch - n0 < chunk ? s.batch - n0 : chunk;
        const int cols = images * s.out_plane;
        const float *x_chunk = x->data + (size_t)n0 * s.in_c * s.in_plane;
        float *y_chunk = y->data + (size_t)n0 * s.out_c * s.out_plane;

        const float *col = x_chunk;
        if (col_buffer) {
            launch_im2col(stream, s, x_chunk, col_buffer, cols);
            col = col_buffer;
        }
        float *gemm_out = gemm_buffer ? gemm_buffer : y_chunk;
        /* Row-major yg [out][cols] = W [out][patch] * col [patch][cols], issued
         * column-major as yg^T (cols x out) = col^T (cols x patch) * W^T (patch x out). */
        diat_cuda_check_blas(cublasSgemm(blas, CUBLAS_OP_N, CUBLAS_OP_N, cols, s.out_c, s.patch,
                                         &one, col, cols, weight->data, s.patch, &zero, gemm_out,
                                         cols),
                             "conv2d forward GEMM");

        const size_t planes = (size_t)images * s.out_c;
        const diat_cuda_plane_launch launch = diat_cuda_plane_launch_of(planes, s.out_plane);
        output_epilogue_kernel<<<launch.grid, launch.block, 0, stream>>>(
            gemm_out, bias ? bias->data : NULL, y_chunk, planes, s.out_c, s.out_plane, cols, act,
            slope);
        DIAT_CUDA_LAUNCHED("conv2d forward epilogue");
    }
}

void diat_cuda_conv2d_backward(diat_context *ctx, const diat_tensor *x, const diat_tensor *weight,
                               const diat_tensor *dy, diat_conv_geometry g, diat_tensor *dx,
                               diat_tensor *dweight, diat_tensor *dbias)
{
    const conv_shape s = conv_shape_of(x, weight, dy, g);
    if (!dx && !dweight && !dbias) return;
    if (s.batch == 0 || s.out_c == 0 || s.out_plane == 0) return;
    cudaStream_t stream = diat_cuda_stream(ctx);
    cublasHandle_t blas = diat_cuda_state_of(ctx)->cublas;
    const int chunk = chunk_images(s);
    const size_t chunk_cols = (size_t)chunk * s.out_plane;
    const bool single = chunk == 1;

    /* Slot 1: [ones: chunk_cols][dy': out * chunk_cols]; with one image per
     * chunk dy itself is already dy' (its [out][plane] is [out][cols]). */
    const size_t ones_count = dbias ? chunk_cols : 0;
    const size_t slot1_count = ones_count + (single ? 0 : (size_t)s.out_c * chunk_cols);
    float *slot1 = slot1_count ? diat_cuda_scratch(ctx, 1, slot1_count) : NULL;
    float *ones = dbias ? slot1 : NULL;
    float *dyp_buffer = single ? NULL : slot1 + ones_count;
    if (ones) {
        fill_ones_kernel<<<diat_cuda_blocks(ones_count), DIAT_CUDA_THREADS, 0, stream>>>(
            ones, (int)ones_count);
        DIAT_CUDA_LAUNCHED("conv2d backward ones");
    }
    /* Slot 0: col for dW, then dcol for dx (the dW GEMM has consumed col by
     * then: both run in order on the stream). A single-image 1x1 layer reads
     * x as its columns and writes dx straight from the GEMM. */
    const bool direct_columns = single && s.pointwise;
    float *col_buffer = (dweight || dx) && !direct_columns
                            ? diat_cuda_scratch(ctx, 0, (size_t)s.patch * chunk_cols)
                            : NULL;
    const float one = 1.0f, zero = 0.0f;

    for (int n0 = 0; n0 < s.batch; n0 += chunk) {
        const int images = s.batch - n0 < chunk ? s.batch - n0 : chunk;
        const int cols = images * s.out_plane;
        const float *x_chunk = x->data + (size_t)n0 * s.in_c * s.in_plane;
        const float *dy_chunk = dy->data + (size_t)n0 * s.out_c * s.out_plane;

        const float *dyp = dy_chunk;
        if (dyp_buffer) {
            const size_t planes = (size_t)images * s.out_c;
            const diat_cuda_plane_launch launch = diat_cuda_plane_launch_of(planes, s.out_plane);
            gather_output_grad_kernel<<<launch.grid, launch.block, 0, stream>>>(
                dy_chunk, dyp_buffer, planes, s.out_c, s.out_plane, cols);
            DIAT_CUDA_LAUNCHED("conv2d backward dy permute");
            dyp = dyp_buffer;
        }

        if (dbias) {
            /* dbias [out] += dy' [out][cols] * ones [cols]; dy' is, column-major,
             * a cols x out matrix, so this is its transpose times ones. */
            diat_cuda_check_blas(cublasSgemv(blas, CUBLAS_OP_T, cols, s.out_c, &one, dyp, cols,
                                             ones, 1, &one, dbias->data, 1),
                                 "conv2d backward dbias GEMV");
        }

        if (dweight) {
            const float *col = x_chunk;
            if (!direct_columns) {
                launch_im2col(stream, s, x_chunk, col_buffer, cols);
                col = col_buffer;
            }
            /* Row-major dW [out][patch] += dy' [out][cols] * col^T [cols][patch],
             * issued as dW^T (patch x out) += col (patch x cols) * dy'^T (cols x out):
             * col's memory is, column-major, cols x patch, hence OP_T. */
            diat_cuda_check_blas(cublasSgemm(blas, CUBLAS_OP_T, CUBLAS_OP_N, s.patch, s.out_c, cols,
                                             &one, col, cols, dyp, cols, &one, dweight->data,
                                             s.patch),
                                 "conv2d backward dweight GEMM");
        }

        if (dx) {
            float *dx_chunk = dx->data + (size_t)n0 * s.in_c * s.in_plane;
            /* Row-major dcol [patch][cols] = W^T [patch][out] * dy' [out][cols],
             * issued as dcol^T (cols x patch) = dy'^T (cols x out) * W (out x patch):
             * W's memory is, column-major, patch x out, hence OP_T. A single-image
             * 1x1 layer's dcol is its dx image, so it accumulates in place. */
            float *dcol = direct_columns ? dx_chunk : col_buffer;
            const float beta = direct_columns ? one : zero;
            diat_cuda_check_blas(cublasSgemm(blas, CUBLAS_OP_N, CUBLAS_OP_T, cols, s.patch, s.out_c,
                                             &one, dyp, cols, weight->data, s.patch, &beta, dcol,
                                             cols),
                                 "conv2d backward dcol GEMM");
            if (!direct_columns) launch_col2im(stream, s, col_buffer, dx_chunk, images, cols);
        }
    }
}

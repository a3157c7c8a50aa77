/* Fully connected layer on CUDA: x [n, in] (any c*h*w flattened), weight
 * [out, in] as PyTorch stores it, y [n, out] = x * W^T + b. Each product is
 * one cuBLAS SGEMM over the whole batch; the bias is added, and its
 * gradient summed, by small kernels.
 *
 * cuBLAS is column-major: a row-major [r][c] matrix is, to cuBLAS, its
 * transpose, so the row-major product C = A * B is issued as C^T = B^T * A^T. */
#include "cuda-internal.h"

namespace
{

/* Features per sample: the product of the non-batch dimensions. */
int features_of(const diat_tensor *t)
{
    return t->c * t->h * t->w;
}

/* y [rows][out] += bias [out]: threads along a row, blockIdx.y over rows,
 * so no per-element division is needed. */
__global__ void add_bias_kernel(float *__restrict__ y, const float *__restrict__ bias, int rows,
                                int out)
{
    for (int r = blockIdx.y; r < rows; r += gridDim.y) {
        float *row = y + (size_t)r * out;
        for (int o = blockIdx.x * blockDim.x + threadIdx.x; o < out; o += blockDim.x * gridDim.x)
            row[o] += bias[o];
    }
}

/* dbias [out] += column sums of dy [rows][out]: one thread per output, rows
 * in order as on the CPU (the batch is small, and adjacent threads read
 * adjacent floats). */
__global__ void bias_grad_kernel(const float *__restrict__ dy, float *__restrict__ dbias, int rows,
                                 int out)
{
    for (int o = blockIdx.x * blockDim.x + threadIdx.x; o < out; o += blockDim.x * gridDim.x) {
        float sum = 0.0f;
        for (int r = 0; r < rows; r++) sum += dy[(size_t)r * out + o];
        dbias[o] += sum;
    }
}

} // namespace

void diat_cuda_linear_forward(diat_context *ctx, const diat_tensor *x, const diat_tensor *weight,
                              const diat_tensor *bias, diat_tensor *y)
{
    const int batch = x->n, in = features_of(x), out = weight->n;
    if (batch == 0 || out == 0) return;
    cudaStream_t stream = diat_cuda_stream(ctx);
    cublasHandle_t blas = diat_cuda_state_of(ctx)->cublas;
    const float one = 1.0f, zero = 0.0f;
    if (in > 0) {
        /* Row-major y [n][out] = x [n][in] * W^T [in][out], issued as
         * y^T (out x n) = W (out x in) * x^T (in x n); W's memory is,
         * column-major, in x out, hence OP_T; x's is in x n = x^T already. */
        diat_cuda_check_blas(cublasSgemm(blas, CUBLAS_OP_T, CUBLAS_OP_N, out, batch, in, &one,
                                         weight->data, in, x->data, in, &zero, y->data, out),
                             "linear forward GEMM");
    } else {
        /* No inputs: an empty sum (cuBLAS rejects a leading dimension of 0). */
        diat_cuda_check(cudaMemsetAsync(y->data, 0, (size_t)batch * out * sizeof(float), stream),
                        "linear forward zero");
    }
    if (bias) {
        unsigned blocks_x = diat_cuda_blocks((size_t)out);
        unsigned blocks_y = batch > 65535 ? 65535u : (unsigned)batch;
        add_bias_kernel<<<dim3(blocks_x, blocks_y), DIAT_CUDA_THREADS, 0, stream>>>(
            y->data, bias->data, batch, out);
        DIAT_CUDA_LAUNCHED("linear forward bias");
    }
}

void diat_cuda_linear_backward(diat_context *ctx, const diat_tensor *x, const diat_tensor *weight,
                               const diat_tensor *dy, diat_tensor *dx, diat_tensor *dweight,
                               diat_tensor *dbias)
{
    const int batch = x->n, in = features_of(x), out = weight->n;
    if (batch == 0 || out == 0) return;
    cudaStream_t stream = diat_cuda_stream(ctx);
    cublasHandle_t blas = diat_cuda_state_of(ctx)->cublas;
    const float one = 1.0f;
    if (dx && in > 0) {
        /* Row-major dx [n][in] += dy [n][out] * W [out][in], issued as
         * dx^T (in x n) += W^T (in x out) * dy^T (out x n): both operands'
         * memory is already that transpose, so no OP_T. */
        diat_cuda_check_blas(cublasSgemm(blas, CUBLAS_OP_N, CUBLAS_OP_N, in, batch, out, &one,
                                         weight->data, in, dy->data, out, &one, dx->data, in),
                             "linear backward dx GEMM");
    }
    if (dweight && in > 0) {
        /* Row-major dW [out][in] += dy^T [out][n] * x [n][in], issued as
         * dW^T (in x out) += x^T (in x n) * dy (n x out); dy's memory is,
         * column-major, out x n, hence OP_T. */
        diat_cuda_check_blas(cublasSgemm(blas, CUBLAS_OP_N, CUBLAS_OP_T, in, out, batch, &one,
                                         x->data, in, dy->data, out, &one, dweight->data, in),
                             "linear backward dweight GEMM");
    }
    if (dbias) {
        bias_grad_kernel<<<diat_cuda_blocks((size_t)out), DIAT_CUDA_THREADS, 0, stream>>>(
            dy->data, dbias->data, batch, out);
        DIAT_CUDA_LAUNCHED("linear backward dbias");
    }
}

/* Depthwise 2-D convolution on CUDA (groups = channels, one k x k filter
 * per channel), for the face detector's and landmark network's separable
 * convolutions: direct kernels, no GEMM.
 *
 * Layout: x [n, c, h, w], weight [c, 1, k, k], bias [c] or NULL,
 * y [n, c, oh, ow].
 *  - forward: one thread per output, bias then taps in the CPU's order,
 *    activation fused;
 *  - dx: one thread per input pixel gathers the outputs that saw it (no
 *    atomics, deterministic);
 *  - dweight, dbias: one block per (channel, tap) reduces over the batch and
 *    the output plane, and is the only writer of its entry. */
#include "cuda-device.cuh"

#include <climits>
#include <cstdint>

namespace
{

struct depthwise_shape {
    int batch, channels;
    int in_h, in_w, out_h, out_w;
    int k, stride, pad;
    int in_plane, out_plane;
};

depthwise_shape depthwise_shape_of(const diat_tensor *x, const diat_tensor *y, diat_conv_geometry g)
{
    depthwise_shape s;
    s.batch = x->n;
    s.channels = x->c;
    s.in_h = x->h;
    s.in_w = x->w;
    s.out_h = y->h;
    s.out_w = y->w;
    s.k = g.kernel;
    s.stride = g.stride;
    s.pad = g.pad;
    s.in_plane = s.in_h * s.in_w;
    s.out_plane = s.out_h * s.out_w;
    return s;
}

__global__ void depthwise_forward_kernel(const float *__restrict__ x,
                                         const float *__restrict__ weight,
                                         const float *__restrict__ bias, float *__restrict__ y,
                                         depthwise_shape s, diat_activation act, float slope)
{
    const size_t planes = (size_t)s.batch * s.channels;
    for (size_t p = blockIdx.y; p < planes; p += gridDim.y) {
        const int c = (int)(p % s.channels);
        const float *in = x + p * s.in_plane;
        const float *filter = weight + (size_t)c * s.k * s.k;
        const float b = bias ? bias[c] : 0.0f;
        for (unsigned i = blockIdx.x * blockDim.x + threadIdx.x; i < (unsigned)s.out_plane;
             i += blockDim.x * gridDim.x) {
            const int oh = (int)i / s.out_w, ow = (int)i - oh * s.out_w;
            float sum = b;
            for (int ki = 0; ki < s.k; ki++) {
                const int ih = oh * s.stride - s.pad + ki;
                if (ih < 0 || ih >= s.in_h) continue; /* a padding row adds nothing */
                for (int kj = 0; kj < s.k; kj++) {
                    const int iw = ow * s.stride - s.pad + kj;
                    if (iw < 0 || iw >= s.in_w) continue;
                    sum += filter[ki * s.k + kj] * in[(size_t)ih * s.in_w + iw];
                }
            }
            y[p * s.out_plane + i] = diat_cuda_activate(sum, act, slope);
        }
    }
}

/* dx += filter^T (*) dy. Pixel (ih, iw) was seen by tap ki from output row
 * oh = (ih + pad - ki) / stride when that divides exactly: stepping ki by
 * stride steps oh by -1, so the loops need no division. */
__global__ void depthwise_input_grad_kernel(const float *__restrict__ dy,
                                            const float *__restrict__ weight,
                                            float *__restrict__ dx, depthwise_shape s)
{
    const size_t planes = (size_t)s.batch * s.channels;
    for (size_t p = blockIdx.y; p < planes; p += gridDim.y) {
        const int c = (int)(p % s.channels);
        const float *grad = dy + p * s.out_plane;
        const float *filter = weight + (size_t)c * s.k * s.k;
        for (unsigned i = blockIdx.x * blockDim.x + threadIdx.x; i < (unsigned)s.in_plane;
             i += blockDim.x * gridDim.x) {
            const int ih = (int)i / s.in_w, iw = (int)i - ih * s.in_w;
            const int first_ki = (ih + s.pad) % s.stride, first_kj = (iw + s.pad) % s.stride;
            float sum = 0.0f;
            for (int ki = first_ki, oh = (ih + s.pad) / s.stride; ki < s.k && oh >= 0;
                 ki += s.stride, oh--) {
                if (oh >= s.out_h) continue;
                for (int kj = first_kj, ow = (iw + s.pad) / s.stride; kj < s.k && ow >= 0;
                     kj += s.stride, ow--) {
                    if (ow >= s.out_w) continue;
                    sum += filter[ki * s.k + kj] * grad[(size_t)oh * s.out_w + ow];
                }
            }
            dx[p * s.in_plane + i] += sum;
        }
    }
}

/* Sum of `value` over the block, valid in thread 0. Every thread of the
 * block must call it; it may be called repeatedly. */
__device__ float block_sum(float value)
{
    __shared__ float warp_sums[32];
    const unsigned lane = threadIdx.x & 31u, warp = threadIdx.x >> 5;
    for (int offset = 16; offset > 0; offset >>= 1)
        value += __shfl_down_sync(0xffffffffu, value, offset);
    if (lane == 0) warp_sums[warp] = value;
    __syncthreads();
    if (warp == 0) {
        value = lane < (blockDim.x + 31u) / 32u ? warp_sums[lane] : 0.0f;
        for (int offset = 16; offset > 0; offset >>= 1)
            value += __shfl_down_sync(0xffffffffu, value, offset);
    }
    __syncthreads(); /* warp_sums is free again for the next call */
    return value;
}

/* blockIdx.x picks the reduction: taps [first_tap, k*k) give dweight[c][tap]
 * += sum over (n, oh, ow) of dy * x through that tap; tap k*k gives
 * dbias[c] += sum of dy. blockIdx.y walks the channels. */
template <typename Index>
__global__ void depthwise_param_grad_kernel(const float *__restrict__ x,
                                            const float *__restrict__ dy,
                                            float *__restrict__ dweight, float *__restrict__ dbias,
                                            depthwise_shape s, int first_tap)
{
    const int taps = s.k * s.k;
    const int tap = first_tap + (int)blockIdx.x;
    const int ki = tap / s.k, kj = tap - ki * s.k;
    const Index count = (Index)s.batch * (Index)s.out_plane;
    for (int c = blockIdx.y; c < s.channels; c += gridDim.y) {
        float sum = 0.0f;
        for (Index i = threadIdx.x; i < count; i += blockDim.x) {
            const Index n = i / (Index)s.out_plane;
            const int position = (int)(i - n * (Index)s.out_plane);
            const size_t plane = (size_t)n * s.channels + c;
            const float grad = dy[plane * s.out_plane + position];
            if (tap == taps) {
                sum += grad;
                continue;
            }
            const int oh = position / s.out_w, ow = position - oh * s.out_w;
            const int ih = oh * s.stride - s.pad + ki, iw = ow * s.stride - s.pad + kj;
            if (ih < 0 || ih >= s.in_h || iw < 0 || iw >= s.in_w) continue;
            sum += grad * x[plane * s.in_plane + (size_t)ih * s.in_w + iw];
        }
        sum = block_sum(sum);
        if (threadIdx.x == 0) {
            if (tap == taps)
                dbias[c] += sum;
            else
                dweight[(size_t)c * taps + tap] += sum;
        }
    }
}

} // namespace

void diat_cuda_depthwise_conv2d_forward(diat_context *ctx, const diat_tensor *x,
                                        const diat_tensor *weight, const diat_tensor *bias,
                                        diat_conv_geometry g, diat_activation act, float slope,
                                        diat_tensor *y)
{
    const depthwise_shape s = depthwise_shape_of(x, y, g);
    const size_t planes = (size_t)s.batch * s.channels;
    if (planes == 0 || s.out_plane == 0) return;
    const diat_cuda_plane_launch launch = diat_cuda_plane_launch_of(planes, s.out_plane);
    depthwise_forward_kernel<<<launch.grid, launch.block, 0, diat_cuda_stream(ctx)>>>(
        x->data, weight->data, bias ? bias->data : NULL, y->data, s, act, slope);
    DIAT_CUDA_LAUNCHED("depthwise conv2d forward");
}

void diat_cuda_depthwise_conv2d_backward(diat_context *ctx, const diat_tensor *x,
                                         const diat_tensor *weight, const diat_tensor *dy,
                                         diat_conv_geometry g, diat_tensor *dx,
                                         diat_tensor *dweight, diat_tensor *dbias)
{
    const depthwise_shape s = depthwise_shape_of(x, dy, g);
    const size_t planes = (size_t)s.batch * s.channels;
    if (planes == 0) return;
    cudaStream_t stream = diat_cuda_stream(ctx);

    if (dx && s.in_plane > 0) {
        const diat_cuda_plane_launch launch = diat_cuda_plane_launch_of(planes, s.in_plane);
        depthwise_input_grad_kernel<<<launch.grid, launch.block, 0, stream>>>(
            dy->data, weight->data, dx->data, s);
        DIAT_CUDA_LAUNCHED("depthwise conv2d backward dx");
    }

    /* The reductions wanted: every tap for dweight, one more for dbias. */
    const int taps = s.k * s.k;
    const int first_tap = dweight ? 0 : taps;
    const int reductions = (dweight ? taps : 0) + (dbias ? 1 : 0);
    if (reductions == 0) return;
    const dim3 grid((unsigned)reductions, s.channels > 65535 ? 65535u : (unsigned)s.channels);
    const size_t count = (size_t)s.batch * s.out_plane;
    float *dweight_data = dweight ? dweight->data : NULL;
    float *dbias_data = dbias ? dbias->data : NULL;
    /* 32-bit indices (cheaper divisions) whenever they cannot overflow. */
    if (count <= (size_t)INT_MAX)
        depthwise_param_grad_kernel<uint32_t><<<grid, DIAT_CUDA_THREADS, 0, stream>>>(
            x->data, dy->data, dweight_data, dbias_data, s, first_tap);
    else
        depthwise_param_grad_kernel<size_t><<<grid, DIAT_CUDA_THREADS, 0, stream>>>(
            x->data, dy->data, dweight_data, dbias_data, s, first_tap);
    DIAT_CUDA_LAUNCHED("depthwise conv2d backward dweight/dbias");
}

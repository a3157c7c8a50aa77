/* Private: device-side helpers shared by the CUDA backend's kernels (the
 * host-side declarations are in cuda-internal.h). Everything here is static
 * inline, so each .cu file gets its own copy and no symbol is exported. */
#ifndef DIAT_CUDA_DEVICE_CUH
#define DIAT_CUDA_DEVICE_CUH

#include "cuda-internal.h"

/* Exactly engine/cpu/activation.c's definitions; LeakyReLU in the CPU's
 * branch-free form, so NaN and -0 come out the same. With `act` known at
 * compile time (a template argument) the switch folds away. */
static __device__ __forceinline__ float diat_cuda_activate(float v, diat_activation act,
                                                           float slope)
{
    switch (act) {
    case DIAT_ACT_RELU: return v > 0.0f ? v : 0.0f;
    case DIAT_ACT_LEAKY_RELU: return (v > 0.0f ? v : 0.0f) + slope * (v < 0.0f ? v : 0.0f);
    case DIAT_ACT_SIGMOID: return 1.0f / (1.0f + expf(-v));
    case DIAT_ACT_TANH: return tanhf(v);
    default: return v;
    }
}

static __device__ __forceinline__ double diat_cuda_warp_sum(double v)
{
    for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_down_sync(0xffffffffu, v, offset);
    return v;
}

/* The block's total, in every thread; blockDim.x a multiple of 32. The final
 * barrier lets a caller reduce again right away. */
static __device__ double diat_cuda_block_sum(double v)
{
    __shared__ double warp_totals[32];
    __shared__ double total;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    v = diat_cuda_warp_sum(v);
    if (lane == 0) warp_totals[warp] = v;
    __syncthreads();
    if (warp == 0) {
        double w = lane < (int)(blockDim.x >> 5) ? warp_totals[lane] : 0.0;
        w = diat_cuda_warp_sum(w);
        if (lane == 0) total = w;
    }
    __syncthreads();
    const double result = total;
    __syncthreads();
    return result;
}

/* Launch shape for kernels over `planes` planes of `plane_size` elements:
 * blockIdx.y walks the planes, threads the plane, so plane and channel
 * indices cost no per-element division. Small planes get narrow blocks
 * rather than mostly idle ones. */
typedef struct diat_cuda_plane_launch {
    dim3 grid, block;
} diat_cuda_plane_launch;

static inline diat_cuda_plane_launch diat_cuda_plane_launch_of(size_t planes, int plane_size)
{
    unsigned threads = ((unsigned)plane_size + 31u) / 32u * 32u;
    if (threads > DIAT_CUDA_THREADS) threads = DIAT_CUDA_THREADS;
    if (threads < 32u) threads = 32u;
    unsigned blocks_x = ((unsigned)plane_size + threads - 1u) / threads;
    if (blocks_x > 65535u) blocks_x = 65535u;
    if (blocks_x < 1u) blocks_x = 1u;
    unsigned blocks_y = planes > 65535u ? 65535u : (unsigned)planes;
    if (blocks_y < 1u) blocks_y = 1u;
    return {dim3(blocks_x, blocks_y), dim3(threads)};
}

#endif

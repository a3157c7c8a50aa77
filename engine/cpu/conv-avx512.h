/* Private: the AVX-512 implicit GEMM behind the CPU convolutions, shared by
 * conv-avx512.c (micro-kernel, driver, forward), conv-pack-avx512.c (the
 * fused im2col) and conv-backward-avx512.c (dx and dweight).
 *
 *   y[o, j] (=, or +=) act(bias[o] + sum_k A[o, k] B[k, j])
 *
 * A is a row-major [out_c, in_c * kernel_h * kernel_w] matrix (the weight,
 * or for dx the flipped and transposed weight). B is never built whole:
 * column j = (image n, grid row a, grid column b) sees the window of the
 * NCHW tensor x at rows a * stride - pad_top + ki, columns b * stride -
 * pad_left + kj (zero outside), k = (c, ki, kj). The forward is the plain
 * case; dx is the same GEMM over dy with stride 1 and, for a stride-2
 * convolution, one problem per output phase whose results land every
 * second element of dx (y_step 2). */
#ifndef DIAT_CONV_AVX512_H
#define DIAT_CONV_AVX512_H

#include "ops-cpu.h"

#include <immintrin.h>
#include <stddef.h>
#include <stdint.h>

#define AVX512_TARGET __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,fma")))
#define AVX512_INLINE static inline __attribute__((always_inline)) AVX512_TARGET
/* Every loop over a tile's rows must be unrolled, or the accumulators go
 * through memory (the epilogue's loop alone makes GCC keep them there). */
#define UNROLL_ROWS _Pragma("GCC unroll 12")

enum {
    MR = 12,         /* output rows per micro-tile */
    PANEL = 32,      /* columns per packed panel (two zmm) */
    MAX_KERNEL = 16, /* larger kernels take the BLAS path */
    MAX_THREADS = 64,
};

typedef struct conv_gemm {
    /* B's source and the window each column sees */
    const float *x;
    int batch, in_c, in_h, in_w;
    int kernel_h, kernel_w, stride, pad_top, pad_left;
    int out_h, out_w; /* the grid of columns per image */
    /* A, and the bias added to every column of row o (or NULL) */
    const float *weight, *bias;
    int out_c;
    /* Row o of column (n, a, b) lands at y[n * y_image + o * y_channel +
     * a * y_row + b * y_step]. */
    float *y;
    long y_image, y_channel, y_row;
    int y_step;          /* 1, or 2 */
    int accumulate;      /* add to y instead of writing it */
    diat_activation act; /* identity, ReLU or LeakyReLU (fused) */
    float slope;
    /* derived by diat_cpu_conv_gemm_prepare */
    int patch; /* GEMM K: in_c * kernel_h * kernel_w */
    long in_plane, out_plane;
    long columns; /* GEMM N: batch * out_plane */
    int width;    /* panel width: PANEL, or 16 for tiny GEMMs */
    int gather;   /* pack with gathers (grid rows narrower than 16) */
} conv_gemm;

/* How diat_cpu_conv_gemm_run splits the work, and the scratch it needs. */
typedef struct conv_gemm_plan {
    int threads, direct, split_blocks, block_major;
    long chunk_panels;
    size_t buffer_stride;  /* packed-panel floats per thread */
    size_t scratch_floats; /* what the run needs from the caller */
} conv_gemm_plan;

/* conv-avx512.c */
int diat_cpu_avx512_usable(void);
/* Floats in one core's L2 cache (sysconf; 2 MiB where unknown): chunks of
 * packed panels and of dy are sized from it. */
long diat_cpu_l2_floats(void);
/* Fills the derived fields; `width` 0 picks the panel width. */
void diat_cpu_conv_gemm_prepare(conv_gemm *p, int width);
void diat_cpu_conv_gemm_plan(const conv_gemm *p, int threads, conv_gemm_plan *plan);
/* scratch: plan->scratch_floats floats (unused when that is 0) */
void diat_cpu_conv_gemm_run(const conv_gemm *p, const conv_gemm_plan *plan, float *scratch);

/* conv-pack-avx512.c: columns [j0, j0 + width) of B as panel[k][width],
 * 64-byte aligned, zero past the last column. */
void diat_cpu_conv_pack_panel(const conv_gemm *p, long j0, float *panel);

/* Outputs i in [0, len) read input index first + i * stride; those inside
 * [0, in_len) are [*lo, *hi). */
static inline void conv_valid_outputs(int first, int stride, int in_len, int len, int *lo, int *hi)
{
    int a = first >= 0 ? 0 : (-first + stride - 1) / stride;
    int b = in_len - first <= 0 ? 0 : (in_len - first + stride - 1) / stride;
    if (b > len) b = len;
    if (a > b) a = b;
    *lo = a;
    *hi = b;
}

/* The lowest `count` lanes; none for count <= 0. */
AVX512_INLINE __mmask16 first_lanes(int count)
{
    return (__mmask16)(count <= 0 ? 0u : count >= 16 ? 0xffffu : (1u << count) - 1u);
}

#endif

/* 2-D convolution forward with AVX-512: an implicit GEMM written for this
 * engine's layers, used instead of im2col + OpenBLAS when the CPU has
 * AVX-512 (conv.c asks first; backward stays on OpenBLAS).
 *
 *   y[o, j] = act(bias[o] + sum_k W[o, k] * B[k, j])
 *
 * k = (c, ki, kj) in the weight's own row-major order, so W is the stored
 * [out, in*k*k] matrix, read in place. j = (image, oh, ow): the batch is
 * folded into the columns, so layers with 4x4 or 8x8 outputs still make wide
 * GEMMs at batch 16. B[k, j] is the input pixel that column j sees through
 * tap k (im2col), never built as a whole:
 *
 *  - packed: a fused im2col writes B into panels of 32 columns,
 *    panel[k][0..32), a chunk at a time sized to stay in L2 while every
 *    block of weight rows sweeps it. Rows of output are copied as runs
 *    (stride 2 via a permute); outputs narrower than 16 (4x4, 8x8 layers)
 *    are gathered instead.
 *  - direct: for 3x3 stride-1 layers with few output channels (T.up5,
 *    M.conv3..5) the tiles load B straight from x (masked at the borders):
 *    packing, read by only 1-4 weight blocks, would cost more than it saves.
 *
 * A is not packed at all: the micro-kernel broadcasts W[o][k] from MR
 * sequential weight rows (prefetchers follow MR streams easily), which
 * saves re-packing a 5 MB weight matrix (T.up1) on every call.
 *
 * Micro-kernel: MR = 12 output channels x 32 columns = 24 zmm accumulators.
 * Each k costs 2 panel loads and 12 broadcasts for 24 FMAs (12 cycles on two
 * FMA ports), so loads do not limit it and 24 independent chains cover the
 * FMA latency (measured in isolation: 8 rows 10% slower, 14 rows spill).
 * 12 divides every channel count of T (12 .. 768); other counts (16, 32, 1)
 * end in a constant-row variant. A GEMM of at most 16 columns (4x4 outputs
 * at batch 1) uses 16-wide panels, so no FMA is spent on padding.
 *
 * Bias, ReLU and LeakyReLU are applied to the accumulators before masked
 * stores to NCHW; sigmoid and tanh run afterwards over y.
 *
 * Threads (worker-pool.c): each thread takes a range of panels, or, where
 * the weights outweigh the columns, a range of weight blocks; no two write
 * the same outputs, and no thread reads panels another core packed. */
#include "ops-cpu.h"
#include "worker-pool.h"

#include <immintrin.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define AVX512_TARGET __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,fma")))
#define AVX512_INLINE static inline __attribute__((always_inline)) AVX512_TARGET
/* Every loop over a tile's rows must be unrolled, or the accumulators go
 * through memory (the epilogue's loop alone makes GCC keep them there). */
#define UNROLL_ROWS _Pragma("GCC unroll 12")

enum {
    MR = 12,    /* output channels per micro-tile */
    PANEL = 32, /* columns per packed panel (two zmm) */
    /* Packed-panel floats per chunk: 1 MiB, half of this machine's 2 MiB L2
     * per core, so the chunk survives while all weight blocks sweep it. */
    CHUNK_FLOATS = 256 * 1024,
    MAX_SEGMENTS = PANEL, /* a panel of 1x1 outputs touches 32 images */
    MAX_KERNEL = 16,      /* larger kernels take the BLAS path */
    /* Direct tiles re-read (unaligned, masked) what packing reads once:
     * measured, they win up to 4 blocks of weight rows; packing from 8. */
    DIRECT_MAX_CHANNELS = 4 * MR,
    MAX_THREADS = 64,
    /* Below ~20 us of work per thread, waking workers costs more than it
     * saves (the small networks of a training run are all like that). */
    MIN_FLOPS_PER_THREAD = 4 * 1000 * 1000,
};

typedef struct conv_problem {
    const float *x, *weight, *bias;
    float *y;
    int batch, in_c, in_h, in_w, out_c, out_h, out_w, kernel, stride, pad;
    int patch; /* GEMM K: in_c * kernel * kernel */
    long in_plane, out_plane;
    long columns;        /* GEMM N: batch * out_plane */
    int width;           /* panel width: PANEL, or 16 for tiny GEMMs */
    int gather;          /* pack with gathers (outputs narrower than 16) */
    diat_activation act; /* fused if identity/ReLU/LeakyReLU */
    float slope;
} conv_problem;

/* Where the columns of one panel go in y: panel column c of output channel
 * o is y[offset + o * out_plane + c] for the columns in `mask`. A panel
 * that crosses an image boundary has one segment per image. */
typedef struct store_segment {
    long offset;
    uint32_t mask;
} store_segment;

/* ---- packing: the fused im2col ----------------------------------------- */

/* Outputs i in [0, len) read input index first + i*stride; those inside
 * [0, in_len) are [*lo, *hi). */
static void valid_outputs(int first, int stride, int in_len, int len, int *lo, int *hi)
{
    int a = first >= 0 ? 0 : (-first + stride - 1) / stride;
    int b = in_len - first <= 0 ? 0 : (in_len - first + stride - 1) / stride;
    if (b > len) b = len;
    if (a > b) a = b;
    *lo = a;
    *hi = b;
}

AVX512_INLINE __mmask16 first_lanes(int count)
{
    return (__mmask16)(count >= 16 ? 0xffffu : (1u << count) - 1u);
}

/* dst[0..len) = zero; len <= PANEL. */
AVX512_INLINE void zero_run(float *dst, int len)
{
    _mm512_mask_storeu_ps(dst, first_lanes(len), _mm512_setzero_ps());
    if (len > 16) _mm512_mask_storeu_ps(dst + 16, first_lanes(len - 16), _mm512_setzero_ps());
}

/* dst[i] = src[i * stride] for i < count (count <= PANEL), never reading
 * past src[(count - 1) * stride]. */
AVX512_INLINE void gather_run(float *dst, const float *src, int count, int stride)
{
    if (stride == 1) {
        int i = 0;
        for (; i + 16 <= count; i += 16) _mm512_storeu_ps(dst + i, _mm512_loadu_ps(src + i));
        if (i < count) {
            __mmask16 m = first_lanes(count - i);
            _mm512_mask_storeu_ps(dst + i, m, _mm512_maskz_loadu_ps(m, src + i));
        }
    } else if (stride == 2) {
        /* 16 outputs from 31 consecutive inputs: two loads, keep the even lanes. */
        const __m512i even =
            _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
        for (int i = 0; i < count; i += 16) {
            int n = count - i < 16 ? count - i : 16, span = 2 * n - 1;
            const float *s = src + 2 * i;
            __m512 low = _mm512_maskz_loadu_ps(first_lanes(span), s);
            __m512 high = span > 16 ? _mm512_maskz_loadu_ps(first_lanes(span - 16), s + 16)
                                    : _mm512_setzero_ps();
            _mm512_mask_storeu_ps(dst + i, first_lanes(n), _mm512_permutex2var_ps(low, even, high));
        }
    } else {
        for (int i = 0; i < count; i++) dst[i] = src[(long)i * stride];
    }
}

/* The panel columns [col, col + len) = output row oh of image n from ow on. */
AVX512_TARGET static void pack_segment(const conv_problem *p, int n, int oh, int ow, int len,
                                       float *panel, int col)
{
    const int k = p->kernel, w = p->width;
    /* Which outputs of the run see the image through tap kj is the same for
     * every channel and kernel row: work it out once. */
    int lo[MAX_KERNEL], hi[MAX_KERNEL], full = 1;
    for (int kj = 0; kj < k; kj++) {
        valid_outputs(ow * p->stride - p->pad + kj, p->stride, p->in_w, len, &lo[kj], &hi[kj]);
        full &= lo[kj] == 0 && hi[kj] == len;
    }
    for (int c = 0; c < p->in_c; c++) {
        const float *channel = p->x + ((long)n * p->in_c + c) * p->in_plane;
        for (int ki = 0; ki < k; ki++) {
            float *dst = panel + (long)(c * k + ki) * k * w + col;
            int ih = oh * p->stride - p->pad + ki;
            if (ih < 0 || ih >= p->in_h) {
                for (int kj = 0; kj < k; kj++) zero_run(dst + kj * w, len);
                continue;
            }
            const float *row = channel + (long)ih * p->in_w + ow * p->stride - p->pad;
            if (full) {
                for (int kj = 0; kj < k; kj++) gather_run(dst + kj * w, row + kj, len, p->stride);
                continue;
            }
            for (int kj = 0; kj < k; kj++, dst += w) {
                if (lo[kj] > 0 || hi[kj] < len) zero_run(dst, len);
                if (hi[kj] > lo[kj])
                    gather_run(dst + lo[kj], row + kj + lo[kj] * p->stride, hi[kj] - lo[kj],
                               p->stride);
            }
        }
    }
}

/* Where panel columns [j0, j0 + width) go in y. Returns the segment count. */
static int list_segments(const conv_problem *p, long j0, store_segment *segments)
{
    long end = j0 + p->width < p->columns ? j0 + p->width : p->columns;
    int count = 0;
    for (long j = j0; j < end;) {
        int n = (int)(j / p->out_plane);
        long pos = j % p->out_plane;
        /* the rest of this image's plane: contiguous in y */
        long len = p->out_plane - pos < end - j ? p->out_plane - pos : end - j;
        uint32_t bits = (len >= 32 ? 0xffffffffu : (1u << len) - 1u) << (j - j0);
        segments[count++] =
            (store_segment){(long)n * p->out_c * p->out_plane + pos - (j - j0), bits};
        j += len;
    }
    return count;
}

/* Packing for small outputs (out_w < 16), where row runs are too short
 * for contiguous loads: for a given tap (ki, kj) the input offsets of the
 * panel's columns are the same for every channel, one channel plane apart,
 * so they are worked out once and each panel row is one or two gathers. */
AVX512_TARGET static void pack_panel_gathered(const conv_problem *p, long j0, float *panel)
{
    const int k = p->kernel, taps = k * k, vectors = p->width / 16;
    int top[PANEL], left[PANEL];
    long image[PANEL];
    for (int i = 0; i < p->width; i++) {
        long j = j0 + i, pos = j % p->out_plane;
        top[i] = (int)(pos / p->out_w) * p->stride - p->pad;
        left[i] = (int)(pos % p->out_w) * p->stride - p->pad;
        image[i] = j < p->columns ? j / p->out_plane * p->in_c * p->in_plane : -1;
    }
    for (int ki = 0; ki < k; ki++) {
        for (int kj = 0; kj < k; kj++) {
            __m512i offsets[2];
            __mmask16 valid[2];
            for (int v = 0; v < vectors; v++) {
                int32_t lane_offsets[16];
                uint32_t lanes = 0;
                for (int l = 0; l < 16; l++) {
                    int i = 16 * v + l, ih = top[i] + ki, iw = left[i] + kj;
                    int inside =
                        image[i] >= 0 && ih >= 0 && ih < p->in_h && iw >= 0 && iw < p->in_w;
                    lane_offsets[l] = inside ? (int32_t)(image[i] + (long)ih * p->in_w + iw) : 0;
                    lanes |= (uint32_t)inside << l;
                }
                offsets[v] = _mm512_loadu_si512(lane_offsets);
                valid[v] = (__mmask16)lanes;
            }
            float *dst = panel + (long)(ki * k + kj) * p->width;
            const float *channel = p->x;
            for (int c = 0; c < p->in_c; c++, dst += (long)taps * p->width, channel += p->in_plane)
                for (int v = 0; v < vectors; v++)
                    _mm512_store_ps(dst + 16 * v,
                                    _mm512_mask_i32gather_ps(_mm512_setzero_ps(), valid[v],
                                                             offsets[v], channel, 4));
        }
    }
}

/* Packs columns [j0, j0 + width) of B, zeros past the last column. */
AVX512_TARGET static void pack_panel(const conv_problem *p, long j0, float *panel)
{
    if (p->gather) {
        pack_panel_gathered(p, j0, panel);
        return;
    }
    long end = j0 + p->width < p->columns ? j0 + p->width : p->columns;
    if (end - j0 < p->width) memset(panel, 0, (size_t)p->patch * p->width * sizeof *panel);
    for (long j = j0; j < end;) {
        int n = (int)(j / p->out_plane);
        long pos = j % p->out_plane;
        int oh = (int)(pos / p->out_w), ow = (int)(pos % p->out_w);
        int len = p->out_w - ow < end - j ? p->out_w - ow : (int)(end - j);
        pack_segment(p, n, oh, ow, len, panel, (int)(j - j0));
        j += len;
    }
}

/* ---- the micro-kernel --------------------------------------------------- */

/* Exactly activation.c's max(v, 0) + slope * min(v, 0) (NaN gives 0 there
 * too); one of the two terms is always zero, so the FMA rounds the same. */
AVX512_INLINE __m512 activate(__m512 v, diat_activation act, __m512 slope)
{
    const __m512 zero = _mm512_setzero_ps();
    if (act == DIAT_ACT_RELU) return _mm512_max_ps(v, zero);
    if (act == DIAT_ACT_LEAKY_RELU)
        return _mm512_fmadd_ps(slope, _mm512_min_ps(v, zero), _mm512_max_ps(v, zero));
    return v;
}

/* What a direct tile reads instead of a packed panel (3x3, stride 1, each
 * 16-column vector inside one output row): vector v at tap (c, ki, kj) is
 * the 16 floats at source[v] + c * in_plane + ki * in_w + kj, lanes outside
 * the image (and rows outside it) masked off by masks[v][ki * 3 + kj]. The
 * source addresses are integers because at the image's borders they point
 * outside x; only the unmasked lanes are ever read. */
typedef struct direct_source {
    uintptr_t source[2];
    __mmask16 masks[2][9];
    int in_c;
    long in_plane, in_w;
} direct_source;

typedef struct tile_job {
    const float *weight; /* row o0 of W */
    const float *bias;   /* bias + o0, or NULL */
    const float *panel;  /* packed B, or NULL for a direct tile */
    const direct_source *direct;
    float *y; /* y + o0 * out_plane */
    const store_segment *segments;
    int segment_count;
    int patch;
    long out_plane;
    diat_activation act;
    float slope;
} tile_job;

AVX512_INLINE __m512 load_lanes(__mmask16 lanes, uintptr_t address)
{
    return _mm512_maskz_loadu_ps(lanes, (const void *)address);
}

/* rows x (16 * vectors) outputs; rows, vectors and direct are constants in
 * each instantiation below, so the accumulators live in registers. */
AVX512_INLINE void tile(const tile_job *t, const int rows, const int vectors, const int direct)
{
    __m512 acc[MR][2];
    const long lda = t->patch;
    UNROLL_ROWS
    for (int r = 0; r < rows; r++)
        for (int v = 0; v < vectors; v++)
            acc[r][v] = t->bias ? _mm512_set1_ps(t->bias[r]) : _mm512_setzero_ps();

    if (!direct) {
        const float *a = t->weight, *b = t->panel;
        for (int k = 0; k < t->patch; k++, b += 16 * vectors) {
            __m512 b0 = _mm512_load_ps(b);
            __m512 b1 = vectors > 1 ? _mm512_load_ps(b + 16) : b0;
            UNROLL_ROWS
            for (int r = 0; r < rows; r++) {
                __m512 w = _mm512_set1_ps(a[r * lda + k]);
                acc[r][0] = _mm512_fmadd_ps(w, b0, acc[r][0]);
                if (vectors > 1) acc[r][1] = _mm512_fmadd_ps(w, b1, acc[r][1]);
            }
        }
    } else {
        const direct_source *d = t->direct;
        const float *a = t->weight;
        for (int c = 0; c < d->in_c; c++) {
            for (int ki = 0; ki < 3; ki++, a += 3) {
                long shift = (c * d->in_plane + ki * d->in_w) * (long)sizeof(float);
                uintptr_t s0 = d->source[0] + shift, s1 = d->source[1] + shift;
                for (int kj = 0; kj < 3; kj++) {
                    __m512 b0 = load_lanes(d->masks[0][ki * 3 + kj], s0 + kj * sizeof(float));
                    __m512 b1 = load_lanes(d->masks[1][ki * 3 + kj], s1 + kj * sizeof(float));
                    UNROLL_ROWS
                    for (int r = 0; r < rows; r++) {
                        __m512 w = _mm512_set1_ps(a[r * lda + kj]);
                        acc[r][0] = _mm512_fmadd_ps(w, b0, acc[r][0]);
                        acc[r][1] = _mm512_fmadd_ps(w, b1, acc[r][1]);
                    }
                }
            }
        }
    }

    const __m512 slope = _mm512_set1_ps(t->slope);
    UNROLL_ROWS
    for (int r = 0; r < rows; r++) {
        __m512 v0 = activate(acc[r][0], t->act, slope);
        __m512 v1 = vectors > 1 ? activate(acc[r][1], t->act, slope) : v0;
        for (int s = 0; s < t->segment_count; s++) {
            float *dst = t->y + t->segments[s].offset + r * t->out_plane;
            uint32_t mask = t->segments[s].mask;
            if (mask & 0xffffu) _mm512_mask_storeu_ps(dst, (__mmask16)mask, v0);
            if (vectors > 1 && mask >> 16) _mm512_mask_storeu_ps(dst + 16, mask >> 16, v1);
        }
    }
}

typedef void (*tile_fn)(const tile_job *);

#define DEFINE_TILES(rows)                                                                         \
    AVX512_TARGET static void tile_##rows##x16(const tile_job *t)                                  \
    {                                                                                              \
        tile(t, rows, 1, 0);                                                                       \
    }                                                                                              \
    AVX512_TARGET static void tile_##rows##x32(const tile_job *t)                                  \
    {                                                                                              \
        tile(t, rows, 2, 0);                                                                       \
    }                                                                                              \
    AVX512_TARGET static void direct_##rows##x32(const tile_job *t)                                \
    {                                                                                              \
        tile(t, rows, 2, 1);                                                                       \
    }
DEFINE_TILES(1)
DEFINE_TILES(2)
DEFINE_TILES(3)
DEFINE_TILES(4)
DEFINE_TILES(5)
DEFINE_TILES(6)
DEFINE_TILES(7)
DEFINE_TILES(8)
DEFINE_TILES(9)
DEFINE_TILES(10)
DEFINE_TILES(11)
DEFINE_TILES(12)

/* [rows - 1][16-wide packed, 32-wide packed, 32-wide direct] */
static const tile_fn tiles[MR][3] = {
    {tile_1x16, tile_1x32, direct_1x32},    {tile_2x16, tile_2x32, direct_2x32},
    {tile_3x16, tile_3x32, direct_3x32},    {tile_4x16, tile_4x32, direct_4x32},
    {tile_5x16, tile_5x32, direct_5x32},    {tile_6x16, tile_6x32, direct_6x32},
    {tile_7x16, tile_7x32, direct_7x32},    {tile_8x16, tile_8x32, direct_8x32},
    {tile_9x16, tile_9x32, direct_9x32},    {tile_10x16, tile_10x32, direct_10x32},
    {tile_11x16, tile_11x32, direct_11x32}, {tile_12x16, tile_12x32, direct_12x32},
};

/* ---- driving the GEMM over chunks, threads ------------------------------ */

/* The direct source of the panel starting at column j0. */
static void direct_source_of(const conv_problem *p, long j0, direct_source *d)
{
    d->in_c = p->in_c;
    d->in_plane = p->in_plane;
    d->in_w = p->in_w;
    for (int v = 0; v < 2; v++) {
        long j = j0 + 16 * v;
        memset(d->masks[v], 0, sizeof d->masks[v]);
        d->source[v] = (uintptr_t)p->x;
        if (j >= p->columns) continue;
        int n = (int)(j / p->out_plane);
        long pos = j % p->out_plane;
        int top = (int)(pos / p->out_w) - p->pad, left = (int)(pos % p->out_w) - p->pad;
        d->source[v] += (uintptr_t)(((long)n * p->in_c * p->in_plane + (long)top * p->in_w + left) *
                                    (long)sizeof(float));
        for (int ki = 0; ki < 3; ki++) {
            if (top + ki < 0 || top + ki >= p->in_h) continue;
            for (int kj = 0; kj < 3; kj++) {
                int lo, hi;
                valid_outputs(left + kj, 1, p->in_w, 16, &lo, &hi);
                d->masks[v][ki * 3 + kj] = (__mmask16)(((1u << hi) - 1u) & ~((1u << lo) - 1u));
            }
        }
    }
}

/* One thread's share: weight blocks [block0, block1) of the panels
 * [panel0, panel1). */
typedef struct gemm_share {
    long panel0, panel1;
    int block0, block1;
} gemm_share;

typedef struct conv_job {
    const conv_problem *p;
    gemm_share shares[MAX_THREADS];
    float *buffers; /* per thread, buffer_stride floats apart; NULL if direct */
    size_t buffer_stride;
    long chunk_panels;
} conv_job;

/* Thread `thread` of a conv_job: packs its panels chunk_panels at a time
 * into its own buffer and runs its tiles. */
static void run_share(void *arg, int thread)
{
    const conv_job *cj = arg;
    const conv_problem *p = cj->p;
    const gemm_share *share = &cj->shares[thread];
    const long panel_floats = (long)p->patch * p->width;
    float *panels = NULL;
    if (cj->buffers) {
        uintptr_t start = (uintptr_t)(cj->buffers + cj->buffer_stride * thread);
        panels = (float *)((start + 63) & ~(uintptr_t)63);
    }
    const int kind = panels ? p->width == PANEL : 2;
    store_segment segments[MAX_SEGMENTS];
    direct_source direct;
    tile_job job = {.patch = p->patch,
                    .out_plane = p->out_plane,
                    .act = p->act,
                    .slope = p->slope,
                    .segments = segments,
                    .direct = &direct};

    const long step = panels ? cj->chunk_panels : share->panel1 - share->panel0;
    for (long first = share->panel0; first < share->panel1; first += step) {
        long count = share->panel1 - first < step ? share->panel1 - first : step;
        if (panels)
            for (long i = 0; i < count; i++)
                pack_panel(p, (first + i) * p->width, panels + i * panel_floats);

        /* Panel-major: a panel (L1/L2) meets every block of weight rows. */
        for (long i = 0; i < count; i++) {
            long j0 = (first + i) * p->width;
            job.segment_count = list_segments(p, j0, segments);
            if (panels)
                job.panel = panels + i * panel_floats;
            else
                direct_source_of(p, j0, &direct);
            for (int block = share->block0; block < share->block1; block++) {
                int o0 = block * MR, rows = p->out_c - o0 < MR ? p->out_c - o0 : MR;
                job.weight = p->weight + (long)o0 * p->patch;
                job.bias = p->bias ? p->bias + o0 : NULL;
                job.y = p->y + o0 * p->out_plane;
                tiles[rows - 1][kind](&job);
            }
        }
    }
}

/* ---- entry -------------------------------------------------------------- */

/* The direct tiles read B straight from x: 3x3, stride 1, each 16 columns
 * inside one output row, and few blocks of weight rows. */
static int use_direct(const conv_problem *p)
{
    return p->kernel == 3 && p->stride == 1 && p->out_w % 16 == 0 && p->width == PANEL &&
           p->out_c <= DIRECT_MAX_CHANNELS;
}

static pthread_once_t detect_once = PTHREAD_ONCE_INIT;
static int avx512_usable;

static void detect_avx512(void)
{
    const char *off = getenv("DIAT_CPU_NO_AVX512");
    if (off && *off && strcmp(off, "0") != 0) return;
    __builtin_cpu_init();
    avx512_usable = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                    __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl") &&
                    __builtin_cpu_supports("fma");
}

int diat_cpu_conv2d_forward_avx512(diat_context *ctx, const diat_tensor *x,
                                   const diat_tensor *weight, const diat_tensor *bias,
                                   diat_conv_geometry g, diat_activation act, float slope,
                                   diat_tensor *y)
{
    pthread_once(&detect_once, detect_avx512);
    if (!avx512_usable || g.kernel > MAX_KERNEL) return 0;

    conv_problem p = {
        .x = x->data,
        .weight = weight->data,
        .bias = bias ? bias->data : NULL,
        .y = y->data,
        .batch = x->n,
        .in_c = x->c,
        .in_h = x->h,
        .in_w = x->w,
        .out_c = weight->n,
        .out_h = y->h,
        .out_w = y->w,
        .kernel = g.kernel,
        .stride = g.stride,
        .pad = g.pad,
        .slope = slope,
    };
    p.patch = p.in_c * p.kernel * p.kernel;
    p.in_plane = (long)p.in_h * p.in_w;
    p.out_plane = (long)p.out_h * p.out_w;
    p.columns = p.batch * p.out_plane;
    p.width = p.columns <= 16 ? 16 : PANEL;
    /* gather offsets are 32-bit */
    p.gather = p.out_w < 16 && (long)p.batch * p.in_c * p.in_plane <= INT32_MAX;
    int fused = act == DIAT_ACT_IDENTITY || act == DIAT_ACT_RELU || act == DIAT_ACT_LEAKY_RELU;
    p.act = fused ? act : DIAT_ACT_IDENTITY;

    const long panel_floats = (long)p.patch * p.width;
    const long total_panels = (p.columns + p.width - 1) / p.width;
    const int blocks = (p.out_c + MR - 1) / MR;
    const int direct = use_direct(&p);
    int threads = ctx->threads < 1 ? 1 : ctx->threads > MAX_THREADS ? MAX_THREADS : ctx->threads;
    double useful_threads = 2.0 * p.out_c * (double)p.columns * p.patch / MIN_FLOPS_PER_THREAD;
    if (threads > useful_threads) threads = useful_threads < 1.0 ? 1 : (int)useful_threads;
    /* Split the weight blocks where every thread packing all the panels
     * costs less than every thread reading all the weights (few columns:
     * 4x4 and 8x8 outputs at batch 1); else split the panels. */
    const int split_blocks = !direct && p.out_c >= p.columns && blocks >= threads;
    if (!split_blocks && threads > total_panels) threads = (int)total_panels;

    conv_job job = {.p = &p};
    if (!direct) {
        long own_panels = split_blocks ? total_panels : (total_panels + threads - 1) / threads;
        job.chunk_panels = CHUNK_FLOATS / panel_floats;
        if (job.chunk_panels < 1) job.chunk_panels = 1;
        if (job.chunk_panels > own_panels) job.chunk_panels = own_panels;
        /* a buffer per thread; +16 floats to align each to 64 bytes */
        job.buffer_stride = (size_t)(job.chunk_panels * panel_floats) + 16;
        float *scratch = diat_context_scratch(ctx, job.buffer_stride * threads);
        if (!scratch) return 0;
        job.buffers = scratch;
    }
    for (int t = 0; t < threads; t++) {
        gemm_share *share = &job.shares[t];
        share->panel0 = split_blocks ? 0 : total_panels * t / threads;
        share->panel1 = split_blocks ? total_panels : total_panels * (t + 1) / threads;
        share->block0 = split_blocks ? blocks * t / threads : 0;
        share->block1 = split_blocks ? blocks * (t + 1) / threads : blocks;
    }
    diat_worker_pool_run(threads, run_share, &job);

    if (!fused)
        diat_cpu_activation_forward(ctx, act, slope, y->data, y->data, diat_tensor_count(y));
    return 1;
}

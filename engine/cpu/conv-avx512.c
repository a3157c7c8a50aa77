/* 2-D convolution with AVX-512: an implicit GEMM written for this engine's
 * layers (conv-avx512.h), used instead of im2col + OpenBLAS when the CPU
 * has AVX-512 (conv.c asks first). This file holds the micro-kernel, the
 * driver and the forward; conv-backward-avx512.c runs dx through the same
 * driver and dweight through the same packing.
 *
 *   y[o, j] = act(bias[o] + sum_k W[o, k] * B[k, j])
 *
 * k = (c, ki, kj) in the weight's own row-major order, so W is the stored
 * [out, in*k*k] matrix, read in place. j = (image, oh, ow): the batch is
 * folded into the columns, so layers with 4x4 or 8x8 outputs still make wide
 * GEMMs at batch 16. B[k, j] is the input pixel that column j sees through
 * tap k (im2col), never built as a whole:
 *
 *  - packed: a fused im2col (conv-pack-avx512.c) writes B into panels of 32
 *    columns, panel[k][0..32), a chunk at a time sized to stay in L2 while
 *    every block of weight rows sweeps it (panel by panel, or block by
 *    block where a panel no longer fits L1).
 *  - direct: for stride-1 problems with kernels up to 4x4, rows a multiple
 *    of 16 and few output channels (T.up5, M.conv3..5, DN, and the dx
 *    phases of D's k4 s2 layers) the tiles load B straight from x (masked
 *    at the borders): packing, read by only 1-6 weight blocks, would cost
 *    more than it saves.
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
 * stores (or adds, for dx: every element, or every second one for the
 * phases of a stride-2 dx) to NCHW; sigmoid and tanh run afterwards over y.
 *
 * Threads (worker-pool.c): each thread takes a range of panels, or, where
 * the weights outweigh the columns, a range of weight blocks; no two write
 * the same outputs, and no thread reads panels another core packed. */
#include "conv-avx512.h"
#include "worker-pool.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum {
    MAX_SEGMENTS = PANEL, /* a panel of 1x1 outputs touches 32 images */
    /* Panels over 32 KB (K > 256) do not stay in L1 while the weight
     * blocks sweep them: the chunk then runs block-major (measured: D.conv4
     * 10% faster, T.192 8%; D.conv1's 6 KB panels 5% slower). */
    BLOCK_MAJOR_FLOATS = 8 * 1024,
    BLOCK_MAJOR_PANELS = 16, /* at most, per chunk (their segments are listed) */
    /* Direct tiles re-read (unaligned, masked) what packing reads once:
     * measured, they win up to 4 blocks of weight rows in the forward and
     * at 6 in D.conv3's dx (64 rows: 10.4 -> 8.7 ms); packing from 8. */
    DIRECT_MAX_CHANNELS = 6 * MR,
    DIRECT_MAX_KERNEL = 4, /* 3x3 layers, the 2x2 phases of k4 s2 ones' dx */
    /* Below ~20 us of work per thread, waking workers costs more than it
     * saves (the small networks of a training run are all like that). */
    MIN_FLOPS_PER_THREAD = 4 * 1000 * 1000,
};

/* Where the columns of one panel go in y: panel lane l of row o is
 * y[offset + o * y_channel + l * y_step] for the lanes in `mask` (offset
 * may point before y: only masked lanes are touched). A segment is one
 * image's run of columns (one grid row when y is not contiguous). For
 * y_step 2, spread[i] is mask's lanes 8i..8i+7 on the even elements of a
 * 16-float window. */
typedef struct store_segment {
    long offset;
    uint32_t mask;
    __mmask16 spread[4];
} store_segment;

/* Where panel columns [j0, j0 + width) go in y. Returns the segment count. */
static int list_segments(const conv_gemm *p, long j0, store_segment *segments)
{
    const int contiguous = p->y_step == 1 && p->y_row == p->out_w;
    long end = j0 + p->width < p->columns ? j0 + p->width : p->columns;
    int count = 0;
    for (long j = j0; j < end;) {
        int n = (int)(j / p->out_plane);
        long pos = j % p->out_plane, len, first;
        if (contiguous) {
            /* the rest of this image's plane: contiguous in y */
            len = p->out_plane - pos < end - j ? p->out_plane - pos : end - j;
            first = n * p->y_image + pos;
        } else {
            long a = pos / p->out_w, b = pos % p->out_w;
            len = p->out_w - b < end - j ? p->out_w - b : end - j;
            first = n * p->y_image + a * p->y_row + b * p->y_step;
        }
        int lane = (int)(j - j0);
        uint32_t bits = (len >= 32 ? 0xffffffffu : (1u << len) - 1u) << lane;
        store_segment *s = &segments[count++];
        s->offset = first - (long)lane * p->y_step;
        s->mask = bits;
        for (int i = 0; i < 4 && p->y_step == 2; i++) {
            unsigned spread = 0;
            for (int l = 0; l < 8; l++) spread |= ((bits >> (8 * i + l)) & 1u) << (2 * l);
            s->spread[i] = (__mmask16)spread;
        }
        j += len;
    }
    return count;
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

/* What a direct tile reads instead of a packed panel (stride 1, kernel up
 * to 4x4, each 16-column vector inside one grid row): vector v at tap (c,
 * ki, kj) is the 16 floats at source[v] + c * in_plane + ki * in_w + kj,
 * lanes outside the image (and rows outside it) masked off by
 * masks[v][ki * kernel_w + kj]. The source addresses are integers because
 * at the image's borders they point outside x; only the unmasked lanes are
 * ever read. */
typedef struct direct_source {
    uintptr_t source[2];
    __mmask16 masks[2][DIRECT_MAX_KERNEL * DIRECT_MAX_KERNEL];
    int in_c, kernel_h, kernel_w;
    long in_plane, in_w;
} direct_source;

typedef struct tile_job {
    const float *weight; /* row o0 of W */
    const float *bias;   /* bias + o0, or NULL */
    const float *panel;  /* packed B, or NULL for a direct tile */
    const direct_source *direct;
    uintptr_t y; /* y + o0 * y_channel, as an integer: see store_segment */
    const store_segment *segments;
    int segment_count;
    int patch;
    long y_channel;
    int y_step, accumulate;
    diat_activation act;
    float slope;
} tile_job;

AVX512_INLINE __m512 load_lanes(__mmask16 lanes, uintptr_t address)
{
    return _mm512_maskz_loadu_ps(lanes, (const void *)address);
}

AVX512_INLINE void store_lanes(uintptr_t address, __mmask16 lanes, __m512 v, int accumulate)
{
    if (accumulate) v = _mm512_add_ps(v, load_lanes(lanes, address));
    _mm512_mask_storeu_ps((void *)address, lanes, v);
}

/* Row r of a tile to y: v0 (and v1) hold lanes 0-15 (16-31). */
AVX512_INLINE void store_row(const tile_job *t, int r, __m512 v0, __m512 v1, const int vectors)
{
    const uintptr_t row = t->y + (uintptr_t)(r * t->y_channel * (long)sizeof(float));
    if (t->y_step == 1) {
        for (int s = 0; s < t->segment_count; s++) {
            uintptr_t dst = row + (uintptr_t)(t->segments[s].offset * (long)sizeof(float));
            uint32_t mask = t->segments[s].mask;
            if (mask & 0xffffu) store_lanes(dst, (__mmask16)mask, v0, t->accumulate);
            if (vectors > 1 && mask >> 16)
                store_lanes(dst + 16 * sizeof(float), (__mmask16)(mask >> 16), v1, t->accumulate);
        }
        return;
    }
    /* y_step 2: lanes 8i..8i+7 onto the even elements of window i. */
    const __m512i low = _mm512_set_epi32(7, 7, 6, 6, 5, 5, 4, 4, 3, 3, 2, 2, 1, 1, 0, 0);
    const __m512i high = _mm512_add_epi32(low, _mm512_set1_epi32(8));
    __m512 spread[4] = {_mm512_permutexvar_ps(low, v0), _mm512_permutexvar_ps(high, v0),
                        _mm512_permutexvar_ps(low, v1), _mm512_permutexvar_ps(high, v1)};
    for (int s = 0; s < t->segment_count; s++) {
        uintptr_t dst = row + (uintptr_t)(t->segments[s].offset * (long)sizeof(float));
        for (int i = 0; i < 2 * vectors; i++)
            if (t->segments[s].spread[i])
                store_lanes(dst + 16 * sizeof(float) * i, t->segments[s].spread[i], spread[i],
                            t->accumulate);
    }
}

/* rows x (16 * vectors) outputs; rows, vectors and direct are constants in
 * each instantiation below, so the accumulators live in registers. */
AVX512_INLINE void tile(const tile_job *t, const int rows, const int vectors, const int direct)
{
    const int fixed_kw = direct > 1 ? direct : 0;
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
    } else if (rows <= 4) {
        /* Channel-major for short tiles: tap-major's per-channel loop
         * overhead is not covered by 8 FMAs (DN.conv5: 6.8 against 8.9 ms). */
        const direct_source *d = t->direct;
        const float *a = t->weight;
        const int kh = d->kernel_h, kw = fixed_kw ? fixed_kw : d->kernel_w;
        for (int c = 0; c < d->in_c; c++) {
            for (int ki = 0; ki < kh; ki++, a += kw) {
                long shift = (c * d->in_plane + ki * d->in_w) * (long)sizeof(float);
                uintptr_t s0 = d->source[0] + shift, s1 = d->source[1] + shift;
                const __mmask16 *m0 = d->masks[0] + ki * kw, *m1 = d->masks[1] + ki * kw;
                for (int kj = 0; kj < kw; kj++) {
                    __m512 b0 = load_lanes(m0[kj], s0 + kj * sizeof(float));
                    __m512 b1 = load_lanes(m1[kj], s1 + kj * sizeof(float));
                    for (int r = 0; r < rows; r++) {
                        __m512 w = _mm512_set1_ps(a[r * lda + kj]);
                        acc[r][0] = _mm512_fmadd_ps(w, b0, acc[r][0]);
                        acc[r][1] = _mm512_fmadd_ps(w, b1, acc[r][1]);
                    }
                }
            }
        }
    } else {
        /* Tap-major: a tap's masks stay in registers and its sources move
         * one plane per channel; taps wholly outside the image add zero. */
        const direct_source *d = t->direct;
        const int kh = d->kernel_h, kw = fixed_kw ? fixed_kw : d->kernel_w, taps = kh * kw;
        const uintptr_t plane = (uintptr_t)d->in_plane * sizeof(float);
        for (int ki = 0; ki < kh; ki++) {
            for (int kj = 0; kj < kw; kj++) {
                const int tap = ki * kw + kj;
                const __mmask16 m0 = d->masks[0][tap], m1 = d->masks[1][tap];
                if (!(m0 | m1)) continue;
                const uintptr_t shift = (uintptr_t)(ki * d->in_w + kj) * sizeof(float);
                uintptr_t s0 = d->source[0] + shift, s1 = d->source[1] + shift;
                const float *a = t->weight + tap, *end = a + (long)d->in_c * taps;
                for (; a < end; a += taps, s0 += plane, s1 += plane) {
                    __m512 b0 = load_lanes(m0, s0), b1 = load_lanes(m1, s1);
                    UNROLL_ROWS
                    for (int r = 0; r < rows; r++) {
                        __m512 w = _mm512_set1_ps(a[r * lda]);
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
        store_row(t, r, v0, v1, vectors);
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
        if (t->direct->kernel_w == 2)                                                              \
            tile(t, rows, 2, 2);                                                                   \
        else if (t->direct->kernel_w == 3)                                                         \
            tile(t, rows, 2, 3);                                                                   \
        else                                                                                       \
            tile(t, rows, 2, 1);                                                                   \
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
static void direct_source_of(const conv_gemm *p, long j0, direct_source *d)
{
    d->in_c = p->in_c;
    d->kernel_h = p->kernel_h;
    d->kernel_w = p->kernel_w;
    d->in_plane = p->in_plane;
    d->in_w = p->in_w;
    for (int v = 0; v < 2; v++) {
        long j = j0 + 16 * v;
        memset(d->masks[v], 0, sizeof d->masks[v]);
        d->source[v] = (uintptr_t)p->x;
        if (j >= p->columns) continue;
        int n = (int)(j / p->out_plane);
        long pos = j % p->out_plane;
        int top = (int)(pos / p->out_w) - p->pad_top, left = (int)(pos % p->out_w) - p->pad_left;
        d->source[v] += (uintptr_t)(((long)n * p->in_c * p->in_plane + (long)top * p->in_w + left) *
                                    (long)sizeof(float));
        for (int ki = 0; ki < p->kernel_h; ki++) {
            if (top + ki < 0 || top + ki >= p->in_h) continue;
            for (int kj = 0; kj < p->kernel_w; kj++) {
                int lo, hi;
                conv_valid_outputs(left + kj, 1, p->in_w, 16, &lo, &hi);
                d->masks[v][ki * p->kernel_w + kj] =
                    (__mmask16)(((1u << hi) - 1u) & ~((1u << lo) - 1u));
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
    const conv_gemm *p;
    gemm_share shares[MAX_THREADS];
    float *buffers; /* per thread, buffer_stride floats apart; NULL if direct */
    size_t buffer_stride;
    long chunk_panels;
    int block_major;
} conv_job;

/* Block-major over a packed chunk: a block of weight rows (L1) meets every
 * panel of the chunk (L2), so a weight bigger than L2 (D.conv4: 2 MB) is
 * read once per chunk instead of once per panel. */
static void run_block_major(const conv_job *cj, const gemm_share *share, long first, long count,
                            const float *panels, tile_job *job)
{
    const conv_gemm *p = cj->p;
    const int kind = p->width == PANEL;
    store_segment segments[BLOCK_MAJOR_PANELS][MAX_SEGMENTS];
    int segment_count[BLOCK_MAJOR_PANELS];
    for (long i = 0; i < count; i++)
        segment_count[i] = list_segments(p, (first + i) * p->width, segments[i]);
    for (int block = share->block0; block < share->block1; block++) {
        int o0 = block * MR, rows = p->out_c - o0 < MR ? p->out_c - o0 : MR;
        job->weight = p->weight + (long)o0 * p->patch;
        job->bias = p->bias ? p->bias + o0 : NULL;
        job->y = (uintptr_t)(p->y + o0 * p->y_channel);
        for (long i = 0; i < count; i++) {
            job->segments = segments[i];
            job->segment_count = segment_count[i];
            job->panel = panels + i * (long)p->patch * p->width;
            tiles[rows - 1][kind](job);
        }
    }
}

/* Thread `thread` of a conv_job: packs its panels chunk_panels at a time
 * into its own buffer and runs its tiles. */
static void run_share(void *arg, int thread)
{
    const conv_job *cj = arg;
    const conv_gemm *p = cj->p;
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
                    .y_channel = p->y_channel,
                    .y_step = p->y_step,
                    .accumulate = p->accumulate,
                    .act = p->act,
                    .slope = p->slope,
                    .segments = segments,
                    .direct = &direct};

    const long step = panels ? cj->chunk_panels : share->panel1 - share->panel0;
    for (long first = share->panel0; first < share->panel1; first += step) {
        long count = share->panel1 - first < step ? share->panel1 - first : step;
        if (panels)
            for (long i = 0; i < count; i++)
                diat_cpu_conv_pack_panel(p, (first + i) * p->width, panels + i * panel_floats);

        if (cj->block_major) {
            run_block_major(cj, share, first, count, panels, &job);
            continue;
        }
        /* Panel-major: a panel (L1) meets every block of weight rows. */
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
                job.y = (uintptr_t)(p->y + o0 * p->y_channel);
                tiles[rows - 1][kind](&job);
            }
        }
    }
}

/* ---- planning and entry ------------------------------------------------- */

/* The direct tiles read B straight from x: stride 1, each 16 columns
 * inside one grid row, and few blocks of weight rows. */
static int use_direct(const conv_gemm *p)
{
    return p->kernel_h <= DIRECT_MAX_KERNEL && p->kernel_w <= DIRECT_MAX_KERNEL && p->stride == 1 &&
           p->out_w % 16 == 0 && p->width == PANEL && p->out_c <= DIRECT_MAX_CHANNELS;
}

static pthread_once_t detect_once = PTHREAD_ONCE_INIT;
static int avx512_usable;
static long l2_bytes;

/* The CPU facts the convolutions adapt to: AVX-512 and the L2 size. */
static void detect_cpu(void)
{
    /* Where the C library cannot tell (0 or -1), the 2 MiB of the Xeon the
     * blocking was first tuned on; clamped against nonsense. */
    long l2 = sysconf(_SC_LEVEL2_CACHE_SIZE);
    l2_bytes = l2 <= 0             ? 2L << 20
               : l2 < (256L << 10) ? 256L << 10
               : l2 > (8L << 20)   ? 8L << 20
                                   : l2;
    const char *off = getenv("DIAT_CPU_NO_AVX512");
    if (off && *off && strcmp(off, "0") != 0) return;
    __builtin_cpu_init();
    avx512_usable = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                    __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl") &&
                    __builtin_cpu_supports("fma");
}

int diat_cpu_avx512_usable(void)
{
    pthread_once(&detect_once, detect_cpu);
    return avx512_usable;
}

long diat_cpu_l2_floats(void)
{
    pthread_once(&detect_once, detect_cpu);
    return l2_bytes / (long)sizeof(float);
}

void diat_cpu_conv_gemm_prepare(conv_gemm *p, int width)
{
    p->patch = p->in_c * p->kernel_h * p->kernel_w;
    p->in_plane = (long)p->in_h * p->in_w;
    p->out_plane = (long)p->out_h * p->out_w;
    p->columns = p->batch * p->out_plane;
    p->width = width ? width : p->columns <= 16 ? 16 : PANEL;
    /* gather offsets are 32-bit */
    p->gather = p->out_w < 16 && (long)p->batch * p->in_c * p->in_plane <= INT32_MAX;
}

void diat_cpu_conv_gemm_plan(const conv_gemm *p, int threads, conv_gemm_plan *plan)
{
    const long panel_floats = (long)p->patch * p->width;
    const long total_panels = (p->columns + p->width - 1) / p->width;
    const int blocks = (p->out_c + MR - 1) / MR;
    plan->direct = use_direct(p);
    plan->block_major = !plan->direct && panel_floats > BLOCK_MAJOR_FLOATS;
    threads = threads < 1 ? 1 : threads > MAX_THREADS ? MAX_THREADS : threads;
    double useful_threads = 2.0 * p->out_c * (double)p->columns * p->patch / MIN_FLOPS_PER_THREAD;
    if (threads > useful_threads) threads = useful_threads < 1.0 ? 1 : (int)useful_threads;
    /* Split the weight blocks where every thread packing all the panels
     * costs less than every thread reading all the weights (few columns:
     * 4x4 and 8x8 outputs at batch 1); else split the panels. */
    plan->split_blocks = !plan->direct && p->out_c >= p->columns && blocks >= threads;
    if (!plan->split_blocks && threads > total_panels) threads = (int)total_panels;
    plan->threads = threads;
    plan->chunk_panels = 0;
    plan->buffer_stride = 0;
    plan->scratch_floats = 0;
    if (!plan->direct) {
        long own_panels =
            plan->split_blocks ? total_panels : (total_panels + threads - 1) / threads;
        /* Packed panels per chunk: half of L2, so the chunk survives while
         * every weight block sweeps it (a whole 1 MiB L2, on an AMD EPYC,
         * ran D.conv2's forward 10% slower than half of it). */
        plan->chunk_panels = diat_cpu_l2_floats() / 2 / panel_floats;
        if (plan->chunk_panels < 1) plan->chunk_panels = 1;
        if (plan->chunk_panels > own_panels) plan->chunk_panels = own_panels;
        if (plan->block_major && plan->chunk_panels > BLOCK_MAJOR_PANELS)
            plan->chunk_panels = BLOCK_MAJOR_PANELS;
        /* a buffer per thread; +16 floats to align each to 64 bytes */
        plan->buffer_stride = (size_t)(plan->chunk_panels * panel_floats) + 16;
        plan->scratch_floats = plan->buffer_stride * threads;
    }
}

void diat_cpu_conv_gemm_run(const conv_gemm *p, const conv_gemm_plan *plan, float *scratch)
{
    const long total_panels = (p->columns + p->width - 1) / p->width;
    const int blocks = (p->out_c + MR - 1) / MR, threads = plan->threads;
    conv_job job = {.p = p,
                    .buffers = plan->direct ? NULL : scratch,
                    .buffer_stride = plan->buffer_stride,
                    .chunk_panels = plan->chunk_panels,
                    .block_major = plan->block_major};
    for (int t = 0; t < threads; t++) {
        gemm_share *share = &job.shares[t];
        share->panel0 = plan->split_blocks ? 0 : total_panels * t / threads;
        share->panel1 = plan->split_blocks ? total_panels : total_panels * (t + 1) / threads;
        share->block0 = plan->split_blocks ? blocks * t / threads : 0;
        share->block1 = plan->split_blocks ? blocks * (t + 1) / threads : blocks;
    }
    diat_worker_pool_run(threads, run_share, &job);
}

int diat_cpu_conv2d_forward_avx512(diat_context *ctx, const diat_tensor *x,
                                   const diat_tensor *weight, const diat_tensor *bias,
                                   diat_conv_geometry g, diat_activation act, float slope,
                                   diat_tensor *y)
{
    if (!diat_cpu_avx512_usable() || g.kernel > MAX_KERNEL) return 0;

    int fused = act == DIAT_ACT_IDENTITY || act == DIAT_ACT_RELU || act == DIAT_ACT_LEAKY_RELU;
    conv_gemm p = {
        .x = x->data,
        .batch = x->n,
        .in_c = x->c,
        .in_h = x->h,
        .in_w = x->w,
        .kernel_h = g.kernel,
        .kernel_w = g.kernel,
        .stride = g.stride,
        .pad_top = g.pad,
        .pad_left = g.pad,
        .out_h = y->h,
        .out_w = y->w,
        .weight = weight->data,
        .bias = bias ? bias->data : NULL,
        .out_c = weight->n,
        .y = y->data,
        .y_image = (long)y->c * y->h * y->w,
        .y_channel = (long)y->h * y->w,
        .y_row = y->w,
        .y_step = 1,
        .act = fused ? act : DIAT_ACT_IDENTITY,
        .slope = slope,
    };
    diat_cpu_conv_gemm_prepare(&p, 0);
    conv_gemm_plan plan;
    diat_cpu_conv_gemm_plan(&p, ctx->threads, &plan);
    float *scratch = NULL;
    if (plan.scratch_floats && !(scratch = diat_context_scratch(ctx, plan.scratch_floats)))
        return 0;
    diat_cpu_conv_gemm_run(&p, &plan, scratch);

    if (!fused)
        diat_cpu_activation_forward(ctx, act, slope, y->data, y->data, diat_tensor_count(y));
    return 1;
}

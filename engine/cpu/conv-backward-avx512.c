/* The convolution backward with AVX-512, on the implicit GEMM of
 * conv-avx512.c (see conv-avx512.h); conv.c asks first and keeps im2col +
 * OpenBLAS for whatever this declines.
 *
 * dx: the adjoint of a convolution is a convolution of dy, so dx goes
 * through the forward's driver with flipped, transposed weights and adds
 * its tiles into dx, with no column matrix and no col2im. For stride 2 the
 * dx pixels of one output phase (ih % 2, iw % 2) each see a fixed subset
 * of the taps (k4 s2: 2x2 of the 16): one stride-1 problem per phase over
 * dy, whose results land every second element of a dx row (y_step 2), so
 * no FMA is spent on the taps a phase does not see.
 *
 * dweight: dW^T[p][o] = sum_j B[p][j] dy[o][j] over all images' output
 * positions j, p = (c, ki, kj) as in the forward's B. The forward's packer
 * builds B 32 positions at a time as panel[p][32] (A of this GEMM, read by
 * broadcasts as the forward reads W), dy is transposed into [j][32 o]
 * panels, and a 12 x 32 tile sums over 256 positions in registers before
 * adding into a dW^T buffer, whose row blocks are transposed into dW as
 * they complete. The long inner dimension is what the per-image GEMMs of
 * conv.c lacked.
 *
 * Declined (conv.c's path is faster, measured): stride-2 dx whose phases
 * cannot run direct unless in_c >= 128, dweight of one or two output
 * channels or with fewer positions than output channels, strides above 2.
 *
 * Threads: dx as the forward splits its columns; dweight splits the
 * positions (one dW^T per thread, summed in thread order) or, with fewer
 * positions than output channels, the output channels. */
#include "conv-avx512.h"
#include "worker-pool.h"

#include <string.h>

enum {
    DW_CHUNK_PANELS = 8,          /* positions per dweight chunk: 8 x 32 */
    DW_MIN_CHANNELS = 3,          /* output channels for dweight here */
    DX_PACKED_MIN_CHANNELS = 128, /* in_c for stride-2 dx through packed phases */
    /* as conv-avx512.c: below this a worker costs more than it saves */
    DW_MIN_FLOPS_PER_THREAD = 4 * 1000 * 1000,
};

static float *align64(float *p)
{
    return (float *)(((uintptr_t)p + 63) & ~(uintptr_t)63);
}

/* ---- dx ------------------------------------------------------------------ */

typedef struct geometry {
    int batch, in_c, in_h, in_w, out_c, out_h, out_w, k, stride, pad;
} geometry;

/* The dx problem of phase (r, s) (0, 0 only for stride 1), its A at
 * `flipped` (filled by flip_weights). Returns 0 when no tap or no pixel is
 * in it. */
static int phase_problem(const geometry *g, const float *dy, float *dx, int r, int s,
                         float *flipped, conv_gemm *p)
{
    const int S = g->stride, k = g->k;
    /* dx row S*a + r sees taps ki = k0 + S*t (ki = r + pad mod S), through
     * dy row a + d - t: in the forward's terms a kernel of `taps` rows
     * with t flipped and a top padding of taps - 1 - d. */
    int taps[2], pad[2], extent[2];
    const int phase[2] = {r, s}, in_len[2] = {g->in_h, g->in_w};
    for (int axis = 0; axis < 2; axis++) {
        int k0 = (phase[axis] + g->pad) % S, d = (phase[axis] + g->pad - k0) / S;
        taps[axis] = k > k0 ? (k - k0 + S - 1) / S : 0;
        pad[axis] = taps[axis] - 1 - d;
        extent[axis] = in_len[axis] > phase[axis] ? (in_len[axis] - phase[axis] + S - 1) / S : 0;
        if (!taps[axis] || !extent[axis]) return 0;
    }
    const long plane = (long)g->in_h * g->in_w;
    *p = (conv_gemm){
        .x = dy,
        .batch = g->batch,
        .in_c = g->out_c,
        .in_h = g->out_h,
        .in_w = g->out_w,
        .kernel_h = taps[0],
        .kernel_w = taps[1],
        .stride = 1,
        .pad_top = pad[0],
        .pad_left = pad[1],
        .out_h = extent[0],
        .out_w = extent[1],
        .weight = flipped,
        .out_c = g->in_c,
        .y = dx + (long)r * g->in_w + s,
        .y_image = g->in_c * plane,
        .y_channel = plane,
        .y_row = (long)S * g->in_w,
        .y_step = S,
        .accumulate = 1,
        .act = DIAT_ACT_IDENTITY,
    };
    diat_cpu_conv_gemm_prepare(p, 0);
    return 1;
}

/* The A of every used phase: A[c][(o, t', u')] = W[o][c][ki][kj], (t', u')
 * the flipped position of tap (ki, kj) in its phase's kernel. A is written
 * in order; for kernels up to 4x4 the taps of one (o, c) are one load, one
 * permute into phase order and a masked store per phase (scalar, the flip
 * cost D.conv5 a fifth of its dx; now ~0.5 ms of its 4 MB weight). */
AVX512_TARGET static void flip_weights(const geometry *g, const float *weight,
                                       const conv_gemm *problems, const int *used)
{
    const int S = g->stride, k = g->k, taps = k * k;
    int source[MAX_KERNEL * MAX_KERNEL] = {0}, first[4] = {0}, count[4] = {0};
    /* slots grouped by phase, in each the flipped kernel's row-major order */
    for (int phase = 0, slot = 0; phase < S * S; phase++) {
        first[phase] = slot;
        if (!used[phase]) continue;
        const conv_gemm *p = &problems[phase];
        int r = phase / S, s = phase % S, k0 = (r + g->pad) % S, l0 = (s + g->pad) % S;
        for (int t = p->kernel_h - 1; t >= 0; t--)
            for (int u = p->kernel_w - 1; u >= 0; u--)
                source[slot++] = (k0 + S * t) * k + l0 + S * u;
        count[phase] = slot - first[phase];
    }
    const int vector = taps <= 16;
    int32_t lanes[16] = {0};
    for (int i = 0; i < 16 && vector; i++) lanes[i] = i < taps ? source[i] : 0;
    const __m512i order = _mm512_loadu_si512(lanes);
    for (int c = 0; c < g->in_c; c++)
        for (int o = 0; o < g->out_c; o++) {
            const float *w = weight + ((long)o * g->in_c + c) * taps;
            __m512 v =
                vector ? _mm512_permutexvar_ps(order, _mm512_maskz_loadu_ps(first_lanes(taps), w))
                       : _mm512_setzero_ps();
            for (int phase = 0; phase < S * S; phase++) {
                if (!count[phase]) continue;
                const conv_gemm *p = &problems[phase];
                float *dst = (float *)p->weight + (long)c * p->patch + (long)o * count[phase];
                if (!vector) {
                    for (int i = 0; i < count[phase]; i++) dst[i] = w[source[first[phase] + i]];
                    continue;
                }
                /* lanes [first, first + count) to dst[0..count) */
                __m512i shift = _mm512_add_epi32(
                    _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
                    _mm512_set1_epi32(first[phase]));
                _mm512_mask_storeu_ps(dst, first_lanes(count[phase]),
                                      _mm512_permutexvar_ps(shift, v));
            }
        }
}

/* dx += the transposed convolution of dy. Returns 0 without touching dx
 * if the scratch cannot be had. The phases run a few images at a time, so
 * that those images' dy is still in L2 when the next phase reads it. */
static int input_gradient(diat_context *ctx, const geometry *g, const float *weight,
                          const float *dy, float *dx)
{
    const int phases = g->stride * g->stride;
    const size_t flipped_floats = (size_t)g->out_c * g->in_c * g->k * g->k;
    const long dy_image = (long)g->out_c * g->out_h * g->out_w;
    const long dx_image = (long)g->in_c * g->in_h * g->in_w;
    /* dy per chunk of images: a quarter of L2, read by each of the four
     * phases */
    int images = (int)(diat_cpu_l2_floats() / 4 / dy_image);
    if (phases == 1 || images > g->batch) images = g->batch;
    if (images < 1) images = 1;
    geometry chunk = *g;
    chunk.batch = images;
    conv_gemm problems[4];
    conv_gemm_plan plans[4];
    int used[4] = {0, 0, 0, 0};
    size_t run_floats = 0;
    for (int i = 0; i < phases; i++) {
        used[i] = phase_problem(&chunk, dy, dx, i / g->stride, i % g->stride, NULL, &problems[i]);
        if (!used[i]) continue;
        diat_cpu_conv_gemm_plan(&problems[i], ctx->threads, &plans[i]);
        if (plans[i].scratch_floats > run_floats) run_floats = plans[i].scratch_floats;
        /* Packed stride-2 phases amortise their packing over in_c rows
         * only: measured slower than conv.c's im2col path for phi's stem
         * (3 channels: 37 against 12.5 ms), faster from D.conv4's 128
         * (9.4 against 12.0 ms on an AMD EPYC, equal on a Xeon). */
        if (phases > 1 && !plans[i].direct && g->in_c < DX_PACKED_MIN_CHANNELS) return 0;
    }
    float *scratch = diat_context_scratch(ctx, flipped_floats + run_floats + 16);
    if (!scratch) return 0;
    float *flipped = scratch, *run = align64(scratch + flipped_floats);
    for (int i = 0; i < phases; i++) {
        if (!used[i]) continue;
        problems[i].weight = flipped;
        flipped += (size_t)problems[i].out_c * problems[i].patch;
    }
    flip_weights(g, weight, problems, used);
    for (int n0 = 0; n0 < g->batch; n0 += images) {
        for (int i = 0; i < phases; i++) {
            if (!used[i]) continue;
            conv_gemm p = problems[i];
            p.x += n0 * dy_image;
            p.y += n0 * dx_image;
            if (g->batch - n0 < images) {
                /* the last chunk: fewer images, its own plan */
                p.batch = g->batch - n0;
                diat_cpu_conv_gemm_prepare(&p, 0);
                conv_gemm_plan plan;
                diat_cpu_conv_gemm_plan(&p, ctx->threads, &plan);
                diat_cpu_conv_gemm_run(&p, &plan, run);
            } else {
                diat_cpu_conv_gemm_run(&p, &plans[i], run);
            }
        }
    }
    return 1;
}

/* ---- dweight ------------------------------------------------------------- */

/* r[i] = row i of a 16 x 16 block in, column i of it out. */
AVX512_INLINE void transpose16(__m512 r[16])
{
    __m512 t[16];
    for (int g = 0; g < 4; g++) {
        t[4 * g] = _mm512_unpacklo_ps(r[4 * g], r[4 * g + 1]);
        t[4 * g + 1] = _mm512_unpackhi_ps(r[4 * g], r[4 * g + 1]);
        t[4 * g + 2] = _mm512_unpacklo_ps(r[4 * g + 2], r[4 * g + 3]);
        t[4 * g + 3] = _mm512_unpackhi_ps(r[4 * g + 2], r[4 * g + 3]);
    }
    /* r[4g + m], 128-bit lane L: rows 4g..4g+3 of column 4L + m */
    for (int g = 0; g < 4; g++) {
        r[4 * g] = _mm512_shuffle_ps(t[4 * g], t[4 * g + 2], 0x44);
        r[4 * g + 1] = _mm512_shuffle_ps(t[4 * g], t[4 * g + 2], 0xee);
        r[4 * g + 2] = _mm512_shuffle_ps(t[4 * g + 1], t[4 * g + 3], 0x44);
        r[4 * g + 3] = _mm512_shuffle_ps(t[4 * g + 1], t[4 * g + 3], 0xee);
    }
    for (int m = 0; m < 4; m++) {
        __m512 even01 = _mm512_shuffle_f32x4(r[m], r[4 + m], 0x88);
        __m512 odd01 = _mm512_shuffle_f32x4(r[m], r[4 + m], 0xdd);
        __m512 even23 = _mm512_shuffle_f32x4(r[8 + m], r[12 + m], 0x88);
        __m512 odd23 = _mm512_shuffle_f32x4(r[8 + m], r[12 + m], 0xdd);
        t[m] = _mm512_shuffle_f32x4(even01, even23, 0x88);
        t[8 + m] = _mm512_shuffle_f32x4(even01, even23, 0xdd);
        t[4 + m] = _mm512_shuffle_f32x4(odd01, odd23, 0x88);
        t[12 + m] = _mm512_shuffle_f32x4(odd01, odd23, 0xdd);
    }
    for (int i = 0; i < 16; i++) r[i] = t[i];
}

typedef struct weight_job {
    const conv_gemm *p; /* the forward's problem: x, geometry, its packer */
    const float *dy;
    int out_c, o_panels;
    long chunk_columns, chunks;
    /* thread t: chunks [chunk0[t], chunk1[t]) of the output-channel
     * panels [panel0[t], panel1[t]) */
    long chunk0[MAX_THREADS], chunk1[MAX_THREADS];
    int panel0[MAX_THREADS], panel1[MAX_THREADS];
    float *buffers; /* per thread, thread_floats apart */
    size_t thread_floats, a_floats, dyt_floats;
    float *dw; /* where each thread owns its dW rows: written as row blocks complete */
} weight_job;

/* dyt[q][j - j0][0..32) = dy[o = 32q ..][column j] for j in [j0, j0 +
 * count), zero past the last column and the last channel. */
AVX512_TARGET static void pack_dy_transposed(const weight_job *wj, int q0, int q1, long j0,
                                             long count, float *dyt)
{
    const conv_gemm *p = wj->p;
    const long plane = p->out_plane, o_first = 32L * q0, o_total = 32L * q1;
    for (long j = j0; j < j0 + count; j += 16) {
        float *dst = dyt + (j - j0) * PANEL;
        if (plane % 16 == 0 && j + 16 <= p->columns) {
            /* 16 positions of one image: 16 x 16 blocks, transposed */
            const float *src = wj->dy + j / plane * wj->out_c * plane + j % plane;
            for (long o0 = o_first; o0 < o_total; o0 += 16) {
                __m512 r[16];
                for (int i = 0; i < 16; i++)
                    r[i] = o0 + i < wj->out_c ? _mm512_loadu_ps(src + (o0 + i) * plane)
                                              : _mm512_setzero_ps();
                transpose16(r);
                float *out = dst + o0 / PANEL * count * PANEL + o0 % PANEL;
                for (int i = 0; i < 16; i++) _mm512_store_ps(out + i * PANEL, r[i]);
            }
            continue;
        }
        for (long i = 0; i < 16; i++)
            for (long o = o_first; o < o_total; o++) {
                long col = j + i;
                float v = 0.0f;
                if (col < p->columns && o < wj->out_c)
                    v = wj->dy[(col / plane * wj->out_c + o) * plane + col % plane];
                dst[o / PANEL * count * PANEL + i * PANEL + o % PANEL] = v;
            }
    }
}

/* out[r][0..16 * vectors) += sum over `panels` panels of
 * a[panel][r][k] * b[k][..]: a is the packed B of the forward (row p0),
 * b the transposed dy. rows and vectors are constants per instance. */
AVX512_INLINE void weight_tile(const float *a, long a_stride, int panels, const float *b,
                               float *out, long ldo, int accumulate, const int rows,
                               const int vectors)
{
    __m512 acc[MR][2];
    UNROLL_ROWS
    for (int r = 0; r < rows; r++) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
    for (int i = 0; i < panels; i++, a += a_stride) {
        for (int k = 0; k < PANEL; k++, b += PANEL) {
            __m512 b0 = _mm512_load_ps(b);
            __m512 b1 = vectors > 1 ? _mm512_load_ps(b + 16) : b0;
            UNROLL_ROWS
            for (int r = 0; r < rows; r++) {
                __m512 w = _mm512_set1_ps(a[r * PANEL + k]);
                acc[r][0] = _mm512_fmadd_ps(w, b0, acc[r][0]);
                if (vectors > 1) acc[r][1] = _mm512_fmadd_ps(w, b1, acc[r][1]);
            }
        }
    }
    UNROLL_ROWS
    for (int r = 0; r < rows; r++) {
        float *o = out + r * ldo;
        for (int v = 0; v < vectors; v++)
            _mm512_store_ps(o + 16 * v, accumulate
                                            ? _mm512_add_ps(_mm512_load_ps(o + 16 * v), acc[r][v])
                                            : acc[r][v]);
    }
}

typedef void (*weight_tile_fn)(const float *, long, int, const float *, float *, long, int);

#define DEFINE_WEIGHT_TILES(rows)                                                                  \
    AVX512_TARGET static void weight_tile_##rows##x16(const float *a, long s, int n,               \
                                                      const float *b, float *o, long ldo, int add) \
    {                                                                                              \
        weight_tile(a, s, n, b, o, ldo, add, rows, 1);                                             \
    }                                                                                              \
    AVX512_TARGET static void weight_tile_##rows##x32(const float *a, long s, int n,               \
                                                      const float *b, float *o, long ldo, int add) \
    {                                                                                              \
        weight_tile(a, s, n, b, o, ldo, add, rows, 2);                                             \
    }
DEFINE_WEIGHT_TILES(1)
DEFINE_WEIGHT_TILES(2)
DEFINE_WEIGHT_TILES(3)
DEFINE_WEIGHT_TILES(4)
DEFINE_WEIGHT_TILES(5)
DEFINE_WEIGHT_TILES(6)
DEFINE_WEIGHT_TILES(7)
DEFINE_WEIGHT_TILES(8)
DEFINE_WEIGHT_TILES(9)
DEFINE_WEIGHT_TILES(10)
DEFINE_WEIGHT_TILES(11)
DEFINE_WEIGHT_TILES(12)

/* [rows - 1][16 or 32 columns] */
static const weight_tile_fn weight_tiles[MR][2] = {
    {weight_tile_1x16, weight_tile_1x32},   {weight_tile_2x16, weight_tile_2x32},
    {weight_tile_3x16, weight_tile_3x32},   {weight_tile_4x16, weight_tile_4x32},
    {weight_tile_5x16, weight_tile_5x32},   {weight_tile_6x16, weight_tile_6x32},
    {weight_tile_7x16, weight_tile_7x32},   {weight_tile_8x16, weight_tile_8x32},
    {weight_tile_9x16, weight_tile_9x32},   {weight_tile_10x16, weight_tile_10x32},
    {weight_tile_11x16, weight_tile_11x32}, {weight_tile_12x16, weight_tile_12x32},
};

/* dW[o][p0 + i] += sum over the `count` buffers of dW^T[p0 + i][o] for
 * i < rows (<= 16) and o in [o_begin, out_c): 16 x 16 transposes. */
AVX512_TARGET static void add_transposed(float *const *dwt, int count, long ld, long p0, int rows,
                                         int o_begin, int out_c, long patch, float *dw)
{
    const __mmask16 m = first_lanes(rows);
    for (long o0 = o_begin; o0 < out_c; o0 += 16) {
        __m512 r[16];
        for (int i = 0; i < 16; i++) {
            r[i] = _mm512_setzero_ps();
            for (int t = 0; i < rows && t < count; t++)
                r[i] = _mm512_add_ps(r[i], _mm512_load_ps(dwt[t] + (p0 + i) * ld + o0));
        }
        transpose16(r);
        for (int i = 0; i < 16 && o0 + i < out_c; i++) {
            float *row = dw + (o0 + i) * patch + p0;
            _mm512_mask_storeu_ps(row, m, _mm512_add_ps(r[i], _mm512_maskz_loadu_ps(m, row)));
        }
    }
}

/* The dW^T buffer of thread t. */
static float *weight_partial(const weight_job *wj, int t)
{
    float *a = align64(wj->buffers + wj->thread_floats * t);
    return align64(align64(a + wj->a_floats) + wj->dyt_floats);
}

/* Thread `thread` of a weight_job: its chunks into its own dW^T. */
static void run_weight_share(void *arg, int thread)
{
    const weight_job *wj = arg;
    const conv_gemm *p = wj->p;
    const long patch = p->patch, ld = 32L * wj->o_panels, a_stride = patch * PANEL;
    float *a = align64(wj->buffers + wj->thread_floats * thread);
    float *dyt = align64(a + wj->a_floats), *dwt = weight_partial(wj, thread);
    const int last_vectors = wj->out_c - 32 * (wj->o_panels - 1) > 16 ? 2 : 1;
    const long chunk0 = wj->chunk0[thread], chunk1 = wj->chunk1[thread];
    const int q0 = wj->panel0[thread], q1 = wj->panel1[thread];
    const int o1 = 32 * q1 < wj->out_c ? 32 * q1 : wj->out_c;

    for (long chunk = chunk0; chunk < chunk1; chunk++) {
        long j0 = chunk * wj->chunk_columns;
        long count = p->columns - j0 < wj->chunk_columns ? p->columns - j0 : wj->chunk_columns;
        int panels = (int)((count + PANEL - 1) / PANEL);
        count = (long)panels * PANEL;
        for (int i = 0; i < panels; i++)
            diat_cpu_conv_pack_panel(p, j0 + i * PANEL, a + i * a_stride);
        pack_dy_transposed(wj, q0, q1, j0, count, dyt);
        /* Row-block-major: a block of A (12 rows x count, L1) meets every
         * panel of dy^T (L2). */
        for (long p0 = 0; p0 < patch; p0 += MR) {
            int rows = patch - p0 < MR ? (int)(patch - p0) : MR;
            for (int q = q0; q < q1; q++) {
                int vectors = q == wj->o_panels - 1 ? last_vectors : 2;
                weight_tiles[rows - 1][vectors - 1](a + p0 * PANEL, a_stride, panels,
                                                    dyt + q * count * PANEL,
                                                    dwt + p0 * ld + q * PANEL, ld, chunk > chunk0);
            }
            /* the block's last sums, still in L1: into dW now rather than
             * in a pass of its own over a dW^T of up to 4 MB (D.conv5) */
            if (wj->dw && chunk == chunk1 - 1)
                add_transposed(&dwt, 1, ld, p0, rows, 32 * q0, o1, patch, wj->dw);
        }
    }
}

/* dw += the weight gradient. Returns 0 without touching dw if the scratch
 * cannot be had. */
static int weight_gradient(diat_context *ctx, const geometry *g, const float *x, const float *dy,
                           float *dw)
{
    /* One or two output channels would use 1/16 or 1/8 of each tile: the
     * im2col path is faster there (M.conv5: 0.9 against 1.7 ms). */
    if (g->out_c < DW_MIN_CHANNELS) return 0;
    conv_gemm p = {
        .x = x,
        .batch = g->batch,
        .in_c = g->in_c,
        .in_h = g->in_h,
        .in_w = g->in_w,
        .kernel_h = g->k,
        .kernel_w = g->k,
        .stride = g->stride,
        .pad_top = g->pad,
        .pad_left = g->pad,
        .out_h = g->out_h,
        .out_w = g->out_w,
        .out_c = g->out_c,
    };
    diat_cpu_conv_gemm_prepare(&p, PANEL);
    /* Fewer positions than output channels (T.up1: 256 and 768): dW^T and
     * dW outweigh the sums, and OpenBLAS writing dW in its own blocking was
     * measured 10% faster. */
    if (p.columns < g->out_c) return 0;
    weight_job wj = {.p = &p, .dy = dy, .out_c = g->out_c, .o_panels = (g->out_c + 31) / 32};
    int threads = ctx->threads < 1 ? 1 : ctx->threads > MAX_THREADS ? MAX_THREADS : ctx->threads;
    double useful = 2.0 * g->out_c * (double)p.columns * p.patch / DW_MIN_FLOPS_PER_THREAD;
    if (threads > useful) threads = useful < 1.0 ? 1 : (int)useful;
    /* Threads split the positions (a dW^T each, summed at the end) or,
     * where there are fewer positions than output channels (T.up1: 256 and
     * 768, D.conv5), the output-channel panels: each packs A itself but
     * owns its rows of dW, instead of zeroing and summing a 5 MB dW^T each. */
    long panels = (p.columns + PANEL - 1) / PANEL;
    const int split_channels =
        threads > 1 && wj.o_panels >= threads && p.columns <= 32L * wj.o_panels;
    long per_chunk = split_channels ? panels : (panels + threads - 1) / threads;
    if (per_chunk > DW_CHUNK_PANELS) per_chunk = DW_CHUNK_PANELS;
    wj.chunk_columns = per_chunk * PANEL;
    wj.chunks = (panels + per_chunk - 1) / per_chunk;
    if (!split_channels && threads > wj.chunks) threads = (int)wj.chunks;
    for (int t = 0; t < threads; t++) {
        wj.chunk0[t] = split_channels ? 0 : wj.chunks * t / threads;
        wj.chunk1[t] = split_channels ? wj.chunks : wj.chunks * (t + 1) / threads;
        wj.panel0[t] = split_channels ? wj.o_panels * t / threads : 0;
        wj.panel1[t] = split_channels ? wj.o_panels * (t + 1) / threads : wj.o_panels;
    }

    wj.a_floats = (size_t)per_chunk * p.patch * PANEL;
    wj.dyt_floats = (size_t)wj.chunk_columns * 32 * wj.o_panels;
    wj.thread_floats = wj.a_floats + wj.dyt_floats + (size_t)p.patch * 32 * wj.o_panels + 48;
    if (!(wj.buffers = diat_context_scratch(ctx, wj.thread_floats * threads))) return 0;
    const int owned = threads == 1 || split_channels;
    wj.dw = owned ? dw : NULL;
    diat_worker_pool_run(threads, run_weight_share, &wj);
    if (!owned) {
        float *partials[MAX_THREADS];
        for (int t = 0; t < threads; t++) partials[t] = weight_partial(&wj, t);
        for (long p0 = 0; p0 < p.patch; p0 += 16)
            add_transposed(partials, threads, 32L * wj.o_panels, p0,
                           p.patch - p0 < 16 ? (int)(p.patch - p0) : 16, 0, g->out_c, p.patch, dw);
    }
    return 1;
}

/* ---- entry --------------------------------------------------------------- */

AVX512_TARGET static void bias_gradient(const float *dy, int batch, int out_c, long plane,
                                        float *dbias)
{
    for (int o = 0; o < out_c; o++) {
        __m512 sum[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(),
                         _mm512_setzero_ps()};
        for (int n = 0; n < batch; n++) {
            const float *row = dy + ((long)n * out_c + o) * plane;
            long i = 0;
            for (; i + 64 <= plane; i += 64)
                for (int v = 0; v < 4; v++)
                    sum[v] = _mm512_add_ps(sum[v], _mm512_loadu_ps(row + i + 16 * v));
            for (; i < plane; i += 16) {
                __mmask16 m = first_lanes((int)(plane - i < 16 ? plane - i : 16));
                sum[0] = _mm512_add_ps(sum[0], _mm512_maskz_loadu_ps(m, row + i));
            }
        }
        __m512 total = _mm512_add_ps(_mm512_add_ps(sum[0], sum[1]), _mm512_add_ps(sum[2], sum[3]));
        dbias[o] += _mm512_reduce_add_ps(total);
    }
}

void diat_cpu_conv2d_backward_avx512(diat_context *ctx, const diat_tensor *x,
                                     const diat_tensor *weight, const diat_tensor *dy,
                                     diat_conv_geometry g, diat_tensor **dx, diat_tensor **dweight,
                                     diat_tensor **dbias)
{
    if (!diat_cpu_avx512_usable() || g.kernel > MAX_KERNEL || g.stride > 2) return;
    const geometry s = {x->n, x->c, x->h, x->w, dy->c, dy->h, dy->w, g.kernel, g.stride, g.pad};
    if (*dbias) {
        bias_gradient(dy->data, s.batch, s.out_c, (long)s.out_h * s.out_w, (*dbias)->data);
        *dbias = NULL;
    }
    if (*dweight && weight_gradient(ctx, &s, x->data, dy->data, (*dweight)->data)) *dweight = NULL;
    if (*dx && input_gradient(ctx, &s, weight->data, dy->data, (*dx)->data)) *dx = NULL;
}

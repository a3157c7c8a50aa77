/* The fused im2col of the AVX-512 convolutions (see conv-avx512.h): packs
 * `width` columns of B into panel[k][width], k = (c, ki, kj), a panel at a
 * time, for the forward's and dx's tiles and as the dweight GEMM's A.
 *
 * Grid rows of 16 or more columns are copied as runs (stride 2 via a
 * permute); narrower ones (4x4, 8x8 grids) are gathered, one gather per
 * channel, with offsets worked out once per tap. */
#include "conv-avx512.h"

#include <string.h>

/* The row packers shift by up to 7 lanes (shift_down): with stride 2 the
 * 96 input columns held cover 2 * 32 outputs + 2 * 7, with stride 1 the 48
 * cover 32 + 7. */
enum { ROW_MAX_KERNEL = 8 };

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

/* v shifted down by `lanes` (0..7) lanes, the top filled from next. */
AVX512_INLINE __m512 shift_down(__m512 v, __m512 next, int lanes)
{
    __m512i a = _mm512_castps_si512(v), b = _mm512_castps_si512(next);
    switch (lanes) {
    case 0: return v;
    case 1: return _mm512_castsi512_ps(_mm512_alignr_epi32(b, a, 1));
    case 2: return _mm512_castsi512_ps(_mm512_alignr_epi32(b, a, 2));
    case 3: return _mm512_castsi512_ps(_mm512_alignr_epi32(b, a, 3));
    case 4: return _mm512_castsi512_ps(_mm512_alignr_epi32(b, a, 4));
    case 5: return _mm512_castsi512_ps(_mm512_alignr_epi32(b, a, 5));
    case 6: return _mm512_castsi512_ps(_mm512_alignr_epi32(b, a, 6));
    default: return _mm512_castsi512_ps(_mm512_alignr_epi32(b, a, 7));
    }
}

/* Which lanes of the 16-column windows [first + 16v, first + 16v + 16) of
 * an input row lie in [0, in_w): the same for every channel and kernel row
 * of a run, so worked out once per run. */
typedef struct row_windows {
    long first; /* input column of lane 0 of window 0 (may be negative) */
    __mmask16 lanes[6];
} row_windows;

static void row_windows_of(int first, int in_w, int count, row_windows *r)
{
    r->first = first;
    for (int v = 0; v < count; v++) {
        int lo = -first - 16 * v, hi = in_w - first - 16 * v;
        lo = lo < 0 ? 0 : lo > 16 ? 16 : lo;
        hi = hi < 0 ? 0 : hi > 16 ? 16 : hi;
        r->lanes[v] = (__mmask16)(((1u << hi) - 1u) & ~((1u << lo) - 1u));
    }
}

/* Window v of `row` (zero outside the image; row + first may point before
 * it: only the lanes inside are read). */
AVX512_INLINE __m512 load_window(const float *row, const row_windows *r, int v)
{
    uintptr_t at = (uintptr_t)row + (uintptr_t)((r->first + 16 * v) * (long)sizeof(float));
    return _mm512_maskz_loadu_ps(r->lanes[v], (const void *)at);
}

/* Stride 1, kernel width up to ROW_MAX_KERNEL: tap kj's len (<= 32)
 * outputs are input columns first + kj + i, so the row is loaded once and
 * each tap's run is a lane shift of it (per-tap range checks made packing
 * 44% of phi.conv32's forward, whose 35-wide rows split every panel). */
AVX512_INLINE void pack_row_stride1(const float *row, const row_windows *r, int kw, int len,
                                    float *dst, int w)
{
    const __m512 window[3] = {load_window(row, r, 0), load_window(row, r, 1),
                              load_window(row, r, 2)};
    const __mmask16 low = first_lanes(len), high = first_lanes(len - 16);
    for (int kj = 0; kj < kw; kj++, dst += w) {
        _mm512_mask_storeu_ps(dst, low, shift_down(window[0], window[1], kj));
        if (len > 16) _mm512_mask_storeu_ps(dst + 16, high, shift_down(window[1], window[2], kj));
    }
}

/* Stride 2, kernel width up to ROW_MAX_KERNEL: the len (<= 32) outputs
 * of tap kj read input columns first + 2 * i + kj, that is the even or odd
 * columns from first + (kj & ~1) on. The input row is loaded once (zero
 * outside [0, in_w)), split into its even and odd columns, and every tap's
 * run is a lane shift of one of them: a few instructions per run instead
 * of a masked two-load permute and range checks per 16 outputs. */
AVX512_INLINE void pack_row_stride2(const float *row, const row_windows *r, int kw, int len,
                                    float *dst, int w)
{
    const __m512i even =
        _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
    const __m512i odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
    __m512 split[2][3];
    for (int v = 0; v < 3; v++) {
        __m512 low = load_window(row, r, 2 * v), high = load_window(row, r, 2 * v + 1);
        split[0][v] = _mm512_permutex2var_ps(low, even, high);
        split[1][v] = _mm512_permutex2var_ps(low, odd, high);
    }
    const __mmask16 low = first_lanes(len), high = first_lanes(len - 16);
    for (int kj = 0; kj < kw; kj++, dst += w) {
        const __m512 *s = split[kj & 1];
        int shift = kj >> 1;
        _mm512_mask_storeu_ps(dst, low, shift_down(s[0], s[1], shift));
        if (len > 16) _mm512_mask_storeu_ps(dst + 16, high, shift_down(s[1], s[2], shift));
    }
}

/* The panel columns [col, col + len) = grid row a of image n from column b on. */
AVX512_TARGET static void pack_segment(const conv_gemm *p, int n, int a, int b, int len,
                                       float *panel, int col)
{
    const int kh = p->kernel_h, kw = p->kernel_w, w = p->width;
    /* Which columns of the run see the image through tap kj is the same for
     * every channel and kernel row: work it out once. */
    int lo[MAX_KERNEL], hi[MAX_KERNEL], full = 1;
    for (int kj = 0; kj < kw; kj++) {
        conv_valid_outputs(b * p->stride - p->pad_left + kj, p->stride, p->in_w, len, &lo[kj],
                           &hi[kj]);
        full &= lo[kj] == 0 && hi[kj] == len;
    }
    const int by_rows = p->stride <= 2 && kw <= ROW_MAX_KERNEL;
    row_windows windows = {0};
    if (by_rows) row_windows_of(b * p->stride - p->pad_left, p->in_w, 3 * p->stride, &windows);
    for (int c = 0; c < p->in_c; c++) {
        const float *channel = p->x + ((long)n * p->in_c + c) * p->in_plane;
        for (int ki = 0; ki < kh; ki++) {
            float *dst = panel + (long)(c * kh + ki) * kw * w + col;
            int ih = a * p->stride - p->pad_top + ki;
            if (ih < 0 || ih >= p->in_h) {
                for (int kj = 0; kj < kw; kj++) zero_run(dst + kj * w, len);
                continue;
            }
            if (by_rows) {
                const float *in = channel + (long)ih * p->in_w;
                if (p->stride == 1)
                    pack_row_stride1(in, &windows, kw, len, dst, w);
                else
                    pack_row_stride2(in, &windows, kw, len, dst, w);
                continue;
            }
            /* Only ever offset by kj + lo * stride >= 0 below: the row start
             * itself may lie before the image. */
            const long row = (long)ih * p->in_w + (long)b * p->stride - p->pad_left;
            if (full) {
                for (int kj = 0; kj < kw; kj++)
                    gather_run(dst + kj * w, channel + row + kj, len, p->stride);
                continue;
            }
            for (int kj = 0; kj < kw; kj++, dst += w) {
                if (lo[kj] > 0 || hi[kj] < len) zero_run(dst, len);
                if (hi[kj] > lo[kj])
                    gather_run(dst + lo[kj], channel + row + kj + (long)lo[kj] * p->stride,
                               hi[kj] - lo[kj], p->stride);
            }
        }
    }
}

/* Packing for narrow grids (out_w < 16), where row runs are too short for
 * contiguous loads: for a given tap (ki, kj) the input offsets of the
 * panel's columns are the same for every channel, one channel plane apart,
 * so they are worked out once and each panel row is one or two gathers. */
AVX512_TARGET static void pack_panel_gathered(const conv_gemm *p, long j0, float *panel)
{
    const int kh = p->kernel_h, kw = p->kernel_w, taps = kh * kw, vectors = p->width / 16;
    int top[PANEL], left[PANEL];
    long image[PANEL];
    for (int i = 0; i < p->width; i++) {
        long j = j0 + i, pos = j % p->out_plane;
        top[i] = (int)(pos / p->out_w) * p->stride - p->pad_top;
        left[i] = (int)(pos % p->out_w) * p->stride - p->pad_left;
        image[i] = j < p->columns ? j / p->out_plane * p->in_c * p->in_plane : -1;
    }
    for (int ki = 0; ki < kh; ki++) {
        for (int kj = 0; kj < kw; kj++) {
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
            float *dst = panel + (long)(ki * kw + kj) * p->width;
            const float *channel = p->x;
            for (int c = 0; c < p->in_c; c++, dst += (long)taps * p->width, channel += p->in_plane)
                for (int v = 0; v < vectors; v++)
                    _mm512_store_ps(dst + 16 * v,
                                    _mm512_mask_i32gather_ps(_mm512_setzero_ps(), valid[v],
                                                             offsets[v], channel, 4));
        }
    }
}

AVX512_TARGET void diat_cpu_conv_pack_panel(const conv_gemm *p, long j0, float *panel)
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
        int a = (int)(pos / p->out_w), b = (int)(pos % p->out_w);
        int len = p->out_w - b < end - j ? p->out_w - b : (int)(end - j);
        pack_segment(p, n, a, b, len, panel, (int)(j - j0));
        j += len;
    }
}

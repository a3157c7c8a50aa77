/* 2-D convolution on the CPU: im2col + GEMM (OpenBLAS through diat_sgemm).
 *
 * Layout: x [n, in, h, w], weight [out, in, k, k] which, read row-major, is
 * already the [out, in*k*k] matrix the GEMM wants; y [n, out, oh, ow].
 *
 * For each image the "column" matrix col [in*k*k, oh*ow] holds, in row
 * (c, ki, kj), the input pixel each output position sees through that tap,
 * so y = W * col. The columns are built a band of output rows at a time so
 * that the band stays in L2 between being written and being packed by the
 * GEMM (building the whole matrix for a 64x64 image would stream ~7 MB
 * through memory twice). A 1x1, stride-1, unpadded convolution needs no
 * column matrix at all: the image itself is [in, h*w].
 *
 * On CPUs with AVX-512 both directions first go to the implicit GEMMs of
 * conv-avx512.c and conv-backward-avx512.c; what follows is the path for
 * the rest (and whatever those decline).
 *
 * Backward reuses the same band loop: dweight += dy_band * col_band^T,
 * and dx via dcol_band = W^T * dy_band scattered back (col2im, +=). Only
 * one scratch buffer exists per context, and the two uses are sequential,
 * so one band buffer serves both. Small outputs instead put several images'
 * columns side by side in one GEMM (backward_folded).
 */
#include "ops-cpu.h"

#include <string.h>

typedef struct conv_shape {
    int in_c, in_h, in_w;
    int out_c, out_h, out_w;
    int k, stride, pad;
    int patch;        /* in_c * k * k: rows of the column matrix */
    size_t in_plane;  /* in_h * in_w */
    size_t out_plane; /* out_h * out_w */
} conv_shape;

/* Column-matrix floats per band. Forward: 1 MiB, half the L2 of the cores
 * this was tuned on, so im2col output is still cached when the GEMM packs
 * it. Backward: 4 MiB, because the dweight GEMM's inner dimension is the
 * band length and every band re-reads and re-writes dweight. Either way a
 * band has at least MIN_BAND_COLUMNS output positions: narrower GEMMs lose
 * more to edge effects than the cache saves (measured: 768x144x1728 ran at
 * 170 GFLOP/s, 768x256x1728 at 183). */
enum {
    FORWARD_BAND_FLOATS = 256 * 1024,
    BACKWARD_BAND_FLOATS = 1024 * 1024,
    MIN_BAND_COLUMNS = 256,
};

/* Backward for outputs under FOLD_COLUMNS positions folds the batch: a
 * chunk of images is one GEMM whose columns are all their output positions
 * side by side, up to FOLD_COLUMNS of them. One image of a 4x4 output gives
 * the dweight GEMM an inner dimension of 16 and the dx GEMM 16 columns,
 * where OpenBLAS spends more on packing and edges than on arithmetic
 * (measured, batch 16, 1 thread: the critic's 8x8 -> 4x4 layer went from
 * 11.4 to 8.0 ms for dx + dweight, phi's 4x4 one from 6.2 to 5.0). A
 * chunk's column matrix stays within FOLD_COL_FLOATS (1 MiB, as the
 * forward's bands) so that it is still cached when the GEMM packs it and
 * col2im reads it back: chunks of 16 images with 4.7 MB of columns made
 * phi's 8x8 layer 10% slower than one image at a time. Shapes where two
 * images do not fit keep the per-image band loop, as do wide outputs. */
enum {
    FOLD_COLUMNS = 4096,
    FOLD_COL_FLOATS = 256 * 1024,
};

static conv_shape conv_shape_of(const diat_tensor *x, const diat_tensor *weight,
                                const diat_tensor *y, diat_conv_geometry g)
{
    conv_shape s;
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
    s.in_plane = (size_t)s.in_h * s.in_w;
    s.out_plane = (size_t)s.out_h * s.out_w;
    return s;
}

static int is_pointwise(const conv_shape *s)
{
    return s->k == 1 && s->stride == 1 && s->pad == 0;
}

/* Output positions o in [0, out_len) whose input index o*stride + offset
 * lies inside [0, in_len): [*lo, *hi). Everything else reads padding. */
static void valid_range(int offset, int stride, int in_len, int out_len, int *lo, int *hi)
{
    int first = offset >= 0 ? 0 : (-offset + stride - 1) / stride;
    int end = in_len - offset <= 0 ? 0 : (in_len - offset + stride - 1) / stride;
    if (end > out_len) end = out_len;
    if (first > end) first = end;
    *lo = first;
    *hi = end;
}

/* Band of output rows [row0, row1): col[patch][(row1-row0)*out_w], each
 * row of col `ld` floats after the previous one (ld > the band length when
 * several images' columns sit side by side). */
static void im2col_band(const conv_shape *s, const float *image, int row0, int row1, float *col,
                        size_t ld)
{
    for (int c = 0; c < s->in_c; c++) {
        const float *channel = image + (size_t)c * s->in_plane;
        for (int ki = 0; ki < s->k; ki++) {
            for (int kj = 0; kj < s->k; kj++) {
                float *dst = col + ((size_t)(c * s->k + ki) * s->k + kj) * ld;
                int lo, hi;
                valid_range(kj - s->pad, s->stride, s->in_w, s->out_w, &lo, &hi);
                for (int oh = row0; oh < row1; oh++, dst += s->out_w) {
                    int ih = oh * s->stride - s->pad + ki;
                    if (ih < 0 || ih >= s->in_h) {
                        memset(dst, 0, (size_t)s->out_w * sizeof *dst);
                        continue;
                    }
                    const float *src = channel + (size_t)ih * s->in_w + kj - s->pad;
                    for (int ow = 0; ow < lo; ow++) dst[ow] = 0.0f;
                    if (s->stride == 1)
                        memcpy(dst + lo, src + lo, (size_t)(hi - lo) * sizeof *dst);
                    else
                        for (int ow = lo; ow < hi; ow++) dst[ow] = src[(size_t)ow * s->stride];
                    for (int ow = hi; ow < s->out_w; ow++) dst[ow] = 0.0f;
                }
            }
        }
    }
}

/* The adjoint of im2col_band: image += scatter(col). */
static void col2im_band(const conv_shape *s, const float *col, int row0, int row1, float *image,
                        size_t ld)
{
    for (int c = 0; c < s->in_c; c++) {
        float *channel = image + (size_t)c * s->in_plane;
        for (int ki = 0; ki < s->k; ki++) {
            for (int kj = 0; kj < s->k; kj++) {
                const float *src = col + ((size_t)(c * s->k + ki) * s->k + kj) * ld;
                int lo, hi;
                valid_range(kj - s->pad, s->stride, s->in_w, s->out_w, &lo, &hi);
                for (int oh = row0; oh < row1; oh++, src += s->out_w) {
                    int ih = oh * s->stride - s->pad + ki;
                    if (ih < 0 || ih >= s->in_h) continue;
                    float *dst = channel + (size_t)ih * s->in_w + kj - s->pad;
                    if (s->stride == 1)
                        for (int ow = lo; ow < hi; ow++) dst[ow] += src[ow];
                    else
                        for (int ow = lo; ow < hi; ow++) dst[(size_t)ow * s->stride] += src[ow];
                }
            }
        }
    }
}

/* Rows of output per band for a budget of `band_floats` column floats. */
static int band_rows(const conv_shape *s, size_t band_floats)
{
    size_t per_row = (size_t)s->patch * s->out_w;
    size_t rows = band_floats / per_row;
    size_t min_rows = (MIN_BAND_COLUMNS + (size_t)s->out_w - 1) / (size_t)s->out_w;
    if (rows < min_rows) rows = min_rows;
    if (rows > (size_t)s->out_h) rows = (size_t)s->out_h;
    return (int)rows;
}

/* Scratch for bands of `*rows` output rows, shrinking to one row if the
 * preferred size cannot be had. NULL only if even one row does not fit. */
static float *band_scratch(diat_context *ctx, const conv_shape *s, int *rows)
{
    float *col = diat_context_scratch(ctx, (size_t)*rows * s->out_w * s->patch);
    if (!col && *rows > 1) {
        *rows = 1;
        col = diat_context_scratch(ctx, (size_t)s->out_w * s->patch);
    }
    return col;
}

/* Direct loops: used only when not even one band of scratch could be
 * allocated, because the op has no way to report the failure. */
static void direct_forward(const conv_shape *s, const float *x, const float *w, float *y)
{
    for (int o = 0; o < s->out_c; o++)
        for (int oh = 0; oh < s->out_h; oh++)
            for (int ow = 0; ow < s->out_w; ow++) {
                float sum = 0.0f;
                for (int c = 0; c < s->in_c; c++)
                    for (int ki = 0; ki < s->k; ki++) {
                        int ih = oh * s->stride - s->pad + ki;
                        if (ih < 0 || ih >= s->in_h) continue;
                        for (int kj = 0; kj < s->k; kj++) {
                            int iw = ow * s->stride - s->pad + kj;
                            if (iw < 0 || iw >= s->in_w) continue;
                            sum += w[((size_t)(o * s->in_c + c) * s->k + ki) * s->k + kj] *
                                   x[c * s->in_plane + (size_t)ih * s->in_w + iw];
                        }
                    }
                y[o * s->out_plane + (size_t)oh * s->out_w + ow] += sum;
            }
}

static void direct_backward(const conv_shape *s, const float *x, const float *w, const float *dy,
                            float *dx, float *dw)
{
    for (int o = 0; o < s->out_c; o++)
        for (int oh = 0; oh < s->out_h; oh++)
            for (int ow = 0; ow < s->out_w; ow++) {
                float g = dy[o * s->out_plane + (size_t)oh * s->out_w + ow];
                for (int c = 0; c < s->in_c; c++)
                    for (int ki = 0; ki < s->k; ki++) {
                        int ih = oh * s->stride - s->pad + ki;
                        if (ih < 0 || ih >= s->in_h) continue;
                        for (int kj = 0; kj < s->k; kj++) {
                            int iw = ow * s->stride - s->pad + kj;
                            if (iw < 0 || iw >= s->in_w) continue;
                            size_t wi = ((size_t)(o * s->in_c + c) * s->k + ki) * s->k + kj;
                            size_t xi = c * s->in_plane + (size_t)ih * s->in_w + iw;
                            if (dw) dw[wi] += g * x[xi];
                            if (dx) dx[xi] += g * w[wi];
                        }
                    }
            }
}

void diat_cpu_conv2d_forward(diat_context *ctx, const diat_tensor *x, const diat_tensor *weight,
                             const diat_tensor *bias, diat_conv_geometry g, diat_activation act,
                             float slope, diat_tensor *y)
{
    if (diat_cpu_conv2d_forward_avx512(ctx, x, weight, bias, g, act, slope, y)) return;

    const conv_shape s = conv_shape_of(x, weight, y, g);
    const int pointwise = is_pointwise(&s);
    int rows = band_rows(&s, FORWARD_BAND_FLOATS);
    float *col = pointwise ? NULL : band_scratch(ctx, &s, &rows);

    for (int n = 0; n < x->n; n++) {
        const float *image = x->data + (size_t)n * s.in_c * s.in_plane;
        float *out = y->data + (size_t)n * s.out_c * s.out_plane;

        /* Start from the bias (or zero) and let every GEMM accumulate. */
        for (int o = 0; o < s.out_c; o++) {
            float b = bias ? bias->data[o] : 0.0f;
            float *row = out + (size_t)o * s.out_plane;
            for (size_t i = 0; i < s.out_plane; i++) row[i] = b;
        }

        if (pointwise) {
            diat_sgemm(0, 0, s.out_c, (int)s.out_plane, s.in_c, 1.0f, weight->data, s.in_c, image,
                       (int)s.in_plane, 1.0f, out, (int)s.out_plane);
        } else if (!col) {
            direct_forward(&s, image, weight->data, out);
        } else {
            for (int row0 = 0; row0 < s.out_h; row0 += rows) {
                int row1 = row0 + rows < s.out_h ? row0 + rows : s.out_h;
                int band_len = (row1 - row0) * s.out_w;
                im2col_band(&s, image, row0, row1, col, (size_t)band_len);
                diat_sgemm(0, 0, s.out_c, band_len, s.patch, 1.0f, weight->data, s.patch, col,
                           band_len, 1.0f, out + (size_t)row0 * s.out_w, (int)s.out_plane);
            }
        }
    }
    if (act != DIAT_ACT_IDENTITY)
        diat_cpu_activation_forward(ctx, act, slope, y->data, y->data, diat_tensor_count(y));
}

/* Images per folded chunk, or 0 when the band loop should run instead. */
static int fold_images(const conv_shape *s, int batch)
{
    if (s->out_plane >= FOLD_COLUMNS || batch < 2) return 0;
    size_t images = FOLD_COLUMNS / s->out_plane;
    size_t fit = FOLD_COL_FLOATS / ((size_t)s->patch * s->out_plane);
    if (images > fit) images = fit;
    if (images > (size_t)batch) images = (size_t)batch;
    return images < 2 ? 0 : (int)images;
}

/* dweight and dx for `batch` images, `chunk` at a time. Scratch: col
 * [patch][cols] then dyc [out_c][cols], cols = images * out_plane, image i's
 * positions at columns [i * out_plane, (i + 1) * out_plane). dy is NCHW, so
 * each chunk's gradient is first gathered into that [o][image, position]
 * order; the column buffer then serves im2col for dweight and, after that
 * GEMM has consumed it, the column gradient for dx. */
static void backward_folded(const conv_shape *s, int batch, int chunk, const float *x,
                            const float *w, const float *dy, float *dx, float *dw, float *scratch)
{
    const size_t plane = s->out_plane;
    float *col = scratch;
    float *dyc = scratch + (size_t)s->patch * chunk * plane;
    for (int n0 = 0; n0 < batch; n0 += chunk) {
        const int images = batch - n0 < chunk ? batch - n0 : chunk;
        const size_t cols = (size_t)images * plane;
        for (int o = 0; o < s->out_c; o++)
            for (int i = 0; i < images; i++)
                memcpy(dyc + o * cols + i * plane, dy + ((size_t)(n0 + i) * s->out_c + o) * plane,
                       plane * sizeof *dyc);
        if (dw) {
            for (int i = 0; i < images; i++)
                im2col_band(s, x + (size_t)(n0 + i) * s->in_c * s->in_plane, 0, s->out_h,
                            col + i * plane, cols);
            diat_sgemm(0, 1, s->out_c, s->patch, (int)cols, 1.0f, dyc, (int)cols, col, (int)cols,
                       1.0f, dw, s->patch);
        }
        if (dx) {
            diat_sgemm(1, 0, s->patch, (int)cols, s->out_c, 1.0f, w, s->patch, dyc, (int)cols, 0.0f,
                       col, (int)cols);
            for (int i = 0; i < images; i++)
                col2im_band(s, col + i * plane, 0, s->out_h,
                            dx + (size_t)(n0 + i) * s->in_c * s->in_plane, cols);
        }
    }
}

void diat_cpu_conv2d_backward(diat_context *ctx, const diat_tensor *x, const diat_tensor *weight,
                              const diat_tensor *dy, diat_conv_geometry g, diat_tensor *dx,
                              diat_tensor *dweight, diat_tensor *dbias)
{
    /* The AVX-512 backward clears the gradients it has computed. */
    diat_cpu_conv2d_backward_avx512(ctx, x, weight, dy, g, &dx, &dweight, &dbias);
    if (!dx && !dweight && !dbias) return;

    const conv_shape s = conv_shape_of(x, weight, dy, g);
    const int pointwise = is_pointwise(&s);
    float *dw = dweight ? dweight->data : NULL;
    int chunk = pointwise || (!dx && !dw) ? 0 : fold_images(&s, x->n);
    float *folded =
        chunk ? diat_context_scratch(ctx, (size_t)(s.patch + s.out_c) * chunk * s.out_plane) : NULL;
    if (folded) {
        backward_folded(&s, x->n, chunk, x->data, weight->data, dy->data, dx ? dx->data : NULL, dw,
                        folded);
        /* Only dbias is left for the per-image loop. */
        dx = NULL;
        dw = NULL;
    }
    int rows = band_rows(&s, BACKWARD_BAND_FLOATS);
    float *col = pointwise || (!dx && !dw) ? NULL : band_scratch(ctx, &s, &rows);

    for (int n = 0; n < x->n; n++) {
        const float *image = x->data + (size_t)n * s.in_c * s.in_plane;
        const float *grad_out = dy->data + (size_t)n * s.out_c * s.out_plane;
        float *grad_in = dx ? dx->data + (size_t)n * s.in_c * s.in_plane : NULL;

        if (dbias) {
            for (int o = 0; o < s.out_c; o++) {
                const float *row = grad_out + (size_t)o * s.out_plane;
                float sum = 0.0f;
                for (size_t i = 0; i < s.out_plane; i++) sum += row[i];
                dbias->data[o] += sum;
            }
        }
        if (!dw && !grad_in) continue;

        if (pointwise) {
            if (dw)
                diat_sgemm(0, 1, s.out_c, s.in_c, (int)s.out_plane, 1.0f, grad_out,
                           (int)s.out_plane, image, (int)s.in_plane, 1.0f, dw, s.in_c);
            if (grad_in)
                diat_sgemm(1, 0, s.in_c, (int)s.in_plane, s.out_c, 1.0f, weight->data, s.in_c,
                           grad_out, (int)s.out_plane, 1.0f, grad_in, (int)s.in_plane);
            continue;
        }
        if (!col) {
            direct_backward(&s, image, weight->data, grad_out, grad_in, dw);
            continue;
        }
        for (int row0 = 0; row0 < s.out_h; row0 += rows) {
            int row1 = row0 + rows < s.out_h ? row0 + rows : s.out_h;
            int band_len = (row1 - row0) * s.out_w;
            const float *grad_band = grad_out + (size_t)row0 * s.out_w;
            if (dw) {
                im2col_band(&s, image, row0, row1, col, (size_t)band_len);
                diat_sgemm(0, 1, s.out_c, s.patch, band_len, 1.0f, grad_band, (int)s.out_plane, col,
                           band_len, 1.0f, dw, s.patch);
            }
            if (grad_in) {
                /* The same buffer now receives the column gradient. */
                diat_sgemm(1, 0, s.patch, band_len, s.out_c, 1.0f, weight->data, s.patch, grad_band,
                           (int)s.out_plane, 0.0f, col, band_len);
                col2im_band(&s, col, row0, row1, grad_in, (size_t)band_len);
            }
        }
    }
}

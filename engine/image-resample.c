/* Moving pixels between a photo and the 128x128 face square, for any
 * similarity transform (a square box is the case without rotation): crop
 * with an anti-aliasing filter, and paste back through the inverse warp row
 * by row, so a face of any size costs memory proportional to a photo row.
 *
 * One filter serves both directions: a tent along the source's axes,
 * radius max(1, source pixels per destination pixel), normalised, source
 * indices clamped. Enlarging it is exactly bilinear interpolation; shrinking
 * it averages every source pixel under the destination pixel (area-like),
 * so a 2000-pixel face cropped to 128 does not alias (it is the filter the
 * crop always had, now with a rotation). A tent sampled at whole pixels is
 * exactly centred only for whole-number radii: in between, its weights'
 * centre of mass sits up to 0.09 source pixels off (radius 1.2; 0.05 at
 * CelebA's 178 -> 128), a sub-pixel jitter far below what alignment or the
 * networks resolve. Separable tents along
 * the source axes rather than the rotated destination axes: the weights
 * stay two short 1-D arrays per sample, and a tent's cut-off differs by at
 * most sqrt(2) between directions, well inside what the networks notice. */
#include "image-resample.h"

#include "diat-train.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define FACE DIAT_FACE_SIZE
/* Above this many photo pixels per face pixel the crop first box-averages
 * the photo by an integer factor: the tent's taps grow with the square of
 * the scale (a 4000-pixel face would read 60 million pixels), the box
 * reduction reads each pixel under the face once. */
#define REDUCE_FROM_SCALE 4.0
/* Transforms beyond these are refused: no photo the engine can hold has a
 * face larger, and the bounds keep every index computation inside an int. */
#define MAX_SCALE 8192.0 /* a face square of about a million pixels */
#define MIN_SCALE (1.0 / 128.0)
#define MAX_OFFSET 1.0e8

diat_face_transform diat_face_transform_square(double x0, double y0, double side)
{
    return (diat_face_transform){side / FACE, 0.0, x0, y0};
}

double diat_face_transform_scale(const diat_face_transform *t)
{
    return hypot(t->a, t->b);
}

static diat_status check_transform(const diat_face_transform *t, diat_error *err)
{
    double s = diat_face_transform_scale(t);
    if (!isfinite(s) || !isfinite(t->tx) || !isfinite(t->ty) || s < MIN_SCALE || s > MAX_SCALE ||
        fabs(t->tx) > MAX_OFFSET || fabs(t->ty) > MAX_OFFSET)
        return diat_set_error(err, DIAT_ERR_ARGUMENT,
                              "The face's placement in the image is out of range (scale %g, "
                              "offset %g, %g).",
                              s, t->tx, t->ty);
    return DIAT_OK;
}

/* Tent weights of radius r (>= 1) centred on the index coordinate c (pixel
 * i's centre is i): `taps` consecutive source indices from floor(c - r) + 1,
 * clamped to [0, limit), weights normalised to sum 1. The plan below and
 * both warps share it, so the axis-aligned and the rotated cases compute
 * the same function. */
static void tent_weights(double c, double r, int taps, int limit, int *index, float *weight)
{
    int first = (int)floor(c - r) + 1;
    double total = 0.0;
    for (int t = 0; t < taps; t++) {
        int s = first + t;
        double w = 1.0 - fabs((s - c) / r);
        if (w < 0.0) w = 0.0;
        index[t] = s < 0 ? 0 : s >= limit ? limit - 1 : s;
        weight[t] = (float)w;
        total += w;
    }
    for (int t = 0; t < taps; t++) weight[t] = (float)(weight[t] / total);
}

static int tent_taps(double r)
{
    return (int)ceil(2.0 * r) + 1;
}

diat_status diat_resample_plan_new(diat_resample_plan *plan, double src_start, double src_len,
                                   int src_limit, int dst_len, diat_error *err)
{
    memset(plan, 0, sizeof *plan);
    double scale = src_len / dst_len;          /* source pixels per output pixel */
    double radius = scale > 1.0 ? scale : 1.0; /* tent half-width in source pixels */
    int taps = tent_taps(radius);
    plan->dst_len = dst_len;
    plan->taps = taps;
    plan->index = malloc((size_t)dst_len * taps * sizeof *plan->index);
    plan->weight = malloc((size_t)dst_len * taps * sizeof *plan->weight);
    if (!plan->index || !plan->weight) {
        diat_resample_plan_free(plan);
        return diat_set_error(err, DIAT_ERR_MEMORY, "Out of memory planning a resample.");
    }
    for (int d = 0; d < dst_len; d++) {
        double center = src_start + (d + 0.5) * scale - 0.5; /* pixel centres align */
        tent_weights(center, radius, taps, src_limit, plan->index + (size_t)d * taps,
                     plan->weight + (size_t)d * taps);
    }
    return DIAT_OK;
}

void diat_resample_plan_free(diat_resample_plan *plan)
{
    free(plan->index);
    free(plan->weight);
    memset(plan, 0, sizeof *plan);
}

/* ---- photo -> face ------------------------------------------------------ */

/* Colour of a pixel: gray replicates, alpha is skipped. */
static void read_rgb(const diat_image *photo, int x, int y, float rgb[3])
{
    const float *p = photo->pixels + (size_t)y * photo->stride + (size_t)x * photo->channels;
    if (photo->channels >= 3) {
        rgb[0] = p[0];
        rgb[1] = p[1];
        rgb[2] = p[2];
    } else {
        rgb[0] = rgb[1] = rgb[2] = p[0];
    }
}

/* Each face pixel is the tent-filtered `src` at the place its centre maps
 * to under `t`. */
static diat_status warp_direct(const diat_image *src, const diat_face_transform *t, float *out,
                               diat_error *err)
{
    double s = diat_face_transform_scale(t);
    double r = s > 1.0 ? s : 1.0;
    int taps = tent_taps(r);
    int *ix = malloc(2 * (size_t)taps * sizeof *ix);
    float *wx = malloc(2 * (size_t)taps * sizeof *wx);
    if (!ix || !wx) {
        free(ix);
        free(wx);
        return diat_set_error(err, DIAT_ERR_MEMORY, "Out of memory resampling a face.");
    }
    int *iy = ix + taps;
    float *wy = wx + taps;
    for (int j = 0; j < FACE; j++) {
        const double v = j + 0.5;
        for (int i = 0; i < FACE; i++) {
            const double u = i + 0.5;
            /* -0.5: from edge coordinates to the index of the pixel centred there */
            tent_weights(t->a * u - t->b * v + t->tx - 0.5, r, taps, src->width, ix, wx);
            tent_weights(t->b * u + t->a * v + t->ty - 0.5, r, taps, src->height, iy, wy);
            float acc[3] = {0, 0, 0};
            for (int q = 0; q < taps; q++) {
                if (wy[q] == 0.0f) continue;
                float row[3] = {0, 0, 0};
                for (int p = 0; p < taps; p++) {
                    if (wx[p] == 0.0f) continue;
                    float rgb[3];
                    read_rgb(src, ix[p], iy[q], rgb);
                    for (int c = 0; c < 3; c++) row[c] += wx[p] * rgb[c];
                }
                for (int c = 0; c < 3; c++) acc[c] += wy[q] * row[c];
            }
            for (int c = 0; c < 3; c++)
                out[(size_t)c * FACE * FACE + (size_t)j * FACE + i] = acc[c];
        }
    }
    free(ix);
    free(wx);
    return DIAT_OK;
}

/* Sum of `count` consecutive pixels of photo row y from column x0, as if
 * the photo were extended by repeating its border: the columns outside
 * count with their multiplicity instead of being read one by one, so a
 * span far outside the photo costs nothing extra. */
static void span_sum(const diat_image *photo, int y, long x0, long count, double rgb[3])
{
    const long w = photo->width;
    const int ch = photo->channels;
    long first = x0 < 0 ? 0 : x0, last = x0 + count > w ? w : x0 + count; /* [first, last) inside */
    long left = (x0 < 0 ? (count < -x0 ? count : -x0) : 0);
    long right = (x0 + count > w ? (x0 >= w ? count : x0 + count - w) : 0);
    const float *row = photo->pixels + (size_t)y * photo->stride;
    double r = 0.0, g = 0.0, b = 0.0;
    if (left) {
        float p[3];
        read_rgb(photo, 0, y, p);
        r += (double)left * p[0], g += (double)left * p[1], b += (double)left * p[2];
    }
    if (right) {
        float p[3];
        read_rgb(photo, photo->width - 1, y, p);
        r += (double)right * p[0], g += (double)right * p[1], b += (double)right * p[2];
    }
    /* Plain pointer walks per layout: this loop reads every pixel under a
     * large face, so it is the crop's cost. */
    if (first < last) {
        const float *p = row + (size_t)first * ch;
        if (ch >= 3) {
            for (long x = first; x < last; x++, p += ch) r += p[0], g += p[1], b += p[2];
        } else {
            double v = 0.0;
            for (long x = first; x < last; x++, p += ch) v += p[0];
            r += v, g += v, b += v;
        }
    }
    rgb[0] = r, rgb[1] = g, rgb[2] = b;
}

/* Add `weight` times the k-pixel spans of photo row y, cell by cell, to
 * `sums` (nx cells of RGB, the first span starting at column x0). */
static void add_row(const diat_image *photo, long y, double weight, long x0, int k, long nx,
                    double *sums)
{
    for (long cx = 0; cx < nx; cx++) {
        double part[3];
        span_sum(photo, (int)y, x0 + cx * k, k, part);
        for (int c = 0; c < 3; c++) sums[cx * 3 + c] += weight * part[c];
    }
}

/* A large face: average k x k blocks of the (border-extended) photo over the
 * face's footprint into a small RGB image, then filter that. The block grid
 * starts at the footprint's corner, so cells reaching outside the photo
 * average the replicated border, as the direct filter would read it. */
static diat_status warp_reduced(const diat_image *photo, const diat_face_transform *t, float *out,
                                diat_error *err)
{
    double s = diat_face_transform_scale(t);
    int k = (int)floor(s / 2.0); /* leaves 2 to 3 cells per face pixel */
    /* The footprint: the square's corners, grown by the tent's reach. */
    double lo_x = INFINITY, lo_y = INFINITY, hi_x = -INFINITY, hi_y = -INFINITY;
    for (int corner = 0; corner < 4; corner++) {
        double u = corner & 1 ? FACE : 0, v = corner & 2 ? FACE : 0;
        double x = t->a * u - t->b * v + t->tx, y = t->b * u + t->a * v + t->ty;
        lo_x = fmin(lo_x, x), hi_x = fmax(hi_x, x);
        lo_y = fmin(lo_y, y), hi_y = fmax(hi_y, y);
    }
    double margin = s + 2.0 * k + 2.0;
    long x0 = (long)floor(lo_x - margin), y0 = (long)floor(lo_y - margin);
    long nx = (long)ceil((hi_x + margin - (double)x0) / k);
    long ny = (long)ceil((hi_y + margin - (double)y0) / k);
    float *cells = malloc((size_t)nx * (size_t)ny * 3 * sizeof *cells);
    if (!cells) return diat_set_error(err, DIAT_ERR_MEMORY, "Out of memory resampling a face.");
    const double norm = 1.0 / ((double)k * k);
    double *sums = malloc((size_t)nx * 3 * sizeof *sums);
    if (!sums) {
        free(cells);
        return diat_set_error(err, DIAT_ERR_MEMORY, "Out of memory resampling a face.");
    }
    const long h = photo->height;
    for (long cy = 0; cy < ny; cy++) {
        /* Photo rows [top, top + k) of this cell row, each read once along
         * its length. Rows above or below the photo repeat its border row:
         * each such group is summed once, weighted by its size. */
        const long top = y0 + cy * k, bottom = top + k;
        const long above = (bottom < 0 ? bottom : 0) - top; /* rows < 0 */
        const long below = bottom - (top > h ? top : h);    /* rows >= h */
        const long first = top < 0 ? 0 : top, last = bottom > h ? h : bottom;
        memset(sums, 0, (size_t)nx * 3 * sizeof *sums);
        if (above > 0) add_row(photo, 0, (double)above, x0, k, nx, sums);
        for (long y = first; y < last; y++) add_row(photo, y, 1.0, x0, k, nx, sums);
        if (below > 0) add_row(photo, h - 1, (double)below, x0, k, nx, sums);
        float *cell_row = cells + (size_t)cy * nx * 3;
        for (long i = 0; i < nx * 3; i++) cell_row[i] = (float)(sums[i] * norm);
    }
    free(sums);
    diat_image reduced = {(int)nx, (int)ny, 3, (size_t)nx * 3, cells};
    /* Cell (i, j) covers photo [x0 + i k, x0 + (i + 1) k): edge coordinates
     * scale by 1/k about the grid's corner. */
    diat_face_transform in_cells = {t->a / k, t->b / k, (t->tx - (double)x0) / k,
                                    (t->ty - (double)y0) / k};
    diat_status st = warp_direct(&reduced, &in_cells, out, err);
    free(cells);
    return st;
}

diat_status diat_warp_face(const diat_image *photo, const diat_face_transform *t, float *out,
                           diat_error *err)
{
    diat_status st = check_transform(t, err);
    if (st != DIAT_OK) return st;
    if (diat_face_transform_scale(t) >= REDUCE_FROM_SCALE) return warp_reduced(photo, t, out, err);
    return warp_direct(photo, t, out, err);
}

/* A square of exactly 128 photo pixels inside the photo: the tent of radius
 * 1 centred on a whole pixel weighs that pixel 1 and its neighbours 0, so
 * the filter is a copy. Every CelebA-128 face the trainer reads takes this
 * path (the filter cost ~3% of a two-thread training step). */
static void copy_face(const diat_image *photo, int x0, int y0, float *out)
{
    for (int y = 0; y < FACE; y++)
        for (int x = 0; x < FACE; x++) {
            float rgb[3];
            read_rgb(photo, x0 + x, y0 + y, rgb);
            for (int c = 0; c < 3; c++)
                out[(size_t)c * FACE * FACE + (size_t)y * FACE + x] = rgb[c];
        }
}

diat_status diat_crop_face(const diat_image *photo, int x0, int y0, int side, float *out,
                           diat_error *err)
{
    if (side == FACE && x0 >= 0 && y0 >= 0 && x0 <= photo->width - FACE &&
        y0 <= photo->height - FACE) {
        copy_face(photo, x0, y0, out);
        return DIAT_OK;
    }
    diat_face_transform t = diat_face_transform_square(x0, y0, side);
    return diat_warp_face(photo, &t, out, err);
}

/* ---- face -> photo ------------------------------------------------------ */

/* Coverage of one edge: the pixel's centre at signed distance d (photo
 * pixels, positive inside) from the edge covers clamp(d + 1/2) of it.
 * Within a millionth of a pixel of either limit it snaps to 0 or 1: a square
 * turned by a right angle has cos = 6e-17, not 0, and a whole row of pixels
 * lying exactly outside must not get a coverage of 1e-16 (and be written). */
static double edge_coverage(double d)
{
    return d >= 0.5 - 1e-6 ? 1.0 : d <= -0.5 + 1e-6 ? 0.0 : d + 0.5;
}

/* Columns of row y (centre py) whose centre lies within half a pixel of
 * the square's inside, as [*first, *last); conservative by a pixel, the
 * coverage decides exactly. Each edge is a half-plane linear in x. */
static void row_span(double c, double n, double side_px, double tx, double ty, double py, int width,
                     int *first, int *last)
{
    double lo = -INFINITY, hi = INFINITY;
    /* d_u = c (x - tx) + n (py - ty) in [-0.5, side_px + 0.5], likewise
     * d_v = -n (x - tx) + c (py - ty). */
    const double dy = py - ty;
    const double coef[2] = {c, -n}, rest[2] = {n * dy, c * dy};
    for (int e = 0; e < 2; e++) {
        double lo_d = -0.5 - rest[e], hi_d = side_px + 0.5 - rest[e];
        if (coef[e] == 0.0) {
            if (lo_d > 0.0 || hi_d < 0.0) lo = INFINITY; /* the row misses the square */
            continue;
        }
        double x1 = tx + lo_d / coef[e], x2 = tx + hi_d / coef[e];
        lo = fmax(lo, fmin(x1, x2));
        hi = fmin(hi, fmax(x1, x2));
    }
    if (!(lo <= hi)) {
        *first = *last = 0;
        return;
    }
    double f = floor(lo - 0.5) - 1.0, l = ceil(hi - 0.5) + 2.0; /* x + 0.5 in [lo, hi] */
    *first = f < 0.0 ? 0 : f > width ? width : (int)f;
    *last = l < 0.0 ? 0 : l > width ? width : (int)l;
}

diat_status diat_paste_face(const float *planes, int plane_count, const diat_face_transform *t,
                            int width, int height, diat_row_fn row_fn, void *user, diat_error *err)
{
    diat_status st = check_transform(t, err);
    if (st != DIAT_OK) return st;
    const double s = diat_face_transform_scale(t);
    const double c = t->a / s, n = t->b / s; /* cos, sin of the rotation */
    const double side_px = FACE * s;         /* the square's side in photo pixels */
    const double r = 1.0 / s > 1.0 ? 1.0 / s : 1.0;
    const int taps = tent_taps(r);
    /* Rows the square can reach: its corners' extent. */
    double lo_y = INFINITY, hi_y = -INFINITY;
    for (int corner = 0; corner < 4; corner++) {
        double u = corner & 1 ? FACE : 0, v = corner & 2 ? FACE : 0;
        double y = t->b * u + t->a * v + t->ty;
        lo_y = fmin(lo_y, y), hi_y = fmax(hi_y, y);
    }
    int first_y = lo_y - 1.0 < 0.0 ? 0 : lo_y - 1.0 > height ? height : (int)(lo_y - 1.0);
    int last_y = hi_y + 1.0 < 0.0 ? 0 : hi_y + 1.0 > height ? height : (int)(hi_y + 1.0);
    float *values = malloc((size_t)width * plane_count * sizeof *values);
    int *iu = malloc(2 * (size_t)taps * sizeof *iu);
    float *wu = malloc(2 * (size_t)taps * sizeof *wu);
    if (!values || !iu || !wu)
        st = diat_set_error(err, DIAT_ERR_MEMORY, "Out of memory pasting back.");
    int *iv = iu + taps;
    float *wv = wu + taps;
    for (int y = first_y; st == DIAT_OK && y < last_y; y++) {
        const double py = y + 0.5;
        int first_x, last_x;
        row_span(c, n, side_px, t->tx, t->ty, py, width, &first_x, &last_x);
        if (first_x >= last_x) continue;
        for (int x = first_x; x < last_x; x++) {
            float *v = values + (size_t)(x - first_x) * plane_count;
            /* Distances (photo pixels) from the square's left and top edges
             * along its own axes; exact for an unrotated square on whole
             * pixels (c = 1, n = 0). */
            const double dx = x + 0.5 - t->tx, dy = py - t->ty;
            const double du = c * dx + n * dy, dv = -n * dx + c * dy;
            double cover = edge_coverage(du) * edge_coverage(side_px - du) * edge_coverage(dv) *
                           edge_coverage(side_px - dv);
            if (cover <= 0.0) {
                memset(v, 0, (size_t)plane_count * sizeof *v);
                continue;
            }
            tent_weights(du / s - 0.5, r, taps, FACE, iu, wu);
            tent_weights(dv / s - 0.5, r, taps, FACE, iv, wv);
            for (int p = 0; p < plane_count; p++) {
                const float *plane = planes + (size_t)p * FACE * FACE;
                float acc = 0.0f;
                for (int q = 0; q < taps; q++) {
                    if (wv[q] == 0.0f) continue;
                    const float *src = plane + (size_t)iv[q] * FACE;
                    float row = 0.0f;
                    for (int k = 0; k < taps; k++) row += wu[k] * src[iu[k]];
                    acc += wv[q] * row;
                }
                v[p] = (float)(cover * acc);
            }
        }
        row_fn(user, y, first_x, last_x - first_x, values);
    }
    free(values);
    free(iu);
    free(wu);
    return st;
}

/* The input of face-api's 112x112 face networks (face-api-input.h): the
 * box cut out of the photo, padded to a square and resampled.
 *
 * Where this differs from face-api:
 *  - shrinking (a box larger than 112 pixels) may use a triangle filter as
 *    wide as the scale factor, centred where face-api's bilinear samples,
 *    instead of bilinear's four pixels, so every pixel of the face counts
 *    and the landmarks move less when the box moves by a pixel (a fifth
 *    less for a face shrunk 3.75 times). DIAT_FACE_API_FILTER_BILINEAR is
 *    face-api's resize. Enlarging is exactly bilinear either way;
 *  - boxes reaching outside the photo are padded with black (the colour of
 *    face-api's own square padding) where face-api clips them, so the face
 *    keeps its place in the square;
 *  - fractional boxes are rounded to whole pixels (face-api floors the box
 *    to cut it out). */
#include "face-api-input.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Boxes beyond this side are refused: the resampling filter's taps grow with
 * the side, and a million pixels is far beyond any photo's face. */
#define MAX_BOX_SIDE (1 << 20)

/* One axis of the resampling: output sample o takes taps[first[o] .. first[o]
 * + count[o]) from source positions start[o], start[o] + 1, ... (photo
 * pixels; black pixels are left out, their weight still counted). */
typedef struct axis_filter {
    int start[DIAT_FACE_API_INPUT_SIZE], count[DIAT_FACE_API_INPUT_SIZE],
        first[DIAT_FACE_API_INPUT_SIZE];
    float *taps;
} axis_filter;

/* The filter of one axis. The square runs over source positions
 * origin .. origin + side - 1; of those, only [lo, hi) holds photo pixels
 * (inside both the box and the photo), the rest is black. Output o is
 * centred at square position o * side / 112 (face-api's resizeBilinear).
 * Enlarging: bilinear on the two neighbours, the upper one clamped to the
 * square's last pixel as tfjs does. Shrinking: a triangle as wide as the
 * scale, so every square pixel counts, with the same clamping; for a scale
 * of 1 it is the bilinear one. Returns 0 when out of memory. */
static int axis_filter_build(axis_filter *f, diat_face_api_filter filter, long origin, int side,
                             long lo, long hi)
{
    const double scale = (double)side / DIAT_FACE_API_INPUT_SIZE;
    const double radius = scale > 1.0 && filter == DIAT_FACE_API_FILTER_TRIANGLE ? scale : 1.0;
    const int most = 2 * (int)ceil(radius) + 2; /* taps per output, at most */
    f->taps = calloc((size_t)DIAT_FACE_API_INPUT_SIZE * (size_t)most, sizeof *f->taps);
    if (!f->taps) return 0;
    int used = 0;
    for (int o = 0; o < DIAT_FACE_API_INPUT_SIZE; o++) {
        const double centre = o * scale;
        const int first = (int)ceil(centre - radius), last = (int)floor(centre + radius);
        /* Clamped positions are monotonic, so the taps form one run. */
        const int run_lo = first < 0 ? 0 : first;
        const int run_hi = last > side - 1 ? side - 1 : last;
        float *w = f->taps + used;
        double total = 0.0;
        for (int j = first; j <= last; j++) {
            const double weight = 1.0 - fabs(j - centre) / radius;
            if (weight <= 0.0) continue;
            const int clamped = j < 0 ? 0 : j > side - 1 ? side - 1 : j;
            w[clamped - run_lo] += (float)weight;
            total += weight;
        }
        for (int j = 0; j <= run_hi - run_lo; j++) w[j] = (float)(w[j] / total);
        /* Keep the photo pixels only: black adds nothing. */
        long start = origin + run_lo, end = origin + run_hi + 1;
        const long skip = start < lo ? lo - start : 0;
        if (end > hi) end = hi;
        start += skip;
        /* All black: no taps, and a start that stays inside the photo. */
        f->count[o] = end > start ? (int)(end - start) : 0;
        f->start[o] = f->count[o] ? (int)start : (int)lo;
        f->first[o] = f->count[o] ? used + (int)skip : used;
        used += run_hi - run_lo + 1;
    }
    return 1;
}

/* Fill `input` with the box's square resampled to 112x112 and normalised. */
static diat_status crop_face(const diat_image *photo, diat_face_api_filter filter,
                             const float mean_rgb[3], long x0, long y0, long x1, long y1, int side,
                             long square_x, long square_y, float *input, diat_error *err)
{
    axis_filter cols = {0}, rows = {0};
    /* Photo pixels of the box: inside it and inside the photo. */
    const long lo_x = x0 > 0 ? x0 : 0, hi_x = x1 < photo->width ? x1 : photo->width;
    const long lo_y = y0 > 0 ? y0 : 0, hi_y = y1 < photo->height ? y1 : photo->height;
    if (!axis_filter_build(&cols, filter, square_x, side, lo_x, hi_x) ||
        !axis_filter_build(&rows, filter, square_y, side, lo_y, hi_y)) {
        free(cols.taps);
        free(rows.taps);
        return diat_set_error(err, DIAT_ERR_MEMORY, "Out of memory cutting out a face.");
    }
    /* The photo rows the output reads: each is filtered across once, into
     * `across` (112 RGB triples a row), then the output rows are weighted
     * sums of those. Shrinking reads every row of the box, each for two or
     * three output rows; enlarging (or bilinear shrinking) reads a few. */
    long first_row = hi_y, end_row = lo_y;
    for (int oy = 0; oy < DIAT_FACE_API_INPUT_SIZE; oy++) {
        if (!rows.count[oy]) continue;
        if (rows.start[oy] < first_row) first_row = rows.start[oy];
        if (rows.start[oy] + rows.count[oy] > end_row) end_row = rows.start[oy] + rows.count[oy];
    }
    const size_t row_count = end_row > first_row ? (size_t)(end_row - first_row) : 0;
    const size_t row_floats = (size_t)DIAT_FACE_API_INPUT_SIZE * 3;
    float *across = malloc((row_count ? row_count : 1) * row_floats * sizeof *across);
    unsigned char *read = calloc(row_count ? row_count : 1, 1);
    float *sums = malloc(row_floats * sizeof *sums);
    if (!across || !read || !sums) {
        free(across);
        free(read);
        free(sums);
        free(cols.taps);
        free(rows.taps);
        return diat_set_error(err, DIAT_ERR_MEMORY, "Out of memory cutting out a face.");
    }
    for (int oy = 0; oy < DIAT_FACE_API_INPUT_SIZE; oy++)
        for (int t = 0; t < rows.count[oy]; t++) read[rows.start[oy] + t - first_row] = 1;

    const int channels = photo->channels;
    for (size_t r = 0; r < row_count; r++) {
        if (!read[r]) continue;
        const float *line = photo->pixels + (size_t)(first_row + (long)r) * photo->stride;
        float *out = across + r * row_floats;
        for (int ox = 0; ox < DIAT_FACE_API_INPUT_SIZE; ox++) {
            const float *taps = cols.taps + cols.first[ox];
            const float *px = line + (size_t)cols.start[ox] * (size_t)channels;
            float red = 0.0f, green = 0.0f, blue = 0.0f;
            if (channels >= 3) {
                for (int k = 0; k < cols.count[ox]; k++, px += channels) {
                    red += taps[k] * px[0];
                    green += taps[k] * px[1];
                    blue += taps[k] * px[2];
                }
            } else { /* gray (and alpha, ignored): the same on all three */
                for (int k = 0; k < cols.count[ox]; k++, px += channels) red += taps[k] * px[0];
                green = blue = red;
            }
            out[3 * ox] = red;
            out[3 * ox + 1] = green;
            out[3 * ox + 2] = blue;
        }
    }

    const size_t plane = (size_t)DIAT_FACE_API_INPUT_SIZE * DIAT_FACE_API_INPUT_SIZE;
    for (int oy = 0; oy < DIAT_FACE_API_INPUT_SIZE; oy++) {
        memset(sums, 0, row_floats * sizeof *sums);
        for (int t = 0; t < rows.count[oy]; t++) {
            const float wy = rows.taps[rows.first[oy] + t];
            const float *row = across + (size_t)(rows.start[oy] + t - first_row) * row_floats;
            for (size_t i = 0; i < row_floats; i++) sums[i] += wy * row[i];
        }
        /* Pixels are [0, 1] here and 0..255 for face-api:
         * (255 v - mean) / 255 = v - mean / 255. */
        for (int ox = 0; ox < DIAT_FACE_API_INPUT_SIZE; ox++)
            for (int c = 0; c < 3; c++)
                input[(size_t)c * plane + (size_t)oy * DIAT_FACE_API_INPUT_SIZE + ox] =
                    sums[3 * ox + c] - mean_rgb[c] / 255.0f;
    }
    free(across);
    free(read);
    free(sums);
    free(cols.taps);
    free(rows.taps);
    return DIAT_OK;
}

diat_status diat_face_api_input(const diat_image *photo, const float box[4],
                                diat_face_api_filter filter, const float mean_rgb[3], float *input,
                                diat_face_api_square *square, diat_error *err)
{
    if (!photo || !box || !input)
        return diat_set_error(err, DIAT_ERR_ARGUMENT,
                              "A face network needs a photo, a box and room for its input.");
    if (!photo->pixels || photo->width < 1 || photo->height < 1 || photo->channels < 1 ||
        photo->channels > 4 || photo->stride < (size_t)photo->width * (size_t)photo->channels)
        return diat_set_error(err, DIAT_ERR_ARGUMENT,
                              "The photo for the face network is not a valid image (%dx%d, "
                              "%d channels).",
                              photo->width, photo->height, photo->channels);
    for (int i = 0; i < 4; i++)
        if (!isfinite(box[i]) || fabsf(box[i]) > (float)MAX_BOX_SIDE * 4.0f)
            return diat_set_error(err, DIAT_ERR_ARGUMENT,
                                  "The face box (%g, %g, %g, %g) is not a usable rectangle.",
                                  (double)box[0], (double)box[1], (double)box[2], (double)box[3]);
    /* Whole pixels, edges rounded (see the top of the file). */
    const long x0 = lround(box[0]), y0 = lround(box[1]);
    const long x1 = lround((double)box[0] + box[2]), y1 = lround((double)box[1] + box[3]);
    const long width = x1 - x0, height = y1 - y0;
    if (width < 1 || height < 1 || width > MAX_BOX_SIDE || height > MAX_BOX_SIDE)
        return diat_set_error(err, DIAT_ERR_ARGUMENT,
                              "The face box (%g, %g, %g, %g) must be between 1 and %d pixels "
                              "wide and high.",
                              (double)box[0], (double)box[1], (double)box[2], (double)box[3],
                              MAX_BOX_SIDE);
    if (x1 <= 0 || y1 <= 0 || x0 >= photo->width || y0 >= photo->height)
        return diat_set_error(err, DIAT_ERR_ARGUMENT,
                              "The face box (%g, %g, %g, %g) lies outside the %dx%d photo.",
                              (double)box[0], (double)box[1], (double)box[2], (double)box[3],
                              photo->width, photo->height);

    /* face-api's padToSquare: floor(d / 2) before, the rest after. */
    const long side = width > height ? width : height;
    const long diff = side - (width < height ? width : height);
    const long square_x = x0 - (width < height ? diff / 2 : 0);
    const long square_y = y0 - (height < width ? diff / 2 : 0);
    if (square)
        *square = (diat_face_api_square){x0,
                                         y0,
                                         width,
                                         height,
                                         side,
                                         width < height ? diff / 2.0 : 0.0,
                                         height < width ? diff / 2.0 : 0.0};
    return crop_face(photo, filter, mean_rgb, x0, y0, x1, y1, (int)side, square_x, square_y, input,
                     err);
}

/* PNG and JPEG files <-> pixels, for the `diat` command and the tests.
 *
 * An image is kept twice: the integer samples exactly as the file stored them
 * (so untouched pixels can be written back bit for bit) and the same samples as
 * floats in [0, 1] in a diat_image the engine can edit. Every failure fills a
 * diat_error whose message names the file; nothing here prints or exits.
 */
#ifndef DIAT_IMAGE_IO_H
#define DIAT_IMAGE_IO_H

#include "diat.h"

#include <stdint.h>

/* Refuse images beyond these before allocating anything for them. */
#define IMGIO_MAX_SIDE 30000
#define IMGIO_MAX_PIXELS 400000000ull

typedef enum imgio_format {
    IMGIO_FORMAT_UNKNOWN = 0,
    IMGIO_FORMAT_PNG,
    IMGIO_FORMAT_JPEG,
} imgio_format;

typedef struct imgio_image {
    diat_image image;    /* float view: width, height, channels, stride, pixels */
    int bit_depth;       /* of the samples: 8 or 16 */
    imgio_format format; /* the file format it was read from */
    uint16_t *samples;   /* width * height * channels integer samples, interleaved */
} imgio_image;

/* Format named by a path's extension (.png, .jpg, .jpeg; any case). */
imgio_format imgio_format_from_path(const char *path);

/* "PNG", "JPEG" or "unknown". */
const char *imgio_format_name(imgio_format format);

/* Read a PNG or JPEG (recognised by its signature, not its name). PNG: 1-16
 * bit gray, gray+alpha, RGB, RGBA and palette files; palettes and tRNS are
 * expanded, depths below 8 widen to 8. JPEG: gray and RGB/YCbCr (8-bit).
 * On failure `out` is left empty (safe to imgio_free). */
diat_status imgio_load(const char *path, imgio_image *out, diat_error *err);

/* Allocate an image with zeroed samples and float pixels. */
diat_status imgio_alloc(imgio_image *img, int width, int height, int channels, int bit_depth,
                        diat_error *err);

/* Release the pixels and samples; zeroes the struct. NULL is allowed. */
void imgio_free(imgio_image *img);

/* Float pixels -> integer samples: 8-bit lrintf(v * 255), 16-bit
 * lrintf(v * 65535), clamped to the range (NaN gives 0). `dst` holds
 * width * height * channels samples. */
void imgio_quantize(const diat_image *src, int bit_depth, uint16_t *dst);

/* Integer samples -> float pixels (the exact inverse of imgio_quantize on
 * every representable sample). */
void imgio_dequantize(const uint16_t *src, int bit_depth, diat_image *dst);

/* Write img->samples to `path` in `format` (IMGIO_FORMAT_UNKNOWN: from the
 * extension). PNG keeps the channel layout and bit depth; JPEG (quality 95,
 * 4:4:4) is 8-bit gray or RGB, so alpha is dropped and 16-bit samples are
 * rounded to 8 bits. The write is atomic: a temporary file in the same folder
 * is renamed over `path` once complete; on failure it is removed and an
 * existing `path` is left as it was. */
diat_status imgio_save(const char *path, const imgio_image *img, imgio_format format,
                       diat_error *err);

/* Write `text` to `path` with the same atomic replacement (reports, JSON). */
diat_status imgio_save_text(const char *path, const char *text, diat_error *err);

#endif /* DIAT_IMAGE_IO_H */

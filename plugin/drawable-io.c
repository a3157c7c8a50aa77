/* Pixels between GIMP and the engine (see drawable-io.h). */
#include "drawable-io.h"

#include "plugin-errors.h"

#include <glib/gi18n-lib.h>
#include <string.h>

static const Babl *engine_format(GimpDrawable *drawable)
{
    return babl_format(gimp_drawable_is_gray(drawable) ? "Y'A float" : "R'G'B'A float");
}

gboolean layer_pixels_read(GimpDrawable *drawable, layer_pixels *out, GError **error)
{
    memset(out, 0, sizeof *out);
    const int width = gimp_drawable_get_width(drawable);
    const int height = gimp_drawable_get_height(drawable);
    out->format = engine_format(drawable);
    const int channels = babl_format_get_n_components(out->format);
    const size_t floats = (size_t)width * (size_t)height * (size_t)channels;
    float *pixels = g_try_malloc(floats * sizeof *pixels);
    if (!pixels) {
        g_set_error(error, DIAT_PLUGIN_ERROR, DIAT_PLUGIN_ERROR_ENGINE,
                    _("Not enough memory to read the %d × %d layer."), width, height);
        return FALSE;
    }
    GeglBuffer *buffer = gimp_drawable_get_buffer(drawable);
    gegl_buffer_get(buffer, GEGL_RECTANGLE(0, 0, width, height), 1.0, out->format, pixels,
                    GEGL_AUTO_ROWSTRIDE, GEGL_ABYSS_NONE);
    g_object_unref(buffer);
    out->image = (diat_image){width, height, channels, (size_t)width * channels, pixels};
    return TRUE;
}

gboolean layer_pixels_copy(const layer_pixels *from, layer_pixels *to, GError **error)
{
    const size_t floats = from->image.stride * (size_t)from->image.height;
    float *pixels = g_try_malloc(floats * sizeof *pixels);
    if (!pixels) {
        g_set_error(error, DIAT_PLUGIN_ERROR, DIAT_PLUGIN_ERROR_ENGINE,
                    _("Not enough memory to preview the %d × %d layer."), from->image.width,
                    from->image.height);
        return FALSE;
    }
    memcpy(pixels, from->image.pixels, floats * sizeof *pixels);
    *to = *from;
    to->image.pixels = pixels;
    return TRUE;
}

void layer_pixels_clear(layer_pixels *pixels)
{
    g_free(pixels->image.pixels);
    memset(pixels, 0, sizeof *pixels);
}

gboolean drawable_selection_box(GimpImage *image, GimpDrawable *drawable, diat_box *box)
{
    gboolean non_empty = FALSE;
    int x1, y1, x2, y2, off_x, off_y;
    if (!gimp_selection_bounds(image, &non_empty, &x1, &y1, &x2, &y2) || !non_empty) return FALSE;
    gimp_drawable_get_offsets(drawable, &off_x, &off_y);
    const int width = gimp_drawable_get_width(drawable);
    const int height = gimp_drawable_get_height(drawable);
    x1 = CLAMP(x1 - off_x, 0, width);
    x2 = CLAMP(x2 - off_x, 0, width);
    y1 = CLAMP(y1 - off_y, 0, height);
    y2 = CLAMP(y2 - off_y, 0, height);
    if (x2 <= x1 || y2 <= y1) return FALSE;
    *box = (diat_box){x1, y1, x2 - x1, y2 - y1};
    return TRUE;
}

/* Write, row by row, only the runs of pixels whose mask is nonzero: a
 * rectangle written whole would send every pixel through a float round trip,
 * which is exact for 8 and 16 bits but not for every precision and TRC.
 * `pixels` holds the rectangle that starts at (origin_x, origin_y). */
static void write_masked_runs(GeglBuffer *buffer, const Babl *format, const float *pixels,
                              size_t stride, int channels, int origin_x, int origin_y,
                              const float *mask, int mask_stride, const diat_box *bounds)
{
    for (int y = bounds->y; y < bounds->y + bounds->height; y++) {
        const float *mask_row = mask + (size_t)y * mask_stride;
        const float *pixel_row = pixels + (size_t)(y - origin_y) * stride;
        int x = bounds->x;
        const int end = bounds->x + bounds->width;
        while (x < end) {
            while (x < end && !(mask_row[x] > 0.0f)) x++;
            const int start = x;
            while (x < end && mask_row[x] > 0.0f) x++;
            if (x > start)
                gegl_buffer_set(buffer, GEGL_RECTANGLE(start, y, x - start, 1), 0, format,
                                pixel_row + (size_t)(start - origin_x) * channels,
                                GEGL_AUTO_ROWSTRIDE);
        }
    }
}

void write_in_place(GimpDrawable *drawable, const layer_pixels *edited, const float *mask,
                    const diat_box *bounds)
{
    /* The shadow buffer starts empty and merge_shadow applies all of the
     * drawable's editable area (the selection's bounds or everything), so it
     * first gets a copy of that area in the drawable's own format: exact. */
    int x, y, width, height;
    if (!gimp_drawable_mask_intersect(drawable, &x, &y, &width, &height)) return;
    GeglBuffer *source = gimp_drawable_get_buffer(drawable);
    GeglBuffer *shadow = gimp_drawable_get_shadow_buffer(drawable);
    gegl_buffer_copy(source, GEGL_RECTANGLE(x, y, width, height), GEGL_ABYSS_NONE, shadow,
                     GEGL_RECTANGLE(x, y, width, height));
    write_masked_runs(shadow, edited->format, edited->image.pixels, edited->image.stride,
                      edited->image.channels, 0, 0, mask, edited->image.width, bounds);
    g_object_unref(shadow);
    g_object_unref(source);
    gimp_drawable_merge_shadow(drawable, TRUE);
    gimp_drawable_update(drawable, bounds->x, bounds->y, bounds->width, bounds->height);
}

/* The smallest mask value the layer mask's storage keeps above zero: any
 * pixel the edit touched stays visibly "in the mask" even at 8 bits. */
static float smallest_visible_mask(GimpDrawable *mask_drawable)
{
    const Babl *format = gimp_drawable_get_format(mask_drawable);
    const Babl *type = babl_format_get_type(format, 0);
    if (type == babl_type("u8")) return 1.0f / 255.0f;
    if (type == babl_type("u16")) return 1.0f / 65535.0f;
    return 0.0f; /* u32, half and float keep any positive value we write */
}

GimpLayer *write_new_layer(GimpImage *image, GimpDrawable *drawable, const layer_pixels *edited,
                           const float *mask, const diat_box *bounds, const char *name)
{
    GimpLayer *layer = gimp_layer_new_from_drawable(drawable, image);
    gimp_item_set_name(GIMP_ITEM(layer), name);
    int off_x = 0, off_y = 0;
    gimp_drawable_get_offsets(drawable, &off_x, &off_y);
    GimpLayer *parent = GIMP_LAYER(gimp_item_get_parent(GIMP_ITEM(drawable)));
    const int position =
        GIMP_IS_LAYER(drawable) ? gimp_image_get_item_position(image, GIMP_ITEM(drawable)) : 0;
    gimp_image_insert_layer(image, layer, parent, position);
    gimp_layer_set_offsets(layer, off_x, off_y);
    /* A copied layer mask would hide the edit where the source was masked. */
    if (gimp_layer_get_mask(layer)) gimp_layer_remove_mask(layer, GIMP_MASK_DISCARD);

    /* The layer holds x + (y - x) / m = T(x) (up to the resampling of the
     * paste): with m as its mask GIMP composites y again. The residual over
     * the mask is a convex mix of T(x) - x values (both were enlarged with
     * the same non-negative weights), so the quotient stays in range. */
    const int channels = edited->image.channels, colour = channels - 1;
    const size_t row_floats = (size_t)bounds->width * channels;
    float *rows = g_new(float, row_floats * bounds->height);
    GeglBuffer *source = gimp_drawable_get_buffer(drawable);
    gegl_buffer_get(source, GEGL_RECTANGLE(bounds->x, bounds->y, bounds->width, bounds->height),
                    1.0, edited->format, rows, GEGL_AUTO_ROWSTRIDE, GEGL_ABYSS_NONE);
    g_object_unref(source);
    for (int y = 0; y < bounds->height; y++) {
        const float *mask_row = mask + (size_t)(bounds->y + y) * edited->image.width + bounds->x;
        const float *result = edited->image.pixels +
                              (size_t)(bounds->y + y) * edited->image.stride +
                              (size_t)bounds->x * channels;
        float *out = rows + (size_t)y * row_floats;
        for (int x = 0; x < bounds->width; x++) {
            const float m = mask_row[x];
            if (!(m > 0.0f)) continue;
            for (int c = 0; c < colour; c++) {
                const float original = out[x * channels + c];
                const float full = original + (result[x * channels + c] - original) / m;
                out[x * channels + c] = CLAMP(full, 0.0f, 1.0f);
            }
        }
    }
    GeglBuffer *target = gimp_drawable_get_buffer(GIMP_DRAWABLE(layer));
    write_masked_runs(target, edited->format, rows, row_floats, channels, bounds->x, bounds->y,
                      mask, edited->image.width, bounds);
    g_object_unref(target);
    g_free(rows);

    GimpLayerMask *layer_mask = gimp_layer_create_mask(layer, GIMP_ADD_MASK_BLACK);
    gimp_layer_add_mask(layer, layer_mask);
    const float floor_value = smallest_visible_mask(GIMP_DRAWABLE(layer_mask));
    float *mask_rect = g_new(float, (size_t)bounds->width * bounds->height);
    for (int y = 0; y < bounds->height; y++)
        for (int x = 0; x < bounds->width; x++) {
            const float m = mask[(size_t)(bounds->y + y) * edited->image.width + bounds->x + x];
            mask_rect[(size_t)y * bounds->width + x] =
                m > 0.0f ? CLAMP(MAX(m, floor_value), 0.0f, 1.0f) : 0.0f;
        }
    /* "Y float" is linear: GIMP reads masks back as linear coverage when it
     * composites, whatever TRC the mask is stored in. */
    GeglBuffer *mask_buffer = gimp_drawable_get_buffer(GIMP_DRAWABLE(layer_mask));
    gegl_buffer_set(mask_buffer,
                    GEGL_RECTANGLE(bounds->x, bounds->y, bounds->width, bounds->height), 0,
                    babl_format("Y float"), mask_rect, GEGL_AUTO_ROWSTRIDE);
    g_object_unref(mask_buffer);
    g_free(mask_rect);
    gimp_drawable_update(GIMP_DRAWABLE(layer), bounds->x, bounds->y, bounds->width, bounds->height);
    gimp_drawable_update(GIMP_DRAWABLE(layer_mask), bounds->x, bounds->y, bounds->width,
                         bounds->height);
    return layer;
}

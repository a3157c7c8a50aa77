/* PNG (libpng) and JPEG (libjpeg-turbo) reading and atomic writing.
 *
 * Both libraries report errors through a callback that must not return; we
 * record the message and longjmp back to the function that set the jump,
 * which frees what it allocated and turns the message into a diat_error.
 * Anything allocated between setjmp and longjmp is reached through
 * `volatile` pointers or through structs, never through plain locals.
 */
#include "image-io.h"
#include "diat-train.h"

#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jpeglib.h>
#include <jerror.h>
#include <png.h>

imgio_format imgio_format_from_path(const char *path)
{
    const char *dot = strrchr(path, '.');
    const char *slash = strrchr(path, '/');
    if (!dot || (slash && dot < slash)) return IMGIO_FORMAT_UNKNOWN;
    if (strcasecmp(dot, ".png") == 0) return IMGIO_FORMAT_PNG;
    if (strcasecmp(dot, ".jpg") == 0 || strcasecmp(dot, ".jpeg") == 0) return IMGIO_FORMAT_JPEG;
    return IMGIO_FORMAT_UNKNOWN;
}

const char *imgio_format_name(imgio_format format)
{
    switch (format) {
    case IMGIO_FORMAT_PNG: return "PNG";
    case IMGIO_FORMAT_JPEG: return "JPEG";
    case IMGIO_FORMAT_UNKNOWN: break;
    }
    return "unknown";
}

void imgio_free(imgio_image *img)
{
    if (!img) return;
    free(img->image.pixels);
    free(img->samples);
    memset(img, 0, sizeof *img);
}

/* Reject sizes we will not try to allocate; `what` is "PNG image" etc. */
static diat_status check_size(const char *path, const char *what, unsigned long width,
                              unsigned long height, diat_error *err)
{
    if (width == 0 || height == 0)
        return diat_set_error(err, DIAT_ERR_FORMAT, "The %s '%s' has no pixels (%lux%lu).", what,
                              path, width, height);
    if (width > IMGIO_MAX_SIDE || height > IMGIO_MAX_SIDE ||
        (unsigned long long)width * height > IMGIO_MAX_PIXELS)
        return diat_set_error(err, DIAT_ERR_FORMAT,
                              "The %s '%s' is %lux%lu pixels, larger than diat handles (at most "
                              "%d pixels per side and %llu megapixels).",
                              what, path, width, height, IMGIO_MAX_SIDE,
                              IMGIO_MAX_PIXELS / 1000000ull);
    return DIAT_OK;
}

diat_status imgio_alloc(imgio_image *img, int width, int height, int channels, int bit_depth,
                        diat_error *err)
{
    memset(img, 0, sizeof *img);
    if (width <= 0 || height <= 0 || channels < 1 || channels > 4 ||
        (bit_depth != 8 && bit_depth != 16))
        return diat_set_error(err, DIAT_ERR_ARGUMENT, "Invalid image layout %dx%dx%d, %d-bit.",
                              width, height, channels, bit_depth);
    size_t count = (size_t)width * (size_t)height * (size_t)channels;
    img->samples = calloc(count, sizeof *img->samples);
    img->image.pixels = calloc(count, sizeof *img->image.pixels);
    if (!img->samples || !img->image.pixels) {
        imgio_free(img);
        return diat_set_error(err, DIAT_ERR_MEMORY, "Out of memory for a %dx%d image.", width,
                              height);
    }
    img->image.width = width;
    img->image.height = height;
    img->image.channels = channels;
    img->image.stride = (size_t)width * (size_t)channels;
    img->bit_depth = bit_depth;
    return DIAT_OK;
}

void imgio_quantize(const diat_image *src, int bit_depth, uint16_t *dst)
{
    const float scale = bit_depth == 16 ? 65535.0f : 255.0f;
    const size_t row = (size_t)src->width * (size_t)src->channels;
    for (int y = 0; y < src->height; y++) {
        const float *in = src->pixels + (size_t)y * src->stride;
        uint16_t *out = dst + (size_t)y * row;
        for (size_t i = 0; i < row; i++) {
            float v = in[i];
            /* `!(v > 0)` also catches NaN, which lrintf leaves undefined. */
            if (!(v > 0.0f))
                out[i] = 0;
            else if (v >= 1.0f)
                out[i] = (uint16_t)scale;
            else
                out[i] = (uint16_t)lrintf(v * scale);
        }
    }
}

void imgio_dequantize(const uint16_t *src, int bit_depth, diat_image *dst)
{
    const float scale = bit_depth == 16 ? 65535.0f : 255.0f;
    const size_t row = (size_t)dst->width * (size_t)dst->channels;
    for (int y = 0; y < dst->height; y++) {
        float *out = dst->pixels + (size_t)y * dst->stride;
        const uint16_t *in = src + (size_t)y * row;
        for (size_t i = 0; i < row; i++) out[i] = (float)in[i] / scale;
    }
}

/* ---- PNG ---------------------------------------------------------------- */

typedef struct png_job {
    FILE *fp;
    diat_status code;
    char message[300];
} png_job;

static void png_on_error(png_structp png, png_const_charp msg)
{
    png_job *job = png_get_error_ptr(png);
    if (!job->message[0]) snprintf(job->message, sizeof job->message, "%s", msg);
    png_longjmp(png, 1);
}

static void png_on_warning(png_structp png, png_const_charp msg)
{
    (void)png; /* warnings (bad ancillary chunks, ...) do not stop a read */
    (void)msg;
}

/* Our own read function, so a short file says "truncated", not "Read Error". */
static void png_read_bytes(png_structp png, png_bytep data, size_t length)
{
    png_job *job = png_get_io_ptr(png);
    if (fread(data, 1, length, job->fp) != length)
        png_error(png, ferror(job->fp) ? "read error" : "the file is truncated");
}

static diat_status load_png(const char *path, FILE *fp, imgio_image *out, diat_error *err)
{
    png_job job = {.fp = fp, .code = DIAT_ERR_FORMAT};
    png_structp png =
        png_create_read_struct(PNG_LIBPNG_VER_STRING, &job, png_on_error, png_on_warning);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!info) {
        png_destroy_read_struct(&png, NULL, NULL);
        return diat_set_error(err, DIAT_ERR_MEMORY, "Out of memory reading '%s'.", path);
    }
    unsigned char *volatile bytes = NULL;
    png_bytep *volatile rows = NULL;
    if (setjmp(png_jmpbuf(png))) {
        free(rows);
        free(bytes);
        /* Read the job back through libpng: it was changed after setjmp. */
        const png_job *failed = png_get_error_ptr(png);
        diat_status code = diat_set_error(err, failed->code, "Cannot read PNG image '%s': %s.",
                                          path, failed->message);
        png_destroy_read_struct(&png, &info, NULL);
        imgio_free(out);
        return code;
    }
    png_set_read_fn(png, &job, png_read_bytes);
    png_set_user_limits(png, IMGIO_MAX_SIDE, IMGIO_MAX_SIDE);
    png_read_info(png, info);
    png_uint_32 width = png_get_image_width(png, info);
    png_uint_32 height = png_get_image_height(png, info);
    diat_error size_err;
    if (check_size(path, "PNG image", width, height, &size_err) != DIAT_OK) {
        png_destroy_read_struct(&png, &info, NULL);
        if (err) *err = size_err;
        return size_err.code;
    }
    /* Palette -> RGB, gray below 8 bits -> 8, tRNS -> an alpha channel. */
    png_set_expand(png);
    png_set_interlace_handling(png);
    png_read_update_info(png, info);
    int channels = png_get_channels(png, info);
    int depth = png_get_bit_depth(png, info);
    size_t rowbytes = png_get_rowbytes(png, info);
    if (channels < 1 || channels > 4 || (depth != 8 && depth != 16)) {
        snprintf(job.message, sizeof job.message, "unsupported layout (%d channels, %d-bit)",
                 channels, depth);
        png_longjmp(png, 1);
    }
    bytes = malloc(rowbytes * height);
    rows = malloc(sizeof *rows * height);
    diat_error alloc_err;
    if (!bytes || !rows ||
        imgio_alloc(out, (int)width, (int)height, channels, depth, &alloc_err) != DIAT_OK) {
        job.code = DIAT_ERR_MEMORY;
        snprintf(job.message, sizeof job.message, "out of memory for %lux%lu pixels",
                 (unsigned long)width, (unsigned long)height);
        png_longjmp(png, 1);
    }
    for (png_uint_32 y = 0; y < height; y++) rows[y] = bytes + y * rowbytes;
    png_read_image(png, rows);
    png_read_end(png, NULL);

    for (size_t y = 0; y < height; y++) {
        const unsigned char *src = rows[y];
        uint16_t *dst = out->samples + y * (size_t)width * (size_t)channels;
        size_t n = (size_t)width * (size_t)channels;
        /* 16-bit PNG samples are big-endian. */
        if (depth == 16)
            for (size_t i = 0; i < n; i++) dst[i] = (uint16_t)(src[2 * i] << 8 | src[2 * i + 1]);
        else
            for (size_t i = 0; i < n; i++) dst[i] = src[i];
    }
    free(rows);
    free(bytes);
    png_destroy_read_struct(&png, &info, NULL);
    out->format = IMGIO_FORMAT_PNG;
    imgio_dequantize(out->samples, depth, &out->image);
    return DIAT_OK;
}

static diat_status save_png(FILE *fp, const char *path, const imgio_image *img, diat_error *err)
{
    static const int color_types[5] = {0, PNG_COLOR_TYPE_GRAY, PNG_COLOR_TYPE_GRAY_ALPHA,
                                       PNG_COLOR_TYPE_RGB, PNG_COLOR_TYPE_RGB_ALPHA};
    png_job job = {.fp = fp, .code = DIAT_ERR_IO};
    png_structp png =
        png_create_write_struct(PNG_LIBPNG_VER_STRING, &job, png_on_error, png_on_warning);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!info) {
        png_destroy_write_struct(&png, NULL);
        return diat_set_error(err, DIAT_ERR_MEMORY, "Out of memory writing '%s'.", path);
    }
    unsigned char *volatile row = NULL;
    if (setjmp(png_jmpbuf(png))) {
        free(row);
        png_destroy_write_struct(&png, &info);
        return diat_set_error(err, job.code, "Cannot write PNG image '%s': %s.", path, job.message);
    }
    const int w = img->image.width, h = img->image.height, c = img->image.channels;
    const int depth = img->bit_depth;
    png_init_io(png, fp);
    png_set_IHDR(png, info, (png_uint_32)w, (png_uint_32)h, depth, color_types[c],
                 PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    size_t n = (size_t)w * (size_t)c;
    row = malloc(n * (depth == 16 ? 2 : 1));
    if (!row) {
        job.code = DIAT_ERR_MEMORY;
        snprintf(job.message, sizeof job.message, "out of memory");
        png_longjmp(png, 1);
    }
    for (int y = 0; y < h; y++) {
        const uint16_t *src = img->samples + (size_t)y * n;
        if (depth == 16)
            for (size_t i = 0; i < n; i++) {
                row[2 * i] = (unsigned char)(src[i] >> 8);
                row[2 * i + 1] = (unsigned char)(src[i] & 0xff);
            }
        else
            for (size_t i = 0; i < n; i++) row[i] = (unsigned char)src[i];
        png_write_row(png, row);
    }
    png_write_end(png, NULL);
    free(row);
    png_destroy_write_struct(&png, &info);
    return DIAT_OK;
}

/* ---- JPEG --------------------------------------------------------------- */

typedef struct jpeg_job {
    struct jpeg_error_mgr base; /* first, so cinfo->err casts back to the job */
    jmp_buf jump;
    char message[JMSG_LENGTH_MAX];
} jpeg_job;

static void jpeg_on_error(j_common_ptr cinfo)
{
    jpeg_job *job = (jpeg_job *)cinfo->err;
    cinfo->err->format_message(cinfo, job->message);
    longjmp(job->jump, 1);
}

/* libjpeg only warns on a truncated file and fills the rest with gray; a
 * half-gray photo is worse than a clear error, so those warnings are fatal. */
static void jpeg_on_message(j_common_ptr cinfo, int level)
{
    if (level < 0 &&
        (cinfo->err->msg_code == JWRN_JPEG_EOF || cinfo->err->msg_code == JWRN_HIT_MARKER))
        jpeg_on_error(cinfo);
}

static diat_status load_jpeg(const char *path, FILE *fp, imgio_image *out, diat_error *err)
{
    struct jpeg_decompress_struct cinfo;
    jpeg_job job;
    memset(&job, 0, sizeof job);
    cinfo.err = jpeg_std_error(&job.base);
    job.base.error_exit = jpeg_on_error;
    job.base.emit_message = jpeg_on_message;
    unsigned char *volatile row = NULL;
    if (setjmp(job.jump)) {
        free(row);
        jpeg_destroy_decompress(&cinfo);
        imgio_free(out);
        return diat_set_error(err, DIAT_ERR_FORMAT, "Cannot read JPEG image '%s': %s.", path,
                              job.message);
    }
    jpeg_create_decompress(&cinfo);
    jpeg_stdio_src(&cinfo, fp);
    jpeg_read_header(&cinfo, TRUE);
    diat_error local;
    diat_status status = DIAT_OK;
    if (cinfo.jpeg_color_space == JCS_CMYK || cinfo.jpeg_color_space == JCS_YCCK)
        status = diat_set_error(&local, DIAT_ERR_FORMAT,
                                "The JPEG image '%s' is CMYK, which diat does not read; "
                                "convert it to RGB first.",
                                path);
    else
        status = check_size(path, "JPEG image", cinfo.image_width, cinfo.image_height, &local);
    if (status == DIAT_OK) {
        cinfo.out_color_space = cinfo.num_components == 1 ? JCS_GRAYSCALE : JCS_RGB;
        jpeg_start_decompress(&cinfo);
        status = imgio_alloc(out, (int)cinfo.output_width, (int)cinfo.output_height,
                             cinfo.output_components, 8, &local);
    }
    if (status == DIAT_OK) {
        size_t n = (size_t)cinfo.output_width * (size_t)cinfo.output_components;
        row = malloc(n);
        if (!row)
            status = diat_set_error(&local, DIAT_ERR_MEMORY, "Out of memory reading '%s'.", path);
        while (status == DIAT_OK && cinfo.output_scanline < cinfo.output_height) {
            size_t y = cinfo.output_scanline;
            JSAMPROW rows[1] = {row};
            jpeg_read_scanlines(&cinfo, rows, 1);
            for (size_t i = 0; i < n; i++) out->samples[y * n + i] = row[i];
        }
        if (status == DIAT_OK) jpeg_finish_decompress(&cinfo);
    }
    free(row);
    jpeg_destroy_decompress(&cinfo);
    if (status != DIAT_OK) {
        imgio_free(out);
        if (err) *err = local;
        return status;
    }
    out->format = IMGIO_FORMAT_JPEG;
    imgio_dequantize(out->samples, 8, &out->image);
    return DIAT_OK;
}

static diat_status save_jpeg(FILE *fp, const char *path, const imgio_image *img, diat_error *err)
{
    struct jpeg_compress_struct cinfo;
    jpeg_job job;
    memset(&job, 0, sizeof job);
    cinfo.err = jpeg_std_error(&job.base);
    job.base.error_exit = jpeg_on_error;
    unsigned char *volatile row = NULL;
    if (setjmp(job.jump)) {
        free(row);
        jpeg_destroy_compress(&cinfo);
        return diat_set_error(err, DIAT_ERR_IO, "Cannot write JPEG image '%s': %s.", path,
                              job.message);
    }
    const int w = img->image.width, h = img->image.height, c = img->image.channels;
    const int colour = c >= 3 ? 3 : 1; /* alpha (channel 2 or 4) is dropped */
    jpeg_create_compress(&cinfo);
    jpeg_stdio_dest(&cinfo, fp);
    cinfo.image_width = (JDIMENSION)w;
    cinfo.image_height = (JDIMENSION)h;
    cinfo.input_components = colour;
    cinfo.in_color_space = colour == 3 ? JCS_RGB : JCS_GRAYSCALE;
    jpeg_set_defaults(&cinfo);
    jpeg_set_quality(&cinfo, 95, TRUE);
    /* No chroma subsampling: edited faces have fine coloured detail. */
    for (int i = 0; i < cinfo.num_components; i++)
        cinfo.comp_info[i].h_samp_factor = cinfo.comp_info[i].v_samp_factor = 1;
    row = malloc((size_t)w * (size_t)colour);
    if (!row) {
        snprintf(job.message, sizeof job.message, "out of memory");
        longjmp(job.jump, 1);
    }
    jpeg_start_compress(&cinfo, TRUE);
    while (cinfo.next_scanline < cinfo.image_height) {
        const uint16_t *src = img->samples + (size_t)cinfo.next_scanline * (size_t)w * c;
        for (int x = 0; x < w; x++)
            for (int k = 0; k < colour; k++) {
                unsigned v = src[(size_t)x * c + k];
                /* 16 -> 8 bits with rounding: v / 257. */
                row[(size_t)x * colour + k] =
                    (unsigned char)(img->bit_depth == 16 ? (v * 255u + 32767u) / 65535u : v);
            }
        JSAMPROW rows[1] = {row};
        jpeg_write_scanlines(&cinfo, rows, 1);
    }
    jpeg_finish_compress(&cinfo);
    free(row);
    jpeg_destroy_compress(&cinfo);
    return DIAT_OK;
}

/* ---- files -------------------------------------------------------------- */

diat_status imgio_load(const char *path, imgio_image *out, diat_error *err)
{
    memset(out, 0, sizeof *out);
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return diat_set_error(err, DIAT_ERR_IO, "Cannot open image '%s': %s.", path,
                              strerror(errno));
    /* Enough for the PNG signature and IHDR's width and height. */
    unsigned char magic[24] = {0};
    size_t got = fread(magic, 1, sizeof magic, fp);
    rewind(fp);
    diat_status status;
    if (got >= 8 && png_sig_cmp(magic, 0, 8) == 0) {
        /* Refuse absurd sizes before libpng reads on (it wants the first
         * IDAT before png_read_info returns). */
        unsigned long width = (unsigned long)magic[16] << 24 | (unsigned long)magic[17] << 16 |
                              (unsigned long)magic[18] << 8 | magic[19];
        unsigned long height = (unsigned long)magic[20] << 24 | (unsigned long)magic[21] << 16 |
                               (unsigned long)magic[22] << 8 | magic[23];
        if (got == 24 && memcmp(magic + 12, "IHDR", 4) == 0 && width && height)
            status = check_size(path, "PNG image", width, height, err);
        else
            status = DIAT_OK; /* libpng reports a broken header in its own words */
        if (status == DIAT_OK) status = load_png(path, fp, out, err);
    } else if (got >= 3 && magic[0] == 0xff && magic[1] == 0xd8 && magic[2] == 0xff)
        status = load_jpeg(path, fp, out, err);
    else if (got == 0)
        status = diat_set_error(err, DIAT_ERR_FORMAT, "The image file '%s' is empty.", path);
    else
        status =
            diat_set_error(err, DIAT_ERR_FORMAT,
                           "The file '%s' is not a PNG or JPEG image (unknown signature).", path);
    fclose(fp);
    return status;
}

/* Permissions for a new file: those of the file it replaces, else 0666 less
 * the umask (mkstemp alone would give 0600). */
static mode_t new_file_mode(const char *path)
{
    struct stat st;
    if (stat(path, &st) == 0) return st.st_mode & 0777;
    mode_t mask = umask(0);
    umask(mask);
    return 0666 & ~mask;
}

/* What goes into the temporary file of write_atomic. */
typedef struct file_content {
    const imgio_image *img; /* an image in `format`, or */
    imgio_format format;
    const char *text; /* text, when img is NULL */
} file_content;

static diat_status write_content(FILE *fp, const char *path, const file_content *c, diat_error *err)
{
    if (c->img)
        return c->format == IMGIO_FORMAT_PNG ? save_png(fp, path, c->img, err)
                                             : save_jpeg(fp, path, c->img, err);
    fputs(c->text, fp);
    return DIAT_OK;
}

/* The temporary lives beside the target so rename() stays atomic; it is
 * flushed to disk, given the mode of the file it replaces, and renamed over
 * `path` only once complete. */
static diat_status write_atomic(const char *path, const file_content *content, diat_error *err)
{
    if (!path || !path[0]) return diat_set_error(err, DIAT_ERR_ARGUMENT, "No file name to write.");
    size_t len = strlen(path) + sizeof ".tmp-XXXXXX";
    char *tmp = malloc(len);
    if (!tmp) return diat_set_error(err, DIAT_ERR_MEMORY, "Out of memory writing '%s'.", path);
    snprintf(tmp, len, "%s.tmp-XXXXXX", path);
    mode_t mode = new_file_mode(path);
    int fd = mkstemp(tmp);
    if (fd < 0) {
        diat_status s =
            diat_set_error(err, DIAT_ERR_IO, "Cannot create '%s': %s.", path, strerror(errno));
        free(tmp);
        return s;
    }
    FILE *fp = fdopen(fd, "wb");
    if (!fp) {
        close(fd);
        unlink(tmp);
        free(tmp);
        return diat_set_error(err, DIAT_ERR_IO, "Cannot write '%s': %s.", path, strerror(errno));
    }
    diat_status status = write_content(fp, path, content, err);
    int saved_errno = 0;
    if (status == DIAT_OK &&
        (fflush(fp) != 0 || ferror(fp) || fchmod(fd, mode) != 0 || fsync(fd) != 0))
        saved_errno = errno ? errno : EIO;
    if (fclose(fp) != 0 && status == DIAT_OK && !saved_errno) saved_errno = errno ? errno : EIO;
    if (status == DIAT_OK && saved_errno)
        status =
            diat_set_error(err, DIAT_ERR_IO, "Cannot write '%s': %s.", path, strerror(saved_errno));
    if (status == DIAT_OK && rename(tmp, path) != 0)
        status = diat_set_error(err, DIAT_ERR_IO, "Cannot write '%s': %s.", path, strerror(errno));
    if (status != DIAT_OK) unlink(tmp);
    free(tmp);
    return status;
}

diat_status imgio_save(const char *path, const imgio_image *img, imgio_format format,
                       diat_error *err)
{
    if (format == IMGIO_FORMAT_UNKNOWN) format = imgio_format_from_path(path);
    if (format == IMGIO_FORMAT_UNKNOWN)
        return diat_set_error(err, DIAT_ERR_ARGUMENT,
                              "Cannot tell the format of '%s': use a .png, .jpg or .jpeg name.",
                              path);
    if (!img->samples || img->image.channels < 1 || img->image.channels > 4 ||
        (img->bit_depth != 8 && img->bit_depth != 16))
        return diat_set_error(err, DIAT_ERR_ARGUMENT, "Nothing valid to write to '%s'.", path);
    const file_content content = {img, format, NULL};
    return write_atomic(path, &content, err);
}

diat_status imgio_save_text(const char *path, const char *text, diat_error *err)
{
    const file_content content = {NULL, IMGIO_FORMAT_UNKNOWN, text};
    return write_atomic(path, &content, err);
}

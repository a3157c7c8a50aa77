/* compare_images — the pixel checks of tests/test_cli.sh, through data/image-io.
 *
 *   compare_images describe IMG [X Y]
 *       "WxH channels=C depth=D format=F", then the samples at (X, Y).
 *   compare_images untouched IN OUT MASK [--expect-change] [--expect-red]
 *       Every pixel whose MASK sample is 0 must be bit-identical in IN and
 *       OUT, and alpha must be identical everywhere. --expect-change: some
 *       masked pixel changed. --expect-red: fully masked pixels got redder
 *       (mean red +0.05 or more, green and blue within 0.01).
 *   compare_images coverage MASK X Y W H MARGIN MIN_INSIDE MAX_OUTSIDE
 *       Of the rectangle's pixels at least MIN_INSIDE (a fraction) have a
 *       non-zero mask; of those farther than MARGIN from it at most
 *       MAX_OUTSIDE do.
 *   compare_images close A B MAX_STEPS
 *       Same size and channels, and no sample differs by more than MAX_STEPS
 *       integer steps (prints the largest difference): the same photo
 *       edited on two backends.
 *   compare_images convert IN OUT CHANNELS DEPTH
 *       Rewrite IN with 1-4 channels (gray by Rec. 709 luma, alpha as a
 *       horizontal ramp) and depth 8 or 16 (16-bit gets genuine low bits).
 *
 * Exit status 0 when the check holds, 1 when it does not, 2 on bad usage.
 */
#include "image-io.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int load(const char *path, imgio_image *img)
{
    diat_error err = {0};
    if (imgio_load(path, img, &err) == DIAT_OK) return 0;
    fprintf(stderr, "compare_images: %s\n", err.message);
    return -1;
}

static int describe(int argc, char *argv[])
{
    imgio_image img;
    if (argc != 1 && argc != 3) return 2;
    if (load(argv[0], &img)) return 1;
    const int c = img.image.channels;
    printf("%dx%d channels=%d depth=%d format=%s\n", img.image.width, img.image.height, c,
           img.bit_depth, imgio_format_name(img.format));
    if (argc == 3) {
        int x = atoi(argv[1]), y = atoi(argv[2]);
        if (x < 0 || y < 0 || x >= img.image.width || y >= img.image.height) {
            imgio_free(&img);
            return 2;
        }
        const uint16_t *px = img.samples + ((size_t)y * img.image.width + (size_t)x) * c;
        printf("pixel");
        for (int k = 0; k < c; k++) printf(" %u", px[k]);
        printf("\n");
    }
    imgio_free(&img);
    return 0;
}

static int untouched(int argc, char *argv[])
{
    int expect_change = 0, expect_red = 0;
    for (int i = 3; i < argc; i++) {
        if (strcmp(argv[i], "--expect-change") == 0)
            expect_change = 1;
        else if (strcmp(argv[i], "--expect-red") == 0)
            expect_red = 1;
        else
            return 2;
    }
    if (argc < 3) return 2;
    imgio_image in, out, mask;
    if (load(argv[0], &in)) return 1;
    if (load(argv[1], &out) || load(argv[2], &mask)) {
        imgio_free(&in);
        return 1;
    }
    int rc = 0;
    const int w = in.image.width, h = in.image.height, c = in.image.channels;
    if (out.image.width != w || out.image.height != h || out.image.channels != c ||
        out.bit_depth != in.bit_depth || mask.image.width != w || mask.image.height != h ||
        mask.image.channels != 1) {
        printf("layout differs: in %dx%dx%d/%d, out %dx%dx%d/%d, mask %dx%dx%d\n", w, h, c,
               in.bit_depth, out.image.width, out.image.height, out.image.channels, out.bit_depth,
               mask.image.width, mask.image.height, mask.image.channels);
        rc = 1;
        goto done;
    }
    const int colour = c >= 3 ? 3 : 1, alpha = c == 2 || c == 4;
    const double scale = in.bit_depth == 16 ? 65535.0 : 255.0;
    size_t masked = 0, full = 0, unmasked_changed = 0, masked_changed = 0, alpha_changed = 0;
    double delta[3] = {0, 0, 0};
    for (size_t i = 0; i < (size_t)w * h; i++) {
        const uint16_t *a = in.samples + i * c, *b = out.samples + i * c;
        int differs = memcmp(a, b, (size_t)colour * sizeof *a) != 0;
        if (alpha && a[c - 1] != b[c - 1]) alpha_changed++;
        if (mask.samples[i] == 0) {
            unmasked_changed += differs;
            continue;
        }
        masked++;
        masked_changed += differs;
        if (mask.samples[i] == 255) {
            full++;
            for (int k = 0; k < colour; k++) delta[k] += (b[k] - (double)a[k]) / scale;
        }
    }
    if (full)
        for (int k = 0; k < 3; k++) delta[k] /= (double)full;
    printf("pixels=%zu masked=%zu unmasked_changed=%zu masked_changed=%zu alpha_changed=%zu "
           "full=%zu mean_delta=%.4f,%.4f,%.4f\n",
           (size_t)w * h, masked, unmasked_changed, masked_changed, alpha_changed, full, delta[0],
           delta[1], delta[2]);
    if (unmasked_changed || alpha_changed) rc = 1;
    if (expect_change && masked_changed == 0) rc = 1;
    if (expect_red && colour == 3 &&
        !(full > 0 && delta[0] >= 0.05 && fabs(delta[1]) <= 0.01 && fabs(delta[2]) <= 0.01))
        rc = 1;
done:
    imgio_free(&in);
    imgio_free(&out);
    imgio_free(&mask);
    return rc;
}

static int coverage(int argc, char *argv[])
{
    if (argc != 8) return 2;
    imgio_image mask;
    if (load(argv[0], &mask)) return 1;
    const int x0 = atoi(argv[1]), y0 = atoi(argv[2]), rw = atoi(argv[3]), rh = atoi(argv[4]);
    const int margin = atoi(argv[5]);
    const double min_inside = atof(argv[6]), max_outside = atof(argv[7]);
    const int w = mask.image.width, h = mask.image.height, c = mask.image.channels;
    size_t inside = 0, inside_on = 0, far = 0, far_on = 0;
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            int on = mask.samples[((size_t)y * w + x) * c] > 0;
            if (x >= x0 && x < x0 + rw && y >= y0 && y < y0 + rh) {
                inside++;
                inside_on += on;
            } else if (x < x0 - margin || x >= x0 + rw + margin || y < y0 - margin ||
                       y >= y0 + rh + margin) {
                far++;
                far_on += on;
            }
        }
    imgio_free(&mask);
    double fin = inside ? (double)inside_on / (double)inside : 0.0;
    double fout = far ? (double)far_on / (double)far : 0.0;
    printf("inside=%.4f (%zu of %zu) outside=%.4f (%zu of %zu)\n", fin, inside_on, inside, fout,
           far_on, far);
    return fin >= min_inside && fout <= max_outside ? 0 : 1;
}

static int convert(int argc, char *argv[])
{
    if (argc != 4) return 2;
    const int channels = atoi(argv[2]), depth = atoi(argv[3]);
    if (channels < 1 || channels > 4 || (depth != 8 && depth != 16)) return 2;
    imgio_image in, out;
    if (load(argv[0], &in)) return 1;
    diat_error err = {0};
    const int w = in.image.width, h = in.image.height, c = in.image.channels;
    if (imgio_alloc(&out, w, h, channels, depth, &err) != DIAT_OK) {
        fprintf(stderr, "compare_images: %s\n", err.message);
        imgio_free(&in);
        return 1;
    }
    const float *src = in.image.pixels;
    float *dst = out.image.pixels;
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            const float *p = src + ((size_t)y * w + x) * c;
            float rgb[3] = {p[0], p[c >= 3 ? 1 : 0], p[c >= 3 ? 2 : 0]};
            float *q = dst + ((size_t)y * w + x) * channels;
            int colour = channels >= 3 ? 3 : 1;
            if (colour == 3)
                memcpy(q, rgb, sizeof rgb);
            else
                q[0] = 0.2126f * rgb[0] + 0.7152f * rgb[1] + 0.0722f * rgb[2];
            if (depth == 16) /* genuine 16-bit data: low bits that 8 bits cannot hold */
                for (int k = 0; k < colour; k++)
                    q[k] = fminf(1.0f, q[k] + (float)((x * 31 + y * 17) % 251) / 65535.0f);
            if (channels == 2 || channels == 4) q[channels - 1] = (float)(x + 1) / (float)w;
        }
    imgio_quantize(&out.image, depth, out.samples);
    diat_status st = imgio_save(argv[1], &out, IMGIO_FORMAT_UNKNOWN, &err);
    if (st != DIAT_OK) fprintf(stderr, "compare_images: %s\n", err.message);
    imgio_free(&in);
    imgio_free(&out);
    return st == DIAT_OK ? 0 : 1;
}

static int close_enough(int argc, char *argv[])
{
    if (argc != 3) return 2;
    const int max_steps = atoi(argv[2]);
    imgio_image a, b;
    if (load(argv[0], &a)) return 1;
    if (load(argv[1], &b)) {
        imgio_free(&a);
        return 1;
    }
    int rc = 1;
    if (a.image.width != b.image.width || a.image.height != b.image.height ||
        a.image.channels != b.image.channels || a.bit_depth != b.bit_depth) {
        fprintf(stderr, "compare_images: the images differ in size, channels or depth\n");
    } else {
        const size_t count = (size_t)a.image.width * a.image.height * a.image.channels;
        int largest = 0;
        size_t differing = 0;
        for (size_t i = 0; i < count; i++) {
            int d = abs((int)a.samples[i] - (int)b.samples[i]);
            if (d > largest) largest = d;
            differing += d != 0;
        }
        printf("largest difference %d step(s); %zu of %zu samples differ\n", largest, differing,
               count);
        rc = largest <= max_steps ? 0 : 1;
    }
    imgio_free(&a);
    imgio_free(&b);
    return rc;
}

int main(int argc, char *argv[])
{
    int rc = 2;
    if (argc >= 2) {
        if (strcmp(argv[1], "describe") == 0)
            rc = describe(argc - 2, argv + 2);
        else if (strcmp(argv[1], "untouched") == 0)
            rc = untouched(argc - 2, argv + 2);
        else if (strcmp(argv[1], "coverage") == 0)
            rc = coverage(argc - 2, argv + 2);
        else if (strcmp(argv[1], "convert") == 0)
            rc = convert(argc - 2, argv + 2);
        else if (strcmp(argv[1], "close") == 0)
            rc = close_enough(argc - 2, argv + 2);
    }
    if (rc == 2) fprintf(stderr, "compare_images: bad usage (see the comment at the top)\n");
    return rc;
}

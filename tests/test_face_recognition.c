/* The face recognition network phi and the two ops it brought:
 *  - resize_bilinear and maxpool: forward against naive double references
 *    written here, backward against central finite differences of those
 *    references (plus accumulation, ties and padding for max pooling);
 *  - the network's input gradient against central finite differences of a
 *    random linear functional of the embedding;
 *  - the embeddings against face-api's own JavaScript network
 *    (tests/data/faces/face-api-embeddings.txt, written by
 *    tests/face-recognition/reference.mjs) to 1e-3;
 *  - dlib's 0.6 rule on dlib's example faces: two chips of the same person
 *    are closer than 0.6, chips of different people farther.
 *
 *     test-face-recognition [MODEL] [FACES_DIR]
 * MODEL defaults to $DIAT_FACE_MODEL, else
 * $DIAT_SOURCE_ROOT/models/face-recognition-resnet29.safetensors; FACES_DIR
 * to $DIAT_SOURCE_ROOT/tests/data/faces. */
#include "diat-train.h"
#include "image-io.h"
#include "testutil.h"

#include <string.h>

static diat_context *ctx;
static const diat_backend *be;
static unsigned long long rng = 0xface0ffULL;
static char model_path[4096], faces_dir[4096];

static diat_tensor new_tensor(int n, int c, int h, int w)
{
    diat_tensor t;
    diat_error err;
    if (diat_tensor_alloc(ctx, &t, n, c, h, w, &err) != DIAT_OK) {
        fprintf(stderr, "tensor alloc failed: %s\n", err.message);
        exit(1);
    }
    return t;
}

static void fill_random(diat_tensor *t, float lo, float hi)
{
    size_t n = diat_tensor_count(t);
    for (size_t i = 0; i < n; i++) t->data[i] = lo + (hi - lo) * 0.5f * (test_rand(&rng) + 1.0f);
}

static size_t random_index(size_t count)
{
    return (size_t)((test_rand(&rng) + 1.0f) * 0.5f * (float)count) % count;
}

/* ---- naive references, in double ----------------------------------------- */

/* F.interpolate(mode="bilinear", align_corners=False) written from its
 * definition: sample at (o + 0.5) * in/out - 0.5, clamp below at 0, take
 * the two neighbours (the upper one clamped to the edge). */
static void reference_resize(const double *x, int planes, int h, int w, int out_h, int out_w,
                             double *y)
{
    for (int p = 0; p < planes; p++)
        for (int oy = 0; oy < out_h; oy++)
            for (int ox = 0; ox < out_w; ox++) {
                double sy = fmax(0.0, (oy + 0.5) * h / out_h - 0.5);
                double sx = fmax(0.0, (ox + 0.5) * w / out_w - 0.5);
                int y0 = (int)floor(sy), x0 = (int)floor(sx);
                int y1 = y0 + 1 < h ? y0 + 1 : h - 1, x1 = x0 + 1 < w ? x0 + 1 : w - 1;
                double fy = sy - y0, fx = sx - x0;
                const double *plane = x + (size_t)p * h * w;
                y[((size_t)p * out_h + oy) * out_w + ox] =
                    (1 - fy) * ((1 - fx) * plane[y0 * w + x0] + fx * plane[y0 * w + x1]) +
                    fy * ((1 - fx) * plane[y1 * w + x0] + fx * plane[y1 * w + x1]);
            }
}

/* Max over the in-image cells of each window (padding never wins). */
static void reference_maxpool(const double *x, int planes, int h, int w, int k, int s, int pad,
                              int out_h, int out_w, double *y)
{
    for (int p = 0; p < planes; p++)
        for (int oy = 0; oy < out_h; oy++)
            for (int ox = 0; ox < out_w; ox++) {
                double best = -INFINITY;
                for (int i = 0; i < k; i++)
                    for (int j = 0; j < k; j++) {
                        int r = oy * s - pad + i, c = ox * s - pad + j;
                        if (r < 0 || r >= h || c < 0 || c >= w) continue;
                        best = fmax(best, x[((size_t)p * h + r) * w + c]);
                    }
                y[((size_t)p * out_h + oy) * out_w + ox] = best;
            }
}

/* ---- op checks -------------------------------------------------------------- */

typedef struct op_case {
    int n, c, h, w, out_h, out_w;
    int k, s, pad; /* max pooling only */
} op_case;

static void reference_of(int is_pool, const op_case *oc, const double *x, double *y)
{
    int planes = oc->n * oc->c;
    if (is_pool)
        reference_maxpool(x, planes, oc->h, oc->w, oc->k, oc->s, oc->pad, oc->out_h, oc->out_w, y);
    else
        reference_resize(x, planes, oc->h, oc->w, oc->out_h, oc->out_w, y);
}

/* Forward against the reference; backward (twice, onto random starting
 * contents, so accumulation is checked too) against central differences
 * of L = sum(r * reference(x)) at sampled inputs. */
static void check_op(int is_pool, op_case oc)
{
    char label[96];
    snprintf(label, sizeof label, "%s %dx%d -> %dx%d (k%d s%d p%d)", is_pool ? "maxpool" : "resize",
             oc.h, oc.w, oc.out_h, oc.out_w, oc.k, oc.s, oc.pad);
    diat_tensor x = new_tensor(oc.n, oc.c, oc.h, oc.w),
                y = new_tensor(oc.n, oc.c, oc.out_h, oc.out_w);
    diat_tensor r = new_tensor(oc.n, oc.c, oc.out_h, oc.out_w),
                dx = new_tensor(oc.n, oc.c, oc.h, oc.w);
    fill_random(&x, -1.0f, 1.0f);
    fill_random(&r, -1.0f, 1.0f);
    fill_random(&dx, -1.0f, 1.0f);
    size_t in_count = diat_tensor_count(&x), out_count = diat_tensor_count(&y);
    double *xd = malloc(in_count * sizeof *xd), *yd = malloc(out_count * sizeof *yd);
    float *dx0 = malloc(in_count * sizeof *dx0);
    for (size_t i = 0; i < in_count; i++) xd[i] = x.data[i];
    memcpy(dx0, dx.data, in_count * sizeof *dx0);

    if (is_pool)
        be->maxpool_forward(ctx, &x, oc.k, oc.s, oc.pad, &y);
    else
        be->resize_bilinear_forward(ctx, &x, &y);
    reference_of(is_pool, &oc, xd, yd);
    /* Max pooling only copies values: exact. The resize computes its sample
     * coordinates in float32, as PyTorch does for float tensors: a coordinate
     * near 150 carries ~1e-5 of rounding, so weights (and, for inputs in
     * [-1, 1], outputs) may differ from the double reference by ~2e-5. */
    const double tol = is_pool ? 0.0 : 1e-4;
    double worst = 0.0;
    for (size_t i = 0; i < out_count; i++) worst = fmax(worst, fabs(y.data[i] - yd[i]));
    CHECK_MSG(worst <= tol, "%s: forward differs by %.3g", label, worst);

    for (int pass = 0; pass < 2; pass++) {
        if (is_pool)
            be->maxpool_backward(ctx, &x, &r, oc.k, oc.s, oc.pad, &dx);
        else
            be->resize_bilinear_backward(ctx, &r, &dx);
    }
    /* Both ops are piecewise linear and the reference is in double, so a
     * small step gives the reference's derivative to ~1e-9 (a max-pool
     * winner would only switch if two random values came within 1e-6 of each
     * other); the resize's float32 weights again allow ~2e-5. */
    const double eps = 1e-6;
    double worst_grad = 0.0;
    int samples = in_count < 64 ? (int)in_count : 64;
    for (int sample = 0; sample < samples; sample++) {
        size_t j = in_count < 64 ? (size_t)sample : random_index(in_count);
        double saved = xd[j], up = 0.0, down = 0.0;
        xd[j] = saved + eps;
        reference_of(is_pool, &oc, xd, yd);
        for (size_t i = 0; i < out_count; i++) up += r.data[i] * yd[i];
        xd[j] = saved - eps;
        reference_of(is_pool, &oc, xd, yd);
        for (size_t i = 0; i < out_count; i++) down += r.data[i] * yd[i];
        xd[j] = saved;
        double numeric = (up - down) / (2 * eps);
        double analytic = (dx.data[j] - dx0[j]) / 2.0; /* two accumulated passes */
        worst_grad = fmax(worst_grad, fabs(numeric - analytic));
    }
    CHECK_MSG(worst_grad <= (is_pool ? 1e-6 : 1e-4),
              "%s: backward differs from finite differences by %.3g", label, worst_grad);
    free(xd);
    free(yd);
    free(dx0);
    diat_tensor_release(ctx, &x);
    diat_tensor_release(ctx, &y);
    diat_tensor_release(ctx, &r);
    diat_tensor_release(ctx, &dx);
}

static void test_resize_bilinear(void)
{
    check_op(0, (op_case){2, 3, 128, 128, 150, 150, 0, 0, 0}); /* the DIAT crop -> dlib's size */
    check_op(0, (op_case){1, 2, 150, 150, 97, 61, 0, 0, 0});   /* downsampling, uneven ratios */
    check_op(0, (op_case){1, 2, 5, 7, 3, 11, 0, 0, 0});        /* mixed up and down */
    check_op(0, (op_case){1, 1, 6, 6, 6, 6, 0, 0, 0});         /* same size: the identity */
    check_op(0, (op_case){1, 1, 1, 4, 3, 2, 0, 0, 0});         /* one-row edge case */
}

static void test_maxpool(void)
{
    check_op(1, (op_case){2, 3, 72, 72, 35, 35, 3, 2, 0}); /* the network's pool */
    check_op(1, (op_case){1, 2, 9, 8, 5, 4, 3, 2, 1});     /* padded: border windows clipped */
    check_op(1, (op_case){1, 2, 8, 8, 4, 4, 2, 2, 0});     /* non-overlapping */
    check_op(1, (op_case){1, 1, 7, 6, 7, 6, 3, 1, 1});     /* stride 1, "same" size */

    /* Padding never wins: all values negative, the padded border would
     * otherwise give 0. Ties: the first maximum in row-major order gets the
     * whole gradient. */
    diat_tensor x = new_tensor(1, 1, 3, 3), y = new_tensor(1, 1, 2, 2);
    diat_tensor dy = new_tensor(1, 1, 2, 2), dx = new_tensor(1, 1, 3, 3);
    const float values[9] = {-5, -4, -3, -4, -2, -2, -9, -2, -7};
    memcpy(x.data, values, sizeof values);
    be->maxpool_forward(ctx, &x, 3, 2, 1, &y);
    /* windows: rows/cols {-1,0,1} and {1,2,3}, clipped */
    CHECK_NEAR(y.data[0], -2.0f, 0.0);
    CHECK_NEAR(y.data[1], -2.0f, 0.0);
    CHECK_NEAR(y.data[2], -2.0f, 0.0);
    CHECK_NEAR(y.data[3], -2.0f, 0.0);
    for (int i = 0; i < 4; i++) dy.data[i] = (float)(1 << i);
    diat_tensor_zero(ctx, &dx);
    be->maxpool_backward(ctx, &x, &dy, 3, 2, 1, &dx);
    /* (0,0) window {0,1}x{0,1}: first -2 is (1,1); (0,1) {0,1}x{1,2}: (1,1);
     * (1,0) {1,2}x{0,1}: (1,1); (1,1) {1,2}x{1,2}: (1,1). */
    CHECK_NEAR(dx.data[4], 15.0f, 0.0);
    CHECK_NEAR(dx.data[5] + dx.data[7], 0.0f, 0.0);
    diat_tensor_release(ctx, &x);
    diat_tensor_release(ctx, &y);
    diat_tensor_release(ctx, &dy);
    diat_tensor_release(ctx, &dx);
}

/* ---- the network -------------------------------------------------------------- */

static diat_face_recognition net;
static int net_ready;

static double linear_functional(const float *r)
{
    double s = 0.0;
    for (size_t i = 0; i < diat_tensor_count(&net.embedding); i++)
        s += (double)r[i] * net.embedding.data[i];
    return s;
}

/* dL/dx from backward against central differences of L = r . phi(x).
 *
 * Why this sampling, step and tolerance: phi is piecewise linear in its input
 * (conv, ReLU, max and average pooling, bilinear resize, fc), so a central
 * difference is exact unless a ReLU or max-pool kink lies within the step,
 * and its other error is the float32 rounding of the two forwards, measured
 * here at ~3e-7 on L (millions of float32 products). A one-pixel gradient is
 * small (~2e-3 rms for these inputs), so rounding would swamp a random pixel
 * at any step short enough to avoid kinks; the samples are therefore the
 * pixels with the largest |dL/dx| among random candidates (~1e-2), and the
 * step eps = 3e-3 (0.4/255 of one pixel value) balances the two effects:
 * rounding gives ~1e-4 / 1e-2 = 1% per sample, kinks about as much (a
 * one-pixel nudge of this network often flips a few units somewhere).
 * Measured: 0.6-2% aggregated, a few % at worst; a wrong transpose, a lost
 * skip or a misplaced crop gives errors of order 1. So: aggregate relative
 * error (as in test_nets.c) below 3e-2, each sample below 15%. (Against
 * PyTorch autograd in float64 on the same weights the input gradient agrees
 * to ~4e-7 relative; FD cannot resolve that here.) */
static void check_input_gradient(int n, int size, int samples)
{
    diat_error err;
    diat_tensor x = new_tensor(n, 3, size, size), dx = new_tensor(n, 3, size, size);
    fill_random(&x, -0.9f, 0.9f);
    CHECK(diat_face_recognition_forward(&net, &x, &err) == DIAT_OK);
    diat_tensor r = new_tensor(n, DIAT_FACE_RECOGNITION_DIM, 1, 1);
    fill_random(&r, -1.0f, 1.0f);
    diat_tensor_zero(ctx, &dx);
    CHECK(diat_face_recognition_backward(&net, &r, &dx, &err) == DIAT_OK);

    /* The `samples` largest |dL/dx| among 2048 random candidates. */
    enum { CANDIDATES = 2048 };
    size_t count = diat_tensor_count(&x), candidate[CANDIDATES];
    for (int i = 0; i < CANDIDATES; i++) candidate[i] = random_index(count);
    for (int i = 0; i < samples && i < CANDIDATES; i++)
        for (int k = i + 1; k < CANDIDATES; k++)
            if (fabsf(dx.data[candidate[k]]) > fabsf(dx.data[candidate[i]])) {
                size_t t = candidate[i];
                candidate[i] = candidate[k], candidate[k] = t;
            }

    const float eps = 3e-3f;
    double diff2 = 0.0, ref2 = 0.0, worst = 0.0;
    for (int s = 0; s < samples; s++) {
        size_t j = candidate[s];
        float saved = x.data[j];
        x.data[j] = saved + eps;
        diat_face_recognition_forward(&net, &x, &err);
        double up = linear_functional(r.data);
        x.data[j] = saved - eps;
        diat_face_recognition_forward(&net, &x, &err);
        double down = linear_functional(r.data);
        x.data[j] = saved;
        double numeric = (up - down) / (2.0 * eps);
        diff2 += (numeric - dx.data[j]) * (numeric - dx.data[j]);
        ref2 += numeric * numeric;
        worst = fmax(worst, fabs(numeric - dx.data[j]) / fmax(fabs(numeric), 1e-12));
    }
    double rel = ref2 > 0 ? sqrt(diff2 / ref2) : sqrt(diff2);
    printf("  input gradient %dx%d (batch %d): relative error %.2e, worst sample %.2e, "
           "largest |dL/dx| %.2e\n",
           size, size, n, rel, worst, fabs(dx.data[candidate[0]]));
    CHECK_MSG(rel < 3e-2, "%dx%d input: relative error %.2e", size, size, rel);
    CHECK_MSG(worst < 0.15, "%dx%d input: worst sample relative error %.2e", size, size, worst);
    CHECK(fabs(dx.data[candidate[0]]) > 1e-4);
    diat_tensor_release(ctx, &x);
    diat_tensor_release(ctx, &dx);
    diat_tensor_release(ctx, &r);
}

static void test_input_gradient(void)
{
    if (!net_ready) return;
    check_input_gradient(2, 128, 24); /* the DIAT crop: resize inside */
    check_input_gradient(1, 150, 16); /* a chip: straight into the stem */
}

/* ---- against face-api and dlib's 0.6 rule ---------------------------------- */

#define MAX_CHIPS 32

typedef struct chip_result {
    char name[256];
    float reference[DIAT_FACE_RECOGNITION_DIM];
    float engine[DIAT_FACE_RECOGNITION_DIM];
} chip_result;

static chip_result chips[MAX_CHIPS];
static int chip_count;

/* face-api-embeddings.txt: '#' comment lines, then "NAME v1 ... v128". */
static void read_reference(void)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/face-api-embeddings.txt", faces_dir);
    FILE *f = fopen(path, "r");
    CHECK_MSG(f != NULL, "cannot open %s", path);
    if (!f) return;
    char line[8192];
    while (fgets(line, sizeof line, f) && chip_count < MAX_CHIPS) {
        if (line[0] == '#' || line[0] == '\n') continue;
        chip_result *c = &chips[chip_count];
        char *save = NULL, *tok = strtok_r(line, " \n", &save);
        snprintf(c->name, sizeof c->name, "%s", tok);
        int k = 0;
        while ((tok = strtok_r(NULL, " \n", &save)) && k < DIAT_FACE_RECOGNITION_DIM)
            c->reference[k++] = strtof(tok, NULL);
        CHECK_MSG(k == DIAT_FACE_RECOGNITION_DIM, "%s: %d values", c->name, k);
        chip_count++;
    }
    fclose(f);
}

static int embed_file(const char *name, float *embedding)
{
    char path[4400];
    snprintf(path, sizeof path, "%.4000s/%.255s", faces_dir, name);
    imgio_image img;
    diat_error err;
    if (imgio_load(path, &img, &err) != DIAT_OK) {
        CHECK_MSG(0, "%s", err.message);
        return 0;
    }
    int ok = img.image.width == DIAT_FACE_RECOGNITION_SIZE &&
             img.image.height == DIAT_FACE_RECOGNITION_SIZE && img.image.channels == 3 &&
             img.bit_depth == 8;
    CHECK_MSG(ok, "%s is not a 150x150 8-bit RGB chip", path);
    if (ok) {
        size_t count = (size_t)DIAT_FACE_RECOGNITION_SIZE * DIAT_FACE_RECOGNITION_SIZE * 3;
        float *rgb = malloc(count * sizeof *rgb);
        for (size_t i = 0; i < count; i++) rgb[i] = (float)img.samples[i] / 255.0f;
        ok = diat_face_recognition_embed_chip(&net, rgb, embedding, &err) == DIAT_OK;
        CHECK_MSG(ok, "%s", err.message);
        free(rgb);
    }
    imgio_free(&img);
    return ok;
}

static void test_matches_face_api(void)
{
    if (!net_ready) return;
    read_reference();
    CHECK(chip_count >= 4);
    double worst = 0.0;
    for (int i = 0; i < chip_count; i++) {
        if (!embed_file(chips[i].name, chips[i].engine)) continue;
        double chip_worst = 0.0;
        for (int k = 0; k < DIAT_FACE_RECOGNITION_DIM; k++)
            chip_worst = fmax(chip_worst, fabs(chips[i].engine[k] - chips[i].reference[k]));
        CHECK_MSG(chip_worst <= 1e-3, "%s: differs from face-api by %.3g", chips[i].name,
                  chip_worst);
        worst = fmax(worst, chip_worst);
    }
    printf("  %d chips: max |engine - face-api| = %.3g\n", chip_count, worst);
}

static double distance(const float *a, const float *b)
{
    double s = 0.0;
    for (int k = 0; k < DIAT_FACE_RECOGNITION_DIM; k++) s += ((double)a[k] - b[k]) * (a[k] - b[k]);
    return sqrt(s);
}

/* "John_Salley_000179_02159509.png" -> person "John_Salley": everything
 * before the last two '_' fields. */
static size_t person_length(const char *name)
{
    const char *last = strrchr(name, '_');
    if (!last) return strlen(name);
    for (const char *p = last - 1; p >= name; p--)
        if (*p == '_') return (size_t)(p - name);
    return (size_t)(last - name);
}

static void test_same_person_rule(void)
{
    if (!net_ready || chip_count < 4) return;
    double same_max = 0.0, different_min = INFINITY;
    int same_pairs = 0, different_pairs = 0;
    for (int i = 0; i < chip_count; i++)
        for (int j = i + 1; j < chip_count; j++) {
            size_t li = person_length(chips[i].name), lj = person_length(chips[j].name);
            int same = li == lj && strncmp(chips[i].name, chips[j].name, li) == 0;
            double d = distance(chips[i].engine, chips[j].engine);
            if (same) {
                same_pairs++, same_max = fmax(same_max, d);
                CHECK_MSG(d < 0.6, "%s / %s: same person at distance %.3f", chips[i].name,
                          chips[j].name, d);
            } else {
                different_pairs++, different_min = fmin(different_min, d);
                CHECK_MSG(d > 0.6, "%s / %s: different people at distance %.3f", chips[i].name,
                          chips[j].name, d);
            }
        }
    printf("  same person: %d pairs, largest distance %.4f; different: %d pairs, smallest "
           "%.4f\n",
           same_pairs, same_max, different_pairs, different_min);
    CHECK(same_pairs >= 2 && different_pairs >= 1);
}

/* The DIAT path resizes inside: a chip brought to 128x128 and back through
 * the network's own resize must still be recognised as itself, and a batch
 * must give what each face gives alone. */
static void test_resized_and_batched(void)
{
    if (!net_ready || chip_count < 2) return;
    diat_error err;
    const int size = DIAT_FACE_RECOGNITION_SIZE;
    diat_tensor chip = new_tensor(2, 3, size, size), crop = new_tensor(2, 3, 128, 128);
    size_t plane = (size_t)size * size;
    for (int n = 0; n < 2; n++) {
        char path[4400];
        snprintf(path, sizeof path, "%.4000s/%.255s", faces_dir, chips[n].name);
        imgio_image img;
        if (imgio_load(path, &img, &err) != DIAT_OK) {
            CHECK_MSG(0, "%s", err.message);
            return;
        }
        for (size_t i = 0; i < plane; i++)
            for (int c = 0; c < 3; c++)
                chip.data[((size_t)n * 3 + c) * plane + i] =
                    2.0f * ((float)img.samples[3 * i + c] / 255.0f) - 1.0f;
        imgio_free(&img);
    }
    CHECK(diat_face_recognition_forward(&net, &chip, &err) == DIAT_OK);
    double batch_worst = 0.0;
    for (int n = 0; n < 2; n++)
        for (int k = 0; k < DIAT_FACE_RECOGNITION_DIM; k++)
            batch_worst =
                fmax(batch_worst, fabs(net.embedding.data[n * DIAT_FACE_RECOGNITION_DIM + k] -
                                       chips[n].engine[k]));
    CHECK_MSG(batch_worst <= 1e-5, "batch of 2 differs from single chips by %.3g", batch_worst);

    be->resize_bilinear_forward(ctx, &chip, &crop);
    CHECK(diat_face_recognition_forward(&net, &crop, &err) == DIAT_OK);
    for (int n = 0; n < 2; n++) {
        double d = distance(net.embedding.data + n * DIAT_FACE_RECOGNITION_DIM, chips[n].engine);
        printf("  %s via 128x128: distance %.4f to the chip's own embedding\n", chips[n].name, d);
        CHECK_MSG(d < 0.3, "%s: 128x128 round trip moved the embedding by %.3f", chips[n].name, d);
    }
    diat_tensor_release(ctx, &chip);
    diat_tensor_release(ctx, &crop);
}

static void test_rejects_wrong_file(void)
{
    diat_face_recognition other;
    diat_error err;
    if (diat_face_recognition_init(&other, ctx, &err) != DIAT_OK) {
        CHECK_MSG(0, "%s", err.message);
        return;
    }
    char path[4400];
    snprintf(path, sizeof path, "%s/../fixture-model.safetensors", faces_dir);
    CHECK(diat_face_recognition_load(&other, path, &err) == DIAT_ERR_FORMAT);
    CHECK(strstr(err.message, "face recognition") != NULL);
    diat_tensor x = new_tensor(1, 3, 150, 150);
    fill_random(&x, -1.0f, 1.0f);
    CHECK(diat_face_recognition_forward(&other, &x, &err) == DIAT_ERR_ARGUMENT);
    diat_tensor_release(ctx, &x);
    diat_face_recognition_free(&other);
}

int main(int argc, char **argv)
{
    diat_error err;
    if (diat_context_new(DIAT_BACKEND_CPU, 1, &ctx, &err) != DIAT_OK) {
        fprintf(stderr, "%s\n", err.message);
        return 1;
    }
    be = diat_context_backend(ctx);
    const char *root = getenv("DIAT_SOURCE_ROOT");
    if (!root) root = ".";
    const char *model = argc > 1 ? argv[1] : getenv("DIAT_FACE_MODEL");
    if (model)
        snprintf(model_path, sizeof model_path, "%s", model);
    else
        snprintf(model_path, sizeof model_path, "%s/models/face-recognition-resnet29.safetensors",
                 root);
    if (argc > 2)
        snprintf(faces_dir, sizeof faces_dir, "%s", argv[2]);
    else
        snprintf(faces_dir, sizeof faces_dir, "%s/tests/data/faces", root);

    RUN_TEST(test_resize_bilinear);
    RUN_TEST(test_maxpool);

    if (diat_face_recognition_init(&net, ctx, &err) != DIAT_OK ||
        diat_face_recognition_load(&net, model_path, &err) != DIAT_OK) {
        CHECK_MSG(0, "%s", err.message);
    } else {
        net_ready = 1;
        printf("  %s: %zu weights\n", model_path, diat_net_parameter_count(&net.net));
    }
    RUN_TEST(test_matches_face_api);
    RUN_TEST(test_same_person_rule);
    RUN_TEST(test_resized_and_batched);
    RUN_TEST(test_input_gradient);
    RUN_TEST(test_rejects_wrong_file);

    diat_face_recognition_free(&net);
    diat_context_free(ctx);
    return TEST_SUMMARY();
}

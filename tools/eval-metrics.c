/* The judges of `diat eval` and its image measures.
 *
 * Judges are networks the edit was not trained against, or not only: the
 * attribute classifier (`diat-train classifier`), faceres (identity, and a
 * second opinion on Male and Young), dlib's ResNet-29 (the identity loss's
 * own network, so its distance says how well training met its target) and
 * the denoiser DN (artifacts: a result far from DN(result) has what DN
 * learned to remove). For Male and Young models, face-api's age and gender
 * network gives a third opinion, on the face as face-api's own pipeline
 * frames it: inside the box its tiny face detector finds. Each judge sees
 * the inputs and the results alike, so every figure has the unedited faces
 * as its baseline.
 */
#include "eval.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A denoiser `diat-train denoiser --export` wrote: format "diat-denoiser",
 * its width and depth in the metadata (as trainer/setup.c reads it). */
static diat_status load_denoiser(diat_denoiser *dn, diat_context *ctx, const char *path,
                                 diat_error *err)
{
    diat_safetensors *st = NULL;
    diat_status status = diat_safetensors_open(path, &st, err);
    if (status != DIAT_OK) return status;
    const char *format = diat_safetensors_metadata(st, "format");
    const char *keys[2] = {"width", "depth"};
    long values[2] = {0, 0};
    if (!format || strcmp(format, "diat-denoiser") != 0)
        status = diat_set_error(err, DIAT_ERR_FORMAT,
                                "%s is not a denoiser written by `diat-train denoiser --export` "
                                "(its format is '%s').",
                                path, format ? format : "missing");
    for (int k = 0; k < 2 && status == DIAT_OK; k++) {
        const char *text = diat_safetensors_metadata(st, keys[k]);
        char *end = NULL;
        values[k] = text ? strtol(text, &end, 10) : 0;
        if (!text || end == text || *end || values[k] < 1 || values[k] > 4096)
            status = diat_set_error(err, DIAT_ERR_FORMAT, "%s has no valid '%s' in its metadata.",
                                    path, keys[k]);
    }
    if (status == DIAT_OK)
        status = diat_denoiser_init(dn, ctx, (int)values[0], (int)values[1], err);
    if (status == DIAT_OK) status = diat_net_load(&dn->net, st, err);
    diat_safetensors_close(st);
    return status;
}

/* The classifier, which must judge the model's attribute: a classifier of
 * other attributes would give a number about something else. */
static diat_status load_classifier(eval_judges *j, const eval_settings *s, diat_error *err)
{
    diat_status st = diat_classifier_load(&j->classifier, j->ctx, s->classifier, err);
    if (st != DIAT_OK) return st;
    j->has_classifier = 1;
    char list[400] = "";
    size_t used = 0;
    for (int k = 0; k < j->classifier.outputs; k++) {
        if (strcmp(j->classifier.attributes[k], s->attribute) == 0) {
            j->attribute_index = k;
            return DIAT_OK;
        }
        if (used < sizeof list)
            used += (size_t)snprintf(list + used, sizeof list - used, "%s%s", k ? ", " : "",
                                     j->classifier.attributes[k]);
    }
    return diat_set_error(err, DIAT_ERR_ARGUMENT,
                          "The classifier '%s' judges %s, not %s (the attribute evaluated); "
                          "train one that does with `diat-train classifier`.",
                          s->classifier, list, s->attribute);
}

diat_status eval_judges_load(eval_judges *j, diat_context *ctx, const eval_settings *s,
                             diat_error *err)
{
    memset(j, 0, sizeof *j);
    j->ctx = ctx;
    /* The optional judges first: a wrong --classifier or --denoiser is the
     * likeliest mistake, and the cheapest to report. */
    diat_status st = s->classifier ? load_classifier(j, s, err) : DIAT_OK;
    if (st == DIAT_OK && s->denoiser) {
        st = load_denoiser(&j->denoiser, ctx, s->denoiser, err);
        j->has_denoiser = st == DIAT_OK;
    }
    if (st == DIAT_OK) st = diat_faceres_load(ctx, s->faceres, &j->faceres, err);
    if (st == DIAT_OK) st = diat_face_recognition_init(&j->recognition, ctx, err);
    if (st == DIAT_OK) st = diat_face_recognition_load(&j->recognition, s->recognition, err);
    if (st == DIAT_OK && s->age_gender) {
        st = diat_age_gender_load(ctx, s->age_gender, &j->age_gender, err);
        if (st == DIAT_OK)
            st = diat_face_finder_load(ctx, s->detector, s->landmarks, &j->finder, err);
        if (st == DIAT_OK && !(j->face_rgb = malloc(sizeof *j->face_rgb * EVAL_FLOATS)))
            st = diat_set_error(err, DIAT_ERR_MEMORY, "Out of memory for the judges.");
    }
    return st;
}

void eval_judges_free(eval_judges *j)
{
    if (!j->ctx) return;
    if (j->has_classifier) diat_classifier_free(&j->classifier);
    if (j->has_denoiser) diat_denoiser_free(&j->denoiser);
    diat_faceres_free(j->faceres);
    diat_face_recognition_free(&j->recognition);
    diat_age_gender_free(j->age_gender);
    diat_face_finder_free(j->finder);
    free(j->face_rgb);
    diat_tensor_release(j->ctx, &j->faces);
    memset(j, 0, sizeof *j);
}

diat_status eval_views_alloc(eval_views *v, int n, diat_error *err)
{
    v->attribute = calloc((size_t)n, sizeof *v->attribute);
    v->faceres = calloc((size_t)n, sizeof *v->faceres);
    v->embedding = calloc((size_t)n * DIAT_FACE_RECOGNITION_DIM, sizeof *v->embedding);
    v->artifact = calloc((size_t)n, sizeof *v->artifact);
    v->face_api_age = calloc((size_t)n, sizeof *v->face_api_age);
    v->face_api_male = calloc((size_t)n, sizeof *v->face_api_male);
    v->face_api_found = calloc((size_t)n, sizeof *v->face_api_found);
    if (v->attribute && v->faceres && v->embedding && v->artifact && v->face_api_age &&
        v->face_api_male && v->face_api_found)
        return DIAT_OK;
    eval_views_free(v);
    return diat_set_error(err, DIAT_ERR_MEMORY, "Out of memory for the judgements.");
}

void eval_views_free(eval_views *v)
{
    free(v->attribute);
    free(v->faceres);
    free(v->embedding);
    free(v->artifact);
    free(v->face_api_age);
    free(v->face_api_male);
    free(v->face_api_found);
    memset(v, 0, sizeof *v);
}

/* Per face, the mean squared difference between DN(y) and y over its
 * 3 x 128 x 128 values in [-1, 1]: the trainer's perceptual-regularization
 * term (lambda_pr ||DN(y) - y||^2 over the batch's values) for one face. */
static diat_status judge_artifacts(eval_judges *j, const float *faces, int n, float *artifact,
                                   diat_error *err)
{
    diat_status st = diat_denoiser_forward(&j->denoiser, &j->faces, err);
    if (st != DIAT_OK) return st;
    float *out = malloc(sizeof *out * (size_t)n * EVAL_FLOATS);
    if (!out) return diat_set_error(err, DIAT_ERR_MEMORY, "Out of memory for the denoiser.");
    diat_tensor_download(j->ctx, &j->denoiser.out, out);
    for (int i = 0; i < n; i++) {
        const float *y = faces + (size_t)i * EVAL_FLOATS, *d = out + (size_t)i * EVAL_FLOATS;
        double sum = 0.0;
        for (size_t k = 0; k < EVAL_FLOATS; k++) sum += ((double)d[k] - y[k]) * (d[k] - y[k]);
        artifact[i] = (float)(sum / EVAL_FLOATS);
    }
    free(out);
    return DIAT_OK;
}

/* face-api's age and gender network on each face, framed as face-api's
 * detectSingleFace(...).withAgeAndGender() frames it: the box of the best
 * face its detector finds in the 128x128 image (the whole image, should it
 * find none). */
static diat_status judge_age_gender(eval_judges *j, const float *faces, int n, eval_views *v,
                                    diat_error *err)
{
    const diat_image image = {EVAL_FACE, EVAL_FACE, 3, 3 * EVAL_FACE, j->face_rgb};
    const diat_box whole = {0, 0, EVAL_FACE, EVAL_FACE};
    for (int i = 0; i < n; i++) {
        const float *face = faces + (size_t)i * EVAL_FLOATS;
        for (int k = 0; k < EVAL_PIXELS; k++)
            for (int c = 0; c < 3; c++)
                j->face_rgb[3 * k + c] = (face[c * EVAL_PIXELS + k] + 1.0f) * 0.5f;
        diat_face *found = NULL;
        size_t count = 0;
        diat_status st = diat_find_faces(j->finder, &image, &whole, &found, &count, err);
        if (st != DIAT_OK) return st;
        float box[4] = {0.0f, 0.0f, EVAL_FACE, EVAL_FACE};
        if (count) {
            box[0] = found[0].x;
            box[1] = found[0].y;
            box[2] = found[0].width;
            box[3] = found[0].height;
        }
        diat_faces_free(found);
        v->face_api_found[i] = count > 0;
        diat_age_gender_output out;
        if ((st = diat_age_gender_run(j->age_gender, &image, box, &out, err))) return st;
        v->face_api_age[i] = out.age;
        v->face_api_male[i] = out.male;
    }
    return DIAT_OK;
}

diat_status eval_judge(eval_judges *j, const float *faces, int n, eval_views *v, diat_error *err)
{
    diat_status st = diat_tensor_ensure(j->ctx, &j->faces, n, 3, EVAL_FACE, EVAL_FACE, err);
    if (st != DIAT_OK) return st;
    diat_tensor_upload(j->ctx, &j->faces, faces);
    if (j->has_classifier) {
        const int outputs = j->classifier.outputs;
        float *prob = malloc(sizeof *prob * (size_t)n * (size_t)outputs);
        if (!prob) return diat_set_error(err, DIAT_ERR_MEMORY, "Out of memory.");
        st = diat_classifier_predict(&j->classifier, faces, n, EVAL_FACE, prob, err);
        for (int i = 0; st == DIAT_OK && i < n; i++)
            v->attribute[i] = prob[(size_t)i * outputs + j->attribute_index];
        free(prob);
    }
    if (st == DIAT_OK)
        st = diat_faceres_embed(j->faceres, faces, n, EVAL_FACE, EVAL_FACE, v->faceres, err);
    if (st == DIAT_OK) st = diat_face_recognition_forward(&j->recognition, &j->faces, err);
    if (st == DIAT_OK) diat_tensor_download(j->ctx, &j->recognition.embedding, v->embedding);
    if (st == DIAT_OK && j->has_denoiser) st = judge_artifacts(j, faces, n, v->artifact, err);
    if (st == DIAT_OK && j->age_gender) st = judge_age_gender(j, faces, n, v, err);
    return st;
}

double eval_distance(const float *a, const float *b, int n)
{
    double sum = 0.0;
    for (int i = 0; i < n; i++) sum += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
    return sqrt(sum);
}

void eval_rate_interval(size_t k, size_t n, double *low, double *high)
{
    if (n == 0) {
        *low = 0.0;
        *high = 1.0;
        return;
    }
    const double z = 1.96, z2 = z * z, nn = (double)n, rate = (double)k / nn;
    const double centre = (rate + z2 / (2.0 * nn)) / (1.0 + z2 / nn);
    const double half = z * sqrt(rate * (1.0 - rate) / nn + z2 / (4.0 * nn * nn)) / (1.0 + z2 / nn);
    /* At k = 0 or k = n the bound is exactly 0 or 1; rounding must not
     * leave it a hair inside. */
    *low = k == 0 ? 0.0 : centre - half;
    *high = k == n ? 1.0 : centre + half;
}

double eval_psnr(const float *a, const float *b)
{
    double sum = 0.0;
    for (int i = 0; i < EVAL_FLOATS; i++) sum += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
    if (sum == 0.0) return EVAL_PSNR_CAP;
    double psnr = 10.0 * log10((double)EVAL_FLOATS / sum); /* peak 1 */
    return psnr < EVAL_PSNR_CAP ? psnr : EVAL_PSNR_CAP;
}

#define SSIM_WINDOW 11
#define SSIM_VALID (EVAL_FACE - SSIM_WINDOW + 1)

/* Filter each column of the valid rows, then each row: `in` EVAL_FACE
 * square, `out` SSIM_VALID square. `tmp` holds SSIM_VALID x EVAL_FACE. */
static void gaussian_valid(const double *in, const double *taps, double *tmp, double *out)
{
    for (int y = 0; y < SSIM_VALID; y++)
        for (int x = 0; x < EVAL_FACE; x++) {
            double s = 0.0;
            for (int k = 0; k < SSIM_WINDOW; k++) s += taps[k] * in[(y + k) * EVAL_FACE + x];
            tmp[y * EVAL_FACE + x] = s;
        }
    for (int y = 0; y < SSIM_VALID; y++)
        for (int x = 0; x < SSIM_VALID; x++) {
            double s = 0.0;
            for (int k = 0; k < SSIM_WINDOW; k++) s += taps[k] * tmp[y * EVAL_FACE + x + k];
            out[y * SSIM_VALID + x] = s;
        }
}

double eval_ssim(const float *a, const float *b)
{
    static const double c1 = 0.01 * 0.01, c2 = 0.03 * 0.03;
    double taps[SSIM_WINDOW], total = 0.0;
    for (int k = 0; k < SSIM_WINDOW; k++) {
        double d = k - SSIM_WINDOW / 2;
        taps[k] = exp(-d * d / (2.0 * 1.5 * 1.5));
        total += taps[k];
    }
    for (int k = 0; k < SSIM_WINDOW; k++) taps[k] /= total;
    enum { MAPS = 5 }; /* x, y, x*x, y*y, x*y */
    double *buf =
        malloc(sizeof *buf * ((size_t)MAPS * EVAL_PIXELS + (size_t)MAPS * SSIM_VALID * SSIM_VALID +
                              (size_t)SSIM_VALID * EVAL_FACE));
    if (!buf) return NAN;
    double *in = buf, *mean = buf + (size_t)MAPS * EVAL_PIXELS;
    double *tmp = mean + (size_t)MAPS * SSIM_VALID * SSIM_VALID, ssim = 0.0;
    for (int c = 0; c < 3; c++) {
        /* x, y, x*x, y*y, x*y; for a == b the same products in the same
         * order, so the map is exactly 1 there. */
        for (int i = 0; i < EVAL_PIXELS; i++) {
            double x = a[3 * i + c], y = b[3 * i + c];
            in[i] = x;
            in[EVAL_PIXELS + i] = y;
            in[2 * EVAL_PIXELS + i] = x * x;
            in[3 * EVAL_PIXELS + i] = y * y;
            in[4 * EVAL_PIXELS + i] = x * y;
        }
        for (int m = 0; m < MAPS; m++)
            gaussian_valid(in + (size_t)m * EVAL_PIXELS, taps, tmp,
                           mean + (size_t)m * SSIM_VALID * SSIM_VALID);
        const size_t plane = (size_t)SSIM_VALID * SSIM_VALID;
        double sum = 0.0;
        for (size_t i = 0; i < plane; i++) {
            double mx = mean[i], my = mean[plane + i];
            double vx = mean[2 * plane + i] - mx * mx, vy = mean[3 * plane + i] - my * my;
            double cov = mean[4 * plane + i] - mx * my;
            sum += (2.0 * mx * my + c1) * (2.0 * cov + c2) /
                   ((mx * mx + my * my + c1) * (vx + vy + c2));
        }
        ssim += sum / (double)plane;
    }
    free(buf);
    return ssim / 3.0;
}

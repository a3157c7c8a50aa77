/* What `diat eval` reports: a table for people, a Markdown row for the
 * models' table in models/README.md, a JSON file for scripts and a picture.
 *
 * The JSON holds every key in every run, null where a figure was not
 * measured (no --classifier, no --denoiser, an attribute faceres and
 * face-api have no opinion on), so a script reading many runs needs no key
 * checks.
 */
#include "eval.h"

#include "dataset.h"
#include "image-io.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef DIAT_VERSION
#define DIAT_VERSION "unknown"
#endif

#define GRID_GAP 4         /* pixels between tiles */
#define GRID_BACKGROUND 40 /* dark gray, so white masks stand out */

/* The figures, from the sums. */
typedef struct figures {
    double success, baseline, p_results, p_sources;                 /* classifier */
    double opinion, opinion_baseline, value_results, value_sources; /* faceres on Male/Young */
    double face_api, face_api_baseline, face_api_results, face_api_sources; /* face-api's */
    double faceres_rate, faceres_distance, dlib_rate, dlib_distance;
    double mask_area, mask_area_model, psnr, ssim;
    double artifact_results, artifact_sources;
    /* 95% intervals of the three rates: [0] low, [1] high. */
    double success_interval[2], opinion_interval[2], faceres_interval[2];
    double face_api_interval[2];
} figures;

static figures compute(const eval_totals *t)
{
    const double n = t->faces ? (double)t->faces : 1.0;
    figures f = {t->classifier_success / n,
                 t->classifier_baseline / n,
                 t->classifier_p_results / n,
                 t->classifier_p_sources / n,
                 t->faceres_opinion.success / n,
                 t->faceres_opinion.baseline / n,
                 t->faceres_opinion.value_results / n,
                 t->faceres_opinion.value_sources / n,
                 t->face_api_opinion.success / n,
                 t->face_api_opinion.baseline / n,
                 t->face_api_opinion.value_results / n,
                 t->face_api_opinion.value_sources / n,
                 t->faceres_same / n,
                 t->faceres_distance / n,
                 t->dlib_same / n,
                 t->dlib_distance / n,
                 t->mask_area / n,
                 t->mask_area_model / n,
                 t->psnr / n,
                 t->ssim / n,
                 t->artifact_results / n,
                 t->artifact_sources / n,
                 {0.0, 0.0},
                 {0.0, 0.0},
                 {0.0, 0.0},
                 {0.0, 0.0}};
    eval_rate_interval(t->classifier_success, t->faces, &f.success_interval[0],
                       &f.success_interval[1]);
    eval_rate_interval(t->faceres_opinion.success, t->faces, &f.opinion_interval[0],
                       &f.opinion_interval[1]);
    eval_rate_interval(t->face_api_opinion.success, t->faces, &f.face_api_interval[0],
                       &f.face_api_interval[1]);
    eval_rate_interval(t->faceres_same, t->faces, &f.faceres_interval[0], &f.faceres_interval[1]);
    return f;
}

/* A second opinion's rule, as printed, written into `text`: P(male) > 0.5
 * for Male, an age below `young_age` for Young; NULL for other attributes. */
static const char *opinion_rule(const eval_settings *s, float young_age, char *text, size_t size)
{
    if (s->opinion == EVAL_OPINION_MALE) return "P(male) > 0.5";
    if (s->opinion != EVAL_OPINION_YOUNG) return NULL;
    snprintf(text, size, "age < %g", (double)young_age);
    return text;
}

/* "fixture-model" for ".../fixture-model.safetensors". */
static void model_name(const char *path, char *name, size_t size)
{
    const char *base = strrchr(path, '/');
    snprintf(name, size, "%s", base ? base + 1 : path);
    char *dot = strstr(name, ".safetensors");
    if (dot && !dot[12]) *dot = '\0';
}

static void format_psnr(const eval_totals *t, double psnr, char *text, size_t size)
{
    /* Every face identical: the mean of the capped values is the cap, which
     * reads better as what it means. */
    if (t->identical == t->faces)
        snprintf(text, size, "inf");
    else
        snprintf(text, size, "%.2f", psnr);
}

/* One row of the table: a label, the results' value and the sources'. */
static void row(const char *group, const char *label, const char *results, const char *sources)
{
    if (sources)
        printf("  %-10s %-38s %9s %9s\n", group, label, results, sources);
    else
        printf("  %-10s %-38s %9s\n", group, label, results);
}

static void percent(double value, char *text, size_t size)
{
    snprintf(text, size, "%.1f%%", 100.0 * value);
}

/* "75.4-78.9": a 95% interval in percent, for the row under a rate. */
static void interval(const double bounds[2], char *text, size_t size)
{
    snprintf(text, size, "%.1f-%.1f", 100.0 * bounds[0], 100.0 * bounds[1]);
}

static void number(double value, int digits, char *text, size_t size)
{
    snprintf(text, size, "%.*f", digits, value);
}

/* A second opinion's rows: its rate of results (and sources) on the target
 * side by `rule`, the rate's interval, the mean P(male) or age. */
static void opinion_rows(const eval_settings *s, const char *judge, const char *side,
                         const char *rule, double rate, double baseline, const double bounds[2],
                         double mean_results, double mean_sources)
{
    char a[32], b[32], label[96];
    const int male = s->opinion == EVAL_OPINION_MALE;
    snprintf(label, sizeof label, "%s: %s %s (rule %s)", judge, side, s->attribute, rule);
    percent(rate, a, sizeof a);
    percent(baseline, b, sizeof b);
    row("", label, a, b);
    interval(bounds, a, sizeof a);
    row("", "  95% interval (Wilson)", a, NULL);
    number(mean_results, male ? 3 : 1, a, sizeof a);
    number(mean_sources, male ? 3 : 1, b, sizeof b);
    snprintf(label, sizeof label, "%s: mean %s", judge, male ? "P(male)" : "age");
    row("", label, a, b);
}

/* Human-readable: the settings, then one row per figure, results' values
 * beside the sources' where the sources have one. */
static void print_table(const eval_settings *s, const eval_totals *t, const figures *f,
                        const char *cut, const char *p, const char *psnr)
{
    char a[32], b[32], label[96], rule[32];
    printf("diat eval: %s\n", s->label);
    printf("  model      %s (%s %s)\n", s->model, s->add ? "add" : "remove", s->attribute);
    const char *split = diat_celeba_split_name(s->split);
    printf("  faces      %zu CelebA %s faces %s %s (of %zu; %s split %zu)\n", t->faces, split,
           s->add ? "without" : "with", s->attribute, s->side_faces, split, s->split_faces);
    printf("  mask       cut at %s (%s); the model's p = %s\n\n", cut, s->ratio_source, p);
    row("", "", "results", "sources");
    const char *side = s->add ? "has" : "lacks";
    if (s->classifier) {
        snprintf(label, sizeof label, "classifier: %s %s", side, s->attribute);
        percent(f->success, a, sizeof a);
        percent(f->baseline, b, sizeof b);
        row("attribute", label, a, b);
        interval(f->success_interval, a, sizeof a);
        row("", "  95% interval (Wilson)", a, NULL);
        snprintf(label, sizeof label, "classifier: mean P(%s)", s->attribute);
        number(f->p_results, 3, a, sizeof a);
        number(f->p_sources, 3, b, sizeof b);
        row("", label, a, b);
    } else {
        row("attribute", "classifier: not measured (--classifier)", "-", "-");
    }
    if (s->opinion != EVAL_OPINION_NONE) {
        opinion_rows(s, "faceres", side, opinion_rule(s, EVAL_YOUNG_AGE, rule, sizeof rule),
                     f->opinion, f->opinion_baseline, f->opinion_interval, f->value_results,
                     f->value_sources);
    }
    if (s->age_gender) {
        opinion_rows(s, "face-api", side,
                     opinion_rule(s, EVAL_FACE_API_YOUNG_AGE, rule, sizeof rule), f->face_api,
                     f->face_api_baseline, f->face_api_interval, f->face_api_results,
                     f->face_api_sources);
        snprintf(a, sizeof a, "%zu of %zu", t->face_api_unframed, 2 * t->faces);
        row("", "face-api: no face detected (whole image)", a, NULL);
    }
    snprintf(label, sizeof label, "faceres: same person (d < %.1f)",
             (double)DIAT_FACERES_THRESHOLD);
    percent(f->faceres_rate, a, sizeof a);
    row("identity", label, a, NULL);
    interval(f->faceres_interval, a, sizeof a);
    row("", "  95% interval (Wilson)", a, NULL);
    number(f->faceres_distance, 3, a, sizeof a);
    row("", "faceres: mean distance", a, NULL);
    snprintf(label, sizeof label, "dlib ResNet: same person (d < %.1f)",
             (double)EVAL_DLIB_THRESHOLD);
    percent(f->dlib_rate, a, sizeof a);
    row("", label, a, NULL);
    number(f->dlib_distance, 3, a, sizeof a);
    row("", "dlib ResNet: mean distance", a, NULL);
    snprintf(label, sizeof label, "mask area (the model's p = %s)", p);
    number(f->mask_area, 3, a, sizeof a);
    row("locality", label, a, NULL);
    if (s->ratio > 0.0f) {
        number(f->mask_area_model, 3, a, sizeof a);
        row("", "mask area at the model's e > 0.5", a, NULL);
    }
    row("", "PSNR, whole face", psnr, NULL);
    number(f->ssim, 4, a, sizeof a);
    row("", "SSIM, whole face", a, NULL);
    snprintf(a, sizeof a, "%zu", t->identical);
    row("", "faces left unchanged", a, NULL);
    if (s->denoiser) {
        snprintf(a, sizeof a, "%.3g", f->artifact_results);
        snprintf(b, sizeof b, "%.3g", f->artifact_sources);
        row("quality", "artifacts: mean (DN(y) - y)^2", a, b);
    } else {
        row("quality", "artifacts: not measured (--denoiser)", "-", "-");
    }
}

void eval_print(const eval_settings *s, const eval_totals *t)
{
    const figures f = compute(t);
    char cut[32], p[32], psnr[32], name[256];
    if (s->ratio > 0.0f)
        snprintf(cut, sizeof cut, "a fraction %.3f", s->ratio);
    else
        snprintf(cut, sizeof cut, "e > 0.5");
    if (s->model_ratio > 0.0f)
        snprintf(p, sizeof p, "%.3f", s->model_ratio);
    else
        snprintf(p, sizeof p, "-");
    format_psnr(t, f.psnr, psnr, sizeof psnr);
    model_name(s->model, name, sizeof name);
    print_table(s, t, &f, cut, p, psnr);

    char success[64] = "-", opinion[64] = "-", artifacts[64] = "-";
    if (s->classifier)
        snprintf(success, sizeof success, "%.1f%% (%.1f%%)", 100.0 * f.success, 100.0 * f.baseline);
    if (s->opinion != EVAL_OPINION_NONE && s->age_gender)
        snprintf(opinion, sizeof opinion, "%.1f%% (%.1f%%); face-api %.1f%% (%.1f%%)",
                 100.0 * f.opinion, 100.0 * f.opinion_baseline, 100.0 * f.face_api,
                 100.0 * f.face_api_baseline);
    else if (s->opinion != EVAL_OPINION_NONE)
        snprintf(opinion, sizeof opinion, "%.1f%% (%.1f%%)", 100.0 * f.opinion,
                 100.0 * f.opinion_baseline);
    if (s->denoiser)
        snprintf(artifacts, sizeof artifacts, "%.3g (%.3g)", f.artifact_results,
                 f.artifact_sources);
    printf("\nMarkdown row for models/README.md (mask cut at %s; the sources' values in "
           "brackets):\n"
           "| model | edit | faces | p | mask area | attribute success | faceres opinion | "
           "faceres same person | dlib distance (< 0.6) | PSNR | SSIM | artifacts |\n"
           "|---|---|---|---|---|---|---|---|---|---|---|---|\n",
           cut);
    printf("| %s | %s %s | %zu | %s | %.3f | %s | %s | %.1f%% | %.3f (%.1f%%) | %s | %.4f | %s |\n",
           name, s->add ? "add" : "remove", s->attribute, t->faces, p, f.mask_area, success,
           opinion, 100.0 * f.faceres_rate, f.dlib_distance, 100.0 * f.dlib_rate, psnr, f.ssim,
           artifacts);
}

/* A number, or null when `have` is 0 (jansson refuses non-finite reals). */
static json_t *real(double value, int have)
{
    return have && isfinite(value) ? json_real(value) : json_null();
}

/* A float setting as it was written (0.1, not 0.10000000149011612). */
static json_t *setting(float value, int have)
{
    char text[32];
    snprintf(text, sizeof text, "%.6g", (double)value);
    return real(strtod(text, NULL), have);
}

/* [low, high], or null when `have` is 0. */
static json_t *bounds_or_null(const double bounds[2], int have)
{
    return have ? json_pack("[f, f]", bounds[0], bounds[1]) : json_null();
}

static json_t *text_or_null(const char *text)
{
    return text ? json_string(text) : json_null();
}

static json_t *build_json(const eval_settings *s, const eval_totals *t)
{
    const figures f = compute(t);
    const int cls = s->classifier != NULL, op = s->opinion != EVAL_OPINION_NONE;
    char rules[2][32];
    const int dn = s->denoiser != NULL;
    json_t *settings = json_pack(
        "{s:s, s:s, s:s, s:s, s:o, s:s, s:s, s:s, s:o, s:I, s:I, s:I, s:o, s:o, s:s, s:s, s:s}",
        "model", s->model, "label", s->label, "attribute", s->attribute, "direction",
        s->add ? "add" : "remove", "ratio", setting(s->ratio, s->ratio > 0.0f), "ratio_source",
        s->ratio_source, "celeba", s->celeba, "split", diat_celeba_split_name(s->split),
        "faces_requested", s->faces_requested ? json_integer(s->faces_requested) : json_null(),
        "faces_on_side", (json_int_t)s->side_faces, "split_faces", (json_int_t)s->split_faces,
        "faces", (json_int_t)t->faces, "classifier", text_or_null(s->classifier), "denoiser",
        text_or_null(s->denoiser), "faceres", s->faceres, "face_recognition", s->recognition,
        "backend", s->backend_name);
    json_t *thresholds =
        json_pack("{s:f, s:o, s:o, s:f, s:o, s:f}", "classifier", 0.5, "faceres_distance",
                  setting(DIAT_FACERES_THRESHOLD, 1), "dlib_distance",
                  setting(EVAL_DLIB_THRESHOLD, 1), "faceres_male", 0.5, "faceres_young_age",
                  setting(EVAL_YOUNG_AGE, 1), "psnr_cap_db", EVAL_PSNR_CAP);
    json_t *attribute = json_pack(
        "{s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o}", "classifier_success",
        real(f.success, cls), "classifier_success_ci95", bounds_or_null(f.success_interval, cls),
        "classifier_baseline", real(f.baseline, cls), "classifier_mean_p_results",
        real(f.p_results, cls), "classifier_mean_p_sources", real(f.p_sources, cls), "faceres_rule",
        text_or_null(opinion_rule(s, EVAL_YOUNG_AGE, rules[0], sizeof rules[0])), "faceres_success",
        real(f.opinion, op), "faceres_success_ci95", bounds_or_null(f.opinion_interval, op),
        "faceres_baseline", real(f.opinion_baseline, op), "faceres_mean_results",
        real(f.value_results, op), "faceres_mean_sources", real(f.value_sources, op));
    json_t *identity =
        json_pack("{s:f, s:o, s:f, s:f, s:f}", "faceres_verification", f.faceres_rate,
                  "faceres_verification_ci95", bounds_or_null(f.faceres_interval, 1),
                  "faceres_mean_distance", f.faceres_distance, "dlib_mean_distance",
                  f.dlib_distance, "dlib_below_threshold", f.dlib_rate);
    json_t *locality = json_pack("{s:f, s:f, s:o, s:f, s:f, s:I}", "mask_area", f.mask_area,
                                 "mask_area_model_threshold", f.mask_area_model, "p",
                                 setting(s->model_ratio, s->model_ratio > 0.0f), "psnr_db", f.psnr,
                                 "ssim", f.ssim, "unchanged_faces", (json_int_t)t->identical);
    json_t *quality = json_pack("{s:o, s:o}", "artifact_results", real(f.artifact_results, dn),
                                "artifact_sources", real(f.artifact_sources, dn));
    /* face-api's second opinion (Male and Young): null elsewhere */
    const int fa = s->age_gender != NULL;
    if (settings) json_object_set_new(settings, "age_gender", text_or_null(s->age_gender));
    if (thresholds)
        json_object_set_new(thresholds, "face_api_young_age", setting(EVAL_FACE_API_YOUNG_AGE, 1));
    json_t *face_api = json_pack(
        "{s:o, s:o, s:o, s:o, s:o, s:o, s:o}", "face_api_rule",
        text_or_null(opinion_rule(s, EVAL_FACE_API_YOUNG_AGE, rules[1], sizeof rules[1])),
        "face_api_success", real(f.face_api, fa), "face_api_success_ci95",
        bounds_or_null(f.face_api_interval, fa), "face_api_baseline", real(f.face_api_baseline, fa),
        "face_api_mean_results", real(f.face_api_results, fa), "face_api_mean_sources",
        real(f.face_api_sources, fa), "face_api_unframed_faces",
        fa ? json_integer((json_int_t)t->face_api_unframed) : json_null());
    if (attribute && face_api) json_object_update(attribute, face_api);
    json_decref(face_api);
    if (!settings || !thresholds || !attribute || !identity || !locality || !quality) {
        json_decref(settings);
        json_decref(thresholds);
        json_decref(attribute);
        json_decref(identity);
        json_decref(locality);
        json_decref(quality);
        return NULL;
    }
    return json_pack("{s:s, s:i, s:s, s:o, s:o, s:o, s:o, s:o, s:o}", "format", "diat-eval",
                     "format_version", 1, "diat_version", DIAT_VERSION, "settings", settings,
                     "thresholds", thresholds, "attribute", attribute, "identity", identity,
                     "locality", locality, "quality", quality);
}

diat_status eval_write_json(const char *path, const eval_settings *s, const eval_totals *t,
                            diat_error *err)
{
    json_t *root = build_json(s, t);
    char *text = root ? json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER) : NULL;
    json_decref(root);
    if (!text) return diat_set_error(err, DIAT_ERR_MEMORY, "Out of memory writing '%s'.", path);
    /* With its final newline; written atomically, so an interrupted run
     * never leaves half a file where the old one was. */
    size_t length = strlen(text);
    char *line = realloc(text, length + 2);
    if (!line) {
        free(text);
        return diat_set_error(err, DIAT_ERR_MEMORY, "Out of memory writing '%s'.", path);
    }
    memcpy(line + length, "\n", 2);
    diat_status st = imgio_save_text(path, line, err);
    free(line);
    return st;
}

diat_status eval_write_grid(const char *path, const eval_grid *g, diat_error *err)
{
    const int tile = EVAL_FACE, cols = g->count;
    const int width = cols * tile + (cols + 1) * GRID_GAP, height = 3 * tile + 4 * GRID_GAP;
    imgio_image img;
    diat_status st = imgio_alloc(&img, width, height, 3, 8, err);
    if (st != DIAT_OK) return st;
    for (size_t i = 0; i < (size_t)width * height * 3; i++) img.samples[i] = GRID_BACKGROUND;
    for (int col = 0; col < cols; col++)
        for (int r = 0; r < 3; r++) {
            const int x0 = GRID_GAP + col * (tile + GRID_GAP),
                      y0 = GRID_GAP + r * (tile + GRID_GAP);
            for (int y = 0; y < tile; y++)
                for (int x = 0; x < tile; x++) {
                    const int i = y * tile + x;
                    uint16_t *px = img.samples + ((size_t)(y0 + y) * width + x0 + x) * 3;
                    for (int c = 0; c < 3; c++) {
                        float v = r == 0   ? g->input[col][3 * i + c]
                                  : r == 1 ? g->mask[col][i]
                                           : g->result[col][3 * i + c];
                        v = v < 0.0f ? 0.0f : v > 1.0f ? 1.0f : v;
                        px[c] = (uint16_t)lrintf(v * 255.0f);
                    }
                }
        }
    st = imgio_save(path, &img, IMGIO_FORMAT_PNG, err);
    imgio_free(&img);
    return st;
}

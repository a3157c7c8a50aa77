/* `diat eval`: how well an attribute model does on CelebA faces the trainer
 * never saw (issue 7). Split over four files:
 *
 *   eval.c          options, the run over the faces, the per-face figures
 *   eval-celeba.c   a split of a CelebA folder (val by default) and its face crops
 *   eval-metrics.c  the judges (classifier, faceres, dlib's ResNet, the
 *                   denoiser) and the image measures (PSNR, SSIM)
 *   eval-report.c   the table, the Markdown row, the JSON file and the grid
 *
 * Everything here works on the 128x128 aligned face the models see, with
 * the input and the result on the 8-bit grid (what a PNG of them holds), so
 * an edit that changes nothing measures as exactly nothing.
 */
#ifndef DIAT_TOOLS_EVAL_H
#define DIAT_TOOLS_EVAL_H

#include "diat.h"
#include "diat-train.h"

#include <stddef.h>

#define EVAL_FACE DIAT_FACE_SIZE
#define EVAL_PIXELS (EVAL_FACE * EVAL_FACE)
#define EVAL_FLOATS (3 * EVAL_PIXELS)
/* Faces the judges see at once: bounds memory whatever --faces is. */
#define EVAL_CHUNK 32
/* Inputs, masks and results of this many first faces go into --grid. */
#define EVAL_GRID_FACES 8
/* An identical face has an infinite PSNR; each face's is capped here. The
 * largest finite PSNR two 8-bit 128x128 RGB faces can have is 95.0 dB (one
 * sample one step apart), so 100 means "identical" and nothing else. */
#define EVAL_PSNR_CAP 100.0
/* dlib's own rule for its ResNet descriptor: the same person below 0.6. */
#define EVAL_DLIB_THRESHOLD 0.6f
/* faceres's second opinion on Young: an age head below this many years.
 * CelebA's Young has no stated age. On 700 val faces labelled Young and 700
 * not, faceres's age splits them best at 34 (balanced accuracy 82.6%); 35
 * gives 82.3% (84% of Young faces below it, 80% of the others above) and
 * is the rounder rule to state. (P(male) > 0.5 gets 98.3% on Male.) */
#define EVAL_YOUNG_AGE 35.0f
/* The same rule for face-api's age and gender network, which sees the face
 * as face-api's own pipeline does: inside the box its tiny face detector
 * finds. On 700 train faces labelled Young and 700 not, ages below 36.5 to
 * 40.5 years all split them with 82.6-82.7% balanced accuracy; 40 is the
 * round one, and gets 82.9% on 1,400 val faces (84% of Young faces below it,
 * 82% of the others above). Its P(male) > 0.5 gets 95.9% on 1,400 val faces
 * labelled for Male (models/face-age-gender.md). */
#define EVAL_FACE_API_YOUNG_AGE 40.0f

/* What faceres and face-api's age and gender network can say about the
 * model's attribute, besides the classifier. */
typedef enum eval_opinion {
    EVAL_OPINION_NONE = 0,
    EVAL_OPINION_MALE,  /* P(male) > 0.5 */
    EVAL_OPINION_YOUNG, /* age below EVAL_YOUNG_AGE, EVAL_FACE_API_YOUNG_AGE */
} eval_opinion;

/* One second opinion's sums over the faces. */
typedef struct eval_opinion_totals {
    size_t success, baseline;            /* results, sources judged to be on the target side */
    double value_results, value_sources; /* summed P(male) or age */
} eval_opinion_totals;

/* The settings of one run: options as given, then what they resolved to. */
typedef struct eval_settings {
    const char *model, *celeba, *classifier, *denoiser, *faceres, *recognition;
    /* face-api's age and gender network and the detector that frames the
     * face for it (with its landmark network): for Male and Young only */
    const char *age_gender, *detector, *landmarks;
    const char *json, *grid;
    const char *attribute_option, *direction_option; /* NULL: the model's */
    long faces_requested;                            /* 0: every face of the side */
    float ratio_option;                              /* < 0: not given */
    int threads, quiet;
    diat_backend_kind backend;
    /* resolved */
    char attribute[64], label[160];
    int add;                  /* 1: the sources lack the attribute */
    float ratio;              /* the p the edit runs at, or DIAT_RATIO_MODEL */
    float model_ratio;        /* the model's default_ratio, < 0 if none */
    const char *ratio_source; /* "--ratio" or the model's own threshold */
    eval_opinion opinion;
    int split;                      /* CelebA split: 0 train, 1 val (default), 2 test */
    size_t split_faces, side_faces; /* the split in all, and its source side */
    const char *backend_name;
} eval_settings;

/* ---- eval-celeba.c ------------------------------------------------------ */

typedef struct eval_faces {
    char **paths; /* the selected images, in the partition file's order */
    size_t count;
} eval_faces;

/* The faces of CelebA split `split` (0 train, 1 val, 2 test) in the folder
 * `root` (read by the trainer's reader, data/celeba.c) whose `attribute` is
 * `with` (1 has it, 0 lacks it), the first `limit` of them (0: all).
 * `split_total` and `side_total` receive the sizes before the limit. None
 * on that side is an error. */
diat_status eval_select_faces(const char *root, int split, const char *attribute, int with,
                              size_t limit, eval_faces *out, size_t *split_total,
                              size_t *side_total, diat_error *err);

void eval_faces_free(eval_faces *faces);

/* Face `path` as the trainer crops it (square images whole, 178x218 aligned
 * originals from row 20 down), 128x128 interleaved RGB in [0, 1] on the
 * 8-bit grid. */
diat_status eval_load_face(const char *path, float *rgb, diat_error *err);

/* ---- eval-metrics.c ----------------------------------------------------- */

/* The networks that judge inputs and results, on one context. */
typedef struct eval_judges {
    diat_context *ctx;
    diat_classifier classifier;
    int has_classifier, attribute_index;
    diat_denoiser denoiser;
    int has_denoiser;
    diat_faceres *faceres;
    diat_face_recognition recognition;
    diat_age_gender *age_gender; /* with the finder: for Male and Young only */
    diat_face_finder *finder;
    float *face_rgb;   /* one face, interleaved [0, 1], for the face finder */
    diat_tensor faces; /* upload buffer, [n, 3, 128, 128] */
} eval_judges;

/* What the judges say of n faces (arrays of n, `embedding` n * 128). */
typedef struct eval_views {
    float *attribute;                    /* classifier P(attribute); unset without one */
    diat_faceres_output *faceres;        /* descriptor, P(male), age */
    float *embedding;                    /* dlib ResNet-29 descriptors */
    float *artifact;                     /* mean (DN(y) - y)^2; unset without a denoiser */
    float *face_api_age, *face_api_male; /* unset without the age and gender network */
    unsigned char *face_api_found;       /* 1 where the detector framed the face */
} eval_views;

/* Load every judge `s` names (the classifier and denoiser are optional);
 * checks that the classifier judges s->attribute. */
diat_status eval_judges_load(eval_judges *j, diat_context *ctx, const eval_settings *s,
                             diat_error *err);
void eval_judges_free(eval_judges *j);
diat_status eval_views_alloc(eval_views *v, int n, diat_error *err);
void eval_views_free(eval_views *v);
/* Judge n faces, host NCHW [n, 3, 128, 128] in [-1, 1]. */
diat_status eval_judge(eval_judges *j, const float *faces, int n, eval_views *v, diat_error *err);

/* Whole-face measures of two interleaved 128x128 RGB faces in [0, 1]:
 * PSNR in dB (capped at EVAL_PSNR_CAP) and the mean SSIM of the three
 * channels (Gaussian window 11x11, sigma 1.5, K1 0.01, K2 0.03, range 1,
 * valid positions only: Wang et al. 2004). */
double eval_psnr(const float *a, const float *b);
double eval_ssim(const float *a, const float *b);

/* Euclidean distance of two n-vectors. */
double eval_distance(const float *a, const float *b, int n);

/* The Wilson score interval at 95% (z = 1.96) of a rate of k in n: how far
 * a success or verification rate on these faces may be from the rate on all
 * such faces. Unlike the normal approximation it stays inside [0, 1] and is
 * not empty at 0% or 100%. n = 0 gives [0, 1]. */
void eval_rate_interval(size_t k, size_t n, double *low, double *high);

/* ---- eval-report.c ------------------------------------------------------ */

/* Sums over the faces, turned into figures by the report. */
typedef struct eval_totals {
    size_t faces;
    size_t classifier_success, classifier_baseline; /* judged to be on the target side */
    double classifier_p_results, classifier_p_sources;
    eval_opinion_totals faceres_opinion, face_api_opinion;
    size_t face_api_unframed; /* faces (inputs and results) the detector missed */
    size_t faceres_same, dlib_same, identical;
    double faceres_distance, dlib_distance;
    double mask_area, mask_area_model, psnr, ssim;
    double artifact_results, artifact_sources;
} eval_totals;

/* The grid's first faces: inputs, masks (gray) and results, interleaved. */
typedef struct eval_grid {
    int count;
    float input[EVAL_GRID_FACES][EVAL_FLOATS];
    float mask[EVAL_GRID_FACES][EVAL_PIXELS];
    float result[EVAL_GRID_FACES][EVAL_FLOATS];
} eval_grid;

/* The readable table and the Markdown row, on stdout. */
void eval_print(const eval_settings *s, const eval_totals *t);
/* Every figure and setting as JSON, written atomically. */
diat_status eval_write_json(const char *path, const eval_settings *s, const eval_totals *t,
                            diat_error *err);
/* Three rows (inputs, masks, results) of 128x128 tiles as an 8-bit PNG. */
diat_status eval_write_grid(const char *path, const eval_grid *g, diat_error *err);

/* ---- eval.c -------------------------------------------------------------- */

int command_eval(int argc, char *argv[]);
void eval_help(void);

#endif /* DIAT_TOOLS_EVAL_H */

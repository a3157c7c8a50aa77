/* Command-line parsing for diat-train, with the defaults and why. */
#include "options.h"

#include "model-files.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The expected fraction p of the face an attribute occupies (the ratio
 * regularization's target). Local attributes are small, global ones large;
 * measured roughly on CelebA-128 crops. */
static const struct {
    const char *attribute;
    float ratio;
} kDefaultRatios[] = {
    {"Eyeglasses", 0.12f}, {"Mouth_Slightly_Open", 0.08f}, {"Smiling", 0.10f}, {"Young", 0.60f},
    {"Male", 0.70f},
};

/* Critic-only steps before an --init-from run trains T and M. The new D is
 * random, and its first gradients would push a trained T and M anywhere;
 * WGAN's reference code gives a fresh critic 100 steps per generator step for
 * the first 25 (2500 in all). Against an already good T and M, 200 (40
 * generator steps' worth at --n-critic 5; seconds on a GPU) is a cheap start. */
#define CRITIC_WARMUP 200

static void set_defaults(train_options *o)
{
    memset(o, 0, sizeof *o);
    o->add = 1;
    o->flip = 1;
    o->width = 24;          /* DIAT_DEFAULT_WIDTH: F16 T+M model < 10 MB */
    o->mask_width = 16;     /* M only draws a coarse 32x32 map */
    o->critic_width = 32;   /* D is not shipped; wider than T for a sharper critic */
    o->denoiser_width = 32; /* DN: small DnCNN-like net */
    o->denoiser_depth = 5;
    o->lambda_gp = 10.0f;  /* WGAN-GP paper (Gulrajani et al. 2017) */
    o->lambda_ap = 1.0f;   /* per-element mean of D's layer-4/5 features */
    o->lambda_id = 1.0f;   /* per-face squared distance of 128-d embeddings (~0.36 at 0.6) */
    o->lambda_pr = 10.0f;  /* per-pixel mean: small values, so a larger weight */
    o->lambda_ar = 1.0f;   /* |mean(m) - p| is at most 1 */
    o->ratio = -1.0f;      /* per attribute, see kDefaultRatios */
    o->critic_warmup = -1; /* CRITIC_WARMUP with --init-from, else 0 */
    o->n_critic = 5;       /* WGAN-GP paper */
    o->noise_sigma = 0.05f;
    o->lr_g = 1e-4f; /* WGAN-GP paper: 1e-4, betas (0.5, 0.9) */
    o->lr_d = 1e-4f;
    o->beta1 = 0.5f;
    o->beta2 = 0.9f;
    o->batch = 16;
    o->steps = 20000;
    o->seed = 1;
    o->checkpoint_every = 500;
    o->sample_every = 250;
    /* NULL: the shipped file, found by name (train_options_check) */
    o->face_recognition_path = NULL;
    o->face_detector_path = NULL;
    o->face_landmarks_path = NULL;
    o->backend = "auto";
}

/* A classifier is an ordinary supervised CNN with batch norm, not a GAN:
 * Adam's usual settings (Kingma & Ba: lr 1e-3, betas 0.9, 0.999) rather
 * than WGAN-GP's, and a small width so that a CPU trains it in minutes
 * (width 16: 0.44 M weights, 33 M multiply-adds per 128x128 face forward). 10000
 * steps of 32 faces are ~8.5 epochs of CelebA's 37,540 train faces (in
 * celeba128): a GPU run of minutes; CPU runs pass --steps to fit their time. */
static void set_classifier_defaults(train_options *o)
{
    o->width = 16; /* DIAT_DEFAULT_CLASSIFIER_WIDTH */
    o->lr_g = 1e-3f;
    o->beta1 = 0.9f;
    o->beta2 = 0.999f;
    o->batch = 32;
    o->steps = 10000;
}

static void usage(FILE *out)
{
    fprintf(out,
            "usage: diat-train [transfer] --run-dir DIR (--celeba DIR --attribute NAME | "
            "--source-dir A --target-dir B) [options]\n"
            "       diat-train denoiser --run-dir DIR --celeba DIR [options]\n"
            "       diat-train classifier --run-dir DIR --celeba DIR [options]\n"
            "       diat-train --run-dir DIR --export MODEL.safetensors [--f16]\n"
            "       diat-train --run-dir DIR --evaluate [--celeba DIR]   (classifier runs)\n"
            "       diat-train classifier --evaluate --model FILE --celeba DIR\n"
            "\n"
            "Data:\n"
            "  --celeba DIR           CelebA root: img_align_celeba/, list_attr_celeba.txt,\n"
            "                         list_eval_partition.txt (178x218 or square faces)\n"
            "  --attribute NAME       CelebA attribute, e.g. Eyeglasses, Smiling, Young, Male\n"
            "  --direction add|remove add: sources lack the attribute, references have it\n"
            "                         (default add)\n"
            "  --source-dir DIR       instead of CelebA: faces without the attribute ...\n"
            "  --target-dir DIR       ... and faces with it (square crops)\n"
            "  --align-faces          folders hold any photos: align each by its largest\n"
            "                         face (as `diat apply` does); faceless ones are skipped\n"
            "  --face-detector FILE   for --align-faces (default: the shipped\n"
            "                         face-detector-tiny.safetensors, found as\n"
            "                         --face-recognition's)\n"
            "  --face-landmarks FILE  for --align-faces (default: the shipped\n"
            "                         face-landmarks-68.safetensors)\n"
            "  --no-flip              no random horizontal flips\n"
            "Networks:\n"
            "  --width N              T width (default 24: F16 model < 10 MB)\n"
            "  --mask-width N         M width (default 16)\n"
            "  --critic-width N       D width (default 32)\n"
            "  --denoiser-width N     DN width (default 32); --denoiser-depth N (default 5)\n"
            "Objective (L = L_adv + ap*L_ap + id*L_id + pr*L_pr + ar*L_ar; critic + gp*GP):\n"
            "  --lambda-gp X          gradient penalty (default 10, the WGAN-GP paper)\n"
            "  --lambda-ap X          adaptive perceptual loss, mean squared D layer-4/5\n"
            "                         feature difference of y and x (default 1)\n"
            "  --lambda-id X          identity loss, squared distance of face embeddings\n"
            "                         (default 1)\n"
            "  --lambda-pr X          perceptual regularization, mean ||DN(y) - y||^2\n"
            "                         (default 10)\n"
            "  --lambda-ar X          attribute ratio |mean(m) - p| (default 1)\n"
            "  --ratio P              expected mask fraction p (default per attribute:\n"
            "                         Eyeglasses 0.12, Mouth_Slightly_Open 0.08, Smiling 0.10,\n"
            "                         Young 0.60, Male 0.70, others 0.20)\n"
            "  --n-critic N           critic steps per generator step (default 5)\n"
            "  --noise-sigma X        denoiser training noise, pixel units (default 0.05)\n"
            "Optimizer (Adam):\n"
            "  --lr-g X, --lr-d X     learning rates of T+M and of D (default 1e-4 each)\n"
            "  --beta1 X, --beta2 X   Adam betas (default 0.5, 0.9: the WGAN-GP paper)\n"
            "  --batch N              faces per step (default 16)\n"
            "  --steps N              generator steps (default 20000; 0: only the critic\n"
            "                         warm-up, e.g. to inspect it)\n"
            "  --seed N               seed: a fixed seed gives a reproducible run (default 1)\n"
            "Run:\n"
            "  --run-dir DIR          checkpoints, log.csv, samples/ and loss plot go here\n"
            "  --denoiser FILE        pretrained DN (from `diat-train denoiser`; needed when\n"
            "                         --lambda-pr > 0)\n"
            "  --face-recognition FILE identity network (default: the shipped\n"
            "                         face-recognition-resnet29.safetensors, looked for in\n"
            "                         $DIAT_MODEL_PATH, the install's share/diat/models and\n"
            "                         the source tree's models/)\n"
            "  --resume               continue from DIR/checkpoint.safetensors exactly:\n"
            "                         `diat-train --run-dir DIR --resume` is enough, from any\n"
            "                         folder (the kind of run, data, files, widths, batch,\n"
            "                         seed, --steps, objective and optimizer come from the\n"
            "                         checkpoint); --steps N goes further, and an objective\n"
            "                         or optimizer setting given (--lr-g X) replaces the\n"
            "                         run's from then on\n"
            "  --init-from MODEL      start T and M from a model `--export` wrote (F32 or\n"
            "                         F16) instead of random weights, with a fresh D and\n"
            "                         fresh Adam moments. Its attribute and direction must\n"
            "                         be the run's; --width, --mask-width must match it\n"
            "                         when given (else are taken from it), --ratio defaults\n"
            "                         to its default_ratio. Not with --resume\n"
            "  --init-other-edit      let --init-from take a model of another attribute or\n"
            "                         direction (fine-tuning from a related edit: its T\n"
            "                         and M start in the right place, e.g. add-smile for\n"
            "                         open-mouth); --ratio keeps this run's default\n"
            "  --critic-warmup N      critic-only steps, T and M frozen, before training\n"
            "                         (default 200 with --init-from, else 0); logged as\n"
            "                         steps -N..-1 with the generator columns 0\n"
            "  --max-time SECONDS     stop cleanly (with a checkpoint) after this long\n"
            "  --checkpoint-every N   steps between checkpoints (default 500; also on\n"
            "                         SIGINT/SIGTERM and at the end)\n"
            "  --sample-every N       steps between sample grids (default 250)\n"
            "  --keep-exports         also export an F16 model at every checkpoint, to\n"
            "                         DIR/exports/step-NNNNNNN.safetensors (the checkpoint\n"
            "                         holds only the latest step; GAN runs swing, so keep\n"
            "                         the steps to choose from; give it again on --resume)\n"
            "  --ema DECAY            keep an exponential moving average of T and M's\n"
            "                         weights (e.g. 0.999: about the last 1,000 steps),\n"
            "                         which every export then holds; kept in the\n"
            "                         checkpoint (default 0: off, exports hold the last\n"
            "                         step's weights). Given on --resume of a run without\n"
            "                         one, the average starts there\n"
            "  --export FILE          write the inference model (T and M; or DN) from the\n"
            "                         run's checkpoint and exit; --f16 stores F16;\n"
            "                         --no-ema writes the last step's weights of a run\n"
            "                         that keeps an average\n"
            "  --threads N            CPU threads (default: all cores)\n"
            "  --backend auto|cpu|cuda\n"
            "  --quiet                no progress bar\n"
            "Classifier (`diat-train classifier`: Eyeglasses, Mouth_Slightly_Open, Smiling,\n"
            "Young and Male at once, on every face of the CelebA train split):\n"
            "  --width N              width (default 16); --batch N (default 32);\n"
            "                         --steps N (default 10000, ~8.5 epochs)\n"
            "  --lr X                 Adam learning rate (default 1e-3; betas default\n"
            "                         0.9, 0.999 here)\n"
            "  --lr-schedule cosine|constant  cosine (default) decays to lr/100 at --steps\n"
            "  --loss xent|brier      cross-entropy (default) or the Brier score, the mean\n"
            "                         squared error of the probabilities\n"
            "  --evaluate             val-split accuracy per attribute of the run's\n"
            "                         checkpoint (CelebA folder: --celeba or the run's);\n"
            "                         training ends with it too, and --export stores it\n"
            "  --model FILE           with --evaluate: an exported classifier instead\n"
            "                         (no --run-dir needed)\n");
}

enum {
    OPT_CELEBA = 256,
    OPT_ATTRIBUTE,
    OPT_DIRECTION,
    OPT_SOURCE_DIR,
    OPT_TARGET_DIR,
    OPT_ALIGN_FACES,
    OPT_FACE_DETECTOR,
    OPT_FACE_LANDMARKS,
    OPT_NO_FLIP,
    OPT_WIDTH,
    OPT_MASK_WIDTH,
    OPT_CRITIC_WIDTH,
    OPT_DENOISER_WIDTH,
    OPT_DENOISER_DEPTH,
    OPT_LAMBDA_GP,
    OPT_LAMBDA_AP,
    OPT_LAMBDA_ID,
    OPT_LAMBDA_PR,
    OPT_LAMBDA_AR,
    OPT_RATIO,
    OPT_N_CRITIC,
    OPT_NOISE_SIGMA,
    OPT_LR_G,
    OPT_LR_D,
    OPT_BETA1,
    OPT_BETA2,
    OPT_BATCH,
    OPT_STEPS,
    OPT_SEED,
    OPT_RUN_DIR,
    OPT_DENOISER,
    OPT_FACE_RECOGNITION,
    OPT_RESUME,
    OPT_INIT_FROM,
    OPT_INIT_OTHER_EDIT,
    OPT_CRITIC_WARMUP,
    OPT_MAX_TIME,
    OPT_CHECKPOINT_EVERY,
    OPT_SAMPLE_EVERY,
    OPT_EXPORT,
    OPT_F16,
    OPT_NO_EMA,
    OPT_KEEP_EXPORTS,
    OPT_EMA,
    OPT_THREADS,
    OPT_BACKEND,
    OPT_QUIET,
    OPT_LR,
    OPT_LR_SCHEDULE,
    OPT_LOSS,
    OPT_EVALUATE,
    OPT_MODEL,
    OPT_HELP,
};

static const struct option longopts[] = {
    {"celeba", 1, 0, OPT_CELEBA},
    {"attribute", 1, 0, OPT_ATTRIBUTE},
    {"direction", 1, 0, OPT_DIRECTION},
    {"source-dir", 1, 0, OPT_SOURCE_DIR},
    {"target-dir", 1, 0, OPT_TARGET_DIR},
    {"align-faces", 0, 0, OPT_ALIGN_FACES},
    {"face-detector", 1, 0, OPT_FACE_DETECTOR},
    {"face-landmarks", 1, 0, OPT_FACE_LANDMARKS},
    {"no-flip", 0, 0, OPT_NO_FLIP},
    {"width", 1, 0, OPT_WIDTH},
    {"mask-width", 1, 0, OPT_MASK_WIDTH},
    {"critic-width", 1, 0, OPT_CRITIC_WIDTH},
    {"denoiser-width", 1, 0, OPT_DENOISER_WIDTH},
    {"denoiser-depth", 1, 0, OPT_DENOISER_DEPTH},
    {"lambda-gp", 1, 0, OPT_LAMBDA_GP},
    {"lambda-ap", 1, 0, OPT_LAMBDA_AP},
    {"lambda-id", 1, 0, OPT_LAMBDA_ID},
    {"lambda-pr", 1, 0, OPT_LAMBDA_PR},
    {"lambda-ar", 1, 0, OPT_LAMBDA_AR},
    {"ratio", 1, 0, OPT_RATIO},
    {"n-critic", 1, 0, OPT_N_CRITIC},
    {"noise-sigma", 1, 0, OPT_NOISE_SIGMA},
    {"lr-g", 1, 0, OPT_LR_G},
    {"lr-d", 1, 0, OPT_LR_D},
    {"beta1", 1, 0, OPT_BETA1},
    {"beta2", 1, 0, OPT_BETA2},
    {"batch", 1, 0, OPT_BATCH},
    {"steps", 1, 0, OPT_STEPS},
    {"seed", 1, 0, OPT_SEED},
    {"run-dir", 1, 0, OPT_RUN_DIR},
    {"denoiser", 1, 0, OPT_DENOISER},
    {"face-recognition", 1, 0, OPT_FACE_RECOGNITION},
    {"resume", 0, 0, OPT_RESUME},
    {"init-from", 1, 0, OPT_INIT_FROM},
    {"init-other-edit", 0, 0, OPT_INIT_OTHER_EDIT},
    {"critic-warmup", 1, 0, OPT_CRITIC_WARMUP},
    {"max-time", 1, 0, OPT_MAX_TIME},
    {"checkpoint-every", 1, 0, OPT_CHECKPOINT_EVERY},
    {"sample-every", 1, 0, OPT_SAMPLE_EVERY},
    {"export", 1, 0, OPT_EXPORT},
    {"f16", 0, 0, OPT_F16},
    {"no-ema", 0, 0, OPT_NO_EMA},
    {"keep-exports", 0, 0, OPT_KEEP_EXPORTS},
    {"ema", 1, 0, OPT_EMA},
    {"threads", 1, 0, OPT_THREADS},
    {"backend", 1, 0, OPT_BACKEND},
    {"quiet", 0, 0, OPT_QUIET},
    {"lr", 1, 0, OPT_LR},
    {"lr-schedule", 1, 0, OPT_LR_SCHEDULE},
    {"loss", 1, 0, OPT_LOSS},
    {"evaluate", 0, 0, OPT_EVALUATE},
    {"model", 1, 0, OPT_MODEL},
    {"help", 0, 0, OPT_HELP},
    {0, 0, 0, 0},
};

_Static_assert(sizeof longopts / sizeof longopts[0] <= 128, "train_options.given holds 128 bits");

int train_option_given(const train_options *o, const char *name)
{
    for (int i = 0; longopts[i].name; i++)
        if (strcmp(longopts[i].name, name) == 0) return (int)((o->given[i / 64] >> (i % 64)) & 1);
    /* A name not in the table is a typo in diat-train itself: fail loudly. */
    fprintf(stderr, "diat-train: internal error: no option --%s\n", name);
    abort();
}

static int parse_long(const char *text, const char *name, long lo, long hi, long *out)
{
    char *end;
    long v = strtol(text, &end, 10);
    if (end == text || *end || v < lo || v > hi) {
        fprintf(stderr, "diat-train: error: %s must be an integer in [%ld, %ld], got '%s'\n", name,
                lo, hi, text);
        return -1;
    }
    *out = v;
    return 0;
}

static int parse_float(const char *text, const char *name, double lo, double hi, float *out)
{
    char *end;
    double v = strtod(text, &end);
    if (end == text || *end || !(v >= lo && v <= hi)) {
        fprintf(stderr, "diat-train: error: %s must be a number in [%g, %g], got '%s'\n", name, lo,
                hi, text);
        return -1;
    }
    *out = (float)v;
    return 0;
}

static int parse_int(const char *text, const char *name, long lo, long hi, int *out)
{
    long v;
    if (parse_long(text, name, lo, hi, &v)) return -1;
    *out = (int)v;
    return 0;
}

/* A classifier trains on every CelebA face of the train split for five
 * attributes at once: data selection, directions and the GAN's helpers do
 * not apply. */
static int check_classifier(train_options *o)
{
    o->critic_warmup = 0;
    if (o->not_classifier_option) {
        fprintf(stderr,
                "diat-train: error: --%s does not apply to `diat-train classifier`: it trains "
                "Eyeglasses, Mouth_Slightly_Open, Smiling, Young and Male at once on every "
                "CelebA train face, with --lr (see --help)\n",
                o->not_classifier_option);
        return -1;
    }
    if (o->model_path && !o->evaluate) {
        fprintf(stderr, "diat-train: error: --model FILE goes with --evaluate\n");
        return -1;
    }
    if (o->evaluate && o->export_path) {
        fprintf(stderr, "diat-train: error: --evaluate and --export are separate commands "
                        "(--export stores the evaluation anyway)\n");
        return -1;
    }
    if (o->evaluate && o->model_path && !o->celeba_root) {
        fprintf(stderr, "diat-train: error: --evaluate --model needs --celeba DIR (the val "
                        "split to judge it on)\n");
        return -1;
    }
    if (o->evaluate && o->model_path) return 0;
    if (!o->run_dir) {
        fprintf(stderr, "diat-train: error: --run-dir is required (see --help)\n");
        return -1;
    }
    if (!o->celeba_root && !o->export_path && !o->evaluate) {
        fprintf(stderr, "diat-train: error: no data: a classifier trains on CelebA: give "
                        "--celeba DIR\n");
        return -1;
    }
    return 0;
}

/* A shipped model the run needs and the command line did not name: found
 * like `diat` finds it (model-files.h), from any folder. */
static int find_shipped_model(train_options *o, int slot, const char *name, const char *option,
                              const char **path)
{
    char searched[2048];
    if (*path) return 0;
    if (diat_model_file_find(name, o->path_storage[slot], sizeof o->path_storage[slot], searched,
                             sizeof searched) == 0) {
        *path = o->path_storage[slot];
        return 0;
    }
    fprintf(stderr,
            "diat-train: error: the model %s was not found (looked in $DIAT_MODEL_PATH and %s); "
            "give --%s FILE\n",
            name, searched, option);
    return -1;
}

int train_options_check(train_options *o)
{
    if (o->mode == TRAIN_CLASSIFIER) return check_classifier(o);
    if (o->classifier_option && !(o->evaluate && !o->model_path)) {
        fprintf(stderr,
                "diat-train: error: --%s applies to `diat-train classifier` (transfer and "
                "denoiser runs have --lr-g and --lr-d)\n",
                o->classifier_option);
        return -1;
    }
    if (!o->run_dir) {
        fprintf(stderr, "diat-train: error: --run-dir is required (see --help)\n");
        return -1;
    }
    if (o->init_from && (o->resume || o->export_path)) {
        fprintf(stderr,
                "diat-train: error: --init-from starts a new run; it does not go with "
                "%s (a resumed run keeps the weights its checkpoint holds)\n",
                o->resume ? "--resume" : "--export");
        return -1;
    }
    if (o->keep_exports && o->mode != TRAIN_TRANSFER) {
        fprintf(stderr, "diat-train: error: --keep-exports applies to transfer runs\n");
        return -1;
    }
    if (o->ema_decay > 0.0f && (o->mode != TRAIN_TRANSFER || o->export_path)) {
        fprintf(stderr, "diat-train: error: --ema applies to training transfer runs (an "
                        "export holds the average its run kept)\n");
        return -1;
    }
    if (o->export_last_weights && !o->export_path) {
        fprintf(stderr, "diat-train: error: --no-ema goes with --export FILE\n");
        return -1;
    }
    if (o->init_other_edit && !o->init_from) {
        fprintf(stderr, "diat-train: error: --init-other-edit goes with --init-from MODEL\n");
        return -1;
    }
    if (o->mode == TRAIN_DENOISER && (o->init_from || o->critic_warmup_given)) {
        fprintf(stderr, "diat-train: error: --init-from and --critic-warmup apply to transfer "
                        "runs, not to the denoiser\n");
        return -1;
    }
    if (o->critic_warmup < 0) o->critic_warmup = o->init_from ? CRITIC_WARMUP : 0;
    /* The mode comes from the run's checkpoint. */
    if (o->export_path || o->evaluate) return 0;
    int folders = o->source_dir || o->target_dir;
    if (folders && (!o->source_dir || !o->target_dir)) {
        fprintf(stderr, "diat-train: error: --source-dir and --target-dir go together\n");
        return -1;
    }
    if (folders && o->celeba_root) {
        fprintf(stderr, "diat-train: error: use either --celeba or --source-dir/--target-dir\n");
        return -1;
    }
    if (o->align_faces && !folders) {
        fprintf(stderr, "diat-train: error: --align-faces applies to --source-dir/--target-dir "
                        "(CelebA's faces are aligned already)\n");
        return -1;
    }
    if (!folders && !o->celeba_root) {
        fprintf(stderr, "diat-train: error: no data: give --celeba DIR or --source-dir and "
                        "--target-dir\n");
        return -1;
    }
    if (o->mode == TRAIN_TRANSFER && o->celeba_root && !o->attribute) {
        fprintf(stderr, "diat-train: error: --attribute is required with --celeba\n");
        return -1;
    }
    if (o->mode == TRAIN_TRANSFER && o->lambda_pr > 0.0f && !o->denoiser_path) {
        fprintf(stderr, "diat-train: error: --lambda-pr needs a pretrained denoiser: train one "
                        "with `diat-train denoiser` and pass --denoiser FILE (or --lambda-pr 0)\n");
        return -1;
    }
    if (o->mode == TRAIN_TRANSFER &&
        find_shipped_model(o, TRAIN_PATH_FACE_RECOGNITION, "face-recognition-resnet29.safetensors",
                           "face-recognition", &o->face_recognition_path))
        return -1;
    if (o->align_faces &&
        (find_shipped_model(o, TRAIN_PATH_FACE_DETECTOR, "face-detector-tiny.safetensors",
                            "face-detector", &o->face_detector_path) ||
         find_shipped_model(o, TRAIN_PATH_FACE_LANDMARKS, "face-landmarks-68.safetensors",
                            "face-landmarks", &o->face_landmarks_path)))
        return -1;
    if (o->ratio < 0.0f) {
        o->ratio = 0.20f;
        for (size_t i = 0; o->attribute && i < sizeof kDefaultRatios / sizeof kDefaultRatios[0];
             i++)
            if (strcmp(o->attribute, kDefaultRatios[i].attribute) == 0)
                o->ratio = kDefaultRatios[i].ratio;
    }
    return 0;
}

int train_options_parse(int argc, char **argv, train_options *o)
{
    set_defaults(o);
    if (argc > 1 && argv[1][0] != '-') {
        o->mode_given = 1;
        if (strcmp(argv[1], "denoiser") == 0)
            o->mode = TRAIN_DENOISER;
        else if (strcmp(argv[1], "transfer") == 0)
            o->mode = TRAIN_TRANSFER;
        else if (strcmp(argv[1], "classifier") == 0) {
            o->mode = TRAIN_CLASSIFIER;
            set_classifier_defaults(o);
        } else {
            fprintf(stderr,
                    "diat-train: error: unknown command '%s' (transfer, denoiser or "
                    "classifier)\n",
                    argv[1]);
            return 2;
        }
        argv++;
        argc--;
    }
    opterr = 0;
    optind = 1;
    int c;
    long value = 0;
    float number = 0.0f;
    int index = 0;
    while ((index = -1, c = getopt_long(argc, argv, ":h", longopts, &index)) != -1) {
        int bad = 0;
        if (index >= 0 && index < 128) o->given[index / 64] |= 1ull << (index % 64);
        /* Options a classifier does not take, and its own: remembered, to
         * refuse them in the other kind of run with a clear message. */
        static const int not_classifier[] = {OPT_ATTRIBUTE,
                                             OPT_DIRECTION,
                                             OPT_SOURCE_DIR,
                                             OPT_TARGET_DIR,
                                             OPT_ALIGN_FACES,
                                             OPT_INIT_FROM,
                                             OPT_INIT_OTHER_EDIT,
                                             OPT_CRITIC_WARMUP,
                                             OPT_DENOISER,
                                             OPT_LR_G,
                                             OPT_LR_D,
                                             OPT_EMA};
        static const int classifier_only[] = {OPT_LR, OPT_LR_SCHEDULE, OPT_LOSS, OPT_MODEL};
        for (size_t k = 0; k < sizeof not_classifier / sizeof not_classifier[0]; k++)
            if (c == not_classifier[k] && !o->not_classifier_option)
                o->not_classifier_option = longopts[index].name;
        for (size_t k = 0; k < sizeof classifier_only / sizeof classifier_only[0]; k++)
            if (c == classifier_only[k] && !o->classifier_option)
                o->classifier_option = longopts[index].name;
        switch (c) {
        case OPT_CELEBA: o->celeba_root = optarg; break;
        case OPT_ATTRIBUTE: o->attribute = optarg; break;
        case OPT_DIRECTION:
            if (strcmp(optarg, "add") == 0)
                o->add = 1;
            else if (strcmp(optarg, "remove") == 0)
                o->add = 0;
            else {
                fprintf(stderr, "diat-train: error: --direction is add or remove, got '%s'\n",
                        optarg);
                bad = 1;
            }
            break;
        case OPT_SOURCE_DIR: o->source_dir = optarg; break;
        case OPT_TARGET_DIR: o->target_dir = optarg; break;
        case OPT_ALIGN_FACES: o->align_faces = 1; break;
        case OPT_FACE_DETECTOR: o->face_detector_path = optarg; break;
        case OPT_FACE_LANDMARKS: o->face_landmarks_path = optarg; break;
        case OPT_NO_FLIP: o->flip = 0; break;
        case OPT_WIDTH:
            bad = parse_int(optarg, "--width", 1, 256, &o->width);
            o->width_given = 1;
            break;
        case OPT_MASK_WIDTH:
            bad = parse_int(optarg, "--mask-width", 1, 256, &o->mask_width);
            o->mask_width_given = 1;
            break;
        case OPT_CRITIC_WIDTH:
            bad = parse_int(optarg, "--critic-width", 1, 256, &o->critic_width);
            break;
        case OPT_DENOISER_WIDTH:
            bad = parse_int(optarg, "--denoiser-width", 1, 256, &o->denoiser_width);
            break;
        case OPT_DENOISER_DEPTH:
            bad = parse_int(optarg, "--denoiser-depth", 2, 64, &o->denoiser_depth);
            break;
        case OPT_LAMBDA_GP: bad = parse_float(optarg, "--lambda-gp", 0, 1e6, &o->lambda_gp); break;
        case OPT_LAMBDA_AP: bad = parse_float(optarg, "--lambda-ap", 0, 1e6, &o->lambda_ap); break;
        case OPT_LAMBDA_ID: bad = parse_float(optarg, "--lambda-id", 0, 1e6, &o->lambda_id); break;
        case OPT_LAMBDA_PR: bad = parse_float(optarg, "--lambda-pr", 0, 1e6, &o->lambda_pr); break;
        case OPT_LAMBDA_AR: bad = parse_float(optarg, "--lambda-ar", 0, 1e6, &o->lambda_ar); break;
        case OPT_RATIO:
            bad = parse_float(optarg, "--ratio", 0, 1, &o->ratio);
            o->ratio_given = 1;
            break;
        case OPT_N_CRITIC: bad = parse_int(optarg, "--n-critic", 1, 100, &o->n_critic); break;
        case OPT_NOISE_SIGMA:
            bad = parse_float(optarg, "--noise-sigma", 0, 1, &o->noise_sigma);
            break;
        case OPT_LR_G: bad = parse_float(optarg, "--lr-g", 0, 1, &o->lr_g); break;
        case OPT_LR_D: bad = parse_float(optarg, "--lr-d", 0, 1, &o->lr_d); break;
        case OPT_BETA1: bad = parse_float(optarg, "--beta1", 0, 0.9999, &o->beta1); break;
        case OPT_BETA2: bad = parse_float(optarg, "--beta2", 0, 0.9999999, &o->beta2); break;
        case OPT_BATCH: bad = parse_int(optarg, "--batch", 1, 4096, &o->batch); break;
        case OPT_STEPS: bad = parse_long(optarg, "--steps", 0, 100000000L, &o->steps); break;
        case OPT_SEED:
            bad = parse_long(optarg, "--seed", 0, 0x7fffffffL, &value);
            o->seed = (uint64_t)value;
            break;
        case OPT_RUN_DIR: o->run_dir = optarg; break;
        case OPT_DENOISER: o->denoiser_path = optarg; break;
        case OPT_FACE_RECOGNITION: o->face_recognition_path = optarg; break;
        case OPT_RESUME: o->resume = 1; break;
        case OPT_INIT_FROM: o->init_from = optarg; break;
        case OPT_INIT_OTHER_EDIT: o->init_other_edit = 1; break;
        case OPT_CRITIC_WARMUP:
            bad = parse_int(optarg, "--critic-warmup", 0, 100000000, &o->critic_warmup);
            o->critic_warmup_given = 1;
            break;
        case OPT_MAX_TIME:
            bad = parse_float(optarg, "--max-time", 0, 1e9, &number);
            o->max_time = number;
            break;
        case OPT_CHECKPOINT_EVERY:
            bad = parse_long(optarg, "--checkpoint-every", 1, 100000000L, &o->checkpoint_every);
            break;
        case OPT_SAMPLE_EVERY:
            bad = parse_long(optarg, "--sample-every", 1, 100000000L, &o->sample_every);
            break;
        case OPT_EXPORT: o->export_path = optarg; break;
        case OPT_F16: o->export_f16 = 1; break;
        case OPT_NO_EMA: o->export_last_weights = 1; break;
        case OPT_KEEP_EXPORTS: o->keep_exports = 1; break;
        case OPT_EMA: bad = parse_float(optarg, "--ema", 0, 0.99999, &o->ema_decay); break;
        case OPT_THREADS: bad = parse_int(optarg, "--threads", 0, 1024, &o->threads); break;
        case OPT_BACKEND: o->backend = optarg; break;
        case OPT_QUIET: o->quiet = 1; break;
        case OPT_LR: bad = parse_float(optarg, "--lr", 0, 1, &o->lr_g); break;
        case OPT_LR_SCHEDULE:
            if (strcmp(optarg, "cosine") == 0 || strcmp(optarg, "constant") == 0)
                o->lr_constant = optarg[1] == 'o';
            else {
                fprintf(stderr,
                        "diat-train: error: --lr-schedule is cosine or constant, got '%s'\n",
                        optarg);
                bad = 1;
            }
            break;
        case OPT_LOSS:
            if (strcmp(optarg, "xent") == 0 || strcmp(optarg, "brier") == 0)
                o->loss_brier = optarg[0] == 'b';
            else {
                fprintf(stderr, "diat-train: error: --loss is xent or brier, got '%s'\n", optarg);
                bad = 1;
            }
            break;
        case OPT_EVALUATE: o->evaluate = 1; break;
        case OPT_MODEL: o->model_path = optarg; break;
        case 'h':
        case OPT_HELP: usage(stdout); return 1;
        case ':':
            fprintf(stderr, "diat-train: error: %s needs an argument\n", argv[optind - 1]);
            return 2;
        default:
            fprintf(stderr, "diat-train: error: unknown option '%s' (see --help)\n",
                    argv[optind - 1]);
            return 2;
        }
        if (bad) return 2;
    }
    if (optind < argc) {
        fprintf(stderr, "diat-train: error: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    if (o->resume) {
        if (o->run_dir) return 0; /* the rest once the checkpoint is read */
        fprintf(stderr, "diat-train: error: --resume needs --run-dir DIR (the run to continue)\n");
        return 2;
    }
    return train_options_check(o) ? 2 : 0;
}

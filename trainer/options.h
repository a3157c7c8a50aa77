/* diat-train's command line: every loss weight, width and optimizer setting
 * is a flag with a documented default (DESIGN.md: the paper's exact values
 * are unknown, so each choice is explained in options.c and in --help). */
#ifndef DIAT_TRAIN_OPTIONS_H
#define DIAT_TRAIN_OPTIONS_H

#include <stdint.h>

typedef enum train_mode {
    TRAIN_TRANSFER = 0, /* T and M against D: the DIAT objective */
    TRAIN_DENOISER,     /* DN on noisy/clean faces (run first) */
    TRAIN_CLASSIFIER,   /* the attribute classifier that judges results */
} train_mode;

/* Files and folders a checkpoint records (absolute), so that --resume
 * needs none of them again; indices into train_options.path_storage. */
enum {
    TRAIN_PATH_CELEBA,
    TRAIN_PATH_SOURCE_DIR,
    TRAIN_PATH_TARGET_DIR,
    TRAIN_PATH_DENOISER,
    TRAIN_PATH_FACE_RECOGNITION,
    TRAIN_PATH_FACE_DETECTOR,
    TRAIN_PATH_FACE_LANDMARKS,
    TRAIN_RECORDED_PATHS
};

typedef struct train_options {
    train_mode mode;
    int mode_given; /* the command word (transfer, denoiser, classifier) was given */
    /* data */
    const char *celeba_root, *attribute, *source_dir, *target_dir;
    int align_faces; /* folder pairs: align each image by its largest face */
    const char *face_detector_path, *face_landmarks_path;
    int add; /* direction: 1 add the attribute, 0 remove it */
    int flip;
    /* networks */
    int width, mask_width, critic_width, denoiser_width, denoiser_depth;
    /* set when given on the command line: otherwise an --init-from model or,
     * on --resume, the checkpoint supplies them */
    int width_given, mask_width_given, ratio_given, critic_warmup_given;
    /* objective */
    float lambda_gp, lambda_ap, lambda_id, lambda_pr, lambda_ar, ratio;
    int n_critic;
    float noise_sigma; /* denoiser training noise, pixel units */
    /* optimizer (lr_g is the classifier's --lr) */
    float lr_g, lr_d, beta1, beta2;
    int batch;
    long steps;
    uint64_t seed;
    /* run */
    const char *run_dir;
    const char *denoiser_path, *face_recognition_path;
    const char *export_path;
    int export_f16;
    int export_last_weights; /* --no-ema: export the weights, not the run's average */
    int keep_exports;        /* an F16 model in DIR/exports/ at every checkpoint */
    float ema_decay;         /* --ema: exports hold T and M's moving average; 0 = off */
    int resume;
    /* --init-from: T and M from a shipped model; a fresh D first trains
     * alone for critic_warmup critic steps */
    const char *init_from;
    int init_other_edit; /* --init-other-edit: the model may make another edit */
    int critic_warmup;
    double max_time; /* seconds, 0 = unlimited */
    long checkpoint_every, sample_every;
    int threads;
    const char *backend;
    int quiet;
    /* classifier: cross-entropy or Brier score; cosine learning-rate decay
     * over --steps or constant; --evaluate the run (or --model FILE) */
    int loss_brier, lr_constant, evaluate;
    const char *model_path;
    /* the first option given that a classifier run does not take (or that
     * only a classifier run takes), to refuse it clearly; NULL when none */
    const char *not_classifier_option, *classifier_option;
    char attribute_storage[64]; /* holds `attribute` when read from a checkpoint */
    /* the recorded paths a resumed run (or an export's classifier
     * evaluation) took from its checkpoint, and the shipped models found by
     * name (phi, the face models) */
    char path_storage[TRAIN_RECORDED_PATHS][4096];
    /* which long options the command line gave, by their index in the
     * option table: see train_option_given */
    uint64_t given[2];
    /* provenance of an --init-from run ("NAME (SIZE bytes, FNV-1a ...)"),
     * kept in its checkpoints and exports; empty otherwise */
    char init_note[512];
    int objective_known; /* lambdas, n_critic, lr, betas known: a training run's, or
                            read from the checkpoint by --export */
} train_options;

/* Parse argv. Returns 0 to run, 1 when --help was printed, 2 on a usage
 * error (message already printed to stderr). With --resume only --run-dir
 * is checked here: the rest waits for the checkpoint's settings
 * (checkpoint_read_resume), then train_options_check. */
int train_options_parse(int argc, char **argv, train_options *o);

/* Whether the command line gave the long option `name` ("lambda-id"). */
int train_option_given(const train_options *o, const char *name);

/* The options' consistency (data given, one kind of data, the denoiser
 * for --lambda-pr, ...), with the defaults that depend on others filled
 * in. 0 when fine, else -1 after printing the error. */
int train_options_check(train_options *o);

#endif

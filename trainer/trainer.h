/* Private to diat-train: the training state shared by its files. */
#ifndef DIAT_TRAINER_H
#define DIAT_TRAINER_H

#include "dataset.h"
#include "diat-train.h"
#include "options.h"

/* Adam over every trainable parameter of some networks. */
typedef struct optimizer {
    int count;
    diat_param **params;
    diat_tensor *m, *v; /* first and second moments, like each parameter */
    int step;
    float lr, beta1, beta2;
} optimizer;

diat_status optimizer_init(optimizer *opt, diat_context *ctx, diat_net *const *nets, int net_count,
                           float lr, float beta1, float beta2, diat_error *err);
void optimizer_free(optimizer *opt, diat_context *ctx);
/* One Adam step on the accumulated gradients. */
void optimizer_step(optimizer *opt, diat_context *ctx);

/* --ema: an exponential moving average of some networks' parameters (all
 * of them, batch-norm statistics included), in host memory
 * (weight-average.c). */
typedef struct weight_average {
    int count; /* 0: no average kept */
    diat_param **params;
    float **values; /* the average, like each parameter */
    float *scratch; /* one parameter's current value */
    float decay;
} weight_average;

/* Start the average at the networks' current weights. */
diat_status weight_average_init(weight_average *avg, diat_context *ctx, diat_net *const *nets,
                                int net_count, float decay, diat_error *err);
void weight_average_free(weight_average *avg);
/* Restart it at the current weights (on resuming a run whose checkpoint
 * holds no average). */
void weight_average_reset(weight_average *avg, diat_context *ctx);
/* average = decay * average + (1 - decay) * weights; after each step. */
void weight_average_update(weight_average *avg, diat_context *ctx);
/* Swap the average and the networks' weights (twice restores both): an
 * export writes the average through the networks. */
void weight_average_exchange(weight_average *avg, diat_context *ctx);
/* Checkpoint tensors "ema.<parameter>", F32. Loading sets *found to 0 and
 * leaves the average alone when the checkpoint has none. */
diat_status weight_average_save(const weight_average *avg, diat_st_writer *w, diat_error *err);
diat_status weight_average_load(weight_average *avg, const diat_safetensors *st, int *found,
                                diat_error *err);

/* The scalars one step measures, in backend memory (downloaded to log). */
enum loss_slot {
    LOSS_CRITIC_REAL, /* mean D(reference) */
    LOSS_CRITIC_FAKE, /* mean D(y) in the critic step */
    LOSS_GP,          /* lambda_gp-weighted gradient penalty */
    LOSS_ADV,         /* -mean D(y) */
    LOSS_AP4,
    LOSS_AP5,       /* weighted adaptive perceptual terms */
    LOSS_ID,        /* weighted identity term */
    LOSS_PR,        /* weighted perceptual regularization */
    LOSS_AR,        /* weighted attribute ratio term */
    LOSS_MASK_MEAN, /* mean(m) */
    LOSS_DENOISE,   /* denoiser mode: mean squared error */
    /* classifier mode (host-computed from the batch's probabilities): */
    LOSS_CLS_XENT,  /* mean cross-entropy over faces and attributes */
    LOSS_CLS_BRIER, /* mean squared error of the probabilities */
    LOSS_CLS_ACC,   /* accuracy on the batch, one slot per attribute */
    LOSS_SLOTS = LOSS_CLS_ACC + 5
};

/* The classifier's attributes, in output order (classifier.c). */
#define CLASSIFIER_ATTRIBUTES 5
extern const char *const classifier_attributes[CLASSIFIER_ATTRIBUTES];

/* Accuracy per attribute on the val split (threshold 0.5). */
typedef struct classifier_eval {
    long step;      /* the training step it judged; -1 when there is none */
    long faces;     /* faces judged (unreadable ones are left out) */
    int attributes; /* the classifier's outputs */
    double accuracy[DIAT_CLASSIFIER_MAX_OUTPUTS];
    double positive[DIAT_CLASSIFIER_MAX_OUTPUTS]; /* fraction of the faces that have it */
} classifier_eval;

/* Host copy of one step's figures, as logged. */
typedef struct step_figures {
    long step;
    double seconds;
    double value[LOSS_SLOTS];
} step_figures;

typedef struct trainer {
    train_options opt;
    diat_context *ctx;
    diat_dataset *data;
    /* networks */
    diat_transform transform;
    diat_mask mask;
    diat_critic critic;
    diat_denoiser denoiser;
    diat_face_recognition identity;
    diat_classifier classifier;
    int have_identity, have_denoiser;
    optimizer opt_g, opt_d; /* T+M (or DN in denoiser mode), and D */
    weight_average average; /* T+M's, with --ema */
    /* progress: generator steps done, critic warm-up steps done (of
     * opt.critic_warmup); RNG for interpolation and noise */
    long step, warmup_done;
    uint64_t rng;
    /* fixed validation faces for the sample grids (NCHW, network units) */
    int sample_count;
    float *sample_faces;
    /* batch buffers */
    float *host_sources, *host_references, *host_noise;
    diat_tensor sources, references, result, interp, interp_weight, penalty_grad, penalty_u;
    diat_tensor feat4_x, feat5_x, dfeat4, dfeat5, dscore, embed_x, dembed;
    diat_tensor dresult, dtransform, dmask, dtarget, scalars;
    /* classifier mode: labels of the batch, dL/dlogits, the probabilities
     * downloaded, and the last val-split evaluation */
    float *host_labels, *host_logits;
    diat_tensor labels, dlogits;
    classifier_eval eval;
} trainer;

/* Build everything the options ask for (networks, data, optimizers). */
diat_status trainer_init(trainer *tr, const train_options *opt, diat_error *err);
void trainer_free(trainer *tr);

/* One generator step (n_critic critic steps first) or one denoiser step;
 * fills `figures` with the step's losses. */
diat_status trainer_step(trainer *tr, step_figures *figures, diat_error *err);
/* One critic-only warm-up step with T and M frozen (inference mode, so not
 * even M's batch-norm statistics move); logged as step warmup_done - N - 1,
 * i.e. -N..-1, before the generator's 1, 2, ... */
diat_status trainer_warmup_step(trainer *tr, step_figures *figures, diat_error *err);

/* --init-from (init-from.c). Before trainer_init: check that the file is an
 * inference model of this run's attribute and direction, take its widths and
 * ratio where the command line gave none, and fill opt.init_note. After the
 * networks exist: load T and M from it. */
diat_status init_from_read_settings(const char *path, train_options *o, diat_error *err);
diat_status init_from_load(trainer *tr, const char *path, diat_error *err);

/* Checkpoints: every network, both optimizers, the data position and RNG. */
diat_status checkpoint_save(const trainer *tr, const char *path, diat_error *err);
diat_status checkpoint_load(trainer *tr, const char *path, diat_error *err);
/* The run settings stored in a checkpoint (widths, mode, attribute, ...). */
diat_status checkpoint_read_settings(const char *path, train_options *o, diat_error *err);
/* Before a --resume: the settings an --init-from run may have taken from its
 * model (T and M widths, ratio) where not given, the warm-up length and the
 * run's provenance. */
diat_status checkpoint_read_resume(const char *path, train_options *o, diat_error *err);

/* The inference model (T and M, their --ema average when the run keeps
 * one), or the denoiser, with full metadata; weights in `dtype` (F16 or
 * F32). */
diat_status export_model(trainer *tr, const char *path, diat_dtype dtype, diat_error *err);

/* The attribute classifier's run (classifier.c). Setup after the context
 * exists (data unless exporting or evaluating, network, Adam, buffers). */
diat_status classifier_setup(trainer *tr, diat_error *err);
void classifier_release(trainer *tr);
/* One Adam step on a batch of labeled faces; fills the LOSS_CLS_* figures. */
diat_status classifier_step(trainer *tr, step_figures *figures, diat_error *err);
/* Judge `c` on every face of the CelebA val split (threshold 0.5), showing
 * progress on stderr unless quiet. */
diat_status classifier_evaluate(diat_classifier *c, const char *celeba_root, int quiet,
                                classifier_eval *out, diat_error *err);
/* The run's classifier at its current step, unless tr->eval is for it
 * already; the data are --celeba or the folder the run trained on. */
diat_status classifier_evaluate_run(trainer *tr, diat_error *err);
/* Print an evaluation of `c` (stdout): accuracy and base rate per attribute. */
void classifier_print_eval(const diat_classifier *c, const classifier_eval *e, const char *what);
/* --evaluate --model FILE: load an export through the public API and judge
 * it; returns the exit status. */
int classifier_evaluate_file(const train_options *opt);
/* The evaluation in a checkpoint's metadata, and back. */
diat_status classifier_save_eval(const trainer *tr, diat_st_writer *w, diat_error *err);
diat_status classifier_load_eval(trainer *tr, const diat_safetensors *st, diat_error *err);
/* The classifier's part of an export: metadata and weights. */
diat_status classifier_export(const trainer *tr, diat_st_writer *w, diat_dtype dtype,
                              diat_error *err);

/* Reports: progress line, CSV log, sample grid and loss plot PNGs. */
void report_progress(const trainer *tr, const step_figures *f, double images_per_second,
                     double eta_seconds);
/* The CSV columns are the mode's (report.c: logged_slots). */
diat_status report_append_csv(const char *path, train_mode mode, const step_figures *f,
                              int write_header, diat_error *err);
diat_status report_truncate_csv(const char *path, long last_step, diat_error *err);
diat_status report_sample_grid(trainer *tr, const char *path, diat_error *err);
diat_status report_loss_plot(const char *csv_path, const char *png_path, train_mode mode,
                             diat_error *err);

#endif

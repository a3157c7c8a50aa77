/* diat-train: trains DIAT's transform and mask networks against a WGAN-GP
 * critic (or the denoiser they are regularised with, or the attribute
 * classifier that judges their results), with checkpoints that resume
 * exactly, a time budget, logs, samples and export.
 * Run `diat-train --help` for every option and its default. */
#include "trainer.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

static volatile sig_atomic_t stop_signal;

static void on_signal(int sig)
{
    stop_signal = sig;
}

static double now_seconds(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int file_exists(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0;
}

static void join(char *out, size_t size, const char *dir, const char *name)
{
    snprintf(out, size, "%s/%s", dir, name);
}

static int fail(const diat_error *err)
{
    fprintf(stderr, "\ndiat-train: error: %s\n", err->message);
    return 1;
}

/* mkdir -p: the run folder and its parents. */
static int make_dir(const char *path)
{
    char partial[4096];
    size_t length = strlen(path);
    if (length >= sizeof partial) {
        fprintf(stderr, "diat-train: error: path too long: %s\n", path);
        return -1;
    }
    for (size_t i = 1; i <= length; i++) {
        if (path[i] != '/' && path[i] != '\0') continue;
        memcpy(partial, path, i);
        partial[i] = '\0';
        if (mkdir(partial, 0755) != 0 && errno != EEXIST) {
            fprintf(stderr, "diat-train: error: cannot create %s: %s\n", partial, strerror(errno));
            return -1;
        }
    }
    return 0;
}

/* --export: the run's checkpoint to an inference model (or a denoiser). */
static int run_export(trainer *tr, const char *checkpoint)
{
    diat_error err = {0};
    if (!file_exists(checkpoint)) {
        fprintf(stderr, "diat-train: error: %s does not exist: nothing to export\n", checkpoint);
        return 1;
    }
    /* A classifier's export carries its val-split accuracy at this step. */
    if (checkpoint_load(tr, checkpoint, &err) ||
        (tr->opt.mode == TRAIN_CLASSIFIER && classifier_evaluate_run(tr, &err)) ||
        export_model(tr, tr->opt.export_path, tr->opt.export_f16 ? DIAT_DTYPE_F16 : DIAT_DTYPE_F32,
                     &err))
        return fail(&err);
    printf("diat-train: exported step %ld to %s\n", tr->step, tr->opt.export_path);
    return 0;
}

/* --evaluate: the run's classifier at its checkpoint, on the val split. */
static int run_evaluate(trainer *tr, const char *checkpoint)
{
    diat_error err = {0};
    if (checkpoint_load(tr, checkpoint, &err) || classifier_evaluate_run(tr, &err))
        return fail(&err);
    char what[64];
    snprintf(what, sizeof what, "the run at step %ld", tr->step);
    classifier_print_eval(&tr->classifier, &tr->eval, what);
    return 0;
}

static int save_outputs(trainer *tr, const char *checkpoint, const char *log, const char *plot,
                        const char *samples_dir, int with_checkpoint, int with_samples)
{
    diat_error err = {0};
    if (with_checkpoint && checkpoint_save(tr, checkpoint, &err)) return fail(&err);
    if (with_checkpoint && tr->opt.keep_exports && tr->step > 0) {
        char path[4096];
        snprintf(path, sizeof path, "%s/exports", tr->opt.run_dir);
        if (make_dir(path)) return 1;
        snprintf(path, sizeof path, "%s/exports/step-%07ld.safetensors", tr->opt.run_dir, tr->step);
        if (export_model(tr, path, DIAT_DTYPE_F16, &err)) return fail(&err);
    }
    if (report_loss_plot(log, plot, tr->opt.mode, &err)) return fail(&err);
    if (with_samples) {
        char path[4096];
        snprintf(path, sizeof path, "%s/step-%07ld.png", samples_dir, tr->step);
        if (report_sample_grid(tr, path, &err)) return fail(&err);
    }
    return 0;
}

int main(int argc, char **argv)
{
    train_options opt;
    int parsed = train_options_parse(argc, argv, &opt);
    if (parsed == 1) return 0;
    if (parsed == 2) return 2;
    /* An exported classifier needs no run folder. */
    if (opt.evaluate && opt.model_path) return classifier_evaluate_file(&opt);
    if (make_dir(opt.run_dir)) return 1;
    char checkpoint[4096], log[4096], plot[4096], samples_dir[4096];
    join(checkpoint, sizeof checkpoint, opt.run_dir, "checkpoint.safetensors");
    join(log, sizeof log, opt.run_dir, "log.csv");
    join(plot, sizeof plot, opt.run_dir, "loss.png");
    join(samples_dir, sizeof samples_dir, opt.run_dir, "samples");
    int reading = opt.export_path || opt.evaluate; /* the run's checkpoint, nothing else */
    /* A training run knows its objective (given, or its checkpoint's on
     * --resume), so the exports it keeps state it as --export does. */
    opt.objective_known = !reading;
    if (!reading && !opt.resume && file_exists(checkpoint)) {
        fprintf(stderr,
                "diat-train: error: %s already holds a run; continue it with --resume or choose "
                "another --run-dir\n",
                opt.run_dir);
        return 2;
    }
    if (opt.resume && !file_exists(checkpoint)) {
        fprintf(stderr, "diat-train: error: --resume: %s does not exist\n", checkpoint);
        return 2;
    }
    if (reading && !file_exists(checkpoint)) {
        fprintf(stderr, "diat-train: error: %s does not exist: nothing to %s\n", checkpoint,
                opt.export_path ? "export" : "evaluate");
        return opt.export_path ? 1 : 2;
    }

    /* Installed before the (slow) start-up, so an early Ctrl-C still ends
     * with a checkpoint after the first step rather than killing the run. */
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = on_signal;
    sigaction(SIGINT, &action, NULL);
    sigaction(SIGTERM, &action, NULL);

    trainer tr;
    diat_error err = {0};
    if (reading && checkpoint_read_settings(checkpoint, &opt, &err)) return fail(&err);
    if (opt.evaluate && opt.mode != TRAIN_CLASSIFIER) {
        fprintf(stderr, "diat-train: error: --evaluate judges classifier runs; %s holds a %s run\n",
                opt.run_dir, opt.mode == TRAIN_DENOISER ? "denoiser" : "transfer");
        return 2;
    }
    /* Settings that decide the networks' shapes, before building them. */
    if (opt.resume && checkpoint_read_resume(checkpoint, &opt, &err)) return fail(&err);
    if (opt.resume && train_options_check(&opt)) return 2;
    if (!reading && opt.mode != TRAIN_CLASSIFIER && make_dir(samples_dir)) return 1;
    if (opt.init_from && init_from_read_settings(opt.init_from, &opt, &err)) return fail(&err);
    if (trainer_init(&tr, &opt, &err)) {
        int rc = fail(&err);
        trainer_free(&tr);
        return rc;
    }
    if (reading) {
        int rc = opt.export_path ? run_export(&tr, checkpoint) : run_evaluate(&tr, checkpoint);
        trainer_free(&tr);
        return rc;
    }
    if (opt.resume) {
        if (checkpoint_load(&tr, checkpoint, &err) || report_truncate_csv(log, tr.step, &err)) {
            int rc = fail(&err);
            trainer_free(&tr);
            return rc;
        }
        if (!opt.quiet)
            fprintf(stderr, "diat-train: resumed at step %ld (critic warm-up %ld/%d)\n", tr.step,
                    tr.warmup_done, opt.critic_warmup);
    }
    if (opt.init_from && !opt.quiet)
        fprintf(stderr, "diat-train: T and M from %s; %d critic warm-up steps first\n",
                opt.init_note, opt.critic_warmup);
    if (!opt.quiet)
        fprintf(stderr, "diat-train: %s backend, %d threads, BLAS: %s\n",
                diat_context_backend_name(tr.ctx), diat_context_threads(tr.ctx),
                diat_blas_description());

    const double start = now_seconds();
    /* Rates and ETA per phase: a critic-only step costs less than a full one. */
    double phase_start = start;
    long phase_first = tr.warmup_done < opt.critic_warmup ? tr.warmup_done : tr.step;
    const char *reason = "finished";
    int rc = 0;
    while (tr.warmup_done < opt.critic_warmup || tr.step < opt.steps) {
        int warming = tr.warmup_done < opt.critic_warmup;
        step_figures figures;
        if ((warming ? trainer_warmup_step : trainer_step)(&tr, &figures, &err)) {
            rc = fail(&err);
            reason = "error";
            break;
        }
        double now = now_seconds(), elapsed = now - start;
        figures.seconds = elapsed;
        long done = warming ? tr.warmup_done : tr.step;
        long total = warming ? opt.critic_warmup : opt.steps;
        double per_step = (now - phase_start) / (double)(done - phase_first);
        int new_log = !file_exists(log);
        if (report_append_csv(log, opt.mode, &figures, new_log, &err)) {
            rc = fail(&err);
            break;
        }
        report_progress(&tr, &figures, opt.batch / per_step, per_step * (double)(total - done));
        if (warming && tr.warmup_done == opt.critic_warmup) {
            phase_start = now;
            phase_first = tr.step;
        }
        int stop = stop_signal || (opt.max_time > 0 && elapsed >= opt.max_time);
        int checkpoint_due = stop || done % opt.checkpoint_every == 0;
        int samples_due = !warming && tr.step % opt.sample_every == 0;
        /* The last step's outputs are saved once, after the loop. */
        int last_step = tr.step >= opt.steps && tr.warmup_done >= opt.critic_warmup;
        if (!last_step && (checkpoint_due || samples_due) &&
            (rc = save_outputs(&tr, checkpoint, log, plot, samples_dir, checkpoint_due,
                               samples_due)))
            break;
        if (stop) {
            reason = stop_signal ? "interrupted" : "time budget reached";
            break;
        }
    }
    int finished = tr.step >= opt.steps && tr.warmup_done >= opt.critic_warmup;
    int trained = rc == 0; /* the loop ended cleanly: its last step is kept */
    /* A classifier's run ends with its val-split accuracy (also after the
     * time budget; not when interrupted), kept in the checkpoint for export. */
    int evaluated = 0;
    if (rc == 0 && opt.mode == TRAIN_CLASSIFIER && !stop_signal && tr.step > 0) {
        if (classifier_evaluate_run(&tr, &err)) {
            rc = fail(&err);
        } else {
            char what[64];
            snprintf(what, sizeof what, "the classifier at step %ld", tr.step);
            classifier_print_eval(&tr.classifier, &tr.eval, what);
            evaluated = 1;
        }
    }
    /* Also when the classifier's evaluation failed: the steps are not lost. */
    if (trained && (finished || evaluated)) {
        int saved = save_outputs(&tr, checkpoint, log, plot, samples_dir, 1, finished);
        if (rc == 0) rc = saved;
    }
    if (!opt.quiet)
        fprintf(stderr, "\ndiat-train: %s at step %ld (%zu unreadable images skipped)%s\n", reason,
                tr.step, diat_dataset_skipped(tr.data),
                !finished && rc == 0 ? "; continue with --resume" : "");
    trainer_free(&tr);
    if (rc) return rc;
    return stop_signal ? 128 + stop_signal : 0;
}

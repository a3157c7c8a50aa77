/* What a training run shows: a one-line progress bar, a CSV of every loss
 * term, sample grids (inputs, masks, results on fixed validation faces) and
 * a loss plot (drawn with cairo). */
#include "trainer.h"

#include "image-io.h"

#include <cairo.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define FACE DIAT_FACE_SIZE
#define FACE_PIXELS (FACE * FACE)

/* Column names of the loss slots, in loss_slot order. */
static const char *const kColumns[LOSS_SLOTS] = {
    "critic_real", "critic_fake",       "gradient_penalty",
    "adversarial", "perceptual_layer4", "perceptual_layer5",
    "identity",    "regularization",    "ratio",
    "mask_mean",   "denoise",           "cross_entropy",
    "brier",       "acc_Eyeglasses",    "acc_Mouth_Slightly_Open",
    "acc_Smiling", "acc_Young",         "acc_Male"};

/* The slots a mode logs, after step and seconds: transfer and denoiser runs
 * keep the columns their logs always had; a classifier logs its own. */
static void logged_slots(train_mode mode, int *first, int *count)
{
    *first = mode == TRAIN_CLASSIFIER ? LOSS_CLS_XENT : 0;
    *count = mode == TRAIN_CLASSIFIER ? LOSS_SLOTS - LOSS_CLS_XENT : LOSS_CLS_XENT;
}

static void format_duration(double seconds, char *text, size_t size)
{
    long s = seconds > 0 && seconds < 1e9 ? (long)seconds : 0;
    if (s >= 3600)
        snprintf(text, size, "%ldh%02ldm", s / 3600, s / 60 % 60);
    else
        snprintf(text, size, "%ldm%02lds", s / 60, s % 60);
}

void report_progress(const trainer *tr, const step_figures *f, double images_per_second,
                     double eta_seconds)
{
    if (tr->opt.quiet) return;
    enum { BAR = 20 };
    char bar[BAR + 1], eta[32];
    int filled = (int)(BAR * (double)f->step / (double)tr->opt.steps);
    for (int i = 0; i < BAR; i++) bar[i] = i < filled ? '#' : '-';
    bar[BAR] = 0;
    format_duration(eta_seconds, eta, sizeof eta);
    const double *v = f->value;
    if (tr->opt.mode == TRAIN_CLASSIFIER)
        fprintf(stderr,
                "\rstep %ld/%ld [%s] %.1f img/s ETA %s  %s %.4f | acc %.2f %.2f %.2f %.2f %.2f   ",
                f->step, tr->opt.steps, bar, images_per_second, eta,
                tr->opt.loss_brier ? "brier" : "xent",
                v[tr->opt.loss_brier ? LOSS_CLS_BRIER : LOSS_CLS_XENT], v[LOSS_CLS_ACC],
                v[LOSS_CLS_ACC + 1], v[LOSS_CLS_ACC + 2], v[LOSS_CLS_ACC + 3], v[LOSS_CLS_ACC + 4]);
    else if (f->step < 0) /* critic warm-up: step -N..-1 */
        fprintf(stderr, "\rcritic warm-up %ld/%d %.1f img/s ETA %s  W %.3f gp %.3f m %.2f   ",
                f->step + tr->opt.critic_warmup + 1, tr->opt.critic_warmup, images_per_second, eta,
                v[LOSS_CRITIC_REAL] - v[LOSS_CRITIC_FAKE], v[LOSS_GP], v[LOSS_MASK_MEAN]);
    else if (tr->opt.mode == TRAIN_DENOISER)
        fprintf(stderr, "\rstep %ld/%ld [%s] %.1f img/s ETA %s  mse %.5f   ", f->step,
                tr->opt.steps, bar, images_per_second, eta, v[LOSS_DENOISE]);
    else
        fprintf(stderr,
                "\rstep %ld/%ld [%s] %.1f img/s ETA %s  W %.3f gp %.3f | adv %.3f ap %.3f id %.3f "
                "pr %.4f ar %.3f m %.2f   ",
                f->step, tr->opt.steps, bar, images_per_second, eta,
                v[LOSS_CRITIC_REAL] - v[LOSS_CRITIC_FAKE], v[LOSS_GP], v[LOSS_ADV],
                v[LOSS_AP4] + v[LOSS_AP5], v[LOSS_ID], v[LOSS_PR], v[LOSS_AR], v[LOSS_MASK_MEAN]);
    fflush(stderr);
}

diat_status report_append_csv(const char *path, train_mode mode, const step_figures *f,
                              int write_header, diat_error *err)
{
    int first, count;
    logged_slots(mode, &first, &count);
    FILE *out = fopen(path, "a");
    if (!out) return diat_set_error(err, DIAT_ERR_IO, "Cannot append to %s.", path);
    if (write_header) {
        fprintf(out, "step,seconds");
        for (int k = first; k < first + count; k++) fprintf(out, ",%s", kColumns[k]);
        fputc('\n', out);
    }
    fprintf(out, "%ld,%.3f", f->step, f->seconds);
    for (int k = first; k < first + count; k++) fprintf(out, ",%.6g", f->value[k]);
    fputc('\n', out);
    int failed = ferror(out);
    if (fclose(out) || failed) return diat_set_error(err, DIAT_ERR_IO, "Cannot write %s.", path);
    return DIAT_OK;
}

/* After a resume the log may run past the checkpoint: drop those rows. */
diat_status report_truncate_csv(const char *path, long last_step, diat_error *err)
{
    FILE *in = fopen(path, "r");
    if (!in) return DIAT_OK; /* no log yet */
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *out = fopen(tmp, "w");
    if (!out) {
        fclose(in);
        return diat_set_error(err, DIAT_ERR_IO, "Cannot write %s.", tmp);
    }
    char line[4096];
    while (fgets(line, sizeof line, in)) {
        char *end;
        long step = strtol(line, &end, 10);
        if (end == line || step <= last_step) fputs(line, out);
    }
    fclose(in);
    int failed = ferror(out);
    if (fclose(out) || failed || rename(tmp, path)) {
        unlink(tmp);
        return diat_set_error(err, DIAT_ERR_IO, "Cannot rewrite %s.", path);
    }
    return DIAT_OK;
}

static float to_pixel(float network_value)
{
    float v = 0.5f * (network_value + 1.0f);
    return v < 0.0f ? 0.0f : v > 1.0f ? 1.0f : v;
}

/* Rows: input, mask, result; one column per fixed validation face. */
diat_status report_sample_grid(trainer *tr, const char *path, diat_error *err)
{
    diat_context *ctx = tr->ctx;
    const int count = tr->sample_count;
    if (count == 0 || tr->opt.mode != TRAIN_TRANSFER) return DIAT_OK;
    diat_tensor x = {0};
    diat_status st = diat_tensor_alloc(ctx, &x, count, 3, FACE, FACE, err);
    if (st != DIAT_OK) return st;
    diat_tensor_upload(ctx, &x, tr->sample_faces);
    /* The grid shows what an exported model would do: inference mode. */
    tr->transform.net.training = tr->mask.net.training = 0;
    st = diat_transform_forward(&tr->transform, &x, err);
    if (!st) st = diat_mask_forward(&tr->mask, &x, err);
    tr->transform.net.training = tr->mask.net.training = 1;
    float *t = malloc(sizeof(float) * (size_t)count * 4 * FACE_PIXELS);
    if (!st && !t) st = diat_set_error(err, DIAT_ERR_MEMORY, "Out of memory for samples.");
    imgio_image grid = {0};
    if (!st) st = imgio_alloc(&grid, count * FACE, 3 * FACE, 3, 8, err);
    if (!st) {
        float *m = t + (size_t)count * 3 * FACE_PIXELS;
        diat_tensor_download(ctx, &tr->transform.up[4], t);
        diat_tensor_download(ctx, &tr->mask.mask, m);
        float *pixels = grid.image.pixels;
        for (int i = 0; i < count; i++)
            for (int p = 0; p < FACE_PIXELS; p++) {
                int row = p / FACE, col = p % FACE;
                float mi = m[(size_t)i * FACE_PIXELS + p];
                for (int c = 0; c < 3; c++) {
                    size_t plane = ((size_t)i * 3 + c) * FACE_PIXELS + p;
                    float xv = tr->sample_faces[plane], tv = t[plane];
                    float values[3] = {to_pixel(xv), mi, to_pixel(mi * tv + (1.0f - mi) * xv)};
                    for (int r = 0; r < 3; r++) {
                        size_t at = ((size_t)(r * FACE + row) * grid.image.width + i * FACE + col);
                        pixels[at * 3 + c] = values[r];
                    }
                }
            }
        imgio_quantize(&grid.image, 8, grid.samples);
        st = imgio_save(path, &grid, IMGIO_FORMAT_PNG, err);
    }
    imgio_free(&grid);
    free(t);
    diat_tensor_release(ctx, &x);
    return st;
}

/* ---- loss plot ---------------------------------------------------------- */

typedef struct series {
    double *step, *value[LOSS_SLOTS];
    size_t count, capacity;
} series;

/* The logged slots [first, first + count) of each row into s->value[]. */
static int read_csv(const char *path, int first, int count, series *s)
{
    memset(s, 0, sizeof *s);
    FILE *in = fopen(path, "r");
    if (!in) return -1;
    char line[4096];
    while (fgets(line, sizeof line, in)) {
        char *p = line, *end;
        double step = strtod(p, &end);
        if (end == p) continue; /* header */
        if (s->count == s->capacity) {
            s->capacity = s->capacity ? 2 * s->capacity : 1024;
            s->step = realloc(s->step, s->capacity * sizeof *s->step);
            for (int k = 0; k < LOSS_SLOTS; k++)
                s->value[k] = realloc(s->value[k], s->capacity * sizeof *s->value[k]);
        }
        s->step[s->count] = step;
        p = strchr(end + 1, ','); /* skip seconds */
        for (int k = 0; k < LOSS_SLOTS; k++) s->value[k][s->count] = NAN;
        for (int k = first; k < first + count; k++) {
            s->value[k][s->count] = p ? strtod(p + 1, &end) : NAN;
            p = p ? strchr(p + 1, ',') : NULL;
        }
        s->count++;
    }
    fclose(in);
    return 0;
}

static void free_series(series *s)
{
    free(s->step);
    for (int k = 0; k < LOSS_SLOTS; k++) free(s->value[k]);
}

/* Critic warm-up rows (negative steps) log 0 for the generator's terms,
 * which are not computed: no point to draw. */
static int plotted(const series *s, int k, size_t i)
{
    return isfinite(s->value[k][i]) && !(s->step[i] < 0 && k >= LOSS_ADV && k <= LOSS_AR);
}

static void plot_panel(cairo_t *cr, const series *s, int k, double x0, double y0, double w,
                       double h)
{
    double lo = INFINITY, hi = -INFINITY;
    for (size_t i = 0; i < s->count; i++)
        if (plotted(s, k, i)) {
            lo = fmin(lo, s->value[k][i]);
            hi = fmax(hi, s->value[k][i]);
        }
    cairo_set_source_rgb(cr, 0.6, 0.6, 0.6);
    cairo_rectangle(cr, x0 + 0.5, y0 + 20.5, w - 1, h - 21);
    cairo_stroke(cr);
    char title[128];
    if (isfinite(lo))
        snprintf(title, sizeof title, "%s  [%.4g, %.4g]", kColumns[k], lo, hi);
    else
        snprintf(title, sizeof title, "%s  (unused)", kColumns[k]);
    cairo_set_source_rgb(cr, 0, 0, 0);
    cairo_move_to(cr, x0 + 4, y0 + 14);
    cairo_show_text(cr, title);
    if (!isfinite(lo) || s->count < 2) return;
    if (hi - lo < 1e-12) hi = lo + 1e-12;
    double first = s->step[0], last = s->step[s->count - 1];
    cairo_set_source_rgb(cr, 0.1, 0.3, 0.8);
    int started = 0;
    for (size_t i = 0; i < s->count; i++) {
        if (!plotted(s, k, i)) continue;
        double px = x0 + 2 + (w - 4) * (s->step[i] - first) / (last > first ? last - first : 1);
        double py = y0 + h - 2 - (h - 24) * (s->value[k][i] - lo) / (hi - lo);
        if (!started++)
            cairo_move_to(cr, px, py);
        else
            cairo_line_to(cr, px, py);
    }
    cairo_set_line_width(cr, 1.0);
    cairo_stroke(cr);
}

diat_status report_loss_plot(const char *csv_path, const char *png_path, train_mode mode,
                             diat_error *err)
{
    int first, count;
    logged_slots(mode, &first, &count);
    series s;
    if (read_csv(csv_path, first, count, &s) != 0) return DIAT_OK; /* nothing logged yet */
    enum { COLUMNS = 4, PANEL_W = 320, PANEL_H = 160 };
    int rows = (count + COLUMNS - 1) / COLUMNS;
    cairo_surface_t *surface =
        cairo_image_surface_create(CAIRO_FORMAT_RGB24, COLUMNS * PANEL_W, rows * PANEL_H);
    cairo_t *cr = cairo_create(surface);
    cairo_set_source_rgb(cr, 1, 1, 1);
    cairo_paint(cr);
    cairo_select_font_face(cr, "sans-serif", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_NORMAL);
    cairo_set_font_size(cr, 11);
    for (int i = 0; i < count; i++)
        plot_panel(cr, &s, first + i, (i % COLUMNS) * PANEL_W + 4, (i / COLUMNS) * PANEL_H + 4,
                   PANEL_W - 8, PANEL_H - 8);
    cairo_destroy(cr);
    /* Written beside the target and renamed: a reader never sees half a PNG. */
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", png_path);
    cairo_status_t written = cairo_surface_write_to_png(surface, tmp);
    cairo_surface_destroy(surface);
    free_series(&s);
    if (written != CAIRO_STATUS_SUCCESS || rename(tmp, png_path) != 0) {
        unlink(tmp);
        return diat_set_error(err, DIAT_ERR_IO, "Cannot write the loss plot %s.", png_path);
    }
    return DIAT_OK;
}

/* The edit of one face: run T and M once, then render any mask ratio p
 * cheaply from the cached x, T(x) and soft mask e, at 128x128 or pasted
 * back into the full-resolution photo.
 *
 * Every edit knows where its face square lies in the photo as one
 * similarity transform (face -> photo). A box is the transform without
 * rotation; an aligned face has the rotation of its eye line. Cropping and
 * pasting back go through that transform alone (image-resample.c), so both
 * kinds of edit share one path. */
#include "align.h"
#include "image-resample.h"
#include "model.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define FACE DIAT_FACE_SIZE
#define FACE_PIXELS (FACE * FACE)
#define MIN_FACE_SIDE 16

struct diat_edit {
    diat_model *model;
    float x[3 * FACE_PIXELS];  /* planar, network units [-1, 1] */
    float tx[3 * FACE_PIXELS]; /* T(x), planar, network units */
    float e[DIAT_MASK_SIZE * DIAT_MASK_SIZE];
    float e_up[FACE_PIXELS];      /* e upsampled 4x, what the threshold applies to */
    diat_face_transform to_photo; /* face square -> photo */
    int photo_width, photo_height;
};

static diat_status report(diat_progress_fn progress, void *user, float fraction, const char *stage,
                          diat_error *err)
{
    if (progress && progress(user, fraction, stage))
        return diat_set_error(err, DIAT_ERR_CANCELLED, "Cancelled.");
    return DIAT_OK;
}

/* x is planar [0, 1]; converts to network units in place inside edit->x. */
static diat_status run_networks(diat_edit *edit, diat_progress_fn progress, void *user,
                                diat_error *err)
{
    diat_model *model = edit->model;
    diat_context *ctx = model->ctx;
    for (int i = 0; i < 3 * FACE_PIXELS; i++) edit->x[i] = 2.0f * edit->x[i] - 1.0f;
    diat_tensor x = {0};
    diat_status st = diat_tensor_alloc(ctx, &x, 1, 3, FACE, FACE, err);
    if (st != DIAT_OK) return st;
    diat_tensor_upload(ctx, &x, edit->x);
    model->transform.net.training = 0;
    model->mask.net.training = 0;
    if ((st = report(progress, user, 0.2f, "transform network", err)) == DIAT_OK &&
        (st = diat_transform_forward(&model->transform, &x, err)) == DIAT_OK &&
        (st = report(progress, user, 0.7f, "mask network", err)) == DIAT_OK &&
        (st = diat_mask_forward(&model->mask, &x, err)) == DIAT_OK) {
        diat_tensor_download(ctx, &model->transform.up[4], edit->tx);
        diat_tensor_download(ctx, &model->mask.norm[4], edit->e);
        diat_tensor_download(ctx, &model->mask.upsampled, edit->e_up);
        st = report(progress, user, 1.0f, "done", err);
    }
    diat_tensor_release(ctx, &x);
    return st;
}

diat_status diat_edit_new_face(diat_model *model, const float *face_rgb, diat_edit **out,
                               diat_error *err)
{
    *out = NULL;
    diat_edit *edit = calloc(1, sizeof *edit);
    if (!edit) return diat_set_error(err, DIAT_ERR_MEMORY, "Out of memory for an edit.");
    edit->model = model;
    edit->to_photo = diat_face_transform_square(0, 0, FACE);
    edit->photo_width = edit->photo_height = FACE;
    for (int i = 0; i < FACE_PIXELS; i++)
        for (int c = 0; c < 3; c++) edit->x[c * FACE_PIXELS + i] = face_rgb[3 * i + c];
    diat_status st = run_networks(edit, NULL, NULL, err);
    if (st != DIAT_OK) {
        free(edit);
        return st;
    }
    *out = edit;
    return DIAT_OK;
}

static diat_status check_image(const diat_image *photo, diat_error *err)
{
    if (!photo || !photo->pixels || photo->width < 1 || photo->height < 1 || photo->channels < 1 ||
        photo->channels > 4 || photo->stride < (size_t)photo->width * (size_t)photo->channels)
        return diat_set_error(err, DIAT_ERR_ARGUMENT,
                              "The image is empty or its layout is invalid (%dx%d, %d channels).",
                              photo ? photo->width : 0, photo ? photo->height : 0,
                              photo ? photo->channels : 0);
    return DIAT_OK;
}

/* Crop the face square placed by `to_photo` and run the networks. */
static diat_status new_warped(diat_model *model, const diat_image *photo,
                              const diat_face_transform *to_photo, diat_progress_fn progress,
                              void *progress_user, diat_edit **out, diat_error *err)
{
    diat_edit *edit = calloc(1, sizeof *edit);
    if (!edit) return diat_set_error(err, DIAT_ERR_MEMORY, "Out of memory for an edit.");
    edit->model = model;
    edit->to_photo = *to_photo;
    edit->photo_width = photo->width;
    edit->photo_height = photo->height;
    diat_status st;
    if ((st = report(progress, progress_user, 0.0f, "preparing the face", err)) == DIAT_OK &&
        (st = diat_warp_face(photo, to_photo, edit->x, err)) == DIAT_OK)
        st = run_networks(edit, progress, progress_user, err);
    if (st != DIAT_OK) {
        free(edit);
        return st;
    }
    *out = edit;
    return DIAT_OK;
}

diat_status diat_edit_new_region(diat_model *model, const diat_image *photo, const diat_box *box,
                                 diat_progress_fn progress, void *progress_user, diat_edit **out,
                                 diat_error *err)
{
    *out = NULL;
    diat_status st = check_image(photo, err);
    if (st != DIAT_OK) return st;
    diat_box region = box ? *box : (diat_box){0, 0, photo->width, photo->height};
    if (region.width <= 0 || region.height <= 0)
        return diat_set_error(err, DIAT_ERR_ARGUMENT,
                              "The face region is empty (%dx%d); select the face first.",
                              region.width, region.height);
    if (region.x >= photo->width || region.y >= photo->height || region.x + region.width <= 0 ||
        region.y + region.height <= 0)
        return diat_set_error(err, DIAT_ERR_ARGUMENT,
                              "The face region %dx%d at (%d, %d) lies outside the %dx%d image.",
                              region.width, region.height, region.x, region.y, photo->width,
                              photo->height);
    int side = region.width > region.height ? region.width : region.height;
    if (side < MIN_FACE_SIDE)
        return diat_set_error(err, DIAT_ERR_ARGUMENT,
                              "The face region is only %d pixels wide; at least %d are needed.",
                              side, MIN_FACE_SIDE);
    int x0 = region.x + region.width / 2 - side / 2;
    int y0 = region.y + region.height / 2 - side / 2;
    diat_face_transform square = diat_face_transform_square(x0, y0, side);
    return new_warped(model, photo, &square, progress, progress_user, out, err);
}

diat_status diat_edit_new_aligned(diat_model *model, const diat_image *photo, const diat_face *face,
                                  diat_progress_fn progress, void *progress_user, diat_edit **out,
                                  diat_error *err)
{
    *out = NULL;
    diat_status st = check_image(photo, err);
    if (st != DIAT_OK) return st;
    if (!face) return diat_set_error(err, DIAT_ERR_ARGUMENT, "No face given to align.");
    diat_face_transform aligned;
    st = diat_align_transform(face, photo->width, photo->height, MIN_FACE_SIDE, &aligned, err);
    if (st != DIAT_OK) return st;
    return new_warped(model, photo, &aligned, progress, progress_user, out, err);
}

void diat_edit_free(diat_edit *edit)
{
    free(edit);
}

static int compare_floats(const void *a, const void *b)
{
    float fa = *(const float *)a, fb = *(const float *)b;
    return (fa > fb) - (fa < fb);
}

/* The final mask m for ratio p, through the same backend ops as training. */
static diat_status final_mask(const diat_edit *edit, float ratio, float *mask, diat_error *err)
{
    float threshold = 0.5f;
    if (ratio != DIAT_RATIO_MODEL) {
        if (!(ratio >= 0.0f && ratio <= 1.0f))
            return diat_set_error(err, DIAT_ERR_ARGUMENT,
                                  "The mask ratio p must lie between 0 and 1 (got %g).",
                                  (double)ratio);
        /* Pick the threshold whose binary mask covers a fraction p of the face. */
        float *sorted = malloc(sizeof edit->e_up);
        if (!sorted) return diat_set_error(err, DIAT_ERR_MEMORY, "Out of memory.");
        memcpy(sorted, edit->e_up, sizeof edit->e_up);
        qsort(sorted, FACE_PIXELS, sizeof *sorted, compare_floats);
        long keep = lrintf(ratio * FACE_PIXELS);
        threshold = keep <= 0             ? INFINITY
                    : keep >= FACE_PIXELS ? -INFINITY
                                          : sorted[FACE_PIXELS - keep - 1];
        free(sorted);
    }
    diat_context *ctx = edit->model->ctx;
    const diat_backend *cpu = diat_backend_cpu();
    /* Not the context scratch: the Gaussian op may use that itself. */
    float *binary = malloc(FACE_PIXELS * sizeof *binary);
    if (!binary) return diat_set_error(err, DIAT_ERR_MEMORY, "Out of memory.");
    cpu->binarize_forward(ctx, edit->e_up, threshold, binary, FACE_PIXELS);
    diat_tensor in = {1, 1, FACE, FACE, binary}, out = {1, 1, FACE, FACE, mask};
    cpu->gaussian5_forward(ctx, &in, diat_gaussian5_taps(), &out);
    free(binary);
    return DIAT_OK;
}

diat_status diat_edit_render_face(const diat_edit *edit, float ratio, float *result_rgb,
                                  float *mask, float *soft_mask, diat_error *err)
{
    float *m = malloc(FACE_PIXELS * sizeof *m);
    if (!m) return diat_set_error(err, DIAT_ERR_MEMORY, "Out of memory.");
    diat_status st = final_mask(edit, ratio, m, err);
    if (st == DIAT_OK && result_rgb) {
        for (int i = 0; i < FACE_PIXELS; i++)
            for (int c = 0; c < 3; c++) {
                float x = edit->x[c * FACE_PIXELS + i], t = edit->tx[c * FACE_PIXELS + i];
                float y = 0.5f * (m[i] * t + (1.0f - m[i]) * x + 1.0f);
                result_rgb[3 * i + c] = y < 0.0f ? 0.0f : y > 1.0f ? 1.0f : y;
            }
    }
    if (st == DIAT_OK && mask) memcpy(mask, m, FACE_PIXELS * sizeof *m);
    if (st == DIAT_OK && soft_mask) memcpy(soft_mask, edit->e, sizeof edit->e);
    free(m);
    return st;
}

float diat_edit_mask_coverage(const diat_edit *edit, float ratio)
{
    float *m = malloc(FACE_PIXELS * sizeof *m);
    if (!m || final_mask(edit, ratio, m, NULL) != DIAT_OK) {
        free(m);
        return -1.0f;
    }
    double total = 0.0;
    for (int i = 0; i < FACE_PIXELS; i++) total += m[i];
    free(m);
    return (float)(total / FACE_PIXELS);
}

typedef struct paste_state {
    diat_image *photo;
    float *mask_out;
} paste_state;

/* values: per pixel residual R, G, B (pixel units) then mask. */
static void paste_row(void *user, int y, int x, int count, const float *values)
{
    paste_state *s = user;
    diat_image *photo = s->photo;
    float *row = photo->pixels + (size_t)y * photo->stride;
    for (int i = 0; i < count; i++) {
        const float *v = values + 4 * i;
        if (s->mask_out) s->mask_out[(size_t)y * photo->width + x + i] = v[3];
        if (v[3] <= 0.0f) continue; /* untouched outside the mask, bit for bit */
        float *p = row + (size_t)(x + i) * photo->channels;
        int colour = photo->channels >= 3 ? 3 : 1;
        for (int c = 0; c < colour; c++) {
            /* Gray images take the residual's luminance (Rec. 709). */
            float delta = colour == 3 ? v[c] : 0.2126f * v[0] + 0.7152f * v[1] + 0.0722f * v[2];
            /* The edit keeps results inside [0, 1] but never pulls a float
             * photo's values beyond that range back in: a value above 1
             * that the edit brightens stays where it was. */
            float value = p[c] + delta;
            if (delta > 0.0f && value > 1.0f) value = p[c] > 1.0f ? p[c] : 1.0f;
            if (delta < 0.0f && value < 0.0f) value = p[c] < 0.0f ? p[c] : 0.0f;
            p[c] = value;
        }
    }
}

diat_status diat_edit_render(const diat_edit *edit, float ratio, diat_image *photo, float *mask_out,
                             diat_error *err)
{
    diat_status st = check_image(photo, err);
    if (st != DIAT_OK) return st;
    if (photo->width != edit->photo_width || photo->height != edit->photo_height)
        return diat_set_error(err, DIAT_ERR_ARGUMENT,
                              "The image is %dx%d but the edit was prepared on %dx%d.",
                              photo->width, photo->height, edit->photo_width, edit->photo_height);
    float *planes = malloc(4 * FACE_PIXELS * sizeof *planes);
    if (!planes) return diat_set_error(err, DIAT_ERR_MEMORY, "Out of memory.");
    float *m = planes + 3 * FACE_PIXELS;
    if ((st = final_mask(edit, ratio, m, err)) == DIAT_OK) {
        /* The residual m * (T(x) - x), in pixel units (network units / 2). */
        for (int c = 0; c < 3; c++)
            for (int i = 0; i < FACE_PIXELS; i++)
                planes[c * FACE_PIXELS + i] =
                    0.5f * m[i] * (edit->tx[c * FACE_PIXELS + i] - edit->x[c * FACE_PIXELS + i]);
        if (mask_out) memset(mask_out, 0, (size_t)photo->width * photo->height * sizeof *mask_out);
        paste_state state = {photo, mask_out};
        st = diat_paste_face(planes, 4, &edit->to_photo, photo->width, photo->height, paste_row,
                             &state, err);
    }
    free(planes);
    return st;
}

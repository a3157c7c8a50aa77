/* Alignment of a face in a photo to the geometry the networks were trained
 * on: CelebA's aligned 178x218 images, cropped to 178x178 from row 20 and
 * scaled to 128x128 (the crop of ../shared/data/celeba128).
 *
 * The template. CelebA's list_landmarks_align_celeba.txt is not in the
 * shared data (checked: neither celeba-orig/ nor celeba128/ has it), and its
 * five points are CelebA's own annotation, not the iBUG-68 points the
 * engine's landmark network finds. So the template was measured with that
 * very network's definition: face-api's tiny face detector and 68-point
 * landmark model (the JS originals, run by node on the CPU backend) on the
 * 256 aligned originals of celeba-orig/. 240 had a face at score >= 0.3;
 * three whose own similarity fit left an outlying residual were dropped
 * (one was a misdetection 29 pixels off), leaving 237. Their means, in the
 * 178x218 frame with pixel edges at whole numbers (face-api's landmarks have
 * pixel centres at whole numbers, so + 0.5):
 *
 *   eye centre (36-41)  (69.74, 112.16)    eye centre (42-47)  (108.20, 112.42)
 *   mouth corner (48)   (72.13, 153.30)    mouth corner (54)   (106.11, 153.59)
 *
 * and x * 128/178, (y - 20) * 128/178 gives the 128 frame below. They agree
 * with the published CelebA aligned-landmark means (eyes about (69, 111) and
 * (108, 111), mouth corners (72, 152) and (105, 152), pixel-centre
 * convention) to within a pixel, and the eyes' midpoint lands on the crop's
 * centre line (63.98 of 128). Spread over the 237 faces: 0.7 to 1.3 px (128
 * frame) for the eyes, 1 to 2.2 px for the mouth corners; fitting each face
 * to the template moves its eyes by a median 1.0 px and at most 3.3 px from
 * where CelebA's own alignment put them. Eye centres and mouth corners,
 * equally weighted, are what the issue asks for; together they pin the angle
 * (the eye line) and the scale both across and along the face. The nose tip
 * is left out: its position varies most with the head's yaw (6 px spread in
 * the 178 frame). */
#include "align.h"

#include "diat-train.h"

#include <math.h>

const double diat_align_template[DIAT_ALIGN_POINTS][2] = {
    {50.15, 66.27}, /* eye centre, image left (the person's right eye) */
    {77.80, 66.46}, /* eye centre, image right */
    {51.87, 95.86}, /* mouth corner, image left */
    {76.30, 96.06}, /* mouth corner, image right */
};

void diat_align_key_points(const diat_face *face, double points[DIAT_ALIGN_POINTS][2])
{
    for (int k = 0; k < 2; k++) {
        double x = 0.0, y = 0.0;
        for (int i = 0; i < 6; i++) {
            x += face->landmarks[36 + 6 * k + i][0];
            y += face->landmarks[36 + 6 * k + i][1];
        }
        points[k][0] = x / 6.0 + 0.5;
        points[k][1] = y / 6.0 + 0.5;
    }
    for (int k = 0; k < 2; k++) {
        points[2 + k][0] = face->landmarks[48 + 6 * k][0] + 0.5;
        points[2 + k][1] = face->landmarks[48 + 6 * k][1] + 0.5;
    }
}

diat_status diat_similarity_fit(const double from[][2], const double to[][2], int count,
                                diat_face_transform *out, diat_error *err)
{
    /* Centre both sets; then the best a, b have a closed form (the
     * normal equations of a linear least-squares problem in a, b). */
    double fx = 0, fy = 0, tx = 0, ty = 0;
    for (int i = 0; i < count; i++) {
        fx += from[i][0], fy += from[i][1];
        tx += to[i][0], ty += to[i][1];
    }
    fx /= count, fy /= count, tx /= count, ty /= count;
    double norm = 0, dot = 0, cross = 0;
    for (int i = 0; i < count; i++) {
        double px = from[i][0] - fx, py = from[i][1] - fy;
        double qx = to[i][0] - tx, qy = to[i][1] - ty;
        norm += px * px + py * py;
        dot += px * qx + py * qy;
        cross += px * qy - py * qx;
    }
    if (count < 2 || !(norm > 1e-9) || !isfinite(norm) || !isfinite(dot) || !isfinite(cross))
        return diat_set_error(err, DIAT_ERR_ARGUMENT,
                              "The face's landmarks are degenerate (they coincide or are not "
                              "numbers); it cannot be aligned.");
    double a = dot / norm, b = cross / norm;
    *out = (diat_face_transform){a, b, tx - (a * fx - b * fy), ty - (b * fx + a * fy)};
    return DIAT_OK;
}

diat_face_transform diat_face_transform_invert(const diat_face_transform *t)
{
    double d = t->a * t->a + t->b * t->b;
    double a = t->a / d, b = -t->b / d;
    return (diat_face_transform){a, b, -(a * t->tx - b * t->ty), -(b * t->tx + a * t->ty)};
}

diat_status diat_align_transform(const diat_face *face, int width, int height, int min_side,
                                 diat_face_transform *out, diat_error *err)
{
    double points[DIAT_ALIGN_POINTS][2];
    diat_align_key_points(face, points);
    /* Landmarks -> template, as the issue defines the fit (the error is
     * measured in the template's frame, the same for every face size). */
    diat_face_transform to_face;
    diat_status st = diat_similarity_fit((const double(*)[2])points, diat_align_template,
                                         DIAT_ALIGN_POINTS, &to_face, err);
    if (st != DIAT_OK) return st;
    if (!(hypot(to_face.a, to_face.b) > 0.0))
        return diat_set_error(err, DIAT_ERR_ARGUMENT,
                              "The face's landmarks are degenerate; it cannot be aligned.");
    *out = diat_face_transform_invert(&to_face);
    double side = DIAT_FACE_SIZE * diat_face_transform_scale(out);
    if (!isfinite(side) || side < min_side)
        return diat_set_error(err, DIAT_ERR_ARGUMENT,
                              "The face is only %.0f pixels wide (eye to eye %.0f); at least %d "
                              "are needed.",
                              side, hypot(points[1][0] - points[0][0], points[1][1] - points[0][1]),
                              min_side);
    /* Faces reaching past the border are padded; a square entirely outside
     * the photo has nothing to edit. */
    double lo_x = INFINITY, lo_y = INFINITY, hi_x = -INFINITY, hi_y = -INFINITY;
    for (int corner = 0; corner < 4; corner++) {
        double u = corner & 1 ? DIAT_FACE_SIZE : 0, v = corner & 2 ? DIAT_FACE_SIZE : 0;
        double x = out->a * u - out->b * v + out->tx, y = out->b * u + out->a * v + out->ty;
        lo_x = fmin(lo_x, x), hi_x = fmax(hi_x, x);
        lo_y = fmin(lo_y, y), hi_y = fmax(hi_y, y);
    }
    if (!(hi_x > 0.0 && hi_y > 0.0 && lo_x < width && lo_y < height))
        return diat_set_error(err, DIAT_ERR_ARGUMENT,
                              "The face (landmarks around %.0f, %.0f) lies outside the %dx%d "
                              "image.",
                              0.5 * (points[0][0] + points[1][0]),
                              0.5 * (points[0][1] + points[3][1]), width, height);
    return DIAT_OK;
}

/* The GIMP-free core of the plug-in (plugin/model-catalog.c,
 * plugin/face-edit.c), on the host: model discovery and name resolution,
 * the edit pipeline on a real photo with the tint fixture, and each
 * bad-input case the procedure reports (no model, corrupt model, empty
 * selection, no face, tiny image, cancellation). The procedure itself is
 * tested inside GIMP by tests/gimp/run-in-chroot.sh. */
#include "face-edit.h"
#include "image-io.h"
#include "model-catalog.h"
#include "plugin-errors.h"

#include "../testutil.h"

#include <glib/gstdio.h>
#include <string.h>

static char *source_path(const char *relative)
{
    const char *root = g_getenv("DIAT_SOURCE_ROOT");
    return g_build_filename(root ? root : ".", relative, NULL);
}

/* A folder with the two fixtures, a corrupt model and a file that is a
 * safetensors file but no attribute model (the face detector). */
static char *make_model_folder(void)
{
    char *dir = g_dir_make_tmp("diat-plugin-core-XXXXXX", NULL);
    const char *copies[][2] = {{"tests/data/fixture-tint-model.safetensors", "tint.safetensors"},
                               {"tests/data/fixture-model.safetensors", "identity.safetensors"},
                               {"models/face-detector-tiny.safetensors", "detector.safetensors"}};
    for (size_t i = 0; i < G_N_ELEMENTS(copies); i++) {
        char *from = source_path(copies[i][0]), *to = g_build_filename(dir, copies[i][1], NULL);
        char *data = NULL;
        gsize size = 0;
        CHECK(g_file_get_contents(from, &data, &size, NULL));
        CHECK(g_file_set_contents(to, data, (gssize)size, NULL));
        /* A truncated copy of the tint model: the header promises more. */
        if (i == 0) {
            char *corrupt = g_build_filename(dir, "corrupt.safetensors", NULL);
            CHECK(g_file_set_contents(corrupt, data, (gssize)(size / 2), NULL));
            g_free(corrupt);
        }
        g_free(data);
        g_free(from);
        g_free(to);
    }
    return dir;
}

static void remove_folder(char *dir)
{
    GDir *folder = g_dir_open(dir, 0, NULL);
    const char *name;
    while (folder && (name = g_dir_read_name(folder))) {
        char *path = g_build_filename(dir, name, NULL);
        g_remove(path);
        g_free(path);
    }
    if (folder) g_dir_close(folder);
    g_rmdir(dir);
    g_free(dir);
}

static void test_catalog(void)
{
    char *dir = make_model_folder();
    g_setenv("DIAT_MODEL_PATH", dir, TRUE);
    char **dirs = model_catalog_search_dirs("/nonexistent/diat-models");
    CHECK(g_strcmp0(dirs[0], dir) == 0);
    CHECK(g_strcmp0(dirs[1], "/nonexistent/diat-models") == 0);
    CHECK(dirs[2] != NULL && dirs[3] == NULL); /* the installed folder last */
    /* Where the plug-in is installed, the installed folder holds the shipped
     * models: leave it out, so the checks below see only our fixtures. */
    char *installed = dirs[2];
    dirs[2] = NULL;

    GPtrArray *models = model_catalog_scan(dirs);
    /* The fixtures load; the corrupt file and the detector are left out. */
    CHECK_MSG(models->len == 2, "%u models", models->len);
    gboolean saw_tint = FALSE;
    for (guint i = 0; i < models->len; i++) {
        const model_entry *entry = models->pdata[i];
        CHECK(entry->fixture);
        if (!strcmp(entry->name, "tint")) {
            saw_tint = TRUE;
            CHECK(!strcmp(model_entry_label(entry),
                          "Test fixture with red tint (not a trained model)"));
            CHECK_NEAR(entry->default_ratio, 0.1, 1e-6);
        }
    }
    CHECK(saw_tint);
    g_ptr_array_unref(models);

    GError *error = NULL;
    char *path = model_catalog_resolve(dirs, "tint", &error);
    CHECK(path && g_str_has_suffix(path, "tint.safetensors"));
    g_free(path);
    path = model_catalog_resolve(dirs, "tint.safetensors", &error);
    CHECK(path != NULL);
    g_free(path);
    char *fixture = source_path("tests/data/fixture-model.safetensors");
    path = model_catalog_resolve(dirs, fixture, &error);
    CHECK(path && !strcmp(path, fixture));
    g_free(path);
    g_free(fixture);
    path = model_catalog_resolve(dirs, "no-such-model", &error);
    CHECK(path == NULL && g_error_matches(error, DIAT_PLUGIN_ERROR, DIAT_PLUGIN_ERROR_NO_MODEL));
    CHECK(error && strstr(error->message, "no-such-model") && strstr(error->message, dir));
    g_clear_error(&error);
    path = model_catalog_resolve(dirs, "/no/such/file.safetensors", &error);
    CHECK(path == NULL && g_error_matches(error, DIAT_PLUGIN_ERROR, DIAT_PLUGIN_ERROR_NO_MODEL));
    g_clear_error(&error);
    /* Empty: the first model of the scan. */
    path = model_catalog_resolve(dirs, "", &error);
    CHECK(path != NULL);
    g_free(path);
    dirs[2] = installed;
    g_strfreev(dirs);

    /* Nothing anywhere: a message naming where we looked. */
    g_setenv("DIAT_MODEL_PATH", "/nonexistent/a:/nonexistent/b", TRUE);
    dirs = model_catalog_search_dirs(NULL);
    CHECK(g_strcmp0(dirs[1], "/nonexistent/b") == 0);
    installed = dirs[2];
    dirs[2] = NULL;
    path = model_catalog_resolve(dirs, "", &error);
    CHECK(path == NULL && g_error_matches(error, DIAT_PLUGIN_ERROR, DIAT_PLUGIN_ERROR_NO_MODEL));
    CHECK(error && strstr(error->message, "/nonexistent/a"));
    g_clear_error(&error);
    dirs[2] = installed;
    g_strfreev(dirs);
    g_unsetenv("DIAT_MODEL_PATH");
    remove_folder(dir);
}

/* Every label of the model files in the tree (the test fixtures and each
 * attribute model in models/) is in the translated list. */
static void test_known_labels(void)
{
    GPtrArray *files = g_ptr_array_new_with_free_func(g_free);
    g_ptr_array_add(files, source_path("tests/data/fixture-tint-model.safetensors"));
    g_ptr_array_add(files, source_path("tests/data/fixture-model.safetensors"));
    char *models = source_path("models");
    GDir *dir = g_dir_open(models, 0, NULL);
    CHECK(dir != NULL);
    for (const char *name; dir && (name = g_dir_read_name(dir));)
        if (g_str_has_suffix(name, ".safetensors"))
            g_ptr_array_add(files, g_build_filename(models, name, NULL));
    if (dir) g_dir_close(dir);
    g_free(models);
    diat_context *ctx = NULL;
    CHECK(diat_context_new(DIAT_BACKEND_CPU, 1, &ctx, NULL) == DIAT_OK);
    int attribute_models = 0;
    for (guint i = 0; i < files->len; i++) {
        const char *path = g_ptr_array_index(files, i);
        diat_model *model = NULL;
        /* The face networks and judges in models/ are not attribute models. */
        if (diat_model_load(ctx, path, &model, NULL) != DIAT_OK) continue;
        const char *label = diat_model_metadata(model, "label");
        gboolean listed = FALSE;
        for (const char *const *known = model_catalog_known_labels; *known; known++)
            if (label && !strcmp(label, *known)) listed = TRUE;
        CHECK_MSG(listed, "label '%s' of %s is not in plugin/model-labels.c", label, path);
        attribute_models++;
        diat_model_free(model);
    }
    CHECK_MSG(attribute_models >= 4, "%d models loaded (2 fixtures and the shipped ones)",
              attribute_models);
    diat_context_free(ctx);
    g_ptr_array_free(files, TRUE);
}

typedef struct fixture {
    imgio_image photo;
    char *model, *corrupt_model, *detector, *landmarks;
    char *dir;
} fixture;

static void fixture_open(fixture *f)
{
    memset(f, 0, sizeof *f);
    char *photo = source_path("tests/data/photos/astronaut.png");
    diat_error err = {0};
    CHECK_MSG(imgio_load(photo, &f->photo, &err) == DIAT_OK, "%s", err.message);
    g_free(photo);
    f->dir = make_model_folder();
    f->model = g_build_filename(f->dir, "tint.safetensors", NULL);
    f->corrupt_model = g_build_filename(f->dir, "corrupt.safetensors", NULL);
    f->detector = source_path("models/face-detector-tiny.safetensors");
    f->landmarks = source_path("models/face-landmarks-68.safetensors");
}

static void fixture_close(fixture *f)
{
    imgio_free(&f->photo);
    g_free(f->model);
    g_free(f->corrupt_model);
    g_free(f->detector);
    g_free(f->landmarks);
    remove_folder(f->dir);
}

static face_edit_request request_for(const fixture *f, face_choice choice)
{
    return (face_edit_request){.model_path = f->model,
                               .detector_path = f->detector,
                               .landmarks_path = f->landmarks,
                               .backend = DIAT_BACKEND_CPU,
                               .choice = choice,
                               .face_index = 1};
}

static int progress_calls;
static void count_progress(void *user, double fraction, const char *stage)
{
    (void)user;
    (void)stage;
    CHECK(fraction >= 0.0 && fraction <= 1.0);
    progress_calls++;
}

/* The whole pipeline: a face is found, the mask touches some pixels, and
 * every pixel outside the mask keeps its value. */
static void test_edit_photo(void)
{
    fixture f;
    fixture_open(&f);
    const diat_image *photo = &f.photo.image;
    face_list faces = {0};
    face_edit *edit = NULL;
    GError *error = NULL;
    face_edit_request request = request_for(&f, FACE_CHOICE_AUTO);
    progress_calls = 0;
    gboolean ok =
        face_edit_prepare(&request, photo, &faces, count_progress, NULL, NULL, &edit, &error);
    CHECK_MSG(ok, "%s", error ? error->message : "");
    CHECK(faces.searched && faces.count >= 1 && !faces.has_region);
    CHECK(progress_calls >= 3);
    if (ok) {
        CHECK(edit->n_edits == 1 && !edit->used_selection_square);
        CHECK(face_edit_matches(edit, &request));
        face_edit_request other = request;
        other.backend = DIAT_BACKEND_AUTO;
        CHECK(!face_edit_matches(edit, &other));

        const size_t pixels = (size_t)photo->width * photo->height;
        const size_t floats = photo->stride * (size_t)photo->height;
        float *copy = g_memdup2(photo->pixels, floats * sizeof(float));
        float *mask = g_new(float, pixels);
        diat_image work = *photo;
        work.pixels = copy;
        /* The fixture's own mask marks red-dominant pixels, which the
         * aligned crop of this face hardly has: ask for a ratio p instead. */
        CHECK(face_edit_render(edit, 0.2f, &work, mask, NULL, &error));
        size_t changed = 0, outside_changed = 0, masked = 0;
        for (size_t i = 0; i < pixels; i++) {
            gboolean differs = FALSE;
            for (int c = 0; c < photo->channels; c++)
                differs |= copy[i * photo->channels + c] != photo->pixels[i * photo->channels + c];
            changed += differs;
            masked += mask[i] > 0.0f;
            if (!(mask[i] > 0.0f) && differs) outside_changed++;
        }
        CHECK_MSG(changed > 100, "%zu pixels changed", changed);
        CHECK(outside_changed == 0);
        diat_box bounds;
        CHECK(face_edit_mask_bounds(mask, photo->width, photo->height, &bounds));
        CHECK(bounds.width > 0 && bounds.x + bounds.width <= photo->width);

        /* Another p changes the mask without running a network. */
        memcpy(copy, photo->pixels, floats * sizeof(float));
        float *mask2 = g_new(float, pixels);
        CHECK(face_edit_render(edit, 0.4f, &work, mask2, NULL, &error));
        size_t masked2 = 0;
        for (size_t i = 0; i < pixels; i++) masked2 += mask2[i] > 0.0f;
        CHECK_MSG(masked2 > masked, "%zu vs %zu masked pixels", masked2, masked);
        g_free(mask2);
        g_free(mask);
        g_free(copy);
    }
    g_clear_error(&error);
    face_edit_free(edit);

    /* The cached faces are reused: no search, same result. */
    edit = NULL;
    size_t count = faces.count;
    request.choice = FACE_CHOICE_INDEX;
    request.face_index = 1;
    CHECK(face_edit_prepare(&request, photo, &faces, NULL, NULL, NULL, &edit, &error));
    CHECK(faces.count == count);
    face_edit_free(edit);
    edit = NULL;
    request.face_index = (int)count + 1;
    CHECK(!face_edit_prepare(&request, photo, &faces, NULL, NULL, NULL, &edit, &error));
    CHECK(g_error_matches(error, DIAT_PLUGIN_ERROR, DIAT_PLUGIN_ERROR_BAD_FACE_INDEX));
    g_clear_error(&error);

    /* All faces. */
    request.choice = FACE_CHOICE_ALL;
    CHECK(face_edit_prepare(&request, photo, &faces, NULL, NULL, NULL, &edit, &error));
    CHECK(edit && edit->n_edits == faces.count);
    face_edit_free(edit);
    face_list_free(&faces);
    fixture_close(&f);
}

static void test_bad_inputs(void)
{
    fixture f;
    fixture_open(&f);
    face_list faces = {0};
    face_edit *edit = NULL;
    GError *error = NULL;

    /* Corrupt model. */
    face_edit_request request = request_for(&f, FACE_CHOICE_AUTO);
    request.model_path = f.corrupt_model;
    CHECK(!face_edit_prepare(&request, &f.photo.image, &faces, NULL, NULL, NULL, &edit, &error));
    CHECK(g_error_matches(error, DIAT_PLUGIN_ERROR, DIAT_PLUGIN_ERROR_BAD_MODEL));
    CHECK(error && strstr(error->message, "corrupt.safetensors"));
    CHECK(edit == NULL);
    g_clear_error(&error);

    /* "Selection" without a selection. */
    request = request_for(&f, FACE_CHOICE_SELECTION);
    CHECK(!face_edit_prepare(&request, &f.photo.image, &faces, NULL, NULL, NULL, &edit, &error));
    CHECK(g_error_matches(error, DIAT_PLUGIN_ERROR, DIAT_PLUGIN_ERROR_SELECTION_EMPTY));
    g_clear_error(&error);

    /* A tiny image. */
    float tiny_pixels[16 * 16 * 3] = {0};
    diat_image tiny = {16, 16, 3, 16 * 3, tiny_pixels};
    request = request_for(&f, FACE_CHOICE_AUTO);
    CHECK(!face_edit_prepare(&request, &tiny, &faces, NULL, NULL, NULL, &edit, &error));
    CHECK(g_error_matches(error, DIAT_PLUGIN_ERROR, DIAT_PLUGIN_ERROR_IMAGE_TOO_SMALL));
    g_clear_error(&error);

    /* No face: a smooth gradient. */
    const int side = 200;
    float *plain = g_new(float, side *side * 3);
    for (int i = 0; i < side * side; i++)
        for (int c = 0; c < 3; c++) plain[i * 3 + c] = 0.3f + 0.2f * (float)(i % side) / side;
    diat_image blank = {side, side, 3, (size_t)side * 3, plain};
    face_list blank_faces = {0};
    CHECK(!face_edit_prepare(&request, &blank, &blank_faces, NULL, NULL, NULL, &edit, &error));
    CHECK_MSG(g_error_matches(error, DIAT_PLUGIN_ERROR, DIAT_PLUGIN_ERROR_NO_FACE), "%s",
              error ? error->message : "no error");
    CHECK(blank_faces.searched && blank_faces.count == 0);
    g_clear_error(&error);

    /* ... but with a selection and "selection", its square is edited. */
    diat_box region = {50, 50, 100, 100};
    request = request_for(&f, FACE_CHOICE_SELECTION);
    request.region = &region;
    CHECK(face_edit_prepare(&request, &blank, &blank_faces, NULL, NULL, NULL, &edit, &error));
    CHECK(edit && edit->n_edits == 1);
    face_edit_free(edit);
    edit = NULL;
    face_list_free(&blank_faces);
    g_free(plain);

    /* Missing face finder files. */
    request = request_for(&f, FACE_CHOICE_AUTO);
    request.detector_path = NULL;
    face_list fresh = {0};
    CHECK(!face_edit_prepare(&request, &f.photo.image, &fresh, NULL, NULL, NULL, &edit, &error));
    CHECK(g_error_matches(error, DIAT_PLUGIN_ERROR, DIAT_PLUGIN_ERROR_FACE_FINDER));
    g_clear_error(&error);

    /* Cancelled before the networks. */
    GCancellable *cancellable = g_cancellable_new();
    g_cancellable_cancel(cancellable);
    request = request_for(&f, FACE_CHOICE_AUTO);
    CHECK(!face_edit_prepare(&request, &f.photo.image, &faces, NULL, NULL, cancellable, &edit,
                             &error));
    CHECK(g_error_matches(error, DIAT_PLUGIN_ERROR, DIAT_PLUGIN_ERROR_CANCELLED));
    g_clear_error(&error);
    g_object_unref(cancellable);

    face_list_free(&faces);
    fixture_close(&f);
}

int main(void)
{
    RUN_TEST(test_catalog);
    RUN_TEST(test_known_labels);
    RUN_TEST(test_edit_photo);
    RUN_TEST(test_bad_inputs);
    return TEST_SUMMARY();
}

/* The attribute classifier (engine/nets/classifier.c): its backward pass
 * against central finite differences, the cross-entropy gradient that
 * diat-train feeds it as dL/dlogits, inference mode, and exported files
 * through diat_classifier_load and diat_classifier_predict; also the labeled
 * data set it trains on (data/dataset.c), on a synthetic CelebA whose images
 * spell their own number. */
#include "diat-train.h"
#include "testutil.h"

#include "dataset.h"
#include "image-io.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static diat_context *ctx;
static unsigned long long seed = 777;

static void fill_random(diat_tensor *t, float scale)
{
    size_t n = diat_tensor_count(t);
    for (size_t i = 0; i < n; i++) t->data[i] = scale * test_rand(&seed);
}

static double dot(const diat_tensor *a, const float *r)
{
    double s = 0.0;
    for (size_t i = 0; i < diat_tensor_count(a); i++) s += (double)a->data[i] * r[i];
    return s;
}

static void check_gradients(const char *label, test_loss_fn loss, diat_classifier *c,
                            diat_tensor *x, const diat_tensor *dx, double tol)
{
    for (int i = 0; i < c->net.param_count; i++) {
        diat_param *p = &c->net.params[i];
        if (!p->trainable) continue;
        double rel = test_fd_relative_error(loss, c, x, p->value.data, p->grad.data,
                                            diat_tensor_count(&p->value), 12, 1e-3f, &seed);
        CHECK_MSG(rel < tol, "%s: %s relative error %.2e", label, p->name, rel);
    }
    double rel = test_fd_relative_error(loss, c, x, x->data, dx->data, diat_tensor_count(x), 24,
                                        1e-3f, &seed);
    CHECK_MSG(rel < tol, "%s: input relative error %.2e", label, rel);
}

/* ---- a random linear functional of the probabilities and the logits ---- */
static float *r_prob, *r_logits;
static double functional_loss(void *net, const diat_tensor *x)
{
    diat_classifier *c = net;
    diat_classifier_forward(c, x, NULL);
    return dot(&c->prob, r_prob) + dot(&c->logits, r_logits);
}

static void test_gradients(void)
{
    diat_error err;
    diat_classifier c;
    CHECK(diat_classifier_init(&c, ctx, 2, 3, &err) == DIAT_OK);
    diat_net_init_weights(&c.net, 21);
    c.net.training = 1;
    diat_tensor x = {0}, dx = {0}, dprob = {0}, dlogits = {0};
    diat_tensor_alloc(ctx, &x, 3, 3, 32, 32, &err);
    fill_random(&x, 1.0f);
    CHECK(diat_classifier_forward(&c, &x, &err) == DIAT_OK);
    CHECK(c.act[4].c == 16 && c.act[4].h == 1 && c.pooled.c == 16 && c.logits.c == 3);
    diat_tensor_alloc(ctx, &dprob, 3, 3, 1, 1, &err);
    diat_tensor_alloc(ctx, &dlogits, 3, 3, 1, 1, &err);
    fill_random(&dprob, 1.0f);
    fill_random(&dlogits, 1.0f);
    r_prob = dprob.data;
    r_logits = dlogits.data;
    diat_tensor_alloc(ctx, &dx, 3, 3, 32, 32, &err);
    diat_tensor_zero(ctx, &dx);
    diat_net_zero_grad(&c.net);
    CHECK(diat_classifier_backward(&c, &dprob, &dlogits, &dx, &err) == DIAT_OK);
    check_gradients("C", functional_loss, &c, &x, &dx, 2e-2);
    diat_tensor *all[] = {&x, &dx, &dprob, &dlogits};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) diat_tensor_release(ctx, all[i]);
    diat_classifier_free(&c);
}

/* ---- cross-entropy: dL/dlogits = (p - y) / count, as diat-train gives it ---- */
static float labels[4 * 5];
static double cross_entropy(void *net, const diat_tensor *x)
{
    diat_classifier *c = net;
    diat_classifier_forward(c, x, NULL);
    size_t count = diat_tensor_count(&c->logits);
    double sum = 0.0;
    for (size_t i = 0; i < count; i++) {
        double z = c->logits.data[i], y = labels[i];
        /* log(1 + e^z) - y z, in the stable form */
        sum += fmax(z, 0.0) + log1p(exp(-fabs(z))) - y * z;
    }
    return sum / (double)count;
}

static void test_cross_entropy_gradient(void)
{
    diat_error err;
    diat_classifier c;
    CHECK(diat_classifier_init(&c, ctx, 2, 5, &err) == DIAT_OK);
    diat_net_init_weights(&c.net, 5);
    c.net.training = 1;
    diat_tensor x = {0}, dx = {0}, dlogits = {0};
    diat_tensor_alloc(ctx, &x, 4, 3, 64, 64, &err);
    fill_random(&x, 1.0f);
    for (int i = 0; i < 20; i++) labels[i] = test_rand(&seed) > 0 ? 1.0f : 0.0f;
    CHECK(diat_classifier_forward(&c, &x, &err) == DIAT_OK);
    CHECK(c.act[4].h == 2 && c.prob.n == 4 && c.prob.c == 5);
    diat_tensor_alloc(ctx, &dlogits, 4, 5, 1, 1, &err);
    diat_tensor_zero(ctx, &dlogits);
    /* The trainer's recipe: squared_error_backward of (p, y) with scale
     * 1 / (2 count) adds exactly (p - y) / count. */
    const diat_backend *be = diat_context_backend(ctx);
    be->squared_error_backward(ctx, c.prob.data, labels, 20, 1.0f / 40.0f, dlogits.data, NULL);
    diat_tensor_alloc(ctx, &dx, 4, 3, 64, 64, &err);
    diat_tensor_zero(ctx, &dx);
    diat_net_zero_grad(&c.net);
    CHECK(diat_classifier_backward(&c, NULL, &dlogits, &dx, &err) == DIAT_OK);
    check_gradients("C cross-entropy", cross_entropy, &c, &x, &dx, 2e-2);
    diat_tensor *all[] = {&x, &dx, &dlogits};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) diat_tensor_release(ctx, all[i]);
    diat_classifier_free(&c);
}

/* ---- modes, shapes ---- */
static void test_modes_and_shapes(void)
{
    diat_error err;
    diat_classifier c;
    CHECK(diat_classifier_init(&c, ctx, 0, 5, &err) == DIAT_ERR_ARGUMENT);
    CHECK(diat_classifier_init(&c, ctx, 4, 0, &err) == DIAT_ERR_ARGUMENT);
    CHECK(diat_classifier_init(&c, ctx, 4, DIAT_CLASSIFIER_MAX_OUTPUTS + 1, &err) ==
          DIAT_ERR_ARGUMENT);
    CHECK(diat_classifier_init(&c, ctx, 4, 5, &err) == DIAT_OK);
    CHECK(c.net.training == 0);
    CHECK(diat_net_find(&c.net, "C.conv1.weight") && diat_net_find(&c.net, "C.bn5.running_var") &&
          diat_net_find(&c.net, "C.fc.weight") && diat_net_find(&c.net, "C.fc.bias"));
    /* 4x4 convs without bias, BN (4 vectors), fc 32 -> 5 */
    size_t expected = 4 * 3 * 16 + 8 * 4 * 16 + 16 * 8 * 16 + 32 * 16 * 16 + 32 * 32 * 16 +
                      4 * (4 + 8 + 16 + 32 + 32) + 32 * 5 + 5;
    CHECK(diat_net_parameter_count(&c.net) == expected);
    diat_net_init_weights(&c.net, 9);
    diat_tensor x = {0};
    diat_tensor_alloc(ctx, &x, 2, 3, 100, 100, &err);
    CHECK(diat_classifier_forward(&c, &x, &err) == DIAT_ERR_ARGUMENT);
    diat_tensor_release(ctx, &x);
    diat_tensor_alloc(ctx, &x, 2, 3, 128, 128, &err);
    fill_random(&x, 1.0f);
    /* Inference mode: no backward, running statistics untouched. */
    CHECK(diat_classifier_forward(&c, &x, &err) == DIAT_OK);
    CHECK(c.act[4].h == 4 && c.prob.n == 2 && c.prob.c == 5);
    CHECK(diat_classifier_backward(&c, &c.prob, NULL, NULL, &err) == DIAT_ERR_ARGUMENT);
    CHECK(c.bn_layer[0].running_mean->value.data[0] == 0.0f);
    for (int i = 0; i < 10; i++) CHECK(c.prob.data[i] > 0.0f && c.prob.data[i] < 1.0f);
    /* Training mode moves the running statistics (momentum 0.1). */
    c.net.training = 1;
    CHECK(diat_classifier_forward(&c, &x, &err) == DIAT_OK);
    CHECK(c.bn_layer[0].running_mean->value.data[0] != 0.0f);
    diat_tensor_release(ctx, &x);
    diat_classifier_free(&c);
}

/* ---- export files: load, predict ---- */
static diat_status write_file(const diat_classifier *c, const char *path, const char *format,
                              const char *attributes, diat_dtype dtype)
{
    diat_error err;
    diat_st_writer *w = diat_st_writer_new();
    char width[16];
    snprintf(width, sizeof width, "%d", c->width);
    diat_status st = diat_st_writer_set_metadata(w, "format", format, &err);
    if (!st) st = diat_st_writer_set_metadata(w, "format_version", "1", &err);
    if (!st) st = diat_st_writer_set_metadata(w, "width", width, &err);
    if (!st && attributes) st = diat_st_writer_set_metadata(w, "attributes", attributes, &err);
    if (!st) st = diat_net_save(&c->net, w, dtype, &err);
    if (!st) st = diat_st_writer_save(w, path, &err);
    diat_st_writer_free(w);
    return st;
}

static void test_load_and_predict(void)
{
    diat_error err;
    diat_classifier c, loaded;
    CHECK(diat_classifier_init(&c, ctx, 3, 2, &err) == DIAT_OK);
    diat_net_init_weights(&c.net, 13);
    /* Non-trivial running statistics, as after training. */
    c.net.training = 1;
    diat_tensor x = {0};
    const int n = DIAT_CLASSIFIER_PREDICT_BATCH + 6; /* two chunks */
    diat_tensor_alloc(ctx, &x, n, 3, 32, 32, &err);
    fill_random(&x, 1.0f);
    CHECK(diat_classifier_forward(&c, &x, &err) == DIAT_OK);
    c.net.training = 0;
    char dir[] = "/tmp/diat-classifier-XXXXXX", path[64];
    CHECK(mkdtemp(dir) != NULL);
    snprintf(path, sizeof path, "%s/c.safetensors", dir);
    CHECK(write_file(&c, path, "diat-classifier", "Smiling,Male", DIAT_DTYPE_F32) == DIAT_OK);
    CHECK(diat_classifier_load(&loaded, ctx, path, &err) == DIAT_OK);
    CHECK(loaded.width == 3 && loaded.outputs == 2 && loaded.net.training == 0);
    CHECK(strcmp(loaded.attributes[0], "Smiling") == 0 &&
          strcmp(loaded.attributes[1], "Male") == 0);
    float *prob = malloc(sizeof(float) * (size_t)n * 2), *one = malloc(sizeof(float) * 2);
    CHECK(diat_classifier_predict(&loaded, x.data, n, 32, prob, &err) == DIAT_OK);
    /* Each face alone gives its own answer (chunks do not mix faces). */
    double worst = 0.0;
    for (int i = 0; i < n; i += 7) {
        CHECK(diat_classifier_predict(&c, x.data + (size_t)i * 3 * 32 * 32, 1, 32, one, &err) ==
              DIAT_OK);
        for (int k = 0; k < 2; k++) worst = fmax(worst, fabs(one[k] - prob[i * 2 + k]));
    }
    CHECK_MSG(worst < 1e-5, "predictions differ by %g", worst);
    diat_classifier_free(&loaded);

    /* F16 weights load widened; wrong files are refused with the reason. */
    CHECK(write_file(&c, path, "diat-classifier", "Smiling,Male", DIAT_DTYPE_F16) == DIAT_OK);
    CHECK(diat_classifier_load(&loaded, ctx, path, &err) == DIAT_OK);
    diat_classifier_free(&loaded);
    CHECK(write_file(&c, path, "diat-model", "Smiling,Male", DIAT_DTYPE_F32) == DIAT_OK);
    CHECK(diat_classifier_load(&loaded, ctx, path, &err) == DIAT_ERR_FORMAT);
    CHECK(strstr(err.message, "not an attribute classifier") != NULL);
    CHECK(write_file(&c, path, "diat-classifier", "Smiling,,Male", DIAT_DTYPE_F32) == DIAT_OK);
    CHECK(diat_classifier_load(&loaded, ctx, path, &err) == DIAT_ERR_FORMAT);
    CHECK(strstr(err.message, "attributes") != NULL);
    /* Three names for two outputs: the fc shape check names the tensor. */
    CHECK(write_file(&c, path, "diat-classifier", "Smiling,Male,Young", DIAT_DTYPE_F32) == DIAT_OK);
    CHECK(diat_classifier_load(&loaded, ctx, path, &err) != DIAT_OK);
    CHECK(strstr(err.message, "C.fc") != NULL);
    CHECK(loaded.net.ctx == NULL); /* nothing to free after a failure */
    unlink(path);
    rmdir(dir);
    CHECK(diat_classifier_load(&loaded, ctx, path, &err) == DIAT_ERR_IO);
    free(prob);
    free(one);
    diat_tensor_release(ctx, &x);
    diat_classifier_free(&c);
}

/* ---- the labeled data set ---- */
#define SYN_FACES 24
#define SYN_TRAIN 20
#define SYN_BAD 5 /* not an image: a stand-in takes its place */

/* Attribute a of face id, as list_attr_celeba.txt says. */
static int syn_label(int id, int a)
{
    return (id * 7 + a * 3 + id / 3) % 4 == 0 || (id + a) % 5 == 1;
}

static void write_file_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (f) {
        fputs(text, f);
        fclose(f);
    }
}

/* A flat image whose red value is 10 * id: it survives resize and flips. */
static void write_face(const char *path, int id)
{
    imgio_image img;
    diat_error err;
    if (imgio_alloc(&img, 16, 16, 3, 8, &err) != DIAT_OK) return;
    for (int p = 0; p < 16 * 16; p++) {
        img.samples[p * 3] = (uint16_t)(10 * id);
        img.samples[p * 3 + 1] = 128;
        img.samples[p * 3 + 2] = 0;
    }
    imgio_save(path, &img, IMGIO_FORMAT_PNG, &err);
    imgio_free(&img);
}

static int face_id(const float *face)
{
    return (int)lround((face[0] + 1.0f) * 0.5f * 255.0f / 10.0f);
}

static void quiet_warning(void *user, const char *message)
{
    (void)message;
    ++*(int *)user;
}

static void test_labeled_dataset(void)
{
    static const char *const names[] = {"Smiling", "Eyeglasses", "Male"}; /* not file order */
    static const int columns[] = {2, 0, 3};
    char root[] = "/tmp/diat-labeled-XXXXXX", path[256];
    CHECK(mkdtemp(root) != NULL);
    snprintf(path, sizeof path, "%s/img_align_celeba", root);
    mkdir(path, 0755);
    char attr[4096], partition[2048];
    int used = snprintf(attr, sizeof attr, "%d\nEyeglasses Young Smiling Male\n", SYN_FACES);
    int pused = 0;
    for (int id = 0; id < SYN_FACES; id++) {
        used += snprintf(attr + used, sizeof attr - used, "%06d.png", id);
        for (int a = 0; a < 4; a++)
            used += snprintf(attr + used, sizeof attr - used, " %s", syn_label(id, a) ? "1" : "-1");
        used += snprintf(attr + used, sizeof attr - used, "\n");
        pused += snprintf(partition + pused, sizeof partition - pused, "%06d.png %d\n", id,
                          id < SYN_TRAIN ? 0 : 1);
        snprintf(path, sizeof path, "%s/img_align_celeba/%06d.png", root, id);
        if (id == SYN_BAD)
            write_file_text(path, "not a PNG");
        else
            write_face(path, id);
    }
    snprintf(path, sizeof path, "%s/list_attr_celeba.txt", root);
    write_file_text(path, attr);
    snprintf(path, sizeof path, "%s/list_eval_partition.txt", root);
    write_file_text(path, partition);

    int warned = 0;
    diat_dataset_options o = {0};
    o.celeba_root = root;
    o.labels = names;
    o.label_count = 3;
    o.batch = 4;
    o.flip = 1;
    o.seed = 3;
    o.threads = 2;
    o.warn = quiet_warning;
    o.warn_user = &warned;
    diat_dataset *d = NULL, *e = NULL;
    diat_error err;
    CHECK(diat_dataset_open(&o, &d, &err) == DIAT_OK);
    o.threads = 1;
    CHECK(diat_dataset_open(&o, &e, &err) == DIAT_OK);
    if (!d || !e) return;
    CHECK(diat_dataset_source_count(d) == SYN_TRAIN && diat_dataset_reference_count(d) == 0);
    CHECK(diat_dataset_label_count(d) == 3);
    float *faces = malloc(sizeof(float) * 4 * 3 * 128 * 128), labels[12];
    float *faces2 = malloc(sizeof(float) * 4 * 3 * 128 * 128), labels2[12];
    CHECK(diat_dataset_next(d, faces, faces2, &err) == DIAT_ERR_ARGUMENT);
    /* Every face of the train split comes with its own labels (a stand-in
     * for the unreadable one with the stand-in's), whatever the thread count. */
    int seen[SYN_FACES] = {0}, wrong = 0;
    diat_dataset_position position;
    for (int b = 0; b < 15; b++) {
        if (b == 10) diat_dataset_get_position(d, &position);
        CHECK(diat_dataset_next_labeled(d, faces, labels, &err) == DIAT_OK);
        CHECK(diat_dataset_next_labeled(e, faces2, labels2, &err) == DIAT_OK);
        CHECK(memcmp(faces, faces2, sizeof(float) * 4 * 3 * 128 * 128) == 0);
        CHECK(memcmp(labels, labels2, sizeof labels) == 0);
        for (int j = 0; j < 4; j++) {
            int id = face_id(faces + (size_t)j * 3 * 128 * 128);
            if (id < 0 || id >= SYN_TRAIN || id == SYN_BAD) {
                wrong++;
                continue;
            }
            seen[id] = 1;
            for (int k = 0; k < 3; k++) wrong += labels[j * 3 + k] != syn_label(id, columns[k]);
        }
    }
    CHECK_MSG(wrong == 0, "%d faces or labels wrong", wrong);
    int distinct = 0;
    for (int id = 0; id < SYN_FACES; id++) distinct += seen[id];
    CHECK_MSG(distinct == SYN_TRAIN - 1 && warned == 2, "%d faces seen, %d warnings", distinct,
              warned); /* the unreadable one is warned about once per data set */
    /* A restored position gives the same batch again. */
    CHECK(diat_dataset_set_position(e, &position, &err) == DIAT_OK);
    CHECK(diat_dataset_next_labeled(e, faces2, labels2, &err) == DIAT_OK);
    diat_dataset_close(d);
    d = NULL;
    o.threads = 2;
    CHECK(diat_dataset_open(&o, &d, &err) == DIAT_OK);
    if (d) {
        CHECK(diat_dataset_set_position(d, &position, &err) == DIAT_OK);
        CHECK(diat_dataset_next_labeled(d, faces, labels, &err) == DIAT_OK);
        CHECK(memcmp(faces, faces2, sizeof(float) * 4 * 3 * 128 * 128) == 0);
        CHECK(memcmp(labels, labels2, sizeof labels) == 0);
    }
    diat_dataset_close(d);
    diat_dataset_close(e);
    /* The val split in file order, one face at a time. */
    o.split = 1;
    CHECK(diat_dataset_open(&o, &d, &err) == DIAT_OK);
    if (d) {
        CHECK(diat_dataset_source_count(d) == SYN_FACES - SYN_TRAIN);
        for (int i = 0; i < SYN_FACES - SYN_TRAIN; i++) {
            CHECK(diat_dataset_labeled_face(d, (size_t)i, faces, labels, &err) == DIAT_OK);
            CHECK(face_id(faces) == SYN_TRAIN + i);
            for (int k = 0; k < 3; k++) CHECK(labels[k] == syn_label(SYN_TRAIN + i, columns[k]));
        }
        CHECK(diat_dataset_labeled_face(d, 99, faces, labels, &err) == DIAT_ERR_ARGUMENT);
    }
    diat_dataset_close(d);
    /* Other label names are other data: a position does not carry over;
     * unknown names and folder pairs are refused. */
    static const char *const other[] = {"Smiling", "Young", "Male"};
    o.split = 0;
    o.labels = other;
    CHECK(diat_dataset_open(&o, &d, &err) == DIAT_OK);
    if (d) CHECK(diat_dataset_set_position(d, &position, &err) == DIAT_ERR_ARGUMENT);
    diat_dataset_close(d);
    static const char *const unknown[] = {"Smiling", "Glasses"};
    o.labels = unknown;
    o.label_count = 2;
    CHECK(diat_dataset_open(&o, &d, &err) == DIAT_ERR_ARGUMENT);
    CHECK(strstr(err.message, "Glasses") != NULL);
    o.celeba_root = NULL;
    o.source_dir = o.target_dir = root;
    CHECK(diat_dataset_open(&o, &d, &err) == DIAT_ERR_ARGUMENT);
    free(faces);
    free(faces2);
    char command[512];
    snprintf(command, sizeof command, "rm -rf '%s'", root);
    CHECK(system(command) == 0);
}

int main(void)
{
    diat_error err;
    if (diat_context_new(DIAT_BACKEND_CPU, 1, &ctx, &err) != DIAT_OK) {
        fprintf(stderr, "%s\n", err.message);
        return 1;
    }
    RUN_TEST(test_gradients);
    RUN_TEST(test_cross_entropy_gradient);
    RUN_TEST(test_modes_and_shapes);
    RUN_TEST(test_load_and_predict);
    RUN_TEST(test_labeled_dataset);
    diat_context_free(ctx);
    return TEST_SUMMARY();
}

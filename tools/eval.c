/* diat eval: measure an attribute model on CelebA val faces (issue 7).
 *
 * The faces are the val split's source side (without the attribute for an
 * "add" model, with it for a "remove" one), in the partition file's order,
 * so two runs with the same --faces see the same faces. --split train takes
 * them from the train split instead, so checkpoints can be compared without
 * choosing on the val faces the figures are then reported on. Each is edited at
 * one ratio p, and the input and the result are both judged: every figure
 * comes with the unedited faces' value beside it, because a classifier's
 * 80% means little until one knows it says 10% of the sources already.
 *
 * Errors follow `diat`'s style: one line "diat: error: ...", exit 1 for a
 * runtime failure and 2 for wrong usage. Nothing is written unless the
 * whole evaluation succeeded.
 */
#include "cli.h"
#include "dataset.h"
#include "eval.h"

#include "image-io.h"
#include "model-files.h"

#include <errno.h>
#include <getopt.h>
#include <libgen.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define FACERES_FILE "faceres.safetensors"
#define RECOGNITION_FILE "face-recognition-resnet29.safetensors"
#define AGE_GENDER_FILE "face-age-gender.safetensors"
/* The judges' model files, looked up by name unless given: faceres, dlib's
 * ResNet, and for Male and Young face-api's age and gender network with the
 * face finder's two. */
#define JUDGE_FILES 5

void eval_help(void)
{
    puts("Usage: diat eval -m MODEL --celeba DIR [options]\n"
         "\n"
         "Measure an attribute model on the CelebA val split, faces the trainer\n"
         "never saw: those without the model's attribute for an \"add\" model, with\n"
         "it for a \"remove\" one (metadata attribute and direction). Each face is\n"
         "edited as `diat apply` and the plug-in edit it by default (the model's\n"
         "own mask threshold e > 0.5, the composition it was trained with), and\n"
         "the inputs and the results are judged alike:\n"
         "  attribute  the classifier's rate of results on the target side (and\n"
         "             of the unedited sources: the baseline); for Male and Young\n"
         "             also faceres's P(male) > 0.5 and age < 35, and face-api's\n"
         "             P(male) > 0.5 and age < 40 on the face its detector frames\n"
         "  identity   faceres verification (distance < 1.0) and dlib's ResNet\n"
         "             distance (mean, and rate below 0.6) between input and result\n"
         "  locality   mean mask area against the model's p (default_ratio: the\n"
         "             fraction training aimed at), PSNR and SSIM of the whole face\n"
         "  quality    mean ||DN(y) - y||^2 with a denoiser (results and sources)\n"
         "A table and a Markdown row for models/README.md go to stdout.\n"
         "\n"
         "Options:\n"
         "  -m, --model MODEL        the model (.safetensors), required\n"
         "      --celeba DIR         CelebA folder (img_align_celeba/, list_attr_celeba.txt,\n"
         "                           list_eval_partition.txt), required\n"
         "      --classifier FILE    attribute classifier from `diat-train classifier`\n"
         "                           (it must judge the model's attribute)\n"
         "      --denoiser FILE      denoiser from `diat-train denoiser --export`\n"
         "  -n, --faces N            the first N faces of the side (default: all)\n"
         "      --split val|train|test  the CelebA split to take them from (default\n"
         "                           val; train, say, to choose between checkpoints\n"
         "                           without looking at the faces that are reported)\n"
         "  -p, --ratio P            cut the mask at the fraction P of the face\n"
         "                           instead, 0 < P < 1 (the plug-in's ratio slider)\n"
         "      --json OUT           also write every figure and setting as JSON\n"
         "      --grid OUT.png       also write inputs / masks / results of the\n"
         "                           first 8 faces as a picture\n"
         "      --attribute NAME     evaluate as this CelebA attribute (default: the\n"
         "                           model's; for models trained on folders)\n"
         "      --direction add|remove   likewise for the direction\n"
         "      --faceres FILE       faceres model (default: " FACERES_FILE ",\n"
         "                           looked for in $DIAT_MODEL_PATH, then the\n"
         "                           install's share/diat/models)\n"
         "      --face-recognition FILE  dlib ResNet model (default:\n"
         "                           " RECOGNITION_FILE ")\n"
         "      --age-gender FILE    face-api's age and gender model, for Male and\n"
         "                           Young (default: " AGE_GENDER_FILE ";\n"
         "                           the face detector and landmarks by name, as\n"
         "                           `diat detect` finds them)\n"
         "  -t, --threads N          worker threads (default 0: one per core)\n"
         "      --backend NAME       cpu, cuda or auto (default auto)\n"
         "  -q, --quiet              no progress on stderr\n"
         "  -h, --help               show this help");
}

/* An output's folder must exist and be writable now, not after the run. */
static int check_output(const char *path, const char *option)
{
    char copy[4096];
    snprintf(copy, sizeof copy, "%s", path);
    const char *dir = dirname(copy);
    if (access(dir, W_OK) != 0)
        return report_error(EXIT_RUNTIME, "cannot write %s '%s': its folder '%s' %s.", option, path,
                            dir, errno == ENOENT ? "does not exist" : "is not writable");
    return 0;
}

/* An output that would replace one of the run's own input files. */
static const char *overwritten_input(const eval_settings *s, const char *output)
{
    const char *inputs[6] = {s->model,   s->classifier,  s->denoiser,
                             s->faceres, s->recognition, s->age_gender};
    for (int i = 0; i < 6; i++)
        if (inputs[i] && cli_same_file(inputs[i], output)) return inputs[i];
    return NULL;
}

/* Options into `s`; returns -1 to go on, else the exit code. */
static int parse_options(int argc, char *argv[], eval_settings *s)
{
    enum {
        OPT_CELEBA = 256,
        OPT_CLASSIFIER,
        OPT_DENOISER,
        OPT_JSON,
        OPT_GRID,
        OPT_ATTRIBUTE,
        OPT_DIRECTION,
        OPT_FACERES,
        OPT_RECOGNITION,
        OPT_AGE_GENDER,
        OPT_BACKEND,
        OPT_SPLIT
    };
    static const struct option options[] = {
        {"model", required_argument, NULL, 'm'},
        {"celeba", required_argument, NULL, OPT_CELEBA},
        {"classifier", required_argument, NULL, OPT_CLASSIFIER},
        {"denoiser", required_argument, NULL, OPT_DENOISER},
        {"faces", required_argument, NULL, 'n'},
        {"split", required_argument, NULL, OPT_SPLIT},
        {"ratio", required_argument, NULL, 'p'},
        {"json", required_argument, NULL, OPT_JSON},
        {"grid", required_argument, NULL, OPT_GRID},
        {"attribute", required_argument, NULL, OPT_ATTRIBUTE},
        {"direction", required_argument, NULL, OPT_DIRECTION},
        {"faceres", required_argument, NULL, OPT_FACERES},
        {"face-recognition", required_argument, NULL, OPT_RECOGNITION},
        {"age-gender", required_argument, NULL, OPT_AGE_GENDER},
        {"threads", required_argument, NULL, 't'},
        {"backend", required_argument, NULL, OPT_BACKEND},
        {"quiet", no_argument, NULL, 'q'},
        {"help", no_argument, NULL, 'h'},
        {0, 0, 0, 0}};
    *s = (eval_settings){.ratio_option = -1.0f, .split = 1, .backend = DIAT_BACKEND_AUTO};
    int c;
    long number;
    opterr = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, ":m:n:p:t:qh", options, NULL)) != -1) {
        char *end = NULL;
        errno = 0;
        switch (c) {
        case 'm': s->model = optarg; break;
        case OPT_CELEBA: s->celeba = optarg; break;
        case OPT_CLASSIFIER: s->classifier = optarg; break;
        case OPT_DENOISER: s->denoiser = optarg; break;
        case 'n':
            if (cli_parse_int(optarg, 1, LONG_MAX, &s->faces_requested) != 0)
                return cli_usage_error("eval",
                                       "bad face count (expected a whole number from 1): ", optarg);
            break;
        case 'p':
            s->ratio_option = strtof(optarg, &end);
            if (errno || end == optarg || *end || !(s->ratio_option > 0.0f) ||
                !(s->ratio_option < 1.0f))
                return cli_usage_error("eval",
                                       "the mask ratio p must be a number between 0 and 1 "
                                       "(exclusive), got ",
                                       optarg);
            break;
        case OPT_SPLIT:
            for (s->split = 0; diat_celeba_split_name(s->split); s->split++)
                if (strcmp(optarg, diat_celeba_split_name(s->split)) == 0) break;
            if (!diat_celeba_split_name(s->split))
                return cli_usage_error("eval", "the split must be train, val or test, got ",
                                       optarg);
            break;
        case OPT_JSON: s->json = optarg; break;
        case OPT_GRID: s->grid = optarg; break;
        case OPT_ATTRIBUTE: s->attribute_option = optarg; break;
        case OPT_DIRECTION:
            if (strcmp(optarg, "add") != 0 && strcmp(optarg, "remove") != 0)
                return cli_usage_error("eval", "the direction must be add or remove, got ", optarg);
            s->direction_option = optarg;
            break;
        case OPT_FACERES: s->faceres = optarg; break;
        case OPT_RECOGNITION: s->recognition = optarg; break;
        case OPT_AGE_GENDER: s->age_gender = optarg; break;
        case 't':
            if (cli_parse_int(optarg, 0, 1024, &number) != 0)
                return cli_usage_error("eval", "bad thread count (expected 0 to 1024): ", optarg);
            s->threads = (int)number;
            break;
        case OPT_BACKEND:
            if (diat_backend_kind_parse(optarg, &s->backend) != 0)
                return cli_usage_error("eval",
                                       "unknown backend (expected cpu, cuda or auto): ", optarg);
            break;
        case 'q': s->quiet = 1; break;
        case 'h': eval_help(); return 0;
        default: return cli_option_error("eval", c, argv);
        }
    }
    if (optind < argc) return cli_usage_error("eval", "unexpected argument ", argv[optind]);
    if (!s->model) return cli_usage_error("eval", "no model given (-m MODEL)", NULL);
    if (!s->celeba) return cli_usage_error("eval", "no CelebA folder given (--celeba DIR)", NULL);
    if (s->grid && imgio_format_from_path(s->grid) != IMGIO_FORMAT_PNG)
        return cli_usage_error("eval", "the grid must end in .png: ", s->grid);
    if (s->json && s->grid && strcmp(s->json, s->grid) == 0)
        return cli_usage_error("eval", "--json and --grid name the same file: ", s->json);
    const char *outputs[2] = {s->json, s->grid};
    for (int i = 0; i < 2; i++)
        if (outputs[i] && overwritten_input(s, outputs[i]))
            return cli_usage_error(
                "eval", "refusing to overwrite an input file with an output: ", outputs[i]);
    int rc = s->json ? check_output(s->json, "--json") : 0;
    if (!rc && s->grid) rc = check_output(s->grid, "--grid");
    return rc ? rc : -1;
}

/* Attribute, direction, ratio and the judges' files, from the options and
 * the model. Returns 0 or the exit code. */
static int resolve(eval_settings *s, const diat_model *model, char found[JUDGE_FILES][4096])
{
    const char *attribute =
        s->attribute_option ? s->attribute_option : diat_model_metadata(model, "attribute");
    const char *direction =
        s->direction_option ? s->direction_option : diat_model_metadata(model, "direction");
    if (!attribute || !attribute[0] || strlen(attribute) >= sizeof s->attribute)
        return report_error(EXIT_USAGE, "the model '%s' names no attribute; give --attribute NAME.",
                            s->model);
    if (!direction || (strcmp(direction, "add") != 0 && strcmp(direction, "remove") != 0))
        return report_error(EXIT_USAGE,
                            "the model '%s' has no direction add or remove; give --direction.",
                            s->model);
    snprintf(s->attribute, sizeof s->attribute, "%s", attribute);
    s->add = strcmp(direction, "add") == 0;
    const char *label = diat_model_metadata(model, "label");
    snprintf(s->label, sizeof s->label, "%s", label ? label : attribute);
    s->opinion = strcmp(attribute, "Male") == 0    ? EVAL_OPINION_MALE
                 : strcmp(attribute, "Young") == 0 ? EVAL_OPINION_YOUNG
                                                   : EVAL_OPINION_NONE;
    s->model_ratio = diat_model_default_ratio(model);
    if (s->ratio_option > 0.0f) {
        s->ratio = s->ratio_option;
        s->ratio_source = "--ratio";
    } else {
        /* What a user gets: `diat apply` and the plug-in default to the
         * model's own threshold, the binarization T and M were trained
         * with; its area may differ from p, which is only the ratio
         * regularization's target. */
        s->ratio = DIAT_RATIO_MODEL;
        s->ratio_source = "the model's own threshold, as `diat apply` and the plug-in edit";
    }
    const char *names[JUDGE_FILES] = {FACERES_FILE, RECOGNITION_FILE, AGE_GENDER_FILE,
                                      DETECTOR_FILE, LANDMARKS_FILE};
    const char *options[JUDGE_FILES] = {"--faceres", "--face-recognition", "--age-gender", NULL,
                                        NULL};
    const char **given[JUDGE_FILES] = {&s->faceres, &s->recognition, &s->age_gender, &s->detector,
                                       &s->landmarks};
    char searched[2048];
    for (int i = 0; i < JUDGE_FILES; i++) {
        if (*given[i] || (i >= 2 && s->opinion == EVAL_OPINION_NONE)) continue;
        if (diat_model_file_find(names[i], found[i], sizeof found[i], searched, sizeof searched))
            return report_error(EXIT_RUNTIME,
                                "the model '%s' was not found (looked in $DIAT_MODEL_PATH and "
                                "%s)%s%s%s.",
                                names[i], searched, options[i] ? "; give it with " : "",
                                options[i] ? options[i] : "", options[i] ? " FILE" : "");
        *given[i] = found[i];
    }
    /* --age-gender on an attribute it has no opinion on: not used */
    if (s->opinion == EVAL_OPINION_NONE) s->age_gender = NULL;
    return 0;
}

/* NCHW [-1, 1] copy of an interleaved [0, 1] face, as the networks take it. */
static void to_network(const float *rgb, float *nchw)
{
    for (int i = 0; i < EVAL_PIXELS; i++)
        for (int c = 0; c < 3; c++) nchw[c * EVAL_PIXELS + i] = rgb[3 * i + c] * 2.0f - 1.0f;
}

/* Add one face's second opinion (P(male) or age, of the input and of the
 * result) to its totals: the face counts as having the attribute where
 * P(male) > 0.5, or where the age is below `young_age`. */
static void add_opinion(const eval_settings *s, float young_age, float input, float result,
                        eval_opinion_totals *t)
{
    const int male = s->opinion == EVAL_OPINION_MALE;
    const int input_has = male ? input > 0.5f : input < young_age;
    const int result_has = male ? result > 0.5f : result < young_age;
    t->success += result_has == s->add;
    t->baseline += input_has == s->add;
    t->value_results += result;
    t->value_sources += input;
}

/* Add face i's judgements to the totals. */
static void accumulate(const eval_settings *s, const eval_judges *j, const eval_views *in,
                       const eval_views *out, int i, eval_totals *t)
{
    if (j->has_classifier) {
        t->classifier_success += (out->attribute[i] > 0.5f) == s->add;
        t->classifier_baseline += (in->attribute[i] > 0.5f) == s->add;
        t->classifier_p_results += out->attribute[i];
        t->classifier_p_sources += in->attribute[i];
    }
    if (s->opinion != EVAL_OPINION_NONE) {
        const diat_faceres_output *a = &in->faceres[i], *b = &out->faceres[i];
        const int male = s->opinion == EVAL_OPINION_MALE;
        add_opinion(s, EVAL_YOUNG_AGE, male ? a->male : a->age, male ? b->male : b->age,
                    &t->faceres_opinion);
    }
    if (j->age_gender) {
        const float *a = s->opinion == EVAL_OPINION_MALE ? in->face_api_male : in->face_api_age;
        const float *b = s->opinion == EVAL_OPINION_MALE ? out->face_api_male : out->face_api_age;
        add_opinion(s, EVAL_FACE_API_YOUNG_AGE, a[i], b[i], &t->face_api_opinion);
        t->face_api_unframed += !in->face_api_found[i] + !out->face_api_found[i];
    }
    double d = diat_faceres_distance(in->faceres[i].descriptor, out->faceres[i].descriptor);
    t->faceres_distance += d;
    t->faceres_same += d < DIAT_FACERES_THRESHOLD;
    const int dim = DIAT_FACE_RECOGNITION_DIM;
    d = eval_distance(in->embedding + (size_t)i * dim, out->embedding + (size_t)i * dim, dim);
    t->dlib_distance += d;
    t->dlib_same += d < EVAL_DLIB_THRESHOLD;
    if (j->has_denoiser) {
        t->artifact_results += out->artifact[i];
        t->artifact_sources += in->artifact[i];
    }
}

/* Load, edit and measure faces [first, first + n): `inputs` and `results`
 * receive them (8-bit grid), the totals their whole-face figures. */
static diat_status edit_faces(const eval_settings *s, diat_model *model, const eval_faces *faces,
                              size_t first, int n, float *inputs, float *results, eval_grid *grid,
                              eval_totals *t, diat_error *err)
{
    float mask[EVAL_PIXELS];
    for (int i = 0; i < n; i++) {
        float *x = inputs + (size_t)i * EVAL_FLOATS, *y = results + (size_t)i * EVAL_FLOATS;
        diat_edit *edit = NULL;
        diat_status st = eval_load_face(faces->paths[first + i], x, err);
        if (st == DIAT_OK) st = diat_edit_new_face(model, x, &edit, err);
        if (st == DIAT_OK) st = diat_edit_render_face(edit, s->ratio, y, mask, NULL, err);
        if (st == DIAT_OK) t->mask_area_model += diat_edit_mask_coverage(edit, DIAT_RATIO_MODEL);
        diat_edit_free(edit);
        if (st != DIAT_OK) return st;
        /* The result as a PNG of it would hold it. */
        for (int k = 0; k < EVAL_FLOATS; k++) y[k] = (float)lrintf(y[k] * 255.0f) / 255.0f;
        double area = 0.0;
        for (int k = 0; k < EVAL_PIXELS; k++) area += mask[k];
        t->mask_area += area / EVAL_PIXELS;
        double psnr = eval_psnr(x, y), ssim = eval_ssim(x, y);
        if (!isfinite(ssim)) return diat_set_error(err, DIAT_ERR_MEMORY, "Out of memory.");
        t->psnr += psnr;
        t->ssim += ssim;
        t->identical += memcmp(x, y, sizeof *x * EVAL_FLOATS) == 0;
        if (grid && grid->count < EVAL_GRID_FACES) {
            memcpy(grid->input[grid->count], x, sizeof grid->input[0]);
            memcpy(grid->mask[grid->count], mask, sizeof grid->mask[0]);
            memcpy(grid->result[grid->count], y, sizeof grid->result[0]);
            grid->count++;
        }
    }
    return DIAT_OK;
}

/* The evaluation proper, once the settings are resolved. */
static diat_status run(eval_settings *s, diat_model *model, eval_judges *j, const eval_faces *faces,
                       eval_grid *grid, eval_totals *t, diat_error *err)
{
    const int tty = !s->quiet && isatty(STDERR_FILENO);
    float *buf = malloc(sizeof *buf * (size_t)4 * EVAL_CHUNK * EVAL_FLOATS);
    eval_views in = {0}, out = {0};
    diat_status st = buf ? DIAT_OK : diat_set_error(err, DIAT_ERR_MEMORY, "Out of memory.");
    if (st == DIAT_OK) st = eval_views_alloc(&in, EVAL_CHUNK, err);
    if (st == DIAT_OK) st = eval_views_alloc(&out, EVAL_CHUNK, err);
    float *inputs = buf, *results = buf + (size_t)EVAL_CHUNK * EVAL_FLOATS;
    float *net_in = results + (size_t)EVAL_CHUNK * EVAL_FLOATS;
    float *net_out = net_in + (size_t)EVAL_CHUNK * EVAL_FLOATS;
    for (size_t first = 0; st == DIAT_OK && first < faces->count; first += EVAL_CHUNK) {
        int n = faces->count - first < EVAL_CHUNK ? (int)(faces->count - first) : EVAL_CHUNK;
        st = edit_faces(s, model, faces, first, n, inputs, results, grid, t, err);
        for (int i = 0; st == DIAT_OK && i < n; i++) {
            to_network(inputs + (size_t)i * EVAL_FLOATS, net_in + (size_t)i * EVAL_FLOATS);
            to_network(results + (size_t)i * EVAL_FLOATS, net_out + (size_t)i * EVAL_FLOATS);
        }
        if (st == DIAT_OK) st = eval_judge(j, net_in, n, &in, err);
        if (st == DIAT_OK) st = eval_judge(j, net_out, n, &out, err);
        for (int i = 0; st == DIAT_OK && i < n; i++) accumulate(s, j, &in, &out, i, t);
        if (st == DIAT_OK) t->faces += (size_t)n;
        if (tty)
            fprintf(stderr, "\r\033[Kdiat: evaluated %zu of %zu faces", t->faces, faces->count);
    }
    if (tty) fputs("\r\033[K", stderr);
    eval_views_free(&in);
    eval_views_free(&out);
    free(buf);
    return st;
}

int command_eval(int argc, char *argv[])
{
    eval_settings s;
    int rc = parse_options(argc, argv, &s);
    if (rc >= 0) return rc;
    diat_error err = {0};
    diat_context *ctx = NULL;
    diat_model *model = NULL;
    eval_judges judges = {0};
    eval_faces faces = {0};
    eval_totals totals = {0};
    eval_grid *grid = NULL;
    static char judge_files[JUDGE_FILES][4096];
    rc = EXIT_RUNTIME;
    if (diat_context_new(s.backend, s.threads, &ctx, &err) != DIAT_OK) goto engine_error;
    s.backend_name = diat_context_backend_name(ctx);
    if (!s.quiet && diat_context_notice(ctx))
        fprintf(stderr, "diat: %s\n", diat_context_notice(ctx));
    if (diat_model_load(ctx, s.model, &model, &err) != DIAT_OK) goto engine_error;
    if ((rc = resolve(&s, model, judge_files)) != 0) goto done;
    rc = EXIT_RUNTIME;
    if (eval_select_faces(s.celeba, s.split, s.attribute, !s.add, (size_t)s.faces_requested, &faces,
                          &s.split_faces, &s.side_faces, &err) != DIAT_OK)
        goto engine_error;
    if (eval_judges_load(&judges, ctx, &s, &err) != DIAT_OK) goto engine_error;
    if (s.grid && !(grid = calloc(1, sizeof *grid))) {
        diat_set_error(&err, DIAT_ERR_MEMORY, "Out of memory for the grid.");
        goto engine_error;
    }
    if (!s.quiet)
        fprintf(stderr, "diat: evaluating '%s' (%s %s) on %zu CelebA %s faces %s it\n", s.model,
                s.add ? "add" : "remove", s.attribute, faces.count, diat_celeba_split_name(s.split),
                s.add ? "without" : "with");
    if (run(&s, model, &judges, &faces, grid, &totals, &err) != DIAT_OK) goto engine_error;
    if (s.json && eval_write_json(s.json, &s, &totals, &err) != DIAT_OK) goto engine_error;
    if (s.grid && eval_write_grid(s.grid, grid, &err) != DIAT_OK) goto engine_error;
    eval_print(&s, &totals);
    rc = 0;
    goto done;

engine_error:
    rc = report_error(err.code == DIAT_ERR_ARGUMENT ? EXIT_USAGE : EXIT_RUNTIME, "%s", err.message);
done:
    free(grid);
    eval_faces_free(&faces);
    eval_judges_free(&judges);
    diat_model_free(model);
    diat_context_free(ctx);
    return rc;
}

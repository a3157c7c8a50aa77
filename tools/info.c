/* `diat info MODEL`: what a model file holds, validated as `diat apply`
 * would load it. */
#include "cli.h"
#include "diat-train.h" /* the safetensors reader */
#include "diat.h"

#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

static const char *dtype_name(diat_dtype dtype)
{
    switch (dtype) {
    case DIAT_DTYPE_F32: return "F32";
    case DIAT_DTYPE_F16: return "F16";
    case DIAT_DTYPE_U8: return "U8";
    }
    return "?";
}

/* Metadata values may span lines (licences): indent continuation lines. */
static void print_indented_value(const char *value)
{
    for (const char *p = value; *p; p++) {
        fputc(*p, stdout);
        if (*p == '\n' && p[1]) fputs("    ", stdout);
    }
    fputc('\n', stdout);
}

void info_help(void)
{
    puts("Usage: diat info MODEL\n"
         "\n"
         "Print what a DIAT model file (.safetensors) holds: its metadata (one\n"
         "'key: value' per line), its tensors (name, dtype, shape), the number of\n"
         "learned parameters and the file size. The file is fully validated, as\n"
         "diat apply would load it; a file that does not validate is an error.\n"
         "\n"
         "Options:\n"
         "  -h, --help   show this help");
}

int command_info(int argc, char *argv[])
{
    static const struct option options[] = {{"help", no_argument, NULL, 'h'}, {0, 0, 0, 0}};
    int c;
    opterr = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, ":h", options, NULL)) != -1) {
        if (c == 'h') {
            info_help();
            return 0;
        }
        return cli_option_error("info", c, argv);
    }
    if (argc - optind != 1)
        return cli_usage_error(
            "info", argc - optind < 1 ? "no model file given" : "too many arguments", NULL);
    const char *path = argv[optind];

    diat_error err = {0};
    diat_safetensors *st = NULL;
    if (diat_safetensors_open(path, &st, &err) != DIAT_OK)
        return report_error(EXIT_RUNTIME, "%s", err.message);
    struct stat sb;
    long long size = stat(path, &sb) == 0 ? (long long)sb.st_size : -1;

    printf("file: %s\n", path);
    printf("file size: %lld bytes (%.1f KiB)\n", size, (double)size / 1024.0);
    size_t meta = diat_safetensors_metadata_count(st);
    printf("metadata (%zu entries):\n", meta);
    for (size_t i = 0; i < meta; i++) {
        const char *key, *value;
        diat_safetensors_metadata_at(st, i, &key, &value);
        printf("  %s: ", key);
        print_indented_value(value);
    }
    size_t count = diat_safetensors_count(st);
    unsigned long long stored = 0;
    printf("tensors (%zu):\n", count);
    for (size_t i = 0; i < count; i++) {
        const diat_st_tensor *t = diat_safetensors_at(st, i);
        char shape[160] = "";
        size_t used = 0;
        unsigned long long elements = 1;
        for (int d = 0; d < t->ndim && used < sizeof shape; d++) {
            used += (size_t)snprintf(shape + used, sizeof shape - used, "%s%lld", d ? ", " : "",
                                     (long long)t->shape[d]);
            elements *= (unsigned long long)t->shape[d];
        }
        stored += elements;
        printf("  %-28s %-4s [%s]\n", t->name, dtype_name(t->dtype), shape);
    }
    /* The trainer's other files (denoiser, classifier) are not edit models:
     * describe them without judging them as one. */
    const char *format = diat_safetensors_metadata(st, "format");
    if (format &&
        (strcmp(format, "diat-classifier") == 0 || strcmp(format, "diat-denoiser") == 0)) {
        printf("stored values: %llu\n", stored);
        printf("kind: %s (used by diat-train and diat eval, not by diat apply)\n", format);
        diat_safetensors_close(st);
        return 0;
    }
    diat_safetensors_close(st);

    /* Validate the way `diat apply` loads it, and count what the engine uses. */
    diat_context *ctx = NULL;
    diat_model *model = NULL;
    int rc = 0;
    if (diat_context_new(DIAT_BACKEND_CPU, 1, &ctx, &err) != DIAT_OK ||
        diat_model_load(ctx, path, &model, &err) != DIAT_OK) {
        rc = report_error(EXIT_RUNTIME, "%s", err.message);
    } else {
        printf("stored values: %llu\n", stored);
        printf("parameters: %zu\n", diat_model_parameter_count(model));
        float ratio = diat_model_default_ratio(model);
        if (ratio >= 0.0f) printf("default ratio p: %g\n", (double)ratio);
        printf("valid: yes\n");
    }
    diat_model_free(model);
    diat_context_free(ctx);
    return rc;
}

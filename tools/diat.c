/* diat — the command-line front end of libdiat.
 *
 *   diat info MODEL            what a model file holds
 *   diat apply -m MODEL IN OUT edit the faces in a PNG or JPEG photo
 *   diat detect IN             list the faces found in a photo
 *   diat eval -m MODEL --celeba DIR   measure a model on CelebA val (eval.c)
 *   diat version               versions of diat, its BLAS and backends
 *
 * The CLI calls the same engine pipeline as the GIMP plug-in. Exit codes:
 * 0 success, 1 a runtime failure (unreadable file, bad model, ...), 2 a usage
 * error (unknown option, malformed number, ...). Each failure is one line on
 * stderr starting "diat: error: ". This file dispatches; each command lives
 * in its own file (info.c, apply.c, detect.c, eval*.c) and cli.c holds what
 * they share.
 */
#include "cli.h"
#include "diat.h"
#include "eval.h"

#include <stdio.h>
#include <string.h>

#ifndef DIAT_VERSION
#define DIAT_VERSION "unknown"
#endif

/* ---- diat version and help -------------------------------------------------- */

static int command_version(void)
{
    printf("diat %s\n", DIAT_VERSION);
    printf("BLAS: %s\n", diat_blas_description());
    diat_context *ctx = NULL;
    if (diat_context_new(DIAT_BACKEND_CUDA, 1, &ctx, NULL) != DIAT_OK) {
        printf("backends: cpu\n");
        return 0;
    }
    if (diat_context_notice(ctx))
        printf("backends: cpu (%s)\n", diat_context_notice(ctx));
    else
        printf("backends: cpu, cuda\n");
    diat_context_free(ctx);
    return 0;
}

static void main_help(FILE *out)
{
    fputs("Usage: diat COMMAND [options] [arguments]\n"
          "\n"
          "Edit facial attributes in photos with DIAT models (Deep Identity-Aware\n"
          "Transfer of facial attributes).\n"
          "\n"
          "Commands:\n"
          "  info MODEL                  show a model file's metadata and tensors\n"
          "  apply -m MODEL IN OUT       edit the faces in a PNG or JPEG photo\n"
          "  detect IN                   list the faces found in a photo\n"
          "  eval -m MODEL --celeba DIR  measure a model on CelebA val faces\n"
          "  version                     show versions of diat, its BLAS and backends\n"
          "  help [COMMAND]              show help for diat or a command\n"
          "\n"
          "Run 'diat COMMAND --help' for a command's options.\n"
          "Exit status: 0 success, 1 failure, 2 wrong usage.\n",
          out);
}

int main(int argc, char *argv[])
{
    if (argc < 2) {
        main_help(stderr);
        return EXIT_USAGE;
    }
    const char *command = argv[1];
    if (strcmp(command, "-h") == 0 || strcmp(command, "--help") == 0) {
        main_help(stdout);
        return 0;
    }
    if (strcmp(command, "help") == 0) {
        const char *topic = argc > 2 ? argv[2] : "";
        if (strcmp(topic, "info") == 0)
            info_help();
        else if (strcmp(topic, "apply") == 0)
            apply_help();
        else if (strcmp(topic, "detect") == 0)
            detect_help();
        else if (strcmp(topic, "eval") == 0)
            eval_help();
        else
            main_help(stdout);
        return 0;
    }
    if (strcmp(command, "version") == 0 || strcmp(command, "--version") == 0)
        return command_version();
    if (strcmp(command, "info") == 0) return command_info(argc - 1, argv + 1);
    if (strcmp(command, "apply") == 0) return command_apply(argc - 1, argv + 1);
    if (strcmp(command, "detect") == 0) return command_detect(argc - 1, argv + 1);
    if (strcmp(command, "eval") == 0) return command_eval(argc - 1, argv + 1);
    fprintf(stderr, "diat: error: unknown command '%s'\nTry 'diat --help'.\n", command);
    return EXIT_USAGE;
}

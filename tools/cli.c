/* The helpers every `diat` command shares: error lines, option parsing,
 * and loading the face finder (declared in cli.h). */
#include "cli.h"
#include "image-io.h"
#include "model-files.h"

#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int report_error(int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("diat: error: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return code;
}

int cli_usage_error(const char *command, const char *what, const char *detail)
{
    fprintf(stderr, "diat: error: %s%s\nTry 'diat %s --help'.\n", what, detail ? detail : "",
            command);
    return EXIT_USAGE;
}

/* getopt_long reports with opterr = 0 and ':' first: turn its codes into one
 * clear line naming the option. */
int cli_option_error(const char *command, int code, char *const argv[])
{
    const char *arg = argv[optind - 1];
    char text[200];
    if (code == ':')
        snprintf(text, sizeof text, "option '%s' needs an argument", arg);
    else if (optopt && optopt < 128)
        snprintf(text, sizeof text, "unknown option '-%c'", optopt);
    else
        snprintf(text, sizeof text, "unknown option '%s'", arg);
    return cli_usage_error(command, text, NULL);
}

int cli_parse_int(const char *text, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long value = strtol(text, &end, 10);
    if (errno || end == text || *end || value < lo || value > hi) return -1;
    *out = value;
    return 0;
}

/* "x,y,w,h" with w, h > 0; x and y may be negative (box partly outside). */
int cli_parse_box(const char *text, diat_box *box)
{
    long v[4];
    const char *p = text;
    for (int i = 0; i < 4; i++) {
        char *end;
        errno = 0;
        v[i] = strtol(p, &end, 10);
        if (errno || end == p || v[i] < -IMGIO_MAX_SIDE || v[i] > IMGIO_MAX_SIDE) return -1;
        if (i < 3 && *end != ',') return -1;
        if (i == 3 && *end) return -1;
        p = end + 1;
    }
    if (v[2] <= 0 || v[3] <= 0) return -1;
    *box = (diat_box){(int)v[0], (int)v[1], (int)v[2], (int)v[3]};
    return 0;
}

int cli_same_file(const char *a, const char *b)
{
    struct stat sa, sb;
    if (strcmp(a, b) == 0) return 1;
    return stat(a, &sa) == 0 && stat(b, &sb) == 0 && sa.st_dev == sb.st_dev &&
           sa.st_ino == sb.st_ino;
}

/* Load the face finder from the given files or, for each one left NULL,
 * from the lookup above. Returns 0, or the exit code after reporting. */
int cli_load_face_finder(diat_context *ctx, const char *detector, const char *landmarks,
                         diat_face_finder **finder, diat_error *err)
{
    char found[2][4096], searched[2048];
    const char *paths[2] = {detector, landmarks};
    static const char *const names[2] = {DETECTOR_FILE, LANDMARKS_FILE};
    for (int i = 0; i < 2; i++) {
        if (paths[i]) continue;
        if (diat_model_file_find(names[i], found[i], sizeof found[i], searched, sizeof searched))
            return report_error(EXIT_RUNTIME,
                                "the face model '%s' was not found (looked in $DIAT_MODEL_PATH "
                                "and %s); set DIAT_MODEL_PATH to its folder, or give the face "
                                "with --box X,Y,W,H --no-align.",
                                names[i], searched);
        paths[i] = found[i];
    }
    if (diat_face_finder_load(ctx, paths[0], paths[1], finder, err) != DIAT_OK)
        return report_error(EXIT_RUNTIME, "%s", err->message);
    return 0;
}

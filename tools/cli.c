/* The helpers every `diat` command shares: error lines, option parsing,
 * the model-file lookup and loading the face finder (declared in cli.h). */
#include "cli.h"
#include "image-io.h"

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

/* ---- face model files ---------------------------------------------------- */

/* The face detector and landmark models ship in models/ and install to
 * PREFIX/share/diat/models. Looked for, in order:
 *   1. each folder of $DIAT_MODEL_PATH (colon-separated);
 *   2. ../share/diat/models next to the running executable (a relocated or
 *      unpacked install);
 *   3. the configured install folder (DIAT_MODEL_DIR);
 *   4. the source tree's models/ (DIAT_SOURCE_MODEL_DIR), so a build runs
 *      uninstalled.
 * `searched` receives the folders tried, for the error message. */
int cli_find_model_file(const char *name, char *path, size_t size, char *searched,
                        size_t searched_size)
{
    enum { MAX_DIRS = 8, DIR_SIZE = 4096 };
    char dirs[MAX_DIRS][DIR_SIZE];
    int count = 0;
    const char *env = getenv("DIAT_MODEL_PATH");
    for (const char *p = env; p && *p && count < MAX_DIRS - 3;) {
        size_t len = strcspn(p, ":");
        if (len > 0 && len < DIR_SIZE) {
            memcpy(dirs[count], p, len);
            dirs[count++][len] = '\0';
        }
        p += len + (p[len] == ':');
    }
    char exe[DIR_SIZE - 32];
    ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
    char *slash = len > 0 ? (exe[len] = '\0', strrchr(exe, '/')) : NULL;
    if (slash) {
        *slash = '\0'; /* the bin folder */
        if (snprintf(dirs[count], DIR_SIZE, "%s/../share/diat/models", exe) < DIR_SIZE) count++;
    }
#ifdef DIAT_MODEL_DIR
    if (snprintf(dirs[count], DIR_SIZE, "%s", DIAT_MODEL_DIR) < DIR_SIZE) count++;
#endif
#ifdef DIAT_SOURCE_MODEL_DIR
    if (snprintf(dirs[count], DIR_SIZE, "%s", DIAT_SOURCE_MODEL_DIR) < DIR_SIZE) count++;
#endif
    size_t used = 0;
    searched[0] = '\0';
    for (int i = 0; i < count; i++) {
        int n = snprintf(path, size, "%s/%s", dirs[i], name);
        if (n > 0 && (size_t)n < size && access(path, R_OK) == 0) return 0;
        if (used < searched_size)
            used += (size_t)snprintf(searched + used, searched_size - used, "%s%s", i ? ", " : "",
                                     dirs[i]);
    }
    return -1;
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
        if (cli_find_model_file(names[i], found[i], sizeof found[i], searched, sizeof searched))
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

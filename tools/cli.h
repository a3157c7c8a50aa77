/* Private to the `diat` executable: exit codes, the error lines and option
 * parsing every command shares, the model-file lookup and the commands'
 * entry points (cli.c, info.c, apply.c, detect.c; `diat eval` is eval.h). */
#ifndef DIAT_CLI_H
#define DIAT_CLI_H

#include "diat.h"

#include <stddef.h>

#define EXIT_RUNTIME 1
#define EXIT_USAGE 2

#define DETECTOR_FILE "face-detector-tiny.safetensors"
#define LANDMARKS_FILE "face-landmarks-68.safetensors"

/* Print "diat: error: ..." and return `code` for the caller to exit with. */
int report_error(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Print "diat: error: WHAT DETAIL" and where to find `command`'s help;
 * returns EXIT_USAGE. `detail` may be NULL. */
int cli_usage_error(const char *command, const char *what, const char *detail);

/* getopt_long's '?' or ':' (with opterr = 0 and ':' first in its option
 * string) as one usage error naming the option; returns EXIT_USAGE. */
int cli_option_error(const char *command, int code, char *const argv[]);

/* A whole decimal number in [lo, hi]: 0 with it in `out`, else -1. */
int cli_parse_int(const char *text, long lo, long hi, long *out);

/* "X,Y,W,H" with W, H > 0 (X and Y may be negative: a box partly outside
 * the image): 0 with it in `box`, else -1. */
int cli_parse_box(const char *text, diat_box *box);

/* Whether a and b name the same file (same path, or same device and inode). */
int cli_same_file(const char *a, const char *b);

/* Load the face finder from the given files or, for each one left NULL,
 * from diat_model_file_find (model-files.h). Returns 0, or the exit code after reporting. */
int cli_load_face_finder(diat_context *ctx, const char *detector, const char *landmarks,
                         diat_face_finder **finder, diat_error *err);

/* The commands: each takes argv from its own name on and returns the exit
 * status; each *_help prints the command's usage to stdout. */
int command_info(int argc, char *argv[]);
void info_help(void);
int command_apply(int argc, char *argv[]);
void apply_help(void);
int command_detect(int argc, char *argv[]);
void detect_help(void);

#endif

/* Private to the `diat` executable: exit codes, the error line every
 * command prints, and the file helpers tools/diat.c defines for every
 * command (tools/eval.c uses them too). */
#ifndef DIAT_CLI_H
#define DIAT_CLI_H

#define EXIT_RUNTIME 1
#define EXIT_USAGE 2

/* Print "diat: error: ..." and return `code` for the caller to exit with. */
int report_error(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#include <stddef.h>

/* Find the model file `name`: in each folder of $DIAT_MODEL_PATH, then
 * ../share/diat/models beside the executable, the configured install folder
 * and the source tree's models/. 0 with its path, else -1; `searched`
 * receives the folders tried, for the error message. */
int cli_find_model_file(const char *name, char *path, size_t size, char *searched,
                        size_t searched_size);

/* Whether a and b name the same file (same path, or same device and inode). */
int cli_same_file(const char *a, const char *b);

#endif

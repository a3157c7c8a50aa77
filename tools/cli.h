/* Private to the `diat` executable: exit codes and the error line every
 * command prints (tools/diat.c defines it; tools/eval.c uses it too). */
#ifndef DIAT_CLI_H
#define DIAT_CLI_H

#define EXIT_RUNTIME 1
#define EXIT_USAGE 2

/* Print "diat: error: ..." and return `code` for the caller to exit with. */
int report_error(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif

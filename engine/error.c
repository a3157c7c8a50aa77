/* Error reporting: the library fills a caller's diat_error, never prints. */
#include "diat-train.h"

#include <stdarg.h>
#include <stdio.h>

diat_status diat_set_error(diat_error *err, diat_status code, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        err->code = code;
        vsnprintf(err->message, sizeof err->message, fmt, ap);
        va_end(ap);
    }
    return code;
}

const char *diat_status_name(diat_status status)
{
    switch (status) {
    case DIAT_OK: return "ok";
    case DIAT_ERR_ARGUMENT: return "invalid argument";
    case DIAT_ERR_IO: return "input/output error";
    case DIAT_ERR_FORMAT: return "format error";
    case DIAT_ERR_MEMORY: return "out of memory";
    case DIAT_ERR_BACKEND: return "backend unavailable";
    case DIAT_ERR_CANCELLED: return "cancelled";
    }
    return "unknown error";
}

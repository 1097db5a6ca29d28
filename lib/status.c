/* lib/status.c - status names and error message helpers. */
#include "status.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static const char *const status_names[LH_STATUS_COUNT] = {
    [LH_OK] = "success",
    [LH_ERR_NOMEM] = "out of memory",
    [LH_ERR_IO] = "input/output error",
    [LH_ERR_FORMAT] = "malformed file",
    [LH_ERR_UNSUPPORTED] = "unsupported",
    [LH_ERR_SHAPE] = "shape mismatch",
    [LH_ERR_ARG] = "invalid argument",
    [LH_ERR_EXISTS] = "output already exists",
    [LH_ERR_NOT_FOUND] = "not found",
    [LH_ERR_NUMERIC] = "numerical error",
    [LH_ERR_BACKEND] = "backend error",
    [LH_ERR_TIMEOUT] = "timed out",
    [LH_ERR_INTERRUPTED] = "interrupted",
};

const char *lh_strerror(lh_status s)
{
    if ((int)s < 0 || s >= LH_STATUS_COUNT || !status_names[s])
        return "unknown error";
    return status_names[s];
}

/* Every message is one line: names and values taken from hostile files (a
 * tokenizer's token with a newline, a key with an escape sequence) must not
 * break it or reach a terminal raw. */
static void strip_controls(char *msg)
{
    for (char *c = msg; *c; c++)
        if ((unsigned char)*c < 0x20 || *c == 0x7f)
            *c = '?';
}

lh_status lh_error_set(lh_error *err, lh_status code, const char *fmt, ...)
{
    if (!err)
        return code;
    err->code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
    strip_controls(err->msg);
    return code;
}

lh_status lh_error_errno(lh_error *err, lh_status code, int errnum, const char *fmt, ...)
{
    if (!err)
        return code;
    err->code = code;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
    if (n >= 0 && (size_t)n < sizeof err->msg)
        snprintf(err->msg + n, sizeof err->msg - (size_t)n, ": %s", strerror(errnum));
    strip_controls(err->msg);
    return code;
}

void lh_error_prefix(lh_error *err, const char *prefix)
{
    if (!err || !prefix)
        return;
    char tmp[sizeof err->msg];
    const char *old = err->msg[0] ? err->msg : lh_strerror(err->code);
    size_t np = strlen(prefix);
    if (np > sizeof tmp / 2)
        np = sizeof tmp / 2;
    memcpy(tmp, prefix, np);
    tmp[np] = ':';
    tmp[np + 1] = ' ';
    size_t room = sizeof tmp - np - 3, no = strlen(old);
    if (no > room)
        no = room;
    memcpy(tmp + np + 2, old, no);
    tmp[np + 2 + no] = '\0';
    memcpy(err->msg, tmp, sizeof tmp);
    strip_controls(err->msg);
}

lh_status lh_error_one_line(lh_status st, lh_error *err)
{
    if (st != LH_OK && err)
        strip_controls(err->msg);
    return st;
}

void lh_error_clear(lh_error *err)
{
    if (!err)
        return;
    err->code = LH_OK;
    err->msg[0] = '\0';
}

const char *lh_error_message(const lh_error *err)
{
    if (!err)
        return "unknown error";
    return err->msg[0] ? err->msg : lh_strerror(err->code);
}

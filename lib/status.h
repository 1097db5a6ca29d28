/* lib/status.h - status codes and per-call error messages.
 *
 * Every library function that can fail returns an lh_status and, when it
 * fails, fills an lh_error (if the caller passed one) with a one-line
 * message that names the file and the problem, e.g.
 *   "x.safetensors: tensor 'a' data_offsets [16,8] overlap the previous tensor"
 * Library code never prints and never exits; cmd/ does.
 *
 * Codes are stable: add new ones at the end only. */
#ifndef LH_STATUS_H
#define LH_STATUS_H

#include <stddef.h>

typedef enum lh_status {
    LH_OK = 0,
    LH_ERR_NOMEM = 1,       /* an allocation failed */
    LH_ERR_IO = 2,          /* open/read/write/mmap/rename failed */
    LH_ERR_FORMAT = 3,      /* a file is malformed (truncated, bad JSON, bad offsets) */
    LH_ERR_UNSUPPORTED = 4, /* well-formed, but lorahub cannot honour it (DoRA, ...) */
    LH_ERR_SHAPE = 5,       /* shapes disagree (A vs B, module vs module, model vs adapter) */
    LH_ERR_ARG = 6,         /* the caller passed a bad argument or option value */
    LH_ERR_EXISTS = 7,      /* the output exists and overwriting was not asked for */
    LH_ERR_NOT_FOUND = 8,   /* a file, key or tensor is missing */
    LH_ERR_NUMERIC = 9,     /* NaN/Inf where a number was needed, or LAPACK failed */
    LH_ERR_BACKEND = 10,    /* the forward-pass backend failed or misbehaved */
    LH_ERR_TIMEOUT = 11,    /* the backend did not answer in time */
    LH_ERR_INTERRUPTED = 12,/* stopped by a signal (SIGINT) or by the caller */
    LH_STATUS_COUNT
} lh_status;

/* A per-call error: the code and a message naming the thing that failed. */
typedef struct lh_error {
    lh_status code;
    char msg[1024];
} lh_error;

/* Short, lowercase name of a status code ("malformed file", ...). */
const char *lh_strerror(lh_status s);

/* Fill err (which may be NULL) and return code. printf-style message. */
lh_status lh_error_set(lh_error *err, lh_status code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* As lh_error_set, then append ": <strerror(errnum)>". */
lh_status lh_error_errno(lh_error *err, lh_status code, int errnum, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 4, 5)))
#endif
    ;

/* Prefix an existing message with "<prefix>: " (e.g. a file name). */
void lh_error_prefix(lh_error *err, const char *prefix);

void lh_error_clear(lh_error *err);

/* Names and values quoted from a file may hold control characters (a JSON
 * "\n" escape): replace them in err's message by '?' so it stays one line.
 * Returns st, so a caller writes `return lh_error_one_line(st, err);`. */
lh_status lh_error_one_line(lh_status st, lh_error *err);

/* The message if one was set, else lh_strerror(code). Never NULL. */
const char *lh_error_message(const lh_error *err);

#endif

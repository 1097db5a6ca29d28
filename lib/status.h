/* lib/status.h - status codes and per-call error messages.
 *
 * Every library function that can fail returns an lh_status and, when it
 * fails, fills an lh_error (if the caller passed one) with a one-line
 * message that names the file and the problem, e.g.
 *   "x.safetensors: tensor 'a' data_offsets [16,8] overlap the previous tensor"
 * Library code never prints and never exits; cmd/ does.
 *
 * Codes are stable: add new ones at the end only (include/lorahub.h). */
#ifndef LH_STATUS_H
#define LH_STATUS_H

#include <stddef.h>

/* lh_status, lh_error, lh_strerror and lh_error_message are public: one
 * definition, in the public header. */
#include "include/lorahub.h"

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

#endif

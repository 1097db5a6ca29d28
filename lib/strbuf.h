/* lib/strbuf.h - a growable string, used to build JSON, YAML and headers.
 *
 * Allocation failures are sticky: after one, every append is a no-op and
 * lh_sb_failed() reports it, so callers check once at the end. */
#ifndef LH_STRBUF_H
#define LH_STRBUF_H

#include <stddef.h>

typedef struct lh_sb {
    char *buf;   /* NUL-terminated, [cap] bytes; NULL until the first append */
    size_t len;
    size_t cap;
    int failed;  /* an allocation failed */
} lh_sb;

void lh_sb_init(lh_sb *sb);
void lh_sb_release(lh_sb *sb); /* frees buf, leaves sb empty and reusable */
void lh_sb_append(lh_sb *sb, const char *s);
void lh_sb_append_n(lh_sb *sb, const char *s, size_t n);
void lh_sb_appendf(lh_sb *sb, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
/* Append s as a JSON string literal, with quotes and escapes (\" \\ \n
 * \t \r \b \f, \u00XX for other control bytes; UTF-8 passes through). */
void lh_sb_append_json_string(lh_sb *sb, const char *s);
/* Append a double as JSON: shortest "%.17g"-style form that round-trips;
 * NaN/Inf (not JSON) are written as null. */
void lh_sb_append_json_number(lh_sb *sb, double v);
int lh_sb_failed(const lh_sb *sb);
/* 1 when s ends with suffix (both non-NULL). */
int lh_str_ends_with(const char *s, const char *suffix);
/* s[0..n) made printable for a message in buf (cap bytes, cap >= 8): control
 * bytes as \xNN, cut with "..." after max_shown bytes. Returns buf. */
const char *lh_str_printable(const char *s, size_t n, size_t max_shown, char *buf, size_t cap);
/* Take ownership of the buffer (never NULL on success; "" if empty). */
char *lh_sb_detach(lh_sb *sb);

#endif

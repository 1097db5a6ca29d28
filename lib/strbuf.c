/* lib/strbuf.c - growable string with sticky allocation failure. */
#include "strbuf.h"

#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void lh_sb_init(lh_sb *sb)
{
    sb->buf = NULL;
    sb->len = 0;
    sb->cap = 0;
    sb->failed = 0;
}

void lh_sb_release(lh_sb *sb)
{
    if (!sb)
        return;
    free(sb->buf);
    lh_sb_init(sb);
}

/* Make room for extra more bytes plus the terminating NUL. */
static int sb_reserve(lh_sb *sb, size_t extra)
{
    if (sb->failed)
        return 0;
    if (extra > SIZE_MAX - sb->len - 1) {
        sb->failed = 1;
        return 0;
    }
    size_t need = sb->len + extra + 1;
    if (need <= sb->cap)
        return 1;
    size_t cap = sb->cap ? sb->cap : 64;
    while (cap < need)
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    char *p = realloc(sb->buf, cap);
    if (!p) {
        sb->failed = 1;
        return 0;
    }
    sb->buf = p;
    sb->cap = cap;
    return 1;
}

void lh_sb_append_n(lh_sb *sb, const char *s, size_t n)
{
    if (!sb_reserve(sb, n))
        return;
    if (n)
        memcpy(sb->buf + sb->len, s, n);
    sb->len += n;
    sb->buf[sb->len] = '\0';
}

void lh_sb_append(lh_sb *sb, const char *s)
{
    lh_sb_append_n(sb, s, strlen(s));
}

void lh_sb_appendf(lh_sb *sb, const char *fmt, ...)
{
    if (sb->failed)
        return;
    char small[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0) {
        sb->failed = 1;
        return;
    }
    if ((size_t)n < sizeof small) {
        lh_sb_append_n(sb, small, (size_t)n);
        return;
    }
    if (!sb_reserve(sb, (size_t)n))
        return;
    va_start(ap, fmt);
    vsnprintf(sb->buf + sb->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    sb->len += (size_t)n;
}

void lh_sb_append_json_string(lh_sb *sb, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    lh_sb_append_n(sb, "\"", 1);
    const char *run = s;
    for (const char *p = s; *p; p++) {
        unsigned char c = (unsigned char)*p;
        const char *esc = NULL;
        char u[6];
        switch (c) {
        case '"': esc = "\\\""; break;
        case '\\': esc = "\\\\"; break;
        case '\n': esc = "\\n"; break;
        case '\t': esc = "\\t"; break;
        case '\r': esc = "\\r"; break;
        case '\b': esc = "\\b"; break;
        case '\f': esc = "\\f"; break;
        default:
            if (c >= 0x20)
                continue;
        }
        lh_sb_append_n(sb, run, (size_t)(p - run));
        run = p + 1;
        if (esc) {
            lh_sb_append(sb, esc);
        } else {
            u[0] = '\\'; u[1] = 'u'; u[2] = '0'; u[3] = '0';
            u[4] = hex[c >> 4]; u[5] = hex[c & 15];
            lh_sb_append_n(sb, u, 6);
        }
    }
    lh_sb_append(sb, run);
    lh_sb_append_n(sb, "\"", 1);
}

void lh_sb_append_json_number(lh_sb *sb, double v)
{
    if (!isfinite(v)) {
        lh_sb_append(sb, "null");
        return;
    }
    /* Integers in the exactly-representable range print without exponent so
     * that shapes, counts and seeds read naturally. */
    if (v == floor(v) && fabs(v) < 9007199254740992.0) {
        lh_sb_appendf(sb, "%.0f", v == 0 ? 0.0 : v);
        return;
    }
    char buf[32];
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(buf, sizeof buf, "%.*g", prec, v);
        if (strtod(buf, NULL) == v)
            break;
    }
    lh_sb_append(sb, buf);
}

int lh_sb_failed(const lh_sb *sb)
{
    return sb->failed;
}

char *lh_sb_detach(lh_sb *sb)
{
    if (sb->failed) {
        lh_sb_release(sb);
        return NULL;
    }
    char *p = sb->buf;
    if (!p) {
        p = malloc(1);
        if (!p)
            return NULL;
        p[0] = '\0';
    }
    lh_sb_init(sb);
    return p;
}

int lh_str_ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && !strcmp(s + n - m, suffix);
}

const char *lh_str_printable(const char *s, size_t n, size_t max_shown, char *buf, size_t cap)
{
    size_t o = 0;
    for (size_t i = 0; i < n && o + 6 < cap; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (i == max_shown) {
            memcpy(buf + o, "...", 3);
            o += 3;
            break;
        }
        if (ch < 0x20 || ch == 0x7f)
            o += (size_t)snprintf(buf + o, cap - o, "\\x%02x", ch);
        else
            buf[o++] = (char)ch;
    }
    buf[o] = '\0';
    return buf;
}

/* lib/json.c - JSON and YAML into one read-only tree, via libyaml's events.
 *
 * JSON is YAML flow syntax, but libyaml alone accepts too much (comments,
 * single quotes, anchors, raw newlines folded inside strings, YAML-only
 * escapes) and too little (tabs between tokens at the top level, surrogate
 * pair escapes, keys longer than 1024 characters, raw U+007F..U+009F,
 * U+2028/U+2029 and U+FFFE/U+FFFF inside strings). So JSON text first goes
 * through json_prepass(), one linear scan that enforces JSON's lexical rules
 * and UTF-8, and rewrites what libyaml cannot take:
 *   - tabs between tokens become spaces;
 *   - \uD83D\uDE00 becomes \U0001F600 (libyaml refuses surrogate escapes);
 *   - raw characters libyaml refuses or treats as line breaks become \uXXXX;
 *   - a long object key becomes "" and is decoded by us when libyaml reports
 *     a scalar starting at that character index (libyaml's marks count
 *     characters, so the prepass counts the characters it writes).
 * Newlines are never added or removed, so libyaml's line numbers are those
 * of the original text.
 *
 * The tree lives in an arena (a list of large chunks) so that a
 * tokenizer.json with 150k entries costs a few allocations, not 300k. */
#include "json.h"
#include "fsutil.h"

#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#define MAX_DEPTH 512
/* libyaml forgets a possible simple key after 1024 characters; keys whose
 * source is longer than this many bytes are decoded by us (3x: the largest
 * growth of a string in the prepass, 2 bytes -> \u0080). */
#define LONG_KEY_BYTES 300

/* ---------------------------------------------------------------- arena */

typedef struct chunk {
    struct chunk *next;
    size_t used, cap;
    _Alignas(16) unsigned char data[];
} chunk;

/* What lh_json_free receives is &root->node. */
typedef struct json_root {
    chunk *chunks;
    lh_json node;
} json_root;

static void *arena_alloc(json_root *r, size_t n)
{
    n = (n + 15) & ~(size_t)15;
    chunk *c = r->chunks;
    if (!c || c->cap - c->used < n) {
        size_t cap = c ? c->cap * 2 : 16384;
        if (cap > (1u << 20))
            cap = 1u << 20;
        if (cap < n)
            cap = n;
        c = malloc(sizeof(chunk) + cap);
        if (!c)
            return NULL;
        c->cap = cap;
        c->used = 0;
        /* a big one-off block goes behind the current chunk so the current
         * one keeps serving small allocations */
        if (r->chunks && n > (1u << 19)) {
            c->next = r->chunks->next;
            r->chunks->next = c;
        } else {
            c->next = r->chunks;
            r->chunks = c;
        }
    }
    void *p = c->data + c->used;
    c->used += n;
    return p;
}

void lh_json_free(lh_json *j)
{
    if (!j)
        return;
    json_root *r = (json_root *)((char *)j - offsetof(json_root, node));
    for (chunk *c = r->chunks, *next; c; c = next) {
        next = c->next;
        free(c);
    }
    free(r);
}

/* ---------------------------------------------------------------- errors */

/* Render s[0..n) for a message: at most 48 bytes, control bytes escaped. */
static void show(char *dst, size_t cap, const char *s, size_t n)
{
    size_t o = 0;
    for (size_t i = 0; i < n && cap - o >= 6; i++) {
        unsigned char c = (unsigned char)s[i];
        if (i == 48) {
            memcpy(dst + o, "...", 3);
            o += 3;
            break;
        }
        if (c < 0x20 || c == 0x7f)
            o += (size_t)snprintf(dst + o, cap - o, "\\x%02x", c);
        else
            dst[o++] = (char)c;
    }
    dst[o] = '\0';
}

static lh_status fail(lh_error *err, const char *origin, size_t line, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 4, 5)))
#endif
    ;

static lh_status fail(lh_error *err, const char *origin, size_t line, const char *fmt, ...)
{
    if (!err)
        return LH_ERR_FORMAT;
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (origin)
        return lh_error_set(err, LH_ERR_FORMAT, "%s: line %zu: %s", origin, line, msg);
    return lh_error_set(err, LH_ERR_FORMAT, "line %zu: %s", line, msg);
}

/* ---------------------------------------------------------------- UTF-8 */

/* Decode one UTF-8 sequence at s[0..n) (n >= 1). Returns its length and sets
 * *cp, or 0 if it is invalid (overlong, surrogate, > U+10FFFF, truncated). */
static size_t utf8_decode(const unsigned char *s, size_t n, uint32_t *cp)
{
    unsigned char c = s[0];
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    size_t len;
    uint32_t v, min;
    if (c >= 0xc2 && c <= 0xdf) {
        len = 2; v = c & 0x1f; min = 0x80;
    } else if (c >= 0xe0 && c <= 0xef) {
        len = 3; v = c & 0x0f; min = 0x800;
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4; v = c & 0x07; min = 0x10000;
    } else {
        return 0;
    }
    if (n < len)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        v = v << 6 | (s[i] & 0x3f);
    }
    if (v < min || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff))
        return 0;
    *cp = v;
    return len;
}

static size_t utf8_encode(uint32_t cp, unsigned char *o)
{
    if (cp < 0x80) {
        o[0] = (unsigned char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (unsigned char)(0xc0 | cp >> 6);
        o[1] = (unsigned char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (unsigned char)(0xe0 | cp >> 12);
        o[1] = (unsigned char)(0x80 | (cp >> 6 & 0x3f));
        o[2] = (unsigned char)(0x80 | (cp & 0x3f));
        return 3;
    }
    o[0] = (unsigned char)(0xf0 | cp >> 18);
    o[1] = (unsigned char)(0x80 | (cp >> 12 & 0x3f));
    o[2] = (unsigned char)(0x80 | (cp >> 6 & 0x3f));
    o[3] = (unsigned char)(0x80 | (cp & 0x3f));
    return 4;
}

static int hex4(const unsigned char *s, uint32_t *out)
{
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) {
        unsigned char c = s[i];
        v <<= 4;
        if (c >= '0' && c <= '9')
            v |= c - '0';
        else if (c >= 'a' && c <= 'f')
            v |= c - 'a' + 10;
        else if (c >= 'A' && c <= 'F')
            v |= c - 'A' + 10;
        else
            return 0;
    }
    *out = v;
    return 1;
}

/* ---------------------------------------------------------------- prepass */

typedef struct long_key {
    size_t char_index;   /* libyaml mark.index of the placeholder's quote */
    size_t src_off;      /* the original string body in the input */
    size_t src_len;
} long_key;

typedef struct prep {
    unsigned char *text; /* rewritten input */
    size_t len, cap;
    size_t chars;        /* characters in text[0..counted) */
    size_t counted;
    long_key *keys;
    size_t n_keys, cap_keys;
} prep;

static int prep_grow(prep *p, size_t n)
{
    size_t cap = p->cap * 2 + n;
    unsigned char *t = realloc(p->text, cap);
    if (!t)
        return 0;
    p->text = t;
    p->cap = cap;
    return 1;
}

static inline int prep_put(prep *p, const void *s, size_t n)
{
    if (p->cap - p->len < n && !prep_grow(p, n))
        return 0;
    memcpy(p->text + p->len, s, n);
    p->len += n;
    return 1;
}

/* Characters (UTF-8 lead bytes) in text[0..len): counted lazily, only when a
 * long key needs its libyaml character index; len never decreases between
 * calls (placeholders come in order). */
static size_t prep_chars_at(prep *p, size_t len)
{
    size_t c = p->chars;
    for (size_t i = p->counted; i < len; i++)
        c += (p->text[i] & 0xc0) != 0x80;
    p->chars = c;
    p->counted = len;
    return c;
}

static void prep_release(prep *p)
{
    free(p->text);
    free(p->keys);
}

/* Skip JSON whitespace from i; returns the index of the next other byte. */
static size_t skip_ws(const unsigned char *s, size_t n, size_t i)
{
    while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r'))
        i++;
    return i;
}

/* Scan the string whose opening quote is at s[q]; append its rewritten form
 * (quotes included) to p. Returns the index after the closing quote, or 0
 * after filling err. */
static size_t prep_string(prep *p, const unsigned char *s, size_t n, size_t q, size_t line,
                          const char *origin, lh_error *err, lh_status *st)
{
    size_t start_len = p->len;
    size_t i = q + 1;
    *st = LH_ERR_NOMEM;
    if (!prep_put(p, "\"", 1))
        return 0;
    for (;;) {
        size_t run = i;
        /* the common case: printable ASCII that is copied as is */
        while (i < n && s[i] >= 0x20 && s[i] < 0x7f && s[i] != '"' && s[i] != '\\')
            i++;
        if (i > run && !prep_put(p, s + run, i - run))
            return 0;
        if (i >= n) {
            *st = fail(err, origin, line, "unterminated string");
            return 0;
        }
        unsigned char c = s[i];
        if (c == '"')
            break;
        if (c == '\\') {
            if (i + 1 >= n) {
                *st = fail(err, origin, line, "unterminated string");
                return 0;
            }
            unsigned char e = s[i + 1];
            if (e == 'u') {
                uint32_t v, lo;
                if (i + 6 > n || !hex4(s + i + 2, &v)) {
                    *st = fail(err, origin, line, "invalid \\u escape (4 hex digits expected)");
                    return 0;
                }
                if (v >= 0xdc00 && v <= 0xdfff) {
                    *st = fail(err, origin, line, "unpaired surrogate \\u%04X in a string", (unsigned)v);
                    return 0;
                }
                if (v >= 0xd800 && v <= 0xdbff) {
                    if (i + 12 > n || s[i + 6] != '\\' || s[i + 7] != 'u' || !hex4(s + i + 8, &lo) ||
                        lo < 0xdc00 || lo > 0xdfff) {
                        *st = fail(err, origin, line, "unpaired surrogate \\u%04X in a string",
                                   (unsigned)v);
                        return 0;
                    }
                    char u[11];
                    snprintf(u, sizeof u, "\\U%08X",
                             (unsigned)(0x10000 + ((v - 0xd800) << 10) + (lo - 0xdc00)));
                    if (!prep_put(p, u, 10))
                        return 0;
                    i += 12;
                    continue;
                }
                if (!prep_put(p, s + i, 6))
                    return 0;
                i += 6;
                continue;
            }
            if (!strchr("\"\\/bfnrt", e) || e == '\0') {
                char shown[8];
                show(shown, sizeof shown, (const char *)&s[i + 1], 1);
                *st = fail(err, origin, line, "invalid escape '\\%s' in a string", shown);
                return 0;
            }
            if (!prep_put(p, s + i, 2))
                return 0;
            i += 2;
            continue;
        }
        if (c < 0x20) {
            *st = fail(err, origin, line, "control character 0x%02x in a string (must be escaped)", c);
            return 0;
        }
        uint32_t cp = c;
        size_t k = c == 0x7f ? 1 : utf8_decode(s + i, n - i, &cp);
        if (!k) {
            *st = fail(err, origin, line, "invalid UTF-8 in a string (byte 0x%02x)", c);
            return 0;
        }
        if ((cp >= 0x7f && cp <= 0x9f) || cp == 0x2028 || cp == 0x2029 || cp == 0xfffe ||
            cp == 0xffff) {
            char u[7];
            snprintf(u, sizeof u, "\\u%04X", (unsigned)cp);
            if (!prep_put(p, u, 6))
                return 0;
        } else if (!prep_put(p, s + i, k)) {
            return 0;
        }
        i += k;
    }
    i++; /* closing quote */
    size_t body = i - q - 2;
    size_t after = skip_ws(s, n, i);
    if (body > LONG_KEY_BYTES && after < n && s[after] == ':') {
        p->len = start_len;
        size_t start_chars = prep_chars_at(p, start_len);
        if (p->n_keys == p->cap_keys) {
            size_t cap = p->cap_keys ? p->cap_keys * 2 : 8;
            long_key *t = realloc(p->keys, cap * sizeof *t);
            if (!t)
                return 0;
            p->keys = t;
            p->cap_keys = cap;
        }
        p->keys[p->n_keys++] = (long_key){ start_chars, q + 1, body };
        if (!prep_put(p, "\"\"", 2))
            return 0;
        return i;
    }
    if (!prep_put(p, "\"", 1))
        return 0;
    return i;
}

static lh_status json_prepass(const char *text, size_t n, const char *origin, prep *p, lh_error *err)
{
    const unsigned char *s = (const unsigned char *)text;
    char stack[MAX_DEPTH + 1];
    int depth = 0;
    unsigned char last = 0; /* last significant byte outside strings */
    int in_lit = 0;         /* the previous byte belongs to a literal (1, true, ...) */
    size_t line = 1, i = 0;
    lh_status st;
    memset(p, 0, sizeof *p);
    p->cap = n + n / 16 + 64;
    p->text = malloc(p->cap);
    if (!p->text)
        return lh_error_set(err, LH_ERR_NOMEM, "%s: out of memory", origin ? origin : "JSON");
    if (n >= 3 && s[0] == 0xef && s[1] == 0xbb && s[2] == 0xbf)
        i = 3; /* a UTF-8 byte order mark: libyaml would skip it too */
    while (i < n) {
        unsigned char c = s[i];
        /* a value may only start at the beginning, after '[', '{', ',' or
         * ':'; otherwise libyaml could glue it to a neighbour (a plain
         * scalar may hold spaces and quotes) */
        int value_start = c == '"' || c == '{' || c == '[' ||
                          (!in_lit && ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
                                       (c >= 'A' && c <= 'Z') || c == '+' || c == '-' || c == '.'));
        if (value_start && !(last == 0 || last == '[' || last == '{' || last == ',' || last == ':')) {
            if (c >= 0x21 && c < 0x7f)
                st = fail(err, origin, line, "unexpected '%c' (a ',' or ':' is missing)", c);
            else
                st = fail(err, origin, line, "unexpected character");
            goto failed;
        }
        in_lit = 0;
        switch (c) {
        case '\n':
            line++;
            /* fall through */
        case ' ':
            if (!prep_put(p, s + i, 1))
                goto nomem;
            i++;
            continue;
        case '\r':
            if (i + 1 >= n || s[i + 1] != '\n')
                line++;
            if (!prep_put(p, s + i, 1))
                goto nomem;
            i++;
            continue;
        case '\t':
            if (!prep_put(p, " ", 1))
                goto nomem;
            i++;
            continue;
        case '"':
            i = prep_string(p, s, n, i, line, origin, err, &st);
            if (!i)
                goto failed;
            last = c;
            continue;
        case '{':
        case '[':
            if (depth >= MAX_DEPTH) {
                st = fail(err, origin, line, "nesting deeper than %d levels", MAX_DEPTH);
                goto failed;
            }
            stack[depth++] = (char)c;
            break;
        case '}':
        case ']':
            if (!depth || stack[depth - 1] != (c == '}' ? '{' : '[')) {
                st = fail(err, origin, line, "unexpected '%c'", c);
                goto failed;
            }
            if (last == ',') {
                st = fail(err, origin, line, "trailing comma before '%c'", c);
                goto failed;
            }
            depth--;
            break;
        case ':':
            if (!depth || stack[depth - 1] != '{') {
                st = fail(err, origin, line, "':' outside an object");
                goto failed;
            }
            break;
        case ',':
            if (!depth || last == ',' || last == '[' || last == '{' || last == ':') {
                st = fail(err, origin, line, "unexpected ','");
                goto failed;
            }
            break;
        default:
            if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                c == '+' || c == '-' || c == '.') {
                in_lit = 1;
                break;
            }
            if (c >= 0x21 && c < 0x7f)
                st = fail(err, origin, line, "unexpected character '%c'", c);
            else
                st = fail(err, origin, line, "unexpected byte 0x%02x outside a string", c);
            goto failed;
        }
        last = c;
        if (!prep_put(p, s + i, 1))
            goto nomem;
        i++;
    }
    return LH_OK;
nomem:
    st = lh_error_set(err, LH_ERR_NOMEM, "%s: out of memory", origin ? origin : "JSON");
failed:
    if (st == LH_ERR_NOMEM && err && err->code != LH_ERR_NOMEM)
        lh_error_set(err, LH_ERR_NOMEM, "%s: out of memory", origin ? origin : "JSON");
    prep_release(p);
    return st;
}

/* Decode a JSON string body already validated by the prepass. */
static char *decode_json_string(json_root *r, const unsigned char *s, size_t n, size_t *out_len)
{
    unsigned char *o = arena_alloc(r, n + 1), *w = o;
    if (!o)
        return NULL;
    for (size_t i = 0; i < n;) {
        if (s[i] != '\\') {
            *w++ = s[i++];
            continue;
        }
        unsigned char e = s[i + 1];
        uint32_t v, lo;
        switch (e) {
        case 'b': *w++ = '\b'; break;
        case 'f': *w++ = '\f'; break;
        case 'n': *w++ = '\n'; break;
        case 'r': *w++ = '\r'; break;
        case 't': *w++ = '\t'; break;
        case 'u':
            hex4(s + i + 2, &v);
            if (v >= 0xd800 && v <= 0xdbff) {
                hex4(s + i + 8, &lo);
                v = 0x10000 + ((v - 0xd800) << 10) + (lo - 0xdc00);
                i += 6;
            }
            w += utf8_encode(v, w);
            i += 6;
            continue;
        default: *w++ = e; break; /* \" \\ \/ */
        }
        i += 2;
    }
    *w = '\0';
    *out_len = (size_t)(w - o);
    return (char *)o;
}

/* ---------------------------------------------------------------- scalars */

static size_t skip_digits(const char *s, size_t n, size_t i)
{
    while (i < n && s[i] >= '0' && s[i] <= '9')
        i++;
    return i;
}

/* The tail both number grammars share: an optional [eE][-+]?[0-9]+ that must
 * end the text. Returns 1 when s[i..n) is exactly that. */
static int exponent_ends(const char *s, size_t n, size_t i)
{
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        if (i < n && (s[i] == '+' || s[i] == '-'))
            i++;
        size_t d = i;
        i = skip_digits(s, n, i);
        if (i == d)
            return 0;
    }
    return i == n;
}

static int is_json_number(const char *s, size_t n)
{
    size_t i = 0;
    if (i < n && s[i] == '-')
        i++;
    if (i >= n)
        return 0;
    if (s[i] == '0')
        i++;
    else if (s[i] >= '1' && s[i] <= '9')
        i = skip_digits(s, n, i);
    else
        return 0;
    if (i < n && s[i] == '.') {
        size_t d = ++i;
        i = skip_digits(s, n, i);
        if (i == d)
            return 0;
    }
    return exponent_ends(s, n, i);
}

/* YAML 1.2 core schema float: [-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)? */
static int is_yaml_float(const char *s, size_t n)
{
    size_t i = 0;
    if (i < n && (s[i] == '-' || s[i] == '+'))
        i++;
    size_t start = i;
    i = skip_digits(s, n, i);
    size_t digits = i - start;
    if (i < n && s[i] == '.') {
        size_t d = ++i;
        i = skip_digits(s, n, i);
        digits += i - d;
    }
    if (!digits)
        return 0;
    return exponent_ends(s, n, i);
}

/* An integer literal (JSON, or YAML decimal/0x/0o) read exactly. Returns 1
 * when s is one and fits in [-2^64+1, 2^64-1]: *neg and *mag hold it. */
static int parse_int_literal(const char *s, size_t n, int *neg, unsigned long long *mag)
{
    size_t i = 0;
    int base = 10;
    *neg = 0;
    if (i < n && (s[i] == '-' || s[i] == '+'))
        *neg = s[i++] == '-';
    if (i == 0 && n > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'o')) { /* YAML, unsigned */
        base = s[i + 1] == 'x' ? 16 : 8;
        i += 2;
    }
    if (i >= n)
        return 0;
    unsigned long long v = 0;
    for (; i < n; i++) {
        unsigned d;
        char c = s[i];
        if (c >= '0' && c <= '9')
            d = (unsigned)(c - '0');
        else if (base == 16 && c >= 'a' && c <= 'f')
            d = (unsigned)(c - 'a' + 10);
        else if (base == 16 && c >= 'A' && c <= 'F')
            d = (unsigned)(c - 'A' + 10);
        else
            return 0;
        if (d >= (unsigned)base)
            return 0;
        if (v > (ULLONG_MAX - d) / (unsigned)base)
            return 0;
        v = v * (unsigned)base + d;
    }
    *mag = v;
    return 1;
}

static double c_strtod(const char *s)
{
    /* the tree is locale-independent: numbers always use '.' */
    return strtod(s, NULL);
}

/* Classify a plain YAML scalar (core schema). Returns the type and sets *num. */
static lh_json_type yaml_plain_type(const char *s, size_t n, double *num)
{
    if (n == 0 || (n == 1 && s[0] == '~') || (n == 4 && (!strcmp(s, "null") || !strcmp(s, "Null") ||
                                                          !strcmp(s, "NULL"))))
        return LH_JSON_NULL;
    if (!strcmp(s, "true") || !strcmp(s, "True") || !strcmp(s, "TRUE")) {
        *num = 1;
        return LH_JSON_BOOL;
    }
    if (!strcmp(s, "false") || !strcmp(s, "False") || !strcmp(s, "FALSE")) {
        *num = 0;
        return LH_JSON_BOOL;
    }
    const char *t = s + (s[0] == '-' || s[0] == '+');
    if (!strcmp(t, ".inf") || !strcmp(t, ".Inf") || !strcmp(t, ".INF")) {
        *num = s[0] == '-' ? -INFINITY : INFINITY;
        return LH_JSON_NUMBER;
    }
    if (!strcmp(s, ".nan") || !strcmp(s, ".NaN") || !strcmp(s, ".NAN")) {
        *num = NAN;
        return LH_JSON_NUMBER;
    }
    int neg;
    unsigned long long mag;
    if (n > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'o') && parse_int_literal(s, n, &neg, &mag)) {
        *num = (double)mag;
        return LH_JSON_NUMBER;
    }
    if (is_yaml_float(s, n)) {
        *num = c_strtod(s);
        return LH_JSON_NUMBER;
    }
    return LH_JSON_STRING;
}

/* ---------------------------------------------------------------- tree */

typedef struct child {
    char *key;      /* NULL in arrays */
    lh_json *val;
    size_t line;    /* of the key, for duplicate-key messages */
} child;

typedef struct frame {
    lh_json *node;
    size_t base;    /* first child on the child stack */
    char *key;      /* objects: key waiting for its value */
    size_t key_line;
    int has_key;
} frame;

typedef struct builder {
    json_root *root;
    const char *origin;
    int json;       /* enforce JSON rules on scalars */
    frame frames[MAX_DEPTH + 1];
    int depth;
    child *kids;
    size_t n_kids, cap_kids;
    lh_json *result;
    const prep *pp; /* JSON: long keys to decode ourselves */
    size_t next_long_key;
    const unsigned char *src;
} builder;

static uint64_t hash_bytes(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 0x100000001b3ull;
    return h;
}

static lh_status check_duplicates(builder *b, const child *kids, size_t n, lh_error *err)
{
    if (n < 2)
        return LH_OK;
    if (n <= 8) {
        for (size_t i = 1; i < n; i++)
            for (size_t k = 0; k < i; k++)
                if (!strcmp(kids[i].key, kids[k].key))
                    goto dup_small;
        return LH_OK;
    dup_small:;
    }
    size_t cap = 16;
    while (cap < 2 * n)
        cap *= 2;
    uint32_t *slots = calloc(cap, sizeof *slots); /* index+1, 0 = empty */
    if (!slots)
        return lh_error_set(err, LH_ERR_NOMEM, "%s: out of memory", b->origin ? b->origin : "JSON");
    for (size_t i = 0; i < n; i++) {
        size_t h = (size_t)hash_bytes(kids[i].key) & (cap - 1);
        while (slots[h]) {
            if (!strcmp(kids[slots[h] - 1].key, kids[i].key)) {
                char shown[200];
                show(shown, sizeof shown, kids[i].key, strlen(kids[i].key));
                free(slots);
                return fail(err, b->origin, kids[i].line, "duplicate key '%s'", shown);
            }
            h = (h + 1) & (cap - 1);
        }
        slots[h] = (uint32_t)(i + 1);
    }
    free(slots);
    return LH_OK;
}

static lh_json *new_node(builder *b, lh_json_type t, size_t line)
{
    lh_json *j = b->depth == 0 && !b->result ? &b->root->node : arena_alloc(b->root, sizeof *j);
    if (j) {
        memset(j, 0, sizeof *j);
        j->type = t;
        j->line = line;
    }
    return j;
}

static lh_status attach(builder *b, lh_json *v, lh_error *err)
{
    if (b->depth == 0) {
        b->result = v;
        return LH_OK;
    }
    frame *f = &b->frames[b->depth - 1];
    if (b->n_kids == b->cap_kids) {
        size_t cap = b->cap_kids ? b->cap_kids * 2 : 256;
        child *t = realloc(b->kids, cap * sizeof *t);
        if (!t)
            return lh_error_set(err, LH_ERR_NOMEM, "%s: out of memory", b->origin ? b->origin : "JSON");
        b->kids = t;
        b->cap_kids = cap;
    }
    b->kids[b->n_kids++] = (child){ f->key, v, f->key_line };
    f->has_key = 0;
    f->key = NULL;
    return LH_OK;
}

static lh_status close_container(builder *b, lh_error *err)
{
    frame *f = &b->frames[b->depth - 1];
    lh_json *j = f->node;
    size_t n = b->n_kids - f->base;
    child *kids = n ? b->kids + f->base : NULL; /* b->kids is NULL until a first child */
    if (n > UINT32_MAX - 1)
        return fail(err, b->origin, 0, "too many items");
    if (j->type == LH_JSON_OBJECT) {
        lh_status st = check_duplicates(b, kids, n, err);
        if (st)
            return st;
    }
    j->len = n;
    if (n) {
        j->items = arena_alloc(b->root, n * sizeof *j->items);
        if (!j->items)
            goto nomem;
        for (size_t i = 0; i < n; i++)
            j->items[i] = kids[i].val;
        if (j->type == LH_JSON_OBJECT) {
            j->keys = arena_alloc(b->root, n * sizeof *j->keys);
            if (!j->keys)
                goto nomem;
            for (size_t i = 0; i < n; i++)
                j->keys[i] = kids[i].key;
        }
    }
    b->n_kids = f->base;
    b->depth--;
    return attach(b, j, err);
nomem:
    return lh_error_set(err, LH_ERR_NOMEM, "%s: out of memory", b->origin ? b->origin : "JSON");
}

static char *arena_strndup(json_root *r, const char *s, size_t n)
{
    char *p = arena_alloc(r, n + 1);
    if (p) {
        memcpy(p, s, n);
        p[n] = '\0';
    }
    return p;
}

static lh_status on_scalar(builder *b, yaml_event_t *ev, lh_error *err)
{
    size_t line = ev->start_mark.line + 1;
    const char *s = (const char *)ev->data.scalar.value;
    size_t n = ev->data.scalar.length;
    yaml_scalar_style_t style = ev->data.scalar.style;
    int quoted = style != YAML_PLAIN_SCALAR_STYLE;
    frame *f = b->depth ? &b->frames[b->depth - 1] : NULL;
    int is_key = f && f->node->type == LH_JSON_OBJECT && !f->has_key;
    char *str = NULL;
    size_t slen = n;

    if (ev->data.scalar.anchor)
        return fail(err, b->origin, line, "anchors and aliases are not supported");
    if (ev->data.scalar.tag)
        return fail(err, b->origin, line, "tags are not supported");
    if (b->json && quoted && style != YAML_DOUBLE_QUOTED_SCALAR_STYLE)
        return fail(err, b->origin, line, "strings must be double-quoted");

    /* placeholders libyaml never reported as scalars (only possible in a
     * document that fails anyway) must not shift the ones that follow */
    while (b->pp && b->next_long_key < b->pp->n_keys &&
           b->pp->keys[b->next_long_key].char_index < ev->start_mark.index)
        b->next_long_key++;
    if (b->pp && b->next_long_key < b->pp->n_keys &&
        b->pp->keys[b->next_long_key].char_index == ev->start_mark.index && quoted) {
        const long_key *lk = &b->pp->keys[b->next_long_key++];
        str = decode_json_string(b->root, b->src + lk->src_off, lk->src_len, &slen);
    } else if (quoted || is_key) {
        str = arena_strndup(b->root, s, n);
    }

    if (is_key) {
        if (b->json && !quoted)
            return fail(err, b->origin, line, "object keys must be strings");
        if (!str)
            goto nomem;
        if (!quoted && n == 0)
            return fail(err, b->origin, line, "empty key");
        if (strlen(str) != slen)
            return fail(err, b->origin, line, "key contains a NUL character");
        f->key = str;
        f->key_line = line;
        f->has_key = 1;
        return LH_OK;
    }

    lh_json *j;
    if (quoted) {
        if (!str)
            goto nomem;
        j = new_node(b, LH_JSON_STRING, line);
        if (!j)
            goto nomem;
        j->string = str;
        j->len = slen;
        return attach(b, j, err);
    }
    double num = 0;
    lh_json_type t;
    if (b->json) {
        if (!strcmp(s, "null"))
            t = LH_JSON_NULL;
        else if (!strcmp(s, "true"))
            t = LH_JSON_BOOL, num = 1;
        else if (!strcmp(s, "false"))
            t = LH_JSON_BOOL, num = 0;
        else if (is_json_number(s, n))
            t = LH_JSON_NUMBER, num = c_strtod(s);
        else {
            char shown[64];
            show(shown, sizeof shown, s, n);
            return fail(err, b->origin, line, "invalid literal '%s'", shown);
        }
        if (t == LH_JSON_NUMBER && isinf(num))
            return fail(err, b->origin, line, "number %s is out of range", s);
    } else {
        t = yaml_plain_type(s, n, &num);
    }
    j = new_node(b, t, line);
    if (!j)
        goto nomem;
    if (t == LH_JSON_BOOL)
        j->boolean = num != 0;
    if (t == LH_JSON_NUMBER)
        j->number = num;
    {
        /* numbers keep their literal so integers read back exactly; YAML
         * users may want "output: 42" or "yes: true" as text */
        j->string = arena_strndup(b->root, s, n);
        j->len = n;
        if (!j->string)
            goto nomem;
    }
    return attach(b, j, err);
nomem:
    return lh_error_set(err, LH_ERR_NOMEM, "%s: out of memory", b->origin ? b->origin : "JSON");
}

static lh_status on_start(builder *b, yaml_event_t *ev, lh_json_type t, lh_error *err)
{
    size_t line = ev->start_mark.line + 1;
    const void *anchor = t == LH_JSON_OBJECT ? (void *)ev->data.mapping_start.anchor
                                             : (void *)ev->data.sequence_start.anchor;
    const void *tag = t == LH_JSON_OBJECT ? (void *)ev->data.mapping_start.tag
                                          : (void *)ev->data.sequence_start.tag;
    if (anchor)
        return fail(err, b->origin, line, "anchors and aliases are not supported");
    if (tag)
        return fail(err, b->origin, line, "tags are not supported");
    if (b->json) {
        int flow = t == LH_JSON_OBJECT ? ev->data.mapping_start.style == YAML_FLOW_MAPPING_STYLE
                                       : ev->data.sequence_start.style == YAML_FLOW_SEQUENCE_STYLE;
        if (!flow)
            return fail(err, b->origin, line, "not JSON (block-style YAML)");
    }
    if (b->depth) {
        frame *f = &b->frames[b->depth - 1];
        if (f->node->type == LH_JSON_OBJECT && !f->has_key)
            return fail(err, b->origin, line, "object keys must be strings");
    }
    if (b->depth >= MAX_DEPTH)
        return fail(err, b->origin, line, "nesting deeper than %d levels", MAX_DEPTH);
    lh_json *j = new_node(b, t, line);
    if (!j)
        return lh_error_set(err, LH_ERR_NOMEM, "%s: out of memory", b->origin ? b->origin : "JSON");
    frame *f = &b->frames[b->depth++];
    f->node = j;
    f->base = b->n_kids;
    f->key = NULL;
    f->has_key = 0;
    return LH_OK;
}

static lh_status parse_events(const unsigned char *text, size_t len, builder *b, lh_error *err)
{
    yaml_parser_t parser;
    if (!yaml_parser_initialize(&parser))
        return lh_error_set(err, LH_ERR_NOMEM, "%s: out of memory", b->origin ? b->origin : "JSON");
    yaml_parser_set_input_string(&parser, text, len);
    yaml_parser_set_encoding(&parser, YAML_UTF8_ENCODING);
    lh_status st = LH_OK;
    int docs = 0, done = 0;
    while (!done) {
        yaml_event_t ev;
        if (!yaml_parser_parse(&parser, &ev)) {
            char shown[256];
            const char *problem = parser.problem ? parser.problem : "syntax error";
            show(shown, sizeof shown, problem, strlen(problem));
            /* at the end of the input libyaml reports the line after the last */
            size_t eline = parser.problem_mark.line + 1, lines = 1;
            for (size_t k = 0; k < len; k++)
                lines += text[k] == '\n';
            if (eline > lines)
                eline = lines;
            if (parser.error == YAML_MEMORY_ERROR)
                st = lh_error_set(err, LH_ERR_NOMEM, "%s: out of memory",
                                  b->origin ? b->origin : "JSON");
            else if (parser.context)
                st = fail(err, b->origin, eline, "%s %s", shown, parser.context);
            else
                st = fail(err, b->origin, eline, "%s", shown);
            break;
        }
        size_t line = ev.start_mark.line + 1;
        switch (ev.type) {
        case YAML_STREAM_END_EVENT:
            done = 1;
            break;
        case YAML_DOCUMENT_START_EVENT:
            if (++docs > 1)
                st = fail(err, b->origin, line, "more than one document");
            else if (b->json && (!ev.data.document_start.implicit || ev.data.document_start.version_directive))
                st = fail(err, b->origin, line, "not JSON (YAML document marker)");
            break;
        case YAML_SCALAR_EVENT:
            st = on_scalar(b, &ev, err);
            break;
        case YAML_SEQUENCE_START_EVENT:
            st = on_start(b, &ev, LH_JSON_ARRAY, err);
            break;
        case YAML_MAPPING_START_EVENT:
            st = on_start(b, &ev, LH_JSON_OBJECT, err);
            break;
        case YAML_SEQUENCE_END_EVENT:
        case YAML_MAPPING_END_EVENT:
            st = close_container(b, err);
            break;
        case YAML_ALIAS_EVENT:
            st = fail(err, b->origin, line, "anchors and aliases are not supported");
            break;
        default:
            break;
        }
        yaml_event_delete(&ev);
        if (st)
            break;
    }
    yaml_parser_delete(&parser);
    return st;
}

static lh_status parse_common(const char *text, size_t len, const char *origin, int json,
                              lh_json **out, lh_error *err)
{
    *out = NULL;
    if (!text && len)
        return lh_error_set(err, LH_ERR_ARG, "%s: no text", origin ? origin : "JSON");
    prep pp;
    const unsigned char *src = (const unsigned char *)text;
    size_t src_len = len;
    lh_status st;
    if (json) {
        st = json_prepass(text ? text : "", len, origin, &pp, err);
        if (st)
            return st;
        src = pp.text;
        src_len = pp.len;
    }
    builder *b = calloc(1, sizeof *b);
    json_root *root = calloc(1, sizeof *root);
    if (!b || !root) {
        st = lh_error_set(err, LH_ERR_NOMEM, "%s: out of memory", origin ? origin : "JSON");
        goto done;
    }
    b->root = root;
    b->origin = origin;
    b->json = json;
    b->pp = json ? &pp : NULL;
    b->src = (const unsigned char *)text;
    st = parse_events(src ? src : (const unsigned char *)"", src_len, b, err);
    if (!st && !b->result) {
        if (json) {
            st = fail(err, origin, 1, "no JSON value (empty input)");
        } else {
            root->node.type = LH_JSON_NULL; /* an empty YAML file is null */
            root->node.line = 1;
            b->result = &root->node;
        }
    }
    if (!st) {
        *out = b->result;
        root = NULL;
    }
done:
    if (root)
        lh_json_free(&root->node);
    if (b)
        free(b->kids);
    free(b);
    if (json)
        prep_release(&pp);
    return st;
}

lh_status lh_json_parse(const char *text, size_t len, const char *origin, lh_json **out,
                        lh_error *err)
{
    return parse_common(text, len, origin, 1, out, err);
}

lh_status lh_yaml_parse(const char *text, size_t len, const char *origin, lh_json **out,
                        lh_error *err)
{
    return parse_common(text, len, origin, 0, out, err);
}

static lh_status parse_file(const char *path, int json, lh_json **out, lh_error *err)
{
    char *text;
    size_t len;
    *out = NULL;
    lh_status st = lh_read_file(path, &text, &len, err);
    if (st)
        return st;
    st = parse_common(text, len, path, json, out, err);
    free(text);
    return st;
}

lh_status lh_json_parse_file(const char *path, lh_json **out, lh_error *err)
{
    return parse_file(path, 1, out, err);
}

lh_status lh_yaml_parse_file(const char *path, lh_json **out, lh_error *err)
{
    return parse_file(path, 0, out, err);
}

/* ---------------------------------------------------------------- access */

const lh_json *lh_json_get(const lh_json *obj, const char *key)
{
    if (!obj || obj->type != LH_JSON_OBJECT || !key)
        return NULL;
    for (size_t i = 0; i < obj->len; i++)
        if (!strcmp(obj->keys[i], key))
            return obj->items[i];
    return NULL;
}

int lh_json_as_string(const lh_json *j, const char **out)
{
    if (!j || j->type != LH_JSON_STRING)
        return 0;
    if (out)
        *out = j->string;
    return 1;
}

int lh_json_as_number(const lh_json *j, double *out)
{
    if (!j || j->type != LH_JSON_NUMBER)
        return 0;
    if (out)
        *out = j->number;
    return 1;
}

int lh_json_as_bool(const lh_json *j, int *out)
{
    if (!j || j->type != LH_JSON_BOOL)
        return 0;
    if (out)
        *out = j->boolean;
    return 1;
}

/* Exact integer value of a number node: from its literal when it is an
 * integer literal, else from the double when that is integral. */
static int number_int(const lh_json *j, int *neg, unsigned long long *mag)
{
    if (!j || j->type != LH_JSON_NUMBER)
        return 0;
    if (j->string && parse_int_literal(j->string, j->len, neg, mag))
        return 1;
    double v = j->number;
    if (!isfinite(v) || v != floor(v) || fabs(v) >= 18446744073709551616.0)
        return 0;
    *neg = v < 0;
    *mag = (unsigned long long)fabs(v);
    return 1;
}

int lh_json_as_int64(const lh_json *j, long long *out)
{
    int neg;
    unsigned long long mag;
    if (!number_int(j, &neg, &mag))
        return 0;
    if (neg ? mag > (unsigned long long)LLONG_MAX + 1 : mag > (unsigned long long)LLONG_MAX)
        return 0;
    if (out)
        *out = neg ? (mag == (unsigned long long)LLONG_MAX + 1 ? LLONG_MIN : -(long long)mag)
                   : (long long)mag;
    return 1;
}

int lh_json_as_uint64(const lh_json *j, unsigned long long *out)
{
    int neg;
    unsigned long long mag;
    if (!number_int(j, &neg, &mag) || (neg && mag))
        return 0;
    if (out)
        *out = mag;
    return 1;
}

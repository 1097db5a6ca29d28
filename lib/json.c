/* lib/json.c - JSON and YAML into one read-only tree.
 *
 * JSON goes through a recursive-descent parser of our own (strict RFC 8259:
 * UTF-8 validated, \u escapes with surrogate pairs, the number grammar,
 * nesting bounded, duplicate keys refused). It is one pass over the text
 * that writes the tree as it goes; tokenizer.json, the biggest file we read,
 * is almost all short strings, so the string scanner has a fast path for
 * printable ASCII and copies those bodies with one memcpy.
 *
 * YAML (job and weight files) goes through libyaml's event parser; its
 * events build the same tree.
 *
 * The tree lives in an arena (a list of large chunks) so that a
 * tokenizer.json with 150k entries costs a few allocations, not 300k.
 * While a container is open its finished children wait on one shared
 * stack (child below), so each container's arrays are allocated once, at
 * their final size. */
#include "json.h"
#include "fsutil.h"
#include "strbuf.h"

#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#define MAX_DEPTH 512

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
    lh_str_printable(s, n, 48, dst, cap);
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

/* A finished child of an open container, waiting on the child stack. */
typedef struct child {
    char *key;      /* NULL in arrays */
    lh_json *val;
    size_t line;    /* of the key, for duplicate-key messages */
    size_t off;     /* JSON: byte offset of the key in the text (its column) */
} child;

typedef struct child_stack {
    child *items;   /* [cap] */
    size_t n, cap;
} child_stack;

/* The children from base on; an empty stack has no array yet (NULL + 0 is
 * undefined, so it is not computed). */
static const child *kids_from(const child_stack *k, size_t base)
{
    return k->items ? k->items + base : NULL;
}

static int child_push(child_stack *k, child c)
{
    if (k->n == k->cap) {
        size_t cap = k->cap ? k->cap * 2 : 256;
        child *t = realloc(k->items, cap * sizeof *t);
        if (!t)
            return 0;
        k->items = t;
        k->cap = cap;
    }
    k->items[k->n++] = c;
    return 1;
}

static uint64_t hash_bytes(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 0x100000001b3ull;
    return h;
}

/* Looks for a key given twice in kids[0..n): returns 1 and sets *dup to the
 * later one's index, 0 if there is none, -1 when out of memory. */
static int find_duplicate(const child *kids, size_t n, size_t *dup)
{
    if (n < 2)
        return 0;
    if (n <= 8) { /* a hash table costs more than the comparisons */
        for (size_t i = 1; i < n; i++)
            for (size_t k = 0; k < i; k++)
                if (!strcmp(kids[i].key, kids[k].key)) {
                    *dup = i;
                    return 1;
                }
        return 0;
    }
    size_t cap = 16;
    while (cap < 2 * n)
        cap *= 2;
    uint32_t *slots = calloc(cap, sizeof *slots); /* [cap] index+1, 0 = empty */
    if (!slots)
        return -1;
    for (size_t i = 0; i < n; i++) {
        size_t h = (size_t)hash_bytes(kids[i].key) & (cap - 1);
        while (slots[h]) {
            if (!strcmp(kids[slots[h] - 1].key, kids[i].key)) {
                free(slots);
                *dup = i;
                return 1;
            }
            h = (h + 1) & (cap - 1);
        }
        slots[h] = (uint32_t)(i + 1);
    }
    free(slots);
    return 0;
}

typedef enum fill_result { FILL_OK, FILL_NOMEM, FILL_DUPLICATE, FILL_TOO_MANY } fill_result;

/* Gives container j its children kids[0..n) (copied into the arena), after
 * the duplicate-key check for an object; *dup: see find_duplicate. */
static fill_result fill_container(json_root *r, lh_json *j, const child *kids, size_t n, size_t *dup)
{
    if (n > UINT32_MAX - 1)
        return FILL_TOO_MANY; /* find_duplicate's slots hold 32-bit indices */
    if (j->type == LH_JSON_OBJECT) {
        int d = find_duplicate(kids, n, dup);
        if (d)
            return d < 0 ? FILL_NOMEM : FILL_DUPLICATE;
    }
    j->len = n;
    if (!n)
        return FILL_OK;
    j->items = arena_alloc(r, n * sizeof *j->items);
    if (!j->items)
        return FILL_NOMEM;
    for (size_t i = 0; i < n; i++)
        j->items[i] = kids[i].val;
    if (j->type == LH_JSON_OBJECT) {
        j->keys = arena_alloc(r, n * sizeof *j->keys);
        if (!j->keys)
            return FILL_NOMEM;
        for (size_t i = 0; i < n; i++)
            j->keys[i] = kids[i].key;
    }
    return FILL_OK;
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

static lh_status out_of_memory(lh_error *err, const char *origin)
{
    return lh_error_set(err, LH_ERR_NOMEM, "%s: out of memory", origin ? origin : "JSON");
}

/* ---------------------------------------------------------------- JSON */

typedef struct jparser {
    const unsigned char *s; /* the text, [n] bytes */
    size_t n;
    size_t i;               /* next byte to read */
    size_t line;            /* 1-based line of s[i] */
    const char *origin;
    lh_error *err;
    json_root *root;
    int root_used;          /* the first node made is the root (inside json_root) */
    child_stack kids;
} jparser;

/* 1-based column (in characters) of s[off]: only computed for a message. */
static size_t column_of(const unsigned char *s, size_t off)
{
    size_t start = off;
    while (start > 0 && s[start - 1] != '\n' && s[start - 1] != '\r')
        start--;
    if (start == 0 && off >= 3 && s[0] == 0xef && s[1] == 0xbb && s[2] == 0xbf)
        start = 3; /* a byte order mark is no character of the first line */
    size_t col = 1;
    for (size_t k = start; k < off; k++)
        col += (s[k] & 0xc0) != 0x80;
    return col;
}

static lh_status jfail(jparser *p, size_t off, size_t line, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 4, 5)))
#endif
    ;

/* "origin: line L: <message> at column C" (the prefix every reader has). */
static lh_status jfail(jparser *p, size_t off, size_t line, const char *fmt, ...)
{
    char msg[640];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return fail(p->err, p->origin, line, "%s at column %zu", msg, column_of(p->s, off));
}

static int is_literal_char(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '+' ||
           c == '-' || c == '.';
}

static void skip_ws(jparser *p)
{
    const unsigned char *s = p->s;
    size_t i = p->i, n = p->n;
    while (i < n) {
        unsigned char c = s[i];
        if (c == ' ' || c == '\t') {
            i++;
        } else if (c == '\n') {
            p->line++;
            i++;
        } else if (c == '\r') { /* CRLF is one line break, a lone CR one too */
            if (i + 1 >= n || s[i + 1] != '\n')
                p->line++;
            i++;
        } else {
            break;
        }
    }
    p->i = i;
}

/* s[i] is not what the grammar allows here; hint says what was due. */
static lh_status unexpected(jparser *p, const char *hint)
{
    if (p->i >= p->n)
        return jfail(p, p->i, p->line, "unexpected end of input%s", hint);
    unsigned char c = p->s[p->i];
    if ((c && strchr("{}[]:,\"", c)) || is_literal_char(c))
        return jfail(p, p->i, p->line, "unexpected '%c'%s", c, hint);
    if (c >= 0x21 && c < 0x7f)
        return jfail(p, p->i, p->line, "unexpected character '%c'%s", c, hint);
    return jfail(p, p->i, p->line, "unexpected byte 0x%02x outside a string%s", c, hint);
}

static lh_json *new_jnode(jparser *p, lh_json_type t)
{
    lh_json *j = p->root_used ? arena_alloc(p->root, sizeof *j) : &p->root->node;
    p->root_used = 1;
    if (j) {
        memset(j, 0, sizeof *j);
        j->type = t;
        j->line = p->line;
    }
    return j;
}

/* Decodes the escaped or non-ASCII string body s[from..to) into o (room for
 * to - from + 1 bytes: no escape grows). */
static lh_status decode_string(jparser *p, size_t from, size_t to, char *o, size_t *out_len)
{
    const unsigned char *s = p->s;
    unsigned char *w = (unsigned char *)o;
    for (size_t k = from; k < to;) {
        unsigned char c = s[k];
        if (c >= 0x80) {
            uint32_t cp;
            size_t l = utf8_decode(s + k, to - k, &cp);
            if (!l)
                return jfail(p, k, p->line, "invalid UTF-8 in a string (byte 0x%02x)", c);
            memcpy(w, s + k, l);
            w += l;
            k += l;
            continue;
        }
        if (c != '\\') {
            *w++ = c;
            k++;
            continue;
        }
        unsigned char e = s[k + 1]; /* k + 1 < to: the scan skipped the escaped byte */
        uint32_t v, lo;
        switch (e) {
        case '"': case '\\': case '/': *w++ = e; break;
        case 'b': *w++ = '\b'; break;
        case 'f': *w++ = '\f'; break;
        case 'n': *w++ = '\n'; break;
        case 'r': *w++ = '\r'; break;
        case 't': *w++ = '\t'; break;
        case 'u':
            if (k + 6 > to || !hex4(s + k + 2, &v))
                return jfail(p, k, p->line, "invalid \\u escape (4 hex digits expected)");
            if (v >= 0xdc00 && v <= 0xdfff)
                return jfail(p, k, p->line, "unpaired surrogate \\u%04X in a string", (unsigned)v);
            if (v >= 0xd800 && v <= 0xdbff) {
                if (k + 12 > to || s[k + 6] != '\\' || s[k + 7] != 'u' || !hex4(s + k + 8, &lo) ||
                    lo < 0xdc00 || lo > 0xdfff)
                    return jfail(p, k, p->line, "unpaired surrogate \\u%04X in a string", (unsigned)v);
                v = 0x10000 + ((v - 0xd800) << 10) + (lo - 0xdc00);
                k += 6;
            }
            w += utf8_encode(v, w);
            k += 6;
            continue;
        default: {
            char shown[8];
            show(shown, sizeof shown, (const char *)&s[k + 1], 1);
            return jfail(p, k, p->line, "invalid escape '\\%s' in a string", shown);
        }
        }
        k += 2;
    }
    *w = '\0';
    *out_len = (size_t)(w - (unsigned char *)o);
    return LH_OK;
}

/* The string whose opening quote is s[i]: *out (in the arena, NUL-terminated,
 * *out_len bytes without the NUL). */
static lh_status parse_string(jparser *p, char **out, size_t *out_len)
{
    const unsigned char *s = p->s;
    size_t n = p->n, from = p->i + 1, i = from;
    int plain = 1; /* no escape, no byte >= 0x80: the body is the string */
    for (;;) {
        while (i < n && s[i] >= 0x20 && s[i] < 0x80 && s[i] != '"' && s[i] != '\\')
            i++;
        if (i >= n)
            return jfail(p, p->i, p->line, "unterminated string");
        unsigned char c = s[i];
        if (c == '"')
            break;
        if (c < 0x20)
            return jfail(p, i, p->line, "control character 0x%02x in a string (must be escaped)", c);
        plain = 0;
        i += c == '\\' ? 2 : 1; /* an escaped quote does not end the string */
    }
    char *o = arena_alloc(p->root, i - from + 1);
    if (!o)
        return out_of_memory(p->err, p->origin);
    if (plain) {
        memcpy(o, s + from, i - from);
        o[i - from] = '\0';
        *out_len = i - from;
    } else {
        lh_status st = decode_string(p, from, i, o, out_len);
        if (st)
            return st;
    }
    *out = o;
    p->i = i + 1;
    return LH_OK;
}

/* null, true, false or a number: a run of literal characters at s[i]. */
static lh_status parse_literal(jparser *p, lh_json **out)
{
    const unsigned char *s = p->s;
    size_t from = p->i, i = from;
    while (i < p->n && is_literal_char(s[i]))
        i++;
    size_t len = i - from;
    const char *lit = (const char *)s + from;
    lh_json_type t;
    if (len == 4 && !memcmp(lit, "null", 4))
        t = LH_JSON_NULL;
    else if ((len == 4 && !memcmp(lit, "true", 4)) || (len == 5 && !memcmp(lit, "false", 5)))
        t = LH_JSON_BOOL;
    else if (is_json_number(lit, len))
        t = LH_JSON_NUMBER;
    else {
        char shown[64];
        show(shown, sizeof shown, lit, len);
        return jfail(p, from, p->line, "invalid literal '%s'", shown);
    }
    lh_json *j = new_jnode(p, t);
    if (!j || !(j->string = arena_strndup(p->root, lit, len)))
        return out_of_memory(p->err, p->origin);
    j->len = len; /* numbers keep their literal so that integers read back exactly */
    j->boolean = t == LH_JSON_BOOL && lit[0] == 't';
    if (t == LH_JSON_NUMBER) {
        /* up to 15 digits a plain integer is exact as a double: skip strtod */
        size_t neg = lit[0] == '-', k = neg;
        double v = 0;
        while (k < len && k - neg < 15 && lit[k] >= '0' && lit[k] <= '9')
            v = v * 10 + (lit[k++] - '0');
        j->number = k == len ? (neg ? -v : v) : c_strtod(j->string);
        if (isinf(j->number)) {
            char shown[64];
            show(shown, sizeof shown, lit, len);
            return jfail(p, from, p->line, "number %s is out of range", shown);
        }
    }
    p->i = i;
    *out = j;
    return LH_OK;
}

static lh_status parse_value(jparser *p, int depth, lh_json **out);

/* The array or object whose bracket is s[i]. */
static lh_status parse_container(jparser *p, int depth, lh_json **out)
{
    int is_object = p->s[p->i] == '{';
    unsigned char close = is_object ? '}' : ']';
    if (depth >= MAX_DEPTH)
        return jfail(p, p->i, p->line, "nesting deeper than %d levels", MAX_DEPTH);
    lh_json *j = new_jnode(p, is_object ? LH_JSON_OBJECT : LH_JSON_ARRAY);
    if (!j)
        return out_of_memory(p->err, p->origin);
    size_t base = p->kids.n;
    p->i++;
    skip_ws(p);
    int empty = p->i < p->n && p->s[p->i] == close;
    while (!empty) {
        child c = { NULL, NULL, p->line, p->i };
        lh_status st;
        if (is_object) {
            unsigned char k = p->i < p->n ? p->s[p->i] : 0;
            if (k != '"') {
                if (k == '{' || k == '[' || is_literal_char(k))
                    return jfail(p, p->i, p->line, "object keys must be strings");
                return unexpected(p, " (a key is missing)");
            }
            size_t klen;
            if ((st = parse_string(p, &c.key, &klen)))
                return st;
            if (strlen(c.key) != klen)
                return jfail(p, c.off, c.line, "key contains a NUL character");
            skip_ws(p);
            if (p->i >= p->n || p->s[p->i] != ':')
                return unexpected(p, " (a ':' is missing)");
            p->i++;
            skip_ws(p);
        }
        if ((st = parse_value(p, depth + 1, &c.val)))
            return st;
        if (!child_push(&p->kids, c))
            return out_of_memory(p->err, p->origin);
        skip_ws(p);
        unsigned char next = p->i < p->n ? p->s[p->i] : 0;
        if (next == close)
            break;
        if (next == ',') {
            p->i++;
            skip_ws(p);
            if (p->i < p->n && (p->s[p->i] == ']' || p->s[p->i] == '}'))
                return jfail(p, p->i, p->line, "trailing comma before '%c'", p->s[p->i]);
            continue;
        }
        if (next == ':' && !is_object)
            return jfail(p, p->i, p->line, "':' outside an object");
        return unexpected(p, is_object ? " (a ',' or '}' is missing)" : " (a ',' or ']' is missing)");
    }
    p->i++; /* the closing bracket */
    size_t dup;
    switch (fill_container(p->root, j, kids_from(&p->kids, base), p->kids.n - base, &dup)) {
    case FILL_OK:
        break;
    case FILL_DUPLICATE: {
        const child *d = &p->kids.items[base + dup];
        char shown[200];
        show(shown, sizeof shown, d->key, strlen(d->key));
        return jfail(p, d->off, d->line, "duplicate key '%s'", shown);
    }
    case FILL_TOO_MANY:
        return jfail(p, p->i - 1, p->line, "too many items");
    case FILL_NOMEM:
        return out_of_memory(p->err, p->origin);
    }
    p->kids.n = base;
    *out = j;
    return LH_OK;
}

/* The value at s[i] (whitespace already skipped). */
static lh_status parse_value(jparser *p, int depth, lh_json **out)
{
    unsigned char c = p->i < p->n ? p->s[p->i] : 0;
    if (c == '"') {
        lh_json *j = new_jnode(p, LH_JSON_STRING);
        if (!j)
            return out_of_memory(p->err, p->origin);
        *out = j;
        return parse_string(p, &j->string, &j->len);
    }
    if (c == '[' || c == '{')
        return parse_container(p, depth, out);
    if (is_literal_char(c))
        return parse_literal(p, out);
    if (c == ',' && p->i < p->n)
        return jfail(p, p->i, p->line, "unexpected ','");
    return unexpected(p, " (a value is missing)");
}

static lh_status json_parse(const char *text, size_t len, const char *origin, lh_json **out,
                            lh_error *err)
{
    *out = NULL;
    if (!text && len)
        return lh_error_set(err, LH_ERR_ARG, "%s: no text", origin ? origin : "JSON");
    jparser p = { .s = (const unsigned char *)(text ? text : ""), .n = len, .line = 1,
                  .origin = origin, .err = err };
    if (len >= 3 && p.s[0] == 0xef && p.s[1] == 0xbb && p.s[2] == 0xbf)
        p.i = 3; /* a UTF-8 byte order mark */
    skip_ws(&p);
    if (p.i >= p.n)
        return fail(err, origin, 1, "no JSON value (empty input)");
    if (!(p.root = calloc(1, sizeof *p.root)))
        return out_of_memory(err, origin);
    lh_json *v = NULL;
    lh_status st = parse_value(&p, 0, &v);
    if (!st) {
        skip_ws(&p);
        if (p.i < p.n)
            st = unexpected(&p, " after the JSON value");
    }
    free(p.kids.items);
    if (st) {
        lh_json_free(&p.root->node);
        return st;
    }
    *out = v;
    return LH_OK;
}

/* ---------------------------------------------------------------- YAML */

typedef struct frame {
    lh_json *node;
    size_t base;    /* its first child on the child stack */
    char *key;      /* objects: key waiting for its value */
    size_t key_line;
    int has_key;
} frame;

typedef struct builder {
    json_root *root;
    const char *origin;
    frame frames[MAX_DEPTH + 1];
    int depth;
    child_stack kids;
    lh_json *result;
} builder;

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
    if (!child_push(&b->kids, (child){ f->key, v, f->key_line, 0 }))
        return out_of_memory(err, b->origin);
    f->has_key = 0;
    f->key = NULL;
    return LH_OK;
}

static lh_status close_container(builder *b, lh_error *err)
{
    frame *f = &b->frames[b->depth - 1];
    lh_json *j = f->node;
    size_t dup;
    switch (fill_container(b->root, j, kids_from(&b->kids, f->base), b->kids.n - f->base, &dup)) {
    case FILL_OK:
        break;
    case FILL_DUPLICATE: {
        const child *d = &b->kids.items[f->base + dup];
        char shown[200];
        show(shown, sizeof shown, d->key, strlen(d->key));
        return fail(err, b->origin, d->line, "duplicate key '%s'", shown);
    }
    case FILL_TOO_MANY:
        return fail(err, b->origin, 0, "too many items");
    case FILL_NOMEM:
        return out_of_memory(err, b->origin);
    }
    b->kids.n = f->base;
    b->depth--;
    return attach(b, j, err);
}

static lh_status on_scalar(builder *b, yaml_event_t *ev, lh_error *err)
{
    size_t line = ev->start_mark.line + 1;
    const char *s = (const char *)ev->data.scalar.value;
    size_t n = ev->data.scalar.length;
    int quoted = ev->data.scalar.style != YAML_PLAIN_SCALAR_STYLE;
    frame *f = b->depth ? &b->frames[b->depth - 1] : NULL;
    int is_key = f && f->node->type == LH_JSON_OBJECT && !f->has_key;

    if (ev->data.scalar.anchor)
        return fail(err, b->origin, line, "anchors and aliases are not supported");
    if (ev->data.scalar.tag)
        return fail(err, b->origin, line, "tags are not supported");
    char *str = arena_strndup(b->root, s, n);
    if (!str)
        return out_of_memory(err, b->origin);

    if (is_key) {
        if (!quoted && n == 0)
            return fail(err, b->origin, line, "empty key");
        if (strlen(str) != n)
            return fail(err, b->origin, line, "key contains a NUL character");
        f->key = str;
        f->key_line = line;
        f->has_key = 1;
        return LH_OK;
    }
    double num = 0;
    /* plain scalars keep their text too: numbers so that integers read back
     * exactly, and YAML users may want "output: 42" or "yes: true" as text */
    lh_json_type t = quoted ? LH_JSON_STRING : yaml_plain_type(s, n, &num);
    lh_json *j = new_node(b, t, line);
    if (!j)
        return out_of_memory(err, b->origin);
    j->boolean = t == LH_JSON_BOOL && num != 0;
    if (t == LH_JSON_NUMBER)
        j->number = num;
    j->string = str;
    j->len = n;
    return attach(b, j, err);
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
    if (b->depth) {
        frame *f = &b->frames[b->depth - 1];
        if (f->node->type == LH_JSON_OBJECT && !f->has_key)
            return fail(err, b->origin, line, "object keys must be strings");
    }
    if (b->depth >= MAX_DEPTH)
        return fail(err, b->origin, line, "nesting deeper than %d levels", MAX_DEPTH);
    lh_json *j = new_node(b, t, line);
    if (!j)
        return out_of_memory(err, b->origin);
    frame *f = &b->frames[b->depth++];
    f->node = j;
    f->base = b->kids.n;
    f->key = NULL;
    f->has_key = 0;
    return LH_OK;
}

/* libyaml's failure as "origin: line L: problem context". */
static lh_status yaml_failure(const yaml_parser_t *parser, const unsigned char *text, size_t len,
                              const char *origin, lh_error *err)
{
    if (parser->error == YAML_MEMORY_ERROR)
        return out_of_memory(err, origin);
    char shown[256];
    const char *problem = parser->problem ? parser->problem : "syntax error";
    show(shown, sizeof shown, problem, strlen(problem));
    /* at the end of the input libyaml reports the line after the last */
    size_t eline = parser->problem_mark.line + 1, lines = 1;
    for (size_t k = 0; k < len; k++)
        lines += text[k] == '\n';
    if (eline > lines)
        eline = lines;
    if (parser->context)
        return fail(err, origin, eline, "%s %s", shown, parser->context);
    return fail(err, origin, eline, "%s", shown);
}

static lh_status parse_events(const unsigned char *text, size_t len, builder *b, lh_error *err)
{
    yaml_parser_t parser;
    if (!yaml_parser_initialize(&parser))
        return out_of_memory(err, b->origin);
    yaml_parser_set_input_string(&parser, text, len);
    yaml_parser_set_encoding(&parser, YAML_UTF8_ENCODING);
    lh_status st = LH_OK;
    int docs = 0, done = 0;
    while (!done && !st) {
        yaml_event_t ev;
        if (!yaml_parser_parse(&parser, &ev)) {
            st = yaml_failure(&parser, text, len, b->origin, err);
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
    }
    yaml_parser_delete(&parser);
    return st;
}

static lh_status yaml_parse(const char *text, size_t len, const char *origin, lh_json **out,
                            lh_error *err)
{
    *out = NULL;
    if (!text && len)
        return lh_error_set(err, LH_ERR_ARG, "%s: no text", origin ? origin : "JSON");
    builder *b = calloc(1, sizeof *b);
    json_root *root = calloc(1, sizeof *root);
    lh_status st;
    if (!b || !root) {
        st = out_of_memory(err, origin);
        goto done;
    }
    b->root = root;
    b->origin = origin;
    st = parse_events(text ? (const unsigned char *)text : (const unsigned char *)"", len, b, err);
    if (!st && !b->result) {
        root->node.type = LH_JSON_NULL; /* an empty YAML file is null */
        root->node.line = 1;
        b->result = &root->node;
    }
    if (!st) {
        *out = b->result;
        root = NULL;
    }
done:
    if (root)
        lh_json_free(&root->node);
    if (b)
        free(b->kids.items);
    free(b);
    return st;
}

/* ---------------------------------------------------------------- entry points */

lh_status lh_json_parse(const char *text, size_t len, const char *origin, lh_json **out,
                        lh_error *err)
{
    return json_parse(text, len, origin, out, err);
}

lh_status lh_yaml_parse(const char *text, size_t len, const char *origin, lh_json **out,
                        lh_error *err)
{
    return yaml_parse(text, len, origin, out, err);
}

static lh_status parse_file(const char *path, int json, lh_json **out, lh_error *err)
{
    char *text;
    size_t len;
    *out = NULL;
    lh_status st = lh_read_file(path, &text, &len, err);
    if (st)
        return st;
    st = json ? json_parse(text, len, path, out, err) : yaml_parse(text, len, path, out, err);
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

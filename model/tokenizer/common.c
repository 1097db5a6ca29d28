/* model/tokenizer/common.c - helpers every stage of the tokenizer uses:
 * UTF-8 scanning, the hash functions of the vocab and merge tables, the
 * piece and span lists the stages pass along, tokenizer.json field
 * readers, regex compilation (with \s and \w spelled out as the library's
 * Oniguruma reads them) and the GPT-2 byte-to-character tables. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* ------------------------------------------------------------------ UTF-8 */

/* Length of the valid UTF-8 sequence at s[0..n), or 0 if invalid. */
size_t tk_utf8_seq(const unsigned char *s, size_t n, uint32_t *cp)
{
    unsigned char c = s[0];
    if (c < 0x80) { *cp = c; return 1; }
    size_t len;
    uint32_t v, min;
    if (c >= 0xC2 && c <= 0xDF) { len = 2; v = c & 0x1F; min = 0x80; }
    else if (c >= 0xE0 && c <= 0xEF) { len = 3; v = c & 0x0F; min = 0x800; }
    else if (c >= 0xF0 && c <= 0xF4) { len = 4; v = c & 0x07; min = 0x10000; }
    else return 0;
    if (n < len) return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        v = (v << 6) | (s[i] & 0x3F);
    }
    if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) return 0;
    *cp = v;
    return len;
}

int tk_utf8_valid(const char *s, size_t n, size_t *bad)
{
    uint32_t cp;
    for (size_t i = 0; i < n;) {
        size_t l = tk_utf8_seq((const unsigned char *)s + i, n - i, &cp);
        if (!l) { *bad = i; return 0; }
        i += l;
    }
    return 1;
}

/* Bytes to UTF-8 with U+FFFD for each maximal invalid subpart (what Rust's
 * from_utf8_lossy and Python's errors="replace" do). */
void tk_utf8_lossy(lh_sb *sb, const unsigned char *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        size_t l = tk_utf8_seq(s + i, n - i, &cp);
        if (l) { lh_sb_append_n(sb, (const char *)s + i, l); i += l; continue; }
        /* How many bytes form a prefix of some valid sequence. */
        unsigned char c = s[i];
        size_t want = c >= 0xC2 && c <= 0xDF ? 2 : c >= 0xE0 && c <= 0xEF ? 3
                    : c >= 0xF0 && c <= 0xF4 ? 4 : 1;
        size_t k = 1;
        while (k < want && i + k < n) {
            unsigned char d = s[i + k];
            unsigned char lo = 0x80, hi = 0xBF;
            if (k == 1) {
                if (c == 0xE0) lo = 0xA0;
                else if (c == 0xED) hi = 0x9F;
                else if (c == 0xF0) lo = 0x90;
                else if (c == 0xF4) hi = 0x8F;
            }
            if (d < lo || d > hi) break;
            k++;
        }
        lh_sb_append(sb, "\xEF\xBF\xBD");
        i += k;
    }
}

/* Unicode White_Space (what \s means in the Rust regex crate). */
int tk_is_space_cp(uint32_t c)
{
    return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680
        || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F
        || c == 0x205F || c == 0x3000;
}

/* ----------------------------------------------------------- hash tables */

uint64_t tk_hash_bytes(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++) { h ^= (unsigned char)s[i]; h *= 1099511628211ULL; }
    return h ^ (h >> 29);
}

uint64_t tk_hash_u64(uint64_t x)
{
    x ^= x >> 33; x *= 0xff51afd7ed558ccdULL; x ^= x >> 33; x *= 0xc4ceb9fe1a85ec53ULL;
    return x ^ (x >> 33);
}

size_t tk_pow2_at_least(size_t n)
{
    size_t c = 16;
    while (c < n) c <<= 1;
    return c;
}

void tk_pl_push(plist *p, const char *s, size_t n, int orig0, int32_t tok)
{
    if (p->failed) return;
    if (n == 0 && tok < 0) return; /* the library drops empty pieces */
    if (p->n == p->cap) {
        size_t cap = p->cap ? p->cap * 2 : 16;
        piece *v = realloc(p->v, cap * sizeof *v);
        if (!v) { p->failed = 1; return; }
        p->v = v; p->cap = cap;
    }
    p->v[p->n].off = p->buf.len;
    p->v[p->n].len = n;
    p->v[p->n].orig0 = orig0;
    p->v[p->n].tok = tok;
    p->n++;
    lh_sb_append_n(&p->buf, s ? s : "", n);
    if (lh_sb_failed(&p->buf)) p->failed = 1;
}

void tk_sp_push(spans *x, size_t s, size_t e, int m)
{
    if (x->failed) return;
    if (x->n == x->cap) {
        size_t cap = x->cap ? x->cap * 2 : 32;
        span *v = realloc(x->v, cap * sizeof *v);
        if (!v) { x->failed = 1; return; }
        x->v = v; x->cap = cap;
    }
    x->v[x->n++] = (span){ s, e, m };
}

void tk_scratch_release(scratch *s)
{
    pcre2_match_data_free(s->md);
    pcre2_match_context_free(s->mctx);
    pcre2_jit_stack_free(s->jit);
    free(s->m.v); free(s->k.v);
    lh_sb_release(&s->tmp);
    free(s->sym_id); free(s->sym_prev); free(s->sym_next); free(s->heap);
    free(s->uni_best); free(s->uni_path);
    memset(s, 0, sizeof *s);
}

/* ------------------------------------------------------------ loading */

int tk_type_is(const lh_json *j, const char **type)
{
    *type = NULL;
    return lh_json_as_string(lh_json_get(j, "type"), type);
}

/* Optional boolean: absent or null gives def. */
lh_status tk_opt_bool(const lh_tokenizer *t, const lh_json *obj, const char *key, int def,
                      int *out, const char *what, lh_error *err)
{
    const lh_json *v = lh_json_get(obj, key);
    *out = def;
    if (!v || v->type == LH_JSON_NULL) return LH_OK;
    if (!lh_json_as_bool(v, out))
        return lh_error_set(err, LH_ERR_FORMAT, "%s: %s '%s' is not a boolean", t->path, what, key);
    return LH_OK;
}

lh_status tk_req_string(const lh_tokenizer *t, const lh_json *obj, const char *key,
                        const char *what, const char **s, size_t *n, lh_error *err)
{
    const lh_json *v = lh_json_get(obj, key);
    *s = "";
    *n = 0;
    if (!v || v->type != LH_JSON_STRING)
        return lh_error_set(err, LH_ERR_FORMAT, "%s: %s lacks a string '%s'", t->path, what, key);
    *s = v->string;
    *n = v->len;
    return LH_OK;
}

char *tk_dup_n(const char *s, size_t n)
{
    char *d = malloc(n + 1);
    if (d) { if (n) memcpy(d, s, n); d[n] = 0; }
    return d;
}

/* One character as a string (Strip content, Metaspace replacement). */
lh_status tk_one_char(const lh_tokenizer *t, const char *s, size_t n, const char *what, lh_error *err)
{
    uint32_t cp;
    if (n == 0 || tk_utf8_seq((const unsigned char *)s, n, &cp) != n)
        return lh_error_set(err, LH_ERR_FORMAT, "%s: %s must be a single character", t->path, what);
    return LH_OK;
}

/* Unicode White_Space, written as the body of a character class. */
static const char WS_CLASS[] = "\\t\\n\\x0B\\f\\r\\x20\\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}"
                               "\\x{2028}\\x{2029}\\x{202F}\\x{205F}\\x{3000}";

/* Oniguruma's \w: Letter, Mark, Number, Connector_Punctuation. */
static const char ONIG_WORD[] = "\\p{L}\\p{M}\\p{N}\\p{Pc}";

/* PCRE2's \s differs from White_Space (what Oniguruma, which runs the
 * library's Split regexes, uses) in a few places, e.g. U+180E, and its \w
 * leaves out marks; spell \s \S \w \W out so the splits agree with the
 * library. \S and \W inside a class are left alone. */
static void rewrite_space(const char *p, size_t n, lh_sb *out)
{
    int in_class = 0;
    for (size_t i = 0; i < n;) {
        char c = p[i];
        if (c == '\\' && i + 1 < n) {
            char d = p[i + 1];
            if (d == 's' || d == 'w') {
                if (!in_class) lh_sb_append(out, "[");
                lh_sb_append(out, d == 's' ? WS_CLASS : ONIG_WORD);
                if (!in_class) lh_sb_append(out, "]");
                i += 2;
                continue;
            }
            if ((d == 'S' || d == 'W') && !in_class) {
                lh_sb_append(out, "[^");
                lh_sb_append(out, d == 'S' ? WS_CLASS : ONIG_WORD);
                lh_sb_append(out, "]");
                i += 2;
                continue;
            }
            if (d == 'Q') { /* literal up to \E, copied as is */
                size_t j = i + 2;
                while (j < n && !(p[j] == '\\' && j + 1 < n && p[j + 1] == 'E')) j++;
                j = j < n ? j + 2 : n;
                lh_sb_append_n(out, p + i, j - i);
                i = j;
                continue;
            }
            lh_sb_append_n(out, p + i, 2);
            i += 2;
            continue;
        }
        if (!in_class && c == '[') {
            /* "[]" and "[^]" open a class whose first member is ']' */
            size_t j = i + 1;
            if (j < n && p[j] == '^') j++;
            if (j < n && p[j] == ']') j++;
            lh_sb_append_n(out, p + i, j - i);
            in_class = 1;
            i = j;
            continue;
        }
        if (in_class && c == '[' && i + 1 < n && p[i + 1] == ':') { /* [:alpha:] */
            size_t j = i + 2;
            while (j + 1 < n && !(p[j] == ':' && p[j + 1] == ']')) j++;
            j = j + 1 < n ? j + 2 : n;
            lh_sb_append_n(out, p + i, j - i);
            i = j;
            continue;
        }
        if (in_class && c == ']') in_class = 0;
        lh_sb_append_n(out, p + i, 1);
        i++;
    }
}

lh_status tk_compile_re(lh_tokenizer *t, const char *pat, size_t n, pcre2_code **out,
                        const char *what, lh_error *err)
{
    int ec;
    PCRE2_SIZE off;
    lh_sb rw;
    lh_sb_init(&rw);
    rewrite_space(pat, n, &rw);
    lh_sb_append(&rw, "");
    if (lh_sb_failed(&rw)) { lh_sb_release(&rw); return lh_error_set(err, LH_ERR_NOMEM, "%s: out of memory", t->path); }
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)rw.buf, rw.len, PCRE2_UTF | PCRE2_UCP, &ec, &off, NULL);
    lh_sb_release(&rw);
    if (!re) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(ec, msg, sizeof msg);
        return lh_error_set(err, LH_ERR_UNSUPPORTED, "%s: %s regex does not compile: %s",
                            t->path, what, (const char *)msg);
    }
    pcre2_jit_compile(re, PCRE2_JIT_COMPLETE); /* optional: the interpreter is the fallback */
    *out = re;
    return LH_OK;
}

void tk_init_byte_tables(lh_tokenizer *t)
{
    int extra = 0;
    for (int i = 0; i < 324; i++) t->char_byte[i] = -1;
    for (int b = 0; b < 256; b++) {
        int keep = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
        uint32_t cp = keep ? (uint32_t)b : (uint32_t)(256 + extra++);
        /* cp < 0x800: at most two bytes. */
        if (cp < 0x80) { t->byte_char[b][0] = (char)cp; t->byte_char_len[b] = 1; }
        else {
            t->byte_char[b][0] = (char)(0xC0 | (cp >> 6));
            t->byte_char[b][1] = (char)(0x80 | (cp & 0x3F));
            t->byte_char_len[b] = 2;
        }
        t->char_byte[cp] = (int16_t)b;
    }
}

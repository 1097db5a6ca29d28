/* model/tokenizer/charsmap.c - sentencepiece's precompiled_charsmap, the
 * table behind the "Precompiled" normalizer of T5-style tokenizer.json
 * files: base64 of
 *
 *     u32 LE trie_bytes | trie_bytes/4 u32 LE darts-clone units | pool
 *
 * where the double-array trie maps UTF-8 byte strings to offsets into pool,
 * a run of NUL-terminated replacement strings (sentencepiece normalizer.cc
 * EncodePrecompiledCharsMap / DecodePrecompiledCharsMap).
 *
 * Normalization follows sentencepiece (Normalizer::NormalizePrefix): at
 * each position the longest trie match is replaced; without one, one
 * character is copied. The tokenizers library instead walks extended
 * grapheme clusters and replaces a short cluster by its *first* (shortest)
 * match; the two agree wherever clusters are single code points and differ
 * on some multi-code-point clusters (lorahub-tokenize(1) says which). The
 * file is untrusted: every unit index is bounds-checked, every pool offset
 * lands before a NUL we add past the pool's end, the replacements must be
 * valid UTF-8 and a key must end on a character boundary, so the output is
 * valid UTF-8 whatever the table. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

struct tk_charsmap {
    uint32_t *units; size_t n_units; /* [n_units] darts-clone units */
    char *pool; size_t pool_len;     /* [pool_len + 1]: the strings, then a NUL of ours */
};

void tk_charsmap_free(tk_charsmap *m)
{
    if (!m) return;
    free(m->units);
    free(m->pool);
    free(m);
}

static int b64_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+' || c == '-') return 62;
    if (c == '/' || c == '_') return 63;
    return -1;
}

/* Standard (or URL-safe) base64, '=' padding optional; out holds n*3/4+3
 * bytes. Returns the decoded length, or -1 on a bad character. */
static long long b64_decode(const char *s, size_t n, unsigned char *out)
{
    size_t o = 0;
    uint32_t acc = 0;
    int bits = 0;
    size_t i = 0;
    for (; i < n && s[i] != '='; i++) {
        int v = b64_value((unsigned char)s[i]);
        if (v < 0) return -1;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (unsigned char)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    for (; i < n; i++)
        if (s[i] != '=') return -1;
    return (long long)o;
}

lh_status tk_charsmap_parse(const lh_tokenizer *t, const char *b64, size_t n, tk_charsmap **out,
                            lh_error *err)
{
    *out = NULL;
    unsigned char *raw = malloc(n / 4 * 3 + 4);
    if (!raw) return lh_error_set(err, LH_ERR_NOMEM, "%s: out of memory", t->path);
    long long len = b64_decode(b64, n, raw);
    if (len < 0) {
        free(raw);
        return lh_error_set(err, LH_ERR_FORMAT, "%s: normalizer 'Precompiled' precompiled_charsmap is not base64", t->path);
    }
    size_t size = (size_t)len;
    uint32_t trie_bytes = size >= 4 ? (uint32_t)raw[0] | (uint32_t)raw[1] << 8 | (uint32_t)raw[2] << 16
                                       | (uint32_t)raw[3] << 24 : 0;
    if (size < 4 || trie_bytes % 4 || trie_bytes == 0 || trie_bytes > size - 4) {
        free(raw);
        return lh_error_set(err, LH_ERR_FORMAT, "%s: normalizer 'Precompiled' precompiled_charsmap is truncated "
                            "or its trie size is wrong (%zu bytes in all)", t->path, size);
    }
    tk_charsmap *m = calloc(1, sizeof *m);
    if (m) {
        m->n_units = trie_bytes / 4;
        m->units = malloc(m->n_units * sizeof *m->units);
        m->pool_len = size - 4 - trie_bytes;
        m->pool = malloc(m->pool_len + 1);
    }
    if (!m || !m->units || !m->pool) {
        free(raw);
        tk_charsmap_free(m);
        return lh_error_set(err, LH_ERR_NOMEM, "%s: out of memory", t->path);
    }
    for (size_t i = 0; i < m->n_units; i++) {
        const unsigned char *u = raw + 4 + 4 * i;
        m->units[i] = (uint32_t)u[0] | (uint32_t)u[1] << 8 | (uint32_t)u[2] << 16 | (uint32_t)u[3] << 24;
    }
    if (m->pool_len) memcpy(m->pool, raw + 4 + trie_bytes, m->pool_len);
    m->pool[m->pool_len] = 0;
    free(raw);
    /* Every replacement must be valid UTF-8: later stages rely on it. */
    for (size_t i = 0, bad; i < m->pool_len;) {
        size_t l = strlen(m->pool + i);
        if (!tk_utf8_valid(m->pool + i, l, &bad)) {
            tk_charsmap_free(m);
            return lh_error_set(err, LH_ERR_FORMAT, "%s: normalizer 'Precompiled' precompiled_charsmap holds a "
                                "replacement that is not valid UTF-8 (pool byte %zu)", t->path, i + bad);
        }
        i += l + 1;
    }
    *out = m;
    return LH_OK;
}

/* darts-clone's unit fields (darts.h DoubleArrayUnit). */
static inline uint32_t unit_has_leaf(uint32_t u) { return (u >> 8) & 1; }
static inline uint32_t unit_value(uint32_t u) { return u & 0x7FFFFFFFu; }
static inline uint32_t unit_label(uint32_t u) { return u & 0x800000FFu; }
static inline uint32_t unit_offset(uint32_t u) { return (u >> 10) << ((u & (1u << 9)) >> 6); }

/* Longest key of the trie that prefixes s[0..n): its length (0 if none)
 * and the pool offset of its replacement. */
static size_t longest_match(const tk_charsmap *m, const unsigned char *s, size_t n, size_t *pool_off)
{
    const uint32_t *a = m->units;
    size_t best = 0, p = unit_offset(a[0]);
    for (size_t i = 0; i < n; i++) {
        if (s[i] == 0) break;
        p ^= s[i];
        if (p >= m->n_units) break;
        uint32_t u = a[p];
        if (unit_label(u) != s[i]) break;
        p ^= unit_offset(u);
        if (p >= m->n_units) break;
        /* A key ending inside a character (a hostile table) is no match:
         * the output must stay valid UTF-8. */
        if (unit_has_leaf(u) && (i + 1 == n || (s[i + 1] & 0xC0) != 0x80)) {
            best = i + 1;
            *pool_off = unit_value(a[p]);
        }
    }
    return best;
}

/* Valid UTF-8 s[0..n) through the table, appended to out. */
void tk_charsmap_normalize(const tk_charsmap *m, const char *s, size_t n, lh_sb *out)
{
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        size_t off = 0, l = longest_match(m, u + i, n - i, &off);
        if (l) {
            const char *rep = off < m->pool_len ? m->pool + off : "";
            lh_sb_append(out, rep);
            i += l;
        } else {
            l = tk_utf8_len(s + i);
            if (l > n - i) l = n - i;
            lh_sb_append_n(out, s + i, l);
            i += l;
        }
    }
}

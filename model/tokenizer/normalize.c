/* model/tokenizer/normalize.c - the normalizer stage: NFC (tables in
 * nfc_tables.h, built by tools/make_nfc_table.py), Precompiled
 * (sentencepiece's charsmap, charsmap.c), Prepend, Replace (a string or a
 * regex), Strip, and their Sequence, read from tokenizer.json
 * "normalizer". */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#include "nfc_tables.h"

/* Binary search in sorted [first, last, ...] rows of width w; the row or NULL. */
static const uint32_t *range_find(const uint32_t *rows, size_t n, size_t w, uint32_t c)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const uint32_t *r = rows + mid * w;
        if (c < r[0]) hi = mid;
        else if (c > r[1]) lo = mid + 1;
        else return r;
    }
    return NULL;
}

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

/* NFC is the identity on text made only of these characters: the common
 * case skips the full algorithm. */
static int nfc_inert(uint32_t c)
{
    return range_find(&nfc_inert_ranges[0][0], COUNT(nfc_inert_ranges), 2, c) != NULL;
}

static uint32_t nfc_class(uint32_t c)
{
    const uint32_t *r = range_find(&nfc_ccc[0][0], COUNT(nfc_ccc), 3, c);
    return r ? r[2] : 0;
}

enum { H_S = 0xAC00, H_L = 0x1100, H_V = 0x1161, H_T = 0x11A7, H_NV = 21, H_NT = 28, H_NS = 11172 };

static uint32_t nfc_compose_pair(uint32_t a, uint32_t b)
{
    if (a >= H_L && a < H_L + 19 && b >= H_V && b < H_V + H_NV)
        return H_S + ((a - H_L) * H_NV + (b - H_V)) * H_NT;
    if (a >= H_S && a < H_S + H_NS && (a - H_S) % H_NT == 0 && b > H_T && b < H_T + H_NT)
        return a + (b - H_T);
    size_t lo = 0, hi = COUNT(nfc_comp);
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const uint32_t *r = nfc_comp[mid];
        if (a < r[0] || (a == r[0] && b < r[1])) hi = mid;
        else if (a > r[0] || b > r[1]) lo = mid + 1;
        else return r[2];
    }
    return 0;
}

typedef struct cpbuf { uint32_t *v; size_t n, cap; int failed; } cpbuf;

static void cp_push(cpbuf *b, uint32_t c)
{
    if (b->failed) return;
    if (b->n == b->cap) {
        size_t cap = b->cap ? 2 * b->cap : 64;
        uint32_t *v = realloc(b->v, cap * sizeof *v);
        if (!v) { b->failed = 1; return; }
        b->v = v; b->cap = cap;
    }
    b->v[b->n++] = c;
}

typedef struct cc_item { uint32_t ccc, cp; size_t idx; } cc_item;

static int cmp_cc(const void *x, const void *y)
{
    const cc_item *a = x, *b = y;
    if (a->ccc != b->ccc) return a->ccc < b->ccc ? -1 : 1;
    return a->idx < b->idx ? -1 : a->idx > b->idx;
}

/* NFC of valid UTF-8 s[0..n), appended to out (UAX #15: canonical
 * decomposition, canonical ordering, canonical composition). Returns 0 on
 * allocation failure. */
static int nfc_apply(const char *s, size_t n, lh_sb *out)
{
    cpbuf d = { 0 };
    for (size_t i = 0; i < n; i += tk_utf8_len(s + i)) {
        uint32_t c = tk_utf8_cp(s + i);
        if (c >= H_S && c < H_S + H_NS) {
            uint32_t k = c - H_S;
            cp_push(&d, H_L + k / (H_NV * H_NT));
            cp_push(&d, H_V + (k % (H_NV * H_NT)) / H_NT);
            if (k % H_NT) cp_push(&d, H_T + k % H_NT);
            continue;
        }
        size_t lo = 0, hi = COUNT(nfc_decomp);
        const uint32_t *r = NULL;
        while (lo < hi) {
            size_t mid = lo + (hi - lo) / 2;
            if (c < nfc_decomp[mid][0]) hi = mid;
            else if (c > nfc_decomp[mid][0]) lo = mid + 1;
            else { r = nfc_decomp[mid]; break; }
        }
        if (r) for (uint32_t j = 0; j < r[2]; j++) cp_push(&d, nfc_decomp_pool[r[1] + j]);
        else cp_push(&d, c);
    }
    /* Canonical ordering: stable sort of each run of non-starters. */
    for (size_t i = 0; i < d.n && !d.failed;) {
        if (!nfc_class(d.v[i])) { i++; continue; }
        size_t j = i;
        while (j < d.n && nfc_class(d.v[j])) j++;
        if (j - i > 1) {
            cc_item *t = malloc((j - i) * sizeof *t);
            if (!t) { d.failed = 1; break; }
            for (size_t k = i; k < j; k++) t[k - i] = (cc_item){ nfc_class(d.v[k]), d.v[k], k };
            qsort(t, j - i, sizeof *t, cmp_cc);
            for (size_t k = i; k < j; k++) d.v[k] = t[k - i].cp;
            free(t);
        }
        i = j;
    }
    /* Composition: a character joins the last starter unless blocked. */
    size_t m = 0;
    if (d.n && !d.failed) {
        size_t starter = 0;
        uint32_t last = nfc_class(d.v[0]) ? 256 : 0;
        m = 1;
        for (size_t i = 1; i < d.n; i++) {
            uint32_t c = d.v[i], cc = nfc_class(c);
            uint32_t comp = nfc_compose_pair(d.v[starter], c);
            if (comp && (last < cc || last == 0)) { d.v[starter] = comp; continue; }
            if (cc == 0) starter = m;
            last = cc;
            d.v[m++] = c;
        }
    }
    for (size_t i = 0; i < m; i++) {
        uint32_t c = d.v[i];
        char b[4];
        size_t l;
        if (c < 0x80) { b[0] = (char)c; l = 1; }
        else if (c < 0x800) { b[0] = (char)(0xC0 | (c >> 6)); b[1] = (char)(0x80 | (c & 0x3F)); l = 2; }
        else if (c < 0x10000) {
            b[0] = (char)(0xE0 | (c >> 12)); b[1] = (char)(0x80 | ((c >> 6) & 0x3F));
            b[2] = (char)(0x80 | (c & 0x3F)); l = 3;
        } else {
            b[0] = (char)(0xF0 | (c >> 18)); b[1] = (char)(0x80 | ((c >> 12) & 0x3F));
            b[2] = (char)(0x80 | ((c >> 6) & 0x3F)); b[3] = (char)(0x80 | (c & 0x3F)); l = 4;
        }
        lh_sb_append_n(out, b, l);
    }
    int ok = !d.failed;
    free(d.v);
    return ok;
}

/* ------------------------------------------------------------ normalizer */

/* Every match of re in s[0..n) replaced by rep; an empty match moves on by
 * one character, as the library's iterator does. */
static lh_status regex_replace(const lh_tokenizer *t, pcre2_code *re, const char *s, size_t n,
                               const char *rep, size_t rl, lh_sb *out, lh_error *err)
{
    pcre2_match_data *md = pcre2_match_data_create(1, NULL);
    if (!md) return lh_error_set(err, LH_ERR_NOMEM, "%s: out of memory", t->path);
    size_t prev = 0, off = 0;
    lh_status rc = LH_OK;
    while (off <= n) {
        int r = pcre2_match(re, (PCRE2_SPTR)s, n, off, PCRE2_NO_UTF_CHECK, md, NULL);
        if (r == PCRE2_ERROR_NOMATCH) break;
        if (r < 0) {
            PCRE2_UCHAR msg[256];
            pcre2_get_error_message(r, msg, sizeof msg);
            rc = lh_error_set(err, LH_ERR_UNSUPPORTED, "%s: normalizer 'Replace' regex failed on the text: %s",
                              t->path, (const char *)msg);
            break;
        }
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
        size_t ms = ov[0], me = ov[1];
        if (ms > n || me > n || me < ms || ms < prev) break;
        lh_sb_append_n(out, s + prev, ms - prev);
        lh_sb_append_n(out, rep, rl);
        prev = me;
        off = me > ms ? me : (ms < n ? ms + tk_utf8_len(s + ms) : n + 1);
        if (me == ms && ms < n) { /* keep the character the empty match stood before */
            lh_sb_append_n(out, s + ms, off - ms);
            prev = off;
        }
    }
    pcre2_match_data_free(md);
    if (prev < n) lh_sb_append_n(out, s + prev, n - prev);
    return rc;
}

/* s[0..n) without leading (left) and trailing (right) White_Space. */
static void strip_into(const char *s, size_t n, int left, int right, lh_sb *out)
{
    size_t a = 0, e = n;
    while (left && a < e && tk_is_space_cp(tk_utf8_cp(s + a))) a += tk_utf8_len(s + a);
    while (right && e > a) {
        size_t q = e - 1;
        while (q > a && ((unsigned char)s[q] & 0xC0) == 0x80) q--;
        if (!tk_is_space_cp(tk_utf8_cp(s + q))) break;
        e = q;
    }
    lh_sb_append_n(out, s + a, e - a);
}

lh_status tk_normalize(const lh_tokenizer *t, const char *s, size_t n, lh_sb *out, lh_error *err)
{
    lh_sb a, b;
    lh_sb_init(&a); lh_sb_init(&b);
    lh_sb_append_n(&a, s, n);
    for (size_t i = 0; i < t->n_norm; i++) {
        const norm_step *st = &t->norm[i];
        const char *cur = a.buf ? a.buf : "";
        size_t len = a.len;
        b.len = 0;
        if (st->kind == N_PREPEND) {
            if (len) lh_sb_append_n(&b, st->a, st->alen);
            lh_sb_append_n(&b, cur, len);
        } else if (st->kind == N_PRECOMPILED) {
            tk_charsmap_normalize(st->cmap, cur, len, &b);
        } else if (st->kind == N_STRIP) {
            strip_into(cur, len, st->left, st->right, &b);
        } else if (st->kind == N_REPLACE && st->re) {
            lh_status rc = regex_replace(t, st->re, cur, len, st->b, st->blen, &b, err);
            if (rc) { lh_sb_release(&a); lh_sb_release(&b); return rc; }
        } else if (st->kind == N_REPLACE) {
            for (size_t j = 0; j < len;) {
                if (st->alen && j + st->alen <= len && memcmp(cur + j, st->a, st->alen) == 0) {
                    lh_sb_append_n(&b, st->b, st->blen);
                    j += st->alen;
                } else { lh_sb_append_n(&b, cur + j, 1); j++; }
            }
        } else { /* N_NFC */
            size_t j = 0;
            while (j < len && nfc_inert(tk_utf8_cp(cur + j))) j += tk_utf8_len(cur + j);
            if (j == len) lh_sb_append_n(&b, cur, len);
            else if (!nfc_apply(cur, len, &b)) b.failed = 1;
        }
        if (lh_sb_failed(&b)) break;
        lh_sb tmp = a; a = b; b = tmp;
    }
    if (lh_sb_failed(&b)) a.failed = 1;
    lh_sb_release(&b);
    if (lh_sb_failed(&a)) { lh_sb_release(&a); return lh_error_set(err, LH_ERR_NOMEM, "%s: out of memory", t->path); }
    lh_sb_release(out);
    *out = a;
    return LH_OK;
}

lh_status tk_parse_normalizer(lh_tokenizer *t, const lh_json *j, int depth, lh_error *err)
{
    if (!j || j->type == LH_JSON_NULL) return LH_OK;
    const char *type;
    if (j->type != LH_JSON_OBJECT || !tk_type_is(j, &type))
        return lh_error_set(err, LH_ERR_FORMAT, "%s: normalizer is not an object with a 'type'", t->path);
    if (depth > 16) return lh_error_set(err, LH_ERR_FORMAT, "%s: normalizers nested too deeply", t->path);
    if (strcmp(type, "Sequence") == 0) {
        const lh_json *arr = lh_json_get(j, "normalizers");
        if (!arr || arr->type != LH_JSON_ARRAY)
            return lh_error_set(err, LH_ERR_FORMAT, "%s: normalizer 'Sequence' lacks 'normalizers'", t->path);
        for (size_t i = 0; i < arr->len; i++) {
            lh_status rc = tk_parse_normalizer(t, arr->items[i], depth + 1, err);
            if (rc) return rc;
        }
        return LH_OK;
    }
    norm_step st = { 0 };
    const char *s, *c;
    size_t sn, cn;
    lh_status rc;
    if (strcmp(type, "Prepend") == 0) {
        if ((rc = tk_req_string(t, j, "prepend", "normalizer 'Prepend'", &s, &sn, err))) return rc;
        st.kind = N_PREPEND;
        st.a = tk_dup_n(s, sn); st.alen = sn;
    } else if (strcmp(type, "Replace") == 0) {
        const lh_json *pat = lh_json_get(j, "pattern");
        int is_re = lh_json_get(pat, "Regex") != NULL;
        if ((rc = tk_req_string(t, pat, is_re ? "Regex" : "String", "normalizer 'Replace' pattern", &s, &sn, err)))
            return rc;
        if ((rc = tk_req_string(t, j, "content", "normalizer 'Replace'", &c, &cn, err))) return rc;
        if (sn == 0) return lh_error_set(err, LH_ERR_FORMAT, "%s: normalizer 'Replace' has an empty pattern", t->path);
        if (is_re && (rc = tk_compile_re(t, s, sn, &st.re, "normalizer 'Replace'", err))) return rc;
        st.kind = N_REPLACE;
        st.a = tk_dup_n(s, sn); st.alen = sn;
        st.b = tk_dup_n(c, cn); st.blen = cn;
        if (!st.b) { free(st.a); st.a = NULL; }
    } else if (strcmp(type, "NFC") == 0) {
        st.kind = N_NFC;
    } else if (strcmp(type, "Precompiled") == 0) {
        const lh_json *cm = lh_json_get(j, "precompiled_charsmap");
        st.kind = N_PRECOMPILED;
        /* An empty or null table maps nothing, as in the library. */
        if (!cm || cm->type == LH_JSON_NULL || (cm->type == LH_JSON_STRING && cm->len == 0)) return LH_OK;
        if ((rc = tk_req_string(t, j, "precompiled_charsmap", "normalizer 'Precompiled'", &s, &sn, err))) return rc;
        if ((rc = tk_charsmap_parse(t, s, sn, &st.cmap, err))) return rc;
    } else if (strcmp(type, "Strip") == 0) {
        st.kind = N_STRIP;
        if ((rc = tk_opt_bool(t, j, "strip_left", 1, &st.left, "normalizer 'Strip'", err))) return rc;
        if ((rc = tk_opt_bool(t, j, "strip_right", 1, &st.right, "normalizer 'Strip'", err))) return rc;
    } else {
        return lh_error_set(err, LH_ERR_UNSUPPORTED, "%s: unsupported normalizer '%s'", t->path, type);
    }
    int needs_a = st.kind == N_PREPEND || st.kind == N_REPLACE;
    if (needs_a && !st.a) { pcre2_code_free(st.re); return lh_error_set(err, LH_ERR_NOMEM, "%s: out of memory", t->path); }
    norm_step *v = realloc(t->norm, (t->n_norm + 1) * sizeof *v);
    if (!v) {
        free(st.a); free(st.b); pcre2_code_free(st.re); tk_charsmap_free(st.cmap);
        return lh_error_set(err, LH_ERR_NOMEM, "%s: out of memory", t->path);
    }
    t->norm = v;
    t->norm[t->n_norm++] = st;
    return LH_OK;
}

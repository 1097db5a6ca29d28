/* model/tokenizer/decode.c - ids back to text: token strings through the
 * decoder chain (ByteLevel, Metaspace, Replace, ByteFallback, Fuse, Strip)
 * read from tokenizer.json "decoder", then lossy UTF-8. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* ------------------------------------------------------------ decode */

typedef struct tvec { lh_sb *v; size_t n, cap; int failed; } tvec;

static lh_sb *tv_add(tvec *x)
{
    if (x->failed) return NULL;
    if (x->n == x->cap) {
        size_t cap = x->cap ? x->cap * 2 : 32;
        lh_sb *v = realloc(x->v, cap * sizeof *v);
        if (!v) { x->failed = 1; return NULL; }
        x->v = v; x->cap = cap;
    }
    lh_sb *s = &x->v[x->n++];
    lh_sb_init(s);
    return s;
}

static void tv_release(tvec *x)
{
    for (size_t i = 0; i < x->n; i++) lh_sb_release(&x->v[i]);
    free(x->v);
    memset(x, 0, sizeof *x);
}

static void tv_append(tvec *x, const char *s, size_t n)
{
    lh_sb *d = tv_add(x);
    if (!d) return;
    lh_sb_append_n(d, s, n);
    if (!d->buf) lh_sb_append(d, ""); /* keep buf non-NULL */
    if (lh_sb_failed(d)) x->failed = 1;
}

static const char *sb_str(const lh_sb *s) { return s->buf ? s->buf : ""; }

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Replace every occurrence of pat with rep in s[0..n). */
static void replace_into(lh_sb *out, const char *s, size_t n, const char *pat, size_t pl,
                         const char *rep, size_t rl)
{
    for (size_t j = 0; j < n;) {
        if (pl && j + pl <= n && memcmp(s + j, pat, pl) == 0) {
            lh_sb_append_n(out, rep, rl);
            j += pl;
        } else { lh_sb_append_n(out, s + j, 1); j++; }
    }
    if (!out->buf) lh_sb_append(out, "");
}

static void dec_step_apply(const lh_tokenizer *t, const dec_step *st, const tvec *in, tvec *out)
{
    switch (st->kind) {
    case D_BYTELEVEL: {
        lh_sb bytes;
        lh_sb_init(&bytes);
        for (size_t i = 0; i < in->n; i++) {
            const char *s = sb_str(&in->v[i]);
            size_t n = in->v[i].len, j;
            int all = 1;
            for (j = 0; j < n && all; j += tk_utf8_len(s + j)) {
                uint32_t cp = tk_utf8_cp(s + j);
                all = cp < 324 && t->char_byte[cp] >= 0;
            }
            if (!all) { lh_sb_append_n(&bytes, s, n); continue; }
            for (j = 0; j < n; j += tk_utf8_len(s + j)) {
                char b = (char)t->char_byte[tk_utf8_cp(s + j)];
                lh_sb_append_n(&bytes, &b, 1);
            }
        }
        lh_sb *d = tv_add(out);
        if (d) {
            tk_utf8_lossy(d, (const unsigned char *)sb_str(&bytes), bytes.len);
            if (!d->buf) lh_sb_append(d, "");
            if (lh_sb_failed(d) || lh_sb_failed(&bytes)) out->failed = 1;
        }
        lh_sb_release(&bytes);
        break;
    }
    case D_METASPACE:
        for (size_t i = 0; i < in->n; i++) {
            lh_sb *d = tv_add(out);
            if (!d) break;
            int drop = i == 0 && st->scheme != S_NEVER;
            replace_into(d, sb_str(&in->v[i]), in->v[i].len, st->a, st->alen, " ", drop ? 0 : 1);
            if (lh_sb_failed(d)) out->failed = 1;
        }
        break;
    case D_REPLACE:
        for (size_t i = 0; i < in->n; i++) {
            lh_sb *d = tv_add(out);
            if (!d) break;
            replace_into(d, sb_str(&in->v[i]), in->v[i].len, st->a, st->alen, st->b, st->blen);
            if (lh_sb_failed(d)) out->failed = 1;
        }
        break;
    case D_BYTEFALLBACK: {
        unsigned char *pend = malloc(in->n + 1);
        size_t np = 0;
        if (!pend) { out->failed = 1; break; }
        for (size_t i = 0; i <= in->n; i++) {
            int byte = -1;
            if (i < in->n) {
                const char *s = sb_str(&in->v[i]);
                if (in->v[i].len == 6 && memcmp(s, "<0x", 3) == 0 && s[5] == '>'
                    && hexval(s[3]) >= 0 && hexval(s[4]) >= 0)
                    byte = hexval(s[3]) * 16 + hexval(s[4]);
            }
            if (byte >= 0) { pend[np++] = (unsigned char)byte; continue; }
            if (np) {
                size_t bad;
                if (tk_utf8_valid((const char *)pend, np, &bad)) tv_append(out, (const char *)pend, np);
                else for (size_t k = 0; k < np; k++) tv_append(out, "\xEF\xBF\xBD", 3);
                np = 0;
            }
            if (i < in->n) tv_append(out, sb_str(&in->v[i]), in->v[i].len);
        }
        free(pend);
        break;
    }
    case D_FUSE: {
        lh_sb *d = tv_add(out);
        if (!d) break;
        lh_sb_append(d, "");
        for (size_t i = 0; i < in->n; i++) lh_sb_append_n(d, sb_str(&in->v[i]), in->v[i].len);
        if (lh_sb_failed(d)) out->failed = 1;
        break;
    }
    case D_STRIP:
        for (size_t i = 0; i < in->n; i++) {
            const char *s = sb_str(&in->v[i]);
            size_t n = in->v[i].len, a = 0, e = n;
            for (long k = 0; k < st->start && a < n; k++) {
                size_t l = tk_utf8_len(s + a);
                if (l == st->alen && memcmp(s + a, st->a, l) == 0) a += l; else break;
            }
            for (long k = 0; k < st->stop && e > a; k++) {
                size_t q = e - 1;
                while (q > a && ((unsigned char)s[q] & 0xC0) == 0x80) q--;
                if (e - q == st->alen && memcmp(s + q, st->a, st->alen) == 0) e = q; else break;
            }
            tv_append(out, s + a, e - a);
        }
        break;
    }
}

lh_status lh_tokenizer_decode(const lh_tokenizer *t, const int32_t *ids, size_t n,
                              int skip_special, char **out, lh_error *err)
{
    if (!t || !out || (n && !ids)) return lh_error_set(err, LH_ERR_ARG, "lh_tokenizer_decode: NULL argument");
    *out = NULL;
    tvec a = { 0 }, b = { 0 };
    for (size_t i = 0; i < n; i++) {
        int32_t id = ids[i];
        /* Unknown ids are dropped, as the tokenizers library does: models
         * often pad the embedding past the tokenizer's vocab. */
        if (id < 0 || id >= t->n_ids) continue;
        if (t->added_of[id] >= 0) {
            const added_tok *ad = &t->added[t->added_of[id]];
            if (skip_special && ad->special) continue;
            tv_append(&a, ad->content, ad->len);
        } else if (t->model_str[id]) {
            tv_append(&a, t->model_str[id], t->model_len[id]);
        }
    }
    lh_sb res;
    lh_sb_init(&res);
    if (!t->has_decoder) {
        for (size_t i = 0; i < a.n; i++) {
            if (i) lh_sb_append(&res, " ");
            lh_sb_append_n(&res, sb_str(&a.v[i]), a.v[i].len);
        }
    } else {
        for (size_t k = 0; k < t->n_dec && !a.failed; k++) {
            dec_step_apply(t, &t->dec[k], &a, &b);
            tv_release(&a);
            a = b;
            memset(&b, 0, sizeof b);
        }
        for (size_t i = 0; i < a.n; i++) lh_sb_append_n(&res, sb_str(&a.v[i]), a.v[i].len);
    }
    lh_sb_append(&res, "");
    int failed = a.failed || lh_sb_failed(&res);
    tv_release(&a);
    if (failed) {
        lh_sb_release(&res);
        return lh_error_set(err, LH_ERR_NOMEM, "%s: out of memory", t->path);
    }
    *out = lh_sb_detach(&res);
    return LH_OK;
}

lh_status tk_parse_decoder(lh_tokenizer *t, const lh_json *j, int depth, lh_error *err)
{
    if (!j || j->type == LH_JSON_NULL) return LH_OK;
    const char *type;
    if (j->type != LH_JSON_OBJECT || !tk_type_is(j, &type))
        return lh_error_set(err, LH_ERR_FORMAT, "%s: decoder is not an object with a 'type'", t->path);
    if (depth > 16) return lh_error_set(err, LH_ERR_FORMAT, "%s: decoders nested too deeply", t->path);
    t->has_decoder = 1;
    lh_status rc;
    dec_step st;
    memset(&st, 0, sizeof st);
    const char *s, *c;
    size_t sn, cn;
    if (strcmp(type, "Sequence") == 0) {
        const lh_json *arr = lh_json_get(j, "decoders");
        if (!arr || arr->type != LH_JSON_ARRAY)
            return lh_error_set(err, LH_ERR_FORMAT, "%s: decoder 'Sequence' lacks 'decoders'", t->path);
        for (size_t i = 0; i < arr->len; i++)
            if ((rc = tk_parse_decoder(t, arr->items[i], depth + 1, err))) return rc;
        return LH_OK;
    } else if (strcmp(type, "ByteLevel") == 0) {
        st.kind = D_BYTELEVEL;
    } else if (strcmp(type, "ByteFallback") == 0) {
        st.kind = D_BYTEFALLBACK;
    } else if (strcmp(type, "Fuse") == 0) {
        st.kind = D_FUSE;
    } else if (strcmp(type, "Metaspace") == 0) {
        st.kind = D_METASPACE;
        if ((rc = tk_req_string(t, j, "replacement", "decoder 'Metaspace'", &s, &sn, err))) return rc;
        if ((rc = tk_one_char(t, s, sn, "decoder 'Metaspace' replacement", err))) return rc;
        if ((rc = tk_parse_scheme(t, j, "decoder 'Metaspace'", &st.scheme, err))) return rc;
        st.a = tk_dup_n(s, sn); st.alen = sn;
        if (!st.a) return lh_error_set(err, LH_ERR_NOMEM, "%s: out of memory", t->path);
    } else if (strcmp(type, "Replace") == 0) {
        const lh_json *pat = lh_json_get(j, "pattern");
        if (lh_json_get(pat, "Regex"))
            return lh_error_set(err, LH_ERR_UNSUPPORTED, "%s: unsupported decoder 'Replace' with a Regex pattern", t->path);
        if ((rc = tk_req_string(t, pat, "String", "decoder 'Replace' pattern", &s, &sn, err))) return rc;
        if ((rc = tk_req_string(t, j, "content", "decoder 'Replace'", &c, &cn, err))) return rc;
        st.kind = D_REPLACE;
        st.a = tk_dup_n(s, sn); st.alen = sn;
        st.b = tk_dup_n(c, cn); st.blen = cn;
        if (!st.a || !st.b) { free(st.a); free(st.b); return lh_error_set(err, LH_ERR_NOMEM, "%s: out of memory", t->path); }
    } else if (strcmp(type, "Strip") == 0) {
        long long a, b;
        if ((rc = tk_req_string(t, j, "content", "decoder 'Strip'", &s, &sn, err))) return rc;
        if ((rc = tk_one_char(t, s, sn, "decoder 'Strip' content", err))) return rc;
        if (!lh_json_as_int64(lh_json_get(j, "start"), &a) || !lh_json_as_int64(lh_json_get(j, "stop"), &b)
            || a < 0 || b < 0 || a > 1000000 || b > 1000000)
            return lh_error_set(err, LH_ERR_FORMAT, "%s: decoder 'Strip' needs small non-negative 'start' and 'stop'", t->path);
        st.kind = D_STRIP;
        st.start = (long)a; st.stop = (long)b;
        st.a = tk_dup_n(s, sn); st.alen = sn;
        if (!st.a) return lh_error_set(err, LH_ERR_NOMEM, "%s: out of memory", t->path);
    } else {
        return lh_error_set(err, LH_ERR_UNSUPPORTED, "%s: unsupported decoder '%s'", t->path, type);
    }
    dec_step *v = realloc(t->dec, (t->n_dec + 1) * sizeof *v);
    if (!v) { free(st.a); free(st.b); return lh_error_set(err, LH_ERR_NOMEM, "%s: out of memory", t->path); }
    t->dec = v;
    t->dec[t->n_dec++] = st;
    return LH_OK;
}

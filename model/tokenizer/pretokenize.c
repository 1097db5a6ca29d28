/* model/tokenizer/pretokenize.c - the pre-tokenizer stage: ByteLevel,
 * Split (regex or literal, every split behaviour), WhitespaceSplit and
 * Metaspace, and their
 * Sequence, read from tokenizer.json "pre_tokenizer". Each turns one
 * normalized piece into the words the model encodes. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static const char GPT2_PATTERN[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

/* Regex matches over s[0..n) as spans covering s. */
static lh_status regex_spans(const lh_tokenizer *t, scratch *sc, pcre2_code *re, const char *s,
                             size_t n, spans *out, lh_error *err)
{
    out->n = 0;
    size_t prev = 0, off = 0;
    while (off <= n) {
        int rc = pcre2_match(re, (PCRE2_SPTR)s, n, off, PCRE2_NO_UTF_CHECK, sc->md, sc->mctx);
        if (rc == PCRE2_ERROR_JIT_STACKLIMIT && !sc->jit) {
            /* Rare: made only when the default 32 KiB machine stack is too
             * small, since mapping a JIT stack costs more than most calls. */
            sc->jit = pcre2_jit_stack_create(32 * 1024, 8 * 1024 * 1024, NULL);
            if (sc->jit) {
                pcre2_jit_stack_assign(sc->mctx, NULL, sc->jit);
                continue;
            }
        }
        if (rc == PCRE2_ERROR_NOMATCH) break;
        if (rc < 0) {
            PCRE2_UCHAR msg[256];
            pcre2_get_error_message(rc, msg, sizeof msg);
            return lh_error_set(err, LH_ERR_UNSUPPORTED, "%s: pre-tokenizer regex failed on the text: %s",
                                t->path, (const char *)msg);
        }
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(sc->md);
        size_t ms = ov[0], me = ov[1];
        if (ms > n || me > n || me < ms) break; /* \K tricks: not a usable match */
        if (ms != prev) tk_sp_push(out, prev, ms, 0);
        tk_sp_push(out, ms, me, 1);
        prev = me;
        /* An empty match moves on by one character, as Oniguruma's iterator does. */
        off = me > ms ? me : (ms < n ? ms + tk_utf8_len(s + ms) : n + 1);
    }
    if (prev != n) tk_sp_push(out, prev, n, 0);
    if (out->failed) return lh_error_set(err, LH_ERR_NOMEM, "%s: out of memory", t->path);
    return LH_OK;
}

static void literal_spans(const char *s, size_t n, const char *lit, size_t ln, spans *out)
{
    out->n = 0;
    size_t prev = 0;
    if (ln == 0) { if (n) tk_sp_push(out, 0, n, 0); return; }
    for (size_t i = 0; i + ln <= n;) {
        if (memcmp(s + i, lit, ln) == 0) {
            if (i != prev) tk_sp_push(out, prev, i, 0);
            tk_sp_push(out, i, i + ln, 1);
            i += ln; prev = i;
        } else i++;
    }
    if (prev != n) tk_sp_push(out, prev, n, 0);
}

/* Apply a split behaviour: keep[] gets the spans that survive, in order. */
static void apply_behavior(const spans *m, int behavior, spans *keep)
{
    keep->n = 0;
    int prevm = 0;
    switch (behavior) {
    case B_ISOLATED:
        for (size_t i = 0; i < m->n; i++) tk_sp_push(keep, m->v[i].s, m->v[i].e, 0);
        break;
    case B_REMOVED:
        for (size_t i = 0; i < m->n; i++) tk_sp_push(keep, m->v[i].s, m->v[i].e, m->v[i].m);
        break;
    case B_CONTIG:
        for (size_t i = 0; i < m->n; i++) {
            if (m->v[i].m == prevm && keep->n) keep->v[keep->n - 1].e = m->v[i].e;
            else tk_sp_push(keep, m->v[i].s, m->v[i].e, 0);
            prevm = m->v[i].m;
        }
        break;
    case B_PREV:
        for (size_t i = 0; i < m->n; i++) {
            if (m->v[i].m && !prevm && keep->n) keep->v[keep->n - 1].e = m->v[i].e;
            else tk_sp_push(keep, m->v[i].s, m->v[i].e, 0);
            prevm = m->v[i].m;
        }
        break;
    case B_NEXT:
        /* Walk backwards so a delimiter joins the piece after it. */
        for (size_t i = m->n; i-- > 0;) {
            if (m->v[i].m && !prevm && keep->n) keep->v[keep->n - 1].s = m->v[i].s;
            else tk_sp_push(keep, m->v[i].s, m->v[i].e, 0);
            prevm = m->v[i].m;
        }
        for (size_t i = 0, j = keep->n; i + 1 < j; i++, j--) {
            span tmp = keep->v[i]; keep->v[i] = keep->v[j - 1]; keep->v[j - 1] = tmp;
        }
        break;
    }
}

static void push_kept(plist *out, const char *s, const spans *keep, int orig0)
{
    for (size_t i = 0; i < keep->n; i++)
        if (!keep->v[i].m && keep->v[i].e > keep->v[i].s)
            tk_pl_push(out, s + keep->v[i].s, keep->v[i].e - keep->v[i].s,
                    orig0 && keep->v[i].s == 0, -1);
}

/* ------------------------------------------------------------ pre-tokenizers */

static void put_byte_chars(const lh_tokenizer *t, lh_sb *sb, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        lh_sb_append_n(sb, t->byte_char[c], t->byte_char_len[c]);
    }
}

lh_status tk_pre_one(const lh_tokenizer *t, scratch *sc, const pre_step *st, const char *s,
                     size_t n, int orig0, plist *out, lh_error *err)
{
    lh_status rc;
    lh_sb *tmp = &sc->tmp;
    switch (st->kind) {
    case P_BYTELEVEL: {
        tmp->len = 0;
        if (st->add_prefix_space && !(n && s[0] == ' ')) lh_sb_append(tmp, " ");
        lh_sb_append_n(tmp, s, n);
        if (lh_sb_failed(tmp)) return lh_error_set(err, LH_ERR_NOMEM, "%s: out of memory", t->path);
        const char *x = tmp->buf ? tmp->buf : "";
        size_t xn = tmp->len;
        lh_sb mapped;
        lh_sb_init(&mapped);
        if (st->use_regex) {
            if ((rc = regex_spans(t, sc, st->re, x, xn, &sc->m, err))) return rc;
            for (size_t i = 0; i < sc->m.n; i++) {
                const span *p = &sc->m.v[i];
                if (p->e <= p->s) continue;
                mapped.len = 0;
                put_byte_chars(t, &mapped, x + p->s, p->e - p->s);
                tk_pl_push(out, mapped.buf, mapped.len, orig0 && p->s == 0, -1);
            }
        } else if (xn) {
            put_byte_chars(t, &mapped, x, xn);
            tk_pl_push(out, mapped.buf, mapped.len, orig0, -1);
        }
        int failed = lh_sb_failed(&mapped);
        lh_sb_release(&mapped);
        if (failed) return lh_error_set(err, LH_ERR_NOMEM, "%s: out of memory", t->path);
        return LH_OK;
    }
    case P_SPLIT:
        if (st->re) {
            if ((rc = regex_spans(t, sc, st->re, s, n, &sc->m, err))) return rc;
        } else literal_spans(s, n, st->lit, st->litlen, &sc->m);
        if (st->invert)
            for (size_t i = 0; i < sc->m.n; i++) sc->m.v[i].m = !sc->m.v[i].m;
        apply_behavior(&sc->m, st->behavior, &sc->k);
        if (sc->m.failed || sc->k.failed) return lh_error_set(err, LH_ERR_NOMEM, "%s: out of memory", t->path);
        push_kept(out, s, &sc->k, orig0);
        return LH_OK;
    case P_WSSPLIT:
        for (size_t i = 0; i < n;) {
            while (i < n && tk_is_space_cp(tk_utf8_cp(s + i))) i += tk_utf8_len(s + i);
            size_t w = i;
            while (i < n && !tk_is_space_cp(tk_utf8_cp(s + i))) i += tk_utf8_len(s + i);
            if (i > w) tk_pl_push(out, s + w, i - w, orig0 && w == 0, -1);
        }
        if (out->failed) return lh_error_set(err, LH_ERR_NOMEM, "%s: out of memory", t->path);
        return LH_OK;
    case P_METASPACE: {
        tmp->len = 0;
        for (size_t i = 0; i < n; i++) {
            if (s[i] == ' ') lh_sb_append_n(tmp, st->lit, st->litlen);
            else lh_sb_append_n(tmp, s + i, 1);
        }
        int starts = tmp->len >= st->litlen && memcmp(tmp->buf, st->lit, st->litlen) == 0;
        if (!starts && (st->scheme == S_ALWAYS || (st->scheme == S_FIRST && orig0))) {
            lh_sb pre;
            lh_sb_init(&pre);
            lh_sb_append_n(&pre, st->lit, st->litlen);
            lh_sb_append_n(&pre, tmp->buf ? tmp->buf : "", tmp->len);
            lh_sb_release(tmp);
            *tmp = pre;
        }
        if (lh_sb_failed(tmp)) return lh_error_set(err, LH_ERR_NOMEM, "%s: out of memory", t->path);
        const char *x = tmp->buf ? tmp->buf : "";
        if (!st->split) { tk_pl_push(out, x, tmp->len, orig0, -1); return LH_OK; }
        literal_spans(x, tmp->len, st->lit, st->litlen, &sc->m);
        apply_behavior(&sc->m, B_NEXT, &sc->k);
        if (sc->m.failed || sc->k.failed) return lh_error_set(err, LH_ERR_NOMEM, "%s: out of memory", t->path);
        push_kept(out, x, &sc->k, orig0);
        return LH_OK;
    }
    }
    return LH_OK;
}

static lh_status push_pre(lh_tokenizer *t, pre_step *st, lh_error *err)
{
    pre_step *v = realloc(t->pre, (t->n_pre + 1) * sizeof *v);
    if (!v) {
        pcre2_code_free(st->re); free(st->lit);
        return lh_error_set(err, LH_ERR_NOMEM, "%s: out of memory", t->path);
    }
    t->pre = v;
    t->pre[t->n_pre++] = *st;
    return LH_OK;
}

lh_status tk_parse_scheme(lh_tokenizer *t, const lh_json *j, const char *what, int *scheme, lh_error *err)
{
    const char *s;
    const lh_json *v = lh_json_get(j, "prepend_scheme");
    if (!v || v->type == LH_JSON_NULL) {
        int aps;
        lh_status rc = tk_opt_bool(t, j, "add_prefix_space", 1, &aps, what, err);
        if (rc) return rc;
        *scheme = aps ? S_ALWAYS : S_NEVER;
        return LH_OK;
    }
    if (!lh_json_as_string(v, &s))
        return lh_error_set(err, LH_ERR_FORMAT, "%s: %s 'prepend_scheme' is not a string", t->path, what);
    if (strcmp(s, "always") == 0) *scheme = S_ALWAYS;
    else if (strcmp(s, "first") == 0) *scheme = S_FIRST;
    else if (strcmp(s, "never") == 0) *scheme = S_NEVER;
    else return lh_error_set(err, LH_ERR_UNSUPPORTED, "%s: unsupported %s prepend_scheme '%s'", t->path, what, s);
    return LH_OK;
}

lh_status tk_parse_pre(lh_tokenizer *t, const lh_json *j, int depth, lh_error *err)
{
    if (!j || j->type == LH_JSON_NULL) return LH_OK;
    const char *type;
    if (j->type != LH_JSON_OBJECT || !tk_type_is(j, &type))
        return lh_error_set(err, LH_ERR_FORMAT, "%s: pre-tokenizer is not an object with a 'type'", t->path);
    if (depth > 16) return lh_error_set(err, LH_ERR_FORMAT, "%s: pre-tokenizers nested too deeply", t->path);
    lh_status rc;
    pre_step st;
    memset(&st, 0, sizeof st);
    if (strcmp(type, "Sequence") == 0) {
        const lh_json *arr = lh_json_get(j, "pretokenizers");
        if (!arr || arr->type != LH_JSON_ARRAY)
            return lh_error_set(err, LH_ERR_FORMAT, "%s: pre-tokenizer 'Sequence' lacks 'pretokenizers'", t->path);
        for (size_t i = 0; i < arr->len; i++)
            if ((rc = tk_parse_pre(t, arr->items[i], depth + 1, err))) return rc;
        return LH_OK;
    }
    if (strcmp(type, "ByteLevel") == 0) {
        st.kind = P_BYTELEVEL;
        if ((rc = tk_opt_bool(t, j, "add_prefix_space", 1, &st.add_prefix_space, "pre-tokenizer 'ByteLevel'", err))) return rc;
        if ((rc = tk_opt_bool(t, j, "use_regex", 1, &st.use_regex, "pre-tokenizer 'ByteLevel'", err))) return rc;
        if (st.use_regex && (rc = tk_compile_re(t, GPT2_PATTERN, sizeof GPT2_PATTERN - 1, &st.re, "ByteLevel", err)))
            return rc;
        return push_pre(t, &st, err);
    }
    if (strcmp(type, "Split") == 0) {
        const lh_json *pat = lh_json_get(j, "pattern");
        const char *s, *beh;
        size_t sn;
        st.kind = P_SPLIT;
        if (lh_json_get(pat, "Regex")) {
            if ((rc = tk_req_string(t, pat, "Regex", "pre-tokenizer 'Split' pattern", &s, &sn, err))) return rc;
            if ((rc = tk_compile_re(t, s, sn, &st.re, "pre-tokenizer 'Split'", err))) return rc;
        } else {
            if ((rc = tk_req_string(t, pat, "String", "pre-tokenizer 'Split' pattern", &s, &sn, err))) return rc;
            if (!(st.lit = tk_dup_n(s, sn))) return lh_error_set(err, LH_ERR_NOMEM, "%s: out of memory", t->path);
            st.litlen = sn;
        }
        if (!lh_json_as_string(lh_json_get(j, "behavior"), &beh)) beh = "";
        if (strcmp(beh, "Removed") == 0) st.behavior = B_REMOVED;
        else if (strcmp(beh, "Isolated") == 0) st.behavior = B_ISOLATED;
        else if (strcmp(beh, "MergedWithPrevious") == 0) st.behavior = B_PREV;
        else if (strcmp(beh, "MergedWithNext") == 0) st.behavior = B_NEXT;
        else if (strcmp(beh, "Contiguous") == 0) st.behavior = B_CONTIG;
        else {
            pcre2_code_free(st.re); free(st.lit);
            return lh_error_set(err, LH_ERR_UNSUPPORTED, "%s: unsupported pre-tokenizer 'Split' behavior '%s'", t->path, beh);
        }
        if ((rc = tk_opt_bool(t, j, "invert", 0, &st.invert, "pre-tokenizer 'Split'", err))) {
            pcre2_code_free(st.re); free(st.lit);
            return rc;
        }
        return push_pre(t, &st, err);
    }
    if (strcmp(type, "Metaspace") == 0) {
        const char *s;
        size_t sn;
        st.kind = P_METASPACE;
        if ((rc = tk_req_string(t, j, "replacement", "pre-tokenizer 'Metaspace'", &s, &sn, err))) return rc;
        if ((rc = tk_one_char(t, s, sn, "pre-tokenizer 'Metaspace' replacement", err))) return rc;
        if ((rc = tk_parse_scheme(t, j, "pre-tokenizer 'Metaspace'", &st.scheme, err))) return rc;
        if ((rc = tk_opt_bool(t, j, "split", 1, &st.split, "pre-tokenizer 'Metaspace'", err))) return rc;
        if (!(st.lit = tk_dup_n(s, sn))) return lh_error_set(err, LH_ERR_NOMEM, "%s: out of memory", t->path);
        st.litlen = sn;
        return push_pre(t, &st, err);
    }
    if (strcmp(type, "WhitespaceSplit") == 0) {
        st.kind = P_WSSPLIT;
        return push_pre(t, &st, err);
    }
    if (strcmp(type, "Digits") == 0) {
        int individual;
        if ((rc = tk_opt_bool(t, j, "individual_digits", 0, &individual, "pre-tokenizer 'Digits'", err))) return rc;
        st.kind = P_SPLIT;
        st.behavior = individual ? B_ISOLATED : B_CONTIG;
        if ((rc = tk_compile_re(t, "\\p{N}", 5, &st.re, "Digits", err))) return rc;
        return push_pre(t, &st, err);
    }
    if (strcmp(type, "Punctuation") == 0) {
        static const char pat[] = "[\\p{P}!-/:-@\\[-`{-~]";
        const char *beh;
        st.kind = P_SPLIT;
        if (!lh_json_as_string(lh_json_get(j, "behavior"), &beh)) beh = "Isolated";
        if (strcmp(beh, "Removed") == 0) st.behavior = B_REMOVED;
        else if (strcmp(beh, "Isolated") == 0) st.behavior = B_ISOLATED;
        else if (strcmp(beh, "MergedWithPrevious") == 0) st.behavior = B_PREV;
        else if (strcmp(beh, "MergedWithNext") == 0) st.behavior = B_NEXT;
        else if (strcmp(beh, "Contiguous") == 0) st.behavior = B_CONTIG;
        else return lh_error_set(err, LH_ERR_UNSUPPORTED, "%s: unsupported pre-tokenizer 'Punctuation' behavior '%s'", t->path, beh);
        if ((rc = tk_compile_re(t, pat, sizeof pat - 1, &st.re, "Punctuation", err))) return rc;
        return push_pre(t, &st, err);
    }
    return lh_error_set(err, LH_ERR_UNSUPPORTED, "%s: unsupported pre-tokenizer '%s'", t->path, type);
}

/* model/tokenizer/tokenizer.c - Hugging Face tokenizer.json: loading, and
 * the encode and decode pipelines over the stages in the files beside it
 * (normalize.c, pretokenize.c, bpe.c, decode.c; common.c the helpers).
 *
 * The pipeline follows the tokenizers library:
 *   1. added tokens whose "normalized" flag is false are cut out of the raw
 *      text (leftmost-longest match, lstrip/rstrip/single_word honoured);
 *   2. every remaining piece is normalized on its own (so Prepend("▁") acts
 *      on each piece, as in the library), then added tokens with
 *      normalized=true are cut out, compared in their normalized form;
 *   3. the pre-tokenizer chain splits each piece into words;
 *   4. the model turns each word into ids: BPE (bpe.c) with merges
 *      applied lowest rank first (leftmost on ties), or Unigram
 *      (unigram.c) by the most probable segmentation.
 * Decoding maps ids to token strings and runs the decoder chain.
 *
 * The post_processor's tokens (T5's </s>, Llama's <s>) are added only by
 * lh_tokenizer_post_process (post.c): the caller decides.
 * Where this differs from the library, on purpose or by necessity: offsets are not
 * tracked, except whether a piece starts the original text (Metaspace
 * prepend_scheme "first"; a piece cut right after a prepended normalizer
 * character does not count as starting it); regexes run on PCRE2, with \s
 * and \S spelled out as Unicode White_Space (Oniguruma's set), and PCRE2's
 * Unicode tables (14.0 for 10.42) and the NFC tables (nfc_tables.h, 14.0)
 * may lag the library's for characters assigned later; ids unknown to the
 * tokenizer are dropped by decode, as the library does.
 * tools/tokenizer_reference.py is the independent Python model of the same
 * rules used to build the fixtures. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* ------------------------------------------------------------ added tokens */

static int is_word_at(const lh_tokenizer *t, scratch *sc, const char *s, size_t n, size_t at)
{
    if (!t->word_re) return 0;
    int rc = pcre2_match(t->word_re, (PCRE2_SPTR)s, n, at, PCRE2_ANCHORED | PCRE2_NO_UTF_CHECK,
                         sc->md, sc->mctx);
    return rc >= 0;
}

/* Cut added tokens (the normalized or the raw set) out of s[0..n). */
static void split_added(const lh_tokenizer *t, scratch *sc, const char *s, size_t n, int orig0,
                        int normalized, int allow_special, plist *out)
{
    size_t start_off = 0, pos = 0;
    while (pos < n) {
        const added_tok *best = NULL;
        unsigned char c = (unsigned char)s[pos];
        for (size_t k = t->by_byte_start[c]; k < t->by_byte_start[c + 1]; k++) {
            const added_tok *a = &t->added[t->by_byte[k]];
            if (a->normalized != normalized) continue;
            const char *cs = normalized ? a->ncontent : a->content;
            size_t cl = normalized ? a->nlen : a->len;
            if (cl && cl <= n - pos && memcmp(s + pos, cs, cl) == 0) { best = a; break; }
        }
        if (!best) { pos += tk_utf8_len(s + pos); continue; }
        size_t ms = pos, me = pos + (normalized ? best->nlen : best->len);
        pos = me;
        if (best->special && !allow_special) continue;
        if (best->single_word) {
            int left_word = 0, right_word = 0;
            if (ms > 0) {
                size_t b = ms - 1;
                while (b > 0 && ((unsigned char)s[b] & 0xC0) == 0x80) b--;
                left_word = is_word_at(t, sc, s, n, b);
            }
            if (me < n) right_word = is_word_at(t, sc, s, n, me);
            if (left_word || right_word) continue;
        }
        if (best->lstrip) {
            size_t b = ms;
            while (b > 0) {
                size_t q = b - 1;
                while (q > 0 && ((unsigned char)s[q] & 0xC0) == 0x80) q--;
                if (!tk_is_space_cp(tk_utf8_cp(s + q))) break;
                b = q;
            }
            ms = b > start_off ? b : start_off;
        }
        if (best->rstrip) {
            while (me < n && tk_is_space_cp(tk_utf8_cp(s + me))) me += tk_utf8_len(s + me);
            pos = me;
        }
        if (start_off < ms) tk_pl_push(out, s + start_off, ms - start_off, orig0 && start_off == 0, -1);
        tk_pl_push(out, NULL, 0, 0, best->id);
        start_off = me;
    }
    if (start_off < n) tk_pl_push(out, s + start_off, n - start_off, orig0 && start_off == 0, -1);
}

/* ------------------------------------------------------------ encode */

lh_status lh_tokenizer_encode(const lh_tokenizer *t, const char *text, int allow_special,
                              int32_t **ids, size_t *n, lh_error *err)
{
    if (!t || !text || !ids || !n) return lh_error_set(err, LH_ERR_ARG, "lh_tokenizer_encode: NULL argument");
    *ids = NULL; *n = 0;
    size_t len = strlen(text), bad;
    if (!tk_utf8_valid(text, len, &bad))
        return lh_error_set(err, LH_ERR_ARG, "%s: text to encode is not valid UTF-8 (byte %zu)", t->path, bad);

    lh_status rc = LH_OK;
    scratch sc;
    memset(&sc, 0, sizeof sc);
    lh_sb_init(&sc.tmp);
    plist a, b, c;
    tk_pl_init(&a); tk_pl_init(&b); tk_pl_init(&c);
    idvec out = { 0 };
    lh_sb norm;
    lh_sb_init(&norm);

    sc.md = pcre2_match_data_create(1, NULL);
    sc.mctx = pcre2_match_context_create(NULL);
    if (!sc.md || !sc.mctx) { rc = lh_error_set(err, LH_ERR_NOMEM, "%s: out of memory", t->path); goto done; }
    /* A pathological regex must fail, not hang. */
    pcre2_set_match_limit(sc.mctx, 10000000);

    /* 1. raw added tokens */
    split_added(t, &sc, text, len, 1, 0, allow_special, &a);
    /* 2. tk_normalize each remaining piece, then normalized added tokens */
    for (size_t i = 0; i < a.n && !a.failed; i++) {
        if (a.v[i].tok >= 0) { tk_pl_push(&b, NULL, 0, 0, a.v[i].tok); continue; }
        const char *s = tk_pl_str(&a, i);
        size_t sl = a.v[i].len;
        if (t->n_norm) {
            if ((rc = tk_normalize(t, s, sl, &norm, err))) goto done;
            s = norm.buf ? norm.buf : "";
            sl = norm.len;
        }
        split_added(t, &sc, s, sl, a.v[i].orig0, 1, allow_special, &b);
    }
    if (a.failed || b.failed) { rc = lh_error_set(err, LH_ERR_NOMEM, "%s: out of memory", t->path); goto done; }
    /* 3. pre-tokenize, 4. BPE */
    for (size_t i = 0; i < b.n; i++) {
        if (b.v[i].tok >= 0) { tk_iv_push(&out, b.v[i].tok); continue; }
        tk_pl_clear(&a);
        tk_pl_push(&a, tk_pl_str(&b, i), b.v[i].len, b.v[i].orig0, -1);
        for (size_t k = 0; k < t->n_pre; k++) {
            tk_pl_clear(&c);
            for (size_t j = 0; j < a.n; j++)
                if ((rc = tk_pre_one(t, &sc, &t->pre[k], tk_pl_str(&a, j), a.v[j].len, a.v[j].orig0, &c, err)))
                    goto done;
            plist tmp = a; a = c; c = tmp;
        }
        if (a.failed || c.failed) { rc = lh_error_set(err, LH_ERR_NOMEM, "%s: out of memory", t->path); goto done; }
        for (size_t j = 0; j < a.n; j++) {
            rc = t->uni ? tk_unigram_word(t, &sc, tk_pl_str(&a, j), a.v[j].len, &out, err)
                        : tk_bpe_word(t, &sc, tk_pl_str(&a, j), a.v[j].len, &out, err);
            if (rc) goto done;
        }
    }
    /* Never NULL, even for no ids: callers memcpy from it. */
    if (!out.v && !out.failed && !(out.v = malloc(sizeof *out.v))) out.failed = 1;
    if (out.failed) { rc = lh_error_set(err, LH_ERR_NOMEM, "%s: out of memory", t->path); goto done; }
    *ids = out.v;
    *n = out.n;
    out.v = NULL;
done:
    free(out.v);
    lh_sb_release(&norm);
    tk_pl_release(&a); tk_pl_release(&b); tk_pl_release(&c);
    tk_scratch_release(&sc);
    return rc;
}

/* \w as the Rust regex crate defines it (UTS #18 Annex C), for single_word
 * added tokens; PCRE2's own \w leaves out marks. */
static const char WORD_CLASS[] = "[\\p{Alphabetic}\\p{M}\\p{Nd}\\p{Pc}\\p{Join_Control}]";

static int cmp_added(const void *x, const void *y, void *ctx)
{
    const added_tok *v = ctx;
    const added_tok *a = &v[*(const size_t *)x], *b = &v[*(const size_t *)y];
    /* Group by first byte of the form used for matching; longest first. */
    unsigned char fa = (unsigned char)(a->normalized ? a->ncontent : a->content)[0];
    unsigned char fb = (unsigned char)(b->normalized ? b->ncontent : b->content)[0];
    if (fa != fb) return fa < fb ? -1 : 1;
    size_t la = a->normalized ? a->nlen : a->len, lb = b->normalized ? b->nlen : b->len;
    if (la != lb) return la > lb ? -1 : 1;
    return a->id < b->id ? -1 : a->id > b->id;
}

/* The added_tokens entries, after the model has allocated the id tables. */
lh_status tk_load_added(lh_tokenizer *t, const lh_json *atoks, size_t n_added, lh_error *err)
{
    lh_status rc;
    if (n_added) {
        t->added = calloc(n_added, sizeof *t->added);
        if (!t->added) return lh_error_set(err, LH_ERR_NOMEM, "%s: out of memory", t->path);
    }
    for (size_t i = 0; i < n_added; i++) {
        const lh_json *a = atoks->items[i];
        added_tok *ad = &t->added[t->n_added];
        long long id;
        const char *s;
        size_t sn;
        lh_json_as_int64(lh_json_get(a, "id"), &id);
        if ((rc = tk_req_string(t, a, "content", "added token", &s, &sn, err))) return rc;
        if (sn == 0) return lh_error_set(err, LH_ERR_FORMAT, "%s: added_tokens[%zu] has empty content", t->path, i);
        if (memchr(s, 0, sn)) return lh_error_set(err, LH_ERR_FORMAT, "%s: added_tokens[%zu] contains a NUL", t->path, i);
        if (t->added_of[id] >= 0)
            return lh_error_set(err, LH_ERR_FORMAT, "%s: added token id %lld appears twice", t->path, id);
        ad->id = (int32_t)id;
        if ((rc = tk_opt_bool(t, a, "special", 0, &ad->special, "added token", err))) return rc;
        if ((rc = tk_opt_bool(t, a, "single_word", 0, &ad->single_word, "added token", err))) return rc;
        if ((rc = tk_opt_bool(t, a, "lstrip", 0, &ad->lstrip, "added token", err))) return rc;
        if ((rc = tk_opt_bool(t, a, "rstrip", 0, &ad->rstrip, "added token", err))) return rc;
        if ((rc = tk_opt_bool(t, a, "normalized", !ad->special, &ad->normalized, "added token", err))) return rc;
        if (!(ad->content = tk_dup_n(s, sn))) return lh_error_set(err, LH_ERR_NOMEM, "%s: out of memory", t->path);
        ad->len = sn;
        for (size_t k = 0; k < t->n_added; k++)
            if (t->added[k].len == sn && memcmp(t->added[k].content, s, sn) == 0) {
                free(ad->content); ad->content = NULL;
                return lh_error_set(err, LH_ERR_FORMAT, "%s: added token '%.64s' appears twice", t->path, s);
            }
        t->added_of[id] = (int32_t)t->n_added;
        t->n_added++;
        if (ad->single_word && !t->word_re)
            if ((rc = tk_compile_re(t, WORD_CLASS, sizeof WORD_CLASS - 1, &t->word_re, "word", err))) return rc;
    }
    return LH_OK;
}

/* The "model" object, by its type: BPE (bpe.c; a file without a type but
 * with merges is BPE too, as the library reads it) or Unigram (unigram.c). */
static lh_status load_model(lh_tokenizer *t, const lh_json *root, lh_error *err)
{
    const lh_json *model = lh_json_get(root, "model");
    if (!model || model->type != LH_JSON_OBJECT)
        return lh_error_set(err, LH_ERR_FORMAT, "%s: no 'model' object", t->path);
    const char *type;
    if (tk_type_is(model, &type)) {
        if (strcmp(type, "Unigram") == 0) return tk_unigram_load(t, root, model, err);
        if (strcmp(type, "BPE") != 0)
            return lh_error_set(err, LH_ERR_UNSUPPORTED, "%s: unsupported model '%s'", t->path, type);
    } else if (!lh_json_get(model, "merges")) {
        return lh_error_set(err, LH_ERR_FORMAT, "%s: model has no 'type'", t->path);
    }
    return tk_bpe_load(t, root, model, err);
}

/* Normalized forms of added tokens and the first-byte index; needs the
 * normalizer parsed. */
static lh_status index_added(lh_tokenizer *t, lh_error *err)
{
    lh_status rc;
    lh_sb ns;
    lh_sb_init(&ns);
    for (size_t i = 0; i < t->n_added; i++) {
        added_tok *a = &t->added[i];
        if (a->normalized && t->n_norm) {
            if ((rc = tk_normalize(t, a->content, a->len, &ns, err))) {
                /* A token the normalizer cannot handle can never match. */
                if (rc != LH_ERR_UNSUPPORTED) { lh_sb_release(&ns); return rc; }
                ns.len = 0;
            }
            a->ncontent = tk_dup_n(ns.buf ? ns.buf : "", ns.len);
            a->nlen = ns.len;
        } else {
            a->ncontent = tk_dup_n(a->content, a->len);
            a->nlen = a->len;
        }
        if (!a->ncontent) { lh_sb_release(&ns); return lh_error_set(err, LH_ERR_NOMEM, "%s: out of memory", t->path); }
    }
    lh_sb_release(&ns);
    lh_error_clear(err);
    t->by_byte = malloc((t->n_added ? t->n_added : 1) * sizeof *t->by_byte);
    if (!t->by_byte) return lh_error_set(err, LH_ERR_NOMEM, "%s: out of memory", t->path);
    for (size_t i = 0; i < t->n_added; i++) t->by_byte[i] = i;
    qsort_r(t->by_byte, t->n_added, sizeof *t->by_byte, cmp_added, t->added);
    size_t k = 0;
    for (int c = 0; c < 256; c++) {
        t->by_byte_start[c] = k;
        while (k < t->n_added) {
            const added_tok *a = &t->added[t->by_byte[k]];
            const char *s = a->normalized ? a->ncontent : a->content;
            if ((unsigned char)s[0] != c) break;
            k++;
        }
    }
    t->by_byte_start[256] = t->n_added;
    return LH_OK;
}

lh_status lh_tokenizer_load(const char *path, lh_tokenizer **out, lh_error *err)
{
    if (!path || !out) return lh_error_set(err, LH_ERR_ARG, "lh_tokenizer_load: NULL argument");
    *out = NULL;
    lh_json *root = NULL;
    lh_status rc = lh_json_parse_file(path, &root, err);
    if (rc) return rc;
    lh_tokenizer *t = calloc(1, sizeof *t);
    if (!t || !(t->path = tk_dup_n(path, strlen(path)))) {
        free(t);
        lh_json_free(root);
        return lh_error_set(err, LH_ERR_NOMEM, "%s: out of memory", path);
    }
    tk_init_byte_tables(t);
    if (root->type != LH_JSON_OBJECT) { rc = lh_error_set(err, LH_ERR_FORMAT, "%s: not a JSON object", path); goto fail; }
    if ((rc = load_model(t, root, err))) goto fail;
    const lh_json *nj = lh_json_get(root, "normalizer");
    t->has_normalizer = nj && nj->type != LH_JSON_NULL;
    if ((rc = tk_parse_normalizer(t, nj, 0, err))) goto fail;
    if ((rc = tk_parse_pre(t, lh_json_get(root, "pre_tokenizer"), 0, err))) goto fail;
    if ((rc = tk_parse_decoder(t, lh_json_get(root, "decoder"), 0, err))) goto fail;
    if ((rc = tk_parse_post(t, lh_json_get(root, "post_processor"), err))) goto fail;
    if ((rc = index_added(t, err))) goto fail;
    lh_json_free(root);
    *out = t;
    return LH_OK;
fail:
    lh_json_free(root);
    lh_tokenizer_free(t);
    return rc;
}

void lh_tokenizer_free(lh_tokenizer *t)
{
    if (!t) return;
    for (int32_t i = 0; t->model_str && i < t->n_ids; i++) free(t->model_str[i]);
    free(t->model_str); free(t->model_len); free(t->added_of); free(t->vmap); free(t->mmap);
    for (size_t i = 0; i < t->n_added; i++) { free(t->added[i].content); free(t->added[i].ncontent); }
    free(t->added); free(t->by_byte);
    for (size_t i = 0; i < t->n_norm; i++) {
        free(t->norm[i].a); free(t->norm[i].b);
        pcre2_code_free(t->norm[i].re);
        tk_charsmap_free(t->norm[i].cmap);
    }
    free(t->norm);
    for (size_t i = 0; i < t->n_pre; i++) { pcre2_code_free(t->pre[i].re); free(t->pre[i].lit); }
    free(t->pre);
    for (size_t i = 0; i < t->n_dec; i++) { free(t->dec[i].a); free(t->dec[i].b); }
    free(t->dec);
    pcre2_code_free(t->word_re);
    tk_unigram_free(t->uni);
    free(t->post_ids); free(t->post_error);
    free(t->path);
    free(t);
}

int32_t lh_tokenizer_vocab_size(const lh_tokenizer *t) { return t ? t->n_ids : 0; }

int32_t lh_tokenizer_token_id(const lh_tokenizer *t, const char *token)
{
    if (!t || !token) return -1;
    size_t n = strlen(token);
    for (size_t i = 0; i < t->n_added; i++)
        if (t->added[i].len == n && memcmp(t->added[i].content, token, n) == 0) return t->added[i].id;
    return tk_vocab_find(t, token, n);
}

const char *lh_tokenizer_id_token(const lh_tokenizer *t, int32_t id)
{
    if (!t || id < 0 || id >= t->n_ids) return NULL;
    if (t->added_of[id] >= 0) return t->added[t->added_of[id]].content;
    return t->model_str[id];
}

/* model/tokenizer/post.c - the post_processor of tokenizer.json: the
 * special tokens a single text gets around its ids (T5's </s> after it,
 * Llama's <s> before it). TemplateProcessing (its "single" template),
 * BertProcessing and RobertaProcessing ([cls] $A [sep]), ByteLevel (no
 * tokens) and their Sequence. Another type, or a malformed one, loads but
 * is named in the error of lh_tokenizer_post_process, since encoding itself
 * does not need it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static lh_status push_post(lh_tokenizer *t, int32_t id, int after, lh_error *err)
{
    if (id < 0 || id >= t->n_ids)
        return lh_error_set(err, LH_ERR_FORMAT, "%s: post_processor token id %d is not in the vocab", t->path, (int)id);
    size_t n = t->n_post_pre + t->n_post_suf;
    if (n >= 64) return lh_error_set(err, LH_ERR_FORMAT, "%s: post_processor adds too many tokens", t->path);
    int32_t *v = realloc(t->post_ids, (n + 1) * sizeof *v);
    if (!v) return lh_error_set(err, LH_ERR_NOMEM, "%s: out of memory", t->path);
    t->post_ids = v;
    if (after) {
        v[n] = id;
        t->n_post_suf++;
    } else { /* before the suffix, which stays at the end */
        memmove(v + t->n_post_pre + 1, v + t->n_post_pre, t->n_post_suf * sizeof *v);
        v[t->n_post_pre++] = id;
    }
    return LH_OK;
}

/* One SpecialToken item of a template: every id special_tokens lists for it. */
static lh_status template_special(lh_tokenizer *t, const lh_json *j, const lh_json *specials, int after,
                                  lh_error *err)
{
    const char *name;
    size_t nn;
    lh_status rc;
    if ((rc = tk_req_string(t, j, "id", "post_processor SpecialToken", &name, &nn, err))) return rc;
    const lh_json *sp = lh_json_get(specials, name);
    const lh_json *ids = lh_json_get(sp, "ids");
    if (!sp) {
        /* Not listed (some hand-written files): the token of that name. */
        int32_t id = lh_tokenizer_token_id(t, name);
        if (id < 0)
            return lh_error_set(err, LH_ERR_FORMAT, "%s: post_processor special token '%.64s' is neither in "
                                "'special_tokens' nor a token", t->path, name);
        return push_post(t, id, after, err);
    }
    if (!ids || ids->type != LH_JSON_ARRAY)
        return lh_error_set(err, LH_ERR_FORMAT, "%s: post_processor special token '%.64s' has no 'ids'", t->path, name);
    for (size_t i = 0; i < ids->len; i++) {
        long long id;
        if (!lh_json_as_int64(ids->items[i], &id) || id < 0 || id >= MAX_IDS)
            return lh_error_set(err, LH_ERR_FORMAT, "%s: post_processor special token '%.64s' has a bad id", t->path, name);
        if ((rc = push_post(t, (int32_t)id, after, err))) return rc;
    }
    return LH_OK;
}

static lh_status parse_template(lh_tokenizer *t, const lh_json *j, lh_error *err)
{
    const lh_json *single = lh_json_get(j, "single"), *specials = lh_json_get(j, "special_tokens");
    if (!single || single->type != LH_JSON_ARRAY)
        return lh_error_set(err, LH_ERR_FORMAT, "%s: post_processor 'TemplateProcessing' lacks a 'single' list", t->path);
    int seen_a = 0;
    lh_status rc;
    for (size_t i = 0; i < single->len; i++) {
        const lh_json *it = single->items[i], *x;
        if ((x = lh_json_get(it, "Sequence"))) {
            const char *id;
            if (seen_a || !lh_json_as_string(lh_json_get(x, "id"), &id) || strcmp(id, "A") != 0)
                return lh_error_set(err, LH_ERR_UNSUPPORTED,
                                    "%s: post_processor 'TemplateProcessing' single template must hold $A once", t->path);
            seen_a = 1;
        } else if ((x = lh_json_get(it, "SpecialToken"))) {
            if ((rc = template_special(t, x, specials, seen_a, err))) return rc;
        } else {
            return lh_error_set(err, LH_ERR_FORMAT, "%s: post_processor template item %zu is neither Sequence nor "
                                "SpecialToken", t->path, i);
        }
    }
    if (!seen_a)
        return lh_error_set(err, LH_ERR_UNSUPPORTED, "%s: post_processor 'TemplateProcessing' single template lacks $A", t->path);
    return LH_OK;
}

/* ["[CLS]", 101]: the id. */
static lh_status pair_id(lh_tokenizer *t, const lh_json *j, const char *key, const char *type, int32_t *id,
                         lh_error *err)
{
    const lh_json *p = lh_json_get(j, key);
    long long v;
    if (!p || p->type != LH_JSON_ARRAY || p->len != 2 || !lh_json_as_int64(p->items[1], &v) || v < 0 || v >= MAX_IDS)
        return lh_error_set(err, LH_ERR_FORMAT, "%s: post_processor '%s' '%s' is not [token, id]", t->path, type, key);
    *id = (int32_t)v;
    return LH_OK;
}

static lh_status parse_one(lh_tokenizer *t, const lh_json *j, int depth, lh_error *err)
{
    const char *type;
    lh_status rc;
    if (j->type != LH_JSON_OBJECT || !tk_type_is(j, &type))
        return lh_error_set(err, LH_ERR_FORMAT, "%s: post_processor is not an object with a 'type'", t->path);
    if (depth > 16) return lh_error_set(err, LH_ERR_FORMAT, "%s: post_processors nested too deeply", t->path);
    if (strcmp(type, "Sequence") == 0) {
        const lh_json *arr = lh_json_get(j, "processors");
        if (!arr || arr->type != LH_JSON_ARRAY)
            return lh_error_set(err, LH_ERR_FORMAT, "%s: post_processor 'Sequence' lacks 'processors'", t->path);
        for (size_t i = 0; i < arr->len; i++)
            if ((rc = parse_one(t, arr->items[i], depth + 1, err))) return rc;
        return LH_OK;
    }
    if (strcmp(type, "TemplateProcessing") == 0) return parse_template(t, j, err);
    if (strcmp(type, "ByteLevel") == 0) return LH_OK;
    if (strcmp(type, "BertProcessing") == 0 || strcmp(type, "RobertaProcessing") == 0) {
        int32_t cls, sep;
        if ((rc = pair_id(t, j, "cls", type, &cls, err)) || (rc = pair_id(t, j, "sep", type, &sep, err))) return rc;
        if ((rc = push_post(t, cls, 0, err))) return rc;
        return push_post(t, sep, 1, err);
    }
    return lh_error_set(err, LH_ERR_UNSUPPORTED, "%s: unsupported post_processor '%s'", t->path, type);
}

/* A post_processor we cannot read does not stop loading (encoding does not
 * need it): its message waits for lh_tokenizer_post_process. */
lh_status tk_parse_post(lh_tokenizer *t, const lh_json *j, lh_error *err)
{
    if (!j || j->type == LH_JSON_NULL) return LH_OK;
    lh_error perr = {0};
    lh_status rc = parse_one(t, j, 0, &perr);
    if (rc == LH_ERR_NOMEM) return lh_error_set(err, rc, "%s", perr.msg);
    if (rc) {
        t->n_post_pre = t->n_post_suf = 0;
        t->post_code = rc;
        if (!(t->post_error = tk_dup_n(perr.msg, strlen(perr.msg))))
            return lh_error_set(err, LH_ERR_NOMEM, "%s: out of memory", t->path);
    }
    return LH_OK;
}

lh_status lh_tokenizer_post_process(const lh_tokenizer *t, int32_t **ids, size_t *n, lh_error *err)
{
    if (!t || !ids || !*ids || !n) return lh_error_set(err, LH_ERR_ARG, "lh_tokenizer_post_process: NULL argument");
    if (t->post_error) return lh_error_set(err, t->post_code, "%s", t->post_error);
    size_t extra = t->n_post_pre + t->n_post_suf;
    if (!extra) return LH_OK;
    if (*n > SIZE_MAX / sizeof **ids - extra) return lh_error_set(err, LH_ERR_NOMEM, "%s: out of memory", t->path);
    int32_t *v = realloc(*ids, (*n + extra) * sizeof *v);
    if (!v) return lh_error_set(err, LH_ERR_NOMEM, "%s: out of memory", t->path);
    memmove(v + t->n_post_pre, v, *n * sizeof *v);
    memcpy(v, t->post_ids, t->n_post_pre * sizeof *v);
    memcpy(v + t->n_post_pre + *n, t->post_ids + t->n_post_pre, t->n_post_suf * sizeof *v);
    *ids = v;
    *n += extra;
    return LH_OK;
}

/* adapt/backend/backend.c - the backend registry and NULL-safe wrappers
 * that enforce the parts of the contract a backend need not repeat
 * (n == 0, bad arguments, required settings). */
#include "backend.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern const lh_backend_i lh_backend_exec;
extern const lh_backend_i lh_backend_native;
extern const lh_backend_i lh_backend_llamacpp;
extern const lh_backend_i lh_backend_server;

/* A backend is linked in or absent; a new one adds its vtable here. */
static const lh_backend_i *const registry[] = {
    &lh_backend_native,
    &lh_backend_exec,
    &lh_backend_llamacpp,
    &lh_backend_server,
    NULL,
};

struct lh_backend {
    const lh_backend_i *iface;
    void *ctx;
};

void lh_backend_opts_default(lh_backend_opts *o)
{
    memset(o, 0, sizeof *o);
}

const char *lh_backend_param(const lh_backend_opts *o, const char *key)
{
    const char *value = NULL;
    if (!o || !o->params || !key)
        return NULL;
    for (const char *const *p = o->params; p[0] && p[1]; p += 2)
        if (!strcmp(p[0], key))
            value = p[1];
    return value;
}

const lh_backend_i *const *lh_backend_list(void)
{
    return registry;
}

const lh_backend_i *lh_backend_find(const char *name)
{
    if (!name)
        return NULL;
    for (size_t i = 0; registry[i]; i++)
        if (!strcmp(registry[i]->name, name))
            return registry[i];
    return NULL;
}

lh_status lh_backend_wrap(const lh_backend_i *iface, void *ctx, lh_backend **out, lh_error *err)
{
    *out = NULL;
    if (!iface || !iface->score)
        return lh_error_set(err, LH_ERR_ARG, "a backend needs at least a score function");
    lh_backend *b = calloc(1, sizeof *b);
    if (!b)
        return lh_error_set(err, LH_ERR_NOMEM, "backend '%s': out of memory",
                            iface->name ? iface->name : "?");
    b->iface = iface;
    b->ctx = ctx;
    *out = b;
    return LH_OK;
}

lh_status lh_backend_open(const char *name, const lh_backend_opts *o, lh_backend **out,
                          lh_error *err)
{
    *out = NULL;
    const lh_backend_i *iface = lh_backend_find(name);
    if (!iface)
        return lh_error_set(err, LH_ERR_ARG, "no backend named '%s' is built in",
                            name ? name : "(null)");
    lh_backend_opts def;
    if (!o) {
        lh_backend_opts_default(&def);
        o = &def;
    }
    for (const lh_backend_key *k = iface->keys; k && k->key; k++)
        if (k->required && !lh_backend_param(o, k->key))
            return lh_error_set(err, LH_ERR_ARG, "the %s backend needs --%s %s", iface->name,
                                k->key, k->what);
    void *ctx = NULL;
    lh_status st = iface->open(o, &ctx, err);
    if (st != LH_OK)
        return st;
    st = lh_backend_wrap(iface, ctx, out, err);
    if (st != LH_OK && iface->close)
        iface->close(ctx);
    return st;
}

const lh_backend_i *lh_backend_iface(const lh_backend *b)
{
    return b ? b->iface : NULL;
}

const char *lh_backend_name(const lh_backend *b)
{
    return b && b->iface && b->iface->name ? b->iface->name : "?";
}

void lh_backend_describe(lh_backend *b, lh_backend_info *info)
{
    memset(info, 0, sizeof *info);
    if (b && b->iface && b->iface->describe)
        b->iface->describe(b->ctx, info);
    else
        snprintf(info->description, sizeof info->description, "%s", lh_backend_name(b));
}

lh_status lh_backend_score(lh_backend *b, const lh_adapter *const *cands, int n,
                           const lh_examples *ex, double *loss, lh_error *err)
{
    if (!b || !b->iface || !b->iface->score)
        return lh_error_set(err, LH_ERR_ARG, "score: no backend");
    if (n < 0 || !ex || (n > 0 && (!cands || !loss)))
        return lh_error_set(err, LH_ERR_ARG, "backend '%s': score: bad arguments", b->iface->name);
    if (n == 0)
        return LH_OK;
    return b->iface->score(b->ctx, cands, n, ex, loss, err);
}

lh_status lh_backend_generate(lh_backend *b, const lh_adapter *cand, const lh_examples *ex,
                              int max_new_tokens, char **outputs, lh_error *err)
{
    if (!b || !b->iface)
        return lh_error_set(err, LH_ERR_ARG, "generate: no backend");
    if (!b->iface->generate)
        return lh_error_set(err, LH_ERR_UNSUPPORTED, "backend '%s' cannot generate text",
                            b->iface->name);
    if (!ex || !outputs || max_new_tokens < 0)
        return lh_error_set(err, LH_ERR_ARG, "backend '%s': generate: bad arguments",
                            b->iface->name);
    return b->iface->generate(b->ctx, cand, ex, max_new_tokens, outputs, err);
}

lh_status lh_backend_count_tokens(lh_backend *b, const lh_examples *ex, size_t *n_tokens,
                                  lh_error *err)
{
    if (!b || !b->iface)
        return lh_error_set(err, LH_ERR_ARG, "count tokens: no backend");
    if (!b->iface->count_tokens)
        return lh_error_set(err, LH_ERR_UNSUPPORTED, "backend '%s' cannot count tokens",
                            b->iface->name);
    if (!ex || !n_tokens)
        return lh_error_set(err, LH_ERR_ARG, "backend '%s': count tokens: bad arguments",
                            b->iface->name);
    return b->iface->count_tokens(b->ctx, ex, n_tokens, err);
}

void lh_backend_close(lh_backend *b)
{
    if (!b)
        return;
    if (b->iface && b->iface->close)
        b->iface->close(b->ctx);
    free(b);
}

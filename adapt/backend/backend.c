/* adapt/backend/backend.c - the backend registry and NULL-safe wrappers.
 *
 * The table is static so that a backend is either linked in or absent; the
 * native engine adds itself here when it links. */
#include "backend.h"

#include <stdlib.h>
#include <string.h>

static const lh_backend_i *const registry[] = {
    &lh_backend_exec,
    &lh_backend_native,
};

void lh_backend_opts_default(lh_backend_opts *o)
{
    memset(o, 0, sizeof *o);
    o->timeout_s = 0;   /* 0 = the backend's default (exec: 300 s) */
    o->threads = 0;
    o->add_bos = 1;
    o->add_eos = 1;
}

const lh_backend_i *lh_backend_find(const char *name)
{
    if (!name)
        return NULL;
    for (size_t i = 0; i < sizeof registry / sizeof registry[0]; i++)
        if (!strcmp(registry[i]->name, name))
            return registry[i];
    return NULL;
}

lh_status lh_backend_open(const char *name, const lh_backend_opts *o, lh_backend **out,
                          lh_error *err)
{
    *out = NULL;
    const lh_backend_i *iface = lh_backend_find(name);
    if (!iface)
        return lh_error_set(err, LH_ERR_ARG, "no backend named '%s' is built in", name ? name : "(null)");
    lh_backend_opts def;
    if (!o) {
        lh_backend_opts_default(&def);
        o = &def;
    }
    lh_backend *b = calloc(1, sizeof *b);
    if (!b)
        return lh_error_set(err, LH_ERR_NOMEM, "backend '%s': out of memory", name);
    b->iface = iface;
    lh_status st = iface->open(o, &b->ctx, err);
    if (st != LH_OK) {
        free(b);
        return st;
    }
    *out = b;
    return LH_OK;
}

lh_status lh_backend_score(lh_backend *b, const lh_adapter *const *cands, int n,
                           const lh_examples *ex, double *loss, lh_error *err)
{
    if (!b || !b->iface || !b->iface->score)
        return lh_error_set(err, LH_ERR_ARG, "score: no backend");
    if (n < 0 || !ex)
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
    if (!ex || max_new_tokens < 0)
        return lh_error_set(err, LH_ERR_ARG, "backend '%s': generate: bad arguments",
                            b->iface->name);
    return b->iface->generate(b->ctx, cand, ex, max_new_tokens, outputs, err);
}

void lh_backend_close(lh_backend *b)
{
    if (!b)
        return;
    if (b->iface && b->iface->close)
        b->iface->close(b->ctx);
    free(b);
}

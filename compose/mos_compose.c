/* compose/mos_compose.c - lorahub composition in MoS pool space (the
 * derivation is in mos_compose.h). */
#include "mos_compose.h"

#include <math.h>
#include <stdlib.h>

static const char *mos_label(const lh_mos *m)
{
    return m->path ? m->path : m->name ? m->name : "module";
}

lh_status lh_compose_mos(const lh_mos *const *mods, size_t n, const double *w, lh_mos **out,
                         lh_error *err)
{
    *out = NULL;
    if (!n || !mods || !w)
        return lh_error_set(err, LH_ERR_ARG, "compose: no MoS modules given");
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(w[i]))
            return lh_error_set(err, LH_ERR_ARG, "compose: weight %zu is not finite", i);
        if (i && !lh_mos_same_routing(mods[0], mods[i]))
            return lh_error_set(err, LH_ERR_UNSUPPORTED, "%s and %s have different MoS "
                                "routing (hash %.12s... vs %.12s..., or shapes/rank scales "
                                "differ); materialize them and compose as LoRA",
                                mos_label(mods[0]), mos_label(mods[i]), mods[0]->routing_hash,
                                mods[i]->routing_hash);
    }
    /* As lh_compose_plan_new for LoRA: no method merges NaN or Inf. */
    for (size_t i = 0; i < n; i++)
        for (size_t ti = 0; ti < mods[i]->n_types; ti++) {
            const lh_mos_type *t = &mods[i]->types[ti];
            size_t na = (size_t)t->n_shards * (size_t)(t->d_in / mods[i]->l);
            size_t nb = (size_t)t->n_shards * (size_t)(t->d_out / mods[i]->l), at = 0, c;
            int in_b = 0;
            if (!(c = lh_count_nonfinite(t->pool_A, na, &at)))
                in_b = (c = lh_count_nonfinite(t->pool_B, nb, &at)) != 0;
            if (c)
                return lh_error_set(err, LH_ERR_NUMERIC,
                                    "%s: pool_%c of type '%s' holds %g at element %zu: refusing "
                                    "to merge it", mos_label(mods[i]), in_b ? 'B' : 'A', t->name,
                                    (double)(in_b ? t->pool_B[at] : t->pool_A[at]), at);
        }
    lh_mos *m = NULL;
    lh_status st = lh_mos_clone_routing(mods[0], &m, err);
    if (st != LH_OK)
        return st;
    m->lora_alpha = m->r; /* s* = 1 */
    for (size_t ti = 0; ti < m->n_types; ti++) {
        lh_mos_type *t = &m->types[ti];
        size_t na = (size_t)t->n_shards * (size_t)(t->d_in / m->l);
        size_t nb = (size_t)t->n_shards * (size_t)(t->d_out / m->l);
        /* One vectorizable pass per module over whole pools; the pools
         * of the output start at zero. */
        for (size_t i = 0; i < n; i++) {
            const lh_mos_type *src = &mods[i]->types[ti];
            float wa = (float)w[i], wb = (float)(w[i] * (mods[i]->lora_alpha / mods[i]->r));
            for (size_t q = 0; q < na; q++)
                t->pool_A[q] += wa * src->pool_A[q];
            for (size_t q = 0; q < nb; q++)
                t->pool_B[q] += wb * src->pool_B[q];
        }
    }
    *out = m;
    return LH_OK;
}

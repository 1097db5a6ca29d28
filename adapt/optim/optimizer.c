/* adapt/optim/optimizer.c - lh_optimize: option checks, dispatch by the
 * optimizer's engine (traits.c), and the budget guard every optimizer
 * evaluates through. */
#include "internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

lh_status lh_guard_eval(lh_optim_guard *g, const double *x, int k, double *f, int *done)
{
    *done = 0;
    if (g->status != LH_OK)
        return g->status;
    int left = g->budget - g->used;
    if (k > left)
        k = left;
    if (k <= 0)
        return LH_OK;
    g->err.code = LH_OK;
    g->err.msg[0] = '\0';
    lh_status st = g->fn(g->ctx, x, k, f, &g->err);
    /* The points were handed over: they count against the budget even if
     * the objective failed part-way. */
    g->used += k;
    if (st != LH_OK) {
        if (!g->err.msg[0])
            lh_error_set(&g->err, st, "objective failed: %s", lh_strerror(st));
        g->err.code = st;
        g->status = st;
        return st;
    }
    for (int i = 0; i < k; i++) {
        const double *xi = x + (size_t)i * (size_t)g->n;
        int fin = isfinite(f[i]);
        if (!g->have_best || (fin && (!g->best_finite || f[i] < g->f_best))) {
            memcpy(g->x_best, xi, (size_t)g->n * sizeof *xi);
            g->f_best = f[i];
            g->best_finite = fin;
            g->have_best = 1;
        }
        if (!fin)
            f[i] = HUGE_VAL;
    }
    *done = k;
    return LH_OK;
}

/* Largest dimension accepted: keeps n*n (CMA-ES covariance) and n*k
 * products far from size_t/int overflow. */
#define LH_OPTIM_MAX_N 65536

static lh_status check_opts(const char *name, const lh_optim_opts *o, lh_error *err)
{
    if (o->n < 1 || o->n > LH_OPTIM_MAX_N)
        return lh_error_set(err, LH_ERR_ARG, "optimizer %s: dimension %d is outside [1, %d]",
                            name, o->n, LH_OPTIM_MAX_N);
    if (!isfinite(o->lower) || !isfinite(o->upper) || !(o->lower < o->upper))
        return lh_error_set(err, LH_ERR_ARG,
                            "optimizer %s: bounds [%g, %g] must be finite with lower < upper",
                            name, o->lower, o->upper);
    if (o->budget < 1)
        return lh_error_set(err, LH_ERR_ARG, "optimizer %s: budget %d must be at least 1", name,
                            o->budget);
    if (!isfinite(o->step) || o->step < 0)
        return lh_error_set(err, LH_ERR_ARG, "optimizer %s: step %g must be finite and >= 0",
                            name, o->step);
    if (o->popsize < 0 || o->popsize == 1 || o->popsize > 1000000)
        return lh_error_set(err, LH_ERR_ARG,
                            "optimizer %s: population size %d must be 0 (default) or in [2, 1000000]",
                            name, o->popsize);
    if (o->restarts < 0)
        return lh_error_set(err, LH_ERR_ARG, "optimizer %s: restarts %d must be >= 0", name,
                            o->restarts);
    if (o->x0)
        for (int i = 0; i < o->n; i++)
            if (!(o->x0[i] >= o->lower && o->x0[i] <= o->upper))
                return lh_error_set(err, LH_ERR_ARG,
                                    "optimizer %s: x0[%d] = %g is outside the box [%g, %g]", name,
                                    i, o->x0[i], o->lower, o->upper);
    return LH_OK;
}

lh_status lh_optimize(const char *name, const lh_optim_opts *o, lh_objective_fn f, void *ctx,
                      double *x_best, lh_optim_result *res, lh_error *err)
{
    if (res) {
        res->f_best = HUGE_VAL;
        res->evaluations = 0;
        /* Until a run ends: early returns are argument errors. */
        snprintf(res->stop_reason, sizeof res->stop_reason, "error");
    }
    if (!name || !o || !f || !x_best)
        return lh_error_set(err, LH_ERR_ARG, "lh_optimize: name, options, objective and x_best "
                                             "are required");
    const lh_optimizer_info *info = lh_optimizer_find(name);
    if (!info)
        return lh_error_set(err, LH_ERR_ARG, "unknown optimizer '%s'", name);
    lh_status st = check_opts(name, o, err);
    if (st != LH_OK)
        return st;

    int n = o->n;
    double *x0 = malloc((size_t)n * sizeof *x0); /* [n] */
    if (!x0)
        return lh_error_set(err, LH_ERR_NOMEM, "optimizer %s: out of memory", name);
    for (int i = 0; i < n; i++)
        x0[i] = o->x0 ? o->x0[i] : 0.5 * (o->lower + o->upper);
    double step = o->step > 0 ? o->step : (o->upper - o->lower) / 6.0;

    lh_optim_guard g;
    memset(&g, 0, sizeof g);
    g.fn = f;
    g.ctx = ctx;
    g.n = n;
    g.budget = o->budget;
    g.x_best = x_best;
    g.f_best = HUGE_VAL;
    g.status = LH_OK;

    char stop[64] = "";
    lh_error lerr = { LH_OK, "" };
    switch (info->engine) {
    case LH_ENGINE_CMAES:
        st = lh_cmaes_run(o, x0, step, &g, stop, &lerr);
        break;
    case LH_ENGINE_RANDOM:
        st = lh_random_run(o, x0, &g, stop, &lerr);
        break;
    case LH_ENGINE_NLOPT:
        st = lh_nlopt_run(info, o, x0, step, &g, stop, &lerr);
        break;
    }
    free(x0);

    if (g.status != LH_OK) {
        /* The objective's own message, unchanged: it names what failed. */
        st = g.status;
        if (err)
            *err = g.err;
        snprintf(stop, sizeof stop, "error");
    } else if (st != LH_OK) {
        if (err)
            *err = lerr;
        snprintf(stop, sizeof stop, "error");
    } else if (g.used >= g.budget) {
        snprintf(stop, sizeof stop, "budget");
    }
    if (!g.have_best) /* nothing evaluated: report the start point */
        for (int i = 0; i < n; i++)
            x_best[i] = o->x0 ? o->x0[i] : 0.5 * (o->lower + o->upper);
    if (res) {
        res->f_best = g.have_best ? g.f_best : HUGE_VAL;
        res->evaluations = g.used;
        snprintf(res->stop_reason, sizeof res->stop_reason, "%s", stop[0] ? stop : "converged");
    }
    return st;
}

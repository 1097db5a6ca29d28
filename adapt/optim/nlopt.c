/* adapt/optim/nlopt.c - NLopt's derivative-free algorithms behind lh_optimize.
 *
 * Budget: NLopt's maxeval is "not a strict maximum", so the hard cap lives
 * in the objective wrapper: once the guard has spent the budget the wrapper
 * calls nlopt_force_stop and NLopt returns FORCED_STOP, which we treat as a
 * normal end with the best point seen (the guard tracks it). An objective
 * error is signalled to NLopt with nlopt_set_force_stop(STOP_ERROR) and
 * read back with nlopt_get_force_stop.
 *
 * Initial step: opts->step, default (upper - lower)/6. For LoraHub's box
 * [-1.5, 1.5] that is 0.5 in weight space, which is exactly the rhobeg the
 * reference's COBYLA (nevergrad -> scipy, rhobeg 1.0 in units of
 * sigma = 0.5) used, so `cobyla` reproduces its first n coordinate probes
 * (tests/check_optimizer.c checks the pattern). A step above half the box
 * is clamped there (BOBYQA refuses larger ones). Local methods also stop
 * once steps fall below 1e-12 of the box width (xtol_abs) instead of
 * spinning in roundoff until the budget.
 *
 * Reproducibility: nlopt_srand(seed) seeds NLopt's generator before each
 * run. That generator is global (per thread) NLopt state, so the seed is
 * re-applied at every lh_optimize call rather than once per process.
 *
 * newuoa: NLopt's LN_NEWUOA_BOUND solves its trust-region subproblem with
 * MMA, which can loop forever without evaluating anything (NLopt issue
 * #117, open). So `newuoa` runs the unbounded LN_NEWUOA on the box through
 * the boundary map CMA-ES uses (identity on the interior, smooth folding
 * at the edges): the objective still only sees in-box points.
 *
 * Non-finite objective values: only DIRECT understands NaN/Inf ("undefined
 * point", trait LH_OPTIM_SEES_NONFINITE); every other algorithm gets a
 * finite penalty worse than anything seen, so its models stay finite.
 *
 * Which NLopt algorithm a name runs, and its traits, are in traits.c. */
#include "internal.h"

#include <float.h>
#include <math.h>
#include <nlopt.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

enum { STOP_BUDGET = 1, STOP_ERROR = 2 };

typedef struct nl_ctx {
    lh_optim_guard *g;
    nlopt_opt opt;
    int mapped;          /* NLopt searches unbounded; map each point into the box */
    double lower, upper;
    double *xm;          /* [n] the mapped point */
    int direct;          /* pass non-finite values through as HUGE_VAL */
    int have_worst;
    double worst;        /* largest finite value seen, for the penalty */
} nl_ctx;

static double nl_objective(unsigned n, const double *x, double *grad, void *data)
{
    (void)grad; /* derivative-free algorithms only: always NULL */
    nl_ctx *c = data;
    if (lh_guard_left(c->g) <= 0) {
        nlopt_set_force_stop(c->opt, STOP_BUDGET);
        return HUGE_VAL;
    }
    double f;
    int done;
    if (c->mapped) {
        for (unsigned i = 0; i < n; i++)
            c->xm[i] = lh_cmaes_bound_map(c->lower, c->upper, x[i]);
        x = c->xm;
    }
    if (lh_guard_eval(c->g, x, 1, &f, &done) != LH_OK) {
        nlopt_set_force_stop(c->opt, STOP_ERROR);
        return HUGE_VAL;
    }
    /* Stop right after the last allowed point instead of waiting for
     * NLopt's next request: the value just computed is still recorded. */
    if (lh_guard_left(c->g) <= 0)
        nlopt_set_force_stop(c->opt, STOP_BUDGET);
    if (f == HUGE_VAL) { /* the guard's mark for NaN/Inf (or a true +Inf) */
        if (c->direct)
            return HUGE_VAL;
        double w = c->have_worst ? c->worst : 0.0;
        double pen = w + 1e3 * (fabs(w) + 1.0);
        return isfinite(pen) ? pen : 0.5 * DBL_MAX;
    }
    if (!c->have_worst || f > c->worst) {
        c->worst = f;
        c->have_worst = 1;
    }
    return f;
}

static const char *result_reason(nlopt_result r)
{
    switch (r) {
    case NLOPT_SUCCESS: return "converged";
    case NLOPT_STOPVAL_REACHED: return "stopval";
    case NLOPT_FTOL_REACHED: return "ftol";
    case NLOPT_XTOL_REACHED: return "xtol";
    case NLOPT_MAXEVAL_REACHED: return "budget";
    case NLOPT_MAXTIME_REACHED: return "maxtime";
    case NLOPT_ROUNDOFF_LIMITED: return "roundoff";
    case NLOPT_FORCED_STOP: return "budget";
    default: return "failure";
    }
}

lh_status lh_nlopt_run(const lh_optimizer_info *info, const lh_optim_opts *o, const double *x0,
                       double step, lh_optim_guard *g, char *stop, lh_error *err)
{
    const char *name = info->name;
    nlopt_algorithm alg = (nlopt_algorithm)info->nlopt_algorithm;
    if (info->engine != LH_ENGINE_NLOPT)
        return lh_error_set(err, LH_ERR_ARG, "optimizer %s is not an NLopt algorithm", name);
    if (o->n < info->min_n)
        return lh_error_set(err, LH_ERR_ARG,
                            "optimizer %s needs at least %d variables, got %d (use bobyqa)", name,
                            info->min_n, o->n);
    int n = o->n;
    nlopt_opt opt = nlopt_create(alg, (unsigned)n);
    if (!opt)
        return lh_error_set(err, LH_ERR_NOMEM, "optimizer %s: nlopt_create failed", name);
    nl_ctx c = { .g = g, .opt = opt, .direct = (info->traits & LH_OPTIM_SEES_NONFINITE) != 0,
                 .mapped = (info->traits & LH_OPTIM_BOUNDARY_MAP) != 0, .lower = o->lower,
                 .upper = o->upper };
    double *x = malloc(2 * (size_t)n * sizeof *x); /* [2, n]: NLopt's point, mapped point */
    if (!x) {
        nlopt_destroy(opt);
        return lh_error_set(err, LH_ERR_NOMEM, "optimizer %s: out of memory", name);
    }
    c.xm = x + n;
    for (int i = 0; i < n; i++)
        x[i] = c.mapped ? lh_cmaes_bound_unmap(o->lower, o->upper, x0[i]) : x0[i];
    /* A step larger than half the box makes BOBYQA refuse to start
     * (its rhobeg must fit twice in every bound interval). */
    double half = 0.5 * (o->upper - o->lower);
    if (step > half)
        step = half;
    nlopt_result r = NLOPT_SUCCESS;
    if (r >= 0 && !c.mapped) r = nlopt_set_lower_bounds1(opt, o->lower);
    if (r >= 0 && !c.mapped) r = nlopt_set_upper_bounds1(opt, o->upper);
    if (r >= 0) r = nlopt_set_min_objective(opt, nl_objective, &c);
    if (r >= 0) r = nlopt_set_initial_step1(opt, step);
    /* Belt and braces: NLopt stops itself at the budget too (not strictly),
     * the wrapper enforces it exactly. */
    if (r >= 0) r = nlopt_set_maxeval(opt, o->budget);
    /* Stop local methods once steps are far below any meaningful weight
     * change rather than spinning in roundoff until the budget. */
    if (r >= 0) r = nlopt_set_xtol_abs1(opt, 1e-12 * (o->upper - o->lower));
    if (r < 0) {
        lh_status st = lh_error_set(err, LH_ERR_ARG, "optimizer %s: cannot set options: %s",
                                    name, nlopt_result_to_string(r));
        nlopt_destroy(opt);
        free(x);
        return st;
    }
    /* nlopt_srand takes an unsigned long; fold the 64-bit seed so seeds
     * differing only in the high half differ on 32-bit longs too. */
    nlopt_srand((unsigned long)(o->seed ^ (o->seed >> 32)));

    double minf = HUGE_VAL;
    r = nlopt_optimize(opt, x, &minf);
    int forced = nlopt_get_force_stop(opt);
    lh_status st = LH_OK;
    if (forced == STOP_ERROR || g->status != LH_OK) {
        st = g->status; /* lh_optimize reports the objective's message */
    } else if (r == NLOPT_FORCED_STOP || forced == STOP_BUDGET) {
        snprintf(stop, 64, "budget");
    } else if (r > 0 || r == NLOPT_ROUNDOFF_LIMITED) {
        snprintf(stop, 64, "%s", result_reason(r));
    } else {
        const char *msg = nlopt_get_errmsg(opt);
        lh_status code = r == NLOPT_OUT_OF_MEMORY ? LH_ERR_NOMEM
                         : r == NLOPT_INVALID_ARGS ? LH_ERR_ARG
                                                   : LH_ERR_NUMERIC;
        st = lh_error_set(err, code, "optimizer %s (NLopt %s) failed after %d evaluations: %s",
                          name, nlopt_algorithm_to_string(alg), g->used,
                          msg ? msg : nlopt_result_to_string(r));
        snprintf(stop, 64, "failure");
    }
    nlopt_destroy(opt);
    free(x);
    return st;
}

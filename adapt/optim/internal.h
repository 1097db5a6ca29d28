/* adapt/optim/internal.h - private glue between lh_optimize and the optimizers.
 *
 * lh_optimize wraps the user objective in an lh_optim_guard; every optimizer
 * evaluates points only through lh_guard_eval, which enforces the budget,
 * tracks the best point and turns objective errors into a stop. Not part of
 * the public API (not included by lib/lorahub.h). */
#ifndef LH_OPTIM_IMPL_H
#define LH_OPTIM_IMPL_H

#include "optimizer.h"

typedef struct lh_optim_guard {
    lh_objective_fn fn;
    void *ctx;
    int n;
    int budget;
    int used;            /* points handed to fn so far (<= budget) */
    int have_best;       /* x_best holds an evaluated point */
    int best_finite;     /* f_best is finite */
    double f_best;       /* raw value the objective gave for x_best */
    double *x_best;      /* [n] caller's buffer */
    lh_status status;    /* first objective error, LH_OK until then */
    lh_error err;        /* its message */
} lh_optim_guard;

/* Evaluate up to k points x [k, n]. The batch is truncated to the budget
 * left; *done receives how many were evaluated (0 when the budget is spent,
 * without calling the objective). f [k] receives the values of the first
 * *done points, with NaN and +-Inf replaced by HUGE_VAL so the optimizers
 * can rank them (best-point tracking ignores them unless nothing finite
 * was seen). Returns the objective's error, or LH_OK; after an error the
 * guard refuses further calls with the same status. */
lh_status lh_guard_eval(lh_optim_guard *g, const double *x, int k, double *f, int *done);

static inline int lh_guard_left(const lh_optim_guard *g)
{
    return g->budget - g->used;
}

/* Each optimizer: run to a stop, evaluating through g. stop [64] receives
 * the reason. An objective error is returned as g->status; other errors
 * (bad options for this algorithm, allocation, LAPACK) fill err. */
lh_status lh_cmaes_run(const lh_optim_opts *o, const double *x0, double step,
                       lh_optim_guard *g, char *stop, lh_error *err);
lh_status lh_nlopt_run(const lh_optimizer_info *info, const lh_optim_opts *o, const double *x0,
                       double step, lh_optim_guard *g, char *stop, lh_error *err);
lh_status lh_random_run(const lh_optim_opts *o, const double *x0, lh_optim_guard *g,
                        char *stop, lh_error *err);

/* CMA-ES strategy parameters for dimension n and population lambda
 * (Hansen's tutorial defaults, arXiv:1604.00772 Table 1); exposed for the
 * unit test, which checks them against published values. */
typedef struct lh_cmaes_params {
    int lambda, mu;
    double mueff, cs, ds, cc, c1, cmu, chin;
} lh_cmaes_params;
/* w [mu] may be NULL. */
void lh_cmaes_params_init(lh_cmaes_params *p, int n, int lambda, double *w);

/* The boundary transformation CMA-ES samples through (exposed for tests):
 * maps any real to [lb, ub], identity on [lb + al, ub - au]. */
double lh_cmaes_bound_map(double lb, double ub, double y);
double lh_cmaes_bound_unmap(double lb, double ub, double x);

#endif

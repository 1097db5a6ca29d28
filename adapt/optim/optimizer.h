/* adapt/optim/optimizer.h - gradient-free minimizers behind one interface.
 *
 * A callback driver: lh_optimize calls the objective with a batch of k
 * points (CMA-ES hands over a whole population, NLopt one point at a time)
 * and stops when the budget is spent, the optimizer converges, or the
 * objective returns an error. The budget is a hard cap: the objective is
 * never called for more than `budget` points in total.
 *
 * Deterministic: the same options and seed give the same trajectory (the
 * search driver's --resume relies on this to replay a run). */
#ifndef LH_OPTIMIZER_H
#define LH_OPTIMIZER_H

#include <stddef.h>
#include <stdint.h>
#include "lib/status.h"

/* Evaluate k points x [k, n] into f [k]. Return LH_OK, or an error to stop
 * the run (it is passed back from lh_optimize with err filled). */
typedef lh_status (*lh_objective_fn)(void *ctx, const double *x /* [k, n] */, int k,
                                     double *f /* [k] */, lh_error *err);

typedef struct lh_optim_opts {
    int n;               /* dimension */
    const double *x0;    /* [n] start point, or NULL for the box centre */
    double lower;        /* box [lower, upper] in every coordinate */
    double upper;
    double step;         /* initial step / sigma; 0 = (upper-lower)/6 */
    int budget;          /* hard cap on objective evaluations (points) */
    uint64_t seed;
    int popsize;         /* cmaes: 0 = 4 + floor(3 ln n) */
    int restarts;        /* cmaes: IPOP restarts allowed (0 = none) */
} lh_optim_opts;

typedef struct lh_optim_result {
    double f_best;
    int evaluations;     /* points evaluated */
    char stop_reason[64];/* "budget", "converged", "xtol", ... */
} lh_optim_result;

/* Run the named optimizer ("cmaes", "cobyla", "bobyqa", "newuoa",
 * "nelder-mead", "sbplx", "praxis", "esch", "crs2", "isres", "direct",
 * "random"). x_best [n] receives the best point seen.
 *
 * Details of the implementation (adapt/optim/optimizer.c and friends):
 * - x0 must lie in the box (LH_ERR_ARG otherwise); the objective only ever
 *   receives in-box points. "direct" ignores x0.
 * - Non-finite objective values never crash a run: they rank as worse than
 *   any finite value. x_best/f_best are the best finite point and value;
 *   if nothing finite was seen, the first evaluated point and its value.
 *   Whether NaN is an error is the objective's call (return an error).
 * - An objective error stops the run at once (no further calls) and is
 *   returned with the objective's own message in err; res still holds the
 *   best point of the calls that succeeded and stop_reason "error".
 * - stop_reason: "budget" when the budget was spent, "error", or the
 *   optimizer's own reason (cmaes: "tolfun", "tolx", "tolupx",
 *   "conditioncov", "eigen", "noeffectaxis", "noeffectcoord"; NLopt:
 *   "converged", "xtol", "ftol", "roundoff", ...). */
lh_status lh_optimize(const char *name, const lh_optim_opts *o, lh_objective_fn f, void *ctx,
                      double *x_best /* [n] */, lh_optim_result *res, lh_error *err);

/* What runs an optimizer: our own code, or an NLopt algorithm. */
typedef enum lh_optim_engine {
    LH_ENGINE_CMAES,     /* adapt/optim/cmaes.c */
    LH_ENGINE_RANDOM,    /* adapt/optim/random_search.c */
    LH_ENGINE_NLOPT      /* adapt/optim/nlopt.c, algorithm nlopt_algorithm */
} lh_optim_engine;

/* Traits (bit flags of lh_optimizer_info.traits). */
enum {
    LH_OPTIM_LOCAL = 1u << 0,        /* refines around x0 (else a global search of the box) */
    LH_OPTIM_BATCH = 1u << 1,        /* hands the objective several points per call */
    LH_OPTIM_BOUNDARY_MAP = 1u << 2, /* searches unbounded through the boundary map */
    LH_OPTIM_SEES_NONFINITE = 1u << 3, /* understands NaN/Inf values (no finite penalty) */
    LH_OPTIM_IGNORES_X0 = 1u << 4    /* the start point does not matter */
};

/* One row per optimizer: everything lh_optimize needs to know about it,
 * looked up by name (never by position). */
typedef struct lh_optimizer_info {
    const char *name;
    const char *description;  /* one line, for `lorahub adapt --optimizer list` */
    lh_optim_engine engine;
    int nlopt_algorithm;      /* LH_ENGINE_NLOPT: NLopt's nlopt_algorithm value; else -1 */
    int min_n;                /* smallest dimension it accepts */
    unsigned traits;          /* LH_OPTIM_* */
} lh_optimizer_info;

/* All optimizers, ending with a row whose name is NULL. */
const lh_optimizer_info *lh_optimizer_list(void);
/* The row named name, or NULL (also for a NULL name). */
const lh_optimizer_info *lh_optimizer_find(const char *name);
int lh_optimizer_exists(const char *name);
/* Evaluations the optimizer spends on its start design over n weights
 * before its first informed step: n + 1 for the simplex methods (COBYLA,
 * Nelder-Mead, Subplex, PRAXIS), 2n + 1 for BOBYQA, NEWUOA and DIRECT, one
 * population for CMA-ES (4 + 3 ln n), ESCH, CRS2 and ISRES, 1 for random.
 * adapt's budget rule asks for four times this (lorahub-adapt(1)). */
int lh_optimizer_start_points(const char *name, int n);

#endif

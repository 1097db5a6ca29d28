/* adapt/optim/traits.c - the one table of optimizers: name, description,
 * engine (own implementation or NLopt algorithm), smallest dimension and
 * traits. lh_optimize, the NLopt glue and `--optimizer list` all read it. */
#include "optimizer.h"

#include <nlopt.h>
#include <math.h>
#include <stddef.h>
#include <string.h>

#define OWN(engine) engine, -1
#define NLOPT(alg) LH_ENGINE_NLOPT, (int)(alg)

static const lh_optimizer_info optimizers[] = {
    { "cmaes", "CMA-ES (own implementation), whole population per call, optional IPOP restarts",
      OWN(LH_ENGINE_CMAES), 1, LH_OPTIM_BATCH | LH_OPTIM_BOUNDARY_MAP },
    { "cobyla", "NLopt LN_COBYLA: linear models on a simplex; LoraHub's reference choice",
      NLOPT(NLOPT_LN_COBYLA), 1, LH_OPTIM_LOCAL },
    { "bobyqa", "NLopt LN_BOBYQA: bound-constrained quadratic models, 2n+1 start points",
      NLOPT(NLOPT_LN_BOBYQA), 1, LH_OPTIM_LOCAL },
    /* LN_NEWUOA_BOUND can loop forever (NLopt issue #117): the unbounded
     * LN_NEWUOA runs on the box through the boundary map instead. */
    { "newuoa", "NLopt LN_NEWUOA through a boundary map: quadratic models, needs n >= 2",
      NLOPT(NLOPT_LN_NEWUOA), 2, LH_OPTIM_LOCAL | LH_OPTIM_BOUNDARY_MAP },
    { "nelder-mead", "NLopt LN_NELDERMEAD: simplex method, projected onto the box",
      NLOPT(NLOPT_LN_NELDERMEAD), 1, LH_OPTIM_LOCAL },
    { "sbplx", "NLopt LN_SBPLX: Subplex, Nelder-Mead on subspaces; tolerates noise",
      NLOPT(NLOPT_LN_SBPLX), 1, LH_OPTIM_LOCAL },
    { "praxis", "NLopt LN_PRAXIS: Brent's principal-axis method",
      NLOPT(NLOPT_LN_PRAXIS), 1, LH_OPTIM_LOCAL },
    { "esch", "NLopt GN_ESCH: evolutionary global search (population 40)",
      NLOPT(NLOPT_GN_ESCH), 1, 0 },
    { "crs2", "NLopt GN_CRS2_LM: controlled random search, population 10(n+1)",
      NLOPT(NLOPT_GN_CRS2_LM), 1, 0 },
    { "isres", "NLopt GN_ISRES: stochastic ranking evolution strategy, population 20(n+1)",
      NLOPT(NLOPT_GN_ISRES), 1, 0 },
    { "direct", "NLopt GN_DIRECT_L: deterministic box subdivision (ignores x0)",
      NLOPT(NLOPT_GN_DIRECT_L), 1, LH_OPTIM_SEES_NONFINITE | LH_OPTIM_IGNORES_X0 },
    { "random", "uniform random search in the box; the first point is x0",
      OWN(LH_ENGINE_RANDOM), 1, LH_OPTIM_BATCH },
    { NULL, NULL, LH_ENGINE_CMAES, -1, 0, 0 },
};

const lh_optimizer_info *lh_optimizer_list(void)
{
    return optimizers;
}

const lh_optimizer_info *lh_optimizer_find(const char *name)
{
    if (!name)
        return NULL;
    for (const lh_optimizer_info *p = optimizers; p->name; p++)
        if (!strcmp(p->name, name))
            return p;
    return NULL;
}

int lh_optimizer_exists(const char *name)
{
    return lh_optimizer_find(name) != NULL;
}

int lh_optimizer_start_points(const char *name, int n)
{
    static const struct { const char *name; int per_n, plus; } linear[] = {
        {"cobyla", 1, 1},  {"nelder-mead", 1, 1}, {"sbplx", 1, 1}, {"praxis", 1, 1},
        {"bobyqa", 2, 1},  {"newuoa", 2, 1},      {"direct", 2, 1},
        {"crs2", 10, 10},  {"isres", 20, 20},     {"esch", 0, 40}, {"random", 0, 1},
    };
    for (size_t i = 0; name && i < sizeof linear / sizeof linear[0]; i++)
        if (!strcmp(name, linear[i].name))
            return linear[i].per_n * n + linear[i].plus;
    /* cmaes: its default population, as cmaes.c sizes it */
    return 4 + (int)(3.0 * log(n > 1 ? (double)n : 1.0));
}

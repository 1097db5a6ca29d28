/* adapt/optim/random_search.c - uniform random search in the box.
 *
 * The first point is x0 (so a run never ends worse than the start), then
 * points uniform in [lower, upper]^n from the seeded generator. Points go
 * to the objective in batches of opts->popsize (1 when 0), which does not
 * change the sequence: the same seed gives the same points for any batch
 * size. A baseline for the other optimizers and a sanity check for the
 * objective. */
#include "internal.h"
#include "rng.h"

#include <stdlib.h>
#include <string.h>

lh_status lh_random_run(const lh_optim_opts *o, const double *x0, lh_optim_guard *g, char *stop,
                        lh_error *err)
{
    int n = o->n;
    int batch = o->popsize > 0 ? o->popsize : 1;
    if (batch > o->budget)
        batch = o->budget;
    double *x = malloc((size_t)batch * (size_t)n * sizeof *x); /* [batch, n] */
    double *f = malloc((size_t)batch * sizeof *f);             /* [batch] */
    if (!x || !f) {
        free(x);
        free(f);
        return lh_error_set(err, LH_ERR_NOMEM, "optimizer random: out of memory");
    }
    lh_rng rng;
    lh_rng_seed(&rng, o->seed);
    double w = o->upper - o->lower;
    int first = 1;
    lh_status st = LH_OK;
    while (lh_guard_left(g) > 0) {
        int k = batch < lh_guard_left(g) ? batch : lh_guard_left(g);
        for (int j = 0; j < k; j++) {
            double *xj = x + (size_t)j * (size_t)n;
            if (first) {
                memcpy(xj, x0, (size_t)n * sizeof *xj);
                first = 0;
                continue;
            }
            for (int i = 0; i < n; i++) {
                double v = o->lower + w * lh_rng_uniform(&rng);
                xj[i] = v < o->upper ? v : o->upper;
            }
        }
        int done;
        st = lh_guard_eval(g, x, k, f, &done);
        if (st != LH_OK || done < k)
            break;
    }
    strcpy(stop, "budget");
    free(x);
    free(f);
    return st;
}

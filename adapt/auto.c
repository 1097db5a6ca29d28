/* adapt/auto.c - select auto: retrieve the best single module or compose,
 * decided from the few-shot examples alone (see search.h).
 *
 * The examples are split into k folds (example i in fold i mod k; k = the
 * number of examples up to LH_AUTO_MAX_FOLDS, so five examples give
 * leave-one-out). For each fold, the search runs on the other folds'
 * examples (with its preselection, which also yields every module's loss
 * alone), and two candidates are scored on the held-out examples in one
 * backend call: the module with the lowest training loss at weight 1, and
 * the searched composition. The choice with the lower mean held-out loss
 * wins (a tie goes to the single module, the simpler answer), and runs
 * again on all the examples.
 *
 * The budget covers everything: each fold's search gets budget / (k + 1)
 * evaluations and the refit the rest, so the evaluations reported (the
 * folds' and the refit's) never exceed the budget. The single-module and
 * held-out scores are counted apart, like preselection's. */
#include "search.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/fsutil.h"

typedef struct auto_ctx {
    const lh_search_opts *o;
    int fold, folds;
    char phase[48];
} auto_ctx;

/* The folds' progress under a phase that says which fold. */
static void fold_progress(void *ud, const lh_search_progress *p)
{
    auto_ctx *a = ud;
    lh_search_progress q = *p;
    snprintf(a->phase, sizeof a->phase, "auto %d/%d %s", a->fold + 1, a->folds, p->phase);
    q.phase = a->phase;
    a->o->progress(a->o->progress_ud, &q);
}

/* The examples of fold f (held) and of the others (train). */
static lh_status split(const lh_examples *ex, int f, int k, lh_examples **train,
                       lh_examples **held, lh_error *err)
{
    size_t n = ex->n, nh = 0, nt = 0;
    const char **ti = malloc(n * sizeof *ti), **to = malloc(n * sizeof *to);
    const char **hi = malloc(n * sizeof *hi), **ho = malloc(n * sizeof *ho);
    lh_status st = LH_OK;
    if (!ti || !to || !hi || !ho)
        st = lh_error_set(err, LH_ERR_NOMEM, "select auto: out of memory");
    for (size_t i = 0; st == LH_OK && i < n; i++) {
        if ((int)(i % (size_t)k) == f) {
            hi[nh] = ex->input[i];
            ho[nh++] = ex->output[i];
        } else {
            ti[nt] = ex->input[i];
            to[nt++] = ex->output[i];
        }
    }
    if (st == LH_OK)
        st = lh_examples_from_arrays(ti, to, nt, train, err);
    if (st == LH_OK)
        st = lh_examples_from_arrays(hi, ho, nh, held, err);
    free(ti);
    free(to);
    free(hi);
    free(ho);
    return st;
}

/* Index of the lowest finite single loss, or n. */
static size_t best_single(const double *single, size_t n)
{
    size_t bi = n;
    for (size_t i = 0; i < n; i++)
        if (isfinite(single[i]) && (bi == n || single[i] < single[bi]))
            bi = i;
    return bi;
}

typedef struct fold_out {
    double single_loss, search_loss;  /* held out */
    int evaluations, other;
    int backend_calls;
    double backend_seconds;
} fold_out;

/* One fold: search on train, the best single module and the result scored
 * on held. */
static lh_status run_fold(const lh_search_opts *inner, const lh_adapter *const *mods, size_t n,
                          const lh_examples *train, const lh_examples *held, lh_backend *b,
                          fold_out *fo, lh_error *err)
{
    lh_search_result r, rs;
    memset(&rs, 0, sizeof rs);
    lh_status st = lh_search_modules(inner, mods, n, train, b, &r, err);
    if (st != LH_OK)
        return st; /* an interrupt too: the folds give no result to keep */
    fo->evaluations = r.evaluations;
    fo->other = r.preselect_evaluations + 2;
    fo->backend_calls = r.backend_calls + 1;
    fo->backend_seconds = r.backend_seconds;
    const double *single = r.single_loss;
    if (!single) { /* no preselection: every module alone, as best-single does */
        lh_search_opts bs = *inner;
        bs.select = LH_SELECT_BEST_SINGLE;
        st = lh_search_modules(&bs, mods, n, train, b, &rs, err);
        single = rs.single_loss;
        fo->other += rs.preselect_evaluations;
        fo->backend_calls += rs.backend_calls;
        fo->backend_seconds += rs.backend_seconds;
    }
    size_t bi = st == LH_OK ? best_single(single, n) : n;
    if (st == LH_OK && bi == n)
        st = lh_error_set(err, LH_ERR_NUMERIC, "select auto: no module has a finite loss alone");
    lh_adapter *one = NULL;
    double w1 = 1.0, loss[2];
    if (st == LH_OK)
        st = lh_compose(&mods[bi], 1, &w1, &inner->merge, &one, err);
    if (st == LH_OK) {
        const lh_adapter *cands[2] = {one, r.merged};
        double t = lh_monotonic_seconds();
        st = lh_backend_score(b, cands, 2, held, loss, err);
        fo->backend_seconds += lh_monotonic_seconds() - t;
    }
    if (st == LH_OK) {
        fo->single_loss = isfinite(loss[0]) ? loss[0] : HUGE_VAL;
        fo->search_loss = isfinite(loss[1]) ? loss[1] : HUGE_VAL;
    }
    lh_adapter_free(one);
    lh_search_result_release(&rs);
    lh_search_result_release(&r);
    return st;
}

lh_status lh_search_auto(const lh_search_opts *o, const lh_adapter *const *mods, size_t n,
                         const lh_examples *ex, lh_backend *b, lh_search_result *res,
                         lh_error *err)
{
    memset(res, 0, sizeof *res);
    if (ex->n < 2)
        return lh_error_set(err, LH_ERR_ARG,
                            "select auto needs at least 2 examples to hold one out, not %zu", ex->n);
    int k = ex->n < LH_AUTO_MAX_FOLDS ? (int)ex->n : LH_AUTO_MAX_FOLDS;
    int fold_budget = o->budget / (k + 1);
    if (fold_budget < 1)
        return lh_error_set(err, LH_ERR_ARG,
                            "select auto: budget %d is too small for %d folds (at least %d)",
                            o->budget, k, k + 1);
    double t0 = lh_monotonic_seconds();
    auto_ctx ac = {o, 0, k, ""};
    lh_search_opts inner = *o;
    inner.select = LH_SELECT_SEARCH;
    inner.budget = fold_budget;
    inner.trace_path = inner.checkpoint_path = NULL;
    inner.resume = inner.force = 0;
    if (o->progress) {
        inner.progress = fold_progress;
        inner.progress_ud = &ac;
    }
    fold_out sum;
    memset(&sum, 0, sizeof sum);
    /* Every fold's examples live until the end: the exec backend caches the
     * examples it wrote by their address, which a freed set could reuse. */
    lh_examples *train[LH_AUTO_MAX_FOLDS] = {0}, *held[LH_AUTO_MAX_FOLDS] = {0};
    lh_status st = LH_OK;
    for (int f = 0; f < k && st == LH_OK; f++) {
        fold_out fo;
        memset(&fo, 0, sizeof fo);
        ac.fold = f;
        st = split(ex, f, k, &train[f], &held[f], err);
        if (st == LH_OK)
            st = run_fold(&inner, mods, n, train[f], held[f], b, &fo, err);
        sum.single_loss += fo.single_loss / k;
        sum.search_loss += fo.search_loss / k;
        sum.evaluations += fo.evaluations;
        sum.other += fo.other;
        sum.backend_calls += fo.backend_calls;
        sum.backend_seconds += fo.backend_seconds;
    }
    for (int f = 0; f < k; f++) {
        lh_examples_free(train[f]);
        lh_examples_free(held[f]);
    }
    if (st != LH_OK)
        return st;
    lh_search_opts final = *o;
    final.select = sum.search_loss < sum.single_loss ? LH_SELECT_SEARCH : LH_SELECT_BEST_SINGLE;
    final.budget = o->budget - k * fold_budget;
    st = lh_search_modules(&final, mods, n, ex, b, res, err);
    if (st != LH_OK && st != LH_ERR_INTERRUPTED)
        return st;
    res->auto_ran = 1;
    res->auto_decision = final.select;
    res->auto_folds = k;
    res->auto_fold_budget = fold_budget;
    res->auto_single_loss = sum.single_loss;
    res->auto_search_loss = sum.search_loss;
    res->auto_evaluations = sum.evaluations;
    res->auto_other_evaluations = sum.other;
    res->evaluations += sum.evaluations;
    res->backend_calls += sum.backend_calls;
    res->backend_seconds += sum.backend_seconds;
    res->wall_seconds = lh_monotonic_seconds() - t0;
    return st;
}

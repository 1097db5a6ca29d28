/* adapt/search.c - the ADAPT search driver (see search.h).
 *
 * lh_search_modules is a sequence of phases sharing one context: prepare
 * (fingerprint, the checkpoint to replay), preselect (every module alone),
 * open (the modules searched over, trace, first checkpoint), the mode
 * (retrieve, uniform or an optimizer run from the chosen start), rescore.
 * An interrupt is not an error inside the sequence: it sets a flag, the
 * remaining phases do what still makes sense (no backend call), and the
 * best point so far is returned with LH_ERR_INTERRUPTED.
 *
 * Every candidate, of any phase, is scored through score_batch: one
 * backend call, its time and count, and one rule for non-finite losses.
 * Records of every search evaluation feed best-so-far, the trace and the
 * checkpoint (adapt/checkpoint.c). */
#include "search.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "adapt/checkpoint.h"
#include "lib/fsutil.h"
#include "adapt/optim/optimizer.h"

/* Single-module scoring sends at most this many candidates per request,
 * which bounds the memory of its outputs. */
#define SINGLE_BATCH 16

typedef struct record {
    double loss;
    double objective;
    double ms;
} record;

typedef struct search {
    const lh_search_opts *o;
    const lh_adapter *const *mods;  /* [n] all modules given */
    size_t n;
    const lh_examples *ex;
    lh_backend *b;
    lh_search_result *res;
    double t0;
    int interrupted;            /* a phase saw the interrupt; later phases skip the backend */

    /* the modules being weighted (all, or the preselected ones) */
    const lh_adapter **sub;     /* [nk] */
    size_t nk;
    double *w;                  /* [nk] the start point, then the chosen one */
    lh_compose_plan *plan;
    lh_adapter **outs;          /* [n_outs] preallocated outputs of plan's shapes */
    int sum_only;               /* cat scored from the sum (the backend says): outs are sums */
    int n_outs;
    const lh_adapter **cands;   /* [n_outs] pointers handed to the backend */
    double *loss_buf;           /* [n_outs] */
    int *slot_of;               /* [n_outs] batch position -> output slot, -1 = replayed */

    /* evaluations of this run */
    size_t n_rec, cap_rec;
    double *rec_w;              /* [cap_rec, nk] */
    record *rec;                /* [cap_rec] */
    int best;                   /* index into rec, -1 none */
    int score_singles;          /* the budget plan: every module is scored alone first */
    size_t keep;                /* ... and this many kept (n: all, no preselection) */
    int search_budget;          /* ... and this many evaluations left for the mode */
    int fresh;                  /* evaluations sent to the backend in this session */
    double fresh_s;             /* seconds they took */

    lh_fingerprint settings;
    lh_checkpoint ck;           /* written as we go; holds the replayed run on resume */
    int ck_written;             /* this run wrote the checkpoint file */
    lh_trace trace;
} search;

static void report_progress(search *s, const char *phase, int done, int total, double loss,
                            double best, int replayed)
{
    if (!s->o->progress)
        return;
    lh_search_progress p;
    p.phase = phase;
    p.evaluation = done;
    p.total = total;
    p.loss = loss;
    p.best_objective = best;
    p.elapsed_s = lh_monotonic_seconds() - s->t0;
    p.eta_s = s->fresh > 0 ? s->fresh_s / s->fresh * (total - done) : -1;
    p.replayed = replayed;
    s->o->progress(s->o->progress_ud, &p);
}

static lh_status write_checkpoint(search *s, lh_error *err)
{
    lh_status st = lh_checkpoint_write(&s->ck, s->res->single_loss,
                                       s->res->single_loss ? s->res->n : 0, err);
    s->ck_written |= st == LH_OK && s->o->checkpoint_path;
    return st;
}

static lh_status check_interrupt(const search *s, lh_error *err)
{
    if (s->o->interrupt && *s->o->interrupt)
        return lh_error_set(err, LH_ERR_INTERRUPTED, "interrupted");
    return LH_OK;
}

/* Room for k outputs of the plan's shapes: allocates only when a batch is
 * larger than any before (CMA-ES: once; NLopt: once, k = 1). */
static lh_status ensure_outputs(search *s, int k, lh_error *err)
{
    if (k <= s->n_outs)
        return LH_OK;
    lh_adapter **outs = realloc(s->outs, (size_t)k * sizeof *outs);
    if (!outs)
        return lh_error_set(err, LH_ERR_NOMEM, "search: out of memory");
    s->outs = outs;
    for (int i = s->n_outs; i < k; i++)
        outs[i] = NULL;
    const lh_adapter **c = realloc(s->cands, (size_t)k * sizeof *c);
    double *lb = c ? realloc(s->loss_buf, (size_t)k * sizeof *lb) : NULL;
    if (c)
        s->cands = c;
    if (lb)
        s->loss_buf = lb;
    int *so = lb ? realloc(s->slot_of, (size_t)k * sizeof *so) : NULL;
    if (so)
        s->slot_of = so;
    if (!c || !lb || !so)
        return lh_error_set(err, LH_ERR_NOMEM, "search: out of memory");
    for (int i = s->n_outs; i < k; i++) {
        lh_status st = s->sum_only ? lh_compose_alloc_sum_output(s->plan, &s->outs[i], err)
                                   : lh_compose_alloc_output(s->plan, &s->outs[i], err);
        if (st != LH_OK)
            return st;
        s->n_outs = i + 1;
    }
    return LH_OK;
}

/* Score cands [m] into loss [m] in one backend call. A non-finite loss is
 * an error unless nan_as_worst (then the caller maps it). alone [m], when
 * given, names the module each candidate is made of (preselection). */
static lh_status score_batch(search *s, const lh_adapter *const *cands, int m, double *loss,
                             const lh_adapter *const *alone, lh_error *err)
{
    double t = lh_monotonic_seconds();
    lh_status st = lh_backend_score(s->b, cands, m, s->ex, loss, err);
    double dt = lh_monotonic_seconds() - t;
    s->res->backend_seconds += dt;
    s->res->backend_calls++;
    /* A non-finite loss is the backend's answer for that candidate (the
     * contract), not a failed call: --nan-as-worst makes it the worst
     * objective (the caller maps it), else the search stops on it. */
    for (int i = 0; st == LH_OK && !s->o->nan_as_worst && i < m; i++)
        if (!isfinite(loss[i])) {
            lh_backend_info info; /* names the model or command */
            lh_backend_describe(s->b, &info);
            if (alone)
                st = lh_error_set(err, LH_ERR_NUMERIC, "%s: loss of module '%s' alone is %s",
                                  info.description, alone[i]->name,
                                  isnan(loss[i]) ? "NaN" : "infinite");
            else
                st = lh_error_set(err, LH_ERR_NUMERIC,
                                  "%s: loss of candidate %d of %d is %s (nan-as-worst would "
                                  "count it as the worst score)",
                                  info.description, i + 1, m, isnan(loss[i]) ? "NaN" : "infinite");
        }
    if (st == LH_OK) {
        s->fresh += m;
        s->fresh_s += dt;
        s->res->scored += m;
    }
    return st;
}

static double mean_abs(const double *w, size_t n)
{
    double a = 0;
    for (size_t i = 0; i < n; i++)
        a += fabs(w[i]);
    return n ? a / (double)n : 0;
}

static lh_status grow_records(search *s, size_t k, lh_error *err)
{
    if (s->n_rec + k <= s->cap_rec)
        return LH_OK;
    size_t nc = s->cap_rec ? s->cap_rec * 2 : 64;
    while (nc < s->n_rec + k)
        nc *= 2;
    double *nw = realloc(s->rec_w, nc * s->nk * sizeof *nw);
    if (nw)
        s->rec_w = nw;
    record *nr = nw ? realloc(s->rec, nc * sizeof *nr) : NULL;
    if (!nr)
        return lh_error_set(err, LH_ERR_NOMEM, "search: out of memory");
    s->rec = nr;
    s->cap_rec = nc;
    return LH_OK;
}

/* Record evaluation n_rec at xj [nk] with loss (from the backend or the
 * checkpoint); f receives its objective. */
static lh_status record_one(search *s, const double *xj, double loss, double ms, int replayed,
                            int total, double *f, lh_error *err)
{
    size_t e = s->n_rec, nk = s->nk;
    record *r = &s->rec[e];
    memcpy(s->rec_w + e * nk, xj, nk * sizeof *xj);
    r->loss = loss;
    r->ms = ms;
    if (replayed)
        s->res->replayed++;
    if (isfinite(r->loss))
        r->objective = s->o->loss_scale * r->loss + s->o->l1 * mean_abs(xj, nk);
    else if (s->o->nan_as_worst)
        r->objective = LH_SEARCH_WORST;
    else
        return lh_error_set(err, LH_ERR_NUMERIC,
                            "%s: evaluation %zu has a NaN loss; resume with nan-as-worst",
                            s->o->checkpoint_path ? s->o->checkpoint_path : "checkpoint", e + 1);
    *f = r->objective;
    if (s->best < 0 || r->objective < s->rec[s->best].objective)
        s->best = (int)e;
    s->n_rec++;
    lh_trace_line(&s->trace, e, r->loss, r->objective, xj, nk, r->ms);
    lh_checkpoint_append(&s->ck, e, xj, nk, r->loss, r->ms);
    report_progress(s, "search", (int)s->n_rec, total, r->loss, s->rec[s->best].objective,
                    replayed);
    return LH_OK;
}

/* Evaluate k points x [k, nk]: replay what the checkpoint holds, compose
 * and score the rest in one backend call, record everything. */
static lh_status evaluate(search *s, const double *x, int k, double *f, int total, lh_error *err)
{
    lh_status st = check_interrupt(s, err);
    if (st == LH_OK)
        st = grow_records(s, (size_t)k, err);
    if (st == LH_OK)
        st = ensure_outputs(s, k, err);
    if (st != LH_OK)
        return st;
    size_t nk = s->nk;
    const lh_checkpoint *ck = &s->ck;
    int m = 0;
    for (int j = 0; j < k; j++) {
        size_t e = s->n_rec + (size_t)j;
        const double *xj = x + (size_t)j * nk;
        if (e < ck->n_rec) {
            if (ck->wlen != nk)
                return lh_error_set(err, LH_ERR_ARG,
                                    "%s: cannot resume: the checkpoint searched %zu weights, this "
                                    "run %zu (the budget decides how many modules are searched: "
                                    "resume with a budget that searches as many)",
                                    s->o->checkpoint_path, ck->wlen, nk);
            if (memcmp(xj, ck->w + e * s->res->n, nk * sizeof *xj) != 0)
                return lh_error_set(err, LH_ERR_FORMAT,
                                    "%s: cannot resume: evaluation %zu of the replayed run is at "
                                    "another point than the recorded one (was the optimizer "
                                    "library changed?)",
                                    s->o->checkpoint_path, e + 1);
            s->slot_of[j] = -1;
            continue;
        }
        st = s->sum_only ? lh_compose_sum_into(s->plan, xj, s->outs[m], err)
                         : lh_compose_into(s->plan, xj, s->outs[m], err);
        if (st != LH_OK)
            return st;
        s->cands[m] = s->outs[m];
        s->slot_of[j] = m++;
    }
    double t = lh_monotonic_seconds();
    if (m > 0 && (st = score_batch(s, s->cands, m, s->loss_buf, NULL, err)) != LH_OK)
        return st;
    double ms_each = m > 0 ? (lh_monotonic_seconds() - t) * 1000.0 / m : 0;
    for (int j = 0; j < k && st == LH_OK; j++) {
        size_t e = s->n_rec;
        int replayed = s->slot_of[j] < 0;
        st = record_one(s, x + (size_t)j * nk, replayed ? ck->loss[e] : s->loss_buf[s->slot_of[j]],
                        replayed ? ck->ms[e] : ms_each, replayed, total, &f[j], err);
    }
    if (st != LH_OK)
        return st;
    if (lh_sb_failed(&s->ck.body))
        return lh_error_set(err, LH_ERR_NOMEM, "search: out of memory");
    if (m > 0 || s->n_rec >= ck->n_rec)
        return write_checkpoint(s, err);
    return LH_OK;
}

static lh_status objective_cb(void *ctx, const double *x, int k, double *f, lh_error *err)
{
    search *s = ctx;
    return evaluate(s, x, k, f, s->search_budget, err);
}

/* Score modules [i0, i0 + m) alone at weight 1 (with the merge method, so
 * cat and lorahub see what they will compose) into single_loss. */
static lh_status single_batch(search *s, size_t i0, size_t m, lh_error *err)
{
    lh_search_result *res = s->res;
    lh_adapter *outs[SINGLE_BATCH] = {0};
    const lh_adapter *cands[SINGLE_BATCH];
    double one = 1.0;
    lh_status st = LH_OK;
    for (size_t j = 0; j < m && st == LH_OK; j++) {
        const lh_adapter *mod = s->mods[i0 + j];
        st = lh_compose(&mod, 1, &one, &s->o->merge, &outs[j], err);
        cands[j] = outs[j];
    }
    if (st == LH_OK)
        st = score_batch(s, cands, (int)m, res->single_loss + i0, s->mods + i0, err);
    if (st == LH_OK)
        res->preselect_evaluations += (int)m;
    for (size_t j = 0; j < m; j++)
        lh_adapter_free(outs[j]);
    return st;
}

/* Every module's single loss, from the checkpoint when it holds them. */
static lh_status single_losses(search *s, lh_error *err)
{
    lh_search_result *res = s->res;
    size_t n = s->n;
    res->single_loss = malloc(n * sizeof *res->single_loss);
    if (!res->single_loss)
        return lh_error_set(err, LH_ERR_NOMEM, "search: out of memory");
    if (s->ck.n_single == n) {
        memcpy(res->single_loss, s->ck.single, n * sizeof *res->single_loss);
        report_progress(s, "preselect", (int)n, (int)n, NAN, NAN, 1);
        return LH_OK;
    }
    lh_status st = LH_OK;
    for (size_t i0 = 0; i0 < n && st == LH_OK; i0 += SINGLE_BATCH) {
        size_t m = n - i0 < SINGLE_BATCH ? n - i0 : SINGLE_BATCH;
        st = check_interrupt(s, err);
        if (st == LH_OK)
            st = single_batch(s, i0, m, err);
        if (st == LH_OK) {
            double best = HUGE_VAL;
            for (size_t j = 0; j < i0 + m; j++)
                if (isfinite(res->single_loss[j]) && res->single_loss[j] < best)
                    best = res->single_loss[j];
            report_progress(s, "preselect", (int)(i0 + m), (int)n, res->single_loss[i0 + m - 1],
                            best, 0);
        }
    }
    if (st != LH_OK) {
        free(res->single_loss);
        res->single_loss = NULL;
    }
    return st;
}

/* Indices of the k lowest single losses (NaN last, ties by index), in index order. */
static void keep_lowest(const double *loss, size_t n, size_t k, size_t *kept)
{
    char *taken = calloc(n, 1);
    for (size_t c = 0; c < k; c++) {
        size_t bi = n;
        for (size_t i = 0; i < n; i++) {
            if (taken && taken[i])
                continue;
            double li = isfinite(loss[i]) ? loss[i] : HUGE_VAL;
            double lb = bi < n ? (isfinite(loss[bi]) ? loss[bi] : HUGE_VAL) : 0;
            if (bi == n || li < lb)
                bi = i;
        }
        if (bi == n)
            break;
        if (taken)
            taken[bi] = 1;
        kept[c] = bi;
    }
    free(taken);
    for (size_t i = 1; i < k; i++)
        for (size_t j = i; j > 0 && kept[j - 1] > kept[j]; j--) {
            size_t t = kept[j];
            kept[j] = kept[j - 1];
            kept[j - 1] = t;
        }
}

static lh_status check_opts(const lh_search_opts *o, size_t n, lh_error *err)
{
    if (n == 0)
        return lh_error_set(err, LH_ERR_ARG, "search: no modules");
    if (!o->optimizer || !lh_optimizer_exists(o->optimizer))
        return lh_error_set(err, LH_ERR_ARG, "unknown optimizer '%s'",
                            o->optimizer ? o->optimizer : "(null)");
    if (o->budget < 1)
        return lh_error_set(err, LH_ERR_ARG, "budget must be at least 1, not %d", o->budget);
    if (o->population != 0 && (o->population < 2 || o->population > 1000000))
        return lh_error_set(err, LH_ERR_ARG, "population must be in [2, 1000000], not %d",
                            o->population);
    if (o->population && !(lh_optimizer_find(o->optimizer)->traits & LH_OPTIM_BATCH))
        return lh_error_set(err, LH_ERR_ARG,
                            "population: optimizer %s asks for one point at a time (a population "
                            "is for cmaes or random)", o->optimizer);
    if (!(o->bound > 0) || !isfinite(o->bound))
        return lh_error_set(err, LH_ERR_ARG, "bound must be a positive number, not %g", o->bound);
    if (!(o->l1 >= 0) || !isfinite(o->l1))
        return lh_error_set(err, LH_ERR_ARG, "l1 must be a non-negative number, not %g", o->l1);
    if (!(o->loss_scale > 0) || !isfinite(o->loss_scale))
        return lh_error_set(err, LH_ERR_ARG, "loss scale must be a positive number, not %g",
                            o->loss_scale);
    if (o->preselect < 0)
        return lh_error_set(err, LH_ERR_ARG, "preselect must be non-negative");
    if (o->resume && !o->checkpoint_path)
        return lh_error_set(err, LH_ERR_ARG, "resume needs a checkpoint file");
    if (o->resume && !lh_path_exists(o->checkpoint_path))
        return lh_error_set(err, LH_ERR_NOT_FOUND, "cannot resume: no checkpoint '%s'",
                            o->checkpoint_path);
    if (!o->resume && !o->force) {
        if (o->checkpoint_path && lh_path_exists(o->checkpoint_path))
            return lh_error_set(err, LH_ERR_EXISTS,
                                "checkpoint '%s' exists (resume it, or force a new run)",
                                o->checkpoint_path);
        if (o->trace_path && lh_path_exists(o->trace_path))
            return lh_error_set(err, LH_ERR_EXISTS, "trace '%s' exists (force to replace it)",
                                o->trace_path);
    }
    return LH_OK;
}

/* An interrupt inside a phase ends that phase, not the run. */
static lh_status note_interrupt(search *s, lh_status st)
{
    if (st != LH_ERR_INTERRUPTED)
        return st;
    s->interrupted = 1;
    snprintf(s->res->stop_reason, sizeof s->res->stop_reason, "interrupted");
    return LH_OK;
}

/* ---- the phases ------------------------------------------------------ */

static lh_status phase_prepare(search *s, lh_error *err)
{
    lh_search_result *res = s->res;
    res->n = s->n;
    res->best_loss = res->best_objective = res->rescored_loss = NAN;
    res->weights = calloc(s->n, sizeof *res->weights);
    res->kept = malloc(s->n * sizeof *res->kept);
    if (!res->weights || !res->kept)
        return lh_error_set(err, LH_ERR_NOMEM, "search: out of memory");
    res->n_kept = s->n;
    for (size_t i = 0; i < s->n; i++)
        res->kept[i] = i;
    lh_status st = lh_fingerprint_build(s->o, s->mods, s->n, s->ex, &s->settings, err);
    if (st == LH_OK && s->o->resume)
        st = lh_checkpoint_load(&s->ck, s->n, err);
    return st;
}

/* The budget rule for a search over k weights: four times the optimizer's
 * start design (COBYLA: the simplex of k + 1 points, and three times as
 * many steps). Twice was measured too generous on the zoo: 24 modules and
 * budget 40 then kept 7 for 16 evaluations, 5.8% exact match, against
 * 18.2% for the 3 that four times keeps (docs/results.md). */
static int search_needs(const lh_search_opts *o, size_t k)
{
    return 4 * lh_optimizer_start_points(o->optimizer, (int)k);
}

/* The most weights (at least the optimizer's smallest dimension, at most
 * n) a search of `left` evaluations can afford under the rule. */
static size_t affordable(const lh_search_opts *o, size_t n, long left)
{
    const lh_optimizer_info *oi = lh_optimizer_find(o->optimizer);
    size_t k = 1;
    while (k < n && search_needs(o, k + 1) <= left)
        k++;
    if (oi && k < (size_t)oi->min_n)
        k = (size_t)oi->min_n;
    return k < n ? k : n;
}

/* How the budget is spent (lorahub-adapt(1), "The budget"): whether every
 * module is scored alone first, how many are kept, and what is left for
 * the mode. Everything scored counts; the final re-score comes on top. */
static lh_status plan_budget(search *s, lh_error *err)
{
    const lh_search_opts *o = s->o;
    size_t n = s->n;
    long b = o->budget;
    int best_single = o->select == LH_SELECT_BEST_SINGLE;
    int autosel = o->select == LH_SELECT_SEARCH && o->preselect > 0 && o->preselect_auto;
    s->score_singles = best_single || (o->preselect > 0 && !o->preselect_auto);
    s->keep = best_single ? 1 : s->score_singles && (size_t)o->preselect < n ? (size_t)o->preselect : n;
    if (autosel && o->start_best_single) {
        /* the start needs the single scores: keep what the rest can search */
        s->score_singles = 1;
        s->keep = affordable(o, n, b - (long)n);
    } else if (autosel && search_needs(o, n) > b && b - (long)n >= search_needs(o, 1)) {
        /* more modules than the budget can search, and enough to score
         * them alone first: keep as many as what is left can search */
        s->score_singles = 1;
        s->keep = affordable(o, n, b - (long)n);
    } /* else all are searched: preselecting could not be paid for */
    long left = b - (s->score_singles ? (long)n : 0);
    s->search_budget = best_single ? 0 : (int)left;
    if (left < 0 || (!best_single && left < 1))
        return lh_error_set(err, LH_ERR_ARG,
                            "--budget %ld cannot pay for scoring the %zu modules alone%s (it counts "
                            "everything scored): give at least %zu",
                            b, n, best_single ? "" : " and a search", n + (best_single ? 0 : 1));
    return LH_OK;
}

/* Preselection and best-single: which modules the weights range over. */
static lh_status phase_preselect(search *s, lh_error *err)
{
    const lh_search_opts *o = s->o;
    lh_status pst = plan_budget(s, err);
    if (pst != LH_OK)
        return pst;
    s->res->search_budget = s->search_budget;
    if (!s->score_singles)
        return LH_OK;
    /* Modules that cannot be composed together fail here, before any
     * backend time is spent on them one by one. */
    lh_compose_plan *all = NULL;
    lh_status st = lh_compose_plan_new(s->mods, s->n, &o->merge, &all, err);
    lh_compose_plan_free(all);
    if (st != LH_OK)
        return st;
    st = note_interrupt(s, single_losses(s, err));
    if (st != LH_OK || s->interrupted)
        return st;
    size_t k = s->keep;
    keep_lowest(s->res->single_loss, s->n, k, s->res->kept);
    s->res->n_kept = k;
    return LH_OK;
}

/* The plan over the kept modules, the trace, and the first checkpoint. */
static lh_status phase_open(search *s, lh_error *err)
{
    s->nk = s->res->n_kept;
    s->sub = malloc(s->nk * sizeof *s->sub);
    s->w = calloc(s->nk, sizeof *s->w);
    if (!s->sub || !s->w)
        return lh_error_set(err, LH_ERR_NOMEM, "search: out of memory");
    for (size_t i = 0; i < s->nk; i++)
        s->sub[i] = s->mods[s->res->kept[i]];
    lh_status st = lh_compose_plan_new(s->sub, s->nk, &s->o->merge, &s->plan, err);
    /* A backend that scores cat from the weights alone gets just them: on a
     * 7B model one merged candidate of 20 rank-16 modules is 671 MB, a
     * population of 16 would be 10.7 GB, and merging it costs time the
     * servers wait for. */
    s->sum_only = s->o->merge.method == LH_MERGE_CAT && lh_backend_iface(s->b)->scores_cat_by_sum;
    if (st == LH_OK)
        st = lh_trace_open(&s->trace, s->o->trace_path, s->sub, s->nk, err);
    /* Record the single-module losses at once; a resumed run rewrites the
     * checkpoint only once it goes past what the file holds, so a failed
     * or interrupted replay never loses recorded evaluations. */
    if (st == LH_OK && !s->interrupted && !s->o->resume)
        st = write_checkpoint(s, err);
    return st;
}

/* Where the search starts: zeros (the base model, as in the reference),
 * or weight 1 on the best single module, so that the search refines what
 * retrieval already found. */
static void choose_start(search *s)
{
    const lh_search_result *res = s->res;
    if (!s->o->start_best_single || !res->single_loss || s->nk == 0)
        return;
    size_t bj = 0;
    for (size_t j = 1; j < s->nk; j++)
        if (res->single_loss[res->kept[j]] < res->single_loss[res->kept[bj]])
            bj = j;
    s->w[bj] = 1.0;
}

static lh_status run_optimizer(search *s, lh_error *err)
{
    const lh_search_opts *o = s->o;
    choose_start(s);
    lh_optim_opts oo;
    memset(&oo, 0, sizeof oo);
    oo.n = (int)s->nk;
    oo.x0 = s->w;
    oo.lower = -o->bound;
    oo.upper = o->bound;
    oo.budget = s->search_budget;
    oo.seed = o->seed;
    oo.popsize = o->population;
    double *xb = calloc(s->nk, sizeof *xb); /* [nk] the optimizer's best; s->best is ours */
    lh_optim_result orr;
    memset(&orr, 0, sizeof orr);
    if (!xb)
        return lh_error_set(err, LH_ERR_NOMEM, "search: out of memory");
    lh_status st = lh_optimize(o->optimizer, &oo, objective_cb, s, xb, &orr, err);
    free(xb);
    if (st == LH_OK)
        snprintf(s->res->stop_reason, sizeof s->res->stop_reason, "%s",
                 orr.stop_reason[0] ? orr.stop_reason : "converged");
    return st;
}

/* Retrieve, score the uniform blend, or search; then the best point. */
static lh_status phase_mode(search *s, lh_error *err)
{
    const lh_search_opts *o = s->o;
    lh_search_result *res = s->res;
    lh_status st = LH_OK;
    if (s->interrupted) {
    } else if (o->select == LH_SELECT_BEST_SINGLE) {
        s->w[0] = 1.0;
        res->best_loss = res->single_loss[res->kept[0]];
        res->best_objective = o->loss_scale * res->best_loss + o->l1 * 1.0;
        snprintf(res->stop_reason, sizeof res->stop_reason, "selected");
    } else if (o->select == LH_SELECT_UNIFORM) {
        for (size_t i = 0; i < s->nk; i++)
            s->w[i] = 1.0 / (double)s->nk;
        double f;
        st = evaluate(s, s->w, 1, &f, 1, err);
        if (st == LH_OK)
            snprintf(res->stop_reason, sizeof res->stop_reason, "selected");
    } else {
        st = run_optimizer(s, err);
    }
    st = note_interrupt(s, st);
    res->evaluations = (int)s->n_rec;
    if (s->n_rec && st == LH_OK) {
        res->eval_loss = malloc(s->n_rec * sizeof *res->eval_loss);
        res->eval_objective = malloc(s->n_rec * sizeof *res->eval_objective);
        if (!res->eval_loss || !res->eval_objective)
            st = lh_error_set(err, LH_ERR_NOMEM, "search: out of memory");
        for (size_t e = 0; st == LH_OK && e < s->n_rec; e++, res->n_evals++) {
            res->eval_loss[e] = s->rec[e].loss;
            res->eval_objective[e] = s->rec[e].objective;
        }
    }
    res->total_evaluations = (res->single_loss ? (int)s->n : 0) + res->evaluations;
    if (s->best >= 0) {
        memcpy(s->w, s->rec_w + (size_t)s->best * s->nk, s->nk * sizeof *s->w);
        res->best_loss = s->rec[s->best].loss;
        res->best_objective = s->rec[s->best].objective;
    }
    /* The trace is a record of what ran: closed (kept) after an error too,
     * which then is the one reported. */
    lh_status tst = LH_OK;
    if (s->interrupted && s->n_rec == 0)
        lh_trace_release(&s->trace); /* nothing ran: no trace either */
    else
        tst = lh_trace_close(&s->trace, st == LH_OK ? err : NULL);
    if (st == LH_OK)
        st = tst;
    for (size_t i = 0; st == LH_OK && i < s->nk; i++)
        res->weights[res->kept[i]] = s->w[i];
    return st;
}

/* Compose the chosen point (the result) and score it once more: a noisy or
 * stateful backend shows here. */
static lh_status phase_rescore(search *s, lh_error *err)
{
    lh_search_result *res = s->res;
    lh_status st = ensure_outputs(s, 1, err);
    if (st == LH_OK && s->sum_only) {
        /* the result is written out: it needs its targets, merged */
        lh_adapter_free(s->outs[0]);
        s->outs[0] = NULL;
        st = lh_compose_alloc_output(s->plan, &s->outs[0], err);
    }
    if (st == LH_OK)
        st = lh_compose_into(s->plan, s->w, s->outs[0], err);
    if (st == LH_OK && !s->interrupted) {
        s->cands[0] = s->outs[0];
        report_progress(s, "rescore", 0, 1, NAN, res->best_objective, 0);
        st = note_interrupt(s, score_batch(s, s->cands, 1, s->loss_buf, NULL, err));
        if (st == LH_OK && !s->interrupted) {
            res->rescored_loss = s->loss_buf[0];
            res->total_evaluations++;
        }
    }
    if (st == LH_OK) {
        res->merged = s->outs[0]; /* keep the composed output: it is the result */
        s->outs[0] = NULL;
        if (res->merged && !res->merged->name)
            res->merged->name = strdup("merged");
    }
    return st;
}

/* Interrupted after the checkpoint of the single-module losses, before
 * the first evaluation: there is no point to write (w = 0 would be an
 * adapter that changes nothing). */
static lh_status interrupted_before_search(const search *s, lh_error *err)
{
    if (s->o->checkpoint_path && s->res->single_loss)
        return lh_error_set(err, LH_ERR_INTERRUPTED,
                            "interrupted before the first search evaluation; nothing written but "
                            "the single-module losses in '%s' (resume with --resume)",
                            s->o->checkpoint_path);
    return lh_error_set(err, LH_ERR_INTERRUPTED,
                        "interrupted before the first search evaluation; nothing written");
}

static void search_release(search *s)
{
    lh_trace_release(&s->trace);
    for (int i = 0; i < s->n_outs; i++)
        lh_adapter_free(s->outs[i]);
    free(s->outs);
    free(s->cands);
    free(s->loss_buf);
    free(s->slot_of);
    lh_compose_plan_free(s->plan);
    free(s->sub);
    free(s->w);
    free(s->rec_w);
    free(s->rec);
    lh_checkpoint_release(&s->ck);
    lh_fingerprint_release(&s->settings);
}

lh_status lh_search_modules(const lh_search_opts *o, const lh_adapter *const *mods, size_t n,
                        const lh_examples *ex, lh_backend *b, lh_search_result *res,
                        lh_error *err)
{
    memset(res, 0, sizeof *res);
    lh_status st = check_opts(o, n, err);
    if (st != LH_OK)
        return st;
    if (o->select == LH_SELECT_AUTO)
        return lh_search_auto(o, mods, n, ex, b, res, err);
    search s;
    memset(&s, 0, sizeof s);
    s.o = o;
    s.mods = mods;
    s.n = n;
    s.ex = ex;
    s.b = b;
    s.res = res;
    s.best = -1;
    s.t0 = lh_monotonic_seconds();
    lh_checkpoint_init(&s.ck, o->checkpoint_path, &s.settings);

    st = phase_prepare(&s, err);
    if (st == LH_OK)
        st = phase_preselect(&s, err);
    if (st == LH_OK && s.interrupted) /* no trace, no checkpoint, no result: say so */
        st = lh_error_set(err, LH_ERR_INTERRUPTED,
                          "interrupted while scoring the modules alone (%d of %zu scored), "
                          "before any search; nothing written",
                          res->preselect_evaluations, n);
    if (st == LH_OK)
        st = phase_open(&s, err);
    if (st == LH_OK)
        st = phase_mode(&s, err);
    if (st == LH_OK && s.interrupted && s.best < 0 && o->select != LH_SELECT_BEST_SINGLE)
        st = interrupted_before_search(&s, err);
    if (st == LH_OK)
        st = phase_rescore(&s, err);
    res->wall_seconds = lh_monotonic_seconds() - s.t0;
    /* A run that failed before anything was scored leaves no checkpoint:
     * there is nothing to resume (an interrupt keeps it, for --resume). */
    if (st != LH_OK && st != LH_ERR_INTERRUPTED && s.ck_written && !o->resume && s.n_rec == 0 &&
        !res->single_loss)
        unlink(o->checkpoint_path);
    search_release(&s);
    if (st != LH_OK) {
        lh_search_result_release(res);
        return st;
    }
    if (s.interrupted)
        return lh_error_set(err, LH_ERR_INTERRUPTED, "interrupted after %d evaluations",
                            res->evaluations);
    return LH_OK;
}

void lh_search_opts_default(lh_search_opts *o)
{
    memset(o, 0, sizeof *o);
    lh_merge_opts_default(&o->merge);
    o->optimizer = "cobyla";
    o->budget = 40;
    o->bound = 1.5;
    o->l1 = 0.05;
    o->loss_scale = 1.0;
    o->seed = 42;
}

void lh_search_result_release(lh_search_result *res)
{
    if (!res)
        return;
    free(res->weights);
    free(res->single_loss);
    free(res->kept);
    free(res->eval_loss);
    free(res->eval_objective);
    lh_adapter_free(res->merged);
    memset(res, 0, sizeof *res);
}

static const char *const select_names[] = {
    [LH_SELECT_SEARCH] = "search",
    [LH_SELECT_BEST_SINGLE] = "best-single",
    [LH_SELECT_UNIFORM] = "uniform",
    [LH_SELECT_AUTO] = "auto",
};

const char *lh_select_name(lh_select s)
{
    return (size_t)s < sizeof select_names / sizeof select_names[0] ? select_names[s] : "search";
}

int lh_select_from_name(const char *name, lh_select *out)
{
    for (size_t i = 0; name && i < sizeof select_names / sizeof select_names[0]; i++)
        if (!strcmp(select_names[i], name)) {
            *out = (lh_select)i;
            return 0;
        }
    return -1;
}

/* adapt/search.h - the ADAPT search driver.
 *
 * Given N loaded modules, few-shot examples and an open backend, search
 * the weights w [N] in [-bound, bound]^N (start 0) with a gradient-free
 * optimizer, minimizing
 *     objective(w) = loss_scale * loss(compose(w)) + l1 * mean_i |w_i|
 * where loss is the backend's mean token cross-entropy. Each evaluation
 * composes into buffers sized once (lh_compose_plan_new / lh_compose_into)
 * and asks the backend to score a whole optimizer batch in one call.
 *
 * The budget is a hard cap. Every evaluation is appended to a trace (TSV)
 * and to a checkpoint (JSON, rewritten atomically after every batch); a
 * resumed run replays the deterministic optimizer and answers the recorded
 * evaluations from the checkpoint without calling the backend, refusing
 * to go on when a replayed point differs bitwise from the recorded one.
 * A set interrupt flag stops the run between evaluations (and inside
 * backend waits where the backend supports it); the best point so far is
 * still returned, with LH_ERR_INTERRUPTED. */
#ifndef LH_SEARCH_H
#define LH_SEARCH_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#include "compose/compose.h"
#include "lib/adapter.h"
#include "lib/examples.h"
#include "lib/status.h"
#include "adapt/backend/backend.h"
#include "adapt/modules.h"

/* The objective given to the optimizer for a NaN/Inf loss when nan_as_worst
 * is set: finite, so NLopt's local models stay finite, and far above any
 * cross-entropy a real model produces (ln(vocab) is ~12 nats for 150k). */
#define LH_SEARCH_WORST 1e9

/* ---- the search ----------------------------------------------------- */

typedef enum lh_select {
    LH_SELECT_SEARCH = 0,     /* optimize the weights (the default) */
    LH_SELECT_BEST_SINGLE,    /* the module with the lowest loss at weight 1 */
    LH_SELECT_UNIFORM,        /* w = 1/N, scored once */
    LH_SELECT_AUTO            /* best-single or search, decided by cross-validation on the
                                 examples (adapt/auto.c) */
} lh_select;

typedef struct lh_search_progress {
    const char *phase;        /* "preselect", "search", "rescore" */
    int evaluation;           /* evaluations done in this phase (replayed included) */
    int total;                /* of this many */
    double loss;              /* of the latest evaluation (NaN if none) */
    double best_objective;    /* best so far in this phase (HUGE_VAL if none) */
    double elapsed_s;         /* since the search began */
    double eta_s;             /* estimated seconds left in this phase; < 0 unknown */
    int replayed;             /* the latest evaluation came from the checkpoint */
} lh_search_progress;

typedef struct lh_search_opts {
    lh_merge_opts merge;
    const char *optimizer;    /* lh_optimize name; default "cobyla" */
    int budget;               /* everything scored: single-module scores and the search's
                                 evaluations (the final re-score comes on top); default 40 */
    int population;           /* candidates per batch of a batch optimizer (cmaes, random);
                                 0 (default): the optimizer's own (cmaes: 4 + floor(3 ln n)) */
    double bound;             /* weights in [-bound, bound]; default 1.5 */
    double l1;                /* default 0.05 */
    double loss_scale;        /* the loss enters the objective times this: 1 (default), or
                                 1/examples for the reference's per-example scaling */
    uint64_t seed;            /* default 42 */
    int nan_as_worst;         /* NaN/Inf loss -> objective LH_SEARCH_WORST (else error) */
    int preselect;            /* > 0: keep this many modules by single-module loss first */
    int preselect_auto;       /* with preselect > 0 and a search: the budget rule decides
                                 whether and how many (lorahub-adapt(1), "The budget") */
    int start_best_single;    /* with preselect: the search starts at weight 1 on the module
                                 with the lowest single-module loss, 0 elsewhere (else at w = 0,
                                 the reference's start) */
    int pick;                 /* for the report only: how many modules the caller drew
                                 from the candidates (0 = all of them) */
    lh_select select;
    const char *trace_path;       /* TSV written while searching, or NULL */
    const char *checkpoint_path;  /* JSON rewritten after every batch, or NULL */
    int resume;                   /* replay checkpoint_path (must exist) */
    int force;                    /* replace an existing trace/checkpoint when not resuming */
    /* Extra text folded into the checkpoint's settings (the backend and its
     * model/command), so a checkpoint is not resumed against another model. */
    const char *fingerprint_extra;
    volatile sig_atomic_t *interrupt;
    void (*progress)(void *ud, const lh_search_progress *p);
    void *progress_ud;
} lh_search_opts;

void lh_search_opts_default(lh_search_opts *o);

typedef struct lh_search_result {
    size_t n;                 /* modules given */
    double *weights;          /* [n] the chosen weights (0 for modules preselection dropped) */
    double best_loss;         /* loss of the chosen point when it was evaluated */
    double best_objective;
    double rescored_loss;     /* the chosen point scored once more at the end (NaN if not) */
    int evaluations;          /* search evaluations (replayed included) */
    int search_budget;        /* what the budget left the search after the single scores */
    int scored;               /* candidates the backend scored in this run (all phases, the
                                 re-score included; replayed ones are not) */
    int total_evaluations;    /* single scores + evaluations (replayed included) + the
                                 re-score: what the result cost, <= budget + 1 */
    int replayed;             /* of them answered from the checkpoint */
    int backend_calls;        /* score requests sent to the backend, all phases */
    double wall_seconds;
    double backend_seconds;   /* inside lh_backend_score */
    char stop_reason[64];     /* optimizer's reason, "budget", "interrupted", "selected" */
    lh_adapter *merged;       /* compose(weights) over the kept modules */
    /* Preselection / best-single (NULL/0 otherwise). */
    double *single_loss;      /* [n] loss of each module alone at weight 1 */
    int preselect_evaluations;
    size_t n_kept;
    size_t *kept;             /* [n_kept] indices of the modules searched over */
    /* Every evaluation of the search that chose the result, in order (for
     * the plot; select auto: the refit's, not the folds'): [n_evals], or NULL. */
    size_t n_evals;
    double *eval_loss;
    double *eval_objective;
    /* select auto (adapt/auto.c): the decision and what it rests on. */
    int auto_ran;             /* the fields below are set */
    lh_select auto_decision;  /* LH_SELECT_BEST_SINGLE or LH_SELECT_SEARCH */
    int auto_folds;
    double auto_single_loss;  /* mean held-out loss of the best single module over the folds */
    double auto_search_loss;  /* mean held-out loss of the composed search over the folds */
    int auto_evaluations;     /* search evaluations of the folds (part of evaluations) */
    int auto_fold_budget;     /* the budget of each fold's search */
    int auto_other_evaluations; /* single-module and held-out scores of the folds */
    /* A test file scored after the search (filled by adapt/job.c, not by the
     * search; written in the report when test_n > 0). */
    size_t test_n, test_correct;
    double test_loss;
} lh_search_result;

/* Run the search. On LH_OK or LH_ERR_INTERRUPTED, res is filled (the best
 * point so far on interrupt; no re-score then) and must be released with
 * lh_search_result_release; on other errors res holds nothing. */
lh_status lh_search_modules(const lh_search_opts *o, const lh_adapter *const *mods, size_t n,
                        const lh_examples *ex, lh_backend *b, lh_search_result *res,
                        lh_error *err);
void lh_search_result_release(lh_search_result *res);

/* select auto: k-fold cross-validation over the examples (leave-one-out up
 * to LH_AUTO_MAX_FOLDS examples), then the winner refit on all of them.
 * Called by lh_search_modules for LH_SELECT_AUTO. */
#define LH_AUTO_MAX_FOLDS 5
lh_status lh_search_auto(const lh_search_opts *o, const lh_adapter *const *mods, size_t n,
                         const lh_examples *ex, lh_backend *b, lh_search_result *res,
                         lh_error *err);

/* "search", "best-single", "uniform", "auto"; lh_select_from_name returns -1 for
 * another name. */
const char *lh_select_name(lh_select s);
int lh_select_from_name(const char *name, lh_select *out);

#endif

/* compose/compose.h - merging N LoRA modules into one, with weights.
 *
 * Module i has targets with A_i [r_i, d_in], B_i [d_out, r_i], scale s_i;
 * weight w_i; c_i = w_i * s_i. Per target (see lorahub-compose(1)):
 *   lorahub  A = sum w_i A_i,  B = sum w_i s_i B_i   (ranks zero-padded)
 *   linear   A = sum sgn(c_i) sqrt|c_i| A_i, B = sum sqrt|c_i| B_i (PEFT)
 *   cat      A = rows[c_i A_i], B = cols[B_i]: exactly sum c_i B_i A_i
 *   svd      rank-k truncation of sum c_i B_i A_i from the stacked factors
 *   ties, dare-linear, dare-ties, magnitude-prune (on factors, equal ranks)
 *   and their -svd forms (on dense deltas, then rank-k SVD).
 * A target missing from a module counts as zero. The output folds every
 * scale into B: scale 1, alpha = r, one rank everywhere.
 *
 * No file I/O here. The plan/into split lets ADAPT compose once per
 * evaluation without allocating: lh_compose_plan_new validates and sizes
 * everything, lh_compose_into fills preallocated buffers. */
#ifndef LH_COMPOSE_H
#define LH_COMPOSE_H

#include <stddef.h>
#include <stdint.h>
#include "lib/adapter.h"
#include "lib/status.h"

typedef enum lh_merge_method {
    LH_MERGE_LORAHUB = 0,
    LH_MERGE_LINEAR,
    LH_MERGE_CAT,
    LH_MERGE_SVD,
    LH_MERGE_TIES,
    LH_MERGE_DARE_LINEAR,
    LH_MERGE_DARE_TIES,
    LH_MERGE_MAGNITUDE_PRUNE,
    LH_MERGE_TIES_SVD,
    LH_MERGE_DARE_LINEAR_SVD,
    LH_MERGE_DARE_TIES_SVD,
    LH_MERGE_MAGNITUDE_PRUNE_SVD,
    LH_MERGE_COUNT
} lh_merge_method;

typedef enum lh_majority_sign { LH_SIGN_TOTAL = 0, LH_SIGN_FREQUENCY = 1 } lh_majority_sign;

typedef struct lh_merge_opts {
    lh_merge_method method;
    int rank;                 /* svd forms: output rank k; 0 = largest input rank */
    double density;           /* ties/dare/magnitude-prune: fraction kept, (0,1] */
    lh_majority_sign majority_sign;
    uint64_t seed;            /* DARE's Bernoulli mask */
    double clamp_quantile;    /* svd forms: 0 = off, else in (0,1] */
    int peft_parity;          /* 1 = PEFT's quirks: svd forms scale twice (w s^2 B A),
                                 TIES elects the sign on unweighted tensors */
    int allow_nonfinite;      /* 0 = the plan refuses a module holding NaN/Inf (naming it
                                 and the tensor); 1 = no such check (adapt's nan-as-worst
                                 scores those candidates as the worst instead) */
} lh_merge_opts;

/* Defaults: lorahub, rank 0, density 1, total, seed 0, no clamp, exact math. */
void lh_merge_opts_default(lh_merge_opts *o);
const char *lh_merge_method_name(lh_merge_method m);
/* Parse "lorahub", "cat", "dare-ties-svd", ... Returns 0 on success. */
int lh_merge_method_from_name(const char *name, lh_merge_method *out);

typedef struct lh_compose_plan lh_compose_plan;

/* Check the modules against each other (same target, same shape: else an
 * error naming both shapes and both files), check every value is finite
 * (unless o->allow_nonfinite), and size the output and the workspace. mods
 * must outlive the plan. */
lh_status lh_compose_plan_new(const lh_adapter *const *mods, size_t n, const lh_merge_opts *o,
                              lh_compose_plan **out, lh_error *err);
void lh_compose_plan_free(lh_compose_plan *p);
/* An output adapter with buffers of the plan's shapes (owned by caller). */
lh_status lh_compose_alloc_output(const lh_compose_plan *p, lh_adapter **out, lh_error *err);
/* Compose with weights w [n] into out (from lh_compose_alloc_output).
 * Allocation-free for lorahub, linear and cat. */
lh_status lh_compose_into(lh_compose_plan *p, const double *w /* [n] */, lh_adapter *out,
                          lh_error *err);
/* A cat output that is only its sum (lh_adapter_sum, the modules at their
 * weights) and has no targets: for a backend that scores a cat candidate
 * from its sum alone (lh_backend_i.scores_cat_by_sum: llamacpp, server), so
 * a search neither merges nor holds a full adapter per candidate. The plan
 * must be cat. */
lh_status lh_compose_alloc_sum_output(const lh_compose_plan *p, lh_adapter **out, lh_error *err);
/* Record weights w [n] (each finite, as lh_compose_into checks) as the sum of
 * out (from lh_compose_alloc_sum_output). */
lh_status lh_compose_sum_into(const lh_compose_plan *p, const double *w /* [n] */,
                              lh_adapter *out, lh_error *err);
/* One-shot convenience: plan + alloc + into. */
lh_status lh_compose(const lh_adapter *const *mods, size_t n, const double *w /* [n] */,
                     const lh_merge_opts *o, lh_adapter **out, lh_error *err);

#endif

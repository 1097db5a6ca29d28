/* adapt/evaluate.h - the metrics of lorahub-eval(1) over any backend:
 * mean token cross-entropy (score), and exact match of greedy outputs
 * (generate). */
#ifndef LH_EVALUATE_H
#define LH_EVALUATE_H

#include <stddef.h>

#include "adapt/backend/backend.h"

/* The exact-match rule of lorahub-eval(1): 1 when got and want are equal
 * after stripping ASCII whitespace at both ends, folding ASCII letters to
 * lower case and removing one trailing period; else 0 (also on NULL). */
int lh_exact_match(const char *got, const char *want);

typedef struct lh_eval_opts {
    int want_loss;        /* score the examples */
    int want_exact_match; /* generate and compare */
    int max_new_tokens;   /* generation limit per example */
} lh_eval_opts;

typedef struct lh_eval_result {
    double loss;          /* mean token cross-entropy (want_loss) */
    int have_tokens;      /* the backend counts tokens (want_loss); exec does not */
    size_t tokens;        /* tokens the loss averages over (have_tokens), else 0 */
    size_t n;             /* examples */
    size_t correct;       /* exact matches (want_exact_match) */
    char **outputs;       /* [n] greedy outputs (want_exact_match), else NULL */
    int *match;           /* [n] 1 where outputs[i] matched (want_exact_match), else NULL */
} lh_eval_result;

/* Evaluate base + cand (NULL = base) on ex. A non-finite loss is an
 * LH_ERR_NUMERIC error. On error res holds nothing. */
lh_status lh_evaluate(lh_backend *b, const lh_adapter *cand, const lh_examples *ex,
                      const lh_eval_opts *o, lh_eval_result *res, lh_error *err);
void lh_eval_result_release(lh_eval_result *res);

#endif

/* adapt/backend/backend.h - forward-pass backends behind one vtable.
 *
 * A backend scores candidate adapters on few-shot examples: loss[i] is the
 * mean token cross-entropy of all expected output tokens of all examples
 * under base model + cands[i]. score takes several candidates so a backend
 * can evaluate a whole optimizer population in one batched pass.
 *
 * The contract every backend keeps (tests/check_backend_contract.c runs
 * each registered backend through it):
 *   - cands[i] == NULL means the base model alone.
 *   - n == 0 is LH_OK and touches nothing (the wrapper answers it).
 *   - A candidate whose loss is NaN or Inf (non-finite weights) is not an
 *     error: loss[i] holds the non-finite value, the other candidates
 *     their real losses, and the call returns LH_OK. What a non-finite
 *     loss means (an error, or the worst objective) is the caller's choice.
 *   - On any status other than LH_OK, loss[] is unspecified: the caller
 *     must not read it.
 *   - Scoring is deterministic: the same candidates and examples give the
 *     same losses, whatever else was scored before, and a candidate's loss
 *     does not depend on the other candidates of the call beyond rounding
 *     (native, in F32, differs by about 1e-7 relative with a candidate's
 *     place in a batch).
 *   - Once *opts.interrupt is non-zero, score and generate return
 *     LH_ERR_INTERRUPTED soon (between layers or requests, and inside
 *     waits on a child), leaving the backend usable for close.
 *   - Errors are one line naming the backend's input (model directory,
 *     command) or the example (1-based) at fault.
 *
 * Backends read their own settings by job-file key (lorahub-job(5)), so
 * the command line and the public API hand over what the user gave without
 * knowing which backend takes which key; cmd/ never sees a backend's ctx. */
#ifndef LH_BACKEND_H
#define LH_BACKEND_H

#include <signal.h>
#include <stddef.h>

#include "lib/adapter.h"
#include "lib/examples.h"
#include "lib/status.h"

typedef struct lh_backend_opts {
    /* {key, value, key, value, ..., NULL}, or NULL: settings by job-file
     * key ("base", "backend-cmd", "backend-timeout", "threads", "bos",
     * "eos"). A backend ignores keys it does not list in its keys[]. */
    const char *const *params;
    const char *tmp_dir;      /* parent of private temp files; NULL = $TMPDIR or /tmp */
    /* Set (non-zero) by the caller's signal handler, or NULL: see the contract. */
    volatile sig_atomic_t *interrupt;
    /* A warning the run survives ("dropping server URL after 3 failures in
     * a row: ..."): one line, no prefix, no newline; or NULL, and nothing is
     * said. Library code does not print: the caller decides where it goes. */
    void (*warn)(void *ud, const char *line);
    void *warn_ud;
} lh_backend_opts;

void lh_backend_opts_default(lh_backend_opts *o);
/* The value of key in o->params (the last one given), or NULL. */
const char *lh_backend_param(const lh_backend_opts *o, const char *key);

/* A setting a backend reads. */
typedef struct lh_backend_key {
    const char *key;          /* job-file key, also the long option: "base" */
    int required;             /* open fails without it */
    const char *what;         /* "MODEL_DIR", "CMD": for "the native backend needs --base MODEL_DIR" */
} lh_backend_key;

/* What the CLI and the search need to know about an open backend. */
typedef struct lh_backend_info {
    /* Folded into the checkpoint fingerprint, so a checkpoint is not
     * resumed against another model: the model directory for native; empty
     * for exec, whose command may change (a device flag, a path) without
     * the model behind it changing. */
    char identity[1024];
    /* One line for people: "native: DIR (llama, 4 layers, dim 64, vocab
     * 300, 0.9M parameters, 3.4 MB F32)". */
    char description[512];
} lh_backend_info;

typedef struct lh_backend_i {
    const char *name;
    const char *summary;           /* one line: what it runs */
    const lh_backend_key *keys;    /* the settings it reads; ends at a NULL key */
    /* 1: a cat candidate (lh_adapter.sum set) is scored from its sum alone,
     * its targets never read, so the search hands it a sum-only output
     * (lh_compose_alloc_sum_output) and merges nothing per candidate. */
    int scores_cat_by_sum;
    lh_status (*open)(const lh_backend_opts *o, void **ctx, lh_error *err);
    lh_status (*score)(void *ctx, const lh_adapter *const *cands /* [n], NULL = base */, int n,
                       const lh_examples *ex, double *loss /* [n] */, lh_error *err);
    /* Optional (may be NULL): greedy outputs, one malloc'd string per example;
     * on error every outputs[i] is NULL. */
    lh_status (*generate)(void *ctx, const lh_adapter *cand /* or NULL */, const lh_examples *ex,
                          int max_new_tokens, char **outputs /* [ex->n] */, lh_error *err);
    /* Optional: how many tokens score averages over for ex. */
    lh_status (*count_tokens)(void *ctx, const lh_examples *ex, size_t *n_tokens, lh_error *err);
    void (*describe)(void *ctx, lh_backend_info *info);
    void (*close)(void *ctx);
} lh_backend_i;

typedef struct lh_backend lh_backend;

/* The registered backends, NULL-terminated, in a fixed order; a backend
 * joins by adding its vtable to the table in backend.c. */
const lh_backend_i *const *lh_backend_list(void);
const lh_backend_i *lh_backend_find(const char *name);

/* Open by name; "no backend named 'x'" and a missing required key are
 * errors naming the key ("the exec backend needs --backend-cmd CMD"). */
lh_status lh_backend_open(const char *name, const lh_backend_opts *o, lh_backend **out,
                          lh_error *err);
/* Wrap a ctx the caller opened (its own scorer, or a test's); close calls
 * iface->close(ctx) when that is not NULL. */
lh_status lh_backend_wrap(const lh_backend_i *iface, void *ctx, lh_backend **out, lh_error *err);

const lh_backend_i *lh_backend_iface(const lh_backend *b);
const char *lh_backend_name(const lh_backend *b);
void lh_backend_describe(lh_backend *b, lh_backend_info *info);

lh_status lh_backend_score(lh_backend *b, const lh_adapter *const *cands, int n,
                           const lh_examples *ex, double *loss /* [n] */, lh_error *err);
lh_status lh_backend_generate(lh_backend *b, const lh_adapter *cand, const lh_examples *ex,
                              int max_new_tokens, char **outputs /* [ex->n] */, lh_error *err);
lh_status lh_backend_count_tokens(lh_backend *b, const lh_examples *ex, size_t *n_tokens,
                                  lh_error *err);
void lh_backend_close(lh_backend *b);

#endif

/* adapt/backend/backend.h - forward-pass backends behind one vtable.
 *
 * A backend scores candidate adapters on few-shot examples: loss[i] is the
 * mean token cross-entropy of all expected output tokens of all examples
 * under base model + cands[i]. score takes several candidates so a backend
 * can evaluate a whole optimizer population in one batched pass. */
#ifndef LH_BACKEND_H
#define LH_BACKEND_H

#include <signal.h>

#include "lib/adapter.h"
#include "lib/examples.h"
#include "lib/status.h"

typedef struct lh_backend_opts {
    const char *model_path;   /* native: base model directory */
    const char *command;      /* exec: shell command of the child */
    double timeout_s;         /* exec: per-request timeout; 0 = default (300 s) */
    int threads;              /* native: 0 = all cores */
    int add_bos;              /* native: BOS before the input (default 1) */
    int add_eos;              /* native: EOS after the output (default 1) */
    const char *tmp_dir;      /* exec: parent of the private temp dir; NULL = $TMPDIR or /tmp */
    /* Set (non-zero) by the caller's SIGINT handler, or NULL: a backend
     * checks it inside long waits and returns LH_ERR_INTERRUPTED. */
    volatile sig_atomic_t *interrupt;
} lh_backend_opts;

void lh_backend_opts_default(lh_backend_opts *o);

typedef struct lh_backend_i {
    const char *name;
    lh_status (*open)(const lh_backend_opts *o, void **ctx, lh_error *err);
    lh_status (*score)(void *ctx, const lh_adapter *const *cands /* [n], NULL = base */, int n,
                       const lh_examples *ex, double *loss /* [n] */, lh_error *err);
    /* Optional (may be NULL): greedy outputs, one malloc'd string per example. */
    lh_status (*generate)(void *ctx, const lh_adapter *cand /* or NULL */, const lh_examples *ex,
                          int max_new_tokens, char **outputs /* [ex->n] */, lh_error *err);
    void (*close)(void *ctx);
} lh_backend_i;

typedef struct lh_backend {
    const lh_backend_i *iface;
    void *ctx;
} lh_backend;

/* The built-in backends (adapt/backend/exec.c; native in native/). */
extern const lh_backend_i lh_backend_exec;
extern const lh_backend_i lh_backend_native;

/* Registry by name: "native", "exec". */
const lh_backend_i *lh_backend_find(const char *name);
lh_status lh_backend_open(const char *name, const lh_backend_opts *o, lh_backend **out,
                          lh_error *err);
lh_status lh_backend_score(lh_backend *b, const lh_adapter *const *cands, int n,
                           const lh_examples *ex, double *loss /* [n] */, lh_error *err);
lh_status lh_backend_generate(lh_backend *b, const lh_adapter *cand, const lh_examples *ex,
                              int max_new_tokens, char **outputs /* [ex->n] */, lh_error *err);
void lh_backend_close(lh_backend *b);

#endif

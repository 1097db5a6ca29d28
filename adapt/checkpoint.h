/* adapt/checkpoint.h - what a search writes as it goes, and reads back to
 * resume: the settings fingerprint, the checkpoint (JSON, rewritten
 * atomically after every batch) and the trace (TSV, renamed into place
 * when the search ends).
 *
 * The checkpoint stores each point and loss both as JSON numbers (for
 * people) and as C99 hex floats (for an exact replay). Its "settings" are
 * the fingerprint: everything that decides the trajectory, so that a
 * checkpoint made under other settings is refused instead of replayed. */
#ifndef LH_CHECKPOINT_H
#define LH_CHECKPOINT_H

#include <stdio.h>

#include "adapt/search.h"
#include "lib/strbuf.h"

#define LH_CHECKPOINT_VERSION 1
#define LH_FINGERPRINT_MAX 24

/* key -> value text, in the order the checkpoint lists them. */
typedef struct lh_fingerprint {
    size_t n;
    char *key[LH_FINGERPRINT_MAX];
    char *val[LH_FINGERPRINT_MAX];
} lh_fingerprint;

/* The fingerprint of a search over mods [n] with examples ex: optimizer,
 * method, merge, budget, bound, l1, seed, nan_as_worst, preselect, select,
 * start, modules (names and file sizes), examples (count and FNV-1a hash)
 * and backend (o->fingerprint_extra). */
lh_status lh_fingerprint_build(const lh_search_opts *o, const lh_adapter *const *mods, size_t n,
                               const lh_examples *ex, lh_fingerprint *fp, lh_error *err);
/* Its value for key, or NULL. */
const char *lh_fingerprint_get(const lh_fingerprint *fp, const char *key);
void lh_fingerprint_release(lh_fingerprint *fp);

typedef struct lh_checkpoint {
    const char *path;               /* NULL: no checkpoint is kept */
    const lh_fingerprint *settings; /* written as "settings", checked on load */
    lh_sb body;                     /* this run's evaluation records, comma-joined */
    /* the recorded run being replayed (lh_checkpoint_load) */
    size_t n_all;                   /* modules given (row stride of w) */
    size_t n_rec;
    size_t wlen;                    /* weights per recorded point */
    double *w;                      /* [n_rec, n_all], rows of wlen used */
    double *loss;                   /* [n_rec] */
    double *ms;                     /* [n_rec] */
    size_t n_single;
    double *single;                 /* [n_single] single-module losses */
} lh_checkpoint;

void lh_checkpoint_init(lh_checkpoint *c, const char *path, const lh_fingerprint *settings);
/* Read c->path; refuses (naming the setting) a checkpoint whose settings
 * differ from c->settings. */
lh_status lh_checkpoint_load(lh_checkpoint *c, size_t n_all, lh_error *err);
/* Append evaluation e (0-based) at w [nk] to the body. */
void lh_checkpoint_append(lh_checkpoint *c, size_t e, const double *w, size_t nk, double loss,
                          double ms);
/* Rewrite the file atomically with single [n_single] (NULL: none) and the
 * body. No-op without a path. */
lh_status lh_checkpoint_write(const lh_checkpoint *c, const double *single, size_t n_single,
                              lh_error *err);
void lh_checkpoint_release(lh_checkpoint *c);

typedef struct lh_trace {
    const char *path;   /* NULL: no trace */
    FILE *f;
    char *tmp;          /* written here, renamed to path by lh_trace_close */
} lh_trace;

/* Open a trace whose weight columns are the names of cols [nk]. */
lh_status lh_trace_open(lh_trace *t, const char *path, const lh_adapter *const *cols, size_t nk,
                        lh_error *err);
/* One line: evaluation e (0-based), loss, objective, w [nk], milliseconds. */
void lh_trace_line(lh_trace *t, size_t e, double loss, double objective, const double *w,
                   size_t nk, double ms);
/* Flush, fsync and rename into place (the trace is a record of what ran,
 * so it is kept after a failed search too). */
lh_status lh_trace_close(lh_trace *t, lh_error *err);
/* Drop an open trace (its temporary file is removed). */
void lh_trace_release(lh_trace *t);

#endif

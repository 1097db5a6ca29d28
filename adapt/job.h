/* adapt/job.h - one `lorahub adapt` job as library calls: settings (a
 * job file, options, a preset) in, a searched adapter, report and weights
 * file out. The CLI (cmd/adapt.c) is option parsing, progress drawing,
 * SIGINT and messages over these calls.
 *
 *   lh_job_new    resolve and check the settings; no module is loaded yet,
 *                 so a usage error costs nothing
 *   lh_job_load   modules, examples, the backend
 *   lh_job_run    the search, then the test file if one is set (the backend
 *                 is closed when it ends)
 *   lh_job_write  the adapter (PEFT), the report, the picture (SVG), the
 *                 weights file */
#ifndef LH_JOB_H
#define LH_JOB_H

#include <signal.h>
#include <stdio.h>

#include "adapt/search.h"
#include "adapt/settings.h"

/* Greedy tokens per test example (lorahub-eval(1)'s default). */
#define LH_JOB_TEST_MAX_NEW_TOKENS 32

typedef struct lh_job_hooks {
    void (*progress)(void *ud, const lh_search_progress *p);
    /* A remark worth a line on stderr ("using 20 of 22 modules, ..."), or NULL. */
    void (*notice)(void *ud, const char *line);
    /* A warning the run survives (a server dropped: lh_backend_opts.warn),
     * said even when notices are not; or NULL. */
    void (*warn)(void *ud, const char *line);
    void *ud;
    volatile sig_atomic_t *interrupt;  /* the caller's SIGINT flag, or NULL */
    FILE *out;                         /* where "-" outputs go; NULL: stdout */
    /* An open backend of the caller's (lh_backend_wrap) to score with; the
     * job neither opens one from the settings nor closes this one. NULL:
     * open the backend the settings name. */
    lh_backend *backend;
    /* Non-zero: a job that writes nothing is fine (a library caller reads
     * lh_job_result); the CLI insists on -o, --report or --weights-out. */
    int outputs_optional;
} lh_job_hooks;

typedef struct lh_job lh_job;

/* s must have its preset applied (lh_settings_apply_preset); it is not
 * kept. name names the job in messages (the job file, "command line"). */
lh_status lh_job_new(const lh_settings *s, const char *name, const lh_job_hooks *hooks,
                     lh_job **out, lh_error *err);
lh_status lh_job_load(lh_job *j, lh_error *err);
/* LH_OK, or LH_ERR_INTERRUPTED with the best point so far (lh_job_result
 * is then non-NULL and lh_job_write writes it); other errors: no result. */
lh_status lh_job_run(lh_job *j, lh_error *err);
lh_status lh_job_write(lh_job *j, lh_error *err);
/* The search's result once lh_job_run returned one, else NULL. */
const lh_search_result *lh_job_result(const lh_job *j);
/* Module i (0 <= i < lh_job_result(j)->n) in weight order, or NULL. */
const lh_adapter *lh_job_module(const lh_job *j, size_t i);
/* The resolved search options (for a caller that reports them). */
const lh_search_opts *lh_job_search_opts(const lh_job *j);
void lh_job_free(lh_job *j);

#endif

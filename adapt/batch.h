/* adapt/batch.h - a job file that lists several tasks (lorahub-job(5),
 * "Batch jobs"): the top-level keys are shared, each item of "tasks" adds
 * its own (a "name", its "examples", an optional "test" file, any other
 * key). Each task runs as one job into OUT/NAME/ under the batch's output
 * directory: adapter/ (PEFT), report.json, report.svg, weights.tsv,
 * trace.tsv and the checkpoint; the summary goes to OUT/summary.tsv and
 * OUT/summary.md. */
#ifndef LH_BATCH_H
#define LH_BATCH_H

#include <stddef.h>

#include "adapt/settings.h"
#include "adapt/summary.h"

typedef struct lh_batch_task {
    char *name;
    lh_settings *s;     /* the shared keys, then the task's own over them */
} lh_batch_task;

typedef struct lh_batch {
    char *output;       /* the batch's "output" (resolved), or NULL */
    size_t n;
    lh_batch_task *tasks; /* [n] */
} lh_batch;

/* 1 when the job file's top level has a "tasks" key (else 0; a file that
 * does not parse is 0 too: loading it as one job reports why). */
int lh_batch_is_batch(const char *yaml_path);
/* Read a batch job. Refused, naming the file and the task: no tasks, a
 * task without a name or with a name that is not a plain file name, two
 * tasks of one name, an output key ("report", "trace", "weights-out",
 * "checkpoint", "plot") the batch lays out itself, an unknown key. */
lh_status lh_batch_load(const char *yaml_path, lh_batch **out, lh_error *err);
void lh_batch_free(lh_batch *b);

/* Point s's outputs into OUT/NAME/ and create that directory (and OUT). */
lh_status lh_batch_task_outputs(lh_settings *s, const char *outdir, const char *name,
                                lh_error *err);
/* OUT/summary.tsv and OUT/summary.md, atomically. */
lh_status lh_batch_write_summary(const char *outdir, const lh_summary_row *rows, size_t n,
                                 lh_error *err);

#endif

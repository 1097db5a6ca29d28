/* adapt/summary.h - a table of `lorahub adapt` runs, one row per report:
 * what `lorahub report` prints and what a batch job writes as its summary.
 * A row is read back from the report file adapt writes (adapt/report.c),
 * so the table shows exactly what the reports say. */
#ifndef LH_SUMMARY_H
#define LH_SUMMARY_H

#include <stddef.h>

#include "lib/status.h"

typedef struct lh_summary_row {
    char *task;           /* the report's "task", else its examples file's name */
    char *select;         /* "best-single", "search", "auto: search" ... */
    char *method, *optimizer;
    long long evaluations;
    double loss;          /* rescored_loss, else best_loss; NaN: none */
    double test_accuracy; /* NaN: no test file */
    double seconds;       /* wall_seconds */
    char *modules;        /* "caesar1 1, caesar3 -0.0415": the weights, largest first */
    char *failure;        /* a batch task that failed: its message (the rest is empty) */
} lh_summary_row;

/* Read a JSON or YAML report (by extension, as adapt writes them) into row.
 * A file that is not an adapt report is refused, naming what it lacks. */
lh_status lh_summary_row_read(const char *path, lh_summary_row *row, lh_error *err);
/* A row for a task that failed with message. */
lh_status lh_summary_row_failed(const char *task, const char *message, lh_summary_row *row,
                                lh_error *err);
void lh_summary_row_release(lh_summary_row *row);

typedef enum lh_summary_format {
    LH_SUMMARY_TEXT,      /* aligned columns for people */
    LH_SUMMARY_TSV,       /* a header line, then tab-separated rows */
    LH_SUMMARY_MARKDOWN   /* a GitHub-style pipe table */
} lh_summary_format;

/* The table of rows [n] as malloc'd text. Columns: task, select, method,
 * optimizer, evals, loss, test, seconds, modules; a status column first
 * when a row failed. */
lh_status lh_summary_table(const lh_summary_row *rows, size_t n, lh_summary_format f, char **out,
                           lh_error *err);

#endif

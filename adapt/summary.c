/* adapt/summary.c - reports read back into rows, rows into a table (see
 * summary.h). */
#include "summary.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/fsutil.h"
#include "lib/json.h"
#include "lib/strbuf.h"

enum { COL_STATUS, COL_TASK, COL_SELECT, COL_METHOD, COL_OPTIMIZER, COL_EVALS, COL_LOSS, COL_TEST,
       COL_SECONDS, COL_MODULES, N_COLS };
static const char *const col_names[N_COLS] = {"status", "task", "select", "method", "optimizer",
                                              "evals", "loss", "test", "seconds", "modules"};

void lh_summary_row_release(lh_summary_row *row)
{
    if (!row)
        return;
    free(row->task);
    free(row->select);
    free(row->method);
    free(row->optimizer);
    free(row->modules);
    free(row->failure);
    memset(row, 0, sizeof *row);
}

static double num_or_nan(const lh_json *j, const char *key)
{
    double v;
    return lh_json_as_number(lh_json_get(j, key), &v) ? v : NAN;
}

static char *str_or(const lh_json *j, const char *key, const char *fallback)
{
    const char *s;
    return strdup(lh_json_as_string(lh_json_get(j, key), &s) && *s ? s : fallback);
}

/* The report's task, else its examples file's name without extension. */
static char *task_of(const lh_json *j)
{
    const char *s;
    if (lh_json_as_string(lh_json_get(j, "task"), &s) && *s)
        return strdup(s);
    if (!lh_json_as_string(lh_json_get(j, "examples"), &s) || !*s)
        return strdup("-");
    size_t len;
    const char *base = lh_path_base(s, &len);
    const char *dot = memchr(base, '.', len);
    return strndup(base, dot && dot > base ? (size_t)(dot - base) : len);
}

/* "name w, name w" from the weights mapping, the largest |w| first. */
static char *modules_of(const lh_json *w)
{
    size_t n = w->len;
    size_t *order = malloc((n ? n : 1) * sizeof *order);
    double *val = malloc((n ? n : 1) * sizeof *val);
    lh_sb sb;
    lh_sb_init(&sb);
    for (size_t i = 0; order && val && i < n; i++) {
        order[i] = i;
        if (!lh_json_as_number(w->items[i], &val[i]))
            val[i] = NAN;
        for (size_t k = i; k > 0 && !(fabs(val[order[k - 1]]) >= fabs(val[order[k]])); k--) {
            size_t t = order[k];
            order[k] = order[k - 1];
            order[k - 1] = t;
        }
    }
    for (size_t i = 0; order && val && i < n; i++)
        lh_sb_appendf(&sb, "%s%s %.3g", i ? ", " : "", w->keys[order[i]], val[order[i]]);
    int ok = order && val && !lh_sb_failed(&sb);
    free(order);
    free(val);
    if (!ok) {
        lh_sb_release(&sb);
        return NULL;
    }
    return lh_sb_detach(&sb);
}

lh_status lh_summary_row_read(const char *path, lh_summary_row *row, lh_error *err)
{
    memset(row, 0, sizeof *row);
    lh_json *j;
    int yaml = lh_str_ends_with(path, ".yaml") || lh_str_ends_with(path, ".yml");
    lh_status st = yaml ? lh_yaml_parse_file(path, &j, err) : lh_json_parse_file(path, &j, err);
    if (st != LH_OK)
        return st;
    const lh_json *w = lh_json_get(j, "weights");
    double evals;
    if (j->type != LH_JSON_OBJECT || !w || w->type != LH_JSON_OBJECT) {
        lh_json_free(j);
        return lh_error_set(err, LH_ERR_FORMAT, "%s: not a lorahub adapt report (no 'weights' mapping)",
                            path);
    }
    if (!lh_json_as_number(lh_json_get(j, "evaluations"), &evals)) {
        lh_json_free(j);
        return lh_error_set(err, LH_ERR_FORMAT, "%s: not a lorahub adapt report (no 'evaluations')",
                            path);
    }
    const char *decision;
    row->task = task_of(j);
    if (lh_json_as_string(lh_json_get(j, "auto_decision"), &decision)) {
        size_t len = strlen(decision) + 8;
        if ((row->select = malloc(len)))
            snprintf(row->select, len, "auto: %s", decision);
    } else {
        row->select = str_or(j, "select", "-");
    }
    row->method = str_or(j, "method", "-");
    row->optimizer = str_or(j, "optimizer", "-");
    row->evaluations = (long long)evals;
    row->loss = num_or_nan(j, "rescored_loss");
    if (isnan(row->loss))
        row->loss = num_or_nan(j, "best_loss");
    row->test_accuracy = num_or_nan(j, "test_accuracy");
    row->seconds = num_or_nan(j, "wall_seconds");
    row->modules = modules_of(w);
    lh_json_free(j);
    if (!row->task || !row->select || !row->method || !row->optimizer || !row->modules) {
        lh_summary_row_release(row);
        return lh_error_set(err, LH_ERR_NOMEM, "%s: out of memory", path);
    }
    return LH_OK;
}

lh_status lh_summary_row_failed(const char *task, const char *message, lh_summary_row *row,
                                lh_error *err)
{
    memset(row, 0, sizeof *row);
    row->task = strdup(task);
    row->failure = strdup(message);
    row->loss = row->test_accuracy = row->seconds = NAN;
    if (!row->task || !row->failure) {
        lh_summary_row_release(row);
        return lh_error_set(err, LH_ERR_NOMEM, "summary: out of memory");
    }
    return LH_OK;
}

/* The text of column c of row r (into buf when it is a number). */
static const char *cell(const lh_summary_row *r, int c, lh_summary_format f, char *buf, size_t n)
{
    if (r->failure && c != COL_STATUS && c != COL_TASK)
        return c == COL_MODULES ? r->failure : "-";
    switch (c) {
    case COL_STATUS: return r->failure ? "failed" : "ok";
    case COL_TASK: return r->task;
    case COL_SELECT: return r->select;
    case COL_METHOD: return r->method;
    case COL_OPTIMIZER: return r->evaluations ? r->optimizer : "-";
    case COL_EVALS: snprintf(buf, n, "%lld", r->evaluations); return buf;
    case COL_LOSS:
        snprintf(buf, n, isnan(r->loss) ? "-" : "%.4f", r->loss);
        return buf;
    case COL_TEST:
        if (isnan(r->test_accuracy))
            return "-";
        if (f == LH_SUMMARY_TSV)
            snprintf(buf, n, "%.4f", r->test_accuracy);
        else
            snprintf(buf, n, "%.1f%%", 100 * r->test_accuracy);
        return buf;
    case COL_SECONDS:
        snprintf(buf, n, isnan(r->seconds) ? "-" : "%.2f", r->seconds);
        return buf;
    default: return r->modules;
    }
}

/* s made safe for format f: no tab or newline in TSV, '|' escaped in Markdown. */
static void append_cell(lh_sb *sb, const char *s, lh_summary_format f)
{
    for (; *s; s++) {
        if (f == LH_SUMMARY_TSV && (*s == '\t' || *s == '\n' || *s == '\r'))
            lh_sb_append(sb, " ");
        else if (f == LH_SUMMARY_MARKDOWN && *s == '|')
            lh_sb_append(sb, "\\|");
        else if (f == LH_SUMMARY_MARKDOWN && *s == '\n')
            lh_sb_append(sb, " ");
        else
            lh_sb_append_n(sb, s, 1);
    }
}

static void append_line(lh_sb *sb, const char *const *cells, const int *cols, int nc,
                        const size_t *width, lh_summary_format f)
{
    for (int k = 0; k < nc; k++) {
        const char *s = cells[k];
        if (f == LH_SUMMARY_TSV) {
            lh_sb_append(sb, k ? "\t" : "");
            append_cell(sb, s, f);
        } else if (f == LH_SUMMARY_MARKDOWN) {
            lh_sb_append(sb, k ? " " : "| ");
            append_cell(sb, s, f);
            lh_sb_append(sb, " |");
        } else {
            lh_sb_append(sb, k ? "  " : "");
            append_cell(sb, s, f);
            for (size_t p = strlen(s); k + 1 < nc && p < width[cols[k]]; p++)
                lh_sb_append(sb, " ");
        }
    }
    lh_sb_append(sb, "\n");
}

lh_status lh_summary_table(const lh_summary_row *rows, size_t n, lh_summary_format f, char **out,
                           lh_error *err)
{
    *out = NULL;
    int any_failed = 0, cols[N_COLS], nc = 0;
    for (size_t i = 0; i < n; i++)
        any_failed |= rows[i].failure != NULL;
    for (int c = any_failed ? 0 : 1; c < N_COLS; c++)
        cols[nc++] = c;
    size_t width[N_COLS];
    char buf[64];
    for (int c = 0; c < N_COLS; c++)
        width[c] = strlen(col_names[c]);
    for (size_t i = 0; i < n; i++)
        for (int c = 0; c < N_COLS; c++) {
            size_t l = strlen(cell(&rows[i], c, f, buf, sizeof buf));
            width[c] = l > width[c] ? l : width[c];
        }
    lh_sb sb;
    lh_sb_init(&sb);
    const char *line[N_COLS];
    char bufs[N_COLS][64];
    for (int k = 0; k < nc; k++)
        line[k] = col_names[cols[k]];
    append_line(&sb, line, cols, nc, width, f);
    if (f == LH_SUMMARY_MARKDOWN) {
        lh_sb_append(&sb, "|");
        for (int k = 0; k < nc; k++)
            lh_sb_append(&sb, cols[k] >= COL_EVALS && cols[k] <= COL_SECONDS ? "---:|" : "---|");
        lh_sb_append(&sb, "\n");
    }
    for (size_t i = 0; i < n; i++) {
        for (int k = 0; k < nc; k++)
            line[k] = cell(&rows[i], cols[k], f, bufs[k], sizeof bufs[k]);
        append_line(&sb, line, cols, nc, width, f);
    }
    if (lh_sb_failed(&sb)) {
        lh_sb_release(&sb);
        return lh_error_set(err, LH_ERR_NOMEM, "summary: out of memory");
    }
    *out = lh_sb_detach(&sb);
    return LH_OK;
}

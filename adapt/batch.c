/* adapt/batch.c - job files with a list of tasks (see batch.h). */
#include "batch.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "lib/fsutil.h"
#include "lib/json.h"
#include "lib/strbuf.h"

/* Outputs a batch lays out per task; neither level may set them. */
static const char *const laid_out[] = {"report", "trace", "weights-out", "checkpoint", "plot",
                                       NULL};

int lh_batch_is_batch(const char *yaml_path)
{
    lh_json *j;
    lh_error err;
    if (lh_yaml_parse_file(yaml_path, &j, &err) != LH_OK)
        return 0;
    int is = j->type == LH_JSON_OBJECT && lh_json_get(j, "tasks") != NULL;
    lh_json_free(j);
    return is;
}

void lh_batch_free(lh_batch *b)
{
    if (!b)
        return;
    for (size_t i = 0; i < b->n; i++) {
        free(b->tasks[i].name);
        lh_settings_free(b->tasks[i].s);
    }
    free(b->tasks);
    free(b->output);
    free(b);
}

/* A task's name becomes a directory: letters, digits, '.', '_', '-', not
 * starting with '.'. */
static int plain_name(const char *s)
{
    if (!*s || *s == '.' || strlen(s) > 100)
        return 0;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              *s == '.' || *s == '_' || *s == '-'))
            return 0;
    return 1;
}

static lh_status check_laid_out(const lh_json *map, int task_level, lh_error *err)
{
    for (size_t k = 0; laid_out[k]; k++)
        if (lh_json_get(map, laid_out[k]))
            return lh_error_set(err, LH_ERR_ARG,
                                "key '%s': a batch writes it per task (OUTPUT/NAME/), remove it",
                                laid_out[k]);
    if (task_level && lh_json_get(map, "output"))
        return lh_error_set(err, LH_ERR_ARG,
                            "key 'output': a task's outputs go to OUTPUT/NAME/ of the batch");
    return LH_OK;
}

/* Task i: its name, and its settings (shared keys, then its own). */
static lh_status load_task(lh_batch *b, size_t i, const lh_json *top, const lh_json *item,
                           const char *dir, lh_error *err)
{
    static const char *const top_skip[] = {"tasks", NULL};
    static const char *const task_skip[] = {"name", NULL};
    const char *name;
    if (item->type != LH_JSON_OBJECT)
        return lh_error_set(err, LH_ERR_ARG, "tasks[%zu]: a task is a mapping of keys", i + 1);
    if (!lh_json_as_string(lh_json_get(item, "name"), &name))
        return lh_error_set(err, LH_ERR_ARG, "tasks[%zu]: no 'name'", i + 1);
    if (!plain_name(name))
        return lh_error_set(err, LH_ERR_ARG,
                            "tasks[%zu]: name '%s' is not a plain file name (letters, digits, . _ -)",
                            i + 1, name);
    for (size_t k = 0; k < i; k++)
        if (!strcmp(b->tasks[k].name, name))
            return lh_error_set(err, LH_ERR_ARG, "tasks[%zu]: a second task named '%s'", i + 1, name);
    lh_batch_task *t = &b->tasks[i];
    if (!(t->name = strdup(name)))
        return lh_error_set(err, LH_ERR_NOMEM, "out of memory");
    lh_status st = check_laid_out(item, 1, err);
    if (st == LH_OK)
        st = lh_settings_new(&t->s, err);
    if (st == LH_OK)
        st = lh_settings_load_mapping(t->s, top, dir, top_skip, err);
    if (st == LH_OK)
        st = lh_settings_load_mapping(t->s, item, dir, task_skip, err);
    if (st == LH_OK && !lh_settings_is_set(t->s, "task"))
        st = lh_settings_set(t->s, "task", name, NULL, err);
    if (st != LH_OK)
        lh_error_prefix(err, name);
    return st;
}

static lh_status load_tasks(lh_batch *b, const lh_json *j, const char *dir, lh_error *err)
{
    const lh_json *tasks = lh_json_get(j, "tasks");
    if (tasks->type != LH_JSON_ARRAY || tasks->len == 0)
        return lh_error_set(err, LH_ERR_ARG, "'tasks' must be a non-empty list of tasks");
    lh_status st = check_laid_out(j, 0, err);
    if (st == LH_OK && !(b->tasks = calloc(tasks->len, sizeof *b->tasks)))
        st = lh_error_set(err, LH_ERR_NOMEM, "out of memory");
    for (size_t i = 0; st == LH_OK && i < tasks->len; i++, b->n++)
        st = load_task(b, i, j, tasks->items[i], dir, err);
    if (st == LH_OK && b->n && lh_settings_is_set(b->tasks[0].s, "output") &&
        !(b->output = strdup(lh_settings_text(b->tasks[0].s, "output"))))
        st = lh_error_set(err, LH_ERR_NOMEM, "out of memory");
    return st;
}

lh_status lh_batch_load(const char *yaml_path, lh_batch **out, lh_error *err)
{
    *out = NULL;
    lh_json *j;
    lh_status st = lh_yaml_parse_file(yaml_path, &j, err);
    if (st != LH_OK)
        return st;
    lh_batch *b = calloc(1, sizeof *b);
    char *dir = lh_settings_dir_of(yaml_path);
    if (!b || !dir)
        st = lh_error_set(err, LH_ERR_NOMEM, "out of memory");
    else if (j->type != LH_JSON_OBJECT || !lh_json_get(j, "tasks"))
        st = lh_error_set(err, LH_ERR_ARG, "not a batch job (no 'tasks' list)");
    else
        st = load_tasks(b, j, dir, err);
    free(dir);
    lh_json_free(j);
    if (st != LH_OK) {
        lh_error_prefix(err, yaml_path);
        lh_batch_free(b);
        return st;
    }
    *out = b;
    return LH_OK;
}

static lh_status make_dir(const char *path, lh_error *err)
{
    if (mkdir(path, 0777) == 0 || (errno == EEXIST && lh_is_dir(path)))
        return LH_OK;
    return lh_error_set(err, LH_ERR_IO, "cannot create directory '%s': %s", path, strerror(errno));
}

lh_status lh_batch_task_outputs(lh_settings *s, const char *outdir, const char *name,
                                lh_error *err)
{
    static const char *const files[][2] = {{"output", "adapter"},
                                           {"report", "report.json"},
                                           {"trace", "trace.tsv"},
                                           {"weights-out", "weights.tsv"}};
    char *dir = lh_path_join(outdir, name);
    lh_status st = dir ? make_dir(outdir, err) : lh_error_set(err, LH_ERR_NOMEM, "out of memory");
    if (st == LH_OK)
        st = make_dir(dir, err);
    for (size_t k = 0; st == LH_OK && k < sizeof files / sizeof files[0]; k++) {
        char *p = lh_path_join(dir, files[k][1]);
        st = p ? lh_settings_set(s, files[k][0], p, NULL, err)
               : lh_error_set(err, LH_ERR_NOMEM, "out of memory");
        free(p);
    }
    free(dir);
    return st;
}

lh_status lh_batch_write_summary(const char *outdir, const lh_summary_row *rows, size_t n,
                                 lh_error *err)
{
    static const struct {
        const char *file;
        lh_summary_format f;
    } outs[] = {{"summary.tsv", LH_SUMMARY_TSV}, {"summary.md", LH_SUMMARY_MARKDOWN}};
    lh_status st = LH_OK;
    for (size_t k = 0; st == LH_OK && k < 2; k++) {
        char *text = NULL, *path = lh_path_join(outdir, outs[k].file);
        st = path ? lh_summary_table(rows, n, outs[k].f, &text, err)
                  : lh_error_set(err, LH_ERR_NOMEM, "out of memory");
        if (st == LH_OK)
            st = lh_write_file_atomic(path, text, strlen(text), err);
        free(text);
        free(path);
    }
    return st;
}

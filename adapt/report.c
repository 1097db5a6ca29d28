/* adapt/report.c - the report of a search, as JSON or YAML (see report.h).
 * Its keys and their order are what scripts and tests read: keep them. */
#include "report.h"

#include <stdlib.h>
#include <string.h>

#include "lib/fsutil.h"
#include "lib/strbuf.h"

/* A tiny emitter for the two report formats. YAML uses JSON-quoted keys and
 * scalars (valid YAML) and block mappings for readability. */
typedef struct emit {
    lh_sb *sb;
    int yaml;
    int depth;       /* 0 = top-level mapping, 1 = inside a nested mapping */
    int count[2];    /* entries written at each depth */
} emit;

static void em_key(emit *e, const char *key)
{
    int d = e->depth;
    if (e->yaml) {
        lh_sb_append(e->sb, d ? "\n  " : (e->count[0] ? "\n" : ""));
        if (d)
            lh_sb_append_json_string(e->sb, key);
        else
            lh_sb_append(e->sb, key);
        lh_sb_append(e->sb, ": ");
    } else {
        lh_sb_append(e->sb, e->count[d] ? ",\n" : "\n");
        lh_sb_append(e->sb, d ? "    " : "  ");
        lh_sb_append_json_string(e->sb, key);
        lh_sb_append(e->sb, ": ");
    }
    e->count[d]++;
}

static void em_num(emit *e, const char *key, double v)
{
    em_key(e, key);
    lh_sb_append_json_number(e->sb, v); /* NaN/Inf become null */
}

static void em_int(emit *e, const char *key, long long v)
{
    em_key(e, key);
    lh_sb_appendf(e->sb, "%lld", v);
}

static void em_str(emit *e, const char *key, const char *v)
{
    em_key(e, key);
    if (v)
        lh_sb_append_json_string(e->sb, v);
    else
        lh_sb_append(e->sb, "null");
}

static void em_map_begin(emit *e, const char *key)
{
    em_key(e, key);
    if (!e->yaml)
        lh_sb_append(e->sb, "{");
    else if (!lh_sb_failed(e->sb) && e->sb->len) /* no space after "key:" before a block */
        e->sb->buf[--e->sb->len] = '\0';
    e->depth = 1;
    e->count[1] = 0;
}

static void em_map_end(emit *e)
{
    if (e->yaml) {
        if (!e->count[1])
            lh_sb_append(e->sb, " {}");
    } else {
        lh_sb_append(e->sb, e->count[1] ? "\n  }" : "}");
    }
    e->depth = 0;
}

lh_status lh_search_report_text(int yaml, const lh_search_opts *o,
                                const lh_adapter *const *mods, size_t n,
                                const lh_search_result *res, const char *const *extra_kv,
                                char **out, lh_error *err)
{
    *out = NULL;
    lh_sb sb;
    lh_sb_init(&sb);
    emit e = {&sb, yaml, 0, {0, 0}};
    if (!e.yaml)
        lh_sb_append(&sb, "{");
    em_map_begin(&e, "weights");
    char *in_kept = calloc(n ? n : 1, 1);
    for (size_t i = 0; i < res->n_kept && in_kept; i++)
        in_kept[res->kept[i]] = 1;
    for (size_t i = 0; i < n; i++)
        if (in_kept && in_kept[i])
            em_num(&e, mods[i]->name ? mods[i]->name : "?", res->weights[i]);
    em_map_end(&e);
    em_num(&e, "best_loss", res->best_loss);
    em_num(&e, "best_objective", res->best_objective);
    em_num(&e, "rescored_loss", res->rescored_loss);
    em_int(&e, "evaluations", res->evaluations);
    em_int(&e, "replayed", res->replayed);
    em_int(&e, "backend_calls", res->backend_calls);
    em_int(&e, "total_evaluations", res->total_evaluations);
    em_int(&e, "scored", res->scored);
    em_int(&e, "search_budget", res->search_budget);
    em_str(&e, "optimizer", o->optimizer);
    em_str(&e, "method", lh_merge_method_name(o->merge.method));
    em_num(&e, "density", o->merge.density);
    em_str(&e, "select", lh_select_name(o->select));
    em_int(&e, "seed", (long long)o->seed);
    em_int(&e, "budget", o->budget);
    em_int(&e, "population", o->population);
    em_num(&e, "bound", o->bound);
    em_num(&e, "l1", o->l1);
    em_num(&e, "loss_scale", o->loss_scale);
    em_int(&e, "nan_as_worst", o->nan_as_worst ? 1 : 0);
    em_int(&e, "pick", o->pick);
    em_int(&e, "preselect", o->preselect);
    em_str(&e, "start", o->start_best_single ? "best-single" : "zero");
    em_key(&e, "modules");
    lh_sb_append(&sb, "[");
    for (size_t i = 0; i < n; i++) {
        if (i)
            lh_sb_append(&sb, ", ");
        lh_sb_append_json_string(&sb, mods[i]->name ? mods[i]->name : "?");
    }
    lh_sb_append(&sb, "]");
    if (res->single_loss) {
        em_int(&e, "preselect_evaluations", res->preselect_evaluations);
        em_map_begin(&e, "single_loss");
        for (size_t i = 0; i < n; i++)
            em_num(&e, mods[i]->name ? mods[i]->name : "?", res->single_loss[i]);
        em_map_end(&e);
    }
    em_num(&e, "wall_seconds", res->wall_seconds);
    em_num(&e, "backend_seconds", res->backend_seconds);
    em_str(&e, "stop_reason", res->stop_reason);
    if (res->auto_ran) {
        em_str(&e, "auto_decision", lh_select_name(res->auto_decision));
        em_int(&e, "auto_folds", res->auto_folds);
        em_num(&e, "auto_single_loss", res->auto_single_loss);
        em_num(&e, "auto_search_loss", res->auto_search_loss);
        em_int(&e, "auto_evaluations", res->auto_evaluations);
        em_int(&e, "auto_fold_budget", res->auto_fold_budget);
        em_int(&e, "auto_other_evaluations", res->auto_other_evaluations);
    }
    if (res->test_n) {
        em_int(&e, "test_examples", (long long)res->test_n);
        em_int(&e, "test_correct", (long long)res->test_correct);
        em_num(&e, "test_accuracy", (double)res->test_correct / (double)res->test_n);
        em_num(&e, "test_loss", res->test_loss);
    }
    for (size_t i = 0; extra_kv && extra_kv[i] && extra_kv[i + 1]; i += 2)
        em_str(&e, extra_kv[i], extra_kv[i + 1]);
    lh_sb_append(&sb, e.yaml ? "\n" : "\n}\n");
    free(in_kept);
    if (!in_kept || lh_sb_failed(&sb)) {
        lh_sb_release(&sb);
        return lh_error_set(err, LH_ERR_NOMEM, "report: out of memory");
    }
    *out = lh_sb_detach(&sb);
    return LH_OK;
}

lh_status lh_search_write_report(const char *path, const lh_search_opts *o,
                                 const lh_adapter *const *mods, size_t n,
                                 const lh_search_result *res, const char *const *extra_kv,
                                 lh_error *err)
{
    char *text;
    lh_status st = lh_search_report_text(lh_str_ends_with(path, ".yaml") || lh_str_ends_with(path, ".yml"), o,
                                         mods, n, res, extra_kv, &text, err);
    if (st == LH_OK)
        st = lh_write_file_atomic(path, text, strlen(text), err);
    if (st == LH_ERR_NOMEM)
        lh_error_prefix(err, path);
    free(text);
    return st;
}

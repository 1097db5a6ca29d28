/* api/search.c - the public search (include/lorahub.h, "Search"): a
 * `lorahub adapt` job driven by job-file keys, over adapt/settings.h (the
 * one table of settings and presets) and adapt/job.h (load, search, write).
 * It adds only what a library caller needs beyond the CLI: a backend of
 * the caller's own, no obligation to write files, and read access to the
 * result. */
#include "include/lorahub.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "adapt/job.h"
#include "adapt/settings.h"

struct lh_search {
    lh_settings *settings;
    lh_job *job;       /* after lh_search_run */
    lh_status run_status;
};

lh_status lh_search_new(lh_search **out, lh_error *err)
{
    if (!out)
        return lh_error_set(err, LH_ERR_ARG, "search: no output pointer");
    *out = NULL;
    lh_search *s = calloc(1, sizeof *s);
    if (!s)
        return lh_error_set(err, LH_ERR_NOMEM, "search: out of memory");
    lh_status st = lh_settings_new(&s->settings, err);
    if (st != LH_OK) {
        free(s);
        return st;
    }
    *out = s;
    return LH_OK;
}

void lh_search_free(lh_search *s)
{
    if (!s)
        return;
    lh_job_free(s->job);
    lh_settings_free(s->settings);
    free(s);
}

lh_status lh_search_set(lh_search *s, const char *key, const char *value, lh_error *err)
{
    if (!s || !key || !value)
        return lh_error_set(err, LH_ERR_ARG, "search: set: no search, key or value");
    if (s->job)
        return lh_error_set(err, LH_ERR_ARG, "search: '%s' set after the search ran", key);
    return lh_error_one_line(lh_settings_set(s->settings, key, value, NULL, err), err);
}

lh_status lh_search_load_job(lh_search *s, const char *yaml_path, lh_error *err)
{
    if (!s || !yaml_path)
        return lh_error_set(err, LH_ERR_ARG, "search: load job: no search or path");
    if (s->job)
        return lh_error_set(err, LH_ERR_ARG, "%s: loaded after the search ran", yaml_path);
    return lh_error_one_line(lh_settings_load_job(s->settings, yaml_path, err), err);
}

lh_status lh_search_run(lh_search *s, lh_backend *b, lh_error *err)
{
    if (!s)
        return lh_error_set(err, LH_ERR_ARG, "search: run: no search");
    if (s->job)
        return lh_error_set(err, LH_ERR_ARG, "search: run twice");
    lh_status st = lh_settings_apply_preset(s->settings, err);
    lh_job_hooks hooks = {.backend = b, .outputs_optional = 1};
    if (st == LH_OK)
        st = lh_job_new(s->settings, "search", &hooks, &s->job, err);
    if (st == LH_OK)
        st = lh_job_load(s->job, err);
    if (st == LH_OK)
        st = lh_job_run(s->job, err);
    if (st == LH_OK)
        st = lh_job_write(s->job, err);
    if (st != LH_OK && !lh_job_result(s->job)) {
        lh_job_free(s->job);
        s->job = NULL;
    }
    s->run_status = st;
    return lh_error_one_line(st, err);
}

static const lh_search_result *result_of(const lh_search *s)
{
    return s && s->job ? lh_job_result(s->job) : NULL;
}

size_t lh_search_n_modules(const lh_search *s)
{
    const lh_search_result *r = result_of(s);
    return r ? r->n : 0;
}

const char *lh_search_module_name(const lh_search *s, size_t i)
{
    const lh_search_result *r = result_of(s);
    const lh_adapter *m = r && i < r->n ? lh_job_module(s->job, i) : NULL;
    return m ? m->name : NULL;
}

double lh_search_weight(const lh_search *s, size_t i)
{
    const lh_search_result *r = result_of(s);
    return r && i < r->n ? r->weights[i] : NAN;
}

double lh_search_best_loss(const lh_search *s)
{
    const lh_search_result *r = result_of(s);
    return r ? r->best_loss : NAN;
}

int lh_search_evaluations(const lh_search *s)
{
    const lh_search_result *r = result_of(s);
    return r ? r->evaluations : 0;
}

const lh_adapter *lh_search_adapter(const lh_search *s)
{
    const lh_search_result *r = result_of(s);
    return r ? r->merged : NULL;
}

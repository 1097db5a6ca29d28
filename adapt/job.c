/* adapt/job.c - a job: settings resolved into a search, its inputs
 * loaded, its outputs written (see job.h). */
#include "job.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "adapt/evaluate.h"
#include "adapt/modules.h"
#include "adapt/optim/optimizer.h"
#include "adapt/plot.h"
#include "adapt/report.h"
#include "lib/fsutil.h"
#include "lib/gguf.h"
#include "lib/outpath.h"
#include "lib/peft.h"
#include "lib/strbuf.h"

#define MAX_BACKEND_PARAMS 16
#define N_OUTPUTS 5

struct lh_job {
    char *name;
    char *preset;
    lh_search_opts so;
    lh_dtype out_dtype;         /* of the written adapter; the search composes in F32 */
    int out_gguf;               /* --format gguf: OUTDIR/adapter.gguf for llama.cpp */
    lh_gguf_arch base_arch;     /* the base model's GGUF facts, when have_base_arch */
    int have_base_arch;
    char *backend_name;
    char *modules;              /* the "modules" value (dir, list file, "a,b,c") */
    char *modules_dir;          /* where it resolves */
    char **module_list;         /* a YAML list instead: [n_module_list] */
    size_t n_module_list;
    int pick;
    int pick_given;
    char *base;                 /* the base model directory, when given */
    int per_example;            /* loss-scale per-example: loss_scale = 1/examples */
    char *examples, *output, *report, *trace, *weights_out, *checkpoint;
    char *plot;                 /* the SVG picture, or NULL */
    char *task;                 /* names the task in the report and the plot */
    char *test;                 /* test examples scored after the search, or NULL */
    lh_examples *test_ex;
    char *params[MAX_BACKEND_PARAMS + 1]; /* {key, value, ..., NULL} for the backend */
    lh_job_hooks hooks;

    lh_module_set *ms;
    lh_examples *ex;
    lh_backend *b;
    char *fingerprint;          /* "NAME IDENTITY" of the backend */
    lh_search_result res;
    int have_result;
    lh_path_lock locks[N_OUTPUTS]; /* one per output path, held from load to free */
};

static char *dup_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
}

void lh_job_free(lh_job *j)
{
    if (!j)
        return;
    lh_search_result_release(&j->res);
    for (int i = 0; i < N_OUTPUTS; i++)
        lh_path_lock_release(&j->locks[i]);
    if (j->b != j->hooks.backend)
        lh_backend_close(j->b);
    lh_examples_free(j->ex);
    lh_examples_free(j->test_ex);
    lh_module_set_free(j->ms);
    free(j->fingerprint);
    for (size_t i = 0; j->params[i]; i++)
        free(j->params[i]);
    for (size_t i = 0; i < j->n_module_list; i++)
        free(j->module_list[i]);
    free(j->module_list);
    free(j->name);
    free(j->preset);
    free(j->backend_name);
    free(j->modules);
    free(j->modules_dir);
    free(j->examples);
    free(j->base);
    free(j->output);
    free(j->report);
    free(j->trace);
    free(j->weights_out);
    free(j->checkpoint);
    free(j->plot);
    free(j->task);
    free(j->test);
    free(j);
}

/* The search options from the settings; every value was checked when set. */
static void resolve_search(lh_job *j, const lh_settings *s)
{
    lh_search_opts *so = &j->so;
    lh_search_opts_default(so);
    lh_merge_method_from_name(lh_settings_text(s, "method"), &so->merge.method);
    so->merge.density = lh_settings_number(s, "density", so->merge.density);
    so->optimizer = lh_optimizer_find(lh_settings_text(s, "optimizer"))->name;
    so->budget = (int)lh_settings_int(s, "budget", so->budget);
    so->population = (int)lh_settings_int(s, "population", 0);
    so->bound = lh_settings_number(s, "bound", so->bound);
    so->l1 = lh_settings_number(s, "l1", so->l1);
    j->per_example = !strcmp(lh_settings_text(s, "loss-scale"), "per-example");
    so->seed = (uint64_t)lh_settings_int(s, "seed", (long long)so->seed);
    so->merge.seed = so->seed;
    so->nan_as_worst = lh_settings_bool(s, "nan-as-worst");
    so->merge.allow_nonfinite = so->nan_as_worst; /* a NaN module: its candidates score worst */
    so->resume = lh_settings_bool(s, "resume");
    /* A resumed run replaces the outputs of the run it continues. */
    so->force = lh_settings_bool(s, "force") || so->resume;
    so->preselect = (int)lh_settings_int(s, "preselect", 0);
    /* The preset's preselect (the default's 3) is the budget rule's to
     * decide; one the user gave is kept. */
    so->preselect_auto = !lh_settings_given(s, "preselect");
    lh_select_from_name(lh_settings_text(s, "select"), &so->select);
    so->start_best_single = !strcmp(lh_settings_text(s, "start"), "best-single");
    j->pick = (int)lh_settings_int(s, "pick", 0);
    j->pick_given = lh_settings_given(s, "pick");
    so->pick = j->pick;
    const char *dt = lh_settings_text(s, "dtype");
    j->out_dtype = !strcmp(dt, "f16") ? LH_F16 : !strcmp(dt, "bf16") ? LH_BF16 : LH_F32;
}

/* Which backend, and the settings it reads (the table's backend keys the
 * user gave). */
static lh_status resolve_backend(lh_job *j, const lh_settings *s, lh_error *err)
{
    const char *backend = lh_settings_is_set(s, "backend")       ? lh_settings_text(s, "backend")
                          : lh_settings_is_set(s, "base")        ? "native"
                          : lh_settings_is_set(s, "backend-cmd") ? "exec"
                          : lh_settings_is_set(s, "base-gguf")   ? "llamacpp"
                          : lh_settings_is_set(s, "server")      ? "server"
                                                                 : NULL;
    if (!backend)
        return lh_error_set(err, LH_ERR_ARG,
                            "%s: no backend (--base MODEL_DIR, --base-gguf FILE or --backend-cmd "
                            "CMD)", j->name);
    const lh_backend_i *bi = lh_backend_find(backend);
    if (!bi)
        return lh_error_set(err, LH_ERR_ARG, "no backend named '%s' is built in", backend);
    for (const lh_backend_key *bk = bi->keys; bk && bk->key; bk++)
        if (bk->required && !lh_settings_is_set(s, bk->key))
            return lh_error_set(err, LH_ERR_ARG, "the %s backend needs --%s %s", backend, bk->key,
                                bk->what);
    if (!(j->backend_name = strdup(backend)))
        return lh_error_set(err, LH_ERR_NOMEM, "%s: out of memory", j->name);
    size_t np = 0;
    for (const lh_setting_def *d = lh_setting_defs(); d->key; d++) {
        if (!(d->uses & LH_SETTING_BACKEND) || !lh_settings_is_set(s, d->key) ||
            np + 2 > MAX_BACKEND_PARAMS)
            continue;
        char num[32];
        const char *v = lh_settings_text(s, d->key);
        if (d->type == LH_SETTING_NUMBER) {
            snprintf(num, sizeof num, "%.17g", lh_settings_number(s, d->key, 0));
            v = num;
        }
        j->params[np] = strdup(d->key);
        j->params[np + 1] = strdup(v);
        if (!j->params[np] || !j->params[np + 1])
            return lh_error_set(err, LH_ERR_NOMEM, "%s: out of memory", j->name);
        np += 2;
    }
    return LH_OK;
}

static lh_status check_absent(const char *path, const char *what, int force, lh_error *err)
{
    if (!path || !strcmp(path, "-") || force || !lh_path_exists(path))
        return LH_OK;
    return lh_error_set(err, LH_ERR_EXISTS, "%s '%s' exists (use --force to replace it)", what, path);
}

/* The picture: --plot FILE, else beside a report file (its name with .svg
 * for .json/.yaml/.yml), none with --no-plot or a report on stdout. */
static lh_status resolve_plot(lh_job *j, const lh_settings *s, lh_error *err)
{
    if (lh_settings_bool(s, "no-plot"))
        return LH_OK;
    if (lh_settings_is_set(s, "plot")) {
        j->plot = dup_or_null(lh_settings_text(s, "plot"));
    } else if (j->report && strcmp(j->report, "-")) {
        size_t n = strlen(j->report);
        const char *exts[] = {".json", ".yaml", ".yml"};
        for (size_t e = 0; e < 3; e++)
            if (lh_str_ends_with(j->report, exts[e])) {
                n -= strlen(exts[e]);
                break;
            }
        if ((j->plot = malloc(n + 5)))
            snprintf(j->plot, n + 5, "%.*s.svg", (int)n, j->report);
    } else {
        return LH_OK;
    }
    if (!j->plot)
        return lh_error_set(err, LH_ERR_NOMEM, "%s: out of memory", j->name);
    if (!strcmp(j->plot, "-"))
        return lh_error_set(err, LH_ERR_ARG, "--plot - is not supported: give a file name");
    return LH_OK;
}

/* The task's name: the "task" key, else the examples file's name without
 * its extension. */
static char *task_name(const lh_settings *s)
{
    if (lh_settings_is_set(s, "task"))
        return strdup(lh_settings_text(s, "task"));
    size_t len;
    const char *base = lh_path_base(lh_settings_text(s, "examples"), &len);
    const char *dot = memchr(base, '.', len);
    if (dot && dot > base)
        len = (size_t)(dot - base);
    char *t = malloc(len + 1);
    if (t) {
        memcpy(t, base, len);
        t[len] = '\0';
    }
    return t;
}

/* The outputs: at least one, none in the way, the checkpoint's default
 * (next to the output directory). */
static lh_status resolve_outputs(lh_job *j, const lh_settings *s, lh_error *err)
{
    j->output = dup_or_null(lh_settings_text(s, "output"));
    j->report = dup_or_null(lh_settings_text(s, "report"));
    j->trace = dup_or_null(lh_settings_text(s, "trace"));
    j->weights_out = dup_or_null(lh_settings_text(s, "weights-out"));
    j->checkpoint = dup_or_null(lh_settings_text(s, "checkpoint"));
    if (!j->checkpoint && j->output) {
        size_t n = strlen(j->output);
        while (n > 1 && j->output[n - 1] == '/')
            n--;
        if ((j->checkpoint = malloc(n + 32)))
            snprintf(j->checkpoint, n + 32, "%.*s.checkpoint.json", (int)n, j->output);
    }
    j->so.checkpoint_path = j->checkpoint;
    j->so.trace_path = j->trace;
    lh_status st = resolve_plot(j, s, err);
    if (st != LH_OK)
        return st;
    if (!j->output && !j->report && !j->weights_out && !j->hooks.outputs_optional)
        return lh_error_set(err, LH_ERR_ARG,
                            "%s: nothing to write (give -o OUTDIR, --report or --weights-out)", j->name);
    if (lh_path_is_stdout(j->output))
        return lh_error_set(err, LH_ERR_ARG, "-o: " LH_STDOUT_DIR_MSG);
    if (j->so.resume && !j->so.checkpoint_path)
        return lh_error_set(err, LH_ERR_ARG, "--resume needs -o OUTDIR or --checkpoint FILE");
    st = check_absent(j->output, "output directory", j->so.force, err);
    if (st == LH_OK)
        st = check_absent(j->report, "report", j->so.force, err);
    if (st == LH_OK)
        st = check_absent(j->plot, "plot", j->so.force, err);
    if (st == LH_OK)
        st = check_absent(j->weights_out, "weights file", j->so.force, err);
    if (st == LH_OK && j->report && j->weights_out && !strcmp(j->report, "-") &&
        !strcmp(j->weights_out, "-"))
        st = lh_error_set(err, LH_ERR_ARG, "--report - and --weights-out - both want standard output");
    return st;
}

/* The base model's GGUF facts, from --base-gguf (a GGUF model, when that
 * setting exists) or --base (an HF directory): required by --format gguf;
 * otherwise GGUF modules are read against them when they can be had. */
static lh_status resolve_base_arch(lh_job *j, const lh_settings *s, lh_error *err)
{
    j->out_gguf = !strcmp(lh_settings_text(s, "format"), "gguf");
    const char *model = lh_settings_is_set(s, "base-gguf") ? lh_settings_text(s, "base-gguf") : NULL;
    const char *dir = lh_settings_is_set(s, "base") ? lh_settings_text(s, "base") : NULL;
    if (j->out_gguf && !model && !dir)
        return lh_error_set(err, LH_ERR_ARG, "%s: --format gguf needs the base model (--base DIR)",
                            j->name);
    lh_error quiet = {0};
    lh_error *e = j->out_gguf ? err : &quiet;
    lh_status st = LH_ERR_ARG;
    if (model)
        st = lh_gguf_arch_from_model(model, &j->base_arch, e);
    else if (dir)
        st = lh_gguf_arch_from_config(dir, &j->base_arch, e);
    j->have_base_arch = st == LH_OK;
    return j->out_gguf ? st : LH_OK;
}

static lh_status resolve_inputs(lh_job *j, const lh_settings *s, lh_error *err)
{
    if (!lh_settings_is_set(s, "modules"))
        return lh_error_set(err, LH_ERR_ARG, "%s: no modules (--modules DIR|LIST)", j->name);
    if (!lh_settings_is_set(s, "examples"))
        return lh_error_set(err, LH_ERR_ARG, "%s: no examples (--examples FILE)", j->name);
    size_t n;
    const char *const *list = lh_settings_list(s, "modules", &n);
    if (list) {
        if (!(j->module_list = calloc(n, sizeof *j->module_list)))
            return lh_error_set(err, LH_ERR_NOMEM, "%s: out of memory", j->name);
        for (; j->n_module_list < n; j->n_module_list++)
            if (!(j->module_list[j->n_module_list] = strdup(list[j->n_module_list])))
                return lh_error_set(err, LH_ERR_NOMEM, "%s: out of memory", j->name);
    } else {
        j->modules = dup_or_null(lh_settings_text(s, "modules"));
        j->modules_dir = dup_or_null(lh_settings_base_dir(s, "modules"));
    }
    j->examples = dup_or_null(lh_settings_text(s, "examples"));
    j->test = dup_or_null(lh_settings_text(s, "test"));
    if (!(j->task = task_name(s)))
        return lh_error_set(err, LH_ERR_NOMEM, "%s: out of memory", j->name);
    j->base = dup_or_null(lh_settings_text(s, "base"));
    return LH_OK;
}

lh_status lh_job_new(const lh_settings *s, const char *name, const lh_job_hooks *hooks,
                     lh_job **out, lh_error *err)
{
    *out = NULL;
    lh_job *j = calloc(1, sizeof *j);
    if (!j || !(j->name = strdup(name ? name : "job")) ||
        !(j->preset = strdup(lh_settings_is_set(s, "preset") ? lh_settings_text(s, "preset") : "default"))) {
        lh_job_free(j);
        return lh_error_set(err, LH_ERR_NOMEM, "job: out of memory");
    }
    if (hooks)
        j->hooks = *hooks;
    for (int i = 0; i < N_OUTPUTS; i++)
        lh_path_lock_init(&j->locks[i]);
    lh_status st = LH_OK;
    for (const lh_setting_def *d = lh_setting_defs(); d->key && st == LH_OK; d++)
        if (d->preset_default[0] && !lh_settings_is_set(s, d->key))
            st = lh_error_set(err, LH_ERR_ARG, "%s: '%s' is not set (apply a preset first)", j->name,
                              d->key);
    if (st == LH_OK) {
        resolve_search(j, s);
        if (j->so.start_best_single && j->so.preselect <= 0)
            st = lh_error_set(err, LH_ERR_ARG,
                              "--start best-single needs --preselect (the single-module losses)");
    }
    if (st == LH_OK)
        st = resolve_inputs(j, s, err);
    if (st == LH_OK && !j->hooks.backend)
        st = resolve_backend(j, s, err);
    else if (st == LH_OK && !(j->backend_name = strdup(lh_backend_name(j->hooks.backend))))
        st = lh_error_set(err, LH_ERR_NOMEM, "%s: out of memory", j->name);
    if (st == LH_OK)
        st = resolve_outputs(j, s, err);
    if (st == LH_OK)
        st = resolve_base_arch(j, s, err);
    if (st != LH_OK) {
        lh_job_free(j);
        return st;
    }
    j->so.progress = j->hooks.progress;
    j->so.progress_ud = j->hooks.ud;
    j->so.interrupt = j->hooks.interrupt;
    *out = j;
    return LH_OK;
}

static lh_status load_modules(lh_job *j, lh_error *err)
{
    const lh_gguf_arch *base = j->have_base_arch ? &j->base_arch : NULL;
    lh_status st = j->module_list
                       ? lh_modules_from_list_base((const char *const *)j->module_list,
                                                   j->n_module_list, j->pick, j->so.seed, base,
                                                   &j->ms, err)
                       : lh_modules_from_spec_base(j->modules, j->modules_dir, j->pick,
                                                   j->so.seed, base, &j->ms, err);
    if (st == LH_OK && !j->pick_given && j->ms->n < j->ms->n_available && j->hooks.notice) {
        char line[512];
        snprintf(line, sizeof line,
                 "%s: using %zu of %zu modules, drawn with seed %llu (--pick 0 uses all)", j->name,
                 j->ms->n, j->ms->n_available, (unsigned long long)j->so.seed);
        j->hooks.notice(j->hooks.ud, line);
    }
    return st;
}

/* The job's output paths and what they are; "-" (standard output) and
 * unset ones are left out. Returns how many. */
static int output_paths(const lh_job *j, const char **path, const char **what)
{
    const char *all[N_OUTPUTS] = {j->output, j->report, j->trace, j->weights_out, j->checkpoint};
    static const char *const names[N_OUTPUTS] = {"output directory", "report", "trace",
                                                 "weights file", "checkpoint"};
    int n = 0;
    for (int i = 0; i < N_OUTPUTS; i++)
        if (all[i] && strcmp(all[i], "-")) {
            path[n] = all[i];
            what[n++] = names[i];
        }
    return n;
}

/* Refuse an output that is, contains or lies inside an input or another
 * output: --force replaces outputs, never the modules, base model or
 * examples a run reads (adapt -o hub --modules hub --force deleted hub). */
static lh_status check_output_paths(const lh_job *j, lh_error *err)
{
    const char *out[N_OUTPUTS], *out_what[N_OUTPUTS];
    int n_out = output_paths(j, out, out_what);
    size_t n_in = j->ms->n + 3;
    const char **in = calloc(n_in, sizeof *in), **in_what = calloc(n_in, sizeof *in_what);
    char **res_out = calloc(N_OUTPUTS, sizeof *res_out), **res_in = calloc(n_in, sizeof *res_in);
    lh_status st = !in || !in_what || !res_out || !res_in
                       ? lh_error_set(err, LH_ERR_NOMEM, "%s: out of memory", j->name)
                       : LH_OK;
    size_t k = 0;
    if (st == LH_OK && j->modules && !strchr(j->modules, ',') && lh_path_exists(j->modules)) {
        in[k] = j->modules;
        in_what[k++] = "modules";
    }
    for (size_t i = 0; st == LH_OK && i < j->ms->n; i++)
        if (j->ms->mods[i]->path) {
            in[k] = j->ms->mods[i]->path;
            in_what[k++] = "module";
        }
    if (st == LH_OK && j->examples && strcmp(j->examples, "-")) {
        in[k] = j->examples;
        in_what[k++] = "examples";
    }
    if (st == LH_OK && j->base) {
        in[k] = j->base;
        in_what[k++] = "base model";
    }
    for (size_t i = 0; st == LH_OK && i < k; i++)
        if (!(res_in[i] = lh_path_resolved(in[i])))
            st = lh_error_set(err, LH_ERR_NOMEM, "%s: out of memory", j->name);
    for (int o = 0; st == LH_OK && o < n_out; o++) {
        if (!(res_out[o] = lh_path_resolved(out[o]))) {
            st = lh_error_set(err, LH_ERR_NOMEM, "%s: out of memory", j->name);
            break;
        }
        for (size_t i = 0; st == LH_OK && i < k; i++)
            if (lh_paths_overlap(res_out[o], res_in[i]))
                st = lh_error_set(err, LH_ERR_ARG,
                                  "%s '%s' would replace the %s '%s' (an output may not be, "
                                  "contain or lie inside an input)",
                                  out_what[o], out[o], in_what[i], in[i]);
        for (int p = 0; st == LH_OK && p < o; p++)
            if (lh_paths_overlap(res_out[o], res_out[p]))
                st = lh_error_set(err, LH_ERR_ARG, "%s '%s' and %s '%s' are one path (or one "
                                  "lies inside the other)", out_what[p], out[p], out_what[o], out[o]);
    }
    for (size_t i = 0; res_in && i < k; i++)
        free(res_in[i]);
    for (int o = 0; res_out && o < N_OUTPUTS; o++)
        free(res_out[o]);
    free(in);
    free(in_what);
    free(res_in);
    free(res_out);
    return st;
}

/* A lock on every output, before anything is written: of two runs on one
 * output the second stops here and touches nothing. */
static lh_status lock_outputs(lh_job *j, lh_error *err)
{
    const char *out[N_OUTPUTS], *what[N_OUTPUTS];
    int n = output_paths(j, out, what);
    lh_status st = LH_OK;
    for (int i = 0; i < n && st == LH_OK; i++)
        st = lh_path_lock_take(&j->locks[i], out[i], what[i], err);
    /* Ours now: what a killed run left half-written goes. */
    for (int i = 0; i < n && st == LH_OK; i++)
        lh_remove_stale_temps(out[i]);
    return st;
}

lh_status lh_job_load(lh_job *j, lh_error *err)
{
    lh_status st = load_modules(j, err);
    if (st == LH_OK)
        st = check_output_paths(j, err);
    if (st == LH_OK)
        st = lock_outputs(j, err);
    if (st == LH_OK)
        st = lh_examples_load(j->examples, &j->ex, err);
    if (st == LH_OK && j->test)
        st = lh_examples_load(j->test, &j->test_ex, err);
    if (st == LH_OK && j->per_example && j->ex->n)
        j->so.loss_scale = 1.0 / (double)j->ex->n;
    lh_backend_opts bo;
    lh_backend_opts_default(&bo);
    bo.params = (const char *const *)j->params;
    bo.interrupt = j->hooks.interrupt;
    bo.warn = j->hooks.warn;
    bo.warn_ud = j->hooks.ud;
    if (st == LH_OK && j->hooks.backend)
        j->b = j->hooks.backend;
    else if (st == LH_OK)
        st = lh_backend_open(j->backend_name, &bo, &j->b, err);
    if (st != LH_OK)
        return st;
    /* The checkpoint is only resumed against the same backend and model. */
    lh_backend_info info;
    lh_backend_describe(j->b, &info);
    lh_sb fp;
    lh_sb_init(&fp);
    lh_sb_appendf(&fp, "%s %s", j->backend_name, info.identity);
    if (lh_sb_failed(&fp)) {
        lh_sb_release(&fp);
        return lh_error_set(err, LH_ERR_NOMEM, "%s: out of memory", j->name);
    }
    j->fingerprint = lh_sb_detach(&fp);
    j->so.fingerprint_extra = j->fingerprint;
    return LH_OK;
}

/* Exact match (greedy outputs) and loss of the result on the test file,
 * through the backend that searched: lorahub-eval(1)'s rule. */
static lh_status run_test(lh_job *j, lh_error *err)
{
    lh_eval_opts eo = {1, 1, LH_JOB_TEST_MAX_NEW_TOKENS};
    lh_eval_result er;
    lh_status st = lh_evaluate(j->b, j->res.merged, j->test_ex, &eo, &er, err);
    if (st != LH_OK) {
        lh_error_prefix(err, j->test);
        lh_search_result_release(&j->res);
        return st;
    }
    j->res.test_n = er.n;
    j->res.test_correct = er.correct;
    j->res.test_loss = er.loss;
    lh_eval_result_release(&er);
    return LH_OK;
}

lh_status lh_job_run(lh_job *j, lh_error *err)
{
    lh_status st = LH_OK;
    if (!j->b)
        st = lh_error_set(err, LH_ERR_ARG, "%s: lh_job_run before lh_job_load", j->name);
    else if (j->hooks.interrupt && *j->hooks.interrupt)
        st = lh_error_set(err, LH_ERR_INTERRUPTED, "interrupted");
    else
        st = lh_search_modules(&j->so, (const lh_adapter *const *)j->ms->mods, j->ms->n, j->ex, j->b,
                           &j->res, err);
    if (st == LH_OK && j->test_ex)
        st = run_test(j, err);
    if (j->b != j->hooks.backend)
        lh_backend_close(j->b); /* also removes the exec backend's temp dir */
    j->b = NULL;
    j->have_result = st == LH_OK || (st == LH_ERR_INTERRUPTED && j->res.weights);
    return st;
}

static lh_status write_weights(const lh_job *j, lh_error *err)
{
    const lh_module_set *ms = j->ms;
    const lh_search_result *r = &j->res;
    lh_sb sb;
    lh_sb_init(&sb);
    for (size_t i = 0; i < r->n_kept; i++) {
        size_t m = r->kept[i];
        lh_sb_appendf(&sb, "%s\t%.17g\n", ms->mods[m]->path ? ms->mods[m]->path : ms->mods[m]->name,
                      r->weights[m]);
    }
    lh_status st = LH_OK;
    if (lh_sb_failed(&sb))
        st = lh_error_set(err, LH_ERR_NOMEM, "%s: out of memory", j->weights_out);
    else if (!strcmp(j->weights_out, "-"))
        fwrite(sb.buf ? sb.buf : "", 1, sb.len, j->hooks.out ? j->hooks.out : stdout);
    else
        st = lh_write_file_atomic(j->weights_out, sb.buf ? sb.buf : "", sb.len, err);
    lh_sb_release(&sb);
    return st;
}

static lh_status write_report(const lh_job *j, lh_error *err)
{
    const char *extra[] = {"task", j->task, "test", j->test ? j->test : "",
                           "preset", j->preset, "backend", j->backend_name,
                           "examples", j->examples, "job", j->name,
                           "output", j->output ? j->output : "", NULL};
    const lh_adapter *const *mods = (const lh_adapter *const *)j->ms->mods;
    if (strcmp(j->report, "-"))
        return lh_search_write_report(j->report, &j->so, mods, j->ms->n, &j->res, extra, err);
    char *text = NULL;
    lh_status st = lh_search_report_text(0, &j->so, mods, j->ms->n, &j->res, extra, &text, err);
    if (st == LH_OK)
        fputs(text, j->hooks.out ? j->hooks.out : stdout);
    free(text);
    return st;
}

/* OUTDIR/adapter.gguf, the directory built aside and renamed into place. */
static lh_status write_gguf(const lh_job *j, lh_error *err)
{
    lh_outdir od;
    lh_status st = lh_outdir_begin(&od, j->output, j->so.force, err);
    if (st != LH_OK)
        return st;
    char *file = lh_outdir_file(&od, "adapter.gguf");
    lh_gguf_save_opts go = {.dtype = j->out_dtype, .force = 1};
    st = file ? lh_gguf_save_lora_opts(j->res.merged, &j->base_arch, file, &go, err)
              : lh_error_set(err, LH_ERR_NOMEM, "%s: out of memory", j->output);
    free(file);
    if (st != LH_OK) {
        lh_outdir_abort(&od);
        return st;
    }
    return lh_outdir_commit(&od, err);
}

/* A file output other than standard output, which does not exist yet. */
static int is_new_file(const char *path)
{
    return path && strcmp(path, "-") != 0 && !lh_path_exists(path);
}

/* All or nothing, as far as it can be: an output this call created is
 * removed again when a later one fails (an adapter without its report
 * looks like a finished run). One that --force replaced cannot be put back
 * and stays; the checkpoint stays too, for --resume. */
lh_status lh_job_write(lh_job *j, lh_error *err)
{
    if (!j->have_result)
        return lh_error_set(err, LH_ERR_ARG, "%s: no result to write", j->name);
    int new_out = is_new_file(j->output), new_report = is_new_file(j->report);
    int wrote_out = 0, wrote_report = 0;
    lh_status st = LH_OK;
    if (j->output) {
        lh_peft_save_opts po = {j->out_dtype, j->so.force, NULL};
        st = j->out_gguf ? write_gguf(j, err) : lh_peft_save(j->res.merged, j->output, &po, err);
        wrote_out = st == LH_OK;
    }
    if (st == LH_OK && j->report) {
        st = write_report(j, err);
        wrote_report = st == LH_OK;
    }
    if (st == LH_OK && j->weights_out)
        st = write_weights(j, err);
    if (st == LH_OK && j->plot)
        st = lh_plot_write_svg(j->plot, &j->so, (const lh_adapter *const *)j->ms->mods, j->ms->n,
                               &j->res, j->task, err);
    if (st != LH_OK && wrote_report && new_report)
        unlink(j->report);
    if (st != LH_OK && wrote_out && new_out)
        lh_rmtree(j->output);
    return st;
}

const lh_adapter *lh_job_module(const lh_job *j, size_t i)
{
    return j && j->ms && i < j->ms->n ? j->ms->mods[i] : NULL;
}

const lh_search_result *lh_job_result(const lh_job *j)
{
    return j && j->have_result ? &j->res : NULL;
}

const lh_search_opts *lh_job_search_opts(const lh_job *j)
{
    return j ? &j->so : NULL;
}

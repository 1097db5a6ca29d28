/* cmd/adapt.c - `lorahub adapt`: search composition weights for a task.
 *
 * Settings come from job files (YAML; keys = the long option names, see
 * lorahub-job(5)) and options; an option overrides the job file, a preset
 * fills the rest (lorahub-adapt(1) states the presets). Several job files
 * run one after another. This file parses options, draws progress, handles
 * SIGINT and prints messages; the settings table is adapt/settings.c, the
 * job adapt/job.c, the search adapt/search.c. */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "adapt/batch.h"
#include "adapt/job.h"
#include "adapt/optim/optimizer.h"
#include "adapt/settings.h"
#include "lib/tempreg.h"
#include "cmd.h"

static const char *const CMD = "adapt";

/* ---- SIGINT, SIGTERM, SIGHUP ---------------------------------------- */

static volatile sig_atomic_t interrupted; /* the first of them that arrived, 0 none */

/* The first signal asks the search to stop and write its best point; a
 * second one removes the temporaries being written and ends the process
 * with that signal's default action. */
static void on_signal(int sig)
{
    if (!interrupted) {
        interrupted = sig;
        return;
    }
    lh_temp_remove_all();
    signal(sig, SIG_DFL);
    raise(sig);
}

static void install_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaddset(&sa.sa_mask, SIGINT);
    sigaddset(&sa.sa_mask, SIGTERM);
    sigaddset(&sa.sa_mask, SIGHUP);
    /* No SA_RESTART: a blocking wait returns EINTR and sees the flag. */
    sa.sa_flags = 0;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
}

/* 128 + the signal, as a shell reports a process it ended (130 for SIGINT). */
static int interrupted_exit(void)
{
    return interrupted ? 128 + interrupted : LH_EXIT_INTERRUPTED;
}

/* ---- progress ------------------------------------------------------- */

typedef struct progress {
    int tty;       /* draw a self-overwriting line */
    int verbose;   /* one line per evaluation */
    int drawn;     /* a line is on screen */
} progress;

static void fmt_time(char *buf, size_t n, double s)
{
    if (s < 0)
        snprintf(buf, n, "?");
    else if (s < 60)
        snprintf(buf, n, "%.1fs", s);
    else if (s < 3600)
        snprintf(buf, n, "%dm%02ds", (int)s / 60, (int)s % 60);
    else
        snprintf(buf, n, "%dh%02dm", (int)s / 3600, ((int)s % 3600) / 60);
}

static void on_progress(void *ud, const lh_search_progress *p)
{
    progress *pr = ud;
    char el[32], eta[32];
    fmt_time(el, sizeof el, p->elapsed_s);
    fmt_time(eta, sizeof eta, p->eta_s);
    if (pr->verbose) {
        if (pr->drawn) {
            fputs("\r\033[K", stderr);
            pr->drawn = 0;
        }
        if (strcmp(p->phase, "rescore"))
            fprintf(stderr, "lorahub adapt: %s %d/%d loss %.6g best %.6g%s\n", p->phase,
                    p->evaluation, p->total, p->loss, p->best_objective,
                    p->replayed ? " (from checkpoint)" : "");
        return;
    }
    if (!pr->tty)
        return;
    fprintf(stderr, "\r\033[Klorahub adapt: %s %d/%d  best %.6g  elapsed %s  left %s", p->phase,
            p->evaluation, p->total, p->best_objective, el, eta);
    fflush(stderr);
    pr->drawn = 1;
}

static void progress_clear(progress *pr)
{
    if (pr->drawn) {
        fputs("\r\033[K", stderr);
        fflush(stderr);
        pr->drawn = 0;
    }
}

static void on_notice(void *ud, const char *line)
{
    (void)ud;
    fprintf(stderr, "lorahub adapt: %s\n", line);
}

/* A warning is said whatever -q says; the progress line first makes room. */
static void on_warning(void *ud, const char *line)
{
    progress_clear(ud);
    cmd_warning(NULL, line);
}

/* ---- one job -------------------------------------------------------- */

static void usage(FILE *f)
{
    fprintf(f,
            "usage: lorahub adapt [JOB.yaml...] [--base DIR] [--modules DIR|LIST] [--pick N]\n"
            "                     [--examples FILE] [--method M] [--density D] [--optimizer NAME|list]\n"
            "                     [--budget N] [--population N] [--bound B] [--l1 C] [--seed S]\n"
            "                     [--backend native|exec] [--backend-cmd CMD] [--backend-timeout SEC]\n"
            "                     [--nan-as-worst] [--resume] [--checkpoint FILE] [-o OUTDIR]\n"
            "                     [--report FILE|-] [--trace FILE] [--weights-out FILE|-]\n"
            "                     [--preselect K] [--select search|best-single|uniform|auto]\n"
            "                     [--start zero|best-single] [--plot FILE] [--no-plot]\n"
            "                     [--task NAME] [--test FILE]\n"
            "                     [--preset default|paper] [--dtype f32|f16|bf16] [--force] [-q] [-v]\n");
}

/* Load (a job file, or nothing), apply the options over it, then the preset. */
static int job_settings(const char *job_file, const lh_settings *flags, lh_settings **out)
{
    lh_error err;
    lh_settings *s = NULL;
    lh_status st = lh_settings_new(&s, &err);
    if (st == LH_OK && job_file)
        st = lh_settings_load_job(s, job_file, &err);
    if (st == LH_OK)
        st = lh_settings_override(s, flags, &err);
    if (st == LH_OK)
        st = lh_settings_apply_preset(s, &err);
    if (st != LH_OK) {
        lh_settings_free(s);
        return cmd_fail(CMD, &err);
    }
    *out = s;
    return 0;
}

/* A failed job: its message printed, and kept in why [why_n] (a batch's summary). */
static int job_failed(const lh_error *err, char *why, size_t why_n)
{
    if (why)
        snprintf(why, why_n, "%s", lh_error_message(err));
    return cmd_fail(CMD, err);
}

static int run_job(const lh_settings *s, const char *job_name, int quiet, int verbose, char *why,
                   size_t why_n)
{
    progress pr = {isatty(2) && !quiet, verbose, 0};
    lh_job_hooks hooks = {.progress = on_progress, .notice = quiet ? NULL : on_notice,
                          .warn = on_warning, .ud = &pr,
                          .interrupt = &interrupted, .out = stdout};
    lh_error err;
    lh_error_clear(&err);
    lh_job *job = NULL;
    lh_status st = lh_job_new(s, job_name, &hooks, &job, &err);
    if (st == LH_OK)
        st = lh_job_load(job, &err);
    if (st == LH_OK)
        st = lh_job_run(job, &err);
    progress_clear(&pr);
    const lh_search_result *res = lh_job_result(job);
    if (!res) {
        lh_job_free(job); /* releases the output locks */
        int rc = job_failed(&err, why, why_n);
        return st == LH_ERR_INTERRUPTED ? interrupted_exit() : rc;
    }
    lh_status run_st = st;
    lh_error werr;
    if (lh_job_write(job, &werr) != LH_OK) {
        lh_job_free(job);
        return job_failed(&werr, why, why_n);
    }
    int rc = 0;
    if (run_st == LH_ERR_INTERRUPTED) {
        const char *ck = lh_job_search_opts(job)->checkpoint_path;
        cmd_error(CMD, "interrupted after %d evaluations; best so far written%s%s%s",
                  res->evaluations, ck ? " (resume from '" : "", ck ? ck : "",
                  ck ? "' with --resume)" : "");
        if (why)
            snprintf(why, why_n, "interrupted after %d evaluations", res->evaluations);
        rc = interrupted_exit();
    } else if (verbose) {
        fprintf(stderr, "lorahub adapt: %d evaluations, best loss %.6g (re-scored %.6g), %s\n",
                res->evaluations, res->best_loss, res->rescored_loss, res->stop_reason);
    }
    lh_job_free(job);
    return rc;
}

static int list_optimizers(void)
{
    for (const lh_optimizer_info *o = lh_optimizer_list(); o && o->name; o++)
        printf("%-12s %s\n", o->name, o->description);
    return 0;
}

/* getopt's table from the settings table, then -q, -v, -h. */
#define MAX_OPTIONS 48
static void build_longopts(struct option *lo)
{
    size_t k = 0;
    for (const lh_setting_def *d = lh_setting_defs(); d->key && k < MAX_OPTIONS - 4; d++, k++) {
        lo[k].name = d->key;
        lo[k].has_arg = d->type == LH_SETTING_BOOL ? no_argument : required_argument;
        lo[k].flag = NULL;
        lo[k].val = 1000 + (int)k;
    }
    lo[k++] = (struct option){"quiet", no_argument, NULL, 'q'};
    lo[k++] = (struct option){"verbose", no_argument, NULL, 'v'};
    lo[k++] = (struct option){"help", no_argument, NULL, 'h'};
    lo[k] = (struct option){NULL, 0, NULL, 0};
}

/* Options into flags. Returns -1 to go on, else the exit code. */
static int parse_options(int argc, char **argv, lh_settings *flags, int *quiet, int *verbose)
{
    static struct option longopts[MAX_OPTIONS];
    build_longopts(longopts);
    const lh_setting_def *defs = lh_setting_defs();
    int opt;
    optind = 1;
    opterr = 0;
    while ((opt = getopt_long(argc, argv, "o:qvh", longopts, NULL)) != -1) {
        if (opt == 'q') {
            *quiet = 1;
        } else if (opt == 'v') {
            *verbose = 1;
        } else if (opt == 'h') {
            usage(stdout);
            return 0;
        } else if (opt == 'o' || opt >= 1000) {
            const lh_setting_def *d = opt == 'o' ? lh_setting_find("output") : &defs[opt - 1000];
            if (!strcmp(d->key, "optimizer") && !strcmp(optarg, "list"))
                return list_optimizers();
            lh_error err;
            char *joined = NULL; /* --server is repeatable: the URLs, comma-separated */
            if (!strcmp(d->key, "server") && lh_settings_is_set(flags, "server") &&
                asprintf(&joined, "%s,%s", lh_settings_text(flags, "server"), optarg) < 0)
            {
                cmd_error(CMD, "out of memory");
                return LH_EXIT_ERROR;
            }
            lh_status st = lh_settings_set(flags, d->key,
                                           d->type == LH_SETTING_BOOL ? "true" : joined ? joined : optarg,
                                           NULL, &err);
            free(joined);
            if (st != LH_OK)
                return cmd_fail(CMD, &err);
        } else {
            const char *bad = argv[optind - 1];
            if (optopt)
                return cmd_usage_error(CMD, "option '-%c' %s", optopt,
                                       strchr("o", optopt) ? "needs a value" : "is unknown");
            return cmd_usage_error(CMD, "option '%s' is unknown or needs a value", bad);
        }
    }
    if (*quiet)
        *verbose = 0;
    return -1;
}

/* One task of a batch: its settings under the options, its outputs laid
 * out in outdir/NAME/, run; its row of the summary. */
static int run_batch_task(lh_batch_task *t, const lh_settings *flags, const char *outdir, int quiet,
                          int verbose, lh_summary_row *row)
{
    lh_error err;
    char why[1024];
    lh_status st = lh_settings_override(t->s, flags, &err);
    if (st == LH_OK)
        st = lh_batch_task_outputs(t->s, outdir, t->name, &err);
    if (st == LH_OK)
        st = lh_settings_apply_preset(t->s, &err);
    int rc = st == LH_OK ? run_job(t->s, t->name, quiet, verbose, why, sizeof why)
                         : job_failed(&err, why, sizeof why);
    if (rc == 0 && lh_summary_row_read(lh_settings_text(t->s, "report"), row, &err) != LH_OK)
        rc = job_failed(&err, why, sizeof why);
    if (rc != 0 && lh_summary_row_failed(t->name, why, row, &err) != LH_OK)
        rc = cmd_fail(CMD, &err);
    return rc;
}

/* A job file with a list of tasks: each in turn, on after a failure; the
 * summary written and printed. Returns the number of failed tasks (at
 * most 100), or LH_EXIT_INTERRUPTED. */
static int run_batch(const char *path, const lh_settings *flags, int quiet, int verbose)
{
    lh_error err;
    lh_batch *b = NULL;
    if (lh_batch_load(path, &b, &err) != LH_OK)
        return cmd_fail(CMD, &err);
    const char *outdir = lh_settings_is_set(flags, "output") ? lh_settings_text(flags, "output")
                                                             : b->output;
    if (!outdir) {
        lh_batch_free(b);
        return cmd_usage_error(CMD, "%s: a batch job needs 'output: DIR' (or -o DIR)", path);
    }
    lh_summary_row *rows = calloc(b->n, sizeof *rows);
    int failed = 0;
    size_t done = 0;
    for (; rows && done < b->n && !interrupted; done++)
        failed += run_batch_task(&b->tasks[done], flags, outdir, quiet, verbose, &rows[done]) != 0;
    char *text = NULL;
    lh_status st = rows ? lh_batch_write_summary(outdir, rows, done, &err)
                        : lh_error_set(&err, LH_ERR_NOMEM, "out of memory");
    if (st == LH_OK)
        st = lh_summary_table(rows, done, LH_SUMMARY_TEXT, &text, &err);
    if (st == LH_OK && !quiet)
        fputs(text, stdout);
    for (size_t i = 0; rows && i < done; i++)
        lh_summary_row_release(&rows[i]);
    free(rows);
    free(text);
    lh_batch_free(b);
    if (st != LH_OK)
        return cmd_fail(CMD, &err);
    if (interrupted)
        return LH_EXIT_INTERRUPTED;
    if (failed)
        cmd_error(CMD, "%s: %d of %zu tasks failed", path, failed, done);
    return failed < 100 ? failed : 100;
}

int cmd_adapt(int argc, char **argv)
{
    lh_settings *flags = NULL;
    lh_error err;
    if (lh_settings_new(&flags, &err) != LH_OK)
        return cmd_fail(CMD, &err);
    int quiet = 0, verbose = 0;
    int rc = parse_options(argc, argv, flags, &quiet, &verbose);
    int n_jobs = argc - optind;
    if (rc < 0 && n_jobs > 1 && lh_settings_is_set(flags, "output"))
        rc = cmd_usage_error(CMD, "-o with several job files: give each job its own output");
    if (rc >= 0) {
        lh_settings_free(flags);
        return rc;
    }
    install_signals();
    rc = 0;
    for (int j = 0; j < (n_jobs ? n_jobs : 1) && !rc; j++) {
        const char *job_file = n_jobs ? argv[optind + j] : NULL;
        if (job_file && lh_batch_is_batch(job_file)) {
            rc = run_batch(job_file, flags, quiet, verbose);
            continue;
        }
        lh_settings *s = NULL;
        rc = job_settings(job_file, flags, &s);
        if (!rc)
            rc = run_job(s, job_file ? job_file : "command line", quiet, verbose, NULL, 0);
        lh_settings_free(s);
        if (!rc && interrupted)
            rc = interrupted_exit();
    }
    lh_settings_free(flags);
    return rc;
}

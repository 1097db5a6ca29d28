/* cmd/adapt.c - `lorahub adapt`: search composition weights for a task.
 *
 * Settings come from job files (YAML; keys = the long option names, see
 * lorahub-job(5)) and flags; a flag overrides the job file. Several job
 * files run one after another. This file only parses, resolves defaults,
 * draws progress and writes outputs; the search is adapt/search.c. */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "adapt/backend/backend.h"
#include "adapt/optim/optimizer.h"
#include "adapt/search.h"
#include "adapt/report.h"
#include "compose/compose.h"
#include "lib/examples.h"
#include "lib/fsutil.h"
#include "lib/json.h"
#include "lib/peft.h"
#include "lib/strbuf.h"
#include "cmd.h"

static const char *const CMD = "adapt";

/* The reference LoraHub draws 20 modules (design notes §7). With 20 or
 * fewer available, all are used. */
#define DEFAULT_PICK 20

enum key_id {
    K_BASE, K_MODULES, K_PICK, K_EXAMPLES, K_METHOD, K_OPTIMIZER, K_BUDGET, K_BOUND, K_L1,
    K_SEED, K_BACKEND, K_BACKEND_CMD, K_BACKEND_TIMEOUT, K_NAN_AS_WORST, K_RESUME, K_OUTPUT,
    K_REPORT, K_TRACE, K_WEIGHTS_OUT, K_CHECKPOINT, K_FORCE, K_PRESELECT, K_SELECT, K_START,
    K_PRESET, K_DTYPE, K_COUNT
};

typedef enum { V_STR, V_PATH, V_INT, V_NUM, V_BOOL, V_MODULES } vtype;

static const struct keydef {
    const char *name;
    vtype type;
    long long lo, hi;    /* V_INT range */
} keydefs[K_COUNT] = {
    [K_BASE] = {"base", V_PATH, 0, 0},
    [K_MODULES] = {"modules", V_MODULES, 0, 0},
    [K_PICK] = {"pick", V_INT, 0, INT_MAX},
    [K_EXAMPLES] = {"examples", V_PATH, 0, 0},
    [K_METHOD] = {"method", V_STR, 0, 0},
    [K_OPTIMIZER] = {"optimizer", V_STR, 0, 0},
    [K_BUDGET] = {"budget", V_INT, 1, 10000000},
    [K_BOUND] = {"bound", V_NUM, 0, 0},
    [K_L1] = {"l1", V_NUM, 0, 0},
    [K_SEED] = {"seed", V_INT, 0, LLONG_MAX},
    [K_BACKEND] = {"backend", V_STR, 0, 0},
    [K_BACKEND_CMD] = {"backend-cmd", V_STR, 0, 0},
    [K_BACKEND_TIMEOUT] = {"backend-timeout", V_NUM, 0, 0},
    [K_NAN_AS_WORST] = {"nan-as-worst", V_BOOL, 0, 0},
    [K_RESUME] = {"resume", V_BOOL, 0, 0},
    [K_OUTPUT] = {"output", V_PATH, 0, 0},
    [K_REPORT] = {"report", V_PATH, 0, 0},
    [K_TRACE] = {"trace", V_PATH, 0, 0},
    [K_WEIGHTS_OUT] = {"weights-out", V_PATH, 0, 0},
    [K_CHECKPOINT] = {"checkpoint", V_PATH, 0, 0},
    [K_FORCE] = {"force", V_BOOL, 0, 0},
    [K_PRESELECT] = {"preselect", V_INT, 0, INT_MAX},
    [K_SELECT] = {"select", V_STR, 0, 0},
    [K_START] = {"start", V_STR, 0, 0},
    [K_PRESET] = {"preset", V_STR, 0, 0},
    [K_DTYPE] = {"dtype", V_STR, 0, 0},
};

typedef struct val {
    int set;
    char *s;            /* V_STR, V_PATH (resolved), V_MODULES given as one string */
    char **list;        /* V_MODULES given as a YAML list: [n_list] resolved paths */
    size_t n_list;
    long long i;        /* V_INT, V_BOOL */
    double d;           /* V_NUM */
    char *base_dir;     /* where relative paths in s are resolved (job files), or NULL */
    int from_preset;    /* filled in by the preset, not given by the user */
} val;

typedef struct cfg {
    val v[K_COUNT];
} cfg;

static void val_release(val *v)
{
    free(v->s);
    for (size_t i = 0; i < v->n_list; i++)
        free(v->list[i]);
    free(v->list);
    free(v->base_dir);
    memset(v, 0, sizeof *v);
}

static void cfg_release(cfg *c)
{
    for (int k = 0; k < K_COUNT; k++)
        val_release(&c->v[k]);
}

/* A path from a job file is relative to the job file's directory. */
static char *resolve(const char *p, const char *base_dir)
{
    if (!base_dir || p[0] == '/' || !strcmp(p, "-"))
        return strdup(p);
    return lh_path_join(base_dir, p);
}

/* Set key k from text. Returns NULL or a static message. */
static const char *set_text(val *v, int k, const char *text, const char *base_dir)
{
    const struct keydef *d = &keydefs[k];
    val_release(v);
    switch (d->type) {
    case V_STR:
    case V_MODULES:
        v->s = strdup(text);
        if (base_dir)
            v->base_dir = strdup(base_dir);
        break;
    case V_PATH:
        if (!*text)
            return "an empty path";
        v->s = resolve(text, base_dir);
        break;
    case V_INT: {
        char *end;
        errno = 0;
        long long x = strtoll(text, &end, 10);
        if (errno || end == text || *end || x < d->lo || x > d->hi)
            return "not an integer in range";
        v->i = x;
        break;
    }
    case V_NUM: {
        char *end;
        errno = 0;
        double x = strtod(text, &end);
        if (errno || end == text || *end || !isfinite(x))
            return "not a number";
        v->d = x;
        break;
    }
    case V_BOOL:
        if (!strcmp(text, "true") || !strcmp(text, "1") || !strcmp(text, "yes"))
            v->i = 1;
        else if (!strcmp(text, "false") || !strcmp(text, "0") || !strcmp(text, "no"))
            v->i = 0;
        else
            return "not a boolean";
        break;
    }
    if ((d->type == V_STR || d->type == V_MODULES || d->type == V_PATH) && !v->s)
        return "out of memory";
    v->set = 1;
    return NULL;
}

static int key_of(const char *name)
{
    for (int k = 0; k < K_COUNT; k++)
        if (!strcmp(keydefs[k].name, name))
            return k;
    return -1;
}

static int load_job(const char *path, cfg *c)
{
    lh_json *j;
    lh_error err;
    if (lh_yaml_parse_file(path, &j, &err) != LH_OK)
        return cmd_fail(CMD, &err);
    if (j->type != LH_JSON_OBJECT) {
        lh_json_free(j);
        cmd_error(CMD, "%s: a job file is a mapping of option names to values", path);
        return LH_EXIT_USAGE;
    }
    char *dir = strdup(path);
    char *slash = dir ? strrchr(dir, '/') : NULL;
    if (slash)
        *slash = '\0';
    else if (dir)
        strcpy(dir, ".");
    int rc = 0;
    for (size_t i = 0; i < j->len && !rc; i++) {
        const char *key = j->keys[i];
        const lh_json *v = j->items[i];
        int k = key_of(key);
        if (k < 0) {
            cmd_error(CMD, "%s: unknown key '%s' (see lorahub-job(5))", path, key);
            rc = LH_EXIT_USAGE;
            break;
        }
        char buf[64];
        const char *text = NULL;
        const char *msg = NULL;
        if (v->type == LH_JSON_ARRAY && k == K_MODULES) {
            val *dst = &c->v[k];
            val_release(dst);
            dst->list = calloc(v->len ? v->len : 1, sizeof *dst->list);
            for (size_t m = 0; m < v->len && dst->list; m++) {
                const char *p;
                if (!lh_json_as_string(v->items[m], &p)) {
                    msg = "a list of paths must hold strings";
                    break;
                }
                dst->list[dst->n_list++] = resolve(p, dir);
            }
            if (!msg && v->len == 0)
                msg = "an empty list";
            dst->set = !msg;
        } else {
            int b;
            double num;
            if (lh_json_as_string(v, &text)) {
            } else if (lh_json_as_bool(v, &b)) {
                text = b ? "true" : "false";
            } else if (lh_json_as_number(v, &num)) {
                snprintf(buf, sizeof buf, "%.17g", num);
                text = buf;
            } else {
                msg = "not a string, number or boolean";
            }
            if (!msg)
                msg = set_text(&c->v[k], k, text, dir);
        }
        if (msg) {
            cmd_error(CMD, "%s: key '%s': %s", path, key, msg);
            rc = LH_EXIT_USAGE;
        }
    }
    free(dir);
    lh_json_free(j);
    return rc;
}

/* ---- SIGINT --------------------------------------------------------- */

static volatile sig_atomic_t interrupted;

static void on_sigint(int sig)
{
    (void)sig;
    interrupted = 1;
}

static void install_sigint(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sigemptyset(&sa.sa_mask);
    /* No SA_RESTART: a blocking wait returns EINTR and sees the flag.
     * SA_RESETHAND: a second Ctrl-C kills at once. */
    sa.sa_flags = SA_RESETHAND;
    sigaction(SIGINT, &sa, NULL);
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

/* ---- one job -------------------------------------------------------- */

static void usage(FILE *f)
{
    fprintf(f,
            "usage: lorahub adapt [JOB.yaml...] [--base DIR] [--modules DIR|LIST] [--pick N]\n"
            "                     [--examples FILE] [--method M] [--optimizer NAME|list]\n"
            "                     [--budget N] [--bound B] [--l1 C] [--seed S]\n"
            "                     [--backend native|exec] [--backend-cmd CMD] [--backend-timeout SEC]\n"
            "                     [--nan-as-worst] [--resume] [--checkpoint FILE] [-o OUTDIR]\n"
            "                     [--report FILE|-] [--trace FILE] [--weights-out FILE|-]\n"
            "                     [--preselect K] [--select search|best-single|uniform]\n"
            "                     [--start zero|best-single]\n"
            "                     [--preset default|paper] [--dtype f32|f16|bf16] [--force] [-q] [-v]\n");
}

/* Split "a,b,c" or read a list file (one path per line, '#' comments,
 * relative to the list file) into paths. */
static int module_list(const val *v, char ***out, size_t *n_out)
{
    *out = NULL;
    *n_out = 0;
    char **list = NULL;
    size_t n = 0, cap = 0;
    char *text = NULL;
    char *list_dir = NULL;
    const char *src = v->s;
    int from_file = !strchr(v->s, ',');
    char *path = from_file ? resolve(v->s, v->base_dir) : NULL;
    if (from_file) {
        lh_error err;
        size_t len;
        if (lh_read_file(path, &text, &len, &err) != LH_OK) {
            free(path);
            return cmd_fail(CMD, &err);
        }
        src = text;
        list_dir = strdup(path);
        char *slash = strrchr(list_dir, '/');
        if (slash)
            *slash = '\0';
        else
            strcpy(list_dir, ".");
    }
    const char *p = src;
    while (*p) {
        size_t len = strcspn(p, from_file ? "\n" : ",");
        char *item = strndup(p, len);
        p += len;
        if (*p)
            p++;
        char *s = item, *e = item + strlen(item);
        while (*s == ' ' || *s == '\t' || *s == '\r')
            s++;
        while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r'))
            *--e = '\0';
        if (!*s || (from_file && *s == '#')) {
            free(item);
            continue;
        }
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            list = realloc(list, cap * sizeof *list);
        }
        list[n++] = resolve(s, from_file ? list_dir : v->base_dir);
        free(item);
    }
    free(text);
    free(list_dir);
    free(path);
    if (n == 0) {
        free(list);
        cmd_error(CMD, "the module list '%s' names no modules", v->s);
        return LH_EXIT_USAGE;
    }
    *out = list;
    *n_out = n;
    return 0;
}

static int check_absent(const char *path, const char *what, int force)
{
    if (!path || !strcmp(path, "-") || force || !lh_path_exists(path))
        return 0;
    cmd_error(CMD, "%s '%s' exists (use --force to replace it)", what, path);
    return LH_EXIT_ERROR;
}

static int write_weights(const char *path, const lh_module_set *ms, const lh_search_result *r)
{
    lh_sb sb;
    lh_sb_init(&sb);
    for (size_t i = 0; i < r->n_kept; i++) {
        size_t m = r->kept[i];
        lh_sb_appendf(&sb, "%s\t%.17g\n", ms->mods[m]->path ? ms->mods[m]->path : ms->mods[m]->name,
                      r->weights[m]);
    }
    if (lh_sb_failed(&sb)) {
        lh_sb_release(&sb);
        cmd_error(CMD, "out of memory");
        return LH_EXIT_ERROR;
    }
    int rc = 0;
    if (!strcmp(path, "-")) {
        fwrite(sb.buf ? sb.buf : "", 1, sb.len, stdout);
    } else {
        lh_error err;
        if (lh_write_file_atomic(path, sb.buf ? sb.buf : "", sb.len, &err) != LH_OK)
            rc = cmd_fail(CMD, &err);
    }
    lh_sb_release(&sb);
    return rc;
}

static const char *str_or(const cfg *c, int k, const char *def)
{
    return c->v[k].set ? c->v[k].s : def;
}

static int run_job(const cfg *c, const char *job_name, const char *preset, int quiet, int verbose)
{
    lh_search_opts so;
    lh_search_opts_default(&so);
    const char *method = str_or(c, K_METHOD, "lorahub");
    if (lh_merge_method_from_name(method, &so.merge.method) != 0)
        return cmd_usage_error(CMD, "unknown method '%s'", method);
    so.optimizer = str_or(c, K_OPTIMIZER, "cobyla");
    if (!lh_optimizer_exists(so.optimizer))
        return cmd_usage_error(CMD, "unknown optimizer '%s' (see --optimizer list)", so.optimizer);
    if (c->v[K_BUDGET].set)
        so.budget = (int)c->v[K_BUDGET].i;
    if (c->v[K_BOUND].set)
        so.bound = c->v[K_BOUND].d;
    if (!(so.bound > 0))
        return cmd_usage_error(CMD, "--bound must be positive");
    if (c->v[K_L1].set)
        so.l1 = c->v[K_L1].d;
    if (!(so.l1 >= 0))
        return cmd_usage_error(CMD, "--l1 must not be negative");
    if (c->v[K_SEED].set)
        so.seed = (uint64_t)c->v[K_SEED].i;
    so.merge.seed = so.seed;
    so.nan_as_worst = c->v[K_NAN_AS_WORST].set && c->v[K_NAN_AS_WORST].i;
    so.resume = c->v[K_RESUME].set && c->v[K_RESUME].i;
    const int force = c->v[K_FORCE].set && c->v[K_FORCE].i;
    /* A resumed run replaces the outputs of the run it continues. */
    so.force = force || so.resume;
    if (c->v[K_PRESELECT].set)
        so.preselect = (int)c->v[K_PRESELECT].i;
    const char *select = str_or(c, K_SELECT, "search");
    if (!strcmp(select, "search"))
        so.select = LH_SELECT_SEARCH;
    else if (!strcmp(select, "best-single"))
        so.select = LH_SELECT_BEST_SINGLE;
    else if (!strcmp(select, "uniform"))
        so.select = LH_SELECT_UNIFORM;
    else
        return cmd_usage_error(CMD, "unknown --select '%s' (search, best-single, uniform)", select);
    const char *start = str_or(c, K_START, "zero");
    if (!strcmp(start, "best-single"))
        so.start_best_single = 1;
    else if (strcmp(start, "zero") != 0)
        return cmd_usage_error(CMD, "unknown --start '%s' (zero, best-single)", start);
    if (so.start_best_single && so.preselect <= 0)
        return cmd_usage_error(CMD, "--start best-single needs --preselect (the single-module losses)");
    int pick = c->v[K_PICK].set ? (int)c->v[K_PICK].i : DEFAULT_PICK;
    so.pick = pick;
    /* The search composes in F32; only the written adapter is converted. */
    const char *dtname = str_or(c, K_DTYPE, "f32");
    lh_dtype out_dtype = !strcmp(dtname, "f32") ? LH_F32 : !strcmp(dtname, "f16") ? LH_F16
                         : !strcmp(dtname, "bf16") ? LH_BF16 : LH_BOOL;
    if (out_dtype == LH_BOOL)
        return cmd_usage_error(CMD, "--dtype '%s' is not f32, f16 or bf16", dtname);

    if (!c->v[K_MODULES].set)
        return cmd_usage_error(CMD, "%s: no modules (--modules DIR|LIST)", job_name);
    if (!c->v[K_EXAMPLES].set)
        return cmd_usage_error(CMD, "%s: no examples (--examples FILE)", job_name);
    const char *backend = c->v[K_BACKEND].set ? c->v[K_BACKEND].s
                          : c->v[K_BASE].set  ? "native"
                          : c->v[K_BACKEND_CMD].set ? "exec" : NULL;
    if (!backend)
        return cmd_usage_error(CMD, "%s: no backend (--base MODEL_DIR, or --backend-cmd CMD)",
                               job_name);
    const lh_backend_i *bi = lh_backend_find(backend);
    if (!bi)
        return cmd_usage_error(CMD, "no backend named '%s' is built in", backend);
    for (const lh_backend_key *bk = bi->keys; bk && bk->key; bk++) {
        int k = key_of(bk->key);
        if (bk->required && (k < 0 || !c->v[k].set))
            return cmd_usage_error(CMD, "the %s backend needs --%s %s", backend, bk->key, bk->what);
    }

    if (c->v[K_BACKEND_TIMEOUT].set && !(c->v[K_BACKEND_TIMEOUT].d >= 0))
        return cmd_usage_error(CMD, "--backend-timeout must not be negative");
    const char *output = str_or(c, K_OUTPUT, NULL);
    const char *report = str_or(c, K_REPORT, NULL);
    const char *trace = str_or(c, K_TRACE, NULL);
    const char *weights_out = str_or(c, K_WEIGHTS_OUT, NULL);
    char *ckpt_default = NULL;
    if (!c->v[K_CHECKPOINT].set && output) {
        size_t n = strlen(output);
        while (n > 1 && output[n - 1] == '/')
            n--;
        ckpt_default = malloc(n + 32);
        if (ckpt_default)
            snprintf(ckpt_default, n + 32, "%.*s.checkpoint.json", (int)n, output);
    }
    so.checkpoint_path = c->v[K_CHECKPOINT].set ? c->v[K_CHECKPOINT].s : ckpt_default;
    so.trace_path = trace;
    if (!output && !report && !weights_out) {
        free(ckpt_default);
        return cmd_usage_error(CMD, "%s: nothing to write (give -o OUTDIR, --report or --weights-out)",
                               job_name);
    }
    if (so.resume && !so.checkpoint_path) {
        free(ckpt_default);
        return cmd_usage_error(CMD, "--resume needs -o OUTDIR or --checkpoint FILE");
    }
    int rc = check_absent(output, "output directory", so.force);
    if (!rc)
        rc = check_absent(report, "report", so.force);
    if (!rc)
        rc = check_absent(weights_out, "weights file", so.force);
    if (!rc && report && weights_out && !strcmp(report, "-") && !strcmp(weights_out, "-"))
        rc = cmd_usage_error(CMD, "--report - and --weights-out - both want standard output");
    if (rc) {
        free(ckpt_default);
        return rc;
    }

    /* Load what the search needs. */
    lh_error err;
    lh_error_clear(&err);
    lh_module_set *ms = NULL;
    lh_examples *ex = NULL;
    lh_backend *b = NULL;
    lh_search_result res;
    memset(&res, 0, sizeof res);
    lh_status st;
    const val *mv = &c->v[K_MODULES];
    if (mv->list) {
        st = lh_modules_from_list((const char *const *)mv->list, mv->n_list, pick, so.seed, &ms,
                                  &err);
    } else {
        char *p = resolve(mv->s, mv->base_dir);
        if (p && lh_is_dir(p)) {
            st = lh_modules_from_dir(p, pick, so.seed, &ms, &err);
        } else if (p && (!strchr(mv->s, ',') && (strlen(p) > 12 &&
                         !strcmp(p + strlen(p) - 12, ".safetensors")))) {
            const char *one[1] = {p};
            st = lh_modules_from_list(one, 1, pick, so.seed, &ms, &err);
        } else {
            char **list;
            size_t n;
            rc = module_list(mv, &list, &n);
            if (rc) {
                free(p);
                free(ckpt_default);
                return rc;
            }
            st = lh_modules_from_list((const char *const *)list, n, pick, so.seed, &ms, &err);
            for (size_t i = 0; i < n; i++)
                free(list[i]);
            free(list);
        }
        free(p);
    }
    if (st == LH_OK && (!c->v[K_PICK].set || c->v[K_PICK].from_preset) && ms->n < ms->n_available &&
        !quiet)
        fprintf(stderr, "lorahub adapt: %s: using %zu of %zu modules, drawn with seed %llu "
                        "(--pick 0 uses all)\n",
                job_name, ms->n, ms->n_available, (unsigned long long)so.seed);
    if (st == LH_OK)
        st = lh_examples_load(c->v[K_EXAMPLES].s, &ex, &err);
    /* Every backend setting the user gave; each backend reads its own keys. */
    char timeout_text[32];
    const char *params[16];
    size_t np = 0;
    if (c->v[K_BASE].set) {
        params[np++] = "base";
        params[np++] = c->v[K_BASE].s;
    }
    if (c->v[K_BACKEND_CMD].set) {
        params[np++] = "backend-cmd";
        params[np++] = c->v[K_BACKEND_CMD].s;
    }
    if (c->v[K_BACKEND_TIMEOUT].set) {
        snprintf(timeout_text, sizeof timeout_text, "%.17g", c->v[K_BACKEND_TIMEOUT].d);
        params[np++] = "backend-timeout";
        params[np++] = timeout_text;
    }
    params[np] = NULL;
    lh_backend_opts bo;
    lh_backend_opts_default(&bo);
    bo.params = params;
    bo.interrupt = &interrupted;
    if (st == LH_OK)
        st = lh_backend_open(backend, &bo, &b, &err);
    lh_sb fp;
    lh_sb_init(&fp);
    lh_backend_info info;
    lh_backend_describe(b, &info);
    lh_sb_appendf(&fp, "%s %s", backend, info.identity);
    so.fingerprint_extra = fp.buf;
    progress pr = {isatty(2) && !quiet, verbose, 0};
    so.progress = on_progress;
    so.progress_ud = &pr;
    so.interrupt = &interrupted;
    if (st == LH_OK && interrupted)
        st = lh_error_set(&err, LH_ERR_INTERRUPTED, "interrupted");
    if (st == LH_OK)
        st = lh_search_run(&so, (const lh_adapter *const *)ms->mods, ms->n, ex, b, &res, &err);
    progress_clear(&pr);
    lh_backend_close(b); /* also removes the exec backend's temp dir */
    b = NULL;
    int have_result = st == LH_OK || (st == LH_ERR_INTERRUPTED && res.weights);
    if (!have_result) {
        rc = cmd_fail(CMD, &err);
        goto out;
    }
    lh_status run_st = st;
    if (output) {
        lh_peft_save_opts po = {out_dtype, so.force, NULL};
        st = lh_peft_save(res.merged, output, &po, &err);
        if (st != LH_OK) {
            rc = cmd_fail(CMD, &err);
            goto out;
        }
    }
    if (report) {
        const char *extra[] = {"preset", preset, "backend", backend,
                               "examples", c->v[K_EXAMPLES].s, "job", job_name,
                               "output", output ? output : "", NULL};
        if (!strcmp(report, "-")) {
            char *text = NULL;
            st = lh_search_report_text(0, &so, (const lh_adapter *const *)ms->mods, ms->n, &res,
                                       extra, &text, &err);
            if (st == LH_OK)
                fputs(text, stdout);
            free(text);
        } else {
            st = lh_search_write_report(report, &so, (const lh_adapter *const *)ms->mods, ms->n,
                                        &res, extra, &err);
        }
        if (st != LH_OK) {
            rc = cmd_fail(CMD, &err);
            goto out;
        }
    }
    if (weights_out && (rc = write_weights(weights_out, ms, &res)))
        goto out;
    if (run_st == LH_ERR_INTERRUPTED) {
        cmd_error(CMD, "interrupted after %d evaluations; best so far written (resume with --resume)",
                  res.evaluations);
        rc = LH_EXIT_INTERRUPTED;
    } else if (verbose) {
        fprintf(stderr, "lorahub adapt: %d evaluations, best loss %.6g (re-scored %.6g), %s\n",
                res.evaluations, res.best_loss, res.rescored_loss, res.stop_reason);
    }
out:
    lh_sb_release(&fp);
    lh_search_result_release(&res);
    lh_backend_close(b);
    lh_examples_free(ex);
    lh_module_set_free(ms);
    free(ckpt_default);
    return rc;
}

/* A preset fills the settings that neither a job file nor an option gives.
 * "default" is what runs without --preset: the configuration that won the
 * bundled zoo's table (docs/results.md; lorahub-adapt(1) gives the figures).
 * "paper" is the reference LoraHub (design notes §7). */
static const struct preset {
    const char *name;
    const char *settings[8][2]; /* key, value; ends at a NULL key */
} presets[] = {
    {"default", {{"pick", "0"}, {"select", "best-single"}, {"preselect", "3"}, {"method", "cat"},
                 {"optimizer", "cobyla"}, {"budget", "40"}, {"bound", "1.5"}, {"l1", "0.05"}}},
    {"paper", {{"pick", "20"}, {"select", "search"}, {"preselect", "0"}, {"method", "lorahub"},
               {"optimizer", "cobyla"}, {"budget", "40"}, {"bound", "1.5"}, {"l1", "0.05"}}},
};

static const struct preset *find_preset(const char *name)
{
    for (size_t i = 0; i < sizeof presets / sizeof presets[0]; i++)
        if (!strcmp(presets[i].name, name))
            return &presets[i];
    return NULL;
}

static void apply_preset(cfg *c, const struct preset *p)
{
    for (size_t i = 0; i < 8 && p->settings[i][0]; i++) {
        int k = key_of(p->settings[i][0]);
        if (!c->v[k].set) {
            set_text(&c->v[k], k, p->settings[i][1], NULL);
            c->v[k].from_preset = 1;
        }
    }
    /* A search setting given by the user asks for a search: it overrides a
     * preset's select (the default retrieves one module and searches nothing). */
    static const int search_keys[] = {K_OPTIMIZER, K_BUDGET, K_BOUND, K_L1, K_START};
    if (c->v[K_SELECT].from_preset)
        for (size_t i = 0; i < sizeof search_keys / sizeof search_keys[0]; i++)
            if (c->v[search_keys[i]].set && !c->v[search_keys[i]].from_preset) {
                set_text(&c->v[K_SELECT], K_SELECT, "search", NULL);
                c->v[K_SELECT].from_preset = 1;
                break;
            }
}

static int list_optimizers(void)
{
    for (const lh_optimizer_info *o = lh_optimizer_list(); o && o->name; o++)
        printf("%-12s %s\n", o->name, o->description);
    return 0;
}

int cmd_adapt(int argc, char **argv)
{
    static struct option longopts[K_COUNT + 4];
    for (int k = 0; k < K_COUNT; k++) {
        longopts[k].name = keydefs[k].name;
        longopts[k].has_arg = keydefs[k].type == V_BOOL ? no_argument : required_argument;
        longopts[k].flag = NULL;
        longopts[k].val = 1000 + k;
    }
    longopts[K_COUNT] = (struct option){"quiet", no_argument, NULL, 'q'};
    longopts[K_COUNT + 1] = (struct option){"verbose", no_argument, NULL, 'v'};
    longopts[K_COUNT + 2] = (struct option){"help", no_argument, NULL, 'h'};
    longopts[K_COUNT + 3] = (struct option){NULL, 0, NULL, 0};

    cfg flags;
    memset(&flags, 0, sizeof flags);
    int quiet = 0, verbose = 0, opt;
    optind = 1;
    opterr = 0;
    while ((opt = getopt_long(argc, argv, "o:qvh", longopts, NULL)) != -1) {
        if (opt == 'q') {
            quiet = 1;
        } else if (opt == 'v') {
            verbose = 1;
        } else if (opt == 'h') {
            usage(stdout);
            cfg_release(&flags);
            return 0;
        } else if (opt == 'o' || opt >= 1000) {
            int k = opt == 'o' ? K_OUTPUT : opt - 1000;
            if (k == K_OPTIMIZER && !strcmp(optarg, "list")) {
                cfg_release(&flags);
                return list_optimizers();
            }
            const char *msg = set_text(&flags.v[k], k, keydefs[k].type == V_BOOL ? "true" : optarg,
                                       NULL);
            if (msg) {
                cfg_release(&flags);
                return cmd_usage_error(CMD, "--%s '%s': %s", keydefs[k].name, optarg, msg);
            }
        } else {
            const char *bad = argv[optind - 1];
            cfg_release(&flags);
            if (optopt)
                return cmd_usage_error(CMD, "option '-%c' %s", optopt,
                                       strchr("o", optopt) ? "needs a value" : "is unknown");
            return cmd_usage_error(CMD, "option '%s' is unknown or needs a value", bad);
        }
    }
    if (quiet)
        verbose = 0;
    int n_jobs = argc - optind;
    if (n_jobs > 1 && flags.v[K_OUTPUT].set) {
        cfg_release(&flags);
        return cmd_usage_error(CMD, "-o with several job files: give each job its own output");
    }
    install_sigint();
    int rc = 0;
    for (int j = 0; j < (n_jobs ? n_jobs : 1) && !rc; j++) {
        cfg c;
        memset(&c, 0, sizeof c);
        const char *job_name = n_jobs ? argv[optind + j] : "command line";
        if (n_jobs)
            rc = load_job(job_name, &c);
        if (!rc) {
            /* flags override the job file */
            for (int k = 0; k < K_COUNT; k++)
                if (flags.v[k].set) {
                    val_release(&c.v[k]);
                    c.v[k] = flags.v[k];
                    c.v[k].s = flags.v[k].s ? strdup(flags.v[k].s) : NULL;
                    c.v[k].list = NULL;
                    c.v[k].n_list = 0;
                    c.v[k].base_dir = NULL;
                }
            const char *pname = c.v[K_PRESET].set ? c.v[K_PRESET].s : "default";
            const struct preset *p = find_preset(pname);
            if (!p)
                rc = cmd_usage_error(CMD, "unknown preset '%s' (known: default, paper)", pname);
            else {
                apply_preset(&c, p);
                rc = run_job(&c, job_name, p->name, quiet, verbose);
            }
        }
        cfg_release(&c);
        if (!rc && interrupted)
            rc = LH_EXIT_INTERRUPTED;
    }
    cfg_release(&flags);
    return rc;
}

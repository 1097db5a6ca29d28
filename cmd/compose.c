/* cmd/compose.c - `lorahub compose`: merge modules with given weights and a
 * method, write one PEFT directory. See man/lorahub-compose.1.
 *
 * Order of work: options, module list, weights (all cheap and checked
 * before anything is loaded), the output directory check, loading, the
 * merge, the atomic save. Nothing is written unless everything succeeded. */
#include <errno.h>
#include <signal.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "compose/compose.h"
#include "compose/mos_compose.h"
#include "lib/adapter.h"
#include "lib/fsutil.h"
#include "lib/json.h"
#include "lib/gguf.h"
#include "lib/mos.h"
#include "lib/outpath.h"
#include "lib/peft.h"
#include "lib/strbuf.h"
#include "lib/tempreg.h"
#include "cmd.h"

#define CMD "compose"

static void usage(FILE *f)
{
    fprintf(f, "usage: lorahub compose [-m METHOD] [-w W1,W2,...] [--weights FILE] [--rank K]\n"
               "                       [--density D] [--majority-sign total|frequency] "
               "[--seed S]\n"
               "                       [--clamp Q] [--peft] [--dtype f32|f16|bf16] [--json] "
               "[--force]\n"
               "                       [--base BASE] -o OUTDIR|OUT.gguf MODULE...\n"
               "       lorahub compose [-w W1,W2,...] [--weights FILE] [--json] [--force]\n"
               "                       -o OUT.safetensors MOS_MODULE...   (MoS, one routing)\n");
}

/* A growable list of strings. */
typedef struct strlist {
    char **v;    /* [n] malloc'd strings */
    size_t n, cap;
} strlist;

static int sl_push(strlist *l, const char *s, size_t len)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 16;
        char **v = realloc(l->v, cap * sizeof *v);
        if (!v)
            return -1;
        l->v = v;
        l->cap = cap;
    }
    if (!(l->v[l->n] = strndup(s, len)))
        return -1;
    l->n++;
    return 0;
}

static void sl_release(strlist *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i]);
    free(l->v);
    memset(l, 0, sizeof *l);
}

/* All of stdin, NUL-terminated. */
static char *read_stdin(size_t *len)
{
    size_t cap = 65536, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        size_t got = fread(buf + n, 1, cap - n - 1, stdin);
        n += got;
        if (got == 0)
            break;
        if (cap - n - 1 == 0) {
            char *nb = realloc(buf, cap * 2);
            if (!nb) {
                free(buf);
                return NULL;
            }
            buf = nb;
            cap *= 2;
        }
    }
    if (!buf || ferror(stdin)) {
        free(buf);
        return NULL;
    }
    buf[n] = '\0';
    *len = n;
    return buf;
}

/* The module's short names for weight files: "dir/x/" -> "x", and a
 * .safetensors or .gguf file also answers to its name without the extension. */
static int key_matches(const char *key, const char *path)
{
    if (!strcmp(key, path))
        return 1;
    size_t n;
    const char *b = lh_path_base(path, &n);
    size_t kl = strlen(key);
    if (kl == n && !strncmp(key, b, kl))
        return 1;
    static const char *const exts[] = {".safetensors", ".gguf"};
    for (size_t i = 0; i < 2; i++) {
        size_t el = strlen(exts[i]);
        if (n > el && !strncmp(b + n - el, exts[i], el) && kl == n - el && !strncmp(key, b, kl))
            return 1;
    }
    return 0;
}

/* Assign weight v for key to the one module it names. */
static int assign_key(const char *origin, const char *key, double v, char **paths, size_t n,
                      double *w, int *seen)
{
    size_t hit = n, hits = 0;
    for (size_t i = 0; i < n; i++)
        if (!strcmp(key, paths[i])) {
            hit = i;
            hits = 1;
            break;
        }
    if (!hits)
        for (size_t i = 0; i < n; i++)
            if (key_matches(key, paths[i])) {
                hit = i;
                hits++;
            }
    if (hits == 0) {
        cmd_error(CMD, "%s: '%s' is not one of the modules", origin, key);
        return -1;
    }
    if (hits > 1) {
        cmd_error(CMD, "%s: '%s' names %zu modules; use the module's path", origin, key, hits);
        return -1;
    }
    if (seen[hit]) {
        cmd_error(CMD, "%s: module '%s' has two weights", origin, paths[hit]);
        return -1;
    }
    if (!isfinite(v)) {
        cmd_error(CMD, "%s: the weight of '%s' is not a finite number", origin, key);
        return -1;
    }
    seen[hit] = 1;
    w[hit] = v;
    return 0;
}

/* --weights: a YAML/JSON mapping (module -> weight) or list, or TSV lines
 * "module<TAB>weight". Returns an exit code (0 = ok). */
static int parse_weights_text(const char *origin, char *text, size_t len, char **paths, size_t n,
                              double *w)
{
    int *seen = calloc(n, sizeof *seen); /* [n] */
    if (!seen) {
        cmd_error(CMD, "out of memory");
        return LH_EXIT_ERROR;
    }
    int rc = LH_EXIT_OK;
    if (memchr(text, '\t', len)) {
        /* TSV: YAML forbids tabs in the places a TSV has them. */
        size_t lineno = 0;
        for (char *line = text; line && *line && !rc;) {
            char *nl = strchr(line, '\n');
            if (nl)
                *nl = '\0';
            lineno++;
            size_t l = strlen(line);
            if (l && line[l - 1] == '\r')
                line[--l] = '\0';
            if (l && line[0] != '#') {
                char *tab = strrchr(line, '\t');
                double v;
                if (!tab) {
                    cmd_error(CMD, "%s: line %zu: expected 'module<TAB>weight'", origin, lineno);
                    rc = LH_EXIT_USAGE;
                } else {
                    *tab = '\0';
                    if (cmd_parse_double(tab + 1, &v)) {
                        cmd_error(CMD, "%s: line %zu: weight '%s' is not a finite number", origin,
                                  lineno, tab + 1);
                        rc = LH_EXIT_USAGE;
                    } else if (assign_key(origin, line, v, paths, n, w, seen)) {
                        rc = LH_EXIT_USAGE;
                    }
                }
            }
            line = nl ? nl + 1 : NULL;
        }
    } else {
        lh_json *j = NULL;
        lh_error err = {0};
        if (lh_yaml_parse(text, len, origin, &j, &err) != LH_OK) {
            free(seen);
            return cmd_fail(CMD, &err);
        }
        if (j->type == LH_JSON_ARRAY) {
            if (j->len != n) {
                cmd_error(CMD, "%s: %zu weights for %zu modules", origin, j->len, n);
                rc = LH_EXIT_USAGE;
            }
            for (size_t i = 0; i < j->len && !rc; i++) {
                double v;
                if (!lh_json_as_number(j->items[i], &v) || !isfinite(v)) {
                    cmd_error(CMD, "%s: item %zu is not a finite number", origin, i + 1);
                    rc = LH_EXIT_USAGE;
                } else {
                    w[i] = v;
                    seen[i] = 1;
                }
            }
        } else if (j->type == LH_JSON_OBJECT) {
            for (size_t i = 0; i < j->len && !rc; i++) {
                double v;
                if (!lh_json_as_number(j->items[i], &v)) {
                    cmd_error(CMD, "%s: the weight of '%s' is not a number", origin, j->keys[i]);
                    rc = LH_EXIT_USAGE;
                } else if (assign_key(origin, j->keys[i], v, paths, n, w, seen)) {
                    rc = LH_EXIT_USAGE;
                }
            }
        } else {
            cmd_error(CMD, "%s: expected a mapping (module: weight), a list of weights, or "
                           "TSV lines 'module<TAB>weight'", origin);
            rc = LH_EXIT_USAGE;
        }
        lh_json_free(j);
    }
    for (size_t i = 0; i < n && !rc; i++)
        if (!seen[i]) {
            cmd_error(CMD, "%s: module '%s' has no weight", origin, paths[i]);
            rc = LH_EXIT_USAGE;
        }
    free(seen);
    return rc;
}

static int parse_weight_list(const char *s, size_t n, double *w)
{
    size_t k = 0;
    const char *p = s;
    for (;;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        char tok[64];
        double v;
        if (len == 0 || len >= sizeof tok) {
            return cmd_usage_error(CMD, "-w: expected comma-separated numbers, got '%s'", s);
        }
        memcpy(tok, p, len);
        tok[len] = '\0';
        if (cmd_parse_double(tok, &v))
            return cmd_usage_error(CMD, "-w: weight '%s' is not a finite number", tok);
        if (k < n)
            w[k] = v;
        k++;
        if (!comma)
            break;
        p = comma + 1;
    }
    if (k != n)
        return cmd_usage_error(CMD, "-w gives %zu weight%s for %zu module%s", k,
                               k == 1 ? "" : "s", n, n == 1 ? "" : "s");
    return 0;
}

static int method_is_svd(lh_merge_method m)
{
    return m == LH_MERGE_SVD || m >= LH_MERGE_TIES_SVD;
}
static int method_is_sparse(lh_merge_method m)
{
    return (m >= LH_MERGE_TIES && m <= LH_MERGE_MAGNITUDE_PRUNE) || m >= LH_MERGE_TIES_SVD;
}
static int method_is_dare(lh_merge_method m)
{
    return m == LH_MERGE_DARE_LINEAR || m == LH_MERGE_DARE_TIES ||
           m == LH_MERGE_DARE_LINEAR_SVD || m == LH_MERGE_DARE_TIES_SVD;
}
static int method_is_ties(lh_merge_method m)
{
    return m == LH_MERGE_TIES || m == LH_MERGE_DARE_TIES || m == LH_MERGE_TIES_SVD ||
           m == LH_MERGE_DARE_TIES_SVD;
}

enum { OPT_WEIGHTS = 256, OPT_RANK, OPT_DENSITY, OPT_SIGN, OPT_SEED, OPT_CLAMP, OPT_DTYPE,
       OPT_JSON, OPT_FORCE, OPT_PEFT, OPT_BASE };

/* The summary built in sb, to stdout. */
static int print_summary(const lh_sb *sb)
{
    if (lh_sb_failed(sb)) {
        cmd_error(CMD, "out of memory");
        return LH_EXIT_ERROR;
    }
    fwrite(sb->buf, 1, sb->len, stdout);
    return 0;
}

/* An output path ending in .safetensors asks for an MoS module: modules with
 * identical routing compose exactly in shard space (lorahub method), and the
 * result keeps their routing and size (lorahub-mos(5)). */
static int compose_mos_file(char **paths, size_t n, const double *w, const char *out_path,
                            int force, int as_json, lh_sb *sb)
{
    lh_error err = {0};
    lh_mos **mods = calloc(n, sizeof *mods); /* [n] */
    lh_mos *out = NULL;
    int rc = 0;
    double t0 = lh_monotonic_seconds();
    if (!mods) {
        cmd_error(CMD, "out of memory");
        return LH_EXIT_ERROR;
    }
    for (size_t i = 0; i < n && !rc; i++)
        if (lh_mos_load(paths[i], &mods[i], &err) != LH_OK)
            rc = cmd_fail(CMD, &err);
    if (!rc && lh_compose_mos((const lh_mos *const *)mods, n, w, &out, &err) != LH_OK)
        rc = cmd_fail(CMD, &err);
    if (!rc && lh_mos_save(out, out_path, force, &err) != LH_OK)
        rc = cmd_fail(CMD, &err);
    if (!rc) {
        double secs = lh_monotonic_seconds() - t0;
        unsigned long long pool_params = (unsigned long long)lh_mos_n_pool_params(out);
        if (as_json) {
            lh_sb_append(sb, "{\"method\":\"lorahub\",\"format\":\"mos\",\"output\":");
            lh_sb_append_json_string(sb, out_path);
            lh_sb_appendf(sb, ",\"modules\":%zu,\"rank\":%d,\"pool_parameters\":%llu,\"seconds\":", n,
                          out->r, pool_params);
            lh_sb_append_json_number(sb, secs);
            lh_sb_append(sb, "}\n");
        } else {
            lh_sb_appendf(sb, "composed %zu MoS module%s with lorahub in shard space into %s: rank %d, "
                              "%llu pool parameters, %.2f s\n",
                          n, n == 1 ? "" : "s", out_path, out->r, pool_params, secs);
        }
        rc = print_summary(sb);
    }
    for (size_t i = 0; i < n; i++)
        lh_mos_free(mods[i]);
    free(mods);
    lh_mos_free(out);
    return rc;
}

/* A PEFT directory, or a llama.cpp GGUF adapter when outdir ends in .gguf. */
static lh_status save_output(const lh_adapter *out, const char *outdir,
                             const lh_peft_save_opts *so, const lh_gguf_arch *arch, lh_error *err)
{
    if (!lh_str_ends_with(outdir, ".gguf"))
        return lh_peft_save(out, outdir, so, err);
    lh_gguf_save_opts go = {.dtype = so->dtype, .force = so->force};
    return lh_gguf_save_lora_opts(out, arch, outdir, &go, err);
}

/* SIGINT, SIGTERM, SIGHUP: remove the output being written ("OUT.tmp.*"),
 * then end with the signal's default action. */
static void on_signal(int sig)
{
    /* Any thread may take a process-directed signal (OpenBLAS's workers
     * too): hand it to the main thread, the one writing the output, so no
     * file appears in the temporary after it was removed. */
    pid_t pid = getpid();
    if ((pid_t)syscall(SYS_gettid) != pid) {
        syscall(SYS_tgkill, pid, pid, sig);
        return;
    }
    lh_temp_remove_all();
    signal(sig, SIG_DFL);
    raise(sig);
}

/* Lock the output (two composes never write one) and remove what a killed
 * compose of it left behind; install the signal handlers. */
static int claim_output(const char *outdir, lh_path_lock *lock)
{
    lh_error err;
    if (lh_path_lock_take(lock, outdir, "output", &err) != LH_OK)
        return cmd_fail(CMD, &err);
    lh_remove_stale_temps(outdir);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    return 0;
}

/* What the command line asked for. */
typedef struct compose_args {
    lh_merge_opts mo;
    lh_peft_save_opts so;
    const char *wlist, *wfile, *outdir, *base;
    int as_json, force;
    int set_rank, set_density, set_sign, set_seed, set_clamp; /* given explicitly */
    int first_module;          /* argv index of the first module */
} compose_args;

/* One option into a; 0, or the exit code of a usage error. */
static int take_option(int c, const char *arg, compose_args *a)
{
    long l;
    double d;
    switch (c) {
    case 'm':
        if (lh_merge_method_from_name(arg, &a->mo.method))
            return cmd_usage_error(CMD, "unknown method '%s' (lorahub, linear, cat, svd, ties, "
                                        "dare-linear, dare-ties, magnitude-prune, or one of the "
                                        "last four with -svd)", arg);
        return 0;
    case 'w': a->wlist = arg; return 0;
    case OPT_WEIGHTS: a->wfile = arg; return 0;
    case 'o': a->outdir = arg; return 0;
    case OPT_RANK:
        if (cmd_parse_int(arg, 1, 1 << 20, &l))
            return cmd_usage_error(CMD, "--rank '%s' is not a positive integer", arg);
        a->mo.rank = (int)l;
        a->set_rank = 1;
        return 0;
    case OPT_DENSITY:
        if (cmd_parse_double(arg, &d) || !(d > 0 && d <= 1))
            return cmd_usage_error(CMD, "--density '%s' is not a number in (0, 1]", arg);
        a->mo.density = d;
        a->set_density = 1;
        return 0;
    case OPT_SIGN:
        if (!strcmp(arg, "total"))
            a->mo.majority_sign = LH_SIGN_TOTAL;
        else if (!strcmp(arg, "frequency"))
            a->mo.majority_sign = LH_SIGN_FREQUENCY;
        else
            return cmd_usage_error(CMD, "--majority-sign '%s' is not total or frequency", arg);
        a->set_sign = 1;
        return 0;
    case OPT_SEED: {
        char *end;
        errno = 0;
        unsigned long long s = strtoull(arg, &end, 10);
        if (!*arg || *end || errno || arg[0] == '-')
            return cmd_usage_error(CMD, "--seed '%s' is not a non-negative integer", arg);
        a->mo.seed = s;
        a->set_seed = 1;
        return 0;
    }
    case OPT_CLAMP:
        if (cmd_parse_double(arg, &d) || !(d > 0 && d <= 1))
            return cmd_usage_error(CMD, "--clamp '%s' is not a quantile in (0, 1]", arg);
        a->mo.clamp_quantile = d;
        a->set_clamp = 1;
        return 0;
    case OPT_DTYPE:
        if (cmd_parse_dtype(arg, &a->so.dtype))
            return cmd_usage_error(CMD, "--dtype '%s' is not f32, f16 or bf16", arg);
        return 0;
    case OPT_JSON: a->as_json = 1; return 0;
    case OPT_FORCE: a->force = 1; return 0;
    case OPT_PEFT: a->mo.peft_parity = 1; return 0;
    case OPT_BASE: a->base = arg; return 0;
    }
    return cmd_usage_error(CMD, "unknown option");
}

/* The options that only some methods read, and what every run needs. */
static int check_args(const compose_args *a, int argc)
{
    const lh_merge_opts *mo = &a->mo;
    const char *mname = lh_merge_method_name(mo->method);
    if (a->set_rank && !method_is_svd(mo->method))
        return cmd_usage_error(CMD, "--rank applies to the svd methods, not %s", mname);
    if (a->set_density && !method_is_sparse(mo->method))
        return cmd_usage_error(CMD, "--density applies to ties, dare and magnitude-prune, not %s",
                               mname);
    if (a->set_sign && !method_is_ties(mo->method))
        return cmd_usage_error(CMD, "--majority-sign applies to the ties methods, not %s", mname);
    if (a->set_seed && !method_is_dare(mo->method))
        return cmd_usage_error(CMD, "--seed applies to the dare methods, not %s", mname);
    if (a->set_clamp && !method_is_svd(mo->method))
        return cmd_usage_error(CMD, "--clamp applies to the svd methods, not %s", mname);
    if (mo->peft_parity && mo->method == LH_MERGE_LORAHUB)
        return cmd_usage_error(CMD, "--peft: lorahub is not a PEFT method");
    if (!a->outdir)
        return cmd_usage_error(CMD, "no output directory (-o OUTDIR)");
    if (lh_path_is_stdout(a->outdir)) {
        cmd_error(CMD, "-o: " LH_STDOUT_DIR_MSG);
        return LH_EXIT_USAGE;
    }
    if (lh_str_ends_with(a->outdir, ".gguf") && !a->base)
        return cmd_usage_error(CMD, "a .gguf output needs the base model: --base DIR (HF "
                               "config.json) or --base MODEL.gguf");
    if (a->first_module >= argc)
        return cmd_usage_error(CMD, "no modules given");
    if (a->wlist && a->wfile)
        return cmd_usage_error(CMD, "give the weights with -w or --weights, not both");
    return 0;
}

/* argv into a: 0 to go on, else the exit code (-h: LH_EXIT_OK). */
static int parse_args(int argc, char **argv, compose_args *a, int *stop)
{
    static const struct option opts[] = {
        {"method", required_argument, NULL, 'm'},
        {"weights", required_argument, NULL, OPT_WEIGHTS},
        {"rank", required_argument, NULL, OPT_RANK},
        {"density", required_argument, NULL, OPT_DENSITY},
        {"majority-sign", required_argument, NULL, OPT_SIGN},
        {"seed", required_argument, NULL, OPT_SEED},
        {"clamp", required_argument, NULL, OPT_CLAMP},
        {"dtype", required_argument, NULL, OPT_DTYPE},
        {"json", no_argument, NULL, OPT_JSON},
        {"force", no_argument, NULL, OPT_FORCE},
        {"peft", no_argument, NULL, OPT_PEFT},
        {"base", required_argument, NULL, OPT_BASE},
        {"output", required_argument, NULL, 'o'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    memset(a, 0, sizeof *a);
    lh_merge_opts_default(&a->mo);
    a->so.dtype = LH_F32;
    *stop = 1;
    opterr = 0;
    int c, rc;
    while ((c = getopt_long(argc, argv, ":m:w:o:h", opts, NULL)) != -1) {
        switch (c) {
        case 'h': usage(stdout); return LH_EXIT_OK;
        case ':':
            return cmd_usage_error(CMD, "option '%s' needs a value", argv[optind - 1]);
        case '?':
            if (optopt && optopt < 256 && strchr("mwo", optopt))
                return cmd_usage_error(CMD, "option '-%c' needs a value", optopt);
            return cmd_usage_error(CMD, "unknown option '%s'", argv[optind - 1]);
        default:
            if ((rc = take_option(c, optarg, a)))
                return rc;
        }
    }
    a->first_module = optind;
    if ((rc = check_args(a, argc)))
        return rc;
    *stop = 0;
    return 0;
}

/* The module paths: the arguments, with '-' read as a list from standard
 * input ('#' lines skipped). */
static int read_module_paths(int argc, char **argv, const compose_args *a, strlist *paths)
{
    int stdin_modules = 0;
    for (int i = a->first_module; i < argc; i++) {
        if (strcmp(argv[i], "-") != 0) {
            if (sl_push(paths, argv[i], strlen(argv[i])))
                return cmd_error(CMD, "out of memory"), LH_EXIT_ERROR;
            continue;
        }
        if (stdin_modules++)
            return cmd_usage_error(CMD, "'-' (modules from standard input) given twice");
        if (a->wfile && !strcmp(a->wfile, "-"))
            return cmd_usage_error(CMD, "standard input cannot hold both the module list and "
                                        "the weights");
        size_t len;
        char *text = read_stdin(&len);
        if (!text) {
            cmd_error(CMD, "cannot read the module list from standard input");
            return LH_EXIT_ERROR;
        }
        int rc = 0;
        for (char *line = text; line && !rc;) {
            char *nl = memchr(line, '\n', len - (size_t)(line - text));
            size_t l = nl ? (size_t)(nl - line) : strlen(line);
            if (l && line[l - 1] == '\r')
                l--;
            if (l && line[0] != '#' && sl_push(paths, line, l)) {
                cmd_error(CMD, "out of memory");
                rc = LH_EXIT_ERROR;
            }
            line = nl ? nl + 1 : NULL;
        }
        free(text);
        if (rc)
            return rc;
    }
    if (paths->n == 0)
        return cmd_usage_error(CMD, "no modules given (standard input was empty)");
    return 0;
}

/* w [n]: 1 each, or from -w LIST, or from --weights FILE ('-': stdin). */
static int read_weights(const compose_args *a, const strlist *paths, double *w)
{
    size_t n = paths->n;
    for (size_t i = 0; i < n; i++)
        w[i] = 1.0; /* no weights given: every module counts once */
    if (a->wlist)
        return parse_weight_list(a->wlist, n, w);
    if (!a->wfile)
        return 0;
    size_t len = 0;
    char *text = NULL;
    const char *origin = a->wfile;
    lh_error err = {0};
    if (!strcmp(a->wfile, "-")) {
        origin = "<stdin>";
        if (!(text = read_stdin(&len))) {
            cmd_error(CMD, "cannot read the weights from standard input");
            return LH_EXIT_ERROR;
        }
    } else if (lh_read_file(a->wfile, &text, &len, &err) != LH_OK) {
        return cmd_fail(CMD, &err);
    }
    int rc = parse_weights_text(origin, text, len, paths->v, n, w);
    free(text);
    return rc;
}

/* The line (or JSON object) that says what was written, into sb. */
static void describe_result(const compose_args *a, const strlist *paths, const double *w,
                            const lh_adapter *out, double secs, lh_sb *sb)
{
    size_t n = paths->n;
    const char *mname = lh_merge_method_name(a->mo.method);
    uint64_t params = lh_adapter_n_params(out);
    lh_dtype dt = a->so.dtype;
    const char *dtname = dt == LH_F16 ? "f16" : dt == LH_BF16 ? "bf16" : "f32";
    if (!a->as_json) {
        lh_sb_appendf(sb, "composed %zu module%s with %s into %s: rank %d, %zu target%s, "
                          "%llu parameters (%s), %.2f s\n",
                      n, n == 1 ? "" : "s", mname, a->outdir, out->r, out->n_targets,
                      out->n_targets == 1 ? "" : "s", (unsigned long long)params, dtname, secs);
        return;
    }
    lh_sb_append(sb, "{\"method\":");
    lh_sb_append_json_string(sb, mname);
    lh_sb_append(sb, ",\"output\":");
    lh_sb_append_json_string(sb, a->outdir);
    lh_sb_append(sb, ",\"modules\":[");
    for (size_t i = 0; i < n; i++) {
        lh_sb_append(sb, i ? ",{\"path\":" : "{\"path\":");
        lh_sb_append_json_string(sb, paths->v[i]);
        lh_sb_append(sb, ",\"weight\":");
        lh_sb_append_json_number(sb, w[i]);
        lh_sb_append(sb, "}");
    }
    lh_sb_appendf(sb, "],\"rank\":%d,\"targets\":%zu,\"parameters\":%llu,\"dtype\":\"%s\","
                      "\"seconds\":",
                  out->r, out->n_targets, (unsigned long long)params, dtname);
    lh_sb_append_json_number(sb, secs);
    lh_sb_append(sb, "}\n");
}

/* Load, compose, save as PEFT or GGUF, and say so. */
static int compose_adapters(compose_args *a, const strlist *paths, const double *w, lh_sb *sb)
{
    size_t n = paths->n;
    lh_error err = {0};
    lh_adapter **mods = calloc(n, sizeof *mods), *out = NULL; /* mods: [n] */
    int rc = 0;
    if (!mods) {
        cmd_error(CMD, "out of memory");
        return LH_EXIT_ERROR;
    }
    double t0 = lh_monotonic_seconds();
    lh_gguf_arch arch;
    if (a->base && lh_gguf_arch_from_base(a->base, &arch, &err) != LH_OK)
        rc = cmd_fail(CMD, &err);
    for (size_t i = 0; i < n && !rc; i++)
        if (lh_gguf_load_module(paths->v[i], a->base ? &arch : NULL, &mods[i], &err) != LH_OK)
            rc = cmd_fail(CMD, &err);
    if (!rc && lh_compose((const lh_adapter *const *)mods, n, w, &a->mo, &out, &err) != LH_OK)
        rc = cmd_fail(CMD, &err);
    a->so.force = a->force;
    if (!rc && save_output(out, a->outdir, &a->so, a->base ? &arch : NULL, &err) != LH_OK)
        rc = cmd_fail(CMD, &err);
    if (!rc) {
        describe_result(a, paths, w, out, lh_monotonic_seconds() - t0, sb);
        rc = print_summary(sb);
    }
    for (size_t i = 0; i < n; i++)
        lh_adapter_free(mods[i]);
    free(mods);
    lh_adapter_free(out);
    return rc;
}

int cmd_compose(int argc, char **argv)
{
    compose_args a;
    int stop;
    int rc = parse_args(argc, argv, &a, &stop);
    if (stop)
        return rc;
    strlist paths = {0};
    double *w = NULL; /* [paths.n] */
    lh_path_lock lock;
    lh_path_lock_init(&lock);
    lh_sb sb;
    lh_sb_init(&sb);
    if ((rc = read_module_paths(argc, argv, &a, &paths)))
        goto done;
    if (!(w = malloc(paths.n * sizeof *w))) {
        cmd_error(CMD, "out of memory");
        rc = LH_EXIT_ERROR;
        goto done;
    }
    if ((rc = read_weights(&a, &paths, w)) || (rc = claim_output(a.outdir, &lock)))
        goto done;
    if (lh_path_exists(a.outdir) && !a.force) {
        cmd_error(CMD, "'%s' already exists (use --force to replace it)", a.outdir);
        rc = LH_EXIT_ERROR;
        goto done;
    }
    if (lh_str_ends_with(a.outdir, ".safetensors")) {
        if (a.mo.method != LH_MERGE_LORAHUB || a.so.dtype != LH_F32)
            rc = cmd_usage_error(CMD, "an MoS output (%s) is composed with -m lorahub in F32",
                                 a.outdir);
        else
            rc = compose_mos_file(paths.v, paths.n, w, a.outdir, a.force, a.as_json, &sb);
        goto done;
    }
    rc = compose_adapters(&a, &paths, w, &sb);
done:
    lh_path_lock_release(&lock);
    lh_sb_release(&sb);
    free(w);
    sl_release(&paths);
    return rc;
}

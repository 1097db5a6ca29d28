/* cmd/eval.c - `lorahub eval`: loss and exact-match accuracy of a base
 * model, optionally with an adapter, on few-shot examples, through any
 * backend (native with --base, exec with --backend-cmd, as in adapt).
 *
 * --icl K builds the in-context-learning baseline: the first K examples of
 * --icl-examples FILE (or of --examples FILE itself, which are then not
 * evaluated, so no example sees its own answer) are prepended to every
 * input as demonstrations: "in1out1\nin2out2\n...\n<input>". */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "adapt/backend/backend.h"
#include "adapt/evaluate.h"
#include "lib/adapter.h"
#include "lib/examples.h"
#include "cmd.h"
#include "lib/fsutil.h"

static volatile sig_atomic_t interrupted;

static void on_sigint(int sig)
{
    (void)sig;
    interrupted = 1;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: lorahub eval --base DIR [--adapter DIR] --examples FILE\n"
               "                    [--metric loss|exact-match|both] [--icl K] [--icl-examples FILE]\n"
               "                    [--max-new-tokens N] [--threads N] [--no-bos] [--no-eos]\n"
               "                    [--json] [-v]\n"
               "       lorahub eval --backend-cmd CMD [--backend-timeout SEC] [--adapter DIR]\n"
               "                    --examples FILE [options as above]\n"
               "       lorahub eval --base-gguf FILE [--gpu-layers N] [--no-repack] --examples FILE\n"
               "                    [options as above] (the llamacpp backend)\n"
               "       lorahub eval --server URL [--server URL ...] [--backend-timeout SEC]\n"
               "                    --examples FILE [options as above] (the server backend)\n");
}

/* The command line. Backend settings go to the backend by job-file key. */
typedef struct eval_args {
    const char *backend;        /* --backend, else native with --base, exec with --backend-cmd */
    /* {key, value, ..., NULL}: the backend settings given, each key once
     * (the last value wins); nine keys at most. */
    const char *params[20];
    size_t n_params;            /* used entries of params (pairs * 2) */
    char threads_text[32];
    char servers[4096];         /* --server URLs, comma-separated (repeatable) */
    const char *adapter_path, *examples_path, *icl_path;
    long icl, max_new;
    int want_loss, want_em, json, verbose;
} eval_args;

static void add_param(eval_args *a, const char *key, const char *value)
{
    for (size_t i = 0; i < a->n_params; i += 2)
        if (!strcmp(a->params[i], key)) {
            a->params[i + 1] = value;
            return;
        }
    a->params[a->n_params++] = key;
    a->params[a->n_params++] = value;
    a->params[a->n_params] = NULL;
}

static int has_param(const eval_args *a, const char *key)
{
    for (size_t i = 0; i < a->n_params; i += 2)
        if (!strcmp(a->params[i], key))
            return 1;
    return 0;
}

enum { O_BACKEND = 256, O_BASE, O_BACKEND_CMD, O_BACKEND_TIMEOUT, O_ADAPTER, O_EXAMPLES, O_METRIC,
       O_ICL, O_ICL_EX, O_MAXNEW, O_THREADS, O_NOBOS, O_NOEOS, O_JSON, O_BASE_GGUF,
       O_GPU_LAYERS, O_SERVER, O_NO_REPACK };

/* One option into a; returns -1 when taken, else the exit code. */
static int take_option(int o, char **argv, eval_args *a)
{
    long threads;
    double timeout;
    switch (o) {
    case O_BACKEND: a->backend = optarg; return -1;
    case O_BASE: add_param(a, "base", optarg); return -1;
    case O_BACKEND_CMD: add_param(a, "backend-cmd", optarg); return -1;
    case O_BASE_GGUF: add_param(a, "base-gguf", optarg); return -1;
    case O_GPU_LAYERS: add_param(a, "gpu-layers", optarg); return -1;
    case O_SERVER: {
        size_t len = strlen(a->servers);
        if (len + strlen(optarg) + 2 > sizeof a->servers)
            return cmd_usage_error("eval", "too many --server URLs");
        snprintf(a->servers + len, sizeof a->servers - len, "%s%s", len ? "," : "", optarg);
        add_param(a, "server", a->servers);
        return -1;
    }
    case O_NO_REPACK: add_param(a, "no-repack", "true"); return -1;
    case O_BACKEND_TIMEOUT:
        if (cmd_parse_double(optarg, &timeout) || !(timeout > 0))
            return cmd_usage_error("eval", "--backend-timeout needs seconds > 0, not '%s'", optarg);
        add_param(a, "backend-timeout", optarg);
        return -1;
    case O_ADAPTER: a->adapter_path = optarg; return -1;
    case O_EXAMPLES: a->examples_path = optarg; return -1;
    case O_ICL_EX: a->icl_path = optarg; return -1;
    case O_METRIC:
        if (strcmp(optarg, "loss") && strcmp(optarg, "exact-match") && strcmp(optarg, "both"))
            return cmd_usage_error("eval", "--metric must be loss, exact-match or both, not '%s'",
                                   optarg);
        a->want_loss = strcmp(optarg, "exact-match") != 0;
        a->want_em = strcmp(optarg, "loss") != 0;
        return -1;
    case O_ICL:
        if (cmd_parse_int(optarg, 0, 100000, &a->icl))
            return cmd_usage_error("eval", "--icl needs a count >= 0, not '%s'", optarg);
        return -1;
    case O_MAXNEW:
        if (cmd_parse_int(optarg, 1, 1000000, &a->max_new))
            return cmd_usage_error("eval", "--max-new-tokens needs a count >= 1, not '%s'", optarg);
        return -1;
    case O_THREADS:
        if (cmd_parse_int(optarg, 1, 4096, &threads))
            return cmd_usage_error("eval", "--threads needs a count >= 1, not '%s'", optarg);
        snprintf(a->threads_text, sizeof a->threads_text, "%ld", threads);
        add_param(a, "threads", a->threads_text);
        return -1;
    case O_NOBOS: add_param(a, "bos", "false"); return -1;
    case O_NOEOS: add_param(a, "eos", "false"); return -1;
    case O_JSON: a->json = 1; return -1;
    case 'v': a->verbose = 1; return -1;
    case 'h': usage(stdout); return LH_EXIT_OK;
    case ':': return cmd_usage_error("eval", "option '%s' needs a value", argv[optind - 1]);
    default: return cmd_usage_error("eval", "unknown option '%s'", argv[optind - 1]);
    }
}

/* Returns -1 when the command line is complete and consistent, else the exit code. */
static int parse_args(int argc, char **argv, eval_args *a)
{
    static const struct option opts[] = {
        {"backend", required_argument, 0, O_BACKEND},
        {"base", required_argument, 0, O_BASE},
        {"backend-cmd", required_argument, 0, O_BACKEND_CMD},
        {"base-gguf", required_argument, 0, O_BASE_GGUF},
        {"gpu-layers", required_argument, 0, O_GPU_LAYERS},
        {"server", required_argument, 0, O_SERVER},
        {"no-repack", no_argument, 0, O_NO_REPACK},
        {"backend-timeout", required_argument, 0, O_BACKEND_TIMEOUT},
        {"adapter", required_argument, 0, O_ADAPTER},
        {"examples", required_argument, 0, O_EXAMPLES},
        {"metric", required_argument, 0, O_METRIC},
        {"icl", required_argument, 0, O_ICL},
        {"icl-examples", required_argument, 0, O_ICL_EX},
        {"max-new-tokens", required_argument, 0, O_MAXNEW},
        {"threads", required_argument, 0, O_THREADS},
        {"no-bos", no_argument, 0, O_NOBOS},
        {"no-eos", no_argument, 0, O_NOEOS},
        {"json", no_argument, 0, O_JSON},
        {"verbose", no_argument, 0, 'v'},
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0},
    };
    memset(a, 0, sizeof *a);
    a->want_loss = 1;
    a->max_new = 32;
    optind = 1;
    opterr = 0;
    int o, rc;
    /* ':' first: a missing value is reported as such, not as an unknown option. */
    while ((o = getopt_long(argc, argv, "+:vh", opts, NULL)) != -1)
        if ((rc = take_option(o, argv, a)) != -1)
            return rc;
    if (optind < argc)
        return cmd_usage_error("eval", "unexpected argument '%s'", argv[optind]);
    int has_base = has_param(a, "base"), has_cmd = has_param(a, "backend-cmd");
    int has_gguf = has_param(a, "base-gguf"), has_server = has_param(a, "server");
    if (!a->backend && !has_base && !has_cmd && !has_gguf && !has_server)
        return cmd_usage_error("eval", "--base DIR is required");
    if (!a->backend)
        a->backend = has_base || (!has_cmd && !has_gguf && !has_server) ? "native"
                     : has_cmd                                          ? "exec"
                     : has_gguf                                         ? "llamacpp"
                                                                        : "server";
    const lh_backend_i *bi = lh_backend_find(a->backend);
    if (!bi)
        return cmd_usage_error("eval", "no backend named '%s' is built in", a->backend);
    for (const lh_backend_key *k = bi->keys; k && k->key; k++)
        if (k->required && !has_param(a, k->key))
            return cmd_usage_error("eval", "the %s backend needs --%s %s", a->backend, k->key,
                                   k->what);
    if (!a->examples_path)
        return cmd_usage_error("eval", "--examples FILE is required");
    if (a->icl_path && a->icl == 0)
        return cmd_usage_error("eval", "--icl-examples needs --icl K");
    return -1;
}

/* Examples with the ICL demonstrations prepended; skip = examples of ex
 * left out (the demonstrations themselves). */
static lh_status with_icl(const lh_examples *ex, const lh_examples *demo, long k, size_t skip,
                          lh_examples **out, lh_error *err)
{
    size_t n = ex->n - skip;
    size_t plen = 0;
    for (long i = 0; i < k; i++)
        plen += strlen(demo->input[i]) + strlen(demo->output[i]) + 1;
    char *prefix = malloc(plen + 1);
    const char **in = calloc(n ? n : 1, sizeof *in);
    const char **outs = calloc(n ? n : 1, sizeof *outs);
    lh_status s = LH_OK;
    if (!prefix || !in || !outs) {
        s = lh_error_set(err, LH_ERR_NOMEM, "out of memory");
        goto done;
    }
    size_t off = 0;
    for (long i = 0; i < k; i++)
        off += (size_t)sprintf(prefix + off, "%s%s\n", demo->input[i], demo->output[i]);
    prefix[off] = '\0';
    for (size_t i = 0; i < n && !s; i++) {
        const char *x = ex->input[skip + i];
        char *p = malloc(off + strlen(x) + 1);
        if (!p) {
            s = lh_error_set(err, LH_ERR_NOMEM, "out of memory");
            break;
        }
        memcpy(p, prefix, off);
        strcpy(p + off, x);
        in[i] = p;
        outs[i] = ex->output[skip + i];
    }
    if (!s)
        s = lh_examples_from_arrays(in, outs, n, out, err);
    for (size_t i = 0; i < n; i++)
        free((char *)in[i]);
done:
    free(prefix);
    free(in);
    free(outs);
    return s;
}

/* The examples to evaluate: *ex as loaded, or *run with the ICL
 * demonstrations (from *demo or *ex) prepended. Returns -1 when ready, else
 * the exit code (the message printed). */
static int prepare_examples(const eval_args *a, lh_examples **ex, lh_examples **demo,
                            lh_examples **run, lh_error *err)
{
    if (lh_examples_load(a->examples_path, ex, err))
        return cmd_fail("eval", err);
    if (a->icl == 0)
        return -1;
    size_t skip = 0;
    if (a->icl_path) {
        if (lh_examples_load(a->icl_path, demo, err))
            return cmd_fail("eval", err);
        if ((size_t)a->icl > (*demo)->n)
            return cmd_usage_error("eval", "--icl %ld: '%s' has only %zu examples", a->icl,
                                   a->icl_path, (*demo)->n);
    } else {
        if ((size_t)a->icl >= (*ex)->n)
            return cmd_usage_error("eval",
                                   "--icl %ld: '%s' has %zu examples; the first K are the "
                                   "demonstrations, at least one must remain", a->icl,
                                   a->examples_path, (*ex)->n);
        skip = (size_t)a->icl;
    }
    if (with_icl(*ex, *demo ? *demo : *ex, a->icl, skip, run, err))
        return cmd_fail("eval", err);
    return -1;
}

static void print_result(const eval_args *a, const lh_eval_result *er)
{
    double acc = er->n ? (double)er->correct / (double)er->n : 0.0;
    if (a->json) {
        printf("{\"loss\":");
        if (a->want_loss)
            printf("%.9g", er->loss);
        else
            printf("null");
        printf(",\"tokens\":");
        if (er->have_tokens)
            printf("%zu", er->tokens);
        else
            printf("null");
        printf(",\"accuracy\":");
        if (a->want_em)
            printf("%.9g", acc);
        else
            printf("null");
        printf(",\"n\":%zu}\n", er->n);
        return;
    }
    if (a->want_loss)
        printf("loss      %.6f\n", er->loss);
    if (er->have_tokens)
        printf("tokens    %zu\n", er->tokens);
    if (a->want_em)
        printf("accuracy  %.4f (%zu/%zu exact)\n", acc, er->correct, er->n);
    printf("examples  %zu\n", er->n);
}

/* Open the backend, evaluate, print; the inputs are loaded. */
static int evaluate_and_print(const eval_args *a, const lh_adapter *ad, const lh_examples *use,
                              lh_error *err)
{
    double t0 = lh_monotonic_seconds();
    lh_backend_opts bo;
    lh_backend_opts_default(&bo);
    bo.params = a->params;
    bo.interrupt = &interrupted;
    bo.warn = cmd_warning;
    lh_backend *be = NULL;
    if (lh_backend_open(a->backend, &bo, &be, err))
        return cmd_fail("eval", err);
    double t_load = lh_monotonic_seconds();
    if (a->verbose) {
        lh_backend_info info;
        lh_backend_describe(be, &info);
        fprintf(stderr, "lorahub eval: %s, loaded in %.2f s\n", info.description, t_load - t0);
    }
    lh_eval_opts eo = {a->want_loss, a->want_em, (int)a->max_new};
    lh_eval_result er;
    int rc = LH_EXIT_OK;
    if (lh_evaluate(be, ad, use, &eo, &er, err)) {
        rc = cmd_fail("eval", err);
        lh_backend_close(be);
        return rc;
    }
    if (a->verbose && a->want_em)
        for (size_t i = 0; i < use->n; i++)
            fprintf(stderr, "lorahub eval: example %zu: %s: got \"%s\"\n", i + 1,
                    er.match[i] ? "match" : "miss", er.outputs[i]);
    print_result(a, &er);
    if (a->verbose) {
        struct rusage ru;
        getrusage(RUSAGE_SELF, &ru);
        fprintf(stderr, "lorahub eval: evaluated in %.2f s; peak memory (maxrss) %.1f MiB\n",
                lh_monotonic_seconds() - t_load, (double)ru.ru_maxrss / 1024.0);
    }
    lh_eval_result_release(&er);
    lh_backend_close(be);
    return rc;
}

int cmd_eval(int argc, char **argv)
{
    eval_args a;
    int rc = parse_args(argc, argv, &a);
    if (rc != -1)
        return rc;
    struct sigaction sa, old_sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sigaction(SIGINT, &sa, &old_sa);
    lh_error err = {0};
    lh_examples *ex = NULL, *demo = NULL, *run = NULL;
    lh_adapter *ad = NULL;
    rc = prepare_examples(&a, &ex, &demo, &run, &err);
    if (rc == -1 && a.adapter_path && lh_adapter_load(a.adapter_path, &ad, &err))
        rc = cmd_fail("eval", &err);
    if (rc == -1)
        rc = evaluate_and_print(&a, ad, run ? run : ex, &err);
    lh_adapter_free(ad);
    lh_examples_free(run);
    lh_examples_free(demo);
    lh_examples_free(ex);
    sigaction(SIGINT, &old_sa, NULL);
    return rc;
}

/* cmd/eval.c - `lorahub eval`: loss and exact-match accuracy of a base
 * model, optionally with an adapter, on few-shot examples (native backend).
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
               "                    [--json] [-v]\n");
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

int cmd_eval(int argc, char **argv)
{
    const char *base = NULL, *adapter_path = NULL, *examples_path = NULL, *icl_path = NULL;
    const char *metric = "loss";
    long icl = 0, max_new = 32, threads = 0;
    int json = 0, verbose = 0, add_bos = 1, add_eos = 1;
    enum { O_BASE = 256, O_ADAPTER, O_EXAMPLES, O_METRIC, O_ICL, O_ICL_EX, O_MAXNEW, O_THREADS,
           O_NOBOS, O_NOEOS, O_JSON };
    static const struct option opts[] = {
        {"base", required_argument, 0, O_BASE},
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
    optind = 1;
    opterr = 0;
    int o;
    while ((o = getopt_long(argc, argv, "+vh", opts, NULL)) != -1) {
        switch (o) {
        case O_BASE: base = optarg; break;
        case O_ADAPTER: adapter_path = optarg; break;
        case O_EXAMPLES: examples_path = optarg; break;
        case O_ICL_EX: icl_path = optarg; break;
        case O_METRIC:
            if (strcmp(optarg, "loss") && strcmp(optarg, "exact-match") && strcmp(optarg, "both"))
                return cmd_usage_error("eval", "--metric must be loss, exact-match or both, not '%s'",
                                       optarg);
            metric = optarg;
            break;
        case O_ICL:
            if (cmd_parse_int(optarg, 0, 100000, &icl))
                return cmd_usage_error("eval", "--icl needs a count >= 0, not '%s'", optarg);
            break;
        case O_MAXNEW:
            if (cmd_parse_int(optarg, 1, 1000000, &max_new))
                return cmd_usage_error("eval", "--max-new-tokens needs a count >= 1, not '%s'",
                                       optarg);
            break;
        case O_THREADS:
            if (cmd_parse_int(optarg, 1, 4096, &threads))
                return cmd_usage_error("eval", "--threads needs a count >= 1, not '%s'", optarg);
            break;
        case O_NOBOS: add_bos = 0; break;
        case O_NOEOS: add_eos = 0; break;
        case O_JSON: json = 1; break;
        case 'v': verbose = 1; break;
        case 'h': usage(stdout); return LH_EXIT_OK;
        case ':':
            return cmd_usage_error("eval", "option '%s' needs a value", argv[optind - 1]);
        default:
            return cmd_usage_error("eval", "unknown option '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc)
        return cmd_usage_error("eval", "unexpected argument '%s'", argv[optind]);
    if (!base)
        return cmd_usage_error("eval", "--base DIR is required");
    if (!examples_path)
        return cmd_usage_error("eval", "--examples FILE is required");
    if (icl_path && icl == 0)
        return cmd_usage_error("eval", "--icl-examples needs --icl K");
    int want_loss = strcmp(metric, "exact-match") != 0;
    int want_em = strcmp(metric, "loss") != 0;

    lh_error err = {0};
    lh_examples *ex = NULL, *demo = NULL, *run = NULL;
    lh_adapter *ad = NULL;
    lh_backend *be = NULL;
    lh_eval_result er = {0};
    const lh_examples *use = NULL;
    int rc = LH_EXIT_OK;
    double loss = 0;
    size_t tokens = 0, correct = 0;
    double t0 = lh_monotonic_seconds();
    struct sigaction sa, old_sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sigaction(SIGINT, &sa, &old_sa);

    if (lh_examples_load(examples_path, &ex, &err))
        goto fail;
    if (icl > 0) {
        size_t skip = 0;
        if (icl_path) {
            if (lh_examples_load(icl_path, &demo, &err))
                goto fail;
            if ((size_t)icl > demo->n) {
                rc = cmd_usage_error("eval", "--icl %ld: '%s' has only %zu examples", icl,
                                     icl_path, demo->n);
                goto out;
            }
        } else {
            if ((size_t)icl >= ex->n) {
                rc = cmd_usage_error("eval",
                                     "--icl %ld: '%s' has %zu examples; the first K are the "
                                     "demonstrations, at least one must remain", icl,
                                     examples_path, ex->n);
                goto out;
            }
            skip = (size_t)icl;
        }
        if (with_icl(ex, demo ? demo : ex, icl, skip, &run, &err))
            goto fail;
    }
    use = run ? run : ex;
    if (adapter_path && lh_adapter_load(adapter_path, &ad, &err))
        goto fail;
    char threads_text[32];
    snprintf(threads_text, sizeof threads_text, "%ld", threads);
    const char *params[] = {"base", base, "threads", threads_text,
                            "bos", add_bos ? "true" : "false", "eos", add_eos ? "true" : "false",
                            NULL};
    lh_backend_opts bo;
    lh_backend_opts_default(&bo);
    bo.params = params;
    bo.interrupt = &interrupted;
    if (lh_backend_open("native", &bo, &be, &err))
        goto fail;
    double t_load = lh_monotonic_seconds();
    if (verbose) {
        lh_backend_info info;
        lh_backend_describe(be, &info);
        fprintf(stderr, "lorahub eval: %s, loaded in %.2f s\n", info.description, t_load - t0);
    }
    lh_eval_opts eo = {want_loss, want_em, (int)max_new};
    if (lh_evaluate(be, ad, use, &eo, &er, &err))
        goto fail;
    loss = er.loss;
    tokens = er.tokens;
    correct = er.correct;
    if (verbose && want_em)
        for (size_t i = 0; i < use->n; i++)
            fprintf(stderr, "lorahub eval: example %zu: %s: got \"%s\"\n", i + 1,
                    er.match[i] ? "match" : "miss", er.outputs[i]);
    double acc = use->n ? (double)correct / (double)use->n : 0.0;
    if (json) {
        printf("{\"loss\":");
        if (want_loss)
            printf("%.9g", loss);
        else
            printf("null");
        printf(",\"tokens\":");
        if (want_loss)
            printf("%zu", tokens);
        else
            printf("null");
        printf(",\"accuracy\":");
        if (want_em)
            printf("%.9g", acc);
        else
            printf("null");
        printf(",\"n\":%zu}\n", use->n);
    } else {
        if (want_loss)
            printf("loss      %.6f\ntokens    %zu\n", loss, tokens);
        if (want_em)
            printf("accuracy  %.4f (%zu/%zu exact)\n", acc, correct, use->n);
        printf("examples  %zu\n", use->n);
    }
    if (verbose) {
        struct rusage ru;
        getrusage(RUSAGE_SELF, &ru);
        fprintf(stderr, "lorahub eval: evaluated in %.2f s; peak memory (maxrss) %.1f MiB\n",
                lh_monotonic_seconds() - t_load, (double)ru.ru_maxrss / 1024.0);
    }
    goto out;
fail:
    rc = cmd_fail("eval", &err);
out:
    lh_eval_result_release(&er);
    lh_backend_close(be);
    lh_adapter_free(ad);
    lh_examples_free(run);
    lh_examples_free(demo);
    lh_examples_free(ex);
    sigaction(SIGINT, &old_sa, NULL);
    return rc;
}

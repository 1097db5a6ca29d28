/* bench/llamacpp.c - scoring throughput of the native backend, of the
 * llamacpp backend, and of llama.cpp's own llama-perplexity, on one random
 * LLaMA of bench/forward.c's shape (768 x 12, GQA 12/4, ffn 2048, vocab
 * 32000; 124.7M parameters with an untied head) and the same token counts.
 *
 * The limit is llama-perplexity itself, measured in the same run: the
 * llamacpp backend's goal is at least 0.9 of its tokens/s (what it loses
 * is our overhead), the native backend's at least 1.2x llama.cpp's F32.
 *
 * Work: 8 sequences of 512 tokens (4096), the second half of each scored;
 * llama-perplexity -c 512 on a text of 4096 letters does the same per
 * chunk. One thread everywhere, timed in CPU time (user + system) so that
 * the other jobs of a shared machine do not inflate it: our backends around
 * the score call alone, in a forked child each (whose peak RSS is then that
 * backend's own); llama-perplexity as (8 chunks) - (1 chunk), which leaves
 * its loading out. Best of --repeat runs (default 3). Both without
 * llama.cpp's weight repacking (--no-repack, -nr): the pinned build uses
 * AMX for Q8_0, which this project's machine reports but traps (SIGILL).
 *
 * Models (F32, F16 and Q8_0 GGUF, and the same weights in Hugging Face
 * layout for native) are written once by tools/bench_gguf.py into
 * $O/bench-llamacpp (Python, numpy and the llama.cpp source's gguf-py).
 * llama-perplexity is looked up in $LLAMA_BINDIR (make bench sets it).
 * Usage: llamacpp [--repeat N] [--dir DIR] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include "adapt/backend/backend.h"
#include "bench_util.h"
#include "lib/examples.h"
#include "lib/fsutil.h"

int lh_backend_llamacpp_built(void);

static const char *dir = "build/bench-llamacpp";
static int repeat = 3;

static double cpu_of(const struct rusage *ru)
{
    return (double)ru->ru_utime.tv_sec + 1e-6 * (double)ru->ru_utime.tv_usec +
           (double)ru->ru_stime.tv_sec + 1e-6 * (double)ru->ru_stime.tv_usec;
}

static double cpu_self(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return cpu_of(&ru);
}

typedef struct figure {
    double seconds;   /* best CPU time of one scoring of all examples */
    double rss_mib;   /* the child's peak RSS */
    double loss;
} figure;

/* In this (child) process: open the backend, score the base model once
 * (first touch of the weights), then repeat times; the best time. */
static void measure_in_child(const char *backend, const char *const *params, int fd)
{
    lh_error err;
    lh_examples *ex = NULL;
    char path[1024];
    snprintf(path, sizeof path, "%s/examples.jsonl", dir);
    if (lh_examples_load(path, &ex, &err))
        bench_die("llamacpp", path, &err);
    lh_backend_opts o;
    lh_backend_opts_default(&o);
    o.params = params;
    lh_backend *b = NULL;
    if (lh_backend_open(backend, &o, &b, &err))
        bench_die("llamacpp", backend, &err);
    const lh_adapter *base = NULL;
    figure f = {1e30, 0, 0};
    for (int r = 0; r <= repeat; r++) {
        double t0 = cpu_self();
        if (lh_backend_score(b, &base, 1, ex, &f.loss, &err))
            bench_die("llamacpp", "score", &err);
        double t = cpu_self() - t0;
        if (r > 0 && t < f.seconds)
            f.seconds = t;
    }
    lh_backend_close(b);
    lh_examples_free(ex);
    if (write(fd, &f, sizeof f) != (ssize_t)sizeof f)
        _exit(1);
    _exit(0);
}

static figure measure(const char *backend, const char *const *params)
{
    int p[2];
    figure f = {0, 0, 0};
    if (pipe(p) < 0) {
        perror("pipe");
        exit(1);
    }
    fflush(stdout); /* a child must not print our buffered lines again */
    pid_t pid = fork();
    if (pid == 0) {
        close(p[0]);
        measure_in_child(backend, params, p[1]);
    }
    close(p[1]);
    ssize_t got = read(p[0], &f, sizeof f);
    close(p[0]);
    int status = 0;
    struct rusage ru;
    if (pid < 0 || wait4(pid, &status, 0, &ru) < 0 || got != (ssize_t)sizeof f ||
        !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "llamacpp: measuring %s failed\n", backend);
        exit(1);
    }
    f.rss_mib = (double)ru.ru_maxrss / 1024.0;
    return f;
}

/* CPU seconds of one llama-perplexity run over the first `chunks` chunks. */
static double perplexity_cpu(const char *ppl, const char *model, int chunks)
{
    char text[1024], nchunks[16];
    snprintf(text, sizeof text, "%s/text.txt", dir);
    snprintf(nchunks, sizeof nchunks, "%d", chunks);
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        if (!freopen("/dev/null", "w", stdout) || !freopen("/dev/null", "w", stderr))
            _exit(127);
        execl(ppl, ppl, "-m", model, "-f", text, "-c", "512", "-b", "512", "--chunks", nchunks,
              "-fa", "off", "-ctk", "f32", "-ctv", "f32", "-t", "1", "-nr", (char *)NULL);
        _exit(127);
    }
    int status = 0;
    struct rusage ru;
    if (pid < 0 || wait4(pid, &status, 0, &ru) < 0 || !WIFEXITED(status) ||
        WEXITSTATUS(status) != 0) {
        fprintf(stderr, "llamacpp: %s -m %s failed (status %d)\n", ppl, model, status);
        exit(1);
    }
    return cpu_of(&ru);
}

/* Seconds llama-perplexity spends on 7 chunks of 512 tokens, loading left out. */
static double perplexity_seconds(const char *ppl, const char *model)
{
    double best = 1e30;
    for (int r = 0; r < repeat; r++) {
        double d = perplexity_cpu(ppl, model, 8) - perplexity_cpu(ppl, model, 1);
        if (d < best)
            best = d;
    }
    return best;
}

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--repeat") && i + 1 < argc)
            repeat = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--dir") && i + 1 < argc)
            dir = argv[++i];
        else {
            fprintf(stderr, "usage: llamacpp [--repeat N] [--dir DIR]\n");
            return 2;
        }
    }
    const char *bindir = getenv("LLAMA_BINDIR");
    char ppl[1024];
    snprintf(ppl, sizeof ppl, "%s/llama-perplexity", bindir ? bindir : "");
    if (!lh_backend_llamacpp_built() || !bindir || access(ppl, X_OK) != 0) {
        printf("llamacpp: skipped (built without llama.cpp, or no llama-perplexity in "
               "$LLAMA_BINDIR: sh tools/install-llamacpp.sh, then make LLAMA_PREFIX=build/llamacpp "
               "bench)\n");
        return 0;
    }
    repeat = repeat < 1 ? 1 : repeat;
    bench_ensure_gguf_models("llamacpp", dir);
    const double tokens = 8 * 512, ppl_tokens = 7 * 512;
    char hf[1024];
    snprintf(hf, sizeof hf, "%s/hf", dir);
    const char *nparams[] = {"base", hf, "threads", "1", "eos", "false", NULL};
    setenv("OPENBLAS_NUM_THREADS", "1", 1);
    figure nat = measure("native", nparams);
    printf("%-36s %7.0f tokens/s  %6.0f MiB peak RSS  loss %.6f\n", "native (F32, OpenBLAS)",
           tokens / nat.seconds, nat.rss_mib, nat.loss);
    static const char *const types[] = {"f32", "f16", "q8_0"};
    for (int t = 0; t < 3; t++) {
        char model[1024];
        snprintf(model, sizeof model, "%s/%s.gguf", dir, types[t]);
        const char *lparams[] = {"base-gguf", model, "threads", "1", "eos", "false",
                                 "no-repack", "true", NULL};
        figure lc = measure("llamacpp", lparams);
        double ps = perplexity_seconds(ppl, model);
        char label[64];
        snprintf(label, sizeof label, "llamacpp backend (%s)", types[t]);
        printf("%-36s %7.0f tokens/s  %6.0f MiB peak RSS  loss %.6f\n", label, tokens / lc.seconds,
               lc.rss_mib, lc.loss);
        snprintf(label, sizeof label, "llama-perplexity (%s)", types[t]);
        printf("%-36s %7.0f tokens/s\n", label, ppl_tokens / ps);
        printf("  backend / llama-perplexity: %.2f (goal >= 0.90)\n",
               (tokens / lc.seconds) / (ppl_tokens / ps));
        if (t == 0)
            printf("  native / llama.cpp F32: %.2fx the backend, %.2fx llama-perplexity (goal "
                   ">= 1.2x)\n", (tokens / nat.seconds) / (tokens / lc.seconds),
                   (tokens / nat.seconds) / (ppl_tokens / ps));
    }
    return 0;
}

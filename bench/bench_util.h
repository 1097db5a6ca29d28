/* bench/bench_util.h - helpers every benchmark program repeats.
 *
 * Every benchmark source is linked into its own program, so these are static inline
 * functions in a header rather than a shared object file. */
#ifndef LH_BENCH_UTIL_H
#define LH_BENCH_UTIL_H

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "lib/fsutil.h"
#include "lib/status.h"

/* Seconds on the monotonic clock (wall time: the figures are throughput
 * against limits measured the same way in the same run). */
static inline double bench_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* A benchmark has no way to go on after a library error: report it, exit 1. */
static inline void bench_die(const char *prog, const char *what, const lh_error *err)
{
    fprintf(stderr, "%s: %s: %s\n", prog, what, lh_error_message(err));
    exit(1);
}

/* A fresh directory "$TMPDIR/lh-bench-<tag>-XXXXXX" (or under /tmp) in dir
 * (cap bytes); the caller removes it with lh_rmtree. Exits 1 on failure. */
static inline void bench_tempdir(char *dir, size_t cap, const char *tag)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(dir, cap, "%s/lh-bench-%s-XXXXXX", tmp && *tmp ? tmp : "/tmp", tag);
    if (!mkdtemp(dir)) {
        perror(dir);
        exit(1);
    }
}

/* The random 100M LLaMA of bench/llamacpp.c (hf/, f32.gguf, f16.gguf,
 * q8_0.gguf, text.txt, examples.jsonl) in dir: written once by
 * tools/bench_gguf.py (python3-numpy and the llama.cpp source's gguf-py).
 * Exits 1 when it cannot be written. */
static inline void bench_ensure_gguf_models(const char *prog, const char *dir)
{
    char probe[1024];
    snprintf(probe, sizeof probe, "%s/q8_0.gguf", dir);
    if (lh_path_exists(probe))
        return;
    printf("writing the random model and its GGUF files into %s (once)\n", dir);
    fflush(stdout);
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 tools/bench_gguf.py '%s'", dir);
    if (system(cmd) != 0) {
        fprintf(stderr, "%s: tools/bench_gguf.py failed (it needs python3-numpy and the "
                        "llama.cpp source's gguf-py)\n", prog);
        exit(1);
    }
}

#endif

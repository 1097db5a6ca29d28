/* bench/bench_util.h - helpers every benchmark program repeats.
 *
 * Every benchmark source is linked into its own program, so these are static inline
 * functions in a header rather than a shared object file. */
#ifndef LH_BENCH_UTIL_H
#define LH_BENCH_UTIL_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

/* The clock bench_cpu_now reads. With one thread the process CPU time is the
 * work done, whatever else runs on a shared machine; with more threads only
 * wall time adds up, and bench_time_wall switches to it. */
static inline clockid_t *bench_clock_slot(void)
{
    static clockid_t clock = CLOCK_PROCESS_CPUTIME_ID;
    return &clock;
}

static inline void bench_time_wall(void)
{
    *bench_clock_slot() = CLOCK_MONOTONIC;
}

static inline double bench_cpu_now(void)
{
    struct timespec ts;
    clock_gettime(*bench_clock_slot(), &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Uniform in [-1, 1): a fixed xorshift stream, so every run times the same numbers. */
static inline float bench_frand(void)
{
    static uint64_t state = 0x9e3779b97f4a7c15ULL;
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    return (float)((state >> 40) * (1.0 / (1 << 23))) - 1.0f;
}

/* p: [n] <- scale * uniform [-1, 1) */
static inline void bench_fill(float *p, size_t n, float scale)
{
    for (size_t i = 0; i < n; i++)
        p[i] = scale * bench_frand();
}

/* Interleaved A/B timing (best of reps each): on a shared machine a burst
 * of load then hits both sides alike rather than one. */
static inline void bench_compare(int reps, double (*fa)(void *), void *a, double (*fb)(void *),
                                 void *b, double *ta, double *tb)
{
    *ta = *tb = 1e30;
    for (int i = 0; i < reps; i++) {
        double x = fa(a), y = fb(b);
        if (x < *ta)
            *ta = x;
        if (y < *tb)
            *tb = y;
    }
}

/* The machine may be shared: the load average and the clock put the figures in context. */
static inline void bench_print_load(int threads)
{
    FILE *la = fopen("/proc/loadavg", "r");
    char load[64] = "?";
    if (la) {
        if (!fgets(load, sizeof load, la))
            snprintf(load, sizeof load, "?");
        fclose(la);
        load[strcspn(load, "\n")] = '\0';
    }
    printf("load average at start: %s; timing %s\n", load,
           threads > 1 ? "wall clock" : "process CPU time (one thread)");
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

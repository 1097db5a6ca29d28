/* bench/bench_util.h - helpers every benchmark program repeats.
 *
 * Every benchmark source is linked into its own program, so these are static inline
 * functions in a header rather than a shared object file. */
#ifndef LH_BENCH_UTIL_H
#define LH_BENCH_UTIL_H

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

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

#endif

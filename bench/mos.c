/* bench/mos.c - MoS materialization and shard-space composition against
 * this machine's limits, measured in the same run.
 *
 *   memcpy          - RAM-to-RAM bandwidth over the materialized size (the
 *                     ceiling for a gather that writes A and B)
 *   fresh pages     - calloc + one write pass over that size: what a new
 *                     output costs in page faults alone
 *   materialize     - lh_mos_materialize (allocation + gather), as GB/s of
 *                     A/B written and as a fraction of memcpy
 *   compose (pool)  - lh_compose_mos of N modules with shared routing
 *   compose (dense) - materialize each module, then lh_compose lorahub
 *                     (what a caller does without shard space); the ratio
 *                     is the speedup of staying in pool space
 * Each figure is the best of several repetitions (the machine is shared).
 * Usage: mos [layers] [modules]   (defaults 16 and 8) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/bench_util.h"
#include "compose/compose.h"
#include "compose/mos_compose.h"
#include "lib/mos.h"
#include "tests/tools/mos_routing.h"

#define REPS 3

static uint64_t rng = 88172645463325252ull;
static uint64_t next(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}
static uint64_t next_stream(void *unused)
{
    (void)unused;
    return next();
}

/* LLaMA-like shapes at d = 1024; routing from rseed, pools from the stream. */
static lh_mos *make(int layers, uint64_t rseed)
{
    const int r = 16, l = 4, p = 2;
    lh_mos_type_shape sh[] = {
        {"q_proj", "model.layers.{i}.self_attn.q_proj", 1024, 1024, 0},
        {"v_proj", "model.layers.{i}.self_attn.v_proj", 1024, 256, 0},
        {"o_proj", "model.layers.{i}.self_attn.o_proj", 1024, 1024, 0},
        {"down_proj", "model.layers.{i}.mlp.down_proj", 2816, 1024, 0},
    };
    for (int t = 0; t < 4; t++)
        sh[t].n_shards = 8 * layers * l; /* budget rank 8 */
    lh_mos *m = NULL;
    lh_error err = {0};
    if (lh_mos_create(sh, 4, layers, r, l, p, 32.0, &m, &err) != LH_OK)
        bench_die("mos", "create", &err);
    uint64_t keep = rng;
    rng = rseed;
    if (mos_fill_random_routing(m, next_stream, NULL) != 0) {
        fprintf(stderr, "mos: out of memory\n");
        exit(1);
    }
    rng = keep ^ rseed;
    for (size_t ti = 0; ti < m->n_types; ti++) {
        lh_mos_type *t = &m->types[ti];
        size_t na = (size_t)t->n_shards * (t->d_in / l), nb = (size_t)t->n_shards * (t->d_out / l);
        for (size_t q = 0; q < na; q++)
            t->pool_A[q] = (float)((next() >> 40) / 16777216.0 - 0.5);
        for (size_t q = 0; q < nb; q++)
            t->pool_B[q] = (float)((next() >> 40) / 16777216.0 - 0.5);
    }
    if (lh_mos_validate(m, &err) != LH_OK)
        bench_die("mos", "validate", &err);
    return m;
}

int main(int argc, char **argv)
{
    int layers = argc > 1 ? atoi(argv[1]) : 16, n = argc > 2 ? atoi(argv[2]) : 8;
    if (layers < 1 || n < 1) {
        fprintf(stderr, "usage: mos [layers] [modules]\n");
        return 2;
    }
    lh_mos **mods = calloc((size_t)n, sizeof *mods);
    double *w = calloc((size_t)n, sizeof *w);
    for (int i = 0; i < n; i++) {
        mods[i] = make(layers, 42);
        w[i] = 0.1 * (i + 1);
    }
    lh_error err = {0};
    size_t out_bytes = 0, pool_bytes = 0;
    for (size_t ti = 0; ti < mods[0]->n_types; ti++) {
        const lh_mos_type *t = &mods[0]->types[ti];
        out_bytes += (size_t)layers * mods[0]->r * (t->d_in + t->d_out) * sizeof(float);
        pool_bytes += (size_t)t->n_shards * (t->d_in + t->d_out) / mods[0]->l * sizeof(float);
    }
    /* memcpy over the materialized size */
    char *a = malloc(out_bytes), *b = malloc(out_bytes);
    memset(a, 1, out_bytes);
    memset(b, 2, out_bytes);
    double mc = 1e9;
    for (int r = 0; r < REPS; r++) {
        double t = bench_now();
        memcpy(b, a, out_bytes);
        t = bench_now() - t;
        mc = t < mc ? t : mc;
    }
    free(a);
    free(b);
    /* a fresh zeroed buffer written once: the page-fault cost any new
     * adapter pays, so the fair ceiling for materialize */
    double fresh = 1e9;
    for (int r = 0; r < REPS; r++) {
        double t = bench_now();
        char *c = calloc(1, out_bytes);
        if (!c)
            return 1;
        memset(c, 3, out_bytes);
        t = bench_now() - t;
        fresh = t < fresh ? t : fresh;
        free(c);
    }
    double mat = 1e9;
    for (int r = 0; r < REPS; r++) {
        lh_adapter *ad = NULL;
        double t = bench_now();
        if (lh_mos_materialize(mods[0], &ad, &err) != LH_OK)
            bench_die("mos", "materialize", &err);
        t = bench_now() - t;
        mat = t < mat ? t : mat;
        lh_adapter_free(ad);
    }
    double pool = 1e9;
    for (int r = 0; r < REPS; r++) {
        lh_mos *c = NULL;
        double t = bench_now();
        if (lh_compose_mos((const lh_mos *const *)mods, (size_t)n, w, &c, &err) != LH_OK)
            bench_die("mos", "compose_mos", &err);
        t = bench_now() - t;
        pool = t < pool ? t : pool;
        lh_mos_free(c);
    }
    double dense = 1e9;
    lh_merge_opts o;
    lh_merge_opts_default(&o);
    for (int r = 0; r < REPS; r++) {
        lh_adapter **ad = calloc((size_t)n, sizeof *ad), *c = NULL;
        double t = bench_now();
        for (int i = 0; i < n; i++)
            if (lh_mos_materialize(mods[i], &ad[i], &err) != LH_OK)
                bench_die("mos", "materialize", &err);
        if (lh_compose((const lh_adapter *const *)ad, (size_t)n, w, &o, &c, &err) != LH_OK)
            bench_die("mos", "compose", &err);
        t = bench_now() - t;
        dense = t < dense ? t : dense;
        lh_adapter_free(c);
        for (int i = 0; i < n; i++)
            lh_adapter_free(ad[i]);
        free(ad);
    }
    printf("mos: %d layers x 4 types, r %d, l %d; materialized %.1f MiB, pools %.1f MiB per module\n",
           layers, mods[0]->r, mods[0]->l, out_bytes / 1048576.0, pool_bytes / 1048576.0);
    printf("mos: memcpy %.1f MiB                     %6.2f GB/s\n", out_bytes / 1048576.0,
           out_bytes / mc / 1e9);
    printf("mos: calloc + write once (fresh pages)    %6.2f GB/s\n", out_bytes / fresh / 1e9);
    printf("mos: materialize (alloc + gather)         %6.2f GB/s written = %.2f x memcpy, "
           "%.2f x fresh pages\n", out_bytes / mat / 1e9, mc / mat, fresh / mat);
    printf("mos: compose %d modules in pool space     %7.1f ms (%.2f GB/s of pools read = %.2f x "
           "memcpy)\n", n, pool * 1e3, n * pool_bytes / pool / 1e9,
           (n * pool_bytes / pool) / (out_bytes / mc));
    printf("mos: materialize + compose (lorahub)      %7.1f ms = %.1f x the pool-space time\n",
           dense * 1e3, dense / pool);
    for (int i = 0; i < n; i++)
        lh_mos_free(mods[i]);
    free(mods);
    free(w);
    return 0;
}

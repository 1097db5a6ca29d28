/* bench/search.c - what the ADAPT driver and the exec bridge add to an
 * evaluation, against limits measured in the same run.
 *
 *  (a) Driver overhead: 20 modules (rank 8, q/v of 16 layers at 2048x2048,
 *      4 MB each), lorahub method, 40 evaluations with an in-process backend
 *      that costs nothing. Per evaluation, lh_search_modules (compose into the
 *      preallocated output, trace line, checkpoint rewrite; measured as the
 *      difference of an 80- and a 40-evaluation run, so fixed costs cancel)
 *      against lh_compose_into alone on the same weights: ratio, goal <= 1.10
 *      without a checkpoint. With the checkpoint (rewritten and fsync'd
 *      after every evaluation) the ratio is printed too: that is the price
 *      of --resume.
 *  (b) Exec bridge: scoring one candidate through the exec backend (write
 *      the PEFT directory, one request/reply round trip with a child that
 *      answers at once, remove the directory) against lh_peft_save of the
 *      same adapter alone: ratio, goal <= 1.5.
 * Every figure is the best of several runs (the machine is shared).
 * Usage: search [--quick]   (--quick: 4 layers) */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "adapt/backend/backend.h"
#include "adapt/search.h"
#include "adapt/report.h"
#include "bench/bench_util.h"
#include "compose/compose.h"
#include "lib/fsutil.h"
#include "lib/peft.h"

#define NMOD 20
#define RANK 8
#define DIM 2048
#define BUDGET 40
#define REPS 3

static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;
static float frand(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (float)((rng_state >> 40) * (1.0 / (1 << 23))) - 1.0f;
}

static lh_status free_score(void *ctx, const lh_adapter *const *cands, int n,
                            const lh_examples *ex, double *loss, lh_error *err)
{
    for (int i = 0; i < n; i++)
        loss[i] = 1.0 + 1e-3 * cands[i]->targets[0].A[0]; /* depends on w, costs nothing */
    return LH_OK;
}

static const lh_backend_i free_iface = {.name = "free", .score = free_score};

int main(int argc, char **argv)
{
    int layers = argc > 1 && !strcmp(argv[1], "--quick") ? 4 : 16;
    lh_error err;
    char names[2 * 16][64];
    lh_target_shape sh[2 * 16];
    for (int l = 0; l < layers; l++)
        for (int t = 0; t < 2; t++) {
            snprintf(names[2 * l + t], sizeof names[0], "model.layers.%d.self_attn.%s_proj", l,
                     t ? "v" : "q");
            sh[2 * l + t] = (lh_target_shape){names[2 * l + t], RANK, DIM, DIM};
        }
    lh_adapter *mods[NMOD];
    for (int m = 0; m < NMOD; m++) {
        if (lh_adapter_create(sh, (size_t)(2 * layers), &mods[m], &err) != LH_OK)
            bench_die("bench/search", "create", &err);
        for (size_t t = 0; t < mods[m]->n_targets; t++) {
            lh_target *tg = &mods[m]->targets[t];
            for (size_t i = 0; i < (size_t)RANK * DIM; i++) {
                tg->A[i] = frand();
                tg->B[i] = frand();
            }
        }
        char nm[16];
        snprintf(nm, sizeof nm, "m%02d", m);
        mods[m]->name = strdup(nm);
    }
    char dir[4096];
    bench_tempdir(dir, sizeof dir, "search");
    const char *in[1] = {"x"}, *out[1] = {"y"};
    lh_examples *ex;
    if (lh_examples_from_arrays(in, out, 1, &ex, &err) != LH_OK)
        bench_die("bench/search", "examples", &err);

    /* (a) limit: compose alone, the same number of evaluations */
    lh_merge_opts mo;
    lh_merge_opts_default(&mo);
    lh_compose_plan *plan;
    lh_adapter *o1;
    if (lh_compose_plan_new((const lh_adapter *const *)mods, NMOD, &mo, &plan, &err) != LH_OK ||
        lh_compose_alloc_output(plan, &o1, &err) != LH_OK)
        bench_die("bench/search", "plan", &err);
    /* Every figure is the best of REPS runs: the machine is shared. */
    double w[NMOD], t0, t_compose = HUGE_VAL;
    for (int rep = 0; rep < REPS; rep++) {
        t0 = bench_now();
        for (int e = 0; e < BUDGET; e++) {
            for (int i = 0; i < NMOD; i++)
                w[i] = 0.01 * (e + 1) * (i % 3 - 1.5); /* all non-zero, as the search's */
            if (lh_compose_into(plan, w, o1, &err) != LH_OK)
                bench_die("bench/search", "compose", &err);
        }
        double t = (bench_now() - t0) / BUDGET;
        if (t < t_compose)
            t_compose = t;
    }
    lh_backend *b;
    if (lh_backend_wrap(&free_iface, NULL, &b, &err) != LH_OK)
        bench_die("bench/search", "wrap", &err);
    /* Per evaluation = the difference of a 2*BUDGET and a BUDGET run over
     * BUDGET, so the fixed costs (plan, trace fsync, re-score) cancel. */
    double t_run[2];
    for (int ck = 0; ck < 2; ck++) {
        double t_b[2] = {HUGE_VAL, HUGE_VAL};
        for (int k = 0; k < 2 * REPS; k++) {
            int rep = k % 2;
            lh_search_opts so;
            lh_search_opts_default(&so);
            so.optimizer = "random";
            so.budget = BUDGET * (rep + 1);
            so.force = 1;
            char *trace = lh_path_join(dir, "t.tsv");
            char *ckp = lh_path_join(dir, "ck.json");
            so.trace_path = trace;
            so.checkpoint_path = ck ? ckp : NULL;
            lh_search_result r;
            t0 = bench_now();
            if (lh_search_modules(&so, (const lh_adapter *const *)mods, NMOD, ex, b, &r, &err) != LH_OK)
                bench_die("bench/search", "search", &err);
            if (bench_now() - t0 < t_b[rep])
                t_b[rep] = bench_now() - t0;
            if (r.evaluations != so.budget) {
                fprintf(stderr, "bench/search: %d evaluations, want %d\n", r.evaluations, so.budget);
                return 1;
            }
            lh_search_result_release(&r);
            free(trace);
            free(ckp);
        }
        t_run[ck] = (t_b[1] - t_b[0]) / BUDGET;
    }
    printf("(a) driver, %d modules x %d layers (q,v %dx%d, r %d), %d evaluations:\n", NMOD,
           layers, DIM, DIM, RANK, BUDGET);
    printf("    compose_into alone        %8.2f ms/eval (limit)\n", t_compose * 1e3);
    printf("    search, no checkpoint     %8.2f ms/eval  ratio %.3f (goal <= 1.10)\n",
           t_run[0] * 1e3, t_run[0] / t_compose);
    printf("    search, with checkpoint   %8.2f ms/eval  ratio %.3f (fsync per evaluation)\n",
           t_run[1] * 1e3, t_run[1] / t_compose);

    /* (b) exec bridge against writing the same adapter alone */
    lh_peft_save_opts po = {LH_F32, 1, NULL};
    char *p = lh_path_join(dir, "save");
    int reps = 10;
    double t_save = HUGE_VAL;
    for (int i = 0; i < reps; i++) {
        t0 = bench_now();
        if (lh_peft_save(o1, p, &po, &err) != LH_OK)
            bench_die("bench/search", "save", &err);
        lh_rmtree(p);
        if (bench_now() - t0 < t_save)
            t_save = bench_now() - t0;
    }
    lh_backend_opts bo;
    lh_backend_opts_default(&bo);
    /* a child that answers every score request at once with one loss */
    static const char *const params[] = {"backend-cmd", "while IFS= read -r l; do case $l in *hello*) echo '{\"ok\":true,\"protocol\":1}';;"
                 " *score*) echo '{\"ok\":true,\"loss\":[1]}';; *) exit 0;; esac; done", NULL};
    bo.params = params;
    bo.tmp_dir = dir;
    lh_backend *eb;
    if (lh_backend_open("exec", &bo, &eb, &err) != LH_OK)
        bench_die("bench/search", "exec", &err);
    const lh_adapter *c1[1] = {o1};
    double loss;
    double t_exec = HUGE_VAL;
    for (int i = 0; i < reps; i++) {
        t0 = bench_now();
        if (lh_backend_score(eb, c1, 1, ex, &loss, &err) != LH_OK)
            bench_die("bench/search", "exec score", &err);
        if (bench_now() - t0 < t_exec)
            t_exec = bench_now() - t0;
    }
    lh_backend_close(eb);
    lh_backend_close(b);
    double mb = (double)lh_adapter_n_params(o1) * 4 / 1e6;
    printf("(b) exec bridge, one %.1f MB candidate:\n", mb);
    printf("    lh_peft_save alone        %8.2f ms (limit)\n", t_save * 1e3);
    printf("    exec score                %8.2f ms  ratio %.3f (goal <= 1.5)\n", t_exec * 1e3,
           t_exec / t_save);
    int ok = t_run[0] / t_compose <= 1.10 && t_exec / t_save <= 1.5;
    free(p);
    lh_adapter_free(o1);
    lh_compose_plan_free(plan);
    for (int m = 0; m < NMOD; m++)
        lh_adapter_free(mods[m]);
    lh_examples_free(ex);
    lh_rmtree(dir);
    return ok ? 0 : 1;
}

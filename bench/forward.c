/* bench/forward.c - the LLaMA runtime's forward pass (model/llama/) against OpenBLAS.
 *
 * A random LLaMA-shaped model of about 100M parameters (F32, in memory):
 *  1. scoring throughput on 512 tokens (8 sequences of 64, the second half
 *     of each scored), in tokens/s and GFLOP/s, against sgemm GFLOP/s on the
 *     very same matrix shapes measured in the same run (goal >= 60%);
 *  2. LoRA side-path overhead, rank 16 on q and v of every layer (goal < 5%);
 *  3. n candidate adapters batched through the shared base matmuls vs one
 *     at a time (the optimizer's population case: few tokens, many candidates);
 *  4. greedy generation tokens/s with the KV cache;
 *  5. peak RSS against the F32 weight size.
 * Usage: forward [--threads N] [--quick]   (--quick: a 4-layer model)
 * One thread by default, timed in process CPU time, so that the ratios
 * hold on a shared machine; --threads N > 1 times the wall clock. */
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "bench/bench_util.h"
#include "model/llama/llama.h"

/* With one thread the process CPU time is the work done, whatever else
 * runs on a shared machine; with more, only wall time adds up. */
/* An adapter with rank r on q and v of every layer, random A and B. */
static lh_adapter *make_lora(const nm_config *c, int r)
{
    lh_target_shape *sh = calloc((size_t)c->n_layers * 2, sizeof *sh);
    char (*names)[64] = calloc((size_t)c->n_layers * 2, 64);
    for (int l = 0; l < c->n_layers; l++) {
        snprintf(names[2 * l], 64, "model.layers.%d.self_attn.q_proj", l);
        snprintf(names[2 * l + 1], 64, "model.layers.%d.self_attn.v_proj", l);
        sh[2 * l] = (lh_target_shape){names[2 * l], r, c->dim, c->n_heads * c->head_dim};
        sh[2 * l + 1] = (lh_target_shape){names[2 * l + 1], r, c->dim, c->n_kv_heads * c->head_dim};
    }
    lh_adapter *a = NULL;
    lh_error err = {0};
    if (lh_adapter_create(sh, (size_t)c->n_layers * 2, &a, &err)) {
        fprintf(stderr, "forward: %s\n", err.msg);
        exit(1);
    }
    for (size_t i = 0; i < a->n_targets; i++) {
        lh_target *t = &a->targets[i];
        bench_fill(t->A, (size_t)t->r * t->d_in, 0.05f);
        bench_fill(t->B, (size_t)t->d_out * t->r, 0.05f);
        t->scale = 2.0f;
    }
    free(sh);
    free(names);
    return a;
}

/* The sgemm calls one scoring pass makes on T tokens (linear layers) and
 * n_head scored rows (LM head); returns the FLOPs. When run, times them. */
static double sgemm_pass(const nm_model *m, size_t T, size_t n_head, float *x, float *y, int run)
{
    const nm_config *c = &m->c;
    int D = c->dim, H = c->hidden, Q = c->n_heads * c->head_dim, KV = c->n_kv_heads * c->head_dim;
    struct {
        int n, k;
        const float *w;
    } sh[7];
    double flops = 0;
    for (int l = 0; l < c->n_layers; l++) {
        size_t L = (size_t)l;
        sh[0].n = Q; sh[0].k = D; sh[0].w = m->w.wq + L * Q * D;
        sh[1].n = KV; sh[1].k = D; sh[1].w = m->w.wk + L * KV * D;
        sh[2].n = KV; sh[2].k = D; sh[2].w = m->w.wv + L * KV * D;
        sh[3].n = D; sh[3].k = Q; sh[3].w = m->w.wo + L * D * Q;
        sh[4].n = H; sh[4].k = D; sh[4].w = m->w.w_gate + L * H * D;
        sh[5].n = H; sh[5].k = D; sh[5].w = m->w.w_up + L * H * D;
        sh[6].n = D; sh[6].k = H; sh[6].w = m->w.w_down + L * D * H;
        for (int i = 0; i < 7; i++) {
            if (run)
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)T, sh[i].n, sh[i].k,
                            1.0f, x, sh[i].k, sh[i].w, sh[i].k, 0.0f, y, sh[i].n);
            flops += 2.0 * (double)T * sh[i].n * sh[i].k;
        }
    }
    if (run)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n_head, c->vocab, D, 1.0f, x, D,
                    m->w.lm_head, D, 0.0f, y, c->vocab);
    flops += 2.0 * (double)n_head * c->vocab * D;
    return flops;
}

/* Attention FLOPs of one pass (QK^T and PV over full L x L blocks). */
static double attn_flops(const nm_config *c, size_t n_seq, size_t L)
{
    return (double)c->n_layers * n_seq * c->n_heads * 2.0 * 2.0 * (double)L * L * c->head_dim;
}

typedef struct score_arg {
    const nm_model *m;
    const nm_batch *b;
    const lh_adapter *const *cands;
    int n, batched;
} score_arg;

static double time_score(void *p)
{
    score_arg *a = p;
    double nll[64];
    size_t nt;
    lh_error err = {0};
    double t0 = bench_cpu_now();
    if (nm_score_batch(a->m, a->b, a->cands, a->n, a->batched, nll, &nt, &err)) {
        fprintf(stderr, "forward: %s\n", err.msg);
        exit(1);
    }
    return bench_cpu_now() - t0;
}

typedef struct gemm_arg {
    const nm_model *m;
    size_t T, n_head;
    float *x, *y;
} gemm_arg;

static double time_gemm(void *p)
{
    gemm_arg *a = p;
    double t0 = bench_cpu_now();
    sgemm_pass(a->m, a->T, a->n_head, a->x, a->y, 1);
    return bench_cpu_now() - t0;
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    int threads = 0, quick = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc)
            threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--quick"))
            quick = 1;
        else {
            fprintf(stderr, "usage: forward [--threads N] [--quick]\n");
            return 2;
        }
    }
    if (threads <= 0)
        threads = 1;
    openblas_set_num_threads(threads);
    if (threads > 1)
        bench_time_wall();
    nm_config c = {0};
    snprintf(c.model_type, sizeof c.model_type, "llama");
    c.dim = 768;
    c.hidden = 2048;
    c.n_layers = quick ? 4 : 12;
    c.n_heads = 12;
    c.n_kv_heads = 4;
    c.head_dim = 64;
    c.vocab = 32000;
    c.norm_eps = 1e-5f;
    c.rope_theta = 500000.0;
    c.tie_embeddings = 1;
    c.bos_id = 1;
    c.n_eos = 0; /* never stop early while generating */
    nm_model *m = NULL;
    lh_error err = {0};
    if (nm_model_alloc(&c, &m, &err)) {
        fprintf(stderr, "forward: %s\n", err.msg);
        return 1;
    }
    bench_fill(m->blob, m->blob_floats, 0.04f);
    for (int l = 0; l < c.n_layers; l++)
        for (int i = 0; i < c.dim; i++)
            m->w.rms_att[(size_t)l * c.dim + i] = m->w.rms_ffn[(size_t)l * c.dim + i] = 1.0f;
    double params = (double)m->blob_floats;
    bench_print_load(threads);
    printf("model: %d layers, dim %d, hidden %d, heads %d/%d, vocab %d: %.1fM parameters, "
           "%.0f MiB F32; OpenBLAS threads %d\n",
           c.n_layers, c.dim, c.hidden, c.n_heads, c.n_kv_heads, c.vocab, params / 1e6,
           params * 4 / 1048576.0, openblas_get_num_threads());

    /* 1. throughput on 512 tokens. */
    enum { NSEQ = 8, SEQ = 64 };
    size_t T = NSEQ * SEQ, len[NSEQ], from[NSEQ];
    int32_t *ids = malloc(T * sizeof *ids);
    for (size_t i = 0; i < T; i++)
        ids[i] = (int32_t)((i * 7919u) % (unsigned)c.vocab);
    for (int s = 0; s < NSEQ; s++) {
        len[s] = SEQ;
        from[s] = SEQ / 2 - 1;
    }
    nm_batch b = {NSEQ, ids, len, from, NULL};
    size_t n_head = NSEQ * (SEQ / 2);
    const lh_adapter *base[1] = {NULL};
    score_arg sa = {m, &b, base, 1, 1};
    int reps = quick ? 3 : 5;
    time_score(&sa); /* warm-up: page in the weights */
    double fl_gemm = sgemm_pass(m, T, n_head, NULL, NULL, 0);
    double fl_total = fl_gemm + attn_flops(&c, NSEQ, SEQ);
    size_t big = (size_t)T * (size_t)(c.vocab > c.hidden ? c.vocab : c.hidden);
    float *gx = malloc((size_t)T * c.hidden * sizeof(float)), *gy = malloc(big * sizeof(float));
    bench_fill(gx, (size_t)T * c.hidden, 1.0f);
    gemm_arg ga = {m, T, n_head, gx, gy};
    time_gemm(&ga);
    double t_fwd, t_gemm;
    bench_compare(reps, time_score, &sa, time_gemm, &ga, &t_fwd, &t_gemm);
    double gf_fwd = fl_total / t_fwd / 1e9, gf_gemm = fl_gemm / t_gemm / 1e9;
    printf("score 512 tokens (%zu scored): %.3f s, %.0f tokens/s, %.1f GFLOP/s\n", n_head, t_fwd,
           (double)T / t_fwd, gf_fwd);
    printf("sgemm on the same shapes:      %.3f s, %.1f GFLOP/s\n", t_gemm, gf_gemm);
    printf("ratio forward/sgemm: %.0f%% (goal >= 60%%)\n", 100.0 * gf_fwd / gf_gemm);

    /* 2. LoRA rank 16 on q and v. */
    lh_adapter *lora = make_lora(&c, 16);
    const lh_adapter *one[1] = {lora};
    score_arg sl = {m, &b, one, 1, 1};
    double t_lora;
    bench_compare(reps, time_score, &sl, time_score, &sa, &t_lora, &t_fwd);
    printf("LoRA r=16 on q,v: %.3f s vs %.3f s base: overhead %.1f%% (goal < 5%%)\n", t_lora, t_fwd,
           100.0 * (t_lora / t_fwd - 1.0));

    /* 3. candidates: a population of NC adapters (r=16 on q,v of every
     * layer, so no prefix is shared) on few-shot-sized batches. */
    enum { NC = 8 };
    lh_adapter *pop[NC];
    const lh_adapter *cp[NC];
    for (int i = 0; i < NC; i++) {
        pop[i] = make_lora(&c, 16);
        cp[i] = pop[i];
    }
    static const size_t cand_T[] = {32, 128};
    for (size_t k = 0; k < sizeof cand_T / sizeof cand_T[0]; k++) {
        size_t lenc[2] = {cand_T[k] / 2, cand_T[k] / 2};
        size_t fromc[2] = {cand_T[k] / 4, cand_T[k] / 4};
        nm_batch bc = {2, ids, lenc, fromc, NULL};
        score_arg sb = {m, &bc, cp, NC, 1}, sn = {m, &bc, cp, NC, 0};
        double t_b, t_n;
        bench_compare(reps, time_score, &sb, time_score, &sn, &t_b, &t_n);
        printf("%d candidates x %zu tokens: batched %.3f s, one at a time %.3f s: speed-up %.2fx\n",
               NC, cand_T[k], t_b, t_n, t_n / t_b);
    }

    /* 4. generation. */
    int n_new = quick ? 16 : 32;
    int32_t *out = NULL;
    size_t n_out = 0;
    double t0 = bench_cpu_now();
    if (nm_generate_ids(m, lora, ids, 16, n_new, &out, &n_out, &err)) {
        fprintf(stderr, "forward: %s\n", err.msg);
        return 1;
    }
    double t_gen = bench_cpu_now() - t0;
    printf("generate %zu tokens after a 16-token prompt: %.2f s, %.1f tokens/s\n", n_out, t_gen,
           (double)n_out / t_gen);

    /* 5. memory. */
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double rss = (double)ru.ru_maxrss / 1024.0;
    printf("peak RSS %.0f MiB = %.2fx the F32 weights (%.0f MiB)\n", rss,
           rss / (params * 4 / 1048576.0), params * 4 / 1048576.0);

    free(out);
    for (int i = 0; i < NC; i++)
        lh_adapter_free(pop[i]);
    lh_adapter_free(lora);
    free(gx);
    free(gy);
    free(ids);
    nm_model_free(m);
    return 0;
}

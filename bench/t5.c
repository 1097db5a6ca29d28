/* bench/t5.c - the T5 runtime (model/t5/) against OpenBLAS, at flan-t5-large's shapes.
 *
 * A random model with flan-t5-large's shapes (d_model 1024, 24+24 blocks,
 * d_ff 2816 gated-gelu, 16 heads of 64, vocab 32128, untied head: 783M
 * parameters, 3 GiB F32, in memory) on the paper's few-shot batch: 5
 * examples of 110 input and 10 target tokens.
 *  1. encoder+decoder scoring throughput against sgemm on the very same
 *     matrix shapes, measured in the same run (goal >= 70%);
 *  2. the LoraHub modules' LoRA (r 16 on q and v of every attention: 144
 *     pairs), its overhead over the base pass;
 *  3. 4 candidates batched through the shared base matmuls vs one at a time;
 *  4. greedy generation of 10 tokens;
 *  5. peak RSS against the F32 weights.
 * Usage: t5 [--threads N] [--quick]   (--quick: 4+4 blocks)
 *        t5 --write DIR [--quick]     (DIR/model, DIR/modules (20 LoRAs),
 *                                      DIR/task.jsonl for a --preset paper run)
 * One thread by default, timed in process CPU time, so that the ratios
 * hold on a shared machine; --threads N > 1 times the wall clock. */
#include <cblas.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>

#include "bench/bench_util.h"
#include "lib/fsutil.h"
#include "lib/peft.h"
#include "lib/safetensors.h"
#include "model/t5/t5.h"

static void die(const char *what, const lh_error *err)
{
    fprintf(stderr, "t5: %s: %s\n", what, err->msg);
    exit(1);
}

static t5_config large_config(int quick)
{
    t5_config c = {.d_model = 1024, .d_kv = 64, .d_ff = 2816, .n_heads = 16,
                   .n_enc_layers = quick ? 4 : 24, .n_dec_layers = quick ? 4 : 24,
                   .vocab = 32128, .num_buckets = 32, .max_distance = 128, .eps = 1e-6f,
                   .gated = 1, .tie_embeddings = 0, .start_id = 0, .eos_id = 1};
    return c;
}

/* Random weights of sensible scale: norms at 1, activations that stay finite. */
static t5_model *random_model(const t5_config *c)
{
    t5_model *m = NULL;
    lh_error err = {0};
    if (t5_model_alloc(c, &m, &err))
        die("model", &err);
    bench_fill(m->blob, m->blob_floats, 0.03f);
    const t5_stack_w *st[2] = {&m->w.enc, &m->w.dec};
    int nl[2] = {c->n_enc_layers, c->n_dec_layers};
    size_t D = (size_t)c->d_model;
    for (int s = 0; s < 2; s++) {
        float *lns[3] = {st[s]->self.ln, st[s]->cross.ln, st[s]->ffn.ln};
        for (int k = 0; k < 3; k++)
            for (size_t i = 0; lns[k] && i < (size_t)nl[s] * D; i++)
                lns[k][i] = 1.0f;
        for (size_t i = 0; i < D; i++)
            st[s]->final_ln[i] = 1.0f;
    }
    bench_fill(m->w.embed, (size_t)c->vocab * D, 1.0f);
    return m;
}

/* The LoraHub module shape: r 16 on q and v of every attention (encoder
 * self, decoder self and cross), scale 2. */
static lh_adapter *make_lora(const t5_config *c, int r)
{
    size_t n = (size_t)c->n_enc_layers * 2 + (size_t)c->n_dec_layers * 4;
    lh_target_shape *sh = calloc(n, sizeof *sh);
    char (*names)[64] = calloc(n, 64);
    size_t k = 0;
    int NI = c->n_heads * c->d_kv;
    for (int l = 0; l < c->n_enc_layers; l++)
        for (int p = 0; p < 2; p++, k++) {
            snprintf(names[k], 64, "encoder.block.%d.layer.0.SelfAttention.%c", l, "qv"[p]);
            sh[k] = (lh_target_shape){names[k], r, c->d_model, NI};
        }
    for (int l = 0; l < c->n_dec_layers; l++)
        for (int p = 0; p < 4; p++, k++) {
            snprintf(names[k], 64, "decoder.block.%d.layer.%d.%s.%c", l, p / 2,
                     p < 2 ? "SelfAttention" : "EncDecAttention", "qv"[p % 2]);
            sh[k] = (lh_target_shape){names[k], r, c->d_model, NI};
        }
    lh_adapter *a = NULL;
    lh_error err = {0};
    if (lh_adapter_create(sh, n, &a, &err))
        die("adapter", &err);
    for (size_t i = 0; i < a->n_targets; i++) {
        lh_target *t = &a->targets[i];
        bench_fill(t->A, (size_t)t->r * t->d_in, 0.02f);
        bench_fill(t->B, (size_t)t->d_out * t->r, 0.02f);
        t->scale = 2.0f;
        t->alpha = 32.0f;
    }
    a->r = r;
    a->lora_alpha = 32.0;
    free(sh);
    free(names);
    return a;
}

/* The sgemm calls of one scoring pass (every linear layer and the LM
 * head, on the same row counts); returns the FLOPs, times them when run. */
static double sgemm_pass(const t5_model *m, size_t Te, size_t Td, float *x, float *y, int run)
{
    const t5_config *c = &m->c;
    int D = c->d_model, NI = c->n_heads * c->d_kv, F = c->d_ff;
    /* rows, out, in per layer of each stack. */
    const struct {
        int dec;
        int big_rows; /* 1: the encoder's rows (Te), 0: the decoder's (Td) */
        int n, k, count;
    } sh[] = {
        {0, 1, NI, D, 3}, {0, 1, D, NI, 1}, {0, 1, F, D, 2}, {0, 1, D, F, 1},
        {1, 0, NI, D, 4}, {1, 1, NI, D, 2}, {1, 0, D, NI, 2}, {1, 0, F, D, 2}, {1, 0, D, F, 1},
    };
    const float *W = m->blob; /* any weights of the right size: the time is the shape's */
    double flops = 0;
    for (size_t i = 0; i < sizeof sh / sizeof sh[0]; i++) {
        int layers = sh[i].dec ? c->n_dec_layers : c->n_enc_layers;
        size_t rows = sh[i].big_rows ? Te : Td;
        for (int l = 0; l < layers * sh[i].count; l++) {
            if (run)
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)rows, sh[i].n, sh[i].k,
                            1.0f, x, sh[i].k, W + (size_t)l * sh[i].n * sh[i].k, sh[i].k, 0.0f,
                            y, sh[i].n);
            flops += 2.0 * (double)rows * sh[i].n * sh[i].k;
        }
    }
    if (run)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)Td, c->vocab, D, 1.0f, x, D,
                    m->w.lm_head, D, 0.0f, y, c->vocab);
    flops += 2.0 * (double)Td * c->vocab * D;
    return flops;
}

/* QK^T and PV of every head: encoder self, decoder self and cross. */
static double attn_flops(const t5_config *c, size_t n, size_t Ls, size_t Lt)
{
    double per_head = 2.0 * 2.0 * c->d_kv;
    return (double)n * c->n_heads * per_head *
           ((double)c->n_enc_layers * Ls * Ls + (double)c->n_dec_layers * (Lt * Lt + Lt * Ls));
}

typedef struct score_arg {
    const t5_model *m;
    const t5_batch *b;
    const lh_adapter *const *cands;
    int n, batched;
} score_arg;

static double time_score(void *p)
{
    score_arg *a = p;
    double nll[16];
    size_t nt;
    lh_error err = {0};
    double t0 = bench_cpu_now();
    if (t5_score_batch(a->m, a->b, a->cands, a->n, a->batched, nll, &nt, &err))
        die("score", &err);
    return bench_cpu_now() - t0;
}

typedef struct gemm_arg {
    const t5_model *m;
    size_t Te, Td;
    float *x, *y;
} gemm_arg;

static double time_gemm(void *p)
{
    gemm_arg *a = p;
    double t0 = bench_cpu_now();
    sgemm_pass(a->m, a->Te, a->Td, a->x, a->y, 1);
    return bench_cpu_now() - t0;
}

/* The char-level tokenizer of tests/fixtures/t5 (one id per character):
 * the figures depend on token counts, not on which ids. */
static const char tokenizer_json[] =
    "{\"version\":\"1.0\",\"truncation\":null,\"padding\":null,\"added_tokens\":["
    "{\"id\":0,\"content\":\"<pad>\",\"single_word\":false,\"lstrip\":false,\"rstrip\":false,"
    "\"normalized\":false,\"special\":true},"
    "{\"id\":1,\"content\":\"</s>\",\"single_word\":false,\"lstrip\":false,\"rstrip\":false,"
    "\"normalized\":false,\"special\":true}],"
    "\"normalizer\":null,\"pre_tokenizer\":null,\"post_processor\":null,\"decoder\":null,"
    "\"model\":{\"type\":\"BPE\",\"dropout\":null,\"unk_token\":null,"
    "\"continuing_subword_prefix\":null,\"end_of_word_suffix\":null,\"fuse_unk\":false,"
    "\"byte_fallback\":false,\"vocab\":{\"<pad>\":0,\"</s>\":1,%s},\"merges\":[]}}";

static void write_text(const char *path, const char *text)
{
    lh_error err = {0};
    if (lh_write_file_atomic(path, text, strlen(text), &err))
        die(path, &err);
}

/* DIR/model (config.json, model.safetensors F32, tokenizer.json),
 * DIR/modules/m00..m19 (PEFT, SEQ_2_SEQ_LM, r 16 on q,v), DIR/task.jsonl
 * (5 examples of 109 input and 9 output characters: 110 and 10 tokens
 * with </s>). */
static void write_setup(const char *dir, int quick)
{
    char p[2048], q[4096];
    lh_error err = {0};
    t5_config c = large_config(quick);
    t5_model *m = random_model(&c);
    snprintf(p, sizeof p, "%s/model", dir);
    if ((mkdir(dir, 0777) && errno != EEXIST) || (mkdir(p, 0777) && errno != EEXIST)) {
        perror(p);
        exit(1);
    }
    snprintf(q, sizeof q, "%s/config.json", p);
    char cfg[1024];
    snprintf(cfg, sizeof cfg,
             "{\"model_type\":\"t5\",\"d_model\":%d,\"d_kv\":%d,\"d_ff\":%d,\"num_heads\":%d,"
             "\"num_layers\":%d,\"num_decoder_layers\":%d,\"vocab_size\":%d,"
             "\"feed_forward_proj\":\"gated-gelu\",\"tie_word_embeddings\":false,"
             "\"decoder_start_token_id\":0,\"eos_token_id\":1,\"pad_token_id\":0}\n",
             c.d_model, c.d_kv, c.d_ff, c.n_heads, c.n_enc_layers, c.n_dec_layers, c.vocab);
    write_text(q, cfg);
    char vocab[4096] = "", *v = vocab;
    for (int ch = 'a'; ch <= 'z'; ch++)
        v += sprintf(v, "%s\"%c\":%d", ch > 'a' ? "," : "", ch, ch);
    v += sprintf(v, ",\" \":32,\".\":46");
    char tok[8192];
    snprintf(tok, sizeof tok, tokenizer_json, vocab);
    snprintf(q, sizeof q, "%s/tokenizer.json", p);
    write_text(q, tok);
    lh_want_list l;
    if (t5_list_tensors(m, 0, &l, &err))
        die("tensors", &err);
    lh_st_entry *en = calloc(l.n, sizeof *en);
    for (size_t i = 0; i < l.n; i++)
        en[i] = (lh_st_entry){l.w[i].name, LH_F32, l.w[i].ndim,
                              {l.w[i].shape[0], l.w[i].shape[1]}, l.w[i].dst};
    snprintf(q, sizeof q, "%s/model.safetensors", p);
    /* 3 GiB: one left by an earlier --write with the same seed is kept. */
    if (!lh_path_exists(q) && lh_st_write(q, en, l.n, NULL, NULL, 0, &err))
        die(q, &err);
    free(en);
    free(l.w);
    snprintf(q, sizeof q, "%s/modules", dir);
    if (mkdir(q, 0777) && errno != EEXIST) {
        perror(q);
        exit(1);
    }
    for (int k = 0; k < 20; k++) {
        lh_adapter *a = make_lora(&c, 16);
        a->task_type = strdup("SEQ_2_SEQ_LM");
        snprintf(q, sizeof q, "%s/modules/m%02d", dir, k);
        lh_peft_save_opts o = {.dtype = LH_F32, .force = 1, .base_model = "flan-t5-large"};
        if (lh_peft_save(a, q, &o, &err))
            die(q, &err);
        lh_adapter_free(a);
    }
    char jsonl[8192] = "", *j = jsonl;
    for (int e = 0; e < 5; e++) {
        char in[110], out[10];
        for (int i = 0; i < 109; i++)
            in[i] = (i % 6 == 5) ? ' ' : (char)('a' + (i * 7 + e * 3) % 26);
        in[109] = '\0';
        for (int i = 0; i < 9; i++)
            out[i] = (char)('a' + (i * 5 + e) % 26);
        out[9] = '\0';
        j += sprintf(j, "{\"input\":\"%s\",\"output\":\"%s\"}\n", in, out);
    }
    snprintf(q, sizeof q, "%s/task.jsonl", dir);
    write_text(q, jsonl);
    t5_model_free(m);
    printf("wrote %s/model, %s/modules (20), %s/task.jsonl\n", dir, dir, dir);
}

/* 1. Scoring against sgemm on the same shapes; examples of ls + lt tokens. */
static void throughput(score_arg *sa, size_t Te, size_t Td, size_t ls, size_t lt, int reps)
{
    const t5_model *m = sa->m;
    const t5_config *c = &m->c;
    time_score(sa); /* warm-up */
    double fl_gemm = sgemm_pass(m, Te, Td, NULL, NULL, 0);
    double fl_total = fl_gemm + attn_flops(c, Te / ls, ls, lt);
    size_t xmax = Te * (size_t)c->d_ff, ymax = Td * (size_t)c->vocab;
    if (ymax < xmax)
        ymax = xmax;
    float *gx = malloc(xmax * sizeof(float)), *gy = malloc(ymax * sizeof(float));
    bench_fill(gx, xmax, 1.0f);
    gemm_arg ga = {m, Te, Td, gx, gy};
    time_gemm(&ga);
    double t_fwd, t_gemm;
    bench_compare(reps, time_score, sa, time_gemm, &ga, &t_fwd, &t_gemm);
    double gf_fwd = fl_total / t_fwd / 1e9, gf_gemm = fl_gemm / t_gemm / 1e9;
    printf("score %zu examples (%zu encoder + %zu decoder tokens): %.2f s, %.0f tokens/s, "
           "%.1f GFLOP/s\n", Te / ls, Te, Td, t_fwd, (double)(Te + Td) / t_fwd, gf_fwd);
    printf("sgemm on the same shapes: %.2f s, %.1f GFLOP/s\n", t_gemm, gf_gemm);
    printf("ratio forward/sgemm: %.0f%% (goal >= 70%%)\n", 100.0 * gf_fwd / gf_gemm);
    free(gx);
    free(gy);
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    int threads = 0, quick = 0;
    const char *write_dir = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc)
            threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--write") && i + 1 < argc)
            write_dir = argv[++i];
        else if (!strcmp(argv[i], "--quick"))
            quick = 1;
        else {
            fprintf(stderr, "usage: t5 [--threads N] [--quick] [--write DIR]\n");
            return 2;
        }
    }
    if (write_dir) {
        write_setup(write_dir, quick);
        return 0;
    }
    if (threads <= 0)
        threads = 1;
    openblas_set_num_threads(threads);
    if (threads > 1)
        bench_time_wall();
    t5_config c = large_config(quick);
    t5_model *m = random_model(&c);
    double params = (double)m->blob_floats;
    bench_print_load(threads);
    printf("model: flan-t5-large shapes, %d+%d blocks, d_model %d, d_ff %d, heads %dx%d, vocab "
           "%d: %.1fM parameters, %.0f MiB F32; OpenBLAS threads %d\n",
           c.n_enc_layers, c.n_dec_layers, c.d_model, c.d_ff, c.n_heads, c.d_kv, c.vocab,
           params / 1e6, params * 4 / 1048576.0, openblas_get_num_threads());

    /* 1. The paper's batch: 5 examples, 110 input and 10 target tokens. */
    enum { N = 5, LS = 110, LT = 10 };
    int32_t src[N][LS], tgt[N][LT];
    const int32_t *sp[N], *tp[N];
    size_t ns[N], nt[N];
    for (int e = 0; e < N; e++) {
        for (int i = 0; i < LS; i++)
            src[e][i] = (int32_t)((i * 7919u + (unsigned)e * 31u) % 32000u) + 2;
        for (int i = 0; i < LT; i++)
            tgt[e][i] = (int32_t)((i * 104729u + (unsigned)e) % 32000u) + 2;
        src[e][LS - 1] = tgt[e][LT - 1] = 1;
        sp[e] = src[e];
        tp[e] = tgt[e];
        ns[e] = LS;
        nt[e] = LT;
    }
    t5_batch b = {N, sp, ns, tp, nt, NULL};
    const lh_adapter *base[1] = {NULL};
    score_arg sa = {m, &b, base, 1, 1};
    int reps = quick ? 3 : 2;
    throughput(&sa, N * LS, N * LT, LS, LT, reps);

    /* 2. A LoraHub module's LoRA. */
    lh_adapter *lora = make_lora(&c, 16);
    const lh_adapter *one[1] = {lora};
    score_arg sl = {m, &b, one, 1, 1};
    double t_lora, t_fwd;
    bench_compare(reps, time_score, &sl, time_score, &sa, &t_lora, &t_fwd);
    printf("LoRA r=16 on q,v (%zu pairs): %.2f s vs %.2f s base: overhead %.1f%%\n",
           lora->n_targets, t_lora, t_fwd, 100.0 * (t_lora / t_fwd - 1.0));

    /* 3. Candidates batched vs one at a time. */
    enum { NC = 4 };
    lh_adapter *pop[NC];
    const lh_adapter *cp[NC];
    for (int i = 0; i < NC; i++)
        cp[i] = pop[i] = make_lora(&c, 16);
    score_arg sb = {m, &b, cp, NC, 1}, sn = {m, &b, cp, NC, 0};
    double t_b, t_n;
    bench_compare(1, time_score, &sb, time_score, &sn, &t_b, &t_n);
    printf("%d candidates: batched %.2f s, one at a time %.2f s: speed-up %.2fx\n", NC, t_b, t_n,
           t_n / t_b);

    /* 4. Generation. */
    int32_t *out = NULL;
    size_t n_out = 0;
    lh_error err = {0};
    double t0 = bench_cpu_now();
    m->c.eos_id = -1; /* never stop early */
    if (t5_generate_ids(m, lora, src[0], LS, LT, &out, &n_out, &err))
        die("generate", &err);
    double t_gen = bench_cpu_now() - t0;
    printf("generate %zu tokens after a %d-token input: %.2f s (encoder included), %.1f "
           "tokens/s\n", n_out, LS, t_gen, (double)n_out / t_gen);

    /* 5. Memory. */
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double rss = (double)ru.ru_maxrss / 1024.0;
    printf("peak RSS %.0f MiB = %.2fx the F32 weights (%.0f MiB)\n", rss,
           rss / (params * 4 / 1048576.0), params * 4 / 1048576.0);

    free(out);
    for (int i = 0; i < NC; i++)
        lh_adapter_free(pop[i]);
    lh_adapter_free(lora);
    t5_model_free(m);
    return 0;
}

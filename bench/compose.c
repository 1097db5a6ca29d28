/* bench/compose.c - the merge methods against the limits measured in the same run.
 *
 *  (a) svd of 8 modules of rank 16 on one LLaMA-7B-like layer (q/k/v/o
 *      4096x4096, gate/up 11008x4096, down 4096x11008): lorahub's factored
 *      path (QR of the stacked factors + SVD of the 128x128 core) against the
 *      dense path (form delta W with sgemm, LAPACK sgesdd, keep rank 16):
 *      speed ratio (goal >= 50x) and the largest relative difference of the
 *      two rank-16 reconstructions, ||B'A' - B''A''||_F / ||B''A''||_F.
 *  (b) lorahub and cat over 20 modules (>= 500 MB of F32 safetensors, written
 *      by the bench into a temp dir), end to end: load every file, compose,
 *      write the PEFT directory. Throughput (bytes read + bytes written per
 *      second) against memcpy's bandwidth on a buffer of the same total size
 *      (goal >= 50%).
 * Usage: compose [--quick] [--io-only | --svd-only]
 *   --quick: svd on q and down only, 4 modules of 5 MB. The dense path takes
 *   minutes per target on a busy 2-core machine. */
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "compose/compose.h"
#include "lib/adapter.h"
#include "lib/fsutil.h"
#include "lib/peft.h"

void sgesdd_(const char *jobz, const int *m, const int *n, float *a, const int *lda, float *s,
             float *u, const int *ldu, float *vt, const int *ldvt, float *work,
             const int *lwork, int *iwork, int *info, size_t jobz_len);

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static uint64_t rng_state = 0x2545f4914f6cdd1dULL;
static float frand(void) /* uniform in [-1, 1) */
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (float)((rng_state >> 40) * (1.0 / (1 << 23))) - 1.0f;
}

static void die(const char *what, const lh_error *e)
{
    fprintf(stderr, "bench/compose: %s: %s\n", what, lh_error_message(e));
    exit(1);
}

typedef struct shape { const char *name; int d_in, d_out; } shape;
static const shape layer[] = {
    {"self_attn.q_proj", 4096, 4096}, {"self_attn.k_proj", 4096, 4096},
    {"self_attn.v_proj", 4096, 4096}, {"self_attn.o_proj", 4096, 4096},
    {"mlp.gate_proj", 4096, 11008},   {"mlp.up_proj", 4096, 11008},
    {"mlp.down_proj", 11008, 4096},
};

/* A module with `layers` copies of the chosen layer shapes, random factors. */
static lh_adapter *make_module(int layers, const int *which, int nwhich, int r, float scale)
{
    lh_target_shape sh[256];
    char names[256][96];
    int n = 0;
    for (int l = 0; l < layers; l++)
        for (int j = 0; j < nwhich; j++) {
            const shape *s = &layer[which[j]];
            snprintf(names[n], sizeof names[n], "model.layers.%d.%s", l, s->name);
            sh[n] = (lh_target_shape){names[n], r, s->d_in, s->d_out};
            n++;
        }
    lh_adapter *a = NULL;
    lh_error e = {0};
    if (lh_adapter_create(sh, (size_t)n, &a, &e))
        die("create", &e);
    for (size_t t = 0; t < a->n_targets; t++) {
        lh_target *tg = &a->targets[t];
        tg->scale = scale;
        for (size_t j = 0; j < (size_t)tg->r * tg->d_in; j++)
            tg->A[j] = frand() * 0.02f;
        for (size_t j = 0; j < (size_t)tg->d_out * tg->r; j++)
            tg->B[j] = frand() * 0.02f;
    }
    return a;
}

/* The dense path for one target: delta = sum c_i B_i A_i via one sgemm of
 * the stacked factors, then sgesdd, keep rank k. Writes Bd [d_out, k] and
 * Ad [k, d_in]. */
static void dense_svd(lh_adapter **m, int n, const double *w, size_t t, int k, float *Bd,
                      float *Ad)
{
    const lh_target *t0 = &m[0]->targets[t];
    const int din = t0->d_in, dout = t0->d_out, r = t0->r, R = n * r;
    float *Bs = malloc((size_t)dout * R * sizeof *Bs); /* [d_out, R] */
    float *As = malloc((size_t)R * din * sizeof *As);  /* [R, d_in] */
    float *D = malloc((size_t)dout * din * sizeof *D); /* [d_out, d_in] */
    for (int i = 0; i < n; i++) {
        const lh_target *ti = &m[i]->targets[t];
        float c = (float)(w[i] * ti->scale);
        for (int x = 0; x < dout; x++)
            for (int j = 0; j < r; j++)
                Bs[(size_t)x * R + i * r + j] = c * ti->B[(size_t)x * r + j];
        memcpy(As + (size_t)i * r * din, ti->A, (size_t)r * din * sizeof *As);
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, dout, din, R, 1.0f, Bs, R, As, din,
                0.0f, D, din);
    /* row-major D = column-major D^T [d_in, d_out] = U S VT: D = VT^T S U^T */
    int mm = din, nn = dout, mn = mm < nn ? mm : nn, lw = -1, info = 0;
    float *s = malloc((size_t)mn * sizeof *s), q;
    float *u = malloc((size_t)mm * mn * sizeof *u), *vt = malloc((size_t)mn * nn * sizeof *vt);
    int *iw = malloc((size_t)8 * mn * sizeof *iw);
    sgesdd_("S", &mm, &nn, D, &mm, s, u, &mm, vt, &mn, &q, &lw, iw, &info, 1);
    lw = (int)(q * 1.0001f) + 64;
    float *work = malloc((size_t)lw * sizeof *work);
    sgesdd_("S", &mm, &nn, D, &mm, s, u, &mm, vt, &mn, work, &lw, iw, &info, 1);
    if (info) {
        fprintf(stderr, "bench/compose: sgesdd info %d\n", info);
        exit(1);
    }
    for (int x = 0; x < dout; x++)
        for (int j = 0; j < k; j++)
            Bd[(size_t)x * k + j] = s[j] * vt[j + (size_t)x * mn];
    memcpy(Ad, u, (size_t)k * din * sizeof *Ad);
    free(Bs);
    free(As);
    free(D);
    free(s);
    free(u);
    free(vt);
    free(iw);
    free(work);
}

/* ||B1 A1 - B2 A2||_F / ||B2 A2||_F, both products formed with sgemm. */
static double rel_diff(const float *B1, const float *A1, const float *B2, const float *A2,
                       int dout, int din, int k)
{
    float *P = malloc((size_t)dout * din * sizeof *P), *Q = malloc((size_t)dout * din * sizeof *Q);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, dout, din, k, 1.0f, B1, k, A1, din,
                0.0f, P, din);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, dout, din, k, 1.0f, B2, k, A2, din,
                0.0f, Q, din);
    double num = 0, den = 0;
    for (size_t j = 0; j < (size_t)dout * din; j++) {
        double d = (double)P[j] - Q[j];
        num += d * d;
        den += (double)Q[j] * Q[j];
    }
    free(P);
    free(Q);
    return sqrt(num / den);
}

static void bench_svd(int quick)
{
    const int all[] = {0, 1, 2, 3, 4, 5, 6}, some[] = {0, 6};
    const int *which = quick ? some : all, nw = quick ? 2 : 7, n = 8, r = 16;
    lh_adapter *m[8];
    double w[8];
    for (int i = 0; i < n; i++) {
        m[i] = make_module(1, which, nw, r, 2.0f);
        w[i] = (i % 3 == 2 ? -1.0 : 1.0) * (0.2 + 0.1 * i);
    }
    lh_merge_opts o;
    lh_merge_opts_default(&o);
    o.method = LH_MERGE_SVD;
    lh_error e = {0};
    lh_adapter *out = NULL;
    /* best of 3: the first run also pays the first touch of its work memory */
    double t_fact = 1e30;
    for (int k = 0; k < 3; k++) {
        lh_adapter_free(out);
        out = NULL;
        double t0 = now();
        if (lh_compose((const lh_adapter *const *)m, (size_t)n, w, &o, &out, &e))
            die("svd compose", &e);
        double dt = now() - t0;
        t_fact = dt < t_fact ? dt : t_fact;
    }
    double t_dense = 0, worst = 0;
    for (size_t t = 0; t < out->n_targets; t++) {
        const lh_target *ot = &out->targets[t];
        float *Bd = malloc((size_t)ot->d_out * r * sizeof *Bd);
        float *Ad = malloc((size_t)r * ot->d_in * sizeof *Ad);
        double t1 = now();
        dense_svd(m, n, w, t, r, Bd, Ad);
        double dt = now() - t1;
        t_dense += dt;
        double d = rel_diff(ot->B, ot->A, Bd, Ad, ot->d_out, ot->d_in, r);
        if (d > worst)
            worst = d;
        printf("  %-24s %5dx%-5d dense %7.2f s   rel diff %.2e\n", ot->name, ot->d_out, ot->d_in,
               dt, d);
        fflush(stdout);
        free(Bd);
        free(Ad);
    }
    printf("compose svd: %d modules of rank %d, %zu targets of a LLaMA-7B layer: factored %.3f s (best of 3), "
           "dense (sgemm + sgesdd) %.1f s: %.0fx faster (goal >= 50x); max relative difference "
           "of the rank-%d reconstructions %.1e\n",
           n, r, out->n_targets, t_fact, t_dense, t_dense / t_fact, r, worst);
    lh_adapter_free(out);
    for (int i = 0; i < n; i++)
        lh_adapter_free(m[i]);
}

static uint64_t dir_bytes(const char *dir)
{
    char *p = lh_path_join(dir, "adapter_model.safetensors");
    int64_t s = lh_file_size(p);
    free(p);
    return s > 0 ? (uint64_t)s : 0;
}

/* End to end: load n files, compose, save. Returns seconds; adds the bytes
 * read and written to *bytes. */
static double end_to_end(char **paths, int n, lh_merge_method method, const char *outdir,
                         uint64_t *bytes, double *parts /* [3]: load, compose, save */)
{
    lh_adapter *m[32] = {0}, *out = NULL;
    double w[32];
    lh_error e = {0};
    for (int i = 0; i < n; i++)
        w[i] = 1.0 / n;
    lh_merge_opts o;
    lh_merge_opts_default(&o);
    o.method = method;
    lh_peft_save_opts so = {.dtype = LH_F32, .force = 1};
    double t0 = now();
    for (int i = 0; i < n; i++)
        if (lh_adapter_load(paths[i], &m[i], &e))
            die(paths[i], &e);
    double t1 = now();
    if (lh_compose((const lh_adapter *const *)m, (size_t)n, w, &o, &out, &e))
        die("compose", &e);
    double t2 = now();
    if (lh_peft_save(out, outdir, &so, &e))
        die(outdir, &e);
    double dt = now() - t0;
    parts[0] = t1 - t0;
    parts[1] = t2 - t1;
    parts[2] = t0 + dt - t2;
    *bytes = dir_bytes(outdir);
    for (int i = 0; i < n; i++)
        *bytes += dir_bytes(paths[i]);
    lh_adapter_free(out);
    for (int i = 0; i < n; i++)
        lh_adapter_free(m[i]);
    return dt;
}

static void bench_io(int quick)
{
    const int n = quick ? 4 : 20, layers = quick ? 1 : 5, r = 16;
    const int all[] = {0, 1, 2, 3, 4, 5, 6};
    char tmpl[] = "/tmp/lorahub-bench-compose.XXXXXX";
    char *dir = mkdtemp(tmpl);
    if (!dir) {
        perror("mkdtemp");
        exit(1);
    }
    char *paths[32];
    lh_error e = {0};
    lh_peft_save_opts so = {.dtype = LH_F32, .force = 1};
    for (int i = 0; i < n; i++) {
        char name[32];
        snprintf(name, sizeof name, "m%02d", i);
        paths[i] = lh_path_join(dir, name);
        lh_adapter *a = make_module(layers, all, 7, r, 2.0f);
        if (lh_peft_save(a, paths[i], &so, &e))
            die(paths[i], &e);
        lh_adapter_free(a);
    }
    uint64_t in = 0;
    for (int i = 0; i < n; i++)
        in += dir_bytes(paths[i]);
    /* memcpy over a buffer as large as all inputs together */
    size_t sz = (size_t)in;
    char *src = malloc(sz), *dst = malloc(sz);
    if (!src || !dst) {
        fprintf(stderr, "bench/compose: out of memory for memcpy\n");
        exit(1);
    }
    memset(src, 1, sz);
    memset(dst, 2, sz);
    double best = 1e30;
    for (int k = 0; k < 3; k++) {
        double t0 = now();
        memcpy(dst, src, sz);
        __asm__ volatile("" : : "r"(dst) : "memory");
        double dt = now() - t0;
        best = dt < best ? dt : best;
    }
    double memcpy_gbs = (double)sz / best / 1e9;
    /* The pipeline writes into memory it has just allocated; on this
     * machine (a VM) the first touch of a page costs far more than the copy,
     * so also measure memcpy into a freshly allocated destination. */
    double best_fresh = 1e30;
    for (int k = 0; k < 3; k++) {
        double t0 = now();
        char *d = malloc(sz);
        if (!d)
            break;
        memcpy(d, src, sz);
        __asm__ volatile("" : : "r"(d) : "memory"); /* keep the copy */
        double dt = now() - t0;
        free(d);
        best_fresh = dt < best_fresh ? dt : best_fresh;
    }
    double fresh_gbs = (double)sz / best_fresh / 1e9;
    free(src);
    free(dst);
    printf("memcpy: %.2f GB/s between touched buffers, %.2f GB/s into a fresh malloc "
           "(%.0f MB, best of 3)\n", memcpy_gbs, fresh_gbs, (double)sz / 1e6);
    const lh_merge_method ms[2] = {LH_MERGE_LORAHUB, LH_MERGE_CAT};
    for (int k = 0; k < 2; k++) {
        char *out = lh_path_join(dir, "out");
        uint64_t bytes = 0;
        double parts[3];
        double dt = end_to_end(paths, n, ms[k], out, &bytes, parts);
        double gbs = (double)bytes / dt / 1e9;
        printf("compose %s: %d modules, %.0f MB in, %.0f MB out, end to end %.3f s: %.2f GB/s = "
               "%.0f%% of memcpy (goal >= 50%%), %.0f%% of memcpy into fresh memory; load %.3f s, "
               "compose %.3f s, save %.3f s\n",
               lh_merge_method_name(ms[k]), n, (double)in / 1e6, (double)(bytes - in) / 1e6, dt,
               gbs, 100.0 * gbs / memcpy_gbs, 100.0 * gbs / fresh_gbs, parts[0], parts[1],
               parts[2]);
        lh_rmtree(out);
        free(out);
    }
    for (int i = 0; i < n; i++)
        free(paths[i]);
    lh_rmtree(dir);
}

int main(int argc, char **argv)
{
    int quick = 0, io = 1, svd = 1;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--quick"))
            quick = 1;
        else if (!strcmp(argv[i], "--io-only"))
            svd = 0;
        else if (!strcmp(argv[i], "--svd-only"))
            io = 0;
        else {
            fprintf(stderr, "usage: compose [--quick] [--io-only | --svd-only]\n");
            return 2;
        }
    }
    if (io)
        bench_io(quick);
    if (svd)
        bench_svd(quick);
    return 0;
}

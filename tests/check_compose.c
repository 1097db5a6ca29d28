/* tests/check_compose.c - every merge method against a plain dense
 * reference computed here in double precision on small random shapes, the
 * sparsify methods on tiny cases worked out by hand, and the errors. */
#include <check.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "compose/compose.h"
#include "lib/adapter.h"

void dgesdd_(const char *jobz, const int *m, const int *n, double *a, const int *lda, double *s,
             double *u, const int *ldu, double *vt, const int *ldvt, double *work,
             const int *lwork, int *iwork, int *info, size_t jobz_len);

/* ---- helpers --------------------------------------------------------- */

static uint64_t rng_state = 12345;
static double urand(void) /* uniform [-1, 1), xorshift64*: the test's own generator */
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return (double)((rng_state * 0x2545F4914F6CDD1DULL) >> 11) * 0x1.0p-52 - 1.0;
}

typedef struct spec {
    const char *name;
    int r, d_in, d_out;
    float scale;
} spec;

/* A module with random factors; path is what errors must name. */
static lh_adapter *mk(const char *path, const spec *s, size_t n)
{
    lh_target_shape sh[16];
    ck_assert(n <= 16);
    for (size_t i = 0; i < n; i++)
        sh[i] = (lh_target_shape){s[i].name, s[i].r, s[i].d_in, s[i].d_out};
    lh_adapter *a = NULL;
    lh_error e = {0};
    ck_assert_msg(lh_adapter_create(sh, n, &a, &e) == LH_OK, "%s", e.msg);
    a->path = strdup(path);
    for (size_t i = 0; i < n; i++) {
        lh_target *t = (lh_target *)lh_adapter_find(a, s[i].name);
        ck_assert_ptr_nonnull(t);
        t->scale = s[i].scale;
        for (int j = 0; j < t->r * t->d_in; j++)
            t->A[j] = (float)urand();
        for (int j = 0; j < t->d_out * t->r; j++)
            t->B[j] = (float)urand();
    }
    return a;
}

/* sum_i w_i s_i B_i A_i for target name, in double: [d_out, d_in] */
static double *ref_sum(lh_adapter **m, size_t n, const double *w, const char *name, int dout,
                       int din)
{
    double *d = calloc((size_t)dout * din, sizeof *d);
    for (size_t i = 0; i < n; i++) {
        const lh_target *t = lh_adapter_find(m[i], name);
        if (!t)
            continue;
        double c = w[i] * t->scale;
        for (int x = 0; x < dout; x++)
            for (int y = 0; y < din; y++) {
                double acc = 0;
                for (int j = 0; j < t->r; j++)
                    acc += (double)t->B[x * t->r + j] * t->A[j * din + y];
                d[x * din + y] += c * acc;
            }
    }
    return d;
}

/* scale * B A of an output target, in double. */
static double *delta_of(const lh_target *t)
{
    double *d = calloc((size_t)t->d_out * t->d_in, sizeof *d);
    for (int x = 0; x < t->d_out; x++)
        for (int y = 0; y < t->d_in; y++) {
            double acc = 0;
            for (int j = 0; j < t->r; j++)
                acc += (double)t->B[x * t->r + j] * t->A[j * t->d_in + y];
            d[x * t->d_in + y] = t->scale * acc;
        }
    return d;
}

static double rel_err(const double *a, const double *b, size_t n)
{
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        num += (a[i] - b[i]) * (a[i] - b[i]);
        den += b[i] * b[i];
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

/* Singular values (descending) and the rank-k reconstruction of d [m, n]. */
static void ref_svd(const double *d, int m, int n, int k, double *sv /* [min] */,
                    double *rec /* [m, n] */)
{
    /* row-major d [m, n] = column-major d^T [n, m] */
    int mn = m < n ? m : n, lw = -1, info = 0;
    double *a = malloc((size_t)m * n * sizeof *a), q;
    memcpy(a, d, (size_t)m * n * sizeof *a);
    double *u = malloc((size_t)n * mn * sizeof *u), *vt = malloc((size_t)mn * m * sizeof *vt);
    int *iw = malloc(8 * (size_t)mn * sizeof *iw);
    dgesdd_("S", &n, &m, a, &n, sv, u, &n, vt, &mn, &q, &lw, iw, &info, 1);
    lw = (int)q + 64;
    double *work = malloc((size_t)lw * sizeof *work);
    dgesdd_("S", &n, &m, a, &n, sv, u, &n, vt, &mn, work, &lw, iw, &info, 1);
    ck_assert_int_eq(info, 0);
    /* d^T = U S VT  =>  d[x, y] = sum_j VT[j, x] S_j U[y, j] */
    if (k > mn)
        k = mn;
    for (int x = 0; x < m; x++)
        for (int y = 0; y < n; y++) {
            double acc = 0;
            for (int j = 0; j < k; j++)
                acc += vt[j + (size_t)x * mn] * sv[j] * u[y + (size_t)j * n];
            rec[x * n + y] = acc;
        }
    free(a);
    free(u);
    free(vt);
    free(iw);
    free(work);
}

static lh_merge_opts opts_of(lh_merge_method m)
{
    lh_merge_opts o;
    lh_merge_opts_default(&o);
    o.method = m;
    return o;
}

static lh_adapter *compose_ok(lh_adapter **m, size_t n, const double *w, const lh_merge_opts *o)
{
    lh_adapter *out = NULL;
    lh_error e = {0};
    lh_status st = lh_compose((const lh_adapter *const *)m, n, w, o, &out, &e);
    ck_assert_msg(st == LH_OK, "%s: %s", lh_merge_method_name(o->method), e.msg);
    ck_assert_ptr_nonnull(out);
    return out;
}

static void free_all(lh_adapter **m, size_t n)
{
    for (size_t i = 0; i < n; i++)
        lh_adapter_free(m[i]);
}

/* Three modules: mixed ranks and scales, 'up' missing from the second. */
static void mixed_modules(lh_adapter **m)
{
    const spec s0[] = {{"q", 3, 7, 5, 2.0f}, {"up", 2, 7, 9, 0.5f}};
    const spec s1[] = {{"q", 5, 7, 5, 0.25f}};
    const spec s2[] = {{"q", 2, 7, 5, 1.5f}, {"up", 4, 7, 9, 3.0f}};
    m[0] = mk("a/m0", s0, 2);
    m[1] = mk("a/m1.safetensors", s1, 1);
    m[2] = mk("m2", s2, 2);
}

/* ---- lorahub, linear, cat -------------------------------------------- */

START_TEST(test_lorahub_factors)
{
    lh_adapter *m[3];
    mixed_modules(m);
    const double w[3] = {0.7, -1.2, 0.4};
    lh_merge_opts o = opts_of(LH_MERGE_LORAHUB);
    lh_adapter *out = compose_ok(m, 3, w, &o);
    ck_assert_uint_eq(out->n_targets, 2);
    ck_assert_str_eq(out->targets[0].name, "q");
    ck_assert_str_eq(out->targets[1].name, "up");
    ck_assert_int_eq(out->r, 5); /* largest input rank */
    for (size_t t = 0; t < 2; t++) {
        const lh_target *ot = &out->targets[t];
        ck_assert_int_eq(ot->r, 5);
        ck_assert(ot->scale == 1.0f);
        /* A = sum w_i A_i and B = sum w_i s_i B_i, zero-padded to rank 5 */
        for (int j = 0; j < 5; j++)
            for (int y = 0; y < ot->d_in; y++) {
                double want = 0;
                for (int i = 0; i < 3; i++) {
                    const lh_target *s = lh_adapter_find(m[i], ot->name);
                    if (s && j < s->r)
                        want += w[i] * s->A[j * s->d_in + y];
                }
                ck_assert_double_eq_tol(ot->A[j * ot->d_in + y], want, 1e-5);
            }
        for (int x = 0; x < ot->d_out; x++)
            for (int j = 0; j < 5; j++) {
                double want = 0;
                for (int i = 0; i < 3; i++) {
                    const lh_target *s = lh_adapter_find(m[i], ot->name);
                    if (s && j < s->r)
                        want += w[i] * s->scale * s->B[x * s->r + j];
                }
                ck_assert_double_eq_tol(ot->B[x * 5 + j], want, 1e-5);
            }
    }
    lh_adapter_free(out);
    /* all weights zero: the base model is unchanged (exact zeros) */
    const double z[3] = {0, 0, 0};
    out = compose_ok(m, 3, z, &o);
    for (size_t t = 0; t < out->n_targets; t++) {
        const lh_target *ot = &out->targets[t];
        for (int j = 0; j < ot->r * ot->d_in; j++)
            ck_assert(ot->A[j] == 0.0f);
        for (int j = 0; j < ot->d_out * ot->r; j++)
            ck_assert(ot->B[j] == 0.0f);
    }
    lh_adapter_free(out);
    free_all(m, 3);
}
END_TEST

START_TEST(test_linear)
{
    const spec s0[] = {{"k", 4, 6, 8, 2.0f}, {"v", 4, 6, 3, 1.0f}};
    const spec s1[] = {{"k", 4, 6, 8, 0.5f}};
    lh_adapter *m[2] = {mk("x0", s0, 2), mk("x1", s1, 1)};
    const double w[2] = {0.8, -1.5};
    lh_merge_opts o = opts_of(LH_MERGE_LINEAR);
    lh_adapter *out = compose_ok(m, 2, w, &o);
    ck_assert_int_eq(out->r, 4);
    const lh_target *k = lh_adapter_find(out, "k");
    /* PEFT: A = sum sgn(c) sqrt|c| A_i, B = sum sqrt|c| B_i, c = w s */
    double c[2] = {0.8 * 2.0, -1.5 * 0.5};
    const lh_target *k0 = lh_adapter_find(m[0], "k"), *k1 = lh_adapter_find(m[1], "k");
    for (int j = 0; j < 4 * 6; j++) {
        double want = sqrt(c[0]) * k0->A[j] - sqrt(-c[1]) * k1->A[j];
        ck_assert_double_eq_tol(k->A[j], want, 1e-5);
    }
    for (int j = 0; j < 8 * 4; j++) {
        double want = sqrt(c[0]) * k0->B[j] + sqrt(-c[1]) * k1->B[j];
        ck_assert_double_eq_tol(k->B[j], want, 1e-5);
    }
    /* 'v' is in one module only: linear is then exact, c B A */
    double *ref = ref_sum(m, 2, w, "v", 3, 6);
    double *got = delta_of(lh_adapter_find(out, "v"));
    ck_assert(rel_err(got, ref, 18) <= 1e-5);
    free(ref);
    free(got);
    lh_adapter_free(out);
    free_all(m, 2);
}
END_TEST

START_TEST(test_cat_exact)
{
    lh_adapter *m[3];
    mixed_modules(m);
    const double w[3] = {-0.3, 1.1, 2.0};
    lh_merge_opts o = opts_of(LH_MERGE_CAT);
    lh_adapter *out = compose_ok(m, 3, w, &o);
    ck_assert_int_eq(out->r, 10); /* q: 3 + 5 + 2; up: 2 + 4, padded to 10 */
    const char *names[2] = {"q", "up"};
    const int dout[2] = {5, 9};
    for (int t = 0; t < 2; t++) {
        const lh_target *ot = lh_adapter_find(out, names[t]);
        double *ref = ref_sum(m, 3, w, names[t], dout[t], 7);
        double *got = delta_of(ot);
        ck_assert_msg(rel_err(got, ref, (size_t)dout[t] * 7) <= 1e-5, "cat %s", names[t]);
        free(ref);
        free(got);
    }
    /* the padding rows/columns of 'up' (rank 6 of 10) are zero */
    const lh_target *up = lh_adapter_find(out, "up");
    for (int j = 6; j < 10; j++) {
        for (int y = 0; y < 7; y++)
            ck_assert(up->A[j * 7 + y] == 0.0f);
        for (int x = 0; x < 9; x++)
            ck_assert(up->B[x * 10 + j] == 0.0f);
    }
    lh_adapter_free(out);
    free_all(m, 3);
}
END_TEST

/* A sum-only output (for backends that score cat from the weights) holds
 * the modules at their weights and no targets; non-finite weights and
 * non-cat plans are refused as lh_compose_into refuses them. */
START_TEST(test_sum_only_output)
{
    lh_adapter *m[3];
    mixed_modules(m);
    lh_merge_opts o = opts_of(LH_MERGE_CAT);
    lh_compose_plan *p = NULL;
    lh_error err;
    ck_assert_int_eq(lh_compose_plan_new((const lh_adapter *const *)m, 3, &o, &p, &err), LH_OK);
    lh_adapter *out = NULL;
    ck_assert_int_eq(lh_compose_alloc_sum_output(p, &out, &err), LH_OK);
    ck_assert_uint_eq(out->n_targets, 0);
    const double w[3] = {-0.3, 1.1, 2.0};
    ck_assert_int_eq(lh_compose_sum_into(p, w, out, &err), LH_OK);
    ck_assert_uint_eq(out->sum->n, 3);
    for (int i = 0; i < 3; i++) {
        ck_assert_ptr_eq(out->sum->mods[i], m[i]);
        ck_assert(out->sum->coef[i] == w[i]);
    }
    const double bad[3] = {0.5, NAN, 1.0};
    ck_assert_int_eq(lh_compose_sum_into(p, bad, out, &err), LH_ERR_ARG);
    ck_assert_msg(strstr(err.msg, "weight 2") != NULL, "%s", err.msg);
    lh_adapter_free(out);
    lh_compose_plan_free(p);
    o = opts_of(LH_MERGE_LORAHUB);
    ck_assert_int_eq(lh_compose_plan_new((const lh_adapter *const *)m, 3, &o, &p, &err), LH_OK);
    ck_assert_int_eq(lh_compose_alloc_sum_output(p, &out, &err), LH_ERR_ARG);
    ck_assert_ptr_null(out);
    lh_compose_plan_free(p);
    free_all(m, 3);
}
END_TEST

START_TEST(test_one_module)
{
    const spec s0[] = {{"o", 3, 5, 4, 1.75f}};
    lh_adapter *m[1] = {mk("only", s0, 1)};
    const double w[1] = {-0.6};
    double *ref = ref_sum(m, 1, w, "o", 4, 5);
    const lh_merge_method ms[] = {LH_MERGE_LINEAR, LH_MERGE_CAT, LH_MERGE_SVD,
                                  LH_MERGE_MAGNITUDE_PRUNE_SVD, LH_MERGE_DARE_LINEAR_SVD};
    for (size_t i = 0; i < sizeof ms / sizeof *ms; i++) {
        lh_merge_opts o = opts_of(ms[i]);
        lh_adapter *out = compose_ok(m, 1, w, &o);
        double *got = delta_of(&out->targets[0]);
        ck_assert_msg(rel_err(got, ref, 20) <= 1e-5, "%s: %g", lh_merge_method_name(ms[i]),
                      rel_err(got, ref, 20));
        free(got);
        lh_adapter_free(out);
    }
    /* lorahub with one module is w^2 s B A (A and B both carry w) */
    lh_merge_opts o = opts_of(LH_MERGE_LORAHUB);
    lh_adapter *out = compose_ok(m, 1, w, &o);
    double *got = delta_of(&out->targets[0]);
    for (int j = 0; j < 20; j++)
        ref[j] *= w[0];
    ck_assert(rel_err(got, ref, 20) <= 1e-5);
    free(got);
    free(ref);
    lh_adapter_free(out);
    free_all(m, 1);
}
END_TEST

/* ---- svd -------------------------------------------------------------- */

/* Compare the output of target name against LAPACK's dense SVD of ref. */
static void check_svd_target(const lh_target *ot, const double *ref, int k)
{
    int dout = ot->d_out, din = ot->d_in, mn = dout < din ? dout : din;
    double *sv = calloc((size_t)mn, sizeof *sv);
    double *rec = calloc((size_t)dout * din, sizeof *rec);
    ref_svd(ref, dout, din, k, sv, rec);
    double *got = delta_of(ot);
    double e = rel_err(got, rec, (size_t)dout * din);
    ck_assert_msg(e <= 1e-5, "'%s' rank-%d reconstruction rel err %g", ot->name, k, e);
    /* A' has orthonormal rows, so ||B'[:, j]|| is the j-th singular value */
    for (int j = 0; j < ot->r; j++) {
        double nb = 0;
        for (int x = 0; x < dout; x++)
            nb += (double)ot->B[x * ot->r + j] * ot->B[x * ot->r + j];
        double want = j < k && j < mn ? sv[j] : 0.0;
        ck_assert_msg(fabs(sqrt(nb) - want) <= 1e-5 * sv[0], "'%s' sigma_%d %g vs %g", ot->name,
                      j, sqrt(nb), want);
        /* rows beyond the sum's true rank (zero singular values) are zero */
        for (int l = 0; l < ot->r && j < k && j < mn && sv[j] > 1e-6 * sv[0]; l++) {
            if (l >= k || l >= mn || sv[l] <= 1e-6 * sv[0])
                continue;
            double dot = 0, id = j == l ? 1.0 : 0.0;
            for (int y = 0; y < din; y++)
                dot += (double)ot->A[j * din + y] * ot->A[l * din + y];
            ck_assert_double_eq_tol(dot, id, 1e-5);
        }
    }
    free(sv);
    free(rec);
    free(got);
}

START_TEST(test_svd_factored)
{
    /* tall and wide targets, R = sum r_i both below and above min(d_out, d_in) */
    const spec s0[] = {{"a", 4, 30, 20, 1.0f}, {"b", 3, 12, 40, 2.0f}, {"c", 5, 6, 9, 1.0f}};
    const spec s1[] = {{"a", 6, 30, 20, 0.5f}, {"b", 2, 12, 40, 1.0f}, {"c", 4, 6, 9, 0.25f}};
    const spec s2[] = {{"a", 2, 30, 20, 4.0f}, {"c", 1, 6, 9, 1.0f}};
    lh_adapter *m[3] = {mk("s0", s0, 3), mk("s1", s1, 3), mk("s2", s2, 2)};
    const double w[3] = {1.3, -0.7, 0.45};
    const int ks[] = {0, 3, 8, 12};
    for (size_t kk = 0; kk < sizeof ks / sizeof *ks; kk++) {
        lh_merge_opts o = opts_of(LH_MERGE_SVD);
        o.rank = ks[kk];
        lh_adapter *out = compose_ok(m, 3, w, &o);
        int k = ks[kk] ? ks[kk] : 6; /* default: the largest input rank */
        ck_assert_int_eq(out->r, k);
        for (size_t t = 0; t < out->n_targets; t++) {
            const lh_target *ot = &out->targets[t];
            double *ref = ref_sum(m, 3, w, ot->name, ot->d_out, ot->d_in);
            check_svd_target(ot, ref, k);
            free(ref);
        }
        lh_adapter_free(out);
    }
    /* rank >= sum of ranks: the exact sum */
    lh_merge_opts o = opts_of(LH_MERGE_SVD);
    o.rank = 12;
    lh_adapter *out = compose_ok(m, 3, w, &o);
    const lh_target *a = lh_adapter_find(out, "a");
    double *ref = ref_sum(m, 3, w, "a", 20, 30);
    double *got = delta_of(a);
    ck_assert(rel_err(got, ref, 600) <= 1e-5);
    free(ref);
    free(got);
    lh_adapter_free(out);
    /* zero weights: zero delta */
    const double z[3] = {0, 0, 0};
    o.rank = 0;
    out = compose_ok(m, 3, z, &o);
    for (size_t t = 0; t < out->n_targets; t++)
        for (int j = 0; j < out->targets[t].d_out * out->targets[t].r; j++)
            ck_assert(out->targets[t].B[j] == 0.0f);
    lh_adapter_free(out);
    free_all(m, 3);
}
END_TEST

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

START_TEST(test_svd_clamp)
{
    const spec s0[] = {{"a", 4, 16, 12, 1.0f}};
    const spec s1[] = {{"a", 4, 16, 12, 2.0f}};
    lh_adapter *m[2] = {mk("c0", s0, 1), mk("c1", s1, 1)};
    const double w[2] = {1.0, 0.5};
    lh_merge_opts o = opts_of(LH_MERGE_SVD);
    lh_adapter *raw = compose_ok(m, 2, w, &o);
    o.clamp_quantile = 0.9;
    lh_adapter *cl = compose_ok(m, 2, w, &o);
    const lh_target *r = &raw->targets[0], *c = &cl->targets[0];
    /* hi = 0.9-quantile (linear interpolation) of the signed entries of
     * U S and Vh; then both are clamped to [-hi, hi] */
    size_t nv = 12 * 4 + 4 * 16;
    double *v = malloc(nv * sizeof *v);
    for (int j = 0; j < 48; j++)
        v[j] = r->B[j];
    for (int j = 0; j < 64; j++)
        v[48 + j] = r->A[j];
    qsort(v, nv, sizeof *v, cmp_double);
    double pos = 0.9 * (double)(nv - 1);
    size_t lo = (size_t)pos;
    double hi = v[lo] + (pos - (double)lo) * (v[lo + 1] - v[lo]);
    ck_assert(hi > 0);
    int clipped = 0;
    for (int j = 0; j < 48; j++) {
        double want = fmin(fmax(r->B[j], -hi), hi);
        clipped += want != r->B[j];
        ck_assert_double_eq_tol(c->B[j], want, 1e-6);
    }
    for (int j = 0; j < 64; j++)
        ck_assert_double_eq_tol(c->A[j], fmin(fmax(r->A[j], -hi), hi), 1e-6);
    ck_assert_int_gt(clipped, 0);
    free(v);
    lh_adapter_free(raw);
    lh_adapter_free(cl);
    free_all(m, 2);
}
END_TEST

/* ---- sparsify on the factors: tiny cases by hand ---------------------- */

/* Two modules, one target "t" (r 1, d_in 4, d_out 2), scales 1, weights 1
 * and 4: c = (1, 4), so A is weighted by (1, 2) and B by (1, 2).
 *   A_1 = [3, -1, 2, 0.5]    -> y1 = [3, -1, 2, 0.5]
 *   A_2 = [1, 1, -2, -0.25]  -> y2 = [2, 2, -4, -0.5]
 *   B_1 = [2, 1]^T           -> y1 = [2, 1]
 *   B_2 = [-0.5, 1.5]^T      -> y2 = [-1, 3]
 * density 0.5: k = int(0.5 * 4) = 2 for A, int(0.5 * 2) = 1 for B.
 *   A: y1' = [3, 0, 2, 0]; y2' = [2, 0, -4, 0] (|2| ties at indices 0 and 1:
 *      the first in index order is kept)
 *   B: y1' = [2, 0]; y2' = [0, 3]                                       */
static void hand_modules(lh_adapter **m)
{
    const spec s[] = {{"t", 1, 4, 2, 1.0f}};
    m[0] = mk("h0", s, 1);
    m[1] = mk("h1", s, 1);
    const float a0[4] = {3, -1, 2, 0.5f}, a1[4] = {1, 1, -2, -0.25f};
    const float b0[2] = {2, 1}, b1[2] = {-0.5f, 1.5f};
    memcpy(m[0]->targets[0].A, a0, sizeof a0);
    memcpy(m[1]->targets[0].A, a1, sizeof a1);
    memcpy(m[0]->targets[0].B, b0, sizeof b0);
    memcpy(m[1]->targets[0].B, b1, sizeof b1);
}

static void expect_factors(const lh_adapter *out, const float *A, const float *B)
{
    const lh_target *t = &out->targets[0];
    ck_assert_int_eq(t->r, 1);
    for (int j = 0; j < 4; j++)
        ck_assert_msg(fabs(t->A[j] - A[j]) <= 1e-6, "A[%d] = %g, want %g", j, t->A[j], A[j]);
    for (int j = 0; j < 2; j++)
        ck_assert_msg(fabs(t->B[j] - B[j]) <= 1e-6, "B[%d] = %g, want %g", j, t->B[j], B[j]);
}

START_TEST(test_ties_hand)
{
    lh_adapter *m[2];
    hand_modules(m);
    const double w[2] = {1, 4};
    lh_merge_opts o = opts_of(LH_MERGE_TIES);
    o.density = 0.5;
    /* total: column sums A [5, 0, -2, 0] -> signs + + - +; disjoint mean of
     * the agreeing nonzeros: [(3+2)/2, 0, -4/1, 0]. B: [2, 3]. */
    lh_adapter *out = compose_ok(m, 2, w, &o);
    const float At[4] = {2.5f, 0, -4, 0}, Bt[2] = {2, 3};
    expect_factors(out, At, Bt);
    lh_adapter_free(out);
    /* frequency: column 2 has one + and one -: a tie goes to +, so 2/1 */
    o.majority_sign = LH_SIGN_FREQUENCY;
    out = compose_ok(m, 2, w, &o);
    const float Af[4] = {2.5f, 0, 2, 0};
    expect_factors(out, Af, Bt);
    lh_adapter_free(out);
    /* magnitude-prune: the plain sum of the pruned tensors */
    o.method = LH_MERGE_MAGNITUDE_PRUNE;
    out = compose_ok(m, 2, w, &o);
    const float Am[4] = {5, 0, -2, 0};
    expect_factors(out, Am, Bt);
    lh_adapter_free(out);
    /* negative weight on module 2: c = -4, A weighted by -2, B by 2:
     * A y2 = [-2, -2, 4, 0.5] -> pruned [-2, 0, 4, 0]; total [1, 0, 6, 0]:
     * signs + + + +: [3/1, 0, (2+4)/2, 0]. PEFT elects on the unweighted
     * tensors (pruned A_2 = [1, 0, -2, 0]: total [4, 0, 0, 0], all +) and
     * would give [(3 - 2)/2, 0, 2/1, 0]: opposite contributions averaged. */
    const double wn[2] = {1, -4};
    o.method = LH_MERGE_TIES;
    o.majority_sign = LH_SIGN_TOTAL;
    out = compose_ok(m, 2, wn, &o);
    const float An[4] = {3, 0, 3, 0};
    expect_factors(out, An, Bt);
    lh_adapter_free(out);
    /* PEFT parity: the election on the unweighted pruned tensors, as worked
     * out above: [(3 - 2)/2, 0, 2/1, 0]; B: unweighted B_1' = [2, 0],
     * B_2' = [0, 1.5] agree everywhere, so B is unchanged. */
    o.peft_parity = 1;
    out = compose_ok(m, 2, wn, &o);
    const float Ap[4] = {0.5f, 0, 2, 0};
    expect_factors(out, Ap, Bt);
    lh_adapter_free(out);
    free_all(m, 2);
}
END_TEST

/* PEFT parity in the svd forms: the scale enters twice, sum w_i s_i^2 B_i A_i. */
START_TEST(test_peft_parity_svd)
{
    lh_adapter *m[3];
    mixed_modules(m);
    const double w[3] = {0.9, -0.6, 1.4};
    const lh_merge_method ms[] = {LH_MERGE_SVD, LH_MERGE_MAGNITUDE_PRUNE_SVD};
    for (size_t k = 0; k < 2; k++) {
        lh_merge_opts o = opts_of(ms[k]);
        o.peft_parity = 1;
        o.rank = 3;
        lh_adapter *out = compose_ok(m, 3, w, &o);
        for (size_t t = 0; t < out->n_targets; t++) {
            const lh_target *ot = &out->targets[t];
            double *ref = calloc((size_t)ot->d_out * ot->d_in, sizeof *ref);
            for (int i = 0; i < 3; i++) {
                const lh_target *s = lh_adapter_find(m[i], ot->name);
                if (!s)
                    continue;
                const double wi[1] = {w[i] * s->scale}; /* w s, times the s in ref_sum */
                lh_adapter *one[1] = {m[i]};
                double *d = ref_sum(one, 1, wi, ot->name, ot->d_out, ot->d_in);
                for (int j = 0; j < ot->d_out * ot->d_in; j++)
                    ref[j] += d[j];
                free(d);
            }
            check_svd_target(ot, ref, 3);
            free(ref);
        }
        lh_adapter_free(out);
    }
    free_all(m, 3);
}
END_TEST

START_TEST(test_dare)
{
    /* density 1: no pruning, so dare-linear is linear and dare-ties is ties */
    lh_adapter *m[2];
    hand_modules(m);
    const double w[2] = {1, 4};
    lh_merge_opts o = opts_of(LH_MERGE_DARE_LINEAR);
    lh_adapter *out = compose_ok(m, 2, w, &o);
    const float Al[4] = {5, 1, -2, 0}, Bl[2] = {1, 4};
    expect_factors(out, Al, Bl);
    lh_adapter_free(out);
    o.method = LH_MERGE_DARE_TIES;
    out = compose_ok(m, 2, w, &o);
    /* A: y1 [3,-1,2,0.5], y2 [2,2,-4,-0.5]; total [5,1,-2,0] -> + + - +:
     * [2.5, 2/1, -4, 0.5/1]; B: y1 [2,1], y2 [-1,3]: total [1,4] -> [2, 2] */
    const float At[4] = {2.5f, 2, -4, 0.5f}, Bt[2] = {2, 2};
    expect_factors(out, At, Bt);
    lh_adapter_free(out);
    free_all(m, 2);

    /* one large module, density 0.3: every output entry is 0 or the
     * weighted input / 0.3; about 30% survive; the seed decides the mask */
    const spec s[] = {{"big", 16, 256, 64, 1.0f}};
    lh_adapter *b[1] = {mk("big", s, 1)};
    const double w1[1] = {2.25}; /* sqrt = 1.5 on both sides */
    o = opts_of(LH_MERGE_DARE_LINEAR);
    o.density = 0.3;
    o.seed = 7;
    lh_adapter *d1 = compose_ok(b, 1, w1, &o);
    lh_adapter *d2 = compose_ok(b, 1, w1, &o);
    o.seed = 8;
    lh_adapter *d3 = compose_ok(b, 1, w1, &o);
    const lh_target *t1 = &d1->targets[0], *t3 = &d3->targets[0], *src = &b[0]->targets[0];
    size_t na = 16 * 256, kept = 0, differ = 0;
    for (size_t j = 0; j < na; j++) {
        float want = (float)1.5 * src->A[j] * (float)(1.0 / 0.3);
        ck_assert(t1->A[j] == 0.0f || fabsf(t1->A[j] - want) <= 1e-6f * fabsf(want) + 1e-7f);
        kept += t1->A[j] != 0.0f;
        differ += (t1->A[j] != 0.0f) != (t3->A[j] != 0.0f);
    }
    ck_assert_int_eq(memcmp(t1->A, d2->targets[0].A, na * sizeof(float)), 0);
    ck_assert_msg(kept > 0.27 * na && kept < 0.33 * na, "kept %zu of %zu", kept, na);
    ck_assert_int_gt(differ, na / 10);
    lh_adapter_free(d1);
    lh_adapter_free(d2);
    lh_adapter_free(d3);
    free_all(b, 1);
}
END_TEST

/* ---- the -svd forms against a dense double reference ------------------ */

typedef struct { double a; size_t i; } mag;
static int cmp_mag(const void *x, const void *y)
{
    const mag *p = x, *q = y;
    if (p->a != q->a)
        return p->a < q->a ? 1 : -1; /* descending magnitude */
    return (p->i > q->i) - (p->i < q->i);
}

/* The definition in lorahub-compose(1), written out plainly: D_i = c_i B_i A_i,
 * keep the top floor(density * numel) |entries| of each (magnitude), elect
 * the sign per entry (total), average the agreeing nonzero entries (ties),
 * or sum them (magnitude-prune). */
static double *ref_sparse_dense(lh_adapter **m, size_t n, const double *w, const char *name,
                                int dout, int din, double density, int ties)
{
    size_t ne = (size_t)dout * din;
    double **D = calloc(n, sizeof *D);
    mag *ord = malloc(ne * sizeof *ord);
    for (size_t i = 0; i < n; i++) {
        const double wi[1] = {w[i]};
        lh_adapter *one[1] = {m[i]};
        if (!lh_adapter_find(m[i], name))
            continue;
        D[i] = ref_sum(one, 1, wi, name, dout, din);
        size_t k = (size_t)(density * (double)ne);
        for (size_t j = 0; j < ne; j++)
            ord[j] = (mag){fabs(D[i][j]), j};
        qsort(ord, ne, sizeof *ord, cmp_mag);
        for (size_t j = k; j < ne; j++)
            D[i][ord[j].i] = 0;
    }
    double *out = calloc(ne, sizeof *out);
    for (size_t j = 0; j < ne; j++) {
        double tot = 0, sum = 0;
        int cnt = 0;
        for (size_t i = 0; i < n; i++)
            if (D[i])
                tot += D[i][j];
        for (size_t i = 0; i < n; i++) {
            if (!D[i] || D[i][j] == 0)
                continue;
            if (!ties || (tot >= 0) == (D[i][j] > 0)) {
                sum += D[i][j];
                cnt++;
            }
        }
        out[j] = ties && cnt > 1 ? sum / cnt : sum;
    }
    for (size_t i = 0; i < n; i++)
        free(D[i]);
    free(D);
    free(ord);
    return out;
}

START_TEST(test_sparse_svd_forms)
{
    lh_adapter *m[3];
    mixed_modules(m);
    const double w[3] = {0.9, -0.6, 1.4};
    const int ks[] = {5, 4}; /* full rank of q (5x7), then a truncation */
    for (int ties = 0; ties < 2; ties++)
        for (size_t kk = 0; kk < 2; kk++) {
            lh_merge_opts o = opts_of(ties ? LH_MERGE_TIES_SVD : LH_MERGE_MAGNITUDE_PRUNE_SVD);
            o.density = 0.6;
            o.rank = ks[kk];
            lh_adapter *out = compose_ok(m, 3, w, &o);
            for (size_t t = 0; t < out->n_targets; t++) {
                const lh_target *ot = &out->targets[t];
                double *ref = ref_sparse_dense(m, 3, w, ot->name, ot->d_out, ot->d_in, 0.6, ties);
                check_svd_target(ot, ref, ks[kk]);
                free(ref);
            }
            lh_adapter_free(out);
        }
    /* density 1: magnitude-prune-svd and dare-linear-svd are svd of the
     * exact sum, the scale counted once (PEFT would give sum w s^2 B A) */
    const lh_merge_method ms[] = {LH_MERGE_MAGNITUDE_PRUNE_SVD, LH_MERGE_DARE_LINEAR_SVD};
    for (size_t i = 0; i < 2; i++) {
        lh_merge_opts o = opts_of(ms[i]);
        o.rank = 7; /* the most these shapes can give: min(d_out, d_in) of 'up' (9x7) */
        lh_adapter *out = compose_ok(m, 3, w, &o);
        for (size_t t = 0; t < out->n_targets; t++) {
            const lh_target *ot = &out->targets[t];
            double *ref = ref_sum(m, 3, w, ot->name, ot->d_out, ot->d_in);
            double *got = delta_of(ot);
            ck_assert(rel_err(got, ref, (size_t)ot->d_out * ot->d_in) <= 1e-5);
            free(ref);
            free(got);
        }
        lh_adapter_free(out);
    }
    /* dare-ties-svd at density 0.5: rerunning gives the same, the delta is
     * a rank-<=k matrix, and it differs from the unpruned sum */
    lh_merge_opts o = opts_of(LH_MERGE_DARE_TIES_SVD);
    o.density = 0.5;
    o.seed = 3;
    lh_adapter *x = compose_ok(m, 3, w, &o), *y = compose_ok(m, 3, w, &o);
    ck_assert_int_eq(memcmp(x->targets[0].A, y->targets[0].A, 5 * 7 * sizeof(float)), 0);
    lh_adapter_free(x);
    lh_adapter_free(y);
    free_all(m, 3);
}
END_TEST

/* ---- errors, names, the allocation-free path --------------------------- */

START_TEST(test_shape_mismatch)
{
    const spec s0[] = {{"model.layers.0.q_proj", 2, 8, 6, 1.0f}};
    const spec s1[] = {{"model.layers.0.q_proj", 2, 8, 5, 1.0f}};
    lh_adapter *m[2] = {mk("hub/alpha", s0, 1), mk("hub/beta.safetensors", s1, 1)};
    const double w[2] = {1, 1};
    lh_merge_opts o = opts_of(LH_MERGE_CAT);
    lh_adapter *out = NULL;
    lh_error e = {0};
    ck_assert_int_eq(lh_compose((const lh_adapter *const *)m, 2, w, &o, &out, &e), LH_ERR_SHAPE);
    ck_assert_ptr_null(out);
    ck_assert_ptr_nonnull(strstr(e.msg, "hub/alpha"));
    ck_assert_ptr_nonnull(strstr(e.msg, "hub/beta.safetensors"));
    ck_assert_ptr_nonnull(strstr(e.msg, "6x8"));
    ck_assert_ptr_nonnull(strstr(e.msg, "5x8"));
    ck_assert_ptr_nonnull(strstr(e.msg, "model.layers.0.q_proj"));
    ck_assert_ptr_null(strchr(e.msg, '\n'));
    free_all(m, 2);

    /* linear and ties need equal ranks; lorahub/cat/svd do not */
    const spec r0[] = {{"q", 2, 8, 6, 1.0f}}, r1[] = {{"q", 3, 8, 6, 1.0f}};
    lh_adapter *r[2] = {mk("r0", r0, 1), mk("r1", r1, 1)};
    o.method = LH_MERGE_LINEAR;
    ck_assert_int_eq(lh_compose((const lh_adapter *const *)r, 2, w, &o, &out, &e), LH_ERR_SHAPE);
    ck_assert_ptr_nonnull(strstr(e.msg, "rank 2 in r0"));
    ck_assert_ptr_nonnull(strstr(e.msg, "rank 3 in r1"));
    o.method = LH_MERGE_TIES;
    ck_assert_int_eq(lh_compose((const lh_adapter *const *)r, 2, w, &o, &out, &e), LH_ERR_SHAPE);
    /* a NaN weight */
    const double wn[2] = {1, NAN};
    o.method = LH_MERGE_LORAHUB;
    ck_assert_int_eq(lh_compose((const lh_adapter *const *)r, 2, wn, &o, &out, &e), LH_ERR_ARG);
    ck_assert_ptr_nonnull(strstr(e.msg, "weight 2"));
    /* option values */
    o.method = LH_MERGE_TIES;
    o.density = 0;
    lh_adapter *eq[1] = {r[0]};
    ck_assert_int_eq(lh_compose((const lh_adapter *const *)eq, 1, w, &o, &out, &e), LH_ERR_ARG);
    o.density = 1.5;
    ck_assert_int_eq(lh_compose((const lh_adapter *const *)eq, 1, w, &o, &out, &e), LH_ERR_ARG);
    o = opts_of(LH_MERGE_CAT);
    o.clamp_quantile = 0.9;
    ck_assert_int_eq(lh_compose((const lh_adapter *const *)eq, 1, w, &o, &out, &e), LH_ERR_ARG);
    ck_assert_int_eq(lh_compose((const lh_adapter *const *)eq, 0, w, NULL, &out, &e), LH_ERR_ARG);
    free_all(r, 2);
}
END_TEST

/* Every method refuses a module holding NaN or Inf, naming the module and
 * the tensor, whatever its weight: before, ties, dare-* and the -svd forms
 * wrote a finite adapter with the NaN silently dropped. */
START_TEST(test_nonfinite_inputs)
{
    const spec s[] = {{"p", 2, 6, 4, 1.0f}, {"q", 2, 6, 4, 1.0f}};
    lh_adapter *m[2] = {mk("hub/nan_A", s, 2), mk("hub/ok", s, 2)};
    lh_target *q = (lh_target *)lh_adapter_find(m[0], "q");
    q->A[3] = NAN;
    lh_nonfinite where;
    ck_assert_uint_eq(lh_adapter_nonfinite(m[0], &where), 1);
    ck_assert_uint_eq(where.target, 1);
    ck_assert_uint_eq(where.element, 3);
    ck_assert_str_eq(where.tensor, "lora_A");
    ck_assert_uint_eq(lh_adapter_nonfinite(m[1], NULL), 0);
    const double w[2] = {0.0, 1.0}; /* weight 0 does not make the input sound */
    for (int k = 0; k < LH_MERGE_COUNT; k++) {
        lh_merge_opts o = opts_of((lh_merge_method)k);
        lh_adapter *out = NULL;
        lh_error e = {0};
        lh_status st = lh_compose((const lh_adapter *const *)m, 2, w, &o, &out, &e);
        ck_assert_msg(st == LH_ERR_NUMERIC, "%s: status %d (%s)", lh_merge_method_name(o.method),
                      st, e.msg);
        ck_assert_ptr_null(out);
        ck_assert_msg(strstr(e.msg, "hub/nan_A: lora_A of 'q' holds nan at element 3"), "%s",
                      e.msg);
        ck_assert_ptr_null(strchr(e.msg, '\n'));
    }
    /* an all-Inf lora_B */
    q->A[3] = 0.5f;
    lh_target *p = (lh_target *)lh_adapter_find(m[1], "p");
    for (int j = 0; j < p->d_out * p->r; j++)
        p->B[j] = INFINITY;
    ck_assert_uint_eq(lh_adapter_nonfinite(m[1], &where), 8);
    ck_assert_uint_eq(where.n_targets, 1);
    lh_merge_opts o = opts_of(LH_MERGE_TIES_SVD);
    lh_adapter *out = NULL;
    lh_error e = {0};
    ck_assert_int_eq(lh_compose((const lh_adapter *const *)m, 2, w, &o, &out, &e), LH_ERR_NUMERIC);
    ck_assert_msg(strstr(e.msg, "hub/ok: lora_B of 'p' holds inf at element 0 (8 non-finite values"
                            " in 1 target)"), "%s", e.msg);
    /* adapt's nan-as-worst plans over such modules (and scores them worst) */
    o = opts_of(LH_MERGE_LORAHUB);
    o.allow_nonfinite = 1;
    lh_compose_plan *plan = NULL;
    ck_assert_int_eq(lh_compose_plan_new((const lh_adapter *const *)m, 2, &o, &plan, &e), LH_OK);
    lh_compose_plan_free(plan);
    /* where an SVD then fails, the message names the method and the target */
    const lh_merge_method svds[] = {LH_MERGE_SVD, LH_MERGE_TIES_SVD};
    for (int k = 0; k < 2; k++) {
        o = opts_of(svds[k]);
        o.allow_nonfinite = 1;
        const double w1[2] = {1.0, 1.0};
        ck_assert_int_eq(lh_compose((const lh_adapter *const *)m, 2, w1, &o, &out, &e),
                         LH_ERR_NUMERIC);
        char want[64];
        snprintf(want, sizeof want, "%s: target 'p': the SVD of ", lh_merge_method_name(svds[k]));
        ck_assert_msg(strstr(e.msg, want) == e.msg, "%s", e.msg);
    }
    free_all(m, 2);
}
END_TEST

/* --rank above what the inputs can give is refused, naming the limit:
 * before, --rank 100000 ran for minutes and padded zeros. */
START_TEST(test_rank_cap)
{
    lh_adapter *m[3];
    mixed_modules(m); /* q: 5x7, ranks 3+5+2; up: 9x7, ranks 2+4 */
    const double w[3] = {0.9, -0.6, 1.4};
    lh_merge_opts o = opts_of(LH_MERGE_SVD);
    lh_adapter *out = NULL;
    lh_error e = {0};
    o.rank = 7;
    ck_assert_int_eq(lh_compose((const lh_adapter *const *)m, 3, w, &o, &out, &e), LH_ERR_ARG);
    ck_assert_msg(strstr(e.msg, "svd: rank 7 is more than these modules can give: at most 6 "
                                "(target 'up', 9x7, its input ranks summed)"), "%s", e.msg);
    o.rank = 100000;
    ck_assert_int_eq(lh_compose((const lh_adapter *const *)m, 3, w, &o, &out, &e), LH_ERR_ARG);
    o.rank = 6;
    out = compose_ok(m, 3, w, &o);
    ck_assert_int_eq(out->targets[0].r, 6);
    lh_adapter_free(out);
    /* the dense forms: min(d_out, d_in) */
    o = opts_of(LH_MERGE_TIES_SVD);
    o.rank = 8;
    ck_assert_int_eq(lh_compose((const lh_adapter *const *)m, 3, w, &o, &out, &e), LH_ERR_ARG);
    ck_assert_msg(strstr(e.msg, "ties-svd: rank 8 is more than these modules can give: at most 7 "
                                "(target 'up', 9x7)"), "%s", e.msg);
    free_all(m, 3);
}
END_TEST

START_TEST(test_names)
{
    const char *want[] = {"lorahub", "linear", "cat", "svd", "ties", "dare-linear", "dare-ties",
                          "magnitude-prune", "ties-svd", "dare-linear-svd", "dare-ties-svd",
                          "magnitude-prune-svd"};
    ck_assert_int_eq(sizeof want / sizeof *want, LH_MERGE_COUNT);
    for (int m = 0; m < LH_MERGE_COUNT; m++) {
        ck_assert_str_eq(lh_merge_method_name((lh_merge_method)m), want[m]);
        lh_merge_method got;
        ck_assert_int_eq(lh_merge_method_from_name(want[m], &got), 0);
        ck_assert_int_eq(got, m);
    }
    lh_merge_method got;
    ck_assert_int_eq(lh_merge_method_from_name("dare_ties_svd", &got), 0);
    ck_assert_int_eq(got, LH_MERGE_DARE_TIES_SVD);
    ck_assert_int_ne(lh_merge_method_from_name("average", &got), 0);
    ck_assert_int_ne(lh_merge_method_from_name("svd-", &got), 0);
    ck_assert_int_ne(lh_merge_method_from_name("", &got), 0);
    ck_assert_ptr_null(lh_merge_method_name(LH_MERGE_COUNT));
    lh_compose_plan_free(NULL);
}
END_TEST

START_TEST(test_plan_reuse)
{
    lh_adapter *m[3];
    mixed_modules(m);
    const lh_merge_method ms[] = {LH_MERGE_LORAHUB, LH_MERGE_CAT, LH_MERGE_SVD};
    for (size_t k = 0; k < 3; k++) {
        lh_merge_opts o = opts_of(ms[k]);
        lh_compose_plan *p = NULL;
        lh_adapter *buf = NULL;
        lh_error e = {0};
        ck_assert_int_eq(lh_compose_plan_new((const lh_adapter *const *)m, 3, &o, &p, &e), 0);
        ck_assert_int_eq(lh_compose_alloc_output(p, &buf, &e), 0);
        for (int it = 0; it < 50; it++) {
            double w[3] = {urand() * 1.5, urand() * 1.5, it % 7 == 0 ? 0.0 : urand() * 1.5};
            ck_assert_int_eq(lh_compose_into(p, w, buf, &e), 0);
            lh_adapter *one = compose_ok(m, 3, w, &o);
            for (size_t t = 0; t < buf->n_targets; t++) {
                const lh_target *x = &buf->targets[t], *y = &one->targets[t];
                ck_assert_int_eq(memcmp(x->A, y->A, (size_t)x->r * x->d_in * sizeof(float)), 0);
                ck_assert_int_eq(memcmp(x->B, y->B, (size_t)x->d_out * x->r * sizeof(float)), 0);
            }
            if (ms[k] == LH_MERGE_CAT) {
                /* and the result is still the exact sum */
                double *ref = ref_sum(m, 3, w, "q", 5, 7);
                double *got = delta_of(lh_adapter_find(buf, "q"));
                ck_assert(rel_err(got, ref, 35) <= 1e-5);
                free(ref);
                free(got);
            }
            lh_adapter_free(one);
        }
        lh_adapter_free(buf);
        lh_compose_plan_free(p);
    }
    free_all(m, 3);
}
END_TEST

static Suite *compose_suite(void)
{
    Suite *s = suite_create("compose");
    TCase *tc = tcase_create("methods");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_lorahub_factors);
    tcase_add_test(tc, test_linear);
    tcase_add_test(tc, test_cat_exact);
    tcase_add_test(tc, test_sum_only_output);
    tcase_add_test(tc, test_one_module);
    tcase_add_test(tc, test_svd_factored);
    tcase_add_test(tc, test_svd_clamp);
    tcase_add_test(tc, test_ties_hand);
    tcase_add_test(tc, test_dare);
    tcase_add_test(tc, test_sparse_svd_forms);
    tcase_add_test(tc, test_peft_parity_svd);
    tcase_add_test(tc, test_shape_mismatch);
    tcase_add_test(tc, test_nonfinite_inputs);
    tcase_add_test(tc, test_rank_cap);
    tcase_add_test(tc, test_names);
    tcase_add_test(tc, test_plan_reuse);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(compose_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

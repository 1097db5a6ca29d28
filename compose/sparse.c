/* compose/sparse.c - the sparsify-and-merge methods: TIES, DARE (linear and
 * TIES), magnitude pruning; on the factors (PEFT's non-svd forms) and on the
 * dense deltas c_i B_i A_i followed by a rank-k SVD (the -svd forms).
 *
 * Every method works on "weighted tensors" y_i = coefficient_i * x_i:
 *   factors: A side y_i = sgn(c_i) sqrt|c_i| A_i, B side y_i = sqrt|c_i| B_i
 *   dense:   y_i = c_i B_i A_i (the scale enters once; PEFT squares it)
 * prune each y_i (top-k of |y_i| with k = floor(density * numel), or a
 * Bernoulli(density) mask rescaled by 1/density), then either add them
 * (magnitude-prune, dare-linear) or elect a sign per element from the
 * weighted y_i and average the agreeing ones (ties, dare-ties). PEFT elects
 * the sign from the unweighted tensors; with negative weights that keeps
 * elements whose weighted contributions disagree, so we elect on what is
 * actually summed (as mergekit does). */
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

uint64_t lhc_stream_seed(uint64_t seed, const char *target, size_t module, int which)
{
    /* FNV-1a of the target name, then mix everything through splitmix64 so
     * nearby seeds and module indices give unrelated streams. */
    uint64_t h = 0xcbf29ce484222325ULL;
    for (const unsigned char *s = (const unsigned char *)target; s && *s; s++)
        h = (h ^ *s) * 0x100000001b3ULL;
    uint64_t st = seed;
    uint64_t x = lhc_splitmix64(&st) ^ h;
    st = x;
    x = lhc_splitmix64(&st) ^ ((uint64_t)module * 4 + (uint64_t)which);
    st = x;
    return lhc_splitmix64(&st);
}

/* |x| as an unsigned int whose order is the order of |x| (NaN above Inf). */
static inline uint32_t abs_bits(float x)
{
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    return u & 0x7fffffffu;
}

/* Top-k by magnitude without a copy or a sort: radix select on the bits of
 * |y| from the top byte down. Leaves thr = the k-th largest |y| and
 * eq_quota = how many elements equal to thr belong to the top k (the first
 * ones in index order, so the choice is deterministic). */
void lhc_prune_magnitude_init(lhc_prune *st, const float *y, size_t numel, double density)
{
    memset(st, 0, sizeof *st);
    if (density >= 1.0) {
        st->keep_all = 1;
        return;
    }
    size_t k = (size_t)(density * (double)numel);
    if (k == 0) {
        st->thr = UINT32_MAX; /* nothing's bits reach it, and the quota is 0 */
        return;
    }
    uint32_t prefix = 0, mask = 0;
    size_t remaining = k;
    for (int shift = 24; shift >= 0; shift -= 8) {
        size_t hist[256] = {0};
        for (size_t j = 0; j < numel; j++) {
            uint32_t u = abs_bits(y[j]);
            if ((u & mask) == prefix)
                hist[(u >> shift) & 255]++;
        }
        int b = 255;
        while (b > 0 && hist[b] < remaining)
            remaining -= hist[b--];
        prefix |= (uint32_t)b << shift;
        mask |= 255u << shift;
    }
    st->thr = prefix;
    st->eq_quota = remaining;
}

void lhc_prune_random_init(lhc_prune *st, uint64_t stream, double density)
{
    memset(st, 0, sizeof *st);
    st->keep_all = density >= 1.0;
    st->rng = stream;
}

static int method_is_random(lh_merge_method m)
{
    return m == LH_MERGE_DARE_LINEAR || m == LH_MERGE_DARE_TIES ||
           m == LH_MERGE_DARE_LINEAR_SVD || m == LH_MERGE_DARE_TIES_SVD;
}

static int method_is_ties(lh_merge_method m)
{
    return m == LH_MERGE_TIES || m == LH_MERGE_DARE_TIES || m == LH_MERGE_TIES_SVD ||
           m == LH_MERGE_DARE_TIES_SVD;
}

void lhc_sparse_chunk(lh_merge_method method, lh_majority_sign sign, double density, size_t n,
                      float *const *y, lhc_prune *st, const double *unweight, size_t len,
                      float *dst)
{
    const int random = method_is_random(method);
    const float inv = (float)(1.0 / density);
    for (size_t i = 0; i < n; i++) {
        float *v = y[i];
        if (!v || st[i].keep_all)
            continue;
        if (random) {
            for (size_t j = 0; j < len; j++)
                v[j] = lhc_uniform(&st[i].rng) < density ? v[j] * inv : 0.0f;
        } else {
            const uint32_t thr = st[i].thr;
            for (size_t j = 0; j < len; j++) {
                uint32_t u = abs_bits(v[j]);
                if (u > thr)
                    continue;
                if (u == thr && st[i].eq_quota > 0) {
                    st[i].eq_quota--;
                    continue;
                }
                v[j] = 0.0f;
            }
        }
    }
    memset(dst, 0, len * sizeof *dst);
    if (!method_is_ties(method)) {
        for (size_t i = 0; i < n; i++) {
            const float *restrict v = y[i];
            if (!v)
                continue;
            for (size_t j = 0; j < len; j++)
                dst[j] += v[j];
        }
        return;
    }
    /* Elect the sign: total = sign of the sum, frequency = sign of the
     * count of signs; a tie goes to +. Then the disjoint mean: the sum of
     * the agreeing nonzero entries over their count (at least 1). */
    for (size_t j = 0; j < len; j++) {
        double tot = 0;
        for (size_t i = 0; i < n; i++) {
            if (!y[i])
                continue;
            double v = unweight ? y[i][j] * unweight[i] : y[i][j];
            if (sign == LH_SIGN_TOTAL)
                tot += v;
            else
                tot += (v > 0) - (v < 0);
        }
        const int up = tot >= 0;
        double sum = 0;
        int cnt = 0;
        for (size_t i = 0; i < n; i++) {
            if (!y[i])
                continue;
            double v = unweight ? y[i][j] * unweight[i] : y[i][j];
            if (up ? v > 0 : v < 0) {
                sum += y[i][j];
                cnt++;
            }
        }
        dst[j] = (float)(cnt > 1 ? sum / cnt : sum);
    }
}

/* Factor space: the A and B stacks handled separately. */
lh_status lhc_sparse_factored(lh_compose_plan *p, size_t t, const double *w, lh_target *o,
                              lh_error *err)
{
    const size_t n = p->n;
    const int K = p->rank, r = p->tgt_rank[t], din = o->d_in, dout = o->d_out;
    const lh_merge_opts *op = &p->o;
    const size_t na = (size_t)r * din, nb = (size_t)dout * r; /* elements of A_t, B_t */
    const size_t big = na > nb ? na : nb;
    float *ws = malloc((n + 1) * big * sizeof *ws); /* [n+1, big]: y_i, then the merge */
    float **y = calloc(n, sizeof *y);               /* [n] */
    lhc_prune *pr = calloc(n, sizeof *pr);          /* [n] */
    double *unw = calloc(n, sizeof *unw);           /* [n] 1/coefficient, for PEFT parity */
    if (!ws || !y || !pr || !unw) {
        free(ws);
        free(y);
        free(pr);
        free(unw);
        return lh_error_set(err, LH_ERR_NOMEM, "%s: out of memory merging target '%s'",
                            lh_merge_method_name(op->method), o->name);
    }
    memset(o->A, 0, (size_t)K * din * sizeof *o->A);
    memset(o->B, 0, (size_t)dout * K * sizeof *o->B);
    for (int side = 0; side < 2; side++) {
        const size_t len = side == 0 ? na : nb;
        for (size_t i = 0; i < n; i++) {
            const lh_target *s = p->src[t * n + i];
            double c = s ? w[i] * (double)s->scale : 0.0;
            y[i] = NULL;
            if (c == 0.0)
                continue; /* absent or zero weight: contributes and votes nothing */
            double coef = sqrt(fabs(c));
            if (side == 0 && c < 0)
                coef = -coef;
            unw[i] = 1.0 / coef;
            float *v = ws + i * big;
            const float *x = side == 0 ? s->A : s->B;
            for (size_t j = 0; j < len; j++)
                v[j] = (float)coef * x[j];
            y[i] = v;
            if (method_is_random(op->method))
                lhc_prune_random_init(&pr[i],
                                      lhc_stream_seed(op->seed, o->name, i,
                                                      side == 0 ? LHC_TENSOR_A : LHC_TENSOR_B),
                                      op->density);
            else
                lhc_prune_magnitude_init(&pr[i], v, len, op->density);
        }
        float *m = ws + n * big;
        lhc_sparse_chunk(op->method, op->majority_sign, op->density, n, y, pr,
                         op->peft_parity ? unw : NULL, len, m);
        if (side == 0) {
            memcpy(o->A, m, na * sizeof *m);
        } else {
            for (int row = 0; row < dout; row++)
                memcpy(o->B + (size_t)row * K, m + (size_t)row * r, (size_t)r * sizeof *m);
        }
    }
    free(ws);
    free(y);
    free(pr);
    free(unw);
    return LH_OK;
}

/* rows [r0, r1) of c B A into dst [(r1-r0), d_in], with one fixed summation
 * order so that the two passes over a delta see bit-identical values. */
static void delta_rows(const lh_target *s, float c, int r0, int r1, float *dst)
{
    const int din = s->d_in, r = s->r;
    for (int row = r0; row < r1; row++) {
        float *restrict y = dst + (size_t)(row - r0) * din;
        memset(y, 0, (size_t)din * sizeof *y);
        for (int j = 0; j < r; j++) {
            const float b = c * s->B[(size_t)row * r + j];
            const float *restrict a = s->A + (size_t)j * din;
            for (int x = 0; x < din; x++)
                y[x] += b * a[x];
        }
    }
}

/* Dense deltas: pass 1 finds each module's top-k threshold over its whole
 * delta; pass 2 rebuilds the deltas a block of rows at a time, prunes and
 * merges into one dense matrix, which then goes through the SVD. Memory:
 * the merged matrix, one delta for pass 1, and n row blocks. */
lh_status lhc_sparse_dense_svd(lh_compose_plan *p, size_t t, const double *w, lh_target *o,
                               lh_error *err)
{
    const size_t n = p->n;
    const int din = o->d_in, dout = o->d_out;
    const lh_merge_opts *op = &p->o;
    lh_merge_method fm; /* the factor-space method with the same per-element rule */
    switch (op->method) {
    case LH_MERGE_TIES_SVD: fm = LH_MERGE_TIES; break;
    case LH_MERGE_DARE_LINEAR_SVD: fm = LH_MERGE_DARE_LINEAR; break;
    case LH_MERGE_DARE_TIES_SVD: fm = LH_MERGE_DARE_TIES; break;
    default: fm = LH_MERGE_MAGNITUDE_PRUNE; break;
    }
    const size_t numel = (size_t)dout * din;
    int rows = (int)(65536 / (size_t)din); /* a block of about 256 KiB per module */
    if (rows < 1)
        rows = 1;
    if (rows > dout)
        rows = dout;
    const int need_pass1 = !method_is_random(fm) && op->density < 1.0;
    float *merged = malloc(numel * sizeof *merged);                 /* [d_out, d_in] */
    float *full = need_pass1 ? malloc(numel * sizeof *full) : NULL; /* [d_out, d_in] */
    float *blk = malloc(n * (size_t)rows * din * sizeof *blk);      /* [n, rows, d_in] */
    float **y = calloc(n, sizeof *y);                               /* [n] */
    float **yb = calloc(n, sizeof *yb);                             /* [n] */
    lhc_prune *pr = calloc(n, sizeof *pr);                          /* [n] */
    float *cs = malloc(n * sizeof *cs);                             /* [n] c_i */
    double *unw = calloc(n, sizeof *unw);                           /* [n] PEFT parity */
    lh_status st = LH_OK;
    if (!merged || (need_pass1 && !full) || !blk || !y || !yb || !pr || !cs || !unw) {
        st = lh_error_set(err, LH_ERR_NOMEM, "%s: out of memory for the %dx%d delta of '%s'",
                          lh_merge_method_name(op->method), dout, din, o->name);
        goto done;
    }
    int any = 0;
    for (size_t i = 0; i < n; i++) {
        const lh_target *s = p->src[t * n + i];
        double c = s ? w[i] * (double)s->scale : 0.0;
        if (c == 0.0)
            continue;
        /* PEFT weights s_i B_i A_i (which has the scale) by w_i s_i, and
         * elects the sign on s_i B_i A_i before weighting */
        if (op->peft_parity) {
            unw[i] = 1.0 / c;
            c *= (double)s->scale;
        }
        cs[i] = (float)c;
        any = 1;
        yb[i] = blk + i * (size_t)rows * din;
        if (method_is_random(fm)) {
            lhc_prune_random_init(&pr[i], lhc_stream_seed(op->seed, o->name, i, LHC_TENSOR_DELTA),
                                  op->density);
        } else if (need_pass1) {
            delta_rows(s, cs[i], 0, dout, full);
            lhc_prune_magnitude_init(&pr[i], full, numel, op->density);
        } else {
            pr[i].keep_all = 1;
        }
    }
    if (!any) {
        memset(o->A, 0, (size_t)p->rank * din * sizeof *o->A);
        memset(o->B, 0, (size_t)dout * p->rank * sizeof *o->B);
        goto done;
    }
    for (int r0 = 0; r0 < dout; r0 += rows) {
        int r1 = r0 + rows < dout ? r0 + rows : dout;
        for (size_t i = 0; i < n; i++) {
            y[i] = yb[i];
            if (y[i])
                delta_rows(p->src[t * n + i], cs[i], r0, r1, y[i]);
        }
        lhc_sparse_chunk(fm, op->majority_sign, op->density, n, y, pr,
                         op->peft_parity ? unw : NULL, (size_t)(r1 - r0) * din,
                         merged + (size_t)r0 * din);
    }
    free(full);
    full = NULL;
    st = lhc_dense_svd_into(merged, dout, din, p->svd_k, op->clamp_quantile, o, p->rank, err);
done:
    free(merged);
    free(full);
    free(blk);
    free(y);
    free(yb);
    free(pr);
    free(cs);
    free(unw);
    return st;
}

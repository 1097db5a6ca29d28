/* compose/svd.c - rank-k truncation of a sum of low-rank products.
 *
 * Factored path (method svd): sum_i c_i B_i A_i = Bs As with the stacked
 * factors Bs = [c_1 B_1 ... c_N B_N] [d_out, R] and As = [A_1; ...; A_N]
 * [R, d_in], R = sum r_i. With thin QRs Bs = Qb Rb and As^T = Qa Ra the sum
 * is Qb (Rb Ra^T) Qa^T; the SVD of the small core Rb Ra^T = U S V^T gives
 * the SVD of the sum: (Qb U) S (Qa V)^T. Cost O((d_out + d_in) R^2 + R^3)
 * instead of O(d_out d_in min(d_out, d_in)) for the dense matrix, which is
 * never formed. Output B' = Qb U_k S_k, A' = V_k^T Qa^T (S in B, as PEFT).
 *
 * Dense path (the -svd sparsify forms): sgesdd on the merged delta. */
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static int cmp_float(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

/* PEFT's svd_clamp: hi = quantile(cat(U S, Vh).flatten(), q) with linear
 * interpolation (torch.quantile's default) over the signed values, then
 * every entry of both factors goes through clamp(x, -hi, hi), i.e.
 * min(max(x, -hi), hi), torch's order when -hi > hi. */
lh_status lhc_clamp(float *B, int d_out, int K, float *A, int d_in, int k, double q,
                    lh_error *err)
{
    if (q <= 0.0 || k <= 0)
        return LH_OK;
    size_t nb = (size_t)d_out * k, na = (size_t)k * d_in, nv = nb + na;
    float *v = malloc(nv * sizeof *v); /* [d_out*k + k*d_in] */
    if (!v)
        return lh_error_set(err, LH_ERR_NOMEM, "svd clamp: out of memory");
    for (int row = 0; row < d_out; row++)
        memcpy(v + (size_t)row * k, B + (size_t)row * K, (size_t)k * sizeof *v);
    memcpy(v + nb, A, na * sizeof *v);
    qsort(v, nv, sizeof *v, cmp_float);
    double pos = q * (double)(nv - 1);
    size_t lo = (size_t)pos;
    double hi = v[lo];
    if (lo + 1 < nv)
        hi += (pos - (double)lo) * ((double)v[lo + 1] - (double)v[lo]);
    free(v);
    const float h = (float)hi, l = (float)-hi;
    for (int row = 0; row < d_out; row++)
        for (int j = 0; j < k; j++) {
            float *x = &B[(size_t)row * K + j];
            *x = fminf(fmaxf(*x, l), h);
        }
    for (size_t j = 0; j < na; j++)
        A[j] = fminf(fmaxf(A[j], l), h);
    return LH_OK;
}

/* LAPACK's workspace queries answer in a float: round up with a margin. */
static int lwork_of(double q)
{
    double v = ceil(q * 1.0001) + 64;
    return v > 2147483647.0 ? 2147483647 : (int)v;
}

lh_status lhc_dense_svd_into(float *dw, int d_out, int d_in, int k, double clamp, lh_target *o,
                             int K, lh_error *err)
{
    /* Row-major dw [d_out, d_in] is column-major dw^T [d_in, d_out]:
     * dw^T = U S VT gives dw = VT^T S U^T, so B' = VT^T S and A' = U^T. */
    const int m = d_in, nn = d_out, mn = m < nn ? m : nn;
    float *s = malloc((size_t)mn * sizeof *s);             /* [mn] */
    float *u = malloc((size_t)m * mn * sizeof *u);         /* [mn, d_in]: columns of U */
    float *vt = malloc((size_t)mn * nn * sizeof *vt);      /* [d_out, mn] column-major VT */
    int *iwork = malloc((size_t)8 * mn * sizeof *iwork);   /* [8 mn] */
    float *work = NULL, wq = 0;
    int info = 0, lwork = -1;
    lh_status st = LH_OK;
    if (!s || !u || !vt || !iwork)
        goto nomem;
    sgesdd_("S", &m, &nn, dw, &m, s, u, &m, vt, &mn, &wq, &lwork, iwork, &info, 1);
    lwork = lwork_of(wq);
    work = malloc((size_t)lwork * sizeof *work);
    if (!work)
        goto nomem;
    sgesdd_("S", &m, &nn, dw, &m, s, u, &m, vt, &mn, work, &lwork, iwork, &info, 1);
    if (info != 0 || !isfinite(s[0])) {
        st = lh_error_set(err, LH_ERR_NUMERIC,
                          "target '%s': the SVD of the merged %dx%d delta failed (%s)", o->name,
                          d_out, d_in, info ? "no convergence" : "non-finite values");
        goto done;
    }
    const int ke = k < mn ? k : mn;
    memset(o->A, 0, (size_t)K * d_in * sizeof *o->A);
    memset(o->B, 0, (size_t)d_out * K * sizeof *o->B);
    for (int row = 0; row < d_out; row++)
        for (int j = 0; j < ke; j++)
            o->B[(size_t)row * K + j] = s[j] * vt[j + (size_t)row * mn];
    memcpy(o->A, u, (size_t)ke * d_in * sizeof *o->A);
    st = lhc_clamp(o->B, d_out, K, o->A, d_in, ke, clamp, err);
    goto done;
nomem:
    st = lh_error_set(err, LH_ERR_NOMEM, "target '%s': out of memory for the SVD of %dx%d",
                      o->name, d_out, d_in);
done:
    free(s);
    free(u);
    free(vt);
    free(iwork);
    free(work);
    return st;
}

/* The buffers of the factored SVD of one target: dims as in lhc_svd_factored
 * (R stacked rank, pb = min(d_out, R), qa = min(d_in, R), m = min(pb, qa),
 * ke = the kept rank). */
typedef struct svd_ws {
    int dout, din, R, pb, qa, m, ke;
    float *Bs;     /* [R, d_out]: column-major stacked c_i B_i, then Qb */
    float *As;     /* [R, d_in]: column-major stacked A_i^T, then Qa */
    float *tau;    /* [pb + qa] Householder scalars of both QRs */
    double *Rb;    /* [R, pb] column-major */
    double *Ra;    /* [R, qa] column-major */
    double *M;     /* [qa, pb] column-major core Rb Ra^T */
    double *S;     /* [m] */
    double *U;     /* [m, pb] column-major */
    double *VT;    /* [qa, m] column-major */
    int *iwork;    /* [8 m] */
    float *US;     /* [ke, pb] column-major U_k S_k */
    float *VTk;    /* [ke, qa] row-major V_k^T */
    float *fwork;  /* [lwork] for the QRs and Q's */
    int lwork;
} svd_ws;

static void svd_ws_free(svd_ws *w)
{
    free(w->Bs);
    free(w->As);
    free(w->tau);
    free(w->Rb);
    free(w->Ra);
    free(w->M);
    free(w->S);
    free(w->U);
    free(w->VT);
    free(w->iwork);
    free(w->US);
    free(w->VTk);
    free(w->fwork);
}

/* 0, or -1 when out of memory (what was allocated is freed by svd_ws_free). */
static int svd_ws_alloc(svd_ws *w)
{
    const int dout = w->dout, din = w->din, R = w->R, pb = w->pb, qa = w->qa, m = w->m;
    w->Bs = malloc((size_t)dout * R * sizeof *w->Bs);
    w->As = malloc((size_t)din * R * sizeof *w->As);
    w->tau = malloc((size_t)(pb + qa) * sizeof *w->tau);
    w->Rb = calloc((size_t)pb * R, sizeof *w->Rb);
    w->Ra = calloc((size_t)qa * R, sizeof *w->Ra);
    w->M = malloc((size_t)pb * qa * sizeof *w->M);
    w->S = malloc((size_t)m * sizeof *w->S);
    w->U = malloc((size_t)pb * m * sizeof *w->U);
    w->VT = malloc((size_t)m * qa * sizeof *w->VT);
    w->iwork = malloc((size_t)8 * m * sizeof *w->iwork);
    w->US = malloc((size_t)pb * w->ke * sizeof *w->US);
    w->VTk = malloc((size_t)w->ke * qa * sizeof *w->VTk);
    return w->Bs && w->As && w->tau && w->Rb && w->Ra && w->M && w->S && w->U && w->VT &&
                   w->iwork && w->US && w->VTk
               ? 0
               : -1;
}

/* Bs = [c_1 B_1 | c_2 B_2 | ...], As = [A_1; A_2; ...] over the modules
 * with a non-zero coefficient c_i = w_i scale_i (PEFT parity: w_i scale_i^2,
 * as PEFT's svd weights s_i B_i A_i by w_i s_i). */
static void stack_factors(const lh_compose_plan *p, size_t t, const double *w, svd_ws *ws)
{
    const int twice = p->o.peft_parity, dout = ws->dout, din = ws->din;
    int off = 0;
    for (size_t i = 0; i < p->n; i++) {
        const lh_target *s = p->src[t * p->n + i];
        double c = s ? w[i] * (double)s->scale : 0.0;
        if (c == 0.0)
            continue;
        const float cf = (float)(twice ? c * (double)s->scale : c);
        for (int j = 0; j < s->r; j++) {
            float *col = ws->Bs + (size_t)(off + j) * dout;
            for (int row = 0; row < dout; row++)
                col[row] = cf * s->B[(size_t)row * s->r + j];
        }
        memcpy(ws->As + (size_t)off * din, s->A, (size_t)s->r * din * sizeof *ws->As);
        off += s->r;
    }
}

/* QR of both stacks (Bs = Qb Rb, As = Qa Ra) and the core M = Rb Ra^T.
 * Returns 0, -1 out of memory, or LAPACK's info. */
static int qr_core(svd_ws *w)
{
    int dout = w->dout, din = w->din, R = w->R, pb = w->pb, qa = w->qa, info = 0;
    /* One float workspace for the QRs and Q's: the largest query. */
    float q1 = 0, q2 = 0, q3 = 0, q4 = 0;
    int lw = -1;
    sgeqrf_(&dout, &R, w->Bs, &dout, w->tau, &q1, &lw, &info);
    sgeqrf_(&din, &R, w->As, &din, w->tau + pb, &q2, &lw, &info);
    sorgqr_(&dout, &pb, &pb, w->Bs, &dout, w->tau, &q3, &lw, &info);
    sorgqr_(&din, &qa, &qa, w->As, &din, w->tau + pb, &q4, &lw, &info);
    float qmax = q1 > q2 ? q1 : q2;
    qmax = qmax > q3 ? qmax : q3;
    qmax = qmax > q4 ? qmax : q4;
    w->lwork = lwork_of(qmax);
    w->fwork = malloc((size_t)w->lwork * sizeof *w->fwork);
    if (!w->fwork)
        return -1;
    sgeqrf_(&dout, &R, w->Bs, &dout, w->tau, w->fwork, &w->lwork, &info);
    if (!info)
        sgeqrf_(&din, &R, w->As, &din, w->tau + pb, w->fwork, &w->lwork, &info);
    if (info)
        return info;
    for (int j = 0; j < R; j++) {
        for (int i = 0; i < pb && i <= j; i++)
            w->Rb[i + (size_t)j * pb] = w->Bs[i + (size_t)j * dout];
        for (int i = 0; i < qa && i <= j; i++)
            w->Ra[i + (size_t)j * qa] = w->As[i + (size_t)j * din];
    }
    cblas_dgemm(CblasColMajor, CblasNoTrans, CblasTrans, pb, qa, R, 1.0, w->Rb, pb, w->Ra, qa, 0.0,
                w->M, pb);
    return 0;
}

lh_status lhc_svd_factored(lh_compose_plan *p, size_t t, const double *w, lh_target *o,
                           lh_error *err)
{
    const int K = p->rank, din = o->d_in, dout = o->d_out;
    memset(o->A, 0, (size_t)K * din * sizeof *o->A);
    memset(o->B, 0, (size_t)dout * K * sizeof *o->B);
    int R = 0;
    for (size_t i = 0; i < p->n; i++) {
        const lh_target *s = p->src[t * p->n + i];
        if (s && w[i] * (double)s->scale != 0.0)
            R += s->r;
    }
    if (R == 0)
        return LH_OK; /* every weight zero: the zero delta */
    svd_ws ws = {.dout = dout, .din = din, .R = R};
    ws.pb = dout < R ? dout : R;
    ws.qa = din < R ? din : R;
    ws.m = ws.pb < ws.qa ? ws.pb : ws.qa;
    ws.ke = p->svd_k < ws.m ? p->svd_k : ws.m;
    int pb = ws.pb, qa = ws.qa, m = ws.m, ke = ws.ke;
    double *dwork = NULL;
    lh_status st = LH_OK;
    int info = 0;
    if (svd_ws_alloc(&ws))
        goto nomem;
    stack_factors(p, t, w, &ws);
    info = qr_core(&ws);
    if (info < 0)
        goto nomem;
    if (info)
        goto lapack;

    double dq = 0;
    int lw = -1;
    dgesdd_("S", &pb, &qa, ws.M, &pb, ws.S, ws.U, &pb, ws.VT, &m, &dq, &lw, ws.iwork, &info, 1);
    lw = lwork_of(dq);
    dwork = malloc((size_t)lw * sizeof *dwork);
    if (!dwork)
        goto nomem;
    dgesdd_("S", &pb, &qa, ws.M, &pb, ws.S, ws.U, &pb, ws.VT, &m, dwork, &lw, ws.iwork, &info, 1);
    if (info || !isfinite(ws.S[0])) {
        st = lh_error_set(err, LH_ERR_NUMERIC,
                          "target '%s': the SVD of the %dx%d core failed (%s)", o->name, pb, qa,
                          info ? "no convergence" : "non-finite values in the modules");
        goto done;
    }
    sorgqr_(&dout, &pb, &pb, ws.Bs, &dout, ws.tau, ws.fwork, &ws.lwork, &info);
    if (!info)
        sorgqr_(&din, &qa, &qa, ws.As, &din, ws.tau + pb, ws.fwork, &ws.lwork, &info);
    if (info)
        goto lapack;

    for (int j = 0; j < ke; j++)
        for (int i = 0; i < pb; i++)
            ws.US[i + (size_t)j * pb] = (float)(ws.U[i + (size_t)j * pb] * ws.S[j]);
    for (int j = 0; j < ke; j++)
        for (int l = 0; l < qa; l++)
            ws.VTk[(size_t)j * qa + l] = (float)ws.VT[j + (size_t)l * m];
    /* B' [d_out, ke] (row stride K) = Qb US; A' [ke, d_in] = VTk Qa^T. */
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasTrans, dout, ke, pb, 1.0f, ws.Bs, dout, ws.US, pb,
                0.0f, o->B, K);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, ke, din, qa, 1.0f, ws.VTk, qa, ws.As,
                din, 0.0f, o->A, din);
    st = lhc_clamp(o->B, dout, K, o->A, din, ke, p->o.clamp_quantile, err);
    goto done;
lapack:
    st = lh_error_set(err, LH_ERR_NUMERIC, "target '%s': LAPACK QR failed (info %d)", o->name,
                      info);
    goto done;
nomem:
    st = lh_error_set(err, LH_ERR_NOMEM, "target '%s': out of memory for the rank-%d SVD",
                      o->name, R);
done:
    svd_ws_free(&ws);
    free(dwork);
    return st;
}

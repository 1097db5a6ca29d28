/* adapt/optim/cmaes.c - CMA-ES, written from Hansen's tutorial ("The CMA Evolution
 * Strategy: A Tutorial", arXiv:1604.00772) with the safeguards of the
 * reference implementations (c-cmaes, pycma's purecma).
 *
 * - (mu/mu_w, lambda) selection, lambda = 4 + floor(3 ln n), mu =
 *   floor(lambda/2), weights ln((lambda+1)/2) - ln i, cumulative step-size
 *   adaptation, rank-one + rank-mu covariance update with hsig stalling.
 *   No active (negative-weight) update: it is the "vanilla" tutorial
 *   algorithm, which keeps C positive definite by construction.
 * - The whole population is ONE objective call (k = lambda), so a backend
 *   can score all candidates in one batched forward pass.
 * - Eigendecomposition of C through LAPACK dsyevd_ (OpenBLAS), done lazily
 *   every lambda/(c1+cmu)/n/10 evaluations as in purecmaes.m; C is
 *   symmetrized first.
 * - Bounds by BOUNDARY TRANSFORMATION, not repair: the search runs in an
 *   unbounded genotype space and every sample is mapped into the box by the
 *   piecewise linear/quadratic map of c-cmaes (identity on the interior
 *   [lb + al, ub - au], al = min((ub-lb)/2, (1+|lb|)/20)). The objective
 *   only ever sees in-box points, the map is continuous and smooth, and
 *   the distribution update stays unbiased in the interior.
 * - Safeguards: flat fitness (best == median-ish) -> sigma *=
 *   exp(0.2 + cs/ds); condition of C > 1e14 or a failed/indefinite
 *   eigendecomposition -> stop ("conditioncov"/"eigen"); tolfun 1e-12 over
 *   the best-f history of 10 + ceil(30n/lambda) generations; tolx
 *   1e-11*sigma0; tolupx 1e3*sigma0 (divergence, e.g. a flat objective);
 *   noeffectaxis / noeffectcoord.
 * - IPOP restarts (Auger & Hansen 2005): after a convergence stop, if
 *   opts->restarts allows and budget remains, restart from a uniform random
 *   point with lambda doubled and sigma reset.
 * - All randomness from adapt/optim/rng.c seeded with opts->seed: the same seed
 *   gives the same trajectory on every machine (assuming OpenBLAS's dsyevd
 *   is itself deterministic for a given build). */
#include "internal.h"
#include "rng.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* LAPACK, Fortran ABI: hidden string-length arguments are size_t since
 * gfortran 8 (Debian's OpenBLAS has no LAPACKE). */
extern void dsyevd_(const char *jobz, const char *uplo, const int *n, double *a, const int *lda,
                    double *w, double *work, const int *lwork, int *iwork, const int *liwork,
                    int *info, size_t jobz_len, size_t uplo_len);

#define CMA_MAX_COND 1e14
#define CMA_TOLFUN 1e-12
#define CMA_TOLX_REL 1e-11
#define CMA_TOLUPX_REL 1e3

void lh_cmaes_params_init(lh_cmaes_params *p, int n, int lambda, double *w)
{
    double dn = n;
    p->lambda = lambda > 0 ? lambda : 4 + (int)floor(3.0 * log(dn));
    p->mu = p->lambda / 2;
    double sum = 0, sum2 = 0;
    for (int i = 0; i < p->mu; i++) {
        double wi = log((p->lambda + 1) / 2.0) - log(i + 1.0);
        sum += wi;
        sum2 += wi * wi;
        if (w)
            w[i] = wi;
    }
    if (w)
        for (int i = 0; i < p->mu; i++)
            w[i] /= sum;
    p->mueff = sum * sum / sum2;
    double me = p->mueff;
    p->cs = (me + 2) / (dn + me + 5);
    p->ds = 1 + 2 * fmax(0.0, sqrt((me - 1) / (dn + 1)) - 1) + p->cs;
    p->cc = (4 + me / dn) / (dn + 4 + 2 * me / dn);
    p->c1 = 2 / ((dn + 1.3) * (dn + 1.3) + me);
    p->cmu = fmin(1 - p->c1, 2 * (me - 2 + 1 / me) / ((dn + 2) * (dn + 2) + me));
    p->chin = sqrt(dn) * (1 - 1 / (4 * dn) + 1 / (21 * dn * dn));
}

static void bound_widths(double lb, double ub, double *al, double *au)
{
    double half = 0.5 * (ub - lb);
    *al = fmin(half, (1 + fabs(lb)) / 20);
    *au = fmin(half, (1 + fabs(ub)) / 20);
}

double lh_cmaes_bound_map(double lb, double ub, double y)
{
    double al, au;
    bound_widths(lb, ub, &al, &au);
    double xlow = lb - 2 * al - 0.5 * (ub - lb);
    double xup = ub + 2 * au + 0.5 * (ub - lb);
    double r = 2 * (ub - lb + al + au); /* period of the folded map */
    if (!isfinite(y))
        return 0.5 * (lb + ub);
    if (y < xlow)
        y += r * (1 + floor((xlow - y) / r));
    if (y > xup)
        y -= r * (1 + floor((y - xup) / r));
    if (y < lb - al)
        y += 2 * (lb - al - y);
    if (y > ub + au)
        y -= 2 * (y - ub - au);
    if (y < lb + al)
        y = lb + (y - (lb - al)) * (y - (lb - al)) / (4 * al);
    else if (y > ub - au)
        y = ub - (y - (ub + au)) * (y - (ub + au)) / (4 * au);
    /* Rounding in the quadratic pieces must not leave the box. */
    return y < lb ? lb : y > ub ? ub : y;
}

double lh_cmaes_bound_unmap(double lb, double ub, double x)
{
    double al, au;
    bound_widths(lb, ub, &al, &au);
    if (x < lb)
        x = lb;
    if (x > ub)
        x = ub;
    if (x < lb + al)
        return lb - al + 2 * sqrt(al * (x - lb));
    if (x > ub - au)
        return ub + au - 2 * sqrt(au * (ub - x));
    return x;
}

typedef struct cma {
    int n;
    lh_cmaes_params p;
    double *w;      /* [mu] recombination weights, sum 1 */
    double sigma, sigma0;
    double *m;      /* [n] mean, genotype space */
    double *mold;   /* [n] */
    double *ps;     /* [n] conjugate evolution path */
    double *pc;     /* [n] evolution path */
    double *C;      /* [n, n] covariance, upper triangle authoritative */
    double *B;      /* [n, n] column-major eigenvectors: B[i + j*n] = row i of vector j */
    double *D;      /* [n] sqrt of the eigenvalues */
    double *ev;     /* [n] eigenvalues from dsyevd */
    double *A;      /* [n, n] dsyevd in/out */
    double *work;   /* [lwork] */
    int *iwork;     /* [liwork] */
    int lwork, liwork;
    double *arz;    /* [lambda, n] standard normal samples */
    double *ary;    /* [lambda, n] B D z */
    double *arx;    /* [lambda, n] genotypes m + sigma y */
    double *arp;    /* [lambda, n] phenotypes (in the box), what is evaluated */
    double *f;      /* [lambda] */
    int *idx;       /* [lambda] ranking */
    double *tmp;    /* [n] */
    double *hist;   /* [hist_cap] best f of recent generations, ring buffer */
    int hist_cap, hist_count, hist_pos;
} cma;

static void cma_free(cma *c)
{
    if (!c)
        return;
    free(c->w);
    free(c->m);
    free(c->mold);
    free(c->ps);
    free(c->pc);
    free(c->C);
    free(c->B);
    free(c->D);
    free(c->ev);
    free(c->A);
    free(c->work);
    free(c->iwork);
    free(c->arz);
    free(c->ary);
    free(c->arx);
    free(c->arp);
    free(c->f);
    free(c->idx);
    free(c->tmp);
    free(c->hist);
    memset(c, 0, sizeof *c);
}

static lh_status cma_alloc(cma *c, int n, int lambda, lh_error *err)
{
    memset(c, 0, sizeof *c);
    c->n = n;
    lh_cmaes_params_init(&c->p, n, lambda, NULL);
    size_t nn = (size_t)n * (size_t)n, ln = (size_t)c->p.lambda * (size_t)n;
    c->hist_cap = 10 + (int)ceil(30.0 * n / c->p.lambda);
    c->w = malloc((size_t)c->p.mu * sizeof *c->w);
    c->m = malloc((size_t)n * sizeof *c->m);
    c->mold = malloc((size_t)n * sizeof *c->mold);
    c->ps = calloc((size_t)n, sizeof *c->ps);
    c->pc = calloc((size_t)n, sizeof *c->pc);
    c->C = calloc(nn, sizeof *c->C);
    c->B = calloc(nn, sizeof *c->B);
    c->D = malloc((size_t)n * sizeof *c->D);
    c->ev = malloc((size_t)n * sizeof *c->ev);
    c->A = malloc(nn * sizeof *c->A);
    c->arz = malloc(ln * sizeof *c->arz);
    c->ary = malloc(ln * sizeof *c->ary);
    c->arx = malloc(ln * sizeof *c->arx);
    c->arp = malloc(ln * sizeof *c->arp);
    c->f = malloc((size_t)c->p.lambda * sizeof *c->f);
    c->idx = malloc((size_t)c->p.lambda * sizeof *c->idx);
    c->tmp = malloc((size_t)n * sizeof *c->tmp);
    c->hist = malloc((size_t)c->hist_cap * sizeof *c->hist);
    if (!c->w || !c->m || !c->mold || !c->ps || !c->pc || !c->C || !c->B || !c->D || !c->ev ||
        !c->A || !c->arz || !c->ary || !c->arx || !c->arp || !c->f || !c->idx || !c->tmp ||
        !c->hist) {
        cma_free(c);
        return lh_error_set(err, LH_ERR_NOMEM,
                            "optimizer cmaes: out of memory (n = %d, lambda = %d)", n, lambda);
    }
    lh_cmaes_params_init(&c->p, n, lambda, c->w);
    for (int i = 0; i < n; i++) {
        c->C[(size_t)i * n + i] = 1.0;
        c->B[(size_t)i * n + i] = 1.0;
        c->D[i] = 1.0;
    }
    /* Workspace query (lwork = liwork = -1). */
    int info = 0, lw = -1, liw = -1, iw = 0;
    double wq = 0;
    dsyevd_("V", "U", &n, c->A, &n, c->ev, &wq, &lw, &iw, &liw, &info, 1, 1);
    if (info != 0 || !(wq >= 1) || iw < 1) {
        cma_free(c);
        return lh_error_set(err, LH_ERR_NUMERIC,
                            "optimizer cmaes: LAPACK dsyevd workspace query failed (info %d)", info);
    }
    c->lwork = (int)wq;
    c->liwork = iw;
    c->work = malloc((size_t)c->lwork * sizeof *c->work);
    c->iwork = malloc((size_t)c->liwork * sizeof *c->iwork);
    if (!c->work || !c->iwork) {
        cma_free(c);
        return lh_error_set(err, LH_ERR_NOMEM, "optimizer cmaes: out of memory");
    }
    return LH_OK;
}

/* Rank by f, ties by index, so the order never depends on the sort
 * algorithm (qsort is not stable). Insertion sort: lambda is small. */
static void rank(const double *f, int *idx, int lambda)
{
    for (int i = 0; i < lambda; i++)
        idx[i] = i;
    for (int i = 1; i < lambda; i++) {
        int v = idx[i], j = i - 1;
        while (j >= 0 && (f[idx[j]] > f[v] || (f[idx[j]] == f[v] && idx[j] > v))) {
            idx[j + 1] = idx[j];
            j--;
        }
        idx[j + 1] = v;
    }
}

/* Eigendecomposition C = B diag(D^2) B'. Returns NULL on success or the
 * stop reason. */
static const char *cma_eigen(cma *c)
{
    int n = c->n;
    /* Symmetrize: only the upper triangle is updated, mirror it. */
    for (int i = 0; i < n; i++)
        for (int j = i + 1; j < n; j++)
            c->C[(size_t)j * n + i] = c->C[(size_t)i * n + j];
    memcpy(c->A, c->C, (size_t)n * (size_t)n * sizeof *c->A);
    int info = 0;
    dsyevd_("V", "U", &n, c->A, &n, c->ev, c->work, &c->lwork, c->iwork, &c->liwork, &info, 1,
            1);
    if (info != 0)
        return "eigen";
    double lo = c->ev[0], hi = c->ev[n - 1]; /* ascending */
    if (!(lo > 0) || !isfinite(hi))
        return "eigen";
    if (hi / lo > CMA_MAX_COND)
        return "conditioncov";
    /* dsyevd returns eigenvectors as the columns of a column-major
     * matrix; A (symmetric input) is already in that layout. */
    memcpy(c->B, c->A, (size_t)n * (size_t)n * sizeof *c->B);
    for (int i = 0; i < n; i++)
        c->D[i] = sqrt(c->ev[i]);
    return NULL;
}

/* Sample lambda points: z ~ N(0, I), y = B D z, x = m + sigma y, and
 * their phenotypes in the box (what the objective sees). */
static void cma_sample(cma *c, const lh_optim_opts *o, lh_rng *rng)
{
    int n = c->n;
    for (int k = 0; k < c->p.lambda; k++) {
        double *z = c->arz + (size_t)k * n, *y = c->ary + (size_t)k * n;
        double *x = c->arx + (size_t)k * n, *ph = c->arp + (size_t)k * n;
        for (int i = 0; i < n; i++)
            z[i] = lh_rng_normal(rng);
        for (int j = 0; j < n; j++)
            c->tmp[j] = c->D[j] * z[j];
        for (int i = 0; i < n; i++) {
            double s = 0;
            for (int j = 0; j < n; j++)
                s += c->B[i + (size_t)j * n] * c->tmp[j];
            y[i] = s;
            x[i] = c->m[i] + c->sigma * s;
            ph[i] = lh_cmaes_bound_map(o->lower, o->upper, x[i]);
        }
    }
}

/* The distribution update of generation gen from the ranked population:
 * mean, evolution paths, covariance and step size. */
static void cma_update(cma *c, int gen)
{
    int n = c->n, lambda = c->p.lambda, mu = c->p.mu;
    const lh_cmaes_params *p = &c->p;
    /* Mean, and the weighted steps in z and y space. */
    memcpy(c->mold, c->m, (size_t)n * sizeof *c->m);
    double *zw = c->tmp;
    for (int i = 0; i < n; i++) {
        double sm = 0, sz = 0;
        for (int r = 0; r < mu; r++) {
            size_t k = (size_t)c->idx[r] * n;
            sm += c->w[r] * c->arx[k + i];
            sz += c->w[r] * c->arz[k + i];
        }
        c->m[i] = sm;
        zw[i] = sz;
    }
    /* ps = (1-cs) ps + sqrt(cs(2-cs)mueff) C^-1/2 yw, and C^-1/2 yw =
     * B zw exactly, because every y_k = B D z_k with the B, D used for
     * sampling this generation. */
    double a = sqrt(p->cs * (2 - p->cs) * p->mueff), psn = 0;
    for (int i = 0; i < n; i++) {
        double s = 0;
        for (int j = 0; j < n; j++)
            s += c->B[i + (size_t)j * n] * zw[j];
        c->ps[i] = (1 - p->cs) * c->ps[i] + a * s;
        psn += c->ps[i] * c->ps[i];
    }
    psn = sqrt(psn);
    double hsig_den = sqrt(1 - pow(1 - p->cs, 2.0 * gen));
    int hsig = psn / hsig_den / p->chin < 1.4 + 2.0 / (n + 1);
    double ac = hsig ? sqrt(p->cc * (2 - p->cc) * p->mueff) : 0.0;
    for (int i = 0; i < n; i++) {
        double yw = (c->m[i] - c->mold[i]) / c->sigma;
        c->pc[i] = (1 - p->cc) * c->pc[i] + ac * yw;
    }
    /* C = (1 - c1a - cmu) C + c1 pc pc' + cmu sum w y y', where c1a
     * folds in the variance lost when hsig stalls pc (tutorial eq. 47). */
    double c1a = p->c1 * (1 - (1 - hsig) * p->cc * (2 - p->cc));
    double keep = 1 - c1a - p->cmu;
    for (int i = 0; i < n; i++)
        for (int j = i; j < n; j++) {
            double rmu = 0;
            for (int r = 0; r < mu; r++) {
                const double *y = c->ary + (size_t)c->idx[r] * n;
                rmu += c->w[r] * y[i] * y[j];
            }
            size_t ij = (size_t)i * n + j;
            c->C[ij] = keep * c->C[ij] + p->c1 * c->pc[i] * c->pc[j] + p->cmu * rmu;
        }
    /* Step size; the exponent is capped so one wild generation cannot
     * overflow sigma. */
    c->sigma *= exp(fmin(1.0, (p->cs / p->ds) * (psn / p->chin - 1)));
    /* Flat fitness: best equals a near-median value, the ranking says
     * nothing; widen the search (c-cmaes). */
    double fbest = c->f[c->idx[0]];
    int mid = lambda / 2 < lambda - 1 ? lambda / 2 : lambda - 1;
    if (fbest == c->f[c->idx[mid]])
        c->sigma *= exp(0.2 + p->cs / p->ds);
}

/* The stop tests after generation gen (best value fbest): the reason, or
 * NULL to go on. */
static const char *cma_stop(cma *c, int gen, double fbest)
{
    int n = c->n;
    c->hist[c->hist_pos] = fbest;
    c->hist_pos = (c->hist_pos + 1) % c->hist_cap;
    if (c->hist_count < c->hist_cap)
        c->hist_count++;
    if (c->hist_count == c->hist_cap) {
        double hmin = c->hist[0], hmax = c->hist[0];
        for (int i = 1; i < c->hist_cap; i++) {
            hmin = fmin(hmin, c->hist[i]);
            hmax = fmax(hmax, c->hist[i]);
        }
        double spread = c->f[c->idx[c->p.lambda - 1]] - fbest;
        if (hmax - hmin < CMA_TOLFUN && spread < CMA_TOLFUN)
            return "tolfun";
    }
    double maxd = 0, maxpc = 0, maxsd = 0;
    for (int i = 0; i < n; i++) {
        maxd = fmax(maxd, c->D[i]);
        maxpc = fmax(maxpc, fabs(c->pc[i]));
        maxsd = fmax(maxsd, sqrt(c->C[(size_t)i * n + i]));
    }
    if (!isfinite(c->sigma) || !isfinite(maxd))
        return "numeric";
    if (c->sigma * maxsd < CMA_TOLX_REL * c->sigma0 && c->sigma * maxpc < CMA_TOLX_REL * c->sigma0)
        return "tolx";
    if (c->sigma * maxd > CMA_TOLUPX_REL * c->sigma0)
        return "tolupx";
    /* A step of 0.1 sigma along a principal axis, or 0.2 sigma in a
     * coordinate, no longer changes the mean: precision is exhausted. */
    int ax = gen % n, noeff = 1;
    for (int i = 0; i < n && noeff; i++)
        noeff = c->m[i] == c->m[i] + 0.1 * c->sigma * c->D[ax] * c->B[i + (size_t)ax * n];
    if (noeff)
        return "noeffectaxis";
    for (int i = 0; i < n; i++)
        if (c->m[i] == c->m[i] + 0.2 * c->sigma * sqrt(c->C[(size_t)i * n + i]))
            return "noeffectcoord";
    return NULL;
}

/* One CMA-ES run from genotype mean m0 until a stop. Returns LH_OK with
 * *reason set, or an error (objective error: g->status). */
static lh_status cma_run(cma *c, const lh_optim_opts *o, lh_rng *rng, lh_optim_guard *g,
                         const char **reason)
{
    int lambda = c->p.lambda;
    long long evals = 0, eigen_evals = 0;
    int gen = 0;
    for (;;) {
        if (lh_guard_left(g) <= 0) {
            *reason = "budget";
            return LH_OK;
        }
        cma_sample(c, o, rng);
        int done = 0;
        lh_status st = lh_guard_eval(g, c->arp, lambda, c->f, &done);
        if (st != LH_OK)
            return st;
        if (done < lambda) {
            *reason = "budget";
            return LH_OK;
        }
        evals += lambda;
        gen++;
        rank(c->f, c->idx, lambda);
        /* fbest before the update: the flat-fitness test and the history
         * use this generation's values, which the update does not touch */
        double fbest = c->f[c->idx[0]];
        cma_update(c, gen);
        if ((double)(evals - eigen_evals) > lambda / (c->p.c1 + c->p.cmu) / c->n / 10.0) {
            eigen_evals = evals;
            const char *why = cma_eigen(c);
            if (why) {
                *reason = why;
                return LH_OK;
            }
        }
        const char *why = cma_stop(c, gen, fbest);
        if (why) {
            *reason = why;
            return LH_OK;
        }
    }
}

lh_status lh_cmaes_run(const lh_optim_opts *o, const double *x0, double step, lh_optim_guard *g,
                       char *stop, lh_error *err)
{
    int n = o->n;
    lh_rng rng;
    lh_rng_seed(&rng, o->seed);
    int lambda = o->popsize > 0 ? o->popsize : 4 + (int)floor(3.0 * log((double)n));
    const char *reason = "budget";
    lh_status st = LH_OK;
    for (int run = 0; run <= o->restarts; run++) {
        /* A population larger than the budget left is only sampled up to
         * what can be evaluated; capping lambda there draws exactly the
         * same points (same RNG order) without allocating the rest. */
        int left = lh_guard_left(g);
        int lam = lambda <= left ? lambda : (left > 2 ? left : 2);
        cma c;
        st = cma_alloc(&c, n, lam, err);
        if (st != LH_OK)
            return st;
        c.sigma = c.sigma0 = step;
        for (int i = 0; i < n; i++) {
            /* Restarts start from a uniform random point (IPOP). */
            double xi = run == 0 ? x0[i] : o->lower + (o->upper - o->lower) * lh_rng_uniform(&rng);
            c.m[i] = lh_cmaes_bound_unmap(o->lower, o->upper, xi);
        }
        st = cma_run(&c, o, &rng, g, &reason);
        cma_free(&c);
        if (st != LH_OK || lh_guard_left(g) <= 0)
            break;
        if (lambda > 1000000 / 2)
            break;
        lambda *= 2;
    }
    snprintf(stop, 64, "%s", reason);
    return st;
}

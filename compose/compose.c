/* compose/compose.c - method names, the plan, and the methods whose output
 * is a weighted sum or concatenation of the factors (lorahub, linear, cat).
 *
 * lh_compose_into is ADAPT's inner loop: for these three methods it only
 * walks the plan's per-target source pointers and runs saxpy-style loops over
 * preallocated buffers; it allocates nothing. */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "internal.h"

static const char *const method_names[LH_MERGE_COUNT] = {
    [LH_MERGE_LORAHUB] = "lorahub",
    [LH_MERGE_LINEAR] = "linear",
    [LH_MERGE_CAT] = "cat",
    [LH_MERGE_SVD] = "svd",
    [LH_MERGE_TIES] = "ties",
    [LH_MERGE_DARE_LINEAR] = "dare-linear",
    [LH_MERGE_DARE_TIES] = "dare-ties",
    [LH_MERGE_MAGNITUDE_PRUNE] = "magnitude-prune",
    [LH_MERGE_TIES_SVD] = "ties-svd",
    [LH_MERGE_DARE_LINEAR_SVD] = "dare-linear-svd",
    [LH_MERGE_DARE_TIES_SVD] = "dare-ties-svd",
    [LH_MERGE_MAGNITUDE_PRUNE_SVD] = "magnitude-prune-svd",
};

void lh_merge_opts_default(lh_merge_opts *o)
{
    if (!o)
        return;
    memset(o, 0, sizeof *o);
    o->method = LH_MERGE_LORAHUB;
    o->rank = 0;
    o->density = 1.0;
    o->majority_sign = LH_SIGN_TOTAL;
    o->seed = 0;
    o->clamp_quantile = 0.0;
}

const char *lh_merge_method_name(lh_merge_method m)
{
    if ((int)m < 0 || m >= LH_MERGE_COUNT)
        return NULL;
    return method_names[m];
}

/* PEFT spells the names with '_' (dare_linear, ties_svd): accept both. */
int lh_merge_method_from_name(const char *name, lh_merge_method *out)
{
    if (!name || !out)
        return -1;
    for (int m = 0; m < LH_MERGE_COUNT; m++) {
        const char *a = method_names[m], *b = name;
        while (*a && (*a == *b || (*a == '-' && *b == '_')))
            a++, b++;
        if (!*a && !*b) {
            *out = (lh_merge_method)m;
            return 0;
        }
    }
    return -1;
}

static int method_is_svd(lh_merge_method m)
{
    return m == LH_MERGE_SVD || m >= LH_MERGE_TIES_SVD;
}

/* linear and the sparsify methods on the factors add A_i and B_i
 * elementwise, so each target needs one rank across modules. */
static int method_needs_equal_ranks(lh_merge_method m)
{
    return m == LH_MERGE_LINEAR || (m >= LH_MERGE_TIES && m <= LH_MERGE_MAGNITUDE_PRUNE);
}

static int method_uses_density(lh_merge_method m)
{
    return (m >= LH_MERGE_TIES && m <= LH_MERGE_MAGNITUDE_PRUNE) || m >= LH_MERGE_TIES_SVD;
}

const char *lhc_mod_label(const lh_compose_plan *p, size_t i, char *buf, size_t len)
{
    const lh_adapter *a = p->mods[i];
    if (a->path && *a->path)
        return a->path;
    if (a->name && *a->name)
        return a->name;
    snprintf(buf, len, "module #%zu", i + 1);
    return buf;
}

void lh_compose_plan_free(lh_compose_plan *p)
{
    if (!p)
        return;
    free(p->mods);
    free(p->shapes);
    free(p->src);
    free(p->offset);
    free(p->tgt_rank);
    free(p->coef);
    free(p);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static lh_status check_opts(const lh_merge_opts *o, lh_error *err)
{
    if ((int)o->method < 0 || o->method >= LH_MERGE_COUNT)
        return lh_error_set(err, LH_ERR_ARG, "unknown merge method %d", (int)o->method);
    if (o->rank < 0)
        return lh_error_set(err, LH_ERR_ARG, "rank %d is negative", o->rank);
    if (method_uses_density(o->method) && !(o->density > 0.0 && o->density <= 1.0))
        return lh_error_set(err, LH_ERR_ARG, "density %g is not in (0, 1]", o->density);
    if (o->majority_sign != LH_SIGN_TOTAL && o->majority_sign != LH_SIGN_FREQUENCY)
        return lh_error_set(err, LH_ERR_ARG, "unknown majority sign method %d",
                            (int)o->majority_sign);
    if (!(o->clamp_quantile >= 0.0 && o->clamp_quantile <= 1.0))
        return lh_error_set(err, LH_ERR_ARG, "clamp quantile %g is not in [0, 1]",
                            o->clamp_quantile);
    if (o->clamp_quantile > 0.0 && !method_is_svd(o->method))
        return lh_error_set(err, LH_ERR_ARG, "clamp applies to the svd methods only, not %s",
                            method_names[o->method]);
    return LH_OK;
}

/* Every method refuses NaN and Inf in its inputs: some would carry them to
 * the output, others (TIES, DARE, the SVD forms) would silently drop or
 * smear them into a finite but meaningless adapter. */
static lh_status check_finite(const lh_compose_plan *p, lh_error *err)
{
    for (size_t i = 0; i < p->n; i++) {
        lh_nonfinite w;
        if (!lh_adapter_nonfinite(p->mods[i], &w))
            continue;
        char lb[32];
        return lh_error_set(err, LH_ERR_NUMERIC,
                            "%s: %s of '%s' holds %g at element %zu (%zu non-finite value%s in "
                            "%zu target%s): refusing to merge it",
                            lhc_mod_label(p, i, lb, sizeof lb), w.tensor,
                            p->mods[i]->targets[w.target].name, (double)w.value, w.element,
                            w.count, w.count == 1 ? "" : "s", w.n_targets,
                            w.n_targets == 1 ? "" : "s");
    }
    return LH_OK;
}

/* The largest rank an svd form's output can use: per target the rank of
 * its delta is at most min(d_out, d_in), and for the factored svd also the
 * sum of the input ranks. Asking for more only pads zeros (and costs time:
 * --rank 100000 ran for minutes), so it is refused, naming the limit. */
static lh_status check_rank_cap(const lh_compose_plan *p, int rank, lh_error *err)
{
    long cap = 0;
    size_t at = 0;
    for (size_t t = 0; t < p->n_targets; t++) {
        long c = p->shapes[t].d_in < p->shapes[t].d_out ? p->shapes[t].d_in : p->shapes[t].d_out;
        if (p->o.method == LH_MERGE_SVD) {
            long R = 0;
            for (size_t i = 0; i < p->n; i++)
                if (p->src[t * p->n + i])
                    R += p->src[t * p->n + i]->r;
            c = R < c ? R : c;
        }
        if (c > cap) {
            cap = c;
            at = t;
        }
    }
    if (rank <= cap)
        return LH_OK;
    return lh_error_set(err, LH_ERR_ARG,
                        "%s: rank %d is more than these modules can give: at most %ld (target "
                        "'%s', %dx%d%s); ask for %ld or less",
                        method_names[p->o.method], rank, cap, p->shapes[at].name,
                        p->shapes[at].d_out, p->shapes[at].d_in,
                        p->o.method == LH_MERGE_SVD ? ", its input ranks summed" : "", cap);
}

/* Modules for one base model agree on fan_in_fan_out (the layout of W). */
static lh_status check_layouts(const lh_compose_plan *p, lh_error *err)
{
    char lb1[32], lb2[32];
    const lh_adapter *const *mods = p->mods;
    for (size_t i = 1; i < p->n; i++)
        if (!!mods[i]->fan_in_fan_out != !!mods[0]->fan_in_fan_out)
            return lh_error_set(err, LH_ERR_SHAPE,
                                "%s has fan_in_fan_out %s but %s has %s: modules for different "
                                "base model layouts",
                                lhc_mod_label(p, 0, lb1, sizeof lb1),
                                mods[0]->fan_in_fan_out ? "true" : "false",
                                lhc_mod_label(p, i, lb2, sizeof lb2),
                                mods[i]->fan_in_fan_out ? "true" : "false");
    return LH_OK;
}

/* The union of target names into names [total], sorted (strcmp) like
 * every adapter's, duplicates dropped: *nt of them. */
static lh_status union_of_names(const lh_compose_plan *p, const char **names, size_t total,
                                size_t *nt, lh_error *err)
{
    char lb[32];
    size_t k = 0;
    for (size_t i = 0; i < p->n; i++)
        for (size_t j = 0; j < p->mods[i]->n_targets; j++) {
            const lh_target *t = &p->mods[i]->targets[j];
            if (!t->name)
                return lh_error_set(err, LH_ERR_ARG, "%s: target #%zu has no name",
                                    lhc_mod_label(p, i, lb, sizeof lb), j + 1);
            names[k++] = t->name;
        }
    qsort(names, total, sizeof *names, cmp_str);
    *nt = 0;
    for (size_t j = 0; j < total; j++)
        if (*nt == 0 || strcmp(names[*nt - 1], names[j]) != 0)
            names[(*nt)++] = names[j];
    if (*nt == 0)
        return lh_error_set(err, LH_ERR_ARG, "compose: the modules have no targets");
    return LH_OK;
}

/* Module i's tg as the plan's target t: its shape is checked against the
 * module that first gave t (first [n_targets], -1 until one did). */
static lh_status place_target(lh_compose_plan *p, int *first, size_t t, size_t i,
                              const lh_target *tg, lh_error *err)
{
    char lb1[32], lb2[32];
    size_t n = p->n;
    const char *mi = lhc_mod_label(p, i, lb1, sizeof lb1);
    if (tg->r < 1 || tg->d_in < 1 || tg->d_out < 1 || !tg->A || !tg->B)
        return lh_error_set(err, LH_ERR_SHAPE, "%s: target '%s' has rank %d, d_in %d, d_out %d%s",
                            mi, tg->name, tg->r, tg->d_in, tg->d_out,
                            (!tg->A || !tg->B) ? " and no A/B data" : "");
    if (!isfinite(tg->scale))
        return lh_error_set(err, LH_ERR_NUMERIC, "%s: target '%s' has scale %g", mi, tg->name,
                            (double)tg->scale);
    if (p->src[t * n + i])
        return lh_error_set(err, LH_ERR_FORMAT, "%s: target '%s' appears twice", mi, tg->name);
    if (first[t] < 0) {
        first[t] = (int)i;
        p->shapes[t].d_in = tg->d_in;
        p->shapes[t].d_out = tg->d_out;
        p->tgt_rank[t] = tg->r;
    } else if (p->shapes[t].d_in != tg->d_in || p->shapes[t].d_out != tg->d_out) {
        return lh_error_set(err, LH_ERR_SHAPE,
                            "target '%s' is %dx%d (d_out x d_in) in %s but %dx%d in %s: "
                            "modules for different base models?",
                            tg->name, p->shapes[t].d_out, p->shapes[t].d_in,
                            lhc_mod_label(p, (size_t)first[t], lb2, sizeof lb2), tg->d_out,
                            tg->d_in, mi);
    } else if (method_needs_equal_ranks(p->o.method) && p->tgt_rank[t] != tg->r) {
        return lh_error_set(err, LH_ERR_SHAPE,
                            "method %s needs equal ranks, but target '%s' has rank %d in %s and "
                            "rank %d in %s (lorahub, cat and svd take any ranks)",
                            method_names[p->o.method], tg->name, p->tgt_rank[t],
                            lhc_mod_label(p, (size_t)first[t], lb2, sizeof lb2), tg->r, mi);
    }
    p->src[t * n + i] = tg;
    return LH_OK;
}

/* Every module's targets into the plan's src table; *maxr the largest rank. */
static lh_status place_targets(lh_compose_plan *p, const char **names, int *first, int *maxr,
                               lh_error *err)
{
    *maxr = 0;
    for (size_t i = 0; i < p->n; i++)
        for (size_t j = 0; j < p->mods[i]->n_targets; j++) {
            const lh_target *tg = &p->mods[i]->targets[j];
            const char **hit = bsearch(&tg->name, names, p->n_targets, sizeof *names, cmp_str);
            lh_status st = place_target(p, first, (size_t)(hit - names), i, tg, err);
            if (st != LH_OK)
                return st;
            if (tg->r > *maxr)
                *maxr = tg->r;
        }
    return LH_OK;
}

/* cat: each module's rows start at its offset; *K the largest summed rank. */
static lh_status cat_offsets(lh_compose_plan *p, long *K, lh_error *err)
{
    size_t n = p->n;
    *K = 0;
    for (size_t t = 0; t < p->n_targets; t++) {
        long off = 0;
        for (size_t i = 0; i < n; i++) {
            const lh_target *s = p->src[t * n + i];
            p->offset[t * n + i] = (int)off;
            if (s)
                off += s->r;
            if (off > INT_MAX / 2)
                return lh_error_set(err, LH_ERR_ARG, "cat: target '%s' would have rank %ld",
                                    p->shapes[t].name, off);
        }
        if (off > *K)
            *K = off;
    }
    return LH_OK;
}

/* LAPACK takes int sizes: the stacked factors (and for the dense forms the
 * whole delta) must be indexable by int. */
static lh_status check_lapack_sizes(const lh_compose_plan *p, long K, lh_error *err)
{
    size_t n = p->n;
    for (size_t t = 0; t < p->n_targets; t++) {
        int din = p->shapes[t].d_in, dout = p->shapes[t].d_out;
        long R = 0;
        for (size_t i = 0; i < n; i++)
            if (p->src[t * n + i])
                R += p->src[t * n + i]->r;
        double big = 0;
        if (p->o.method == LH_MERGE_SVD)
            big = (double)(din > dout ? din : dout) * (double)(R > K ? R : K);
        else if (method_is_svd(p->o.method))
            big = (double)din * (double)dout;
        if (big > (double)INT_MAX / 2)
            return lh_error_set(err, LH_ERR_ARG, "%s: target '%s' (%dx%d) is too large for LAPACK",
                                method_names[p->o.method], p->shapes[t].name, dout, din);
    }
    return LH_OK;
}

/* The plan's per-target tables for nt targets named names [nt]. */
static lh_status alloc_tables(lh_compose_plan *p, const char **names, size_t nt, int **first)
{
    size_t n = p->n;
    if (nt > SIZE_MAX / n / sizeof(void *))
        return LH_ERR_NOMEM;
    p->n_targets = nt;
    p->shapes = calloc(nt, sizeof *p->shapes);
    p->src = calloc(nt * n, sizeof *p->src);
    p->offset = calloc(nt * n, sizeof *p->offset);
    p->tgt_rank = calloc(nt, sizeof *p->tgt_rank);
    *first = malloc(nt * sizeof **first); /* [nt]: module that fixed the target's shape */
    if (!p->shapes || !p->src || !p->offset || !p->tgt_rank || !*first)
        return LH_ERR_NOMEM;
    for (size_t t = 0; t < nt; t++) {
        p->shapes[t].name = names[t];
        (*first)[t] = -1;
    }
    return LH_OK;
}

lh_status lh_compose_plan_new(const lh_adapter *const *mods, size_t n, const lh_merge_opts *opts,
                              lh_compose_plan **out, lh_error *err)
{
    if (out)
        *out = NULL;
    if (!mods || !out)
        return lh_error_set(err, LH_ERR_ARG, "compose: no modules or no output");
    if (n == 0)
        return lh_error_set(err, LH_ERR_ARG, "compose: no modules given");
    lh_merge_opts o;
    if (opts)
        o = *opts;
    else
        lh_merge_opts_default(&o);
    lh_status st = check_opts(&o, err);
    if (st)
        return st;
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        if (!mods[i])
            return lh_error_set(err, LH_ERR_ARG, "compose: module #%zu is NULL", i + 1);
        total += mods[i]->n_targets;
    }
    lh_compose_plan *p = calloc(1, sizeof *p);
    const char **names = malloc((total ? total : 1) * sizeof *names); /* [total] */
    int *first = NULL;
    size_t nt = 0;
    int maxr = 0;
    if (!p || !names)
        goto nomem;
    p->n = n;
    p->o = o;
    p->mods = malloc(n * sizeof *p->mods);
    p->coef = malloc(2 * n * sizeof *p->coef);
    if (!p->mods || !p->coef)
        goto nomem;
    memcpy(p->mods, mods, n * sizeof *p->mods);
    if ((st = check_layouts(p, err)) || (st = union_of_names(p, names, total, &nt, err)))
        goto fail;
    if (alloc_tables(p, names, nt, &first) != LH_OK)
        goto nomem;
    if ((st = place_targets(p, names, first, &maxr, err)))
        goto fail;
    long K = maxr;
    if (o.method == LH_MERGE_CAT && (st = cat_offsets(p, &K, err)))
        goto fail;
    if (method_is_svd(o.method) && o.rank > 0) {
        K = o.rank;
        if ((st = check_rank_cap(p, o.rank, err)))
            goto fail;
    }
    if (!o.allow_nonfinite && (st = check_finite(p, err)) != LH_OK)
        goto fail;
    p->rank = (int)K;
    p->svd_k = (int)K;
    for (size_t t = 0; t < nt; t++)
        p->shapes[t].r = p->rank;
    if ((st = check_lapack_sizes(p, K, err)))
        goto fail;
    free(first);
    free(names);
    *out = p;
    return LH_OK;
nomem:
    st = lh_error_set(err, LH_ERR_NOMEM, "compose: out of memory planning %zu modules", n);
fail:
    free(first);
    free(names);
    lh_compose_plan_free(p);
    return st;
}

/* Fault in the whole pages of buf[0..bytes) in one call. On the VM we
 * measure on, first touch of fresh memory one 4 KiB fault at a time ran at
 * 0.3 GB/s, prefaulting at 6-7 GB/s (docs/performance.md, Compose); cat's
 * output is as large as all inputs together. Advice only: failure (older
 * kernel) just leaves the pages to be faulted on first write. */
static void prefault(void *buf, size_t bytes)
{
#ifdef MADV_POPULATE_WRITE
    long pg = sysconf(_SC_PAGESIZE);
    if (pg <= 0 || bytes < ((size_t)1 << 20))
        return;
    uintptr_t lo = ((uintptr_t)buf + (uintptr_t)pg - 1) & ~((uintptr_t)pg - 1);
    uintptr_t hi = ((uintptr_t)buf + bytes) & ~((uintptr_t)pg - 1);
    if (hi > lo)
        (void)madvise((void *)lo, hi - lo, MADV_POPULATE_WRITE);
#else
    (void)buf;
    (void)bytes;
#endif
}

/* An lh_adapter_sum of n terms in one block (coefficients zero). */
static lh_adapter_sum *sum_new(size_t n)
{
    lh_adapter_sum *s = calloc(1, sizeof *s + n * (sizeof *s->coef + sizeof *s->mods));
    if (!s)
        return NULL;
    s->n = n;
    s->coef = (double *)(s + 1);
    s->mods = (const lh_adapter **)(s->coef + n);
    return s;
}

/* What out is a sum of: the plan's modules at weights w for cat; for
 * another method a sum would be wrong, so an output reused across plans
 * loses it. */
static void record_sum(const lh_compose_plan *p, const double *w, lh_adapter *out)
{
    if (!out->sum)
        return;
    if (p->o.method != LH_MERGE_CAT || out->sum->n != p->n) {
        free(out->sum);
        out->sum = NULL;
        return;
    }
    for (size_t i = 0; i < p->n; i++) {
        out->sum->mods[i] = p->mods[i];
        out->sum->coef[i] = w[i];
    }
}

lh_status lh_compose_alloc_output(const lh_compose_plan *p, lh_adapter **out, lh_error *err)
{
    if (out)
        *out = NULL;
    if (!p || !out)
        return lh_error_set(err, LH_ERR_ARG, "compose: no plan or no output");
    lh_adapter *a = NULL;
    lh_status st = lh_adapter_create(p->shapes, p->n_targets, &a, err);
    if (st)
        return st;
    for (size_t t = 0; t < a->n_targets; t++) {
        const lh_target *ot = &a->targets[t];
        prefault(ot->A, (size_t)ot->r * (size_t)ot->d_in * sizeof(float));
        prefault(ot->B, (size_t)ot->d_out * (size_t)ot->r * sizeof(float));
    }
    a->r = p->rank;
    a->lora_alpha = p->rank;
    a->use_rslora = 0;
    a->fan_in_fan_out = p->mods[0]->fan_in_fan_out;
    /* Informational fields: the first module that has them. */
    for (size_t i = 0; i < p->n; i++) {
        if (!a->base_model && p->mods[i]->base_model)
            a->base_model = strdup(p->mods[i]->base_model);
        if (!a->task_type && p->mods[i]->task_type)
            a->task_type = strdup(p->mods[i]->task_type);
    }
    if (p->o.method == LH_MERGE_CAT && !(a->sum = sum_new(p->n))) {
        lh_adapter_free(a);
        return lh_error_set(err, LH_ERR_NOMEM, "compose: out of memory");
    }
    *out = a;
    return LH_OK;
}

/* y[0..len) += a * x. A plain loop rather than cblas_saxpy: it is memory
 * bound either way, and BLAS threads only add synchronisation (the caller,
 * ADAPT, may run several composes in parallel). Blocks of 8 so that -O2's
 * cheap vectorizer turns the body into vector code. */
static void axpy(size_t len, float a, const float *restrict x, float *restrict y)
{
    size_t j = 0;
    for (; j + 8 <= len; j += 8)
        for (int u = 0; u < 8; u++)
            y[j + u] += a * x[j + u];
    for (; j < len; j++)
        y[j] += a * x[j];
}

/* y[0..len) = a * x, the same way. */
static void scale_copy(size_t len, float a, const float *restrict x, float *restrict y)
{
    size_t j = 0;
    for (; j + 8 <= len; j += 8)
        for (int u = 0; u < 8; u++)
            y[j + u] = a * x[j + u];
    for (; j < len; j++)
        y[j] = a * x[j];
}

/* Short rows of B (len = r), where a call costs more than the work. */
static inline void axpy_short(int len, float a, const float *restrict x, float *restrict y)
{
    for (int j = 0; j < len; j++)
        y[j] += a * x[j];
}

/* A = sum a_i A_i, B = sum b_i B_i with A_i, B_i zero-padded to K: lorahub
 * (a = w, b = w s) and linear (a = sgn(c) sqrt|c|, b = sqrt|c|). */
static void weighted_sum(const lh_compose_plan *p, size_t t, const double *a, const double *b,
                         lh_target *o)
{
    const int K = p->rank, din = o->d_in, dout = o->d_out;
    memset(o->A, 0, (size_t)K * din * sizeof *o->A);
    memset(o->B, 0, (size_t)dout * K * sizeof *o->B);
    for (size_t i = 0; i < p->n; i++) {
        const lh_target *s = p->src[t * p->n + i];
        if (!s)
            continue;
        if (a[i] != 0.0)
            axpy((size_t)s->r * din, (float)a[i], s->A, o->A); /* rows 0..r_i of A */
        if (b[i] == 0.0)
            continue;
        if (s->r == K) {
            axpy((size_t)dout * K, (float)b[i], s->B, o->B);
        } else {
            for (int row = 0; row < dout; row++)
                axpy_short(s->r, (float)b[i], s->B + (size_t)row * s->r,
                           o->B + (size_t)row * K);
        }
    }
}

/* A = rows [c_1 A_1; ...; c_N A_N], B = cols [B_1 ... B_N], zero tail. A
 * module at weight 0 contributes exact zeros (its rows and columns), not
 * 0 * A_i: a NaN or Inf in a module the weights leave out must not reach
 * the result (0 * NaN is NaN), as in weighted_sum, which skips it. */
static void cat_into(const lh_compose_plan *p, size_t t, const double *c, lh_target *o)
{
    const int K = p->rank, din = o->d_in, dout = o->d_out;
    const size_t n = p->n;
    int used = 0;
    for (size_t i = 0; i < n; i++) {
        const lh_target *s = p->src[t * n + i];
        if (!s)
            continue;
        float *rows = o->A + (size_t)p->offset[t * n + i] * din;
        if (c[i] == 0.0)
            memset(rows, 0, (size_t)s->r * din * sizeof *rows);
        else
            scale_copy((size_t)s->r * din, (float)c[i], s->A, rows);
        used = p->offset[t * n + i] + s->r;
    }
    memset(o->A + (size_t)used * din, 0, (size_t)(K - used) * din * sizeof *o->A);
    for (int row = 0; row < dout; row++) {
        float *y = o->B + (size_t)row * K;
        for (size_t i = 0; i < n; i++) {
            const lh_target *s = p->src[t * n + i];
            if (s && c[i] == 0.0)
                memset(y + p->offset[t * n + i], 0, (size_t)s->r * sizeof *y);
            else if (s)
                memcpy(y + p->offset[t * n + i], s->B + (size_t)row * s->r,
                       (size_t)s->r * sizeof *y);
        }
        memset(y + used, 0, (size_t)(K - used) * sizeof *y);
    }
}

static lh_status check_output(const lh_compose_plan *p, const lh_adapter *out, lh_error *err)
{
    if (out->n_targets != p->n_targets)
        return lh_error_set(err, LH_ERR_ARG,
                            "compose: output has %zu targets, the plan %zu (use "
                            "lh_compose_alloc_output)",
                            out->n_targets, p->n_targets);
    for (size_t t = 0; t < p->n_targets; t++) {
        const lh_target *o = &out->targets[t];
        const lh_target_shape *s = &p->shapes[t];
        if (o->r != s->r || o->d_in != s->d_in || o->d_out != s->d_out || !o->A || !o->B ||
            !o->name || strcmp(o->name, s->name) != 0)
            return lh_error_set(err, LH_ERR_ARG,
                                "compose: output target #%zu does not match the plan ('%s' "
                                "rank %d, %dx%d)",
                                t + 1, s->name, s->r, s->d_out, s->d_in);
    }
    return LH_OK;
}

static lh_status check_weights_finite(const lh_compose_plan *p, const double *w, lh_error *err)
{
    for (size_t i = 0; i < p->n; i++)
        if (!isfinite(w[i])) {
            char lb[32];
            return lh_error_set(err, LH_ERR_ARG, "weight %zu (%s) is %g, not a finite number",
                                i + 1, lhc_mod_label(p, i, lb, sizeof lb), w[i]);
        }
    return LH_OK;
}

lh_status lh_compose_alloc_sum_output(const lh_compose_plan *p, lh_adapter **out, lh_error *err)
{
    if (out)
        *out = NULL;
    if (!p || !out || p->o.method != LH_MERGE_CAT)
        return lh_error_set(err, LH_ERR_ARG, "compose: a sum-only output needs a cat plan");
    lh_adapter *a = calloc(1, sizeof *a);
    if (!a || !(a->sum = sum_new(p->n))) {
        free(a);
        return lh_error_set(err, LH_ERR_NOMEM, "compose: out of memory");
    }
    a->format = LH_FORMAT_PEFT;
    a->dtype = LH_F32;
    a->r = p->rank;
    a->lora_alpha = p->rank;
    *out = a;
    return LH_OK;
}

lh_status lh_compose_sum_into(const lh_compose_plan *p, const double *w, lh_adapter *out,
                              lh_error *err)
{
    if (!p || !w || !out || !out->sum || out->sum->n != p->n || p->o.method != LH_MERGE_CAT)
        return lh_error_set(err, LH_ERR_ARG,
                            "compose: no cat plan, weights or sum output (use "
                            "lh_compose_alloc_sum_output)");
    lh_status st = check_weights_finite(p, w, err);
    if (st)
        return st;
    record_sum(p, w, out);
    return LH_OK;
}

lh_status lh_compose_into(lh_compose_plan *p, const double *w, lh_adapter *out, lh_error *err)
{
    if (!p || !w || !out)
        return lh_error_set(err, LH_ERR_ARG, "compose: no plan, weights or output");
    lh_status st = check_output(p, out, err);
    if (!st)
        st = check_weights_finite(p, w, err);
    if (st)
        return st;
    const size_t n = p->n;
    double *a = p->coef, *b = p->coef + n; /* [n] each */
    for (size_t t = 0; t < p->n_targets && !st; t++) {
        lh_target *o = &out->targets[t];
        switch (p->o.method) {
        case LH_MERGE_LORAHUB:
            for (size_t i = 0; i < n; i++) {
                const lh_target *s = p->src[t * n + i];
                a[i] = w[i];
                b[i] = s ? w[i] * (double)s->scale : 0.0;
            }
            weighted_sum(p, t, a, b, o);
            break;
        case LH_MERGE_LINEAR:
            for (size_t i = 0; i < n; i++) {
                const lh_target *s = p->src[t * n + i];
                double c = s ? w[i] * (double)s->scale : 0.0;
                b[i] = sqrt(fabs(c));
                a[i] = c < 0 ? -b[i] : b[i];
            }
            weighted_sum(p, t, a, b, o);
            break;
        case LH_MERGE_CAT:
            for (size_t i = 0; i < n; i++) {
                const lh_target *s = p->src[t * n + i];
                a[i] = s ? w[i] * (double)s->scale : 0.0;
            }
            cat_into(p, t, a, o);
            break;
        case LH_MERGE_SVD:
            st = lhc_svd_factored(p, t, w, o, err);
            break;
        case LH_MERGE_TIES:
        case LH_MERGE_DARE_LINEAR:
        case LH_MERGE_DARE_TIES:
        case LH_MERGE_MAGNITUDE_PRUNE:
            st = lhc_sparse_factored(p, t, w, o, err);
            break;
        default:
            st = lhc_sparse_dense_svd(p, t, w, o, err);
            break;
        }
        o->scale = 1.0f;
        o->alpha = (float)p->rank;
    }
    if (st && method_is_svd(p->o.method))
        lh_error_prefix(err, method_names[p->o.method]); /* "ties-svd: target 'x': the SVD ..." */
    if (!st)
        record_sum(p, w, out);
    return st;
}

lh_status lh_compose(const lh_adapter *const *mods, size_t n, const double *w,
                     const lh_merge_opts *o, lh_adapter **out, lh_error *err)
{
    if (out)
        *out = NULL;
    lh_compose_plan *p = NULL;
    lh_adapter *a = NULL;
    lh_status st = lh_compose_plan_new(mods, n, o, &p, err);
    if (!st)
        st = lh_compose_alloc_output(p, &a, err);
    if (!st)
        st = lh_compose_into(p, w, a, err);
    lh_compose_plan_free(p);
    if (st) {
        lh_adapter_free(a);
        return st;
    }
    *out = a;
    return LH_OK;
}

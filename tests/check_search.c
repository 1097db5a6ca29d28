/* tests/check_search.c - the ADAPT search driver with an in-process backend.
 *
 * The fake backend knows the true answer: its loss of a candidate adapter
 * is ||delta(cand) - T||^2 / ||T||^2 summed over layers, where T is the
 * exact sum of three random modules' deltas with known weights W. With the
 * cat method (an exact sum of deltas) the loss is a convex quadratic in w
 * with its minimum 0 at w = W, computed here in double precision from the
 * composed factors, independent of the compose code's own arithmetic. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "adapt/search.h"
#include "adapt/report.h"
#include "lib/fsutil.h"
#include "lib/json.h"

#define NMOD 3
#define DIN 6
#define DOUT 5
#define RANK 2

static const double W_TRUE[NMOD] = {0.7, -0.4, 0.25};

typedef struct fake {
    double *T[2];          /* per target [DOUT, DIN] */
    double t_norm2;
    int calls;             /* score requests */
    int cands;             /* candidates scored */
    int max_batch;
    int fail_at_call;      /* > 0: LH_ERR_BACKEND on that call */
    int interrupt_at_call; /* > 0: set *flag on that call (after scoring) */
    volatile sig_atomic_t *flag;
    int nan_when_w0_gt;    /* loss NaN when the delta of target 0 is large */
} fake;

static const char *const TNAMES[2] = {"model.layers.0.self_attn.q_proj",
                                      "model.layers.0.self_attn.v_proj"};

static uint64_t rs = 12345;
static float frand(void)
{
    rs = rs * 6364136223846793005ULL + 1442695040888963407ULL;
    return (float)((double)(rs >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}

static lh_adapter *make_module(const char *name)
{
    lh_target_shape sh[2] = {{TNAMES[0], RANK, DIN, DOUT}, {TNAMES[1], RANK, DIN, DOUT}};
    lh_adapter *a;
    lh_error err;
    ck_assert_int_eq(lh_adapter_create(sh, 2, &a, &err), LH_OK);
    for (size_t t = 0; t < a->n_targets; t++) {
        lh_target *tg = &a->targets[t];
        for (int i = 0; i < RANK * DIN; i++)
            tg->A[i] = frand();
        for (int i = 0; i < DOUT * RANK; i++)
            tg->B[i] = frand();
        tg->scale = 0.5f + (float)t; /* scales other than 1 must be honoured */
    }
    a->name = strdup(name);
    return a;
}

static void add_delta(double *acc, const lh_target *t, double c)
{
    for (int o = 0; o < t->d_out; o++)
        for (int k = 0; k < t->r; k++)
            for (int i = 0; i < t->d_in; i++)
                acc[o * t->d_in + i] += c * t->scale * (double)t->B[o * t->r + k] *
                                        (double)t->A[(size_t)k * t->d_in + i];
}

static double fake_loss(const fake *f, const lh_adapter *a)
{
    double num = 0;
    for (int t = 0; t < 2; t++) {
        double d[DOUT * DIN];
        for (int i = 0; i < DOUT * DIN; i++)
            d[i] = -f->T[t][i];
        const lh_target *tg = a ? lh_adapter_find(a, TNAMES[t]) : NULL;
        if (tg)
            add_delta(d, tg, 1.0);
        for (int i = 0; i < DOUT * DIN; i++)
            num += d[i] * d[i];
    }
    return num / f->t_norm2;
}

static lh_status fake_score(void *ctx, const lh_adapter *const *cands, int n,
                            const lh_examples *ex, double *loss, lh_error *err)
{
    fake *f = ctx;
    f->calls++;
    f->cands += n;
    if (n > f->max_batch)
        f->max_batch = n;
    if (f->fail_at_call && f->calls == f->fail_at_call)
        return lh_error_set(err, LH_ERR_BACKEND, "fake backend: out of cheese");
    lh_status st = LH_OK;
    for (int i = 0; i < n; i++) {
        loss[i] = fake_loss(f, cands[i]);
        if (f->nan_when_w0_gt && loss[i] > 0.9)
            loss[i] = NAN; /* the contract: a loss, not an error */
    }
    if (f->interrupt_at_call && f->calls == f->interrupt_at_call)
        *f->flag = 1;
    return st;
}

static const lh_backend_i fake_iface = {.name = "fake", .score = fake_score};

/* A backend like llamacpp and server: a cat candidate is scored from its sum
 * (the modules at their weights), never from merged targets. It counts the
 * candidates that came as sums alone (no targets). */
static int sum_only_cands;

static lh_status fake_sum_score(void *ctx, const lh_adapter *const *cands, int n,
                                const lh_examples *ex, double *loss, lh_error *err)
{
    (void)ex;
    (void)err;
    fake *f = ctx;
    f->calls++;
    for (int c = 0; c < n; c++) {
        const lh_adapter_sum *sum = cands[c]->sum;
        ck_assert_ptr_nonnull(sum);
        sum_only_cands += cands[c]->n_targets == 0;
        double num = 0;
        for (int t = 0; t < 2; t++) {
            double d[DOUT * DIN];
            for (int i = 0; i < DOUT * DIN; i++)
                d[i] = -f->T[t][i];
            for (size_t m = 0; m < sum->n; m++)
                add_delta(d, lh_adapter_find(sum->mods[m], TNAMES[t]), sum->coef[m]);
            for (int i = 0; i < DOUT * DIN; i++)
                num += d[i] * d[i];
        }
        loss[c] = num / f->t_norm2;
    }
    return LH_OK;
}

static const lh_backend_i fake_sum_iface = {
    .name = "fake-sum", .score = fake_sum_score, .scores_cat_by_sum = 1};

typedef struct fixture {
    lh_adapter *mods[NMOD];
    lh_examples ex;
    char *in[1], *out[1];
    fake f;
    lh_backend *b;
    char dir[64];
} fixture;

static fixture fx;

static void setup(void)
{
    memset(&fx, 0, sizeof fx);
    rs = 12345;
    char name[16];
    for (int i = 0; i < NMOD; i++) {
        snprintf(name, sizeof name, "mod%d", i);
        fx.mods[i] = make_module(name);
    }
    fx.in[0] = "x";
    fx.out[0] = "y";
    fx.ex.n = 1;
    fx.ex.input = fx.in;
    fx.ex.output = fx.out;
    for (int t = 0; t < 2; t++) {
        fx.f.T[t] = calloc(DOUT * DIN, sizeof(double));
        for (int m = 0; m < NMOD; m++)
            add_delta(fx.f.T[t], lh_adapter_find(fx.mods[m], TNAMES[t]), W_TRUE[m]);
    }
    for (int t = 0; t < 2; t++)
        for (int i = 0; i < DOUT * DIN; i++)
            fx.f.t_norm2 += fx.f.T[t][i] * fx.f.T[t][i];
    ck_assert_int_eq(lh_backend_wrap(&fake_iface, &fx.f, &fx.b, NULL), LH_OK);
    strcpy(fx.dir, "/tmp/check_search.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(fx.dir));
}

static void teardown(void)
{
    for (int i = 0; i < NMOD; i++)
        lh_adapter_free(fx.mods[i]);
    free(fx.f.T[0]);
    free(fx.f.T[1]);
    lh_rmtree(fx.dir);
    lh_backend_close(fx.b);
}

static char *tmp_path(const char *name)
{
    return lh_path_join(fx.dir, name);
}

static void opts_cat(lh_search_opts *o, const char *optimizer, int budget)
{
    lh_search_opts_default(o);
    o->merge.method = LH_MERGE_CAT;
    o->optimizer = optimizer;
    o->budget = budget;
    o->l1 = 0;
}

static int count_lines(const char *path)
{
    FILE *f = fopen(path, "r");
    ck_assert_ptr_nonnull(f);
    int n = 0, ch;
    while ((ch = fgetc(f)) != EOF)
        n += ch == '\n';
    fclose(f);
    return n;
}

START_TEST(test_finds_known_optimum)
{
    lh_search_opts o;
    opts_cat(&o, "bobyqa", 120);
    lh_search_result r;
    lh_error err;
    ck_assert_int_eq(lh_search_modules(&o, (const lh_adapter *const *)fx.mods, NMOD, &fx.ex, fx.b, &r,
                                   &err), LH_OK);
    for (int i = 0; i < NMOD; i++)
        ck_assert_msg(fabs(r.weights[i] - W_TRUE[i]) < 0.02, "w[%d] = %g, want %g", i,
                      r.weights[i], W_TRUE[i]);
    ck_assert(r.best_loss < 1e-3);
    ck_assert(r.evaluations <= 120 && r.evaluations > 0);
    /* the re-score is one more backend call on the chosen point */
    ck_assert_int_eq(fx.f.calls, r.evaluations + 1);
    ck_assert_int_eq(r.backend_calls, fx.f.calls);
    ck_assert_double_eq_tol(r.rescored_loss, r.best_loss, 1e-6);
    /* the merged adapter is what the weights say */
    ck_assert_ptr_nonnull(r.merged);
    ck_assert_double_eq_tol(fake_loss(&fx.f, r.merged), r.best_loss, 1e-6);
    lh_search_result_release(&r);
}
END_TEST

/* A backend that scores cat from the sum gets sum-only candidates (no merge,
 * no target buffers per candidate), finds the same optimum, and the result
 * is still merged in full. */
START_TEST(test_sum_only_candidates)
{
    lh_backend *b = NULL;
    ck_assert_int_eq(lh_backend_wrap(&fake_sum_iface, &fx.f, &b, NULL), LH_OK);
    lh_search_opts o;
    opts_cat(&o, "bobyqa", 120);
    lh_search_result r;
    lh_error err;
    sum_only_cands = 0;
    ck_assert_int_eq(lh_search_modules(&o, (const lh_adapter *const *)fx.mods, NMOD, &fx.ex, b,
                                       &r, &err), LH_OK);
    for (int i = 0; i < NMOD; i++)
        ck_assert_msg(fabs(r.weights[i] - W_TRUE[i]) < 0.02, "w[%d] = %g, want %g", i,
                      r.weights[i], W_TRUE[i]);
    /* every search evaluation came as a sum alone; the rescore is the merged result */
    ck_assert_int_eq(sum_only_cands, r.evaluations);
    ck_assert_int_eq(fx.f.calls, r.evaluations + 1);
    ck_assert_ptr_nonnull(r.merged);
    ck_assert_uint_eq(r.merged->n_targets, 2);
    ck_assert_double_eq_tol(fake_loss(&fx.f, r.merged), r.best_loss, 1e-6);
    lh_search_result_release(&r);
    lh_backend_close(b);
}
END_TEST

START_TEST(test_budget_exact_and_trace)
{
    lh_search_opts o;
    opts_cat(&o, "random", 25);
    o.l1 = 0.05;
    char *trace = tmp_path("trace.tsv");
    o.trace_path = trace;
    lh_search_result r;
    lh_error err;
    ck_assert_int_eq(lh_search_modules(&o, (const lh_adapter *const *)fx.mods, NMOD, &fx.ex, fx.b, &r,
                                   &err), LH_OK);
    ck_assert_int_eq(r.evaluations, 25);
    ck_assert_int_eq(fx.f.cands, 26);
    ck_assert_int_eq(count_lines(trace), 26);
    /* header names the modules; the best row's objective = loss + l1 mean|w| */
    char *text;
    size_t len;
    ck_assert_int_eq(lh_read_file(trace, &text, &len, &err), LH_OK);
    ck_assert(!strncmp(text, "evaluation\tloss\tobjective\tmod0\tmod1\tmod2\tmilliseconds\n", 52));
    const char *line = strchr(text, '\n') + 1;
    int e;
    double loss, obj, w[NMOD];
    ck_assert_int_eq(sscanf(line, "%d\t%lf\t%lf\t%lf\t%lf\t%lf", &e, &loss, &obj, &w[0], &w[1], &w[2]), 6);
    ck_assert_int_eq(e, 1);
    ck_assert_double_eq_tol(obj, loss + 0.05 * (fabs(w[0]) + fabs(w[1]) + fabs(w[2])) / 3, 1e-12);
    ck_assert(r.best_objective <= obj);
    free(text);
    lh_search_result_release(&r);
    free(trace);
}
END_TEST

/* loss_scale (--loss-scale per-example sets 1/examples): the objective is
 * scale * loss + l1 mean|w|, the loss column unscaled. */
START_TEST(test_loss_scale)
{
    lh_search_opts o;
    opts_cat(&o, "random", 6);
    o.l1 = 0.05;
    o.loss_scale = 0.2;
    char *trace = tmp_path("trace-scaled.tsv");
    o.trace_path = trace;
    lh_search_result r;
    lh_error err;
    ck_assert_int_eq(lh_search_modules(&o, (const lh_adapter *const *)fx.mods, NMOD, &fx.ex, fx.b, &r,
                                   &err), LH_OK);
    char *text;
    size_t len;
    ck_assert_int_eq(lh_read_file(trace, &text, &len, &err), LH_OK);
    int rows = 0;
    for (const char *line = strchr(text, '\n') + 1; *line; line = strchr(line, '\n') + 1) {
        int e;
        double loss, obj, w[NMOD];
        ck_assert_int_eq(sscanf(line, "%d\t%lf\t%lf\t%lf\t%lf\t%lf", &e, &loss, &obj, &w[0],
                                &w[1], &w[2]), 6);
        ck_assert_double_eq_tol(obj, 0.2 * loss + 0.05 * (fabs(w[0]) + fabs(w[1]) + fabs(w[2])) / 3,
                                1e-12);
        ck_assert(loss > 0);
        rows++;
    }
    ck_assert_int_eq(rows, 6);
    free(text);
    lh_search_result_release(&r);
    free(trace);
    o.loss_scale = 0;
    o.trace_path = NULL;
    ck_assert_int_eq(lh_search_modules(&o, (const lh_adapter *const *)fx.mods, NMOD, &fx.ex, fx.b, &r,
                                   &err), LH_ERR_ARG);
    ck_assert_ptr_nonnull(strstr(err.msg, "loss scale"));
}
END_TEST

START_TEST(test_resume_replays_without_backend)
{
    char *ck = tmp_path("ck.json");
    lh_search_opts o;
    opts_cat(&o, "cobyla", 30);
    o.checkpoint_path = ck;
    lh_search_result r1, r2;
    lh_error err;
    ck_assert_int_eq(lh_search_modules(&o, (const lh_adapter *const *)fx.mods, NMOD, &fx.ex, fx.b, &r1,
                                   &err), LH_OK);
    int calls1 = fx.f.calls;
    ck_assert_int_eq(calls1, r1.evaluations + 1);
    /* a second fresh run refuses to clobber the checkpoint */
    ck_assert_int_eq(lh_search_modules(&o, (const lh_adapter *const *)fx.mods, NMOD, &fx.ex, fx.b, &r2,
                                   &err), LH_ERR_EXISTS);
    o.resume = 1;
    fx.f.calls = 0;
    ck_assert_int_eq(lh_search_modules(&o, (const lh_adapter *const *)fx.mods, NMOD, &fx.ex, fx.b, &r2,
                                   &err), LH_OK);
    ck_assert_int_eq(fx.f.calls, 1); /* only the final re-score */
    ck_assert_int_eq(r2.replayed, r1.evaluations);
    ck_assert_int_eq(r2.evaluations, r1.evaluations);
    ck_assert(!memcmp(r1.weights, r2.weights, NMOD * sizeof(double)));
    ck_assert(r1.best_loss == r2.best_loss);
    lh_search_result_release(&r1);
    lh_search_result_release(&r2);

    /* other settings: refused, naming the setting */
    o.l1 = 0.1;
    ck_assert_int_eq(lh_search_modules(&o, (const lh_adapter *const *)fx.mods, NMOD, &fx.ex, fx.b, &r2,
                                   &err), LH_ERR_ARG);
    ck_assert_ptr_nonnull(strstr(err.msg, "cannot resume"));
    ck_assert_ptr_nonnull(strstr(err.msg, "l1"));
    free(ck);
}
END_TEST

START_TEST(test_resume_partial_continues)
{
    /* An interrupted run resumed gives the same result as an uninterrupted one. */
    char *ck = tmp_path("ck.json");
    lh_search_opts o;
    opts_cat(&o, "cobyla", 30);
    lh_search_result full, part, res;
    lh_error err;
    ck_assert_int_eq(lh_search_modules(&o, (const lh_adapter *const *)fx.mods, NMOD, &fx.ex, fx.b,
                                   &full, &err), LH_OK);
    volatile sig_atomic_t flag = 0;
    fx.f.calls = 0;
    fx.f.flag = &flag;
    fx.f.interrupt_at_call = 10;
    o.checkpoint_path = ck;
    o.interrupt = &flag;
    ck_assert_int_eq(lh_search_modules(&o, (const lh_adapter *const *)fx.mods, NMOD, &fx.ex, fx.b,
                                   &part, &err), LH_ERR_INTERRUPTED);
    ck_assert_int_eq(part.evaluations, 10);
    ck_assert_str_eq(part.stop_reason, "interrupted");
    ck_assert_ptr_nonnull(part.merged);
    ck_assert(isnan(part.rescored_loss));
    flag = 0;
    fx.f.interrupt_at_call = 0;
    fx.f.calls = 0;
    o.resume = 1;
    ck_assert_int_eq(lh_search_modules(&o, (const lh_adapter *const *)fx.mods, NMOD, &fx.ex, fx.b,
                                   &res, &err), LH_OK);
    ck_assert_int_eq(res.replayed, 10);
    ck_assert_int_eq(fx.f.calls, full.evaluations - 10 + 1);
    ck_assert(!memcmp(full.weights, res.weights, NMOD * sizeof(double)));
    lh_search_result_release(&full);
    lh_search_result_release(&part);
    lh_search_result_release(&res);
    free(ck);
}
END_TEST

START_TEST(test_resume_refuses_other_point)
{
    char *ck = tmp_path("ck.json");
    lh_search_opts o;
    opts_cat(&o, "cobyla", 12);
    o.checkpoint_path = ck;
    lh_search_result r;
    lh_error err;
    ck_assert_int_eq(lh_search_modules(&o, (const lh_adapter *const *)fx.mods, NMOD, &fx.ex, fx.b, &r,
                                   &err), LH_OK);
    lh_search_result_release(&r);
    /* Move the first recorded point (w = 0) somewhere else. */
    char *text;
    size_t len;
    ck_assert_int_eq(lh_read_file(ck, &text, &len, &err), LH_OK);
    char *p = strstr(text, "\"wx\": [\"0x0p+0\"");
    ck_assert_ptr_nonnull(p);
    memcpy(p + 8, "0x1p-9", 6);
    ck_assert_int_eq(lh_write_file_atomic(ck, text, len, &err), LH_OK);
    free(text);
    o.resume = 1;
    fx.f.calls = 0;
    ck_assert_int_eq(lh_search_modules(&o, (const lh_adapter *const *)fx.mods, NMOD, &fx.ex, fx.b, &r,
                                   &err), LH_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(err.msg, "evaluation 1"));
    ck_assert_int_eq(fx.f.calls, 0);
    /* a damaged number is a malformed checkpoint, not a silent 0 */
    ck_assert_int_eq(lh_read_file(ck, &text, &len, &err), LH_OK);
    p = strstr(text, "\"0x1p-9\"");
    ck_assert_ptr_nonnull(p);
    memcpy(p + 1, "0x1q-9", 6);
    ck_assert_int_eq(lh_write_file_atomic(ck, text, len, &err), LH_OK);
    free(text);
    ck_assert_int_eq(lh_search_modules(&o, (const lh_adapter *const *)fx.mods, NMOD, &fx.ex, fx.b, &r,
                                   &err), LH_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(err.msg, "not a hex float"));
    ck_assert_int_eq(fx.f.calls, 0);
    free(ck);
}
END_TEST

START_TEST(test_nan)
{
    lh_search_opts o;
    opts_cat(&o, "random", 30);
    fx.f.nan_when_w0_gt = 1;
    lh_search_result r;
    lh_error err;
    ck_assert_int_eq(lh_search_modules(&o, (const lh_adapter *const *)fx.mods, NMOD, &fx.ex, fx.b, &r,
                                   &err), LH_ERR_NUMERIC);
    ck_assert_ptr_nonnull(strstr(err.msg, "NaN"));
    o.nan_as_worst = 1;
    char *trace = tmp_path("t.tsv");
    o.trace_path = trace;
    ck_assert_int_eq(lh_search_modules(&o, (const lh_adapter *const *)fx.mods, NMOD, &fx.ex, fx.b, &r,
                                   &err), LH_OK);
    ck_assert_int_eq(r.evaluations, 30);
    ck_assert(isfinite(r.best_loss) && r.best_loss <= 0.9);
    char *text;
    size_t len;
    ck_assert_int_eq(lh_read_file(trace, &text, &len, &err), LH_OK);
    ck_assert_ptr_nonnull(strstr(text, "\tnan\t1000000000\t"));
    free(text);
    free(trace);
    lh_search_result_release(&r);
}
END_TEST

START_TEST(test_backend_error_stops)
{
    lh_search_opts o;
    opts_cat(&o, "cobyla", 30);
    fx.f.fail_at_call = 4;
    char *trace = tmp_path("t.tsv");
    o.trace_path = trace;
    lh_search_result r;
    lh_error err;
    ck_assert_int_eq(lh_search_modules(&o, (const lh_adapter *const *)fx.mods, NMOD, &fx.ex, fx.b, &r,
                                   &err), LH_ERR_BACKEND);
    ck_assert_str_eq(err.msg, "fake backend: out of cheese");
    ck_assert_int_eq(fx.f.calls, 4);
    ck_assert_ptr_null(r.weights);
    /* the trace keeps the three evaluations that ran */
    ck_assert_int_eq(count_lines(trace), 4);
    free(trace);
}
END_TEST

START_TEST(test_batches_population)
{
    lh_search_opts o;
    opts_cat(&o, "cmaes", 40);
    lh_search_result r;
    lh_error err;
    ck_assert_int_eq(lh_search_modules(&o, (const lh_adapter *const *)fx.mods, NMOD, &fx.ex, fx.b, &r,
                                   &err), LH_OK);
    ck_assert_int_eq(r.evaluations, 40);
    ck_assert_int_gt(fx.f.max_batch, 1);
    ck_assert_int_lt(fx.f.calls, 40);
    ck_assert_int_eq(fx.f.cands, 41);
    lh_search_result_release(&r);
}
END_TEST

/* --population: every batch of the search is that many candidates (the
 * last one cut to the budget left); refused with a one-point optimizer. */
START_TEST(test_population)
{
    lh_search_opts o;
    opts_cat(&o, "cmaes", 40);
    o.population = 16;
    lh_search_result r;
    lh_error err;
    ck_assert_int_eq(lh_search_modules(&o, (const lh_adapter *const *)fx.mods, NMOD, &fx.ex, fx.b, &r,
                                   &err), LH_OK);
    /* 16 + 16 + 8, then the re-score; the default for 3 weights is 7 */
    ck_assert_int_eq(r.evaluations, 40);
    ck_assert_int_eq(fx.f.max_batch, 16);
    ck_assert_int_eq(fx.f.calls, 4);
    ck_assert_int_eq(fx.f.cands, 41);
    lh_search_result_release(&r);
    opts_cat(&o, "cobyla", 40);
    o.population = 16;
    ck_assert_int_eq(lh_search_modules(&o, (const lh_adapter *const *)fx.mods, NMOD, &fx.ex, fx.b, &r,
                                   &err), LH_ERR_ARG);
    ck_assert_ptr_nonnull(strstr(err.msg, "cobyla asks for one point at a time"));
    opts_cat(&o, "cmaes", 40);
    o.population = 1;
    ck_assert_int_eq(lh_search_modules(&o, (const lh_adapter *const *)fx.mods, NMOD, &fx.ex, fx.b, &r,
                                   &err), LH_ERR_ARG);
    ck_assert_int_eq(fx.f.calls, 4);
}
END_TEST

START_TEST(test_select_modes)
{
    lh_search_opts o;
    opts_cat(&o, "cobyla", 30);
    o.select = LH_SELECT_BEST_SINGLE;
    lh_search_result r;
    lh_error err;
    ck_assert_int_eq(lh_search_modules(&o, (const lh_adapter *const *)fx.mods, NMOD, &fx.ex, fx.b, &r,
                                   &err), LH_OK);
    ck_assert_int_eq(r.n_kept, 1);
    ck_assert_int_eq(r.preselect_evaluations, NMOD);
    ck_assert_int_eq(r.evaluations, 0);
    size_t best = 0;
    for (size_t i = 0; i < NMOD; i++) {
        const lh_adapter *one = fx.mods[i];
        lh_adapter *c;
        double w1 = 1;
        lh_merge_opts mo = o.merge;
        ck_assert_int_eq(lh_compose(&one, 1, &w1, &mo, &c, &err), LH_OK);
        ck_assert_double_eq_tol(r.single_loss[i], fake_loss(&fx.f, c), 1e-9);
        lh_adapter_free(c);
        if (r.single_loss[i] < r.single_loss[best])
            best = i;
    }
    ck_assert_uint_eq(r.kept[0], best);
    ck_assert(r.weights[best] == 1.0);
    lh_search_result_release(&r);

    o.select = LH_SELECT_UNIFORM;
    ck_assert_int_eq(lh_search_modules(&o, (const lh_adapter *const *)fx.mods, NMOD, &fx.ex, fx.b, &r,
                                   &err), LH_OK);
    ck_assert_int_eq(r.evaluations, 1);
    for (int i = 0; i < NMOD; i++)
        ck_assert(r.weights[i] == 1.0 / NMOD);
    lh_search_result_release(&r);

    o.select = LH_SELECT_SEARCH;
    o.preselect = 2;
    fx.f.calls = 0;
    ck_assert_int_eq(lh_search_modules(&o, (const lh_adapter *const *)fx.mods, NMOD, &fx.ex, fx.b, &r,
                                   &err), LH_OK);
    ck_assert_int_eq(r.n_kept, 2);
    ck_assert_int_eq(r.preselect_evaluations, NMOD);
    ck_assert_int_le(r.evaluations, 30);
    /* one batched call for the singles, then the search, then the re-score */
    ck_assert_int_eq(fx.f.calls, 1 + r.evaluations + 1);
    for (size_t i = 0; i < NMOD; i++)
        if (i != r.kept[0] && i != r.kept[1])
            ck_assert(r.weights[i] == 0);
    lh_search_result_release(&r);
}
END_TEST

/* select auto on four examples (four folds, leave-one-out). The fake
 * loss does not depend on the examples, so every held-out loss is the
 * loss of the candidate itself: the single module's is known exactly. */
START_TEST(test_select_auto)
{
    char *in[4] = {"a", "b", "c", "d"}, *out[4] = {"A", "B", "C", "D"};
    lh_examples ex4 = {NULL, 4, in, out};
    lh_search_opts o;
    opts_cat(&o, "cobyla", 50);
    o.preselect = NMOD;
    o.select = LH_SELECT_AUTO;
    lh_search_result r;
    lh_error err;
    /* the target is a mixture of the three: composing wins */
    fx.f.calls = 0;
    ck_assert_int_eq(lh_search_modules(&o, (const lh_adapter *const *)fx.mods, NMOD, &ex4, fx.b, &r,
                                       &err), LH_OK);
    double min_single = HUGE_VAL;
    for (int i = 0; i < NMOD; i++) {
        const lh_adapter *one = fx.mods[i];
        lh_adapter *c;
        double w1 = 1;
        ck_assert_int_eq(lh_compose(&one, 1, &w1, &o.merge, &c, &err), LH_OK);
        min_single = fmin(min_single, fake_loss(&fx.f, c));
        lh_adapter_free(c);
    }
    ck_assert(r.auto_ran);
    ck_assert_int_eq(r.auto_decision, LH_SELECT_SEARCH);
    ck_assert_int_eq(r.auto_folds, 4);
    /* four folds and the refit share 50, less the folds' two held-out scores */
    ck_assert_int_eq(r.auto_fold_budget, (50 - 2 * 4) / 5);
    ck_assert_int_le(r.auto_evaluations, 4 * r.auto_fold_budget);
    ck_assert_int_le(r.evaluations, 50);
    ck_assert_int_le(r.total_evaluations, 50 + 1); /* the final rescore comes on top */
    ck_assert_int_eq(r.evaluations, r.auto_evaluations + (int)r.n_evals);
    ck_assert_double_eq_tol(r.auto_single_loss, min_single, 1e-9);
    ck_assert(r.auto_search_loss < r.auto_single_loss);
    ck_assert_int_eq(r.auto_other_evaluations, 4 * (NMOD + 2));
    ck_assert_int_eq(r.backend_calls, fx.f.calls);
    ck_assert(r.rescored_loss < min_single);
    lh_search_result_release(&r);

    /* the target is module 1 alone: its loss alone is 0, nothing beats it */
    for (int t = 0; t < 2; t++) {
        memset(fx.f.T[t], 0, DOUT * DIN * sizeof(double));
        add_delta(fx.f.T[t], lh_adapter_find(fx.mods[1], TNAMES[t]), 1.0);
    }
    fx.f.t_norm2 = 0;
    for (int t = 0; t < 2; t++)
        for (int i = 0; i < DOUT * DIN; i++)
            fx.f.t_norm2 += fx.f.T[t][i] * fx.f.T[t][i];
    ck_assert_int_eq(lh_search_modules(&o, (const lh_adapter *const *)fx.mods, NMOD, &ex4, fx.b, &r,
                                       &err), LH_OK);
    ck_assert_int_eq(r.auto_decision, LH_SELECT_BEST_SINGLE);
    ck_assert_double_eq_tol(r.auto_single_loss, 0, 1e-12);
    ck_assert(r.weights[1] == 1.0 && r.weights[0] == 0 && r.weights[2] == 0);
    ck_assert_int_eq(r.evaluations, r.auto_evaluations); /* the refit searched nothing */
    ck_assert_int_eq((int)r.n_evals, 0);
    lh_search_result_release(&r);

    /* too few examples to hold one out, too small a budget for the folds */
    ck_assert_int_eq(lh_search_modules(&o, (const lh_adapter *const *)fx.mods, NMOD, &fx.ex, fx.b, &r,
                                       &err), LH_ERR_ARG);
    ck_assert_ptr_nonnull(strstr(lh_error_message(&err), "at least 2 examples"));
    o.budget = 4;
    ck_assert_int_eq(lh_search_modules(&o, (const lh_adapter *const *)fx.mods, NMOD, &ex4, fx.b, &r,
                                       &err), LH_ERR_ARG);
    ck_assert_ptr_nonnull(strstr(lh_error_message(&err), "budget 4 is too small for 4 folds"));
}
END_TEST

START_TEST(test_report_formats)
{
    lh_search_opts o;
    opts_cat(&o, "random", 5);
    lh_search_result r;
    lh_error err;
    ck_assert_int_eq(lh_search_modules(&o, (const lh_adapter *const *)fx.mods, NMOD, &fx.ex, fx.b, &r,
                                   &err), LH_OK);
    const char *extra[] = {"preset", "none", NULL};
    for (int y = 0; y < 2; y++) {
        char *path = tmp_path(y ? "r.yaml" : "r.json");
        ck_assert_int_eq(lh_search_write_report(path, &o, (const lh_adapter *const *)fx.mods, NMOD,
                                                &r, extra, &err), LH_OK);
        lh_json *j;
        if (y)
            ck_assert_int_eq(lh_yaml_parse_file(path, &j, &err), LH_OK);
        else
            ck_assert_int_eq(lh_json_parse_file(path, &j, &err), LH_OK);
        const lh_json *w = lh_json_get(j, "weights");
        ck_assert_ptr_nonnull(w);
        ck_assert_int_eq(w->len, NMOD);
        double v;
        ck_assert(lh_json_as_number(lh_json_get(w, "mod1"), &v));
        ck_assert(v == r.weights[1]);
        ck_assert(lh_json_as_number(lh_json_get(j, "best_loss"), &v));
        ck_assert(v == r.best_loss);
        long long ev;
        ck_assert(lh_json_as_int64(lh_json_get(j, "evaluations"), &ev));
        ck_assert_int_eq(ev, 5);
        const char *s;
        ck_assert(lh_json_as_string(lh_json_get(j, "optimizer"), &s));
        ck_assert_str_eq(s, "random");
        ck_assert(lh_json_as_string(lh_json_get(j, "method"), &s));
        ck_assert_str_eq(s, "cat");
        ck_assert(lh_json_as_string(lh_json_get(j, "preset"), &s));
        ck_assert_str_eq(s, "none");
        static const char *const keys[] = {"best_objective", "seed", "budget", "bound", "l1",
                                           "modules", "wall_seconds", "backend_seconds",
                                           "stop_reason"};
        for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++)
            ck_assert_msg(lh_json_get(j, keys[k]) != NULL, "no %s", keys[k]);
        lh_json_free(j);
        free(path);
    }
    lh_search_result_release(&r);
}
END_TEST

START_TEST(test_bad_options)
{
    lh_search_opts o;
    opts_cat(&o, "no-such", 5);
    lh_search_result r;
    lh_error err;
    ck_assert_int_eq(lh_search_modules(&o, (const lh_adapter *const *)fx.mods, NMOD, &fx.ex, fx.b, &r,
                                   &err), LH_ERR_ARG);
    ck_assert_ptr_nonnull(strstr(err.msg, "no-such"));
    opts_cat(&o, "cobyla", 0);
    ck_assert_int_eq(lh_search_modules(&o, (const lh_adapter *const *)fx.mods, NMOD, &fx.ex, fx.b, &r,
                                   &err), LH_ERR_ARG);
    opts_cat(&o, "cobyla", 5);
    o.resume = 1;
    char *ck = tmp_path("none.json");
    o.checkpoint_path = ck;
    ck_assert_int_eq(lh_search_modules(&o, (const lh_adapter *const *)fx.mods, NMOD, &fx.ex, fx.b, &r,
                                   &err), LH_ERR_NOT_FOUND);
    ck_assert_int_eq(fx.f.calls, 0);
    free(ck);
}
END_TEST

START_TEST(test_incompatible_modules)
{
    /* the same target with another shape: another base model */
    lh_target_shape sh[1] = {{TNAMES[0], RANK, DIN + 1, DOUT}};
    lh_adapter *odd;
    lh_error err;
    ck_assert_int_eq(lh_adapter_create(sh, 1, &odd, &err), LH_OK);
    odd->name = strdup("odd");
    const lh_adapter *mods[2] = {fx.mods[0], odd};
    lh_search_opts o;
    opts_cat(&o, "cobyla", 5);
    lh_search_result r;
    for (int pre = 0; pre < 2; pre++) {
        o.preselect = pre;
        ck_assert_int_eq(lh_search_modules(&o, mods, 2, &fx.ex, fx.b, &r, &err), LH_ERR_SHAPE);
        ck_assert_int_eq(fx.f.calls, 0);
    }
    lh_adapter_free(odd);
}
END_TEST

static Suite *search_suite(void)
{
    Suite *s = suite_create("search");
    TCase *tc = tcase_create("driver");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_finds_known_optimum);
    tcase_add_test(tc, test_sum_only_candidates);
    tcase_add_test(tc, test_budget_exact_and_trace);
    tcase_add_test(tc, test_loss_scale);
    tcase_add_test(tc, test_resume_replays_without_backend);
    tcase_add_test(tc, test_resume_partial_continues);
    tcase_add_test(tc, test_resume_refuses_other_point);
    tcase_add_test(tc, test_nan);
    tcase_add_test(tc, test_backend_error_stops);
    tcase_add_test(tc, test_batches_population);
    tcase_add_test(tc, test_population);
    tcase_add_test(tc, test_select_modes);
    tcase_add_test(tc, test_select_auto);
    tcase_add_test(tc, test_report_formats);
    tcase_add_test(tc, test_bad_options);
    tcase_add_test(tc, test_incompatible_modules);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(search_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

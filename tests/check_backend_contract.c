/* tests/check_backend_contract.c - every registered backend through the
 * same cases: the contract written at the top of adapt/backend/backend.h.
 *
 * Like ggml's test-backend-ops, the cases know no backend; fixtures[] says,
 * per row, which backend to open on which test data. A backend joins by
 * registering in adapt/backend/backend.c plus at least one row here (a
 * registered backend without a row fails every_row_registered, saying so);
 * native and llamacpp have a second row on an encoder-decoder model.
 *
 * Test data: native runs the fixture model tests/fixtures/native/a; exec
 * runs tests/tools/test_backend (built beside this suite), whose loss is
 * ||delta(cand) - T||^2 / ||T||^2 with T = 0.7 a-lora + 0.2 a-lora2, so the
 * base model scores exactly 1 and the two adapters score different values.
 * Both score the candidates a = a-lora and b = a-lora2 on
 * tests/fixtures/native/examples.jsonl. The T5 rows (native's T5 runtime,
 * llama.cpp's T5) run the tiny Flan-T5-shaped model of tests/fixtures/t5gguf
 * with its enc-self and cross modules on its own examples. */
#include <check.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include "adapt/backend/backend.h"
#include "lib/gguf.h"
#include "lib/adapter.h"
#include "lib/examples.h"
#include "lib/fsutil.h"

#define FIX "tests/fixtures/native"
#define T5G "tests/fixtures/t5gguf" /* the encoder-decoder rows */
#define MAX_PARAMS 8

/* Filled in main(): the fake exec backend's command line. */
static char exec_cmd[4 * PATH_MAX];

typedef struct fixture {
    const char *backend;
    /* {key, value, ..., NULL}: opens it on the test data */
    const char *params[MAX_PARAMS];
    /* The same with a missing model or command, and what its error names. */
    const char *missing_params[MAX_PARAMS];
    const char *missing_named;
    /* count_tokens of the examples, when the backend counts (0: it does not). */
    size_t tokens;
    /* How far a candidate's loss in a batch may be from its loss alone,
     * relative: the rounding of the backend's arithmetic (see its row). */
    double batch_rtol;
    /* Cases this backend is known to fail, space-separated, each with the
     * reason in a comment. They still run; a failure is printed, not
     * counted, and a pass FAILS the case so that the entry is removed. */
    const char *known_failures;
    /* Non-zero when this build cannot run the backend (llamacpp without
     * libllama): its cases are left out, and make check says so. */
    int (*absent)(void);
    /* The model family's own data, for a row on another model than the
     * native fixture's: candidates a and b and the examples (NULL: FIX's
     * a-lora, a-lora2 and examples.jsonl). A backend may have several rows. */
    const char *cand_a, *cand_b, *examples;
} fixture;

int lh_backend_llamacpp_built(void);
static int llamacpp_absent(void)
{
    return !lh_backend_llamacpp_built();
}

/* Filled in main() when $LLAMA_BINDIR/llama-server exists: the URL of the
 * llama-server started for the server row (see start_server). */
static char server_url[64];
static int server_absent(void)
{
    return server_url[0] == '\0';
}

static const fixture fixtures[] = {
    {
        .backend = "native",
        .params = {"base", FIX "/a", NULL},
        .missing_params = {"base", FIX "/no-such-model", NULL},
        .missing_named = FIX "/no-such-model",
        .tokens = 38, /* output bytes 1+6+3+12+11 (byte-level tokenizer) + 5 EOS */
        /* F32 forward pass: the candidates of a batch are stacked into one
         * GEMM, and a row's place in OpenBLAS's blocking (and the thread
         * count) changes the rounding: 3e-8 to 7e-8 relative on this model,
         * also for the same candidate twice in one batch. */
        .batch_rtol = 1e-6,
        /* model/llama/forward.c refuses a non-finite loss with
         * LH_ERR_NUMERIC; the fix in model/ is on another branch. */
        .known_failures = NULL,
    },
    {
        .backend = "exec",
        .params = {"backend-cmd", exec_cmd, "backend-timeout", "30", NULL},
        .missing_params = {"backend-cmd", "/nonexistent/lorahub-test-backend 2>/dev/null", NULL},
        .missing_named = "/nonexistent/lorahub-test-backend",
        .tokens = 0,
        .batch_rtol = 1e-9, /* test_backend computes each loss alone, in double */
        .known_failures = NULL,
    },
    {
        /* The fixture model a as a GGUF (tests/fixtures/native/a.gguf, F32,
         * written by tools/zoo_gguf.py); the same examples and adapters. */
        .backend = "llamacpp",
        .params = {"base-gguf", FIX "/a.gguf", "threads", "1", NULL},
        .missing_params = {"base-gguf", FIX "/no-such-model.gguf", NULL},
        .missing_named = FIX "/no-such-model.gguf",
        .tokens = 38, /* llama.cpp's tokenizer gives the same ids as tokenizer.json */
        /* Each candidate is its own llama_decode over the same chunks. */
        .batch_rtol = 1e-12,
        .known_failures = NULL,
        .absent = llamacpp_absent,
    },
    {
        /* One llama-server on a.gguf holding a-lora and a-lora2 as GGUF
         * adapters (at scale 0): the candidates a and b are those modules,
         * sent by name at scale 1. */
        .backend = "server",
        .params = {"server", server_url, "backend-timeout", "30", NULL},
        .missing_params = {"server", "127.0.0.1:1", NULL},
        .missing_named = "http://127.0.0.1:1",
        .tokens = 38,
        /* One slot (-np 1): every request is computed alone, whatever
         * else is being scored. */
        .batch_rtol = 1e-12,
        .known_failures = NULL,
        .absent = server_absent,
    },
    {
        /* The encoder-decoder path: the tiny Flan-T5-shaped model of
         * tests/fixtures/t5gguf in the native T5 runtime, with two of its
         * seq2seq LoRA modules (encoder self-attention, cross-attention). */
        .backend = "native",
        .params = {"base", T5G "/base", NULL},
        .missing_params = {"base", T5G "/no-such-model", NULL},
        .missing_named = T5G "/no-such-model",
        .tokens = 79, /* target tokens + </s> of the 5 examples; llama.cpp counts the same */
        .batch_rtol = 1e-6, /* as the LLaMA row: stacked GEMMs round by position */
        .cand_a = T5G "/modules/enc-self",
        .cand_b = T5G "/modules/cross",
        .examples = T5G "/examples.jsonl",
    },
    {
        /* The same T5 as a GGUF through llama.cpp (llama_encode, then the
         * decoder pass): the same modules and examples. */
        .backend = "llamacpp",
        .params = {"base-gguf", T5G "/base.gguf", "threads", "1", NULL},
        .missing_params = {"base-gguf", T5G "/no-such-model.gguf", NULL},
        .missing_named = T5G "/no-such-model.gguf",
        .tokens = 79, /* its own tokenizer (the GGUF vocabulary) agrees with lorahub's */
        .batch_rtol = 1e-12, /* each candidate its own encode and decode */
        .absent = llamacpp_absent,
        .cand_a = T5G "/modules/enc-self",
        .cand_b = T5G "/modules/cross",
        .examples = T5G "/examples.jsonl",
    },
};
#define N_FIXTURES (sizeof fixtures / sizeof fixtures[0])

static lh_adapter *cand_a, *cand_b;
static lh_examples *examples;

static const fixture *fixture_of(const char *name)
{
    for (size_t i = 0; i < N_FIXTURES; i++)
        if (!strcmp(fixtures[i].backend, name))
            return &fixtures[i];
    return NULL;
}

/* The rows this build can run (a row whose backend is absent is left out). */
static const fixture *runnable[16];
static int n_runnable;

static void list_runnable(void)
{
    for (size_t i = 0; i < N_FIXTURES && n_runnable < 16; i++) {
        const fixture *f = &fixtures[i];
        if (!lh_backend_find(f->backend) || (f->absent && f->absent()))
            continue; /* make check prints the one line saying so */
        runnable[n_runnable++] = f;
    }
}

static const lh_backend_i *registered(int i)
{
    return lh_backend_find(runnable[i]->backend);
}

static const fixture *fixture_for(int i)
{
    return runnable[i];
}

static int known_failure(const fixture *f, const char *case_name)
{
    if (!f->known_failures)
        return 0;
    size_t n = strlen(case_name);
    for (const char *p = f->known_failures; (p = strstr(p, case_name)); p += n)
        if ((p == f->known_failures || p[-1] == ' ') && (p[n] == '\0' || p[n] == ' '))
            return 1;
    return 0;
}

static lh_status open_with(const char *name, const char *const *params,
                           volatile sig_atomic_t *flag, lh_backend **b, lh_error *err)
{
    lh_backend_opts o;
    lh_backend_opts_default(&o);
    o.params = params;
    o.interrupt = flag;
    return lh_backend_open(name, &o, b, err);
}

/* The backend registered at index i, open on the test data. */
static void load_row_data(const fixture *f);

static lh_backend *open_registered(int i, volatile sig_atomic_t *flag)
{
    const fixture *f = fixture_for(i);
    load_row_data(f);
    lh_backend *b = NULL;
    lh_error err;
    lh_error_clear(&err);
    lh_status st = open_with(f->backend, f->params, flag, &b, &err);
    ck_assert_msg(st == LH_OK, "%s: open: status %d: %s", f->backend, st, err.msg);
    ck_assert_ptr_nonnull(b);
    return b;
}

static double score_one(lh_backend *b, const lh_adapter *cand)
{
    double loss = -1;
    lh_error err;
    lh_status st = lh_backend_score(b, &cand, 1, examples, &loss, &err);
    ck_assert_msg(st == LH_OK, "%s: score: status %d: %s", lh_backend_name(b), st, err.msg);
    return loss;
}

static int same_loss(const fixture *f, double got, double want)
{
    return isfinite(got) && fabs(got - want) <= f->batch_rtol * fabs(want);
}

static void assert_same_loss(const fixture *f, const char *what, double got, double want)
{
    ck_assert_msg(same_loss(f, got, want), "%s: %s: %.17g in the batch, %.17g alone (%g relative "
                  "allowed)", f->backend, what, got, want, f->batch_rtol);
}

/* A writable copy of a loaded adapter (loaded tensors may be read-only maps). */
static lh_adapter *copy_adapter(const lh_adapter *src)
{
    lh_target_shape *sh = calloc(src->n_targets, sizeof *sh);
    ck_assert_ptr_nonnull(sh);
    for (size_t t = 0; t < src->n_targets; t++) {
        const lh_target *s = &src->targets[t];
        sh[t] = (lh_target_shape){s->name, s->r, s->d_in, s->d_out};
    }
    lh_adapter *dst;
    lh_error err;
    ck_assert_int_eq(lh_adapter_create(sh, src->n_targets, &dst, &err), LH_OK);
    free(sh);
    for (size_t t = 0; t < src->n_targets; t++) {
        const lh_target *s = &src->targets[t];
        lh_target *d = (lh_target *)lh_adapter_find(dst, s->name);
        ck_assert_ptr_nonnull(d);
        memcpy(d->A, s->A, (size_t)s->r * (size_t)s->d_in * sizeof *d->A);
        memcpy(d->B, s->B, (size_t)s->d_out * (size_t)s->r * sizeof *d->B);
        d->scale = s->scale;
        d->alpha = s->alpha;
    }
    return dst;
}

static double seconds_since(const struct timespec *t0)
{
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (double)(t1.tv_sec - t0->tv_sec) + (double)(t1.tv_nsec - t0->tv_nsec) * 1e-9;
}

static void teardown(void)
{
    lh_adapter_free(cand_a);
    lh_adapter_free(cand_b);
    lh_examples_free(examples);
    cand_a = cand_b = NULL;
    examples = NULL;
}

/* The candidates and examples of row f (FIX's unless the row names its own). */
static void load_row_data(const fixture *f)
{
    teardown();
    const char *a = f && f->cand_a ? f->cand_a : FIX "/a-lora";
    const char *b = f && f->cand_b ? f->cand_b : FIX "/a-lora2";
    const char *ex = f && f->examples ? f->examples : FIX "/examples.jsonl";
    lh_error err;
    ck_assert_msg(lh_adapter_load(a, &cand_a, &err) == LH_OK, "%s", err.msg);
    ck_assert_msg(lh_adapter_load(b, &cand_b, &err) == LH_OK, "%s", err.msg);
    ck_assert_msg(lh_examples_load(ex, &examples, &err) == LH_OK, "%s", err.msg);
}

static void setup(void)
{
    load_row_data(NULL);
}

/* cands[i] == NULL is the base model: a finite positive loss, the same twice. */
START_TEST(base_model)
{
    lh_backend *b = open_registered(_i, NULL);
    double first = score_one(b, NULL), second = score_one(b, NULL);
    ck_assert_msg(isfinite(first) && first > 0, "%s: base loss %g", lh_backend_name(b), first);
    ck_assert_msg(first == second, "%s: base loss %.17g, then %.17g", lh_backend_name(b), first,
                  second);
    lh_backend_close(b);
}
END_TEST

START_TEST(no_candidates)
{
    lh_backend *b = open_registered(_i, NULL);
    double loss[2] = {-7.0, 42.0};
    const lh_adapter *cands[2] = {cand_a, NULL};
    lh_error err;
    ck_assert_int_eq(lh_backend_score(b, cands, 0, examples, loss, &err), LH_OK);
    ck_assert_int_eq(lh_backend_score(b, NULL, 0, examples, NULL, &err), LH_OK);
    ck_assert(loss[0] == -7.0 && loss[1] == 42.0);
    lh_backend_close(b);
}
END_TEST

/* [a, b, NULL] in one call equals each scored alone, in either order, and
 * a base score before and after the batch is the same. */
START_TEST(batch_equals_alone)
{
    const fixture *f = fixture_for(_i);
    lh_backend *b = open_registered(_i, NULL);
    const char *name = f->backend;
    double base_before = score_one(b, NULL);
    const lh_adapter *cands[3] = {cand_a, cand_b, NULL};
    double loss[3] = {-1, -1, -1};
    lh_error err;
    lh_status st = lh_backend_score(b, cands, 3, examples, loss, &err);
    ck_assert_msg(st == LH_OK, "%s: score: %s", name, err.msg);
    double alone_b = score_one(b, cand_b), alone_a = score_one(b, cand_a);
    double base_after = score_one(b, NULL);
    ck_assert_msg(alone_a != alone_b, "%s: a and b score the same (%g): weak test data", name,
                  alone_a);
    assert_same_loss(f, "a", loss[0], alone_a);
    assert_same_loss(f, "b", loss[1], alone_b);
    assert_same_loss(f, "base", loss[2], base_before);
    ck_assert_msg(base_before == base_after, "%s: base %.17g before, %.17g after", name,
                  base_before, base_after);
    lh_backend_close(b);
}
END_TEST

/* A NaN weight is not an error: LH_OK, NaN for it, real losses for the rest. */
START_TEST(nan_candidate)
{
    const fixture *f = fixture_for(_i);
    int known = known_failure(f, "nan_candidate");
    lh_backend *b = open_registered(_i, NULL);
    double alone_a = score_one(b, cand_a), alone_b = score_one(b, cand_b);
    lh_adapter *bad = copy_adapter(cand_a);
    bad->targets[0].A[0] = NAN;
    const lh_adapter *cands[3] = {cand_a, bad, cand_b};
    double loss[3] = {-1, -1, -1};
    lh_error err;
    lh_error_clear(&err);
    lh_status st = lh_backend_score(b, cands, 3, examples, loss, &err);
    int ok = st == LH_OK && isnan(loss[1]) && same_loss(f, loss[0], alone_a) &&
             same_loss(f, loss[2], alone_b);
    if (known && !ok)
        fprintf(stderr, "check_backend_contract: KNOWN FAILURE %s nan_candidate: status %d (%s), "
                        "loss {%g, %g, %g}\n", f->backend, st, err.msg, loss[0], loss[1], loss[2]);
    ck_assert_msg(!known || !ok, "%s passes nan_candidate now: remove it from known_failures in "
                  "fixtures[]", f->backend);
    if (!known) {
        ck_assert_msg(st == LH_OK, "%s: a NaN candidate is an error: status %d: %s", f->backend,
                      st, err.msg);
        ck_assert_msg(isnan(loss[1]), "%s: NaN candidate scored %g", f->backend, loss[1]);
        assert_same_loss(f, "a beside a NaN candidate", loss[0], alone_a);
        assert_same_loss(f, "b beside a NaN candidate", loss[2], alone_b);
    }
    lh_adapter_free(bad);
    lh_backend_close(b);
}
END_TEST

/* A flag set before the call: LH_ERR_INTERRUPTED at once, and close works. */
START_TEST(interrupted)
{
    volatile sig_atomic_t flag = 0;
    lh_backend *b = open_registered(_i, &flag);
    const char *name = lh_backend_name(b);
    flag = 1;
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    const lh_adapter *cands[2] = {cand_a, NULL};
    double loss[2];
    lh_error err;
    lh_error_clear(&err);
    lh_status st = lh_backend_score(b, cands, 2, examples, loss, &err);
    ck_assert_msg(st == LH_ERR_INTERRUPTED, "%s: score: status %d (%s)", name, st, err.msg);
    ck_assert_msg(err.msg[0] != '\0', "%s: no message", name);
    if (lh_backend_iface(b)->generate) {
        char **outs = calloc(examples->n, sizeof *outs);
        ck_assert_ptr_nonnull(outs);
        st = lh_backend_generate(b, NULL, examples, 4, outs, &err);
        ck_assert_msg(st == LH_ERR_INTERRUPTED, "%s: generate: status %d (%s)", name, st,
                      err.msg);
        for (size_t i = 0; i < examples->n; i++)
            ck_assert_msg(outs[i] == NULL, "%s: generate left outputs[%zu]", name, i);
        free(outs);
    }
    lh_backend_close(b);
    ck_assert_msg(seconds_since(&t0) < 5, "%s: took %g s to stop and close", name,
                  seconds_since(&t0));
}
END_TEST

START_TEST(describe)
{
    lh_backend *b = open_registered(_i, NULL);
    lh_backend_info info;
    memset(&info, 'x', sizeof info); /* describe must terminate what it writes */
    lh_backend_describe(b, &info);
    ck_assert_ptr_nonnull(memchr(info.identity, '\0', sizeof info.identity));
    ck_assert_ptr_nonnull(memchr(info.description, '\0', sizeof info.description));
    ck_assert_msg(info.description[0] != '\0', "%s: empty description", lh_backend_name(b));
    ck_assert_msg(!strchr(info.description, '\n'), "%s: description '%s' is not one line",
                  lh_backend_name(b), info.description);
    lh_backend_close(b);
}
END_TEST

START_TEST(count_tokens)
{
    const fixture *f = fixture_for(_i);
    lh_backend *b = open_registered(_i, NULL);
    size_t n = 0;
    lh_error err;
    lh_status st = lh_backend_count_tokens(b, examples, &n, &err);
    if (!lh_backend_iface(b)->count_tokens) {
        ck_assert_int_eq(st, LH_ERR_UNSUPPORTED);
        ck_assert_msg(f->tokens == 0, "%s: the fixture expects %zu tokens, the backend does not "
                      "count", f->backend, f->tokens);
    } else {
        ck_assert_msg(st == LH_OK, "%s: count_tokens: %s", f->backend, err.msg);
        ck_assert_msg(n > 0, "%s: counted 0 tokens", f->backend);
        if (f->tokens)
            ck_assert_msg(n == f->tokens, "%s: %zu tokens, want %zu", f->backend, n, f->tokens);
    }
    lh_backend_close(b);
}
END_TEST

/* One string per example for the base model. */
START_TEST(generate)
{
    lh_backend *b = open_registered(_i, NULL);
    const char *name = lh_backend_name(b);
    char **outs = calloc(examples->n, sizeof *outs);
    ck_assert_ptr_nonnull(outs);
    lh_error err;
    lh_status st = lh_backend_generate(b, NULL, examples, 4, outs, &err);
    if (!lh_backend_iface(b)->generate) {
        ck_assert_int_eq(st, LH_ERR_UNSUPPORTED);
    } else {
        ck_assert_msg(st == LH_OK, "%s: generate: status %d: %s", name, st, err.msg);
        for (size_t i = 0; i < examples->n; i++)
            ck_assert_msg(outs[i] != NULL, "%s: no output for example %zu", name, i + 1);
    }
    for (size_t i = 0; i < examples->n; i++)
        free(outs[i]);
    free(outs);
    lh_backend_close(b);
}
END_TEST

/* A missing model or command: an error naming it. */
START_TEST(missing_input_named)
{
    const fixture *f = fixture_for(_i);
    lh_backend *b = NULL;
    lh_error err;
    lh_error_clear(&err);
    lh_status st = open_with(f->backend, f->missing_params, NULL, &b, &err);
    ck_assert_msg(st != LH_OK, "%s: opened on a missing input", f->backend);
    ck_assert_ptr_null(b);
    ck_assert_msg(strstr(err.msg, f->missing_named) != NULL, "%s: '%s' does not name '%s'",
                  f->backend, err.msg, f->missing_named);
    ck_assert_msg(!strchr(err.msg, '\n'), "%s: '%s' is not one line", f->backend, err.msg);
}
END_TEST

/* Each required key left out: LH_ERR_ARG naming the option. */
START_TEST(required_keys_named)
{
    const fixture *f = fixture_for(_i);
    const lh_backend_i *bi = registered(_i);
    for (const lh_backend_key *k = bi->keys; k && k->key; k++) {
        if (!k->required)
            continue;
        const char *params[MAX_PARAMS];
        size_t np = 0;
        for (size_t j = 0; f->params[j]; j += 2)
            if (strcmp(f->params[j], k->key)) {
                params[np++] = f->params[j];
                params[np++] = f->params[j + 1];
            }
        params[np] = NULL;
        lh_backend *b = NULL;
        lh_error err;
        ck_assert_int_eq(open_with(f->backend, params, NULL, &b, &err), LH_ERR_ARG);
        char option[128];
        snprintf(option, sizeof option, "--%s", k->key);
        ck_assert_msg(strstr(err.msg, option) != NULL, "%s without %s: '%s'", f->backend,
                      k->key, err.msg);
    }
}
END_TEST

/* A row whose backend is not registered any more is a stale row. */
START_TEST(every_row_registered)
{
    for (size_t i = 0; i < N_FIXTURES; i++)
        ck_assert_msg(lh_backend_find(fixtures[i].backend) != NULL,
                      "fixtures[] has a row for '%s', which is not registered",
                      fixtures[i].backend);
    for (const lh_backend_i *const *bi = lh_backend_list(); *bi; bi++)
        ck_assert_msg(fixture_of((*bi)->name) != NULL,
                      "backend '%s' is registered but has no row in fixtures[] of "
                      "tests/check_backend_contract.c: add one saying how to open it on test data",
                      (*bi)->name);
}
END_TEST

static Suite *contract_suite(void)
{
    list_runnable();
    int n = n_runnable;
    Suite *s = suite_create("backend contract");
    TCase *tc = tcase_create("contract");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, every_row_registered);
    tcase_add_loop_test(tc, base_model, 0, n);
    tcase_add_loop_test(tc, no_candidates, 0, n);
    tcase_add_loop_test(tc, batch_equals_alone, 0, n);
    tcase_add_loop_test(tc, nan_candidate, 0, n);
    tcase_add_loop_test(tc, interrupted, 0, n);
    tcase_add_loop_test(tc, describe, 0, n);
    tcase_add_loop_test(tc, count_tokens, 0, n);
    tcase_add_loop_test(tc, generate, 0, n);
    tcase_add_loop_test(tc, missing_input_named, 0, n);
    tcase_add_loop_test(tc, required_keys_named, 0, n);
    suite_add_tcase(s, tc);
    return s;
}

/* The exec row's command: test_backend next to this suite's directory,
 * with absolute paths so the child does not depend on the cwd. */
static int make_exec_cmd(void)
{
    char exe[PATH_MAX], fix[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0 || !realpath(FIX, fix))
        return -1;
    exe[n] = '\0';
    *strrchr(exe, '/') = '\0';
    snprintf(exec_cmd, sizeof exec_cmd,
             "'%s/tools/test_backend' --target '%s/a-lora=0.7' --target '%s/a-lora2=0.2' "
             "--generate", exe, fix, fix);
    return 0;
}

/* A port free on 127.0.0.1 now (the kernel's choice for port 0). */
static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    int port = fd >= 0 && !bind(fd, (struct sockaddr *)&a, sizeof a) &&
                       !getsockname(fd, (struct sockaddr *)&a, &len)
                   ? ntohs(a.sin_port) : -1;
    if (fd >= 0)
        close(fd);
    return port;
}

/* a-lora and a-lora2 as F32 GGUF adapters in dir. */
static int write_gguf_modules(const char *dir)
{
    lh_gguf_arch arch;
    lh_error err;
    if (lh_gguf_arch_from_model(FIX "/a.gguf", &arch, &err) != LH_OK)
        return fprintf(stderr, "check_backend_contract: %s\n", err.msg), -1;
    const char *names[2] = {"a-lora", "a-lora2"};
    for (int i = 0; i < 2; i++) {
        char in[PATH_MAX], out[PATH_MAX];
        snprintf(in, sizeof in, FIX "/%s", names[i]);
        snprintf(out, sizeof out, "%s/%s.gguf", dir, names[i]);
        lh_adapter *a = NULL;
        lh_gguf_save_opts so = {.dtype = LH_F32, .force = 1};
        lh_status st = lh_adapter_load(in, &a, &err);
        if (!st)
            st = lh_gguf_save_lora_opts(a, &arch, out, &so, &err);
        lh_adapter_free(a);
        if (st)
            return fprintf(stderr, "check_backend_contract: %s\n", err.msg), -1;
    }
    return 0;
}

/* The server row's llama-server: started when $LLAMA_BINDIR holds one,
 * ready when the backend opens on it (within 60 s); it dies with this
 * process (PR_SET_PDEATHSIG) and is stopped by pid at the end. */
static pid_t server_pid;
static char server_dir[] = "/tmp/lorahub-contract-XXXXXX";

static void start_server(void)
{
    const char *bindir = getenv("LLAMA_BINDIR");
    char bin[PATH_MAX], m1[PATH_MAX], m2[PATH_MAX], port_text[16];
    snprintf(bin, sizeof bin, "%s/llama-server", bindir ? bindir : "");
    int port = free_port();
    if (!bindir || !*bindir || access(bin, X_OK) || port < 0 || !mkdtemp(server_dir) ||
        write_gguf_modules(server_dir))
        return;
    snprintf(m1, sizeof m1, "%s/a-lora.gguf:0", server_dir);
    snprintf(m2, sizeof m2, "%s/a-lora2.gguf:0", server_dir);
    snprintf(port_text, sizeof port_text, "%d", port);
    pid_t pid = fork();
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        int null = open("/dev/null", O_WRONLY);
        dup2(null, 1);
        dup2(null, 2);
        execl(bin, bin, "-m", FIX "/a.gguf", "--lora-scaled", m1, "--lora-scaled", m2, "--host",
              "127.0.0.1", "--port", port_text, "-t", "1", "-np", "1", "-c", "1024", "-fa", "off",
              "-ctk", "f32", "-ctv", "f32", "--no-webui", (char *)NULL);
        _exit(127);
    }
    if (pid < 0)
        return;
    server_pid = pid;
    snprintf(server_url, sizeof server_url, "127.0.0.1:%d", port);
    const char *params[] = {"server", server_url, NULL};
    for (int i = 0; i < 600; i++) {
        lh_backend *b = NULL;
        lh_error err;
        if (open_with("server", params, NULL, &b, &err) == LH_OK) {
            lh_backend_close(b);
            return;
        }
        if (waitpid(pid, NULL, WNOHANG) == pid)
            break;
        usleep(100000);
    }
    fprintf(stderr, "check_backend_contract: llama-server on port %d did not start\n", port);
    server_url[0] = '\0';
}

static void stop_server(void)
{
    if (server_pid > 0) {
        kill(server_pid, SIGTERM);
        waitpid(server_pid, NULL, 0);
    }
    if (strcmp(server_dir, "/tmp/lorahub-contract-XXXXXX"))
        lh_rmtree(server_dir);
}

/* The server backend's warning channel: a server that stops answering is
 * dropped with one line to opts.warn, and with no warn set nothing reaches
 * stderr (library code does not print). Runs last: it kills the server. */
static int n_warned;
static char warned[2048];

static void on_warn(void *ud, const char *line)
{
    ck_assert_ptr_eq(ud, &n_warned);
    n_warned++;
    snprintf(warned, sizeof warned, "%s", line);
}

START_TEST(server_warning_channel)
{
    if (server_absent())
        return;
    const char *params[] = {"server", server_url, "backend-timeout", "10", NULL};
    lh_backend_opts o;
    lh_backend_opts_default(&o);
    o.params = params;
    lh_backend *quiet = NULL, *loud = NULL;
    lh_error err;
    ck_assert_msg(lh_backend_open("server", &o, &quiet, &err) == LH_OK, "%s", err.msg);
    o.warn = on_warn;
    o.warn_ud = &n_warned;
    ck_assert_msg(lh_backend_open("server", &o, &loud, &err) == LH_OK, "%s", err.msg);
    ck_assert_int_eq(kill(server_pid, SIGKILL), 0);
    const lh_adapter *base = NULL;
    double loss;
    ck_assert_int_eq(lh_backend_score(loud, &base, 1, examples, &loss, &err), LH_ERR_BACKEND);
    ck_assert_msg(strstr(err.msg, "no server left"), "%s", err.msg);
    ck_assert_int_eq(n_warned, 1);
    char want[128];
    snprintf(want, sizeof want, "dropping server http://%s after 3 failures in a row: ", server_url);
    ck_assert_msg(!strncmp(warned, want, strlen(want)), "warned '%s'", warned);
    FILE *caught = tmpfile();
    ck_assert_ptr_nonnull(caught);
    fflush(stderr);
    int saved = dup(2);
    dup2(fileno(caught), 2);
    lh_status st = lh_backend_score(quiet, &base, 1, examples, &loss, &err);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    ck_assert_int_eq(st, LH_ERR_BACKEND);
    ck_assert_int_eq(fseek(caught, 0, SEEK_END), 0);
    ck_assert_int_eq(ftell(caught), 0);
    fclose(caught);
    lh_backend_close(quiet);
    lh_backend_close(loud);
}
END_TEST

int main(void)
{
    if (make_exec_cmd() < 0) {
        fprintf(stderr, "check_backend_contract: cannot find %s or this program's path\n", FIX);
        return EXIT_FAILURE;
    }
    start_server();
    if (server_absent() && getenv("LORAHUB_REQUIRE_LLAMACPP")) {
        fprintf(stderr, "check_backend_contract: no llama-server in $LLAMA_BINDIR, and "
                        "LORAHUB_REQUIRE_LLAMACPP is set\n");
        stop_server();
        return EXIT_FAILURE;
    }
    Suite *suite = contract_suite();
    TCase *tc = tcase_create("server warnings"); /* after the contract: it kills the server */
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, server_warning_channel);
    suite_add_tcase(suite, tc);
    SRunner *sr = srunner_create(suite);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    stop_server();
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

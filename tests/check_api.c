/* tests/check_api.c - the public API (include/lorahub.h) as a program sees
 * it: nothing but the public header, except lh_rmtree to clean up. Each
 * function's success and its refusals, with one-line messages that name
 * the culprit; a scorer of the caller's own behind the backend calls. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "include/lorahub.h"
#include "lib/fsutil.h"

#define FIX "tests/fixtures/native/"

static void assert_one_line(const lh_error *err, const char *needle)
{
    const char *m = lh_error_message(err);
    ck_assert_ptr_null(strchr(m, '\n'));
    ck_assert_msg(strstr(m, needle), "message '%s' lacks '%s'", m, needle);
}

START_TEST(test_version)
{
    ck_assert_uint_eq(lh_version_number(), LH_VERSION_NUMBER);
    ck_assert_uint_eq(lh_version_number(),
                      LH_VERSION_MAJOR * 10000u + LH_VERSION_MINOR * 100u + LH_VERSION_PATCH);
    char want[32];
    snprintf(want, sizeof want, "%d.%d.%d", LH_VERSION_MAJOR, LH_VERSION_MINOR, LH_VERSION_PATCH);
    ck_assert_str_eq(lh_version_string(), want);
}
END_TEST

START_TEST(test_status)
{
    ck_assert_str_eq(lh_strerror(LH_OK), "success");
    ck_assert_str_eq(lh_strerror(LH_ERR_FORMAT), "malformed file");
    ck_assert_str_eq(lh_strerror((lh_status)999), "unknown error");
    lh_error err = {0};
    err.code = LH_ERR_IO;
    ck_assert_str_eq(lh_error_message(&err), "input/output error");
    ck_assert_ptr_nonnull(lh_error_message(NULL));
}
END_TEST

START_TEST(test_adapter_getters)
{
    lh_error err = {0};
    lh_adapter *a = NULL;
    ck_assert_int_eq(lh_adapter_load(FIX "a-lora", &a, &err), LH_OK);
    ck_assert_str_eq(lh_adapter_name(a), "a-lora");
    ck_assert_int_eq(lh_adapter_max_rank(a), 4);
    size_t n = lh_adapter_n_targets(a);
    ck_assert_uint_gt(n, 0);
    uint64_t params = 0;
    const char *prev = "";
    for (size_t i = 0; i < n; i++) {
        const char *name = NULL;
        int r = 0, d_in = 0, d_out = 0;
        const float *A = NULL, *B = NULL;
        float scale = 0;
        ck_assert_int_eq(lh_adapter_target(a, i, &name, &r, &d_in, &d_out, &A, &B, &scale, &err),
                         LH_OK);
        ck_assert_int_lt(strcmp(prev, name), 0); /* sorted by name */
        ck_assert_int_eq(r, 4);
        ck_assert(d_in > 0 && d_out > 0 && A && B);
        ck_assert(fabsf(scale - 2.0f) < 1e-6f); /* lora_alpha 8 / r 4 */
        params += (uint64_t)r * (uint64_t)(d_in + d_out);
        prev = name;
    }
    ck_assert_uint_eq(lh_adapter_n_params(a), params);
    /* Every out-pointer may be NULL. */
    ck_assert_int_eq(lh_adapter_target(a, 0, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
                     LH_OK);
    ck_assert_int_eq(lh_adapter_target(a, n, NULL, NULL, NULL, NULL, NULL, NULL, NULL, &err),
                     LH_ERR_ARG);
    assert_one_line(&err, "a-lora");
    lh_adapter_free(a);

    ck_assert_ptr_null(lh_adapter_name(NULL));
    ck_assert_uint_eq(lh_adapter_n_targets(NULL), 0);
    a = (lh_adapter *)1;
    ck_assert_int_ne(lh_adapter_load(FIX "no-such-adapter", &a, &err), LH_OK);
    ck_assert_ptr_null(a);
    assert_one_line(&err, "no-such-adapter");
}
END_TEST

START_TEST(test_adapter_save)
{
    char dir[] = "/tmp/check_api.XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    char out[sizeof dir + 16];
    snprintf(out, sizeof out, "%s/saved", dir);
    lh_error err = {0};
    lh_adapter *a = NULL, *back = NULL;
    ck_assert_int_eq(lh_adapter_load(FIX "a-lora", &a, &err), LH_OK);
    ck_assert_int_eq(lh_adapter_save(a, out, "bf16", 0, &err), LH_OK);
    ck_assert_int_eq(lh_adapter_save(a, out, "bf16", 0, &err), LH_ERR_EXISTS);
    assert_one_line(&err, "saved");
    ck_assert_int_eq(lh_adapter_save(a, out, NULL, 1, &err), LH_OK); /* f32, replaced */
    ck_assert_int_eq(lh_adapter_save(a, out, "f8", 1, &err), LH_ERR_ARG);
    assert_one_line(&err, "'f8'");
    ck_assert_int_eq(lh_adapter_load(out, &back, &err), LH_OK);
    ck_assert_uint_eq(lh_adapter_n_targets(back), lh_adapter_n_targets(a));
    /* F32 round trip with the scale folded into B: B' = scale * B exactly. */
    const float *B = NULL, *B2 = NULL;
    float scale = 0, scale2 = 0;
    int r = 0, d_out = 0;
    ck_assert_int_eq(lh_adapter_target(a, 0, NULL, &r, NULL, &d_out, NULL, &B, &scale, &err), LH_OK);
    ck_assert_int_eq(lh_adapter_target(back, 0, NULL, NULL, NULL, NULL, NULL, &B2, &scale2, &err),
                     LH_OK);
    ck_assert(scale2 == 1.0f);
    for (int k = 0; k < r * d_out; k++)
        ck_assert(B2[k] == scale * B[k]);
    lh_adapter_free(back);
    lh_adapter_free(a);
    lh_rmtree(dir);
}
END_TEST

START_TEST(test_compose)
{
    lh_error err = {0};
    lh_adapter *m[2] = {NULL, NULL}, *out = NULL;
    ck_assert_int_eq(lh_adapter_load(FIX "a-lora", &m[0], &err), LH_OK);
    ck_assert_int_eq(lh_adapter_load(FIX "a-lora2", &m[1], &err), LH_OK);
    const lh_adapter *const *mods = (const lh_adapter *const *)m;
    const double w[2] = {0.5, 0.5};
    ck_assert_int_eq(lh_adapter_compose("cat", mods, 2, w, &out, &err), LH_OK);
    ck_assert_int_eq(lh_adapter_max_rank(out),
                     lh_adapter_max_rank(m[0]) + lh_adapter_max_rank(m[1]));
    ck_assert_uint_eq(lh_adapter_n_targets(out), lh_adapter_n_targets(m[0]));
    lh_adapter_free(out);
    ck_assert_int_eq(lh_adapter_compose("lorahub", mods, 2, w, &out, &err), LH_OK);
    ck_assert_int_eq(lh_adapter_max_rank(out), 4);
    lh_adapter_free(out);

    out = (lh_adapter *)1;
    ck_assert_int_eq(lh_adapter_compose("nope", mods, 2, w, &out, &err), LH_ERR_ARG);
    ck_assert_ptr_null(out);
    assert_one_line(&err, "'nope'");
    ck_assert_int_eq(lh_adapter_compose("cat", mods, 0, w, &out, &err), LH_ERR_ARG);
    lh_adapter_free(m[1]);
    lh_adapter_free(m[0]);
}
END_TEST

START_TEST(test_examples)
{
    lh_error err = {0};
    const char *in[] = {"2+2=", "abc"}, *outs[] = {"4", "def"};
    lh_examples *ex = NULL;
    ck_assert_int_eq(lh_examples_from_arrays(in, outs, 2, &ex, &err), LH_OK);
    ck_assert_uint_eq(lh_examples_count(ex), 2);
    ck_assert_str_eq(lh_examples_input(ex, 1), "abc");
    ck_assert_str_eq(lh_examples_output(ex, 0), "4");
    ck_assert_ptr_null(lh_examples_input(ex, 2));
    ck_assert_ptr_null(lh_examples_output(NULL, 0));
    ck_assert_uint_eq(lh_examples_count(NULL), 0);
    lh_examples_free(ex);
    ck_assert_int_eq(lh_examples_load(FIX "examples.jsonl", &ex, &err), LH_OK);
    ck_assert_str_eq(lh_examples_input(ex, 0), "2+2=");
    lh_examples_free(ex);
    ck_assert_int_ne(lh_examples_load(FIX "missing.jsonl", &ex, &err), LH_OK);
    assert_one_line(&err, "missing.jsonl");
}
END_TEST

START_TEST(test_native_backend)
{
    lh_error err = {0};
    lh_backend *b = (lh_backend *)1;
    ck_assert_int_eq(lh_backend_new("nope", NULL, &b, &err), LH_ERR_ARG);
    ck_assert_ptr_null(b);
    assert_one_line(&err, "'nope'");
    ck_assert_int_eq(lh_backend_new("native", NULL, &b, &err), LH_ERR_ARG);
    assert_one_line(&err, "--base");
    const char *bad[] = {"base", FIX "a", "threads", "many", NULL};
    ck_assert_int_ne(lh_backend_new("native", bad, &b, &err), LH_OK);
    assert_one_line(&err, "many");

    const char *settings[] = {"base", FIX "a", "threads", "1", NULL};
    ck_assert_int_eq(lh_backend_new("native", settings, &b, &err), LH_OK);
    ck_assert_str_eq(lh_backend_name(b), "native");
    lh_examples *ex = NULL;
    lh_adapter *a = NULL;
    ck_assert_int_eq(lh_examples_load(FIX "examples.jsonl", &ex, &err), LH_OK);
    ck_assert_int_eq(lh_adapter_load(FIX "a-lora", &a, &err), LH_OK);
    const lh_adapter *cands[2] = {NULL, a};
    double loss[2] = {0, 0}, again = 0;
    ck_assert_int_eq(lh_backend_score(b, cands, 2, ex, loss, &err), LH_OK);
    ck_assert(isfinite(loss[0]) && isfinite(loss[1]) && loss[0] > 0 && loss[0] != loss[1]);
    ck_assert_int_eq(lh_backend_score(b, cands, 1, ex, &again, &err), LH_OK);
    ck_assert(fabs(again - loss[0]) < 1e-4);
    ck_assert_int_eq(lh_backend_score(b, cands, 0, ex, NULL, &err), LH_OK);
    size_t tokens = 0;
    ck_assert_int_eq(lh_backend_count_tokens(b, ex, &tokens, &err), LH_OK);
    ck_assert_uint_gt(tokens, lh_examples_count(ex) - 1);
    lh_adapter_free(a);
    lh_examples_free(ex);
    lh_backend_close(b);
    lh_backend_close(NULL);
}
END_TEST

/* A scorer of the caller's own: loss = 100 * examples + rank (base: 0.5),
 * or the failure it is told to give. */
typedef struct fake {
    int calls;
    lh_status fail_with;
    const char *message;
} fake;

static lh_status fake_score(void *user_data, const lh_adapter *const *cands, int n,
                            const lh_examples *ex, double *loss, lh_error *err)
{
    fake *f = user_data;
    f->calls++;
    if (f->fail_with != LH_OK) {
        if (f->message)
            snprintf(err->msg, sizeof err->msg, "%s", f->message);
        return f->fail_with;
    }
    for (int i = 0; i < n; i++)
        loss[i] = 100.0 * (double)lh_examples_count(ex) +
                  (cands[i] ? lh_adapter_max_rank(cands[i]) : 0.5);
    return LH_OK;
}

START_TEST(test_own_scorer)
{
    lh_error err = {0};
    fake f = {0};
    lh_backend *b = NULL;
    ck_assert_int_eq(lh_backend_from_scorer("mine", NULL, &f, &b, &err), LH_ERR_ARG);
    ck_assert_int_eq(lh_backend_from_scorer("mine", fake_score, &f, &b, &err), LH_OK);
    ck_assert_str_eq(lh_backend_name(b), "mine");
    const char *in[] = {"x", "y", "z"}, *outs[] = {"1", "2", "3"};
    lh_examples *ex = NULL;
    lh_adapter *a = NULL;
    ck_assert_int_eq(lh_examples_from_arrays(in, outs, 3, &ex, &err), LH_OK);
    ck_assert_int_eq(lh_adapter_load(FIX "a-lora", &a, &err), LH_OK);
    const lh_adapter *cands[2] = {a, NULL};
    double loss[2];
    ck_assert_int_eq(lh_backend_score(b, cands, 2, ex, loss, &err), LH_OK);
    ck_assert(loss[0] == 304.0 && loss[1] == 300.5);
    ck_assert_int_eq(lh_backend_score(b, cands, 0, ex, loss, &err), LH_OK);
    ck_assert_int_eq(f.calls, 1); /* n == 0 never reaches the scorer */

    snprintf(err.msg, sizeof err.msg, "stale");
    f.fail_with = LH_ERR_IO;
    ck_assert_int_eq(lh_backend_score(b, cands, 1, ex, loss, &err), LH_ERR_IO);
    assert_one_line(&err, "scorer 'mine' failed: input/output error");
    f.message = "model server\ngone";
    ck_assert_int_eq(lh_backend_score(b, cands, 1, ex, loss, &err), LH_ERR_IO);
    assert_one_line(&err, "scorer 'mine': model server?gone");
    f.fail_with = (lh_status)77;
    ck_assert_int_eq(lh_backend_score(b, cands, 1, ex, loss, &err), LH_ERR_BACKEND);
    size_t tokens;
    ck_assert_int_eq(lh_backend_count_tokens(b, ex, &tokens, &err), LH_ERR_UNSUPPORTED);
    lh_backend_close(b);
    lh_adapter_free(a);
    lh_examples_free(ex);
}
END_TEST


/* ---- the search ---------------------------------------------------------- */

#define ZOO "examples/zoo/"
static const char *const zoo_mods = ZOO "modules/add1," ZOO "modules/add3," ZOO "modules/reverse";

static lh_search *zoo_search(const char *select, lh_error *err)
{
    lh_search *s = NULL;
    ck_assert_int_eq(lh_search_new(&s, err), LH_OK);
    ck_assert_int_eq(lh_search_set(s, "modules", zoo_mods, err), LH_OK);
    ck_assert_int_eq(lh_search_set(s, "examples", ZOO "tasks/add2/fewshot.jsonl", err), LH_OK);
    ck_assert_int_eq(lh_search_set(s, "select", select, err), LH_OK);
    return s;
}

START_TEST(test_search_best_single)
{
    lh_error err = {0};
    lh_search *s = zoo_search("best-single", &err);
    ck_assert_int_eq(lh_search_set(s, "base", ZOO "base", &err), LH_OK);
    ck_assert(isnan(lh_search_best_loss(s)) && lh_search_adapter(s) == NULL);
    ck_assert_msg(lh_search_run(s, NULL, &err) == LH_OK, "%s", err.msg);
    ck_assert_uint_eq(lh_search_n_modules(s), 3);
    /* The chosen module has weight 1, the others 0, and the reported loss
     * is that module's own loss, scored here independently. */
    size_t chosen = 3;
    for (size_t i = 0; i < 3; i++) {
        double w = lh_search_weight(s, i);
        ck_assert(w == 0.0 || w == 1.0);
        if (w == 1.0)
            chosen = i;
    }
    ck_assert_uint_lt(chosen, 3);
    char path[256];
    snprintf(path, sizeof path, ZOO "modules/%s", lh_search_module_name(s, chosen));
    lh_adapter *a = NULL;
    lh_examples *ex = NULL;
    lh_backend *b = NULL;
    const char *settings[] = {"base", ZOO "base", NULL};
    ck_assert_int_eq(lh_adapter_load(path, &a, &err), LH_OK);
    ck_assert_int_eq(lh_examples_load(ZOO "tasks/add2/fewshot.jsonl", &ex, &err), LH_OK);
    ck_assert_int_eq(lh_backend_new("native", settings, &b, &err), LH_OK);
    const lh_adapter *cands[3];
    double loss[3];
    for (size_t i = 0; i < 3; i++) {
        snprintf(path, sizeof path, ZOO "modules/%s", lh_search_module_name(s, i));
        lh_adapter *m = NULL;
        ck_assert_int_eq(lh_adapter_load(path, &m, &err), LH_OK);
        cands[0] = m;
        ck_assert_int_eq(lh_backend_score(b, cands, 1, ex, &loss[i], &err), LH_OK);
        lh_adapter_free(m);
    }
    for (size_t i = 0; i < 3; i++)
        ck_assert(loss[chosen] <= loss[i]);
    ck_assert_msg(fabs(lh_search_best_loss(s) - loss[chosen]) < 1e-5, "%g vs %g",
                  lh_search_best_loss(s), loss[chosen]);
    ck_assert_ptr_nonnull(lh_search_adapter(s));
    ck_assert_int_eq(lh_search_run(s, NULL, &err), LH_ERR_ARG); /* runs once */
    ck_assert_int_eq(lh_search_set(s, "budget", "5", &err), LH_ERR_ARG);
    lh_backend_close(b);
    lh_examples_free(ex);
    lh_adapter_free(a);
    lh_search_free(s);
    lh_search_free(NULL);
}
END_TEST

/* A scorer of the caller's own that forwards to a native backend: the
 * search through it must find exactly what the search through the
 * settings' backend finds. */
static lh_status forward_score(void *user_data, const lh_adapter *const *cands, int n,
                               const lh_examples *ex, double *loss, lh_error *err)
{
    return lh_backend_score(user_data, cands, n, ex, loss, err);
}

START_TEST(test_search_own_backend)
{
    lh_error err = {0};
    const char *settings[] = {"base", ZOO "base", "threads", "1", NULL};
    lh_backend *native = NULL, *mine = NULL;
    ck_assert_int_eq(lh_backend_new("native", settings, &native, &err), LH_OK);
    ck_assert_int_eq(lh_backend_from_scorer("forward", forward_score, native, &mine, &err), LH_OK);
    lh_search *by_settings = zoo_search("search", &err), *by_mine = zoo_search("search", &err);
    const char *keys[][2] = {{"method", "cat"}, {"optimizer", "cobyla"}, {"budget", "6"},
                             {"preselect", "0"}};
    for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++) {
        ck_assert_int_eq(lh_search_set(by_settings, keys[k][0], keys[k][1], &err), LH_OK);
        ck_assert_int_eq(lh_search_set(by_mine, keys[k][0], keys[k][1], &err), LH_OK);
    }
    ck_assert_int_eq(lh_search_set(by_settings, "base", ZOO "base", &err), LH_OK);
    ck_assert_msg(lh_search_run(by_settings, NULL, &err) == LH_OK, "%s", err.msg);
    ck_assert_msg(lh_search_run(by_mine, mine, &err) == LH_OK, "%s", err.msg);
    ck_assert_int_eq(lh_search_evaluations(by_mine), 6);
    ck_assert_int_eq(lh_search_evaluations(by_settings), 6);
    int moved = 0;
    for (size_t i = 0; i < 3; i++) {
        ck_assert(lh_search_weight(by_mine, i) == lh_search_weight(by_settings, i));
        moved |= lh_search_weight(by_mine, i) != 0.0;
    }
    ck_assert(moved);
    ck_assert(lh_search_best_loss(by_mine) == lh_search_best_loss(by_settings));
    /* The caller's backend is still open and usable. */
    double loss;
    const lh_adapter *base = NULL;
    lh_examples *ex = NULL;
    ck_assert_int_eq(lh_examples_load(ZOO "tasks/add2/fewshot.jsonl", &ex, &err), LH_OK);
    ck_assert_int_eq(lh_backend_score(mine, &base, 1, ex, &loss, &err), LH_OK);
    lh_examples_free(ex);
    lh_search_free(by_settings);
    lh_search_free(by_mine);
    lh_backend_close(mine);
    lh_backend_close(native);
}
END_TEST

START_TEST(test_search_refusals)
{
    lh_error err = {0};
    lh_search *s = NULL;
    ck_assert_int_eq(lh_search_new(&s, &err), LH_OK);
    ck_assert_int_eq(lh_search_set(s, "no-such-key", "1", &err), LH_ERR_ARG);
    assert_one_line(&err, "no-such-key");
    ck_assert_int_eq(lh_search_set(s, "budget", "0", &err), LH_ERR_ARG);
    assert_one_line(&err, "budget");
    ck_assert_int_eq(lh_search_set(s, "method", "blend", &err), LH_ERR_ARG);
    assert_one_line(&err, "blend");
    ck_assert_int_eq(lh_search_run(s, NULL, &err), LH_ERR_ARG);
    assert_one_line(&err, "no modules");
    lh_search_free(s);
}
END_TEST

static Suite *api_suite(void)
{
    Suite *s = suite_create("api");
    TCase *tc = tcase_create("api");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_version);
    tcase_add_test(tc, test_status);
    tcase_add_test(tc, test_adapter_getters);
    tcase_add_test(tc, test_adapter_save);
    tcase_add_test(tc, test_compose);
    tcase_add_test(tc, test_examples);
    tcase_add_test(tc, test_native_backend);
    tcase_add_test(tc, test_own_scorer);
    tcase_add_test(tc, test_search_best_single);
    tcase_add_test(tc, test_search_own_backend);
    tcase_add_test(tc, test_search_refusals);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(api_suite());
    srunner_run_all(sr, CK_ENV);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

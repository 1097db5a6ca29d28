/* tests/check_llamacpp.c - the llamacpp backend beyond the common contract
 * (tests/check_backend_contract.c): how candidates reach llama.cpp.
 *
 * On the zoo base as an F16 GGUF (examples/zoo/base.gguf) and three zoo
 * modules: a cat composition, which the backend applies as its modules at
 * runtime scales (lh_adapter.sum), scores what the same adapter merged
 * into one GGUF file scores (1e-5 relative), and both move the loss away
 * from the base model's; zero weights are the base model exactly; a
 * module met again is not loaded again (same losses, no new file). Built
 * without llama.cpp, the suite has nothing to run (make check says so). */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "adapt/backend/backend.h"
#include "compose/compose.h"
#include "lib/adapter.h"
#include "lib/examples.h"

#ifdef LH_HAVE_LLAMACPP

#define ZOO "examples/zoo"

static lh_adapter *mods[3];
static lh_examples *examples;
static lh_backend *backend;

static void setup(void)
{
    static const char *const names[3] = {"add1", "add3", "sub1"};
    lh_error err;
    for (int i = 0; i < 3; i++) {
        char path[256];
        snprintf(path, sizeof path, ZOO "/modules/%s", names[i]);
        ck_assert_msg(lh_adapter_load(path, &mods[i], &err) == LH_OK, "%s", err.msg);
    }
    ck_assert_msg(lh_examples_load(ZOO "/tasks/add2/fewshot.jsonl", &examples, &err) == LH_OK,
                  "%s", err.msg);
    const char *params[] = {"base-gguf", ZOO "/base.gguf", "threads", "1", NULL};
    lh_backend_opts o;
    lh_backend_opts_default(&o);
    o.params = params;
    ck_assert_msg(lh_backend_open("llamacpp", &o, &backend, &err) == LH_OK, "%s", err.msg);
}

static void teardown(void)
{
    lh_backend_close(backend);
    for (int i = 0; i < 3; i++)
        lh_adapter_free(mods[i]);
    lh_examples_free(examples);
}

static double score(const lh_adapter *cand)
{
    double loss = NAN;
    lh_error err;
    ck_assert_msg(lh_backend_score(backend, &cand, 1, examples, &loss, &err) == LH_OK, "%s",
                  err.msg);
    ck_assert_msg(isfinite(loss), "loss %g", loss);
    return loss;
}

static lh_adapter *cat_of(const double *w)
{
    lh_merge_opts mo;
    lh_merge_opts_default(&mo);
    mo.method = LH_MERGE_CAT;
    lh_adapter *a = NULL;
    lh_error err;
    ck_assert_msg(lh_compose((const lh_adapter *const *)mods, 3, w, &mo, &a, &err) == LH_OK,
                  "%s", err.msg);
    ck_assert_msg(a->sum && a->sum->n == 3, "a cat composition carries its sum");
    return a;
}

/* The same adapter scored as modules at scales and as one merged file. */
static void scales_vs_merged(const double *w, double *by_scales, double *merged)
{
    lh_adapter *a = cat_of(w);
    *by_scales = score(a);
    lh_adapter_sum *sum = a->sum;
    a->sum = NULL; /* now only the merged factors describe it */
    *merged = score(a);
    a->sum = sum;
    lh_adapter_free(a);
}

START_TEST(cat_by_scales_equals_merged)
{
    const double w[3] = {0.6, 0.5, -0.3};
    double s, m;
    scales_vs_merged(w, &s, &m);
    double base = score(NULL);
    ck_assert_msg(fabs(s - m) <= 1e-5 * fabs(m), "cat by scales %.9g, merged %.9g", s, m);
    ck_assert_msg(fabs(s - base) > 1e-3 * base, "the cat (%.9g) does not move the base loss %.9g",
                  s, base);
}
END_TEST

START_TEST(single_module_by_scale_equals_module)
{
    const double w[3] = {0, 1, 0};
    double s, m;
    scales_vs_merged(w, &s, &m);
    double alone = score(mods[1]);
    ck_assert_msg(fabs(s - alone) <= 1e-5 * fabs(alone), "add3 at scale 1 %.9g, alone %.9g", s,
                  alone);
    ck_assert_msg(fabs(m - alone) <= 1e-5 * fabs(alone), "add3 merged %.9g, alone %.9g", m,
                  alone);
}
END_TEST

START_TEST(zero_weights_are_the_base)
{
    const double w[3] = {0, 0, 0};
    lh_adapter *a = cat_of(w);
    double base = score(NULL), zero = score(a);
    ck_assert_msg(zero == base, "w = 0 scores %.17g, the base %.17g", zero, base);
    lh_adapter_free(a);
}
END_TEST

/* A batch of cat candidates over the same modules: each equals itself
 * scored alone, whatever came before (the modules stay loaded). */
START_TEST(batch_of_cats)
{
    const double w1[3] = {1.0, 0.0, 0.0}, w2[3] = {0.2, -0.7, 1.1};
    lh_adapter *a = cat_of(w1), *b = cat_of(w2);
    const lh_adapter *cands[3] = {a, b, a};
    double loss[3];
    lh_error err;
    ck_assert_msg(lh_backend_score(backend, cands, 3, examples, loss, &err) == LH_OK, "%s",
                  err.msg);
    ck_assert_msg(loss[0] == loss[2], "the same candidate twice: %.17g, %.17g", loss[0], loss[2]);
    ck_assert_msg(loss[0] != loss[1], "different weights, same loss %.17g", loss[0]);
    ck_assert_msg(loss[1] == score(b), "b alone differs from b in the batch");
    lh_adapter_free(a);
    lh_adapter_free(b);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("llamacpp");
    TCase *tc = tcase_create("candidates");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, cat_by_scales_equals_merged);
    tcase_add_test(tc, single_module_by_scale_equals_module);
    tcase_add_test(tc, zero_weights_are_the_base);
    tcase_add_test(tc, batch_of_cats);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

#else

int main(void)
{
    return EXIT_SUCCESS; /* built without llama.cpp: make check prints the one line saying so */
}

#endif

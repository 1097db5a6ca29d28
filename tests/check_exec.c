/* tests/check_exec.c - the exec backend against tests/tools/test_backend.
 *
 * test_backend's loss is ||delta(cand) - T||^2 / ||T||^2 with T the delta
 * of one module written here, so: that module scores 0, the base model
 * (NULL) and an all-zero adapter score 1, the module at weight 2 scores 1,
 * whatever the random values are. */
#include <check.h>
#include <dirent.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "adapt/backend/backend.h"
#include "lib/fsutil.h"
#include "lib/peft.h"

static char tool[PATH_MAX + 32];
static char dir[64];
static char tmpdir[128];
static char *mod_dir;
static lh_adapter *mod, *mod2, *zero;
static lh_examples *ex;

static int dir_empty(const char *p)
{
    DIR *d = opendir(p);
    ck_assert_ptr_nonnull(d);
    struct dirent *e;
    int n = 0;
    while ((e = readdir(d)))
        n += strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
    closedir(d);
    return n == 0;
}

static void setup(void)
{
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    ck_assert_int_gt(n, 0);
    exe[n] = '\0';
    *strrchr(exe, '/') = '\0';
    snprintf(tool, sizeof tool, "%s/tools/test_backend", exe);
    ck_assert_msg(access(tool, X_OK) == 0, "missing %s", tool);
    strcpy(dir, "/tmp/check_exec.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(tmpdir, sizeof tmpdir, "%s/tmp", dir);
    ck_assert_int_eq(mkdir(tmpdir, 0700), 0);
    lh_target_shape sh[1] = {{"model.layers.0.self_attn.q_proj", 2, 5, 4}};
    lh_error err;
    ck_assert_int_eq(lh_adapter_create(sh, 1, &mod, &err), LH_OK);
    ck_assert_int_eq(lh_adapter_create(sh, 1, &mod2, &err), LH_OK);
    ck_assert_int_eq(lh_adapter_create(sh, 1, &zero, &err), LH_OK);
    lh_target *t = &mod->targets[0], *t2 = &mod2->targets[0];
    for (int i = 0; i < 10; i++)
        t->A[i] = t2->A[i] = (float)(i % 7) * 0.25f - 0.5f;
    for (int i = 0; i < 8; i++)
        t->B[i] = t2->B[i] = (float)(i % 5) * 0.3f - 0.4f;
    t2->scale = 2.0f;
    mod_dir = lh_path_join(dir, "mod");
    lh_peft_save_opts so = {LH_F32, 0, NULL};
    ck_assert_int_eq(lh_peft_save(mod, mod_dir, &so, &err), LH_OK);
    const char *in[2] = {"abc", "hello"}, *out[2] = {"cba", "olleh"};
    ck_assert_int_eq(lh_examples_from_arrays(in, out, 2, &ex, &err), LH_OK);
}

static void teardown(void)
{
    lh_adapter_free(mod);
    lh_adapter_free(mod2);
    lh_adapter_free(zero);
    lh_examples_free(ex);
    free(mod_dir);
    lh_rmtree(dir);
}

static lh_status open_with(const char *extra, double timeout, volatile sig_atomic_t *flag,
                           lh_backend **b, lh_error *err)
{
    char cmd[PATH_MAX * 3];
    snprintf(cmd, sizeof cmd, "%s --target %s=1 %s", tool, mod_dir, extra);
    char timeout_text[32];
    snprintf(timeout_text, sizeof timeout_text, "%g", timeout);
    const char *params[] = {"backend-cmd", cmd, "backend-timeout", timeout_text, NULL};
    lh_backend_opts o;
    lh_backend_opts_default(&o);
    o.params = params;
    o.tmp_dir = tmpdir;
    o.interrupt = flag;
    return lh_backend_open("exec", &o, b, err);
}

START_TEST(test_score_batch)
{
    lh_backend *b;
    lh_error err;
    ck_assert_int_eq(open_with("", 30, NULL, &b, &err), LH_OK);
    ck_assert(!dir_empty(tmpdir)); /* the private temp dir exists while open */
    const lh_adapter *cands[4] = {mod, NULL, zero, mod2};
    double loss[4];
    /* examples without a file: written to the temp dir for the child */
    ck_assert_ptr_null(ex->path);
    ck_assert_int_eq(lh_backend_score(b, cands, 4, ex, loss, &err), LH_OK);
    ck_assert_double_eq_tol(loss[0], 0.0, 1e-12);
    ck_assert_double_eq_tol(loss[1], 1.0, 1e-12);
    ck_assert_double_eq_tol(loss[2], 1.0, 1e-12);
    ck_assert_double_eq_tol(loss[3], 1.0, 1e-9); /* (2T - T)^2 / T^2 */
    /* generate is optional: this child does not do it */
    char *outs[2] = {NULL, NULL};
    ck_assert_int_eq(lh_backend_generate(b, mod, ex, 8, outs, &err), LH_ERR_UNSUPPORTED);
    ck_assert_ptr_nonnull(strstr(err.msg, "exec backend '"));
    lh_backend_close(b);
    ck_assert(dir_empty(tmpdir));
}
END_TEST

START_TEST(test_generate)
{
    lh_backend *b;
    lh_error err;
    ck_assert_int_eq(open_with("--generate", 30, NULL, &b, &err), LH_OK);
    char *outs[2] = {NULL, NULL};
    ck_assert_int_eq(lh_backend_generate(b, mod, ex, 8, outs, &err), LH_OK);
    ck_assert_str_eq(outs[0], "ABC");
    ck_assert_str_eq(outs[1], "HELLO");
    free(outs[0]);
    free(outs[1]);
    lh_backend_close(b);
    ck_assert(dir_empty(tmpdir));
}
END_TEST

START_TEST(test_interrupt_cuts_wait)
{
    volatile sig_atomic_t flag = 0;
    lh_backend *b;
    lh_error err;
    ck_assert_int_eq(open_with("--hang-after 1", 300, &flag, &b, &err), LH_OK);
    const lh_adapter *cands[1] = {mod};
    double loss[1];
    ck_assert_int_eq(lh_backend_score(b, cands, 1, ex, loss, &err), LH_OK);
    flag = 1; /* as a SIGINT handler would; the wait must notice it */
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    ck_assert_int_eq(lh_backend_score(b, cands, 1, ex, loss, &err), LH_ERR_INTERRUPTED);
    lh_backend_close(b);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double dt = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-9;
    ck_assert_msg(dt < 5, "interrupt took %g s", dt);
    ck_assert(dir_empty(tmpdir));
}
END_TEST

/* Lines of the --log file: the candidate count of each score request. */
static int logged_requests(const char *log, long *last_count)
{
    FILE *f = fopen(log, "r");
    if (!f)
        return 0;
    int n = 0;
    long count;
    while (fscanf(f, "%ld", &count) == 1) {
        n++;
        *last_count = count;
    }
    fclose(f);
    return n;
}

/* Non-finite losses are losses, not errors (backend.h): null and "NaN" in
 * the reply, and a candidate with a NaN weight, which has no PEFT form and
 * is never sent to the child. */
START_TEST(test_non_finite_losses)
{
    char log[160], extra[200];
    snprintf(log, sizeof log, "%s/requests.log", dir);
    snprintf(extra, sizeof extra, "--nan --log %s", log);
    lh_backend *b;
    lh_error err;
    ck_assert_int_eq(open_with(extra, 30, NULL, &b, &err), LH_OK);
    lh_target_shape sh[1] = {{"model.layers.0.self_attn.q_proj", 2, 5, 4}};
    lh_adapter *bad;
    ck_assert_int_eq(lh_adapter_create(sh, 1, &bad, &err), LH_OK);
    memcpy(bad->targets[0].A, mod->targets[0].A, 10 * sizeof(float));
    bad->targets[0].A[3] = NAN;
    /* --nan answers null, then "NaN", for every second candidate it sees */
    const lh_adapter *cands[5] = {mod, mod, bad, mod, mod};
    double loss[5];
    ck_assert_int_eq(lh_backend_score(b, cands, 5, ex, loss, &err), LH_OK);
    ck_assert_double_eq_tol(loss[0], 0.0, 1e-12);
    ck_assert(isnan(loss[1])); /* null */
    ck_assert(isnan(loss[2])); /* never sent */
    ck_assert_double_eq_tol(loss[3], 0.0, 1e-12);
    ck_assert(isnan(loss[4])); /* "NaN" */
    long count = 0;
    ck_assert_int_eq(logged_requests(log, &count), 1);
    ck_assert_int_eq(count, 4);
    /* only unsendable candidates: answered without asking the child */
    const lh_adapter *only_bad[1] = {bad};
    loss[0] = 0;
    ck_assert_int_eq(lh_backend_score(b, only_bad, 1, ex, loss, &err), LH_OK);
    ck_assert(isnan(loss[0]));
    ck_assert_int_eq(logged_requests(log, &count), 1);
    /* an infinite scale makes B infinite as written */
    memcpy(bad->targets[0].A, mod->targets[0].A, 10 * sizeof(float));
    memcpy(bad->targets[0].B, mod->targets[0].B, 8 * sizeof(float));
    bad->targets[0].scale = INFINITY;
    ck_assert_int_eq(lh_backend_score(b, only_bad, 1, ex, loss, &err), LH_OK);
    ck_assert(isnan(loss[0]));
    ck_assert_int_eq(logged_requests(log, &count), 1);
    lh_adapter_free(bad);
    lh_backend_close(b);
    ck_assert(dir_empty(tmpdir));
}
END_TEST

/* A flag set before the call: nothing is sent, so the child is still in
 * step and close says bye instead of killing it. */
START_TEST(test_interrupt_before_call)
{
    volatile sig_atomic_t flag = 1;
    char log[160], extra[200];
    snprintf(log, sizeof log, "%s/requests.log", dir);
    snprintf(extra, sizeof extra, "--generate --log %s", log);
    lh_backend *b;
    lh_error err;
    ck_assert_int_eq(open_with(extra, 30, &flag, &b, &err), LH_ERR_INTERRUPTED);
    ck_assert_ptr_nonnull(strstr(err.msg, "interrupted before 'hello'"));
    ck_assert(dir_empty(tmpdir));
    flag = 0;
    ck_assert_int_eq(open_with(extra, 30, &flag, &b, &err), LH_OK);
    flag = 1;
    const lh_adapter *cands[1] = {mod};
    double loss[1];
    ck_assert_int_eq(lh_backend_score(b, cands, 1, ex, loss, &err), LH_ERR_INTERRUPTED);
    ck_assert_ptr_nonnull(strstr(err.msg, tool));
    char *outs[2] = {NULL, NULL};
    ck_assert_int_eq(lh_backend_generate(b, mod, ex, 8, outs, &err), LH_ERR_INTERRUPTED);
    ck_assert_ptr_null(outs[0]);
    long count = 0;
    ck_assert_int_eq(logged_requests(log, &count), 0);
    flag = 0; /* still in step: the next request is answered */
    ck_assert_int_eq(lh_backend_score(b, cands, 1, ex, loss, &err), LH_OK);
    ck_assert_double_eq_tol(loss[0], 0.0, 1e-12);
    lh_backend_close(b);
    ck_assert(dir_empty(tmpdir));
}
END_TEST

START_TEST(test_failures_name_command)
{
    static const struct {
        const char *args;
        double timeout;
        lh_status want;
        const char *text;
    } cases[] = {
        {"--crash-after 0", 30, LH_ERR_BACKEND, "exited with status 3 before answering 'score'"},
        {"--garbage", 30, LH_ERR_BACKEND, "not JSON"},
        {"--wrong-length", 30, LH_ERR_BACKEND, "0 losses for 1 adapter"},
        {"--error 'disk on fire'", 30, LH_ERR_BACKEND, "disk on fire"},
        {"--hang", 0.5, LH_ERR_TIMEOUT, "no answer to 'score' within 0.5 s"},
        {"--double", 30, LH_ERR_BACKEND, "more than one line"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        lh_backend *b;
        lh_error err;
        ck_assert_int_eq(open_with(cases[i].args, cases[i].timeout, NULL, &b, &err), LH_OK);
        const lh_adapter *cands[1] = {mod};
        double loss[1];
        lh_status st = lh_backend_score(b, cands, 1, ex, loss, &err);
        ck_assert_msg(st == cases[i].want, "%s: status %d (%s)", cases[i].args, st, err.msg);
        ck_assert_msg(strstr(err.msg, cases[i].text) != NULL, "%s: '%s'", cases[i].args, err.msg);
        ck_assert_msg(strstr(err.msg, tool) != NULL, "%s: no command in '%s'", cases[i].args, err.msg);
        lh_backend_close(b);
        ck_assert_msg(dir_empty(tmpdir), "%s: temp dir left", cases[i].args);
    }
    lh_backend *b;
    lh_error err;
    ck_assert_int_eq(open_with("--slow-hello", 0.5, NULL, &b, &err), LH_ERR_TIMEOUT);
    ck_assert_ptr_nonnull(strstr(err.msg, "'hello'"));
    ck_assert(dir_empty(tmpdir));
    lh_backend_opts o;
    lh_backend_opts_default(&o);
    const char *exit7[] = {"backend-cmd", "exit 7", NULL};
    o.params = exit7;
    o.tmp_dir = tmpdir;
    ck_assert_int_eq(lh_backend_open("exec", &o, &b, &err), LH_ERR_BACKEND);
    ck_assert_ptr_nonnull(strstr(err.msg, "exec backend 'exit 7': exited with status 7"));
    ck_assert(dir_empty(tmpdir));
    o.tmp_dir = "/nonexistent/lorahub-tmp";
    ck_assert_int_eq(lh_backend_open("exec", &o, &b, &err), LH_ERR_IO);
    ck_assert_ptr_nonnull(strstr(err.msg, "exec backend 'exit 7': cannot create a temporary "
                                          "directory in '/nonexistent/lorahub-tmp'"));
    o.tmp_dir = tmpdir;
    const char *bad_timeout[] = {"backend-cmd", "exit 7", "backend-timeout", "soon", NULL};
    o.params = bad_timeout;
    ck_assert_int_eq(lh_backend_open("exec", &o, &b, &err), LH_ERR_ARG);
    ck_assert_ptr_nonnull(strstr(err.msg, "bad timeout 'soon'"));
    o.params = NULL;
    ck_assert_int_eq(lh_backend_open("exec", &o, &b, &err), LH_ERR_ARG);
    ck_assert_int_eq(lh_backend_open("no-such", &o, &b, &err), LH_ERR_ARG);
    lh_backend_close(NULL);
}
END_TEST

static Suite *exec_suite(void)
{
    Suite *s = suite_create("exec");
    TCase *tc = tcase_create("exec");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_score_batch);
    tcase_add_test(tc, test_generate);
    tcase_add_test(tc, test_interrupt_cuts_wait);
    tcase_add_test(tc, test_non_finite_losses);
    tcase_add_test(tc, test_interrupt_before_call);
    tcase_add_test(tc, test_failures_name_command);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(exec_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

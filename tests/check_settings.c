/* tests/check_settings.c - the settings table (adapt/settings.c) and the
 * job's resolution of it (adapt/job.c): types, presets as lorahub-adapt(1)
 * states them, range checks naming the key, job files, and which keys the
 * checkpoint fingerprint and the report see. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "adapt/checkpoint.h"
#include "adapt/job.h"
#include "adapt/report.h"
#include "adapt/settings.h"
#include "lib/fsutil.h"

static lh_settings *new_settings(void)
{
    lh_settings *s = NULL;
    lh_error err;
    ck_assert_int_eq(lh_settings_new(&s, &err), LH_OK);
    return s;
}

static void set_ok(lh_settings *s, const char *key, const char *value)
{
    lh_error err;
    lh_status st = lh_settings_set(s, key, value, NULL, &err);
    ck_assert_msg(st == LH_OK, "%s=%s: %s", key, value, err.msg);
}

START_TEST(test_every_key_has_a_type)
{
    size_t n = 0;
    for (const lh_setting_def *d = lh_setting_defs(); d->key; d++, n++) {
        ck_assert_msg(d->type >= LH_SETTING_STRING && d->type <= LH_SETTING_MODULES, "%s: type",
                      d->key);
        ck_assert_msg(d->type == LH_SETTING_BOOL || d->arg, "%s: no placeholder", d->key);
        ck_assert_msg(d->type != LH_SETTING_CHOICE || d->choices || d->is_choice, "%s: no choices",
                      d->key);
        ck_assert_ptr_eq(lh_setting_find(d->key), d);
        /* a key has a default in every preset or in none */
        ck_assert_msg(!d->preset_default[LH_PRESET_DEFAULT] == !d->preset_default[LH_PRESET_PAPER],
                      "%s: default in one preset only", d->key);
        /* a default passes its own check */
        lh_settings *s = new_settings();
        for (int p = 0; p < LH_PRESET_COUNT; p++)
            if (d->preset_default[p])
                set_ok(s, d->key, d->preset_default[p]);
        lh_settings_free(s);
    }
    ck_assert_uint_eq(n, lh_setting_count());
    ck_assert_ptr_null(lh_setting_find("budgte"));
    ck_assert(lh_setting_find("base")->uses & LH_SETTING_BACKEND);
    ck_assert(lh_setting_find("backend-cmd")->uses & LH_SETTING_BACKEND);
    ck_assert(lh_setting_find("backend-timeout")->uses & LH_SETTING_BACKEND);
    ck_assert(!(lh_setting_find("output")->uses & LH_SETTING_FINGERPRINT));
}
END_TEST

static lh_settings *preset(const char *name)
{
    lh_settings *s = new_settings();
    lh_error err;
    if (name)
        set_ok(s, "preset", name);
    ck_assert_int_eq(lh_settings_apply_preset(s, &err), LH_OK);
    return s;
}

/* lorahub-adapt(1), Presets: the values it states, key by key. */
static const char *const default_preset[][2] = {
    {"pick", "0"}, {"select", "best-single"}, {"preselect", "3"}, {"method", "cat"},
    {"optimizer", "cobyla"}, {"budget", "40"}, {"bound", "1.5"}, {"l1", "0.05"},
    {"seed", "42"}, {"start", "zero"}, {"dtype", "f32"}, {"loss-scale", "token-mean"},
    {NULL, NULL}};
static const char *const paper_preset[][2] = {
    {"pick", "20"}, {"select", "search"}, {"preselect", "0"}, {"method", "lorahub"},
    {"optimizer", "cobyla"}, {"budget", "40"}, {"bound", "1.5"}, {"l1", "0.05"},
    {"seed", "42"}, {"start", "zero"}, {"dtype", "f32"}, {"loss-scale", "per-example"},
    {NULL, NULL}};

START_TEST(test_presets_as_documented)
{
    lh_settings *d = preset(NULL), *p = preset("paper");
    for (size_t i = 0; default_preset[i][0]; i++)
        ck_assert_str_eq(lh_settings_text(d, default_preset[i][0]), default_preset[i][1]);
    for (size_t i = 0; paper_preset[i][0]; i++)
        ck_assert_str_eq(lh_settings_text(p, paper_preset[i][0]), paper_preset[i][1]);
    ck_assert_str_eq(lh_settings_text(d, "preset"), "default");
    ck_assert(!lh_settings_bool(d, "nan-as-worst") && !lh_settings_bool(d, "force"));
    ck_assert(!lh_settings_given(d, "pick"));
    ck_assert(!lh_settings_is_set(d, "output") && !lh_settings_is_set(d, "base"));
    /* the man page's own list for the default preset: ".Fl -KEY Cm VALUE" lines */
    char *man = NULL;
    size_t len;
    lh_error err;
    ck_assert_int_eq(lh_read_file("man/lorahub-adapt.1", &man, &len, &err), LH_OK);
    const char *a = strstr(man, ".It Cm default"), *b = a ? strstr(a, ".It Cm paper") : NULL;
    ck_assert(a && b);
    int seen = 0;
    for (const char *l = a; l && l < b; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
        char key[32], val[32];
        if (sscanf(l, ".Fl -%31s Cm %31[^ \n]", key, val) == 2) {
            ck_assert_msg(!strcmp(lh_settings_text(d, key), val), "man says %s %s, table %s", key,
                          val, lh_settings_text(d, key));
            seen++;
        }
    }
    ck_assert_int_eq(seen, 8);
    free(man);
    /* the library's own defaults are the paper's search settings */
    lh_search_opts so;
    lh_search_opts_default(&so);
    ck_assert_str_eq(so.optimizer, lh_settings_text(p, "optimizer"));
    ck_assert_int_eq(so.budget, lh_settings_int(p, "budget", -1));
    ck_assert(so.bound == lh_settings_number(p, "bound", NAN));
    ck_assert(so.l1 == lh_settings_number(p, "l1", NAN));
    ck_assert_int_eq((long long)so.seed, lh_settings_int(p, "seed", -1));
    lh_settings_free(d);
    lh_settings_free(p);
}
END_TEST

START_TEST(test_search_setting_asks_for_search)
{
    const char *search_keys[][2] = {{"optimizer", "bobyqa"}, {"budget", "5"}, {"bound", "1"},
                                    {"l1", "0"}, {"start", "best-single"}};
    for (size_t i = 0; i < 5; i++) {
        ck_assert(lh_setting_find(search_keys[i][0])->uses & LH_SETTING_SEARCH);
        lh_settings *s = new_settings();
        lh_error err;
        set_ok(s, search_keys[i][0], search_keys[i][1]);
        ck_assert_int_eq(lh_settings_apply_preset(s, &err), LH_OK);
        ck_assert_str_eq(lh_settings_text(s, "select"), "search");
        lh_settings_free(s);
    }
    /* an explicit select wins; a non-search key leaves the preset's */
    lh_settings *s = new_settings();
    lh_error err;
    set_ok(s, "budget", "5");
    set_ok(s, "select", "uniform");
    ck_assert_int_eq(lh_settings_apply_preset(s, &err), LH_OK);
    ck_assert_str_eq(lh_settings_text(s, "select"), "uniform");
    lh_settings_free(s);
    s = new_settings();
    set_ok(s, "preselect", "5");
    ck_assert_int_eq(lh_settings_apply_preset(s, &err), LH_OK);
    ck_assert_str_eq(lh_settings_text(s, "select"), "best-single");
    lh_settings_free(s);
}
END_TEST

static void expect_refused(const char *key, const char *value, const char *needle)
{
    lh_settings *s = new_settings();
    lh_error err;
    ck_assert_int_eq(lh_settings_set(s, key, value, NULL, &err), LH_ERR_ARG);
    ck_assert_msg(strstr(err.msg, key) && strstr(err.msg, needle), "%s=%s: '%s'", key, value,
                  err.msg);
    ck_assert(!lh_settings_is_set(s, key));
    lh_settings_free(s);
}

START_TEST(test_range_violation_names_the_key)
{
    expect_refused("budget", "0", "[1, 10000000]");
    expect_refused("budget", "12x", "integer");
    expect_refused("pick", "-1", "integer");
    expect_refused("bound", "0", "> 0");
    expect_refused("bound", "inf", "number");
    expect_refused("l1", "-0.5", ">= 0");
    expect_refused("density", "2", "(0, 1]"); /* whatever the method: not only where it prunes */
    expect_refused("density", "0", "(0, 1]");
    expect_refused("backend-timeout", "-1", "> 0");
    expect_refused("backend-timeout", "0", "> 0"); /* 0 is not "no timeout" */
    expect_refused("optimizer", "nope", "unknown optimizer 'nope'");
    expect_refused("method", "blend", "unknown method 'blend'");
    expect_refused("select", "all", "best-single");
    expect_refused("dtype", "f8", "f16");
    expect_refused("preset", "nope", "unknown preset 'nope'");
    expect_refused("nan-as-worst", "maybe", "boolean");
    expect_refused("output", "", "empty");
    lh_settings *s = new_settings();
    lh_error err;
    ck_assert_int_eq(lh_settings_set(s, "budgte", "3", NULL, &err), LH_ERR_ARG);
    ck_assert_ptr_nonnull(strstr(err.msg, "budgte"));
    /* a path is resolved against the directory given */
    ck_assert_int_eq(lh_settings_set(s, "output", "out", "/jobs", &err), LH_OK);
    ck_assert_str_eq(lh_settings_text(s, "output"), "/jobs/out");
    ck_assert_int_eq(lh_settings_set(s, "report", "-", "/jobs", &err), LH_OK);
    ck_assert_str_eq(lh_settings_text(s, "report"), "-");
    lh_settings_free(s);
}
END_TEST

static char *write_job(const char *text)
{
    char *path = strdup("/tmp/lh_settings_XXXXXX.yaml");
    int fd = mkstemps(path, 5);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    return path;
}

START_TEST(test_job_file)
{
    char *path = write_job("budgte: 3\n");
    lh_settings *s = new_settings();
    lh_error err;
    ck_assert_int_eq(lh_settings_load_job(s, path, &err), LH_ERR_ARG);
    ck_assert_ptr_nonnull(strstr(err.msg, "unknown key 'budgte'"));
    ck_assert_ptr_nonnull(strstr(err.msg, path));
    unlink(path);
    free(path);
    lh_settings_free(s);

    path = write_job("budget: 0\n");
    s = new_settings();
    ck_assert_int_eq(lh_settings_load_job(s, path, &err), LH_ERR_ARG);
    ck_assert_ptr_nonnull(strstr(err.msg, "budget '0'"));
    unlink(path);
    free(path);
    lh_settings_free(s);

    path = write_job("budget: 7\nbound: 1.25\nnan-as-worst: true\noutput: out\n"
                     "modules: [a, /abs/b]\n");
    s = new_settings();
    ck_assert_int_eq(lh_settings_load_job(s, path, &err), LH_OK);
    ck_assert_int_eq(lh_settings_int(s, "budget", 0), 7);
    ck_assert(lh_settings_number(s, "bound", 0) == 1.25);
    ck_assert(lh_settings_bool(s, "nan-as-worst"));
    ck_assert_str_eq(lh_settings_text(s, "output"), "/tmp/out");
    size_t n;
    const char *const *list = lh_settings_list(s, "modules", &n);
    ck_assert_uint_eq(n, 2);
    ck_assert_str_eq(list[0], "/tmp/a");
    ck_assert_str_eq(list[1], "/abs/b");
    /* options override the job file */
    lh_settings *flags = new_settings();
    set_ok(flags, "budget", "9");
    ck_assert_int_eq(lh_settings_override(s, flags, &err), LH_OK);
    ck_assert_int_eq(lh_settings_int(s, "budget", 0), 9);
    ck_assert(lh_settings_number(s, "bound", 0) == 1.25);
    lh_settings_free(flags);
    unlink(path);
    free(path);
    lh_settings_free(s);
}
END_TEST

/* ---- fingerprint and report over a job's resolved options ------------ */

static lh_adapter fake_mods[2];
static const lh_adapter *fake_ptrs[2] = {&fake_mods[0], &fake_mods[1]};

static lh_settings *job_base(void)
{
    lh_settings *s = new_settings();
    set_ok(s, "modules", "/nonexistent/hub");
    set_ok(s, "examples", "/nonexistent/task.jsonl");
    set_ok(s, "backend-cmd", "true");
    set_ok(s, "output", "/nonexistent/out");
    return s;
}

/* The fingerprint of the job s resolves to (after the preset), as one text. */
static char *fingerprint_of(lh_settings *s)
{
    lh_error err;
    ck_assert_int_eq(lh_settings_apply_preset(s, &err), LH_OK);
    lh_job *j = NULL;
    lh_status st = lh_job_new(s, "test", NULL, &j, &err);
    ck_assert_msg(st == LH_OK, "%s", err.msg);
    const char *in[1] = {"x"}, *out[1] = {"y"};
    lh_examples *ex = NULL;
    ck_assert_int_eq(lh_examples_from_arrays(in, out, 1, &ex, &err), LH_OK);
    lh_fingerprint fp;
    ck_assert_int_eq(lh_fingerprint_build(lh_job_search_opts(j), fake_ptrs, 2, ex, &fp, &err), LH_OK);
    lh_sb sb;
    lh_sb_init(&sb);
    for (size_t i = 0; i < fp.n; i++)
        lh_sb_appendf(&sb, "%s=%s\n", fp.key[i], fp.val[i]);
    lh_fingerprint_release(&fp);
    lh_examples_free(ex);
    lh_job_free(j);
    return lh_sb_detach(&sb);
}

/* key, another valid value: every key that resolves into the search options
 * or the outputs. */
static const char *const variations[][2] = {
    {"optimizer", "bobyqa"}, {"method", "linear"}, {"budget", "41"}, {"bound", "1.25"},
    {"l1", "0.1"}, {"seed", "7"}, {"nan-as-worst", "true"}, {"preselect", "2"},
    {"select", "uniform"}, {"start", "best-single"}, {"output", "/nonexistent/other"},
    {"report", "/nonexistent/r.json"}, {"trace", "/nonexistent/t.tsv"},
    {"weights-out", "/nonexistent/w.tsv"}, {"checkpoint", "/nonexistent/c.json"},
    {"force", "true"}, {"dtype", "bf16"}, {"backend-timeout", "5"}, {"pick", "5"},
};
#define N_VARIATIONS (sizeof variations / sizeof variations[0])

START_TEST(test_fingerprint_follows_the_table)
{
    fake_mods[0].name = "m1";
    fake_mods[0].file_size = 100;
    fake_mods[1].name = "m2";
    fake_mods[1].file_size = 200;
    lh_settings *s = job_base();
    char *ref = fingerprint_of(s);
    lh_settings_free(s);
    const char *key = variations[_i][0];
    s = job_base();
    set_ok(s, key, variations[_i][1]);
    char *fp = fingerprint_of(s);
    int fingerprinted = (lh_setting_find(key)->uses & LH_SETTING_FINGERPRINT) != 0;
    ck_assert_msg(fingerprinted == (strcmp(ref, fp) != 0), "%s: fingerprinted %d, changed %d", key,
                  fingerprinted, strcmp(ref, fp) != 0);
    free(ref);
    free(fp);
    lh_settings_free(s);
}
END_TEST

/* Every report key of the table is in the report (the job adds task,
 * test, preset, backend, examples and output itself). */
START_TEST(test_report_keys_follow_the_table)
{
    lh_settings *s = job_base();
    lh_error err;
    ck_assert_int_eq(lh_settings_apply_preset(s, &err), LH_OK);
    lh_job *j = NULL;
    ck_assert_int_eq(lh_job_new(s, "test", NULL, &j, &err), LH_OK);
    fake_mods[0].name = "m1";
    fake_mods[1].name = "m2";
    double w[2] = {1, 0};
    size_t kept[2] = {0, 1};
    lh_search_result r;
    memset(&r, 0, sizeof r);
    r.n = 2;
    r.weights = w;
    r.n_kept = 2;
    r.kept = kept;
    const char *extra[] = {"task", "t", "test", "", "preset", "default", "backend", "exec",
                           "examples", "e", "output", "o", NULL};
    char *text = NULL;
    ck_assert_int_eq(lh_search_report_text(0, lh_job_search_opts(j), fake_ptrs, 2, &r, extra, &text,
                                           &err), LH_OK);
    for (const lh_setting_def *d = lh_setting_defs(); d->key; d++) {
        char quoted[64];
        snprintf(quoted, sizeof quoted, "\"%s\":", d->key);
        for (char *c = quoted; *c; c++)
            if (*c == '-')
                *c = '_';
        int in_report = strstr(text, quoted) != NULL;
        ck_assert_msg(in_report == ((d->uses & LH_SETTING_REPORT) != 0), "%s: in report %d", d->key,
                      in_report);
    }
    free(text);
    lh_job_free(j);
    lh_settings_free(s);
}
END_TEST

START_TEST(test_job_checks)
{
    lh_error err;
    lh_job *j = NULL;
    lh_settings *s = job_base();
    set_ok(s, "preset", "paper");
    set_ok(s, "start", "best-single");
    ck_assert_int_eq(lh_settings_apply_preset(s, &err), LH_OK);
    ck_assert_int_eq(lh_job_new(s, "test", NULL, &j, &err), LH_ERR_ARG);
    ck_assert_ptr_nonnull(strstr(err.msg, "needs --preselect"));
    lh_settings_free(s);

    s = new_settings();
    set_ok(s, "modules", "/nonexistent/hub");
    set_ok(s, "examples", "/nonexistent/task.jsonl");
    set_ok(s, "output", "/nonexistent/out");
    ck_assert_int_eq(lh_settings_apply_preset(s, &err), LH_OK);
    ck_assert_int_eq(lh_job_new(s, "test", NULL, &j, &err), LH_ERR_ARG);
    ck_assert_ptr_nonnull(strstr(err.msg, "no backend"));
    lh_settings_free(s);

    s = job_base();
    set_ok(s, "output", "/tmp");
    ck_assert_int_eq(lh_settings_apply_preset(s, &err), LH_OK);
    ck_assert_int_eq(lh_job_new(s, "test", NULL, &j, &err), LH_ERR_EXISTS);
    ck_assert_ptr_nonnull(strstr(err.msg, "exists"));
    lh_settings_free(s);
    lh_job_free(NULL);
    lh_settings_free(NULL);
}
END_TEST

static Suite *settings_suite(void)
{
    Suite *s = suite_create("settings");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_every_key_has_a_type);
    tcase_add_test(tc, test_presets_as_documented);
    tcase_add_test(tc, test_search_setting_asks_for_search);
    tcase_add_test(tc, test_range_violation_names_the_key);
    tcase_add_test(tc, test_job_file);
    tcase_add_loop_test(tc, test_fingerprint_follows_the_table, 0, (int)N_VARIATIONS);
    tcase_add_test(tc, test_report_keys_follow_the_table);
    tcase_add_test(tc, test_job_checks);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(settings_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

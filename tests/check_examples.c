/* tests/check_examples.c - few-shot example files. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib/examples.h"
#include "lib/fsutil.h"

static char tmpdir[64];

static void setup(void)
{
    strcpy(tmpdir, "/tmp/lh-ex-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static void teardown(void)
{
    lh_rmtree(tmpdir);
}

static char *put(const char *name, const char *text)
{
    char *p = lh_path_join(tmpdir, name);
    FILE *f = fopen(p, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
    return p;
}

static lh_examples *load_ok(const char *name, const char *text)
{
    char *p = put(name, text);
    lh_examples *ex = NULL;
    lh_error err = { 0 };
    ck_assert_msg(lh_examples_load(p, &ex, &err) == LH_OK, "%s: %s", name, err.msg);
    free(p);
    return ex;
}

/* Loading must fail with "<path>: <want>". */
static void load_bad(const char *name, const char *text, const char *want)
{
    char *p = put(name, text);
    lh_examples *ex = (lh_examples *)1;
    lh_error err = { 0 };
    ck_assert_int_eq(lh_examples_load(p, &ex, &err), LH_ERR_FORMAT);
    ck_assert_ptr_null(ex);
    char full[512];
    snprintf(full, sizeof full, "%s: %s", p, want);
    ck_assert_msg(strstr(err.msg, full) == err.msg, "'%s' does not start with '%s'", err.msg, full);
    free(p);
}

START_TEST(test_jsonl)
{
    lh_examples *ex = load_ok("a.jsonl", "{\"input\": \"2+2\", \"output\": \"4\"}\n"
                                         "\n"
                                         "{\"context\": \"caf\\u00e9\", \"completion\": \"x\\ny\"}\r\n"
                                         "  {\"output\": \"o\", \"input\": \"i\", \"extra\": 1}");
    ck_assert_uint_eq(ex->n, 3);
    ck_assert_str_eq(ex->input[0], "2+2");
    ck_assert_str_eq(ex->output[0], "4");
    ck_assert_str_eq(ex->input[1], "caf\xc3\xa9");
    ck_assert_str_eq(ex->output[1], "x\ny");
    ck_assert_str_eq(ex->input[2], "i");
    ck_assert_int_eq(ex->path[0], '/');
    char want[256];
    ck_assert_ptr_nonnull(realpath(tmpdir, want));
    strcat(want, "/a.jsonl");
    ck_assert_str_eq(ex->path, want);
    lh_examples_free(ex);
    lh_examples_free(NULL);
}
END_TEST

START_TEST(test_jsonl_errors)
{
    load_bad("b.jsonl", "{\"input\": \"a\", \"output\": \"b\"}\n\n{\"input\": \"a\"}\n",
             "line 3: missing \"output\" (or \"completion\")");
    load_bad("c.jsonl", "{\"input\": \"a\", \"output\": \"b\"}\n{\"input\": 1, \"output\": \"b\"}\n",
             "line 2: \"input\" is not a string");
    load_bad("d.jsonl", "{\"input\": \"a\", \"output\": \"b\"}\n{\"input\": \"a\", \"output\": \"b\"\n",
             "line 2: ");
    load_bad("e.jsonl", "\n[1]\n", "line 2: expected an object");
    load_bad("f.jsonl", "", "line 1: no examples");
    load_bad("g.jsonl", "\n  \n", "line 1: no examples");
    load_bad("h.jsonl", "{\"input\": \"a\xff\", \"output\": \"b\"}\n", "line 1: invalid UTF-8");
    load_bad("i.jsonl", "{\"input\": \"a\\u0000\", \"output\": \"b\"}\n",
             "line 1: \"input\" contains a NUL");
    load_bad("j.jsonl", "{\"input\": \"a\", \"input\": \"b\", \"output\": \"c\"}\n",
             "line 1: duplicate key 'input'");
    lh_examples *ex = (lh_examples *)1;
    lh_error err = { 0 };
    char *missing = lh_path_join(tmpdir, "none.jsonl");
    ck_assert_int_eq(lh_examples_load(missing, &ex, &err), LH_ERR_NOT_FOUND);
    ck_assert(strstr(err.msg, missing));
    free(missing);
}
END_TEST

START_TEST(test_yaml_and_json_lists)
{
    lh_examples *ex = load_ok("t.yaml", "# few-shot\n"
                                        "- input: reverse abc\n"
                                        "  output: cba\n"
                                        "- input: |\n"
                                        "    two\n"
                                        "    lines\n"
                                        "  output: 42\n"
                                        "- context: 'q'\n"
                                        "  completion: true\n");
    ck_assert_uint_eq(ex->n, 3);
    ck_assert_str_eq(ex->input[1], "two\nlines\n");
    ck_assert_str_eq(ex->output[1], "42"); /* the literal, not a reformatted number */
    ck_assert_str_eq(ex->output[2], "true");
    lh_examples_free(ex);
    ex = load_ok("t.yml", "- {input: a, output: '007'}\n");
    ck_assert_str_eq(ex->output[0], "007");
    lh_examples_free(ex);
    ex = load_ok("t.json", "[{\"input\": \"a\", \"output\": \"b\"},\n {\"input\": \"c\", \"output\": \"d\"}]");
    ck_assert_uint_eq(ex->n, 2);
    ck_assert_str_eq(ex->output[1], "d");
    lh_examples_free(ex);

    load_bad("u.yaml", "- input: a\n  output: b\n- input: c\n", "line 3: missing \"output\"");
    load_bad("v.yaml", "- input: a\n  output: b\n-\n  input: c\n  output: [1]\n",
             "line 5: \"output\" is not a string");
    load_bad("w.yaml", "- input: a\n  output: ~\n", "line 2: \"output\" is not a string");
    load_bad("x.yaml", "input: a\noutput: b\n", "line 1: expected a list");
    load_bad("y.yaml", "", "line 1: no examples");
    load_bad("z.yaml", "- input: a\n  output: b\n- just text\n", "line 3: expected an object");
    load_bad("n.json", "[{\"input\": \"a\",\n \"output\": 5}]", "line 2: \"output\" is not a string");
    load_bad("o.json", "[]", "line 1: no examples");
    load_bad("p.yaml", "- input: a\n\toutput: b\n", "line 2: ");
}
END_TEST

START_TEST(test_write_roundtrip)
{
    const char *in[] = { "a \"quoted\"\n", "\xe4\xb8\xad\x01" };
    const char *out[] = { "tab\there", "" };
    lh_examples *ex = NULL;
    lh_error err = { 0 };
    ck_assert_int_eq(lh_examples_from_arrays(in, out, 2, &ex, &err), LH_OK);
    ck_assert_ptr_null(ex->path);
    char *p = lh_path_join(tmpdir, "w.jsonl");
    ck_assert_int_eq(lh_examples_write_jsonl(ex, p, &err), LH_OK);
    char *text;
    size_t len;
    ck_assert_int_eq(lh_read_file(p, &text, &len, &err), LH_OK);
    ck_assert_str_eq(text, "{\"input\":\"a \\\"quoted\\\"\\n\",\"output\":\"tab\\there\"}\n"
                           "{\"input\":\"\xe4\xb8\xad\\u0001\",\"output\":\"\"}\n");
    free(text);
    lh_examples *back = NULL;
    ck_assert_int_eq(lh_examples_load(p, &back, &err), LH_OK);
    ck_assert_uint_eq(back->n, 2);
    for (size_t i = 0; i < 2; i++) {
        ck_assert_str_eq(back->input[i], in[i]);
        ck_assert_str_eq(back->output[i], out[i]);
    }
    lh_examples_free(back);
    lh_examples_free(ex);
    free(p);
    const char *none[] = { NULL };
    ck_assert_int_eq(lh_examples_from_arrays(none, out, 1, &ex, &err), LH_ERR_ARG);
}
END_TEST

static Suite *examples_suite(void)
{
    Suite *s = suite_create("examples");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 20);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_jsonl);
    tcase_add_test(tc, test_jsonl_errors);
    tcase_add_test(tc, test_yaml_and_json_lists);
    tcase_add_test(tc, test_write_roundtrip);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(examples_suite());
    srunner_run_all(sr, CK_ENV);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

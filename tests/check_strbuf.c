/* tests/check_strbuf.c - the growable string and its JSON helpers. */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "lib/strbuf.h"

START_TEST(test_append_grow)
{
    lh_sb sb;
    lh_sb_init(&sb);
    for (int i = 0; i < 1000; i++)
        lh_sb_appendf(&sb, "%d,", i);
    ck_assert(!lh_sb_failed(&sb));
    ck_assert_uint_eq(sb.len, strlen(sb.buf));
    ck_assert(strncmp(sb.buf, "0,1,2,", 6) == 0);
    ck_assert(strcmp(sb.buf + sb.len - 4, "999,") == 0);
    /* a formatted string longer than the internal stack buffer */
    char big[1000];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    lh_sb_release(&sb);
    lh_sb_appendf(&sb, "<%s>", big);
    ck_assert_uint_eq(sb.len, 1001);
    ck_assert_int_eq(sb.buf[1000], '>');
    lh_sb_append_n(&sb, "ab\0cd", 5);
    ck_assert_uint_eq(sb.len, 1006);
    char *s = lh_sb_detach(&sb);
    ck_assert_ptr_null(sb.buf);
    ck_assert_int_eq(s[0], '<');
    free(s);
    s = lh_sb_detach(&sb);
    ck_assert_str_eq(s, "");
    free(s);
    lh_sb_release(NULL);
}
END_TEST

START_TEST(test_json_string)
{
    lh_sb sb;
    lh_sb_init(&sb);
    lh_sb_append_json_string(&sb, "a\"b\\c\n\t\r\b\f\x01\x1f\xc3\xa9/");
    ck_assert_str_eq(sb.buf, "\"a\\\"b\\\\c\\n\\t\\r\\b\\f\\u0001\\u001f\xc3\xa9/\"");
    lh_sb_release(&sb);
    lh_sb_append_json_string(&sb, "");
    ck_assert_str_eq(sb.buf, "\"\"");
    lh_sb_release(&sb);
}
END_TEST

START_TEST(test_json_number)
{
    static const double vals[] = { 0.1, 1.0 / 3, 1e-300, 123456.789, -2.5e17, 5e-324,
                                   1.7976931348623157e308, 0.30000000000000004 };
    lh_sb sb;
    lh_sb_init(&sb);
    for (size_t i = 0; i < sizeof vals / sizeof *vals; i++) {
        lh_sb_release(&sb);
        lh_sb_append_json_number(&sb, vals[i]);
        ck_assert_msg(strtod(sb.buf, NULL) == vals[i], "%s", sb.buf);
    }
    lh_sb_release(&sb);
    lh_sb_append_json_number(&sb, 0.1);
    ck_assert_str_eq(sb.buf, "0.1"); /* shortest form */
    lh_sb_release(&sb);
    lh_sb_append_json_number(&sb, 4096);
    ck_assert_str_eq(sb.buf, "4096");
    lh_sb_release(&sb);
    lh_sb_append_json_number(&sb, -0.0);
    ck_assert_str_eq(sb.buf, "0");
    lh_sb_release(&sb);
    lh_sb_append_json_number(&sb, NAN);
    lh_sb_append(&sb, ",");
    lh_sb_append_json_number(&sb, -INFINITY);
    ck_assert_str_eq(sb.buf, "null,null");
    lh_sb_release(&sb);
}
END_TEST

static Suite *strbuf_suite(void)
{
    Suite *s = suite_create("strbuf");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 20);
    tcase_add_test(tc, test_append_grow);
    tcase_add_test(tc, test_json_string);
    tcase_add_test(tc, test_json_number);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(strbuf_suite());
    srunner_run_all(sr, CK_ENV);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

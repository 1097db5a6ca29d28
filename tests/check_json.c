/* tests/check_json.c - the JSON/YAML tree reader. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib/json.h"
#include "lib/strbuf.h"

static lh_json *ok_json(const char *text)
{
    lh_json *j = NULL;
    lh_error err = { 0 };
    lh_status st = lh_json_parse(text, strlen(text), "t.json", &j, &err);
    ck_assert_msg(st == LH_OK, "parse of <%.200s> failed: %s", text, err.msg);
    ck_assert_ptr_nonnull(j);
    return j;
}

/* Parse must fail with a message containing want. */
static void bad_json_n(const char *text, size_t len, const char *want)
{
    lh_json *j = (lh_json *)1;
    lh_error err = { 0 };
    lh_status st = lh_json_parse(text, len, "t.json", &j, &err);
    ck_assert_msg(st != LH_OK, "<%.200s> was accepted", text);
    ck_assert_ptr_null(j);
    ck_assert_msg(strstr(err.msg, want) != NULL, "<%.200s>: message '%s' lacks '%s'", text, err.msg,
                  want);
    ck_assert_msg(strncmp(err.msg, "t.json: line ", 13) == 0, "message '%s' lacks origin", err.msg);
}

static void bad_json(const char *text, const char *want)
{
    bad_json_n(text, strlen(text), want);
}

START_TEST(test_basic_tree)
{
    lh_json *j = ok_json("{\"name\": \"x\", \"n\": 12, \"f\": -1.5e2, \"t\": true, \"no\": false,\n"
                         " \"z\": null, \"arr\": [1, \"two\", [], {}], \"o\": {\"k\": \"v\"}}");
    ck_assert_int_eq(j->type, LH_JSON_OBJECT);
    ck_assert_uint_eq(j->len, 8);
    ck_assert_str_eq(j->keys[0], "name"); /* file order */
    ck_assert_str_eq(j->keys[7], "o");
    const char *s;
    double d;
    int b;
    long long ll;
    ck_assert(lh_json_as_string(lh_json_get(j, "name"), &s));
    ck_assert_str_eq(s, "x");
    ck_assert(lh_json_as_number(lh_json_get(j, "n"), &d) && d == 12);
    ck_assert(lh_json_as_int64(lh_json_get(j, "n"), &ll) && ll == 12);
    ck_assert(lh_json_as_number(lh_json_get(j, "f"), &d) && d == -150);
    ck_assert(lh_json_as_bool(lh_json_get(j, "t"), &b) && b == 1);
    ck_assert(lh_json_as_bool(lh_json_get(j, "no"), &b) && b == 0);
    ck_assert_int_eq(lh_json_get(j, "z")->type, LH_JSON_NULL);
    ck_assert(!lh_json_as_string(lh_json_get(j, "n"), &s));
    ck_assert(!lh_json_as_number(lh_json_get(j, "name"), &d));
    ck_assert_ptr_null(lh_json_get(j, "missing"));
    const lh_json *arr = lh_json_get(j, "arr");
    ck_assert_int_eq(arr->type, LH_JSON_ARRAY);
    ck_assert_uint_eq(arr->len, 4);
    ck_assert_str_eq(arr->items[1]->string, "two");
    ck_assert_int_eq(arr->items[2]->type, LH_JSON_ARRAY);
    ck_assert_uint_eq(arr->items[2]->len, 0);
    ck_assert_int_eq(arr->items[3]->type, LH_JSON_OBJECT);
    ck_assert_ptr_null(lh_json_get(arr, "x"));
    ck_assert_str_eq(lh_json_get(lh_json_get(j, "o"), "k")->string, "v");
    ck_assert_uint_eq(j->line, 1);
    ck_assert_uint_eq(arr->line, 2);
    lh_json_free(j);

    /* scalars at the top level are JSON too (RFC 8259) */
    j = ok_json(" \"s\" ");
    ck_assert_str_eq(j->string, "s");
    lh_json_free(j);
    j = ok_json("42");
    ck_assert(j->type == LH_JSON_NUMBER && j->number == 42);
    lh_json_free(j);
    /* tabs between tokens, CRLF, a byte order mark */
    j = ok_json("\xef\xbb\xbf\t{\t\"a\"\t:\t[1,\t2]\r\n\t}\t\r\n");
    ck_assert_uint_eq(lh_json_get(j, "a")->len, 2);
    lh_json_free(j);
    lh_json_free(NULL);
}
END_TEST

START_TEST(test_escapes)
{
    lh_json *j = ok_json("[\"q\\\"b\\\\s\\/n\\nr\\rt\\tb\\bf\\f\", \"\\u00e9\\u20AC\", \"a\\u0000b\","
                         " \"\\uD83D\\uDE00\", \"\\ud83d\\ude00x\", \"\\uFFFF\"]");
    ck_assert_str_eq(j->items[0]->string, "q\"b\\s/n\nr\rt\tb\bf\f");
    ck_assert_str_eq(j->items[1]->string, "\xc3\xa9\xe2\x82\xac");
    ck_assert_uint_eq(j->items[2]->len, 3);
    ck_assert(memcmp(j->items[2]->string, "a\0b", 4) == 0);
    ck_assert_str_eq(j->items[3]->string, "\xf0\x9f\x98\x80"); /* U+1F600 */
    ck_assert_uint_eq(j->items[3]->len, 4);
    ck_assert_str_eq(j->items[4]->string, "\xf0\x9f\x98\x80x");
    ck_assert_str_eq(j->items[5]->string, "\xef\xbf\xbf");
    lh_json_free(j);

    /* raw characters libyaml refuses or folds pass through unchanged */
    const char *raw = "[\"\x7f|\xc2\x80|\xc2\x85|\xc2\x9f|\xe2\x80\xa8|\xe2\x80\xa9|\xef\xbf\xbe|"
                      "\xf4\x8f\xbf\xbf|\xe4\xb8\xad\"]";
    j = ok_json(raw);
    ck_assert_str_eq(j->items[0]->string, "\x7f|\xc2\x80|\xc2\x85|\xc2\x9f|\xe2\x80\xa8|\xe2\x80\xa9|"
                                          "\xef\xbf\xbe|\xf4\x8f\xbf\xbf|\xe4\xb8\xad");
    lh_json_free(j);

    bad_json("[\"\\uD83D\"]", "unpaired surrogate \\uD83D");
    bad_json("[\"\\uD83Dx\"]", "unpaired surrogate");
    bad_json("[\"\\uDE00\\uD83D\"]", "unpaired surrogate \\uDE00");
    bad_json("[\"\\uD83D\\u0041\"]", "unpaired surrogate");
    bad_json("[\"\\u12\"]", "invalid \\u escape");
    bad_json("[\"\\x41\"]", "invalid escape '\\x'");
    bad_json("[\"\\U0001F600\"]", "invalid escape '\\U'");
    bad_json("[\"\\e\"]", "invalid escape");
    bad_json("[\"a\tb\"]", "control character 0x09");
    bad_json("[\"a\nb\"]", "control character 0x0a");
    bad_json("[\"abc", "unterminated string");
}
END_TEST

START_TEST(test_bad_utf8)
{
    bad_json("{\"a\":\n\"\xff\"}", "line 2: invalid UTF-8");
    bad_json("[\"\xc0\xaf\"]", "invalid UTF-8");          /* overlong '/' */
    bad_json("[\"\xe0\x80\xaf\"]", "invalid UTF-8");      /* overlong */
    bad_json("[\"\xed\xa0\x80\"]", "invalid UTF-8");      /* encoded surrogate */
    bad_json("[\"\xf4\x90\x80\x80\"]", "invalid UTF-8");  /* > U+10FFFF */
    bad_json("[\"\xe4\xb8\"]", "invalid UTF-8");          /* truncated */
    bad_json("[\"\x80\"]", "invalid UTF-8");              /* lone continuation */
    bad_json("[1]\xff", "unexpected byte 0xff");
    bad_json_n("[\"a\0b\"]", 7, "control character 0x00");
}
END_TEST

START_TEST(test_not_json)
{
    bad_json("", "empty input");
    bad_json("  \n ", "empty input");
    bad_json("{'a': 1}", "unexpected character '''");
    bad_json("{\"a\": 1} # c", "unexpected character '#'");
    bad_json("a: 1", "line 1: invalid literal 'a' at column 1");
    bad_json("{a: 1}", "object keys must be strings");
    bad_json("{1: 1}", "object keys must be strings");
    bad_json("{\"a\": [1, 2,]}", "trailing comma before ']'");
    bad_json("{\"a\": 1,}", "trailing comma before '}'");
    bad_json("[1,,2]", "unexpected ','");
    bad_json("[,1]", "unexpected ','");
    bad_json("[1:2]", "':' outside an object");
    bad_json("[1}", "unexpected '}'");
    bad_json("{\"a\": &x 1}", "unexpected character '&'");
    bad_json("{\"a\": !!str 1}", "unexpected character '!'");
    bad_json("{} {}", "line 1");
    bad_json("[1] [2]", "line 1");
    bad_json("{\"a\": 1", "line 1");
    bad_json("{\"a\"}", "unexpected '}' (a ':' is missing) at column 5");
    bad_json("- 1\n- 2", "line 1: invalid literal '-'");
    bad_json("--- 1", "line 1: invalid literal '---'");
    bad_json("---\n[1]", "line 1: invalid literal '---'");
    bad_json("[tru]", "invalid literal 'tru'");
    bad_json("[True]", "invalid literal 'True'");
    bad_json("[nan]", "invalid literal 'nan'");
    bad_json("{\"a\": 1,\n\"b\": 2,\n\"c\": bad}", "line 3: invalid literal 'bad'");
    /* values glued together */
    bad_json("[1 2]", "unexpected '2' (a ',' or ']' is missing) at column 4");
    bad_json("[1\"a\"]", "unexpected '\"'");
    bad_json("[\"a\" \"b\"]", "unexpected '\"'");
    bad_json("[\"a\"1]", "unexpected '1'");
    bad_json("[true false]", "unexpected 'f'");
    bad_json("{\"a\": [] {}}", "unexpected '{'");
    bad_json("{{}}", "object keys must be strings");
}
END_TEST

START_TEST(test_numbers)
{
    lh_json *j = ok_json("[0, -0, 1.5e10, -1E-3, 0.25, 123456789012, 9007199254740993,"
                         " 9223372036854775807, -9223372036854775808, 9223372036854775808,"
                         " 18446744073709551615, 18446744073709551616, 1e3, 2.5, -1, 1e-400]");
    long long ll;
    unsigned long long ull;
    double d;
    ck_assert(lh_json_as_number(j->items[2], &d) && d == 1.5e10);
    ck_assert(lh_json_as_number(j->items[3], &d) && d == -1e-3);
    ck_assert(lh_json_as_number(j->items[4], &d) && d == 0.25);
    ck_assert(lh_json_as_int64(j->items[1], &ll) && ll == 0);
    ck_assert(lh_json_as_int64(j->items[5], &ll) && ll == 123456789012LL);
    /* beyond 2^53 the literal, not the double, gives the integer */
    ck_assert(lh_json_as_int64(j->items[6], &ll) && ll == 9007199254740993LL);
    ck_assert(lh_json_as_int64(j->items[7], &ll) && ll == 9223372036854775807LL);
    ck_assert(lh_json_as_int64(j->items[8], &ll) && ll == -9223372036854775807LL - 1);
    ck_assert(!lh_json_as_int64(j->items[9], &ll));
    ck_assert(lh_json_as_uint64(j->items[9], &ull) && ull == 9223372036854775808ULL);
    ck_assert(lh_json_as_uint64(j->items[10], &ull) && ull == 18446744073709551615ULL);
    ck_assert(!lh_json_as_uint64(j->items[11], &ull));
    ck_assert(lh_json_as_int64(j->items[12], &ll) && ll == 1000);
    ck_assert(!lh_json_as_int64(j->items[13], &ll));
    ck_assert(!lh_json_as_uint64(j->items[14], &ull));
    ck_assert(lh_json_as_int64(j->items[14], &ll) && ll == -1);
    ck_assert(lh_json_as_number(j->items[15], &d) && d == 0); /* underflow is fine */
    ck_assert_str_eq(j->items[2]->string, "1.5e10");
    lh_json_free(j);

    bad_json("[01]", "invalid literal '01'");
    bad_json("[1.]", "invalid literal '1.'");
    bad_json("[.5]", "invalid literal '.5'");
    bad_json("[+1]", "invalid literal '+1'");
    bad_json("[0x10]", "invalid literal '0x10'");
    bad_json("[1e]", "invalid literal '1e'");
    bad_json("[-]", "invalid literal '-'");
    bad_json("[Infinity]", "invalid literal 'Infinity'");
    bad_json("[1e400]", "out of range");
    bad_json("[-1e400]", "out of range");
}
END_TEST

START_TEST(test_duplicates_and_keys)
{
    bad_json("{\"a\": 1,\n \"b\": 2,\n \"a\": 3}", "line 3: duplicate key 'a'");
    /* the hashed path (more than 8 keys) */
    lh_sb sb;
    lh_sb_init(&sb);
    lh_sb_append(&sb, "{");
    for (int i = 0; i < 1000; i++)
        lh_sb_appendf(&sb, "\"k%d\": %d,\n", i, i);
    lh_sb_append(&sb, "\"k517\": 0}");
    bad_json(sb.buf, "line 1001: duplicate key 'k517'");
    lh_sb_release(&sb);
    /* the same key at different levels is fine; escapes are compared decoded */
    lh_json *j = ok_json("{\"a\": {\"a\": 1}, \"b\": [{\"a\": 1}, {\"a\": 2}]}");
    lh_json_free(j);
    bad_json("{\"\\u0061\": 1, \"a\": 2}", "duplicate key 'a'");
    bad_json("{\"a\\u0000b\": 1}", "NUL");
}
END_TEST

START_TEST(test_long_keys)
{
    /* libyaml forgets a simple key after 1024 characters */
    lh_sb sb, key;
    lh_sb_init(&sb);
    lh_sb_init(&key);
    for (int i = 0; i < 3000; i++)
        lh_sb_append_n(&key, &"abcdefghij"[i % 10], 1);
    lh_sb_appendf(&sb, "{\"short\": 1, \"%s\\u00e9\\uD83D\\uDE00\\n\" : [\"%s\"],\n\"%s\xc2\x85\": 3}",
                  key.buf, key.buf, key.buf);
    lh_json *j = ok_json(sb.buf);
    ck_assert_uint_eq(j->len, 3);
    ck_assert_uint_eq(strlen(j->keys[1]), 3000 + 2 + 4 + 1);
    ck_assert(strncmp(j->keys[1], key.buf, 3000) == 0);
    ck_assert_str_eq(j->keys[1] + 3000, "\xc3\xa9\xf0\x9f\x98\x80\n");
    ck_assert_str_eq(j->items[1]->items[0]->string, key.buf); /* long value: unchanged */
    ck_assert(strncmp(j->keys[2], key.buf, 3000) == 0);
    ck_assert_str_eq(j->keys[2] + 3000, "\xc2\x85");
    ck_assert(lh_json_as_number(j->items[2], NULL));
    lh_json_free(j);
    lh_sb_release(&sb);
    /* far into a big document, after multi-byte characters, escapes that
     * shrink (surrogate pairs) and grow (raw U+0085), CRLF and tabs: the
     * placeholder's character index must still match libyaml's */
    lh_sb_append(&sb, "{");
    for (int i = 0; i < 20000; i++)
        lh_sb_appendf(&sb, "\"k%d\xe4\xb8\xad\\uD83D\\uDE00\xc2\x85\":\t[%d, \"\xf0\x9f\x98\x80\"],\r\n", i, i);
    for (int i = 0; i < 3; i++)
        lh_sb_appendf(&sb, "\"%d\xc3\xa9%s\": %d,\n", i, key.buf, i);
    lh_sb_append(&sb, "\"end\": 0}");
    j = ok_json(sb.buf);
    ck_assert_uint_eq(j->len, 20004);
    ck_assert_str_eq(j->keys[19999], "k19999\xe4\xb8\xad\xf0\x9f\x98\x80\xc2\x85");
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(j->keys[20000 + i][0], '0' + i);
        ck_assert(strncmp(j->keys[20000 + i] + 1, "\xc3\xa9", 2) == 0);
        ck_assert_str_eq(j->keys[20000 + i] + 3, key.buf);
        ck_assert_int_eq(j->items[20000 + i]->number, i);
    }
    ck_assert_str_eq(j->keys[20003], "end");
    lh_json_free(j);
    lh_sb_release(&sb);
    /* duplicate long keys are still caught */
    lh_sb_appendf(&sb, "{\"%s\": 1, \"%s\": 2}", key.buf, key.buf);
    bad_json(sb.buf, "duplicate key 'abcdefghij");
    lh_sb_release(&sb);
    lh_sb_release(&key);
}
END_TEST

START_TEST(test_depth_limit)
{
    char buf[2 * 600 + 8];
    for (int depth = 511; depth <= 513; depth++) {
        memset(buf, '[', (size_t)depth);
        memset(buf + depth, ']', (size_t)depth);
        lh_json *j = NULL;
        lh_error err = { 0 };
        lh_status st = lh_json_parse(buf, 2 * (size_t)depth, "deep.json", &j, &err);
        if (depth <= 512) {
            ck_assert_int_eq(st, LH_OK);
            lh_json_free(j);
        } else {
            ck_assert_int_eq(st, LH_ERR_FORMAT);
            ck_assert_str_eq(err.msg, "deep.json: line 1: nesting deeper than 512 levels at column 513");
        }
    }
    /* YAML's flow and block nesting are bounded too */
    char *y = malloc(400000);
    memset(y, '[', 50000);
    lh_json *j = NULL;
    lh_error err = { 0 };
    ck_assert_int_ne(lh_yaml_parse(y, 50000, "deep.yaml", &j, &err), LH_OK);
    ck_assert(strstr(err.msg, "nesting deeper than 512 levels"));
    size_t n = 0;
    for (int d = 0; d < 600; d++) {
        for (int k = 0; k < d; k++)
            y[n++] = ' ';
        memcpy(y + n, "- \n", 3);
        n += 2;
        y[n++] = '\n';
    }
    ck_assert_int_ne(lh_yaml_parse(y, n, "deep.yaml", &j, &err), LH_OK);
    free(y);
}
END_TEST

START_TEST(test_big_document)
{
    /* a tokenizer.json-like document: 150k vocab entries and merges */
    lh_sb sb;
    lh_sb_init(&sb);
    lh_sb_append(&sb, "{\"model\": {\"type\": \"BPE\", \"vocab\": {");
    for (int i = 0; i < 150000; i++)
        lh_sb_appendf(&sb, "%s\"t%d\xc4\xa0\": %d", i ? ", " : "", i, i);
    lh_sb_append(&sb, "}, \"merges\": [");
    for (int i = 0; i < 150000; i++)
        lh_sb_appendf(&sb, "%s\"a%d b%d\"", i ? ", " : "", i, i);
    lh_sb_append(&sb, "]}}");
    ck_assert(!lh_sb_failed(&sb));
    lh_json *j = ok_json(sb.buf);
    const lh_json *vocab = lh_json_get(lh_json_get(j, "model"), "vocab");
    ck_assert_uint_eq(vocab->len, 150000);
    ck_assert_str_eq(vocab->keys[149999], "t149999\xc4\xa0");
    long long v;
    ck_assert(lh_json_as_int64(vocab->items[123456], &v) && v == 123456);
    const lh_json *merges = lh_json_get(lh_json_get(j, "model"), "merges");
    ck_assert_uint_eq(merges->len, 150000);
    ck_assert_str_eq(merges->items[77]->string, "a77 b77");
    lh_json_free(j);
    lh_sb_release(&sb);
}
END_TEST

START_TEST(test_yaml_typing)
{
    const char *text = "# a job file\n"
                       "name: my job\n"
                       "int: 42\n"
                       "neg: -7\n"
                       "float: 1.5\n"
                       "exp: 1e-3\n"
                       "hex: 0x1F\n"
                       "oct: 0o17\n"
                       "dec0: 017\n"
                       "on: true\n"
                       "off: False\n"
                       "yes: yes\n"
                       "nil: ~\n"
                       "nothing:\n"
                       "null_word: null\n"
                       "quoted: \"1\"\n"
                       "single: 'true'\n"
                       "version: 1.2.3\n"
                       "inf: .inf\n"
                       "list:\n  - a\n  - 2\n  - {x: 1}\n"
                       "block: |\n  line1\n  line2\n"
                       "1: numeric key\n";
    lh_json *j = NULL;
    lh_error err = { 0 };
    ck_assert_int_eq(lh_yaml_parse(text, strlen(text), "job.yaml", &j, &err), LH_OK);
    long long ll;
    double d;
    int b;
    const char *s;
    ck_assert(lh_json_as_string(lh_json_get(j, "name"), &s) && !strcmp(s, "my job"));
    ck_assert(lh_json_as_int64(lh_json_get(j, "int"), &ll) && ll == 42);
    ck_assert(lh_json_as_int64(lh_json_get(j, "neg"), &ll) && ll == -7);
    ck_assert(lh_json_as_number(lh_json_get(j, "float"), &d) && d == 1.5);
    ck_assert(lh_json_as_number(lh_json_get(j, "exp"), &d) && d == 1e-3);
    ck_assert(lh_json_as_int64(lh_json_get(j, "hex"), &ll) && ll == 31);
    ck_assert(lh_json_as_int64(lh_json_get(j, "oct"), &ll) && ll == 15);
    ck_assert(lh_json_as_int64(lh_json_get(j, "dec0"), &ll) && ll == 17);
    ck_assert(lh_json_as_bool(lh_json_get(j, "on"), &b) && b == 1);
    ck_assert(lh_json_as_bool(lh_json_get(j, "off"), &b) && b == 0);
    ck_assert(lh_json_as_string(lh_json_get(j, "yes"), &s) && !strcmp(s, "yes"));
    ck_assert_int_eq(lh_json_get(j, "nil")->type, LH_JSON_NULL);
    ck_assert_int_eq(lh_json_get(j, "nothing")->type, LH_JSON_NULL);
    ck_assert_int_eq(lh_json_get(j, "null_word")->type, LH_JSON_NULL);
    ck_assert(lh_json_as_string(lh_json_get(j, "quoted"), &s) && !strcmp(s, "1"));
    ck_assert(lh_json_as_string(lh_json_get(j, "single"), &s) && !strcmp(s, "true"));
    ck_assert(lh_json_as_string(lh_json_get(j, "version"), &s) && !strcmp(s, "1.2.3"));
    ck_assert(lh_json_as_number(lh_json_get(j, "inf"), &d) && isinf(d));
    const lh_json *list = lh_json_get(j, "list");
    ck_assert_uint_eq(list->len, 3);
    ck_assert_str_eq(list->items[0]->string, "a");
    ck_assert(lh_json_as_int64(list->items[1], &ll) && ll == 2);
    ck_assert(lh_json_as_int64(lh_json_get(list->items[2], "x"), &ll) && ll == 1);
    ck_assert_str_eq(lh_json_get(j, "block")->string, "line1\nline2\n");
    ck_assert_str_eq(lh_json_get(j, "1")->string, "numeric key");
    /* values know their line, for messages about them */
    ck_assert_uint_eq(j->line, 2);
    ck_assert_uint_eq(lh_json_get(j, "int")->line, 3);
    ck_assert_uint_eq(list->items[2]->line, 23);
    ck_assert_str_eq(lh_json_get(j, "on")->string, "true"); /* the literal */
    lh_json_free(j);

    /* a JSON file is YAML too */
    const char *js = "{\"a\": [1, 2]}";
    ck_assert_int_eq(lh_yaml_parse(js, strlen(js), "x.yaml", &j, &err), LH_OK);
    ck_assert_uint_eq(lh_json_get(j, "a")->len, 2);
    lh_json_free(j);
    /* empty YAML is null */
    ck_assert_int_eq(lh_yaml_parse("", 0, "e.yaml", &j, &err), LH_OK);
    ck_assert_int_eq(j->type, LH_JSON_NULL);
    lh_json_free(j);
    ck_assert_int_eq(lh_yaml_parse("# only a comment\n", 17, "e.yaml", &j, &err), LH_OK);
    ck_assert_int_eq(j->type, LH_JSON_NULL);
    lh_json_free(j);
}
END_TEST

static void bad_yaml(const char *text, const char *want)
{
    lh_json *j = (lh_json *)1;
    lh_error err = { 0 };
    ck_assert_msg(lh_yaml_parse(text, strlen(text), "job.yaml", &j, &err) != LH_OK, "<%s> accepted",
                  text);
    ck_assert_ptr_null(j);
    ck_assert_msg(strstr(err.msg, want) != NULL, "<%s>: '%s' lacks '%s'", text, err.msg, want);
}

START_TEST(test_yaml_refusals)
{
    bad_yaml("a: &x 1\nb: *x\n", "line 1: anchors and aliases are not supported");
    bad_yaml("a: 1\nb: *x\n", "job.yaml: line 2:");
    bad_yaml("a: !!str 1\n", "line 1: tags are not supported");
    bad_yaml("a: !custom {x: 1}\n", "tags are not supported");
    bad_yaml("a: 1\n---\nb: 2\n", "line 2: more than one document");
    bad_yaml("a: 1\na: 2\n", "line 2: duplicate key 'a'");
    bad_yaml("a:\n\t- 1\n", "job.yaml: line 2:");
    bad_yaml("? [1, 2]\n: x\n", "object keys must be strings");
    bad_yaml("a: [1, 2\nb: 3\n", "job.yaml: line");
    bad_yaml("a: \"\\uD83D\"\n", "line 1");
    bad_yaml("a: 1\n\xff: 2\n", "job.yaml: line");
}
END_TEST

START_TEST(test_files)
{
    char dir[] = "/tmp/lh-json-XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    char path[256];
    snprintf(path, sizeof path, "%s/c.json", dir);
    FILE *f = fopen(path, "w");
    fputs("{\"r\": 8,\n \"bad\": tru}\n", f);
    fclose(f);
    lh_json *j = NULL;
    lh_error err = { 0 };
    ck_assert_int_eq(lh_json_parse_file(path, &j, &err), LH_ERR_FORMAT);
    char want[300];
    snprintf(want, sizeof want, "%s: line 2: invalid literal 'tru' at column 9", path);
    ck_assert_str_eq(err.msg, want);
    f = fopen(path, "w");
    fputs("r: 8\n", f);
    fclose(f);
    ck_assert_int_eq(lh_yaml_parse_file(path, &j, &err), LH_OK);
    ck_assert_int_eq(lh_json_get(j, "r")->number, 8);
    lh_json_free(j);
    unlink(path);
    ck_assert_int_eq(lh_json_parse_file(path, &j, &err), LH_ERR_NOT_FOUND);
    ck_assert(strstr(err.msg, path) != NULL);
    ck_assert_int_eq(lh_json_parse_file(dir, &j, &err), LH_ERR_IO);
    rmdir(dir);
}
END_TEST

/* What the parser must refuse beyond the basics above (RFC 8259 is strict). */
START_TEST(test_strict_refusals)
{
    /* bad UTF-8 in keys too; the column counts characters */
    bad_json("{\"\xff\": 1}", "line 1: invalid UTF-8 in a string (byte 0xff) at column 3");
    bad_json("[\"\xc3\xa9\xc3\"]", "invalid UTF-8 in a string (byte 0xc3) at column 4");
    bad_json("[\"\xf0\x9f\x98\"]", "invalid UTF-8");               /* truncated 4-byte */
    bad_json("[\"\xf8\x88\x80\x80\x80\"]", "invalid UTF-8");       /* 5-byte form */
    bad_json("[\"\xc2\xa0\", \xc2\xa0 1]", "unexpected byte 0xc2 outside a string (a value is missing) at column 7");
    /* lone and misordered surrogates */
    bad_json("[\"\\uDC00\"]", "unpaired surrogate \\uDC00");
    bad_json("[\"x\\uDBFF\"]", "unpaired surrogate \\uDBFF");
    bad_json("[\"\\uD800\\uD800\"]", "unpaired surrogate \\uD800");
    bad_json("[\"\\uD800\\n\"]", "unpaired surrogate \\uD800");
    bad_json("[\"\\uD800\\uDC0\"]", "unpaired surrogate \\uD800");
    bad_json("{\"\\uDE00\": 1}", "unpaired surrogate \\uDE00");
    /* the number grammar: no leading zeros, signs, bare dots or hex */
    bad_json("[00]", "invalid literal '00'");
    bad_json("[-01]", "invalid literal '-01'");
    bad_json("[007]", "invalid literal '007'");
    bad_json("[1.0e+]", "invalid literal '1.0e+'");
    bad_json("[1.5E3x]", "invalid literal '1.5E3x'");
    bad_json("[--1]", "invalid literal '--1'");
    bad_json("[1e5.5]", "invalid literal '1e5.5'");
    bad_json("[NaN]", "invalid literal 'NaN'");
    bad_json("[nul]", "invalid literal 'nul'");
    bad_json("[nulls]", "invalid literal 'nulls'");
    /* trailing commas, wherever they are */
    bad_json("[1,]", "trailing comma before ']' at column 4");
    bad_json("[[1],\n]", "line 2: trailing comma before ']' at column 1");
    bad_json("{\"a\": {\"b\": 1,}}", "trailing comma before '}'");
    bad_json("{,}", "unexpected ','");
    /* only space, tab, LF and CR separate tokens */
    bad_json("[1,\f2]", "unexpected byte 0x0c outside a string");
    bad_json("[1,\v2]", "unexpected byte 0x0b outside a string");
    bad_json_n("[1,\0 2]", 6, "unexpected byte 0x00 outside a string");
    bad_json("{\"a\" 1}", "unexpected '1' (a ':' is missing)");
    /* a line and a column point at the problem */
    bad_json("{\n  \"a\": tru\n}", "t.json: line 2: invalid literal 'tru' at column 8");
    bad_json("[\"\xc3\xa9\", x]", "line 1: invalid literal 'x' at column 7");
    bad_json("[1,\r\n2,\r3 4]", "line 3: unexpected '4' (a ',' or ']' is missing) at column 3");
    bad_json("\xef\xbb\xbf[1 2]", "at column 4"); /* the byte order mark is no character */
}
END_TEST

/* 100000 opening brackets: refused at the limit, in constant stack. */
START_TEST(test_depth_bomb)
{
    size_t n = 100000;
    char *bomb = malloc(2 * n);
    memset(bomb, '[', n);
    bad_json_n(bomb, n, "line 1: nesting deeper than 512 levels at column 513");
    for (size_t i = 0; i < n / 5; i++)
        memcpy(bomb + 5 * i, "{\"a\":", 5);
    bad_json_n(bomb, n, "nesting deeper than 512 levels at column 2561");
    free(bomb);
}
END_TEST

/* Every proper prefix of a valid document is refused with a message. */
START_TEST(test_truncated)
{
    const char *doc = "{\"a\": [1, -2.5e3, true, false, null, \"x\\u00e9\\uD83D\\uDE00\xc3\xa9\"],\n"
                      " \"b\": {\"c\": {}, \"d\": []}, \"e\": \"\\\\\\\"\"}";
    size_t n = strlen(doc);
    lh_json_free(ok_json(doc)); /* the whole one is valid */
    for (size_t len = 0; len < n; len++) {
        lh_json *j = (lh_json *)1;
        lh_error err = { 0 };
        ck_assert_msg(lh_json_parse(doc, len, "t.json", &j, &err) == LH_ERR_FORMAT, "prefix %zu accepted", len);
        ck_assert_ptr_null(j);
        ck_assert_msg(strncmp(err.msg, "t.json: line ", 13) == 0, "prefix %zu: '%s'", len, err.msg);
    }
    bad_json("[1, 2", "line 1: unexpected end of input (a ',' or ']' is missing) at column 6");
    bad_json("{\"a\": ", "unexpected end of input (a value is missing)");
    bad_json("{\"a\"", "unexpected end of input (a ':' is missing)");
    bad_json("[\"abc\\", "unterminated string at column 2");
    bad_json("\"\\u00", "unterminated string");
    bad_json("\"\\u00\"", "invalid \\u escape");
}
END_TEST

START_TEST(test_accepts)
{
    /* big and small numbers; the literal is kept exactly */
    lh_json *j = ok_json("[1e308, -1.7976931348623157e308, 123456789012345678901234567890, 4.9e-324,"
                         " 999999999999999, 1234567890123456, -0, 0.1, 1E+2, -9007199254740993]");
    double d;
    long long ll;
    ck_assert(lh_json_as_number(j->items[0], &d) && d == 1e308);
    ck_assert(lh_json_as_number(j->items[1], &d) && d == -1.7976931348623157e308);
    ck_assert(lh_json_as_number(j->items[2], &d) && d == 123456789012345678901234567890.0);
    ck_assert_str_eq(j->items[2]->string, "123456789012345678901234567890");
    ck_assert(!lh_json_as_int64(j->items[2], &ll));
    ck_assert(lh_json_as_number(j->items[3], &d) && d == 4.9e-324 && d > 0);
    ck_assert(lh_json_as_int64(j->items[4], &ll) && ll == 999999999999999LL);
    ck_assert(lh_json_as_number(j->items[5], &d) && d == 1234567890123456.0);
    ck_assert(lh_json_as_number(j->items[6], &d) && d == 0 && signbit(d));
    ck_assert(lh_json_as_number(j->items[7], &d) && d == 0.1);
    ck_assert(lh_json_as_number(j->items[8], &d) && d == 100);
    ck_assert(lh_json_as_int64(j->items[9], &ll) && ll == -9007199254740993LL);
    lh_json_free(j);
    /* escapes in keys as in values; raw 4-byte UTF-8 */
    j = ok_json("{\"k\\t\\u00e9\\/\\uD83D\\uDE00\": \"\\\"\\\\\\b\\f\\n\\r\\t\\/\\u0000\\uDBFF\\uDFFF\","
                " \"\xf0\x9f\x98\x80\": \"\xf4\x8f\xbf\xbf\"}");
    ck_assert_str_eq(j->keys[0], "k\t\xc3\xa9/\xf0\x9f\x98\x80");
    ck_assert_uint_eq(j->items[0]->len, 13);
    ck_assert(memcmp(j->items[0]->string, "\"\\\b\f\n\r\t/\0\xf4\x8f\xbf\xbf", 14) == 0);
    ck_assert_str_eq(lh_json_get(j, "\xf0\x9f\x98\x80")->string, "\xf4\x8f\xbf\xbf");
    lh_json_free(j);
    /* empty containers, strings and nesting at the limit's edge */
    j = ok_json("[[], {}, [ ], { \n }, \"\", [[{}]], {\"\": {}}]");
    ck_assert_uint_eq(j->len, 7);
    for (int i = 0; i < 4; i++) {
        ck_assert_uint_eq(j->items[i]->len, 0);
        ck_assert_ptr_null(j->items[i]->items);
    }
    ck_assert_int_eq(j->items[1]->type, LH_JSON_OBJECT);
    ck_assert_uint_eq(j->items[4]->len, 0);
    ck_assert_str_eq(j->items[4]->string, "");
    ck_assert_str_eq(j->items[6]->keys[0], "");
    ck_assert_uint_eq(j->items[3]->line, 1);
    lh_json_free(j);
    j = ok_json("{}");
    ck_assert(j->type == LH_JSON_OBJECT && j->len == 0);
    lh_json_free(j);
    j = ok_json("\r\n\t null \n");
    ck_assert_int_eq(j->type, LH_JSON_NULL);
    ck_assert_uint_eq(j->line, 2);
    ck_assert_str_eq(j->string, "null");
    lh_json_free(j);
    j = ok_json("false");
    ck_assert(j->type == LH_JSON_BOOL && !j->boolean);
    lh_json_free(j);
}
END_TEST

static Suite *json_suite(void)
{
    Suite *s = suite_create("json");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_basic_tree);
    tcase_add_test(tc, test_escapes);
    tcase_add_test(tc, test_bad_utf8);
    tcase_add_test(tc, test_not_json);
    tcase_add_test(tc, test_numbers);
    tcase_add_test(tc, test_duplicates_and_keys);
    tcase_add_test(tc, test_long_keys);
    tcase_add_test(tc, test_depth_limit);
    tcase_add_test(tc, test_big_document);
    tcase_add_test(tc, test_yaml_typing);
    tcase_add_test(tc, test_yaml_refusals);
    tcase_add_test(tc, test_files);
    tcase_add_test(tc, test_strict_refusals);
    tcase_add_test(tc, test_depth_bomb);
    tcase_add_test(tc, test_truncated);
    tcase_add_test(tc, test_accepts);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(json_suite());
    srunner_run_all(sr, CK_ENV);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

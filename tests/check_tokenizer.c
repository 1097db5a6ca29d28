/* tests/check_tokenizer.c - the tokenizer.json reader against an independent
 * reference.
 *
 * The tests/fixtures/tokenizers/NAME.expected.json files were written by
 * tools/make_tokenizer_fixtures.py with tools/tokenizer_reference.py (a
 * separate Python implementation of the Hugging Face BPE rules): token ids
 * with and without special-token matching, and decodings, for Llama-3-,
 * GPT-2-, Llama-2- and Metaspace-style tokenizers trained on mixed text, and
 * a tiny one that exercises <unk> and the Split/Digits/Punctuation
 * behaviours. The hand-made cases below check merge order, ignore_merges and
 * byte fallback on vocabularies small enough to work out by hand; the rest
 * checks that unsupported components are refused by name and hostile files
 * are refused with a message naming the file. */
#include <check.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "model/tokenizer/tokenizer.h"
#include "lib/json.h"

#define FIX "tests/fixtures/tokenizers"

static int32_t *json_ids(const lh_json *arr, size_t *n)
{
    ck_assert(arr && arr->type == LH_JSON_ARRAY);
    int32_t *v = malloc((arr->len + 1) * sizeof *v);
    for (size_t i = 0; i < arr->len; i++) {
        long long x;
        ck_assert(lh_json_as_int64(arr->items[i], &x));
        v[i] = (int32_t)x;
    }
    *n = arr->len;
    return v;
}

static void assert_ids(const char *what, const char *text, const int32_t *got, size_t ng,
                       const int32_t *want, size_t nw)
{
    size_t i = 0;
    while (i < ng && i < nw && got[i] == want[i]) i++;
    ck_assert_msg(ng == nw && i == ng,
                  "%s: text \"%s\": ids differ at index %zu (got %zu ids, want %zu; got %d, want %d)",
                  what, text, i, ng, nw, i < ng ? got[i] : -1, i < nw ? want[i] : -1);
}

/* Every case of one fixture; returns the number of cases checked. */
static size_t check_fixture(const char *expected_path)
{
    lh_error err = {0};
    lh_json *exp = NULL;
    ck_assert_msg(lh_json_parse_file(expected_path, &exp, &err) == LH_OK, "%s", err.msg);
    const char *tokname;
    ck_assert(lh_json_as_string(lh_json_get(exp, "tokenizer"), &tokname));
    char tokpath[1024];
    snprintf(tokpath, sizeof tokpath, "%s/%s", FIX, tokname);
    lh_tokenizer *t = NULL;
    ck_assert_msg(lh_tokenizer_load(tokpath, &t, &err) == LH_OK, "%s", err.msg);

    const lh_json *cases = lh_json_get(exp, "cases");
    ck_assert(cases && cases->type == LH_JSON_ARRAY && cases->len > 0);
    for (size_t c = 0; c < cases->len; c++) {
        const lh_json *k = cases->items[c];
        const char *text, *dec_want, *dec_skip_want;
        ck_assert(lh_json_as_string(lh_json_get(k, "text"), &text));
        ck_assert(lh_json_as_string(lh_json_get(k, "decoded"), &dec_want));
        ck_assert(lh_json_as_string(lh_json_get(k, "decoded_skip_special"), &dec_skip_want));
        size_t nw, nw2, ng;
        int32_t *want = json_ids(lh_json_get(k, "ids"), &nw);
        const lh_json *plain = lh_json_get(k, "ids_no_special");
        int32_t *want2 = json_ids(plain ? plain : lh_json_get(k, "ids"), &nw2);
        int32_t *got = NULL;

        ck_assert_msg(lh_tokenizer_encode(t, text, 1, &got, &ng, &err) == LH_OK, "%s", err.msg);
        assert_ids(expected_path, text, got, ng, want, nw);
        free(got);
        ck_assert_msg(lh_tokenizer_encode(t, text, 0, &got, &ng, &err) == LH_OK, "%s", err.msg);
        assert_ids(expected_path, text, got, ng, want2, nw2);
        free(got);

        char *dec = NULL;
        ck_assert_msg(lh_tokenizer_decode(t, want, nw, 0, &dec, &err) == LH_OK, "%s", err.msg);
        ck_assert_msg(strcmp(dec, dec_want) == 0, "%s: decode of \"%s\" gave \"%s\", want \"%s\"",
                      expected_path, text, dec, dec_want);
        int lossless = 0;
        lh_json_as_bool(lh_json_get(k, "lossless"), &lossless);
        if (lossless) ck_assert_str_eq(dec, text);
        free(dec);
        ck_assert_msg(lh_tokenizer_decode(t, want, nw, 1, &dec, &err) == LH_OK, "%s", err.msg);
        ck_assert_msg(strcmp(dec, dec_skip_want) == 0, "%s: skip-special decode of \"%s\" gave \"%s\", want \"%s\"",
                      expected_path, text, dec, dec_skip_want);
        free(dec);
        free(want);
        free(want2);
    }
    size_t n = cases->len;
    lh_tokenizer_free(t);
    lh_json_free(exp);
    return n;
}

START_TEST(fixtures_match_reference)
{
    static const char *const required[] = { "llama3-style", "gpt2-style", "llama2-style",
                                            "metaspace-style", "tiny-unk", "qwen2-style" };
    size_t total = 0;
    for (size_t i = 0; i < sizeof required / sizeof required[0]; i++) {
        char p[512];
        snprintf(p, sizeof p, FIX "/%s.expected.json", required[i]);
        total += check_fixture(p);
    }
    /* Fixtures added later (e.g. zoo-base from examples/zoo) are picked up too. */
    DIR *d = opendir(FIX);
    ck_assert(d != NULL);
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t l = strlen(e->d_name);
        if (l < 14 || strcmp(e->d_name + l - 14, ".expected.json") != 0) continue;
        int known = 0;
        for (size_t i = 0; i < sizeof required / sizeof required[0]; i++)
            if (strncmp(e->d_name, required[i], strlen(required[i])) == 0
                && e->d_name[strlen(required[i])] == '.') known = 1;
        if (known) continue;
        char p[1024];
        snprintf(p, sizeof p, FIX "/%s", e->d_name);
        total += check_fixture(p);
    }
    closedir(d);
    ck_assert_uint_ge(total, 6 * 20);
}
END_TEST

/* Vocab size, token <-> id against the tokenizer.json itself. */
START_TEST(token_lookups)
{
    lh_error err = {0};
    lh_json *j = NULL;
    lh_tokenizer *t = NULL;
    const char *path = FIX "/llama3-style.tokenizer.json";
    ck_assert(lh_json_parse_file(path, &j, &err) == LH_OK);
    ck_assert_msg(lh_tokenizer_load(path, &t, &err) == LH_OK, "%s", err.msg);
    const lh_json *vocab = lh_json_get(lh_json_get(j, "model"), "vocab");
    const lh_json *added = lh_json_get(j, "added_tokens");
    long long max = -1, id;
    for (size_t i = 0; i < vocab->len; i++) {
        ck_assert(lh_json_as_int64(vocab->items[i], &id));
        if (id > max) max = id;
        ck_assert_int_eq(lh_tokenizer_token_id(t, vocab->keys[i]), id);
        ck_assert_str_eq(lh_tokenizer_id_token(t, (int32_t)id), vocab->keys[i]);
    }
    for (size_t i = 0; i < added->len; i++) {
        const char *c;
        ck_assert(lh_json_as_int64(lh_json_get(added->items[i], "id"), &id));
        ck_assert(lh_json_as_string(lh_json_get(added->items[i], "content"), &c));
        if (id > max) max = id;
        ck_assert_int_eq(lh_tokenizer_token_id(t, c), id);
        ck_assert_str_eq(lh_tokenizer_id_token(t, (int32_t)id), c);
    }
    ck_assert_int_eq(lh_tokenizer_vocab_size(t), max + 1);
    ck_assert_int_eq(lh_tokenizer_token_id(t, "no such token"), -1);
    ck_assert_ptr_null(lh_tokenizer_id_token(t, -1));
    ck_assert_ptr_null(lh_tokenizer_id_token(t, (int32_t)max + 1));
    ck_assert_int_eq(lh_tokenizer_vocab_size(NULL), 0);
    lh_tokenizer_free(t);
    lh_tokenizer_free(NULL);
    lh_json_free(j);
}
END_TEST

/* ---- inline tokenizers ---- */

static char tmpdir[] = "/tmp/check_tokenizer.XXXXXX";
static int tmp_serial;

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "wb");
    ck_assert(f != NULL);
    ck_assert(fwrite(text, 1, strlen(text), f) == strlen(text));
    ck_assert(fclose(f) == 0);
}

/* Write json to a fresh temp file and load it; path gets the file name. */
static lh_status load_inline(const char *json, lh_tokenizer **t, lh_error *err, char *path, size_t pn)
{
    snprintf(path, pn, "%s/t%d.json", tmpdir, tmp_serial++);
    write_file(path, json);
    lh_status rc = lh_tokenizer_load(path, t, err);
    unlink(path);
    return rc;
}

static lh_tokenizer *must_load(const char *json)
{
    lh_tokenizer *t = NULL;
    lh_error err = {0};
    char p[256];
    ck_assert_msg(load_inline(json, &t, &err, p, sizeof p) == LH_OK, "%s", err.msg);
    return t;
}

static void expect_ids(const lh_tokenizer *t, const char *text, const int32_t *want, size_t nw)
{
    int32_t *got = NULL;
    size_t ng = 0;
    lh_error err = {0};
    ck_assert_msg(lh_tokenizer_encode(t, text, 1, &got, &ng, &err) == LH_OK, "%s", err.msg);
    assert_ids("inline", text, got, ng, want, nw);
    free(got);
}

/* The lowest-ranked pair merges first, wherever it is; equal ranks go left
 * to right. ids: a=0 b=1 c=2 ab=3 bc=4 abc=5 */
START_TEST(merge_order_by_rank)
{
    const char *v = "\"vocab\":{\"a\":0,\"b\":1,\"c\":2,\"ab\":3,\"bc\":4,\"abc\":5}";
    char json[1024];
    snprintf(json, sizeof json, "{\"model\":{\"type\":\"BPE\",%s,\"merges\":[\"b c\",\"a b\",\"a bc\"]}}", v);
    lh_tokenizer *t = must_load(json);
    expect_ids(t, "abc", (int32_t[]){5}, 1);          /* b+c first, then a+bc */
    expect_ids(t, "abab", (int32_t[]){3, 3}, 2);
    expect_ids(t, "cab", (int32_t[]){2, 3}, 2);
    expect_ids(t, "", NULL, 0);
    int32_t *ids = NULL;
    size_t n = 9;
    lh_error err = {0};
    ck_assert(lh_tokenizer_encode(t, "", 1, &ids, &n, &err) == LH_OK);
    ck_assert_uint_eq(n, 0);
    ck_assert_ptr_nonnull(ids); /* callers may memcpy from it */
    free(ids);
    lh_tokenizer_free(t);
    /* a+b ranked first: "abc" stops at ab,c since no "ab c" merge */
    snprintf(json, sizeof json, "{\"model\":{\"type\":\"BPE\",%s,\"merges\":[[\"a\",\"b\"],[\"b\",\"c\"],[\"a\",\"bc\"]]}}", v);
    t = must_load(json);
    expect_ids(t, "abc", (int32_t[]){3, 2}, 2);
    expect_ids(t, "bcab", (int32_t[]){4, 3}, 2);
    lh_tokenizer_free(t);
    /* aaa with one merge a+a: leftmost pair first -> aa,a */
    t = must_load("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"aa\":1},\"merges\":[\"a a\"]}}");
    expect_ids(t, "aaa", (int32_t[]){1, 0}, 2);
    expect_ids(t, "aaaa", (int32_t[]){1, 1}, 2);
    lh_tokenizer_free(t);
}
END_TEST

START_TEST(ignore_merges_and_fallback)
{
    const char *base = "{\"model\":{\"type\":\"BPE\",\"ignore_merges\":%s,\"byte_fallback\":true,"
                       "\"unk_token\":\"<unk>\",\"fuse_unk\":true,"
                       "\"vocab\":{\"<unk>\":0,\"a\":1,\"b\":2,\"c\":3,\"abc\":4,\"<0xC3>\":5,\"<0xA9>\":6},"
                       "\"merges\":[]},\"decoder\":{\"type\":\"Sequence\",\"decoders\":"
                       "[{\"type\":\"ByteFallback\"},{\"type\":\"Fuse\"}]}}";
    char json[1024];
    snprintf(json, sizeof json, base, "true");
    lh_tokenizer *t = must_load(json);
    expect_ids(t, "abc", (int32_t[]){4}, 1);
    expect_ids(t, "abcé", (int32_t[]){1, 2, 3, 5, 6}, 5);
    /* é has both bytes; ü (C3 BC) lacks <0xBC> so it is <unk>, fused with the next unknown */
    expect_ids(t, "aüüb", (int32_t[]){1, 0, 2}, 3);
    char *s = NULL;
    lh_error err = {0};
    ck_assert(lh_tokenizer_decode(t, (int32_t[]){1, 5, 6, 2}, 4, 0, &s, &err) == LH_OK);
    ck_assert_str_eq(s, "aéb");
    free(s);
    /* a lone continuation byte decodes to U+FFFD, as the library does */
    ck_assert(lh_tokenizer_decode(t, (int32_t[]){1, 6, 2}, 3, 0, &s, &err) == LH_OK);
    ck_assert_str_eq(s, "a\xEF\xBF\xBD" "b");
    free(s);
    /* ids outside the vocab are dropped, like the library does */
    ck_assert(lh_tokenizer_decode(t, (int32_t[]){-5, 1, 99999, 2}, 4, 0, &s, &err) == LH_OK);
    ck_assert_str_eq(s, "ab");
    free(s);
    lh_tokenizer_free(t);
    snprintf(json, sizeof json, base, "false");
    t = must_load(json);
    expect_ids(t, "abc", (int32_t[]){1, 2, 3}, 3);
    lh_tokenizer_free(t);
}
END_TEST

/* A word of 150k characters: merges come from a heap, so this is quick; a
 * quadratic implementation would hit the tcase timeout. */
START_TEST(long_word)
{
    lh_error err = {0};
    lh_tokenizer *t = NULL;
    ck_assert_msg(lh_tokenizer_load(FIX "/llama2-style.tokenizer.json", &t, &err) == LH_OK, "%s", err.msg);
    static const char pat[] = "thequickbrownfox\xC3\xA9"; /* 18 bytes */
    size_t n = 18 * 8000;
    char *text = malloc(n + 1);
    for (size_t i = 0; i < n; i++) text[i] = pat[i % 18];
    text[n] = 0;
    int32_t *ids = NULL;
    size_t ni = 0;
    ck_assert_msg(lh_tokenizer_encode(t, text, 1, &ids, &ni, &err) == LH_OK, "%s", err.msg);
    ck_assert_uint_gt(ni, 1000);
    ck_assert_uint_lt(ni, n);
    char *back = NULL;
    ck_assert(lh_tokenizer_decode(t, ids, ni, 1, &back, &err) == LH_OK);
    ck_assert(strcmp(back, text) == 0);
    free(back);
    free(ids);
    free(text);
    lh_tokenizer_free(t);
}
END_TEST

START_TEST(bad_text_and_args)
{
    lh_error err = {0};
    lh_tokenizer *t = NULL;
    ck_assert(lh_tokenizer_load(FIX "/gpt2-style.tokenizer.json", &t, &err) == LH_OK);
    int32_t *ids = (int32_t *)1;
    size_t n = 7;
    ck_assert_int_eq(lh_tokenizer_encode(t, "ok \xC3\x28 bad", 1, &ids, &n, &err), LH_ERR_ARG);
    ck_assert_ptr_nonnull(strstr(err.msg, "gpt2-style"));
    ck_assert_msg(strstr(err.msg, "UTF-8") != NULL, "%s", err.msg);
    ck_assert_ptr_null(ids);
    ck_assert_int_eq(lh_tokenizer_encode(t, "\xED\xA0\x80", 1, &ids, &n, &err), LH_ERR_ARG); /* surrogate */
    ck_assert_int_eq(lh_tokenizer_encode(t, "\xC0\xAF", 1, &ids, &n, &err), LH_ERR_ARG);     /* overlong */
    ck_assert_int_eq(lh_tokenizer_encode(NULL, "x", 1, &ids, &n, &err), LH_ERR_ARG);
    char *s;
    ck_assert_int_eq(lh_tokenizer_decode(t, NULL, 0, 0, &s, &err), LH_OK);
    ck_assert_str_eq(s, "");
    free(s);
    /* byte-level decode of an id sequence that splits a character */
    int32_t e9 = lh_tokenizer_token_id(t, "\xC2\xA9"); /* stand-in for byte 0xA9 */
    ck_assert_int_ge(e9, 0);
    ck_assert(lh_tokenizer_decode(t, (int32_t[]){e9, e9}, 2, 0, &s, &err) == LH_OK);
    ck_assert_str_eq(s, "\xEF\xBF\xBD\xEF\xBF\xBD");
    free(s);
    lh_tokenizer_free(t);
}
END_TEST

/* \s means Unicode White_Space, as in the library's regex engines: U+2009
 * separates words, U+180E (no longer a space since Unicode 6.3) does not. */
START_TEST(split_regex_whitespace)
{
    lh_tokenizer *t = must_load("{\"pre_tokenizer\":{\"type\":\"Split\",\"pattern\":{\"Regex\":\"[\\\\s,]+\"},"
                                "\"behavior\":\"Removed\",\"invert\":false},\"model\":{\"type\":\"BPE\","
                                "\"vocab\":{\"a\":0,\"b\":1,\"<unk>\":2,\"ab\":3},\"unk_token\":\"<unk>\",\"merges\":[\"a b\"]}}");
    expect_ids(t, "ab, ab", (int32_t[]){3, 3}, 2);
    expect_ids(t, "a\xE2\x80\x89" "b", (int32_t[]){0, 1}, 2);     /* U+2009 thin space */
    expect_ids(t, "a\xE1\xA0\x8E" "b", (int32_t[]){0, 2, 1}, 3);  /* U+180E is part of the word */
    expect_ids(t, "a\xC2\x85" "b", (int32_t[]){0, 1}, 2);         /* U+0085 NEL is a space */
    lh_tokenizer_free(t);
    t = must_load("{\"pre_tokenizer\":{\"type\":\"Split\",\"pattern\":{\"Regex\":\"\\\\S+\"},"
                  "\"behavior\":\"Removed\",\"invert\":true},\"model\":{\"type\":\"BPE\","
                  "\"vocab\":{\"a\":0,\"b\":1,\"<unk>\":2,\"ab\":3},\"unk_token\":\"<unk>\",\"merges\":[\"a b\"]}}");
    expect_ids(t, " ab\tab\xE1\xA0\x8E ", (int32_t[]){3, 3, 2}, 3);
    lh_tokenizer_free(t);
}
END_TEST

/* An empty match (a lookahead) still cuts the text. */
START_TEST(split_empty_match)
{
    lh_tokenizer *t = must_load("{\"pre_tokenizer\":{\"type\":\"Split\",\"pattern\":{\"Regex\":\"(?=b)\"},"
                                "\"behavior\":\"Isolated\"},\"model\":{\"type\":\"BPE\","
                                "\"vocab\":{\"a\":0,\"b\":1,\"ab\":2},\"merges\":[\"a b\"]}}");
    expect_ids(t, "abab", (int32_t[]){0, 1, 0, 1}, 4);
    expect_ids(t, "aa", (int32_t[]){0, 0}, 2);
    lh_tokenizer_free(t);
    t = must_load("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1,\"ab\":2},\"merges\":[\"a b\"]}}");
    expect_ids(t, "abab", (int32_t[]){2, 2}, 2);
    lh_tokenizer_free(t);
}
END_TEST

/* NFC worked out by hand from the Unicode data: composition, a singleton
 * (U+212B ANGSTROM SIGN -> U+00C5), canonical reordering (cedilla, class
 * 202, before acute, class 230, then e+cedilla composes to U+0229) and
 * Hangul jamo composing to a syllable. */
/* A regex that recurses once per character: 100k characters need more than
 * PCRE2's default JIT stack (a bigger one is made on demand); 2M exceed
 * even that and must fail cleanly, naming the file. */
START_TEST(regex_stack_limits)
{
    lh_tokenizer *t = NULL;
    lh_error err = {0};
    char path[256];
    ck_assert(load_inline("{\"pre_tokenizer\":{\"type\":\"Split\",\"pattern\":{\"Regex\":\"(?:a|b)*c|(a|b(?=a))+\"},"
                          "\"behavior\":\"Isolated\"},\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1},\"merges\":[]}}",
                          &t, &err, path, sizeof path) == LH_OK);
    size_t big = 2000000;
    char *s = malloc(big + 1);
    for (size_t i = 0; i < big; i++) s[i] = "ab"[i % 2];
    s[100000] = 0;
    int32_t *ids = NULL;
    size_t n = 0;
    ck_assert_msg(lh_tokenizer_encode(t, s, 1, &ids, &n, &err) == LH_OK, "%s", err.msg);
    ck_assert_uint_eq(n, 100000);
    ck_assert_int_eq(ids[0], 0);
    ck_assert_int_eq(ids[99999], 1);
    free(ids);
    s[100000] = 'a';
    s[big] = 0;
    ck_assert_int_eq(lh_tokenizer_encode(t, s, 1, &ids, &n, &err), LH_ERR_UNSUPPORTED);
    ck_assert_msg(strstr(err.msg, path) && strstr(err.msg, "regex"), "%s", err.msg);
    free(s);
    lh_tokenizer_free(t);
}
END_TEST

START_TEST(nfc_normalizer)
{
    lh_tokenizer *t = must_load("{\"normalizer\":{\"type\":\"NFC\"},\"model\":{\"type\":\"BPE\","
                                "\"vocab\":{\"a\":0,\"\xC3\xA9\":1,\"<unk>\":2,\"\xEA\xB0\x81\":3,\"\xC3\x85\":4,"
                                "\"\xC8\xA9\":5,\"\xCC\x81\":6},\"unk_token\":\"<unk>\",\"fuse_unk\":true,\"merges\":[]}}");
    expect_ids(t, "a\xC3\xA9", (int32_t[]){0, 1}, 2);
    expect_ids(t, "e\xCC\x81", (int32_t[]){1}, 1);                       /* e + U+0301 */
    expect_ids(t, "\xE2\x84\xAB", (int32_t[]){4}, 1);                    /* U+212B */
    expect_ids(t, "e\xCC\x81\xCC\xA7", (int32_t[]){5, 6}, 2);            /* e U+0301 U+0327 */
    expect_ids(t, "\xE1\x84\x80\xE1\x85\xA1\xE1\x86\xA8", (int32_t[]){3}, 1); /* U+1100 U+1161 U+11A8 */
    expect_ids(t, "\xCC\x81" "a", (int32_t[]){6, 0}, 2);                 /* a lone mark stays */
    /* already-NFC text in other scripts is untouched (unknown characters are <unk>) */
    expect_ids(t, "\xE4\xB8\xAD \xD0\x96 \xCE\xBB \xF0\x9F\x98\x80 \xD8\xB3", (int32_t[]){2}, 1);
    lh_tokenizer_free(t);
}
END_TEST

static void expect_refused(const char *json, lh_status code, const char *needle)
{
    lh_tokenizer *t = (lh_tokenizer *)1;
    lh_error err = {0};
    char path[256];
    lh_status rc = load_inline(json, &t, &err, path, sizeof path);
    ck_assert_msg(rc == code, "%s: got status %d (%s), want %d", json, rc, err.msg, code);
    ck_assert_ptr_null(t);
    ck_assert_msg(strstr(err.msg, path) != NULL, "message does not name the file: %s", err.msg);
    ck_assert_msg(strstr(err.msg, needle) != NULL, "message lacks \"%s\": %s", needle, err.msg);
    ck_assert_ptr_null(strchr(err.msg, '\n'));
}

#define BPE_OK "\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1,\"ab\":2},\"merges\":[\"a b\"]}"

START_TEST(unsupported_by_name)
{
    expect_refused("{\"model\":{\"type\":\"WordPiece\",\"vocab\":{}}}", LH_ERR_UNSUPPORTED, "unsupported model 'WordPiece'");
    expect_refused("{\"model\":{\"type\":\"WordLevel\",\"vocab\":{}}}", LH_ERR_UNSUPPORTED, "unsupported model 'WordLevel'");
    expect_refused("{\"normalizer\":{\"type\":\"Lowercase\"}," BPE_OK "}", LH_ERR_UNSUPPORTED, "unsupported normalizer 'Lowercase'");
    expect_refused("{\"normalizer\":{\"type\":\"Sequence\",\"normalizers\":[{\"type\":\"NFKC\"}]}," BPE_OK "}",
                   LH_ERR_UNSUPPORTED, "unsupported normalizer 'NFKC'");
    expect_refused("{\"pre_tokenizer\":{\"type\":\"Whitespace\"}," BPE_OK "}", LH_ERR_UNSUPPORTED, "unsupported pre-tokenizer 'Whitespace'");
    expect_refused("{\"pre_tokenizer\":{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"BertPreTokenizer\"}]}," BPE_OK "}",
                   LH_ERR_UNSUPPORTED, "unsupported pre-tokenizer 'BertPreTokenizer'");
    expect_refused("{\"decoder\":{\"type\":\"WordPiece\"}," BPE_OK "}", LH_ERR_UNSUPPORTED, "unsupported decoder 'WordPiece'");
    expect_refused("{\"decoder\":{\"type\":\"CTC\"}," BPE_OK "}", LH_ERR_UNSUPPORTED, "unsupported decoder 'CTC'");
    expect_refused("{\"model\":{\"type\":\"BPE\",\"continuing_subword_prefix\":\"##\",\"vocab\":{},\"merges\":[]}}",
                   LH_ERR_UNSUPPORTED, "continuing_subword_prefix");
    expect_refused("{\"model\":{\"type\":\"BPE\",\"end_of_word_suffix\":\"</w>\",\"vocab\":{},\"merges\":[]}}",
                   LH_ERR_UNSUPPORTED, "end_of_word_suffix");
    expect_refused("{\"model\":{\"type\":\"BPE\",\"dropout\":0.1,\"vocab\":{},\"merges\":[]}}", LH_ERR_UNSUPPORTED, "dropout");
    expect_refused("{\"pre_tokenizer\":{\"type\":\"Split\",\"pattern\":{\"Regex\":\"(\"},\"behavior\":\"Isolated\"}," BPE_OK "}",
                   LH_ERR_UNSUPPORTED, "regex does not compile");
    expect_refused("{\"pre_tokenizer\":{\"type\":\"Split\",\"pattern\":{\"String\":\" \"},\"behavior\":\"Sideways\"}," BPE_OK "}",
                   LH_ERR_UNSUPPORTED, "behavior 'Sideways'");
    expect_refused("{\"pre_tokenizer\":{\"type\":\"Metaspace\",\"replacement\":\"_\",\"prepend_scheme\":\"sometimes\"}," BPE_OK "}",
                   LH_ERR_UNSUPPORTED, "prepend_scheme 'sometimes'");
    /* a post_processor encoding cannot use does not stop loading */
    lh_tokenizer *t = must_load("{\"post_processor\":{\"type\":\"RobertaProcessing\"}," BPE_OK "}");
    expect_ids(t, "ab", (int32_t[]){2}, 1);
    lh_tokenizer_free(t);
}
END_TEST

START_TEST(hostile_files)
{
    expect_refused("", LH_ERR_FORMAT, "");
    expect_refused("{\"model\":", LH_ERR_FORMAT, "");
    expect_refused("[1,2]", LH_ERR_FORMAT, "not a JSON object");
    expect_refused("{}", LH_ERR_FORMAT, "no 'model'");
    expect_refused("{\"model\":{\"type\":\"BPE\",\"vocab\":[],\"merges\":[]}}", LH_ERR_FORMAT, "'vocab' is not an object");
    expect_refused("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":-1},\"merges\":[]}}", LH_ERR_FORMAT, "bad id");
    expect_refused("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":1.5},\"merges\":[]}}", LH_ERR_FORMAT, "bad id");
    expect_refused("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":\"1\"},\"merges\":[]}}", LH_ERR_FORMAT, "bad id");
    expect_refused("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":4000000000},\"merges\":[]}}", LH_ERR_FORMAT, "bad id");
    expect_refused("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":1e300},\"merges\":[]}}", LH_ERR_FORMAT, "bad id");
    expect_refused("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":5000000},\"merges\":[]}}", LH_ERR_FORMAT, "far beyond");
    expect_refused("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":0},\"merges\":[]}}", LH_ERR_FORMAT, "given to both");
    expect_refused("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"a\":1},\"merges\":[]}}", LH_ERR_FORMAT, "");
    expect_refused("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[\"a x\"]}}", LH_ERR_FORMAT, "'x' is not in the vocab");
    expect_refused("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[\"a a\"]}}", LH_ERR_FORMAT, "'aa' is not in the vocab");
    expect_refused("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[\"aa\"]}}", LH_ERR_FORMAT, "merges[0]");
    expect_refused("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[\"a a a\"]}}", LH_ERR_FORMAT, "merges[0]");
    expect_refused("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[[\"a\"]]}}", LH_ERR_FORMAT, "merges[0]");
    expect_refused("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[[\"a\",7]]}}", LH_ERR_FORMAT, "merges[0]");
    expect_refused("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":{}}}", LH_ERR_FORMAT, "'merges' is not an array");
    expect_refused("{\"model\":{\"type\":\"BPE\",\"unk_token\":\"<unk>\",\"vocab\":{\"a\":0},\"merges\":[]}}", LH_ERR_FORMAT, "unk_token");
    expect_refused("{\"model\":{\"type\":\"BPE\",\"byte_fallback\":\"yes\",\"vocab\":{\"a\":0},\"merges\":[]}}", LH_ERR_FORMAT, "byte_fallback");
    expect_refused("{\"added_tokens\":[{\"id\":-3,\"content\":\"<s>\"}]," BPE_OK "}", LH_ERR_FORMAT, "added_tokens[0]");
    expect_refused("{\"added_tokens\":[{\"content\":\"<s>\"}]," BPE_OK "}", LH_ERR_FORMAT, "added_tokens[0]");
    expect_refused("{\"added_tokens\":[{\"id\":3,\"content\":\"\"}]," BPE_OK "}", LH_ERR_FORMAT, "empty content");
    expect_refused("{\"added_tokens\":[{\"id\":3,\"content\":\"<s>\"},{\"id\":3,\"content\":\"<t>\"}]," BPE_OK "}",
                   LH_ERR_FORMAT, "appears twice");
    expect_refused("{\"added_tokens\":[{\"id\":3,\"content\":\"<s>\"},{\"id\":4,\"content\":\"<s>\"}]," BPE_OK "}",
                   LH_ERR_FORMAT, "appears twice");
    expect_refused("{\"added_tokens\":{}," BPE_OK "}", LH_ERR_FORMAT, "'added_tokens' is not an array");
    expect_refused("{\"normalizer\":{\"type\":\"Replace\",\"pattern\":{\"String\":\"\"},\"content\":\"x\"}," BPE_OK "}",
                   LH_ERR_FORMAT, "empty pattern");
    expect_refused("{\"normalizer\":{\"kind\":\"NFC\"}," BPE_OK "}", LH_ERR_FORMAT, "normalizer");
    expect_refused("{\"normalizer\":{\"type\":\"Prepend\"}," BPE_OK "}", LH_ERR_FORMAT, "'prepend'");
    expect_refused("{\"decoder\":{\"type\":\"Strip\",\"content\":\"ab\",\"start\":1,\"stop\":0}," BPE_OK "}",
                   LH_ERR_FORMAT, "single character");
    expect_refused("{\"decoder\":{\"type\":\"Strip\",\"content\":\" \",\"start\":-1,\"stop\":0}," BPE_OK "}",
                   LH_ERR_FORMAT, "'start'");
    expect_refused("{\"pre_tokenizer\":{\"type\":\"Sequence\"}," BPE_OK "}", LH_ERR_FORMAT, "pretokenizers");
    /* deep nesting: refused by the JSON reader or by the component parser */
    char deep[8192] = "{\"pre_tokenizer\":";
    for (int i = 0; i < 200; i++) strcat(deep, "{\"type\":\"Sequence\",\"pretokenizers\":[");
    for (int i = 0; i < 200; i++) strcat(deep, "]}");
    strcat(deep, "," BPE_OK "}");
    expect_refused(deep, LH_ERR_FORMAT, "");
    /* a file that does not exist */
    lh_tokenizer *t = (lh_tokenizer *)1;
    lh_error err = {0};
    ck_assert_int_ne(lh_tokenizer_load("/nonexistent/tokenizer.json", &t, &err), LH_OK);
    ck_assert_ptr_null(t);
    ck_assert_ptr_nonnull(strstr(err.msg, "/nonexistent/tokenizer.json"));
}
END_TEST

/* A ByteLevel tokenizer built from scratch: every byte is a token, so any
 * UTF-8 text (control characters, NUL-free binary-looking text) round-trips. */
START_TEST(bytelevel_roundtrip_all_bytes)
{
    lh_error err = {0};
    lh_tokenizer *t = NULL;
    ck_assert(lh_tokenizer_load(FIX "/llama3-style.tokenizer.json", &t, &err) == LH_OK);
    char text[600];
    size_t k = 0;
    for (int c = 1; c < 128; c++) text[k++] = (char)c;
    const char *more = "\xC2\x80\xC3\xBF\xE2\x82\xAC\xF0\x9F\x98\x80\xEF\xBF\xBF\xF4\x8F\xBF\xBF";
    memcpy(text + k, more, strlen(more));
    k += strlen(more);
    text[k] = 0;
    int32_t *ids = NULL;
    size_t n;
    ck_assert_msg(lh_tokenizer_encode(t, text, 1, &ids, &n, &err) == LH_OK, "%s", err.msg);
    char *back = NULL;
    ck_assert(lh_tokenizer_decode(t, ids, n, 0, &back, &err) == LH_OK);
    ck_assert(strcmp(back, text) == 0);
    free(back);
    free(ids);
    lh_tokenizer_free(t);
}
END_TEST

static Suite *tokenizer_suite(void)
{
    Suite *s = suite_create("tokenizer");
    TCase *tc = tcase_create("reference");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, fixtures_match_reference);
    tcase_add_test(tc, token_lookups);
    tcase_add_test(tc, bytelevel_roundtrip_all_bytes);
    tcase_add_test(tc, long_word);
    tcase_add_test(tc, regex_stack_limits);
    suite_add_tcase(s, tc);
    TCase *th = tcase_create("hand");
    tcase_set_timeout(th, 20);
    tcase_add_test(th, merge_order_by_rank);
    tcase_add_test(th, ignore_merges_and_fallback);
    tcase_add_test(th, nfc_normalizer);
    tcase_add_test(th, split_regex_whitespace);
    tcase_add_test(th, split_empty_match);
    tcase_add_test(th, bad_text_and_args);
    suite_add_tcase(s, th);
    TCase *tr = tcase_create("refusals");
    tcase_set_timeout(tr, 20);
    tcase_add_test(tr, unsupported_by_name);
    tcase_add_test(tr, hostile_files);
    suite_add_tcase(s, tr);
    return s;
}

int main(void)
{
    /* Made here, not in the forked tests, so one directory serves all. */
    if (!mkdtemp(tmpdir)) { perror(tmpdir); return EXIT_FAILURE; }
    SRunner *sr = srunner_create(tokenizer_suite());
    srunner_run_all(sr, CK_ENV);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    rmdir(tmpdir);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

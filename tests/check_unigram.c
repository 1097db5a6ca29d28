/* tests/check_unigram.c - the Unigram tokenizer (model/tokenizer/unigram.c,
 * charsmap.c, post.c) against sentencepiece.
 *
 * tests/fixtures/tokenizers/flan-t5/ holds the real Flan-T5 tokenizer.json
 * and cases.json, written by tools/make_unigram_fixture.py from Debian's
 * python3-sentencepiece on the matching spiece.model: more than 2000 strings
 * (ASCII, accents, NFKC cases, CJK, emoji, digits, whitespace, special
 * tokens, long words, random Unicode) with their ids. Where the
 * tokenizer.json pipeline and sentencepiece differ, the fixture says which
 * one each id list follows and the tests below assert lorahub's choice. The
 * hand-made vocabularies check the Viterbi rules (strict improvement,
 * unknown penalty, fused unknowns, byte fallback) on cases small enough to
 * work out by hand; the rest checks hostile files. */
#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib/json.h"
#include "lib/strbuf.h"
#include "model/tokenizer/tokenizer.h"

#define T5DIR "tests/fixtures/tokenizers/flan-t5"

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

static int same_ids(const int32_t *a, size_t na, const int32_t *b, size_t nb)
{
    return na == nb && (na == 0 || memcmp(a, b, na * sizeof *a) == 0);
}

static void print_ids(const char *what, const int32_t *v, size_t n)
{
    fprintf(stderr, "  %s:", what);
    for (size_t i = 0; i < n; i++) fprintf(stderr, " %d", (int)v[i]);
    fprintf(stderr, "\n");
}

static lh_tokenizer *load_t5(void)
{
    lh_tokenizer *t = NULL;
    lh_error err = {0};
    ck_assert_msg(lh_tokenizer_load(T5DIR "/tokenizer.json", &t, &err) == LH_OK, "%s", err.msg);
    return t;
}

/* The ids of text: with special tokens and the post-processor, or neither. */
static int32_t *encode(const lh_tokenizer *t, const char *text, int special, size_t *n)
{
    int32_t *ids = NULL;
    lh_error err = {0};
    ck_assert_msg(lh_tokenizer_encode(t, text, special, &ids, n, &err) == LH_OK, "%s", err.msg);
    if (special) ck_assert_msg(lh_tokenizer_post_process(t, &ids, n, &err) == LH_OK, "%s", err.msg);
    return ids;
}

/* One fixture case; returns 1 when every check agrees. */
static int check_case(const lh_tokenizer *t, const lh_json *k, size_t *n_decoded)
{
    const char *text, *dec_want;
    ck_assert(lh_json_as_string(lh_json_get(k, "text"), &text));
    size_t nw, nns, ng, ng2;
    int32_t *want = json_ids(lh_json_get(k, "ids"), &nw);
    const lh_json *ns = lh_json_get(k, "ids_no_special");
    int32_t *want_ns = ns ? json_ids(ns, &nns) : NULL;
    if (!ns) { /* the same as ids without the </s> */
        ck_assert_uint_gt(nw, 0);
        want_ns = malloc(nw * sizeof *want_ns);
        memcpy(want_ns, want, (nw - 1) * sizeof *want);
        nns = nw - 1;
    }
    int32_t *got = encode(t, text, 1, &ng), *got_ns = encode(t, text, 0, &ng2);
    int ok = same_ids(got, ng, want, nw) && same_ids(got_ns, ng2, want_ns, nns);
    if (!ok) {
        fprintf(stderr, "flan-t5: text \"%s\" differs\n", text);
        print_ids("got", got, ng); print_ids("want", want, nw);
        print_ids("got (no special)", got_ns, ng2); print_ids("want (no special)", want_ns, nns);
    }
    if (lh_json_as_string(lh_json_get(k, "decoded"), &dec_want)) {
        char *dec = NULL;
        lh_error err = {0};
        ck_assert_msg(lh_tokenizer_decode(t, want_ns, nns, 0, &dec, &err) == LH_OK, "%s", err.msg);
        if (strcmp(dec, dec_want) != 0) {
            fprintf(stderr, "flan-t5: decode of \"%s\" gave \"%s\", sentencepiece \"%s\"\n", text, dec, dec_want);
            ok = 0;
        }
        if (strcmp(dec_want, text) == 0) ++*n_decoded;
        free(dec);
    }
    free(want); free(want_ns); free(got); free(got_ns);
    return ok;
}

START_TEST(flan_t5_fixture)
{
    lh_error err = {0};
    lh_json *exp = NULL;
    ck_assert_msg(lh_json_parse_file(T5DIR "/cases.json", &exp, &err) == LH_OK, "%s", err.msg);
    lh_tokenizer *t = load_t5();
    const lh_json *cases = lh_json_get(exp, "cases");
    ck_assert(cases && cases->type == LH_JSON_ARRAY);
    size_t pass = 0, n_spm = 0, n_hf = 0, n_decoded = 0;
    for (size_t c = 0; c < cases->len; c++) {
        const lh_json *k = cases->items[c];
        pass += (size_t)check_case(t, k, &n_decoded);
        n_spm += lh_json_get(k, "spm") != NULL;
        n_hf += lh_json_get(k, "hf_norm_differs") != NULL;
    }
    printf("flan-t5 fixture: %zu of %zu cases agree with sentencepiece (%zu where the pipeline differs from "
           "sentencepiece alone, %zu where the library's normalizer would differ, %zu decode back)\n",
           pass, cases->len, n_spm, n_hf, n_decoded);
    ck_assert_uint_ge(cases->len, 2000);
    ck_assert_uint_eq(pass, cases->len);
    /* The divergences were exercised, not just avoided. */
    ck_assert_uint_ge(n_spm, 100);
    ck_assert_uint_ge(n_hf, 10);
    ck_assert_uint_ge(n_decoded, 100);
    lh_tokenizer_free(t);
    lh_json_free(exp);
}
END_TEST

static void expect(const lh_tokenizer *t, const char *text, int special, const int32_t *want, size_t nw)
{
    size_t n;
    int32_t *got = encode(t, text, special, &n);
    if (!same_ids(got, n, want, nw)) {
        print_ids("got", got, n);
        print_ids("want", want, nw);
        ck_abort_msg("text \"%s\" (special %d): ids differ", text, special);
    }
    free(got);
}

#define IDS(...) (int32_t[]){__VA_ARGS__}, sizeof((int32_t[]){__VA_ARGS__}) / sizeof(int32_t)

/* Where the tokenizer.json pipeline and sentencepiece differ, lorahub's
 * choices (sentencepiece's ids, from cases.json's "spm", in the comments). */
START_TEST(flan_t5_choices)
{
    lh_tokenizer *t = load_t5();
    /* Trailing whitespace is a last "▁" word (id 3), as the library's
     * Replace + Metaspace make it: sentencepiece drops it ([8774, 1]). */
    expect(t, "Hello ", 1, IDS(8774, 3, 1));
    expect(t, "Hello\t\n", 1, IDS(8774, 3, 1));
    expect(t, "Hello", 1, IDS(8774, 1));
    /* Text around a special token is encoded on its own, each piece with its
     * "▁" prefix, as the library does. */
    expect(t, "Hello <extra_id_0> world", 1, IDS(8774, 3, 32099, 296, 1));
    expect(t, "Hello<extra_id_0>world", 1, IDS(8774, 32099, 296, 1));
    /* Special tokens taken as text never come out of the model: "</s>" is
     * "▁ < / s >" with "<" unknown, as in sentencepiece, whose control
     * symbols are not pieces; the library's trie would give "▁ </s>". */
    expect(t, "</s>", 0, IDS(3, 2, 87, 7, 3155));
    expect(t, "</s>", 1, IDS(1, 1));
    /* Consecutive unknown characters fuse into one <unk>. */
    expect(t, "☃☃ x", 1, IDS(3, 2, 3, 226, 1));
    /* The charsmap: NFKC cases through the longest match. */
    expect(t, "ﬁ Ａ", 1, IDS(361, 71, 1));
    /* A full-width letter with a combining accent is one grapheme cluster
     * under 6 bytes: the library would replace it all by its first match
     * "A", dropping the accent; lorahub keeps sentencepiece's longest match
     * per position, "A" then the accent. */
    size_t n1, n2;
    int32_t *a = encode(t, "\xEF\xBC\xA1\xCC\x81", 0, &n1), *b = encode(t, "A", 0, &n2);
    ck_assert(!same_ids(a, n1, b, n2));
    free(a); free(b);
    ck_assert_int_eq(lh_tokenizer_vocab_size(t), 32100);
    ck_assert_int_eq(lh_tokenizer_token_id(t, "<extra_id_0>"), 32099);
    ck_assert_int_eq(lh_tokenizer_token_id(t, "\xE2\x96\x81Hello"), 8774);
    ck_assert_str_eq(lh_tokenizer_id_token(t, 1), "</s>");
    /* Decoding: Metaspace, the leading space of the first token dropped. */
    char *dec = NULL;
    lh_error err = {0};
    ck_assert(lh_tokenizer_decode(t, IDS(8774, 3, 32099, 296, 1), 1, &dec, &err) == LH_OK);
    ck_assert_str_eq(dec, "Hello  world");
    free(dec);
    ck_assert(lh_tokenizer_decode(t, IDS(8774, 3, 32099, 296, 1), 0, &dec, &err) == LH_OK);
    ck_assert_str_eq(dec, "Hello <extra_id_0> world</s>");
    free(dec);
    lh_tokenizer_free(t);
}
END_TEST

/* ---- inline tokenizers ---- */

static char tmpdir[] = "/tmp/check_unigram.XXXXXX";
static int tmp_serial;

static lh_status load_inline(const char *json, lh_tokenizer **t, lh_error *err)
{
    char path[256];
    snprintf(path, sizeof path, "%s/t%d.json", tmpdir, tmp_serial++);
    FILE *f = fopen(path, "wb");
    ck_assert(f != NULL);
    ck_assert(fwrite(json, 1, strlen(json), f) == strlen(json));
    ck_assert(fclose(f) == 0);
    lh_status rc = lh_tokenizer_load(path, t, err);
    unlink(path);
    return rc;
}

static lh_tokenizer *must_load(const char *json)
{
    lh_tokenizer *t = NULL;
    lh_error err = {0};
    ck_assert_msg(load_inline(json, &t, &err) == LH_OK, "%s", err.msg);
    return t;
}

static void expect_refused(const char *json, lh_status code, const char *needle)
{
    lh_tokenizer *t = NULL;
    lh_error err = {0};
    lh_status rc = load_inline(json, &t, &err);
    ck_assert_msg(rc == code, "%s: got status %d (%s), want %d", json, rc, err.msg, code);
    ck_assert_msg(strstr(err.msg, needle) != NULL, "message '%s' lacks '%s'", err.msg, needle);
    ck_assert_msg(strstr(err.msg, tmpdir) != NULL, "message '%s' does not name the file", err.msg);
    ck_assert_ptr_null(t);
}

/* ids: <unk>=0 ▁=1 a=2 b=3 ab=4 ▁ab=5 c=6 */
#define SMALL_VOCAB "[[\"<unk>\",0],[\"\\u2581\",-1],[\"a\",-2],[\"b\",-2],[\"ab\",-1],[\"\\u2581ab\",-5],[\"c\",-3]]"
#define METASPACE "\"pre_tokenizer\":{\"type\":\"Metaspace\",\"replacement\":\"\\u2581\",\"prepend_scheme\":\"always\",\"split\":true}"

START_TEST(viterbi_by_hand)
{
    lh_tokenizer *t = must_load("{\"model\":{\"type\":\"Unigram\",\"unk_id\":0,\"vocab\":" SMALL_VOCAB "}," METASPACE "}");
    /* ▁ab (-5) loses to ▁ + ab (-2); a + b (-4) loses to ab (-1). */
    expect(t, "ab", 0, IDS(1, 4));
    expect(t, "abc", 0, IDS(1, 4, 6));
    /* unknown: min_score - 10 = -15, worse than any piece; one per run. */
    expect(t, "axyb", 0, IDS(1, 2, 0, 3));
    expect(t, "x", 0, IDS(1, 0));
    expect(t, "ab x ab", 0, IDS(1, 4, 1, 0, 1, 4));
    expect(t, "\xE2\x98\x83\xE2\x98\x83\xF0\x9F\x98\x80", 0, IDS(1, 0));
    expect(t, "", 0, NULL, 0);
    lh_tokenizer_free(t);

    /* Ties: a later candidate must be strictly better. a + b (-2) ties
     * ab (-2), which was found first (from position 0). */
    t = must_load("{\"model\":{\"type\":\"Unigram\",\"unk_id\":0,\"vocab\":"
                  "[[\"<unk>\",0],[\"a\",-1],[\"b\",-1],[\"ab\",-2]]}}");
    expect(t, "ab", 0, IDS(3));
    expect(t, "abab", 0, IDS(3, 3));
    lh_tokenizer_free(t);

    /* The unknown penalty is 10: "xab" is unk(x) + ab or xa + b; with
     * min_score -14 the first scores -14 - penalty - 1, the second -14 + b,
     * so b = -11.5 picks the first for a penalty under 10.5 and b = -10.5
     * the second for one over 9.5. */
    t = must_load("{\"model\":{\"type\":\"Unigram\",\"unk_id\":0,\"vocab\":"
                  "[[\"<unk>\",0],[\"xa\",-14],[\"b\",-11.5],[\"ab\",-1]]}}");
    expect(t, "xab", 0, IDS(0, 3));
    lh_tokenizer_free(t);
    t = must_load("{\"model\":{\"type\":\"Unigram\",\"unk_id\":0,\"vocab\":"
                  "[[\"<unk>\",0],[\"xa\",-14],[\"b\",-10.5],[\"ab\",-1]]}}");
    expect(t, "xab", 0, IDS(1, 2));
    lh_tokenizer_free(t);

    /* Byte fallback: unknown characters become their bytes when every byte
     * has a token, else <unk>. é = C3 A9; ☃ = E2 98 83 has no tokens. */
    t = must_load("{\"model\":{\"type\":\"Unigram\",\"unk_id\":0,\"byte_fallback\":true,\"vocab\":"
                  "[[\"<unk>\",0],[\"a\",-1],[\"<0xC3>\",-5],[\"<0xA9>\",-5]]}}");
    expect(t, "a\xC3\xA9" "a", 0, IDS(1, 2, 3, 1));
    expect(t, "\xC3\xA9\xC3\xA9", 0, IDS(2, 3, 2, 3));
    expect(t, "a\xE2\x98\x83", 0, IDS(1, 0));
    lh_tokenizer_free(t);

    /* No unk_id: unknown text is an error naming the file. */
    t = must_load("{\"model\":{\"type\":\"Unigram\",\"unk_id\":null,\"vocab\":[[\"a\",-1]]}}");
    expect(t, "aa", 0, IDS(0, 0));
    int32_t *ids = NULL;
    size_t n = 0;
    lh_error err = {0};
    ck_assert_int_eq(lh_tokenizer_encode(t, "ab", 0, &ids, &n, &err), LH_ERR_ARG);
    ck_assert_ptr_nonnull(strstr(err.msg, "no unk_id"));
    ck_assert_ptr_null(ids);
    lh_tokenizer_free(t);
}
END_TEST

/* Special added tokens are never produced from text; other added tokens
 * (non-special) stay pieces of the model. */
START_TEST(special_pieces_not_in_model)
{
    lh_tokenizer *t = must_load(
        "{\"model\":{\"type\":\"Unigram\",\"unk_id\":0,\"vocab\":"
        "[[\"<unk>\",0],[\"</s>\",0],[\"<\",-3],[\"/\",-3],[\"s\",-3],[\">\",-3],[\"xy\",0],[\"x\",-3],[\"y\",-3]]},"
        "\"added_tokens\":[{\"id\":1,\"content\":\"</s>\",\"special\":true},"
        "{\"id\":6,\"content\":\"xy\",\"special\":false,\"normalized\":true}]}");
    expect(t, "</s>", 0, IDS(2, 3, 4, 5));
    expect(t, "</s>", 1, IDS(1));
    expect(t, "xyxy", 0, IDS(6, 6));
    lh_tokenizer_free(t);
}
END_TEST

/* The older converter's forms: Precompiled alone (here an empty table),
 * WhitespaceSplit + Metaspace; Strip and Replace around them. */
START_TEST(normalizer_and_pretokenizer_forms)
{
    const char *fmt = "{\"model\":{\"type\":\"Unigram\",\"unk_id\":0,\"vocab\":" SMALL_VOCAB "},"
                      "\"normalizer\":%s,\"pre_tokenizer\":%s}";
    char json[2048];
    snprintf(json, sizeof json, fmt,
             "{\"type\":\"Sequence\",\"normalizers\":[{\"type\":\"Precompiled\",\"precompiled_charsmap\":null},"
             "{\"type\":\"Strip\",\"strip_left\":false,\"strip_right\":true},"
             "{\"type\":\"Replace\",\"pattern\":{\"Regex\":\" {2,}\"},\"content\":\" \"}]}",
             "{\"type\":\"Metaspace\",\"replacement\":\"\\u2581\",\"add_prefix_space\":true}");
    lh_tokenizer *t = must_load(json);
    expect(t, "ab   ab  ", 0, IDS(1, 4, 1, 4));    /* no trailing ▁: Strip(right) */
    expect(t, "  ab", 0, IDS(1, 4));               /* not stripped on the left: ▁ once */
    lh_tokenizer_free(t);
    snprintf(json, sizeof json, fmt, "{\"type\":\"Precompiled\",\"precompiled_charsmap\":\"\"}",
             "{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"WhitespaceSplit\"},"
             "{\"type\":\"Metaspace\",\"replacement\":\"\\u2581\",\"add_prefix_space\":true}]}");
    t = must_load(json);
    expect(t, " ab\t\tab \n", 0, IDS(1, 4, 1, 4));
    lh_tokenizer_free(t);
}
END_TEST

START_TEST(post_processors)
{
    /* Llama style: <s> before. */
    const char *v = "\"model\":{\"type\":\"Unigram\",\"unk_id\":0,\"vocab\":" SMALL_VOCAB "}";
    char json[2048];
    snprintf(json, sizeof json, "{%s,\"post_processor\":{\"type\":\"TemplateProcessing\",\"single\":["
             "{\"SpecialToken\":{\"id\":\"<s>\",\"type_id\":0}},{\"Sequence\":{\"id\":\"A\",\"type_id\":0}},"
             "{\"SpecialToken\":{\"id\":\"</s>\",\"type_id\":0}}],\"special_tokens\":{"
             "\"<s>\":{\"id\":\"<s>\",\"ids\":[6],\"tokens\":[\"c\"]},\"</s>\":{\"id\":\"</s>\",\"ids\":[1],\"tokens\":[\"x\"]}}}}", v);
    lh_tokenizer *t = must_load(json);
    expect(t, "ab", 1, IDS(6, 4, 1));  /* no pre-tokenizer: no ▁ */
    expect(t, "", 1, IDS(6, 1));
    lh_tokenizer_free(t);
    snprintf(json, sizeof json, "{%s,\"post_processor\":{\"type\":\"Sequence\",\"processors\":["
             "{\"type\":\"ByteLevel\"},{\"type\":\"BertProcessing\",\"sep\":[\"c\",6],\"cls\":[\"a\",2]}]}}", v);
    t = must_load(json);
    expect(t, "b", 1, IDS(2, 3, 6));
    lh_tokenizer_free(t);
    /* A template token missing from special_tokens: the token of that name. */
    snprintf(json, sizeof json, "{%s,\"post_processor\":{\"type\":\"TemplateProcessing\",\"single\":["
             "{\"SpecialToken\":{\"id\":\"c\",\"type_id\":0}},{\"Sequence\":{\"id\":\"A\",\"type_id\":0}}],"
             "\"special_tokens\":{}}}", v);
    t = must_load(json);
    expect(t, "b", 1, IDS(6, 3));
    lh_tokenizer_free(t);
    /* One encoding does not need cannot be applied, but loads. */
    static const char *const bad[] = {
        "{\"type\":\"RobertaProcessing\"}",
        "{\"type\":\"NewProcessing\"}",
        "{\"type\":\"TemplateProcessing\",\"single\":[{\"Sequence\":{\"id\":\"A\"}},{\"Sequence\":{\"id\":\"A\"}}]}",
        "{\"type\":\"TemplateProcessing\",\"single\":[{\"SpecialToken\":{\"id\":\"<x>\"}}],\"special_tokens\":{}}",
    };
    static const char *const why[] = { "'RobertaProcessing' 'cls'", "unsupported post_processor 'NewProcessing'",
                                       "$A once", "'<x>' is neither in 'special_tokens' nor a token" };
    for (size_t i = 0; i < 4; i++) {
        snprintf(json, sizeof json, "{%s,\"post_processor\":%s}", v, bad[i]);
        t = must_load(json);
        int32_t *ids = NULL;
        size_t n = 0;
        lh_error err = {0};
        ck_assert(lh_tokenizer_encode(t, "ab", 1, &ids, &n, &err) == LH_OK);
        ck_assert(lh_tokenizer_post_process(t, &ids, &n, &err) != LH_OK);
        ck_assert_msg(strstr(err.msg, why[i]) != NULL, "'%s' lacks '%s'", err.msg, why[i]);
        ck_assert_uint_eq(n, 1);
        free(ids);
        lh_tokenizer_free(t);
    }
}
END_TEST

START_TEST(hostile_unigram_files)
{
    expect_refused("{\"model\":{\"type\":\"Unigram\",\"vocab\":[]}}", LH_ERR_FORMAT, "empty vocab");
    expect_refused("{\"model\":{\"type\":\"Unigram\",\"vocab\":{}}}", LH_ERR_FORMAT, "not an array");
    expect_refused("{\"model\":{\"type\":\"Unigram\",\"vocab\":[[\"a\"]]}}", LH_ERR_FORMAT, "vocab[0] is not [piece, score]");
    expect_refused("{\"model\":{\"type\":\"Unigram\",\"vocab\":[[\"a\",-1],[\"b\",\"x\"]]}}", LH_ERR_FORMAT,
                   "vocab[1] is not [piece, score]");
    expect_refused("{\"model\":{\"type\":\"Unigram\",\"vocab\":[[1,-1]]}}", LH_ERR_FORMAT, "vocab[0]");
    expect_refused("{\"model\":{\"type\":\"Unigram\",\"vocab\":[[\"a\",-1e300]]}}", LH_ERR_FORMAT, "vocab[0]");
    expect_refused("{\"model\":{\"type\":\"Unigram\",\"unk_id\":5,\"vocab\":[[\"a\",-1]]}}", LH_ERR_FORMAT, "unk_id");
    expect_refused("{\"model\":{\"type\":\"Unigram\",\"unk_id\":-1,\"vocab\":[[\"a\",-1]]}}", LH_ERR_FORMAT, "unk_id");
    expect_refused("{\"model\":{\"type\":\"Unigram\",\"vocab\":[[\"a\\u0000b\",-1]]}}", LH_ERR_FORMAT, "NUL");
    expect_refused("{\"model\":{\"type\":\"Unigram\",\"vocab\":[[\"a\",-1]]},\"added_tokens\":[{\"id\":9999999,"
                   "\"content\":\"x\"}]}", LH_ERR_FORMAT, "far beyond");
    const char *pre = "{\"model\":{\"type\":\"Unigram\",\"vocab\":[[\"a\",-1]]},\"normalizer\":"
                      "{\"type\":\"Precompiled\",\"precompiled_charsmap\":\"";
    char json[512];
    snprintf(json, sizeof json, "%s%s\"}}", pre, "AAA*AAAA");
    expect_refused(json, LH_ERR_FORMAT, "not base64");
    snprintf(json, sizeof json, "%s%s\"}}", pre, "AQA="); /* 2 bytes */
    expect_refused(json, LH_ERR_FORMAT, "truncated");
    snprintf(json, sizeof json, "%s%s\"}}", pre, "/////wAAAAA="); /* trie size 2^32-1 */
    expect_refused(json, LH_ERR_FORMAT, "truncated");
    snprintf(json, sizeof json, "%s%s\"}}", pre, "BgAAAAAAAAAAAA=="); /* trie size 6: not whole units */
    expect_refused(json, LH_ERR_FORMAT, "trie size");
}
END_TEST

static void b64_encode(const unsigned char *b, size_t n, lh_sb *out)
{
    static const char A[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)b[i] << 16 | (i + 1 < n ? (uint32_t)b[i + 1] << 8 : 0) | (i + 2 < n ? b[i + 2] : 0);
        char q[4] = { A[v >> 18], A[(v >> 12) & 63], i + 1 < n ? A[(v >> 6) & 63] : '=', i + 2 < n ? A[v & 63] : '=' };
        lh_sb_append_n(out, q, 4);
    }
}

/* Random trie units and pool offsets: every index is checked, so
 * normalizing any text stays in bounds (ASan watches in `make asan`).
 * tests/fuzz/fuzz_charsmap.c goes further. */
START_TEST(random_charsmaps_stay_in_bounds)
{
    /* A replacement that is not UTF-8 is refused: later stages need UTF-8. */
    static const unsigned char bad[] = {4, 0, 0, 0, 0, 0, 0, 0, 'a', 0, 0xFF, 0};
    lh_sb j0;
    lh_sb_init(&j0);
    lh_sb_append(&j0, "{\"model\":{\"type\":\"Unigram\",\"vocab\":[[\"a\",-1]]},\"normalizer\":"
                      "{\"type\":\"Precompiled\",\"precompiled_charsmap\":\"");
    b64_encode(bad, sizeof bad, &j0);
    lh_sb_append(&j0, "\"}}");
    expect_refused(j0.buf, LH_ERR_FORMAT, "not valid UTF-8 (pool byte 2)");
    lh_sb_release(&j0);

    uint64_t s = 0x9E3779B97F4A7C15ULL;
    for (int round = 0; round < 300; round++) {
        unsigned char blob[4 + 64 * 4 + 40];
        size_t units = 1 + round % 63, pool = (size_t)(round % 40);
        blob[0] = (unsigned char)(units * 4); blob[1] = blob[2] = blob[3] = 0;
        for (size_t i = 4; i < 4 + units * 4 + pool; i++) {
            s ^= s << 13; s ^= s >> 7; s ^= s << 17;
            blob[i] = (unsigned char)(s >> 24);
            if (i >= 4 + units * 4) /* replacements: ASCII, some empty */
                blob[i] = blob[i] % 5 == 0 ? 0 : (unsigned char)('a' + blob[i] % 26);
        }
        lh_sb json;
        lh_sb_init(&json);
        lh_sb_append(&json, "{\"model\":{\"type\":\"Unigram\",\"unk_id\":0,\"vocab\":[[\"<unk>\",0],[\"a\",-1]]},"
                            "\"normalizer\":{\"type\":\"Precompiled\",\"precompiled_charsmap\":\"");
        b64_encode(blob, 4 + units * 4 + pool, &json);
        lh_sb_append(&json, "\"}}");
        lh_tokenizer *t = must_load(json.buf);
        int32_t *ids = NULL;
        size_t n = 0;
        lh_error err = {0};
        ck_assert(lh_tokenizer_encode(t, "a\x01\x7f\xC3\xA9 \xE2\x98\x83\xF0\x9F\x98\x80 aa", 0, &ids, &n, &err) == LH_OK);
        free(ids);
        lh_tokenizer_free(t);
        lh_sb_release(&json);
    }
}
END_TEST

static Suite *unigram_suite(void)
{
    Suite *s = suite_create("unigram");
    TCase *tc = tcase_create("flan-t5");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, flan_t5_fixture);
    tcase_add_test(tc, flan_t5_choices);
    suite_add_tcase(s, tc);
    TCase *th = tcase_create("hand");
    tcase_set_timeout(th, 30);
    tcase_add_test(th, viterbi_by_hand);
    tcase_add_test(th, special_pieces_not_in_model);
    tcase_add_test(th, normalizer_and_pretokenizer_forms);
    tcase_add_test(th, post_processors);
    tcase_add_test(th, hostile_unigram_files);
    tcase_add_test(th, random_charsmaps_stay_in_bounds);
    suite_add_tcase(s, th);
    return s;
}

int main(void)
{
    if (!mkdtemp(tmpdir)) { perror(tmpdir); return EXIT_FAILURE; }
    SRunner *sr = srunner_create(unigram_suite());
    srunner_run_all(sr, CK_ENV);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    rmdir(tmpdir);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

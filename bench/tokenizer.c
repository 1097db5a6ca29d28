/* bench/tokenizer.c - tokenizer.json encoding against limits measured in the
 * same run.
 *
 *  (a) Llama-3-style byte-level encoding (fixture tokenizer: Split regex +
 *      ByteLevel, ignore_merges) of short texts one call each, the way the
 *      native backend encodes examples, against the bare PCRE2 pass of the
 *      same Split regex over the same texts, the part no byte-level
 *      tokenizer can skip: ratio encode / regex (goal <= 30; a per-call
 *      JIT stack, for one, made it ~500).
 *  (b) the same on one ~1 MB text (throughput figure; goal <= 60, it
 *      materializes every piece).
 *  (c) SentencePiece-style BPE (no pre-tokenizer, so the whole text is one
 *      word) on one 256 KiB word against 256 words of 1 KiB: ratio of the
 *      times (goal <= 8; a merge loop that rescans the word would be ~256).
 *  (d) Flan-T5's Unigram tokenizer (the real tokenizer.json) on the 2000+
 *      texts of its sentencepiece fixture, one call each, against the bare
 *      charsmap normalization of the same texts, the pass no T5 tokenizer
 *      can skip: ratio encode / normalize (goal <= 120: the Viterbi walks
 *      the piece trie from every character, a cache miss or more a byte on
 *      the fixture's random Unicode; 12 to 50 measured on the shared 2-core
 *      machine, 4 to 25 us a text by its load, where sentencepiece itself,
 *      called from Python on the same texts, took 24 us a text).
 *  (e) the same tokenizer on one 256 KiB word (no space) against 256
 *      words of 1 KiB: ratio of the times (goal <= 4; Viterbi is linear, a
 *      quadratic one would be ~256).
 * Usage: tokenizer [--quick] */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/tokenizer/tokenizer.h"
#include "model/tokenizer/internal.h"
#include "bench/bench_util.h"
#include "lib/json.h"

#define FIX "tests/fixtures/tokenizers"

/* Mixed text from the fixture strings, repeated to about n bytes. */
static char *make_text(size_t n)
{
    lh_json *j = NULL;
    lh_error err = {0};
    if (lh_json_parse_file(FIX "/llama3-style.expected.json", &j, &err)) {
        fprintf(stderr, "tokenizer bench: %s\n", err.msg);
        exit(1);
    }
    const lh_json *cases = lh_json_get(j, "cases");
    char *t = malloc(n + 4096);
    size_t len = 0;
    while (len < n)
        for (size_t i = 0; i < cases->len && len < n; i++) {
            const char *s;
            if (!lh_json_as_string(lh_json_get(cases->items[i], "text"), &s) || strchr(s, '<')) continue;
            size_t l = strlen(s);
            if (len + l + 1 > n + 4000) break;
            memcpy(t + len, s, l);
            t[len + l] = ' ';
            len += l + 1;
        }
    t[len] = 0;
    lh_json_free(j);
    return t;
}

static lh_tokenizer *load(const char *name)
{
    lh_tokenizer *t = NULL;
    lh_error err = {0};
    char p[256];
    snprintf(p, sizeof p, FIX "/%s.tokenizer.json", name);
    if (lh_tokenizer_load(p, &t, &err)) {
        fprintf(stderr, "tokenizer bench: %s\n", err.msg);
        exit(1);
    }
    return t;
}

static size_t encode(const lh_tokenizer *t, const char *text)
{
    int32_t *ids;
    size_t n;
    lh_error err = {0};
    if (lh_tokenizer_encode(t, text, 0, &ids, &n, &err)) {
        fprintf(stderr, "tokenizer bench: %s\n", err.msg);
        exit(1);
    }
    free(ids);
    return n;
}

/* Pieces of the Split regex over s, as the tokenizer walks them. */
static size_t split_count(pcre2_code *re, pcre2_match_data *md, const char *s)
{
    size_t n = 0, l = strlen(s);
    for (size_t o = 0; o < l;) {
        if (pcre2_match(re, (PCRE2_SPTR)s, l, o, PCRE2_NO_UTF_CHECK, md, NULL) < 0) break;
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
        o = ov[1] > ov[0] ? ov[1] : ov[0] + 1;
        n++;
    }
    return n;
}

/* Best of reps runs. */
#define BEST(reps, expr) ({ double best_ = 1e30; for (int r_ = 0; r_ < (reps); r_++) { \
    double t0_ = bench_now(); expr; double d_ = bench_now() - t0_; if (d_ < best_) best_ = d_; } best_; })

/* The charsmap step alone (the Precompiled normalizer of the file). */
static size_t charsmap_pass(const lh_tokenizer *t, const char *s, lh_sb *out)
{
    out->len = 0;
    for (size_t i = 0; i < t->n_norm; i++)
        if (t->norm[i].kind == N_PRECOMPILED) tk_charsmap_normalize(t->norm[i].cmap, s, strlen(s), out);
    return out->len;
}

/* (d) and (e). */
static int bench_unigram(int reps)
{
    lh_tokenizer *t = NULL;
    lh_error err = {0};
    lh_json *j = NULL;
    if (lh_tokenizer_load(FIX "/flan-t5/tokenizer.json", &t, &err) || lh_json_parse_file(FIX "/flan-t5/cases.json", &j, &err))
        bench_die("tokenizer", "flan-t5", &err);
    const lh_json *cases = lh_json_get(j, "cases");
    size_t n = cases->len, bytes = 0, ntok = 0, nnorm = 0;
    const char **texts = malloc(n * sizeof *texts);
    for (size_t i = 0; i < n; i++) {
        lh_json_as_string(lh_json_get(cases->items[i], "text"), &texts[i]);
        bytes += strlen(texts[i]);
    }
    lh_sb sb;
    lh_sb_init(&sb);
    double t_norm = BEST(reps, for (size_t i = 0; i < n; i++) nnorm += charsmap_pass(t, texts[i], &sb));
    double t_enc = BEST(reps, for (size_t i = 0; i < n; i++) ntok += encode(t, texts[i]));
    double rd = t_enc / t_norm;
    printf("(d) flan-t5 unigram encode of %zu texts (%zu bytes): %.2f us per text (%.1f MB/s); bare charsmap pass: "
           "%.2f us per text; ratio %.2f (goal <= 120) %s\n", n, bytes, 1e6 * t_enc / n, bytes / t_enc / 1e6,
           1e6 * t_norm / n, rd, rd <= 120 ? "ok" : "OVER");
    int fail = rd > 120;
    size_t big = 256 * 1024, small = 1024, nsmall = big / small;
    char *word = malloc(big + 1);
    static const char pat[] = "thequickbrownfoxjumpsoverthelazydog0123456789";
    for (size_t i = 0; i < big; i++) word[i] = pat[i % (sizeof pat - 1)];
    word[big] = 0;
    double t_big = BEST(reps, encode(t, word));
    word[small] = 0;
    double t_small = BEST(reps, for (size_t k = 0; k < nsmall; k++) encode(t, word));
    double re = t_big / t_small;
    printf("(e) flan-t5 one %zu-byte word: %.1f ms; %zu words of %zu bytes: %.1f ms; ratio %.2f (goal <= 4) %s\n",
           big, 1e3 * t_big, nsmall, small, 1e3 * t_small, re, re <= 4 ? "ok" : "OVER");
    fail |= re > 4;
    free(word);
    lh_sb_release(&sb);
    free(texts);
    lh_json_free(j);
    lh_tokenizer_free(t);
    return fail;
}

int main(int argc, char **argv)
{
    int quick = argc > 1 && strcmp(argv[1], "--quick") == 0;
    int reps = quick ? 2 : 5;
    int fail = 0;

    /* (a), (b) */
    size_t nbytes = quick ? 200000 : 1000000;
    char *text = make_text(nbytes);
    size_t tl = strlen(text);
    lh_tokenizer *l3 = load("llama3-style");
    lh_json *j = NULL;
    lh_error err = {0};
    if (lh_json_parse_file(FIX "/llama3-style.tokenizer.json", &j, &err)) {
        fprintf(stderr, "tokenizer bench: %s\n", err.msg);
        return 1;
    }
    const char *pat;
    const lh_json *seq = lh_json_get(lh_json_get(j, "pre_tokenizer"), "pretokenizers");
    lh_json_as_string(lh_json_get(lh_json_get(seq->items[0], "pattern"), "Regex"), &pat);
    int ec;
    PCRE2_SIZE off;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)pat, PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP, &ec, &off, NULL);
    pcre2_jit_compile(re, PCRE2_JIT_COMPLETE);
    pcre2_match_data *md = pcre2_match_data_create(1, NULL);
    /* short texts: cut the big one at spaces into ~150-byte pieces */
    size_t nshort = 0;
    char **shorts = malloc((tl / 100 + 2) * sizeof *shorts);
    for (size_t o = 0; o < tl && nshort < (quick ? 500u : 2000u);) {
        size_t e = o + 150 < tl ? o + 150 : tl;
        while (e < tl && text[e] != ' ') e++;
        shorts[nshort] = strndup(text + o, e - o);
        nshort++;
        o = e + 1;
    }
    size_t nmatch = 0, ntok = 0, sbytes = 0;
    for (size_t k = 0; k < nshort; k++) sbytes += strlen(shorts[k]);
    double t_re_s = BEST(reps, for (size_t k = 0; k < nshort; k++) nmatch += split_count(re, md, shorts[k]));
    double t_enc_s = BEST(reps, for (size_t k = 0; k < nshort; k++) ntok += encode(l3, shorts[k]));
    double ra = t_enc_s / t_re_s;
    printf("(a) llama3-style encode of %zu texts (%zu bytes): %.2f us per text (%.1f MB/s); bare PCRE2 split: "
           "%.2f us per text; ratio %.2f (goal <= 30) %s\n", nshort, sbytes, 1e6 * t_enc_s / nshort,
           sbytes / t_enc_s / 1e6, 1e6 * t_re_s / nshort, ra, ra <= 30 ? "ok" : "OVER");
    fail |= ra > 30;
    double t_re = BEST(reps, nmatch = split_count(re, md, text));
    double t_enc = BEST(reps, ntok = encode(l3, text));
    double rb1 = t_enc / t_re;
    printf("(b) llama3-style encode of one %zu-byte text: %.1f ms, %zu ids (%.1f MB/s); bare PCRE2 split: "
           "%.1f ms, %zu pieces; ratio %.2f (goal <= 60) %s\n", tl, 1e3 * t_enc, ntok, tl / t_enc / 1e6,
           1e3 * t_re, nmatch, rb1, rb1 <= 60 ? "ok" : "OVER");
    fail |= rb1 > 60;
    for (size_t k = 0; k < nshort; k++) free(shorts[k]);
    free(shorts);
    pcre2_match_data_free(md);
    pcre2_code_free(re);
    lh_json_free(j);
    lh_tokenizer_free(l3);
    free(text);

    /* (c) */
    lh_tokenizer *l2 = load("llama2-style");
    size_t big = 256 * 1024, small = 1024, nsmall = big / small;
    char *word = malloc(big + 1);
    static const char pat2[] = "thequickbrownfoxjumpsoverthelazydog";
    for (size_t i = 0; i < big; i++) word[i] = pat2[i % (sizeof pat2 - 1)];
    word[big] = 0;
    double t_big = BEST(reps, encode(l2, word));
    word[small] = 0;
    double t_small = BEST(reps, for (size_t k = 0; k < nsmall; k++) encode(l2, word));
    double rb = t_big / t_small;
    printf("(c) llama2-style one %zu-byte word: %.1f ms; %zu words of %zu bytes: %.1f ms; ratio %.2f "
           "(goal <= 8) %s\n", big, 1e3 * t_big, nsmall, small, 1e3 * t_small, rb, rb <= 8 ? "ok" : "OVER");
    fail |= rb > 8;
    free(word);
    lh_tokenizer_free(l2);
    fail |= bench_unigram(reps);
    return fail;
}

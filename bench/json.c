/* bench/json.c - JSON parsing of a Llama-3-sized tokenizer.json against
 * limits measured in the same run.
 *
 * The document is generated in memory (no fixture): a byte-level BPE model
 * with 128000 vocab entries, 280000 "a b" merges, 256 added tokens and the
 * usual normalizer/pre_tokenizer/post_processor/decoder sections, indented
 * the way the tokenizers library writes it (about 9 MB). Every token is
 * spelled in the GPT-2 byte-to-unicode alphabet, so strings hold raw
 * two-byte UTF-8 and the escapes \" and \\; the merges are consistent with
 * the vocab, so lorahub's tokenizer loads it.
 *
 * Parsers timed (best of reps runs, tree freed outside the timing):
 *   lh_json_parse    lorahub's JSON reader (lib/json.c);
 *   lh_yaml_parse    the same bytes through libyaml's event parser into the
 *                    same tree: what the libyaml route costs without its
 *                    JSON pre-pass;
 *   jansson, cJSON   when their shared libraries are installed (loaded with
 *                    dlopen so that the build needs neither; they build
 *                    their own trees, with hashed objects in jansson).
 * Limits: memcpy of the same bytes, and a plain byte scan (counting quotes,
 * the least any JSON reader must do). Ratios are parse time / limit time.
 * Finally the whole lh_tokenizer_load of the document from a temp file.
 * Usage: json [--quick] */
#include <dlfcn.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/bench_util.h"
#include "lib/fsutil.h"
#include "lib/json.h"
#include "lib/strbuf.h"
#include "model/tokenizer/tokenizer.h"

#define N_VOCAB 128000
#define N_MERGES 280000
#define N_ADDED 256

/* ------------------------------------------------------------ generator */

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t rng(void)
{
    rng_state ^= rng_state << 13; /* xorshift64 */
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

/* The GPT-2 byte-level alphabet: byte b is spelled as one code point, the
 * byte itself for printable Latin-1, U+0100 + k for the k-th other byte. */
static void byte_char(unsigned b, char out[3], size_t *n)
{
    unsigned cp;
    if ((b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff)) {
        cp = b;
    } else {
        unsigned k = 0;
        for (unsigned c = 0; c < b; c++)
            k += !((c >= 0x21 && c <= 0x7e) || (c >= 0xa1 && c <= 0xac) || (c >= 0xae && c <= 0xff));
        cp = 0x100 + k;
    }
    if (cp < 0x80) {
        out[0] = (char)cp;
        *n = 1;
    } else {
        out[0] = (char)(0xc0 | cp >> 6);
        out[1] = (char)(0x80 | (cp & 0x3f));
        *n = 2;
    }
}

/* Bytes in the order the first tokens get them: the biased picks below
 * then join mostly letters and spaces, like English text, and sometimes
 * anything (UTF-8 lead and continuation bytes included). */
static void byte_order(unsigned order[256])
{
    static const char common[] = " etaoinshrdlcumwfgypbvkjxqzETAOINSHRDLCUMWFGYPBVKJXQZ.,'\"\\0123456789\n-:;()";
    unsigned char seen[256] = { 0 };
    size_t n = 0;
    for (size_t i = 0; common[i]; i++)
        if (!seen[(unsigned char)common[i]]++)
            order[n++] = (unsigned char)common[i];
    for (unsigned b = 0; b < 256; b++)
        if (!seen[b])
            order[n++] = b;
}

typedef struct vocab {
    char **tok;       /* [n] UTF-8 spellings */
    size_t *len;      /* [n] byte lengths */
    size_t *split;    /* [n] byte length of the token this one extends */
    size_t n;
    int32_t *slots;   /* [cap] index + 1 of a token, 0 = empty */
    size_t cap;
} vocab;

static uint64_t hash_n(const char *s, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 0x100000001b3ull;
    return h;
}

/* Index of s[0..n) in the vocab, or -1. */
static long vocab_find(const vocab *v, const char *s, size_t n)
{
    for (size_t h = hash_n(s, n) & (v->cap - 1);; h = (h + 1) & (v->cap - 1)) {
        int32_t k = v->slots[h];
        if (!k)
            return -1;
        if (v->len[k - 1] == n && memcmp(v->tok[k - 1], s, n) == 0)
            return k - 1;
    }
}

static int vocab_add(vocab *v, char *s, size_t n, size_t split)
{
    if (vocab_find(v, s, n) >= 0)
        return 0;
    size_t h = hash_n(s, n) & (v->cap - 1);
    while (v->slots[h])
        h = (h + 1) & (v->cap - 1);
    v->slots[h] = (int32_t)(v->n + 1);
    v->tok[v->n] = s;
    v->len[v->n] = n;
    v->split[v->n] = split;
    v->n++;
    return 1;
}

/* 256 byte tokens, then tokens that each extend an earlier one (short ones
 * far more often) by one character, when what follows its first character
 * is a token already: every prefix and every suffix of a token is a token,
 * so a token has two or more merges that make it, as in real BPE files. */
static void make_vocab(vocab *v)
{
    v->tok = malloc(N_VOCAB * sizeof *v->tok);
    v->len = malloc(N_VOCAB * sizeof *v->len);
    v->split = malloc(N_VOCAB * sizeof *v->split);
    v->cap = 1u << 19;
    v->slots = calloc(v->cap, sizeof *v->slots);
    v->n = 0;
    if (!v->tok || !v->len || !v->split || !v->slots) {
        fprintf(stderr, "json bench: out of memory\n");
        exit(1);
    }
    unsigned order[256];
    byte_order(order);
    for (unsigned b = 0; b < 256; b++) {
        char *s = malloc(3);
        size_t n;
        byte_char(order[b], s, &n);
        vocab_add(v, s, n, SIZE_MAX);
    }
    while (v->n < N_VOCAB) {
        double u1 = (double)(rng() >> 11) / 9007199254740992.0;
        double u2 = (double)(rng() >> 11) / 9007199254740992.0;
        size_t a = (size_t)((double)v->n * u1 * sqrt(u1)), c = (size_t)(256 * u2 * u2 * u2);
        size_t n = v->len[a] + v->len[c];
        char *s = malloc(n);
        memcpy(s, v->tok[a], v->len[a]);
        memcpy(s + v->len[a], v->tok[c], v->len[c]);
        size_t first = (s[0] & 0x80) ? 2 : 1;
        if (vocab_find(v, s + first, n - first) < 0 || !vocab_add(v, s, n, v->len[a]))
            free(s);
    }
}

static void put_json_string(lh_sb *sb, const char *s, size_t n)
{
    lh_sb_append(sb, "\"");
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '"' || s[i] == '\\')
            lh_sb_append_n(sb, "\\", 1);
        lh_sb_append_n(sb, s + i, 1);
    }
    lh_sb_append(sb, "\"");
}

static void put_merge(lh_sb *sb, const char *a, size_t an, const char *b, size_t bn, size_t *count)
{
    lh_sb_append(sb, *count ? ",\n      \"" : "\n      \"");
    for (int part = 0; part < 2; part++) {
        const char *s = part ? b : a;
        size_t n = part ? bn : an;
        for (size_t i = 0; i < n; i++) {
            if (s[i] == '"' || s[i] == '\\')
                lh_sb_append_n(sb, "\\", 1);
            lh_sb_append_n(sb, s + i, 1);
        }
        if (!part)
            lh_sb_append_n(sb, " ", 1);
    }
    lh_sb_append_n(sb, "\"", 1);
    (*count)++;
}

/* Merges: first the pair each token was made of, then other
 * splits whose two halves are tokens too, up to N_MERGES. */
static size_t put_merges(lh_sb *sb, const vocab *v)
{
    size_t count = 0;
    for (size_t i = 256; i < v->n && count < N_MERGES; i++) {
        size_t k = v->split[i];
        put_merge(sb, v->tok[i], k, v->tok[i] + k, v->len[i] - k, &count);
    }
    for (size_t i = 256; i < v->n && count < N_MERGES; i++) {
        const char *s = v->tok[i];
        size_t n = v->len[i];
        for (size_t k = 1; k < n && count < N_MERGES; k++) {
            if ((s[k] & 0xc0) == 0x80 || k == v->split[i])
                continue; /* not a character boundary */
            if (vocab_find(v, s, k) >= 0 && vocab_find(v, s + k, n - k) >= 0)
                put_merge(sb, s, k, s + k, n - k, &count);
        }
    }
    return count;
}

static const char pre_tokenizer[] =
    "  \"pre_tokenizer\": {\n    \"type\": \"Sequence\",\n    \"pretokenizers\": [\n      {\n"
    "        \"type\": \"Split\",\n        \"pattern\": {\n          \"Regex\": "
    "\"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\\\r\\\\n\\\\p{L}\\\\p{N}]?\\\\p{L}+|\\\\p{N}{1,3}| "
    "?[^\\\\s\\\\p{L}\\\\p{N}]+[\\\\r\\\\n]*|\\\\s*[\\\\r\\\\n]+|\\\\s+(?!\\\\S)|\\\\s+\"\n        },\n"
    "        \"behavior\": \"Isolated\",\n        \"invert\": false\n      },\n      {\n"
    "        \"type\": \"ByteLevel\",\n        \"add_prefix_space\": false,\n"
    "        \"trim_offsets\": true,\n        \"use_regex\": false\n      }\n    ]\n  },\n";

/* The whole document; *n_merges gets the number of merges written. */
static lh_sb make_document(size_t *n_merges)
{
    vocab v;
    make_vocab(&v);
    lh_sb sb;
    lh_sb_init(&sb);
    lh_sb_append(&sb, "{\n  \"version\": \"1.0\",\n  \"truncation\": null,\n  \"padding\": null,\n"
                      "  \"added_tokens\": [");
    for (int i = 0; i < N_ADDED; i++)
        lh_sb_appendf(&sb, "%s\n    {\n      \"id\": %d,\n      \"content\": \"<|reserved_special_token_%d|>\",\n"
                      "      \"single_word\": false,\n      \"lstrip\": false,\n      \"rstrip\": false,\n"
                      "      \"normalized\": false,\n      \"special\": true\n    }",
                      i ? "," : "", N_VOCAB + i, i);
    lh_sb_append(&sb, "\n  ],\n  \"normalizer\": null,\n");
    lh_sb_append(&sb, pre_tokenizer);
    lh_sb_append(&sb, "  \"post_processor\": {\n    \"type\": \"ByteLevel\",\n    \"add_prefix_space\": true,\n"
                      "    \"trim_offsets\": false,\n    \"use_regex\": true\n  },\n"
                      "  \"decoder\": {\n    \"type\": \"ByteLevel\",\n    \"add_prefix_space\": true,\n"
                      "    \"trim_offsets\": true,\n    \"use_regex\": true\n  },\n"
                      "  \"model\": {\n    \"type\": \"BPE\",\n    \"dropout\": null,\n    \"unk_token\": null,\n"
                      "    \"continuing_subword_prefix\": null,\n    \"end_of_word_suffix\": null,\n"
                      "    \"fuse_unk\": false,\n    \"byte_fallback\": false,\n    \"ignore_merges\": true,\n"
                      "    \"vocab\": {");
    for (size_t i = 0; i < v.n; i++) {
        lh_sb_append(&sb, i ? ",\n      " : "\n      ");
        put_json_string(&sb, v.tok[i], v.len[i]);
        lh_sb_appendf(&sb, ": %zu", i);
    }
    lh_sb_append(&sb, "\n    },\n    \"merges\": [");
    *n_merges = put_merges(&sb, &v);
    lh_sb_append(&sb, "\n    ]\n  }\n}\n");
    for (size_t i = 0; i < v.n; i++)
        free(v.tok[i]);
    free(v.tok);
    free(v.len);
    free(v.split);
    free(v.slots);
    if (lh_sb_failed(&sb)) {
        fprintf(stderr, "json bench: out of memory\n");
        exit(1);
    }
    return sb;
}

/* ------------------------------------------------------------ timing */

typedef struct timing {
    double best;
    int ok;
} timing;

#define BEST(reps, setup, expr, teardown) ({ double best_ = 1e30; for (int r_ = 0; r_ < (reps); r_++) { \
    setup; double t0_ = bench_now(); expr; double d_ = bench_now() - t0_; teardown; \
    if (d_ < best_) best_ = d_; } best_; })

static size_t scan_sink;

/* Quotes in s[0..n): a loop the compiler vectorizes, reading every byte. */
static size_t count_quotes(const char *s, size_t n)
{
    size_t q = 0;
    for (size_t i = 0; i < n; i++)
        q += s[i] == '"';
    return q;
}

static void report(const char *name, double t, size_t bytes, double t_memcpy, double t_scan)
{
    printf("  %-34s %8.1f ms %8.1f MB/s   x%6.1f memcpy   x%6.1f scan\n", name, 1e3 * t,
           (double)bytes / t / 1e6, t / t_memcpy, t / t_scan);
}

static timing time_lorahub(const char *text, size_t len, int reps, int yaml)
{
    timing r = { 1e30, 1 };
    lh_json *j = NULL;
    lh_error err = { 0 };
    r.best = BEST(reps, j = NULL,
                  r.ok &= (yaml ? lh_yaml_parse(text, len, "tokenizer.json", &j, &err)
                                : lh_json_parse(text, len, "tokenizer.json", &j, &err)) == LH_OK,
                  lh_json_free(j));
    if (!r.ok)
        fprintf(stderr, "  (%s failed: %s)\n", yaml ? "lh_yaml_parse" : "lh_json_parse", err.msg);
    return r;
}

/* jansson's json_loadb and cJSON's cJSON_ParseWithLength, if installed. */
typedef void *(*jansson_loadb_fn)(const char *, size_t, size_t, void *);
typedef void (*jansson_delete_fn)(void *);
typedef void *(*cjson_parse_fn)(const char *, size_t);
typedef void (*cjson_delete_fn)(void *);

static int time_jansson(const char *text, size_t len, int reps, timing *out)
{
    void *lib = dlopen("libjansson.so.4", RTLD_NOW);
    if (!lib)
        return 0;
    jansson_loadb_fn loadb = (jansson_loadb_fn)dlsym(lib, "json_loadb");
    jansson_delete_fn del = (jansson_delete_fn)dlsym(lib, "json_delete");
    if (!loadb || !del) {
        dlclose(lib);
        return 0;
    }
    _Alignas(16) char error[1024]; /* json_error_t is 252 bytes in 2.14 */
    void *root = NULL;
    out->ok = 1;
    out->best = BEST(reps, root = NULL, root = loadb(text, len, 0, error), (out->ok &= root != NULL, del(root)));
    dlclose(lib);
    return 1;
}

static int time_cjson(const char *text, size_t len, int reps, timing *out)
{
    void *lib = dlopen("libcjson.so.1", RTLD_NOW);
    if (!lib)
        return 0;
    cjson_parse_fn parse = (cjson_parse_fn)dlsym(lib, "cJSON_ParseWithLength");
    cjson_delete_fn del = (cjson_delete_fn)dlsym(lib, "cJSON_Delete");
    if (!parse || !del) {
        dlclose(lib);
        return 0;
    }
    void *root = NULL;
    out->ok = 1;
    out->best = BEST(reps, root = NULL, root = parse(text, len), (out->ok &= root != NULL, del(root)));
    dlclose(lib);
    return 1;
}

static double time_tokenizer_load(const char *text, size_t len, int reps)
{
    char dir[512], path[600];
    bench_tempdir(dir, sizeof dir, "json");
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    lh_error err = { 0 };
    if (lh_write_file_atomic(path, text, len, &err))
        bench_die("json", "write tokenizer.json", &err);
    lh_tokenizer *t = NULL;
    int ok = 1;
    double best = BEST(reps, t = NULL, ok &= lh_tokenizer_load(path, &t, &err) == LH_OK, lh_tokenizer_free(t));
    lh_rmtree(dir);
    if (!ok)
        bench_die("json", "lh_tokenizer_load", &err);
    return best;
}

int main(int argc, char **argv)
{
    int quick = argc > 1 && strcmp(argv[1], "--quick") == 0;
    int reps = quick ? 1 : 5;
    int fail = 0;

    double t0 = bench_now();
    size_t n_merges;
    lh_sb doc = make_document(&n_merges);
    printf("tokenizer.json like Llama 3's: %d vocab, %zu merges, %d added tokens, %.2f MB "
           "(generated in %.1f s)\n", N_VOCAB, n_merges, N_ADDED, (double)doc.len / 1e6, bench_now() - t0);

    char *copy = malloc(doc.len);
    if (!copy)
        return 1;
    double t_memcpy = BEST(20, , memcpy(copy, doc.buf, doc.len), scan_sink += (unsigned char)copy[doc.len / 2]);
    double t_scan = BEST(20, , scan_sink += count_quotes(doc.buf, doc.len), );
    free(copy);
    printf("  %-34s %8.2f ms %8.1f MB/s\n", "limit: memcpy", 1e3 * t_memcpy, (double)doc.len / t_memcpy / 1e6);
    printf("  %-34s %8.2f ms %8.1f MB/s\n", "limit: byte scan (count quotes)", 1e3 * t_scan,
           (double)doc.len / t_scan / 1e6);

    timing ours = time_lorahub(doc.buf, doc.len, reps, 0);
    report("lh_json_parse (lib/json.c)", ours.best, doc.len, t_memcpy, t_scan);
    fail |= !ours.ok;
    timing yaml = time_lorahub(doc.buf, doc.len, quick ? 1 : 2, 1);
    report("lh_yaml_parse (libyaml events)", yaml.best, doc.len, t_memcpy, t_scan);
    fail |= !yaml.ok;
    timing other;
    if (time_jansson(doc.buf, doc.len, reps, &other) && other.ok)
        report("jansson 2 json_loadb (dlopen)", other.best, doc.len, t_memcpy, t_scan);
    else
        printf("  jansson: libjansson.so.4 not installed, skipped\n");
    if (time_cjson(doc.buf, doc.len, reps, &other) && other.ok)
        report("cJSON cJSON_ParseWithLength (dlopen)", other.best, doc.len, t_memcpy, t_scan);
    else
        printf("  cJSON: libcjson.so.1 not installed, skipped\n");

    double t_load = time_tokenizer_load(doc.buf, doc.len, quick ? 1 : 3);
    printf("  %-34s %8.1f ms (of which lh_json_parse %.0f%%)\n", "lh_tokenizer_load (whole load)", 1e3 * t_load,
           100 * ours.best / t_load);
    lh_sb_release(&doc);
    return fail;
}

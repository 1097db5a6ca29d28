/* model/tokenizer/tokenizer.c - Hugging Face tokenizer.json, BPE models.
 *
 * The pipeline follows the tokenizers library:
 *   1. added tokens whose "normalized" flag is false are cut out of the raw
 *      text (leftmost-longest match, lstrip/rstrip/single_word honoured);
 *   2. every remaining piece is normalized on its own (so Prepend("▁") acts
 *      on each piece, as in the library), then added tokens with
 *      normalized=true are cut out, compared in their normalized form;
 *   3. the pre-tokenizer chain splits each piece into words;
 *   4. BPE turns each word into ids, merges applied lowest rank first
 *      (leftmost on ties): short words by scanning their pair ranks, long
 *      ones from a heap, so long words stay O(n log n).
 * Decoding maps ids to token strings and runs the decoder chain.
 *
 * Where this differs from the library, on purpose or by necessity: the
 * post_processor is ignored (the caller adds BOS/EOS); offsets are not
 * tracked, except whether a piece starts the original text (Metaspace
 * prepend_scheme "first"; a piece cut right after a prepended normalizer
 * character does not count as starting it); regexes run on PCRE2, with \s
 * and \S spelled out as Unicode White_Space (Oniguruma's set), and PCRE2's
 * Unicode tables (14.0 for 10.42) and the NFC tables (nfc_tables.h, 14.0)
 * may lag the library's for characters assigned later; ids unknown to the
 * tokenizer are dropped by decode, as the library does.
 * tools/tokenizer_reference.py is the independent Python model of the same
 * rules used to build the fixtures. */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer.h"
#include "lib/json.h"
#include "lib/strbuf.h"

/* Ids beyond this would let a hostile file ask for huge tables. */
#define MAX_IDS (1 << 26)

static const char GPT2_PATTERN[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

/* ------------------------------------------------------------------ UTF-8 */

/* Length of the valid UTF-8 sequence at s[0..n), or 0 if invalid. */
static size_t utf8_seq(const unsigned char *s, size_t n, uint32_t *cp)
{
    unsigned char c = s[0];
    if (c < 0x80) { *cp = c; return 1; }
    size_t len;
    uint32_t v, min;
    if (c >= 0xC2 && c <= 0xDF) { len = 2; v = c & 0x1F; min = 0x80; }
    else if (c >= 0xE0 && c <= 0xEF) { len = 3; v = c & 0x0F; min = 0x800; }
    else if (c >= 0xF0 && c <= 0xF4) { len = 4; v = c & 0x07; min = 0x10000; }
    else return 0;
    if (n < len) return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        v = (v << 6) | (s[i] & 0x3F);
    }
    if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) return 0;
    *cp = v;
    return len;
}

static int utf8_valid(const char *s, size_t n, size_t *bad)
{
    uint32_t cp;
    for (size_t i = 0; i < n;) {
        size_t l = utf8_seq((const unsigned char *)s + i, n - i, &cp);
        if (!l) { *bad = i; return 0; }
        i += l;
    }
    return 1;
}

/* Length of the character at s[0..n) of text already known to be valid. */
static size_t utf8_len(const char *s)
{
    unsigned char c = (unsigned char)s[0];
    return c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
}

static uint32_t utf8_cp(const char *s)
{
    uint32_t cp = 0;
    utf8_seq((const unsigned char *)s, 4, &cp);
    return cp;
}

/* Bytes to UTF-8 with U+FFFD for each maximal invalid subpart (what Rust's
 * from_utf8_lossy and Python's errors="replace" do). */
static void utf8_lossy(lh_sb *sb, const unsigned char *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        size_t l = utf8_seq(s + i, n - i, &cp);
        if (l) { lh_sb_append_n(sb, (const char *)s + i, l); i += l; continue; }
        /* How many bytes form a prefix of some valid sequence. */
        unsigned char c = s[i];
        size_t want = c >= 0xC2 && c <= 0xDF ? 2 : c >= 0xE0 && c <= 0xEF ? 3
                    : c >= 0xF0 && c <= 0xF4 ? 4 : 1;
        size_t k = 1;
        while (k < want && i + k < n) {
            unsigned char d = s[i + k];
            unsigned char lo = 0x80, hi = 0xBF;
            if (k == 1) {
                if (c == 0xE0) lo = 0xA0;
                else if (c == 0xED) hi = 0x9F;
                else if (c == 0xF0) lo = 0x90;
                else if (c == 0xF4) hi = 0x8F;
            }
            if (d < lo || d > hi) break;
            k++;
        }
        lh_sb_append(sb, "\xEF\xBF\xBD");
        i += k;
    }
}

/* Unicode White_Space (what \s means in the Rust regex crate). */
static int is_space_cp(uint32_t c)
{
    return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680
        || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F
        || c == 0x205F || c == 0x3000;
}

#include "nfc_tables.h"

/* Binary search in sorted [first, last, ...] rows of width w; the row or NULL. */
static const uint32_t *range_find(const uint32_t *rows, size_t n, size_t w, uint32_t c)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const uint32_t *r = rows + mid * w;
        if (c < r[0]) hi = mid;
        else if (c > r[1]) lo = mid + 1;
        else return r;
    }
    return NULL;
}

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

/* NFC is the identity on text made only of these characters: the common
 * case skips the full algorithm. */
static int nfc_inert(uint32_t c)
{
    return range_find(&nfc_inert_ranges[0][0], COUNT(nfc_inert_ranges), 2, c) != NULL;
}

static uint32_t nfc_class(uint32_t c)
{
    const uint32_t *r = range_find(&nfc_ccc[0][0], COUNT(nfc_ccc), 3, c);
    return r ? r[2] : 0;
}

enum { H_S = 0xAC00, H_L = 0x1100, H_V = 0x1161, H_T = 0x11A7, H_NV = 21, H_NT = 28, H_NS = 11172 };

static uint32_t nfc_compose_pair(uint32_t a, uint32_t b)
{
    if (a >= H_L && a < H_L + 19 && b >= H_V && b < H_V + H_NV)
        return H_S + ((a - H_L) * H_NV + (b - H_V)) * H_NT;
    if (a >= H_S && a < H_S + H_NS && (a - H_S) % H_NT == 0 && b > H_T && b < H_T + H_NT)
        return a + (b - H_T);
    size_t lo = 0, hi = COUNT(nfc_comp);
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const uint32_t *r = nfc_comp[mid];
        if (a < r[0] || (a == r[0] && b < r[1])) hi = mid;
        else if (a > r[0] || b > r[1]) lo = mid + 1;
        else return r[2];
    }
    return 0;
}

typedef struct cpbuf { uint32_t *v; size_t n, cap; int failed; } cpbuf;

static void cp_push(cpbuf *b, uint32_t c)
{
    if (b->failed) return;
    if (b->n == b->cap) {
        size_t cap = b->cap ? 2 * b->cap : 64;
        uint32_t *v = realloc(b->v, cap * sizeof *v);
        if (!v) { b->failed = 1; return; }
        b->v = v; b->cap = cap;
    }
    b->v[b->n++] = c;
}

typedef struct cc_item { uint32_t ccc, cp; size_t idx; } cc_item;

static int cmp_cc(const void *x, const void *y)
{
    const cc_item *a = x, *b = y;
    if (a->ccc != b->ccc) return a->ccc < b->ccc ? -1 : 1;
    return a->idx < b->idx ? -1 : a->idx > b->idx;
}

/* NFC of valid UTF-8 s[0..n), appended to out (UAX #15: canonical
 * decomposition, canonical ordering, canonical composition). Returns 0 on
 * allocation failure. */
static int nfc_apply(const char *s, size_t n, lh_sb *out)
{
    cpbuf d = { 0 };
    for (size_t i = 0; i < n; i += utf8_len(s + i)) {
        uint32_t c = utf8_cp(s + i);
        if (c >= H_S && c < H_S + H_NS) {
            uint32_t k = c - H_S;
            cp_push(&d, H_L + k / (H_NV * H_NT));
            cp_push(&d, H_V + (k % (H_NV * H_NT)) / H_NT);
            if (k % H_NT) cp_push(&d, H_T + k % H_NT);
            continue;
        }
        size_t lo = 0, hi = COUNT(nfc_decomp);
        const uint32_t *r = NULL;
        while (lo < hi) {
            size_t mid = lo + (hi - lo) / 2;
            if (c < nfc_decomp[mid][0]) hi = mid;
            else if (c > nfc_decomp[mid][0]) lo = mid + 1;
            else { r = nfc_decomp[mid]; break; }
        }
        if (r) for (uint32_t j = 0; j < r[2]; j++) cp_push(&d, nfc_decomp_pool[r[1] + j]);
        else cp_push(&d, c);
    }
    /* Canonical ordering: stable sort of each run of non-starters. */
    for (size_t i = 0; i < d.n && !d.failed;) {
        if (!nfc_class(d.v[i])) { i++; continue; }
        size_t j = i;
        while (j < d.n && nfc_class(d.v[j])) j++;
        if (j - i > 1) {
            cc_item *t = malloc((j - i) * sizeof *t);
            if (!t) { d.failed = 1; break; }
            for (size_t k = i; k < j; k++) t[k - i] = (cc_item){ nfc_class(d.v[k]), d.v[k], k };
            qsort(t, j - i, sizeof *t, cmp_cc);
            for (size_t k = i; k < j; k++) d.v[k] = t[k - i].cp;
            free(t);
        }
        i = j;
    }
    /* Composition: a character joins the last starter unless blocked. */
    size_t m = 0;
    if (d.n && !d.failed) {
        size_t starter = 0;
        uint32_t last = nfc_class(d.v[0]) ? 256 : 0;
        m = 1;
        for (size_t i = 1; i < d.n; i++) {
            uint32_t c = d.v[i], cc = nfc_class(c);
            uint32_t comp = nfc_compose_pair(d.v[starter], c);
            if (comp && (last < cc || last == 0)) { d.v[starter] = comp; continue; }
            if (cc == 0) starter = m;
            last = cc;
            d.v[m++] = c;
        }
    }
    for (size_t i = 0; i < m; i++) {
        uint32_t c = d.v[i];
        char b[4];
        size_t l;
        if (c < 0x80) { b[0] = (char)c; l = 1; }
        else if (c < 0x800) { b[0] = (char)(0xC0 | (c >> 6)); b[1] = (char)(0x80 | (c & 0x3F)); l = 2; }
        else if (c < 0x10000) {
            b[0] = (char)(0xE0 | (c >> 12)); b[1] = (char)(0x80 | ((c >> 6) & 0x3F));
            b[2] = (char)(0x80 | (c & 0x3F)); l = 3;
        } else {
            b[0] = (char)(0xF0 | (c >> 18)); b[1] = (char)(0x80 | ((c >> 12) & 0x3F));
            b[2] = (char)(0x80 | ((c >> 6) & 0x3F)); b[3] = (char)(0x80 | (c & 0x3F)); l = 4;
        }
        lh_sb_append_n(out, b, l);
    }
    int ok = !d.failed;
    free(d.v);
    return ok;
}

/* ----------------------------------------------------------- hash tables */

static uint64_t hash_bytes(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++) { h ^= (unsigned char)s[i]; h *= 1099511628211ULL; }
    return h ^ (h >> 29);
}

static uint64_t hash_u64(uint64_t x)
{
    x ^= x >> 33; x *= 0xff51afd7ed558ccdULL; x ^= x >> 33; x *= 0xc4ceb9fe1a85ec53ULL;
    return x ^ (x >> 33);
}

static size_t pow2_at_least(size_t n)
{
    size_t c = 16;
    while (c < n) c <<= 1;
    return c;
}

typedef struct merge_slot {
    uint64_t key;     /* (left id << 32) | right id; UINT64_MAX = empty */
    int32_t rank;
    int32_t new_id;
} merge_slot;

/* ------------------------------------------------------------- components */

enum { N_PREPEND, N_REPLACE, N_NFC };
typedef struct norm_step { int kind; char *a, *b; size_t alen, blen; } norm_step;

enum { P_BYTELEVEL, P_SPLIT, P_METASPACE };
enum { B_REMOVED, B_ISOLATED, B_PREV, B_NEXT, B_CONTIG };
enum { S_ALWAYS, S_FIRST, S_NEVER };
typedef struct pre_step {
    int kind;
    int add_prefix_space, use_regex;  /* ByteLevel */
    pcre2_code *re;                   /* Split (Regex), ByteLevel with use_regex */
    char *lit; size_t litlen;         /* Split (String), Metaspace replacement */
    int behavior, invert;             /* Split */
    int scheme, split;                /* Metaspace */
} pre_step;

enum { D_BYTELEVEL, D_METASPACE, D_REPLACE, D_BYTEFALLBACK, D_FUSE, D_STRIP };
typedef struct dec_step {
    int kind;
    char *a, *b; size_t alen, blen;   /* Replace pattern/content; Metaspace/Strip char */
    int scheme;                       /* Metaspace */
    long start, stop;                 /* Strip */
} dec_step;

typedef struct added_tok {
    char *content; size_t len;        /* as written in the file */
    char *ncontent; size_t nlen;      /* normalized form, used when normalized=1 */
    int32_t id;
    int special, lstrip, rstrip, single_word, normalized;
} added_tok;

struct lh_tokenizer {
    char *path;
    int32_t n_ids;                    /* max id + 1 over vocab and added tokens */
    char **model_str;                 /* [n_ids] model vocab string per id, NULL for gaps */
    uint32_t *model_len;              /* [n_ids] */
    int32_t *added_of;                /* [n_ids] index into added[] or -1 */
    int32_t *vmap; size_t vmap_cap;   /* [vmap_cap] open addressing: model id or -1 */
    merge_slot *mmap; size_t mmap_cap;/* [mmap_cap] */
    int32_t byte_id[256];             /* <0xXX> token ids, -1 if absent */
    int32_t unk_id;                   /* -1: unknown characters are dropped */
    int byte_fallback, fuse_unk, ignore_merges;
    added_tok *added; size_t n_added; /* [n_added] */
    size_t *by_byte; size_t by_byte_start[257]; /* added indices by first byte, longest first */
    int has_normalizer;
    norm_step *norm; size_t n_norm;   /* [n_norm] */
    pre_step *pre; size_t n_pre;      /* [n_pre] */
    int has_decoder;
    dec_step *dec; size_t n_dec;      /* [n_dec] */
    pcre2_code *word_re;              /* WORD_CLASS, for single_word added tokens */
    char byte_char[256][3];           /* GPT-2 byte -> UTF-8 of its printable stand-in */
    unsigned char byte_char_len[256];
    int16_t char_byte[324];           /* inverse, by code point; -1 if none */
};

static int32_t vocab_find(const lh_tokenizer *t, const char *s, size_t n)
{
    if (!t->vmap) return -1;
    size_t mask = t->vmap_cap - 1;
    for (size_t i = hash_bytes(s, n) & mask;; i = (i + 1) & mask) {
        int32_t id = t->vmap[i];
        if (id < 0) return -1;
        if (t->model_len[id] == n && memcmp(t->model_str[id], s, n) == 0) return id;
    }
}

static const merge_slot *merge_find(const lh_tokenizer *t, int32_t a, int32_t b)
{
    if (!t->mmap) return NULL;
    uint64_t key = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
    size_t mask = t->mmap_cap - 1;
    for (size_t i = hash_u64(key) & mask;; i = (i + 1) & mask) {
        if (t->mmap[i].key == UINT64_MAX) return NULL;
        if (t->mmap[i].key == key) return &t->mmap[i];
    }
}

/* ------------------------------------------------------------ pieces */

typedef struct piece { size_t off, len; int orig0; int32_t tok; } piece;
typedef struct plist { lh_sb buf; piece *v; size_t n, cap; int failed; } plist;

static void pl_init(plist *p) { memset(p, 0, sizeof *p); lh_sb_init(&p->buf); }
static void pl_release(plist *p) { lh_sb_release(&p->buf); free(p->v); memset(p, 0, sizeof *p); }
static void pl_clear(plist *p) { p->buf.len = 0; p->n = 0; }

static void pl_push(plist *p, const char *s, size_t n, int orig0, int32_t tok)
{
    if (p->failed) return;
    if (n == 0 && tok < 0) return; /* the library drops empty pieces */
    if (p->n == p->cap) {
        size_t cap = p->cap ? p->cap * 2 : 16;
        piece *v = realloc(p->v, cap * sizeof *v);
        if (!v) { p->failed = 1; return; }
        p->v = v; p->cap = cap;
    }
    p->v[p->n].off = p->buf.len;
    p->v[p->n].len = n;
    p->v[p->n].orig0 = orig0;
    p->v[p->n].tok = tok;
    p->n++;
    lh_sb_append_n(&p->buf, s ? s : "", n);
    if (lh_sb_failed(&p->buf)) p->failed = 1;
}

static const char *pl_str(const plist *p, size_t i) { return p->buf.buf ? p->buf.buf + p->v[i].off : ""; }

typedef struct span { size_t s, e; int m; } span;
typedef struct spans { span *v; size_t n, cap; int failed; } spans;

static void sp_push(spans *x, size_t s, size_t e, int m)
{
    if (x->failed) return;
    if (x->n == x->cap) {
        size_t cap = x->cap ? x->cap * 2 : 32;
        span *v = realloc(x->v, cap * sizeof *v);
        if (!v) { x->failed = 1; return; }
        x->v = v; x->cap = cap;
    }
    x->v[x->n++] = (span){ s, e, m };
}

/* Per-call scratch: encode is const and may run on several threads. */
typedef struct scratch {
    pcre2_match_data *md;
    pcre2_match_context *mctx;
    pcre2_jit_stack *jit;
    spans m, k;
    lh_sb tmp;
    /* BPE */
    int32_t *sym_id, *sym_prev, *sym_next; size_t sym_cap; /* [sym_cap] */
    struct heap_e { int32_t rank, pos, new_id; } *heap; size_t heap_cap; /* [heap_cap] */
} scratch;

static void scratch_release(scratch *s)
{
    pcre2_match_data_free(s->md);
    pcre2_match_context_free(s->mctx);
    pcre2_jit_stack_free(s->jit);
    free(s->m.v); free(s->k.v);
    lh_sb_release(&s->tmp);
    free(s->sym_id); free(s->sym_prev); free(s->sym_next); free(s->heap);
    memset(s, 0, sizeof *s);
}

/* Regex matches over s[0..n) as spans covering s. */
static lh_status regex_spans(const lh_tokenizer *t, scratch *sc, pcre2_code *re, const char *s,
                             size_t n, spans *out, lh_error *err)
{
    out->n = 0;
    size_t prev = 0, off = 0;
    while (off <= n) {
        int rc = pcre2_match(re, (PCRE2_SPTR)s, n, off, PCRE2_NO_UTF_CHECK, sc->md, sc->mctx);
        if (rc == PCRE2_ERROR_JIT_STACKLIMIT && !sc->jit) {
            /* Rare: made only when the default 32 KiB machine stack is too
             * small, since mapping a JIT stack costs more than most calls. */
            sc->jit = pcre2_jit_stack_create(32 * 1024, 8 * 1024 * 1024, NULL);
            if (sc->jit) {
                pcre2_jit_stack_assign(sc->mctx, NULL, sc->jit);
                continue;
            }
        }
        if (rc == PCRE2_ERROR_NOMATCH) break;
        if (rc < 0) {
            PCRE2_UCHAR msg[256];
            pcre2_get_error_message(rc, msg, sizeof msg);
            return lh_error_set(err, LH_ERR_UNSUPPORTED, "%s: pre-tokenizer regex failed on the text: %s",
                                t->path, (const char *)msg);
        }
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(sc->md);
        size_t ms = ov[0], me = ov[1];
        if (ms > n || me > n || me < ms) break; /* \K tricks: not a usable match */
        if (ms != prev) sp_push(out, prev, ms, 0);
        sp_push(out, ms, me, 1);
        prev = me;
        /* An empty match moves on by one character, as Oniguruma's iterator does. */
        off = me > ms ? me : (ms < n ? ms + utf8_len(s + ms) : n + 1);
    }
    if (prev != n) sp_push(out, prev, n, 0);
    if (out->failed) return lh_error_set(err, LH_ERR_NOMEM, "%s: out of memory", t->path);
    return LH_OK;
}

static void literal_spans(const char *s, size_t n, const char *lit, size_t ln, spans *out)
{
    out->n = 0;
    size_t prev = 0;
    if (ln == 0) { if (n) sp_push(out, 0, n, 0); return; }
    for (size_t i = 0; i + ln <= n;) {
        if (memcmp(s + i, lit, ln) == 0) {
            if (i != prev) sp_push(out, prev, i, 0);
            sp_push(out, i, i + ln, 1);
            i += ln; prev = i;
        } else i++;
    }
    if (prev != n) sp_push(out, prev, n, 0);
}

/* Apply a split behaviour: keep[] gets the spans that survive, in order. */
static void apply_behavior(const spans *m, int behavior, spans *keep)
{
    keep->n = 0;
    int prevm = 0;
    switch (behavior) {
    case B_ISOLATED:
        for (size_t i = 0; i < m->n; i++) sp_push(keep, m->v[i].s, m->v[i].e, 0);
        break;
    case B_REMOVED:
        for (size_t i = 0; i < m->n; i++) sp_push(keep, m->v[i].s, m->v[i].e, m->v[i].m);
        break;
    case B_CONTIG:
        for (size_t i = 0; i < m->n; i++) {
            if (m->v[i].m == prevm && keep->n) keep->v[keep->n - 1].e = m->v[i].e;
            else sp_push(keep, m->v[i].s, m->v[i].e, 0);
            prevm = m->v[i].m;
        }
        break;
    case B_PREV:
        for (size_t i = 0; i < m->n; i++) {
            if (m->v[i].m && !prevm && keep->n) keep->v[keep->n - 1].e = m->v[i].e;
            else sp_push(keep, m->v[i].s, m->v[i].e, 0);
            prevm = m->v[i].m;
        }
        break;
    case B_NEXT:
        /* Walk backwards so a delimiter joins the piece after it. */
        for (size_t i = m->n; i-- > 0;) {
            if (m->v[i].m && !prevm && keep->n) keep->v[keep->n - 1].s = m->v[i].s;
            else sp_push(keep, m->v[i].s, m->v[i].e, 0);
            prevm = m->v[i].m;
        }
        for (size_t i = 0, j = keep->n; i + 1 < j; i++, j--) {
            span tmp = keep->v[i]; keep->v[i] = keep->v[j - 1]; keep->v[j - 1] = tmp;
        }
        break;
    }
}

static void push_kept(plist *out, const char *s, const spans *keep, int orig0)
{
    for (size_t i = 0; i < keep->n; i++)
        if (!keep->v[i].m && keep->v[i].e > keep->v[i].s)
            pl_push(out, s + keep->v[i].s, keep->v[i].e - keep->v[i].s,
                    orig0 && keep->v[i].s == 0, -1);
}

/* ------------------------------------------------------------ added tokens */

static int is_word_at(const lh_tokenizer *t, scratch *sc, const char *s, size_t n, size_t at)
{
    if (!t->word_re) return 0;
    int rc = pcre2_match(t->word_re, (PCRE2_SPTR)s, n, at, PCRE2_ANCHORED | PCRE2_NO_UTF_CHECK,
                         sc->md, sc->mctx);
    return rc >= 0;
}

/* Cut added tokens (the normalized or the raw set) out of s[0..n). */
static void split_added(const lh_tokenizer *t, scratch *sc, const char *s, size_t n, int orig0,
                        int normalized, int allow_special, plist *out)
{
    size_t start_off = 0, pos = 0;
    while (pos < n) {
        const added_tok *best = NULL;
        unsigned char c = (unsigned char)s[pos];
        for (size_t k = t->by_byte_start[c]; k < t->by_byte_start[c + 1]; k++) {
            const added_tok *a = &t->added[t->by_byte[k]];
            if (a->normalized != normalized) continue;
            const char *cs = normalized ? a->ncontent : a->content;
            size_t cl = normalized ? a->nlen : a->len;
            if (cl && cl <= n - pos && memcmp(s + pos, cs, cl) == 0) { best = a; break; }
        }
        if (!best) { pos += utf8_len(s + pos); continue; }
        size_t ms = pos, me = pos + (normalized ? best->nlen : best->len);
        pos = me;
        if (best->special && !allow_special) continue;
        if (best->single_word) {
            int left_word = 0, right_word = 0;
            if (ms > 0) {
                size_t b = ms - 1;
                while (b > 0 && ((unsigned char)s[b] & 0xC0) == 0x80) b--;
                left_word = is_word_at(t, sc, s, n, b);
            }
            if (me < n) right_word = is_word_at(t, sc, s, n, me);
            if (left_word || right_word) continue;
        }
        if (best->lstrip) {
            size_t b = ms;
            while (b > 0) {
                size_t q = b - 1;
                while (q > 0 && ((unsigned char)s[q] & 0xC0) == 0x80) q--;
                if (!is_space_cp(utf8_cp(s + q))) break;
                b = q;
            }
            ms = b > start_off ? b : start_off;
        }
        if (best->rstrip) {
            while (me < n && is_space_cp(utf8_cp(s + me))) me += utf8_len(s + me);
            pos = me;
        }
        if (start_off < ms) pl_push(out, s + start_off, ms - start_off, orig0 && start_off == 0, -1);
        pl_push(out, NULL, 0, 0, best->id);
        start_off = me;
    }
    if (start_off < n) pl_push(out, s + start_off, n - start_off, orig0 && start_off == 0, -1);
}

/* ------------------------------------------------------------ normalizer */

static lh_status normalize(const lh_tokenizer *t, const char *s, size_t n, lh_sb *out, lh_error *err)
{
    lh_sb a, b;
    lh_sb_init(&a); lh_sb_init(&b);
    lh_sb_append_n(&a, s, n);
    for (size_t i = 0; i < t->n_norm; i++) {
        const norm_step *st = &t->norm[i];
        const char *cur = a.buf ? a.buf : "";
        size_t len = a.len;
        b.len = 0;
        if (st->kind == N_PREPEND) {
            if (len) lh_sb_append_n(&b, st->a, st->alen);
            lh_sb_append_n(&b, cur, len);
        } else if (st->kind == N_REPLACE) {
            for (size_t j = 0; j < len;) {
                if (st->alen && j + st->alen <= len && memcmp(cur + j, st->a, st->alen) == 0) {
                    lh_sb_append_n(&b, st->b, st->blen);
                    j += st->alen;
                } else { lh_sb_append_n(&b, cur + j, 1); j++; }
            }
        } else { /* N_NFC */
            size_t j = 0;
            while (j < len && nfc_inert(utf8_cp(cur + j))) j += utf8_len(cur + j);
            if (j == len) lh_sb_append_n(&b, cur, len);
            else if (!nfc_apply(cur, len, &b)) b.failed = 1;
        }
        if (lh_sb_failed(&b)) break;
        lh_sb tmp = a; a = b; b = tmp;
    }
    if (lh_sb_failed(&b)) a.failed = 1;
    lh_sb_release(&b);
    if (lh_sb_failed(&a)) { lh_sb_release(&a); return lh_error_set(err, LH_ERR_NOMEM, "%s: out of memory", t->path); }
    lh_sb_release(out);
    *out = a;
    return LH_OK;
}

/* ------------------------------------------------------------ pre-tokenizers */

static void put_byte_chars(const lh_tokenizer *t, lh_sb *sb, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        lh_sb_append_n(sb, t->byte_char[c], t->byte_char_len[c]);
    }
}

static lh_status pre_one(const lh_tokenizer *t, scratch *sc, const pre_step *st, const char *s,
                         size_t n, int orig0, plist *out, lh_error *err)
{
    lh_status rc;
    lh_sb *tmp = &sc->tmp;
    switch (st->kind) {
    case P_BYTELEVEL: {
        tmp->len = 0;
        if (st->add_prefix_space && !(n && s[0] == ' ')) lh_sb_append(tmp, " ");
        lh_sb_append_n(tmp, s, n);
        if (lh_sb_failed(tmp)) return lh_error_set(err, LH_ERR_NOMEM, "%s: out of memory", t->path);
        const char *x = tmp->buf ? tmp->buf : "";
        size_t xn = tmp->len;
        lh_sb mapped;
        lh_sb_init(&mapped);
        if (st->use_regex) {
            if ((rc = regex_spans(t, sc, st->re, x, xn, &sc->m, err))) return rc;
            for (size_t i = 0; i < sc->m.n; i++) {
                const span *p = &sc->m.v[i];
                if (p->e <= p->s) continue;
                mapped.len = 0;
                put_byte_chars(t, &mapped, x + p->s, p->e - p->s);
                pl_push(out, mapped.buf, mapped.len, orig0 && p->s == 0, -1);
            }
        } else if (xn) {
            put_byte_chars(t, &mapped, x, xn);
            pl_push(out, mapped.buf, mapped.len, orig0, -1);
        }
        int failed = lh_sb_failed(&mapped);
        lh_sb_release(&mapped);
        if (failed) return lh_error_set(err, LH_ERR_NOMEM, "%s: out of memory", t->path);
        return LH_OK;
    }
    case P_SPLIT:
        if (st->re) {
            if ((rc = regex_spans(t, sc, st->re, s, n, &sc->m, err))) return rc;
        } else literal_spans(s, n, st->lit, st->litlen, &sc->m);
        if (st->invert)
            for (size_t i = 0; i < sc->m.n; i++) sc->m.v[i].m = !sc->m.v[i].m;
        apply_behavior(&sc->m, st->behavior, &sc->k);
        if (sc->m.failed || sc->k.failed) return lh_error_set(err, LH_ERR_NOMEM, "%s: out of memory", t->path);
        push_kept(out, s, &sc->k, orig0);
        return LH_OK;
    case P_METASPACE: {
        tmp->len = 0;
        for (size_t i = 0; i < n; i++) {
            if (s[i] == ' ') lh_sb_append_n(tmp, st->lit, st->litlen);
            else lh_sb_append_n(tmp, s + i, 1);
        }
        int starts = tmp->len >= st->litlen && memcmp(tmp->buf, st->lit, st->litlen) == 0;
        if (!starts && (st->scheme == S_ALWAYS || (st->scheme == S_FIRST && orig0))) {
            lh_sb pre;
            lh_sb_init(&pre);
            lh_sb_append_n(&pre, st->lit, st->litlen);
            lh_sb_append_n(&pre, tmp->buf ? tmp->buf : "", tmp->len);
            lh_sb_release(tmp);
            *tmp = pre;
        }
        if (lh_sb_failed(tmp)) return lh_error_set(err, LH_ERR_NOMEM, "%s: out of memory", t->path);
        const char *x = tmp->buf ? tmp->buf : "";
        if (!st->split) { pl_push(out, x, tmp->len, orig0, -1); return LH_OK; }
        literal_spans(x, tmp->len, st->lit, st->litlen, &sc->m);
        apply_behavior(&sc->m, B_NEXT, &sc->k);
        if (sc->m.failed || sc->k.failed) return lh_error_set(err, LH_ERR_NOMEM, "%s: out of memory", t->path);
        push_kept(out, x, &sc->k, orig0);
        return LH_OK;
    }
    }
    return LH_OK;
}

/* ------------------------------------------------------------ BPE */

typedef struct idvec { int32_t *v; size_t n, cap; int failed; } idvec;

static void iv_push(idvec *x, int32_t id)
{
    if (x->failed) return;
    if (x->n == x->cap) {
        size_t cap = x->cap ? x->cap * 2 : 64;
        int32_t *v = realloc(x->v, cap * sizeof *v);
        if (!v) { x->failed = 1; return; }
        x->v = v; x->cap = cap;
    }
    x->v[x->n++] = id;
}

static int heap_less(const struct heap_e *a, const struct heap_e *b)
{
    return a->rank < b->rank || (a->rank == b->rank && a->pos < b->pos);
}

static void heap_push(scratch *sc, size_t *hn, struct heap_e e)
{
    size_t i = (*hn)++;
    sc->heap[i] = e;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!heap_less(&sc->heap[i], &sc->heap[p])) break;
        struct heap_e tmp = sc->heap[i]; sc->heap[i] = sc->heap[p]; sc->heap[p] = tmp;
        i = p;
    }
}

static struct heap_e heap_pop(scratch *sc, size_t *hn)
{
    struct heap_e top = sc->heap[0];
    sc->heap[0] = sc->heap[--(*hn)];
    for (size_t i = 0;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < *hn && heap_less(&sc->heap[l], &sc->heap[m])) m = l;
        if (r < *hn && heap_less(&sc->heap[r], &sc->heap[m])) m = r;
        if (m == i) break;
        struct heap_e tmp = sc->heap[i]; sc->heap[i] = sc->heap[m]; sc->heap[m] = tmp;
        i = m;
    }
    return top;
}

static void pair_push(const lh_tokenizer *t, scratch *sc, size_t *hn, int32_t pos)
{
    int32_t nx = sc->sym_next[pos];
    if (nx < 0) return;
    const merge_slot *m = merge_find(t, sc->sym_id[pos], sc->sym_id[nx]);
    if (m) heap_push(sc, hn, (struct heap_e){ m->rank, pos, m->new_id });
}

/* Words of at most SMALL_WORD symbols: the same rule (lowest rank first,
 * leftmost on ties) by scanning a small array of pair ranks, cheaper than a
 * heap for the short pre-tokens that make up most text. */
#define SMALL_WORD 24

static void bpe_small(const lh_tokenizer *t, scratch *sc, size_t ns)
{
    int32_t rank[SMALL_WORD], nid[SMALL_WORD]; /* [ns] pair (i, next(i)) */
    for (size_t i = 0; i < ns; i++) {
        const merge_slot *m = i + 1 < ns ? merge_find(t, sc->sym_id[i], sc->sym_id[i + 1]) : NULL;
        rank[i] = m ? m->rank : INT32_MAX;
        nid[i] = m ? m->new_id : -1;
    }
    for (;;) {
        int32_t best = -1;
        for (int32_t i = 0; i >= 0; i = sc->sym_next[i])
            if (rank[i] != INT32_MAX && (best < 0 || rank[i] < rank[best])) best = i;
        if (best < 0) break;
        int32_t nx = sc->sym_next[best], nn = sc->sym_next[nx];
        sc->sym_id[best] = nid[best];
        sc->sym_next[best] = nn;
        if (nn >= 0) sc->sym_prev[nn] = best;
        int32_t pv = sc->sym_prev[best];
        const merge_slot *m;
        if (pv >= 0) {
            m = merge_find(t, sc->sym_id[pv], sc->sym_id[best]);
            rank[pv] = m ? m->rank : INT32_MAX;
            nid[pv] = m ? m->new_id : -1;
        }
        m = nn >= 0 ? merge_find(t, sc->sym_id[best], sc->sym_id[nn]) : NULL;
        rank[best] = m ? m->rank : INT32_MAX;
        nid[best] = m ? m->new_id : -1;
    }
}

static void bpe_heap(const lh_tokenizer *t, scratch *sc, size_t ns)
{
    size_t hn = 0;
    for (size_t i = 0; i + 1 < ns; i++) pair_push(t, sc, &hn, (int32_t)i);
    while (hn) {
        struct heap_e e = heap_pop(sc, &hn);
        if (sc->sym_id[e.pos] < 0) continue;          /* consumed by an earlier merge */
        int32_t nx = sc->sym_next[e.pos];
        if (nx < 0) continue;
        const merge_slot *m = merge_find(t, sc->sym_id[e.pos], sc->sym_id[nx]);
        if (!m || m->new_id != e.new_id || m->rank != e.rank) continue; /* stale */
        sc->sym_id[e.pos] = e.new_id;
        sc->sym_id[nx] = -1;
        int32_t nn = sc->sym_next[nx];
        sc->sym_next[e.pos] = nn;
        if (nn >= 0) sc->sym_prev[nn] = e.pos;
        if (sc->sym_prev[e.pos] >= 0) pair_push(t, sc, &hn, sc->sym_prev[e.pos]);
        pair_push(t, sc, &hn, e.pos);
    }
}

static lh_status bpe_word(const lh_tokenizer *t, scratch *sc, const char *s, size_t n, idvec *out,
                          lh_error *err)
{
    if (t->ignore_merges) {
        int32_t id = vocab_find(t, s, n);
        if (id >= 0) { iv_push(out, id); return LH_OK; }
    }
    /* At most 4 symbols per byte-fallback character, so 4n bounds the count. */
    size_t need = 4 * n + 1;
    if (need > sc->sym_cap) {
        if (need > SIZE_MAX / (3 * sizeof(struct heap_e)) || need > INT32_MAX / 4)
            return lh_error_set(err, LH_ERR_ARG, "%s: word too long", t->path);
        int32_t *a = realloc(sc->sym_id, need * sizeof *a);
        if (a) sc->sym_id = a;
        int32_t *b = realloc(sc->sym_prev, need * sizeof *b);
        if (b) sc->sym_prev = b;
        int32_t *c = realloc(sc->sym_next, need * sizeof *c);
        if (c) sc->sym_next = c;
        struct heap_e *h = realloc(sc->heap, 3 * need * sizeof *h);
        if (h) sc->heap = h;
        if (!a || !b || !c || !h) return lh_error_set(err, LH_ERR_NOMEM, "%s: out of memory", t->path);
        sc->sym_cap = need;
    }
    size_t ns = 0;
    int pending_unk = 0;
    for (size_t i = 0; i < n;) {
        size_t l = utf8_len(s + i);
        if (l > n - i) l = n - i;
        int32_t id = vocab_find(t, s + i, l);
        if (id >= 0) {
            sc->sym_id[ns++] = id;
            pending_unk = 0;
        } else {
            int all = t->byte_fallback;
            for (size_t j = 0; all && j < l; j++) all = t->byte_id[(unsigned char)s[i + j]] >= 0;
            if (all) {
                for (size_t j = 0; j < l; j++) sc->sym_id[ns++] = t->byte_id[(unsigned char)s[i + j]];
                pending_unk = 0;
            } else if (t->unk_id >= 0) {
                if (!(pending_unk && t->fuse_unk)) sc->sym_id[ns++] = t->unk_id;
                pending_unk = 1;
            }
        }
        i += l;
    }
    for (size_t i = 0; i < ns; i++) {
        sc->sym_prev[i] = (int32_t)i - 1;
        sc->sym_next[i] = i + 1 < ns ? (int32_t)i + 1 : -1;
    }
    if (ns <= SMALL_WORD) {
        bpe_small(t, sc, ns);
    } else {
        bpe_heap(t, sc, ns);
    }
    for (int32_t i = ns ? 0 : -1; i >= 0; i = sc->sym_next[i]) iv_push(out, sc->sym_id[i]);
    if (out->failed) return lh_error_set(err, LH_ERR_NOMEM, "%s: out of memory", t->path);
    return LH_OK;
}

/* ------------------------------------------------------------ encode */

lh_status lh_tokenizer_encode(const lh_tokenizer *t, const char *text, int allow_special,
                              int32_t **ids, size_t *n, lh_error *err)
{
    if (!t || !text || !ids || !n) return lh_error_set(err, LH_ERR_ARG, "lh_tokenizer_encode: NULL argument");
    *ids = NULL; *n = 0;
    size_t len = strlen(text), bad;
    if (!utf8_valid(text, len, &bad))
        return lh_error_set(err, LH_ERR_ARG, "%s: text to encode is not valid UTF-8 (byte %zu)", t->path, bad);

    lh_status rc = LH_OK;
    scratch sc;
    memset(&sc, 0, sizeof sc);
    lh_sb_init(&sc.tmp);
    plist a, b, c;
    pl_init(&a); pl_init(&b); pl_init(&c);
    idvec out = { 0 };
    lh_sb norm;
    lh_sb_init(&norm);

    sc.md = pcre2_match_data_create(1, NULL);
    sc.mctx = pcre2_match_context_create(NULL);
    if (!sc.md || !sc.mctx) { rc = lh_error_set(err, LH_ERR_NOMEM, "%s: out of memory", t->path); goto done; }
    /* A pathological regex must fail, not hang. */
    pcre2_set_match_limit(sc.mctx, 10000000);

    /* 1. raw added tokens */
    split_added(t, &sc, text, len, 1, 0, allow_special, &a);
    /* 2. normalize each remaining piece, then normalized added tokens */
    for (size_t i = 0; i < a.n && !a.failed; i++) {
        if (a.v[i].tok >= 0) { pl_push(&b, NULL, 0, 0, a.v[i].tok); continue; }
        const char *s = pl_str(&a, i);
        size_t sl = a.v[i].len;
        if (t->n_norm) {
            if ((rc = normalize(t, s, sl, &norm, err))) goto done;
            s = norm.buf ? norm.buf : "";
            sl = norm.len;
        }
        split_added(t, &sc, s, sl, a.v[i].orig0, 1, allow_special, &b);
    }
    if (a.failed || b.failed) { rc = lh_error_set(err, LH_ERR_NOMEM, "%s: out of memory", t->path); goto done; }
    /* 3. pre-tokenize, 4. BPE */
    for (size_t i = 0; i < b.n; i++) {
        if (b.v[i].tok >= 0) { iv_push(&out, b.v[i].tok); continue; }
        pl_clear(&a);
        pl_push(&a, pl_str(&b, i), b.v[i].len, b.v[i].orig0, -1);
        for (size_t k = 0; k < t->n_pre; k++) {
            pl_clear(&c);
            for (size_t j = 0; j < a.n; j++)
                if ((rc = pre_one(t, &sc, &t->pre[k], pl_str(&a, j), a.v[j].len, a.v[j].orig0, &c, err)))
                    goto done;
            plist tmp = a; a = c; c = tmp;
        }
        if (a.failed || c.failed) { rc = lh_error_set(err, LH_ERR_NOMEM, "%s: out of memory", t->path); goto done; }
        for (size_t j = 0; j < a.n; j++)
            if ((rc = bpe_word(t, &sc, pl_str(&a, j), a.v[j].len, &out, err))) goto done;
    }
    /* Never NULL, even for no ids: callers memcpy from it. */
    if (!out.v && !out.failed && !(out.v = malloc(sizeof *out.v))) out.failed = 1;
    if (out.failed) { rc = lh_error_set(err, LH_ERR_NOMEM, "%s: out of memory", t->path); goto done; }
    *ids = out.v;
    *n = out.n;
    out.v = NULL;
done:
    free(out.v);
    lh_sb_release(&norm);
    pl_release(&a); pl_release(&b); pl_release(&c);
    scratch_release(&sc);
    return rc;
}

/* ------------------------------------------------------------ decode */

typedef struct tvec { lh_sb *v; size_t n, cap; int failed; } tvec;

static lh_sb *tv_add(tvec *x)
{
    if (x->failed) return NULL;
    if (x->n == x->cap) {
        size_t cap = x->cap ? x->cap * 2 : 32;
        lh_sb *v = realloc(x->v, cap * sizeof *v);
        if (!v) { x->failed = 1; return NULL; }
        x->v = v; x->cap = cap;
    }
    lh_sb *s = &x->v[x->n++];
    lh_sb_init(s);
    return s;
}

static void tv_release(tvec *x)
{
    for (size_t i = 0; i < x->n; i++) lh_sb_release(&x->v[i]);
    free(x->v);
    memset(x, 0, sizeof *x);
}

static void tv_append(tvec *x, const char *s, size_t n)
{
    lh_sb *d = tv_add(x);
    if (!d) return;
    lh_sb_append_n(d, s, n);
    if (!d->buf) lh_sb_append(d, ""); /* keep buf non-NULL */
    if (lh_sb_failed(d)) x->failed = 1;
}

static const char *sb_str(const lh_sb *s) { return s->buf ? s->buf : ""; }

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Replace every occurrence of pat with rep in s[0..n). */
static void replace_into(lh_sb *out, const char *s, size_t n, const char *pat, size_t pl,
                         const char *rep, size_t rl)
{
    for (size_t j = 0; j < n;) {
        if (pl && j + pl <= n && memcmp(s + j, pat, pl) == 0) {
            lh_sb_append_n(out, rep, rl);
            j += pl;
        } else { lh_sb_append_n(out, s + j, 1); j++; }
    }
    if (!out->buf) lh_sb_append(out, "");
}

static void dec_step_apply(const lh_tokenizer *t, const dec_step *st, const tvec *in, tvec *out)
{
    switch (st->kind) {
    case D_BYTELEVEL: {
        lh_sb bytes;
        lh_sb_init(&bytes);
        for (size_t i = 0; i < in->n; i++) {
            const char *s = sb_str(&in->v[i]);
            size_t n = in->v[i].len, j;
            int all = 1;
            for (j = 0; j < n && all; j += utf8_len(s + j)) {
                uint32_t cp = utf8_cp(s + j);
                all = cp < 324 && t->char_byte[cp] >= 0;
            }
            if (!all) { lh_sb_append_n(&bytes, s, n); continue; }
            for (j = 0; j < n; j += utf8_len(s + j)) {
                char b = (char)t->char_byte[utf8_cp(s + j)];
                lh_sb_append_n(&bytes, &b, 1);
            }
        }
        lh_sb *d = tv_add(out);
        if (d) {
            utf8_lossy(d, (const unsigned char *)sb_str(&bytes), bytes.len);
            if (!d->buf) lh_sb_append(d, "");
            if (lh_sb_failed(d) || lh_sb_failed(&bytes)) out->failed = 1;
        }
        lh_sb_release(&bytes);
        break;
    }
    case D_METASPACE:
        for (size_t i = 0; i < in->n; i++) {
            lh_sb *d = tv_add(out);
            if (!d) break;
            int drop = i == 0 && st->scheme != S_NEVER;
            replace_into(d, sb_str(&in->v[i]), in->v[i].len, st->a, st->alen, " ", drop ? 0 : 1);
            if (lh_sb_failed(d)) out->failed = 1;
        }
        break;
    case D_REPLACE:
        for (size_t i = 0; i < in->n; i++) {
            lh_sb *d = tv_add(out);
            if (!d) break;
            replace_into(d, sb_str(&in->v[i]), in->v[i].len, st->a, st->alen, st->b, st->blen);
            if (lh_sb_failed(d)) out->failed = 1;
        }
        break;
    case D_BYTEFALLBACK: {
        unsigned char *pend = malloc(in->n + 1);
        size_t np = 0;
        if (!pend) { out->failed = 1; break; }
        for (size_t i = 0; i <= in->n; i++) {
            int byte = -1;
            if (i < in->n) {
                const char *s = sb_str(&in->v[i]);
                if (in->v[i].len == 6 && memcmp(s, "<0x", 3) == 0 && s[5] == '>'
                    && hexval(s[3]) >= 0 && hexval(s[4]) >= 0)
                    byte = hexval(s[3]) * 16 + hexval(s[4]);
            }
            if (byte >= 0) { pend[np++] = (unsigned char)byte; continue; }
            if (np) {
                size_t bad;
                if (utf8_valid((const char *)pend, np, &bad)) tv_append(out, (const char *)pend, np);
                else for (size_t k = 0; k < np; k++) tv_append(out, "\xEF\xBF\xBD", 3);
                np = 0;
            }
            if (i < in->n) tv_append(out, sb_str(&in->v[i]), in->v[i].len);
        }
        free(pend);
        break;
    }
    case D_FUSE: {
        lh_sb *d = tv_add(out);
        if (!d) break;
        lh_sb_append(d, "");
        for (size_t i = 0; i < in->n; i++) lh_sb_append_n(d, sb_str(&in->v[i]), in->v[i].len);
        if (lh_sb_failed(d)) out->failed = 1;
        break;
    }
    case D_STRIP:
        for (size_t i = 0; i < in->n; i++) {
            const char *s = sb_str(&in->v[i]);
            size_t n = in->v[i].len, a = 0, e = n;
            for (long k = 0; k < st->start && a < n; k++) {
                size_t l = utf8_len(s + a);
                if (l == st->alen && memcmp(s + a, st->a, l) == 0) a += l; else break;
            }
            for (long k = 0; k < st->stop && e > a; k++) {
                size_t q = e - 1;
                while (q > a && ((unsigned char)s[q] & 0xC0) == 0x80) q--;
                if (e - q == st->alen && memcmp(s + q, st->a, st->alen) == 0) e = q; else break;
            }
            tv_append(out, s + a, e - a);
        }
        break;
    }
}

lh_status lh_tokenizer_decode(const lh_tokenizer *t, const int32_t *ids, size_t n,
                              int skip_special, char **out, lh_error *err)
{
    if (!t || !out || (n && !ids)) return lh_error_set(err, LH_ERR_ARG, "lh_tokenizer_decode: NULL argument");
    *out = NULL;
    tvec a = { 0 }, b = { 0 };
    for (size_t i = 0; i < n; i++) {
        int32_t id = ids[i];
        /* Unknown ids are dropped, as the tokenizers library does: models
         * often pad the embedding past the tokenizer's vocab. */
        if (id < 0 || id >= t->n_ids) continue;
        if (t->added_of[id] >= 0) {
            const added_tok *ad = &t->added[t->added_of[id]];
            if (skip_special && ad->special) continue;
            tv_append(&a, ad->content, ad->len);
        } else if (t->model_str[id]) {
            tv_append(&a, t->model_str[id], t->model_len[id]);
        }
    }
    lh_sb res;
    lh_sb_init(&res);
    if (!t->has_decoder) {
        for (size_t i = 0; i < a.n; i++) {
            if (i) lh_sb_append(&res, " ");
            lh_sb_append_n(&res, sb_str(&a.v[i]), a.v[i].len);
        }
    } else {
        for (size_t k = 0; k < t->n_dec && !a.failed; k++) {
            dec_step_apply(t, &t->dec[k], &a, &b);
            tv_release(&a);
            a = b;
            memset(&b, 0, sizeof b);
        }
        for (size_t i = 0; i < a.n; i++) lh_sb_append_n(&res, sb_str(&a.v[i]), a.v[i].len);
    }
    lh_sb_append(&res, "");
    int failed = a.failed || lh_sb_failed(&res);
    tv_release(&a);
    if (failed) {
        lh_sb_release(&res);
        return lh_error_set(err, LH_ERR_NOMEM, "%s: out of memory", t->path);
    }
    *out = lh_sb_detach(&res);
    return LH_OK;
}

/* ------------------------------------------------------------ loading */

static int type_is(const lh_json *j, const char **type)
{
    *type = NULL;
    return lh_json_as_string(lh_json_get(j, "type"), type);
}

/* Optional boolean: absent or null gives def. */
static lh_status opt_bool(const lh_tokenizer *t, const lh_json *obj, const char *key, int def,
                          int *out, const char *what, lh_error *err)
{
    const lh_json *v = lh_json_get(obj, key);
    *out = def;
    if (!v || v->type == LH_JSON_NULL) return LH_OK;
    if (!lh_json_as_bool(v, out))
        return lh_error_set(err, LH_ERR_FORMAT, "%s: %s '%s' is not a boolean", t->path, what, key);
    return LH_OK;
}

static lh_status req_string(const lh_tokenizer *t, const lh_json *obj, const char *key,
                            const char *what, const char **s, size_t *n, lh_error *err)
{
    const lh_json *v = lh_json_get(obj, key);
    *s = "";
    *n = 0;
    if (!v || v->type != LH_JSON_STRING)
        return lh_error_set(err, LH_ERR_FORMAT, "%s: %s lacks a string '%s'", t->path, what, key);
    *s = v->string;
    *n = v->len;
    return LH_OK;
}

static char *dup_n(const char *s, size_t n)
{
    char *d = malloc(n + 1);
    if (d) { if (n) memcpy(d, s, n); d[n] = 0; }
    return d;
}

/* One character as a string (Strip content, Metaspace replacement). */
static lh_status one_char(const lh_tokenizer *t, const char *s, size_t n, const char *what, lh_error *err)
{
    uint32_t cp;
    if (n == 0 || utf8_seq((const unsigned char *)s, n, &cp) != n)
        return lh_error_set(err, LH_ERR_FORMAT, "%s: %s must be a single character", t->path, what);
    return LH_OK;
}

/* \w as the Rust regex crate defines it (UTS #18 Annex C), for single_word
 * added tokens; PCRE2's own \w leaves out marks. */
static const char WORD_CLASS[] = "[\\p{Alphabetic}\\p{M}\\p{Nd}\\p{Pc}\\p{Join_Control}]";

/* Unicode White_Space, written as the body of a character class. */
static const char WS_CLASS[] = "\\t\\n\\x0B\\f\\r\\x20\\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}"
                               "\\x{2028}\\x{2029}\\x{202F}\\x{205F}\\x{3000}";

/* Oniguruma's \w: Letter, Mark, Number, Connector_Punctuation. */
static const char ONIG_WORD[] = "\\p{L}\\p{M}\\p{N}\\p{Pc}";

/* PCRE2's \s differs from White_Space (what Oniguruma, which runs the
 * library's Split regexes, uses) in a few places, e.g. U+180E, and its \w
 * leaves out marks; spell \s \S \w \W out so the splits agree with the
 * library. \S and \W inside a class are left alone. */
static void rewrite_space(const char *p, size_t n, lh_sb *out)
{
    int in_class = 0;
    for (size_t i = 0; i < n;) {
        char c = p[i];
        if (c == '\\' && i + 1 < n) {
            char d = p[i + 1];
            if (d == 's' || d == 'w') {
                if (!in_class) lh_sb_append(out, "[");
                lh_sb_append(out, d == 's' ? WS_CLASS : ONIG_WORD);
                if (!in_class) lh_sb_append(out, "]");
                i += 2;
                continue;
            }
            if ((d == 'S' || d == 'W') && !in_class) {
                lh_sb_append(out, "[^");
                lh_sb_append(out, d == 'S' ? WS_CLASS : ONIG_WORD);
                lh_sb_append(out, "]");
                i += 2;
                continue;
            }
            if (d == 'Q') { /* literal up to \E, copied as is */
                size_t j = i + 2;
                while (j < n && !(p[j] == '\\' && j + 1 < n && p[j + 1] == 'E')) j++;
                j = j < n ? j + 2 : n;
                lh_sb_append_n(out, p + i, j - i);
                i = j;
                continue;
            }
            lh_sb_append_n(out, p + i, 2);
            i += 2;
            continue;
        }
        if (!in_class && c == '[') {
            /* "[]" and "[^]" open a class whose first member is ']' */
            size_t j = i + 1;
            if (j < n && p[j] == '^') j++;
            if (j < n && p[j] == ']') j++;
            lh_sb_append_n(out, p + i, j - i);
            in_class = 1;
            i = j;
            continue;
        }
        if (in_class && c == '[' && i + 1 < n && p[i + 1] == ':') { /* [:alpha:] */
            size_t j = i + 2;
            while (j + 1 < n && !(p[j] == ':' && p[j + 1] == ']')) j++;
            j = j + 1 < n ? j + 2 : n;
            lh_sb_append_n(out, p + i, j - i);
            i = j;
            continue;
        }
        if (in_class && c == ']') in_class = 0;
        lh_sb_append_n(out, p + i, 1);
        i++;
    }
}

static lh_status compile_re(lh_tokenizer *t, const char *pat, size_t n, pcre2_code **out,
                            const char *what, lh_error *err)
{
    int ec;
    PCRE2_SIZE off;
    lh_sb rw;
    lh_sb_init(&rw);
    rewrite_space(pat, n, &rw);
    lh_sb_append(&rw, "");
    if (lh_sb_failed(&rw)) { lh_sb_release(&rw); return lh_error_set(err, LH_ERR_NOMEM, "%s: out of memory", t->path); }
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)rw.buf, rw.len, PCRE2_UTF | PCRE2_UCP, &ec, &off, NULL);
    lh_sb_release(&rw);
    if (!re) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(ec, msg, sizeof msg);
        return lh_error_set(err, LH_ERR_UNSUPPORTED, "%s: %s regex does not compile: %s",
                            t->path, what, (const char *)msg);
    }
    pcre2_jit_compile(re, PCRE2_JIT_COMPLETE); /* optional: the interpreter is the fallback */
    *out = re;
    return LH_OK;
}

static lh_status parse_normalizer(lh_tokenizer *t, const lh_json *j, int depth, lh_error *err)
{
    if (!j || j->type == LH_JSON_NULL) return LH_OK;
    const char *type;
    if (j->type != LH_JSON_OBJECT || !type_is(j, &type))
        return lh_error_set(err, LH_ERR_FORMAT, "%s: normalizer is not an object with a 'type'", t->path);
    if (depth > 16) return lh_error_set(err, LH_ERR_FORMAT, "%s: normalizers nested too deeply", t->path);
    if (strcmp(type, "Sequence") == 0) {
        const lh_json *arr = lh_json_get(j, "normalizers");
        if (!arr || arr->type != LH_JSON_ARRAY)
            return lh_error_set(err, LH_ERR_FORMAT, "%s: normalizer 'Sequence' lacks 'normalizers'", t->path);
        for (size_t i = 0; i < arr->len; i++) {
            lh_status rc = parse_normalizer(t, arr->items[i], depth + 1, err);
            if (rc) return rc;
        }
        return LH_OK;
    }
    norm_step st = { 0 };
    const char *s, *c;
    size_t sn, cn;
    lh_status rc;
    if (strcmp(type, "Prepend") == 0) {
        if ((rc = req_string(t, j, "prepend", "normalizer 'Prepend'", &s, &sn, err))) return rc;
        st.kind = N_PREPEND;
        st.a = dup_n(s, sn); st.alen = sn;
    } else if (strcmp(type, "Replace") == 0) {
        const lh_json *pat = lh_json_get(j, "pattern");
        if (lh_json_get(pat, "Regex"))
            return lh_error_set(err, LH_ERR_UNSUPPORTED, "%s: unsupported normalizer 'Replace' with a Regex pattern", t->path);
        if ((rc = req_string(t, pat, "String", "normalizer 'Replace' pattern", &s, &sn, err))) return rc;
        if ((rc = req_string(t, j, "content", "normalizer 'Replace'", &c, &cn, err))) return rc;
        if (sn == 0) return lh_error_set(err, LH_ERR_FORMAT, "%s: normalizer 'Replace' has an empty pattern", t->path);
        st.kind = N_REPLACE;
        st.a = dup_n(s, sn); st.alen = sn;
        st.b = dup_n(c, cn); st.blen = cn;
        if (!st.b) { free(st.a); st.a = NULL; }
    } else if (strcmp(type, "NFC") == 0) {
        st.kind = N_NFC;
    } else {
        return lh_error_set(err, LH_ERR_UNSUPPORTED, "%s: unsupported normalizer '%s'", t->path, type);
    }
    if (st.kind != N_NFC && !st.a) return lh_error_set(err, LH_ERR_NOMEM, "%s: out of memory", t->path);
    norm_step *v = realloc(t->norm, (t->n_norm + 1) * sizeof *v);
    if (!v) { free(st.a); free(st.b); return lh_error_set(err, LH_ERR_NOMEM, "%s: out of memory", t->path); }
    t->norm = v;
    t->norm[t->n_norm++] = st;
    return LH_OK;
}

static lh_status push_pre(lh_tokenizer *t, pre_step *st, lh_error *err)
{
    pre_step *v = realloc(t->pre, (t->n_pre + 1) * sizeof *v);
    if (!v) {
        pcre2_code_free(st->re); free(st->lit);
        return lh_error_set(err, LH_ERR_NOMEM, "%s: out of memory", t->path);
    }
    t->pre = v;
    t->pre[t->n_pre++] = *st;
    return LH_OK;
}

static lh_status parse_scheme(lh_tokenizer *t, const lh_json *j, const char *what, int *scheme, lh_error *err)
{
    const char *s;
    const lh_json *v = lh_json_get(j, "prepend_scheme");
    if (!v || v->type == LH_JSON_NULL) {
        int aps;
        lh_status rc = opt_bool(t, j, "add_prefix_space", 1, &aps, what, err);
        if (rc) return rc;
        *scheme = aps ? S_ALWAYS : S_NEVER;
        return LH_OK;
    }
    if (!lh_json_as_string(v, &s))
        return lh_error_set(err, LH_ERR_FORMAT, "%s: %s 'prepend_scheme' is not a string", t->path, what);
    if (strcmp(s, "always") == 0) *scheme = S_ALWAYS;
    else if (strcmp(s, "first") == 0) *scheme = S_FIRST;
    else if (strcmp(s, "never") == 0) *scheme = S_NEVER;
    else return lh_error_set(err, LH_ERR_UNSUPPORTED, "%s: unsupported %s prepend_scheme '%s'", t->path, what, s);
    return LH_OK;
}

static lh_status parse_pre(lh_tokenizer *t, const lh_json *j, int depth, lh_error *err)
{
    if (!j || j->type == LH_JSON_NULL) return LH_OK;
    const char *type;
    if (j->type != LH_JSON_OBJECT || !type_is(j, &type))
        return lh_error_set(err, LH_ERR_FORMAT, "%s: pre-tokenizer is not an object with a 'type'", t->path);
    if (depth > 16) return lh_error_set(err, LH_ERR_FORMAT, "%s: pre-tokenizers nested too deeply", t->path);
    lh_status rc;
    pre_step st;
    memset(&st, 0, sizeof st);
    if (strcmp(type, "Sequence") == 0) {
        const lh_json *arr = lh_json_get(j, "pretokenizers");
        if (!arr || arr->type != LH_JSON_ARRAY)
            return lh_error_set(err, LH_ERR_FORMAT, "%s: pre-tokenizer 'Sequence' lacks 'pretokenizers'", t->path);
        for (size_t i = 0; i < arr->len; i++)
            if ((rc = parse_pre(t, arr->items[i], depth + 1, err))) return rc;
        return LH_OK;
    }
    if (strcmp(type, "ByteLevel") == 0) {
        st.kind = P_BYTELEVEL;
        if ((rc = opt_bool(t, j, "add_prefix_space", 1, &st.add_prefix_space, "pre-tokenizer 'ByteLevel'", err))) return rc;
        if ((rc = opt_bool(t, j, "use_regex", 1, &st.use_regex, "pre-tokenizer 'ByteLevel'", err))) return rc;
        if (st.use_regex && (rc = compile_re(t, GPT2_PATTERN, sizeof GPT2_PATTERN - 1, &st.re, "ByteLevel", err)))
            return rc;
        return push_pre(t, &st, err);
    }
    if (strcmp(type, "Split") == 0) {
        const lh_json *pat = lh_json_get(j, "pattern");
        const char *s, *beh;
        size_t sn;
        st.kind = P_SPLIT;
        if (lh_json_get(pat, "Regex")) {
            if ((rc = req_string(t, pat, "Regex", "pre-tokenizer 'Split' pattern", &s, &sn, err))) return rc;
            if ((rc = compile_re(t, s, sn, &st.re, "pre-tokenizer 'Split'", err))) return rc;
        } else {
            if ((rc = req_string(t, pat, "String", "pre-tokenizer 'Split' pattern", &s, &sn, err))) return rc;
            if (!(st.lit = dup_n(s, sn))) return lh_error_set(err, LH_ERR_NOMEM, "%s: out of memory", t->path);
            st.litlen = sn;
        }
        if (!lh_json_as_string(lh_json_get(j, "behavior"), &beh)) beh = "";
        if (strcmp(beh, "Removed") == 0) st.behavior = B_REMOVED;
        else if (strcmp(beh, "Isolated") == 0) st.behavior = B_ISOLATED;
        else if (strcmp(beh, "MergedWithPrevious") == 0) st.behavior = B_PREV;
        else if (strcmp(beh, "MergedWithNext") == 0) st.behavior = B_NEXT;
        else if (strcmp(beh, "Contiguous") == 0) st.behavior = B_CONTIG;
        else {
            pcre2_code_free(st.re); free(st.lit);
            return lh_error_set(err, LH_ERR_UNSUPPORTED, "%s: unsupported pre-tokenizer 'Split' behavior '%s'", t->path, beh);
        }
        if ((rc = opt_bool(t, j, "invert", 0, &st.invert, "pre-tokenizer 'Split'", err))) {
            pcre2_code_free(st.re); free(st.lit);
            return rc;
        }
        return push_pre(t, &st, err);
    }
    if (strcmp(type, "Metaspace") == 0) {
        const char *s;
        size_t sn;
        st.kind = P_METASPACE;
        if ((rc = req_string(t, j, "replacement", "pre-tokenizer 'Metaspace'", &s, &sn, err))) return rc;
        if ((rc = one_char(t, s, sn, "pre-tokenizer 'Metaspace' replacement", err))) return rc;
        if ((rc = parse_scheme(t, j, "pre-tokenizer 'Metaspace'", &st.scheme, err))) return rc;
        if ((rc = opt_bool(t, j, "split", 1, &st.split, "pre-tokenizer 'Metaspace'", err))) return rc;
        if (!(st.lit = dup_n(s, sn))) return lh_error_set(err, LH_ERR_NOMEM, "%s: out of memory", t->path);
        st.litlen = sn;
        return push_pre(t, &st, err);
    }
    if (strcmp(type, "Digits") == 0) {
        int individual;
        if ((rc = opt_bool(t, j, "individual_digits", 0, &individual, "pre-tokenizer 'Digits'", err))) return rc;
        st.kind = P_SPLIT;
        st.behavior = individual ? B_ISOLATED : B_CONTIG;
        if ((rc = compile_re(t, "\\p{N}", 5, &st.re, "Digits", err))) return rc;
        return push_pre(t, &st, err);
    }
    if (strcmp(type, "Punctuation") == 0) {
        static const char pat[] = "[\\p{P}!-/:-@\\[-`{-~]";
        const char *beh;
        st.kind = P_SPLIT;
        if (!lh_json_as_string(lh_json_get(j, "behavior"), &beh)) beh = "Isolated";
        if (strcmp(beh, "Removed") == 0) st.behavior = B_REMOVED;
        else if (strcmp(beh, "Isolated") == 0) st.behavior = B_ISOLATED;
        else if (strcmp(beh, "MergedWithPrevious") == 0) st.behavior = B_PREV;
        else if (strcmp(beh, "MergedWithNext") == 0) st.behavior = B_NEXT;
        else if (strcmp(beh, "Contiguous") == 0) st.behavior = B_CONTIG;
        else return lh_error_set(err, LH_ERR_UNSUPPORTED, "%s: unsupported pre-tokenizer 'Punctuation' behavior '%s'", t->path, beh);
        if ((rc = compile_re(t, pat, sizeof pat - 1, &st.re, "Punctuation", err))) return rc;
        return push_pre(t, &st, err);
    }
    return lh_error_set(err, LH_ERR_UNSUPPORTED, "%s: unsupported pre-tokenizer '%s'", t->path, type);
}

static lh_status parse_decoder(lh_tokenizer *t, const lh_json *j, int depth, lh_error *err)
{
    if (!j || j->type == LH_JSON_NULL) return LH_OK;
    const char *type;
    if (j->type != LH_JSON_OBJECT || !type_is(j, &type))
        return lh_error_set(err, LH_ERR_FORMAT, "%s: decoder is not an object with a 'type'", t->path);
    if (depth > 16) return lh_error_set(err, LH_ERR_FORMAT, "%s: decoders nested too deeply", t->path);
    t->has_decoder = 1;
    lh_status rc;
    dec_step st;
    memset(&st, 0, sizeof st);
    const char *s, *c;
    size_t sn, cn;
    if (strcmp(type, "Sequence") == 0) {
        const lh_json *arr = lh_json_get(j, "decoders");
        if (!arr || arr->type != LH_JSON_ARRAY)
            return lh_error_set(err, LH_ERR_FORMAT, "%s: decoder 'Sequence' lacks 'decoders'", t->path);
        for (size_t i = 0; i < arr->len; i++)
            if ((rc = parse_decoder(t, arr->items[i], depth + 1, err))) return rc;
        return LH_OK;
    } else if (strcmp(type, "ByteLevel") == 0) {
        st.kind = D_BYTELEVEL;
    } else if (strcmp(type, "ByteFallback") == 0) {
        st.kind = D_BYTEFALLBACK;
    } else if (strcmp(type, "Fuse") == 0) {
        st.kind = D_FUSE;
    } else if (strcmp(type, "Metaspace") == 0) {
        st.kind = D_METASPACE;
        if ((rc = req_string(t, j, "replacement", "decoder 'Metaspace'", &s, &sn, err))) return rc;
        if ((rc = one_char(t, s, sn, "decoder 'Metaspace' replacement", err))) return rc;
        if ((rc = parse_scheme(t, j, "decoder 'Metaspace'", &st.scheme, err))) return rc;
        st.a = dup_n(s, sn); st.alen = sn;
        if (!st.a) return lh_error_set(err, LH_ERR_NOMEM, "%s: out of memory", t->path);
    } else if (strcmp(type, "Replace") == 0) {
        const lh_json *pat = lh_json_get(j, "pattern");
        if (lh_json_get(pat, "Regex"))
            return lh_error_set(err, LH_ERR_UNSUPPORTED, "%s: unsupported decoder 'Replace' with a Regex pattern", t->path);
        if ((rc = req_string(t, pat, "String", "decoder 'Replace' pattern", &s, &sn, err))) return rc;
        if ((rc = req_string(t, j, "content", "decoder 'Replace'", &c, &cn, err))) return rc;
        st.kind = D_REPLACE;
        st.a = dup_n(s, sn); st.alen = sn;
        st.b = dup_n(c, cn); st.blen = cn;
        if (!st.a || !st.b) { free(st.a); free(st.b); return lh_error_set(err, LH_ERR_NOMEM, "%s: out of memory", t->path); }
    } else if (strcmp(type, "Strip") == 0) {
        long long a, b;
        if ((rc = req_string(t, j, "content", "decoder 'Strip'", &s, &sn, err))) return rc;
        if ((rc = one_char(t, s, sn, "decoder 'Strip' content", err))) return rc;
        if (!lh_json_as_int64(lh_json_get(j, "start"), &a) || !lh_json_as_int64(lh_json_get(j, "stop"), &b)
            || a < 0 || b < 0 || a > 1000000 || b > 1000000)
            return lh_error_set(err, LH_ERR_FORMAT, "%s: decoder 'Strip' needs small non-negative 'start' and 'stop'", t->path);
        st.kind = D_STRIP;
        st.start = (long)a; st.stop = (long)b;
        st.a = dup_n(s, sn); st.alen = sn;
        if (!st.a) return lh_error_set(err, LH_ERR_NOMEM, "%s: out of memory", t->path);
    } else {
        return lh_error_set(err, LH_ERR_UNSUPPORTED, "%s: unsupported decoder '%s'", t->path, type);
    }
    dec_step *v = realloc(t->dec, (t->n_dec + 1) * sizeof *v);
    if (!v) { free(st.a); free(st.b); return lh_error_set(err, LH_ERR_NOMEM, "%s: out of memory", t->path); }
    t->dec = v;
    t->dec[t->n_dec++] = st;
    return LH_OK;
}

static void init_byte_tables(lh_tokenizer *t)
{
    int extra = 0;
    for (int i = 0; i < 324; i++) t->char_byte[i] = -1;
    for (int b = 0; b < 256; b++) {
        int keep = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
        uint32_t cp = keep ? (uint32_t)b : (uint32_t)(256 + extra++);
        /* cp < 0x800: at most two bytes. */
        if (cp < 0x80) { t->byte_char[b][0] = (char)cp; t->byte_char_len[b] = 1; }
        else {
            t->byte_char[b][0] = (char)(0xC0 | (cp >> 6));
            t->byte_char[b][1] = (char)(0x80 | (cp & 0x3F));
            t->byte_char_len[b] = 2;
        }
        t->char_byte[cp] = (int16_t)b;
    }
}

/* Read "a b" or ["a", "b"]. */
static int merge_parts(const lh_json *m, const char **a, size_t *al, const char **b, size_t *bl)
{
    if (m->type == LH_JSON_STRING) {
        const char *sp = memchr(m->string, ' ', m->len);
        if (!sp || memchr(sp + 1, ' ', m->len - (size_t)(sp + 1 - m->string))) return 0;
        *a = m->string; *al = (size_t)(sp - m->string);
        *b = sp + 1; *bl = m->len - *al - 1;
        return 1;
    }
    if (m->type == LH_JSON_ARRAY && m->len == 2 && m->items[0]->type == LH_JSON_STRING
        && m->items[1]->type == LH_JSON_STRING) {
        *a = m->items[0]->string; *al = m->items[0]->len;
        *b = m->items[1]->string; *bl = m->items[1]->len;
        return 1;
    }
    return 0;
}

static int cmp_added(const void *x, const void *y, void *ctx)
{
    const added_tok *v = ctx;
    const added_tok *a = &v[*(const size_t *)x], *b = &v[*(const size_t *)y];
    /* Group by first byte of the form used for matching; longest first. */
    unsigned char fa = (unsigned char)(a->normalized ? a->ncontent : a->content)[0];
    unsigned char fb = (unsigned char)(b->normalized ? b->ncontent : b->content)[0];
    if (fa != fb) return fa < fb ? -1 : 1;
    size_t la = a->normalized ? a->nlen : a->len, lb = b->normalized ? b->nlen : b->len;
    if (la != lb) return la > lb ? -1 : 1;
    return a->id < b->id ? -1 : a->id > b->id;
}

static lh_status load_model(lh_tokenizer *t, const lh_json *root, lh_error *err)
{
    const lh_json *model = lh_json_get(root, "model");
    if (!model || model->type != LH_JSON_OBJECT)
        return lh_error_set(err, LH_ERR_FORMAT, "%s: no 'model' object", t->path);
    const char *type;
    if (type_is(model, &type)) {
        if (strcmp(type, "BPE") != 0)
            return lh_error_set(err, LH_ERR_UNSUPPORTED, "%s: unsupported model '%s'", t->path, type);
    } else if (!lh_json_get(model, "merges")) {
        return lh_error_set(err, LH_ERR_FORMAT, "%s: model has no 'type'", t->path);
    }
    const lh_json *vocab = lh_json_get(model, "vocab");
    if (!vocab || vocab->type != LH_JSON_OBJECT)
        return lh_error_set(err, LH_ERR_FORMAT, "%s: model 'vocab' is not an object", t->path);
    const lh_json *atoks = lh_json_get(root, "added_tokens");
    if (atoks && atoks->type != LH_JSON_NULL && atoks->type != LH_JSON_ARRAY)
        return lh_error_set(err, LH_ERR_FORMAT, "%s: 'added_tokens' is not an array", t->path);
    size_t n_added = atoks && atoks->type == LH_JSON_ARRAY ? atoks->len : 0;

    /* Ids: non-negative integers, dense enough that tables stay small. */
    long long max_id = -1;
    for (size_t i = 0; i < vocab->len; i++) {
        long long id;
        if (!lh_json_as_int64(vocab->items[i], &id) || id < 0 || id >= MAX_IDS)
            return lh_error_set(err, LH_ERR_FORMAT, "%s: vocab token '%.64s' has a bad id", t->path, vocab->keys[i]);
        if (id > max_id) max_id = id;
    }
    for (size_t i = 0; i < n_added; i++) {
        long long id;
        const lh_json *a = atoks->items[i];
        if (a->type != LH_JSON_OBJECT || !lh_json_as_int64(lh_json_get(a, "id"), &id) || id < 0 || id >= MAX_IDS)
            return lh_error_set(err, LH_ERR_FORMAT, "%s: added_tokens[%zu] has no valid 'id'", t->path, i);
        if (id > max_id) max_id = id;
    }
    if (max_id + 1 > (long long)(2 * (vocab->len + n_added) + 1024))
        return lh_error_set(err, LH_ERR_FORMAT, "%s: token id %lld is far beyond the %zu tokens defined",
                            t->path, max_id, vocab->len + n_added);
    t->n_ids = (int32_t)(max_id + 1);
    size_t nid = t->n_ids ? (size_t)t->n_ids : 1;
    t->model_str = calloc(nid, sizeof *t->model_str);
    t->model_len = calloc(nid, sizeof *t->model_len);
    t->added_of = malloc(nid * sizeof *t->added_of);
    t->vmap_cap = pow2_at_least(2 * vocab->len + 2);
    t->vmap = malloc(t->vmap_cap * sizeof *t->vmap);
    if (!t->model_str || !t->model_len || !t->added_of || !t->vmap)
        return lh_error_set(err, LH_ERR_NOMEM, "%s: out of memory", t->path);
    for (size_t i = 0; i < nid; i++) t->added_of[i] = -1;
    for (size_t i = 0; i < t->vmap_cap; i++) t->vmap[i] = -1;
    for (size_t i = 0; i < vocab->len; i++) {
        long long id;
        lh_json_as_int64(vocab->items[i], &id);
        const char *k = vocab->keys[i];
        size_t kl = strlen(k);
        if (t->model_str[id])
            return lh_error_set(err, LH_ERR_FORMAT, "%s: vocab id %lld is given to both '%.64s' and '%.64s'",
                                t->path, id, t->model_str[id], k);
        if (!(t->model_str[id] = dup_n(k, kl))) return lh_error_set(err, LH_ERR_NOMEM, "%s: out of memory", t->path);
        t->model_len[id] = (uint32_t)kl;
        size_t mask = t->vmap_cap - 1, h = hash_bytes(k, kl) & mask;
        while (t->vmap[h] >= 0) h = (h + 1) & mask;
        t->vmap[h] = (int32_t)id;
    }

    /* Merges: rank = position; a repeated pair keeps its last rank, like the
     * library's hash map does. */
    const lh_json *merges = lh_json_get(model, "merges");
    if (merges && merges->type != LH_JSON_NULL && merges->type != LH_JSON_ARRAY)
        return lh_error_set(err, LH_ERR_FORMAT, "%s: model 'merges' is not an array", t->path);
    size_t nm = merges && merges->type == LH_JSON_ARRAY ? merges->len : 0;
    if (nm > INT32_MAX / 2) return lh_error_set(err, LH_ERR_FORMAT, "%s: too many merges", t->path);
    t->mmap_cap = pow2_at_least(2 * nm + 2);
    t->mmap = malloc(t->mmap_cap * sizeof *t->mmap);
    if (!t->mmap) return lh_error_set(err, LH_ERR_NOMEM, "%s: out of memory", t->path);
    for (size_t i = 0; i < t->mmap_cap; i++) t->mmap[i].key = UINT64_MAX;
    lh_sb cat;
    lh_sb_init(&cat);
    for (size_t i = 0; i < nm; i++) {
        const char *a, *b;
        size_t al, bl;
        if (!merge_parts(merges->items[i], &a, &al, &b, &bl)) {
            lh_sb_release(&cat);
            return lh_error_set(err, LH_ERR_FORMAT, "%s: merges[%zu] is neither \"a b\" nor [a, b]", t->path, i);
        }
        int32_t ia = vocab_find(t, a, al), ib = vocab_find(t, b, bl);
        cat.len = 0;
        lh_sb_append_n(&cat, a, al);
        lh_sb_append_n(&cat, b, bl);
        if (lh_sb_failed(&cat)) { lh_sb_release(&cat); return lh_error_set(err, LH_ERR_NOMEM, "%s: out of memory", t->path); }
        int32_t in = vocab_find(t, cat.buf, cat.len);
        if (ia < 0 || ib < 0 || in < 0) {
            lh_error_set(err, LH_ERR_FORMAT, "%s: merges[%zu] '%.*s %.*s': '%.*s' is not in the vocab", t->path, i,
                         (int)(al > 64 ? 64 : al), a, (int)(bl > 64 ? 64 : bl), b,
                         ia < 0 ? (int)(al > 64 ? 64 : al) : ib < 0 ? (int)(bl > 64 ? 64 : bl) : (int)(cat.len > 64 ? 64 : cat.len),
                         ia < 0 ? a : ib < 0 ? b : cat.buf);
            lh_sb_release(&cat);
            return LH_ERR_FORMAT;
        }
        uint64_t key = ((uint64_t)(uint32_t)ia << 32) | (uint32_t)ib;
        size_t mask = t->mmap_cap - 1, h = hash_u64(key) & mask;
        while (t->mmap[h].key != UINT64_MAX && t->mmap[h].key != key) h = (h + 1) & mask;
        t->mmap[h] = (merge_slot){ key, (int32_t)i, in };
    }
    lh_sb_release(&cat);

    lh_status rc;
    const lh_json *v;
    if ((rc = opt_bool(t, model, "byte_fallback", 0, &t->byte_fallback, "model", err))) return rc;
    if ((rc = opt_bool(t, model, "fuse_unk", 0, &t->fuse_unk, "model", err))) return rc;
    if ((rc = opt_bool(t, model, "ignore_merges", 0, &t->ignore_merges, "model", err))) return rc;
    v = lh_json_get(model, "dropout");
    double d;
    if (v && v->type != LH_JSON_NULL && (!lh_json_as_number(v, &d) || d != 0))
        return lh_error_set(err, LH_ERR_UNSUPPORTED, "%s: unsupported BPE 'dropout' (only null or 0)", t->path);
    static const char *const refused[] = { "continuing_subword_prefix", "end_of_word_suffix" };
    for (size_t i = 0; i < 2; i++) {
        v = lh_json_get(model, refused[i]);
        if (v && v->type != LH_JSON_NULL && !(v->type == LH_JSON_STRING && v->len == 0))
            return lh_error_set(err, LH_ERR_UNSUPPORTED, "%s: unsupported BPE '%s' (only null)", t->path, refused[i]);
    }
    t->unk_id = -1;
    v = lh_json_get(model, "unk_token");
    if (v && v->type != LH_JSON_NULL) {
        if (v->type != LH_JSON_STRING)
            return lh_error_set(err, LH_ERR_FORMAT, "%s: model 'unk_token' is not a string", t->path);
        if ((t->unk_id = vocab_find(t, v->string, v->len)) < 0)
            return lh_error_set(err, LH_ERR_FORMAT, "%s: unk_token '%.64s' is not in the vocab", t->path, v->string);
    }
    for (int b = 0; b < 256; b++) {
        char name[8];
        snprintf(name, sizeof name, "<0x%02X>", b);
        t->byte_id[b] = vocab_find(t, name, 6);
    }

    /* Added tokens. */
    if (n_added) {
        t->added = calloc(n_added, sizeof *t->added);
        if (!t->added) return lh_error_set(err, LH_ERR_NOMEM, "%s: out of memory", t->path);
    }
    for (size_t i = 0; i < n_added; i++) {
        const lh_json *a = atoks->items[i];
        added_tok *ad = &t->added[t->n_added];
        long long id;
        const char *s;
        size_t sn;
        lh_json_as_int64(lh_json_get(a, "id"), &id);
        if ((rc = req_string(t, a, "content", "added token", &s, &sn, err))) return rc;
        if (sn == 0) return lh_error_set(err, LH_ERR_FORMAT, "%s: added_tokens[%zu] has empty content", t->path, i);
        if (memchr(s, 0, sn)) return lh_error_set(err, LH_ERR_FORMAT, "%s: added_tokens[%zu] contains a NUL", t->path, i);
        if (t->added_of[id] >= 0)
            return lh_error_set(err, LH_ERR_FORMAT, "%s: added token id %lld appears twice", t->path, id);
        ad->id = (int32_t)id;
        if ((rc = opt_bool(t, a, "special", 0, &ad->special, "added token", err))) return rc;
        if ((rc = opt_bool(t, a, "single_word", 0, &ad->single_word, "added token", err))) return rc;
        if ((rc = opt_bool(t, a, "lstrip", 0, &ad->lstrip, "added token", err))) return rc;
        if ((rc = opt_bool(t, a, "rstrip", 0, &ad->rstrip, "added token", err))) return rc;
        if ((rc = opt_bool(t, a, "normalized", !ad->special, &ad->normalized, "added token", err))) return rc;
        if (!(ad->content = dup_n(s, sn))) return lh_error_set(err, LH_ERR_NOMEM, "%s: out of memory", t->path);
        ad->len = sn;
        for (size_t k = 0; k < t->n_added; k++)
            if (t->added[k].len == sn && memcmp(t->added[k].content, s, sn) == 0) {
                free(ad->content); ad->content = NULL;
                return lh_error_set(err, LH_ERR_FORMAT, "%s: added token '%.64s' appears twice", t->path, s);
            }
        t->added_of[id] = (int32_t)t->n_added;
        t->n_added++;
        if (ad->single_word && !t->word_re)
            if ((rc = compile_re(t, WORD_CLASS, sizeof WORD_CLASS - 1, &t->word_re, "word", err))) return rc;
    }
    return LH_OK;
}

/* Normalized forms of added tokens and the first-byte index; needs the
 * normalizer parsed. */
static lh_status index_added(lh_tokenizer *t, lh_error *err)
{
    lh_status rc;
    lh_sb ns;
    lh_sb_init(&ns);
    for (size_t i = 0; i < t->n_added; i++) {
        added_tok *a = &t->added[i];
        if (a->normalized && t->n_norm) {
            if ((rc = normalize(t, a->content, a->len, &ns, err))) {
                /* A token the normalizer cannot handle can never match. */
                if (rc != LH_ERR_UNSUPPORTED) { lh_sb_release(&ns); return rc; }
                ns.len = 0;
            }
            a->ncontent = dup_n(ns.buf ? ns.buf : "", ns.len);
            a->nlen = ns.len;
        } else {
            a->ncontent = dup_n(a->content, a->len);
            a->nlen = a->len;
        }
        if (!a->ncontent) { lh_sb_release(&ns); return lh_error_set(err, LH_ERR_NOMEM, "%s: out of memory", t->path); }
    }
    lh_sb_release(&ns);
    lh_error_clear(err);
    t->by_byte = malloc((t->n_added ? t->n_added : 1) * sizeof *t->by_byte);
    if (!t->by_byte) return lh_error_set(err, LH_ERR_NOMEM, "%s: out of memory", t->path);
    for (size_t i = 0; i < t->n_added; i++) t->by_byte[i] = i;
    qsort_r(t->by_byte, t->n_added, sizeof *t->by_byte, cmp_added, t->added);
    size_t k = 0;
    for (int c = 0; c < 256; c++) {
        t->by_byte_start[c] = k;
        while (k < t->n_added) {
            const added_tok *a = &t->added[t->by_byte[k]];
            const char *s = a->normalized ? a->ncontent : a->content;
            if ((unsigned char)s[0] != c) break;
            k++;
        }
    }
    t->by_byte_start[256] = t->n_added;
    return LH_OK;
}

lh_status lh_tokenizer_load(const char *path, lh_tokenizer **out, lh_error *err)
{
    if (!path || !out) return lh_error_set(err, LH_ERR_ARG, "lh_tokenizer_load: NULL argument");
    *out = NULL;
    lh_json *root = NULL;
    lh_status rc = lh_json_parse_file(path, &root, err);
    if (rc) return rc;
    lh_tokenizer *t = calloc(1, sizeof *t);
    if (!t || !(t->path = dup_n(path, strlen(path)))) {
        free(t);
        lh_json_free(root);
        return lh_error_set(err, LH_ERR_NOMEM, "%s: out of memory", path);
    }
    init_byte_tables(t);
    if (root->type != LH_JSON_OBJECT) { rc = lh_error_set(err, LH_ERR_FORMAT, "%s: not a JSON object", path); goto fail; }
    if ((rc = load_model(t, root, err))) goto fail;
    const lh_json *nj = lh_json_get(root, "normalizer");
    t->has_normalizer = nj && nj->type != LH_JSON_NULL;
    if ((rc = parse_normalizer(t, nj, 0, err))) goto fail;
    if ((rc = parse_pre(t, lh_json_get(root, "pre_tokenizer"), 0, err))) goto fail;
    if ((rc = parse_decoder(t, lh_json_get(root, "decoder"), 0, err))) goto fail;
    if ((rc = index_added(t, err))) goto fail;
    lh_json_free(root);
    *out = t;
    return LH_OK;
fail:
    lh_json_free(root);
    lh_tokenizer_free(t);
    return rc;
}

void lh_tokenizer_free(lh_tokenizer *t)
{
    if (!t) return;
    for (int32_t i = 0; t->model_str && i < t->n_ids; i++) free(t->model_str[i]);
    free(t->model_str); free(t->model_len); free(t->added_of); free(t->vmap); free(t->mmap);
    for (size_t i = 0; i < t->n_added; i++) { free(t->added[i].content); free(t->added[i].ncontent); }
    free(t->added); free(t->by_byte);
    for (size_t i = 0; i < t->n_norm; i++) { free(t->norm[i].a); free(t->norm[i].b); }
    free(t->norm);
    for (size_t i = 0; i < t->n_pre; i++) { pcre2_code_free(t->pre[i].re); free(t->pre[i].lit); }
    free(t->pre);
    for (size_t i = 0; i < t->n_dec; i++) { free(t->dec[i].a); free(t->dec[i].b); }
    free(t->dec);
    pcre2_code_free(t->word_re);
    free(t->path);
    free(t);
}

int32_t lh_tokenizer_vocab_size(const lh_tokenizer *t) { return t ? t->n_ids : 0; }

int32_t lh_tokenizer_token_id(const lh_tokenizer *t, const char *token)
{
    if (!t || !token) return -1;
    size_t n = strlen(token);
    for (size_t i = 0; i < t->n_added; i++)
        if (t->added[i].len == n && memcmp(t->added[i].content, token, n) == 0) return t->added[i].id;
    return vocab_find(t, token, n);
}

const char *lh_tokenizer_id_token(const lh_tokenizer *t, int32_t id)
{
    if (!t || id < 0 || id >= t->n_ids) return NULL;
    if (t->added_of[id] >= 0) return t->added[t->added_of[id]].content;
    return t->model_str[id];
}

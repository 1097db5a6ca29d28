/* model/tokenizer/internal.h - what the tokenizer's stages share: the
 * parsed tokenizer (struct lh_tokenizer and its components), the piece,
 * span and id lists passed from stage to stage, the per-call scratch, and
 * each stage's entry points. Private to model/tokenizer/. A model is one
 * file (bpe.c, unigram.c) with its load and word functions declared here
 * and a case in tokenizer.c's dispatch. */
#ifndef LH_TOKENIZER_INTERNAL_H
#define LH_TOKENIZER_INTERNAL_H

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lib/json.h"
#include "lib/strbuf.h"
#include "tokenizer.h"

/* Ids beyond this would let a hostile file ask for huge tables. */
#define MAX_IDS (1 << 26)

typedef struct merge_slot {
    uint64_t key;     /* (left id << 32) | right id; UINT64_MAX = empty */
    int32_t rank;
    int32_t new_id;
} merge_slot;

/* ------------------------------------------------------------- components */

enum { N_PREPEND, N_REPLACE, N_NFC, N_PRECOMPILED, N_STRIP };

typedef struct tk_charsmap tk_charsmap;

typedef struct norm_step {
    int kind;
    char *a, *b; size_t alen, blen;   /* Prepend text; Replace pattern and content */
    pcre2_code *re;                   /* Replace with a Regex pattern */
    tk_charsmap *cmap;                /* Precompiled */
    int left, right;                  /* Strip */
} norm_step;

enum { P_BYTELEVEL, P_SPLIT, P_METASPACE, P_WSSPLIT };

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

typedef struct tk_unigram tk_unigram;
typedef struct uni_node uni_node;

struct lh_tokenizer {
    char *path;
    tk_unigram *uni;                  /* the Unigram model, NULL for BPE */
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
    int32_t *post_ids;                /* [n_post_pre + n_post_suf] ids the post-processor puts
                                         before and after a single text */
    size_t n_post_pre, n_post_suf;
    char *post_error;                 /* why the post_processor cannot be applied, or NULL */
    lh_status post_code;              /* and its status */
    char byte_char[256][3];           /* GPT-2 byte -> UTF-8 of its printable stand-in */
    unsigned char byte_char_len[256];
    int16_t char_byte[324];           /* inverse, by code point; -1 if none */
};

/* ------------------------------------------------------------ pieces */

typedef struct piece { size_t off, len; int orig0; int32_t tok; } piece;

typedef struct plist { lh_sb buf; piece *v; size_t n, cap; int failed; } plist;

typedef struct span { size_t s, e; int m; } span;

typedef struct spans { span *v; size_t n, cap; int failed; } spans;

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
    /* Unigram: per byte end, the best segmentation of the word up to it */
    struct uni_node { float score; int32_t start, id; } *uni_best; /* [uni_cap]; start -1: none yet */
    int32_t *uni_path; size_t uni_cap;                            /* [uni_cap] */
} scratch;

/* ------------------------------------------------------------ BPE */

typedef struct idvec { int32_t *v; size_t n, cap; int failed; } idvec;

/* Length of the valid UTF-8 sequence at s[0..n), or 0 if invalid; *cp its code point. */
size_t tk_utf8_seq(const unsigned char *s, size_t n, uint32_t *cp);

/* Small enough to inline on the hot paths. */
/* Length of the character at s[0..n) of text already known to be valid. */
static inline size_t tk_utf8_len(const char *s)
{
    unsigned char c = (unsigned char)s[0];
    return c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
}

static inline uint32_t tk_utf8_cp(const char *s)
{
    uint32_t cp = 0;
    tk_utf8_seq((const unsigned char *)s, 4, &cp);
    return cp;
}

static inline void tk_pl_init(plist *p) { memset(p, 0, sizeof *p); lh_sb_init(&p->buf); }

static inline void tk_pl_release(plist *p) { lh_sb_release(&p->buf); free(p->v); memset(p, 0, sizeof *p); }

static inline void tk_pl_clear(plist *p) { p->buf.len = 0; p->n = 0; }

static inline const char *tk_pl_str(const plist *p, size_t i) { return p->buf.buf ? p->buf.buf + p->v[i].off : ""; }

/* common.c */
int tk_utf8_valid(const char *s, size_t n, size_t *bad);
void tk_utf8_lossy(lh_sb *sb, const unsigned char *s, size_t n);
int tk_is_space_cp(uint32_t c);
uint64_t tk_hash_bytes(const char *s, size_t n);
uint64_t tk_hash_u64(uint64_t x);
size_t tk_pow2_at_least(size_t n);
void tk_pl_push(plist *p, const char *s, size_t n, int orig0, int32_t tok);
void tk_sp_push(spans *x, size_t s, size_t e, int m);
void tk_scratch_release(scratch *s);
int tk_type_is(const lh_json *j, const char **type);
lh_status tk_opt_bool(const lh_tokenizer *t, const lh_json *obj, const char *key, int def,
                      int *out, const char *what, lh_error *err);
lh_status tk_req_string(const lh_tokenizer *t, const lh_json *obj, const char *key,
                        const char *what, const char **s, size_t *n, lh_error *err);
char *tk_dup_n(const char *s, size_t n);
lh_status tk_one_char(const lh_tokenizer *t, const char *s, size_t n, const char *what, lh_error *err);
lh_status tk_compile_re(lh_tokenizer *t, const char *pat, size_t n, pcre2_code **out,
                        const char *what, lh_error *err);
void tk_init_byte_tables(lh_tokenizer *t);

/* normalize.c */
lh_status tk_normalize(const lh_tokenizer *t, const char *s, size_t n, lh_sb *out, lh_error *err);
lh_status tk_parse_normalizer(lh_tokenizer *t, const lh_json *j, int depth, lh_error *err);

/* pretokenize.c */
lh_status tk_pre_one(const lh_tokenizer *t, scratch *sc, const pre_step *st, const char *s,
                     size_t n, int orig0, plist *out, lh_error *err);
lh_status tk_parse_scheme(lh_tokenizer *t, const lh_json *j, const char *what, int *scheme, lh_error *err);
lh_status tk_parse_pre(lh_tokenizer *t, const lh_json *j, int depth, lh_error *err);

/* bpe.c */
int32_t tk_vocab_find(const lh_tokenizer *t, const char *s, size_t n);
lh_status tk_vocab_alloc(lh_tokenizer *t, long long max_id, size_t n_model, const lh_json *atoks,
                         size_t n_added, lh_error *err);
lh_status tk_vocab_add(lh_tokenizer *t, int32_t id, const char *s, size_t n, lh_error *err);
void tk_find_byte_tokens(lh_tokenizer *t);
void tk_iv_push(idvec *x, int32_t id);
lh_status tk_bpe_word(const lh_tokenizer *t, scratch *sc, const char *s, size_t n, idvec *out,
                      lh_error *err);
/* Reads root's "model" (a BPE object) and then its added tokens. */
lh_status tk_bpe_load(lh_tokenizer *t, const lh_json *root, const lh_json *model, lh_error *err);

/* unigram.c */
/* Reads root's "model" (a Unigram object), its added tokens, and builds
 * the piece trie. */
lh_status tk_unigram_load(lh_tokenizer *t, const lh_json *root, const lh_json *model, lh_error *err);
lh_status tk_unigram_word(const lh_tokenizer *t, scratch *sc, const char *s, size_t n, idvec *out,
                          lh_error *err);
void tk_unigram_free(tk_unigram *u);

/* charsmap.c: sentencepiece's precompiled_charsmap */
lh_status tk_charsmap_parse(const lh_tokenizer *t, const char *b64, size_t n, tk_charsmap **out,
                            lh_error *err);
void tk_charsmap_normalize(const tk_charsmap *m, const char *s, size_t n, lh_sb *out);
void tk_charsmap_free(tk_charsmap *m);

/* post.c: the post_processor */
lh_status tk_parse_post(lh_tokenizer *t, const lh_json *j, lh_error *err);

/* decode.c */
lh_status tk_parse_decoder(lh_tokenizer *t, const lh_json *j, int depth, lh_error *err);

/* tokenizer.c */
lh_status tk_load_added(lh_tokenizer *t, const lh_json *atoks, size_t n_added, lh_error *err);

#endif

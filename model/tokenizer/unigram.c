/* model/tokenizer/unigram.c - the Unigram model (T5, mT5, ALBERT style):
 * "model": {"type": "Unigram", "unk_id": N, "vocab": [[piece, score], ...],
 * "byte_fallback": bool}. A word's ids are its most probable segmentation
 * (Viterbi over byte positions, the sum of the pieces' log-probabilities),
 * as sentencepiece's EncodeOptimized and the tokenizers library do:
 *   - every piece that starts at a character is an edge; a character no
 *     one-character piece covers also gets an "unknown" edge scored
 *     min_score - 10 (kUnkPenalty);
 *   - a later candidate replaces an earlier one only when strictly better;
 *   - consecutive unknown pieces fuse into one <unk> (or, with
 *     byte_fallback, into the <0xXX> tokens of their bytes).
 * Pieces that are special added tokens (<pad>, </s>, <unk>, <extra_id_N>)
 * are left out of the piece trie, so the model never produces them from
 * text: sentencepiece's control symbols behave so, while the library's trie
 * holds every piece (lorahub-tokenize(1) names the difference). Scores are
 * summed in single precision, as sentencepiece does (its scores are floats
 * and the JSON holds those floats). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define UNK_PENALTY 10.0f

/* The piece trie: the root's children in a table, the others in an open
 * addressing hash of (node, byte), 8 bytes a slot so more of it stays in
 * cache. */
typedef struct trie_slot {
    uint32_t key;   /* (node << 8) | byte, node > 0; 0 = empty */
    int32_t child;
} trie_slot;

#define MAX_TRIE_NODES (1u << 24)

struct tk_unigram {
    float *score;                     /* [n_ids] piece log-probabilities */
    float unk_score;                  /* min_score - UNK_PENALTY */
    int32_t *node_id;                 /* [n_nodes] piece ending at the node, or -1 */
    size_t n_nodes;
    int32_t root[256];                /* the root's child by byte, or -1 */
    trie_slot *slots; size_t cap;     /* [cap] child of (node, byte) for node > 0 */
};


void tk_unigram_free(tk_unigram *u)
{
    if (!u) return;
    free(u->score);
    free(u->node_id);
    free(u->slots);
    free(u);
}

static inline uint32_t slot_hash(uint32_t key)
{
    key ^= key >> 16; key *= 0x7feb352dU; key ^= key >> 15; key *= 0x846ca68bU;
    return key ^ (key >> 16);
}

static inline int32_t trie_child(const tk_unigram *u, int32_t node, unsigned char b)
{
    if (node == 0) return u->root[b];
    uint32_t key = (uint32_t)node << 8 | b;
    size_t mask = u->cap - 1;
    for (size_t i = slot_hash(key) & mask;; i = (i + 1) & mask) {
        if (u->slots[i].key == key) return u->slots[i].child;
        if (u->slots[i].key == 0) return -1;
    }
}

static int32_t new_node(tk_unigram *u)
{
    u->node_id[u->n_nodes] = -1;
    return (int32_t)u->n_nodes++;
}

static void trie_insert(tk_unigram *u, const char *s, size_t n, int32_t id)
{
    int32_t node = 0;
    size_t mask = u->cap - 1;
    for (size_t k = 0; k < n; k++) {
        unsigned char b = (unsigned char)s[k];
        if (node == 0) {
            if (u->root[b] < 0) u->root[b] = new_node(u);
            node = u->root[b];
            continue;
        }
        uint32_t key = (uint32_t)node << 8 | b;
        size_t i = slot_hash(key) & mask;
        while (u->slots[i].key != 0 && u->slots[i].key != key) i = (i + 1) & mask;
        if (u->slots[i].key == 0) {
            u->slots[i].key = key;
            u->slots[i].child = new_node(u);
        }
        node = u->slots[i].child;
    }
    u->node_id[node] = id; /* a repeated piece keeps the last id, as the library's map does */
}

/* The trie over every piece but the special added tokens; min_score over
 * the same pieces. */
static lh_status build_trie(lh_tokenizer *t, size_t n_vocab, lh_error *err)
{
    tk_unigram *u = t->uni;
    size_t total = 1;
    for (size_t id = 0; id < n_vocab; id++) total += t->model_len[id];
    if (total >= MAX_TRIE_NODES)
        return lh_error_set(err, LH_ERR_FORMAT, "%s: Unigram vocab too large (%zu bytes of pieces)", t->path, total);
    u->cap = tk_pow2_at_least(2 * total);
    u->slots = calloc(u->cap, sizeof *u->slots);
    u->node_id = malloc(total * sizeof *u->node_id);
    if (!u->slots || !u->node_id) return lh_error_set(err, LH_ERR_NOMEM, "%s: out of memory", t->path);
    for (int b = 0; b < 256; b++) u->root[b] = -1;
    u->node_id[0] = -1;
    u->n_nodes = 1;
    float min_score = INFINITY;
    for (size_t id = 0; id < n_vocab; id++) {
        int32_t a = t->added_of[id];
        if ((a >= 0 && t->added[a].special) || t->model_len[id] == 0) continue;
        trie_insert(u, t->model_str[id], t->model_len[id], (int32_t)id);
        if (u->score[id] < min_score) min_score = u->score[id];
    }
    u->unk_score = (isfinite(min_score) ? min_score : 0.0f) - UNK_PENALTY;
    return LH_OK;
}

/* vocab: [[piece, score], ...], ids by position. */
static lh_status load_pieces(lh_tokenizer *t, const lh_json *vocab, lh_error *err)
{
    lh_status rc;
    for (size_t i = 0; i < vocab->len; i++) {
        const lh_json *e = vocab->items[i];
        double sc;
        if (e->type != LH_JSON_ARRAY || e->len != 2 || e->items[0]->type != LH_JSON_STRING
            || !lh_json_as_number(e->items[1], &sc) || !(fabs(sc) <= 1e30)) /* a float, NaN refused */
            return lh_error_set(err, LH_ERR_FORMAT, "%s: Unigram vocab[%zu] is not [piece, score]", t->path, i);
        const lh_json *p = e->items[0];
        if (memchr(p->string, 0, p->len))
            return lh_error_set(err, LH_ERR_FORMAT, "%s: Unigram vocab[%zu] contains a NUL", t->path, i);
        if ((rc = tk_vocab_add(t, (int32_t)i, p->string, p->len, err))) return rc;
        t->uni->score[i] = (float)sc;
    }
    return LH_OK;
}

lh_status tk_unigram_load(lh_tokenizer *t, const lh_json *root, const lh_json *model, lh_error *err)
{
    const lh_json *vocab = lh_json_get(model, "vocab");
    if (!vocab || vocab->type != LH_JSON_ARRAY)
        return lh_error_set(err, LH_ERR_FORMAT, "%s: Unigram model 'vocab' is not an array", t->path);
    if (vocab->len == 0) return lh_error_set(err, LH_ERR_FORMAT, "%s: Unigram model has an empty vocab", t->path);
    if (vocab->len >= MAX_IDS) return lh_error_set(err, LH_ERR_FORMAT, "%s: Unigram vocab too large", t->path);
    const lh_json *atoks = lh_json_get(root, "added_tokens");
    if (atoks && atoks->type != LH_JSON_NULL && atoks->type != LH_JSON_ARRAY)
        return lh_error_set(err, LH_ERR_FORMAT, "%s: 'added_tokens' is not an array", t->path);
    size_t n_added = atoks && atoks->type == LH_JSON_ARRAY ? atoks->len : 0;
    lh_status rc;
    if (!(t->uni = calloc(1, sizeof *t->uni))) return lh_error_set(err, LH_ERR_NOMEM, "%s: out of memory", t->path);
    if ((rc = tk_vocab_alloc(t, (long long)vocab->len - 1, vocab->len, atoks, n_added, err))) return rc;
    if (!(t->uni->score = calloc((size_t)t->n_ids, sizeof *t->uni->score)))
        return lh_error_set(err, LH_ERR_NOMEM, "%s: out of memory", t->path);
    if ((rc = load_pieces(t, vocab, err))) return rc;

    t->unk_id = -1;
    const lh_json *v = lh_json_get(model, "unk_id");
    if (v && v->type != LH_JSON_NULL) {
        long long id;
        if (!lh_json_as_int64(v, &id) || id < 0 || id >= (long long)vocab->len)
            return lh_error_set(err, LH_ERR_FORMAT, "%s: Unigram 'unk_id' is not an id of the vocab", t->path);
        t->unk_id = (int32_t)id;
    }
    if ((rc = tk_opt_bool(t, model, "byte_fallback", 0, &t->byte_fallback, "model", err))) return rc;
    tk_find_byte_tokens(t);
    if ((rc = tk_load_added(t, atoks, n_added, err))) return rc;
    return build_trie(t, vocab->len, err);
}

static lh_status grow_best(const lh_tokenizer *t, scratch *sc, size_t n, lh_error *err)
{
    if (n + 1 <= sc->uni_cap) return LH_OK;
    if (n + 1 > SIZE_MAX / sizeof(uni_node) || n > INT32_MAX - 1)
        return lh_error_set(err, LH_ERR_ARG, "%s: word too long", t->path);
    uni_node *b = realloc(sc->uni_best, (n + 1) * sizeof *b);
    if (b) sc->uni_best = b;
    int32_t *p = realloc(sc->uni_path, (n + 1) * sizeof *p);
    if (p) sc->uni_path = p;
    if (!b || !p) return lh_error_set(err, LH_ERR_NOMEM, "%s: out of memory", t->path);
    sc->uni_cap = n + 1;
    return LH_OK;
}

/* Ids of a fused run of unknown characters s[0..n). */
static lh_status push_unknown(const lh_tokenizer *t, const char *s, size_t n, idvec *out, lh_error *err)
{
    int all = t->byte_fallback;
    for (size_t j = 0; all && j < n; j++) all = t->byte_id[(unsigned char)s[j]] >= 0;
    if (all) {
        for (size_t j = 0; j < n; j++) tk_iv_push(out, t->byte_id[(unsigned char)s[j]]);
        return LH_OK;
    }
    if (t->unk_id < 0)
        return lh_error_set(err, LH_ERR_ARG, "%s: the Unigram model has no unk_id for the unknown text '%.*s'",
                            t->path, (int)(n > 64 ? 64 : n), s);
    tk_iv_push(out, t->unk_id);
    return LH_OK;
}

lh_status tk_unigram_word(const lh_tokenizer *t, scratch *sc, const char *s, size_t n, idvec *out,
                          lh_error *err)
{
    const tk_unigram *u = t->uni;
    lh_status rc;
    if (n == 0) return LH_OK;
    if ((rc = grow_best(t, sc, n, err))) return rc;
    uni_node *best = sc->uni_best; /* [n + 1] */
    for (size_t i = 0; i <= n; i++) best[i].start = -1;
    best[0] = (uni_node){ 0.0f, 0, -1 };
    for (size_t pos = 0; pos < n;) {
        size_t clen = tk_utf8_len(s + pos);
        if (clen > n - pos) clen = n - pos;
        float here = best[pos].score;
        int has_single = 0;
        int32_t node = 0;
        for (size_t k = pos; k < n; k++) {
            if ((node = trie_child(u, node, (unsigned char)s[k])) < 0) break;
            int32_t id = u->node_id[node];
            if (id < 0) continue;
            float cand = here + u->score[id];
            uni_node *b = &best[k + 1];
            if (b->start < 0 || cand > b->score) *b = (uni_node){ cand, (int32_t)pos, id };
            if (k + 1 - pos == clen) has_single = 1;
        }
        if (!has_single) {
            float cand = here + u->unk_score;
            uni_node *b = &best[pos + clen];
            if (b->start < 0 || cand > b->score) *b = (uni_node){ cand, (int32_t)pos, -1 };
        }
        pos += clen;
    }
    /* Backtrack: the path's ends, last first. */
    int32_t *ends = sc->uni_path; /* [n] */
    size_t np = 0;
    for (size_t e = n; e > 0; e = (size_t)best[e].start) ends[np++] = (int32_t)e;
    size_t unk_start = 0;
    int in_unk = 0;
    for (size_t i = np; i-- > 0 && !rc;) {
        size_t e = (size_t)ends[i], st = (size_t)best[e].start;
        int32_t id = best[e].id;
        if (id < 0) {
            if (!in_unk) unk_start = st;
            in_unk = 1;
            continue;
        }
        if (in_unk) rc = push_unknown(t, s + unk_start, st - unk_start, out, err);
        in_unk = 0;
        tk_iv_push(out, id);
    }
    if (in_unk && !rc) rc = push_unknown(t, s + unk_start, n - unk_start, out, err);
    if (!rc && out->failed) rc = lh_error_set(err, LH_ERR_NOMEM, "%s: out of memory", t->path);
    return rc;
}

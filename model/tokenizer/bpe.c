/* model/tokenizer/bpe.c - the BPE model: vocab and merge tables read from
 * tokenizer.json "model", and a word's ids with merges applied lowest
 * rank first (leftmost on ties): short words by scanning their pair
 * ranks, long ones from a heap, so long words stay O(n log n). Unknown
 * characters become <0xXX> byte tokens (byte_fallback) or unk_token. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

int32_t tk_vocab_find(const lh_tokenizer *t, const char *s, size_t n)
{
    if (!t->vmap) return -1;
    size_t mask = t->vmap_cap - 1;
    for (size_t i = tk_hash_bytes(s, n) & mask;; i = (i + 1) & mask) {
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
    for (size_t i = tk_hash_u64(key) & mask;; i = (i + 1) & mask) {
        if (t->mmap[i].key == UINT64_MAX) return NULL;
        if (t->mmap[i].key == key) return &t->mmap[i];
    }
}

void tk_iv_push(idvec *x, int32_t id)
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

lh_status tk_bpe_word(const lh_tokenizer *t, scratch *sc, const char *s, size_t n, idvec *out,
                      lh_error *err)
{
    if (t->ignore_merges) {
        int32_t id = tk_vocab_find(t, s, n);
        if (id >= 0) { tk_iv_push(out, id); return LH_OK; }
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
        size_t l = tk_utf8_len(s + i);
        if (l > n - i) l = n - i;
        int32_t id = tk_vocab_find(t, s + i, l);
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
    for (int32_t i = ns ? 0 : -1; i >= 0; i = sc->sym_next[i]) tk_iv_push(out, sc->sym_id[i]);
    if (out->failed) return lh_error_set(err, LH_ERR_NOMEM, "%s: out of memory", t->path);
    return LH_OK;
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

/* The id tables for ids [0, max(n_model, added ids + 1)): the id -> string
 * table, the string -> id hash (sized for n_model strings) and added_of. */
lh_status tk_vocab_alloc(lh_tokenizer *t, long long max_id, size_t n_model, const lh_json *atoks,
                         size_t n_added, lh_error *err)
{
    for (size_t i = 0; i < n_added; i++) {
        long long id;
        const lh_json *a = atoks->items[i];
        if (a->type != LH_JSON_OBJECT || !lh_json_as_int64(lh_json_get(a, "id"), &id) || id < 0 || id >= MAX_IDS)
            return lh_error_set(err, LH_ERR_FORMAT, "%s: added_tokens[%zu] has no valid 'id'", t->path, i);
        if (id > max_id) max_id = id;
    }
    if (max_id + 1 > (long long)(2 * (n_model + n_added) + 1024))
        return lh_error_set(err, LH_ERR_FORMAT, "%s: token id %lld is far beyond the %zu tokens defined",
                            t->path, max_id, n_model + n_added);
    t->n_ids = (int32_t)(max_id + 1);
    size_t nid = t->n_ids ? (size_t)t->n_ids : 1;
    t->model_str = calloc(nid, sizeof *t->model_str);
    t->model_len = calloc(nid, sizeof *t->model_len);
    t->added_of = malloc(nid * sizeof *t->added_of);
    t->vmap_cap = tk_pow2_at_least(2 * n_model + 2);
    t->vmap = malloc(t->vmap_cap * sizeof *t->vmap);
    if (!t->model_str || !t->model_len || !t->added_of || !t->vmap)
        return lh_error_set(err, LH_ERR_NOMEM, "%s: out of memory", t->path);
    for (size_t i = 0; i < nid; i++) t->added_of[i] = -1;
    for (size_t i = 0; i < t->vmap_cap; i++) t->vmap[i] = -1;
    return LH_OK;
}

/* Give id the model string s[0..n); a string given twice keeps the last
 * id in the string -> id hash, as the library's map does. */
lh_status tk_vocab_add(lh_tokenizer *t, int32_t id, const char *s, size_t n, lh_error *err)
{
    if (t->model_str[id])
        return lh_error_set(err, LH_ERR_FORMAT, "%s: vocab id %d is given to both '%.64s' and '%.64s'",
                            t->path, (int)id, t->model_str[id], s);
    if (!(t->model_str[id] = tk_dup_n(s, n))) return lh_error_set(err, LH_ERR_NOMEM, "%s: out of memory", t->path);
    t->model_len[id] = (uint32_t)n;
    size_t mask = t->vmap_cap - 1, h = tk_hash_bytes(s, n) & mask;
    for (; t->vmap[h] >= 0; h = (h + 1) & mask) {
        int32_t o = t->vmap[h];
        if (t->model_len[o] == n && memcmp(t->model_str[o], s, n) == 0) break;
    }
    t->vmap[h] = id;
    return LH_OK;
}

/* Ids, the id -> string table and the string -> id hash of vocab; the
 * added tokens' ids count towards n_ids. */
static lh_status load_vocab(lh_tokenizer *t, const lh_json *vocab, const lh_json *atoks,
                            size_t n_added, lh_error *err)
{
    /* Ids: non-negative integers, dense enough that tables stay small. */
    long long max_id = -1;
    for (size_t i = 0; i < vocab->len; i++) {
        long long id;
        if (!lh_json_as_int64(vocab->items[i], &id) || id < 0 || id >= MAX_IDS)
            return lh_error_set(err, LH_ERR_FORMAT, "%s: vocab token '%.64s' has a bad id", t->path, vocab->keys[i]);
        if (id > max_id) max_id = id;
    }
    lh_status rc = tk_vocab_alloc(t, max_id, vocab->len, atoks, n_added, err);
    for (size_t i = 0; i < vocab->len && !rc; i++) {
        long long id;
        lh_json_as_int64(vocab->items[i], &id);
        rc = tk_vocab_add(t, (int32_t)id, vocab->keys[i], strlen(vocab->keys[i]), err);
    }
    return rc;
}

static lh_status load_merges(lh_tokenizer *t, const lh_json *model, lh_error *err)
{
    /* Merges: rank = position; a repeated pair keeps its last rank, like the
     * library's hash map does. */
    const lh_json *merges = lh_json_get(model, "merges");
    if (merges && merges->type != LH_JSON_NULL && merges->type != LH_JSON_ARRAY)
        return lh_error_set(err, LH_ERR_FORMAT, "%s: model 'merges' is not an array", t->path);
    size_t nm = merges && merges->type == LH_JSON_ARRAY ? merges->len : 0;
    if (nm > INT32_MAX / 2) return lh_error_set(err, LH_ERR_FORMAT, "%s: too many merges", t->path);
    t->mmap_cap = tk_pow2_at_least(2 * nm + 2);
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
        int32_t ia = tk_vocab_find(t, a, al), ib = tk_vocab_find(t, b, bl);
        cat.len = 0;
        lh_sb_append_n(&cat, a, al);
        lh_sb_append_n(&cat, b, bl);
        if (lh_sb_failed(&cat)) { lh_sb_release(&cat); return lh_error_set(err, LH_ERR_NOMEM, "%s: out of memory", t->path); }
        int32_t in = tk_vocab_find(t, cat.buf, cat.len);
        if (ia < 0 || ib < 0 || in < 0) {
            lh_error_set(err, LH_ERR_FORMAT, "%s: merges[%zu] '%.*s %.*s': '%.*s' is not in the vocab", t->path, i,
                         (int)(al > 64 ? 64 : al), a, (int)(bl > 64 ? 64 : bl), b,
                         ia < 0 ? (int)(al > 64 ? 64 : al) : ib < 0 ? (int)(bl > 64 ? 64 : bl) : (int)(cat.len > 64 ? 64 : cat.len),
                         ia < 0 ? a : ib < 0 ? b : cat.buf);
            lh_sb_release(&cat);
            return LH_ERR_FORMAT;
        }
        uint64_t key = ((uint64_t)(uint32_t)ia << 32) | (uint32_t)ib;
        size_t mask = t->mmap_cap - 1, h = tk_hash_u64(key) & mask;
        while (t->mmap[h].key != UINT64_MAX && t->mmap[h].key != key) h = (h + 1) & mask;
        t->mmap[h] = (merge_slot){ key, (int32_t)i, in };
    }
    lh_sb_release(&cat);
    return LH_OK;
}

/* The model's switches, its unk_token and its <0xXX> byte tokens. */
static lh_status load_options(lh_tokenizer *t, const lh_json *model, lh_error *err)
{
    lh_status rc;
    const lh_json *v;
    if ((rc = tk_opt_bool(t, model, "byte_fallback", 0, &t->byte_fallback, "model", err))) return rc;
    if ((rc = tk_opt_bool(t, model, "fuse_unk", 0, &t->fuse_unk, "model", err))) return rc;
    if ((rc = tk_opt_bool(t, model, "ignore_merges", 0, &t->ignore_merges, "model", err))) return rc;
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
        if ((t->unk_id = tk_vocab_find(t, v->string, v->len)) < 0)
            return lh_error_set(err, LH_ERR_FORMAT, "%s: unk_token '%.64s' is not in the vocab", t->path, v->string);
    }
    tk_find_byte_tokens(t);
    return LH_OK;
}

/* The <0xXX> byte-fallback tokens' ids, -1 where absent. */
void tk_find_byte_tokens(lh_tokenizer *t)
{
    for (int b = 0; b < 256; b++) {
        char name[8];
        snprintf(name, sizeof name, "<0x%02X>", b);
        t->byte_id[b] = tk_vocab_find(t, name, 6);
    }
}

lh_status tk_bpe_load(lh_tokenizer *t, const lh_json *root, const lh_json *model, lh_error *err)
{
    const lh_json *vocab = lh_json_get(model, "vocab");
    if (!vocab || vocab->type != LH_JSON_OBJECT)
        return lh_error_set(err, LH_ERR_FORMAT, "%s: model 'vocab' is not an object", t->path);
    const lh_json *atoks = lh_json_get(root, "added_tokens");
    if (atoks && atoks->type != LH_JSON_NULL && atoks->type != LH_JSON_ARRAY)
        return lh_error_set(err, LH_ERR_FORMAT, "%s: 'added_tokens' is not an array", t->path);
    size_t n_added = atoks && atoks->type == LH_JSON_ARRAY ? atoks->len : 0;
    lh_status rc;
    if ((rc = load_vocab(t, vocab, atoks, n_added, err)) || (rc = load_merges(t, model, err)) ||
        (rc = load_options(t, model, err)))
        return rc;
    return tk_load_added(t, atoks, n_added, err);
}

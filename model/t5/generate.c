/* model/t5/generate.c - greedy decoding.
 *
 * The input is encoded once and every decoder block's cross-attention
 * keys/values computed once from it; the decoder then starts from
 * decoder_start_token_id and each new token costs one row through every
 * block, its self-attention keys/values kept in a cache. Ties in the argmax
 * go to the lowest id, as torch.argmax does. */
#include <stdlib.h>
#include <string.h>

#include "forward.h"

static int32_t argmax(const float *x, int n)
{
    int32_t best = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[best])
            best = i;
    return best;
}

/* Encode src and fill ck/cv [layers, n_src, I] for every decoder block. */
static lh_status encode(const t5_model *m, t5_ws *w, const t5_lora *lp, const int32_t *src,
                        size_t n_src, float *ck, float *cv, lh_error *err)
{
    const t5_config *c = &m->c;
    size_t D = (size_t)c->d_model, NI = (size_t)c->n_heads * c->d_kv;
    lh_status s = t5_embed(m, src, n_src, w->x, err);
    if (s)
        return s;
    size_t off0 = 0;
    t5_seqs sq = {1, &off0, &n_src};
    for (size_t l = 0; l < (size_t)c->n_enc_layers; l++)
        t5_enc_layer(m, w, l, n_src, 1, &lp, &sq);
    t5_enc_final(m, w, n_src);
    const t5_attn_w *X = &m->w.dec.cross;
    for (size_t l = 0; l < (size_t)c->n_dec_layers; l++) {
        t5_linear(w, w->enc, n_src, (int)D, X->k + l * NI * D, (int)NI, ck + l * n_src * NI, &lp, 1,
                  n_src, 1, l, T5_CK);
        t5_linear(w, w->enc, n_src, (int)D, X->v + l * NI * D, (int)NI, cv + l * n_src * NI, &lp, 1,
                  n_src, 1, l, T5_CV);
    }
    return LH_OK;
}

lh_status t5_generate_ids(const t5_model *m, const lh_adapter *a, const int32_t *src,
                          size_t n_src, int max_new, int32_t **out, size_t *n_out,
                          lh_error *err)
{
    *out = NULL;
    *n_out = 0;
    const t5_config *c = &m->c;
    if (n_src == 0)
        return lh_error_set(err, LH_ERR_ARG, "generation needs a non-empty input");
    if (max_new < 0)
        max_new = 0;
    size_t cap = (size_t)max_new + 1, NI = (size_t)c->n_heads * c->d_kv, V = (size_t)c->vocab;
    size_t Ld = (size_t)c->n_dec_layers;
    t5_lora lora = {0};
    t5_ws w;
    t5_kv kv = {0, cap, NULL, NULL};
    lh_status s = t5_lora_bind(m, a, &lora, err);
    if (s)
        return s;
    size_t mk = cap > n_src ? cap : n_src;
    if ((s = t5_ws_init(&w, m, n_src, n_src, n_src, mk, a ? lh_adapter_max_rank(a) : 0, err))) {
        t5_lora_release(&lora);
        return s;
    }
    float *ck = malloc(Ld * n_src * NI * sizeof(float));
    float *cv = malloc(Ld * n_src * NI * sizeof(float));
    kv.k = malloc(Ld * cap * NI * sizeof(float));
    kv.v = malloc(Ld * cap * NI * sizeof(float));
    float *logits = malloc(V * sizeof(float));
    int32_t *gen = malloc(cap * sizeof *gen);
    const t5_lora *lp = &lora;
    if (!ck || !cv || !kv.k || !kv.v || !logits || !gen) {
        s = lh_error_set(err, LH_ERR_NOMEM, "out of memory for decoding %zu tokens", cap);
        goto done;
    }
    if ((s = encode(m, &w, lp, src, n_src, ck, cv, err)))
        goto done;
    size_t n_gen = 0, one = 1, off0 = 0, row0 = 0;
    t5_seqs dsq = {1, &off0, &one}, esq = {1, &off0, &n_src};
    int32_t next = c->start_id;
    while (n_gen < (size_t)max_new) {
        if ((s = t5_embed(m, &next, 1, w.x, err)))
            goto done;
        for (size_t l = 0; l < Ld; l++)
            t5_dec_layer(m, &w, l, 1, 1, &lp, &dsq, ck + l * n_src * NI, cv + l * n_src * NI, n_src,
                         &esq, &kv);
        kv.len++;
        t5_head(m, w.x, &row0, 1, w.xn, logits);
        next = argmax(logits, c->vocab);
        if (next == c->eos_id)
            break;
        gen[n_gen++] = next;
    }
    *out = gen;
    *n_out = n_gen;
    gen = NULL;
done:
    free(gen);
    free(logits);
    free(ck);
    free(cv);
    free(kv.k);
    free(kv.v);
    t5_ws_free(&w);
    t5_lora_release(&lora);
    return s;
}

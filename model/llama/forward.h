/* model/llama/forward.h - forward-pass pieces shared by scoring
 * (forward.c) and generation (generate.c). Private to model/llama/. */
#ifndef LH_MODEL_LLAMA_FORWARD_H
#define LH_MODEL_LLAMA_FORWARD_H

#include "llama.h"

/* Activations for `rows` stacked tokens. q_dim/kv_dim as in nm_weights. */
typedef struct nm_ws {
    size_t rows;
    size_t max_ctx;  /* positions covered by cos/sin */
    float *x;        /* [rows, dim] residual stream */
    float *xn;       /* [rows, dim] normed input / projection output */
    float *q;        /* [rows, q_dim] */
    float *k;        /* [rows, kv_dim] */
    float *v;        /* [rows, kv_dim] */
    float *att;      /* [rows, q_dim] attention output */
    float *hb;       /* [rows, hidden] gate, then silu(gate) * up */
    float *hb2;      /* [rows, hidden] up */
    float *tmp;      /* [rows, max_rank] LoRA x A^T */
    float *scores;   /* [max_len, max_ctx] one head's attention */
    float *cos;      /* [max_ctx, head_dim/2] */
    float *sin;      /* [max_ctx, head_dim/2] */
} nm_ws;

/* Sequences of one copy of the packed batch: rows [off[s], off[s]+len[s]). */
typedef struct nm_seqs {
    size_t n;
    size_t *off;        /* [n] */
    const size_t *len;  /* [n] */
} nm_seqs;

/* KV cache of one sequence: len positions filled of cap. */
typedef struct nm_kv {
    size_t len, cap;
    float *k;  /* [layers, cap, kv_dim] */
    float *v;  /* [layers, cap, kv_dim] */
} nm_kv;

lh_status nm_ws_init(nm_ws *w, const nm_model *m, size_t rows, size_t max_len, size_t max_ctx,
                     int max_rank, lh_error *err);
void nm_ws_free(nm_ws *w);
lh_status nm_embed(const nm_model *m, const int32_t *ids, size_t n, float *x /* [n, dim] */,
                   lh_error *err);
/* One decoder layer on w->x holding nc stacked copies of rows_per rows;
 * loras[c] (entries may be NULL) adapts copy c. With kv (nc == 1, one
 * sequence) keys/values are appended to the cache and attention covers it. */
void nm_layer(const nm_model *m, nm_ws *w, size_t layer, size_t rows_per, int nc,
              const nm_lora *const *loras, const nm_seqs *sq, nm_kv *kv);
/* Final norm and LM head on rows [n] of x: logits [n, vocab]; xn [n, dim] scratch. */
void nm_head(const nm_model *m, const float *x, const size_t *rows, size_t n, float *xn,
             float *logits);

#endif

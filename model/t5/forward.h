/* model/t5/forward.h - forward-pass pieces shared by scoring (forward.c)
 * and generation (generate.c). Private to model/t5/. */
#ifndef LH_MODEL_T5_FORWARD_H
#define LH_MODEL_T5_FORWARD_H

#include "t5.h"

/* Activations. inner I = n_heads * d_kv. */
typedef struct t5_ws {
    size_t rows;     /* stacked rows x can hold */
    float *x;        /* [rows, D] residual stream */
    float *xn;       /* [rows, D] normed input / sublayer output */
    float *q;        /* [rows, I] */
    float *k;        /* [rows, I] */
    float *v;        /* [rows, I] */
    float *att;      /* [rows, I] attention output */
    float *hb;       /* [rows, F] wi_0 (or wi), then the activation */
    float *hb2;      /* [rows, F] wi_1 (gated only) */
    float *tmp;      /* [max(rows, enc_rows), max_rank] LoRA x A^T */
    float *enc;      /* [enc_rows, D] final-normed encoder output */
    float *ck;       /* [enc_rows, I] cross-attention keys of one decoder layer */
    float *cv;       /* [enc_rows, I] cross-attention values */
    float *scores;   /* [max_q, max_k] one head's attention */
    int *bucket;     /* [2 * (max_q + max_k)] bucket per relative position */
} t5_ws;

/* Sequences of one copy: rows [off[s], off[s] + len[s]) (len may be 0). */
typedef struct t5_seqs {
    size_t n;
    const size_t *off;  /* [n] */
    const size_t *len;  /* [n] */
} t5_seqs;

/* Self-attention cache of one decoded sequence: len positions of cap. */
typedef struct t5_kv {
    size_t len, cap;
    float *k;  /* [dec_layers, cap, I] */
    float *v;  /* [dec_layers, cap, I] */
} t5_kv;

lh_status t5_ws_init(t5_ws *w, const t5_model *m, size_t rows, size_t enc_rows, size_t max_q,
                     size_t max_k, int max_rank, lh_error *err);
void t5_ws_free(t5_ws *w);
lh_status t5_embed(const t5_model *m, const int32_t *ids, size_t n, float *x /* [n, D] */,
                   lh_error *err);

/* y [rows, d_out] = x [rows, d_in] W^T, then each copy's LoRA side path
 * (copy c is rows [c*rows_per, (c+1)*rows_per)) of projection proj of
 * block `layer` of the encoder (dec 0) or decoder (dec 1). */
void t5_linear(t5_ws *w, const float *x, size_t rows, int d_in, const float *W, int d_out,
               float *y, const t5_lora *const *loras, int nc, size_t rows_per, int dec,
               size_t layer, int proj);

/* One encoder block on w->x holding nc copies of rows_per rows. */
void t5_enc_layer(const t5_model *m, t5_ws *w, size_t l, size_t rows_per, int nc,
                  const t5_lora *const *loras, const t5_seqs *sq);
/* encoder.final_layer_norm of rows [n] of w->x into w->enc. */
void t5_enc_final(const t5_model *m, t5_ws *w, size_t n);
/* One decoder block on w->x (nc copies of rows_per rows), attending over
 * ck/cv (nc copies of enc_per rows, sequences esq). With kv (nc == 1, one
 * sequence) the self-attention keys/values are appended to the cache. */
void t5_dec_layer(const t5_model *m, t5_ws *w, size_t l, size_t rows_per, int nc,
                  const t5_lora *const *loras, const t5_seqs *dsq, const float *ck,
                  const float *cv, size_t enc_per, const t5_seqs *esq, t5_kv *kv);
/* Decoder final norm (and the tied d_model^-0.5) and LM head on rows [n]
 * of x: logits [n, vocab]; xn [n, D] scratch. */
void t5_head(const t5_model *m, const float *x, const size_t *rows, size_t n, float *xn,
             float *logits);

#endif

/* model/t5/forward.c - T5's encoder and teacher-forced decoder.
 *
 * As in model/llama/forward.c: the sequences of a batch are packed (no
 * padding: a padded key gets exp(finfo.min) = 0 in Hugging Face, so
 * leaving it out is the same), every linear layer is one sgemm over all
 * tokens, attention runs per sequence and head, and n candidate adapters
 * are stacked as n copies of the activations so every base weight is read
 * once per layer for all of them; each candidate's LoRA side path touches
 * only its own rows. The encoder blocks before the first one any candidate
 * adapts run once and are then replicated.
 *
 * Pair i: the encoder reads src_i; the decoder reads [start] + tgt_i[:-1]
 * (Hugging Face's _shift_right of the labels) and position p is scored on
 * tgt_i[p], the softmax over all vocab rows.
 *
 * LoRA is never merged into W: y = x W^T + scale * (x A^T) B^T. */
#include <cblas.h>
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "forward.h"
#include "model/ops.h"

/* Activation budget per pass: candidates are grouped so that the stacked
 * rows fit, which bounds memory for large models or populations. */
#define T5_ACT_BUDGET ((size_t)256 << 20)
/* Rows of logits computed at once at the LM head. */
#define T5_HEAD_CHUNK 64

enum { ATT_CROSS, ATT_BIDIR, ATT_CAUSAL };

static void *floats(size_t n)
{
    return malloc((n ? n : 1) * sizeof(float));
}

void t5_ws_free(t5_ws *w)
{
    if (!w)
        return;
    float *f[] = {w->x, w->xn, w->q, w->k, w->v, w->att, w->hb, w->hb2, w->tmp, w->enc, w->ck,
                  w->cv, w->scores};
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++)
        free(f[i]);
    free(w->bucket);
    memset(w, 0, sizeof *w);
}

lh_status t5_ws_init(t5_ws *w, const t5_model *m, size_t rows, size_t enc_rows, size_t max_q,
                     size_t max_k, int max_rank, lh_error *err)
{
    memset(w, 0, sizeof *w);
    const t5_config *c = &m->c;
    size_t D = (size_t)c->d_model, NI = (size_t)c->n_heads * c->d_kv, F = (size_t)c->d_ff;
    size_t big = rows > enc_rows ? rows : enc_rows;
    w->rows = rows;
    w->x = floats(rows * D);
    w->xn = floats(rows * D);
    w->q = floats(rows * NI);
    w->k = floats(rows * NI);
    w->v = floats(rows * NI);
    w->att = floats(rows * NI);
    w->hb = floats(rows * F);
    w->hb2 = c->gated ? floats(rows * F) : floats(0);
    w->tmp = floats(big * (size_t)(max_rank > 0 ? max_rank : 1));
    w->enc = floats(enc_rows * D);
    w->ck = floats(enc_rows * NI);
    w->cv = floats(enc_rows * NI);
    w->scores = floats(max_q * max_k);
    w->bucket = malloc(2 * (max_q + max_k + 1) * sizeof *w->bucket);
    if (!w->x || !w->xn || !w->q || !w->k || !w->v || !w->att || !w->hb || !w->hb2 || !w->tmp ||
        !w->enc || !w->ck || !w->cv || !w->scores || !w->bucket) {
        t5_ws_free(w);
        return lh_error_set(err, LH_ERR_NOMEM, "out of memory for activations of %zu tokens",
                            rows + enc_rows);
    }
    return LH_OK;
}

void t5_linear(t5_ws *w, const float *x, size_t rows, int d_in, const float *W, int d_out,
               float *y, const t5_lora *const *loras, int nc, size_t rows_per, int dec,
               size_t layer, int proj)
{
    lh_matmul_wt(x, rows, d_in, W, d_out, y);
    for (int c = 0; c < nc; c++) {
        const t5_lora *lo = loras[c];
        const lh_target *t = lo ? (dec ? lo->dec : lo->enc)[layer * T5_NPROJ + (size_t)proj] : NULL;
        if (t && rows_per > 0)
            lh_lora_side(t, x + (size_t)c * rows_per * (size_t)d_in, rows_per, d_in,
                         y + (size_t)c * rows_per * (size_t)d_out, d_out, w->tmp);
    }
}

/* Attention of Lq queries (at positions P..P+Lq-1) over Lk keys, every
 * head; rows of q, K, V and out have stride I. No 1/sqrt(d_kv): T5 folds
 * it into the initialization. mode picks the position bias and mask. */
static void attend(const t5_model *m, t5_ws *w, const float *q, const float *K, const float *V,
                   size_t Lq, size_t Lk, size_t P, int mode, const float *rel_bias, float *out)
{
    const t5_config *c = &m->c;
    int H = c->n_heads, dk = c->d_kv, NI = H * dk;
    /* bucket[rel + shift] for rel = key - query in [-(P+Lq-1), Lk-1]. */
    size_t shift = P + Lq - 1;
    if (mode != ATT_CROSS)
        for (size_t r = 0; r < shift + Lk; r++)
            w->bucket[r] = t5_bucket((long)r - (long)shift, mode == ATT_BIDIR, c->num_buckets,
                                     c->max_distance);
    float *S = w->scores; /* [Lq, Lk] */
    for (int h = 0; h < H; h++) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)Lq, (int)Lk, dk, 1.0f,
                    q + (size_t)h * dk, NI, K + (size_t)h * dk, NI, 0.0f, S, (int)Lk);
        for (size_t i = 0; i < Lq; i++) {
            float *s = S + i * Lk;
            size_t lim = mode == ATT_CAUSAL ? P + i + 1 : Lk;
            if (mode != ATT_CROSS) {
                const int *bk = w->bucket + shift - (P + i);
                for (size_t j = 0; j < lim; j++)
                    s[j] += rel_bias[(size_t)bk[j] * H + h];
            }
            lh_softmax_prefix(s, lim, Lk);
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)Lq, dk, (int)Lk, 1.0f, S,
                    (int)Lk, V + (size_t)h * dk, NI, 0.0f, out + (size_t)h * dk, NI);
    }
}

/* gelu_new: 0.5 x (1 + tanh(u)), u = sqrt(2/pi) (x + 0.044715 x^3), written
 * as x / (1 + exp(-2u)) (the same function): expf is several times
 * cheaper than tanhf, and this runs on every FFN activation. */
static float gelu_new(float x)
{
    float u2 = 1.5957691216057308f * (x + 0.044715f * x * x * x);
    return x / (1.0f + expf(-u2));
}

/* The feed-forward sublayer of block l, residual included. */
static void ffn(const t5_model *m, t5_ws *w, const t5_stack_w *S, int dec, size_t l,
               size_t rows_per, int nc, const t5_lora *const *loras)
{
    const t5_config *c = &m->c;
    size_t D = (size_t)c->d_model, F = (size_t)c->d_ff, rows = rows_per * (size_t)nc;
    lh_rms_norm(w->xn, w->x, S->ffn.ln + l * D, rows, D, c->eps);
    t5_linear(w, w->xn, rows, (int)D, S->ffn.wi0 + l * F * D, (int)F, w->hb, loras, nc, rows_per,
              dec, l, T5_WI0);
    if (c->gated) {
        t5_linear(w, w->xn, rows, (int)D, S->ffn.wi1 + l * F * D, (int)F, w->hb2, loras, nc,
                  rows_per, dec, l, T5_WI1);
        for (size_t i = 0; i < rows * F; i++)
            w->hb[i] = gelu_new(w->hb[i]) * w->hb2[i];
    } else {
        for (size_t i = 0; i < rows * F; i++)
            w->hb[i] = w->hb[i] > 0.0f ? w->hb[i] : 0.0f;
    }
    t5_linear(w, w->hb, rows, (int)F, S->ffn.wo + l * D * F, (int)D, w->xn, loras, nc, rows_per,
              dec, l, T5_WO);
    for (size_t i = 0; i < rows * D; i++)
        w->x[i] += w->xn[i];
}

/* Output projection (first of proj's o) of w->att into xn, residual add. */
static void attn_out(const t5_model *m, t5_ws *w, const t5_attn_w *A, int dec, size_t l,
                     size_t rows_per, int nc, const t5_lora *const *loras, int proj)
{
    size_t D = (size_t)m->c.d_model, NI = (size_t)m->c.n_heads * m->c.d_kv;
    size_t rows = rows_per * (size_t)nc;
    t5_linear(w, w->att, rows, (int)NI, A->o + l * D * NI, (int)D, w->xn, loras, nc, rows_per, dec,
              l, proj);
    for (size_t i = 0; i < rows * D; i++)
        w->x[i] += w->xn[i];
}

/* Norm and q (and k, v when kv_too) of an attention sublayer. */
static void attn_in(const t5_model *m, t5_ws *w, const t5_attn_w *A, int dec, size_t l,
                    size_t rows_per, int nc, const t5_lora *const *loras, int proj_q, int kv_too)
{
    const t5_config *c = &m->c;
    size_t D = (size_t)c->d_model, NI = (size_t)c->n_heads * c->d_kv;
    size_t rows = rows_per * (size_t)nc;
    lh_rms_norm(w->xn, w->x, A->ln + l * D, rows, D, c->eps);
    t5_linear(w, w->xn, rows, (int)D, A->q + l * NI * D, (int)NI, w->q, loras, nc, rows_per, dec, l,
              proj_q);
    if (!kv_too)
        return;
    t5_linear(w, w->xn, rows, (int)D, A->k + l * NI * D, (int)NI, w->k, loras, nc, rows_per, dec, l,
              proj_q + 1);
    t5_linear(w, w->xn, rows, (int)D, A->v + l * NI * D, (int)NI, w->v, loras, nc, rows_per, dec, l,
              proj_q + 2);
}

void t5_enc_layer(const t5_model *m, t5_ws *w, size_t l, size_t rows_per, int nc,
                  const t5_lora *const *loras, const t5_seqs *sq)
{
    const t5_stack_w *S = &m->w.enc;
    size_t NI = (size_t)m->c.n_heads * m->c.d_kv;
    attn_in(m, w, &S->self, 0, l, rows_per, nc, loras, T5_SQ, 1);
    for (int cc = 0; cc < nc; cc++)
        for (size_t s = 0; s < sq->n; s++) {
            size_t off = ((size_t)cc * rows_per + sq->off[s]) * NI, L = sq->len[s];
            if (L)
                attend(m, w, w->q + off, w->k + off, w->v + off, L, L, 0, ATT_BIDIR, S->rel_bias,
                       w->att + off);
        }
    attn_out(m, w, &S->self, 0, l, rows_per, nc, loras, T5_SO);
    ffn(m, w, S, 0, l, rows_per, nc, loras);
}

void t5_enc_final(const t5_model *m, t5_ws *w, size_t n)
{
    lh_rms_norm(w->enc, w->x, m->w.enc.final_ln, n, (size_t)m->c.d_model, m->c.eps);
}

void t5_dec_layer(const t5_model *m, t5_ws *w, size_t l, size_t rows_per, int nc,
                  const t5_lora *const *loras, const t5_seqs *dsq, const float *ck,
                  const float *cv, size_t enc_per, const t5_seqs *esq, t5_kv *kv)
{
    const t5_stack_w *S = &m->w.dec;
    size_t NI = (size_t)m->c.n_heads * m->c.d_kv;
    attn_in(m, w, &S->self, 1, l, rows_per, nc, loras, T5_SQ, 1);
    for (int cc = 0; cc < nc; cc++)
        for (size_t s = 0; s < dsq->n; s++) {
            size_t off = ((size_t)cc * rows_per + dsq->off[s]) * NI, L = dsq->len[s];
            size_t P = kv ? kv->len : 0;
            const float *K = w->k + off, *V = w->v + off;
            if (!L)
                continue;
            if (kv) {
                /* Append this step's keys/values to the cache, attend over all. */
                float *kc = kv->k + l * kv->cap * NI, *vc = kv->v + l * kv->cap * NI;
                memcpy(kc + P * NI, K, L * NI * sizeof(float));
                memcpy(vc + P * NI, V, L * NI * sizeof(float));
                K = kc;
                V = vc;
            }
            attend(m, w, w->q + off, K, V, L, P + L, P, ATT_CAUSAL, S->rel_bias, w->att + off);
        }
    attn_out(m, w, &S->self, 1, l, rows_per, nc, loras, T5_SO);

    attn_in(m, w, &S->cross, 1, l, rows_per, nc, loras, T5_CQ, 0);
    for (int cc = 0; cc < nc; cc++)
        for (size_t s = 0; s < dsq->n; s++) {
            size_t off = ((size_t)cc * rows_per + dsq->off[s]) * NI, L = dsq->len[s];
            size_t eoff = ((size_t)cc * enc_per + esq->off[s]) * NI;
            if (L)
                attend(m, w, w->q + off, ck + eoff, cv + eoff, L, esq->len[s], 0, ATT_CROSS, NULL,
                       w->att + off);
        }
    attn_out(m, w, &S->cross, 1, l, rows_per, nc, loras, T5_CO);
    ffn(m, w, S, 1, l, rows_per, nc, loras);
}

lh_status t5_embed(const t5_model *m, const int32_t *ids, size_t n, float *x, lh_error *err)
{
    return lh_embed_rows(m->w.embed, (size_t)m->c.d_model, m->c.vocab, ids, n, x, err);
}

void t5_head(const t5_model *m, const float *x, const size_t *rows, size_t n, float *xn,
             float *logits)
{
    size_t D = (size_t)m->c.d_model;
    for (size_t i = 0; i < n; i++)
        lh_rms_norm(xn + i * D, x + rows[i] * D, m->w.dec.final_ln, 1, D, m->c.eps);
    /* A tied head rescales the decoder output by d_model^-0.5 (Mesh TF). */
    if (m->c.tie_embeddings) {
        float sc = (float)(1.0 / sqrt((double)D));
        for (size_t i = 0; i < n * D; i++)
            xn[i] *= sc;
    }
    if (n == 1)
        cblas_sgemv(CblasRowMajor, CblasNoTrans, m->c.vocab, (int)D, 1.0f, m->w.lm_head, (int)D,
                    xn, 1, 0.0f, logits, 1);
    else
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, m->c.vocab, (int)D, 1.0f, xn,
                    (int)D, m->w.lm_head, (int)D, 0.0f, logits, m->c.vocab);
}

/* A batch packed: the encoder's and the decoder's rows of one copy. */
typedef struct packed {
    size_t n;
    size_t *eoff, *elen;  /* [n] encoder rows of each pair */
    size_t *doff, *dlen;  /* [n] decoder rows */
    int32_t *src;         /* [Te] */
    int32_t *dec_in;      /* [Td] [start] + tgt[:-1] per pair */
    int32_t *labels;      /* [Td] tgt per pair */
    size_t Te, Td, max_e, max_d;
    t5_seqs esq, dsq;
} packed;

static void packed_release(packed *p)
{
    free(p->eoff);
    free(p->elen);
    free(p->doff);
    free(p->dlen);
    free(p->src);
    free(p->dec_in);
    free(p->labels);
}

static lh_status pack(const t5_model *m, const t5_batch *b, packed *p, lh_error *err)
{
    memset(p, 0, sizeof *p);
    size_t n = b->n;
    p->n = n;
    for (size_t i = 0; i < n; i++) {
        if (b->n_src[i] == 0 || b->n_src[i] > INT32_MAX / 4 || b->n_tgt[i] > INT32_MAX / 4)
            return lh_error_set(err, LH_ERR_ARG,
                                "pair %zu has %zu input and %zu output tokens (T5's encoder needs "
                                "1 or more)", i, b->n_src[i], b->n_tgt[i]);
        p->Te += b->n_src[i];
        p->Td += b->n_tgt[i];
        p->max_e = b->n_src[i] > p->max_e ? b->n_src[i] : p->max_e;
        p->max_d = b->n_tgt[i] > p->max_d ? b->n_tgt[i] : p->max_d;
    }
    size_t nn = n ? n : 1;
    p->eoff = malloc(nn * sizeof *p->eoff);
    p->elen = malloc(nn * sizeof *p->elen);
    p->doff = malloc(nn * sizeof *p->doff);
    p->dlen = malloc(nn * sizeof *p->dlen);
    p->src = malloc((p->Te ? p->Te : 1) * sizeof *p->src);
    p->dec_in = malloc((p->Td ? p->Td : 1) * sizeof *p->dec_in);
    p->labels = malloc((p->Td ? p->Td : 1) * sizeof *p->labels);
    if (!p->eoff || !p->elen || !p->doff || !p->dlen || !p->src || !p->dec_in || !p->labels) {
        packed_release(p);
        return lh_error_set(err, LH_ERR_NOMEM, "out of memory");
    }
    size_t e = 0, d = 0;
    for (size_t i = 0; i < n; i++) {
        p->eoff[i] = e;
        p->elen[i] = b->n_src[i];
        memcpy(p->src + e, b->src[i], b->n_src[i] * sizeof *p->src);
        e += b->n_src[i];
        p->doff[i] = d;
        p->dlen[i] = b->n_tgt[i];
        for (size_t k = 0; k < b->n_tgt[i]; k++) {
            /* The last target id is a label only, never embedded: check it here. */
            if (b->tgt[i][k] < 0 || b->tgt[i][k] >= m->c.vocab) {
                int bad = (int)b->tgt[i][k];
                packed_release(p);
                return lh_error_set(err, LH_ERR_ARG,
                                    "pair %zu: target token id %d at position %zu is outside "
                                    "[0, %d)", i, bad, k, m->c.vocab);
            }
            p->dec_in[d + k] = k ? b->tgt[i][k - 1] : m->c.start_id;
            p->labels[d + k] = b->tgt[i][k];
        }
        d += b->n_tgt[i];
    }
    p->esq = (t5_seqs){n, p->eoff, p->elen};
    p->dsq = (t5_seqs){n, p->doff, p->dlen};
    return LH_OK;
}

static lh_status interrupted(const t5_batch *b, lh_error *err)
{
    if (b->stop && *b->stop)
        return lh_error_set(err, LH_ERR_INTERRUPTED, "interrupted");
    return LH_OK;
}

/* Encoder then decoder for nc candidates: the decoder's last hidden
 * states end in w->x ([nc * Td, D]). w is sized for nc copies of p. */
static lh_status run_pass(const t5_model *m, const t5_batch *b, const packed *p, t5_ws *w,
                          const t5_lora *const *lp, int nc, lh_error *err)
{
    const t5_config *c = &m->c;
    size_t D = (size_t)c->d_model, NI = (size_t)c->n_heads * c->d_kv;
    size_t Te = p->Te, Td = p->Td;
    int first = c->n_enc_layers;
    for (int i = 0; i < nc; i++)
        if (lp[i] && lp[i]->first_enc < first)
            first = lp[i]->first_enc;
    lh_status s = t5_embed(m, p->src, Te, w->x, err);
    if (s)
        return s;
    /* The shared prefix: no candidate adapts these encoder blocks. */
    for (int l = 0; l < first && !(s = interrupted(b, err)); l++)
        t5_enc_layer(m, w, (size_t)l, Te, 1, lp, &p->esq);
    for (int i = 1; i < nc && !s; i++)
        memcpy(w->x + (size_t)i * Te * D, w->x, Te * D * sizeof(float));
    for (int l = first; l < c->n_enc_layers && !s; l++)
        if (!(s = interrupted(b, err)))
            t5_enc_layer(m, w, (size_t)l, Te, nc, lp, &p->esq);
    if (s)
        return s;
    t5_enc_final(m, w, (size_t)nc * Te);
    if ((s = t5_embed(m, p->dec_in, Td, w->x, err)))
        return s;
    for (int i = 1; i < nc; i++)
        memcpy(w->x + (size_t)i * Td * D, w->x, Td * D * sizeof(float));
    const t5_attn_w *X = &m->w.dec.cross;
    for (size_t l = 0; l < (size_t)c->n_dec_layers; l++) {
        if ((s = interrupted(b, err)))
            return s;
        t5_linear(w, w->enc, (size_t)nc * Te, (int)D, X->k + l * NI * D, (int)NI, w->ck, lp, nc, Te,
                  1, l, T5_CK);
        t5_linear(w, w->enc, (size_t)nc * Te, (int)D, X->v + l * NI * D, (int)NI, w->cv, lp, nc, Te,
                  1, l, T5_CV);
        t5_dec_layer(m, w, l, Td, nc, lp, &p->dsq, w->ck, w->cv, Te, &p->esq, NULL);
    }
    return LH_OK;
}

static int max_rank_of(const lh_adapter *const *cands, int n)
{
    int r = 0;
    for (int i = 0; i < n; i++)
        if (cands[i] && lh_adapter_max_rank(cands[i]) > r)
            r = lh_adapter_max_rank(cands[i]);
    return r;
}

static lh_status ws_for(const t5_model *m, const packed *p, int nc, int max_rank, t5_ws *w,
                        lh_error *err)
{
    size_t rows = (p->Te > p->Td ? p->Te : p->Td) * (size_t)nc;
    size_t mq = p->max_e > p->max_d ? p->max_e : p->max_d;
    return t5_ws_init(w, m, rows, p->Te * (size_t)nc, mq, mq, max_rank, err);
}

lh_status t5_forward_logits(const t5_model *m, const t5_batch *b, const lh_adapter *a,
                            float *logits, lh_error *err)
{
    packed p;
    lh_status s = pack(m, b, &p, err);
    if (s)
        return s;
    t5_lora lora = {0};
    t5_ws w = {0};
    size_t *rows = malloc((p.Td ? p.Td : 1) * sizeof *rows);
    const t5_lora *lp = &lora;
    if (!rows)
        s = lh_error_set(err, LH_ERR_NOMEM, "out of memory");
    if (!s && !(s = t5_lora_bind(m, a, &lora, err)) &&
        !(s = ws_for(m, &p, 1, a ? lh_adapter_max_rank(a) : 0, &w, err)) &&
        !(s = run_pass(m, b, &p, &w, &lp, 1, err))) {
        for (size_t i = 0; i < p.Td; i++)
            rows[i] = i;
        if (p.Td)
            t5_head(m, w.x, rows, p.Td, w.xn, logits);
    }
    free(rows);
    t5_ws_free(&w);
    t5_lora_release(&lora);
    packed_release(&p);
    return s;
}

/* Score candidates [0, nc) of loras with stacked activations. */
static lh_status score_group(const t5_model *m, const t5_batch *b, const packed *p,
                             const t5_lora *loras, int nc, int max_rank, double *nll,
                             lh_error *err)
{
    size_t D = (size_t)m->c.d_model, V = (size_t)m->c.vocab;
    t5_ws w;
    lh_status s = ws_for(m, p, nc, max_rank, &w, err);
    if (s)
        return s;
    const t5_lora **lp = malloc((size_t)nc * sizeof *lp);
    float *logits = floats(T5_HEAD_CHUNK * V);
    float *hx = floats(T5_HEAD_CHUNK * D);
    size_t *rows = malloc(T5_HEAD_CHUNK * sizeof *rows);
    if (!lp || !logits || !hx || !rows) {
        s = lh_error_set(err, LH_ERR_NOMEM, "out of memory");
        goto out;
    }
    for (int i = 0; i < nc; i++)
        lp[i] = &loras[i];
    if ((s = run_pass(m, b, p, &w, lp, nc, err)))
        goto out;
    for (int i = 0; i < nc; i++) {
        double sum = 0.0;
        for (size_t k0 = 0; k0 < p->Td; k0 += T5_HEAD_CHUNK) {
            size_t n = p->Td - k0 < T5_HEAD_CHUNK ? p->Td - k0 : T5_HEAD_CHUNK;
            for (size_t k = 0; k < n; k++)
                rows[k] = (size_t)i * p->Td + k0 + k;
            t5_head(m, w.x, rows, n, hx, logits);
            for (size_t k = 0; k < n; k++)
                sum += lh_token_nll(logits + k * V, V, p->labels[k0 + k]);
        }
        /* A non-finite sum (NaN weights) is this candidate's answer. */
        nll[i] = sum;
    }
out:
    free(lp);
    free(logits);
    free(hx);
    free(rows);
    t5_ws_free(&w);
    return s;
}

lh_status t5_score_batch(const t5_model *m, const t5_batch *b, const lh_adapter *const *cands,
                         int n, int batched, double *nll, size_t *n_tokens, lh_error *err)
{
    if (n <= 0)
        return lh_error_set(err, LH_ERR_ARG, "nothing to score");
    packed p;
    lh_status s = pack(m, b, &p, err);
    if (s)
        return s;
    t5_lora *loras = calloc((size_t)n, sizeof *loras);
    if (!loras) {
        s = lh_error_set(err, LH_ERR_NOMEM, "out of memory");
        goto out;
    }
    if (p.Td == 0) {
        s = lh_error_set(err, LH_ERR_ARG, "no output tokens to score");
        goto out;
    }
    for (int i = 0; i < n && !s; i++)
        s = t5_lora_bind(m, cands[i], &loras[i], err);
    if (s)
        goto out;
    int max_rank = max_rank_of(cands, n);
    /* Group size: stacked activations within the budget. */
    const t5_config *c = &m->c;
    size_t NI = (size_t)c->n_heads * c->d_kv, D = (size_t)c->d_model, F = (size_t)c->d_ff;
    size_t big = p.Te > p.Td ? p.Te : p.Td;
    size_t per_copy = big * (2 * D + 4 * NI + 2 * F + (size_t)max_rank) + p.Te * (D + 2 * NI);
    size_t cap = T5_ACT_BUDGET / (per_copy * sizeof(float));
    int group = batched ? (int)(cap < 1 ? 1 : cap > (size_t)n ? (size_t)n : cap) : 1;
    for (int i = 0; i < n && !s; i += group) {
        int nc = n - i < group ? n - i : group;
        s = score_group(m, b, &p, loras + i, nc, max_rank, nll + i, err);
    }
    *n_tokens = p.Td;
out:
    if (loras)
        for (int i = 0; i < n; i++)
            t5_lora_release(&loras[i]);
    free(loras);
    packed_release(&p);
    return s;
}

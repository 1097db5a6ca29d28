/* model/llama/forward.c - the decoder's forward pass.
 *
 * All sequences of a batch are packed into one activation matrix [T, dim]
 * so every linear layer is one sgemm over all tokens; attention runs per
 * sequence and head with its own causal mask. Several candidate adapters
 * are evaluated together by stacking n copies of the activations
 * ([n*T, dim]): every base weight is then read once per layer for all of
 * them, and each candidate's LoRA side path touches only its own T rows.
 * Before the first layer any candidate adapts, the copies would be
 * identical, so that prefix runs once on T rows and is then replicated.
 *
 * LoRA is never merged into W: y = x W^T + b + scale * (x A^T) B^T. */
#include <cblas.h>
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "forward.h"
#include "model/ops.h"
#include "lib/sysmem.h"

/* Activation budget per pass: candidates are grouped so that the stacked
 * rows fit, which bounds memory for large models or populations. */
#define NM_ACT_BUDGET ((size_t)256 << 20)
/* Rows of logits computed at once at the LM head. */
#define NM_HEAD_CHUNK 128

static void *xmalloc_floats(size_t n)
{
    return malloc((n ? n : 1) * sizeof(float));
}

void nm_ws_free(nm_ws *w)
{
    if (!w)
        return;
    free(w->x);
    free(w->xn);
    free(w->q);
    free(w->k);
    free(w->v);
    free(w->att);
    free(w->hb);
    free(w->hb2);
    free(w->tmp);
    free(w->scores);
    free(w->cos);
    free(w->sin);
    memset(w, 0, sizeof *w);
}

lh_status nm_ws_init(nm_ws *w, const nm_model *m, size_t rows, size_t max_len, size_t max_ctx,
                     int max_rank, lh_error *err)
{
    memset(w, 0, sizeof *w);
    const nm_config *c = &m->c;
    size_t D = (size_t)c->dim, H = (size_t)c->hidden;
    size_t Q = (size_t)c->n_heads * c->head_dim, KV = (size_t)c->n_kv_heads * c->head_dim;
    size_t half = (size_t)c->head_dim / 2;
    if (max_ctx < max_len)
        max_ctx = max_len;
    w->rows = rows;
    w->x = xmalloc_floats(rows * D);
    w->xn = xmalloc_floats(rows * D);
    w->q = xmalloc_floats(rows * Q);
    w->k = xmalloc_floats(rows * KV);
    w->v = xmalloc_floats(rows * KV);
    w->att = xmalloc_floats(rows * Q);
    w->hb = xmalloc_floats(rows * H);
    w->hb2 = xmalloc_floats(rows * H);
    w->tmp = xmalloc_floats(rows * (size_t)(max_rank > 0 ? max_rank : 1));
    w->scores = xmalloc_floats(max_len * max_ctx);
    w->cos = xmalloc_floats(max_ctx * half);
    w->sin = xmalloc_floats(max_ctx * half);
    if (!w->x || !w->xn || !w->q || !w->k || !w->v || !w->att || !w->hb || !w->hb2 || !w->tmp ||
        !w->scores || !w->cos || !w->sin) {
        nm_ws_free(w);
        return lh_error_set(err, LH_ERR_NOMEM, "out of memory for activations of %zu tokens",
                            rows);
    }
    /* As HF: freqs = inv_freq (f32) * position (f32), cos/sin in f32. */
    for (size_t p = 0; p < max_ctx; p++)
        for (size_t i = 0; i < half; i++) {
            float f = (float)p * m->inv_freq[i];
            w->cos[p * half + i] = cosf(f);
            w->sin[p * half + i] = sinf(f);
        }
    w->max_ctx = max_ctx;
    return LH_OK;
}

/* y [rows, d_out] = x [rows, d_in] W^T (+ b), then each candidate's side
 * path on its block of rows_per rows. */
static void linear(nm_ws *w, const float *x, size_t rows, int d_in, const float *W,
                   const float *b, int d_out, float *y, const nm_lora *const *loras, int nc,
                   size_t rows_per, size_t layer, int proj)
{
    lh_matmul_wt(x, rows, d_in, W, d_out, y);
    if (b)
        for (size_t r = 0; r < rows; r++) {
            float *yr = y + r * (size_t)d_out;
            for (int i = 0; i < d_out; i++)
                yr[i] += b[i];
        }
    for (int c = 0; c < nc; c++) {
        const lh_target *t = loras[c] ? loras[c]->t[layer * NM_NPROJ + (size_t)proj] : NULL;
        if (t)
            lh_lora_side(t, x + (size_t)c * rows_per * (size_t)d_in, rows_per, d_in,
                         y + (size_t)c * rows_per * (size_t)d_out, d_out, w->tmp);
    }
}

/* HF rotate-half RoPE on every head of rows [n, n_heads*head_dim] at positions pos0.. */
static void rope(const nm_ws *w, float *x, size_t n, int n_heads, int hd, size_t pos0)
{
    size_t half = (size_t)hd / 2, stride = (size_t)n_heads * hd;
    for (size_t i = 0; i < n; i++) {
        const float *cs = w->cos + (pos0 + i) * half, *sn = w->sin + (pos0 + i) * half;
        for (int h = 0; h < n_heads; h++) {
            float *v = x + i * stride + (size_t)h * hd;
            for (size_t j = 0; j < half; j++) {
                float a = v[j], b = v[j + half];
                v[j] = a * cs[j] - b * sn[j];
                v[j + half] = b * cs[j] + a * sn[j];
            }
        }
    }
}

/* Causal attention of L queries (at positions P..P+L-1) over keys/values
 * [P+L] rows; q/out rows have stride Q, K/V rows stride KV. */
static void attend(const nm_model *m, nm_ws *w, const float *q, const float *K, const float *V,
                   size_t P, size_t L, float *out)
{
    const nm_config *c = &m->c;
    int hd = c->head_dim, Q = c->n_heads * hd, KVd = c->n_kv_heads * hd;
    int group = c->n_heads / c->n_kv_heads;
    size_t ctx = P + L;
    float scale = 1.0f / sqrtf((float)hd);
    for (int h = 0; h < c->n_heads; h++) {
        int kh = h / group;
        float *S = w->scores; /* [L, ctx] */
        if (L == 1) {
            /* A decoding step: plain loops beat two tiny GEMM calls per head. */
            const float *qh = q + (size_t)h * hd;
            float mx = -FLT_MAX, sum = 0.0f;
            for (size_t j = 0; j < ctx; j++) {
                const float *kj = K + j * (size_t)KVd + (size_t)kh * hd;
                float d = 0.0f;
                for (int i = 0; i < hd; i++)
                    d += qh[i] * kj[i];
                S[j] = d * scale;
                if (S[j] > mx)
                    mx = S[j];
            }
            for (size_t j = 0; j < ctx; j++) {
                S[j] = expf(S[j] - mx);
                sum += S[j];
            }
            float *oh = out + (size_t)h * hd;
            for (int i = 0; i < hd; i++)
                oh[i] = 0.0f;
            for (size_t j = 0; j < ctx; j++) {
                const float *vj = V + j * (size_t)KVd + (size_t)kh * hd;
                float p = S[j] / sum;
                for (int i = 0; i < hd; i++)
                    oh[i] += p * vj[i];
            }
            continue;
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)L, (int)ctx, hd, scale,
                    q + (size_t)h * hd, Q, K + (size_t)kh * hd, KVd, 0.0f, S, (int)ctx);
        for (size_t i = 0; i < L; i++) {
            float *s = S + i * ctx;
            size_t lim = P + i + 1; /* keys 0..P+i are visible */
            lh_softmax_prefix(s, lim, ctx);
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)L, hd, (int)ctx, 1.0f, S,
                    (int)ctx, V + (size_t)kh * hd, KVd, 0.0f, out + (size_t)h * hd, Q);
    }
}

void nm_layer(const nm_model *m, nm_ws *w, size_t l, size_t rows_per, int nc,
              const nm_lora *const *loras, const nm_seqs *sq, nm_kv *kv)
{
    const nm_config *c = &m->c;
    const nm_weights *W = &m->w;
    size_t D = (size_t)c->dim, H = (size_t)c->hidden;
    size_t Q = (size_t)c->n_heads * c->head_dim, KV = (size_t)c->n_kv_heads * c->head_dim;
    size_t rows = rows_per * (size_t)nc;

    lh_rms_norm(w->xn, w->x, W->rms_att + l * D, rows, D, c->norm_eps);
    linear(w, w->xn, rows, (int)D, W->wq + l * Q * D, W->bq ? W->bq + l * Q : NULL, (int)Q, w->q,
           loras, nc, rows_per, l, NM_Q);
    linear(w, w->xn, rows, (int)D, W->wk + l * KV * D, W->bk ? W->bk + l * KV : NULL, (int)KV,
           w->k, loras, nc, rows_per, l, NM_K);
    linear(w, w->xn, rows, (int)D, W->wv + l * KV * D, W->bv ? W->bv + l * KV : NULL, (int)KV,
           w->v, loras, nc, rows_per, l, NM_V);
    for (int cc = 0; cc < nc; cc++)
        for (size_t s = 0; s < sq->n; s++) {
            size_t off = (size_t)cc * rows_per + sq->off[s], L = sq->len[s];
            size_t P = kv ? kv->len : 0;
            rope(w, w->q + off * Q, L, c->n_heads, c->head_dim, P);
            rope(w, w->k + off * KV, L, c->n_kv_heads, c->head_dim, P);
            const float *K = w->k + off * KV, *V = w->v + off * KV;
            if (kv) {
                /* Append this step's keys/values to the cache, attend over all. */
                float *kc = kv->k + l * kv->cap * KV, *vc = kv->v + l * kv->cap * KV;
                memcpy(kc + P * KV, K, L * KV * sizeof(float));
                memcpy(vc + P * KV, V, L * KV * sizeof(float));
                K = kc;
                V = vc;
            }
            attend(m, w, w->q + off * Q, K, V, P, L, w->att + off * Q);
        }
    /* o_proj writes into xn (free now), then the residual add. */
    linear(w, w->att, rows, (int)Q, W->wo + l * D * Q, W->bo ? W->bo + l * D : NULL, (int)D,
           w->xn, loras, nc, rows_per, l, NM_O);
    for (size_t i = 0; i < rows * D; i++)
        w->x[i] += w->xn[i];

    lh_rms_norm(w->xn, w->x, W->rms_ffn + l * D, rows, D, c->norm_eps);
    linear(w, w->xn, rows, (int)D, W->w_gate + l * H * D, NULL, (int)H, w->hb, loras, nc,
           rows_per, l, NM_GATE);
    linear(w, w->xn, rows, (int)D, W->w_up + l * H * D, NULL, (int)H, w->hb2, loras, nc, rows_per,
           l, NM_UP);
    for (size_t i = 0; i < rows * H; i++) {
        float g = w->hb[i];
        w->hb[i] = g / (1.0f + expf(-g)) * w->hb2[i];
    }
    linear(w, w->hb, rows, (int)H, W->w_down + l * D * H, NULL, (int)D, w->xn, loras, nc,
           rows_per, l, NM_DOWN);
    for (size_t i = 0; i < rows * D; i++)
        w->x[i] += w->xn[i];
}

lh_status nm_embed(const nm_model *m, const int32_t *ids, size_t n, float *x, lh_error *err)
{
    return lh_embed_rows(m->w.embed, (size_t)m->c.dim, m->c.vocab, ids, n, x, err);
}

/* Final norm + LM head on the given rows of x: logits [n, vocab]. */
void nm_head(const nm_model *m, const float *x, const size_t *rows, size_t n, float *xn,
             float *logits)
{
    size_t D = (size_t)m->c.dim;
    for (size_t i = 0; i < n; i++)
        lh_rms_norm(xn + i * D, x + rows[i] * D, m->w.rms_final, 1, D, m->c.norm_eps);
    if (n == 1)
        cblas_sgemv(CblasRowMajor, CblasNoTrans, m->c.vocab, (int)D, 1.0f, m->w.lm_head, (int)D, xn,
                    1, 0.0f, logits, 1);
    else
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, m->c.vocab, (int)D, 1.0f, xn,
                    (int)D, m->w.lm_head, (int)D, 0.0f, logits, m->c.vocab);
}

static lh_status check_batch(const nm_model *m, const nm_batch *b, nm_seqs *sq, size_t *T,
                             size_t *max_len, lh_error *err)
{
    size_t t = 0, mx = 0;
    sq->n = b->n_seq;
    sq->len = b->len;
    sq->off = malloc((b->n_seq ? b->n_seq : 1) * sizeof *sq->off);
    if (!sq->off)
        return lh_error_set(err, LH_ERR_NOMEM, "out of memory");
    for (size_t s = 0; s < b->n_seq; s++) {
        if (b->len[s] == 0 || b->len[s] > INT32_MAX / 4 || t > SIZE_MAX / 2) {
            free(sq->off);
            return lh_error_set(err, LH_ERR_ARG, "sequence %zu has length %zu", s, b->len[s]);
        }
        if (m->c.sliding_window && b->len[s] > (size_t)m->c.sliding_window) {
            free(sq->off);
            return lh_error_set(err, LH_ERR_UNSUPPORTED,
                                "sequence %zu has %zu tokens, more than the config's "
                                "sliding_window %d (sliding-window attention is not implemented)",
                                s, b->len[s], m->c.sliding_window);
        }
        sq->off[s] = t;
        t += b->len[s];
        if (b->len[s] > mx)
            mx = b->len[s];
    }
    *T = t;
    *max_len = mx;
    return LH_OK;
}

lh_status nm_forward_logits(const nm_model *m, const nm_batch *b, const lh_adapter *a,
                            float *logits, lh_error *err)
{
    nm_seqs sq;
    size_t T, mx;
    lh_status s = check_batch(m, b, &sq, &T, &mx, err);
    if (s)
        return s;
    nm_lora lora = {0};
    nm_ws w;
    size_t *rows = NULL;
    if ((s = nm_lora_bind(m, a, &lora, err))) {
        free(sq.off);
        return s;
    }
    if ((s = nm_ws_init(&w, m, T, mx, mx, a ? lh_adapter_max_rank(a) : 0, err))) {
        nm_lora_release(&lora);
        free(sq.off);
        return s;
    }
    const nm_lora *lp = &lora;
    if (!(s = nm_embed(m, b->ids, T, w.x, err))) {
        for (size_t l = 0; l < (size_t)m->c.n_layers; l++)
            nm_layer(m, &w, l, T, 1, &lp, &sq, NULL);
        rows = malloc(T * sizeof *rows);
        if (!rows) {
            s = lh_error_set(err, LH_ERR_NOMEM, "out of memory");
        } else {
            for (size_t i = 0; i < T; i++)
                rows[i] = i;
            nm_head(m, w.x, rows, T, w.xn, logits);
        }
    }
    free(rows);
    nm_ws_free(&w);
    nm_lora_release(&lora);
    free(sq.off);
    return s;
}

/* One scored position: activation row (within one copy) and target token. */
typedef struct scored {
    size_t row;
    int32_t target;
} scored;

/* Score candidates [c0, c0+nc) with stacked activations. */
static lh_status score_group(const nm_model *m, const nm_batch *b, const nm_seqs *sq, size_t T,
                             size_t mx, const nm_lora *loras, int nc, int max_rank,
                             const scored *sc, size_t n_sc, double *nll, lh_error *err)
{
    const nm_config *c = &m->c;
    size_t D = (size_t)c->dim, V = (size_t)c->vocab;
    int first = c->n_layers;
    for (int i = 0; i < nc; i++)
        if (loras[i].first_layer < first)
            first = loras[i].first_layer;
    nm_ws w;
    lh_status s = nm_ws_init(&w, m, T * (size_t)nc, mx, mx, max_rank, err);
    if (s)
        return s;
    const nm_lora **lp = malloc((size_t)nc * sizeof *lp);
    float *logits = xmalloc_floats(NM_HEAD_CHUNK * V);
    float *hx = xmalloc_floats(NM_HEAD_CHUNK * D);
    size_t *rows = malloc(NM_HEAD_CHUNK * sizeof *rows);
    if (!lp || !logits || !hx || !rows) {
        s = lh_error_set(err, LH_ERR_NOMEM, "out of memory");
        goto out;
    }
    for (int i = 0; i < nc; i++)
        lp[i] = &loras[i];
    if ((s = nm_embed(m, b->ids, T, w.x, err)))
        goto out;
    /* The shared prefix: no candidate adapts these layers. */
    for (int l = 0; l < first; l++)
        nm_layer(m, &w, (size_t)l, T, 1, lp, sq, NULL);
    for (int i = 1; i < nc; i++)
        memcpy(w.x + (size_t)i * T * D, w.x, T * D * sizeof(float));
    for (int l = first; l < c->n_layers; l++) {
        if (b->stop && *b->stop) {
            s = lh_error_set(err, LH_ERR_INTERRUPTED, "interrupted");
            goto out;
        }
        nm_layer(m, &w, (size_t)l, T, nc, lp, sq, NULL);
    }
    for (int i = 0; i < nc; i++) {
        double sum = 0.0;
        for (size_t k0 = 0; k0 < n_sc; k0 += NM_HEAD_CHUNK) {
            size_t n = n_sc - k0 < NM_HEAD_CHUNK ? n_sc - k0 : NM_HEAD_CHUNK;
            for (size_t k = 0; k < n; k++)
                rows[k] = (size_t)i * T + sc[k0 + k].row;
            nm_head(m, w.x, rows, n, hx, logits);
            for (size_t k = 0; k < n; k++) {
                const float *lg = logits + k * V;
                sum += lh_token_nll(lg, V, sc[k0 + k].target);
            }
        }
        /* A non-finite sum (NaN weights) is this candidate's answer, not
         * an error: its rows are its own, so the others stay exact. */
        nll[i] = sum;
    }
out:
    free(lp);
    free(logits);
    free(hx);
    free(rows);
    nm_ws_free(&w);
    return s;
}

/* The least scoring can allocate, one candidate at a time: activations of
 * T rows, the attention scores of the longest sequence (quadratic in it),
 * the rotary tables, a chunk of logits. A run that cannot fit is refused
 * up front (a 100k-token example once took about 10 GB before failing). */
static lh_status check_memory(const nm_model *m, size_t T, size_t mx, int max_rank,
                              lh_error *err)
{
    const nm_config *c = &m->c;
    double per_row = (double)c->dim * 2 + (double)c->n_heads * c->head_dim * 2 +
                     (double)c->n_kv_heads * c->head_dim * 2 + (double)c->hidden * 2 + max_rank;
    double floats = per_row * (double)T + (double)mx * (double)mx + (double)mx * c->head_dim +
                    (double)NM_HEAD_CHUNK * ((double)c->vocab + c->dim);
    double need = floats * sizeof(float);
    uint64_t avail = lh_mem_available();
    if (!avail || need <= (double)avail)
        return LH_OK;
    int gb = need >= 1e9;
    return lh_error_set(err, LH_ERR_NOMEM,
                        "scoring %zu tokens (the longest sequence %zu) needs about %.1f %s, more "
                        "than the %.1f %s of memory available: use fewer or shorter examples",
                        T, mx, need / (gb ? 1e9 : 1e6), gb ? "GB" : "MB",
                        (double)avail / (gb ? 1e9 : 1e6), gb ? "GB" : "MB");
}

lh_status nm_score_batch(const nm_model *m, const nm_batch *b, const lh_adapter *const *cands,
                         int n, int batched, double *nll, size_t *n_tokens, lh_error *err)
{
    if (n <= 0 || !b->score_from)
        return lh_error_set(err, LH_ERR_ARG, "nothing to score");
    nm_seqs sq;
    size_t T, mx;
    lh_status s = check_batch(m, b, &sq, &T, &mx, err);
    if (s)
        return s;
    size_t n_sc = 0;
    for (size_t i = 0; i < b->n_seq; i++)
        if (b->score_from[i] + 1 < b->len[i])
            n_sc += b->len[i] - 1 - b->score_from[i];
    scored *sc = malloc((n_sc ? n_sc : 1) * sizeof *sc);
    nm_lora *loras = calloc((size_t)n, sizeof *loras);
    if (!sc || !loras) {
        s = lh_error_set(err, LH_ERR_NOMEM, "out of memory");
        goto out;
    }
    n_sc = 0;
    for (size_t i = 0; i < b->n_seq; i++)
        for (size_t p = b->score_from[i]; p + 1 < b->len[i]; p++) {
            sc[n_sc].row = sq.off[i] + p;
            sc[n_sc].target = b->ids[sq.off[i] + p + 1];
            n_sc++;
        }
    if (n_sc == 0) {
        s = lh_error_set(err, LH_ERR_ARG, "no output tokens to score");
        goto out;
    }
    int max_rank = 0;
    for (int i = 0; i < n && !s; i++) {
        s = nm_lora_bind(m, cands[i], &loras[i], err);
        int r = cands[i] ? lh_adapter_max_rank(cands[i]) : 0;
        if (r > max_rank)
            max_rank = r;
    }
    if (!s)
        s = check_memory(m, T, mx, max_rank, err);
    if (s)
        goto out;
    /* Group size: stacked activations within the budget. */
    const nm_config *c = &m->c;
    size_t per_row = (size_t)c->dim * 2 + (size_t)c->n_heads * c->head_dim * 2 +
                     (size_t)c->n_kv_heads * c->head_dim * 2 + (size_t)c->hidden * 2 +
                     (size_t)max_rank;
    size_t cap = NM_ACT_BUDGET / (per_row * sizeof(float) * T);
    int group = batched ? (int)(cap < 1 ? 1 : cap > (size_t)n ? (size_t)n : cap) : 1;
    for (int i = 0; i < n && !s; i += group) {
        int nc = n - i < group ? n - i : group;
        s = score_group(m, b, &sq, T, mx, loras + i, nc, max_rank, sc, n_sc, nll + i, err);
    }
    *n_tokens = n_sc;
out:
    if (loras)
        for (int i = 0; i < n; i++)
            nm_lora_release(&loras[i]);
    free(loras);
    free(sc);
    free(sq.off);
    return s;
}

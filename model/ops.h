/* model/ops.h - small kernels every architecture's forward pass shares,
 * and the backends that compute the same loss (llamacpp). Inline: they sit
 * in the attention, scoring and decoding loops. */
#ifndef LH_MODEL_OPS_H
#define LH_MODEL_OPS_H

#include <cblas.h>
#include <float.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "lib/adapter.h"
#include "lib/status.h"

/* s [n]: softmax over the visible keys s[0..lim), the rest zeroed (masked
 * keys of a causal row). Max-subtracted, so large scores do not overflow. */
static inline void lh_softmax_prefix(float *s, size_t lim, size_t n)
{
    float mx = -FLT_MAX;
    for (size_t j = 0; j < lim; j++)
        if (s[j] > mx)
            mx = s[j];
    float sum = 0.0f;
    for (size_t j = 0; j < lim; j++) {
        s[j] = expf(s[j] - mx);
        sum += s[j];
    }
    float inv = 1.0f / sum;
    for (size_t j = 0; j < lim; j++)
        s[j] *= inv;
    for (size_t j = lim; j < n; j++)
        s[j] = 0.0f;
}

/* -log softmax(lg)[target] over lg [V]: the terms are in (0, 1], so float
 * exp and a double sum. */
static inline double lh_token_nll(const float *lg, size_t V, int32_t target)
{
    float mx = -FLT_MAX;
    for (size_t v = 0; v < V; v++)
        if (lg[v] > mx)
            mx = lg[v];
    double z = 0.0;
    for (size_t v = 0; v < V; v++)
        z += (double)expf(lg[v] - mx);
    return (double)mx + log(z) - (double)lg[target];
}

/* Rows ids [n] of the embedding table [vocab, D] into x [n, D]; an id
 * outside the table is LH_ERR_ARG naming it and its position. */
static inline lh_status lh_embed_rows(const float *table, size_t D, int vocab, const int32_t *ids,
                                      size_t n, float *x, lh_error *err)
{
    for (size_t i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= vocab)
            return lh_error_set(err, LH_ERR_ARG, "token id %d at position %zu is outside [0, %d)",
                                (int)ids[i], i, vocab);
        memcpy(x + i * D, table + (size_t)ids[i] * D, D * sizeof(float));
    }
    return LH_OK;
}

/* Index of the largest of x [n]; ties go to the lowest id, as torch.argmax. */
static inline int32_t lh_argmax(const float *x, int n)
{
    int32_t best = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[best])
            best = i;
    return best;
}

/* out [rows, D] = weight * x / sqrt(mean(x^2) + eps), row by row: LLaMA's
 * RMSNorm and T5's LayerNorm (no mean, no bias) are the same function. */
static inline void lh_rms_norm(float *out, const float *x, const float *weight, size_t rows,
                               size_t D, float eps)
{
    for (size_t r = 0; r < rows; r++) {
        const float *xr = x + r * D;
        float *o = out + r * D;
        float ss = 0.0f;
        for (size_t i = 0; i < D; i++)
            ss += xr[i] * xr[i];
        float inv = 1.0f / sqrtf(ss / (float)D + eps);
        for (size_t i = 0; i < D; i++)
            o[i] = weight[i] * (xr[i] * inv);
    }
}

/* y [rows, d_out] = x [rows, d_in] W^T, W [d_out, d_in]. One row (a
 * decoding step) is a matrix-vector product: sgemv avoids GEMM packing. */
static inline void lh_matmul_wt(const float *x, size_t rows, int d_in, const float *W, int d_out,
                                float *y)
{
    if (rows == 1)
        cblas_sgemv(CblasRowMajor, CblasNoTrans, d_out, d_in, 1.0f, W, d_in, x, 1, 0.0f, y, 1);
    else
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)rows, d_out, d_in, 1.0f, x, d_in,
                    W, d_in, 0.0f, y, d_out);
}

/* y [rows, d_out] += scale * (x [rows, d_in] A^T) B^T: one LoRA side path,
 * A [r, d_in], B [d_out, r], through tmp [rows, r]. */
static inline void lh_lora_side(const lh_target *t, const float *x, size_t rows, int d_in,
                                float *y, int d_out, float *tmp)
{
    if (rows == 1) {
        cblas_sgemv(CblasRowMajor, CblasNoTrans, t->r, d_in, 1.0f, t->A, d_in, x, 1, 0.0f, tmp, 1);
        cblas_sgemv(CblasRowMajor, CblasNoTrans, d_out, t->r, t->scale, t->B, t->r, tmp, 1, 1.0f,
                    y, 1);
        return;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)rows, t->r, d_in, 1.0f, x, d_in,
                t->A, d_in, 0.0f, tmp, t->r);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)rows, d_out, t->r, t->scale, tmp,
                t->r, t->B, t->r, 1.0f, y, d_out);
}

#endif

/* model/ops.h - small kernels every architecture's forward pass shares.
 * Private to model/. Inline: they sit in the attention and decoding loops. */
#ifndef LH_MODEL_OPS_H
#define LH_MODEL_OPS_H

#include <float.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>

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

/* Index of the largest of x [n]; ties go to the lowest id, as torch.argmax. */
static inline int32_t lh_argmax(const float *x, int n)
{
    int32_t best = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[best])
            best = i;
    return best;
}

#endif

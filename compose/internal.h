/* compose/internal.h - what the compose/ files share; not a public header.
 *
 * The plan holds, per output target, a pointer to each module's target (or
 * NULL where a module lacks it), so lh_compose_into only walks pointers. */
#ifndef LH_COMPOSE_INTERNAL_H
#define LH_COMPOSE_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include "compose.h"

struct lh_compose_plan {
    const lh_adapter **mods;  /* [n] copy of the caller's array */
    size_t n;
    lh_merge_opts o;
    int rank;                 /* output rank K, the same for every target */
    int svd_k;                /* svd forms: the truncation rank (== rank) */
    size_t n_targets;
    lh_target_shape *shapes;  /* [n_targets] sorted by name; names point into mods */
    const lh_target **src;    /* [n_targets * n]: src[t*n + i], NULL where module i lacks t */
    int *offset;              /* [n_targets * n]: cat's first row of module i in target t */
    int *tgt_rank;            /* [n_targets]: the equal-rank methods' common rank of t */
    double *coef;             /* [2 * n] scratch so compose_into does not allocate */
};

/* LAPACK through the Fortran symbols (Debian's OpenBLAS has no LAPACKE).
 * The trailing size_t is gfortran's hidden length of the character args. */
void sgeqrf_(const int *m, const int *n, float *a, const int *lda, float *tau, float *work,
             const int *lwork, int *info);
void sorgqr_(const int *m, const int *n, const int *k, float *a, const int *lda,
             const float *tau, float *work, const int *lwork, int *info);
void sgesdd_(const char *jobz, const int *m, const int *n, float *a, const int *lda, float *s,
             float *u, const int *ldu, float *vt, const int *ldvt, float *work,
             const int *lwork, int *iwork, int *info, size_t jobz_len);
void dgesdd_(const char *jobz, const int *m, const int *n, double *a, const int *lda, double *s,
             double *u, const int *ldu, double *vt, const int *ldvt, double *work,
             const int *lwork, int *iwork, int *info, size_t jobz_len);

/* splitmix64 (Steele, Lea, Flood 2014): a 64-bit state stepped by the golden
 * gamma and mixed; enough for DARE's Bernoulli masks and fully seedable. */
static inline uint64_t lhc_splitmix64(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}
/* Uniform in [0, 1) from the top 53 bits. */
static inline double lhc_uniform(uint64_t *state)
{
    return (double)(lhc_splitmix64(state) >> 11) * 0x1.0p-53;
}
/* The stream of DARE masks for (seed, target name, module index, which
 * tensor): independent of the order in which targets are visited. */
uint64_t lhc_stream_seed(uint64_t seed, const char *target, size_t module, int which);
enum { LHC_TENSOR_A = 0, LHC_TENSOR_B = 1, LHC_TENSOR_DELTA = 2 };

/* Per-module pruning state, carried across chunks of one tensor so dense
 * deltas can be merged a block of rows at a time. */
typedef struct lhc_prune {
    int keep_all;       /* density >= 1 or no pruning for this method */
    uint32_t thr;       /* magnitude: bit pattern of the k-th largest |x| */
    size_t eq_quota;    /* magnitude: how many |x| == thr still to keep (index order) */
    uint64_t rng;       /* DARE: stream state */
} lhc_prune;

/* Magnitude top-k state for y [numel]: k = floor(density * numel). */
void lhc_prune_magnitude_init(lhc_prune *st, const float *y, size_t numel, double density);
/* DARE state (keep with probability density, rescale by 1/density). */
void lhc_prune_random_init(lhc_prune *st, uint64_t stream, double density);

/* The sparsify-and-merge step on one chunk of len elements. y[i] (NULL =
 * module absent or zero weight) holds module i's already-weighted values for
 * this chunk and is pruned in place; dst [len] receives the merge. method is
 * one of the factor-space enum values (ties, dare-*, magnitude-prune).
 * unweight [n] (NULL = elect on y itself) maps y_i back to the unweighted
 * tensor for PEFT's sign election (y_i * unweight[i]). */
void lhc_sparse_chunk(lh_merge_method method, lh_majority_sign sign, double density, size_t n,
                      float *const *y, lhc_prune *st, const double *unweight, size_t len,
                      float *dst);

/* Per-target workers (compose/svd.c, compose/sparse.c). Each writes target t
 * of out (A [K, d_in], B [d_out, K], K = p->rank), zero padding included. */
lh_status lhc_svd_factored(lh_compose_plan *p, size_t t, const double *w, lh_target *out,
                           lh_error *err);
lh_status lhc_sparse_factored(lh_compose_plan *p, size_t t, const double *w, lh_target *out,
                              lh_error *err);
lh_status lhc_sparse_dense_svd(lh_compose_plan *p, size_t t, const double *w, lh_target *out,
                               lh_error *err);
/* Rank-k SVD of a dense row-major dw [d_out, d_in] (destroyed) into out. */
lh_status lhc_dense_svd_into(float *dw, int d_out, int d_in, int k, double clamp,
                             lh_target *out, int K, lh_error *err);
/* PEFT's svd_clamp on B [d_out, k] (row stride K) and A [k, d_in]. */
lh_status lhc_clamp(float *B, int d_out, int K, float *A, int d_in, int k, double q,
                    lh_error *err);

/* The module's name for messages: its path, else its name, else "module #i". */
const char *lhc_mod_label(const lh_compose_plan *p, size_t i, char *buf, size_t len);

#endif

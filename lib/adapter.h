/* lib/adapter.h - the in-memory adapter: a set of adapted linear layers.
 *
 * One target is one adapted linear layer:
 *     delta W = scale * B @ A,   y = W x + scale * B (A x)
 * with A [r, d_in] and B [d_out, r], both row-major F32.
 *
 * Loaded adapters keep F32 tensors zero-copy inside the file mapping where
 * possible (read-only: never write through A/B of a loaded adapter);
 * adapters made by lh_adapter_create own one zeroed, writable blob. */
#ifndef LH_ADAPTER_H
#define LH_ADAPTER_H

#include <stddef.h>
#include <stdint.h>
#include "dtype.h"
#include "status.h"

typedef enum lh_adapter_format { LH_FORMAT_PEFT = 0, LH_FORMAT_MOS = 1, LH_FORMAT_GGUF = 2 } lh_adapter_format;

typedef struct lh_target {
    char *name;      /* module path without PEFT prefix: model.layers.3.self_attn.q_proj */
    int r;           /* rank */
    int d_in;        /* input features */
    int d_out;       /* output features */
    float *A;        /* [r, d_in] row-major */
    float *B;        /* [d_out, r] row-major */
    float scale;     /* lora_alpha/r, or lora_alpha/sqrt(r) with rslora, after patterns */
    float alpha;     /* the lora_alpha that applied to this target */
} lh_target;

typedef struct lh_adapter {
    char *path;             /* where it was loaded from; NULL if made in memory */
    char *name;             /* short name for reports: directory/file basename */
    lh_adapter_format format;
    char *base_model;       /* base_model_name_or_path, or NULL */
    char *task_type;        /* e.g. CAUSAL_LM, or NULL */
    int r;                  /* config r (default rank) */
    double lora_alpha;      /* config lora_alpha */
    int use_rslora;
    int fan_in_fan_out;
    lh_dtype dtype;         /* dtype of the tensors on disk (F32 when made in memory) */
    uint32_t dtypes;        /* bit 1u<<t for every dtype t of its tensors on disk (0 in memory) */
    uint64_t file_size;     /* bytes on disk (0 when made in memory) */
    size_t n_targets;
    lh_target *targets;     /* [n_targets], sorted by name (strcmp) */
    void *storage;          /* owner of A/B memory: see adapter.c */
    void (*storage_free)(void *storage);
    /* Set by compose for the cat method, NULL otherwise: see lh_adapter_sum. */
    struct lh_adapter_sum *sum;
} lh_adapter;

/* How a cat composition is made: the adapter equals exactly
 * sum_i coef[i] * (module i's own delta, its scale included). A runtime
 * that applies several adapters at given scales (llama.cpp) can then load
 * each module once and set coef as scales instead of loading this merge.
 * Borrows the modules (valid while they live); freed with the adapter. */
typedef struct lh_adapter_sum {
    size_t n;
    const lh_adapter **mods; /* [n] */
    double *coef;            /* [n] the weights w_i */
} lh_adapter_sum;

/* One target's shape for lh_adapter_create. */
typedef struct lh_target_shape {
    const char *name;
    int r, d_in, d_out;
} lh_target_shape;

/* An adapter with n targets (sorted by name on return), all A/B zeroed in
 * one allocation, scale 1, alpha = r. */
lh_status lh_adapter_create(const lh_target_shape *shapes, size_t n, lh_adapter **out,
                            lh_error *err);
void lh_adapter_free(lh_adapter *a);

/* Target by name (binary search), or NULL. */
const lh_target *lh_adapter_find(const lh_adapter *a, const char *name);
/* Sum of r*(d_in+d_out) over targets. */
uint64_t lh_adapter_n_params(const lh_adapter *a);
/* Largest rank over targets (0 if none). */
int lh_adapter_max_rank(const lh_adapter *a);
/* 1 when every factor and scale of a is finite (a candidate that is not
 * scores NaN, by the backend contract). */
int lh_adapter_all_finite(const lh_adapter *a);

/* Where an adapter holds non-finite values (NaN, +-Inf) in its A or B. */
typedef struct lh_nonfinite {
    size_t count;       /* non-finite values in the whole adapter */
    size_t n_targets;   /* targets holding at least one */
    size_t target;      /* the first: index into targets (A before B, in order) */
    const char *tensor; /* "lora_A" or "lora_B" */
    size_t element;     /* row-major index in that tensor */
    float value;
} lh_nonfinite;

/* NaN and +-Inf among x [n]: their count, and in *first (when not NULL and
 * the count is not 0) the index of the first. */
size_t lh_count_nonfinite(const float *x, size_t n, size_t *first);
/* Scans every A and B; returns the count (0: all finite) and, when where is
 * not NULL, fills it (zeroed when all are finite). */
size_t lh_adapter_nonfinite(const lh_adapter *a, lh_nonfinite *where);

/* Load any module lorahub understands, by looking at path:
 *  - a directory with adapter_config.json: PEFT
 *  - a .safetensors file whose __metadata__ has "mos_config": MoS, materialized
 *  - another .safetensors file: PEFT tensors; config from adapter_config.json
 *    beside it if present, else scale 1 (lora_alpha = r)
 *  - a GGUF file: a llama.cpp LoRA adapter (lib/gguf.h), read with its own
 *    keys (lh_gguf_load_lora with a NULL base).
 * Errors name the path and the problem. */
lh_status lh_adapter_load(const char *path, lh_adapter **out, lh_error *err);

#endif

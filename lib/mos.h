/* lib/mos.h - MoS (Mixture of Shards, arXiv 2410.00938) modules, static routing.
 *
 * One safetensors file (see lorahub-mos(5)):
 *   mos.<t>.pool_A        [N, d_in/l]   one row per shard
 *   mos.<t>.pool_B        [N, d_out/l]  one row per shard
 *   mos.L<i>.<t>.idx_A    [r, l] I32
 *   mos.L<i>.<t>.idx_B    [r, l] I32
 *   mos.L<i>.<t>.rank_scale [r] F32 (optional, default 1)
 * and __metadata__["mos_config"], a JSON string: format "mos", version 1,
 * num_layers, types {<t>: {d_in, d_out, module}} where module is a path
 * template with "{i}" for the layer, r, l, private_rank, lora_alpha,
 * routing_hash, base_model.
 *
 * Materialization (scale = lora_alpha / r):
 *   A[j, k*s_in:(k+1)*s_in] = pool_A[idx_A[j,k]] * rank_scale[j]
 *   B[k*s_out + q, j]       = pool_B[idx_B[j,k], q]                          */
#ifndef LH_MOS_H
#define LH_MOS_H

#include <stddef.h>
#include <stdint.h>
#include "adapter.h"
#include "status.h"

typedef struct lh_mos_type {
    char *name;           /* projection type, e.g. "q_proj" */
    char *module;         /* module path template, e.g. "model.layers.{i}.self_attn.q_proj" */
    int d_in, d_out;
    int n_shards;         /* N: rows of both pools */
    float *pool_A;        /* [N, d_in/l] */
    float *pool_B;        /* [N, d_out/l] */
    int32_t *idx_A;       /* [num_layers, r, l] */
    int32_t *idx_B;       /* [num_layers, r, l] */
    float *rank_scale;    /* [num_layers, r] */
} lh_mos_type;

typedef struct lh_mos {
    char *path;
    char *name;
    char *base_model;     /* or NULL */
    int num_layers;
    int r;                /* materialized rank */
    int l;                /* shards per vector */
    int private_rank;     /* p: last p ranks of each layer use its private block */
    double lora_alpha;
    lh_dtype dtype;       /* dtype of the pools on disk (F32 when made in memory) */
    char routing_hash[65];/* hex SHA-256 over the index tables (computed on load) */
    size_t n_types;
    lh_mos_type *types;   /* [n_types], sorted by name */
    void *storage;        /* one blob owning pools and tables */
} lh_mos;

lh_status lh_mos_load(const char *path, lh_mos **out, lh_error *err);

/* One projection type's shape for lh_mos_create. */
typedef struct lh_mos_type_shape {
    const char *name;     /* e.g. "q_proj": letters, digits, '_' */
    const char *module;   /* path template containing "{i}" */
    int d_in, d_out;      /* both divisible by l */
    int n_shards;         /* N >= num_layers*private_rank*l + (r-private_rank)*l */
} lh_mos_type_shape;

/* A MoS with zeroed pools, all-zero index tables (not yet valid: fill them,
 * then lh_mos_validate) and rank_scale 1. Types sorted by name on return. */
lh_status lh_mos_create(const lh_mos_type_shape *types, size_t n_types, int num_layers, int r,
                        int l, int private_rank, double lora_alpha, lh_mos **out, lh_error *err);
/* Check every index (range, unique public indices per table, private ranks
 * in the layer's own block), finite rank scales, and recompute
 * routing_hash. Errors name m->path (or "mos") and the table. */
lh_status lh_mos_validate(lh_mos *m, lh_error *err);
void lh_mos_free(lh_mos *m);
/* 1 if the file at path is a safetensors file with mos_config metadata. */
int lh_mos_sniff(const char *path);
/* Plain LoRA with one target per (layer, type). */
lh_status lh_mos_materialize(const lh_mos *m, lh_adapter **out, lh_error *err);
/* 1 if a and b have identical routing (hash, r, l, N per type, shapes, rank_scale). */
int lh_mos_same_routing(const lh_mos *a, const lh_mos *b);

/* Parameters the module stores: both pools of every type (the index tables
 * and rank scales are not counted). NULL gives 0. */
uint64_t lh_mos_n_pool_params(const lh_mos *m);
/* An empty MoS with the routing of tmpl and zeroed pools (for composition). */
lh_status lh_mos_clone_routing(const lh_mos *tmpl, lh_mos **out, lh_error *err);
/* Write atomically (F32 pools). */
lh_status lh_mos_save(const lh_mos *m, const char *path, int force, lh_error *err);

#endif

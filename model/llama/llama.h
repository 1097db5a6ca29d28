/* model/llama/llama.h - the LLaMA family (llama, mistral, qwen2): a
 * decoder read from a Hugging Face checkpoint directory, evaluated on the
 * CPU with OpenBLAS.
 *
 * Data flow: config.json -> nm_config (config.c); model.safetensors or a
 * sharded index -> one F32 blob (weights.c); token ids -> packed forward
 * with LoRA side paths -> logits or per-token cross-entropy (forward.c);
 * greedy decoding with a KV cache (generate.c); the lh_model interface
 * over all of it (llama.c, registered in model/model.c).
 *
 * Private to model/llama/: everything else goes through model/model.h.
 * The exceptions are tests/check_native.c and bench/forward.c, which feed
 * token ids and random weights in directly. */
#ifndef LH_MODEL_LLAMA_H
#define LH_MODEL_LLAMA_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include "lib/adapter.h"
#include "lib/json.h"
#include "lib/status.h"

#define NM_MAX_EOS 8

typedef enum nm_rope_type { NM_ROPE_DEFAULT, NM_ROPE_LINEAR, NM_ROPE_LLAMA3 } nm_rope_type;

typedef struct nm_config {
    char model_type[32];
    int dim;             /* hidden_size */
    int hidden;          /* intermediate_size */
    int n_layers;        /* num_hidden_layers */
    int n_heads;         /* num_attention_heads */
    int n_kv_heads;      /* num_key_value_heads (GQA); = n_heads when absent */
    int head_dim;        /* head_dim, default dim / n_heads */
    int vocab;           /* vocab_size */
    float norm_eps;      /* rms_norm_eps */
    double rope_theta;
    nm_rope_type rope_type;
    double rope_factor;  /* linear / llama3 */
    double rope_low_freq_factor, rope_high_freq_factor; /* llama3 */
    double rope_orig_max_pos;                           /* llama3 */
    int tie_embeddings;  /* tie_word_embeddings */
    int qkv_bias;        /* q/k/v projections carry a bias (attention_bias, qwen2) */
    int o_bias;          /* o_proj carries a bias (llama's attention_bias) */
    int sliding_window;  /* tokens; 0 = none. Sequences longer are refused */
    int max_pos;         /* max_position_embeddings; 0 when the config gives none */
    int bos_id;          /* -1 when the config names none */
    int n_eos;
    int eos_ids[NM_MAX_EOS];
} nm_config;

/* The config.json model_type values this family covers, NULL-terminated. */
extern const char *const nm_model_types[];

/* Parse a config.json tree; origin names it in errors. Unsupported keys or
 * values are refused naming the key. */
lh_status nm_config_parse(const lh_json *j, const char *origin, nm_config *c, lh_error *err);
lh_status nm_config_load(const char *path, nm_config *c, lh_error *err);

/* Weights, llama2.c style: pointers into one F32 blob. HF nn.Linear layout:
 * W [out, in], y = x W^T. q_dim = n_heads*head_dim, kv_dim = n_kv_heads*head_dim. */
typedef struct nm_weights {
    float *embed;     /* [vocab, dim] */
    float *rms_att;   /* [layers, dim] */
    float *wq;        /* [layers, q_dim, dim] */
    float *wk;        /* [layers, kv_dim, dim] */
    float *wv;        /* [layers, kv_dim, dim] */
    float *wo;        /* [layers, dim, q_dim] */
    float *bq;        /* [layers, q_dim] or NULL */
    float *bk;        /* [layers, kv_dim] or NULL */
    float *bv;        /* [layers, kv_dim] or NULL */
    float *bo;        /* [layers, dim] or NULL */
    float *rms_ffn;   /* [layers, dim] */
    float *w_gate;    /* [layers, hidden, dim] */
    float *w_up;      /* [layers, hidden, dim] */
    float *w_down;    /* [layers, dim, hidden] */
    float *rms_final; /* [dim] */
    float *lm_head;   /* [vocab, dim]; == embed when tied */
} nm_weights;

typedef struct nm_model {
    nm_config c;
    nm_weights w;
    float *blob;         /* [blob_floats]: every weight above */
    size_t blob_floats;
    float *inv_freq;     /* [head_dim/2]: RoPE frequencies after scaling, as HF computes them */
} nm_model;

/* The seven adaptable projections, in this order in nm_lora tables. */
enum { NM_Q, NM_K, NM_V, NM_O, NM_GATE, NM_UP, NM_DOWN, NM_NPROJ };
extern const char *const nm_proj_names[NM_NPROJ]; /* "self_attn.q_proj", ... "mlp.down_proj" */

/* Load dir/config.json and dir/model.safetensors (or the sharded
 * model.safetensors.index.json), converting every tensor to F32 once. */
lh_status nm_model_load(const char *dir, nm_model **out, lh_error *err);
/* The weights of dir for an already parsed config. */
lh_status nm_model_load_weights(const char *dir, const nm_config *c, nm_model **out,
                                lh_error *err);
/* A model with this config and a zeroed blob (tests, benchmark). */
lh_status nm_model_alloc(const nm_config *c, nm_model **out, lh_error *err);
void nm_model_free(nm_model *m);
/* Fill the RoPE inverse frequencies from the config (nm_model_alloc does). */
void nm_rope_init(const nm_config *c, float *inv_freq /* [head_dim/2] */);

/* An adapter bound to a model: one target pointer per (layer, projection),
 * NULL where the adapter leaves it alone. */
typedef struct nm_lora {
    const lh_target **t;  /* [layers * NM_NPROJ] */
    int first_layer;      /* smallest adapted layer; n_layers when none */
} nm_lora;

/* Map every target of a (NULL = base, no targets) onto the model; a target
 * the model does not have or of the wrong shape is an error naming it. */
lh_status nm_lora_bind(const nm_model *m, const lh_adapter *a, nm_lora *out, lh_error *err);
void nm_lora_release(nm_lora *l);

/* A packed batch of sequences: ids [T] is their concatenation. Scoring
 * sequence s uses the positions i in [score_from[s], len[s]-1), each
 * predicting token i+1. */
typedef struct nm_batch {
    size_t n_seq;
    const int32_t *ids;        /* [T] */
    const size_t *len;         /* [n_seq] */
    const size_t *score_from;  /* [n_seq]; may be NULL when only logits are wanted */
    /* Optional: scoring stops with LH_ERR_INTERRUPTED between layers once
     * *stop is non-zero (a SIGINT handler's flag). */
    const volatile sig_atomic_t *stop;
} nm_batch;

/* Full logits [T, vocab] for one adapter (NULL = base). */
lh_status nm_forward_logits(const nm_model *m, const nm_batch *b, const lh_adapter *a,
                            float *logits /* [T, vocab] */, lh_error *err);

/* Teacher-forced cross-entropy of the scored tokens under base + cands[i]:
 * nll[i] is the sum in nats, *n_tokens the count (the same for all). A
 * candidate whose sum is not finite (NaN weights) keeps that value in
 * nll[i]; the others are scored all the same and the call returns LH_OK.
 * batched != 0 stacks the candidates through the shared base matmuls;
 * 0 evaluates them one at a time. */
lh_status nm_score_batch(const nm_model *m, const nm_batch *b, const lh_adapter *const *cands,
                         int n, int batched, double *nll /* [n] */, size_t *n_tokens,
                         lh_error *err);

/* Greedy decoding with a KV cache: continue prompt [n_prompt] until an EOS
 * id of the config or max_new tokens. *out is malloc'd [*n_out] (no EOS). */
lh_status nm_generate_ids(const nm_model *m, const lh_adapter *a, const int32_t *prompt,
                          size_t n_prompt, int max_new, int32_t **out, size_t *n_out,
                          lh_error *err);

#endif /* LH_MODEL_LLAMA_H */

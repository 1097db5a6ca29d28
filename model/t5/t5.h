/* model/t5/t5.h - T5 (original, v1.1, Flan-T5): an encoder-decoder read
 * from a Hugging Face checkpoint directory, evaluated on the CPU with
 * OpenBLAS.
 *
 * Data flow: config.json -> t5_config (config.c); model.safetensors,
 * pytorch_model.bin or a sharded index -> one F32 blob (weights.c, through
 * model/checkpoint.c); input ids -> encoder, target
 * ids -> teacher-forced decoder with LoRA side paths on every linear layer
 * -> logits or per-token cross-entropy (forward.c); greedy decoding with a
 * self-attention cache and the cross-attention keys/values computed once
 * (generate.c); the lh_model interface over all of it (t5.c, registered in
 * model/model.c).
 *
 * Semantics follow transformers' modeling_t5.py (eval mode): T5LayerNorm
 * (RMS, no mean, no bias), no embedding scaling, attention without the
 * 1/sqrt(d_kv) factor, a relative position bias from block 0 of each stack
 * added in every layer (bidirectional buckets in the encoder, causal in the
 * decoder), cross-attention over the final-normed encoder output, FFN
 * relu (original T5) or gated gelu_new (v1.1, Flan-T5), and a tied head
 * scaled by d_model^-0.5.
 *
 * Private to model/t5/: everything else goes through model/model.h. The
 * exceptions are tests/check_t5.c and bench/t5.c. */
#ifndef LH_MODEL_T5_H
#define LH_MODEL_T5_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include "lib/adapter.h"
#include "lib/json.h"
#include "lib/status.h"
#include "model/checkpoint.h"

typedef struct t5_config {
    int d_model;
    int d_kv;           /* per head */
    int d_ff;
    int n_heads;
    int n_enc_layers;   /* num_layers */
    int n_dec_layers;   /* num_decoder_layers, default num_layers */
    int vocab;          /* vocab_size */
    int num_buckets;    /* relative_attention_num_buckets */
    int max_distance;   /* relative_attention_max_distance */
    float eps;          /* layer_norm_epsilon */
    int gated;          /* feed_forward_proj "gated-gelu": wi_0, wi_1, gelu_new; else "relu": wi */
    int tie_embeddings; /* tie_word_embeddings (T5Config default true) */
    int start_id;       /* decoder_start_token_id (default pad_token_id, 0) */
    int eos_id;         /* eos_token_id (default 1) */
} t5_config;

/* Parse a config.json tree; origin names it in errors. Anything the
 * forward pass does not implement is refused naming the key. */
lh_status t5_config_parse(const lh_json *j, const char *origin, t5_config *c, lh_error *err);

/* The weights of one attention sublayer over all layers of a stack
 * (inner = n_heads * d_kv; q/k/v rows head-major, row = h * d_kv + d). */
typedef struct t5_attn_w {
    float *ln;  /* [layers, d_model] */
    float *q;   /* [layers, inner, d_model] */
    float *k;   /* [layers, inner, d_model] */
    float *v;   /* [layers, inner, d_model] */
    float *o;   /* [layers, d_model, inner] */
} t5_attn_w;

typedef struct t5_ffn_w {
    float *ln;   /* [layers, d_model] */
    float *wi0;  /* [layers, d_ff, d_model]: wi_0 (gated) or wi (relu) */
    float *wi1;  /* [layers, d_ff, d_model] or NULL (relu) */
    float *wo;   /* [layers, d_model, d_ff] */
} t5_ffn_w;

typedef struct t5_stack_w {
    float *rel_bias;  /* [num_buckets, n_heads]: block 0's table, used by every layer */
    t5_attn_w self;
    t5_attn_w cross;  /* decoder only (all NULL in the encoder) */
    t5_ffn_w ffn;
    float *final_ln;  /* [d_model] */
} t5_stack_w;

typedef struct t5_weights {
    float *embed;    /* [vocab, d_model] shared */
    t5_stack_w enc, dec;
    float *lm_head;  /* [vocab, d_model]; == embed when tied */
} t5_weights;

typedef struct t5_model {
    t5_config c;
    t5_weights w;
    float *blob;  /* [blob_floats]: every weight above */
    size_t blob_floats;
} t5_model;

/* The adaptable linear layers of one block, in this order in t5_lora
 * tables. The encoder has no cross-attention (its T5_C* entries stay NULL). */
enum {
    T5_SQ, T5_SK, T5_SV, T5_SO, /* SelfAttention.{q,k,v,o} */
    T5_CQ, T5_CK, T5_CV, T5_CO, /* EncDecAttention.{q,k,v,o} */
    T5_WI0, T5_WI1, T5_WO,      /* DenseReluDense.{wi_0 (or wi), wi_1, wo} */
    T5_NPROJ
};

/* Allocate a model with this config and a zeroed blob (tests, benchmark). */
lh_status t5_model_alloc(const t5_config *c, t5_model **out, lh_error *err);
/* The weights of dir (model.safetensors, pytorch_model.bin or the sharded
 * index of either) for a parsed config. */
lh_status t5_model_load_weights(const char *dir, const t5_config *c, t5_model **out,
                                lh_error *err);
void t5_model_free(t5_model *m);
/* Every tensor of m by its Hugging Face name, shape and place in the blob
 * (aliases: also encoder.embed_tokens / decoder.embed_tokens beside
 * shared); l->w is malloc'd. What the loader looks for; the benchmark
 * writes a checkpoint from it. */
lh_status t5_list_tensors(const t5_model *m, int aliases, lh_want_list *l, lh_error *err);

/* An adapter bound to a model: one target pointer per (layer, projection)
 * of each stack, NULL where the adapter leaves it alone. */
typedef struct t5_lora {
    const lh_target **enc;  /* [n_enc_layers * T5_NPROJ] */
    const lh_target **dec;  /* [n_dec_layers * T5_NPROJ] */
    int first_enc;          /* smallest adapted encoder layer; n_enc_layers when none */
} t5_lora;

/* Map every target of a (NULL = base) onto the model: PEFT module names
 * such as encoder.block.0.layer.0.SelfAttention.q or
 * decoder.block.1.layer.2.DenseReluDense.wo. A target the model does not
 * have, or of the wrong shape, is LH_ERR_SHAPE naming it. */
lh_status t5_lora_bind(const t5_model *m, const lh_adapter *a, t5_lora *out, lh_error *err);
void t5_lora_release(t5_lora *l);

/* Relative position bucket of key position minus query position (HF
 * _relative_position_bucket, computed in float32 as torch does). */
int t5_bucket(long rel, int bidirectional, int num_buckets, int max_distance);

/* Encoder inputs and decoder targets of n pairs. Pair i's decoder reads
 * [start] + tgt_i[:-1] and is scored on tgt_i. */
typedef struct t5_batch {
    size_t n;
    const int32_t *const *src;  /* [n] pointers to [n_src[i]] ids, n_src[i] >= 1 */
    const size_t *n_src;        /* [n] */
    const int32_t *const *tgt;  /* [n] pointers to [n_tgt[i]] ids (may be 0) */
    const size_t *n_tgt;        /* [n] */
    /* Optional: scoring stops with LH_ERR_INTERRUPTED between layers once
     * *stop is non-zero (a SIGINT handler's flag). */
    const volatile sig_atomic_t *stop;
} t5_batch;

/* Logits of every decoder position, pairs concatenated: [sum n_tgt, vocab],
 * for one adapter (NULL = base). */
lh_status t5_forward_logits(const t5_model *m, const t5_batch *b, const lh_adapter *a,
                            float *logits, lh_error *err);

/* Teacher-forced cross-entropy over every target token under base +
 * cands[i]: nll[i] the sum in nats, *n_tokens their count. Non-finite
 * candidates keep their non-finite nll (LH_OK). batched != 0 stacks the
 * candidates through the shared base matmuls; 0 runs them one at a time. */
lh_status t5_score_batch(const t5_model *m, const t5_batch *b, const lh_adapter *const *cands,
                         int n, int batched, double *nll /* [n] */, size_t *n_tokens,
                         lh_error *err);

/* Greedy decoding: encode src [n_src], decode from the start token until
 * eos or max_new tokens. *out is malloc'd [*n_out] (no eos). Ties in the
 * argmax go to the lowest id, as torch.argmax. */
lh_status t5_generate_ids(const t5_model *m, const lh_adapter *a, const int32_t *src,
                          size_t n_src, int max_new, int32_t **out, size_t *n_out,
                          lh_error *err);

#endif /* LH_MODEL_T5_H */

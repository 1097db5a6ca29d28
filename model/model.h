/* model/model.h - the native model runtime behind one interface.
 *
 * A model directory (Hugging Face layout: config.json plus safetensors
 * weights) is loaded by the architecture its config.json "model_type"
 * names; model.c holds the registry. Every architecture answers the same
 * questions: what it is (lh_model_info), whether an adapter fits it (its
 * own tensor-name map decides which LoRA targets it can adapt), the
 * teacher-forced loss of target tokens after a prompt under several
 * candidate adapters, and greedy generation after a prompt.
 *
 * The caller decides the special tokens: a prompt is what the model reads
 * before the target ([bos] + input ids for LLaMA, input ids + [eos] for
 * T5), a target what it is scored on (output ids + [eos]). A decoder-only model concatenates the
 * two; an encoder-decoder one encodes the prompt and decodes the target.
 * The architectures' internals (weights, tensor names, forward pieces)
 * stay in their own folder (model/llama/, model/t5/). */
#ifndef LH_MODEL_H
#define LH_MODEL_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/adapter.h"
#include "lib/status.h"

#define LH_MODEL_MAX_EOS 8

typedef struct lh_model lh_model;

typedef struct lh_model_info {
    const char *architecture; /* the family that runs it: "llama" (also for mistral, qwen2), "t5" */
    const char *model_type;   /* config.json "model_type": "llama", "qwen2", ... */
    int n_layers;
    int dim;                /* hidden size */
    int vocab;              /* token ids are in [0, vocab) */
    size_t n_params;        /* every weight, held as F32 */
    int bos_id;             /* -1 when the config names none */
    /* Prompts are expected to start with bos_id (decoder-only LLaMA: yes
     * whenever it has one; T5 reads no BOS). */
    int expects_bos;
    /* The prompt ends with eos_ids[0], as T5's tokenizer appends </s> to
     * the encoder input too (0 for decoder-only models). */
    int prompt_ends_with_eos;
    int n_eos;
    int eos_ids[LH_MODEL_MAX_EOS]; /* [n_eos]; generation stops at any of them */
} lh_model_info;

/* One scored example. Either part may be empty, not both. */
typedef struct lh_model_pair {
    const int32_t *prompt;  /* [n_prompt] */
    size_t n_prompt;
    const int32_t *target;  /* [n_target] */
    size_t n_target;
} lh_model_pair;

typedef struct lh_model_batch {
    size_t n;                   /* examples */
    const lh_model_pair *pairs; /* [n] */
    /* Optional: scoring stops with LH_ERR_INTERRUPTED between layers once
     * *stop is non-zero (a SIGINT handler's flag). */
    const volatile sig_atomic_t *stop;
} lh_model_batch;

/* Load dir/config.json and the weights it goes with; errors name the
 * file (an unsupported model_type lists the supported ones). */
lh_status lh_model_load(const char *dir, lh_model **out, lh_error *err);
void lh_model_free(lh_model *m);
const lh_model_info *lh_model_get_info(const lh_model *m);

/* Bind a (NULL = the base model) to m and release it again: a target the
 * architecture cannot adapt, or of the wrong shape, is LH_ERR_SHAPE naming
 * it. score and generate bind their candidates the same way. */
lh_status lh_model_check_adapter(const lh_model *m, const lh_adapter *a, lh_error *err);

/* Teacher-forced cross-entropy of every pair's target under base +
 * cands[i] (NULL = base): nll[i] is the sum in nats over the scored target
 * tokens, *n_tokens their count (the same for every candidate). A
 * candidate with non-finite weights gets its non-finite nll[i]; the others
 * are unaffected and the call still returns LH_OK. batched != 0 stacks the
 * candidates through the shared base matmuls; 0 scores them one at a time. */
lh_status lh_model_score(const lh_model *m, const lh_model_batch *b,
                         const lh_adapter *const *cands /* [n] */, int n, int batched,
                         double *nll /* [n] */, size_t *n_tokens, lh_error *err);
/* How many target tokens lh_model_score would score for b (nothing run). */
lh_status lh_model_count_tokens(const lh_model *m, const lh_model_batch *b, size_t *n_tokens,
                                lh_error *err);

/* Greedy decoding after prompt [n_prompt] under base + a (NULL = base),
 * until an EOS id or max_new tokens. *out is malloc'd [*n_out], no EOS. */
lh_status lh_model_generate(const lh_model *m, const lh_adapter *a, const int32_t *prompt,
                            size_t n_prompt, int max_new, int32_t **out, size_t *n_out,
                            lh_error *err);

#endif

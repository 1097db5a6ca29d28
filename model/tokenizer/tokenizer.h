/* model/tokenizer/tokenizer.h - tokenizer.json (Hugging Face tokenizers).
 *
 * Supported: Unigram models (T5, Flan-T5: the Precompiled charsmap
 * normalizer with Replace/Strip around it, Metaspace or WhitespaceSplit
 * pre-tokenizers, byte fallback) and BPE models with
 *  - the ByteLevel pre-tokenizer/decoder (GPT-2, Llama 3, Qwen2 style),
 *    optionally inside a Sequence with a Split pre-tokenizer whose regex is
 *    run as written with PCRE2;
 *  - SentencePiece-style BPE (Metaspace pre-tokenizer or a Prepend("▁") +
 *    Replace(" ", "▁") normalizer, byte_fallback <0xXX> tokens; Llama 2,
 *    TinyLlama, Mistral style);
 * added and special tokens (matched before the model), merges by rank.
 * Anything else (WordPiece, unknown normalizers or pre-tokenizers) is
 * refused, naming the component. */
#ifndef LH_TOKENIZER_H
#define LH_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>
#include "lib/status.h"

typedef struct lh_tokenizer lh_tokenizer;

lh_status lh_tokenizer_load(const char *path /* tokenizer.json */, lh_tokenizer **out,
                            lh_error *err);
void lh_tokenizer_free(lh_tokenizer *t);

/* Encode UTF-8 text (no BOS/EOS added: the caller decides). *ids is
 * malloc'd [*n]. Special/added tokens written literally in text are
 * matched when allow_special is non-zero. */
lh_status lh_tokenizer_encode(const lh_tokenizer *t, const char *text, int allow_special,
                              int32_t **ids, size_t *n, lh_error *err);
/* Add the post_processor's special tokens around the ids of one text
 * (*ids [*n], from lh_tokenizer_encode, is reallocated): T5's </s> after
 * it, Llama's <s> before it; nothing for a tokenizer without one. An
 * unsupported post_processor type is an error naming it. */
lh_status lh_tokenizer_post_process(const lh_tokenizer *t, int32_t **ids, size_t *n, lh_error *err);
/* Decode ids [n] to a malloc'd UTF-8 string (special tokens skipped when
 * skip_special is non-zero). */
lh_status lh_tokenizer_decode(const lh_tokenizer *t, const int32_t *ids, size_t n,
                              int skip_special, char **out, lh_error *err);

int32_t lh_tokenizer_vocab_size(const lh_tokenizer *t);
/* Id of a token string (e.g. "<s>", "<|endoftext|>"), or -1. */
int32_t lh_tokenizer_token_id(const lh_tokenizer *t, const char *token);
/* Token string of an id, or NULL. */
const char *lh_tokenizer_id_token(const lh_tokenizer *t, int32_t id);

#endif

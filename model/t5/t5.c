/* model/t5/t5.c - T5 behind the lh_model interface.
 *
 * An encoder-decoder reads a pair as two sequences: the prompt is the
 * encoder's input, the target what the decoder is scored on (every target
 * token, the first after decoder_start_token_id). The caller appends </s>
 * to both, as T5's tokenizer does (lh_model_info.prompt_ends_with_eos). */
#include <stdlib.h>
#include <string.h>

#include "model/arch.h"
#include "t5.h"

static const char *const t5_model_types[] = {"t5", NULL};

static void t5_info(const t5_model *m, lh_model_info *info)
{
    const t5_config *c = &m->c;
    memset(info, 0, sizeof *info);
    info->model_type = "t5";
    info->n_layers = c->n_enc_layers + c->n_dec_layers;
    info->dim = c->d_model;
    info->vocab = c->vocab;
    info->n_params = m->blob_floats;
    info->bos_id = -1;
    info->expects_bos = 0;
    info->prompt_ends_with_eos = 1;
    info->n_eos = 1;
    info->eos_ids[0] = c->eos_id;
}

static lh_status t5_load(const char *dir, const lh_json *config, const char *config_path,
                         void **impl, lh_model_info *info, lh_error *err)
{
    *impl = NULL;
    t5_config c;
    lh_status s = t5_config_parse(config, config_path, &c, err);
    t5_model *m = NULL;
    if (!s)
        s = t5_model_load_weights(dir, &c, &m, err);
    if (s)
        return s;
    t5_info(m, info);
    *impl = m;
    return LH_OK;
}

static void t5_free(void *impl)
{
    t5_model_free(impl);
}

static lh_status t5_check_adapter(const void *impl, const lh_adapter *a, lh_error *err)
{
    t5_lora l = {0};
    lh_status s = t5_lora_bind(impl, a, &l, err);
    t5_lora_release(&l);
    return s;
}

/* The pairs of b as a t5_batch; the arrays are owned. */
typedef struct split {
    t5_batch tb;
    const int32_t **src, **tgt;  /* [n] */
    size_t *n_src, *n_tgt;       /* [n] */
} split;

static void split_release(split *p)
{
    free(p->src);
    free(p->tgt);
    free(p->n_src);
    free(p->n_tgt);
}

static lh_status split_pairs(const lh_model_batch *b, split *p, lh_error *err)
{
    size_t n = b->n ? b->n : 1;
    p->src = malloc(n * sizeof *p->src);
    p->tgt = malloc(n * sizeof *p->tgt);
    p->n_src = malloc(n * sizeof *p->n_src);
    p->n_tgt = malloc(n * sizeof *p->n_tgt);
    if (!p->src || !p->tgt || !p->n_src || !p->n_tgt) {
        split_release(p);
        return lh_error_set(err, LH_ERR_NOMEM, "out of memory");
    }
    for (size_t i = 0; i < b->n; i++) {
        p->src[i] = b->pairs[i].prompt;
        p->n_src[i] = b->pairs[i].n_prompt;
        p->tgt[i] = b->pairs[i].target;
        p->n_tgt[i] = b->pairs[i].n_target;
    }
    p->tb = (t5_batch){.n = b->n, .src = p->src, .n_src = p->n_src, .tgt = p->tgt,
                       .n_tgt = p->n_tgt, .stop = b->stop};
    return LH_OK;
}

static lh_status t5_score(const void *impl, const lh_model_batch *b,
                          const lh_adapter *const *cands, int n, int batched, double *nll,
                          size_t *n_tokens, lh_error *err)
{
    split p;
    lh_status s = split_pairs(b, &p, err);
    if (s)
        return s;
    s = t5_score_batch(impl, &p.tb, cands, n, batched, nll, n_tokens, err);
    split_release(&p);
    return s;
}

static lh_status t5_count_tokens(const void *impl, const lh_model_batch *b, size_t *n_tokens,
                                 lh_error *err)
{
    size_t n = 0;
    for (size_t i = 0; i < b->n; i++)
        n += b->pairs[i].n_target;
    *n_tokens = n;
    return LH_OK;
}

static lh_status t5_generate(const void *impl, const lh_adapter *a, const int32_t *prompt,
                             size_t n_prompt, int max_new, int32_t **out, size_t *n_out,
                             lh_error *err)
{
    return t5_generate_ids(impl, a, prompt, n_prompt, max_new, out, n_out, err);
}

const lh_model_arch lh_model_arch_t5 = {
    .name = "t5",
    .model_types = t5_model_types,
    .load = t5_load,
    .free = t5_free,
    .check_adapter = t5_check_adapter,
    .score = t5_score,
    .count_tokens = t5_count_tokens,
    .generate = t5_generate,
};

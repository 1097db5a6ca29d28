/* model/llama/llama.c - the LLaMA family behind the lh_model interface.
 *
 * A decoder-only model reads prompt and target as one sequence: each pair
 * is packed as prompt + target and the positions from the last prompt
 * token on are scored, each predicting the next token. A pair without a
 * prompt has nothing before its first target token, which is then not
 * scored. */
#include <stdlib.h>
#include <string.h>

#include "llama.h"
#include "model/arch.h"

_Static_assert(NM_MAX_EOS <= LH_MODEL_MAX_EOS, "lh_model_info holds every EOS id");

static void llama_info(const nm_model *m, lh_model_info *info)
{
    const nm_config *c = &m->c;
    memset(info, 0, sizeof *info);
    info->model_type = c->model_type;
    info->n_layers = c->n_layers;
    info->dim = c->dim;
    info->vocab = c->vocab;
    info->n_params = m->blob_floats;
    info->bos_id = c->bos_id;
    info->expects_bos = c->bos_id >= 0;
    info->n_eos = c->n_eos;
    info->n_ctx = c->max_pos > 0 ? (size_t)c->max_pos : 0;
    memcpy(info->eos_ids, c->eos_ids, sizeof c->eos_ids);
}

static lh_status llama_load(const char *dir, const lh_json *config, const char *config_path,
                            void **impl, lh_model_info *info, lh_error *err)
{
    *impl = NULL;
    nm_config c;
    lh_status s = nm_config_parse(config, config_path, &c, err);
    nm_model *m = NULL;
    if (!s)
        s = nm_model_load_weights(dir, &c, &m, err);
    if (s)
        return s;
    llama_info(m, info);
    *impl = m;
    return LH_OK;
}

static void llama_free(void *impl)
{
    nm_model_free(impl);
}

static lh_status llama_check_adapter(const void *impl, const lh_adapter *a, lh_error *err)
{
    nm_lora l = {0};
    lh_status s = nm_lora_bind(impl, a, &l, err);
    nm_lora_release(&l);
    return s;
}

/* The pairs of b as one packed decoder batch; the arrays are owned. */
typedef struct packed {
    nm_batch bt;
    int32_t *ids;  /* [T]: prompt + target of every pair, concatenated */
    size_t *len;   /* [n]: n_prompt + n_target */
    size_t *from;  /* [n]: first scored position */
} packed;

static void packed_release(packed *p)
{
    free(p->ids);
    free(p->len);
    free(p->from);
}

static lh_status pack(const lh_model_batch *b, packed *p, lh_error *err)
{
    memset(p, 0, sizeof *p);
    size_t n = b->n, total = 0;
    for (size_t i = 0; i < n; i++)
        total += b->pairs[i].n_prompt + b->pairs[i].n_target;
    p->ids = malloc((total ? total : 1) * sizeof *p->ids);
    p->len = malloc((n ? n : 1) * sizeof *p->len);
    p->from = malloc((n ? n : 1) * sizeof *p->from);
    if (!p->ids || !p->len || !p->from) {
        packed_release(p);
        return lh_error_set(err, LH_ERR_NOMEM, "out of memory");
    }
    size_t off = 0;
    for (size_t i = 0; i < n; i++) {
        const lh_model_pair *q = &b->pairs[i];
        if (q->n_prompt)
            memcpy(p->ids + off, q->prompt, q->n_prompt * sizeof *p->ids);
        if (q->n_target)
            memcpy(p->ids + off + q->n_prompt, q->target, q->n_target * sizeof *p->ids);
        p->len[i] = q->n_prompt + q->n_target;
        p->from[i] = q->n_prompt ? q->n_prompt - 1 : 0;
        off += p->len[i];
    }
    p->bt = (nm_batch){.n_seq = n, .ids = p->ids, .len = p->len, .score_from = p->from,
                       .stop = b->stop};
    return LH_OK;
}

static lh_status llama_score(const void *impl, const lh_model_batch *b,
                             const lh_adapter *const *cands, int n, int batched, double *nll,
                             size_t *n_tokens, lh_error *err)
{
    packed p;
    lh_status s = pack(b, &p, err);
    if (s)
        return s;
    s = nm_score_batch(impl, &p.bt, cands, n, batched, nll, n_tokens, err);
    packed_release(&p);
    return s;
}

static lh_status llama_count_tokens(const void *impl, const lh_model_batch *b, size_t *n_tokens,
                                    lh_error *err)
{
    size_t n = 0;
    for (size_t i = 0; i < b->n; i++) {
        const lh_model_pair *q = &b->pairs[i];
        if (q->n_target)
            n += q->n_prompt ? q->n_target : q->n_target - 1;
    }
    *n_tokens = n;
    return LH_OK;
}

static lh_status llama_generate(const void *impl, const lh_adapter *a, const int32_t *prompt,
                                size_t n_prompt, int max_new, int32_t **out, size_t *n_out,
                                lh_error *err)
{
    return nm_generate_ids(impl, a, prompt, n_prompt, max_new, out, n_out, err);
}

const lh_model_arch lh_model_arch_llama = {
    .name = "llama",
    .model_types = nm_model_types,
    .load = llama_load,
    .free = llama_free,
    .check_adapter = llama_check_adapter,
    .score = llama_score,
    .count_tokens = llama_count_tokens,
    .generate = llama_generate,
};

/* model/llama/generate.c - greedy decoding with a KV cache.
 *
 * The prompt is run once (prefill) and its keys/values kept per layer; each
 * new token then costs one row through every layer. Ties in the argmax go
 * to the lowest id, as torch.argmax does. */
#include <stdlib.h>
#include <string.h>

#include "forward.h"
#include "model/ops.h"

static int is_eos(const nm_config *c, int32_t id)
{
    for (int i = 0; i < c->n_eos; i++)
        if (c->eos_ids[i] == id)
            return 1;
    return 0;
}

lh_status nm_generate_ids(const nm_model *m, const lh_adapter *a, const int32_t *prompt,
                          size_t n_prompt, int max_new, int32_t **out, size_t *n_out,
                          lh_error *err)
{
    *out = NULL;
    *n_out = 0;
    const nm_config *c = &m->c;
    if (n_prompt == 0)
        return lh_error_set(err, LH_ERR_ARG, "generation needs a non-empty prompt");
    if (max_new < 0)
        max_new = 0;
    size_t cap = n_prompt + (size_t)max_new;
    if (c->sliding_window && cap > (size_t)c->sliding_window)
        return lh_error_set(err, LH_ERR_UNSUPPORTED,
                            "prompt plus max_new_tokens (%zu) exceeds the config's sliding_window "
                            "%d (sliding-window attention is not implemented)", cap,
                            c->sliding_window);
    size_t KV = (size_t)c->n_kv_heads * c->head_dim, V = (size_t)c->vocab;
    nm_lora lora = {0};
    nm_ws w;
    nm_kv kv = {0, cap, NULL, NULL};
    lh_status s = nm_lora_bind(m, a, &lora, err);
    if (s)
        return s;
    if ((s = nm_ws_init(&w, m, n_prompt, n_prompt, cap, a ? lh_adapter_max_rank(a) : 0, err))) {
        nm_lora_release(&lora);
        return s;
    }
    kv.k = malloc((size_t)c->n_layers * cap * KV * sizeof(float));
    kv.v = malloc((size_t)c->n_layers * cap * KV * sizeof(float));
    float *logits = malloc(V * sizeof(float));
    int32_t *gen = malloc(((size_t)max_new + 1) * sizeof *gen);
    if (!kv.k || !kv.v || !logits || !gen) {
        s = lh_error_set(err, LH_ERR_NOMEM, "out of memory for a KV cache of %zu tokens", cap);
        goto done;
    }
    const nm_lora *lp = &lora;
    size_t n_gen = 0, step_len = n_prompt, off0 = 0;
    const int32_t *step_ids = prompt;
    while (n_gen < (size_t)max_new) {
        if ((s = nm_embed(m, step_ids, step_len, w.x, err)))
            goto done;
        nm_seqs sq = {1, &off0, &step_len};
        for (size_t l = 0; l < (size_t)c->n_layers; l++)
            nm_layer(m, &w, l, step_len, 1, &lp, &sq, &kv);
        kv.len += step_len;
        size_t last = step_len - 1;
        nm_head(m, w.x, &last, 1, w.xn, logits);
        int32_t next = lh_argmax(logits, c->vocab);
        if (is_eos(c, next))
            break;
        gen[n_gen++] = next;
        step_ids = &gen[n_gen - 1];
        step_len = 1;
    }
    *out = gen;
    *n_out = n_gen;
    gen = NULL;
done:
    free(gen);
    free(logits);
    free(kv.k);
    free(kv.v);
    nm_ws_free(&w);
    nm_lora_release(&lora);
    return s;
}

/* model/llama/weights.c - checkpoint tensors into one F32 blob.
 *
 * The checkpoint is model.safetensors, pytorch_model.bin (a torch zip) or
 * a sharded index of either (model/checkpoint.c). Every tensor the config
 * implies is looked up by its Hugging Face name, its shape checked against
 * the config, and converted to F32 once at load;
 * afterwards the safetensors mappings are released, so the steady-state
 * footprint is the blob. Tensors the model would not use are an error
 * naming them (they usually mean a different architecture), except the
 * rotary inv_freq buffers old checkpoints carry and lm_head.weight of a
 * tied model, which Hugging Face ignores too. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "llama.h"
#include "model/checkpoint.h"

const char *const nm_proj_names[NM_NPROJ] = {
    "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
    "mlp.gate_proj",    "mlp.up_proj",      "mlp.down_proj",
};

lh_status nm_model_alloc(const nm_config *c, nm_model **out, lh_error *err)
{
    *out = NULL;
    size_t L = (size_t)c->n_layers, D = (size_t)c->dim, H = (size_t)c->hidden;
    size_t Q = (size_t)c->n_heads * c->head_dim, KV = (size_t)c->n_kv_heads * c->head_dim;
    size_t V = (size_t)c->vocab;
    /* Each factor is bounded by the config parser (dim <= 2^16, hidden <= 2^18,
     * layers <= 2^10, vocab <= 2^22, q_dim <= 2^17), so no product overflows 64 bits. */
    size_t per_layer = 2 * D + Q * D + 2 * KV * D + D * Q + 3 * H * D;
    if (c->qkv_bias)
        per_layer += Q + 2 * KV;
    if (c->o_bias)
        per_layer += D;
    size_t total = V * D + L * per_layer + D + (c->tie_embeddings ? 0 : V * D);
    if (total > SIZE_MAX / sizeof(float) / 2)
        return lh_error_set(err, LH_ERR_NOMEM, "model of %zu parameters is too large", total);
    nm_model *m = calloc(1, sizeof *m);
    if (!m)
        return lh_error_set(err, LH_ERR_NOMEM, "out of memory");
    m->c = *c;
    m->blob_floats = total;
    m->blob = calloc(total, sizeof(float));
    m->inv_freq = calloc((size_t)c->head_dim / 2, sizeof(float));
    if (!m->blob || !m->inv_freq) {
        nm_model_free(m);
        return lh_error_set(err, LH_ERR_NOMEM, "out of memory for %zu MiB of weights",
                            total * sizeof(float) >> 20);
    }
    float *p = m->blob;
    nm_weights *w = &m->w;
    w->embed = p; p += V * D;
    w->rms_att = p; p += L * D;
    w->wq = p; p += L * Q * D;
    w->wk = p; p += L * KV * D;
    w->wv = p; p += L * KV * D;
    w->wo = p; p += L * D * Q;
    if (c->qkv_bias) {
        w->bq = p; p += L * Q;
        w->bk = p; p += L * KV;
        w->bv = p; p += L * KV;
    }
    if (c->o_bias) {
        w->bo = p; p += L * D;
    }
    w->rms_ffn = p; p += L * D;
    w->w_gate = p; p += L * H * D;
    w->w_up = p; p += L * H * D;
    w->w_down = p; p += L * D * H;
    w->rms_final = p; p += D;
    if (c->tie_embeddings) {
        w->lm_head = w->embed;
    } else {
        w->lm_head = p; p += V * D;
    }
    nm_rope_init(c, m->inv_freq);
    *out = m;
    return LH_OK;
}

void nm_model_free(nm_model *m)
{
    if (!m)
        return;
    free(m->blob);
    free(m->inv_freq);
    free(m);
}

/* Every tensor the config implies, into l (sized by the caller). */
static void list_wants(const nm_model *m, lh_want_list *l)
{
    const nm_config *c = &m->c;
    const nm_weights *w = &m->w;
    int64_t D = c->dim, H = c->hidden, Q = (int64_t)c->n_heads * c->head_dim;
    int64_t KV = (int64_t)c->n_kv_heads * c->head_dim;
    lh_want_add(l, w->embed, c->vocab, D, "model.embed_tokens.weight");
    for (int l_ = 0; l_ < c->n_layers; l_++) {
        size_t L = (size_t)l_;
        const char *lw = "model.layers.%d.%s.weight", *lb = "model.layers.%d.%s.bias";
        lh_want_add(l, w->rms_att + L * D, D, 0, "model.layers.%d.input_layernorm.weight", l_);
        lh_want_add(l, w->rms_ffn + L * D, D, 0, "model.layers.%d.post_attention_layernorm.weight",
                    l_);
        lh_want_add(l, w->wq + L * Q * D, Q, D, lw, l_, nm_proj_names[NM_Q]);
        lh_want_add(l, w->wk + L * KV * D, KV, D, lw, l_, nm_proj_names[NM_K]);
        lh_want_add(l, w->wv + L * KV * D, KV, D, lw, l_, nm_proj_names[NM_V]);
        lh_want_add(l, w->wo + L * D * Q, D, Q, lw, l_, nm_proj_names[NM_O]);
        lh_want_add(l, w->w_gate + L * H * D, H, D, lw, l_, nm_proj_names[NM_GATE]);
        lh_want_add(l, w->w_up + L * H * D, H, D, lw, l_, nm_proj_names[NM_UP]);
        lh_want_add(l, w->w_down + L * D * H, D, H, lw, l_, nm_proj_names[NM_DOWN]);
        if (c->qkv_bias) {
            lh_want_add(l, w->bq + L * Q, Q, 0, lb, l_, nm_proj_names[NM_Q]);
            lh_want_add(l, w->bk + L * KV, KV, 0, lb, l_, nm_proj_names[NM_K]);
            lh_want_add(l, w->bv + L * KV, KV, 0, lb, l_, nm_proj_names[NM_V]);
        }
        if (c->o_bias)
            lh_want_add(l, w->bo + L * D, D, 0, lb, l_, nm_proj_names[NM_O]);
    }
    lh_want_add(l, w->rms_final, D, 0, "model.norm.weight");
    if (!c->tie_embeddings)
        lh_want_add(l, w->lm_head, c->vocab, D, "lm_head.weight");
}

static int ignorable(const void *ctx, const char *name)
{
    const nm_config *c = ctx;
    size_t len = strlen(name);
    const char *suffix = "rotary_emb.inv_freq";
    size_t sl = strlen(suffix);
    if (len >= sl && !strcmp(name + len - sl, suffix))
        return 1;
    return c->tie_embeddings && !strcmp(name, "lm_head.weight");
}

lh_status nm_model_load(const char *dir, nm_model **out, lh_error *err)
{
    *out = NULL;
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", dir);
    nm_config c;
    lh_status s = nm_config_load(path, &c, err);
    if (s)
        return s;
    return nm_model_load_weights(dir, &c, out, err);
}

lh_status nm_model_load_weights(const char *dir, const nm_config *c, nm_model **out,
                                lh_error *err)
{
    *out = NULL;
    nm_model *m = NULL;
    lh_status s = nm_model_alloc(c, &m, err);
    if (s)
        return s;
    lh_want_list l = {.cap = 4 + (size_t)c->n_layers * 13, .model_type = c->model_type,
                      .ignorable = ignorable, .ctx = &m->c};
    if (!(l.w = calloc(l.cap, sizeof *l.w))) {
        nm_model_free(m);
        return lh_error_set(err, LH_ERR_NOMEM, "out of memory");
    }
    list_wants(m, &l);
    s = lh_ckpt_load(dir, &l, err);
    free(l.w);
    if (s) {
        nm_model_free(m);
        return s;
    }
    *out = m;
    return LH_OK;
}

/* Parse "model.layers.<l>.<proj>" into (l, proj index); 0 on success. */
static int parse_target(const char *name, int n_layers, int *layer, int *proj)
{
    const char *pre = "model.layers.";
    size_t pl = strlen(pre);
    if (strncmp(name, pre, pl))
        return -1;
    const char *p = name + pl;
    if (*p < '0' || *p > '9' || (*p == '0' && p[1] >= '0' && p[1] <= '9'))
        return -1;
    long l = 0;
    while (*p >= '0' && *p <= '9') {
        l = l * 10 + (*p++ - '0');
        if (l >= n_layers)
            return -1;
    }
    if (*p++ != '.')
        return -1;
    for (int k = 0; k < NM_NPROJ; k++)
        if (!strcmp(p, nm_proj_names[k])) {
            *layer = (int)l;
            *proj = k;
            return 0;
        }
    return -1;
}

lh_status nm_lora_bind(const nm_model *m, const lh_adapter *a, nm_lora *out, lh_error *err)
{
    const nm_config *c = &m->c;
    out->first_layer = c->n_layers;
    out->t = calloc((size_t)c->n_layers * NM_NPROJ, sizeof *out->t);
    if (!out->t)
        return lh_error_set(err, LH_ERR_NOMEM, "out of memory");
    if (!a)
        return LH_OK;
    const char *an = a->name ? a->name : a->path ? a->path : "adapter";
    int Q = c->n_heads * c->head_dim, KV = c->n_kv_heads * c->head_dim;
    const int d_in[NM_NPROJ] = {c->dim, c->dim, c->dim, Q, c->dim, c->dim, c->hidden};
    const int d_out[NM_NPROJ] = {Q, KV, KV, c->dim, c->hidden, c->hidden, c->dim};
    for (size_t i = 0; i < a->n_targets; i++) {
        const lh_target *t = &a->targets[i];
        int l, k;
        if (parse_target(t->name, c->n_layers, &l, &k)) {
            nm_lora_release(out);
            return lh_error_set(err, LH_ERR_SHAPE,
                                "%s: target '%s' is not an adaptable linear layer of this %d-layer "
                                "model", an, t->name, c->n_layers);
        }
        if (t->d_in != d_in[k] || t->d_out != d_out[k] || t->r < 0 || (t->r && (!t->A || !t->B))) {
            nm_lora_release(out);
            return lh_error_set(err, LH_ERR_SHAPE,
                                "%s: target '%s' is %d -> %d, the model's layer is %d -> %d", an,
                                t->name, t->d_in, t->d_out, d_in[k], d_out[k]);
        }
        if (t->r == 0)
            continue;
        out->t[(size_t)l * NM_NPROJ + k] = t;
        if (l < out->first_layer)
            out->first_layer = l;
    }
    return LH_OK;
}

void nm_lora_release(nm_lora *l)
{
    if (!l)
        return;
    free(l->t);
    l->t = NULL;
}

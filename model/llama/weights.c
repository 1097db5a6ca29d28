/* model/llama/weights.c - checkpoint tensors into one F32 blob.
 *
 * The checkpoint is model.safetensors, pytorch_model.bin (a torch zip) or
 * a sharded index of either. Every tensor the config implies is looked up
 * by its Hugging Face name, its shape checked against the config, and
 * converted to F32 once at load;
 * afterwards the safetensors mappings are released, so the steady-state
 * footprint is the blob. Tensors the model would not use are an error
 * naming them (they usually mean a different architecture), except the
 * rotary inv_freq buffers old checkpoints carry and lm_head.weight of a
 * tied model, which Hugging Face ignores too. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "lib/fsutil.h"
#include "lib/safetensors.h"
#include "lib/torchzip.h"
#include "llama.h"

const char *const nm_proj_names[NM_NPROJ] = {
    "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
    "mlp.gate_proj",    "mlp.up_proj",      "mlp.down_proj",
};

/* One expected tensor: where it goes and its shape ([n0] or [n0, n1]). */
typedef struct want {
    char name[96];
    float *dst;
    int ndim;
    int64_t shape[2];
    int found;
} want;

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

static void add_want(want *ws, size_t *n, float *dst, int64_t d0, int64_t d1, const char *fmt,
                     int layer, const char *proj)
{
    want *x = &ws[(*n)++];
    memset(x, 0, sizeof *x);
    if (proj)
        snprintf(x->name, sizeof x->name, fmt, layer, proj);
    else if (layer >= 0)
        snprintf(x->name, sizeof x->name, fmt, layer);
    else
        snprintf(x->name, sizeof x->name, "%s", fmt);
    x->dst = dst;
    x->ndim = d1 ? 2 : 1;
    x->shape[0] = d0;
    x->shape[1] = d1;
}

static want *list_wants(const nm_model *m, size_t *n_out)
{
    const nm_config *c = &m->c;
    const nm_weights *w = &m->w;
    size_t cap = 4 + (size_t)c->n_layers * 13;
    want *ws = calloc(cap, sizeof *ws);
    if (!ws)
        return NULL;
    size_t n = 0;
    int64_t D = c->dim, H = c->hidden, Q = (int64_t)c->n_heads * c->head_dim;
    int64_t KV = (int64_t)c->n_kv_heads * c->head_dim;
    add_want(ws, &n, w->embed, c->vocab, D, "model.embed_tokens.weight", -1, NULL);
    for (int l = 0; l < c->n_layers; l++) {
        size_t L = (size_t)l;
        const char *lw = "model.layers.%d.%s.weight", *lb = "model.layers.%d.%s.bias";
        add_want(ws, &n, w->rms_att + L * D, D, 0, "model.layers.%d.input_layernorm.weight", l,
                 NULL);
        add_want(ws, &n, w->rms_ffn + L * D, D, 0,
                 "model.layers.%d.post_attention_layernorm.weight", l, NULL);
        add_want(ws, &n, w->wq + L * Q * D, Q, D, lw, l, nm_proj_names[NM_Q]);
        add_want(ws, &n, w->wk + L * KV * D, KV, D, lw, l, nm_proj_names[NM_K]);
        add_want(ws, &n, w->wv + L * KV * D, KV, D, lw, l, nm_proj_names[NM_V]);
        add_want(ws, &n, w->wo + L * D * Q, D, Q, lw, l, nm_proj_names[NM_O]);
        add_want(ws, &n, w->w_gate + L * H * D, H, D, lw, l, nm_proj_names[NM_GATE]);
        add_want(ws, &n, w->w_up + L * H * D, H, D, lw, l, nm_proj_names[NM_UP]);
        add_want(ws, &n, w->w_down + L * D * H, D, H, lw, l, nm_proj_names[NM_DOWN]);
        if (c->qkv_bias) {
            add_want(ws, &n, w->bq + L * Q, Q, 0, lb, l, nm_proj_names[NM_Q]);
            add_want(ws, &n, w->bk + L * KV, KV, 0, lb, l, nm_proj_names[NM_K]);
            add_want(ws, &n, w->bv + L * KV, KV, 0, lb, l, nm_proj_names[NM_V]);
        }
        if (c->o_bias)
            add_want(ws, &n, w->bo + L * D, D, 0, lb, l, nm_proj_names[NM_O]);
    }
    add_want(ws, &n, w->rms_final, D, 0, "model.norm.weight", -1, NULL);
    if (!c->tie_embeddings)
        add_want(ws, &n, w->lm_head, c->vocab, D, "lm_head.weight", -1, NULL);
    *n_out = n;
    return ws;
}

static int ignorable(const nm_config *c, const char *name)
{
    size_t len = strlen(name);
    const char *suffix = "rotary_emb.inv_freq";
    size_t sl = strlen(suffix);
    if (len >= sl && !strcmp(name + len - sl, suffix))
        return 1;
    return c->tie_embeddings && !strcmp(name, "lm_head.weight");
}

static want *find_want(want *ws, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (!strcmp(ws[i].name, name))
            return &ws[i];
    return NULL;
}

/* The file's pages are not needed once converted: dropping them keeps the
 * peak resident memory near the F32 blob instead of blob + checkpoint. */
static void drop_pages(const void *p, size_t len)
{
    long pg = sysconf(_SC_PAGESIZE);
    if (pg <= 0)
        return;
    uintptr_t a = ((uintptr_t)p + (uintptr_t)pg - 1) & ~((uintptr_t)pg - 1);
    uintptr_t e = ((uintptr_t)p + len) & ~((uintptr_t)pg - 1);
    if (e > a)
        madvise((void *)a, e - a, MADV_DONTNEED);
}

/* Copy every tensor of one file into its place; extras are errors. */
static lh_status take_file(const nm_model *m, const lh_safetensors *st, want *ws, size_t n,
                           lh_error *err)
{
    for (size_t i = 0; i < st->n_tensors; i++) {
        const lh_st_tensor *t = &st->tensors[i];
        want *x = find_want(ws, n, t->name);
        if (!x) {
            if (ignorable(&m->c, t->name))
                continue;
            return lh_error_set(err, LH_ERR_FORMAT,
                                "%s: unexpected tensor '%s' (not part of a %s model with this "
                                "config)", st->path, t->name, m->c.model_type);
        }
        if (x->found)
            return lh_error_set(err, LH_ERR_FORMAT, "%s: tensor '%s' appears twice in the checkpoint",
                                st->path, t->name);
        int ok = t->ndim == x->ndim && t->shape[0] == x->shape[0] &&
                 (x->ndim == 1 || t->shape[1] == x->shape[1]);
        if (!ok) {
            char got[128] = "";
            size_t off = 0;
            for (int d = 0; d < t->ndim && off < sizeof got - 24; d++)
                off += (size_t)snprintf(got + off, sizeof got - off, "%s%lld", d ? "," : "",
                                        (long long)t->shape[d]);
            if (x->ndim == 1)
                return lh_error_set(err, LH_ERR_SHAPE,
                                    "%s: tensor '%s' has shape [%s], the config implies [%lld]",
                                    st->path, t->name, got, (long long)x->shape[0]);
            return lh_error_set(err, LH_ERR_SHAPE,
                                "%s: tensor '%s' has shape [%s], the config implies [%lld,%lld]",
                                st->path, t->name, got, (long long)x->shape[0],
                                (long long)x->shape[1]);
        }
        if (t->dtype != LH_F32 && t->dtype != LH_F16 && t->dtype != LH_BF16)
            return lh_error_set(err, LH_ERR_UNSUPPORTED,
                                "%s: tensor '%s' has dtype %s (F32, F16, BF16 supported)",
                                st->path, t->name, lh_dtype_name(t->dtype));
        lh_status s = lh_st_read_f32(st, t, x->dst, err);
        if (s)
            return s;
        x->found = 1;
        if (st->mapped)
            drop_pages(t->data, t->end - t->begin);
    }
    return LH_OK;
}

/* A shard file name from the index: a plain name inside dir. */
static int safe_shard_name(const char *f)
{
    return *f && !strchr(f, '/') && strcmp(f, ".") && strcmp(f, "..") && strlen(f) < 512;
}

static lh_status load_sharded(const nm_model *m, const char *dir, const char *index_path,
                              want *ws, size_t n, lh_error *err)
{
    lh_json *idx = NULL;
    lh_status s = lh_json_parse_file(index_path, &idx, err);
    if (s)
        return s;
    const lh_json *map = lh_json_get(idx, "weight_map");
    if (!map || map->type != LH_JSON_OBJECT) {
        lh_json_free(idx);
        return lh_error_set(err, LH_ERR_FORMAT, "%s: missing object 'weight_map'", index_path);
    }
    /* Each distinct shard once, in first-mention order. */
    const char **files = calloc(map->len ? map->len : 1, sizeof *files);
    size_t n_files = 0;
    if (!files) {
        lh_json_free(idx);
        return lh_error_set(err, LH_ERR_NOMEM, "out of memory");
    }
    for (size_t i = 0; i < map->len && !s; i++) {
        const char *f;
        if (!lh_json_as_string(map->items[i], &f) || !safe_shard_name(f)) {
            s = lh_error_set(err, LH_ERR_FORMAT, "%s: weight_map['%s'] is not a file name in %s",
                             index_path, map->keys[i], dir);
            break;
        }
        if (!find_want(ws, n, map->keys[i]) && !ignorable(&m->c, map->keys[i])) {
            s = lh_error_set(err, LH_ERR_FORMAT,
                             "%s: unexpected tensor '%s' (not part of a %s model with this config)",
                             index_path, map->keys[i], m->c.model_type);
            break;
        }
        size_t k = 0;
        while (k < n_files && strcmp(files[k], f))
            k++;
        if (k == n_files)
            files[n_files++] = f;
    }
    for (size_t k = 0; k < n_files && !s; k++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, files[k]);
        lh_safetensors *st = NULL;
        if ((s = lh_tensors_open(path, &st, err)))
            break;
        s = take_file(m, st, ws, n, err);
        lh_st_free(st);
    }
    /* A tensor in a shard the index does not name is found anyway; one the
     * index names in the wrong shard is caught as missing below. */
    free(files);
    lh_json_free(idx);
    return s;
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
    char path[4096];
    nm_model *m = NULL;
    lh_status s = nm_model_alloc(c, &m, err);
    if (s)
        return s;
    size_t n = 0;
    want *ws = list_wants(m, &n);
    if (!ws) {
        nm_model_free(m);
        return lh_error_set(err, LH_ERR_NOMEM, "out of memory");
    }
    /* Hugging Face's order: safetensors first, then torch.save files
     * (read by lib/torchzip, which runs no pickle code). */
    static const struct { const char *file; int index; } forms[] = {
        {"model.safetensors", 0}, {"model.safetensors.index.json", 1},
        {"pytorch_model.bin", 0}, {"pytorch_model.bin.index.json", 1},
    };
    size_t f = 0;
    for (; f < sizeof forms / sizeof forms[0]; f++) {
        snprintf(path, sizeof path, "%s/%s", dir, forms[f].file);
        if (lh_path_exists(path))
            break;
    }
    if (f == sizeof forms / sizeof forms[0]) {
        s = lh_error_set(err, LH_ERR_NOT_FOUND, "%s: no model.safetensors, "
                         "model.safetensors.index.json, pytorch_model.bin or "
                         "pytorch_model.bin.index.json", dir);
    } else if (forms[f].index) {
        s = load_sharded(m, dir, path, ws, n, err);
    } else {
        lh_safetensors *st = NULL;
        if (!(s = lh_tensors_open(path, &st, err)))
            s = take_file(m, st, ws, n, err);
        lh_st_free(st);
    }
    for (size_t i = 0; i < n && !s; i++)
        if (!ws[i].found)
            s = lh_error_set(err, LH_ERR_NOT_FOUND, "%s: checkpoint lacks tensor '%s'", dir,
                             ws[i].name);
    free(ws);
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

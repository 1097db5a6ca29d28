/* lib/gguf_lora.c - LoRA adapters as llama.cpp's GGUF files, and back.
 *
 * Names follow llama.cpp's converters at the pinned commit
 * (gguf-py/gguf/tensor_mapping.py, constants.py): LLaMA-family
 * model.layers.N.self_attn.q_proj -> blk.N.attn_q.weight and so on; T5
 * encoder.block.N.layer.0.SelfAttention.q -> enc.blk.N.attn_q.weight,
 * decoder ... EncDecAttention.q -> dec.blk.N.cross_attn_q.weight, FFN
 * wi / wi_1 -> ffn_up, wi_0 -> ffn_gate, wo -> ffn_down. HF "mistral" is
 * GGUF "llama" (conversion/llama.py registers MistralForCausalLM there).
 *
 * The q/k permutation: LlamaModel.permute (conversion/llama.py) reorders the
 * rows of q_proj (by n_head) and k_proj (by n_head_kv) for ggml's rope; on a
 * LoRA pair convert_lora_to_gguf.py applies it to lora_B alone. Per head of
 * hd rows: B_gguf[h*hd + p] = B_hf[h*hd + (p % 2) * hd/2 + p / 2]. Qwen2 and
 * T5 converters do not permute. */
#include "gguf.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fsutil.h"
#include "json.h"
#include "strbuf.h"

/* ---- name maps ---- */

enum { PERM_NONE = 0, PERM_Q = 1, PERM_K = 2 };

/* hf_pre N hf_post <-> gg_pre N gg_post; a rule without a layer number has
 * NULL posts and the whole names in the pres. */
typedef struct name_rule {
    const char *hf_pre, *hf_post, *gg_pre, *gg_post;
    int perm;   /* PERM_*: applied only where the arch permutes */
    int gated;  /* -1 any; 0/1: the rule is the GGUF->HF choice for that ffn_gated */
} name_rule;

static const name_rule DECODER_RULES[] = {
    {"model.layers.", ".self_attn.q_proj", "blk.", ".attn_q.weight", PERM_Q, -1},
    {"model.layers.", ".self_attn.k_proj", "blk.", ".attn_k.weight", PERM_K, -1},
    {"model.layers.", ".self_attn.v_proj", "blk.", ".attn_v.weight", PERM_NONE, -1},
    {"model.layers.", ".self_attn.o_proj", "blk.", ".attn_output.weight", PERM_NONE, -1},
    {"model.layers.", ".mlp.gate_proj", "blk.", ".ffn_gate.weight", PERM_NONE, -1},
    {"model.layers.", ".mlp.up_proj", "blk.", ".ffn_up.weight", PERM_NONE, -1},
    {"model.layers.", ".mlp.down_proj", "blk.", ".ffn_down.weight", PERM_NONE, -1},
    {"lm_head", NULL, "output.weight", NULL, PERM_NONE, -1},
};

#define T5_ATTN(hp, hs, gp, gs) \
    {hp, hs ".q", gp, gs "q.weight", PERM_NONE, -1}, \
    {hp, hs ".k", gp, gs "k.weight", PERM_NONE, -1}, \
    {hp, hs ".v", gp, gs "v.weight", PERM_NONE, -1}, \
    {hp, hs ".o", gp, gs "o.weight", PERM_NONE, -1}
#define T5_FFN(hp, hs, gp) \
    {hp, hs ".wi", gp, ".ffn_up.weight", PERM_NONE, 0}, \
    {hp, hs ".wi_0", gp, ".ffn_gate.weight", PERM_NONE, -1}, \
    {hp, hs ".wi_1", gp, ".ffn_up.weight", PERM_NONE, 1}, \
    {hp, hs ".wo", gp, ".ffn_down.weight", PERM_NONE, -1}

static const name_rule T5_RULES[] = {
    T5_ATTN("encoder.block.", ".layer.0.SelfAttention", "enc.blk.", ".attn_"),
    T5_FFN("encoder.block.", ".layer.1.DenseReluDense", "enc.blk."),
    T5_ATTN("decoder.block.", ".layer.0.SelfAttention", "dec.blk.", ".attn_"),
    T5_ATTN("decoder.block.", ".layer.1.EncDecAttention", "dec.blk.", ".cross_attn_"),
    T5_FFN("decoder.block.", ".layer.2.DenseReluDense", "dec.blk."),
    {"lm_head", NULL, "output.weight", NULL, PERM_NONE, -1},
};

typedef struct arch_map {
    const char *arch;        /* GGUF general.architecture */
    const name_rule *rules;
    size_t n_rules;
    int permutes;            /* the converter permutes q/k rows */
} arch_map;

static const arch_map ARCHS[] = {
    {"llama", DECODER_RULES, sizeof DECODER_RULES / sizeof DECODER_RULES[0], 1},
    {"qwen2", DECODER_RULES, sizeof DECODER_RULES / sizeof DECODER_RULES[0], 0},
    {"t5", T5_RULES, sizeof T5_RULES / sizeof T5_RULES[0], 0},
};

/* HF model_type -> GGUF architecture. */
static const struct { const char *model_type, *arch; } HF_ARCHS[] = {
    {"llama", "llama"}, {"mistral", "llama"}, {"qwen2", "qwen2"}, {"t5", "t5"},
};

static const arch_map *find_arch(const char *arch)
{
    for (size_t i = 0; i < sizeof ARCHS / sizeof ARCHS[0]; i++)
        if (!strcmp(ARCHS[i].arch, arch))
            return &ARCHS[i];
    return NULL;
}

static lh_status no_arch_map(const char *o, const char *arch, lh_error *err)
{
    return lh_error_set(err, LH_ERR_UNSUPPORTED, "%s: lorahub has no GGUF tensor-name map for "
                        "architecture '%s' (it knows llama, mistral as llama, qwen2 and t5)",
                        o, arch);
}

/* Match s against pre N post; *layer = N (-1 for a rule without a layer). */
static int match(const char *s, const char *pre, const char *post, int *layer)
{
    size_t lp = strlen(pre);
    if (!post) {
        *layer = -1;
        return !strcmp(s, pre);
    }
    if (strncmp(s, pre, lp))
        return 0;
    s += lp;
    if (*s < '0' || *s > '9' || (s[0] == '0' && s[1] >= '0' && s[1] <= '9'))
        return 0;
    long v = 0;
    while (*s >= '0' && *s <= '9' && v < 1000000)
        v = v * 10 + (*s++ - '0');
    if (v >= 1000000 || strcmp(s, post))
        return 0;
    *layer = (int)v;
    return 1;
}

/* The rule for an HF name, or NULL. */
static const name_rule *rule_for_hf(const arch_map *m, const char *name, int *layer)
{
    for (size_t i = 0; i < m->n_rules; i++)
        if (match(name, m->rules[i].hf_pre, m->rules[i].hf_post, layer))
            return &m->rules[i];
    return NULL;
}

/* The rule for a GGUF base name: among rules sharing a GGUF name (T5's
 * ffn_up), the one whose gated matches. */
static const name_rule *rule_for_gguf(const arch_map *m, const char *name, int gated, int *layer)
{
    for (size_t i = 0; i < m->n_rules; i++) {
        const name_rule *r = &m->rules[i];
        if (r->gated >= 0 && r->gated != gated)
            continue;
        if (match(name, r->gg_pre, r->gg_post, layer))
            return r;
    }
    return NULL;
}

static void rule_name(char *buf, size_t cap, const char *pre, const char *post, int layer)
{
    if (layer < 0)
        snprintf(buf, cap, "%s", pre);
    else
        snprintf(buf, cap, "%s%d%s", pre, layer, post);
}

/* ---- the q/k row permutation ---- */

/* rows [d_out] of r floats: to GGUF order (inverse 0) or back to HF's. */
static void permute_rows(const float *src, float *dst, int d_out, int r, int heads, int inverse)
{
    int hd = d_out / heads, half = hd / 2;
    for (int h = 0; h < heads; h++)
        for (int p = 0; p < hd; p++) {
            size_t g = (size_t)h * hd + p, f = (size_t)h * hd + (size_t)(p % 2) * half + p / 2;
            const float *from = src + (inverse ? g : f) * r;
            memcpy(dst + (inverse ? f : g) * r, from, (size_t)r * sizeof *dst);
        }
}

/* Heads for a permuted target, checked against its rows. */
static lh_status perm_heads(const char *o, const lh_gguf_arch *arch, int perm, const char *name,
                            int d_out, int *heads, lh_error *err)
{
    *heads = perm == PERM_Q ? arch->n_head : arch->n_head_kv;
    if (*heads <= 0)
        return lh_error_set(err, LH_ERR_NOT_FOUND, "%s: '%s' needs the base model's head counts to "
                            "%s llama.cpp's q/k row permutation; give the base model (--base)",
                            o, name, "apply or undo");
    if (d_out % *heads || (d_out / *heads) % 2)
        return lh_error_set(err, LH_ERR_SHAPE, "%s: '%s' has %d output rows, which %d heads do "
                            "not split into heads of an even size", o, name, d_out, *heads);
    return LH_OK;
}

/* ---- base model facts ---- */

static int json_int(const lh_json *cfg, const char *k1, const char *k2, int *out)
{
    long long v;
    const lh_json *j = lh_json_get(cfg, k1);
    if (!j && k2)
        j = lh_json_get(cfg, k2);
    if (!j || !lh_json_as_int64(j, &v) || v <= 0 || v > 1 << 20)
        return 0;
    *out = (int)v;
    return 1;
}

static lh_status arch_from_json(const char *path, const lh_json *cfg, lh_gguf_arch *out,
                                lh_error *err)
{
    const char *mt = NULL;
    if (!lh_json_as_string(lh_json_get(cfg, "model_type"), &mt))
        return lh_error_set(err, LH_ERR_FORMAT, "%s: no model_type string", path);
    const char *arch = NULL;
    for (size_t i = 0; i < sizeof HF_ARCHS / sizeof HF_ARCHS[0]; i++)
        if (!strcmp(HF_ARCHS[i].model_type, mt))
            arch = HF_ARCHS[i].arch;
    if (!arch)
        return no_arch_map(path, mt, err);
    snprintf(out->arch, sizeof out->arch, "%s", arch);
    int t5 = !strcmp(arch, "t5");
    if (!json_int(cfg, t5 ? "num_layers" : "num_hidden_layers", NULL, &out->n_layers) ||
        !json_int(cfg, t5 ? "num_heads" : "num_attention_heads", NULL, &out->n_head))
        return lh_error_set(err, LH_ERR_FORMAT, "%s: %s or %s is missing or not a positive "
                            "integer", path, t5 ? "num_layers" : "num_hidden_layers",
                            t5 ? "num_heads" : "num_attention_heads");
    if (!json_int(cfg, "num_key_value_heads", NULL, &out->n_head_kv))
        out->n_head_kv = out->n_head;
    out->ffn_gated = -1;
    const char *ff;
    if (t5)
        out->ffn_gated = lh_json_as_string(lh_json_get(cfg, "feed_forward_proj"), &ff) &&
                         !strncmp(ff, "gated-", 6);
    return LH_OK;
}

lh_status lh_gguf_arch_from_config(const char *hf_model_dir, lh_gguf_arch *out, lh_error *err)
{
    memset(out, 0, sizeof *out);
    char *path = lh_path_join(hf_model_dir, "config.json");
    if (!path)
        return lh_error_set(err, LH_ERR_NOMEM, "%s: out of memory", hf_model_dir);
    lh_json *cfg = NULL;
    lh_status st = lh_json_parse_file(path, &cfg, err);
    if (!st)
        st = arch_from_json(path, cfg, out, err);
    lh_json_free(cfg);
    free(path);
    return lh_error_one_line(st, err);
}

/* An integer key, or an array of equal integers (per-layer head counts). */
static int kv_count(const lh_gguf *g, const char *arch, const char *suffix, int *out)
{
    char key[160];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    const lh_gguf_kv *kv = lh_gguf_find_kv(g, key);
    int64_t v;
    if (kv && kv->is_array && kv->n > 0 && kv->type == LH_GGUF_UINT32) {
        for (uint64_t i = 1; i < kv->n; i++)
            if (memcmp(kv->data, kv->data + 4 * i, 4))
                return 0; /* differs per layer */
        v = (int64_t)((uint32_t)kv->data[0] | (uint32_t)kv->data[1] << 8 |
                      (uint32_t)kv->data[2] << 16 | (uint32_t)kv->data[3] << 24);
    } else if (!lh_gguf_kv_int(kv, &v)) {
        return 0;
    }
    if (v <= 0 || v > 1 << 20)
        return 0;
    *out = (int)v;
    return 1;
}

static const char *kv_str(const lh_gguf *g, const char *key)
{
    const lh_gguf_kv *kv = lh_gguf_find_kv(g, key);
    return kv && !kv->is_array && kv->type == LH_GGUF_STRING ? kv->str : NULL;
}

lh_status lh_gguf_arch_from_model(const char *gguf_model_path, lh_gguf_arch *out, lh_error *err)
{
    memset(out, 0, sizeof *out);
    out->ffn_gated = -1;
    lh_gguf *g = NULL;
    lh_status st = lh_gguf_open(gguf_model_path, LH_GGUF_KV_ONLY, &g, err);
    if (st)
        return st;
    const char *arch = kv_str(g, "general.architecture");
    if (!arch || !*arch || strlen(arch) >= sizeof out->arch) {
        st = lh_error_set(err, LH_ERR_FORMAT, "%s: no general.architecture string",
                          gguf_model_path);
    } else {
        snprintf(out->arch, sizeof out->arch, "%s", arch);
        kv_count(g, arch, "block_count", &out->n_layers);
        kv_count(g, arch, "attention.head_count", &out->n_head);
        if (!kv_count(g, arch, "attention.head_count_kv", &out->n_head_kv))
            out->n_head_kv = out->n_head;
    }
    lh_gguf_free(g);
    return lh_error_one_line(st, err);
}

lh_status lh_gguf_arch_from_base(const char *base, lh_gguf_arch *out, lh_error *err)
{
    if (lh_is_dir(base))
        return lh_gguf_arch_from_config(base, out, err);
    if (lh_gguf_sniff(base))
        return lh_gguf_arch_from_model(base, out, err);
    memset(out, 0, sizeof *out);
    if (!lh_path_exists(base))
        return lh_error_set(err, LH_ERR_NOT_FOUND, "cannot open base model '%s': no such file "
                            "or directory", base);
    return lh_error_set(err, LH_ERR_ARG, "base model '%s' is neither an HF model directory "
                        "(config.json) nor a GGUF model file", base);
}

/* ---- writing ---- */

static uint32_t ggml_type_of(lh_dtype dt)
{
    return dt == LH_F16 ? LH_GGML_F16 : dt == LH_BF16 ? LH_GGML_BF16 : LH_GGML_F32;
}

/* The scale llama.cpp applies for a file alpha and a tensor's rank. */
static float llama_scale(float alpha, int r)
{
    return alpha == 0.0f ? 1.0f : (float)((double)alpha / r);
}

/* The alpha that makes llama.cpp apply t's scale to t's bytes as they are. */
static float effective_alpha(const lh_target *t)
{
    if (isfinite(t->alpha) && t->alpha != 0.0f && llama_scale(t->alpha, t->r) == t->scale)
        return t->alpha;
    return (float)((double)t->scale * t->r);
}

static int cmp_float(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return x < y ? -1 : x > y;
}

/* The most common effective alpha (nonzero, finite), so that most targets
 * keep their bytes; 0 if there is none. */
static float pick_alpha(const lh_adapter *a, lh_error *err, lh_status *st)
{
    float *v = malloc((a->n_targets + 1) * sizeof *v);
    if (!v) {
        *st = lh_error_set(err, LH_ERR_NOMEM, "gguf: out of memory");
        return 0;
    }
    size_t n = 0;
    for (size_t i = 0; i < a->n_targets; i++) {
        float e = effective_alpha(&a->targets[i]);
        if (isfinite(e) && e != 0.0f)
            v[n++] = e;
    }
    qsort(v, n, sizeof *v, cmp_float);
    float best = 0;
    size_t best_run = 0;
    for (size_t i = 0, j; i < n; i = j) {
        for (j = i; j < n && v[j] == v[i]; j++)
            ;
        if (j - i > best_run)
            best_run = j - i, best = v[i];
    }
    free(v);
    *st = LH_OK;
    return best;
}

/* n floats of src times mul, checked, in dtype dt: a new buffer in *out. */
static lh_status emit(const char *o, const char *name, const float *src, size_t n, float mul,
                      lh_dtype dt, void **out, lh_error *err)
{
    float *f = malloc((n ? n : 1) * sizeof *f);
    if (!f)
        return lh_error_set(err, LH_ERR_NOMEM, "%s: out of memory", o);
    for (size_t i = 0; i < n; i++) {
        f[i] = mul == 1.0f ? src[i] : src[i] * mul;
        if (!isfinite(f[i]) || (dt == LH_F16 && fabsf(f[i]) > 65504.0f)) {
            free(f);
            return lh_error_set(err, LH_ERR_NUMERIC, "%s: tensor '%s' element %zu is %g, which "
                                "%s cannot hold", o, name, i, (double)(src[i] * mul),
                                isfinite(src[i] * mul) ? "F16" : "a LoRA file");
        }
    }
    if (dt == LH_F32) {
        *out = f;
        return LH_OK;
    }
    *out = malloc((n ? n : 1) * 2); /* F16 and BF16 */
    if (*out)
        lh_convert_from_f32(dt, f, *out, n);
    free(f);
    return *out ? LH_OK : lh_error_set(err, LH_ERR_NOMEM, "%s: out of memory", o);
}

typedef struct save_ctx {
    const char *o;
    const lh_gguf_arch *arch;
    const arch_map *map;
    lh_dtype dt;
    float alpha;
    size_t n;                  /* tensors planned */
    lh_gguf_out_tensor *t;     /* [2 * n_targets] */
    char (*names)[LH_GGUF_MAX_NAME + 32]; /* [2 * n_targets] */
    void **bufs;               /* [2 * n_targets] */
    int gated;                 /* T5 FFN kind seen in the names: -1, 0 or 1 */
} save_ctx;

/* A and B of one target, as GGUF tensors. */
static lh_status plan_target(save_ctx *c, const lh_target *t, lh_error *err)
{
    int layer;
    const name_rule *rule = rule_for_hf(c->map, t->name, &layer);
    if (!rule)
        return lh_error_set(err, LH_ERR_UNSUPPORTED, "%s: target '%s' has no GGUF tensor name "
                            "for architecture '%s'", c->o, t->name, c->arch->arch);
    int dec = !strncmp(rule->gg_pre, "dec.", 4);
    if (layer >= 0 && !dec && c->arch->n_layers > 0 && layer >= c->arch->n_layers)
        return lh_error_set(err, LH_ERR_SHAPE, "%s: target '%s' is layer %d but the base model "
                            "has %d layers", c->o, t->name, layer, c->arch->n_layers);
    if (rule->gated >= 0 || strstr(t->name, ".wi_0"))
        c->gated = rule->gated >= 0 ? rule->gated : 1;
    char base[LH_GGUF_MAX_NAME + 16];
    rule_name(base, sizeof base, rule->gg_pre, rule->gg_post, layer);
    float *perm = NULL;
    const float *B = t->B;
    if (c->map->permutes && rule->perm != PERM_NONE) {
        int heads;
        lh_status st = perm_heads(c->o, c->arch, rule->perm, t->name, t->d_out, &heads, err);
        if (st)
            return st;
        perm = malloc((size_t)t->d_out * t->r * sizeof *perm);
        if (!perm)
            return lh_error_set(err, LH_ERR_NOMEM, "%s: out of memory", c->o);
        permute_rows(t->B, perm, t->d_out, t->r, heads, 0);
        B = perm;
    }
    float s = llama_scale(c->alpha, t->r);
    float mul = s == t->scale ? 1.0f : t->scale / s; /* fold what alpha/r does not give */
    for (int k = 0; k < 2; k++) {
        size_t i = c->n++;
        snprintf(c->names[i], sizeof c->names[i], "%s.lora_%c", base, k ? 'b' : 'a');
        lh_gguf_out_tensor *o = &c->t[i];
        o->name = c->names[i];
        o->type = ggml_type_of(c->dt);
        o->n_dims = 2;
        o->ne[0] = k ? t->r : t->d_in;   /* lora_a: [r, in] rows; lora_b: [out, r] rows */
        o->ne[1] = k ? t->d_out : t->r;
        lh_status st = emit(c->o, o->name, k ? B : t->A, (size_t)o->ne[0] * (size_t)o->ne[1],
                            k ? mul : 1.0f, c->dt, &c->bufs[i], err);
        if (st) {
            free(perm);
            return st;
        }
        o->data = c->bufs[i];
    }
    free(perm);
    return LH_OK;
}

static lh_dtype pick_dtype(const lh_adapter *a, const lh_gguf_save_opts *opts)
{
    if (opts && opts->dtype != LH_BOOL)
        return opts->dtype;
    int one = a->dtypes == 0 || (a->dtypes & (a->dtypes - 1)) == 0;
    if (one && (a->dtype == LH_F16 || a->dtype == LH_BF16))
        return a->dtype;
    return LH_F32;
}

/* The key/value pairs; kv has room for 11. */
static size_t plan_keys(const lh_adapter *a, const save_ctx *c, lh_gguf_out_kv *kv)
{
    size_t n = 0;
    kv[n++] = (lh_gguf_out_kv){.key = "general.architecture", .type = LH_GGUF_STRING,
                               .str = c->arch->arch};
    kv[n++] = (lh_gguf_out_kv){.key = "general.type", .type = LH_GGUF_STRING, .str = "adapter"};
    kv[n++] = (lh_gguf_out_kv){.key = "adapter.type", .type = LH_GGUF_STRING, .str = "lora"};
    kv[n++] = (lh_gguf_out_kv){.key = "adapter.lora.alpha", .type = LH_GGUF_FLOAT32,
                               .f32 = c->alpha};
    if (c->arch->n_layers > 0)
        kv[n++] = (lh_gguf_out_kv){.key = "lorahub.block_count", .type = LH_GGUF_UINT32,
                                   .u32 = (uint32_t)c->arch->n_layers};
    if (c->arch->n_head > 0 && c->arch->n_head_kv > 0) {
        kv[n++] = (lh_gguf_out_kv){.key = "lorahub.attention.head_count",
                                   .type = LH_GGUF_UINT32, .u32 = (uint32_t)c->arch->n_head};
        kv[n++] = (lh_gguf_out_kv){.key = "lorahub.attention.head_count_kv",
                                   .type = LH_GGUF_UINT32, .u32 = (uint32_t)c->arch->n_head_kv};
    }
    int gated = c->gated >= 0 ? c->gated : c->arch->ffn_gated;
    if (!strcmp(c->arch->arch, "t5") && gated >= 0)
        kv[n++] = (lh_gguf_out_kv){.key = "lorahub.ffn_gated", .type = LH_GGUF_UINT32,
                                   .u32 = (uint32_t)gated};
    if (a->base_model && *a->base_model)
        kv[n++] = (lh_gguf_out_kv){.key = "lorahub.base_model", .type = LH_GGUF_STRING,
                                   .str = a->base_model};
    if (a->task_type && *a->task_type)
        kv[n++] = (lh_gguf_out_kv){.key = "lorahub.task_type", .type = LH_GGUF_STRING,
                                   .str = a->task_type};
    return n;
}

lh_status lh_gguf_save_lora_opts(const lh_adapter *a, const lh_gguf_arch *arch, const char *path,
                                 const lh_gguf_save_opts *opts, lh_error *err)
{
    if (!arch || !arch->arch[0])
        return lh_error_set(err, LH_ERR_ARG, "%s: a GGUF adapter needs the base model's "
                            "architecture; give the base model (--base)", path);
    save_ctx c = {.o = path, .arch = arch, .map = find_arch(arch->arch), .gated = -1};
    if (!c.map)
        return no_arch_map(path, arch->arch, err);
    if (opts && !opts->force && lh_path_exists(path))
        return lh_error_set(err, LH_ERR_EXISTS, "%s: already exists (use --force to replace it)",
                            path);
    c.dt = pick_dtype(a, opts);
    if (c.dt != LH_F32 && c.dt != LH_F16 && c.dt != LH_BF16)
        return lh_error_set(err, LH_ERR_ARG, "%s: GGUF adapters are written as F32, F16 or "
                            "BF16, not %s", path, lh_dtype_name(c.dt) ? lh_dtype_name(c.dt) : "?");
    lh_status st;
    c.alpha = pick_alpha(a, err, &st);
    if (st)
        return st;
    if (c.alpha == 0.0f)
        c.alpha = (float)(a->r > 0 ? a->r : 1); /* no usable alpha: fold every scale */
    size_t cap = 2 * a->n_targets + 1;
    c.t = calloc(cap, sizeof *c.t);
    c.names = calloc(cap, sizeof *c.names);
    c.bufs = calloc(cap, sizeof *c.bufs);
    if (!c.t || !c.names || !c.bufs)
        st = lh_error_set(err, LH_ERR_NOMEM, "%s: out of memory", path);
    for (size_t i = 0; i < a->n_targets && !st; i++)
        st = plan_target(&c, &a->targets[i], err);
    if (!st) {
        lh_gguf_out_kv kv[12];
        size_t n_kv = plan_keys(a, &c, kv);
        st = lh_gguf_write(path, kv, n_kv, c.t, c.n, err);
    }
    for (size_t i = 0; c.bufs && i < c.n; i++)
        free(c.bufs[i]);
    free(c.bufs);
    free(c.names);
    free(c.t);
    return lh_error_one_line(st, err);
}

lh_status lh_gguf_save_lora(const lh_adapter *a, const lh_gguf_arch *arch, const char *path,
                            lh_error *err)
{
    return lh_gguf_save_lora_opts(a, arch, path, NULL, err);
}

/* ---- reading ---- */

typedef struct lora_pair {
    const lh_gguf_tensor *a, *b;   /* ne [in, r] and [r, out] */
    const name_rule *rule;
    char hf[160];
} lora_pair;

typedef struct load_ctx {
    const char *o;
    const lh_gguf *g;
    const arch_map *map;
    lh_gguf_arch arch;   /* the file's arch with the head counts and FFN kind in use */
    float alpha;         /* 0: missing (scale 1, as llama.cpp) */
    size_t n;
    lora_pair *pairs;    /* [n] */
} load_ctx;

static lh_status want_string(load_ctx *c, const char *key, const char *value, lh_error *err)
{
    const lh_gguf_kv *kv = lh_gguf_find_kv(c->g, key);
    if (!kv)
        return lh_error_set(err, LH_ERR_FORMAT, "%s: no %s key: not a GGUF LoRA adapter", c->o,
                            key);
    if (kv->is_array || kv->type != LH_GGUF_STRING)
        return lh_error_set(err, LH_ERR_FORMAT, "%s: %s is %s%s, not a string", c->o, key,
                            kv->is_array ? "an array of " : "", lh_gguf_type_name(kv->type));
    if (value && strcmp(kv->str, value))
        return lh_error_set(err, LH_ERR_FORMAT, "%s: %s is '%s', not '%s'%s", c->o, key, kv->str,
                            value, strcmp(key, "general.type") ? "" : ": not a LoRA adapter");
    return LH_OK;
}

static int file_count(const lh_gguf *g, const char *key, int *out)
{
    int64_t v;
    if (!lh_gguf_kv_int(lh_gguf_find_kv(g, key), &v) || v <= 0 || v > 1 << 20)
        return 0;
    *out = (int)v;
    return 1;
}

/* Keys, the arch check against the base, head counts, T5's FFN kind. */
static lh_status read_keys(load_ctx *c, const lh_gguf_arch *base, lh_error *err)
{
    lh_status st;
    if ((st = want_string(c, "general.type", "adapter", err)) ||
        (st = want_string(c, "general.architecture", NULL, err)) ||
        (st = want_string(c, "adapter.type", "lora", err)))
        return st;
    const char *arch = lh_gguf_find_kv(c->g, "general.architecture")->str;
    if (base && base->arch[0] && strcmp(base->arch, arch))
        return lh_error_set(err, LH_ERR_SHAPE, "%s: a GGUF adapter for architecture '%s', but the "
                            "base model is '%s'", c->o, arch, base->arch);
    if (!(c->map = find_arch(arch)))
        return no_arch_map(c->o, arch, err);
    const lh_gguf_kv *kv = lh_gguf_find_kv(c->g, "adapter.lora.alpha");
    if (kv) {
        if (kv->is_array || kv->type != LH_GGUF_FLOAT32)
            return lh_error_set(err, LH_ERR_FORMAT, "%s: adapter.lora.alpha is %s%s, not f32 "
                                "(llama.cpp requires f32)", c->o, kv->is_array ? "an array of " : "",
                                lh_gguf_type_name(kv->type));
        memcpy(&c->alpha, kv->data, 4);
        if (!isfinite(c->alpha))
            return lh_error_set(err, LH_ERR_FORMAT, "%s: adapter.lora.alpha is not finite", c->o);
    }
    snprintf(c->arch.arch, sizeof c->arch.arch, "%s", arch);
    c->arch.n_layers = base && base->n_layers > 0 ? base->n_layers : 0;
    /* the heads the rows were permuted with: the file's own, else the base's */
    int base_heads = base && base->n_head > 0 && base->n_head_kv > 0;
    if (file_count(c->g, "lorahub.attention.head_count", &c->arch.n_head) &&
        file_count(c->g, "lorahub.attention.head_count_kv", &c->arch.n_head_kv)) {
        if (base_heads && (base->n_head != c->arch.n_head || base->n_head_kv != c->arch.n_head_kv))
            return lh_error_set(err, LH_ERR_SHAPE, "%s: written for %d attention heads (%d "
                                "key/value), but the base model has %d (%d)", c->o,
                                c->arch.n_head, c->arch.n_head_kv, base->n_head, base->n_head_kv);
    } else if (base_heads) {
        c->arch.n_head = base->n_head;
        c->arch.n_head_kv = base->n_head_kv;
    } else {
        c->arch.n_head = c->arch.n_head_kv = 0; /* a permuted target will say so */
    }
    int64_t gated;
    c->arch.ffn_gated = 0;
    if (base && base->ffn_gated >= 0)
        c->arch.ffn_gated = base->ffn_gated;
    else if (lh_gguf_kv_int(lh_gguf_find_kv(c->g, "lorahub.ffn_gated"), &gated))
        c->arch.ffn_gated = gated == 1;
    else
        for (size_t i = 0; i < c->g->n_tensors; i++)
            if (strstr(c->g->tensors[i].name, ".ffn_gate.weight.lora_"))
                c->arch.ffn_gated = 1;
    return LH_OK;
}

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && !memcmp(s + n - k, suffix, k);
}

static lh_status check_pair(load_ctx *c, const char *base, const lora_pair *p, lh_error *err)
{
    const lh_gguf_tensor *t[2] = {p->a, p->b};
    for (int k = 0; k < 2; k++) {
        if (t[k]->type != LH_GGML_F32 && t[k]->type != LH_GGML_F16 && t[k]->type != LH_GGML_BF16)
            return lh_error_set(err, LH_ERR_UNSUPPORTED, "%s: tensor '%s' is %s; lorahub reads "
                                "F32, F16 and BF16 LoRA tensors", c->o, t[k]->name,
                                lh_ggml_type_name(t[k]->type));
        if (t[k]->n_dims != 2 || t[k]->ne[0] <= 0 || t[k]->ne[1] <= 0 ||
            t[k]->ne[0] > INT32_MAX || t[k]->ne[1] > INT32_MAX)
            return lh_error_set(err, LH_ERR_SHAPE, "%s: tensor '%s' is not a non-empty matrix",
                                c->o, t[k]->name);
    }
    if (p->a->ne[1] != p->b->ne[0])
        return lh_error_set(err, LH_ERR_SHAPE, "%s: '%s': lora_a has rank %" PRId64 " but lora_b "
                            "has %" PRId64, c->o, base, p->a->ne[1], p->b->ne[0]);
    return LH_OK;
}

/* One lora_a/lora_b pair named base: its HF name and checks. */
static lh_status add_pair(load_ctx *c, const lh_gguf_tensor *a, lh_error *err)
{
    char base[LH_GGUF_MAX_NAME + 16], bname[LH_GGUF_MAX_NAME + 32];
    size_t len = strlen(a->name) - strlen(".lora_a");
    snprintf(base, sizeof base, "%.*s", (int)len, a->name);
    snprintf(bname, sizeof bname, "%s.lora_b", base);
    lora_pair *p = &c->pairs[c->n];
    p->a = a;
    p->b = lh_gguf_find_tensor(c->g, bname);
    if (!p->b)
        return lh_error_set(err, LH_ERR_FORMAT, "%s: '%s' has a lora_a but no lora_b", c->o, base);
    if (ends_with(base, "token_embd.weight"))
        return lh_error_set(err, LH_ERR_UNSUPPORTED, "%s: '%s' is an embedding LoRA, which "
                            "lorahub does not support", c->o, base);
    int layer;
    p->rule = rule_for_gguf(c->map, base, c->arch.ffn_gated, &layer);
    if (!p->rule)
        return lh_error_set(err, LH_ERR_UNSUPPORTED, "%s: tensor '%s' has no HF name for "
                            "architecture '%s'", c->o, base, c->arch.arch);
    int dec = !strncmp(p->rule->gg_pre, "dec.", 4);
    if (layer >= 0 && !dec && c->arch.n_layers > 0 && layer >= c->arch.n_layers)
        return lh_error_set(err, LH_ERR_SHAPE, "%s: '%s' is layer %d but the base model has %d "
                            "layers", c->o, base, layer, c->arch.n_layers);
    rule_name(p->hf, sizeof p->hf, p->rule->hf_pre, p->rule->hf_post, layer);
    lh_status st = check_pair(c, base, p, err);
    if (!st)
        c->n++;
    return st;
}

static lh_status collect_pairs(load_ctx *c, lh_error *err)
{
    c->pairs = calloc(c->g->n_tensors + 1, sizeof *c->pairs);
    if (!c->pairs)
        return lh_error_set(err, LH_ERR_NOMEM, "%s: out of memory", c->o);
    for (size_t i = 0; i < c->g->n_tensors; i++) {
        const lh_gguf_tensor *t = &c->g->tensors[i];
        lh_status st = LH_OK;
        if (ends_with(t->name, ".lora_a"))
            st = add_pair(c, t, err);
        else if (ends_with(t->name, ".lora_b")) {
            char aname[LH_GGUF_MAX_NAME + 16];
            snprintf(aname, sizeof aname, "%.*s.lora_a",
                     (int)(strlen(t->name) - strlen(".lora_b")), t->name);
            if (!lh_gguf_find_tensor(c->g, aname))
                st = lh_error_set(err, LH_ERR_FORMAT, "%s: '%s' has no lora_a", c->o, t->name);
        } else if (!ends_with(t->name, "_norm.weight")) /* llama.cpp skips those too */
            st = lh_error_set(err, LH_ERR_FORMAT, "%s: tensor '%s' is neither a .lora_a nor a "
                              ".lora_b", c->o, t->name);
        if (st)
            return st;
    }
    if (!c->n)
        return lh_error_set(err, LH_ERR_FORMAT, "%s: holds no LoRA tensors", c->o);
    return LH_OK;
}

static lh_dtype dtype_of(uint32_t ggml_type)
{
    return ggml_type == LH_GGML_F16 ? LH_F16 : ggml_type == LH_GGML_BF16 ? LH_BF16 : LH_F32;
}

/* Tensor data to F32, refusing non-finite values. */
static lh_status read_floats(load_ctx *c, const lh_gguf_tensor *t, float *dst, lh_error *err)
{
    size_t n = (size_t)t->ne[0] * (size_t)t->ne[1];
    lh_convert_to_f32(dtype_of(t->type), t->data, dst, n);
    for (size_t i = 0; i < n; i++)
        if (!isfinite(dst[i]))
            return lh_error_set(err, LH_ERR_NUMERIC, "%s: tensor '%s' element %zu is not finite",
                                c->o, t->name, i);
    return LH_OK;
}

static lh_status fill_target(load_ctx *c, const lora_pair *p, lh_target *t, lh_error *err)
{
    lh_status st = read_floats(c, p->a, t->A, err);
    if (st)
        return st;
    if (!c->map->permutes || p->rule->perm == PERM_NONE)
        return read_floats(c, p->b, t->B, err);
    int heads;
    if ((st = perm_heads(c->o, &c->arch, p->rule->perm, p->b->name, t->d_out, &heads, err)))
        return st;
    float *tmp = malloc((size_t)t->d_out * t->r * sizeof *tmp);
    if (!tmp)
        return lh_error_set(err, LH_ERR_NOMEM, "%s: out of memory", c->o);
    st = read_floats(c, p->b, tmp, err);
    if (!st)
        permute_rows(tmp, t->B, t->d_out, t->r, heads, 1);
    free(tmp);
    return st;
}

/* The adapter-wide fields, as a PEFT load would set them. */
static void describe(load_ctx *c, lh_adapter *a)
{
    a->format = LH_FORMAT_GGUF;
    int best = 0, best_n = 0;
    for (size_t i = 0; i < a->n_targets; i++) {
        int n = 0;
        for (size_t j = 0; j < a->n_targets; j++)
            n += a->targets[j].r == a->targets[i].r;
        if (n > best_n || (n == best_n && a->targets[i].r < best))
            best = a->targets[i].r, best_n = n;
    }
    a->r = best;
    a->lora_alpha = c->alpha != 0.0f ? c->alpha : best;
    a->dtypes = 0;
    for (size_t i = 0; i < c->n; i++)
        a->dtypes |= 1u << dtype_of(c->pairs[i].a->type) | 1u << dtype_of(c->pairs[i].b->type);
    a->dtype = dtype_of(c->pairs[0].a->type);
    a->file_size = c->g->size;
    const char *s = kv_str(c->g, "lorahub.base_model");
    a->base_model = s ? strdup(s) : NULL;
    s = kv_str(c->g, "lorahub.task_type");
    a->task_type = s ? strdup(s) : NULL;
}

static lh_status build_adapter(load_ctx *c, lh_adapter **out, lh_error *err)
{
    lh_target_shape *shapes = calloc(c->n, sizeof *shapes);
    if (!shapes)
        return lh_error_set(err, LH_ERR_NOMEM, "%s: out of memory", c->o);
    for (size_t i = 0; i < c->n; i++)
        shapes[i] = (lh_target_shape){.name = c->pairs[i].hf, .r = (int)c->pairs[i].a->ne[1],
                                      .d_in = (int)c->pairs[i].a->ne[0],
                                      .d_out = (int)c->pairs[i].b->ne[1]};
    lh_adapter *a = NULL;
    lh_status st = lh_adapter_create(shapes, c->n, &a, err);
    free(shapes);
    if (st) {
        lh_error_prefix(err, c->o);
        return st;
    }
    for (size_t i = 0; i < c->n && !st; i++) {
        lh_target *t = (lh_target *)lh_adapter_find(a, c->pairs[i].hf);
        st = fill_target(c, &c->pairs[i], t, err);
        t->scale = llama_scale(c->alpha, t->r);
        t->alpha = c->alpha != 0.0f ? c->alpha : (float)t->r;
    }
    if (!st)
        describe(c, a);
    size_t nl;
    const char *bn = lh_path_base(c->o, &nl);
    if (!st && (!(a->path = strdup(c->o)) || !(a->name = strndup(bn, nl))))
        st = lh_error_set(err, LH_ERR_NOMEM, "%s: out of memory", c->o);
    if (!st && ((a->base_model == NULL) != (kv_str(c->g, "lorahub.base_model") == NULL) ||
                (a->task_type == NULL) != (kv_str(c->g, "lorahub.task_type") == NULL)))
        st = lh_error_set(err, LH_ERR_NOMEM, "%s: out of memory", c->o);
    if (st) {
        lh_adapter_free(a);
        return st;
    }
    *out = a;
    return LH_OK;
}

lh_status lh_gguf_lora_read(const lh_gguf *g, const lh_gguf_arch *arch, lh_adapter **out,
                            lh_error *err)
{
    *out = NULL;
    load_ctx c = {.o = g->path, .g = (lh_gguf *)g};
    lh_status st = read_keys(&c, arch, err);
    if (!st)
        st = collect_pairs(&c, err);
    if (!st)
        st = build_adapter(&c, out, err);
    free(c.pairs);
    return lh_error_one_line(st, err);
}

lh_status lh_gguf_load_lora(const char *path, const lh_gguf_arch *arch, lh_adapter **out,
                            lh_error *err)
{
    *out = NULL;
    lh_gguf *g = NULL;
    lh_status st = lh_gguf_open(path, LH_GGUF_FULL, &g, err);
    if (!st)
        st = lh_gguf_lora_read(g, arch, out, err);
    lh_gguf_free(g);
    return st;
}

lh_status lh_gguf_load_module(const char *path, const lh_gguf_arch *base, lh_adapter **out,
                              lh_error *err)
{
    if (base && lh_gguf_sniff(path))
        return lh_gguf_load_lora(path, base, out, err);
    return lh_adapter_load(path, out, err);
}

/* model/t5/weights.c - T5 checkpoint tensors into one F32 blob, and the
 * adapter-name map.
 *
 * Hugging Face names (modeling_t5.py): shared.weight (safetensors files
 * keep one of shared / encoder.embed_tokens / decoder.embed_tokens, .bin
 * files all three: any is accepted), {encoder,decoder}.block.{i}.layer.{j}
 * with layer 0 SelfAttention, decoder layer 1 EncDecAttention, the last
 * layer DenseReluDense; block 0's relative_attention_bias; final_layer_norm;
 * lm_head.weight unless tied. Ignored as Hugging Face ignores them: the
 * decoder's unused EncDecAttention.relative_attention_bias and the
 * lm_head.weight of a tied model. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/checkpoint.h"
#include "t5.h"

static size_t stack_floats(const t5_config *c, size_t L, int cross)
{
    size_t D = (size_t)c->d_model, NI = (size_t)c->n_heads * c->d_kv, F = (size_t)c->d_ff;
    size_t attn = D + 4 * NI * D;
    size_t ffn = D + (c->gated ? 3 : 2) * F * D;
    return (size_t)c->num_buckets * c->n_heads + L * (attn * (cross ? 2 : 1) + ffn) + D;
}

/* Carve one stack's arrays out of *p. */
static void place_stack(const t5_config *c, size_t L, int cross, t5_stack_w *s, float **p)
{
    size_t D = (size_t)c->d_model, NI = (size_t)c->n_heads * c->d_kv, F = (size_t)c->d_ff;
    memset(s, 0, sizeof *s);
    s->rel_bias = *p; *p += (size_t)c->num_buckets * c->n_heads;
    t5_attn_w *a[2] = {&s->self, &s->cross};
    for (int k = 0; k < (cross ? 2 : 1); k++) {
        a[k]->ln = *p; *p += L * D;
        a[k]->q = *p; *p += L * NI * D;
        a[k]->k = *p; *p += L * NI * D;
        a[k]->v = *p; *p += L * NI * D;
        a[k]->o = *p; *p += L * D * NI;
    }
    s->ffn.ln = *p; *p += L * D;
    s->ffn.wi0 = *p; *p += L * F * D;
    if (c->gated) {
        s->ffn.wi1 = *p; *p += L * F * D;
    }
    s->ffn.wo = *p; *p += L * D * F;
    s->final_ln = *p; *p += D;
}

lh_status t5_model_alloc(const t5_config *c, t5_model **out, lh_error *err)
{
    *out = NULL;
    size_t V = (size_t)c->vocab, D = (size_t)c->d_model;
    /* The parser bounds every factor (d_model <= 2^16, d_ff <= 2^18, inner
     * <= 2^17, layers <= 2^10, vocab <= 2^22): no product overflows 64 bits. */
    size_t total = V * D * (c->tie_embeddings ? 1 : 2) +
                   stack_floats(c, (size_t)c->n_enc_layers, 0) +
                   stack_floats(c, (size_t)c->n_dec_layers, 1);
    if (total > SIZE_MAX / sizeof(float) / 2)
        return lh_error_set(err, LH_ERR_NOMEM, "model of %zu parameters is too large", total);
    t5_model *m = calloc(1, sizeof *m);
    if (!m)
        return lh_error_set(err, LH_ERR_NOMEM, "out of memory");
    m->c = *c;
    m->blob_floats = total;
    m->blob = calloc(total, sizeof(float));
    if (!m->blob) {
        free(m);
        return lh_error_set(err, LH_ERR_NOMEM, "out of memory for %zu MiB of weights",
                            total * sizeof(float) >> 20);
    }
    float *p = m->blob;
    m->w.embed = p; p += V * D;
    place_stack(c, (size_t)c->n_enc_layers, 0, &m->w.enc, &p);
    place_stack(c, (size_t)c->n_dec_layers, 1, &m->w.dec, &p);
    m->w.lm_head = c->tie_embeddings ? m->w.embed : p;
    *out = m;
    return LH_OK;
}

void t5_model_free(t5_model *m)
{
    if (!m)
        return;
    free(m->blob);
    free(m);
}

static const char *const attn_names[4] = {"q", "k", "v", "o"};

static void want_attn(lh_want_list *l, const t5_config *c, const t5_attn_w *a, const char *stack,
                      int b, int j, const char *kind)
{
    int64_t D = c->d_model, NI = (int64_t)c->n_heads * c->d_kv;
    size_t B = (size_t)b;
    float *dst[4] = {a->q + B * NI * D, a->k + B * NI * D, a->v + B * NI * D, a->o + B * D * NI};
    for (int k = 0; k < 4; k++)
        lh_want_add(l, dst[k], k < 3 ? NI : D, k < 3 ? D : NI, "%s.block.%d.layer.%d.%s.%s.weight",
                    stack, b, j, kind, attn_names[k]);
    lh_want_add(l, a->ln + B * D, D, 0, "%s.block.%d.layer.%d.layer_norm.weight", stack, b, j);
}

static void want_stack(lh_want_list *l, const t5_config *c, const t5_stack_w *s,
                       const char *stack, int n_layers, int cross)
{
    int64_t D = c->d_model, F = c->d_ff;
    lh_want_add(l, s->rel_bias, c->num_buckets, c->n_heads,
                "%s.block.0.layer.0.SelfAttention.relative_attention_bias.weight", stack);
    for (int b = 0; b < n_layers; b++) {
        size_t B = (size_t)b;
        int jf = cross ? 2 : 1;
        want_attn(l, c, &s->self, stack, b, 0, "SelfAttention");
        if (cross)
            want_attn(l, c, &s->cross, stack, b, 1, "EncDecAttention");
        const char *fmt = "%s.block.%d.layer.%d.DenseReluDense.%s.weight";
        if (c->gated) {
            lh_want_add(l, s->ffn.wi0 + B * F * D, F, D, fmt, stack, b, jf, "wi_0");
            lh_want_add(l, s->ffn.wi1 + B * F * D, F, D, fmt, stack, b, jf, "wi_1");
        } else {
            lh_want_add(l, s->ffn.wi0 + B * F * D, F, D, fmt, stack, b, jf, "wi");
        }
        lh_want_add(l, s->ffn.wo + B * D * F, D, F, fmt, stack, b, jf, "wo");
        lh_want_add(l, s->ffn.ln + B * D, D, 0, "%s.block.%d.layer.%d.layer_norm.weight", stack, b,
                    jf);
    }
    lh_want_add(l, s->final_ln, D, 0, "%s.final_layer_norm.weight", stack);
}

static int ignorable(const void *ctx, const char *name)
{
    const t5_config *c = ctx;
    if (!strcmp(name, "decoder.block.0.layer.1.EncDecAttention.relative_attention_bias.weight"))
        return 1;
    return c->tie_embeddings && !strcmp(name, "lm_head.weight");
}

lh_status t5_list_tensors(const t5_model *m, int aliases, lh_want_list *l, lh_error *err)
{
    const t5_config *c = &m->c;
    size_t per_block = 2 * 5 + 4;
    *l = (lh_want_list){.cap = 8 + per_block * (size_t)(c->n_enc_layers + c->n_dec_layers),
                        .model_type = "t5", .ignorable = ignorable, .ctx = &m->c};
    if (!(l->w = calloc(l->cap, sizeof *l->w)))
        return lh_error_set(err, LH_ERR_NOMEM, "out of memory");
    const char *embeds[3] = {"shared.weight", "encoder.embed_tokens.weight",
                             "decoder.embed_tokens.weight"};
    for (int k = 0; k < (aliases ? 3 : 1); k++) {
        lh_want_add(l, m->w.embed, c->vocab, c->d_model, "%s", embeds[k]);
        l->w[l->n - 1].group = 1;
    }
    want_stack(l, c, &m->w.enc, "encoder", c->n_enc_layers, 0);
    want_stack(l, c, &m->w.dec, "decoder", c->n_dec_layers, 1);
    if (!c->tie_embeddings)
        lh_want_add(l, m->w.lm_head, c->vocab, c->d_model, "lm_head.weight");
    return LH_OK;
}

lh_status t5_model_load_weights(const char *dir, const t5_config *c, t5_model **out,
                                lh_error *err)
{
    *out = NULL;
    t5_model *m = NULL;
    lh_status s = t5_model_alloc(c, &m, err);
    if (s)
        return s;
    lh_want_list l;
    if ((s = t5_list_tensors(m, 1, &l, err))) {
        t5_model_free(m);
        return s;
    }
    s = lh_ckpt_load(dir, &l, err);
    free(l.w);
    if (s) {
        t5_model_free(m);
        return s;
    }
    *out = m;
    return LH_OK;
}

/* Parse a decimal block index below n at *p (no leading zeros). */
static int parse_index(const char **p, int n)
{
    const char *q = *p;
    if (*q < '0' || *q > '9' || (*q == '0' && q[1] >= '0' && q[1] <= '9'))
        return -1;
    long v = 0;
    while (*q >= '0' && *q <= '9') {
        v = v * 10 + (*q++ - '0');
        if (v >= n)
            return -1;
    }
    *p = q;
    return (int)v;
}

/* "<stack>.block.<b>.layer.<j>.<module>" -> (decoder?, block, projection).
 * In mods, the leading character is the layer index j; 'F' stands for the
 * feed-forward layer's, 1 in the encoder and 2 in the decoder. */
static int parse_target(const t5_config *c, const char *name, int *dec, int *block, int *proj)
{
    static const char *const mods[T5_NPROJ] = {
        "0.SelfAttention.q",   "0.SelfAttention.k",   "0.SelfAttention.v",   "0.SelfAttention.o",
        "1.EncDecAttention.q", "1.EncDecAttention.k", "1.EncDecAttention.v", "1.EncDecAttention.o",
        "F.DenseReluDense.wi_0", "F.DenseReluDense.wi_1", "F.DenseReluDense.wo"};
    const char *p;
    if (!strncmp(name, "encoder.block.", 14))
        *dec = 0;
    else if (!strncmp(name, "decoder.block.", 14))
        *dec = 1;
    else
        return -1;
    p = name + 14;
    int b = parse_index(&p, *dec ? c->n_dec_layers : c->n_enc_layers);
    if (b < 0 || strncmp(p, ".layer.", 7))
        return -1;
    p += 7;
    char ffn_layer = *dec ? '2' : '1';
    for (int k = 0; k < T5_NPROJ; k++) {
        const char *m = mods[k];
        if (k >= T5_CQ && k <= T5_CO && !*dec)
            continue;
        if (k == T5_WI1 && !c->gated)
            continue;
        if (k == T5_WI0 && !c->gated)
            m = "F.DenseReluDense.wi";
        if ((m[0] == 'F' ? p[0] == ffn_layer : p[0] == m[0]) && !strcmp(p + 1, m + 1)) {
            *block = b;
            *proj = k;
            return 0;
        }
    }
    return -1;
}

lh_status t5_lora_bind(const t5_model *m, const lh_adapter *a, t5_lora *out, lh_error *err)
{
    const t5_config *c = &m->c;
    out->first_enc = c->n_enc_layers;
    out->enc = calloc((size_t)c->n_enc_layers * T5_NPROJ, sizeof *out->enc);
    out->dec = calloc((size_t)c->n_dec_layers * T5_NPROJ, sizeof *out->dec);
    if (!out->enc || !out->dec) {
        t5_lora_release(out);
        return lh_error_set(err, LH_ERR_NOMEM, "out of memory");
    }
    if (!a)
        return LH_OK;
    const char *an = a->name ? a->name : a->path ? a->path : "adapter";
    int D = c->d_model, NI = c->n_heads * c->d_kv, F = c->d_ff;
    const int d_in[T5_NPROJ] = {D, D, D, NI, D, D, D, NI, D, D, F};
    const int d_out[T5_NPROJ] = {NI, NI, NI, D, NI, NI, NI, D, F, F, D};
    for (size_t i = 0; i < a->n_targets; i++) {
        const lh_target *t = &a->targets[i];
        int dec, b, k;
        if (parse_target(c, t->name, &dec, &b, &k)) {
            t5_lora_release(out);
            return lh_error_set(err, LH_ERR_SHAPE,
                                "%s: target '%s' is not an adaptable linear layer of this T5 model "
                                "(%d encoder, %d decoder blocks)", an, t->name, c->n_enc_layers,
                                c->n_dec_layers);
        }
        if (t->d_in != d_in[k] || t->d_out != d_out[k] || t->r < 0 || (t->r && (!t->A || !t->B))) {
            t5_lora_release(out);
            return lh_error_set(err, LH_ERR_SHAPE,
                                "%s: target '%s' is %d -> %d, the model's layer is %d -> %d", an,
                                t->name, t->d_in, t->d_out, d_in[k], d_out[k]);
        }
        if (t->r == 0)
            continue;
        (dec ? out->dec : out->enc)[(size_t)b * T5_NPROJ + k] = t;
        if (!dec && b < out->first_enc)
            out->first_enc = b;
    }
    return LH_OK;
}

void t5_lora_release(t5_lora *l)
{
    if (!l)
        return;
    free(l->enc);
    free(l->dec);
    l->enc = l->dec = NULL;
}

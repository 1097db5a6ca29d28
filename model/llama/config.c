/* model/llama/config.c - config.json of a LLaMA-family checkpoint.
 *
 * Defaults follow the Hugging Face configuration classes (LlamaConfig,
 * MistralConfig, Qwen2Config). Whatever would change the computation in a
 * way the forward pass does not implement is refused, naming the key:
 * silently ignoring it would give plausible but wrong losses. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "llama.h"

static int is_null(const lh_json *v)
{
    return !v || v->type == LH_JSON_NULL;
}

/* An integer key in [lo, hi]; def when absent or null (def < lo means required). */
static lh_status get_int(const lh_json *j, const char *origin, const char *key, long long lo,
                         long long hi, long long def, int *out, lh_error *err)
{
    const lh_json *v = lh_json_get(j, key);
    if (is_null(v)) {
        if (def < lo)
            return lh_error_set(err, LH_ERR_NOT_FOUND, "%s: missing key '%s'", origin, key);
        *out = (int)def;
        return LH_OK;
    }
    long long x;
    if (!lh_json_as_int64(v, &x))
        return lh_error_set(err, LH_ERR_FORMAT, "%s: '%s' is not an integer", origin, key);
    if (x < lo || x > hi)
        return lh_error_set(err, LH_ERR_UNSUPPORTED, "%s: '%s' = %lld is outside [%lld, %lld]",
                            origin, key, x, lo, hi);
    *out = (int)x;
    return LH_OK;
}

static lh_status get_num(const lh_json *j, const char *origin, const char *key, double def,
                         double *out, lh_error *err)
{
    const lh_json *v = lh_json_get(j, key);
    if (is_null(v)) {
        if (isnan(def))
            return lh_error_set(err, LH_ERR_NOT_FOUND, "%s: missing key '%s'", origin, key);
        *out = def;
        return LH_OK;
    }
    if (!lh_json_as_number(v, out) || !isfinite(*out))
        return lh_error_set(err, LH_ERR_FORMAT, "%s: '%s' is not a finite number", origin, key);
    return LH_OK;
}

static lh_status get_bool(const lh_json *j, const char *origin, const char *key, int def,
                          int *out, lh_error *err)
{
    const lh_json *v = lh_json_get(j, key);
    if (is_null(v)) {
        *out = def;
        return LH_OK;
    }
    if (!lh_json_as_bool(v, out))
        return lh_error_set(err, LH_ERR_FORMAT, "%s: '%s' is not a boolean", origin, key);
    return LH_OK;
}

static lh_status parse_rope_scaling(const lh_json *rs, const char *origin, nm_config *c,
                                    lh_error *err)
{
    c->rope_type = NM_ROPE_DEFAULT;
    if (is_null(rs))
        return LH_OK;
    if (rs->type != LH_JSON_OBJECT)
        return lh_error_set(err, LH_ERR_FORMAT, "%s: 'rope_scaling' is not an object", origin);
    const char *type = NULL;
    const char *tkey = "rope_scaling.rope_type";
    if (!lh_json_as_string(lh_json_get(rs, "rope_type"), &type)) {
        tkey = "rope_scaling.type";
        if (!lh_json_as_string(lh_json_get(rs, "type"), &type))
            return lh_error_set(err, LH_ERR_FORMAT,
                                "%s: 'rope_scaling' has no string 'rope_type' or 'type'", origin);
    }
    lh_status s;
    if (!strcmp(type, "default"))
        return LH_OK;
    if (!strcmp(type, "linear")) {
        c->rope_type = NM_ROPE_LINEAR;
        if ((s = get_num(rs, origin, "factor", NAN, &c->rope_factor, err)))
            return s;
    } else if (!strcmp(type, "llama3")) {
        c->rope_type = NM_ROPE_LLAMA3;
        if ((s = get_num(rs, origin, "factor", NAN, &c->rope_factor, err)) ||
            (s = get_num(rs, origin, "low_freq_factor", NAN, &c->rope_low_freq_factor, err)) ||
            (s = get_num(rs, origin, "high_freq_factor", NAN, &c->rope_high_freq_factor, err)) ||
            (s = get_num(rs, origin, "original_max_position_embeddings", NAN,
                         &c->rope_orig_max_pos, err)))
            return s;
        if (!(c->rope_high_freq_factor > c->rope_low_freq_factor) ||
            !(c->rope_low_freq_factor > 0) || !(c->rope_orig_max_pos > 0))
            return lh_error_set(err, LH_ERR_FORMAT,
                                "%s: rope_scaling needs high_freq_factor > low_freq_factor > 0 "
                                "and original_max_position_embeddings > 0", origin);
    } else {
        return lh_error_set(err, LH_ERR_UNSUPPORTED,
                            "%s: %s '%s' is not supported (default, linear, llama3)", origin,
                            tkey, type);
    }
    if (!(c->rope_factor > 0))
        return lh_error_set(err, LH_ERR_FORMAT, "%s: rope_scaling.factor must be > 0", origin);
    return LH_OK;
}

/* bos_token_id and eos_token_id (one id or a list), each < vocab_size. */
static lh_status parse_special_ids(const lh_json *j, const char *origin, nm_config *c,
                                   lh_error *err)
{
    lh_status s;
    c->bos_id = -1;
    const lh_json *bv = lh_json_get(j, "bos_token_id");
    if (!is_null(bv) && (s = get_int(j, origin, "bos_token_id", 0, c->vocab - 1, 0, &c->bos_id,
                                     err)))
        return s;
    const lh_json *ev = lh_json_get(j, "eos_token_id");
    if (!is_null(ev)) {
        if (ev->type == LH_JSON_ARRAY) {
            if (ev->len > NM_MAX_EOS)
                return lh_error_set(err, LH_ERR_UNSUPPORTED, "%s: more than %d eos_token_id values",
                                    origin, NM_MAX_EOS);
            for (size_t i = 0; i < ev->len; i++) {
                long long x;
                if (!lh_json_as_int64(ev->items[i], &x) || x < 0 || x >= c->vocab)
                    return lh_error_set(err, LH_ERR_FORMAT,
                                        "%s: eos_token_id[%zu] is not a token id < vocab_size",
                                        origin, i);
                c->eos_ids[c->n_eos++] = (int)x;
            }
        } else {
            if ((s = get_int(j, origin, "eos_token_id", 0, c->vocab - 1, 0, &c->eos_ids[0], err)))
                return s;
            c->n_eos = 1;
        }
    }
    return LH_OK;
}

const char *const nm_model_types[] = {"llama", "mistral", "qwen2", NULL};

lh_status nm_config_parse(const lh_json *j, const char *origin, nm_config *c, lh_error *err)
{
    memset(c, 0, sizeof *c);
    if (!origin)
        origin = "config.json";
    if (!j || j->type != LH_JSON_OBJECT)
        return lh_error_set(err, LH_ERR_FORMAT, "%s: not a JSON object", origin);
    const char *mt = NULL;
    if (!lh_json_as_string(lh_json_get(j, "model_type"), &mt))
        return lh_error_set(err, LH_ERR_NOT_FOUND, "%s: missing string key 'model_type'", origin);
    int known = 0;
    for (const char *const *t = nm_model_types; *t; t++)
        known |= !strcmp(mt, *t);
    if (!known)
        return lh_error_set(err, LH_ERR_UNSUPPORTED,
                            "%s: model_type '%s' is not supported (llama, mistral, qwen2)",
                            origin, mt);
    snprintf(c->model_type, sizeof c->model_type, "%s", mt);
    int is_llama = !strcmp(mt, "llama"), is_qwen2 = !strcmp(mt, "qwen2");

    const char *act = NULL;
    const lh_json *av = lh_json_get(j, "hidden_act");
    if (!is_null(av) && (!lh_json_as_string(av, &act) || strcmp(act, "silu")))
        return lh_error_set(err, LH_ERR_UNSUPPORTED, "%s: hidden_act '%s' is not supported (silu)",
                            origin, act ? act : "?");
    if (!is_null(lh_json_get(j, "quantization_config")))
        return lh_error_set(err, LH_ERR_UNSUPPORTED,
                            "%s: quantization_config is not supported (F32/F16/BF16 only)", origin);

    lh_status s;
    if ((s = get_int(j, origin, "hidden_size", 1, 1 << 16, -1, &c->dim, err)) ||
        (s = get_int(j, origin, "intermediate_size", 1, 1 << 18, -1, &c->hidden, err)) ||
        (s = get_int(j, origin, "num_hidden_layers", 1, 1024, -1, &c->n_layers, err)) ||
        (s = get_int(j, origin, "num_attention_heads", 1, 1024, -1, &c->n_heads, err)) ||
        (s = get_int(j, origin, "num_key_value_heads", 1, 1024, c->n_heads, &c->n_kv_heads,
                     err)) ||
        (s = get_int(j, origin, "vocab_size", 1, 1 << 22, -1, &c->vocab, err)))
        return s;
    if (c->dim % c->n_heads && is_null(lh_json_get(j, "head_dim")))
        return lh_error_set(err, LH_ERR_FORMAT,
                            "%s: hidden_size %d is not a multiple of num_attention_heads %d",
                            origin, c->dim, c->n_heads);
    if ((s = get_int(j, origin, "head_dim", 2, 4096, c->dim / c->n_heads, &c->head_dim, err)))
        return s;
    if (c->head_dim % 2)
        return lh_error_set(err, LH_ERR_UNSUPPORTED, "%s: head_dim %d is odd", origin,
                            c->head_dim);
    if (c->n_heads % c->n_kv_heads)
        return lh_error_set(err, LH_ERR_FORMAT,
                            "%s: num_attention_heads %d is not a multiple of num_key_value_heads %d",
                            origin, c->n_heads, c->n_kv_heads);
    if ((long long)c->n_heads * c->head_dim > (1 << 17))
        return lh_error_set(err, LH_ERR_UNSUPPORTED, "%s: num_attention_heads * head_dim too large",
                            origin);

    double eps;
    if ((s = get_num(j, origin, "rms_norm_eps", 1e-6, &eps, err)) ||
        (s = get_num(j, origin, "rope_theta", 10000.0, &c->rope_theta, err)))
        return s;
    if (!(eps >= 0) || !(c->rope_theta > 0))
        return lh_error_set(err, LH_ERR_FORMAT, "%s: rms_norm_eps/rope_theta out of range", origin);
    c->norm_eps = (float)eps;
    double prf = 1.0;
    if ((s = get_num(j, origin, "partial_rotary_factor", 1.0, &prf, err)))
        return s;
    if (prf != 1.0)
        return lh_error_set(err, LH_ERR_UNSUPPORTED,
                            "%s: partial_rotary_factor %g is not supported (1 only)", origin, prf);
    if ((s = parse_rope_scaling(lh_json_get(j, "rope_scaling"), origin, c, err)))
        return s;
    if ((s = get_bool(j, origin, "tie_word_embeddings", 0, &c->tie_embeddings, err)))
        return s;

    int attn_bias = 0, mlp_bias = 0;
    if ((s = get_bool(j, origin, "attention_bias", 0, &attn_bias, err)) ||
        (s = get_bool(j, origin, "mlp_bias", 0, &mlp_bias, err)))
        return s;
    if (mlp_bias)
        return lh_error_set(err, LH_ERR_UNSUPPORTED, "%s: mlp_bias true is not supported", origin);
    if (is_qwen2) {
        c->qkv_bias = 1;  /* Qwen2Attention always has q/k/v biases, never o */
        c->o_bias = 0;
    } else if (is_llama) {
        c->qkv_bias = c->o_bias = attn_bias;
    } else if (attn_bias) {
        return lh_error_set(err, LH_ERR_UNSUPPORTED,
                            "%s: attention_bias true is not supported for model_type %s", origin,
                            mt);
    }

    /* Sliding-window attention equals full attention on sequences that fit
     * in the window, so it is accepted here and refused per sequence. */
    int use_sw = 1;
    if (is_qwen2 && (s = get_bool(j, origin, "use_sliding_window", 0, &use_sw, err)))
        return s;
    if (is_qwen2 && use_sw)
        return lh_error_set(err, LH_ERR_UNSUPPORTED,
                            "%s: use_sliding_window true is not supported", origin);
    if (!is_qwen2 && !is_null(lh_json_get(j, "sliding_window"))) {
        if ((s = get_int(j, origin, "sliding_window", 1, 1 << 30, 0, &c->sliding_window, err)))
            return s;
        if (is_llama)
            return lh_error_set(err, LH_ERR_UNSUPPORTED,
                                "%s: sliding_window is not supported for model_type llama",
                                origin);
    }

    /* The positions the model was trained on: the native backend refuses
     * longer examples (RoPE would run on, on positions never seen). */
    if ((s = get_int(j, origin, "max_position_embeddings", 0, 1 << 30, 0, &c->max_pos, err)))
        return s;
    return parse_special_ids(j, origin, c, err);
}

lh_status nm_config_load(const char *path, nm_config *c, lh_error *err)
{
    lh_json *j = NULL;
    lh_status s = lh_json_parse_file(path, &j, err);
    if (s)
        return s;
    s = nm_config_parse(j, path, c, err);
    lh_json_free(j);
    return s;
}

/* HF _compute_default_rope_parameters and its linear/llama3 variants: the
 * base frequencies are computed in float32 (torch.arange(...).float() / dim,
 * then base ** that), the scaling in float32 tensors too. */
void nm_rope_init(const nm_config *c, float *inv_freq)
{
    int half = c->head_dim / 2;
    for (int i = 0; i < half; i++) {
        float e = (float)(2 * i) / (float)c->head_dim;
        float f = 1.0f / powf((float)c->rope_theta, e);
        if (c->rope_type == NM_ROPE_LINEAR) {
            f = f / (float)c->rope_factor;
        } else if (c->rope_type == NM_ROPE_LLAMA3) {
            float factor = (float)c->rope_factor;
            float lo = (float)c->rope_low_freq_factor, hi = (float)c->rope_high_freq_factor;
            float old = (float)c->rope_orig_max_pos;
            float low_wl = old / lo, high_wl = old / hi;
            float wl = 2.0f * (float)M_PI / f;
            float g = wl > low_wl ? f / factor : f;
            if (!(wl < high_wl) && !(wl > low_wl)) {
                float smooth = (old / wl - lo) / (hi - lo);
                g = (1.0f - smooth) * g / factor + smooth * g;
            }
            f = g;
        }
        inv_freq[i] = f;
    }
}

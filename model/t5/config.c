/* model/t5/config.c - config.json of a T5 checkpoint.
 *
 * Defaults follow transformers' T5Config: num_decoder_layers = num_layers,
 * 32 buckets, max_distance 128, epsilon 1e-6, feed_forward_proj "relu",
 * tie_word_embeddings true (PretrainedConfig's default; Flan-T5 and v1.1
 * say false), decoder_start_token_id = pad_token_id = 0, eos 1. The two
 * feed-forward kinds T5 checkpoints use are implemented: "relu" (original
 * T5) and "gated-gelu" (v1.1, Flan-T5, with gelu_new); any other, or a
 * dense_act_fn that disagrees, is refused by name. */
#include <math.h>
#include <stddef.h>
#include <string.h>

#include "t5.h"

/* The integer keys, each in [lo, hi]; def < lo means required, def ==
 * INHERIT means "the value of num_layers". */
#define INHERIT (-2)
typedef struct int_key {
    const char *key;
    long long lo, hi, def;
    size_t off;
} int_key;

static const int_key int_keys[] = {
    {"d_model", 1, 1 << 16, -1, offsetof(t5_config, d_model)},
    {"d_kv", 1, 4096, -1, offsetof(t5_config, d_kv)},
    {"d_ff", 1, 1 << 18, -1, offsetof(t5_config, d_ff)},
    {"num_heads", 1, 1024, -1, offsetof(t5_config, n_heads)},
    {"num_layers", 1, 1024, -1, offsetof(t5_config, n_enc_layers)},
    {"num_decoder_layers", 1, 1024, INHERIT, offsetof(t5_config, n_dec_layers)},
    {"vocab_size", 1, 1 << 22, -1, offsetof(t5_config, vocab)},
    {"relative_attention_num_buckets", 4, 4096, 32, offsetof(t5_config, num_buckets)},
    {"relative_attention_max_distance", 1, 1 << 20, 128, offsetof(t5_config, max_distance)},
};

static int absent(const lh_json *v)
{
    return !v || v->type == LH_JSON_NULL;
}

static lh_status read_int(const lh_json *j, const char *origin, const int_key *k, t5_config *c,
                          lh_error *err)
{
    int *dst = (int *)((char *)c + k->off);
    const lh_json *v = lh_json_get(j, k->key);
    long long x;
    if (absent(v)) {
        if (k->def == INHERIT)
            x = c->n_enc_layers;
        else if (k->def < k->lo)
            return lh_error_set(err, LH_ERR_NOT_FOUND, "%s: missing key '%s'", origin, k->key);
        else
            x = k->def;
    } else if (!lh_json_as_int64(v, &x)) {
        return lh_error_set(err, LH_ERR_FORMAT, "%s: '%s' is not an integer", origin, k->key);
    }
    if (x < k->lo || x > k->hi)
        return lh_error_set(err, LH_ERR_UNSUPPORTED, "%s: '%s' = %lld is outside [%lld, %lld]",
                            origin, k->key, x, k->lo, k->hi);
    *dst = (int)x;
    return LH_OK;
}

/* A token id key below vocab_size, def when absent. */
static lh_status read_id(const lh_json *j, const char *origin, const char *key, int vocab,
                         int def, int *out, lh_error *err)
{
    const lh_json *v = lh_json_get(j, key);
    long long x = def;
    if (!absent(v) && !lh_json_as_int64(v, &x))
        return lh_error_set(err, LH_ERR_FORMAT, "%s: '%s' is not a single integer token id",
                            origin, key);
    if (x < 0 || x >= vocab)
        return lh_error_set(err, LH_ERR_FORMAT, "%s: '%s' = %lld is not a token id < vocab_size %d",
                            origin, key, x, vocab);
    *out = (int)x;
    return LH_OK;
}

/* feed_forward_proj and dense_act_fn -> c->gated. */
static lh_status read_ffn(const lh_json *j, const char *origin, t5_config *c, lh_error *err)
{
    const char *ffp = "relu", *act = NULL;
    const lh_json *v = lh_json_get(j, "feed_forward_proj");
    if (!absent(v) && !lh_json_as_string(v, &ffp))
        return lh_error_set(err, LH_ERR_FORMAT, "%s: 'feed_forward_proj' is not a string", origin);
    if (!strcmp(ffp, "gated-gelu"))
        c->gated = 1;
    else if (strcmp(ffp, "relu"))
        return lh_error_set(err, LH_ERR_UNSUPPORTED,
                            "%s: feed_forward_proj '%s' is not supported (relu, gated-gelu)",
                            origin, ffp);
    const char *want = c->gated ? "gelu_new" : "relu";
    v = lh_json_get(j, "dense_act_fn");
    if (!absent(v) && (!lh_json_as_string(v, &act) || strcmp(act, want)))
        return lh_error_set(err, LH_ERR_UNSUPPORTED,
                            "%s: dense_act_fn '%s' does not go with feed_forward_proj '%s' "
                            "(expected %s)", origin, act ? act : "?", ffp, want);
    int gated_flag;
    v = lh_json_get(j, "is_gated_act");
    if (!absent(v) && (!lh_json_as_bool(v, &gated_flag) || gated_flag != c->gated))
        return lh_error_set(err, LH_ERR_UNSUPPORTED,
                            "%s: is_gated_act does not go with feed_forward_proj '%s'", origin,
                            ffp);
    return LH_OK;
}

static lh_status read_flags(const lh_json *j, const char *origin, t5_config *c, lh_error *err)
{
    c->tie_embeddings = 1;
    const lh_json *v = lh_json_get(j, "tie_word_embeddings");
    if (!absent(v) && !lh_json_as_bool(v, &c->tie_embeddings))
        return lh_error_set(err, LH_ERR_FORMAT, "%s: 'tie_word_embeddings' is not a boolean",
                            origin);
    int encdec = 1;
    v = lh_json_get(j, "is_encoder_decoder");
    if (!absent(v) && (!lh_json_as_bool(v, &encdec) || !encdec))
        return lh_error_set(err, LH_ERR_UNSUPPORTED,
                            "%s: is_encoder_decoder must be true for a T5 model", origin);
    if (!absent(lh_json_get(j, "quantization_config")))
        return lh_error_set(err, LH_ERR_UNSUPPORTED,
                            "%s: quantization_config is not supported (F32/F16/BF16 only)", origin);
    double eps = 1e-6;
    v = lh_json_get(j, "layer_norm_epsilon");
    if (!absent(v) && (!lh_json_as_number(v, &eps) || !isfinite(eps)))
        return lh_error_set(err, LH_ERR_FORMAT, "%s: 'layer_norm_epsilon' is not a finite number",
                            origin);
    if (eps < 0 || eps > 1)
        return lh_error_set(err, LH_ERR_UNSUPPORTED, "%s: layer_norm_epsilon %g is outside [0, 1]",
                            origin, eps);
    c->eps = (float)eps;
    return LH_OK;
}

lh_status t5_config_parse(const lh_json *j, const char *origin, t5_config *c, lh_error *err)
{
    memset(c, 0, sizeof *c);
    if (!origin)
        origin = "config.json";
    if (!j || j->type != LH_JSON_OBJECT)
        return lh_error_set(err, LH_ERR_FORMAT, "%s: not a JSON object", origin);
    const char *mt = NULL;
    if (!lh_json_as_string(lh_json_get(j, "model_type"), &mt) || strcmp(mt, "t5"))
        return lh_error_set(err, LH_ERR_UNSUPPORTED, "%s: model_type '%s' is not t5", origin,
                            mt ? mt : "?");
    lh_status s;
    for (size_t i = 0; i < sizeof int_keys / sizeof int_keys[0]; i++)
        if ((s = read_int(j, origin, &int_keys[i], c, err)))
            return s;
    if ((long long)c->n_heads * c->d_kv > (1 << 17))
        return lh_error_set(err, LH_ERR_UNSUPPORTED, "%s: num_heads * d_kv is too large", origin);
    /* The log-spaced buckets start at num_buckets/2 (decoder) and end at max_distance. */
    if (c->max_distance <= c->num_buckets / 2)
        return lh_error_set(err, LH_ERR_UNSUPPORTED,
                            "%s: relative_attention_max_distance %d must exceed half of "
                            "relative_attention_num_buckets %d", origin, c->max_distance,
                            c->num_buckets);
    int pad = 0;
    if ((s = read_ffn(j, origin, c, err)) || (s = read_flags(j, origin, c, err)) ||
        (s = read_id(j, origin, "pad_token_id", c->vocab, 0, &pad, err)) ||
        (s = read_id(j, origin, "decoder_start_token_id", c->vocab, pad, &c->start_id, err)) ||
        (s = read_id(j, origin, "eos_token_id", c->vocab, 1, &c->eos_id, err)))
        return s;
    return LH_OK;
}

int t5_bucket(long rel, int bidirectional, int num_buckets, int max_distance)
{
    int nb = num_buckets, base = 0;
    long n;
    if (bidirectional) {
        nb /= 2;
        base = rel > 0 ? nb : 0;
        n = rel < 0 ? -rel : rel;
    } else {
        n = rel < 0 ? -rel : 0;
    }
    int max_exact = nb / 2;
    if (n < max_exact)
        return base + (int)n;
    /* As torch: log of a float32 tensor, divided by a Python float, times an
     * int, truncated toward zero. */
    float f = logf((float)n / (float)max_exact) / (float)log((double)max_distance / max_exact) *
              (float)(nb - max_exact);
    long large = max_exact + (long)f;
    if (large > nb - 1)
        large = nb - 1;
    return base + (int)large;
}

/* tests/check_t5.c - the T5 model (model/t5/) against an independent reference.
 *
 * tests/fixtures/t5/ was written by tools/t5_torch.py, a PyTorch T5 written
 * from transformers' modeling_t5.py semantics and run in float64: for
 * "flan" (gated-gelu, untied head, 3 encoder + 2 decoder blocks, inputs of
 * 150 and targets of 130 tokens so every bucket range is used) and "orig"
 * (relu, tied head with the d_model^-0.5 rescale, 16 buckets, max distance
 * 40), each with a random seq2seq LoRA on every linear layer: the logits of
 * every decoder position, the summed losses, greedy outputs, and the
 * native backend's loss on text examples (character tokenizer); orig-bin
 * is the orig model as a pytorch_model.bin (torch.save). The rest
 * checks the engine against itself (batched candidates vs one at a time)
 * and that bad configs, checkpoints and adapters are refused by name. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "adapt/backend/backend.h"
#include "lib/adapter.h"
#include "lib/dtype.h"
#include "lib/examples.h"
#include "lib/fsutil.h"
#include "lib/json.h"
#include "lib/safetensors.h"
#include "model/model.h"
#include "model/t5/t5.h"
#include "tests/check_util.h"

#define FIX "tests/fixtures/t5"

/* The fixture of one case: pairs, losses, greedy outputs, logits. */
typedef struct fixture {
    lh_json *j;
    size_t n;
    int32_t *src[8], *tgt[8];
    size_t n_src[8], n_tgt[8];
    lh_safetensors *st;
} fixture;

static int32_t *ids_of(const lh_json *arr, size_t *n)
{
    ck_assert(arr && arr->type == LH_JSON_ARRAY);
    int32_t *v = malloc((arr->len ? arr->len : 1) * sizeof *v);
    for (size_t i = 0; i < arr->len; i++) {
        long long x;
        ck_assert(lh_json_as_int64(arr->items[i], &x));
        v[i] = (int32_t)x;
    }
    *n = arr->len;
    return v;
}

static void fixture_load(const char *name, fixture *f)
{
    memset(f, 0, sizeof *f);
    char path[256];
    lh_error err = {0};
    snprintf(path, sizeof path, FIX "/%s-expected.json", name);
    ck_assert_msg(lh_json_parse_file(path, &f->j, &err) == LH_OK, "%s", err.msg);
    const lh_json *pairs = lh_json_get(f->j, "pairs");
    ck_assert(pairs && pairs->len <= 8);
    f->n = pairs->len;
    for (size_t i = 0; i < f->n; i++) {
        f->src[i] = ids_of(lh_json_get(pairs->items[i], "src"), &f->n_src[i]);
        f->tgt[i] = ids_of(lh_json_get(pairs->items[i], "tgt"), &f->n_tgt[i]);
    }
    snprintf(path, sizeof path, FIX "/%s-expected.safetensors", name);
    ck_assert_msg(lh_st_open(path, &f->st, &err) == LH_OK, "%s", err.msg);
}

static void fixture_free(fixture *f)
{
    for (size_t i = 0; i < f->n; i++) {
        free(f->src[i]);
        free(f->tgt[i]);
    }
    lh_json_free(f->j);
    lh_st_free(f->st);
}

static double fixture_num(const fixture *f, const char *key)
{
    double x;
    ck_assert_msg(lh_json_as_number(lh_json_get(f->j, key), &x), "fixture lacks %s", key);
    return x;
}

static t5_batch fixture_batch(const fixture *f)
{
    return (t5_batch){.n = f->n, .src = (const int32_t *const *)f->src, .n_src = f->n_src,
                      .tgt = (const int32_t *const *)f->tgt, .n_tgt = f->n_tgt};
}

static t5_model *load_t5(const char *name)
{
    char dir[256], path[300];
    snprintf(dir, sizeof dir, FIX "/%s", name);
    snprintf(path, sizeof path, "%s/config.json", dir);
    lh_json *j = NULL;
    lh_error err = {0};
    t5_config c;
    ck_assert_msg(lh_json_parse_file(path, &j, &err) == LH_OK, "%s", err.msg);
    ck_assert_msg(t5_config_parse(j, path, &c, &err) == LH_OK, "%s", err.msg);
    lh_json_free(j);
    t5_model *m = NULL;
    ck_assert_msg(t5_model_load_weights(dir, &c, &m, &err) == LH_OK, "%s", err.msg);
    return m;
}

static lh_adapter *load_lora(const char *name)
{
    char dir[256];
    snprintf(dir, sizeof dir, FIX "/%s-lora", name);
    return ck_load_adapter(dir);
}

/* Logits of every decoder position match the float64 reference to 1e-4 relative. */
static void check_logits(const char *name)
{
    fixture f;
    fixture_load(name, &f);
    t5_model *m = load_t5(name);
    lh_adapter *a = load_lora(name);
    t5_batch b = fixture_batch(&f);
    size_t Td = 0, V = (size_t)m->c.vocab;
    for (size_t i = 0; i < f.n; i++)
        Td += f.n_tgt[i];
    float *got = malloc(Td * V * sizeof *got), *want = malloc(Td * V * sizeof *want);
    const char *tags[2] = {"logits_base", "logits_lora"};
    lh_error err = {0};
    for (int k = 0; k < 2; k++) {
        const lh_st_tensor *t = lh_st_find(f.st, tags[k]);
        ck_assert(t && t->numel == Td * V);
        ck_assert(lh_st_read_f32(f.st, t, want, &err) == LH_OK);
        ck_assert_msg(t5_forward_logits(m, &b, k ? a : NULL, got, &err) == LH_OK, "%s", err.msg);
        double worst = 0;
        for (size_t i = 0; i < Td * V; i++) {
            double d = fabs((double)got[i] - want[i]) / fmax(1.0, fabs(want[i]));
            worst = d > worst ? d : worst;
        }
        ck_assert_msg(worst < 1e-4, "%s %s: worst relative difference %g", name, tags[k], worst);
    }
    /* The LoRA does change the logits (the comparison could not pass by accident). */
    const lh_st_tensor *t0 = lh_st_find(f.st, tags[0]);
    ck_assert(lh_st_read_f32(f.st, t0, want, &err) == LH_OK);
    double moved = 0;
    for (size_t i = 0; i < Td * V; i++)
        moved = fmax(moved, fabs((double)got[i] - want[i]));
    ck_assert_msg(moved > 0.01, "the LoRA moved no logit (%g)", moved);
    free(got);
    free(want);
    lh_adapter_free(a);
    t5_model_free(m);
    fixture_free(&f);
}

START_TEST(test_logits_flan)
{
    check_logits("flan");
}
END_TEST

START_TEST(test_logits_orig)
{
    check_logits("orig");
}
END_TEST

/* Through the lh_model interface: the summed nll of base and LoRA equal
 * the reference's, batched and one at a time, and more candidates in one
 * call (with repeats and a zero-weight copy) agree with each alone. */
static void check_loss(const char *name)
{
    fixture f;
    fixture_load(name, &f);
    char dir[256];
    snprintf(dir, sizeof dir, FIX "/%s", name);
    lh_model *m = NULL;
    lh_error err = {0};
    ck_assert_msg(lh_model_load(dir, &m, &err) == LH_OK, "%s", err.msg);
    ck_assert_str_eq(lh_model_get_info(m)->architecture, "t5");
    ck_assert_int_eq(lh_model_get_info(m)->expects_bos, 0);
    ck_assert_int_eq(lh_model_get_info(m)->prompt_ends_with_eos, 1);
    lh_adapter *a = load_lora(name);
    ck_assert_msg(lh_model_check_adapter(m, a, &err) == LH_OK, "%s", err.msg);
    lh_model_pair pairs[8];
    for (size_t i = 0; i < f.n; i++)
        pairs[i] = (lh_model_pair){f.src[i], f.n_src[i], f.tgt[i], f.n_tgt[i]};
    lh_model_batch b = {f.n, pairs, NULL};
    const lh_adapter *cands[5] = {NULL, a, a, NULL, a};
    double nll[5], one[5];
    size_t nt = 0, nt1 = 0, counted = 0;
    ck_assert_msg(lh_model_score(m, &b, cands, 5, 1, nll, &nt, &err) == LH_OK, "%s", err.msg);
    ck_assert_msg(lh_model_score(m, &b, cands, 5, 0, one, &nt1, &err) == LH_OK, "%s", err.msg);
    ck_assert(lh_model_count_tokens(m, &b, &counted, &err) == LH_OK);
    ck_assert_uint_eq(nt, (size_t)fixture_num(&f, "n_tokens"));
    ck_assert_uint_eq(nt1, nt);
    ck_assert_uint_eq(counted, nt);
    ck_close_rel(nll[0], fixture_num(&f, "nll_base"), 1e-4, "nll base");
    ck_close_rel(nll[1], fixture_num(&f, "nll_lora"), 1e-4, "nll lora");
    for (int i = 0; i < 5; i++)
        ck_close_rel(nll[i], one[i], 1e-6, "batched vs one at a time");
    ck_close_rel(nll[2], nll[1], 1e-6, "a repeated candidate");
    ck_close_rel(nll[3], nll[0], 1e-6, "the base twice");
    lh_adapter_free(a);
    lh_model_free(m);
    fixture_free(&f);
}

START_TEST(test_loss_flan)
{
    check_loss("flan");
}
END_TEST

START_TEST(test_loss_orig)
{
    check_loss("orig");
}
END_TEST

/* Greedy decoding equals the reference's (12 new tokens at most). */
static void check_greedy(const char *name)
{
    fixture f;
    fixture_load(name, &f);
    char dir[256];
    snprintf(dir, sizeof dir, FIX "/%s", name);
    lh_model *m = NULL;
    lh_error err = {0};
    ck_assert_msg(lh_model_load(dir, &m, &err) == LH_OK, "%s", err.msg);
    lh_adapter *a = load_lora(name);
    const char *tags[2] = {"greedy_base", "greedy_lora"};
    for (int k = 0; k < 2; k++) {
        const lh_json *g = lh_json_get(f.j, tags[k]);
        ck_assert(g && g->len == f.n);
        for (size_t i = 0; i < f.n; i++) {
            size_t n_want, n_got;
            int32_t *want = ids_of(g->items[i], &n_want), *got = NULL;
            ck_assert_msg(lh_model_generate(m, k ? a : NULL, f.src[i], f.n_src[i], 12, &got,
                                            &n_got, &err) == LH_OK, "%s", err.msg);
            ck_assert_msg(n_got == n_want, "%s %s pair %zu: %zu tokens, expected %zu", name,
                          tags[k], i, n_got, n_want);
            for (size_t t = 0; t < n_got; t++)
                ck_assert_msg(got[t] == want[t], "%s %s pair %zu token %zu: %d, expected %d",
                              name, tags[k], i, t, got[t], want[t]);
            free(got);
            free(want);
        }
    }
    lh_adapter_free(a);
    lh_model_free(m);
    fixture_free(&f);
}

START_TEST(test_greedy_flan)
{
    check_greedy("flan");
}
END_TEST

START_TEST(test_greedy_orig)
{
    check_greedy("orig");
}
END_TEST

/* The native backend on text: prompt = input + </s>, target = output +
 * </s>, no BOS, the loss the reference computed with that convention. */
static void check_backend(const char *name)
{
    fixture f;
    fixture_load(name, &f);
    char dir[256];
    snprintf(dir, sizeof dir, FIX "/%s", name);
    const char *params[] = {"base", dir, "threads", "1", NULL};
    lh_backend_opts o;
    lh_backend_opts_default(&o);
    o.params = params;
    lh_backend *b = NULL;
    lh_error err = {0};
    ck_assert_msg(lh_backend_open("native", &o, &b, &err) == LH_OK, "%s", err.msg);
    lh_examples *ex = NULL;
    ck_assert_msg(lh_examples_load(FIX "/examples.jsonl", &ex, &err) == LH_OK, "%s", err.msg);
    lh_adapter *a = load_lora(name);
    const lh_adapter *cands[2] = {NULL, a};
    double loss[2];
    size_t counted;
    ck_assert_msg(lh_backend_score(b, cands, 2, ex, loss, &err) == LH_OK, "%s", err.msg);
    ck_assert(lh_backend_count_tokens(b, ex, &counted, &err) == LH_OK);
    ck_assert_uint_eq(counted, (size_t)fixture_num(&f, "text_tokens"));
    ck_close_rel(loss[0], fixture_num(&f, "text_loss_base"), 1e-4, "backend loss base");
    ck_close_rel(loss[1], fixture_num(&f, "text_loss_lora"), 1e-4, "backend loss lora");
    char *outs[8] = {0};
    ck_assert_msg(lh_backend_generate(b, a, ex, 5, outs, &err) == LH_OK, "%s", err.msg);
    for (size_t i = 0; i < ex->n; i++) {
        ck_assert(outs[i] != NULL);
        free(outs[i]);
    }
    lh_adapter_free(a);
    lh_examples_free(ex);
    lh_backend_close(b);
    fixture_free(&f);
}

START_TEST(test_backend_flan)
{
    check_backend("flan");
}
END_TEST

START_TEST(test_backend_orig)
{
    check_backend("orig");
}
END_TEST

/* The bucket tables of the reference notes (t5-and-torch-bin.md), for the
 * default 32 buckets and max distance 128. */
START_TEST(test_buckets)
{
    /* B16 upper bounds per bucket 8..15, B32 per bucket 16..31. */
    const int b16[] = {11, 15, 22, 31, 45, 63, 90};
    const int b32[] = {18, 20, 23, 26, 30, 34, 39, 45, 51, 58, 66, 76, 86, 98, 112};
    for (long n = 0; n <= 600; n++) {
        int want16 = n < 8 ? (int)n : 15, want32 = n < 16 ? (int)n : 31;
        for (int k = 6; k >= 0; k--)
            if (n >= 8 && n <= b16[k])
                want16 = 8 + k;
        for (int k = 14; k >= 0; k--)
            if (n >= 16 && n <= b32[k])
                want32 = 16 + k;
        /* Encoder: key after the query adds 16; decoder: only the past counts. */
        ck_assert_int_eq(t5_bucket(-n, 1, 32, 128), want16);
        ck_assert_int_eq(t5_bucket(n, 1, 32, 128), n ? 16 + want16 : 0);
        ck_assert_int_eq(t5_bucket(-n, 0, 32, 128), want32);
        ck_assert_int_eq(t5_bucket(n, 0, 32, 128), 0);
    }
}
END_TEST

/* Write dir/config.json from text. */
static char *dir_with_config(const char *json)
{
    char tmpl[] = "/tmp/check_t5.XXXXXX";
    char *d = mkdtemp(tmpl);
    ck_assert(d != NULL);
    char *p = lh_path_join(d, "config.json");
    lh_error err = {0};
    ck_assert(lh_write_file_atomic(p, json, strlen(json), &err) == LH_OK);
    free(p);
    return strdup(d);
}

START_TEST(test_bad_configs)
{
    const char *base = "\"model_type\":\"t5\",\"d_model\":32,\"d_kv\":8,\"d_ff\":48,"
                       "\"num_heads\":4,\"num_layers\":2,\"vocab_size\":96";
    struct {
        const char *extra;
        lh_status code;
        const char *needle;
    } cases[] = {
        {",\"feed_forward_proj\":\"gated-silu\"", LH_ERR_UNSUPPORTED, "gated-silu"},
        {",\"feed_forward_proj\":\"gelu\"", LH_ERR_UNSUPPORTED, "feed_forward_proj 'gelu'"},
        {",\"feed_forward_proj\":\"gated-gelu\",\"dense_act_fn\":\"gelu\"", LH_ERR_UNSUPPORTED,
         "dense_act_fn 'gelu'"},
        {",\"feed_forward_proj\":\"relu\",\"is_gated_act\":true", LH_ERR_UNSUPPORTED,
         "is_gated_act"},
        {",\"is_encoder_decoder\":false", LH_ERR_UNSUPPORTED, "is_encoder_decoder"},
        {",\"relative_attention_num_buckets\":2", LH_ERR_UNSUPPORTED,
         "relative_attention_num_buckets"},
        {",\"relative_attention_max_distance\":8", LH_ERR_UNSUPPORTED,
         "relative_attention_max_distance 8"},
        {",\"eos_token_id\":96", LH_ERR_FORMAT, "eos_token_id"},
        {",\"decoder_start_token_id\":-1", LH_ERR_FORMAT, "decoder_start_token_id"},
        {",\"num_decoder_layers\":0", LH_ERR_UNSUPPORTED, "num_decoder_layers"},
        {",\"layer_norm_epsilon\":\"small\"", LH_ERR_FORMAT, "layer_norm_epsilon"},
        {",\"quantization_config\":{}", LH_ERR_UNSUPPORTED, "quantization_config"},
        {",\"tie_word_embeddings\":1", LH_ERR_FORMAT, "tie_word_embeddings"},
        {",\"d_model\":0", LH_ERR_FORMAT, NULL}, /* a duplicate key: the JSON parser refuses */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char json[1024];
        snprintf(json, sizeof json, "{%s%s}", base, cases[i].extra);
        char *d = dir_with_config(json);
        lh_model *m = NULL;
        lh_error err = {0};
        lh_status s = lh_model_load(d, &m, &err);
        ck_assert_msg(s == cases[i].code, "case %zu: status %d (%s)", i, s, err.msg);
        ck_assert_msg(!cases[i].needle || strstr(err.msg, cases[i].needle), "case %zu: %s", i,
                      err.msg);
        ck_assert(strstr(err.msg, "config.json") != NULL);
        ck_assert(m == NULL);
        lh_rmtree(d);
        free(d);
    }
    /* A missing key is named. */
    char *d = dir_with_config("{\"model_type\":\"t5\",\"d_model\":32}");
    lh_model *m = NULL;
    lh_error err = {0};
    ck_assert_int_eq(lh_model_load(d, &m, &err), LH_ERR_NOT_FOUND);
    ck_assert_msg(strstr(err.msg, "'d_kv'") != NULL, "%s", err.msg);
    lh_rmtree(d);
    free(d);
}
END_TEST

/* A copy of the flan model with its tensors renamed, dropped, reshaped,
 * added or converted, in one file or two shards; returns the directory. */
typedef struct edit {
    const char *from, *to;  /* rename from -> to (to NULL: drop) */
    int reshape;            /* the renamed tensor gets a wrong shape */
    const char *add;        /* an extra tensor of shape [2] */
    int bf16, sharded;
} edit;

static char *edited_copy(const edit *e)
{
    char *dir = ck_dir_with_config("check_t5", FIX "/flan/config.json");
    lh_error err = {0};
    char *p;
    lh_safetensors *st = NULL;
    ck_assert(lh_st_open(FIX "/flan/model.safetensors", &st, &err) == LH_OK);
    size_t n = 0;
    lh_st_entry *en = calloc(st->n_tensors + 1, sizeof *en);
    void **bufs = calloc(st->n_tensors + 1, sizeof *bufs);
    static const float extra[2] = {1, 2};
    for (size_t i = 0; i < st->n_tensors; i++) {
        const lh_st_tensor *t = &st->tensors[i];
        lh_st_entry *x = &en[n];
        x->name = t->name;
        x->dtype = e->bf16 ? LH_BF16 : LH_F32;
        x->ndim = t->ndim;
        memcpy(x->shape, t->shape, sizeof t->shape);
        float *f = malloc(t->numel * sizeof *f);
        ck_assert(lh_st_read_f32(st, t, f, &err) == LH_OK);
        bufs[i] = f;
        if (e->bf16) {
            bufs[i] = malloc(t->numel * 2);
            ck_assert(lh_convert_from_f32(LH_BF16, f, bufs[i], t->numel) == 0);
            free(f);
        }
        x->data = bufs[i];
        if (e->from && !strcmp(t->name, e->from)) {
            if (!e->to)
                continue;
            x->name = e->to;
            if (e->reshape) { /* the same numbers as one flat row */
                x->ndim = 1;
                x->shape[0] = (int64_t)t->numel;
            }
        }
        n++;
    }
    if (e->add)
        en[n++] = (lh_st_entry){e->add, LH_F32, 1, {2}, extra};
    if (e->sharded) {
        size_t half = n / 2;
        char *p1 = lh_path_join(dir, "model-00001-of-00002.safetensors");
        char *p2 = lh_path_join(dir, "model-00002-of-00002.safetensors");
        ck_assert_msg(lh_st_write(p1, en, half, NULL, NULL, 0, &err) == LH_OK, "%s", err.msg);
        ck_assert_msg(lh_st_write(p2, en + half, n - half, NULL, NULL, 0, &err) == LH_OK, "%s",
                      err.msg);
        free(p1);
        free(p2);
        char *idx = malloc(65536);
        size_t off = (size_t)snprintf(idx, 65536, "{\"metadata\":{},\"weight_map\":{");
        for (size_t i = 0; i < n; i++)
            off += (size_t)snprintf(idx + off, 65536 - off, "%s\"%s\":\"model-0000%d-of-00002"
                                    ".safetensors\"", i ? "," : "", en[i].name,
                                    i < half ? 1 : 2);
        off += (size_t)snprintf(idx + off, 65536 - off, "}}");
        p = lh_path_join(dir, "model.safetensors.index.json");
        ck_assert(lh_write_file_atomic(p, idx, off, &err) == LH_OK);
        free(p);
        free(idx);
    } else {
        p = lh_path_join(dir, "model.safetensors");
        ck_assert_msg(lh_st_write(p, en, n, NULL, NULL, 0, &err) == LH_OK, "%s", err.msg);
        free(p);
    }
    for (size_t i = 0; i < st->n_tensors; i++)
        free(bufs[i]);
    free(bufs);
    free(en);
    lh_st_free(st);
    return dir;
}

static t5_model *load_dir(const char *dir, lh_status *s, lh_error *err)
{
    char path[512];
    snprintf(path, sizeof path, "%s/config.json", dir);
    lh_json *j = NULL;
    t5_config c;
    ck_assert(lh_json_parse_file(path, &j, err) == LH_OK);
    ck_assert(t5_config_parse(j, path, &c, err) == LH_OK);
    lh_json_free(j);
    t5_model *m = NULL;
    *s = t5_model_load_weights(dir, &c, &m, err);
    return m;
}

START_TEST(test_checkpoints)
{
    t5_model *ref = load_t5("flan");
    const char *bias = "decoder.block.0.layer.1.EncDecAttention.relative_attention_bias.weight";
    const char *k = "encoder.block.1.layer.0.SelfAttention.k.weight";
    struct {
        edit e;
        lh_status code;
        const char *needle;  /* in the error; NULL: loads, equal to the reference */
    } cases[] = {
        {{"shared.weight", "encoder.embed_tokens.weight", 0, NULL, 0, 0}, LH_OK, NULL},
        {{"shared.weight", "decoder.embed_tokens.weight", 0, NULL, 0, 1}, LH_OK, NULL},
        {{NULL, NULL, 0, bias, 0, 0}, LH_OK, NULL},
        {{NULL, NULL, 0, NULL, 1, 1}, LH_OK, NULL},
        {{"shared.weight", NULL, 0, NULL, 0, 0}, LH_ERR_NOT_FOUND, "shared.weight"},
        {{k, NULL, 0, NULL, 0, 1}, LH_ERR_NOT_FOUND, k},
        {{k, "encoder.block.1.layer.0.SelfAttention.kk.weight", 0, NULL, 0, 0}, LH_ERR_FORMAT,
         "SelfAttention.kk"},
        {{k, k, 1, NULL, 0, 0}, LH_ERR_SHAPE, k},
        {{NULL, NULL, 0, "lm_head.bias", 0, 1}, LH_ERR_FORMAT, "lm_head.bias"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *dir = edited_copy(&cases[i].e);
        lh_error err = {0};
        lh_status s;
        t5_model *m = load_dir(dir, &s, &err);
        ck_assert_msg(s == cases[i].code, "case %zu: status %d (%s)", i, s, err.msg);
        if (cases[i].needle) {
            ck_assert_msg(strstr(err.msg, cases[i].needle) != NULL, "case %zu: %s", i, err.msg);
            ck_assert(m == NULL);
        } else {
            ck_assert_uint_eq(m->blob_floats, ref->blob_floats);
            size_t differ = 0;
            for (size_t f = 0; f < ref->blob_floats; f++) {
                float want = cases[i].e.bf16 ? lh_bf16_to_f32(lh_f32_to_bf16(ref->blob[f]))
                                             : ref->blob[f];
                ck_assert_msg(m->blob[f] == want, "case %zu: weight %zu", i, f);
                differ += m->blob[f] != ref->blob[f];
            }
            if (cases[i].e.bf16)
                ck_assert_uint_gt(differ, ref->blob_floats / 2);
        }
        t5_model_free(m);
        lh_rmtree(dir);
        free(dir);
    }
    t5_model_free(ref);
}
END_TEST

/* pytorch_model.bin as torch.save writes a T5: the embedding under all
 * three names and the tied lm_head, one storage; the same weights. */
START_TEST(test_torch_bin)
{
    t5_model *ref = load_t5("orig"), *m = load_t5("orig-bin");
    ck_assert_uint_eq(m->blob_floats, ref->blob_floats);
    ck_assert(memcmp(m->blob, ref->blob, ref->blob_floats * sizeof(float)) == 0);
    t5_model_free(m);
    t5_model_free(ref);
}
END_TEST

START_TEST(test_bad_adapters)
{
    char dir[] = FIX "/flan";
    lh_model *m = NULL;
    lh_error err = {0};
    ck_assert_msg(lh_model_load(dir, &m, &err) == LH_OK, "%s", err.msg);
    const lh_target_shape bad[] = {
        {"encoder.block.3.layer.0.SelfAttention.q", 2, 32, 32},   /* 3 encoder blocks: 0..2 */
        {"decoder.block.2.layer.0.SelfAttention.q", 2, 32, 32},   /* 2 decoder blocks */
        {"encoder.block.0.layer.1.EncDecAttention.q", 2, 32, 32}, /* no cross-attention */
        {"decoder.block.0.layer.1.DenseReluDense.wo", 2, 48, 32}, /* decoder FFN is layer 2 */
        {"decoder.block.0.layer.2.DenseReluDense.wi", 2, 32, 48}, /* gated: wi_0 / wi_1 */
        {"encoder.block.0.layer.0.SelfAttention.k", 2, 32, 48},   /* k is 32 -> 32 */
        {"encoder.block.01.layer.0.SelfAttention.q", 2, 32, 32},  /* leading zero */
        {"lm_head", 2, 32, 96},
        {"shared", 2, 32, 96},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        lh_adapter *a = NULL;
        ck_assert(lh_adapter_create(&bad[i], 1, &a, &err) == LH_OK);
        lh_status s = lh_model_check_adapter(m, a, &err);
        ck_assert_msg(s == LH_ERR_SHAPE, "case %zu: status %d", i, s);
        ck_assert_msg(strstr(err.msg, bad[i].name) != NULL, "case %zu: %s", i, err.msg);
        lh_adapter_free(a);
    }
    /* Every adaptable layer kind of both stacks is accepted. */
    const lh_target_shape good[] = {
        {"decoder.block.1.layer.1.EncDecAttention.v", 2, 32, 32},
        {"decoder.block.1.layer.2.DenseReluDense.wi_1", 2, 32, 48},
        {"encoder.block.2.layer.1.DenseReluDense.wo", 2, 48, 32},
        {"encoder.block.0.layer.0.SelfAttention.o", 2, 32, 32},
    };
    lh_adapter *a = NULL;
    ck_assert(lh_adapter_create(good, 4, &a, &err) == LH_OK);
    ck_assert_msg(lh_model_check_adapter(m, a, &err) == LH_OK, "%s", err.msg);
    lh_adapter_free(a);
    lh_model_free(m);
}
END_TEST

/* An empty encoder input is refused; an empty target scores nothing. */
START_TEST(test_bad_pairs)
{
    lh_model *m = NULL;
    lh_error err = {0};
    ck_assert(lh_model_load(FIX "/flan", &m, &err) == LH_OK);
    const int32_t ids[3] = {5, 6, 1}, bad_ids[2] = {5, 96};
    lh_model_pair p[2] = {{ids, 0, ids, 3}, {ids, 3, NULL, 0}};
    lh_model_batch b = {1, p, NULL};
    double nll;
    size_t nt;
    const lh_adapter *c = NULL;
    ck_assert_int_eq(lh_model_score(m, &b, &c, 1, 1, &nll, &nt, &err), LH_ERR_ARG);
    ck_assert_msg(strstr(err.msg, "encoder") != NULL, "%s", err.msg);
    b.pairs = &p[1];
    ck_assert_int_eq(lh_model_score(m, &b, &c, 1, 1, &nll, &nt, &err), LH_ERR_ARG);
    ck_assert_msg(strstr(err.msg, "no output tokens") != NULL, "%s", err.msg);
    lh_model_pair q = {bad_ids, 2, ids, 3};
    b.pairs = &q;
    ck_assert_int_eq(lh_model_score(m, &b, &c, 1, 1, &nll, &nt, &err), LH_ERR_ARG);
    ck_assert_msg(strstr(err.msg, "96") != NULL, "%s", err.msg);
    /* A bad id in the last target position (a label, never embedded). */
    lh_model_pair r = {ids, 3, bad_ids, 2};
    b.pairs = &r;
    ck_assert_int_eq(lh_model_score(m, &b, &c, 1, 1, &nll, &nt, &err), LH_ERR_ARG);
    ck_assert_msg(strstr(err.msg, "target token id 96") != NULL, "%s", err.msg);
    lh_model_free(m);
}
END_TEST

static Suite *t5_suite(void)
{
    Suite *s = suite_create("t5");
    TCase *tc = tcase_create("reference");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_logits_flan);
    tcase_add_test(tc, test_logits_orig);
    tcase_add_test(tc, test_loss_flan);
    tcase_add_test(tc, test_loss_orig);
    tcase_add_test(tc, test_greedy_flan);
    tcase_add_test(tc, test_greedy_orig);
    tcase_add_test(tc, test_backend_flan);
    tcase_add_test(tc, test_backend_orig);
    tcase_add_test(tc, test_buckets);
    suite_add_tcase(s, tc);
    TCase *tr = tcase_create("refusals");
    tcase_set_timeout(tr, 60);
    tcase_add_test(tr, test_bad_configs);
    tcase_add_test(tr, test_checkpoints);
    tcase_add_test(tr, test_torch_bin);
    tcase_add_test(tr, test_bad_adapters);
    tcase_add_test(tr, test_bad_pairs);
    suite_add_tcase(s, tr);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(t5_suite());
    srunner_run_all(sr, CK_ENV);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

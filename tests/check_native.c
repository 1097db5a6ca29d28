/* tests/check_native.c - the native backend against an independent reference.
 *
 * tests/fixtures/native/ was written by tools/make_native_fixtures.py from
 * tools/llama_torch.py (a PyTorch re-implementation of HF LlamaForCausalLM):
 * logits of a few sequences, losses of a few examples and greedy outputs,
 * for model "a" (llama, GQA, llama3 RoPE scaling, rope_theta 5e5, untied,
 * q/k/v/o biases, F32) and model "b" (qwen2, tied, linear RoPE scaling,
 * F16, sharded), with PEFT LoRAs whose scales are not 1. The rest checks
 * the engine against itself: batched candidates vs one at a time, packed
 * vs one by one, KV-cache generation vs argmax of the full forward, and
 * that bad configs, missing or extra tensors and misfit adapters are
 * refused with a message naming the culprit. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "adapt/backend/backend.h"
#include "model/llama/llama.h"
#include "model/model.h"
#include "adapt/evaluate.h"
#include "lib/adapter.h"
#include "lib/dtype.h"
#include "lib/examples.h"
#include "lib/fsutil.h"
#include "lib/json.h"
#include "lib/safetensors.h"
#include "tests/check_util.h"

#define FIX "tests/fixtures/native"

static lh_safetensors *expected;

static void load_expected(void)
{
    if (expected)
        return;
    lh_error err = {0};
    ck_assert_msg(lh_st_open(FIX "/expected.safetensors", &expected, &err) == LH_OK, "%s",
                  err.msg);
}

/* Float tensor from expected.safetensors, malloc'd; *n its element count. */
static float *exp_tensor(const char *name, size_t *n)
{
    load_expected();
    const lh_st_tensor *t = lh_st_find(expected, name);
    ck_assert_msg(t != NULL, "expected.safetensors lacks %s", name);
    float *v = malloc(t->numel * sizeof *v);
    lh_error err = {0};
    ck_assert(lh_st_read_f32(expected, t, v, &err) == LH_OK);
    *n = t->numel;
    return v;
}

static int32_t *to_ids(const float *v, size_t n)
{
    int32_t *ids = malloc(n * sizeof *ids);
    for (size_t i = 0; i < n; i++)
        ids[i] = (int32_t)v[i];
    return ids;
}

static nm_model *load_model(const char *tag)
{
    char dir[256];
    snprintf(dir, sizeof dir, FIX "/%s", tag);
    nm_model *m = NULL;
    lh_error err = {0};
    ck_assert_msg(nm_model_load(dir, &m, &err) == LH_OK, "%s", err.msg);
    return m;
}

static lh_adapter *load_adapter(const char *name)
{
    char dir[256];
    snprintf(dir, sizeof dir, FIX "/%s", name);
    return ck_load_adapter(dir);
}

/* ---- logits against the reference -------------------------------------- */

static void logits_case(const char *tag)
{
    nm_model *m = load_model(tag);
    char ln[64];
    snprintf(ln, sizeof ln, "%s-lora", tag);
    lh_adapter *a = load_adapter(ln);
    lh_error err = {0};
    for (int k = 0; k < 3; k++) {
        char name[64];
        size_t n, nl;
        snprintf(name, sizeof name, "%s.seq%d.ids", tag, k);
        float *fid = exp_tensor(name, &n);
        snprintf(name, sizeof name, "%s.seq%d.logits", tag, k);
        float *want = exp_tensor(name, &nl);
        ck_assert_uint_eq(nl, n * (size_t)m->c.vocab);
        int32_t *ids = to_ids(fid, n);
        nm_batch b = {1, ids, &n, NULL, NULL};
        float *got = malloc(nl * sizeof *got);
        ck_assert_msg(nm_forward_logits(m, &b, a, got, &err) == LH_OK, "%s", err.msg);
        double worst = 0;
        for (size_t i = 0; i < nl; i++) {
            double d = fabs((double)got[i] - want[i]) / fmax(1.0, fabs(want[i]));
            if (d > worst)
                worst = d;
        }
        ck_assert_msg(worst <= 1e-4, "%s seq %d: logits differ by %.3g (relative)", tag, k, worst);
        free(fid);
        free(want);
        free(ids);
        free(got);
    }
    lh_adapter_free(a);
    nm_model_free(m);
}

START_TEST(test_logits_a) { logits_case("a"); }
END_TEST

START_TEST(test_logits_b) { logits_case("b"); }
END_TEST

/* ---- losses ------------------------------------------------------------- */

typedef struct exset {
    size_t n;
    int32_t *ids;    /* packed */
    size_t len[4];
    size_t from[4];
} exset;

static void load_examples(const char *tag, exset *e)
{
    memset(e, 0, sizeof *e);
    size_t total = 0;
    int32_t *parts[4];
    for (int k = 0; k < 4; k++) {
        char name[64];
        size_t n, nf;
        snprintf(name, sizeof name, "%s.ex%d.ids", tag, k);
        float *f = exp_tensor(name, &n);
        parts[k] = to_ids(f, n);
        free(f);
        e->len[k] = n;
        snprintf(name, sizeof name, "%s.ex%d.from", tag, k);
        f = exp_tensor(name, &nf);
        e->from[k] = (size_t)f[0];
        free(f);
        total += n;
    }
    e->n = 4;
    e->ids = malloc(total * sizeof *e->ids);
    size_t off = 0;
    for (int k = 0; k < 4; k++) {
        memcpy(e->ids + off, parts[k], e->len[k] * sizeof *e->ids);
        off += e->len[k];
        free(parts[k]);
    }
}

static void loss_case(const char *tag, const char *l1, const char *l2)
{
    nm_model *m = load_model(tag);
    lh_adapter *a1 = load_adapter(l1), *a2 = l2 ? load_adapter(l2) : NULL;
    exset e;
    load_examples(tag, &e);
    nm_batch b = {e.n, e.ids, e.len, e.from, NULL};
    const lh_adapter *cands[3] = {NULL, a1, a2};
    char name[64];
    size_t nw;
    snprintf(name, sizeof name, "%s.loss", tag);
    float *want = exp_tensor(name, &nw);
    ck_assert_uint_eq(nw, 3);
    double nll_b[3], nll_l[3];
    size_t nt_b = 0, nt_l = 0;
    lh_error err = {0};
    ck_assert_msg(nm_score_batch(m, &b, cands, 3, 1, nll_b, &nt_b, &err) == LH_OK, "%s", err.msg);
    ck_assert_msg(nm_score_batch(m, &b, cands, 3, 0, nll_l, &nt_l, &err) == LH_OK, "%s", err.msg);
    ck_assert_uint_eq(nt_b, nt_l);
    size_t expect_tokens = 0;
    for (size_t k = 0; k < e.n; k++)
        expect_tokens += e.len[k] - 1 - e.from[k];
    ck_assert_uint_eq(nt_b, expect_tokens);
    for (int i = 0; i < 3; i++) {
        ck_close_rel(nll_l[i] / (double)nt_l, want[i], 1e-4, "loss vs reference (loop)");
        ck_close_rel(nll_b[i] / (double)nt_b, want[i], 1e-4, "loss vs reference (batched)");
        ck_close_rel(nll_b[i], nll_l[i], 1e-5, "batched vs one at a time");
    }
    /* Packing: the same sums, example by example. */
    double sum[3] = {0, 0, 0};
    size_t off = 0;
    for (size_t k = 0; k < e.n; k++) {
        nm_batch one = {1, e.ids + off, &e.len[k], &e.from[k], NULL};
        double nll[3];
        size_t nt;
        ck_assert_msg(nm_score_batch(m, &one, cands, 3, 1, nll, &nt, &err) == LH_OK, "%s",
                      err.msg);
        for (int i = 0; i < 3; i++)
            sum[i] += nll[i];
        off += e.len[k];
    }
    for (int i = 0; i < 3; i++)
        ck_close_rel(sum[i], nll_b[i], 1e-5, "packed vs one by one");
    /* The adapters matter (otherwise the comparisons above prove little). */
    ck_assert(fabs(nll_b[1] - nll_b[0]) > 1e-3);
    free(want);
    free(e.ids);
    lh_adapter_free(a1);
    lh_adapter_free(a2);
    nm_model_free(m);
}

START_TEST(test_loss_a) { loss_case("a", "a-lora", "a-lora2"); }
END_TEST

START_TEST(test_loss_b) { loss_case("b", "b-lora", NULL); }
END_TEST

/* Many candidates: the batched path groups and shares the prefix. */
START_TEST(test_many_candidates)
{
    nm_model *m = load_model("a");
    lh_adapter *a1 = load_adapter("a-lora"), *a2 = load_adapter("a-lora2");
    exset e;
    load_examples("a", &e);
    nm_batch b = {e.n, e.ids, e.len, e.from, NULL};
    const lh_adapter *cands[7] = {a2, a1, NULL, a2, a1, a2, NULL};
    double nb[7], nl[7];
    size_t nt;
    lh_error err = {0};
    ck_assert(nm_score_batch(m, &b, cands, 7, 1, nb, &nt, &err) == LH_OK);
    ck_assert(nm_score_batch(m, &b, cands, 7, 0, nl, &nt, &err) == LH_OK);
    for (int i = 0; i < 7; i++)
        ck_close_rel(nb[i], nl[i], 1e-5, "batched vs loop");
    ck_close_rel(nb[0], nb[3], 1e-6, "same adapter twice");
    /* A raised stop flag ends scoring with LH_ERR_INTERRUPTED. */
    volatile sig_atomic_t stop = 1;
    b.stop = &stop;
    ck_assert_int_eq(nm_score_batch(m, &b, cands, 7, 1, nb, &nt, &err), LH_ERR_INTERRUPTED);
    ck_close_rel(nb[2], nb[6], 1e-6, "base twice");
    free(e.ids);
    lh_adapter_free(a1);
    lh_adapter_free(a2);
    nm_model_free(m);
}
END_TEST

/* ---- generation --------------------------------------------------------- */

static void gen_case(const char *tag)
{
    nm_model *m = load_model(tag);
    char ln[64];
    snprintf(ln, sizeof ln, "%s-lora", tag);
    lh_adapter *a = load_adapter(ln);
    char name[64];
    size_t np, ng;
    snprintf(name, sizeof name, "%s.gen.prompt", tag);
    float *fp = exp_tensor(name, &np);
    snprintf(name, sizeof name, "%s.gen.out", tag);
    float *fg = exp_tensor(name, &ng);
    if (ng == 1 && fg[0] < 0)
        ng = 0;
    int32_t *prompt = to_ids(fp, np);
    int32_t *out = NULL;
    size_t n_out = 0;
    lh_error err = {0};
    ck_assert_msg(nm_generate_ids(m, a, prompt, np, 12, &out, &n_out, &err) == LH_OK, "%s",
                  err.msg);
    ck_assert_uint_eq(n_out, ng);
    for (size_t i = 0; i < ng; i++)
        ck_assert_int_eq(out[i], (int32_t)fg[i]);
    /* KV cache vs argmax of the full forward re-run on prompt + generated. */
    size_t T = np + n_out;
    int32_t *all = malloc(T * sizeof *all);
    memcpy(all, prompt, np * sizeof *all);
    memcpy(all + np, out, n_out * sizeof *all);
    float *logits = malloc(T * (size_t)m->c.vocab * sizeof *logits);
    nm_batch b = {1, all, &T, NULL, NULL};
    ck_assert(nm_forward_logits(m, &b, a, logits, &err) == LH_OK);
    for (size_t i = np - 1; i < T; i++) {
        const float *row = logits + i * (size_t)m->c.vocab;
        int best = 0;
        for (int v = 1; v < m->c.vocab; v++)
            if (row[v] > row[best])
                best = v;
        if (i + 1 < T)
            ck_assert_int_eq(best, all[i + 1]);
        else if (n_out < 12) {
            int stop = 0;
            for (int k = 0; k < m->c.n_eos; k++)
                stop |= m->c.eos_ids[k] == best;
            ck_assert_msg(stop, "generation stopped early without EOS");
        }
    }
    free(all);
    free(logits);
    free(out);
    free(prompt);
    free(fp);
    free(fg);
    lh_adapter_free(a);
    nm_model_free(m);
}

START_TEST(test_generate_a) { gen_case("a"); }
END_TEST

START_TEST(test_generate_b) { gen_case("b"); }
END_TEST

/* ---- refusals ----------------------------------------------------------- */

static const char *base_cfg =
    "{\"model_type\":\"llama\",\"hidden_size\":16,\"intermediate_size\":32,"
    "\"num_hidden_layers\":1,\"num_attention_heads\":2,\"vocab_size\":10%s}";

/* Parse base_cfg with extra members; return the status, message in err. */
static lh_status parse_with(const char *extra, const char *model_type, lh_error *err)
{
    char text[1024];
    snprintf(text, sizeof text, base_cfg, extra);
    if (model_type) {
        char *p = strstr(text, "llama");
        char tmp[1024];
        snprintf(tmp, sizeof tmp, "%.*s%s%s", (int)(p - text), text, model_type, p + 5);
        snprintf(text, sizeof text, "%s", tmp);
    }
    lh_json *j = NULL;
    lh_status s = lh_json_parse(text, strlen(text), "cfg.json", &j, err);
    ck_assert_msg(s == LH_OK, "%s", err->msg);
    nm_config c;
    s = nm_config_parse(j, "cfg.json", &c, err);
    lh_json_free(j);
    return s;
}

START_TEST(test_bad_configs)
{
    static const struct {
        const char *extra, *model_type, *key;
    } cases[] = {
        {",\"hidden_act\":\"gelu\"", NULL, "hidden_act"},
        {",\"rope_scaling\":{\"rope_type\":\"yarn\",\"factor\":2}", NULL, "rope_scaling.rope_type"},
        {",\"rope_scaling\":{\"type\":\"dynamic\",\"factor\":2}", NULL, "rope_scaling.type"},
        {",\"rope_scaling\":{\"rope_type\":\"llama3\",\"factor\":8}", NULL, "low_freq_factor"},
        {",\"mlp_bias\":true", NULL, "mlp_bias"},
        {",\"use_sliding_window\":true", "qwen2", "use_sliding_window"},
        {",\"partial_rotary_factor\":0.5", NULL, "partial_rotary_factor"},
        {",\"num_key_value_heads\":3", NULL, "num_key_value_heads"},
        {",\"quantization_config\":{\"bits\":4}", NULL, "quantization_config"},
        {",\"attention_bias\":true", "mistral", "attention_bias"},
        {"", "gpt2", "model_type"},
        {",\"eos_token_id\":[1,99]", NULL, "eos_token_id"},
        {",\"head_dim\":7", NULL, "head_dim"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        lh_error err = {0};
        lh_status s = parse_with(cases[i].extra, cases[i].model_type, &err);
        ck_assert_msg(s != LH_OK, "case %zu (%s) accepted", i, cases[i].key);
        ck_assert_msg(strstr(err.msg, cases[i].key) && strstr(err.msg, "cfg.json"),
                      "case %zu: '%s' does not name %s", i, err.msg, cases[i].key);
    }
    lh_error err = {0};
    ck_assert_int_eq(parse_with("", NULL, &err), LH_OK);
    /* Missing required key. */
    const char *t = "{\"model_type\":\"llama\",\"hidden_size\":16}";
    lh_json *j = NULL;
    ck_assert(lh_json_parse(t, strlen(t), "cfg.json", &j, &err) == LH_OK);
    nm_config c;
    ck_assert(nm_config_parse(j, "cfg.json", &c, &err) == LH_ERR_NOT_FOUND);
    ck_assert_msg(strstr(err.msg, "intermediate_size") != NULL, "%s", err.msg);
    lh_json_free(j);
    /* Defaults and the eos list. */
    ck_assert_int_eq(parse_with(",\"eos_token_id\":[3,4],\"num_key_value_heads\":1", NULL, &err),
                     LH_OK);
}
END_TEST

/* The RoPE frequencies of the three kinds, against values computed by hand
 * from the formulas (llama3: one frequency in each wavelength band). */
START_TEST(test_rope_freqs)
{
    nm_config c = {0};
    c.head_dim = 4;
    c.rope_theta = 100.0;
    float f[2];
    nm_rope_init(&c, f);
    ck_assert(fabsf(f[0] - 1.0f) < 1e-7f && fabsf(f[1] - 0.1f) < 1e-7f);
    c.rope_type = NM_ROPE_LINEAR;
    c.rope_factor = 4.0;
    nm_rope_init(&c, f);
    ck_assert(fabsf(f[0] - 0.25f) < 1e-7f && fabsf(f[1] - 0.025f) < 1e-8f);
    /* llama3 with old=20, lo=1, hi=2: wavelengths 2pi (< 10: kept) and 62.8 (> 20: /factor). */
    c.rope_type = NM_ROPE_LLAMA3;
    c.rope_factor = 8.0;
    c.rope_low_freq_factor = 1.0;
    c.rope_high_freq_factor = 2.0;
    c.rope_orig_max_pos = 20.0;
    nm_rope_init(&c, f);
    ck_assert(fabsf(f[0] - 1.0f) < 1e-7f);
    ck_assert(fabsf(f[1] - 0.1f / 8) < 1e-8f);
    /* old=100: wavelength 62.8 lies between 50 and 100: smoothed. */
    c.rope_orig_max_pos = 100.0;
    nm_rope_init(&c, f);
    double wl = 2 * M_PI / 0.1, sm = (100.0 / wl - 1.0) / 1.0;
    double want = (1 - sm) * 0.1 / 8 + sm * 0.1;
    ck_assert_msg(fabs(f[1] - want) < 1e-6, "%g vs %g", f[1], want);
}
END_TEST

/* A copy of model a with one tensor dropped, renamed or reshaped. */
static char *tmpdir_with(const char *drop, const char *rename_to, int reshape)
{
    char *dir = ck_dir_with_config("check_native", FIX "/a/config.json");
    lh_error err = {0};
    char *p;
    lh_safetensors *st = NULL;
    ck_assert(lh_st_open(FIX "/a/model.safetensors", &st, &err) == LH_OK);
    lh_st_entry *en = calloc(st->n_tensors, sizeof *en);
    size_t n = 0;
    for (size_t i = 0; i < st->n_tensors; i++) {
        const lh_st_tensor *t = &st->tensors[i];
        int hit = !strcmp(t->name, drop);
        if (hit && !rename_to && !reshape)
            continue;
        en[n].name = hit && rename_to ? rename_to : t->name;
        en[n].dtype = t->dtype;
        en[n].ndim = t->ndim;
        memcpy(en[n].shape, t->shape, sizeof t->shape);
        if (hit && reshape) {  /* same bytes, transposed shape */
            en[n].shape[0] = t->shape[1];
            en[n].shape[1] = t->shape[0];
        }
        en[n].data = t->data;
        n++;
    }
    p = lh_path_join(dir, "model.safetensors");
    ck_assert_msg(lh_st_write(p, en, n, NULL, NULL, 0, &err) == LH_OK, "%s", err.msg);
    free(p);
    free(en);
    lh_st_free(st);
    return dir;
}

START_TEST(test_bad_checkpoints)
{
    const char *victim = "model.layers.1.self_attn.k_proj.weight";
    struct {
        const char *rename;
        int reshape;
        lh_status code;
        const char *needle;
    } cases[] = {
        {NULL, 0, LH_ERR_NOT_FOUND, victim},
        {"model.layers.1.self_attn.kk_proj.weight", 0, LH_ERR_FORMAT, "kk_proj"},
        {NULL, 1, LH_ERR_SHAPE, victim},
    };
    for (size_t i = 0; i < 3; i++) {
        char *dir = tmpdir_with(victim, cases[i].rename, cases[i].reshape);
        nm_model *m = NULL;
        lh_error err = {0};
        lh_status s = nm_model_load(dir, &m, &err);
        ck_assert_msg(s == cases[i].code, "case %zu: status %d (%s)", i, s, err.msg);
        ck_assert_msg(strstr(err.msg, cases[i].needle) != NULL, "case %zu: %s", i, err.msg);
        ck_assert(m == NULL);
        lh_rmtree(dir);
        free(dir);
    }
}
END_TEST

/* BF16 checkpoints: every weight arrives as the BF16 rounding of the F32 one. */
START_TEST(test_bf16_checkpoint)
{
    char *dir = ck_dir_with_config("check_native", FIX "/a/config.json");
    lh_error err = {0};
    char *p;
    lh_safetensors *st = NULL;
    ck_assert(lh_st_open(FIX "/a/model.safetensors", &st, &err) == LH_OK);
    lh_st_entry *en = calloc(st->n_tensors, sizeof *en);
    void **bufs = calloc(st->n_tensors, sizeof *bufs);
    for (size_t i = 0; i < st->n_tensors; i++) {
        const lh_st_tensor *t = &st->tensors[i];
        float *f = malloc(t->numel * sizeof *f);
        ck_assert(lh_st_read_f32(st, t, f, &err) == LH_OK);
        bufs[i] = malloc(t->numel * 2);
        ck_assert(lh_convert_from_f32(LH_BF16, f, bufs[i], t->numel) == 0);
        free(f);
        en[i].name = t->name;
        en[i].dtype = LH_BF16;
        en[i].ndim = t->ndim;
        memcpy(en[i].shape, t->shape, sizeof t->shape);
        en[i].data = bufs[i];
    }
    p = lh_path_join(dir, "model.safetensors");
    ck_assert_msg(lh_st_write(p, en, st->n_tensors, NULL, NULL, 0, &err) == LH_OK, "%s", err.msg);
    free(p);
    nm_model *m16 = NULL, *m32 = load_model("a");
    ck_assert_msg(nm_model_load(dir, &m16, &err) == LH_OK, "%s", err.msg);
    ck_assert_uint_eq(m16->blob_floats, m32->blob_floats);
    size_t differ = 0;
    for (size_t i = 0; i < m32->blob_floats; i++) {
        float want = lh_bf16_to_f32(lh_f32_to_bf16(m32->blob[i]));
        ck_assert(m16->blob[i] == want);
        differ += m16->blob[i] != m32->blob[i];
    }
    ck_assert_uint_gt(differ, m32->blob_floats / 2); /* the rounding did happen */
    for (size_t i = 0; i < st->n_tensors; i++)
        free(bufs[i]);
    free(bufs);
    free(en);
    lh_st_free(st);
    nm_model_free(m16);
    nm_model_free(m32);
    lh_rmtree(dir);
    free(dir);
}
END_TEST

START_TEST(test_bad_adapters)
{
    nm_model *m = load_model("a");
    lh_error err = {0};
    const lh_target_shape bad[] = {
        {"model.layers.2.self_attn.q_proj", 2, 64, 64},    /* no layer 2 */
        {"model.layers.0.self_attn.k_proj", 2, 64, 64},    /* k is 64 -> 32 */
        {"model.layers.0.mlp.fc1", 2, 64, 96},             /* no such module */
        {"model.embed_tokens", 2, 64, 260},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        lh_adapter *a = NULL;
        ck_assert(lh_adapter_create(&bad[i], 1, &a, &err) == LH_OK);
        nm_lora l = {0};
        ck_assert(nm_lora_bind(m, a, &l, &err) == LH_ERR_SHAPE);
        ck_assert_msg(strstr(err.msg, bad[i].name) != NULL, "%s", err.msg);
        ck_assert(l.t == NULL);
        lh_adapter_free(a);
    }
    /* A zero adapter changes nothing; first_layer is tracked. */
    const lh_target_shape ok = {"model.layers.1.mlp.down_proj", 2, 96, 64};
    lh_adapter *a = NULL;
    ck_assert(lh_adapter_create(&ok, 1, &a, &err) == LH_OK);
    nm_lora l = {0};
    ck_assert(nm_lora_bind(m, a, &l, &err) == LH_OK);
    ck_assert_int_eq(l.first_layer, 1);
    ck_assert(l.t[1 * NM_NPROJ + NM_DOWN] == &a->targets[0]);
    nm_lora_release(&l);
    lh_adapter_free(a);
    nm_model_free(m);
}
END_TEST

/* A mistral model with a sliding window: fine within it, refused beyond. */
START_TEST(test_sliding_window)
{
    nm_config c = {0};
    snprintf(c.model_type, sizeof c.model_type, "mistral");
    c.dim = 8;
    c.hidden = 8;
    c.n_layers = 1;
    c.n_heads = 2;
    c.n_kv_heads = 1;
    c.head_dim = 4;
    c.vocab = 5;
    c.norm_eps = 1e-5f;
    c.rope_theta = 10000;
    c.sliding_window = 4;
    nm_model *m = NULL;
    lh_error err = {0};
    ck_assert(nm_model_alloc(&c, &m, &err) == LH_OK);
    int32_t ids[5] = {1, 2, 3, 4, 0};
    float logits[5 * 5];
    size_t len = 4;
    nm_batch b = {1, ids, &len, NULL, NULL};
    ck_assert(nm_forward_logits(m, &b, NULL, logits, &err) == LH_OK);
    len = 5;
    ck_assert(nm_forward_logits(m, &b, NULL, logits, &err) == LH_ERR_UNSUPPORTED);
    ck_assert_msg(strstr(err.msg, "sliding_window") != NULL, "%s", err.msg);
    ids[0] = 7; /* out of vocabulary */
    len = 2;
    ck_assert(nm_forward_logits(m, &b, NULL, logits, &err) == LH_ERR_ARG);
    nm_model_free(m);
}
END_TEST

START_TEST(test_exact_match)
{
    ck_assert(lh_exact_match("Paris", "paris"));
    ck_assert(lh_exact_match("  Paris.\n", "PARIS"));
    ck_assert(lh_exact_match("paris", "Paris."));
    ck_assert(lh_exact_match("\tA b\r\n", "a B"));
    ck_assert(!lh_exact_match("paris..", "paris"));      /* only one period goes */
    ck_assert(lh_exact_match("Paris..", "paris.."));
    ck_assert(!lh_exact_match("par is", "paris"));       /* inner spaces stay */
    ck_assert(!lh_exact_match("Ünïcode", "ünïcode"));    /* ASCII folding only */
    ck_assert(!lh_exact_match("paris .", "paris"));      /* no strip after the period */
    ck_assert(lh_exact_match("", " . "));
    ck_assert(!lh_exact_match(NULL, "x"));
}
END_TEST

/* ---- the vtable: text in, same numbers as token ids in ------------------ */

/* Model a's tokenizer.json maps each UTF-8 byte b to id b, <s>=256, </s>=257. */
static void byte_batch(const lh_examples *ex, int bos, int eos, int32_t *ids, size_t *len,
                       size_t *from)
{
    size_t off = 0;
    for (size_t i = 0; i < ex->n; i++) {
        size_t start = off, ni = strlen(ex->input[i]), no = strlen(ex->output[i]);
        if (bos)
            ids[off++] = 256;
        for (size_t k = 0; k < ni; k++)
            ids[off++] = (unsigned char)ex->input[i][k];
        for (size_t k = 0; k < no; k++)
            ids[off++] = (unsigned char)ex->output[i][k];
        if (eos)
            ids[off++] = 257;
        len[i] = off - start;
        size_t prefix = (size_t)bos + ni;
        from[i] = prefix ? prefix - 1 : 0;
    }
}

static lh_examples *fixture_examples(void)
{
    lh_examples *ex = NULL;
    lh_error err = {0};
    ck_assert_msg(lh_examples_load(FIX "/examples.jsonl", &ex, &err) == LH_OK, "%s", err.msg);
    return ex;
}

START_TEST(test_backend_text)
{
    lh_examples *ex = fixture_examples();
    lh_adapter *a = load_adapter("a-lora");
    nm_model *m = load_model("a");
    int32_t ids[1024];
    size_t len[16], from[16];
    ck_assert(ex->n <= 16);
    for (int mode = 0; mode < 3; mode++) {
        int bos = mode != 1, eos = mode != 2;
        const char *params[] = {"base", FIX "/a", "bos", bos ? "true" : "false",
                                "eos", eos ? "true" : "false", "threads", "1", NULL};
        lh_backend_opts o;
        lh_backend_opts_default(&o);
        o.params = params;
        lh_backend *b = NULL;
        lh_error err = {0};
        ck_assert_msg(lh_backend_open("native", &o, &b, &err) == LH_OK, "%s", err.msg);
        const lh_adapter *cands[2] = {NULL, a};
        double loss[2];
        ck_assert_msg(lh_backend_score(b, cands, 2, ex, loss, &err) == LH_OK, "%s", err.msg);
        byte_batch(ex, bos, eos, ids, len, from);
        nm_batch bt = {ex->n, ids, len, from, NULL};
        double nll[2];
        size_t nt, counted;
        ck_assert(nm_score_batch(m, &bt, cands, 2, 0, nll, &nt, &err) == LH_OK);
        ck_assert(lh_backend_count_tokens(b, ex, &counted, &err) == LH_OK);
        ck_assert_uint_eq(counted, nt);
        for (int i = 0; i < 2; i++)
            ck_close_rel(loss[i], nll[i] / (double)nt, 1e-6, "backend text vs byte ids");
        if (mode == 0) {
            char *outs[16] = {0};
            ck_assert_msg(lh_backend_generate(b, a, ex, 6, outs, &err) == LH_OK, "%s", err.msg);
            for (size_t i = 0; i < ex->n; i++) {
                ck_assert(outs[i] != NULL);
                free(outs[i]);
            }
        }
        lh_backend_close(b);
    }
    /* The token-count definition: outputs + EOS; without BOS the first
     * output token after an empty input is not scored. */
    size_t out_bytes = 0, empty_inputs = 0;
    for (size_t i = 0; i < ex->n; i++) {
        out_bytes += strlen(ex->output[i]);
        empty_inputs += ex->input[i][0] == '\0';
    }
    ck_assert_uint_gt(empty_inputs, 0);
    byte_batch(ex, 1, 1, ids, len, from);
    size_t n = 0;
    for (size_t i = 0; i < ex->n; i++)
        n += len[i] - 1 - from[i];
    ck_assert_uint_eq(n, out_bytes + ex->n);
    byte_batch(ex, 0, 1, ids, len, from);
    n = 0;
    for (size_t i = 0; i < ex->n; i++)
        n += len[i] - 1 - from[i];
    ck_assert_uint_eq(n, out_bytes + ex->n - empty_inputs);
    nm_model_free(m);
    lh_adapter_free(a);
    lh_examples_free(ex);
}
END_TEST

START_TEST(test_backend_refusals)
{
    lh_backend_opts o;
    lh_backend_opts_default(&o);
    lh_backend *b = NULL;
    lh_error err = {0};
    ck_assert(lh_backend_open("native", &o, &b, &err) == LH_ERR_ARG);
    const char *no_model[] = {"base", FIX "/no-such-model", NULL};
    o.params = no_model;
    ck_assert(lh_backend_open("native", &o, &b, &err) != LH_OK);
    ck_assert_msg(strstr(err.msg, "no-such-model") != NULL, "%s", err.msg);
    /* Model b has no tokenizer.json. */
    const char *model_b[] = {"base", FIX "/b", NULL};
    o.params = model_b;
    ck_assert(lh_backend_open("native", &o, &b, &err) != LH_OK);
    ck_assert_msg(strstr(err.msg, "tokenizer.json") != NULL, "%s", err.msg);
    ck_assert(b == NULL);
}
END_TEST

/* An example longer than model a's 256 positions is refused naming it
 * (before: scored silently); a run that needs more memory than there is
 * is refused before it starts (LORAHUB_MEM_AVAILABLE lowers the limit). */
START_TEST(test_backend_context_and_memory)
{
    char path[] = "/tmp/lh-native-ctx-XXXXXX";
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    FILE *f = fdopen(fd, "w");
    fprintf(f, "{\"input\": \"ab\", \"output\": \"c\"}\n{\"input\": \"");
    for (int i = 0; i < 300; i++)
        fputc('x', f);
    fprintf(f, "\", \"output\": \"y\"}\n");
    fclose(f);
    lh_examples *ex = NULL;
    lh_error err = {0};
    ck_assert_msg(lh_examples_load(path, &ex, &err) == LH_OK, "%s", err.msg);
    unlink(path);
    const char *params[] = {"base", FIX "/a", "threads", "1", NULL};
    lh_backend_opts o;
    lh_backend_opts_default(&o);
    o.params = params;
    lh_backend *b = NULL;
    ck_assert_msg(lh_backend_open("native", &o, &b, &err) == LH_OK, "%s", err.msg);
    const lh_adapter *cands[1] = {NULL};
    double loss[1];
    ck_assert_int_eq(lh_backend_score(b, cands, 1, ex, loss, &err), LH_ERR_UNSUPPORTED);
    ck_assert_msg(strstr(err.msg, "example 2 is 303 tokens, more than the model's context of 256 "
                                  "positions"), "%s", err.msg);
    char *outs[2] = {0};
    ck_assert_int_eq(lh_backend_generate(b, NULL, ex, 4, outs, &err), LH_ERR_UNSUPPORTED);
    ck_assert_msg(strstr(err.msg, "example 2 has a prompt of 301 tokens"), "%s", err.msg);
    /* the first example alone fits, unless memory is short */
    ex->n = 1;
    ck_assert_msg(lh_backend_score(b, cands, 1, ex, loss, &err) == LH_OK, "%s", err.msg);
    setenv("LORAHUB_MEM_AVAILABLE", "1000", 1);
    ck_assert_int_eq(lh_backend_score(b, cands, 1, ex, loss, &err), LH_ERR_NOMEM);
    ck_assert_msg(strstr(err.msg, "needs about") && strstr(err.msg, "of memory available"), "%s",
                  err.msg);
    unsetenv("LORAHUB_MEM_AVAILABLE");
    ex->n = 2;
    lh_backend_close(b);
    lh_examples_free(ex);
}
END_TEST

/* ---- the model interface (model/model.h) ------------------------------ */

/* The four fixture examples of tag as (prompt, target) pairs: the prompt
 * is everything up to and including the position scoring starts from. */
static void exset_pairs(const exset *e, lh_model_pair *pairs)
{
    size_t off = 0;
    for (size_t k = 0; k < e->n; k++) {
        size_t np = e->from[k] + 1;
        pairs[k] = (lh_model_pair){e->ids + off, np, e->ids + off + np, e->len[k] - np};
        off += e->len[k];
    }
}

static lh_model *load_lh_model(const char *tag)
{
    char dir[256];
    snprintf(dir, sizeof dir, FIX "/%s", tag);
    lh_model *m = NULL;
    lh_error err = {0};
    ck_assert_msg(lh_model_load(dir, &m, &err) == LH_OK, "%s", err.msg);
    return m;
}

/* The interface gives the LLaMA runtime's numbers bit for bit. */
static void model_case(const char *tag, const char *lora)
{
    nm_model *nm = load_model(tag);
    lh_model *m = load_lh_model(tag);
    const lh_model_info *info = lh_model_get_info(m);
    ck_assert_str_eq(info->architecture, "llama");
    ck_assert_str_eq(info->model_type, nm->c.model_type);
    ck_assert_int_eq(info->n_layers, nm->c.n_layers);
    ck_assert_int_eq(info->dim, nm->c.dim);
    ck_assert_int_eq(info->vocab, nm->c.vocab);
    ck_assert_uint_eq(info->n_params, nm->blob_floats);
    ck_assert_int_eq(info->bos_id, nm->c.bos_id);
    ck_assert_int_eq(info->expects_bos, nm->c.bos_id >= 0);
    ck_assert_int_eq(info->n_eos, nm->c.n_eos);
    for (int i = 0; i < info->n_eos; i++)
        ck_assert_int_eq(info->eos_ids[i], nm->c.eos_ids[i]);
    lh_adapter *a = load_adapter(lora);
    exset e;
    load_examples(tag, &e);
    nm_batch b = {e.n, e.ids, e.len, e.from, NULL};
    lh_model_pair pairs[4];
    exset_pairs(&e, pairs);
    lh_model_batch mb = {e.n, pairs, NULL};
    const lh_adapter *cands[2] = {NULL, a};
    double want[2], got[2];
    size_t nt_want = 0, nt_got = 0, counted = 0;
    lh_error err = {0};
    ck_assert(nm_score_batch(nm, &b, cands, 2, 1, want, &nt_want, &err) == LH_OK);
    ck_assert_msg(lh_model_score(m, &mb, cands, 2, 1, got, &nt_got, &err) == LH_OK, "%s",
                  err.msg);
    ck_assert(lh_model_count_tokens(m, &mb, &counted, &err) == LH_OK);
    ck_assert_uint_eq(nt_got, nt_want);
    ck_assert_uint_eq(counted, nt_want);
    for (int i = 0; i < 2; i++)
        ck_assert_msg(got[i] == want[i], "candidate %d: %.17g vs %.17g", i, got[i], want[i]);
    /* Without a prompt the first target token has nothing before it. */
    lh_model_pair bare = {NULL, 0, pairs[0].target, pairs[0].n_target};
    lh_model_batch one = {1, &bare, NULL};
    ck_assert(lh_model_count_tokens(m, &one, &counted, &err) == LH_OK);
    ck_assert_uint_eq(counted, pairs[0].n_target - 1);
    /* Generation: the same ids as the runtime's. */
    int32_t *g1 = NULL, *g2 = NULL;
    size_t n1 = 0, n2 = 0;
    ck_assert(nm_generate_ids(nm, a, pairs[1].prompt, pairs[1].n_prompt, 6, &g1, &n1, &err) ==
              LH_OK);
    ck_assert(lh_model_generate(m, a, pairs[1].prompt, pairs[1].n_prompt, 6, &g2, &n2, &err) ==
              LH_OK);
    ck_assert_uint_eq(n1, n2);
    for (size_t i = 0; i < n1; i++)
        ck_assert_int_eq(g1[i], g2[i]);
    ck_assert(lh_model_check_adapter(m, a, &err) == LH_OK);
    ck_assert(lh_model_check_adapter(m, NULL, &err) == LH_OK);
    free(g1);
    free(g2);
    free(e.ids);
    lh_adapter_free(a);
    lh_model_free(m);
    nm_model_free(nm);
}

START_TEST(test_model_a) { model_case("a", "a-lora"); }
END_TEST

START_TEST(test_model_b) { model_case("b", "b-lora"); }
END_TEST

START_TEST(test_model_refusals)
{
    lh_model *m = load_lh_model("a");
    lh_error err = {0};
    const lh_target_shape bad[] = {
        {"model.layers.2.self_attn.q_proj", 2, 64, 64},
        {"model.layers.0.self_attn.k_proj", 2, 64, 64},
        {"encoder.block.0.layer.0.SelfAttention.q", 2, 64, 64},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        lh_adapter *a = NULL;
        ck_assert(lh_adapter_create(&bad[i], 1, &a, &err) == LH_OK);
        ck_assert(lh_model_check_adapter(m, a, &err) == LH_ERR_SHAPE);
        ck_assert_msg(strstr(err.msg, bad[i].name) != NULL, "%s", err.msg);
        const lh_adapter *cands[1] = {a};
        int32_t ids[3] = {1, 2, 3};
        lh_model_pair p = {ids, 1, ids + 1, 2};
        lh_model_batch mb = {1, &p, NULL};
        double nll;
        size_t nt;
        ck_assert(lh_model_score(m, &mb, cands, 1, 1, &nll, &nt, &err) == LH_ERR_SHAPE);
        ck_assert_msg(strstr(err.msg, bad[i].name) != NULL, "%s", err.msg);
        lh_adapter_free(a);
    }
    lh_model_free(m);
    /* The registry names the file and the model types it knows. */
    char tmpl[] = "/tmp/check_native.XXXXXX";
    char *dir = mkdtemp(tmpl);
    ck_assert(dir != NULL);
    char *p = lh_path_join(dir, "config.json");
    const char *cfgs[] = {"{\"model_type\":\"bert\"}", "{\"d_model\":8}", "[1]"};
    const char *needles[] = {"model_type 'bert' is not supported (llama, mistral, qwen2, t5)",
                             "missing string key 'model_type'", "not a JSON object"};
    for (int i = 0; i < 3; i++) {
        ck_assert(lh_write_file_atomic(p, cfgs[i], strlen(cfgs[i]), &err) == LH_OK);
        lh_model *bad_model = NULL;
        ck_assert(lh_model_load(dir, &bad_model, &err) != LH_OK);
        ck_assert(bad_model == NULL);
        ck_assert_msg(strstr(err.msg, needles[i]) && strstr(err.msg, "config.json"), "%s",
                      err.msg);
    }
    free(p);
    lh_rmtree(dir);
}
END_TEST

/* A writable copy of a (a loaded adapter may map its file read-only). */
static lh_adapter *copy_adapter(const lh_adapter *a)
{
    lh_target_shape *shapes = calloc(a->n_targets, sizeof *shapes);
    for (size_t i = 0; i < a->n_targets; i++)
        shapes[i] = (lh_target_shape){a->targets[i].name, a->targets[i].r, a->targets[i].d_in,
                                      a->targets[i].d_out};
    lh_adapter *c = NULL;
    lh_error err = {0};
    ck_assert(lh_adapter_create(shapes, a->n_targets, &c, &err) == LH_OK);
    for (size_t i = 0; i < c->n_targets; i++) {
        lh_target *t = &c->targets[i];
        const lh_target *src = lh_adapter_find(a, t->name);
        memcpy(t->A, src->A, (size_t)t->r * t->d_in * sizeof *t->A);
        memcpy(t->B, src->B, (size_t)t->d_out * t->r * sizeof *t->B);
        t->scale = src->scale;
        t->alpha = src->alpha;
    }
    free(shapes);
    return c;
}

/* The backend contract: a NaN candidate gets a NaN loss, its neighbours
 * the losses they get alone, and the call succeeds. */
START_TEST(test_nan_candidate)
{
    lh_adapter *a1 = load_adapter("a-lora"), *a2 = load_adapter("a-lora2");
    lh_adapter *bad = copy_adapter(a1);
    bad->targets[0].A[0] = NAN;
    lh_examples *ex = fixture_examples();
    const char *params[] = {"base", FIX "/a", "threads", "1", NULL};
    lh_backend_opts o;
    lh_backend_opts_default(&o);
    o.params = params;
    lh_backend *b = NULL;
    lh_error err = {0};
    ck_assert_msg(lh_backend_open("native", &o, &b, &err) == LH_OK, "%s", err.msg);
    const lh_adapter *cands[3] = {a1, bad, a2}, *clean[3] = {a1, a1, a2};
    double loss[3], clean_loss[3], alone;
    ck_assert_msg(lh_backend_score(b, cands, 3, ex, loss, &err) == LH_OK, "%s", err.msg);
    ck_assert_msg(isnan(loss[1]), "NaN candidate scored %g", loss[1]);
    ck_assert(lh_backend_score(b, clean, 3, ex, clean_loss, &err) == LH_OK);
    for (int i = 0; i < 3; i += 2) {
        /* Bit for bit what the same call without the NaN gives (the NaN
         * stays in its own rows), and what the candidate gets alone up to
         * the rounding of a taller stacked matmul. */
        ck_assert_msg(loss[i] == clean_loss[i], "candidate %d: %.17g vs %.17g without the NaN",
                      i, loss[i], clean_loss[i]);
        ck_assert(lh_backend_score(b, &cands[i], 1, ex, &alone, &err) == LH_OK);
        ck_close_rel(loss[i], alone, 1e-6, "beside a NaN candidate vs alone");
    }
    /* The same at the model level, batched and one at a time. */
    lh_model *m = load_lh_model("a");
    exset e;
    load_examples("a", &e);
    lh_model_pair pairs[4];
    exset_pairs(&e, pairs);
    lh_model_batch mb = {e.n, pairs, NULL};
    for (int batched = 0; batched < 2; batched++) {
        double nll[3], one;
        size_t nt;
        ck_assert(lh_model_score(m, &mb, cands, 3, batched, nll, &nt, &err) == LH_OK);
        ck_assert(isnan(nll[1]));
        for (int i = 0; i < 3; i += 2) {
            ck_assert(lh_model_score(m, &mb, &cands[i], 1, batched, &one, &nt, &err) == LH_OK);
            if (!batched) /* one at a time: the very same computation */
                ck_assert_msg(nll[i] == one, "candidate %d: %.17g vs %.17g", i, nll[i], one);
            ck_close_rel(nll[i], one, 1e-6, "model: beside a NaN candidate vs alone");
        }
    }
    free(e.ids);
    lh_model_free(m);
    lh_backend_close(b);
    lh_examples_free(ex);
    lh_adapter_free(bad);
    lh_adapter_free(a1);
    lh_adapter_free(a2);
}
END_TEST

/* ---- conformance: native vs the PyTorch exec backend -------------------- */

START_TEST(test_conformance_torch)
{
    if (system("/usr/bin/python3 -c 'import torch, numpy' >/dev/null 2>&1") != 0) {
        fprintf(stderr, "check_native: SKIPPED conformance with the PyTorch backend: "
                        "/usr/bin/python3 cannot import torch\n");
        return;
    }
    char top[4096], cmd[16384], model[4200];
    ck_assert(getcwd(top, sizeof top) != NULL);
    snprintf(model, sizeof model, "%s/" FIX "/a", top);
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s/examples/backends/torch_backend.py --base %s",
             top, model);
    lh_examples *ex = fixture_examples();
    lh_adapter *a1 = load_adapter("a-lora"), *a2 = load_adapter("a-lora2");
    const lh_adapter *cands[3] = {NULL, a1, a2};
    const char *params[] = {"base", model, "backend-cmd", cmd, "backend-timeout", "120", NULL};
    lh_backend_opts o;
    lh_backend_opts_default(&o);
    o.params = params;
    lh_backend *nat = NULL, *ext = NULL;
    lh_error err = {0};
    ck_assert_msg(lh_backend_open("native", &o, &nat, &err) == LH_OK, "%s", err.msg);
    ck_assert_msg(lh_backend_open("exec", &o, &ext, &err) == LH_OK, "%s", err.msg);
    double ln[3], lt[3];
    ck_assert_msg(lh_backend_score(nat, cands, 3, ex, ln, &err) == LH_OK, "%s", err.msg);
    ck_assert_msg(lh_backend_score(ext, cands, 3, ex, lt, &err) == LH_OK, "%s", err.msg);
    for (int i = 0; i < 3; i++)
        ck_close_rel(ln[i], lt[i], 1e-4, "native vs torch loss");
    char *on[16] = {0}, *ot[16] = {0};
    ck_assert_msg(lh_backend_generate(nat, a1, ex, 8, on, &err) == LH_OK, "%s", err.msg);
    ck_assert_msg(lh_backend_generate(ext, a1, ex, 8, ot, &err) == LH_OK, "%s", err.msg);
    for (size_t i = 0; i < ex->n; i++) {
        ck_assert_msg(!strcmp(on[i], ot[i]), "example %zu: native '%s' vs torch '%s'", i, on[i],
                      ot[i]);
        free(on[i]);
        free(ot[i]);
    }
    lh_backend_close(nat);
    lh_backend_close(ext);
    lh_adapter_free(a1);
    lh_adapter_free(a2);
    lh_examples_free(ex);
}
END_TEST

static Suite *native_suite(void)
{
    Suite *s = suite_create("native");
    TCase *tc = tcase_create("reference");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_logits_a);
    tcase_add_test(tc, test_logits_b);
    tcase_add_test(tc, test_loss_a);
    tcase_add_test(tc, test_loss_b);
    tcase_add_test(tc, test_many_candidates);
    tcase_add_test(tc, test_generate_a);
    tcase_add_test(tc, test_generate_b);
    suite_add_tcase(s, tc);
    TCase *tr = tcase_create("refusals");
    tcase_set_timeout(tr, 30);
    tcase_add_test(tr, test_bad_configs);
    tcase_add_test(tr, test_rope_freqs);
    tcase_add_test(tr, test_bad_checkpoints);
    tcase_add_test(tr, test_bad_adapters);
    tcase_add_test(tr, test_bf16_checkpoint);
    tcase_add_test(tr, test_sliding_window);
    tcase_add_test(tr, test_exact_match);
    suite_add_tcase(s, tr);
    TCase *tb = tcase_create("backend");
    tcase_set_timeout(tb, 180);
    tcase_add_test(tb, test_backend_text);
    tcase_add_test(tb, test_backend_refusals);
    tcase_add_test(tb, test_conformance_torch);
    suite_add_tcase(s, tb);
    TCase *tm = tcase_create("model");
    tcase_set_timeout(tm, 60);
    tcase_add_test(tm, test_model_a);
    tcase_add_test(tm, test_model_b);
    tcase_add_test(tm, test_model_refusals);
    tcase_add_test(tm, test_nan_candidate);
    tcase_add_test(tm, test_backend_context_and_memory);
    suite_add_tcase(s, tm);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(native_suite());
    srunner_run_all(sr, CK_ENV);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    lh_st_free(expected);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

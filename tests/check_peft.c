/* tests/check_peft.c - PEFT directories: configs (rslora, rank/alpha
 * patterns and their first-match rule, regex and list targets,
 * layers_to_transform), refusals, shapes, dtypes, key forms, save + load,
 * and lh_adapter_create/find/load. Inputs are generated here into a temp
 * directory: tensors with lh_st_write, configs as literal strings. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib/lorahub.h"

static char tmpdir[256];

static void setup(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/check_peft.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static void teardown(void) { lh_rmtree(tmpdir); }

/* A value exactly representable in F16 and BF16 (k/64, |k| < 64), so
 * converted inputs can be compared exactly. */
static float val(unsigned seed, size_t k)
{
    return (float)((int)((k * 2654435761u + seed * 40503u) % 127u) - 63) / 64.0f;
}

typedef struct tspec {
    const char *name;
    lh_dtype dt;
    int ndim;
    int rows, cols;
} tspec;

static char *path_in(const char *sub, const char *file)
{
    static char buf[4][512];
    static int k;
    k = (k + 1) % 4;
    if (file)
        snprintf(buf[k], sizeof buf[k], "%s/%s/%s", tmpdir, sub, file);
    else
        snprintf(buf[k], sizeof buf[k], "%s/%s", tmpdir, sub);
    return buf[k];
}

static void mkdir_sub(const char *sub)
{
    char cmd[600];
    snprintf(cmd, sizeof cmd, "mkdir -p '%s'", path_in(sub, NULL));
    ck_assert_int_eq(system(cmd), 0);
}

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    ck_assert_int_eq(fclose(f), 0);
}

/* Tensors with val(seed, element index) data. */
static void write_tensors(const char *path, const tspec *ts, size_t n, unsigned seed)
{
    lh_st_entry e[64];
    void *bufs[64];
    ck_assert_uint_le(n, 64);
    for (size_t i = 0; i < n; i++) {
        memset(&e[i], 0, sizeof e[i]);
        e[i].name = ts[i].name;
        e[i].dtype = ts[i].dt;
        e[i].ndim = ts[i].ndim ? ts[i].ndim : 2;
        e[i].shape[0] = ts[i].rows;
        e[i].shape[1] = ts[i].cols;
        size_t cnt = e[i].ndim == 1 ? (size_t)ts[i].rows : (size_t)ts[i].rows * ts[i].cols;
        float *f = malloc((cnt ? cnt : 1) * sizeof *f);
        for (size_t q = 0; q < cnt; q++)
            f[q] = val(seed + (unsigned)i, q);
        if (ts[i].dt == LH_F16 || ts[i].dt == LH_BF16) {
            void *h = malloc(cnt * 2 + 2);
            lh_convert_from_f32(ts[i].dt, f, h, cnt);
            free(f);
            bufs[i] = h;
        } else {
            bufs[i] = f;
        }
        e[i].data = bufs[i];
    }
    const char *mk[] = {"format"}, *mv[] = {"pt"};
    lh_error err = {0};
    ck_assert_msg(lh_st_write(path, e, n, mk, mv, 1, &err) == LH_OK, "%s", err.msg);
    for (size_t i = 0; i < n; i++)
        free(bufs[i]);
}

#define PFX "base_model.model.model.layers."
#define CFG_BASE "\"peft_type\": \"LORA\", \"base_model_name_or_path\": \"tiny\", " \
                 "\"task_type\": \"CAUSAL_LM\""

/* The standard fixture: 2 layers x {q_proj [16->16], v_proj [16->8]} rank 4. */
static void std_tensors(const char *sub, lh_dtype dt, int r_q1)
{
    tspec ts[] = {
        {PFX "0.self_attn.q_proj.lora_A.weight", dt, 2, 4, 16},
        {PFX "0.self_attn.q_proj.lora_B.weight", dt, 2, 16, 4},
        {PFX "1.self_attn.q_proj.lora_A.weight", dt, 2, r_q1, 16},
        {PFX "1.self_attn.q_proj.lora_B.weight", dt, 2, 16, r_q1},
        {PFX "0.self_attn.v_proj.lora_A.weight", dt, 2, 4, 16},
        {PFX "0.self_attn.v_proj.lora_B.weight", dt, 2, 8, 4},
        {PFX "1.self_attn.v_proj.lora_A.weight", dt, 2, 4, 16},
        {PFX "1.self_attn.v_proj.lora_B.weight", dt, 2, 8, 4},
    };
    mkdir_sub(sub);
    write_tensors(path_in(sub, "adapter_model.safetensors"), ts, 8, 7);
}

static void std_dir(const char *sub, const char *cfg_json)
{
    std_tensors(sub, LH_F32, 4);
    write_text(path_in(sub, "adapter_config.json"), cfg_json);
}

static lh_status load_sub(const char *sub, lh_adapter **a, lh_error *err)
{
    lh_error_clear(err);
    return lh_peft_load_dir(path_in(sub, NULL), a, err);
}

/* Expect a failure with code and a message containing needle. */
static void expect_fail(const char *sub, lh_status code, const char *needle)
{
    lh_adapter *a = NULL;
    lh_error err = {0};
    lh_status s = load_sub(sub, &a, &err);
    ck_assert_msg(s == code, "want %s, got %s: %s", lh_strerror(code), lh_strerror(s), err.msg);
    ck_assert_ptr_null(a);
    ck_assert_msg(strstr(err.msg, needle), "message '%s' lacks '%s'", err.msg, needle);
    ck_assert_msg(!strchr(err.msg, '\n'), "message has a newline: %s", err.msg);
}

static const lh_target *need(const lh_adapter *a, const char *name)
{
    const lh_target *t = lh_adapter_find(a, name);
    ck_assert_msg(t != NULL, "no target %s", name);
    return t;
}

/* ---- loading ----------------------------------------------------------- */

START_TEST(test_basic)
{
    std_dir("a", "{" CFG_BASE ", \"r\": 4, \"lora_alpha\": 8, "
                 "\"target_modules\": [\"q_proj\", \"v_proj\"]}");
    lh_adapter *a = NULL;
    lh_error err = {0};
    ck_assert_msg(load_sub("a", &a, &err) == LH_OK, "%s", err.msg);
    ck_assert_uint_eq(a->n_targets, 4);
    for (size_t i = 1; i < a->n_targets; i++)
        ck_assert_int_lt(strcmp(a->targets[i - 1].name, a->targets[i].name), 0);
    const lh_target *t = need(a, "model.layers.1.self_attn.v_proj");
    ck_assert_int_eq(t->r, 4);
    ck_assert_int_eq(t->d_in, 16);
    ck_assert_int_eq(t->d_out, 8);
    ck_assert_float_eq(t->scale, 2.0f);
    ck_assert_float_eq(t->alpha, 8.0f);
    /* tensor index 7 in std_tensors is layer 1 v_proj B: seed 7+7 */
    for (size_t q = 0; q < 8 * 4; q++)
        ck_assert_float_eq(t->B[q], val(14, q));
    for (size_t q = 0; q < 4 * 16; q++)
        ck_assert_float_eq(t->A[q], val(13, q));
    ck_assert_str_eq(a->base_model, "tiny");
    ck_assert_str_eq(a->task_type, "CAUSAL_LM");
    ck_assert_int_eq(a->r, 4);
    ck_assert_int_eq(a->format, LH_FORMAT_PEFT);
    ck_assert_int_eq(a->dtype, LH_F32);
    ck_assert_uint_eq(a->dtypes, 1u << LH_F32);
    ck_assert_uint_eq(lh_adapter_n_params(a), 2 * 4 * (16 + 16) + 2 * 4 * (16 + 8));
    ck_assert(a->file_size > 0);
    ck_assert_ptr_null(lh_adapter_find(a, "model.layers.2.self_attn.v_proj"));
    lh_adapter_free(a);
}
END_TEST

START_TEST(test_rslora)
{
    std_dir("a", "{" CFG_BASE ", \"r\": 4, \"lora_alpha\": 8, \"use_rslora\": true, "
                 "\"target_modules\": [\"q_proj\", \"v_proj\"]}");
    lh_adapter *a = NULL;
    lh_error err = {0};
    ck_assert_msg(load_sub("a", &a, &err) == LH_OK, "%s", err.msg);
    for (size_t i = 0; i < a->n_targets; i++)
        ck_assert_float_eq_tol(a->targets[i].scale, 4.0f, 1e-6); /* 8 / sqrt(4) */
    ck_assert_int_eq(a->use_rslora, 1);
    lh_adapter_free(a);
}
END_TEST

/* rank_pattern: the first key in file order that matches wins, even if a
 * later key is more specific; keys match at a '.' boundary only. */
START_TEST(test_patterns_first_match)
{
    std_tensors("a", LH_F32, 8);
    write_text(path_in("a", "adapter_config.json"),
               "{" CFG_BASE ", \"r\": 4, \"lora_alpha\": 8, \"target_modules\": [\"q_proj\", "
               "\"v_proj\"], \"rank_pattern\": {\"layers\\\\.1\\\\.self_attn\\\\.q_proj\": 8, "
               "\"q_proj\": 2, \"proj\": 3}, \"alpha_pattern\": {\"v_proj\": 16, \"layers\\\\.1.*\": 1}}");
    /* layer 0 q_proj: "q_proj" says 2 but the tensors have rank 4 */
    expect_fail("a", LH_ERR_SHAPE, "rank_pattern['q_proj'] says 2");

    /* without the q_proj key: layer 1 q_proj gets 8 from the first key;
     * "proj" never matches (needs a '.' before it) */
    write_text(path_in("a", "adapter_config.json"),
               "{" CFG_BASE ", \"r\": 4, \"lora_alpha\": 8, \"target_modules\": [\"q_proj\", "
               "\"v_proj\"], \"rank_pattern\": {\"layers\\\\.1\\\\.self_attn\\\\.q_proj\": 8, "
               "\"proj\": 3}, \"alpha_pattern\": {\"v_proj\": 16, \"layers\\\\.1.*\": 1}}");
    lh_adapter *a = NULL;
    lh_error err = {0};
    ck_assert_msg(load_sub("a", &a, &err) == LH_OK, "%s", err.msg);
    const lh_target *q1 = need(a, "model.layers.1.self_attn.q_proj");
    ck_assert_int_eq(q1->r, 8);
    ck_assert_float_eq_tol(q1->scale, 1.0f / 8, 1e-7); /* alpha_pattern layers\.1.* -> 1 */
    ck_assert_float_eq_tol(need(a, "model.layers.0.self_attn.q_proj")->scale, 2.0f, 1e-7);
    /* v_proj in layer 1: "v_proj" comes first, so 16 / 4 */
    ck_assert_float_eq_tol(need(a, "model.layers.1.self_attn.v_proj")->scale, 4.0f, 1e-7);
    ck_assert_float_eq_tol(need(a, "model.layers.0.self_attn.v_proj")->scale, 4.0f, 1e-7);
    ck_assert_int_eq(lh_adapter_max_rank(a), 8);
    lh_adapter_free(a);

    /* the more specific key after the broader one never applies */
    write_text(path_in("a", "adapter_config.json"),
               "{" CFG_BASE ", \"r\": 4, \"lora_alpha\": 8, \"target_modules\": [\"q_proj\", "
               "\"v_proj\"], \"rank_pattern\": {\"q_proj\": 4, "
               "\"layers\\\\.1\\\\.self_attn\\\\.q_proj\": 8}}");
    expect_fail("a", LH_ERR_SHAPE, "model.layers.1.self_attn.q_proj' has rank 8");
}
END_TEST

START_TEST(test_regex_targets)
{
    std_dir("a", "{" CFG_BASE ", \"r\": 4, \"lora_alpha\": 4, \"target_modules\": "
                 "\"model\\\\.layers\\\\.[01]\\\\.self_attn\\\\.(q|v)_proj\"}");
    lh_adapter *a = NULL;
    lh_error err = {0};
    ck_assert_msg(load_sub("a", &a, &err) == LH_OK, "%s", err.msg);
    ck_assert_uint_eq(a->n_targets, 4);
    ck_assert_float_eq(a->targets[0].scale, 1.0f);
    lh_adapter_free(a);
    /* a string is a full match: "q_proj" alone selects nothing */
    write_text(path_in("a", "adapter_config.json"),
               "{" CFG_BASE ", \"r\": 4, \"target_modules\": \".*q_proj\"}");
    expect_fail("a", LH_ERR_FORMAT, "self_attn.v_proj' has LoRA tensors but the config's "
                                    "target_modules does not select it");
    write_text(path_in("a", "adapter_config.json"),
               "{" CFG_BASE ", \"r\": 4, \"target_modules\": \"q_proj|v_proj\"}");
    expect_fail("a", LH_ERR_FORMAT, "target_modules does not select it");
    write_text(path_in("a", "adapter_config.json"),
               "{" CFG_BASE ", \"r\": 4, \"target_modules\": \"model.layers.(0\"}");
    expect_fail("a", LH_ERR_FORMAT, "regex");
    /* catastrophic backtracking is cut off with a clear error */
    write_text(path_in("a", "adapter_config.json"),
               "{" CFG_BASE ", \"r\": 4, \"target_modules\": \"((\\\\w|\\\\.)*)*\\\\d\"}");
    expect_fail("a", LH_ERR_FORMAT, "regex limit");
    /* list: a suffix must follow a '.'; "proj" does not select q_proj */
    write_text(path_in("a", "adapter_config.json"),
               "{" CFG_BASE ", \"r\": 4, \"target_modules\": [\"proj\"]}");
    expect_fail("a", LH_ERR_FORMAT, "does not select it");
    /* all-linear and a full name both select */
    write_text(path_in("a", "adapter_config.json"),
               "{" CFG_BASE ", \"r\": 4, \"target_modules\": \"all-linear\"}");
    ck_assert_msg(load_sub("a", &a, &err) == LH_OK, "%s", err.msg);
    lh_adapter_free(a);
    /* layers_to_transform: layer 1 is not selected by a suffix match */
    write_text(path_in("a", "adapter_config.json"),
               "{" CFG_BASE ", \"r\": 4, \"target_modules\": [\"q_proj\", \"v_proj\"], "
               "\"layers_to_transform\": [0]}");
    expect_fail("a", LH_ERR_FORMAT, "model.layers.1.self_attn");
    write_text(path_in("a", "adapter_config.json"),
               "{" CFG_BASE ", \"r\": 4, \"target_modules\": [\"q_proj\", \"v_proj\"], "
               "\"layers_to_transform\": [1, 0], \"layers_pattern\": \"layers\"}");
    ck_assert_msg(load_sub("a", &a, &err) == LH_OK, "%s", err.msg);
    lh_adapter_free(a);
}
END_TEST

START_TEST(test_missing_files)
{
    expect_fail("nope", LH_ERR_NOT_FOUND, "nope");
    std_tensors("a", LH_F32, 4);
    expect_fail("a", LH_ERR_NOT_FOUND, "adapter_config.json");
    mkdir_sub("b");
    write_text(path_in("b", "adapter_config.json"), "{\"peft_type\": \"LORA\"}");
    expect_fail("b", LH_ERR_NOT_FOUND, "adapter_model.safetensors");
    /* adapter_model.bin is read (lib/torchzip.c); a broken one says why */
    write_text(path_in("b", "adapter_model.bin"), "PK\x03\x04 pickle");
    expect_fail("b", LH_ERR_FORMAT, "too small for a zip");
    /* through the dispatcher too */
    lh_adapter *a = NULL;
    lh_error err = {0};
    ck_assert_int_eq(lh_adapter_load(path_in("b", "adapter_model.bin"), &a, &err),
                     LH_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(err.msg, "adapter_model.bin"));
    ck_assert_int_eq(lh_adapter_load(path_in("zzz", NULL), &a, &err), LH_ERR_NOT_FOUND);
    ck_assert_ptr_nonnull(strstr(err.msg, "zzz"));
    /* broken config and truncated tensors */
    std_tensors("c", LH_F32, 4);
    write_text(path_in("c", "adapter_config.json"), "{\"peft_type\": \"LORA\", \"r\": ");
    expect_fail("c", LH_ERR_FORMAT, "adapter_config.json");
    write_text(path_in("c", "adapter_config.json"), "{\"r\": 4}");
    expect_fail("c", LH_ERR_FORMAT, "peft_type");
    write_text(path_in("c", "adapter_config.json"), "{\"peft_type\": \"IA3\"}");
    expect_fail("c", LH_ERR_UNSUPPORTED, "IA3");
    /* a value with a newline in it still gives a one-line message */
    write_text(path_in("c", "adapter_config.json"), "{\"peft_type\": \"IA3\\nX\"}");
    expect_fail("c", LH_ERR_UNSUPPORTED, "IA3?X");
    write_text(path_in("c", "adapter_config.json"), "{\"peft_type\": \"LORA\", \"r\": 0}");
    expect_fail("c", LH_ERR_FORMAT, "'r'");
    write_text(path_in("c", "adapter_config.json"), "{\"peft_type\": \"LORA\", \"r\": 4}");
    ck_assert_int_eq(truncate(path_in("c", "adapter_model.safetensors"), 200), 0);
    expect_fail("c", LH_ERR_FORMAT, "adapter_model.safetensors");
}
END_TEST

START_TEST(test_shapes)
{
    const char *cfg = "{" CFG_BASE ", \"r\": 4, \"target_modules\": [\"q_proj\"]}";
    tspec bad_rank[] = {
        {PFX "0.self_attn.q_proj.lora_A.weight", LH_F32, 2, 4, 16},
        {PFX "0.self_attn.q_proj.lora_B.weight", LH_F32, 2, 16, 3},
    };
    mkdir_sub("a");
    write_text(path_in("a", "adapter_config.json"), cfg);
    write_tensors(path_in("a", "adapter_model.safetensors"), bad_rank, 2, 1);
    expect_fail("a", LH_ERR_SHAPE, "B's columns must equal A's rows");
    tspec no_b[] = {{PFX "0.self_attn.q_proj.lora_A.weight", LH_F32, 2, 4, 16}};
    write_tensors(path_in("a", "adapter_model.safetensors"), no_b, 1, 1);
    expect_fail("a", LH_ERR_FORMAT, "has lora_A but no lora_B");
    tspec no_a[] = {{PFX "0.self_attn.q_proj.lora_B.weight", LH_F32, 2, 16, 4}};
    write_tensors(path_in("a", "adapter_model.safetensors"), no_a, 1, 1);
    expect_fail("a", LH_ERR_FORMAT, "has lora_B but no lora_A");
    tspec r8[] = {
        {PFX "0.self_attn.q_proj.lora_A.weight", LH_F32, 2, 8, 16},
        {PFX "0.self_attn.q_proj.lora_B.weight", LH_F32, 2, 16, 8},
    };
    write_tensors(path_in("a", "adapter_model.safetensors"), r8, 2, 1);
    expect_fail("a", LH_ERR_SHAPE, "config's r is 4");
    tspec one_d[] = {
        {PFX "0.self_attn.q_proj.lora_A.weight", LH_F32, 1, 64, 0},
        {PFX "0.self_attn.q_proj.lora_B.weight", LH_F32, 2, 16, 4},
    };
    write_tensors(path_in("a", "adapter_model.safetensors"), one_d, 2, 1);
    expect_fail("a", LH_ERR_SHAPE, "1 dimensions");
    tspec both[] = {
        {PFX "0.self_attn.q_proj.lora_A.weight", LH_F32, 2, 4, 16},
        {PFX "0.self_attn.q_proj.lora_A.default.weight", LH_F32, 2, 4, 16},
        {PFX "0.self_attn.q_proj.lora_B.weight", LH_F32, 2, 16, 4},
    };
    write_tensors(path_in("a", "adapter_model.safetensors"), both, 3, 1);
    expect_fail("a", LH_ERR_FORMAT, "two lora_A tensors");
    tspec ints[] = {
        {PFX "0.self_attn.q_proj.lora_A.weight", LH_I32, 2, 4, 16},
        {PFX "0.self_attn.q_proj.lora_B.weight", LH_F32, 2, 16, 4},
    };
    write_tensors(path_in("a", "adapter_model.safetensors"), ints, 2, 1);
    expect_fail("a", LH_ERR_UNSUPPORTED, "dtype I32");
}
END_TEST

static void refuse_tensor(const char *name, int rows, int cols, const char *needle)
{
    tspec ts[] = {
        {PFX "0.self_attn.q_proj.lora_A.weight", LH_F32, 2, 4, 16},
        {PFX "0.self_attn.q_proj.lora_B.weight", LH_F32, 2, 16, 4},
        {name, LH_F32, cols ? 2 : 1, rows, cols},
    };
    mkdir_sub("r");
    write_text(path_in("r", "adapter_config.json"),
               "{" CFG_BASE ", \"r\": 4, \"target_modules\": [\"q_proj\"]}");
    write_tensors(path_in("r", "adapter_model.safetensors"), ts, 3, 1);
    expect_fail("r", LH_ERR_UNSUPPORTED, needle);
}

static void refuse_config(const char *extra, const char *needle)
{
    char cfg[512];
    snprintf(cfg, sizeof cfg, "{" CFG_BASE ", \"r\": 4, \"target_modules\": [\"q_proj\", "
             "\"v_proj\"], %s}", extra);
    std_dir("c", cfg);
    expect_fail("c", LH_ERR_UNSUPPORTED, needle);
}

START_TEST(test_refusals)
{
    refuse_tensor(PFX "0.self_attn.q_proj.lora_magnitude_vector", 16, 0, "DoRA");
    refuse_tensor(PFX "0.self_attn.q_proj.lora_B.bias", 16, 0, "lora_bias");
    refuse_tensor("base_model.model.model.embed_tokens.lora_embedding_A", 4, 100, "embedding");
    refuse_tensor("base_model.model.lm_head.weight", 100, 16, "unknown tensor key");
    refuse_tensor("base_model.model.lm_head.modules_to_save.default.weight", 100, 16,
                  "modules_to_save");
    refuse_tensor("lora_A.weight", 4, 16, "unknown tensor key");
    refuse_config("\"use_dora\": true", "DoRA");
    refuse_config("\"lora_bias\": true", "lora_bias");
    refuse_config("\"bias\": \"all\"", "bias");
    refuse_config("\"modules_to_save\": [\"lm_head\"]", "modules_to_save");
    refuse_config("\"target_parameters\": [\"experts.gate_up_proj\"]", "target_parameters");
    /* the harmless forms of those keys load */
    std_dir("ok", "{" CFG_BASE ", \"r\": 4, \"target_modules\": [\"q_proj\", \"v_proj\"], "
                  "\"use_dora\": false, \"modules_to_save\": null, \"bias\": \"none\", "
                  "\"target_parameters\": [], \"unknown_future_key\": {\"x\": 1}}");
    lh_adapter *a = NULL;
    lh_error err = {0};
    ck_assert_msg(load_sub("ok", &a, &err) == LH_OK, "%s", err.msg);
    lh_adapter_free(a);
}
END_TEST

START_TEST(test_default_keys)
{
    tspec ts[] = {
        {PFX "0.self_attn.q_proj.lora_A.default.weight", LH_F32, 2, 4, 16},
        {PFX "0.self_attn.q_proj.lora_B.default.weight", LH_F32, 2, 16, 4},
    };
    mkdir_sub("d");
    write_text(path_in("d", "adapter_config.json"),
               "{" CFG_BASE ", \"r\": 4, \"lora_alpha\": 16, \"target_modules\": [\"q_proj\"]}");
    write_tensors(path_in("d", "adapter_model.safetensors"), ts, 2, 3);
    lh_adapter *a = NULL;
    lh_error err = {0};
    ck_assert_msg(load_sub("d", &a, &err) == LH_OK, "%s", err.msg);
    ck_assert_uint_eq(a->n_targets, 1);
    const lh_target *t = need(a, "model.layers.0.self_attn.q_proj");
    ck_assert_float_eq(t->scale, 4.0f);
    for (size_t q = 0; q < 64; q++) {
        ck_assert_float_eq(t->A[q], val(3, q));
        ck_assert_float_eq(t->B[q], val(4, q));
    }
    lh_adapter_free(a);
}
END_TEST

START_TEST(test_half_inputs)
{
    lh_dtype dts[] = {LH_F16, LH_BF16};
    for (int k = 0; k < 2; k++) {
        std_tensors("h", dts[k], 4);
        write_text(path_in("h", "adapter_config.json"),
                   "{" CFG_BASE ", \"r\": 4, \"target_modules\": [\"q_proj\", \"v_proj\"]}");
        lh_adapter *a = NULL;
        lh_error err = {0};
        ck_assert_msg(load_sub("h", &a, &err) == LH_OK, "%s", err.msg);
        ck_assert_int_eq(a->dtype, dts[k]);
        ck_assert_uint_eq(a->dtypes, 1u << dts[k]);
        const lh_target *t = need(a, "model.layers.0.self_attn.q_proj");
        for (size_t q = 0; q < 64; q++) {
            ck_assert_float_eq(t->A[q], val(7, q));
            ck_assert_float_eq(t->B[q], val(8, q));
        }
        ck_assert_float_eq(t->scale, 2.0f); /* default lora_alpha 8 / r 4 */
        lh_adapter_free(a);
    }
}
END_TEST

/* ---- saving ------------------------------------------------------------ */

/* delta W = scale * B @ A, in double */
static double delta(const lh_target *t, int o, int i)
{
    double s = 0;
    for (int j = 0; j < t->r; j++)
        s += (double)t->B[(size_t)o * t->r + j] * t->A[(size_t)j * t->d_in + i];
    return s * t->scale;
}

static void assert_same_deltas(const lh_adapter *x, const lh_adapter *y, double tol)
{
    ck_assert_uint_eq(x->n_targets, y->n_targets);
    for (size_t k = 0; k < x->n_targets; k++) {
        const lh_target *a = &x->targets[k], *b = &y->targets[k];
        ck_assert_str_eq(a->name, b->name);
        ck_assert_int_eq(a->r, b->r);
        ck_assert_int_eq(a->d_in, b->d_in);
        ck_assert_int_eq(a->d_out, b->d_out);
        for (int o = 0; o < a->d_out; o++)
            for (int i = 0; i < a->d_in; i++) {
                double da = delta(a, o, i), db = delta(b, o, i);
                ck_assert_msg(fabs(da - db) <= tol * (1 + fabs(da)), "%s [%d,%d]: %g vs %g",
                              a->name, o, i, da, db);
            }
    }
}

START_TEST(test_save_round_trip)
{
    std_tensors("in", LH_F32, 8);
    write_text(path_in("in", "adapter_config.json"),
               "{" CFG_BASE ", \"r\": 4, \"lora_alpha\": 12, \"use_rslora\": true, "
               "\"target_modules\": [\"q_proj\", \"v_proj\"], "
               "\"rank_pattern\": {\"model\\\\.layers\\\\.1\\\\.self_attn\\\\.q_proj\": 8}}");
    lh_adapter *a = NULL, *b = NULL;
    lh_error err = {0};
    ck_assert_msg(load_sub("in", &a, &err) == LH_OK, "%s", err.msg);
    lh_peft_save_opts o = {.dtype = LH_F32};
    ck_assert_msg(lh_peft_save(a, path_in("out", NULL), &o, &err) == LH_OK, "%s", err.msg);
    ck_assert_msg(load_sub("out", &b, &err) == LH_OK, "%s", err.msg);
    assert_same_deltas(a, b, 1e-6);
    for (size_t k = 0; k < b->n_targets; k++) {
        ck_assert_float_eq(b->targets[k].scale, 1.0f);
        /* A unchanged, B carries the scale */
        const lh_target *ta = &a->targets[k], *tb = &b->targets[k];
        for (size_t q = 0; q < (size_t)ta->r * ta->d_in; q++)
            ck_assert_float_eq(ta->A[q], tb->A[q]);
        for (size_t q = 0; q < (size_t)ta->r * ta->d_out; q++)
            ck_assert_float_eq(tb->B[q], ta->B[q] * ta->scale);
    }
    ck_assert_int_eq(b->r, 4);
    ck_assert(b->lora_alpha == 4);
    ck_assert_int_eq(b->use_rslora, 0);
    ck_assert_str_eq(b->base_model, "tiny");
    lh_adapter_free(b);

    /* the exact config text: PEFT's sorted keys, indent 2, no newline at end */
    char *text = NULL;
    size_t len = 0;
    ck_assert_int_eq(lh_read_file(path_in("out", "adapter_config.json"), &text, &len, &err), LH_OK);
    const char *want =
        "{\n"
        "  \"alpha_pattern\": {\n"
        "    \"model\\\\.layers\\\\.1\\\\.self_attn\\\\.q_proj\": 8\n"
        "  },\n"
        "  \"base_model_name_or_path\": \"tiny\",\n"
        "  \"bias\": \"none\",\n"
        "  \"fan_in_fan_out\": false,\n"
        "  \"inference_mode\": true,\n"
        "  \"init_lora_weights\": true,\n"
        "  \"lora_alpha\": 4,\n"
        "  \"lora_dropout\": 0.0,\n"
        "  \"modules_to_save\": null,\n"
        "  \"peft_type\": \"LORA\",\n"
        "  \"r\": 4,\n"
        "  \"rank_pattern\": {\n"
        "    \"model\\\\.layers\\\\.1\\\\.self_attn\\\\.q_proj\": 8\n"
        "  },\n"
        "  \"target_modules\": [\n"
        "    \"q_proj\",\n"
        "    \"v_proj\"\n"
        "  ],\n"
        "  \"task_type\": \"CAUSAL_LM\",\n"
        "  \"use_dora\": false,\n"
        "  \"use_rslora\": false\n"
        "}";
    ck_assert_str_eq(text, want);
    free(text);

    /* safetensors metadata is exactly {"format":"pt"} and tensors are F32 */
    lh_safetensors *st = NULL;
    ck_assert_int_eq(lh_st_open(path_in("out", "adapter_model.safetensors"), &st, &err), LH_OK);
    ck_assert_uint_eq(st->n_meta, 1);
    ck_assert_str_eq(lh_st_meta(st, "format"), "pt");
    ck_assert_uint_eq(st->n_tensors, 8);
    ck_assert_ptr_nonnull(lh_st_find(st, PFX "1.self_attn.q_proj.lora_B.weight"));
    ck_assert_int_eq(lh_st_find(st, PFX "1.self_attn.q_proj.lora_B.weight")->shape[1], 8);
    lh_st_free(st);

    /* overwrite refusal, then force */
    ck_assert_int_eq(lh_peft_save(a, path_in("out", NULL), &o, &err), LH_ERR_EXISTS);
    o.force = 1;
    o.dtype = LH_BF16;
    o.base_model = "other/model";
    ck_assert_msg(lh_peft_save(a, path_in("out", NULL), &o, &err) == LH_OK, "%s", err.msg);
    ck_assert_msg(load_sub("out", &b, &err) == LH_OK, "%s", err.msg);
    ck_assert_int_eq(b->dtype, LH_BF16);
    ck_assert_str_eq(b->base_model, "other/model");
    assert_same_deltas(a, b, 2e-2); /* bf16 keeps 8 bits */
    lh_adapter_free(b);
    o.dtype = LH_F16;
    ck_assert_msg(lh_peft_save(a, path_in("out", NULL), &o, &err) == LH_OK, "%s", err.msg);
    ck_assert_msg(load_sub("out", &b, &err) == LH_OK, "%s", err.msg);
    ck_assert_int_eq(b->dtype, LH_F16);
    assert_same_deltas(a, b, 3e-3);
    lh_adapter_free(b);
    o.dtype = LH_BOOL;
    ck_assert_int_eq(lh_peft_save(a, path_in("out2", NULL), &o, &err), LH_ERR_ARG);
    ck_assert(!lh_path_exists(path_in("out2", NULL)));
    lh_adapter_free(a);
}
END_TEST

START_TEST(test_save_refuses_nonfinite)
{
    lh_target_shape sh[] = {{"model.layers.0.mlp.up_proj", 2, 4, 8}};
    lh_adapter *a = NULL;
    lh_error err = {0};
    ck_assert_int_eq(lh_adapter_create(sh, 1, &a, &err), LH_OK);
    a->targets[0].B[3] = NAN;
    lh_peft_save_opts o = {.dtype = LH_F32};
    ck_assert_int_eq(lh_peft_save(a, path_in("nan", NULL), &o, &err), LH_ERR_NUMERIC);
    ck_assert(!lh_path_exists(path_in("nan", NULL)));
    a->targets[0].B[3] = 70000.0f;
    o.dtype = LH_F16;
    ck_assert_int_eq(lh_peft_save(a, path_in("big", NULL), &o, &err), LH_ERR_NUMERIC);
    ck_assert_ptr_nonnull(strstr(err.msg, "F16"));
    o.dtype = LH_BF16;
    ck_assert_msg(lh_peft_save(a, path_in("big", NULL), &o, &err) == LH_OK, "%s", err.msg);
    lh_adapter_free(a);
}
END_TEST

/* Equal counts of two ranks: the config takes the larger, the others get
 * rank_pattern/alpha_pattern entries, and the saved files load back. */
START_TEST(test_save_rank_tie)
{
    lh_target_shape sh[] = {
        {"m.0.q", 2, 8, 8}, {"m.1.q", 4, 8, 8}, {"m.0.v", 2, 8, 4}, {"m.1.v", 4, 8, 4},
    };
    lh_adapter *a = NULL, *b = NULL;
    lh_error err = {0};
    ck_assert_int_eq(lh_adapter_create(sh, 4, &a, &err), LH_OK);
    for (size_t k = 0; k < a->n_targets; k++)
        for (int q = 0; q < a->targets[k].r * 8; q++)
            a->targets[k].A[q] = val((unsigned)k, (size_t)q);
    lh_peft_save_opts o = {.dtype = LH_F32};
    ck_assert_msg(lh_peft_save(a, path_in("tie", NULL), &o, &err) == LH_OK, "%s", err.msg);
    lh_json *cfg = NULL;
    ck_assert_int_eq(lh_json_parse_file(path_in("tie", "adapter_config.json"), &cfg, &err), LH_OK);
    long long r;
    ck_assert(lh_json_as_int64(lh_json_get(cfg, "r"), &r));
    ck_assert_int_eq(r, 4);
    const lh_json *rp = lh_json_get(cfg, "rank_pattern");
    ck_assert_uint_eq(rp->len, 2);
    ck_assert_str_eq(rp->keys[0], "m\\.0\\.q");
    ck_assert_str_eq(rp->keys[1], "m\\.0\\.v");
    const lh_json *tm = lh_json_get(cfg, "target_modules");
    ck_assert_uint_eq(tm->len, 2);
    ck_assert_str_eq(tm->items[0]->string, "q");
    ck_assert_str_eq(tm->items[1]->string, "v");
    lh_json_free(cfg);
    ck_assert_msg(load_sub("tie", &b, &err) == LH_OK, "%s", err.msg);
    ck_assert_int_eq(need(b, "m.0.v")->r, 2);
    ck_assert_float_eq(need(b, "m.0.v")->scale, 1.0f);
    ck_assert_float_eq(need(b, "m.1.q")->A[5], val(2, 5)); /* sorted: third */
    lh_adapter_free(b);
    lh_adapter_free(a);
}
END_TEST

/* ---- lh_adapter_create and the dispatcher ------------------------------ */

START_TEST(test_create)
{
    lh_target_shape sh[] = {
        {"b.v_proj", 2, 8, 4}, {"a.q_proj", 3, 8, 8}, {"c.o_proj", 1, 4, 8},
    };
    lh_adapter *a = NULL;
    lh_error err = {0};
    ck_assert_int_eq(lh_adapter_create(sh, 3, &a, &err), LH_OK);
    ck_assert_str_eq(a->targets[0].name, "a.q_proj");
    ck_assert_str_eq(a->targets[2].name, "c.o_proj");
    ck_assert_int_eq(lh_adapter_max_rank(a), 3);
    ck_assert_uint_eq(lh_adapter_n_params(a), 2 * 12 + 3 * 16 + 1 * 12);
    const lh_target *t = lh_adapter_find(a, "b.v_proj");
    ck_assert_ptr_nonnull(t);
    ck_assert_int_eq(t->d_out, 4);
    ck_assert_float_eq(t->scale, 1.0f);
    for (size_t q = 0; q < 8; q++)
        ck_assert_float_eq(t->B[q], 0.0f);
    ck_assert_ptr_null(lh_adapter_find(a, "b"));
    lh_adapter_free(a);
    lh_adapter_free(NULL);
    lh_target_shape dup[] = {{"x", 1, 1, 1}, {"x", 1, 1, 1}};
    ck_assert_int_eq(lh_adapter_create(dup, 2, &a, &err), LH_ERR_ARG);
    lh_target_shape zero[] = {{"x", 0, 1, 1}};
    ck_assert_int_eq(lh_adapter_create(zero, 1, &a, &err), LH_ERR_ARG);
}
END_TEST

START_TEST(test_load_dispatch)
{
    /* a bare .safetensors without a config: scale 1 */
    std_tensors("f", LH_F32, 4);
    char st_path[600];
    snprintf(st_path, sizeof st_path, "%s", path_in("f", "adapter_model.safetensors"));
    lh_adapter *a = NULL;
    lh_error err = {0};
    ck_assert_msg(lh_adapter_load(st_path, &a, &err) == LH_OK, "%s", err.msg);
    ck_assert_str_eq(a->name, "adapter_model.safetensors");
    ck_assert_float_eq(a->targets[0].scale, 1.0f);
    lh_adapter_free(a);
    /* with adapter_config.json beside it */
    write_text(path_in("f", "adapter_config.json"),
               "{" CFG_BASE ", \"r\": 4, \"lora_alpha\": 2, \"target_modules\": [\"q_proj\", "
               "\"v_proj\"]}");
    ck_assert_msg(lh_adapter_load(st_path, &a, &err) == LH_OK, "%s", err.msg);
    ck_assert_float_eq(a->targets[0].scale, 0.5f);
    lh_adapter_free(a);
    /* the directory, with a trailing slash: name is the basename */
    char dir[600];
    snprintf(dir, sizeof dir, "%s/", path_in("f", NULL));
    ck_assert_msg(lh_adapter_load(dir, &a, &err) == LH_OK, "%s", err.msg);
    ck_assert_str_eq(a->name, "f");
    ck_assert_str_eq(a->path, dir);
    lh_adapter_free(a);
    /* garbage */
    write_text(path_in("f", "junk.safetensors"), "this is not a safetensors file at all");
    ck_assert_int_ne(lh_adapter_load(path_in("f", "junk.safetensors"), &a, &err), LH_OK);
    ck_assert_ptr_null(a);
    ck_assert_ptr_nonnull(strstr(err.msg, "junk.safetensors"));
}
END_TEST

static Suite *peft_suite(void)
{
    Suite *s = suite_create("peft");
    TCase *tc = tcase_create("load");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_basic);
    tcase_add_test(tc, test_rslora);
    tcase_add_test(tc, test_patterns_first_match);
    tcase_add_test(tc, test_regex_targets);
    tcase_add_test(tc, test_missing_files);
    tcase_add_test(tc, test_shapes);
    tcase_add_test(tc, test_refusals);
    tcase_add_test(tc, test_default_keys);
    tcase_add_test(tc, test_half_inputs);
    suite_add_tcase(s, tc);
    tc = tcase_create("save");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_save_round_trip);
    tcase_add_test(tc, test_save_refuses_nonfinite);
    tcase_add_test(tc, test_save_rank_tie);
    suite_add_tcase(s, tc);
    tc = tcase_create("adapter");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_create);
    tcase_add_test(tc, test_load_dispatch);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(peft_suite());
    srunner_run_all(sr, CK_NORMAL);
    int nf = srunner_ntests_failed(sr);
    srunner_free(sr);
    return nf ? EXIT_FAILURE : EXIT_SUCCESS;
}

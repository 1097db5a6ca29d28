/* tests/check_llamacpp.c - the llamacpp backend beyond the common contract
 * (tests/check_backend_contract.c): how candidates reach llama.cpp.
 *
 * On the zoo base as an F16 GGUF (examples/zoo/base.gguf) and three zoo
 * modules: a cat composition, which the backend applies as its modules at
 * runtime scales (lh_adapter.sum), scores what the same adapter merged
 * into one GGUF file scores (1e-5 relative), and both move the loss away
 * from the base model's; zero weights are the base model exactly; a
 * module met again is not loaded again (same losses, no new file).
 *
 * T5 (tests/fixtures/t5gguf, tools/t5_gguf_fixture.py: a tiny random
 * Flan-T5-shaped model with a sentencepiece Unigram vocabulary, as a HF
 * directory and as a GGUF): llama.cpp's UGM tokenizer (tokenizer.ggml.model
 * "t5") and lorahub's Unigram tokenizer (tokenizer.json) give the same ids,
 * and sentencepiece's, on texts that exercise the charsmap, unknown
 * characters and whitespace; the encoder-decoder cat by runtime scales
 * equals the merged file; each target group (encoder self-attention,
 * decoder self-attention, cross-attention) moves the loss. The losses
 * against the native T5 are in tests/cli/test-llamacpp-t5.sh. Built
 * without llama.cpp, the suite has nothing to run (make check says so). */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "adapt/backend/backend.h"
#include "compose/compose.h"
#include "lib/adapter.h"
#include "lib/examples.h"
#include "lib/json.h"
#include "model/tokenizer/tokenizer.h"

#ifdef LH_HAVE_LLAMACPP

#include <llama.h>

#define ZOO "examples/zoo"

static lh_adapter *mods[3];
static lh_examples *examples;
static lh_backend *backend;

static void setup(void)
{
    static const char *const names[3] = {"add1", "add3", "sub1"};
    lh_error err;
    for (int i = 0; i < 3; i++) {
        char path[256];
        snprintf(path, sizeof path, ZOO "/modules/%s", names[i]);
        ck_assert_msg(lh_adapter_load(path, &mods[i], &err) == LH_OK, "%s", err.msg);
    }
    ck_assert_msg(lh_examples_load(ZOO "/tasks/add2/fewshot.jsonl", &examples, &err) == LH_OK,
                  "%s", err.msg);
    const char *params[] = {"base-gguf", ZOO "/base.gguf", "threads", "1", NULL};
    lh_backend_opts o;
    lh_backend_opts_default(&o);
    o.params = params;
    ck_assert_msg(lh_backend_open("llamacpp", &o, &backend, &err) == LH_OK, "%s", err.msg);
}

static void teardown(void)
{
    lh_backend_close(backend);
    for (int i = 0; i < 3; i++)
        lh_adapter_free(mods[i]);
    lh_examples_free(examples);
}

static double score(const lh_adapter *cand)
{
    double loss = NAN;
    lh_error err;
    ck_assert_msg(lh_backend_score(backend, &cand, 1, examples, &loss, &err) == LH_OK, "%s",
                  err.msg);
    ck_assert_msg(isfinite(loss), "loss %g", loss);
    return loss;
}

static lh_adapter *cat_of(const double *w)
{
    lh_merge_opts mo;
    lh_merge_opts_default(&mo);
    mo.method = LH_MERGE_CAT;
    lh_adapter *a = NULL;
    lh_error err;
    ck_assert_msg(lh_compose((const lh_adapter *const *)mods, 3, w, &mo, &a, &err) == LH_OK,
                  "%s", err.msg);
    ck_assert_msg(a->sum && a->sum->n == 3, "a cat composition carries its sum");
    return a;
}

/* The same adapter scored as modules at scales and as one merged file. */
static void scales_vs_merged(const double *w, double *by_scales, double *merged)
{
    lh_adapter *a = cat_of(w);
    *by_scales = score(a);
    lh_adapter_sum *sum = a->sum;
    a->sum = NULL; /* now only the merged factors describe it */
    *merged = score(a);
    a->sum = sum;
    lh_adapter_free(a);
}

START_TEST(cat_by_scales_equals_merged)
{
    const double w[3] = {0.6, 0.5, -0.3};
    double s, m;
    scales_vs_merged(w, &s, &m);
    double base = score(NULL);
    ck_assert_msg(fabs(s - m) <= 1e-5 * fabs(m), "cat by scales %.9g, merged %.9g", s, m);
    ck_assert_msg(fabs(s - base) > 1e-3 * base, "the cat (%.9g) does not move the base loss %.9g",
                  s, base);
}
END_TEST

START_TEST(single_module_by_scale_equals_module)
{
    const double w[3] = {0, 1, 0};
    double s, m;
    scales_vs_merged(w, &s, &m);
    double alone = score(mods[1]);
    ck_assert_msg(fabs(s - alone) <= 1e-5 * fabs(alone), "add3 at scale 1 %.9g, alone %.9g", s,
                  alone);
    ck_assert_msg(fabs(m - alone) <= 1e-5 * fabs(alone), "add3 merged %.9g, alone %.9g", m,
                  alone);
}
END_TEST

START_TEST(zero_weights_are_the_base)
{
    const double w[3] = {0, 0, 0};
    lh_adapter *a = cat_of(w);
    double base = score(NULL), zero = score(a);
    ck_assert_msg(zero == base, "w = 0 scores %.17g, the base %.17g", zero, base);
    lh_adapter_free(a);
}
END_TEST

/* A batch of cat candidates over the same modules: each equals itself
 * scored alone, whatever came before (the modules stay loaded). */
START_TEST(batch_of_cats)
{
    const double w1[3] = {1.0, 0.0, 0.0}, w2[3] = {0.2, -0.7, 1.1};
    lh_adapter *a = cat_of(w1), *b = cat_of(w2);
    const lh_adapter *cands[3] = {a, b, a};
    double loss[3];
    lh_error err;
    ck_assert_msg(lh_backend_score(backend, cands, 3, examples, loss, &err) == LH_OK, "%s",
                  err.msg);
    ck_assert_msg(loss[0] == loss[2], "the same candidate twice: %.17g, %.17g", loss[0], loss[2]);
    ck_assert_msg(loss[0] != loss[1], "different weights, same loss %.17g", loss[0]);
    ck_assert_msg(loss[1] == score(b), "b alone differs from b in the batch");
    lh_adapter_free(a);
    lh_adapter_free(b);
}
END_TEST

/* ---- T5: tests/fixtures/t5gguf ---------------------------------------- */

#define T5G "tests/fixtures/t5gguf"

static lh_adapter *t5mods[3]; /* enc-self, dec-self, cross */

static void t5_setup(void)
{
    static const char *const names[3] = {"enc-self", "dec-self", "cross"};
    lh_error err;
    for (int i = 0; i < 3; i++) {
        char path[256];
        snprintf(path, sizeof path, T5G "/modules/%s", names[i]);
        ck_assert_msg(lh_adapter_load(path, &t5mods[i], &err) == LH_OK, "%s", err.msg);
    }
    ck_assert_msg(lh_examples_load(T5G "/examples.jsonl", &examples, &err) == LH_OK, "%s",
                  err.msg);
    const char *params[] = {"base-gguf", T5G "/base.gguf", "threads", "1", NULL};
    lh_backend_opts o;
    lh_backend_opts_default(&o);
    o.params = params;
    ck_assert_msg(lh_backend_open("llamacpp", &o, &backend, &err) == LH_OK, "%s", err.msg);
    memcpy(mods, t5mods, sizeof mods); /* cat_of and scales_vs_merged compose mods[] */
}

static void t5_teardown(void)
{
    lh_backend_close(backend);
    for (int i = 0; i < 3; i++)
        lh_adapter_free(t5mods[i]);
    lh_examples_free(examples);
}

/* A T5 GGUF without output.weight (a tied head, original T5) is refused by
 * name: llama.cpp would score it without T5's rescale of a tied head. The
 * fixture with its output tensor renamed stands for one. */
START_TEST(t5_tied_head_is_refused)
{
    FILE *f = fopen(T5G "/base.gguf", "rb");
    ck_assert_ptr_nonnull(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    rewind(f);
    char *buf = malloc((size_t)n); /* [n] the whole GGUF */
    ck_assert_int_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    char *hit = memmem(buf, (size_t)n, "output.weight", 13);
    ck_assert_ptr_nonnull(hit);
    hit[5] = 'X'; /* "outpuX.weight": same length, so every offset stays valid */
    char path[] = "/tmp/lh-check-tied-XXXXXX.gguf";
    int fd = mkstemps(path, 5);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, buf, (size_t)n), n);
    close(fd);
    free(buf);
    const char *params[] = {"base-gguf", path, "threads", "1", NULL};
    lh_backend_opts o;
    lh_backend_opts_default(&o);
    o.params = params;
    lh_backend *b = NULL;
    lh_error err = {0};
    lh_status st = lh_backend_open("llamacpp", &o, &b, &err);
    unlink(path);
    lh_backend_close(b);
    ck_assert_int_eq(st, LH_ERR_UNSUPPORTED);
    ck_assert_msg(strstr(err.msg, "tied head") && strstr(err.msg, path), "%s", err.msg);
}
END_TEST

START_TEST(t5_cat_by_scales_equals_merged)
{
    const double w[3] = {1.0, 0.9, -0.5};
    double s, m;
    scales_vs_merged(w, &s, &m);
    double base = score(NULL);
    ck_assert_msg(fabs(s - m) <= 1e-5 * fabs(m), "cat by scales %.9g, merged %.9g", s, m);
    ck_assert_msg(fabs(s - base) > 1e-2 * base, "the cat (%.9g) does not move the base loss %.9g",
                  s, base);
    const double zero[3] = {0, 0, 0};
    lh_adapter *a = cat_of(zero);
    ck_assert_msg(score(a) == base, "w = 0 is not the base model");
    lh_adapter_free(a);
}
END_TEST

/* Each target group alone moves the loss, by scale and merged alike: the
 * adapters reach the encoder, the decoder's self-attention and the
 * cross-attention (llama.cpp applies LoRA on all three only when the
 * adapters are set before llama_encode). */
START_TEST(t5_each_group_moves_the_loss)
{
    double base = score(NULL);
    for (int i = 0; i < 3; i++) {
        double w[3] = {0, 0, 0}, s, m;
        w[i] = 1.0;
        scales_vs_merged(w, &s, &m);
        double alone = score(t5mods[i]);
        ck_assert_msg(fabs(s - alone) <= 1e-5 * alone && fabs(m - alone) <= 1e-5 * alone,
                      "module %d: by scale %.9g, merged %.9g, alone %.9g", i, s, m, alone);
        ck_assert_msg(fabs(alone - base) > 3e-3 * base,
                      "module %d moves the loss only from %.9g to %.9g", i, base, alone);
    }
}
END_TEST

/* ids of text by llama.cpp's tokenizer, </s> not added. */
static int llama_ids(const struct llama_vocab *v, const char *text, llama_token *ids, int cap)
{
    int n = llama_tokenize(v, text, (int32_t)strlen(text), ids, cap, false, false);
    ck_assert_msg(n >= 0, "llama_tokenize: %d", n);
    return n;
}

static void expect_same_ids(const lh_tokenizer *tok, const struct llama_vocab *v,
                            const char *text, const lh_json *spm)
{
    int32_t *ids = NULL;
    size_t n = 0;
    lh_error err;
    ck_assert_msg(lh_tokenizer_encode(tok, text, 0, &ids, &n, &err) == LH_OK, "%s", err.msg);
    llama_token lids[1024];
    int ln = llama_ids(v, text, lids, 1024);
    int same = (size_t)ln == n;
    for (size_t i = 0; same && i < n; i++)
        same = ids[i] == lids[i];
    ck_assert_msg(same, "'%s': lorahub gives %zu ids, llama.cpp %d (first %d vs %d)", text, n, ln,
                  n ? ids[0] : -1, ln ? lids[0] : -1);
    if (spm) { /* sentencepiece's ids, from the fixture */
        ck_assert_msg(spm->type == LH_JSON_ARRAY && spm->len == n, "'%s': sentencepiece has %zu "
                      "ids, lorahub %zu", text, spm->len, n);
        for (size_t i = 0; i < n; i++)
            ck_assert_msg(spm->items[i]->number == ids[i], "'%s': id %zu: sentencepiece %g, "
                          "lorahub %d", text, i, spm->items[i]->number, ids[i]);
    }
    free(ids);
}

START_TEST(t5_tokenizers_agree)
{
    lh_error err;
    lh_tokenizer *tok = NULL;
    lh_json *exp = NULL;
    ck_assert_msg(lh_tokenizer_load(T5G "/base/tokenizer.json", &tok, &err) == LH_OK, "%s",
                  err.msg);
    ck_assert_msg(lh_json_parse_file(T5G "/expected.json", &exp, &err) == LH_OK, "%s", err.msg);
    struct llama_model_params mp = llama_model_default_params();
    mp.vocab_only = true;
    struct llama_model *model = llama_model_load_from_file(T5G "/base.gguf", mp);
    ck_assert_msg(model != NULL, "llama.cpp cannot load " T5G "/base.gguf");
    const struct llama_vocab *v = llama_model_get_vocab(model);
    ck_assert_int_eq(llama_vocab_get_add_eos(v), 1); /* T5 appends </s>: so does native */
    ck_assert_int_eq(llama_vocab_get_add_bos(v), 0);
    const lh_json *texts = lh_json_get(exp, "texts");
    ck_assert_msg(texts && texts->type == LH_JSON_ARRAY && texts->len >= 10, "no texts");
    for (size_t i = 0; i < texts->len; i++) {
        const char *text = NULL;
        ck_assert(lh_json_as_string(lh_json_get(texts->items[i], "text"), &text));
        expect_same_ids(tok, v, text, lh_json_get(texts->items[i], "spm"));
    }
    lh_examples *ex = NULL;
    ck_assert_msg(lh_examples_load(T5G "/examples.jsonl", &ex, &err) == LH_OK, "%s", err.msg);
    for (size_t i = 0; i < ex->n; i++) {
        expect_same_ids(tok, v, ex->input[i], NULL);
        expect_same_ids(tok, v, ex->output[i], NULL);
    }
    lh_examples_free(ex);
    llama_model_free(model);
    lh_json_free(exp);
    lh_tokenizer_free(tok);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("llamacpp");
    TCase *tc = tcase_create("candidates");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, cat_by_scales_equals_merged);
    tcase_add_test(tc, single_module_by_scale_equals_module);
    tcase_add_test(tc, zero_weights_are_the_base);
    tcase_add_test(tc, batch_of_cats);
    suite_add_tcase(s, tc);
    TCase *t5 = tcase_create("t5");
    tcase_add_checked_fixture(t5, t5_setup, t5_teardown);
    tcase_set_timeout(t5, 120);
    tcase_add_test(t5, t5_cat_by_scales_equals_merged);
    tcase_add_test(t5, t5_each_group_moves_the_loss);
    tcase_add_test(t5, t5_tokenizers_agree);
    tcase_add_test(t5, t5_tied_head_is_refused);
    suite_add_tcase(s, t5);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

#else

int main(void)
{
    return EXIT_SUCCESS; /* built without llama.cpp: make check prints the one line saying so */
}

#endif

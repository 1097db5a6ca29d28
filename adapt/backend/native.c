/* adapt/backend/native.c - the "native" backend: the built-in model
 * runtime (model/model.h) and a tokenizer.json (model/tokenizer/) behind
 * the lh_backend_i vtable. It knows no architecture: the model reports
 * whether it expects a BOS and which ids end a sequence.
 *
 * Sequence convention (shared with tools/llama_torch.py example_ids):
 *     ids = [bos] + encode(input) + encode(output) + [eos]
 * input and output are tokenized separately; the scored tokens are the
 * output tokens and the EOS. To the model, [bos] + input is the prompt and
 * output + [eos] the target. The loss is the mean over all scored tokens of
 * all examples (token-weighted). BOS is skipped when add_bos is 0 or the
 * config names no bos_token_id; EOS when add_eos is 0. Without a BOS and
 * with an empty input, the first output token has nothing to condition on
 * and is not scored.
 *
 * An encoder-decoder (T5) expects no BOS and reads its input as T5's
 * tokenizer makes it, with </s> appended (lh_model_info says so):
 *     prompt = encode(input) + [eos], target = encode(output) + [eos]
 * and every target token is scored. */
#include <cblas.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "model/model.h"
#include "model/tokenizer/tokenizer.h"

typedef struct nm_backend {
    lh_model *m;
    const lh_model_info *info; /* of m */
    lh_tokenizer *tok;
    int add_bos, add_eos;
    volatile sig_atomic_t *interrupt;
    char model_path[1024];
} nm_backend;

static void nm_backend_free(nm_backend *b)
{
    if (!b)
        return;
    lh_model_free(b->m);
    lh_tokenizer_free(b->tok);
    free(b);
}

static lh_status native_open(const lh_backend_opts *o, void **ctx, lh_error *err)
{
    *ctx = NULL;
    const char *model_path = lh_backend_param(o, "base");
    if (!model_path || !*model_path)
        return lh_error_set(err, LH_ERR_ARG, "native backend: no base model directory given");
    int threads = 0;
    const char *threads_text = lh_backend_param(o, "threads");
    if (threads_text) {
        char *end;
        long t = strtol(threads_text, &end, 10);
        if (end == threads_text || *end || t < 0 || t > 4096)
            return lh_error_set(err, LH_ERR_ARG, "native backend: bad thread count '%s'",
                                threads_text);
        threads = (int)t;
    }
    nm_backend *b = calloc(1, sizeof *b);
    if (!b)
        return lh_error_set(err, LH_ERR_NOMEM, "out of memory");
    const char *bos = lh_backend_param(o, "bos"), *eos = lh_backend_param(o, "eos");
    b->add_bos = !bos || strcmp(bos, "false") != 0;
    b->add_eos = !eos || strcmp(eos, "false") != 0;
    b->interrupt = o->interrupt;
    snprintf(b->model_path, sizeof b->model_path, "%s", model_path);
    if (threads > 0)
        openblas_set_num_threads(threads);
    lh_status s = lh_model_load(model_path, &b->m, err);
    if (!s) {
        b->info = lh_model_get_info(b->m);
        char path[4096];
        snprintf(path, sizeof path, "%s/tokenizer.json", model_path);
        s = lh_tokenizer_load(path, &b->tok, err);
    }
    if (!s && b->add_eos && b->info->n_eos == 0)
        s = lh_error_set(err, LH_ERR_NOT_FOUND,
                         "%s/config.json: no eos_token_id to end the outputs with (use --no-eos)",
                         model_path);
    if (!s && lh_tokenizer_vocab_size(b->tok) > b->info->vocab)
        s = lh_error_set(err, LH_ERR_SHAPE,
                         "%s: tokenizer.json has %d tokens, more than the model's vocab_size %d",
                         model_path, (int)lh_tokenizer_vocab_size(b->tok), b->info->vocab);
    if (s) {
        nm_backend_free(b);
        return s;
    }
    *ctx = b;
    return LH_OK;
}

static void native_close(void *ctx)
{
    nm_backend_free(ctx);
}

/* Growable id buffer. */
typedef struct idbuf {
    int32_t *v;
    size_t n, cap;
} idbuf;

static int idbuf_push(idbuf *b, const int32_t *ids, size_t n)
{
    if (n == 0)
        return 0;
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n)
            cap *= 2;
        int32_t *v = realloc(b->v, cap * sizeof *v);
        if (!v)
            return -1;
        b->v = v;
        b->cap = cap;
    }
    memcpy(b->v + b->n, ids, n * sizeof *ids);
    b->n += n;
    return 0;
}

static lh_status encode(const nm_backend *b, const char *text, int32_t **ids, size_t *n,
                        size_t ex_i, const char *field, lh_error *err)
{
    lh_status s = lh_tokenizer_encode(b->tok, text, 0, ids, n, err);
    if (s) {
        char pre[64];
        snprintf(pre, sizeof pre, "example %zu %s", ex_i + 1, field);
        lh_error_prefix(err, pre);
        return s;
    }
    for (size_t i = 0; i < *n; i++)
        if ((*ids)[i] < 0 || (*ids)[i] >= b->info->vocab) {
            int bad = (int)(*ids)[i];
            free(*ids);
            *ids = NULL;
            return lh_error_set(err, LH_ERR_BACKEND,
                                "example %zu %s: the tokenizer produced id %d outside the model's "
                                "vocabulary", ex_i + 1, field, bad);
        }
    return LH_OK;
}

/* Every example as model pairs: prompt = [bos] + input (+ [eos] when the
 * model says so: T5), target = output + [eos]. The pairs point into ids,
 * which they own. */
typedef struct example_ids {
    lh_model_batch batch;
    lh_model_pair *pairs; /* [n] */
    int32_t *ids;         /* each example's prompt then target, one after the other */
} example_ids;

static void example_ids_release(example_ids *e)
{
    free(e->pairs);
    free(e->ids);
}

static int use_bos(const nm_backend *b)
{
    return b->add_bos && b->info->expects_bos && b->info->bos_id >= 0;
}

/* Append example i's prompt and target to buf; *n_prompt, *n_target their lengths. */
static lh_status encode_example(const nm_backend *b, const lh_examples *ex, size_t i,
                                idbuf *buf, size_t *n_prompt, size_t *n_target, lh_error *err)
{
    int32_t bos_id = b->info->bos_id, eos_id = b->info->n_eos ? b->info->eos_ids[0] : 0;
    int32_t *in = NULL, *out = NULL;
    size_t n_in = 0, n_out = 0;
    lh_status s = encode(b, ex->input[i], &in, &n_in, i, "input", err);
    if (s)
        return s;
    if ((s = encode(b, ex->output[i], &out, &n_out, i, "output", err))) {
        free(in);
        return s;
    }
    size_t start = buf->n;
    int bad = (use_bos(b) && idbuf_push(buf, &bos_id, 1)) || idbuf_push(buf, in, n_in) ||
              (b->info->prompt_ends_with_eos && idbuf_push(buf, &eos_id, 1));
    *n_prompt = buf->n - start;
    bad = bad || idbuf_push(buf, out, n_out) || (b->add_eos && idbuf_push(buf, &eos_id, 1));
    *n_target = buf->n - start - *n_prompt;
    free(in);
    free(out);
    if (bad)
        return lh_error_set(err, LH_ERR_NOMEM, "out of memory");
    if (*n_prompt + *n_target == 0)
        return lh_error_set(err, LH_ERR_ARG, "example %zu: input and output are both empty",
                            i + 1);
    return LH_OK;
}

static lh_status build_batch(const nm_backend *b, const lh_examples *ex, example_ids *e,
                             lh_error *err)
{
    memset(e, 0, sizeof *e);
    size_t n = ex->n;
    idbuf buf = {0};
    lh_model_pair *pairs = calloc(n ? n : 1, sizeof *pairs);
    if (!pairs)
        return lh_error_set(err, LH_ERR_NOMEM, "out of memory");
    lh_status s = LH_OK;
    for (size_t i = 0; i < n && !s; i++)
        s = encode_example(b, ex, i, &buf, &pairs[i].n_prompt, &pairs[i].n_target, err);
    if (s) {
        free(buf.v);
        free(pairs);
        return s;
    }
    /* buf has stopped moving: point the pairs into it. */
    size_t off = 0;
    for (size_t i = 0; i < n; i++) {
        pairs[i].prompt = buf.v + off;
        pairs[i].target = buf.v + off + pairs[i].n_prompt;
        off += pairs[i].n_prompt + pairs[i].n_target;
    }
    e->pairs = pairs;
    e->ids = buf.v;
    e->batch = (lh_model_batch){.n = n, .pairs = pairs, .stop = b->interrupt};
    return LH_OK;
}

static lh_status native_score(void *ctx, const lh_adapter *const *cands, int n,
                              const lh_examples *ex, double *loss, lh_error *err)
{
    nm_backend *b = ctx;
    if (b->interrupt && *b->interrupt)
        return lh_error_set(err, LH_ERR_INTERRUPTED, "interrupted");
    if (!ex || ex->n == 0)
        return lh_error_set(err, LH_ERR_ARG, "native backend: no examples to score");
    example_ids e;
    lh_status s = build_batch(b, ex, &e, err);
    if (s)
        return s;
    double *nll = malloc((size_t)n * sizeof *nll);
    size_t n_tok = 0;
    if (!nll)
        s = lh_error_set(err, LH_ERR_NOMEM, "out of memory");
    else
        s = lh_model_score(b->m, &e.batch, cands, n, 1, nll, &n_tok, err);
    /* A non-finite nll stays non-finite here: the backend contract. */
    if (!s)
        for (int i = 0; i < n; i++)
            loss[i] = nll[i] / (double)n_tok;
    free(nll);
    example_ids_release(&e);
    return s;
}

static lh_status native_count_tokens(void *ctx, const lh_examples *ex, size_t *n_tokens,
                                     lh_error *err)
{
    nm_backend *b = ctx;
    example_ids e;
    lh_status s = build_batch(b, ex, &e, err);
    if (s)
        return s;
    s = lh_model_count_tokens(b->m, &e.batch, n_tokens, err);
    example_ids_release(&e);
    return s;
}

static lh_status native_generate(void *ctx, const lh_adapter *cand, const lh_examples *ex,
                                 int max_new_tokens, char **outputs, lh_error *err)
{
    nm_backend *b = ctx;
    lh_status s = LH_OK;
    size_t i;
    for (i = 0; i < ex->n; i++)
        outputs[i] = NULL;
    int32_t bos_id = b->info->bos_id;
    for (i = 0; i < ex->n && !s; i++) {
        if (b->interrupt && *b->interrupt) {
            s = lh_error_set(err, LH_ERR_INTERRUPTED, "interrupted");
            break;
        }
        int32_t *in = NULL, *gen = NULL;
        size_t n_in = 0, n_gen = 0;
        idbuf buf = {0};
        if ((s = encode(b, ex->input[i], &in, &n_in, i, "input", err)))
            break;
        int32_t eos_id = b->info->n_eos ? b->info->eos_ids[0] : 0;
        if ((use_bos(b) && idbuf_push(&buf, &bos_id, 1)) || idbuf_push(&buf, in, n_in) ||
            (b->info->prompt_ends_with_eos && idbuf_push(&buf, &eos_id, 1))) {
            s = lh_error_set(err, LH_ERR_NOMEM, "out of memory");
        } else if (buf.n == 0) {
            s = lh_error_set(err, LH_ERR_ARG, "example %zu: empty prompt (no BOS, empty input)",
                             i + 1);
        } else if (!(s = lh_model_generate(b->m, cand, buf.v, buf.n, max_new_tokens, &gen,
                                           &n_gen, err))) {
            s = lh_tokenizer_decode(b->tok, gen, n_gen, 1, &outputs[i], err);
        }
        free(in);
        free(gen);
        free(buf.v);
    }
    if (s)
        for (i = 0; i < ex->n; i++) {
            free(outputs[i]);
            outputs[i] = NULL;
        }
    return s;
}

static void native_describe(void *ctx, lh_backend_info *info)
{
    nm_backend *b = ctx;
    const lh_model_info *mi = b->info;
    snprintf(info->identity, sizeof info->identity, "%s", b->model_path);
    snprintf(info->description, sizeof info->description,
             "native: %.300s (%s, %d layers, dim %d, vocab %d, %.2fM parameters, %.1f MB F32)",
             b->model_path, mi->model_type, mi->n_layers, mi->dim, mi->vocab,
             (double)mi->n_params / 1e6, (double)mi->n_params * 4 / 1048576.0);
}

static const lh_backend_key native_keys[] = {
    {"base", 1, "MODEL_DIR"},
    {"threads", 0, "N"},
    {"bos", 0, "true|false"},
    {"eos", 0, "true|false"},
    {NULL, 0, NULL},
};

const lh_backend_i lh_backend_native = {
    .name = "native",
    .summary = "the built-in runtime on the CPU: LLaMA family, T5/Flan-T5 (model/)",
    .keys = native_keys,
    .open = native_open,
    .score = native_score,
    .generate = native_generate,
    .count_tokens = native_count_tokens,
    .describe = native_describe,
    .close = native_close,
};

/* adapt/backend/native.c - the "native" backend: the embedded
 * LLaMA-family engine behind the lh_backend_i vtable.
 *
 * Sequence convention (shared with tools/llama_torch.py example_ids):
 *     ids = [bos] + encode(input) + encode(output) + [eos]
 * input and output are tokenized separately; the scored tokens are the
 * output tokens and the EOS. The loss is the mean over all scored tokens of
 * all examples (token-weighted). BOS is skipped when add_bos is 0 or the
 * config names no bos_token_id; EOS when add_eos is 0. Without a BOS and
 * with an empty input, the first output token has nothing to condition on
 * and is not scored. */
#include <cblas.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "model/llama/llama.h"
#include "native.h"
#include "model/tokenizer/tokenizer.h"

struct nm_backend {
    nm_model *m;
    lh_tokenizer *tok;
    int add_bos, add_eos;
    int batched;
    volatile sig_atomic_t *interrupt;
    char model_path[1024];
};

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
    b->batched = 1;
    b->interrupt = o->interrupt;
    snprintf(b->model_path, sizeof b->model_path, "%s", model_path);
    if (threads > 0)
        openblas_set_num_threads(threads);
    lh_status s = nm_model_load(model_path, &b->m, err);
    if (!s) {
        char path[4096];
        snprintf(path, sizeof path, "%s/tokenizer.json", model_path);
        s = lh_tokenizer_load(path, &b->tok, err);
    }
    if (!s && b->add_eos && b->m->c.n_eos == 0)
        s = lh_error_set(err, LH_ERR_NOT_FOUND,
                         "%s/config.json: no eos_token_id to end the outputs with (use --no-eos)",
                         model_path);
    if (!s && lh_tokenizer_vocab_size(b->tok) > b->m->c.vocab)
        s = lh_error_set(err, LH_ERR_SHAPE,
                         "%s: tokenizer.json has %d tokens, more than the model's vocab_size %d",
                         model_path, (int)lh_tokenizer_vocab_size(b->tok), b->m->c.vocab);
    if (s) {
        nm_backend_free(b);
        return s;
    }
    *ctx = b;
    return LH_OK;
}

void nm_backend_free(nm_backend *b)
{
    if (!b)
        return;
    nm_model_free(b->m);
    lh_tokenizer_free(b->tok);
    free(b);
}

static void native_close(void *ctx)
{
    nm_backend_free(ctx);
}

const nm_model *nm_backend_model(const nm_backend *b)
{
    return b ? b->m : NULL;
}

void nm_backend_set_batched(nm_backend *b, int batched)
{
    if (b)
        b->batched = batched;
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
        if ((*ids)[i] < 0 || (*ids)[i] >= b->m->c.vocab) {
            int bad = (int)(*ids)[i];
            free(*ids);
            *ids = NULL;
            return lh_error_set(err, LH_ERR_BACKEND,
                                "example %zu %s: the tokenizer produced id %d outside the model's "
                                "vocabulary", ex_i + 1, field, bad);
        }
    return LH_OK;
}

/* Tokenize every example into a packed batch (arrays malloc'd). */
/* A batch with the arrays it points into, which it owns. */
typedef struct owned_batch {
    nm_batch bt;
    int32_t *ids;  /* [T] */
    size_t *len;   /* [n_seq] */
    size_t *from;  /* [n_seq] */
} owned_batch;

static void owned_batch_release(owned_batch *ob)
{
    free(ob->ids);
    free(ob->len);
    free(ob->from);
}

static lh_status build_batch(const nm_backend *b, const lh_examples *ex, owned_batch *ob,
                             lh_error *err)
{
    size_t n = ex->n;
    idbuf buf = {0};
    size_t *len = malloc((n ? n : 1) * sizeof *len), *from = malloc((n ? n : 1) * sizeof *from);
    lh_status s = LH_OK;
    if (!len || !from) {
        s = lh_error_set(err, LH_ERR_NOMEM, "out of memory");
        goto fail;
    }
    int bos = b->add_bos && b->m->c.bos_id >= 0;
    int32_t bos_id = b->m->c.bos_id, eos_id = b->m->c.n_eos ? b->m->c.eos_ids[0] : 0;
    for (size_t i = 0; i < n; i++) {
        int32_t *in = NULL, *out = NULL;
        size_t n_in = 0, n_out = 0;
        size_t start = buf.n;
        if ((s = encode(b, ex->input[i], &in, &n_in, i, "input", err)))
            goto fail;
        if ((s = encode(b, ex->output[i], &out, &n_out, i, "output", err))) {
            free(in);
            goto fail;
        }
        int bad = (bos && idbuf_push(&buf, &bos_id, 1)) || idbuf_push(&buf, in, n_in) ||
                  idbuf_push(&buf, out, n_out) || (b->add_eos && idbuf_push(&buf, &eos_id, 1));
        free(in);
        free(out);
        if (bad) {
            s = lh_error_set(err, LH_ERR_NOMEM, "out of memory");
            goto fail;
        }
        len[i] = buf.n - start;
        size_t prefix = (size_t)bos + n_in;
        from[i] = prefix ? prefix - 1 : 0;
        if (len[i] == 0) {
            s = lh_error_set(err, LH_ERR_ARG, "example %zu: input and output are both empty",
                             i + 1);
            goto fail;
        }
    }
    ob->bt = (nm_batch){.n_seq = n, .ids = buf.v, .len = len, .score_from = from,
                        .stop = b->interrupt};
    ob->ids = buf.v;
    ob->len = len;
    ob->from = from;
    return LH_OK;
fail:
    free(buf.v);
    free(len);
    free(from);
    return s;
}

static lh_status native_score(void *ctx, const lh_adapter *const *cands, int n,
                              const lh_examples *ex, double *loss, lh_error *err)
{
    nm_backend *b = ctx;
    if (b->interrupt && *b->interrupt)
        return lh_error_set(err, LH_ERR_INTERRUPTED, "interrupted");
    if (!ex || ex->n == 0)
        return lh_error_set(err, LH_ERR_ARG, "native backend: no examples to score");
    owned_batch ob;
    lh_status s = build_batch(b, ex, &ob, err);
    if (s)
        return s;
    double *nll = malloc((size_t)n * sizeof *nll);
    size_t n_tok = 0;
    if (!nll)
        s = lh_error_set(err, LH_ERR_NOMEM, "out of memory");
    else
        s = nm_score_batch(b->m, &ob.bt, cands, n, b->batched, nll, &n_tok, err);
    if (!s)
        for (int i = 0; i < n; i++)
            loss[i] = nll[i] / (double)n_tok;
    free(nll);
    owned_batch_release(&ob);
    return s;
}

lh_status nm_backend_count_tokens(nm_backend *b, const lh_examples *ex, size_t *n_tokens,
                                  lh_error *err)
{
    owned_batch ob;
    lh_status s = build_batch(b, ex, &ob, err);
    if (s)
        return s;
    size_t n = 0;
    for (size_t i = 0; i < ob.bt.n_seq; i++)
        if (ob.from[i] + 1 < ob.len[i])
            n += ob.len[i] - 1 - ob.from[i];
    *n_tokens = n;
    owned_batch_release(&ob);
    return LH_OK;
}

static lh_status native_generate(void *ctx, const lh_adapter *cand, const lh_examples *ex,
                                 int max_new_tokens, char **outputs, lh_error *err)
{
    nm_backend *b = ctx;
    lh_status s = LH_OK;
    size_t i;
    for (i = 0; i < ex->n; i++)
        outputs[i] = NULL;
    int bos = b->add_bos && b->m->c.bos_id >= 0;
    int32_t bos_id = b->m->c.bos_id;
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
        if ((bos && idbuf_push(&buf, &bos_id, 1)) || idbuf_push(&buf, in, n_in)) {
            s = lh_error_set(err, LH_ERR_NOMEM, "out of memory");
        } else if (buf.n == 0) {
            s = lh_error_set(err, LH_ERR_ARG, "example %zu: empty prompt (no BOS, empty input)",
                             i + 1);
        } else if (!(s = nm_generate_ids(b->m, cand, buf.v, buf.n, max_new_tokens, &gen, &n_gen,
                                         err))) {
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

static lh_status native_count_tokens(void *ctx, const lh_examples *ex, size_t *n_tokens,
                                     lh_error *err)
{
    return nm_backend_count_tokens(ctx, ex, n_tokens, err);
}

static void native_describe(void *ctx, lh_backend_info *info)
{
    nm_backend *b = ctx;
    const nm_config *c = &b->m->c;
    snprintf(info->identity, sizeof info->identity, "%s", b->model_path);
    snprintf(info->description, sizeof info->description,
             "native: %.300s (%s, %d layers, dim %d, vocab %d, %.2fM parameters, %.1f MB F32)",
             b->model_path, c->model_type, c->n_layers, c->dim, c->vocab,
             (double)b->m->blob_floats / 1e6, (double)b->m->blob_floats * 4 / 1048576.0);
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
    .summary = "the built-in LLaMA-family runtime on the CPU (model/)",
    .keys = native_keys,
    .open = native_open,
    .score = native_score,
    .generate = native_generate,
    .count_tokens = native_count_tokens,
    .describe = native_describe,
    .close = native_close,
};

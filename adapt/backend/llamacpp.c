/* adapt/backend/llamacpp.c - backend "llamacpp": scoring through libllama
 * (llama.cpp's C API) on any GGUF base model it loads (F32, F16, BF16,
 * Q8_0, Q4_K, ...), on the CPU or with layers offloaded to a GPU.
 *
 * Compiled for real only when the build found libllama (the Makefile
 * defines LH_HAVE_LLAMACPP); otherwise the backend is still registered and
 * its open says how to get llama.cpp.
 *
 * Scoring follows the native backend (adapt/backend/native.c): per example
 * ids = [bos] + tokenize(input) + tokenize(output) + [eos], the scored
 * tokens are the output's and the EOS, the loss is their mean cross-entropy
 * over all examples. Tokens come from llama.cpp's own tokenizer (the GGUF's
 * vocabulary); BOS when the GGUF asks for one (tokenizer.ggml.add_bos_token)
 * and --no-bos is not given, EOS unless --no-eos. All examples go through
 * as few llama_decode calls as the context allows: one sequence id per
 * example, logits only at the positions that predict a scored token.
 *
 * Candidates: llama.cpp applies LoRA adapters in its graph at a scale each
 * (llama_set_adapters_lora), never merging them into the weights. A cat
 * composition (lh_adapter.sum) is therefore applied as its modules at
 * scales w_i: each module is converted to GGUF and loaded once, and a
 * candidate costs only a graph rebuild. Any other candidate is written as a
 * GGUF adapter to a private temp directory, loaded, scored and freed.
 *
 * Encoder-decoder models (T5, Flan-T5): per example the encoder reads
 * [bos] + tokenize(input) + [eos] (BOS and EOS as the GGUF's tokenizer
 * flags say: for T5 no BOS and an EOS, what the native T5 path does) and
 * the decoder [decoder_start] + target[:-1] teacher-forced, target =
 * tokenize(output) + [eos], every target token scored. The adapters are set
 * before llama_encode, so they act on the encoder, the decoder and the
 * cross-attention alike; a chunk of examples is one llama_encode (one
 * sequence id per example, the encoder's attention and the decoder's
 * cross-attention masked to it) and one llama_decode.
 *
 * Exactness: flash attention off and an F32 KV cache, so an F32 GGUF of a
 * model agrees with the native backend to about 1e-6 relative (F16 weights:
 * ggml rounds activations to F16 inside the products, about 1e-4; T5: ggml's
 * GELU reads an F16 table, about 1e-4 on a loss). */
#include "backend.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef LH_HAVE_LLAMACPP

#include <math.h>
#include <pthread.h>
#include <unistd.h>

#include <llama.h>

#include "lib/fsutil.h"
#include "lib/gguf.h"
#include "model/ops.h"

/* Sequences per llama_decode call (llama.cpp allows 256). */
#define LC_MAX_SEQS 64
/* Tokens per llama_decode call, unless one example is longer. The KV cache
 * is one stream that the call's sequences share (kv_unified): a ubatch
 * attends over every cell filled so far, masked to its own sequence, so
 * calls longer than a ubatch (512) cost more attention for nothing. At 512
 * a call is one ubatch, as in llama-perplexity -c 512. */
#define LC_CHUNK_TOKENS 512
/* Logit floats per call: bounds the logits buffer (n_outputs x n_vocab). */
#define LC_MAX_LOGIT_FLOATS ((size_t)32 << 20)

/* A module of a cat composition, loaded once. */
typedef struct lc_module {
    const lh_adapter *mod;          /* the key: the module ... */
    const float *a0;                /* ... and its first A, against a reused address */
    struct llama_adapter_lora *lora;
} lc_module;

typedef struct lc_backend {
    struct llama_model *model;
    const struct llama_vocab *vocab;
    struct llama_context *ctx;      /* NULL until the first call; grown to fit */
    uint32_t ctx_cells, ctx_seqs, ctx_outputs; /* KV cells (= tokens per call), sequences, logit rows */
    int n_vocab;
    int threads;
    int add_bos, add_eos;
    int enc_dec;                    /* encoder-decoder (T5): llama_encode, then llama_decode */
    int prompt_eos;                 /* enc_dec: the encoder input ends with EOS (GGUF's add_eos) */
    llama_token dec_start;          /* enc_dec: the decoder's first token */
    int no_repack;                  /* --no-repack: weights as the file has them */
    llama_token bos, eos;
    volatile sig_atomic_t *interrupt;
    lh_gguf_arch arch;              /* of the base, for writing adapters; have_arch once read */
    int have_arch;
    char *tmp_parent;               /* where the private temp directory goes */
    char *tmpdir;                   /* made on the first adapter written, removed at close */
    unsigned long n_written;
    lc_module *mods;                /* [n_mods] loaded cat modules */
    size_t n_mods, cap_mods;
    char path[1024];
} lc_backend;

/* ---- llama.cpp's log: quiet, but its first error explains a failure -- */

static _Thread_local char lc_last_error[256];

static void lc_log(enum ggml_log_level level, const char *text, void *ud)
{
    (void)ud;
    if (getenv("LORAHUB_LLAMACPP_LOG"))
        fputs(text, stderr);
    /* The first error after a reset says what went wrong; the next ones
     * only that something did. */
    if (level != GGML_LOG_LEVEL_ERROR || !text || lc_last_error[0])
        return;
    snprintf(lc_last_error, sizeof lc_last_error, "%s", text);
    size_t n = strlen(lc_last_error);
    while (n > 0 && (lc_last_error[n - 1] == '\n' || lc_last_error[n - 1] == ' '))
        lc_last_error[--n] = '\0';
    for (char *p = lc_last_error; *p; p++)
        if (*p == '\n')
            *p = ' ';
}

static pthread_once_t lc_once = PTHREAD_ONCE_INIT;

static void lc_init_once(void)
{
    llama_log_set(lc_log, NULL);
    llama_backend_init();
}

/* ": <llama.cpp's last error>", or "" when it logged none. */
static const char *why(void)
{
    static _Thread_local char buf[sizeof lc_last_error + 4];
    if (!lc_last_error[0])
        return "";
    snprintf(buf, sizeof buf, ": %s", lc_last_error);
    return buf;
}

static bool lc_abort(void *data)
{
    const lc_backend *b = data;
    return b->interrupt && *b->interrupt;
}

static int interrupted(const lc_backend *b)
{
    return b->interrupt && *b->interrupt;
}

/* ---- open and close -------------------------------------------------- */

static lh_status parse_int_key(const lh_backend_opts *o, const char *key, long lo, long hi,
                               long *out, lh_error *err)
{
    const char *text = lh_backend_param(o, key);
    if (!text)
        return LH_OK;
    char *end;
    errno = 0;
    long v = strtol(text, &end, 10);
    if (end == text || *end || errno || v < lo || v > hi)
        return lh_error_set(err, LH_ERR_ARG, "llamacpp backend: bad --%s '%s' (%ld to %ld)", key,
                            text, lo, hi);
    *out = v;
    return LH_OK;
}

static void lc_free(lc_backend *b)
{
    if (!b)
        return;
    if (b->ctx)
        llama_free(b->ctx);
    for (size_t i = 0; i < b->n_mods; i++)
        llama_adapter_lora_free(b->mods[i].lora);
    free(b->mods);
    if (b->model)
        llama_model_free(b->model);
    if (b->tmpdir)
        lh_rmtree(b->tmpdir);
    free(b->tmpdir);
    free(b->tmp_parent);
    free(b);
}

/* An encoder-decoder's decoder start token and prompt EOS; an encoder
 * alone (no decoder to score with) is refused. */
static lh_status load_enc_dec(lc_backend *b, lh_error *err)
{
    b->enc_dec = llama_model_has_encoder(b->model);
    if (!b->enc_dec)
        return LH_OK;
    if (!llama_model_has_decoder(b->model))
        return lh_error_set(err, LH_ERR_UNSUPPORTED,
                            "%s: an encoder without a decoder cannot score outputs", b->path);
    b->dec_start = llama_model_decoder_start_token(b->model);
    if (b->dec_start == LLAMA_TOKEN_NULL)
        b->dec_start = b->bos; /* what llama.cpp's own tools do */
    if (b->dec_start == LLAMA_TOKEN_NULL)
        return lh_error_set(err, LH_ERR_NOT_FOUND,
                            "%s: encoder-decoder model without a decoder start token "
                            "(t5.decoder_start_token_id)", b->path);
    b->prompt_eos = llama_vocab_get_add_eos(b->vocab) && b->eos != LLAMA_TOKEN_NULL;
    return LH_OK;
}

/* A T5 GGUF without output.weight has a tied head (original T5), and
 * llama.cpp then reuses the embeddings without T5's d_model^-0.5 rescale:
 * every loss would be off, so refuse it before llama.cpp loads it. Only a
 * T5 is looked at, and only its header (the file is mapped, not read); a
 * file lorahub's reader does not take is left to llama.cpp to judge. */
static lh_status check_t5_head(const char *path, lh_error *err)
{
    lh_gguf *g = NULL;
    lh_error ignored;
    if (lh_gguf_open(path, LH_GGUF_KV_ONLY, &g, &ignored))
        return LH_OK;
    const lh_gguf_kv *arch = lh_gguf_find_kv(g, "general.architecture");
    int t5 = arch && arch->str && !strcmp(arch->str, "t5");
    lh_gguf_free(g);
    g = NULL;
    if (!t5 || lh_gguf_open(path, LH_GGUF_FULL, &g, &ignored))
        return LH_OK;
    lh_status st = LH_OK;
    if (!lh_gguf_find_tensor(g, "output.weight"))
        st = lh_error_set(err, LH_ERR_UNSUPPORTED,
                          "%s: a T5 with a tied head (no output.weight): llama.cpp leaves out "
                          "T5's d_model^-0.5 rescale of a tied head, so its losses would be "
                          "wrong; score it with --backend native",
                          path);
    lh_gguf_free(g);
    return st;
}

static lh_status load_model(lc_backend *b, long gpu_layers, lh_error *err)
{
    if (!lh_path_exists(b->path))
        return lh_error_set(err, LH_ERR_NOT_FOUND, "cannot open '%s': no such file", b->path);
    lh_status st = check_t5_head(b->path, err);
    if (st)
        return st;
    struct llama_model_params mp = llama_model_default_params();
    mp.n_gpu_layers = (int32_t)gpu_layers;
    /* Repacked weights (llama.cpp's extra buffer types: AMX, ...) can be
     * what a machine cannot run: an AMX-built llama.cpp dies with SIGILL on
     * a VM that reports AMX but traps it. */
    mp.use_extra_bufts = !b->no_repack;
    lc_last_error[0] = '\0';
    b->model = llama_model_load_from_file(b->path, mp);
    if (!b->model)
        return lh_error_set(err, LH_ERR_FORMAT, "%s: llama.cpp cannot load this model%s", b->path,
                            why());
    b->vocab = llama_model_get_vocab(b->model);
    b->n_vocab = llama_vocab_n_tokens(b->vocab);
    b->bos = llama_vocab_bos(b->vocab);
    b->eos = llama_vocab_eos(b->vocab);
    b->add_bos = b->add_bos && llama_vocab_get_add_bos(b->vocab) && b->bos != LLAMA_TOKEN_NULL;
    if (b->add_eos && b->eos == LLAMA_TOKEN_NULL)
        return lh_error_set(err, LH_ERR_NOT_FOUND,
                            "%s: the vocabulary has no EOS token to end the outputs with (use "
                            "--no-eos)", b->path);
    return load_enc_dec(b, err);
}

static lh_status llamacpp_open(const lh_backend_opts *o, void **ctx, lh_error *err)
{
    *ctx = NULL;
    const char *path = lh_backend_param(o, "base-gguf");
    if (!path || !*path)
        return lh_error_set(err, LH_ERR_ARG, "llamacpp backend: no base model given (--base-gguf)");
    long threads = 0, gpu_layers = 0;
    lh_status s = parse_int_key(o, "threads", 1, 4096, &threads, err);
    if (!s)
        s = parse_int_key(o, "gpu-layers", -1, 1000000, &gpu_layers, err);
    if (s)
        return s;
    pthread_once(&lc_once, lc_init_once);
    lc_backend *b = calloc(1, sizeof *b);
    if (!b)
        return lh_error_set(err, LH_ERR_NOMEM, "out of memory");
    snprintf(b->path, sizeof b->path, "%s", path);
    const char *bos = lh_backend_param(o, "bos"), *eos = lh_backend_param(o, "eos");
    b->add_bos = !bos || strcmp(bos, "false") != 0;
    b->add_eos = !eos || strcmp(eos, "false") != 0;
    const char *nr = lh_backend_param(o, "no-repack");
    b->no_repack = nr && (!strcmp(nr, "true") || !strcmp(nr, "1") || !strcmp(nr, "yes"));
    b->interrupt = o->interrupt;
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    b->threads = threads > 0 ? (int)threads : ncpu > 0 ? (int)ncpu : 1;
    if (o->tmp_dir && !(b->tmp_parent = strdup(o->tmp_dir)))
        s = lh_error_set(err, LH_ERR_NOMEM, "out of memory");
    if (!s)
        s = load_model(b, gpu_layers, err);
    if (s) {
        lc_free(b);
        return s;
    }
    *ctx = b;
    return LH_OK;
}

static void llamacpp_close(void *ctx)
{
    lc_free(ctx);
}

static uint32_t max_u32(uint32_t a, uint32_t b)
{
    return a > b ? a : b;
}

/* A context with room for cells tokens in seqs sequences and outputs logit
 * rows in one llama_decode; made again only when a call needs more. */
static lh_status ensure_context(lc_backend *b, uint32_t cells, uint32_t seqs, uint32_t outputs,
                                lh_error *err)
{
    cells = (cells + 255) / 256 * 256;
    if (b->ctx && cells <= b->ctx_cells && seqs <= b->ctx_seqs && outputs <= b->ctx_outputs)
        return LH_OK;
    if (b->ctx) {
        cells = max_u32(cells, b->ctx_cells);
        seqs = max_u32(seqs, b->ctx_seqs);
        outputs = max_u32(outputs, b->ctx_outputs);
        llama_free(b->ctx);
        b->ctx = NULL;
    }
    struct llama_context_params cp = llama_context_default_params();
    cp.n_ctx = cells;
    cp.n_batch = cells;
    /* llama_encode takes its whole batch as one ubatch (it asserts so) */
    cp.n_ubatch = cells < 512 || b->enc_dec ? cells : 512;
    cp.n_seq_max = seqs;
    cp.n_outputs_max = outputs;
    cp.n_threads = cp.n_threads_batch = b->threads;
    cp.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_DISABLED; /* exact: see the top */
    cp.type_k = cp.type_v = GGML_TYPE_F32;
    /* One stream of cells for all sequences of a call (see LC_CHUNK_TOKENS):
     * exactness was measured this way (agrees with native to 1e-7 in F32),
     * and a call's split into ubatches does not depend on example lengths. */
    cp.kv_unified = true;
    cp.no_perf = true;
    cp.abort_callback = lc_abort;
    cp.abort_callback_data = b;
    lc_last_error[0] = '\0';
    b->ctx = llama_init_from_model(b->model, cp);
    if (!b->ctx)
        return lh_error_set(err, LH_ERR_BACKEND,
                            "%s: llama.cpp cannot make a context of %u x %u tokens%s", b->path,
                            seqs, cells, why());
    b->ctx_cells = cells;
    b->ctx_seqs = seqs;
    b->ctx_outputs = outputs;
    return LH_OK;
}

/* ---- examples as token ids ------------------------------------------- */

typedef struct lc_seq {
    llama_token *ids;   /* [n_prompt + n_target] into lc_examples.ids */
    int n_prompt;       /* [bos] + input (+ [eos] for an encoder-decoder) */
    int n_target;       /* output + [eos] */
    int enc_dec;        /* the prompt is the encoder's, the target the decoder's */
} lc_seq;

typedef struct lc_examples {
    lc_seq *seqs;       /* [n] */
    size_t n;
    llama_token *ids;   /* every example's ids, one after the other */
    size_t n_scored;    /* tokens the loss averages over */
} lc_examples;

static void lc_examples_release(lc_examples *e)
{
    free(e->seqs);
    free(e->ids);
    memset(e, 0, sizeof *e);
}

/* Append text's tokens to *ids (capacity *cap, length *len). */
static lh_status tokenize_into(const lc_backend *b, const char *text, llama_token **ids,
                               size_t *len, size_t *cap, size_t ex_i, const char *field,
                               lh_error *err)
{
    size_t n_text = strlen(text);
    if (n_text > INT32_MAX / 2)
        return lh_error_set(err, LH_ERR_ARG, "example %zu %s: too long", ex_i + 1, field);
    for (;;) {
        size_t room = *cap - *len;
        int32_t got = llama_tokenize(b->vocab, text, (int32_t)n_text, *ids + *len,
                                     room > INT32_MAX ? INT32_MAX : (int32_t)room, false, false);
        if (got >= 0) {
            *len += (size_t)got;
            return LH_OK;
        }
        if (got == INT32_MIN)
            return lh_error_set(err, LH_ERR_BACKEND, "example %zu %s: cannot tokenize", ex_i + 1,
                                field);
        size_t ncap = (*cap + (size_t)-got) * 2;
        llama_token *v = realloc(*ids, ncap * sizeof *v);
        if (!v)
            return lh_error_set(err, LH_ERR_NOMEM, "out of memory");
        *ids = v;
        *cap = ncap;
    }
}

static lh_status push_token(llama_token **ids, size_t *len, size_t *cap, llama_token t,
                            lh_error *err)
{
    if (*len == *cap) {
        size_t ncap = *cap ? *cap * 2 : 256;
        llama_token *v = realloc(*ids, ncap * sizeof *v);
        if (!v)
            return lh_error_set(err, LH_ERR_NOMEM, "out of memory");
        *ids = v;
        *cap = ncap;
    }
    (*ids)[(*len)++] = t;
    return LH_OK;
}

/* The prompt of example i at the end of *ids: [bos] + input, and the EOS
 * an encoder-decoder's input ends with. */
static lh_status encode_prompt(const lc_backend *b, const lh_examples *ex, size_t i,
                               llama_token **ids, size_t *len, size_t *cap, lh_error *err)
{
    lh_status s = b->add_bos ? push_token(ids, len, cap, b->bos, err) : LH_OK;
    if (!s)
        s = tokenize_into(b, ex->input[i], ids, len, cap, i, "input", err);
    if (!s && b->enc_dec && b->prompt_eos)
        s = push_token(ids, len, cap, b->eos, err);
    return s;
}

/* Tokens of example i at the end of *ids: the prompt, then output + [eos]. */
static lh_status encode_example(const lc_backend *b, const lh_examples *ex, size_t i,
                                llama_token **ids, size_t *len, size_t *cap, lc_seq *seq,
                                lh_error *err)
{
    size_t start = *len;
    lh_status s = encode_prompt(b, ex, i, ids, len, cap, err);
    size_t mid = *len;
    if (!s)
        s = tokenize_into(b, ex->output[i], ids, len, cap, i, "output", err);
    if (!s && b->add_eos)
        s = push_token(ids, len, cap, b->eos, err);
    if (s)
        return s;
    if (*len - start > INT32_MAX / 4)
        return lh_error_set(err, LH_ERR_ARG, "example %zu: too many tokens", i + 1);
    if (*len == start)
        return lh_error_set(err, LH_ERR_ARG, "example %zu: input and output are both empty",
                            i + 1);
    if (b->enc_dec && mid == start)
        return lh_error_set(err, LH_ERR_ARG,
                            "example %zu: empty input (the encoder needs at least one token)",
                            i + 1);
    seq->n_prompt = (int)(mid - start);
    seq->n_target = (int)(*len - mid);
    seq->enc_dec = b->enc_dec;
    return LH_OK;
}

/* Positions j of a sequence whose logits predict a scored token (j + 1):
 * [first, end). Without a prompt the first target token is not scored. An
 * encoder-decoder's decoder reads [start] + target[:-1]: every position j
 * predicts target[j]. */
static int first_output(const lc_seq *q)
{
    return q->enc_dec ? 0 : q->n_prompt > 0 ? q->n_prompt - 1 : 0;
}

static int end_output(const lc_seq *q)
{
    return q->enc_dec ? q->n_target : q->n_prompt + q->n_target - 1;
}

static lh_status encode_examples(const lc_backend *b, const lh_examples *ex, lc_examples *e,
                                 lh_error *err)
{
    memset(e, 0, sizeof *e);
    if (!ex || ex->n == 0)
        return lh_error_set(err, LH_ERR_ARG, "llamacpp backend: no examples to score");
    e->n = ex->n;
    e->seqs = calloc(ex->n, sizeof *e->seqs);
    if (!e->seqs)
        return lh_error_set(err, LH_ERR_NOMEM, "out of memory");
    size_t len = 0, cap = 0;
    size_t *start = malloc(ex->n * sizeof *start); /* [n] offset of each example in ids */
    lh_status s = start ? LH_OK : lh_error_set(err, LH_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < ex->n && !s; i++) {
        start[i] = len;
        s = encode_example(b, ex, i, &e->ids, &len, &cap, &e->seqs[i], err);
    }
    for (size_t i = 0; i < ex->n && !s; i++) {
        e->seqs[i].ids = e->ids + start[i];
        int k = end_output(&e->seqs[i]) - first_output(&e->seqs[i]);
        e->n_scored += k > 0 ? (size_t)k : 0;
    }
    free(start);
    if (s)
        lc_examples_release(e);
    return s;
}

/* ---- chunks: which examples go into one llama_decode ------------------ */

typedef struct lc_chunk {
    size_t first, n;    /* examples [first, first + n) */
    uint32_t tokens;    /* their tokens */
    uint32_t outputs;   /* logit rows */
} lc_chunk;

static int chunk_outputs(const lc_seq *q)
{
    int k = end_output(q) - first_output(q);
    return k > 0 ? k : 0;
}

/* Greedy packing in example order, at most max_tokens tokens a call (one
 * longer example alone); chunk[] has room for e->n entries. */
static size_t plan_chunks(const lc_backend *b, const lc_examples *e, uint32_t max_tokens,
                          lc_chunk *chunk)
{
    size_t max_out = LC_MAX_LOGIT_FLOATS / (size_t)(b->n_vocab > 0 ? b->n_vocab : 1);
    size_t nc = 0;
    for (size_t i = 0; i < e->n; i++) {
        uint32_t t = (uint32_t)(e->seqs[i].n_prompt + e->seqs[i].n_target);
        uint32_t o = (uint32_t)chunk_outputs(&e->seqs[i]);
        lc_chunk *c = nc ? &chunk[nc - 1] : NULL;
        if (!c || c->n == LC_MAX_SEQS || c->tokens + t > max_tokens || c->outputs + o > max_out) {
            c = &chunk[nc++];
            *c = (lc_chunk){.first = i};
        }
        c->n++;
        c->tokens += t;
        c->outputs += o;
    }
    return nc;
}

/* ---- scoring --------------------------------------------------------- */

static lh_status decode_failed(const lc_backend *b, int32_t rc, lh_error *err)
{
    if (rc == 2 || interrupted(b))
        return lh_error_set(err, LH_ERR_INTERRUPTED, "interrupted");
    return lh_error_set(err, LH_ERR_BACKEND, "%s: llama_decode failed (%d)%s", b->path, (int)rc,
                        why());
}

/* batch->token[i] = t at position pos of sequence seq, logits or not. */
static void batch_put(struct llama_batch *batch, llama_token t, int pos, llama_seq_id seq,
                      int logits)
{
    int i = batch->n_tokens++;
    batch->token[i] = t;
    batch->pos[i] = pos;
    batch->n_seq_id[i] = 1;
    batch->seq_id[i][0] = seq;
    batch->logits[i] = (int8_t)logits;
}

/* The summed NLL of the chunk's scored tokens, under the adapters set. */
static lh_status score_chunk(lc_backend *b, const lc_examples *e, const lc_chunk *c,
                             struct llama_batch *batch, double *nll, lh_error *err)
{
    llama_memory_clear(llama_get_memory(b->ctx), true);
    batch->n_tokens = 0;
    for (size_t k = 0; k < c->n; k++) {
        const lc_seq *q = &e->seqs[c->first + k];
        int n = q->n_prompt + q->n_target, lo = first_output(q), hi = end_output(q);
        for (int j = 0; j < n; j++)
            batch_put(batch, q->ids[j], j, (llama_seq_id)k, j >= lo && j < hi);
    }
    lc_last_error[0] = '\0';
    int32_t rc = llama_decode(b->ctx, *batch);
    if (rc != 0)
        return decode_failed(b, rc, err);
    double sum = 0.0;
    int i = 0;
    for (size_t k = 0; k < c->n; k++) {
        const lc_seq *q = &e->seqs[c->first + k];
        int n = q->n_prompt + q->n_target, lo = first_output(q), hi = end_output(q);
        for (int j = 0; j < n; j++, i++) {
            if (j < lo || j >= hi)
                continue;
            const float *lg = llama_get_logits_ith(b->ctx, i);
            if (!lg)
                return lh_error_set(err, LH_ERR_BACKEND, "%s: no logits for example %zu",
                                    b->path, c->first + k + 1);
            sum += lh_token_nll(lg, (size_t)b->n_vocab, q->ids[j + 1]); /* as native */
        }
    }
    *nll = sum;
    return LH_OK;
}

/* score_chunk for an encoder-decoder: one llama_encode of the chunk's
 * prompts, then one llama_decode of [start] + target[:-1] of each example
 * (the same sequence ids, so each decoder row attends to its own encoder
 * output), every target token scored. */
static lh_status score_chunk_enc_dec(lc_backend *b, const lc_examples *e, const lc_chunk *c,
                                     struct llama_batch *batch, double *nll, lh_error *err)
{
    llama_memory_clear(llama_get_memory(b->ctx), true);
    batch->n_tokens = 0;
    for (size_t k = 0; k < c->n; k++) {
        const lc_seq *q = &e->seqs[c->first + k];
        for (int j = 0; j < q->n_prompt; j++)
            batch_put(batch, q->ids[j], j, (llama_seq_id)k, 0);
    }
    lc_last_error[0] = '\0';
    int32_t rc = llama_encode(b->ctx, *batch);
    if (rc != 0)
        return decode_failed(b, rc, err);
    batch->n_tokens = 0;
    for (size_t k = 0; k < c->n; k++) {
        const lc_seq *q = &e->seqs[c->first + k];
        const llama_token *tgt = q->ids + q->n_prompt;
        for (int j = 0; j < q->n_target; j++)
            batch_put(batch, j ? tgt[j - 1] : b->dec_start, j, (llama_seq_id)k, 1);
    }
    *nll = 0.0;
    if (batch->n_tokens == 0) /* every target empty: nothing to score */
        return LH_OK;
    lc_last_error[0] = '\0';
    rc = llama_decode(b->ctx, *batch);
    if (rc != 0)
        return decode_failed(b, rc, err);
    double sum = 0.0;
    int i = 0;
    for (size_t k = 0; k < c->n; k++) {
        const lc_seq *q = &e->seqs[c->first + k];
        for (int j = 0; j < q->n_target; j++, i++) {
            const float *lg = llama_get_logits_ith(b->ctx, i);
            if (!lg)
                return lh_error_set(err, LH_ERR_BACKEND, "%s: no logits for example %zu",
                                    b->path, c->first + k + 1);
            sum += lh_token_nll(lg, (size_t)b->n_vocab, q->ids[q->n_prompt + j]);
        }
    }
    *nll = sum;
    return LH_OK;
}

/* The loss of all examples under the adapters now set on the context. */
static lh_status score_current(lc_backend *b, const lc_examples *e, const lc_chunk *chunks,
                               size_t n_chunks, struct llama_batch *batch, double *loss,
                               lh_error *err)
{
    double total = 0.0;
    for (size_t c = 0; c < n_chunks; c++) {
        if (interrupted(b))
            return lh_error_set(err, LH_ERR_INTERRUPTED, "interrupted");
        double nll = 0;
        lh_status s = b->enc_dec ? score_chunk_enc_dec(b, e, &chunks[c], batch, &nll, err)
                                 : score_chunk(b, e, &chunks[c], batch, &nll, err);
        if (s)
            return s;
        total += nll;
    }
    *loss = e->n_scored ? total / (double)e->n_scored : NAN;
    return LH_OK;
}

/* ---- candidates as llama.cpp adapters -------------------------------- */

static lh_status make_tmpdir(lc_backend *b, lh_error *err)
{
    if (b->tmpdir)
        return LH_OK;
    const char *parent = b->tmp_parent;
    if (!parent || !*parent)
        parent = getenv("TMPDIR");
    if (!parent || !*parent)
        parent = "/tmp";
    b->tmpdir = lh_path_join(parent, "lorahub-llamacpp-XXXXXX");
    if (!b->tmpdir)
        return lh_error_set(err, LH_ERR_NOMEM, "out of memory");
    if (!mkdtemp(b->tmpdir)) {
        lh_status s = lh_error_errno(err, LH_ERR_IO, errno,
                                     "llamacpp backend: cannot create a temporary directory in "
                                     "'%s'", parent);
        free(b->tmpdir);
        b->tmpdir = NULL;
        return s;
    }
    return LH_OK;
}

/* a as a GGUF adapter in the temp directory, loaded into llama.cpp; the
 * file is removed once loaded (llama.cpp has read it all). */
static lh_status load_adapter(lc_backend *b, const lh_adapter *a,
                              struct llama_adapter_lora **out, lh_error *err)
{
    *out = NULL;
    lh_status s = make_tmpdir(b, err);
    if (!s && !b->have_arch) {
        s = lh_gguf_arch_from_model(b->path, &b->arch, err);
        b->have_arch = s == LH_OK;
    }
    if (s)
        return s;
    char name[64];
    snprintf(name, sizeof name, "adapter-%lu.gguf", b->n_written++);
    char *path = lh_path_join(b->tmpdir, name);
    if (!path)
        return lh_error_set(err, LH_ERR_NOMEM, "out of memory");
    /* F32 whatever the module's own type: F16 factors would make ggml round
     * the activations too, and a module by scale differ from the merge. */
    lh_gguf_save_opts so = {.dtype = LH_F32, .force = 1};
    s = lh_gguf_save_lora_opts(a, &b->arch, path, &so, err);
    if (!s) {
        lc_last_error[0] = '\0';
        *out = llama_adapter_lora_init(b->model, path);
        if (!*out)
            s = lh_error_set(err, LH_ERR_BACKEND, "%s: llama.cpp refuses the adapter %s%s",
                             b->path, a->name ? a->name : "(candidate)", why());
    }
    unlink(path);
    free(path);
    return s;
}

/* Whether any factor or scale of a is NaN or infinite: a GGUF file cannot
 * hold it, and its loss is NaN (the contract), so it is not loaded. */
static int non_finite(const lh_adapter *a)
{
    for (size_t t = 0; t < a->n_targets; t++) {
        const lh_target *x = &a->targets[t];
        float acc = x->scale * 0.0f;
        size_t na = (size_t)x->r * (size_t)x->d_in, nb = (size_t)x->d_out * (size_t)x->r;
        for (size_t i = 0; i < na; i++)
            acc += x->A[i] * 0.0f;
        for (size_t i = 0; i < nb; i++)
            acc += x->B[i] * 0.0f;
        if (acc != 0.0f) /* NaN * 0 and Inf * 0 are NaN */
            return 1;
    }
    return 0;
}

/* The llama.cpp adapter of a cat module, loading it on first use; NULL
 * for a module with a non-finite value. */
static lh_status module_lora(lc_backend *b, const lh_adapter *mod,
                             struct llama_adapter_lora **out, lh_error *err)
{
    const float *a0 = mod->n_targets ? mod->targets[0].A : NULL;
    for (size_t i = 0; i < b->n_mods; i++)
        if (b->mods[i].mod == mod && b->mods[i].a0 == a0) {
            *out = b->mods[i].lora;
            return LH_OK;
        }
    if (b->n_mods == b->cap_mods) {
        size_t nc = b->cap_mods ? b->cap_mods * 2 : 16;
        lc_module *m = realloc(b->mods, nc * sizeof *m);
        if (!m)
            return lh_error_set(err, LH_ERR_NOMEM, "out of memory");
        b->mods = m;
        b->cap_mods = nc;
    }
    *out = NULL;
    lh_status s = non_finite(mod) ? LH_OK : load_adapter(b, mod, out, err);
    if (!s)
        b->mods[b->n_mods++] = (lc_module){mod, a0, *out};
    return s;
}

/* Set cand on the context: nothing (base), its cat modules at their
 * weights, or cand itself loaded from a temp file (*owned, freed by the
 * caller after scoring). *nan: cand holds a non-finite value, so its loss
 * is NaN and nothing was set. */
static lh_status set_candidate(lc_backend *b, const lh_adapter *cand,
                               struct llama_adapter_lora **owned, int *nan, lh_error *err)
{
    *owned = NULL;
    *nan = 0;
    struct llama_adapter_lora *one[1];
    float one_scale[1] = {1.0f};
    if (!cand) {
        llama_set_adapters_lora(b->ctx, NULL, 0, NULL);
        return LH_OK;
    }
    if (!cand->sum && (*nan = non_finite(cand)))
        return LH_OK;
    if (!cand->sum) {
        lh_status s = load_adapter(b, cand, &one[0], err);
        if (s)
            return s;
        *owned = one[0];
        llama_set_adapters_lora(b->ctx, one, 1, one_scale);
        return LH_OK;
    }
    const lh_adapter_sum *sum = cand->sum;
    struct llama_adapter_lora **loras = malloc((sum->n ? sum->n : 1) * sizeof *loras);
    float *scales = malloc((sum->n ? sum->n : 1) * sizeof *scales);
    size_t k = 0;
    lh_status s = loras && scales ? LH_OK : lh_error_set(err, LH_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < sum->n && !s; i++) {
        if (sum->coef[i] == 0.0) /* the same as leaving it out, and cheaper */
            continue;
        s = module_lora(b, sum->mods[i], &loras[k], err);
        *nan = *nan || !isfinite(sum->coef[i]) || (!s && !loras[k]);
        scales[k++] = (float)sum->coef[i];
    }
    if (!s && !*nan && llama_set_adapters_lora(b->ctx, loras, k, scales) != 0)
        s = lh_error_set(err, LH_ERR_BACKEND, "%s: llama.cpp cannot set %zu adapters%s", b->path,
                         k, why());
    free(loras);
    free(scales);
    return s;
}

static void unset_candidate(lc_backend *b, struct llama_adapter_lora *owned)
{
    llama_set_adapters_lora(b->ctx, NULL, 0, NULL);
    if (owned)
        llama_adapter_lora_free(owned);
}

/* Context and batch for the examples' chunks. */
static lh_status prepare_chunks(lc_backend *b, const lc_examples *e, lc_chunk *chunks,
                                size_t *n_chunks, struct llama_batch *batch, lh_error *err)
{
    uint32_t longest = 1;
    for (size_t i = 0; i < e->n; i++)
        longest = max_u32(longest, (uint32_t)(e->seqs[i].n_prompt + e->seqs[i].n_target));
    *n_chunks = plan_chunks(b, e, max_u32(longest, LC_CHUNK_TOKENS), chunks);
    uint32_t tokens = 1, seqs = 1, outputs = 1;
    for (size_t c = 0; c < *n_chunks; c++) {
        tokens = max_u32(tokens, chunks[c].tokens);
        seqs = max_u32(seqs, (uint32_t)chunks[c].n);
        outputs = max_u32(outputs, chunks[c].outputs);
    }
    lh_status s = ensure_context(b, tokens, seqs, outputs, err);
    if (s)
        return s;
    *batch = llama_batch_init((int32_t)tokens, 0, 1);
    if (!batch->token)
        return lh_error_set(err, LH_ERR_NOMEM, "out of memory");
    return LH_OK;
}

static lh_status llamacpp_score(void *ctx, const lh_adapter *const *cands, int n,
                                const lh_examples *ex, double *loss, lh_error *err)
{
    lc_backend *b = ctx;
    if (interrupted(b))
        return lh_error_set(err, LH_ERR_INTERRUPTED, "interrupted");
    lc_examples e;
    lh_status s = encode_examples(b, ex, &e, err);
    if (s)
        return s;
    lc_chunk *chunks = malloc(e.n * sizeof *chunks);
    size_t n_chunks = 0;
    struct llama_batch batch = {0};
    s = chunks ? prepare_chunks(b, &e, chunks, &n_chunks, &batch, err)
               : lh_error_set(err, LH_ERR_NOMEM, "out of memory");
    for (int i = 0; i < n && !s; i++) {
        struct llama_adapter_lora *owned = NULL;
        int nan = 0;
        s = set_candidate(b, cands[i], &owned, &nan, err);
        if (!s && nan)
            loss[i] = NAN;
        else if (!s)
            s = score_current(b, &e, chunks, n_chunks, &batch, &loss[i], err);
        unset_candidate(b, owned);
    }
    if (batch.token)
        llama_batch_free(batch);
    free(chunks);
    lc_examples_release(&e);
    return s;
}

static lh_status llamacpp_count_tokens(void *ctx, const lh_examples *ex, size_t *n_tokens,
                                       lh_error *err)
{
    lc_examples e;
    lh_status s = encode_examples(ctx, ex, &e, err);
    if (!s)
        *n_tokens = e.n_scored;
    lc_examples_release(&e);
    return s;
}

/* ---- greedy generation ----------------------------------------------- */

static llama_token argmax(const float *lg, int n_vocab)
{
    int best = 0;
    for (int v = 1; v < n_vocab; v++)
        if (lg[v] > lg[best])
            best = v;
    return best;
}

/* Append token t's text (special tokens render as nothing) to *out. */
static lh_status append_piece(const lc_backend *b, llama_token t, char **out, size_t *len,
                              lh_error *err)
{
    char piece[256];
    int32_t n = llama_token_to_piece(b->vocab, t, piece, sizeof piece, 0, false);
    if (n < 0 || (size_t)n > sizeof piece)
        return lh_error_set(err, LH_ERR_BACKEND, "%s: token %d has no text", b->path, (int)t);
    char *v = realloc(*out, *len + (size_t)n + 1);
    if (!v)
        return lh_error_set(err, LH_ERR_NOMEM, "out of memory");
    memcpy(v + *len, piece, (size_t)n);
    *len += (size_t)n;
    v[*len] = '\0';
    *out = v;
    return LH_OK;
}

/* Decode prompt ids [n] then up to max_new greedy tokens; *out the text. */
static lh_status generate_one(lc_backend *b, const llama_token *ids, int n, int max_new,
                              struct llama_batch *batch, char **out, lh_error *err)
{
    size_t len = 0;
    *out = calloc(1, 1);
    if (!*out)
        return lh_error_set(err, LH_ERR_NOMEM, "out of memory");
    llama_memory_clear(llama_get_memory(b->ctx), true);
    batch->n_tokens = n;
    for (int j = 0; j < n; j++) {
        batch->token[j] = ids[j];
        batch->pos[j] = j;
        batch->n_seq_id[j] = 1;
        batch->seq_id[j][0] = 0;
        batch->logits[j] = j == n - 1;
    }
    for (int step = 0; step < max_new; step++) {
        lc_last_error[0] = '\0';
        int32_t rc = llama_decode(b->ctx, *batch);
        if (rc != 0)
            return decode_failed(b, rc, err);
        llama_token t = argmax(llama_get_logits_ith(b->ctx, batch->n_tokens - 1), b->n_vocab);
        if (llama_vocab_is_eog(b->vocab, t))
            break;
        lh_status s = append_piece(b, t, out, &len, err);
        if (s)
            return s;
        batch->n_tokens = 1;
        batch->token[0] = t;
        batch->pos[0] = n + step;
        batch->logits[0] = 1;
    }
    return LH_OK;
}

/* The text of ids [n] (special tokens dropped, the leading space of the
 * first piece too, as the tokenizer's decoder does) into *out. */
static lh_status detokenize(const lc_backend *b, const llama_token *ids, int n, char **out,
                            lh_error *err)
{
    int32_t cap = 64 + 16 * n;
    for (int attempt = 0; attempt < 2; attempt++) {
        char *text = malloc((size_t)cap + 1);
        if (!text)
            return lh_error_set(err, LH_ERR_NOMEM, "out of memory");
        int32_t got = llama_detokenize(b->vocab, ids, n, text, cap, true, false);
        if (got >= 0) {
            text[got] = '\0';
            free(*out);
            *out = text;
            return LH_OK;
        }
        free(text);
        cap = -got;
    }
    return lh_error_set(err, LH_ERR_BACKEND, "%s: cannot turn %d tokens into text", b->path, n);
}

/* generate_one for an encoder-decoder: llama_encode of the prompt ids [n],
 * then the decoder from the start token, one token a call, until an
 * end-of-generation token or max_new tokens. */
static lh_status generate_enc_dec(lc_backend *b, const llama_token *ids, int n, int max_new,
                                  struct llama_batch *batch, char **out, lh_error *err)
{
    llama_token *gen = malloc((size_t)(max_new > 0 ? max_new : 1) * sizeof *gen); /* [max_new] */
    if (!gen)
        return lh_error_set(err, LH_ERR_NOMEM, "out of memory");
    llama_memory_clear(llama_get_memory(b->ctx), true);
    batch->n_tokens = 0;
    for (int j = 0; j < n; j++)
        batch_put(batch, ids[j], j, 0, 0);
    lc_last_error[0] = '\0';
    int32_t rc = llama_encode(b->ctx, *batch);
    lh_status s = rc ? decode_failed(b, rc, err) : LH_OK;
    int n_gen = 0;
    llama_token t = b->dec_start;
    for (int step = 0; step < max_new && !s; step++) {
        batch->n_tokens = 0;
        batch_put(batch, t, step, 0, 1);
        lc_last_error[0] = '\0';
        if ((rc = llama_decode(b->ctx, *batch)) != 0) {
            s = decode_failed(b, rc, err);
            break;
        }
        t = argmax(llama_get_logits_ith(b->ctx, 0), b->n_vocab);
        if (llama_vocab_is_eog(b->vocab, t))
            break;
        gen[n_gen++] = t;
    }
    if (!s)
        s = detokenize(b, gen, n_gen, out, err);
    free(gen);
    return s;
}

static lh_status llamacpp_generate(void *ctx, const lh_adapter *cand, const lh_examples *ex,
                                   int max_new_tokens, char **outputs, lh_error *err)
{
    lc_backend *b = ctx;
    for (size_t i = 0; i < ex->n; i++)
        outputs[i] = NULL;
    if (interrupted(b))
        return lh_error_set(err, LH_ERR_INTERRUPTED, "interrupted");
    llama_token *ids = NULL;
    size_t cap = 0, longest = 0;
    lh_status s = LH_OK;
    for (size_t i = 0; i < ex->n && !s; i++) { /* the longest prompt sizes the context */
        size_t len = 0;
        s = encode_prompt(b, ex, i, &ids, &len, &cap, err);
        if (!s && len == 0)
            s = lh_error_set(err, LH_ERR_ARG, "example %zu: empty prompt (no BOS, empty input)",
                             i + 1);
        longest = len > longest ? len : longest;
    }
    struct llama_batch batch = {0};
    struct llama_adapter_lora *owned = NULL;
    if (!s)
        s = ensure_context(b, (uint32_t)(longest + (size_t)max_new_tokens + 1), 1, 1, err);
    if (!s && !(batch = llama_batch_init((int32_t)longest + 1, 0, 1)).token)
        s = lh_error_set(err, LH_ERR_NOMEM, "out of memory");
    int nan = 0;
    if (!s)
        s = set_candidate(b, cand, &owned, &nan, err);
    if (!s && nan)
        s = lh_error_set(err, LH_ERR_NUMERIC, "%s: the adapter holds NaN or infinite values",
                         b->path);
    for (size_t i = 0; i < ex->n && !s; i++) {
        size_t len = 0;
        s = encode_prompt(b, ex, i, &ids, &len, &cap, err);
        if (!s && interrupted(b))
            s = lh_error_set(err, LH_ERR_INTERRUPTED, "interrupted");
        if (!s && b->enc_dec)
            s = generate_enc_dec(b, ids, (int)len, max_new_tokens, &batch, &outputs[i], err);
        else if (!s)
            s = generate_one(b, ids, (int)len, max_new_tokens, &batch, &outputs[i], err);
    }
    if (b->ctx)
        unset_candidate(b, owned);
    if (batch.token)
        llama_batch_free(batch);
    free(ids);
    for (size_t i = 0; s && i < ex->n; i++) {
        free(outputs[i]);
        outputs[i] = NULL;
    }
    return s;
}

static void llamacpp_describe(void *ctx, lh_backend_info *info)
{
    lc_backend *b = ctx;
    char desc[128] = "";
    llama_model_desc(b->model, desc, sizeof desc);
    snprintf(info->identity, sizeof info->identity, "%s", b->path);
    snprintf(info->description, sizeof info->description,
             "llamacpp: %.300s (%s, vocab %d, %.2fM parameters, %.1f MB)", b->path, desc,
             b->n_vocab, (double)llama_model_n_params(b->model) / 1e6,
             (double)llama_model_size(b->model) / 1048576.0);
}

static const lh_backend_key llamacpp_keys[] = {
    {"base-gguf", 1, "FILE"},
    {"threads", 0, "N"},
    {"gpu-layers", 0, "N"},
    {"no-repack", 0, "true|false"},
    {"bos", 0, "true|false"},
    {"eos", 0, "true|false"},
    {NULL, 0, NULL},
};

const lh_backend_i lh_backend_llamacpp = {
    .name = "llamacpp",
    .summary = "llama.cpp (libllama) on a GGUF base model, CPU or GPU",
    .keys = llamacpp_keys,
    .scores_cat_by_sum = 1,
    .open = llamacpp_open,
    .score = llamacpp_score,
    .generate = llamacpp_generate,
    .count_tokens = llamacpp_count_tokens,
    .describe = llamacpp_describe,
    .close = llamacpp_close,
};

#else /* !LH_HAVE_LLAMACPP */

/* Built without libllama: the backend exists to say how to get it. */
static lh_status llamacpp_absent_open(const lh_backend_opts *o, void **ctx, lh_error *err)
{
    (void)o;
    *ctx = NULL;
    return lh_error_set(err, LH_ERR_UNSUPPORTED,
                        "lorahub was built without llama.cpp: run 'sh tools/install-llamacpp.sh', "
                        "then 'make LLAMA_PREFIX=build/llamacpp'");
}

static lh_status llamacpp_absent_score(void *ctx, const lh_adapter *const *cands, int n,
                                       const lh_examples *ex, double *loss, lh_error *err)
{
    return llamacpp_absent_open(NULL, &ctx, err);
}

static const lh_backend_key llamacpp_keys[] = {
    {"base-gguf", 0, "FILE"},
    {"threads", 0, "N"},
    {"gpu-layers", 0, "N"},
    {NULL, 0, NULL},
};

const lh_backend_i lh_backend_llamacpp = {
    .name = "llamacpp",
    .summary = "llama.cpp (libllama): not built in (see tools/install-llamacpp.sh)",
    .keys = llamacpp_keys,
    .open = llamacpp_absent_open,
    .score = llamacpp_absent_score,
};

#endif

/* Whether this build can run the backend (the contract test asks). */
int lh_backend_llamacpp_built(void);
int lh_backend_llamacpp_built(void)
{
#ifdef LH_HAVE_LLAMACPP
    return 1;
#else
    return 0;
#endif
}

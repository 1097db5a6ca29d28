/* adapt/backend/server.c - backend "server": scoring on a fleet of
 * llama.cpp llama-server instances over HTTP (libcurl).
 *
 * Every server runs the same GGUF base model with the same LoRA modules
 * loaded, in the same order, at scale 0 (`lorahub serve-cmd` prints that
 * command line). A candidate is then a request with "lora": [{"id",
 * "scale"}]: exactly a cat composition (lh_adapter.sum: its modules at
 * weights w_i), or one loaded module alone at scale 1. Other methods would
 * need a merged file per candidate on every server, and are refused.
 *
 * Scoring (the same tokens and loss as the llamacpp backend): per example
 * prompt = [bos] + tokenize(input), target = tokenize(output) + [eos],
 * tokens from the server's POST /tokenize (add_special false, parse_special
 * false). log p(target | prompt) comes from one POST /completion whose
 * grammar forces the target ids, with n_probs 1: llama-server reports each
 * generated token's log-probability from the full softmax, before the
 * grammar applies. The EOS is not in the grammar: once the grammar is
 * complete it is the only token allowed. The loss is the mean of -logprob
 * over all target tokens of all examples, summed in example order, so it
 * does not depend on which server answered which request.
 *
 * Concurrency: every (candidate, example) pair is one request; requests go
 * to every server at once, up to its slot count (GET /props total_slots),
 * through curl's multi interface. A request that fails (connection, HTTP
 * status, timeout, an answer that is not what was asked) goes back in the
 * queue, preferably to another server; a server that fails LH_SV_MAX_FAILS
 * times in a row is dropped with a warning (lh_backend_opts.warn: the
 * caller prints it); the call fails only when no server is left. */
#include "backend.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "lib/fsutil.h"
#include "lib/json.h"
#include "lib/strbuf.h"

/* Consecutive failures after which a server is dropped. */
#define LH_SV_MAX_FAILS 3
/* Default per-request timeout (seconds) when --backend-timeout is not given. */
#define LH_SV_TIMEOUT 120.0
/* Requests in flight per server at most, whatever its slot count says. */
#define LH_SV_MAX_SLOTS 64

typedef struct sv_server {
    char *url;          /* "http://127.0.0.1:8080", no trailing slash */
    int slots;          /* requests it takes at once */
    int in_flight;
    int fails;          /* consecutive failures */
    int dropped;
} sv_server;

/* The examples as token ids, kept while the same examples come back. */
typedef struct sv_tokens {
    char **input, **output;   /* [n] copies, to recognise the same examples */
    long **ids;               /* [n] prompt then target ids */
    char **raw;               /* [n] [n_target]: 1 = a target token whose piece is not
                                 valid UTF-8 alone (llama.cpp's grammar cannot force it) */
    int *n_prompt, *n_target; /* [n] */
    size_t n, n_scored;
} sv_tokens;

typedef struct sv_backend {
    sv_server *servers;       /* [n_servers] */
    size_t n_servers;
    char **mods;              /* [n_mods] the servers' adapters by base name, in id order */
    size_t n_mods;
    double timeout;
    int add_bos, add_eos;
    long bos, eos;            /* bos < 0: the vocabulary adds none */
    long n_vocab;             /* n_probs that covers every token */
    volatile sig_atomic_t *interrupt;
    void (*warn)(void *ud, const char *line); /* lh_backend_opts.warn, or NULL */
    void *warn_ud;
    CURL *easy;               /* blocking requests (connect, tokenize) */
    CURLM *multi;
    sv_tokens tok;
} sv_backend;

static int interrupted(const sv_backend *b)
{
    return b->interrupt && *b->interrupt;
}

static pthread_once_t sv_once = PTHREAD_ONCE_INIT;
static int sv_curl_ok;

static void sv_init_once(void)
{
    sv_curl_ok = curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK;
}

/* ---- one request ------------------------------------------------------ */

static size_t on_body(char *data, size_t size, size_t n, void *ud)
{
    lh_sb *sb = ud;
    lh_sb_append_n(sb, data, size * n);
    return lh_sb_failed(sb) ? 0 : size * n;
}

/* The headers of a JSON POST; no "Expect: 100-continue" (curl would wait
 * up to a second for it before sending a large body). NULL: no memory. */
static struct curl_slist *json_headers(void)
{
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
    struct curl_slist *h2 = h ? curl_slist_append(h, "Expect:") : NULL;
    if (!h2)
        curl_slist_free_all(h);
    return h2;
}

/* curl's progress callback: a non-zero return aborts the transfer. */
static int on_progress(void *ud, curl_off_t dt, curl_off_t dn, curl_off_t ut, curl_off_t un)
{
    const sv_backend *b = ud;
    return b->interrupt && *b->interrupt;
}

/* Set up h for METHOD url+path (POST when body is not NULL), the answer
 * into *resp. */
static void setup_request(CURL *h, const sv_backend *b, const sv_server *s, const char *path,
                          const char *body, struct curl_slist *hdr, lh_sb *resp, char *errbuf)
{
    char url[1200];
    snprintf(url, sizeof url, "%s%s", s->url, path);
    curl_easy_reset(h);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, resp);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(h, CURLOPT_PROXY, "");      /* loopback and fleets: never a proxy */
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, 10000L);
    curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(h, CURLOPT_XFERINFODATA, (void *)b);
    if (b->timeout > 0)
        curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)(b->timeout * 1000.0));
    if (body) {
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdr);
    }
    errbuf[0] = '\0';
}

/* The outcome of a finished transfer: LH_OK with 200, else a message. */
static lh_status request_result(CURL *h, CURLcode rc, const sv_server *s, const char *path,
                                const lh_sb *resp, const char *errbuf, lh_error *err)
{
    if (rc == CURLE_ABORTED_BY_CALLBACK)
        return lh_error_set(err, LH_ERR_INTERRUPTED, "interrupted");
    if (rc != CURLE_OK)
        return lh_error_set(err, LH_ERR_BACKEND, "server %s%s: %s", s->url, path,
                            errbuf[0] ? errbuf : curl_easy_strerror(rc));
    long code = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
    if (lh_sb_failed(resp))
        return lh_error_set(err, LH_ERR_NOMEM, "out of memory");
    /* 400: the request itself is wrong (an example longer than the
     * server's context, say): every server would refuse it. */
    if (code != 200)
        return lh_error_set(err, code == 400 ? LH_ERR_ARG : LH_ERR_BACKEND,
                            "server %s%s: HTTP status %ld%s%.200s", s->url, path, code,
                            resp->len ? ": " : "", resp->len ? resp->buf : "");
    return LH_OK;
}

static lh_status parse_answer(const sv_server *s, const char *path, const lh_sb *resp,
                              lh_json **out, lh_error *err)
{
    char origin[1200];
    snprintf(origin, sizeof origin, "server %s%s", s->url, path);
    lh_status st = lh_json_parse(resp->buf ? resp->buf : "", resp->len, origin, out, err);
    return st ? lh_error_one_line(st, err) : LH_OK;
}

/* A blocking request to one server; *out its JSON answer. */
static lh_status request(sv_backend *b, const sv_server *s, const char *path, const char *body,
                         lh_json **out, lh_error *err)
{
    *out = NULL;
    lh_sb resp;
    lh_sb_init(&resp);
    char errbuf[CURL_ERROR_SIZE];
    struct curl_slist *hdr = body ? json_headers() : NULL;
    setup_request(b->easy, b, s, path, body, hdr, &resp, errbuf);
    CURLcode rc = curl_easy_perform(b->easy);
    lh_status st = request_result(b->easy, rc, s, path, &resp, errbuf, err);
    if (!st)
        st = parse_answer(s, path, &resp, out, err);
    curl_slist_free_all(hdr);
    lh_sb_release(&resp);
    return st;
}

/* ---- connect: the servers, their adapters, their vocabulary ----------- */

/* "dir/add1.gguf" -> "add1": a module's name as lorahub and the server
 * both know it ([n] bytes of the returned pointer). */
static const char *module_key(const char *path, size_t *n)
{
    const char *b = lh_path_base(path, n);
    if (*n > 5 && !strncmp(b + *n - 5, ".gguf", 5))
        *n -= 5;
    return b;
}

static lh_status add_server(sv_backend *b, const char *url, size_t n, lh_error *err)
{
    while (n > 0 && url[n - 1] == '/')
        n--;
    if (n == 0)
        return lh_error_set(err, LH_ERR_ARG, "server backend: an empty --server URL");
    sv_server *v = realloc(b->servers, (b->n_servers + 1) * sizeof *v);
    if (!v)
        return lh_error_set(err, LH_ERR_NOMEM, "out of memory");
    b->servers = v;
    sv_server *s = &v[b->n_servers];
    memset(s, 0, sizeof *s);
    int scheme = memmem(url, n, "://", 3) != NULL;
    s->url = malloc(n + 8);
    if (!s->url)
        return lh_error_set(err, LH_ERR_NOMEM, "out of memory");
    snprintf(s->url, n + 8, "%s%.*s", scheme ? "" : "http://", (int)n, url);
    b->n_servers++;
    return LH_OK;
}

/* URLs separated by commas or white space; "#" starts a comment (files). */
static lh_status add_servers(sv_backend *b, const char *text, lh_error *err)
{
    for (const char *p = text; *p;) {
        if (*p == '#') {
            while (*p && *p != '\n')
                p++;
            continue;
        }
        if (*p == ',' || isspace((unsigned char)*p)) {
            p++;
            continue;
        }
        size_t n = strcspn(p, ", \t\r\n#");
        lh_status st = add_server(b, p, n, err);
        if (st)
            return st;
        p += n;
    }
    return LH_OK;
}

/* Every "server" value: URLs, or a file of them (one a line). */
static lh_status read_server_list(sv_backend *b, const lh_backend_opts *o, lh_error *err)
{
    for (size_t i = 0; o->params && o->params[i] && o->params[i + 1]; i += 2) {
        const char *v = o->params[i + 1];
        if (strcmp(o->params[i], "server"))
            continue;
        lh_status st;
        if (!strstr(v, "://") && !strchr(v, ',') && lh_path_exists(v) && !lh_is_dir(v)) {
            char *text = NULL;
            size_t len;
            st = lh_read_file(v, &text, &len, err);
            if (!st && memchr(text, '\0', len))
                st = lh_error_set(err, LH_ERR_FORMAT, "%s: a servers file holds text", v);
            if (!st)
                st = add_servers(b, text, err);
            free(text);
        } else {
            st = add_servers(b, v, err);
        }
        if (st)
            return st;
    }
    if (b->n_servers == 0)
        return lh_error_set(err, LH_ERR_ARG, "the server backend needs --server URL");
    return LH_OK;
}

/* GET /lora-adapters of s: the names by id, into names[n] (malloc'd). */
static lh_status server_adapters(sv_backend *b, const sv_server *s, char ***names, size_t *n,
                                 lh_error *err)
{
    *names = NULL;
    *n = 0;
    lh_json *j;
    lh_status st = request(b, s, "/lora-adapters", NULL, &j, err);
    if (st)
        return st;
    if (j->type != LH_JSON_ARRAY)
        st = lh_error_set(err, LH_ERR_BACKEND, "server %s/lora-adapters: not a list", s->url);
    if (!st && !(*names = calloc(j->len ? j->len : 1, sizeof **names)))
        st = lh_error_set(err, LH_ERR_NOMEM, "out of memory");
    for (size_t i = 0; !st && i < j->len; i++) {
        const char *path;
        long long id;
        if (!lh_json_as_string(lh_json_get(j->items[i], "path"), &path) ||
            !lh_json_as_int64(lh_json_get(j->items[i], "id"), &id) || id != (long long)i) {
            st = lh_error_set(err, LH_ERR_BACKEND,
                              "server %s/lora-adapters: entry %zu has no path or not id %zu",
                              s->url, i, i);
            break;
        }
        size_t kn;
        const char *k = module_key(path, &kn);
        if (!((*names)[i] = strndup(k, kn)))
            st = lh_error_set(err, LH_ERR_NOMEM, "out of memory");
        (*n)++;
    }
    lh_json_free(j);
    return st;
}

static void free_names(char **names, size_t n)
{
    for (size_t i = 0; names && i < n; i++)
        free(names[i]);
    free(names);
}

/* The first server's adapters become the list; every other server must
 * hold the same names in the same order. */
static lh_status check_adapters(sv_backend *b, size_t i, lh_error *err)
{
    char **names;
    size_t n;
    lh_status st = server_adapters(b, &b->servers[i], &names, &n, err);
    if (st)
        return st;
    if (i == 0) {
        b->mods = names;
        b->n_mods = n;
        return LH_OK;
    }
    const char *url = b->servers[i].url, *url0 = b->servers[0].url;
    for (size_t k = 0; !st && (k < n || k < b->n_mods); k++) {
        if (k >= n)
            st = lh_error_set(err, LH_ERR_BACKEND,
                              "server %s lacks adapter %zu '%s' that %s holds (every server "
                              "needs the same modules in the same order)", url, k, b->mods[k], url0);
        else if (k >= b->n_mods)
            st = lh_error_set(err, LH_ERR_BACKEND,
                              "server %s holds adapter %zu '%s' that %s lacks (every server "
                              "needs the same modules in the same order)", url, k, names[k], url0);
        else if (strcmp(names[k], b->mods[k]))
            st = lh_error_set(err, LH_ERR_BACKEND,
                              "server %s holds adapter %zu '%s' where %s holds '%s' (every server "
                              "needs the same modules in the same order)", url, k, names[k], url0,
                              b->mods[k]);
    }
    free_names(names, n);
    return st;
}

/* One /tokenize item {"id", "piece"}: *raw when the piece is not valid
 * UTF-8 on its own (the server writes it as a list of bytes). */
static int token_item(const lh_json *item, long long *id, int *raw)
{
    const lh_json *piece = lh_json_get(item, "piece");
    *raw = piece && piece->type == LH_JSON_ARRAY;
    return lh_json_as_int64(lh_json_get(item, "id"), id) && piece;
}

/* POST /tokenize text on s: ids into *ids (malloc'd, [*n]); *raw (malloc'd,
 * [*n], or NULL when raw is NULL): 1 for a token whose piece is not valid
 * UTF-8 alone. */
static lh_status tokenize(sv_backend *b, const sv_server *s, const char *text, int add_special,
                          int parse_special, long **ids, char **raw, size_t *n, lh_error *err)
{
    *ids = NULL;
    *n = 0;
    if (raw)
        *raw = NULL;
    lh_sb req;
    lh_sb_init(&req);
    lh_sb_append(&req, "{\"content\":");
    lh_sb_append_json_string(&req, text);
    lh_sb_appendf(&req, ",\"add_special\":%s,\"parse_special\":%s,\"with_pieces\":true}",
                  add_special ? "true" : "false", parse_special ? "true" : "false");
    if (lh_sb_failed(&req))
        return lh_error_set(err, LH_ERR_NOMEM, "out of memory");
    lh_json *j;
    lh_status st = request(b, s, "/tokenize", req.buf, &j, err);
    lh_sb_release(&req);
    if (st)
        return st;
    const lh_json *t = lh_json_get(j, "tokens");
    if (!t || t->type != LH_JSON_ARRAY)
        st = lh_error_set(err, LH_ERR_BACKEND, "server %s/tokenize: no token list", s->url);
    if (!st && (!(*ids = malloc((t->len ? t->len : 1) * sizeof **ids)) ||
                (raw && !(*raw = malloc(t->len ? t->len : 1)))))
        st = lh_error_set(err, LH_ERR_NOMEM, "out of memory");
    for (size_t i = 0; !st && i < t->len; i++) {
        long long v;
        int r;
        if (!token_item(t->items[i], &v, &r) || v < 0 || v > INT32_MAX) {
            st = lh_error_set(err, LH_ERR_BACKEND, "server %s/tokenize: token %zu is not an id",
                              s->url, i);
        } else {
            if (raw)
                (*raw)[*n] = (char)r;
            (*ids)[(*n)++] = (long)v;
        }
    }
    if (st) {
        free(*ids);
        *ids = NULL;
        if (raw) {
            free(*raw);
            *raw = NULL;
        }
    }
    lh_json_free(j);
    return st;
}

/* BOS (when the vocabulary adds one) and EOS ids, from server s. */
static lh_status special_tokens(sv_backend *b, const sv_server *s, lh_error *err)
{
    long *ids;
    size_t n;
    lh_status st = tokenize(b, s, "", 1, 0, &ids, NULL, &n, err);
    if (st)
        return st;
    b->bos = n >= 1 ? ids[0] : -1;
    free(ids);
    lh_json *j;
    if ((st = request(b, s, "/props", NULL, &j, err)))
        return st;
    const char *eos_text = NULL;
    double slots = 1;
    lh_json_as_string(lh_json_get(j, "eos_token"), &eos_text);
    if (!lh_json_as_number(lh_json_get(j, "total_slots"), &slots) || slots < 1)
        slots = 1;
    b->servers[s - b->servers].slots = slots > LH_SV_MAX_SLOTS ? LH_SV_MAX_SLOTS : (int)slots;
    if (b->add_eos && (!eos_text || !*eos_text))
        st = lh_error_set(err, LH_ERR_NOT_FOUND,
                          "server %s: the vocabulary has no EOS token to end the outputs with "
                          "(use --no-eos)", s->url);
    if (!st && b->add_eos) {
        st = tokenize(b, s, eos_text, 0, 1, &ids, NULL, &n, err);
        if (!st && n != 1)
            st = lh_error_set(err, LH_ERR_BACKEND, "server %s: the EOS text '%s' is %zu tokens",
                              s->url, eos_text, n);
        if (!st)
            b->eos = ids[0];
        free(ids);
    }
    lh_json_free(j);
    double n_vocab = 0;
    if (!st && !(st = request(b, s, "/v1/models", NULL, &j, err))) {
        const lh_json *d = lh_json_get(j, "data");
        const lh_json *m = d && d->type == LH_JSON_ARRAY && d->len ? d->items[0] : NULL;
        if (!lh_json_as_number(lh_json_get(lh_json_get(m, "meta"), "n_vocab"), &n_vocab) ||
            n_vocab < 1 || n_vocab > 1e9)
            st = lh_error_set(err, LH_ERR_BACKEND, "server %s/v1/models: no vocabulary size",
                              s->url);
        lh_json_free(j);
        b->n_vocab = (long)n_vocab;
    }
    if (!st && b->bos == b->eos)
        b->bos = -1; /* a vocabulary that adds only EOS */
    return st;
}

/* ---- scoring: the examples' tokens ------------------------------------ */

static void tokens_release(sv_tokens *t)
{
    for (size_t i = 0; i < t->n; i++) {
        free(t->input ? t->input[i] : NULL);
        free(t->output ? t->output[i] : NULL);
        free(t->ids ? t->ids[i] : NULL);
        free(t->raw ? t->raw[i] : NULL);
    }
    free(t->input);
    free(t->output);
    free(t->ids);
    free(t->raw);
    free(t->n_prompt);
    free(t->n_target);
    memset(t, 0, sizeof *t);
}

static int same_examples(const sv_tokens *t, const lh_examples *ex)
{
    if (!t->ids || t->n != ex->n)
        return 0;
    for (size_t i = 0; i < ex->n; i++)
        if (strcmp(t->input[i], ex->input[i]) || strcmp(t->output[i], ex->output[i]))
            return 0;
    return 1;
}

/* The first server still in the fleet, or NULL. */
static sv_server *live_server(sv_backend *b)
{
    for (size_t i = 0; i < b->n_servers; i++)
        if (!b->servers[i].dropped)
            return &b->servers[i];
    return NULL;
}

/* The run goes on without s; the caller's warning channel says so. */
static void drop_server(sv_backend *b, sv_server *s, const lh_error *why)
{
    s->dropped = 1;
    if (!b->warn)
        return;
    lh_sb line;
    lh_sb_init(&line);
    lh_sb_appendf(&line, "dropping server %s after %d failures in a row: %s", s->url, s->fails,
                  why ? why->msg : "");
    b->warn(b->warn_ud, lh_sb_failed(&line) ? "dropping a server (out of memory)" : line.buf);
    lh_sb_release(&line);
}

/* A server's failure: dropped after LH_SV_MAX_FAILS in a row. */
static void server_failed(sv_backend *b, sv_server *s, const lh_error *why)
{
    if (++s->fails >= LH_SV_MAX_FAILS && !s->dropped)
        drop_server(b, s, why);
}

static lh_status no_server_left(lh_error *err, const lh_error *last)
{
    return lh_error_set(err, LH_ERR_BACKEND, "server backend: no server left (last error: %s)",
                        last && last->msg[0] ? last->msg : "none");
}

/* tokenize with failover: the first live server that answers. */
static lh_status tokenize_any(sv_backend *b, const char *text, long **ids, char **raw,
                              size_t *n, lh_error *err)
{
    lh_error last = {0};
    for (sv_server *s; (s = live_server(b));) {
        if (interrupted(b))
            return lh_error_set(err, LH_ERR_INTERRUPTED, "interrupted");
        lh_status st = tokenize(b, s, text, 0, 0, ids, raw, n, &last);
        if (!st) {
            s->fails = 0;
            return LH_OK;
        }
        if (st == LH_ERR_NOMEM || st == LH_ERR_INTERRUPTED || st == LH_ERR_ARG) {
            *err = last;
            err->code = st == LH_ERR_ARG ? LH_ERR_BACKEND : st;
            return lh_error_one_line(err->code, err);
        }
        server_failed(b, s, &last);
    }
    return no_server_left(err, &last);
}

/* Tokens of example i: [bos] + input, then output + [eos]. */
static lh_status encode_example(sv_backend *b, const lh_examples *ex, size_t i, lh_error *err)
{
    sv_tokens *t = &b->tok;
    long *in = NULL, *out = NULL;
    char *raw = NULL;
    size_t n_in = 0, n_out = 0;
    lh_status st = tokenize_any(b, ex->input[i], &in, NULL, &n_in, err);
    if (!st)
        st = tokenize_any(b, ex->output[i], &out, &raw, &n_out, err);
    size_t bos = b->add_bos && b->bos >= 0, eos = b->add_eos != 0;
    size_t np = bos + n_in, nt = n_out + eos;
    if (!st && np == 0)
        st = lh_error_set(err, LH_ERR_ARG, "example %zu: empty prompt (no BOS, empty input)", i + 1);
    if (!st && nt == 0)
        st = lh_error_set(err, LH_ERR_ARG, "example %zu: nothing to score (empty output, no EOS)",
                          i + 1);
    if (!st && np + nt > INT32_MAX / 4)
        st = lh_error_set(err, LH_ERR_ARG, "example %zu: too many tokens", i + 1);
    if (!st && (!(t->ids[i] = malloc((np + nt) * sizeof *t->ids[i])) ||
                !(t->raw[i] = calloc(nt, 1))))
        st = lh_error_set(err, LH_ERR_NOMEM, "out of memory");
    if (!st) {
        long *v = t->ids[i];
        if (bos)
            *v++ = b->bos;
        memcpy(v, in, n_in * sizeof *v);
        memcpy(v + n_in, out, n_out * sizeof *v);
        if (eos)
            v[n_in + n_out] = b->eos;
        memcpy(t->raw[i], raw, n_out);
        t->n_prompt[i] = (int)np;
        t->n_target[i] = (int)nt;
        t->n_scored += nt;
    }
    free(in);
    free(out);
    free(raw);
    return st;
}

static lh_status encode_examples(sv_backend *b, const lh_examples *ex, lh_error *err)
{
    if (!ex || ex->n == 0)
        return lh_error_set(err, LH_ERR_ARG, "server backend: no examples to score");
    if (same_examples(&b->tok, ex))
        return LH_OK;
    tokens_release(&b->tok);
    sv_tokens *t = &b->tok;
    t->n = ex->n;
    t->input = calloc(ex->n, sizeof *t->input);
    t->output = calloc(ex->n, sizeof *t->output);
    t->ids = calloc(ex->n, sizeof *t->ids);
    t->raw = calloc(ex->n, sizeof *t->raw);
    t->n_prompt = calloc(ex->n, sizeof *t->n_prompt);
    t->n_target = calloc(ex->n, sizeof *t->n_target);
    lh_status st = t->input && t->output && t->ids && t->raw && t->n_prompt && t->n_target
                       ? LH_OK : lh_error_set(err, LH_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < ex->n && !st; i++) {
        t->input[i] = strdup(ex->input[i]);
        t->output[i] = strdup(ex->output[i]);
        st = t->input[i] && t->output[i] ? encode_example(b, ex, i, err)
                                         : lh_error_set(err, LH_ERR_NOMEM, "out of memory");
    }
    if (st)
        tokens_release(t);
    return st;
}

/* ---- scoring: candidates as adapter scales ---------------------------- */

/* The server adapter id of module m, or -1. */
static long module_id(const sv_backend *b, const lh_adapter *m)
{
    if (!m || !m->name)
        return -1;
    size_t n;
    const char *k = module_key(m->name, &n);
    for (size_t i = 0; i < b->n_mods; i++)
        if (strlen(b->mods[i]) == n && !strncmp(b->mods[i], k, n))
            return (long)i;
    return -1;
}

/* The request's "lora" list for cand, into *sb; *nan when a weight is not
 * finite (the candidate's loss is then NaN, and nothing is sent). */
static lh_status lora_field(const sv_backend *b, const lh_adapter *cand, lh_sb *sb, int *nan,
                            lh_error *err)
{
    *nan = 0;
    lh_sb_append(sb, "\"lora\":[");
    if (!cand) {
        lh_sb_append(sb, "]");
        return LH_OK;
    }
    const lh_adapter_sum *sum = cand->sum;
    if (!sum && !lh_adapter_all_finite(cand)) {
        *nan = 1;
        return LH_OK;
    }
    if (!sum) {
        long id = module_id(b, cand);
        if (id < 0)
            return lh_error_set(err, LH_ERR_UNSUPPORTED,
                                "server backend: candidate '%s' is neither a cat composition nor "
                                "a module the servers hold; other methods need a merged file per "
                                "candidate (use --method cat, or the native or llamacpp backend)",
                                cand->name ? cand->name : "(made in memory)");
        lh_sb_appendf(sb, "{\"id\":%ld,\"scale\":1}]", id);
        return LH_OK;
    }
    int first = 1;
    for (size_t i = 0; i < sum->n; i++) {
        long id = module_id(b, sum->mods[i]);
        if (id < 0)
            return lh_error_set(err, LH_ERR_ARG,
                                "server backend: the servers do not hold module '%s' (start them "
                                "with the command of lorahub serve-cmd)",
                                sum->mods[i] && sum->mods[i]->name ? sum->mods[i]->name : "?");
        if (!isfinite(sum->coef[i]))
            *nan = 1;
        if (sum->coef[i] == 0.0)
            continue;
        lh_sb_appendf(sb, "%s{\"id\":%ld,\"scale\":", first ? "" : ",", id);
        lh_sb_append_json_number(sb, sum->coef[i]);
        lh_sb_append(sb, "}");
        first = 0;
    }
    lh_sb_append(sb, "]");
    return LH_OK;
}

/* A piece of one example's target that one request scores: target tokens
 * [k0, k0 + count) after the prompt and target tokens before k0. Forced
 * by a grammar, or (raw: one token whose piece is not valid UTF-8 alone,
 * which llama.cpp's grammar cannot force) read from the probabilities of
 * the whole vocabulary at that position. */
typedef struct sv_segment {
    int k0, count, raw;
} sv_segment;

/* The next segment of example i from target token k. */
static sv_segment next_segment(const sv_backend *b, size_t i, int k)
{
    const sv_tokens *t = &b->tok;
    int nt = t->n_target[i], eos_at = b->add_eos ? nt - 1 : nt;
    if (k < eos_at && t->raw[i][k])
        return (sv_segment){k, 1, 1};
    int j = k;
    while (j < eos_at && !t->raw[i][j])
        j++;
    if (j == eos_at && b->add_eos)
        j++; /* the EOS follows a complete grammar */
    return (sv_segment){k, j - k, 0};
}

/* The /completion body of a segment of example i under lora (the "lora" field). */
static void completion_body(const sv_backend *b, size_t i, sv_segment g, const char *lora,
                            lh_sb *sb)
{
    const sv_tokens *t = &b->tok;
    const long *ids = t->ids[i];
    int np = t->n_prompt[i] + g.k0, nt = t->n_target[i];
    int forced = g.count - (g.k0 + g.count == nt && b->add_eos ? 1 : 0);
    lh_sb_append(sb, "{\"prompt\":[");
    for (int k = 0; k < np; k++)
        lh_sb_appendf(sb, "%s%ld", k ? "," : "", ids[k]);
    lh_sb_appendf(sb, "],\"n_predict\":%d,\"n_probs\":%ld,\"temperature\":0,"
                      "\"cache_prompt\":false,\"ignore_eos\":false,", g.count,
                  g.raw ? b->n_vocab : 1L);
    if (g.raw) { /* any one printable character: a token the server can send back as text */
        lh_sb_append(sb, "\"grammar\":\"root ::= [ -~]\",");
    } else {
        lh_sb_append(sb, "\"grammar\":\"root ::=");
        for (int k = 0; k < forced; k++)
            lh_sb_appendf(sb, " <[%ld]>", ids[np + k]);
        if (forced == 0)
            lh_sb_append(sb, " \\\"\\\"");
        lh_sb_append(sb, "\",");
    }
    lh_sb_appendf(sb, "%s}", lora);
}

/* log p of token id among a /completion answer's top_logprobs. */
static int find_logprob(const lh_json *tops, long id, double *lp)
{
    for (size_t k = 0; tops && tops->type == LH_JSON_ARRAY && k < tops->len; k++) {
        long long v;
        if (lh_json_as_int64(lh_json_get(tops->items[k], "id"), &v) && v == id)
            return lh_json_as_number(lh_json_get(tops->items[k], "logprob"), lp);
    }
    return 0;
}

/* Sum of -logprob of a segment of example i in a /completion answer. */
static lh_status read_completion(const sv_backend *b, const sv_server *s, size_t i,
                                 sv_segment g, const lh_json *j, double *nll, lh_error *err)
{
    const sv_tokens *t = &b->tok;
    const long *target = t->ids[i] + t->n_prompt[i] + g.k0;
    const lh_json *p = lh_json_get(j, "completion_probabilities");
    if (!p || p->type != LH_JSON_ARRAY || p->len != (size_t)g.count)
        return lh_error_set(err, LH_ERR_BACKEND,
                            "server %s/completion: example %zu: %zu token probabilities, want %d",
                            s->url, i + 1, p && p->type == LH_JSON_ARRAY ? p->len : 0, g.count);
    double sum = 0;
    for (size_t k = 0; k < p->len; k++) {
        long long id;
        double lp;
        int ok = g.raw ? find_logprob(lh_json_get(p->items[k], "top_logprobs"), target[k], &lp)
                       : lh_json_as_int64(lh_json_get(p->items[k], "id"), &id) &&
                             id == target[k] &&
                             lh_json_as_number(lh_json_get(p->items[k], "logprob"), &lp);
        if (!ok)
            return lh_error_set(err, LH_ERR_BACKEND,
                                "server %s/completion: example %zu: no log-probability of the "
                                "target token %ld", s->url, i + 1, target[k]);
        sum -= lp;
    }
    *nll = sum;
    return LH_OK;
}

/* ---- scoring: every request in flight at once ------------------------- */

typedef struct sv_task {
    size_t cand, example;
    sv_segment seg;
    int server;          /* in flight on, or -1 */
    int last_server;     /* failed last on, or -1 */
    int done;
    double nll;
    CURL *h;
    lh_sb resp;
    struct curl_slist *hdr;
    char errbuf[CURL_ERROR_SIZE];
} sv_task;

typedef struct sv_run {
    sv_task *tasks;      /* [n_tasks] */
    size_t n_tasks, n_done;
    char **bodies;       /* [n_tasks] request bodies */
    lh_error last;       /* the last failure, for "no server left" */
} sv_run;

static void task_stop(sv_backend *b, sv_task *t)
{
    if (t->h) {
        curl_multi_remove_handle(b->multi, t->h);
        curl_easy_cleanup(t->h);
        t->h = NULL;
    }
    curl_slist_free_all(t->hdr);
    t->hdr = NULL;
    lh_sb_release(&t->resp);
    if (t->server >= 0)
        b->servers[t->server].in_flight--;
    t->server = -1;
}

/* Start task k on server si. */
static lh_status task_start(sv_backend *b, sv_run *r, size_t k, int si, lh_error *err)
{
    sv_task *t = &r->tasks[k];
    sv_server *s = &b->servers[si];
    if (!(t->h = curl_easy_init()) ||
        !(t->hdr = json_headers()))
        return lh_error_set(err, LH_ERR_NOMEM, "out of memory");
    lh_sb_init(&t->resp);
    setup_request(t->h, b, s, "/completion", r->bodies[k], t->hdr, &t->resp, t->errbuf);
    curl_easy_setopt(t->h, CURLOPT_PRIVATE, t);
    if (curl_multi_add_handle(b->multi, t->h) != CURLM_OK)
        return lh_error_set(err, LH_ERR_BACKEND, "server backend: curl cannot add a request");
    t->server = si;
    s->in_flight++;
    return LH_OK;
}

/* Fill every live server's free slots with waiting tasks; a task that
 * failed on a server goes elsewhere when another server is live. */
static lh_status dispatch(sv_backend *b, sv_run *r, lh_error *err)
{
    size_t n_live = 0;
    for (size_t i = 0; i < b->n_servers; i++)
        n_live += !b->servers[i].dropped;
    for (int progress = 1; progress;) {
        progress = 0;
        for (size_t si = 0; si < b->n_servers; si++) { /* one task per server per round */
            sv_server *s = &b->servers[si];
            if (s->dropped || s->in_flight >= s->slots)
                continue;
            for (size_t k = 0; k < r->n_tasks; k++) {
                sv_task *t = &r->tasks[k];
                if (t->done || t->server >= 0 || (t->last_server == (int)si && n_live > 1))
                    continue;
                lh_status st = task_start(b, r, k, (int)si, err);
                if (st)
                    return st;
                progress = 1;
                break;
            }
        }
    }
    return LH_OK;
}

/* A finished transfer: its loss, or a failure of its server. */
static lh_status task_finish(sv_backend *b, sv_run *r, sv_task *t, CURLcode rc, lh_error *err)
{
    sv_server *s = &b->servers[t->server];
    lh_json *j = NULL;
    lh_status st = request_result(t->h, rc, s, "/completion", &t->resp, t->errbuf, &r->last);
    if (!st)
        st = parse_answer(s, "/completion", &t->resp, &j, &r->last);
    if (!st)
        st = read_completion(b, s, t->example, t->seg, j, &t->nll, &r->last);
    lh_json_free(j);
    if (st == LH_ERR_NOMEM || st == LH_ERR_INTERRUPTED)
        return lh_error_set(err, st, st == LH_ERR_NOMEM ? "out of memory" : "interrupted");
    if (st == LH_ERR_ARG) {
        *err = r->last;
        err->code = LH_ERR_BACKEND;
        return lh_error_one_line(LH_ERR_BACKEND, err);
    }
    int si = t->server;
    task_stop(b, t);
    if (!st) {
        t->done = 1;
        r->n_done++;
        s->fails = 0;
        return LH_OK;
    }
    t->last_server = si;
    if (!s->dropped) {
        server_failed(b, s, &r->last);
        if (s->dropped) /* its other requests go elsewhere */
            for (size_t k = 0; k < r->n_tasks; k++)
                if (r->tasks[k].server == si)
                    task_stop(b, &r->tasks[k]);
    }
    return LH_OK;
}

/* Run every task to its end, or fail when no server is left. */
static lh_status run_tasks(sv_backend *b, sv_run *r, lh_error *err)
{
    lh_status st = LH_OK;
    while (!st && r->n_done < r->n_tasks) {
        if (interrupted(b))
            return lh_error_set(err, LH_ERR_INTERRUPTED, "interrupted");
        if (!live_server(b))
            return no_server_left(err, &r->last);
        if ((st = dispatch(b, r, err)))
            break;
        int running = 0;
        if (curl_multi_perform(b->multi, &running) != CURLM_OK)
            return lh_error_set(err, LH_ERR_BACKEND, "server backend: curl_multi_perform failed");
        CURLMsg *m;
        int left;
        while (!st && (m = curl_multi_info_read(b->multi, &left)))
            if (m->msg == CURLMSG_DONE) {
                sv_task *t = NULL;
                curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&t);
                st = task_finish(b, r, t, m->data.result, err);
            }
        if (!st && r->n_done < r->n_tasks && running > 0)
            curl_multi_poll(b->multi, NULL, 0, 100, NULL);
    }
    return st;
}

static void run_release(sv_backend *b, sv_run *r)
{
    for (size_t k = 0; r->tasks && k < r->n_tasks; k++)
        task_stop(b, &r->tasks[k]);
    for (size_t k = 0; r->bodies && k < r->n_tasks; k++)
        free(r->bodies[k]);
    free(r->bodies);
    free(r->tasks);
}

/* One task per (candidate, example) of the candidates that have a loss to
 * compute; nan[i] marks the others. */
static lh_status plan_run(sv_backend *b, const lh_adapter *const *cands, int n, int *nan,
                          sv_run *r, lh_error *err)
{
    size_t n_ex = b->tok.n, most = (size_t)n * b->tok.n_scored + 1; /* a segment scores >= 1 token */
    r->tasks = calloc(most, sizeof *r->tasks);
    r->bodies = calloc(most, sizeof *r->bodies);
    if (!r->tasks || !r->bodies)
        return lh_error_set(err, LH_ERR_NOMEM, "out of memory");
    lh_status st = LH_OK;
    for (int i = 0; i < n && !st; i++) {
        lh_sb lora;
        lh_sb_init(&lora);
        st = lora_field(b, cands[i], &lora, &nan[i], err);
        for (size_t e = 0; e < n_ex && !st && !nan[i]; e++)
            for (int k = 0; k < b->tok.n_target[e] && !st;) {
                sv_segment g = next_segment(b, e, k);
                lh_sb body;
                lh_sb_init(&body);
                completion_body(b, e, g, lora.buf, &body);
                if (lh_sb_failed(&lora) || lh_sb_failed(&body)) {
                    lh_sb_release(&body);
                    st = lh_error_set(err, LH_ERR_NOMEM, "out of memory");
                    break;
                }
                r->bodies[r->n_tasks] = lh_sb_detach(&body);
                r->tasks[r->n_tasks++] = (sv_task){.cand = (size_t)i, .example = e, .seg = g,
                                                   .server = -1, .last_server = -1};
                k += g.count;
            }
        lh_sb_release(&lora);
    }
    return st;
}

static lh_status server_score(void *ctx, const lh_adapter *const *cands, int n,
                              const lh_examples *ex, double *loss, lh_error *err)
{
    sv_backend *b = ctx;
    if (interrupted(b))
        return lh_error_set(err, LH_ERR_INTERRUPTED, "interrupted");
    lh_status st = encode_examples(b, ex, err);
    if (st)
        return st;
    int *nan = calloc((size_t)n, sizeof *nan);
    sv_run r = {0};
    st = nan ? plan_run(b, cands, n, nan, &r, err) : lh_error_set(err, LH_ERR_NOMEM, "out of memory");
    if (!st)
        st = run_tasks(b, &r, err);
    if (!st) {
        /* In (candidate, example) order: the sum does not depend on who answered. */
        for (int i = 0; i < n; i++)
            loss[i] = nan[i] ? NAN : 0.0;
        for (size_t k = 0; k < r.n_tasks; k++)
            loss[r.tasks[k].cand] += r.tasks[k].nll;
        for (int i = 0; i < n; i++)
            if (!nan[i])
                loss[i] /= (double)b->tok.n_scored;
    }
    run_release(b, &r);
    free(nan);
    return st;
}

static lh_status server_count_tokens(void *ctx, const lh_examples *ex, size_t *n_tokens,
                                     lh_error *err)
{
    sv_backend *b = ctx;
    lh_status st = encode_examples(b, ex, err);
    if (!st)
        *n_tokens = b->tok.n_scored;
    return st;
}

/* ---- open, describe, close -------------------------------------------- */

static void sv_free(sv_backend *b)
{
    if (!b)
        return;
    tokens_release(&b->tok);
    free_names(b->mods, b->n_mods);
    for (size_t i = 0; i < b->n_servers; i++)
        free(b->servers[i].url);
    free(b->servers);
    if (b->multi)
        curl_multi_cleanup(b->multi);
    if (b->easy)
        curl_easy_cleanup(b->easy);
    free(b);
}

static lh_status connect_all(sv_backend *b, lh_error *err)
{
    lh_status st = LH_OK;
    for (size_t i = 0; i < b->n_servers && !st; i++)
        st = check_adapters(b, i, err);
    for (size_t i = 0; i < b->n_servers && !st; i++)
        st = special_tokens(b, &b->servers[i], err);
    return st;
}

static lh_status server_open(const lh_backend_opts *o, void **ctx, lh_error *err)
{
    *ctx = NULL;
    pthread_once(&sv_once, sv_init_once);
    if (!sv_curl_ok)
        return lh_error_set(err, LH_ERR_BACKEND, "server backend: libcurl cannot start");
    sv_backend *b = calloc(1, sizeof *b);
    if (!b)
        return lh_error_set(err, LH_ERR_NOMEM, "out of memory");
    const char *bos = lh_backend_param(o, "bos"), *eos = lh_backend_param(o, "eos");
    const char *timeout = lh_backend_param(o, "backend-timeout");
    b->add_bos = !bos || strcmp(bos, "false") != 0;
    b->add_eos = !eos || strcmp(eos, "false") != 0;
    b->interrupt = o->interrupt;
    b->warn = o->warn;
    b->warn_ud = o->warn_ud;
    b->timeout = LH_SV_TIMEOUT;
    b->bos = b->eos = -1;
    lh_status st = LH_OK;
    if (timeout) { /* 0: the default, as for exec */
        char *end;
        errno = 0;
        b->timeout = strtod(timeout, &end);
        if (end == timeout || *end || errno || !(b->timeout >= 0))
            st = lh_error_set(err, LH_ERR_ARG, "server backend: bad --backend-timeout '%s'",
                              timeout);        if (b->timeout == 0)
            b->timeout = LH_SV_TIMEOUT;
    }
    if (!st)
        st = read_server_list(b, o, err);
    if (!st && (!(b->easy = curl_easy_init()) || !(b->multi = curl_multi_init())))
        st = lh_error_set(err, LH_ERR_NOMEM, "out of memory");
    if (!st)
        st = connect_all(b, err);
    if (st) {
        sv_free(b);
        return st;
    }
    *ctx = b;
    return LH_OK;
}

static void server_close(void *ctx)
{
    sv_free(ctx);
}

static void server_describe(void *ctx, lh_backend_info *info)
{
    sv_backend *b = ctx;
    /* The modules by name and order: a checkpoint resumes on any fleet
     * that holds them, whichever URLs it has today. */
    lh_sb id;
    lh_sb_init(&id);
    lh_sb_append(&id, "server:");
    for (size_t i = 0; i < b->n_mods; i++)
        lh_sb_appendf(&id, "%s%s", i ? "," : "", b->mods[i]);
    snprintf(info->identity, sizeof info->identity, "%s", id.buf ? id.buf : "server:");
    lh_sb_release(&id);
    int slots = 0;
    for (size_t i = 0; i < b->n_servers; i++)
        slots += b->servers[i].slots;
    snprintf(info->description, sizeof info->description,
             "server: %zu llama-server%s (%.200s%s), %d slots, %zu adapters", b->n_servers,
             b->n_servers == 1 ? "" : "s", b->servers[0].url, b->n_servers > 1 ? ", ..." : "",
             slots, b->n_mods);
}

static const lh_backend_key server_keys[] = {
    {"server", 1, "URL"},
    {"backend-timeout", 0, "SEC"},
    {"bos", 0, "true|false"},
    {"eos", 0, "true|false"},
    {NULL, 0, NULL},
};

const lh_backend_i lh_backend_server = {
    .name = "server",
    .summary = "llama.cpp llama-server instances over HTTP, LoRA scales per request (cat)",
    .keys = server_keys,
    .scores_cat_by_sum = 1,
    .open = server_open,
    .score = server_score,
    .count_tokens = server_count_tokens,
    .describe = server_describe,
    .close = server_close,
};

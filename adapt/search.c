/* adapt/search.c - the ADAPT search driver (see search.h).
 *
 * One evaluation = compose(w) into a preallocated output adapter, then the
 * backend scores a whole optimizer batch in one call. Records of every
 * evaluation feed three things at once: best-so-far, the TSV trace and the
 * checkpoint. The checkpoint stores each point and loss both as JSON
 * numbers (for people) and as C99 hex floats (for an exact replay). */
#include "search.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "lib/fsutil.h"
#include "lib/json.h"
#include "lib/strbuf.h"
#include "adapt/optim/optimizer.h"
#include "adapt/optim/rng.h"

#define CKPT_VERSION 1
/* Single-module scoring sends at most this many candidates per request,
 * which bounds the memory of the preallocated outputs. */
#define SINGLE_BATCH 16

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* ---- module sets ---------------------------------------------------- */

void lh_module_set_free(lh_module_set *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->n; i++)
        lh_adapter_free(s->mods[i]);
    free(s->mods);
    free(s);
}

/* Choose which of paths[0..n) to load: all, or pick drawn with the seed.
 * Returns a malloc'd index array [*n_out]. */
static size_t *draw(size_t n, int pick, uint64_t seed, size_t *n_out)
{
    size_t *idx = malloc((n ? n : 1) * sizeof *idx);
    if (!idx)
        return NULL;
    for (size_t i = 0; i < n; i++)
        idx[i] = i;
    size_t k = n;
    if (pick > 0 && (size_t)pick < n) {
        lh_rng rng;
        lh_rng_seed(&rng, seed);
        k = (size_t)pick;
        for (size_t i = 0; i < k; i++) {
            size_t j = i + (size_t)(lh_rng_uniform(&rng) * (double)(n - i));
            if (j >= n)
                j = n - 1;
            size_t t = idx[i];
            idx[i] = idx[j];
            idx[j] = t;
        }
    }
    *n_out = k;
    return idx;
}

static lh_status load_set(char **paths, size_t n, int pick, uint64_t seed, int sort_drawn,
                          lh_module_set **out, lh_error *err)
{
    size_t k;
    size_t *idx = draw(n, pick, seed, &k);
    if (!idx)
        return lh_error_set(err, LH_ERR_NOMEM, "modules: out of memory");
    if (sort_drawn || k < n) {
        /* Sorting indices of a name-sorted list sorts by name. For a list,
         * drawn modules are put back in list order. */
        for (size_t i = 1; i < k; i++)
            for (size_t j = i; j > 0 && idx[j - 1] > idx[j]; j--) {
                size_t t = idx[j];
                idx[j] = idx[j - 1];
                idx[j - 1] = t;
            }
    }
    lh_module_set *s = calloc(1, sizeof *s);
    if (!s || !(s->mods = calloc(k ? k : 1, sizeof *s->mods))) {
        free(s);
        free(idx);
        return lh_error_set(err, LH_ERR_NOMEM, "modules: out of memory");
    }
    s->n_available = n;
    for (size_t i = 0; i < k; i++) {
        lh_status st = lh_adapter_load(paths[idx[i]], &s->mods[s->n], err);
        if (st != LH_OK) {
            free(idx);
            lh_module_set_free(s);
            return st;
        }
        s->n++;
    }
    /* The report maps module name -> weight, so names must be distinct. */
    for (size_t i = 0; i < s->n; i++)
        for (size_t j = i + 1; j < s->n; j++)
            if (s->mods[i]->name && s->mods[j]->name && !strcmp(s->mods[i]->name, s->mods[j]->name)) {
                lh_status st = lh_error_set(err, LH_ERR_ARG, "two modules are named '%s': '%s' and '%s'",
                                            s->mods[i]->name, paths[idx[i]], paths[idx[j]]);
                free(idx);
                lh_module_set_free(s);
                return st;
            }
    free(idx);
    *out = s;
    return LH_OK;
}

lh_status lh_modules_from_dir(const char *dir, int pick, uint64_t seed, lh_module_set **out,
                              lh_error *err)
{
    *out = NULL;
    DIR *d = opendir(dir);
    if (!d)
        return lh_error_errno(err, errno == ENOENT ? LH_ERR_NOT_FOUND : LH_ERR_IO, errno,
                              "cannot open module directory '%s'", dir);
    char **paths = NULL;
    size_t n = 0, cap = 0;
    lh_status st = LH_OK;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        char *p = lh_path_join(dir, e->d_name);
        if (!p) {
            st = lh_error_set(err, LH_ERR_NOMEM, "%s: out of memory", dir);
            break;
        }
        int take = 0;
        if (lh_is_dir(p)) {
            char *cfg = lh_path_join(p, "adapter_config.json");
            take = cfg && lh_path_exists(cfg);
            free(cfg);
        } else if (lh_str_ends_with(e->d_name, ".safetensors")) {
            take = 1;
        }
        if (!take) {
            free(p);
            continue;
        }
        if (n == cap) {
            size_t nc = cap ? cap * 2 : 32;
            char **np = realloc(paths, nc * sizeof *np);
            if (!np) {
                free(p);
                st = lh_error_set(err, LH_ERR_NOMEM, "%s: out of memory", dir);
                break;
            }
            paths = np;
            cap = nc;
        }
        paths[n++] = p;
    }
    closedir(d);
    if (st == LH_OK && n == 0)
        st = lh_error_set(err, LH_ERR_NOT_FOUND,
                          "'%s' holds no modules (PEFT directories or .safetensors files)", dir);
    if (st == LH_OK) {
        qsort(paths, n, sizeof *paths, cmp_str);
        st = load_set(paths, n, pick, seed, 1, out, err);
    }
    for (size_t i = 0; i < n; i++)
        free(paths[i]);
    free(paths);
    return st;
}

lh_status lh_modules_from_list(const char *const *paths, size_t n, int pick, uint64_t seed,
                               lh_module_set **out, lh_error *err)
{
    *out = NULL;
    if (n == 0)
        return lh_error_set(err, LH_ERR_ARG, "the module list is empty");
    return load_set((char **)paths, n, pick, seed, 0, out, err);
}

/* ---- settings fingerprint ------------------------------------------- */

typedef struct kv_list {
    size_t n;
    char *key[24];
    char *val[24];
} kv_list;

static void kv_add(kv_list *l, const char *key, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

static void kv_add(kv_list *l, const char *key, const char *fmt, ...)
{
    if (l->n >= sizeof l->key / sizeof l->key[0])
        return;
    char small[1];
    va_list ap;
    va_start(ap, fmt);
    int len = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    char *v = len >= 0 ? malloc((size_t)len + 1) : NULL;
    if (v) {
        va_start(ap, fmt);
        vsnprintf(v, (size_t)len + 1, fmt, ap);
        va_end(ap);
    }
    l->key[l->n] = strdup(key);
    l->val[l->n] = v;
    l->n++;
}

static void kv_release(kv_list *l)
{
    for (size_t i = 0; i < l->n; i++) {
        free(l->key[i]);
        free(l->val[i]);
    }
    l->n = 0;
}

static int kv_ok(const kv_list *l)
{
    for (size_t i = 0; i < l->n; i++)
        if (!l->key[i] || !l->val[i])
            return 0;
    return 1;
}

static uint64_t fnv1a(uint64_t h, const void *data, size_t n)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

static const char *select_name(lh_select s)
{
    switch (s) {
    case LH_SELECT_BEST_SINGLE: return "best-single";
    case LH_SELECT_UNIFORM: return "uniform";
    default: return "search";
    }
}

/* Everything that decides the trajectory; a checkpoint made under other
 * settings cannot be replayed. */
static lh_status build_settings(const lh_search_opts *o, const lh_adapter *const *mods,
                                size_t n, const lh_examples *ex, kv_list *l, lh_error *err)
{
    memset(l, 0, sizeof *l);
    kv_add(l, "optimizer", "%s", o->optimizer);
    kv_add(l, "method", "%s", lh_merge_method_name(o->merge.method));
    kv_add(l, "merge", "rank=%d density=%a sign=%d seed=%llu clamp=%a", o->merge.rank,
           o->merge.density, (int)o->merge.majority_sign,
           (unsigned long long)o->merge.seed, o->merge.clamp_quantile);
    kv_add(l, "budget", "%d", o->budget);
    kv_add(l, "bound", "%a", o->bound);
    kv_add(l, "l1", "%a", o->l1);
    kv_add(l, "seed", "%llu", (unsigned long long)o->seed);
    kv_add(l, "nan_as_worst", "%d", o->nan_as_worst ? 1 : 0);
    kv_add(l, "preselect", "%d", o->preselect);
    kv_add(l, "select", "%s", select_name(o->select));
    kv_add(l, "start", "%s", o->start_best_single ? "best-single" : "zero");
    lh_sb sb;
    lh_sb_init(&sb);
    for (size_t i = 0; i < n; i++) {
        if (i)
            lh_sb_append(&sb, ",");
        lh_sb_appendf(&sb, "%s:%llu", mods[i]->name ? mods[i]->name : "?",
                      (unsigned long long)mods[i]->file_size);
    }
    kv_add(l, "modules", "%s", sb.buf ? sb.buf : "");
    lh_sb_release(&sb);
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < ex->n; i++) {
        h = fnv1a(h, ex->input[i], strlen(ex->input[i]) + 1);
        h = fnv1a(h, ex->output[i], strlen(ex->output[i]) + 1);
    }
    kv_add(l, "examples", "%zu examples, fnv1a64 %016llx", ex->n, (unsigned long long)h);
    kv_add(l, "backend", "%s", o->fingerprint_extra ? o->fingerprint_extra : "");
    if (!kv_ok(l)) {
        kv_release(l);
        return lh_error_set(err, LH_ERR_NOMEM, "search: out of memory");
    }
    return LH_OK;
}

/* A C99 hex float (or "nan"/"inf") written by append_hex; 0 if malformed. */
static int parse_hex(const char *s, double *out)
{
    char *end;
    if (!*s)
        return 0;
    *out = strtod(s, &end);
    return *end == '\0';
}

/* ---- the search context --------------------------------------------- */

typedef struct record {
    double loss;
    double objective;
    double ms;
} record;

typedef struct search {
    const lh_search_opts *o;
    const lh_examples *ex;
    lh_backend *b;
    lh_search_result *res;
    double t0;

    /* the modules being weighted (all, or the preselected ones) */
    const lh_adapter **sub;     /* [nk] */
    size_t nk;
    lh_compose_plan *plan;
    lh_adapter **outs;          /* [n_outs] preallocated outputs of plan's shapes */
    int n_outs;
    const lh_adapter **cands;   /* [n_outs] pointers handed to the backend */
    double *loss_buf;           /* [n_outs] */
    int *slot_of;               /* [n_outs] batch position -> output slot, -1 = replayed */

    /* evaluations of this run */
    size_t n_rec, cap_rec;
    double *rec_w;              /* [cap_rec, nk] */
    record *rec;                /* [cap_rec] */
    int best;                   /* index into rec, -1 none */
    int fresh;                  /* evaluations sent to the backend in this session */
    double fresh_s;             /* seconds they took */

    /* the checkpoint being replayed */
    size_t n_ck;
    size_t ck_wlen;             /* weights per recorded point (must be nk) */
    double *ck_w;               /* [n_ck, n] rows of ck_wlen used */
    double *ck_loss;            /* [n_ck] */
    double *ck_ms;              /* [n_ck] */
    size_t n_ck_single;
    double *ck_single;          /* [n_ck_single] single-module losses */

    /* outputs written as we go */
    kv_list settings;
    lh_sb ck_body;              /* serialized evaluation records, comma-joined */
    FILE *trace;
    char *trace_tmp;
} search;

static void report_progress(search *s, const char *phase, int done, int total, double loss,
                            double best, int replayed)
{
    if (!s->o->progress)
        return;
    lh_search_progress p;
    p.phase = phase;
    p.evaluation = done;
    p.total = total;
    p.loss = loss;
    p.best_objective = best;
    p.elapsed_s = lh_monotonic_seconds() - s->t0;
    p.eta_s = s->fresh > 0 ? s->fresh_s / s->fresh * (total - done) : -1;
    p.replayed = replayed;
    s->o->progress(s->o->progress_ud, &p);
}

static void append_hex(lh_sb *sb, double v)
{
    char buf[64];
    snprintf(buf, sizeof buf, "%a", v);
    lh_sb_append_json_string(sb, buf);
}

static lh_status write_checkpoint(search *s, lh_error *err)
{
    if (!s->o->checkpoint_path)
        return LH_OK;
    lh_sb sb;
    lh_sb_init(&sb);
    lh_sb_appendf(&sb, "{\n\"lorahub_checkpoint\": %d,\n\"settings\": {", CKPT_VERSION);
    for (size_t i = 0; i < s->settings.n; i++) {
        lh_sb_append(&sb, i ? ",\n  " : "\n  ");
        lh_sb_append_json_string(&sb, s->settings.key[i]);
        lh_sb_append(&sb, ": ");
        lh_sb_append_json_string(&sb, s->settings.val[i]);
    }
    lh_sb_append(&sb, "\n},\n\"single\": [");
    if (s->res->single_loss)
        for (size_t i = 0; i < s->res->n; i++) {
            if (i)
                lh_sb_append(&sb, ", ");
            append_hex(&sb, s->res->single_loss[i]);
        }
    lh_sb_append(&sb, "],\n\"evaluations\": [\n");
    if (s->ck_body.buf)
        lh_sb_append(&sb, s->ck_body.buf);
    lh_sb_append(&sb, "\n]\n}\n");
    lh_status st;
    if (lh_sb_failed(&sb))
        st = lh_error_set(err, LH_ERR_NOMEM, "%s: out of memory", s->o->checkpoint_path);
    else
        st = lh_write_file_atomic(s->o->checkpoint_path, sb.buf, sb.len, err);
    lh_sb_release(&sb);
    return st;
}

static lh_status load_checkpoint(search *s, size_t n_all, lh_error *err)
{
    const char *path = s->o->checkpoint_path;
    lh_json *j = NULL;
    lh_status st = lh_json_parse_file(path, &j, err);
    if (st != LH_OK)
        return st;
    long long ver;
    const lh_json *set = lh_json_get(j, "settings");
    const lh_json *single = lh_json_get(j, "single");
    const lh_json *evs = lh_json_get(j, "evaluations");
    if (!lh_json_as_int64(lh_json_get(j, "lorahub_checkpoint"), &ver) || ver != CKPT_VERSION ||
        !set || set->type != LH_JSON_OBJECT || !evs || evs->type != LH_JSON_ARRAY ||
        !single || single->type != LH_JSON_ARRAY) {
        lh_json_free(j);
        return lh_error_set(err, LH_ERR_FORMAT, "%s: not a lorahub checkpoint (version %d)", path,
                            CKPT_VERSION);
    }
    for (size_t i = 0; i < s->settings.n; i++) {
        const char *v;
        if (!lh_json_as_string(lh_json_get(set, s->settings.key[i]), &v))
            v = "(missing)";
        if (strcmp(v, s->settings.val[i])) {
            st = lh_error_set(err, LH_ERR_ARG,
                              "%s: cannot resume: it was made with %s '%s', this run has '%s'",
                              path, s->settings.key[i], v, s->settings.val[i]);
            lh_json_free(j);
            return st;
        }
    }
    if (single->len && single->len != n_all) {
        lh_json_free(j);
        return lh_error_set(err, LH_ERR_FORMAT, "%s: 'single' has %zu losses for %zu modules",
                            path, single->len, n_all);
    }
    s->ck_single = malloc((single->len ? single->len : 1) * sizeof *s->ck_single);
    s->n_ck = evs->len;
    s->ck_loss = malloc((s->n_ck ? s->n_ck : 1) * sizeof(double));
    s->ck_ms = malloc((s->n_ck ? s->n_ck : 1) * sizeof(double));
    /* nk is known only after preselection: store raw rows of n_all max. */
    s->ck_w = malloc((s->n_ck ? s->n_ck : 1) * (n_all ? n_all : 1) * sizeof(double));
    if (!s->ck_single || !s->ck_loss || !s->ck_ms || !s->ck_w) {
        lh_json_free(j);
        return lh_error_set(err, LH_ERR_NOMEM, "%s: out of memory", path);
    }
    for (size_t i = 0; i < single->len; i++) {
        const char *hx;
        if (!lh_json_as_string(single->items[i], &hx) || !parse_hex(hx, &s->ck_single[i])) {
            lh_json_free(j);
            return lh_error_set(err, LH_ERR_FORMAT, "%s: single[%zu] is not a hex float", path, i);
        }
    }
    s->n_ck_single = single->len;
    for (size_t e = 0; e < s->n_ck; e++) {
        const lh_json *r = evs->items[e];
        const lh_json *wx = lh_json_get(r, "wx");
        const char *lx;
        double ms = 0;
        if (e == 0 && wx && wx->type == LH_JSON_ARRAY)
            s->ck_wlen = wx->len;
        if (!wx || wx->type != LH_JSON_ARRAY || wx->len != s->ck_wlen || wx->len > n_all || wx->len == 0 ||
            !lh_json_as_string(lh_json_get(r, "lossx"), &lx)) {
            lh_json_free(j);
            return lh_error_set(err, LH_ERR_FORMAT, "%s: evaluation %zu is malformed", path, e + 1);
        }
        for (size_t i = 0; i < wx->len; i++) {
            const char *hx;
            if (!lh_json_as_string(wx->items[i], &hx) || !parse_hex(hx, &s->ck_w[e * n_all + i])) {
                lh_json_free(j);
                return lh_error_set(err, LH_ERR_FORMAT, "%s: evaluation %zu: wx[%zu] is not a hex float",
                                    path, e + 1, i);
            }
        }
        if (!parse_hex(lx, &s->ck_loss[e])) {
            lh_json_free(j);
            return lh_error_set(err, LH_ERR_FORMAT, "%s: evaluation %zu: lossx is not a hex float",
                                path, e + 1);
        }
        lh_json_as_number(lh_json_get(r, "ms"), &ms);
        s->ck_ms[e] = ms;
    }
    lh_json_free(j);
    return LH_OK;
}

/* Room for k outputs of the plan's shapes: allocates only when a batch is
 * larger than any before (CMA-ES: once; NLopt: once, k = 1). */
static lh_status ensure_outputs(search *s, int k, lh_error *err)
{
    if (k <= s->n_outs)
        return LH_OK;
    lh_adapter **outs = realloc(s->outs, (size_t)k * sizeof *outs);
    if (!outs)
        return lh_error_set(err, LH_ERR_NOMEM, "search: out of memory");
    s->outs = outs;
    for (int i = s->n_outs; i < k; i++)
        outs[i] = NULL;
    const lh_adapter **c = realloc(s->cands, (size_t)k * sizeof *c);
    double *lb = c ? realloc(s->loss_buf, (size_t)k * sizeof *lb) : NULL;
    if (c)
        s->cands = c;
    if (lb)
        s->loss_buf = lb;
    int *so = lb ? realloc(s->slot_of, (size_t)k * sizeof *so) : NULL;
    if (so)
        s->slot_of = so;
    if (!c || !lb || !so)
        return lh_error_set(err, LH_ERR_NOMEM, "search: out of memory");
    for (int i = s->n_outs; i < k; i++) {
        lh_status st = lh_compose_alloc_output(s->plan, &s->outs[i], err);
        if (st != LH_OK)
            return st;
        s->n_outs = i + 1;
    }
    return LH_OK;
}

static lh_status score(search *s, int m, lh_error *err)
{
    double t = lh_monotonic_seconds();
    lh_status st = lh_backend_score(s->b, (const lh_adapter *const *)s->cands, m, s->ex,
                                    s->loss_buf, err);
    double dt = lh_monotonic_seconds() - t;
    s->res->backend_seconds += dt;
    s->res->backend_calls++;
    if (st == LH_OK)
        for (int i = 0; i < m; i++)
            if (!isfinite(s->loss_buf[i])) {
                lh_backend_info info; /* names the model or command */
                lh_backend_describe(s->b, &info);
                st = lh_error_set(err, LH_ERR_NUMERIC, "%s: loss of candidate %d of %d is %s",
                                  info.description, i + 1, m,
                                  isnan(s->loss_buf[i]) ? "NaN" : "infinite");
                break;
            }
    if (st == LH_ERR_NUMERIC && s->o->nan_as_worst)
        st = LH_OK; /* the caller maps each non-finite loss to LH_SEARCH_WORST */
    else if (st == LH_ERR_NUMERIC) {
        size_t len = strlen(err ? err->msg : "");
        if (err && len + 64 < sizeof err->msg)
            snprintf(err->msg + len, sizeof err->msg - len,
                     " (nan-as-worst would count it as the worst score)");
    }
    if (st == LH_OK) {
        s->fresh += m;
        s->fresh_s += dt;
    }
    return st;
}

static double mean_abs(const double *w, size_t n)
{
    double a = 0;
    for (size_t i = 0; i < n; i++)
        a += fabs(w[i]);
    return n ? a / (double)n : 0;
}

static void trace_line(search *s, size_t e)
{
    if (!s->trace)
        return;
    const record *r = &s->rec[e];
    fprintf(s->trace, "%zu\t%.17g\t%.17g", e + 1, r->loss, r->objective);
    for (size_t i = 0; i < s->nk; i++)
        fprintf(s->trace, "\t%.17g", s->rec_w[e * s->nk + i]);
    fprintf(s->trace, "\t%.3f\n", r->ms);
    fflush(s->trace);
}

static void ck_append(search *s, size_t e)
{
    const record *r = &s->rec[e];
    const double *w = s->rec_w + e * s->nk;
    lh_sb *sb = &s->ck_body;
    if (e)
        lh_sb_append(sb, ",\n");
    lh_sb_append(sb, "{\"w\": [");
    for (size_t i = 0; i < s->nk; i++) {
        if (i)
            lh_sb_append(sb, ", ");
        lh_sb_append_json_number(sb, w[i]);
    }
    lh_sb_append(sb, "], \"loss\": ");
    lh_sb_append_json_number(sb, r->loss);
    lh_sb_append(sb, ", \"ms\": ");
    lh_sb_append_json_number(sb, r->ms);
    lh_sb_append(sb, ",\n \"wx\": [");
    for (size_t i = 0; i < s->nk; i++) {
        if (i)
            lh_sb_append(sb, ", ");
        append_hex(sb, w[i]);
    }
    lh_sb_append(sb, "], \"lossx\": ");
    append_hex(sb, r->loss);
    lh_sb_append(sb, "}");
}

/* Evaluate k points x [k, nk]: replay what the checkpoint holds, compose
 * and score the rest in one backend call, record everything. */
static lh_status evaluate(search *s, const double *x, int k, double *f, int total, lh_error *err)
{
    if (s->o->interrupt && *s->o->interrupt)
        return lh_error_set(err, LH_ERR_INTERRUPTED, "interrupted");
    size_t nk = s->nk;
    if (s->n_rec + (size_t)k > s->cap_rec) {
        size_t nc = s->cap_rec ? s->cap_rec * 2 : 64;
        while (nc < s->n_rec + (size_t)k)
            nc *= 2;
        double *nw = realloc(s->rec_w, nc * nk * sizeof *nw);
        if (nw)
            s->rec_w = nw;
        record *nr = nw ? realloc(s->rec, nc * sizeof *nr) : NULL;
        if (!nr)
            return lh_error_set(err, LH_ERR_NOMEM, "search: out of memory");
        s->rec = nr;
        s->cap_rec = nc;
    }
    lh_status st = ensure_outputs(s, k, err);
    if (st != LH_OK)
        return st;
    int m = 0;
    for (int j = 0; j < k; j++) {
        size_t e = s->n_rec + (size_t)j;
        const double *xj = x + (size_t)j * nk;
        if (e < s->n_ck) {
            if (s->ck_wlen != nk || memcmp(xj, s->ck_w + e * s->res->n, nk * sizeof *xj) != 0)
                return lh_error_set(err, LH_ERR_FORMAT,
                                    "%s: cannot resume: evaluation %zu of the replayed run is at "
                                    "another point than the recorded one (was the optimizer "
                                    "library changed?)",
                                    s->o->checkpoint_path, e + 1);
            s->slot_of[j] = -1;
            continue;
        }
        st = lh_compose_into(s->plan, xj, s->outs[m], err);
        if (st != LH_OK)
            return st;
        s->cands[m] = s->outs[m];
        s->slot_of[j] = m++;
    }
    double t = lh_monotonic_seconds();
    if (m > 0) {
        st = score(s, m, err);
        if (st != LH_OK)
            return st;
    }
    double ms_each = m > 0 ? (lh_monotonic_seconds() - t) * 1000.0 / m : 0;
    for (int j = 0; j < k; j++) {
        size_t e = s->n_rec;
        const double *xj = x + (size_t)j * nk;
        record *r = &s->rec[e];
        memcpy(s->rec_w + e * nk, xj, nk * sizeof *xj);
        int replayed = s->slot_of[j] < 0;
        r->loss = replayed ? s->ck_loss[e] : s->loss_buf[s->slot_of[j]];
        r->ms = replayed ? s->ck_ms[e] : ms_each;
        if (replayed)
            s->res->replayed++;
        if (isfinite(r->loss))
            r->objective = r->loss + s->o->l1 * mean_abs(xj, nk);
        else if (s->o->nan_as_worst)
            r->objective = LH_SEARCH_WORST;
        else
            return lh_error_set(err, LH_ERR_NUMERIC,
                                "%s: evaluation %zu has a NaN loss; resume with nan-as-worst",
                                s->o->checkpoint_path ? s->o->checkpoint_path : "checkpoint", e + 1);
        f[j] = r->objective;
        if (s->best < 0 || r->objective < s->rec[s->best].objective)
            s->best = (int)e;
        s->n_rec++;
        trace_line(s, e);
        ck_append(s, e);
        report_progress(s, "search", (int)s->n_rec, total, r->loss, s->rec[s->best].objective,
                        replayed);
    }
    if (lh_sb_failed(&s->ck_body))
        return lh_error_set(err, LH_ERR_NOMEM, "search: out of memory");
    if (m > 0 || s->n_rec >= s->n_ck)
        return write_checkpoint(s, err);
    return LH_OK;
}

static lh_status objective_cb(void *ctx, const double *x, int k, double *f, lh_error *err)
{
    search *s = ctx;
    return evaluate(s, x, k, f, s->o->budget, err);
}

/* Score every module alone at weight 1 (with the merge method, so cat and
 * lorahub see what they will compose), in batches. */
static lh_status single_losses(search *s, const lh_adapter *const *mods, size_t n, lh_error *err)
{
    lh_search_result *res = s->res;
    res->single_loss = malloc(n * sizeof *res->single_loss);
    if (!res->single_loss)
        return lh_error_set(err, LH_ERR_NOMEM, "search: out of memory");
    if (s->n_ck_single == n) {
        memcpy(res->single_loss, s->ck_single, n * sizeof *res->single_loss);
        report_progress(s, "preselect", (int)n, (int)n, NAN, NAN, 1);
        return LH_OK;
    }
    lh_merge_opts mo = s->o->merge;
    lh_status st = LH_OK;
    for (size_t i0 = 0; i0 < n && st == LH_OK; i0 += SINGLE_BATCH) {
        if (s->o->interrupt && *s->o->interrupt)
            return lh_error_set(err, LH_ERR_INTERRUPTED, "interrupted");
        size_t m = n - i0 < SINGLE_BATCH ? n - i0 : SINGLE_BATCH;
        lh_adapter *outs[SINGLE_BATCH] = {0};
        const lh_adapter *cands[SINGLE_BATCH];
        double one = 1.0;
        for (size_t j = 0; j < m && st == LH_OK; j++) {
            const lh_adapter *mod = mods[i0 + j];
            st = lh_compose(&mod, 1, &one, &mo, &outs[j], err);
            cands[j] = outs[j];
        }
        if (st == LH_OK) {
            double t = lh_monotonic_seconds();
            st = lh_backend_score(s->b, cands, (int)m, s->ex, res->single_loss + i0, err);
            double dt = lh_monotonic_seconds() - t;
            res->backend_seconds += dt;
            res->backend_calls++;
            if (st == LH_ERR_NUMERIC && s->o->nan_as_worst)
                st = LH_OK;
            if (st == LH_OK) {
                s->fresh += (int)m;
                s->fresh_s += dt;
                res->preselect_evaluations += (int)m;
                for (size_t j = 0; j < m && st == LH_OK; j++)
                    if (!isfinite(res->single_loss[i0 + j]) && !s->o->nan_as_worst) {
                        lh_backend_info info;
                        lh_backend_describe(s->b, &info);
                        st = lh_error_set(err, LH_ERR_NUMERIC, "%s: loss of module '%s' alone is %s",
                                          info.description, mods[i0 + j]->name,
                                          isnan(res->single_loss[i0 + j]) ? "NaN" : "infinite");
                    }
            }
        }
        for (size_t j = 0; j < m; j++)
            lh_adapter_free(outs[j]);
        if (st == LH_OK) {
            double best = HUGE_VAL;
            for (size_t j = 0; j < i0 + m; j++)
                if (isfinite(res->single_loss[j]) && res->single_loss[j] < best)
                    best = res->single_loss[j];
            report_progress(s, "preselect", (int)(i0 + m), (int)n, res->single_loss[i0 + m - 1],
                            best, 0);
        }
    }
    if (st != LH_OK) {
        free(res->single_loss);
        res->single_loss = NULL;
    }
    return st;
}

static lh_status open_trace(search *s, lh_error *err)
{
    const char *path = s->o->trace_path;
    if (!path)
        return LH_OK;
    size_t len = strlen(path);
    s->trace_tmp = malloc(len + 16);
    if (!s->trace_tmp)
        return lh_error_set(err, LH_ERR_NOMEM, "%s: out of memory", path);
    snprintf(s->trace_tmp, len + 16, "%s.tmp.XXXXXX", path);
    int fd = mkstemp(s->trace_tmp);
    if (fd < 0) {
        lh_status st = lh_error_errno(err, LH_ERR_IO, errno, "cannot create '%s'", s->trace_tmp);
        free(s->trace_tmp);
        s->trace_tmp = NULL;
        return st;
    }
    fchmod(fd, 0644);
    s->trace = fdopen(fd, "w");
    if (!s->trace) {
        close(fd);
        unlink(s->trace_tmp);
        return lh_error_errno(err, LH_ERR_IO, errno, "cannot open '%s'", s->trace_tmp);
    }
    fprintf(s->trace, "evaluation\tloss\tobjective");
    for (size_t i = 0; i < s->nk; i++)
        fprintf(s->trace, "\t%s", s->sub[i]->name ? s->sub[i]->name : "?");
    fprintf(s->trace, "\tmilliseconds\n");
    return LH_OK;
}

/* The trace is a record of what ran, so it is kept after an error too. */
static lh_status close_trace(search *s, lh_error *err)
{
    if (!s->trace)
        return LH_OK;
    int bad = fflush(s->trace) != 0 || ferror(s->trace);
    bad |= fsync(fileno(s->trace)) != 0;
    bad |= fclose(s->trace) != 0;
    s->trace = NULL;
    lh_status st = LH_OK;
    if (bad) {
        st = lh_error_errno(err, LH_ERR_IO, errno, "cannot write '%s'", s->o->trace_path);
        unlink(s->trace_tmp);
    } else if (rename(s->trace_tmp, s->o->trace_path) != 0) {
        st = lh_error_errno(err, LH_ERR_IO, errno, "cannot rename '%s' to '%s'", s->trace_tmp,
                            s->o->trace_path);
        unlink(s->trace_tmp);
    }
    free(s->trace_tmp);
    s->trace_tmp = NULL;
    return st;
}

static void search_release(search *s)
{
    if (s->trace) {
        fclose(s->trace);
        unlink(s->trace_tmp);
    }
    free(s->trace_tmp);
    for (int i = 0; i < s->n_outs; i++)
        lh_adapter_free(s->outs[i]);
    free(s->outs);
    free(s->cands);
    free(s->loss_buf);
    free(s->slot_of);
    lh_compose_plan_free(s->plan);
    free(s->sub);
    free(s->rec_w);
    free(s->rec);
    free(s->ck_w);
    free(s->ck_loss);
    free(s->ck_ms);
    free(s->ck_single);
    kv_release(&s->settings);
    lh_sb_release(&s->ck_body);
}

void lh_search_opts_default(lh_search_opts *o)
{
    memset(o, 0, sizeof *o);
    lh_merge_opts_default(&o->merge);
    o->optimizer = "cobyla";
    o->budget = 40;
    o->bound = 1.5;
    o->l1 = 0.05;
    o->seed = 42;
}

void lh_search_result_release(lh_search_result *res)
{
    if (!res)
        return;
    free(res->weights);
    free(res->single_loss);
    free(res->kept);
    lh_adapter_free(res->merged);
    memset(res, 0, sizeof *res);
}

/* Indices of the k lowest single losses (NaN last, ties by index), in index order. */
static void keep_lowest(const double *loss, size_t n, size_t k, size_t *kept)
{
    char *taken = calloc(n, 1);
    for (size_t c = 0; c < k; c++) {
        size_t bi = n;
        for (size_t i = 0; i < n; i++) {
            if (taken && taken[i])
                continue;
            double li = isfinite(loss[i]) ? loss[i] : HUGE_VAL;
            double lb = bi < n ? (isfinite(loss[bi]) ? loss[bi] : HUGE_VAL) : 0;
            if (bi == n || li < lb)
                bi = i;
        }
        if (bi == n)
            break;
        if (taken)
            taken[bi] = 1;
        kept[c] = bi;
    }
    free(taken);
    for (size_t i = 1; i < k; i++)
        for (size_t j = i; j > 0 && kept[j - 1] > kept[j]; j--) {
            size_t t = kept[j];
            kept[j] = kept[j - 1];
            kept[j - 1] = t;
        }
}

static lh_status check_opts(const lh_search_opts *o, size_t n, lh_error *err)
{
    if (n == 0)
        return lh_error_set(err, LH_ERR_ARG, "search: no modules");
    if (!o->optimizer || !lh_optimizer_exists(o->optimizer))
        return lh_error_set(err, LH_ERR_ARG, "unknown optimizer '%s'",
                            o->optimizer ? o->optimizer : "(null)");
    if (o->budget < 1)
        return lh_error_set(err, LH_ERR_ARG, "budget must be at least 1, not %d", o->budget);
    if (!(o->bound > 0) || !isfinite(o->bound))
        return lh_error_set(err, LH_ERR_ARG, "bound must be a positive number, not %g", o->bound);
    if (!(o->l1 >= 0) || !isfinite(o->l1))
        return lh_error_set(err, LH_ERR_ARG, "l1 must be a non-negative number, not %g", o->l1);
    if (o->preselect < 0)
        return lh_error_set(err, LH_ERR_ARG, "preselect must be non-negative");
    if (o->resume && !o->checkpoint_path)
        return lh_error_set(err, LH_ERR_ARG, "resume needs a checkpoint file");
    if (o->resume && !lh_path_exists(o->checkpoint_path))
        return lh_error_set(err, LH_ERR_NOT_FOUND, "cannot resume: no checkpoint '%s'",
                            o->checkpoint_path);
    if (!o->resume && !o->force) {
        if (o->checkpoint_path && lh_path_exists(o->checkpoint_path))
            return lh_error_set(err, LH_ERR_EXISTS,
                                "checkpoint '%s' exists (resume it, or force a new run)",
                                o->checkpoint_path);
        if (o->trace_path && lh_path_exists(o->trace_path))
            return lh_error_set(err, LH_ERR_EXISTS, "trace '%s' exists (force to replace it)",
                                o->trace_path);
    }
    return LH_OK;
}

lh_status lh_search_run(const lh_search_opts *o, const lh_adapter *const *mods, size_t n,
                        const lh_examples *ex, lh_backend *b, lh_search_result *res,
                        lh_error *err)
{
    memset(res, 0, sizeof *res);
    lh_status st = check_opts(o, n, err);
    if (st != LH_OK)
        return st;
    search s;
    memset(&s, 0, sizeof s);
    s.o = o;
    s.ex = ex;
    s.b = b;
    s.res = res;
    s.best = -1;
    s.t0 = lh_monotonic_seconds();
    lh_sb_init(&s.ck_body);
    res->n = n;
    res->best_loss = res->best_objective = res->rescored_loss = NAN;
    res->weights = calloc(n, sizeof *res->weights);
    res->kept = malloc(n * sizeof *res->kept);
    if (!res->weights || !res->kept) {
        st = lh_error_set(err, LH_ERR_NOMEM, "search: out of memory");
        goto fail;
    }
    st = build_settings(o, mods, n, ex, &s.settings, err);
    if (st == LH_OK && o->resume)
        st = load_checkpoint(&s, n, err);
    if (st != LH_OK)
        goto fail;

    /* Which modules the weights range over. */
    res->n_kept = n;
    for (size_t i = 0; i < n; i++)
        res->kept[i] = i;
    lh_error run_err;
    lh_error_clear(&run_err);
    lh_status run_st = LH_OK;
    if (o->preselect > 0 || o->select == LH_SELECT_BEST_SINGLE) {
        /* Modules that cannot be composed together fail here, before any
         * backend time is spent on them one by one. */
        lh_compose_plan *all = NULL;
        st = lh_compose_plan_new(mods, n, &o->merge, &all, err);
        lh_compose_plan_free(all);
        if (st != LH_OK)
            goto fail;
        run_st = single_losses(&s, mods, n, &run_err);
        if (run_st == LH_OK) {
            size_t k = o->select == LH_SELECT_BEST_SINGLE ? 1
                       : (size_t)o->preselect < n ? (size_t)o->preselect : n;
            keep_lowest(res->single_loss, n, k, res->kept);
            res->n_kept = k;
        } else if (run_st != LH_ERR_INTERRUPTED) {
            *err = run_err;
            st = run_st;
            goto fail;
        }
    }
    s.nk = res->n_kept;
    s.sub = malloc(s.nk * sizeof *s.sub);
    double *w = calloc(s.nk, sizeof *w); /* [nk] the start point, then the chosen one */
    if (!s.sub || !w) {
        free(w);
        st = lh_error_set(err, LH_ERR_NOMEM, "search: out of memory");
        goto fail;
    }
    for (size_t i = 0; i < s.nk; i++)
        s.sub[i] = mods[res->kept[i]];
    st = lh_compose_plan_new(s.sub, s.nk, &o->merge, &s.plan, err);
    if (st == LH_OK)
        st = open_trace(&s, err);
    /* Record the single-module losses at once; a resumed run rewrites the
     * checkpoint only once it goes past what the file holds, so a failed
     * or interrupted replay never loses recorded evaluations. */
    if (st == LH_OK && run_st == LH_OK && !o->resume)
        st = write_checkpoint(&s, err);
    if (st != LH_OK) {
        free(w);
        goto fail;
    }

    if (run_st != LH_OK) {
        snprintf(res->stop_reason, sizeof res->stop_reason, "interrupted");
    } else if (o->select == LH_SELECT_BEST_SINGLE) {
        w[0] = 1.0;
        res->best_loss = res->single_loss[res->kept[0]];
        res->best_objective = res->best_loss + o->l1 * 1.0;
        snprintf(res->stop_reason, sizeof res->stop_reason, "selected");
    } else if (o->select == LH_SELECT_UNIFORM) {
        for (size_t i = 0; i < s.nk; i++)
            w[i] = 1.0 / (double)s.nk;
        double f;
        run_st = evaluate(&s, w, 1, &f, 1, &run_err);
        snprintf(res->stop_reason, sizeof res->stop_reason, "%s",
                 run_st == LH_OK ? "selected" : run_st == LH_ERR_INTERRUPTED ? "interrupted" : "error");
    } else {
        lh_optim_opts oo;
        memset(&oo, 0, sizeof oo);
        oo.n = (int)s.nk;
        /* zeros: the base model, as in the reference; or the best single
         * module, so that the search refines what retrieval already found */
        if (o->start_best_single && res->single_loss && s.nk > 0) {
            size_t bj = 0;
            for (size_t j = 1; j < s.nk; j++)
                if (res->single_loss[res->kept[j]] < res->single_loss[res->kept[bj]])
                    bj = j;
            w[bj] = 1.0;
        }
        oo.x0 = w;
        oo.lower = -o->bound;
        oo.upper = o->bound;
        oo.step = 0;
        oo.budget = o->budget;
        oo.seed = o->seed;
        double *xb = calloc(s.nk, sizeof *xb);
        lh_optim_result orr;
        memset(&orr, 0, sizeof orr);
        if (!xb) {
            run_st = lh_error_set(&run_err, LH_ERR_NOMEM, "search: out of memory");
        } else {
            run_st = lh_optimize(o->optimizer, &oo, objective_cb, &s, xb, &orr, &run_err);
            free(xb);
        }
        if (run_st == LH_OK)
            snprintf(res->stop_reason, sizeof res->stop_reason, "%s",
                     orr.stop_reason[0] ? orr.stop_reason : "converged");
        else if (run_st == LH_ERR_INTERRUPTED)
            snprintf(res->stop_reason, sizeof res->stop_reason, "interrupted");
    }
    res->evaluations = (int)s.n_rec;
    if (s.best >= 0) {
        memcpy(w, s.rec_w + (size_t)s.best * s.nk, s.nk * sizeof *w);
        res->best_loss = s.rec[s.best].loss;
        res->best_objective = s.rec[s.best].objective;
    }
    lh_status tst = close_trace(&s, run_st == LH_OK ? err : NULL);
    if (run_st != LH_OK && run_st != LH_ERR_INTERRUPTED) {
        *err = run_err;
        free(w);
        st = run_st;
        goto fail;
    }
    if (tst != LH_OK) {
        free(w);
        st = tst;
        goto fail;
    }
    for (size_t i = 0; i < s.nk; i++)
        res->weights[res->kept[i]] = w[i];

    /* The chosen point once more: a noisy or stateful backend shows here. */
    st = ensure_outputs(&s, 1, err);
    if (st == LH_OK)
        st = lh_compose_into(s.plan, w, s.outs[0], err);
    if (st == LH_OK && run_st == LH_OK) {
        s.cands[0] = s.outs[0];
        report_progress(&s, "rescore", 0, 1, NAN, res->best_objective, 0);
        st = score(&s, 1, err);
        if (st == LH_OK)
            res->rescored_loss = s.loss_buf[0];
        else if (st == LH_ERR_INTERRUPTED) {
            run_st = st;
            snprintf(res->stop_reason, sizeof res->stop_reason, "interrupted");
            st = LH_OK;
        }
    }
    if (st == LH_OK) {
        res->merged = s.outs[0]; /* keep the composed output: it is the result */
        s.outs[0] = NULL;
        if (res->merged && !res->merged->name)
            res->merged->name = strdup("merged");
    }
    free(w);
    if (st != LH_OK)
        goto fail;
    res->wall_seconds = lh_monotonic_seconds() - s.t0;
    search_release(&s);
    if (run_st == LH_ERR_INTERRUPTED) {
        lh_error_set(err, LH_ERR_INTERRUPTED, "interrupted after %d evaluations", res->evaluations);
        return LH_ERR_INTERRUPTED;
    }
    return LH_OK;

fail:
    search_release(&s);
    lh_search_result_release(res);
    return st;
}

/* ---- the report ----------------------------------------------------- */

/* A tiny emitter for the two report formats. YAML uses JSON-quoted keys and
 * scalars (valid YAML) and block mappings for readability. */
typedef struct emit {
    lh_sb *sb;
    int yaml;
    int depth;       /* 0 = top-level mapping, 1 = inside a nested mapping */
    int count[2];    /* entries written at each depth */
} emit;

static void em_key(emit *e, const char *key)
{
    int d = e->depth;
    if (e->yaml) {
        lh_sb_append(e->sb, d ? "\n  " : (e->count[0] ? "\n" : ""));
        if (d)
            lh_sb_append_json_string(e->sb, key);
        else
            lh_sb_append(e->sb, key);
        lh_sb_append(e->sb, ": ");
    } else {
        lh_sb_append(e->sb, e->count[d] ? ",\n" : "\n");
        lh_sb_append(e->sb, d ? "    " : "  ");
        lh_sb_append_json_string(e->sb, key);
        lh_sb_append(e->sb, ": ");
    }
    e->count[d]++;
}

static void em_num(emit *e, const char *key, double v)
{
    em_key(e, key);
    lh_sb_append_json_number(e->sb, v); /* NaN/Inf become null */
}

static void em_int(emit *e, const char *key, long long v)
{
    em_key(e, key);
    lh_sb_appendf(e->sb, "%lld", v);
}

static void em_str(emit *e, const char *key, const char *v)
{
    em_key(e, key);
    if (v)
        lh_sb_append_json_string(e->sb, v);
    else
        lh_sb_append(e->sb, "null");
}

static void em_map_begin(emit *e, const char *key)
{
    em_key(e, key);
    if (!e->yaml)
        lh_sb_append(e->sb, "{");
    else if (!lh_sb_failed(e->sb) && e->sb->len) /* no space after "key:" before a block */
        e->sb->buf[--e->sb->len] = '\0';
    e->depth = 1;
    e->count[1] = 0;
}

static void em_map_end(emit *e)
{
    if (e->yaml) {
        if (!e->count[1])
            lh_sb_append(e->sb, " {}");
    } else {
        lh_sb_append(e->sb, e->count[1] ? "\n  }" : "}");
    }
    e->depth = 0;
}

lh_status lh_search_report_text(int yaml, const lh_search_opts *o,
                                const lh_adapter *const *mods, size_t n,
                                const lh_search_result *res, const char *const *extra_kv,
                                char **out, lh_error *err)
{
    *out = NULL;
    lh_sb sb;
    lh_sb_init(&sb);
    emit e = {&sb, yaml, 0, {0, 0}};
    if (!e.yaml)
        lh_sb_append(&sb, "{");
    em_map_begin(&e, "weights");
    char *in_kept = calloc(n ? n : 1, 1);
    for (size_t i = 0; i < res->n_kept && in_kept; i++)
        in_kept[res->kept[i]] = 1;
    for (size_t i = 0; i < n; i++)
        if (in_kept && in_kept[i])
            em_num(&e, mods[i]->name ? mods[i]->name : "?", res->weights[i]);
    em_map_end(&e);
    em_num(&e, "best_loss", res->best_loss);
    em_num(&e, "best_objective", res->best_objective);
    em_num(&e, "rescored_loss", res->rescored_loss);
    em_int(&e, "evaluations", res->evaluations);
    em_int(&e, "replayed", res->replayed);
    em_int(&e, "backend_calls", res->backend_calls);
    em_str(&e, "optimizer", o->optimizer);
    em_str(&e, "method", lh_merge_method_name(o->merge.method));
    em_str(&e, "select", select_name(o->select));
    em_int(&e, "seed", (long long)o->seed);
    em_int(&e, "budget", o->budget);
    em_num(&e, "bound", o->bound);
    em_num(&e, "l1", o->l1);
    em_int(&e, "nan_as_worst", o->nan_as_worst ? 1 : 0);
    em_int(&e, "pick", o->pick);
    em_int(&e, "preselect", o->preselect);
    em_str(&e, "start", o->start_best_single ? "best-single" : "zero");
    em_key(&e, "modules");
    lh_sb_append(&sb, "[");
    for (size_t i = 0; i < n; i++) {
        if (i)
            lh_sb_append(&sb, ", ");
        lh_sb_append_json_string(&sb, mods[i]->name ? mods[i]->name : "?");
    }
    lh_sb_append(&sb, "]");
    if (res->single_loss) {
        em_int(&e, "preselect_evaluations", res->preselect_evaluations);
        em_map_begin(&e, "single_loss");
        for (size_t i = 0; i < n; i++)
            em_num(&e, mods[i]->name ? mods[i]->name : "?", res->single_loss[i]);
        em_map_end(&e);
    }
    em_num(&e, "wall_seconds", res->wall_seconds);
    em_num(&e, "backend_seconds", res->backend_seconds);
    em_str(&e, "stop_reason", res->stop_reason);
    for (size_t i = 0; extra_kv && extra_kv[i] && extra_kv[i + 1]; i += 2)
        em_str(&e, extra_kv[i], extra_kv[i + 1]);
    lh_sb_append(&sb, e.yaml ? "\n" : "\n}\n");
    free(in_kept);
    if (!in_kept || lh_sb_failed(&sb)) {
        lh_sb_release(&sb);
        return lh_error_set(err, LH_ERR_NOMEM, "report: out of memory");
    }
    *out = lh_sb_detach(&sb);
    return LH_OK;
}

lh_status lh_search_write_report(const char *path, const lh_search_opts *o,
                                 const lh_adapter *const *mods, size_t n,
                                 const lh_search_result *res, const char *const *extra_kv,
                                 lh_error *err)
{
    char *text;
    lh_status st = lh_search_report_text(lh_str_ends_with(path, ".yaml") || lh_str_ends_with(path, ".yml"), o,
                                         mods, n, res, extra_kv, &text, err);
    if (st == LH_OK)
        st = lh_write_file_atomic(path, text, strlen(text), err);
    if (st == LH_ERR_NOMEM)
        lh_error_prefix(err, path);
    free(text);
    return st;
}

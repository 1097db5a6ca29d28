/* adapt/checkpoint.c - the settings fingerprint, the checkpoint and the
 * trace of a search (see checkpoint.h). */
#include "checkpoint.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/fsutil.h"
#include "lib/json.h"
#include "lib/sha256.h"
#include "lib/tempreg.h"

/* ---- the fingerprint ------------------------------------------------ */

static void kv_add(lh_fingerprint *l, const char *key, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

static void kv_add(lh_fingerprint *l, const char *key, const char *fmt, ...)
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

void lh_fingerprint_release(lh_fingerprint *l)
{
    if (!l)
        return;
    for (size_t i = 0; i < l->n; i++) {
        free(l->key[i]);
        free(l->val[i]);
    }
    l->n = 0;
}

static int kv_ok(const lh_fingerprint *l)
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

/* What a module is, not what it is called: the SHA-256 of its targets'
 * names, shapes, scales and tensor values (F32, as every search sees them),
 * so two modules of one size swapped on disk do not replay stale losses. */
static void module_digest(const lh_adapter *m, char hex[65])
{
    lh_sha256 h;
    lh_sha256_init(&h);
    for (size_t t = 0; t < m->n_targets; t++) {
        const lh_target *tg = &m->targets[t];
        int32_t dims[3] = {tg->r, tg->d_in, tg->d_out};
        lh_sha256_update(&h, tg->name, strlen(tg->name) + 1);
        lh_sha256_update(&h, dims, sizeof dims);
        lh_sha256_update(&h, &tg->scale, sizeof tg->scale);
        lh_sha256_update(&h, tg->A, (size_t)tg->r * (size_t)tg->d_in * sizeof *tg->A);
        lh_sha256_update(&h, tg->B, (size_t)tg->d_out * (size_t)tg->r * sizeof *tg->B);
    }
    uint8_t d[32];
    lh_sha256_final(&h, d);
    lh_sha256_to_hex(d, hex);
}

/* The first module of list a ("name:digest,...") that list b does not
 * hold with the same digest, into buf; 0 if every one matches. */
static int first_changed_module(const char *a, const char *b, char *buf, size_t n)
{
    while (*a) {
        size_t len = strcspn(a, ",");
        const char *p = b;
        int found = 0;
        while (*p && !found) {
            size_t plen = strcspn(p, ",");
            found = plen == len && !memcmp(p, a, len);
            p += plen + (p[plen] == ',');
        }
        if (!found) {
            size_t name_len = strcspn(a, ":");
            snprintf(buf, n, "%.*s", (int)(name_len < len ? name_len : len), a);
            return 1;
        }
        a += len + (a[len] == ',');
    }
    return 0;
}

/* Everything that decides the trajectory; a checkpoint made under other
 * settings cannot be replayed. */
lh_status lh_fingerprint_build(const lh_search_opts *o, const lh_adapter *const *mods, size_t n,
                               const lh_examples *ex, lh_fingerprint *l, lh_error *err)
{
    memset(l, 0, sizeof *l);
    kv_add(l, "optimizer", "%s", o->optimizer);
    kv_add(l, "method", "%s", lh_merge_method_name(o->merge.method));
    kv_add(l, "merge", "rank=%d density=%a sign=%d seed=%llu clamp=%a", o->merge.rank,
           o->merge.density, (int)o->merge.majority_sign,
           (unsigned long long)o->merge.seed, o->merge.clamp_quantile);
    kv_add(l, "budget", "%d", o->budget);
    /* Only when given, so checkpoints written before the setting still resume. */
    if (o->population)
        kv_add(l, "population", "%d", o->population);
    kv_add(l, "bound", "%a", o->bound);
    kv_add(l, "l1", "%a", o->l1);
    /* Only when not 1, so checkpoints written before the setting still resume. */
    if (o->loss_scale != 1.0)
        kv_add(l, "loss_scale", "%a", o->loss_scale);
    kv_add(l, "seed", "%llu", (unsigned long long)o->seed);
    kv_add(l, "nan_as_worst", "%d", o->nan_as_worst ? 1 : 0);
    kv_add(l, "preselect", "%d%s", o->preselect,
           o->preselect > 0 && o->preselect_auto ? " (by the budget)" : "");
    kv_add(l, "select", "%s", lh_select_name(o->select));
    kv_add(l, "start", "%s", o->start_best_single ? "best-single" : "zero");
    lh_sb sb;
    lh_sb_init(&sb);
    for (size_t i = 0; i < n; i++) {
        char hex[65];
        module_digest(mods[i], hex);
        if (i)
            lh_sb_append(&sb, ",");
        lh_sb_appendf(&sb, "%s:%.16s", mods[i]->name ? mods[i]->name : "?", hex);
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
        lh_fingerprint_release(l);
        return lh_error_set(err, LH_ERR_NOMEM, "search: out of memory");
    }
    return LH_OK;
}

const char *lh_fingerprint_get(const lh_fingerprint *fp, const char *key)
{
    for (size_t i = 0; fp && i < fp->n; i++)
        if (!strcmp(fp->key[i], key))
            return fp->val[i];
    return NULL;
}

/* ---- the checkpoint ------------------------------------------------- */

/* A C99 hex float (or "nan"/"inf") written by append_hex; 0 if malformed. */
static int parse_hex(const char *s, double *out)
{
    char *end;
    if (!*s)
        return 0;
    *out = strtod(s, &end);
    return *end == '\0';
}

static void append_hex(lh_sb *sb, double v)
{
    char buf[64];
    snprintf(buf, sizeof buf, "%a", v);
    lh_sb_append_json_string(sb, buf);
}

void lh_checkpoint_init(lh_checkpoint *c, const char *path, const lh_fingerprint *settings)
{
    memset(c, 0, sizeof *c);
    c->path = path;
    c->settings = settings;
    lh_sb_init(&c->body);
}

void lh_checkpoint_append(lh_checkpoint *c, size_t e, const double *w, size_t nk, double loss,
                          double ms)
{
    lh_sb *sb = &c->body;
    if (e)
        lh_sb_append(sb, ",\n");
    lh_sb_append(sb, "{\"w\": [");
    for (size_t i = 0; i < nk; i++) {
        if (i)
            lh_sb_append(sb, ", ");
        lh_sb_append_json_number(sb, w[i]);
    }
    lh_sb_append(sb, "], \"loss\": ");
    lh_sb_append_json_number(sb, loss);
    lh_sb_append(sb, ", \"ms\": ");
    lh_sb_append_json_number(sb, ms);
    lh_sb_append(sb, ",\n \"wx\": [");
    for (size_t i = 0; i < nk; i++) {
        if (i)
            lh_sb_append(sb, ", ");
        append_hex(sb, w[i]);
    }
    lh_sb_append(sb, "], \"lossx\": ");
    append_hex(sb, loss);
    lh_sb_append(sb, "}");
}

lh_status lh_checkpoint_write(const lh_checkpoint *c, const double *single, size_t n_single,
                              lh_error *err)
{
    if (!c->path)
        return LH_OK;
    lh_sb sb;
    lh_sb_init(&sb);
    lh_sb_appendf(&sb, "{\n\"lorahub_checkpoint\": %d,\n\"settings\": {", LH_CHECKPOINT_VERSION);
    for (size_t i = 0; i < c->settings->n; i++) {
        lh_sb_append(&sb, i ? ",\n  " : "\n  ");
        lh_sb_append_json_string(&sb, c->settings->key[i]);
        lh_sb_append(&sb, ": ");
        lh_sb_append_json_string(&sb, c->settings->val[i]);
    }
    lh_sb_append(&sb, "\n},\n\"single\": [");
    for (size_t i = 0; single && i < n_single; i++) {
        if (i)
            lh_sb_append(&sb, ", ");
        append_hex(&sb, single[i]);
    }
    lh_sb_append(&sb, "],\n\"evaluations\": [\n");
    if (c->body.buf)
        lh_sb_append(&sb, c->body.buf);
    lh_sb_append(&sb, "\n]\n}\n");
    lh_status st;
    if (lh_sb_failed(&sb))
        st = lh_error_set(err, LH_ERR_NOMEM, "%s: out of memory", c->path);
    else
        st = lh_write_file_atomic(c->path, sb.buf, sb.len, err);
    lh_sb_release(&sb);
    return st;
}

lh_status lh_checkpoint_load(lh_checkpoint *c, size_t n_all, lh_error *err)
{
    const char *path = c->path;
    c->n_all = n_all;
    lh_json *j = NULL;
    lh_status st = lh_json_parse_file(path, &j, err);
    if (st != LH_OK)
        return st;
    long long ver;
    const lh_json *set = lh_json_get(j, "settings");
    const lh_json *single = lh_json_get(j, "single");
    const lh_json *evs = lh_json_get(j, "evaluations");
    if (!lh_json_as_int64(lh_json_get(j, "lorahub_checkpoint"), &ver) || ver != LH_CHECKPOINT_VERSION ||
        !set || set->type != LH_JSON_OBJECT || !evs || evs->type != LH_JSON_ARRAY ||
        !single || single->type != LH_JSON_ARRAY) {
        lh_json_free(j);
        return lh_error_set(err, LH_ERR_FORMAT, "%s: not a lorahub checkpoint (version %d)", path,
                            LH_CHECKPOINT_VERSION);
    }
    for (size_t i = 0; i < c->settings->n; i++) {
        const char *v;
        /* Another budget may resume: a larger one goes on where the
         * checkpoint ends; the replay still checks every point bitwise. */
        if (!strcmp(c->settings->key[i], "budget"))
            continue;
        if (!lh_json_as_string(lh_json_get(set, c->settings->key[i]), &v))
            v = "(missing)";
        char changed[128];
        if (strcmp(v, c->settings->val[i]) && !strcmp(c->settings->key[i], "modules") &&
            first_changed_module(c->settings->val[i], v, changed, sizeof changed)) {
            st = lh_error_set(err, LH_ERR_ARG,
                              "%s: cannot resume: module '%s' is not the one the checkpoint was "
                              "made with (its contents or the module set changed)",
                              path, changed);
            lh_json_free(j);
            return st;
        }
        if (strcmp(v, c->settings->val[i])) {
            st = lh_error_set(err, LH_ERR_ARG,
                              "%s: cannot resume: it was made with %s '%s', this run has '%s'",
                              path, c->settings->key[i], v, c->settings->val[i]);
            lh_json_free(j);
            return st;
        }
    }
    if (single->len && single->len != n_all) {
        lh_json_free(j);
        return lh_error_set(err, LH_ERR_FORMAT, "%s: 'single' has %zu losses for %zu modules",
                            path, single->len, n_all);
    }
    c->single = malloc((single->len ? single->len : 1) * sizeof *c->single);
    c->n_rec = evs->len;
    c->loss = malloc((c->n_rec ? c->n_rec : 1) * sizeof(double));
    c->ms = malloc((c->n_rec ? c->n_rec : 1) * sizeof(double));
    /* nk is known only after preselection: store raw rows of n_all max. */
    c->w = malloc((c->n_rec ? c->n_rec : 1) * (n_all ? n_all : 1) * sizeof(double));
    if (!c->single || !c->loss || !c->ms || !c->w) {
        lh_json_free(j);
        return lh_error_set(err, LH_ERR_NOMEM, "%s: out of memory", path);
    }
    for (size_t i = 0; i < single->len; i++) {
        const char *hx;
        if (!lh_json_as_string(single->items[i], &hx) || !parse_hex(hx, &c->single[i])) {
            lh_json_free(j);
            return lh_error_set(err, LH_ERR_FORMAT, "%s: single[%zu] is not a hex float", path, i);
        }
    }
    c->n_single = single->len;
    for (size_t e = 0; e < c->n_rec; e++) {
        const lh_json *r = evs->items[e];
        const lh_json *wx = lh_json_get(r, "wx");
        const char *lx;
        double ms = 0;
        if (e == 0 && wx && wx->type == LH_JSON_ARRAY)
            c->wlen = wx->len;
        if (!wx || wx->type != LH_JSON_ARRAY || wx->len != c->wlen || wx->len > n_all || wx->len == 0 ||
            !lh_json_as_string(lh_json_get(r, "lossx"), &lx)) {
            lh_json_free(j);
            return lh_error_set(err, LH_ERR_FORMAT, "%s: evaluation %zu is malformed", path, e + 1);
        }
        for (size_t i = 0; i < wx->len; i++) {
            const char *hx;
            if (!lh_json_as_string(wx->items[i], &hx) || !parse_hex(hx, &c->w[e * n_all + i])) {
                lh_json_free(j);
                return lh_error_set(err, LH_ERR_FORMAT, "%s: evaluation %zu: wx[%zu] is not a hex float",
                                    path, e + 1, i);
            }
        }
        if (!parse_hex(lx, &c->loss[e])) {
            lh_json_free(j);
            return lh_error_set(err, LH_ERR_FORMAT, "%s: evaluation %zu: lossx is not a hex float",
                                path, e + 1);
        }
        lh_json_as_number(lh_json_get(r, "ms"), &ms);
        c->ms[e] = ms;
    }
    lh_json_free(j);
    return LH_OK;
}

void lh_checkpoint_release(lh_checkpoint *c)
{
    if (!c)
        return;
    free(c->w);
    free(c->loss);
    free(c->ms);
    free(c->single);
    lh_sb_release(&c->body);
    memset(c, 0, sizeof *c);
}

/* ---- the trace ------------------------------------------------------ */

void lh_trace_line(lh_trace *t, size_t e, double loss, double objective, const double *w,
                   size_t nk, double ms)
{
    if (!t->f)
        return;
    fprintf(t->f, "%zu\t%.17g\t%.17g", e + 1, loss, objective);
    for (size_t i = 0; i < nk; i++)
        fprintf(t->f, "\t%.17g", w[i]);
    fprintf(t->f, "\t%.3f\n", ms);
    fflush(t->f);
}

lh_status lh_trace_open(lh_trace *t, const char *path, const lh_adapter *const *cols, size_t nk,
                        lh_error *err)
{
    memset(t, 0, sizeof *t);
    t->path = path;
    if (!path)
        return LH_OK;
    size_t len = strlen(path);
    t->tmp = malloc(len + 16);
    if (!t->tmp)
        return lh_error_set(err, LH_ERR_NOMEM, "%s: out of memory", path);
    snprintf(t->tmp, len + 16, "%s.tmp.XXXXXX", path);
    int fd = mkstemp(t->tmp);
    if (fd < 0) {
        lh_status st = lh_error_errno(err, LH_ERR_IO, errno, "cannot create '%s'", t->tmp);
        free(t->tmp);
        t->tmp = NULL;
        return st;
    }
    fchmod(fd, 0644);
    lh_temp_register(t->tmp); /* a signal handler may remove it */
    t->f = fdopen(fd, "w");
    if (!t->f) {
        close(fd);
        lh_temp_unregister(t->tmp);
        unlink(t->tmp);
        return lh_error_errno(err, LH_ERR_IO, errno, "cannot open '%s'", t->tmp);
    }
    fprintf(t->f, "evaluation\tloss\tobjective");
    for (size_t i = 0; i < nk; i++)
        fprintf(t->f, "\t%s", cols[i]->name ? cols[i]->name : "?");
    fprintf(t->f, "\tmilliseconds\n");
    return LH_OK;
}

/* The trace is a record of what ran, so it is kept after an error too. */
lh_status lh_trace_close(lh_trace *t, lh_error *err)
{
    if (!t->f)
        return LH_OK;
    int bad = fflush(t->f) != 0 || ferror(t->f);
    bad |= fsync(fileno(t->f)) != 0;
    bad |= fclose(t->f) != 0;
    t->f = NULL;
    lh_temp_unregister(t->tmp);
    lh_status st = LH_OK;
    if (bad) {
        st = lh_error_errno(err, LH_ERR_IO, errno, "cannot write '%s'", t->path);
        unlink(t->tmp);
    } else if (rename(t->tmp, t->path) != 0) {
        st = lh_error_errno(err, LH_ERR_IO, errno, "cannot rename '%s' to '%s'", t->tmp,
                            t->path);
        unlink(t->tmp);
    }
    free(t->tmp);
    t->tmp = NULL;
    return st;
}

void lh_trace_release(lh_trace *t)
{
    if (!t)
        return;
    if (t->f) {
        fclose(t->f);
        lh_temp_unregister(t->tmp);
        unlink(t->tmp);
    }
    free(t->tmp);
    memset(t, 0, sizeof *t);
}

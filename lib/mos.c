/* lib/mos.c - MoS (Mixture of Shards) modules: load, validate, materialize,
 * save (the layout is in lib/mos.h and lorahub-mos(5)).
 *
 * Routing is static (fixed index tables), so everything here is a gather.
 * The routing hash is SHA-256 over the index tables in canonical order:
 * types in bytewise name order, layers ascending, for each (type, layer)
 * idx_A then idx_B, every entry as a little-endian int32. Two modules with
 * the same hash (and shapes, and rank scales) compose exactly in pool space
 * (compose/mos_compose.c). */
#include "mos.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fsutil.h"
#include "json.h"
#include "safetensors.h"
#include "sha256.h"
#include "strbuf.h"

static const char *mos_origin(const lh_mos *m) { return m->path ? m->path : "mos"; }

static int valid_type_name(const char *s)
{
    if (!s || !*s || strlen(s) > 64)
        return 0;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              *s == '_'))
            return 0;
    return 1;
}

void lh_mos_free(lh_mos *m)
{
    if (!m)
        return;
    for (size_t i = 0; m->types && i < m->n_types; i++) {
        free(m->types[i].name);
        free(m->types[i].module);
    }
    free(m->types);
    free(m->path);
    free(m->name);
    free(m->base_model);
    free(m->storage);
    free(m);
}

static int cmp_type_shape(const void *a, const void *b)
{
    return strcmp(((const lh_mos_type_shape *)a)->name, ((const lh_mos_type_shape *)b)->name);
}

lh_status lh_mos_create(const lh_mos_type_shape *types, size_t n_types, int num_layers, int r,
                        int l, int private_rank, double lora_alpha, lh_mos **out, lh_error *err)
{
    *out = NULL;
    if (!n_types || num_layers <= 0 || r <= 0 || l <= 0 || private_rank < 0 || private_rank > r ||
        !isfinite(lora_alpha))
        return lh_error_set(err, LH_ERR_ARG, "mos: need at least one type, num_layers >= 1, r >= 1, "
                            "l >= 1, 0 <= private_rank <= r and a finite lora_alpha (got %zu types, "
                            "%d layers, r %d, l %d, private rank %d)", n_types, num_layers, r, l,
                            private_rank);
    lh_mos_type_shape *sorted = malloc(n_types * sizeof *sorted);
    if (!sorted)
        return lh_error_set(err, LH_ERR_NOMEM, "mos: out of memory");
    memcpy(sorted, types, n_types * sizeof *sorted);
    qsort(sorted, n_types, sizeof *sorted, cmp_type_shape);
    lh_status st = LH_OK;
    uint64_t words = 0; /* 4-byte units in the blob */
    uint64_t table = (uint64_t)num_layers * (uint64_t)r * (uint64_t)l;
    for (size_t i = 0; i < n_types; i++) {
        const lh_mos_type_shape *t = &sorted[i];
        if (!valid_type_name(t->name) || !t->module || !strstr(t->module, "{i}")) {
            st = lh_error_set(err, LH_ERR_ARG, "mos: type '%s' needs a name of letters, digits and "
                              "'_' and a module template containing \"{i}\"",
                              t->name ? t->name : "");
            goto fail;
        }
        if (i && !strcmp(t->name, sorted[i - 1].name)) {
            st = lh_error_set(err, LH_ERR_ARG, "mos: type '%s' given twice", t->name);
            goto fail;
        }
        if (t->d_in <= 0 || t->d_out <= 0 || t->d_in % l || t->d_out % l) {
            st = lh_error_set(err, LH_ERR_ARG, "mos: type '%s': d_in %d and d_out %d must be "
                              "positive multiples of l = %d", t->name, t->d_in, t->d_out, l);
            goto fail;
        }
        uint64_t need = (uint64_t)num_layers * private_rank * l + (uint64_t)(r - private_rank) * l;
        if (t->n_shards <= 0 || (uint64_t)t->n_shards < need) {
            st = lh_error_set(err, LH_ERR_ARG, "mos: type '%s': %d shards, need at least %llu "
                              "(%d layers x %d private ranks x %d shards + %d public ranks x %d)",
                              t->name, t->n_shards, (unsigned long long)need, num_layers,
                              private_rank, l, r - private_rank, l);
            goto fail;
        }
        words += (uint64_t)t->n_shards * (uint64_t)(t->d_in / l + t->d_out / l) +
                 (uint64_t)num_layers * (uint64_t)r + 2 * table;
    }
    if (words > SIZE_MAX / 4) {
        st = lh_error_set(err, LH_ERR_NOMEM, "mos: too large");
        goto fail;
    }
    lh_mos *m = calloc(1, sizeof *m);
    if (!m) {
        st = lh_error_set(err, LH_ERR_NOMEM, "mos: out of memory");
        goto fail;
    }
    m->types = calloc(n_types, sizeof *m->types);
    m->storage = calloc((size_t)words ? (size_t)words : 1, 4);
    if (!m->types || !m->storage) {
        lh_mos_free(m);
        st = lh_error_set(err, LH_ERR_NOMEM, "mos: out of memory for %llu values",
                          (unsigned long long)words);
        goto fail;
    }
    m->num_layers = num_layers;
    m->r = r;
    m->l = l;
    m->private_rank = private_rank;
    m->lora_alpha = lora_alpha;
    m->dtype = LH_F32;
    uint32_t *w = m->storage; /* floats and int32s share the blob: both 4 bytes */
    for (size_t i = 0; i < n_types; i++) {
        const lh_mos_type_shape *s = &sorted[i];
        lh_mos_type *t = &m->types[i];
        m->n_types++;
        t->name = strdup(s->name);
        t->module = strdup(s->module);
        if (!t->name || !t->module) {
            lh_mos_free(m);
            st = lh_error_set(err, LH_ERR_NOMEM, "mos: out of memory");
            goto fail;
        }
        t->d_in = s->d_in;
        t->d_out = s->d_out;
        t->n_shards = s->n_shards;
        t->pool_A = (float *)w;
        w += (size_t)s->n_shards * (size_t)(s->d_in / l);
        t->pool_B = (float *)w;
        w += (size_t)s->n_shards * (size_t)(s->d_out / l);
        t->rank_scale = (float *)w;
        for (size_t k = 0; k < (size_t)num_layers * (size_t)r; k++)
            t->rank_scale[k] = 1.0f;
        w += (size_t)num_layers * (size_t)r;
        t->idx_A = (int32_t *)w;
        w += (size_t)table;
        t->idx_B = (int32_t *)w;
        w += (size_t)table;
    }
    free(sorted);
    *out = m;
    return LH_OK;
fail:
    free(sorted);
    return st;
}

/* One index table [r, l] of layer i. seen: [N] scratch bytes, all zero on
 * entry and on return. */
static lh_status check_table(const lh_mos *m, const lh_mos_type *t, int layer, const char *which,
                             const int32_t *idx, uint8_t *seen, lh_error *err)
{
    int r = m->r, l = m->l, p = m->private_rank;
    int64_t n = t->n_shards;
    int64_t p0 = n - (int64_t)m->num_layers * p * l; /* public shards [0, p0) */
    int64_t lo = p0 + (int64_t)layer * p * l, hi = lo + (int64_t)p * l;
    lh_status st = LH_OK;
    int j = 0, k = 0;
    for (j = 0; j < r && st == LH_OK; j++)
        for (k = 0; k < l; k++) {
            int32_t v = idx[(size_t)j * l + k];
            int priv = j >= r - p;
            int64_t a = priv ? lo : 0, b = priv ? hi : p0;
            if (v < a || v >= b) {
                st = lh_error_set(err, LH_ERR_FORMAT, "%s: mos.L%d.%s.%s[%d,%d] = %d is outside "
                                  "[%lld, %lld), the %s", mos_origin(m), layer, t->name, which, j,
                                  k, (int)v, (long long)a, (long long)b,
                                  priv ? "layer's private block" : "public shards");
                break;
            }
            if (seen[v]) {
                st = lh_error_set(err, LH_ERR_FORMAT, "%s: mos.L%d.%s.%s[%d,%d]: shard %d is used "
                                  "twice in the table", mos_origin(m), layer, t->name, which, j, k,
                                  (int)v);
                break;
            }
            seen[v] = 1;
        }
    /* clear exactly what was set */
    for (int jj = 0; jj < r; jj++)
        for (int kk = 0; kk < l; kk++) {
            int32_t v = idx[(size_t)jj * l + kk];
            if (v >= 0 && v < n)
                seen[v] = 0;
        }
    return st;
}

static void hash_table(lh_sha256 *h, const int32_t *idx, size_t n)
{
    uint8_t buf[256];
    size_t fill = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t v = (uint32_t)idx[i];
        buf[fill++] = (uint8_t)v;
        buf[fill++] = (uint8_t)(v >> 8);
        buf[fill++] = (uint8_t)(v >> 16);
        buf[fill++] = (uint8_t)(v >> 24);
        if (fill == sizeof buf) {
            lh_sha256_update(h, buf, fill);
            fill = 0;
        }
    }
    lh_sha256_update(h, buf, fill);
}

lh_status lh_mos_validate(lh_mos *m, lh_error *err)
{
    int64_t maxn = 0;
    for (size_t i = 0; i < m->n_types; i++)
        if (m->types[i].n_shards > maxn)
            maxn = m->types[i].n_shards;
    uint8_t *seen = calloc((size_t)maxn + 1, 1);
    if (!seen)
        return lh_error_set(err, LH_ERR_NOMEM, "%s: out of memory", mos_origin(m));
    lh_status st = LH_OK;
    size_t tab = (size_t)m->r * (size_t)m->l;
    lh_sha256 h;
    lh_sha256_init(&h);
    for (size_t ti = 0; ti < m->n_types && st == LH_OK; ti++) {
        const lh_mos_type *t = &m->types[ti];
        int64_t need = (int64_t)m->num_layers * m->private_rank * m->l +
                       (int64_t)(m->r - m->private_rank) * m->l;
        if (t->n_shards < need) {
            st = lh_error_set(err, LH_ERR_FORMAT, "%s: type '%s' has %d shards, fewer than the %lld "
                              "that %d layers with r %d, l %d, private rank %d need", mos_origin(m),
                              t->name, t->n_shards, (long long)need, m->num_layers, m->r, m->l,
                              m->private_rank);
            break;
        }
        for (int i = 0; i < m->num_layers && st == LH_OK; i++) {
            const int32_t *ia = t->idx_A + (size_t)i * tab, *ib = t->idx_B + (size_t)i * tab;
            if ((st = check_table(m, t, i, "idx_A", ia, seen, err)) != LH_OK ||
                (st = check_table(m, t, i, "idx_B", ib, seen, err)) != LH_OK)
                break;
            for (int j = 0; j < m->r; j++)
                if (!isfinite(t->rank_scale[(size_t)i * m->r + j])) {
                    st = lh_error_set(err, LH_ERR_FORMAT, "%s: mos.L%d.%s.rank_scale[%d] is not "
                                      "finite", mos_origin(m), i, t->name, j);
                    break;
                }
            hash_table(&h, ia, tab);
            hash_table(&h, ib, tab);
        }
    }
    free(seen);
    if (st == LH_OK) {
        uint8_t d[32];
        lh_sha256_final(&h, d);
        lh_sha256_to_hex(d, m->routing_hash);
    }
    return st;
}

/* ---- loading ---------------------------------------------------------- */

int lh_mos_sniff(const char *path)
{
    lh_safetensors *st = NULL;
    if (lh_st_open(path, &st, NULL) != LH_OK)
        return 0;
    int yes = lh_st_meta(st, "mos_config") != NULL;
    lh_st_free(st);
    return yes;
}

static lh_status cfg_int(const char *path, const lh_json *o, const char *key, long long lo,
                         long long hi, int *out, lh_error *err)
{
    long long v;
    const lh_json *j = lh_json_get(o, key);
    if (!j)
        return lh_error_set(err, LH_ERR_FORMAT, "%s: mos_config has no '%s'", path, key);
    if (!lh_json_as_int64(j, &v) || v < lo || v > hi)
        return lh_error_set(err, LH_ERR_FORMAT, "%s: mos_config '%s' must be an integer in "
                            "[%lld, %lld]", path, key, lo, hi);
    *out = (int)v;
    return LH_OK;
}

/* A float tensor of exactly shape [d0, d1] (d1 < 0: 1-D [d0]). */
static lh_status want_tensor(const char *path, const lh_safetensors *st, const char *name,
                             int is_index, int64_t d0, int64_t d1, const lh_st_tensor **out,
                             lh_error *err)
{
    const lh_st_tensor *t = lh_st_find(st, name);
    *out = t;
    if (!t)
        return lh_error_set(err, LH_ERR_FORMAT, "%s: tensor '%s' is missing", path, name);
    if (is_index ? t->dtype != LH_I32 : !lh_dtype_is_float(t->dtype))
        return lh_error_set(err, LH_ERR_FORMAT, "%s: tensor '%s' has dtype %s, want %s", path,
                            name, lh_dtype_name(t->dtype), is_index ? "I32" : "F32, F16 or BF16");
    int nd = d1 < 0 ? 1 : 2;
    if (t->ndim != nd || t->shape[0] != d0 || (nd == 2 && t->shape[1] != d1)) {
        if (nd == 2)
            return lh_error_set(err, LH_ERR_SHAPE, "%s: tensor '%s' should be [%lld, %lld]", path,
                                name, (long long)d0, (long long)d1);
        return lh_error_set(err, LH_ERR_SHAPE, "%s: tensor '%s' should be [%lld]", path, name,
                            (long long)d0);
    }
    return LH_OK;
}

static void read_i32(const lh_st_tensor *t, int32_t *dst)
{
    const uint8_t *p = t->data;
    for (uint64_t i = 0; i < t->numel; i++, p += 4)
        dst[i] = (int32_t)((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
                           (uint32_t)p[3] << 24);
}

static char *base_name(const char *path)
{
    const char *s = strrchr(path, '/');
    return strdup(s ? s + 1 : path);
}

/* The numbers of mos_config that size everything else. */
typedef struct mos_header {
    int num_layers, r, l, private_rank;
    double alpha;
} mos_header;

static lh_status parse_header(const char *path, const lh_json *cfg, mos_header *h, lh_error *err)
{
    const lh_json *j;
    const char *str;
    lh_status s;
    if (cfg->type != LH_JSON_OBJECT)
        return lh_error_set(err, LH_ERR_FORMAT, "%s: mos_config is not a JSON object", path);
    j = lh_json_get(cfg, "format");
    if (!j || !lh_json_as_string(j, &str) || strcmp(str, "mos") != 0)
        return lh_error_set(err, LH_ERR_FORMAT, "%s: mos_config 'format' must be \"mos\"", path);
    int version;
    if ((s = cfg_int(path, cfg, "version", 1, INT_MAX, &version, err)))
        return s;
    if (version != 1)
        return lh_error_set(err, LH_ERR_UNSUPPORTED, "%s: MoS format version %d; this lorahub "
                            "reads version 1", path, version);
    if ((s = cfg_int(path, cfg, "num_layers", 1, 1 << 20, &h->num_layers, err)) ||
        (s = cfg_int(path, cfg, "r", 1, 1 << 20, &h->r, err)) ||
        (s = cfg_int(path, cfg, "l", 1, 1 << 20, &h->l, err)) ||
        (s = cfg_int(path, cfg, "private_rank", 0, h->r, &h->private_rank, err)))
        return s;
    j = lh_json_get(cfg, "lora_alpha");
    if (!j || !lh_json_as_number(j, &h->alpha) || !isfinite(h->alpha))
        return lh_error_set(err, LH_ERR_FORMAT, "%s: mos_config 'lora_alpha' must be a number",
                            path);
    return LH_OK;
}

/* types[name] (the JSON object t) -> sh, checked against the file's pool
 * and last index table so nothing is allocated for tables it lacks. */
static lh_status parse_type(const char *path, const lh_safetensors *st, const mos_header *h,
                            const char *name, const lh_json *t, lh_mos_type_shape *sh,
                            lh_error *err)
{
    lh_status s;
    const lh_json *j;
    sh->name = name;
    if (!valid_type_name(name))
        return lh_error_set(err, LH_ERR_FORMAT, "%s: type name '%s' must be letters, digits "
                            "and '_'", path, name);
    if (t->type != LH_JSON_OBJECT)
        return lh_error_set(err, LH_ERR_FORMAT, "%s: mos_config types['%s'] is not an object",
                            path, name);
    if ((s = cfg_int(path, t, "d_in", 1, INT_MAX, &sh->d_in, err)) ||
        (s = cfg_int(path, t, "d_out", 1, INT_MAX, &sh->d_out, err))) {
        char key[128];
        snprintf(key, sizeof key, "types.%s", name);
        lh_error_prefix(err, key);
        return s;
    }
    j = lh_json_get(t, "module");
    if (!j || !lh_json_as_string(j, &sh->module) || !strstr(sh->module, "{i}"))
        return lh_error_set(err, LH_ERR_FORMAT, "%s: mos_config types['%s'].module must be a "
                            "module path template containing \"{i}\"", path, name);
    int l = h->l, r = h->r, p = h->private_rank;
    if (sh->d_in % l || sh->d_out % l)
        return lh_error_set(err, LH_ERR_FORMAT, "%s: type '%s': d_in %d and d_out %d must be "
                            "divisible by l = %d", path, name, sh->d_in, sh->d_out, l);
    char tn[128];
    snprintf(tn, sizeof tn, "mos.%s.pool_A", name);
    const lh_st_tensor *pa = lh_st_find(st, tn);
    if (!pa || pa->ndim != 2 || pa->shape[0] <= 0 || pa->shape[0] > INT_MAX)
        return lh_error_set(err, LH_ERR_FORMAT, "%s: tensor '%s' is missing or not a 2-D pool",
                            path, tn);
    sh->n_shards = (int)pa->shape[0];
    long long ns;
    j = lh_json_get(t, "n_shards");
    if (j && (!lh_json_as_int64(j, &ns) || ns != sh->n_shards))
        return lh_error_set(err, LH_ERR_FORMAT, "%s: mos_config types['%s'].n_shards does not "
                            "match the %d rows of '%s'", path, name, sh->n_shards, tn);
    int64_t need = (int64_t)h->num_layers * p * l + (int64_t)(r - p) * l;
    if (sh->n_shards < need)
        return lh_error_set(err, LH_ERR_FORMAT, "%s: type '%s' has %d shards, fewer than the "
                            "%lld that %d layers with r %d, l %d, private rank %d need", path,
                            name, sh->n_shards, (long long)need, h->num_layers, r, l, p);
    const lh_st_tensor *x;
    snprintf(tn, sizeof tn, "mos.L%d.%s.idx_A", h->num_layers - 1, name);
    return want_tensor(path, st, tn, 1, r, l, &x, err);
}

/* Every type needs two pools and two index tables per layer: name a
 * missing table when the file has too few tensors. */
static lh_status check_table_count(const char *path, const lh_safetensors *st,
                                   const lh_json *types, int num_layers, lh_error *err)
{
    uint64_t need = (uint64_t)types->len * (2 + 2 * (uint64_t)num_layers);
    if ((uint64_t)st->n_tensors >= need)
        return LH_OK;
    /* Each table found is a distinct tensor, so this stops within
     * n_tensors + 1 lookups. */
    for (int i = 0; i < num_layers; i++)
        for (size_t k = 0; k < 2 * types->len; k++) {
            char tn[160];
            snprintf(tn, sizeof tn, "mos.L%d.%s.idx_%c", i, types->keys[k / 2],
                     k % 2 ? 'B' : 'A');
            if (!lh_st_find(st, tn))
                return lh_error_set(err, LH_ERR_FORMAT, "%s: tensor '%s' is missing", path, tn);
        }
    return lh_error_set(err, LH_ERR_FORMAT, "%s: %zu tensors, but %zu types over %d layers need "
                        "at least %llu", path, st->n_tensors, types->len, num_layers,
                        (unsigned long long)need);
}

/* want_tensor, then mark it used (used: [st->n_tensors]). */
static lh_status take_tensor(const char *path, const lh_safetensors *st, const char *name,
                             int is_index, int64_t d0, int64_t d1, uint8_t *used,
                             const lh_st_tensor **out, lh_error *err)
{
    lh_status s = want_tensor(path, st, name, is_index, d0, d1, out, err);
    if (s == LH_OK)
        used[*out - st->tensors] = 1;
    return s;
}

/* The pools and per-layer tables of type t into m's buffers. */
static lh_status read_type(const char *path, const lh_safetensors *st, lh_mos *m, lh_mos_type *t,
                           uint8_t *used, lh_error *err)
{
    const lh_st_tensor *x;
    char tn[160];
    lh_status s;
    int r = m->r, l = m->l;
    snprintf(tn, sizeof tn, "mos.%s.pool_A", t->name);
    if ((s = take_tensor(path, st, tn, 0, t->n_shards, t->d_in / l, used, &x, err)) ||
        (s = lh_st_read_f32(st, x, t->pool_A, err)))
        return s;
    m->dtype = x->dtype;
    snprintf(tn, sizeof tn, "mos.%s.pool_B", t->name);
    if ((s = take_tensor(path, st, tn, 0, t->n_shards, t->d_out / l, used, &x, err)) ||
        (s = lh_st_read_f32(st, x, t->pool_B, err)))
        return s;
    size_t tab = (size_t)r * (size_t)l;
    for (int i = 0; i < m->num_layers; i++) {
        snprintf(tn, sizeof tn, "mos.L%d.%s.idx_A", i, t->name);
        if ((s = take_tensor(path, st, tn, 1, r, l, used, &x, err)))
            return s;
        read_i32(x, t->idx_A + (size_t)i * tab);
        snprintf(tn, sizeof tn, "mos.L%d.%s.idx_B", i, t->name);
        if ((s = take_tensor(path, st, tn, 1, r, l, used, &x, err)))
            return s;
        read_i32(x, t->idx_B + (size_t)i * tab);
        snprintf(tn, sizeof tn, "mos.L%d.%s.rank_scale", i, t->name);
        if (lh_st_find(st, tn) &&
            ((s = take_tensor(path, st, tn, 0, r, -1, used, &x, err)) ||
             (s = lh_st_read_f32(st, x, t->rank_scale + (size_t)i * r, err))))
            return s;
    }
    return LH_OK;
}

/* Every tensor of the file read, nothing left over. */
static lh_status read_tensors(const char *path, const lh_safetensors *st, lh_mos *m,
                              lh_error *err)
{
    uint8_t *used = calloc(st->n_tensors + 1, 1); /* [n_tensors] */
    if (!used)
        return lh_error_set(err, LH_ERR_NOMEM, "%s: out of memory", path);
    lh_status s = LH_OK;
    m->dtype = LH_F32;
    for (size_t ti = 0; ti < m->n_types && s == LH_OK; ti++)
        s = read_type(path, st, m, &m->types[ti], used, err);
    for (size_t i = 0; i < st->n_tensors && s == LH_OK; i++)
        if (!used[i])
            s = lh_error_set(err, LH_ERR_FORMAT, "%s: unexpected tensor '%s' (not part of the "
                             "layers and types in mos_config)", path, st->tensors[i].name);
    free(used);
    return s;
}

/* m's path, name and base_model (a string or null in mos_config). */
static lh_status set_names(const char *path, const lh_json *cfg, lh_mos *m, lh_error *err)
{
    const char *str;
    if (!(m->path = strdup(path)) || !(m->name = base_name(path)))
        return lh_error_set(err, LH_ERR_NOMEM, "%s: out of memory", path);
    const lh_json *j = lh_json_get(cfg, "base_model");
    if (!j || j->type == LH_JSON_NULL)
        return LH_OK;
    if (!lh_json_as_string(j, &str))
        return lh_error_set(err, LH_ERR_FORMAT, "%s: mos_config 'base_model' must be a string",
                            path);
    if (!(m->base_model = strdup(str)))
        return lh_error_set(err, LH_ERR_NOMEM, "%s: out of memory", path);
    return LH_OK;
}

static lh_status check_routing_hash(const char *path, const lh_json *cfg, const lh_mos *m,
                                    lh_error *err)
{
    const char *str;
    const lh_json *j = lh_json_get(cfg, "routing_hash");
    if (j && j->type != LH_JSON_NULL &&
        (!lh_json_as_string(j, &str) || strcmp(str, m->routing_hash) != 0))
        return lh_error_set(err, LH_ERR_FORMAT, "%s: mos_config routing_hash does not match the "
                            "index tables (computed %.16s...)", path, m->routing_hash);
    return LH_OK;
}

static lh_status mos_load_impl(const char *path, lh_mos **out, lh_error *err)
{
    *out = NULL;
    lh_safetensors *st = NULL;
    lh_json *cfg = NULL;
    lh_mos *m = NULL;
    lh_mos_type_shape *shapes = NULL; /* [number of types] */
    mos_header h;
    lh_status s = lh_st_open(path, &st, err);
    if (s != LH_OK)
        return s;
    const char *text = lh_st_meta(st, "mos_config");
    if (!text) {
        s = lh_error_set(err, LH_ERR_FORMAT, "%s: no mos_config in the safetensors metadata "
                         "(not a MoS module)", path);
        goto done;
    }
    char origin[600];
    snprintf(origin, sizeof origin, "%s: mos_config", path);
    if ((s = lh_json_parse(text, strlen(text), origin, &cfg, err)) != LH_OK ||
        (s = parse_header(path, cfg, &h, err)) != LH_OK)
        goto done;
    const lh_json *types = lh_json_get(cfg, "types");
    if (!types || types->type != LH_JSON_OBJECT || !types->len) {
        s = lh_error_set(err, LH_ERR_FORMAT, "%s: mos_config 'types' must be a non-empty object",
                         path);
        goto done;
    }
    if (!(shapes = calloc(types->len, sizeof *shapes))) {
        s = lh_error_set(err, LH_ERR_NOMEM, "%s: out of memory", path);
        goto done;
    }
    for (size_t i = 0; i < types->len && s == LH_OK; i++)
        s = parse_type(path, st, &h, types->keys[i], types->items[i], &shapes[i], err);
    if (s != LH_OK || (s = check_table_count(path, st, types, h.num_layers, err)) != LH_OK)
        goto done;
    if ((s = lh_mos_create(shapes, types->len, h.num_layers, h.r, h.l, h.private_rank, h.alpha,
                           &m, err)) != LH_OK) {
        lh_error_prefix(err, path);
        goto done;
    }
    if ((s = set_names(path, cfg, m, err)) != LH_OK ||
        (s = read_tensors(path, st, m, err)) != LH_OK ||
        (s = lh_mos_validate(m, err)) != LH_OK ||
        (s = check_routing_hash(path, cfg, m, err)) != LH_OK)
        goto done;
done:
    free(shapes);
    lh_json_free(cfg);
    lh_st_free(st);
    if (s != LH_OK) {
        lh_mos_free(m);
        return lh_error_one_line(s, err);
    }
    *out = m;
    return LH_OK;
}

/* ---- materialization -------------------------------------------------- */

/* template with every "{i}" replaced by the layer number */
static char *module_name(const char *tmpl, int layer)
{
    lh_sb sb;
    lh_sb_init(&sb);
    for (const char *p = tmpl; *p;) {
        if (!strncmp(p, "{i}", 3)) {
            lh_sb_appendf(&sb, "%d", layer);
            p += 3;
        } else {
            lh_sb_append_n(&sb, p++, 1);
        }
    }
    if (lh_sb_failed(&sb)) {
        lh_sb_release(&sb);
        return NULL;
    }
    return lh_sb_detach(&sb);
}

lh_status lh_mos_materialize(const lh_mos *m, lh_adapter **out, lh_error *err)
{
    *out = NULL;
    size_t n = m->n_types * (size_t)m->num_layers;
    lh_target_shape *shapes = calloc(n, sizeof *shapes);
    char **names = calloc(n, sizeof *names);
    lh_adapter *a = NULL;
    lh_status st = LH_OK;
    if (!shapes || !names) {
        st = lh_error_set(err, LH_ERR_NOMEM, "%s: out of memory", mos_origin(m));
        goto done;
    }
    for (size_t ti = 0; ti < m->n_types; ti++)
        for (int i = 0; i < m->num_layers; i++) {
            size_t k = ti * (size_t)m->num_layers + (size_t)i;
            if (!(names[k] = module_name(m->types[ti].module, i))) {
                st = lh_error_set(err, LH_ERR_NOMEM, "%s: out of memory", mos_origin(m));
                goto done;
            }
            shapes[k].name = names[k];
            shapes[k].r = m->r;
            shapes[k].d_in = m->types[ti].d_in;
            shapes[k].d_out = m->types[ti].d_out;
        }
    if ((st = lh_adapter_create(shapes, n, &a, err)) != LH_OK) {
        lh_error_prefix(err, mos_origin(m)); /* e.g. two types share a module template */
        goto done;
    }
    int r = m->r, l = m->l;
    float scale = (float)(m->lora_alpha / r);
    const float **src_b = malloc((size_t)r * sizeof *src_b); /* [r] shard rows of one slot */
    if (!src_b) {
        st = lh_error_set(err, LH_ERR_NOMEM, "%s: out of memory", mos_origin(m));
        goto done;
    }
    for (size_t ti = 0; ti < m->n_types; ti++) {
        const lh_mos_type *t = &m->types[ti];
        int s_in = t->d_in / l, s_out = t->d_out / l;
        for (int i = 0; i < m->num_layers; i++) {
            lh_target *tg = (lh_target *)lh_adapter_find(a, names[ti * (size_t)m->num_layers + i]);
            const int32_t *ia = t->idx_A + (size_t)i * r * l, *ib = t->idx_B + (size_t)i * r * l;
            const float *rs = t->rank_scale + (size_t)i * r;
            for (int j = 0; j < r; j++)
                for (int k = 0; k < l; k++) {
                    const float *src = t->pool_A + (size_t)ia[j * l + k] * s_in;
                    float *dst = tg->A + (size_t)j * t->d_in + (size_t)k * s_in;
                    for (int q = 0; q < s_in; q++)
                        dst[q] = src[q] * rs[j];
                }
            /* B row by row (contiguous writes); the r source shards of one
             * slot k stay in cache while q walks along them. */
            for (int k = 0; k < l; k++) {
                for (int j = 0; j < r; j++)
                    src_b[j] = t->pool_B + (size_t)ib[j * l + k] * s_out;
                for (int q = 0; q < s_out; q++) {
                    float *row = tg->B + ((size_t)k * s_out + q) * r;
                    for (int j = 0; j < r; j++)
                        row[j] = src_b[j][q];
                }
            }
            tg->scale = scale;
            tg->alpha = (float)m->lora_alpha;
        }
    }
    free(src_b);
    a->format = LH_FORMAT_MOS;
    a->r = m->r;
    a->lora_alpha = m->lora_alpha;
    a->dtype = m->dtype;
    a->dtypes = 1u << m->dtype | 1u << LH_I32;
    if ((m->base_model && !(a->base_model = strdup(m->base_model))) ||
        (m->path && !(a->path = strdup(m->path))) || (m->name && !(a->name = strdup(m->name)))) {
        st = lh_error_set(err, LH_ERR_NOMEM, "%s: out of memory", mos_origin(m));
        goto done;
    }
done:
    for (size_t i = 0; names && i < n; i++)
        free(names[i]);
    free(names);
    free(shapes);
    if (st != LH_OK) {
        lh_adapter_free(a);
        return st;
    }
    *out = a;
    return LH_OK;
}

/* ---- routing ---------------------------------------------------------- */

int lh_mos_same_routing(const lh_mos *a, const lh_mos *b)
{
    if (!a || !b || strcmp(a->routing_hash, b->routing_hash) != 0 || a->r != b->r ||
        a->l != b->l || a->private_rank != b->private_rank || a->num_layers != b->num_layers ||
        a->n_types != b->n_types)
        return 0;
    size_t tab = (size_t)a->num_layers * a->r * a->l;
    for (size_t i = 0; i < a->n_types; i++) {
        const lh_mos_type *x = &a->types[i], *y = &b->types[i];
        if (strcmp(x->name, y->name) || strcmp(x->module, y->module) || x->d_in != y->d_in ||
            x->d_out != y->d_out || x->n_shards != y->n_shards ||
            memcmp(x->idx_A, y->idx_A, tab * sizeof(int32_t)) ||
            memcmp(x->idx_B, y->idx_B, tab * sizeof(int32_t)) ||
            memcmp(x->rank_scale, y->rank_scale, (size_t)a->num_layers * a->r * sizeof(float)))
            return 0;
    }
    return 1;
}

lh_status lh_mos_clone_routing(const lh_mos *tmpl, lh_mos **out, lh_error *err)
{
    *out = NULL;
    lh_mos_type_shape *sh = calloc(tmpl->n_types ? tmpl->n_types : 1, sizeof *sh);
    if (!sh)
        return lh_error_set(err, LH_ERR_NOMEM, "%s: out of memory", mos_origin(tmpl));
    for (size_t i = 0; i < tmpl->n_types; i++) {
        sh[i].name = tmpl->types[i].name;
        sh[i].module = tmpl->types[i].module;
        sh[i].d_in = tmpl->types[i].d_in;
        sh[i].d_out = tmpl->types[i].d_out;
        sh[i].n_shards = tmpl->types[i].n_shards;
    }
    lh_mos *m = NULL;
    lh_status st = lh_mos_create(sh, tmpl->n_types, tmpl->num_layers, tmpl->r, tmpl->l,
                                 tmpl->private_rank, tmpl->lora_alpha, &m, err);
    free(sh);
    if (st != LH_OK)
        return st;
    size_t tab = (size_t)tmpl->num_layers * tmpl->r * tmpl->l;
    for (size_t i = 0; i < m->n_types; i++) {
        memcpy(m->types[i].idx_A, tmpl->types[i].idx_A, tab * sizeof(int32_t));
        memcpy(m->types[i].idx_B, tmpl->types[i].idx_B, tab * sizeof(int32_t));
        memcpy(m->types[i].rank_scale, tmpl->types[i].rank_scale,
               (size_t)tmpl->num_layers * tmpl->r * sizeof(float));
    }
    memcpy(m->routing_hash, tmpl->routing_hash, sizeof m->routing_hash);
    if ((tmpl->base_model && !(m->base_model = strdup(tmpl->base_model))) ||
        (tmpl->name && !(m->name = strdup(tmpl->name)))) {
        lh_mos_free(m);
        return lh_error_set(err, LH_ERR_NOMEM, "%s: out of memory", mos_origin(tmpl));
    }
    *out = m;
    return LH_OK;
}

/* ---- saving ----------------------------------------------------------- */

static char *config_json(const lh_mos *m)
{
    lh_sb sb;
    lh_sb_init(&sb);
    lh_sb_append(&sb, "{\"format\":\"mos\",\"version\":1,\"base_model\":");
    if (m->base_model)
        lh_sb_append_json_string(&sb, m->base_model);
    else
        lh_sb_append(&sb, "null");
    lh_sb_appendf(&sb, ",\"num_layers\":%d,\"r\":%d,\"l\":%d,\"private_rank\":%d,\"lora_alpha\":",
                  m->num_layers, m->r, m->l, m->private_rank);
    lh_sb_append_json_number(&sb, m->lora_alpha);
    lh_sb_append(&sb, ",\"scaling\":");
    lh_sb_append_json_number(&sb, m->lora_alpha / m->r);
    lh_sb_append(&sb, ",\"dtype\":\"F32\",\"types\":{");
    for (size_t i = 0; i < m->n_types; i++) {
        const lh_mos_type *t = &m->types[i];
        lh_sb_append(&sb, i ? "," : "");
        lh_sb_append_json_string(&sb, t->name);
        lh_sb_appendf(&sb, ":{\"d_in\":%d,\"d_out\":%d,\"n_shards\":%d,\"module\":", t->d_in,
                      t->d_out, t->n_shards);
        lh_sb_append_json_string(&sb, t->module);
        lh_sb_append(&sb, "}");
    }
    lh_sb_appendf(&sb, "},\"routing_hash\":\"%s\"}", m->routing_hash);
    if (lh_sb_failed(&sb)) {
        lh_sb_release(&sb);
        return NULL;
    }
    return lh_sb_detach(&sb);
}

lh_status lh_mos_save(const lh_mos *m, const char *path, int force, lh_error *err)
{
    if (!force && lh_path_exists(path))
        return lh_error_set(err, LH_ERR_EXISTS, "%s: already exists (use --force to replace it)",
                            path);
    /* Validate a shallow copy: it recomputes the hash without touching m. */
    lh_mos chk = *m;
    chk.path = (char *)path;
    lh_status st = lh_mos_validate(&chk, err);
    if (st != LH_OK)
        return st;
    size_t per_type = 2 + 3 * (size_t)m->num_layers;
    size_t cap = m->n_types * per_type;
    lh_st_entry *e = calloc(cap, sizeof *e);
    char **names = calloc(cap, sizeof *names);
    char *cfg = NULL;
    size_t n = 0;
    if (!e || !names)
        goto nomem;
    for (size_t ti = 0; ti < m->n_types; ti++) {
        const lh_mos_type *t = &m->types[ti];
        for (int k = 0; k < 2; k++) {
            lh_sb sb;
            lh_sb_init(&sb);
            lh_sb_appendf(&sb, "mos.%s.pool_%c", t->name, k ? 'B' : 'A');
            if (lh_sb_failed(&sb))
                goto nomem;
            names[n] = lh_sb_detach(&sb);
            e[n].name = names[n];
            e[n].dtype = LH_F32;
            e[n].ndim = 2;
            e[n].shape[0] = t->n_shards;
            e[n].shape[1] = (k ? t->d_out : t->d_in) / m->l;
            e[n].data = k ? t->pool_B : t->pool_A;
            n++;
        }
        for (int i = 0; i < m->num_layers; i++) {
            const float *rs = t->rank_scale + (size_t)i * m->r;
            int ones = 1;
            for (int j = 0; j < m->r; j++)
                ones &= rs[j] == 1.0f;
            for (int k = 0; k < 3; k++) {
                if (k == 2 && ones)
                    continue; /* rank_scale is optional, 1 by default */
                lh_sb sb;
                lh_sb_init(&sb);
                lh_sb_appendf(&sb, "mos.L%d.%s.%s", i, t->name,
                              k == 0 ? "idx_A" : k == 1 ? "idx_B" : "rank_scale");
                if (lh_sb_failed(&sb))
                    goto nomem;
                names[n] = lh_sb_detach(&sb);
                e[n].name = names[n];
                e[n].dtype = k == 2 ? LH_F32 : LH_I32;
                e[n].ndim = k == 2 ? 1 : 2;
                e[n].shape[0] = m->r;
                e[n].shape[1] = m->l;
                size_t off = (size_t)i * m->r * m->l;
                e[n].data = k == 0 ? (const void *)(t->idx_A + off)
                          : k == 1 ? (const void *)(t->idx_B + off) : (const void *)rs;
                n++;
            }
        }
    }
    if (!(cfg = config_json(&chk)))
        goto nomem;
    const char *mk[] = {"format", "mos_config"}, *mv[] = {"pt", cfg};
    st = lh_st_write(path, e, n, mk, mv, 2, err);
    goto done;
nomem:
    st = lh_error_set(err, LH_ERR_NOMEM, "%s: out of memory", path);
done:
    for (size_t i = 0; names && i < cap; i++)
        free(names[i]);
    free(names);
    free(e);
    free(cfg);
    return st;
}

lh_status lh_mos_load(const char *path, lh_mos **out, lh_error *err)
{
    return lh_error_one_line(mos_load_impl(path, out, err), err);
}

uint64_t lh_mos_n_pool_params(const lh_mos *m)
{
    uint64_t n = 0;
    for (size_t i = 0; m && i < m->n_types; i++)
        n += (uint64_t)m->types[i].n_shards *
             (uint64_t)(m->types[i].d_in / m->l + m->types[i].d_out / m->l);
    return n;
}

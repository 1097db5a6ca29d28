/* lib/peft.c - PEFT LoRA adapter directories: adapter_config.json +
 * adapter_model.safetensors (or adapter_model.bin, a torch zip read by
 * lib/torchzip.c without running its pickle), read and written.
 *
 * Reading follows PEFT's own rules (peft/tuners/lora/config.py,
 * tuners_utils.py::check_target_module_exists, utils/other.py::
 * get_pattern_key): target_modules as a list matches a module name exactly
 * or as a ".<suffix>", as a string it is a regex that must match the whole
 * name; rank_pattern / alpha_pattern keys are tried in file order with
 * re.match(rf"(.*\.)?({key})$", name). Python's re and PCRE2 agree on the
 * syntax these configs use, so PCRE2 runs them.
 *
 * Anything that changes the math and that an A/B pair cannot carry (DoRA
 * magnitudes, LoRA biases, embedding LoRAs, full copies of modules, trained
 * base biases) is refused with a message, never dropped. */
#define PCRE2_CODE_UNIT_WIDTH 8
#include "peft.h"

#include <limits.h>
#include <math.h>
#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fsutil.h"
#include "json.h"
#include "safetensors.h"
#include "strbuf.h"
#include "torchzip.h"

#define PEFT_PREFIX "base_model.model."

/* ---- regexes ---------------------------------------------------------- */

static pcre2_code *re_compile(const char *pattern, char *why, size_t why_size)
{
    int ec;
    PCRE2_SIZE off;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED, 0, &ec, &off, NULL);
    if (!re) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(ec, msg, sizeof msg);
        snprintf(why, why_size, "%s at offset %zu", (const char *)msg, (size_t)off);
    }
    return re;
}

/* Anchored match at the start of s (Python's re.match); 1 match, 0 none,
 * -1 on a matching error such as the backtracking limit. If group1 is not
 * NULL it receives the first capture group's value as a long (or -1). */
static int re_match_at_start(const pcre2_code *re, const char *s, long *group1)
{
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(re, NULL);
    pcre2_match_context *mc = pcre2_match_context_create(NULL);
    if (!md || !mc) {
        pcre2_match_data_free(md);
        pcre2_match_context_free(mc);
        return -1;
    }
    /* Module names are short; a config regex that needs more than this is
     * pathological (catastrophic backtracking), and we say so rather than
     * spin. */
    pcre2_set_match_limit(mc, 200000);
    pcre2_set_depth_limit(mc, 20000);
    int rc = pcre2_match(re, (PCRE2_SPTR)s, strlen(s), 0, PCRE2_ANCHORED, md, mc);
    pcre2_match_context_free(mc);
    int res = rc >= 0 ? 1 : rc == PCRE2_ERROR_NOMATCH ? 0 : -1;
    if (res == 1 && group1) {
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
        *group1 = -1;
        if (rc >= 2 && ov[2] != PCRE2_UNSET) {
            size_t n = ov[3] - ov[2];
            if (n > 0 && n < 10) {
                char buf[16];
                memcpy(buf, s + ov[2], n);
                buf[n] = '\0';
                *group1 = strtol(buf, NULL, 10);
            }
        }
    }
    pcre2_match_data_free(md);
    return res;
}

/* ---- the config ------------------------------------------------------- */

typedef struct pattern {
    char *key;
    pcre2_code *re;   /* (.*\.)?(key)$ */
    double value;
} pattern;

/* target_modules / exclude_modules */
typedef struct module_sel {
    int kind;         /* 0 absent (everything), 1 list, 2 regex (fullmatch), 3 all-linear */
    char **names;     /* [n] for a list */
    size_t n;
    pcre2_code *re;   /* (?:regex)\z for a string */
} module_sel;

typedef struct peft_cfg {
    const char *path;
    int r;
    double alpha;
    int rslora, fan_in_fan_out;
    char *base_model, *task_type;
    module_sel targets, exclude;
    int has_layers;
    long *layers;        /* [n_layers] layers_to_transform */
    size_t n_layers;
    pcre2_code **layer_res; /* [n_layer_res] from layers_pattern (or the default) */
    size_t n_layer_res;
    pattern *rank_pat, *alpha_pat;
    size_t n_rank_pat, n_alpha_pat;
} peft_cfg;

static void sel_release(module_sel *s)
{
    for (size_t i = 0; i < s->n; i++)
        free(s->names[i]);
    free(s->names);
    pcre2_code_free(s->re);
    memset(s, 0, sizeof *s);
}

static void patterns_free(pattern *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(p[i].key);
        pcre2_code_free(p[i].re);
    }
    free(p);
}

static void cfg_release(peft_cfg *c)
{
    free(c->base_model);
    free(c->task_type);
    sel_release(&c->targets);
    sel_release(&c->exclude);
    free(c->layers);
    for (size_t i = 0; i < c->n_layer_res; i++)
        pcre2_code_free(c->layer_res[i]);
    free(c->layer_res);
    patterns_free(c->rank_pat, c->n_rank_pat);
    patterns_free(c->alpha_pat, c->n_alpha_pat);
    memset(c, 0, sizeof *c);
}

static int is_null(const lh_json *j) { return !j || j->type == LH_JSON_NULL; }

/* An optional bool: absent/null -> dflt. */
static lh_status get_bool(const peft_cfg *c, const lh_json *root, const char *key, int dflt,
                          int *out, lh_error *err)
{
    const lh_json *j = lh_json_get(root, key);
    *out = dflt;
    if (is_null(j))
        return LH_OK;
    if (!lh_json_as_bool(j, out))
        return lh_error_set(err, LH_ERR_FORMAT, "%s: '%s' must be true or false", c->path, key);
    return LH_OK;
}

static lh_status get_string(const peft_cfg *c, const lh_json *root, const char *key, char **out,
                            lh_error *err)
{
    const lh_json *j = lh_json_get(root, key);
    const char *s;
    *out = NULL;
    if (is_null(j))
        return LH_OK;
    if (!lh_json_as_string(j, &s))
        return lh_error_set(err, LH_ERR_FORMAT, "%s: '%s' must be a string", c->path, key);
    if (!(*out = strdup(s)))
        return lh_error_set(err, LH_ERR_NOMEM, "%s: out of memory", c->path);
    return LH_OK;
}

/* A null, an empty list, an empty object or false count as "not used". */
static int is_used(const lh_json *j)
{
    if (is_null(j))
        return 0;
    if (j->type == LH_JSON_BOOL)
        return j->boolean;
    if (j->type == LH_JSON_ARRAY || j->type == LH_JSON_OBJECT || j->type == LH_JSON_STRING)
        return j->len > 0;
    return 1;
}

static lh_status parse_sel(peft_cfg *c, const lh_json *root, const char *key, module_sel *s,
                           lh_error *err)
{
    const lh_json *j = lh_json_get(root, key);
    memset(s, 0, sizeof *s);
    if (is_null(j))
        return LH_OK;
    if (j->type == LH_JSON_STRING) {
        if (!strcmp(j->string, "all-linear")) {
            s->kind = 3;
            return LH_OK;
        }
        lh_sb sb;
        lh_sb_init(&sb);
        lh_sb_appendf(&sb, "(?:%s)\\z", j->string);
        if (lh_sb_failed(&sb))
            return lh_error_set(err, LH_ERR_NOMEM, "%s: out of memory", c->path);
        char why[300];
        s->re = re_compile(sb.buf, why, sizeof why);
        lh_sb_release(&sb);
        if (!s->re)
            return lh_error_set(err, LH_ERR_FORMAT, "%s: '%s' regex '%s': %s", c->path, key,
                                j->string, why);
        s->kind = 2;
        return LH_OK;
    }
    if (j->type != LH_JSON_ARRAY)
        return lh_error_set(err, LH_ERR_FORMAT, "%s: '%s' must be a list of names or a regex string",
                            c->path, key);
    s->kind = 1;
    s->names = calloc(j->len ? j->len : 1, sizeof *s->names);
    if (!s->names)
        return lh_error_set(err, LH_ERR_NOMEM, "%s: out of memory", c->path);
    for (size_t i = 0; i < j->len; i++) {
        const char *v;
        if (!lh_json_as_string(j->items[i], &v))
            return lh_error_set(err, LH_ERR_FORMAT, "%s: '%s' item %zu is not a string", c->path,
                                key, i);
        if (!(s->names[s->n++] = strdup(v)))
            return lh_error_set(err, LH_ERR_NOMEM, "%s: out of memory", c->path);
    }
    return LH_OK;
}

static lh_status parse_patterns(peft_cfg *c, const lh_json *root, const char *key, int integer,
                                pattern **out, size_t *n_out, lh_error *err)
{
    const lh_json *j = lh_json_get(root, key);
    *out = NULL;
    *n_out = 0;
    if (is_null(j))
        return LH_OK;
    if (j->type != LH_JSON_OBJECT)
        return lh_error_set(err, LH_ERR_FORMAT, "%s: '%s' must be an object", c->path, key);
    if (!j->len)
        return LH_OK;
    pattern *p = calloc(j->len, sizeof *p);
    if (!p)
        return lh_error_set(err, LH_ERR_NOMEM, "%s: out of memory", c->path);
    *out = p;
    for (size_t i = 0; i < j->len; i++) {
        double v;
        long long iv;
        if (integer ? !lh_json_as_int64(j->items[i], &iv) || iv <= 0 || iv > INT_MAX
                    : !lh_json_as_number(j->items[i], &v) || !isfinite(v))
            return lh_error_set(err, LH_ERR_FORMAT, "%s: %s['%s'] must be a %s", c->path, key,
                                j->keys[i], integer ? "positive integer" : "finite number");
        p[i].value = integer ? (double)iv : v;
        if (!(p[i].key = strdup(j->keys[i])))
            return lh_error_set(err, LH_ERR_NOMEM, "%s: out of memory", c->path);
        (*n_out)++;
        lh_sb sb;
        lh_sb_init(&sb);
        lh_sb_appendf(&sb, "(.*\\.)?(%s)$", j->keys[i]);
        if (lh_sb_failed(&sb))
            return lh_error_set(err, LH_ERR_NOMEM, "%s: out of memory", c->path);
        char why[300];
        p[i].re = re_compile(sb.buf, why, sizeof why);
        lh_sb_release(&sb);
        if (!p[i].re)
            return lh_error_set(err, LH_ERR_FORMAT, "%s: %s key '%s': %s", c->path, key,
                                j->keys[i], why);
    }
    return LH_OK;
}

static lh_status parse_layers(peft_cfg *c, const lh_json *root, lh_error *err)
{
    const lh_json *j = lh_json_get(root, "layers_to_transform");
    long long v;
    if (is_null(j))
        return LH_OK;
    if (lh_json_as_int64(j, &v)) {
        c->layers = malloc(sizeof *c->layers);
        if (!c->layers)
            return lh_error_set(err, LH_ERR_NOMEM, "%s: out of memory", c->path);
        c->layers[0] = (long)v;
        c->n_layers = 1;
        c->has_layers = 1;
    } else if (j->type == LH_JSON_ARRAY) {
        c->layers = malloc((j->len ? j->len : 1) * sizeof *c->layers);
        if (!c->layers)
            return lh_error_set(err, LH_ERR_NOMEM, "%s: out of memory", c->path);
        for (size_t i = 0; i < j->len; i++) {
            if (!lh_json_as_int64(j->items[i], &v) || v < 0 || v > INT_MAX)
                return lh_error_set(err, LH_ERR_FORMAT,
                                    "%s: layers_to_transform item %zu is not a layer index",
                                    c->path, i);
            c->layers[c->n_layers++] = (long)v;
        }
        c->has_layers = j->len > 0; /* PEFT ignores an empty list */
    } else {
        return lh_error_set(err, LH_ERR_FORMAT,
                            "%s: layers_to_transform must be an integer or a list of integers",
                            c->path);
    }
    if (!c->has_layers)
        return LH_OK;
    /* The layer index is the number after "<layers_pattern>." (PEFT:
     * re.match(rf".*\.{pattern}\.(\d+)\.", key)), or after any component
     * when no pattern is given. */
    const lh_json *lp = lh_json_get(root, "layers_pattern");
    size_t n = 1;
    if (!is_null(lp) && lp->type == LH_JSON_ARRAY && lp->len > 0)
        n = lp->len;
    else if (!is_null(lp) && lp->type != LH_JSON_STRING && lp->type != LH_JSON_ARRAY)
        return lh_error_set(err, LH_ERR_FORMAT, "%s: layers_pattern must be a string or a list",
                            c->path);
    c->layer_res = calloc(n, sizeof *c->layer_res);
    if (!c->layer_res)
        return lh_error_set(err, LH_ERR_NOMEM, "%s: out of memory", c->path);
    for (size_t i = 0; i < n; i++) {
        const char *pat = NULL;
        if (!is_null(lp) && lp->type == LH_JSON_STRING && lp->len)
            pat = lp->string;
        else if (!is_null(lp) && lp->type == LH_JSON_ARRAY && lp->len &&
                 !lh_json_as_string(lp->items[i], &pat))
            return lh_error_set(err, LH_ERR_FORMAT, "%s: layers_pattern item %zu is not a string",
                                c->path, i);
        lh_sb sb;
        lh_sb_init(&sb);
        if (pat)
            lh_sb_appendf(&sb, ".*\\.%s\\.(\\d+)\\.", pat);
        else
            lh_sb_append(&sb, ".*\\.[^.]*\\.(\\d+)\\.");
        if (lh_sb_failed(&sb))
            return lh_error_set(err, LH_ERR_NOMEM, "%s: out of memory", c->path);
        char why[300];
        c->layer_res[i] = re_compile(sb.buf, why, sizeof why);
        lh_sb_release(&sb);
        if (!c->layer_res[i])
            return lh_error_set(err, LH_ERR_FORMAT, "%s: layers_pattern '%s': %s", c->path,
                                pat ? pat : "", why);
        c->n_layer_res++;
    }
    return LH_OK;
}

static lh_status parse_config(const char *path, peft_cfg *c, lh_error *err)
{
    memset(c, 0, sizeof *c);
    c->path = path;
    lh_json *root = NULL;
    lh_status st = lh_json_parse_file(path, &root, err);
    if (st != LH_OK)
        return st;
    const lh_json *j;
    const char *s;
    long long iv;
    double dv;
    if (root->type != LH_JSON_OBJECT) {
        st = lh_error_set(err, LH_ERR_FORMAT, "%s: not a JSON object", path);
        goto done;
    }
    j = lh_json_get(root, "peft_type");
    if (!j || !lh_json_as_string(j, &s)) {
        st = lh_error_set(err, LH_ERR_FORMAT, "%s: no peft_type (not a PEFT adapter config)", path);
        goto done;
    }
    if (strcmp(s, "LORA") != 0) {
        st = lh_error_set(err, LH_ERR_UNSUPPORTED, "%s: peft_type is '%s'; lorahub reads LORA only",
                          path, s);
        goto done;
    }
    c->r = 8; /* PEFT's defaults */
    c->alpha = 8;
    j = lh_json_get(root, "r");
    if (!is_null(j)) {
        if (!lh_json_as_int64(j, &iv) || iv <= 0 || iv > INT_MAX) {
            st = lh_error_set(err, LH_ERR_FORMAT, "%s: 'r' must be a positive integer", path);
            goto done;
        }
        c->r = (int)iv;
    }
    j = lh_json_get(root, "lora_alpha");
    if (!is_null(j)) {
        if (!lh_json_as_number(j, &dv) || !isfinite(dv)) {
            st = lh_error_set(err, LH_ERR_FORMAT, "%s: 'lora_alpha' must be a number", path);
            goto done;
        }
        c->alpha = dv;
    }
    int dora, lbias;
    if ((st = get_bool(c, root, "use_rslora", 0, &c->rslora, err)) ||
        (st = get_bool(c, root, "fan_in_fan_out", 0, &c->fan_in_fan_out, err)) ||
        (st = get_bool(c, root, "use_dora", 0, &dora, err)) ||
        (st = get_bool(c, root, "lora_bias", 0, &lbias, err)) ||
        (st = get_string(c, root, "base_model_name_or_path", &c->base_model, err)) ||
        (st = get_string(c, root, "task_type", &c->task_type, err)))
        goto done;
    if (dora) {
        st = lh_error_set(err, LH_ERR_UNSUPPORTED, "%s: use_dora is set; DoRA's magnitude vectors "
                          "depend on the base weights and cannot be composed as LoRA", path);
        goto done;
    }
    if (lbias) {
        st = lh_error_set(err, LH_ERR_UNSUPPORTED,
                          "%s: lora_bias is set; LoRA biases are not supported", path);
        goto done;
    }
    j = lh_json_get(root, "bias");
    if (!is_null(j) && (!lh_json_as_string(j, &s) || strcmp(s, "none") != 0)) {
        st = lh_error_set(err, LH_ERR_UNSUPPORTED, "%s: bias is '%s'; trained base biases are not "
                          "supported (only \"none\")", path,
                          j->type == LH_JSON_STRING ? j->string : "?");
        goto done;
    }
    static const char *const refused[] = {"modules_to_save", "target_parameters",
                                          "layer_replication"};
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++)
        if (is_used(lh_json_get(root, refused[i]))) {
            st = lh_error_set(err, LH_ERR_UNSUPPORTED, "%s: %s is set; lorahub cannot carry it "
                              "through a composition", path, refused[i]);
            goto done;
        }
    if ((st = parse_sel(c, root, "target_modules", &c->targets, err)) ||
        (st = parse_sel(c, root, "exclude_modules", &c->exclude, err)) ||
        (st = parse_layers(c, root, err)) ||
        (st = parse_patterns(c, root, "rank_pattern", 1, &c->rank_pat, &c->n_rank_pat, err)) ||
        (st = parse_patterns(c, root, "alpha_pattern", 0, &c->alpha_pat, &c->n_alpha_pat, err)))
        goto done;
done:
    lh_json_free(root);
    if (st != LH_OK)
        cfg_release(c);
    return st;
}

static int ends_with_dot_suffix(const char *name, const char *suffix)
{
    size_t n = strlen(name), m = strlen(suffix);
    return n > m && name[n - m - 1] == '.' && !strcmp(name + n - m, suffix);
}

/* PEFT's check_target_module_exists: 1 selected, 0 not, -1 regex error. */
static int sel_match(const module_sel *s, const peft_cfg *c, const char *name, int use_layers)
{
    switch (s->kind) {
    case 0:
    case 3:
        return 1;
    case 2:
        return re_match_at_start(s->re, name, NULL);
    default:
        break;
    }
    for (size_t i = 0; i < s->n; i++)
        if (!strcmp(s->names[i], name))
            return 1; /* an exact name bypasses layers_to_transform, as in PEFT */
    int found = 0;
    for (size_t i = 0; i < s->n && !found; i++)
        found = ends_with_dot_suffix(name, s->names[i]);
    if (!found || !use_layers || !c->has_layers)
        return found;
    long idx = -1;
    for (size_t i = 0; i < c->n_layer_res && idx < 0; i++)
        if (re_match_at_start(c->layer_res[i], name, &idx) < 0)
            return -1;
    if (idx < 0)
        return 0;
    for (size_t i = 0; i < c->n_layers; i++)
        if (c->layers[i] == idx)
            return 1;
    return 0;
}

/* First pattern whose key matches name (file order), or NULL. */
static const pattern *pattern_for(const pattern *p, size_t n, const char *name, int *failed)
{
    for (size_t i = 0; i < n; i++) {
        int m = re_match_at_start(p[i].re, name, NULL);
        if (m < 0)
            *failed = 1;
        if (m > 0)
            return &p[i];
    }
    return NULL;
}

/* ---- tensors ---------------------------------------------------------- */

typedef struct tensor_ref {
    char *module;              /* name without prefix and suffix */
    int is_b;
    const lh_st_tensor *t;
} tensor_ref;

static int cmp_ref(const void *a, const void *b)
{
    const tensor_ref *x = a, *y = b;
    int c = strcmp(x->module, y->module);
    return c ? c : x->is_b - y->is_b;
}

typedef struct peft_storage {
    lh_safetensors *st;  /* the mapping F32 views point into */
    float *converted;    /* F16/BF16/unaligned tensors, converted once */
} peft_storage;

static void peft_storage_free(void *p)
{
    peft_storage *s = p;
    if (!s)
        return;
    lh_st_free(s->st);
    free(s->converted);
    free(s);
}

static const char *strip_suffix(const char *rest, const char *suffix, size_t *mod_len)
{
    size_t n = strlen(rest), m = strlen(suffix);
    if (n > m && !strcmp(rest + n - m, suffix)) {
        *mod_len = n - m;
        return rest;
    }
    return NULL;
}

/* Classify one tensor key. Returns LH_OK with *ref filled for A/B weights. */
static lh_status classify(const char *file, const lh_st_tensor *t, tensor_ref *ref, lh_error *err)
{
    const char *name = t->name;
    if (strstr(name, "lora_embedding_A") || strstr(name, "lora_embedding_B"))
        return lh_error_set(err, LH_ERR_UNSUPPORTED, "%s: tensor '%s' is an embedding LoRA, which "
                            "lorahub does not support", file, name);
    if (strstr(name, "lora_magnitude_vector"))
        return lh_error_set(err, LH_ERR_UNSUPPORTED, "%s: tensor '%s' is a DoRA magnitude vector; "
                            "DoRA adapters cannot be composed as LoRA", file, name);
    if (strstr(name, ".modules_to_save."))
        return lh_error_set(err, LH_ERR_UNSUPPORTED, "%s: tensor '%s' is a modules_to_save copy, "
                            "which lorahub cannot carry", file, name);
    size_t plen = strlen(PEFT_PREFIX);
    if (strncmp(name, PEFT_PREFIX, plen) != 0)
        return lh_error_set(err, LH_ERR_UNSUPPORTED, "%s: unknown tensor key '%s' (PEFT LoRA keys "
                            "start with '" PEFT_PREFIX "')", file, name);
    const char *rest = name + plen;
    static const struct { const char *suffix; int is_b; } forms[] = {
        {".lora_A.weight", 0}, {".lora_B.weight", 1},
        {".lora_A.default.weight", 0}, {".lora_B.default.weight", 1},
    };
    size_t mlen = 0;
    for (size_t i = 0; i < sizeof forms / sizeof forms[0]; i++)
        if (strip_suffix(rest, forms[i].suffix, &mlen)) {
            ref->module = strndup(rest, mlen);
            ref->is_b = forms[i].is_b;
            ref->t = t;
            if (!ref->module)
                return lh_error_set(err, LH_ERR_NOMEM, "%s: out of memory", file);
            return LH_OK;
        }
    if (strip_suffix(rest, ".lora_B.bias", &mlen) || strip_suffix(rest, ".lora_B.default.bias", &mlen))
        return lh_error_set(err, LH_ERR_UNSUPPORTED, "%s: tensor '%s' is a LoRA bias (lora_bias), "
                            "which lorahub does not support", file, name);
    return lh_error_set(err, LH_ERR_UNSUPPORTED, "%s: unknown tensor key '%s' (not a LoRA "
                        "lora_A/lora_B weight)", file, name);
}

static lh_status check_dims(const char *file, const lh_st_tensor *t, lh_error *err)
{
    if (t->ndim != 2)
        return lh_error_set(err, t->ndim == 4 ? LH_ERR_UNSUPPORTED : LH_ERR_SHAPE,
                            "%s: tensor '%s' has %d dimensions, want 2 (%s)", file, t->name,
                            t->ndim, t->ndim == 4 ? "convolution LoRAs are not supported"
                                                  : "a linear layer's factor");
    if (t->shape[0] <= 0 || t->shape[1] <= 0 || t->shape[0] > INT_MAX || t->shape[1] > INT_MAX)
        return lh_error_set(err, LH_ERR_SHAPE, "%s: tensor '%s' has shape [%lld, %lld]", file,
                            t->name, (long long)t->shape[0], (long long)t->shape[1]);
    if (t->dtype != LH_F32 && t->dtype != LH_F16 && t->dtype != LH_BF16 && t->dtype != LH_F64)
        return lh_error_set(err, LH_ERR_UNSUPPORTED, "%s: tensor '%s' has dtype %s; want F32, F16 "
                            "or BF16", file, t->name, lh_dtype_name(t->dtype));
    return LH_OK;
}

/* refs [n_refs], sorted: every module must have exactly lora_A then lora_B
 * of matching shapes; *n_targets the number of pairs. */
static lh_status check_pairs(const char *st_path, const tensor_ref *refs, size_t n_refs,
                             size_t *n_targets, lh_error *err)
{
    lh_status status;
    *n_targets = 0;
    for (size_t i = 0; i < n_refs; i += 2) {
        const tensor_ref *ra = &refs[i];
        const tensor_ref *rb = i + 1 < n_refs ? &refs[i + 1] : NULL;
        if (rb && !strcmp(ra->module, rb->module) && ra->is_b == rb->is_b)
            return lh_error_set(err, LH_ERR_FORMAT, "%s: module '%s' has two lora_%c tensors "
                                "('%s' and '%s')", st_path, ra->module, ra->is_b ? 'B' : 'A',
                                ra->t->name, rb->t->name);
        if (ra->is_b || !rb || strcmp(ra->module, rb->module) != 0)
            return lh_error_set(err, LH_ERR_FORMAT, "%s: module '%s' has lora_%c but no lora_%c",
                                st_path, ra->module, ra->is_b ? 'B' : 'A', ra->is_b ? 'A' : 'B');
        if ((status = check_dims(st_path, ra->t, err)) || (status = check_dims(st_path, rb->t, err)))
            return status;
        if (rb->t->shape[1] != ra->t->shape[0])
            return lh_error_set(err, LH_ERR_SHAPE, "%s: module '%s': lora_A is [%lld, %lld] but "
                                "lora_B is [%lld, %lld]; B's columns must equal A's rows (the "
                                "rank)", st_path, ra->module, (long long)ra->t->shape[0],
                                (long long)ra->t->shape[1], (long long)rb->t->shape[0],
                                (long long)rb->t->shape[1]);
        (*n_targets)++;
    }
    return LH_OK;
}

/* t's alpha and scale from the config, after checking that the config
 * selects it and that its rank agrees (rank_pattern, alpha_pattern). */
static lh_status apply_config(const char *st_path, const peft_cfg *cfg, lh_target *t,
                              lh_error *err)
{
    int sel = sel_match(&cfg->targets, cfg, t->name, 1);
    int exc = cfg->exclude.kind ? sel_match(&cfg->exclude, cfg, t->name, 0) : 0;
    if (sel < 0 || exc < 0)
        return lh_error_set(err, LH_ERR_FORMAT, "%s: matching module '%s' against "
                            "target_modules failed (regex limit)", cfg->path, t->name);
    if (!sel || exc)
        return lh_error_set(err, LH_ERR_FORMAT, "%s: module '%s' has LoRA tensors but the "
                            "config's %s does not select it", cfg->path, t->name,
                            exc ? "exclude_modules" : cfg->has_layers
                            ? "target_modules/layers_to_transform" : "target_modules");
    int bad_pattern = 0;
    const pattern *rp = pattern_for(cfg->rank_pat, cfg->n_rank_pat, t->name, &bad_pattern);
    const pattern *ap = pattern_for(cfg->alpha_pat, cfg->n_alpha_pat, t->name, &bad_pattern);
    if (bad_pattern)
        return lh_error_set(err, LH_ERR_FORMAT, "%s: matching module '%s' against "
                            "rank_pattern/alpha_pattern failed (regex limit)", cfg->path,
                            t->name);
    int want_r = rp ? (int)rp->value : cfg->r;
    if (want_r != t->r) {
        if (rp)
            return lh_error_set(err, LH_ERR_SHAPE, "%s: module '%s' has rank %d in the tensors "
                                "but rank_pattern['%s'] says %d", st_path, t->name, t->r, rp->key,
                                want_r);
        return lh_error_set(err, LH_ERR_SHAPE, "%s: module '%s' has rank %d in the tensors but "
                            "the config's r is %d", st_path, t->name, t->r, want_r);
    }
    double alpha = ap ? ap->value : cfg->alpha;
    double scale = cfg->rslora ? alpha / sqrt((double)t->r) : alpha / (double)t->r;
    if (!isfinite((float)scale) || !isfinite((float)alpha))
        return lh_error_set(err, LH_ERR_FORMAT, "%s: module '%s': lora_alpha %g gives a scale "
                            "beyond single precision", cfg->path, t->name, alpha);
    t->alpha = (float)alpha;
    t->scale = (float)scale;
    return LH_OK;
}

/* The A and B of the pair ta, tb into t: views into the mapping when the
 * file holds F32, else converted into the blob at *cp (advanced). */
static lh_status take_factors(const peft_storage *ps, const lh_st_tensor *ta,
                              const lh_st_tensor *tb, lh_target *t, float **cp, lh_error *err)
{
    const lh_st_tensor *pair[2] = {ta, tb};
    float **dst[2] = {&t->A, &t->B};
    for (int k = 0; k < 2; k++) {
        const float *v = lh_st_f32_view(pair[k]);
        if (v) {
            *dst[k] = (float *)v; /* read-only view into the mapping */
            continue;
        }
        lh_status status = lh_st_read_f32(ps->st, pair[k], *cp, err);
        if (status != LH_OK)
            return status;
        *dst[k] = *cp;
        *cp += pair[k]->numel;
    }
    return LH_OK;
}

/* What the adapter as a whole reports: on-disk dtype (the widest float
 * present), rank, alpha and the config's other fields, file size. */
static lh_status finish_adapter(const char *st_path, const peft_cfg *cfg, lh_adapter *a,
                                lh_error *err)
{
    a->dtype = LH_F32;
    for (int d = LH_DTYPE_COUNT - 1; d >= 0; d--)
        if (a->dtypes & (1u << d)) {
            a->dtype = (lh_dtype)d;
            break;
        }
    a->r = cfg ? cfg->r : lh_adapter_max_rank(a);
    a->lora_alpha = cfg ? cfg->alpha : a->r;
    a->use_rslora = cfg ? cfg->rslora : 0;
    a->fan_in_fan_out = cfg ? cfg->fan_in_fan_out : 0;
    if (cfg && ((cfg->base_model && !(a->base_model = strdup(cfg->base_model))) ||
                (cfg->task_type && !(a->task_type = strdup(cfg->task_type)))))
        return lh_error_set(err, LH_ERR_NOMEM, "%s: out of memory", st_path);
    int64_t sz = lh_file_size(st_path);
    a->file_size = sz > 0 ? (uint64_t)sz : 0;
    return LH_OK;
}

/* Build the adapter from an open safetensors file and an optional config. */
static lh_status build(const char *st_path, lh_safetensors *st, const peft_cfg *cfg,
                       lh_adapter **out, lh_error *err)
{
    lh_status status = LH_OK;
    lh_adapter *a = NULL;
    peft_storage *ps = NULL;
    size_t n = st->n_tensors, n_refs = 0, n_targets = 0;
    tensor_ref *refs = calloc(n ? n : 1, sizeof *refs); /* [n] */
    if (!refs) {
        lh_st_free(st);
        return lh_error_set(err, LH_ERR_NOMEM, "%s: out of memory", st_path);
    }
    for (size_t i = 0; i < n; i++) {
        if ((status = classify(st_path, &st->tensors[i], &refs[n_refs], err)) != LH_OK)
            goto fail;
        n_refs++;
    }
    if (!n_refs) {
        status = lh_error_set(err, LH_ERR_FORMAT, "%s: no LoRA tensors", st_path);
        goto fail;
    }
    qsort(refs, n_refs, sizeof *refs, cmp_ref); /* pairs: A then B for each module */
    if ((status = check_pairs(st_path, refs, n_refs, &n_targets, err)) != LH_OK)
        goto fail;
    a = calloc(1, sizeof *a);
    ps = calloc(1, sizeof *ps);
    if (!a || !ps) {
        free(a);
        a = NULL;
        status = lh_error_set(err, LH_ERR_NOMEM, "%s: out of memory", st_path);
        goto fail;
    }
    a->format = LH_FORMAT_PEFT;
    ps->st = st;
    st = NULL;
    a->storage = ps;
    a->storage_free = peft_storage_free;
    a->targets = calloc(n_targets, sizeof *a->targets);
    if (!a->targets) {
        status = lh_error_set(err, LH_ERR_NOMEM, "%s: out of memory", st_path);
        goto fail;
    }
    /* Count the floats that need a private copy, then convert into one blob. */
    uint64_t conv = 0;
    for (size_t i = 0; i < n_refs; i++)
        if (!lh_st_f32_view(refs[i].t))
            conv += refs[i].t->numel;
    if (conv > SIZE_MAX / sizeof(float) ||
        (conv && !(ps->converted = malloc((size_t)conv * sizeof(float))))) {
        status = lh_error_set(err, LH_ERR_NOMEM, "%s: out of memory converting %llu floats",
                              st_path, (unsigned long long)conv);
        goto fail;
    }
    float *cp = ps->converted;
    for (size_t i = 0; i < n_refs; i += 2) {
        lh_target *t = &a->targets[a->n_targets];
        const lh_st_tensor *ta = refs[i].t, *tb = refs[i + 1].t;
        t->name = refs[i].module;
        refs[i].module = NULL;
        a->n_targets++;
        t->r = (int)ta->shape[0];
        t->d_in = (int)ta->shape[1];
        t->d_out = (int)tb->shape[0];
        a->dtypes |= 1u << ta->dtype | 1u << tb->dtype;
        if ((status = take_factors(ps, ta, tb, t, &cp, err)) != LH_OK)
            goto fail;
        t->alpha = (float)t->r;
        t->scale = 1.0f;
        if (cfg && (status = apply_config(st_path, cfg, t, err)) != LH_OK)
            goto fail;
    }
    if ((status = finish_adapter(st_path, cfg, a, err)) != LH_OK)
        goto fail;
    for (size_t i = 0; i < n_refs; i++)
        free(refs[i].module);
    free(refs);
    *out = a;
    return LH_OK;
fail:
    for (size_t i = 0; i < n_refs; i++)
        free(refs[i].module);
    free(refs);
    if (a)
        lh_adapter_free(a);
    else
        free(ps);
    lh_st_free(st);
    return status;
}

lh_status lh_peft_load_file(const char *st_path, const char *config_path, lh_adapter **out,
                            lh_error *err)
{
    *out = NULL;
    peft_cfg cfg;
    int have_cfg = 0;
    lh_status s;
    if (config_path) {
        if ((s = parse_config(config_path, &cfg, err)) != LH_OK)
            return lh_error_one_line(s, err);
        have_cfg = 1;
    }
    lh_safetensors *st = NULL;
    s = lh_tensors_open(st_path, &st, err); /* safetensors or a torch zip, by content */
    if (s == LH_OK)
        s = build(st_path, st, have_cfg ? &cfg : NULL, out, err); /* takes st */
    if (have_cfg)
        cfg_release(&cfg);
    return lh_error_one_line(s, err);
}

static lh_status load_dir_impl(const char *dir, lh_adapter **out, lh_error *err)
{
    *out = NULL;
    if (!lh_is_dir(dir))
        return lh_error_set(err, LH_ERR_NOT_FOUND, "%s: no such directory", dir);
    char *cfg = lh_path_join(dir, "adapter_config.json");
    char *st = lh_path_join(dir, "adapter_model.safetensors");
    char *bin = lh_path_join(dir, "adapter_model.bin");
    lh_status s;
    if (!cfg || !st || !bin)
        s = lh_error_set(err, LH_ERR_NOMEM, "%s: out of memory", dir);
    else if (!lh_path_exists(cfg))
        s = lh_error_set(err, LH_ERR_NOT_FOUND, "%s: no adapter_config.json (not a PEFT adapter "
                         "directory)", dir);
    else if (!lh_path_exists(st) && lh_path_exists(bin))
        s = lh_peft_load_file(bin, cfg, out, err); /* a torch zip, read without running it */
    else if (!lh_path_exists(st))
        s = lh_error_set(err, LH_ERR_NOT_FOUND, "%s: no adapter_model.safetensors or "
                         "adapter_model.bin", dir);
    else
        s = lh_peft_load_file(st, cfg, out, err);
    if (s == LH_OK) {
        free((*out)->path);
        (*out)->path = strdup(dir);
        if (!(*out)->path) {
            lh_adapter_free(*out);
            *out = NULL;
            s = lh_error_set(err, LH_ERR_NOMEM, "%s: out of memory", dir);
        }
    }
    free(cfg);
    free(st);
    free(bin);
    return lh_error_one_line(s, err);
}

/* ---- saving ----------------------------------------------------------- */

static int cmp_str_ptr(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static const char *last_component(const char *name)
{
    const char *d = strrchr(name, '.');
    return d ? d + 1 : name;
}

/* re.escape for the characters that mean something in a regex. */
static void append_regex_escaped(lh_sb *sb, const char *s)
{
    for (; *s; s++) {
        if (strchr(".^$*+?()[]{}|\\-", *s))
            lh_sb_append_n(sb, "\\", 1);
        lh_sb_append_n(sb, s, 1);
    }
}

typedef struct pat_entry {
    char *key;   /* escaped full module name */
    int r;
} pat_entry;

static int cmp_pat(const void *a, const void *b)
{
    return strcmp(((const pat_entry *)a)->key, ((const pat_entry *)b)->key);
}

/* Python's json.dumps(obj, indent=2, sort_keys=True) layout for one
 * pattern object, at nesting depth 1. */
static void append_pattern_obj(lh_sb *sb, const pat_entry *p, size_t n)
{
    if (!n) {
        lh_sb_append(sb, "{}");
        return;
    }
    lh_sb_append(sb, "{\n");
    for (size_t i = 0; i < n; i++) {
        lh_sb_append(sb, "    ");
        lh_sb_append_json_string(sb, p[i].key);
        lh_sb_appendf(sb, ": %d%s\n", p[i].r, i + 1 < n ? "," : "");
    }
    lh_sb_append(sb, "  }");
}

static int cmp_int(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

/* The rank most targets have (ties: the larger), or 0 on allocation failure. */
static int most_common_rank(const lh_adapter *a)
{
    int *r = malloc(a->n_targets * sizeof *r);
    if (!r)
        return 0;
    for (size_t i = 0; i < a->n_targets; i++)
        r[i] = a->targets[i].r;
    qsort(r, a->n_targets, sizeof *r, cmp_int);
    int best = 0;
    size_t best_n = 0;
    for (size_t i = 0; i < a->n_targets;) {
        size_t j = i;
        while (j < a->n_targets && r[j] == r[i])
            j++;
        if (j - i >= best_n) { /* ascending order: ">=" prefers the larger on ties */
            best = r[i];
            best_n = j - i;
        }
        i = j;
    }
    free(r);
    return best;
}

static lh_status build_config(const lh_adapter *a, const char *base_model, int r, char **out,
                              lh_error *err)
{
    lh_sb sb;
    lh_sb_init(&sb);
    size_t n = a->n_targets, n_pat = 0, n_mods = 0;
    pat_entry *pat = calloc(n ? n : 1, sizeof *pat);
    const char **mods = calloc(n ? n : 1, sizeof *mods);
    lh_status st = LH_OK;
    if (!pat || !mods) {
        st = lh_error_set(err, LH_ERR_NOMEM, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        mods[i] = last_component(a->targets[i].name);
        if (a->targets[i].r == r)
            continue;
        lh_sb k;
        lh_sb_init(&k);
        append_regex_escaped(&k, a->targets[i].name);
        if (lh_sb_failed(&k)) {
            st = lh_error_set(err, LH_ERR_NOMEM, "out of memory");
            goto done;
        }
        pat[n_pat].key = lh_sb_detach(&k);
        pat[n_pat++].r = a->targets[i].r;
    }
    qsort(pat, n_pat, sizeof *pat, cmp_pat);
    qsort(mods, n, sizeof *mods, cmp_str_ptr);
    for (size_t i = 0; i < n; i++)
        if (!n_mods || strcmp(mods[n_mods - 1], mods[i]) != 0)
            mods[n_mods++] = mods[i];
    /* Keys in sorted order, as PEFT's save_pretrained writes them. */
    lh_sb_append(&sb, "{\n  \"alpha_pattern\": ");
    append_pattern_obj(&sb, pat, n_pat);
    lh_sb_append(&sb, ",\n  \"base_model_name_or_path\": ");
    if (base_model)
        lh_sb_append_json_string(&sb, base_model);
    else
        lh_sb_append(&sb, "null");
    lh_sb_appendf(&sb, ",\n  \"bias\": \"none\",\n  \"fan_in_fan_out\": %s,\n"
                  "  \"inference_mode\": true,\n  \"init_lora_weights\": true,\n"
                  "  \"lora_alpha\": %d,\n  \"lora_dropout\": 0.0,\n  \"modules_to_save\": null,\n"
                  "  \"peft_type\": \"LORA\",\n  \"r\": %d,\n  \"rank_pattern\": ",
                  a->fan_in_fan_out ? "true" : "false", r, r);
    append_pattern_obj(&sb, pat, n_pat);
    lh_sb_append(&sb, ",\n  \"target_modules\": [\n");
    for (size_t i = 0; i < n_mods; i++) {
        lh_sb_append(&sb, "    ");
        lh_sb_append_json_string(&sb, mods[i]);
        lh_sb_append(&sb, i + 1 < n_mods ? ",\n" : "\n");
    }
    lh_sb_append(&sb, "  ],\n  \"task_type\": ");
    if (a->task_type)
        lh_sb_append_json_string(&sb, a->task_type);
    else
        lh_sb_append(&sb, "null");
    lh_sb_append(&sb, ",\n  \"use_dora\": false,\n  \"use_rslora\": false\n}");
    if (lh_sb_failed(&sb))
        st = lh_error_set(err, LH_ERR_NOMEM, "out of memory");
done:
    for (size_t i = 0; pat && i < n_pat; i++)
        free(pat[i].key);
    free(pat);
    free(mods);
    if (st == LH_OK)
        *out = lh_sb_detach(&sb);
    lh_sb_release(&sb);
    return st;
}

/* Convert n floats (times mul) to dtype into dst, refusing non-finite
 * values and F16 overflow so a written adapter never holds Inf/NaN. */
static lh_status emit(const float *src, size_t n, float mul, lh_dtype dt, void *dst, float *tmp,
                      const char *dir, const char *what, const char *name, lh_error *err)
{
    for (size_t i = 0; i < n; i++) {
        float v = src[i] * mul;
        if (!isfinite(v))
            return lh_error_set(err, LH_ERR_NUMERIC, "%s: %s of '%s' has a non-finite value at "
                                "element %zu", dir, what, name, i);
        if (dt == LH_F16 && fabsf(v) > 65504.0f)
            return lh_error_set(err, LH_ERR_NUMERIC, "%s: %s of '%s' holds %g, beyond F16's range;"
                                " write F32 or BF16", dir, what, name, (double)v);
        tmp[i] = v;
    }
    if (dt == LH_F32) {
        memcpy(dst, tmp, n * sizeof(float));
        return LH_OK;
    }
    lh_convert_from_f32(dt, tmp, dst, n);
    return LH_OK;
}

lh_status lh_peft_save(const lh_adapter *a, const char *dir, const lh_peft_save_opts *opts,
                       lh_error *err)
{
    lh_dtype dt = opts ? opts->dtype : LH_F32;
    if (dt != LH_F32 && dt != LH_F16 && dt != LH_BF16)
        return lh_error_set(err, LH_ERR_ARG, "%s: output dtype must be F32, F16 or BF16", dir);
    if (!a || !a->n_targets)
        return lh_error_set(err, LH_ERR_ARG, "%s: the adapter has no targets to write", dir);
    size_t n = a->n_targets, es = lh_dtype_bits(dt) / 8;
    uint64_t total = 0, max_el = 0;
    for (size_t i = 0; i < n; i++) {
        const lh_target *t = &a->targets[i];
        uint64_t na = (uint64_t)t->r * (uint64_t)t->d_in, nb = (uint64_t)t->d_out * (uint64_t)t->r;
        total += na + nb;
        max_el = na > max_el ? na : max_el;
        max_el = nb > max_el ? nb : max_el;
    }
    if (total > SIZE_MAX / 4)
        return lh_error_set(err, LH_ERR_NOMEM, "%s: adapter too large", dir);
    lh_status st = LH_OK;
    lh_outdir od = {0};
    char *config = NULL, *cfg_path = NULL, *st_path = NULL;
    lh_st_entry *ents = calloc(2 * n, sizeof *ents);
    char **names = calloc(2 * n, sizeof *names);
    uint8_t *blob = malloc((size_t)total * es);         /* all tensors in the output dtype */
    float *tmp = malloc((size_t)(max_el ? max_el : 1) * sizeof(float)); /* one tensor, scaled */
    if (!ents || !names || !blob || !tmp) {
        st = lh_error_set(err, LH_ERR_NOMEM, "%s: out of memory", dir);
        goto done;
    }
    int r = most_common_rank(a);
    if (!r) {
        st = lh_error_set(err, LH_ERR_NOMEM, "%s: out of memory", dir);
        goto done;
    }
    uint8_t *p = blob;
    for (size_t i = 0; i < n; i++) {
        const lh_target *t = &a->targets[i];
        size_t na = (size_t)t->r * (size_t)t->d_in, nb = (size_t)t->d_out * (size_t)t->r;
        for (int k = 0; k < 2; k++) {
            lh_sb sb;
            lh_sb_init(&sb);
            lh_sb_appendf(&sb, PEFT_PREFIX "%s.lora_%c.weight", t->name, k ? 'B' : 'A');
            if (lh_sb_failed(&sb)) {
                st = lh_error_set(err, LH_ERR_NOMEM, "%s: out of memory", dir);
                goto done;
            }
            names[2 * i + k] = lh_sb_detach(&sb);
            lh_st_entry *e = &ents[2 * i + k];
            e->name = names[2 * i + k];
            e->dtype = dt;
            e->ndim = 2;
            e->shape[0] = k ? t->d_out : t->r;
            e->shape[1] = k ? t->r : t->d_in;
            e->data = p;
            /* B carries the scale so that the written alpha/r is 1. */
            st = k ? emit(t->B, nb, t->scale, dt, p, tmp, dir, "lora_B", t->name, err)
                   : emit(t->A, na, 1.0f, dt, p, tmp, dir, "lora_A", t->name, err);
            if (st != LH_OK)
                goto done;
            p += (k ? nb : na) * es;
        }
    }
    if ((st = build_config(a, opts && opts->base_model ? opts->base_model : a->base_model, r,
                           &config, err)) != LH_OK) {
        lh_error_prefix(err, dir);
        goto done;
    }
    if ((st = lh_outdir_begin(&od, dir, opts ? opts->force : 0, err)) != LH_OK)
        goto done;
    cfg_path = lh_outdir_file(&od, "adapter_config.json");
    st_path = lh_outdir_file(&od, "adapter_model.safetensors");
    if (!cfg_path || !st_path) {
        st = lh_error_set(err, LH_ERR_NOMEM, "%s: out of memory", dir);
        goto done;
    }
    static const char *const mk[] = {"format"}, *const mv[] = {"pt"};
    if ((st = lh_write_file_atomic(cfg_path, config, strlen(config), err)) != LH_OK ||
        (st = lh_st_write(st_path, ents, 2 * n, mk, mv, 1, err)) != LH_OK ||
        (st = lh_outdir_commit(&od, err)) != LH_OK)
        goto done;
done:
    if (st != LH_OK) {
        lh_outdir_name_final(&od, err);
        lh_outdir_abort(&od);
    }
    free(od.final_path);
    free(od.tmp_path);
    for (size_t i = 0; names && i < 2 * n; i++)
        free(names[i]);
    free(names);
    free(ents);
    free(blob);
    free(tmp);
    free(config);
    free(cfg_path);
    free(st_path);
    return st;
}

lh_status lh_peft_load_dir(const char *dir, lh_adapter **out, lh_error *err)
{
    return lh_error_one_line(load_dir_impl(dir, out, err), err);
}

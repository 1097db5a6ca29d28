/* adapt/settings.c - the table of settings and the settings object (see
 * settings.h). The presets are the table's preset_default columns:
 * "default" is the configuration that won the bundled zoo's table
 * (docs/results.md; lorahub-adapt(1) gives the figures), "paper" the
 * reference LoraHub (arXiv 2307.13269: 20 modules, COBYLA 40, bound 1.5,
 * l1 0.05). */
#include "settings.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "adapt/optim/optimizer.h"
#include "compose/compose.h"
#include "lib/fsutil.h"
#include "lib/json.h"

const char *const lh_preset_names[LH_PRESET_COUNT] = {"default", "paper"};

static int is_optimizer(const char *name)
{
    return lh_optimizer_exists(name);
}

static int is_method(const char *name)
{
    lh_merge_method m;
    return lh_merge_method_from_name(name, &m) == 0;
}

static const char *const select_choices[] = {"search", "best-single", "uniform", "auto", NULL};
static const char *const start_choices[] = {"zero", "best-single", NULL};
static const char *const dtype_choices[] = {"f32", "f16", "bf16", NULL};
static const char *const preset_choices[] = {"default", "paper", NULL};
static const char *const format_choices[] = {"peft", "gguf", NULL};
static const char *const loss_scale_choices[] = {"token-mean", "per-example", NULL};

#define NONE {NULL, NULL}
#define BOTH(v) {v, v}
#define INTS(lo, hi) lo, hi, 0, 0, 0, NULL, NULL, NULL
#define NUMS(lo, open) 0, 0, lo, open, lo, NULL, NULL, NULL
#define NUMS_UPTO(lo, open, hi) 0, 0, lo, open, hi, NULL, NULL, NULL
#define LIST(l) 0, 0, 0, 0, 0, l, NULL, NULL
#define CHECK(fn, hint) 0, 0, 0, 0, 0, NULL, fn, hint
#define PLAIN 0, 0, 0, 0, 0, NULL, NULL, NULL

enum { FP = LH_SETTING_FINGERPRINT, RE = LH_SETTING_REPORT, SE = LH_SETTING_SEARCH,
       BE = LH_SETTING_BACKEND };

/* Order: the order of --help's listing and of getopt's option table. */
static const lh_setting_def defs[] = {
    {"base", LH_SETTING_PATH, "DIR", NONE, PLAIN, BE | FP},
    {"modules", LH_SETTING_MODULES, "DIR|LIST", NONE, PLAIN, FP | RE},
    {"pick", LH_SETTING_INT, "N", {"0", "20"}, INTS(0, INT_MAX), RE},
    {"examples", LH_SETTING_PATH, "FILE", NONE, PLAIN, FP | RE},
    {"method", LH_SETTING_CHOICE, "M", {"cat", "lorahub"}, CHECK(is_method, "see lorahub-compose(1)"),
     FP | RE},
    /* ties, dare and magnitude-prune methods: the fraction of entries kept
     * (lorahub-compose(1) --density; above 1 the merge refuses it) */
    {"density", LH_SETTING_NUMBER, "D", BOTH("1"), NUMS_UPTO(0, 1, 1), FP | RE},
    {"optimizer", LH_SETTING_CHOICE, "NAME", BOTH("cobyla"),
     CHECK(is_optimizer, "see --optimizer list"), FP | RE | SE},
    {"budget", LH_SETTING_INT, "N", BOTH("40"), INTS(1, 10000000), FP | RE | SE},
    /* unset: the optimizer's own (CMA-ES: 4 + floor(3 ln n)); batch optimizers only */
    {"population", LH_SETTING_INT, "N", NONE, INTS(2, 1000000), FP | RE | SE},
    {"bound", LH_SETTING_NUMBER, "B", BOTH("1.5"), NUMS(0, 1), FP | RE | SE},
    {"l1", LH_SETTING_NUMBER, "C", BOTH("0.05"), NUMS(0, 0), FP | RE | SE},
    /* per-example: the reference's default_get_loss (token-mean CE of the
     * one batch divided by the number of examples) */
    {"loss-scale", LH_SETTING_CHOICE, "S", {"token-mean", "per-example"},
     LIST(loss_scale_choices), FP | RE | SE},
    {"seed", LH_SETTING_INT, "S", BOTH("42"), INTS(0, LLONG_MAX), FP | RE},
    {"backend", LH_SETTING_STRING, "NAME", NONE, PLAIN, FP | RE},
    {"backend-cmd", LH_SETTING_STRING, "CMD", NONE, PLAIN, BE | FP},
    {"backend-timeout", LH_SETTING_NUMBER, "SEC", NONE, NUMS(0, 1), BE},
    {"base-gguf", LH_SETTING_PATH, "FILE", NONE, PLAIN, BE | FP},
    {"threads", LH_SETTING_INT, "N", NONE, INTS(1, 4096), BE},
    {"gpu-layers", LH_SETTING_INT, "N", NONE, INTS(-1, 1000000), BE},
    {"server", LH_SETTING_STRING, "URL", NONE, PLAIN, BE},
    {"no-repack", LH_SETTING_BOOL, NULL, BOTH("false"), PLAIN, BE},
    {"nan-as-worst", LH_SETTING_BOOL, NULL, BOTH("false"), PLAIN, FP | RE},
    {"resume", LH_SETTING_BOOL, NULL, BOTH("false"), PLAIN, 0},
    {"output", LH_SETTING_PATH, "OUTDIR", NONE, PLAIN, RE},
    {"report", LH_SETTING_PATH, "FILE", NONE, PLAIN, 0},
    {"trace", LH_SETTING_PATH, "FILE", NONE, PLAIN, 0},
    {"weights-out", LH_SETTING_PATH, "FILE", NONE, PLAIN, 0},
    {"checkpoint", LH_SETTING_PATH, "FILE", NONE, PLAIN, 0},
    {"force", LH_SETTING_BOOL, NULL, BOTH("false"), PLAIN, 0},
    {"preselect", LH_SETTING_INT, "K", {"3", "0"}, INTS(0, INT_MAX), FP | RE},
    {"select", LH_SETTING_CHOICE, "MODE", {"best-single", "search"}, LIST(select_choices), FP | RE},
    {"start", LH_SETTING_CHOICE, "FROM", BOTH("zero"), LIST(start_choices), FP | RE | SE},
    {"preset", LH_SETTING_CHOICE, "NAME", BOTH("default"), LIST(preset_choices), RE},
    {"dtype", LH_SETTING_CHOICE, "T", BOTH("f32"), LIST(dtype_choices), 0},
    {"format", LH_SETTING_CHOICE, "FMT", BOTH("peft"), LIST(format_choices), 0},
    {"plot", LH_SETTING_PATH, "FILE", NONE, PLAIN, 0},
    {"no-plot", LH_SETTING_BOOL, NULL, BOTH("false"), PLAIN, 0},
    {"task", LH_SETTING_STRING, "NAME", NONE, PLAIN, RE},
    {"test", LH_SETTING_PATH, "FILE", NONE, PLAIN, RE},
    {NULL, 0, NULL, NONE, PLAIN, 0},
};

#define N_DEFS (sizeof defs / sizeof defs[0] - 1)

const lh_setting_def *lh_setting_defs(void)
{
    return defs;
}

size_t lh_setting_count(void)
{
    return N_DEFS;
}

static int index_of(const char *key)
{
    for (size_t k = 0; key && k < N_DEFS; k++)
        if (!strcmp(defs[k].key, key))
            return (int)k;
    return -1;
}

const lh_setting_def *lh_setting_find(const char *key)
{
    int k = index_of(key);
    return k < 0 ? NULL : &defs[k];
}

typedef struct value {
    int set;
    int from_preset;    /* filled in by the preset, not given by the user */
    char *text;         /* as given; paths resolved */
    char **list;        /* a YAML list of modules: [n_list] resolved paths */
    size_t n_list;
    char *base_dir;     /* where relative paths inside text resolve, or NULL */
    long long i;        /* INT, BOOL */
    double d;           /* NUMBER */
} value;

struct lh_settings {
    value v[N_DEFS];
};

static void value_release(value *v)
{
    free(v->text);
    for (size_t i = 0; i < v->n_list; i++)
        free(v->list[i]);
    free(v->list);
    free(v->base_dir);
    memset(v, 0, sizeof *v);
}

lh_status lh_settings_new(lh_settings **out, lh_error *err)
{
    *out = calloc(1, sizeof **out);
    return *out ? LH_OK : lh_error_set(err, LH_ERR_NOMEM, "settings: out of memory");
}

void lh_settings_free(lh_settings *s)
{
    if (!s)
        return;
    for (size_t k = 0; k < N_DEFS; k++)
        value_release(&s->v[k]);
    free(s);
}

/* A path from a job file is relative to the job file's directory. */
static char *resolve(const char *p, const char *base_dir)
{
    if (!base_dir || p[0] == '/' || !strcmp(p, "-"))
        return strdup(p);
    return lh_path_join(base_dir, p);
}

static lh_status bad(lh_error *err, const lh_setting_def *d, const char *text, const char *why)
{
    return lh_error_set(err, LH_ERR_ARG, "%s '%s': %s", d->key, text, why);
}

static lh_status check_choice(const lh_setting_def *d, const char *text, lh_error *err)
{
    int ok = d->is_choice ? d->is_choice(text) : 0;
    char known[160] = "";
    for (size_t i = 0; d->choices && d->choices[i]; i++) {
        ok |= !strcmp(d->choices[i], text);
        size_t len = strlen(known);
        snprintf(known + len, sizeof known - len, "%s%s", i ? ", " : "known: ", d->choices[i]);
    }
    if (ok)
        return LH_OK;
    return lh_error_set(err, LH_ERR_ARG, "unknown %s '%s' (%s)", d->key, text,
                        d->choices_hint ? d->choices_hint : known);
}

/* Parse text for row d into v (v is empty). */
static lh_status parse_value(const lh_setting_def *d, value *v, const char *text, lh_error *err)
{
    char *end;
    switch (d->type) {
    case LH_SETTING_INT:
        errno = 0;
        v->i = strtoll(text, &end, 10);
        if (errno || end == text || *end || v->i < d->int_min || v->i > d->int_max) {
            char why[96];
            snprintf(why, sizeof why, "not an integer in [%lld, %lld]", d->int_min, d->int_max);
            return bad(err, d, text, why);
        }
        return LH_OK;
    case LH_SETTING_NUMBER:
        errno = 0;
        v->d = strtod(text, &end);
        int has_max = d->num_max > d->num_min;
        if (errno || end == text || *end || !isfinite(v->d) ||
            (d->num_min_open ? !(v->d > d->num_min) : !(v->d >= d->num_min)) ||
            (has_max && v->d > d->num_max)) {
            char why[96];
            if (has_max)
                snprintf(why, sizeof why, "not a number in %c%g, %g]", d->num_min_open ? '(' : '[',
                         d->num_min, d->num_max);
            else
                snprintf(why, sizeof why, "not a number %s %g", d->num_min_open ? ">" : ">=",
                         d->num_min);
            return bad(err, d, text, why);
        }
        return LH_OK;
    case LH_SETTING_BOOL:
        if (!strcmp(text, "true") || !strcmp(text, "1") || !strcmp(text, "yes"))
            v->i = 1;
        else if (!strcmp(text, "false") || !strcmp(text, "0") || !strcmp(text, "no"))
            v->i = 0;
        else
            return bad(err, d, text, "not a boolean (true or false)");
        return LH_OK;
    case LH_SETTING_CHOICE:
        return check_choice(d, text, err);
    case LH_SETTING_PATH:
        return *text ? LH_OK : bad(err, d, text, "an empty path");
    case LH_SETTING_STRING:
    case LH_SETTING_MODULES:
        return LH_OK;
    }
    return LH_OK;
}

static lh_status set_value(lh_settings *s, int k, const char *text, const char *base_dir,
                           int from_preset, lh_error *err)
{
    const lh_setting_def *d = &defs[k];
    value v;
    memset(&v, 0, sizeof v);
    lh_status st = parse_value(d, &v, text, err);
    if (st != LH_OK)
        return st;
    v.text = d->type == LH_SETTING_PATH ? resolve(text, base_dir) : strdup(text);
    if (base_dir && d->type == LH_SETTING_MODULES)
        v.base_dir = strdup(base_dir);
    if (!v.text || (base_dir && d->type == LH_SETTING_MODULES && !v.base_dir)) {
        value_release(&v);
        return lh_error_set(err, LH_ERR_NOMEM, "%s: out of memory", d->key);
    }
    v.set = 1;
    v.from_preset = from_preset;
    value_release(&s->v[k]);
    s->v[k] = v;
    return LH_OK;
}

lh_status lh_settings_set(lh_settings *s, const char *key, const char *value_text,
                          const char *base_dir, lh_error *err)
{
    int k = index_of(key);
    if (k < 0)
        return lh_error_set(err, LH_ERR_ARG, "unknown key '%s' (see lorahub-job(5))",
                            key ? key : "(null)");
    if (!value_text)
        return lh_error_set(err, LH_ERR_ARG, "%s: no value", key);
    return set_value(s, k, value_text, base_dir, 0, err);
}

lh_status lh_settings_set_list(lh_settings *s, const char *key, const char *const *items,
                               size_t n, const char *base_dir, lh_error *err)
{
    int k = index_of(key);
    if (k < 0 || defs[k].type != LH_SETTING_MODULES)
        return lh_error_set(err, LH_ERR_ARG, "%s: not a key that takes a list", key);
    if (n == 0)
        return lh_error_set(err, LH_ERR_ARG, "%s: an empty list", key);
    value v;
    memset(&v, 0, sizeof v);
    v.list = calloc(n, sizeof *v.list);
    for (size_t i = 0; i < n && v.list; i++, v.n_list++)
        if (!(v.list[i] = resolve(items[i], base_dir)))
            break;
    v.text = strdup("(list)");
    if (!v.list || v.n_list < n || !v.text) {
        value_release(&v);
        return lh_error_set(err, LH_ERR_NOMEM, "%s: out of memory", key);
    }
    v.set = 1;
    value_release(&s->v[k]);
    s->v[k] = v;
    return LH_OK;
}

/* One entry of a job file: a scalar as text, or a list of paths. */
static lh_status load_entry(lh_settings *s, const char *key, const lh_json *v, const char *dir,
                            lh_error *err)
{
    if (v->type == LH_JSON_ARRAY) {
        const char **items = calloc(v->len ? v->len : 1, sizeof *items);
        if (!items)
            return lh_error_set(err, LH_ERR_NOMEM, "%s: out of memory", key);
        lh_status st = LH_OK;
        for (size_t m = 0; m < v->len && st == LH_OK; m++)
            if (!lh_json_as_string(v->items[m], &items[m]))
                st = lh_error_set(err, LH_ERR_ARG, "key '%s': a list of paths must hold strings", key);
        if (st == LH_OK)
            st = lh_settings_set_list(s, key, items, v->len, dir, err);
        free(items);
        return st;
    }
    char buf[64];
    const char *text;
    int b;
    double num;
    if (lh_json_as_string(v, &text)) {
    } else if (lh_json_as_bool(v, &b)) {
        text = b ? "true" : "false";
    } else if (lh_json_as_number(v, &num)) {
        snprintf(buf, sizeof buf, "%.17g", num);
        text = buf;
    } else {
        return lh_error_set(err, LH_ERR_ARG, "key '%s': not a string, number or boolean", key);
    }
    return lh_settings_set(s, key, text, dir, err);
}

lh_status lh_settings_load_mapping(lh_settings *s, const lh_json *map, const char *dir,
                                   const char *const *skip, lh_error *err)
{
    lh_status st = LH_OK;
    for (size_t i = 0; i < map->len && st == LH_OK; i++) {
        int skipped = 0;
        for (size_t k = 0; skip && skip[k]; k++)
            skipped |= !strcmp(skip[k], map->keys[i]);
        if (skipped)
            continue;
        if (index_of(map->keys[i]) < 0)
            st = lh_error_set(err, LH_ERR_ARG, "unknown key '%s' (see lorahub-job(5))", map->keys[i]);
        else
            st = load_entry(s, map->keys[i], map->items[i], dir, err);
    }
    return st;
}

char *lh_settings_dir_of(const char *path)
{
    char *dir = strdup(path);
    char *slash = dir ? strrchr(dir, '/') : NULL;
    if (slash)
        *slash = '\0';
    else if (dir)
        strcpy(dir, ".");
    return dir;
}

lh_status lh_settings_load_job(lh_settings *s, const char *yaml_path, lh_error *err)
{
    lh_json *j;
    lh_status st = lh_yaml_parse_file(yaml_path, &j, err);
    if (st != LH_OK)
        return st;
    if (j->type != LH_JSON_OBJECT) {
        lh_json_free(j);
        return lh_error_set(err, LH_ERR_ARG, "%s: a job file is a mapping of option names to values",
                            yaml_path);
    }
    char *dir = lh_settings_dir_of(yaml_path);
    if (!dir)
        st = lh_error_set(err, LH_ERR_NOMEM, "%s: out of memory", yaml_path);
    else
        st = lh_settings_load_mapping(s, j, dir, NULL, err);
    if (st != LH_OK)
        lh_error_prefix(err, yaml_path);
    free(dir);
    lh_json_free(j);
    return st;
}

lh_status lh_settings_override(lh_settings *s, const lh_settings *over, lh_error *err)
{
    for (size_t k = 0; k < N_DEFS; k++) {
        const value *o = &over->v[k];
        if (!o->set)
            continue;
        lh_status st = o->list ? lh_settings_set_list(s, defs[k].key, (const char *const *)o->list,
                                                      o->n_list, NULL, err)
                               : set_value(s, (int)k, o->text, NULL, o->from_preset, err);
        if (st != LH_OK)
            return st;
        /* a path was resolved when it was set; keep where a module list resolves */
        if (o->base_dir && !(s->v[k].base_dir = strdup(o->base_dir)))
            return lh_error_set(err, LH_ERR_NOMEM, "%s: out of memory", defs[k].key);
    }
    return LH_OK;
}

lh_status lh_settings_apply_preset(lh_settings *s, lh_error *err)
{
    const char *name = lh_settings_text(s, "preset");
    int p = 0;
    while (name && p < LH_PRESET_COUNT && strcmp(lh_preset_names[p], name))
        p++;
    if (p == LH_PRESET_COUNT) /* lh_settings_set checked the name: only a table bug lands here */
        return lh_error_set(err, LH_ERR_ARG, "unknown preset '%s'", name);
    for (size_t k = 0; k < N_DEFS; k++) {
        const char *def = defs[k].preset_default[p];
        if (!s->v[k].set && def) {
            lh_status st = set_value(s, (int)k, def, NULL, 1, err);
            if (st != LH_OK)
                return st;
        }
    }
    /* A search setting given by the user asks for a search: it overrides a
     * preset's select (the default retrieves one module and searches nothing). */
    int k_select = index_of("select");
    if (!s->v[k_select].from_preset)
        return LH_OK;
    for (size_t k = 0; k < N_DEFS; k++)
        if ((defs[k].uses & LH_SETTING_SEARCH) && s->v[k].set && !s->v[k].from_preset)
            return set_value(s, k_select, "search", NULL, 1, err);
    return LH_OK;
}

static const value *get(const lh_settings *s, const char *key)
{
    int k = index_of(key);
    return k < 0 || !s || !s->v[k].set ? NULL : &s->v[k];
}

int lh_settings_is_set(const lh_settings *s, const char *key)
{
    return get(s, key) != NULL;
}

int lh_settings_given(const lh_settings *s, const char *key)
{
    const value *v = get(s, key);
    return v && !v->from_preset;
}

const char *lh_settings_text(const lh_settings *s, const char *key)
{
    const value *v = get(s, key);
    return v ? v->text : NULL;
}

const char *lh_settings_base_dir(const lh_settings *s, const char *key)
{
    const value *v = get(s, key);
    return v ? v->base_dir : NULL;
}

long long lh_settings_int(const lh_settings *s, const char *key, long long unset)
{
    const value *v = get(s, key);
    return v ? v->i : unset;
}

double lh_settings_number(const lh_settings *s, const char *key, double unset)
{
    const value *v = get(s, key);
    return v ? v->d : unset;
}

int lh_settings_bool(const lh_settings *s, const char *key)
{
    const value *v = get(s, key);
    return v ? (int)v->i : 0;
}

const char *const *lh_settings_list(const lh_settings *s, const char *key, size_t *n)
{
    const value *v = get(s, key);
    *n = v && v->list ? v->n_list : 0;
    return v && v->list ? (const char *const *)v->list : NULL;
}

/* lib/examples.c - few-shot example files: JSONL, or a YAML/JSON list. */
#include "examples.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "fsutil.h"
#include "json.h"
#include "strbuf.h"

void lh_examples_free(lh_examples *ex)
{
    if (!ex)
        return;
    for (size_t i = 0; i < ex->n; i++) {
        free(ex->input[i]);
        free(ex->output[i]);
    }
    free(ex->input);
    free(ex->output);
    free(ex->path);
    free(ex);
}

typedef struct exbuf {
    lh_examples *ex;
    size_t cap;
} exbuf;

static int ex_push(exbuf *b, const char *in, const char *out)
{
    lh_examples *ex = b->ex;
    if (ex->n == b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 16;
        char **i2 = realloc(ex->input, cap * sizeof *i2);
        if (!i2)
            return 0;
        ex->input = i2;
        char **o2 = realloc(ex->output, cap * sizeof *o2);
        if (!o2)
            return 0;
        ex->output = o2;
        b->cap = cap;
    }
    char *a = strdup(in), *c = strdup(out);
    if (!a || !c) {
        free(a);
        free(c);
        return 0;
    }
    ex->input[ex->n] = a;
    ex->output[ex->n] = c;
    ex->n++;
    return 1;
}

/* The text of a field: a JSON string, or in YAML also an unquoted number or
 * boolean ("output: 42" means "42"). Returns NULL after filling err. */
static const char *field_text(const lh_json *obj, const char *a, const char *b, int yaml,
                              int node_lines, const char *path, size_t line, lh_status *st,
                              lh_error *err)
{
    const char *name = a;
    const lh_json *v = lh_json_get(obj, a);
    if (!v) {
        v = lh_json_get(obj, b);
        name = b;
    }
    if (!v) {
        *st = lh_error_set(err, LH_ERR_FORMAT, "%s: line %zu: missing \"%s\" (or \"%s\")", path,
                           line, a, b);
        return NULL;
    }
    if (v->type != LH_JSON_STRING &&
        !(yaml && (v->type == LH_JSON_NUMBER || v->type == LH_JSON_BOOL) && v->string)) {
        *st = lh_error_set(err, LH_ERR_FORMAT, "%s: line %zu: \"%s\" is not a string", path,
                           node_lines && v->line ? v->line : line, name);
        return NULL;
    }
    if (strlen(v->string) != v->len) {
        *st = lh_error_set(err, LH_ERR_FORMAT, "%s: line %zu: \"%s\" contains a NUL character",
                           path, node_lines && v->line ? v->line : line, name);
        return NULL;
    }
    return v->string;
}

/* node_lines: the tree's line numbers are the file's (not so for JSONL,
 * where each line is parsed on its own). */
static lh_status add_item(exbuf *b, const lh_json *item, int yaml, int node_lines, const char *path,
                          size_t line, lh_error *err)
{
    lh_status st = LH_OK;
    if (!item || item->type != LH_JSON_OBJECT)
        return lh_error_set(err, LH_ERR_FORMAT,
                            "%s: line %zu: expected an object with \"input\" and \"output\"", path,
                            line);
    const char *in = field_text(item, "input", "context", yaml, node_lines, path, line, &st, err);
    if (!in)
        return st;
    const char *out = field_text(item, "output", "completion", yaml, node_lines, path, line, &st, err);
    if (!out)
        return st;
    if (!ex_push(b, in, out))
        return lh_error_set(err, LH_ERR_NOMEM, "%s: out of memory", path);
    return LH_OK;
}

static lh_status load_jsonl(exbuf *b, const char *path, const char *text, size_t len, lh_error *err)
{
    size_t line = 0;
    for (size_t pos = 0; pos < len;) {
        const char *s = text + pos;
        const char *nl = memchr(s, '\n', len - pos);
        size_t n = nl ? (size_t)(nl - s) : len - pos;
        pos += n + (nl != NULL);
        line++;
        size_t k = 0;
        while (k < n && (s[k] == ' ' || s[k] == '\t' || s[k] == '\r'))
            k++;
        if (k == n)
            continue; /* blank lines are allowed (a trailing newline, spacing) */
        lh_json *j = NULL;
        lh_error perr = { 0 };
        lh_status st = lh_json_parse(s, n, NULL, &j, &perr);
        if (st) {
            /* the parser numbers lines within this one line: renumber */
            const char *m = perr.msg;
            if (!strncmp(m, "line 1: ", 8))
                m += 8;
            return lh_error_set(err, st, "%s: line %zu: %s", path, line, m);
        }
        st = add_item(b, j, 0, 0, path, line, err);
        lh_json_free(j);
        if (st)
            return st;
    }
    return LH_OK;
}

static int has_ext(const char *path, const char *ext)
{
    size_t n = strlen(path), e = strlen(ext);
    return n > e && !strcmp(path + n - e, ext);
}

lh_status lh_examples_load(const char *path, lh_examples **out, lh_error *err)
{
    *out = NULL;
    char *text;
    size_t len;
    lh_status st = lh_read_file(path, &text, &len, err);
    if (st)
        return st;
    exbuf b = { calloc(1, sizeof(lh_examples)), 0 };
    if (!b.ex) {
        free(text);
        return lh_error_set(err, LH_ERR_NOMEM, "%s: out of memory", path);
    }
    int yaml = has_ext(path, ".yaml") || has_ext(path, ".yml");
    if (yaml || has_ext(path, ".json")) {
        lh_json *j = NULL;
        st = yaml ? lh_yaml_parse(text, len, path, &j, err) : lh_json_parse(text, len, path, &j, err);
        if (!st && j->type != LH_JSON_ARRAY && !(yaml && j->type == LH_JSON_NULL))
            st = lh_error_set(err, LH_ERR_FORMAT,
                              "%s: line %zu: expected a list of objects with \"input\" and \"output\"",
                              path, j->line ? j->line : 1);
        for (size_t i = 0; !st && j->type == LH_JSON_ARRAY && i < j->len; i++)
            st = add_item(&b, j->items[i], yaml, 1, path, j->items[i]->line, err);
        lh_json_free(j);
    } else {
        st = load_jsonl(&b, path, text, len, err);
    }
    free(text);
    if (!st && b.ex->n == 0)
        st = lh_error_set(err, LH_ERR_FORMAT, "%s: line 1: no examples in the file", path);
    if (!st) {
        char *abs = realpath(path, NULL);
        b.ex->path = abs ? abs : strdup(path);
        if (!b.ex->path)
            st = lh_error_set(err, LH_ERR_NOMEM, "%s: out of memory", path);
    }
    if (st) {
        lh_examples_free(b.ex);
        return st;
    }
    *out = b.ex;
    return LH_OK;
}

lh_status lh_examples_from_arrays(const char *const *input, const char *const *output, size_t n,
                                  lh_examples **out, lh_error *err)
{
    *out = NULL;
    exbuf b = { calloc(1, sizeof(lh_examples)), 0 };
    if (!b.ex)
        return lh_error_set(err, LH_ERR_NOMEM, "examples: out of memory");
    for (size_t i = 0; i < n; i++) {
        if (!input || !output || !input[i] || !output[i]) {
            lh_examples_free(b.ex);
            return lh_error_set(err, LH_ERR_ARG, "examples: example %zu has no input or output", i);
        }
        if (!ex_push(&b, input[i], output[i])) {
            lh_examples_free(b.ex);
            return lh_error_set(err, LH_ERR_NOMEM, "examples: out of memory");
        }
    }
    *out = b.ex;
    return LH_OK;
}

lh_status lh_examples_write_jsonl(const lh_examples *ex, const char *path, lh_error *err)
{
    lh_sb sb;
    lh_sb_init(&sb);
    for (size_t i = 0; i < ex->n; i++) {
        lh_sb_append(&sb, "{\"input\":");
        lh_sb_append_json_string(&sb, ex->input[i]);
        lh_sb_append(&sb, ",\"output\":");
        lh_sb_append_json_string(&sb, ex->output[i]);
        lh_sb_append(&sb, "}\n");
    }
    if (lh_sb_failed(&sb)) {
        lh_sb_release(&sb);
        return lh_error_set(err, LH_ERR_NOMEM, "%s: out of memory", path);
    }
    lh_status st = lh_write_file_atomic(path, sb.buf ? sb.buf : "", sb.len, err);
    lh_sb_release(&sb);
    return st;
}

/* tests/fuzz/fuzz_json.c - libFuzzer target for the JSON and YAML readers.
 *
 * Oracle beyond "no crash": a JSON document that parses is printed back as
 * JSON and must parse to the same tree, a refused one gets a message naming
 * the file and the line; the same input goes through the YAML reader too. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lib/json.h"
#include "lib/strbuf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A string of known length, NULs included, as a JSON literal. */
static void put_string(lh_sb *sb, const char *s, size_t n)
{
    lh_sb_append(sb, "\"");
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\')
            lh_sb_appendf(sb, "\\%c", c);
        else if (c < 0x20)
            lh_sb_appendf(sb, "\\u%04x", c);
        else
            lh_sb_append_n(sb, (const char *)&c, 1);
    }
    lh_sb_append(sb, "\"");
}

static void print(lh_sb *sb, const lh_json *j)
{
    switch (j->type) {
    case LH_JSON_NULL: lh_sb_append(sb, "null"); break;
    case LH_JSON_BOOL: lh_sb_append(sb, j->boolean ? "true" : "false"); break;
    case LH_JSON_NUMBER: lh_sb_append_n(sb, j->string, j->len); break;
    case LH_JSON_STRING: put_string(sb, j->string, j->len); break;
    case LH_JSON_ARRAY:
    case LH_JSON_OBJECT:
        lh_sb_append(sb, j->type == LH_JSON_ARRAY ? "[" : "{");
        for (size_t i = 0; i < j->len; i++) {
            if (i)
                lh_sb_append(sb, ",");
            if (j->type == LH_JSON_OBJECT) {
                put_string(sb, j->keys[i], strlen(j->keys[i]));
                lh_sb_append(sb, ":");
            }
            print(sb, j->items[i]);
        }
        lh_sb_append(sb, j->type == LH_JSON_ARRAY ? "]" : "}");
        break;
    }
}

static int same(const lh_json *a, const lh_json *b)
{
    if (a->type != b->type)
        return 0;
    switch (a->type) {
    case LH_JSON_NULL: return 1;
    case LH_JSON_BOOL: return a->boolean == b->boolean;
    case LH_JSON_NUMBER: return a->number == b->number || (a->number != a->number && b->number != b->number);
    case LH_JSON_STRING: return a->len == b->len && memcmp(a->string, b->string, a->len) == 0;
    default:
        if (a->len != b->len)
            return 0;
        for (size_t i = 0; i < a->len; i++) {
            if (a->type == LH_JSON_OBJECT && strcmp(a->keys[i], b->keys[i]) != 0)
                return 0;
            if (!same(a->items[i], b->items[i]))
                return 0;
        }
        return 1;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    lh_json *j = NULL;
    lh_error err = { 0 };
    if (lh_json_parse((const char *)data, size, "fuzz.json", &j, &err) == LH_OK) {
        lh_sb sb;
        lh_sb_init(&sb);
        print(&sb, j);
        lh_json *k = NULL;
        if (lh_json_parse(sb.buf, sb.len, "printed", &k, &err) != LH_OK || !same(j, k))
            __builtin_trap();
        lh_json_free(k);
        lh_sb_release(&sb);
        long long ll;
        unsigned long long ull;
        double d;
        if (j->type == LH_JSON_ARRAY)
            for (size_t i = 0; i < j->len; i++) {
                lh_json_as_int64(j->items[i], &ll);
                lh_json_as_uint64(j->items[i], &ull);
                lh_json_as_number(j->items[i], &d);
            }
        lh_json_free(j);
    } else if (strncmp(err.msg, "fuzz.json: line ", 16) != 0) {
        __builtin_trap(); /* every refusal names the file and the line */
    }
    j = NULL;
    if (lh_yaml_parse((const char *)data, size, "fuzz.yaml", &j, &err) == LH_OK)
        lh_json_free(j);
    return 0;
}

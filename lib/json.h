/* lib/json.h - a small read-only JSON tree; YAML files read into the same tree.
 *
 * JSON is read by a strict RFC 8259 parser of our own (valid UTF-8, \u
 * escapes with surrogate pairs, the number grammar, nesting bounded,
 * duplicate keys refused); YAML by libyaml. Used for adapter_config.json,
 * safetensors headers, JSONL examples, tokenizer.json and backend replies;
 * YAML for job and weight files. */
#ifndef LH_JSON_H
#define LH_JSON_H

#include <stddef.h>
#include "status.h"

typedef enum lh_json_type {
    LH_JSON_NULL, LH_JSON_BOOL, LH_JSON_NUMBER, LH_JSON_STRING, LH_JSON_ARRAY, LH_JSON_OBJECT
} lh_json_type;

typedef struct lh_json lh_json;
struct lh_json {
    lh_json_type type;
    int boolean;          /* LH_JSON_BOOL */
    double number;        /* LH_JSON_NUMBER */
    char *string;         /* LH_JSON_STRING: NUL-terminated UTF-8 (may hold \0: see len);
                             LH_JSON_NUMBER: the literal as written ("1e3"), so that
                             integers beyond 2^53 read back exactly; BOOL/NULL read
                             from an unquoted scalar: the literal too ("True", "~") */
    size_t len;           /* STRING/NUMBER: byte length of string; ARRAY/OBJECT: item count */
    char **keys;          /* LH_JSON_OBJECT: [len] keys, in file order */
    lh_json **items;      /* ARRAY/OBJECT: [len] values */
    size_t line;          /* 1-based line where the value starts (for messages) */
};

/* Parse text[0..len) as one JSON value. origin (a file name, may be NULL)
 * prefixes error messages: "origin: line 3: <problem> at column 7" (the
 * column counts characters). Duplicate object keys are an error; a UTF-8
 * byte order mark is skipped. */
lh_status lh_json_parse(const char *text, size_t len, const char *origin,
                        lh_json **out, lh_error *err);
/* Read a whole file and parse it. */
lh_status lh_json_parse_file(const char *path, lh_json **out, lh_error *err);
/* YAML (job files, weight files): the same tree. Plain scalars that read as
 * null/true/false or a number get those types; other plain scalars are
 * strings. Aliases and tags are refused. */
lh_status lh_yaml_parse(const char *text, size_t len, const char *origin,
                        lh_json **out, lh_error *err);
lh_status lh_yaml_parse_file(const char *path, lh_json **out, lh_error *err);
/* Frees a whole tree; only for a root returned by the parse functions (the
 * tree lives in one arena). Nesting deeper than 512 levels is refused. */
void lh_json_free(lh_json *j);

/* Object member by key, or NULL (also NULL if obj is not an object). */
const lh_json *lh_json_get(const lh_json *obj, const char *key);
/* Typed accessors: return 1 and set *out when j has that type, else 0. */
int lh_json_as_string(const lh_json *j, const char **out);
int lh_json_as_number(const lh_json *j, double *out);
int lh_json_as_bool(const lh_json *j, int *out);
/* A number that is an exact integer in [INT64_MIN, INT64_MAX]. */
int lh_json_as_int64(const lh_json *j, long long *out);
/* A number that is an exact integer in [0, UINT64_MAX] (safetensors offsets). */
int lh_json_as_uint64(const lh_json *j, unsigned long long *out);

#endif

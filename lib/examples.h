/* lib/examples.h - few-shot example files.
 *
 * JSONL with "input"/"output" per line (also "context"/"completion"), or a
 * YAML/JSON list of such mappings (by extension .yaml/.yml/.json). A missing
 * field, a non-string value or an empty file is an error with the line. */
#ifndef LH_EXAMPLES_H
#define LH_EXAMPLES_H

#include <stddef.h>
#include "status.h"

typedef struct lh_examples {
    char *path;      /* absolute path of the source file (backends may reread it) */
    size_t n;
    char **input;    /* [n] UTF-8 strings */
    char **output;   /* [n] UTF-8 strings */
} lh_examples;

lh_status lh_examples_load(const char *path, lh_examples **out, lh_error *err);
/* An in-memory set (copies the strings); path may be NULL. */
lh_status lh_examples_from_arrays(const char *const *input, const char *const *output, size_t n,
                                  lh_examples **out, lh_error *err);
/* Write as JSONL ({"input":...,"output":...} per line), atomically. */
lh_status lh_examples_write_jsonl(const lh_examples *ex, const char *path, lh_error *err);
void lh_examples_free(lh_examples *ex);

#endif

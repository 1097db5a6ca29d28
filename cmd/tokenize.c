/* cmd/tokenize.c - `lorahub tokenize --base DIR [TEXT...]`: the ids (or,
 * with --tokens, the pieces) a model's tokenizer.json gives each text, one
 * text per output line; the texts are the arguments or, without any, the
 * lines of standard input. By default special tokens written in the text
 * are matched and the post_processor's tokens added, as the tokenizers
 * library's encode does; --no-special turns both off (what the native
 * backend does with example text), --no-template only the second.
 * --decode reads ids instead and prints their text. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/tokenizer/tokenizer.h"
#include "lib/strbuf.h"
#include "cmd.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: lorahub tokenize (--base DIR | --tokenizer FILE) [--tokens] [--no-special]\n"
               "                        [--no-template] [TEXT...]\n"
               "       lorahub tokenize (--base DIR | --tokenizer FILE) --decode [--skip-special]\n"
               "                        [IDS...]\n");
}

typedef struct tok_args {
    const char *base, *file;
    int tokens, no_special, no_template, decode, skip_special;
} tok_args;

/* A piece as one word: backslash, space and control bytes escaped. */
static void put_piece(lh_sb *sb, const char *s)
{
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '\\') lh_sb_append(sb, "\\\\");
        else if (c == '\n') lh_sb_append(sb, "\\n");
        else if (c == '\t') lh_sb_append(sb, "\\t");
        else if (c == '\r') lh_sb_append(sb, "\\r");
        else if (c <= ' ' || c == 0x7F) lh_sb_appendf(sb, "\\x%02x", c);
        else lh_sb_append_n(sb, s, 1);
    }
}

/* One text's line: its ids or pieces. */
static lh_status encode_line(const lh_tokenizer *t, const tok_args *a, const char *text, lh_sb *line,
                             lh_error *err)
{
    int32_t *ids = NULL;
    size_t n = 0;
    lh_status st = lh_tokenizer_encode(t, text, !a->no_special, &ids, &n, err);
    if (!st && !a->no_special && !a->no_template) st = lh_tokenizer_post_process(t, &ids, &n, err);
    for (size_t i = 0; !st && i < n; i++) {
        if (i) lh_sb_append(line, " ");
        if (a->tokens) {
            const char *p = lh_tokenizer_id_token(t, ids[i]);
            put_piece(line, p ? p : "");
        } else {
            lh_sb_appendf(line, "%d", (int)ids[i]);
        }
    }
    free(ids);
    return st;
}

/* One line of ids (spaces or commas between them) back to text. */
static lh_status decode_line(const lh_tokenizer *t, const tok_args *a, const char *text, lh_sb *line,
                             lh_error *err)
{
    size_t cap = strlen(text) / 2 + 1, n = 0;
    int32_t *ids = malloc(cap * sizeof *ids);
    if (!ids) return lh_error_set(err, LH_ERR_NOMEM, "out of memory");
    lh_status st = LH_OK;
    for (const char *p = text; *p && !st;) {
        if (*p == ' ' || *p == ',' || *p == '\t' || *p == '\r') { p++; continue; }
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p || v < 0 || v > INT32_MAX || (*end && !strchr(" ,\t\r", *end)))
            st = lh_error_set(err, LH_ERR_ARG, "'%.40s' is not a list of token ids", text);
        else ids[n++] = (int32_t)v;
        p = end;
    }
    char *out = NULL;
    if (!st) st = lh_tokenizer_decode(t, ids, n, a->skip_special, &out, err);
    if (!st) lh_sb_append(line, out);
    free(out);
    free(ids);
    return st;
}

static int run_text(const lh_tokenizer *t, const tok_args *a, const char *text, const char *where)
{
    lh_error err = {0};
    lh_sb line;
    lh_sb_init(&line);
    lh_status st = a->decode ? decode_line(t, a, text, &line, &err) : encode_line(t, a, text, &line, &err);
    lh_sb_append(&line, "\n");
    if (!st && lh_sb_failed(&line)) st = lh_error_set(&err, LH_ERR_NOMEM, "out of memory");
    if (!st) fwrite(line.buf, 1, line.len, stdout);
    lh_sb_release(&line);
    if (st) {
        if (where) lh_error_prefix(&err, where);
        /* Bad text or ids are bad data (exit 1), not a bad command line. */
        cmd_error("tokenize", "%s", lh_error_message(&err));
        return LH_EXIT_ERROR;
    }
    return LH_EXIT_OK;
}

/* Every line of standard input (without its "\n") as one text. */
static int run_stdin(const lh_tokenizer *t, const tok_args *a)
{
    char *buf = NULL;
    size_t cap = 0;
    ssize_t got;
    long lineno = 0;
    int rc = LH_EXIT_OK;
    while (rc == LH_EXIT_OK && (got = getline(&buf, &cap, stdin)) >= 0) {
        lineno++;
        if (got > 0 && buf[got - 1] == '\n') buf[--got] = 0;
        if (memchr(buf, 0, (size_t)got)) {
            cmd_error("tokenize", "standard input line %ld contains a NUL byte", lineno);
            rc = LH_EXIT_ERROR;
            break;
        }
        char where[64];
        snprintf(where, sizeof where, "standard input line %ld", lineno);
        rc = run_text(t, a, buf, where);
    }
    if (rc == LH_EXIT_OK && ferror(stdin)) {
        cmd_error("tokenize", "cannot read standard input");
        rc = LH_EXIT_ERROR;
    }
    free(buf);
    return rc;
}

enum { O_BASE = 256, O_TOKENIZER, O_TOKENS, O_NOSPECIAL, O_NOTEMPLATE, O_DECODE, O_SKIPSPECIAL };

int cmd_tokenize(int argc, char **argv)
{
    static const struct option opts[] = {
        {"base", required_argument, NULL, O_BASE},
        {"tokenizer", required_argument, NULL, O_TOKENIZER},
        {"tokens", no_argument, NULL, O_TOKENS},
        {"no-special", no_argument, NULL, O_NOSPECIAL},
        {"no-template", no_argument, NULL, O_NOTEMPLATE},
        {"decode", no_argument, NULL, O_DECODE},
        {"skip-special", no_argument, NULL, O_SKIPSPECIAL},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    tok_args a = {0};
    int c;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        switch (c) {
        case O_BASE: a.base = optarg; break;
        case O_TOKENIZER: a.file = optarg; break;
        case O_TOKENS: a.tokens = 1; break;
        case O_NOSPECIAL: a.no_special = 1; break;
        case O_NOTEMPLATE: a.no_template = 1; break;
        case O_DECODE: a.decode = 1; break;
        case O_SKIPSPECIAL: a.skip_special = 1; break;
        case 'h': usage(stdout); return LH_EXIT_OK;
        case ':': return cmd_usage_error("tokenize", "option '%s' needs a value", argv[optind - 1]);
        default: return cmd_usage_error("tokenize", "unknown option '%s'", argv[optind - 1]);
        }
    }
    if (!a.base == !a.file) return cmd_usage_error("tokenize", "give one of --base DIR and --tokenizer FILE");
    if (a.decode && (a.tokens || a.no_special || a.no_template))
        return cmd_usage_error("tokenize", "--decode takes ids; --tokens, --no-special and --no-template are for text");
    if (!a.decode && a.skip_special) return cmd_usage_error("tokenize", "--skip-special goes with --decode");
    char path[4096];
    if (a.base) snprintf(path, sizeof path, "%s/tokenizer.json", a.base);
    else snprintf(path, sizeof path, "%s", a.file);
    lh_error err = {0};
    lh_tokenizer *t = NULL;
    if (lh_tokenizer_load(path, &t, &err)) return cmd_fail("tokenize", &err);
    int rc = LH_EXIT_OK;
    if (optind < argc)
        for (int i = optind; i < argc && rc == LH_EXIT_OK; i++) rc = run_text(t, &a, argv[i], NULL);
    else
        rc = run_stdin(t, &a);
    lh_tokenizer_free(t);
    return rc;
}

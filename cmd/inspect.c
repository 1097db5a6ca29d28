/* cmd/inspect.c - `lorahub inspect [--json] [-v] PATH...`: what an adapter
 * holds (format, base model, ranks, scales, targets per projection type,
 * parameters, dtypes, size), as a table for people or one JSON object per
 * line for scripts. A path that fails prints one line on stderr and nothing
 * on stdout; the others are still shown, and the exit status is 1. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/lorahub.h"
#include "cmd.h"

typedef struct type_stat {
    char name[96];
    size_t count;
    int r_lo, r_hi, din_lo, din_hi, dout_lo, dout_hi;
    float s_lo, s_hi;
} type_stat;

static const char *last_component(const char *name)
{
    const char *d = strrchr(name, '.');
    return d ? d + 1 : name;
}

/* Per projection type, in order of first appearance in the sorted targets. */
static type_stat *collect_types(const lh_adapter *a, size_t *n_out)
{
    type_stat *ts = calloc(a->n_targets ? a->n_targets : 1, sizeof *ts);
    size_t n = 0;
    if (!ts)
        return NULL;
    for (size_t i = 0; i < a->n_targets; i++) {
        const lh_target *t = &a->targets[i];
        const char *tn = last_component(t->name);
        size_t k;
        for (k = 0; k < n && strcmp(ts[k].name, tn) != 0; k++)
            ;
        type_stat *s = &ts[k];
        if (k == n) {
            n++;
            snprintf(s->name, sizeof s->name, "%s", tn);
            s->r_lo = s->r_hi = t->r;
            s->din_lo = s->din_hi = t->d_in;
            s->dout_lo = s->dout_hi = t->d_out;
            s->s_lo = s->s_hi = t->scale;
        }
        s->count++;
#define RANGE(lo, hi, v) do { if ((v) < lo) lo = (v); if ((v) > hi) hi = (v); } while (0)
        RANGE(s->r_lo, s->r_hi, t->r);
        RANGE(s->din_lo, s->din_hi, t->d_in);
        RANGE(s->dout_lo, s->dout_hi, t->d_out);
        RANGE(s->s_lo, s->s_hi, t->scale);
#undef RANGE
    }
    *n_out = n;
    return ts;
}

/* Encoder-decoder adapters (T5: encoder.block.N..., decoder.block.N...):
 * how many targets sit in the encoder, in the decoder outside its
 * cross-attention, and in the cross-attention (EncDecAttention). Returns 0
 * when no target name is of that form. */
typedef struct stack_counts {
    size_t encoder, decoder, cross;
} stack_counts;

static int seq2seq_counts(const lh_adapter *a, stack_counts *c)
{
    memset(c, 0, sizeof *c);
    for (size_t i = 0; i < a->n_targets; i++) {
        const char *n = a->targets[i].name;
        if (!strncmp(n, "encoder.", 8))
            c->encoder++;
        else if (!strncmp(n, "decoder.", 8) && strstr(n, ".EncDecAttention."))
            c->cross++;
        else if (!strncmp(n, "decoder.", 8))
            c->decoder++;
    }
    return c->encoder + c->decoder + c->cross > 0;
}

static void range_i(lh_sb *sb, int lo, int hi)
{
    if (lo == hi)
        lh_sb_appendf(sb, "%d", lo);
    else
        lh_sb_appendf(sb, "%d..%d", lo, hi);
}

static void range_g(lh_sb *sb, float lo, float hi)
{
    if (lo == hi)
        lh_sb_appendf(sb, "%g", (double)lo);
    else
        lh_sb_appendf(sb, "%g..%g", (double)lo, (double)hi);
}

/* 1234567 -> "1,234,567" */
static void thousands(lh_sb *sb, uint64_t v)
{
    char d[32];
    int n = snprintf(d, sizeof d, "%llu", (unsigned long long)v);
    for (int i = 0; i < n; i++) {
        if (i && (n - i) % 3 == 0)
            lh_sb_append(sb, ",");
        lh_sb_append_n(sb, d + i, 1);
    }
}

static void human(lh_sb *sb, const char *path, const lh_adapter *a, const lh_mos *m, int verbose)
{
    size_t nt = 0;
    type_stat *ts = collect_types(a, &nt);
    if (!ts) {
        sb->failed = 1;
        return;
    }
    int r_lo = 0, r_hi = 0;
    float s_lo = 0, s_hi = 0;
    for (size_t i = 0; i < nt; i++) {
        if (!i || ts[i].r_lo < r_lo) r_lo = ts[i].r_lo;
        if (!i || ts[i].r_hi > r_hi) r_hi = ts[i].r_hi;
        if (!i || ts[i].s_lo < s_lo) s_lo = ts[i].s_lo;
        if (!i || ts[i].s_hi > s_hi) s_hi = ts[i].s_hi;
    }
    lh_sb_appendf(sb, "%s\n", path);
    lh_sb_appendf(sb, "  format      %s\n", a->format == LH_FORMAT_MOS ? "mos" : a->format == LH_FORMAT_GGUF ? "gguf" : "peft");
    lh_sb_appendf(sb, "  base model  %s\n", a->base_model ? a->base_model : "-");
    if (a->task_type)
        lh_sb_appendf(sb, "  task type   %s\n", a->task_type);
    lh_sb_append(sb, "  rank        ");
    range_i(sb, r_lo, r_hi);
    lh_sb_appendf(sb, "\n  lora_alpha  %g%s\n", a->lora_alpha, a->use_rslora ? " (rslora)" : "");
    lh_sb_append(sb, "  scale       ");
    range_g(sb, s_lo, s_hi);
    lh_sb_appendf(sb, "\n  targets     %zu\n", a->n_targets);
    stack_counts sc;
    if (seq2seq_counts(a, &sc))
        lh_sb_appendf(sb, "  stacks      encoder %zu, decoder %zu, cross-attention %zu\n",
                      sc.encoder, sc.decoder, sc.cross);
    for (size_t i = 0; i < nt; i++) {
        lh_sb_appendf(sb, "    %-10s %zu layer%s  r ", ts[i].name, ts[i].count,
                      ts[i].count == 1 ? "" : "s");
        range_i(sb, ts[i].r_lo, ts[i].r_hi);
        lh_sb_append(sb, "  ");
        range_i(sb, ts[i].din_lo, ts[i].din_hi);
        lh_sb_append(sb, " -> ");
        range_i(sb, ts[i].dout_lo, ts[i].dout_hi);
        lh_sb_append(sb, "  scale ");
        range_g(sb, ts[i].s_lo, ts[i].s_hi);
        if (m) {
            for (size_t k = 0; k < m->n_types; k++)
                if (!strcmp(m->types[k].name, ts[i].name))
                    lh_sb_appendf(sb, "  %d shards", m->types[k].n_shards);
        }
        lh_sb_append(sb, "\n");
    }
    if (verbose)
        for (size_t i = 0; i < a->n_targets; i++) {
            const lh_target *t = &a->targets[i];
            lh_sb_appendf(sb, "      %s  r %d  %d -> %d  alpha %g  scale %g\n", t->name, t->r,
                          t->d_in, t->d_out, (double)t->alpha, (double)t->scale);
        }
    lh_sb_append(sb, "  parameters  ");
    thousands(sb, lh_adapter_n_params(a));
    if (m) {
        lh_sb_append(sb, " materialized, ");
        thousands(sb, lh_mos_n_pool_params(m));
        lh_sb_append(sb, " stored");
    }
    lh_sb_append(sb, "\n  dtypes      ");
    int first = 1;
    for (int d = LH_DTYPE_COUNT - 1; d >= 0; d--)
        if (a->dtypes & (1u << d)) {
            lh_sb_appendf(sb, "%s%s", first ? "" : ", ", lh_dtype_name((lh_dtype)d));
            first = 0;
        }
    lh_sb_append(sb, first ? "-\n" : "\n");
    if (m)
        lh_sb_appendf(sb, "  mos         l %d, private rank %d, routing %.16s\n", m->l,
                      m->private_rank, m->routing_hash);
    lh_sb_append(sb, "  file size   ");
    thousands(sb, a->file_size);
    lh_sb_append(sb, " bytes\n");
    free(ts);
}

static void json_str_or_null(lh_sb *sb, const char *s)
{
    if (s)
        lh_sb_append_json_string(sb, s);
    else
        lh_sb_append(sb, "null");
}

static void json(lh_sb *sb, const char *path, const lh_adapter *a, const lh_mos *m)
{
    lh_sb_append(sb, "{\"path\":");
    lh_sb_append_json_string(sb, path);
    lh_sb_appendf(sb, ",\"format\":\"%s\",\"base_model\":",
                  a->format == LH_FORMAT_MOS ? "mos" : a->format == LH_FORMAT_GGUF ? "gguf" : "peft");
    json_str_or_null(sb, a->base_model);
    lh_sb_append(sb, ",\"task_type\":");
    json_str_or_null(sb, a->task_type);
    lh_sb_appendf(sb, ",\"r\":%d,\"lora_alpha\":", lh_adapter_max_rank(a));
    lh_sb_append_json_number(sb, a->lora_alpha);
    lh_sb_appendf(sb, ",\"use_rslora\":%s,\"fan_in_fan_out\":%s,\"n_targets\":%zu,"
                  "\"n_params\":%llu,\"dtypes\":[", a->use_rslora ? "true" : "false",
                  a->fan_in_fan_out ? "true" : "false", a->n_targets,
                  (unsigned long long)lh_adapter_n_params(a));
    int first = 1;
    for (int d = LH_DTYPE_COUNT - 1; d >= 0; d--)
        if (a->dtypes & (1u << d)) {
            lh_sb_appendf(sb, "%s\"%s\"", first ? "" : ",", lh_dtype_name((lh_dtype)d));
            first = 0;
        }
    lh_sb_appendf(sb, "],\"file_size\":%llu,\"targets\":[", (unsigned long long)a->file_size);
    for (size_t i = 0; i < a->n_targets; i++) {
        const lh_target *t = &a->targets[i];
        lh_sb_append(sb, i ? ",{\"name\":" : "{\"name\":");
        lh_sb_append_json_string(sb, t->name);
        lh_sb_appendf(sb, ",\"r\":%d,\"d_in\":%d,\"d_out\":%d,\"alpha\":", t->r, t->d_in, t->d_out);
        lh_sb_append_json_number(sb, t->alpha);
        lh_sb_append(sb, ",\"scale\":");
        lh_sb_append_json_number(sb, t->scale);
        lh_sb_append(sb, "}");
    }
    lh_sb_append(sb, "]");
    stack_counts sc;
    if (seq2seq_counts(a, &sc))
        lh_sb_appendf(sb, ",\"seq2seq\":{\"encoder\":%zu,\"decoder\":%zu,\"cross_attention\":%zu}",
                      sc.encoder, sc.decoder, sc.cross);
    if (m) {
        lh_sb_appendf(sb, ",\"mos\":{\"num_layers\":%d,\"l\":%d,\"private_rank\":%d,"
                      "\"routing_hash\":\"%s\",\"n_stored_params\":%llu,\"types\":[",
                      m->num_layers, m->l, m->private_rank, m->routing_hash,
                      (unsigned long long)lh_mos_n_pool_params(m));
        for (size_t i = 0; i < m->n_types; i++) {
            const lh_mos_type *t = &m->types[i];
            lh_sb_append(sb, i ? ",{\"name\":" : "{\"name\":");
            lh_sb_append_json_string(sb, t->name);
            lh_sb_append(sb, ",\"module\":");
            lh_sb_append_json_string(sb, t->module);
            lh_sb_appendf(sb, ",\"d_in\":%d,\"d_out\":%d,\"n_shards\":%d}", t->d_in, t->d_out,
                          t->n_shards);
        }
        lh_sb_append(sb, "]}");
    }
    lh_sb_append(sb, "}\n");
}

/* Load path; for MoS also keep the module itself for the extra fields. */
static lh_status load(const char *path, lh_adapter **a, lh_mos **m, lh_error *err)
{
    *a = NULL;
    *m = NULL;
    if (lh_path_exists(path) && !lh_is_dir(path) && lh_mos_sniff(path)) {
        lh_status st = lh_mos_load(path, m, err);
        if (st == LH_OK)
            st = lh_mos_materialize(*m, a, err);
        if (st == LH_OK) {
            int64_t sz = lh_file_size(path);
            (*a)->file_size = sz > 0 ? (uint64_t)sz : 0;
        }
        return st;
    }
    return lh_adapter_load(path, a, err);
}

static void usage(FILE *f)
{
    fprintf(f, "usage: lorahub inspect [--json] [-v] PATH...\n");
}

int cmd_inspect(int argc, char **argv)
{
    static const struct option opts[] = {
        {"json", no_argument, NULL, 'j'},
        {"verbose", no_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int as_json = 0, verbose = 0, c;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "vh", opts, NULL)) != -1) {
        switch (c) {
        case 'j': as_json = 1; break;
        case 'v': verbose = 1; break;
        case 'h': usage(stdout); return LH_EXIT_OK;
        default:
            return cmd_usage_error("inspect", "unknown option '%s'", argv[optind - 1]);
        }
    }
    if (optind >= argc)
        return cmd_usage_error("inspect", "no adapter given");
    int rc = LH_EXIT_OK, shown = 0;
    for (int i = optind; i < argc; i++) {
        lh_error err = {0};
        lh_adapter *a = NULL;
        lh_mos *m = NULL;
        if (load(argv[i], &a, &m, &err) != LH_OK) {
            rc = cmd_fail("inspect", &err);
            lh_adapter_free(a);
            lh_mos_free(m);
            continue;
        }
        lh_sb sb;
        lh_sb_init(&sb);
        if (as_json) {
            json(&sb, argv[i], a, m);
        } else {
            if (shown)
                lh_sb_append(&sb, "\n");
            human(&sb, argv[i], a, m, verbose);
        }
        if (lh_sb_failed(&sb)) {
            cmd_error("inspect", "%s: out of memory", argv[i]);
            rc = LH_EXIT_ERROR;
        } else {
            fwrite(sb.buf, 1, sb.len, stdout);
            shown++;
        }
        lh_sb_release(&sb);
        lh_adapter_free(a);
        lh_mos_free(m);
    }
    return rc;
}

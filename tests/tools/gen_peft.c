/* tests/tools/gen_peft.c - a seeded random PEFT LoRA directory, written with
 * the safetensors writer directly (not lh_peft_save), so tests of the PEFT
 * reader and of `lorahub inspect/convert` do not depend on the code under
 * test to make their inputs.
 *
 *   gen_peft OUT SEED [--layers N] [--types q_proj:64:64,v_proj:64:32]
 *            [--r R] [--alpha A] [--rslora] [--dtype f32|f16|bf16]
 *            [--layer-rank I=R]... [--base-model NAME] [--no-config]
 *
 * Modules are model.layers.<i>.self_attn.<type> (q/k/v/o_proj) or
 * model.layers.<i>.mlp.<type>. --layer-rank gives layer I rank R through
 * rank_pattern entries. Values are uniform in [-0.5, 0.5). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/lorahub.h"

static uint64_t rng_state;
static uint64_t next_u64(void)
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}
static float uniform(void) { return (float)((next_u64() >> 40) / 16777216.0) - 0.5f; }

static void usage(void)
{
    fprintf(stderr, "usage: gen_peft OUT SEED [--layers N] [--types t:din:dout,...] [--r R] "
                    "[--alpha A] [--rslora] [--dtype f32|f16|bf16] [--layer-rank I=R]... "
                    "[--base-model NAME] [--no-config]\n");
    exit(2);
}

#define MAX_TYPES 16
#define MAX_LAYERS 256

int main(int argc, char **argv)
{
    if (argc < 3)
        usage();
    const char *out = argv[1];
    rng_state = strtoull(argv[2], NULL, 10);
    int layers = 2, r = 4, rslora = 0, no_config = 0;
    double alpha = 8;
    const char *types = "q_proj:32:32,v_proj:32:16", *base = "tiny-llama";
    lh_dtype dt = LH_F32;
    int layer_rank[MAX_LAYERS] = {0};
    for (int i = 3; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--rslora")) { rslora = 1; continue; }
        if (!strcmp(a, "--no-config")) { no_config = 1; continue; }
        if (!v)
            usage();
        i++;
        if (!strcmp(a, "--layers")) layers = atoi(v);
        else if (!strcmp(a, "--types")) types = v;
        else if (!strcmp(a, "--r")) r = atoi(v);
        else if (!strcmp(a, "--alpha")) alpha = atof(v);
        else if (!strcmp(a, "--base-model")) base = v;
        else if (!strcmp(a, "--dtype")) {
            if (!strcmp(v, "f32")) dt = LH_F32;
            else if (!strcmp(v, "f16")) dt = LH_F16;
            else if (!strcmp(v, "bf16")) dt = LH_BF16;
            else usage();
        } else if (!strcmp(a, "--layer-rank")) {
            int li, lr;
            if (sscanf(v, "%d=%d", &li, &lr) != 2 || li < 0 || li >= MAX_LAYERS || lr <= 0)
                usage();
            layer_rank[li] = lr;
        } else
            usage();
    }
    if (layers <= 0 || layers > MAX_LAYERS || r <= 0)
        usage();
    char tnames[MAX_TYPES][32];
    int din[MAX_TYPES], dout[MAX_TYPES], nt = 0;
    char *tl = strdup(types);
    for (char *tok = strtok(tl, ","); tok; tok = strtok(NULL, ",")) {
        if (nt == MAX_TYPES || sscanf(tok, "%31[^:]:%d:%d", tnames[nt], &din[nt], &dout[nt]) != 3)
            usage();
        nt++;
    }
    free(tl);
    size_t n = (size_t)nt * layers * 2;
    lh_st_entry *e = calloc(n, sizeof *e);
    char (*names)[128] = calloc(n, sizeof *names);
    void **bufs = calloc(n, sizeof *bufs);
    lh_sb cfg;
    lh_sb_init(&cfg);
    lh_sb_append(&cfg, "{\n  \"alpha_pattern\": {},\n  \"base_model_name_or_path\": ");
    lh_sb_append_json_string(&cfg, base);
    lh_sb_appendf(&cfg, ",\n  \"bias\": \"none\",\n  \"fan_in_fan_out\": false,\n"
                        "  \"inference_mode\": true,\n  \"lora_alpha\": %g,\n"
                        "  \"lora_dropout\": 0.05,\n  \"peft_type\": \"LORA\",\n  \"r\": %d,\n"
                        "  \"rank_pattern\": {", alpha, r);
    int first = 1;
    size_t k = 0;
    for (int t = 0; t < nt; t++)
        for (int li = 0; li < layers; li++) {
            int rr = layer_rank[li] ? layer_rank[li] : r;
            char mod[96];
            snprintf(mod, sizeof mod, "model.layers.%d.%s.%s", li,
                     strlen(tnames[t]) == 6 && strchr("qkvo", tnames[t][0]) ? "self_attn" : "mlp",
                     tnames[t]);
            if (layer_rank[li]) {
                lh_sb_appendf(&cfg, "%s\n    \"", first ? "" : ",");
                for (const char *p = mod; *p; p++)
                    lh_sb_append(&cfg, *p == '.' ? "\\\\." : (char[2]){*p, 0});
                lh_sb_appendf(&cfg, "\": %d", rr);
                first = 0;
            }
            for (int ab = 0; ab < 2; ab++, k++) {
                snprintf(names[k], sizeof names[k], "base_model.model.%s.lora_%c.weight", mod,
                         ab ? 'B' : 'A');
                e[k].name = names[k];
                e[k].dtype = dt;
                e[k].ndim = 2;
                e[k].shape[0] = ab ? dout[t] : rr;
                e[k].shape[1] = ab ? rr : din[t];
                size_t cnt = (size_t)e[k].shape[0] * (size_t)e[k].shape[1];
                float *f = malloc(cnt * sizeof *f);
                for (size_t q = 0; q < cnt; q++)
                    f[q] = uniform();
                if (dt != LH_F32) {
                    void *h = malloc(cnt * 2);
                    lh_convert_from_f32(dt, f, h, cnt);
                    free(f);
                    bufs[k] = h;
                } else {
                    bufs[k] = f;
                }
                e[k].data = bufs[k];
            }
        }
    lh_sb_append(&cfg, first ? "},\n" : "\n  },\n");
    lh_sb_append(&cfg, "  \"target_modules\": [");
    for (int t = 0; t < nt; t++) {
        lh_sb_append(&cfg, t ? ", " : "");
        lh_sb_append_json_string(&cfg, tnames[t]);
    }
    lh_sb_appendf(&cfg, "],\n  \"task_type\": \"CAUSAL_LM\",\n  \"use_dora\": false,\n"
                        "  \"use_rslora\": %s\n}", rslora ? "true" : "false");
    lh_error err = {0};
    lh_outdir od = {0};
    int rc = 0;
    const char *mk[] = {"format"}, *mv[] = {"pt"};
    char *stp = NULL, *cp = NULL;
    if (lh_outdir_begin(&od, out, 1, &err) != LH_OK ||
        !(stp = lh_outdir_file(&od, "adapter_model.safetensors")) ||
        !(cp = lh_outdir_file(&od, "adapter_config.json")) ||
        lh_st_write(stp, e, n, mk, mv, 1, &err) != LH_OK ||
        (!no_config && lh_write_file_atomic(cp, cfg.buf, cfg.len, &err) != LH_OK) ||
        lh_outdir_commit(&od, &err) != LH_OK) {
        fprintf(stderr, "gen_peft: %s\n", lh_error_message(&err));
        lh_outdir_abort(&od);
        rc = 1;
    }
    free(stp);
    free(cp);
    for (size_t q = 0; q < n; q++)
        free(bufs[q]);
    free(bufs);
    free(names);
    free(e);
    lh_sb_release(&cfg);
    return rc;
}

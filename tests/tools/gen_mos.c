/* tests/tools/gen_mos.c - a seeded random MoS module (lorahub-mos(5)).
 *
 *   gen_mos OUT SEED LAYERS TYPES DIMS R L P [--alpha A] [--shards N]
 *           [--routing-seed S | --same-routing-as FILE] [--rank-scale]
 *           [--base-model NAME]
 *
 * TYPES: comma list (q_proj,v_proj); DIMS: one D, one DIN:DOUT, or a comma
 * list of those, one per type. Pools are uniform in [-0.5, 0.5) from SEED.
 * Routing follows the MoS code: per (layer, type) the public ranks draw
 * (R-P)*L shards without replacement from the P0 public ones, A and B
 * independently; the last P ranks take the layer's private block in order.
 * The routing comes from --routing-seed (default SEED), so modules made
 * with the same routing seed and shapes share routing; --same-routing-as
 * copies it (and all shapes) from an existing file. --rank-scale draws rank
 * scales in [0.5, 1.5) from the routing seed. Default N: the smallest pool
 * that fits, plus L*l spare public shards. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/lorahub.h"
#include "tests/tools/mos_routing.h"

static uint64_t next_u64(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}
static double unit(uint64_t *s) { return (next_u64(s) >> 11) * (1.0 / 9007199254740992.0); }

static void usage(void)
{
    fprintf(stderr, "usage: gen_mos OUT SEED LAYERS TYPES DIMS R L P [--alpha A] [--shards N] "
                    "[--routing-seed S | --same-routing-as FILE] [--rank-scale] "
                    "[--base-model NAME]\n");
    exit(2);
}

static void die(const lh_error *e)
{
    fprintf(stderr, "gen_mos: %s\n", lh_error_message(e));
    exit(1);
}

static uint64_t next_stream(void *state) { return next_u64(state); }

int main(int argc, char **argv)
{
    if (argc < 9)
        usage();
    const char *out = argv[1];
    uint64_t seed = strtoull(argv[2], NULL, 10), rseed = seed;
    int layers = atoi(argv[3]), r = atoi(argv[6]), l = atoi(argv[7]), p = atoi(argv[8]);
    double alpha = 16;
    int shards = 0, rank_scale = 0;
    const char *same = NULL, *base = "tiny-llama";
    for (int i = 9; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--rank-scale")) { rank_scale = 1; continue; }
        if (!v)
            usage();
        i++;
        if (!strcmp(a, "--alpha")) alpha = atof(v);
        else if (!strcmp(a, "--shards")) shards = atoi(v);
        else if (!strcmp(a, "--routing-seed")) rseed = strtoull(v, NULL, 10);
        else if (!strcmp(a, "--same-routing-as")) same = v;
        else if (!strcmp(a, "--base-model")) base = v;
        else usage();
    }
    lh_error err = {0};
    lh_mos *m = NULL;
    if (same) {
        lh_mos *tmpl = NULL;
        if (lh_mos_load(same, &tmpl, &err) != LH_OK || lh_mos_clone_routing(tmpl, &m, &err) != LH_OK)
            die(&err);
        lh_mos_free(tmpl);
        m->lora_alpha = alpha;
    } else {
        lh_mos_type_shape sh[16];
        char names[16][32], mods[16][96];
        int nt = 0, nd = 0, din[16], dout[16];
        char *tl = strdup(argv[4]);
        for (char *tok = strtok(tl, ","); tok; tok = strtok(NULL, ",")) {
            if (nt == 16)
                usage();
            snprintf(names[nt], sizeof names[nt], "%s", tok);
            snprintf(mods[nt], sizeof mods[nt], "model.layers.{i}.%s.%s",
                     strlen(tok) == 6 && strchr("qkvo", tok[0]) ? "self_attn" : "mlp", tok);
            nt++;
        }
        free(tl);
        char *dl = strdup(argv[5]);
        for (char *tok = strtok(dl, ","); tok; tok = strtok(NULL, ",")) {
            if (nd == 16)
                usage();
            if (sscanf(tok, "%d:%d", &din[nd], &dout[nd]) != 2) {
                din[nd] = atoi(tok);
                dout[nd] = din[nd];
            }
            nd++;
        }
        free(dl);
        if (nd != 1 && nd != nt)
            usage();
        for (int t = 0; t < nt; t++) {
            sh[t].name = names[t];
            sh[t].module = mods[t];
            sh[t].d_in = din[nd == 1 ? 0 : t];
            sh[t].d_out = dout[nd == 1 ? 0 : t];
            sh[t].n_shards = shards ? shards : layers * p * l + (r - p) * l + layers * l;
        }
        if (lh_mos_create(sh, (size_t)nt, layers, r, l, p, alpha, &m, &err) != LH_OK)
            die(&err);
        /* routing, from the routing seed only */
        uint64_t rs = rseed ^ 0x5deece66dULL;
        if (mos_fill_random_routing(m, next_stream, &rs) != 0) {
            fprintf(stderr, "gen_mos: out of memory\n");
            exit(1);
        }
        for (size_t ti = 0; rank_scale && ti < m->n_types; ti++)
            for (int q = 0; q < layers * r; q++)
                m->types[ti].rank_scale[q] = (float)(0.5 + unit(&rs));
    }
    uint64_t ps = seed * 0x2545f4914f6cdd1dULL + 1;
    for (size_t ti = 0; ti < m->n_types; ti++) {
        lh_mos_type *t = &m->types[ti];
        size_t na = (size_t)t->n_shards * (t->d_in / m->l), nb = (size_t)t->n_shards * (t->d_out / m->l);
        for (size_t q = 0; q < na; q++)
            t->pool_A[q] = (float)(unit(&ps) - 0.5);
        for (size_t q = 0; q < nb; q++)
            t->pool_B[q] = (float)(unit(&ps) - 0.5);
    }
    free(m->base_model);
    m->base_model = strdup(base);
    if (lh_mos_validate(m, &err) != LH_OK || lh_mos_save(m, out, 1, &err) != LH_OK)
        die(&err);
    lh_mos_free(m);
    return 0;
}

/* tests/check_mos.c - MoS modules: materialization against the formula
 * (and a hand-computed case), every loader check on crafted files, the
 * routing hash, save/load round trip, and shard-space composition against
 * materialize-then-compose (compose/compose.h, LH_MERGE_LORAHUB) and a
 * dense double-precision reference. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "compose/compose.h"
#include "compose/mos_compose.h"
#include "lib/lorahub.h"
#include "lib/sha256.h"
#include "tests/tools/mos_routing.h"

static char tmpdir[256];
static void setup(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/check_mos.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}
static void teardown(void) { lh_rmtree(tmpdir); }

static const char *tpath(const char *name)
{
    static char buf[4][512];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", tmpdir, name);
    return buf[k];
}

static uint64_t rng;
static uint64_t next_u64(void)
{
    uint64_t z = (rng += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}
static uint64_t next_stream(void *unused)
{
    (void)unused;
    return next_u64();
}
static float frand(void) { return (float)((next_u64() >> 40) / 16777216.0) - 0.5f; }

/* L layers, types q (16->16) and v (16->8), r, l, p; random routing in the
 * MoS way from routing_seed and random pools from pool_seed. */
static lh_mos *make_mos(int L, int r, int l, int p, double alpha, uint64_t routing_seed,
                        uint64_t pool_seed, int rank_scale)
{
    int extra = 2;
    lh_mos_type_shape sh[2] = {
        {"v_proj", "model.layers.{i}.self_attn.v_proj", 16, 8, 0},
        {"q_proj", "model.layers.{i}.self_attn.q_proj", 16, 16, 0},
    };
    for (int t = 0; t < 2; t++)
        sh[t].n_shards = L * p * l + (r - p) * l + extra * l;
    lh_mos *m = NULL;
    lh_error err = {0};
    ck_assert_msg(lh_mos_create(sh, 2, L, r, l, p, alpha, &m, &err) == LH_OK, "%s", err.msg);
    ck_assert_str_eq(m->types[0].name, "q_proj"); /* sorted */
    rng = routing_seed;
    ck_assert(mos_fill_random_routing(m, next_stream, NULL) == 0);
    /* after all tables, so the tables do not depend on rank_scale */
    for (size_t ti = 0; rank_scale && ti < m->n_types; ti++)
        for (int q = 0; q < L * r; q++)
            m->types[ti].rank_scale[q] = 0.5f + (frand() + 0.5f);
    rng = pool_seed;
    for (size_t ti = 0; ti < m->n_types; ti++) {
        lh_mos_type *t = &m->types[ti];
        for (size_t q = 0; q < (size_t)t->n_shards * (t->d_in / l); q++)
            t->pool_A[q] = frand();
        for (size_t q = 0; q < (size_t)t->n_shards * (t->d_out / l); q++)
            t->pool_B[q] = frand();
    }
    ck_assert_msg(lh_mos_validate(m, &err) == LH_OK, "%s", err.msg);
    return m;
}

/* ---- materialization ---------------------------------------------------- */

/* d_in = d_out = 4, l = 2, r = 2, p = 1, one layer: small enough to write
 * the expected A and B by hand from the formula in lorahub-mos(5). */
START_TEST(test_materialize_by_hand)
{
    lh_mos_type_shape sh[] = {{"o_proj", "m.{i}.o", 4, 4, 4}};
    lh_mos *m = NULL;
    lh_error err = {0};
    ck_assert_int_eq(lh_mos_create(sh, 1, 1, 2, 2, 1, 6.0, &m, &err), LH_OK);
    lh_mos_type *t = &m->types[0];
    /* pool rows: shard k = {10k+1, 10k+2} (A) and {-(10k+1), -(10k+2)} (B) */
    for (int k = 0; k < 4; k++) {
        t->pool_A[2 * k] = 10 * k + 1;
        t->pool_A[2 * k + 1] = 10 * k + 2;
        t->pool_B[2 * k] = -(10 * k + 1);
        t->pool_B[2 * k + 1] = -(10 * k + 2);
    }
    /* N = 4, p*l = 2 private shards (2, 3), public P0 = 2 */
    int32_t ia[] = {1, 0, 2, 3}, ib[] = {0, 1, 2, 3};
    memcpy(t->idx_A, ia, sizeof ia);
    memcpy(t->idx_B, ib, sizeof ib);
    t->rank_scale[1] = 2.0f;
    ck_assert_msg(lh_mos_validate(m, &err) == LH_OK, "%s", err.msg);
    lh_adapter *a = NULL;
    ck_assert_msg(lh_mos_materialize(m, &a, &err) == LH_OK, "%s", err.msg);
    ck_assert_uint_eq(a->n_targets, 1);
    const lh_target *tg = &a->targets[0];
    ck_assert_str_eq(tg->name, "m.0.o");
    float wantA[2][4] = {{11, 12, 1, 2}, {2 * 21, 2 * 22, 2 * 31, 2 * 32}};
    /* B[k*s_out + q, j] = pool_B[idx_B[j,k], q] */
    float wantB[4][2] = {{-1, -21}, {-2, -22}, {-11, -31}, {-12, -32}};
    for (int j = 0; j < 2; j++)
        for (int c = 0; c < 4; c++)
            ck_assert_float_eq(tg->A[j * 4 + c], wantA[j][c]);
    for (int o = 0; o < 4; o++)
        for (int j = 0; j < 2; j++)
            ck_assert_float_eq(tg->B[o * 2 + j], wantB[o][j]);
    ck_assert_float_eq(tg->scale, 3.0f);
    ck_assert_int_eq(a->format, LH_FORMAT_MOS);
    lh_adapter_free(a);
    lh_mos_free(m);
}
END_TEST

/* The routing hash is SHA-256 of the tables in canonical order. */
START_TEST(test_routing_hash)
{
    lh_mos *m = make_mos(3, 4, 2, 1, 8, 11, 12, 0);
    size_t tab = (size_t)m->r * m->l, nbytes = 0;
    uint8_t *buf = malloc(m->n_types * m->num_layers * tab * 2 * 4);
    for (size_t ti = 0; ti < m->n_types; ti++)
        for (int i = 0; i < m->num_layers; i++)
            for (int ab = 0; ab < 2; ab++)
                for (size_t q = 0; q < tab; q++) {
                    int32_t v = (ab ? m->types[ti].idx_B : m->types[ti].idx_A)[i * tab + q];
                    for (int b = 0; b < 4; b++)
                        buf[nbytes++] = (uint8_t)((uint32_t)v >> (8 * b));
                }
    char hex[65];
    lh_sha256_hex(buf, nbytes, hex);
    ck_assert_str_eq(m->routing_hash, hex);
    free(buf);
    /* the pools do not enter the hash; the tables do */
    lh_mos *m2 = make_mos(3, 4, 2, 1, 8, 11, 99, 0);
    ck_assert_str_eq(m->routing_hash, m2->routing_hash);
    ck_assert(lh_mos_same_routing(m, m2));
    lh_mos *m3 = make_mos(3, 4, 2, 1, 8, 13, 12, 0);
    ck_assert_str_ne(m->routing_hash, m3->routing_hash);
    ck_assert(!lh_mos_same_routing(m, m3));
    lh_mos *m4 = make_mos(3, 4, 2, 1, 8, 11, 12, 1); /* same tables, rank scales differ */
    ck_assert_str_eq(m->routing_hash, m4->routing_hash);
    ck_assert(!lh_mos_same_routing(m, m4));
    lh_mos_free(m);
    lh_mos_free(m2);
    lh_mos_free(m3);
    lh_mos_free(m4);
}
END_TEST

START_TEST(test_save_load)
{
    lh_mos *m = make_mos(4, 4, 2, 1, 16, 5, 6, 1);
    free(m->base_model);
    m->base_model = strdup("tiny-llama");
    lh_error err = {0};
    ck_assert_msg(lh_mos_save(m, tpath("m.safetensors"), 0, &err) == LH_OK, "%s", err.msg);
    ck_assert_int_eq(lh_mos_save(m, tpath("m.safetensors"), 0, &err), LH_ERR_EXISTS);
    ck_assert(lh_mos_sniff(tpath("m.safetensors")));
    lh_mos *b = NULL;
    ck_assert_msg(lh_mos_load(tpath("m.safetensors"), &b, &err) == LH_OK, "%s", err.msg);
    ck_assert(lh_mos_same_routing(m, b));
    ck_assert_str_eq(b->base_model, "tiny-llama");
    ck_assert_str_eq(b->name, "m.safetensors");
    ck_assert(b->lora_alpha == 16);
    for (size_t ti = 0; ti < m->n_types; ti++) {
        size_t na = (size_t)m->types[ti].n_shards * (m->types[ti].d_in / m->l);
        ck_assert_int_eq(memcmp(m->types[ti].pool_A, b->types[ti].pool_A, na * 4), 0);
    }
    /* the dispatcher materializes it */
    lh_adapter *a = NULL, *a2 = NULL;
    ck_assert_msg(lh_adapter_load(tpath("m.safetensors"), &a, &err) == LH_OK, "%s", err.msg);
    ck_assert_msg(lh_mos_materialize(m, &a2, &err) == LH_OK, "%s", err.msg);
    ck_assert_int_eq(a->format, LH_FORMAT_MOS);
    ck_assert_uint_eq(a->n_targets, 8);
    ck_assert(a->file_size > 0);
    for (size_t k = 0; k < a->n_targets; k++) {
        ck_assert_int_eq(memcmp(a->targets[k].A, a2->targets[k].A,
                                (size_t)a->targets[k].r * a->targets[k].d_in * 4), 0);
        ck_assert_float_eq(a->targets[k].scale, 4.0f);
    }
    lh_adapter_free(a);
    lh_adapter_free(a2);
    lh_mos_free(b);
    lh_mos_free(m);
}
END_TEST

/* ---- crafted bad files -------------------------------------------------- */

/* Write m's tensors with an arbitrary config string (and optionally one
 * table entry changed, one tensor dropped or one added), bypassing
 * lh_mos_save's validation. */
typedef struct tamper {
    const char *config;      /* NULL: a correct config without routing_hash */
    const char *drop;        /* tensor name to leave out */
    int add_extra;           /* add tensor "mos.extra" */
    int table_layer, table_entry, table_value; /* idx_A of q_proj; entry < 0: none */
} tamper;

static void raw_write(const lh_mos *m, const char *path, const tamper *tp)
{
    lh_st_entry e[64];
    char names[64][64];
    size_t n = 0;
    int32_t *copy = malloc((size_t)m->num_layers * m->r * m->l * 4);
    memcpy(copy, m->types[0].idx_A, (size_t)m->num_layers * m->r * m->l * 4);
    if (tp->table_entry >= 0)
        copy[(size_t)tp->table_layer * m->r * m->l + tp->table_entry] = tp->table_value;
    for (size_t ti = 0; ti < m->n_types; ti++) {
        const lh_mos_type *t = &m->types[ti];
        for (int k = 0; k < 2; k++) {
            snprintf(names[n], 64, "mos.%s.pool_%c", t->name, k ? 'B' : 'A');
            e[n] = (lh_st_entry){.name = names[n], .dtype = LH_F32, .ndim = 2,
                                 .shape = {t->n_shards, (k ? t->d_out : t->d_in) / m->l},
                                 .data = k ? t->pool_B : t->pool_A};
            n++;
        }
        for (int i = 0; i < m->num_layers; i++)
            for (int k = 0; k < 2; k++) {
                snprintf(names[n], 64, "mos.L%d.%s.idx_%c", i, t->name, k ? 'B' : 'A');
                const int32_t *src = k ? t->idx_B : ti == 0 ? copy : t->idx_A;
                e[n] = (lh_st_entry){.name = names[n], .dtype = LH_I32, .ndim = 2,
                                     .shape = {m->r, m->l},
                                     .data = src + (size_t)i * m->r * m->l};
                n++;
            }
    }
    if (tp->add_extra) {
        snprintf(names[n], 64, "mos.extra");
        e[n] = (lh_st_entry){.name = names[n], .dtype = LH_F32, .ndim = 1, .shape = {2},
                             .data = m->types[0].pool_A};
        n++;
    }
    if (tp->drop)
        for (size_t i = 0; i < n; i++)
            if (!strcmp(e[i].name, tp->drop)) {
                e[i] = e[--n];
                break;
            }
    char cfg[2048];
    if (tp->config)
        snprintf(cfg, sizeof cfg, "%s", tp->config);
    else
        snprintf(cfg, sizeof cfg, "{\"format\":\"mos\",\"version\":1,\"num_layers\":%d,\"r\":%d,"
                 "\"l\":%d,\"private_rank\":%d,\"lora_alpha\":%g,\"types\":{"
                 "\"q_proj\":{\"d_in\":16,\"d_out\":16,\"module\":\"model.layers.{i}.self_attn.q_proj\"},"
                 "\"v_proj\":{\"d_in\":16,\"d_out\":8,\"module\":\"model.layers.{i}.self_attn.v_proj\"}}}",
                 m->num_layers, m->r, m->l, m->private_rank, m->lora_alpha);
    const char *mk[] = {"format", "mos_config"}, *mv[] = {"pt", cfg};
    lh_error err = {0};
    ck_assert_msg(lh_st_write(path, e, n, mk, mv, 2, &err) == LH_OK, "%s", err.msg);
    free(copy);
}

static void expect_load_fail(const lh_mos *m, const tamper *tp, const char *needle)
{
    raw_write(m, tpath("bad.safetensors"), tp);
    lh_mos *b = NULL;
    lh_error err = {0};
    lh_status s = lh_mos_load(tpath("bad.safetensors"), &b, &err);
    ck_assert_msg(s != LH_OK, "loaded a bad file (want '%s')", needle);
    ck_assert_ptr_null(b);
    ck_assert_msg(strstr(err.msg, needle), "message '%s' lacks '%s'", err.msg, needle);
    ck_assert_msg(strstr(err.msg, "bad.safetensors"), "message '%s' lacks the file", err.msg);
    /* and through the dispatcher, as inspect sees it */
    lh_adapter *a = NULL;
    ck_assert_int_ne(lh_adapter_load(tpath("bad.safetensors"), &a, &err), LH_OK);
    ck_assert_ptr_null(a);
}

START_TEST(test_loader_checks)
{
    /* L=2, r=4, l=2, p=1: N = 2*1*2 + 3*2 + 2*2 = 14, P0 = 10;
     * layer 1's private block is [12, 14) */
    lh_mos *m = make_mos(2, 4, 2, 1, 8, 3, 4, 0);
    tamper ok = {.table_entry = -1};
    raw_write(m, tpath("good.safetensors"), &ok);
    lh_mos *b = NULL;
    lh_error err = {0};
    ck_assert_msg(lh_mos_load(tpath("good.safetensors"), &b, &err) == LH_OK, "%s", err.msg);
    ck_assert(lh_mos_same_routing(m, b));
    lh_mos_free(b);

    tamper t = ok;
    t.table_entry = 0, t.table_value = 14;
    expect_load_fail(m, &t, "mos.L0.q_proj.idx_A[0,0] = 14 is outside [0, 10)");
    t.table_value = -1;
    expect_load_fail(m, &t, "is outside");
    /* a public index equal to another one in the same table */
    t.table_entry = 1, t.table_value = m->types[0].idx_A[0];
    expect_load_fail(m, &t, "used twice");
    /* a public rank pointing into the private blocks */
    t.table_entry = 2, t.table_value = 11;
    expect_load_fail(m, &t, "public shards");
    /* layer 1's private rank (j = 3) using layer 0's block */
    t.table_layer = 1, t.table_entry = 6, t.table_value = 10;
    expect_load_fail(m, &t, "mos.L1.q_proj.idx_A[3,0] = 10 is outside [12, 14), the layer's private block");
    t = ok;
    t.drop = "mos.L1.v_proj.idx_B";
    expect_load_fail(m, &t, "mos.L1.v_proj.idx_B");
    t = ok;
    t.add_extra = 1;
    expect_load_fail(m, &t, "unexpected tensor 'mos.extra'");
    t = ok;
    t.config = "{\"format\":\"mos\",\"version\":1,\"num_layers\":2,\"r\":4,\"l\":3,"
               "\"private_rank\":1,\"lora_alpha\":8,\"types\":{\"q_proj\":{\"d_in\":16,"
               "\"d_out\":16,\"module\":\"m.{i}.q\"},\"v_proj\":{\"d_in\":16,\"d_out\":8,"
               "\"module\":\"m.{i}.v\"}}}";
    expect_load_fail(m, &t, "divisible by l = 3");
    t.config = "{\"format\":\"mos\",\"version\":2,\"num_layers\":2,\"r\":4,\"l\":2,"
               "\"private_rank\":1,\"lora_alpha\":8,\"types\":{}}";
    expect_load_fail(m, &t, "version 2");
    t.config = "{\"format\":\"mos\",\"version\":1,\"num_layers\":2,\"r\":4,\"l\":2,"
               "\"private_rank\":5,\"lora_alpha\":8,\"types\":{}}";
    expect_load_fail(m, &t, "private_rank");
    t.config = "{\"format\":\"mos\",\"version\":1,\"num_layers\":2,\"r\":4,\"l\":2,"
               "\"private_rank\":1,\"lora_alpha\":8,\"types\":{\"q_proj\":{\"d_in\":16,"
               "\"d_out\":16,\"module\":\"m.q\"},\"v_proj\":{\"d_in\":16,\"d_out\":8,"
               "\"module\":\"m.{i}.v\"}}}";
    expect_load_fail(m, &t, "{i}");
    t.config = "{\"format\":\"mos\",\"version\":1,\"num_layers\":2,\"r\":4,\"l\":2,"
               "\"private_rank\":1,\"lora_alpha\":8,\"routing_hash\":\"00\",\"types\":{"
               "\"q_proj\":{\"d_in\":16,\"d_out\":16,\"module\":\"m.{i}.q\"},\"v_proj\":"
               "{\"d_in\":16,\"d_out\":8,\"module\":\"m.{i}.v\"}}}";
    expect_load_fail(m, &t, "routing_hash does not match");
    t.config = "{\"format\":\"mos\",\"version\":1,\"num_layers\":2,\"r\":4,\"l\":2,"
               "\"private_rank\":1,\"lora_alpha\":8,\"types\":{"
               "\"q_proj\":{\"d_in\":32,\"d_out\":16,\"module\":\"m.{i}.q\"},\"v_proj\":"
               "{\"d_in\":16,\"d_out\":8,\"module\":\"m.{i}.v\"}}}";
    expect_load_fail(m, &t, "mos.q_proj.pool_A' should be [14, 16]");
    t.config = "{\"format\":\"mos\",\"version\":1,\"num_layers\":2,\"r\":4,\"l\":2,"
               "\"private_rank\":1,\"lora_alpha\":8,\"types\":{"
               "\"q_proj\":{\"d_in\":16,\"d_out\":16,\"n_shards\":15,\"module\":\"m.{i}.q\"},"
               "\"v_proj\":{\"d_in\":16,\"d_out\":8,\"module\":\"m.{i}.v\"}}}";
    expect_load_fail(m, &t, "n_shards does not match the 14 rows");
    t.config = "{\"format\":\"mos\",\"version\":1,\"num_layers\":1000000,\"r\":4,\"l\":2,"
               "\"private_rank\":1,\"lora_alpha\":8,\"types\":{"
               "\"q_proj\":{\"d_in\":16,\"d_out\":16,\"module\":\"m.{i}.q\"},\"v_proj\":"
               "{\"d_in\":16,\"d_out\":8,\"module\":\"m.{i}.v\"}}}";
    expect_load_fail(m, &t, "shards");
    t.config = "{\"format\":\"mos\",\"version\":1,\"num_layers\":2,\"r\":4,\"l\":2,"
               "\"private_rank\":1,\"lora_alpha\":8,\"types\":{"
               "\"q_proj\":{\"d_in\":16,\"d_out\":16,\"module\":\"m.{i}.same\"},\"v_proj\":"
               "{\"d_in\":16,\"d_out\":8,\"module\":\"m.{i}.same\"}}}";
    raw_write(m, tpath("dup.safetensors"), &t);
    lh_adapter *a = NULL;
    ck_assert_int_ne(lh_adapter_load(tpath("dup.safetensors"), &a, &err), LH_OK);
    ck_assert_ptr_nonnull(strstr(err.msg, "m.0.same"));
    lh_mos_free(m);
}
END_TEST

/* ---- composition -------------------------------------------------------- */

static void check_close(const float *x, const float *y, size_t n, double tol, const char *what)
{
    for (size_t i = 0; i < n; i++)
        ck_assert_msg(fabs((double)x[i] - y[i]) <= tol * (1 + fabs((double)y[i])),
                      "%s[%zu]: %.9g vs %.9g", what, i, (double)x[i], (double)y[i]);
}

START_TEST(test_compose_same_routing)
{
    enum { N = 3 };
    lh_mos *m[N];
    double alphas[N] = {8, 16, 4};
    for (int i = 0; i < N; i++)
        m[i] = make_mos(3, 4, 2, 1, alphas[i], 21, 100 + i, 1);
    double w[N] = {0.7, -1.2, 0.4};
    lh_mos *c = NULL;
    lh_error err = {0};
    ck_assert_msg(lh_compose_mos((const lh_mos *const *)m, N, w, &c, &err) == LH_OK, "%s",
                  err.msg);
    ck_assert(lh_mos_same_routing(c, m[0]));
    ck_assert(c->lora_alpha == c->r);
    lh_adapter *got = NULL, *mat[N];
    ck_assert_msg(lh_mos_materialize(c, &got, &err) == LH_OK, "%s", err.msg);
    for (int i = 0; i < N; i++)
        ck_assert_msg(lh_mos_materialize(m[i], &mat[i], &err) == LH_OK, "%s", err.msg);

    /* against compose/compose.h's lorahub method on the materialized modules */
    lh_merge_opts o;
    lh_merge_opts_default(&o);
    o.method = LH_MERGE_LORAHUB;
    lh_adapter *ref = NULL;
    ck_assert_msg(lh_compose((const lh_adapter *const *)mat, N, w, &o, &ref, &err) == LH_OK, "%s",
                  err.msg);
    ck_assert_uint_eq(ref->n_targets, got->n_targets);
    for (size_t k = 0; k < got->n_targets; k++) {
        const lh_target *g = &got->targets[k], *f = &ref->targets[k];
        ck_assert_str_eq(g->name, f->name);
        ck_assert_int_eq(g->r, f->r);
        ck_assert_float_eq(g->scale, 1.0f);
        ck_assert_float_eq(f->scale, 1.0f);
        check_close(g->A, f->A, (size_t)g->r * g->d_in, 1e-5, "A");
        check_close(g->B, f->B, (size_t)g->r * g->d_out, 1e-5, "B");
    }
    /* and against a dense double computation written here:
     * delta = (sum w_i s_i B_i)(sum w_j A_j) */
    for (size_t k = 0; k < got->n_targets; k++) {
        const lh_target *g = &got->targets[k];
        for (int o2 = 0; o2 < g->d_out; o2++)
            for (int in = 0; in < g->d_in; in++) {
                double want = 0, have = 0;
                for (int j = 0; j < g->r; j++) {
                    double bs = 0, as = 0;
                    for (int i = 0; i < N; i++) {
                        const lh_target *ti = &mat[i]->targets[k];
                        bs += w[i] * ti->scale * ti->B[(size_t)o2 * g->r + j];
                        as += w[i] * ti->A[(size_t)j * g->d_in + in];
                    }
                    want += bs * as;
                    have += (double)g->B[(size_t)o2 * g->r + j] * g->A[(size_t)j * g->d_in + in];
                }
                ck_assert_msg(fabs(have - want) <= 1e-5 * (1 + fabs(want)), "%s [%d,%d]: %g vs %g",
                              g->name, o2, in, have, want);
            }
    }
    /* weights all zero: nothing */
    double z[N] = {0, 0, 0};
    lh_mos *cz = NULL;
    ck_assert_int_eq(lh_compose_mos((const lh_mos *const *)m, N, z, &cz, &err), LH_OK);
    for (size_t q = 0; q < (size_t)cz->types[0].n_shards * 8; q++)
        ck_assert_float_eq(cz->types[0].pool_A[q], 0.0f);
    lh_mos_free(cz);
    /* the composed module saves and loads as a valid MoS */
    ck_assert_msg(lh_mos_save(c, tpath("c.safetensors"), 0, &err) == LH_OK, "%s", err.msg);
    lh_mos *back = NULL;
    ck_assert_msg(lh_mos_load(tpath("c.safetensors"), &back, &err) == LH_OK, "%s", err.msg);
    ck_assert(lh_mos_same_routing(back, m[0]));
    lh_mos_free(back);

    lh_adapter_free(ref);
    lh_adapter_free(got);
    for (int i = 0; i < N; i++) {
        lh_adapter_free(mat[i]);
        lh_mos_free(m[i]);
    }
    lh_mos_free(c);
}
END_TEST

START_TEST(test_compose_refuses_other_routing)
{
    lh_mos *m[2] = {make_mos(2, 4, 2, 1, 8, 1, 2, 0), make_mos(2, 4, 2, 1, 8, 3, 4, 0)};
    double w[2] = {1, 1};
    lh_mos *c = NULL;
    lh_error err = {0};
    ck_assert_int_eq(lh_compose_mos((const lh_mos *const *)m, 2, w, &c, &err),
                     LH_ERR_UNSUPPORTED);
    ck_assert_ptr_null(c);
    ck_assert_ptr_nonnull(strstr(err.msg, "different MoS routing"));
    ck_assert_ptr_nonnull(strstr(err.msg, "materialize"));
    double bad[2] = {NAN, 1};
    lh_mos *same[2] = {m[0], m[0]};
    ck_assert_int_eq(lh_compose_mos((const lh_mos *const *)same, 2, bad, &c, &err), LH_ERR_ARG);
    lh_mos_free(m[0]);
    lh_mos_free(m[1]);
}
END_TEST

static Suite *mos_suite(void)
{
    Suite *s = suite_create("mos");
    TCase *tc = tcase_create("mos");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_materialize_by_hand);
    tcase_add_test(tc, test_routing_hash);
    tcase_add_test(tc, test_save_load);
    tcase_add_test(tc, test_loader_checks);
    tcase_add_test(tc, test_compose_same_routing);
    tcase_add_test(tc, test_compose_refuses_other_routing);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(mos_suite());
    srunner_run_all(sr, CK_NORMAL);
    int nf = srunner_ntests_failed(sr);
    srunner_free(sr);
    return nf ? EXIT_FAILURE : EXIT_SUCCESS;
}

/* tests/check_gguf.c - GGUF: the container's rules (every violation refused
 * with its own line naming the file), the writer, and LoRA adapters: PEFT ->
 * GGUF -> PEFT bit-exact on every zoo module in F32 and F16, llama's q/k
 * permutation and its inverse, scale folding, the adapters llama.cpp's own
 * gguf-py wrote (tests/fixtures/gguf, from tools/gguf_fixtures.py) read back
 * as the PEFT directories written beside them, and the refusals (arch
 * mismatch, unknown arch, missing keys, quantized or non-finite tensors). */
#include <check.h>
#include <dirent.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/lorahub.h"
#include "lib/gguf.h"

#define FIX "tests/fixtures/gguf/"
#define ZOO "examples/zoo/"

static char tmpdir[256];

static void setup(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/check_gguf.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static void teardown(void) { lh_rmtree(tmpdir); }

static const char *tmp(const char *name)
{
    static char buf[4][512];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", tmpdir, name);
    return buf[k];
}

/* ---- a byte builder for hand-made containers ---- */

typedef struct bytes {
    uint8_t b[4096];
    size_t n;
} bytes;

static void b_raw(bytes *b, const void *p, size_t n)
{
    ck_assert_uint_le(b->n + n, sizeof b->b);
    memcpy(b->b + b->n, p, n);
    b->n += n;
}

static void b_u32(bytes *b, uint32_t v)
{
    uint8_t x[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    b_raw(b, x, 4);
}

static void b_u64(bytes *b, uint64_t v)
{
    b_u32(b, (uint32_t)v);
    b_u32(b, (uint32_t)(v >> 32));
}

static void b_str(bytes *b, const char *s)
{
    b_u64(b, strlen(s));
    b_raw(b, s, strlen(s));
}

static void b_hdr(bytes *b, uint32_t version, uint64_t n_tensors, uint64_t n_kv)
{
    b->n = 0;
    b_raw(b, "GGUF", 4);
    b_u32(b, version);
    b_u64(b, n_tensors);
    b_u64(b, n_kv);
}

static void b_kv_u32(bytes *b, const char *key, uint32_t v)
{
    b_str(b, key);
    b_u32(b, LH_GGUF_UINT32);
    b_u32(b, v);
}

static void b_kv_str(bytes *b, const char *key, const char *v)
{
    b_str(b, key);
    b_u32(b, LH_GGUF_STRING);
    b_str(b, v);
}

/* A 2-d tensor info. */
static void b_info(bytes *b, const char *name, int64_t ne0, int64_t ne1, uint32_t type,
                   uint64_t off)
{
    b_str(b, name);
    b_u32(b, 2);
    b_u64(b, (uint64_t)ne0);
    b_u64(b, (uint64_t)ne1);
    b_u32(b, type);
    b_u64(b, off);
}

static void b_pad(bytes *b, size_t align)
{
    while (b->n % align)
        b->b[b->n++] = 0;
}

static void b_zeros(bytes *b, size_t n)
{
    ck_assert_uint_le(b->n + n, sizeof b->b);
    memset(b->b + b->n, 0, n);
    b->n += n;
}

/* The file must be refused with a message naming it and holding want. */
static void refused(const bytes *b, const char *want)
{
    lh_gguf *g = NULL;
    lh_error err = {0};
    lh_status st = lh_gguf_parse(b->b, b->n, "bad.gguf", LH_GGUF_FULL, &g, &err);
    ck_assert_msg(st != LH_OK, "accepted a file that should fail with '%s'", want);
    ck_assert_ptr_null(g);
    ck_assert_msg(!strncmp(err.msg, "bad.gguf: ", 10), "message does not name the file: %s",
                  err.msg);
    ck_assert_msg(strstr(err.msg, want), "message '%s' lacks '%s'", err.msg, want);
    ck_assert_ptr_null(strchr(err.msg, '\n'));
}

/* A valid file: one key, two F32 tensors [4, 2] and [3, 1] (32 and 12 bytes). */
static void valid(bytes *b)
{
    b_hdr(b, 3, 2, 1);
    b_kv_str(b, "general.architecture", "llama");
    b_info(b, "a", 4, 2, LH_GGML_F32, 0);
    b_info(b, "b", 3, 1, LH_GGML_F32, 32);
    b_pad(b, 32);
    for (int i = 0; i < 8; i++) {
        float f = (float)i;
        b_raw(b, &f, 4);
    }
    b_zeros(b, 32);
}

START_TEST(test_container_valid)
{
    bytes b;
    valid(&b);
    lh_gguf *g = NULL;
    lh_error err = {0};
    ck_assert_msg(lh_gguf_parse(b.b, b.n, "ok.gguf", LH_GGUF_FULL, &g, &err) == LH_OK, "%s",
                  err.msg);
    ck_assert_uint_eq(g->version, 3);
    ck_assert_uint_eq(g->alignment, 32);
    ck_assert_uint_eq(g->n_kv, 1);
    ck_assert_str_eq(lh_gguf_find_kv(g, "general.architecture")->str, "llama");
    ck_assert_uint_eq(g->n_tensors, 2);
    const lh_gguf_tensor *t = lh_gguf_find_tensor(g, "a");
    ck_assert_int_eq(t->ne[0], 4);
    ck_assert_int_eq(t->ne[1], 2);
    ck_assert_uint_eq(t->nbytes, 32);
    ck_assert_float_eq(((const float *)t->data)[7], 7.0f);
    ck_assert_uint_eq(lh_gguf_find_tensor(g, "b")->offset, 32);
    lh_gguf_free(g);
    /* the last tensor's padding may be missing from the file? no: ggml reads
     * the padded size, so a file cut inside it is refused (below) */
}
END_TEST

START_TEST(test_container_header_rules)
{
    bytes b;
    valid(&b);
    memcpy(b.b, "GGUX", 4);
    refused(&b, "not a GGUF file (magic 'GGUX'");
    b.n = 3;
    refused(&b, "not a GGUF file");
    valid(&b);
    b.n = 6;
    refused(&b, "truncated: the version");
    b_hdr(&b, 1, 0, 0);
    refused(&b, "GGUF version 1 is not supported");
    b_hdr(&b, 4, 0, 0);
    refused(&b, "GGUF version 4 is not supported");
    b_hdr(&b, 0x03000000u, 0, 0);
    refused(&b, "byte-swapped");
    b_hdr(&b, 3, 0, 1000000000000ull);
    refused(&b, "1000000000000 key/value pairs and 0 tensors cannot fit");
    b_hdr(&b, 3, 5, 0);
    refused(&b, "5 tensors cannot fit");
}
END_TEST

START_TEST(test_container_kv_rules)
{
    bytes b;
    b_hdr(&b, 3, 0, 2);
    b_kv_u32(&b, "k", 1);
    b_kv_u32(&b, "k", 2);
    b_zeros(&b, 16);
    refused(&b, "duplicate key 'k'");
    b_hdr(&b, 3, 0, 1);
    b_str(&b, "");
    b_u32(&b, LH_GGUF_UINT32);
    b_u32(&b, 0);
    b_zeros(&b, 16);
    refused(&b, "key 0 is empty");
    b_hdr(&b, 3, 0, 1);
    b_u64(&b, 3);
    b_raw(&b, "a\0b", 3);
    b_u32(&b, LH_GGUF_UINT32);
    b_u32(&b, 0);
    b_zeros(&b, 16);
    refused(&b, "key 0 holds a NUL byte");
    b_hdr(&b, 3, 0, 1);
    b_u64(&b, 1ull << 40);
    b_zeros(&b, 16);
    refused(&b, "key 0 is 1099511627776 bytes long, over GGUF's limit");
    b_hdr(&b, 3, 0, 1);
    b_u64(&b, 100);
    b_raw(&b, "abc", 3);
    b_zeros(&b, 14);
    refused(&b, "truncated: key 0 runs past the end");
    b_hdr(&b, 3, 0, 1);
    b_str(&b, "t");
    b_u32(&b, 13);
    b_zeros(&b, 16);
    refused(&b, "key 't' has unknown value type 13");
    b_hdr(&b, 3, 0, 1);
    b_str(&b, "t");
    b_u32(&b, LH_GGUF_ARRAY);
    b_u32(&b, LH_GGUF_ARRAY);
    b_u64(&b, 1);
    b_zeros(&b, 16);
    refused(&b, "key 't' is an array of arrays");
    b_hdr(&b, 3, 0, 1);
    b_str(&b, "t");
    b_u32(&b, LH_GGUF_ARRAY);
    b_u32(&b, LH_GGUF_UINT32);
    b_u64(&b, 1ull << 31);
    b_zeros(&b, 16);
    refused(&b, "key 't' is an array of 2147483648 elements, over GGUF's limit");
    b_hdr(&b, 3, 0, 1);
    b_str(&b, "t");
    b_u32(&b, LH_GGUF_ARRAY);
    b_u32(&b, LH_GGUF_UINT64);
    b_u64(&b, 1000);
    b_zeros(&b, 16);
    refused(&b, "the 1000 values of key 't' runs past the end");
    b_hdr(&b, 3, 0, 1);
    b_str(&b, "t");
    b_u32(&b, LH_GGUF_ARRAY);
    b_u32(&b, LH_GGUF_STRING);
    b_u64(&b, 2);
    b_str(&b, "x");
    b_u64(&b, 1000);
    b_zeros(&b, 8);
    refused(&b, "a string of key 't' runs past the end");
    b_hdr(&b, 3, 0, 1);
    b_str(&b, "flag");
    b_u32(&b, LH_GGUF_BOOL);
    b_raw(&b, "\2", 1);
    b_zeros(&b, 16);
    refused(&b, "key 'flag' holds bool value 2");
    b_hdr(&b, 3, 0, 1);
    b_str(&b, "general.alignment");
    b_u32(&b, LH_GGUF_FLOAT32);
    b_u32(&b, 0x42000000u);
    b_zeros(&b, 16);
    refused(&b, "general.alignment is f32, not u32");
    b_hdr(&b, 3, 0, 1);
    b_kv_u32(&b, "general.alignment", 48);
    b_zeros(&b, 16);
    refused(&b, "general.alignment 48 is not a power of 2");
}
END_TEST

START_TEST(test_container_tensor_rules)
{
    bytes b;
    char name[80];
    memset(name, 'n', 64);
    name[64] = '\0';
    b_hdr(&b, 3, 1, 0);
    b_info(&b, name, 4, 1, LH_GGML_F32, 0);
    b_zeros(&b, 64);
    refused(&b, "is 64 bytes (GGUF allows 63)");
    name[63] = '\0'; /* 63 bytes: allowed */
    b_hdr(&b, 3, 1, 0);
    b_info(&b, name, 4, 1, LH_GGML_F32, 0);
    b_pad(&b, 32);
    b_zeros(&b, 32);
    lh_gguf *g = NULL;
    lh_error err = {0};
    ck_assert_msg(lh_gguf_parse(b.b, b.n, "ok.gguf", LH_GGUF_FULL, &g, &err) == LH_OK, "%s",
                  err.msg);
    lh_gguf_free(g);
    b_hdr(&b, 3, 1, 0);
    b_str(&b, "");
    b_zeros(&b, 40);
    refused(&b, "tensor 0 has an empty name");
    b_hdr(&b, 3, 1, 0);
    b_str(&b, "t");
    b_u32(&b, 5);
    b_zeros(&b, 60);
    refused(&b, "tensor 't' has 5 dimensions (at most 4)");
    b_hdr(&b, 3, 1, 0);
    b_info(&b, "t", -3, 1, LH_GGML_F32, 0);
    b_zeros(&b, 32);
    refused(&b, "tensor 't' dimension 0 is negative (-3)");
    b_hdr(&b, 3, 1, 0);
    b_info(&b, "t", 1ll << 62, 4, LH_GGML_F32, 0);
    b_zeros(&b, 32);
    refused(&b, "tensor 't' has more than 2^63 elements");
    b_hdr(&b, 3, 1, 0);
    b_info(&b, "t", 1ll << 61, 1, LH_GGML_F32, 0);
    b_zeros(&b, 32);
    refused(&b, "tensor 't' is over 2^63 bytes");
    b_hdr(&b, 3, 1, 0);
    b_info(&b, "t", 4, 1, 4, 0);
    b_zeros(&b, 32);
    refused(&b, "tensor 't' has unknown ggml type 4");
    b_hdr(&b, 3, 1, 0);
    b_info(&b, "t", 10, 1, 8 /* Q8_0 */, 0);
    b_zeros(&b, 64);
    refused(&b, "tensor 't' of type Q8_0 has rows of 10 elements, not a multiple of its block "
                "size 32");
    b_hdr(&b, 3, 2, 0);
    b_info(&b, "t", 4, 1, LH_GGML_F32, 0);
    b_info(&b, "t", 4, 1, LH_GGML_F32, 32);
    b_pad(&b, 32);
    b_zeros(&b, 64);
    refused(&b, "duplicate tensor name 't'");
    b_hdr(&b, 3, 2, 0);
    b_info(&b, "a", 4, 1, LH_GGML_F32, 0);
    b_info(&b, "b", 4, 1, LH_GGML_F32, 16); /* 16 bytes padded to 32 */
    b_pad(&b, 32);
    b_zeros(&b, 64);
    refused(&b, "tensor 'b' has data offset 16, expected 32");
    b_hdr(&b, 3, 1, 0);
    b_info(&b, "a", 4, 1, LH_GGML_F32, 0);
    b_pad(&b, 32);
    b_zeros(&b, 16); /* the data without its padding */
    refused(&b, "tensor 'a' (16 bytes at offset 0) runs past the end of the file");
    b_hdr(&b, 3, 1, 0);
    b_info(&b, "a", 4, 1, LH_GGML_F32, 0);
    refused(&b, "the padding before the tensor data");
}
END_TEST

START_TEST(test_container_alignment)
{
    /* general.alignment 64: the data starts at 64 and offsets step by 64 */
    bytes b;
    b_hdr(&b, 3, 2, 1);
    b_kv_u32(&b, "general.alignment", 64);
    b_info(&b, "a", 4, 1, LH_GGML_F32, 0);
    b_info(&b, "b", 4, 1, LH_GGML_F32, 64);
    b_pad(&b, 64);
    size_t start = b.n;
    b_zeros(&b, 128);
    lh_gguf *g = NULL;
    lh_error err = {0};
    ck_assert_msg(lh_gguf_parse(b.b, b.n, "ok.gguf", LH_GGUF_FULL, &g, &err) == LH_OK, "%s",
                  err.msg);
    ck_assert_uint_eq(g->alignment, 64);
    ck_assert_uint_eq(g->data_offset, start);
    ck_assert_ptr_eq(lh_gguf_find_tensor(g, "b")->data, b.b + start + 64);
    lh_gguf_free(g);
    /* KV_ONLY stops before the tensor infos (a model's header) */
    b.n = start - 1;
    ck_assert(lh_gguf_parse(b.b, b.n, "ok.gguf", LH_GGUF_KV_ONLY, &g, &err) == LH_OK);
    ck_assert_uint_eq(g->n_tensors, 0);
    lh_gguf_free(g);
}
END_TEST

START_TEST(test_writer)
{
    float a[6] = {1, 2, 3, 4, 5, 6};
    uint16_t h[3] = {0x3c00, 0x4000, 0xc000};
    lh_gguf_out_kv kv[] = {
        {.key = "general.architecture", .type = LH_GGUF_STRING, .str = "t5"},
        {.key = "x.count", .type = LH_GGUF_UINT32, .u32 = 7},
        {.key = "x.f", .type = LH_GGUF_FLOAT32, .f32 = 0.5f},
    };
    lh_gguf_out_tensor t[] = {
        {.name = "a", .type = LH_GGML_F32, .n_dims = 2, .ne = {3, 2}, .data = a},
        {.name = "h", .type = LH_GGML_F16, .n_dims = 1, .ne = {3}, .data = h},
    };
    lh_error err = {0};
    ck_assert_msg(lh_gguf_write(tmp("w.gguf"), kv, 3, t, 2, &err) == LH_OK, "%s", err.msg);
    lh_gguf *g = NULL;
    ck_assert_msg(lh_gguf_open(tmp("w.gguf"), LH_GGUF_FULL, &g, &err) == LH_OK, "%s", err.msg);
    int64_t v;
    ck_assert(lh_gguf_kv_int(lh_gguf_find_kv(g, "x.count"), &v) && v == 7);
    ck_assert_str_eq(lh_gguf_find_kv(g, "general.architecture")->str, "t5");
    ck_assert_int_eq(memcmp(lh_gguf_find_tensor(g, "a")->data, a, sizeof a), 0);
    ck_assert_int_eq(memcmp(lh_gguf_find_tensor(g, "h")->data, h, sizeof h), 0);
    ck_assert_uint_eq(lh_gguf_find_tensor(g, "h")->offset, 32);
    ck_assert_uint_eq(g->size, g->data_offset + 64);
    lh_gguf_free(g);
    /* the same bytes in memory */
    uint8_t *mem;
    size_t n;
    ck_assert(lh_gguf_serialize(kv, 3, t, 2, &mem, &n, &err) == LH_OK);
    char *file;
    size_t flen;
    ck_assert(lh_read_file(tmp("w.gguf"), &file, &flen, &err) == LH_OK);
    ck_assert_uint_eq(n, flen);
    ck_assert_int_eq(memcmp(mem, file, n), 0);
    free(mem);
    free(file);
    /* refusals happen before anything is written */
    lh_gguf_out_tensor dup[] = {t[0], t[0]};
    ck_assert(lh_gguf_write(tmp("dup.gguf"), kv, 3, dup, 2, &err) == LH_ERR_ARG);
    ck_assert_ptr_nonnull(strstr(err.msg, "tensor 'a' given twice"));
    ck_assert(!lh_path_exists(tmp("dup.gguf")));
    lh_gguf_out_kv dk[] = {kv[1], kv[1]};
    ck_assert(lh_gguf_write(tmp("dup.gguf"), dk, 2, t, 2, &err) == LH_ERR_ARG);
    ck_assert_ptr_nonnull(strstr(err.msg, "key 'x.count' given twice"));
    char longname[70];
    memset(longname, 'x', 64);
    longname[64] = '\0';
    lh_gguf_out_tensor lt[] = {{.name = longname, .type = LH_GGML_F32, .n_dims = 1, .ne = {1},
                                .data = a}};
    ck_assert(lh_gguf_write(tmp("long.gguf"), kv, 1, lt, 1, &err) == LH_ERR_ARG);
    ck_assert(!lh_path_exists(tmp("long.gguf")));
    /* no temp file is left behind in the directory */
    DIR *d = opendir(tmpdir);
    struct dirent *e;
    while ((e = readdir(d)))
        ck_assert_msg(!strstr(e->d_name, ".tmp"), "left %s", e->d_name);
    closedir(d);
}
END_TEST

/* ---- LoRA ---- */

static void arch_llama(lh_gguf_arch *a, int n_head, int n_kv)
{
    memset(a, 0, sizeof *a);
    strcpy(a->arch, "llama");
    a->n_layers = 4;
    a->n_head = n_head;
    a->n_head_kv = n_kv;
    a->ffn_gated = -1;
}

/* Every target of x and y equal bit for bit (names, shapes, A, B, scale). */
static void same_adapter(const lh_adapter *x, const lh_adapter *y, const char *what)
{
    ck_assert_msg(x->n_targets == y->n_targets, "%s: %zu vs %zu targets", what, x->n_targets,
                  y->n_targets);
    for (size_t i = 0; i < x->n_targets; i++) {
        const lh_target *s = &x->targets[i], *t = &y->targets[i];
        ck_assert_str_eq(s->name, t->name);
        ck_assert_msg(s->r == t->r && s->d_in == t->d_in && s->d_out == t->d_out,
                      "%s: %s shape", what, s->name);
        ck_assert_msg(!memcmp(s->A, t->A, (size_t)s->r * s->d_in * sizeof(float)),
                      "%s: %s A differs", what, s->name);
        ck_assert_msg(!memcmp(s->B, t->B, (size_t)s->d_out * s->r * sizeof(float)),
                      "%s: %s B differs", what, s->name);
        ck_assert_msg(s->scale == t->scale, "%s: %s scale %g vs %g", what, s->name,
                      (double)s->scale, (double)t->scale);
    }
}

static int same_file(const char *p, const char *q)
{
    char *a, *b;
    size_t na, nb;
    lh_error err = {0};
    ck_assert(lh_read_file(p, &a, &na, &err) == LH_OK);
    ck_assert(lh_read_file(q, &b, &nb, &err) == LH_OK);
    int same = na == nb && !memcmp(a, b, na);
    free(a);
    free(b);
    return same;
}

START_TEST(test_zoo_round_trip)
{
    lh_gguf_arch arch;
    lh_error err = {0};
    ck_assert_msg(lh_gguf_arch_from_config(ZOO "base", &arch, &err) == LH_OK, "%s", err.msg);
    ck_assert_str_eq(arch.arch, "llama");
    ck_assert_int_eq(arch.n_layers, 4);
    ck_assert_int_eq(arch.n_head, 4);
    ck_assert_int_eq(arch.n_head_kv, 2);
    DIR *d = opendir(ZOO "modules");
    ck_assert_ptr_nonnull(d);
    struct dirent *e;
    int n = 0;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        char path[512];
        snprintf(path, sizeof path, ZOO "modules/%s", e->d_name);
        lh_adapter *peft = NULL;
        ck_assert_msg(lh_adapter_load(path, &peft, &err) == LH_OK, "%s", err.msg);
        static const lh_dtype dts[] = {LH_F32, LH_F16};
        for (int k = 0; k < 2; k++) {
            lh_gguf_save_opts so = {.dtype = dts[k], .force = 1};
            ck_assert_msg(lh_gguf_save_lora_opts(peft, &arch, tmp("m.gguf"), &so, &err) == LH_OK,
                          "%s", err.msg);
            lh_adapter *own = NULL, *based = NULL;
            ck_assert_msg(lh_gguf_load_lora(tmp("m.gguf"), NULL, &own, &err) == LH_OK, "%s",
                          err.msg);
            ck_assert_msg(lh_gguf_load_lora(tmp("m.gguf"), &arch, &based, &err) == LH_OK, "%s",
                          err.msg);
            same_adapter(peft, own, path);
            same_adapter(peft, based, path);
            ck_assert_int_eq(own->dtype, dts[k]);
            ck_assert_int_eq(own->format, LH_FORMAT_GGUF);
            /* and written as PEFT, byte for byte the file the original gives */
            lh_peft_save_opts po = {.dtype = LH_F16, .force = 1};
            ck_assert(lh_peft_save(peft, tmp("p1"), &po, &err) == LH_OK);
            ck_assert(lh_peft_save(own, tmp("p2"), &po, &err) == LH_OK);
            ck_assert_msg(same_file(tmp("p1/adapter_model.safetensors"),
                                    tmp("p2/adapter_model.safetensors")), "%s", path);
            ck_assert(same_file(tmp("p1/adapter_config.json"), tmp("p2/adapter_config.json")));
            lh_adapter_free(own);
            lh_adapter_free(based);
        }
        lh_adapter_free(peft);
        n++;
    }
    closedir(d);
    ck_assert_int_ge(n, 20);
}
END_TEST

/* An adapter with q, k and v of one layer: B[i][j] = i + j/100. */
static lh_adapter *qkv_adapter(int q_out, int kv_out, int r)
{
    lh_target_shape sh[] = {
        {"model.layers.1.self_attn.q_proj", r, 8, q_out},
        {"model.layers.1.self_attn.k_proj", r, 8, kv_out},
        {"model.layers.1.self_attn.v_proj", r, 8, kv_out},
    };
    lh_adapter *a = NULL;
    lh_error err = {0};
    ck_assert(lh_adapter_create(sh, 3, &a, &err) == LH_OK);
    for (size_t t = 0; t < a->n_targets; t++) {
        lh_target *x = &a->targets[t];
        for (int i = 0; i < x->d_out; i++)
            for (int j = 0; j < r; j++)
                x->B[i * r + j] = (float)i + (float)j / 100;
        for (int i = 0; i < r * x->d_in; i++)
            x->A[i] = (float)i / 8;
    }
    return a;
}

static const float *gguf_rows(const lh_gguf *g, const char *name)
{
    const lh_gguf_tensor *t = lh_gguf_find_tensor(g, name);
    ck_assert_msg(t != NULL, "no tensor %s", name);
    ck_assert_uint_eq(t->type, LH_GGML_F32);
    return t->data;
}

START_TEST(test_permutation)
{
    /* 4 heads of 4 rows for q, 2 of 4 for k: within each head, llama.cpp's
     * reshape(heads, 2, hd/2).swapaxes(1, 2) puts HF rows 0,2,1,3 at GGUF
     * rows 0,1,2,3 (worked by hand from conversion/llama.py) */
    lh_adapter *a = qkv_adapter(16, 8, 2);
    lh_gguf_arch arch;
    arch_llama(&arch, 4, 2);
    lh_error err = {0};
    ck_assert_msg(lh_gguf_save_lora(a, &arch, tmp("p.gguf"), &err) == LH_OK, "%s", err.msg);
    lh_gguf *g = NULL;
    ck_assert(lh_gguf_open(tmp("p.gguf"), LH_GGUF_FULL, &g, &err) == LH_OK);
    static const int hf_row_of[4] = {0, 2, 1, 3};
    const float *q = gguf_rows(g, "blk.1.attn_q.weight.lora_b");
    for (int h = 0; h < 4; h++)
        for (int p = 0; p < 4; p++)
            ck_assert_float_eq(q[(h * 4 + p) * 2 + 1], (float)(h * 4 + hf_row_of[p]) + 0.01f);
    const float *k = gguf_rows(g, "blk.1.attn_k.weight.lora_b");
    for (int h = 0; h < 2; h++)
        for (int p = 0; p < 4; p++)
            ck_assert_float_eq(k[(h * 4 + p) * 2], (float)(h * 4 + hf_row_of[p]));
    const float *v = gguf_rows(g, "blk.1.attn_v.weight.lora_b");
    for (int i = 0; i < 8; i++)
        ck_assert_float_eq(v[i * 2], (float)i); /* v is not permuted */
    const float *qa = gguf_rows(g, "blk.1.attn_q.weight.lora_a");
    ck_assert_int_eq(memcmp(qa, a->targets[1].A, 16 * sizeof(float)), 0); /* nor A */
    lh_gguf_free(g);
    /* the inverse on other head layouts: 1 head of 16, 8 heads of 2 (MHA) */
    static const int layouts[][3] = {{16, 16, 1}, {16, 16, 8}, {24, 8, 3}};
    for (size_t l = 0; l < 3; l++) {
        lh_adapter *b = qkv_adapter(layouts[l][0], layouts[l][1], 3);
        int kv = layouts[l][2] * layouts[l][1] / layouts[l][0];
        arch_llama(&arch, layouts[l][2], kv ? kv : 1);
        ck_assert_msg(lh_gguf_save_lora(b, &arch, tmp("p.gguf"), &err) == LH_OK, "%s", err.msg);
        lh_adapter *back = NULL;
        ck_assert_msg(lh_gguf_load_lora(tmp("p.gguf"), &arch, &back, &err) == LH_OK, "%s",
                      err.msg);
        same_adapter(b, back, "layout");
        lh_adapter_free(back);
        lh_adapter_free(b);
    }
    /* qwen2 does not permute: the GGUF rows are HF's */
    strcpy(arch.arch, "qwen2");
    ck_assert(lh_gguf_save_lora(a, &arch, tmp("q.gguf"), &err) == LH_OK);
    ck_assert(lh_gguf_open(tmp("q.gguf"), LH_GGUF_FULL, &g, &err) == LH_OK);
    q = gguf_rows(g, "blk.1.attn_q.weight.lora_b");
    ck_assert_int_eq(memcmp(q, a->targets[1].B, 32 * sizeof(float)), 0);
    lh_gguf_free(g);
    /* heads that do not divide the rows into even halves */
    arch_llama(&arch, 3, 3);
    ck_assert(lh_gguf_save_lora(a, &arch, tmp("bad.gguf"), &err) == LH_ERR_SHAPE);
    ck_assert_ptr_nonnull(strstr(err.msg, "8 output rows, which 3 heads do not split"));
    ck_assert(!lh_path_exists(tmp("bad.gguf")));
    lh_adapter_free(a);
}
END_TEST

START_TEST(test_scale_folding)
{
    /* three targets share alpha/r = 2 (r 4, alpha 8); one has r 2 with scale
     * 0.75 (rsLoRA-like): alpha 8 is written, the odd one's B absorbs
     * 0.75 / (8/2) and reads back with scale 4 */
    lh_target_shape sh[] = {
        {"model.layers.0.self_attn.q_proj", 4, 8, 8}, {"model.layers.0.self_attn.v_proj", 4, 8, 8},
        {"model.layers.0.mlp.up_proj", 4, 8, 12}, {"model.layers.0.mlp.down_proj", 2, 12, 8},
    };
    lh_adapter *a = NULL;
    lh_error err = {0};
    ck_assert(lh_adapter_create(sh, 4, &a, &err) == LH_OK);
    for (size_t t = 0; t < a->n_targets; t++) {
        lh_target *x = &a->targets[t];
        for (int i = 0; i < x->r * x->d_in; i++)
            x->A[i] = (float)((i * 7 + (int)t) % 13) / 16 - 0.375f;
        for (int i = 0; i < x->r * x->d_out; i++)
            x->B[i] = (float)((i * 5 + (int)t) % 11) / 8 - 0.625f;
        int odd = !strcmp(x->name, "model.layers.0.mlp.down_proj");
        x->alpha = odd ? 1.5f : 8.0f;
        x->scale = odd ? 0.75f : 2.0f;
    }
    lh_gguf_arch arch;
    arch_llama(&arch, 2, 2);
    ck_assert_msg(lh_gguf_save_lora(a, &arch, tmp("f.gguf"), &err) == LH_OK, "%s", err.msg);
    lh_gguf *g = NULL;
    ck_assert(lh_gguf_open(tmp("f.gguf"), LH_GGUF_FULL, &g, &err) == LH_OK);
    const lh_gguf_kv *kv = lh_gguf_find_kv(g, "adapter.lora.alpha");
    ck_assert_int_eq(kv->type, LH_GGUF_FLOAT32);
    float alpha;
    memcpy(&alpha, kv->data, 4);
    ck_assert_float_eq(alpha, 8.0f);
    lh_gguf_free(g);
    lh_adapter *b = NULL;
    ck_assert_msg(lh_gguf_load_lora(tmp("f.gguf"), &arch, &b, &err) == LH_OK, "%s", err.msg);
    for (size_t t = 0; t < a->n_targets; t++) {
        const lh_target *x = &a->targets[t], *y = &b->targets[t];
        int odd = !strcmp(x->name, "model.layers.0.mlp.down_proj");
        ck_assert_float_eq(y->scale, odd ? 4.0f : 2.0f);
        for (int i = 0; i < x->r * x->d_out; i++) /* scale * B unchanged */
            ck_assert_float_eq_tol(y->scale * y->B[i], x->scale * x->B[i], 1e-6);
        if (!odd)
            ck_assert_int_eq(memcmp(x->B, y->B, (size_t)x->r * x->d_out * 4), 0);
        ck_assert_int_eq(memcmp(x->A, y->A, (size_t)x->r * x->d_in * 4), 0);
    }
    lh_adapter_free(b);
    lh_adapter_free(a);
}
END_TEST

static lh_adapter *load_ok(const char *path, const lh_gguf_arch *arch)
{
    lh_adapter *a = NULL;
    lh_error err = {0};
    lh_status st = arch ? lh_gguf_load_lora(path, arch, &a, &err) : lh_adapter_load(path, &a, &err);
    ck_assert_msg(st == LH_OK, "%s: %s", path, err.msg);
    return a;
}

START_TEST(test_gguf_py_fixtures)
{
    /* written by llama.cpp's gguf-py (tools/gguf_fixtures.py), beside the
     * PEFT directories holding the same numbers in HF layout */
    lh_gguf_arch base;
    lh_error err = {0};
    ck_assert(lh_gguf_arch_from_base(FIX "base-llama", &base, &err) == LH_OK);
    static const struct { const char *gguf, *peft; int needs_base; } cases[] = {
        {FIX "llama-f32.gguf", FIX "llama-peft", 1},
        {FIX "llama-f16.gguf", FIX "llama-peft", 1},
        {FIX "qwen2.gguf", FIX "qwen2-peft", 0},
        {FIX "t5-gated.gguf", FIX "t5-gated-peft", 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        lh_adapter *want = load_ok(cases[i].peft, NULL);
        lh_adapter *got = load_ok(cases[i].gguf, cases[i].needs_base ? &base : NULL);
        same_adapter(want, got, cases[i].gguf);
        lh_adapter_free(got);
        lh_adapter_free(want);
    }
    /* a lorahub file read against a base with other head counts */
    lh_adapter *own = load_ok(FIX "llama-peft", NULL);
    ck_assert(lh_gguf_save_lora(own, &base, tmp("own.gguf"), &err) == LH_OK);
    lh_adapter_free(own);
    lh_gguf_arch other = base;
    other.n_head = 2;
    ck_assert(lh_gguf_load_lora(tmp("own.gguf"), &other, &own, &err) == LH_ERR_SHAPE);
    ck_assert_ptr_nonnull(strstr(err.msg, "written for 4 attention heads (2 key/value), but the "
                                          "base model has 2 (2)"));
    /* a foreign llama adapter has no head counts of ours: --base is needed */
    lh_adapter *a = NULL;
    ck_assert(lh_adapter_load(FIX "llama-f32.gguf", &a, &err) != LH_OK);
    ck_assert_ptr_null(a);
    ck_assert_ptr_nonnull(strstr(err.msg, "llama-f32.gguf: "));
    ck_assert_ptr_nonnull(strstr(err.msg, "head counts"));
    ck_assert_ptr_nonnull(strstr(err.msg, "--base"));
    /* t5 without alpha: scale 1, as llama.cpp applies the user scale alone */
    a = load_ok(FIX "t5-gated.gguf", NULL);
    ck_assert_float_eq(a->targets[0].scale, 1.0f);
    ck_assert_ptr_nonnull(lh_adapter_find(a, "encoder.block.0.layer.1.DenseReluDense.wi_1"));
    lh_adapter_free(a);
    /* the same T5 file against an ungated base reads ffn_up as wi */
    lh_gguf_arch t5 = {.arch = "t5", .ffn_gated = 0};
    a = load_ok(FIX "t5-gated.gguf", &t5);
    ck_assert_ptr_nonnull(lh_adapter_find(a, "encoder.block.0.layer.1.DenseReluDense.wi"));
    lh_adapter_free(a);
}
END_TEST

START_TEST(test_arch_refusals)
{
    lh_gguf_arch arch;
    lh_error err = {0};
    arch_llama(&arch, 4, 2);
    lh_adapter *a = NULL;
    ck_assert(lh_gguf_load_lora(FIX "qwen2.gguf", &arch, &a, &err) == LH_ERR_SHAPE);
    ck_assert_str_eq(err.msg, FIX "qwen2.gguf: a GGUF adapter for architecture 'qwen2', but the "
                              "base model is 'llama'");
    /* an arch without a name map, on writing and on reading */
    a = load_ok(FIX "qwen2-peft", NULL);
    strcpy(arch.arch, "phi3");
    ck_assert(lh_gguf_save_lora(a, &arch, tmp("x.gguf"), &err) == LH_ERR_UNSUPPORTED);
    ck_assert_ptr_nonnull(strstr(err.msg, "no GGUF tensor-name map for architecture 'phi3'"));
    ck_assert(!lh_path_exists(tmp("x.gguf")));
    ck_assert(lh_gguf_save_lora(a, NULL, tmp("x.gguf"), &err) == LH_ERR_ARG);
    ck_assert_ptr_nonnull(strstr(err.msg, "--base"));
    /* a T5 base for a llama-named adapter: its targets have no T5 names */
    strcpy(arch.arch, "t5");
    ck_assert(lh_gguf_save_lora(a, &arch, tmp("x.gguf"), &err) == LH_ERR_UNSUPPORTED);
    ck_assert_ptr_nonnull(strstr(err.msg, "target 'model.layers.0.mlp.gate_proj' has no GGUF "
                                          "tensor name for architecture 't5'"));
    /* more layers than the base has */
    arch_llama(&arch, 4, 2);
    arch.n_layers = 0;
    ck_assert(lh_gguf_save_lora(a, &arch, tmp("x.gguf"), &err) == LH_OK);
    lh_adapter_free(a);
    a = load_ok(FIX "llama-peft", NULL);
    arch.n_layers = 1;
    ck_assert(lh_gguf_save_lora(a, &arch, tmp("y.gguf"), &err) == LH_ERR_SHAPE);
    ck_assert_ptr_nonnull(strstr(err.msg, "is layer 1 but the base model has 1 layers"));
    lh_adapter_free(a);
    /* config.json of a model type lorahub has no map for */
    mkdir(tmp("gpt2"), 0755);
    FILE *f = fopen(tmp("gpt2/config.json"), "w");
    fputs("{\"model_type\": \"gpt2\", \"n_layer\": 2}", f);
    fclose(f);
    ck_assert(lh_gguf_arch_from_config(tmp("gpt2"), &arch, &err) == LH_ERR_UNSUPPORTED);
    ck_assert_ptr_nonnull(strstr(err.msg, "architecture 'gpt2'"));
    ck_assert(lh_gguf_arch_from_base(tmp("nothing"), &arch, &err) == LH_ERR_NOT_FOUND);
    ck_assert(lh_gguf_arch_from_base(FIX "qwen2-peft/adapter_config.json", &arch, &err) ==
              LH_ERR_ARG);
    ck_assert_ptr_nonnull(strstr(err.msg, "neither an HF model directory"));
}
END_TEST

START_TEST(test_arch_from_model)
{
    uint32_t heads_kv[3] = {2, 2, 2};
    (void)heads_kv;
    lh_gguf_out_kv kv[] = {
        {.key = "general.architecture", .type = LH_GGUF_STRING, .str = "qwen2"},
        {.key = "qwen2.block_count", .type = LH_GGUF_UINT32, .u32 = 24},
        {.key = "qwen2.attention.head_count", .type = LH_GGUF_UINT32, .u32 = 14},
        {.key = "qwen2.attention.head_count_kv", .type = LH_GGUF_UINT32, .u32 = 2},
    };
    float w[4] = {0};
    lh_gguf_out_tensor t = {.name = "token_embd.weight", .type = LH_GGML_F32, .n_dims = 2,
                            .ne = {2, 2}, .data = w};
    lh_error err = {0};
    ck_assert(lh_gguf_write(tmp("model.gguf"), kv, 4, &t, 1, &err) == LH_OK);
    lh_gguf_arch a;
    ck_assert_msg(lh_gguf_arch_from_base(tmp("model.gguf"), &a, &err) == LH_OK, "%s", err.msg);
    ck_assert_str_eq(a.arch, "qwen2");
    ck_assert_int_eq(a.n_layers, 24);
    ck_assert_int_eq(a.n_head, 14);
    ck_assert_int_eq(a.n_head_kv, 2);
    /* no head_count_kv: MHA */
    ck_assert(lh_gguf_write(tmp("mha.gguf"), kv, 3, &t, 1, &err) == LH_OK);
    ck_assert(lh_gguf_arch_from_model(tmp("mha.gguf"), &a, &err) == LH_OK);
    ck_assert_int_eq(a.n_head_kv, 14);
    /* no architecture */
    ck_assert(lh_gguf_write(tmp("noarch.gguf"), kv + 1, 3, &t, 1, &err) == LH_OK);
    ck_assert(lh_gguf_arch_from_model(tmp("noarch.gguf"), &a, &err) == LH_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(err.msg, "noarch.gguf: no general.architecture"));
    /* a model is not an adapter */
    lh_adapter *ad = NULL;
    ck_assert(lh_adapter_load(tmp("model.gguf"), &ad, &err) == LH_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(err.msg, "model.gguf: no general.type key"));
}
END_TEST

/* A one-pair llama adapter file with the given keys and tensor overrides. */
typedef struct lora_spec {
    const char *type, *arch, *adapter_type;
    int alpha_u32;              /* write alpha as u32 instead of f32 */
    const char *a_name, *b_name;
    uint32_t a_type;
    int64_t b_r;                /* rank of lora_b */
    float poison;               /* stored at A[0] */
} lora_spec;

/* Overwrite the ggml type of tensor name in the file (same element size). */
static void patch_type(const char *path, const char *name, uint32_t type)
{
    char *buf;
    size_t n;
    lh_error err = {0};
    ck_assert(lh_read_file(path, &buf, &n, &err) == LH_OK);
    char *at = memmem(buf, n, name, strlen(name));
    ck_assert_ptr_nonnull(at);
    at += strlen(name) + 4 + 2 * 8; /* n_dims, ne[0], ne[1] */
    memcpy(at, &type, 4);
    ck_assert(lh_write_file_atomic(path, buf, n, &err) == LH_OK);
    free(buf);
}

static lh_status write_and_load(const lora_spec *s, lh_error *err)
{
    float A[16], B[16];
    for (int i = 0; i < 16; i++)
        A[i] = B[i] = (float)i / 16;
    A[0] = s->poison;
    lh_gguf_out_kv kv[5];
    size_t n = 0;
    if (s->arch)
        kv[n++] = (lh_gguf_out_kv){.key = "general.architecture", .type = LH_GGUF_STRING,
                                   .str = s->arch};
    if (s->type)
        kv[n++] = (lh_gguf_out_kv){.key = "general.type", .type = LH_GGUF_STRING, .str = s->type};
    if (s->adapter_type)
        kv[n++] = (lh_gguf_out_kv){.key = "adapter.type", .type = LH_GGUF_STRING,
                                   .str = s->adapter_type};
    kv[n++] = s->alpha_u32 ? (lh_gguf_out_kv){.key = "adapter.lora.alpha", .type = LH_GGUF_UINT32,
                                               .u32 = 4}
                           : (lh_gguf_out_kv){.key = "adapter.lora.alpha",
                                              .type = LH_GGUF_FLOAT32, .f32 = 4};
    lh_gguf_out_tensor t[2] = {
        {.name = s->a_name, .type = s->a_type, .n_dims = 2, .ne = {8, 2}, .data = A},
        {.name = s->b_name, .type = LH_GGML_F32, .n_dims = 2, .ne = {s->b_r, 16 / s->b_r},
         .data = B},
    };
    size_t nt = s->b_name ? 2 : 1;
    uint32_t a_type = t[0].type;
    if (a_type != LH_GGML_F32 && a_type != LH_GGML_F16 && a_type != LH_GGML_BF16)
        t[0].type = LH_GGML_F32; /* written as F32, its type patched below */
    lh_status st = lh_gguf_write(tmp("l.gguf"), kv, n, t, nt, err);
    ck_assert_msg(st == LH_OK, "%s", err->msg);
    if (a_type != t[0].type)
        patch_type(tmp("l.gguf"), s->a_name, a_type);
    lh_adapter *a = NULL;
    lh_gguf_arch arch;
    arch_llama(&arch, 2, 2);
    st = lh_gguf_load_lora(tmp("l.gguf"), &arch, &a, err);
    lh_adapter_free(a);
    return st;
}

static void lora_refused(const lora_spec *s, const char *want)
{
    lh_error err = {0};
    ck_assert_msg(write_and_load(s, &err) != LH_OK, "accepted; wanted '%s'", want);
    ck_assert_msg(strstr(err.msg, "l.gguf: ") && strstr(err.msg, want), "'%s' lacks '%s'",
                  err.msg, want);
}

START_TEST(test_lora_refusals)
{
    const lora_spec ok = {"adapter", "llama", "lora", 0, "blk.0.attn_v.weight.lora_a",
                          "blk.0.attn_v.weight.lora_b", LH_GGML_F32, 2, 0.5f};
    lh_error err = {0};
    ck_assert_msg(write_and_load(&ok, &err) == LH_OK, "%s", err.msg);
    lora_spec s = ok;
    s.type = NULL;
    lora_refused(&s, "no general.type key: not a GGUF LoRA adapter");
    s = ok, s.type = "model";
    lora_refused(&s, "general.type is 'model', not 'adapter': not a LoRA adapter");
    s = ok, s.adapter_type = "ia3";
    lora_refused(&s, "adapter.type is 'ia3', not 'lora'");
    s = ok, s.arch = NULL;
    lora_refused(&s, "no general.architecture key");
    s = ok, s.alpha_u32 = 1;
    lora_refused(&s, "adapter.lora.alpha is u32, not f32");
    s = ok, s.b_name = NULL;
    lora_refused(&s, "'blk.0.attn_v.weight' has a lora_a but no lora_b");
    s = ok, s.a_name = "blk.0.attn_q.weight.lora_b", s.b_name = "blk.0.attn_v.weight.lora_b";
    lora_refused(&s, "'blk.0.attn_q.weight.lora_b' has no lora_a");
    s = ok, s.a_name = "blk.0.attn_v.weight.lora_c";
    lora_refused(&s, "tensor 'blk.0.attn_v.weight.lora_c' is neither a .lora_a nor a .lora_b");
    s = ok, s.b_r = 4;
    lora_refused(&s, "'blk.0.attn_v.weight': lora_a has rank 2 but lora_b has 4");
    s = ok, s.a_type = 26; /* I32: a ggml type, not one a LoRA is read from */
    lora_refused(&s, "tensor 'blk.0.attn_v.weight.lora_a' is I32; lorahub reads F32, F16 and BF16");
    s = ok, s.poison = NAN;
    lora_refused(&s, "tensor 'blk.0.attn_v.weight.lora_a' element 0 is not finite");
    s = ok, s.a_name = "blk.0.attn_x.weight.lora_a", s.b_name = "blk.0.attn_x.weight.lora_b";
    lora_refused(&s, "tensor 'blk.0.attn_x.weight' has no HF name for architecture 'llama'");
    s = ok, s.a_name = "token_embd.weight.lora_a", s.b_name = "token_embd.weight.lora_b";
    lora_refused(&s, "an embedding LoRA");
    s = ok, s.a_name = "blk.9.attn_v.weight.lora_a", s.b_name = "blk.9.attn_v.weight.lora_b";
    lora_refused(&s, "'blk.9.attn_v.weight' is layer 9 but the base model has 4 layers");
}
END_TEST

START_TEST(test_save_refusals)
{
    lh_target_shape sh[] = {{"model.layers.0.self_attn.v_proj", 1, 2, 2}};
    lh_adapter *a = NULL;
    lh_error err = {0};
    ck_assert(lh_adapter_create(sh, 1, &a, &err) == LH_OK);
    lh_gguf_arch arch;
    arch_llama(&arch, 1, 1);
    a->targets[0].B[1] = 70000.0f;
    lh_gguf_save_opts so = {.dtype = LH_F16};
    ck_assert(lh_gguf_save_lora_opts(a, &arch, tmp("o.gguf"), &so, &err) == LH_ERR_NUMERIC);
    ck_assert_ptr_nonnull(strstr(err.msg, "element 1 is 70000, which F16 cannot hold"));
    a->targets[0].B[1] = INFINITY;
    so.dtype = LH_F32;
    ck_assert(lh_gguf_save_lora_opts(a, &arch, tmp("o.gguf"), &so, &err) == LH_ERR_NUMERIC);
    ck_assert(!lh_path_exists(tmp("o.gguf")));
    a->targets[0].B[1] = 1;
    ck_assert(lh_gguf_save_lora_opts(a, &arch, tmp("o.gguf"), &so, &err) == LH_OK);
    ck_assert(lh_gguf_save_lora_opts(a, &arch, tmp("o.gguf"), &so, &err) == LH_ERR_EXISTS);
    so.force = 1;
    ck_assert(lh_gguf_save_lora_opts(a, &arch, tmp("o.gguf"), &so, &err) == LH_OK);
    ck_assert(lh_gguf_save_lora(a, &arch, tmp("o.gguf"), &err) == LH_OK); /* replaces */
    ck_assert(lh_gguf_save_lora(a, &arch, tmp("no/such/dir.gguf"), &err) != LH_OK);
    lh_adapter_free(a);
}
END_TEST

static Suite *gguf_suite(void)
{
    Suite *s = suite_create("gguf");
    TCase *tc = tcase_create("container");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_container_valid);
    tcase_add_test(tc, test_container_header_rules);
    tcase_add_test(tc, test_container_kv_rules);
    tcase_add_test(tc, test_container_tensor_rules);
    tcase_add_test(tc, test_container_alignment);
    tcase_add_test(tc, test_writer);
    suite_add_tcase(s, tc);
    tc = tcase_create("lora");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_zoo_round_trip);
    tcase_add_test(tc, test_permutation);
    tcase_add_test(tc, test_scale_folding);
    tcase_add_test(tc, test_gguf_py_fixtures);
    tcase_add_test(tc, test_arch_refusals);
    tcase_add_test(tc, test_arch_from_model);
    tcase_add_test(tc, test_lora_refusals);
    tcase_add_test(tc, test_save_refusals);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(gguf_suite());
    srunner_run_all(sr, CK_NORMAL);
    int nf = srunner_ntests_failed(sr);
    srunner_free(sr);
    return nf ? EXIT_FAILURE : EXIT_SUCCESS;
}

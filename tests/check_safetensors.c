/* tests/check_safetensors.c - reader rules and the byte-exact writer.
 *
 * Golden bytes come from the format notes (the reference's own tests); every
 * reader rejection of the reference (tensor.rs) has a case here with its
 * message asserted. */
#include <check.h>
#include <dirent.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/fsutil.h"
#include "lib/safetensors.h"
#include "lib/strbuf.h"

/* [N le64][header][data] in a malloc'd buffer. */
static uint8_t *make_file(const char *header, const void *data, size_t data_len, size_t *size)
{
    size_t n = strlen(header);
    uint8_t *b = malloc(8 + n + data_len + 1);
    for (int i = 0; i < 8; i++)
        b[i] = (uint8_t)((uint64_t)n >> (8 * i));
    memcpy(b + 8, header, n);
    if (data_len)
        memcpy(b + 8 + n, data, data_len);
    *size = 8 + n + data_len;
    return b;
}

static lh_safetensors *parse_ok(const char *header, const void *data, size_t data_len,
                                uint8_t **keep)
{
    size_t size;
    uint8_t *b = make_file(header, data, data_len, &size);
    lh_safetensors *st = NULL;
    lh_error err = { 0 };
    lh_status rc = lh_st_parse(b, size, "m.safetensors", &st, &err);
    ck_assert_msg(rc == LH_OK, "%s rejected: %s", header, err.msg);
    *keep = b;
    return st;
}

static void parse_bad_raw(const uint8_t *b, size_t size, const char *want)
{
    lh_safetensors *st = (lh_safetensors *)1;
    lh_error err = { 0 };
    lh_status rc = lh_st_parse(b, size, "m.safetensors", &st, &err);
    ck_assert_msg(rc != LH_OK, "accepted, wanted '%s'", want);
    ck_assert_ptr_null(st);
    ck_assert_msg(strstr(err.msg, want) != NULL, "message '%s' lacks '%s'", err.msg, want);
    ck_assert_msg(strncmp(err.msg, "m.safetensors: ", 15) == 0, "'%s' lacks the file", err.msg);
}

static void parse_bad(const char *header, size_t data_len, const char *want)
{
    size_t size;
    uint8_t *zeros = calloc(1, data_len + 1);
    uint8_t *b = make_file(header, zeros, data_len, &size);
    parse_bad_raw(b, size, want);
    free(b);
    free(zeros);
}

/* ------------------------------------------------------------ writer */

START_TEST(test_golden_empty)
{
    uint8_t *out;
    size_t size;
    lh_error err = { 0 };
    ck_assert_int_eq(lh_st_serialize(NULL, 0, NULL, NULL, 0, &out, &size, &err), LH_OK);
    static const uint8_t want[] = { 8, 0, 0, 0, 0, 0, 0, 0, '{', '}', ' ', ' ', ' ', ' ', ' ', ' ' };
    ck_assert_uint_eq(size, sizeof want);
    ck_assert(memcmp(out, want, sizeof want) == 0);
    free(out);
}
END_TEST

START_TEST(test_golden_i32)
{
    int32_t zeros[4] = { 0 };
    lh_st_entry e = { .name = "test", .dtype = LH_I32, .ndim = 2, .shape = { 2, 2 }, .data = zeros };
    uint8_t *out;
    size_t size;
    lh_error err = { 0 };
    ck_assert_int_eq(lh_st_serialize(&e, 1, NULL, NULL, 0, &out, &size, &err), LH_OK);
    const char *hdr = "{\"test\":{\"dtype\":\"I32\",\"shape\":[2,2],\"data_offsets\":[0,16]}}    ";
    ck_assert_uint_eq(size, 8 + 64 + 16);
    ck_assert(memcmp(out, "@\0\0\0\0\0\0\0", 8) == 0);
    ck_assert(memcmp(out + 8, hdr, 64) == 0);
    for (int i = 0; i < 16; i++)
        ck_assert_uint_eq(out[72 + i], 0);
    free(out);

    /* lh_st_write produces the same bytes on disk */
    char dir[] = "/tmp/lh-st-XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    char *path = lh_path_join(dir, "g.safetensors");
    ck_assert_int_eq(lh_st_write(path, &e, 1, NULL, NULL, 0, &err), LH_OK);
    char *file;
    size_t flen;
    ck_assert_int_eq(lh_read_file(path, &file, &flen, &err), LH_OK);
    ck_assert_uint_eq(flen, 88);
    ck_assert(memcmp(file, "@\0\0\0\0\0\0\0", 8) == 0 && memcmp(file + 8, hdr, 64) == 0);
    free(file);
    lh_rmtree(dir);
    free(path);
}
END_TEST

START_TEST(test_writer_order_and_metadata)
{
    /* dtype descending (I64 > F32 > I32 > BF16 > F16 > U8), then bytewise
     * names ("B" < "a" < "\xc3\xa9"), metadata first, fields in order */
    uint8_t buf[64] = { 0 };
    for (int i = 0; i < 64; i++)
        buf[i] = (uint8_t)i;
    lh_st_entry e[] = {
        { .name = "h", .dtype = LH_F16, .ndim = 1, .shape = { 1 }, .data = buf },
        { .name = "u", .dtype = LH_U8, .ndim = 1, .shape = { 3 }, .data = buf },
        { .name = "a", .dtype = LH_F32, .ndim = 0, .data = buf + 4 },
        { .name = "B", .dtype = LH_F32, .ndim = 1, .shape = { 1 }, .data = buf + 8 },
        { .name = "\xc3\xa9", .dtype = LH_F32, .ndim = 2, .shape = { 0, 3 }, .data = NULL },
        { .name = "i", .dtype = LH_I32, .ndim = 1, .shape = { 1 }, .data = buf + 12 },
        { .name = "q\"\n", .dtype = LH_I64, .ndim = 1, .shape = { 1 }, .data = buf + 16 },
        { .name = "b", .dtype = LH_BF16, .ndim = 1, .shape = { 1 }, .data = buf + 24 },
    };
    const char *mk[] = { "format" }, *mv[] = { "pt" };
    uint8_t *out;
    size_t size;
    lh_error err = { 0 };
    ck_assert_int_eq(lh_st_serialize(e, 8, mk, mv, 1, &out, &size, &err), LH_OK);
    const char *want = "{\"__metadata__\":{\"format\":\"pt\"},"
                       "\"q\\\"\\n\":{\"dtype\":\"I64\",\"shape\":[1],\"data_offsets\":[0,8]},"
                       "\"B\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]},"
                       "\"a\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[12,16]},"
                       "\"\xc3\xa9\":{\"dtype\":\"F32\",\"shape\":[0,3],\"data_offsets\":[16,16]},"
                       "\"i\":{\"dtype\":\"I32\",\"shape\":[1],\"data_offsets\":[16,20]},"
                       "\"b\":{\"dtype\":\"BF16\",\"shape\":[1],\"data_offsets\":[20,22]},"
                       "\"h\":{\"dtype\":\"F16\",\"shape\":[1],\"data_offsets\":[22,24]},"
                       "\"u\":{\"dtype\":\"U8\",\"shape\":[3],\"data_offsets\":[24,27]}}";
    size_t wl = strlen(want), padded = (wl + 7) / 8 * 8;
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--)
        n = n << 8 | out[i];
    ck_assert_uint_eq(n, padded);
    ck_assert_uint_eq(size, 8 + padded + 27);
    ck_assert(memcmp(out + 8, want, wl) == 0);
    for (size_t i = wl; i < padded; i++)
        ck_assert_uint_eq(out[8 + i], ' ');
    const uint8_t *d = out + 8 + padded;
    ck_assert(memcmp(d, buf + 16, 8) == 0);     /* I64 */
    ck_assert(memcmp(d + 8, buf + 8, 4) == 0);  /* B */
    ck_assert(memcmp(d + 12, buf + 4, 4) == 0); /* a */
    ck_assert(memcmp(d + 16, buf + 12, 4) == 0);
    ck_assert(memcmp(d + 20, buf + 24, 2) == 0);
    ck_assert(memcmp(d + 22, buf, 2) == 0);
    ck_assert(memcmp(d + 24, buf, 3) == 0);

    /* and it reads back, with every tensor where the header says */
    lh_safetensors *st = NULL;
    ck_assert_int_eq(lh_st_parse(out, size, "w.safetensors", &st, &err), LH_OK);
    ck_assert_uint_eq(st->n_tensors, 8);
    ck_assert_str_eq(lh_st_meta(st, "format"), "pt");
    ck_assert_ptr_null(lh_st_meta(st, "other"));
    const lh_st_tensor *t = lh_st_find(st, "a");
    ck_assert_int_eq(t->ndim, 0);
    ck_assert_uint_eq(t->numel, 1);
    ck_assert_ptr_eq(t->data, d + 12);
    t = lh_st_find(st, "\xc3\xa9");
    ck_assert_uint_eq(t->numel, 0);
    ck_assert_int_eq(t->shape[1], 3);
    ck_assert_ptr_null(lh_st_find(st, "nope"));
    lh_st_free(st);
    free(out);
}
END_TEST

START_TEST(test_writer_refusals)
{
    float x = 1;
    lh_error err = { 0 };
    uint8_t *out;
    size_t size;
    lh_st_entry dup[] = {
        { .name = "w", .dtype = LH_F32, .ndim = 1, .shape = { 1 }, .data = &x },
        { .name = "w", .dtype = LH_F16, .ndim = 1, .shape = { 1 }, .data = &x },
    };
    ck_assert_int_eq(lh_st_serialize(dup, 2, NULL, NULL, 0, &out, &size, &err), LH_ERR_ARG);
    ck_assert(strstr(err.msg, "duplicate tensor name 'w'"));
    lh_st_entry meta = { .name = "__metadata__", .dtype = LH_F32, .ndim = 0, .data = &x };
    ck_assert_int_eq(lh_st_serialize(&meta, 1, NULL, NULL, 0, &out, &size, &err), LH_ERR_ARG);
    lh_st_entry f4 = { .name = "f", .dtype = LH_F4, .ndim = 1, .shape = { 3 }, .data = &x };
    ck_assert_int_eq(lh_st_serialize(&f4, 1, NULL, NULL, 0, &out, &size, &err), LH_ERR_ARG);
    ck_assert(strstr(err.msg, "whole number of bytes"));
    lh_st_entry bad = { .name = "\xff", .dtype = LH_F32, .ndim = 0, .data = &x };
    ck_assert_int_eq(lh_st_serialize(&bad, 1, NULL, NULL, 0, &out, &size, &err), LH_ERR_ARG);
    ck_assert(strstr(err.msg, "not valid UTF-8"));
    const char *mk[] = { "a", "a" }, *mv[] = { "1", "2" };
    ck_assert_int_eq(lh_st_serialize(NULL, 0, mk, mv, 2, &out, &size, &err), LH_ERR_ARG);
    ck_assert(strstr(err.msg, "duplicate metadata key 'a'"));
    /* a failed write leaves nothing behind, not even a temp file */
    char dir[] = "/tmp/lh-st-XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    char *path = lh_path_join(dir, "x.safetensors");
    ck_assert_int_eq(lh_st_write(path, dup, 2, NULL, NULL, 0, &err), LH_ERR_ARG);
    char *missing = lh_path_join(dir, "no/such/dir.safetensors");
    ck_assert_int_ne(lh_st_write(missing, dup, 1, NULL, NULL, 0, &err), LH_OK);
    ck_assert(strstr(err.msg, "no/such/dir.safetensors"));
    DIR *dh = opendir(dir);
    struct dirent *de;
    int entries = 0;
    while ((de = readdir(dh)))
        entries += de->d_name[0] != '.';
    closedir(dh);
    ck_assert_int_eq(entries, 0);
    lh_rmtree(dir);
    free(path);
    free(missing);
}
END_TEST

START_TEST(test_roundtrip_dtypes)
{
    enum { N = 24 };
    float src[N];
    for (int i = 0; i < N; i++)
        src[i] = (i - 11) * 0.3712f + (i == 5 ? 1e-6f : 0);
    src[3] = INFINITY;
    src[4] = -0.0f;
    uint8_t f64[8 * N], f16[2 * N], bf16[2 * N];
    int32_t i32[N];
    int64_t i64[N];
    lh_convert_from_f32(LH_F64, src, f64, N);
    lh_convert_from_f32(LH_F16, src, f16, N);
    lh_convert_from_f32(LH_BF16, src, bf16, N);
    for (int i = 0; i < N; i++) {
        i32[i] = -1000000 * i + 7;
        i64[i] = (int64_t)0x123456789ll * i - 3;
    }
    lh_st_entry e[] = {
        { .name = "f32", .dtype = LH_F32, .ndim = 2, .shape = { 4, 6 }, .data = src },
        { .name = "f64", .dtype = LH_F64, .ndim = 3, .shape = { 2, 3, 4 }, .data = f64 },
        { .name = "f16", .dtype = LH_F16, .ndim = 1, .shape = { N }, .data = f16 },
        { .name = "bf16", .dtype = LH_BF16, .ndim = 2, .shape = { 6, 4 }, .data = bf16 },
        { .name = "i32", .dtype = LH_I32, .ndim = 1, .shape = { N }, .data = i32 },
        { .name = "i64", .dtype = LH_I64, .ndim = 2, .shape = { 12, 2 }, .data = i64 },
    };
    char dir[] = "/tmp/lh-st-XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    char *path = lh_path_join(dir, "rt.safetensors");
    lh_error err = { 0 };
    const char *mk[] = { "format", "note" }, *mv[] = { "pt", "caf\xc3\xa9 \"x\"" };
    ck_assert_int_eq(lh_st_write(path, e, 6, mk, mv, 2, &err), LH_OK);
    /* overwriting an existing file is atomic replacement */
    ck_assert_int_eq(lh_st_write(path, e, 6, mk, mv, 2, &err), LH_OK);
    lh_safetensors *st = NULL;
    ck_assert_int_eq(lh_st_open(path, &st, &err), LH_OK);
    ck_assert(st->mapped);
    ck_assert_str_eq(lh_st_meta(st, "note"), "caf\xc3\xa9 \"x\"");
    ck_assert_uint_eq(st->n_tensors, 6);
    for (int k = 0; k < 6; k++) {
        const lh_st_tensor *t = lh_st_find(st, e[k].name);
        ck_assert_ptr_nonnull(t);
        ck_assert_int_eq(t->dtype, e[k].dtype);
        ck_assert_int_eq(t->ndim, e[k].ndim);
        for (int d = 0; d < t->ndim; d++)
            ck_assert_int_eq(t->shape[d], e[k].shape[d]);
        ck_assert_uint_eq(t->numel, N);
        ck_assert(memcmp(t->data, e[k].data, N * lh_dtype_bits(t->dtype) / 8) == 0);
        /* larger types come first, so every tensor is aligned to its size */
        ck_assert_uint_eq(t->begin % (lh_dtype_bits(t->dtype) / 8), 0);
        float back[N];
        if (lh_dtype_is_float(t->dtype)) {
            ck_assert_int_eq(lh_st_read_f32(st, t, back, &err), LH_OK);
            for (int i = 0; i < N; i++) {
                float want = src[i];
                if (t->dtype == LH_F16)
                    want = lh_f16_to_f32(lh_f32_to_f16(src[i]));
                if (t->dtype == LH_BF16)
                    want = lh_bf16_to_f32(lh_f32_to_bf16(src[i]));
                ck_assert(memcmp(&back[i], &want, 4) == 0);
            }
        } else {
            ck_assert_int_eq(lh_st_read_f32(st, t, back, &err), LH_ERR_UNSUPPORTED);
            ck_assert(strstr(err.msg, "not F16/BF16/F32/F64"));
            ck_assert(strstr(err.msg, e[k].name));
        }
    }
    const lh_st_tensor *t = lh_st_find(st, "f32");
    const float *v = lh_st_f32_view(t);
    ck_assert_ptr_eq(v, t->data); /* zero-copy */
    ck_assert(v[0] == src[0] && isinf(v[3]));
    ck_assert_ptr_null(lh_st_f32_view(lh_st_find(st, "f64")));
    lh_st_free(st);
    lh_st_free(NULL);
    lh_rmtree(dir);
    free(path);
}
END_TEST

START_TEST(test_read_large_and_shrunk)
{
    /* tensors larger than lh_st_read_f32's bounce buffer, read in chunks */
    enum { N = 300007 };
    float *src = malloc(N * sizeof *src), *back = malloc(N * sizeof *back);
    uint16_t *bf = malloc(N * sizeof *bf);
    double *f64 = malloc(N * sizeof *f64);
    for (int i = 0; i < N; i++) {
        src[i] = (float)i * 0.001f - 7.0f;
        f64[i] = src[i];
    }
    lh_convert_from_f32(LH_BF16, src, bf, N);
    lh_st_entry e[] = {
        { .name = "bf", .dtype = LH_BF16, .ndim = 1, .shape = { N }, .data = bf },
        { .name = "d", .dtype = LH_F64, .ndim = 1, .shape = { N }, .data = f64 },
        { .name = "f", .dtype = LH_F32, .ndim = 1, .shape = { N }, .data = src },
    };
    char dir[] = "/tmp/lh-st-XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    char *path = lh_path_join(dir, "big.safetensors");
    lh_error err = { 0 };
    ck_assert_int_eq(lh_st_write(path, e, 3, NULL, NULL, 0, &err), LH_OK);
    lh_safetensors *st;
    ck_assert_int_eq(lh_st_open(path, &st, &err), LH_OK);
    ck_assert_int_ge(st->fd, 0);
    for (int k = 0; k < 3; k++) {
        memset(back, 0xff, N * sizeof *back);
        ck_assert_int_eq(lh_st_read_f32(st, lh_st_find(st, e[k].name), back, &err), LH_OK);
        int bad = 0;
        for (int i = 0; i < N; i++) {
            float want = k == 0 ? lh_bf16_to_f32(bf[i]) : src[i];
            bad += memcmp(&back[i], &want, 4) != 0;
        }
        ck_assert_int_eq(bad, 0);
    }
    /* the file shrinks under us: an error, not a SIGBUS */
    ck_assert_int_eq(truncate(path, 1000), 0);
    ck_assert_int_eq(lh_st_read_f32(st, lh_st_find(st, "f"), back, &err), LH_ERR_IO);
    ck_assert(strstr(err.msg, "file shrank while reading tensor 'f'") && strstr(err.msg, path));
    lh_st_free(st);
    lh_rmtree(dir);
    free(path);
    free(src);
    free(back);
    free(bf);
    free(f64);
}
END_TEST

START_TEST(test_unaligned_view)
{
    /* a buffer that puts F32 data at an odd address: no view, but reads work */
    const char *hdr = "{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
    float vals[2] = { 1.5f, -2.25f };
    size_t size;
    uint8_t *b = make_file(hdr, vals, 8, &size);
    uint8_t *odd = malloc(size + 1);
    memcpy(odd + 1, b, size);
    lh_safetensors *st;
    lh_error err = { 0 };
    ck_assert_int_eq(lh_st_parse(odd + 1, size, "odd", &st, &err), LH_OK);
    ck_assert_int_eq(st->fd, -1); /* a buffer: reads come from memory */
    const lh_st_tensor *t = lh_st_find(st, "w");
    ck_assert_ptr_null(lh_st_f32_view(t));
    float back[2];
    ck_assert_int_eq(lh_st_read_f32(st, t, back, &err), LH_OK);
    ck_assert(back[0] == 1.5f && back[1] == -2.25f);
    lh_st_free(st);
    free(odd);
    free(b);
}
END_TEST

/* ------------------------------------------------------------ reader rules */

START_TEST(test_header_too_small)
{
    parse_bad_raw((const uint8_t *)"", 0, "0 bytes is too small for a safetensors header");
    parse_bad_raw((const uint8_t *)"\x02\0\0\0\0\0\0", 7, "7 bytes is too small");
    lh_safetensors *st;
    lh_error err = { 0 };
    char dir[] = "/tmp/lh-st-XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    char *path = lh_path_join(dir, "empty.safetensors");
    FILE *f = fopen(path, "w");
    fclose(f);
    ck_assert_int_eq(lh_st_open(path, &st, &err), LH_ERR_FORMAT);
    ck_assert(strstr(err.msg, path) && strstr(err.msg, "too small"));
    ck_assert_int_eq(lh_st_open(dir, &st, &err), LH_ERR_IO);
    unlink(path);
    ck_assert_int_eq(lh_st_open(path, &st, &err), LH_ERR_NOT_FOUND);
    ck_assert(strstr(err.msg, path));
    lh_rmtree(dir);
    free(path);
}
END_TEST

START_TEST(test_header_too_large)
{
    uint8_t b[16] = { 0, 0, 0, 0, 0, 0, 0xff, 0xff, '{', '}' };
    parse_bad_raw(b, sizeof b, "header length 18446462598732840960 exceeds the limit of 100000000 bytes");
    uint8_t c[16] = { 0x01, 0xe1, 0xf5, 0x05 }; /* 100,000,001 */
    parse_bad_raw(c, sizeof c, "header length 100000001 exceeds the limit");
}
END_TEST

START_TEST(test_invalid_header_length)
{
    uint8_t b[8] = { 60 };
    parse_bad_raw(b, sizeof b, "header length 60 runs past the end of the file (8 bytes)");
}
END_TEST

START_TEST(test_non_utf8)
{
    parse_bad("{\"a\xff\":{}}", 0, "header is not valid UTF-8 (byte 0xff at offset 11)");
    parse_bad("{\"\xed\xa0\x80\":{}}", 0, "not valid UTF-8");
}
END_TEST

START_TEST(test_not_json)
{
    parse_bad("{", 0, "m.safetensors: header: line 1:");
    parse_bad("", 0, "header: line 1: no JSON value");
    parse_bad("[1,2]", 0, "header is not a JSON object");
    parse_bad("{\"a\": 1}", 0, "tensor 'a' is not a JSON object");
    parse_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, "tensor 'a' \"data_offsets\" is not a pair");
    parse_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4,8]}}", 4,
              "\"data_offsets\" is not a pair");
    parse_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4,
              "shape has an entry that is not a non-negative integer");
    parse_bad("{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4, "tensor 'a' has no \"shape\"");
    parse_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[1.0],\"data_offsets\":[0,4]}}", 4,
              "shape has an entry that is not a non-negative integer");
    parse_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4e0]}}", 4,
              "\"data_offsets\" is not a pair of non-negative integers");
    parse_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[-0,4]}}", 4,
              "\"data_offsets\" is not a pair");
    parse_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,18446744073709551616]}}", 4,
              "\"data_offsets\" is not a pair");
    parse_bad("{\"a\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "tensor 'a' has no string \"dtype\"");
    parse_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
              "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
              8, "duplicate key 'a'");
}
END_TEST

START_TEST(test_unknown_dtype)
{
    parse_bad("{\"a\":{\"dtype\":\"F128\",\"shape\":[1],\"data_offsets\":[0,16]}}", 16,
              "tensor 'a' has unknown dtype 'F128'");
    parse_bad("{\"a\":{\"dtype\":\"f32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
              "unknown dtype 'f32'");
}
END_TEST

START_TEST(test_validation_overflow)
{
    parse_bad("{\"a\":{\"dtype\":\"I32\",\"shape\":[18446744073709551614,9223372036854775807],"
              "\"data_offsets\":[0,16]}}",
              16, "tensor 'a' dimension 0 (18446744073709551614) overflows");
    parse_bad("{\"a\":{\"dtype\":\"I32\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,16]}}",
              16, "tensor 'a' shape [4294967296,4294967296] overflows");
    parse_bad("{\"a\":{\"dtype\":\"F64\",\"shape\":[4611686018427387904],\"data_offsets\":[0,16]}}",
              16, "shape [4611686018427387904] overflows in bits");
    parse_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}", 4,
              "tensor 'a' has 9 dimensions (at most 8 supported)");
}
END_TEST

START_TEST(test_misaligned_f4)
{
    parse_bad("{\"a\":{\"dtype\":\"F4\",\"shape\":[3],\"data_offsets\":[0,2]}}", 2,
              "tensor 'a' has 3 F4 elements, not a whole number of bytes");
    uint8_t *keep;
    lh_safetensors *st = parse_ok("{\"a\":{\"dtype\":\"F4\",\"shape\":[2,2],\"data_offsets\":[0,2]}}",
                                  "\x12\x34", 2, &keep);
    ck_assert_uint_eq(st->tensors[0].numel, 4);
    lh_st_free(st);
    free(keep);
}
END_TEST

START_TEST(test_size_mismatch)
{
    parse_bad("{\"test\":{\"dtype\":\"I32\",\"shape\":[2,2],\"data_offsets\":[0,4]}}", 4,
              "tensor 'test' data_offsets [0,4] hold 4 bytes but I32 [2,2] needs 16");
}
END_TEST

START_TEST(test_gap)
{
    parse_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
              "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}",
              12, "tensor 'b' data_offsets [8,12] leave a gap after offset 4");
    parse_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8,
              "tensor 'a' data_offsets [4,8] leave a gap after offset 0");
}
END_TEST

START_TEST(test_overlap)
{
    parse_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
              "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
              8, "tensor 'b' data_offsets [4,8] overlap the previous tensor 'a' (which ends at 8)");
    parse_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,4]}}", 8,
              "tensor 'a' data_offsets [8,4]");
}
END_TEST

START_TEST(test_json_attack)
{
    /* the reference's test_json_attack: 10 tensors all at [0,16] */
    lh_sb sb;
    lh_sb_init(&sb);
    lh_sb_append(&sb, "{");
    for (int i = 0; i < 10; i++)
        lh_sb_appendf(&sb, "%s\"weight_%d\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]}",
                      i ? "," : "", i);
    lh_sb_append(&sb, "}");
    parse_bad(sb.buf, 16, "tensor 'weight_1' data_offsets [0,16] duplicate those of tensor 'weight_0'");
    lh_sb_release(&sb);
}
END_TEST

START_TEST(test_trailing_and_short)
{
    const char *h = "{\"test\":{\"dtype\":\"I32\",\"shape\":[2,2],\"data_offsets\":[0,16]}}";
    parse_bad(h, 18, "2 trailing bytes after the tensor data (data ends at 16, the file has 18 data bytes)");
    parse_bad(h, 14, "file is truncated: the tensors need 16 data bytes, the file has 14");
    parse_bad("{}", 1, "1 trailing bytes after the tensor data");
}
END_TEST

START_TEST(test_metadata)
{
    parse_bad("{\"__metadata__\":{\"format\":1}}", 0, "__metadata__ value of 'format' is not a string");
    parse_bad("{\"__metadata__\":[\"pt\"]}", 0, "__metadata__ is not an object of strings");
    uint8_t *keep;
    lh_safetensors *st = parse_ok("{\"__metadata__\":{\"format\":\"pt\",\"x\":\"\"}}", NULL, 0, &keep);
    ck_assert_uint_eq(st->n_tensors, 0);
    ck_assert_uint_eq(st->n_meta, 2);
    ck_assert_str_eq(lh_st_meta(st, "x"), "");
    lh_st_free(st);
    free(keep);
    st = parse_ok("{\"__metadata__\":null}", NULL, 0, &keep);
    ck_assert_uint_eq(st->n_meta, 0);
    lh_st_free(st);
    free(keep);
}
END_TEST

START_TEST(test_accepted_edge_cases)
{
    uint8_t *keep;
    /* zero-sized tensors (test_zero_sized_tensor) and [] scalars */
    lh_safetensors *st = parse_ok(
        "{\"z\":{\"dtype\":\"F32\",\"shape\":[2,0],\"data_offsets\":[0,0]},"
        "\"y\":{\"dtype\":\"F32\",\"shape\":[0,0],\"data_offsets\":[0,0]},"
        "\"s\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,4]}}",
        "\0\0\x80\x3f", 4, &keep);
    ck_assert_uint_eq(st->n_tensors, 3);
    ck_assert_str_eq(st->tensors[0].name, "z"); /* header order */
    ck_assert_uint_eq(lh_st_find(st, "z")->numel, 0);
    const lh_st_tensor *s = lh_st_find(st, "s");
    ck_assert_uint_eq(s->numel, 1);
    float v;
    lh_error err = { 0 };
    ck_assert_int_eq(lh_st_read_f32(st, s, &v, &err), LH_OK);
    ck_assert(v == 1.0f);
    lh_st_free(st);
    free(keep);
    /* whitespace around the JSON (test_whitespace_padded_header and the
     * leading variant) */
    st = parse_ok("\r \t\n{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}} \r\t\n ",
                  "\x07", 1, &keep);
    ck_assert_uint_eq(st->n_tensors, 1);
    ck_assert_uint_eq(((const uint8_t *)lh_st_find(st, "a")->data)[0], 7);
    lh_st_free(st);
    free(keep);
    /* header key order does not matter: offsets are sorted before checking */
    st = parse_ok("{\"b\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1,2]},"
                  "\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}",
                  "\x01\x02", 2, &keep);
    ck_assert_uint_eq(((const uint8_t *)lh_st_find(st, "b")->data)[0], 2);
    lh_st_free(st);
    free(keep);
    /* unknown fields in an entry are ignored, as serde does */
    st = parse_ok("{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1],\"extra\":[1]}}", "x",
                  1, &keep);
    lh_st_free(st);
    free(keep);
}
END_TEST

static Suite *safetensors_suite(void)
{
    Suite *s = suite_create("safetensors");
    TCase *w = tcase_create("writer");
    tcase_set_timeout(w, 30);
    tcase_add_test(w, test_golden_empty);
    tcase_add_test(w, test_golden_i32);
    tcase_add_test(w, test_writer_order_and_metadata);
    tcase_add_test(w, test_writer_refusals);
    tcase_add_test(w, test_roundtrip_dtypes);
    tcase_add_test(w, test_unaligned_view);
    tcase_add_test(w, test_read_large_and_shrunk);
    suite_add_tcase(s, w);
    TCase *r = tcase_create("reader");
    tcase_set_timeout(r, 30);
    tcase_add_test(r, test_header_too_small);
    tcase_add_test(r, test_header_too_large);
    tcase_add_test(r, test_invalid_header_length);
    tcase_add_test(r, test_non_utf8);
    tcase_add_test(r, test_not_json);
    tcase_add_test(r, test_unknown_dtype);
    tcase_add_test(r, test_validation_overflow);
    tcase_add_test(r, test_misaligned_f4);
    tcase_add_test(r, test_size_mismatch);
    tcase_add_test(r, test_gap);
    tcase_add_test(r, test_overlap);
    tcase_add_test(r, test_json_attack);
    tcase_add_test(r, test_trailing_and_short);
    tcase_add_test(r, test_metadata);
    tcase_add_test(r, test_accepted_edge_cases);
    suite_add_tcase(s, r);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(safetensors_suite());
    srunner_run_all(sr, CK_ENV);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

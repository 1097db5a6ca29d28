/* tests/check_torchzip.c - torch.save zip files (lib/torchzip.c).
 *
 * Real files: the .bin files of tests/fixtures/torch were written by torch itself
 * (tools/make_torch_fixtures.py), and expected.json holds every value torch
 * put in them (tensor.tolist()): each one is compared exactly. Hostile
 * files: every truncation of a real file, and zips built here around
 * hand-written pickles (a call of os.system, unknown opcodes, lying sizes,
 * views past their storage, compressed entries). Loaders: a PEFT seq2seq
 * adapter as adapter_model.bin equals the same tensors as safetensors, and
 * a LLaMA-family checkpoint as pytorch_model.bin (whole and sharded) loads
 * the same weights as its safetensors original. */
#include <check.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "adapt/modules.h"
#include "lib/lorahub.h"
#include "lib/torchzip.h"
#include "model/llama/llama.h"
#include "tests/zipbuild.h"

#define FIX "tests/fixtures/torch/"

static uint8_t *slurp(const char *path, size_t *n)
{
    char *buf = NULL;
    lh_error err = {0};
    ck_assert_msg(lh_read_file(path, &buf, n, &err) == LH_OK, "%s", err.msg);
    return (uint8_t *)buf;
}

/* ---------------------------------------------------------- real files */

/* One tensor against its expected.json entry: dtype, shape, every value. */
static void check_tensor(const char *file, const lh_safetensors *st, const char *name,
                         const lh_json *want)
{
    const lh_st_tensor *t = lh_st_find(st, name);
    ck_assert_msg(t != NULL, "%s: no tensor '%s'", file, name);
    const char *dt;
    ck_assert(lh_json_as_string(lh_json_get(want, "dtype"), &dt));
    ck_assert_str_eq(lh_dtype_name(t->dtype), dt);
    const lh_json *shape = lh_json_get(want, "shape"), *vals = lh_json_get(want, "values");
    ck_assert_int_eq(t->ndim, (int)shape->len);
    uint64_t numel = 1;
    for (size_t d = 0; d < shape->len; d++) {
        long long v;
        ck_assert(lh_json_as_int64(shape->items[d], &v));
        ck_assert_int_eq(t->shape[d], v);
        numel *= (uint64_t)v;
    }
    ck_assert_uint_eq(t->numel, numel);
    ck_assert_uint_eq(vals->len, numel);
    ck_assert_uint_eq(t->end - t->begin, numel * lh_dtype_bits(t->dtype) / 8);
    if (lh_dtype_is_float(t->dtype)) {
        float *got = malloc((numel ? numel : 1) * sizeof *got);
        lh_error err = {0};
        ck_assert_msg(lh_st_read_f32(st, t, got, &err) == LH_OK, "%s", err.msg);
        for (size_t i = 0; i < numel; i++) {
            double v;
            ck_assert(lh_json_as_number(vals->items[i], &v));
            ck_assert_msg(got[i] == (float)v, "%s '%s'[%zu]: %.9g, torch says %.9g", file, name,
                          i, (double)got[i], v);
        }
        free(got);
    } else {
        for (size_t i = 0; i < numel; i++) {
            long long v, g;
            ck_assert(lh_json_as_int64(vals->items[i], &v));
            if (t->dtype == LH_I64)
                memcpy(&g, (const uint8_t *)t->data + 8 * i, 8);
            else
                g = ((const uint8_t *)t->data)[i];
            ck_assert_msg(g == v, "%s '%s'[%zu]: %lld, torch says %lld", file, name, i, g, v);
        }
    }
}

START_TEST(test_every_value)
{
    lh_json *exp = NULL;
    lh_error err = {0};
    ck_assert_msg(lh_json_parse_file(FIX "expected.json", &exp, &err) == LH_OK, "%s", err.msg);
    ck_assert_uint_ge(exp->len, 7);
    size_t n_values = 0;
    for (size_t f = 0; f < exp->len; f++) {
        char path[512];
        snprintf(path, sizeof path, FIX "%s", exp->keys[f]);
        for (int how = 0; how < 2; how++) { /* lh_torch_open and the sniffing switch */
            lh_safetensors *st = NULL;
            lh_status s = how ? lh_tensors_open(path, &st, &err) : lh_torch_open(path, &st, &err);
            ck_assert_msg(s == LH_OK, "%s", err.msg);
            const lh_json *file = exp->items[f];
            ck_assert_uint_eq(st->n_tensors, file->len);
            ck_assert_uint_eq(st->n_meta, 0);
            for (size_t k = 0; k < file->len; k++) {
                check_tensor(path, st, file->keys[k], file->items[k]);
                n_values += lh_json_get(file->items[k], "values")->len;
            }
            lh_st_free(st);
        }
    }
    ck_assert_uint_gt(n_values, 2000);
    lh_json_free(exp);
}
END_TEST

/* Views of one storage point into the same bytes; nothing is copied. */
START_TEST(test_shared_storage)
{
    lh_safetensors *st = NULL;
    lh_error err = {0};
    ck_assert_msg(lh_torch_open(FIX "shared.bin", &st, &err) == LH_OK, "%s", err.msg);
    const float *base = lh_st_f32_view(lh_st_find(st, "base"));
    ck_assert_ptr_nonnull(base);
    ck_assert_ptr_eq(lh_st_f32_view(lh_st_find(st, "row2")), base + 12);
    ck_assert_ptr_eq(lh_st_f32_view(lh_st_find(st, "rows13")), base + 6);
    ck_assert_ptr_eq(lh_st_f32_view(lh_st_find(st, "tail")), base + 7);
    ck_assert_ptr_eq(lh_st_f32_view(lh_st_find(st, "tail_2d")), base + 7);
    ck_assert_ptr_eq(lh_st_find(st, "tied_a")->data, lh_st_find(st, "tied_b")->data);
    ck_assert_ptr_nonnull(lh_st_find(st, "tied_a")->data);
    /* torch aligns storages to 64 bytes: F32 views are zero-copy */
    ck_assert_uint_eq((uintptr_t)base % 64, 0);
    lh_st_free(st);
}
END_TEST

static void expect_refused(const char *path, lh_status code, const char *what)
{
    lh_safetensors *st = NULL;
    lh_error err = {0};
    ck_assert_int_eq(lh_tensors_open(path, &st, &err), code);
    ck_assert_ptr_null(st);
    ck_assert_msg(strstr(err.msg, what) != NULL, "'%s' lacks '%s'", err.msg, what);
    ck_assert_msg(strstr(err.msg, path) != NULL, "'%s' does not name the file", err.msg);
    ck_assert_ptr_null(strchr(err.msg, '\n'));
}

START_TEST(test_refused_files)
{
    expect_refused(FIX "evil.bin", LH_ERR_UNSUPPORTED, "global 'posix.system'");
    expect_refused(FIX "evil.bin", LH_ERR_UNSUPPORTED, "executes no code");
    expect_refused(FIX "noncontig.bin", LH_ERR_UNSUPPORTED, "tensor 't' (storage '1') is not "
                   "contiguous (dimension 1 has stride 6, 1 expected)");
    expect_refused(FIX "legacy.bin", LH_ERR_UNSUPPORTED, "legacy format");
    expect_refused(FIX "expected.json", LH_ERR_FORMAT, "header length"); /* safetensors' say */
    size_t n;
    uint8_t *legacy = slurp(FIX "legacy.bin", &n);
    ck_assert_int_eq(lh_tensor_file_sniff(legacy, n), LH_TENSORS_TORCH_LEGACY);
    free(legacy);
}
END_TEST

/* Every proper prefix of a real file fails cleanly (ASan sees the exact
 * buffer, so any read past it is caught). */
START_TEST(test_every_truncation)
{
    static const char *const files[] = {FIX "plain.bin", FIX "shared.bin", FIX "proto4.bin"};
    for (size_t f = 0; f < 3; f++) {
        size_t n;
        uint8_t *full = slurp(files[f], &n);
        for (size_t len = 0; len < n; len++) {
            uint8_t *cut = malloc(len ? len : 1);
            memcpy(cut, full, len);
            lh_safetensors *st = NULL;
            lh_error err = {0};
            lh_status s = lh_torch_parse(cut, len, "cut.bin", &st, &err);
            ck_assert_msg(s != LH_OK, "%s cut at %zu loaded", files[f], len);
            ck_assert_ptr_null(st);
            ck_assert_ptr_nonnull(strstr(err.msg, "cut.bin"));
            free(cut);
        }
        lh_safetensors *st = NULL;
        ck_assert_int_eq(lh_torch_parse(full, n, "full", &st, NULL), LH_OK);
        lh_st_free(st);
        free(full);
    }
}
END_TEST

/* ------------------------------------------------ zips built by hand */

/* Pickle text with escapes: "$w$" is BINUNICODE 'w', '~' a zero byte, the
 * rest literal bytes. */
static zbuf pickle(const char *src)
{
    zbuf b = {0};
    for (const char *s = src; *s; s++) {
        if (*s == '~') {
            uint8_t zero = 0;
            put(&b, &zero, 1);
            continue;
        }
        if (*s != '$') {
            put(&b, s, 1);
            continue;
        }
        const char *e = strchr(s + 1, '$'); /* "$name$" */
        size_t n = (size_t)(e - s - 1);
        uint8_t x = 'X';
        put(&b, &x, 1);
        put32(&b, (uint32_t)n);
        put(&b, s + 1, n);
        s = e;
    }
    return b;
}

/* {'w': _rebuild_tensor_v2(storage '0' of STORAGE_NUMEL floats, OFFSET,
 * SIZE, STRIDE)}: sizes and strides as pickle text, e.g. "K\x02K\x03\x86". */
static zbuf tensor_pickle(const char *storage_cls, const char *numel, const char *offset,
                         const char *size, const char *stride)
{
    char src[1024];
    snprintf(src, sizeof src,
             "\x80\x02}q~($w$ctorch._utils\n_rebuild_tensor_v2\nq\x01"
             "(($storage$ctorch\n%s\n$0$$cpu$%stQ%s%s%s\x89" "ccollections\nOrderedDict\n)RtRu.",
             storage_cls, numel, offset, size, stride);
    return pickle(src);
}

static float want_first; /* the first value open_zip's tensor 'w' must read */

static lh_status open_zip(const zin *e, size_t n, lh_safetensors **st, lh_error *err)
{
    zbuf z = make_zip(e, n);
    uint8_t *exact = malloc(z.n);
    memcpy(exact, z.p, z.n);
    free(z.p);
    lh_status s = lh_torch_parse(exact, z.n, "hand.bin", st, err);
    if (s == LH_OK) {
        /* keep the buffer alive with the result: check and free here */
        const lh_st_tensor *t = lh_st_find(*st, "w");
        ck_assert_ptr_nonnull(t);
        float got[6];
        ck_assert_uint_le(t->numel, 6);
        ck_assert_int_eq(lh_st_read_f32(*st, t, got, err), LH_OK);
        /* storage '0' holds 0, 1, ..., 5: a contiguous view reads on from its offset */
        for (uint64_t i = 0; i < t->numel; i++)
            ck_assert_float_eq(got[i], want_first + (float)i);
        lh_st_free(*st);
        *st = NULL;
    }
    free(exact);
    return s;
}

static const float six[6] = {0, 1, 2, 3, 4, 5};

/* The hand-built zip around a pickle; the storage '0' holds six floats. */
static void expect_pickle(const zbuf *pk, lh_status code, const char *what)
{
    zin e[] = {{"archive/data.pkl", pk->p, pk->n, 0, 0},
               {"archive/data/0", six, sizeof six, 0, 0},
               {"archive/version", "3\n", 2, 0, 0}};
    lh_safetensors *st = NULL;
    lh_error err = {0};
    lh_status s = open_zip(e, 3, &st, &err);
    ck_assert_msg(s == code, "got %d (%s), want %d (%s)", s, err.msg, code, what);
    if (code != LH_OK) {
        ck_assert_msg(strstr(err.msg, what) != NULL, "'%s' lacks '%s'", err.msg, what);
        ck_assert_ptr_nonnull(strstr(err.msg, "hand.bin"));
        ck_assert_ptr_null(strchr(err.msg, '\n'));
    }
}

static void expect_text(const char *src, lh_status code, const char *what)
{
    zbuf pk = pickle(src);
    expect_pickle(&pk, code, what);
    free(pk.p);
}

static void expect_tensor(const char *cls, const char *numel, const char *off, const char *size,
                          const char *stride, lh_status code, const char *what)
{
    zbuf pk = tensor_pickle(cls, numel, off, size, stride);
    expect_pickle(&pk, code, what);
    free(pk.p);
}

START_TEST(test_hand_pickles)
{
    /* the builder itself makes a good file: [2,3] and a [2,2] view at offset 2 */
    want_first = 0;
    expect_tensor("FloatStorage", "K\x06", "K~", "K\x02K\x03\x86", "K\x03K\x01\x86", LH_OK, "");
    want_first = 2;
    expect_tensor("FloatStorage", "K\x06", "K\x02", "K\x02K\x02\x86", "K\x02K\x01\x86", LH_OK, "");
    want_first = 0;
    /* a size-1 dimension's stride does not matter (torch's is_contiguous) */
    expect_tensor("FloatStorage", "K\x06", "K~", "K\x01K\x06\x86", "K\x09K\x01\x86", LH_OK, "");
    /* an empty SETITEMS on a fresh dict (found by fuzz_torchzip: UB adding
     * a zero offset to the dict's NULL item array) */
    want_first = 0;
    expect_text("\x80\x02}q~(u($w$ctorch._utils\n_rebuild_tensor_v2\nq\x01"
                "(($storage$ctorch\nFloatStorage\n$0$$cpu$K\x06tQK~K\x02K\x03\x86K\x03K\x01\x86"
                "\x89" "ccollections\nOrderedDict\n)RtRu.", LH_OK, "");
    /* code execution, by any route */
    expect_text("\x80\x02" "cposix\nsystem\nq~$ls$\x85R.", LH_ERR_UNSUPPORTED,
                "global 'posix.system'");
    expect_text("\x80\x02" "cbuiltins\neval\n$1$\x85R.", LH_ERR_UNSUPPORTED, "'builtins.eval'");
    expect_text("\x80\x04$os$$system$\x93$id$\x85R.", LH_ERR_UNSUPPORTED, "'os.system'");
    expect_text("\x80\x02(cos\nsystem\n$id$i.", LH_ERR_UNSUPPORTED, "'os.system'");
    expect_text("\x80\x02($id$ios\nsystem\n.", LH_ERR_UNSUPPORTED, "opcode INST");
    expect_text("\x80\x02" "ctorch\nFloatStorage\n)R.", LH_ERR_FORMAT, "only names a type");
    /* opcodes torch never writes */
    expect_text("\x80\x02\xff.", LH_ERR_FORMAT, "unknown pickle opcode 0xff");
    expect_text("\x80\x02}$a$0.", LH_ERR_UNSUPPORTED, "opcode POP");
    expect_text("\x80\x02S'x'\n.", LH_ERR_UNSUPPORTED, "opcode STRING");
    expect_text("\x80\x02P0\n.", LH_ERR_UNSUPPORTED, "opcode PERSID");
    /* malformed streams */
    expect_text("\x80\x02}", LH_ERR_FORMAT, "without STOP");
    expect_text("\x80\x02h\x05.", LH_ERR_FORMAT, "never PUT");
    expect_text("\x80\x02s.", LH_ERR_FORMAT, "too few items");
    expect_text("\x80\x02]q~(K\x01K\x02u.", LH_ERR_FORMAT, "not a dict");
    expect_text("\x80\x02}(K\x01u.", LH_ERR_FORMAT, "odd number");
    expect_text("\x80\x02t.", LH_ERR_FORMAT, "no MARK");
    expect_text("\x80\x02X\xff\xff\xff\x7f" "abc.", LH_ERR_FORMAT, "past the end");
    expect_text("\x80\x02\x8a\x09" "123456789.", LH_ERR_FORMAT, "wider than 64 bits");
    expect_text("\x80\x02Nr\xff\xff\xff~.", LH_ERR_FORMAT, "memo index beyond");
    /* a pickle that builds objects without end: bounded, then refused */
    size_t batches = 4300;
    char *bomb = malloc(8 + batches * 1003 + 2), *w = bomb;
    w += sprintf(w, "\x80\x02]");
    for (size_t i = 0; i < batches; i++) {
        *w++ = '(';
        memset(w, 'N', 1000);
        w += 1000;
        *w++ = 'e';
    }
    strcpy(w, ".");
    expect_text(bomb, LH_ERR_UNSUPPORTED, "builds more than 4194304 objects");
    free(bomb);
    /* not a state dict of tensors */
    expect_text("\x80\x02]q~.", LH_ERR_FORMAT, "holds a list");
    expect_text("\x80\x02}($a$K\x01u.", LH_ERR_UNSUPPORTED, "'a' holds an int");
    expect_text("\x80\x02}(K\x01K\x01u.", LH_ERR_FORMAT, "key that is an int");
    /* storages and views that lie */
    expect_tensor("FloatStorage", "K\x07", "K~", "K\x07\x85", "K\x01\x85", LH_ERR_FORMAT,
                  "says 7 F32 elements but its entry holds 24 bytes");
    expect_tensor("HalfStorage", "K\x06", "K~", "K\x06\x85", "K\x01\x85", LH_ERR_FORMAT,
                  "holds 24 bytes");
    expect_tensor("FloatStorage", "K\x06", "K\x01", "K\x02K\x03\x86", "K\x03K\x01\x86",
                  LH_ERR_FORMAT, "tensor 'w' (storage '0') of 6 elements at offset 1 runs past");
    expect_tensor("FloatStorage", "K\x06", "\x8a\x08\xff\xff\xff\xff\xff\xff\xff\x7f",
                  "K\x01\x85", "K\x01\x85", LH_ERR_FORMAT, "runs past the end of its storage");
    expect_tensor("FloatStorage", "K\x06", "K~", "K\x03K\x02\x86", "K\x01K\x03\x86",
                  LH_ERR_UNSUPPORTED, "tensor 'w' (storage '0') is not contiguous");
    expect_tensor("FloatStorage", "K\x06", "K~",
                  "\x8a\x08~~~~~~~\x40\x8a\x08~~~~~~~\x40\x86",
                  "K\x01K\x01\x86", LH_ERR_FORMAT, "overflows");
    expect_tensor("FloatStorage", "J\xff\xff\xff\xff", "K~", "K\x01\x85", "K\x01\x85",
                  LH_ERR_FORMAT, "persistent id");
    expect_tensor("NopeStorage", "K\x06", "K~", "K\x06\x85", "K\x01\x85", LH_ERR_UNSUPPORTED,
                  "'torch.NopeStorage'");
}
END_TEST

START_TEST(test_hand_zips)
{
    zbuf pk = tensor_pickle("FloatStorage", "K\x06", "K~", "K\x06\x85", "K\x01\x85");
    lh_safetensors *st = NULL;
    lh_error err = {0};
    want_first = 0;
    zin e[] = {{"top/data.pkl", pk.p, pk.n, 0, 0}, {"top/data/0", six, sizeof six, 0, 0},
               {"top/byteorder", "little", 6, 0, 0}};
    ck_assert_msg(open_zip(e, 3, &st, &err) == LH_OK, "%s", err.msg);
    /* Zip64: every size and offset in the extra fields and the Zip64 end record */
    zbuf z64 = make_zip64(e, 3, 1);
    ck_assert_msg(lh_torch_parse(z64.p, z64.n, "z64.bin", &st, &err) == LH_OK, "%s", err.msg);
    ck_assert_uint_eq(st->n_tensors, 1);
    ck_assert_mem_eq(lh_st_find(st, "w")->data, six, sizeof six);
    lh_st_free(st);
    z64.p[z64.n - 22 - 20 + 8] ^= 1; /* the locator now points one byte off */
    ck_assert_int_eq(lh_torch_parse(z64.p, z64.n, "z64.bin", &st, &err), LH_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(err.msg, "no Zip64 end of central directory"));
    free(z64.p);
    /* a storage entry missing */
    ck_assert_int_eq(open_zip(e, 1, &st, &err), LH_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(err.msg, "no entry 'top/data/0'"));
    /* compressed entries are refused by name */
    e[1].method = 8;
    ck_assert_int_eq(open_zip(e, 3, &st, &err), LH_ERR_UNSUPPORTED);
    ck_assert_ptr_nonnull(strstr(err.msg, "'top/data/0' is compressed (method 8, deflate)"));
    e[1].method = 0;
    /* a size in the central directory that runs past the data */
    e[1].size_lie = 1000;
    ck_assert_int_eq(open_zip(e, 3, &st, &err), LH_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(err.msg, "runs past the end of the data"));
    /* a smaller size: the storage no longer matches its element count */
    e[1].size_lie = -4;
    ck_assert_int_eq(open_zip(e, 3, &st, &err), LH_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(err.msg, "holds 20 bytes"));
    e[1].size_lie = 0;
    /* big-endian storages */
    e[2].data = "big";
    e[2].len = 3;
    ck_assert_int_eq(open_zip(e, 3, &st, &err), LH_ERR_UNSUPPORTED);
    ck_assert_ptr_nonnull(strstr(err.msg, "not little-endian"));
    e[2].data = "little";
    e[2].len = 6;
    /* duplicate entries, no data.pkl, an entry outside any folder */
    zin dup[] = {e[0], e[1], e[1]};
    ck_assert_int_eq(open_zip(dup, 3, &st, &err), LH_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(err.msg, "appears twice"));
    ck_assert_int_eq(open_zip(e + 1, 2, &st, &err), LH_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(err.msg, "without 'top/data.pkl'"));
    zin flat[] = {{"data.pkl", pk.p, pk.n, 0, 0}};
    ck_assert_int_eq(open_zip(flat, 1, &st, &err), LH_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(err.msg, "not inside a folder"));
    /* a corrupted pickle fails its CRC before it is run */
    zbuf z = make_zip(e, 3);
    z.p[30 + strlen("top/data.pkl") + 5] ^= 0x40;
    ck_assert_int_eq(lh_torch_parse(z.p, z.n, "crc.bin", &st, &err), LH_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(err.msg, "CRC-32"));
    free(z.p);
    /* a central directory offset beyond the end record */
    z = make_zip(e, 3);
    z.p[z.n - 6] ^= 0x7f;
    ck_assert_int_eq(lh_torch_parse(z.p, z.n, "cd.bin", &st, &err), LH_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(err.msg, "central directory"));
    free(z.p);
    free(pk.p);
}
END_TEST

/* ------------------------------------------------------------ loaders */

static void same_targets(const lh_adapter *a, const lh_adapter *b)
{
    ck_assert_uint_eq(a->n_targets, b->n_targets);
    for (size_t i = 0; i < a->n_targets; i++) {
        const lh_target *x = &a->targets[i], *y = &b->targets[i];
        ck_assert_str_eq(x->name, y->name);
        ck_assert_int_eq(x->r, y->r);
        ck_assert_int_eq(x->d_in, y->d_in);
        ck_assert_int_eq(x->d_out, y->d_out);
        ck_assert_float_eq(x->scale, y->scale);
        ck_assert_mem_eq(x->A, y->A, sizeof(float) * (size_t)x->r * (size_t)x->d_in);
        ck_assert_mem_eq(x->B, y->B, sizeof(float) * (size_t)x->d_out * (size_t)x->r);
    }
}

START_TEST(test_peft_seq2seq_bin)
{
    lh_adapter *bin = NULL, *st = NULL, *file = NULL, *def = NULL;
    lh_error err = {0};
    ck_assert_msg(lh_adapter_load(FIX "t5-lora", &bin, &err) == LH_OK, "%s", err.msg);
    ck_assert_msg(lh_adapter_load(FIX "t5-lora-st", &st, &err) == LH_OK, "%s", err.msg);
    ck_assert_msg(lh_adapter_load(FIX "t5-lora/adapter_model.bin", &file, &err) == LH_OK, "%s",
                  err.msg);
    ck_assert_msg(lh_adapter_load(FIX "t5-lora-default", &def, &err) == LH_OK, "%s", err.msg);
    /* 2 layers: encoder self q,v; decoder self q,v; cross q,v */
    ck_assert_uint_eq(bin->n_targets, 12);
    ck_assert_str_eq(bin->task_type, "SEQ_2_SEQ_LM");
    ck_assert_int_eq(bin->r, 4);
    ck_assert_float_eq(bin->targets[0].scale, 2.0f);
    ck_assert_ptr_nonnull(lh_adapter_find(bin, "decoder.block.1.layer.1.EncDecAttention.v"));
    ck_assert_ptr_nonnull(lh_adapter_find(bin, "encoder.block.0.layer.0.SelfAttention.q"));
    same_targets(bin, st);
    same_targets(bin, file);
    /* BF16 with ".default" keys: the same module names */
    ck_assert_uint_eq(def->n_targets, 12);
    ck_assert_uint_eq(def->dtype, LH_BF16);
    for (size_t i = 0; i < 12; i++)
        ck_assert_str_eq(def->targets[i].name, bin->targets[i].name);
    lh_adapter_free(bin);
    lh_adapter_free(st);
    lh_adapter_free(file);
    lh_adapter_free(def);
}
END_TEST

/* target_modules match by suffix after a dot, as in PEFT: "q" and "v" reach
 * SelfAttention and EncDecAttention alike, "SelfAttention.q" only the former. */
START_TEST(test_seq2seq_target_suffixes)
{
    char dir[] = "/tmp/check_torchzip.XXXXXX", path[300], src[PATH_MAX];
    ck_assert_ptr_nonnull(mkdtemp(dir));
    ck_assert_ptr_nonnull(realpath(FIX "t5-lora/adapter_model.bin", src));
    snprintf(path, sizeof path, "%s/adapter_model.bin", dir);
    ck_assert_int_eq(symlink(src, path), 0);
    static const struct { const char *targets; int ok; const char *module; } cases[] = {
        {"[\"q\", \"v\"]", 1, NULL},
        {"[\"v\", \"q\", \"o\"]", 1, NULL},
        {"\".*(SelfAttention|EncDecAttention)\\\\.(q|v)\"", 1, NULL},
        {"[\"q\"]", 0, "SelfAttention.v"},
        {"[\"SelfAttention.q\", \"SelfAttention.v\"]", 0, "EncDecAttention"},
        {"[\"k\", \"v\"]", 0, ".q'"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char cfg[600], cfg_path[300];
        snprintf(cfg, sizeof cfg, "{\"peft_type\": \"LORA\", \"task_type\": \"SEQ_2_SEQ_LM\", "
                 "\"r\": 4, \"lora_alpha\": 8, \"target_modules\": %s}", cases[i].targets);
        snprintf(cfg_path, sizeof cfg_path, "%s/adapter_config.json", dir);
        lh_error err = {0};
        ck_assert_int_eq(lh_write_file_atomic(cfg_path, cfg, strlen(cfg), &err), LH_OK);
        lh_adapter *a = NULL;
        lh_status s = lh_adapter_load(dir, &a, &err);
        if (cases[i].ok) {
            ck_assert_msg(s == LH_OK, "%s: %s", cases[i].targets, err.msg);
            ck_assert_uint_eq(a->n_targets, 12);
        } else {
            ck_assert_msg(s == LH_ERR_FORMAT, "%s loaded", cases[i].targets);
            ck_assert_msg(strstr(err.msg, "does not select") && strstr(err.msg, cases[i].module),
                          "%s: %s", cases[i].targets, err.msg);
        }
        lh_adapter_free(a);
    }
    lh_rmtree(dir);
}
END_TEST

/* adapt's --modules: a directory of PEFT dirs with .bin tensors, and a
 * single .bin file (not mistaken for a list file). */
START_TEST(test_modules_spec)
{
    lh_module_set *set = NULL;
    lh_error err = {0};
    ck_assert_msg(lh_modules_from_spec(FIX "t5-lora/adapter_model.bin", NULL, 0, 1, &set, &err)
                  == LH_OK, "%s", err.msg);
    ck_assert_uint_eq(set->n, 1);
    ck_assert_uint_eq(set->mods[0]->n_targets, 12);
    lh_module_set_free(set);
    ck_assert_msg(lh_modules_from_spec(FIX, NULL, 0, 1, &set, &err) == LH_OK, "%s", err.msg);
    ck_assert_uint_eq(set->n, 3); /* t5-lora, t5-lora-default, t5-lora-st */
    for (size_t i = 0; i < 3; i++)
        ck_assert_str_eq(set->mods[i]->task_type, "SEQ_2_SEQ_LM");
    lh_module_set_free(set);
}
END_TEST

START_TEST(test_model_bin)
{
    nm_model *ref = NULL, *one = NULL, *shard = NULL;
    lh_error err = {0};
    ck_assert_msg(nm_model_load("tests/fixtures/native/b", &ref, &err) == LH_OK, "%s", err.msg);
    ck_assert_msg(nm_model_load(FIX "b-bin", &one, &err) == LH_OK, "%s", err.msg);
    ck_assert_msg(nm_model_load(FIX "b-binshard", &shard, &err) == LH_OK, "%s", err.msg);
    ck_assert_uint_eq(one->blob_floats, ref->blob_floats);
    ck_assert_uint_eq(shard->blob_floats, ref->blob_floats);
    ck_assert_mem_eq(one->blob, ref->blob, ref->blob_floats * sizeof(float));
    ck_assert_mem_eq(shard->blob, ref->blob, ref->blob_floats * sizeof(float));
    nm_model_free(ref);
    nm_model_free(one);
    nm_model_free(shard);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("torchzip");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_every_value);
    tcase_add_test(tc, test_shared_storage);
    tcase_add_test(tc, test_refused_files);
    tcase_add_test(tc, test_every_truncation);
    tcase_add_test(tc, test_hand_pickles);
    tcase_add_test(tc, test_hand_zips);
    tcase_add_test(tc, test_peft_seq2seq_bin);
    tcase_add_test(tc, test_seq2seq_target_suffixes);
    tcase_add_test(tc, test_modules_spec);
    tcase_add_test(tc, test_model_bin);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

/* lib/gguf.c - the GGUF container: a reader that checks every rule of
 * ggml's gguf.cpp (gguf_init_from_reader) and a writer whose output that
 * reader and gguf-py's GGUFReader accept.
 *
 * The reader maps the file and walks it with a cursor that never reads past
 * the end; each refusal is one line naming the file, the key or tensor and
 * the numbers involved. Differences from ggml, all refusals of files ggml
 * would take: a key or tensor name holding a NUL byte, an empty tensor
 * name, a BOOL value other than 0 or 1. */
#include "gguf.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fsutil.h"
#include "strbuf.h"

#define MAX_STRING (1024u * 1024u * 1024u)     /* GGUF_MAX_STRING_LENGTH */
#define MAX_ARRAY (1024u * 1024u * 1024u)      /* GGUF_MAX_ARRAY_ELEMENTS */
#define MIN_KV_BYTES 13u   /* u64 key length, 1 key byte, u32 type, 0-byte ... 1-byte value */
#define MIN_INFO_BYTES 24u /* u64 name length, u32 n_dims, u32 type, u64 offset */

/* ---- ggml types: block size (elements) and block bytes (ggml.c type_traits) ---- */

typedef struct ggml_type_info {
    const char *name;
    uint32_t blck, size;
} ggml_type_info;

static const ggml_type_info GGML_TYPES[] = {
    [0] = {"F32", 1, 4},        [1] = {"F16", 1, 2},        [2] = {"Q4_0", 32, 18},
    [3] = {"Q4_1", 32, 20},     [6] = {"Q5_0", 32, 22},     [7] = {"Q5_1", 32, 24},
    [8] = {"Q8_0", 32, 34},     [9] = {"Q8_1", 32, 36},     [10] = {"Q2_K", 256, 84},
    [11] = {"Q3_K", 256, 110},  [12] = {"Q4_K", 256, 144},  [13] = {"Q5_K", 256, 176},
    [14] = {"Q6_K", 256, 210},  [15] = {"Q8_K", 256, 292},  [16] = {"IQ2_XXS", 256, 66},
    [17] = {"IQ2_XS", 256, 74}, [18] = {"IQ3_XXS", 256, 98}, [19] = {"IQ1_S", 256, 50},
    [20] = {"IQ4_NL", 32, 18},  [21] = {"IQ3_S", 256, 110}, [22] = {"IQ2_S", 256, 82},
    [23] = {"IQ4_XS", 256, 136}, [24] = {"I8", 1, 1},       [25] = {"I16", 1, 2},
    [26] = {"I32", 1, 4},       [27] = {"I64", 1, 8},       [28] = {"F64", 1, 8},
    [29] = {"IQ1_M", 256, 56},  [30] = {"BF16", 1, 2},      [34] = {"TQ1_0", 256, 54},
    [35] = {"TQ2_0", 256, 66},  [39] = {"MXFP4", 32, 17},   [40] = {"NVFP4", 64, 36},
    [41] = {"Q1_0", 128, 18},   [42] = {"Q2_0", 64, 18},
};
#define N_GGML_TYPES (sizeof GGML_TYPES / sizeof GGML_TYPES[0])

const char *lh_ggml_type_name(uint32_t type)
{
    return type < N_GGML_TYPES ? GGML_TYPES[type].name : NULL;
}

static const char *const TYPE_NAMES[LH_GGUF_TYPE_COUNT] = {
    "u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "str", "arr", "u64", "i64", "f64",
};
static const unsigned TYPE_SIZES[LH_GGUF_TYPE_COUNT] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};

const char *lh_gguf_type_name(lh_gguf_type t)
{
    return (unsigned)t < LH_GGUF_TYPE_COUNT ? TYPE_NAMES[t] : "?";
}

static uint32_t get_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get_le64(const uint8_t *p)
{
    return (uint64_t)get_le32(p) | (uint64_t)get_le32(p + 4) << 32;
}

/* ---- reader ---- */

typedef struct cursor {
    const uint8_t *p;
    size_t size, pos;
    const char *o;   /* origin, for messages */
    lh_error *err;
} cursor;

static lh_status truncated(cursor *c, const char *what)
{
    return lh_error_set(c->err, LH_ERR_FORMAT, "%s: truncated: %s runs past the end of the file "
                        "(%zu bytes)", c->o, what, c->size);
}

static lh_status rd_u32(cursor *c, uint32_t *v, const char *what)
{
    if (c->size - c->pos < 4)
        return truncated(c, what);
    *v = get_le32(c->p + c->pos);
    c->pos += 4;
    return LH_OK;
}

static lh_status rd_u64(cursor *c, uint64_t *v, const char *what)
{
    if (c->size - c->pos < 8)
        return truncated(c, what);
    *v = get_le64(c->p + c->pos);
    c->pos += 8;
    return LH_OK;
}

/* A string: u64 length then bytes. *s points into the file. */
static lh_status rd_str(cursor *c, const char **s, uint64_t *len, const char *what)
{
    lh_status st = rd_u64(c, len, what);
    if (st)
        return st;
    if (*len > MAX_STRING)
        return lh_error_set(c->err, LH_ERR_FORMAT, "%s: %s is %" PRIu64 " bytes long, over "
                            "GGUF's limit of %u", c->o, what, *len, MAX_STRING);
    if (c->size - c->pos < *len)
        return truncated(c, what);
    *s = (const char *)c->p + c->pos;
    c->pos += (size_t)*len;
    return LH_OK;
}

/* A name for C code: malloc'd copy; refuses NUL bytes inside. */
static lh_status dup_name(cursor *c, const char *s, uint64_t len, const char *what, char **out)
{
    if (memchr(s, '\0', (size_t)len))
        return lh_error_set(c->err, LH_ERR_FORMAT, "%s: %s holds a NUL byte", c->o, what);
    *out = strndup(s, (size_t)len);
    if (!*out)
        return lh_error_set(c->err, LH_ERR_NOMEM, "%s: out of memory", c->o);
    return LH_OK;
}

static lh_status read_header(cursor *c, lh_gguf *g, uint64_t *n_tensors, uint64_t *n_kv)
{
    if (c->size < 4 || memcmp(c->p, "GGUF", 4)) {
        char m[5] = "????";
        for (size_t i = 0; i < 4 && i < c->size; i++)
            m[i] = c->p[i] >= 0x20 && c->p[i] < 0x7f ? (char)c->p[i] : '?';
        return lh_error_set(c->err, LH_ERR_FORMAT, "%s: not a GGUF file (magic '%s', expected "
                            "'GGUF')", c->o, c->size < 4 ? "" : m);
    }
    c->pos = 4;
    lh_status st = rd_u32(c, &g->version, "the version");
    if (!st)
        st = rd_u64(c, n_tensors, "the tensor count");
    if (!st)
        st = rd_u64(c, n_kv, "the key/value count");
    if (st)
        return st;
    if (g->version != 0 && (g->version & 0xffffu) == 0)
        return lh_error_set(c->err, LH_ERR_FORMAT, "%s: GGUF version 0x%08" PRIx32 " reads as "
                            "byte-swapped: a big-endian file, which lorahub does not read",
                            c->o, g->version);
    if (g->version < 2 || g->version > 3)
        return lh_error_set(c->err, LH_ERR_FORMAT, "%s: GGUF version %" PRIu32 " is not "
                            "supported (2 and 3 are)", c->o, g->version);
    uint64_t room = c->size - c->pos;
    if (*n_kv > room / MIN_KV_BYTES || *n_tensors > room / MIN_INFO_BYTES ||
        *n_kv * MIN_KV_BYTES + *n_tensors * MIN_INFO_BYTES > room)
        return lh_error_set(c->err, LH_ERR_FORMAT, "%s: %" PRIu64 " key/value pairs and %" PRIu64
                            " tensors cannot fit in a file of %zu bytes", c->o, *n_kv,
                            *n_tensors, c->size);
    return LH_OK;
}

/* The value of key kv (type already read). */
static lh_status read_value(cursor *c, lh_gguf_kv *kv)
{
    char what[96];
    if (kv->type == LH_GGUF_STRING) {
        const uint8_t *at = c->p + c->pos;
        for (uint64_t i = 0; i < kv->n; i++) {
            const char *s;
            uint64_t len;
            snprintf(what, sizeof what, "a string of key '%.40s'", kv->key);
            lh_status st = rd_str(c, &s, &len, what);
            if (st)
                return st;
            if (!kv->is_array) {
                kv->str = strndup(s, (size_t)len);
                if (!kv->str)
                    return lh_error_set(c->err, LH_ERR_NOMEM, "%s: out of memory", c->o);
            }
        }
        kv->data = at;
        return LH_OK;
    }
    unsigned es = TYPE_SIZES[kv->type];
    if (kv->n > (c->size - c->pos) / es) {
        snprintf(what, sizeof what, "the %" PRIu64 " values of key '%.40s'", kv->n, kv->key);
        return truncated(c, what);
    }
    kv->data = c->p + c->pos;
    if (kv->type == LH_GGUF_BOOL)
        for (uint64_t i = 0; i < kv->n; i++)
            if (kv->data[i] > 1)
                return lh_error_set(c->err, LH_ERR_FORMAT, "%s: key '%s' holds bool value %u "
                                    "(0 or 1 expected)", c->o, kv->key, kv->data[i]);
    c->pos += (size_t)(kv->n * es);
    return LH_OK;
}

static lh_status read_kv(cursor *c, uint64_t i, lh_gguf_kv *kv)
{
    const char *s;
    uint64_t len;
    char what[64];
    snprintf(what, sizeof what, "key %" PRIu64, i);
    lh_status st = rd_str(c, &s, &len, what);
    if (st)
        return st;
    if (len == 0)
        return lh_error_set(c->err, LH_ERR_FORMAT, "%s: key %" PRIu64 " is empty", c->o, i);
    if ((st = dup_name(c, s, len, what, &kv->key)))
        return st;
    uint32_t type;
    snprintf(what, sizeof what, "the type of key '%.40s'", kv->key);
    if ((st = rd_u32(c, &type, what)))
        return st;
    kv->n = 1;
    if (type == LH_GGUF_ARRAY) {
        kv->is_array = 1;
        if ((st = rd_u32(c, &type, what)) || (st = rd_u64(c, &kv->n, what)))
            return st;
        if (type == LH_GGUF_ARRAY)
            return lh_error_set(c->err, LH_ERR_FORMAT, "%s: key '%s' is an array of arrays, "
                                "which GGUF does not allow", c->o, kv->key);
        if (kv->n > MAX_ARRAY)
            return lh_error_set(c->err, LH_ERR_FORMAT, "%s: key '%s' is an array of %" PRIu64
                                " elements, over GGUF's limit of %u", c->o, kv->key, kv->n,
                                MAX_ARRAY);
    }
    if (type >= LH_GGUF_TYPE_COUNT)
        return lh_error_set(c->err, LH_ERR_FORMAT, "%s: key '%s' has unknown value type %" PRIu32,
                            c->o, kv->key, type);
    kv->type = (lh_gguf_type)type;
    return read_value(c, kv);
}

static int cmp_str_ptr(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The first name given twice, or NULL. names: [n] pointers (reordered). */
static const char *find_duplicate(const char **names, size_t n)
{
    if (n < 2)
        return NULL;
    qsort(names, n, sizeof *names, cmp_str_ptr);
    for (size_t i = 1; i < n; i++)
        if (!strcmp(names[i], names[i - 1]))
            return names[i];
    return NULL;
}

static lh_status check_duplicates(cursor *c, const char **scratch, size_t n, const char *what)
{
    const char *dup = find_duplicate(scratch, n);
    if (dup)
        return lh_error_set(c->err, LH_ERR_FORMAT, "%s: duplicate %s '%s'", c->o, what, dup);
    return LH_OK;
}

static lh_status read_alignment(cursor *c, lh_gguf *g)
{
    g->alignment = LH_GGUF_DEFAULT_ALIGNMENT;
    const lh_gguf_kv *kv = lh_gguf_find_kv(g, "general.alignment");
    if (!kv)
        return LH_OK;
    if (kv->is_array || kv->type != LH_GGUF_UINT32)
        return lh_error_set(c->err, LH_ERR_FORMAT, "%s: general.alignment is %s%s, not u32",
                            c->o, kv->is_array ? "an array of " : "", lh_gguf_type_name(kv->type));
    uint32_t a = get_le32(kv->data);
    if (a == 0 || (a & (a - 1)))
        return lh_error_set(c->err, LH_ERR_FORMAT, "%s: general.alignment %" PRIu32 " is not a "
                            "power of 2", c->o, a);
    g->alignment = a;
    return LH_OK;
}

/* Shape, type and byte size of one tensor info (name already read). */
static lh_status read_tensor_shape(cursor *c, lh_gguf_tensor *t)
{
    char what[96];
    snprintf(what, sizeof what, "the shape of tensor '%s'", t->name);
    uint32_t n_dims, type;
    lh_status st = rd_u32(c, &n_dims, what);
    if (st)
        return st;
    if (n_dims > LH_GGUF_MAX_DIMS)
        return lh_error_set(c->err, LH_ERR_FORMAT, "%s: tensor '%s' has %" PRIu32 " dimensions "
                            "(at most %d)", c->o, t->name, n_dims, LH_GGUF_MAX_DIMS);
    t->n_dims = (int)n_dims;
    uint64_t numel = 1;
    int zero = 0;
    for (int j = 0; j < LH_GGUF_MAX_DIMS; j++) {
        uint64_t v = 1;
        if (j < t->n_dims && (st = rd_u64(c, &v, what)))
            return st;
        if (v > INT64_MAX)
            return lh_error_set(c->err, LH_ERR_FORMAT, "%s: tensor '%s' dimension %d is "
                                "negative (%" PRId64 ")", c->o, t->name, j, (int64_t)v);
        t->ne[j] = (int64_t)v;
        if (v == 0)
            zero = 1;
        else if (!zero && numel > (uint64_t)INT64_MAX / v)
            return lh_error_set(c->err, LH_ERR_FORMAT, "%s: tensor '%s' has more than 2^63 "
                                "elements", c->o, t->name);
        else
            numel *= v;
    }
    if (zero)
        numel = 0;
    snprintf(what, sizeof what, "the type of tensor '%s'", t->name);
    if ((st = rd_u32(c, &type, what)))
        return st;
    if (!lh_ggml_type_name(type))
        return lh_error_set(c->err, LH_ERR_FORMAT, "%s: tensor '%s' has unknown ggml type %" PRIu32,
                            c->o, t->name, type);
    t->type = type;
    const ggml_type_info *ti = &GGML_TYPES[type];
    if (t->ne[0] % ti->blck)
        return lh_error_set(c->err, LH_ERR_FORMAT, "%s: tensor '%s' of type %s has rows of %" PRId64
                            " elements, not a multiple of its block size %" PRIu32, c->o, t->name,
                            ti->name, t->ne[0], ti->blck);
    if (numel / ti->blck > (uint64_t)INT64_MAX / ti->size)
        return lh_error_set(c->err, LH_ERR_FORMAT, "%s: tensor '%s' is over 2^63 bytes", c->o,
                            t->name);
    t->nbytes = numel / ti->blck * ti->size;
    snprintf(what, sizeof what, "the data offset of tensor '%s'", t->name);
    return rd_u64(c, &t->offset, what);
}

static lh_status read_tensor_info(cursor *c, uint64_t i, lh_gguf_tensor *t)
{
    const char *s;
    uint64_t len;
    char what[64];
    snprintf(what, sizeof what, "the name of tensor %" PRIu64, i);
    lh_status st = rd_str(c, &s, &len, what);
    if (st)
        return st;
    if (len == 0)
        return lh_error_set(c->err, LH_ERR_FORMAT, "%s: tensor %" PRIu64 " has an empty name",
                            c->o, i);
    if (len >= LH_GGUF_MAX_NAME)
        return lh_error_set(c->err, LH_ERR_FORMAT, "%s: tensor %" PRIu64 " name '%.*s...' is %"
                            PRIu64 " bytes (GGUF allows %d)", c->o, i, 40, s, len,
                            LH_GGUF_MAX_NAME - 1);
    if ((st = dup_name(c, s, len, what, &t->name)))
        return st;
    return read_tensor_shape(c, t);
}

/* Data section: offsets are the padded running totals, all inside the file. */
static lh_status place_data(cursor *c, lh_gguf *g)
{
    uint64_t start = c->pos;
    if (g->n_tensors) {
        start = (c->pos + g->alignment - 1) / g->alignment * g->alignment;
        if (start > c->size)
            return truncated(c, "the padding before the tensor data");
    }
    g->data_offset = start;
    uint64_t total = 0, room = c->size - start;
    for (size_t i = 0; i < g->n_tensors; i++) {
        lh_gguf_tensor *t = &g->tensors[i];
        if (t->offset != total)
            return lh_error_set(c->err, LH_ERR_FORMAT, "%s: tensor '%s' has data offset %" PRIu64
                                ", expected %" PRIu64 " (the previous tensors' sizes padded to "
                                "%" PRIu32 ")", c->o, t->name, t->offset, total, g->alignment);
        uint64_t padded = t->nbytes + (g->alignment - t->nbytes % g->alignment) % g->alignment;
        if (padded < t->nbytes || padded > room - total)
            return lh_error_set(c->err, LH_ERR_FORMAT, "%s: tensor '%s' (%" PRIu64 " bytes at "
                                "offset %" PRIu64 ") runs past the end of the file (%" PRIu64
                                " data bytes)", c->o, t->name, t->nbytes, t->offset, room);
        t->data = c->p + start + total;
        total += padded;
    }
    return LH_OK;
}

static lh_status parse_all(cursor *c, lh_gguf *g, lh_gguf_mode mode)
{
    uint64_t n_tensors, n_kv;
    lh_status st = read_header(c, g, &n_tensors, &n_kv);
    if (st)
        return st;
    size_t most = (size_t)(n_kv > n_tensors ? n_kv : n_tensors);
    const char **scratch = most ? malloc(most * sizeof *scratch) : NULL;
    g->kv = n_kv ? calloc((size_t)n_kv, sizeof *g->kv) : NULL;
    if ((most && !scratch) || (n_kv && !g->kv)) {
        free(scratch);
        return lh_error_set(c->err, LH_ERR_NOMEM, "%s: out of memory", c->o);
    }
    for (uint64_t i = 0; i < n_kv && !st; i++) {
        st = read_kv(c, i, &g->kv[i]);
        g->n_kv = (size_t)i + 1;
        scratch[i] = g->kv[i].key;
    }
    if (!st)
        st = check_duplicates(c, scratch, g->n_kv, "key");
    if (!st)
        st = read_alignment(c, g);
    if (st || mode == LH_GGUF_KV_ONLY) {
        free(scratch);
        return st;
    }
    g->tensors = n_tensors ? calloc((size_t)n_tensors, sizeof *g->tensors) : NULL;
    if (n_tensors && !g->tensors)
        st = lh_error_set(c->err, LH_ERR_NOMEM, "%s: out of memory", c->o);
    for (uint64_t i = 0; i < n_tensors && !st; i++) {
        st = read_tensor_info(c, i, &g->tensors[i]);
        g->n_tensors = (size_t)i + 1;
        scratch[i] = g->tensors[i].name;
    }
    if (!st)
        st = check_duplicates(c, scratch, g->n_tensors, "tensor name");
    free(scratch);
    return st ? st : place_data(c, g);
}

lh_status lh_gguf_parse(const void *buf, size_t size, const char *origin, lh_gguf_mode mode,
                        lh_gguf **out, lh_error *err)
{
    *out = NULL;
    lh_gguf *g = calloc(1, sizeof *g);
    if (!g || !(g->path = strdup(origin ? origin : "gguf"))) {
        free(g);
        return lh_error_set(err, LH_ERR_NOMEM, "%s: out of memory", origin ? origin : "gguf");
    }
    g->base = buf;
    g->size = size;
    static const uint8_t empty[1];
    cursor c = {.p = buf ? buf : empty, .size = size, .o = g->path, .err = err};
    lh_status st = parse_all(&c, g, mode);
    if (st) {
        lh_gguf_free(g);
        return lh_error_one_line(st, err);
    }
    *out = g;
    return LH_OK;
}

lh_status lh_gguf_open(const char *path, lh_gguf_mode mode, lh_gguf **out, lh_error *err)
{
    *out = NULL;
    int fd;
    size_t size;
    void *map;
    /* never a blocked open: a FIFO, device or directory is refused at once */
    lh_status ost = lh_map_regular(path, &fd, &map, &size, err);
    if (ost != LH_OK)
        return ost;
    close(fd);
    lh_status st = lh_gguf_parse(map, size, path, mode, out, err);
    if (st) {
        if (map)
            munmap(map, size);
        return st;
    }
    (*out)->mapped = map != NULL;
    return LH_OK;
}

void lh_gguf_free(lh_gguf *g)
{
    if (!g)
        return;
    for (size_t i = 0; i < g->n_kv; i++) {
        free(g->kv[i].key);
        free(g->kv[i].str);
    }
    for (size_t i = 0; i < g->n_tensors; i++)
        free(g->tensors[i].name);
    free(g->kv);
    free(g->tensors);
    if (g->mapped)
        munmap((void *)g->base, g->size);
    free(g->path);
    free(g);
}

int lh_gguf_sniff(const char *path)
{
    int fd;
    if (lh_open_regular(path, &fd, NULL, NULL) != LH_OK)
        return 0;
    char m[4];
    ssize_t n = read(fd, m, 4);
    close(fd);
    return n == 4 && !memcmp(m, "GGUF", 4);
}

const lh_gguf_kv *lh_gguf_find_kv(const lh_gguf *g, const char *key)
{
    for (size_t i = 0; g && key && i < g->n_kv; i++)
        if (g->kv[i].key && !strcmp(g->kv[i].key, key))
            return &g->kv[i];
    return NULL;
}

const lh_gguf_tensor *lh_gguf_find_tensor(const lh_gguf *g, const char *name)
{
    for (size_t i = 0; g && name && i < g->n_tensors; i++)
        if (g->tensors[i].name && !strcmp(g->tensors[i].name, name))
            return &g->tensors[i];
    return NULL;
}

int lh_gguf_kv_int(const lh_gguf_kv *kv, int64_t *out)
{
    if (!kv || kv->is_array)
        return 0;
    const uint8_t *p = kv->data;
    switch (kv->type) {
    case LH_GGUF_UINT8: case LH_GGUF_BOOL: *out = p[0]; return 1;
    case LH_GGUF_INT8: *out = (int8_t)p[0]; return 1;
    case LH_GGUF_UINT16: *out = (uint16_t)(p[0] | p[1] << 8); return 1;
    case LH_GGUF_INT16: *out = (int16_t)(uint16_t)(p[0] | p[1] << 8); return 1;
    case LH_GGUF_UINT32: *out = get_le32(p); return 1;
    case LH_GGUF_INT32: *out = (int32_t)get_le32(p); return 1;
    case LH_GGUF_INT64: *out = (int64_t)get_le64(p); return 1;
    case LH_GGUF_UINT64: {
        uint64_t v = get_le64(p);
        if (v > INT64_MAX)
            return 0;
        *out = (int64_t)v;
        return 1;
    }
    default: return 0;
    }
}

/* ---- writer ---- */

static void put_u32(lh_sb *sb, uint32_t v)
{
    uint8_t b[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    lh_sb_append_n(sb, (const char *)b, 4);
}

static void put_u64(lh_sb *sb, uint64_t v)
{
    put_u32(sb, (uint32_t)v);
    put_u32(sb, (uint32_t)(v >> 32));
}

static void put_str(lh_sb *sb, const char *s)
{
    size_t n = strlen(s);
    put_u64(sb, n);
    lh_sb_append_n(sb, s, n);
}

static void pad_to(lh_sb *sb, uint32_t alignment)
{
    static const char zeros[64];
    size_t n = (alignment - sb->len % alignment) % alignment;
    lh_sb_append_n(sb, zeros, n);
}

static uint64_t tensor_bytes(const lh_gguf_out_tensor *t)
{
    uint64_t n = 1;
    for (int j = 0; j < t->n_dims; j++)
        n *= (uint64_t)t->ne[j];
    return n * GGML_TYPES[t->type].size;
}

static uint64_t padded(uint64_t n)
{
    return (n + LH_GGUF_DEFAULT_ALIGNMENT - 1) / LH_GGUF_DEFAULT_ALIGNMENT *
           LH_GGUF_DEFAULT_ALIGNMENT;
}

/* Check what is about to be written: names and keys as the reader wants them. */
static lh_status check_out(const char *o, const lh_gguf_out_kv *kv, size_t n_kv,
                           const lh_gguf_out_tensor *t, size_t n_t, lh_error *err)
{
    size_t most = n_kv > n_t ? n_kv : n_t;
    const char **names = most ? malloc(most * sizeof *names) : NULL;
    if (most && !names)
        return lh_error_set(err, LH_ERR_NOMEM, "%s: out of memory", o);
    lh_status st = LH_OK;
    for (size_t i = 0; i < n_kv && !st; i++) {
        names[i] = kv[i].key;
        if (!kv[i].key || !*kv[i].key || (kv[i].type == LH_GGUF_STRING && !kv[i].str) ||
            (kv[i].type != LH_GGUF_STRING && kv[i].type != LH_GGUF_UINT32 &&
             kv[i].type != LH_GGUF_FLOAT32))
            st = lh_error_set(err, LH_ERR_ARG, "%s: key %zu is empty or of a type the writer "
                              "does not write", o, i);
    }
    const char *dup = st ? NULL : find_duplicate(names, n_kv);
    if (dup)
        st = lh_error_set(err, LH_ERR_ARG, "%s: key '%s' given twice", o, dup);
    for (size_t i = 0; i < n_t && !st; i++) {
        names[i] = t[i].name;
        size_t len = t[i].name ? strlen(t[i].name) : 0;
        if (len == 0 || len >= LH_GGUF_MAX_NAME)
            st = lh_error_set(err, LH_ERR_ARG, "%s: tensor name '%s' is %zu bytes (1 to %d "
                              "allowed)", o, t[i].name ? t[i].name : "", len, LH_GGUF_MAX_NAME - 1);
        else if (t[i].type != LH_GGML_F32 && t[i].type != LH_GGML_F16 && t[i].type != LH_GGML_BF16)
            st = lh_error_set(err, LH_ERR_ARG, "%s: tensor '%s': the writer writes F32, F16 and "
                              "BF16 only", o, t[i].name);
        else if (t[i].n_dims < 1 || t[i].n_dims > LH_GGUF_MAX_DIMS)
            st = lh_error_set(err, LH_ERR_ARG, "%s: tensor '%s' has %d dimensions", o, t[i].name,
                              t[i].n_dims);
        for (int j = 0; j < t[i].n_dims && !st; j++)
            if (t[i].ne[j] <= 0 || t[i].ne[j] > (int64_t)1 << 40)
                st = lh_error_set(err, LH_ERR_ARG, "%s: tensor '%s' dimension %d is %" PRId64, o,
                                  t[i].name, j, t[i].ne[j]);
    }
    dup = st ? NULL : find_duplicate(names, n_t);
    if (dup)
        st = lh_error_set(err, LH_ERR_ARG, "%s: tensor '%s' given twice", o, dup);
    free(names);
    return st;
}

/* Everything before the data section, padded. */
static lh_status build_header(const char *o, const lh_gguf_out_kv *kv, size_t n_kv,
                              const lh_gguf_out_tensor *t, size_t n_t, lh_sb *sb, lh_error *err)
{
    lh_status st = check_out(o, kv, n_kv, t, n_t, err);
    if (st)
        return st;
    lh_sb_init(sb);
    lh_sb_append_n(sb, "GGUF", 4);
    put_u32(sb, 3);
    put_u64(sb, n_t);
    put_u64(sb, n_kv);
    for (size_t i = 0; i < n_kv; i++) {
        put_str(sb, kv[i].key);
        put_u32(sb, kv[i].type);
        if (kv[i].type == LH_GGUF_STRING)
            put_str(sb, kv[i].str);
        else if (kv[i].type == LH_GGUF_UINT32)
            put_u32(sb, kv[i].u32);
        else {
            uint32_t bits;
            memcpy(&bits, &kv[i].f32, 4);
            put_u32(sb, bits);
        }
    }
    uint64_t off = 0;
    for (size_t i = 0; i < n_t; i++) {
        put_str(sb, t[i].name);
        put_u32(sb, (uint32_t)t[i].n_dims);
        for (int j = 0; j < t[i].n_dims; j++)
            put_u64(sb, (uint64_t)t[i].ne[j]);
        put_u32(sb, t[i].type);
        put_u64(sb, off);
        off += padded(tensor_bytes(&t[i]));
    }
    pad_to(sb, LH_GGUF_DEFAULT_ALIGNMENT);
    if (lh_sb_failed(sb)) {
        lh_sb_release(sb);
        return lh_error_set(err, LH_ERR_NOMEM, "%s: out of memory", o);
    }
    return LH_OK;
}

lh_status lh_gguf_serialize(const lh_gguf_out_kv *kv, size_t n_kv, const lh_gguf_out_tensor *t,
                            size_t n_t, uint8_t **out, size_t *out_size, lh_error *err)
{
    *out = NULL;
    *out_size = 0;
    lh_sb sb;
    lh_status st = build_header("gguf", kv, n_kv, t, n_t, &sb, err);
    if (st)
        return st;
    for (size_t i = 0; i < n_t; i++) {
        uint64_t n = tensor_bytes(&t[i]);
        lh_sb_append_n(&sb, t[i].data, (size_t)n);
        pad_to(&sb, LH_GGUF_DEFAULT_ALIGNMENT);
    }
    if (lh_sb_failed(&sb)) {
        lh_sb_release(&sb);
        return lh_error_set(err, LH_ERR_NOMEM, "gguf: out of memory");
    }
    *out_size = sb.len;
    *out = (uint8_t *)lh_sb_detach(&sb);
    return LH_OK;
}

lh_status lh_gguf_write(const char *path, const lh_gguf_out_kv *kv, size_t n_kv,
                        const lh_gguf_out_tensor *t, size_t n_t, lh_error *err)
{
    lh_sb sb;
    lh_status st = build_header(path, kv, n_kv, t, n_t, &sb, err);
    if (st)
        return st;
    lh_atomic_file f;
    st = lh_atomic_begin(&f, path, err);
    if (st) {
        lh_sb_release(&sb);
        return st;
    }
    st = lh_atomic_write(&f, sb.buf, sb.len, err);
    lh_sb_release(&sb);
    static const uint8_t zeros[LH_GGUF_DEFAULT_ALIGNMENT];
    for (size_t i = 0; i < n_t && !st; i++) {
        uint64_t n = tensor_bytes(&t[i]);
        st = lh_atomic_write(&f, t[i].data, (size_t)n, err);
        if (!st && padded(n) != n)
            st = lh_atomic_write(&f, zeros, (size_t)(padded(n) - n), err);
    }
    if (st) {
        lh_atomic_abort(&f);
        return st;
    }
    return lh_atomic_commit(&f, err);
}

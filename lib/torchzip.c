/* lib/torchzip.c - torch.save zip checkpoints, read without running code.
 *
 * Sources for the layout: torch/serialization.py (_save, _load),
 * caffe2/serialize/inline_container.cc (the zip writer and reader: stored
 * entries, 64-byte aligned data, Zip64, the top folder taken from the first
 * entry's name), torch/_weights_only_unpickler.py (the idea of an allow-list
 * of globals), and the pickle protocol (Lib/pickletools.py); the layout is
 * summarized in lib/torchzip.h.
 *
 * Two passes over untrusted bytes, both bounded by the file's size:
 *   zip_read    the central directory into a sorted table of entries
 *   unpickle    data.pkl on a small stack machine whose values are plain
 *               data (ints, strings, tuples, dicts) and tags for the
 *               allowed globals; REDUCE on a tag builds a storage reference
 *               or a tensor view, never calls anything.
 * Every allocation the pickle causes is proportional to its length and
 * capped (MAX_STACK, MAX_NODES). The CRC-32 of data.pkl is checked before
 * it is run; storages are checked by their sizes only (a CRC of gigabytes
 * of weights would cost more than the load). */
#include "strbuf.h"
#include "torchzip.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- bytes */

static uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t rd32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t rd64(const uint8_t *p) { return rd32(p) | (uint64_t)rd32(p + 4) << 32; }

/* CRC-32 (zip's, reflected 0xEDB88320), used on data.pkl only: the pickle
 * is small and decides everything; storages are checked by their sizes. */
static uint32_t crc32_of(const uint8_t *p, size_t n)
{
    static uint32_t table[256];
    static int ready;
    if (!ready) {
        for (uint32_t i = 0; i < 256; i++) {
            uint32_t c = i;
            for (int k = 0; k < 8; k++)
                c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
            table[i] = c;
        }
        ready = 1;
    }
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++)
        c = table[(c ^ p[i]) & 0xFF] ^ (c >> 8);
    return c ^ 0xFFFFFFFFu;
}

/* A name from the file, printable and short, for messages. */
static const char *quoted(const char *s, size_t n, char *buf, size_t cap)
{
    return lh_str_printable(s, n, 80, buf, cap);
}

/* ------------------------------------------------------------------ zip */

typedef struct zentry {
    const char *name;   /* in the central directory: [name_len], not NUL-terminated */
    size_t name_len;
    uint64_t off;       /* first data byte, from the local header */
    uint64_t size;
    uint32_t crc;
} zentry;

typedef struct zarchive {
    const char *o;       /* origin, for messages */
    const uint8_t *base;
    uint64_t size;
    zentry *e;           /* [n] sorted by name */
    size_t n;
    const char *top;     /* the top folder: the first entry's name up to '/' */
    size_t top_len;
} zarchive;

#define SIG_LOCAL 0x04034b50u
#define SIG_CENTRAL 0x02014b50u
#define SIG_EOCD 0x06054b50u
#define SIG_EOCD64 0x06064b50u
#define SIG_LOC64 0x07064b50u

/* Where the central directory is and how many entries it claims. */
typedef struct zdir {
    uint64_t cd_off, cd_size, n, cd_limit; /* cd_limit: the directory ends before this */
} zdir;

static lh_status find_eocd64(const zarchive *z, uint64_t eocd, zdir *d, lh_error *err)
{
    const uint8_t *b = z->base;
    if (eocd < 20 || rd32(b + eocd - 20) != SIG_LOC64)
        return LH_OK; /* no Zip64 record: the 32-bit fields are the truth */
    const uint8_t *loc = b + eocd - 20;
    uint64_t off = rd64(loc + 8);
    if (rd32(loc + 4) != 0 || rd32(loc + 16) > 1)
        return lh_error_set(err, LH_ERR_UNSUPPORTED, "%s: a multi-disk zip archive", z->o);
    if (off > eocd - 20 || eocd - 20 - off < 56 || rd32(b + off) != SIG_EOCD64)
        return lh_error_set(err, LH_ERR_FORMAT, "%s: the Zip64 locator points at offset %" PRIu64
                            ", where there is no Zip64 end of central directory", z->o, off);
    const uint8_t *r = b + off;
    if (rd32(r + 16) != 0 || rd32(r + 20) != 0)
        return lh_error_set(err, LH_ERR_UNSUPPORTED, "%s: a multi-disk zip archive", z->o);
    d->n = rd64(r + 32);
    d->cd_size = rd64(r + 40);
    d->cd_off = rd64(r + 48);
    d->cd_limit = off;
    if (rd64(r + 24) != d->n)
        return lh_error_set(err, LH_ERR_UNSUPPORTED, "%s: a multi-disk zip archive", z->o);
    return LH_OK;
}

static lh_status find_directory(const zarchive *z, zdir *d, lh_error *err)
{
    const uint8_t *b = z->base;
    uint64_t size = z->size;
    if (size < 22)
        return lh_error_set(err, LH_ERR_FORMAT, "%s: %" PRIu64 " bytes is too small for a zip "
                            "archive (truncated?)", z->o, size);
    uint64_t lo = size > 22 + 65535 ? size - 22 - 65535 : 0, eocd = size - 22;
    for (;; eocd--) {
        if (rd32(b + eocd) == SIG_EOCD && eocd + 22 + rd16(b + eocd + 20) <= size)
            break;
        if (eocd == lo)
            return lh_error_set(err, LH_ERR_FORMAT, "%s: no zip end of central directory record "
                                "(the file is truncated or not a zip archive)", z->o);
    }
    const uint8_t *r = b + eocd;
    if (rd16(r + 4) != 0 || rd16(r + 6) != 0 || rd16(r + 8) != rd16(r + 10))
        return lh_error_set(err, LH_ERR_UNSUPPORTED, "%s: a multi-disk zip archive", z->o);
    d->n = rd16(r + 10);
    d->cd_size = rd32(r + 12);
    d->cd_off = rd32(r + 16);
    d->cd_limit = eocd;
    lh_status s = find_eocd64(z, eocd, d, err);
    if (s)
        return s;
    if (d->cd_off > d->cd_limit || d->cd_size > d->cd_limit - d->cd_off)
        return lh_error_set(err, LH_ERR_FORMAT, "%s: the central directory (offset %" PRIu64
                            ", %" PRIu64 " bytes) runs past its end record at %" PRIu64
                            " (truncated or lying sizes)", z->o, d->cd_off, d->cd_size,
                            d->cd_limit);
    if (d->n > d->cd_size / 46)
        return lh_error_set(err, LH_ERR_FORMAT, "%s: %" PRIu64 " entries cannot fit in a "
                            "central directory of %" PRIu64 " bytes", z->o, d->n, d->cd_size);
    return LH_OK;
}

/* The Zip64 extra field (id 1) holds, in order, the 64-bit values of the
 * fields whose 32-bit value is 0xFFFFFFFF. */
static int zip64_extra(const uint8_t *x, size_t xlen, uint64_t *usize, uint64_t *csize,
                       uint64_t *lho)
{
    uint64_t *want[3] = {usize, csize, lho};
    while (xlen >= 4) {
        size_t id = rd16(x), sz = rd16(x + 2);
        if (sz > xlen - 4)
            return -1;
        if (id == 1) {
            size_t at = 0;
            for (int k = 0; k < 3; k++) {
                if (*want[k] != 0xFFFFFFFFu)
                    continue;
                if (at + 8 > sz)
                    return -1;
                *want[k] = rd64(x + 4 + at);
                at += 8;
            }
            return 0;
        }
        x += 4 + sz;
        xlen -= 4 + sz;
    }
    return 0;
}

/* One central directory record at p (within [p, end)); fills e. */
static lh_status read_central(const zarchive *z, const uint8_t *p, const uint8_t *end,
                              uint64_t data_limit, zentry *e, size_t *rec_len, lh_error *err)
{
    char nb[300];
    if (end - p < 46 || rd32(p) != SIG_CENTRAL)
        return lh_error_set(err, LH_ERR_FORMAT, "%s: corrupt zip central directory at offset %td",
                            z->o, p - z->base);
    size_t nlen = rd16(p + 28), xlen = rd16(p + 30), clen = rd16(p + 32);
    if ((size_t)(end - p) - 46 < nlen + xlen + clen)
        return lh_error_set(err, LH_ERR_FORMAT, "%s: zip central directory record at offset %td "
                            "runs past the directory", z->o, p - z->base);
    *rec_len = 46 + nlen + xlen + clen;
    e->name = (const char *)p + 46;
    e->name_len = nlen;
    const char *nm = quoted(e->name, nlen, nb, sizeof nb);
    unsigned flags = rd16(p + 8), method = rd16(p + 10);
    uint64_t csize = rd32(p + 20), usize = rd32(p + 24), lho = rd32(p + 42);
    e->crc = rd32(p + 16);
    if (flags & 1)
        return lh_error_set(err, LH_ERR_UNSUPPORTED, "%s: zip entry '%s' is encrypted", z->o, nm);
    if (method != 0)
        return lh_error_set(err, LH_ERR_UNSUPPORTED, "%s: zip entry '%s' is compressed (method %u%s); "
                            "torch.save writes stored entries only, and lorahub reads only those",
                            z->o, nm, method, method == 8 ? ", deflate" : "");
    if (zip64_extra(p + 46 + nlen, xlen, &usize, &csize, &lho) != 0)
        return lh_error_set(err, LH_ERR_FORMAT, "%s: zip entry '%s' has a malformed Zip64 extra "
                            "field", z->o, nm);
    if (csize != usize)
        return lh_error_set(err, LH_ERR_FORMAT, "%s: stored zip entry '%s' says %" PRIu64
                            " bytes compressed but %" PRIu64 " uncompressed", z->o, nm, csize, usize);
    if (lho > data_limit || data_limit - lho < 30 || rd32(z->base + lho) != SIG_LOCAL)
        return lh_error_set(err, LH_ERR_FORMAT, "%s: zip entry '%s': no local header at offset %"
                            PRIu64, z->o, nm, lho);
    const uint8_t *l = z->base + lho;
    uint64_t data = lho + 30 + rd16(l + 26) + rd16(l + 28);
    if (rd16(l + 26) != nlen || data > data_limit ||
        memcmp(l + 30, e->name, nlen) != 0)
        return lh_error_set(err, LH_ERR_FORMAT, "%s: zip entry '%s': its local header does not "
                            "match the central directory", z->o, nm);
    if (usize > data_limit - data)
        return lh_error_set(err, LH_ERR_FORMAT, "%s: zip entry '%s' (%" PRIu64 " bytes at offset %"
                            PRIu64 ") runs past the end of the data (truncated or lying sizes)",
                            z->o, nm, usize, data);
    e->off = data;
    e->size = usize;
    return LH_OK;
}

static int name_cmp(const char *a, size_t an, const char *b, size_t bn)
{
    int c = memcmp(a, b, an < bn ? an : bn);
    return c ? c : (an > bn) - (an < bn);
}

static int cmp_zentry(const void *a, const void *b)
{
    const zentry *x = a, *y = b;
    return name_cmp(x->name, x->name_len, y->name, y->name_len);
}

static lh_status zip_read(zarchive *z, lh_error *err)
{
    zdir d = {0};
    lh_status s = find_directory(z, &d, err);
    if (s)
        return s;
    if (d.n == 0)
        return lh_error_set(err, LH_ERR_FORMAT, "%s: an empty zip archive", z->o);
    z->e = calloc((size_t)d.n, sizeof *z->e);
    if (!z->e)
        return lh_error_set(err, LH_ERR_NOMEM, "%s: out of memory", z->o);
    const uint8_t *p = z->base + d.cd_off, *end = p + d.cd_size;
    for (uint64_t i = 0; i < d.n; i++) {
        size_t rec = 0;
        if ((s = read_central(z, p, end, d.cd_off, &z->e[i], &rec, err)))
            return s;
        p += rec;
        z->n++;
    }
    /* torch names the archive after the first entry's top folder */
    const char *slash = memchr(z->e[0].name, '/', z->e[0].name_len);
    if (!slash)
        return lh_error_set(err, LH_ERR_FORMAT, "%s: a zip archive but not a torch.save file "
                            "(its first entry is not inside a folder)", z->o);
    z->top = z->e[0].name;
    z->top_len = (size_t)(slash - z->top);
    qsort(z->e, z->n, sizeof *z->e, cmp_zentry);
    for (size_t i = 1; i < z->n; i++)
        if (!cmp_zentry(&z->e[i - 1], &z->e[i])) {
            char nb[300];
            return lh_error_set(err, LH_ERR_FORMAT, "%s: zip entry '%s' appears twice", z->o,
                                quoted(z->e[i].name, z->e[i].name_len, nb, sizeof nb));
        }
    return LH_OK;
}

/* The entry <top>/<rest>, or NULL. */
static const zentry *zip_find(const zarchive *z, const char *rest, size_t rest_len)
{
    char buf[512];
    if (z->top_len + 1 + rest_len > sizeof buf)
        return NULL;
    memcpy(buf, z->top, z->top_len);
    buf[z->top_len] = '/';
    memcpy(buf + z->top_len + 1, rest, rest_len);
    size_t n = z->top_len + 1 + rest_len;
    size_t lo = 0, hi = z->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = name_cmp(z->e[mid].name, z->e[mid].name_len, buf, n);
        if (!c)
            return &z->e[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

/* --------------------------------------------------------------- pickle */

typedef enum vkind {
    V_NONE, V_BOOL, V_INT, V_FLOAT, V_STR, V_TUPLE, V_LIST, V_DICT, V_GLOBAL, V_STORAGE, V_TENSOR
} vkind;

static const char *const kind_names[] = {
    "None", "a bool", "an int", "a float", "a string", "a tuple", "a list", "a dict",
    "a global", "a storage", "a tensor",
};

/* The globals a torch state dict may name: everything else is refused. */
typedef enum gtag {
    G_ORDERED_DICT, G_REBUILD_TENSOR, G_REBUILD_PARAM, G_REBUILD_PARAM_STATE,
    G_REBUILD_FROM_TYPE, G_TYPE_TENSOR, G_TYPE_PARAM, G_STORAGE
} gtag;

static const struct {
    const char *module, *name;
    gtag tag;
    lh_dtype dtype; /* for G_STORAGE */
} allowed[] = {
    {"collections", "OrderedDict", G_ORDERED_DICT, LH_F32},
    {"torch._utils", "_rebuild_tensor_v2", G_REBUILD_TENSOR, LH_F32},
    {"torch._utils", "_rebuild_parameter", G_REBUILD_PARAM, LH_F32},
    {"torch._utils", "_rebuild_parameter_with_state", G_REBUILD_PARAM_STATE, LH_F32},
    {"torch._tensor", "_rebuild_from_type_v2", G_REBUILD_FROM_TYPE, LH_F32},
    {"torch._utils", "_rebuild_from_type_v2", G_REBUILD_FROM_TYPE, LH_F32},
    {"torch", "Tensor", G_TYPE_TENSOR, LH_F32},
    {"torch._tensor", "Tensor", G_TYPE_TENSOR, LH_F32},
    {"torch.nn.parameter", "Parameter", G_TYPE_PARAM, LH_F32},
    {"torch", "FloatStorage", G_STORAGE, LH_F32},
    {"torch", "HalfStorage", G_STORAGE, LH_F16},
    {"torch", "BFloat16Storage", G_STORAGE, LH_BF16},
    {"torch", "DoubleStorage", G_STORAGE, LH_F64},
    {"torch", "LongStorage", G_STORAGE, LH_I64},
    {"torch", "IntStorage", G_STORAGE, LH_I32},
    {"torch", "ShortStorage", G_STORAGE, LH_I16},
    {"torch", "CharStorage", G_STORAGE, LH_I8},
    {"torch", "ByteStorage", G_STORAGE, LH_U8},
    {"torch", "BoolStorage", G_STORAGE, LH_BOOL},
};

typedef struct ptensor {
    size_t storage;        /* index into the machine's storages */
    uint64_t offset;       /* in elements */
    int ndim;
    int64_t shape[LH_ST_MAX_DIMS];
    uint64_t numel;
} ptensor;

typedef struct pval pval;
struct pval {
    vkind kind;
    int64_t i;          /* V_INT, V_BOOL; V_GLOBAL: index into allowed[]; V_STORAGE: index */
    const char *s;      /* V_STR: UTF-8 bytes inside the pickle, [len], not NUL-terminated */
    size_t len;
    pval **items;       /* V_TUPLE, V_LIST: [n]; V_DICT: [2n] keys and values interleaved */
    size_t n, cap;
    ptensor *t;         /* V_TENSOR (its own allocation, keeping other nodes small) */
};

typedef struct pstorage {
    const char *key;    /* in the pickle, [key_len] */
    size_t key_len;
    lh_dtype dtype;
    uint64_t numel;
    const zentry *e;
} pstorage;

#define MAX_STACK (1u << 20)
/* Objects one pickle may build: a state dict needs about 15 per tensor, so
 * this allows a quarter million tensors while bounding what a hostile
 * pickle can allocate (about 64 bytes a node, 256 MiB in all). */
#define MAX_NODES (1u << 22)

typedef struct um {
    const char *o;
    const zarchive *z;
    const uint8_t *start, *p, *end;
    pval **stack; size_t sp, scap;
    size_t *marks; size_t nm, mcap;
    pval **memo; size_t memocap, nmemo; /* nmemo: slots filled (MEMOIZE's next index) */
    pval **all; size_t nall, allcap;   /* every node, freed at the end */
    int too_many;                      /* node() refused: MAX_NODES reached */
    pstorage *st; size_t nst, stcap;
    lh_error *err;
} um;

static lh_status nomem(um *m)
{
    if (m->too_many)
        return lh_error_set(m->err, LH_ERR_UNSUPPORTED, "%s: data.pkl builds more than %u "
                            "objects, far more than a state dict needs; refused", m->o,
                            MAX_NODES);
    return lh_error_set(m->err, LH_ERR_NOMEM, "%s: out of memory reading data.pkl", m->o);
}

/* Grow *arr (of elem bytes each, capacity *cap) to hold need elements. */
static int grow(void *arr, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return 0;
    size_t c = *cap ? *cap : 8;
    while (c < need)
        c *= 2;
    void *n = realloc(*(void **)arr, c * elem);
    if (!n)
        return -1;
    *(void **)arr = n;
    *cap = c;
    return 0;
}

static pval *node(um *m, vkind k)
{
    if (m->nall >= MAX_NODES) {
        m->too_many = 1;
        return NULL;
    }
    if (grow(&m->all, &m->allcap, m->nall + 1, sizeof *m->all))
        return NULL;
    pval *v = calloc(1, sizeof *v);
    if (v) {
        v->kind = k;
        m->all[m->nall++] = v;
    }
    return v;
}

static void um_release(um *m)
{
    for (size_t i = 0; i < m->nall; i++) {
        free(m->all[i]->items);
        free(m->all[i]->t);
        free(m->all[i]);
    }
    free(m->all);
    free(m->stack);
    free(m->marks);
    free(m->memo);
    free(m->st);
}

static lh_status fail(um *m, const char *what)
{
    return lh_error_set(m->err, LH_ERR_FORMAT, "%s: data.pkl, offset %td: %s", m->o,
                        m->p - m->start, what);
}

static lh_status push(um *m, pval *v)
{
    if (!v)
        return nomem(m);
    if (m->sp >= MAX_STACK)
        return fail(m, "the pickle stack grows beyond its limit");
    if (grow(&m->stack, &m->scap, m->sp + 1, sizeof *m->stack))
        return nomem(m);
    m->stack[m->sp++] = v;
    return LH_OK;
}

static pval *pop(um *m)
{
    size_t floor = m->nm ? m->marks[m->nm - 1] : 0;
    return m->sp > floor ? m->stack[--m->sp] : NULL;
}

static pval *top(um *m)
{
    size_t floor = m->nm ? m->marks[m->nm - 1] : 0;
    return m->sp > floor ? m->stack[m->sp - 1] : NULL;
}

/* Read n bytes of argument. */
static const uint8_t *take(um *m, size_t n)
{
    if ((size_t)(m->end - m->p) < n)
        return NULL;
    const uint8_t *q = m->p;
    m->p += n;
    return q;
}

static pval *new_int(um *m, int64_t i, vkind k)
{
    pval *v = node(m, k);
    if (v)
        v->i = i;
    return v;
}

/* Items since the last MARK become a tuple (or the argument list of
 * SETITEMS/APPENDS); the mark is dropped. */
static lh_status pop_mark(um *m, size_t *from)
{
    if (!m->nm)
        return fail(m, "no MARK before a tuple or batch");
    *from = m->marks[--m->nm];
    return LH_OK;
}

static lh_status make_tuple(um *m, size_t from)
{
    pval *t = node(m, V_TUPLE);
    if (!t)
        return nomem(m);
    size_t n = m->sp - from;
    if (n && !(t->items = malloc(n * sizeof *t->items)))
        return nomem(m);
    if (n)
        memcpy(t->items, m->stack + from, n * sizeof *t->items);
    t->n = t->cap = n;
    m->sp = from;
    return push(m, t);
}

static lh_status add_items(um *m, pval *into, pval **items, size_t n)
{
    if (n == 0) /* an empty SETITEMS/APPENDS: into->items may still be NULL */
        return LH_OK;
    if (grow(&into->items, &into->cap, into->n * (into->kind == V_DICT ? 2 : 1) + n,
             sizeof *into->items))
        return nomem(m);
    memcpy(into->items + into->n * (into->kind == V_DICT ? 2 : 1), items, n * sizeof *items);
    into->n += into->kind == V_DICT ? n / 2 : n;
    return LH_OK;
}

/* GLOBAL module\nname\n: a tag from the allow-list, or a refusal naming it. */
static lh_status op_global(um *m, const char *mod, size_t ml, const char *nm, size_t nl)
{
    for (size_t i = 0; i < sizeof allowed / sizeof allowed[0]; i++)
        if (strlen(allowed[i].module) == ml && !memcmp(allowed[i].module, mod, ml) &&
            strlen(allowed[i].name) == nl && !memcmp(allowed[i].name, nm, nl))
            return push(m, new_int(m, (int64_t)i, V_GLOBAL));
    char mb[300], nb[300];
    return lh_error_set(m->err, LH_ERR_UNSUPPORTED, "%s: data.pkl refers to global '%s.%s', which "
                        "is not on the allow-list of a torch state dict; refused (lorahub executes "
                        "no code from a checkpoint)", m->o, quoted(mod, ml, mb, sizeof mb),
                        quoted(nm, nl, nb, sizeof nb));
}

static lh_status read_line(um *m, const char **s, size_t *n)
{
    const uint8_t *nl = memchr(m->p, '\n', (size_t)(m->end - m->p) < 256 ? (size_t)(m->end - m->p)
                                                                          : 256);
    if (!nl)
        return fail(m, "GLOBAL without a short newline-terminated name");
    *s = (const char *)m->p;
    *n = (size_t)(nl - m->p);
    m->p = nl + 1;
    return LH_OK;
}

static int is_str(const pval *v, const char *s)
{
    return v && v->kind == V_STR && v->len == strlen(s) && !memcmp(v->s, s, v->len);
}

static int gtag_of(const pval *v)
{
    return v && v->kind == V_GLOBAL ? (int)allowed[v->i].tag : -1;
}

/* BINPERSID ('storage', <storage class>, key, location, numel): the storage
 * in data/<key>, its size checked against the entry. */
static lh_status op_persid(um *m)
{
    pval *pid = pop(m);
    char kb[300];
    if (!pid || pid->kind != V_TUPLE || pid->n != 5 || !is_str(pid->items[0], "storage") ||
        gtag_of(pid->items[1]) != G_STORAGE || pid->items[2]->kind != V_STR ||
        pid->items[3]->kind != V_STR || pid->items[4]->kind != V_INT || pid->items[4]->i < 0)
        return fail(m, "a persistent id that is not ('storage', <storage class>, key, "
                       "location, numel)");
    const pval *key = pid->items[2];
    lh_dtype dt = allowed[pid->items[1]->i].dtype;
    uint64_t numel = (uint64_t)pid->items[4]->i;
    const char *k = quoted(key->s, key->len, kb, sizeof kb);
    for (size_t i = 0; i < m->nst; i++)
        if (m->st[i].key_len == key->len && !memcmp(m->st[i].key, key->s, key->len)) {
            if (m->st[i].dtype != dt || m->st[i].numel != numel)
                return lh_error_set(m->err, LH_ERR_FORMAT, "%s: storage '%s' is referenced "
                                    "twice with different types or sizes", m->o, k);
            return push(m, new_int(m, (int64_t)i, V_STORAGE));
        }
    char rest[300];
    if (key->len > 200 || memchr(key->s, '/', key->len) || memchr(key->s, '\0', key->len))
        return lh_error_set(m->err, LH_ERR_FORMAT, "%s: storage key '%s' is not a plain name",
                            m->o, k);
    int rl = snprintf(rest, sizeof rest, "data/%.*s", (int)key->len, key->s);
    const zentry *e = zip_find(m->z, rest, (size_t)rl);
    if (!e)
        return lh_error_set(m->err, LH_ERR_FORMAT, "%s: storage '%s' has no entry '%.*s/%s' in "
                            "the archive", m->o, k, (int)m->z->top_len, m->z->top, rest);
    uint64_t esize = lh_dtype_bits(dt) / 8;
    if (numel > UINT64_MAX / esize || numel * esize != e->size)
        return lh_error_set(m->err, LH_ERR_FORMAT, "%s: storage '%s' says %" PRIu64 " %s elements "
                            "but its entry holds %" PRIu64 " bytes", m->o, k, numel,
                            lh_dtype_name(dt), e->size);
    if (grow(&m->st, &m->stcap, m->nst + 1, sizeof *m->st))
        return nomem(m);
    m->st[m->nst] = (pstorage){key->s, key->len, dt, numel, e};
    return push(m, new_int(m, (int64_t)m->nst++, V_STORAGE));
}

/* Read a tuple of non-negative ints (a size or a stride). */
static int int_tuple(const pval *v, int64_t *out, int max)
{
    if (!v || v->kind != V_TUPLE || v->n > (size_t)max)
        return -1;
    for (size_t i = 0; i < v->n; i++) {
        if (v->items[i]->kind != V_INT || v->items[i]->i < 0)
            return -1;
        out[i] = v->items[i]->i;
    }
    return (int)v->n;
}

/* For messages: the tensor being built and its storage, as "tensor 'w'
 * (storage '0')". Its state dict key was pushed just before it, under at
 * most the wrapper globals (_rebuild_parameter, _rebuild_from_type_v2). */
static const char *tensor_name(const um *m, const pstorage *ps, char *buf, size_t cap)
{
    char kb[300], sb[300];
    quoted(ps->key, ps->key_len, sb, sizeof sb);
    for (size_t i = m->sp, steps = 0; i > 0 && steps < 4; i--, steps++) {
        const pval *v = m->stack[i - 1];
        if (v->kind == V_STR) {
            snprintf(buf, cap, "tensor '%s' (storage '%s')", quoted(v->s, v->len, kb, sizeof kb),
                     sb);
            return buf;
        }
        if (v->kind != V_GLOBAL)
            break;
    }
    snprintf(buf, cap, "a tensor of storage '%s'", sb);
    return buf;
}

/* _rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks
 * [, metadata]): a contiguous view of the storage, within its bounds. */
static lh_status rebuild_tensor(um *m, const pval *args)
{
    char who[700];
    if (args->n != 6 && args->n != 7)
        return fail(m, "_rebuild_tensor_v2 with the wrong number of arguments");
    const pval *sv = args->items[0], *off = args->items[1];
    int64_t stride[LH_ST_MAX_DIMS];
    pval *t = node(m, V_TENSOR);
    if (!t || !(t->t = calloc(1, sizeof *t->t)))
        return nomem(m);
    if (sv->kind != V_STORAGE || off->kind != V_INT || off->i < 0)
        return fail(m, "_rebuild_tensor_v2 without a storage and an offset");
    t->t->ndim = int_tuple(args->items[2], t->t->shape, LH_ST_MAX_DIMS);
    int ns = int_tuple(args->items[3], stride, LH_ST_MAX_DIMS);
    if (t->t->ndim < 0 || ns != t->t->ndim)
        return fail(m, "a tensor whose size and stride are not matching tuples of at most 8 "
                       "non-negative ints");
    const pstorage *ps = &m->st[sv->i];
    uint64_t numel = 1, expect = 1;
    for (int d = t->t->ndim - 1; d >= 0; d--) {
        uint64_t dim = (uint64_t)t->t->shape[d];
        if (dim && numel > UINT64_MAX / dim)
            return fail(m, "a tensor size that overflows");
        numel *= dim;
    }
    for (int d = t->t->ndim - 1; d >= 0 && numel; d--) {
        /* torch's is_contiguous: strides of size-1 dimensions do not matter */
        if (t->t->shape[d] != 1 && (uint64_t)stride[d] != expect)
            return lh_error_set(m->err, LH_ERR_UNSUPPORTED, "%s: %s is not contiguous "
                                "(dimension %d has stride %" PRId64 ", %" PRIu64 " expected); "
                                "save it after .contiguous()", m->o,
                                tensor_name(m, ps, who, sizeof who), d, stride[d], expect);
        expect *= (uint64_t)t->t->shape[d];
    }
    uint64_t o = (uint64_t)off->i;
    if (numel && (o > ps->numel || numel > ps->numel - o))
        return lh_error_set(m->err, LH_ERR_FORMAT, "%s: %s of %" PRIu64 " elements at offset %"
                            PRIu64 " runs past the end of its storage (%" PRIu64 " elements)",
                            m->o, tensor_name(m, ps, who, sizeof who), numel, o, ps->numel);
    t->t->storage = (size_t)sv->i;
    t->t->offset = numel ? o : 0;
    t->t->numel = numel;
    return push(m, t);
}

/* REDUCE (and NEWOBJ) on an allowed tag: build the value it stands for. */
static lh_status apply(um *m, const pval *fn, const pval *args, int depth)
{
    if (!args || args->kind != V_TUPLE)
        return fail(m, "a call whose arguments are not a tuple");
    switch (gtag_of(fn)) {
    case G_ORDERED_DICT:
        if (args->n != 0)
            return fail(m, "OrderedDict built from arguments");
        return push(m, node(m, V_DICT));
    case G_REBUILD_TENSOR:
        return rebuild_tensor(m, args);
    case G_REBUILD_PARAM:
    case G_REBUILD_PARAM_STATE:
        if (args->n < 3 || args->n > 4 || args->items[0]->kind != V_TENSOR)
            return fail(m, "_rebuild_parameter without a tensor");
        return push(m, args->items[0]);
    case G_REBUILD_FROM_TYPE: {
        /* (func, type, args, state): the tensor is func(*args); the type is
         * Tensor or Parameter, the state (a dict of attributes) is dropped */
        int ty = args->n == 4 ? gtag_of(args->items[1]) : -1;
        int f = args->n == 4 ? gtag_of(args->items[0]) : -1;
        if ((ty != G_TYPE_TENSOR && ty != G_TYPE_PARAM) || depth > 0 ||
            (f != G_REBUILD_TENSOR && f != G_REBUILD_PARAM))
            return fail(m, "_rebuild_from_type_v2 of something other than a tensor");
        return apply(m, args->items[0], args->items[2], depth + 1);
    }
    default:
        break;
    }
    char what[200];
    if (fn && fn->kind == V_GLOBAL)
        snprintf(what, sizeof what, "a call of '%s.%s', which only names a type",
                 allowed[fn->i].module, allowed[fn->i].name);
    else
        snprintf(what, sizeof what, "a call of %s", fn ? kind_names[fn->kind] : "nothing");
    return fail(m, what);
}

/* Names of every pickle opcode (Lib/pickletools.py), for refusals. */
static const char *opcode_name(int op)
{
    static const struct { int op; const char *name; } names[] = {
        {'(', "MARK"}, {'.', "STOP"}, {'0', "POP"}, {'1', "POP_MARK"}, {'2', "DUP"},
        {'F', "FLOAT"}, {'I', "INT"}, {'J', "BININT"}, {'K', "BININT1"}, {'L', "LONG"},
        {'M', "BININT2"}, {'N', "NONE"}, {'P', "PERSID"}, {'Q', "BINPERSID"}, {'R', "REDUCE"},
        {'S', "STRING"}, {'T', "BINSTRING"}, {'U', "SHORT_BINSTRING"}, {'V', "UNICODE"},
        {'X', "BINUNICODE"}, {'a', "APPEND"}, {'b', "BUILD"}, {'c', "GLOBAL"}, {'d', "DICT"},
        {'}', "EMPTY_DICT"}, {'e', "APPENDS"}, {'g', "GET"}, {'h', "BINGET"}, {'i', "INST"},
        {'j', "LONG_BINGET"}, {'l', "LIST"}, {']', "EMPTY_LIST"}, {'o', "OBJ"}, {'p', "PUT"},
        {'q', "BINPUT"}, {'r', "LONG_BINPUT"}, {'s', "SETITEM"}, {'t', "TUPLE"},
        {')', "EMPTY_TUPLE"}, {'u', "SETITEMS"}, {'G', "BINFLOAT"}, {0x80, "PROTO"},
        {0x81, "NEWOBJ"}, {0x82, "EXT1"}, {0x83, "EXT2"}, {0x84, "EXT4"}, {0x85, "TUPLE1"},
        {0x86, "TUPLE2"}, {0x87, "TUPLE3"}, {0x88, "NEWTRUE"}, {0x89, "NEWFALSE"},
        {0x8a, "LONG1"}, {0x8b, "LONG4"}, {'B', "BINBYTES"}, {'C', "SHORT_BINBYTES"},
        {0x8c, "SHORT_BINUNICODE"}, {0x8d, "BINUNICODE8"}, {0x8e, "BINBYTES8"},
        {0x8f, "EMPTY_SET"}, {0x90, "ADDITEMS"}, {0x91, "FROZENSET"}, {0x92, "NEWOBJ_EX"},
        {0x93, "STACK_GLOBAL"}, {0x94, "MEMOIZE"}, {0x95, "FRAME"}, {0x96, "BYTEARRAY8"},
        {0x97, "NEXT_BUFFER"}, {0x98, "READONLY_BUFFER"},
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (names[i].op == op)
            return names[i].name;
    return NULL;
}

static lh_status refuse_opcode(um *m, int op)
{
    const char *n = opcode_name(op);
    m->p--;
    if (n)
        return lh_error_set(m->err, LH_ERR_UNSUPPORTED, "%s: data.pkl: opcode %s (0x%02x) at "
                            "offset %td is not one torch.save writes; refused", m->o, n, op,
                            m->p - m->start);
    return lh_error_set(m->err, LH_ERR_FORMAT, "%s: data.pkl: unknown pickle opcode 0x%02x at "
                        "offset %td; refused", m->o, op, m->p - m->start);
}

static lh_status memo_put(um *m, uint64_t idx)
{
    pval *v = top(m);
    if (!v)
        return fail(m, "a memo PUT on an empty stack");
    /* a pickler numbers its memo 0, 1, 2, ... by distinct objects, so an
     * honest index is below the number of objects built so far */
    if (idx >= m->nall)
        return fail(m, "a memo index beyond any the pickle could have made");
    if (idx >= m->memocap) {
        size_t cap = m->memocap;
        if (grow(&m->memo, &cap, (size_t)idx + 1, sizeof *m->memo))
            return nomem(m);
        memset(m->memo + m->memocap, 0, (cap - m->memocap) * sizeof *m->memo);
        m->memocap = cap;
    }
    m->nmemo += !m->memo[idx];
    m->memo[idx] = v;
    return LH_OK;
}

static lh_status memo_get(um *m, uint64_t idx)
{
    if (idx >= m->memocap || !m->memo[idx])
        return fail(m, "a memo GET of an index never PUT");
    return push(m, m->memo[idx]);
}

/* Opcodes that push a constant or read the memo. 1 if op is not one. */
static int op_value(um *m, int op, lh_status *s)
{
    const uint8_t *a;
    switch (op) {
    case 'N': *s = push(m, node(m, V_NONE)); return 0;
    case 0x88: *s = push(m, new_int(m, 1, V_BOOL)); return 0;
    case 0x89: *s = push(m, new_int(m, 0, V_BOOL)); return 0;
    case 'K': *s = (a = take(m, 1)) ? push(m, new_int(m, a[0], V_INT)) : fail(m, "truncated"); return 0;
    case 'M': *s = (a = take(m, 2)) ? push(m, new_int(m, rd16(a), V_INT)) : fail(m, "truncated"); return 0;
    case 'J': *s = (a = take(m, 4)) ? push(m, new_int(m, (int32_t)rd32(a), V_INT)) : fail(m, "truncated"); return 0;
    case 0x8a: { /* LONG1: n-byte little-endian two's complement */
        const uint8_t *n = take(m, 1);
        if (!n || !(a = take(m, n[0]))) {
            *s = fail(m, "truncated LONG1");
        } else if (n[0] > 8) {
            *s = fail(m, "an integer wider than 64 bits");
        } else {
            uint64_t v = 0;
            for (int i = n[0] - 1; i >= 0; i--)
                v = v << 8 | a[i];
            if (n[0] && n[0] < 8 && (a[n[0] - 1] & 0x80))
                v |= ~(uint64_t)0 << (8 * n[0]);
            *s = push(m, new_int(m, (int64_t)v, V_INT));
        }
        return 0;
    }
    case 'G': { /* BINFLOAT, big-endian: kept as a value nobody reads */
        *s = take(m, 8) ? push(m, node(m, V_FLOAT)) : fail(m, "truncated BINFLOAT");
        return 0;
    }
    case 'X': case 0x8c: { /* BINUNICODE, SHORT_BINUNICODE */
        const uint8_t *l = take(m, op == 'X' ? 4 : 1);
        size_t n = l ? (op == 'X' ? rd32(l) : l[0]) : 0;
        pval *v = NULL;
        if (!l || !(a = take(m, n)))
            *s = fail(m, "a string running past the end of the pickle");
        else if (!(v = node(m, V_STR)))
            *s = nomem(m);
        else {
            v->s = (const char *)a;
            v->len = n;
            *s = push(m, v);
        }
        return 0;
    }
    case 'q': *s = (a = take(m, 1)) ? memo_put(m, a[0]) : fail(m, "truncated"); return 0;
    case 'r': *s = (a = take(m, 4)) ? memo_put(m, rd32(a)) : fail(m, "truncated"); return 0;
    case 0x94: *s = memo_put(m, m->nmemo); return 0; /* MEMOIZE: the next index */
    case 'h': *s = (a = take(m, 1)) ? memo_get(m, a[0]) : fail(m, "truncated"); return 0;
    case 'j': *s = (a = take(m, 4)) ? memo_get(m, rd32(a)) : fail(m, "truncated"); return 0;
    default: return 1;
    }
}

static lh_status op_tuple(um *m, int op)
{
    size_t from = 0, floor = m->nm ? m->marks[m->nm - 1] : 0;
    if (op == 't') {
        lh_status s = pop_mark(m, &from);
        return s ? s : make_tuple(m, from);
    }
    size_t k = op == ')' ? 0 : (size_t)(op - 0x84);
    if (m->sp - floor < k)
        return fail(m, "a TUPLE opcode with too few items on the stack");
    return make_tuple(m, m->sp - k);
}

/* SETITEM(S), APPEND(S): add to the dict or list below the items. */
static lh_status op_add(um *m, int op)
{
    size_t from = 0;
    lh_status s;
    if (op == 'u' || op == 'e') {
        if ((s = pop_mark(m, &from)))
            return s;
    } else {
        size_t floor = m->nm ? m->marks[m->nm - 1] : 0;
        if (m->sp - floor < (op == 's' ? 2u : 1u))
            return fail(m, "SETITEM or APPEND with too few items on the stack");
        from = m->sp - (op == 's' ? 2 : 1);
    }
    size_t n = m->sp - from;
    m->sp = from;
    pval *into = top(m);
    int dict = op == 's' || op == 'u';
    if (!into || into->kind != (dict ? V_DICT : V_LIST))
        return fail(m, dict ? "SETITEM(S) on something that is not a dict"
                            : "APPEND(S) on something that is not a list");
    if (dict && n % 2)
        return fail(m, "SETITEMS with an odd number of items");
    return add_items(m, into, m->stack + from, n);
}

/* Calls and objects: GLOBAL, STACK_GLOBAL, REDUCE, NEWOBJ, BUILD, BINPERSID. */
static int op_call(um *m, int op, lh_status *s)
{
    switch (op) {
    case 'c': {
        const char *mod = NULL, *nm = NULL;
        size_t ml = 0, nl = 0;
        if (!(*s = read_line(m, &mod, &ml)) && !(*s = read_line(m, &nm, &nl)))
            *s = op_global(m, mod, ml, nm, nl);
        return 0;
    }
    case 0x93: {
        pval *nm = pop(m), *mod = pop(m);
        *s = !nm || !mod || nm->kind != V_STR || mod->kind != V_STR
                 ? fail(m, "STACK_GLOBAL without two strings")
                 : op_global(m, mod->s, mod->len, nm->s, nm->len);
        return 0;
    }
    case 'R':
    case 0x81: {
        pval *args = pop(m), *fn = pop(m);
        if (op == 0x81 && gtag_of(fn) != G_ORDERED_DICT)
            *s = fail(m, "NEWOBJ of something other than OrderedDict");
        else
            *s = apply(m, fn, args, 0);
        return 0;
    }
    case 'b': {
        /* the state of an OrderedDict (its _metadata) or of a tensor
         * subclass: attributes lorahub does not need, dropped */
        pval *state = pop(m), *obj = top(m);
        *s = !state || !obj || (obj->kind != V_DICT && obj->kind != V_TENSOR)
                 ? fail(m, "BUILD on something that is not a dict or a tensor")
                 : LH_OK;
        return 0;
    }
    case 'Q':
        *s = op_persid(m);
        return 0;
    default:
        return 1;
    }
}

/* Run data.pkl to its STOP; *root is the value it returns. */
static lh_status unpickle(um *m, pval **root)
{
    lh_status s = LH_OK;
    while (!s) {
        if (m->p >= m->end)
            return fail(m, "the pickle ends without STOP (truncated)");
        int op = *m->p++;
        switch (op) {
        case 0x80: {
            const uint8_t *v = take(m, 1);
            s = !v ? fail(m, "truncated PROTO") : v[0] > 5 ? fail(m, "an unknown pickle protocol")
                                                          : LH_OK;
            break;
        }
        case 0x95: /* FRAME (protocol 4): a length hint, the bytes follow inline */
            s = take(m, 8) ? LH_OK : fail(m, "truncated FRAME");
            break;
        case '(':
            if (grow(&m->marks, &m->mcap, m->nm + 1, sizeof *m->marks))
                return nomem(m);
            if (m->nm >= MAX_STACK)
                return fail(m, "too many nested MARKs");
            m->marks[m->nm++] = m->sp;
            break;
        case ')': case 't': case 0x85: case 0x86: case 0x87:
            s = op_tuple(m, op);
            break;
        case '}': s = push(m, node(m, V_DICT)); break;
        case ']': s = push(m, node(m, V_LIST)); break;
        case 's': case 'u': case 'a': case 'e':
            s = op_add(m, op);
            break;
        case '.':
            if (!(*root = pop(m)))
                return fail(m, "STOP with an empty stack");
            return LH_OK;
        default:
            if (op_value(m, op, &s) && op_call(m, op, &s))
                return refuse_opcode(m, op);
            break;
        }
    }
    return s;
}

/* ------------------------------------------------------------- tensors */

static int cmp_tensor_names(const void *a, const void *b)
{
    return strcmp((*(const lh_st_tensor *const *)a)->name, (*(const lh_st_tensor *const *)b)->name);
}

/* The root dict's (name, tensor) pairs as lh_st_tensors pointing into base. */
static lh_status fill_tensors(um *m, const pval *root, lh_safetensors *st)
{
    char nb[300];
    if (root->kind != V_DICT)
        return lh_error_set(m->err, LH_ERR_FORMAT, "%s: data.pkl holds %s, not a state dict of "
                            "tensors", m->o, kind_names[root->kind]);
    st->tensors = calloc(root->n ? root->n : 1, sizeof *st->tensors);
    if (!st->tensors)
        return nomem(m);
    for (size_t i = 0; i < root->n; i++) {
        const pval *k = root->items[2 * i], *v = root->items[2 * i + 1];
        if (k->kind != V_STR || memchr(k->s, '\0', k->len))
            return lh_error_set(m->err, LH_ERR_FORMAT, "%s: the state dict has a key that is %s, "
                                "not a tensor name", m->o, k->kind == V_STR ? "a string with a NUL"
                                                                            : kind_names[k->kind]);
        if (v->kind != V_TENSOR)
            return lh_error_set(m->err, LH_ERR_UNSUPPORTED, "%s: state dict entry '%s' holds %s, "
                                "not a tensor", m->o, quoted(k->s, k->len, nb, sizeof nb),
                                kind_names[v->kind]);
        lh_st_tensor *t = &st->tensors[st->n_tensors];
        if (!(t->name = strndup(k->s, k->len)))
            return nomem(m);
        st->n_tensors++;
        const pstorage *ps = &m->st[v->t->storage];
        uint64_t esize = lh_dtype_bits(ps->dtype) / 8;
        t->dtype = ps->dtype;
        t->ndim = v->t->ndim;
        memcpy(t->shape, v->t->shape, sizeof t->shape);
        t->numel = v->t->numel;
        t->begin = ps->e->off + v->t->offset * esize; /* within the entry: checked */
        t->end = t->begin + v->t->numel * esize;
        t->data = st->base + t->begin;
    }
    lh_st_tensor **order = malloc((st->n_tensors ? st->n_tensors : 1) * sizeof *order);
    if (!order)
        return nomem(m);
    for (size_t i = 0; i < st->n_tensors; i++)
        order[i] = &st->tensors[i];
    qsort(order, st->n_tensors, sizeof *order, cmp_tensor_names);
    lh_status s = LH_OK;
    for (size_t i = 1; i < st->n_tensors && !s; i++)
        if (!strcmp(order[i]->name, order[i - 1]->name))
            s = lh_error_set(m->err, LH_ERR_FORMAT, "%s: state dict key '%s' appears twice", m->o,
                             quoted(order[i]->name, strlen(order[i]->name), nb, sizeof nb));
    free(order);
    return s;
}

/* The entries beside data.pkl that say how to read it. */
static lh_status check_records(const zarchive *z, const zentry **pkl, lh_error *err)
{
    const zentry *bo = zip_find(z, "byteorder", 9);
    if (bo && !(bo->size == 6 && !memcmp(z->base + bo->off, "little", 6)))
        return lh_error_set(err, LH_ERR_UNSUPPORTED, "%s: the storages are not little-endian "
                            "(byteorder '%.*s')", z->o, (int)(bo->size < 16 ? bo->size : 16),
                            (const char *)z->base + bo->off);
    *pkl = zip_find(z, "data.pkl", 8);
    if (!*pkl)
        return lh_error_set(err, LH_ERR_FORMAT, "%s: a zip archive without '%.*s/data.pkl': not a "
                            "torch.save file", z->o, (int)z->top_len, z->top);
    if (crc32_of(z->base + (*pkl)->off, (size_t)(*pkl)->size) != (*pkl)->crc)
        return lh_error_set(err, LH_ERR_FORMAT, "%s: '%.*s/data.pkl' fails its CRC-32 check "
                            "(corrupt file)", z->o, (int)z->top_len, z->top);
    return LH_OK;
}

lh_tensor_file_kind lh_tensor_file_sniff(const void *head, size_t n)
{
    const uint8_t *h = head;
    if (n >= 4 && !memcmp(h, "PK\3\4", 4))
        return LH_TENSORS_TORCH_ZIP;
    /* PROTO 2, LONG1 of 10 bytes: torch's legacy MAGIC_NUMBER 0x1950a86a20f9469cfc6c */
    static const uint8_t legacy[] = {0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46,
                                     0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19};
    if (n >= 4 && h[0] == 0x80 && h[1] <= 5 && h[2] == 0x8a && h[3] == 0x0a &&
        (n < sizeof legacy || !memcmp(h + 4, legacy + 4, sizeof legacy - 4)))
        return LH_TENSORS_TORCH_LEGACY;
    return LH_TENSORS_SAFETENSORS;
}

static lh_status refuse_legacy(const char *o, lh_error *err)
{
    return lh_error_set(err, LH_ERR_UNSUPPORTED, "%s: a torch file in the legacy format of torch "
                        "before 1.6, which lorahub does not read; re-save it with a current torch "
                        "(torch.save(torch.load(f), f) writes the zip format)", o);
}

lh_status lh_torch_parse(const void *buf, size_t size, const char *origin, lh_safetensors **out,
                         lh_error *err)
{
    const char *o = origin ? origin : "torch checkpoint";
    *out = NULL;
    lh_tensor_file_kind kind = lh_tensor_file_sniff(buf, size);
    if (kind == LH_TENSORS_TORCH_LEGACY)
        return refuse_legacy(o, err);
    if (kind != LH_TENSORS_TORCH_ZIP)
        return lh_error_set(err, LH_ERR_FORMAT, "%s: not a torch zip file (no 'PK\\3\\4' at the "
                            "start)", o);
    zarchive z = {.o = o, .base = buf, .size = size};
    const zentry *pkl = NULL;
    um m = {.o = o, .z = &z, .err = err};
    pval *root = NULL;
    lh_safetensors *st = calloc(1, sizeof *st);
    lh_status s = st ? LH_OK : lh_error_set(err, LH_ERR_NOMEM, "%s: out of memory", o);
    if (!s) {
        st->fd = -1;
        st->base = buf;
        st->size = size;
        if (!(st->path = strdup(o)))
            s = lh_error_set(err, LH_ERR_NOMEM, "%s: out of memory", o);
    }
    if (!s && !(s = zip_read(&z, err)) && !(s = check_records(&z, &pkl, err))) {
        m.start = m.p = z.base + pkl->off;
        m.end = m.start + pkl->size;
        if (!(s = unpickle(&m, &root)))
            s = fill_tensors(&m, root, st);
    }
    um_release(&m);
    free(z.e);
    if (s) {
        if (st)
            st->base = NULL; /* not ours: lh_st_free must not unmap it */
        lh_st_free(st);
        return lh_error_one_line(s, err);
    }
    *out = st;
    return LH_OK;
}

lh_status lh_torch_open(const char *path, lh_safetensors **out, lh_error *err)
{
    return lh_st_open_as(path, lh_torch_parse, out, err);
}

/* Sniff the mapping, then parse it as what it is. */
static lh_status parse_any(const void *buf, size_t size, const char *origin, lh_safetensors **out,
                           lh_error *err)
{
    switch (lh_tensor_file_sniff(buf, size)) {
    case LH_TENSORS_TORCH_ZIP:
        return lh_torch_parse(buf, size, origin, out, err);
    case LH_TENSORS_TORCH_LEGACY:
        *out = NULL;
        return refuse_legacy(origin, err);
    default:
        break;
    }
    /* neither magic: the name only chooses which format's complaint to give */
    size_t n = origin ? strlen(origin) : 0;
    static const char *const torch_names[] = {".bin", ".pt", ".pth"};
    for (size_t i = 0; i < sizeof torch_names / sizeof torch_names[0]; i++) {
        size_t k = strlen(torch_names[i]);
        if (n >= k && !strcmp(origin + n - k, torch_names[i]))
            return lh_torch_parse(buf, size, origin, out, err);
    }
    return lh_st_parse(buf, size, origin, out, err);
}

lh_status lh_tensors_open(const char *path, lh_safetensors **out, lh_error *err)
{
    return lh_st_open_as(path, parse_any, out, err);
}

/* lib/safetensors.c - safetensors reader (mmap, every reference check) and
 * byte-compatible writer.
 *
 * The reader follows huggingface/safetensors tensor.rs (read_metadata and
 * Metadata::validate): the checks run in the same order, so a file fails for
 * the same reason as in the reference, and each message names the file, the
 * tensor and the numbers involved. Differences, all refusals of files the
 * reference would take: a duplicate JSON key (the reference's behaviour is
 * unspecified), more than LH_ST_MAX_DIMS dimensions, and a dimension above
 * INT64_MAX (only possible next to a zero dimension). */
#include "safetensors.h"

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
#include "json.h"
#include "strbuf.h"

/* Short printable form of a tensor name for messages. */
static const char *shown(const char *name, char *buf, size_t cap)
{
    return lh_str_printable(name, strlen(name), 80, buf, cap);
}

/* Offset of the first invalid UTF-8 byte in s[0..n), or n. */
static size_t utf8_invalid_at(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned char c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t len;
        uint32_t v, min;
        if (c >= 0xc2 && c <= 0xdf)
            len = 2, v = c & 0x1f, min = 0x80;
        else if (c >= 0xe0 && c <= 0xef)
            len = 3, v = c & 0x0f, min = 0x800;
        else if (c >= 0xf0 && c <= 0xf4)
            len = 4, v = c & 0x07, min = 0x10000;
        else
            return i;
        if (n - i < len)
            return i;
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xc0) != 0x80)
                return i;
            v = v << 6 | (s[i + k] & 0x3f);
        }
        if (v < min || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff))
            return i;
        i += len;
    }
    return n;
}

static void format_shape(char *buf, size_t cap, const int64_t *shape, int ndim)
{
    size_t o = (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < ndim && o < cap; i++)
        o += (size_t)snprintf(buf + o, cap - o, "%s%" PRId64, i ? "," : "", shape[i]);
    if (o < cap)
        snprintf(buf + o, cap - o, "]");
}

void lh_st_free(lh_safetensors *st)
{
    if (!st)
        return;
    for (size_t i = 0; i < st->n_tensors; i++)
        free(st->tensors[i].name);
    free(st->tensors);
    for (size_t i = 0; i < st->n_meta; i++) {
        free(st->meta_keys[i]);
        free(st->meta_values[i]);
    }
    free(st->meta_keys);
    free(st->meta_values);
    if (st->mapped && st->base)
        munmap((void *)st->base, st->size);
    if (st->fd >= 0)
        close(st->fd);
    free(st->path);
    free(st);
}

/* An unsigned integer written as digits only, as serde's usize wants it
 * ("16.0", "1e3" and "-0" are numbers but not offsets or dimensions). */
static int get_uint(const lh_json *j, unsigned long long *out)
{
    if (!j || j->type != LH_JSON_NUMBER || !j->string || !j->len)
        return 0;
    for (size_t i = 0; i < j->len; i++)
        if (j->string[i] < '0' || j->string[i] > '9')
            return 0;
    return lh_json_as_uint64(j, out);
}

/* One tensor entry of the header: dtype, shape, data_offsets. */
static lh_status parse_entry(const char *o, const char *name, const lh_json *v, lh_st_tensor *t,
                             lh_error *err)
{
    char nb[300];
    if (!v || v->type != LH_JSON_OBJECT)
        return lh_error_set(err, LH_ERR_FORMAT, "%s: tensor '%s' is not a JSON object", o,
                            shown(name, nb, sizeof nb));
    const char *dtype;
    if (!lh_json_as_string(lh_json_get(v, "dtype"), &dtype))
        return lh_error_set(err, LH_ERR_FORMAT, "%s: tensor '%s' has no string \"dtype\"", o,
                            shown(name, nb, sizeof nb));
    if (lh_dtype_from_name(dtype, &t->dtype) != 0) {
        char db[100];
        return lh_error_set(err, LH_ERR_FORMAT, "%s: tensor '%s' has unknown dtype '%s'", o,
                            shown(name, nb, sizeof nb), shown(dtype, db, sizeof db));
    }
    const lh_json *shape = lh_json_get(v, "shape");
    if (!shape || shape->type != LH_JSON_ARRAY)
        return lh_error_set(err, LH_ERR_FORMAT, "%s: tensor '%s' has no \"shape\" array", o,
                            shown(name, nb, sizeof nb));
    const lh_json *offs = lh_json_get(v, "data_offsets");
    unsigned long long b, e;
    if (!offs || offs->type != LH_JSON_ARRAY || offs->len != 2 ||
        !get_uint(offs->items[0], &b) || !get_uint(offs->items[1], &e))
        return lh_error_set(err, LH_ERR_FORMAT,
                            "%s: tensor '%s' \"data_offsets\" is not a pair of non-negative integers",
                            o, shown(name, nb, sizeof nb));
    t->begin = b;
    t->end = e;
    if (shape->len > LH_ST_MAX_DIMS)
        return lh_error_set(err, LH_ERR_UNSUPPORTED,
                            "%s: tensor '%s' has %zu dimensions (at most %d supported)", o,
                            shown(name, nb, sizeof nb), shape->len, LH_ST_MAX_DIMS);
    t->ndim = (int)shape->len;
    for (size_t i = 0; i < shape->len; i++) {
        unsigned long long d;
        if (!get_uint(shape->items[i], &d))
            return lh_error_set(err, LH_ERR_FORMAT,
                                "%s: tensor '%s' shape has an entry that is not a non-negative integer",
                                o, shown(name, nb, sizeof nb));
        if (d > INT64_MAX)
            return lh_error_set(err, LH_ERR_FORMAT,
                                "%s: tensor '%s' dimension %zu (%llu) overflows", o,
                                shown(name, nb, sizeof nb), i, d);
        t->shape[i] = (int64_t)d;
    }
    return LH_OK;
}

static int cmp_offsets(const void *a, const void *b)
{
    const lh_st_tensor *x = *(const lh_st_tensor *const *)a, *y = *(const lh_st_tensor *const *)b;
    if (x->begin != y->begin)
        return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end)
        return x->end < y->end ? -1 : 1;
    return x < y ? -1 : x > y; /* stable, like the reference's sort_by */
}

/* Metadata::validate: offsets tile [0, end) after sorting; sizes match. */
static lh_status validate(const char *o, lh_safetensors *st, uint64_t *data_end, lh_error *err)
{
    lh_status rc = LH_OK;
    lh_st_tensor **order = malloc((st->n_tensors ? st->n_tensors : 1) * sizeof *order);
    if (!order)
        return lh_error_set(err, LH_ERR_NOMEM, "%s: out of memory", o);
    for (size_t i = 0; i < st->n_tensors; i++)
        order[i] = &st->tensors[i];
    qsort(order, st->n_tensors, sizeof *order, cmp_offsets);
    uint64_t start = 0;
    char nb[300], pb[300], sb[200];
    for (size_t i = 0; i < st->n_tensors; i++) {
        lh_st_tensor *t = order[i];
        const lh_st_tensor *prev = i ? order[i - 1] : NULL;
        if (t->begin != start || t->end < t->begin) {
            if (t->end < t->begin)
                rc = lh_error_set(err, LH_ERR_FORMAT,
                                  "%s: tensor '%s' data_offsets [%" PRIu64 ",%" PRIu64
                                  "] end before they begin", o, shown(t->name, nb, sizeof nb),
                                  t->begin, t->end);
            else if (prev && t->begin == prev->begin && t->end == prev->end)
                rc = lh_error_set(err, LH_ERR_FORMAT,
                                  "%s: tensor '%s' data_offsets [%" PRIu64 ",%" PRIu64
                                  "] duplicate those of tensor '%s'", o,
                                  shown(t->name, nb, sizeof nb), t->begin, t->end,
                                  shown(prev->name, pb, sizeof pb));
            else if (t->begin < start)
                rc = lh_error_set(err, LH_ERR_FORMAT,
                                  "%s: tensor '%s' data_offsets [%" PRIu64 ",%" PRIu64
                                  "] overlap the previous tensor '%s' (which ends at %" PRIu64 ")",
                                  o, shown(t->name, nb, sizeof nb), t->begin, t->end,
                                  shown(prev->name, pb, sizeof pb), start);
            else
                rc = lh_error_set(err, LH_ERR_FORMAT,
                                  "%s: tensor '%s' data_offsets [%" PRIu64 ",%" PRIu64
                                  "] leave a gap after offset %" PRIu64, o,
                                  shown(t->name, nb, sizeof nb), t->begin, t->end, start);
            goto out;
        }
        start = t->end;
        uint64_t numel = 1;
        for (int d = 0; d < t->ndim; d++) {
            uint64_t dim = (uint64_t)t->shape[d];
            if (dim && numel > UINT64_MAX / dim) {
                format_shape(sb, sizeof sb, t->shape, t->ndim);
                rc = lh_error_set(err, LH_ERR_FORMAT, "%s: tensor '%s' shape %s overflows", o,
                                  shown(t->name, nb, sizeof nb), sb);
                goto out;
            }
            numel *= dim;
        }
        unsigned bits = lh_dtype_bits(t->dtype);
        if (numel > UINT64_MAX / bits) {
            format_shape(sb, sizeof sb, t->shape, t->ndim);
            rc = lh_error_set(err, LH_ERR_FORMAT, "%s: tensor '%s' shape %s overflows in bits", o,
                              shown(t->name, nb, sizeof nb), sb);
            goto out;
        }
        uint64_t nbits = numel * bits;
        if (nbits % 8) {
            rc = lh_error_set(err, LH_ERR_FORMAT,
                              "%s: tensor '%s' has %" PRIu64 " %s elements, not a whole number of bytes",
                              o, shown(t->name, nb, sizeof nb), numel, lh_dtype_name(t->dtype));
            goto out;
        }
        t->numel = numel;
        if (t->end - t->begin != nbits / 8) {
            format_shape(sb, sizeof sb, t->shape, t->ndim);
            rc = lh_error_set(err, LH_ERR_FORMAT,
                              "%s: tensor '%s' data_offsets [%" PRIu64 ",%" PRIu64 "] hold %" PRIu64
                              " bytes but %s %s needs %" PRIu64, o, shown(t->name, nb, sizeof nb),
                              t->begin, t->end, t->end - t->begin, lh_dtype_name(t->dtype), sb,
                              nbits / 8);
            goto out;
        }
    }
    *data_end = start;
out:
    free(order);
    return rc;
}

/* The 8-byte little-endian header length n: within the limit and the file,
 * and the header bytes after it valid UTF-8. */
static lh_status read_header_length(const uint8_t *base, size_t size, const char *o, uint64_t *n_out,
                                    lh_error *err)
{
    if (size < 8)
        return lh_error_set(err, LH_ERR_FORMAT,
                            "%s: %zu bytes is too small for a safetensors header (8 needed)", o, size);
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--)
        n = n << 8 | base[i];
    if (n > LH_ST_MAX_HEADER)
        return lh_error_set(err, LH_ERR_FORMAT,
                            "%s: header length %" PRIu64 " exceeds the limit of %llu bytes", o, n,
                            (unsigned long long)LH_ST_MAX_HEADER);
    if (n > size - 8)
        return lh_error_set(err, LH_ERR_FORMAT,
                            "%s: header length %" PRIu64 " runs past the end of the file (%zu bytes)",
                            o, n, size);
    const unsigned char *hdr = base + 8;
    size_t bad = utf8_invalid_at(hdr, (size_t)n);
    if (bad != n)
        return lh_error_set(err, LH_ERR_FORMAT,
                            "%s: header is not valid UTF-8 (byte 0x%02x at offset %zu)", o,
                            hdr[bad], bad + 8);
    *n_out = n;
    return LH_OK;
}

/* __metadata__: an object of strings (or null, or absent) copied into st. */
static lh_status read_metadata(const char *o, const lh_json *meta, lh_safetensors *st, lh_error *err)
{
    if (!meta || meta->type == LH_JSON_NULL)
        return LH_OK;
    if (meta->type != LH_JSON_OBJECT)
        return lh_error_set(err, LH_ERR_FORMAT, "%s: __metadata__ is not an object of strings", o);
    st->meta_keys = calloc(meta->len ? meta->len : 1, sizeof *st->meta_keys);
    st->meta_values = calloc(meta->len ? meta->len : 1, sizeof *st->meta_values);
    if (!st->meta_keys || !st->meta_values)
        return lh_error_set(err, LH_ERR_NOMEM, "%s: out of memory", o);
    for (size_t i = 0; i < meta->len; i++) {
        const char *v;
        if (!lh_json_as_string(meta->items[i], &v)) {
            char kb[300];
            return lh_error_set(err, LH_ERR_FORMAT, "%s: __metadata__ value of '%s' is not a string",
                                o, shown(meta->keys[i], kb, sizeof kb));
        }
        st->meta_keys[i] = strdup(meta->keys[i]);
        st->meta_values[i] = strdup(v);
        st->n_meta = i + 1;
        if (!st->meta_keys[i] || !st->meta_values[i])
            return lh_error_set(err, LH_ERR_NOMEM, "%s: out of memory", o);
    }
    return LH_OK;
}

/* The tensors must end exactly where the file does: no gap, no overrun. */
static lh_status check_data_length(const char *o, uint64_t data_end, uint64_t data_len,
                                   lh_error *err)
{
    if (data_end < data_len)
        return lh_error_set(err, LH_ERR_FORMAT,
                            "%s: %" PRIu64 " trailing bytes after the tensor data (data ends at %"
                            PRIu64 ", the file has %" PRIu64 " data bytes)", o,
                            data_len - data_end, data_end, data_len);
    if (data_end > data_len)
        return lh_error_set(err, LH_ERR_FORMAT,
                            "%s: file is truncated: the tensors need %" PRIu64
                            " data bytes, the file has %" PRIu64, o, data_end, data_len);
    return LH_OK;
}

lh_status lh_st_parse(const void *buf, size_t size, const char *origin, lh_safetensors **out,
                      lh_error *err)
{
    const char *o = origin ? origin : "safetensors";
    const uint8_t *base = buf;
    *out = NULL;
    uint64_t n = 0;
    lh_status rc = read_header_length(base, size, o, &n, err);
    if (rc)
        return rc;

    lh_sb org;
    lh_sb_init(&org);
    lh_sb_appendf(&org, "%s: header", o);
    lh_json *j = NULL;
    rc = lh_json_parse((const char *)base + 8, (size_t)n, org.buf ? org.buf : o, &j, err);
    lh_sb_release(&org);
    if (rc)
        return rc == LH_ERR_NOMEM ? rc : LH_ERR_FORMAT;

    lh_safetensors *st = calloc(1, sizeof *st);
    if (!st) {
        lh_json_free(j);
        return lh_error_set(err, LH_ERR_NOMEM, "%s: out of memory", o);
    }
    st->path = strdup(o);
    st->fd = -1;
    st->base = base;
    st->size = size;
    if (!st->path)
        goto nomem;
    if (j->type != LH_JSON_OBJECT) {
        rc = lh_error_set(err, LH_ERR_FORMAT, "%s: header is not a JSON object", o);
        goto fail;
    }
    const lh_json *meta = lh_json_get(j, "__metadata__");
    size_t n_tensors = j->len - (meta != NULL);
    st->tensors = calloc(n_tensors ? n_tensors : 1, sizeof *st->tensors);
    if (!st->tensors)
        goto nomem;
    rc = read_metadata(o, meta, st, err);
    if (rc)
        goto fail;
    for (size_t i = 0; i < j->len; i++) {
        if (j->items[i] == meta)
            continue;
        lh_st_tensor *t = &st->tensors[st->n_tensors];
        t->name = strdup(j->keys[i]);
        st->n_tensors++;
        if (!t->name)
            goto nomem;
        rc = parse_entry(o, j->keys[i], j->items[i], t, err);
        if (rc)
            goto fail;
    }
    lh_json_free(j);
    j = NULL;

    uint64_t data_end = 0;
    rc = validate(o, st, &data_end, err);
    if (!rc)
        rc = check_data_length(o, data_end, size - 8 - n, err);
    if (rc)
        goto fail;
    const uint8_t *data = base + 8 + n;
    for (size_t i = 0; i < st->n_tensors; i++)
        st->tensors[i].data = data + st->tensors[i].begin;
    *out = st;
    return LH_OK;
nomem:
    rc = lh_error_set(err, LH_ERR_NOMEM, "%s: out of memory", o);
fail:
    lh_json_free(j);
    st->base = NULL; /* not ours: lh_st_free must not unmap it */
    lh_st_free(st);
    return rc;
}

lh_status lh_st_open(const char *path, lh_safetensors **out, lh_error *err)
{
    return lh_st_open_as(path, lh_st_parse, out, err);
}

lh_status lh_st_open_as(const char *path, lh_st_parser parse, lh_safetensors **out, lh_error *err)
{
    *out = NULL;
    int fd;
    size_t size;
    void *map;
    lh_status ost = lh_map_regular(path, &fd, &map, &size, err); /* never blocks on a FIFO */
    if (ost != LH_OK)
        return ost;
    lh_status rc = parse(map, size, path, out, err);
    if (rc) {
        if (map)
            munmap(map, size);
        close(fd);
        return rc;
    }
    (*out)->mapped = map != NULL;
    (*out)->fd = fd;
    return LH_OK;
}

const lh_st_tensor *lh_st_find(const lh_safetensors *st, const char *name)
{
    if (!st || !name)
        return NULL;
    for (size_t i = 0; i < st->n_tensors; i++)
        if (!strcmp(st->tensors[i].name, name))
            return &st->tensors[i];
    return NULL;
}

const char *lh_st_meta(const lh_safetensors *st, const char *key)
{
    if (!st || !key)
        return NULL;
    for (size_t i = 0; i < st->n_meta; i++)
        if (!strcmp(st->meta_keys[i], key))
            return st->meta_values[i];
    return NULL;
}

/* pread exactly len bytes at off; a short read means the file shrank after
 * it was opened (touching the mapping would have raised SIGBUS instead). */
static lh_status read_at(const lh_safetensors *st, const lh_st_tensor *t, void *dst, size_t len,
                         off_t off, lh_error *err)
{
    char nb[300];
    char *p = dst;
    while (len) {
        ssize_t r = pread(st->fd, p, len, off);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return lh_error_errno(err, LH_ERR_IO, errno, "%s: cannot read tensor '%s'", st->path,
                                  shown(t->name, nb, sizeof nb));
        if (r == 0)
            return lh_error_set(err, LH_ERR_IO, "%s: file shrank while reading tensor '%s'",
                                st->path, shown(t->name, nb, sizeof nb));
        p += r;
        off += r;
        len -= (size_t)r;
    }
    return LH_OK;
}

lh_status lh_st_read_f32(const lh_safetensors *st, const lh_st_tensor *t, float *dst,
                         lh_error *err)
{
    char nb[300];
    const char *o = st && st->path ? st->path : "safetensors";
    if (!t)
        return lh_error_set(err, LH_ERR_ARG, "%s: no tensor given", o);
    if (!lh_dtype_is_float(t->dtype))
        return lh_error_set(err, LH_ERR_UNSUPPORTED,
                            "%s: tensor '%s' has dtype %s, not F16/BF16/F32/F64", o,
                            shown(t->name, nb, sizeof nb), lh_dtype_name(t->dtype));
    if (t->numel > SIZE_MAX / sizeof(float))
        return lh_error_set(err, LH_ERR_NOMEM, "%s: tensor '%s' is too large", o,
                            shown(t->name, nb, sizeof nb));
    size_t bytes = (size_t)(t->end - t->begin);
    if (st && st->fd >= 0 && bytes) {
        /* the tensor's place in the file: data points into the mapping */
        off_t off = (off_t)((const uint8_t *)t->data - st->base);
        if (t->dtype == LH_F32)
            return read_at(st, t, dst, bytes, off, err);
        size_t esize = lh_dtype_bits(t->dtype) / 8;
        size_t chunk = (256u << 10) / esize * esize; /* bounce buffer, stays in cache */
        if (chunk > bytes)
            chunk = bytes;
        void *buf = malloc(chunk);
        if (!buf)
            return lh_error_set(err, LH_ERR_NOMEM, "%s: out of memory", o);
        for (size_t done = 0; done < bytes; done += chunk) {
            size_t k = bytes - done < chunk ? bytes - done : chunk;
            lh_status rc = read_at(st, t, buf, k, off + (off_t)done, err);
            if (rc) {
                free(buf);
                return rc;
            }
            lh_convert_to_f32(t->dtype, buf, dst + done / esize, k / esize);
        }
        free(buf);
        return LH_OK;
    }
    lh_convert_to_f32(t->dtype, t->data, dst, (size_t)t->numel);
    return LH_OK;
}

const float *lh_st_f32_view(const lh_st_tensor *t)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    if (t && t->dtype == LH_F32 && ((uintptr_t)t->data & 3) == 0)
        return (const float *)t->data;
#else
    (void)t;
#endif
    return NULL;
}

/* ---------------------------------------------------------------- writer */

typedef struct plan {
    size_t *order;      /* [n] entries in data order */
    uint64_t *nbytes;   /* [n] by entry index */
    lh_sb header;       /* padded JSON */
    uint64_t data_size;
} plan;

static int cmp_entries(const void *a, const void *b, void *ctx)
{
    const lh_st_entry *e = ctx;
    const lh_st_entry *x = &e[*(const size_t *)a], *y = &e[*(const size_t *)b];
    if (x->dtype != y->dtype)
        return x->dtype > y->dtype ? -1 : 1; /* dtype descending */
    return strcmp(x->name, y->name);          /* bytewise: strcmp compares unsigned chars */
}

static int cmp_names(const void *a, const void *b, void *ctx)
{
    const lh_st_entry *e = ctx;
    return strcmp(e[*(const size_t *)a].name, e[*(const size_t *)b].name);
}

static void plan_release(plan *p)
{
    free(p->order);
    free(p->nbytes);
    lh_sb_release(&p->header);
}

static lh_status make_plan(const lh_st_entry *e, size_t n, const char *const *mk,
                           const char *const *mv, size_t n_meta, const char *o, plan *p,
                           lh_error *err)
{
    char nb[300];
    memset(p, 0, sizeof *p);
    lh_sb_init(&p->header);
    p->order = malloc((n ? n : 1) * sizeof *p->order);
    p->nbytes = malloc((n ? n : 1) * sizeof *p->nbytes);
    if (!p->order || !p->nbytes)
        goto nomem;
    for (size_t i = 0; i < n; i++) {
        const lh_st_entry *t = &e[i];
        if (!t->name)
            return lh_error_set(err, LH_ERR_ARG, "%s: tensor %zu has no name", o, i);
        if (utf8_invalid_at((const unsigned char *)t->name, strlen(t->name)) != strlen(t->name))
            return lh_error_set(err, LH_ERR_ARG, "%s: tensor name '%s' is not valid UTF-8", o,
                                shown(t->name, nb, sizeof nb));
        if (!strcmp(t->name, "__metadata__"))
            return lh_error_set(err, LH_ERR_ARG, "%s: '__metadata__' cannot name a tensor", o);
        if (!lh_dtype_name(t->dtype))
            return lh_error_set(err, LH_ERR_ARG, "%s: tensor '%s' has an invalid dtype %d", o,
                                shown(t->name, nb, sizeof nb), (int)t->dtype);
        if (t->ndim < 0 || t->ndim > LH_ST_MAX_DIMS)
            return lh_error_set(err, LH_ERR_ARG, "%s: tensor '%s' has %d dimensions", o,
                                shown(t->name, nb, sizeof nb), t->ndim);
        uint64_t numel = 1;
        for (int d = 0; d < t->ndim; d++) {
            if (t->shape[d] < 0)
                return lh_error_set(err, LH_ERR_ARG, "%s: tensor '%s' has a negative dimension",
                                    o, shown(t->name, nb, sizeof nb));
            uint64_t dim = (uint64_t)t->shape[d];
            if (dim && numel > UINT64_MAX / dim)
                return lh_error_set(err, LH_ERR_ARG, "%s: tensor '%s' shape overflows", o,
                                    shown(t->name, nb, sizeof nb));
            numel *= dim;
        }
        unsigned bits = lh_dtype_bits(t->dtype);
        if (numel > UINT64_MAX / bits || (numel * bits) % 8)
            return lh_error_set(err, LH_ERR_ARG,
                                "%s: tensor '%s' is not a whole number of bytes", o,
                                shown(t->name, nb, sizeof nb));
        p->nbytes[i] = numel * bits / 8;
        if (p->nbytes[i] && !t->data)
            return lh_error_set(err, LH_ERR_ARG, "%s: tensor '%s' has no data", o,
                                shown(t->name, nb, sizeof nb));
        p->order[i] = i;
    }
    qsort_r(p->order, n, sizeof *p->order, cmp_names, (void *)e);
    for (size_t i = 1; i < n; i++)
        if (!strcmp(e[p->order[i]].name, e[p->order[i - 1]].name))
            return lh_error_set(err, LH_ERR_ARG, "%s: duplicate tensor name '%s'", o,
                                shown(e[p->order[i]].name, nb, sizeof nb));
    qsort_r(p->order, n, sizeof *p->order, cmp_entries, (void *)e);

    for (size_t i = 0; i < n_meta; i++) {
        if (!mk || !mv || !mk[i] || !mv[i])
            return lh_error_set(err, LH_ERR_ARG, "%s: metadata entry %zu is missing", o, i);
        for (size_t k = 0; k < i; k++)
            if (!strcmp(mk[i], mk[k]))
                return lh_error_set(err, LH_ERR_ARG, "%s: duplicate metadata key '%s'", o,
                                    shown(mk[i], nb, sizeof nb));
        if (utf8_invalid_at((const unsigned char *)mk[i], strlen(mk[i])) != strlen(mk[i]) ||
            utf8_invalid_at((const unsigned char *)mv[i], strlen(mv[i])) != strlen(mv[i]))
            return lh_error_set(err, LH_ERR_ARG, "%s: metadata '%s' is not valid UTF-8", o,
                                shown(mk[i], nb, sizeof nb));
    }

    lh_sb *h = &p->header;
    lh_sb_append(h, "{");
    if (n_meta) {
        lh_sb_append(h, "\"__metadata__\":{");
        for (size_t i = 0; i < n_meta; i++) {
            if (i)
                lh_sb_append(h, ",");
            lh_sb_append_json_string(h, mk[i]);
            lh_sb_append(h, ":");
            lh_sb_append_json_string(h, mv[i]);
        }
        lh_sb_append(h, "}");
    }
    uint64_t off = 0;
    for (size_t k = 0; k < n; k++) {
        const lh_st_entry *t = &e[p->order[k]];
        if (k || n_meta)
            lh_sb_append(h, ",");
        lh_sb_append_json_string(h, t->name);
        lh_sb_appendf(h, ":{\"dtype\":\"%s\",\"shape\":[", lh_dtype_name(t->dtype));
        for (int d = 0; d < t->ndim; d++)
            lh_sb_appendf(h, "%s%" PRId64, d ? "," : "", t->shape[d]);
        uint64_t end = off + p->nbytes[p->order[k]];
        if (end < off)
            return lh_error_set(err, LH_ERR_ARG, "%s: total tensor data overflows", o);
        lh_sb_appendf(h, "],\"data_offsets\":[%" PRIu64 ",%" PRIu64 "]}", off, end);
        off = end;
    }
    lh_sb_append(h, "}");
    while (h->len % 8 && !h->failed)
        lh_sb_append(h, " ");
    if (lh_sb_failed(h))
        goto nomem;
    if (h->len > LH_ST_MAX_HEADER)
        return lh_error_set(err, LH_ERR_ARG,
                            "%s: header of %zu bytes exceeds the limit of %llu bytes", o, h->len,
                            (unsigned long long)LH_ST_MAX_HEADER);
    p->data_size = off;
    return LH_OK;
nomem:
    return lh_error_set(err, LH_ERR_NOMEM, "%s: out of memory", o);
}

static void put_le64(uint8_t *b, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        b[i] = (uint8_t)(v >> (8 * i));
}

lh_status lh_st_serialize(const lh_st_entry *entries, size_t n, const char *const *meta_keys,
                          const char *const *meta_values, size_t n_meta, uint8_t **out,
                          size_t *out_size, lh_error *err)
{
    plan p;
    *out = NULL;
    *out_size = 0;
    lh_status rc = make_plan(entries, n, meta_keys, meta_values, n_meta, "safetensors", &p, err);
    if (rc) {
        plan_release(&p);
        return rc;
    }
    uint64_t total = 8 + (uint64_t)p.header.len + p.data_size;
    uint8_t *buf = total > SIZE_MAX ? NULL : malloc((size_t)total);
    if (!buf) {
        plan_release(&p);
        return lh_error_set(err, LH_ERR_NOMEM, "safetensors: cannot allocate %" PRIu64 " bytes",
                            total);
    }
    put_le64(buf, p.header.len);
    memcpy(buf + 8, p.header.buf, p.header.len);
    uint8_t *w = buf + 8 + p.header.len;
    for (size_t k = 0; k < n; k++) {
        size_t i = p.order[k];
        if (p.nbytes[i])
            memcpy(w, entries[i].data, (size_t)p.nbytes[i]);
        w += p.nbytes[i];
    }
    plan_release(&p);
    *out = buf;
    *out_size = (size_t)total;
    return LH_OK;
}

lh_status lh_st_write(const char *path, const lh_st_entry *entries, size_t n,
                      const char *const *meta_keys, const char *const *meta_values, size_t n_meta,
                      lh_error *err)
{
    plan p;
    lh_status rc = make_plan(entries, n, meta_keys, meta_values, n_meta, path, &p, err);
    if (rc) {
        plan_release(&p);
        return rc;
    }
    lh_atomic_file f;
    rc = lh_atomic_begin(&f, path, err);
    if (rc) {
        plan_release(&p);
        return rc;
    }
    uint8_t len[8];
    put_le64(len, p.header.len);
    rc = lh_atomic_write(&f, len, 8, err);
    if (!rc)
        rc = lh_atomic_write(&f, p.header.buf, p.header.len, err);
    for (size_t k = 0; k < n && !rc; k++) {
        size_t i = p.order[k];
        if (p.nbytes[i])
            rc = lh_atomic_write(&f, entries[i].data, (size_t)p.nbytes[i], err);
    }
    plan_release(&p);
    if (rc) {
        lh_atomic_abort(&f);
        return rc;
    }
    return lh_atomic_commit(&f, err);
}

/* model/checkpoint.c - checkpoint tensors into an architecture's F32 blob.
 *
 * Shared by the architectures (model/llama/, model/t5/): they say which
 * tensors, shapes and destinations; this file reads the safetensors or
 * torch zip files (model.safetensors, pytorch_model.bin, or the sharded
 * index of either),
 * converts every tensor to F32 once and releases the mappings, so the
 * steady-state footprint is the blob. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "checkpoint.h"
#include "lib/fsutil.h"
#include "lib/json.h"
#include "lib/safetensors.h"
#include "lib/torchzip.h"

void lh_want_add(lh_want_list *l, float *dst, int64_t d0, int64_t d1, const char *fmt, ...)
{
    if (l->n >= l->cap)
        return;
    lh_want *x = &l->w[l->n++];
    memset(x, 0, sizeof *x);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(x->name, sizeof x->name, fmt, ap);
    va_end(ap);
    x->dst = dst;
    x->ndim = d1 ? 2 : 1;
    x->shape[0] = d0;
    x->shape[1] = d1;
}

static lh_want *find_want(lh_want_list *l, const char *name)
{
    for (size_t i = 0; i < l->n; i++)
        if (!strcmp(l->w[i].name, name))
            return &l->w[i];
    return NULL;
}

static int ignorable(const lh_want_list *l, const char *name)
{
    return l->ignorable && l->ignorable(l->ctx, name);
}

/* The file's pages are not needed once converted: dropping them keeps the
 * peak resident memory near the F32 blob instead of blob + checkpoint. */
static void drop_pages(const void *p, size_t len)
{
    long pg = sysconf(_SC_PAGESIZE);
    if (pg <= 0)
        return;
    uintptr_t a = ((uintptr_t)p + (uintptr_t)pg - 1) & ~((uintptr_t)pg - 1);
    uintptr_t e = ((uintptr_t)p + len) & ~((uintptr_t)pg - 1);
    if (e > a)
        madvise((void *)a, e - a, MADV_DONTNEED);
}

static lh_status shape_error(const lh_safetensors *st, const lh_st_tensor *t, const lh_want *x,
                             lh_error *err)
{
    char got[128] = "";
    size_t off = 0;
    for (int d = 0; d < t->ndim && off < sizeof got - 24; d++)
        off += (size_t)snprintf(got + off, sizeof got - off, "%s%lld", d ? "," : "",
                                (long long)t->shape[d]);
    if (x->ndim == 1)
        return lh_error_set(err, LH_ERR_SHAPE,
                            "%s: tensor '%s' has shape [%s], the config implies [%lld]", st->path,
                            t->name, got, (long long)x->shape[0]);
    return lh_error_set(err, LH_ERR_SHAPE,
                        "%s: tensor '%s' has shape [%s], the config implies [%lld,%lld]",
                        st->path, t->name, got, (long long)x->shape[0], (long long)x->shape[1]);
}

/* Copy every tensor of one file into its place; extras are errors. */
static lh_status take_file(lh_want_list *l, const lh_safetensors *st, lh_error *err)
{
    for (size_t i = 0; i < st->n_tensors; i++) {
        const lh_st_tensor *t = &st->tensors[i];
        lh_want *x = find_want(l, t->name);
        if (!x) {
            if (ignorable(l, t->name))
                continue;
            return lh_error_set(err, LH_ERR_FORMAT,
                                "%s: unexpected tensor '%s' (not part of a %s model with this "
                                "config)", st->path, t->name, l->model_type);
        }
        if (x->found)
            return lh_error_set(err, LH_ERR_FORMAT, "%s: tensor '%s' appears twice in the checkpoint",
                                st->path, t->name);
        int ok = t->ndim == x->ndim && t->shape[0] == x->shape[0] &&
                 (x->ndim == 1 || t->shape[1] == x->shape[1]);
        if (!ok)
            return shape_error(st, t, x, err);
        if (t->dtype != LH_F32 && t->dtype != LH_F16 && t->dtype != LH_BF16)
            return lh_error_set(err, LH_ERR_UNSUPPORTED,
                                "%s: tensor '%s' has dtype %s (F32, F16, BF16 supported)",
                                st->path, t->name, lh_dtype_name(t->dtype));
        lh_status s = lh_st_read_f32(st, t, x->dst, err);
        if (s)
            return s;
        x->found = 1;
        if (st->mapped)
            drop_pages(t->data, t->end - t->begin);
    }
    return LH_OK;
}

/* A shard file name from the index: a plain name inside dir. */
static int safe_shard_name(const char *f)
{
    return *f && !strchr(f, '/') && strcmp(f, ".") && strcmp(f, "..") && strlen(f) < 512;
}

static lh_status load_sharded(lh_want_list *l, const char *dir, const char *index_path,
                              lh_error *err)
{
    lh_json *idx = NULL;
    lh_status s = lh_json_parse_file(index_path, &idx, err);
    if (s)
        return s;
    const lh_json *map = lh_json_get(idx, "weight_map");
    if (!map || map->type != LH_JSON_OBJECT) {
        lh_json_free(idx);
        return lh_error_set(err, LH_ERR_FORMAT, "%s: missing object 'weight_map'", index_path);
    }
    /* Each distinct shard once, in first-mention order. */
    const char **files = calloc(map->len ? map->len : 1, sizeof *files);
    size_t n_files = 0;
    if (!files) {
        lh_json_free(idx);
        return lh_error_set(err, LH_ERR_NOMEM, "out of memory");
    }
    for (size_t i = 0; i < map->len && !s; i++) {
        const char *f;
        if (!lh_json_as_string(map->items[i], &f) || !safe_shard_name(f)) {
            s = lh_error_set(err, LH_ERR_FORMAT, "%s: weight_map['%s'] is not a file name in %s",
                             index_path, map->keys[i], dir);
            break;
        }
        if (!find_want(l, map->keys[i]) && !ignorable(l, map->keys[i])) {
            s = lh_error_set(err, LH_ERR_FORMAT,
                             "%s: unexpected tensor '%s' (not part of a %s model with this config)",
                             index_path, map->keys[i], l->model_type);
            break;
        }
        size_t k = 0;
        while (k < n_files && strcmp(files[k], f))
            k++;
        if (k == n_files)
            files[n_files++] = f;
    }
    for (size_t k = 0; k < n_files && !s; k++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, files[k]);
        lh_safetensors *st = NULL;
        if ((s = lh_tensors_open(path, &st, err)))
            break;
        s = take_file(l, st, err);
        lh_st_free(st);
    }
    /* A tensor in a shard the index does not name is found anyway; one the
     * index names in the wrong shard is caught as missing below. */
    free(files);
    lh_json_free(idx);
    return s;
}

/* Every want found, or for a group (aliases sharing one destination), at
 * least one of its wants. */
static lh_status check_found(lh_want_list *l, const char *dir, lh_error *err)
{
    for (size_t i = 0; i < l->n; i++) {
        lh_want *x = &l->w[i];
        if (x->found)
            continue;
        if (!x->group)
            return lh_error_set(err, LH_ERR_NOT_FOUND, "%s: checkpoint lacks tensor '%s'", dir,
                                x->name);
        int any = 0;
        for (size_t k = 0; k < l->n && !any; k++)
            any = l->w[k].group == x->group && l->w[k].found;
        if (!any)
            return lh_error_set(err, LH_ERR_NOT_FOUND, "%s: checkpoint lacks tensor '%s'", dir,
                                x->name);
    }
    return LH_OK;
}

lh_status lh_ckpt_load(const char *dir, lh_want_list *l, lh_error *err)
{
    /* Hugging Face's order: safetensors first, then torch.save files
     * (read by lib/torchzip, which runs no pickle code). */
    static const struct {
        const char *file;
        int index;
    } forms[] = {
        {"model.safetensors", 0}, {"model.safetensors.index.json", 1},
        {"pytorch_model.bin", 0}, {"pytorch_model.bin.index.json", 1},
    };
    char path[4096];
    lh_status s;
    size_t f = 0;
    for (; f < sizeof forms / sizeof forms[0]; f++) {
        snprintf(path, sizeof path, "%s/%s", dir, forms[f].file);
        if (lh_path_exists(path))
            break;
    }
    if (f == sizeof forms / sizeof forms[0])
        return lh_error_set(err, LH_ERR_NOT_FOUND, "%s: no model.safetensors, "
                            "model.safetensors.index.json, pytorch_model.bin or "
                            "pytorch_model.bin.index.json", dir);
    if (forms[f].index) {
        s = load_sharded(l, dir, path, err);
    } else {
        lh_safetensors *st = NULL;
        if (!(s = lh_tensors_open(path, &st, err)))
            s = take_file(l, st, err);
        lh_st_free(st);
    }
    return s ? s : check_found(l, dir, err);
}

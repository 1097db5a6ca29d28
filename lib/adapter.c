/* lib/adapter.c - the in-memory adapter: creation and lookup.
 * (lh_adapter_load is in adapter_load.c, so users of the in-memory model
 * alone do not pull in the PEFT and MoS readers.)
 *
 * Memory: names and the targets array are separate allocations owned by the
 * adapter; A/B live in `storage`, released by storage_free. For adapters
 * from lh_adapter_create that is one zeroed malloc'd blob; for loaded ones
 * the loader installs its own owner (file mapping + converted floats). */
#include "adapter.h"
#include <math.h>

#include <stdint.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static int cmp_shape_ptr(const void *a, const void *b)
{
    const lh_target_shape *x = *(const lh_target_shape *const *)a;
    const lh_target_shape *y = *(const lh_target_shape *const *)b;
    return strcmp(x->name, y->name);
}

lh_status lh_adapter_create(const lh_target_shape *shapes, size_t n, lh_adapter **out,
                            lh_error *err)
{
    *out = NULL;
    lh_adapter *a = calloc(1, sizeof *a);
    const lh_target_shape **order = n ? malloc(n * sizeof *order) : NULL;
    if (!a || (n && !order)) {
        free(a);
        free(order);
        return lh_error_set(err, LH_ERR_NOMEM, "adapter: out of memory");
    }
    a->format = LH_FORMAT_PEFT;
    a->dtype = LH_F32;
    uint64_t total = 0; /* floats in the blob */
    for (size_t i = 0; i < n; i++) {
        const lh_target_shape *s = &shapes[i];
        if (!s->name || !*s->name || s->r <= 0 || s->d_in <= 0 || s->d_out <= 0) {
            free(order);
            lh_adapter_free(a);
            return lh_error_set(err, LH_ERR_ARG, "adapter: target %zu ('%s') has an empty name "
                                "or a non-positive shape [r %d, d_in %d, d_out %d]",
                                i, s->name ? s->name : "", s->r, s->d_in, s->d_out);
        }
        total += (uint64_t)s->r * ((uint64_t)s->d_in + (uint64_t)s->d_out);
        order[i] = s;
    }
    if (n)
        qsort(order, n, sizeof *order, cmp_shape_ptr);
    for (size_t i = 1; i < n; i++)
        if (!strcmp(order[i]->name, order[i - 1]->name)) {
            lh_status st = lh_error_set(err, LH_ERR_ARG, "adapter: target '%s' given twice",
                                        order[i]->name);
            free(order);
            lh_adapter_free(a);
            return st;
        }
    if (total > SIZE_MAX / sizeof(float)) {
        free(order);
        lh_adapter_free(a);
        return lh_error_set(err, LH_ERR_NOMEM, "adapter: %llu floats do not fit in memory",
                            (unsigned long long)total);
    }
    a->targets = n ? calloc(n, sizeof *a->targets) : NULL;
    float *blob = calloc(total ? (size_t)total : 1, sizeof(float)); /* all A then B, per target */
    a->storage = blob;
    a->storage_free = free;
    if ((n && !a->targets) || !blob) {
        free(order);
        lh_adapter_free(a);
        return lh_error_set(err, LH_ERR_NOMEM, "adapter: out of memory for %llu floats",
                            (unsigned long long)total);
    }
    a->n_targets = n;
    float *p = blob;
    for (size_t i = 0; i < n; i++) {
        lh_target *t = &a->targets[i];
        const lh_target_shape *s = order[i];
        t->name = strdup(s->name);
        if (!t->name) {
            free(order);
            lh_adapter_free(a);
            return lh_error_set(err, LH_ERR_NOMEM, "adapter: out of memory");
        }
        t->r = s->r;
        t->d_in = s->d_in;
        t->d_out = s->d_out;
        t->A = p;
        p += (size_t)s->r * (size_t)s->d_in;
        t->B = p;
        p += (size_t)s->d_out * (size_t)s->r;
        t->scale = 1.0f;
        t->alpha = (float)s->r;
        if (s->r > a->r)
            a->r = s->r;
    }
    a->lora_alpha = a->r;
    free(order);
    *out = a;
    return LH_OK;
}

void lh_adapter_free(lh_adapter *a)
{
    if (!a)
        return;
    for (size_t i = 0; i < a->n_targets; i++)
        free(a->targets[i].name);
    free(a->targets);
    free(a->path);
    free(a->name);
    free(a->base_model);
    free(a->task_type);
    if (a->storage && a->storage_free)
        a->storage_free(a->storage);
    free(a->sum); /* one block with its arrays */
    free(a);
}

static int cmp_name_target(const void *key, const void *elem)
{
    return strcmp((const char *)key, ((const lh_target *)elem)->name);
}

const lh_target *lh_adapter_find(const lh_adapter *a, const char *name)
{
    if (!a || !name || !a->n_targets)
        return NULL;
    return bsearch(name, a->targets, a->n_targets, sizeof *a->targets, cmp_name_target);
}

uint64_t lh_adapter_n_params(const lh_adapter *a)
{
    uint64_t n = 0;
    for (size_t i = 0; a && i < a->n_targets; i++)
        n += (uint64_t)a->targets[i].r *
             ((uint64_t)a->targets[i].d_in + (uint64_t)a->targets[i].d_out);
    return n;
}

int lh_adapter_max_rank(const lh_adapter *a)
{
    int r = 0;
    for (size_t i = 0; a && i < a->n_targets; i++)
        if (a->targets[i].r > r)
            r = a->targets[i].r;
    return r;
}


/* Non-finite floats have every exponent bit set; counting them by the bit
 * pattern keeps the loop branch-free (it runs over every input of a compose). */
size_t lh_count_nonfinite(const float *x, size_t n, size_t *first)
{
    size_t c = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &x[i], sizeof u);
        c += (u & 0x7f800000u) == 0x7f800000u;
    }
    if (c && first)
        for (size_t i = 0; i < n; i++)
            if (!isfinite(x[i])) {
                *first = i;
                break;
            }
    return c;
}

size_t lh_adapter_nonfinite(const lh_adapter *a, lh_nonfinite *where)
{
    lh_nonfinite w;
    memset(&w, 0, sizeof w);
    for (size_t t = 0; a && t < a->n_targets; t++) {
        const lh_target *tg = &a->targets[t];
        size_t fa = 0, fb = 0;
        size_t ca = tg->A ? lh_count_nonfinite(tg->A, (size_t)tg->r * (size_t)tg->d_in, &fa) : 0;
        size_t cb = tg->B ? lh_count_nonfinite(tg->B, (size_t)tg->d_out * (size_t)tg->r, &fb) : 0;
        if (!ca && !cb)
            continue;
        if (!w.count) {
            w.target = t;
            w.tensor = ca ? "lora_A" : "lora_B";
            w.element = ca ? fa : fb;
            w.value = ca ? tg->A[fa] : tg->B[fb];
        }
        w.count += ca + cb;
        w.n_targets++;
    }
    if (where)
        *where = w;
    return w.count;
}

int lh_adapter_all_finite(const lh_adapter *a)
{
    for (size_t t = 0; a && t < a->n_targets; t++)
        if (!isfinite(a->targets[t].scale))
            return 0;
    return lh_adapter_nonfinite(a, NULL) == 0;
}

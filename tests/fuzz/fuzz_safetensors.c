/* tests/fuzz/fuzz_safetensors.c - libFuzzer target for the safetensors reader.
 *
 * Oracle beyond "no crash": a file the reader accepts is written back with
 * lh_st_serialize, and that must parse to the same tensors and bytes; every
 * float tensor must convert to F32. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lib/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    lh_safetensors *st = NULL;
    lh_error err = { 0 };
    if (lh_st_parse(data, size, "fuzz.safetensors", &st, &err) != LH_OK) {
        if (!err.msg[0])
            __builtin_trap(); /* every refusal must say why */
        return 0;
    }
    lh_st_entry *e = calloc(st->n_tensors + 1, sizeof *e);
    for (size_t i = 0; i < st->n_tensors; i++) {
        const lh_st_tensor *t = &st->tensors[i];
        e[i].name = t->name;
        e[i].dtype = t->dtype;
        e[i].ndim = t->ndim;
        memcpy(e[i].shape, t->shape, sizeof t->shape);
        e[i].data = t->data;
        if (lh_dtype_is_float(t->dtype) && t->numel <= 4096) {
            float buf[4096];
            if (lh_st_read_f32(st, t, buf, &err) != LH_OK)
                __builtin_trap();
        }
        const float *v = lh_st_f32_view(t);
        if (v && t->numel)
            (void)*(volatile const float *)&v[t->numel - 1];
    }
    uint8_t *out = NULL;
    size_t out_size = 0;
    lh_status rc = lh_st_serialize(e, st->n_tensors, (const char *const *)st->meta_keys,
                                   (const char *const *)st->meta_values, st->n_meta, &out,
                                   &out_size, &err);
    if (rc == LH_OK) {
        lh_safetensors *back = NULL;
        if (lh_st_parse(out, out_size, "roundtrip", &back, &err) != LH_OK)
            __builtin_trap();
        if (back->n_tensors != st->n_tensors || back->n_meta != st->n_meta)
            __builtin_trap();
        for (size_t i = 0; i < st->n_tensors; i++) {
            const lh_st_tensor *a = &st->tensors[i], *b = lh_st_find(back, a->name);
            if (!b || b->dtype != a->dtype || b->ndim != a->ndim || b->numel != a->numel ||
                b->end - b->begin != a->end - a->begin ||
                memcmp(b->shape, a->shape, sizeof a->shape) != 0 ||
                (a->end > a->begin && memcmp(a->data, b->data, a->end - a->begin) != 0))
                __builtin_trap();
        }
        for (size_t i = 0; i < st->n_meta; i++) {
            const char *v = lh_st_meta(back, st->meta_keys[i]);
            if (!v || strcmp(v, st->meta_values[i]) != 0)
                __builtin_trap();
        }
        lh_st_free(back);
        free(out);
    } else if (rc != LH_ERR_ARG && rc != LH_ERR_NOMEM) {
        __builtin_trap();
    }
    free(e);
    lh_st_free(st);
    return 0;
}

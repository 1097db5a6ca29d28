/* tests/fuzz/fuzz_torchzip.c - libFuzzer target for the torch zip reader.
 *
 * An input starting with "PK\3\4" is parsed as a whole file (the zip
 * layer, then the pickle inside). Any other input is taken as data.pkl and
 * wrapped in a well-formed zip beside four 24-byte storages data/0..data/3,
 * with a correct CRC, so mutations reach the unpickler instead of failing
 * the zip's CRC check.
 *
 * Oracle beyond "no crash": a refusal says why; an accepted file's tensors
 * lie inside the buffer with end - begin = numel * element size, their
 * names are distinct, and float tensors convert to F32. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lib/torchzip.h"
#include "tests/zipbuild.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(const uint8_t *base, size_t size)
{
    lh_safetensors *st = NULL;
    lh_error err = {0};
    if (lh_torch_parse(base, size, "fuzz.bin", &st, &err) != LH_OK) {
        if (!err.msg[0] || st)
            __builtin_trap(); /* every refusal must say why, and return nothing */
        return;
    }
    for (size_t i = 0; i < st->n_tensors; i++) {
        const lh_st_tensor *t = &st->tensors[i];
        uint64_t bytes = t->numel * (lh_dtype_bits(t->dtype) / 8);
        if (t->end - t->begin != bytes || t->end > size || t->begin > t->end ||
            (const uint8_t *)t->data != base + t->begin)
            __builtin_trap();
        if (bytes)
            (void)*(volatile const uint8_t *)((const uint8_t *)t->data + bytes - 1);
        if (lh_st_find(st, t->name) != t)
            __builtin_trap(); /* names are unique, so the first match is this one */
        if (lh_dtype_is_float(t->dtype) && t->numel <= 4096) {
            float f[4096];
            if (lh_st_read_f32(st, t, f, &err) != LH_OK)
                __builtin_trap();
        }
    }
    lh_st_free(st);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size >= 4 && !memcmp(data, "PK\3\4", 4)) {
        check(data, size);
        return 0;
    }
    static const uint8_t storage[24] = {0, 0, 0, 0, 0, 0, 0x80, 0x3f, 0, 0, 0, 0x40,
                                        0, 0, 0x40, 0x40, 0, 0, 0x80, 0x40, 0, 0, 0xa0, 0x40};
    zin e[] = {{"archive/data.pkl", data, size, 0, 0},
               {"archive/data/0", storage, 24, 0, 0}, {"archive/data/1", storage, 24, 0, 0},
               {"archive/data/2", storage, 24, 0, 0}, {"archive/data/3", storage, 24, 0, 0},
               {"archive/byteorder", "little", 6, 0, 0}};
    zbuf z = make_zip(e, sizeof e / sizeof e[0]);
    uint8_t *exact = malloc(z.n);
    memcpy(exact, z.p, z.n);
    free(z.p);
    check(exact, z.n);
    free(exact);
    return 0;
}

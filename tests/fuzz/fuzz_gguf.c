/* tests/fuzz/fuzz_gguf.c - libFuzzer target for the GGUF reader and the
 * LoRA layer on top of it (seeds: the .gguf files of tests/fuzz/seeds/gguf, small
 * adapters written by llama.cpp's gguf-py and by lorahub).
 *
 * Oracle beyond "no crash": every refusal is one line naming the input; an
 * accepted container's tensors lie inside the buffer; an accepted LoRA holds
 * finite numbers, and written back as GGUF and read again it is the same
 * adapter bit for bit. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib/gguf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_refusal(const lh_error *err)
{
    if (!err->msg[0] || strchr(err->msg, '\n') || strncmp(err->msg, "fuzz.gguf: ", 11))
        __builtin_trap();
}

static void same(const lh_adapter *a, const lh_adapter *b)
{
    if (a->n_targets != b->n_targets)
        __builtin_trap();
    for (size_t i = 0; i < a->n_targets; i++) {
        const lh_target *x = &a->targets[i], *y = &b->targets[i];
        if (strcmp(x->name, y->name) || x->r != y->r || x->d_in != y->d_in ||
            x->d_out != y->d_out || x->scale != y->scale ||
            memcmp(x->A, y->A, (size_t)x->r * x->d_in * sizeof(float)) ||
            memcmp(x->B, y->B, (size_t)x->d_out * x->r * sizeof(float)))
            __builtin_trap();
    }
}

/* An accepted adapter: finite, and the same after a GGUF round trip. */
static void check_lora(const lh_adapter *a, const lh_gguf_arch *arch)
{
    for (size_t i = 0; i < a->n_targets; i++) {
        const lh_target *t = &a->targets[i];
        for (size_t k = 0; k < (size_t)t->r * t->d_in; k++)
            if (!isfinite(t->A[k]))
                __builtin_trap();
        for (size_t k = 0; k < (size_t)t->r * t->d_out; k++)
            if (!isfinite(t->B[k]))
                __builtin_trap();
    }
    char path[64];
    snprintf(path, sizeof path, "/tmp/fuzz_gguf.%d.gguf", (int)getpid());
    lh_gguf_save_opts so = {.dtype = LH_F32, .force = 1};
    lh_error err = {0};
    if (lh_gguf_save_lora_opts(a, arch, path, &so, &err) != LH_OK) {
        unlink(path);
        return; /* e.g. a scale whose fold overflows: refused, with a message */
    }
    lh_adapter *b = NULL;
    if (lh_gguf_load_lora(path, arch, &b, &err) != LH_OK)
        __builtin_trap();
    unlink(path);
    for (size_t i = 0; i < a->n_targets; i++) /* a folded scale may move B: compare products */
        if (a->targets[i].scale != b->targets[i].scale)
            goto done;
    same(a, b);
done:
    lh_adapter_free(b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    lh_gguf *g = NULL;
    lh_error err = {0};
    if (lh_gguf_parse(data, size, "fuzz.gguf", LH_GGUF_KV_ONLY, &g, &err) != LH_OK)
        check_refusal(&err);
    lh_gguf_free(g);
    g = NULL;
    if (lh_gguf_parse(data, size, "fuzz.gguf", LH_GGUF_FULL, &g, &err) != LH_OK) {
        check_refusal(&err);
        return 0;
    }
    for (size_t i = 0; i < g->n_tensors; i++) {
        const lh_gguf_tensor *t = &g->tensors[i];
        const uint8_t *p = t->data;
        if (p < data || p > data + size || t->nbytes > (uint64_t)(data + size - p))
            __builtin_trap();
    }
    lh_gguf_arch llama = {.arch = "llama", .n_layers = 4, .n_head = 4, .n_head_kv = 2,
                          .ffn_gated = -1};
    const lh_gguf_arch *archs[2] = {NULL, &llama};
    for (int k = 0; k < 2; k++) {
        lh_adapter *a = NULL;
        if (lh_gguf_lora_read(g, archs[k], &a, &err) != LH_OK) {
            check_refusal(&err);
            continue;
        }
        lh_gguf_arch own = llama;
        const lh_gguf_kv *kv = lh_gguf_find_kv(g, "general.architecture");
        snprintf(own.arch, sizeof own.arch, "%s", kv->str);
        check_lora(a, archs[k] ? archs[k] : &own);
        lh_adapter_free(a);
    }
    lh_gguf_free(g);
    return 0;
}

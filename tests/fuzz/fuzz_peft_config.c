/* tests/fuzz/fuzz_peft_config.c - libFuzzer target for adapter_config.json
 * (target_modules regexes, rank/alpha patterns, layers_to_transform, the
 * refusals) against a fixed two-layer adapter_model.safetensors.
 *
 * Oracle beyond "no crash": every refusal is one line that says why; an
 * accepted config gives every target a finite scale and the tensors'
 * ranks. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "lib/lorahub.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char st_path[64];

static void make_tensors(void)
{
    static float buf[2 * 16 * 8];
    static const char *names[] = {
        "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight",
        "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight",
        "base_model.model.model.layers.1.mlp.down_proj.lora_A.weight",
        "base_model.model.model.layers.1.mlp.down_proj.lora_B.weight",
    };
    lh_st_entry e[4];
    for (int i = 0; i < 4; i++) {
        memset(&e[i], 0, sizeof e[i]);
        e[i].name = names[i];
        e[i].dtype = LH_F32;
        e[i].ndim = 2;
        e[i].shape[0] = i % 2 ? 16 : 8;
        e[i].shape[1] = i % 2 ? 8 : 16;
        e[i].data = buf;
    }
    snprintf(st_path, sizeof st_path, "/tmp/fuzz_peft.%d.safetensors", (int)getpid());
    const char *mk[] = {"format"}, *mv[] = {"pt"};
    if (lh_st_write(st_path, e, 4, mk, mv, 1, NULL) != LH_OK)
        __builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!st_path[0])
        make_tensors();
    int fd = memfd_create("fuzz_cfg", 0);
    if (fd < 0 || (size && write(fd, data, size) != (ssize_t)size))
        __builtin_trap();
    char cfg[64];
    snprintf(cfg, sizeof cfg, "/proc/self/fd/%d", fd);
    lh_adapter *a = NULL;
    lh_error err = {0};
    if (lh_peft_load_file(st_path, cfg, &a, &err) != LH_OK) {
        if (!err.msg[0] || strchr(err.msg, '\n'))
            __builtin_trap();
    } else {
        if (a->n_targets != 2)
            __builtin_trap();
        for (size_t i = 0; i < a->n_targets; i++)
            if (a->targets[i].r != 8 || !isfinite(a->targets[i].scale))
                __builtin_trap();
        lh_adapter_free(a);
    }
    close(fd);
    return 0;
}

/* cmd/convert.c - `lorahub convert IN OUT [--dtype f32|f16|bf16] [--force]
 * [--base-model NAME] [--base BASE]`: any module lorahub reads (PEFT
 * directory or file, MoS file, GGUF LoRA) written as a portable PEFT
 * directory (scales folded into B, lora_alpha = r, use_rslora false) or,
 * when OUT ends in .gguf, as a llama.cpp GGUF LoRA adapter for the base
 * model BASE (an HF model directory or a GGUF model file), which gives the
 * architecture and the head counts of llama's q/k row permutation. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/lorahub.h"
#include "lib/gguf.h"
#include "cmd.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: lorahub convert IN OUT [--dtype f32|f16|bf16] [--force] "
               "[--base-model NAME] [--base BASE]\n"
               "       (OUT ending in .gguf: a llama.cpp LoRA adapter; --base is required)\n");
}

int cmd_convert(int argc, char **argv)
{
    static const struct option opts[] = {
        {"dtype", required_argument, NULL, 'd'},
        {"force", no_argument, NULL, 'f'},
        {"base-model", required_argument, NULL, 'b'},
        {"base", required_argument, NULL, 'B'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    lh_peft_save_opts so = {.dtype = LH_F32};
    int c, dtype_given = 0;
    const char *base = NULL;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":fh", opts, NULL)) != -1) {
        switch (c) {
        case 'd':
            if (cmd_parse_dtype(optarg, &so.dtype))
                return cmd_usage_error("convert", "--dtype '%s' is not f32, f16 or bf16", optarg);
            dtype_given = 1;
            break;
        case 'f': so.force = 1; break;
        case 'b': so.base_model = optarg; break;
        case 'B': base = optarg; break;
        case 'h': usage(stdout); return LH_EXIT_OK;
        case ':':
            return cmd_usage_error("convert", "option '%s' needs a value", argv[optind - 1]);
        default:
            return cmd_usage_error("convert", "unknown option '%s'", argv[optind - 1]);
        }
    }
    if (argc - optind != 2)
        return cmd_usage_error("convert", "want IN and OUT, got %d path%s", argc - optind,
                               argc - optind == 1 ? "" : "s");
    const char *in = argv[optind], *out = argv[optind + 1];
    int to_gguf = lh_str_ends_with(out, ".gguf");
    if (to_gguf && !base)
        return cmd_usage_error("convert", "a .gguf output needs the base model: --base DIR "
                               "(HF config.json) or --base MODEL.gguf");
    lh_error err = {0};
    lh_gguf_arch arch;
    if (base && lh_gguf_arch_from_base(base, &arch, &err) != LH_OK)
        return cmd_fail("convert", &err);
    lh_adapter *a = NULL;
    if (lh_gguf_load_module(in, base ? &arch : NULL, &a, &err) != LH_OK)
        return cmd_fail("convert", &err);
    if (so.base_model) {
        free(a->base_model);
        a->base_model = strdup(so.base_model);
    }
    lh_status st;
    if (to_gguf) {
        lh_gguf_save_opts go = {.dtype = dtype_given ? so.dtype : LH_F32, .force = so.force};
        st = lh_gguf_save_lora_opts(a, &arch, out, &go, &err);
    } else {
        st = lh_peft_save(a, out, &so, &err);
    }
    lh_adapter_free(a);
    return st == LH_OK ? LH_EXIT_OK : cmd_fail("convert", &err);
}

/* cmd/convert.c - `lorahub convert IN OUT [--dtype f32|f16|bf16] [--force]
 * [--base-model NAME]`: any module lorahub reads (PEFT directory or file,
 * MoS file) written as a portable PEFT directory: scales folded into B,
 * lora_alpha = r, use_rslora false. */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "lib/fsutil.h"
#include "lib/lorahub.h"
#include "cmd.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: lorahub convert IN OUT [--dtype f32|f16|bf16] [--force] "
               "[--base-model NAME]\n");
}

int cmd_convert(int argc, char **argv)
{
    static const struct option opts[] = {
        {"dtype", required_argument, NULL, 'd'},
        {"force", no_argument, NULL, 'f'},
        {"base-model", required_argument, NULL, 'b'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    lh_peft_save_opts so = {.dtype = LH_F32};
    int c;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":fh", opts, NULL)) != -1) {
        switch (c) {
        case 'd':
            if (cmd_parse_dtype(optarg, &so.dtype))
                return cmd_usage_error("convert", "--dtype '%s' is not f32, f16 or bf16", optarg);
            break;
        case 'f': so.force = 1; break;
        case 'b': so.base_model = optarg; break;
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
    if (lh_path_is_stdout(out))
        return cmd_usage_error("convert", "OUT: " LH_STDOUT_DIR_MSG);
    lh_error err = {0};
    lh_adapter *a = NULL;
    if (lh_adapter_load(in, &a, &err) != LH_OK)
        return cmd_fail("convert", &err);
    lh_status st = lh_peft_save(a, out, &so, &err);
    lh_adapter_free(a);
    return st == LH_OK ? LH_EXIT_OK : cmd_fail("convert", &err);
}

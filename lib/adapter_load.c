/* lib/adapter_load.c - lh_adapter_load: pick PEFT or MoS by looking at the path. */
#include <stdlib.h>
#include <string.h>

#include "adapter.h"
#include "fsutil.h"
#include "gguf.h"
#include "mos.h"
#include "peft.h"
#include "strbuf.h"

static char *base_name(const char *path)
{
    size_t n;
    const char *b = lh_path_base(path, &n);
    return strndup(b, n);
}

/* Give a freshly loaded adapter its path and short name. */
static lh_status set_names(lh_adapter *a, const char *path, lh_error *err)
{
    free(a->path);
    free(a->name);
    a->path = strdup(path);
    a->name = base_name(path);
    if (!a->path || !a->name)
        return lh_error_set(err, LH_ERR_NOMEM, "%s: out of memory", path);
    return LH_OK;
}

static lh_status load_impl(const char *path, lh_adapter **out, lh_error *err)
{
    *out = NULL;
    lh_adapter *a = NULL;
    lh_status st;
    if (!lh_path_exists(path))
        return lh_error_set(err, LH_ERR_NOT_FOUND, "cannot open '%s': no such file or directory",
                            path);
    if (lh_is_dir(path)) {
        st = lh_peft_load_dir(path, &a, err);
    } else if (lh_gguf_sniff(path)) {
        /* The file's own keys: lorahub's head counts undo the q/k permutation;
         * a foreign llama adapter without them is refused asking for --base. */
        st = lh_gguf_load_lora(path, NULL, &a, err);
    } else if (lh_mos_sniff(path)) {
        lh_mos *m = NULL;
        st = lh_mos_load(path, &m, err);
        if (st == LH_OK)
            st = lh_mos_materialize(m, &a, err);
        lh_mos_free(m);
        if (st == LH_OK) {
            int64_t sz = lh_file_size(path);
            a->file_size = sz > 0 ? (uint64_t)sz : 0;
        }
    } else {
        /* PEFT tensors in a bare file (safetensors or a torch zip such as
         * adapter_model.bin): take the config beside it if any. */
        char *dir = strdup(path);
        if (!dir)
            return lh_error_set(err, LH_ERR_NOMEM, "%s: out of memory", path);
        char *slash = strrchr(dir, '/');
        char *cfg;
        if (slash) {
            slash[1] = '\0';
            cfg = lh_path_join(dir, "adapter_config.json");
        } else {
            cfg = strdup("adapter_config.json");
        }
        free(dir);
        if (!cfg)
            return lh_error_set(err, LH_ERR_NOMEM, "%s: out of memory", path);
        st = lh_peft_load_file(path, lh_path_exists(cfg) && !lh_is_dir(cfg) ? cfg : NULL, &a, err);
        free(cfg);
    }
    if (st == LH_OK)
        st = set_names(a, path, err);
    if (st != LH_OK) {
        lh_adapter_free(a);
        return lh_error_one_line(st, err);
    }
    *out = a;
    return LH_OK;
}

lh_status lh_adapter_load(const char *path, lh_adapter **out, lh_error *err)
{
    return lh_error_one_line(load_impl(path, out, err), err);
}

/* model/model.c - the architecture registry and the lh_model calls.
 *
 * config.json is parsed once here; its model_type picks the architecture,
 * which then reads the rest of the config and its weights. A new
 * architecture joins by adding its lh_model_arch to the table. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arch.h"
#include "lib/strbuf.h"

static const lh_model_arch *const archs[] = {
    &lh_model_arch_llama,
    &lh_model_arch_t5,
};
#define N_ARCHS (sizeof archs / sizeof archs[0])

struct lh_model {
    const lh_model_arch *arch;
    void *impl;         /* the architecture's model */
    lh_model_info info; /* pointers into impl */
};

static const lh_model_arch *find_arch(const char *model_type)
{
    for (size_t a = 0; a < N_ARCHS; a++)
        for (const char *const *t = archs[a]->model_types; *t; t++)
            if (!strcmp(*t, model_type))
                return archs[a];
    return NULL;
}

static lh_status unsupported_type(const char *config_path, const char *model_type, lh_error *err)
{
    lh_sb list;
    lh_sb_init(&list);
    for (size_t a = 0; a < N_ARCHS; a++)
        for (const char *const *t = archs[a]->model_types; *t; t++)
            lh_sb_appendf(&list, "%s%s", list.len ? ", " : "", *t);
    lh_status s = lh_error_set(err, LH_ERR_UNSUPPORTED,
                               "%s: model_type '%s' is not supported (%s)", config_path,
                               model_type, list.buf ? list.buf : "");
    lh_sb_release(&list);
    return s;
}

lh_status lh_model_load(const char *dir, lh_model **out, lh_error *err)
{
    *out = NULL;
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", dir);
    lh_json *config = NULL;
    lh_status s = lh_json_parse_file(path, &config, err);
    if (s)
        return s;
    const char *model_type = NULL;
    const lh_model_arch *arch = NULL;
    if (config->type != LH_JSON_OBJECT)
        s = lh_error_set(err, LH_ERR_FORMAT, "%s: not a JSON object", path);
    else if (!lh_json_as_string(lh_json_get(config, "model_type"), &model_type))
        s = lh_error_set(err, LH_ERR_NOT_FOUND, "%s: missing string key 'model_type'", path);
    else if (!(arch = find_arch(model_type)))
        s = unsupported_type(path, model_type, err);
    lh_model *m = NULL;
    if (!s && !(m = calloc(1, sizeof *m)))
        s = lh_error_set(err, LH_ERR_NOMEM, "out of memory");
    if (!s) {
        m->arch = arch;
        s = arch->load(dir, config, path, &m->impl, &m->info, err);
        m->info.architecture = arch->name;
    }
    lh_json_free(config);
    if (s) {
        free(m);
        return s;
    }
    *out = m;
    return LH_OK;
}

void lh_model_free(lh_model *m)
{
    if (!m)
        return;
    m->arch->free(m->impl);
    free(m);
}

const lh_model_info *lh_model_get_info(const lh_model *m)
{
    return &m->info;
}

lh_status lh_model_check_adapter(const lh_model *m, const lh_adapter *a, lh_error *err)
{
    return m->arch->check_adapter(m->impl, a, err);
}

lh_status lh_model_score(const lh_model *m, const lh_model_batch *b,
                         const lh_adapter *const *cands, int n, int batched, double *nll,
                         size_t *n_tokens, lh_error *err)
{
    return m->arch->score(m->impl, b, cands, n, batched, nll, n_tokens, err);
}

lh_status lh_model_count_tokens(const lh_model *m, const lh_model_batch *b, size_t *n_tokens,
                                lh_error *err)
{
    return m->arch->count_tokens(m->impl, b, n_tokens, err);
}

lh_status lh_model_generate(const lh_model *m, const lh_adapter *a, const int32_t *prompt,
                            size_t n_prompt, int max_new, int32_t **out, size_t *n_out,
                            lh_error *err)
{
    return m->arch->generate(m->impl, a, prompt, n_prompt, max_new, out, n_out, err);
}

/* model/arch.h - what an architecture gives the registry in model.c.
 * Private to model/: each architecture folder (model/llama/, later
 * model/t5/) defines one lh_model_arch and model.c lists it. impl is the
 * architecture's own model struct; the registry never looks inside. */
#ifndef LH_MODEL_ARCH_H
#define LH_MODEL_ARCH_H

#include "lib/json.h"
#include "model.h"

typedef struct lh_model_arch {
    const char *name;                /* the family: "llama" */
    const char *const *model_types;  /* config.json model_type values it loads, NULL-terminated */
    /* config is dir/config.json parsed, config_path its name for errors;
     * info is filled from the loaded model (pointers into impl; the
     * registry sets architecture). */
    lh_status (*load)(const char *dir, const lh_json *config, const char *config_path,
                      void **impl, lh_model_info *info, lh_error *err);
    void (*free)(void *impl);
    lh_status (*check_adapter)(const void *impl, const lh_adapter *a, lh_error *err);
    lh_status (*score)(const void *impl, const lh_model_batch *b, const lh_adapter *const *cands,
                       int n, int batched, double *nll, size_t *n_tokens, lh_error *err);
    lh_status (*count_tokens)(const void *impl, const lh_model_batch *b, size_t *n_tokens,
                              lh_error *err);
    lh_status (*generate)(const void *impl, const lh_adapter *a, const int32_t *prompt,
                          size_t n_prompt, int max_new, int32_t **out, size_t *n_out,
                          lh_error *err);
} lh_model_arch;

extern const lh_model_arch lh_model_arch_llama;
extern const lh_model_arch lh_model_arch_t5;

#endif

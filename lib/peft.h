/* lib/peft.h - PEFT LoRA adapter directories.
 *
 * adapter_config.json: peft_type LORA, r, lora_alpha, use_rslora,
 * target_modules (list or regex), rank_pattern / alpha_pattern (PEFT's rule:
 * re.match(rf"(.*\.)?({key})$", name), first key in file order wins),
 * fan_in_fan_out, base_model_name_or_path, task_type, layers_to_transform.
 * adapter_model.safetensors keys: base_model.model.<module>.lora_A.weight
 * [r, d_in] and .lora_B.weight [d_out, r] (also the ".default." form).
 * DoRA magnitude vectors, lora biases and embedding LoRAs are refused. */
#ifndef LH_PEFT_H
#define LH_PEFT_H

#include "adapter.h"
#include "dtype.h"
#include "status.h"

/* Load a PEFT directory. */
lh_status lh_peft_load_dir(const char *dir, lh_adapter **out, lh_error *err);
/* Load an adapter_model.safetensors-style file; config_path may be NULL
 * (then scale 1 everywhere). */
lh_status lh_peft_load_file(const char *st_path, const char *config_path, lh_adapter **out,
                            lh_error *err);

typedef struct lh_peft_save_opts {
    lh_dtype dtype;          /* LH_F32, LH_F16 or LH_BF16 (0 is LH_BOOL: refused) */
    int force;               /* replace an existing directory */
    const char *base_model;  /* overrides a->base_model when non-NULL */
} lh_peft_save_opts;

/* Write a PEFT directory atomically: every target's scale is folded into B,
 * lora_alpha = r, use_rslora = false; targets with a rank other than the
 * most common one are written with rank_pattern/alpha_pattern entries.
 * Config keys sorted, indent 2; tensors per the safetensors writer rules
 * with metadata {"format":"pt"}. Refuses an existing dir unless force. */
lh_status lh_peft_save(const lh_adapter *a, const char *dir, const lh_peft_save_opts *opts,
                       lh_error *err);

#endif

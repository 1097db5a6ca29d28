/* adapt/modules.h - the set of LoRA modules a search weighs: found in a
 * directory or given as a list, optionally a seeded draw of some of them. */
#ifndef LH_MODULES_H
#define LH_MODULES_H

#include <stddef.h>
#include <stdint.h>

#include "lib/adapter.h"
#include "lib/gguf.h"
#include "lib/status.h"

typedef struct lh_module_set {
    size_t n;
    lh_adapter **mods;      /* [n] loaded modules, in weight order */
    size_t n_available;     /* candidates seen before pick */
} lh_module_set;

/* Every entry of dir that looks like a module (a directory holding
 * adapter_config.json, or a *.safetensors or *.gguf file; names starting with '.'
 * are skipped), sorted by name (strcmp). pick > 0 and smaller than the
 * number found: draw pick of them without replacement with lh_rng seeded
 * by seed (a partial Fisher-Yates shuffle; the same idea as Python's
 * random.sample, not its stream), then sort the drawn ones by name. Only
 * the drawn modules are loaded; one that fails to load is an error. */
lh_status lh_modules_from_dir(const char *dir, int pick, uint64_t seed, lh_module_set **out,
                              lh_error *err);
/* The same from a list of paths (kept in list order when pick draws none). */
lh_status lh_modules_from_list(const char *const *paths, size_t n, int pick, uint64_t seed,
                               lh_module_set **out, lh_error *err);
/* The modules a job's "modules" value names: a directory (as
 * lh_modules_from_dir), one .safetensors or .gguf file, "a,b,c" (paths relative to
 * base_dir), or a list file (one path per line, '#' comments, paths
 * relative to the list file). base_dir NULL: the current directory. */
lh_status lh_modules_from_spec(const char *spec, const char *base_dir, int pick, uint64_t seed,
                               lh_module_set **out, lh_error *err);
/* The same two, GGUF modules read against the base model's facts (its
 * architecture is checked, its head counts undo llama's q/k permutation;
 * NULL: each file's own keys). */
lh_status lh_modules_from_list_base(const char *const *paths, size_t n, int pick, uint64_t seed,
                                    const lh_gguf_arch *base, lh_module_set **out, lh_error *err);
lh_status lh_modules_from_spec_base(const char *spec, const char *base_dir, int pick,
                                    uint64_t seed, const lh_gguf_arch *base, lh_module_set **out,
                                    lh_error *err);
void lh_module_set_free(lh_module_set *s);

#endif

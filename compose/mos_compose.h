/* compose/mos_compose.h - LoraHub composition of MoS modules in shard space.
 *
 * Modules with identical routing (lh_mos_same_routing: same index tables,
 * rank scales, r, l, shard counts and shapes; lora_alpha may differ) share
 * one linear gather G_A, G_B from pools to A and B:
 *     A_i = G_A(pool_A_i),  B_i = G_B(pool_B_i),  s_i = alpha_i / r.
 * The lorahub method asks for A* = sum w_i A_i and s* B* = sum w_i s_i B_i.
 * Because the gathers are linear and shared,
 *     pool_A* = sum w_i pool_A_i
 *     pool_B* = sum w_i (s_i / s*) pool_B_i
 * give exactly G_A(pool_A*) = A* and G_B(pool_B*) = B*. We choose s* = 1
 * (lora_alpha* = r), as every composed output does, so
 *     pool_B* = sum w_i s_i pool_B_i,
 * and the result stays MoS-sized. Different routing has no such form
 * under lorahub semantics (sum w_i G_i(P_i) is not one gather): callers
 * materialize those modules and compose them as plain LoRA. */
#ifndef LH_MOS_COMPOSE_H
#define LH_MOS_COMPOSE_H

#include <stddef.h>
#include "lib/mos.h"
#include "lib/status.h"

/* out: a new MoS with mods[0]'s routing, lora_alpha = r. Refuses
 * (LH_ERR_UNSUPPORTED) modules whose routing differs from mods[0]'s. */
lh_status lh_compose_mos(const lh_mos *const *mods, size_t n, const double *w /* [n] */,
                         lh_mos **out, lh_error *err);

#endif

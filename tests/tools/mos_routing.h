/* tests/tools/mos_routing.h - MoS's static random routing (arXiv 2410.00938),
 * shared by the MoS test, benchmark and fixture generator so that all three
 * build their index tables the same way. */
#ifndef LH_TESTS_MOS_ROUTING_H
#define LH_TESTS_MOS_ROUTING_H

#include <stdint.h>
#include <stdlib.h>

#include "lib/mos.h"

/* Fills every idx_A and idx_B table of m ([num_layers, r, l] per type):
 * row-major, the first (r - p) * l entries of a layer's table are distinct
 * public shards drawn from [0, P0), P0 = N - num_layers * p * l (a partial
 * Fisher-Yates shuffle), the last p * l are layer i's private block
 * P0 + i * p * l + [0, p * l). next(state) is the caller's random stream, so
 * the routing depends on that stream alone. Returns 0, or -1 when out of
 * memory. */
static inline int mos_fill_random_routing(lh_mos *m, uint64_t (*next)(void *), void *state)
{
    const int L = m->num_layers, r = m->r, l = m->l, p = m->private_rank;
    for (size_t ti = 0; ti < m->n_types; ti++) {
        lh_mos_type *t = &m->types[ti];
        const int p0 = t->n_shards - L * p * l;
        int32_t *perm = malloc((size_t)p0 * sizeof *perm); /* [P0] */
        if (!perm)
            return -1;
        for (int i = 0; i < L; i++)
            for (int ab = 0; ab < 2; ab++) {
                int32_t *idx = (ab ? t->idx_B : t->idx_A) + (size_t)i * r * l;
                for (int q = 0; q < p0; q++)
                    perm[q] = q;
                for (int q = 0; q < (r - p) * l; q++) {
                    int j = q + (int)(next(state) % (uint64_t)(p0 - q));
                    int32_t tmp = perm[q];
                    perm[q] = perm[j];
                    perm[j] = tmp;
                    idx[q] = perm[q];
                }
                for (int q = 0; q < p * l; q++)
                    idx[(r - p) * l + q] = p0 + i * p * l + q;
            }
        free(perm);
    }
    return 0;
}

#endif

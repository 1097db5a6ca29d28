/* adapt/optim/rng.h - a small seeded random generator that gives the same stream
 * on every machine.
 *
 * xoshiro256** (Blackman & Vigna) seeded through splitmix64, so any 64-bit
 * seed (including 0) gives a well-mixed state. libc rand() is avoided: its
 * algorithm differs between C libraries, and the optimizers promise that a
 * seed replays the same trajectory (search --resume relies on it).
 *
 * Normal deviates use Marsaglia's polar method, which needs only +, *, sqrt
 * (correctly rounded by IEEE 754) and log; glibc's log is accurate to well
 * under one ulp, so streams agree across x86-64/aarch64 glibc builds. */
#ifndef LH_RNG_H
#define LH_RNG_H

#include <stdint.h>

typedef struct lh_rng {
    uint64_t s[4];     /* xoshiro256** state, never all zero */
    double spare;      /* second deviate of the last polar pair */
    int has_spare;
} lh_rng;

void lh_rng_seed(lh_rng *r, uint64_t seed);
uint64_t lh_rng_next(lh_rng *r);
/* Uniform in [0, 1), 53 random bits. */
double lh_rng_uniform(lh_rng *r);
/* Standard normal N(0, 1). */
double lh_rng_normal(lh_rng *r);

#endif

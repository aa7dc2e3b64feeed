/* rng.h: a deterministic random generator (xoshiro256** seeded by splitmix64). Identical
 * streams on every machine: integer arithmetic only, floats built from the top bits. */
#ifndef CG_RNG_H
#define CG_RNG_H

#include <stdint.h>

typedef struct {
    uint64_t s[4];
} cg_rng;

void cg_rng_seed(cg_rng *r, uint64_t seed);
/* A child stream for (seed, stream id): independent streams for independent purposes. */
void cg_rng_seed2(cg_rng *r, uint64_t seed, uint64_t stream);
uint64_t cg_rng_u64(cg_rng *r);
/* Uniform in [0, n), unbiased. */
uint32_t cg_rng_below(cg_rng *r, uint32_t n);
/* Uniform float in [0, 1) with 24 bits. */
float cg_rng_float(cg_rng *r);
/* Standard normal (Box–Muller; uses libm, so only for training init, not for world data). */
float cg_rng_normal(cg_rng *r);
/* Fisher–Yates shuffle of an int array. */
void cg_rng_shuffle(cg_rng *r, int *a, int n);

#endif

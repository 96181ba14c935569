/* kv_rng.h — a small seeded pseudo-random generator (xoshiro256**, seeded by splitmix64).
 *
 * Used where GSL must not be a dependency (the kernel harness, the synthetic Q/K/V writer, which
 * also run on the GPU machine). Streams are reproducible across platforms for the same seed.
 * The simulator and trace generator use GSL's generators instead.
 */
#ifndef KV_RNG_H
#define KV_RNG_H

#include <stdint.h>

typedef struct kv_rng {
  uint64_t s[4];
} kv_rng;

void kv_rng_seed(kv_rng *r, uint64_t seed);
uint64_t kv_rng_u64(kv_rng *r);
/* Uniform in [0, 1) with 53 random bits. */
double kv_rng_uniform(kv_rng *r);
/* Uniform integer in [0, n); n > 0. Unbiased (rejection). */
uint64_t kv_rng_below(kv_rng *r, uint64_t n);
/* Standard normal (Box-Muller; one value per call, deterministic). */
double kv_rng_normal(kv_rng *r);

#endif /* KV_RNG_H */

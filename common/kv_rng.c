#include "kv_rng.h"

#include <math.h>

static uint64_t kv__rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t kv__splitmix64(uint64_t *x) {
  uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

void kv_rng_seed(kv_rng *r, uint64_t seed) {
  uint64_t x = seed;
  for (int i = 0; i < 4; i++) r->s[i] = kv__splitmix64(&x);
}

uint64_t kv_rng_u64(kv_rng *r) {
  uint64_t *s = r->s;
  const uint64_t result = kv__rotl(s[1] * 5, 7) * 9;
  const uint64_t t = s[1] << 17;
  s[2] ^= s[0];
  s[3] ^= s[1];
  s[1] ^= s[2];
  s[0] ^= s[3];
  s[2] ^= t;
  s[3] = kv__rotl(s[3], 45);
  return result;
}

double kv_rng_uniform(kv_rng *r) { return (double)(kv_rng_u64(r) >> 11) * 0x1.0p-53; }

uint64_t kv_rng_below(kv_rng *r, uint64_t n) {
  uint64_t limit = UINT64_MAX - UINT64_MAX % n;
  uint64_t x;
  do x = kv_rng_u64(r);
  while (x >= limit);
  return x % n;
}

double kv_rng_normal(kv_rng *r) {
  double u1 = kv_rng_uniform(r);
  double u2 = kv_rng_uniform(r);
  if (u1 < 1e-300) u1 = 1e-300;
  return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

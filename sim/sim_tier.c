#include "sim_tier.h"

#include <assert.h>

const char *const sim_tier_names[SIM_TIER_COUNT] = {"hbm", "dram", "ssd"};

void sim_tier_init(sim_tier *t, const char *name, int64_t capacity) {
  t->name = name;
  t->capacity = capacity < 0 ? 0 : capacity;
  t->used = t->peak = t->bytes_in = t->bytes_out = 0;
}

int sim_tier_alloc(sim_tier *t, int64_t bytes) {
  assert(bytes >= 0);
  if (bytes > t->capacity - t->used) return KV_ERANGE;
  t->used += bytes;
  t->bytes_in += bytes;
  if (t->used > t->peak) t->peak = t->used;
  return 0;
}

void sim_tier_release(sim_tier *t, int64_t bytes) {
  assert(bytes >= 0 && bytes <= t->used && "tier released more bytes than it holds");
  t->used -= bytes;
  t->bytes_out += bytes;
}

int sim_tier_check(const sim_tier *t, int64_t expected_used, kv_error *err) {
  if (t->used < 0 || t->used > t->capacity) {
    return kv_error_set(err, KV_ESTATE, "tier %s: %lld bytes used of %lld", t->name,
                        (long long)t->used, (long long)t->capacity);
  }
  if (t->used != t->bytes_in - t->bytes_out) {
    return kv_error_set(err, KV_ESTATE, "tier %s: used %lld != in %lld - out %lld", t->name,
                        (long long)t->used, (long long)t->bytes_in, (long long)t->bytes_out);
  }
  if (expected_used >= 0 && t->used != expected_used) {
    return kv_error_set(err, KV_ESTATE, "tier %s: %lld bytes used but its contents sum to %lld",
                        t->name, (long long)t->used, (long long)expected_used);
  }
  return 0;
}

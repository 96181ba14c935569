/* sim_tier.h — byte accounting of one memory tier (HBM KV space, HBM cache, DRAM, SSD).
 *
 * Invariant (checked by sim_tier_check): 0 <= used <= capacity and
 * used == bytes_in - bytes_out, i.e. bytes are conserved: every byte that entered the tier has
 * either left it or is still there. Callers compare `used` with the sum of what they believe
 * the tier holds (units, reservations) at the end of a run.
 */
#ifndef SIM_TIER_H
#define SIM_TIER_H

#include <stdint.h>

#include "kv_err.h"

typedef enum sim_tier_id {
  SIM_TIER_HBM = 0,   /* the HBM cache region (between turns) */
  SIM_TIER_DRAM,
  SIM_TIER_SSD,
  SIM_TIER_COUNT
} sim_tier_id;

extern const char *const sim_tier_names[SIM_TIER_COUNT]; /* "hbm", "dram", "ssd" */

typedef struct sim_tier {
  const char *name;
  int64_t capacity;   /* bytes; a tier with capacity 0 is disabled */
  int64_t used;
  int64_t peak;
  int64_t bytes_in, bytes_out;
} sim_tier;

void sim_tier_init(sim_tier *t, const char *name, int64_t capacity);
static inline int64_t sim_tier_free_bytes(const sim_tier *t) { return t->capacity - t->used; }
/* Takes `bytes` (>= 0); KV_ERANGE (nothing taken) when they do not fit. */
int sim_tier_alloc(sim_tier *t, int64_t bytes);
/* Returns `bytes` (asserts that they were taken). */
void sim_tier_release(sim_tier *t, int64_t bytes);
/* Checks the invariant and, when expected_used >= 0, that used == expected_used. */
int sim_tier_check(const sim_tier *t, int64_t expected_used, kv_error *err);

#endif /* SIM_TIER_H */

/* sim_policy.h — cache replacement policies, registered by name and chosen in the experiment
 * config ([cache] eviction = lru | fifo | sa | opt).
 *
 * A policy orders the evictable units of a tier by a two-part key (k0, k1); the store evicts
 * (demotes to the next tier, or drops from the last one) the unit with the smallest key, ties
 * broken by the unit's access sequence. A policy may also forbid dropping a unit (it can then
 * only be demoted). Pinned units (in use by a running job) and units with a transfer in flight
 * are not evictable.
 *
 *   lru   least recently used: (0, last access sequence)
 *   fifo  first in, first out: (0, insertion sequence); accesses do not reorder
 *   opt   Belady: farthest next use first, (-(next use), 0); next use comes from the trace
 *         (future knowledge); units never used again go first
 *   sa    CachedAttention's scheduler-aware eviction: units whose session has a job inside the
 *         look-ahead eviction window are protected, (1, -queue position): they are demoted
 *         only after every unprotected unit (0, last access), the one nearest the window's
 *         tail first, and are never dropped. The engine sets the queue positions.
 */
#ifndef SIM_POLICY_H
#define SIM_POLICY_H

#include <stdint.h>

struct sim_unit;

typedef struct sim_policy {
  const char *name;
  const char *desc;
  int uses_queue;    /* keys depend on job-queue positions */
  int uses_future;   /* keys depend on next-use times */
  void (*key)(const struct sim_unit *u, int64_t key[2]);
  int (*may_drop)(const struct sim_unit *u);
} sim_policy;

/* Policy names in registry order, NULL-terminated (for kv_config_enum). */
extern const char *const sim_policy_names[];
/* The policy with that index in sim_policy_names. */
const sim_policy *sim_policy_get(int index);
/* By name (case-sensitive); NULL when unknown. */
const sim_policy *sim_policy_find(const char *name);

#endif /* SIM_POLICY_H */

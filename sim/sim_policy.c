/* sim_policy.c — the registry of cache replacement policies (sim_policy.h).
 *
 * Adding a policy touches exactly: this registry (its key function and may_drop below, a row in
 * sim__policies and its name at the same place in sim_policy_names), nothing in the store or the
 * engines (they call the row's functions and read its uses_queue / uses_future flags), and its
 * test (its victim order in tests/sim/test_store.c). [cache] eviction = <name> then selects it in
 * both engines (sim_config.h; the replay engine refuses a policy that uses the job queue). */
#include "sim_policy.h"

#include <string.h>

#include "sim_store.h"

static void sim__lru_key(const sim_unit *u, int64_t k[2]) {
  k[0] = 0;
  k[1] = u->access_seq;
}
static void sim__fifo_key(const sim_unit *u, int64_t k[2]) {
  k[0] = 0;
  k[1] = u->insert_seq;
}
static void sim__opt_key(const sim_unit *u, int64_t k[2]) {
  k[0] = -u->next_use; /* next_use = INT64_MAX (never) gives the smallest key */
  k[1] = 0;
}
static void sim__sa_key(const sim_unit *u, int64_t k[2]) {
  if (u->qpos >= 0) {
    k[0] = 1;
    k[1] = -u->qpos;
  } else {
    k[0] = 0;
    k[1] = u->access_seq;
  }
}
static int sim__always(const sim_unit *u) {
  (void)u;
  return 1;
}
static int sim__sa_may_drop(const sim_unit *u) { return u->qpos < 0; }

static const sim_policy sim__policies[] = {
    {"lru", "least recently used", 0, 0, sim__lru_key, sim__always},
    {"fifo", "first in, first out", 0, 0, sim__fifo_key, sim__always},
    {"sa", "scheduler-aware (look-ahead eviction window)", 1, 0, sim__sa_key, sim__sa_may_drop},
    {"opt", "Belady (farthest next use, future knowledge)", 0, 1, sim__opt_key, sim__always},
};

const char *const sim_policy_names[] = {"lru", "fifo", "sa", "opt", NULL};

const sim_policy *sim_policy_get(int index) {
  if (index < 0 || index >= (int)(sizeof sim__policies / sizeof sim__policies[0])) return NULL;
  return &sim__policies[index];
}

const sim_policy *sim_policy_find(const char *name) {
  for (size_t i = 0; i < sizeof sim__policies / sizeof sim__policies[0]; i++) {
    if (strcmp(sim__policies[i].name, name) == 0) return &sim__policies[i];
  }
  return NULL;
}

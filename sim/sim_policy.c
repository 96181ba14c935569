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

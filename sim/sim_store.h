/* sim_store.h — the KV store over the cache tiers (HBM cache, DRAM, SSD): units of KV placed in
 * exactly one tier, looked up by key, evicted by a policy (sim_policy.h), demoted down the tier
 * chain, expired by TTL.
 *
 * Granularity (the caller chooses keys and sizes):
 *   session  one unit per session, key = session index, tokens = the session's cached context
 *            (CachedAttention: a session's KV is used entirely or not at all);
 *   block    one unit per prefix block, key = the block's prefix hash (vLLM / Mooncake), tokens =
 *            the block size; a request hits the longest run of leading blocks present.
 *
 * Tiers: an ordered chain of the enabled tiers (capacity > 0) among HBM cache, DRAM, SSD.
 * New KV enters the first enabled tier. Making room in tier t evicts the policy's victim: it is
 * demoted to the next enabled tier when there is one (making room there, recursively) and
 * dropped otherwise, or when the next tier has no room and the policy allows a drop.
 *
 * Transfers: a demotion or prefetch is a flow on the link model over the route between the
 * tiers (sim_store_route). Space accounting is immediate: the source's bytes are released and
 * the destination's taken when the transfer starts; the data in flight sits in a staging
 * buffer of stage_cap bytes (host memory for DMA). A demotion that does not fit in the staging
 * buffer cannot start, so its victim is dropped instead (when the policy allows): when the
 * lower tier's write bandwidth cannot keep up, KV is lost rather than queued without bound.
 * The unit is `busy` until its last byte arrives, and a busy unit is neither evictable nor
 * readable; on arrival the store calls on_ready(ctx, unit). Without a network (net == NULL:
 * the trace-order replay), moves complete at once.
 *
 * Inclusive last tier (`inclusive`, default on): when a unit moves up out of the last enabled
 * tier (an SSD -> DRAM fetch or prefetch), its copy there stays valid and keeps its space as the
 * unit's `shadow` bytes; the unit may grow above (new turns append KV) while the shadow still
 * holds its old prefix. Demoting it again writes only the bytes the shadow lacks; shrinking it
 * (truncation) or dropping it discards the shadow. When the last tier needs room, shadows are
 * discarded first (nothing is lost: the unit lives above), then victims are evicted. Without
 * this a session fetched for every turn is rewritten in full to SSD at every demotion.
 *
 * Invariants (sim_store_check): every tier's used bytes == the sum of the bytes of the units in
 * it, plus, for the last enabled tier, the shadows of the units above it (bytes conserved per
 * tier); evictable units are exactly the live, unpinned, idle ones.
 */
#ifndef SIM_STORE_H
#define SIM_STORE_H

#include <stdint.h>

#include "kv_err.h"
#include "sim_link.h"
#include "sim_policy.h"
#include "sim_slots.h"
#include "sim_tier.h"

typedef enum sim_store_kind { SIM_STORE_SESSION = 0, SIM_STORE_BLOCK } sim_store_kind;
extern const char *const sim_store_kind_names[]; /* "session", "block", NULL */

/* Links the store and engine use; roles index sim_store.link. SIM_LINK_SSD is the SSD array's
 * shared budget: every SSD read and write also crosses it, so reads and writes together move at
 * most its bandwidth ([links] ssd_mixed_gbs; the default, read + write, never binds). A role
 * whose link is -1 is left out of routes. */
typedef enum sim_link_role {
  SIM_LINK_H2D = 0,
  SIM_LINK_D2H,
  SIM_LINK_SSD_READ,
  SIM_LINK_SSD_WRITE,
  SIM_LINK_SSD,
  SIM_LINK_ROLE_COUNT
} sim_link_role;

#define SIM_QPOS_ANY 0

/* Locations for routes: the three tiers plus the running jobs' KV space in HBM. */
#define SIM_LOC_GPU SIM_TIER_COUNT

typedef struct sim_unit {
  uint64_t key;
  int64_t tokens;
  int64_t bytes;
  int64_t last_access_ns;
  int64_t access_seq;     /* store-wide counter at the last access */
  int64_t insert_seq;     /* ... at creation */
  int64_t next_use;       /* OPT: time (or index) of the next use; INT64_MAX = never */
  int64_t qpos;           /* SA: queue sequence of the session's job inside the window, or -1 */
  int64_t k0, k1;         /* policy key while evictable */
  int32_t tier;           /* sim_tier_id; -1 for a free slot */
  int32_t pins;           /* running jobs using it */
  int32_t busy;           /* transfers in flight */
  int32_t heap_pos;       /* index in its tier's heap, -1 when not evictable */
  int32_t hnext;          /* hash chain */
  int32_t waiter;         /* caller's id waiting for the unit to settle, -1 none */
  int64_t moved_from;     /* tier the last move came from (for statistics), -1 none */
  int32_t flags;          /* free for the caller (the engine marks prefetches) */
  int64_t staged;         /* bytes held in the staging buffer by its transfer */
  int64_t shadow;         /* bytes of a valid copy in the last enabled tier while the unit lives
                             above it (inclusive last tier); 0 otherwise */
} sim_unit;

typedef void (*sim_store_ready_fn)(void *ctx, int32_t unit);

typedef struct sim_store {
  sim_store_kind kind;
  const sim_policy *pol;
  sim_tier tiers[SIM_TIER_COUNT];
  int64_t bytes_per_token;
  int64_t ttl_ns;                 /* 0: none */
  sim_slots pool;                 /* unit records (sim_slots.h); free ones chained by hnext */
  sim_unit *u;                    /* (cap_u) = pool.items, refreshed when the pool grows */
  int32_t cap_u;
  int64_t n_live;
  int32_t *buckets;
  int64_t n_buckets;
  int32_t *heap[SIM_TIER_COUNT];  /* evictable units per tier, min-heap by policy key */
  int32_t n_heap[SIM_TIER_COUNT], cap_heap[SIM_TIER_COUNT];
  int64_t seq;
  int64_t stage_cap, stage_used;  /* staging buffer for demotions in flight (bytes) */
  sim_net *net;                   /* borrowed, may be NULL */
  int32_t link[SIM_LINK_ROLE_COUNT];
  int64_t *stats;                 /* sim_stats.v, borrowed, may be NULL */
  sim_store_ready_fn on_ready;
  void *ready_ctx;
  int failed;                     /* allocation failure inside an event */
  int inclusive;                  /* keep shadows in the last tier (see above); default 1 */
  int64_t shadow_bytes;           /* sum of the shadows */
  int32_t moving;                 /* unit being moved into the last tier: its shadow is kept */
  int no_drop;                    /* > 0 while making room for a move: demote, never drop */
} sim_store;

/* capacity[t] = bytes of tier t (0 disables it). net/link may be NULL (instant moves). */
int sim_store_init(sim_store *s, sim_store_kind kind, const sim_policy *pol,
                   const int64_t capacity[SIM_TIER_COUNT], int64_t bytes_per_token,
                   int64_t ttl_ns, sim_net *net, const int32_t *link, int64_t *stats,
                   kv_error *err);
void sim_store_free(sim_store *s);

/* First enabled tier (where new KV goes), or -1 when none. */
int sim_store_top_tier(const sim_store *s);
/* Next enabled tier after t, or -1. */
int sim_store_next_tier(const sim_store *s, int t);

/* Links between two locations (tiers or SIM_LOC_GPU); returns the count (0: same memory). */
int sim_store_route(const sim_store *s, int from, int to, int32_t route[SIM_ROUTE_MAX]);
/* Adds `bytes` to the statistics of every link on the route. */
void sim_store_count_route(sim_store *s, const int32_t *route, int n, int64_t bytes);

/* Unit by key, or -1. Expired units (TTL) are dropped here and reported as absent. */
int32_t sim_store_find(sim_store *s, uint64_t key, int64_t now);
static inline sim_unit *sim_store_unit(sim_store *s, int32_t i) { return &s->u[i]; }

/* Creates a unit of `tokens` in the first enabled tier at or below `tier`, making room.
 * Returns its index, or KV_ERANGE when nothing can hold it (no unit is created), or KV_ENOMEM.
 * The key must be absent. `qpos_limit`: see sim_store_make_room. */
int32_t sim_store_create(sim_store *s, uint64_t key, int64_t tokens, int tier, int64_t now,
                         int64_t qpos_limit);
/* Changes a unit's size in place (growth makes room in its tier). KV_ERANGE when it cannot
 * grow (the unit is unchanged). */
int sim_store_resize(sim_store *s, int32_t i, int64_t tokens, int64_t qpos_limit);
/* Discards unit i's shadow in the last tier (its space is freed). */
void sim_store_drop_shadow(sim_store *s, int32_t i);
/* Removes a unit (must not be pinned or busy). `stat` is the counter to bump (SIM_STAT_* or -1). */
void sim_store_drop(sim_store *s, int32_t i, int stat);

/* Marks an access (LRU order, TTL clock). */
void sim_store_touch(sim_store *s, int32_t i, int64_t now);
void sim_store_pin(sim_store *s, int32_t i);
void sim_store_unpin(sim_store *s, int32_t i);
void sim_store_set_qpos(sim_store *s, int32_t i, int64_t qpos);
void sim_store_set_next_use(sim_store *s, int32_t i, int64_t next_use);

/* Makes `bytes` free in tier t by evicting. `qpos_limit` is the requester's queue sequence:
 * protected victims with qpos < qpos_limit (jobs nearer the queue head than the requester) are
 * not taken (only with a queue-aware policy). SIM_QPOS_ANY (0) takes any victim in policy
 * order. Returns 0 or KV_ERANGE (some victims may have moved). */
int sim_store_make_room(sim_store *s, int t, int64_t bytes, int64_t qpos_limit);

/* Moves a unit to tier dst (making room there): with flow = 1 as a transfer over the route
 * (the unit is busy until it arrives), with flow = 0 as accounting only (the bytes travel
 * with a transfer the caller makes). Making room for a move never drops a cached unit: victims
 * are only demoted, so a fetch or prefetch cannot destroy other KV (when demotion is not
 * possible, e.g. the staging buffer is full, the move fails). KV_ERANGE when dst has no room
 * (unit unchanged). */
int sim_store_move(sim_store *s, int32_t i, int dst, int flow, int64_t qpos_limit);

/* A transfer into or out of the unit's data begins / ends (a save written by the caller):
 * the unit is busy, hence not evictable or readable, in between; the last end calls
 * on_ready. */
void sim_store_busy_begin(sim_store *s, int32_t i);
void sim_store_busy_end(sim_store *s, int32_t i);

/* Drops every expired, idle unit (TTL sweep). Returns the number dropped. */
int64_t sim_store_expire(sim_store *s, int64_t now);

/* Checks the invariants above. */
int sim_store_check(const sim_store *s, kv_error *err);

#endif /* SIM_STORE_H */

/* sim_link.h — links as fluid resources (the SimGrid model): a transfer is an action with a
 * remaining byte count whose rate is recomputed whenever the set of active transfers changes;
 * the simulator jumps from one completion (or activation) to the next, never per byte.
 *
 * Model:
 *   - A link has a bandwidth B (bytes/s) and a latency (ns).
 *   - A flow crosses a route of 1..SIM_ROUTE_MAX links (e.g. SSD read then H2D for a load from
 *     SSD through a DRAM staging buffer, pipelined). It is inactive for the sum of its links'
 *     latencies, then active until its bytes are delivered.
 *   - Rates of active flows are the max-min fair allocation (progressive filling): every link's
 *     capacity is shared equally among the flows that it bottlenecks, a flow never exceeds its
 *     own cap (bytes/s; 0 = none), and capacity a flow cannot use is given to the others.
 *   - Between changes the rates are constant, so each flow's completion time is exact
 *     (rounded up to the next ns). An unloaded flow of b bytes over a link (B, lat) takes
 *     lat + ceil(b / B * 1e9) ns; n equal flows started together on one link all take
 *     lat + ceil(n * b / B * 1e9) ns (tests/sim/test_link.c).
 *
 * The network keeps one pending event (the earliest completion or activation); any change
 * cancels it lazily and schedules a new one. Completion callbacks run after the flow is
 * removed and rates are recomputed; they may start new flows.
 */
#ifndef SIM_LINK_H
#define SIM_LINK_H

#include <stdint.h>

#include "sim_event.h"
#include "sim_slots.h"

#define SIM_ROUTE_MAX 3
#define SIM_LINK_NAME_MAX 32

typedef struct sim_link {
  char name[SIM_LINK_NAME_MAX];
  double bw;              /* bytes/s */
  int64_t latency_ns;
  double bytes_done;      /* bytes delivered over this link so far */
  int64_t busy_ns;        /* time with at least one active flow */
  /* scratch for the rate computation */
  double cap_left;
  int n_unfrozen;
  int n_active;
} sim_link;

typedef void (*sim_flow_fn)(void *ctx, int64_t arg);

typedef struct sim_flow {
  int32_t links[SIM_ROUTE_MAX];
  int32_t n_links;
  int32_t active;         /* latency elapsed */
  int32_t frozen;         /* scratch */
  double bytes;           /* total */
  double remaining;
  double rate;            /* bytes per ns, current */
  double cap;             /* bytes per ns; 0 = none */
  int64_t start_ns, active_at_ns;
  sim_flow_fn fn;
  void *ctx;
  int64_t arg;
  int64_t gen;            /* generation; a handle names (slot, gen) */
  int32_t next;           /* active list / free list */
  int32_t prev;
} sim_flow;

typedef struct sim_flow_id {
  int32_t slot;
  int64_t gen;
} sim_flow_id;

typedef struct sim_net {
  sim_events *ev;
  sim_link *links;
  int32_t n_links, cap_links;
  sim_slots pool;         /* flow records (sim_slots.h); free ones chained by next */
  sim_flow *flows;        /* (cap_flows) = pool.items, refreshed when the pool grows */
  int32_t cap_flows, live_head, live_tail;  /* live: started, not finished */
  int32_t n_live;
  int64_t gen;
  int64_t last_update_ns;
  sim_event_id pending;
  int in_callback;
  int64_t n_started, n_finished, n_rate_updates;
  int failed;             /* an allocation failed inside an event (reported by sim_net_check) */
} sim_net;

/* The network schedules its events on `ev` (borrowed; must outlive the network). */
void sim_net_init(sim_net *net, sim_events *ev);
void sim_net_free(sim_net *net);

/* Adds a link; returns its id (>= 0) or a negative status (bandwidth must be > 0 and finite,
 * latency >= 0). */
int sim_net_add_link(sim_net *net, const char *name, double bw_bytes_per_s, int64_t latency_ns,
                     kv_error *err);

/* Starts a flow of `bytes` (> 0) over `route` (n links, distinct ids) at the current time,
 * capped at cap_bytes_per_s (0 = uncapped). fn(ctx, arg) runs when the last byte arrives.
 * Returns 0 and fills *id (may be NULL), or a negative status. A flow of 0 bytes is invalid:
 * callers skip empty transfers. */
int sim_net_start(sim_net *net, const int32_t *route, int n, double bytes, double cap_bytes_per_s,
                  sim_flow_fn fn, void *ctx, int64_t arg, sim_flow_id *id, kv_error *err);

/* Current rate (bytes/s) and remaining bytes of a live flow (both 0 for a stale handle). */
double sim_net_rate(const sim_net *net, sim_flow_id id);
double sim_net_remaining(sim_net *net, sim_flow_id id);

/* Number of live flows and of flows on one link. */
int sim_net_n_live(const sim_net *net);

/* Brings every link's bytes_done / busy_ns up to the current time (for statistics). */
void sim_net_sync(sim_net *net);

/* KV_ENOMEM when an allocation failed inside an event handler, else 0. */
int sim_net_check(const sim_net *net, kv_error *err);

#endif /* SIM_LINK_H */

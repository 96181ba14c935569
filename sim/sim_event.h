/* sim_event.h — the discrete-event kernel: integer-nanosecond time, one total event order, lazy
 * cancellation, and the invariants of both checked.
 *
 * Order (defined here, once, by sim_event_before, and tested in tests/sim/test_event.c):
 *   event a fires before event b  <=>  (a.time, a.seq) < (b.time, b.seq) lexicographically,
 * where seq is a counter incremented at every sim_event_schedule call. Hence events due at the
 * same nanosecond fire in the order they were scheduled (FIFO), and the order is total: no two
 * events share a seq. Nothing else (callback, pointer values) influences the order, which makes
 * runs reproducible bit for bit.
 *
 * Invariants (asserted; they are bugs, not input errors):
 *   - time never goes backwards: an event may not be scheduled before `now`, and the fired
 *     event's time is >= the previous one's;
 *   - scheduled == fired + cancelled + pending at every moment (sim_event_check).
 *
 * Cancellation is lazy (as in ns-3): sim_event_cancel marks the slot; the heap entry stays until
 * it reaches the top and is then dropped without firing. A handle names (slot, seq), so a stale
 * handle (event already fired or cancelled) is recognised and ignored.
 *
 * The callback runs with `now` set to the event's time; it may schedule and cancel events.
 */
#ifndef SIM_EVENT_H
#define SIM_EVENT_H

#include <stdint.h>

#include "kv_err.h"
#include "sim_slots.h"

#define SIM_TIME_MAX INT64_MAX

typedef void (*sim_event_fn)(void *ctx, int64_t arg);

/* Handle of a scheduled event. {0, -1} (SIM_EVENT_NONE) names no event. */
typedef struct sim_event_id {
  int64_t seq;
  int32_t slot;
} sim_event_id;

#define SIM_EVENT_NONE ((sim_event_id){0, -1})

/* Heap entry: the key of the order plus the slot that holds the payload. */
typedef struct sim_event_key {
  int64_t time;   /* ns */
  int64_t seq;
  int32_t slot;
} sim_event_key;

/* The one definition of the event order. */
static inline int sim_event_before(const sim_event_key *a, const sim_event_key *b) {
  return a->time < b->time || (a->time == b->time && a->seq < b->seq);
}

typedef struct sim_event_slot {
  sim_event_fn fn;
  void *ctx;
  int64_t arg;
  int64_t seq;        /* seq of the event occupying the slot; -1 when free */
  int32_t cancelled;
  int32_t next_free;
} sim_event_slot;

typedef struct sim_events {
  int64_t now;                 /* ns; time of the event being fired (or last fired) */
  int64_t seq;                 /* next sequence number */
  sim_event_key *heap;         /* (n_heap) min-heap by sim_event_before */
  int64_t n_heap, cap_heap;
  sim_slots pool;              /* payload records (sim_slots.h); free ones chained by next_free */
  sim_event_slot *slots;       /* (cap_slots) = pool.items, refreshed when the pool grows */
  int32_t cap_slots;
  int64_t n_scheduled, n_fired, n_cancelled;
  int64_t n_pending;           /* scheduled, not yet fired or cancelled */
  int64_t last_fired_time;
} sim_events;

void sim_events_init(sim_events *ev);
void sim_events_free(sim_events *ev);

/* Schedules fn(ctx, arg) at absolute time `time` (>= now; asserted). Returns its handle, or
 * SIM_EVENT_NONE with err set (KV_ENOMEM) when memory runs out. */
sim_event_id sim_event_schedule(sim_events *ev, int64_t time, sim_event_fn fn, void *ctx,
                                int64_t arg, kv_error *err);
/* Cancels a pending event. Returns 1 when it was pending, 0 for a stale or NONE handle. */
int sim_event_cancel(sim_events *ev, sim_event_id id);
/* 1 when the handle names a pending (not fired, not cancelled) event. */
int sim_event_pending(const sim_events *ev, sim_event_id id);

/* Fires events in order until none is left or the next one is later than `until`
 * (SIM_TIME_MAX for all). Stops early, returning 1, when *stop becomes nonzero after an event
 * (stop may be NULL). Returns 0 when it ran out of events or reached `until`. */
int sim_events_run(sim_events *ev, int64_t until, const int *stop);

/* Fires the next event, if any. Returns 1 when one fired, 0 when none is pending. */
int sim_events_step(sim_events *ev);

/* Time of the next pending event (skipping cancelled ones), or SIM_TIME_MAX. */
int64_t sim_events_next_time(sim_events *ev);

/* Checks scheduled == fired + cancelled + pending and the heap order; 0 or KV_ESTATE. */
int sim_events_check(const sim_events *ev, kv_error *err);

#endif /* SIM_EVENT_H */

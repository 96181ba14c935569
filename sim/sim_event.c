#include "sim_event.h"

#include <assert.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

/* A never-used slot holds no event (seq -1), so no handle can name it. */
static void sim__slot_fresh(void *rec) { ((sim_event_slot *)rec)->seq = -1; }

void sim_events_init(sim_events *ev) {
  memset(ev, 0, sizeof *ev);
  sim_slots_init(&ev->pool, sizeof(sim_event_slot), offsetof(sim_event_slot, next_free), 256,
                 sim__slot_fresh);
  ev->last_fired_time = 0;
}

void sim_events_free(sim_events *ev) {
  free(ev->heap);
  sim_slots_free(&ev->pool);
  sim_events_init(ev);
}

static int sim__slot_alloc(sim_events *ev) {
  int32_t s = sim_slots_alloc(&ev->pool);
  ev->slots = ev->pool.items;
  ev->cap_slots = ev->pool.cap;
  return s;
}

static void sim__slot_release(sim_events *ev, int32_t s) {
  ev->slots[s].seq = -1;
  sim_slots_release(&ev->pool, s);
}

static void sim__sift_up(sim_event_key *h, int64_t i) {
  sim_event_key x = h[i];
  while (i > 0) {
    int64_t p = (i - 1) / 2;
    if (!sim_event_before(&x, &h[p])) break;
    h[i] = h[p];
    i = p;
  }
  h[i] = x;
}

static void sim__sift_down(sim_event_key *h, int64_t n, int64_t i) {
  sim_event_key x = h[i];
  for (;;) {
    int64_t c = 2 * i + 1;
    if (c >= n) break;
    if (c + 1 < n && sim_event_before(&h[c + 1], &h[c])) c++;
    if (!sim_event_before(&h[c], &x)) break;
    h[i] = h[c];
    i = c;
  }
  h[i] = x;
}

sim_event_id sim_event_schedule(sim_events *ev, int64_t time, sim_event_fn fn, void *ctx,
                                int64_t arg, kv_error *err) {
  assert(time >= ev->now && "an event may not be scheduled in the past");
  assert(fn);
  if (ev->n_heap == ev->cap_heap) {
    int64_t nc = ev->cap_heap ? ev->cap_heap * 2 : 256;
    sim_event_key *nh = realloc(ev->heap, (size_t)nc * sizeof *nh);
    if (!nh) {
      kv_error_set(err, KV_ENOMEM, "event queue: out of memory (%lld events)",
                   (long long)ev->n_heap);
      return SIM_EVENT_NONE;
    }
    ev->heap = nh;
    ev->cap_heap = nc;
  }
  int s = sim__slot_alloc(ev);
  if (s < 0) {
    kv_error_set(err, KV_ENOMEM, "event queue: out of memory (slots)");
    return SIM_EVENT_NONE;
  }
  int64_t seq = ev->seq++;
  sim_event_slot *sl = &ev->slots[s];
  sl->fn = fn;
  sl->ctx = ctx;
  sl->arg = arg;
  sl->seq = seq;
  sl->cancelled = 0;
  ev->heap[ev->n_heap] = (sim_event_key){time, seq, s};
  sim__sift_up(ev->heap, ev->n_heap);
  ev->n_heap++;
  ev->n_scheduled++;
  ev->n_pending++;
  return (sim_event_id){seq, s};
}

int sim_event_pending(const sim_events *ev, sim_event_id id) {
  if (id.slot < 0 || id.slot >= ev->cap_slots) return 0;
  const sim_event_slot *sl = &ev->slots[id.slot];
  return sl->seq == id.seq && !sl->cancelled;
}

int sim_event_cancel(sim_events *ev, sim_event_id id) {
  if (!sim_event_pending(ev, id)) return 0;
  ev->slots[id.slot].cancelled = 1;
  ev->n_cancelled++;
  ev->n_pending--;
  return 1;
}

/* Pops cancelled entries off the top; leaves the heap top live (or the heap empty). */
static void sim__drop_cancelled(sim_events *ev) {
  while (ev->n_heap > 0) {
    int32_t s = ev->heap[0].slot;
    if (!ev->slots[s].cancelled) return;
    sim__slot_release(ev, s);
    ev->heap[0] = ev->heap[--ev->n_heap];
    if (ev->n_heap) sim__sift_down(ev->heap, ev->n_heap, 0);
  }
}

int64_t sim_events_next_time(sim_events *ev) {
  sim__drop_cancelled(ev);
  return ev->n_heap ? ev->heap[0].time : SIM_TIME_MAX;
}

int sim_events_step(sim_events *ev) {
  sim__drop_cancelled(ev);
  if (ev->n_heap == 0) return 0;
  sim_event_key k = ev->heap[0];
  ev->heap[0] = ev->heap[--ev->n_heap];
  if (ev->n_heap) sim__sift_down(ev->heap, ev->n_heap, 0);
  assert(k.time >= ev->now && "time went backwards");
  assert(k.time >= ev->last_fired_time);
  ev->now = k.time;
  ev->last_fired_time = k.time;
  sim_event_slot sl = ev->slots[k.slot];
  sim__slot_release(ev, k.slot);
  ev->n_fired++;
  ev->n_pending--;
  sl.fn(sl.ctx, sl.arg);
  return 1;
}

int sim_events_run(sim_events *ev, int64_t until, const int *stop) {
  for (;;) {
    int64_t t = sim_events_next_time(ev);
    if (t == SIM_TIME_MAX || t > until) return 0;
    sim_events_step(ev);
    if (stop && *stop) return 1;
  }
}

int sim_events_check(const sim_events *ev, kv_error *err) {
  if (ev->n_scheduled != ev->n_fired + ev->n_cancelled + ev->n_pending) {
    return kv_error_set(err, KV_ESTATE,
                        "event engine: scheduled %lld != fired %lld + cancelled %lld + pending "
                        "%lld", (long long)ev->n_scheduled, (long long)ev->n_fired,
                        (long long)ev->n_cancelled, (long long)ev->n_pending);
  }
  int64_t live = 0;
  for (int64_t i = 0; i < ev->n_heap; i++) {
    if (i > 0 && sim_event_before(&ev->heap[i], &ev->heap[(i - 1) / 2])) {
      return kv_error_set(err, KV_ESTATE, "event engine: heap order broken at %lld",
                          (long long)i);
    }
    if (ev->heap[i].time < ev->now) {
      return kv_error_set(err, KV_ESTATE, "event engine: pending event in the past");
    }
    if (!ev->slots[ev->heap[i].slot].cancelled) live++;
  }
  if (live != ev->n_pending) {
    return kv_error_set(err, KV_ESTATE, "event engine: %lld live heap entries, %lld pending",
                        (long long)live, (long long)ev->n_pending);
  }
  return 0;
}

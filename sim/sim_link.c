#include "sim_link.h"

#include <assert.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A never-used flow record belongs to no transfer (gen -1: no handle names it). */
static void sim__flow_fresh(void *rec) { ((sim_flow *)rec)->gen = -1; }

void sim_net_init(sim_net *net, sim_events *ev) {
  memset(net, 0, sizeof *net);
  net->ev = ev;
  sim_slots_init(&net->pool, sizeof(sim_flow), offsetof(sim_flow, next), 64, sim__flow_fresh);
  net->live_head = -1;
  net->live_tail = -1;
  net->pending = SIM_EVENT_NONE;
  net->last_update_ns = ev->now;
}

void sim_net_free(sim_net *net) {
  if (net->ev) sim_event_cancel(net->ev, net->pending);
  free(net->links);
  sim_slots_free(&net->pool);
  memset(net, 0, sizeof *net);
}

int sim_net_add_link(sim_net *net, const char *name, double bw, int64_t latency_ns,
                     kv_error *err) {
  if (!(bw > 0) || !isfinite(bw)) {
    return kv_error_set(err, KV_EINVAL, "link %s: bandwidth %g B/s must be positive", name, bw);
  }
  if (latency_ns < 0) {
    return kv_error_set(err, KV_EINVAL, "link %s: negative latency", name);
  }
  if (net->n_links == net->cap_links) {
    int32_t nc = net->cap_links ? net->cap_links * 2 : 8;
    sim_link *nl = realloc(net->links, (size_t)nc * sizeof *nl);
    if (!nl) return kv_error_set(err, KV_ENOMEM, "link %s: out of memory", name);
    net->links = nl;
    net->cap_links = nc;
  }
  sim_link *l = &net->links[net->n_links];
  memset(l, 0, sizeof *l);
  snprintf(l->name, sizeof l->name, "%s", name);
  l->bw = bw;
  l->latency_ns = latency_ns;
  return net->n_links++;
}

/* Advances every active flow's remaining bytes and the links' counters to `now`. */
static void sim__net_advance(sim_net *net, int64_t now) {
  int64_t dt = now - net->last_update_ns;
  assert(dt >= 0);
  if (dt == 0) return;
  for (int32_t i = 0; i < net->n_links; i++) {
    if (net->links[i].n_active > 0) net->links[i].busy_ns += dt;
  }
  for (int32_t f = net->live_head; f >= 0; f = net->flows[f].next) {
    sim_flow *fl = &net->flows[f];
    if (!fl->active) continue;
    double d = fl->rate * (double)dt;
    if (d > fl->remaining) d = fl->remaining;
    fl->remaining -= d;
    for (int k = 0; k < fl->n_links; k++) net->links[fl->links[k]].bytes_done += d;
  }
  net->last_update_ns = now;
}

/* Max-min fair rates by progressive filling over the active flows. */
static void sim__net_rates(sim_net *net) {
  net->n_rate_updates++;
  for (int32_t i = 0; i < net->n_links; i++) {
    sim_link *l = &net->links[i];
    l->cap_left = l->bw * 1e-9;
    l->n_unfrozen = 0;
    l->n_active = 0;
  }
  int unfrozen = 0, simple = 1;
  for (int32_t f = net->live_head; f >= 0; f = net->flows[f].next) {
    sim_flow *fl = &net->flows[f];
    fl->rate = 0;
    fl->frozen = !fl->active;
    if (!fl->active) continue;
    unfrozen++;
    if (fl->n_links != 1 || fl->cap > 0) simple = 0;
    for (int k = 0; k < fl->n_links; k++) {
      net->links[fl->links[k]].n_unfrozen++;
      net->links[fl->links[k]].n_active++;
    }
  }
  if (simple) {
    /* every flow crosses one link, uncapped: max-min fairness is an equal split per link (the
     * general loop below gives the same rates, in more rounds) */
    for (int32_t f = net->live_head; f >= 0; f = net->flows[f].next) {
      sim_flow *fl = &net->flows[f];
      if (!fl->active) continue;
      sim_link *l = &net->links[fl->links[0]];
      fl->rate = l->cap_left / l->n_unfrozen;
      fl->frozen = 1;
    }
    return;
  }
  while (unfrozen > 0) {
    double m = INFINITY;
    for (int32_t i = 0; i < net->n_links; i++) {
      sim_link *l = &net->links[i];
      if (l->n_unfrozen > 0) {
        double s = l->cap_left / l->n_unfrozen;
        if (s < m) m = s;
      }
    }
    for (int32_t f = net->live_head; f >= 0; f = net->flows[f].next) {
      sim_flow *fl = &net->flows[f];
      if (!fl->frozen && fl->cap > 0 && fl->cap < m) m = fl->cap;
    }
    assert(isfinite(m));
    if (m < 0) m = 0;
    double lim = m * (1 + 1e-12);
    /* Mark bottleneck links before any capacity is taken, so that one round is symmetric. */
    int32_t *bott = NULL;
    int32_t bott_stack[16];
    bott = net->n_links <= 16 ? bott_stack : malloc((size_t)net->n_links * sizeof *bott);
    if (!bott) {
      net->failed = 1;
      return;
    }
    for (int32_t i = 0; i < net->n_links; i++) {
      sim_link *l = &net->links[i];
      bott[i] = l->n_unfrozen > 0 && l->cap_left / l->n_unfrozen <= lim;
    }
    for (int32_t f = net->live_head; f >= 0; f = net->flows[f].next) {
      sim_flow *fl = &net->flows[f];
      if (fl->frozen) continue;
      int hit = fl->cap > 0 && fl->cap <= lim;
      for (int k = 0; k < fl->n_links && !hit; k++) hit = bott[fl->links[k]];
      if (!hit) continue;
      fl->rate = m;
      fl->frozen = 1;
      unfrozen--;
      for (int k = 0; k < fl->n_links; k++) {
        sim_link *l = &net->links[fl->links[k]];
        l->cap_left -= m;
        if (l->cap_left < 0) l->cap_left = 0;
        l->n_unfrozen--;
      }
    }
    if (bott != bott_stack) free(bott);
  }
}

static int sim__flow_done(const sim_flow *fl) {
  double tol = fmax(1e-9 * fl->bytes, fl->rate * 1e-6);
  return fl->active && fl->remaining <= tol;
}

static void sim__net_event(void *ctx, int64_t arg);

/* Schedules the network's next event (earliest completion or activation). */
static void sim__net_reschedule(sim_net *net) {
  sim_event_cancel(net->ev, net->pending);
  net->pending = SIM_EVENT_NONE;
  int64_t now = net->ev->now;
  int64_t best = SIM_TIME_MAX;
  for (int32_t f = net->live_head; f >= 0; f = net->flows[f].next) {
    const sim_flow *fl = &net->flows[f];
    int64_t t;
    if (!fl->active) {
      t = fl->active_at_ns;
    } else if (fl->rate > 0) {
      double x = fl->remaining / fl->rate; /* ns */
      double c = ceil(x - 1e-7);
      if (c < 1) c = 1;
      t = c > 9e18 ? SIM_TIME_MAX : now + (int64_t)c;
    } else {
      continue; /* starved (a zero-capacity share); woken by the next change */
    }
    if (t < best) best = t;
  }
  if (best == SIM_TIME_MAX) return;
  kv_error e = {0};
  net->pending = sim_event_schedule(net->ev, best, sim__net_event, net, 0, &e);
  if (net->pending.slot < 0) net->failed = 1;
}

static void sim__unlink(sim_net *net, int32_t f) {
  sim_flow *fl = &net->flows[f];
  if (fl->prev >= 0) net->flows[fl->prev].next = fl->next;
  else net->live_head = fl->next;
  if (fl->next >= 0) net->flows[fl->next].prev = fl->prev;
  else net->live_tail = fl->prev;
  fl->gen = -1;
  sim_slots_release(&net->pool, f);
  net->n_live--;
}

typedef struct {
  sim_flow_fn fn;
  void *ctx;
  int64_t arg;
} sim__cb;

static void sim__net_event(void *ctx, int64_t arg) {
  (void)arg;
  sim_net *net = ctx;
  net->pending = SIM_EVENT_NONE;
  int64_t now = net->ev->now;
  sim__net_advance(net, now);
  int changed = 0;
  for (int32_t f = net->live_head; f >= 0; f = net->flows[f].next) {
    sim_flow *fl = &net->flows[f];
    if (!fl->active && fl->active_at_ns <= now) {
      fl->active = 1;
      changed = 1;
    }
  }
  /* Collect finished flows in start order (the live list order), which is deterministic. */
  sim__cb stack_cb[32];
  sim__cb *cbs = stack_cb;
  int n_cb = 0, cap_cb = 32;
  for (int32_t f = net->live_head; f >= 0;) {
    int32_t nx = net->flows[f].next;
    sim_flow *fl = &net->flows[f];
    if (sim__flow_done(fl)) {
      for (int k = 0; k < fl->n_links; k++) net->links[fl->links[k]].bytes_done += fl->remaining;
      if (n_cb == cap_cb) {
        sim__cb *nc = malloc((size_t)cap_cb * 2 * sizeof *nc);
        if (!nc) {
          net->failed = 1;
          break;
        }
        memcpy(nc, cbs, (size_t)n_cb * sizeof *nc);
        if (cbs != stack_cb) free(cbs);
        cbs = nc;
        cap_cb *= 2;
      }
      cbs[n_cb++] = (sim__cb){fl->fn, fl->ctx, fl->arg};
      sim__unlink(net, f);
      net->n_finished++;
      changed = 1;
    }
    f = nx;
  }
  if (changed) sim__net_rates(net);
  sim__net_reschedule(net);
  for (int i = 0; i < n_cb; i++) cbs[i].fn(cbs[i].ctx, cbs[i].arg);
  if (cbs != stack_cb) free(cbs);
}

int sim_net_start(sim_net *net, const int32_t *route, int n, double bytes, double cap,
                  sim_flow_fn fn, void *ctx, int64_t arg, sim_flow_id *id, kv_error *err) {
  if (n < 1 || n > SIM_ROUTE_MAX) {
    return kv_error_set(err, KV_EINVAL, "flow: route of %d links (1..%d)", n, SIM_ROUTE_MAX);
  }
  if (!(bytes > 0) || !isfinite(bytes)) {
    return kv_error_set(err, KV_EINVAL, "flow: %g bytes (must be > 0)", bytes);
  }
  if (!(cap >= 0) || !isfinite(cap)) return kv_error_set(err, KV_EINVAL, "flow: bad cap %g", cap);
  int64_t lat = 0;
  for (int i = 0; i < n; i++) {
    if (route[i] < 0 || route[i] >= net->n_links) {
      return kv_error_set(err, KV_EINVAL, "flow: no link %d", route[i]);
    }
    for (int j = 0; j < i; j++) {
      if (route[j] == route[i]) return kv_error_set(err, KV_EINVAL, "flow: link repeated");
    }
    lat += net->links[route[i]].latency_ns;
  }
  int32_t f = sim_slots_alloc(&net->pool);
  if (f < 0) return kv_error_set(err, KV_ENOMEM, "flow: out of memory");
  net->flows = net->pool.items;
  net->cap_flows = net->pool.cap;
  int64_t now = net->ev->now;
  sim__net_advance(net, now);
  sim_flow *fl = &net->flows[f];
  memset(fl, 0, sizeof *fl);
  for (int i = 0; i < n; i++) fl->links[i] = route[i];
  fl->n_links = n;
  fl->bytes = bytes;
  fl->remaining = bytes;
  fl->cap = cap * 1e-9;
  fl->start_ns = now;
  fl->active_at_ns = now + lat;
  fl->active = lat == 0;
  fl->fn = fn;
  fl->ctx = ctx;
  fl->arg = arg;
  fl->gen = ++net->gen;
  /* append at the tail so that the live list stays in start order */
  fl->next = -1;
  fl->prev = -1;
  if (net->live_head < 0) {
    net->live_head = f;
  } else {
    net->flows[net->live_tail].next = f;
    fl->prev = net->live_tail;
  }
  net->live_tail = f;
  net->n_live++;
  net->n_started++;
  if (id) *id = (sim_flow_id){f, fl->gen};
  if (fl->active) sim__net_rates(net);
  sim__net_reschedule(net);
  return 0;
}

static const sim_flow *sim__get(const sim_net *net, sim_flow_id id) {
  if (id.slot < 0 || id.slot >= net->cap_flows) return NULL;
  const sim_flow *fl = &net->flows[id.slot];
  return fl->gen == id.gen ? fl : NULL;
}

double sim_net_rate(const sim_net *net, sim_flow_id id) {
  const sim_flow *fl = sim__get(net, id);
  return fl ? fl->rate * 1e9 : 0;
}

double sim_net_remaining(sim_net *net, sim_flow_id id) {
  sim__net_advance(net, net->ev->now);
  const sim_flow *fl = sim__get(net, id);
  return fl ? fl->remaining : 0;
}

int sim_net_n_live(const sim_net *net) { return net->n_live; }

void sim_net_sync(sim_net *net) { sim__net_advance(net, net->ev->now); }

int sim_net_check(const sim_net *net, kv_error *err) {
  if (net->failed) return kv_error_set(err, KV_ENOMEM, "link model: out of memory in an event");
  return 0;
}

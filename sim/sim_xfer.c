/* sim_xfer.c — the engine's transfers: loads, saves, prefetch (sim_xfer.h). */
#include "sim_xfer.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "sim_iter.h"
#include "sim_lookup.h"
#include "sim_sched.h"

/* ---- loading ------------------------------------------------------------------------------ */

static void sim__load_done(void *ctx, int64_t arg) {
  sim_eng *E = ctx;
  int32_t j = (int32_t)arg;
  sim_job *J = &E->jobs[j];
  assert(J->load_inflight > 0);
  if (--J->load_inflight > 0) return;
  /* without pre-loading the prefill starts only when every layer has arrived */
  J->layers_loaded = E->p->preload || J->layers_issued == E->L ? J->layers_issued : 0;
  sim__load_next(E, j);
  if (E->state == ST_WAIT_LOAD && J->state == JOB_PREFILL) sim__advance(E);
}

void sim__load_next(sim_eng *E, int32_t j) {
  sim_job *J = &E->jobs[j];
  if (J->waiting_unit || J->load_inflight > 0 || J->layers_issued >= J->layers_allowed) return;
  int64_t remote = J->load_bytes[SIM_TIER_DRAM] + J->load_bytes[SIM_TIER_SSD];
  if (remote == 0) {
    J->layers_loaded = J->layers_issued = (int32_t)E->L;
    return;
  }
  /* one flow per layer, in sequence, with or without pre-loading (each pays the transfer's
   * set-up, [links] pcie_latency_us); pre-loading only lets layer k compute once it arrived */
  int64_t from = J->layers_issued;
  int64_t to = from + 1;
  if (from == 0 && J->unit >= 0 && J->load_bytes[SIM_TIER_SSD] > 0 &&
      E->store.tiers[SIM_TIER_DRAM].capacity > 0 &&
      sim_store_move(&E->store, J->unit, SIM_TIER_DRAM, 0, sim__key(J)) == 0) {
    /* no fetch happened (or none fitted): the load streams from SSD through DRAM, where the
     * unit then stays (accounting only; the bytes travel with the load) */
    sim__st(E, SIM_STAT_PROMOTIONS, 1);
  }
  for (int t = SIM_TIER_DRAM; t <= SIM_TIER_SSD; t++) {
    int64_t b = J->load_bytes[t];
    if (b == 0) continue;
    /* exact split of b over L layers: layer k carries floor(b*(k+1)/L) - floor(b*k/L) */
    int64_t part = (int64_t)((__int128)b * to / E->L - (__int128)b * from / E->L);
    if (part <= 0) continue;
    int32_t route[SIM_ROUTE_MAX];
    int n = sim_store_route(&E->store, t, SIM_LOC_GPU, route);
    sim_store_count_route(&E->store, route, n, part);
    if (sim_net_start(&E->net, route, n, (double)part, 0, sim__load_done, E, j, NULL, E->err)) {
      E->stop = 1;
      return;
    }
    J->load_inflight++;
  }
  J->layers_issued = (int32_t)to;
  if (J->load_inflight == 0) {
    J->layers_loaded = E->p->preload || J->layers_issued == E->L ? J->layers_issued : 0;
    if (J->layers_issued < J->layers_allowed) sim__load_next(E, j); /* nothing to move here */
  }
}


static int32_t sim__save_alloc(sim_eng *E, int32_t job, int sync) {
  int32_t r = sim_slots_alloc(&E->save_pool);
  if (r < 0) return -1;
  E->saves = E->save_pool.items;
  sim_save *S = &E->saves[r];
  int32_t *units = S->units, cap = S->cap_units;
  memset(S, 0, sizeof *S);
  S->units = units;
  S->cap_units = cap;
  S->job = job;
  S->sync = sync;
  S->next_in_job = E->jobs[job].save_list;
  E->jobs[job].save_list = r;
  return r;
}

static int sim__save_add_unit(sim_save *S, int32_t u) {
  if (S->n_units == S->cap_units) {
    int32_t nc = S->cap_units ? S->cap_units * 2 : 4;
    int32_t *nu = realloc(S->units, (size_t)nc * sizeof *nu);
    if (!nu) return KV_ENOMEM;
    S->units = nu;
    S->cap_units = nc;
  }
  S->units[S->n_units++] = u;
  return 0;
}

/* ---- saving ------------------------------------------------------------------------------- */

static void sim__save_done(void *ctx, int64_t arg) {
  sim_eng *E = ctx;
  int32_t r = (int32_t)arg;
  sim_save *S = &E->saves[r];
  int32_t j = S->job;
  sim_job *J = &E->jobs[j];
  for (int32_t k = 0; k < S->n_units; k++) sim_store_busy_end(&E->store, S->units[k]);
  J->saves_inflight--;
  J->inflight_bytes -= S->bytes;
  if (S->in_wb) sim_tier_release(&E->hbm_wb, S->bytes);
  if (S->sync) E->sync_pending--;
  sim__logf(E, "saved s=%lld turn=%d bytes=%lld%s", (long long)sim__sid(E, J->session),
            E->t->turns[J->turn].index, (long long)S->bytes, S->sync ? " sync" : "");
  /* unlink from the job's list */
  int32_t *pp = &J->save_list;
  while (*pp != r) pp = &E->saves[*pp].next_in_job;
  *pp = S->next_in_job;
  sim_slots_release(&E->save_pool, r);
  sim__job_maybe_free(E, j);
  if (E->state == ST_STALL_SAVE && E->sync_pending == 0) {
    sim__st(E, SIM_STAT_SAVE_STALL_NS, E->ev.now - E->stall_start);
    E->state = ST_IDLE;
  }
  sim__kick(E);
}

/* Starts a write of `bytes` from the job's HBM space to tier `t`; units are busy until done. */
static int32_t sim__save_flow(sim_eng *E, int32_t j, int t, int64_t bytes, int sync) {
  int32_t route[SIM_ROUTE_MAX];
  int n = sim_store_route(&E->store, SIM_LOC_GPU, t, route);
  if (n == 0 || bytes <= 0) return -1; /* same memory: nothing to transfer */
  int32_t r = sim__save_alloc(E, j, sync);
  if (r < 0) {
    E_FAIL(E, KV_ENOMEM, "engine: out of memory (saves)");
    return -1;
  }
  sim_save *S = &E->saves[r];
  S->bytes = bytes;
  sim_store_count_route(&E->store, route, n, bytes);
  if (sim_net_start(&E->net, route, n, (double)bytes, 0, sim__save_done, E, r, NULL, E->err)) {
    E->stop = 1;
    return -1;
  }
  sim_job *J = &E->jobs[j];
  J->saves_inflight++;
  J->inflight_bytes += bytes;
  if (sync) E->sync_pending++;
  return r;
}

/* Session store: grows the session's unit to `target` tokens and writes the new part. */
static void sim__save_session(sim_eng *E, int32_t j, int64_t target, int sync) {
  sim_job *J = &E->jobs[j];
  if (J->save_failed || target <= J->saved_tokens) return;
  sim_store *st = &E->store;
  int32_t x = J->unit;
  if (x < 0) {
    x = sim_store_find(st, (uint64_t)J->session, E->ev.now);
    if (x >= 0) {
      sim_unit *u = &st->u[x];
      if (u->busy || u->pins) {
        J->save_failed = 1;
        sim__st(E, SIM_STAT_SAVE_FAILED, 1);
        return;
      }
      /* a stale unit (too short for this turn): its content is replaced */
      sim_store_pin(st, x);
      if (sim_store_resize(st, x, target, sim__key(J))) {
        sim_store_unpin(st, x);
        sim_store_drop(st, x, SIM_STAT_INVALIDATED);
        J->save_failed = 1;
        sim__st(E, SIM_STAT_SAVE_FAILED, 1);
        return;
      }
    } else {
      x = sim_store_create(st, (uint64_t)J->session, target, sim_store_top_tier(st), E->ev.now,
                           sim__key(J));
      if (x == KV_ENOMEM) {
        E_FAIL(E, KV_ENOMEM, "engine: out of memory (store)");
        return;
      }
      if (x < 0) {
        J->save_failed = 1;
        sim__st(E, SIM_STAT_SAVE_FAILED, 1);
        return;
      }
      sim_store_pin(st, x);
    }
    J->unit = x;
  } else if (sim_store_resize(st, x, target, sim__key(J))) {
    J->save_failed = 1;
    sim__st(E, SIM_STAT_SAVE_FAILED, 1);
    return;
  }
  int64_t bytes = (target - J->saved_tokens) * E->bpt;
  J->saved_tokens = target;
  int32_t r = sim__save_flow(E, j, st->u[x].tier, bytes, sync);
  if (r >= 0) {
    sim_store_busy_begin(st, x);
    if (sim__save_add_unit(&E->saves[r], x)) E_FAIL(E, KV_ENOMEM, "engine: out of memory");
  }
}

/* Block store: inserts the blocks of the first `upto` context tokens not yet saved. */
static void sim__save_blocks(sim_eng *E, int32_t j, int64_t upto, int sync) {
  sim_job *J = &E->jobs[j];
  if (J->save_failed) return;
  sim_store *st = &E->store;
  int64_t n = sim__job_hashes(E, j, upto);
  int64_t bytes[SIM_TIER_COUNT] = {0};
  int32_t rec[SIM_TIER_COUNT] = {-1, -1, -1};
  int64_t k;
  for (k = J->saved_blocks; k < n; k++) {
    int32_t x = sim_store_find(st, E->hbuf[k], E->ev.now);
    if (x >= 0) {
      if (st->u[x].pins == 0 && st->u[x].busy == 0) sim_store_touch(st, x, E->ev.now);
      continue;
    }
    x = sim_store_create(st, E->hbuf[k], E->hbuf_tok[k], sim_store_top_tier(st), E->ev.now,
                         sim__key(J));
    if (x == KV_ENOMEM) {
      E_FAIL(E, KV_ENOMEM, "engine: out of memory (store)");
      return;
    }
    if (x < 0) {
      J->save_failed = 1;
      sim__st(E, SIM_STAT_SAVE_FAILED, 1);
      break;
    }
    if (E->opt_next) sim_store_set_next_use(st, x, E->opt_next[E->t->turns[J->turn].hash_off + k]);
    else if (E->p->cache.eviction->uses_future) sim_store_set_next_use(st, x, sim__next_use(E, j));
    int t = st->u[x].tier;
    int32_t route[SIM_ROUTE_MAX];
    if (sim_store_route(st, SIM_LOC_GPU, t, route) == 0) continue; /* HBM cache: no transfer */
    if (rec[t] < 0) {
      rec[t] = sim__save_alloc(E, j, sync);
      if (rec[t] < 0) {
        E_FAIL(E, KV_ENOMEM, "engine: out of memory (saves)");
        return;
      }
    }
    sim_store_busy_begin(st, x);
    if (sim__save_add_unit(&E->saves[rec[t]], x)) E_FAIL(E, KV_ENOMEM, "engine: out of memory");
    bytes[t] += E->hbuf_tok[k] * E->bpt;
  }
  J->saved_blocks = (int32_t)k;
  for (int t = 0; t < SIM_TIER_COUNT; t++) {
    if (rec[t] < 0) continue;
    int32_t route[SIM_ROUTE_MAX];
    int nr = sim_store_route(st, SIM_LOC_GPU, t, route);
    sim_save *S = &E->saves[rec[t]];
    S->bytes = bytes[t];
    sim_store_count_route(st, route, nr, bytes[t]);
    if (sim_net_start(&E->net, route, nr, (double)bytes[t], 0, sim__save_done, E, rec[t], NULL,
                      E->err)) {
      E->stop = 1;
      return;
    }
    J->saves_inflight++;
    J->inflight_bytes += bytes[t];
    if (sync) E->sync_pending++;
  }
}

void sim__save(sim_eng *E, int32_t j, int64_t upto, int sync) {
  if (!E->has_store) return;
  if (E->p->cache.store == SIM_STORE_SESSION) sim__save_session(E, j, upto, sync);
  else sim__save_blocks(E, j, upto, sync);
}

/* ---- prefetch ----------------------------------------------------------------------------- */

static int sim__prefetch_on(const sim_eng *E) {
  const sim_params *p = E->p;
  return p->cache.prefetch == SIM_PREFETCH_LOOKAHEAD && E->has_store &&
         p->cache.store == SIM_STORE_SESSION && E->store.tiers[SIM_TIER_DRAM].capacity > 0 &&
         E->store.tiers[SIM_TIER_SSD].capacity > 0;
}

/* Moves unit x (on SSD, idle) to DRAM as a prefetch, never evicting units of entries nearer the
 * head than `key`. 0 to go on, 1 when DRAM has no room now (rescan after the next admission). */
static int sim__prefetch_unit(sim_eng *E, int32_t x, int64_t key) {
  sim_unit *u = &E->store.u[x];
  if (sim_store_move(&E->store, x, SIM_TIER_DRAM, 1, key)) {
    E->pf_blocked = 1;
    return 1;
  }
  sim__st(E, SIM_STAT_PREFETCHES, 1);
  if (u->busy) {
    u->flags |= UNIT_FLAG_PREFETCH;
    E->prefetch_inflight++;
  }
  return 0;
}

/* Starts the SSD -> DRAM prefetch of queued job j's unit when it is on SSD and idle.
 * Returns 0 to go on, 1 when no more prefetches can start (pipeline full or DRAM full). */
static int sim__prefetch_job(sim_eng *E, int32_t j) {
  if (E->prefetch_inflight >= E->p->cache.prefetch_max_inflight) return 1;
  sim_job *J = &E->jobs[j];
  if (J->looked_up || J->hist == 0) return 0;
  int32_t x = sim__sess_unit(E, J->session);
  if (x < 0) return 0;
  sim_unit *u = &E->store.u[x];
  if (u->tier != SIM_TIER_SSD || u->busy || u->pins || u->tokens < J->hist_orig) return 0;
  return sim__prefetch_unit(E, x, sim__key(J));
}

/* The same for an announced turn of session s (its unit must hold the session's context). */
static int sim__prefetch_ann(sim_eng *E, int32_t s, int64_t key) {
  if (E->prefetch_inflight >= E->p->cache.prefetch_max_inflight) return 1;
  int32_t x = sim__sess_unit(E, s);
  if (x < 0) return 0;
  sim_unit *u = &E->store.u[x];
  if (u->tier != SIM_TIER_SSD || u->busy || u->pins || u->tokens < E->sess[s].ctx) return 0;
  return sim__prefetch_unit(E, x, key);
}

void sim__prefetch_session(sim_eng *E, int32_t s, int64_t key) {
  if (sim__prefetch_on(E)) sim__prefetch_ann(E, s, key);
}

/* Full scan of the look-ahead prefetch window (when a prefetch slot frees up). Jobs entering
 * the window are tried one by one as they enter (sim__prefetch_enter). */
void sim__prefetch_scan(sim_eng *E) {
  if (!sim__prefetch_on(E)) return;
  int64_t len = sim__la_len(E);
  int64_t n = len < E->W_p ? len : E->W_p;
  for (int64_t i = 0; i < n; i++) {
    int32_t s;
    int64_t key;
    int32_t j = sim__la_at(E, i, &s, &key);
    if (j >= 0 ? sim__prefetch_job(E, j) : sim__prefetch_ann(E, s, key)) break;
  }
}

void sim__prefetch_enter(sim_eng *E, int32_t j) {
  if (sim__prefetch_on(E)) sim__prefetch_job(E, j);
}

void sim__unit_ready(void *ctx, int32_t x) {
  sim_eng *E = ctx;
  sim_unit *u = &E->store.u[x];
  int rescan = 0;
  if (u->flags & UNIT_FLAG_PREFETCH) {
    u->flags &= ~UNIT_FLAG_PREFETCH;
    E->prefetch_inflight--;
    rescan = 1;
  }
  /* a demotion ended: the unit may belong to an entry of the prefetch window (it was pushed
   * out of DRAM after the entry was tried), which can now be fetched back */
  if (u->tier == SIM_TIER_SSD && u->moved_from >= 0 && u->moved_from != SIM_TIER_SSD) rescan = 1;
  /* a prefetch found DRAM full of busy units: one of them is idle now */
  if (E->pf_blocked) {
    E->pf_blocked = 0;
    rescan = 1;
  }
  if (u->waiter >= 0) {
    int32_t j = u->waiter;
    u->waiter = -1;
    sim__unit_settled(E, j);
    if (E->state == ST_WAIT_LOAD) sim__advance(E);
    if (E->q_len > 0 && sim__q_at(E, 0) == j) sim__head_prepare(E);
  }
  if (rescan) sim__prefetch_scan(E);
  sim__kick(E);
}

/* sim_engine.c — the run driver of the serving engine (sim.h's sim_run): it sets up the links,
 * the HBM KV space and write buffer, the [attention] block cache, the store and the look-ahead
 * windows, schedules the first arrival and the TTL sweeps, runs the event loop, checks the
 * invariants at the end (sim_engine.h) and collects the result. What the engine models lives in
 * its parts (sim_eng.h). */
#include "sim_engine.h"

#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sim_eng.h"
#include "sim_iter.h"
#include "sim_replay.h"
#include "sim_sched.h"
#include "sim_xfer.h"

/* ---- small helpers (sim_eng.h) ------------------------------------------------------------ */

void sim__logf(sim_eng *E, const char *fmt, ...) {
  if (!E->log) return;
  fprintf(E->log, "%15lld ", (long long)E->ev.now);
  va_list ap;
  va_start(ap, fmt);
  vfprintf(E->log, fmt, ap);
  va_end(ap);
  fputc('\n', E->log);
}


sim_event_id sim__at(sim_eng *E, int64_t t, sim_event_fn fn, int64_t arg) {
  sim_event_id id = sim_event_schedule(&E->ev, t, fn, E, arg, E->err);
  if (id.slot < 0) E->stop = 1;
  return id;
}


int64_t sim_engine_kv_space(const sim_params *p) {
  double total = (double)p->n_gpus * p->hw.hbm_bytes * (1.0 - p->hbm_reserve_frac);
  double weights = p->model.params * (double)p->model.bytes_per_elem;
  double v = total - weights - (double)p->cache.tier_bytes[SIM_TIER_HBM] - (double)p->write_buffer_bytes;
  return (int64_t)floor(v);
}

double sim_engine_mean_session_kv(const sim_params *p, const trace *t) {
  if (t->n_sessions == 0) return 0;
  double sum = 0;
  for (int64_t s = 0; s < t->n_sessions; s++) {
    const trace_session *S = &t->sessions[s];
    if (S->n_turns == 0) continue;
    const trace_turn *u = &t->turns[S->first_turn + S->n_turns - 1];
    int64_t ctx = (int64_t)u->input_tokens + u->output_tokens;
    if (ctx > p->model.context_window) ctx = p->model.context_window;
    sum += (double)ctx * p->model.kv_bytes_per_token;
  }
  return sum / (double)t->n_sessions;
}

/* ---- TTL sweep ---------------------------------------------------------------------------- */

static void sim__ev_ttl(void *ctx, int64_t arg) {
  (void)arg;
  sim_eng *E = ctx;
  sim_store_expire(&E->store, E->ev.now);
  if (E->ev.n_pending > 0) sim__at(E, E->ev.now + E->p->cache.ttl_sweep_ns, sim__ev_ttl, 0);
}

static int sim__build_opt_next(sim_eng *E) {
  const trace *t = E->t;
  /* next use of each (turn, hash position): the arrival of the next turn (in arrival order)
   * holding the same hash; a quadratic-free pass with a hash map keyed by the hash */
  int64_t *order = NULL;
  kv_error e = {0};
  if (sim_trace_order(t, &order, &e)) return KV_ENOMEM;
  E->opt_next = malloc((size_t)(t->n_hashes ? t->n_hashes : 1) * sizeof *E->opt_next);
  int64_t cap = 16;
  while (cap < t->n_hashes * 2) cap *= 2;
  uint64_t *keys = calloc((size_t)cap, sizeof *keys);
  int64_t *vals = calloc((size_t)cap, sizeof *vals);
  uint8_t *used = calloc((size_t)cap, 1);
  int rc = 0;
  if (!E->opt_next || !keys || !vals || !used) {
    rc = KV_ENOMEM;
  } else {
    for (int64_t q = t->n_turns - 1; q >= 0; q--) {
      const trace_turn *u = &t->turns[order[q]];
      const uint64_t *h = trace_turn_hashes(t, u);
      for (int32_t k = 0; k < u->n_hashes; k++) {
        int64_t i = (int64_t)(sim__mix(h[k]) & (uint64_t)(cap - 1));
        while (used[i] && keys[i] != h[k]) i = (i + 1) & (cap - 1);
        E->opt_next[u->hash_off + k] = used[i] ? vals[i] : INT64_MAX;
      }
      for (int32_t k = 0; k < u->n_hashes; k++) {
        int64_t i = (int64_t)(sim__mix(h[k]) & (uint64_t)(cap - 1));
        while (used[i] && keys[i] != h[k]) i = (i + 1) & (cap - 1);
        used[i] = 1;
        keys[i] = h[k];
        vals[i] = u->arrival_ns;
      }
    }
  }
  free(keys);
  free(vals);
  free(used);
  free(order);
  return rc;
}

static int sim__check_end(sim_eng *E, kv_error *err) {
  int rc;
  if ((rc = sim_events_check(&E->ev, err))) return rc;
  if (E->ev.n_pending != 0) {
    return kv_error_set(err, KV_ESTATE, "engine: %lld events pending at the end",
                        (long long)E->ev.n_pending);
  }
  if ((rc = sim_net_check(&E->net, err))) return rc;
  if (E->n_completed != E->t->n_turns) {
    for (int64_t i = 0; i < E->t->n_turns; i++) {
      const sim_request *R = &E->res->req[i];
      if (R->finish_ns < 0) {
        return kv_error_set(err, KV_ESTATE, "engine: session %lld turn %d never completed "
                            "(%lld of %lld turns did)", (long long)sim__sid(E, E->t->turns[i].session),
                            E->t->turns[i].index, (long long)E->n_completed,
                            (long long)E->t->n_turns);
      }
    }
  }
  if (E->live_jobs != 0) {
    return kv_error_set(err, KV_ESTATE, "engine: %lld jobs still live at the end",
                        (long long)E->live_jobs);
  }
  if ((rc = sim_tier_check(&E->hbm_kv, 0, err))) return rc;
  if ((rc = sim_tier_check(&E->hbm_wb, 0, err))) return rc;
  if (E->has_store) {
    if ((rc = sim_store_check(&E->store, err))) return rc;
    for (int32_t i = 0; i < E->store.cap_u; i++) {
      const sim_unit *u = &E->store.u[i];
      if (u->tier >= 0 && (u->pins || u->busy)) {
        return kv_error_set(err, KV_ESTATE, "engine: store unit %d still pinned/busy at the end",
                            i);
      }
      if (u->tier >= 0 && u->qpos >= 0) {
        return kv_error_set(err, KV_ESTATE, "engine: store unit %d still in the look-ahead "
                            "window with an empty queue", i);
      }
    }
  }
  return 0;
}

/* ---- run ---------------------------------------------------------------------------------- */

static double sim__wall_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Engine state for a run: requests (all "did not happen"), sessions, batch arrays, links. */
static int sim__setup(sim_eng *E, kv_error *err) {
  const sim_params *p = E->p;
  const trace *t = E->t;
  sim_result *r = E->res;
  sim_slots_init(&E->job_pool, sizeof(sim_job), offsetof(sim_job, next_free), 64, NULL);
  sim_slots_init(&E->save_pool, sizeof(sim_save), offsetof(sim_save, next_free), 64, NULL);
  E->bpt = (int64_t)llround(p->model.kv_bytes_per_token);
  E->L = p->model.layers;
  sim_events_init(&E->ev);
  sim_net_init(&E->net, &E->ev);
  r->req = malloc((size_t)(t->n_turns ? t->n_turns : 1) * sizeof *r->req);
  E->sess = malloc((size_t)(t->n_sessions ? t->n_sessions : 1) * sizeof *E->sess);
  E->batch = malloc((size_t)p->batch_limit * sizeof *E->batch);
  E->iter_prefill = malloc((size_t)p->batch_limit * sizeof *E->iter_prefill);
  E->w_hist = malloc((size_t)p->batch_limit * sizeof *E->w_hist);
  E->w_new = malloc((size_t)p->batch_limit * sizeof *E->w_new);
  if (!r->req || !E->sess || !E->batch || !E->iter_prefill || !E->w_hist || !E->w_new) {
    return kv_error_set(err, KV_ENOMEM, "engine: out of memory");
  }
  r->n_req = t->n_turns;
  for (int64_t i = 0; i < t->n_turns; i++) {
    sim_request *R = &r->req[i];
    memset(R, 0, sizeof *R);
    R->arrival_ns = R->admit_ns = R->first_token_ns = R->finish_ns = -1;
    R->session_id = t->sessions[t->turns[i].session].id;
    R->turn = t->turns[i].index;
  }
  for (int64_t s = 0; s < t->n_sessions; s++) {
    E->sess[s] = (sim_sess){.ctx = 0, .first_block = 0, .epoch = 0, .stale = 0, .job = -1};
  }
  struct {
    const char *name;
    double bw;
    int64_t lat;
  } links[SIM_LINK_ROLE_COUNT] = {
      {"h2d", p->h2d_bw, p->pcie_latency_ns},
      {"d2h", p->d2h_bw, p->pcie_latency_ns},
      {"ssd_read", p->ssd_read_bw, p->ssd_latency_ns},
      {"ssd_write", p->ssd_write_bw, p->ssd_latency_ns},
      {"ssd", p->ssd_mixed_bw, 0}, /* the array's shared budget (sim_store.h) */
  };
  for (int i = 0; i < SIM_LINK_ROLE_COUNT; i++) {
    int rc = sim_net_add_link(&E->net, links[i].name, links[i].bw, links[i].lat, err);
    if (rc < 0) return rc;
    E->link[i] = rc;
  }
  return 0;
}

/* The HBM KV space and write buffer; with [attention] the block cache carved out of the space. */
static int sim__setup_memory(sim_eng *E, kv_error *err) {
  const sim_params *p = E->p;
  int64_t kv_space = sim_engine_kv_space(p);
  E->res->kv_space_bytes = kv_space;
  if (kv_space <= 0) {
    return kv_error_set(err, KV_ERANGE, "model %s (%.1f GB of weights) leaves no HBM for KV on "
                        "%lld x %s", p->model.name,
                        p->model.params * (double)p->model.bytes_per_elem / 1e9,
                        (long long)p->n_gpus, p->hw.name);
  }
  sim_tier_init(&E->hbm_kv, "hbm_kv", kv_space);
  sim_tier_init(&E->hbm_wb, "hbm_write_buffer", p->write_buffer_bytes);
  E->attn_on = p->attn.prm.mode != SIM_ATTN_OFF;
  if (!E->attn_on) return 0;
  const sim_attn_params *ap = &p->attn.prm;
  int64_t pool = !ap->offload          ? 0
                 : ap->pool_bytes > 0 ? ap->pool_bytes
                                      : (int64_t)floor(ap->pool_frac * (double)kv_space);
  if (pool >= kv_space || sim_tier_alloc(&E->hbm_kv, pool)) {
    return kv_error_set(err, KV_ERANGE, "[attention] block cache of %lld bytes does not fit in "
                        "the HBM KV space (%lld bytes)", (long long)pool, (long long)kv_space);
  }
  E->attn_pool_bytes = pool;
  E->attn_seqs = malloc((size_t)p->batch_limit * sizeof *E->attn_seqs);
  if (!E->attn_seqs) return kv_error_set(err, KV_ENOMEM, "engine: out of memory");
  return sim_attn_run_init(&E->attn, &p->attn, p->seed, pool, E->stats.v, err);
}

/* The KV store of the cache modes other than re (and OPT's next uses from trace hashes). */
static int sim__setup_store(sim_eng *E, kv_error *err) {
  const sim_params *p = E->p;
  E->has_store = p->cache.mode != SIM_MODE_RE;
  if (!E->has_store) return 0;
  int rc = sim_store_init(&E->store, p->cache.store, p->cache.eviction, p->cache.tier_bytes, E->bpt, p->cache.ttl_ns,
                          &E->net, E->link, E->stats.v, err);
  if (rc) return rc;
  E->store.on_ready = sim__unit_ready;
  E->store.stage_cap = p->cache.demote_buffer_bytes;
  E->store.inclusive = p->cache.ssd_inclusive;
  E->store.ready_ctx = E;
  if (p->cache.store == SIM_STORE_BLOCK && p->cache.eviction->uses_queue) {
    return kv_error_set(err, KV_ENOTSUP, "[cache] eviction = %s needs the session-granular store "
                        "(store = session)", p->cache.eviction->name);
  }
  if (p->cache.store == SIM_STORE_BLOCK && p->cache.eviction->uses_future &&
      (E->t->flags & TRACE_FLAG_HAS_HASHES) && sim__build_opt_next(E)) {
    return kv_error_set(err, KV_ENOMEM, "engine: out of memory (OPT next uses)");
  }
  return 0;
}

/* Runs the event loop from the first arrival to the last event. */
static int sim__loop(sim_eng *E, kv_error *err) {
  const sim_params *p = E->p;
  const trace *t = E->t;
  if (p->warmup_turns == 0) sim__snapshot_warm(E);
  /* first arrival; TTL sweeps */
  for (int64_t s = 0; s < t->n_sessions; s++) {
    if (t->sessions[s].n_turns > 0) {
      sim__at(E, t->sessions[s].arrival_ns, sim__ev_session, s);
      break;
    }
  }
  if (E->has_store && p->cache.ttl_ns > 0 && p->cache.ttl_sweep_ns > 0) {
    sim__at(E, p->cache.ttl_sweep_ns, sim__ev_ttl, 0);
  }
  sim_events_run(&E->ev, SIM_TIME_MAX, &E->stop);
  if (E->stop) {
    int rc = err && err->code ? err->code : KV_ESTATE;
    if (err && !err->msg[0]) kv_error_set(err, KV_ESTATE, "engine stopped");
    return rc;
  }
  if (E->store.failed) return kv_error_set(err, KV_ENOMEM, "store: out of memory in an event");
  return 0;
}

/* Counters, the pool comparison, the end-of-run checks, link and tier figures into E->res. */
static int sim__collect(sim_eng *E, kv_error *err) {
  sim_result *r = E->res;
  r->end_ns = E->ev.now;
  if (!E->warm_done) sim__snapshot_warm(E);
  E->stats.v[SIM_STAT_EVENTS] = E->ev.n_fired;
  r->final = E->stats;
  if (!E->cooling) {
    r->cool = r->final;
    r->cool_ns = r->end_ns;
  }
  r->attn.gpu_kv_peak_bytes = E->hbm_kv.peak;
  int rc;
  if (E->attn_on) { /* attention: return the block cache; pool comparison over the run */
    sim_tier_release(&E->hbm_kv, E->attn_pool_bytes);
    if ((rc = sim_attn_finish(&E->attn, E->hbm_kv.peak, &r->attn, err))) return rc;
  }
  if ((rc = sim__check_end(E, err))) return rc;
  r->events_scheduled = E->ev.n_scheduled;
  r->events_fired = E->ev.n_fired;
  r->events_cancelled = E->ev.n_cancelled;
  sim_net_sync(&E->net);
  for (int i = 0; i < SIM_LINK_ROLE_COUNT; i++) {
    snprintf(r->links[i].name, sizeof r->links[i].name, "%s", E->net.links[E->link[i]].name);
    r->links[i].bytes = E->net.links[E->link[i]].bytes_done;
    r->links[i].busy_ns = E->net.links[E->link[i]].busy_ns;
  }
  for (int k = 0; k < SIM_TIER_COUNT; k++) r->tier_peak[k] = E->has_store ? E->store.tiers[k].peak : 0;
  return 0;
}

static void sim__teardown(sim_eng *E) {
  if (E->has_store) sim_store_free(&E->store);
  if (E->attn_on) sim_attn_run_free(&E->attn);
  free(E->attn_seqs);
  sim_net_free(&E->net);
  sim_events_free(&E->ev);
  for (int32_t i = 0; i < E->job_pool.cap; i++) free(E->jobs[i].blocks);
  for (int32_t i = 0; i < E->save_pool.cap; i++) free(E->saves[i].units);
  sim_slots_free(&E->job_pool);
  sim_slots_free(&E->save_pool);
  free(E->q);
  free(E->batch);
  free(E->iter_prefill);
  free(E->w_hist);
  free(E->w_new);
  free(E->sess);
  free(E->opt_next);
  free(E->hbuf);
  free(E->hbuf_tok);
  free(E->ann);
  free(E);
}

int sim_run(const sim_params *p, const trace *t, FILE *log, sim_result *r, kv_error *err) {
  memset(r, 0, sizeof *r);
  int rc = trace_check(t, err);
  if (rc) return rc;
  const double wall0 = sim__wall_now();
  sim_eng *E = calloc(1, sizeof *E);
  if (!E) return kv_error_set(err, KV_ENOMEM, "engine: out of memory");
  E->p = p;
  E->t = t;
  E->log = log;
  E->err = err;
  E->res = r;
  rc = sim__setup(E, err);
  if (!rc) rc = sim__setup_memory(E, err);
  if (!rc) rc = sim__setup_store(E, err);
  if (!rc) {
    sim__sched_windows(E);
    rc = sim__loop(E, err);
  }
  if (!rc) rc = sim__collect(E, err);
  r->wall_s = sim__wall_now() - wall0;
  sim__teardown(E);
  if (rc) {
    free(r->req);
    r->req = NULL;
    r->n_req = 0;
  }
  return rc;
}

void sim_result_free(sim_result *r) {
  free(r->req);
  memset(r, 0, sizeof *r);
}

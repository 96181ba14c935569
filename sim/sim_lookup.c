/* sim_lookup.c — a job's cache lookup and preparation for admission (sim_lookup.h). */
#include "sim_lookup.h"

#include <stdlib.h>

#include "sim_sched.h"
#include "sim_xfer.h"

/* ---- cache lookup ------------------------------------------------------------------------- */

/* Unit of a session (session store), or -1. */
int32_t sim__sess_unit(sim_eng *E, int32_t s) {
  if (!E->has_store || E->p->cache.store != SIM_STORE_SESSION) return -1;
  return sim_store_find(&E->store, (uint64_t)s, E->ev.now);
}

/* Block hashes of job j's input (trace hashes or synthesized); fills E->hbuf / hbuf_tok.
 * Returns the number of blocks usable for caching. */
int64_t sim__job_hashes(sim_eng *E, int32_t j, int64_t upto_tokens) {
  sim_job *J = &E->jobs[j];
  const trace *t = E->t;
  const trace_turn *u = &t->turns[J->turn];
  int64_t B = E->p->cache.block_tokens;
  int64_t n = 0;
  int trace_h = (t->flags & TRACE_FLAG_HAS_HASHES) && t->block_tokens > 0 && u->n_hashes > 0;
  if (trace_h) {
    if (J->truncated) return 0; /* hashes of a truncated prompt are unknown */
    B = t->block_tokens;
    n = u->n_hashes;
  } else {
    n = upto_tokens / B;
  }
  if (n > E->cap_hbuf) {
    int64_t nc = n * 2;
    uint64_t *nh = realloc(E->hbuf, (size_t)nc * sizeof *nh);
    if (nh) E->hbuf = nh;
    int64_t *nt = realloc(E->hbuf_tok, (size_t)nc * sizeof *nt);
    if (nt) E->hbuf_tok = nt;
    if (!nh || !nt) {
      E_FAIL(E, KV_ENOMEM, "engine: out of memory (hashes)");
      return 0;
    }
    E->cap_hbuf = nc;
  }
  if (trace_h) {
    const uint64_t *h = trace_turn_hashes(t, u);
    for (int64_t k = 0; k < n; k++) {
      E->hbuf[k] = h[k];
      int64_t end = (k + 1) * B < J->input ? (k + 1) * B : J->input;
      E->hbuf_tok[k] = end > k * B ? end - k * B : 1;
    }
  } else {
    sim_sess *S = &E->sess[J->session];
    uint64_t base = sim__mix(sim__mix((uint64_t)sim__sid(E, J->session)) ^ (uint64_t)S->epoch);
    for (int64_t k = 0; k < n; k++) {
      E->hbuf[k] = sim__mix(base ^ (uint64_t)(S->first_block + k));
      E->hbuf_tok[k] = B;
    }
  }
  return n;
}

/* Next use of a unit for OPT: the arrival (trace time) of the session's next turn. */
int64_t sim__next_use(sim_eng *E, int32_t j) {
  const sim_job *J = &E->jobs[j];
  const trace_turn *u = &E->t->turns[J->turn];
  const trace_session *S = &E->t->sessions[J->session];
  if (u->index + 1 >= S->n_turns) return INT64_MAX;
  return E->t->turns[J->turn + 1].arrival_ns;
}

/* The unit (or blocks) of job j are settled (not in flight): apply the truncation shrink and
 * the SSD -> DRAM promotion, then start loading. */
void sim__unit_settled(sim_eng *E, int32_t j) {
  sim_job *J = &E->jobs[j];
  J->waiting_unit = 0;
  if (J->unit >= 0) {
    sim_unit *u = &E->store.u[J->unit];
    if (J->shrink_to >= 0 && J->shrink_to < u->tokens) {
      sim_store_resize(&E->store, J->unit, J->shrink_to, SIM_QPOS_ANY);
    }
    J->shrink_to = -1;
    /* the unit may have moved (prefetch, fetch) since the lookup: load from where it is */
    for (int t = 0; t < SIM_TIER_COUNT; t++) J->load_bytes[t] = 0;
    J->load_bytes[u->tier] = J->hit * E->bpt;
  }
  sim__load_next(E, j);
}

/* The tier a hit on unit u is served from: where it is, except that a unit still arriving in
 * DRAM from SSD (a prefetch in flight; an on-demand fetch starts after the lookup, from SSD)
 * is served from SSD: its KV is not in DRAM when the job needs it. */
static int sim__served_tier(const sim_unit *u) {
  if (u->busy && (u->flags & UNIT_FLAG_PREFETCH) && u->moved_from == SIM_TIER_SSD) {
    return SIM_TIER_SSD;
  }
  return u->tier;
}

void sim__lookup(sim_eng *E, int32_t j) {
  sim_job *J = &E->jobs[j];
  const sim_params *p = E->p;
  J->looked_up = 1;
  J->hit = 0;
  int tier_mask = 0;
  if (E->has_store && p->cache.store == SIM_STORE_SESSION && J->hist > 0) {
    int32_t x = sim_store_find(&E->store, (uint64_t)J->session, E->ev.now);
    if (x >= 0) {
      sim_unit *u = &E->store.u[x];
      int usable = u->tokens >= J->hist_orig;
      /* TT: the prompt's tokens were truncated, the KV of the kept tokens is recomputed;
       * NKVT: the overflow turn attends to the truncated KV with its old positions (an
       * accuracy loss, not simulated), which leaves the session's KV invalid for the next turn */
      if (usable && J->truncated && p->truncation == SIM_TRUNC_TT) usable = 0;
      if (usable && E->sess[J->session].stale) usable = 0;
      if (usable && J->truncated && p->truncation == SIM_TRUNC_NKVT) J->leaves_stale = 1;
      if (usable) {
        sim_store_pin(&E->store, x);
        sim_store_set_qpos(&E->store, x, -1);
        sim_store_touch(&E->store, x, E->ev.now);
        J->unit = x;
        J->hit = J->hist;
        J->saved_tokens = J->hist;
        if (J->truncated) J->shrink_to = J->hist;
        J->load_bytes[u->tier] = J->hist * E->bpt;
        tier_mask |= 1 << sim__served_tier(u);
        if (u->busy) {
          J->waiting_unit = 1;
          u->waiter = j;
          sim__st(E, SIM_STAT_WAIT_UNIT, 1);
        }
      } else if (u->pins == 0 && u->busy == 0) {
        sim_store_drop(&E->store, x, SIM_STAT_INVALIDATED);
      }
    }
  } else if (E->has_store && p->cache.store == SIM_STORE_BLOCK) {
    int64_t n = sim__job_hashes(E, j, J->input);
    int64_t hit_tok = 0;
    int32_t nb = 0;
    if (n > J->cap_blocks) {
      int32_t *nbk = realloc(J->blocks, (size_t)n * sizeof *nbk);
      if (!nbk) {
        E_FAIL(E, KV_ENOMEM, "engine: out of memory (blocks)");
        return;
      }
      J->blocks = nbk;
      J->cap_blocks = (int32_t)n;
    }
    for (int64_t k = 0; k < n; k++) {
      int32_t x = sim_store_find(&E->store, E->hbuf[k], E->ev.now);
      if (x < 0 || E->store.u[x].busy) break;
      J->blocks[nb++] = x;
      hit_tok += E->hbuf_tok[k];
    }
    /* at least one prompt token is computed (it produces the first output token) */
    while (nb > 0 && hit_tok >= J->input) hit_tok -= E->hbuf_tok[--nb];
    for (int32_t k = 0; k < nb; k++) {
      sim_unit *u = &E->store.u[J->blocks[k]];
      sim_store_pin(&E->store, J->blocks[k]);
      J->load_bytes[u->tier] += E->hbuf_tok[k] * E->bpt;
      tier_mask |= 1 << sim__served_tier(u);
    }
    J->n_blocks = nb;
    J->saved_blocks = nb;
    J->hit = hit_tok;
    J->saved_tokens = hit_tok;
  }
  J->prefill = J->input - J->hit;
  if (J->hit > 0) {
    J->src = tier_mask & (1 << SIM_TIER_SSD)    ? SIM_SRC_SSD
             : tier_mask & (1 << SIM_TIER_DRAM) ? SIM_SRC_DRAM
                                                : SIM_SRC_HBM;
  } else {
    J->src = J->hist > 0 ? SIM_SRC_MISS : SIM_SRC_NONE;
  }
  if (J->hist > 0) {
    sim__st(E, SIM_STAT_LOOKUPS_WITH_HISTORY, 1);
    sim__st(E, SIM_STAT_HISTORY_TOKENS, J->hist);
    if (J->hit > 0) {
      sim__st(E, SIM_STAT_HIT_TURNS, 1);
      if (tier_mask & (1 << SIM_TIER_SSD)) sim__st(E, SIM_STAT_HIT_SSD, 1);
      else if (tier_mask & (1 << SIM_TIER_DRAM)) sim__st(E, SIM_STAT_HIT_DRAM, 1);
      else sim__st(E, SIM_STAT_HIT_HBM, 1);
    }
  }
  sim__st(E, SIM_STAT_HIT_TOKENS, J->hit);
  if (!J->waiting_unit) sim__unit_settled(E, j);
}

/* The on-demand SSD -> DRAM fetch of job j's session unit (tried once per job). Returns 1 when
 * the job now waits for the unit to arrive, 0 when it does not (fetched or not fetchable). */
static int sim__fetch(sim_eng *E, int32_t j) {
  sim_job *J = &E->jobs[j];
  J->fetch_tried = 1;
  sim_unit *u = &E->store.u[J->unit];
  if (u->tier == SIM_TIER_SSD && E->store.tiers[SIM_TIER_DRAM].capacity > 0 &&
      sim_store_move(&E->store, J->unit, SIM_TIER_DRAM, 1, sim__key(J)) == 0) {
    sim__st(E, SIM_STAT_FETCHES, 1);
    if (u->busy) {
      J->waiting_unit = 1;
      u->waiter = j;
      return 1;
    }
    sim__unit_settled(E, j);
  }
  return 0;
}

/* Prepares the queue head for admission: cache lookup, on-demand SSD -> DRAM fetch of its
 * session unit (the head is admitted only when its KV is settled), and pre-loading of its first
 * read_buffer_layers layers into the HBM read buffer. */
void sim__head_prepare(sim_eng *E) {
  const sim_params *p = E->p;
  if (E->q_len == 0 || !E->has_store) return;
  int32_t j = sim__q_at(E, 0);
  sim_job *J = &E->jobs[j];
  if (!J->looked_up) sim__lookup(E, j);
  if (J->waiting_unit) return;
  if (J->unit >= 0 && !J->fetch_tried && sim__fetch(E, j)) return;
  if (!p->preload || p->read_buffer_layers <= 0 || J->rbuf_tried) return;
  J->rbuf_tried = 1;
  int64_t remote = J->load_bytes[SIM_TIER_DRAM] + J->load_bytes[SIM_TIER_SSD];
  if (remote == 0) return;
  int64_t N = p->read_buffer_layers < E->L ? p->read_buffer_layers : E->L;
  int64_t rb = (int64_t)(((__int128)remote * N + E->L - 1) / E->L);
  if (rb > J->reserve_bytes) rb = J->reserve_bytes;
  if (sim_tier_alloc(&E->hbm_kv, rb)) return;
  J->rbuf_bytes = rb;
  J->layers_allowed = (int32_t)N;
  sim__load_next(E, j);
}

/* Prepares a queued job behind the head for admission past it (admit_lookahead > 1): cache
 * lookup and the on-demand SSD -> DRAM fetch of its session unit; no read-buffer pre-load. */
void sim__job_prepare(sim_eng *E, int32_t j) {
  if (!E->has_store) return;
  sim_job *J = &E->jobs[j];
  if (!J->looked_up) sim__lookup(E, j);
  if (J->waiting_unit || J->unit < 0 || J->fetch_tried) return;
  sim__fetch(E, j);
}

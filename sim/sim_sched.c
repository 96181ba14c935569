/* sim_sched.c — the engine's scheduler: jobs, queue, arrival, admission, look-ahead windows (sim_sched.h). */
#include "sim_sched.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "sim_engine.h"
#include "sim_iter.h"
#include "sim_lookup.h"
#include "sim_xfer.h"

/* ---- jobs and save records ---------------------------------------------------------------- */

int32_t sim__job_alloc(sim_eng *E) {
  int32_t j = sim_slots_alloc(&E->job_pool);
  if (j < 0) return -1;
  E->jobs = E->job_pool.items;
  sim_job *J = &E->jobs[j];
  int32_t *blocks = J->blocks, cap = J->cap_blocks;
  memset(J, 0, sizeof *J);
  J->blocks = blocks;
  J->cap_blocks = cap;
  J->unit = -1;
  J->shrink_to = -1;
  J->save_list = -1;
  J->admit_ns = J->first_ns = -1;
  E->live_jobs++;
  return j;
}

void sim__job_release(sim_eng *E, int32_t j) {
  E->jobs[j].state = JOB_FREE;
  sim_slots_release(&E->job_pool, j);
  E->live_jobs--;
}

/* ---- queue -------------------------------------------------------------------------------- */

int32_t sim__q_at(const sim_eng *E, int64_t i) { return E->q[(E->q_head + i) % E->q_cap]; }

int sim__q_push(sim_eng *E, int32_t j) {
  if (E->q_len == E->q_cap) {
    int64_t nc = E->q_cap ? E->q_cap * 2 : 256;
    int32_t *nq = malloc((size_t)nc * sizeof *nq);
    if (!nq) return KV_ENOMEM;
    for (int64_t i = 0; i < E->q_len; i++) nq[i] = sim__q_at(E, i);
    free(E->q);
    E->q = nq;
    E->q_cap = nc;
    E->q_head = 0;
  }
  E->q[(E->q_head + E->q_len) % E->q_cap] = j;
  E->q_len++;
  return 0;
}

/* Removes the job at queue position pos: the jobs before it move up one place. */
void sim__q_remove(sim_eng *E, int64_t pos) {
  for (int64_t k = pos; k > 0; k--) {
    E->q[(E->q_head + k) % E->q_cap] = E->q[(E->q_head + k - 1) % E->q_cap];
  }
  E->q_head = (E->q_head + 1) % E->q_cap;
  E->q_len--;
}

/* Sets the look-ahead eviction window mark of job j's session unit. */
void sim__sched_windows(sim_eng *E) {
  const sim_params *p = E->p;
  /* L_pw = C_mem / S_kv, L_ew = (C_mem + C_disk) / S_kv */
  double skv = sim_engine_mean_session_kv(p, E->t);
  double cmem = (double)p->cache.tier_bytes[SIM_TIER_DRAM], cdisk = (double)p->cache.tier_bytes[SIM_TIER_SSD];
  E->W_p = p->cache.prefetch_window_jobs > 0 ? p->cache.prefetch_window_jobs
           : skv > 0 ? (int64_t)fmax(1, floor(cmem / skv)) : 1;
  E->W_e = p->cache.evict_window_jobs > 0 ? p->cache.evict_window_jobs
           : skv > 0 ? (int64_t)fmax(1, fmin(1e15, floor((cmem + cdisk) / skv))) : 1;
}

void sim__window_mark(sim_eng *E, int32_t j) {
  sim_job *J = &E->jobs[j];
  int32_t x = sim__sess_unit(E, J->session);
  if (x >= 0 && E->store.u[x].pins == 0) sim_store_set_qpos(&E->store, x, sim__key(J));
}

/* ---- the look-ahead list: the queue, then the announced turns ------------------------------ */

int64_t sim__la_len(const sim_eng *E) { return E->q_len + E->n_ann; }

int32_t sim__la_at(const sim_eng *E, int64_t r, int32_t *session, int64_t *key) {
  if (r < E->q_len) {
    int32_t j = sim__q_at(E, r);
    *session = E->jobs[j].session;
    *key = sim__key(&E->jobs[j]);
    return j;
  }
  const sim_announced *a = &E->ann[r - E->q_len];
  *session = a->session;
  *key = a->at + 1;
  return -1;
}

/* Entry r enters (mark = 1) or leaves (0) the eviction window. */
static void sim__la_window(sim_eng *E, int64_t r, int mark) {
  if (r < 0 || r >= sim__la_len(E) || !E->has_store) return;
  int32_t s;
  int64_t key;
  sim__la_at(E, r, &s, &key);
  int32_t x = sim__sess_unit(E, s);
  if (x >= 0 && E->store.u[x].pins == 0) sim_store_set_qpos(&E->store, x, mark ? key : -1);
}

/* Entry r enters the prefetch window. */
static void sim__la_prefetch(sim_eng *E, int64_t r) {
  if (r < 0 || r >= sim__la_len(E)) return;
  int32_t s;
  int64_t key;
  int32_t j = sim__la_at(E, r, &s, &key);
  if (j >= 0) sim__prefetch_enter(E, j);
  else sim__prefetch_session(E, s, key);
}

int sim__announce(sim_eng *E, int64_t at, int64_t turn, int32_t s) {
  if (E->n_ann == E->cap_ann) {
    int64_t nc = E->cap_ann ? E->cap_ann * 2 : 256;
    sim_announced *na = realloc(E->ann, (size_t)nc * sizeof *na);
    if (!na) return KV_ENOMEM;
    E->ann = na;
    E->cap_ann = nc;
  }
  int64_t lo = 0, hi = E->n_ann; /* first entry after (at, turn) */
  while (lo < hi) {
    int64_t mid = (lo + hi) / 2;
    const sim_announced *a = &E->ann[mid];
    if (a->at < at || (a->at == at && a->turn < turn)) lo = mid + 1;
    else hi = mid;
  }
  memmove(&E->ann[lo + 1], &E->ann[lo], (size_t)(E->n_ann - lo) * sizeof *E->ann);
  E->ann[lo] = (sim_announced){at, turn, s};
  E->n_ann++;
  int64_t r = E->q_len + lo;
  if (r < E->W_e) {
    sim__la_window(E, r, 1);
    sim__la_window(E, E->W_e, 0); /* pushed out of the window, if any */
  }
  if (r < E->W_p) sim__la_prefetch(E, r);
  return 0;
}

/* Turn `turn` arrives: it leaves the announced list (it joins the queue's end, which is the
 * rank it had when it was the first announced turn). Returns 1 when it was announced. */
static int sim__unannounce(sim_eng *E, int64_t turn) {
  for (int64_t i = 0; i < E->n_ann; i++) {
    if (E->ann[i].turn != turn) continue;
    memmove(&E->ann[i], &E->ann[i + 1], (size_t)(E->n_ann - i - 1) * sizeof *E->ann);
    E->n_ann--;
    return 1;
  }
  return 0;
}


/* ---- arrivals ----------------------------------------------------------------------------- */

static void sim__turn_arrive(sim_eng *E, int64_t ti);

void sim__ev_turn(void *ctx, int64_t arg) {
  sim_eng *E = ctx;
  sim__turn_arrive(E, arg);
}

void sim__ev_session(void *ctx, int64_t s) {
  sim_eng *E = ctx;
  const trace *t = E->t;
  for (int64_t n = s + 1; n < t->n_sessions; n++) {
    if (t->sessions[n].n_turns > 0) {
      sim__at(E, t->sessions[n].arrival_ns, sim__ev_session, n);
      break;
    }
  }
  sim__turn_arrive(E, t->sessions[s].first_turn);
  int last = 1;
  for (int64_t n = s + 1; n < t->n_sessions && last; n++) last = t->sessions[n].n_turns == 0;
  if (last && E->p->cooldown && !E->cooling) {
    /* session arrivals end: the measured window closes; later turns are the drain */
    if (!E->warm_done) sim__snapshot_warm(E);
    E->res->cool = E->stats;
    E->res->cool.v[SIM_STAT_EVENTS] = E->ev.n_fired;
    E->res->cool_ns = E->ev.now;
    E->cooling = 1;
  }
}

void sim__snapshot_warm(sim_eng *E) {
  E->stats.v[SIM_STAT_EVENTS] = E->ev.n_fired;
  E->res->warm = E->stats;
  E->res->warm_ns = E->ev.now;
  E->warm_done = 1;
}

static void sim__turn_arrive(sim_eng *E, int64_t ti) {
  const sim_params *p = E->p;
  const trace *t = E->t;
  const trace_turn *u = &t->turns[ti];
  int32_t s = u->session;
  sim_sess *S = &E->sess[s];
  if (S->job >= 0) {
    E_FAIL(E, KV_ESTATE, "engine: session %lld turn %d arrived while turn %d is in the system",
           (long long)sim__sid(E, s), u->index, E->t->turns[E->jobs[S->job].turn].index);
    return;
  }
  sim_request *R = &E->res->req[ti];
  if (R->arrival_ns != -1) {
    E_FAIL(E, KV_ESTATE, "engine: session %lld turn %d arrived twice", (long long)sim__sid(E, s),
           u->index);
    return;
  }
  int32_t j = sim__job_alloc(E);
  if (j < 0) {
    E_FAIL(E, KV_ENOMEM, "engine: out of memory (jobs)");
    return;
  }
  sim_job *J = &E->jobs[j];
  J->turn = ti;
  J->session = s;
  J->arrival_ns = E->ev.now;
  J->state = JOB_QUEUED;
  J->warm = E->n_arrived < p->warmup_turns ? 1 : E->cooling ? 2 : 0;
  /* effective token counts */
  int64_t hist = (int64_t)u->input_tokens - u->new_tokens;
  if ((t->flags & TRACE_FLAG_FULL_HISTORY) && u->index > 0) hist = S->ctx;
  int64_t nw = u->new_tokens, out = u->output_tokens > 0 ? u->output_tokens : 1;
  J->hist_orig = hist;
  int64_t W = p->model.context_window;
  if (hist + nw + out > W) {
    J->truncated = 1;
    sim__st(E, SIM_STAT_TRUNCATIONS, 1);
    int blockwise = p->cache.store == SIM_STORE_BLOCK && p->truncation == SIM_TRUNC_DECOUPLED;
    int64_t dropped = 0;
    while (hist > 0 && hist + nw + out > W) {
      int64_t d = (int64_t)floor(p->truncation_ratio * (double)hist);
      if (d < 1) d = 1;
      if (blockwise) d = (d + p->cache.block_tokens - 1) / p->cache.block_tokens * p->cache.block_tokens;
      if (d > hist) d = hist;
      hist -= d;
      dropped += d;
    }
    if (blockwise && dropped % p->cache.block_tokens == 0) {
      S->first_block += dropped / p->cache.block_tokens;
    } else {
      S->epoch++;
      S->first_block = 0;
    }
    if (nw + out > W) {
      if (out >= W) out = W / 2;
      nw = W - out;
    }
    if (nw < 1) nw = 1;
  }
  J->hist = hist;
  J->new_tokens = nw;
  J->out = out;
  J->input = hist + nw;
  J->reserve_bytes = E->attn_on ? sim_attn_reserve_bytes(&p->attn, J->input, out)  /* attention */
                                : (J->input + out) * E->bpt;
  J->layers_allowed = 0;
  if (J->reserve_bytes > E->hbm_kv.capacity - E->attn_pool_bytes) {
    E_FAIL(E, KV_ERANGE, "session %lld turn %d: needs %lld bytes of HBM KV space, the GPUs have "
           "%lld (model too large for %lld GPUs?)", (long long)sim__sid(E, s), u->index,
           (long long)J->reserve_bytes, (long long)(E->hbm_kv.capacity - E->attn_pool_bytes),
           (long long)p->n_gpus);
    return;
  }
  R->arrival_ns = E->ev.now;
  R->session_id = sim__sid(E, s);
  R->turn = u->index;
  R->warmup = J->warm;
  R->input_tokens = J->input;
  R->new_tokens = nw;
  R->output_tokens = out;
  R->hist_tokens = hist;
  R->truncated = J->truncated;
  S->job = j;
  E->n_arrived++;
  sim__st(E, SIM_STAT_ARRIVALS, 1);
  if (!E->warm_done && E->n_arrived >= p->warmup_turns) sim__snapshot_warm(E);
  sim__logf(E, "arrive s=%lld turn=%d hist=%lld new=%lld out=%lld%s", (long long)R->session_id,
            u->index, (long long)hist, (long long)nw, (long long)out,
            J->truncated ? " truncated" : "");
  int announced = E->n_ann > 0 && sim__unannounce(E, ti);
  J->qseq = E->n_enq++;
  if (sim__q_push(E, j)) {
    E_FAIL(E, KV_ENOMEM, "engine: out of memory (queue)");
    return;
  }
  /* a turn nobody announced (a session's first) moves every announced turn down one place */
  if (!announced && E->n_ann > 0) sim__la_window(E, E->W_e, 0);
  if (J->qseq - E->n_deq < E->W_e) sim__window_mark(E, j);
  if (J->qseq - E->n_deq < E->W_p) sim__prefetch_enter(E, j);
  if (E->q_len == 1) sim__head_prepare(E);
  sim__kick(E);
}

void sim__try_admit(sim_eng *E) {
  const sim_params *p = E->p;
  int64_t pos = 0;
  while (E->n_batch < p->batch_limit && pos < E->q_len && pos < p->admit_lookahead) {
    if (pos == 0) sim__head_prepare(E);
    else sim__job_prepare(E, sim__q_at(E, pos));
    int32_t j = sim__q_at(E, pos);
    sim_job *J = &E->jobs[j];
    /* Its KV is still in flight: it waits and a later job may pass. A job behind the head whose
     * KV is still on SSD (no room to fetch it yet) waits too rather than stall the batch by
     * streaming from SSD; only the head may do that. */
    if (J->waiting_unit ||
        (pos > 0 && J->unit >= 0 && E->store.u[J->unit].tier == SIM_TIER_SSD)) {
      pos++;
      continue;
    }
    /* HBM space is granted in queue order: a job that does not fit stops admission. */
    if (E->attn_on && !sim_attn_can_admit(&E->attn, J->input + J->out, E->n_batch == 0)) break;
    if (sim_tier_alloc(&E->hbm_kv, J->reserve_bytes - J->rbuf_bytes)) break;
    J->rbuf_bytes = 0;
    if (E->attn_on && sim_attn_admit(&E->attn, j, J->input + J->out)) { /* attention */
      E_FAIL(E, KV_ENOMEM, "engine: out of memory (attention)");
      return;
    }
    sim__q_remove(E, pos);
    E->n_deq++;
    /* every later entry moved up one place: the one now last inside each window enters it */
    if (E->W_e > 0 && sim__la_len(E) >= E->W_e) sim__la_window(E, E->W_e - 1, 1);
    if (E->pf_blocked) {
      E->pf_blocked = 0;
      sim__prefetch_scan(E);
    } else if (E->W_p > 0 && sim__la_len(E) >= E->W_p) {
      sim__la_prefetch(E, E->W_p - 1);
    }
    J->state = JOB_PREFILL;
    J->admit_ns = E->ev.now;
    E->batch[E->n_batch++] = j;
    sim__st(E, SIM_STAT_ADMITTED, 1);
    if (!J->looked_up) sim__lookup(E, j);
    J->layers_allowed = (int32_t)E->L;
    sim__load_next(E, j);
    sim__st(E, SIM_STAT_INPUT_TOKENS, J->input);
    sim__st(E, SIM_STAT_PREFILL_TOKENS, J->prefill);
    sim__logf(E, "admit s=%lld turn=%d hit=%lld src=%s", (long long)sim__sid(E, J->session),
              E->t->turns[J->turn].index, (long long)J->hit, sim_src_names[J->src]);
  }
}

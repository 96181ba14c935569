/* sim_iter.c — the engine's iteration loop (sim_iter.h). */
#include "sim_iter.h"

#include <math.h>

#include "sim_lookup.h"
#include "sim_sched.h"
#include "sim_xfer.h"

static void sim__ev_layer(void *ctx, int64_t k) {
  sim_eng *E = ctx;
  E->cur_layer = k;
  sim__advance(E);
}


static void sim__ev_iter_end(void *ctx, int64_t arg);

/* ---- attention hooks (sim_attn.h) --------------------------------------------------------- */

/* The block loads of layer `arg` arrived: the layer ends after its compute part (loads overlap
 * with attention) or after attention runs on the loaded blocks (no overlap). */
static void sim__attn_loaded(void *ctx, int64_t arg) {
  sim_eng *E = ctx;
  const sim_attn_plan *pl = &E->attn.plan;
  int64_t now = E->ev.now, end, stall;
  if (E->p->attn.prm.load_overlap) {
    stall = now > E->attn_ready_ns ? now - E->attn_ready_ns : 0;
    end = (now > E->attn_ready_ns ? now : E->attn_ready_ns) + pl->post_ns[arg];
  } else {
    stall = now - E->attn_load_start;
    end = now + pl->att_ns[arg] + pl->post_ns[arg];
  }
  sim__st(E, SIM_STAT_ATTN_PCIE_STALL_NS, stall);
  sim__at(E, end, sim__ev_layer, arg + 1);
}

/* Layer `arg`'s selection is done: its missing blocks start loading over H2D. */
static void sim__ev_attn_load(void *ctx, int64_t arg) {
  sim_eng *E = ctx;
  int32_t route[1] = {E->link[SIM_LINK_H2D]};
  E->attn_load_start = E->ev.now;
  E->attn_ready_ns = E->ev.now + E->attn.plan.att_ns[arg];
  if (sim_net_start(&E->net, route, 1, (double)E->attn.plan.h2d_bytes[arg], 0, sim__attn_loaded,
                    E, arg, NULL, E->err)) {
    E->stop = 1;
  }
}

/* Runs layers cur_layer .. k-1: those without block loads in one event, then a layer with loads
 * through its H2D flow. */
static void sim__attn_layers(sim_eng *E, int64_t k) {
  const sim_attn_plan *pl = &E->attn.plan;
  int64_t c = E->cur_layer, t = 0;
  while (c < k && pl->h2d_bytes[c] == 0) t += pl->plain_ns[c++];
  if (c > E->cur_layer) {
    sim__at(E, E->ev.now + t, sim__ev_layer, c);
    return;
  }
  sim__at(E, E->ev.now + pl->pre_ns[c], sim__ev_attn_load, c);
}

static void sim__d2h_done(void *ctx, int64_t arg) {
  (void)ctx;
  (void)arg;
}

/* Plans the iteration's layers (sim_attn_iter) and the prefill share with attention priced by
 * the module; the cost model is asked for the layer time without decode attention. */
static void sim__attn_plan(sim_eng *E, int32_t np, int64_t nd) {
  const sim_params *p = E->p;
  int64_t n = 0, new_kv = 0;
  for (int32_t b = 0; b < E->n_batch; b++) {
    sim_job *J = &E->jobs[E->batch[b]];
    if (J->state == JOB_PREFILL) {
      new_kv += J->prefill;
    } else if (!E->iter_prefill_only) {
      E->attn_seqs[n++] = (sim_attn_seq){E->batch[b], J->input + J->decoded};
      new_kv++;
    }
  }
  int64_t post, head;
  sim_iter_work w0 = {np, E->w_hist, E->w_new, nd, 0};
  sim_cost_iter(&p->cost, &w0, &post, &head);
  if (sim_attn_iter(&E->attn, E->attn_seqs, n, post, new_kv, E->has_store, E->err)) {
    E->stop = 1;
    return;
  }
  E->layer_ns = post;
  E->head_ns = head;
  const sim_attn_plan *pl = &E->attn.plan;
  if (np > 0 && nd > 0) {
    int64_t lp, hp, ld, hd;
    sim_iter_work wp = {np, E->w_hist, E->w_new, 0, 0}, wd = {0, NULL, NULL, nd, 0};
    sim_cost_iter(&p->cost, &wp, &lp, &hp);
    sim_cost_iter(&p->cost, &wd, &ld, &hd);
    double a = (double)(E->L * lp + hp), b = (double)(E->L * ld + hd + pl->decode_ns);
    E->prefill_share = a + b > 0 ? a / (a + b) : 0;
  }
  if (pl->d2h_bytes > 0) {
    int32_t route[1] = {E->link[SIM_LINK_D2H]};
    if (sim_net_start(&E->net, route, 1, (double)pl->d2h_bytes, 0, sim__d2h_done, E, 0, NULL,
                      E->err)) {
      E->stop = 1;
    }
  }
}

/* Runs the iteration's layers as far as the loaded KV allows. */
void sim__advance(sim_eng *E) {
  if (E->state == ST_WAIT_LOAD) {
    E->iter_stall += E->ev.now - E->wait_start;
    for (int32_t i = 0; i < E->n_iter_prefill; i++) {
      sim_job *J = &E->jobs[E->iter_prefill[i]];
      if (J->load_wait_start >= 0) J->load_wait_ns += E->ev.now - J->load_wait_start;
      J->load_wait_start = -1;
    }
  }
  int64_t k = E->L;
  for (int32_t i = 0; i < E->n_iter_prefill; i++) {
    int64_t l = E->jobs[E->iter_prefill[i]].layers_loaded;
    if (l < k) k = l;
  }
  if (E->cur_layer < E->L) {
    if (k > E->cur_layer) {
      E->state = ST_RUNNING;
      if (E->attn_on) {
        sim__attn_layers(E, k); /* attention: per-layer times and block loads */
        return;
      }
      sim__at(E, E->ev.now + (k - E->cur_layer) * E->layer_ns, sim__ev_layer, k);
      return;
    }
    E->state = ST_WAIT_LOAD;
    E->wait_start = E->ev.now;
    for (int32_t i = 0; i < E->n_iter_prefill; i++) {
      sim_job *J = &E->jobs[E->iter_prefill[i]];
      J->load_wait_start = J->layers_loaded <= E->cur_layer ? E->ev.now : -1;
    }
    return;
  }
  E->state = ST_RUNNING;
  sim__at(E, E->ev.now + E->head_ns, sim__ev_iter_end, 0);
}

static void sim__start_iteration(sim_eng *E) {
  const sim_params *p = E->p;
  if (E->sync_pending > 0) {
    E->state = ST_STALL_SAVE;
    E->stall_start = E->ev.now;
    return;
  }
  sim__try_admit(E);
  sim__head_prepare(E);
  if (E->n_batch == 0 || E->stop) {
    E->state = ST_IDLE;
    return;
  }
  int32_t np = 0;
  int64_t nd = 0, ctx_sum = 0;
  /* prefill first: an iteration with new prefills runs only them */
  E->iter_prefill_only = 0;
  if (p->batching == SIM_BATCH_PREFILL_FIRST) {
    for (int32_t b = 0; b < E->n_batch && !E->iter_prefill_only; b++) {
      E->iter_prefill_only = E->jobs[E->batch[b]].state == JOB_PREFILL;
    }
  }
  for (int32_t b = 0; b < E->n_batch; b++) {
    sim_job *J = &E->jobs[E->batch[b]];
    if (J->state != JOB_PREFILL && E->iter_prefill_only) continue;
    if (J->state == JOB_PREFILL) {
      E->w_hist[np] = J->hit;
      E->w_new[np] = J->prefill;
      E->iter_prefill[np] = E->batch[b];
      J->load_wait_start = -1;
      np++;
    } else {
      nd++;
      ctx_sum += J->input + J->decoded;
    }
  }
  sim_iter_work w = {np, E->w_hist, E->w_new, nd, ctx_sum};
  sim_cost_iter(&p->cost, &w, &E->layer_ns, &E->head_ns);
  if (np > 0 && nd > 0) {
    int64_t lp, hp, ld, hd;
    sim_iter_work wp = {np, E->w_hist, E->w_new, 0, 0}, wd = {0, NULL, NULL, nd, ctx_sum};
    sim_cost_iter(&p->cost, &wp, &lp, &hp);
    sim_cost_iter(&p->cost, &wd, &ld, &hd);
    double a = (double)(E->L * lp + hp), b = (double)(E->L * ld + hd);
    E->prefill_share = a + b > 0 ? a / (a + b) : 0;
  } else {
    E->prefill_share = np > 0 ? 1.0 : 0.0;
  }
  if (E->attn_on) sim__attn_plan(E, np, nd); /* attention */
  E->iter_sat = E->q_len > 0;
  /* the GPU is the bottleneck: the queue head is ready (its KV settled) but finds no room */
  E->iter_gpu_sat = E->q_len > 0 && !E->jobs[sim__q_at(E, 0)].waiting_unit;
  E->n_iter_prefill = np;
  E->iter_start = E->ev.now;
  E->iter_stall = 0;
  E->cur_layer = 0;
  sim__st(E, SIM_STAT_ITERATIONS, 1);
  if (np > 0) {
    sim__logf(E, "iter prefill=%d decode=%lld layer_ns=%lld head_ns=%lld", np, (long long)nd,
              (long long)E->layer_ns, (long long)E->head_ns);
  }
  E->state = ST_RUNNING;
  sim__advance(E);
}

void sim__kick(sim_eng *E) {
  if (E->state == ST_IDLE && !E->stop) sim__start_iteration(E);
}

void sim__job_maybe_free(sim_eng *E, int32_t j) {
  sim_job *J = &E->jobs[j];
  if (J->state != JOB_DONE || J->saves_inflight > 0) return;
  if (J->hold_hbm) sim_tier_release(&E->hbm_kv, J->reserve_bytes);
  sim__job_release(E, j);
}

static void sim__finish_job(sim_eng *E, int32_t j) {
  const sim_params *p = E->p;
  sim_job *J = &E->jobs[j];
  const trace_turn *u = &E->t->turns[J->turn];
  sim_sess *S = &E->sess[J->session];
  sim_request *R = &E->res->req[J->turn];
  if (R->finish_ns != -1) {
    E_FAIL(E, KV_ESTATE, "engine: session %lld turn %d completed twice", (long long)R->session_id,
           R->turn);
    return;
  }
  R->admit_ns = J->admit_ns;
  R->first_token_ns = J->first_ns;
  R->finish_ns = E->ev.now;
  R->hit_tokens = J->hit;
  R->prefill_tokens = J->prefill;
  R->src = J->src;
  R->tbt_mean_ns = J->out > 1 ? J->tbt_sum / (J->out - 1) : 0;
  R->tbt_max_ns = J->tbt_max;
  R->load_wait_ns = J->load_wait_ns;
  E->n_completed++;
  sim__st(E, SIM_STAT_COMPLETED, 1);
  if (E->attn_on) sim_attn_release(&E->attn, j); /* attention */
  sim__logf(E, "done s=%lld turn=%d", (long long)R->session_id, u->index);
  S->ctx = J->input + J->out;
  S->job = -1;
  S->stale = J->leaves_stale; /* a turn that recomputed its history leaves valid KV */
  /* save what is not saved yet */
  int64_t ctx_tokens = J->input + J->out;
  if (E->has_store) {
    if (p->async_save) {
      sim__save(E, j, ctx_tokens, 0);
    } else {
      sim__save(E, j, ctx_tokens, 1);
    }
    /* release the units */
    if (J->unit >= 0) {
      int32_t x = J->unit;
      sim_store_unpin(&E->store, x);
      sim_unit *un = &E->store.u[x];
      if (un->busy == 0) sim_store_touch(&E->store, x, E->ev.now);
      else un->last_access_ns = E->ev.now, un->access_seq = ++E->store.seq;
      sim_store_set_next_use(&E->store, x, sim__next_use(E, j));
      if (J->save_failed && un->busy == 0 && un->pins == 0) {
        sim_store_drop(&E->store, x, SIM_STAT_INVALIDATED);
      }
      J->unit = -1;
    }
    for (int32_t k = J->n_blocks - 1; k >= 0; k--) {
      int32_t x = J->blocks[k];
      sim_store_unpin(&E->store, x);
      if (E->store.u[x].busy == 0) sim_store_touch(&E->store, x, E->ev.now);
    }
    J->n_blocks = 0;
    /* the session has no queued job any more: its unit leaves the look-ahead window */
    int32_t x = sim__sess_unit(E, J->session);
    if (x >= 0) sim_store_set_qpos(&E->store, x, -1);
  }
  int rescan = E->has_store && E->n_ann > 0; /* DRAM room changed (announced turns wait) */
  /* HBM: the job's KV space, or the write buffer for what is still being written */
  if (J->saves_inflight == 0) {
    sim_tier_release(&E->hbm_kv, J->reserve_bytes);
  } else if (p->async_save && sim_tier_alloc(&E->hbm_wb, J->inflight_bytes) == 0) {
    for (int32_t r = J->save_list; r >= 0; r = E->saves[r].next_in_job) E->saves[r].in_wb = 1;
    sim_tier_release(&E->hbm_kv, J->reserve_bytes);
  } else {
    J->hold_hbm = 1;
  }
  J->state = JOB_DONE;
  /* the session's next turn */
  const trace_session *TS = &E->t->sessions[J->session];
  if (u->index + 1 < TS->n_turns) {
    const trace_turn *nx = &E->t->turns[J->turn + 1];
    int64_t at;
    if (p->replay == SIM_REPLAY_OPEN || nx->think_ns < 0) {
      int64_t gap = nx->arrival_ns - u->arrival_ns;
      at = p->replay == SIM_REPLAY_OPEN ? nx->arrival_ns : E->ev.now + (gap > 0 ? gap : 0);
      if (at < E->ev.now) at = E->ev.now;
    } else {
      at = E->ev.now + nx->think_ns;
    }
    sim__at(E, at, sim__ev_turn, J->turn + 1);
    if (p->cache.lookahead == SIM_LOOKAHEAD_TRACE && E->has_store &&
        sim__announce(E, at, J->turn + 1, J->session)) {
      E_FAIL(E, KV_ENOMEM, "engine: out of memory (announced turns)");
    }
  }
  if (rescan) sim__prefetch_scan(E);
  sim__job_maybe_free(E, j);
}

static void sim__ev_iter_end(void *ctx, int64_t arg) {
  (void)arg;
  sim_eng *E = ctx;
  const sim_params *p = E->p;
  int64_t now = E->ev.now, dur = now - E->iter_start;
  sim__st(E, SIM_STAT_GPU_BUSY_NS, dur);
  sim__st(E, SIM_STAT_LOAD_STALL_NS, E->iter_stall);
  sim__st(E, SIM_STAT_PREFILL_NS,
          E->iter_stall + (int64_t)llround((double)(dur - E->iter_stall) * E->prefill_share));
  if (E->iter_gpu_sat) sim__st(E, SIM_STAT_GPU_SAT_NS, dur);
  if (E->iter_sat) {
    sim__st(E, SIM_STAT_SAT_NS, dur);
    sim__st(E, SIM_STAT_SAT_TOKENS, E->iter_prefill_only ? E->n_iter_prefill : E->n_batch);
  }
  int32_t kept = 0;
  for (int32_t b = 0; b < E->n_batch; b++) {
    int32_t j = E->batch[b];
    sim_job *J = &E->jobs[j];
    if (E->iter_prefill_only && J->state != JOB_PREFILL) { /* waited for the prefills */
      E->batch[kept++] = j;
      continue;
    }
    if (J->state == JOB_PREFILL) {
      J->first_ns = now;
      J->decoded = 1;
      J->state = JOB_DECODE;
      if (E->attn_on) { /* attention: with offload only metadata stays in HBM */
        int64_t keep = sim_attn_after_prefill(&p->attn, J->input, J->out);
        if (keep < J->reserve_bytes) {
          sim_tier_release(&E->hbm_kv, J->reserve_bytes - keep);
          J->reserve_bytes = keep;
        }
      }
      sim__logf(E, "first s=%lld turn=%d", (long long)sim__sid(E, J->session),
                E->t->turns[J->turn].index);
      if (p->async_save) sim__save(E, j, J->input, 0);
    } else {
      int64_t gap = now - J->last_tok_ns;
      J->tbt_sum += gap;
      if (gap > J->tbt_max) J->tbt_max = gap;
      J->decoded++;
      if (p->async_save && p->save_chunk_tokens > 0 && J->saved_tokens >= J->input &&
          J->input + J->decoded - J->saved_tokens >= p->save_chunk_tokens) {
        sim__save(E, j, J->input + J->decoded, 0);
      }
    }
    J->last_tok_ns = now;
    sim__st(E, SIM_STAT_DECODE_TOKENS, 1);
    if (J->decoded >= J->out) {
      sim__finish_job(E, j);
    } else {
      E->batch[kept++] = j;
    }
  }
  E->n_batch = kept;
  E->n_iter_prefill = 0;
  E->state = ST_IDLE;
  sim__kick(E);
}

#include "sim_engine.h"

#include <assert.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sim_event.h"
#include "sim_replay.h"
#include "sim_link.h"
#include "sim_store.h"

enum { JOB_FREE = 0, JOB_QUEUED, JOB_PREFILL, JOB_DECODE, JOB_DONE };
enum { ST_IDLE = 0, ST_RUNNING, ST_WAIT_LOAD, ST_STALL_SAVE };
enum { UNIT_FLAG_PREFETCH = 1 };

typedef struct sim_job {
  int64_t turn;
  int32_t session;
  int32_t state;
  int64_t qseq;
  int64_t arrival_ns, admit_ns, first_ns, last_tok_ns;
  int64_t hist, hist_orig, new_tokens, out, input;
  int64_t hit, prefill, decoded;
  int64_t reserve_bytes, rbuf_bytes;
  int32_t src, truncated, looked_up, waiting_unit, warm, fetch_tried, rbuf_tried;
  int64_t shrink_to;                  /* decoupled truncation: unit size after the drop, or -1 */
  /* load stream */
  int32_t layers_loaded, layers_issued, layers_allowed, load_inflight;
  int64_t load_bytes[SIM_TIER_COUNT];
  int64_t load_wait_ns, load_wait_start;
  /* cache units */
  int32_t unit;                       /* session store: the session's unit, pinned, or -1 */
  int32_t *blocks;                    /* block store: pinned hit blocks (n_blocks) */
  int32_t n_blocks, cap_blocks;
  int32_t saved_blocks;
  /* saving */
  int64_t saved_tokens;
  int32_t saves_inflight, save_failed, hold_hbm;
  int64_t inflight_bytes;
  int32_t save_list;                  /* first save record of this job */
  /* decode */
  int64_t tbt_sum, tbt_max;
  int32_t next_free;
} sim_job;

typedef struct sim_save {
  int32_t job;
  int32_t sync, in_wb;
  int64_t bytes;
  int32_t *units;
  int32_t n_units, cap_units;
  int32_t next_in_job;
  int32_t next_free;
} sim_save;

typedef struct sim_sess {
  int64_t ctx;          /* effective context after the last completed turn */
  int64_t first_block;  /* absolute index of the first kept block (block store, decoupled) */
  int32_t epoch;        /* synthesized block hashes change with it (TT/NKVT truncation) */
  int32_t job;          /* job in the system, or -1 */
} sim_sess;

typedef struct sim_eng {
  const sim_params *p;
  const trace *t;
  FILE *log;
  sim_events ev;
  sim_net net;
  sim_store store;
  int has_store;
  int32_t link[SIM_LINK_ROLE_COUNT];
  sim_tier hbm_kv, hbm_wb;
  int64_t bpt;          /* KV bytes per token */
  int64_t L;            /* layers */
  /* jobs and saves */
  sim_job *jobs;
  int32_t cap_jobs, free_job;
  int64_t live_jobs;
  sim_save *saves;
  int32_t cap_saves, free_save;
  /* queue (ring of job ids) */
  int32_t *q;
  int64_t q_head, q_len, q_cap, n_enq, n_deq;
  /* batch */
  int32_t *batch;
  int32_t n_batch;
  int64_t *w_hist, *w_new;
  int32_t *iter_prefill;
  int32_t n_iter_prefill;
  /* iteration state */
  int state;
  int64_t iter_start, layer_ns, head_ns, cur_layer, wait_start, iter_stall;
  double prefill_share;
  int64_t stall_start;
  int64_t sync_pending;
  /* sessions, arrivals */
  sim_sess *sess;
  int64_t n_arrived, n_completed;
  int warm_done;
  int64_t prefetch_inflight, W_e, W_p;
  int pf_blocked;
  int64_t *opt_next;    /* block store + opt + trace hashes: next use time by hash position */
  uint64_t *hbuf;
  int64_t *hbuf_tok;
  int64_t cap_hbuf;
  sim_stats stats;
  sim_result *res;
  kv_error *err;
  int stop;
  /* [attention] (sim_attn.h): decode attention priced per layer; hooks marked "attention" */
  int attn_on;
  sim_attn_run attn;
  sim_attn_seq *attn_seqs;
  int64_t attn_pool_bytes, attn_ready_ns, attn_load_start;
  int iter_sat;             /* the iteration started with requests waiting in the queue */
} sim_eng;

#define E_FAIL(E, code, ...)                          \
  do {                                                \
    if (!(E)->stop) kv_error_set((E)->err, code, __VA_ARGS__); \
    (E)->stop = 1;                                    \
  } while (0)

static void sim__kick(sim_eng *E);
static void sim__load_next(sim_eng *E, int32_t jid);
static void sim__advance(sim_eng *E);
static void sim__prefetch_scan(sim_eng *E);
static void sim__prefetch_enter(sim_eng *E, int32_t j);

/* ---- small helpers ------------------------------------------------------------------------ */

static void sim__st(sim_eng *E, int stat, int64_t v) { E->stats.v[stat] += v; }

static void sim__logf(sim_eng *E, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

#include <stdarg.h>
static void sim__logf(sim_eng *E, const char *fmt, ...) {
  if (!E->log) return;
  fprintf(E->log, "%15lld ", (long long)E->ev.now);
  va_list ap;
  va_start(ap, fmt);
  vfprintf(E->log, fmt, ap);
  va_end(ap);
  fputc('\n', E->log);
}

static uint64_t sim__mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

static int64_t sim__sid(sim_eng *E, int32_t s) { return E->t->sessions[s].id; }

static sim_event_id sim__at(sim_eng *E, int64_t t, sim_event_fn fn, int64_t arg) {
  sim_event_id id = sim_event_schedule(&E->ev, t, fn, E, arg, E->err);
  if (id.slot < 0) E->stop = 1;
  return id;
}

int64_t sim_engine_kv_space(const sim_params *p) {
  double total = (double)p->n_gpus * p->hw.hbm_bytes * (1.0 - p->hbm_reserve_frac);
  double weights = p->model.params * (double)p->model.bytes_per_elem;
  double v = total - weights - (double)p->tier_bytes[SIM_TIER_HBM] - (double)p->write_buffer_bytes;
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

/* ---- jobs and save records ---------------------------------------------------------------- */

static int32_t sim__job_alloc(sim_eng *E) {
  if (E->free_job < 0) {
    int32_t nc = E->cap_jobs ? E->cap_jobs * 2 : 64;
    sim_job *nj = realloc(E->jobs, (size_t)nc * sizeof *nj);
    if (!nj) return -1;
    E->jobs = nj;
    for (int32_t i = nc - 1; i >= E->cap_jobs; i--) {
      memset(&nj[i], 0, sizeof nj[i]);
      nj[i].next_free = E->free_job;
      E->free_job = i;
    }
    E->cap_jobs = nc;
  }
  int32_t j = E->free_job;
  sim_job *J = &E->jobs[j];
  E->free_job = J->next_free;
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

static void sim__job_release(sim_eng *E, int32_t j) {
  sim_job *J = &E->jobs[j];
  J->state = JOB_FREE;
  J->next_free = E->free_job;
  E->free_job = j;
  E->live_jobs--;
}

static int32_t sim__save_alloc(sim_eng *E, int32_t job, int sync) {
  if (E->free_save < 0) {
    int32_t nc = E->cap_saves ? E->cap_saves * 2 : 64;
    sim_save *ns = realloc(E->saves, (size_t)nc * sizeof *ns);
    if (!ns) return -1;
    E->saves = ns;
    for (int32_t i = nc - 1; i >= E->cap_saves; i--) {
      memset(&ns[i], 0, sizeof ns[i]);
      ns[i].next_free = E->free_save;
      E->free_save = i;
    }
    E->cap_saves = nc;
  }
  int32_t r = E->free_save;
  sim_save *S = &E->saves[r];
  E->free_save = S->next_free;
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

/* ---- queue -------------------------------------------------------------------------------- */

static int32_t sim__q_at(const sim_eng *E, int64_t i) { return E->q[(E->q_head + i) % E->q_cap]; }

static int sim__q_push(sim_eng *E, int32_t j) {
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
static void sim__q_remove(sim_eng *E, int64_t pos) {
  for (int64_t k = pos; k > 0; k--) {
    E->q[(E->q_head + k) % E->q_cap] = E->q[(E->q_head + k - 1) % E->q_cap];
  }
  E->q_head = (E->q_head + 1) % E->q_cap;
  E->q_len--;
}

/* ---- cache lookup ------------------------------------------------------------------------- */

/* Unit of a session (session store), or -1. */
static int32_t sim__sess_unit(sim_eng *E, int32_t s) {
  if (!E->has_store || E->p->store != SIM_STORE_SESSION) return -1;
  return sim_store_find(&E->store, (uint64_t)s, E->ev.now);
}

/* Sets the look-ahead eviction window mark of job j's session unit. */
static void sim__window_mark(sim_eng *E, int32_t j) {
  sim_job *J = &E->jobs[j];
  int32_t x = sim__sess_unit(E, J->session);
  if (x >= 0 && E->store.u[x].pins == 0) sim_store_set_qpos(&E->store, x, J->qseq);
}

/* Block hashes of job j's input (trace hashes or synthesized); fills E->hbuf / hbuf_tok.
 * Returns the number of blocks usable for caching. */
static int64_t sim__job_hashes(sim_eng *E, int32_t j, int64_t upto_tokens) {
  sim_job *J = &E->jobs[j];
  const trace *t = E->t;
  const trace_turn *u = &t->turns[J->turn];
  int64_t B = E->p->block_tokens;
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
static int64_t sim__next_use(sim_eng *E, int32_t j) {
  const sim_job *J = &E->jobs[j];
  const trace_turn *u = &E->t->turns[J->turn];
  const trace_session *S = &E->t->sessions[J->session];
  if (u->index + 1 >= S->n_turns) return INT64_MAX;
  return E->t->turns[J->turn + 1].arrival_ns;
}

/* The unit (or blocks) of job j are settled (not in flight): apply the truncation shrink and
 * the SSD -> DRAM promotion, then start loading. */
static void sim__unit_settled(sim_eng *E, int32_t j) {
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

static void sim__lookup(sim_eng *E, int32_t j) {
  sim_job *J = &E->jobs[j];
  const sim_params *p = E->p;
  J->looked_up = 1;
  J->hit = 0;
  int tier_mask = 0;
  if (E->has_store && p->store == SIM_STORE_SESSION && J->hist > 0) {
    int32_t x = sim_store_find(&E->store, (uint64_t)J->session, E->ev.now);
    if (x >= 0) {
      sim_unit *u = &E->store.u[x];
      int usable = u->tokens >= J->hist_orig;
      if (usable && J->truncated && p->truncation != SIM_TRUNC_DECOUPLED) usable = 0;
      if (usable) {
        sim_store_pin(&E->store, x);
        sim_store_set_qpos(&E->store, x, -1);
        sim_store_touch(&E->store, x, E->ev.now);
        J->unit = x;
        J->hit = J->hist;
        J->saved_tokens = J->hist;
        if (J->truncated) J->shrink_to = J->hist;
        J->load_bytes[u->tier] = J->hist * E->bpt;
        tier_mask |= 1 << u->tier;
        if (u->busy) {
          J->waiting_unit = 1;
          u->waiter = j;
          sim__st(E, SIM_STAT_WAIT_UNIT, 1);
        }
      } else if (u->pins == 0 && u->busy == 0) {
        sim_store_drop(&E->store, x, SIM_STAT_INVALIDATED);
      }
    }
  } else if (E->has_store && p->store == SIM_STORE_BLOCK) {
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
      tier_mask |= 1 << u->tier;
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

/* ---- loading ------------------------------------------------------------------------------ */

static void sim__load_done(void *ctx, int64_t arg) {
  sim_eng *E = ctx;
  int32_t j = (int32_t)arg;
  sim_job *J = &E->jobs[j];
  assert(J->load_inflight > 0);
  if (--J->load_inflight > 0) return;
  J->layers_loaded = J->layers_issued;
  sim__load_next(E, j);
  if (E->state == ST_WAIT_LOAD && J->state == JOB_PREFILL) sim__advance(E);
}

static void sim__load_next(sim_eng *E, int32_t j) {
  sim_job *J = &E->jobs[j];
  if (J->waiting_unit || J->load_inflight > 0 || J->layers_issued >= J->layers_allowed) return;
  int64_t remote = J->load_bytes[SIM_TIER_DRAM] + J->load_bytes[SIM_TIER_SSD];
  if (remote == 0) {
    J->layers_loaded = J->layers_issued = (int32_t)E->L;
    return;
  }
  int64_t from = J->layers_issued;
  int64_t to = E->p->preload ? from + 1 : E->L;
  if (from == 0 && J->unit >= 0 && J->load_bytes[SIM_TIER_SSD] > 0 &&
      E->store.tiers[SIM_TIER_DRAM].capacity > 0 &&
      sim_store_move(&E->store, J->unit, SIM_TIER_DRAM, 0, J->qseq) == 0) {
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
  if (J->load_inflight == 0) J->layers_loaded = J->layers_issued;
}

/* Prepares the queue head for admission: cache lookup, on-demand SSD -> DRAM fetch of its
 * session unit (the head is admitted only when its KV is settled), and pre-loading of its first
 * read_buffer_layers layers into the HBM read buffer. */
static void sim__head_prepare(sim_eng *E) {
  const sim_params *p = E->p;
  if (E->q_len == 0 || !E->has_store) return;
  int32_t j = sim__q_at(E, 0);
  sim_job *J = &E->jobs[j];
  if (!J->looked_up) sim__lookup(E, j);
  if (J->waiting_unit) return;
  if (J->unit >= 0 && !J->fetch_tried) {
    J->fetch_tried = 1;
    sim_unit *u = &E->store.u[J->unit];
    if (u->tier == SIM_TIER_SSD && E->store.tiers[SIM_TIER_DRAM].capacity > 0 &&
        sim_store_move(&E->store, J->unit, SIM_TIER_DRAM, 1, J->qseq) == 0) {
      sim__st(E, SIM_STAT_FETCHES, 1);
      if (u->busy) {
        J->waiting_unit = 1;
        u->waiter = j;
        return;
      }
      sim__unit_settled(E, j);
    }
  }
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
static void sim__job_prepare(sim_eng *E, int32_t j) {
  if (!E->has_store) return;
  sim_job *J = &E->jobs[j];
  if (!J->looked_up) sim__lookup(E, j);
  if (J->waiting_unit || J->unit < 0 || J->fetch_tried) return;
  J->fetch_tried = 1;
  sim_unit *u = &E->store.u[J->unit];
  if (u->tier == SIM_TIER_SSD && E->store.tiers[SIM_TIER_DRAM].capacity > 0 &&
      sim_store_move(&E->store, J->unit, SIM_TIER_DRAM, 1, J->qseq) == 0) {
    sim__st(E, SIM_STAT_FETCHES, 1);
    if (u->busy) {
      J->waiting_unit = 1;
      u->waiter = j;
      return;
    }
    sim__unit_settled(E, j);
  }
}

/* ---- saving ------------------------------------------------------------------------------- */

static void sim__job_maybe_free(sim_eng *E, int32_t j);

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
  S->next_free = E->free_save;
  E->free_save = r;
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
      if (sim_store_resize(st, x, target, J->qseq)) {
        sim_store_unpin(st, x);
        sim_store_drop(st, x, SIM_STAT_INVALIDATED);
        J->save_failed = 1;
        sim__st(E, SIM_STAT_SAVE_FAILED, 1);
        return;
      }
    } else {
      x = sim_store_create(st, (uint64_t)J->session, target, sim_store_top_tier(st), E->ev.now,
                           J->qseq);
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
  } else if (sim_store_resize(st, x, target, J->qseq)) {
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
                         J->qseq);
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
    else if (E->p->eviction->uses_future) sim_store_set_next_use(st, x, sim__next_use(E, j));
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

static void sim__save(sim_eng *E, int32_t j, int64_t upto, int sync) {
  if (!E->has_store) return;
  if (E->p->store == SIM_STORE_SESSION) sim__save_session(E, j, upto, sync);
  else sim__save_blocks(E, j, upto, sync);
}

/* ---- arrivals ----------------------------------------------------------------------------- */

static void sim__turn_arrive(sim_eng *E, int64_t ti);

static void sim__ev_turn(void *ctx, int64_t arg) {
  sim_eng *E = ctx;
  sim__turn_arrive(E, arg);
}

static void sim__ev_session(void *ctx, int64_t s) {
  sim_eng *E = ctx;
  const trace *t = E->t;
  for (int64_t n = s + 1; n < t->n_sessions; n++) {
    if (t->sessions[n].n_turns > 0) {
      sim__at(E, t->sessions[n].arrival_ns, sim__ev_session, n);
      break;
    }
  }
  sim__turn_arrive(E, t->sessions[s].first_turn);
}

static void sim__snapshot_warm(sim_eng *E) {
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
  J->warm = E->n_arrived < p->warmup_turns;
  /* effective token counts */
  int64_t hist = (int64_t)u->input_tokens - u->new_tokens;
  if ((t->flags & TRACE_FLAG_FULL_HISTORY) && u->index > 0) hist = S->ctx;
  int64_t nw = u->new_tokens, out = u->output_tokens > 0 ? u->output_tokens : 1;
  J->hist_orig = hist;
  int64_t W = p->model.context_window;
  if (hist + nw + out > W) {
    J->truncated = 1;
    sim__st(E, SIM_STAT_TRUNCATIONS, 1);
    int blockwise = p->store == SIM_STORE_BLOCK && p->truncation == SIM_TRUNC_DECOUPLED;
    int64_t dropped = 0;
    while (hist > 0 && hist + nw + out > W) {
      int64_t d = (int64_t)floor(p->truncation_ratio * (double)hist);
      if (d < 1) d = 1;
      if (blockwise) d = (d + p->block_tokens - 1) / p->block_tokens * p->block_tokens;
      if (d > hist) d = hist;
      hist -= d;
      dropped += d;
    }
    if (blockwise && dropped % p->block_tokens == 0) {
      S->first_block += dropped / p->block_tokens;
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
  J->qseq = E->n_enq++;
  if (sim__q_push(E, j)) {
    E_FAIL(E, KV_ENOMEM, "engine: out of memory (queue)");
    return;
  }
  if (J->qseq - E->n_deq < E->W_e) sim__window_mark(E, j);
  if (J->qseq - E->n_deq < E->W_p) sim__prefetch_enter(E, j);
  if (E->q_len == 1) sim__head_prepare(E);
  sim__kick(E);
}

/* ---- prefetch ----------------------------------------------------------------------------- */

static int sim__prefetch_on(const sim_eng *E) {
  const sim_params *p = E->p;
  return p->prefetch == SIM_PREFETCH_LOOKAHEAD && E->has_store &&
         p->store == SIM_STORE_SESSION && E->store.tiers[SIM_TIER_DRAM].capacity > 0 &&
         E->store.tiers[SIM_TIER_SSD].capacity > 0;
}

/* Starts the SSD -> DRAM prefetch of queued job j's unit when it is on SSD and idle.
 * Returns 0 to go on, 1 when no more prefetches can start (pipeline full or DRAM full). */
static int sim__prefetch_job(sim_eng *E, int32_t j) {
  if (E->prefetch_inflight >= E->p->prefetch_max_inflight) return 1;
  sim_job *J = &E->jobs[j];
  if (J->looked_up || J->hist == 0) return 0;
  int32_t x = sim__sess_unit(E, J->session);
  if (x < 0) return 0;
  sim_unit *u = &E->store.u[x];
  if (u->tier != SIM_TIER_SSD || u->busy || u->pins || u->tokens < J->hist_orig) return 0;
  if (sim_store_move(&E->store, x, SIM_TIER_DRAM, 1, J->qseq)) {
    E->pf_blocked = 1; /* DRAM has no room now: rescan after the next admission */
    return 1;
  }
  sim__st(E, SIM_STAT_PREFETCHES, 1);
  if (u->busy) {
    u->flags |= UNIT_FLAG_PREFETCH;
    E->prefetch_inflight++;
  }
  return 0;
}

/* Full scan of the look-ahead prefetch window (when a prefetch slot frees up). Jobs entering
 * the window are tried one by one as they enter (sim__prefetch_enter). */
static void sim__prefetch_scan(sim_eng *E) {
  if (!sim__prefetch_on(E)) return;
  int64_t n = E->q_len < E->W_p ? E->q_len : E->W_p;
  for (int64_t i = 0; i < n; i++) {
    if (sim__prefetch_job(E, sim__q_at(E, i))) break;
  }
}

static void sim__prefetch_enter(sim_eng *E, int32_t j) {
  if (sim__prefetch_on(E)) sim__prefetch_job(E, j);
}

static void sim__unit_ready(void *ctx, int32_t x) {
  sim_eng *E = ctx;
  sim_unit *u = &E->store.u[x];
  int rescan = 0;
  if (u->flags & UNIT_FLAG_PREFETCH) {
    u->flags &= ~UNIT_FLAG_PREFETCH;
    E->prefetch_inflight--;
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

/* ---- iterations --------------------------------------------------------------------------- */

static void sim__try_admit(sim_eng *E) {
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
    if (E->q_len >= E->W_e && E->W_e > 0) sim__window_mark(E, sim__q_at(E, E->W_e - 1));
    if (E->pf_blocked) {
      E->pf_blocked = 0;
      sim__prefetch_scan(E);
    } else if (E->q_len >= E->W_p && E->W_p > 0) {
      sim__prefetch_enter(E, sim__q_at(E, E->W_p - 1));
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
    } else {
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
static void sim__advance(sim_eng *E) {
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
  for (int32_t b = 0; b < E->n_batch; b++) {
    sim_job *J = &E->jobs[E->batch[b]];
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

static void sim__kick(sim_eng *E) {
  if (E->state == ST_IDLE && !E->stop) sim__start_iteration(E);
}

static void sim__job_maybe_free(sim_eng *E, int32_t j) {
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
  }
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
  if (E->iter_sat) {
    sim__st(E, SIM_STAT_SAT_NS, dur);
    sim__st(E, SIM_STAT_SAT_TOKENS, E->n_batch);
  }
  int32_t kept = 0;
  for (int32_t b = 0; b < E->n_batch; b++) {
    int32_t j = E->batch[b];
    sim_job *J = &E->jobs[j];
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

/* ---- TTL sweep ---------------------------------------------------------------------------- */

static void sim__ev_ttl(void *ctx, int64_t arg) {
  (void)arg;
  sim_eng *E = ctx;
  sim_store_expire(&E->store, E->ev.now);
  if (E->ev.n_pending > 0) sim__at(E, E->ev.now + E->p->ttl_sweep_ns, sim__ev_ttl, 0);
}

/* ---- run ---------------------------------------------------------------------------------- */

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

int sim_run(const sim_params *p, const trace *t, FILE *log, sim_result *r, kv_error *err) {
  memset(r, 0, sizeof *r);
  int rc = trace_check(t, err);
  if (rc) return rc;
  double wall0 = 0;
  {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    wall0 = (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
  }
  sim_eng *E = calloc(1, sizeof *E);
  if (!E) return kv_error_set(err, KV_ENOMEM, "engine: out of memory");
  E->p = p;
  E->t = t;
  E->log = log;
  E->err = err;
  E->res = r;
  E->free_job = -1;
  E->free_save = -1;
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
    rc = kv_error_set(err, KV_ENOMEM, "engine: out of memory");
    goto done;
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
    E->sess[s] = (sim_sess){0, 0, 0, -1};
  }
  /* links */
  struct {
    const char *name;
    double bw;
    int64_t lat;
  } links[SIM_LINK_ROLE_COUNT] = {
      {"h2d", p->h2d_bw, p->pcie_latency_ns},
      {"d2h", p->d2h_bw, p->pcie_latency_ns},
      {"ssd_read", p->ssd_read_bw, p->ssd_latency_ns},
      {"ssd_write", p->ssd_write_bw, p->ssd_latency_ns},
  };
  for (int i = 0; i < SIM_LINK_ROLE_COUNT; i++) {
    rc = sim_net_add_link(&E->net, links[i].name, links[i].bw, links[i].lat, err);
    if (rc < 0) goto done;
    E->link[i] = rc;
  }
  rc = 0;
  /* memory */
  int64_t kv_space = sim_engine_kv_space(p);
  r->kv_space_bytes = kv_space;
  if (kv_space <= 0) {
    rc = kv_error_set(err, KV_ERANGE, "model %s (%.1f GB of weights) leaves no HBM for KV on %lld "
                      "x %s", p->model.name, p->model.params * (double)p->model.bytes_per_elem / 1e9,
                      (long long)p->n_gpus, p->hw.name);
    goto done;
  }
  sim_tier_init(&E->hbm_kv, "hbm_kv", kv_space);
  sim_tier_init(&E->hbm_wb, "hbm_write_buffer", p->write_buffer_bytes);
  E->attn_on = p->attn.prm.mode != SIM_ATTN_OFF;
  if (E->attn_on) { /* attention: the block cache is carved out of the KV space */
    const sim_attn_params *ap = &p->attn.prm;
    int64_t pool = !ap->offload ? 0
                   : ap->pool_bytes > 0 ? ap->pool_bytes : (int64_t)floor(ap->pool_frac * (double)kv_space);
    if (pool >= kv_space || sim_tier_alloc(&E->hbm_kv, pool)) {
      rc = kv_error_set(err, KV_ERANGE, "[attention] block cache of %lld bytes does not fit in the "
                        "HBM KV space (%lld bytes)", (long long)pool, (long long)kv_space);
      goto done;
    }
    E->attn_pool_bytes = pool;
    E->attn_seqs = malloc((size_t)p->batch_limit * sizeof *E->attn_seqs);
    if (!E->attn_seqs) {
      rc = kv_error_set(err, KV_ENOMEM, "engine: out of memory");
      goto done;
    }
    if ((rc = sim_attn_run_init(&E->attn, &p->attn, p->seed, pool, E->stats.v, err))) goto done;
  }
  E->has_store = p->mode != SIM_MODE_RE;
  if (E->has_store) {
    rc = sim_store_init(&E->store, p->store, p->eviction, p->tier_bytes, E->bpt, p->ttl_ns,
                        &E->net, E->link, E->stats.v, err);
    if (rc) goto done;
    E->store.on_ready = sim__unit_ready;
    E->store.stage_cap = p->demote_buffer_bytes;
    E->store.inclusive = p->ssd_inclusive;
    E->store.ready_ctx = E;
    if (p->store == SIM_STORE_BLOCK && p->eviction->uses_queue) {
      rc = kv_error_set(err, KV_ENOTSUP, "[cache] eviction = %s needs the session-granular store "
                        "(store = session)", p->eviction->name);
      goto done;
    }
    if (p->store == SIM_STORE_BLOCK && p->eviction->uses_future &&
        (t->flags & TRACE_FLAG_HAS_HASHES) && sim__build_opt_next(E)) {
      rc = kv_error_set(err, KV_ENOMEM, "engine: out of memory (OPT next uses)");
      goto done;
    }
  }
  /* look-ahead windows: L_pw = C_mem / S_kv, L_ew = (C_mem + C_disk) / S_kv */
  double skv = sim_engine_mean_session_kv(p, t);
  double cmem = (double)p->tier_bytes[SIM_TIER_DRAM], cdisk = (double)p->tier_bytes[SIM_TIER_SSD];
  E->W_p = p->prefetch_window_jobs > 0 ? p->prefetch_window_jobs
           : skv > 0 ? (int64_t)fmax(1, floor(cmem / skv)) : 1;
  E->W_e = p->evict_window_jobs > 0 ? p->evict_window_jobs
           : skv > 0 ? (int64_t)fmax(1, fmin(1e15, floor((cmem + cdisk) / skv))) : 1;
  if (p->warmup_turns == 0) sim__snapshot_warm(E);
  /* first arrival; TTL sweeps */
  for (int64_t s = 0; s < t->n_sessions; s++) {
    if (t->sessions[s].n_turns > 0) {
      sim__at(E, t->sessions[s].arrival_ns, sim__ev_session, s);
      break;
    }
  }
  if (E->has_store && p->ttl_ns > 0 && p->ttl_sweep_ns > 0) {
    sim__at(E, p->ttl_sweep_ns, sim__ev_ttl, 0);
  }
  /* run */
  sim_events_run(&E->ev, SIM_TIME_MAX, &E->stop);
  if (E->stop) {
    rc = err && err->code ? err->code : KV_ESTATE;
    if (err && !err->msg[0]) kv_error_set(err, KV_ESTATE, "engine stopped");
    goto done;
  }
  if (E->store.failed) {
    rc = kv_error_set(err, KV_ENOMEM, "store: out of memory in an event");
    goto done;
  }
  r->end_ns = E->ev.now;
  if (!E->warm_done) sim__snapshot_warm(E);
  E->stats.v[SIM_STAT_EVENTS] = E->ev.n_fired;
  r->final = E->stats;
  r->attn.gpu_kv_peak_bytes = E->hbm_kv.peak;
  if (E->attn_on) { /* attention: return the block cache; pool comparison over the run */
    sim_tier_release(&E->hbm_kv, E->attn_pool_bytes);
    if ((rc = sim_attn_finish(&E->attn, E->hbm_kv.peak, &r->attn, err))) goto done;
  }
  rc = sim__check_end(E, err);
  if (rc) goto done;
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
done:
  {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    r->wall_s = (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec - wall0;
  }
  if (E->has_store) sim_store_free(&E->store);
  if (E->attn_on) sim_attn_run_free(&E->attn);
  free(E->attn_seqs);
  sim_net_free(&E->net);
  sim_events_free(&E->ev);
  for (int32_t i = 0; i < E->cap_jobs; i++) free(E->jobs[i].blocks);
  for (int32_t i = 0; i < E->cap_saves; i++) free(E->saves[i].units);
  free(E->jobs);
  free(E->saves);
  free(E->q);
  free(E->batch);
  free(E->iter_prefill);
  free(E->w_hist);
  free(E->w_new);
  free(E->sess);
  free(E->opt_next);
  free(E->hbuf);
  free(E->hbuf_tok);
  free(E);
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

/* sim_eng.h — the serving engine's shared state: one struct that the engine's parts read and
 * write, internal to sim/ (sim.h and sim_engine.h are the public contract). The parts, each a
 * .h/.c pair whose header states what it models and which state it owns:
 *
 *   sim_sched   scheduler: job records, the FCFS queue, turn arrival (effective tokens,
 *               truncation), admission, the look-ahead windows                 (q*, W_*, sess)
 *   sim_lookup  cache lookup of a job's history, block hashes, settling of in-flight units,
 *               preparation of the queue head (fetch, read buffer)              (job units, hbuf)
 *   sim_xfer    transfers: layer loads, saves (session and block store), scheduler-aware
 *               prefetch, the store's "unit ready" callback                     (saves, prefetch_*)
 *   sim_iter    the iteration loop: planning (cost model, [attention]), layer-wise progress
 *               waiting for loads, iteration end (tokens, completion, the next turn)  (batch, state)
 *   sim_engine  the run driver: sim_run sets up links, tiers, store, windows, runs the event
 *               loop, checks the invariants and collects the result
 *
 * Calls between parts go through the functions their headers declare (prefix sim__: internal).
 * Every event handler takes the engine as ctx. A part that hits an error calls E_FAIL, which
 * stops the event loop at the next event with the first error kept.
 */
#ifndef SIM_ENG_H
#define SIM_ENG_H

#include <stdint.h>
#include <stdio.h>

#include "sim.h"
#include "sim_event.h"
#include "sim_link.h"
#include "sim_slots.h"
#include "sim_store.h"

/* A job's life: queued (sim_sched) -> prefill (admitted; its first iteration) -> decode ->
 * done (completed; its record lives on while saves are in flight) -> free. */
enum { JOB_FREE = 0, JOB_QUEUED, JOB_PREFILL, JOB_DECODE, JOB_DONE };
/* The engine between iterations (idle), inside one (running), inside one whose next layer waits
 * for a prefill's KV (wait_load), or held until synchronous saves end (stall_save): sim_iter. */
enum { ST_IDLE = 0, ST_RUNNING, ST_WAIT_LOAD, ST_STALL_SAVE };
/* sim_unit.flags bit: the unit's transfer is a prefetch (sim_xfer counts it in flight). */
enum { UNIT_FLAG_PREFETCH = 1 };

/* One turn in the system. Times in ns, token counts effective (after truncation). */
typedef struct sim_job {
  int64_t turn;                       /* trace turn index */
  int32_t session;                    /* trace session index */
  int32_t state;
  int64_t qseq;
  int64_t arrival_ns, admit_ns, first_ns, last_tok_ns;
  int64_t hist, hist_orig, new_tokens, out, input;
  int64_t hit, prefill, decoded;
  int64_t reserve_bytes, rbuf_bytes;
  int32_t src, truncated, looked_up, waiting_unit, warm, fetch_tried, rbuf_tried;
  int32_t leaves_stale;               /* NKVT: used truncated KV; the session's KV is invalid after */
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

/* One write of a job's KV to one tier (a flow): the units it makes busy until it ends. */
typedef struct sim_save {
  int32_t job;
  int32_t sync, in_wb;
  int64_t bytes;
  int32_t *units;
  int32_t n_units, cap_units;
  int32_t next_in_job;
  int32_t next_free;
} sim_save;

/* A turn whose arrival is scheduled (its predecessor completed): the look-ahead windows see it
 * with [cache] lookahead = trace (sim_sched). */
typedef struct sim_announced {
  int64_t at;           /* its arrival time */
  int64_t turn;         /* trace turn index */
  int32_t session;
} sim_announced;

typedef struct sim_sess {
  int64_t ctx;          /* effective context after the last completed turn */
  int64_t first_block;  /* absolute index of the first kept block (block store, decoupled) */
  int32_t epoch;        /* synthesized block hashes change with it (TT/NKVT truncation) */
  int32_t stale;        /* NKVT: its stored KV carries positions of a truncated context */
  int32_t job;          /* job in the system, or -1 */
} sim_sess;

/* The engine's state; the comment of each group names the part that owns it (sim_eng.h top). */
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
  /* jobs and saves: records by index (sim_slots.h); jobs/saves = the pools' arrays, refreshed
   * whenever a pool grows (sim__job_alloc, sim__save_alloc) */
  sim_slots job_pool, save_pool;
  sim_job *jobs;
  sim_save *saves;
  int64_t live_jobs;
  /* queue (ring of job ids): sim_sched */
  int32_t *q;
  int64_t q_head, q_len, q_cap, n_enq, n_deq;
  /* batch and iteration state: sim_iter (admission appends to the batch) */
  int32_t *batch;
  int32_t n_batch;
  int64_t *w_hist, *w_new;
  int32_t *iter_prefill;
  int32_t n_iter_prefill;
  int state;
  int64_t iter_start, layer_ns, head_ns, cur_layer, wait_start, iter_stall;
  double prefill_share;
  int64_t stall_start;
  int64_t sync_pending;
  /* sessions, arrivals, windows: sim_sched; prefetch: sim_xfer */
  sim_sess *sess;
  int64_t n_arrived, n_completed;
  int warm_done;
  int cooling;          /* session arrivals ended ([output] cooldown): later turns are drain */
  int64_t prefetch_inflight, W_e, W_p;
  sim_announced *ann;   /* (n_ann) announced turns by (at, turn): lookahead = trace */
  int64_t n_ann, cap_ann;
  int pf_blocked;
  int64_t *opt_next;    /* block store + opt + trace hashes: next use time by hash position */
  uint64_t *hbuf;       /* (cap_hbuf) a job's block hashes and their tokens: sim_lookup */
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
  int iter_gpu_sat;
  int iter_prefill_only;    /* [engine] batching = prefill_first: this iteration runs prefills only */         /* ... and the queue head ready to run: the GPU is the bottleneck */
} sim_eng;

#define E_FAIL(E, code, ...)                          \
  do {                                                \
    if (!(E)->stop) kv_error_set((E)->err, code, __VA_ARGS__); \
    (E)->stop = 1;                                    \
  } while (0)

/* ---- small helpers shared by the parts (sim_engine.c defines the non-inline ones) ---------- */

static inline void sim__st(sim_eng *E, int stat, int64_t v) { E->stats.v[stat] += v; }

/* A job's look-ahead key (sim_sched.h): its arrival time + 1, the qpos of its session unit
 * inside the eviction window and the limit of what making room for it may take. */
static inline int64_t sim__key(const sim_job *J) { return J->arrival_ns + 1; }

/* The trace id of session index s (for logs and messages). */
static inline int64_t sim__sid(const sim_eng *E, int32_t s) { return E->t->sessions[s].id; }

/* splitmix64's finaliser: synthesized block hashes and the OPT map's slots. */
static inline uint64_t sim__mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

/* One line of the simulated-time log ([output] log = true): "<now ns> <message>". */
void sim__logf(sim_eng *E, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* Schedules fn(E, arg) at absolute time t; on failure the engine stops (E->stop). */
sim_event_id sim__at(sim_eng *E, int64_t t, sim_event_fn fn, int64_t arg);

#endif /* SIM_ENG_H */

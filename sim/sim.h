/* sim.h — the serving simulator's public API: experiment parameters from an INI config, a run
 * over a workload (traces/trace.h), and its results (per-request records, counters, summary).
 *
 *   kv_config *cfg;  kv_config_load("exp.ini", &cfg, &err);   // + kv_config_override(...)
 *   sim_params p;    sim_params_from_config(cfg, &p, &err);     // reads every section but
 *   trace t;         sim_workload_build(cfg, &p, &t, &err);     // [workload]
 *   kv_config_check_unused(cfg, &err);                          // unknown keys are errors
 *   sim_result r;    sim_run(&p, &t, log, &r, &err);
 *   sim_result_write(&r, &p, &t, cfg, "outdir", &err);
 *   sim_result_free(&r); sim_params_free(&p); trace_free(&t);
 *
 * Config sections and keys are listed in docs/sim.md (and in sim_config.c, the one place that
 * reads them; the sections both engines read have their readers in sim_config.h). Units: time
 * in ns internally; config values carry their unit in the key name.
 */
#ifndef SIM_H
#define SIM_H

#include <stdint.h>
#include <stdio.h>

#include "kv_config.h"
#include "kv_err.h"
#include "sim_attn.h"
#include "sim_config.h"
#include "sim_cost.h"
#include "sim_hw.h"
#include "sim_model.h"
#include "sim_policy.h"
#include "sim_stats.h"
#include "sim_store.h"
#include "trace.h"

typedef enum sim_trunc {
  SIM_TRUNC_DECOUPLED = 0, /* KV saved without positions: kept KV stays valid */
  SIM_TRUNC_TT,            /* token truncation: cached KV invalid, recompute the kept tokens */
  SIM_TRUNC_NKVT,          /* KV truncation with positions embedded: cached KV invalidated */
  SIM_TRUNC_COUNT
} sim_trunc;
extern const char *const sim_trunc_names[]; /* "decoupled", "tt", "nkvt" */

/* What an iteration holds: every running sequence (Orca-style mixed prefill + decode), or only
 * the newly admitted prefills when there are any, the decoding sequences waiting one
 * iteration (prefill first, vLLM's default scheduler without chunked prefill). */
typedef enum sim_batching { SIM_BATCH_MIXED = 0, SIM_BATCH_PREFILL_FIRST } sim_batching;
extern const char *const sim_batching_names[]; /* "mixed", "prefill_first" */

typedef enum sim_replay { SIM_REPLAY_CLOSED = 0, SIM_REPLAY_OPEN } sim_replay;
extern const char *const sim_replay_names[]; /* "closed", "open" */

typedef enum sim_time_base { SIM_TIME_BUSY = 0, SIM_TIME_SPAN } sim_time_base;
extern const char *const sim_time_base_names[]; /* "busy", "span" */

/* Where a request's history KV came from: with the block store a hit may span tiers; it is
 * then attributed to the slowest tier involved (SSD, then DRAM, then HBM). */
typedef enum sim_src {
  SIM_SRC_NONE = 0,  /* no history tokens (and no cached prefix) */
  SIM_SRC_MISS,      /* history recomputed */
  SIM_SRC_HBM,
  SIM_SRC_DRAM,
  SIM_SRC_SSD,
  SIM_SRC_COUNT
} sim_src;
extern const char *const sim_src_names[];

typedef struct sim_params {
  uint64_t seed;
  char data_dir[1024];
  char model_path[1200], hw_path[1200];
  sim_model model;
  sim_hw hw;
  int64_t n_gpus;
  /* [engine] */
  int64_t batch_limit;
  sim_batching batching;
  int64_t admit_lookahead;       /* queue positions admission may look at: 1 = strict FCFS; n > 1
                                    lets a job whose KV is ready pass earlier jobs still waiting
                                    for theirs (an SSD fetch), within the first n positions */
  double hbm_reserve_frac;       /* HBM kept for activations etc. */
  int preload;                   /* layer-wise pre-loading */
  int64_t read_buffer_layers;
  int async_save;
  int64_t write_buffer_bytes;
  int64_t save_chunk_tokens;     /* async: decoded KV saved every this many tokens */
  sim_trunc truncation;
  double truncation_ratio;
  /* [cache] (sim_config.h: the reader both engines share) */
  sim_cache_config cache;
  /* [links] (bytes/s, ns) */
  double h2d_bw, d2h_bw, ssd_read_bw, ssd_write_bw;  /* the SSD's: the array's (sim_hw.h) */
  double ssd_mixed_bw;           /* the array's read + write bandwidth when both run */
  int64_t ssd_devices;
  int64_t pcie_latency_ns, ssd_latency_ns;
  /* [cost] */
  sim_cost cost;
  /* [attention]: decode attention priced by measured budgets (sim_attn.h); mode off = as above */
  sim_attn_model attn;
  /* [price] */
  double gpu_price_per_hour, dram_price_per_gib_hour, ssd_price_per_gib_hour;
  sim_time_base time_base;
  /* [workload] (replay part; generation is in sim_workload.h) */
  sim_replay replay;
  /* [output] */
  int64_t warmup_turns;
  int cooldown;                  /* 1: turns arriving after the last session's first turn are
                                    not measured (the drain once session arrivals stop) */
  int log;
  int write_requests_csv;
} sim_params;

/* Reads [sim], [engine], [cache], [links], [cost], [attention], [price], [output] and
 * [workload] replay, loads the model and hardware files (and the attention profile), and checks
 * them. The caller still calls
 * kv_config_check_unused after sim_workload_build. */
int sim_params_from_config(kv_config *cfg, sim_params *p, kv_error *err);
void sim_params_free(sim_params *p);

/* One request (turn). Times are ns from the trace start; -1 when it did not happen. */
typedef struct sim_request {
  int64_t session_id;
  int32_t turn;
  int32_t warmup;          /* 0 measured; 1 arrived among the first warmup_turns turns (warm-up);
                              2 arrived after the session arrivals ended ([output] cooldown) */
  int64_t arrival_ns, admit_ns, first_token_ns, finish_ns;
  int64_t input_tokens, new_tokens, output_tokens;  /* effective, after truncation */
  int64_t hist_tokens, hit_tokens, prefill_tokens;
  int32_t src;             /* sim_src */
  int32_t truncated;
  int64_t tbt_mean_ns, tbt_max_ns;
  int64_t load_wait_ns;    /* time its prefill waited for KV loads */
} sim_request;

typedef struct sim_link_stat {
  char name[32];
  double bytes;
  int64_t busy_ns;
} sim_link_stat;

typedef struct sim_result {
  sim_request *req;        /* (n_req), in trace turn order */
  int64_t n_req;
  sim_stats warm, final;   /* counters at the end of warm-up and at the end */
  sim_stats cool;          /* counters at the end of the measured window: the last session's
                              arrival with [output] cooldown, else the end (= final) */
  int64_t warm_ns, cool_ns, end_ns;
  int64_t events_scheduled, events_fired, events_cancelled;
  sim_link_stat links[SIM_LINK_ROLE_COUNT];
  int64_t tier_peak[SIM_TIER_COUNT];
  int64_t kv_space_bytes;
  sim_attn_result attn;    /* [attention] aggregates (pool, GPU memory peak) */
  double wall_s;
} sim_result;

/* Runs the simulation. `log` (may be NULL) receives the simulated-time log. On success fills
 * *r (caller frees with sim_result_free). Every invariant failure is an error (KV_ESTATE). */
int sim_run(const sim_params *p, const trace *t, FILE *log, sim_result *r, kv_error *err);
void sim_result_free(sim_result *r);

/* Aggregates over the measured requests (warmup == 0); counter-based figures (GPU time,
 * throughput, cost, utilisation) over the measured window [warm_ns, cool_ns].
 *
 * Hits: a turn with history whose history KV came from the cache, attributed to the tier it
 * was served from (sim_src; a unit still arriving from SSD — a fetch or prefetch in flight —
 * counts as SSD). hit_rate_{hbm,dram,ssd} partition hit_rate (same denominator: turns with
 * history), token_hit_rate_{hbm,dram,ssd} partition token_hit_rate (hit tokens / prompt
 * tokens) and hist_hit_rate = hit tokens / history tokens.
 *
 * Stationarity: the measured turns split in thirds by arrival time; ttft_drift = mean TTFT of
 * the last third / the middle third - 1; util_* = bytes moved / (bandwidth x window) per link,
 * and for the GPU the share of the window it ran while requests waited in the queue (its busy
 * share, gpu_busy_frac, is near 1 whenever answers decode: continuous batching). stationary =
 * |ttft_drift| <= 0.1 and every utilisation < 1. */
typedef struct sim_summary {
  int64_t turns, turns_with_history, hit_turns, hit_by_src[SIM_SRC_COUNT];
  double hit_rate, hit_rate_hbm, hit_rate_dram, hit_rate_ssd, token_hit_rate;
  double token_hit_rate_hbm, token_hit_rate_dram, token_hit_rate_ssd, hist_hit_rate;
  double truncated_frac;   /* measured turns whose context overflowed the window */
  double ttft_mean_s, ttft_p50_s, ttft_p99_s, tbt_mean_s, e2e_mean_s, queue_mean_s;
  double ttft_noqueue_mean_s;  /* admission to first token: TTFT without queueing */
  /* over measured turns with history: TTFT, and prefill latency = admission to first token
   * (the paper's "prefill time": loading + computing, no queueing) */
  double ttft_hist_mean_s, prefill_latency_hist_mean_s;
  double prefill_throughput_tok_s, gpu_busy_s, span_s;
  double served_s;         /* warm-up end to the last measured request's completion */
  double window_s;         /* the measured window: warm-up end to cool_ns */
  double cost_gpu_usd, cost_storage_usd, cost_total_usd, storage_share;
  double usd_per_hour;
  /* stationarity (above) */
  double ttft_mid_s, ttft_last_s, ttft_drift;
  double gpu_busy_frac;
  double util_gpu, util_h2d, util_d2h, util_ssd_read, util_ssd_write, util_ssd, util_max;
  int stationary;
  /* hit rate by turn index: index k in [0, n_by_turn); the last bin holds k >= n_by_turn-1 */
  int32_t n_by_turn;
  int64_t by_turn_with_history[32], by_turn_hits[32];
} sim_summary;

int sim_summarize(const sim_result *r, const sim_params *p, sim_summary *s, kv_error *err);

/* Writes <outdir>/results.h5, requests.csv, summary.csv and hit_by_turn.csv (atomically, each
 * complete or absent), with the full config text and seed embedded. */
int sim_result_write(const sim_result *r, const sim_params *p, const trace *t,
                     const kv_config *cfg, const char *outdir, kv_error *err);

#endif /* SIM_H */

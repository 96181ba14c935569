/* sim_config.h — the experiment config's sections that both engines read: one reader per
 * section, each key's default stated once (in sim_config.c's tables and in docs/sim.md), and a
 * key set for the other engine an error that names it ("unknown keys remain errors").
 *
 * The two engines ([sim] engine):
 *   timed   the discrete-event serving engine (sim_run; every section of docs/sim.md)
 *   replay  trace-order replay of a prefix-hash trace through a block cache (sim_replay.h), no
 *           timing: reads [sim] seed, [workload] and [cache] eviction / capacity_tokens
 *
 *   kv_config *cfg;  ...                             // the file + command-line overrides
 *   sim_engine_kind eng; uint64_t seed;
 *   sim_config_engine(cfg, &eng, &seed, &err);       // [sim] engine, seed
 *   sim_cache_config c;
 *   sim_config_cache(cfg, eng, hw_or_NULL, &c, &err); // [cache] for that engine
 *   ... build the workload (sim_workload.h) ...
 *   sim_config_check_workload(cfg, &trace, warmup_turns, &err);
 *
 * Configurations that would disable the thing under study are errors naming the file and line
 * of the key responsible, before anything is written: a workload without turns, a warm-up that
 * covers every turn, a caching mode whose tiers have no capacity. `[sim] allow` (a list of
 * sim_allow_names) lets a run go ahead anyway. Configurations that cannot run at all are errors
 * that no `allow` lifts: an HBM cache region (with the model's weights, the reserve and the write
 * buffer) beyond the GPUs' memory, a policy that needs the job queue with the block store.
 */
#ifndef SIM_CONFIG_H
#define SIM_CONFIG_H

#include <stdint.h>

#include "kv_config.h"
#include "kv_err.h"
#include "sim_hw.h"
#include "sim_policy.h"
#include "sim_store.h"
#include "sim_tier.h"
#include "trace.h"

typedef enum sim_engine_kind { SIM_ENGINE_TIMED = 0, SIM_ENGINE_REPLAY } sim_engine_kind;
extern const char *const sim_engine_kind_names[]; /* "timed", "replay", NULL */

typedef enum sim_mode {
  SIM_MODE_RE = 0,         /* recompute every turn: no KV cache between turns */
  SIM_MODE_HBM,            /* cache only in an HBM region */
  SIM_MODE_HBM_DRAM,       /* HBM region + host DRAM */
  SIM_MODE_HBM_DRAM_SSD,   /* HBM region (0 by default) + DRAM + SSD: CachedAttention */
  SIM_MODE_COUNT
} sim_mode;
extern const char *const sim_mode_names[];  /* "re", "hbm", "hbm_dram", "hbm_dram_ssd" */

typedef enum sim_prefetch { SIM_PREFETCH_NONE = 0, SIM_PREFETCH_LOOKAHEAD } sim_prefetch;
extern const char *const sim_prefetch_names[]; /* "none", "lookahead" */

/* What the look-ahead windows (prefetch, scheduler-aware eviction) see: the job queue only, or
 * the queue followed by the turns already announced — every turn whose arrival is scheduled
 * (its predecessor has completed), by arrival time: a trace replay whose scheduler knows the
 * requests to come (sim_sched.h). */
typedef enum sim_lookahead { SIM_LOOKAHEAD_QUEUE = 0, SIM_LOOKAHEAD_TRACE } sim_lookahead;
extern const char *const sim_lookahead_names[]; /* "queue", "trace" */

/* [cache]. Fields of the other engine keep their defaults. */
typedef struct sim_cache_config {
  /* both engines */
  const sim_policy *eviction;    /* default sa (the timed engine's scheduler-aware policy) */
  /* timed engine */
  sim_mode mode;
  sim_store_kind store;
  sim_prefetch prefetch;
  sim_lookahead lookahead;
  int64_t tier_bytes[SIM_TIER_COUNT];  /* store capacities (0 = tier disabled by the mode) */
  int64_t priced_bytes[SIM_TIER_COUNT];/* capacities the cost is priced on: tier_bytes, except
                                          the SSD's, priced at ssd_gib before ssd_scale */
  double ssd_scale;              /* the simulated SSD holds ssd_gib x ssd_scale: the store of a
                                    run at ssd_scale times the paper's arrival rate */
  int64_t block_tokens;
  int64_t ttl_ns, ttl_sweep_ns;
  int64_t prefetch_window_jobs, evict_window_jobs;  /* 0 = auto */
  int64_t prefetch_max_inflight;
  int64_t demote_buffer_bytes;   /* staging buffer for demotions in flight */
  int ssd_inclusive;             /* fetched units keep their SSD copy (sim_store.h) */
  /* replay engine */
  int64_t capacity_tokens;       /* block cache capacity; 0 = unbounded */
} sim_cache_config;

/* [sim] allow: the checks a run may skip, each named in the error it lifts. */
typedef enum sim_allow {
  SIM_ALLOW_EMPTY_WORKLOAD = 1u << 0,  /* a workload without turns */
  SIM_ALLOW_NO_MEASUREMENT = 1u << 1,  /* [output] warmup_turns >= the workload's turns */
  SIM_ALLOW_NO_CACHE = 1u << 2         /* a caching mode whose tiers all have capacity 0 */
} sim_allow;
extern const char *const sim_allow_names[]; /* "empty_workload", "no_measurement", "no_cache" */

/* [sim] allow (a comma-separated list of sim_allow_names; default none) into *allow. An unknown
 * name is KV_EINVAL naming file:line and the valid names. */
int sim_config_allow(kv_config *cfg, unsigned *allow, kv_error *err);

/* After the workload is built (both engines; warmup_turns 0 for the replay engine): a workload
 * without turns, or a warm-up of at least all its turns, is KV_EINVAL naming the [workload] key
 * (sessions, n_sessions or source) or [output] warmup_turns with file:line, unless [sim] allow
 * lifts it. */
int sim_config_check_workload(kv_config *cfg, const trace *t, int64_t warmup_turns,
                              kv_error *err);

/* [sim] engine (default timed) and seed (default 1): the keys both engines read first. */
int sim_config_engine(kv_config *cfg, sim_engine_kind *engine, uint64_t *seed, kv_error *err);

/* [cache] for `engine`. hw gives the timed engine's DRAM and SSD defaults (NULL for replay).
 * The replay engine refuses a policy that needs the job queue (sa, the default: it must name
 * lru, fifo or opt); so does the timed engine with store = block. The timed engine refuses a
 * caching mode without capacity unless [sim] allow = no_cache. Errors name file:line. */
int sim_config_cache(kv_config *cfg, sim_engine_kind engine, const sim_hw *hw,
                     sim_cache_config *c, kv_error *err);

/* Errors when any of `keys` (NULL-terminated) is set in `section`: they have no effect with
 * this engine. */
int sim_config_reject(kv_config *cfg, const char *section, const char *const *keys,
                      sim_engine_kind engine, kv_error *err);

#endif /* SIM_CONFIG_H */

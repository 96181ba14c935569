/* sim_config.c — the one place that reads the experiment config: one reader per section, the
 * sections both engines read shared (sim_config.h), the timed engine's parameters assembled by
 * sim_params_from_config (sim.h); [workload] is read by sim_workload.c. Every key, its default
 * (stated once, at its getter) and its unit are listed here and in docs/sim.md. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "sim.h"
#include "sim_engine.h"
#include "sim_profile.h"

#ifndef SIM_DATA_DIR
#define SIM_DATA_DIR "sim/data"
#endif

#define SIM_GIB 1073741824.0

const char *const sim_mode_names[] = {"re", "hbm", "hbm_dram", "hbm_dram_ssd", NULL};
const char *const sim_trunc_names[] = {"decoupled", "tt", "nkvt", NULL};
const char *const sim_prefetch_names[] = {"none", "lookahead", NULL};
const char *const sim_lookahead_names[] = {"queue", "trace", NULL};
const char *const sim_batching_names[] = {"mixed", "prefill_first", NULL};
const char *const sim_replay_names[] = {"closed", "open", NULL};
const char *const sim_time_base_names[] = {"busy", "span", NULL};
const char *const sim_src_names[] = {"none", "miss", "hbm", "dram", "ssd", NULL};

/* Resolves a model/hardware name: a path (contains '/' or ends in .ini) as is, else
 * <data_dir>/<kind>/<name>.ini. */
static void sim__resolve(const char *data_dir, const char *kind, const char *name, char *out,
                         size_t cap) {
  size_t n = strlen(name);
  if (strchr(name, '/') || (n > 4 && strcmp(name + n - 4, ".ini") == 0)) {
    snprintf(out, cap, "%s", name);
  } else {
    snprintf(out, cap, "%s/%s/%s.ini", data_dir, kind, name);
  }
}

#define TRY(x)              \
  do {                      \
    if ((rc = (x))) return rc; \
  } while (0)

static int sim__gib(const kv_config *cfg, const char *sec, const char *key, double def_bytes,
                    int64_t *out, kv_error *err) {
  double v;
  int rc = kv_config_double(cfg, sec, key, def_bytes / SIM_GIB, 0, 1e9, &v, err);
  if (rc) return rc;
  *out = (int64_t)llround(v * SIM_GIB);
  return 0;
}

/* ---- the sections both engines read (sim_config.h) ---------------------------------------- */

const char *const sim_engine_kind_names[] = {"timed", "replay", NULL};
const char *const sim_allow_names[] = {"empty_workload", "no_measurement", "no_cache", NULL};

int sim_config_allow(kv_config *cfg, unsigned *allow, kv_error *err) {
  *allow = 0;
  const char *v = kv_config_get(cfg, "sim", "allow");
  if (!v) return 0;
  char *items[8], store[512];
  int n = kv_config_list(v, items, 8, store, sizeof store);
  if (n < 0) {
    return kv_error_set(err, KV_EINVAL, "%s: [sim] allow = %s: not a list of at most 8 names",
                        kv_config_where(cfg, "sim", "allow"), v);
  }
  for (int i = 0; i < n; i++) {
    int k = 0;
    while (sim_allow_names[k] && strcmp(sim_allow_names[k], items[i]) != 0) k++;
    if (!sim_allow_names[k]) {
      return kv_error_set(err, KV_EINVAL, "%s: [sim] allow: '%s' is not one of empty_workload, "
                          "no_measurement, no_cache", kv_config_where(cfg, "sim", "allow"),
                          items[i]);
    }
    *allow |= 1u << k;
  }
  return 0;
}

int sim_config_check_workload(kv_config *cfg, const trace *t, int64_t warmup_turns,
                              kv_error *err) {
  unsigned allow;
  int rc = sim_config_allow(cfg, &allow, err);
  if (rc) return rc;
  if (t->n_turns == 0 && !(allow & SIM_ALLOW_EMPTY_WORKLOAD)) {
    /* the key that made it empty: a generator's session count, else the trace file */
    const char *key = kv_config_get(cfg, "workload", "sessions")     ? "sessions"
                      : kv_config_get(cfg, "workload", "n_sessions") ? "n_sessions"
                                                                     : "source";
    const char *v = kv_config_get(cfg, "workload", key);
    return kv_error_set(err, KV_EINVAL, "%s: [workload] %s = %s: the workload (%s) has no %s, so "
                        "nothing would be measured (a run reports nan or 0); set [sim] allow = "
                        "empty_workload to run it anyway", kv_config_where(cfg, "workload", key),
                        key, v ? v : "synthetic (the default)", t->name,
                        t->n_sessions ? "turns" : "sessions");
  }
  if (t->n_turns > 0 && warmup_turns >= t->n_turns && !(allow & SIM_ALLOW_NO_MEASUREMENT)) {
    return kv_error_set(err, KV_EINVAL, "%s: [output] warmup_turns = %lld covers all %lld turns of "
                        "the workload (%s): no turn would be measured; set [sim] allow = "
                        "no_measurement to run it anyway",
                        kv_config_where(cfg, "output", "warmup_turns"), (long long)warmup_turns,
                        (long long)t->n_turns, t->name);
  }
  return 0;
}

int sim_config_engine(kv_config *cfg, sim_engine_kind *engine, uint64_t *seed, kv_error *err) {
  int rc, e;
  int64_t i64;
  TRY(kv_config_enum(cfg, "sim", "engine", SIM_ENGINE_TIMED, sim_engine_kind_names, &e, err));
  *engine = (sim_engine_kind)e;
  TRY(kv_config_int(cfg, "sim", "seed", 1, 0, INT64_MAX, &i64, err));
  *seed = (uint64_t)i64;
  return 0;
}

int sim_config_reject(kv_config *cfg, const char *section, const char *const *keys,
                      sim_engine_kind engine, kv_error *err) {
  for (int i = 0; keys[i]; i++) {
    if (kv_config_get(cfg, section, keys[i])) {
      return kv_error_set(err, KV_EINVAL, "%s: [%s] %s has no effect with [sim] engine = %s",
                          kv_config_where(cfg, section, keys[i]), section, keys[i],
                          sim_engine_kind_names[engine]);
    }
  }
  return 0;
}

/* [cache] keys by the engine that reads them (sim_config_reject refuses the other's). */
static const char *const sim__cache_timed_keys[] = {
    "mode", "store", "prefetch", "hbm_gib", "dram_gib", "ssd_gib", "block_tokens", "ttl_s",
    "ttl_sweep_s", "prefetch_window_jobs", "evict_window_jobs", "prefetch_max_inflight",
    "demote_buffer_gib", "ssd_inclusive", "lookahead", "ssd_scale", NULL};
static const char *const sim__cache_replay_keys[] = {"capacity_tokens", NULL};

/* The timed engine's tiers: capacities (defaults: 10 GiB of HBM in the modes hbm and hbm_dram,
 * else none; the hardware's DRAM and SSD), zeroed for the tiers the mode leaves out. */
static int sim__cache_tiers(kv_config *cfg, const sim_hw *hw, sim_cache_config *c,
                            kv_error *err) {
  int rc;
  int64_t *tb = c->tier_bytes;
  double hbm_def = (c->mode == SIM_MODE_HBM || c->mode == SIM_MODE_HBM_DRAM) ? 10 * SIM_GIB : 0;
  TRY(sim__gib(cfg, "cache", "hbm_gib", hbm_def, &tb[SIM_TIER_HBM], err));
  TRY(sim__gib(cfg, "cache", "dram_gib", hw->dram_bytes, &tb[SIM_TIER_DRAM], err));
  TRY(sim__gib(cfg, "cache", "ssd_gib", hw->ssd_bytes, &tb[SIM_TIER_SSD], err));
  switch (c->mode) {
    case SIM_MODE_RE: tb[SIM_TIER_HBM] = tb[SIM_TIER_DRAM] = tb[SIM_TIER_SSD] = 0; break;
    case SIM_MODE_HBM: tb[SIM_TIER_DRAM] = tb[SIM_TIER_SSD] = 0; break;
    case SIM_MODE_HBM_DRAM: tb[SIM_TIER_SSD] = 0; break;
    default: break;
  }
  TRY(kv_config_double(cfg, "cache", "ssd_scale", 1.0, 1e-6, 1e6, &c->ssd_scale, err));
  for (int t = 0; t < SIM_TIER_COUNT; t++) c->priced_bytes[t] = tb[t];
  tb[SIM_TIER_SSD] = (int64_t)llround((double)tb[SIM_TIER_SSD] * c->ssd_scale);
  if (c->mode == SIM_MODE_HBM && tb[SIM_TIER_HBM] == 0) {
    return kv_error_set(err, KV_EINVAL, "%s: [cache] mode = hbm needs hbm_gib > 0",
                        kv_config_where(cfg, "cache", "hbm_gib"));
  }
  unsigned allow;
  TRY(sim_config_allow(cfg, &allow, err));
  if (c->mode != SIM_MODE_RE && tb[SIM_TIER_HBM] + tb[SIM_TIER_DRAM] + tb[SIM_TIER_SSD] == 0 &&
      !(allow & SIM_ALLOW_NO_CACHE)) {
    /* name the keys the mode uses, where each was set (or that it is a default) */
    static const char *const keys[] = {"hbm_gib", "dram_gib", "ssd_gib"};
    const int used = c->mode == SIM_MODE_HBM_DRAM ? 2 : 3;
    char what[1200] = "";
    for (int i = 0; i < used; i++) {
      size_t k = strlen(what);
      const char *w = kv_config_where(cfg, "cache", keys[i]);
      snprintf(what + k, sizeof what - k, "%s%s = 0 (%s%s)", i ? ", " : "", keys[i],
               kv_config_get(cfg, "cache", keys[i]) ? w : "the default",
               kv_config_get(cfg, "cache", keys[i]) || i == 0 ? "" : " of the hardware file");
    }
    const char *at = kv_config_get(cfg, "cache", "dram_gib") ? "dram_gib"
                     : kv_config_get(cfg, "cache", "ssd_gib") ? "ssd_gib"
                                                              : "mode";
    return kv_error_set(err, KV_EINVAL, "%s: [cache] mode = %s with no capacity: %s; the cache under "
                        "study would hold nothing (mode = re runs without a cache); set [sim] "
                        "allow = no_cache to run it anyway", kv_config_where(cfg, "cache", at),
                        sim_mode_names[c->mode], what);
  }
  return 0;
}

/* The rest of the timed engine's [cache]. */
static int sim__cache_timed(kv_config *cfg, const sim_hw *hw, sim_cache_config *c,
                            kv_error *err) {
  int rc, e;
  double d;
  TRY(kv_config_enum(cfg, "cache", "mode", SIM_MODE_HBM_DRAM_SSD, sim_mode_names, &e, err));
  c->mode = (sim_mode)e;
  TRY(kv_config_enum(cfg, "cache", "store", SIM_STORE_SESSION, sim_store_kind_names, &e, err));
  c->store = (sim_store_kind)e;
  TRY(kv_config_enum(cfg, "cache", "prefetch", SIM_PREFETCH_LOOKAHEAD, sim_prefetch_names, &e,
                     err));
  c->prefetch = (sim_prefetch)e;
  TRY(kv_config_enum(cfg, "cache", "lookahead", SIM_LOOKAHEAD_QUEUE, sim_lookahead_names, &e,
                     err));
  c->lookahead = (sim_lookahead)e;
  TRY(sim__cache_tiers(cfg, hw, c, err));
  TRY(kv_config_int(cfg, "cache", "block_tokens", 256, 1, 1 << 24, &c->block_tokens, err));
  TRY(kv_config_double(cfg, "cache", "ttl_s", 3600, 0, 1e9, &d, err));
  c->ttl_ns = (int64_t)llround(d * 1e9);
  TRY(kv_config_double(cfg, "cache", "ttl_sweep_s", 60, 0.001, 1e9, &d, err));
  c->ttl_sweep_ns = (int64_t)llround(d * 1e9);
  TRY(kv_config_int(cfg, "cache", "prefetch_window_jobs", 0, 0, INT64_MAX / 4,
                    &c->prefetch_window_jobs, err));
  TRY(kv_config_int(cfg, "cache", "evict_window_jobs", 0, 0, INT64_MAX / 4,
                    &c->evict_window_jobs, err));
  TRY(kv_config_int(cfg, "cache", "prefetch_max_inflight", 4, 1, 1 << 20,
                    &c->prefetch_max_inflight, err));
  TRY(sim__gib(cfg, "cache", "demote_buffer_gib", 4.0 * SIM_GIB, &c->demote_buffer_bytes, err));
  TRY(kv_config_bool(cfg, "cache", "ssd_inclusive", 1, &c->ssd_inclusive, err));
  return 0;
}

int sim_config_cache(kv_config *cfg, sim_engine_kind engine, const sim_hw *hw,
                     sim_cache_config *c, kv_error *err) {
  memset(c, 0, sizeof *c);
  int rc, e;
  /* one default for both engines: the scheduler-aware policy of the timed engine */
  TRY(kv_config_enum(cfg, "cache", "eviction", 2 /* sa */, sim_policy_names, &e, err));
  c->eviction = sim_policy_get(e);
  if (engine == SIM_ENGINE_TIMED) {
    TRY(sim_config_reject(cfg, "cache", sim__cache_replay_keys, engine, err));
    TRY(sim__cache_timed(cfg, hw, c, err));
    if (c->mode != SIM_MODE_RE && c->store == SIM_STORE_BLOCK && c->eviction->uses_queue) {
      int dflt = !kv_config_get(cfg, "cache", "eviction");
      return kv_error_set(err, KV_EINVAL, "%s: [cache] eviction = %s%s needs the session store "
                          "(its job queue), and %s sets store = block: the block store takes lru, "
                          "fifo or opt",
                          kv_config_where(cfg, "cache", "eviction"), c->eviction->name,
                          dflt ? " (the default)" : "", kv_config_where(cfg, "cache", "store"));
    }
    return 0;
  }
  TRY(sim_config_reject(cfg, "cache", sim__cache_timed_keys, engine, err));
  if (c->eviction->uses_queue) {
    int dflt = !kv_config_get(cfg, "cache", "eviction");
    return kv_error_set(err, KV_EINVAL, "%s: [cache] eviction = %s%s needs the timed engine's job "
                        "queue; the replay engine takes lru, fifo or opt",
                        kv_config_where(cfg, "cache", "eviction"), c->eviction->name,
                        dflt ? " (the default)" : "");
  }
  return kv_config_int(cfg, "cache", "capacity_tokens", 0, 0, INT64_MAX / 4, &c->capacity_tokens,
                       err);
}

/* [attention]: decode attention priced by measured budgets (sim_attn.h, docs/psa-serving.md).
 * Times are given in microseconds; every overhead default is an assumption until a kernel profile
 * replaces it (kernel_profile). With method = off no other key may be set. */
static int sim__read_attention(kv_config *cfg, sim_params *p, kv_error *err) {
  static const char *const keys[] = {
      "profile", "offload", "pool", "pool_gib", "pool_frac", "loop", "load_overlap", "hbm_eff",
      "launch_us", "select_us", "iter_pipelined_us", "iter_hostsync_us", "reuse_frac",
      "reuse_csv", "head_draws", "extension", "topk_extension", "topk_scale_method", "redraw",
      "admit",
      "admit_headroom", "host_gib",
      "kernel_profile", "kernel_timings", NULL};
  static const char *const admit_names[] = {"none", "ws", NULL};
  sim_attn_params ap;
  sim_attn_params_defaults(&ap);
  int rc, e;
  const char *s;
  double d;
  TRY(kv_config_str(cfg, "attention", "method", "off", &s, err));
  snprintf(ap.method, sizeof ap.method, "%s", s);
  if (strcmp(s, "off") == 0) {
    for (int i = 0; keys[i]; i++) {
      if (kv_config_get(cfg, "attention", keys[i])) {
        return kv_error_set(err, KV_EINVAL, "%s: [attention] %s has no effect with method = off "
                            "(set method = dense or a method of the profile)",
                            kv_config_where(cfg, "attention", keys[i]), keys[i]);
      }
    }
    ap.mode = SIM_ATTN_OFF;
    return sim_attn_model_load(&p->attn, &ap, &p->model, &p->hw, p->n_gpus, err);
  }
  ap.mode = strcmp(s, "dense") == 0 ? SIM_ATTN_DENSE : SIM_ATTN_PSA; /* refined by the profile */
  TRY(kv_config_str(cfg, "attention", "profile", "", &s, err));
  snprintf(ap.profile_path, sizeof ap.profile_path, "%s", s);
  TRY(kv_config_bool(cfg, "attention", "offload", 0, &ap.offload, err));
  TRY(kv_config_enum(cfg, "attention", "pool", SIM_ATTN_POOL_UNIFIED, sim_attn_pool_names, &e, err));
  ap.pool = (sim_attn_pool)e;
  TRY(sim__gib(cfg, "attention", "pool_gib", 0, &ap.pool_bytes, err));
  TRY(kv_config_double(cfg, "attention", "pool_frac", ap.pool_frac, 1e-3, 0.999, &ap.pool_frac, err));
  TRY(kv_config_enum(cfg, "attention", "loop", SIM_ATTN_LOOP_PIPELINED, sim_attn_loop_names, &e, err));
  ap.loop = (sim_attn_loop)e;
  TRY(kv_config_bool(cfg, "attention", "load_overlap", ap.load_overlap, &ap.load_overlap, err));
  TRY(kv_config_double(cfg, "attention", "hbm_eff", ap.hbm_eff, 1e-3, 1.0, &ap.hbm_eff, err));
  struct {
    const char *key;
    int64_t *dst;
  } us[] = {{"launch_us", &ap.launch_ns}, {"select_us", &ap.select_ns},
            {"iter_pipelined_us", &ap.iter_pipelined_ns}, {"iter_hostsync_us", &ap.iter_hostsync_ns}};
  for (size_t i = 0; i < sizeof us / sizeof us[0]; i++) {
    TRY(kv_config_double(cfg, "attention", us[i].key, (double)*us[i].dst / 1e3, 0, 1e9, &d, err));
    *us[i].dst = (int64_t)llround(d * 1e3);
  }
  TRY(kv_config_double(cfg, "attention", "reuse_frac", ap.reuse_frac, 0, 1, &ap.reuse_frac, err));
  TRY(kv_config_str(cfg, "attention", "reuse_csv", "", &s, err));
  snprintf(ap.reuse_csv, sizeof ap.reuse_csv, "%s", strcmp(s, "none") == 0 ? "" : s);
  if (ap.reuse_csv[0] && kv_config_get(cfg, "attention", "reuse_frac")) {
    return kv_error_set(err, KV_EINVAL, "%s: [attention] reuse_frac and reuse_csv are exclusive",
                        kv_config_where(cfg, "attention", "reuse_csv"));
  }
  int64_t hd;
  TRY(kv_config_int(cfg, "attention", "head_draws", ap.head_draws, 1, 64, &hd, err));
  ap.head_draws = (int)hd;
  TRY(kv_config_enum(cfg, "attention", "extension", SIM_ATTN_EXT_FIT, sim_attn_ext_names, &e, err));
  ap.extension = (sim_attn_ext)e;
  static const char *const topk_ext_names[] = {"tokens", "frac", "fit", NULL};
  TRY(kv_config_enum(cfg, "attention", "topk_extension", 0, topk_ext_names, &e, err));
  ap.topk_extension = e == 0 ? SIM_ATTN_EXT_TOKENS : e == 1 ? SIM_ATTN_EXT_FRAC : SIM_ATTN_EXT_FIT;
  TRY(kv_config_str(cfg, "attention", "topk_scale_method", "psa-0.95-mean", &s, err));
  snprintf(ap.topk_scale_method, sizeof ap.topk_scale_method, "%s", s);
  TRY(kv_config_enum(cfg, "attention", "redraw", SIM_ATTN_REDRAW_STEP, sim_attn_redraw_names, &e,
                     err));
  ap.redraw = (sim_attn_redraw)e;
  TRY(kv_config_enum(cfg, "attention", "admit", 1, admit_names, &ap.admit_ws, err));
  TRY(kv_config_double(cfg, "attention", "admit_headroom", ap.admit_headroom, 1e-3, 100,
                       &ap.admit_headroom, err));
  TRY(sim__gib(cfg, "attention", "host_gib", p->hw.dram_bytes, &ap.host_bytes, err));
  TRY(kv_config_str(cfg, "attention", "kernel_profile", "", &s, err));
  snprintf(ap.kernel_profile, sizeof ap.kernel_profile, "%s", s);
  static const char *const ktime_names[] = {"measured", "assumed", NULL};
  TRY(kv_config_enum(cfg, "attention", "kernel_timings", 0, ktime_names, &ap.kernel_assumed, err));
  if ((rc = sim_attn_model_load(&p->attn, &ap, &p->model, &p->hw, p->n_gpus, err))) {
    kv_error_prefix(err, "%s: [attention]", kv_config_where(cfg, "attention", "method"));
    return rc;
  }
  return 0;
}

/* [sim] of the timed engine: seed and engine (sim_config_engine), the model and the hardware. */
static int sim__read_sim(kv_config *cfg, sim_params *p, kv_error *err) {
  int rc;
  const char *s;
  sim_engine_kind engine;
  TRY(sim_config_engine(cfg, &engine, &p->seed, err));
  if (engine != SIM_ENGINE_TIMED) {
    return kv_error_set(err, KV_EINVAL, "%s: [sim] engine = %s: these parameters are the timed "
                        "engine's", kv_config_where(cfg, "sim", "engine"),
                        sim_engine_kind_names[engine]);
  }
  TRY(kv_config_str(cfg, "sim", "data_dir", SIM_DATA_DIR, &s, err));
  snprintf(p->data_dir, sizeof p->data_dir, "%s", s);
  const char *model = NULL, *hw = NULL;
  TRY(kv_config_str(cfg, "sim", "model", NULL, &model, err));
  TRY(kv_config_str(cfg, "sim", "hardware", NULL, &hw, err));
  if (!model) return kv_error_set(err, KV_ENOENT, "config: [sim] model is required (a name in "
                                  "%s/models or a path)", p->data_dir);
  if (!hw) return kv_error_set(err, KV_ENOENT, "config: [sim] hardware is required (a name in "
                               "%s/hardware or a path)", p->data_dir);
  sim__resolve(p->data_dir, "models", model, p->model_path, sizeof p->model_path);
  sim__resolve(p->data_dir, "hardware", hw, p->hw_path, sizeof p->hw_path);
  if ((rc = sim_model_load(p->model_path, &p->model, err))) {
    kv_error_prefix(err, "%s: [sim] model", kv_config_where(cfg, "sim", "model"));
    return rc;
  }
  if ((rc = sim_hw_load(p->hw_path, &p->hw, err))) {
    kv_error_prefix(err, "%s: [sim] hardware", kv_config_where(cfg, "sim", "hardware"));
    return rc;
  }
  TRY(kv_config_int(cfg, "sim", "n_gpus", 1, 1, 1024, &p->n_gpus, err));
  return 0;
}

/* [engine]: batching, pre-loading, saving, truncation. */
static int sim__read_engine(kv_config *cfg, sim_params *p, kv_error *err) {
  int rc, e;
  TRY(kv_config_int(cfg, "engine", "batch_limit", 24, 1, 1 << 20, &p->batch_limit, err));
  TRY(kv_config_int(cfg, "engine", "admit_lookahead", 1, 1, 1 << 20, &p->admit_lookahead, err));
  TRY(kv_config_enum(cfg, "engine", "batching", SIM_BATCH_MIXED, sim_batching_names, &e, err));
  p->batching = (sim_batching)e;
  TRY(kv_config_double(cfg, "engine", "hbm_reserve_frac", 0.1, 0, 0.99, &p->hbm_reserve_frac, err));
  TRY(kv_config_bool(cfg, "engine", "preload", 1, &p->preload, err));
  TRY(kv_config_int(cfg, "engine", "read_buffer_layers", 15, 0, 1 << 20, &p->read_buffer_layers,
                    err));
  TRY(kv_config_bool(cfg, "engine", "async_save", 1, &p->async_save, err));
  TRY(sim__gib(cfg, "engine", "write_buffer_gib", 2.0 * SIM_GIB, &p->write_buffer_bytes, err));
  TRY(kv_config_int(cfg, "engine", "save_chunk_tokens", 256, 0, 1 << 30, &p->save_chunk_tokens,
                    err));
  TRY(kv_config_enum(cfg, "engine", "truncation", SIM_TRUNC_DECOUPLED, sim_trunc_names, &e, err));
  p->truncation = (sim_trunc)e;
  TRY(kv_config_double(cfg, "engine", "truncation_ratio", 0.5, 0.01, 1.0, &p->truncation_ratio,
                       err));
  return 0;
}

/* [links] (defaults: the hardware file; pcie_per_gpu multiplies PCIe by n_gpus; the SSD's
 * per-device bandwidths by ssd_devices). */
static int sim__read_links(kv_config *cfg, sim_params *p, kv_error *err) {
  int rc;
  double d;
  int per_gpu;
  TRY(kv_config_bool(cfg, "links", "pcie_per_gpu", 0, &per_gpu, err));
  double k = per_gpu ? (double)p->n_gpus : 1.0;
  TRY(kv_config_double(cfg, "links", "h2d_gbs", p->hw.pcie_h2d_bw * k / 1e9, 1e-6, 1e6, &d, err));
  p->h2d_bw = d * 1e9;
  TRY(kv_config_double(cfg, "links", "d2h_gbs", p->hw.pcie_d2h_bw * k / 1e9, 1e-6, 1e6, &d, err));
  p->d2h_bw = d * 1e9;
  /* the SSD array (sim_hw.h): per-device bandwidths times the number of devices */
  double ndev, rd, wr, mx;
  TRY(kv_config_double(cfg, "links", "ssd_devices", p->hw.ssd_devices, 1, 1024, &ndev, err));
  TRY(kv_config_double(cfg, "links", "ssd_read_gbs", p->hw.ssd_read_bw / 1e9, 1e-6, 1e6, &rd, err));
  TRY(kv_config_double(cfg, "links", "ssd_write_gbs", p->hw.ssd_write_bw / 1e9, 1e-6, 1e6, &wr,
                       err));
  /* a read or write bandwidth changed here keeps the hardware file's sharing: mixed = the
   * hardware's mixed figure when it set one, else read + write */
  int hw_shares = p->hw.ssd_mixed_bw < p->hw.ssd_read_bw + p->hw.ssd_write_bw - 1;
  double mixed_def = hw_shares ? p->hw.ssd_mixed_bw / p->hw.ssd_read_bw * rd : rd + wr;
  TRY(kv_config_double(cfg, "links", "ssd_mixed_gbs", mixed_def, 1e-6, 1e6, &mx, err));
  p->ssd_devices = (int64_t)ndev;
  p->ssd_read_bw = ndev * rd * 1e9;
  p->ssd_write_bw = ndev * wr * 1e9;
  p->ssd_mixed_bw = ndev * mx * 1e9;
  TRY(kv_config_double(cfg, "links", "pcie_latency_us", p->hw.pcie_latency_ns / 1e3, 0, 1e9, &d,
                       err));
  p->pcie_latency_ns = (int64_t)llround(d * 1e3);
  TRY(kv_config_double(cfg, "links", "ssd_latency_us", p->hw.ssd_latency_ns / 1e3, 0, 1e9, &d,
                       err));
  p->ssd_latency_ns = (int64_t)llround(d * 1e3);
  return 0;
}

/* [cost]: roofline (default), linear or a measured profile. */
static int sim__read_cost(kv_config *cfg, sim_params *p, kv_error *err) {
  int rc;
  int e;
  TRY(kv_config_enum(cfg, "cost", "model", SIM_COST_ROOFLINE, sim_cost_kind_names, &e, err));
  if (e == SIM_COST_ROOFLINE) {
    double ce, me;
    TRY(kv_config_double(cfg, "cost", "compute_eff", 0.6, 1e-3, 1.0, &ce, err));
    TRY(kv_config_double(cfg, "cost", "memory_eff", 0.8, 1e-3, 1.0, &me, err));
    sim_cost_init_roofline(&p->cost, &p->model, &p->hw, p->n_gpus, ce, me);
  } else if (e == SIM_COST_LINEAR) {
    int64_t b, pt, ds, ct, h;
    TRY(kv_config_int(cfg, "cost", "layer_base_ns", 0, 0, INT64_MAX / 1024, &b, err));
    TRY(kv_config_int(cfg, "cost", "layer_prefill_ns_per_token", 0, 0, 1 << 30, &pt, err));
    TRY(kv_config_int(cfg, "cost", "layer_decode_ns_per_seq", 0, 0, 1 << 30, &ds, err));
    TRY(kv_config_int(cfg, "cost", "layer_ctx_ns_per_token", 0, 0, 1 << 30, &ct, err));
    TRY(kv_config_int(cfg, "cost", "head_ns", 0, 0, INT64_MAX / 1024, &h, err));
    sim_cost_init_linear(&p->cost, &p->model, b, pt, ds, ct, h);
    p->cost.tp = p->n_gpus;
  } else if (e == SIM_COST_MEASURED) {
    TRY(sim_cost_measured_from_config(cfg, p->data_dir, &p->model, &p->hw, p->n_gpus, &p->cost,
                                      err));
  } else {
    const char *path = NULL;
    TRY(kv_config_str(cfg, "cost", "profile", NULL, &path, err));
    if (!path) return kv_error_set(err, KV_ENOENT, "config: [cost] model = profile needs "
                                   "[cost] profile = <file.h5>");
    if ((rc = sim_cost_load_profile(&p->cost, &p->model, &p->hw, p->n_gpus, path, err))) {
      kv_error_prefix(err, "%s: [cost] profile", kv_config_where(cfg, "cost", "profile"));
      return rc;
    }
  }
  return 0;
}

/* [price], [workload] replay and [output]. */
static int sim__read_price_output(kv_config *cfg, sim_params *p, kv_error *err) {
  int rc;
  int e;
  TRY(kv_config_double(cfg, "price", "gpu_per_hour", p->hw.gpu_price_per_hour, 0, 1e9,
                       &p->gpu_price_per_hour, err));
  TRY(kv_config_double(cfg, "price", "dram_per_gib_hour", p->hw.dram_price_per_gib_hour, 0, 1e9,
                       &p->dram_price_per_gib_hour, err));
  TRY(kv_config_double(cfg, "price", "ssd_per_gib_hour", p->hw.ssd_price_per_gib_hour, 0, 1e9,
                       &p->ssd_price_per_gib_hour, err));
  TRY(kv_config_enum(cfg, "price", "time_base", SIM_TIME_BUSY, sim_time_base_names, &e, err));
  p->time_base = (sim_time_base)e;
  TRY(kv_config_enum(cfg, "workload", "replay", SIM_REPLAY_CLOSED, sim_replay_names, &e, err));
  p->replay = (sim_replay)e;
  TRY(kv_config_int(cfg, "output", "warmup_turns", 0, 0, INT64_MAX / 4, &p->warmup_turns, err));
  TRY(kv_config_bool(cfg, "output", "cooldown", 0, &p->cooldown, err));
  TRY(kv_config_bool(cfg, "output", "log", 0, &p->log, err));
  TRY(kv_config_bool(cfg, "output", "requests_csv", 1, &p->write_requests_csv, err));
  return 0;
}

/* The GPUs' HBM must hold the weights, the reserve, the HBM cache region and the write buffer
 * with room left for running jobs' KV (sim_engine_kv_space); the key named is hbm_gib when set,
 * else the model. */
static int sim__check_hbm(kv_config *cfg, const sim_params *p, kv_error *err) {
  if (sim_engine_kv_space(p) > 0) return 0;
  const double gib = SIM_GIB;
  const int set = kv_config_get(cfg, "cache", "hbm_gib") != NULL;
  return kv_error_set(err, KV_ERANGE, "%s: %s leaves no HBM for running jobs' KV: %lld x %s "
                      "hold %.1f GiB, less %.0f%% reserve ([engine] hbm_reserve_frac), %.1f GiB of "
                      "%s weights, %.1f GiB of HBM cache ([cache] hbm_gib%s) and %.1f GiB of write "
                      "buffer ([engine] write_buffer_gib)",
                      set ? kv_config_where(cfg, "cache", "hbm_gib") : kv_config_where(cfg, "sim", "model"),
                      set ? "[cache] hbm_gib" : "[sim] model", (long long)p->n_gpus, p->hw.name,
                      (double)p->n_gpus * p->hw.hbm_bytes / gib, 100 * p->hbm_reserve_frac,
                      p->model.params * (double)p->model.bytes_per_elem / gib, p->model.name,
                      (double)p->cache.tier_bytes[SIM_TIER_HBM] / gib, set ? "" : ", the default",
                      (double)p->write_buffer_bytes / gib);
}

int sim_params_from_config(kv_config *cfg, sim_params *p, kv_error *err) {
  memset(p, 0, sizeof *p);
  int rc;
  TRY(sim__read_sim(cfg, p, err));
  TRY(sim__read_engine(cfg, p, err));
  TRY(sim_config_cache(cfg, SIM_ENGINE_TIMED, &p->hw, &p->cache, err));
  TRY(sim__check_hbm(cfg, p, err));
  TRY(sim__read_links(cfg, p, err));
  TRY(sim__read_cost(cfg, p, err));
  TRY(sim__read_attention(cfg, p, err));
  return sim__read_price_output(cfg, p, err);
}

void sim_params_free(sim_params *p) {
  sim_cost_free(&p->cost);
  sim_attn_model_free(&p->attn);
}

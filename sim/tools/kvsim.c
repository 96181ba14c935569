/* kvsim — run the serving simulator on one experiment config.
 *
 *   kvsim -c exp.ini [-s section.key=value]... [-o outdir] [-q]
 *
 * Writes outdir/results.h5, summary.csv, hit_by_turn.csv, requests.csv (and sim.log with
 * [output] log = true) and prints the main aggregates. Configuration errors (sim_config.h) come
 * before anything is written; a failed run removes the output folder when it created it, so
 * no empty or partial folder stays. Exit codes: 0 ok, 1 error, 2 usage. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kv_config.h"
#include "kv_err.h"
#include "kv_fs.h"
#include "sim.h"
#include "sim_replay.h"
#include "sim_workload.h"

/* The outermost folder of `dir` that does not exist yet (what kv_mkdirs will create), into buf;
 * "" when dir exists. A failed run removes it, so that no empty or partial output folder stays. */
static void first_missing(const char *dir, char *buf, size_t cap) {
  buf[0] = '\0';
  char p[4096];
  snprintf(p, sizeof p, "%s", dir);
  while (p[0] && !kv_path_exists(p)) {
    snprintf(buf, cap, "%s", p);
    char *sl = strrchr(p, '/');
    while (sl && sl > p && sl[1] == '\0') { /* trailing slashes */
      *sl = '\0';
      sl = strrchr(p, '/');
    }
    if (!sl || sl == p) break;
    *sl = '\0';
  }
}

static void usage(FILE *f) {
  fprintf(f,
          "usage: kvsim [-c config.ini] [-s section.key=value]... [-o outdir] [-q]\n"
          "\n"
          "Discrete-event simulation of multi-turn LLM serving with a KV cache in HBM, DRAM and\n"
          "SSD (CachedAttention and its baselines). See docs/sim.md for every config key.\n"
          "\n"
          "  -c FILE   experiment config (INI); may be omitted when -s gives [sim] model/hardware\n"
          "  -s A=V    override one key, e.g. -s cache.eviction=lru -s workload.sessions=500\n"
          "  -o DIR    output directory (default out/kvsim)\n"
          "  -q        quiet: print nothing on success\n"
          "  -h        this help; --version prints the version\n"
          "\n"
          "Example: kvsim -c sim/data/configs/cachedattention-13b.ini -s workload.sessions=1000\n");
}

/* [sim] engine = replay: trace-order replay of a prefix-hash trace through a block cache of
 * [cache] capacity_tokens (0 = unbounded) with [cache] eviction (lru, fifo, opt); no timing
 * (Mooncake FAST'25 Figure 9's definition). The sections are read by the readers the timed engine
 * shares (sim_config.h). Writes <outdir>/summary.csv (key,value). */
static int kvsim_replay(kv_config *cfg, uint64_t seed, const char *outdir, int quiet,
                        kv_error *err) {
  static const char *const timed_sim[] = {"data_dir", "model", "hardware", "n_gpus", NULL};
  static const char *const timed_workload[] = {"replay", NULL};
  sim_cache_config cc;
  memset(&cc, 0, sizeof cc);
  int rc = sim_config_reject(cfg, "sim", timed_sim, SIM_ENGINE_REPLAY, err);
  if (!rc) rc = sim_config_reject(cfg, "workload", timed_workload, SIM_ENGINE_REPLAY, err);
  if (!rc) rc = sim_config_cache(cfg, SIM_ENGINE_REPLAY, NULL, &cc, err);
  const sim_policy *pol = rc ? NULL : cc.eviction;
  const int64_t cap = cc.capacity_tokens;
  trace t;
  trace_init(&t);
  if (!rc) rc = sim_workload_build(cfg, seed, &t, err);
  if (!rc) rc = sim_config_check_workload(cfg, &t, 0, err);
  if (!rc) rc = kv_config_check_unused(cfg, err);
  sim_replay_result r, direct;
  if (!rc) rc = sim_replay_blocks(&t, pol, cap, &r, err);
  if (!rc) rc = sim_prefix_reuse(&t, &direct, err);
  if (!rc) rc = kv_mkdirs(outdir, err);
  char path[4200];
  snprintf(path, sizeof path, "%s/summary.csv", outdir);
  kv_atomic_file af;
  if (!rc) rc = kv_atomic_open(&af, path, err);
  if (!rc) {
    char *text = kv_config_to_string(cfg);
    fprintf(af.f, "# kvsim %s replay seed=%lld trace=%s\n", kv_version(), (long long)seed, t.name);
    for (const char *c = text ? text : ""; *c;) {
      const char *nl = strchr(c, '\n');
      size_t len = nl ? (size_t)(nl - c) : strlen(c);
      if (len) fprintf(af.f, "# config: %.*s\n", (int)len, c);
      c += len + (nl ? 1 : 0);
    }
    free(text);
    fprintf(af.f, "key,value\ncapacity_tokens,%lld\nrequests,%lld\nblocks,%lld\nhit_blocks,%lld\n"
                  "tokens,%lld\nhit_tokens,%lld\nblock_hit_ratio,%.17g\ntoken_hit_ratio,%.17g\n"
                  "evictions,%lld\nunbounded_token_hit_ratio,%.17g\n",
            (long long)cap, (long long)r.requests, (long long)r.blocks, (long long)r.hit_blocks,
            (long long)r.tokens, (long long)r.hit_tokens, r.block_hit_ratio, r.token_hit_ratio,
            (long long)r.evictions, direct.token_hit_ratio);
    rc = kv_atomic_commit(&af, err);
  }
  if (!rc && !quiet) {
    printf("kvsim replay: %s, %s, capacity %lld tokens: token hit ratio %.4f (unbounded %.4f), "
           "block hit ratio %.4f\n", t.name, pol->name, (long long)cap, r.token_hit_ratio,
           direct.token_hit_ratio, r.block_hit_ratio);
  }
  trace_free(&t);
  return rc;
}

int main(int argc, char **argv) {
  const char *cfg_path = NULL, *outdir = "out/kvsim";
  int quiet = 0;
  const char *overrides[256];
  int n_over = 0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
      usage(stdout);
      return 0;
    } else if (!strcmp(a, "--version")) {
      printf("kvsim %s\n", kv_version());
      return 0;
    } else if (!strcmp(a, "-q")) {
      quiet = 1;
    } else if ((!strcmp(a, "-c") || !strcmp(a, "-s") || !strcmp(a, "-o")) && i + 1 < argc) {
      if (a[1] == 'c') cfg_path = argv[++i];
      else if (a[1] == 'o') outdir = argv[++i];
      else if (n_over < 256) overrides[n_over++] = argv[++i];
      else {
        fprintf(stderr, "kvsim: too many -s overrides (limit 256)\n");
        return 2;
      }
    } else {
      fprintf(stderr, "kvsim: unknown or incomplete argument '%s'\n\n", a);
      usage(stderr);
      return 2;
    }
  }
  kv_error err = {0};
  kv_config *cfg = NULL;
  int rc;
  char created[4096];
  first_missing(outdir, created, sizeof created);
  if (cfg_path) {
    rc = kv_config_load(cfg_path, &cfg, &err);
  } else {
    cfg = kv_config_new();
    rc = cfg ? 0 : kv_error_set(&err, KV_ENOMEM, "out of memory");
  }
  if (!rc) { /* {configdir}: the config file's folder, for files named beside it */
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", cfg_path ? cfg_path : ".");
    char *sl = strrchr(dir, '/');
    if (!cfg_path) snprintf(dir, sizeof dir, ".");
    else if (sl) *sl = '\0';
    else snprintf(dir, sizeof dir, ".");
    rc = kv_config_expand(cfg, "{configdir}", dir, &err);
  }
  for (int i = 0; !rc && i < n_over; i++) rc = kv_config_override(cfg, overrides[i], &err);
  sim_engine_kind engine = SIM_ENGINE_TIMED;
  uint64_t seed = 1;
  if (!rc) rc = sim_config_engine(cfg, &engine, &seed, &err);
  if (!rc && engine == SIM_ENGINE_REPLAY) {
    rc = kvsim_replay(cfg, seed, outdir, quiet, &err);
    if (rc) fprintf(stderr, "kvsim: %s\n", err.msg[0] ? err.msg : kv_status_name(rc));
    if (rc && created[0]) (void)kv_remove_tree(created, NULL);
    kv_config_free(cfg);
    return rc ? 1 : 0;
  }
  sim_params p;
  memset(&p, 0, sizeof p);
  trace t;
  trace_init(&t);
  sim_result r;
  memset(&r, 0, sizeof r);
  int have_params = 0;
  if (!rc) {
    rc = sim_params_from_config(cfg, &p, &err);
    have_params = rc == 0;
  }
  if (!rc) rc = sim_workload_build(cfg, p.seed, &t, &err);
  if (!rc) rc = sim_config_check_workload(cfg, &t, p.warmup_turns, &err);
  if (!rc) rc = kv_config_check_unused(cfg, &err);
  if (!rc && t.n_sessions > 1 && !trace_has_timing(&t)) { /* printed even with -q */
    fprintf(stderr, "kvsim: warning: the workload %s has no timing (all %lld sessions arrive at "
            "t = 0, no think times): every session starts at once; give it times (kvtrace "
            "retime, or import with --rate)\n", t.name, (long long)t.n_sessions);
  }
  FILE *log = NULL;
  kv_atomic_file log_file;
  if (!rc) rc = kv_mkdirs(outdir, &err);
  if (!rc && p.log) {
    char log_path[4200];
    snprintf(log_path, sizeof log_path, "%s/sim.log", outdir);
    rc = kv_atomic_open(&log_file, log_path, &err);
    if (!rc) log = log_file.f;
  }
  if (!rc) rc = sim_run(&p, &t, log, &r, &err);
  if (log) {
    if (rc) kv_atomic_abort(&log_file);
    else rc = kv_atomic_commit(&log_file, &err);
  }
  if (!rc) rc = sim_result_write(&r, &p, &t, cfg, outdir, &err);
  if (!rc && !quiet) {
    sim_summary s;
    sim_summarize(&r, &p, &s, &err);
    printf("kvsim: %s on %lld x %s, %s, mode %s, store %s, eviction %s, prefetch %s\n",
           p.model.name, (long long)p.n_gpus, p.hw.name, t.name, sim_mode_names[p.cache.mode],
           sim_store_kind_names[p.cache.store], p.cache.eviction->name, sim_prefetch_names[p.cache.prefetch]);
    printf("  turns measured       %lld (%lld with history; warm-up %lld turns)\n",
           (long long)s.turns, (long long)s.turns_with_history, (long long)p.warmup_turns);
    printf("  hit rate             %.4f (hbm %.4f, dram %.4f, ssd %.4f); token hit rate %.4f "
           "(hbm %.4f, dram %.4f, ssd %.4f)\n",
           s.hit_rate, s.hit_rate_hbm, s.hit_rate_dram, s.hit_rate_ssd, s.token_hit_rate,
           s.token_hit_rate_hbm, s.token_hit_rate_dram, s.token_hit_rate_ssd);
    printf("  TTFT mean/p50/p99    %.4f / %.4f / %.4f s; without queueing %.4f s\n",
           s.ttft_mean_s, s.ttft_p50_s, s.ttft_p99_s, s.ttft_noqueue_mean_s);
    printf("  stationary           %s: TTFT last / middle third %+.1f%%; utilisation GPU %.2f, "
           "H2D %.2f, D2H %.2f, SSD read %.2f, write %.2f, shared %.2f\n",
           s.stationary ? "yes" : "NO", 100 * s.ttft_drift, s.util_gpu, s.util_h2d, s.util_d2h,
           s.util_ssd_read, s.util_ssd_write, s.util_ssd);
    printf("  TBT mean, e2e mean   %.4f s, %.3f s (queue %.3f s)\n", s.tbt_mean_s, s.e2e_mean_s,
           s.queue_mean_s);
    printf("  prefill throughput   %.1f tokens/s\n", s.prefill_throughput_tok_s);
    printf("  GPU busy / span      %.1f s / %.1f s\n", s.gpu_busy_s, s.span_s);
    if (p.attn.prm.mode != SIM_ATTN_OFF) {
      const int64_t *f = r.final.v, *w = r.warm.v;
      double dec = (double)(f[SIM_STAT_DECODE_TOKENS] - w[SIM_STAT_DECODE_TOKENS]);
      double steps = (double)(f[SIM_STAT_ATTN_STEPS] - w[SIM_STAT_ATTN_STEPS]);
      double rd = (double)(f[SIM_STAT_ATTN_TOKENS] - w[SIM_STAT_ATTN_TOKENS]);
      double dn = (double)(f[SIM_STAT_ATTN_DENSE_TOKENS] - w[SIM_STAT_ATTN_DENSE_TOKENS]);
      printf("  attention            %s, %s%s%s; reads %.4f of the context; batch %.1f\n",
             p.attn.prm.method, p.attn.prm.offload ? "offload, pool " : "KV in HBM",
             p.attn.prm.offload ? sim_attn_pool_names[p.attn.prm.pool] : "",
             p.attn.prm.mode == SIM_ATTN_PSA ? (p.attn.prm.loop ? ", host-synced" : ", pipelined")
                                              : "",
             dn > 0 ? rd / dn : 0.0,
             steps > 0 ? (double)(f[SIM_STAT_ATTN_DECODE_SEQS] - w[SIM_STAT_ATTN_DECODE_SEQS]) / steps
                       : 0.0);
      printf("  attention kernels    %s%s%s\n",
             p.attn.have_kprof ? "measured timings (c0 + c1 x bytes per kernel class)"
                               : "assumed: bytes / (HBM bandwidth x hbm_eff) + overheads",
             p.attn.have_kprof && p.attn.kprof_device[0] ? " on " : "",
             p.attn.have_kprof ? p.attn.kprof_device : "");
      printf("  throughput           %.1f tokens/s; PCIe block loads %.3f GB; GPU KV peak %.2f GiB\n",
             s.served_s > 0 ? dec / s.served_s : 0.0,
             (double)(f[SIM_STAT_ATTN_H2D_BYTES] - w[SIM_STAT_ATTN_H2D_BYTES]) * 1e-9,
             (double)r.attn.gpu_kv_peak_bytes / 1073741824.0);
    }
    printf("  cost                 $%.2f (GPU $%.2f, storage $%.2f, storage share %.1f%%)\n",
           s.cost_total_usd, s.cost_gpu_usd, s.cost_storage_usd, 100 * s.storage_share);
    char cost_label[1536];
    sim_cost_describe(&p.cost, cost_label, sizeof cost_label);
    printf("  cost model           %s\n", cost_label);
    printf("  events               %lld in %.3f s wall (%.2f M events/s)\n",
           (long long)r.events_fired, r.wall_s, (double)r.events_fired / r.wall_s * 1e-6);
    printf("  results              %s/results.h5, summary.csv, hit_by_turn.csv%s\n", outdir,
           p.write_requests_csv ? ", requests.csv" : "");
  }
  if (rc) fprintf(stderr, "kvsim: %s\n", err.msg[0] ? err.msg : kv_status_name(rc));
  if (rc && created[0]) (void)kv_remove_tree(created, NULL); /* what this run created */
  sim_result_free(&r);
  trace_free(&t);
  if (have_params) sim_params_free(&p);
  kv_config_free(cfg);
  return rc ? 1 : 0;
}

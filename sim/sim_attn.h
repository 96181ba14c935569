/* sim_attn.h — decode attention priced by the data: the tokens each method reads per decode step,
 * drawn from budgets measured on recorded Q/K/V (kernels/attn_profile.h), turned into bytes and
 * time; serving with the full KV in HBM (dense or sparse kernels) or in host DRAM with a GPU block
 * cache fed over PCIe (offload), the cache as one pool shared by all layers or equal per-layer
 * partitions. Selected by the [attention] section of an experiment (keys: sim_config.c and
 * docs/psa-serving.md, which also states every assumption and its default).
 *
 * Model of one decode iteration (batch D of decoding sequences, context n_i incl. the new token):
 *   per simulated layer l (mapped to a recorded layer row by attn_profile_layer_row), sequence i,
 *   and head draw h = 1..head_draws (each draw stands for kv_heads / head_draws KV heads):
 *     u ~ U[0,1) (one xoshiro stream seeded by [sim] seed; redrawn every step, or fixed per request
 *     and layer with redraw = request), frac = the profile's inverse CDF in n_i's context bin,
 *     extended outside the measured range by `extension` (fit: the profile's power law; frac:
 *     constant fraction; tokens: constant token count; top-k by `topk_extension`: tokens, its
 *     budget being fixed by definition; frac, a budget proportional to the context; or fit, a
 *     budget that grows like the tokens a PSA method needs for its mass (topk_scale_method's
 *     per-layer power law), i.e. top-k kept at its recorded accuracy), tokens
 *     t = clamp(round(frac n_i), 1, n_i);
 *     blocks = ceil(t / block_size); PSA iterations = 1 + ceil(max(0, blocks - sink - recent) /
 *     group_blocks).
 *   A method whose budget statically covers the context (top-k budget >= n_i, PSA/oracle
 *   epsilon >= 1) runs the dense kernel for that sequence: tokens n_i, no metadata, no selection.
 *   HBM bytes of (i, l) = kv_heads * mean_h attn_bytes_read(tokens, metadata of the method);
 *   dense: kv_heads * n_i * 2 * head_dim * elem.
 *   Layer time = pre + max(att, pcie) + post   (load_overlap = true: loads stream in rank order)
 *              = pre + pcie + att + post      (load_overlap = false)
 *     pre  = launch (+ select when some sequence runs a sparse method)
 *     att  = bytes / (tp * HBM bw * hbm_eff)                  dense, top-k
 *          = max(bytes / (tp bw eff), I_max * iter_pipelined)  PSA, loop = pipelined
 *          = bytes / (tp bw eff) + I_max * iter_hostsync       PSA, loop = hostsync
 *            (I_max: largest iteration count of the layer's draws: the loop runs until the last
 *            KV head of the batch stops)
 *     pcie = the time the H2D flow of the layer's block-cache misses takes on the shared link
 *            (a sim_link flow, started after `pre`), 0 without offload
 *     post = the cost model's layer time for the iteration without decode attention
 *   With a measured kernel profile (kernel_profile = file.h5, docs/kernels.md schema) `pre + att`
 *   becomes c0 + c1 * bytes / tp, fitted per kernel class on its /attention rows.
 *
 * Offload: per (i, l) the step needs N_il blocks (one block = block_size tokens of one KV head,
 *   K and V; metadata stays resident in HBM for every running request). The block cache keeps a
 *   fraction rho of what the previous step held: unified rho = min(1, C / W_prev) over all
 *   layers, partitioned rho_l = min(1, (C / L) / W_prev_l) (W = the previous step's total need).
 *   Hits = rho * min(r * N_il, N_il_prev), r = reuse_frac (the fraction of a step's blocks that
 *   the previous step also read: an assumption, or measured by attn-reuse; 1 for a statically
 *   full method). Misses * block bytes go over H2D. A sequence's first decode step finds the
 *   blocks it needs as its prefill left them (N_prev = N). Admission (admit = ws) keeps the sum of
 *   the running requests' expected working sets (mean budget at their final context) within the
 *   pool (unified) or within every layer's partition; an empty batch always admits.
 *   Every step's per-layer need is recorded and compared with common/kv_pool.h at the end
 *   (capacity that a unified pool, equal partitions or per-layer-sized partitions would need).
 *
 * Determinism: the same seed, config and workload give the same draws in the same order.
 */
#ifndef SIM_ATTN_H
#define SIM_ATTN_H

#include <stdint.h>

#include "attn_profile.h"
#include "kv_err.h"
#include "kv_rng.h"
#include "kv_pool.h"
#include "sim_hw.h"
#include "sim_model.h"

typedef enum sim_attn_mode {
  SIM_ATTN_OFF = 0,   /* attention inside the [cost] model (the engine as before) */
  SIM_ATTN_DENSE,     /* all KV in HBM, dense kernel, priced by this module */
  SIM_ATTN_TOPK,      /* fixed token budget (Quest-style) */
  SIM_ATTN_PSA,       /* progressive sparse attention (PSA, or its oracle bound) */
  SIM_ATTN_MODE_COUNT
} sim_attn_mode;
extern const char *const sim_attn_mode_names[]; /* "off", "dense", "topk", "psa" */

typedef enum sim_attn_pool { SIM_ATTN_POOL_UNIFIED = 0, SIM_ATTN_POOL_PARTITIONED } sim_attn_pool;
extern const char *const sim_attn_pool_names[]; /* "unified", "partitioned", NULL */

typedef enum sim_attn_loop { SIM_ATTN_LOOP_PIPELINED = 0, SIM_ATTN_LOOP_HOSTSYNC } sim_attn_loop;
extern const char *const sim_attn_loop_names[]; /* "pipelined", "hostsync", NULL */

typedef enum sim_attn_ext {
  SIM_ATTN_EXT_FIT = 0,  /* the profile's rule: tokens scale with the layer's power-law fit */
  SIM_ATTN_EXT_FRAC,     /* the fraction at the nearest measured length is kept */
  SIM_ATTN_EXT_TOKENS    /* the token count at the nearest measured length is kept */
} sim_attn_ext;
extern const char *const sim_attn_ext_names[]; /* "fit", "frac", "tokens", NULL */

typedef enum sim_attn_redraw { SIM_ATTN_REDRAW_STEP = 0, SIM_ATTN_REDRAW_REQUEST } sim_attn_redraw;
extern const char *const sim_attn_redraw_names[]; /* "step", "request", NULL */

/* Kernel classes of a measured kernel profile, fitted time = c0 + c1 * bytes. */
enum { SIM_ATTN_KCLASS_DENSE = 0, SIM_ATTN_KCLASS_TOPK, SIM_ATTN_KCLASS_PSA_PIPE,
       SIM_ATTN_KCLASS_PSA_HOST, SIM_ATTN_KCLASS_COUNT };

/* [attention] parameters (read by sim_config.c; defaults in sim_attn_params_defaults). */
typedef struct sim_attn_params {
  sim_attn_mode mode;
  char method[64];            /* "off", "dense" or a method label of the profile */
  char profile_path[1024];    /* attention profile (kvlab-attn-profile); "" for off/dense */
  int offload;                /* full KV in host DRAM, GPU block cache over PCIe */
  sim_attn_pool pool;
  int64_t pool_bytes;         /* block cache; 0 = pool_frac of the HBM KV space */
  double pool_frac;
  sim_attn_loop loop;
  int load_overlap;
  double hbm_eff;             /* fraction of HBM bandwidth attention kernels reach */
  int64_t launch_ns;          /* per layer and step, every method (assumption) */
  int64_t select_ns;          /* per layer and step, sparse methods: scores + sort (assumption) */
  int64_t iter_pipelined_ns;  /* PSA per-iteration cost on the critical path (assumption) */
  int64_t iter_hostsync_ns;   /* PSA host-synchronised per-iteration cost (assumption) */
  double reuse_frac;          /* r of the header comment (assumption) */
  char reuse_csv[1024];       /* measured overlap (attn-reuse output); "" = reuse_frac */
  int head_draws;
  sim_attn_ext extension;      /* PSA (and oracle) */
  sim_attn_ext topk_extension; /* top-k: tokens (a fixed budget, default), frac (the budget
                                  scales with the context) or fit (it grows like the tokens
                                  topk_scale_method reads: equal accuracy across lengths) */
  char topk_scale_method[64];  /* a PSA label of the profile, for topk_extension = fit */
  sim_attn_redraw redraw;
  int admit_ws;               /* admission by expected working set (offload) */
  double admit_headroom;      /* working sets may fill this fraction of the pool */
  int64_t host_bytes;         /* host DRAM for running requests' offloaded KV */
  char kernel_profile[1024];  /* measured kernel timings (kvlab-kernel-profile); "" = model */
} sim_attn_params;

void sim_attn_params_defaults(sim_attn_params *ap);

/* The loaded, checked model: params + profile + per-layer mapping. Built once per experiment
 * (sim_attn_model_load) and shared read-only by runs. */
typedef struct sim_attn_model {
  sim_attn_params prm;
  sim_model model;            /* copy */
  sim_hw hw;                  /* copy */
  int64_t tp;
  attn_profile prof;          /* empty for off/dense */
  int have_prof;
  int m;                      /* method index in prof */
  int m_scale;                /* topk_extension = fit: the PSA method whose fit top-k follows */
  attn_method method;         /* the method (dense for dense) */
  int *row;                   /* [layers] recorded row per simulated layer */
  double *reuse;              /* [layers] r per simulated layer */
  int64_t *rng_lo, *rng_hi;   /* [recorded rows] measured context range (keys); lo = 0: none */
  double kc0[SIM_ATTN_KCLASS_COUNT], kc1[SIM_ATTN_KCLASS_COUNT]; /* ns, ns per byte */
  int have_kprof;
  double mean_err;            /* the method's mean relative L2 output error vs dense over the
                                 recorded layers (profile mean_err; 0 for dense) */
  int64_t block_bytes;        /* K + V of one block of one KV head */
  int64_t meta_bytes_per_block; /* all metadata vectors of one block of one KV head */
} sim_attn_model;

/* Loads the profile / reuse table / kernel profile named by `prm` and checks them against the
 * model (method present, kinds consistent, offload only for sparse methods). Errors name the file
 * and dataset or the [attention] key. On success free with sim_attn_model_free. */
int sim_attn_model_load(sim_attn_model *am, const sim_attn_params *prm, const sim_model *m,
                        const sim_hw *hw, int64_t tp, kv_error *err);
void sim_attn_model_free(sim_attn_model *am);

/* Expected tokens one KV head reads at context n in layer l (mean of the measured distribution
 * under the extension rule; n for dense and statically full methods). */
double sim_attn_mean_tokens(const sim_attn_model *am, int layer, int64_t n);
/* Tokens for a uniform draw u (the inverse CDF under the extension rule), in [1, n]. */
int64_t sim_attn_draw_tokens(const sim_attn_model *am, int layer, int64_t n, double u);
/* 1 when the method reads the whole context of n keys by construction. */
int sim_attn_static_full(const sim_attn_model *am, int64_t n);
/* The same draw through the simulator's fast path (bin and scale computed once per sequence and
 * recorded row); equal to sim_attn_draw_tokens bit for bit (tested). */
int64_t sim_attn_draw_tokens_fast(const sim_attn_model *am, int layer, int64_t n, double u);
/* HBM metadata bytes a running request of final context n keeps resident (offload), all layers. */
int64_t sim_attn_meta_bytes(const sim_attn_model *am, int64_t n);

/* Fits time = c0 + c1 * bytes per kernel class from a kernel profile (docs/kernels.md schema:
 * /attention/{section, method, batch, len, time_s, bytes}); classes without rows keep c1 = -1.
 * Exposed for tests. */
int sim_attn_kernel_profile_fit(const char *path, double c0_ns[SIM_ATTN_KCLASS_COUNT],
                                double c1_ns_per_byte[SIM_ATTN_KCLASS_COUNT], kv_error *err);

/* ---- per-run state ----------------------------------------------------------------------- */

typedef struct sim_attn_seq {
  int32_t job;                /* engine job id (>= 0), stable while the request runs */
  int64_t ctx;                /* keys the decode step attends to (incl. the new token) */
} sim_attn_seq;

/* What one iteration costs, per layer (arrays of `layers`, owned by the run state). */
typedef struct sim_attn_plan {
  int64_t *pre_ns, *att_ns, *post_ns, *h2d_bytes;
  int64_t *plain_ns;          /* pre + att + post: the layer's time when nothing is loaded */
  int64_t d2h_bytes;          /* offloaded new KV written back this iteration (no store) */
  int64_t decode_ns;          /* sum over layers of the decode attention part (pre + att) */
} sim_attn_plan;

/* Result aggregates written with the run's summary. */
typedef struct sim_attn_result {
  int64_t pool_bytes, pool_blocks, gpu_kv_peak_bytes;
  double mean_err;              /* the method's accuracy (sim_attn_model.mean_err) */
  kv_pool_report pool_report;  /* over every recorded decode step (need per layer) */
  int have_pool_report;
} sim_attn_result;

typedef struct sim_attn_run {
  const sim_attn_model *am;
  int64_t *stats;             /* the engine's counters (sim_stats.h), borrowed */
  kv_rng rng;
  int64_t L, kvh;
  sim_attn_plan plan;
  /* per job slot: previous step's need per layer, expected working set per layer, draws */
  int32_t cap_jobs;
  double *prev_need;          /* [cap_jobs, L]; < 0: no previous step (seeded by the prefill) */
  double *ws;                 /* [cap_jobs, L] expected working set (blocks) while admitted */
  double *u_fixed;            /* [cap_jobs, L, head_draws] with redraw = request */
  int64_t *host_used;         /* [cap_jobs] offloaded bytes held in host DRAM */
  uint8_t *admitted;          /* [cap_jobs] */
  double *ws_sum;             /* [L] over admitted jobs */
  double *wprev_l, wprev;     /* previous step's need per layer and in total */
  double *need_l;             /* [L] scratch */
  int64_t host_sum;
  double pool_blocks;
  /* per (decoding sequence, recorded row) bin and scale of the current step (sim_attn.c) */
  void *rowdraw;
  uint8_t *rowdraw_ok;
  int64_t cap_rowdraw, n_rows;
  /* recorded needs for kv_pool_compare: [n_steps, L] */
  int64_t *need_log;
  int64_t n_steps, cap_steps;
} sim_attn_run;

/* Starts a run. `pool_bytes` is the block cache carved out of the HBM KV space by the engine
 * (0 without offload). `stats` is the engine's counter array (borrowed). */
int sim_attn_run_init(sim_attn_run *r, const sim_attn_model *am, uint64_t seed,
                      int64_t pool_bytes, int64_t *stats, kv_error *err);
void sim_attn_run_free(sim_attn_run *r);

/* HBM bytes a request reserves at admission: the whole context (input + output) without offload;
 * with offload its prefill's KV (input tokens, released after the prefill by
 * sim_attn_after_prefill) plus the metadata of its final context. */
int64_t sim_attn_reserve_bytes(const sim_attn_model *am, int64_t input, int64_t output);
/* HBM bytes a request keeps after its prefill (offload: metadata only); == reserve otherwise. */
int64_t sim_attn_after_prefill(const sim_attn_model *am, int64_t input, int64_t output);

/* Admission by working set and host memory (offload). 1 = admit. `batch_empty` admits anyway. */
int sim_attn_can_admit(const sim_attn_run *r, int64_t final_ctx, int batch_empty);
/* A job enters (ctx = its final context) / leaves the batch. KV_ENOMEM on allocation failure. */
int sim_attn_admit(sim_attn_run *r, int32_t job, int64_t final_ctx);
void sim_attn_release(sim_attn_run *r, int32_t job);

/* Plans one iteration: seqs[n] are the decoding sequences (n may be 0), post_ns the cost model's
 * layer time without decode attention, new_kv_tokens the tokens whose KV the iteration produces
 * (for the write-back without a store). Fills r->plan and the counters. */
int sim_attn_iter(sim_attn_run *r, const sim_attn_seq *seqs, int64_t n, int64_t post_ns,
                  int64_t new_kv_tokens, int has_store, kv_error *err);

/* Capacity comparison over the recorded steps (kv_pool_compare) and pool figures. */
int sim_attn_finish(sim_attn_run *r, int64_t gpu_kv_peak_bytes, sim_attn_result *res,
                    kv_error *err);

/* Summary rows (name, value), the same set for every mode (NaN where not applicable). */
typedef struct sim_attn_row {
  const char *name;
  double v;
} sim_attn_row;
/* Counters are the measured window (final - warm); served_s = warm-up end to the last measured
 * completion (throughput's denominator: transfers still running after it do not count).
 * Returns the number of rows written (<= cap). */
int sim_attn_summary_rows(const sim_attn_params *ap, const sim_attn_result *res,
                          const int64_t *measured_stats, double served_s, sim_attn_row *out,
                          int cap);

#endif /* SIM_ATTN_H */

/* sim_attn.h — decode attention priced by the data: the tokens each method reads per decode step,
 * drawn from budgets measured on recorded Q/K/V (the attention profile, sim_attn_profile.h, and
 * the loaded model, sim_attn_model.h), turned into bytes and time; serving with the full KV in HBM (dense or sparse kernels) or in host DRAM with a GPU block
 * cache fed over PCIe (offload), the cache as one pool shared by all layers or equal per-layer
 * partitions. Selected by the [attention] section of an experiment (keys: sim_config.c and
 * docs/psa-serving.md, which also states every assumption and its default).
 *
 * Model of one decode iteration (batch D of decoding sequences, context n_i incl. the new token):
 *   per simulated layer l (mapped to a recorded layer row by sim_attn_profile_layer_row),
 *   sequence i, and head draw h = 1..head_draws (each draw stands for kv_heads / head_draws KV heads):
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

#include "kv_err.h"
#include "kv_pool.h"
#include "kv_rng.h"
#include "sim_attn_model.h"

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
  int kernel_measured;          /* attention priced by measured kernel timings (1) or by the
                                   bandwidth model with assumed overheads (0) */
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

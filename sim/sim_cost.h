/* sim_cost.h — time of one engine iteration, per transformer layer, from a cost model.
 *
 * An iteration (continuous batching) runs some prefills (sequence j: hist_j cached tokens whose
 * KV is read, new_j tokens computed) and some decode steps (one token each, with its context).
 * All transformer layers are identical, so the model returns one layer's time, plus the time of
 * the LM head once per iteration; the engine multiplies by the layer count and, when KV is still
 * loading, lets each layer wait for its KV (layer-wise pre-loading).
 *
 * Models (chosen by [cost] model in the experiment config):
 *   roofline  max(FLOPs / (tp * peak * compute_eff), bytes / (tp * HBM bw * memory_eff)) plus a
 *             tensor-parallel all-reduce term; FLOPs = 2 * layer params * tokens + attention
 *             4 * heads * head_dim * (attended pairs); bytes = layer weights + KV read/written.
 *   linear    layer_ns = base + prefill_ns_per_token * sum(new) + decode_ns_per_seq * n_decode
 *             + ctx_ns_per_token * (sum(hist + new) + sum(ctx)); head_ns constant. Exact integer
 *             arithmetic for hand-checked (golden) tests and queueing checks.
 *   profile   measured tables in HDF5 (schema below), interpolated bilinearly and extrapolated
 *             linearly from the edge cells; a mixed iteration costs sum of its prefills' times +
 *             the decode step's time (additivity is an approximation).
 *   measured  operator times of one GPU measured by sim/profiling (sim_profile.h: the layer as
 *             the sum of its GEMMs, attention and elementwise operators); the roofline prices
 *             only what the profile lacks, and says so (sim_cost_describe).
 *
 * Profile schema (HDF5, version 1; docs/sim.md):
 *   /                 attrs: format = "kvlab-sim-profile", version = 1 (int),
 *                            model (str), hardware (str), tp (int)
 *   /prefill/hist_tokens  int64  (H)     strictly increasing, >= 0
 *   /prefill/new_tokens   int64  (N)     strictly increasing, >= 1
 *   /prefill/layer_ns     double (H, N)  one layer, one sequence: prefill of new tokens whose
 *                                        attention reads hist cached tokens; finite, >= 0
 *   /decode/batch         int64  (B)     strictly increasing, >= 1
 *   /decode/ctx_tokens    int64  (C)     strictly increasing, >= 1 (mean context per sequence)
 *   /decode/layer_ns      double (B, C)  one layer, one decode step of the whole batch
 *   /head/batch           int64  (K)     strictly increasing, >= 1 (sequences emitting a token)
 *   /head/ns              double (K)     LM head + sampling per iteration
 * A grid axis needs at least 2 points.
 */
#ifndef SIM_COST_H
#define SIM_COST_H

#include <stddef.h>
#include <stdint.h>

#include "kv_err.h"
#include "sim_hw.h"
#include "sim_model.h"

typedef enum sim_cost_kind {
  SIM_COST_ROOFLINE = 0,
  SIM_COST_LINEAR,
  SIM_COST_PROFILE,
  SIM_COST_MEASURED,
  SIM_COST_KIND_COUNT
} sim_cost_kind;

extern const char *const sim_cost_kind_names[]; /* NULL-terminated, for kv_config_enum */

typedef struct sim_grid2 {
  int64_t nx, ny;
  int64_t *x, *y;     /* (nx), (ny) */
  double *v;          /* (nx, ny) row-major */
} sim_grid2;

typedef struct sim_cost {
  sim_cost_kind kind;
  sim_model model;    /* copy */
  sim_hw hw;          /* copy */
  int64_t tp;         /* GPUs sharing each layer */
  /* roofline */
  double compute_eff, memory_eff;
  /* linear, ns */
  int64_t lin_base_ns, lin_prefill_ns_per_token, lin_decode_ns_per_seq, lin_ctx_ns_per_token;
  int64_t lin_head_ns;
  /* profile */
  sim_grid2 prefill, decode;
  int64_t head_n, *head_batch;
  double *head_ns;
  char profile_path[1024];
  /* measured (sim_profile.h; owned, NULL otherwise) */
  struct sim_prof_cost *measured;
} sim_cost;

/* One iteration's work. Arrays have n_prefill entries (borrowed). */
typedef struct sim_iter_work {
  int32_t n_prefill;
  const int64_t *prefill_hist;
  const int64_t *prefill_new;
  int64_t n_decode;
  int64_t decode_ctx_sum;   /* sum over decode sequences of their context incl. the new token */
} sim_iter_work;

/* Roofline and linear models need no files. Defaults: compute_eff 0.6, memory_eff 0.8. */
void sim_cost_init_roofline(sim_cost *c, const sim_model *m, const sim_hw *hw, int64_t tp,
                            double compute_eff, double memory_eff);
void sim_cost_init_linear(sim_cost *c, const sim_model *m, int64_t base_ns,
                          int64_t prefill_ns_per_token, int64_t decode_ns_per_seq,
                          int64_t ctx_ns_per_token, int64_t head_ns);
/* Loads a profile (schema above); errors name the file and dataset. */
int sim_cost_load_profile(sim_cost *c, const sim_model *m, const sim_hw *hw, int64_t tp,
                          const char *path, kv_error *err);
void sim_cost_free(sim_cost *c);

/* One layer's time and the LM head's time, ns (>= 0). */
void sim_cost_iter(const sim_cost *c, const sim_iter_work *w, int64_t *layer_ns,
                   int64_t *head_ns);

/* Writes a profile file (for tests and for converting measurements). Tables as in the schema;
 * head may be omitted (head_n = 0). */
int sim_cost_write_profile(const char *path, const char *model, const char *hardware,
                           int64_t tp, const sim_grid2 *prefill, const sim_grid2 *decode,
                           int64_t head_n, const int64_t *head_batch, const double *head_ns,
                           kv_error *err);

/* Which model priced the times, one line for outputs ("roofline (assumed: ...)", "measured:
 * profile ..."); buf is always terminated. */
void sim_cost_describe(const sim_cost *c, char *buf, size_t cap);

/* Bilinear interpolation / linear extrapolation on a grid (exposed for tests). */
double sim_grid2_eval(const sim_grid2 *g, double x, double y);

#endif /* SIM_COST_H */

/* sim_profile.h — a GPU profile measured by sim/profiling (sim/data/profiles/<device>/) and the
 * cost model built on it: `[cost] model = measured` (docs/sim.md, "GPU profile").
 *
 * A profile is a directory of CSV tables (sim_csv.h: '#' provenance lines, a header, columns
 * found by name; extra columns are ignored) and meta.ini:
 *   meta.ini          [profile] format = kvlab-gpu-profile, version = 1, device, date_utc,
 *                     commit, torch, smoke (true: CPU flow-test numbers, labelled as such)
 *   gemm.csv          n, k, m, us          y = x W^T, W (n, k), x (m, k), bf16
 *   attn_prefill.csv  heads, kv_heads, head_dim, hist, new, us
 *                                          causal attention of `new` queries over hist + new keys
 *   attn_decode.csv   heads, kv_heads, head_dim, batch, context, source, us
 *                                          one query per sequence over `context` keys; source
 *                                          names the kernel (sdpa, sdpa_masked, kvbench, ...)
 *   elementwise.csv   op, width, tokens, us    rmsnorm, rope, silu_mul, gelu, add, embed,
 *                                          kv_update; width = elements per token (rope:
 *                                          (heads + kv_heads) x head_dim of the q and k it
 *                                          rotates; kv_update: 2 x kv_heads x head_dim written
 *                                          into a cache, as transformers' StaticCache does)
 *   host.csv          path, layers, us, fixed_us, per_layer_us   launch overhead of an eager
 *                                          framework: rows whose `layers` is "fit" give
 *                                          fixed_us + per_layer_us; a path with one measured
 *                                          point (layers, us) and no fit is derived from the
 *                                          first fitted path (sim_prof_host.derived); optional
 *   sustain.csv       model, op, tokens, ratio   sustained / short time of the same work (op
 *                                          "layer": one decoder layer's prefill of `tokens`
 *                                          tokens, composed of the operators below; other ops
 *                                          are information and ignored). The tables above are
 *                                          short timings (a few ms after a pause, the SM at its
 *                                          boost clock); a loaded GPU runs at its power cap
 *                                          with a lower clock (docs/sim.md). Optional
 *   launch_gap.csv    model, tokens, gap_us   time per layer a CUDA-graph replay of the
 *                                          framework's iteration spends beyond its operators'
 *                                          timings (mostly the GPU's idle time between dependent
 *                                          kernels), >= 0, from kvprof_gap.py at points outside
 *                                          the validation grid (the H200's: layer-count
 *                                          regression, kvprof_layers.py; other columns are
 *                                          information). Optional (docs/sim.md)
 * `us` is a median time in microseconds (> 0). Axis values (m, new, context, tokens, batch) are
 * >= 1, hist >= 0. Every table is a set of curves of time against its x axis (m, new,
 * context, tokens) at values of a second axis z (hist for prefill attention, batch for decode
 * attention, none for the others); points need not form a full grid.
 *
 * Interpolation: along x, piecewise linear in (log x, log us); between curves, linear in
 * (z, us) for hist (time is affine in the history) and in (log z, log us) for batch. Outside
 * the measured range the value is the edge's (below the smallest point) or the edge's scaled
 * by the work (above the largest: proportional to m, tokens, batch and context; to the number
 * of attended pairs for new tokens; affine in hist), and the evaluation sets a flag. Nothing
 * is extrapolated silently: callers see SIM_PROF_BELOW / SIM_PROF_ABOVE.
 *
 * The measured cost model (sim_prof_cost) prices one layer of an iteration as the sum of its
 * operators on one of tp GPUs (shards: heads and FFN split over tp, Megatron style):
 *   q, k, v, o, [gate,] up, down projections at m = T tokens of the iteration
 *   2 x rmsnorm, rope, silu_mul (gated FFN) or gelu, 2 x add, at T tokens
 *   prefill attention per prefill sequence (hist, new), decode attention of the decode batch
 *   (batch, mean context incl. the new token), from the `decode_attention` source, and the
 *   cache write of the decode tokens (kv_update; a prefill's KV write is not priced:
 *   transformers' prefill without a cache does none, and in a serving engine it is well under
 *   1% of a prefill of 1K tokens or more)
 *   + 2 ring all-reduces when tp > 1 (the roofline's formula: assumed, not measured)
 * With sustain.csv and power_state "sustained" (the default) the layer's operators are scaled
 * by the measured ratio at T tokens (piecewise linear in log T between the measured points, the
 * edge ratio outside them, never below 1: a ratio under 1 is timing noise at the boost clock);
 * a model the table lacks takes the mean of the measured models' ratios (named in the
 * description). "short" prices the tables as measured.
 * and the head (once per iteration) as embedding + final rmsnorm at T tokens + the LM head at
 * m = sequences (one logit row per sequence). With a host path (an eager framework), a layer
 * costs max(its GPU time, the host's per-layer launch time) and the head max(its GPU time, the
 * fixed host time). With launch_gap.csv and launch_gaps "measured" (the default) the layer
 * adds the model's measured gap at T tokens (piecewise linear in log T, edges outside; not
 * scaled by the sustain ratio: idle time, not work; a model the table lacks takes the mean of
 * the measured models', named in the description); "none" leaves it out. An operator whose
 * shape the profile lacks is priced by the roofline (compute_eff, memory_eff) and named in the
 * description: nothing is mixed in silently.
 */
#ifndef SIM_PROFILE_H
#define SIM_PROFILE_H

#include <stddef.h>
#include <stdint.h>

#include "kv_config.h"
#include "kv_err.h"
#include "sim_cost.h"

/* What an evaluation did outside the measurement (bit set). */
enum {
  SIM_PROF_BELOW = 1u,    /* a query below the smallest measured point: edge value */
  SIM_PROF_ABOVE = 2u,    /* above the largest: edge value scaled by the work */
  SIM_PROF_ROOFLINE = 4u  /* an operator missing from the profile: roofline */
};

/* How a table continues above the largest measured point of an axis. */
typedef enum sim_prof_beyond {
  SIM_PROF_CLAMP = 0,     /* the edge value */
  SIM_PROF_PROPORTIONAL,  /* edge value x q / edge */
  SIM_PROF_AFFINE,        /* z only: the line through the last two curves, never below the edge */
  SIM_PROF_PAIRS          /* x only: edge value x pairs(q) / pairs(edge), pairs(x) = x z +
                           * x (x + 1) / 2 (x new tokens attending causally after z cached) */
} sim_prof_beyond;

typedef struct sim_prof_curve {
  int32_t n;
  double *x;   /* (n) strictly increasing, >= 1 */
  double *us;  /* (n) > 0, microseconds */
} sim_prof_curve;

/* Curves of time against x at increasing z (nz = 1, z = {0}: a one-axis table). */
typedef struct sim_prof_table {
  int64_t key[3];     /* gemm: n, k, 0; attention: heads, kv_heads, head_dim; elementwise: width */
  char name[24];      /* attn_decode: source; elementwise: op; otherwise "" */
  int32_t nz;
  double *z;          /* (nz) strictly increasing */
  sim_prof_curve *c;  /* (nz) */
} sim_prof_table;

typedef struct sim_prof_host {
  char path[32];
  double fixed_us, per_layer_us;
  char derived[96];  /* "" for a fit of host.csv; else how it was derived (a path measured at
                      * one layer count only: the first fitted path's per-layer time, the rest
                      * of its one point as the fixed time) */
} sim_prof_host;

typedef enum sim_prof_kind {
  SIM_PROF_GEMM = 0,
  SIM_PROF_PREFILL,
  SIM_PROF_DECODE,
  SIM_PROF_ELEM,
  SIM_PROF_KINDS
} sim_prof_kind;

/* One model's curve of a value against the iteration's token count: sustain.csv's layer
 * ratios (sustained / short, op "layer") and launch_gap.csv's gaps (us per layer). */
typedef struct sim_prof_tcurve {
  char model[64];
  int32_t n;
  double tokens[32]; /* (n) strictly increasing, >= 1 */
  double v[32];      /* (n) ratio (> 0) or us per layer (>= 0) */
} sim_prof_tcurve;

typedef struct sim_profile {
  char dir[1024];
  char device[128], date[48], commit[72], torch[48];
  int smoke;
  int32_t n[SIM_PROF_KINDS];
  sim_prof_table *t[SIM_PROF_KINDS]; /* (n[kind]) */
  int32_t n_host;
  sim_prof_host *host;               /* (n_host) */
  int32_t n_sustain;
  sim_prof_tcurve *sustain;          /* (n_sustain); none without sustain.csv */
  int32_t n_gap;
  sim_prof_tcurve *gap;              /* (n_gap); none without launch_gap.csv */
} sim_profile;

/* Loads the profile in dir (layout above); on error nothing is allocated and err names the
 * file and line. A missing host.csv, sustain.csv or launch_gap.csv is not an error (no host
 * paths; short timings only; no launch gaps). */
int sim_profile_load(const char *dir, sim_profile *p, kv_error *err);
void sim_profile_free(sim_profile *p);
/* The table of `kind` with that key (unused key entries 0) and name ("" when none); NULL when
 * absent. Borrowed from p. */
const sim_prof_table *sim_profile_find(const sim_profile *p, sim_prof_kind kind, int64_t k0,
                                       int64_t k1, int64_t k2, const char *name);
const sim_prof_host *sim_profile_host(const sim_profile *p, const char *path);
/* A curve's value at `tokens` (edge values outside, piecewise linear in log tokens inside; not
 * clamped). */
double sim_prof_tcurve_eval(const sim_prof_tcurve *s, double tokens);

/* Time (us) at x on one curve; z is the curve's z (used by SIM_PROF_PAIRS). Adds to *flags. */
double sim_prof_curve_eval(const sim_prof_curve *c, double x, sim_prof_beyond above, double z,
                           unsigned *flags);
/* Time (us) at (z, x): z_log chooses (log z, log us) over (z, us) between curves. */
double sim_prof_table_eval(const sim_prof_table *t, double z, double x, int z_log,
                           sim_prof_beyond z_above, sim_prof_beyond x_above, unsigned *flags);

/* ---- the measured cost model ------------------------------------------------------------- */

typedef struct sim_prof_opts {
  const char *decode_source;  /* attn_decode.csv source; NULL = "sdpa" */
  const char *host_path;      /* host.csv path; NULL or "none" = no host floor (graph replay) */
  double compute_eff, memory_eff; /* roofline of operators the profile lacks (0 = 0.6, 0.8) */
  const char *power_state;    /* "sustained" (NULL: sustain.csv when present) or "short" */
  const char *launch_gaps;    /* "measured" (NULL: launch_gap.csv when present) or "none" */
} sim_prof_opts;

typedef enum sim_prof_op {
  SIM_OP_Q = 0, SIM_OP_K, SIM_OP_V, SIM_OP_O, SIM_OP_GATE, SIM_OP_UP, SIM_OP_DOWN,
  SIM_OP_LM_HEAD, SIM_OP_NORM, SIM_OP_ROPE, SIM_OP_ACT, SIM_OP_ADD, SIM_OP_EMBED, SIM_OP_KV_UPDATE,
  SIM_OP_ATTN_PREFILL, SIM_OP_ATTN_DECODE,
  SIM_OP_LAUNCH_GAP, /* not an operator: the layer's measured gaps between kernels */
  SIM_OP_COUNT
} sim_prof_op;

extern const char *const sim_prof_op_names[]; /* (SIM_OP_COUNT) */

typedef struct sim_prof_cost {
  sim_profile prof;                 /* owned */
  sim_model model;
  sim_hw hw;
  int64_t tp;
  double compute_eff, memory_eff;
  char decode_source[24], host_path[32];
  double host_fixed_us, host_layer_us;  /* 0 without a host path */
  char host_derived[96];                /* sim_prof_host.derived of the path ("" for a fit) */
  int64_t shape[SIM_OP_COUNT][3];       /* gemm: n, k; elementwise: width; attention: layout */
  int used[SIM_OP_COUNT];               /* the layer / head runs this operator */
  const sim_prof_table *tab[SIM_OP_COUNT]; /* NULL: roofline (when used) */
  int sustained;                        /* scale layers by the sustain ratios (see above) */
  const sim_prof_tcurve *sus;           /* the model's curve; NULL: the mean of all curves */
  char sus_note[160];                   /* for the description */
  int gaps;                             /* add launch_gap.csv's gap per layer (see above) */
  const sim_prof_tcurve *gap;           /* the model's curve; NULL: the mean of all curves */
  char gap_note[160];                   /* for the description */
} sim_prof_cost;

/* Loads the profile in dir and binds it to a model on tp GPUs. KV_ENOTSUP when the heads or
 * the FFN do not divide over tp; KV_ENOENT when host_path names no host.csv row; unknown
 * decode sources are KV_ENOENT too (the message lists the sources present). */
int sim_prof_cost_init(sim_prof_cost *c, const char *dir, const sim_model *m, const sim_hw *hw,
                       int64_t tp, const sim_prof_opts *o, kv_error *err);
void sim_prof_cost_free(sim_prof_cost *c);
/* One layer's time and the head's (ns, >= 0), as sim_cost_iter; *flags (may be NULL) gets the
 * SIM_PROF_* bits of every lookup. */
void sim_prof_cost_iter(const sim_prof_cost *c, const sim_iter_work *w, int64_t *layer_ns,
                        int64_t *head_ns, unsigned *flags);
/* One layer's and the head's GPU time (us), without the host floors (what sim_prof_cost_iter
 * floors by host_layer_us and host_fixed_us). */
void sim_prof_cost_gpu(const sim_prof_cost *c, const sim_iter_work *w, double *layer_us,
                       double *head_us, unsigned *flags);
/* The same iteration operator by operator (us, on one GPU, host floors and all-reduce not
 * included): layer_us[op] for one layer, head_us[op] for the head; both (SIM_OP_COUNT). */
void sim_prof_cost_ops(const sim_prof_cost *c, const sim_iter_work *w, double *layer_us,
                       double *head_us, unsigned *flags);
/* One line: profile, device, date, commit, options and the operators priced by the roofline. */
void sim_prof_cost_describe(const sim_prof_cost *c, char *buf, size_t cap);

/* Initialises *c as `[cost] model = measured` (kind SIM_COST_MEASURED; c->measured owns a
 * sim_prof_cost, released by sim_cost_free). Errors as sim_prof_cost_init. */
int sim_cost_init_measured(sim_cost *c, const sim_model *m, const sim_hw *hw, int64_t tp,
                           const char *dir, const sim_prof_opts *o, kv_error *err);

/* [cost] model = measured: reads `profile` (a directory, or a name under
 * <data_dir>/profiles), `decode_attention` (sdpa), `host_overhead` (none), `power_state`
 * (sustained | short), `launch_gaps` (measured | none), `compute_eff` (0.6), `memory_eff`
 * (0.8) and initialises *cost
 * (sim_cost_init_measured). */
int sim_cost_measured_from_config(const kv_config *cfg, const char *data_dir, const sim_model *m,
                                  const sim_hw *hw, int64_t tp, sim_cost *cost, kv_error *err);

#endif /* SIM_PROFILE_H */

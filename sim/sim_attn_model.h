/* sim_attn_model.h — the loaded [attention] model: parameters, the method's descriptor and
 * measured budgets from the attention profile (sim_attn_profile.h), the per-layer mapping onto
 * recorded rows, the reuse table and the kernel-time fit, and the draws of the tokens one KV head
 * reads (sim_attn.h gives the model of an iteration these feed). Built once per experiment
 * (sim_attn_model_load) and shared read-only by runs.
 */
#ifndef SIM_ATTN_MODEL_H
#define SIM_ATTN_MODEL_H

#include <stdint.h>

#include "kv_err.h"
#include "sim_attn_profile.h"
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
  char method[160];           /* "off", "dense", or a method of the profile by label or spec */
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
  char topk_scale_method[160]; /* a progressive method of the profile (label or spec), for
                                  topk_extension = fit */
  sim_attn_redraw redraw;
  int admit_ws;               /* admission by expected working set (offload) */
  double admit_headroom;      /* working sets may fill this fraction of the pool */
  int64_t host_bytes;         /* host DRAM for running requests' offloaded KV */
  char kernel_profile[1024];  /* measured kernel timings (kvlab-kernel-profile); "" = the
                                 attention profile's /kernel_timings when it carries them */
  int kernel_assumed;         /* kernel_timings = assumed: the bandwidth model of sim_attn.h even
                                 when measured timings are at hand (default 0: measured) */
} sim_attn_params;

void sim_attn_params_defaults(sim_attn_params *ap);

/* The loaded, checked model: params + profile + per-layer mapping. Built once per experiment
 * (sim_attn_model_load) and shared read-only by runs. */
typedef struct sim_attn_model {
  sim_attn_params prm;
  sim_model model;            /* copy */
  sim_hw hw;                  /* copy */
  int64_t tp;
  sim_attn_profile prof;      /* empty for off/dense */
  int have_prof;
  int m;                      /* method index in prof */
  int m_scale;                /* topk_extension = fit: the PSA method whose fit top-k follows */
  sim_attn_desc method;       /* the method (sim_attn_desc_dense for dense) */
  int *row;                   /* [layers] recorded row per simulated layer */
  double *reuse;              /* [layers] r per simulated layer */
  int64_t *rng_lo, *rng_hi;   /* [recorded rows] measured context range (keys); lo = 0: none */
  double kc0[SIM_ATTN_KCLASS_COUNT], kc1[SIM_ATTN_KCLASS_COUNT]; /* ns, ns per byte */
  int have_kprof;
  char kprof_device[96];      /* the measured timings' device ("" when none) */
  double mean_err;            /* the method's mean relative L2 output error vs dense over the
                                 recorded layers (profile mean_err; 0 for dense) */
  int64_t block_bytes;        /* K + V of one block of one KV head */
  int64_t meta_bytes_per_block; /* all metadata vectors of one block of one KV head */
} sim_attn_model;

/* Loads the profile / reuse table / kernel profile named by `prm` and checks them against the
 * model (method present by label or canonical spec, kinds consistent, offload only for sparse
 * methods). Kernel timings (kernel_timings = measured, the default) come from [attention]
 * kernel_profile when named, else from the profile's /kernel_timings when it carries them (for
 * method = dense too, when a profile is named), else the overheads are the assumptions of
 * sim_attn_params, as with kernel_timings = assumed. Errors name the file and dataset or the [attention] key. On success free with
 * sim_attn_model_free. */
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

/* Fits time = c0 + c1 * bytes per kernel class (least squares; through the origin when the
 * intercept would be negative or the slope not positive) from measured kernel timings; classes
 * without rows keep c1 = -1. `what` names the rows' source in messages. */
int sim_attn_kernel_fit(const sim_attn_timings *t, double c0_ns[SIM_ATTN_KCLASS_COUNT],
                        double c1_ns_per_byte[SIM_ATTN_KCLASS_COUNT], const char *what,
                        kv_error *err);
/* The same from a kernel profile file (docs/kernels.md schema:
 * /attention/{section, method, batch, len, time_s, bytes}); device (may be NULL) gets its root
 * `device` attribute ("" when absent). Exposed for tests. */
int sim_attn_kernel_profile_fit(const char *path, double c0_ns[SIM_ATTN_KCLASS_COUNT],
                                double c1_ns_per_byte[SIM_ATTN_KCLASS_COUNT], char *device,
                                size_t device_cap, kv_error *err);

/* KV bytes per token of the model (rounded). */
int64_t sim_attn_bytes_per_token(const sim_attn_model *am);
/* HBM bytes a request reserves at admission: the whole context (input + output) without offload;
 * with offload its prefill's KV (input tokens, released after the prefill by
 * sim_attn_after_prefill) plus the metadata of its final context. */
int64_t sim_attn_reserve_bytes(const sim_attn_model *am, int64_t input, int64_t output);
/* HBM bytes a request keeps after its prefill (offload: metadata only); == reserve otherwise. */
int64_t sim_attn_after_prefill(const sim_attn_model *am, int64_t input, int64_t output);

/* ---- the fast path of the draws (used by sim_attn.c per decode step) ------------------------- */

/* What depends only on (recorded row, context) — the bin and the extension's scale, a pow() — for
 * one (sequence, row) pair; the per-draw part is the quantile interpolation. */
typedef struct sim_attn_rowdraw {
  const double *q;   /* the bin's quantiles, or NULL: no data (the fit alone) */
  double scale;      /* factor applied to the interpolated quantile */
  double lo;         /* lower clamp 1 / n_eval */
  double post;       /* factor after clamping (extension = tokens), 1 otherwise */
  double fit_frac;   /* q == NULL: the fit's fraction */
  int bin;           /* the bin of q, -1 without data */
} sim_attn_rowdraw;

void sim_attn_rowdraw_init(const sim_attn_model *am, int row, int64_t n, sim_attn_rowdraw *d);
/* Fraction read for draw u. */
double sim_attn_rowdraw_frac(const sim_attn_model *am, const sim_attn_rowdraw *d, double u);
/* Tokens for a fraction: clamp(round(frac n), 1, n). */
int64_t sim_attn_frac_tokens(double frac, int64_t n);

#endif /* SIM_ATTN_MODEL_H */

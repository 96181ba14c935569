/* sim_attn_profile.h — the simulator's side of the attention profile (the one door between the
 * kernels and the simulator; schema in kernels/attn_profile.h and docs/psa-serving.md): its own
 * reader, its own small descriptor of a method, and the sampler of measured budgets. Nothing
 * here includes or links kernels/; the profile file is the contract, and
 * tests/kernels/test_attn_profile.c writes profiles with the kernels' builder and reads them
 * here for every method and option.
 *
 * Sampling (the rule the profile's builder documents): the fraction of the context one KV head
 * reads at one decode step of method m, recorded layer row l, context n keys, for a uniform draw
 * u in [0, 1), is the inverse of the measured distribution in n's bin (linear interpolation
 * between the Q quantiles). Outside the measured range the nearest bin with data is rescaled by
 * a power law from its geometric centre c: tokens(n) = tokens_bin(u) * (n / c)^fit_b. A layer
 * row without any data uses the fit alone: fit_a * n^fit_b tokens. Results lie in [1/n, 1].
 */
#ifndef SIM_ATTN_PROFILE_H
#define SIM_ATTN_PROFILE_H

#include <stdint.h>

#include "kv_err.h"
#include "kv_profile.h"

/* How a method's cost behaves (the profile's cost_class). */
typedef enum sim_attn_cost {
  SIM_ATTN_COST_DENSE = 0,   /* reads every key */
  SIM_ATTN_COST_FIXED,       /* fixed token budget: one selection, one pass */
  SIM_ATTN_COST_PROGRESSIVE  /* iterations of group_blocks blocks until a stop test passes */
} sim_attn_cost;
extern const char *const sim_attn_cost_names[]; /* "dense", "fixed", "progressive", NULL */

/* What the simulator knows of a method: its identity and the figures that price it. */
typedef struct sim_attn_desc {
  char spec[160];           /* canonical spec (kernels/attn_method.h) */
  char label[64];
  char kind[32];            /* registry name, for messages */
  sim_attn_cost cost;
  int64_t block_size;       /* tokens per block */
  int64_t forced_blocks;    /* blocks read at every step (sink + recent) */
  int64_t group_blocks;     /* blocks per iteration (progressive) */
  int64_t meta_vectors;     /* metadata vectors of head_dim per block and KV head */
  int64_t full_upto;        /* contexts of at most this many keys are read whole */
} sim_attn_desc;

/* Dense attention without a profile ([attention] method = dense): the kernels' defaults (block
 * 16, sink 1 + recent 1, group 4, no metadata), restated here; the door test checks that they
 * equal the descriptor of "dense" read from a profile (tests/kernels/test_attn_profile.c). */
void sim_attn_desc_dense(sim_attn_desc *d);

/* Bytes a kernel reads for one KV head at n_keys keys of which it attends `tokens`: K and V of
 * the tokens plus the metadata of every block, elem_bytes per element (kernels/attn.h's
 * attn_bytes_read, from the descriptor). */
int64_t sim_attn_bytes_read(const sim_attn_desc *d, int64_t head_dim, int64_t elem_bytes,
                            int64_t n_keys, int64_t tokens);

typedef struct sim_attn_prof_method {
  sim_attn_desc desc;
  kv_profile_tables t;  /* the measured tables (common/kv_profile.h) */
} sim_attn_prof_method;

/* Measured kernel timings: the rows of a kernel profile (docs/kernels.md), carried by the
 * attention profile (/kernel_timings) or read from a kvlab-kernel-profile file; the simulator
 * reads section, method, time_s and bytes (batch and len stay NULL). */
typedef kv_profile_timings sim_attn_timings;

typedef struct sim_attn_profile {
  char source[512];
  char model_name[256];
  int model_layers, n_heads, n_kv_heads, head_dim, elem_bytes;
  int n_layers;        /* L: recorded layers */
  int32_t *layers;     /* [L] */
  int n_bins;          /* B */
  int64_t *ctx_edges;  /* [B+1] */
  int n_quantiles;     /* Q >= 2 */
  int n_methods;
  sim_attn_prof_method *methods;
  sim_attn_timings timings;   /* n = 0: none */
} sim_attn_profile;

/* Reads and validates a profile (schema 2: shapes, monotone edges and quantiles, finite fits,
 * known cost classes). Errors name the file and object. Free with sim_attn_profile_free. */
int sim_attn_profile_read(const char *path, sim_attn_profile *p, kv_error *err);
void sim_attn_profile_free(sim_attn_profile *p);
/* Reads the /attention rows of a kvlab-kernel-profile file (schema_version 1). */
int sim_attn_timings_read(const char *path, sim_attn_timings *t, kv_error *err);

/* Index of the method whose label or canonical spec equals `name`, or -1. */
int sim_attn_profile_find(const sim_attn_profile *p, const char *name);
/* Maps layer `layer` of a model with `model_layers` layers to a recorded row by relative depth:
 * layer 0 -> the first recorded row if it is layer 0; other layers never map onto layer 0 (it
 * is dense-like) unless it is the only one; otherwise the nearest relative depth. */
int sim_attn_profile_layer_row(const sim_attn_profile *p, int layer, int model_layers);

/* The bin of (m, l) for context n: the bin holding n among bins with data (*scale = 1), else the
 * nearest edge bin with data and *scale = (n / c)^fit_b * c / n, c its geometric centre (the
 * factor on a fraction). -1 when the row has no data. fit_b is the exponent to extend with (the
 * method's own, or another method's for top-k grown like PSA). The one bin lookup. */
int sim_attn_profile_bin(const sim_attn_profile *p, int m, int l, int64_t n, double fit_b,
                         double *scale);
/* The interpolated quantile of bin row q [Q] at u, times scale, clamped to [lo, 1]. */
double sim_attn_profile_interp(const double *q, int n_quantiles, double u, double scale,
                               double lo);
/* The fit alone: fit_a * n^fit_b / n clamped to [1/n, 1] (a row without data). */
double sim_attn_profile_fit_frac(const sim_attn_profile *p, int m, int l, int64_t n);
/* Fraction read for draw u, and its mean, at (m, l, n) under the rule above. */
double sim_attn_profile_sample_frac(const sim_attn_profile *p, int m, int l, int64_t n, double u);
double sim_attn_profile_mean_frac(const sim_attn_profile *p, int m, int l, int64_t n);

#endif /* SIM_ATTN_PROFILE_H */

/* attn_profile.h — the attention profile: the one door between the kernels and the simulator.
 *
 * For each method (its canonical spec, kernels/attn_method.h) and each recorded layer, the
 * distribution of the tokens a decode step reads per KV head, as a fraction of the context, in
 * context-length bins, plus a power-law fit tokens_read = a * n_keys^b over all queries of the
 * layer (the rule that extends a distribution measured at some context lengths to others), and
 * the figures that price the method: cost class, block size, forced blocks, group size, metadata
 * per block, the contexts it reads whole by construction. Measured kernel timings ride along when
 * the builder is given them. Built here from measurements on recorded Q/K/V
 * (attn_profile_builder, used by kernels/tools/attn_profile_tool.c) and written as HDF5; the
 * simulator reads it with its own reader (sim/sim_attn_profile.h) and links nothing of this.
 *
 * HDF5 schema (format "kvlab-attn-profile", schema_version 2):
 *   /                 attrs format, schema_version, source, model_name, model_layers, n_heads,
 *                     n_kv_heads, head_dim, elem_bytes, n_quantiles
 *   /layers           int32 [L]            recorded model layers (rows of every table)
 *   /ctx_edges        int64 [B+1]          context-length bin edges (keys), increasing
 *   /method_<m>       m = 0, 1, ... in the builder's order; attrs:
 *                       spec           canonical spec: the method's identity (parse(spec) == it)
 *                       label          short label for tables (unique within the profile)
 *                       kind           registry name ("dense", "topk", "psa", "oracle", ...)
 *                       cost_class     "dense" | "fixed" | "progressive"
 *                       block_size, sink_blocks, recent_blocks, group_blocks   (int64)
 *                       forced_blocks  sink_blocks + recent_blocks (read at every step)
 *                       token_budget   (int64; fixed class)   epsilon  (float64; progressive)
 *                       meta_vectors   metadata vectors of head_dim per block and KV head
 *                       meta_bytes_per_block  meta_vectors * head_dim * elem_bytes (recorded)
 *                       full_upto      (int64) contexts of at most this many keys are read whole
 *                                      by construction (INT64_MAX: always; 0: never)
 *     count, frac_q, mean_frac, mean_iters, mean_mass, mean_err, fit_a, fit_b: the tables of
 *                     common/kv_profile.h (shapes [L, B], [L, B, Q] and [L] there)
 *   /kernel_timings   (optional) measured kernels, the rows of a kernel profile's /attention
 *                     (docs/kernels.md): section, method (strings), batch, len (int64),
 *                     time_s, bytes (float64), all [R]
 */
#ifndef ATTN_PROFILE_H
#define ATTN_PROFILE_H

#include <stddef.h>
#include <stdint.h>

#include "attn.h"
#include "kv_err.h"
#include "kv_profile.h"

#define ATTN_PROFILE_VERSION 2

typedef struct attn_profile_method {
  attn_method method;
  char label[64];
  kv_profile_tables t;   /* the measured tables (common/kv_profile.h) */
} attn_profile_method;

typedef struct attn_profile {
  char source[512];
  char model_name[256];
  int model_layers, n_heads, n_kv_heads, head_dim, elem_bytes;
  int n_layers;        /* L: recorded layers */
  int32_t *layers;     /* [L] */
  int n_bins;          /* B */
  int64_t *ctx_edges;  /* [B+1] */
  int n_quantiles;     /* Q >= 2 */
  int n_methods;
  attn_profile_method *methods;
  kv_profile_timings timings; /* measured kernels; n = 0: none */
} attn_profile;

/* Frees what attn_profile_builder_finish or attn_profile_read_timings allocated. */
void attn_profile_free(attn_profile *p);
/* Writes the profile (atomically). Methods must have distinct specs and distinct labels. */
int attn_profile_write(const char *path, const attn_profile *p, kv_error *err);
/* Reads a kernel profile (format "kvlab-kernel-profile", docs/kernels.md) into p->timings, to be
 * written with the profile. Errors name the file and dataset. */
int attn_profile_read_timings(const char *path, attn_profile *p, kv_error *err);

/* ---- building a profile from measurements ------------------------------------------------- */

/* One measurement: a KV head of one query. */
typedef struct attn_profile_record {
  int64_t n_keys;
  int32_t tokens;  /* tokens read by the KV head */
  int32_t iters;   /* iterations (1 for one-pass methods) */
} attn_profile_record;

/* Measurements per (method, recorded layer), in the order they were added (the fit sums in that
 * order, so a profile is reproducible bit for bit from the same inputs). */
typedef struct attn_profile_builder {
  int n_methods, n_layers;
  attn_method *methods;          /* [M] */
  int32_t *layers;               /* [L] recorded model layers, increasing */
  attn_profile_record **recs;    /* [M * L] arrays of n_recs records */
  size_t *n_recs, *cap_recs;     /* [M * L] */
  double *mass, *err, *heads;    /* [M * L] sums of mass covered, relative error; head count */
  int64_t n_min, n_max;          /* contexts seen (keys) */
} attn_profile_builder;

/* methods [M] (checked, with distinct labels), layers [L] (distinct, sorted here). */
int attn_profile_builder_init(attn_profile_builder *b, const attn_method *methods, int n_methods,
                              const int32_t *layers, int n_layers, kv_error *err);
void attn_profile_builder_free(attn_profile_builder *b);
/* Adds the evaluation of n_pos queries of recorded layer `layer` (attn_eval_layer's outputs):
 * positions [n_pos] (query i attends to positions[i] + 1 keys), mh [M, n_pos, n_heads],
 * iters [M, n_pos, n_kv_heads]. A KV head's tokens are those of its group's first query head.
 * KV_EINVAL for a layer not given to init; KV_ENOMEM. */
int attn_profile_builder_add(attn_profile_builder *b, int layer, const attn_shape *s,
                             int64_t n_pos, const int64_t *positions,
                             const attn_head_metrics *mh, const int32_t *iters, kv_error *err);
/* The profile of everything added: n_bins context bins log-spaced over [n_min, n_max] (the last
 * edge n_max + 1), n_quantiles quantiles per bin (linear interpolation between order statistics,
 * never decreasing), means, the per-layer power-law fit. The model fields and source of *out
 * must be set by the caller; the rest is allocated here (attn_profile_free). */
int attn_profile_builder_finish(const attn_profile_builder *b, int n_bins, int n_quantiles,
                                attn_profile *out, kv_error *err);
/* The extension rule's check (attn-profile --check-split): fits the power law on the records of
 * (method m, layer row li) with fewer than `split` keys and predicts the mean tokens read by
 * those with `split` keys or more. Returns 0 when there are none such (nothing to check). */
int attn_profile_split_check(const attn_profile_builder *b, int m, int li, int64_t split,
                             double *fit_b, double *predicted, double *measured);

/* Least squares of log(tokens) on log(n_keys) over r[0..n) restricted to n_keys < below (when
 * below > 0) and n_keys >= at_least: tokens ~= a * n_keys^b. Fewer than two usable records (or
 * one context length only): b = 1 and a the geometric-mean ratio. */
void attn_profile_fit_power(const attn_profile_record *r, size_t n, int64_t below,
                            int64_t at_least, double *a, double *b);

#endif /* ATTN_PROFILE_H */

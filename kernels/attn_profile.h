/* attn_profile.h — attention budgets measured on recorded Q/K/V, as the simulator consumes them.
 *
 * For each method (dense, top-k, PSA, ...) and each recorded layer, the distribution of the
 * tokens a decode step reads per KV head, as a fraction of the context, in context-length bins,
 * plus a power-law fit tokens_read = a * n_keys^b over all queries of the layer (the rule that
 * extends a distribution measured at one context length to others: docs/attn-profile.md).
 * Written and read as HDF5 (format "kvlab-attn-profile", schema_version 1):
 *
 *   /                 attrs format, schema_version, source, model_name, model_layers, n_heads,
 *                     n_kv_heads, head_dim, elem_bytes, n_quantiles
 *   /layers           int32 [L]            recorded model layers (rows of every table)
 *   /ctx_edges        int64 [B+1]          context-length bin edges (tokens), increasing
 *   /method_<m>       attrs label, kind ("dense", "topk", "psa", "oracle"), token_budget,
 *                     epsilon, block_size, group_blocks, estimate
 *     count           int64   [L, B]       queries x KV heads in the bin
 *     frac_q          float64 [L, B, Q]    quantiles (0, 1/(Q-1), ..., 1) of tokens_read/n_keys
 *     mean_frac       float64 [L, B]
 *     mean_iters      float64 [L, B]       PSA iterations per KV head (1 for others)
 *     mean_mass       float64 [L]          true attention mass covered (mean over heads, queries)
 *     mean_err        float64 [L]          relative L2 output error vs dense
 *     fit_a, fit_b    float64 [L]          tokens_read ~= fit_a * n_keys^fit_b
 */
#ifndef ATTN_PROFILE_H
#define ATTN_PROFILE_H

#include <stdint.h>

#include "attn.h"
#include "kv_err.h"

#define ATTN_PROFILE_VERSION 1

typedef struct attn_profile_method {
  attn_method method;
  char label[64];
  int64_t *count;      /* [L, B] */
  double *frac_q;      /* [L, B, Q] */
  double *mean_frac;   /* [L, B] */
  double *mean_iters;  /* [L, B] */
  double *mean_mass;   /* [L] */
  double *mean_err;    /* [L] */
  double *fit_a, *fit_b; /* [L] */
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
} attn_profile;

void attn_profile_free(attn_profile *p);
int attn_profile_write(const char *path, const attn_profile *p, kv_error *err);
/* Reads and validates a profile (shapes, monotone edges and quantiles, finite values). */
int attn_profile_read(const char *path, attn_profile *p, kv_error *err);

/* Index of the method whose label equals `label`, or -1. */
int attn_profile_find(const attn_profile *p, const char *label);

/* Fraction of the context one KV head reads at one decode step of method m, layer row l, context
 * n_keys, for a uniform draw u in [0, 1): the inverse of the measured distribution in n_keys's
 * bin. Outside the measured range the nearest bin's distribution is rescaled by the layer's fit:
 * tokens(n) = tokens_bin(u) * (n / n_bin)^fit_b. Result in (0, 1]. */
double attn_profile_sample_frac(const attn_profile *p, int m, int l, int64_t n_keys, double u);

/* Mean fraction for (m, l, n_keys) under the same rule (the expectation of the above). */
double attn_profile_mean_frac(const attn_profile *p, int m, int l, int64_t n_keys);

/* Maps layer `layer` of a model with `model_layers` layers to a recorded row by relative depth:
 * layer 0 -> the first recorded layer if it is layer 0; otherwise the recorded layer whose
 * relative depth (layer / (layers-1)) is nearest. */
int attn_profile_layer_row(const attn_profile *p, int layer, int model_layers);

#endif /* ATTN_PROFILE_H */

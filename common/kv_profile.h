/* kv_profile.h — the tables of the attention profile, the data both sides of the door hold: the
 * kernels build and write them (kernels/attn_profile.h), the simulator reads and samples them
 * (sim/sim_attn_profile.h). Plain arrays and the list of their HDF5 datasets, so that the writer
 * and the reader walk one schema; what a method *is* (spec, cost class, ...) stays each side's
 * own (attn_method, sim_attn_desc).
 *
 * Per method, for L recorded layers, B context-length bins and Q quantiles:
 *   count       int64   [L, B]      queries x KV heads measured in the bin
 *   frac_q      float64 [L, B, Q]   quantiles (0, 1/(Q-1), ..., 1) of tokens_read / n_keys
 *   mean_frac   float64 [L, B]
 *   mean_iters  float64 [L, B]      iterations per KV head (1 for one-pass methods)
 *   mean_mass   float64 [L]         true attention mass covered (mean over heads and queries)
 *   mean_err    float64 [L]         relative L2 output error vs dense
 *   fit_a, fit_b float64 [L]        tokens_read ~= fit_a * n_keys^fit_b
 * Measured kernel timings (a kernel profile's /attention rows, docs/kernels.md), per row r:
 *   section, method (strings), batch, len (int64), time_s, bytes (float64).
 */
#ifndef KV_PROFILE_H
#define KV_PROFILE_H

#include <stdint.h>

#include "kv_err.h"

typedef struct kv_profile_tables {
  int64_t *count;        /* [L, B] */
  double *frac_q;        /* [L, B, Q] */
  double *mean_frac;     /* [L, B] */
  double *mean_iters;    /* [L, B] */
  double *mean_mass;     /* [L] */
  double *mean_err;      /* [L] */
  double *fit_a, *fit_b; /* [L] */
} kv_profile_tables;

/* Allocates zeroed tables for (L, B, Q); KV_ENOMEM (nothing left allocated) on failure. */
int kv_profile_tables_alloc(kv_profile_tables *t, int n_layers, int n_bins, int n_quantiles);
void kv_profile_tables_free(kv_profile_tables *t);

/* One dataset of the tables: its name, rank, dims and storage. */
typedef struct kv_profile_field {
  const char *name;
  int rank;
  uint64_t dims[3];
  int is_int;            /* count: int64; the rest float64 */
  void *data;
} kv_profile_field;

enum { KV_PROFILE_N_FIELDS = 8 };
/* The datasets of t in schema order (count first). */
void kv_profile_fields(const kv_profile_tables *t, int n_layers, int n_bins, int n_quantiles,
                       kv_profile_field out[KV_PROFILE_N_FIELDS]);

typedef struct kv_profile_timings {
  int64_t n;
  char **section, **method;   /* [n] */
  int64_t *batch, *len;       /* [n]; NULL when the source had none */
  double *time_s, *bytes;     /* [n] */
  char device[96];            /* the measuring device ("" when the source names none): the
                                 kernel profile's root `device`, the group's `device` attribute */
} kv_profile_timings;

void kv_profile_timings_free(kv_profile_timings *t);
/* Reads the timing rows of an open HDF5 group (time_s fixes the row count; batch and len are
 * optional). `what` names the group in messages. On error *t is left empty. */
int kv_profile_timings_read_group(int64_t group_id, kv_profile_timings *t, const char *what,
                                  kv_error *err);
/* Reads the /attention rows of a kernel profile file ("kvlab-kernel-profile", schema 1). */
int kv_profile_timings_read_file(const char *path, kv_profile_timings *t, kv_error *err);
/* Writes the rows as datasets of an open HDF5 group (batch and len when present). */
int kv_profile_timings_write_group(int64_t group_id, const kv_profile_timings *t,
                                   const char *what, kv_error *err);

#endif /* KV_PROFILE_H */

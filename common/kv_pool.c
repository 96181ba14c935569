/* kv_pool.c — unified cross-layer block pool vs per-layer partitions (see kv_pool.h). */
#include "kv_pool.h"

#include <stdlib.h>
#include <string.h>

static int kv__pool_cmp_i64(const void *a, const void *b) {
  int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return (x > y) - (x < y);
}

/* Smallest value v of x[0..n) such that at least frac of the entries are <= v (sorts x). */
static int64_t kv__pool_quantile_cover(int64_t *x, int64_t n, double frac) {
  qsort(x, (size_t)n, sizeof *x, kv__pool_cmp_i64);
  int64_t k = (int64_t)(frac * (double)n + 0.999999999); /* entries that must fit */
  if (k < 1) k = 1;
  if (k > n) k = n;
  return x[k - 1];
}

int64_t kv_pool_block_bytes(int block_size, int head_dim, int elem_bytes, int n_meta_vecs) {
  return (int64_t)head_dim * elem_bytes * (2 * (int64_t)block_size + n_meta_vecs);
}

int kv_pool_compare(const int64_t *need, int64_t n_steps, int n_layers, int64_t block_bytes,
                     kv_pool_report *r, kv_error *err) {
  memset(r, 0, sizeof *r);
  if (n_steps < 1 || n_layers < 1) {
    return kv_error_set(err, KV_EINVAL, "pool compare: %lld steps, %d layers (need >= 1)",
                        (long long)n_steps, n_layers);
  }
  int64_t *tot = malloc((size_t)n_steps * sizeof *tot);
  int64_t *mx = malloc((size_t)n_steps * sizeof *mx);
  int64_t *lay = malloc((size_t)n_steps * sizeof *lay);
  int64_t *lpeak = calloc((size_t)n_layers, sizeof *lpeak);
  int64_t *lp99 = calloc((size_t)n_layers, sizeof *lp99);
  if (!tot || !mx || !lay || !lpeak || !lp99) {
    free(tot), free(mx), free(lay), free(lpeak), free(lp99);
    return kv_error_set(err, KV_ENOMEM, "pool compare: out of memory");
  }
  int rc = 0;
  double sum = 0.0;
  for (int64_t t = 0; t < n_steps && !rc; t++) {
    tot[t] = 0;
    mx[t] = 0;
    for (int l = 0; l < n_layers; l++) {
      int64_t v = need[t * n_layers + l];
      if (v < 0) {
        rc = kv_error_set(err, KV_EINVAL, "pool compare: step %lld layer %d needs %lld blocks",
                          (long long)t, l, (long long)v);
        break;
      }
      tot[t] += v;
      if (v > mx[t]) mx[t] = v;
      if (v > lpeak[l]) lpeak[l] = v;
    }
    sum += (double)tot[t];
  }
  if (!rc) {
    r->n_layers = n_layers;
    r->n_steps = n_steps;
    r->block_bytes = block_bytes;
    r->mean_total = sum / (double)n_steps;
    for (int l = 0; l < n_layers; l++) {
      r->sized_blocks += lpeak[l];
      if (lpeak[l] > r->peak_layer[0]) {
        r->peak_layer[0] = lpeak[l];
        r->peak_layer[1] = l;
      }
      for (int64_t t = 0; t < n_steps; t++) lay[t] = need[t * n_layers + l];
      r->sized_p99 += kv__pool_quantile_cover(lay, n_steps, 0.99);
    }
    r->equal_blocks = (int64_t)n_layers * r->peak_layer[0];
    int64_t cu = 0;
    for (int64_t t = 0; t < n_steps; t++) cu = tot[t] > cu ? tot[t] : cu;
    r->unified_blocks = cu;
    for (int64_t t = 0; t < n_steps; t++) {
      if (mx[t] * n_layers > cu) r->equal_overflow_steps++;
    }
    r->unified_p99 = kv__pool_quantile_cover(tot, n_steps, 0.99);
    r->equal_p99 = (int64_t)n_layers * kv__pool_quantile_cover(mx, n_steps, 0.99);
    r->unified_util = r->unified_blocks > 0 ? r->mean_total / (double)r->unified_blocks : 0.0;
    r->equal_util = r->equal_blocks > 0 ? r->mean_total / (double)r->equal_blocks : 0.0;
    r->sized_util = r->sized_blocks > 0 ? r->mean_total / (double)r->sized_blocks : 0.0;
  }
  free(tot), free(mx), free(lay), free(lpeak), free(lp99);
  return rc;
}

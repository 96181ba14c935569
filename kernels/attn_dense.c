/* attn_dense.c — dense decode attention, the exact reference (double accumulation). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "attn.h"

int attn_shape_check(const attn_shape *s, kv_error *err) {
  if (s->n_heads < 1 || s->n_kv_heads < 1 || s->head_dim < 1 || s->head_dim > 1024 ||
      s->n_heads % s->n_kv_heads != 0) {
    return kv_error_set(err, KV_EINVAL,
                        "attention shape: n_heads %d, n_kv_heads %d, head_dim %d (need positive, "
                        "n_heads a multiple of n_kv_heads, head_dim <= 1024)",
                        s->n_heads, s->n_kv_heads, s->head_dim);
  }
  return 0;
}

int attn_dense(const attn_shape *s, const float *q, const float *K, const float *V,
               int64_t n_keys, float *out, double *lse, double *probs) {
  if (n_keys < 1 || attn_shape_check(s, NULL)) return KV_EINVAL;
  const int D = s->head_dim, Hkv = s->n_kv_heads, G = s->n_heads / s->n_kv_heads;
  const double scale = 1.0 / sqrt((double)D);
  double *sc = probs ? NULL : malloc((size_t)n_keys * sizeof *sc);
  double *acc = malloc((size_t)D * sizeof *acc);
  if ((!probs && !sc) || !acc) {
    free(sc);
    free(acc);
    return KV_ENOMEM;
  }
  for (int h = 0; h < s->n_heads; h++) {
    const int kvh = h / G;
    const float *qh = q + (size_t)h * D;
    double *p = probs ? probs + (size_t)h * n_keys : sc;
    double m = -INFINITY;
    for (int64_t j = 0; j < n_keys; j++) {
      const float *k = K + ((size_t)j * Hkv + kvh) * D;
      double dot = 0.0;
      for (int d = 0; d < D; d++) dot += (double)qh[d] * (double)k[d];
      p[j] = dot * scale;
      if (p[j] > m) m = p[j];
    }
    double l = 0.0;
    for (int64_t j = 0; j < n_keys; j++) {
      p[j] = exp(p[j] - m);
      l += p[j];
    }
    for (int d = 0; d < D; d++) acc[d] = 0.0;
    for (int64_t j = 0; j < n_keys; j++) {
      p[j] /= l;
      const float *v = V + ((size_t)j * Hkv + kvh) * D;
      for (int d = 0; d < D; d++) acc[d] += p[j] * (double)v[d];
    }
    for (int d = 0; d < D; d++) out[(size_t)h * D + d] = (float)acc[d];
    if (lse) lse[h] = m + log(l);
  }
  free(sc);
  free(acc);
  return 0;
}

/* Dense through attn_decode (registry entry "dense"): every block of m->block_size is read. */
int attn__cpu_dense(const attn_shape *s, const attn_method *m, const float *q, const float *K,
                    const float *V, int64_t n_keys, const attn_blockmeta *meta,
                    const double *probs, attn_result *r, kv_error *err) {
  (void)meta;
  (void)probs;
  if (attn_dense(s, q, K, V, n_keys, r->out, NULL, NULL)) {
    return kv_error_set(err, KV_ENOMEM, "attention: out of memory");
  }
  int64_t nb = (n_keys + m->block_size - 1) / m->block_size;
  for (int h = 0; h < s->n_kv_heads; h++) {
    r->blocks_read[h] = nb;
    r->tokens_read[h] = n_keys;
    r->iterations[h] = 1;
    if (nb <= r->max_blocks) memset(r->block_read + (size_t)h * r->max_blocks, 1, (size_t)nb);
  }
  for (int h = 0; h < s->n_heads; h++) r->est_mass[h] = 1.0;
  return 0;
}

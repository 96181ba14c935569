/* attn_metrics.c — how a sparse result compares with dense attention, and bytes read. */
#include <math.h>
#include <stdlib.h>

#include "attn.h"

int64_t attn_bytes_read(const attn_shape *s, const attn_method *m, int64_t n_keys,
                        int64_t tokens_read, int elem_bytes) {
  int vecs = attn_method_meta_vectors(m);
  int64_t nb = (n_keys + m->block_size - 1) / m->block_size;
  int64_t D = s->head_dim;
  return tokens_read * 2 * D * elem_bytes + nb * vecs * D * elem_bytes;
}

void attn_metrics(const attn_shape *s, const attn_method *m, int64_t n_keys,
                  const attn_result *r, const float *dense_out, const double *probs,
                  attn_head_metrics *mh) {
  const int D = s->head_dim, G = s->n_heads / s->n_kv_heads;
  const int bs = m->block_size;
  const int64_t nb = (n_keys + bs - 1) / bs;
  for (int h = 0; h < s->n_heads; h++) {
    int kvh = h / G;
    const uint8_t *mask = r->block_read + (size_t)kvh * r->max_blocks;
    const double *p = probs + (size_t)h * n_keys;
    double mass = 0.0;
    if (m->kind == ATTN_DENSE) {
      mass = 1.0;
    } else {
      for (int64_t b = 0; b < nb; b++) {
        if (!mask[b]) continue;
        int64_t t1 = (b + 1) * bs < n_keys ? (b + 1) * bs : n_keys;
        for (int64_t t = b * bs; t < t1; t++) mass += p[t];
      }
    }
    double num = 0.0, den = 0.0;
    for (int d = 0; d < D; d++) {
      double x = (double)r->out[(size_t)h * D + d] - dense_out[(size_t)h * D + d];
      num += x * x;
      den += (double)dense_out[(size_t)h * D + d] * dense_out[(size_t)h * D + d];
    }
    mh[h].tokens_read = r->tokens_read[kvh];
    mh[h].tokens_head = m->kind == ATTN_PSA ? r->tokens_head[h] : r->tokens_read[kvh];
    mh[h].blocks_read = r->blocks_read[kvh];
    mh[h].mass_covered = mass > 1.0 ? 1.0 : mass;
    mh[h].rel_l2_err = den > 0 ? sqrt(num / den) : sqrt(num);
    mh[h].est_mass = (m->kind == ATTN_PSA || m->kind == ATTN_ORACLE) ? r->est_mass[h] : NAN;
  }
}

static int attn__cmp_desc(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x < y) - (x > y);
}

int64_t attn_tokens_for_mass(const double *p, int64_t n_keys, double frac, double *scratch) {
  for (int64_t i = 0; i < n_keys; i++) scratch[i] = p[i];
  qsort(scratch, (size_t)n_keys, sizeof *scratch, attn__cmp_desc);
  double acc = 0.0;
  for (int64_t i = 0; i < n_keys; i++) {
    acc += scratch[i];
    if (acc >= frac - 1e-12) return i + 1;
  }
  return n_keys;
}

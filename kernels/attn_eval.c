/* attn_eval.c — every method over every recorded query of a layer, against dense attention. */
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "attn.h"

/* One query: dense reference, then each method. Scratch is per call (thread-private). */
static int attn__eval_one(const attn_shape *s, const attn_method *methods, int n_methods,
                          const float *q, int64_t n_keys, const float *K, const float *V,
                          int elem_bytes, attn_head_metrics *mh, int64_t *bytes, int32_t *iters,
                          int64_t *need, int64_t stride_m_h, int64_t stride_m_kv,
                          kv_error *err) {
  const int Hq = s->n_heads, Hkv = s->n_kv_heads, D = s->head_dim;
  double *probs = malloc((size_t)Hq * n_keys * sizeof *probs);
  float *dense = malloc((size_t)Hq * D * sizeof *dense);
  double *scratch = need ? malloc((size_t)n_keys * sizeof *scratch) : NULL;
  int64_t max_bs = 1 << 30;
  for (int i = 0; i < n_methods; i++) max_bs = methods[i].block_size < max_bs ? methods[i].block_size : max_bs;
  attn_result r;
  int rc = 0;
  if (!probs || !dense || (need && !scratch)) rc = kv_error_set(err, KV_ENOMEM, "out of memory");
  if (!rc) rc = attn_result_alloc(&r, s, (n_keys + max_bs - 1) / max_bs, err);
  else memset(&r, 0, sizeof r);
  if (!rc && attn_dense(s, q, K, V, n_keys, dense, NULL, probs)) {
    rc = kv_error_set(err, KV_ENOMEM, "out of memory");
  }
  if (!rc && need) {
    static const double fr[3] = {0.90, 0.95, 0.99};
    for (int h = 0; h < Hq; h++) {
      for (int k = 0; k < 3; k++) {
        need[h * 3 + k] = attn_tokens_for_mass(probs + (size_t)h * n_keys, n_keys, fr[k], scratch);
      }
    }
  }
  attn_blockmeta meta;
  memset(&meta, 0, sizeof meta);
  for (int i = 0; i < n_methods && !rc; i++) {
    const attn_method *m = &methods[i];
    if (m->kind != ATTN_DENSE && meta.block_size != m->block_size) {
      attn_blockmeta_free(&meta);
      rc = attn_blockmeta_init(&meta, m->block_size, Hkv, D, n_keys, err);
      if (!rc) rc = attn_blockmeta_build(&meta, K, n_keys, err);
      if (rc) break;
    }
    rc = attn_decode(s, m, q, K, V, n_keys, m->kind == ATTN_DENSE ? NULL : &meta, probs, &r, err);
    if (rc) break;
    attn_metrics(s, m, n_keys, &r, dense, probs, mh + i * stride_m_h);
    for (int h = 0; h < Hkv; h++) {
      bytes[i * stride_m_kv + h] = attn_bytes_read(s, m, n_keys, r.tokens_read[h], elem_bytes);
      if (iters) iters[i * stride_m_kv + h] = r.iterations[h];
    }
  }
  attn_blockmeta_free(&meta);
  attn_result_free(&r);
  free(probs);
  free(dense);
  free(scratch);
  return rc;
}

int attn_eval_layer(const attn_shape *s, const attn_method *methods, int n_methods,
                    const float *Q, const int64_t *positions, int64_t n_pos, const float *K,
                    const float *V, int elem_bytes, int n_threads, attn_head_metrics *mh,
                    int64_t *bytes, int32_t *iters, int64_t *need, kv_error *err) {
  int rc = attn_shape_check(s, err);
  if (rc) return rc;
  for (int i = 0; i < n_methods; i++) {
    if ((rc = attn_method_check(&methods[i], err))) return rc;
  }
  const int Hq = s->n_heads, Hkv = s->n_kv_heads, D = s->head_dim;
  int first_rc = 0;
  kv_error first_err = {0};
#ifdef _OPENMP
  int nt = n_threads > 0 ? n_threads : omp_get_max_threads();
#pragma omp parallel for schedule(dynamic, 1) num_threads(nt)
#else
  (void)n_threads;
#endif
  for (int64_t p = 0; p < n_pos; p++) {
    kv_error e = {0};
    int r = attn__eval_one(s, methods, n_methods, Q + (size_t)p * Hq * D, positions[p] + 1, K, V,
                           elem_bytes, mh + (size_t)p * Hq, bytes + (size_t)p * Hkv,
                           iters ? iters + (size_t)p * Hkv : NULL,
                           need ? need + (size_t)p * Hq * 3 : NULL, n_pos * Hq, n_pos * Hkv, &e);
    if (r) {
#ifdef _OPENMP
#pragma omp critical(attn_eval_err)
#endif
      {
        if (!first_rc) {
          first_rc = r;
          first_err = e;
        }
      }
    }
  }
  if (first_rc && err) *err = first_err;
  return first_rc;
}

/* attn_blockmeta.c — per-block key summaries (min, max, mean, variance per channel). */
#include <float.h>
#include <stdlib.h>
#include <string.h>

#include "attn.h"

int attn_blockmeta_init(attn_blockmeta *m, int block_size, int n_kv_heads, int head_dim,
                        int64_t cap_tokens, kv_error *err) {
  memset(m, 0, sizeof *m);
  if (block_size < 1 || n_kv_heads < 1 || head_dim < 1 || cap_tokens < 1) {
    return kv_error_set(err, KV_EINVAL, "block metadata: block_size %d, kv heads %d, head_dim "
                        "%d, capacity %lld must be positive", block_size, n_kv_heads, head_dim,
                        (long long)cap_tokens);
  }
  m->block_size = block_size;
  m->n_kv_heads = n_kv_heads;
  m->head_dim = head_dim;
  m->cap_blocks = (cap_tokens + block_size - 1) / block_size;
  size_t n = (size_t)m->cap_blocks * n_kv_heads * head_dim;
  m->kmin = malloc(n * sizeof(float));
  m->kmax = malloc(n * sizeof(float));
  m->kmean = malloc(n * sizeof(float));
  m->kvar = malloc(n * sizeof(float));
  m->ksum = malloc(n * sizeof(double));
  m->ksq = malloc(n * sizeof(double));
  if (!m->kmin || !m->kmax || !m->kmean || !m->kvar || !m->ksum || !m->ksq) {
    attn_blockmeta_free(m);
    return kv_error_set(err, KV_ENOMEM, "block metadata: out of memory (%lld blocks)",
                        (long long)m->cap_blocks);
  }
  return 0;
}

void attn_blockmeta_free(attn_blockmeta *m) {
  free(m->kmin);
  free(m->kmax);
  free(m->kmean);
  free(m->kvar);
  free(m->ksum);
  free(m->ksq);
  memset(m, 0, sizeof *m);
}

int64_t attn_block_tokens(const attn_blockmeta *m, int64_t b) {
  int64_t start = b * m->block_size;
  int64_t n = m->n_tokens - start;
  return n > m->block_size ? m->block_size : (n > 0 ? n : 0);
}

int attn_blockmeta_build(attn_blockmeta *m, const float *K, int64_t n_tokens, kv_error *err) {
  const int bs = m->block_size, Hkv = m->n_kv_heads, D = m->head_dim;
  int64_t nb = (n_tokens + bs - 1) / bs;
  if (n_tokens < 1 || nb > m->cap_blocks) {
    return kv_error_set(err, KV_ERANGE, "block metadata: %lld tokens exceed capacity %lld",
                        (long long)n_tokens, (long long)(m->cap_blocks * bs));
  }
  m->n_tokens = n_tokens;
  m->n_blocks = nb;
  for (int64_t b = 0; b < nb; b++) {
    int64_t t0 = b * bs, t1 = t0 + bs < n_tokens ? t0 + bs : n_tokens;
    for (int h = 0; h < Hkv; h++) {
      size_t o = ((size_t)b * Hkv + h) * D;
      for (int d = 0; d < D; d++) {
        float mn = FLT_MAX, mx = -FLT_MAX;
        double sum = 0.0, sq = 0.0;
        for (int64_t t = t0; t < t1; t++) {
          float x = K[((size_t)t * Hkv + h) * D + d];
          if (x < mn) mn = x;
          if (x > mx) mx = x;
          sum += x;
          sq += (double)x * x;
        }
        double n = (double)(t1 - t0), mean = sum / n;
        /* Two-pass variance: exact reference for the running-sum form used by append. */
        double var = 0.0;
        for (int64_t t = t0; t < t1; t++) {
          double dx = K[((size_t)t * Hkv + h) * D + d] - mean;
          var += dx * dx;
        }
        m->kmin[o + d] = mn;
        m->kmax[o + d] = mx;
        m->kmean[o + d] = (float)mean;
        m->kvar[o + d] = (float)(var / n);
        m->ksum[o + d] = sum;
        m->ksq[o + d] = sq;
      }
    }
  }
  return 0;
}

int attn_blockmeta_append(attn_blockmeta *m, const float *k, kv_error *err) {
  const int bs = m->block_size, Hkv = m->n_kv_heads, D = m->head_dim;
  int64_t b = m->n_tokens / bs;
  int first = (m->n_tokens % bs) == 0;
  if (b >= m->cap_blocks) {
    return kv_error_set(err, KV_ERANGE, "block metadata: full (%lld tokens)",
                        (long long)m->n_tokens);
  }
  double n = (double)(m->n_tokens - b * bs + 1);
  for (int h = 0; h < Hkv; h++) {
    size_t o = ((size_t)b * Hkv + h) * D;
    for (int d = 0; d < D; d++) {
      float x = k[(size_t)h * D + d];
      if (first) {
        m->kmin[o + d] = m->kmax[o + d] = x;
        m->ksum[o + d] = 0.0;
        m->ksq[o + d] = 0.0;
      } else {
        if (x < m->kmin[o + d]) m->kmin[o + d] = x;
        if (x > m->kmax[o + d]) m->kmax[o + d] = x;
      }
      m->ksum[o + d] += x;
      m->ksq[o + d] += (double)x * x;
      double mean = m->ksum[o + d] / n;
      double var = m->ksq[o + d] / n - mean * mean;
      m->kmean[o + d] = (float)mean;
      m->kvar[o + d] = (float)(var > 0.0 ? var : 0.0);
    }
  }
  m->n_tokens++;
  m->n_blocks = b + 1;
  return 0;
}

/* kvc_gemm.cu — cuBLAS where it is the right tool: score products of many queries at once
 * (kvc_group_scores: one batched GEMM per layer over all query heads, e.g. every recorded query
 * position of a layer against the layer's keys for dense probabilities and block masses) and GEMM
 * timings for the simulator's cost model (kvc_gemm_time).
 *
 * Decode attention itself does not use cuBLAS: with GQA a KV head serves only G (4-8) queries,
 * a skinny product that is bound by reading K, which the fused kernels read once. Not yet run on a
 * GPU: docs/kernels.md.
 */
#include <algorithm>
#include <vector>

#include "kvc_internal.cuh"

static cudaDataType kvc__cuda_type(kvc_dtype t) { return t == KVC_DTYPE_F16 ? CUDA_R_16F : CUDA_R_16BF; }

__global__ void kvc__gemm_ptrs(const char *K, const char *Q, float *S, int Hq, int G, int D,
                               int n_q, int64_t n_tok, void **a, void **b, void **c) {
  for (int h = threadIdx.x; h < Hq; h += blockDim.x) {
    a[h] = (void *)(K + (size_t)(h / G) * D * 2);
    b[h] = (void *)(Q + (size_t)h * D * 2);
    c[h] = S + (size_t)h * n_q * n_tok;
  }
}

extern "C" int kvc_group_scores(kvc_ctx *c, const attn_shape *s, kvc_dtype dtype, const void *Q,
                                int n_q, const void *K, int64_t n_tok, float *S, kv_error *err) {
  KVC_TRY(attn_shape_check(s, err));
  if (n_q < 1 || n_tok < 1 || n_tok > INT32_MAX || kvc_dtype_size(dtype) != 2) {
    return kv_error_set(err, KV_EINVAL, "group scores: %d queries, %lld keys, dtype %d", n_q,
                        (long long)n_tok, (int)dtype);
  }
  const int Hq = s->n_heads, Hkv = s->n_kv_heads, G = Hq / Hkv, D = s->head_dim;
  /* Column-major view (cuBLAS): S_h^T [n_tok x n_q] = K_h [n_tok x D] (ld Hkv*D, row-major
   * [n_tok, D] == column-major [D, n_tok] transposed) x Q_h^T. With row-major inputs:
   *   A = K_h as column-major [D x n_tok] with lda = Hkv * D, op(A) = A^T  -> [n_tok x D]
   *   B = Q_h as column-major [D x n_q]   with ldb = Hq * D,  op(B) = B    -> [D x n_q]
   *   C = column-major [n_tok x n_q], ldc = n_tok == row-major S[h] [n_q, n_tok]. */
  char *base;
  KVC_TRY(kvc__scratch(c, 3 * (size_t)Hq * sizeof(void *) + 512, &base, err));
  void **da = (void **)base, **db = da + Hq, **dc = db + Hq;
  /* The per-head pointer arrays are written on the device (no host upload: capturable). */
  kvc__gemm_ptrs<<<1, 256, 0, c->stream>>>((const char *)K, (const char *)Q, S, Hq, G, D, n_q,
                                           n_tok, da, db, dc);
  KVC_CHECK(err, cudaGetLastError());
  const float alpha = (float)(1.0 / sqrt((double)D)), beta = 0.0f;
  KVC_CHECK(err, cublasGemmBatchedEx(c->blas, CUBLAS_OP_T, CUBLAS_OP_N, (int)n_tok, n_q, D, &alpha,
                                     (const void *const *)da, kvc__cuda_type(dtype), Hkv * D,
                                     (const void *const *)db, kvc__cuda_type(dtype), Hq * D, &beta,
                                     dc, CUDA_R_32F, (int)n_tok, Hq, CUBLAS_COMPUTE_32F,
                                     CUBLAS_GEMM_DEFAULT));
  return 0;
}

extern "C" int kvc_gemm_time(kvc_ctx *c, kvc_dtype dtype, int m, int n, int k, int reps,
                             double *ms, kv_error *err) {
  if (m < 1 || n < 1 || k < 1 || kvc_dtype_size(dtype) != 2) {
    return kv_error_set(err, KV_EINVAL, "gemm time: m %d n %d k %d dtype %d", m, n, k, (int)dtype);
  }
  void *A = NULL, *B = NULL, *C = NULL;
  int rc = 0;
  std::vector<double> t;
  const float alpha = 1.0f, beta = 0.0f;
  if ((rc = kvc_malloc(c, &A, (size_t)m * k * 2, err))) goto done;
  if ((rc = kvc_malloc(c, &B, (size_t)k * n * 2, err))) goto done;
  if ((rc = kvc_malloc(c, &C, (size_t)m * n * 2, err))) goto done;
  if ((rc = kvc_fill_normal(c, A, dtype, (int64_t)m * k, 11, 1.0f, err))) goto done;
  if ((rc = kvc_fill_normal(c, B, dtype, (int64_t)k * n, 12, 1.0f, err))) goto done;
  for (int i = -2; i < (reps > 0 ? reps : 1); i++) { /* two warm-ups */
    double e = 0.0;
    if ((rc = kvc_time_begin(c, err))) goto done;
    /* Row-major C[m,n] = A[m,k] B[k,n] as column-major C^T = B^T A^T. */
    KVC_CHECK_GO(err, rc, done,
                 cublasGemmEx(c->blas, CUBLAS_OP_N, CUBLAS_OP_N, n, m, k, &alpha, B,
                              kvc__cuda_type(dtype), n, A, kvc__cuda_type(dtype), k, &beta, C,
                              kvc__cuda_type(dtype), n, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    if ((rc = kvc_time_end(c, &e, err))) goto done;
    if (i >= 0) t.push_back(e);
  }
  std::sort(t.begin(), t.end());
  *ms = t[t.size() / 2];
done:
  kvc_free(c, A);
  kvc_free(c, B);
  kvc_free(c, C);
  return rc;
}

/* kvc_meta.cu — block metadata build (all blocks) and decode-time append.
 *
 * Build: one CTA per (logical block, request), one thread per channel, looping over KV heads;
 * reads are coalesced across channels. Append: one CTA per request writes the new token's K and
 * V into its page and recomputes that page's metadata from its (at most block_size) keys. The
 * reference (attn_blockmeta_append) keeps running double sums instead; recomputing one page reads
 * block_size * head_dim * 2 bytes per KV head, the same order as writing the token, and equals a
 * rebuild exactly, so the GPU keeps no running sums. fp32 arithmetic; stored in the pool's dtype.
 */
#include "kvc_meta.cuh"

template <typename T>
__global__ void kvc__meta_build_kernel(const T *k, T *kmin, T *kmax, T *kmean, T *kvar,
                                       const int32_t *bt, const int32_t *seq_len, int max_blocks,
                                       int Hkv, int bs, int D) {
  const int b = blockIdx.x, r = blockIdx.y;
  const int len = seq_len[r];
  const int ntok = kvc_block_tokens(len, bs, b);
  if (ntok <= 0) return;
  const int page = bt[(size_t)r * max_blocks + b];
  for (int h = 0; h < Hkv; h++) kvc__meta_page<T>(k, kmin, kmax, kmean, kvar, page, Hkv, bs, D, h, ntok);
}

template <typename T>
__global__ void kvc__meta_append_kernel(T *k, T *v, T *kmin, T *kmax, T *kmean, T *kvar,
                                        const int32_t *bt, const int32_t *seq_len, int max_blocks,
                                        int Hkv, int bs, int D, const float *k_new,
                                        const float *v_new) {
  const int r = blockIdx.x;
  const int pos = seq_len[r] - 1;
  const int b = pos / bs, t = pos % bs;
  const int page = bt[(size_t)r * max_blocks + b];
  for (int i = threadIdx.x; i < Hkv * D; i += blockDim.x) {
    const int h = i / D, d = i % D;
    const size_t o = (((size_t)page * Hkv + h) * bs + t) * D + d;
    k[o] = kvc_elem<T>::from_f(k_new[(size_t)r * Hkv * D + i]);
    v[o] = kvc_elem<T>::from_f(v_new[(size_t)r * Hkv * D + i]);
  }
  __syncthreads(); /* the CTA's global writes are visible to its threads after the barrier */
  for (int h = 0; h < Hkv; h++) kvc__meta_page<T>(k, kmin, kmax, kmean, kvar, page, Hkv, bs, D, h, t + 1);
}

template <typename T>
static int kvc__meta_launch(kvc_ctx *c, const kvc_kv *kv, const kvc_batch *b, const float *k_new,
                            const float *v_new, kv_error *err) {
  const int threads = kv->head_dim < 32 ? 32 : kv->head_dim;
  if (!k_new) {
    dim3 grid(b->max_blocks, b->n_req);
    kvc__meta_build_kernel<T><<<grid, threads, 0, c->stream>>>(
        (const T *)kv->k, (T *)kv->kmin, (T *)kv->kmax, (T *)kv->kmean, (T *)kv->kvar,
        b->block_table, b->seq_len, b->max_blocks, kv->n_kv_heads, kv->block_size, kv->head_dim);
  } else {
    kvc__meta_append_kernel<T><<<b->n_req, threads, 0, c->stream>>>(
        (T *)kv->k, (T *)kv->v, (T *)kv->kmin, (T *)kv->kmax, (T *)kv->kmean, (T *)kv->kvar,
        b->block_table, b->seq_len, b->max_blocks, kv->n_kv_heads, kv->block_size, kv->head_dim,
        k_new, v_new);
  }
  KVC_CHECK(err, cudaGetLastError());
  return 0;
}

static int kvc__meta_check(const kvc_kv *kv, const kvc_batch *b, kv_error *err) {
  if (kv->head_dim < 1 || kv->head_dim > 1024 || kv->n_kv_heads < 1 || kv->block_size < 1) {
    return kv_error_set(err, KV_EINVAL, "metadata: pool shape %d heads x %d, block %d",
                        kv->n_kv_heads, kv->head_dim, kv->block_size);
  }
  if (kv->dtype != KVC_DTYPE_F16 && kv->dtype != KVC_DTYPE_BF16) {
    return kv_error_set(err, KV_EINVAL, "metadata: unknown dtype %d", (int)kv->dtype);
  }
  if (b->n_req < 1 || b->max_blocks < 1) return kv_error_set(err, KV_EINVAL, "metadata: empty batch");
  return 0;
}

extern "C" int kvc_meta_build(kvc_ctx *c, const kvc_kv *kv, const kvc_batch *b, kv_error *err) {
  KVC_TRY(kvc__meta_check(kv, b, err));
  if (kv->dtype == KVC_DTYPE_F16) return kvc__meta_launch<__half>(c, kv, b, NULL, NULL, err);
  return kvc__meta_launch<__nv_bfloat16>(c, kv, b, NULL, NULL, err);
}

extern "C" int kvc_meta_append(kvc_ctx *c, const kvc_kv *kv, const kvc_batch *b,
                               const float *k_new, const float *v_new, kv_error *err) {
  KVC_TRY(kvc__meta_check(kv, b, err));
  if (!k_new || !v_new) return kv_error_set(err, KV_EINVAL, "metadata append: no new token");
  if (kv->dtype == KVC_DTYPE_F16) return kvc__meta_launch<__half>(c, kv, b, k_new, v_new, err);
  return kvc__meta_launch<__nv_bfloat16>(c, kv, b, k_new, v_new, err);
}

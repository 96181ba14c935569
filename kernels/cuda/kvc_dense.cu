/* kvc_dense.cu — dense decode attention: split-K over paged KV (flash-decoding), GQA-aware.
 *
 * v1 (lost; kept in git history): one CTA per split with the split plan built on the host and
 * uploaded per call through pinned staging (not capturable), an online-softmax update per token
 * (a serial chain of shuffles and exp2 per token) and 128 KB register prefetch rings: 0.20-0.58 of
 * copy bandwidth on the H200 (issue 12).
 * v2 (this file): CTA (split, pair) of a (max_splits, n_pairs) grid computes every query head of
 * the pair's GQA group from one read of the split's K and V (kvc_attend.cuh v2: cp.async ring,
 * one rescale per step), writes a partial (unnormalised output, max, sum) or, when the pair has
 * one split, the final output; a combine kernel, one CTA per (pair, head), merges the partials
 * (log-sum-exp). The split size comes from the host's lengths and the measured occupancy
 * (kvc_plan.h); nothing is uploaded. Predicted times: kernels/bench/NOTES.md.
 * v2.1: the combine reads every split's (max, sum) in parallel into shared memory first, then
 * sums the outputs with independent loads (v2 chained one L2 round trip per split: ~15 us at
 * ~50 splits, the fixed cost seen at small batch); by default the pair's last CTA to finish
 * merges the splits itself (an arrival counter per pair, reset by that CTA), so there is no
 * second launch; the ring depth is a run-time choice (kvc_tune_set).
 * v4: the attend core is a template parameter A of the split kernel: kvc_attend (CUDA cores, the
 * default) or kvc_attend_mma (tensor cores, kvc_attend_mma.cuh), chosen per call by
 * KVC_TUNE_DENSE_CORE for dense calls, KVC_TUNE_TOPK_CORE for top-k's attention over its
 * selection, with groups of at most 4 heads (larger groups always run kvc_attend). Both cores have the same contract (run(), out_o(),
 * smem_t::page/ntok/M/L, DYN_BYTES, load_q() into A::qreg_t).
 */
#include "kvc_attend.cuh"
#include "kvc_attend_mma.cuh"
#include "kvc_dense.cuh"

struct kvc__split_params {
  const void *k, *v;
  int Hkv, Hq, G, bs, max_blocks;
  const int32_t *block_table, *seq_len;
  const float *q;
  const int32_t *list, *list_count;
  int list_stride;
  int bps, max_splits;
  float *part_o;   /* [pair, max_splits, G, D] */
  float *part_ml;  /* [pair, max_splits, G, 2] (max in log2 units, sum) */
  float *out, *lse;
  float scale_log2;
  int *split_cnt;  /* [pair] arrivals (fused combine), NULL: a combine kernel runs after */
};

#define KVC_COMB_MAXS 512 /* splits per pair the combine stages in shared memory */

/* Blocks a pair reads: the list's count, or every block of its request. */
__device__ __forceinline__ int kvc__pair_nblk(const kvc__split_params &p, int pair) {
  return p.list ? p.list_count[pair] : (int)kvc_n_blocks(p.seq_len[pair / p.Hkv], p.bs);
}

/* Merge weights of head g's ns split partials: w[s] = 2^(M_s - M) (shared), M and L = sum w L_s
 * (returned through *M, *L on every lane). One warp; partials read from L2 (other CTAs wrote
 * them). */
__device__ __forceinline__ void kvc__comb_weights(const kvc__split_params &p, int pair, int g,
                                                  int ns, float *w, float *M, float *L) {
  const int lane = threadIdx.x % 32;
  const size_t first = (size_t)pair * p.max_splits;
  float mx = -CUDART_INF_F;
  for (int s = lane; s < ns; s += 32) {
    const float m = __ldcg(&p.part_ml[((first + s) * p.G + g) * 2]);
    w[s] = m;
    mx = fmaxf(mx, m);
  }
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
  float l = 0.0f;
  for (int s = lane; s < ns; s += 32) {
    const float ws = w[s] == -CUDART_INF_F ? 0.0f : exp2f(w[s] - mx);
    w[s] = ws;
    l = fmaf(__ldcg(&p.part_ml[((first + s) * p.G + g) * 2 + 1]), ws, l);
  }
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) l += __shfl_xor_sync(0xffffffffu, l, o);
  *M = mx;
  *L = l;
}

/* out[d] = sum_s w[s] o_s[d] / L for one (pair, head, d): independent loads, 8 in flight. */
__device__ __forceinline__ void kvc__comb_out(const kvc__split_params &p, int pair, int g, int d,
                                              int D, int ns, const float *w, float M, float L) {
  const size_t first = (size_t)pair * p.max_splits;
  float O = 0.0f;
#pragma unroll 8
  for (int s = 0; s < ns; s++) O = fmaf(__ldcg(&p.part_o[((first + s) * p.G + g) * D + d]), w[s], O);
  const int r = pair / p.Hkv, h = pair - r * p.Hkv;
  const size_t hq = (size_t)r * p.Hq + h * p.G + g;
  p.out[hq * D + d] = L > 0.0f ? O / L : 0.0f;
  if (d == 0 && p.lse) p.lse[hq] = (float)((M + log2f(L)) * KVC_LN2);
}

/* CTA (split s, pair) with attend core A (kvc_attend<T, D, GT, S> or kvc_attend_mma<...>). */
template <typename T, int D, int GT, typename A>
__global__ void __launch_bounds__(KVC_THREADS) kvc__split_kernel(kvc__split_params p) {
  extern __shared__ __align__(16) unsigned char kvc_dyn[];
  __shared__ typename A::smem_t sm;
  __shared__ int s_last;
  __shared__ float sM[GT], sL[GT];
  const int pair = blockIdx.y, s = blockIdx.x;
  const int r = pair / p.Hkv, h = pair - r * p.Hkv;
  const int n = kvc__pair_nblk(p, pair);
  const int ns = (n + p.bps - 1) / p.bps;
  if (s >= ns) return;
  const int b0 = s * p.bps, b1 = min(n, b0 + p.bps), nblk = b1 - b0;
  const int len = p.seq_len[r];
  for (int i = threadIdx.x; i < nblk; i += KVC_THREADS) {
    const int lb = p.list ? p.list[(size_t)pair * p.list_stride + b0 + i] : b0 + i;
    sm.page[i] = p.block_table[(size_t)r * p.max_blocks + lb];
    sm.ntok[i] = kvc_block_tokens(len, p.bs, lb);
  }
  typename A::qreg_t q;
  A::load_q(p.q + ((size_t)r * p.Hq + h * p.G) * D, p.G, p.scale_log2, q);
  __syncthreads();
  A::run(sm, kvc_dyn, (const T *)p.k, (const T *)p.v, p.Hkv, p.bs, h, nblk, p.G, q);
  const float *o = A::out_o(kvc_dyn);
  const size_t slot = (size_t)pair * p.max_splits + s;
  for (int idx = threadIdx.x; idx < p.G * D; idx += KVC_THREADS) {
    const int g = idx / D, d = idx - g * D;
    if (ns == 1) {
      const float L = sm.L[g];
      const size_t hq = (size_t)r * p.Hq + h * p.G + g;
      p.out[hq * D + d] = L > 0.0f ? o[idx] / L : 0.0f;
      if (d == 0 && p.lse) p.lse[hq] = (float)((sm.M[g] + log2f(L)) * KVC_LN2);
    } else {
      __stcg(&p.part_o[(slot * p.G + g) * D + d], o[idx]);
      if (d == 0) {
        __stcg(&p.part_ml[(slot * p.G + g) * 2], sm.M[g]);
        __stcg(&p.part_ml[(slot * p.G + g) * 2 + 1], sm.L[g]);
      }
    }
  }
  if (ns == 1 || !p.split_cnt) return;
  /* Fused combine: the pair's last CTA to arrive merges every split (threadfence reduction). */
  __threadfence();
  __syncthreads();
  if (threadIdx.x == 0) {
    const int t = atomicAdd(&p.split_cnt[pair], 1);
    s_last = t == ns - 1;
    if (s_last) p.split_cnt[pair] = 0; /* all ns arrived: ready for the next call */
  }
  __syncthreads();
  if (!s_last) return;
  __threadfence();
  float *w = reinterpret_cast<float *>(kvc_dyn); /* [G][KVC_COMB_MAXS]: the ring is free now */
  const int warp = threadIdx.x / 32;
  for (int g = warp; g < p.G; g += KVC_THREADS / 32) {
    float M, L;
    kvc__comb_weights(p, pair, g, ns, w + g * KVC_COMB_MAXS, &M, &L);
    if ((threadIdx.x % 32) == 0) sM[g] = M, sL[g] = L;
  }
  __syncthreads();
  for (int idx = threadIdx.x; idx < p.G * D; idx += KVC_THREADS) {
    const int g = idx / D, d = idx - g * D;
    kvc__comb_out(p, pair, g, d, D, ns, w + g * KVC_COMB_MAXS, sM[g], sL[g]);
  }
}

/* CTA (pair, head g), D threads: merges the pair's split partials (nothing for one split). */
__global__ void __launch_bounds__(128) kvc__combine_kernel(kvc__split_params p, int D) {
  __shared__ float w[KVC_COMB_MAXS];
  __shared__ float sML[2];
  const int pair = blockIdx.x, g = blockIdx.y, d = threadIdx.x;
  const int n = kvc__pair_nblk(p, pair);
  const int ns = (n + p.bps - 1) / p.bps;
  if (ns <= 1) return;
  if (threadIdx.x < 32) {
    float M, L;
    kvc__comb_weights(p, pair, g, ns, w, &M, &L);
    if (threadIdx.x == 0) sML[0] = M, sML[1] = L;
  }
  __syncthreads();
  if (d < D) kvc__comb_out(p, pair, g, d, D, ns, w, sML[0], sML[1]);
}

/* Per instantiation, once: allow its dynamic shared memory and read how many CTAs of it one
 * multiprocessor holds. */
template <typename T, int D, int GT, typename A>
static int kvc__split_attr(kvc_ctx *c, int *slots, kv_error *err) {
  static_assert(A::DYN_BYTES >= (size_t)GT * KVC_COMB_MAXS * sizeof(float), "combine staging");
  static int per_sm = 0;
  if (per_sm == 0) {
    KVC_CHECK(err, cudaFuncSetAttribute(kvc__split_kernel<T, D, GT, A>,
                                        cudaFuncAttributeMaxDynamicSharedMemorySize,
                                        (int)A::DYN_BYTES));
    int n = 0;
    KVC_CHECK(err, cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, kvc__split_kernel<T, D, GT, A>,
                                                                 KVC_THREADS, A::DYN_BYTES));
    if (n < 1) {
      return kv_error_set(err, KV_EDEVICE, "split kernel: no CTA fits a multiprocessor "
                          "(%zu bytes of shared memory)", (size_t)A::DYN_BYTES);
    }
    per_sm = n;
  }
  *slots = per_sm * c->prop.multiProcessorCount;
  return 0;
}

template <typename T, int D, int GT, typename A>
static int kvc__launch_split_s(kvc_ctx *c, const kvc__split_params &p, int n_pairs, kv_error *err) {
  int slots = 0;
  KVC_TRY((kvc__split_attr<T, D, GT, A>(c, &slots, err)));
  dim3 grid((unsigned)p.max_splits, (unsigned)n_pairs);
  kvc__split_kernel<T, D, GT, A><<<grid, KVC_THREADS, A::DYN_BYTES, c->stream>>>(p);
  KVC_CHECK(err, cudaGetLastError());
  return 0;
}

/* Whether a call runs the tensor-core core: KVC_TUNE_DENSE_CORE = 1 for a dense call (no block
 * list), KVC_TUNE_TOPK_CORE = 1 for top-k's (a list), and a group of at most 4 heads. */
static int kvc__use_mma(const kvc_ctx *c, int dense, int GT) {
  return c->tune[dense ? KVC_TUNE_DENSE_CORE : KVC_TUNE_TOPK_CORE] == 1 && GT == 4;
}
/* v5: the tensor-core core with bulk-copy staging (kvc_attend_mma<..., BULK = true>):
 * KVC_TUNE_DENSE_CORE = 2, dense calls only, groups of at most 4 heads. */
static int kvc__use_bulk(const kvc_ctx *c, int dense, int GT) {
  return dense && c->tune[KVC_TUNE_DENSE_CORE] == 2 && GT == 4;
}
/* v6: the tensor-core core with register staging (kvc_attend_mma<..., 2, false, REGS = true>):
 * KVC_TUNE_DENSE_CORE = 3, dense calls only, groups of at most 4 heads; always a ring of 2 slots
 * (KVC_TUNE_DENSE_STAGES does not apply). */
static int kvc__use_regs(const kvc_ctx *c, int dense, int GT) {
  return dense && (c->tune[KVC_TUNE_DENSE_CORE] == 3 || c->tune[KVC_TUNE_DENSE_CORE] == 4) &&
         GT == 4;
}
/* v7: the same with the L2::256B prefetch hint on its loads (KVC_TUNE_DENSE_CORE = 4). */
static int kvc__regs_pf(const kvc_ctx *c) { return c->tune[KVC_TUNE_DENSE_CORE] == 4; }

/* The core's ring depth: KVC_TUNE_DENSE_STAGES (3, 4, 6) for kvc_attend; kvc_attend_mma has
 * 3 (KVC_TUNE_DENSE_STAGES 3) or 4 stages (4 and 6: 6 x 16 KB per warp would leave one CTA per SM
 * with D 128 already at 4). */
template <typename T, int D, int GT>
static int kvc__launch_split(kvc_ctx *c, const kvc__split_params &p, int n_pairs, kv_error *err) {
  if constexpr (GT == 4) {
    if (kvc__use_regs(c, p.list == NULL, GT)) {
      if (kvc__regs_pf(c)) {
        return kvc__launch_split_s<T, D, GT, kvc_attend_mma<T, D, GT, 2, false, true, true>>(c, p, n_pairs,
                                                                                            err);
      }
      return kvc__launch_split_s<T, D, GT, kvc_attend_mma<T, D, GT, 2, false, true>>(c, p, n_pairs, err);
    }
    if (kvc__use_bulk(c, p.list == NULL, GT)) {
      if (c->tune[KVC_TUNE_DENSE_STAGES] == 3) {
        return kvc__launch_split_s<T, D, GT, kvc_attend_mma<T, D, GT, 3, true>>(c, p, n_pairs, err);
      }
      return kvc__launch_split_s<T, D, GT, kvc_attend_mma<T, D, GT, 4, true>>(c, p, n_pairs, err);
    }
    if (kvc__use_mma(c, p.list == NULL, GT)) {
      if (c->tune[KVC_TUNE_DENSE_STAGES] == 3) {
        return kvc__launch_split_s<T, D, GT, kvc_attend_mma<T, D, GT, 3>>(c, p, n_pairs, err);
      }
      return kvc__launch_split_s<T, D, GT, kvc_attend_mma<T, D, GT, 4>>(c, p, n_pairs, err);
    }
  }
  switch (c->tune[KVC_TUNE_DENSE_STAGES]) {
    case 3: return kvc__launch_split_s<T, D, GT, kvc_attend<T, D, GT, 3>>(c, p, n_pairs, err);
    case 6: return kvc__launch_split_s<T, D, GT, kvc_attend<T, D, GT, 6>>(c, p, n_pairs, err);
    default: return kvc__launch_split_s<T, D, GT, kvc_attend<T, D, GT, 4>>(c, p, n_pairs, err);
  }
}

/* CTAs of the core a call will run that the GPU holds at once (the split plan's wave model). */
template <typename T, int D, int GT>
static int kvc__slots(kvc_ctx *c, int dense, int *slots, kv_error *err) {
  if constexpr (GT == 4) {
    if (kvc__use_regs(c, dense, GT)) {
      if (kvc__regs_pf(c)) {
        return kvc__split_attr<T, D, GT, kvc_attend_mma<T, D, GT, 2, false, true, true>>(c, slots, err);
      }
      return kvc__split_attr<T, D, GT, kvc_attend_mma<T, D, GT, 2, false, true>>(c, slots, err);
    }
    if (kvc__use_bulk(c, dense, GT)) {
      if (c->tune[KVC_TUNE_DENSE_STAGES] == 3) {
        return kvc__split_attr<T, D, GT, kvc_attend_mma<T, D, GT, 3, true>>(c, slots, err);
      }
      return kvc__split_attr<T, D, GT, kvc_attend_mma<T, D, GT, 4, true>>(c, slots, err);
    }
    if (kvc__use_mma(c, dense, GT)) {
      if (c->tune[KVC_TUNE_DENSE_STAGES] == 3) {
        return kvc__split_attr<T, D, GT, kvc_attend_mma<T, D, GT, 3>>(c, slots, err);
      }
      return kvc__split_attr<T, D, GT, kvc_attend_mma<T, D, GT, 4>>(c, slots, err);
    }
  }
  switch (c->tune[KVC_TUNE_DENSE_STAGES]) {
    case 3: return kvc__split_attr<T, D, GT, kvc_attend<T, D, GT, 3>>(c, slots, err);
    case 6: return kvc__split_attr<T, D, GT, kvc_attend<T, D, GT, 6>>(c, slots, err);
    default: return kvc__split_attr<T, D, GT, kvc_attend<T, D, GT, 4>>(c, slots, err);
  }
}

int kvc__split_prepare(kvc_ctx *c, const attn_shape *s, kvc_dtype dtype, const kvc_batch *b,
                       const int64_t *pair_blocks, int dense, kvc_split_size *plan, size_t *bytes,
                       kv_error *err) {
  const int G = s->n_heads / s->n_kv_heads, D = s->head_dim;
  const int64_t pairs = (int64_t)b->n_req * s->n_kv_heads;
  if (pairs > 65535) {
    return kv_error_set(err, KV_ENOTSUP, "split-K: %lld (request, KV head) pairs (at most 65535)",
                        (long long)pairs);
  }
  int slots = 0;
  KVC_TRY(KVC_DISPATCH(dtype, D, G, kvc__slots, c, dense, &slots, err));
  KVC_TRY(kvc_plan_split_size(pair_blocks, pairs, slots, plan, err));
  if (plan->max_splits > KVC_COMB_MAXS) {
    return kv_error_set(err, KV_ENOTSUP, "split-K: %d splits per pair (at most %d)",
                        (int)plan->max_splits, KVC_COMB_MAXS);
  }
  int *cnt = NULL;
  KVC_TRY(kvc__split_counters(c, pairs, &cnt, err)); /* grown here, outside any capture */
  (void)cnt;
  kvc_arena ar = {0};
  (void)kvc_arena_take(&ar, (uint64_t)pairs * plan->max_splits * G * D * sizeof(float));
  (void)kvc_arena_take(&ar, (uint64_t)pairs * plan->max_splits * G * 2 * sizeof(float));
  *bytes = ar.used + 256;
  return 0;
}

int kvc__split_launch(kvc_ctx *c, const attn_shape *s, const kvc_kv *kv, const kvc_batch *b,
                      const int32_t *list, int list_stride, const int32_t *list_count,
                      const kvc_split_size *plan, char *base, float *out, float *lse,
                      kv_error *err) {
  const int Hkv = s->n_kv_heads, G = s->n_heads / Hkv, D = s->head_dim;
  const int pairs = b->n_req * Hkv;
  if (plan->n_work == 0) return 0;
  base = (char *)(((uintptr_t)base + 255) & ~(uintptr_t)255);
  kvc_arena ar = {0};
  const uint64_t o_po = kvc_arena_take(&ar, (uint64_t)pairs * plan->max_splits * G * D * sizeof(float));
  const uint64_t o_pml = kvc_arena_take(&ar, (uint64_t)pairs * plan->max_splits * G * 2 * sizeof(float));
  kvc__split_params p;
  p.k = kv->k;
  p.v = kv->v;
  p.Hkv = Hkv;
  p.Hq = s->n_heads;
  p.G = G;
  p.bs = kv->block_size;
  p.max_blocks = b->max_blocks;
  p.block_table = b->block_table;
  p.seq_len = b->seq_len;
  p.q = b->q;
  p.list = list;
  p.list_count = list_count;
  p.list_stride = list_stride;
  p.bps = plan->blocks_per_split;
  p.max_splits = plan->max_splits;
  p.part_o = (float *)(base + o_po);
  p.part_ml = (float *)(base + o_pml);
  p.out = out;
  p.lse = lse;
  p.scale_log2 = (float)(1.0 / sqrt((double)D)) * KVC_LOG2E;
  const int fused = c->tune[KVC_TUNE_DENSE_FUSED_COMBINE] != 0;
  if (fused) KVC_TRY(kvc__split_counters(c, pairs, &p.split_cnt, err));
  else p.split_cnt = NULL;
  KVC_TRY(KVC_DISPATCH(kv->dtype, D, G, kvc__launch_split, c, p, pairs, err));
  if (plan->max_splits > 1 && !fused) {
    kvc__combine_kernel<<<dim3((unsigned)pairs, (unsigned)G), D, 0, c->stream>>>(p, D);
    KVC_CHECK(err, cudaGetLastError());
  }
  return 0;
}

extern "C" int kvc_dense(kvc_ctx *c, const attn_shape *s, const kvc_kv *kv, const kvc_batch *b,
                         float *out, float *lse, kv_error *err) {
  KVC_TRY(kvc__check_common(s, kv, b, err));
  const int Hkv = s->n_kv_heads;
  int64_t *pb;
  KVC_TRY(kvc__pair_blocks(c, (int64_t)b->n_req * Hkv, &pb, err));
  for (int r = 0; r < b->n_req; r++) {
    for (int h = 0; h < Hkv; h++) pb[(int64_t)r * Hkv + h] = kvc_n_blocks(b->h_seq_len[r], kv->block_size);
  }
  kvc_split_size plan;
  size_t bytes;
  char *base;
  KVC_TRY(kvc__split_prepare(c, s, kv->dtype, b, pb, 1, &plan, &bytes, err));
  KVC_TRY(kvc__scratch(c, bytes, &base, err));
  return kvc__split_launch(c, s, kv, b, NULL, 0, NULL, &plan, base, out, lse, err);
}

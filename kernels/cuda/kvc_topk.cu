/* kvc_topk.cu — fixed top-k (Quest-style) decode attention on the GPU, and the block scoring and
 * ordering that PSA shares.
 *
 * 1. Scores: one row group of threads per block reads the block's metadata rows (16-byte loads,
 *    head_dim / 8 threads) and computes, for every query head of the group, the Quest bound
 *    sum_d max(q_d min_d, q_d max_d) or q . mean (and q^2 . var for the log-normal estimate).
 * 2. Selection without a sort and without a host round trip (v2; v1 ran CUB's segmented sort,
 *    which copies to the host above 500 segments, so it could not be captured at large batch):
 *    one CTA per (request, KV head) finds the k-th largest group-combined key by radix select
 *    (8 passes of 8 bits over the order-preserving 64-bit image of the double key, histograms in
 *    shared memory with warp-aggregated atomics), then takes every key above it and the
 *    lowest-indexed keys equal to it (ties to the lower block, as attn_sparse.c), writing the
 *    selection in ascending block order. Forced blocks are keyed +inf, so they are always in.
 * 3. Split-K attention over the selected blocks (kvc_dense.cu's kernel with a block list and the
 *    selection's counts on the device).
 * The number of selected blocks per pair is known on the host from the lengths (kvc_topk_blocks),
 * so the split plan needs no device data; nothing is uploaded: capturable at any batch.
 * PSA's visit order is a full order: one CTA per pair sorts it with cub::BlockRadixSort when the
 * pair has at most KVC_BLOCK_SORT_MAX blocks; longer contexts fall back to CUB's segmented sort.
 */
#include <cub/block/block_radix_sort.cuh>
#include <cub/block/block_scan.cuh>
#include <cub/device/device_segmented_sort.cuh>
#include <math_constants.h>

#include <vector>

#include "kvc_dense.cuh"
#include "kvc_topk.cuh"

struct kvc__score_params {
  const void *kmin, *kmax, *kmean, *kvar;
  int Hkv, Hq, G, bs, max_blocks;
  const int32_t *block_table, *seq_len;
  const float *q;
  float scale;
  int mode, rank, combine, estimate, sink, recent;
  double *key;
  float *logit, *est;
  int32_t *idx;
};

template <typename T, int D, int GT>
__global__ void __launch_bounds__(128) kvc__score_kernel(kvc__score_params p) {
  constexpr int VEC = 8, LANES = D / VEC, ROWS = 128 / LANES;
  const int pair = blockIdx.y, r = pair / p.Hkv, h = pair % p.Hkv;
  const int lane = threadIdx.x % LANES, row = threadIdx.x / LANES;
  const int len = p.seq_len[r];
  const int nb = (int)kvc_n_blocks(len, p.bs);
  float q[GT][VEC];
  const float *qg = p.q + ((size_t)r * p.Hq + h * p.G) * D + lane * VEC;
#pragma unroll
  for (int g = 0; g < GT; g++) {
#pragma unroll
    for (int j = 0; j < VEC; j++) q[g][j] = g < p.G ? qg[g * D + j] : 0.0f;
  }
  const bool need_minmax = p.rank == ATTN_RANK_QUEST || (p.mode == KVC_SCORE_PSA && p.estimate == ATTN_EST_BOUND);
  const bool need_mean = p.rank == ATTN_RANK_MEAN || (p.mode == KVC_SCORE_PSA && p.estimate != ATTN_EST_BOUND);
  const bool need_var = p.mode == KVC_SCORE_PSA && p.estimate == ATTN_EST_LOGNORMAL;
  for (int b0 = blockIdx.x * ROWS * 4; b0 < (int)(blockIdx.x + 1) * ROWS * 4; b0 += ROWS) {
    const int b = b0 + row;
    const bool live = b < nb; /* uniform within a row group; shuffles stay full-warp */
    const int page = live ? p.block_table[(size_t)r * p.max_blocks + b] : 0;
    const size_t off = ((size_t)page * p.Hkv + h) * D + lane * VEC;
    float mn[VEC], mx[VEC], mu[VEC], va[VEC];
    if (live && need_minmax) {
      kvc_unpack8<T>(__ldg(reinterpret_cast<const uint4 *>((const T *)p.kmin + off)), mn);
      kvc_unpack8<T>(__ldg(reinterpret_cast<const uint4 *>((const T *)p.kmax + off)), mx);
    } else {
#pragma unroll
      for (int j = 0; j < VEC; j++) mn[j] = mx[j] = 0.0f;
    }
    if (live && need_mean) {
      kvc_unpack8<T>(__ldg(reinterpret_cast<const uint4 *>((const T *)p.kmean + off)), mu);
    } else {
#pragma unroll
      for (int j = 0; j < VEC; j++) mu[j] = 0.0f;
    }
    if (live && need_var) {
      kvc_unpack8<T>(__ldg(reinterpret_cast<const uint4 *>((const T *)p.kvar + off)), va);
    } else {
#pragma unroll
      for (int j = 0; j < VEC; j++) va[j] = 0.0f;
    }
    float quest[GT], dmean[GT], qvar[GT];
#pragma unroll
    for (int g = 0; g < GT; g++) {
      float a = 0.0f, c = 0.0f, e = 0.0f;
#pragma unroll
      for (int j = 0; j < VEC; j++) {
        a += fmaxf(q[g][j] * mn[j], q[g][j] * mx[j]);
        c = fmaf(q[g][j], mu[j], c);
        e = fmaf(q[g][j] * q[g][j], va[j], e);
      }
      quest[g] = a;
      dmean[g] = c;
      qvar[g] = e;
    }
#pragma unroll
    for (int o = LANES / 2; o > 0; o >>= 1) {
#pragma unroll
      for (int g = 0; g < GT; g++) {
        quest[g] += __shfl_xor_sync(0xffffffffu, quest[g], o);
        dmean[g] += __shfl_xor_sync(0xffffffffu, dmean[g], o);
        qvar[g] += __shfl_xor_sync(0xffffffffu, qvar[g], o);
      }
    }
    if (!live || lane != 0) continue;
    const size_t kb = (size_t)pair * p.max_blocks + b;
    if (p.idx) p.idx[kb] = b;
    const double sc = p.scale;
    if (p.mode == KVC_SCORE_TOPK) {
      double k = p.combine == ATTN_GQA_MAX ? -CUDART_INF : 0.0;
      for (int g = 0; g < p.G; g++) {
        const double v = sc * (p.rank == ATTN_RANK_QUEST ? quest[g] : dmean[g]);
        k = p.combine == ATTN_GQA_MAX ? fmax(k, v) : k + v;
      }
      if (kvc_is_forced(b, nb, p.sink, p.recent)) k = CUDART_INF;
      p.key[kb] = k;
    } else {
      const double ln = log((double)kvc_block_tokens(len, p.bs, b));
      for (int g = 0; g < p.G; g++) {
        const size_t o = ((size_t)pair * p.G + g) * p.max_blocks + b;
        p.logit[o] = (float)(ln + sc * (p.rank == ATTN_RANK_QUEST ? quest[g] : dmean[g]));
        double e;
        if (p.estimate == ATTN_EST_BOUND) e = ln + sc * quest[g];
        else if (p.estimate == ATTN_EST_MEAN) e = ln + sc * dmean[g];
        else e = ln + sc * dmean[g] + 0.5 * sc * sc * qvar[g];
        p.est[o] = (float)e;
      }
    }
  }
}

template <typename T, int D, int GT>
static int kvc__launch_score(kvc_ctx *c, const kvc__score_params &p, int n_pairs, kv_error *err) {
  constexpr int ROWS = 128 / (D / 8);
  dim3 grid((p.max_blocks + ROWS * 4 - 1) / (ROWS * 4), n_pairs);
  kvc__score_kernel<T, D, GT><<<grid, 128, 0, c->stream>>>(p);
  KVC_CHECK(err, cudaGetLastError());
  return 0;
}

int kvc__block_scores(kvc_ctx *c, const attn_shape *s, const attn_method *m, const kvc_kv *kv,
                      const kvc_batch *b, kvc_score_mode mode, double *key, float *logit,
                      float *est, int32_t *idx, kv_error *err) {
  kvc__score_params p;
  memset(&p, 0, sizeof p);
  p.kmin = kv->kmin;
  p.kmax = kv->kmax;
  p.kmean = kv->kmean;
  p.kvar = kv->kvar;
  p.Hkv = s->n_kv_heads;
  p.Hq = s->n_heads;
  p.G = s->n_heads / s->n_kv_heads;
  p.bs = kv->block_size;
  p.max_blocks = b->max_blocks;
  p.block_table = b->block_table;
  p.seq_len = b->seq_len;
  p.q = b->q;
  p.scale = (float)(1.0 / sqrt((double)s->head_dim));
  p.mode = mode;
  p.rank = mode == KVC_SCORE_TOPK ? m->topk_rank : m->psa_rank;
  p.combine = m->topk_combine;
  p.estimate = m->psa_estimate;
  p.sink = m->keep_sink_blocks;
  p.recent = m->keep_recent_blocks;
  p.key = key;
  p.logit = logit;
  p.est = est;
  p.idx = idx;
  const int need = kvc_method_meta(m);
  if ((need & kv->meta_mask) != need) {
    return kv_error_set(err, KV_EINVAL, "block scores: method needs metadata 0x%x, pool keeps 0x%x",
                        need, kv->meta_mask);
  }
  return KVC_DISPATCH(kv->dtype, s->head_dim, p.G, kvc__launch_score, c, p,
                      b->n_req * s->n_kv_heads, err);
}


/* ---- ordering helpers -------------------------------------------------------------------------- */
/* Order-preserving image of a double in uint64 (larger double -> larger image). */
__device__ __forceinline__ uint64_t kvc__key_bits(double k) {
  const uint64_t u = (uint64_t)__double_as_longlong(k);
  return (u >> 63) ? ~u : (u | 0x8000000000000000ull);
}

/* ---- top-k selection: radix select per pair ----------------------------------------------- */
#define KVC_SEL_THREADS 256
#define KVC_SEL_SMEM_KEYS 5120 /* keys cached in shared memory (40 KB); beyond, read from L2 */

struct kvc__select_params {
  const double *key;       /* [pair, mb] */
  const int32_t *seq_len;
  int Hkv, bs, mb, sink, recent;
  long long budget;
  int32_t *list;           /* [pair, mb] selection, ascending block order */
  int32_t *count;          /* [pair] */
  int32_t *order, *blocks_read, *blocks_fetched, *iterations; /* optional copies (kvc_sparse_out) */
};

__global__ void __launch_bounds__(KVC_SEL_THREADS) kvc__select_kernel(kvc__select_params p) {
  typedef cub::BlockScan<int, KVC_SEL_THREADS> Scan;
  __shared__ typename Scan::TempStorage scan_tmp;
  __shared__ uint64_t skeys[KVC_SEL_SMEM_KEYS];
  __shared__ int hist[256];
  __shared__ uint64_t s_prefix;
  __shared__ int s_kk;
  const int pair = blockIdx.x, tid = threadIdx.x;
  const int nb = (int)kvc_n_blocks(p.seq_len[pair / p.Hkv], p.bs);
  const int k = (int)kvc_topk_blocks(p.seq_len[pair / p.Hkv], p.bs, p.budget, p.sink, p.recent);
  const double *key = p.key + (size_t)pair * p.mb;
  int32_t *list = p.list + (size_t)pair * p.mb;
  const bool cached = nb <= KVC_SEL_SMEM_KEYS;
  if (cached) {
    for (int b = tid; b < nb; b += KVC_SEL_THREADS) skeys[b] = kvc__key_bits(key[b]);
  }
  uint64_t prefix = 0, mask = 0;
  int kk = k; /* rank (1-based, from the top) of the threshold among keys matching prefix */
  if (k < nb) {
    for (int pass = 0; pass < 8; pass++) {
      const int shift = 56 - 8 * pass;
      for (int i = tid; i < 256; i += KVC_SEL_THREADS) hist[i] = 0;
      __syncthreads();
      for (int b = tid; b < nb; b += KVC_SEL_THREADS) {
        const uint64_t u = cached ? skeys[b] : kvc__key_bits(key[b]);
        if ((u & mask) == prefix) {
          const int digit = (int)((u >> shift) & 255u);
          const unsigned peers = __match_any_sync(__activemask(), digit);
          if ((int)(threadIdx.x & 31) == __ffs(peers) - 1) atomicAdd(&hist[digit], __popc(peers));
        }
      }
      __syncthreads();
      if (tid < 32) {
        /* Lane l owns bins 255-8l .. 248-8l (top first); find the bin holding rank kk. */
        int c[8], sum = 0;
#pragma unroll
        for (int j = 0; j < 8; j++) {
          c[j] = hist[255 - 8 * tid - j];
          sum += c[j];
        }
        int incl = sum;
#pragma unroll
        for (int o = 1; o < 32; o <<= 1) {
          const int y = __shfl_up_sync(0xffffffffu, incl, o);
          if (tid >= o) incl += y;
        }
        int above = incl - sum;
        if (above < kk && kk <= incl) {
#pragma unroll
          for (int j = 0; j < 8; j++) {
            if (above < kk && kk <= above + c[j]) {
              s_prefix = prefix | ((uint64_t)(255 - 8 * tid - j) << shift);
              s_kk = kk - above;
            }
            above += c[j];
          }
        }
      }
      __syncthreads();
      prefix = s_prefix;
      kk = s_kk;
      mask |= (uint64_t)255u << shift;
      __syncthreads(); /* s_prefix / hist are rewritten next pass */
    }
  }
  /* Selection in ascending block order: chunks of consecutive blocks per thread, two scans (ties
   * at the threshold: the first kk by block index; keys above it: all). */
  const int ch = (nb + KVC_SEL_THREADS - 1) / KVC_SEL_THREADS;
  const int c0 = min(nb, tid * ch), c1 = min(nb, c0 + ch);
  int n_eq = 0;
  if (k < nb) {
    for (int b = c0; b < c1; b++) n_eq += (cached ? skeys[b] : kvc__key_bits(key[b])) == prefix;
  }
  int eq_before;
  Scan(scan_tmp).ExclusiveSum(n_eq, eq_before);
  __syncthreads();
  int n_sel = 0;
  if (k < nb) {
    int e = eq_before;
    for (int b = c0; b < c1; b++) {
      const uint64_t u = cached ? skeys[b] : kvc__key_bits(key[b]);
      if (u > prefix) n_sel++;
      else if (u == prefix) n_sel += e++ < kk;
    }
  } else {
    n_sel = c1 - c0;
  }
  int pos;
  Scan(scan_tmp).ExclusiveSum(n_sel, pos);
  {
    int e = eq_before;
    for (int b = c0; b < c1; b++) {
      bool sel = true;
      if (k < nb) {
        const uint64_t u = cached ? skeys[b] : kvc__key_bits(key[b]);
        sel = u > prefix || (u == prefix && e++ < kk);
      }
      if (sel) {
        list[pos] = b;
        if (p.order) p.order[(size_t)pair * p.mb + pos] = b;
        pos++;
      }
    }
  }
  if (tid == 0) {
    p.count[pair] = k;
    if (p.blocks_read) p.blocks_read[pair] = k;
    if (p.blocks_fetched) p.blocks_fetched[pair] = k;
    if (p.iterations) p.iterations[pair] = 1;
  }
}

/* ---- PSA visit order: per-pair block sort ------------------------------------------------- */
#define KVC_SORT_THREADS 256
#define KVC_SORT_ITEMS 16

/* Stable descending order of the keys of pairs with nb <= KVC_BLOCK_SORT_MAX (ascending sort of
 * the complemented image; input in block order, so ties keep the lower block first). */
__global__ void __launch_bounds__(KVC_SORT_THREADS)
kvc__block_sort_kernel(const double *key, const int32_t *seq_len, int Hkv, int bs, int mb,
                       int32_t *order) {
  typedef cub::BlockRadixSort<uint64_t, KVC_SORT_THREADS, KVC_SORT_ITEMS, int32_t> Sort;
  __shared__ typename Sort::TempStorage tmp;
  const int pair = blockIdx.x;
  const int nb = (int)kvc_n_blocks(seq_len[pair / Hkv], bs);
  uint64_t k[KVC_SORT_ITEMS];
  int32_t v[KVC_SORT_ITEMS];
#pragma unroll
  for (int j = 0; j < KVC_SORT_ITEMS; j++) {
    const int b = threadIdx.x * KVC_SORT_ITEMS + j; /* blocked arrangement: block order */
    k[j] = b < nb ? ~kvc__key_bits(key[(size_t)pair * mb + b]) : ~0ull;
    v[j] = b;
  }
  Sort(tmp).Sort(k, v);
#pragma unroll
  for (int j = 0; j < KVC_SORT_ITEMS; j++) {
    const int i = threadIdx.x * KVC_SORT_ITEMS + j;
    if (i < nb) order[(size_t)pair * mb + i] = v[j];
  }
}

__global__ void kvc__segments_kernel(const int32_t *seq_len, int Hkv, int bs, int mb, int pairs,
                                     int32_t *seg) {
  for (int pr = blockIdx.x * blockDim.x + threadIdx.x; pr < pairs; pr += gridDim.x * blockDim.x) {
    seg[pr] = pr * mb;
    seg[pairs + pr] = pr * mb + (int32_t)kvc_n_blocks(seq_len[pr / Hkv], bs);
  }
}

static int kvc__max_nb(const kvc_batch *b, int block_size) {
  int64_t m = 0;
  for (int r = 0; r < b->n_req; r++) {
    const int64_t nb = kvc_n_blocks(b->h_seq_len[r], block_size);
    if (nb > m) m = nb;
  }
  return (int)m;
}

size_t kvc__sort_bytes(const kvc_batch *b, int n_kv_heads, int block_size) {
  const int pairs = b->n_req * n_kv_heads;
  if (kvc__max_nb(b, block_size) <= KVC_BLOCK_SORT_MAX) return 256;
  size_t bytes = 0;
  (void)cub::DeviceSegmentedSort::StableSortPairsDescending(
      (void *)NULL, bytes, (const double *)NULL, (double *)NULL, (const int32_t *)NULL,
      (int32_t *)NULL, (int64_t)pairs * b->max_blocks, pairs, (const int32_t *)NULL,
      (const int32_t *)NULL, (cudaStream_t)0);
  /* segments, keys out, block indices in */
  return bytes + 2 * (size_t)pairs * sizeof(int32_t) +
         (size_t)pairs * b->max_blocks * (sizeof(double) + sizeof(int32_t)) + 1024;
}

__global__ void kvc__iota_kernel(int32_t *idx, int64_t n, int mb) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
       i += (int64_t)gridDim.x * blockDim.x) {
    idx[i] = (int32_t)(i % mb);
  }
}

int kvc__sort_blocks(kvc_ctx *c, const kvc_batch *b, int n_kv_heads, int block_size,
                     const double *key, int32_t *order, char *tmp, size_t tmp_bytes,
                     kv_error *err) {
  const int pairs = b->n_req * n_kv_heads, mb = b->max_blocks;
  if (kvc__max_nb(b, block_size) <= KVC_BLOCK_SORT_MAX) {
    kvc__block_sort_kernel<<<pairs, KVC_SORT_THREADS, 0, c->stream>>>(key, b->seq_len, n_kv_heads,
                                                                      block_size, mb, order);
    KVC_CHECK(err, cudaGetLastError());
    return 0;
  }
  kvc_arena ar = {0};
  const uint64_t o_seg = kvc_arena_take(&ar, 2 * (size_t)pairs * sizeof(int32_t));
  const uint64_t o_k2 = kvc_arena_take(&ar, (size_t)pairs * mb * sizeof(double));
  const uint64_t o_idx = kvc_arena_take(&ar, (size_t)pairs * mb * sizeof(int32_t));
  const uint64_t o_cub = kvc_arena_take(&ar, 0);
  tmp = (char *)(((uintptr_t)tmp + 255) & ~(uintptr_t)255);
  if (ar.used + 256 > tmp_bytes) {
    return kv_error_set(err, KV_ESTATE, "block sort: scratch %zu < %llu bytes", tmp_bytes,
                        (unsigned long long)ar.used);
  }
  int32_t *dseg = (int32_t *)(tmp + o_seg);
  int32_t *idx = (int32_t *)(tmp + o_idx);
  size_t cbytes = tmp_bytes - 256 - o_cub;
  kvc__segments_kernel<<<(pairs + 255) / 256, 256, 0, c->stream>>>(b->seq_len, n_kv_heads,
                                                                   block_size, mb, pairs, dseg);
  KVC_CHECK(err, cudaGetLastError());
  kvc__iota_kernel<<<4 * c->prop.multiProcessorCount, 256, 0, c->stream>>>(idx, (int64_t)pairs * mb, mb);
  KVC_CHECK(err, cudaGetLastError());
  size_t need = 0;
  KVC_CHECK(err, cub::DeviceSegmentedSort::StableSortPairsDescending(
                     (void *)NULL, need, key, (double *)(tmp + o_k2), idx, order,
                     (int64_t)pairs * mb, pairs, dseg, dseg + pairs, c->stream));
  if (need > cbytes) {
    return kv_error_set(err, KV_ESTATE, "block sort: scratch %zu < %zu bytes", cbytes, need);
  }
  KVC_CHECK(err, cub::DeviceSegmentedSort::StableSortPairsDescending(
                     (void *)(tmp + o_cub), cbytes, key, (double *)(tmp + o_k2), idx, order,
                     (int64_t)pairs * mb, pairs, dseg, dseg + pairs, c->stream));
  KVC_CHECK(err, cudaGetLastError());
  return 0;
}

extern "C" int kvc_topk(kvc_ctx *c, const attn_shape *s, const attn_method *m, const kvc_kv *kv,
                        const kvc_batch *b, float *out, kvc_sparse_out *so, kv_error *err) {
  KVC_TRY(kvc__check_common(s, kv, b, err));
  KVC_TRY(attn_method_check(m, err));
  if (m->kind != ATTN_TOPK) return kv_error_set(err, KV_EINVAL, "kvc_topk: method is not top-k");
  if (m->block_size != kv->block_size) {
    return kv_error_set(err, KV_EINVAL, "kvc_topk: method block %d, pool block %d",
                        m->block_size, kv->block_size);
  }
  const int Hkv = s->n_kv_heads, pairs = b->n_req * Hkv, mb = b->max_blocks;
  /* Selected blocks per pair (host, from the lengths) and the split plan over them: one arena
   * holds the keys, the selection and the split-K launch's scratch. */
  int64_t *pb;
  KVC_TRY(kvc__pair_blocks(c, pairs, &pb, err));
  for (int pr = 0; pr < pairs; pr++) {
    pb[pr] = kvc_topk_blocks(b->h_seq_len[pr / Hkv], m->block_size, m->token_budget,
                             m->keep_sink_blocks, m->keep_recent_blocks);
  }
  kvc_split_size plan;
  size_t split_bytes;
  KVC_TRY(kvc__split_prepare(c, s, kv->dtype, b, pb, &plan, &split_bytes, err));
  kvc_arena ar = {0};
  const uint64_t o_key = kvc_arena_take(&ar, (uint64_t)pairs * mb * sizeof(double));
  const uint64_t o_list = kvc_arena_take(&ar, (uint64_t)pairs * mb * sizeof(int32_t));
  const uint64_t o_cnt = kvc_arena_take(&ar, (uint64_t)pairs * sizeof(int32_t));
  const uint64_t o_split = kvc_arena_take(&ar, split_bytes);
  char *base;
  KVC_TRY(kvc__scratch(c, ar.used, &base, err));
  KVC_TRY(kvc__phase(c, 0, err));
  KVC_TRY(kvc__block_scores(c, s, m, kv, b, KVC_SCORE_TOPK, (double *)(base + o_key), NULL, NULL,
                            NULL, err));
  kvc__select_params sp;
  sp.key = (const double *)(base + o_key);
  sp.seq_len = b->seq_len;
  sp.Hkv = Hkv;
  sp.bs = kv->block_size;
  sp.mb = mb;
  sp.sink = m->keep_sink_blocks;
  sp.recent = m->keep_recent_blocks;
  sp.budget = m->token_budget;
  sp.list = (int32_t *)(base + o_list);
  sp.count = (int32_t *)(base + o_cnt);
  sp.order = so ? so->order : NULL;
  sp.blocks_read = so ? so->blocks_read : NULL;
  sp.blocks_fetched = so ? so->blocks_fetched : NULL;
  sp.iterations = so ? so->iterations : NULL;
  kvc__select_kernel<<<pairs, KVC_SEL_THREADS, 0, c->stream>>>(sp);
  KVC_CHECK(err, cudaGetLastError());
  if (so && so->est_mass) {
    KVC_CHECK(err, cudaMemsetAsync(so->est_mass, 0xff, (size_t)b->n_req * s->n_heads * sizeof(float),
                                   c->stream));
  }
  KVC_TRY(kvc__phase(c, 1, err));
  KVC_TRY(kvc__split_launch(c, s, kv, b, sp.list, mb, sp.count, &plan, base + o_split, out, NULL,
                            err));
  return kvc__phase(c, 2, err);
}

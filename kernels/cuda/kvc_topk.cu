/* kvc_topk.cu — fixed top-k (Quest-style) decode attention on the GPU, and the block scoring and
 * ordering that PSA shares.
 *
 * 1. Scores: one row group of threads per block reads the block's metadata rows (16-byte loads,
 *    head_dim / 8 threads) and computes, for every query head of the group, the Quest bound
 *    sum_d max(q_d min_d, q_d max_d) or q . mean (and q^2 . var for the log-normal estimate).
 * 2. Selection without a sort and without a host round trip (v2; v1 ran CUB's segmented sort,
 *    which copies to the host above 500 segments, so it could not be captured at large batch):
 *    one CTA per (request, KV head) finds the k-th largest group-combined key by radix select
 *    (up to 8 passes of 8 bits over the order-preserving 64-bit image of the double key,
 *    histograms in shared memory with warp-aggregated atomics; it stops early once the bin that
 *    holds the k-th key is taken whole, usually after 2-3 passes), then takes every key above it and the
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
#include "kvc_score_map.h"
#include "kvc_topk.cuh"

struct kvc__score_params {
  const void *kmin, *kmax, *kmean, *kvar;
  int Hkv, Hq, G, bs, max_blocks;
  const int32_t *block_table, *seq_len;
  const float *q;
  float scale;
  int mode, rank, combine, estimate, sink, recent;
  int iters; /* v9 kernel: batches of ROWS x 4 blocks each CTA scores in turn (kvc_score_iters) */
  double *key;
  float *logit, *est;
  int32_t *idx;
};

/* Sum over a row group of LANES lanes of N values per lane, transposing: after the halving
 * levels (offsets LANES/2 .. down, while N > 1) a lane keeps one value, the sum over the lanes
 * that share its index bits; plain xor levels finish the sum. The value index a lane ends with
 * is kvc__red_idx; the lane of index g with zero low bits is kvc__red_src(g). */
template <int N, int OFF>
struct kvc__red {
  static __device__ __forceinline__ void run(float *v, int lane) {
    if (N > 1) {
      const bool upper = (lane & OFF) != 0;
#pragma unroll
      for (int i = 0; i < N / 2; i++) {
        const float send = upper ? v[i] : v[i + N / 2];
        const float keep = upper ? v[i + N / 2] : v[i];
        v[i] = keep + __shfl_xor_sync(0xffffffffu, send, OFF);
      }
    } else {
      v[0] += __shfl_xor_sync(0xffffffffu, v[0], OFF);
    }
    kvc__red<(N > 1 ? N / 2 : 1), OFF / 2>::run(v, lane);
  }
};
template <int N>
struct kvc__red<N, 0> {
  static __device__ __forceinline__ void run(float *, int) {}
};
template <int N, int LANES>
__device__ __forceinline__ int kvc__red_src(int g) {
  int src = 0, n = N, off = LANES / 2;
  while (n > 1 && off > 0) {
    n /= 2;
    if (g & n) src |= off;
    off /= 2;
  }
  return src;
}

/* The metadata a v9 score kernel reads (template NEED), fixed at compile time. */
#define KVC_NEED_MINMAX 1 /* Quest's bound: kmin and kmax */
#define KVC_NEED_MEAN 2   /* q . mean: kmean */

/* Writes one block's result from the row group's reduced sums (lane holds head g's sums in
 * element 0 where kvc__red_src<GT, LANES>(g) == lane): top-k's group-combined key (forced blocks
 * +inf), or PSA's per-head logit and estimate (ln = log of the block's token count). Shared by the v2 and v9 score kernels; every lane
 * of the row group calls it (the shuffles are full-warp); `live` = b < nb. */
template <int GT, int LANES>
__device__ __forceinline__ void kvc__score_store(const kvc__score_params &p, int lane, bool live,
                                                 int pair, int b, int nb, double ln,
                                                 const float *quest, const float *dmean,
                                                 const float *qvar) {
  const double sc = p.scale;
  if (p.mode == KVC_SCORE_TOPK) {
    /* the group's key: every head's score into lane 0 of the row group, combined there */
    float x = p.rank == ATTN_RANK_QUEST ? quest[0] : dmean[0];
    double k = p.combine == ATTN_GQA_MAX ? -CUDART_INF : 0.0;
#pragma unroll
    for (int g = 0; g < GT; g++) {
      const float y = __shfl_sync(0xffffffffu, x, kvc__red_src<GT, LANES>(g), LANES);
      if (g < p.G) {
        const double v = sc * (double)y;
        k = p.combine == ATTN_GQA_MAX ? fmax(k, v) : k + v;
      }
    }
    if (!live || lane != 0) return;
    const size_t kb = (size_t)pair * p.max_blocks + b;
    if (p.idx) p.idx[kb] = b;
    if (kvc_is_forced(b, nb, p.sink, p.recent)) k = CUDART_INF;
    p.key[kb] = k;
  } else {
    if (!live) return;
#pragma unroll
    for (int g = 0; g < GT; g++) {
      if (g >= p.G || lane != kvc__red_src<GT, LANES>(g)) continue;
      const size_t o = ((size_t)pair * p.G + g) * p.max_blocks + b;
      p.logit[o] = (float)(ln + sc * (p.rank == ATTN_RANK_QUEST ? quest[0] : dmean[0]));
      double e;
      if (p.estimate == ATTN_EST_BOUND) e = ln + sc * quest[0];
      else if (p.estimate == ATTN_EST_MEAN) e = ln + sc * dmean[0];
      else e = ln + sc * dmean[0] + 0.5 * sc * sc * qvar[0];
      p.est[o] = (float)e;
    }
    if (p.idx && lane == 0) p.idx[(size_t)pair * p.max_blocks + b] = b;
  }
}

/* Scores of blocks: a row group (D / 8 lanes, 16 bytes of each metadata row per lane) per block,
 * PER blocks per row group with every load issued before any arithmetic. Quest bound as
 * q+ . max + q- . min (q+ = max(q, 0), q- = min(q, 0): the per-dimension max of q min and q max),
 * q . mean, q^2 . var; only the quantities the method uses are loaded and reduced.
 * Which (request, head, block) a thread scores: kvc_score_map.h. HI = false: one (request, KV
 * head) pair per CTA, each metadata read one head's isolated D-element row (256 B at D 128,
 * bf16) of a scattered page. HI = true (v8, KVC_TUNE_SCORE_HEADS = 1): all KV heads of a request
 * per CTA, the row groups of a unit reading a page's rows of all heads together (Hkv x 256 B
 * contiguous, [page][Hkv][D]). Same arithmetic per (pair, block), same outputs. */
template <typename T, int D, int GT, bool HI = false>
__global__ void __launch_bounds__(128) kvc__score_kernel(kvc__score_params p) {
  constexpr int VEC = 8, LANES = D / VEC, ROWS = 128 / LANES, PER = 4;
  const int lane = threadIdx.x % LANES, row = threadIdx.x / LANES;
  int r, h, b0; /* kvc_score_map.h: request, head (fixed per row group) and unit 0's block */
  kvc_score_map(HI, ROWS, PER, p.Hkv, blockIdx.x, blockIdx.y, row, 0, &r, &h, &b0);
  const int pair = r * p.Hkv + h;
  const int len = p.seq_len[r];
  const int nb = (int)kvc_n_blocks(len, p.bs);
  if ((int)blockIdx.x * kvc_score_blocks_per_cta(HI, ROWS, PER, p.Hkv) >= nb) return; /* whole CTA */
  /* block of unit u of this row group */
  auto blk = [&](int u) {
    int rr, hh, bb;
    kvc_score_map(HI, ROWS, PER, p.Hkv, blockIdx.x, blockIdx.y, row, u, &rr, &hh, &bb);
    return bb;
  };
  float q[GT][VEC];
  const float *qg = p.q + ((size_t)r * p.Hq + h * p.G) * D + lane * VEC;
#pragma unroll
  for (int g = 0; g < GT; g++) {
#pragma unroll
    for (int j = 0; j < VEC; j++) q[g][j] = g < p.G ? qg[g * D + j] : 0.0f;
  }
  const bool psa = p.mode == KVC_SCORE_PSA;
  const bool need_minmax = p.rank == ATTN_RANK_QUEST || (psa && p.estimate == ATTN_EST_BOUND);
  const bool need_mean = p.rank == ATTN_RANK_MEAN || (psa && p.estimate != ATTN_EST_BOUND);
  const bool need_var = psa && p.estimate == ATTN_EST_LOGNORMAL;
  uint4 rmn[PER], rmx[PER], rmu[PER], rva[PER];
  const uint4 z4 = make_uint4(0u, 0u, 0u, 0u);
#pragma unroll
  for (int u = 0; u < PER; u++) {
    const int b = blk(u);
    const bool live = b < nb;
    const int page = live ? __ldg(&p.block_table[(size_t)r * p.max_blocks + b]) : 0;
    const size_t off = ((size_t)page * p.Hkv + h) * D + lane * VEC;
    rmn[u] = live && need_minmax ? __ldg(reinterpret_cast<const uint4 *>((const T *)p.kmin + off)) : z4;
    rmx[u] = live && need_minmax ? __ldg(reinterpret_cast<const uint4 *>((const T *)p.kmax + off)) : z4;
    rmu[u] = live && need_mean ? __ldg(reinterpret_cast<const uint4 *>((const T *)p.kmean + off)) : z4;
    rva[u] = live && need_var ? __ldg(reinterpret_cast<const uint4 *>((const T *)p.kvar + off)) : z4;
  }
#pragma unroll
  for (int u = 0; u < PER; u++) {
    const int b = blk(u);
    const bool live = b < nb; /* uniform within a row group; shuffles stay full-warp */
    float quest[GT] = {}, dmean[GT] = {}, qvar[GT] = {};
    if (need_minmax) {
      float mn[VEC], mx[VEC];
      kvc_unpack8<T>(rmn[u], mn);
      kvc_unpack8<T>(rmx[u], mx);
#pragma unroll
      for (int g = 0; g < GT; g++) {
        float a = 0.0f;
#pragma unroll
        for (int j = 0; j < VEC; j++) {
          a = fmaf(fmaxf(q[g][j], 0.0f), mx[j], a);
          a = fmaf(fminf(q[g][j], 0.0f), mn[j], a);
        }
        quest[g] = a;
      }
      kvc__red<GT, LANES / 2>::run(quest, lane);
    }
    if (need_mean) {
      float mu[VEC];
      kvc_unpack8<T>(rmu[u], mu);
#pragma unroll
      for (int g = 0; g < GT; g++) {
        float a = 0.0f;
#pragma unroll
        for (int j = 0; j < VEC; j++) a = fmaf(q[g][j], mu[j], a);
        dmean[g] = a;
      }
      kvc__red<GT, LANES / 2>::run(dmean, lane);
    }
    if (need_var) {
      float va[VEC];
      kvc_unpack8<T>(rva[u], va);
#pragma unroll
      for (int g = 0; g < GT; g++) {
        float a = 0.0f;
#pragma unroll
        for (int j = 0; j < VEC; j++) a = fmaf(q[g][j] * q[g][j], va[j], a);
        qvar[g] = a;
      }
      kvc__red<GT, LANES / 2>::run(qvar, lane);
    }
    const double ln = psa && live ? log((double)kvc_block_tokens(len, p.bs, b)) : 0.0;
    kvc__score_store<GT, LANES>(p, lane, live, pair, b, nb, ln, quest, dmean, qvar);
  }
}


/* v9 block scores (KVC_TUNE_SCORE_LOOP = 1, the default): the v2 kernel's arithmetic and outputs
 * for the two common metadata sets, with what v8's measurements showed limiting it removed. The
 * v2 kernel allocates registers for all four metadata arrays and the query (119 per thread at
 * D 128, G 4: 4 CTAs of 128 threads per SM), and each CTA lives for one batch of loads, so at
 * B 32 it read metadata at ~1.4 TB/s (ncu, 2026-12-03). Here:
 *   - NEED (KVC_NEED_MINMAX: Quest's q+ . max + q- . min; KVC_NEED_MEAN: q . mean) is fixed at
 *     compile time: only the arrays used are loaded (PER x 1 or 2 16-byte registers sets);
 *   - the query lives in shared memory, split into q+ and q- for Quest, as [part][g][half][lane]
 *     float4s (lane-consecutive: conflict-free), read per unit instead of held in registers;
 *   - a CTA scores p.iters batches of ROWS x PER blocks of its (request, KV head) pair in turn
 *     (kvc_score_iters: about two waves of resident CTAs), software-pipelined: batch it + 1's
 *     metadata and batch it + 2's block-table entries are loaded before batch it's arithmetic,
 *     so a CTA keeps loads in flight for its whole life instead of one batch at its start.
 * Grid: (ceil(batches / iters), n_pairs); CTA (x, y) is pair y (request y / Hkv, head y % Hkv);
 * row group `row`, unit u of batch xi = x * iters + it scores block xi * ROWS * PER + u * ROWS +
 * row (kvc_score_map, hi = 0). __launch_bounds__(128, 3) caps registers at 168 (three CTAs per
 * SM): uncapped, ptxas took 201 for Quest at G 4; capped it spills 12 bytes (G 8: ~800).
 * Measured (docs/kernels.md): 12-15% faster than the v2 kernel at B 32, the same at B 8. */
template <typename T, int D, int GT, int NEED>
__global__ void __launch_bounds__(128, 3) kvc__score_loop_kernel(kvc__score_params p) {
  constexpr int VEC = 8, LANES = D / VEC, ROWS = 128 / LANES, PER = 4;
  constexpr int NQ = NEED == KVC_NEED_MINMAX ? 2 : 1; /* q+ and q-, or q */
  __shared__ float4 sq[NQ][GT][2][LANES];
  const int lane = threadIdx.x % LANES, row = threadIdx.x / LANES;
  const int pair = blockIdx.y, r = pair / p.Hkv, h = pair % p.Hkv;
  const int len = p.seq_len[r];
  const int nb = (int)kvc_n_blocks(len, p.bs);
  const int bpc = ROWS * PER;
  const int x0 = (int)blockIdx.x * p.iters;
  if (x0 * bpc >= nb) return; /* whole CTA */
  {
    const float *qg = p.q + ((size_t)r * p.Hq + h * p.G) * D;
    for (int i = threadIdx.x; i < GT * D; i += 128) {
      const int g = i / D, d = i % D;
      const float v = g < p.G ? qg[(size_t)g * D + d] : 0.0f;
      const int l = d / VEC, half = (d % VEC) / 4, e = d % 4;
      if (NQ == 2) {
        reinterpret_cast<float *>(&sq[0][g][half][l])[e] = fmaxf(v, 0.0f);
        reinterpret_cast<float *>(&sq[NQ - 1][g][half][l])[e] = fminf(v, 0.0f);
      } else {
        reinterpret_cast<float *>(&sq[0][g][half][l])[e] = v;
      }
    }
  }
  __syncthreads();
  /* PSA's log of a block's token count: every block but the last holds bs tokens */
  const bool psa = p.mode == KVC_SCORE_PSA;
  const double ln_full = psa ? log((double)p.bs) : 0.0;
  const double ln_last = psa ? log((double)kvc_block_tokens(len, p.bs, nb - 1)) : 0.0;
  const T *arr_a = (const T *)(NEED == KVC_NEED_MINMAX ? p.kmax : p.kmean);
  const T *arr_b = (const T *)p.kmin; /* Quest only */
  const int32_t *bt = p.block_table + (size_t)r * p.max_blocks;
  const uint4 z4 = make_uint4(0u, 0u, 0u, 0u);
  /* Software pipeline over the batches: while batch it is scored, batch it + 1's metadata and
   * batch it + 2's block-table entries are in flight (pages: the entries of the batch whose
   * metadata is loaded next). */
  auto bt_load = [&](int k, int *pages) { /* block-table entries of batch x0 + k */
#pragma unroll
    for (int u = 0; u < PER; u++) {
      const int b = (x0 + k) * bpc + u * ROWS + row;
      pages[u] = k < p.iters && b < nb ? __ldg(&bt[b]) : 0;
    }
  };
  auto meta_load = [&](int k, const int *pages, uint4 *a, uint4 *bb) { /* metadata of batch x0 + k */
#pragma unroll
    for (int u = 0; u < PER; u++) {
      const int b = (x0 + k) * bpc + u * ROWS + row;
      const bool live = k < p.iters && b < nb;
      const size_t off = ((size_t)pages[u] * p.Hkv + h) * D + lane * VEC;
      a[u] = live ? __ldg(reinterpret_cast<const uint4 *>(arr_a + off)) : z4;
      if (NQ == 2) bb[u] = live ? __ldg(reinterpret_cast<const uint4 *>(arr_b + off)) : z4;
    }
  };
  int page[PER];
  uint4 ra[PER], rb[PER];
  bt_load(0, page);
  meta_load(0, page, ra, rb);
  bt_load(1, page);
  for (int it = 0; it < p.iters; it++) {
    const int xi = x0 + it;
    if (xi * bpc >= nb) break; /* uniform over the CTA */
    uint4 na[PER], nb4[PER];
    meta_load(it + 1, page, na, nb4);
    bt_load(it + 2, page);
#pragma unroll
    for (int u = 0; u < PER; u++) {
      const int b = xi * bpc + u * ROWS + row;
      const bool live = b < nb; /* uniform within a row group; shuffles stay full-warp */
      float acc[GT];
      float fa[VEC], fb[VEC];
      kvc_unpack8<T>(ra[u], fa);
      if (NQ == 2) kvc_unpack8<T>(rb[u], fb);
#pragma unroll
      for (int g = 0; g < GT; g++) {
        /* compiler barrier meant to keep one head's query at a time in registers (re-read from
         * shared memory) rather than all GT heads' hoisted ahead; ptxas reported the same
         * register count with and without it (2026-12-03), and the measured v9 code has it */
        asm volatile("" ::: "memory");
        float a = 0.0f;
#pragma unroll
        for (int hf = 0; hf < 2; hf++) {
          /* the v2 kernel's order: per dimension, q+ . max then q- . min (bitwise the same) */
          const float4 qa4 = sq[0][g][hf][lane], qb4 = sq[NQ - 1][g][hf][lane];
          const float qa[4] = {qa4.x, qa4.y, qa4.z, qa4.w}, qb[4] = {qb4.x, qb4.y, qb4.z, qb4.w};
#pragma unroll
          for (int e = 0; e < 4; e++) {
            a = fmaf(qa[e], fa[4 * hf + e], a);
            if (NQ == 2) a = fmaf(qb[e], fb[4 * hf + e], a);
          }
        }
        acc[g] = a;
      }
      kvc__red<GT, LANES / 2>::run(acc, lane);
      const float zero[1] = {0.0f};
      const double ln = b == nb - 1 ? ln_last : ln_full;
      if (NQ == 2) kvc__score_store<GT, LANES>(p, lane, live, pair, b, nb, ln, acc, zero, zero);
      else kvc__score_store<GT, LANES>(p, lane, live, pair, b, nb, ln, zero, acc, zero);
    }
#pragma unroll
    for (int u = 0; u < PER; u++) {
      ra[u] = na[u];
      if (NQ == 2) rb[u] = nb4[u];
    }
  }
}

/* Per instantiation, once (as kvc__split_attr): how many CTAs of the loop kernel one
 * multiprocessor holds. */
template <typename T, int D, int GT, int NEED>
static int kvc__score_loop_per_sm(int *per_sm_out, kv_error *err) {
  static int per_sm = 0;
  if (per_sm == 0) {
    int n = 0;
    KVC_CHECK(err, cudaOccupancyMaxActiveBlocksPerMultiprocessor(
                       &n, kvc__score_loop_kernel<T, D, GT, NEED>, 128, 0));
    per_sm = n < 1 ? 1 : n;
  }
  *per_sm_out = per_sm;
  return 0;
}

/* v9 launch: batches per CTA from the occupancy of this instantiation. Where that gives one batch
 * (about one wave of CTAs: B 1 at L 32K) the v2 kernel runs instead: the first v9 run
 * (2026-12-03 17:10 UTC) measured the loop kernel 2-3 us slower there (its query staging and
 * barrier), and 12-15% faster at B 32. */
template <typename T, int D, int GT, int NEED>
static int kvc__launch_score_loop(kvc_ctx *c, kvc__score_params p, int n_pairs, kv_error *err) {
  constexpr int ROWS = 128 / (D / 8);
  int occ = 0;
  KVC_TRY((kvc__score_loop_per_sm<T, D, GT, NEED>(&occ, err)));
  const int bpc = kvc_score_blocks_per_cta(0, ROWS, 4, p.Hkv);
  const int batches = (p.max_blocks + bpc - 1) / bpc; /* per pair */
  p.iters = kvc_score_iters(batches, n_pairs, c->prop.multiProcessorCount * occ);
  if (c->tune[KVC_TUNE_SCORE_LOOP] == 2) p.iters = batches < 3 ? batches : 3; /* tests: forced */
  else if (p.iters < 2) { /* a grid of about one wave: the v2 kernel (measured 2-3 us faster at B 1) */
    p.iters = 1;
    kvc__score_kernel<T, D, GT><<<dim3(batches, n_pairs), 128, 0, c->stream>>>(p);
    KVC_CHECK(err, cudaGetLastError());
    return 0;
  }
  const dim3 grid((batches + p.iters - 1) / p.iters, n_pairs);
  kvc__score_loop_kernel<T, D, GT, NEED><<<grid, 128, 0, c->stream>>>(p);
  KVC_CHECK(err, cudaGetLastError());
  return 0;
}

template <typename T, int D, int GT>
static int kvc__launch_score(kvc_ctx *c, const kvc__score_params &p, int n_pairs, kv_error *err) {
  constexpr int ROWS = 128 / (D / 8);
  const int hi = kvc_score_heads_ok(c->tune[KVC_TUNE_SCORE_HEADS], ROWS, p.Hkv); /* v8 */
  if (!hi && c->tune[KVC_TUNE_SCORE_LOOP] >= 1) { /* v9, for the two common metadata sets */
    const bool psa = p.mode == KVC_SCORE_PSA;
    if (p.rank == ATTN_RANK_QUEST && (!psa || p.estimate == ATTN_EST_BOUND)) {
      return kvc__launch_score_loop<T, D, GT, KVC_NEED_MINMAX>(c, p, n_pairs, err);
    }
    if (p.rank == ATTN_RANK_MEAN && (!psa || p.estimate == ATTN_EST_MEAN)) {
      return kvc__launch_score_loop<T, D, GT, KVC_NEED_MEAN>(c, p, n_pairs, err);
    }
  }
  const int bpc = kvc_score_blocks_per_cta(hi, ROWS, 4, p.Hkv); /* PER = 4 units per row group */
  const dim3 grid((p.max_blocks + bpc - 1) / bpc, hi ? n_pairs / p.Hkv : n_pairs);
  if (hi) kvc__score_kernel<T, D, GT, true><<<grid, 128, 0, c->stream>>>(p);
  else kvc__score_kernel<T, D, GT><<<grid, 128, 0, c->stream>>>(p);
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
  p.iters = 1;
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
  __shared__ int s_kk, s_cnt;
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
              s_cnt = c[j];
            }
            above += c[j];
          }
        }
      }
      __syncthreads();
      prefix = s_prefix;
      kk = s_kk;
      mask |= (uint64_t)255u << shift;
      const bool whole = s_kk == s_cnt; /* every key of the bin is selected: no tie to break */
      __syncthreads(); /* s_prefix / hist are rewritten next pass */
      if (whole) break; /* the threshold is this prefix: compare keys masked to it (below) */
    }
  }
  /* Selection in ascending block order: chunks of consecutive blocks per thread, two scans (ties
   * at the threshold: the first kk by block index; keys above it: all). */
  const int ch = (nb + KVC_SEL_THREADS - 1) / KVC_SEL_THREADS;
  const int c0 = min(nb, tid * ch), c1 = min(nb, c0 + ch);
  int n_eq = 0;
  if (k < nb) {
    for (int b = c0; b < c1; b++) n_eq += ((cached ? skeys[b] : kvc__key_bits(key[b])) & mask) == prefix;
  }
  int eq_before;
  Scan(scan_tmp).ExclusiveSum(n_eq, eq_before);
  __syncthreads();
  int n_sel = 0;
  if (k < nb) {
    int e = eq_before;
    for (int b = c0; b < c1; b++) {
      const uint64_t u = (cached ? skeys[b] : kvc__key_bits(key[b])) & mask;
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
        const uint64_t u = (cached ? skeys[b] : kvc__key_bits(key[b])) & mask;
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
  KVC_TRY(kvc__split_prepare(c, s, kv->dtype, b, pb, 0, &plan, &split_bytes, err));
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

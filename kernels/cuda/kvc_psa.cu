/* kvc_psa.cu — Progressive Sparse Attention on the GPU: ranking, visit order, speculative
 * attention in rounds with the exact stop test on the device, and a host-synchronised variant.
 *
 * Same semantics as kernels/attn_sparse.c (the oracle): per (request, KV head) pair, blocks are
 * visited in a fixed order (forced sink/recent blocks ascending as iteration 0, then the rest by
 * the group's summed estimated probability, descending, ties to the lower block), group_blocks
 * blocks per iteration; after each iteration every head of the group tests
 *   P_acc = S / (S + U) >= epsilon,  S = exact visited mass, U = estimated unvisited mass
 * (a suffix sum over the fixed order, computed once in double); the pair stops when all heads
 * pass, when every block is visited, or at the token cap. The output merges iterations 0..stop.
 *
 * v3 (this file). v2 (git history) ran a persistent loop over (pair, iteration) items with a
 * per-pair commit lock and a ring of W partials: correct, but each pair advanced by at most its
 * lookahead per commit round trip (lock, fold, rescale of the accumulator through L2, queue
 * append), so the step was latency-bound: 1.7 ms at B8 L32K eps 0.95 for 0.44 GB (issue 12's run,
 * kernels/bench/NOTES.md). v3 makes the step a bandwidth-bound gather with the stop decided after
 * the fact:
 *   1. scores (kvc_topk.cu): per block and head, rank logit and log-mass estimate;
 *   2. kvc__psa_rank_kernel, one CTA per pair: group keys, the visit order (block radix sort in
 *      the CTA for <= KVC_PSA_SORT_MAX blocks, else CUB's segmented sort between two launches),
 *      per iteration end the log of the estimated unvisited mass (suffix sums in double), and the
 *      speculation: the first iteration where the ESTIMATED accumulated mass (estimator for the
 *      visited blocks too) reaches epsilon for every head, times spec_scale, plus spec_iters.
 *      The pair's first round (iterations [0, E0)) is cut into work items of `window` iterations
 *      and appended to the round's list;
 *   3. rounds: kvc__psa_attend_kernel, a grid of the CTAs the GPU holds, whose WARPS take items
 *      from the round's list (one atomic per item, no waiting anywhere). A warp streams its item's
 *      blocks (cp.async ring, kvc_attend.cuh's step) and after each iteration writes the state of
 *      its item so far (max, sum, unnormalised output: "snapshot"). The warp that finishes the
 *      last item of a pair in the round runs the pair's stop test over the round's iterations
 *      (exact: the prefix state at iteration i is the merge of the earlier items' final snapshots
 *      and i's own snapshot; lanes = items for the scan, then lanes = iterations for the test).
 *      A pair that has not stopped appends its next iterations to the next round's list
 *      (grow_pct more; the last round everything left, which always stops);
 *   4. kvc__psa_combine_kernel: per (pair, head) the merge of the snapshots that make up
 *      iterations 0..stop (each earlier item's last one, the stopping iteration's own).
 * Speculation past the stop is fetched and then discarded: kvc_sparse_out.blocks_fetched counts
 * it. HOSTSYNC runs the same kernels with one iteration per round and items of one iteration, the
 * host reading the number of pairs still running after every round.
 * Memory ordering: no CTA waits on another. A warp's snapshot stores are made visible by
 * __threadfence() before the atomic that counts the item done; the warp that sees the pair's last
 * count fences again before reading them (L2 loads). Lists and counters of a round are written
 * by earlier launches.
 */
#include <cub/block/block_radix_sort.cuh>
#include <cub/block/block_scan.cuh>
#include <math_constants.h>

#include "kvc_attend.cuh"
#include "kvc_attend_mma.cuh"
#include "kvc_topk.cuh"

enum { KVC_INFO_NB = 0, KVC_INFO_NFORCED, KVC_INFO_NITERS, KVC_INFO_POSLAST, KVC_INFO_N = 4 };
#define KVC_RANK_THREADS 512
#define KVC_PSA_SORT_MAX 4096 /* KVC_RANK_THREADS x 8 */
#define KVC_SCAN_ITEMS 4
#define KVC_MAX_ROUNDS 16
#define KVC_WARPS (KVC_THREADS / 32)

extern "C" void kvc_psa_opts_defaults(kvc_psa_opts *o) {
  o->mode = KVC_PSA_PIPELINED;
  o->ctas_per_pair = 0;
  o->window = 4; /* 4-7% faster than 2 on tensor-core items (kernels/bench/NOTES.md, v11 item 4) */
  o->spec_iters = 2;
  o->spec_scale = 1.0f;
  o->rounds = 4;
  o->grow_pct = 50;
}

/* A work item: pair, iterations [i0, i1) (i1 < 65536). */
__device__ __forceinline__ uint2 kvc__item(int pair, int i0, int i1) {
  return make_uint2((unsigned)pair, (unsigned)i0 | ((unsigned)i1 << 16));
}

/* Everything the kernels of one call share (device pointers into one scratch arena). */
struct kvc__psa_params {
  /* inputs */
  const void *k, *v;
  const int32_t *block_table, *seq_len;
  const float *q;
  const float *logit, *est; /* [pair, G, mb] from the score kernel */
  int Hkv, Hq, G, D, bs, mb, sink, recent, gb, pairs, max_iters;
  double eps;
  long long max_tokens;
  float scale_log2;
  /* speculation */
  int hostsync, kw, spec_iters, rounds, grow_pct;
  float spec_scale;
  /* per pair */
  double *key;         /* [pair, mb] (segmented-sort path only) */
  int32_t *order;      /* [pair, mb] */
  int32_t *info;       /* [pair, KVC_INFO_N] */
  double *lsuf;        /* [pair, G, max_iters] log(U after iteration i) incl. frame; -inf: U = 0 */
  double *carry;       /* [pair, G, 2] natural-log max and sum of the iterations tested so far */
  int32_t *checked;    /* [pair] first iteration not yet tested */
  int32_t *rend;       /* [2, pair] end of the pair's range in round r (by parity) */
  int32_t *nitems;     /* [2, pair] items of the pair in round r */
  int32_t *ndone;      /* [2, pair] items finished */
  int32_t *stop;       /* [pair] stopping iteration, -1 while running */
  double *fin_m;       /* [pair, G] natural-log max of the final state */
  int32_t *fetched;    /* [pair] blocks loaded */
  /* per round */
  int32_t *cnt;        /* [KVC rounds cap] items in round r's list */
  int32_t *taken;      /* [rounds cap] items handed out */
  uint2 *items;        /* [2, pairs * max_iters] lists (by parity) */
  /* snapshots */
  float *snap_o;       /* [pair, max_iters, G, D] unnormalised, relative to 2^M */
  float2 *snap_ml;     /* [pair, max_iters, G] (M log2 units, L) */
  uint8_t *item_end;   /* [pair, max_iters] 1 where the iteration is the last of its item */
  /* outputs */
  float *out;
  int32_t *blocks_read, *iterations;
  float *est_mass;
};

/* ---- 2. keys, order, suffix sums, speculation ---------------------------------------------- */
template <int ITEMS>
struct kvc__rank_smem {
  typedef cub::BlockRadixSort<uint64_t, KVC_RANK_THREADS, ITEMS, int32_t> Sort;
  typedef cub::BlockScan<double, KVC_RANK_THREADS> Scan;
  union {
    typename Sort::TempStorage sort;
    typename Scan::TempStorage scan;
  } u;
  double red[KVC_RANK_THREADS / 32][8];
  double hmax[8], hsum[8];
  int poslast, efail, ecap;
};

/* Max (is_max) or sum over the CTA of v[g], g < G; the result in out[g] (shared) after the call. */
__device__ __forceinline__ void kvc__rank_reduce8(double (&v)[8], int G, bool is_max,
                                                  double (&red)[KVC_RANK_THREADS / 32][8],
                                                  double *out) {
  const int w = threadIdx.x / 32, ln = threadIdx.x % 32;
#pragma unroll
  for (int g = 0; g < 8; g++) {
    if (g >= G) break;
    double x = v[g];
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
      const double y = __shfl_xor_sync(0xffffffffu, x, o);
      x = is_max ? fmax(x, y) : x + y;
    }
    if (ln == 0) red[w][g] = x;
  }
  __syncthreads();
  if (threadIdx.x < G) {
    double x = red[0][threadIdx.x];
    for (int i = 1; i < KVC_RANK_THREADS / 32; i++) {
      x = is_max ? fmax(x, red[i][threadIdx.x]) : x + red[i][threadIdx.x];
    }
    out[threadIdx.x] = x;
  }
  __syncthreads();
}

__device__ __forceinline__ uint64_t kvc__psa_key_bits(double k) {
  const uint64_t u = (uint64_t)__double_as_longlong(k);
  return (u >> 63) ? ~u : (u | 0x8000000000000000ull);
}

/* The iteration whose end is visit position p (0 < p < nb), or -1. */
__device__ __forceinline__ int kvc__iter_of_end(int p, int nforced, int gb) {
  if (nforced > 0) {
    if (p < nforced) return -1;
    return (p - nforced) % gb == 0 ? (p - nforced) / gb : -1;
  }
  return p % gb == 0 ? p / gb - 1 : -1;
}

/* Per-head frame (max of est) and reductions for the keys (max, sum of exp of the logits). */
template <int ITEMS>
__device__ void kvc__rank_keys(const kvc__psa_params &p, int pair, int nb,
                               kvc__rank_smem<ITEMS> &sm, double (&key)[ITEMS]) {
  double v[8];
  /* max logit per head */
#pragma unroll
  for (int g = 0; g < 8; g++) v[g] = -CUDART_INF;
  for (int g = 0; g < p.G; g++) {
    const float *lg = p.logit + ((size_t)pair * p.G + g) * p.mb;
    double mx = -CUDART_INF;
    for (int b = threadIdx.x; b < nb; b += KVC_RANK_THREADS) mx = fmax(mx, (double)lg[b]);
#pragma unroll
    for (int gg = 0; gg < 8; gg++) {
      if (gg == g) v[gg] = mx;
    }
  }
  kvc__rank_reduce8(v, p.G, true, sm.red, sm.hmax);
#pragma unroll
  for (int g = 0; g < 8; g++) v[g] = 0.0;
  for (int g = 0; g < p.G; g++) {
    const float *lg = p.logit + ((size_t)pair * p.G + g) * p.mb;
    const double mx = sm.hmax[g];
    double z = 0.0;
    for (int b = threadIdx.x; b < nb; b += KVC_RANK_THREADS) z += exp((double)lg[b] - mx);
#pragma unroll
    for (int gg = 0; gg < 8; gg++) {
      if (gg == g) v[gg] = z;
    }
  }
  kvc__rank_reduce8(v, p.G, false, sm.red, sm.hsum);
  /* key of block b = sum over heads of exp(logit - max) / z (attn__group_key), forced: +inf;
   * blocked arrangement: thread t holds blocks t * ITEMS + j */
#pragma unroll
  for (int j = 0; j < ITEMS; j++) {
    const int b = threadIdx.x * ITEMS + j;
    double k = 0.0;
    if (b < nb) {
      for (int g = 0; g < p.G; g++) {
        const float *lg = p.logit + ((size_t)pair * p.G + g) * p.mb;
        k += exp((double)lg[b] - sm.hmax[g]) / sm.hsum[g];
      }
      if (kvc_is_forced(b, nb, p.sink, p.recent)) k = CUDART_INF;
    }
    key[j] = k;
  }
}

/* After the order of the pair is in p.order (and visible to the CTA): last block's position,
 * suffix sums of the estimates per head at every iteration end (log form), the speculation and
 * the pair's loop state, the first round's items. */
template <int ITEMS>
__device__ void kvc__rank_prep(const kvc__psa_params &p, int pair, int nb,
                               kvc__rank_smem<ITEMS> &sm) {
  typedef typename kvc__rank_smem<ITEMS>::Scan Scan;
  const int32_t *ord = p.order + (size_t)pair * p.mb;
  const int nforced = (int)kvc_n_forced(nb, p.sink, p.recent);
  const int niters = (int)kvc_psa_n_iters(nforced, p.gb, nb);
  if (threadIdx.x == 0) {
    sm.poslast = nb;
    sm.efail = 0;
    sm.ecap = niters - 1;
  }
  /* frames: max of the estimate per head */
  double v[8];
#pragma unroll
  for (int g = 0; g < 8; g++) v[g] = -CUDART_INF;
  for (int g = 0; g < p.G; g++) {
    const float *es = p.est + ((size_t)pair * p.G + g) * p.mb;
    double mx = -CUDART_INF;
    for (int b = threadIdx.x; b < nb; b += KVC_RANK_THREADS) mx = fmax(mx, (double)es[b]);
#pragma unroll
    for (int gg = 0; gg < 8; gg++) {
      if (gg == g) v[gg] = mx;
    }
  }
  kvc__rank_reduce8(v, p.G, true, sm.red, sm.hmax); /* also orders the poslast init */
  for (int i = threadIdx.x; i < nb; i += KVC_RANK_THREADS) {
    if (ord[i] == nb - 1) sm.poslast = i;
  }
  /* Reverse inclusive scans: reversed index r = nb - 1 - position; chunks of
   * KVC_RANK_THREADS x KVC_SCAN_ITEMS. Raw suffix sums go to lsuf first. */
  constexpr int CH = KVC_RANK_THREADS * KVC_SCAN_ITEMS;
  for (int g = 0; g < p.G; g++) {
    const float *es = p.est + ((size_t)pair * p.G + g) * p.mb;
    double *ls = p.lsuf + ((size_t)pair * p.G + g) * p.max_iters;
    const double frame = sm.hmax[g];
    double carry = 0.0;
    for (int r0 = 0; r0 < nb; r0 += CH) {
      double e[KVC_SCAN_ITEMS], incl[KVC_SCAN_ITEMS];
#pragma unroll
      for (int j = 0; j < KVC_SCAN_ITEMS; j++) {
        const int r = r0 + threadIdx.x * KVC_SCAN_ITEMS + j;
        e[j] = r < nb ? exp((double)es[ord[nb - 1 - r]] - frame) : 0.0;
      }
      double total;
      Scan(sm.u.scan).InclusiveSum(e, incl, total);
#pragma unroll
      for (int j = 0; j < KVC_SCAN_ITEMS; j++) {
        const int r = r0 + threadIdx.x * KVC_SCAN_ITEMS + j;
        const int pos = nb - 1 - r;
        if (r < nb && pos > 0) {
          const int it = kvc__iter_of_end(pos, nforced, p.gb);
          if (it >= 0) ls[it] = carry + incl[j];
        }
      }
      carry += total;
      __syncthreads(); /* scan storage reuse; ls visible */
    }
    if (threadIdx.x == 0) {
      ls[niters - 1] = 0.0; /* after the last iteration nothing is left */
      sm.hsum[g] = carry;   /* total estimated mass (frame units) */
    }
    __syncthreads();
  }
  /* Log form and the estimated stop: first iteration where, for every head, the estimate of the
   * unvisited mass is <= (1 - eps) of the estimated total. */
  for (int g = 0; g < p.G; g++) {
    double *ls = p.lsuf + ((size_t)pair * p.G + g) * p.max_iters;
    const double tot = sm.hsum[g], frame = sm.hmax[g];
    for (int it = threadIdx.x; it < niters; it += KVC_RANK_THREADS) {
      const double u = ls[it];
      if (u > (1.0 - p.eps) * tot) atomicMax(&sm.efail, it + 1);
      ls[it] = u > 0.0 ? log(u) + frame : -CUDART_INF;
    }
  }
  if (p.max_tokens > 0) {
    for (int it = threadIdx.x; it < niters; it += KVC_RANK_THREADS) {
      const int64_t end = kvc_psa_iter_end(it, nforced, p.gb, nb);
      if (end * p.bs >= p.max_tokens) atomicMin(&sm.ecap, it);
    }
  }
  __syncthreads();
  /* First round: iterations [0, e0). */
  int e0;
  if (p.hostsync) {
    e0 = 1;
  } else if (p.rounds <= 1) {
    e0 = niters;
  } else {
    const int est_iters = min(sm.efail, sm.ecap) + 1; /* iterations up to the estimated stop */
    e0 = (int)ceilf((float)est_iters * p.spec_scale) + p.spec_iters;
    e0 = max(1, min(niters, e0));
  }
  const int n = (e0 + p.kw - 1) / p.kw;
  __shared__ int base;
  if (threadIdx.x == 0) {
    int32_t *inf = p.info + (size_t)pair * KVC_INFO_N;
    inf[KVC_INFO_NB] = nb;
    inf[KVC_INFO_NFORCED] = nforced;
    inf[KVC_INFO_NITERS] = niters;
    inf[KVC_INFO_POSLAST] = sm.poslast;
    p.checked[pair] = 0;
    p.rend[pair] = e0;
    p.nitems[pair] = n;
    p.ndone[pair] = 0;
    p.stop[pair] = -1;
    p.fetched[pair] = 0;
    base = atomicAdd(&p.cnt[0], n);
  }
  if (threadIdx.x < p.G) {
    p.carry[((size_t)pair * p.G + threadIdx.x) * 2] = -CUDART_INF;
    p.carry[((size_t)pair * p.G + threadIdx.x) * 2 + 1] = 0.0;
  }
  __syncthreads();
  for (int k = threadIdx.x; k < n; k += KVC_RANK_THREADS) {
    p.items[base + k] = kvc__item(pair, k * p.kw, min(e0, (k + 1) * p.kw));
  }
}

/* Fused: keys, order (block sort), prep. One CTA per pair, nb <= KVC_RANK_THREADS x ITEMS.
 * MINB: resident CTAs per SM the register allocation must allow (KVC_TUNE_PSA_RANK_CTAS). */
template <int ITEMS, int MINB>
__global__ void __launch_bounds__(KVC_RANK_THREADS, MINB) kvc__psa_rank_kernel(kvc__psa_params p) {
  typedef typename kvc__rank_smem<ITEMS>::Sort Sort;
  __shared__ kvc__rank_smem<ITEMS> sm;
  const int pair = blockIdx.x;
  const int nb = (int)kvc_n_blocks(p.seq_len[pair / p.Hkv], p.bs);
  double key[ITEMS];
  kvc__rank_keys<ITEMS>(p, pair, nb, sm, key);
  uint64_t k[ITEMS];
  int32_t v[ITEMS];
#pragma unroll
  for (int j = 0; j < ITEMS; j++) {
    const int b = threadIdx.x * ITEMS + j;
    k[j] = b < nb ? ~kvc__psa_key_bits(key[j]) : ~0ull; /* ascending = keys descending */
    v[j] = b;
  }
  Sort(sm.u.sort).Sort(k, v); /* stable: equal keys keep block order (ties to the lower block) */
#pragma unroll
  for (int j = 0; j < ITEMS; j++) {
    const int i = threadIdx.x * ITEMS + j;
    if (i < nb) p.order[(size_t)pair * p.mb + i] = v[j];
  }
  __syncthreads();
  kvc__rank_prep<ITEMS>(p, pair, nb, sm);
}

/* Long contexts: keys to global memory, CUB's segmented sort, then prep. */
__global__ void __launch_bounds__(KVC_RANK_THREADS) kvc__psa_keys_kernel(kvc__psa_params p) {
  __shared__ kvc__rank_smem<1> sm;
  const int pair = blockIdx.x;
  const int nb = (int)kvc_n_blocks(p.seq_len[pair / p.Hkv], p.bs);
  /* reductions over all blocks, then keys block by block */
  double v[8];
#pragma unroll
  for (int g = 0; g < 8; g++) v[g] = -CUDART_INF;
  for (int g = 0; g < p.G; g++) {
    const float *lg = p.logit + ((size_t)pair * p.G + g) * p.mb;
    double mx = -CUDART_INF;
    for (int b = threadIdx.x; b < nb; b += KVC_RANK_THREADS) mx = fmax(mx, (double)lg[b]);
#pragma unroll
    for (int gg = 0; gg < 8; gg++) {
      if (gg == g) v[gg] = mx;
    }
  }
  kvc__rank_reduce8(v, p.G, true, sm.red, sm.hmax);
#pragma unroll
  for (int g = 0; g < 8; g++) v[g] = 0.0;
  for (int g = 0; g < p.G; g++) {
    const float *lg = p.logit + ((size_t)pair * p.G + g) * p.mb;
    double z = 0.0;
    for (int b = threadIdx.x; b < nb; b += KVC_RANK_THREADS) z += exp((double)lg[b] - sm.hmax[g]);
#pragma unroll
    for (int gg = 0; gg < 8; gg++) {
      if (gg == g) v[gg] = z;
    }
  }
  kvc__rank_reduce8(v, p.G, false, sm.red, sm.hsum);
  for (int b = threadIdx.x; b < nb; b += KVC_RANK_THREADS) {
    double k = 0.0;
    for (int g = 0; g < p.G; g++) {
      k += exp((double)p.logit[((size_t)pair * p.G + g) * p.mb + b] - sm.hmax[g]) / sm.hsum[g];
    }
    if (kvc_is_forced(b, nb, p.sink, p.recent)) k = CUDART_INF;
    p.key[(size_t)pair * p.mb + b] = k;
  }
}
__global__ void __launch_bounds__(KVC_RANK_THREADS) kvc__psa_prep_kernel(kvc__psa_params p) {
  __shared__ kvc__rank_smem<1> sm;
  const int pair = blockIdx.x;
  kvc__rank_prep<1>(p, pair, (int)kvc_n_blocks(p.seq_len[pair / p.Hkv], p.bs), sm);
}

/* The fused rank kernel for contexts of up to KVC_PSA_SORT_MAX blocks: items per thread from the
 * longest context, register budget from KVC_TUNE_PSA_RANK_CTAS (0: two CTAs per SM only when
 * the pairs outnumber the SMs, where one CTA per SM would take a second wave). */
template <int MINB>
static void kvc__psa_rank_go(cudaStream_t st, int max_nb, int pairs, const kvc__psa_params &p) {
  if (max_nb <= 512) {
    kvc__psa_rank_kernel<1, MINB><<<pairs, KVC_RANK_THREADS, 0, st>>>(p);
  } else if (max_nb <= 1024) {
    kvc__psa_rank_kernel<2, MINB><<<pairs, KVC_RANK_THREADS, 0, st>>>(p);
  } else if (max_nb <= 2048) {
    kvc__psa_rank_kernel<4, MINB><<<pairs, KVC_RANK_THREADS, 0, st>>>(p);
  } else {
    kvc__psa_rank_kernel<8, MINB><<<pairs, KVC_RANK_THREADS, 0, st>>>(p);
  }
}
static void kvc__psa_rank_launch(kvc_ctx *c, int max_nb, int pairs, const kvc__psa_params &p) {
  const int want = c->tune[KVC_TUNE_PSA_RANK_CTAS];
  if (want == 2 || (want == 0 && pairs > c->prop.multiProcessorCount)) {
    kvc__psa_rank_go<2>(c->stream, max_nb, pairs, p);
  } else {
    kvc__psa_rank_go<1>(c->stream, max_nb, pairs, p);
  }
}

/* ---- 3. the rounds ------------------------------------------------------------------------- */
/* An item's block list, by the calling warp: the blocks of iterations [i0, i1) of a pair in
 * visit order, as physical page and valid tokens each (page, ntok: the warp's lists); *b0 the
 * first block's position in the order, *nb and *nforced the pair's block and forced counts (for
 * the iteration ends). Returns the number of blocks. The caller __syncwarp()s before use. */
__device__ __forceinline__ int kvc__psa_item_blocks(const kvc__psa_params &p, int pair, int i0,
                                                    int i1, int32_t *page, int32_t *ntok,
                                                    int *b0, int *nb, int *nforced) {
  const int wl = threadIdx.x % 32, r = pair / p.Hkv;
  const int32_t *inf = p.info + (size_t)pair * KVC_INFO_N;
  *nb = inf[KVC_INFO_NB], *nforced = inf[KVC_INFO_NFORCED];
  *b0 = (int)kvc_psa_iter_begin(i0, *nforced, p.gb, *nb);
  const int b1 = (int)kvc_psa_iter_end(i1 - 1, *nforced, p.gb, *nb);
  const int nblk = b1 - *b0, len = p.seq_len[r];
  for (int i = wl; i < nblk; i += 32) {
    const int lb = p.order[(size_t)pair * p.mb + *b0 + i];
    page[i] = p.block_table[(size_t)r * p.mb + lb];
    ntok[i] = kvc_block_tokens(len, p.bs, lb);
  }
  return nblk;
}

template <typename T, int D, int GT>
struct kvc__psa_warp {
  using A = kvc_attend<T, D, GT>;
  static constexpr size_t DYN = A::RING_BYTES; /* dynamic shared memory of the attend kernel */
  static constexpr int VEC = A::VEC, LANES = A::LANES, NT = A::NT, VALS = A::VALS;
  static constexpr int RGW = 32 / LANES;  /* row groups per warp */
  static constexpr int WSTEP = RGW * NT;  /* tokens per warp step; divides 16 */
  static_assert(16 % WSTEP == 0, "an iteration (a multiple of 16 tokens) is whole warp steps");

  struct smem_t {
    int32_t page[KVC_WARPS][KVC_MAX_SPLIT_BLOCKS];
    int32_t ntok[KVC_WARPS][KVC_MAX_SPLIT_BLOCKS];
    float sc[A::NRG][VALS];
  };

  /* cp.async of warp step st (this thread's NT tokens of K and V) into its private ring slots. */
  static __device__ __forceinline__ void issue(const int32_t *page, uint4 *ring,
                                               const T *__restrict__ kpool,
                                               const T *__restrict__ vpool, int Hkv, int bs,
                                               int kvh, int ntoks, int st) {
    const int lane = threadIdx.x % LANES, rgw = (threadIdx.x % 32) / LANES;
    const int stage = st % KVC_STAGES;
    const int tau0 = (st * RGW + rgw) * NT;
    const int i = tau0 / bs, tok0 = tau0 - i * bs;
    const bool in = tau0 < ntoks;
    const size_t base = in ? (((size_t)page[i] * Hkv + kvh) * bs + tok0) * D + lane * VEC : 0;
#pragma unroll
    for (int j = 0; j < NT; j++) {
      uint4 *dk = ring + ((size_t)(stage * NT + j) * 2 + 0) * KVC_THREADS + threadIdx.x;
      uint4 *dv = ring + ((size_t)(stage * NT + j) * 2 + 1) * KVC_THREADS + threadIdx.x;
      kvc_cp_async16(dk, kpool + base + (size_t)j * D, in ? 16 : 0);
      kvc_cp_async16(dv, vpool + base + (size_t)j * D, in ? 16 : 0);
    }
  }

  /* Writes the warp's merged state (its row groups' states merged) as iteration it's snapshot. */
  static __device__ __forceinline__ void snapshot(const kvc__psa_params &p, int pair, int it,
                                                  bool last, const float (&m)[GT],
                                                  const float (&l)[GT],
                                                  const float (&o)[GT][VEC]) {
    const int lane = threadIdx.x % LANES, rgw = (threadIdx.x % 32) / LANES;
    const size_t sbase = (size_t)pair * p.max_iters + it;
#pragma unroll
    for (int g = 0; g < GT; g++) {
      float M = m[g];
#pragma unroll
      for (int off = LANES; off < 32; off <<= 1) M = fmaxf(M, __shfl_xor_sync(0xffffffffu, M, off));
      const float a = m[g] == -CUDART_INF_F ? 0.0f : exp2f(m[g] - M);
      float L = l[g] * a, ov[VEC];
#pragma unroll
      for (int e = 0; e < VEC; e++) ov[e] = o[g][e] * a;
#pragma unroll
      for (int off = LANES; off < 32; off <<= 1) {
        L += __shfl_xor_sync(0xffffffffu, L, off);
#pragma unroll
        for (int e = 0; e < VEC; e++) ov[e] += __shfl_xor_sync(0xffffffffu, ov[e], off);
      }
      if (g < p.G && g % RGW == rgw) {
        float4 *dst = reinterpret_cast<float4 *>(p.snap_o + (sbase * p.G + g) * D + lane * VEC);
        __stcg(dst, make_float4(ov[0], ov[1], ov[2], ov[3]));
        __stcg(dst + 1, make_float4(ov[4], ov[5], ov[6], ov[7]));
        if (lane == 0) __stcg(&p.snap_ml[sbase * p.G + g], make_float2(M, L));
      }
    }
    if ((threadIdx.x % 32) == 0) p.item_end[sbase] = last ? 1 : 0;
  }

  /* One item: iterations [i0, i1) of a pair, by the calling warp. */
  static __device__ void item(const kvc__psa_params &p, smem_t &sm, unsigned char *dyn, int pair,
                              int i0, int i1) {
    uint4 *ring = reinterpret_cast<uint4 *>(dyn);
    const int w = threadIdx.x / 32, wl = threadIdx.x % 32;
    const int lane = threadIdx.x % LANES, rg = threadIdx.x / LANES;
    const int r = pair / p.Hkv, h = pair - r * p.Hkv;
    int b0, nb, nforced;
    const int nblk =
        kvc__psa_item_blocks(p, pair, i0, i1, sm.page[w], sm.ntok[w], &b0, &nb, &nforced);
    float q[GT][VEC];
    A::load_q(p.q + ((size_t)r * p.Hq + h * p.G) * D, p.G, p.scale_log2, q);
    __syncwarp();
    const T *kp = (const T *)p.k, *vp = (const T *)p.v;
    const int ntoks = nblk * p.bs, nsteps = ntoks / WSTEP;
    float m[GT], l[GT], o[GT][VEC];
#pragma unroll
    for (int g = 0; g < GT; g++) {
      m[g] = -CUDART_INF_F;
      l[g] = 0.0f;
#pragma unroll
      for (int e = 0; e < VEC; e++) o[g][e] = 0.0f;
    }
#pragma unroll
    for (int s = 0; s < KVC_STAGES - 1; s++) {
      if (s < nsteps) issue(sm.page[w], ring, kp, vp, p.Hkv, p.bs, h, ntoks, s);
      kvc_cp_async_commit();
    }
    int cur = i0;
    int cur_end = ((int)kvc_psa_iter_end(cur, nforced, p.gb, nb) - b0) * p.bs / WSTEP;
    for (int st = 0; st < nsteps; st++) {
      kvc_cp_async_wait<KVC_STAGES - 2>();
      const int stage = st % KVC_STAGES;
      uint4 kk[NT], vv[NT];
#pragma unroll
      for (int j = 0; j < NT; j++) {
        kk[j] = ring[((size_t)(stage * NT + j) * 2 + 0) * KVC_THREADS + threadIdx.x];
        vv[j] = ring[((size_t)(stage * NT + j) * 2 + 1) * KVC_THREADS + threadIdx.x];
      }
      if (st + KVC_STAGES - 1 < nsteps) {
        issue(sm.page[w], ring, kp, vp, p.Hkv, p.bs, h, ntoks, st + KVC_STAGES - 1);
      }
      kvc_cp_async_commit();
      const int tau0 = (st * RGW + (wl / LANES)) * NT;
      const int bi = tau0 / p.bs, tok0 = tau0 - bi * p.bs;
      A::step(kk, vv, sm.ntok[w][bi] - tok0, sm.sc[rg], q, m, l, o, lane);
      if (st + 1 == cur_end) { /* iteration cur is complete */
        snapshot(p, pair, cur, cur == i1 - 1, m, l, o);
        cur++;
        if (cur < i1) cur_end = ((int)kvc_psa_iter_end(cur, nforced, p.gb, nb) - b0) * p.bs / WSTEP;
      }
    }
    kvc_cp_async_wait<0>();
    __syncwarp(); /* the page list and ring slots are rewritten by the next item */
    if (wl == 0) atomicAdd(&p.fetched[pair], nblk);
  }
};

/* v11: a PSA item on the tensor-core core (KVC_TUNE_PSA_CORE = 1; groups of at most 4 heads,
 * block size a multiple of 16). The same item contract as kvc__psa_warp: the calling warp streams
 * the blocks of iterations [i0, i1) of a pair in visit order, 16 tokens per step through its own
 * KVC_PSA_MMA_STAGES-deep cp.async ring of swizzled K and V tiles (kvc_attend_mma's tile layout),
 * computes each step with kvc_attend_mma::chunk (mma.sync, Q and P split into three 16-bit parts:
 * fp32-level accuracy) and writes the state after each iteration as its snapshot. Why: the
 * CUDA-core step read K + V at 2.2-2.9 TB/s with every block fetched in one round, 1.5-1.9x the
 * dense kernel's time per byte (kernels/bench/NOTES.md). Ring: STAGES x 4 warps x 2 tiles x 16
 * tokens x D x 2 bytes (96 KB at D 128, 3 stages: 2 CTAs per SM). */
#define KVC_PSA_MMA_STAGES 3
template <typename T, int D>
struct kvc__psa_warp_mma {
  using M = kvc_attend_mma<T, D, 4, KVC_PSA_MMA_STAGES>;
  static constexpr int NW = KVC_WARPS, TW = 16, NO = M::NO, CH = M::CH, PPL = M::PPL;
  static constexpr int STAGES = KVC_PSA_MMA_STAGES;
  static constexpr int TILE_SLOT = M::TILE_SLOT;
  static constexpr size_t DYN = (size_t)STAGES * NW * 2 * TILE_SLOT;

  struct smem_t {
    int32_t page[NW][KVC_MAX_SPLIT_BLOCKS];
    int32_t ntok[NW][KVC_MAX_SPLIT_BLOCKS];
  };

  /* The calling warp's K tile of ring slot st % STAGES (its V tile follows at + TILE_SLOT). */
  static __device__ __forceinline__ unsigned char *slot(unsigned char *ring, int st) {
    return ring + ((size_t)(st % STAGES) * NW + threadIdx.x / 32) * 2 * TILE_SLOT;
  }

  /* Valid tokens (may be <= 0) of chunk ci of the warp's list; *pi, *tok0 its block and first
   * token in it. bs is a multiple of 16, so a chunk never crosses a block. */
  static __device__ __forceinline__ int chunk_valid(const int32_t *ntok, int bs, int ntoks, int ci,
                                                    int *pi, int *tok0) {
    const int tau0 = ci * TW, i = tau0 / bs;
    *pi = i;
    *tok0 = tau0 - i * bs;
    return tau0 < ntoks ? min(TW, ntok[i] - *tok0) : 0;
  }

  /* cp.async of chunk st of the warp's list into its slot (K tile, then V tile); invalid tokens
   * zero-filled without a read (as kvc_attend_mma::issue, with the warp's own list). A copy of
   * that function's body rather than a shared one: generalising it over the list changed the
   * dense kernels' code (cuobjdump: 80 instead of 96 registers in one variant), and the dense
   * kernels were not re-run on a GPU after it; share it when they are. */
  static __device__ __forceinline__ void issue(const int32_t *page, const int32_t *ntok,
                                               unsigned char *ring, const T *__restrict__ kpool,
                                               const T *__restrict__ vpool, int Hkv, int bs,
                                               int kvh, int ntoks, int st) {
    constexpr int TPJ = 32 / CH;
    const int lane = threadIdx.x % 32;
    int pi, tok0;
    const int nv = chunk_valid(ntok, bs, ntoks, st, &pi, &tok0);
    unsigned char *kt = slot(ring, st);
    unsigned char *vt = kt + TILE_SLOT;
    const int t0 = lane / CH, c = lane % CH;
    const size_t base = (nv > 0 ? (((size_t)page[pi] * Hkv + kvh) * bs + tok0) * D : 0) +
                        (size_t)t0 * D + c * 8;
    const T *kp = kpool + base, *vp = vpool + base;
#pragma unroll
    for (int j = 0; j < PPL; j++) {
      const int t = t0 + TPJ * j;
      const int bytes = t < nv ? 16 : 0;
      const int dst = M::tile_off(t, c);
      kvc_cp_async16(kt + dst, kp + j * TPJ * D, bytes);
      kvc_cp_async16(vt + dst, vp + j * TPJ * D, bytes);
    }
  }

  /* The lane's state as iteration it's snapshot: per head, max (log2 units), sum over the warp's
   * tokens, and the unnormalised output (rows of the head's three parts summed), as
   * kvc__psa_warp::snapshot writes them. The state itself is not changed. */
  static __device__ __forceinline__ void snapshot(const kvc__psa_params &p, int pair, int it,
                                                  bool last, float m, float l,
                                                  const float (&o)[NO][4]) {
    const int lane = threadIdx.x % 32;
    const size_t sbase = (size_t)pair * p.max_iters + it;
    float L = l + __shfl_xor_sync(0xffffffffu, l, 1);
    L += __shfl_xor_sync(0xffffffffu, L, 2);
    const int g = kvc_lane_head(lane);
    const bool writer = lane < 16 && g < p.G;
    int row, col;
    kvc_mma_c_rc(lane, 0, &row, &col);
#pragma unroll
    for (int n = 0; n < NO; n++) {
      float y0 = o[n][0] + o[n][2], y1 = o[n][1] + o[n][3];
      y0 += __shfl_xor_sync(0xffffffffu, y0, 16);
      y1 += __shfl_xor_sync(0xffffffffu, y1, 16);
      if (writer) {
        __stcg(reinterpret_cast<float2 *>(p.snap_o + (sbase * p.G + g) * D + n * 8 + col),
               make_float2(y0, y1));
      }
    }
    if (writer && (lane & 3) == 0) __stcg(&p.snap_ml[sbase * p.G + g], make_float2(m, L));
    if (lane == 0) p.item_end[sbase] = last ? 1 : 0;
  }

  static __device__ void item(const kvc__psa_params &p, smem_t &sm, unsigned char *ring, int pair,
                              int i0, int i1) {
    const int w = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int r = pair / p.Hkv, h = pair - r * p.Hkv;
    int b0, nb, nforced;
    const int nblk =
        kvc__psa_item_blocks(p, pair, i0, i1, sm.page[w], sm.ntok[w], &b0, &nb, &nforced);
    typename M::qreg_t qf;
    M::load_q(p.q + ((size_t)r * p.Hq + h * p.G) * D, p.G, p.scale_log2, qf);
    __syncwarp();
    const T *kp = (const T *)p.k, *vp = (const T *)p.v;
    const int ntoks = nblk * p.bs, nsteps = ntoks / TW;
    const int plo = kvc_lane_part_lo_row(lane), phi = kvc_lane_part_hi_row(lane);
    float o[NO][4];
#pragma unroll
    for (int n = 0; n < NO; n++) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.0f;
    float m = -CUDART_INF_F, l = 0.0f;
#pragma unroll
    for (int s = 0; s < STAGES - 1; s++) {
      if (s < nsteps) issue(sm.page[w], sm.ntok[w], ring, kp, vp, p.Hkv, p.bs, h, ntoks, s);
      kvc_cp_async_commit();
    }
    int cur = i0;
    int cur_end = ((int)kvc_psa_iter_end(cur, nforced, p.gb, nb) - b0) * p.bs / TW;
    for (int st = 0; st < nsteps; st++) {
      kvc_cp_async_wait<STAGES - 2>(); /* this lane's copies of step st have landed */
      __syncwarp();                    /* ... and every lane's (ldmatrix reads them all) */
      if (st + STAGES - 1 < nsteps) { /* the slot refilled was read in the previous step */
        issue(sm.page[w], sm.ntok[w], ring, kp, vp, p.Hkv, p.bs, h, ntoks, st + STAGES - 1);
      }
      kvc_cp_async_commit();
      int pi, tok0;
      const int nv = chunk_valid(sm.ntok[w], p.bs, ntoks, st, &pi, &tok0);
      if (nv > 0) { /* warp-uniform */
        const unsigned char *kt = slot(ring, st);
        M::chunk(kt, kt + TILE_SLOT, nv, qf, plo, phi, m, l, o);
      }
      if (st + 1 == cur_end) { /* iteration cur is complete */
        snapshot(p, pair, cur, cur == i1 - 1, m, l, o);
        cur++;
        if (cur < i1) cur_end = ((int)kvc_psa_iter_end(cur, nforced, p.gb, nb) - b0) * p.bs / TW;
      }
    }
    kvc_cp_async_wait<0>();
    __syncwarp(); /* the page list and ring slots are rewritten by the next item */
    if (lane == 0) atomicAdd(&p.fetched[pair], nblk);
  }
};

/* Scan of one head over the items k0 + lane of a round's chunk: (em, el) the state of everything
 * before the lane's item (carry included), (im, il) through it. Natural-log max, sum. */
__device__ __forceinline__ void kvc__psa_item_scan(const kvc__psa_params &p, size_t sb, int g,
                                                   bool live, int last_it, double cm, double cl,
                                                   double &em, double &el, double &im,
                                                   double &il) {
  const int wl = threadIdx.x % 32;
  double m = -CUDART_INF, l = 0.0;
  if (live) {
    const float2 f = __ldcg(&p.snap_ml[(sb + last_it) * p.G + g]);
    m = f.x == -CUDART_INF_F ? -CUDART_INF : (double)f.x * KVC_LN2;
    l = (double)f.y;
  }
#pragma unroll
  for (int off = 1; off < 32; off <<= 1) {
    const double m2 = __shfl_up_sync(0xffffffffu, m, off);
    const double l2 = __shfl_up_sync(0xffffffffu, l, off);
    if (wl >= off) kvc_lse_combine(m2, l2, m, l, &m, &l);
  }
  double xm = __shfl_up_sync(0xffffffffu, m, 1), xl = __shfl_up_sync(0xffffffffu, l, 1);
  if (wl == 0) xm = -CUDART_INF, xl = 0.0;
  kvc_lse_combine(cm, cl, xm, xl, &em, &el);
  kvc_lse_combine(cm, cl, m, l, &im, &il);
}

/* State through iteration it of head g: the exclusive prefix (xm, xl) of its item merged with
 * its own snapshot; P_acc from the estimate of what is left. */
__device__ __forceinline__ double kvc__psa_pacc_at(const kvc__psa_params &p, int pair, size_t sb,
                                                   int g, int it, double xm, double xl,
                                                   double *m_out) {
  const float2 f = __ldcg(&p.snap_ml[(sb + it) * p.G + g]);
  const double m2 = f.x == -CUDART_INF_F ? -CUDART_INF : (double)f.x * KVC_LN2;
  double m, l;
  kvc_lse_combine(xm, xl, m2, (double)f.y, &m, &l);
  *m_out = m;
  const double lu = __ldcg(&p.lsuf[((size_t)pair * p.G + g) * p.max_iters + it]);
  /* kvc_psa_pacc with log(u) + frame precomputed */
  return lu == -CUDART_INF ? 1.0 : 1.0 / (1.0 + exp(lu - (log(l) + m)));
}

/* One warp: the stop test of a pair over the iterations of round r (all of its items done).
 * car: this warp's shared [8][2] carry (state of the iterations before the current chunk). */
__device__ void kvc__psa_stop_check(const kvc__psa_params &p, int pair, int r, double (*car)[2],
                                    double (*ncar)[2]) {
  const int wl = threadIdx.x % 32, par = r & 1;
  const int32_t *inf = p.info + (size_t)pair * KVC_INFO_N;
  const int nb = inf[KVC_INFO_NB], nforced = inf[KVC_INFO_NFORCED], niters = inf[KVC_INFO_NITERS];
  const int poslast = inf[KVC_INFO_POSLAST];
  const int rq = pair / p.Hkv, h = pair - rq * p.Hkv;
  const int last_tok = kvc_block_tokens(p.seq_len[rq], p.bs, nb - 1);
  const int chk = __ldcg(&p.checked[pair]);
  const int end = __ldcg(&p.rend[(size_t)par * p.pairs + pair]);
  const int kw = p.kw; /* <= 32: one bit per batch of 32 iterations below */
  const int nr = (end - chk + kw - 1) / kw;
  const size_t sb = (size_t)pair * p.max_iters;
  if (wl < p.G) {
    car[wl][0] = __ldcg(&p.carry[((size_t)pair * p.G + wl) * 2]);
    car[wl][1] = __ldcg(&p.carry[((size_t)pair * p.G + wl) * 2 + 1]);
  }
  __syncwarp();
  for (int k0 = 0; k0 < nr; k0 += 32) {
    const int k = k0 + wl;
    const bool live = k < nr;
    const int last_it = min(chk + (k + 1) * kw, end) - 1;
    const int lastlane = min(31, nr - 1 - k0);
    const int it_lo = chk + k0 * kw, it_hi = min(end, chk + (k0 + 32) * kw);
    const int nbat = (it_hi - it_lo + 31) / 32;
    unsigned passm = 0xffffffffu; /* bit t: iteration it_lo + 32 t + lane passes for every head */
    for (int g = 0; g < p.G; g++) {
      double em, el, im, il;
      kvc__psa_item_scan(p, sb, g, live, last_it, car[g][0], car[g][1], em, el, im, il);
      for (int t = 0; t < nbat; t++) {
        const int it = it_lo + 32 * t + wl;
        const bool ok = it < it_hi;
        const int src = ok ? (it - chk) / kw - k0 : 0;
        const double xm = __shfl_sync(0xffffffffu, em, src);
        const double xl = __shfl_sync(0xffffffffu, el, src);
        if (ok) {
          double mm;
          const double pa = kvc__psa_pacc_at(p, pair, sb, g, it, xm, xl, &mm);
          if (!(pa >= p.eps)) passm &= ~(1u << t);
        }
      }
      const double cm2 = __shfl_sync(0xffffffffu, im, lastlane);
      const double cl2 = __shfl_sync(0xffffffffu, il, lastlane);
      if (wl == 0) ncar[g][0] = cm2, ncar[g][1] = cl2;
    }
    for (int t = 0; t < nbat; t++) {
      const int it = it_lo + 32 * t + wl;
      const bool ok = it < it_hi;
      const int e = ok ? (int)kvc_psa_iter_end(it, nforced, p.gb, nb) : 0;
      const bool cap = p.max_tokens > 0 &&
                       kvc_tokens_visited(e, p.bs, poslast, last_tok) >= p.max_tokens;
      const unsigned stops = __ballot_sync(0xffffffffu, ok && (e >= nb || cap || ((passm >> t) & 1u)));
      if (!stops) continue;
      /* The pair stops at iteration s: its final state and P_acc per head, outputs. */
      const int s = it_lo + 32 * t + __ffs(stops) - 1;
      const int src = (s - chk) / kw - k0;
      for (int g = 0; g < p.G; g++) {
        double em, el, im, il;
        kvc__psa_item_scan(p, sb, g, live, last_it, car[g][0], car[g][1], em, el, im, il);
        const double xm = __shfl_sync(0xffffffffu, em, src);
        const double xl = __shfl_sync(0xffffffffu, el, src);
        if (wl == 0) {
          double mm;
          const double pa = kvc__psa_pacc_at(p, pair, sb, g, s, xm, xl, &mm);
          if (p.est_mass) p.est_mass[(size_t)rq * p.Hq + h * p.G + g] = (float)pa;
          p.fin_m[(size_t)pair * p.G + g] = mm;
        }
      }
      if (wl == 0) {
        if (p.blocks_read) p.blocks_read[pair] = (int)kvc_psa_iter_end(s, nforced, p.gb, nb);
        if (p.iterations) p.iterations[pair] = s + 1;
        p.stop[pair] = s;
      }
      return;
    }
    /* No stop among these items: the carry moves past them. */
    __syncwarp();
    if (wl < p.G) car[wl][0] = ncar[wl][0], car[wl][1] = ncar[wl][1];
    __syncwarp();
  }
  /* Not stopped: keep the carry, schedule the next round (never past the last, which covers
   * everything and so always stops: the test passes at the end of the order). */
  int nend;
  if (p.hostsync) {
    nend = end + 1;
  } else if (r + 2 >= p.rounds) {
    nend = niters;
  } else {
    nend = end + max((int)(((long long)end * p.grow_pct + 99) / 100), kw);
  }
  nend = min(nend, niters);
  const int n = (nend - end + kw - 1) / kw;
  const int npar = par ^ 1;
  int base = 0;
  if (wl < p.G) {
    p.carry[((size_t)pair * p.G + wl) * 2] = car[wl][0];
    p.carry[((size_t)pair * p.G + wl) * 2 + 1] = car[wl][1];
  }
  if (wl == 0) {
    p.checked[pair] = end;
    p.rend[(size_t)npar * p.pairs + pair] = nend;
    p.nitems[(size_t)npar * p.pairs + pair] = n;
    p.ndone[(size_t)npar * p.pairs + pair] = 0;
    base = atomicAdd(&p.cnt[r + 1], n);
  }
  base = __shfl_sync(0xffffffffu, base, 0);
  uint2 *list = p.items + (size_t)npar * p.pairs * p.max_iters;
  for (int k = wl; k < n; k += 32) {
    list[base + k] = kvc__item(pair, end + k * kw, min(nend, end + (k + 1) * kw));
  }
}

/* W: the warp's item (kvc__psa_warp: CUDA cores; kvc__psa_warp_mma: tensor cores). */
template <typename W>
__global__ void __launch_bounds__(KVC_THREADS) kvc__psa_attend_kernel(kvc__psa_params p, int r) {
  extern __shared__ __align__(128) unsigned char kvc_dyn[];
  __shared__ typename W::smem_t sm;
  __shared__ double car[KVC_WARPS][8][2], ncar[KVC_WARPS][8][2];
  const int wl = threadIdx.x % 32, par = r & 1, w = threadIdx.x / 32;
  const int n = p.cnt[r];
  const uint2 *list = p.items + (size_t)par * p.pairs * p.max_iters;
  for (;;) {
    int idx = 0;
    if (wl == 0) idx = atomicAdd(&p.taken[r], 1);
    idx = __shfl_sync(0xffffffffu, idx, 0);
    if (idx >= n) return;
    const uint2 it = list[idx];
    const int pair = (int)it.x, i0 = (int)(it.y & 0xffffu), i1 = (int)(it.y >> 16);
    W::item(p, sm, kvc_dyn, pair, i0, i1);
    /* publish the snapshots, count the item; the last of the pair's round tests the stop */
    __threadfence();
    __syncwarp();
    int last = 0;
    if (wl == 0) {
      const int done = atomicAdd(&p.ndone[(size_t)par * p.pairs + pair], 1) + 1;
      last = done == p.nitems[(size_t)par * p.pairs + pair];
    }
    last = __shfl_sync(0xffffffffu, last, 0);
    if (last) {
      __threadfence();
      kvc__psa_stop_check(p, pair, r, car[w], ncar[w]);
    }
  }
}

/* ---- 4. combine ---------------------------------------------------------------------------- */
#define KVC_COMB_THREADS 256
/* CTA (pair, head): out = sum_i w_i O_i / sum_i w_i L_i over the snapshots that make up
 * iterations 0..stop: the last of every earlier item and the stopping iteration's own. Threads
 * are NGRP groups of D/4 (one float4 of dims each); group k takes every NGRP-th snapshot of a
 * chunk of KVC_COMB_THREADS iterations (listed in order by a block scan: deterministic sums). */
__global__ void __launch_bounds__(KVC_COMB_THREADS) kvc__psa_combine_kernel(kvc__psa_params p) {
  typedef cub::BlockScan<int, KVC_COMB_THREADS> Scan;
  __shared__ typename Scan::TempStorage scan_tmp;
  __shared__ int sidx[KVC_COMB_THREADS];
  __shared__ float sw[KVC_COMB_THREADS], sl[KVC_COMB_THREADS];
  __shared__ int scount;
  __shared__ float4 part[KVC_COMB_THREADS];
  __shared__ float lpart[KVC_COMB_THREADS / 16];
  const int pair = blockIdx.x, g = blockIdx.y, D = p.D;
  const int per = D / 4, ngrp = KVC_COMB_THREADS / per;
  const int grp = threadIdx.x / per, li = threadIdx.x % per;
  const int s = p.stop[pair];
  const float Mf = (float)(p.fin_m[(size_t)pair * p.G + g] / KVC_LN2);
  const size_t sb = (size_t)pair * p.max_iters;
  float4 acc = make_float4(0.f, 0.f, 0.f, 0.f);
  float L = 0.0f;
  for (int c0 = 0; c0 <= s; c0 += KVC_COMB_THREADS) {
    const int i = c0 + (int)threadIdx.x;
    const int use = i <= s && (i == s || p.item_end[sb + i]);
    int pos, total;
    Scan(scan_tmp).ExclusiveSum(use, pos, total);
    if (use) {
      const float2 f = p.snap_ml[(sb + i) * p.G + g];
      sidx[pos] = i;
      sw[pos] = f.x == -CUDART_INF_F ? 0.0f : exp2f(f.x - Mf);
      sl[pos] = f.y;
    }
    if (threadIdx.x == 0) scount = total;
    __syncthreads();
    const int nk = scount;
#pragma unroll 4
    for (int k = grp; k < nk; k += ngrp) {
      const float4 x = reinterpret_cast<const float4 *>(p.snap_o + ((sb + sidx[k]) * p.G + g) * D)[li];
      const float wk = sw[k];
      acc.x = fmaf(wk, x.x, acc.x), acc.y = fmaf(wk, x.y, acc.y);
      acc.z = fmaf(wk, x.z, acc.z), acc.w = fmaf(wk, x.w, acc.w);
      L = fmaf(wk, sl[k], L);
    }
    __syncthreads(); /* sidx/sw/sl and the scan storage are reused */
  }
  part[threadIdx.x] = acc;
  if (li == 0) lpart[grp] = L;
  __syncthreads();
  if (grp == 0) {
    float4 a = part[li];
    float Lt = lpart[0];
    for (int k = 1; k < ngrp; k++) {
      const float4 b = part[k * per + li];
      a.x += b.x, a.y += b.y, a.z += b.z, a.w += b.w;
      Lt += lpart[k];
    }
    const int rq = pair / p.Hkv, h = pair - rq * p.Hkv;
    const float inv = Lt > 0.0f ? 1.0f / Lt : 0.0f;
    reinterpret_cast<float4 *>(p.out + ((size_t)rq * p.Hq + h * p.G + g) * D)[li] =
        make_float4(a.x * inv, a.y * inv, a.z * inv, a.w * inv);
  }
}

/* ---- host --------------------------------------------------------------------------------- */
/* The attend kernel of item type W: its dynamic shared memory set once and its CTAs per SM
 * (asked once per instantiation), as slots over the device. */
template <typename W>
static int kvc__psa_attr(kvc_ctx *c, int *slots, kv_error *err) {
  static int per_sm = 0;
  if (per_sm == 0) {
    KVC_CHECK(err, cudaFuncSetAttribute(kvc__psa_attend_kernel<W>,
                                        cudaFuncAttributeMaxDynamicSharedMemorySize, (int)W::DYN));
    int n = 0;
    KVC_CHECK(err, cudaOccupancyMaxActiveBlocksPerMultiprocessor(
                       &n, kvc__psa_attend_kernel<W>, KVC_THREADS, W::DYN));
    if (n < 1) return kv_error_set(err, KV_EDEVICE, "PSA attend kernel: no CTA fits a multiprocessor");
    per_sm = n;
  }
  *slots = per_sm * c->prop.multiProcessorCount;
  return 0;
}

/* v11: PSA's items on tensor cores (KVC_TUNE_PSA_CORE = 1) where the core applies: groups of
 * at most 4 heads (GT 4) and blocks of a multiple of 16 tokens; else the CUDA-core items. */
template <int GT>
static bool kvc__psa_mma(const kvc_ctx *c, int bs) {
  return GT == 4 && c->tune[KVC_TUNE_PSA_CORE] == 1 && bs % 16 == 0;
}

template <typename T, int D, int GT>
static int kvc__psa_slots(kvc_ctx *c, int bs, int *slots, kv_error *err) {
  if constexpr (GT == 4) {
    if (kvc__psa_mma<GT>(c, bs)) return kvc__psa_attr<kvc__psa_warp_mma<T, D>>(c, slots, err);
  }
  return kvc__psa_attr<kvc__psa_warp<T, D, GT>>(c, slots, err);
}

template <typename W>
static int kvc__psa_launch_as(kvc_ctx *c, const kvc__psa_params &p, int r, int grid,
                              kv_error *err) {
  int slots = 0;
  KVC_TRY((kvc__psa_attr<W>(c, &slots, err)));
  kvc__psa_attend_kernel<W><<<grid, KVC_THREADS, W::DYN, c->stream>>>(p, r);
  KVC_CHECK(err, cudaGetLastError());
  return 0;
}

template <typename T, int D, int GT>
static int kvc__psa_launch_round(kvc_ctx *c, const kvc__psa_params &p, int r, int grid,
                                 kv_error *err) {
  if constexpr (GT == 4) {
    if (kvc__psa_mma<GT>(c, p.bs)) return kvc__psa_launch_as<kvc__psa_warp_mma<T, D>>(c, p, r, grid, err);
  }
  return kvc__psa_launch_as<kvc__psa_warp<T, D, GT>>(c, p, r, grid, err);
}

extern "C" int kvc_psa(kvc_ctx *c, const attn_shape *s, const attn_method *m, const kvc_kv *kv,
                       const kvc_batch *b, const kvc_psa_opts *o, float *out, kvc_sparse_out *so,
                       kvc_psa_stats *st, kv_error *err) {
  KVC_TRY(kvc__check_common(s, kv, b, err));
  KVC_TRY(attn_method_check(m, err));
  kvc_psa_opts def;
  kvc_psa_opts_defaults(&def);
  if (!o) o = &def;
  if (st) st->host_syncs = st->launches = 0;
  if (m->kind != ATTN_PSA) {
    return kv_error_set(err, m->kind == ATTN_ORACLE ? KV_ENOTSUP : KV_EINVAL,
                        "kvc_psa: method kind %d is not PSA (the oracle is CPU-only)", (int)m->kind);
  }
  if (m->block_size != kv->block_size) {
    return kv_error_set(err, KV_EINVAL, "kvc_psa: method block %d, pool block %d", m->block_size,
                        kv->block_size);
  }
  if (m->group_blocks > KVC_MAX_SPLIT_BLOCKS ||
      (int64_t)m->keep_sink_blocks + m->keep_recent_blocks > KVC_MAX_SPLIT_BLOCKS) {
    return kv_error_set(err, KV_ENOTSUP, "kvc_psa: group_blocks %d or forced blocks %d exceed %d",
                        m->group_blocks, m->keep_sink_blocks + m->keep_recent_blocks,
                        KVC_MAX_SPLIT_BLOCKS);
  }
  if (o->window < 1 || o->spec_iters < 0 || !(o->spec_scale > 0.0f) || o->rounds < 1 ||
      o->rounds > KVC_MAX_ROUNDS || o->grow_pct < 1 || o->grow_pct > 1000 || o->ctas_per_pair < 0) {
    return kv_error_set(err, KV_EINVAL, "kvc_psa: window %d (>= 1), spec_iters %d (>= 0), spec_scale "
                        "%g (> 0), rounds %d (1..%d), grow_pct %d (1..1000), ctas_per_pair %d (>= 0)",
                        o->window, o->spec_iters, (double)o->spec_scale, o->rounds, KVC_MAX_ROUNDS,
                        o->grow_pct, o->ctas_per_pair);
  }
  const int Hkv = s->n_kv_heads, G = s->n_heads / Hkv, D = s->head_dim, mb = b->max_blocks;
  const int pairs = b->n_req * Hkv;
  const int hostsync = o->mode == KVC_PSA_HOSTSYNC;
  int64_t max_iters = 1, max_nb = 1;
  for (int r = 0; r < b->n_req; r++) {
    int64_t nb = kvc_n_blocks(b->h_seq_len[r], kv->block_size);
    int64_t it = kvc_psa_n_iters(kvc_n_forced(nb, m->keep_sink_blocks, m->keep_recent_blocks),
                                 m->group_blocks, nb);
    if (it > max_iters) max_iters = it;
    if (nb > max_nb) max_nb = nb;
  }
  if (max_iters >= 65535) {
    return kv_error_set(err, KV_ENOTSUP, "kvc_psa: %lld iterations per pair (at most 65534)",
                        (long long)max_iters);
  }
  /* Iterations per item: the item's blocks fit the warp's page list. */
  const int gb = m->group_blocks;
  const int nf_max = m->keep_sink_blocks + m->keep_recent_blocks;
  int kw = hostsync ? 1 : o->window;
  const int kw_cap = 1 + (KVC_MAX_SPLIT_BLOCKS - (nf_max > gb ? nf_max : gb)) / gb;
  if (kw > kw_cap) kw = kw_cap;
  if (kw > 32) kw = 32; /* the stop test keeps one pass bit per 32 iterations of an item chunk */
  if (kw < 1) kw = 1;
  const int rounds_cap = hostsync ? (int)max_iters + 2 : o->rounds + 1;
  int slots = 1;
  KVC_TRY(KVC_DISPATCH(kv->dtype, D, G, kvc__psa_slots, c, kv->block_size, &slots, err));
  const int64_t want = o->ctas_per_pair > 0 ? (int64_t)pairs * o->ctas_per_pair : slots;
  const int grid = (int)(want > (1 << 20) ? (1 << 20) : want);

  const size_t pi = (size_t)pairs * max_iters;
  kvc_arena ar = {0};
  const uint64_t o_logit = kvc_arena_take(&ar, (uint64_t)pairs * G * mb * sizeof(float));
  const uint64_t o_est = kvc_arena_take(&ar, (uint64_t)pairs * G * mb * sizeof(float));
  const uint64_t o_key = kvc_arena_take(&ar, max_nb > KVC_PSA_SORT_MAX ? (uint64_t)pairs * mb * sizeof(double) : 0);
  const uint64_t o_ord = kvc_arena_take(&ar, (uint64_t)pairs * mb * sizeof(int32_t));
  const size_t sort_bytes = max_nb > KVC_PSA_SORT_MAX ? kvc__sort_bytes(b, Hkv, kv->block_size) : 0;
  const uint64_t o_sort = kvc_arena_take(&ar, sort_bytes);
  const uint64_t o_info = kvc_arena_take(&ar, (uint64_t)pairs * KVC_INFO_N * sizeof(int32_t));
  const uint64_t o_lsuf = kvc_arena_take(&ar, (uint64_t)pi * G * sizeof(double));
  const uint64_t o_carry = kvc_arena_take(&ar, (uint64_t)pairs * G * 2 * sizeof(double));
  const uint64_t o_pint = kvc_arena_take(&ar, (uint64_t)pairs * 9 * sizeof(int32_t));
  const uint64_t o_finm = kvc_arena_take(&ar, (uint64_t)pairs * G * sizeof(double));
  const uint64_t o_ctl = kvc_arena_take(&ar, (uint64_t)2 * rounds_cap * sizeof(int32_t));
  const uint64_t o_items = kvc_arena_take(&ar, (uint64_t)2 * pi * sizeof(uint2));
  const uint64_t o_so = kvc_arena_take(&ar, (uint64_t)pi * G * D * sizeof(float));
  const uint64_t o_sml = kvc_arena_take(&ar, (uint64_t)pi * G * sizeof(float2));
  const uint64_t o_iend = kvc_arena_take(&ar, (uint64_t)pi);
  char *base;
  KVC_TRY(kvc__scratch(c, ar.used, &base, err));

  kvc__psa_params p;
  memset(&p, 0, sizeof p);
  p.k = kv->k;
  p.v = kv->v;
  p.block_table = b->block_table;
  p.seq_len = b->seq_len;
  p.q = b->q;
  p.logit = (float *)(base + o_logit);
  p.est = (float *)(base + o_est);
  p.Hkv = Hkv;
  p.Hq = s->n_heads;
  p.G = G;
  p.D = D;
  p.bs = kv->block_size;
  p.mb = mb;
  p.sink = m->keep_sink_blocks;
  p.recent = m->keep_recent_blocks;
  p.gb = gb;
  p.pairs = pairs;
  p.max_iters = (int)max_iters;
  p.eps = m->epsilon;
  p.max_tokens = m->max_tokens;
  p.scale_log2 = (float)(1.0 / sqrt((double)D)) * KVC_LOG2E;
  p.hostsync = hostsync;
  p.kw = kw;
  p.spec_iters = o->spec_iters;
  p.spec_scale = o->spec_scale;
  p.rounds = hostsync ? rounds_cap : o->rounds;
  p.grow_pct = o->grow_pct;
  p.key = (double *)(base + o_key);
  p.order = (int32_t *)(base + o_ord);
  p.info = (int32_t *)(base + o_info);
  p.lsuf = (double *)(base + o_lsuf);
  p.carry = (double *)(base + o_carry);
  int32_t *pint = (int32_t *)(base + o_pint);
  p.checked = pint;
  p.rend = pint + pairs;          /* [2, pairs] */
  p.nitems = pint + 3 * pairs;    /* [2, pairs] */
  p.ndone = pint + 5 * pairs;     /* [2, pairs] */
  p.stop = pint + 7 * pairs;
  p.fetched = pint + 8 * pairs;
  p.fin_m = (double *)(base + o_finm);
  p.cnt = (int32_t *)(base + o_ctl);
  p.taken = p.cnt + rounds_cap;
  p.items = (uint2 *)(base + o_items);
  p.snap_o = (float *)(base + o_so);
  p.snap_ml = (float2 *)(base + o_sml);
  p.item_end = (uint8_t *)(base + o_iend);
  p.out = out;
  p.blocks_read = so ? so->blocks_read : NULL;
  p.iterations = so ? so->iterations : NULL;
  p.est_mass = so ? so->est_mass : NULL;

  KVC_TRY(kvc__phase(c, 0, err));
  KVC_CHECK(err, cudaMemsetAsync(p.cnt, 0, (size_t)2 * rounds_cap * sizeof(int32_t), c->stream));
  KVC_TRY(kvc__block_scores(c, s, m, kv, b, KVC_SCORE_PSA, NULL, (float *)p.logit,
                            (float *)p.est, NULL, err));
  if (max_nb <= KVC_PSA_SORT_MAX) {
    kvc__psa_rank_launch(c, max_nb, pairs, p); /* checked after the branch */
  } else {
    kvc__psa_keys_kernel<<<pairs, KVC_RANK_THREADS, 0, c->stream>>>(p);
    KVC_CHECK(err, cudaGetLastError());
    KVC_TRY(kvc__sort_blocks(c, b, Hkv, kv->block_size, p.key, p.order, base + o_sort, sort_bytes,
                             err));
    kvc__psa_prep_kernel<<<pairs, KVC_RANK_THREADS, 0, c->stream>>>(p);
  }
  KVC_CHECK(err, cudaGetLastError());
  KVC_TRY(kvc__phase(c, 1, err));
  if (!hostsync) {
    for (int r = 0; r < o->rounds; r++) {
      KVC_TRY(KVC_DISPATCH(kv->dtype, D, G, kvc__psa_launch_round, c, p, r, grid, err));
    }
    if (st) st->launches = o->rounds;
  } else {
    for (int r = 0;; r++) {
      if (r + 1 >= rounds_cap) {
        return kv_error_set(err, KV_ESTATE, "kvc_psa: host loop did not stop after %d rounds "
                            "(a kernel bug)", r);
      }
      KVC_TRY(KVC_DISPATCH(kv->dtype, D, G, kvc__psa_launch_round, c, p, r, grid, err));
      int next = 0;
      KVC_CHECK(err, cudaMemcpyAsync(&next, p.cnt + r + 1, sizeof(int), cudaMemcpyDeviceToHost,
                                     c->stream));
      KVC_CHECK(err, cudaStreamSynchronize(c->stream));
      if (st) {
        st->launches++;
        st->host_syncs++;
      }
      if (next == 0) break;
    }
  }
  kvc__psa_combine_kernel<<<dim3((unsigned)pairs, (unsigned)G), KVC_COMB_THREADS, 0, c->stream>>>(p);
  KVC_CHECK(err, cudaGetLastError());
  KVC_TRY(kvc__phase(c, 2, err));
  if (so && so->blocks_fetched) {
    KVC_CHECK(err, cudaMemcpyAsync(so->blocks_fetched, p.fetched, (size_t)pairs * sizeof(int32_t),
                                   cudaMemcpyDeviceToDevice, c->stream));
  }
  if (so && so->order) {
    KVC_CHECK(err, cudaMemcpyAsync(so->order, p.order, (size_t)pairs * mb * sizeof(int32_t),
                                   cudaMemcpyDeviceToDevice, c->stream));
  }
  return 0;
}

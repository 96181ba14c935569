/* kvc_psa.cu — Progressive Sparse Attention on the GPU: ranking, visit order, the progressive
 * loop with its stop test on the device, and a host-synchronised variant of the loop.
 *
 * Same semantics as kernels/attn_sparse.c (the oracle): per (request, KV head) pair, blocks are
 * visited in a fixed order (forced sink/recent blocks ascending as iteration 0, then the rest by
 * the group's summed estimated probability, descending, ties to the lower block), group_blocks
 * blocks per iteration; after each iteration every head of the group tests
 *   P_acc = S / (S + U) >= epsilon,  S = exact visited mass, U = estimated unvisited mass
 * (a suffix sum over the fixed order, computed once in double); the pair stops when all heads
 * pass, when every block is visited, or at the token cap. Outputs merge the visited iterations.
 *
 * Kernels of one decode step (no host synchronisation anywhere in the pipelined variant):
 *   1. kvc__block_scores (kvc_topk.cu): per block and head, rank logit and log-mass estimate;
 *   2. kvc__psa_rank_kernel, one CTA per pair: group keys (per head softmax of the logits over
 *      blocks, summed over the group; forced blocks +inf), the visit order (a block radix sort in
 *      the same CTA when the pair has <= KVC_BLOCK_SORT_MAX blocks; else separate launches with
 *      CUB's segmented sort), the estimate's suffix sums (double) and the loop's initial state,
 *      including the pair's first spec_iters + 1 iterations in the work queue;
 *   3. the loop:
 *      PIPELINED (kvc__psa_loop_kernel, v2): a persistent grid (the CTAs the GPU holds at once)
 *        takes (pair, iteration) items from one work queue. The queue starts with iterations
 *        0..spec0 of every pair (iteration-major; spec0 = spec, or up to half the CTAs per pair
 *        when the batch is small, so that it starts wide); whoever commits a pair's iterations appends its
 *        next ones, up to kvc_psa_lookahead() beyond the committed count: spec while many pairs
 *        are running, more (up to window - 1) when few are left, so one pair that needs many
 *        iterations is spread over the whole GPU once the others have stopped (v1 tied C CTAs to
 *        each pair for the whole loop). A CTA computes its item's partial (m, l, o) into the
 *        pair's ring of W slots, publishes it (release), and tries the pair's commit lock; the
 *        holder folds ready iterations strictly in order: warp 0 runs an inclusive scan of the
 *        log-sum-exp merge over up to 32 ready iterations per head (lanes = iterations, double),
 *        evaluates the stop test of every prefix in parallel and takes the first that stops; the
 *        CTA then rescales and adds the output partials. v1 did this fold on one thread.
 *      HOSTSYNC (kvc__psa_step_kernel): one launch per iteration, one CTA per pair processes its
 *        next iteration and commits it with the same code; the host copies the count of pairs
 *        still running after every launch and stops at zero (the naive loop of the paper).
 * Memory ordering: partials and accumulators are written with plain stores by the whole CTA and
 * published by one thread's release store after a CTA barrier; readers acquire, then barrier,
 * then read with L2 loads (__ldcg). No sequentially consistent atomics.
 * Deadlock freedom: no CTA waits on another while holding work (the commit lock is only tried);
 * a CTA waiting for a queue slot holds no item; every running pair always has its next iteration
 * in the queue (it is scheduled before the previous commit releases the lock), so some CTA holds
 * or will take it, compute it without waiting, and commit it.
 */
#include <cub/block/block_radix_sort.cuh>
#include <cub/block/block_reduce.cuh>
#include <cub/block/block_scan.cuh>
#include <cuda/atomic>
#include <cuda/functional>
#include <math_constants.h>

#include <vector>

#include "kvc_attend.cuh"
#include "kvc_topk.cuh"

enum { KVC_INFO_NB = 0, KVC_INFO_NFORCED, KVC_INFO_NITERS, KVC_INFO_POSLAST, KVC_INFO_N = 4 };
enum { KVC_CTL_LOCK = 0, KVC_CTL_COMMITTED, KVC_CTL_STOP, KVC_CTL_SCHED, KVC_CTL_N = 4 };
enum { KVC_Q_HEAD = 0, KVC_Q_TAIL, KVC_Q_ACTIVE, KVC_Q_N = 4 };
#define KVC_BATCH 32
#define KVC_RANK_THREADS 256
#define KVC_ITEM_SKIP 0xfffffffffffffffeull

typedef cuda::atomic_ref<int, cuda::thread_scope_device> kvc_aref;
typedef cuda::atomic_ref<unsigned long long, cuda::thread_scope_device> kvc_aref64;
#define KVC_ACQ cuda::std::memory_order_acquire
#define KVC_REL cuda::std::memory_order_release
#define KVC_RLX cuda::std::memory_order_relaxed
#define KVC_ACQREL cuda::std::memory_order_acq_rel

extern "C" void kvc_psa_opts_defaults(kvc_psa_opts *o) {
  o->mode = KVC_PSA_PIPELINED;
  o->ctas_per_pair = 0;
  o->spec_iters = 2;
  o->window = 32;
}

/* A queue item: (pair, iteration) + 1 so that 0 means "not yet written". */
__device__ __forceinline__ unsigned long long kvc__item(int pair, int it) {
  return (((unsigned long long)pair << 32) | (unsigned)it) + 1ull;
}

/* ---- 2. keys, order, suffix sums, loop state --------------------------------------------- */
struct kvc__rank_params {
  const float *logit;      /* [pair, G, mb] */
  const float *est;        /* [pair, G, mb] */
  double *key;             /* [pair, mb] */
  int32_t *order;          /* [pair, mb] */
  const int32_t *seq_len;
  int Hkv, G, D, bs, mb, sink, recent, gb, W, spec0, pairs, max_iters;
  double *suffix;          /* [pair, G, mb + 1] */
  double *frame;           /* [pair, G] */
  int32_t *info;           /* [pair, KVC_INFO_N] */
  int *ctl;                /* [pair, KVC_CTL_N] */
  int *ring_flag;          /* [pair, W] */
  double *acc_ml;          /* [pair, G, 2] */
  float *acc_o;            /* [pair, G, D] */
  int32_t *fetched;        /* [pair] */
  unsigned long long *queue; /* [(spec0 + 1) * pairs + pairs * max_iters], NULL: host-sync mode */
  int *qctl;               /* [KVC_Q_N] */
};

typedef cub::BlockReduce<double, KVC_RANK_THREADS> kvc__rank_reduce;
typedef cub::BlockScan<double, KVC_RANK_THREADS> kvc__rank_scan;
typedef cub::BlockRadixSort<uint64_t, KVC_RANK_THREADS, KVC_BLOCK_SORT_MAX / KVC_RANK_THREADS,
                            int32_t>
    kvc__rank_sort;
union kvc__rank_tmp {
  typename kvc__rank_reduce::TempStorage r;
  typename kvc__rank_scan::TempStorage s;
  typename kvc__rank_sort::TempStorage sort;
};

__device__ __forceinline__ uint64_t kvc__psa_key_bits(double k) {
  const uint64_t u = (uint64_t)__double_as_longlong(k);
  return (u >> 63) ? ~u : (u | 0x8000000000000000ull);
}

/* Group keys of one pair (whole CTA). */
__device__ void kvc__psa_keys(const kvc__rank_params &p, int pair, int nb, kvc__rank_tmp &tmp) {
  __shared__ double bmx, bz;
  double *kp = p.key + (size_t)pair * p.mb;
  for (int b = threadIdx.x; b < nb; b += KVC_RANK_THREADS) kp[b] = 0.0;
  for (int g = 0; g < p.G; g++) {
    const float *lg = p.logit + ((size_t)pair * p.G + g) * p.mb;
    double mx = -CUDART_INF;
    for (int b = threadIdx.x; b < nb; b += KVC_RANK_THREADS) mx = fmax(mx, (double)lg[b]);
    mx = kvc__rank_reduce(tmp.r).Reduce(mx, ::cuda::maximum<double>{});
    if (threadIdx.x == 0) bmx = mx;
    __syncthreads();
    double z = 0.0;
    for (int b = threadIdx.x; b < nb; b += KVC_RANK_THREADS) z += exp((double)lg[b] - bmx);
    z = kvc__rank_reduce(tmp.r).Sum(z);
    if (threadIdx.x == 0) bz = z;
    __syncthreads();
    for (int b = threadIdx.x; b < nb; b += KVC_RANK_THREADS) kp[b] += exp((double)lg[b] - bmx) / bz;
    __syncthreads();
  }
  for (int b = threadIdx.x; b < nb; b += KVC_RANK_THREADS) {
    if (kvc_is_forced(b, nb, p.sink, p.recent)) kp[b] = CUDART_INF;
  }
  __syncthreads();
}

/* Visit order of one pair with nb <= KVC_BLOCK_SORT_MAX (whole CTA): stable descending. */
__device__ void kvc__psa_sort(const kvc__rank_params &p, int pair, int nb, kvc__rank_tmp &tmp) {
  constexpr int ITEMS = KVC_BLOCK_SORT_MAX / KVC_RANK_THREADS;
  uint64_t k[ITEMS];
  int32_t v[ITEMS];
#pragma unroll
  for (int j = 0; j < ITEMS; j++) {
    const int b = threadIdx.x * ITEMS + j;
    k[j] = b < nb ? ~kvc__psa_key_bits(p.key[(size_t)pair * p.mb + b]) : ~0ull;
    v[j] = b;
  }
  kvc__rank_sort(tmp.sort).Sort(k, v);
#pragma unroll
  for (int j = 0; j < ITEMS; j++) {
    const int i = threadIdx.x * ITEMS + j;
    if (i < nb) p.order[(size_t)pair * p.mb + i] = v[j];
  }
  __syncthreads();
}

/* Suffix sums, iteration count and loop state of one pair (whole CTA). */
__device__ void kvc__psa_prep(const kvc__rank_params &p, int pair, int nb, kvc__rank_tmp &tmp) {
  __shared__ double bmx, carry;
  __shared__ int poslast;
  const int32_t *ord = p.order + (size_t)pair * p.mb;
  if (threadIdx.x == 0) poslast = nb;
  __syncthreads();
  for (int i = threadIdx.x; i < nb; i += KVC_RANK_THREADS) {
    if (ord[i] == nb - 1) poslast = i;
  }
  for (int g = 0; g < p.G; g++) {
    const float *es = p.est + ((size_t)pair * p.G + g) * p.mb;
    double *suf = p.suffix + ((size_t)pair * p.G + g) * (p.mb + 1);
    double mx = -CUDART_INF;
    for (int b = threadIdx.x; b < nb; b += KVC_RANK_THREADS) mx = fmax(mx, (double)es[b]);
    mx = kvc__rank_reduce(tmp.r).Reduce(mx, ::cuda::maximum<double>{});
    if (threadIdx.x == 0) {
      bmx = mx;
      carry = 0.0;
      suf[nb] = 0.0;
      p.frame[(size_t)pair * p.G + g] = mx;
    }
    __syncthreads();
    /* Reverse inclusive scan over the visit order, 256 positions at a time from the end. */
    for (int hi = nb; hi > 0; hi -= KVC_RANK_THREADS) {
      const int i = hi - 1 - (int)threadIdx.x;
      const double e = i >= 0 ? exp((double)es[ord[i]] - bmx) : 0.0;
      double incl, total;
      kvc__rank_scan(tmp.s).InclusiveSum(e, incl, total);
      if (i >= 0) suf[i] = carry + incl;
      __syncthreads();
      if (threadIdx.x == 0) carry += total;
      __syncthreads();
    }
  }
  const int nforced = (int)kvc_n_forced(nb, p.sink, p.recent);
  const int niters = (int)kvc_psa_n_iters(nforced, p.gb, nb);
  const int first = niters - 1 < p.spec0 ? niters - 1 : p.spec0; /* last iteration queued now */
  if (threadIdx.x == 0) {
    int32_t *inf = p.info + (size_t)pair * KVC_INFO_N;
    inf[KVC_INFO_NB] = nb;
    inf[KVC_INFO_NFORCED] = nforced;
    inf[KVC_INFO_NITERS] = niters;
    inf[KVC_INFO_POSLAST] = poslast;
    int *ctl = p.ctl + (size_t)pair * KVC_CTL_N;
    ctl[KVC_CTL_LOCK] = 0;
    ctl[KVC_CTL_COMMITTED] = 0;
    ctl[KVC_CTL_STOP] = -1;
    ctl[KVC_CTL_SCHED] = first;
    p.fetched[pair] = 0;
    if (p.queue && pair == 0) {
      p.qctl[KVC_Q_HEAD] = 0;
      p.qctl[KVC_Q_TAIL] = (p.spec0 + 1) * p.pairs;
      p.qctl[KVC_Q_ACTIVE] = p.pairs;
    }
  }
  for (int i = threadIdx.x; i < p.W; i += KVC_RANK_THREADS) p.ring_flag[(size_t)pair * p.W + i] = 0;
  for (int i = threadIdx.x; i < p.G; i += KVC_RANK_THREADS) {
    p.acc_ml[((size_t)pair * p.G + i) * 2] = -CUDART_INF;
    p.acc_ml[((size_t)pair * p.G + i) * 2 + 1] = 0.0;
  }
  for (int i = threadIdx.x; i < p.G * p.D; i += KVC_RANK_THREADS) p.acc_o[(size_t)pair * p.G * p.D + i] = 0.0f;
  if (p.queue) {
    /* Static items, iteration-major: slot j * pairs + pair holds (pair, j) or a skip. */
    for (int j = threadIdx.x; j <= p.spec0; j += KVC_RANK_THREADS) {
      p.queue[(size_t)j * p.pairs + pair] = j <= first ? kvc__item(pair, j) : KVC_ITEM_SKIP;
    }
    /* This pair's share of the dynamic region starts empty. */
    unsigned long long *dyn = p.queue + (size_t)(p.spec0 + 1) * p.pairs + (size_t)pair * p.max_iters;
    for (int i = threadIdx.x; i < p.max_iters; i += KVC_RANK_THREADS) dyn[i] = 0ull;
  }
}

/* Fused: keys, order (block sort), prep. One CTA per pair, nb <= KVC_BLOCK_SORT_MAX. */
__global__ void __launch_bounds__(KVC_RANK_THREADS) kvc__psa_rank_kernel(kvc__rank_params p) {
  __shared__ kvc__rank_tmp tmp;
  const int pair = blockIdx.x;
  const int nb = (int)kvc_n_blocks(p.seq_len[pair / p.Hkv], p.bs);
  kvc__psa_keys(p, pair, nb, tmp);
  kvc__psa_sort(p, pair, nb, tmp);
  kvc__psa_prep(p, pair, nb, tmp);
}
/* The same in two launches around an external sort (long contexts). */
__global__ void __launch_bounds__(KVC_RANK_THREADS) kvc__psa_keys_kernel(kvc__rank_params p) {
  __shared__ kvc__rank_tmp tmp;
  const int pair = blockIdx.x;
  kvc__psa_keys(p, pair, (int)kvc_n_blocks(p.seq_len[pair / p.Hkv], p.bs), tmp);
}
__global__ void __launch_bounds__(KVC_RANK_THREADS) kvc__psa_prep_kernel(kvc__rank_params p) {
  __shared__ kvc__rank_tmp tmp;
  const int pair = blockIdx.x;
  kvc__psa_prep(p, pair, (int)kvc_n_blocks(p.seq_len[pair / p.Hkv], p.bs), tmp);
}

/* ---- 3. the loop ----------------------------------------------------------------------------- */
struct kvc__loop_params {
  const void *k, *v;
  int Hkv, Hq, G, bs, mb;
  const int32_t *block_table, *seq_len;
  const float *q;
  float scale_log2;
  const int32_t *order;
  const double *suffix, *frame;
  const int32_t *info;
  double eps;
  int gb;
  long long max_tokens;
  int spec, spec0, W, pairs, max_iters, slots;
  float *ring_o;      /* [pair, W, G, D] unnormalised, relative to 2^M */
  float *ring_ml;     /* [pair, W, G, 2] (M log2 units, L) */
  int *ring_flag;     /* [pair, W] = iteration + 1 once the slot holds it */
  int *ctl;
  double *acc_ml;     /* [pair, G, 2] natural-log max and sum of the committed iterations */
  float *acc_o;       /* [pair, G, D] */
  int32_t *fetched;
  unsigned long long *queue;
  int *qctl;
  float *out;
  int32_t *blocks_read, *iterations, *blocks_fetched;
  float *est_mass;
  int *active;        /* host-sync: pairs still running after this step */
};

template <int GT>
struct kvc__commit_smem {
  double mi[KVC_BATCH][GT];     /* natural-log max of ready iteration i, head g */
  double pm[KVC_BATCH][GT];     /* merged state after iterations c..c+i */
  double pl[KVC_BATCH][GT];
  double pacc[KVC_BATCH][GT];
  double w[KVC_BATCH + 1][GT];  /* [0]: old accumulator; [1 + i]: iteration c + i */
  double am[GT], al[GT];        /* the accumulator's state */
  int c, n_ready, n_commit, stop, go;
};

/* Iteration j of a pair -> its partial in ring slot j % W, then publishes the slot. */
template <typename T, int D, int GT>
__device__ void kvc__psa_iteration(const kvc__loop_params &p, int pair, int j,
                                   typename kvc_attend<T, D, GT>::smem_t &sm, void *dyn) {
  using A = kvc_attend<T, D, GT>;
  const int r = pair / p.Hkv, h = pair - r * p.Hkv;
  const int32_t *inf = p.info + (size_t)pair * KVC_INFO_N;
  const int nb = inf[KVC_INFO_NB], nforced = inf[KVC_INFO_NFORCED];
  const int b0 = (int)kvc_psa_iter_begin(j, nforced, p.gb, nb);
  const int b1 = (int)kvc_psa_iter_end(j, nforced, p.gb, nb);
  const int len = p.seq_len[r];
  for (int i = threadIdx.x; i < b1 - b0; i += KVC_THREADS) {
    const int lb = p.order[(size_t)pair * p.mb + b0 + i];
    sm.page[i] = p.block_table[(size_t)r * p.mb + lb];
    sm.ntok[i] = kvc_block_tokens(len, p.bs, lb);
  }
  float q[GT][A::VEC];
  A::load_q(p.q + ((size_t)r * p.Hq + h * p.G) * D, p.G, p.scale_log2, q);
  __syncthreads();
  A::run(sm, dyn, (const T *)p.k, (const T *)p.v, p.Hkv, p.bs, h, b1 - b0, p.G, q);
  const float *o = A::out_o(dyn);
  const int slot = j % p.W;
  for (int idx = threadIdx.x; idx < p.G * D; idx += KVC_THREADS) {
    const int g = idx / D;
    __stcg(&p.ring_o[(((size_t)pair * p.W + slot) * p.G) * D + idx], o[idx]);
    if (idx - g * D == 0) {
      __stcg(&p.ring_ml[(((size_t)pair * p.W + slot) * p.G + g) * 2], sm.M[g]);
      __stcg(&p.ring_ml[(((size_t)pair * p.W + slot) * p.G + g) * 2 + 1], sm.L[g]);
    }
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    kvc_aref(p.ring_flag[(size_t)pair * p.W + slot]).store(j + 1, KVC_REL);
    kvc_aref(p.fetched[pair]).fetch_add(b1 - b0, KVC_RLX);
  }
}

/* Warp 0, holding the lock: folds the ready iterations c .. c + n_ready - 1 of a pair (lanes =
 * iterations) and decides how many to commit. Writes cs.n_commit, cs.stop, cs.w, cs.am/al. */
template <int GT>
__device__ void kvc__psa_fold(const kvc__loop_params &p, int pair, int nb, int nforced,
                              int poslast, int last_tok, kvc__commit_smem<GT> &cs) {
  const int lane = threadIdx.x;
  const int it = cs.c + lane;
  const bool live = lane < cs.n_ready;
  const int end = live ? (int)kvc_psa_iter_end(it, nforced, p.gb, nb) : nb;
  bool pass = true;
  for (int g = 0; g < p.G; g++) {
    double m = -CUDART_INF, l = 0.0;
    if (live) {
      const size_t rb = (((size_t)pair * p.W + it % p.W) * p.G + g) * 2;
      const float Mr = __ldcg(&p.ring_ml[rb]);
      m = Mr == -CUDART_INF_F ? -CUDART_INF : (double)Mr * KVC_LN2;
      l = (double)__ldcg(&p.ring_ml[rb + 1]);
    }
    cs.mi[lane][g] = m;
    /* Inclusive scan (Hillis-Steele) of the merge over lanes, then the accumulator in front. */
#pragma unroll
    for (int off = 1; off < 32; off <<= 1) {
      const double m2 = __shfl_up_sync(0xffffffffu, m, off);
      const double l2 = __shfl_up_sync(0xffffffffu, l, off);
      if (lane >= off) kvc_lse_combine(m2, l2, m, l, &m, &l);
    }
    kvc_lse_combine(cs.am[g], cs.al[g], m, l, &m, &l);
    cs.pm[lane][g] = m;
    cs.pl[lane][g] = l;
    const double u = p.suffix[((size_t)pair * p.G + g) * (p.mb + 1) + end];
    const double pa = kvc_psa_pacc(m, l, u, p.frame[(size_t)pair * p.G + g]);
    cs.pacc[lane][g] = pa;
    if (!(pa >= p.eps)) pass = false;
  }
  const bool cap = p.max_tokens > 0 &&
                   kvc_tokens_visited(end, p.bs, poslast, last_tok) >= p.max_tokens;
  const unsigned stops = __ballot_sync(0xffffffffu, live && (end >= nb || cap || pass));
  const int n_commit = stops ? __ffs(stops) : cs.n_ready;
  const int last = n_commit - 1;
  __syncwarp();
  for (int g = 0; g < p.G; g++) {
    const double mnew = cs.pm[last][g];
    if (lane < n_commit) {
      const double mi = cs.mi[lane][g];
      cs.w[1 + lane][g] = mi == -CUDART_INF ? 0.0 : exp(mi - mnew);
    }
    if (lane == 0) cs.w[0][g] = cs.am[g] == -CUDART_INF ? 0.0 : exp(cs.am[g] - mnew);
  }
  __syncwarp();
  if (lane == 0) {
    for (int g = 0; g < p.G; g++) {
      cs.am[g] = cs.pm[last][g];
      cs.al[g] = cs.pl[last][g];
    }
    cs.n_commit = n_commit;
    cs.stop = stops ? cs.c + last : -1;
  }
}

/* Folds ready iterations of a pair in order while holding its commit lock (whole CTA calls);
 * schedules the pair's next iterations into the queue (pipelined mode). */
template <int D, int GT>
__device__ void kvc__psa_commit(const kvc__loop_params &p, int pair, kvc__commit_smem<GT> &cs) {
  constexpr int PER = (GT * D + KVC_THREADS - 1) / KVC_THREADS;
  int *ctl = p.ctl + (size_t)pair * KVC_CTL_N;
  const int32_t *inf = p.info + (size_t)pair * KVC_INFO_N;
  const int nb = inf[KVC_INFO_NB], nforced = inf[KVC_INFO_NFORCED], niters = inf[KVC_INFO_NITERS];
  const int poslast = inf[KVC_INFO_POSLAST];
  const int r = pair / p.Hkv, h = pair - r * p.Hkv;
  const int last_tok = kvc_block_tokens(p.seq_len[r], p.bs, nb - 1);
  for (;;) {
    __syncthreads(); /* every thread has read cs.go and cs.stop of the previous round */
    if (threadIdx.x == 0) {
      cs.go = kvc_aref(ctl[KVC_CTL_LOCK]).exchange(1, KVC_ACQ) == 0;
      if (cs.go) {
        cs.c = kvc_aref(ctl[KVC_CTL_COMMITTED]).load(KVC_RLX);
        cs.stop = kvc_aref(ctl[KVC_CTL_STOP]).load(KVC_RLX);
      }
    }
    __syncthreads();
    if (!cs.go) return;
    /* Holding the lock: the accumulator comes into registers / shared memory. */
    float acc[PER];
#pragma unroll
    for (int e = 0; e < PER; e++) {
      const int idx = threadIdx.x + e * KVC_THREADS;
      acc[e] = idx < p.G * D ? __ldcg(&p.acc_o[(size_t)pair * p.G * D + idx]) : 0.0f;
    }
    if (threadIdx.x < p.G) {
      cs.am[threadIdx.x] = __ldcg(&p.acc_ml[((size_t)pair * p.G + threadIdx.x) * 2]);
      cs.al[threadIdx.x] = __ldcg(&p.acc_ml[((size_t)pair * p.G + threadIdx.x) * 2 + 1]);
    }
    bool finished = false;
    while (cs.stop < 0) {
      __syncthreads(); /* cs.am/al loaded; cs.c of the previous round visible */
      if (threadIdx.x < 32) {
        /* Warp 0 finds the ready prefix of iterations c, c+1, ... (at most KVC_BATCH). */
        const int it = cs.c + (int)threadIdx.x;
        const bool ok = it < niters && it < cs.c + p.W &&
                        kvc_aref(p.ring_flag[(size_t)pair * p.W + it % p.W]).load(KVC_ACQ) == it + 1;
        const unsigned mask = __ballot_sync(0xffffffffu, ok);
        const int n_ready = (~mask) == 0 ? 32 : __ffs(~mask) - 1;
        if (threadIdx.x == 0) cs.n_ready = n_ready;
        __syncwarp();
        if (n_ready > 0) kvc__psa_fold<GT>(p, pair, nb, nforced, poslast, last_tok, cs);
      }
      __syncthreads();
      if (cs.n_ready == 0) break;
#pragma unroll
      for (int e = 0; e < PER; e++) {
        const int idx = threadIdx.x + e * KVC_THREADS;
        if (idx < p.G * D) {
          const int g = idx / D;
          float a = acc[e] * (float)cs.w[0][g];
          for (int i = 0; i < cs.n_commit; i++) {
            const size_t ro = (((size_t)pair * p.W + (cs.c + i) % p.W) * p.G) * D + idx;
            a = fmaf(__ldcg(&p.ring_o[ro]), (float)cs.w[1 + i][g], a);
          }
          acc[e] = a;
        }
      }
      __syncthreads();
      if (threadIdx.x == 0) cs.c += cs.n_commit;
      __syncthreads();
      if (cs.stop >= 0) finished = true;
    }
    /* Write the accumulator back (or the outputs), schedule, publish, unlock. */
#pragma unroll
    for (int e = 0; e < PER; e++) {
      const int idx = threadIdx.x + e * KVC_THREADS;
      if (idx < p.G * D) {
        __stcg(&p.acc_o[(size_t)pair * p.G * D + idx], acc[e]);
        if (finished) {
          const int g = idx / D;
          const double L = cs.al[g];
          p.out[((size_t)r * p.Hq + h * p.G) * D + idx] = L > 0.0 ? (float)(acc[e] / L) : 0.0f;
        }
      }
    }
    if (threadIdx.x < p.G) {
      __stcg(&p.acc_ml[((size_t)pair * p.G + threadIdx.x) * 2], cs.am[threadIdx.x]);
      __stcg(&p.acc_ml[((size_t)pair * p.G + threadIdx.x) * 2 + 1], cs.al[threadIdx.x]);
    }
    if (finished && threadIdx.x == 0) {
      const int end = (int)kvc_psa_iter_end(cs.stop, nforced, p.gb, nb);
      if (p.blocks_read) p.blocks_read[pair] = end;
      if (p.iterations) p.iterations[pair] = cs.stop + 1;
      if (p.est_mass) {
        const int last = cs.stop - (cs.c - cs.n_commit); /* lane of the stopping iteration */
        for (int g = 0; g < p.G; g++) p.est_mass[(size_t)r * p.Hq + h * p.G + g] = (float)cs.pacc[last][g];
      }
    }
    if (cs.stop < 0 && p.queue && threadIdx.x == 0) { /* still running: keep it fed */
      /* Keep the pair's next iterations queued: up to c + lookahead (ring-safe, < c + W). */
      const int sched = kvc_aref(ctl[KVC_CTL_SCHED]).load(KVC_RLX); /* lock holder's own word */
      const int active = kvc_aref(p.qctl[KVC_Q_ACTIVE]).load(KVC_RLX);
      int hi = cs.c + kvc_psa_lookahead(cs.c, p.spec, p.W, p.slots, active);
      if (hi > niters - 1) hi = niters - 1;
      if (hi > sched) {
        const int n = hi - sched;
        const int pos = kvc_aref(p.qctl[KVC_Q_TAIL]).fetch_add(n, KVC_RLX);
        for (int i = 0; i < n; i++) {
          kvc_aref64(p.queue[pos + i]).store(kvc__item(pair, sched + 1 + i), KVC_REL);
        }
        kvc_aref(ctl[KVC_CTL_SCHED]).store(hi, KVC_RLX);
      }
    }
    __syncthreads(); /* all accumulator stores precede the release below */
    if (threadIdx.x == 0) {
      kvc_aref(ctl[KVC_CTL_COMMITTED]).store(cs.c, KVC_RLX);
      if (finished) {
        kvc_aref(ctl[KVC_CTL_STOP]).store(cs.stop, KVC_RLX);
        if (p.queue) kvc_aref(p.qctl[KVC_Q_ACTIVE]).fetch_sub(1, KVC_REL);
      }
      kvc_aref(ctl[KVC_CTL_LOCK]).store(0, KVC_REL);
      /* Lost wake-up check: an iteration may have been published while we held the lock. */
      const int c = cs.c;
      cs.go = cs.stop < 0 && c < niters && /* a stopped pair needs no more commits */
              kvc_aref(p.ring_flag[(size_t)pair * p.W + c % p.W]).load(KVC_ACQ) == c + 1;
    }
    __syncthreads();
    if (!cs.go) return;
  }
}

template <typename T, int D, int GT>
__global__ void __launch_bounds__(KVC_THREADS) kvc__psa_loop_kernel(kvc__loop_params p) {
  extern __shared__ __align__(16) unsigned char kvc_dyn[];
  __shared__ typename kvc_attend<T, D, GT>::smem_t sm;
  __shared__ kvc__commit_smem<GT> cs;
  __shared__ unsigned long long s_item;
  const size_t cap = (size_t)(p.spec0 + 1) * p.pairs + (size_t)p.pairs * p.max_iters;
  for (;;) {
    if (threadIdx.x == 0) {
      const int t = kvc_aref(p.qctl[KVC_Q_HEAD]).fetch_add(1, KVC_RLX);
      unsigned long long v = 0ull;
      if ((size_t)t < cap) {
        for (;;) {
          v = kvc_aref64(p.queue[t]).load(KVC_ACQ);
          if (v != 0ull) break;
          if (kvc_aref(p.qctl[KVC_Q_ACTIVE]).load(KVC_ACQ) == 0) break;
          __nanosleep(200);
        }
      }
      s_item = v;
    }
    __syncthreads();
    const unsigned long long v = s_item;
    if (v == 0ull) return; /* every pair has stopped */
    if (v != KVC_ITEM_SKIP) {
      const int pair = (int)((v - 1ull) >> 32), j = (int)((v - 1ull) & 0xffffffffull);
      int *ctl = p.ctl + (size_t)pair * KVC_CTL_N;
      if (threadIdx.x == 0) cs.go = kvc_aref(ctl[KVC_CTL_STOP]).load(KVC_ACQ) < 0;
      __syncthreads();
      if (cs.go) { /* else: speculative, the pair stopped before it */
        kvc__psa_iteration<T, D, GT>(p, pair, j, sm, kvc_dyn);
        kvc__psa_commit<D, GT>(p, pair, cs);
      }
    }
    __syncthreads();
  }
}

/* Host-synchronised variant: iteration `committed` of every running pair, one CTA per pair. */
template <typename T, int D, int GT>
__global__ void __launch_bounds__(KVC_THREADS) kvc__psa_step_kernel(kvc__loop_params p) {
  extern __shared__ __align__(16) unsigned char kvc_dyn[];
  __shared__ typename kvc_attend<T, D, GT>::smem_t sm;
  __shared__ kvc__commit_smem<GT> cs;
  __shared__ int sj;
  const int pair = blockIdx.x;
  int *ctl = p.ctl + (size_t)pair * KVC_CTL_N;
  if (threadIdx.x == 0) sj = ctl[KVC_CTL_STOP] >= 0 ? -1 : ctl[KVC_CTL_COMMITTED];
  __syncthreads();
  if (sj < 0) return;
  kvc__psa_iteration<T, D, GT>(p, pair, sj, sm, kvc_dyn);
  kvc__psa_commit<D, GT>(p, pair, cs);
  if (threadIdx.x == 0 && kvc_aref(ctl[KVC_CTL_STOP]).load(KVC_ACQ) < 0) atomicAdd(p.active, 1);
}

/* Per instantiation, once: dynamic shared memory limits and the loop kernel's CTAs per SM. */
template <typename T, int D, int GT>
static int kvc__psa_attr(kvc_ctx *c, int *slots, kv_error *err) {
  using A = kvc_attend<T, D, GT>;
  static int per_sm = 0;
  if (per_sm == 0) {
    KVC_CHECK(err, cudaFuncSetAttribute(kvc__psa_loop_kernel<T, D, GT>,
                                        cudaFuncAttributeMaxDynamicSharedMemorySize,
                                        (int)A::DYN_BYTES));
    KVC_CHECK(err, cudaFuncSetAttribute(kvc__psa_step_kernel<T, D, GT>,
                                        cudaFuncAttributeMaxDynamicSharedMemorySize,
                                        (int)A::DYN_BYTES));
    int n = 0;
    KVC_CHECK(err, cudaOccupancyMaxActiveBlocksPerMultiprocessor(
                       &n, kvc__psa_loop_kernel<T, D, GT>, KVC_THREADS, A::DYN_BYTES));
    if (n < 1) return kv_error_set(err, KV_EDEVICE, "PSA loop kernel: no CTA fits a multiprocessor");
    per_sm = n;
  }
  *slots = per_sm * c->prop.multiProcessorCount;
  return 0;
}

template <typename T, int D, int GT>
static int kvc__psa_slots(kvc_ctx *c, int *slots, kv_error *err) {
  return kvc__psa_attr<T, D, GT>(c, slots, err);
}

template <typename T, int D, int GT>
static int kvc__launch_loop(kvc_ctx *c, kvc__loop_params &p, int n_pairs, int step, int grid,
                            kv_error *err) {
  using A = kvc_attend<T, D, GT>;
  int slots = 0;
  KVC_TRY((kvc__psa_attr<T, D, GT>(c, &slots, err)));
  (void)slots; /* p.slots: the persistent grid's size, set by the caller */
  if (step) {
    kvc__psa_step_kernel<T, D, GT><<<n_pairs, KVC_THREADS, A::DYN_BYTES, c->stream>>>(p);
  } else {
    kvc__psa_loop_kernel<T, D, GT><<<grid > 0 ? grid : slots, KVC_THREADS, A::DYN_BYTES,
                                     c->stream>>>(p);
  }
  KVC_CHECK(err, cudaGetLastError());
  return 0;
}

__global__ void kvc__copy_i32(const int32_t *src, int32_t *dst, int n) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) dst[i] = src[i];
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
  if (o->window < 2 || o->window > 4096 || o->spec_iters < 0 || o->spec_iters >= o->window ||
      o->ctas_per_pair < 0) {
    return kv_error_set(err, KV_EINVAL, "kvc_psa: window %d (2..4096), spec_iters %d (0..window-1), "
                        "ctas_per_pair %d (>= 0)", o->window, o->spec_iters, o->ctas_per_pair);
  }
  const int Hkv = s->n_kv_heads, G = s->n_heads / Hkv, D = s->head_dim, mb = b->max_blocks;
  const int pairs = b->n_req * Hkv, W = o->window;
  int64_t max_iters = 1, max_nb = 1;
  for (int r = 0; r < b->n_req; r++) {
    int64_t nb = kvc_n_blocks(b->h_seq_len[r], kv->block_size);
    int64_t it = kvc_psa_n_iters(kvc_n_forced(nb, m->keep_sink_blocks, m->keep_recent_blocks),
                                 m->group_blocks, nb);
    if (it > max_iters) max_iters = it;
    if (nb > max_nb) max_nb = nb;
  }
  const int pipelined = o->mode == KVC_PSA_PIPELINED;
  /* Iterations queued per pair before any commit: spec, or more while the GPU has CTAs to spare
   * for each pair (half of its share, at most window - 1): a small batch starts wide. */
  int slots = 1;
  KVC_TRY(KVC_DISPATCH(kv->dtype, D, G, kvc__psa_slots, c, &slots, err));
  const int grid_ctas = o->ctas_per_pair > 0 ? (int)(((int64_t)pairs * o->ctas_per_pair > (1 << 20))
                                                         ? (1 << 20)
                                                         : pairs * o->ctas_per_pair)
                                             : slots;
  int spec0 = grid_ctas / pairs / 2;
  if (spec0 > W - 1) spec0 = W - 1;
  if (spec0 < o->spec_iters) spec0 = o->spec_iters;
  const size_t qcap = (size_t)(spec0 + 1) * pairs + (size_t)pairs * max_iters;
  kvc_arena ar = {0};
  const uint64_t o_logit = kvc_arena_take(&ar, (uint64_t)pairs * G * mb * sizeof(float));
  const uint64_t o_est = kvc_arena_take(&ar, (uint64_t)pairs * G * mb * sizeof(float));
  const uint64_t o_key = kvc_arena_take(&ar, (uint64_t)pairs * mb * sizeof(double));
  const uint64_t o_ord = kvc_arena_take(&ar, (uint64_t)pairs * mb * sizeof(int32_t));
  const size_t sort_bytes = max_nb > KVC_BLOCK_SORT_MAX ? kvc__sort_bytes(b, Hkv, kv->block_size) : 0;
  const uint64_t o_sort = kvc_arena_take(&ar, sort_bytes);
  const uint64_t o_suf = kvc_arena_take(&ar, (uint64_t)pairs * G * (mb + 1) * sizeof(double));
  const uint64_t o_frame = kvc_arena_take(&ar, (uint64_t)pairs * G * sizeof(double));
  const uint64_t o_info = kvc_arena_take(&ar, (uint64_t)pairs * KVC_INFO_N * sizeof(int32_t));
  const uint64_t o_ctl = kvc_arena_take(&ar, (uint64_t)pairs * KVC_CTL_N * sizeof(int));
  const uint64_t o_rflag = kvc_arena_take(&ar, (uint64_t)pairs * W * sizeof(int));
  const uint64_t o_ro = kvc_arena_take(&ar, (uint64_t)pairs * W * G * D * sizeof(float));
  const uint64_t o_rml = kvc_arena_take(&ar, (uint64_t)pairs * W * G * 2 * sizeof(float));
  const uint64_t o_aml = kvc_arena_take(&ar, (uint64_t)pairs * G * 2 * sizeof(double));
  const uint64_t o_ao = kvc_arena_take(&ar, (uint64_t)pairs * G * D * sizeof(float));
  const uint64_t o_fet = kvc_arena_take(&ar, (uint64_t)pairs * sizeof(int32_t));
  const uint64_t o_act = kvc_arena_take(&ar, sizeof(int));
  const uint64_t o_qctl = kvc_arena_take(&ar, KVC_Q_N * sizeof(int));
  const uint64_t o_q = kvc_arena_take(&ar, pipelined ? qcap * sizeof(unsigned long long) : 0);
  char *base;
  KVC_TRY(kvc__scratch(c, ar.used, &base, err));
  float *logit = (float *)(base + o_logit), *est = (float *)(base + o_est);
  double *key = (double *)(base + o_key);
  int32_t *ord = (int32_t *)(base + o_ord);

  KVC_TRY(kvc__phase(c, 0, err));
  KVC_TRY(kvc__block_scores(c, s, m, kv, b, KVC_SCORE_PSA, NULL, logit, est, NULL, err));
  kvc__rank_params rp;
  rp.logit = logit;
  rp.est = est;
  rp.key = key;
  rp.order = ord;
  rp.seq_len = b->seq_len;
  rp.Hkv = Hkv;
  rp.G = G;
  rp.D = D;
  rp.bs = kv->block_size;
  rp.mb = mb;
  rp.sink = m->keep_sink_blocks;
  rp.recent = m->keep_recent_blocks;
  rp.gb = m->group_blocks;
  rp.W = W;
  rp.spec0 = spec0;
  rp.pairs = pairs;
  rp.max_iters = (int)max_iters;
  rp.suffix = (double *)(base + o_suf);
  rp.frame = (double *)(base + o_frame);
  rp.info = (int32_t *)(base + o_info);
  rp.ctl = (int *)(base + o_ctl);
  rp.ring_flag = (int *)(base + o_rflag);
  rp.acc_ml = (double *)(base + o_aml);
  rp.acc_o = (float *)(base + o_ao);
  rp.fetched = (int32_t *)(base + o_fet);
  rp.queue = pipelined ? (unsigned long long *)(base + o_q) : NULL;
  rp.qctl = (int *)(base + o_qctl);
  if (max_nb <= KVC_BLOCK_SORT_MAX) {
    kvc__psa_rank_kernel<<<pairs, KVC_RANK_THREADS, 0, c->stream>>>(rp);
    KVC_CHECK(err, cudaGetLastError());
  } else {
    kvc__psa_keys_kernel<<<pairs, KVC_RANK_THREADS, 0, c->stream>>>(rp);
    KVC_CHECK(err, cudaGetLastError());
    KVC_TRY(kvc__sort_blocks(c, b, Hkv, kv->block_size, key, ord, base + o_sort, sort_bytes, err));
    kvc__psa_prep_kernel<<<pairs, KVC_RANK_THREADS, 0, c->stream>>>(rp);
    KVC_CHECK(err, cudaGetLastError());
  }

  kvc__loop_params lp;
  lp.k = kv->k;
  lp.v = kv->v;
  lp.Hkv = Hkv;
  lp.Hq = s->n_heads;
  lp.G = G;
  lp.bs = kv->block_size;
  lp.mb = mb;
  lp.block_table = b->block_table;
  lp.seq_len = b->seq_len;
  lp.q = b->q;
  lp.scale_log2 = (float)(1.0 / sqrt((double)D)) * KVC_LOG2E;
  lp.order = ord;
  lp.suffix = rp.suffix;
  lp.frame = rp.frame;
  lp.info = rp.info;
  lp.eps = m->epsilon;
  lp.gb = m->group_blocks;
  lp.max_tokens = m->max_tokens;
  lp.spec = o->spec_iters;
  lp.spec0 = spec0;
  lp.W = W;
  lp.pairs = pairs;
  lp.max_iters = (int)max_iters;
  lp.slots = grid_ctas;
  lp.ring_o = (float *)(base + o_ro);
  lp.ring_ml = (float *)(base + o_rml);
  lp.ring_flag = rp.ring_flag;
  lp.ctl = rp.ctl;
  lp.acc_ml = rp.acc_ml;
  lp.acc_o = rp.acc_o;
  lp.fetched = rp.fetched;
  lp.queue = rp.queue;
  lp.qctl = rp.qctl;
  lp.out = out;
  lp.blocks_read = so ? so->blocks_read : NULL;
  lp.iterations = so ? so->iterations : NULL;
  lp.blocks_fetched = NULL;
  lp.est_mass = so ? so->est_mass : NULL;
  lp.active = (int *)(base + o_act);
  KVC_TRY(kvc__phase(c, 1, err));
  const int grid = grid_ctas;
  if (pipelined) {
    KVC_TRY(KVC_DISPATCH(kv->dtype, D, G, kvc__launch_loop, c, lp, pairs, 0, grid, err));
    if (st) st->launches = 1;
  } else {
    for (int64_t it = 0;; it++) {
      if (it > max_iters) {
        return kv_error_set(err, KV_ESTATE, "kvc_psa: host loop did not stop after %lld "
                            "iterations (a kernel bug)", (long long)it);
      }
      KVC_CHECK(err, cudaMemsetAsync(lp.active, 0, sizeof(int), c->stream));
      KVC_TRY(KVC_DISPATCH(kv->dtype, D, G, kvc__launch_loop, c, lp, pairs, 1, 0, err));
      int active = 0;
      KVC_CHECK(err, cudaMemcpyAsync(&active, lp.active, sizeof(int), cudaMemcpyDeviceToHost,
                                     c->stream));
      KVC_CHECK(err, cudaStreamSynchronize(c->stream));
      if (st) {
        st->launches++;
        st->host_syncs++;
      }
      if (active == 0) break;
    }
  }
  KVC_TRY(kvc__phase(c, 2, err));
  if (so && so->blocks_fetched) {
    kvc__copy_i32<<<(pairs + 255) / 256, 256, 0, c->stream>>>(rp.fetched, so->blocks_fetched, pairs);
    KVC_CHECK(err, cudaGetLastError());
  }
  if (so && so->order) {
    KVC_CHECK(err, cudaMemcpyAsync(so->order, ord, (size_t)pairs * mb * sizeof(int32_t),
                                   cudaMemcpyDeviceToDevice, c->stream));
  }
  return 0;
}

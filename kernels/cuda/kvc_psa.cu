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
 *   2. kvc__psa_keys: per pair, softmax of each head's logits over blocks, summed over the group;
 *      forced blocks +inf;
 *   3. stable segmented sort (CUB) -> visit order;
 *   4. kvc__psa_prep: per pair and head, the estimate's exponent frame and suffix sums (double),
 *      the iteration count, the estimate-only predicted stop; resets the loop's control words;
 *   5. the loop:
 *      PIPELINED (kvc__psa_loop_kernel): one launch; C CTAs per pair take iterations from a ticket
 *        counter, compute each iteration's partial (m, l, o) into a ring of W slots (speculatively,
 *        up to the estimate's predicted stop, then at most spec_iters beyond the committed
 *        frontier), and whichever CTA finishes one tries to take the pair's commit lock and folds
 *        ready iterations strictly in order: the (m, l) fold and the stop test run sequentially on
 *        one thread in double, so decisions are identical to one-at-a-time commits; the committer
 *        that sees the stop writes the outputs. Iterations computed past the stop are wasted loads,
 *        reported as blocks_fetched - blocks_read.
 *      HOSTSYNC (kvc__psa_step_kernel): one launch per iteration, one CTA per pair processes its
 *        next iteration and commits it with the same code; the host copies the count of pairs still
 *        running after every launch and stops at zero (the naive loop of the paper).
 * Why a persistent ticket loop rather than CUDA graphs of fixed iteration counts: the iteration
 * count is data dependent per pair (1 to thousands) and the stop test needs the exact mass, so a
 * graph would have to unroll the worst case; the ticket loop spends launches only on work that
 * exists and keeps the whole GPU busy even at batch 1 (C CTAs per pair). The whole step (1-5) can
 * still be captured in one graph (the benchmark does) since it has no host dependency.
 *
 * Deadlock freedom: a CTA only waits (gate, commit) on iterations with lower tickets, which were
 * taken by CTAs already running; the smallest outstanding ticket always passes the gate.
 * Not yet run on a GPU: docs/kernels.md.
 */
#include <cub/block/block_reduce.cuh>
#include <cub/block/block_scan.cuh>
#include <cuda/atomic>
#include <cuda/functional>
#include <math_constants.h>

#include <vector>

#include "kvc_attend.cuh"
#include "kvc_topk.cuh"

enum { KVC_INFO_NB = 0, KVC_INFO_NFORCED, KVC_INFO_NITERS, KVC_INFO_PRED, KVC_INFO_POSLAST, KVC_INFO_N = 8 };
enum { KVC_CTL_TICKET = 0, KVC_CTL_LOCK, KVC_CTL_COMMITTED, KVC_CTL_STOP, KVC_CTL_N = 4 };
#define KVC_BATCH 32

typedef cuda::atomic_ref<int, cuda::thread_scope_device> kvc_aref;

extern "C" void kvc_psa_opts_defaults(kvc_psa_opts *o) {
  o->mode = KVC_PSA_PIPELINED;
  o->ctas_per_pair = 0;
  o->spec_iters = 2;
  o->window = 32;
}

/* ---- 2. group keys ------------------------------------------------------------------------- */
__global__ void __launch_bounds__(256)
kvc__psa_keys_kernel(const float *logit, double *key, const int32_t *seq_len, int Hkv, int G,
                     int bs, int max_blocks, int sink, int recent) {
  typedef cub::BlockReduce<double, 256> R;
  __shared__ typename R::TempStorage tmp;
  __shared__ double bmx, bz;
  const int pair = blockIdx.x;
  const int nb = (int)kvc_n_blocks(seq_len[pair / Hkv], bs);
  double *kp = key + (size_t)pair * max_blocks;
  for (int b = threadIdx.x; b < nb; b += 256) kp[b] = 0.0;
  for (int g = 0; g < G; g++) {
    const float *lg = logit + ((size_t)pair * G + g) * max_blocks;
    double mx = -CUDART_INF;
    for (int b = threadIdx.x; b < nb; b += 256) mx = fmax(mx, (double)lg[b]);
    mx = R(tmp).Reduce(mx, ::cuda::maximum<double>{});
    if (threadIdx.x == 0) bmx = mx;
    __syncthreads();
    double z = 0.0;
    for (int b = threadIdx.x; b < nb; b += 256) z += exp((double)lg[b] - bmx);
    z = R(tmp).Sum(z);
    if (threadIdx.x == 0) bz = z;
    __syncthreads();
    for (int b = threadIdx.x; b < nb; b += 256) kp[b] += exp((double)lg[b] - bmx) / bz;
    __syncthreads();
  }
  for (int b = threadIdx.x; b < nb; b += 256) {
    if (kvc_is_forced(b, nb, sink, recent)) kp[b] = CUDART_INF;
  }
}

/* ---- 4. suffix sums, prediction, loop reset -------------------------------------------------- */
struct kvc__prep_params {
  const float *est;        /* [pair, G, mb] */
  const int32_t *order;    /* [pair, mb] */
  const int32_t *seq_len;
  int Hkv, G, D, bs, mb, sink, recent, gb, W;
  double eps;
  double *suffix;          /* [pair, G, mb + 1] */
  double *frame;           /* [pair, G] */
  int32_t *info;           /* [pair, KVC_INFO_N] */
  int *ctl;                /* [pair, KVC_CTL_N] */
  int *ring_flag;          /* [pair, W] */
  double *acc_ml;          /* [pair, G, 2] */
  float *acc_o;            /* [pair, G, D] */
  int32_t *fetched;        /* [pair] (internal counter) */
};

__global__ void __launch_bounds__(256) kvc__psa_prep_kernel(kvc__prep_params p) {
  typedef cub::BlockReduce<double, 256> R;
  typedef cub::BlockScan<double, 256> S;
  __shared__ union {
    typename R::TempStorage r;
    typename S::TempStorage s;
  } tmp;
  __shared__ double bmx, carry;
  __shared__ int kneed, poslast;
  const int pair = blockIdx.x;
  const int len = p.seq_len[pair / p.Hkv];
  const int nb = (int)kvc_n_blocks(len, p.bs);
  const int32_t *ord = p.order + (size_t)pair * p.mb;
  if (threadIdx.x == 0) {
    kneed = 0;
    poslast = nb;
  }
  __syncthreads();
  for (int i = threadIdx.x; i < nb; i += 256) {
    if (ord[i] == nb - 1) poslast = i;
  }
  for (int g = 0; g < p.G; g++) {
    const float *es = p.est + ((size_t)pair * p.G + g) * p.mb;
    double *suf = p.suffix + ((size_t)pair * p.G + g) * (p.mb + 1);
    double mx = -CUDART_INF;
    for (int b = threadIdx.x; b < nb; b += 256) mx = fmax(mx, (double)es[b]);
    mx = R(tmp.r).Reduce(mx, ::cuda::maximum<double>{});
    if (threadIdx.x == 0) {
      bmx = mx;
      carry = 0.0;
      suf[nb] = 0.0;
      p.frame[(size_t)pair * p.G + g] = mx;
    }
    __syncthreads();
    /* Reverse inclusive scan over the visit order, 256 positions at a time from the end. */
    for (int hi = nb; hi > 0; hi -= 256) {
      const int i = hi - 1 - (int)threadIdx.x;
      const double e = i >= 0 ? exp((double)es[ord[i]] - bmx) : 0.0;
      double incl, total;
      S(tmp.s).InclusiveSum(e, incl, total);
      if (i >= 0) suf[i] = carry + incl;
      __syncthreads();
      if (threadIdx.x == 0) carry += total;
      __syncthreads();
    }
    /* Estimate-only prediction: first position k with suffix[k] <= (1 - eps) * suffix[0]. */
    const double thr = (1.0 - p.eps) * suf[0];
    for (int k = threadIdx.x; k <= nb; k += 256) {
      if (suf[k] <= thr && (k == 0 || suf[k - 1] > thr)) atomicMax(&kneed, k);
    }
    __syncthreads();
  }
  const int nforced = (int)kvc_n_forced(nb, p.sink, p.recent);
  const int niters = (int)kvc_psa_n_iters(nforced, p.gb, nb);
  if (threadIdx.x == 0) {
    int pred = 0;
    while (pred < niters - 1 && kvc_psa_iter_end(pred, nforced, p.gb, nb) < kneed) pred++;
    int32_t *inf = p.info + (size_t)pair * KVC_INFO_N;
    inf[KVC_INFO_NB] = nb;
    inf[KVC_INFO_NFORCED] = nforced;
    inf[KVC_INFO_NITERS] = niters;
    inf[KVC_INFO_PRED] = pred;
    inf[KVC_INFO_POSLAST] = poslast;
    int *ctl = p.ctl + (size_t)pair * KVC_CTL_N;
    ctl[KVC_CTL_TICKET] = 0;
    ctl[KVC_CTL_LOCK] = 0;
    ctl[KVC_CTL_COMMITTED] = 0;
    ctl[KVC_CTL_STOP] = -1;
    p.fetched[pair] = 0;
  }
  for (int i = threadIdx.x; i < p.W; i += 256) p.ring_flag[(size_t)pair * p.W + i] = 0;
  for (int i = threadIdx.x; i < p.G; i += 256) {
    p.acc_ml[((size_t)pair * p.G + i) * 2] = -CUDART_INF;
    p.acc_ml[((size_t)pair * p.G + i) * 2 + 1] = 0.0;
  }
  for (int i = threadIdx.x; i < p.G * p.D; i += 256) p.acc_o[(size_t)pair * p.G * p.D + i] = 0.0f;
}

/* ---- 5. the loop ----------------------------------------------------------------------------- */
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
  int spec, W, C;
  float *ring_o;      /* [pair, W, G, D] unnormalised, relative to 2^M */
  float *ring_ml;     /* [pair, W, G, 2] (M log2 units, L) */
  int *ring_flag;     /* [pair, W] = iteration + 1 once the slot holds it */
  int *ctl;
  double *acc_ml;     /* [pair, G, 2] natural-log max and sum of the committed iterations */
  float *acc_o;       /* [pair, G, D] */
  int32_t *fetched;
  float *out;
  int32_t *blocks_read, *iterations, *blocks_fetched;
  float *est_mass;
  int *active;        /* host-sync: pairs still running after this step */
};

template <int GT>
struct kvc__commit_smem {
  float rml[KVC_BATCH][GT][2];
  double w[KVC_BATCH + 1][GT];  /* [0]: old accumulator; [1 + i]: iteration c + i */
  double pacc[GT];
  int c, n_ready, n_commit, stop, go;
};

/* Iteration j of a pair -> its partial in ring slot j % W, then publishes the slot. */
template <typename T, int D, int GT>
__device__ void kvc__psa_iteration(const kvc__loop_params &p, int pair, int j,
                                   typename kvc_attend<T, D, GT>::smem_t &sm) {
  using A = kvc_attend<T, D, GT>;
  const int r = pair / p.Hkv, h = pair % p.Hkv;
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
  A::run(sm, (const T *)p.k, (const T *)p.v, p.Hkv, p.bs, h, b1 - b0, p.G, q);
  const int slot = j % p.W;
  for (int idx = threadIdx.x; idx < p.G * D; idx += KVC_THREADS) {
    const int g = idx / D, d = idx - g * D;
    __stcg(&p.ring_o[(((size_t)pair * p.W + slot) * p.G + g) * D + d], sm.o[0][g][d]);
    if (d == 0) {
      __stcg(&p.ring_ml[(((size_t)pair * p.W + slot) * p.G + g) * 2], sm.M[g]);
      __stcg(&p.ring_ml[(((size_t)pair * p.W + slot) * p.G + g) * 2 + 1], sm.L[g]);
    }
  }
  __threadfence();
  __syncthreads();
  if (threadIdx.x == 0) {
    kvc_aref(p.ring_flag[(size_t)pair * p.W + slot]).store(j + 1);
    atomicAdd(&p.fetched[pair], b1 - b0);
  }
}

/* Folds ready iterations of a pair in order while holding its commit lock (whole CTA calls). */
template <int D, int GT>
__device__ void kvc__psa_commit(const kvc__loop_params &p, int pair, kvc__commit_smem<GT> &cs) {
  constexpr int PER = (GT * D + KVC_THREADS - 1) / KVC_THREADS;
  int *ctl = p.ctl + (size_t)pair * KVC_CTL_N;
  const int32_t *inf = p.info + (size_t)pair * KVC_INFO_N;
  const int nb = inf[KVC_INFO_NB], nforced = inf[KVC_INFO_NFORCED], niters = inf[KVC_INFO_NITERS];
  const int poslast = inf[KVC_INFO_POSLAST];
  const int r = pair / p.Hkv, h = pair % p.Hkv;
  const int last_tok = kvc_block_tokens(p.seq_len[r], p.bs, nb - 1);
  for (;;) {
    if (threadIdx.x == 0) {
      cs.go = kvc_aref(ctl[KVC_CTL_LOCK]).exchange(1) == 0;
      if (cs.go) {
        __threadfence();
        cs.c = kvc_aref(ctl[KVC_CTL_COMMITTED]).load();
        cs.stop = kvc_aref(ctl[KVC_CTL_STOP]).load();
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
    double m[GT], l[GT];
    if (threadIdx.x == 0) {
#pragma unroll
      for (int g = 0; g < GT; g++) {
        m[g] = g < p.G ? __ldcg(&p.acc_ml[((size_t)pair * p.G + g) * 2]) : 0.0;
        l[g] = g < p.G ? __ldcg(&p.acc_ml[((size_t)pair * p.G + g) * 2 + 1]) : 0.0;
      }
    }
    bool finished = false;
    while (cs.stop < 0) {
      /* Warp 0 finds the ready prefix of iterations c, c+1, ... (at most KVC_BATCH). */
      if (threadIdx.x < 32) {
        const int it = cs.c + (int)threadIdx.x;
        const bool ok = threadIdx.x < KVC_BATCH && it < niters && it < cs.c + p.W &&
                        kvc_aref(p.ring_flag[(size_t)pair * p.W + it % p.W]).load() == it + 1;
        const unsigned mask = __ballot_sync(0xffffffffu, ok);
        const int n_ready = __ffs(~mask) - 1 < 0 ? 32 : __ffs(~mask) - 1;
        if ((int)threadIdx.x < n_ready) {
          __threadfence();
          const size_t base = ((size_t)pair * p.W + it % p.W) * p.G;
          for (int g = 0; g < p.G; g++) {
            cs.rml[threadIdx.x][g][0] = __ldcg(&p.ring_ml[(base + g) * 2]);
            cs.rml[threadIdx.x][g][1] = __ldcg(&p.ring_ml[(base + g) * 2 + 1]);
          }
        }
        if (threadIdx.x == 0) cs.n_ready = n_ready;
      }
      __syncthreads();
      if (cs.n_ready == 0) break;
      if (threadIdx.x == 0) {
        /* Sequential fold and stop test, one iteration at a time, in double. */
        double m0[GT];
#pragma unroll
        for (int g = 0; g < GT; g++) m0[g] = m[g];
        double mi[KVC_BATCH][GT];
        int n_commit = 0, stop = -1;
        for (int i = 0; i < cs.n_ready; i++) {
          const int it = cs.c + i;
          const int end = (int)kvc_psa_iter_end(it, nforced, p.gb, nb);
          bool all = true;
#pragma unroll
          for (int g = 0; g < GT; g++) {
            if (g >= p.G) continue;
            const float Mr = cs.rml[i][g][0];
            mi[i][g] = Mr == -CUDART_INF_F ? -CUDART_INF : (double)Mr * KVC_LN2;
            double ao, an;
            kvc_lse_merge(&m[g], &l[g], mi[i][g], (double)cs.rml[i][g][1], &ao, &an);
            const double u = p.suffix[((size_t)pair * p.G + g) * (p.mb + 1) + end];
            const double pa = kvc_psa_pacc(m[g], l[g], u, p.frame[(size_t)pair * p.G + g]);
            cs.pacc[g] = pa;
            if (!(pa >= p.eps)) all = false;
          }
          n_commit = i + 1;
          const bool cap = p.max_tokens > 0 &&
                           kvc_tokens_visited(end, p.bs, poslast, last_tok) >= p.max_tokens;
          if (end >= nb || cap || all) {
            stop = it;
            break;
          }
        }
        /* Weights that bring the old accumulator and each committed iteration to the new max. */
#pragma unroll
        for (int g = 0; g < GT; g++) {
          if (g >= p.G) continue;
          cs.w[0][g] = m0[g] == -CUDART_INF ? 0.0 : exp(m0[g] - m[g]);
          for (int i = 0; i < n_commit; i++) {
            cs.w[1 + i][g] = mi[i][g] == -CUDART_INF ? 0.0 : exp(mi[i][g] - m[g]);
          }
        }
        cs.n_commit = n_commit;
        cs.stop = stop;
      }
      __syncthreads();
#pragma unroll
      for (int e = 0; e < PER; e++) {
        const int idx = threadIdx.x + e * KVC_THREADS;
        if (idx < p.G * D) {
          const int g = idx / D, d = idx - g * D;
          float a = acc[e] * (float)cs.w[0][g];
          for (int i = 0; i < cs.n_commit; i++) {
            const size_t ro = (((size_t)pair * p.W + (cs.c + i) % p.W) * p.G + g) * D + d;
            a = fmaf(__ldcg(&p.ring_o[ro]), (float)cs.w[1 + i][g], a);
          }
          acc[e] = a;
        }
      }
      __syncthreads();
      if (threadIdx.x == 0) cs.c += cs.n_commit;
      __syncthreads();
      if (cs.stop >= 0) {
        finished = true;
        break;
      }
    }
    /* Write the accumulator back (or the outputs), publish, unlock. */
    if (threadIdx.x == 0) {
#pragma unroll
      for (int g = 0; g < GT; g++) {
        if (g >= p.G) continue;
        __stcg(&p.acc_ml[((size_t)pair * p.G + g) * 2], m[g]);
        __stcg(&p.acc_ml[((size_t)pair * p.G + g) * 2 + 1], l[g]);
        cs.w[0][g] = l[g];
      }
    }
    __syncthreads();
#pragma unroll
    for (int e = 0; e < PER; e++) {
      const int idx = threadIdx.x + e * KVC_THREADS;
      if (idx < p.G * D) {
        __stcg(&p.acc_o[(size_t)pair * p.G * D + idx], acc[e]);
        if (finished) {
          const int g = idx / D, d = idx - g * D;
          const double L = cs.w[0][g];
          p.out[((size_t)r * p.Hq + h * p.G + g) * D + d] = L > 0.0 ? (float)(acc[e] / L) : 0.0f;
        }
      }
    }
    if (finished && threadIdx.x == 0) {
      const int stop = cs.stop;
      const int end = (int)kvc_psa_iter_end(stop, nforced, p.gb, nb);
      if (p.blocks_read) p.blocks_read[pair] = end;
      if (p.iterations) p.iterations[pair] = stop + 1;
      if (p.est_mass) {
        for (int g = 0; g < p.G; g++) p.est_mass[(size_t)r * p.Hq + h * p.G + g] = (float)cs.pacc[g];
      }
    }
    __threadfence();
    __syncthreads();
    if (threadIdx.x == 0) {
      kvc_aref(ctl[KVC_CTL_COMMITTED]).store(cs.c);
      if (finished) kvc_aref(ctl[KVC_CTL_STOP]).store(cs.stop);
      kvc_aref(ctl[KVC_CTL_LOCK]).store(0);
      /* Lost wake-up check: an iteration may have been published while we held the lock. */
      const int c = kvc_aref(ctl[KVC_CTL_COMMITTED]).load();
      cs.go = kvc_aref(ctl[KVC_CTL_STOP]).load() < 0 && c < niters &&
              kvc_aref(p.ring_flag[(size_t)pair * p.W + c % p.W]).load() == c + 1;
    }
    __syncthreads();
    if (!cs.go) return;
  }
}

template <typename T, int D, int GT>
__global__ void __launch_bounds__(KVC_THREADS) kvc__psa_loop_kernel(kvc__loop_params p) {
  using A = kvc_attend<T, D, GT>;
  __shared__ typename A::smem_t sm;
  __shared__ kvc__commit_smem<GT> cs;
  __shared__ int sj;
  const int pair = blockIdx.x / p.C;
  int *ctl = p.ctl + (size_t)pair * KVC_CTL_N;
  const int32_t *inf = p.info + (size_t)pair * KVC_INFO_N;
  const int niters = inf[KVC_INFO_NITERS], pred = inf[KVC_INFO_PRED];
  for (;;) {
    if (threadIdx.x == 0) {
      int j = kvc_aref(ctl[KVC_CTL_TICKET]).fetch_add(1);
      if (j >= niters) j = -1;
      while (j >= 0) { /* gate: ring space and speculation limit */
        if (kvc_aref(ctl[KVC_CTL_STOP]).load() >= 0) {
          j = -1;
          break;
        }
        const int c = kvc_aref(ctl[KVC_CTL_COMMITTED]).load();
        if (j < c + p.W && (j <= pred + p.spec || j <= c + p.spec)) break;
        __nanosleep(256);
      }
      sj = j;
    }
    __syncthreads();
    const int j = sj;
    if (j < 0) return;
    kvc__psa_iteration<T, D, GT>(p, pair, j, sm);
    kvc__psa_commit<D, GT>(p, pair, cs);
    __syncthreads();
  }
}

/* Host-synchronised variant: iteration `committed` of every running pair, one CTA per pair. */
template <typename T, int D, int GT>
__global__ void __launch_bounds__(KVC_THREADS) kvc__psa_step_kernel(kvc__loop_params p) {
  using A = kvc_attend<T, D, GT>;
  __shared__ typename A::smem_t sm;
  __shared__ kvc__commit_smem<GT> cs;
  __shared__ int sj;
  const int pair = blockIdx.x;
  int *ctl = p.ctl + (size_t)pair * KVC_CTL_N;
  if (threadIdx.x == 0) sj = ctl[KVC_CTL_STOP] >= 0 ? -1 : ctl[KVC_CTL_COMMITTED];
  __syncthreads();
  if (sj < 0) return;
  kvc__psa_iteration<T, D, GT>(p, pair, sj, sm);
  kvc__psa_commit<D, GT>(p, pair, cs);
  if (threadIdx.x == 0 && kvc_aref(ctl[KVC_CTL_STOP]).load() < 0) atomicAdd(p.active, 1);
}

template <typename T, int D, int GT>
static int kvc__launch_loop(kvc_ctx *c, const kvc__loop_params &p, int n_pairs, int step,
                            kv_error *err) {
  if (step) {
    kvc__psa_step_kernel<T, D, GT><<<n_pairs, KVC_THREADS, 0, c->stream>>>(p);
  } else {
    kvc__psa_loop_kernel<T, D, GT><<<n_pairs * p.C, KVC_THREADS, 0, c->stream>>>(p);
  }
  KVC_CHECK(err, cudaGetLastError());
  return 0;
}

__global__ void kvc__copy_fetched(const int32_t *src, int32_t *dst, int n) {
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
  if (o->window < 2 || o->spec_iters < 0) {
    return kv_error_set(err, KV_EINVAL, "kvc_psa: window %d (>= 2), spec_iters %d (>= 0)",
                        o->window, o->spec_iters);
  }
  const int Hkv = s->n_kv_heads, G = s->n_heads / Hkv, D = s->head_dim, mb = b->max_blocks;
  const int pairs = b->n_req * Hkv, W = o->window;
  int64_t max_iters = 1;
  for (int r = 0; r < b->n_req; r++) {
    int64_t nb = kvc_n_blocks(b->h_seq_len[r], kv->block_size);
    int64_t it = kvc_psa_n_iters(kvc_n_forced(nb, m->keep_sink_blocks, m->keep_recent_blocks),
                                 m->group_blocks, nb);
    if (it > max_iters) max_iters = it;
  }
  kvc_arena ar = {0};
  const uint64_t o_logit = kvc_arena_take(&ar, (uint64_t)pairs * G * mb * sizeof(float));
  const uint64_t o_est = kvc_arena_take(&ar, (uint64_t)pairs * G * mb * sizeof(float));
  const uint64_t o_key = kvc_arena_take(&ar, (uint64_t)pairs * mb * sizeof(double));
  const uint64_t o_key2 = kvc_arena_take(&ar, (uint64_t)pairs * mb * sizeof(double));
  const uint64_t o_idx = kvc_arena_take(&ar, (uint64_t)pairs * mb * sizeof(int32_t));
  const uint64_t o_ord = kvc_arena_take(&ar, (uint64_t)pairs * mb * sizeof(int32_t));
  const size_t sort_bytes = kvc__sort_bytes(pairs, mb);
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
  char *base;
  KVC_TRY(kvc__scratch(c, ar.used, &base, err));
  float *logit = (float *)(base + o_logit), *est = (float *)(base + o_est);
  double *key = (double *)(base + o_key), *key2 = (double *)(base + o_key2);
  int32_t *idx = (int32_t *)(base + o_idx), *ord = (int32_t *)(base + o_ord);

  KVC_TRY(kvc__phase(c, 0, err));
  KVC_TRY(kvc__block_scores(c, s, m, kv, b, KVC_SCORE_PSA, NULL, logit, est, idx, err));
  kvc__psa_keys_kernel<<<pairs, 256, 0, c->stream>>>(logit, key, b->seq_len, Hkv, G,
                                                     kv->block_size, mb, m->keep_sink_blocks,
                                                     m->keep_recent_blocks);
  KVC_CHECK(err, cudaGetLastError());
  KVC_TRY(kvc__sort_blocks(c, b, Hkv, kv->block_size, key, key2, idx, ord, base + o_sort,
                           sort_bytes, err));
  kvc__prep_params pp;
  pp.est = est;
  pp.order = ord;
  pp.seq_len = b->seq_len;
  pp.Hkv = Hkv;
  pp.G = G;
  pp.D = D;
  pp.bs = kv->block_size;
  pp.mb = mb;
  pp.sink = m->keep_sink_blocks;
  pp.recent = m->keep_recent_blocks;
  pp.gb = m->group_blocks;
  pp.W = W;
  pp.eps = m->epsilon;
  pp.suffix = (double *)(base + o_suf);
  pp.frame = (double *)(base + o_frame);
  pp.info = (int32_t *)(base + o_info);
  pp.ctl = (int *)(base + o_ctl);
  pp.ring_flag = (int *)(base + o_rflag);
  pp.acc_ml = (double *)(base + o_aml);
  pp.acc_o = (float *)(base + o_ao);
  pp.fetched = (int32_t *)(base + o_fet);
  kvc__psa_prep_kernel<<<pairs, 256, 0, c->stream>>>(pp);
  KVC_CHECK(err, cudaGetLastError());

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
  lp.suffix = pp.suffix;
  lp.frame = pp.frame;
  lp.info = pp.info;
  lp.eps = m->epsilon;
  lp.gb = m->group_blocks;
  lp.max_tokens = m->max_tokens;
  lp.spec = o->spec_iters;
  lp.W = W;
  lp.C = o->ctas_per_pair > 0 ? o->ctas_per_pair
                              : kvc_plan_psa_ctas(pairs, c->target_ctas, max_iters);
  lp.ring_o = (float *)(base + o_ro);
  lp.ring_ml = (float *)(base + o_rml);
  lp.ring_flag = pp.ring_flag;
  lp.ctl = pp.ctl;
  lp.acc_ml = pp.acc_ml;
  lp.acc_o = pp.acc_o;
  lp.fetched = pp.fetched;
  lp.out = out;
  lp.blocks_read = so ? so->blocks_read : NULL;
  lp.iterations = so ? so->iterations : NULL;
  lp.blocks_fetched = so ? so->blocks_fetched : NULL;
  lp.est_mass = so ? so->est_mass : NULL;
  lp.active = (int *)(base + o_act);
  KVC_TRY(kvc__phase(c, 1, err));
  if (o->mode == KVC_PSA_PIPELINED) {
    KVC_TRY(KVC_DISPATCH(kv->dtype, D, G, kvc__launch_loop, c, lp, pairs, 0, err));
    if (st) st->launches = 1;
  } else {
    for (int64_t it = 0;; it++) {
      if (it > max_iters) {
        return kv_error_set(err, KV_ESTATE, "kvc_psa: host loop did not stop after %lld "
                            "iterations (a kernel bug)", (long long)it);
      }
      KVC_CHECK(err, cudaMemsetAsync(lp.active, 0, sizeof(int), c->stream));
      KVC_TRY(KVC_DISPATCH(kv->dtype, D, G, kvc__launch_loop, c, lp, pairs, 1, err));
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
    kvc__copy_fetched<<<(pairs + 255) / 256, 256, 0, c->stream>>>(pp.fetched, so->blocks_fetched, pairs);
    KVC_CHECK(err, cudaGetLastError());
  }
  if (so && so->order) {
    KVC_CHECK(err, cudaMemcpyAsync(so->order, ord, (size_t)pairs * mb * sizeof(int32_t),
                                   cudaMemcpyDeviceToDevice, c->stream));
  }
  return 0;
}

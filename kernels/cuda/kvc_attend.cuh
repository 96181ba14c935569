/* kvc_attend.cuh — the core every decode kernel shares: exact attention of a GQA group's query
 * heads over a list of pages of one KV head, in one CTA, with an online softmax.
 *
 * v2 (kernels/bench/NOTES.md has the arithmetic budget and the predictions).
 * Thread mapping: a 16-byte load holds 8 elements; LANES = head_dim / 8 threads ("a row group")
 * cover one token's row of K or V, so the CTA of 128 threads has NRG = 128 / LANES row groups.
 * A row group takes NT consecutive tokens per step (a CTA step covers STEP = NRG * NT tokens;
 * NT divides 16, so the NT tokens of one row group sit in one page).
 * Staging: every thread copies exactly the 16-byte pieces of K and V it will itself consume into
 * a private slot of a STAGES-deep shared-memory ring with cp.async (global -> shared, no
 * registers), STAGES - 1 steps ahead of use. Since no thread reads another's slot, the loop
 * needs no barrier, only cp.async.wait_group. Bytes in flight per CTA: (STAGES - 1) * NT * 2 *
 * 16 * 128 (48 KB at NT = 4), independent of register pressure.
 * Per step a row group computes the NT x GT partial dot products (8 dims per thread), reduces
 * them over its LANES lanes with a transposing butterfly (VALS - 1 shuffles for VALS values
 * instead of VALS * log2(LANES)), exchanges the full scores through shared memory (every lane
 * reads all VALS), then does ONE online-softmax rescale per step and head (not one per token),
 * and accumulates p * V for its 8 dims. Tokens past a page's valid count are masked (score
 * -inf, no V read into the sum: the pool may hold anything there, tests poison it with NaN).
 * At the end the NRG row-group states are merged through shared memory (which reuses the ring).
 *
 * Scores are computed in the log2 domain (q pre-scaled by scale * log2(e), exp2f); states leave
 * this file in log2 units (M) where noted.
 */
#ifndef KVC_ATTEND_CUH
#define KVC_ATTEND_CUH

#include <math_constants.h>

#include "kvc_internal.cuh"

#define KVC_THREADS 128
#define KVC_STAGES 4

/* cp.async helpers (sm_80+): 16 bytes global -> shared; src_bytes 0 fills zeros, reads nothing. */
__device__ __forceinline__ void kvc_cp_async16(void *smem, const void *gmem, int src_bytes) {
  const unsigned s = (unsigned)__cvta_generic_to_shared(smem);
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(s), "l"(gmem),
               "r"(src_bytes)
               : "memory");
}
__device__ __forceinline__ void kvc_cp_async_commit() {
  asm volatile("cp.async.commit_group;\n" ::: "memory");
}
template <int N>
__device__ __forceinline__ void kvc_cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

/* Transposing butterfly over OFF*2 lanes: N partial sums per lane -> after the levels, lane l
 * holds the full sums of values R*l .. R*l+R-1 (R = N_initial / lanes) in v[0..R). One level:
 * the lane keeps one half of its values and sends the other to its partner (lane ^ OFF). Written
 * as a template recursion so that every index is a compile-time constant (registers, no local
 * memory). */
template <int N, int OFF>
struct kvc_butterfly_level {
  static __device__ __forceinline__ void run(float *v, int lane) {
    const bool upper = (lane & OFF) != 0;
#pragma unroll
    for (int i = 0; i < N / 2; i++) {
      const float send = upper ? v[i] : v[i + N / 2];
      const float keep = upper ? v[i + N / 2] : v[i];
      v[i] = keep + __shfl_xor_sync(0xffffffffu, send, OFF);
    }
    kvc_butterfly_level<N / 2, OFF / 2>::run(v, lane);
  }
};
template <int N>
struct kvc_butterfly_level<N, 0> {
  static __device__ __forceinline__ void run(float *, int) {}
};
template <int N, int LANES>
struct kvc_butterfly {
  static __device__ __forceinline__ void run(float *v, int lane) {
    kvc_butterfly_level<N, LANES / 2>::run(v, lane);
  }
};

/* STAGES: depth of the cp.async ring (3 CTAs of 128 threads per SM at 4, 4 at 3: kvc_dense.cu picks
 * at run time, kvc_tune_set). */
template <typename T, int D, int GT, int STAGES = KVC_STAGES>
struct kvc_attend {
  static constexpr int VEC = 8;
  static constexpr int LANES = D / VEC;               /* 16 (D 128) or 8 (D 64) */
  static constexpr int NRG = KVC_THREADS / LANES;     /* row groups: 8 or 16 */
  static constexpr int NT = GT >= 8 ? 2 : 4;          /* tokens per row group and step */
  static constexpr int STEP = NRG * NT;               /* tokens per CTA step */
  static constexpr int VALS = NT * GT;                /* partial dots per thread and step: 16 */
  static constexpr int R = VALS / LANES;              /* full dots per lane after the reduce */
  static_assert(VALS % LANES == 0 && R >= 1, "reduce needs NT * GT to be a multiple of LANES");
  static_assert(16 % NT == 0, "a row group's tokens of one step must sit in one page");
  static constexpr size_t RING_BYTES = (size_t)STAGES * NT * 2 * KVC_THREADS * 16;
  static constexpr size_t MERGE_BYTES = ((size_t)NRG + 1) * GT * D * sizeof(float);
  /* Dynamic shared memory a kernel using run() must provide (cudaFuncSetAttribute above 48 KB). */
  static constexpr size_t DYN_BYTES = RING_BYTES > MERGE_BYTES ? RING_BYTES : MERGE_BYTES;

  struct smem_t {
    int32_t page[KVC_MAX_SPLIT_BLOCKS];   /* physical page of each listed block */
    int32_t ntok[KVC_MAX_SPLIT_BLOCKS];   /* valid tokens of each listed block */
    float sc[NRG][VALS];                  /* a row group's full scores of one step */
    float m[NRG][GT], l[NRG][GT];         /* row-group states for the final merge */
    float M[GT], L[GT];                   /* merged max (log2 units) and sum */
  };

  /* After run(): the merged unnormalised output of head g, dims [0, D), in the dynamic area. */
  static __device__ __forceinline__ float *out_o(void *dyn) {
    return reinterpret_cast<float *>(dyn) + (size_t)NRG * GT * D;
  }

  /* The calling thread's slice of the group's queries, pre-scaled: q[g][j] for dims lane*8+j. */
  typedef float qreg_t[GT][VEC];
  static __device__ __forceinline__ void load_q(const float *q_group, int G, float scale_log2,
                                                float (&q)[GT][VEC]) {
    const int lane = threadIdx.x % LANES;
#pragma unroll
    for (int g = 0; g < GT; g++) {
#pragma unroll
      for (int j = 0; j < VEC; j++) {
        q[g][j] = g < G ? q_group[g * D + lane * VEC + j] * scale_log2 : 0.0f;
      }
    }
  }

  /* Issues the cp.async copies of step `st` (this thread's NT tokens of K and V) into its ring
   * slots. Token slots past the list are zero-filled without a read. */
  static __device__ __forceinline__ void issue(const smem_t &sm, uint4 *ring,
                                               const T *__restrict__ kpool,
                                               const T *__restrict__ vpool, int Hkv, int bs,
                                               int kvh, int ntoks, int st) {
    const int lane = threadIdx.x % LANES, rg = threadIdx.x / LANES;
    const int stage = st % STAGES;
    const int tau0 = (st * NRG + rg) * NT;
    const int i = tau0 / bs, tok0 = tau0 - i * bs;
    const bool in = tau0 < ntoks; /* ntoks is a multiple of bs, bs of NT: all NT or none */
    const size_t base = in ? (((size_t)sm.page[i] * Hkv + kvh) * bs + tok0) * D + lane * VEC : 0;
#pragma unroll
    for (int j = 0; j < NT; j++) {
      uint4 *dk = ring + ((size_t)(stage * NT + j) * 2 + 0) * KVC_THREADS + threadIdx.x;
      uint4 *dv = ring + ((size_t)(stage * NT + j) * 2 + 1) * KVC_THREADS + threadIdx.x;
      kvc_cp_async16(dk, kpool + base + (size_t)j * D, in ? 16 : 0);
      kvc_cp_async16(dv, vpool + base + (size_t)j * D, in ? 16 : 0);
    }
  }

  /* One step of a row group: NT tokens (kk, vv: their K and V rows, this lane's 16 bytes; the
   * first nvalid are valid) against the GT heads: partial dots, the transposing butterfly, the
   * score exchange through sc (the row group's VALS floats of shared memory), one online-softmax
   * rescale per head, p * V. State m, l (log2 units), o (this lane's VEC dims) per head. */
  static __device__ __forceinline__ void step(const uint4 (&kk)[NT], const uint4 (&vv)[NT],
                                              int nvalid, float *sc, const float (&q)[GT][VEC],
                                              float (&m)[GT], float (&l)[GT],
                                              float (&o)[GT][VEC], int lane) {
    /* Partial dots: v[j * GT + g] over this lane's 8 dims. */
    float v[VALS];
#pragma unroll
    for (int j = 0; j < NT; j++) {
      float kf[VEC];
      kvc_unpack8<T>(kk[j], kf);
#pragma unroll
      for (int g = 0; g < GT; g++) {
        float a = 0.0f;
#pragma unroll
        for (int e = 0; e < VEC; e++) a = fmaf(q[g][e], kf[e], a);
        v[j * GT + g] = a;
      }
    }
    /* Transposing butterfly over the row group: lane ends with full dots R*lane .. R*lane+R-1. */
    kvc_butterfly<VALS, LANES>::run(v, lane);
#pragma unroll
    for (int i = 0; i < R; i++) sc[R * lane + i] = v[i];
    __syncwarp();
    float s[VALS];
#pragma unroll
    for (int i = 0; i < VALS; i += 4) {
      const float4 f = *reinterpret_cast<const float4 *>(&sc[i]);
      s[i] = f.x, s[i + 1] = f.y, s[i + 2] = f.z, s[i + 3] = f.w;
    }
    __syncwarp(); /* sc is rewritten next step */
    /* One rescale per step and head; masked tokens contribute nothing. */
    float p[NT][GT];
#pragma unroll
    for (int g = 0; g < GT; g++) {
      float mx = -CUDART_INF_F;
#pragma unroll
      for (int j = 0; j < NT; j++) {
        if (j < nvalid) mx = fmaxf(mx, s[j * GT + g]);
      }
      const float mn = fmaxf(m[g], mx);
      if (mn == -CUDART_INF_F) { /* nothing valid yet: state unchanged */
#pragma unroll
        for (int j = 0; j < NT; j++) p[j][g] = 0.0f;
        continue;
      }
      const float alpha = exp2f(m[g] - mn); /* 0 when m was -inf */
      float sum = 0.0f;
#pragma unroll
      for (int j = 0; j < NT; j++) {
        p[j][g] = j < nvalid ? exp2f(s[j * GT + g] - mn) : 0.0f;
        sum += p[j][g];
      }
      l[g] = fmaf(l[g], alpha, sum);
      m[g] = mn;
#pragma unroll
      for (int e = 0; e < VEC; e++) o[g][e] *= alpha;
    }
#pragma unroll
    for (int j = 0; j < NT; j++) {
      if (j < nvalid) { /* uniform within the row group */
        float vf[VEC];
        kvc_unpack8<T>(vv[j], vf);
#pragma unroll
        for (int g = 0; g < GT; g++) {
#pragma unroll
          for (int e = 0; e < VEC; e++) o[g][e] = fmaf(p[j][g], vf[e], o[g][e]);
        }
      }
    }
  }

  /* Attention over sm.page[0..nblk) (tokens sm.ntok[i] of each) of KV head kvh. Requires
   * sm.page/ntok written and a __syncthreads() before the call; dyn = DYN_BYTES of dynamic shared
   * memory. On return (after a barrier): sm.M[g], sm.L[g], out_o(dyn)[g * D + d] = merged state
   * of head g (M in log2 units, o unnormalised, relative to M); M = -inf and L = 0 when no token
   * was valid. */
  static __device__ void run(smem_t &sm, void *dyn, const T *__restrict__ kpool,
                             const T *__restrict__ vpool, int Hkv, int bs, int kvh, int nblk,
                             int G, const float (&q)[GT][VEC]) {
    const int lane = threadIdx.x % LANES, rg = threadIdx.x / LANES;
    uint4 *ring = reinterpret_cast<uint4 *>(dyn);
    const int ntoks = nblk * bs;
    const int nsteps = (ntoks + STEP - 1) / STEP;
    float m[GT], l[GT], o[GT][VEC];
#pragma unroll
    for (int g = 0; g < GT; g++) {
      m[g] = -CUDART_INF_F;
      l[g] = 0.0f;
#pragma unroll
      for (int j = 0; j < VEC; j++) o[g][j] = 0.0f;
    }
#pragma unroll
    for (int s = 0; s < STAGES - 1; s++) {
      if (s < nsteps) issue(sm, ring, kpool, vpool, Hkv, bs, kvh, ntoks, s);
      kvc_cp_async_commit(); /* possibly empty: keeps the group count uniform */
    }
    for (int st = 0; st < nsteps; st++) {
      kvc_cp_async_wait<STAGES - 2>(); /* step st's group has landed */
      const int stage = st % STAGES;
      uint4 kk[NT], vv[NT];
#pragma unroll
      for (int j = 0; j < NT; j++) {
        kk[j] = ring[((size_t)(stage * NT + j) * 2 + 0) * KVC_THREADS + threadIdx.x];
        vv[j] = ring[((size_t)(stage * NT + j) * 2 + 1) * KVC_THREADS + threadIdx.x];
      }
      /* The slot refilled now was consumed (into registers) in the previous step. */
      if (st + STAGES - 1 < nsteps) {
        issue(sm, ring, kpool, vpool, Hkv, bs, kvh, ntoks, st + STAGES - 1);
      }
      kvc_cp_async_commit();
      const int tau0 = (st * NRG + rg) * NT;
      const int bi = tau0 / bs, tok0 = tau0 - bi * bs;
      const int nvalid = tau0 < ntoks ? sm.ntok[bi] - tok0 : 0; /* valid tokens of the NT */
      step(kk, vv, nvalid, sm.sc[rg], q, m, l, o, lane);
    }
    kvc_cp_async_wait<0>();
    __syncthreads(); /* the ring becomes the merge area */
    float *mo = reinterpret_cast<float *>(dyn); /* [NRG][GT][D] */
#pragma unroll
    for (int g = 0; g < GT; g++) {
      if (lane == 0) {
        sm.m[rg][g] = m[g];
        sm.l[rg][g] = l[g];
      }
#pragma unroll
      for (int e = 0; e < VEC; e += 4) {
        *reinterpret_cast<float4 *>(&mo[((size_t)rg * GT + g) * D + lane * VEC + e]) =
            make_float4(o[g][e], o[g][e + 1], o[g][e + 2], o[g][e + 3]);
      }
    }
    __syncthreads();
    float *out = out_o(dyn);
    for (int idx = threadIdx.x; idx < G * D; idx += KVC_THREADS) {
      const int g = idx / D, d = idx - g * D;
      float M = -CUDART_INF_F;
      for (int r = 0; r < NRG; r++) M = fmaxf(M, sm.m[r][g]);
      float L = 0.0f, O = 0.0f;
      if (M != -CUDART_INF_F) {
        for (int r = 0; r < NRG; r++) {
          const float mr = sm.m[r][g];
          const float w = mr == -CUDART_INF_F ? 0.0f : exp2f(mr - M);
          L = fmaf(sm.l[r][g], w, L);
          O = fmaf(mo[((size_t)r * GT + g) * D + d], w, O);
        }
      }
      out[(size_t)g * D + d] = O;
      if (d == 0) {
        sm.M[g] = M;
        sm.L[g] = L;
      }
    }
    __syncthreads();
  }
};

#endif /* KVC_ATTEND_CUH */

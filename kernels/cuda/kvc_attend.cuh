/* kvc_attend.cuh — the core every decode kernel shares: exact attention of a GQA group's query
 * heads over a list of pages of one KV head, in one CTA, with an online softmax.
 *
 * Thread mapping: a 16-byte load holds 8 elements; LANES = head_dim / 8 threads read one token's
 * row (K or V) with one load each, so a CTA of 128 threads reads ROWS = 128 / LANES tokens per
 * step ("chunk": 8 tokens at head_dim 128, 16 at 64), fully coalesced: a page of one KV head is
 * contiguous in the HND layout. Every row group keeps its own online-softmax state for all the
 * group's heads (one KV load serves the G query heads), so there is no synchronisation inside the
 * loop; the ROWS states are merged through shared memory at the end.
 *
 * Latency: loads run PF chunks ahead of use (a register ring indexed by unrolled constants), so
 * each thread keeps 2 * PF 16-byte loads in flight; page indices are resolved into shared memory
 * before the loop, so the loop issues no dependent index loads.
 *
 * Scores are computed in the log2 domain (q pre-scaled by scale * log2(e), exp2f); states leave
 * this file in natural-log units where noted.
 */
#ifndef KVC_ATTEND_CUH
#define KVC_ATTEND_CUH

#include <math_constants.h>

#include "kvc_internal.cuh"

#define KVC_THREADS 128

template <typename T, int D, int GT>
struct kvc_attend {
  static constexpr int VEC = 8;
  static constexpr int LANES = D / VEC;
  static constexpr int ROWS = KVC_THREADS / LANES;
  static constexpr int PF = 4;

  struct smem_t {
    int32_t page[KVC_MAX_SPLIT_BLOCKS];   /* physical page of each listed block */
    int32_t ntok[KVC_MAX_SPLIT_BLOCKS];   /* valid tokens of each listed block */
    float m[ROWS][GT], l[ROWS][GT];
    float o[ROWS][GT][D];                 /* after run(): o[0][g][:] holds the merged output */
    float M[GT], L[GT];                   /* merged max (log2 units) and sum */
  };

  /* The calling thread's slice of the group's queries, pre-scaled: q[g][j] for dims lane*8+j. */
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

  /* Attention over sm.page[0..nblk) (tokens sm.ntok[i] of each) of KV head kvh. Requires
   * sm.page/ntok written and a __syncthreads() before the call. On return (after a barrier):
   * sm.M[g], sm.L[g], sm.o[0][g][d] = merged state of head g (M in log2 units, o unnormalised,
   * relative to M); M = -inf and L = 0 when no token was valid. */
  static __device__ void run(smem_t &sm, const T *__restrict__ kpool, const T *__restrict__ vpool,
                             int Hkv, int bs, int kvh, int nblk, int G, const float (&q)[GT][VEC]) {
    const int lane = threadIdx.x % LANES, row = threadIdx.x / LANES;
    const int cpp = bs / ROWS; /* chunks per page */
    const int nchunks = nblk * cpp;
    float m[GT], l[GT], o[GT][VEC];
#pragma unroll
    for (int g = 0; g < GT; g++) {
      m[g] = -CUDART_INF_F;
      l[g] = 0.0f;
#pragma unroll
      for (int j = 0; j < VEC; j++) o[g][j] = 0.0f;
    }
    uint4 kb[PF], vb[PF];
#pragma unroll
    for (int s = 0; s < PF; s++) {
      if (s < nchunks) load(sm, kpool, vpool, Hkv, bs, kvh, cpp, s, lane, row, kb[s], vb[s]);
    }
    for (int c0 = 0; c0 < nchunks; c0 += PF) {
#pragma unroll
      for (int s = 0; s < PF; s++) {
        const int c = c0 + s;
        if (c < nchunks) {
          const uint4 kk = kb[s], vv = vb[s];
          if (c + PF < nchunks) {
            load(sm, kpool, vpool, Hkv, bs, kvh, cpp, c + PF, lane, row, kb[s], vb[s]);
          }
          const int i = c / cpp, tok = (c - i * cpp) * ROWS + row;
          const bool valid = tok < sm.ntok[i];
          float kf[VEC], vf[VEC];
          kvc_unpack8<T>(kk, kf);
          float dot[GT];
#pragma unroll
          for (int g = 0; g < GT; g++) {
            float a = 0.0f;
#pragma unroll
            for (int j = 0; j < VEC; j++) a = fmaf(q[g][j], kf[j], a);
            dot[g] = a;
          }
#pragma unroll
          for (int off = LANES / 2; off > 0; off >>= 1) {
#pragma unroll
            for (int g = 0; g < GT; g++) dot[g] += __shfl_xor_sync(0xffffffffu, dot[g], off);
          }
          if (valid) {
            kvc_unpack8<T>(vv, vf);
#pragma unroll
            for (int g = 0; g < GT; g++) {
              if (g < G) {
                const float mn = fmaxf(m[g], dot[g]);
                const float cs = exp2f(m[g] - mn); /* 0 on the first valid token (m = -inf) */
                const float p = exp2f(dot[g] - mn);
                l[g] = fmaf(l[g], cs, p);
#pragma unroll
                for (int j = 0; j < VEC; j++) o[g][j] = fmaf(o[g][j], cs, p * vf[j]);
                m[g] = mn;
              }
            }
          }
        }
      }
    }
    /* Merge the ROWS row-group states. */
#pragma unroll
    for (int g = 0; g < GT; g++) {
      if (lane == 0) {
        sm.m[row][g] = m[g];
        sm.l[row][g] = l[g];
      }
#pragma unroll
      for (int j = 0; j < VEC; j++) sm.o[row][g][lane * VEC + j] = o[g][j];
    }
    __syncthreads();
    for (int idx = threadIdx.x; idx < G * D; idx += KVC_THREADS) {
      const int g = idx / D, d = idx - g * D;
      float M = -CUDART_INF_F;
      for (int r = 0; r < ROWS; r++) M = fmaxf(M, sm.m[r][g]);
      float L = 0.0f, O = 0.0f;
      if (M != -CUDART_INF_F) {
        for (int r = 0; r < ROWS; r++) {
          const float mr = sm.m[r][g];
          const float w = mr == -CUDART_INF_F ? 0.0f : exp2f(mr - M);
          L = fmaf(sm.l[r][g], w, L);
          O = fmaf(sm.o[r][g][d], w, O);
        }
      }
      sm.o[0][g][d] = O; /* only this thread reads or writes column (g, d) */
      if (d == 0) {
        sm.M[g] = M;
        sm.L[g] = L;
      }
    }
    __syncthreads();
  }

  static __device__ __forceinline__ void load(const smem_t &sm, const T *__restrict__ kpool,
                                              const T *__restrict__ vpool, int Hkv, int bs,
                                              int kvh, int cpp, int c, int lane, int row,
                                              uint4 &k, uint4 &v) {
    const int i = c / cpp, tok = (c - i * cpp) * ROWS + row;
    const size_t off = (((size_t)sm.page[i] * Hkv + kvh) * bs + tok) * D + lane * VEC;
    k = __ldg(reinterpret_cast<const uint4 *>(kpool + off));
    v = __ldg(reinterpret_cast<const uint4 *>(vpool + off));
  }
};

#endif /* KVC_ATTEND_CUH */

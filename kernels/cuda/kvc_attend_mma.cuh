/* kvc_attend_mma.cuh — the tensor-core variant of the attend core (v4): exact attention of a GQA
 * group of at most 4 query heads over a list of pages of one KV head, in one CTA of 4 warps, with
 * an online softmax; the same contract as kvc_attend<T, D, 4, S>::run (kvc_attend.cuh), selected
 * at run time by KVC_TUNE_DENSE_CORE = 1 (dense split-K only; kvc_dense.cu).
 *
 * Arithmetic: mma.sync.aligned.m16n8k16, f16/bf16 inputs (the pool's type), fp32 accumulators.
 *   S = Q K^T: A = the group's queries on 16 rows, B = K^T of 8 tokens (n-tile) x 16 dims (k-step).
 *   O += P V:  A = the probabilities P on 16 rows x 16 tokens, B = V of 16 tokens x 8 dims.
 * fp32 accuracy with 16-bit inputs: Q (pre-scaled, fp32) and P (fp32) are split into three parts
 * x = hi + mid + lo, each representable in the pool's type (hi = rn(x), mid = rn(x - hi), lo =
 * rn(x - hi - mid); the residues are exact in fp32), and the parts go on different ROWS of the
 * 16-row A operand (kvc_mma_layout.h: rows 0-3 hi of heads 0-3, 4-7 mid, 8-11 lo, 12-15 zero):
 * the padding rows a group of 4 heads leaves free, so the split costs no extra mma. K and V are
 * exact in the pool's type. S of head g = rows g + g+4 + g+8 (one shuffle: lane ^ 16); O likewise,
 * summed once at the end (the rows of a head share its max, so they rescale together).
 * Per warp step: 16 tokens (one k16 of PV; within one page since block_size % 16 == 0):
 *   S: 2 n-tiles x D/16 k-steps = 16 mma (D 128) + 8 ldmatrix.x4 for K;
 *   PV: D/8 n-tiles = 16 mma + 8 ldmatrix.x4.trans for V;
 *   softmax on 4 scores per lane (one head, 4 tokens), the O rescale skipped when no lane's max
 *   moved (__any_sync), P split and packed into the A fragment directly from the S accumulators.
 * Staging: each warp owns its 16-token K and V tiles of a STAGES-deep cp.async ring (swizzled:
 * kvc_swz, conflict-free ldmatrix); a warp copies its own tiles, waits for its group and
 * __syncwarp()s before ldmatrix reads other lanes' copies (no CTA barrier in the loop). Tokens
 * past a page's valid count and past the list are zero-filled by cp.async (src-size 0: nothing is
 * read), so no NaN of the pool's unused slots reaches an mma (0 x NaN = NaN), and their scores are
 * masked to -inf (p = 0).
 * Warps take 16-token chunks round-robin (chunk = step * 4 + warp); each keeps its own state
 * (max and sum per head, O on 16 rows x D in accumulator fragments); the 4 warp states are merged
 * through shared memory at the end, as kvc_attend merges its row groups.
 * Scores are in the log2 domain (q pre-scaled by scale * log2(e), exp2f), as in kvc_attend.
 */
#ifndef KVC_ATTEND_MMA_CUH
#define KVC_ATTEND_MMA_CUH

#include "kvc_attend.cuh"
#include "kvc_bulk.cuh"
#include "kvc_mma_layout.h"

/* m16n8k16 with fp32 accumulation in place: d += A B. */
template <typename T>
struct kvc_mma_op;
template <>
struct kvc_mma_op<__nv_bfloat16> {
  static __device__ __forceinline__ void mma(float (&d)[4], const uint32_t (&a)[4], uint32_t b0,
                                             uint32_t b1) {
    asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
        "{%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  }
  /* Two fp32 values rounded to nearest, packed: x0 in the low 16 bits (element a0 / b0). */
  static __device__ __forceinline__ uint32_t pack(float x0, float x1) {
    __nv_bfloat162 h = __floats2bfloat162_rn(x0, x1);
    uint32_t u;
    memcpy(&u, &h, 4);
    return u;
  }
};
template <>
struct kvc_mma_op<__half> {
  static __device__ __forceinline__ void mma(float (&d)[4], const uint32_t (&a)[4], uint32_t b0,
                                             uint32_t b1) {
    asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
        "{%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  }
  static __device__ __forceinline__ uint32_t pack(float x0, float x1) {
    __half2 h = __floats2half2_rn(x0, x1);
    uint32_t u;
    memcpy(&u, &h, 4);
    return u;
  }
};

__device__ __forceinline__ void kvc_ldsm_x4(uint32_t (&r)[4], const void *smem) {
  const unsigned s = (unsigned)__cvta_generic_to_shared(smem);
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(s)
               : "memory");
}
__device__ __forceinline__ void kvc_ldsm_x4_trans(uint32_t (&r)[4], const void *smem) {
  const unsigned s = (unsigned)__cvta_generic_to_shared(smem);
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(s)
               : "memory");
}

/* Part p (0 hi, 1 mid, 2 lo, 3 zero) of x in the type T (as fp32): x = hi + mid + lo + O(2^-24 x)
 * for bf16 (8-bit significands; fp16's 11 bits need only two parts, the third is then ~0). */
template <typename T>
__device__ __forceinline__ float kvc_split_part(float x, int p) {
  const float hi = kvc_elem<T>::to_f(kvc_elem<T>::from_f(x));
  const float r1 = x - hi; /* exact */
  const float mid = kvc_elem<T>::to_f(kvc_elem<T>::from_f(r1));
  const float r2 = r1 - mid; /* exact */
  return p == 0 ? hi : p == 1 ? mid : p == 2 ? r2 : 0.0f; /* lo = rn(r2), rounded by pack() */
}

/* v5: BULK = true stages the tiles with 1-D bulk copies (cp.async.bulk, sm_90; kvc_bulk.cuh)
 * instead of per-lane 16-byte cp.async: KVC_TUNE_DENSE_CORE = 2 (dense only). A bulk copy cannot
 * swizzle, and token rows of D * 2 bytes (256 B at D 128) at that stride put the 8 rows of an
 * ldmatrix 8x8 matrix on the same 4 banks (8-way conflict), so each token row is its own copy
 * into a row pitch of D * 2 + 16 bytes (rows shift by 16 B = 4 banks: conflict-free; checked on
 * the CPU by test_kvc_host's test_ring_parity_model): lane i < 16 copies K row i, lane 16 + i V row
 * i of the warp's chunk, 32 copies per warp step. Completion: one mbarrier per (slot, warp), in
 * dynamic shared memory after the ring / merge area; lane 0 arrives with expect_tx(bytes of the
 * valid rows) before the copies (a chunk with no valid token: a plain arrival, so every step
 * completes exactly one phase of its slot's barrier); every lane waits on parity (st / STAGES) & 1
 * (kvc_ring.h). Invalid rows are never copied (no read of the pool's unused slots): V rows past
 * the valid count are zeroed by their lane with ordinary stores (P = 0 must not meet a NaN of a
 * stale or uninitialised row); K rows past it are left as they are (their scores are replaced by
 * -inf, and S columns are independent). Each lane fences (fence.proxy.async) before its copy:
 * its own zero stores and the warp's ldmatrix reads of the slot (ordered by __syncwarp) precede
 * the async-proxy write. */
/* v6: REGS = true stages the tiles through registers (KVC_TUNE_DENSE_CORE = 3, dense only): the
 * read path of the fastest measured probe (`read-ldg8`, 4,575 GB/s on the H200: per-thread 16-byte
 * ld.global.cg, 8+ independent loads in flight per thread), then st.shared into the same
 * swizzled tile the v4 core reads (kvc_swz: conflict-free ldmatrix). Ring of 2 slots (STAGES = 2).
 * Per warp step st (warp-private tiles, no CTA barrier, as v4):
 *   (a) issue the 2 x PPL 16-byte loads of step st + 1 (K and V pieces of the lane, the same
 *       pieces as v4's cp.async: lane / CH + j * 32 / CH, column lane % CH) into registers;
 *       tokens past the chunk's valid count are not loaded (the register is zero: no NaN of the
 *       pool's unused slots reaches an mma);
 *   (b) compute step st from slot st % 2 (the ldmatrix asm carries a "memory" clobber, so the
 *       compiler cannot sink the loads of (a) below it: they stay in flight during (b));
 *   (c) st.shared the registers into slot (st + 1) % 2 (read by step st - 1, whose reads precede
 *       the __syncwarp that ended step st - 1), then __syncwarp (the stores visible to the warp's
 *       ldmatrix of step st + 1).
 * Prologue: step 0 loaded and stored before the loop. Bytes in flight per warp: 8 KB (D 128)
 * during (b). */
/* v7: PF256 = true (REGS only; KVC_TUNE_DENSE_CORE = 4) issues the same loads with the
 * L2::256B prefetch-size hint (kvc_ldcg_pf256). */
template <typename T, int D, int GT, int STAGES, bool BULK = false, bool REGS = false,
          bool PF256 = false>
struct kvc_attend_mma {
  static_assert(GT == 4, "the tensor-core core serves groups of at most 4 heads");
  static constexpr int NW = KVC_THREADS / 32;   /* warps: 4 */
  static constexpr int TW = 16;                 /* tokens per warp step */
  static constexpr int STEP = NW * TW;          /* tokens per CTA step */
  static constexpr int KS = D / 16;             /* k-steps of S */
  static constexpr int NO = D / 8;              /* n-tiles of O */
  static constexpr int CH = D / 8;              /* 16-byte chunks per token row */
  static constexpr int TILE_BYTES = TW * D * 2; /* one K or V tile */
  static constexpr int PPL = TW * CH / 32;      /* cp.async pieces per lane and tile */
  static_assert(CH >= 8 && KS % 2 == 0, "head_dim 64 or 128");
  static constexpr int PITCH = BULK ? D * 2 + 16 : D * 2; /* bytes per token row of a tile */
  static constexpr int TILE_SLOT = TW * PITCH;            /* bytes of one tile in the ring */
  static constexpr size_t RING_BYTES = (size_t)STAGES * NW * 2 * TILE_SLOT;
  static constexpr size_t MERGE_BYTES = ((size_t)NW + 1) * GT * D * sizeof(float);
  static constexpr size_t AREA_BYTES = RING_BYTES > MERGE_BYTES ? RING_BYTES : MERGE_BYTES;
  static constexpr size_t BAR_OFF = (AREA_BYTES + 15) / 16 * 16; /* BULK: mbarriers [STAGES][NW] */
  static constexpr size_t DYN_BYTES = BULK ? BAR_OFF + (size_t)STAGES * NW * 8 : AREA_BYTES;
  static_assert(!BULK || TW == 16, "one lane per K row and per V row");
  static_assert(!REGS || (STAGES == 2 && !BULK), "register staging: 2 slots, no bulk copies");

  /* Byte offset in a tile of 16-byte column c of token row t. */
  static __device__ __forceinline__ int tile_off(int t, int c) {
    if constexpr (BULK) {
      return kvc_ring_tile_off(t, c * 16, PITCH);
    } else {
      return t * D * 2 + kvc_swz(t, c) * 16;
    }
  }

  struct smem_t {
    int32_t page[KVC_MAX_SPLIT_BLOCKS];   /* physical page of each listed block */
    int32_t ntok[KVC_MAX_SPLIT_BLOCKS];   /* valid tokens of each listed block */
    float m[NW][GT], l[NW][GT];           /* warp states for the final merge */
    float M[GT], L[GT];                   /* merged max (log2 units) and sum */
  };
  /* The query A fragments of every k-step (hi / mid / lo rows, kvc_row_part). */
  typedef uint32_t qreg_t[KS][4];

  static __device__ __forceinline__ float *out_o(void *dyn) {
    return reinterpret_cast<float *>(dyn) + (size_t)NW * GT * D;
  }

  /* The calling lane's A fragments of the group's pre-scaled queries (heads >= G are zero). */
  static __device__ __forceinline__ void load_q(const float *q_group, int G, float scale_log2,
                                                qreg_t &qf) {
    const int lane = threadIdx.x % 32;
#pragma unroll
    for (int kk = 0; kk < KS; kk++) {
#pragma unroll
      for (int r = 0; r < 4; r++) {
        float x[2];
#pragma unroll
        for (int h = 0; h < 2; h++) {
          int row, col;
          kvc_mma_a_rc(lane, 2 * r + h, &row, &col);
          const int g = kvc_row_head(row), part = kvc_row_part(row);
          const float v = g < G ? q_group[g * D + kk * 16 + col] * scale_log2 : 0.0f;
          x[h] = kvc_split_part<T>(v, part);
        }
        qf[kk][r] = kvc_mma_op<T>::pack(x[0], x[1]);
      }
    }
  }

  /* Valid tokens (may be <= 0) of the 16-token chunk ci of the list; *page_i, *tok0: its block
   * and first token in it (meaningful when the result is > 0). lg_bs: log2(bs) when bs is a power
   * of two (a shift instead of the division), else -1. */
  static __device__ __forceinline__ int chunk_valid(const smem_t &sm, int bs, int lg_bs, int ntoks,
                                                    int ci, int *page_i, int *tok0) {
    const int tau0 = ci * TW;
    const int i = lg_bs >= 0 ? tau0 >> lg_bs : tau0 / bs;
    *page_i = i;
    *tok0 = tau0 - i * bs;
    return tau0 < ntoks ? min(TW, sm.ntok[i] - *tok0) : 0;
  }

  /* cp.async of the warp's chunk of step st into its slot (K tile, then V tile); invalid tokens
   * are zero-filled without a read (src-size 0; the address stays inside the pool: the chunk's own
   * page, or page 0's first 16 rows for a chunk past the list). Piece j of a lane is token
   * lane / CH + j * 32 / CH, chunk lane % CH (test_kvc_mma.c checks the tile is covered once). */
  static __device__ __forceinline__ void issue(const smem_t &sm, unsigned char *ring,
                                               const T *__restrict__ kpool,
                                               const T *__restrict__ vpool, int Hkv, int bs,
                                               int lg_bs, int kvh, int ntoks, int st) {
    constexpr int TPJ = 32 / CH; /* tokens per piece index j */
    const int lane = threadIdx.x % 32, w = threadIdx.x / 32;
    int pi, tok0;
    const int nv = chunk_valid(sm, bs, lg_bs, ntoks, st * NW + w, &pi, &tok0);
    unsigned char *kt = ring + ((size_t)(st % STAGES) * NW + w) * 2 * TILE_SLOT;
    unsigned char *vt = kt + TILE_SLOT;
    const int t0 = lane / CH, c = lane % CH;
    const size_t base = (nv > 0 ? (((size_t)sm.page[pi] * Hkv + kvh) * bs + tok0) * D : 0) +
                        (size_t)t0 * D + c * 8;
    const T *kp = kpool + base, *vp = vpool + base;
#pragma unroll
    for (int j = 0; j < PPL; j++) {
      const int t = t0 + TPJ * j;
      const int bytes = t < nv ? 16 : 0;
      const int dst = t * D * 2 + kvc_swz(t, c) * 16;
      kvc_cp_async16(kt + dst, kp + j * TPJ * D, bytes);
      kvc_cp_async16(vt + dst, vp + j * TPJ * D, bytes);
    }
  }

  /* BULK: the warp's chunk of step st into slot st % STAGES (see the comment above the struct).
   * Called by all 32 lanes of the warp, after a __syncwarp that follows the warp's last reads of
   * the slot. */
  static __device__ __forceinline__ void issue_bulk(const smem_t &sm, unsigned char *ring,
                                                    uint64_t *bars, const T *__restrict__ kpool,
                                                    const T *__restrict__ vpool, int Hkv, int bs,
                                                    int lg_bs, int kvh, int ntoks, int st) {
    const int lane = threadIdx.x % 32, w = threadIdx.x / 32;
    int pi, tok0;
    const int nv = chunk_valid(sm, bs, lg_bs, ntoks, st * NW + w, &pi, &tok0);
    const int slot = kvc_ring_slot(st, STAGES);
    uint64_t *bar = bars + slot * NW + w;
    unsigned char *kt = ring + ((size_t)slot * NW + w) * 2 * TILE_SLOT;
    const int row = lane & 15;
    const bool is_v = lane >= 16;
    unsigned char *dst = kt + (is_v ? TILE_SLOT : 0) + tile_off(row, 0);
    if (lane == 0) {
      if (nv > 0) kvc_mbar_expect_tx(bar, (uint32_t)(2 * nv * D * 2));
      else kvc_mbar_arrive(bar);
    }
    __syncwarp();
    if (row < nv) {
      const size_t off = (((size_t)sm.page[pi] * Hkv + kvh) * bs + tok0 + row) * D;
      kvc_fence_proxy_async();
      kvc_bulk_g2s(dst, (is_v ? vpool : kpool) + off, (uint32_t)(D * 2), bar);
    } else if (is_v) {
#pragma unroll
      for (int c = 0; c < CH; c++) reinterpret_cast<uint4 *>(dst)[c] = make_uint4(0, 0, 0, 0);
    }
  }

  /* REGS: the lane's pieces of the warp's chunk of step st (K then V), loaded into registers
   * (zero for tokens past the chunk's valid count: not read). */
  static __device__ __forceinline__ void load_regs(const smem_t &sm, const T *__restrict__ kpool,
                                                   const T *__restrict__ vpool, int Hkv, int bs,
                                                   int lg_bs, int kvh, int ntoks, int st,
                                                   uint4 (&kr)[PPL], uint4 (&vr)[PPL]) {
    constexpr int TPJ = 32 / CH;
    const int lane = threadIdx.x % 32, w = threadIdx.x / 32;
    int pi, tok0;
    const int nv = chunk_valid(sm, bs, lg_bs, ntoks, st * NW + w, &pi, &tok0);
    const int t0 = lane / CH, c = lane % CH;
    const size_t base = (nv > 0 ? (((size_t)sm.page[pi] * Hkv + kvh) * bs + tok0) * D : 0) +
                        (size_t)t0 * D + c * 8;
    const uint4 *kp = reinterpret_cast<const uint4 *>(kpool + base);
    const uint4 *vp = reinterpret_cast<const uint4 *>(vpool + base);
    constexpr int JS = TPJ * D / 8; /* uint4 stride between pieces j and j + 1 */
#pragma unroll
    for (int j = 0; j < PPL; j++) {
      const bool in = t0 + TPJ * j < nv;
      if constexpr (PF256) {
        kr[j] = in ? kvc_ldcg_pf256(kp + j * JS) : make_uint4(0, 0, 0, 0);
        vr[j] = in ? kvc_ldcg_pf256(vp + j * JS) : make_uint4(0, 0, 0, 0);
      } else {
        kr[j] = in ? __ldcg(kp + j * JS) : make_uint4(0, 0, 0, 0);
        vr[j] = in ? __ldcg(vp + j * JS) : make_uint4(0, 0, 0, 0);
      }
    }
  }
  /* REGS: the registers of load_regs into slot st % STAGES (swizzled, as issue() places them). */
  static __device__ __forceinline__ void store_regs(unsigned char *ring, int st,
                                                    const uint4 (&kr)[PPL], const uint4 (&vr)[PPL]) {
    constexpr int TPJ = 32 / CH;
    const int lane = threadIdx.x % 32, w = threadIdx.x / 32;
    unsigned char *kt = ring + ((size_t)(st % STAGES) * NW + w) * 2 * TILE_SLOT;
    unsigned char *vt = kt + TILE_SLOT;
    const int t0 = lane / CH, c = lane % CH;
#pragma unroll
    for (int j = 0; j < PPL; j++) {
      const int t = t0 + TPJ * j;
      const int dst = t * D * 2 + kvc_swz(t, c) * 16;
      *reinterpret_cast<uint4 *>(kt + dst) = kr[j];
      *reinterpret_cast<uint4 *>(vt + dst) = vr[j];
    }
  }

  /* One warp step: the chunk of nv > 0 valid tokens in tiles kt (K) and vt (V) into the lane's
   * state (m: its head's running max, log2 units; l: the sum over this lane's tokens; o: the O
   * accumulator fragments of the 16 rows). plo / phi: kvc_lane_part_lo_row / _hi_row. Shared by
   * run() and PSA's tensor-core items (kvc_psa.cu). */
  static __device__ __forceinline__ void chunk(const unsigned char *kt, const unsigned char *vt,
                                               int nv, const qreg_t &qf, int plo, int phi,
                                               float &m, float &l, float (&o)[NO][4]) {
    const int lane = threadIdx.x % 32;
    /* S = Q K^T: per n-tile two accumulators (even / odd k-steps) for independent chains. */
    float sacc[2][2][4];
#pragma unroll
    for (int j = 0; j < 2; j++) {
#pragma unroll
      for (int a = 0; a < 2; a++) sacc[j][a][0] = sacc[j][a][1] = sacc[j][a][2] = sacc[j][a][3] = 0.0f;
    }
#pragma unroll
    for (int kk = 0; kk < KS; kk += 2) {
#pragma unroll
      for (int j = 0; j < 2; j++) {
        int t, c;
        kvc_ldsm_k_addr(lane, j, 2 * kk, &t, &c);
        uint32_t b[4];
        kvc_ldsm_x4(b, kt + tile_off(t, c));
        kvc_mma_op<T>::mma(sacc[j][0], qf[kk], b[0], b[1]);
        kvc_mma_op<T>::mma(sacc[j][1], qf[kk + 1], b[2], b[3]);
      }
    }
    /* Full scores of the lane's head for tokens kvc_s_token(lane, j, h): rows of its parts on
     * this lane (c_h + c_{h+2}) plus the other parts on lane ^ 16. Masked tokens: -inf. */
    float s[2][2];
    float mx = -CUDART_INF_F;
#pragma unroll
    for (int j = 0; j < 2; j++) {
#pragma unroll
      for (int h = 0; h < 2; h++) {
        float x = (sacc[j][0][h] + sacc[j][1][h]) + (sacc[j][0][h + 2] + sacc[j][1][h + 2]);
        x += __shfl_xor_sync(0xffffffffu, x, 16);
        s[j][h] = kvc_s_token(lane, j, h) < nv ? x : -CUDART_INF_F;
        mx = fmaxf(mx, s[j][h]);
      }
    }
    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
    const float mn = fmaxf(m, mx); /* finite: token 0 of the chunk is valid (nv > 0) */
    const float alpha = exp2f(m - mn); /* 0 when m was -inf */
    m = mn;
    float p[2][2];
#pragma unroll
    for (int j = 0; j < 2; j++) {
#pragma unroll
      for (int h = 0; h < 2; h++) p[j][h] = exp2f(s[j][h] - mn); /* masked: exp2(-inf) = 0 */
    }
    l = fmaf(l, alpha, (p[0][0] + p[0][1]) + (p[1][0] + p[1][1]));
    if (__any_sync(0xffffffffu, alpha != 1.0f)) {
#pragma unroll
      for (int n = 0; n < NO; n++) {
        o[n][0] *= alpha, o[n][1] *= alpha, o[n][2] *= alpha, o[n][3] *= alpha;
      }
    }
    /* P A-fragment: register 2j + r holds row groupID (+8 if r) for tokens of n-tile j. */
    uint32_t pa[4];
#pragma unroll
    for (int j = 0; j < 2; j++) {
      pa[2 * j] = kvc_mma_op<T>::pack(kvc_split_part<T>(p[j][0], plo), kvc_split_part<T>(p[j][1], plo));
      pa[2 * j + 1] = kvc_mma_op<T>::pack(kvc_split_part<T>(p[j][0], phi), kvc_split_part<T>(p[j][1], phi));
    }
    /* O += P V: two output n-tiles per ldmatrix.x4.trans. */
#pragma unroll
    for (int n = 0; n < NO; n += 2) {
      int t, c;
      kvc_ldsm_v_addr(lane, n, &t, &c);
      uint32_t b[4];
      kvc_ldsm_x4_trans(b, vt + tile_off(t, c));
      kvc_mma_op<T>::mma(o[n], pa, b[0], b[1]);
      kvc_mma_op<T>::mma(o[n + 1], pa, b[2], b[3]);
    }
  }

  /* Attention over sm.page[0..nblk) (tokens sm.ntok[i] of each) of KV head kvh: the contract of
   * kvc_attend::run (sm.M, sm.L, out_o(dyn) on return, after a barrier). */
  static __device__ void run(smem_t &sm, void *dyn, const T *__restrict__ kpool,
                             const T *__restrict__ vpool, int Hkv, int bs, int kvh, int nblk,
                             int G, const qreg_t &qf) {
    const int lane = threadIdx.x % 32, w = threadIdx.x / 32;
    unsigned char *ring = reinterpret_cast<unsigned char *>(dyn);
    const int ntoks = nblk * bs;
    const int nsteps = (ntoks + STEP - 1) / STEP;
    const int plo = kvc_lane_part_lo_row(lane), phi = kvc_lane_part_hi_row(lane);
    const int lg_bs = (bs & (bs - 1)) == 0 ? __ffs(bs) - 1 : -1;
    float o[NO][4];
#pragma unroll
    for (int n = 0; n < NO; n++) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.0f;
    float m = -CUDART_INF_F, l = 0.0f; /* the lane's head; l: this lane's tokens only */
    uint64_t *bars = reinterpret_cast<uint64_t *>(reinterpret_cast<unsigned char *>(dyn) + BAR_OFF);
    uint4 kr[PPL], vr[PPL]; /* REGS: the pieces of the next step, in flight */
    if constexpr (REGS) {
      if (nsteps > 0) {
        load_regs(sm, kpool, vpool, Hkv, bs, lg_bs, kvh, ntoks, 0, kr, vr);
        store_regs(ring, 0, kr, vr);
      }
      __syncwarp();
    } else if constexpr (BULK) {
      if (lane == 0) {
        for (int s = 0; s < STAGES; s++) kvc_mbar_init(bars + s * NW + w, 1);
        kvc_mbar_init_fence();
      }
      __syncwarp(); /* a warp's barriers are used by that warp only */
#pragma unroll
      for (int s = 0; s < STAGES - 1; s++) {
        if (s < nsteps) issue_bulk(sm, ring, bars, kpool, vpool, Hkv, bs, lg_bs, kvh, ntoks, s);
      }
    } else {
#pragma unroll
      for (int s = 0; s < STAGES - 1; s++) {
        if (s < nsteps) issue(sm, ring, kpool, vpool, Hkv, bs, lg_bs, kvh, ntoks, s);
        kvc_cp_async_commit();
      }
    }
    for (int st = 0; st < nsteps; st++) {
      if constexpr (REGS) {
        /* (a): slot (st + 1) % 2 is free (its reads, step st - 1, preceded the last __syncwarp) */
        if (st + 1 < nsteps) load_regs(sm, kpool, vpool, Hkv, bs, lg_bs, kvh, ntoks, st + 1, kr, vr);
      } else if constexpr (BULK) {
        /* step st is use st / STAGES of its slot's barrier (every lane waits: the bulk data is
         * visible to the threads that observe the phase) */
        kvc_mbar_wait(bars + kvc_ring_slot(st, STAGES) * NW + w, kvc_ring_parity(st, STAGES));
        __syncwarp(); /* the zeroed V rows (ordinary stores of other lanes) */
        if (st + STAGES - 1 < nsteps) {
          issue_bulk(sm, ring, bars, kpool, vpool, Hkv, bs, lg_bs, kvh, ntoks, st + STAGES - 1);
        }
      } else {
        kvc_cp_async_wait<STAGES - 2>(); /* this lane's copies of step st have landed */
        __syncwarp();                    /* ... and every lane's (ldmatrix reads them all) */
        /* The slot refilled now was read (ldmatrix, into registers) in the previous step. */
        if (st + STAGES - 1 < nsteps) {
          issue(sm, ring, kpool, vpool, Hkv, bs, lg_bs, kvh, ntoks, st + STAGES - 1);
        }
        kvc_cp_async_commit();
      }
      int pi, tok0;
      const int nv = chunk_valid(sm, bs, lg_bs, ntoks, st * NW + w, &pi, &tok0);
      if (nv <= 0) { /* warp-uniform */
        if constexpr (REGS) {
          if (st + 1 < nsteps) store_regs(ring, st + 1, kr, vr);
          __syncwarp();
        }
        continue;
      }
      const unsigned char *kt = ring + ((size_t)(st % STAGES) * NW + w) * 2 * TILE_SLOT;
      const unsigned char *vt = kt + TILE_SLOT;
      chunk(kt, vt, nv, qf, plo, phi, m, l, o);
      if constexpr (REGS) { /* (c) */
        if (st + 1 < nsteps) store_regs(ring, st + 1, kr, vr);
        __syncwarp();
      }
    }
    if constexpr (!BULK && !REGS) kvc_cp_async_wait<0>(); /* BULK: every issued step was waited for */
    __syncthreads(); /* the ring becomes the merge area */
    /* Warp state: l over the 4 lanes of the row (lanes ^ 16 duplicate it); O rows of the parts. */
    l += __shfl_xor_sync(0xffffffffu, l, 1);
    l += __shfl_xor_sync(0xffffffffu, l, 2);
    float *mo = reinterpret_cast<float *>(dyn); /* [NW][GT][D] */
    const int g = kvc_lane_head(lane);
#pragma unroll
    for (int n = 0; n < NO; n++) {
      float y0 = o[n][0] + o[n][2], y1 = o[n][1] + o[n][3];
      y0 += __shfl_xor_sync(0xffffffffu, y0, 16);
      y1 += __shfl_xor_sync(0xffffffffu, y1, 16);
      if (lane < 16) {
        int row, col;
        kvc_mma_c_rc(lane, 0, &row, &col);
        *reinterpret_cast<float2 *>(&mo[((size_t)w * GT + g) * D + n * 8 + col]) = make_float2(y0, y1);
      }
    }
    if (lane < 16 && (lane & 3) == 0) {
      sm.m[w][g] = m;
      sm.l[w][g] = l;
    }
    __syncthreads();
    float *out = out_o(dyn);
    for (int idx = threadIdx.x; idx < G * D; idx += KVC_THREADS) {
      const int gg = idx / D, d = idx - gg * D;
      float M = -CUDART_INF_F;
      for (int r = 0; r < NW; r++) M = fmaxf(M, sm.m[r][gg]);
      float L = 0.0f, O = 0.0f;
      if (M != -CUDART_INF_F) {
        for (int r = 0; r < NW; r++) {
          const float mr = sm.m[r][gg];
          const float wgt = mr == -CUDART_INF_F ? 0.0f : exp2f(mr - M);
          L = fmaf(sm.l[r][gg], wgt, L);
          O = fmaf(mo[((size_t)r * GT + gg) * D + d], wgt, O);
        }
      }
      out[(size_t)gg * D + d] = O;
      if (d == 0) {
        sm.M[gg] = M;
        sm.L[gg] = L;
      }
    }
    __syncthreads();
  }
};

#endif /* KVC_ATTEND_MMA_CUH */

/* kvc_mma_layout.h — index maps of the tensor-core attend core (kvc_attend_mma.cuh): the PTX
 * fragment layouts of mma.sync.m16n8k16 (f16/bf16 inputs, f32 accumulators) and of
 * ldmatrix.m8n8.x4 (with and without .trans), the shared-memory swizzle of a K/V tile, and how the
 * core places a GQA group's query heads and the hi / mid / lo parts of Q and P on the 16 rows.
 * Header-only: __host__ __device__ under nvcc, static inline C elsewhere, so the kernel and the CPU
 * test (tests/gpu/test_kvc_mma.c, which emulates ldmatrix and mma with these maps) use the same
 * lines.
 *
 * PTX ISA, "Matrix Fragments for mma.m16n8k16 with floating point type" (lane = %laneid,
 * groupID = lane >> 2, threadID_in_group = lane % 4):
 *   A (16 x 16, row): 4 .b32 registers = elements a0..a7, two per register (a0 in the low half);
 *     row = groupID           for a0, a1, a4, a5;  groupID + 8 for a2, a3, a6, a7
 *     col = tig * 2 + (i & 1) for a0..a3;          tig * 2 + (i & 1) + 8 for a4..a7
 *   B (16 x 8, col): 2 registers = b0..b3;
 *     row (k) = tig * 2 + (i & 1) for b0, b1; + 8 for b2, b3;   col (n) = groupID
 *   C/D (16 x 8, f32): c0..c3;  row = groupID for c0, c1; groupID + 8 for c2, c3;
 *     col = tig * 2 + (i & 1)
 * ldmatrix.sync.aligned.m8n8.x4.b16: lanes 8j .. 8j+7 give the shared addresses of the 8 rows
 * (16 bytes each) of matrix j; register j of lane l receives, without .trans, row l >> 2, elements
 * 2 (l % 4), +1 of matrix j; with .trans, element l >> 2 of rows 2 (l % 4) and 2 (l % 4) + 1.
 */
#ifndef KVC_MMA_LAYOUT_H
#define KVC_MMA_LAYOUT_H

#ifdef __CUDACC__
#define KVC_MHD static __host__ __device__ __forceinline__
#else
#define KVC_MHD static inline
#endif

/* A fragment element i (0..7) of lane: row and column in the 16 x 16 tile. */
KVC_MHD void kvc_mma_a_rc(int lane, int i, int *row, int *col) {
  *row = (lane >> 2) + 8 * ((i >> 1) & 1);
  *col = (lane & 3) * 2 + (i & 1) + 8 * (i >> 2);
}
/* B fragment element i (0..3) of lane: row k (0..15) and column n (0..7). */
KVC_MHD void kvc_mma_b_rc(int lane, int i, int *k, int *n) {
  *k = (lane & 3) * 2 + (i & 1) + 8 * (i >> 1);
  *n = lane >> 2;
}
/* C/D fragment element i (0..3) of lane: row (0..15) and column (0..7). */
KVC_MHD void kvc_mma_c_rc(int lane, int i, int *row, int *col) {
  *row = (lane >> 2) + 8 * (i >> 1);
  *col = (lane & 3) * 2 + (i & 1);
}
/* ldmatrix: half h (0, 1) of the register of lane that comes from one 8 x 8 matrix: the matrix row
 * (whose address lane 8j + row gave) and the 16-bit element within that 16-byte row. */
KVC_MHD void kvc_ldsm_elem(int lane, int h, int trans, int *mrow, int *melem) {
  if (trans) {
    *mrow = (lane & 3) * 2 + h;
    *melem = lane >> 2;
  } else {
    *mrow = lane >> 2;
    *melem = (lane & 3) * 2 + h;
  }
}

/* ---- the core's tiles ------------------------------------------------------------------------ */
/* A warp's K (or V) tile of 16 tokens x head_dim elements in shared memory: token t's 16-byte
 * chunk c (elements 8c .. 8c+7) sits at byte t * head_dim * 2 + kvc_swz(t, c) * 16. The XOR
 * spreads the 8 rows of one ldmatrix matrix (8 tokens, one chunk) over 8 distinct 16-byte bank
 * groups (head_dim >= 64: at least 8 chunks per row). */
KVC_MHD int kvc_swz(int t, int c) { return c ^ (t & 7); }

/* ldmatrix.x4 (no .trans) for S = Q K^T: lane's row address is token 8 * ntile + (lane & 7),
 * chunk c0 + (lane >> 3); registers 0, 1 are then the B fragment (b0b1, b2b3) of k-step c0 / 2,
 * registers 2, 3 that of k-step c0 / 2 + 1 (c0 even), for the n-tile of tokens 8 ntile .. +7. */
KVC_MHD void kvc_ldsm_k_addr(int lane, int ntile, int c0, int *tok, int *chunk) {
  *tok = 8 * ntile + (lane & 7);
  *chunk = c0 + (lane >> 3);
}
/* ldmatrix.x4.trans for O += P V over the warp's 16 tokens: lane's row address is token
 * (lane & 7) + 8 ((lane >> 3) & 1), chunk c + (lane >> 4); registers 0, 1 are the B fragment of
 * output n-tile c (dims 8c .. 8c+7), registers 2, 3 that of n-tile c + 1. */
KVC_MHD void kvc_ldsm_v_addr(int lane, int c, int *tok, int *chunk) {
  *tok = (lane & 7) + 8 * ((lane >> 3) & 1);
  *chunk = c + (lane >> 4);
}

/* Rows of the 16-row A operands (Q for S, P for O) for a group of at most 4 heads: row r holds
 * part kvc_row_part(r) (0 hi, 1 mid, 2 lo, 3 none: zero) of head kvc_row_head(r). Summing the
 * three parts' rows of S (or O) gives the fp32-accurate product (x = hi + mid + lo exactly to
 * ~2^-24 relative for fp32 x). */
KVC_MHD int kvc_row_part(int r) { return r >> 2; }
KVC_MHD int kvc_row_head(int r) { return r & 3; }

/* Lane l's head in the core (its C rows groupID and groupID + 8 both belong to it) and the parts
 * of that head it holds: rows groupID and groupID + 8. Lanes 0..15 hold hi and lo, lanes 16..31
 * mid and none; S row sums of head g = (c0 + c2 on lane l) + (c0 + c2 on lane l ^ 16). */
KVC_MHD int kvc_lane_head(int lane) { return (lane >> 2) & 3; }
KVC_MHD int kvc_lane_part_lo_row(int lane) { return kvc_row_part(lane >> 2); }      /* 0 or 1 */
KVC_MHD int kvc_lane_part_hi_row(int lane) { return kvc_row_part((lane >> 2) + 8); } /* 2 or 3 */

/* Token (0..15 within the warp's tile) of the S accumulator element i (0..3) of n-tile j (0, 1)
 * on lane: the P value the lane computes from it. It is also the k index of the P A-fragment
 * element that register 2j + (i >> 1) holds (PV k-step of the same 16 tokens). */
KVC_MHD int kvc_s_token(int lane, int j, int i) { return 8 * j + (lane & 3) * 2 + (i & 1); }

#endif /* KVC_MMA_LAYOUT_H */

/* test_kvc_mma.c — the tensor-core attend core's index maps (kernels/cuda/kvc_mma_layout.h), on
 * the CPU (no GPU needed):
 *  1. the PTX fragment maps of mma.m16n8k16 and ldmatrix cover every matrix element exactly once;
 *  2. the K/V tile swizzle gives every ldmatrix matrix (8 tokens, one 16-byte chunk) 8 distinct
 *     bank groups, and the cp.async piece mapping of kvc_attend_mma::issue covers the tile once;
 *  3. an emulation of one warp of kvc_attend_mma::run (ldmatrix and mma emulated element by
 *     element through the maps, shuffles as lane permutations; bf16 rounding as the GPU's) over
 *     chunks with masked tails whose unused pool slots hold NaN, against the attention computed
 *     directly in double: the composition of the layouts (S accumulators reused as P's A
 *     fragment, hi / mid / lo rows, lane ^ 16 sums) gives fp32-level results and no NaN; the
 *     state composed after every chunk but the last (as PSA's tensor-core snapshot composes it,
 *     v11) is the attention over the chunks so far.
 * What this cannot check: that the PTX maps written in kvc_mma_layout.h are the hardware's (they
 * were transcribed from the PTX ISA; the GPU test test_gpu_attn checks the kernel end to end). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kv_half.h"
#include "kv_rng.h"
#include "kvc_mma_layout.h"
#include "test.h"

static void test_fragment_maps_cover_once(void) {
  int a[16][16] = {{0}}, b[16][8] = {{0}}, c[16][8] = {{0}}, lt[8][8] = {{0}}, lt_t[8][8] = {{0}};
  for (int lane = 0; lane < 32; lane++) {
    for (int i = 0; i < 8; i++) {
      int r, col;
      kvc_mma_a_rc(lane, i, &r, &col);
      REQUIRE(r >= 0 && r < 16 && col >= 0 && col < 16);
      a[r][col]++;
    }
    for (int i = 0; i < 4; i++) {
      int k, n, r, col;
      kvc_mma_b_rc(lane, i, &k, &n);
      REQUIRE(k >= 0 && k < 16 && n >= 0 && n < 8);
      b[k][n]++;
      kvc_mma_c_rc(lane, i, &r, &col);
      REQUIRE(r >= 0 && r < 16 && col >= 0 && col < 8);
      c[r][col]++;
    }
    for (int h = 0; h < 2; h++) {
      int mr, me;
      kvc_ldsm_elem(lane, h, 0, &mr, &me);
      lt[mr][me]++;
      kvc_ldsm_elem(lane, h, 1, &mr, &me);
      lt_t[mr][me]++;
    }
  }
  for (int i = 0; i < 16; i++) {
    for (int j = 0; j < 16; j++) CHECK_EQ_INT(a[i][j], 1);
    for (int j = 0; j < 8; j++) CHECK_EQ_INT(b[i][j], 1);
    for (int j = 0; j < 8; j++) CHECK_EQ_INT(c[i][j], 1);
  }
  for (int i = 0; i < 8; i++) {
    for (int j = 0; j < 8; j++) {
      CHECK_EQ_INT(lt[i][j], 1);
      CHECK_EQ_INT(lt_t[i][j], 1);
    }
  }
  /* ldmatrix (no .trans) of K delivers exactly the B fragment: register 0 of lane = b0, b1 =
   * K^T[k][n] with k = dim within the chunk, n = token within the matrix. */
  for (int lane = 0; lane < 32; lane++) {
    for (int h = 0; h < 2; h++) {
      int mr, me, k, n;
      kvc_ldsm_elem(lane, h, 0, &mr, &me);
      kvc_mma_b_rc(lane, h, &k, &n);
      CHECK_EQ_INT(me, k); /* dim */
      CHECK_EQ_INT(mr, n); /* token */
      kvc_ldsm_elem(lane, h, 1, &mr, &me); /* V with .trans: B[k = token][n = dim] */
      CHECK_EQ_INT(mr, k);
      CHECK_EQ_INT(me, n);
    }
  }
  /* Row parts: 4 heads x (hi, mid, lo) once each, 4 zero rows; the lane's two rows belong to its
   * head, and lanes l, l ^ 16 together hold all three parts. */
  int seen[4][4] = {{0}};
  for (int r = 0; r < 16; r++) seen[kvc_row_head(r)][kvc_row_part(r)]++;
  for (int g = 0; g < 4; g++) {
    for (int p = 0; p < 4; p++) CHECK_EQ_INT(seen[g][p], 1);
  }
  for (int lane = 0; lane < 32; lane++) {
    int r0, r1, col;
    kvc_mma_c_rc(lane, 0, &r0, &col);
    kvc_mma_c_rc(lane, 2, &r1, &col);
    CHECK_EQ_INT(kvc_row_head(r0), kvc_lane_head(lane));
    CHECK_EQ_INT(kvc_row_head(r1), kvc_lane_head(lane));
    CHECK_EQ_INT(kvc_lane_head(lane ^ 16), kvc_lane_head(lane));
    const int parts = (1 << kvc_lane_part_lo_row(lane)) | (1 << kvc_lane_part_hi_row(lane)) |
                      (1 << kvc_lane_part_lo_row(lane ^ 16)) | (1 << kvc_lane_part_hi_row(lane ^ 16));
    CHECK_EQ_INT(parts, 15);
    /* P A-fragment register 2j + r, half h: k index = the token of S element h of n-tile j */
    for (int j = 0; j < 2; j++) {
      for (int h = 0; h < 2; h++) {
        int ar, ac;
        kvc_mma_a_rc(lane, 4 * j + h, &ar, &ac); /* register 2j, low row */
        CHECK_EQ_INT(ac, kvc_s_token(lane, j, h));
        kvc_mma_a_rc(lane, 4 * j + 2 + h, &ar, &ac); /* register 2j + 1, row + 8 */
        CHECK_EQ_INT(ac, kvc_s_token(lane, j, h));
        int cr, cc;
        kvc_mma_c_rc(lane, h, &cr, &cc);
        CHECK_EQ_INT(8 * j + cc, kvc_s_token(lane, j, h));
      }
    }
  }
}

static void test_swizzle_and_copy_cover(void) {
  for (int D = 64; D <= 128; D += 64) {
    const int CH = D / 8;
    for (int t0 = 0; t0 < 16; t0 += 8) {
      for (int c = 0; c < CH; c++) {
        int banks = 0;
        for (int t = t0; t < t0 + 8; t++) {
          const int s = kvc_swz(t, c);
          REQUIRE(s >= 0 && s < CH);
          banks |= 1 << ((t * D * 2 + s * 16) / 16 % 8); /* 16-byte group of the 128-byte line */
        }
        CHECK_EQ_INT(banks, 255);
      }
    }
    /* issue(): piece idx = lane + 32 j -> (token idx / CH, chunk idx % CH) at the swizzled slot */
    int *hit = calloc((size_t)16 * CH, sizeof *hit);
    const int ppl = 16 * CH / 32;
    for (int lane = 0; lane < 32; lane++) {
      for (int j = 0; j < ppl; j++) {
        const int idx = lane + 32 * j, t = idx / CH, c = idx % CH;
        CHECK_EQ_INT(t, lane / CH + j * (32 / CH)); /* the kernel's form */
        CHECK_EQ_INT(c, lane % CH);
        hit[t * CH + kvc_swz(t, c)]++;
      }
    }
    for (int i = 0; i < 16 * CH; i++) CHECK_EQ_INT(hit[i], 1);
    free(hit);
  }
}

/* ---- emulation of one warp of kvc_attend_mma::run --------------------------------------------- */
#define ED 128
#define ENO (ED / 8)
#define EKS (ED / 16)

static float bf(float x) { return kv_bf16_to_f32(kv_f32_to_bf16(x)); }
static float split_part(float x, int p) { /* kvc_split_part + the rounding of pack() */
  const float hi = bf(x), r1 = x - hi, mid = bf(r1), r2 = r1 - mid;
  return p == 0 ? hi : p == 1 ? mid : p == 2 ? bf(r2) : 0.0f;
}

static int g_map_errors;

/* ldmatrix.x4: addr[l] = element offset of the row whose address lane l gives. */
static void emu_ldsm(const float *tile, const int addr[32], int trans, float out[32][4][2]) {
  for (int l = 0; l < 32; l++) {
    for (int j = 0; j < 4; j++) {
      for (int h = 0; h < 2; h++) {
        int mr, me;
        kvc_ldsm_elem(l, h, trans, &mr, &me);
        out[l][j][h] = tile[addr[8 * j + mr] + me];
      }
    }
  }
}

/* acc += A B with A from a[lane][reg][half], B from b[lane][reg][half] (in double). */
static void emu_mma(float acc[32][4], float a[32][4][2], float b[32][2][2]) {
  double A[16][16], B[16][8];
  for (int l = 0; l < 32; l++) {
    for (int i = 0; i < 8; i++) {
      int r, c;
      kvc_mma_a_rc(l, i, &r, &c);
      A[r][c] = a[l][i / 2][i % 2];
    }
    for (int i = 0; i < 4; i++) {
      int k, n;
      kvc_mma_b_rc(l, i, &k, &n);
      B[k][n] = b[l][i / 2][i % 2];
    }
  }
  for (int l = 0; l < 32; l++) {
    for (int i = 0; i < 4; i++) {
      int r, c;
      kvc_mma_c_rc(l, i, &r, &c);
      double s = acc[l][i];
      for (int k = 0; k < 16; k++) s += A[r][k] * B[k][c];
      acc[l][i] = (float)s;
    }
  }
}

/* The warp's state composed per head as the end of run() and kvc__psa_warp_mma::snapshot compose
 * it (v11): L = the lane's sum over lanes ^ 1, ^ 2; O rows of the head's parts summed with lane
 * ^ 16's; lanes < 16 hold head kvc_lane_head(lane). out[g][d] = O / L (NaN when L is 0); seen
 * counts the writes of each element. The state is only read. */
static void emu_compose(float o[32][ENO][4], const float lsum[32], float out[4][ED],
                        int seen[4][ED]) {
  float l1[32], l2[32];
  for (int l = 0; l < 32; l++) l1[l] = lsum[l] + lsum[l ^ 1];
  for (int l = 0; l < 32; l++) l2[l] = l1[l] + l1[l ^ 2];
  for (int l = 0; l < 16; l++) {
    const int g = kvc_lane_head(l);
    for (int n = 0; n < ENO; n++) {
      int row, col;
      kvc_mma_c_rc(l, 0, &row, &col);
      const float y0 = (o[l][n][0] + o[l][n][2]) + (o[l ^ 16][n][0] + o[l ^ 16][n][2]);
      const float y1 = (o[l][n][1] + o[l][n][3]) + (o[l ^ 16][n][1] + o[l ^ 16][n][3]);
      out[g][n * 8 + col] = l2[l] > 0 ? y0 / l2[l] : NAN;
      out[g][n * 8 + col + 1] = l2[l] > 0 ? y1 / l2[l] : NAN;
      seen[g][n * 8 + col]++, seen[g][n * 8 + col + 1]++;
    }
  }
}

/* Attention of head g over the valid tokens of chunks 0..upto, in double; NaN when none. */
static double emu_direct(const float q[4][ED], float K[3][16][ED], float V[3][16][ED],
                         const int nvalid[3], int upto, float scale_log2, int g, int d) {
  double mxs = -INFINITY, sc[48];
  int n = 0;
  for (int ci = 0; ci <= upto; ci++) {
    for (int t = 0; t < nvalid[ci]; t++) {
      double a = 0;
      for (int e = 0; e < ED; e++) a += (double)q[g][e] * scale_log2 * K[ci][t][e];
      sc[n++] = a;
      if (a > mxs) mxs = a;
    }
  }
  if (n == 0) return NAN;
  double num = 0, den = 0;
  int k = 0;
  for (int ci = 0; ci <= upto; ci++) {
    for (int t = 0; t < nvalid[ci]; t++, k++) {
      const double w = exp2(sc[k] - mxs);
      num += w * V[ci][t][d];
      den += w;
    }
  }
  return num / den;
}

static void test_emulated_warp_matches_direct(void) {
  kv_rng rng;
  kv_rng_seed(&rng, 2026);
  const float scale_log2 = (float)(1.0 / sqrt((double)ED) * 1.4426950408889634);
  for (int trial = 0; trial < 12; trial++) {
    const int G = 1 + trial % 4, nchunks = 1 + trial % 3;
    int nvalid[3];
    for (int ci = 0; ci < nchunks; ci++) nvalid[ci] = ci == nchunks - 1 ? 1 + (int)kv_rng_below(&rng, 16) : 16;
    if (trial == 11) nvalid[0] = 0, nvalid[nchunks - 1] = 7; /* an empty chunk first */
    /* pool rows of every chunk: valid tokens bf16 values, the rest NaN (tests poison the pool) */
    static float K[3][16][ED], V[3][16][ED], q[4][ED];
    for (int ci = 0; ci < nchunks; ci++) {
      for (int t = 0; t < 16; t++) {
        for (int d = 0; d < ED; d++) {
          const int ok = t < nvalid[ci];
          K[ci][t][d] = ok ? bf((float)kv_rng_normal(&rng) + (d < 8 && t == 3 ? 3.0f : 0.0f)) : NAN;
          V[ci][t][d] = ok ? bf((float)kv_rng_normal(&rng)) : NAN;
        }
      }
    }
    for (int g = 0; g < 4; g++) {
      for (int d = 0; d < ED; d++) q[g][d] = (float)(kv_rng_normal(&rng) * 0.7 + (d < 8 ? 0.8 : 0.0));
    }
    /* load_q */
    static float qf[32][EKS][4][2];
    for (int l = 0; l < 32; l++) {
      for (int kk = 0; kk < EKS; kk++) {
        for (int r = 0; r < 4; r++) {
          for (int h = 0; h < 2; h++) {
            int row, col;
            kvc_mma_a_rc(l, 2 * r + h, &row, &col);
            const int g = kvc_row_head(row), part = kvc_row_part(row);
            const float v = g < G ? q[g][kk * 16 + col] * scale_log2 : 0.0f;
            qf[l][kk][r][h] = split_part(v, part);
          }
        }
      }
    }
    static float o[32][ENO][4];
    float m[32], lsum[32];
    for (int l = 0; l < 32; l++) {
      m[l] = -INFINITY, lsum[l] = 0;
      for (int n = 0; n < ENO; n++) o[l][n][0] = o[l][n][1] = o[l][n][2] = o[l][n][3] = 0;
    }
    for (int ci = 0; ci < nchunks; ci++) {
      const int nv = nvalid[ci];
      /* issue(): cp.async of the valid rows, zero-fill of the others, swizzled */
      static float kt[16 * ED], vt[16 * ED];
      for (int l = 0; l < 32; l++) {
        for (int j = 0; j < 16 * (ED / 8) / 32; j++) {
          const int idx = l + 32 * j, t = idx / (ED / 8), c = idx % (ED / 8);
          const int dst = t * ED + kvc_swz(t, c) * 8;
          for (int e = 0; e < 8; e++) {
            kt[dst + e] = t < nv ? K[ci][t][c * 8 + e] : 0.0f;
            vt[dst + e] = t < nv ? V[ci][t][c * 8 + e] : 0.0f;
          }
        }
      }
      if (nv <= 0) continue;
      static float sacc[2][2][32][4];
      memset(sacc, 0, sizeof sacc);
      for (int kk = 0; kk < EKS; kk += 2) {
        for (int j = 0; j < 2; j++) {
          int addr[32];
          for (int l = 0; l < 32; l++) {
            int t, c;
            kvc_ldsm_k_addr(l, j, 2 * kk, &t, &c);
            addr[l] = t * ED + kvc_swz(t, c) * 8;
          }
          static float bfrag[32][4][2];
          emu_ldsm(kt, addr, 0, bfrag);
          static float a0[32][4][2], a1[32][4][2], b0[32][2][2], b1[32][2][2];
          for (int l = 0; l < 32; l++) {
            memcpy(a0[l], qf[l][kk], sizeof a0[l]);
            memcpy(a1[l], qf[l][kk + 1], sizeof a1[l]);
            memcpy(b0[l][0], bfrag[l][0], 8), memcpy(b0[l][1], bfrag[l][1], 8);
            memcpy(b1[l][0], bfrag[l][2], 8), memcpy(b1[l][1], bfrag[l][3], 8);
          }
          emu_mma(sacc[j][0], a0, b0);
          emu_mma(sacc[j][1], a1, b1);
        }
      }
      float x[32][2][2], s[32][2][2], mx[32], p[32][2][2], alpha[32];
      for (int l = 0; l < 32; l++) {
        for (int j = 0; j < 2; j++) {
          for (int h = 0; h < 2; h++) {
            x[l][j][h] = (sacc[j][0][l][h] + sacc[j][1][l][h]) + (sacc[j][0][l][h + 2] + sacc[j][1][l][h + 2]);
          }
        }
      }
      for (int l = 0; l < 32; l++) {
        mx[l] = -INFINITY;
        for (int j = 0; j < 2; j++) {
          for (int h = 0; h < 2; h++) {
            const float full = x[l][j][h] + x[l ^ 16][j][h];
            s[l][j][h] = kvc_s_token(l, j, h) < nv ? full : -INFINITY;
            mx[l] = fmaxf(mx[l], s[l][j][h]);
          }
        }
      }
      float t1[32], t2[32];
      for (int l = 0; l < 32; l++) t1[l] = fmaxf(mx[l], mx[l ^ 1]);
      for (int l = 0; l < 32; l++) t2[l] = fmaxf(t1[l], t1[l ^ 2]);
      int any = 0;
      for (int l = 0; l < 32; l++) {
        const float mn = fmaxf(m[l], t2[l]);
        alpha[l] = exp2f(m[l] - mn);
        m[l] = mn;
        for (int j = 0; j < 2; j++) {
          for (int h = 0; h < 2; h++) p[l][j][h] = exp2f(s[l][j][h] - mn);
        }
        lsum[l] = lsum[l] * alpha[l] + ((p[l][0][0] + p[l][0][1]) + (p[l][1][0] + p[l][1][1]));
        any |= alpha[l] != 1.0f;
      }
      if (any) {
        for (int l = 0; l < 32; l++) {
          for (int n = 0; n < ENO; n++) {
            for (int i = 0; i < 4; i++) o[l][n][i] *= alpha[l];
          }
        }
      }
      static float pa[32][4][2];
      for (int l = 0; l < 32; l++) {
        const int plo = kvc_lane_part_lo_row(l), phi = kvc_lane_part_hi_row(l);
        for (int j = 0; j < 2; j++) {
          for (int h = 0; h < 2; h++) {
            pa[l][2 * j][h] = split_part(p[l][j][h], plo);
            pa[l][2 * j + 1][h] = split_part(p[l][j][h], phi);
          }
        }
      }
      for (int n = 0; n < ENO; n += 2) {
        int addr[32];
        for (int l = 0; l < 32; l++) {
          int t, c;
          kvc_ldsm_v_addr(l, n, &t, &c);
          addr[l] = t * ED + kvc_swz(t, c) * 8;
        }
        static float bfrag[32][4][2], b0[32][2][2], b1[32][2][2], on0[32][4], on1[32][4];
        emu_ldsm(vt, addr, 1, bfrag);
        for (int l = 0; l < 32; l++) {
          memcpy(b0[l][0], bfrag[l][0], 8), memcpy(b0[l][1], bfrag[l][1], 8);
          memcpy(b1[l][0], bfrag[l][2], 8), memcpy(b1[l][1], bfrag[l][3], 8);
          memcpy(on0[l], o[l][n], sizeof on0[l]), memcpy(on1[l], o[l][n + 1], sizeof on1[l]);
        }
        emu_mma(on0, pa, b0);
        emu_mma(on1, pa, b1);
        for (int l = 0; l < 32; l++) {
          memcpy(o[l][n], on0[l], sizeof on0[l]), memcpy(o[l][n + 1], on1[l], sizeof on1[l]);
        }
      }
      /* v11: PSA snapshots the state after every iteration and goes on with it: the state after
       * chunk ci, composed without changing it, is the attention over chunks 0..ci */
      if (ci < nchunks - 1) {
        float snap[4][ED];
        int sseen[4][ED] = {{0}};
        emu_compose(o, lsum, snap, sseen);
        int sbad = 0;
        for (int g = 0; g < G; g++) {
          for (int d = 0; d < ED; d++) {
            const double ref = emu_direct(q, K, V, nvalid, ci, scale_log2, g, d);
            sbad += !(fabs(snap[g][d] - ref) <= 2e-6 + 2e-5 * fabs(ref));
          }
        }
        if (sbad) printf("  trial %d after chunk %d: %d snapshot values off\n", trial, ci, sbad);
        CHECK_EQ_INT(sbad, 0);
      }
    }
    /* the end of run(): l over the row's 4 lanes, O rows summed over the parts */
    float out[4][ED];
    int seen[4][ED] = {{0}};
    emu_compose(o, lsum, out, seen);
    int bad = 0;
    for (int g = 0; g < G; g++) {
      for (int d = 0; d < ED; d++) {
        const double ref = emu_direct(q, K, V, nvalid, nchunks - 1, scale_log2, g, d);
        CHECK_EQ_INT(seen[g][d], 1);
        if (!(fabs(out[g][d] - ref) <= 2e-6 + 2e-5 * fabs(ref))) {
          if (bad < 5) printf("  trial %d head %d dim %d: emulated %.9g direct %.9g\n", trial, g, d, out[g][d], ref);
          bad++;
        }
      }
    }
    CHECK_EQ_INT(bad, 0);
  }
  CHECK_EQ_INT(g_map_errors, 0);
}

TEST_LIST = {
    TEST(test_fragment_maps_cover_once),
    TEST(test_swizzle_and_copy_cover),
    TEST(test_emulated_warp_matches_direct),
    {0},
};
TEST_MAIN

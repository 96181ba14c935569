/* kvc_math.h — arithmetic shared by the CUDA kernels and by their host-side tests: block counts,
 * forced (sink/recent) blocks, top-k budgets, PSA iteration boundaries, the log-sum-exp merge of
 * online-softmax states and PSA's stop test. Header-only: compiled as __host__ __device__ by nvcc
 * and as static inline C elsewhere, so the same lines run in the kernels and in the CPU tests
 * (tests/gpu/test_kvc_host.c), which check them against the CPU reference (kernels/attn.h).
 *
 * Every function mirrors a step of kernels/attn_sparse.c; the comment names which.
 */
#ifndef KVC_MATH_H
#define KVC_MATH_H

#include <math.h>
#include <stdint.h>

#ifdef __CUDACC__
#define KVC_HD static __host__ __device__ __forceinline__
#else
#define KVC_HD static inline
#endif

/* Blocks covering n tokens. */
KVC_HD int64_t kvc_n_blocks(int64_t n_tokens, int block_size) {
  return (n_tokens + block_size - 1) / block_size;
}

/* Tokens in block b of a sequence of n tokens (block_size, or fewer for the last). */
KVC_HD int kvc_block_tokens(int64_t n_tokens, int block_size, int64_t b) {
  int64_t n = n_tokens - b * block_size;
  return (int)(n > block_size ? block_size : (n > 0 ? n : 0));
}

/* attn__is_forced: sink blocks at the start, recent blocks at the end. */
KVC_HD int kvc_is_forced(int64_t b, int64_t nb, int sink, int recent) {
  return b < sink || b >= nb - recent;
}

/* Number of forced blocks among nb (sink and recent may overlap when nb is small). */
KVC_HD int64_t kvc_n_forced(int64_t nb, int sink, int recent) {
  int64_t s = sink < nb ? sink : nb;
  int64_t r0 = nb - recent > s ? nb - recent : s; /* first recent block not already a sink */
  return s + (nb - r0);
}

/* attn_decode, top-k step 2: blocks read per KV head for a token budget. */
KVC_HD int64_t kvc_topk_blocks(int64_t n_keys, int block_size, int64_t token_budget, int sink,
                               int recent) {
  int64_t nb = kvc_n_blocks(n_keys, block_size);
  int64_t k = token_budget / block_size;
  if (token_budget >= n_keys) k = nb;
  int64_t nf = kvc_n_forced(nb, sink, recent);
  if (k < nf) k = nf;
  return k < nb ? k : nb;
}

/* PSA visit order positions: iteration 0 is the forced blocks (when there are any), then groups of
 * group_blocks. End position (exclusive) of iteration i in the visit order. */
KVC_HD int64_t kvc_psa_iter_end(int64_t i, int64_t nforced, int group_blocks, int64_t nb) {
  int64_t e = nforced > 0 ? nforced + i * group_blocks : (i + 1) * group_blocks;
  return e < nb ? e : nb;
}
KVC_HD int64_t kvc_psa_iter_begin(int64_t i, int64_t nforced, int group_blocks, int64_t nb) {
  return i == 0 ? 0 : kvc_psa_iter_end(i - 1, nforced, group_blocks, nb);
}
/* Iterations needed to visit all nb blocks. */
KVC_HD int64_t kvc_psa_n_iters(int64_t nforced, int group_blocks, int64_t nb) {
  if (nforced > 0) return 1 + (nb - nforced + group_blocks - 1) / group_blocks;
  return (nb + group_blocks - 1) / group_blocks;
}

/* Tokens in the first `end` blocks of a visit order whose last block (index nb-1, holding
 * last_tokens tokens) sits at position pos_last. */
KVC_HD int64_t kvc_tokens_visited(int64_t end, int block_size, int64_t pos_last, int last_tokens) {
  return end * block_size - (pos_last < end ? block_size - last_tokens : 0);
}

/* Merges online-softmax state (m2, l2) into (m, l), natural-log units, m = -inf for empty.
 * Returns the factors that rescale the old and the merged-in accumulators. */
KVC_HD void kvc_lse_merge(double *m, double *l, double m2, double l2, double *a_old,
                          double *a_new) {
  if (m2 == -INFINITY) {
    *a_old = 1.0;
    *a_new = 0.0;
    return;
  }
  if (*m == -INFINITY) {
    *m = m2;
    *l = l2;
    *a_old = 0.0;
    *a_new = 1.0;
    return;
  }
  double mn = *m > m2 ? *m : m2;
  *a_old = exp(*m - mn);
  *a_new = exp(m2 - mn);
  *l = *l * *a_old + l2 * *a_new;
  *m = mn;
}

/* Associative form of the same merge, for prefix scans over iterations: (m, l) of the
 * concatenation of state a (earlier) and state b (later). The identity is (-inf, 0). */
KVC_HD void kvc_lse_combine(double ma, double la, double mb, double lb, double *m, double *l) {
  if (mb == -INFINITY) {
    *m = ma;
    *l = la;
    return;
  }
  if (ma == -INFINITY) {
    *m = mb;
    *l = lb;
    return;
  }
  const double mn = ma > mb ? ma : mb;
  *l = la * exp(ma - mn) + lb * exp(mb - mn);
  *m = mn;
}

/* PSA pipelined loop: iterations a pair schedules ahead of its committed count c (the next
 * iteration it needs is c): at least spec, up to c / 2 while the GPU has CTAs to spare for each
 * active pair (slots / active), never more than window - 1 (ring space). Wasted loads past the
 * stop are therefore at most max(spec, stop / 2) iterations, and only when the GPU is idle. */
KVC_HD int kvc_psa_lookahead(int c, int spec, int window, int slots, int active) {
  int extra = c / 2;
  const int spare = active > 0 ? slots / active : slots;
  if (extra > spare) extra = spare;
  int la = extra > spec ? extra : spec;
  return la < window - 1 ? la : window - 1;
}

/* PSA stop test for one head (attn_decode, "Stop test"): accumulated probability
 *   P_acc = S / (S + U),  S = l * exp(m) (visited), U = u * exp(frame) (estimated unvisited). */
KVC_HD double kvc_psa_pacc(double m, double l, double u, double frame) {
  if (u <= 0.0) return 1.0;
  double la = log(l) + m;
  double lb = log(u) + frame;
  return 1.0 / (1.0 + exp(lb - la));
}

/* Tiling a recorded layer to a benchmark shape (kvc_fill_tiled, and the CPU test that checks the
 * budgets it produces against the recording): token t of a context of len tokens whose query sits
 * at recorded position pos (pos >= 1) reads recorded token kvc_tile_token(t, len, pos): the sink
 * (token 0) stays once at 0, the last token maps to pos and the rest repeat the recorded tokens
 * 1..pos backwards from there, so the recent window keeps its place next to the query. */
KVC_HD int64_t kvc_tile_token(int64_t t, int64_t len, int64_t pos) {
  if (t == 0 || pos < 1) return 0;
  return pos - (len - 1 - t) % pos;
}

#endif /* KVC_MATH_H */

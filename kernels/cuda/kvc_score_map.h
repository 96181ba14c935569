/* kvc_score_map.h — which (request, KV head, block) each thread of the block-score kernel
 * (kvc_topk.cu: kvc__score_kernel) scores, in both launch shapes. Plain C, shared by the kernel
 * and the CPU test (test_kvc_host.c: every (request, head, block) exactly once).
 *
 * A CTA has `rows` row groups (128 threads / (head_dim / 8)), each scoring `per` units.
 *   one pair per CTA (hi = 0): grid (ceil(max_blocks / (rows * per)), n_req * n_kv_heads); CTA
 *     (x, y) is request y / Hkv, head y % Hkv; row group `row`, unit u scores block
 *     x * rows * per + u * rows + row.
 *   all heads per CTA (hi = 1, v8, KVC_TUNE_SCORE_HEADS; needs rows % Hkv == 0): grid
 *     (ceil(max_blocks / (rows * per / Hkv)), n_req); CTA (x, y) is request y; row group `row`
 *     keeps head row % Hkv and unit u scores block x * rows * per / Hkv + (u * rows + row) / Hkv, so
 *     the row groups of one unit read one page's rows of all heads, which lie together
 *     ([page][Hkv][D] metadata). */
#ifndef KVC_SCORE_MAP_H
#define KVC_SCORE_MAP_H

#if defined(__CUDACC__)
#define KVC_MAP_FN static __host__ __device__ __forceinline__
#else
#define KVC_MAP_FN static inline
#endif

/* Whether the all-heads shape runs: tune == 1 and rows a multiple of n_kv_heads. */
KVC_MAP_FN int kvc_score_heads_ok(int tune, int rows, int n_kv_heads) {
  return tune == 1 && n_kv_heads >= 1 && rows >= n_kv_heads && rows % n_kv_heads == 0;
}

/* Blocks one CTA scores (per head). */
KVC_MAP_FN int kvc_score_blocks_per_cta(int hi, int rows, int per, int n_kv_heads) {
  return hi ? rows * per / n_kv_heads : rows * per;
}

/* Request, head and block of unit u of row group `row` in CTA (x, y). */
KVC_MAP_FN void kvc_score_map(int hi, int rows, int per, int n_kv_heads, int x, int y, int row,
                              int u, int *r, int *h, int *b) {
  const int bpc = kvc_score_blocks_per_cta(hi, rows, per, n_kv_heads);
  if (hi) {
    *r = y;
    *h = row % n_kv_heads;
    *b = x * bpc + (u * rows + row) / n_kv_heads;
  } else {
    *r = y / n_kv_heads;
    *h = y % n_kv_heads;
    *b = x * bpc + u * rows + row;
  }
}

/* v9: batches (of blocks_per_cta blocks of one pair) each CTA scores in turn, so that a grid of
 * `batches` x `n_pairs` batches runs as about two waves of `resident` CTAs (the device's SMs x
 * CTAs per SM): 1 while the grid is small (short contexts, B 1), up to 16 (a CTA's query stays
 * in registers for all of them), never more than a pair has. CTA x of a pair scores batches
 * x * iters .. x * iters + iters - 1 (kvc_score_map with x * iters + it); the grid is
 * ceil(batches / iters) x n_pairs. */
KVC_MAP_FN int kvc_score_iters(int batches, int n_pairs, int resident) {
  if (batches < 1 || n_pairs < 1 || resident < 1) return 1;
  long long it = (long long)batches * n_pairs / (2LL * resident);
  if (it > 16) it = 16;
  if (it > batches) it = batches;
  return it < 1 ? 1 : (int)it;
}

#endif /* KVC_SCORE_MAP_H */

/* kvc_plan.h — host-side launch planning for the CUDA decode kernels (plain C, tested on the CPU).
 *
 * Split-K ("flash-decoding"): the blocks one (request, KV head) pair reads are cut into splits of
 * at most blocks_per_split blocks; each split is one CTA ("work item") that writes a partial
 * (unnormalised output, max, sum) to its slot; a combine kernel merges the slots of a pair.
 * One planner serves dense decode (a pair reads every block of its request) and top-k sparse
 * attention (a pair reads its k selected blocks): callers pass the blocks per pair.
 *
 * The split size is uniform over the launch: large enough that a CTA amortises its start and the
 * final merge (min_blocks_per_split), small enough that the grid fills the GPU (target_ctas, e.g.
 * 4 waves of the multiprocessor count), and never above KVC_MAX_SPLIT_BLOCKS (the CTA resolves its
 * pages into shared memory). A pair whose blocks fit one split is written directly (no combine).
 */
#ifndef KVC_PLAN_H
#define KVC_PLAN_H

#include <stdint.h>

#include "kv_err.h"

#define KVC_MAX_SPLIT_BLOCKS 256

/* One CTA of a split-K launch. Blocks [blk_begin, blk_end) of the pair's block list. */
typedef struct kvc_work {
  int32_t req, kvh;
  int32_t blk_begin, blk_end;
  int32_t slot;      /* partial slot (index into the partial arrays) */
  int32_t n_splits;  /* splits of this pair (1: the CTA writes the final output itself) */
} kvc_work;

typedef struct kvc_split_plan {
  int32_t blocks_per_split;
  int32_t n_work;          /* work items = CTAs = partial slots */
  kvc_work *work;          /* [n_work], pair-major, splits in block order */
  int32_t *pair_first;     /* [n_req * n_kv_heads] first slot of each pair */
  int32_t *pair_splits;    /* [n_req * n_kv_heads] splits of each pair (0 when it reads nothing) */
  int32_t n_pairs;
  int64_t total_blocks;    /* sum of blocks over pairs */
  int32_t cap_work, cap_pairs;
} kvc_split_plan;

/* Plans a launch. pair_blocks [n_req * n_kv_heads]: blocks each pair reads (>= 0). The plan's
 * arrays are allocated (or grown) inside *plan; zero-initialise it before first use and release
 * with kvc_split_plan_free. target_ctas > 0, min_blocks_per_split >= 1. */
int kvc_plan_splits(const int64_t *pair_blocks, int n_req, int n_kv_heads, int target_ctas,
                    int min_blocks_per_split, kvc_split_plan *plan, kv_error *err);
void kvc_split_plan_free(kvc_split_plan *plan);

/* CTAs per (request, KV head) pair for the pipelined PSA loop: enough CTAs to fill target_ctas,
 * at least 1, at most max_iters (a pair never has more runs than iterations). */
int kvc_plan_psa_ctas(int n_pairs, int target_ctas, int64_t max_iters);

/* Byte layout of a scratch arena: kvc_arena_take reserves `bytes` (aligned to 256) and returns
 * the offset; the arena's total is a->used after all takes. */
typedef struct kvc_arena {
  uint64_t used;
} kvc_arena;
uint64_t kvc_arena_take(kvc_arena *a, uint64_t bytes);

#endif /* KVC_PLAN_H */

/* kvc_plan.h — host-side launch planning for the CUDA decode kernels (plain C, tested on the CPU).
 *
 * Split-K ("flash-decoding"): the blocks one (request, KV head) pair reads are cut into splits of
 * blocks_per_split blocks (uniform over a launch); each split is one CTA that writes a partial
 * (unnormalised output, max, sum) to its slot, and a combine kernel merges the slots of a pair.
 * The launch grid is (max_splits, n_pairs): CTA (s, pair) derives its block range from the pair's
 * block count on the device (dense: from seq_len; top-k: the selection's count), so nothing is
 * uploaded per call and the launch is graph-capturable at any batch. CTAs past a pair's split
 * count exit at once. One planner serves dense decode and top-k: callers pass blocks per pair.
 *
 * The split size minimises a wave model of the launch: with `slots` CTAs resident on the GPU,
 * time ~ ceil(n_work / slots) * (blocks_per_split + KVC_PLAN_STARTUP_BLOCKS) + a small combine
 * cost per split. It never exceeds KVC_MAX_SPLIT_BLOCKS (a CTA resolves its pages into shared
 * memory).
 */
#ifndef KVC_PLAN_H
#define KVC_PLAN_H

#include <stdint.h>

#include "kv_err.h"

#define KVC_MAX_SPLIT_BLOCKS 256
/* A CTA's fixed cost (start, pipeline fill, final merge) in units of one block's streaming time. */
#define KVC_PLAN_STARTUP_BLOCKS 3

typedef struct kvc_split_size {
  int32_t blocks_per_split;  /* >= 1, <= KVC_MAX_SPLIT_BLOCKS */
  int32_t max_splits;        /* max over pairs of ceil(blocks / blocks_per_split), >= 1 */
  int64_t n_work;            /* CTAs that do work: sum over pairs of their split counts */
} kvc_split_size;

/* Plans a launch. pair_blocks [n_pairs]: blocks each pair reads (>= 0); slots >= 1: CTAs the GPU
 * runs at once. KV_EINVAL / KV_ERANGE with the reason on bad input. */
int kvc_plan_split_size(const int64_t *pair_blocks, int64_t n_pairs, int slots,
                        kvc_split_size *out, kv_error *err);

/* Splits of a pair of n blocks (0 for n = 0): the same expression the kernels evaluate. */
static inline int32_t kvc_plan_pair_splits(int64_t n, int32_t blocks_per_split) {
  return (int32_t)((n + blocks_per_split - 1) / blocks_per_split);
}

/* Byte layout of a scratch arena: kvc_arena_take reserves `bytes` (aligned to 256) and returns
 * the offset; the arena's total is a->used after all takes. */
typedef struct kvc_arena {
  uint64_t used;
} kvc_arena;
uint64_t kvc_arena_take(kvc_arena *a, uint64_t bytes);

#endif /* KVC_PLAN_H */

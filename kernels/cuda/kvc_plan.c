/* kvc_plan.c — split-K launch planning (see kvc_plan.h). */
#include "kvc_plan.h"

int kvc_plan_split_size(const int64_t *pair_blocks, int64_t n_pairs, int slots,
                        kvc_split_size *out, kv_error *err) {
  if (n_pairs < 1 || slots < 1) {
    return kv_error_set(err, KV_EINVAL, "split plan: %lld pairs, %d slots must be positive",
                        (long long)n_pairs, slots);
  }
  int64_t max_pair = 0;
  for (int64_t i = 0; i < n_pairs; i++) {
    if (pair_blocks[i] < 0 || pair_blocks[i] > INT32_MAX / 2) {
      return kv_error_set(err, KV_ERANGE, "split plan: pair %lld reads %lld blocks", (long long)i,
                          (long long)pair_blocks[i]);
    }
    if (pair_blocks[i] > max_pair) max_pair = pair_blocks[i];
  }
  if (max_pair == 0) {
    out->blocks_per_split = 1, out->max_splits = 1, out->n_work = 0;
    return 0;
  }
  /* Candidates: the largest pair cut into ns equal splits, ns from the fewest that respect
   * KVC_MAX_SPLIT_BLOCKS up to 64 more (or one split per block). */
  const int64_t ns_min = (max_pair + KVC_MAX_SPLIT_BLOCKS - 1) / KVC_MAX_SPLIT_BLOCKS;
  int64_t ns_max = ns_min + 64;
  if (ns_max > max_pair) ns_max = max_pair;
  double best_cost = 0.0;
  int64_t best_bps = 0, best_work = 0;
  for (int64_t ns = ns_min; ns <= ns_max; ns++) {
    const int64_t bps = (max_pair + ns - 1) / ns;
    int64_t work = 0;
    for (int64_t i = 0; i < n_pairs; i++) work += (pair_blocks[i] + bps - 1) / bps;
    const int64_t waves = (work + slots - 1) / slots;
    /* Combine: reads every split's partial once; about a tenth of a block's bytes per split. */
    const double cost = (double)waves * (double)(bps + KVC_PLAN_STARTUP_BLOCKS) + 0.1 * (double)ns;
    if (best_bps == 0 || cost < best_cost - 1e-9) {
      best_cost = cost, best_bps = bps, best_work = work;
    }
  }
  if (best_work > INT32_MAX / 2) return kv_error_set(err, KV_ERANGE, "split plan: too many splits");
  out->blocks_per_split = (int32_t)best_bps;
  out->max_splits = kvc_plan_pair_splits(max_pair, (int32_t)best_bps);
  out->n_work = best_work;
  return 0;
}

uint64_t kvc_arena_take(kvc_arena *a, uint64_t bytes) {
  uint64_t off = (a->used + 255u) & ~(uint64_t)255u;
  a->used = off + bytes;
  return off;
}

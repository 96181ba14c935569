/* kvc_plan.c — split-K launch planning (see kvc_plan.h). */
#include "kvc_plan.h"

#include <stdlib.h>
#include <string.h>

void kvc_split_plan_free(kvc_split_plan *p) {
  free(p->work);
  free(p->pair_first);
  free(p->pair_splits);
  memset(p, 0, sizeof *p);
}

int kvc_plan_splits(const int64_t *pair_blocks, int n_req, int n_kv_heads, int target_ctas,
                    int min_blocks_per_split, kvc_split_plan *p, kv_error *err) {
  if (n_req < 1 || n_kv_heads < 1 || target_ctas < 1 || min_blocks_per_split < 1) {
    return kv_error_set(err, KV_EINVAL, "split plan: n_req %d, kv heads %d, target CTAs %d, "
                        "min blocks per split %d must be positive", n_req, n_kv_heads,
                        target_ctas, min_blocks_per_split);
  }
  const int64_t pairs = (int64_t)n_req * n_kv_heads;
  if (pairs > INT32_MAX / 2) return kv_error_set(err, KV_ERANGE, "split plan: too many pairs");
  int64_t total = 0, max_pair = 0;
  for (int64_t i = 0; i < pairs; i++) {
    if (pair_blocks[i] < 0 || pair_blocks[i] > INT32_MAX / 2) {
      return kv_error_set(err, KV_ERANGE, "split plan: pair %lld reads %lld blocks", (long long)i,
                          (long long)pair_blocks[i]);
    }
    total += pair_blocks[i];
    if (pair_blocks[i] > max_pair) max_pair = pair_blocks[i];
  }
  /* Uniform split size: ceil(total / target), clamped to [min, KVC_MAX_SPLIT_BLOCKS]. */
  int64_t bps = (total + target_ctas - 1) / target_ctas;
  if (bps < min_blocks_per_split) bps = min_blocks_per_split;
  if (bps > KVC_MAX_SPLIT_BLOCKS) bps = KVC_MAX_SPLIT_BLOCKS;
  if (bps < 1) bps = 1;
  int64_t n_work = 0;
  for (int64_t i = 0; i < pairs; i++) n_work += (pair_blocks[i] + bps - 1) / bps;
  if (n_work > INT32_MAX / 2) return kv_error_set(err, KV_ERANGE, "split plan: too many splits");
  if (n_work > p->cap_work) {
    kvc_work *w = realloc(p->work, (size_t)(n_work > 0 ? n_work : 1) * sizeof *w);
    if (!w) return kv_error_set(err, KV_ENOMEM, "split plan: out of memory");
    p->work = w;
    p->cap_work = (int32_t)n_work;
  }
  if (pairs > p->cap_pairs) {
    int32_t *a = realloc(p->pair_first, (size_t)pairs * sizeof *a);
    if (a) p->pair_first = a;
    int32_t *b = realloc(p->pair_splits, (size_t)pairs * sizeof *b);
    if (b) p->pair_splits = b;
    if (!a || !b) return kv_error_set(err, KV_ENOMEM, "split plan: out of memory");
    p->cap_pairs = (int32_t)pairs;
  }
  int32_t slot = 0;
  for (int64_t i = 0; i < pairs; i++) {
    int32_t ns = (int32_t)((pair_blocks[i] + bps - 1) / bps);
    p->pair_first[i] = slot;
    p->pair_splits[i] = ns;
    for (int32_t s = 0; s < ns; s++) {
      kvc_work *w = &p->work[slot];
      w->req = (int32_t)(i / n_kv_heads);
      w->kvh = (int32_t)(i % n_kv_heads);
      w->blk_begin = (int32_t)(s * bps);
      w->blk_end = (int32_t)((s + 1) * bps < pair_blocks[i] ? (s + 1) * bps : pair_blocks[i]);
      w->slot = slot;
      w->n_splits = ns;
      slot++;
    }
  }
  p->blocks_per_split = (int32_t)bps;
  p->n_work = (int32_t)n_work;
  p->n_pairs = (int32_t)pairs;
  p->total_blocks = total;
  (void)max_pair;
  return 0;
}

int kvc_plan_psa_ctas(int n_pairs, int target_ctas, int64_t max_iters) {
  if (n_pairs < 1) return 1;
  int64_t c = ((int64_t)target_ctas + n_pairs - 1) / n_pairs;
  if (c > max_iters) c = max_iters;
  if (c < 1) c = 1;
  if (c > 1024) c = 1024;
  return (int)c;
}

uint64_t kvc_arena_take(kvc_arena *a, uint64_t bytes) {
  uint64_t off = (a->used + 255u) & ~(uint64_t)255u;
  a->used = off + bytes;
  return off;
}

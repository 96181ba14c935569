/* sim_replay.h — trace-order cache replay for prefix-hash traces (Mooncake FAST'25 style):
 * requests in arrival order, no timing, a block-granular store keyed by the prefix-block hashes.
 * This is how Mooncake's Figure 9 (hit rate against cache capacity in tokens) is defined:
 * "considering only the request sequence".
 *
 * Accounting: request r has blocks 0..n-1 of block_tokens tokens (the last one may be
 * partial); a block is a hit when it and every block before it in r are in the cache when r
 * arrives. hit tokens = sum of the hit blocks' token counts. After the lookup every block of r
 * is touched or inserted, deepest first, so that within a request the root block is the most
 * recently used (a prefix is evicted from its tail, as in vLLM).
 *
 * sim_prefix_reuse computes the same quantity for an unbounded cache directly from the hashes
 * (a block is reusable when every block of r's leading run up to it appeared in an earlier
 * request), with its own hash set and no store code; the two must agree exactly.
 */
#ifndef SIM_REPLAY_H
#define SIM_REPLAY_H

#include <stdint.h>

#include "kv_err.h"
#include "sim_policy.h"
#include "trace.h"

typedef struct sim_replay_result {
  int64_t requests;
  int64_t blocks, hit_blocks;
  int64_t tokens, hit_tokens;     /* input tokens covered by hashes, and those hit */
  double block_hit_ratio, token_hit_ratio;
  int64_t evictions;
} sim_replay_result;

/* Direct prefix-reuse ratio of a trace with hashes (TRACE_FLAG_HAS_HASHES, block_tokens > 0). */
int sim_prefix_reuse(const trace *t, sim_replay_result *r, kv_error *err);

/* Replays through a store of capacity_tokens tokens (<= 0: unbounded) with policy pol
 * (lru, fifo or opt; opt uses the next request index that references a block). */
int sim_replay_blocks(const trace *t, const sim_policy *pol, int64_t capacity_tokens,
                      sim_replay_result *r, kv_error *err);

/* Turn indices of t sorted by (arrival_ns, session, turn index): the replay order. The caller
 * frees *order. */
int sim_trace_order(const trace *t, int64_t **order, kv_error *err);

#endif /* SIM_REPLAY_H */

/* kvc_pool.h — the block-pool accounting under its former kernels/cuda name. The arithmetic is
 * plain C shared by the kernels' tools and the simulator and lives in common/kv_pool.h; these
 * aliases keep the GPU harness (kernels/bench/, tests/gpu/) building unchanged. New code uses
 * kv_pool.h. */
#ifndef KVC_POOL_H
#define KVC_POOL_H

#include "kv_pool.h"

typedef kv_pool_report kvc_pool_report;

static inline int kvc_pool_compare(const int64_t *need, int64_t n_steps, int n_layers,
                                   int64_t block_bytes, kvc_pool_report *r, kv_error *err) {
  return kv_pool_compare(need, n_steps, n_layers, block_bytes, r, err);
}

static inline int64_t kvc_pool_block_bytes(int block_size, int head_dim, int elem_bytes,
                                           int n_meta_vecs) {
  return kv_pool_block_bytes(block_size, head_dim, elem_bytes, n_meta_vecs);
}

#endif /* KVC_POOL_H */

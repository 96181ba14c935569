/* kv_pool.h — a GPU block cache for sparse decode attention: one pool of KV blocks shared by all
 * layers ("unified", PSA's unified memory management) versus equal per-layer partitions.
 * Plain C accounting over measured per-layer budgets (no GPU needed); the budgets come from PSA
 * run by the CPU reference on recorded Q/K/V (kernels/bench/pool_compare.c), from the kernels, or
 * from the simulator's decode steps (sim/sim_attn.h). Shared by both sides, hence in common/.
 *
 * Model (serving as in SparseServe: the full KV lives in host memory, the blocks that attention
 * reads in one decode step are resident in a GPU pool of fixed-size blocks; a block is one KV
 * head's block_size tokens of K and V plus its metadata). At decode step t, layer l needs
 * need[t][l] blocks (sum over KV heads and over the requests of the step). Capacity to serve
 * every step without overflow:
 *   unified pool            C_u = max_t sum_l need[t][l]
 *   equal partitions        C_e = L * max_t max_l need[t][l]   (each layer gets C/L)
 *   per-layer-sized (static) C_s = sum_l max_t need[t][l]       (each layer sized to its own peak)
 * and the same at the 99th percentile of steps (capacity that serves 99% of steps).
 * Utilisation = mean_t sum_l need[t][l] / C; fragmentation = 1 - utilisation (capacity held
 * but idle in an average step: in partitions it is stranded in layers that need less).
 */
#ifndef KV_POOL_H
#define KV_POOL_H

#include <stdint.h>

#include "kv_err.h"

typedef struct kv_pool_report {
  int n_layers;
  int64_t n_steps;
  int64_t block_bytes;
  double mean_total;            /* mean over steps of sum_l need */
  int64_t peak_layer[2];        /* max over steps of need in the layer that peaks highest; its index */
  int64_t unified_blocks, equal_blocks, sized_blocks;     /* capacity for 100% of steps */
  int64_t unified_p99, equal_p99, sized_p99;              /* capacity for 99% of steps */
  double unified_util, equal_util, sized_util;            /* mean_total / capacity (100%) */
  /* Steps that overflow when every scheme gets the unified pool's capacity C_u: */
  int64_t equal_overflow_steps; /* some layer needs more than C_u / L */
} kv_pool_report;

/* need [n_steps, n_layers] blocks (>= 0). block_bytes: bytes per block (for memory figures). */
int kv_pool_compare(const int64_t *need, int64_t n_steps, int n_layers, int64_t block_bytes,
                     kv_pool_report *r, kv_error *err);

/* Bytes of one pool block: K and V of block_size tokens of one KV head plus n_meta_vecs metadata
 * vectors of head_dim, elem_bytes each. */
int64_t kv_pool_block_bytes(int block_size, int head_dim, int elem_bytes, int n_meta_vecs);

#endif /* KV_POOL_H */

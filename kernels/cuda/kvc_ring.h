/* kvc_ring.h — index arithmetic of an mbarrier-completed ring of shared-memory slots (v5, the
 * 1-D bulk-copy paths: kvc_bulk.cuh, kvc_probe.cu, kvc_attend_bulk.cuh). Plain C, shared by the
 * kernels and the CPU test (test_kvc_host.c), which checks it against a model of the barrier.
 *
 * Load k (k = 0, 1, 2, ... in issue order) goes to slot k % stages and is the (k / stages)-th use
 * of that slot's barrier; an mbarrier starts in phase 0 and flips its phase bit each time a phase
 * completes, so the consumer of load k waits with mbarrier.try_wait.parity on parity
 * (k / stages) & 1 (the parity of the phase to be completed). A slot is refilled (load k +
 * stages) only after every consumer of load k is done with it. */
#ifndef KVC_RING_H
#define KVC_RING_H

#include <stdint.h>

#if defined(__CUDACC__)
#define KVC_RING_FN static __host__ __device__ __forceinline__
#else
#define KVC_RING_FN static inline
#endif

KVC_RING_FN int kvc_ring_slot(int64_t k, int stages) { return (int)(k % stages); }
KVC_RING_FN uint32_t kvc_ring_parity(int64_t k, int stages) { return (uint32_t)((k / stages) & 1); }

/* Loads handled by CTA `cta` of `grid` CTAs when n items are dealt round-robin (item = cta + j *
 * grid for j < result). */
KVC_RING_FN int64_t kvc_ring_count(int64_t n, int64_t cta, int64_t grid) {
  return n > cta ? (n - 1 - cta) / grid + 1 : 0;
}

/* A tile of `rows` rows of row_bytes copied by one bulk copy per row into rows of pitch bytes
 * (pitch = row_bytes + 16 when the rows are padded against ldmatrix bank conflicts, else
 * row_bytes): byte offset in shared memory of byte `byte` of row `row`. */
KVC_RING_FN int kvc_ring_tile_off(int row, int byte, int pitch) { return row * pitch + byte; }

/* v6: the paged-pool probes' item mapping (kvc_probe.cu, checked on the CPU by test_kvc_host's
 * test_pool_probe_model). The K (V) pool holds pages of n_kv_heads x block_size x head_dim
 * elements: page p of KV head h starts at byte (p * Hkv + h) * page_bytes (page_bytes =
 * block_size * head_dim * element size), the layout kvc_attend / kvc_attend_mma address. Item k
 * of a probe CTA that reads blocks [b0, ...) of a request: block b0 + k / 2, K when k is even, V
 * when odd; *is_v says which pool; the result is the byte offset in it. */
KVC_RING_FN int64_t kvc_pool_item_off(const int32_t *bt_row, int b0, int k, int Hkv, int kvh,
                                      int page_bytes, int *is_v) {
  *is_v = k & 1;
  return ((int64_t)bt_row[b0 + k / 2] * Hkv + kvh) * (int64_t)page_bytes;
}

/* v6: arguments of kvc_probe_read_pool: 0 when valid. mode 0 (per-thread loads) has no ring, so
 * `stages` is ignored (v5 checked it for every mode, and kvbench's `pool-ldg8` passes 0: that
 * row failed with "probe: stages" on the H200 and left the bulk rows without a reference). */
#define KVC_PROBE_POOL_MODES 10 /* kvc_probe_read_pool's modes 0..9 */
KVC_RING_FN int kvc_probe_pool_args_ok(int mode, int stages, int max_stages) {
  if (mode < 0 || mode >= KVC_PROBE_POOL_MODES) return 0; /* the modes: attn_cuda.h */
  return mode != 1 || (stages >= 1 && stages <= max_stages);
}

#endif /* KVC_RING_H */

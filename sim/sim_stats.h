/* sim_stats.h — simulator statistics as counters indexed by an enum (DRAMSim3 style). The
 * engine snapshots all counters when the warm-up ends and at the end; reported values are the
 * differences (the measured window). Names are stable: they are column names in the outputs.
 */
#ifndef SIM_STATS_H
#define SIM_STATS_H

#include <stdint.h>

#define SIM_STATS(X)                                                                          \
  X(EVENTS, events, "events fired")                                                                \
  X(ARRIVALS, arrivals, "turns arrived")                                                           \
  X(ADMITTED, admitted, "turns admitted to the batch")                                             \
  X(COMPLETED, completed, "turns completed")                                                       \
  X(ITERATIONS, iterations, "engine iterations")                                                   \
  X(GPU_BUSY_NS, gpu_busy_ns, "time the GPUs run iterations, incl. waits for KV loads (ns)")       \
  X(LOAD_STALL_NS, load_stall_ns, "time iterations wait for layer KV loads (ns)")                  \
  X(SAVE_STALL_NS, save_stall_ns, "time the engine waits for synchronous saves (ns)")              \
  X(PREFILL_NS, prefill_ns, "GPU time attributed to prefill (ns)")                                 \
  X(LOOKUPS_WITH_HISTORY, lookups_with_history, "turns with history tokens")                       \
  X(HIT_TURNS, hit_turns, "turns whose history KV came from the cache")                            \
  X(HIT_HBM, hit_hbm, "hits served from the HBM cache")                                            \
  X(HIT_DRAM, hit_dram, "hits served from DRAM")                                                   \
  X(HIT_SSD, hit_ssd, "hits served from SSD (block store: partly)")                                \
  X(HISTORY_TOKENS, history_tokens, "history tokens of turns")                                     \
  X(HIT_TOKENS, hit_tokens, "tokens whose KV came from the cache")                                 \
  X(INPUT_TOKENS, input_tokens, "prompt tokens (after truncation)")                                \
  X(PREFILL_TOKENS, prefill_tokens, "tokens computed in prefill")                                  \
  X(DECODE_TOKENS, decode_tokens, "tokens generated")                                              \
  X(TRUNCATIONS, truncations, "context-window overflows handled")                                  \
  X(TTL_EXPIRED, ttl_expired, "cache units dropped by TTL")                                        \
  X(DEMOTE_HBM_DRAM, demote_hbm_dram, "units demoted HBM cache -> DRAM")                           \
  X(DEMOTE_DRAM_SSD, demote_dram_ssd, "units demoted DRAM -> SSD")                                 \
  X(DEMOTE_OTHER, demote_other, "units demoted across two tiers")                                  \
  X(DROPPED, dropped, "units dropped by eviction")                                                 \
  X(INVALIDATED, invalidated, "units invalidated (truncation, failed save)")                       \
  X(SAVE_FAILED, save_failed, "saves that found no room")                                          \
  X(PREFETCHES, prefetches, "SSD -> DRAM prefetches started")                                      \
  X(FETCHES, fetches, "SSD -> DRAM fetches for the queue head (on demand)")                        \
  X(PROMOTIONS, promotions, "units loaded straight from SSD (no fetch possible)")                  \
  X(BYTES_H2D, bytes_h2d, "bytes over host-to-device PCIe")                                        \
  X(BYTES_D2H, bytes_d2h, "bytes over device-to-host PCIe")                                        \
  X(BYTES_SSD_READ, bytes_ssd_read, "bytes read from SSD")                                         \
  X(BYTES_SSD_WRITE, bytes_ssd_write, "bytes written to SSD")                                      \
  X(WAIT_UNIT, wait_unit, "loads that waited for a unit in flight")                               \
  X(SAT_NS, sat_ns, "iteration time while requests waited in the queue (saturated) (ns)")          \
  X(SAT_TOKENS, sat_tokens, "tokens emitted by saturated iterations")                              \
  X(GPU_SAT_NS, gpu_sat_ns, "iteration time while a job ready to run waited for room in the batch") \
  X(ATTN_STEPS, attn_steps, "decode iterations priced by [attention]")                             \
  X(ATTN_DECODE_SEQS, attn_decode_seqs, "decoding sequences summed over those iterations")         \
  X(ATTN_TOKENS, attn_tokens, "KV tokens decode attention read (all layers and KV heads)")         \
  X(ATTN_DENSE_TOKENS, attn_dense_tokens, "KV tokens dense decode attention would read")           \
  X(ATTN_HBM_BYTES, attn_hbm_bytes, "bytes decode attention read from HBM (KV + metadata)")        \
  X(ATTN_H2D_BYTES, attn_h2d_bytes, "block-cache misses loaded over PCIe (offload)")               \
  X(ATTN_D2H_BYTES, attn_d2h_bytes, "new KV written back to host (offload without a store)")       \
  X(ATTN_HIT_BLOCKS, attn_hit_blocks, "KV blocks found in the GPU block cache (offload)")          \
  X(ATTN_MISS_BLOCKS, attn_miss_blocks, "KV blocks loaded into the GPU block cache (offload)")      \
  X(ATTN_NS, attn_ns, "decode attention time (selection, kernels, iteration overheads) (ns)")      \
  X(ATTN_PCIE_STALL_NS, attn_pcie_stall_ns, "time layers waited for block loads (ns)")

typedef enum sim_stat {
#define SIM__STAT_ENUM(name, lname, desc) SIM_STAT_##name,
  SIM_STATS(SIM__STAT_ENUM)
#undef SIM__STAT_ENUM
  SIM_STAT_COUNT
} sim_stat;

/* Lower-case names ("events", "hit_turns", ...) and descriptions, indexed by sim_stat. */
extern const char *const sim_stat_names[SIM_STAT_COUNT];
extern const char *const sim_stat_desc[SIM_STAT_COUNT];

typedef struct sim_stats {
  int64_t v[SIM_STAT_COUNT];
} sim_stats;

#endif /* SIM_STATS_H */

/* sim_xfer.h — the engine's transfers (internal; sim_eng.h has the map of the parts). Every
 * transfer is a flow over the links of sim_link.h; what the tiers hold moves in sim_store.
 *
 * Loads. A hit's KV moves to the job's HBM space over H2D (from DRAM) or SSD read + H2D (from
 * SSD, through DRAM, where the unit then stays), one flow per layer in sequence (layer k carries
 * floor(b (k+1)/L) - floor(b k/L) of b bytes), each paying the link's set-up latency. With
 * layer-wise pre-loading the job's layers_loaded tells the iteration loop how far a prefill may
 * go; without it layers_loaded stays 0 until every layer has arrived (load, then compute).
 * layers_allowed caps what may load before admission (the read buffer).
 *
 * Saves. New KV goes to the store's first enabled tier: session store — the session's unit
 * grows to the target tokens (a stale unit is replaced), block store — one unit per new block
 * hash; one save record per (job, destination tier) flow. A unit being written is busy. Sync
 * saves count in sync_pending (the iteration loop stalls on them); a save that cannot find room
 * marks the job save_failed (its KV is then lost, counted).
 *
 * Prefetch (prefetch = lookahead, session store with DRAM and SSD): entries inside the prefetch
 * window (queued jobs, and announced turns with [cache] lookahead = trace: sim_sched.h) whose
 * unit is on SSD and idle get it moved to DRAM ahead of time, at most
 * prefetch_max_inflight at once, never evicting units of jobs nearer the head; when DRAM is full
 * the scan resumes after the next admission.
 */
#ifndef SIM_XFER_H
#define SIM_XFER_H

#include <stdint.h>

#include "sim_eng.h"

/* Starts the next allowed layer load(s) of job j (nothing while its unit is unsettled or a load
 * is in flight). */
void sim__load_next(sim_eng *E, int32_t j);
/* Saves job j's context up to `upto` tokens (sync: the engine waits for it). No store: nothing. */
void sim__save(sim_eng *E, int32_t j, int64_t upto, int sync);
/* Prefetch: a full scan of the window (when a slot frees up) / one job entering the window. */
void sim__prefetch_scan(sim_eng *E);
void sim__prefetch_enter(sim_eng *E, int32_t j);
/* Prefetch of an announced turn's session unit (key: its look-ahead key). */
void sim__prefetch_session(sim_eng *E, int32_t s, int64_t key);
/* The store's callback: unit x's transfer ended (ends a prefetch, settles a waiting job). */
void sim__unit_ready(void *ctx, int32_t x);

#endif /* SIM_XFER_H */

/* sim_engine.h — the serving engine behind sim_run (sim.h): what it models, in order of a
 * turn's life. Full design notes and the choices the paper leaves open: docs/sim.md. The engine
 * is split along what it models (sim_eng.h maps the parts: scheduler sim_sched, lookup
 * sim_lookup, transfers sim_xfer, iteration loop sim_iter, run driver sim_engine.c).
 *
 * Arrival. Sessions arrive at their trace times (one pending arrival event at a time). A turn
 * arrives at its trace time (open loop) or at its predecessor's completion + think time (closed
 * loop); a session never has two turns in the system (a turn arriving before its predecessor
 * finished waits for it). Effective token counts: history = the session's kept context (full-
 * history traces) or input - new; on context-window overflow the oldest `truncation_ratio` of
 * the history is dropped until history + new + output fits (CachedAttention's truncation).
 *
 * Queue and batch. FCFS job queue; at each iteration boundary jobs are admitted from its head
 * while the batch has fewer than batch_limit jobs and the HBM KV space can hold the job's
 * whole context (input + output tokens, reserved up front, so there is no preemption). The
 * head job never gets overtaken (strict FCFS).
 *
 * Cache lookup (at admission, or earlier when the head job starts pre-loading): session store
 * — hit when the session's unit holds at least the history (whole or nothing); block store —
 * the leading run of the request's block hashes present. TT/NKVT truncation invalidate the
 * unit; decoupled truncation shrinks it to the kept tokens. The hit units are pinned until the
 * job ends.
 *
 * Loading. History KV moves to the job's HBM space over H2D (from DRAM) or SSD read + H2D
 * (from SSD, through DRAM; the unit is promoted to DRAM). With layer-wise pre-loading one flow
 * per layer runs in sequence and layer i of the iteration starts when layer i's KV is in;
 * without it one flow carries all layers and the prefill waits for all of it. With a read
 * buffer of N layers the queue head loads its first N layers before admission.
 *
 * Iterations (continuous batching, mixed prefill + decode). One layer's time comes from the
 * cost model; the iteration runs layer by layer only when some prefill still waits for KV,
 * otherwise it is one event. At its end prefills emit their first token and decodes one token.
 *
 * Saving. New KV goes to the store's first tier. Asynchronous: the prefill's KV is written
 * after the prefill iteration, decoded KV every save_chunk_tokens and at the end; what is in
 * flight at the end moves to the HBM write buffer (the job's KV space is freed) when it fits,
 * otherwise the job keeps its KV space until the writes finish. Synchronous: everything is
 * written at the end and the engine stalls until it is. A unit being written is busy; a later
 * turn's load waits for it.
 *
 * Scheduler-aware prefetch (prefetch = lookahead): the first prefetch_window_jobs queued jobs
 * whose units are on SSD are moved to DRAM ahead of time (at most prefetch_max_inflight at
 * once); the look-ahead eviction window marks the units of the first evict_window_jobs queued
 * jobs for the `sa` policy (sim_policy.h).
 *
 * Checked at the end: every turn completed exactly once, HBM KV space and write buffer empty,
 * store bytes conserved per tier, the event engine's scheduled == fired + cancelled.
 */
#ifndef SIM_ENGINE_H
#define SIM_ENGINE_H

#include <stdint.h>

#include "sim.h"

/* HBM bytes available for running jobs' KV: n_gpus * HBM * (1 - reserve) - weights - HBM cache
 * - write buffer. Negative when the model does not fit. */
int64_t sim_engine_kv_space(const sim_params *p);

/* Mean final KV bytes of a session in the trace (context capped at the window): S_kv of the
 * paper's window formulas. */
double sim_engine_mean_session_kv(const sim_params *p, const trace *t);

#endif /* SIM_ENGINE_H */

/* sim_sched.h — the engine's scheduler (internal; sim_eng.h has the map of the parts).
 *
 * Jobs. One record per turn in the system (sim_slots: stable index while the turn lives; freed
 * when it has completed and its saves have ended). A job's blocks array survives reuse.
 *
 * Arrival. Sessions arrive at their trace times (one pending arrival event at a time: each
 * session's arrival schedules the next session's). A turn arrives at its trace time (open loop)
 * or after its predecessor's completion + think time (closed loop; scheduled by sim_iter);
 * a session never has two turns in the system. Effective tokens: history = the session's kept
 * context (full-history traces) or input - new; on context-window overflow the oldest
 * truncation_ratio of the history is dropped until history + new + output fits (whole blocks
 * with the block store and decoupled truncation), a prompt that alone does not fit is clipped.
 * The job's HBM reservation is its whole context (input + output; with [attention] offload its
 * prefill plus metadata, sim_attn_reserve_bytes); a job that could never fit is an error.
 *
 * Queue. A FIFO ring of job ids; qseq numbers jobs in arrival order (n_enq), n_deq counts jobs
 * admitted, so a job's distance from the head is qseq - n_deq. Admission (sim__try_admit, at an
 * iteration boundary) looks at the first admit_lookahead positions: a job whose KV is settled
 * and fits the HBM KV space (and the [attention] working-set test) is admitted; one behind the
 * head whose unit is still on SSD waits; HBM space is granted in queue order, so the first job
 * that does not fit stops admission.
 *
 * Look-ahead windows (CachedAttention §3.3) over the look-ahead list: the queue, followed with
 * [cache] lookahead = trace by the announced turns (scheduled arrivals, by time). The first W_e
 * entries mark their session units for the `sa` policy (sim_store_set_qpos, the key being the
 * entry's arrival time + 1, so that keys grow along the list); the first W_p entries are
 * prefetch candidates (sim_xfer). W_p = C_dram / S_kv, W_e = (C_dram + C_ssd) / S_kv entries
 * unless configured. Ranks move when a job is admitted (every later entry moves up one), a new
 * session's first turn joins the queue (every announced entry moves down one) or a turn is
 * announced; the entries crossing a window's edge are marked, unmarked or prefetched then.
 */
#ifndef SIM_SCHED_H
#define SIM_SCHED_H

#include <stdint.h>

#include "sim_eng.h"

/* A fresh job record (fields zeroed, blocks kept, unit/shrink/save list = -1, times -1), or -1
 * when memory runs out. */
int32_t sim__job_alloc(sim_eng *E);
void sim__job_release(sim_eng *E, int32_t j);

/* Queue: the job at position i (0 = head), append (KV_ENOMEM), remove position pos (the jobs
 * before it move up one place). */
int32_t sim__q_at(const sim_eng *E, int64_t i);
int sim__q_push(sim_eng *E, int32_t j);
void sim__q_remove(sim_eng *E, int64_t pos);

/* The look-ahead windows W_p, W_e from the trace's mean session KV and the tier capacities. */
void sim__sched_windows(sim_eng *E);
/* Marks job j's session unit as inside the eviction window (at its key). */
void sim__window_mark(sim_eng *E, int32_t j);
/* The look-ahead list: its length; entry r's job (queued) or -1 (announced), with its session
 * and key (arrival time + 1). */
int64_t sim__la_len(const sim_eng *E);
int32_t sim__la_at(const sim_eng *E, int64_t r, int32_t *session, int64_t *key);
/* A turn of session s is announced to arrive at `at` (lookahead = trace; KV_ENOMEM). */
int sim__announce(sim_eng *E, int64_t at, int64_t turn, int32_t s);

/* Event handlers: session s arrives (arg = session index); turn arrives (arg = turn index). */
void sim__ev_session(void *ctx, int64_t s);
void sim__ev_turn(void *ctx, int64_t arg);
/* The counters at the end of warm-up ([output] warmup_turns arrivals). */
void sim__snapshot_warm(sim_eng *E);

/* Admits queued jobs into the batch (see above); lookups and loads start for admitted jobs. */
void sim__try_admit(sim_eng *E);

#endif /* SIM_SCHED_H */

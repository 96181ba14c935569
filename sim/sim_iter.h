/* sim_iter.h — the engine's iteration loop (internal; sim_eng.h has the map of the parts).
 *
 * At an iteration boundary (state idle) the engine admits jobs (sim_sched) and plans one
 * iteration of the whole batch: mixed prefill + decode (Orca-style); one layer's time from the
 * cost model times the layer count plus the LM head, or, with [attention], per-layer times and
 * block loads from sim_attn (decode attention priced by the profile; the layers with H2D block
 * loads run as flows on the shared link). The iteration is one event unless a prefill in it
 * still waits for KV: then layer k starts at max(end of layer k-1, arrival of layer k's KV) and
 * the batch waits with it (state wait_load; the stall is counted). Sync saves in flight stall the
 * next iteration (state stall_save). At the iteration end prefills emit their first token and
 * save their KV (async), decodes emit one token (and save every save_chunk_tokens); a job with all
 * its output tokens completes: its request record is filled, its saves finish (or it waits for
 * them, its KV space moving to the write buffer when that fits), its units are released, and the
 * session's next turn is scheduled (open loop: at its trace time; closed: after think time).
 */
#ifndef SIM_ITER_H
#define SIM_ITER_H

#include <stdint.h>

#include "sim_eng.h"

/* Starts an iteration when the engine is idle (and not stopped). */
void sim__kick(sim_eng *E);
/* Runs the current iteration's layers as far as the loaded KV allows (called when loads end). */
void sim__advance(sim_eng *E);
/* Frees job j's record once it is done and its saves have ended (and its held HBM space). */
void sim__job_maybe_free(sim_eng *E, int32_t j);

#endif /* SIM_ITER_H */

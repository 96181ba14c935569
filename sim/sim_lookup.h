/* sim_lookup.h — a job's cache lookup and its preparation for admission (internal; sim_eng.h
 * has the map of the parts).
 *
 * Lookup (once per job, at admission or earlier when it reaches the queue head). Session store:
 * a hit when the session's unit holds at least the history (whole or nothing); TT/NKVT
 * truncation invalidate the unit, decoupled truncation shrinks it to the kept tokens once it is
 * settled. Block store: the leading run of the request's block hashes (the trace's, or
 * synthesized from (session, epoch, block index)) present and idle; at least one prompt token
 * is always computed. Hit units are pinned until the job ends; the job's load bytes per tier and
 * its source (the slowest tier involved) are set; a unit with a transfer in flight makes the job
 * wait for it (the store's ready callback, sim__unit_ready, settles it).
 *
 * Preparation. The queue head's session unit on SSD is fetched to DRAM on demand (the head waits;
 * running jobs go on), then its first read_buffer_layers layers pre-load into the HBM read
 * buffer. A job behind the head (admit_lookahead > 1) gets its lookup and fetch, no read buffer.
 */
#ifndef SIM_LOOKUP_H
#define SIM_LOOKUP_H

#include <stdint.h>

#include "sim_eng.h"

/* The unit of session s (session store), or -1. */
int32_t sim__sess_unit(sim_eng *E, int32_t s);
/* Block hashes of job j's first upto_tokens tokens into E->hbuf / E->hbuf_tok (tokens per
 * block); returns how many blocks are usable for caching (0 for a truncated prompt's trace
 * hashes). */
int64_t sim__job_hashes(sim_eng *E, int32_t j, int64_t upto_tokens);
/* OPT's next use of job j's unit: the recorded arrival of the session's next turn (INT64_MAX). */
int64_t sim__next_use(sim_eng *E, int32_t j);
/* Job j's unit (or blocks) are settled: apply the truncation shrink and start loading. */
void sim__unit_settled(sim_eng *E, int32_t j);
void sim__lookup(sim_eng *E, int32_t j);
void sim__head_prepare(sim_eng *E);
void sim__job_prepare(sim_eng *E, int32_t j);

#endif /* SIM_LOOKUP_H */

/* sim_validate.h — the simulator's prediction of an iteration measured on a GPU
 * (sim/profiling/kvprof_validate.py writes the grid; tools/kvsim_predict.c predicts it;
 * docs/sim.md, "Validation").
 *
 * Kinds and what batch / tokens / context / read_buffer mean for each:
 *   prefill   `batch` sequences of `tokens` new tokens after `context` cached ones each
 *   decode    `batch` sequences, one token each, `context` tokens cached before the step
 *   mixed     one prefill of `tokens` (nothing cached) packed with `batch` decode sequences of
 *             `context` cached tokens (continuous batching)
 *   preload   one prefill of `tokens` after `context` history tokens whose KV is in host
 *             memory; layers 0..read_buffer-1 are in HBM already, the others load layer by
 *             layer (one transfer each, back to back) while earlier layers compute
 *   resident  the same prefill with every layer's history already in HBM
 *   sync      the same prefill after loading all the history at once (no overlap)
 * A decode step's context counts the new token too: decode_ctx_sum = batch x (context + 1).
 * Time = layers x layer time + head time, from the cost model; the pre-loading kinds follow the
 * engine's recurrence (sim_engine.c, test_layerwise_overlap): layer i starts at max(end of
 * layer i - 1, arrival of its KV); a transfer takes latency + bytes / bandwidth.
 */
#ifndef SIM_VALIDATE_H
#define SIM_VALIDATE_H

#include <stdint.h>

#include "kv_err.h"
#include "sim_cost.h"

typedef enum sim_val_kind {
  SIM_VAL_PREFILL = 0,
  SIM_VAL_DECODE,
  SIM_VAL_MIXED,
  SIM_VAL_PRELOAD,
  SIM_VAL_RESIDENT,
  SIM_VAL_SYNC,
  SIM_VAL_KINDS
} sim_val_kind;

extern const char *const sim_val_kind_names[]; /* NULL-terminated */

typedef struct sim_val_iter {
  sim_val_kind kind;
  int64_t batch, tokens, context, read_buffer;
} sim_val_iter;

/* Looks a kind up by name; -1 when unknown. */
int sim_val_kind_find(const char *name);

/* The work of one iteration as the cost models take it; *arrays (free() it) holds the
 * prefill arrays w points into. KV_EINVAL as sim_val_predict. */
int sim_val_work(const sim_val_iter *it, sim_iter_work *w, int64_t **arrays, kv_error *err);

/* Predicted time (*ns) of one iteration with cost model c (its model's layer count and KV
 * size); h2d_bw in bytes/s and lat_ns per transfer price the pre-loading kinds. *flags (may
 * be NULL) gets sim_profile.h's SIM_PROF_* bits when c is a measured model, 0 otherwise.
 * KV_EINVAL for an iteration outside the definitions above (batch, tokens >= 1). */
int sim_val_predict(const sim_cost *c, const sim_val_iter *it, double h2d_bw, double lat_ns,
                    int64_t *ns, unsigned *flags, kv_error *err);

#endif /* SIM_VALIDATE_H */

/* sim_synth.h — the simulator's built-in synthetic workload ([workload] source = synthetic).
 *
 * Sessions arrive as a Poisson process; a session has 1 turn with probability 1 - multi_turn_frac
 * and otherwise 2 + Geometric turns so that the mean is turns_mean (defaults 9000 sessions, 1/s,
 * 5.75 turns, 73% multi-turn: CachedAttention's ShareGPT figures); new tokens and output tokens
 * of each turn are log-normal (median, sigma; clamped to [1, max]); think time before a later
 * turn is exponential (mean think_mean_s; the paper leaves it unstated, Pensieve and Strata use
 * 60 s). The trace has TRACE_FLAG_FULL_HISTORY: turn k's history is turn k-1's input + output; a
 * session stops before a turn whose context would pass 2^30 tokens. Random numbers: GSL's
 * mt19937 seeded with [workload] seed (default [sim] seed), drawn in a fixed order (arrival gap,
 * turn count, then per turn think, new, output); the session loop is trace_gen_sessions.
 */
#ifndef SIM_SYNTH_H
#define SIM_SYNTH_H

#include <stdint.h>

#include "kv_err.h"
#include "trace.h"

typedef struct sim_synth {
  uint64_t seed;
  int64_t sessions;
  double session_rate;       /* sessions per second */
  double turns_mean, multi_turn_frac;
  int64_t max_turns;
  double think_mean_s;
  double new_median, new_sigma;
  int64_t new_max;
  double out_median, out_sigma;
  int64_t out_max;
} sim_synth;

/* Defaults listed above. */
void sim_synth_defaults(sim_synth *s);
/* Generates into an initialised, empty trace. */
int sim_synth_generate(const sim_synth *s, trace *t, kv_error *err);

#endif /* SIM_SYNTH_H */

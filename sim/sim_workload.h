/* sim_workload.h — the simulator's workload: a trace file (through traces/trace_io.h, once
 * merged) or the built-in synthetic generator, selected by [workload] source.
 *
 * Synthetic workload (a stand-in until the project's ShareGPT-style generator lands): sessions
 * arrive as a Poisson process; a session has 1 turn with probability 1 - multi_turn_frac and
 * otherwise 2 + Geometric turns so that the mean is turns_mean (defaults 9000 sessions, 1/s,
 * 5.75 turns, 73% multi-turn: CachedAttention's ShareGPT figures); new tokens and output tokens
 * of each turn are log-normal (median, sigma; clamped to [1, max]); think time before a later
 * turn is exponential (mean think_mean_s; the paper leaves it unstated, Pensieve and Strata use
 * 60 s). The trace has TRACE_FLAG_FULL_HISTORY: turn k's history is turn k-1's input + output.
 * Random numbers: GSL's mt19937 seeded with [workload] seed (default [sim] seed); the same seed
 * gives the same trace on every platform GSL supports.
 */
#ifndef SIM_WORKLOAD_H
#define SIM_WORKLOAD_H

#include <stdint.h>

#include "kv_config.h"
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

/* Builds the workload named by [workload] source (default "synthetic"; "longctx" is the
 * long-context generator of sim_longctx.h), reading the [workload]
 * keys of that source. `default_seed` is [sim] seed. */
int sim_workload_build(kv_config *cfg, uint64_t default_seed, trace *t, kv_error *err);

#endif /* SIM_WORKLOAD_H */

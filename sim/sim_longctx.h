/* sim_longctx.h — the built-in long-context workload ([workload] source = longctx): multi-turn
 * question answering over long documents, for sparse attention (docs/psa-serving.md).
 *
 * Sessions arrive as a Poisson process (session_rate per second). A session has `turns` turns.
 * Turn 1 brings a document of D tokens, D log-uniform in [doc_min, doc_max], plus a question;
 * every later turn brings a question only, after an exponential think time (mean think_mean_s,
 * 0 = at once). Questions and answers are log-normal (new_median / new_sigma, out_median /
 * out_sigma, clamped to [1, new_max] and [1, out_max]). Turn k's history is turn k-1's input +
 * output (TRACE_FLAG_FULL_HISTORY), so contexts grow from D to about D + turns * (question +
 * answer). Defaults: 32 sessions at 1/s, 4 turns, documents 16K-120K tokens, questions median 64,
 * answers median 256 (max 1024), think 5 s — a few long sessions, as in LongBench-style document
 * QA served to a handful of users. GSL mt19937 seeded with [workload] seed (default [sim] seed);
 * the session loop is trace_gen_sessions (traces/trace_gen.h); the keys are read by
 * sim_workload.c.
 */
#ifndef SIM_LONGCTX_H
#define SIM_LONGCTX_H

#include <stdint.h>

#include "kv_err.h"
#include "trace.h"

typedef struct sim_longctx {
  uint64_t seed;
  int64_t sessions, turns;
  double session_rate, think_mean_s;
  int64_t doc_min, doc_max;
  double new_median, new_sigma, out_median, out_sigma;
  int64_t new_max, out_max;
} sim_longctx;

void sim_longctx_defaults(sim_longctx *w);
/* Generates into an initialised, empty trace. */
int sim_longctx_generate(const sim_longctx *w, trace *t, kv_error *err);

#endif /* SIM_LONGCTX_H */

/* trace_summary.h — what a trace looks like: sessions, turns per session, token-length
 * percentiles, arrival rate and prefix reuse, printed as text and drawn as CDFs with gnuplot.
 *
 * Definitions (docs/trace-format.md):
 *   session tokens   a session's last turn's input + output (its final context);
 *   percentiles      nearest rank: the smallest value with at least p% of values at or below;
 *   duration         last turn arrival - first turn arrival; request rate = turns / duration;
 *                    session rate = (sessions - 1) / (last - first session arrival), the
 *                    estimator of a Poisson rate from the arrivals' span;
 *   history share    sum(input - new) / sum(input): the part of all prompts a per-session KV
 *                    cache could serve (the trace's own claim of reusable history);
 *   prefix reuse     (traces with hashes) replaying turns in arrival order (ties: session, turn)
 *                    against an infinite cache of every block hash seen so far: a turn reuses
 *                    its longest prefix of already-seen blocks, min(k * block_tokens, input)
 *                    tokens; reported as a share of all input tokens, and the share of blocks
 *                    seen before in any position.
 */
#ifndef TRACE_SUMMARY_H
#define TRACE_SUMMARY_H

#include <stdint.h>
#include <stdio.h>

#include "kv_err.h"
#include "trace.h"

typedef struct trace_dist {
  int64_t n;
  double mean;
  int64_t min, p50, p90, p99, max;
} trace_dist;

typedef struct trace_summary {
  int64_t n_sessions, n_turns, empty_sessions;
  trace_dist turns;           /* turns per session (sessions with >= 1 turn) */
  double multi_turn_frac;     /* sessions with >= 2 turns / sessions with >= 1 turn */
  trace_dist input, new_tokens, output;   /* per turn */
  trace_dist session_tokens;  /* per session with >= 1 turn */
  double frac_over_2k, frac_over_4k;  /* sessions with session tokens > 2048 / > 4096 */
  double duration_s;
  double session_rate, request_rate;  /* per second (0 when duration is 0) */
  double history_share;
  int has_hashes;
  double prefix_reuse_tokens; /* share of input tokens */
  double block_reuse;         /* share of blocks whose hash was seen earlier */
  int64_t blocks, unique_blocks;
} trace_summary;

int trace_summarize(const trace *t, trace_summary *s, kv_error *err);

/* Human-readable report. */
void trace_summary_print(FILE *f, const trace *t, const trace_summary *s);

/* Writes the CDF data (<dir>/<prefix>_*.dat) and a gnuplot script <dir>/<prefix>.gp that draws
 * four panels (tokens per turn, session tokens, turns per session, request inter-arrival
 * times) into <prefix>.png and <prefix>.svg in the same directory. The script's path goes to
 * script (cap bytes). Running gnuplot is the caller's business (tools do). */
int trace_summary_write_plots(const trace *t, const char *dir, const char *prefix, char *script,
                              size_t cap, kv_error *err);

#endif /* TRACE_SUMMARY_H */

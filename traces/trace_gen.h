/* trace_gen.h — a ShareGPT-style multi-turn workload generator (GSL, seeded), its fit to the
 * statistics CachedAttention publishes, its fit to an imported trace, and re-timing of a trace.
 *
 * Model (every distribution independent; docs/trace-format.md gives the derivation):
 *   sessions       n_sessions, arriving as a Poisson process of `rate` sessions/s (exponential
 *                  inter-arrival times; the first session arrives after the first gap);
 *   turns T        P(T = 1) = p_single; for T >= 2, T - 1 ~ Geometric(p_geom) on {1, 2, ...}
 *                  (mean 1 + 1/p_geom), capped at max_turns;
 *   tokens/turn    new prompt tokens ~ round(LogNormal(prompt_mu, prompt_sigma)), output tokens
 *                  ~ round(LogNormal(output_mu, output_sigma)), each at least 1 and at most
 *                  prompt_max / output_max when those are > 0; the turn's input is the previous
 *                  turn's input + output + its new tokens (TRACE_FLAG_FULL_HISTORY);
 *   think time     between a turn's completion and the next turn: exponential with mean
 *                  think_mean_s (think_sigma = 0), or log-normal with that mean and log-space
 *                  standard deviation think_sigma (> 0: a heavier tail, more short gaps); arrival_ns of turn k > 0 = arrival of turn k-1 + think (service time
 *                  is not known to a generator, so open-loop arrivals assume it is zero; a
 *                  closed-loop replay uses think_ns after the real completion);
 *   hash chains    when block_tokens > 0 every turn lists the hashes of its input's blocks:
 *                  block j of session s hashes (s, j, fill) chained with block j-1, so the
 *                  full blocks of turn k reappear unchanged as the prefix of turn k+1 and a
 *                  block-granular prefix cache sees each turn extend its session's prefix; a
 *                  partial last block gets a different hash once it fills.
 * Four independent GSL generators (mt19937), seeded from `seed` by splitmix64, drive arrivals,
 * turn counts, lengths and think times, so changing one distribution leaves the others' draws
 * unchanged.
 */
#ifndef TRACE_GEN_H
#define TRACE_GEN_H

#include <stdint.h>
#include <stdio.h>

#include <gsl/gsl_rng.h>

#include "kv_config.h"
#include "kv_err.h"
#include "trace.h"

typedef struct trace_gen_params {
  int64_t n_sessions;
  double rate;              /* sessions per second */
  double p_single;          /* P(T = 1) */
  double p_geom;            /* T - 1 ~ Geometric(p_geom) when T >= 2 */
  int32_t max_turns;
  double prompt_mu, prompt_sigma;   /* log-space parameters, tokens */
  double output_mu, output_sigma;
  int32_t prompt_max, output_max;   /* caps; 0 = none */
  double think_mean_s;
  double think_sigma;       /* 0: exponential think time; > 0: log-normal, this log-space sd */
  int32_t block_tokens;     /* hash-chain block size; 0 = no hashes */
  uint64_t seed;
} trace_gen_params;

/* The defaults: fitted to CachedAttention's ShareGPT statistics (trace_gen_fit_published with
 * the default targets, seed 1, 200,000 simulated sessions); think time 60 s (Pensieve, Strata);
 * 9,000 sessions at 1.0/s; no hashes. */
void trace_gen_params_default(trace_gen_params *p);

/* Reads parameters from `section` of a config (keys = field names: n_sessions, rate, p_single,
 * p_geom, max_turns, prompt_mu, prompt_sigma, output_mu, output_sigma, prompt_max, output_max,
 * think_mean_s, think_sigma, block_tokens, seed); absent keys keep p's values. Range errors carry file:line. */
int trace_gen_params_from_config(const kv_config *cfg, const char *section, trace_gen_params *p,
                                 kv_error *err);
/* Writes p as an INI section `section` (readable by the function above). */
void trace_gen_params_write(FILE *f, const char *section, const trace_gen_params *p);
/* Checks ranges (rate > 0, probabilities in (0, 1], sigmas >= 0, ...). */
int trace_gen_params_check(const trace_gen_params *p, kv_error *err);

/* Generates a trace into t (initialised, empty). */
int trace_gen_generate(const trace_gen_params *p, trace *t, kv_error *err);

/* ---- the session skeleton every built-in generator shares --------------------------------------
 * Sessions arrive, each with its turns; turn k of a session has input = the session's history
 * (the previous turns' new + output tokens: TRACE_FLAG_FULL_HISTORY) + its new tokens, and
 * arrives think_ns after the previous turn (the first at the session's arrival). The model
 * draws the numbers, in its own order from its own generators; the skeleton adds them to the
 * trace. Used by trace_gen_generate and the simulator's built-in workloads
 * (sim/sim_synth.h, sim/sim_longctx.h). */

typedef struct trace_gen_turn {
  int64_t think_ns, new_tokens, output_tokens;
  const uint64_t *hashes;   /* the turn's input block hashes (borrowed until the next call) */
  int32_t n_hashes;
} trace_gen_turn;

typedef struct trace_gen_model {
  void *ctx;
  /* Session i: its arrival (ns from the start) and number of turns; 0 or a negative status. */
  int (*session)(void *ctx, int64_t i, int64_t *arrival_ns, int64_t *n_turns, kv_error *err);
  /* Turn k of session i given the session's history (tokens): 0 to add it, 1 to end the
   * session before it, or a negative status. */
  int (*turn)(void *ctx, int64_t i, int64_t k, int64_t history, trace_gen_turn *u,
              kv_error *err);
} trace_gen_model;

/* Appends n_sessions sessions of model m to t (session ids 0..n-1). */
int trace_gen_sessions(const trace_gen_model *m, int64_t n_sessions, trace *t, kv_error *err);
/* The next arrival of a Poisson process of `rate` per second on a clock kept in seconds
 * (*clock_s advances by an exponential gap): round(*clock_s * 1e9) ns. */
int64_t trace_gen_poisson_ns(gsl_rng *r, double rate, double *clock_s);
/* round(LogNormal(log(median), sigma)) clamped to [1, max]. */
int64_t trace_gen_lognormal(gsl_rng *r, double median, double sigma, int64_t max);

/* ---- fitting --------------------------------------------------------------------------------- */

/* Published ShareGPT statistics (CachedAttention, ATC'24 §5). */
typedef struct trace_gen_targets {
  double mean_turns;        /* 5.75 */
  double multi_turn_frac;   /* 0.73 */
  int64_t long_tokens;      /* 2048 ("2K") */
  double frac_over_long;    /* 0.47 of sessions exceed long_tokens */
  int64_t longer_tokens;    /* 4096 ("4K") */
  double frac_over_longer;  /* 0.30 */
  double output_ratio;      /* mean output / mean prompt tokens per turn: not published; 2.0 */
} trace_gen_targets;

void trace_gen_targets_default(trace_gen_targets *tg);

/* What a fit achieved on its own simulated sample. */
typedef struct trace_gen_fit_report {
  int64_t n_mc;
  double mean_turns, multi_turn_frac, frac_over_long, frac_over_longer;
  double mean_prompt, mean_output;  /* per turn */
} trace_gen_fit_report;

/* Fits p's turn and length parameters to the targets: p_single = 1 - multi_turn_frac and
 * p_geom = 1 / (mean(T | T >= 2) - 1) in closed form; prompt_mu, prompt_sigma (= output_sigma)
 * and output_mu = prompt_mu + ln(output_ratio) by nested bisection on a Monte Carlo sample of
 * n_mc sessions with common random numbers (seeded), so that P(S > long) and P(S > longer) hit
 * their targets, S being a session's total tokens (its last turn's input + output). Other
 * fields of p (caps, rate, think time, seed, ...) are kept and used. */
int trace_gen_fit_published(const trace_gen_targets *tg, int64_t n_mc, uint64_t seed,
                            trace_gen_params *p, trace_gen_fit_report *rep, kv_error *err);

/* Fits p's turn and length parameters to a trace by maximum likelihood: p_single and p_geom
 * from the turns-per-session counts, (mu, sigma) of log(new tokens) and log(output tokens) over
 * all turns (values < 1 are counted as 1), and think_mean_s from the mean of its positive
 * think times when it has any. Needs at least one session with a turn. */
int trace_gen_fit_trace(const trace *t, trace_gen_params *p, kv_error *err);

/* Replaces a trace's times: sessions (in order) arrive as a Poisson process of `rate`/s; turn
 * k > 0 arrives think_ns after turn k-1, think ~ exponential(think_mean_s) (0 when the mean is
 * 0). Clears TRACE_FLAG_OPEN_LOOP (the arrivals are synthetic). */
int trace_gen_retime(trace *t, double rate, double think_mean_s, uint64_t seed, kv_error *err);

#endif /* TRACE_GEN_H */

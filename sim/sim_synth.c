/* sim_synth.c — the built-in synthetic workload (sim_synth.h). */
#include "sim_synth.h"

#include <gsl/gsl_errno.h>
#include <gsl/gsl_randist.h>
#include <gsl/gsl_rng.h>
#include <math.h>
#include <stdio.h>

#include "trace_gen.h"

void sim_synth_defaults(sim_synth *s) {
  s->seed = 1;
  s->sessions = 9000;
  s->session_rate = 1.0;
  s->turns_mean = 5.75;
  s->multi_turn_frac = 0.73;
  s->max_turns = 64;
  s->think_mean_s = 60;
  s->new_median = 40;
  s->new_sigma = 1.3;
  s->new_max = 4096;
  s->out_median = 200;
  s->out_sigma = 0.8;
  s->out_max = 2048;
}

typedef struct sim__synth_ctx {
  const sim_synth *s;
  gsl_rng *r;
  double clock_s, m, q;
} sim__synth_ctx;

static int sim__synth_session(void *ctx, int64_t i, int64_t *arrival_ns, int64_t *n_turns,
                              kv_error *err) {
  (void)i;
  (void)err;
  sim__synth_ctx *c = ctx;
  *arrival_ns = trace_gen_poisson_ns(c->r, c->s->session_rate, &c->clock_s);
  int64_t turns = 1;
  if (gsl_rng_uniform(c->r) < c->m) turns = 2 + (int64_t)gsl_ran_geometric(c->r, c->q) - 1;
  *n_turns = turns > c->s->max_turns ? c->s->max_turns : turns;
  return 0;
}

static int sim__synth_turn(void *ctx, int64_t i, int64_t k, int64_t history, trace_gen_turn *u,
                           kv_error *err) {
  (void)i;
  (void)err;
  sim__synth_ctx *c = ctx;
  const sim_synth *s = c->s;
  u->think_ns = k > 0 ? (int64_t)llround(gsl_ran_exponential(c->r, s->think_mean_s) * 1e9) : 0;
  u->new_tokens = trace_gen_lognormal(c->r, s->new_median, s->new_sigma, s->new_max);
  u->output_tokens = trace_gen_lognormal(c->r, s->out_median, s->out_sigma, s->out_max);
  /* keep token counts far from int32 limits */
  return history + u->new_tokens + u->output_tokens > INT32_MAX / 2 ? 1 : 0;
}

int sim_synth_generate(const sim_synth *s, trace *t, kv_error *err) {
  if (s->sessions < 0 || !(s->session_rate > 0) || !(s->turns_mean >= 1) ||
      !(s->multi_turn_frac >= 0 && s->multi_turn_frac <= 1) || s->max_turns < 1 ||
      !(s->think_mean_s >= 0) || !(s->new_median >= 1) || !(s->out_median >= 1) ||
      !(s->new_sigma >= 0) || !(s->out_sigma >= 0) || s->new_max < 1 || s->out_max < 1) {
    return kv_error_set(err, KV_EINVAL, "synthetic workload: parameter out of range");
  }
  /* E[turns] = (1 - m) + m * M, multi-turn sessions have 2 + (Geometric(q) - 1) turns with
   * mean M = 1 + 1/q */
  double m = s->multi_turn_frac;
  double M = m > 0 ? (s->turns_mean - (1 - m)) / m : 2;
  if (m > 0 && M < 2) {
    return kv_error_set(err, KV_EINVAL, "synthetic workload: turns_mean %.3g is too small for "
                        "multi_turn_frac %.3g (multi-turn sessions have >= 2 turns)",
                        s->turns_mean, m);
  }
  double q = M > 2 ? 1.0 / (M - 1) : 1.0;
  gsl_set_error_handler_off();
  gsl_rng *r = gsl_rng_alloc(gsl_rng_mt19937);
  if (!r) return kv_error_set(err, KV_ENOMEM, "synthetic workload: out of memory");
  gsl_rng_set(r, (unsigned long)s->seed);
  snprintf(t->name, sizeof t->name, "synthetic sharegpt-like seed=%llu",
           (unsigned long long)s->seed);
  snprintf(t->source, sizeof t->source,
           "kvsim built-in generator: %lld sessions, %.3g/s, %.3g turns, %.2f multi-turn, "
           "think %.3g s, new lognormal(%g, %g), out lognormal(%g, %g)",
           (long long)s->sessions, s->session_rate, s->turns_mean, m, s->think_mean_s,
           s->new_median, s->new_sigma, s->out_median, s->out_sigma);
  snprintf(t->tokenizer, sizeof t->tokenizer, "synthetic (no text)");
  t->flags = TRACE_FLAG_FULL_HISTORY;
  sim__synth_ctx c = {s, r, 0, m, q};
  const trace_gen_model model = {&c, sim__synth_session, sim__synth_turn};
  int rc = trace_gen_sessions(&model, s->sessions, t, err);
  gsl_rng_free(r);
  return rc;
}

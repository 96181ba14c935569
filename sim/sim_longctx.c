/* sim_longctx.c — the built-in long-context workload (sim_longctx.h). */
#include "sim_longctx.h"

#include <gsl/gsl_errno.h>
#include <gsl/gsl_randist.h>
#include <gsl/gsl_rng.h>
#include <math.h>
#include <stdio.h>

#include "trace_gen.h"

void sim_longctx_defaults(sim_longctx *w) {
  w->seed = 1;
  w->sessions = 32;
  w->turns = 4;
  w->session_rate = 1.0;
  w->think_mean_s = 5.0;
  w->doc_min = 16384;
  w->doc_max = 120000;
  w->new_median = 64;
  w->new_sigma = 0.5;
  w->new_max = 1024;
  w->out_median = 256;
  w->out_sigma = 0.5;
  w->out_max = 1024;
}

typedef struct sim__longctx_ctx {
  const sim_longctx *w;
  gsl_rng *r;
  double clock_s, lo, hi;
  int64_t doc;               /* the current session's document (tokens) */
} sim__longctx_ctx;

static int sim__longctx_session(void *ctx, int64_t i, int64_t *arrival_ns, int64_t *n_turns,
                                kv_error *err) {
  (void)i;
  (void)err;
  sim__longctx_ctx *c = ctx;
  *arrival_ns = trace_gen_poisson_ns(c->r, c->w->session_rate, &c->clock_s);
  c->doc = (int64_t)llround(exp(c->lo + (c->hi - c->lo) * gsl_rng_uniform(c->r)));
  *n_turns = c->w->turns;
  return 0;
}

static int sim__longctx_turn(void *ctx, int64_t i, int64_t k, int64_t history,
                             trace_gen_turn *u, kv_error *err) {
  (void)i;
  (void)history;
  (void)err;
  sim__longctx_ctx *c = ctx;
  const sim_longctx *w = c->w;
  u->think_ns = k > 0 && w->think_mean_s > 0
                    ? (int64_t)llround(gsl_ran_exponential(c->r, w->think_mean_s) * 1e9)
                    : 0;
  u->new_tokens = trace_gen_lognormal(c->r, w->new_median, w->new_sigma, w->new_max) +
                  (k == 0 ? c->doc : 0);
  u->output_tokens = trace_gen_lognormal(c->r, w->out_median, w->out_sigma, w->out_max);
  return 0;
}

int sim_longctx_generate(const sim_longctx *w, trace *t, kv_error *err) {
  if (w->sessions < 0 || w->turns < 1 || !(w->session_rate > 0) || !(w->think_mean_s >= 0) ||
      w->doc_min < 1 || w->doc_max < w->doc_min || !(w->new_median >= 1) ||
      !(w->out_median >= 1) || !(w->new_sigma >= 0) || !(w->out_sigma >= 0) || w->new_max < 1 ||
      w->out_max < 1) {
    return kv_error_set(err, KV_EINVAL, "longctx workload: parameter out of range (need "
                        "1 <= doc_min <= doc_max, turns >= 1, positive rates and medians)");
  }
  gsl_set_error_handler_off();
  gsl_rng *r = gsl_rng_alloc(gsl_rng_mt19937);
  if (!r) return kv_error_set(err, KV_ENOMEM, "longctx workload: out of memory");
  gsl_rng_set(r, (unsigned long)w->seed);
  snprintf(t->name, sizeof t->name, "longctx seed=%llu", (unsigned long long)w->seed);
  snprintf(t->source, sizeof t->source,
           "kvsim long-context generator: %lld sessions at %.3g/s, %lld turns, documents "
           "log-uniform [%lld, %lld], question lognormal(%g, %g), answer lognormal(%g, %g), "
           "think %.3g s", (long long)w->sessions, w->session_rate, (long long)w->turns,
           (long long)w->doc_min, (long long)w->doc_max, w->new_median, w->new_sigma,
           w->out_median, w->out_sigma, w->think_mean_s);
  snprintf(t->tokenizer, sizeof t->tokenizer, "synthetic (no text)");
  t->flags = TRACE_FLAG_FULL_HISTORY;
  sim__longctx_ctx c = {w, r, 0, log((double)w->doc_min), log((double)w->doc_max), 0};
  const trace_gen_model m = {&c, sim__longctx_session, sim__longctx_turn};
  int rc = trace_gen_sessions(&m, w->sessions, t, err);
  gsl_rng_free(r);
  return rc;
}


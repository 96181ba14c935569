/* sim_longctx.c — the built-in long-context workload (sim_longctx.h). */
#include "sim_longctx.h"

#include <gsl/gsl_errno.h>
#include <gsl/gsl_randist.h>
#include <gsl/gsl_rng.h>
#include <math.h>
#include <stdio.h>

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

static int64_t sim__ln(gsl_rng *r, double median, double sigma, int64_t max) {
  int64_t v = (int64_t)llround(gsl_ran_lognormal(r, log(median), sigma));
  return v < 1 ? 1 : (v > max ? max : v);
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
  int rc = 0;
  double clock_s = 0, lo = log((double)w->doc_min), hi = log((double)w->doc_max);
  for (int64_t i = 0; i < w->sessions && !rc; i++) {
    clock_s += gsl_ran_exponential(r, 1.0 / w->session_rate);
    int64_t arr = (int64_t)llround(clock_s * 1e9);
    int64_t sid = trace_add_session(t, i, arr, err);
    if (sid < 0) {
      rc = (int)sid;
      break;
    }
    int64_t doc = (int64_t)llround(exp(lo + (hi - lo) * gsl_rng_uniform(r)));
    int64_t hist = 0, at = arr;
    for (int64_t k = 0; k < w->turns; k++) {
      int64_t think = 0;
      if (k > 0 && w->think_mean_s > 0) {
        think = (int64_t)llround(gsl_ran_exponential(r, w->think_mean_s) * 1e9);
        at += think;
      }
      int64_t nw = sim__ln(r, w->new_median, w->new_sigma, w->new_max) + (k == 0 ? doc : 0);
      int64_t out = sim__ln(r, w->out_median, w->out_sigma, w->out_max);
      int64_t ti = trace_add_turn(t, at, think, hist + nw, nw, out, NULL, 0, err);
      if (ti < 0) {
        rc = (int)ti;
        break;
      }
      hist += nw + out;
    }
  }
  gsl_rng_free(r);
  return rc;
}

int sim_longctx_build(kv_config *cfg, uint64_t default_seed, trace *t, kv_error *err) {
  sim_longctx w;
  sim_longctx_defaults(&w);
  int64_t seed;
  int rc = kv_config_int(cfg, "workload", "seed", (int64_t)default_seed, 0, INT64_MAX, &seed, err);
  if (rc) return rc;
  w.seed = (uint64_t)seed;
  const kv_config_f64_key dv[] = {
      {"session_rate", &w.session_rate, 1e-9, 1e9}, {"think_mean_s", &w.think_mean_s, 0, 1e9},
      {"new_median", &w.new_median, 1, 1e9},        {"new_sigma", &w.new_sigma, 0, 10},
      {"out_median", &w.out_median, 1, 1e9},        {"out_sigma", &w.out_sigma, 0, 10},
  };
  if ((rc = kv_config_f64_table(cfg, "workload", dv, sizeof dv / sizeof dv[0], err))) return rc;
  const kv_config_i64_key iv[] = {
      {"sessions", &w.sessions, 0, 10000000}, {"turns", &w.turns, 1, 100000},
      {"doc_min", &w.doc_min, 1, 1 << 26},    {"doc_max", &w.doc_max, 1, 1 << 26},
      {"new_max", &w.new_max, 1, 1 << 24},    {"out_max", &w.out_max, 1, 1 << 24},
  };
  if ((rc = kv_config_i64_table(cfg, "workload", iv, sizeof iv / sizeof iv[0], err))) return rc;
  rc = sim_longctx_generate(&w, t, err);
  if (rc) kv_error_prefix(err, "[workload] source = longctx");
  return rc;
}

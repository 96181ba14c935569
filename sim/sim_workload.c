#include "sim_workload.h"

#include "trace_gen.h"
#include "trace_importers.h"
#include "trace_io.h"

#include <gsl/gsl_errno.h>
#include <gsl/gsl_randist.h>
#include <gsl/gsl_rng.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "sim_longctx.h"

/* Trace files: a format whose importer claims the path's ending (trace_importers.h: ".jsonl" is
 * a Mooncake trace, imported with the default options — 512-token blocks, sessions inferred from
 * shared prefixes; bad lines stop the import), else the project's format (traces/trace_io.h:
 * HDF5 or CSV). */
static int sim__read_trace_file(const char *path, trace *t, kv_error *err) {
  const trace_importer *imp = trace_importer_for_source(path);
  if (imp) return trace_import_file(imp, path, NULL, t, NULL, err);
  return trace_read(path, t, err);
}

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

static int64_t sim__lognormal(gsl_rng *r, double median, double sigma, int64_t max) {
  double x = gsl_ran_lognormal(r, log(median), sigma);
  int64_t v = (int64_t)llround(x);
  if (v < 1) v = 1;
  if (v > max) v = max;
  return v;
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
  int rc = 0;
  double clock_s = 0;
  for (int64_t i = 0; i < s->sessions && !rc; i++) {
    clock_s += gsl_ran_exponential(r, 1.0 / s->session_rate);
    int64_t arr = (int64_t)llround(clock_s * 1e9);
    int64_t turns = 1;
    if (gsl_rng_uniform(r) < m) turns = 2 + (int64_t)gsl_ran_geometric(r, q) - 1;
    if (turns > s->max_turns) turns = s->max_turns;
    int64_t sid = trace_add_session(t, i, arr, err);
    if (sid < 0) {
      rc = (int)sid;
      break;
    }
    int64_t hist = 0, at = arr;
    for (int64_t k = 0; k < turns; k++) {
      int64_t think = 0;
      if (k > 0) {
        think = (int64_t)llround(gsl_ran_exponential(r, s->think_mean_s) * 1e9);
        at += think;
      }
      int64_t nw = sim__lognormal(r, s->new_median, s->new_sigma, s->new_max);
      int64_t out = sim__lognormal(r, s->out_median, s->out_sigma, s->out_max);
      if (hist + nw + out > INT32_MAX / 2) break; /* keep token counts far from int32 limits */
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

/* [workload] decode = full | first_token (trace_teacher_force). */
static int sim__apply_decode(kv_config *cfg, trace *t, kv_error *err) {
  static const char *const names[] = {"full", "first_token", NULL};
  int mode = 0;
  int rc = kv_config_enum(cfg, "workload", "decode", 0, names, &mode, err);
  if (!rc && mode == 1) rc = trace_teacher_force(t, err);
  return rc;
}

/* [workload] source = sharegpt: the project's ShareGPT-style generator (traces/trace_gen.h),
 * its parameters read from [workload] under their own names (n_sessions, rate, think_mean_s,
 * seed, p_single, ...; defaults fitted to the published statistics). */
static int sim__generate_sharegpt(kv_config *cfg, uint64_t default_seed, trace *t,
                                  kv_error *err) {
  trace_gen_params p;
  trace_gen_params_default(&p);
  p.seed = default_seed;
  int rc = trace_gen_params_from_config(cfg, "workload", &p, err);
  if (!rc) rc = trace_gen_params_check(&p, err);
  if (!rc) rc = trace_gen_generate(&p, t, err);
  return rc;
}

int sim_workload_build(kv_config *cfg, uint64_t default_seed, trace *t, kv_error *err) {
  const char *src = NULL;
  int rc = kv_config_str(cfg, "workload", "source", "synthetic", &src, err);
  if (rc) return rc;
  trace_init(t);
  if (strcmp(src, "longctx") == 0) { /* built-in long-context workload (sim_longctx.h) */
    rc = sim_longctx_build(cfg, default_seed, t, err);
    if (rc) trace_free(t);
    return rc;
  }
  if (strcmp(src, "synthetic") != 0) {
    rc = strcmp(src, "sharegpt") == 0 ? sim__generate_sharegpt(cfg, default_seed, t, err)
                                       : sim__read_trace_file(src, t, err);
    if (!rc) rc = sim__apply_decode(cfg, t, err);
    if (rc) {
      kv_error_prefix(err, "[workload]");
      trace_free(t);
    }
    return rc;
  }
  sim_synth s;
  sim_synth_defaults(&s);
  int64_t seed;
  if ((rc = kv_config_int(cfg, "workload", "seed", (int64_t)default_seed, 0, INT64_MAX, &seed,
                          err)))
    return rc;
  s.seed = (uint64_t)seed;
  const kv_config_f64_key dv[] = {
      {"session_rate", &s.session_rate, 1e-9, 1e9},   {"turns_mean", &s.turns_mean, 1, 1e6},
      {"multi_turn_frac", &s.multi_turn_frac, 0, 1},  {"think_mean_s", &s.think_mean_s, 0, 1e9},
      {"new_median", &s.new_median, 1, 1e9},          {"new_sigma", &s.new_sigma, 0, 10},
      {"out_median", &s.out_median, 1, 1e9},          {"out_sigma", &s.out_sigma, 0, 10},
  };
  if ((rc = kv_config_f64_table(cfg, "workload", dv, sizeof dv / sizeof dv[0], err))) return rc;
  const kv_config_i64_key iv[] = {
      {"sessions", &s.sessions, 0, 100000000},
      {"max_turns", &s.max_turns, 1, 1000000},
      {"new_max", &s.new_max, 1, 1 << 24},
      {"out_max", &s.out_max, 1, 1 << 24},
  };
  if ((rc = kv_config_i64_table(cfg, "workload", iv, sizeof iv / sizeof iv[0], err))) return rc;
  rc = sim_synth_generate(&s, t, err);
  if (!rc) rc = sim__apply_decode(cfg, t, err);
  if (rc) {
    kv_error_prefix(err, "[workload]");
    trace_free(t);
  }
  return rc;
}

/* sim_workload.c — the one reader of [workload] (sim_workload.h), for both engines. */
#include "sim_workload.h"

#include "trace_gen.h"
#include "trace_importers.h"
#include "trace_io.h"

#include <stdio.h>
#include <string.h>

#include "sim_longctx.h"
#include "sim_synth.h"

/* Trace files: a format whose importer claims the path's ending (trace_importers.h: ".jsonl" is
 * a Mooncake trace, imported with the default options — 512-token blocks, sessions inferred from
 * shared prefixes; bad lines stop the import), else the project's format (traces/trace_io.h:
 * HDF5 or CSV). */
static int sim__read_trace_file(const char *path, trace *t, kv_error *err) {
  const trace_importer *imp = trace_importer_for_source(path);
  if (imp) return trace_import_file(imp, path, NULL, t, NULL, err);
  return trace_read(path, t, err);
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

/* [workload] source = longctx: the keys of sim_longctx.h (defaults there). */
static int sim__generate_longctx(kv_config *cfg, uint64_t default_seed, trace *t, kv_error *err) {
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
/* [workload] source = synthetic (the default): the keys of sim_synth.h (defaults there). */
static int sim__generate_synthetic(kv_config *cfg, uint64_t default_seed, trace *t,
                                   kv_error *err) {
  int rc;
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
  return sim_synth_generate(&s, t, err);
}

int sim_workload_build(kv_config *cfg, uint64_t default_seed, trace *t, kv_error *err) {
  const char *src = NULL;
  int rc = kv_config_str(cfg, "workload", "source", "synthetic", &src, err);
  if (rc) return rc;
  trace_init(t);
  if (strcmp(src, "longctx") == 0) { /* its errors name the source; no decode key */
    rc = sim__generate_longctx(cfg, default_seed, t, err);
    if (rc) trace_free(t);
    return rc;
  }
  rc = !strcmp(src, "synthetic") ? sim__generate_synthetic(cfg, default_seed, t, err)
       : !strcmp(src, "sharegpt") ? sim__generate_sharegpt(cfg, default_seed, t, err)
                                  : sim__read_trace_file(src, t, err);
  if (!rc) rc = sim__apply_decode(cfg, t, err);
  if (rc) {
    kv_error_prefix(err, "[workload]");
    trace_free(t);
  }
  return rc;
}

/* kvsim-predict — the simulator's predictions of iterations measured on a GPU.
 *
 *   kvsim-predict --grid grid.csv --profile DIR --hardware NAME|PATH [--models DIR]
 *                 [--compute-eff X] [--memory-eff Y] [--power-state sustained|short]
 *                 [--launch-gaps measured|none]
 *                 [-o validation.csv]
 *
 * Reads the validation grid (sim/profiling/kvprof_validate.py: model, kind, impl, mode, batch,
 * tokens, context, read_buffer, measured_us; sim_validate.h says what each kind means) and
 * writes, per row, the measured time beside two predictions of the simulator's own cost
 * models: `predicted_us` from [cost] model = measured on the profile in DIR, and
 * `predicted_roofline_us` from the roofline (compute_eff 0.6, memory_eff 0.8 unless given).
 * The pre-loading kinds take the hardware file's pcie_h2d_gbs and pcie_latency_us.
 *
 * The measured model is asked for what each row ran: decode attention 'sdpa_masked' for
 * transformers' static-cache decode (impl hf, kind decode), 'sdpa' otherwise; the host
 * launch overhead of that path for eager rows (host.csv: hf_prefill, hf_decode, manual) and
 * none for CUDA-graph rows. When the profile lacks that source or path the row says which
 * stand-in it used (column `options`). `out_of_range` lists what the profile did not cover
 * (below, above: edge values; roofline: an operator priced by the roofline). --power-state
 * short prices the profile's short timings without its sustain.csv ratios, --launch-gaps none
 * leaves out its launch_gap.csv gaps (sim_profile.h).
 * Models are <models>/<model>.ini (default sim/data/models). Exit codes: 0 ok, 1 error,
 * 2 usage. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kv_err.h"
#include "kv_fs.h"
#include "sim_csv.h"
#include "sim_hw.h"
#include "sim_model.h"
#include "sim_profile.h"
#include "sim_validate.h"

#ifndef SIM_DATA_DIR
#define SIM_DATA_DIR "sim/data"
#endif

#define MAX_COSTS 64

static void usage(FILE *f) {
  fprintf(f,
          "usage: kvsim-predict --grid grid.csv --profile DIR --hardware NAME|PATH\n"
          "                     [--models DIR] [--compute-eff X] [--memory-eff Y] [-o OUT.csv]\n"
          "                     [--ops OPS.csv] [--power-state sustained|short]\n"
          "                     [--launch-gaps measured|none]\n"
          "\n"
          "Predicts each iteration of a GPU validation grid (sim/profiling) with the measured\n"
          "cost model (the profile in DIR) and with the roofline, next to the measured time.\n"
          "Output to OUT.csv (default: standard output). --ops writes the measured model's\n"
          "prediction of each row operator by operator (us per layer, and the head's).\n"
          "docs/sim.md, \"Validation\".\n");
}

typedef struct cost_entry {
  char key[256];      /* model|source|host, or model|roofline */
  sim_model model;
  sim_cost cost;
  char note[96];      /* stand-ins used */
} cost_entry;

typedef struct ctx {
  const char *profile, *models_dir;
  int want_ops;      /* --ops: the measured model's operators per row */
  sim_hw hw;
  double ce, me;
  const char *power_state; /* sim_prof_opts.power_state */
  const char *launch_gaps; /* sim_prof_opts.launch_gaps */
  cost_entry *e;
  int n;
} ctx;

static int load_model(const ctx *x, const char *stem, sim_model *m, kv_error *err) {
  char path[4200];
  if (strchr(stem, '/') || strchr(stem, '.') || !stem[0]) {
    return kv_error_set(err, KV_EINVAL, "model '%s': a file stem is expected (llama-2-7b)",
                        stem);
  }
  snprintf(path, sizeof path, "%s/%s.ini", x->models_dir, stem);
  return sim_model_load(path, m, err);
}

/* The cost model for (stem, source, host), built once; source NULL = the roofline. */
static int get_cost(ctx *x, const char *stem, const char *src, const char *host,
                    cost_entry **out, kv_error *err) {
  char key[256];
  snprintf(key, sizeof key, "%s|%s|%s", stem, src ? src : "roofline", src ? host : "");
  for (int i = 0; i < x->n; i++) {
    if (!strcmp(x->e[i].key, key)) {
      *out = &x->e[i];
      return 0;
    }
  }
  if (x->n == MAX_COSTS) return kv_error_set(err, KV_ERANGE, "more than %d cost models", MAX_COSTS);
  cost_entry *e = &x->e[x->n];
  memset(e, 0, sizeof *e);
  snprintf(e->key, sizeof e->key, "%s", key);
  int rc = load_model(x, stem, &e->model, err);
  if (rc) return rc;
  if (!src) {
    sim_cost_init_roofline(&e->cost, &e->model, &x->hw, 1, x->ce, x->me);
  } else {
    sim_prof_opts o = {src, host, x->ce, x->me, x->power_state, x->launch_gaps};
    rc = sim_cost_init_measured(&e->cost, &e->model, &x->hw, 1, x->profile, &o, err);
    if (rc == KV_ENOENT && strcmp(src, "sdpa") != 0) { /* that kernel was not profiled */
      o.decode_source = "sdpa";
      rc = sim_cost_init_measured(&e->cost, &e->model, &x->hw, 1, x->profile, &o, err);
      if (!rc) snprintf(e->note, sizeof e->note, "%s absent: sdpa", src);
    }
    if (rc == KV_ENOENT && !strcmp(host, "manual")) {
      /* the manual loop's probe did not run: transformers' prefill path stands in (the same
       * decoder-layer modules; the loop's own slicing and copies are not in it) */
      o.host_path = "hf_prefill";
      rc = sim_cost_init_measured(&e->cost, &e->model, &x->hw, 1, x->profile, &o, err);
      if (!rc) {
        size_t k = strlen(e->note);
        snprintf(e->note + k, sizeof e->note - k, "%shost manual absent: hf_prefill", k ? ";" : "");
      }
    }
    if (rc == KV_ENOENT && strcmp(host, "none") != 0) { /* the host stage did not run */
      o.host_path = "none";
      rc = sim_cost_init_measured(&e->cost, &e->model, &x->hw, 1, x->profile, &o, err);
      if (!rc) {
        size_t k = strlen(e->note);
        snprintf(e->note + k, sizeof e->note - k, "%shost %s absent: none", k ? ";" : "", host);
      }
    }
    if (rc) return rc;
  }
  x->n++;
  *out = e;
  return 0;
}

static void flags_str(unsigned f, char *buf, size_t cap) {
  snprintf(buf, cap, "%s%s%s", f & SIM_PROF_BELOW ? "below;" : "", f & SIM_PROF_ABOVE ? "above;" : "",
           f & SIM_PROF_ROOFLINE ? "roofline;" : "");
}

/* Appends text to a growing buffer. */
typedef struct sbuf {
  char *p;
  size_t n, cap;
} sbuf;

static int sb_add(sbuf *b, const char *s, kv_error *err) {
  size_t l = strlen(s);
  if (b->n + l + 1 > b->cap) {
    size_t cap = b->cap ? 2 * b->cap : 65536;
    while (cap < b->n + l + 1) cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) return kv_error_set(err, KV_ENOMEM, "out of memory");
    b->p = p;
    b->cap = cap;
  }
  memcpy(b->p + b->n, s, l + 1);
  b->n += l;
  return 0;
}

/* One row of the operator breakdown: the iteration's layer and head, operator by operator. */
static int ops_row(const cost_entry *cm, const sim_val_iter *it, const char *key, sbuf *ops,
                   kv_error *err) {
  if (cm->cost.kind != SIM_COST_MEASURED) return 0;
  sim_iter_work w;
  int64_t *a = NULL;
  int rc = sim_val_work(it, &w, &a, err);
  if (rc) return rc;
  double lo[SIM_OP_COUNT], ho[SIM_OP_COUNT];
  sim_prof_cost_ops(cm->cost.measured, &w, lo, ho, NULL);
  free(a);
  char line[4096];
  int k = snprintf(line, sizeof line, "%s,%lld", key, (long long)cm->model.layers);
  for (int op = 0; op < SIM_OP_COUNT && k > 0 && (size_t)k < sizeof line; op++) {
    k += snprintf(line + k, sizeof line - (size_t)k, ",%.6g", lo[op]);
  }
  for (int op = 0; op < SIM_OP_COUNT && k > 0 && (size_t)k < sizeof line; op++) {
    if (op == SIM_OP_EMBED || op == SIM_OP_NORM || op == SIM_OP_LM_HEAD) {
      k += snprintf(line + k, sizeof line - (size_t)k, ",%.6g", ho[op]);
    }
  }
  if (k <= 0 || (size_t)k + 2 >= sizeof line) return kv_error_set(err, KV_ERANGE, "ops row too long");
  line[k] = '\n';
  line[k + 1] = 0;
  return sb_add(ops, line, err);
}

static int predict(ctx *x, const char *grid, sbuf *rows, sbuf *ops, kv_error *err) {
  sim_csv r;
  int rc = sim_csv_open(&r, grid, err);
  if (rc) return rc;
  int c_model, c_kind, c_impl, c_mode, c_b, c_t, c_c, c_rb, c_meas;
  if ((rc = sim_csv_col(&r, "model", &c_model, err)) || (rc = sim_csv_col(&r, "kind", &c_kind, err)) ||
      (rc = sim_csv_col(&r, "impl", &c_impl, err)) || (rc = sim_csv_col(&r, "mode", &c_mode, err)) ||
      (rc = sim_csv_col(&r, "batch", &c_b, err)) || (rc = sim_csv_col(&r, "tokens", &c_t, err)) ||
      (rc = sim_csv_col(&r, "context", &c_c, err)) ||
      (rc = sim_csv_col(&r, "read_buffer", &c_rb, err)) ||
      (rc = sim_csv_col(&r, "measured_us", &c_meas, err))) {
    sim_csv_close(&r);
    return rc;
  }
  int64_t n = 0;
  while ((rc = sim_csv_next(&r, err)) == 1) {
    rc = 0;
    const char *stem = sim_csv_str(&r, c_model), *kind = sim_csv_str(&r, c_kind);
    const char *impl = sim_csv_str(&r, c_impl), *mode = sim_csv_str(&r, c_mode);
    const char *rbs = sim_csv_str(&r, c_rb);
    sim_val_iter it = {0};
    int k = sim_val_kind_find(kind);
    if (k < 0) {
      rc = kv_error_set(err, KV_EFORMAT, "%s:%lld: kind '%s' is none of prefill, decode, mixed, "
                        "preload, resident, sync", grid, (long long)r.line, kind);
      break;
    }
    it.kind = (sim_val_kind)k;
    double meas;
    if ((rc = sim_csv_i64(&r, c_b, 1, 1 << 24, &it.batch, err)) ||
        (rc = sim_csv_i64(&r, c_t, 1, (int64_t)1 << 40, &it.tokens, err)) ||
        (rc = sim_csv_i64(&r, c_c, 0, (int64_t)1 << 40, &it.context, err)) ||
        (rbs[0] && (rc = sim_csv_i64(&r, c_rb, 0, 1 << 20, &it.read_buffer, err))) ||
        (rc = sim_csv_f64(&r, c_meas, 1e-9, 1e15, &meas, err))) {
      break;
    }
    int hf = !strcmp(impl, "hf"), eager = !strcmp(mode, "eager");
    if (!hf && strcmp(impl, "manual")) {
      rc = kv_error_set(err, KV_EFORMAT, "%s:%lld: impl '%s' is neither hf nor manual", grid,
                        (long long)r.line, impl);
      break;
    }
    if (!eager && strcmp(mode, "graph")) {
      rc = kv_error_set(err, KV_EFORMAT, "%s:%lld: mode '%s' is neither eager nor graph", grid,
                        (long long)r.line, mode);
      break;
    }
    if (it.kind == SIM_VAL_RESIDENT) it.read_buffer = 0;
    const char *src = hf && it.kind == SIM_VAL_DECODE ? "sdpa_masked" : "sdpa";
    const char *host = !eager ? "none" : !hf ? "manual"
                                       : it.kind == SIM_VAL_DECODE ? "hf_decode" : "hf_prefill";
    cost_entry *cm = NULL, *cr = NULL;
    if ((rc = get_cost(x, stem, src, host, &cm, err)) ||
        (rc = get_cost(x, stem, NULL, NULL, &cr, err))) {
      kv_error_prefix(err, "%s:%lld", grid, (long long)r.line);
      break;
    }
    int64_t pm, pr;
    unsigned f = 0;
    if ((rc = sim_val_predict(&cm->cost, &it, x->hw.pcie_h2d_bw, x->hw.pcie_latency_ns, &pm, &f,
                              err)) ||
        (rc = sim_val_predict(&cr->cost, &it, x->hw.pcie_h2d_bw, x->hw.pcie_latency_ns, &pr, NULL,
                              err))) {
      kv_error_prefix(err, "%s:%lld", grid, (long long)r.line);
      break;
    }
    char fl[64], opts[192], line[1024];
    flags_str(f, fl, sizeof fl);
    snprintf(opts, sizeof opts, "%s+%s%s%s", src, host, cm->note[0] ? ";" : "", cm->note);
    double um = (double)pm / 1e3, ur = (double)pr / 1e3;
    snprintf(line, sizeof line, "%s,%s,%s,%s,%lld,%lld,%lld,%s,%.6g,%.6g,%.6g,%.4f,%.4f,%s,%s\n",
             stem, kind, impl, mode, (long long)it.batch, (long long)it.tokens,
             (long long)it.context, rbs, meas, um, ur, (um - meas) / meas, (ur - meas) / meas, fl,
             opts);
    if ((rc = sb_add(rows, line, err))) break;
    if (x->want_ops) {
      char key[512];
      snprintf(key, sizeof key, "%s,%s,%s,%s,%lld,%lld,%lld,%s,%.6g,%.6g", stem, kind, impl, mode,
               (long long)it.batch, (long long)it.tokens, (long long)it.context, rbs, meas, um);
      if ((rc = ops_row(cm, &it, key, ops, err))) break;
    }
    n++;
  }
  sim_csv_close(&r);
  if (!rc && n == 0) rc = kv_error_set(err, KV_EFORMAT, "%s: no iterations", grid);
  return rc;
}

static int write_out(const ctx *x, const char *grid, const char *out, const sbuf *rows, int argc,
                     char **argv, const char *header, kv_error *err) {
  kv_atomic_file af;
  FILE *f = stdout;
  int rc = 0;
  if (out) {
    if ((rc = kv_atomic_open(&af, out, err))) return rc;
    f = af.f;
  }
  fprintf(f, "# kvsim-predict %s:", kv_version());
  for (int i = 1; i < argc; i++) fprintf(f, " %s", argv[i]);
  fprintf(f, "\n# hardware: %s (pcie_h2d_gbs %g, pcie_latency_us %g)\n", x->hw.name,
          x->hw.pcie_h2d_bw / 1e9, x->hw.pcie_latency_ns / 1e3);
  for (int i = 0; i < x->n; i++) {
    char d[2048];
    sim_cost_describe(&x->e[i].cost, d, sizeof d);
    fprintf(f, "# cost %s: %s\n", x->e[i].key, d);
  }
  FILE *g = fopen(grid, "r"); /* the measurement's provenance, as the grid states it */
  char line[8192];
  while (g && fgets(line, sizeof line, g)) {
    if (line[0] == '#') fprintf(f, "# grid:%s", line + 1);
  }
  if (g) fclose(g);
  fputs(header, f);
  fputs(rows->p, f);
  if (out) rc = kv_atomic_commit(&af, err);
  return rc;
}

int main(int argc, char **argv) {
  const char *grid = NULL, *profile = NULL, *hwname = NULL, *out = NULL, *ops_out = NULL;
  ctx x = {0};
  x.models_dir = SIM_DATA_DIR "/models";
  x.ce = 0.6;
  x.me = 0.8;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    int more = i + 1 < argc;
    if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
      usage(stdout);
      return 0;
    } else if (more && !strcmp(a, "--grid")) {
      grid = argv[++i];
    } else if (more && !strcmp(a, "--profile")) {
      profile = argv[++i];
    } else if (more && !strcmp(a, "--hardware")) {
      hwname = argv[++i];
    } else if (more && !strcmp(a, "--models")) {
      x.models_dir = argv[++i];
    } else if (more && !strcmp(a, "-o")) {
      out = argv[++i];
    } else if (more && !strcmp(a, "--power-state")) {
      x.power_state = argv[++i];
      if (strcmp(x.power_state, "sustained") != 0 && strcmp(x.power_state, "short") != 0) {
        fprintf(stderr, "kvsim-predict: --power-state %s: sustained or short is expected\n",
                x.power_state);
        return 2;
      }
    } else if (more && !strcmp(a, "--launch-gaps")) {
      x.launch_gaps = argv[++i];
      if (strcmp(x.launch_gaps, "measured") != 0 && strcmp(x.launch_gaps, "none") != 0) {
        fprintf(stderr, "kvsim-predict: --launch-gaps %s: measured or none is expected\n",
                x.launch_gaps);
        return 2;
      }
    } else if (more && !strcmp(a, "--ops")) {
      ops_out = argv[++i];
      x.want_ops = 1;
    } else if (more && (!strcmp(a, "--compute-eff") || !strcmp(a, "--memory-eff"))) {
      char *end;
      double v = strtod(argv[++i], &end);
      if (*end || !(v > 0 && v <= 1)) {
        fprintf(stderr, "kvsim-predict: %s %s: a number in (0, 1] is expected\n", a, argv[i]);
        return 2;
      }
      if (a[2] == 'c') x.ce = v;
      else x.me = v;
    } else {
      fprintf(stderr, "kvsim-predict: unknown or incomplete argument '%s'\n\n", a);
      usage(stderr);
      return 2;
    }
  }
  if (!grid || !profile || !hwname) {
    fprintf(stderr, "kvsim-predict: --grid, --profile and --hardware are required\n\n");
    usage(stderr);
    return 2;
  }
  x.profile = profile;
  kv_error err = {0};
  char hwpath[4200];
  size_t hl = strlen(hwname);
  if (strchr(hwname, '/') || (hl > 4 && !strcmp(hwname + hl - 4, ".ini"))) {
    snprintf(hwpath, sizeof hwpath, "%s", hwname);
  } else {
    snprintf(hwpath, sizeof hwpath, "%s/hardware/%s.ini", SIM_DATA_DIR, hwname);
  }
  cost_entry *e = calloc(MAX_COSTS, sizeof *e);
  sbuf rows = {0}, ops = {0};
  int rc = e ? 0 : kv_error_set(&err, KV_ENOMEM, "out of memory");
  x.e = e;
  if (!rc) rc = sim_hw_load(hwpath, &x.hw, &err);
  if (!rc) rc = predict(&x, grid, &rows, &ops, &err);
  if (!rc) {
    rc = write_out(&x, grid, out, &rows, argc, argv,
                   "model,kind,impl,mode,batch,tokens,context,read_buffer,measured_us,"
                   "predicted_us,predicted_roofline_us,rel_err,rel_err_roofline,out_of_range,"
                   "options\n", &err);
  }
  if (!rc && ops_out) {
    char hdr[1024] = "model,kind,impl,mode,batch,tokens,context,read_buffer,measured_us,"
                     "predicted_us,layers";
    for (int op = 0; op < SIM_OP_COUNT; op++) {
      strcat(hdr, ",layer_");
      strcat(hdr, sim_prof_op_names[op]);
    }
    strcat(hdr, ",head_lm_head,head_rmsnorm,head_embed\n");
    if (!ops.p) rc = sb_add(&ops, "", &err);
    if (!rc) rc = write_out(&x, grid, ops_out, &ops, argc, argv, hdr, &err);
  }
  if (rc) fprintf(stderr, "kvsim-predict: %s\n", err.msg[0] ? err.msg : kv_status_name(rc));
  for (int i = 0; i < x.n; i++) sim_cost_free(&e[i].cost);
  free(e);
  free(rows.p);
  free(ops.p);
  return rc ? 1 : 0;
}

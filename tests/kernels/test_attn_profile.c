/* The attention profile, the one door between kernels/ and sim/: profiles written here by the
 * kernels' builder and writer (kernels/attn_profile.h) and read back by the simulator's own
 * reader (sim/sim_attn_profile.h), which links nothing of the kernels.
 *
 * What is checked, and against what:
 *   - every registry method with every option it takes: the simulator reads the canonical spec
 *     (which parses back to the method), the label, the cost class and each pricing figure equal
 *     to what the kernels' registry says, and prices bytes read as attn_bytes_read does;
 *   - the simulator's built-in dense descriptor equals "dense" read from a profile;
 *   - tables round trip exactly; sampling inside a bin (quantile interpolation), outside the
 *     measured range (power law from the bin's geometric centre), the layer mapping by depth;
 *   - the builder: the power-law fit and the quantiles by hand, the extension check, and a
 *     profile built twice from the same measurements is the same bit for bit;
 *   - measured kernel timings carried by the profile give the simulator the same fit as the
 *     kernel profile file they came from;
 *   - damaged profiles (decreasing quantiles, edges, a missing dataset, schema 1) are refused
 *     with the file and dataset named. */
#include <hdf5.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "attn_profile.h"
#include "kv_h5.h"
#include "sim_attn_model.h"
#include "sim_attn_profile.h"
#include "test.h"

/* A profile with 2 layers (0 and 7 of 8), 2 bins [100, 1000), [1000, 10000), 3 quantiles and
 * the methods `specs` (all with the same tables). */
static void make(attn_profile *p, const char *const *specs, int n) {
  memset(p, 0, sizeof *p);
  snprintf(p->source, sizeof p->source, "unit");
  snprintf(p->model_name, sizeof p->model_name, "m");
  p->model_layers = 8;
  p->n_heads = 8;
  p->n_kv_heads = 2;
  p->head_dim = 64;
  p->elem_bytes = 2;
  p->n_layers = 2;
  p->layers = malloc(2 * sizeof *p->layers);
  p->layers[0] = 0;
  p->layers[1] = 7;
  p->n_bins = 2;
  p->ctx_edges = malloc(3 * sizeof *p->ctx_edges);
  p->ctx_edges[0] = 100;
  p->ctx_edges[1] = 1000;
  p->ctx_edges[2] = 10000;
  p->n_quantiles = 3;
  p->n_methods = n;
  p->methods = calloc((size_t)n, sizeof *p->methods);
  for (int i = 0; i < n; i++) {
    attn_profile_method *m = &p->methods[i];
    kv_error e = {0};
    if (attn_method_parse(specs[i], &m->method, &e)) TEST_FAIL_AT("%s: %s", specs[i], e.msg);
    attn_method_label(&m->method, m->label, sizeof m->label);
    m->t.count = malloc(4 * sizeof *m->t.count);
    m->t.frac_q = malloc(12 * sizeof *m->t.frac_q);
    m->t.mean_frac = malloc(4 * sizeof(double));
    m->t.mean_iters = malloc(4 * sizeof(double));
    m->t.mean_mass = malloc(2 * sizeof(double));
    m->t.mean_err = malloc(2 * sizeof(double));
    m->t.fit_a = malloc(2 * sizeof(double));
    m->t.fit_b = malloc(2 * sizeof(double));
    /* layer row 0: dense-like; row 1: sparse, bin 1 only has data */
    double q[12] = {0.8, 0.9, 1.0, 0.7, 0.85, 1.0, 0, 0, 0, 0.05, 0.1, 0.3};
    int64_t cnt[4] = {10, 10, 0, 20};
    double mf[4] = {0.9, 0.85, 0, 0.12};
    memcpy(m->t.frac_q, q, sizeof q);
    memcpy(m->t.count, cnt, sizeof cnt);
    memcpy(m->t.mean_frac, mf, sizeof mf);
    for (int k = 0; k < 4; k++) m->t.mean_iters[k] = 3;
    m->t.mean_mass[0] = m->t.mean_mass[1] = 0.95;
    m->t.mean_err[0] = m->t.mean_err[1] = 0.1;
    m->t.fit_a[0] = 1.0;
    m->t.fit_b[0] = 1.0;
    m->t.fit_a[1] = 2.0;
    m->t.fit_b[1] = 0.5; /* tokens grow as sqrt(context) */
  }
}

/* ---- every method and option through the door ------------------------------------------------ */

/* Specs of every registry method with each option it takes (one at a time), deduplicated by
 * canonical spec. Returns the count. */
static int all_specs(char specs[][160], int cap) {
  static const struct {
    unsigned opt;
    const char *vals[3];
  } opts[] = {
      {ATTN_OPT_BS, {"bs=8", "bs=64", NULL}},       {ATTN_OPT_SINK, {"sink=0", "sink=3", NULL}},
      {ATTN_OPT_RECENT, {"recent=0", "recent=2", NULL}}, {ATTN_OPT_GROUP, {"group=1", "group=8", NULL}},
      {ATTN_OPT_CAP, {"cap=4096", NULL, NULL}},     {ATTN_OPT_RANK, {"rank=quest", "rank=mean", NULL}},
      {ATTN_OPT_EST, {"bound", "lognormal", NULL}}, {ATTN_OPT_COMBINE, {"sum", NULL, NULL}},
  };
  int n = 0;
  for (int k = 0; k < attn_method_count(); k++) {
    const attn_method_desc *d = attn_method_desc_of((attn_method_kind)k);
    const char *params[2] = {d->cost == ATTN_COST_FIXED ? ":512" : ":0.9",
                             d->cost == ATTN_COST_FIXED ? ":100000" : ":1"};
    for (int pi = 0; pi < (d->param ? 2 : 1); pi++) {
      char base[64];
      snprintf(base, sizeof base, "%s%s", d->name, d->param ? params[pi] : "");
      for (int i = -1; i < (int)(sizeof opts / sizeof opts[0]); i++) {
        for (int a = 0; a < 3; a++) {
          if (i >= 0 && (!(d->options & opts[i].opt) || !opts[i].vals[a])) continue;
          if (i < 0 && a > 0) continue;
          char in[160];
          snprintf(in, sizeof in, "%s%s%s", base, i >= 0 ? ":" : "", i >= 0 ? opts[i].vals[a] : "");
          attn_method m;
          kv_error e = {0};
          if (attn_method_parse(in, &m, &e)) {
            TEST_FAIL_AT("%s: %s", in, e.msg);
            continue;
          }
          char spec[160];
          attn_method_spec(&m, spec, sizeof spec);
          int dup = 0;
          for (int j = 0; j < n; j++) dup |= strcmp(specs[j], spec) == 0;
          if (!dup && n < cap) snprintf(specs[n++], 160, "%s", spec);
        }
      }
    }
  }
  return n;
}

static void test_every_method_and_option(void) {
  static char specs[256][160];
  int n = all_specs(specs, 256);
  CHECK(n > 30);
  const char *ptrs[256];
  for (int i = 0; i < n; i++) ptrs[i] = specs[i];
  attn_profile p;
  make(&p, ptrs, n);
  kv_error e = {0};
  const char *path = test_tmp_path("door.h5");
  REQUIRE_OK(attn_profile_write(path, &p, &e), &e);
  sim_attn_profile r;
  REQUIRE_OK(sim_attn_profile_read(path, &r, &e), &e);
  CHECK_EQ_INT(r.n_methods, n);
  attn_shape shape = {p.n_heads, p.n_kv_heads, p.head_dim};
  for (int i = 0; i < n && i < r.n_methods; i++) {
    const attn_method *m = &p.methods[i].method;
    const sim_attn_desc *d = &r.methods[i].desc;
    /* identity: the spec read back parses to the method written */
    attn_method back;
    REQUIRE_OK(attn_method_parse(d->spec, &back, &e), &e);
    if (strcmp(d->spec, specs[i]) != 0 || !attn_method_equal(&back, m)) {
      TEST_FAIL_AT("method %d: wrote %s, read %s", i, specs[i], d->spec);
    }
    CHECK(strcmp(d->label, p.methods[i].label) == 0);
    CHECK(strcmp(d->kind, attn_method_name(m)) == 0);
    CHECK_EQ_INT(sim_attn_profile_find(&r, d->spec), i);
    CHECK_EQ_INT(sim_attn_profile_find(&r, d->label), i);
    /* pricing figures */
    CHECK(strcmp(sim_attn_cost_names[d->cost], attn_cost_class_names[attn_method_cost_class(m)]) == 0);
    CHECK_EQ_INT(d->block_size, m->block_size);
    CHECK_EQ_INT(d->forced_blocks, m->keep_sink_blocks + m->keep_recent_blocks);
    CHECK_EQ_INT(d->group_blocks, m->group_blocks);
    CHECK_EQ_INT(d->meta_vectors, attn_method_meta_vectors(m));
    CHECK(d->full_upto == attn_method_full_upto(m));
    const int64_t ns[] = {1, 15, 16, 17, 1000, 99999};
    for (size_t k = 0; k < sizeof ns / sizeof ns[0]; k++) {
      for (int64_t t = 0; t <= ns[k]; t += ns[k] / 3 + 1) {
        int64_t want = attn_bytes_read(&shape, m, ns[k], t, 2);
        int64_t got = sim_attn_bytes_read(d, shape.head_dim, 2, ns[k], t);
        if (want != got) {
          TEST_FAIL_AT("%s: bytes at n %lld t %lld: kernels %lld, sim %lld", specs[i],
                       (long long)ns[k], (long long)t, (long long)want, (long long)got);
        }
      }
    }
  }
  /* the simulator's dense without a profile is the registry's dense */
  sim_attn_desc dd;
  sim_attn_desc_dense(&dd);
  int di = sim_attn_profile_find(&r, "dense");
  REQUIRE(di >= 0);
  const sim_attn_desc *rd = &r.methods[di].desc;
  CHECK(strcmp(dd.spec, rd->spec) == 0 && dd.cost == rd->cost && dd.block_size == rd->block_size &&
        dd.forced_blocks == rd->forced_blocks && dd.group_blocks == rd->group_blocks &&
        dd.meta_vectors == rd->meta_vectors && dd.full_upto == rd->full_upto);
  sim_attn_profile_free(&r);
  attn_profile_free(&p);
  /* two methods with one label cannot be told apart by a config: refused */
  const char *twice[] = {"psa:0.9", "psa:0.9"};
  make(&p, twice, 2);
  CHECK_EQ_INT(attn_profile_write(path, &p, &e), KV_EINVAL);
  CHECK_STR_CONTAINS(e.msg, "share the label");
  attn_profile_free(&p);
  remove(path);
}

/* ---- tables and sampling --------------------------------------------------------------------- */

static void test_roundtrip_and_sampling(void) {
  attn_profile p;
  const char *one[] = {"psa:0.95"};
  make(&p, one, 1);
  kv_error e = {0};
  const char *path = test_tmp_path("prof.h5");
  REQUIRE_OK(attn_profile_write(path, &p, &e), &e);
  sim_attn_profile r;
  REQUIRE_OK(sim_attn_profile_read(path, &r, &e), &e);
  CHECK_EQ_INT(r.n_layers, 2);
  CHECK_EQ_INT(r.n_bins, 2);
  CHECK_EQ_INT(r.methods[0].desc.cost, SIM_ATTN_COST_PROGRESSIVE);
  CHECK(memcmp(r.methods[0].t.frac_q, p.methods[0].t.frac_q, 12 * sizeof(double)) == 0);
  CHECK(memcmp(r.methods[0].t.fit_b, p.methods[0].t.fit_b, 2 * sizeof(double)) == 0);
  CHECK_EQ_INT(sim_attn_profile_find(&r, "psa-0.95-mean"), 0);
  CHECK_EQ_INT(sim_attn_profile_find(&r, "psa:0.95"), 0);
  CHECK_EQ_INT(sim_attn_profile_find(&r, "nope"), -1);
  /* Inside a bin: quantile interpolation. u = 0.25 lies between q0 and q1 of row 1 bin 1. */
  CHECK_NEAR(sim_attn_profile_sample_frac(&r, 0, 1, 5000, 0.25), 0.075, 1e-12, 0);
  CHECK_NEAR(sim_attn_profile_sample_frac(&r, 0, 0, 500, 0.0), 0.8, 1e-12, 0);
  CHECK_NEAR(sim_attn_profile_sample_frac(&r, 0, 0, 500, 0.999999), 1.0, 1e-5, 0);
  /* Monotone in u. */
  double prev = 0;
  for (int i = 0; i <= 100; i++) {
    double x = sim_attn_profile_sample_frac(&r, 0, 1, 3000, i / 100.0);
    CHECK(x >= prev);
    prev = x;
  }
  /* Outside the measured range (row 1 has data only in [1000, 10000)): tokens scale as
   * n^0.5 from the bin's geometric centre c = sqrt(1000 * 9999). */
  double c = sqrt(1000.0 * 9999.0);
  double at_c = sim_attn_profile_sample_frac(&r, 0, 1, 5000, 0.5) * c;    /* tokens at the centre */
  double at_4c = sim_attn_profile_sample_frac(&r, 0, 1, 40000, 0.5) * 40000;
  CHECK_NEAR(at_4c, at_c * sqrt(40000 / c), 1e-6, 1e-9);
  /* Below the range too (500 < 1000 for row 1). */
  double at_500 = sim_attn_profile_sample_frac(&r, 0, 1, 500, 0.5) * 500;
  CHECK_NEAR(at_500, at_c * sqrt(500 / c), 1e-6, 1e-9);
  /* Never above the whole context, never below one token. */
  CHECK(sim_attn_profile_sample_frac(&r, 0, 0, 1000000, 1.0) <= 1.0);
  CHECK(sim_attn_profile_mean_frac(&r, 0, 1, 5000) == 0.12);
  /* Layer mapping: layer 0 -> row 0; layers 1..31 of a 32-layer model -> row 1 (layer 7 of 8). */
  CHECK_EQ_INT(sim_attn_profile_layer_row(&r, 0, 32), 0);
  CHECK_EQ_INT(sim_attn_profile_layer_row(&r, 1, 32), 1);
  CHECK_EQ_INT(sim_attn_profile_layer_row(&r, 31, 32), 1);
  sim_attn_profile_free(&r);
  attn_profile_free(&p);
  remove(path);
}

/* ---- the builder ------------------------------------------------------------------------------ */

static void test_builder(void) {
  /* the power law through exact points: tokens = 3 n^0.5 */
  attn_profile_record rec[4] = {{100, 30, 1}, {400, 60, 1}, {1600, 120, 2}, {6400, 240, 3}};
  double a, b;
  attn_profile_fit_power(rec, 4, 0, 0, &a, &b);
  CHECK_NEAR(b, 0.5, 1e-12, 0);
  CHECK_NEAR(a, 3.0, 1e-9, 0);
  attn_profile_fit_power(rec, 4, 1000, 0, &a, &b); /* the first two only: still exact */
  CHECK_NEAR(b, 0.5, 1e-12, 0);
  attn_profile_fit_power(rec, 1, 0, 0, &a, &b);    /* one point: slope 1 through it */
  CHECK_NEAR(b, 1.0, 0, 0);
  CHECK_NEAR(a, 0.3, 1e-12, 0);
  /* a builder fed by hand: 2 methods, one layer, 1 KV head of 2 query heads, 4 queries */
  attn_method ms[2];
  kv_error e = {0};
  REQUIRE_OK(attn_method_parse("topk:64", &ms[0], &e), &e);
  REQUIRE_OK(attn_method_parse("psa:0.9", &ms[1], &e), &e);
  int32_t layer = 3;
  attn_profile_builder bld;
  REQUIRE_OK(attn_profile_builder_init(&bld, ms, 2, &layer, 1, &e), &e);
  attn_shape s = {2, 1, 8};
  int64_t pos[4] = {99, 399, 1599, 6399};
  attn_head_metrics mh[2 * 4 * 2];
  int32_t it[2 * 4];
  memset(mh, 0, sizeof mh);
  for (int m = 0; m < 2; m++) {
    for (int i = 0; i < 4; i++) {
      for (int h = 0; h < 2; h++) {
        mh[(m * 4 + i) * 2 + h].tokens_read = m == 0 ? 64 : rec[i].tokens;
        mh[(m * 4 + i) * 2 + h].mass_covered = 0.5 + 0.1 * h;
        mh[(m * 4 + i) * 2 + h].rel_l2_err = 0.25;
      }
      it[m * 4 + i] = rec[i].iters;
    }
  }
  CHECK_EQ_INT(attn_profile_builder_add(&bld, 5, &s, 4, pos, mh, it, &e), KV_EINVAL);
  REQUIRE_OK(attn_profile_builder_add(&bld, 3, &s, 4, pos, mh, it, &e), &e);
  attn_profile p, p2;
  memset(&p, 0, sizeof p);
  memset(&p2, 0, sizeof p2);
  REQUIRE_OK(attn_profile_builder_finish(&bld, 2, 3, &p, &e), &e);
  REQUIRE_OK(attn_profile_builder_finish(&bld, 2, 3, &p2, &e), &e);
  /* log-spaced edges over [100, 6400]: 100, exp((ln 100 + ln 6401) / 2) = 800, 6401 */
  CHECK_EQ_INT(p.ctx_edges[0], 100);
  CHECK_EQ_INT(p.ctx_edges[1], 800);
  CHECK_EQ_INT(p.ctx_edges[2], 6401);
  /* PSA, bin 0 holds n = 100, 400: fractions 0.3, 0.15 -> quantiles 0.15, 0.225, 0.3 */
  const attn_profile_method *pm = &p.methods[1];
  CHECK_EQ_INT(pm->t.count[0], 2);
  CHECK_NEAR(pm->t.frac_q[0], 0.15, 1e-15, 0);
  CHECK_NEAR(pm->t.frac_q[1], 0.225, 1e-15, 0);
  CHECK_NEAR(pm->t.frac_q[2], 0.3, 1e-15, 0);
  CHECK_NEAR(pm->t.mean_iters[1], 2.5, 1e-15, 0);
  CHECK_NEAR(pm->t.fit_b[0], 0.5, 1e-12, 0);
  CHECK_NEAR(pm->t.mean_mass[0], 0.55, 1e-12, 0);
  CHECK_NEAR(pm->t.mean_err[0], 0.25, 1e-15, 0);
  CHECK(strcmp(p.methods[0].label, "topk-64") == 0);
  /* the same measurements give the same profile bit for bit */
  CHECK(memcmp(p.methods[1].t.frac_q, p2.methods[1].t.frac_q, 2 * 3 * sizeof(double)) == 0);
  CHECK(memcmp(p.methods[1].t.fit_a, p2.methods[1].t.fit_a, sizeof(double)) == 0);
  /* the extension check: fit below 1000 keys (exact), predict 1600 and 6400 */
  double fb, pred, meas;
  CHECK_EQ_INT(attn_profile_split_check(&bld, 1, 0, 1000, &fb, &pred, &meas), 1);
  CHECK_NEAR(pred, (120 + 240) / 2.0, 1e-9, 0);
  CHECK_NEAR(meas, (120 + 240) / 2.0, 0, 0);
  CHECK_EQ_INT(attn_profile_split_check(&bld, 1, 0, 100000, &fb, &pred, &meas), 0);
  attn_profile_free(&p);
  attn_profile_free(&p2);
  attn_profile_builder_free(&bld);
}

/* ---- kernel timings ride along ----------------------------------------------------------------- */

static void write_kernel_profile(const char *path) {
  const char *sec[] = {"dense", "dense", "topk", "psa", "psa"};
  const char *meth[] = {"dense", "dense", "topk-512", "psa-0.90 pipelined", "psa-0.95 pipelined"};
  double b[] = {3e6, 3e9, 1e6, 2e6, 4e6};
  double t[] = {5e-6 + 1e-6, 5e-6 + 1e-3, 1e-6, 20e-6 + 1e-6, 20e-6 + 2e-6};
  int64_t batch[] = {1, 1, 1, 1, 1}, len[] = {1024, 1024, 1024, 1024, 1024};
  kv_error e = {0};
  hid_t f = kv_h5_create(path, &e);
  kv_h5_attr_write_str(f, "format", "kvlab-kernel-profile", path, &e);
  kv_h5_attr_write_i64(f, "schema_version", 1, path, &e);
  hid_t g = H5Gcreate2(f, "attention", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  hid_t st = H5Tcopy(H5T_C_S1);
  H5Tset_size(st, H5T_VARIABLE);
  hsize_t d[1] = {5};
  kv_h5_write(g, "section", st, st, 1, d, sec, path, &e);
  kv_h5_write(g, "method", st, st, 1, d, meth, path, &e);
  kv_h5_write(g, "batch", H5T_STD_I64LE, H5T_NATIVE_INT64, 1, d, batch, path, &e);
  kv_h5_write(g, "len", H5T_STD_I64LE, H5T_NATIVE_INT64, 1, d, len, path, &e);
  kv_h5_write(g, "time_s", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 1, d, t, path, &e);
  kv_h5_write(g, "bytes", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 1, d, b, path, &e);
  H5Tclose(st);
  H5Gclose(g);
  H5Fclose(f);
}

static void test_kernel_timings_ride_along(void) {
  const char *kpath = test_tmp_path("door-kprof.h5"), *path = test_tmp_path("door-timed.h5");
  write_kernel_profile(kpath);
  attn_profile p;
  const char *one[] = {"dense"};
  make(&p, one, 1);
  kv_error e = {0};
  REQUIRE_OK(attn_profile_read_timings(kpath, &p, &e), &e);
  CHECK_EQ_INT(p.timings.n, 5);
  REQUIRE_OK(attn_profile_write(path, &p, &e), &e);
  sim_attn_profile r;
  REQUIRE_OK(sim_attn_profile_read(path, &r, &e), &e);
  REQUIRE(r.timings.n == 5);
  CHECK(strcmp(r.timings.method[3], "psa-0.90 pipelined") == 0);
  double c0[SIM_ATTN_KCLASS_COUNT], c1[SIM_ATTN_KCLASS_COUNT];
  double k0[SIM_ATTN_KCLASS_COUNT], k1[SIM_ATTN_KCLASS_COUNT];
  REQUIRE_OK(sim_attn_kernel_fit(&r.timings, c0, c1, path, &e), &e);
  REQUIRE_OK(sim_attn_kernel_profile_fit(kpath, k0, k1, NULL, 0, &e), &e);
  CHECK(memcmp(c0, k0, sizeof c0) == 0 && memcmp(c1, k1, sizeof c1) == 0);
  CHECK_NEAR(c0[SIM_ATTN_KCLASS_DENSE], 5000, 1e-3, 1e-9);
  sim_attn_profile_free(&r);
  /* a file that is not a kernel profile is refused, naming it */
  CHECK_EQ_INT(attn_profile_read_timings(path, &p, &e), KV_EFORMAT);
  CHECK_STR_CONTAINS(e.msg, "door-timed.h5");
  attn_profile_free(&p);
  remove(kpath);
  remove(path);
}

/* ---- damaged profiles ------------------------------------------------------------------------- */

static void test_damaged_profiles(void) {
  attn_profile p;
  sim_attn_profile r;
  kv_error e = {0};
  const char *path = test_tmp_path("bad.h5");
  const char *one[] = {"psa:0.95"};
  make(&p, one, 1);
  p.methods[0].t.frac_q[10] = 0.01; /* quantiles decrease in row 1 bin 1 */
  REQUIRE_OK(attn_profile_write(path, &p, &e), &e);
  CHECK_EQ_INT(sim_attn_profile_read(path, &r, &e), KV_EFORMAT);
  CHECK_STR_CONTAINS(e.msg, "frac_q");
  attn_profile_free(&p);
  make(&p, one, 1);
  p.ctx_edges[1] = 100; /* not increasing */
  REQUIRE_OK(attn_profile_write(path, &p, &e), &e);
  CHECK_EQ_INT(sim_attn_profile_read(path, &r, &e), KV_EFORMAT);
  CHECK_STR_CONTAINS(e.msg, "ctx_edges");
  attn_profile_free(&p);
  make(&p, one, 1);
  REQUIRE_OK(attn_profile_write(path, &p, &e), &e);
  hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
  H5Ldelete(f, "method_0/fit_b", H5P_DEFAULT);
  H5Fclose(f);
  CHECK_EQ_INT(sim_attn_profile_read(path, &r, &e), KV_ENOENT);
  CHECK_STR_CONTAINS(e.msg, "/method_0/fit_b: missing dataset");
  /* a schema-1 profile (no specs) is refused with the remedy */
  REQUIRE_OK(attn_profile_write(path, &p, &e), &e);
  f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
  H5Adelete(f, "schema_version");
  kv_h5_attr_write_i64(f, "schema_version", 1, path, &e);
  H5Fclose(f);
  CHECK_EQ_INT(sim_attn_profile_read(path, &r, &e), KV_ENOTSUP);
  CHECK_STR_CONTAINS(e.msg, "rebuild the profile");
  attn_profile_free(&p);
  CHECK_EQ_INT(sim_attn_profile_read("/nonexistent.h5", &r, &e), KV_EIO);
  remove(path);
}

TEST_LIST = {TEST(test_every_method_and_option), TEST(test_roundtrip_and_sampling),
             TEST(test_builder), TEST(test_kernel_timings_ride_along),
             TEST(test_damaged_profiles), {0}};
TEST_MAIN

/* Tests of measured attention budgets (kernels/attn_profile.h): HDF5 round trip, validation of
 * damaged profiles, sampling (inverse CDF within the measured range, power-law extension outside
 * it) and the layer mapping by relative depth. */
#include <hdf5.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "attn_profile.h"
#include "kv_h5.h"
#include "test.h"

/* A profile with 2 layers (0 and 7 of 8), 2 bins [100, 1000), [1000, 10000), 3 quantiles. */
static void make(attn_profile *p) {
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
  p->n_methods = 1;
  p->methods = calloc(1, sizeof *p->methods);
  attn_profile_method *m = &p->methods[0];
  attn_method_defaults(&m->method, ATTN_PSA);
  snprintf(m->label, sizeof m->label, "psa-0.95-mean");
  m->count = malloc(4 * sizeof *m->count);
  m->frac_q = malloc(12 * sizeof *m->frac_q);
  m->mean_frac = malloc(4 * sizeof(double));
  m->mean_iters = malloc(4 * sizeof(double));
  m->mean_mass = malloc(2 * sizeof(double));
  m->mean_err = malloc(2 * sizeof(double));
  m->fit_a = malloc(2 * sizeof(double));
  m->fit_b = malloc(2 * sizeof(double));
  /* layer row 0: dense-like; row 1: sparse, bin 1 only has data */
  double q[12] = {0.8, 0.9, 1.0, 0.7, 0.85, 1.0, 0, 0, 0, 0.05, 0.1, 0.3};
  int64_t cnt[4] = {10, 10, 0, 20};
  double mf[4] = {0.9, 0.85, 0, 0.12};
  memcpy(m->frac_q, q, sizeof q);
  memcpy(m->count, cnt, sizeof cnt);
  memcpy(m->mean_frac, mf, sizeof mf);
  for (int i = 0; i < 4; i++) m->mean_iters[i] = 3;
  m->mean_mass[0] = m->mean_mass[1] = 0.95;
  m->mean_err[0] = m->mean_err[1] = 0.1;
  m->fit_a[0] = 1.0;
  m->fit_b[0] = 1.0;
  m->fit_a[1] = 2.0;
  m->fit_b[1] = 0.5; /* tokens grow as sqrt(context) */
}

static void test_roundtrip_and_sampling(void) {
  attn_profile p, r;
  make(&p);
  kv_error e = {0};
  const char *path = test_tmp_path("prof.h5");
  REQUIRE_OK(attn_profile_write(path, &p, &e), &e);
  REQUIRE_OK(attn_profile_read(path, &r, &e), &e);
  CHECK_EQ_INT(r.n_layers, 2);
  CHECK_EQ_INT(r.n_bins, 2);
  CHECK_EQ_INT(r.methods[0].method.kind, ATTN_PSA);
  CHECK(memcmp(r.methods[0].frac_q, p.methods[0].frac_q, 12 * sizeof(double)) == 0);
  CHECK_EQ_INT(attn_profile_find(&r, "psa-0.95-mean"), 0);
  CHECK_EQ_INT(attn_profile_find(&r, "nope"), -1);
  /* Inside a bin: quantile interpolation. u = 0.25 lies between q0 and q1 of row 1 bin 1. */
  CHECK_NEAR(attn_profile_sample_frac(&r, 0, 1, 5000, 0.25), 0.075, 1e-12, 0);
  CHECK_NEAR(attn_profile_sample_frac(&r, 0, 0, 500, 0.0), 0.8, 1e-12, 0);
  CHECK_NEAR(attn_profile_sample_frac(&r, 0, 0, 500, 0.999999), 1.0, 1e-5, 0);
  /* Monotone in u. */
  double prev = 0;
  for (int i = 0; i <= 100; i++) {
    double x = attn_profile_sample_frac(&r, 0, 1, 3000, i / 100.0);
    CHECK(x >= prev);
    prev = x;
  }
  /* Outside the measured range (row 1 has data only in [1000, 10000)): tokens scale as
   * n^0.5 from the bin's geometric centre c = sqrt(1000 * 9999). */
  double c = sqrt(1000.0 * 9999.0);
  double at_c = attn_profile_sample_frac(&r, 0, 1, 5000, 0.5) * c;    /* tokens at the centre */
  double at_4c = attn_profile_sample_frac(&r, 0, 1, 40000, 0.5) * 40000;
  CHECK_NEAR(at_4c, at_c * sqrt(40000 / c), 1e-6, 1e-9);
  /* Below the range too (500 < 1000 for row 1). */
  double at_500 = attn_profile_sample_frac(&r, 0, 1, 500, 0.5) * 500;
  CHECK_NEAR(at_500, at_c * sqrt(500 / c), 1e-6, 1e-9);
  /* Never above the whole context, never below one token. */
  CHECK(attn_profile_sample_frac(&r, 0, 0, 1000000, 1.0) <= 1.0);
  CHECK(attn_profile_mean_frac(&r, 0, 1, 5000) == 0.12);
  /* Layer mapping: layer 0 -> row 0; layers 1..31 of a 32-layer model -> row 1 (layer 7 of 8). */
  CHECK_EQ_INT(attn_profile_layer_row(&r, 0, 32), 0);
  CHECK_EQ_INT(attn_profile_layer_row(&r, 1, 32), 1);
  CHECK_EQ_INT(attn_profile_layer_row(&r, 31, 32), 1);
  attn_profile_free(&r);
  attn_profile_free(&p);
  remove(path);
}

static void test_damaged_profiles(void) {
  attn_profile p, r;
  kv_error e = {0};
  const char *path = test_tmp_path("bad.h5");
  make(&p);
  p.methods[0].frac_q[10] = 0.01; /* quantiles decrease in row 1 bin 1 */
  REQUIRE_OK(attn_profile_write(path, &p, &e), &e);
  CHECK_EQ_INT(attn_profile_read(path, &r, &e), KV_EFORMAT);
  CHECK_STR_CONTAINS(e.msg, "frac_q");
  attn_profile_free(&p);
  make(&p);
  p.ctx_edges[1] = 100; /* not increasing */
  REQUIRE_OK(attn_profile_write(path, &p, &e), &e);
  CHECK_EQ_INT(attn_profile_read(path, &r, &e), KV_EFORMAT);
  CHECK_STR_CONTAINS(e.msg, "ctx_edges");
  attn_profile_free(&p);
  make(&p);
  REQUIRE_OK(attn_profile_write(path, &p, &e), &e);
  hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
  H5Ldelete(f, "method_0/fit_b", H5P_DEFAULT);
  H5Fclose(f);
  CHECK_EQ_INT(attn_profile_read(path, &r, &e), KV_ENOENT);
  CHECK_STR_CONTAINS(e.msg, "/method_0/fit_b: missing dataset");
  attn_profile_free(&p);
  CHECK_EQ_INT(attn_profile_read("/nonexistent.h5", &r, &e), KV_EIO);
  remove(path);
}

TEST_LIST = {TEST(test_roundtrip_and_sampling), TEST(test_damaged_profiles), {0}};
TEST_MAIN

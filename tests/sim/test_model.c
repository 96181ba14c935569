/* Model and hardware data files, and the cost models. */
#include <hdf5.h>

#include "kv_config.h"
#include "sim_cost.h"
#include "sim_hw.h"
#include "sim_model.h"
#include "test.h"

#define MIB 1048576.0

static const char *data_path(const char *rel) {
  static char buf[4][4096];
  static int k = 0;
  char *b = buf[k++ % 4];
  snprintf(b, 4096, "%s/sim/data/%s", test_source_dir(), rel);
  return b;
}

/* KV bytes per token against CachedAttention's Table (13B 0.78 MB, 65B 2.5 MB, 70B 0.31 MB,
 * Falcon-40B 0.12 MB; the paper's MB are MiB), and parameter counts against the published
 * totals (Hugging Face model cards; norms and biases are not counted, hence 0.5%). */
static void test_kv_bytes_and_params(void) {
  struct {
    const char *file;
    double kv_mib, kv_tol, params;
  } m[] = {
      {"models/llama-2-13b.ini", 0.78, 0.005, 13.016e9},
      {"models/llama-65b.ini", 2.5, 0.005, 65.286e9},
      {"models/llama-2-70b.ini", 0.31, 0.005, 68.977e9},
      {"models/falcon-40b.ini", 0.12, 0.005, 41.84e9},
      {"models/llama-3.1-8b.ini", 0.125, 0.001, 8.030e9},
      {"models/mistral-7b.ini", 0.125, 0.001, 7.242e9},
      /* 6,738,415,616 parameters in meta-llama/Llama-2-7b-hf; 0.5 MiB of KV per token */
      {"models/llama-2-7b.ini", 0.5, 0.001, 6.738e9},
  };
  for (size_t i = 0; i < sizeof m / sizeof m[0]; i++) {
    sim_model md;
    kv_error e = {0};
    REQUIRE_OK(sim_model_load(data_path(m[i].file), &md, &e), &e);
    CHECK_NEAR(md.kv_bytes_per_token / MIB, m[i].kv_mib, m[i].kv_tol, 0);
    CHECK_NEAR(md.params, m[i].params, 0, 0.005);
    if (fabs(md.params - m[i].params) > 0.005 * m[i].params) printf("  %s\n", m[i].file);
  }
  /* exact: 2 * 40 layers * 40 heads * 128 * 2 bytes */
  sim_model md;
  kv_error e = {0};
  REQUIRE_OK(sim_model_load(data_path("models/llama-2-13b.ini"), &md, &e), &e);
  CHECK_EQ_INT((int64_t)md.kv_bytes_per_token, 819200);
  /* the paper's motivation example: 2K tokens of LLaMA-65B KV are ~5 GB (5 GiB exactly) */
  REQUIRE_OK(sim_model_load(data_path("models/llama-65b.ini"), &md, &e), &e);
  CHECK_NEAR(2048 * md.kv_bytes_per_token, 5.0 * 1073741824.0, 0, 1e-12);
}

static void test_hardware(void) {
  sim_hw hw;
  kv_error e = {0};
  REQUIRE_OK(sim_hw_load(data_path("hardware/a100-80gb.ini"), &hw, &e), &e);
  CHECK_NEAR(hw.flops, 312e12, 0, 1e-12);
  CHECK_NEAR(hw.gpu_price_per_hour, 5.0, 0, 1e-12);
  CHECK_NEAR(hw.dram_bytes, 128 * 1073741824.0, 0, 1e-12);
  REQUIRE_OK(sim_hw_load(data_path("hardware/h100.ini"), &hw, &e), &e);
  CHECK_NEAR(hw.pcie_h2d_bw, 52.5e9, 0, 1e-12);
}

static int load_text(const char *text, sim_model *m, kv_error *e) {
  kv_config *c = NULL;
  int rc = kv_config_parse(text, "m.ini", &c, e);
  if (rc) return rc;
  rc = sim_model_from_config(c, "m.ini", m, e);
  kv_config_free(c);
  return rc;
}

/* Bad files: unknown key, missing key, value out of range, GQA mismatch. */
static void test_bad_model_files(void) {
  const char *base =
      "[model]\nname = x\nlayers = 2\nheads = 4\nkv_heads = 2\nhead_dim = 8\nhidden = 32\n"
      "ffn = 64\nffn_matrices = 3\nvocab = 10\nbytes_per_elem = 2\ncontext_window = 128\n";
  sim_model m;
  kv_error e = {0};
  CHECK_OK(load_text(base, &m, &e), &e);
  char buf[2048];
  snprintf(buf, sizeof buf, "%slayres = 3\n", base);
  CHECK(load_text(buf, &m, &e) == KV_EINVAL);
  CHECK_STR_CONTAINS(e.msg, "m.ini:13");
  CHECK_STR_CONTAINS(e.msg, "layres");
  CHECK(load_text("[model]\nname = x\nlayers = 2\n", &m, &e) == KV_ENOENT);
  CHECK_STR_CONTAINS(e.msg, "heads is required");
  snprintf(buf, sizeof buf, "%s", base);
  char *p = strstr(buf, "kv_heads = 2");
  memcpy(p, "kv_heads = 3", 12);
  CHECK(load_text(buf, &m, &e) == KV_EINVAL);
  CHECK_STR_CONTAINS(e.msg, "multiple of kv_heads");
  p = strstr(buf, "kv_heads = 3");
  memcpy(p, "kv_heads = 0", 12);
  CHECK(load_text(buf, &m, &e) == KV_ERANGE);
  CHECK_STR_CONTAINS(e.msg, "m.ini:5");
  CHECK(sim_model_load("/nonexistent/model.ini", &m, &e) == KV_EIO);
}

/* Roofline against a hand computation (LLaMA-2-13B, 2 x A100, compute_eff 0.6). One layer has
 * 4*5120^2 + 3*5120*13824 = 317,194,240 parameters. Prefill of 1000 new tokens, no history:
 * FLOPs = 2*317194240*1000 + 4*40*128*(1000*1001/2) = 644,638,720,000 -> compute time
 * 644.63872e9 / (2 * 312e12 * 0.6) = 1.721791453 ms; bytes (weights 634,388,480 + KV
 * 819200/40 * 2000 = 40,960,000) / (2*2039e9*0.8) = 0.207 ms, so compute-bound; all-reduce
 * 2 * (10 us + 2*(1/2)*1000*5120*2/300e9 s) = 2 * 44.1333 us = 88.267 us. */
static void test_roofline_by_hand(void) {
  sim_model m;
  sim_hw hw;
  kv_error e = {0};
  REQUIRE_OK(sim_model_load(data_path("models/llama-2-13b.ini"), &m, &e), &e);
  REQUIRE_OK(sim_hw_load(data_path("hardware/a100-80gb.ini"), &hw, &e), &e);
  sim_cost c;
  sim_cost_init_roofline(&c, &m, &hw, 2, 0.6, 0.8);
  int64_t hist = 0, nw = 1000, layer, head;
  sim_iter_work w = {1, &hist, &nw, 0, 0};
  sim_cost_iter(&c, &w, &layer, &head);
  double expect = 644638720000.0 / (2 * 312e12 * 0.6) * 1e9 + 2 * (10000 + 1000.0 * 5120 * 2 / 300e9 * 1e9);
  CHECK_NEAR(layer, expect, 1, 0);
  /* decode of 24 sequences with 2000 tokens of context each is memory-bound: bytes =
   * 634,388,480 + 20480 * (48000 + 24) = 1,617,920,000 -> / (2*2039e9*0.8) = 495.9 us */
  w = (sim_iter_work){0, NULL, NULL, 24, 48000};
  sim_cost_iter(&c, &w, &layer, &head);
  double mem = (634388480.0 + 20480.0 * 48024) / (2 * 2039e9 * 0.8) * 1e9;
  double ar = 2 * (10000 + 24.0 * 5120 * 2 / 300e9 * 1e9);
  CHECK_NEAR(layer, mem + ar, 1, 0);
  /* an empty iteration costs nothing */
  w = (sim_iter_work){0, NULL, NULL, 0, 0};
  sim_cost_iter(&c, &w, &layer, &head);
  CHECK_EQ_INT(layer, 0);
}

/* Profile: written from a bilinear function, read back, evaluated exactly on and off the
 * grid (bilinear interpolation and linear extrapolation reproduce a bilinear function). */
static double f_prefill(double h, double n) { return 1000 + 2 * h + 30 * n + 0.01 * h * n; }
static double f_decode(double b, double c) { return 5000 + 100 * b + 0.5 * c + 0.02 * b * c; }

static void test_profile_roundtrip(void) {
  int64_t hx[3] = {0, 1000, 4000}, ny[4] = {1, 64, 512, 2048};
  int64_t bx[3] = {1, 8, 32}, cy[3] = {128, 1024, 8192};
  double pv[12], dv[9];
  for (int i = 0; i < 3; i++)
    for (int j = 0; j < 4; j++) pv[i * 4 + j] = f_prefill((double)hx[i], (double)ny[j]);
  for (int i = 0; i < 3; i++)
    for (int j = 0; j < 3; j++) dv[i * 3 + j] = f_decode((double)bx[i], (double)cy[j]);
  sim_grid2 gp = {3, 4, hx, ny, pv}, gd = {3, 3, bx, cy, dv};
  int64_t hb[2] = {1, 32};
  double hn[2] = {100, 400};
  const char *path = test_tmp_path("profile.h5");
  kv_error e = {0};
  REQUIRE_OK(sim_cost_write_profile(path, "LLaMA-2-13B", "A100-80GB", 2, &gp, &gd, 2, hb, hn, &e), &e);
  sim_model m;
  sim_hw hw;
  REQUIRE_OK(sim_model_load(data_path("models/llama-2-13b.ini"), &m, &e), &e);
  REQUIRE_OK(sim_hw_load(data_path("hardware/a100-80gb.ini"), &hw, &e), &e);
  sim_cost c;
  REQUIRE_OK(sim_cost_load_profile(&c, &m, &hw, 2, path, &e), &e);
  double pts[][2] = {{0, 1}, {500, 100}, {3999, 2048}, {6000, 3000}, {1000, 64}};
  for (int i = 0; i < 5; i++) {
    CHECK_NEAR(sim_grid2_eval(&c.prefill, pts[i][0], pts[i][1]), f_prefill(pts[i][0], pts[i][1]), 1e-6, 1e-12);
  }
  /* a mixed iteration: two prefills + a decode of 4 sequences with mean context 2000 */
  int64_t h[2] = {500, 0}, n[2] = {100, 300};
  sim_iter_work w = {2, h, n, 4, 8000};
  int64_t layer, head;
  sim_cost_iter(&c, &w, &layer, &head);
  double expect = f_prefill(500, 100) + f_prefill(0, 300) + f_decode(4, 2000);
  CHECK_NEAR(layer, expect, 1, 0);
  CHECK_NEAR(head, 100 + 300.0 * (6 - 1) / 31, 1, 0);
  sim_cost_free(&c);
  /* wrong tensor parallelism */
  CHECK(sim_cost_load_profile(&c, &m, &hw, 4, path, &e) == KV_EINVAL);
  CHECK_STR_CONTAINS(e.msg, "tp = 2");
  /* a non-increasing axis and a NaN value are rejected with the dataset named */
  int64_t bad[3] = {0, 1000, 1000};
  sim_grid2 gb = {3, 4, bad, ny, pv};
  REQUIRE_OK(sim_cost_write_profile(path, "m", "h", 2, &gb, &gd, 0, NULL, NULL, &e), &e);
  CHECK(sim_cost_load_profile(&c, &m, &hw, 2, path, &e) == KV_EFORMAT);
  CHECK_STR_CONTAINS(e.msg, "prefill/hist_tokens is not strictly increasing");
  pv[5] = NAN;
  REQUIRE_OK(sim_cost_write_profile(path, "m", "h", 2, &gp, &gd, 0, NULL, NULL, &e), &e);
  CHECK(sim_cost_load_profile(&c, &m, &hw, 2, path, &e) == KV_EFORMAT);
  CHECK_STR_CONTAINS(e.msg, "prefill/layer_ns: element 5");
  CHECK(sim_cost_load_profile(&c, &m, &hw, 2, "/nonexistent.h5", &e) == KV_EIO);
  remove(path);
}

TEST_LIST = {TEST(test_kv_bytes_and_params), TEST(test_hardware), TEST(test_bad_model_files),
             TEST(test_roofline_by_hand), TEST(test_profile_roundtrip), {0}};
TEST_MAIN

/* sim_fixtures.c — fixtures of the engine's tests (sim_fixtures.h). */
#include "sim_fixtures.h"

#include <stdio.h>
#include <string.h>

#include "sim_workload.h"
#include "test.h"

const char *sim_fixture_model(int layers, int window) {
  static char path[4096];
  snprintf(path, sizeof path, "%s", test_tmp_path("tiny-model.ini"));
  FILE *f = fopen(path, "w");
  fprintf(f,
          "[model]\nname = tiny\nlayers = %d\nheads = 1\nkv_heads = 1\nhead_dim = 64\n"
          "hidden = 64\nffn = 128\nffn_matrices = 2\nvocab = 100\nbytes_per_elem = 2\n"
          "context_window = %d\n", layers, window);
  fclose(f);
  return path;
}

const char *sim_fixture_hw(const char *extra) {
  static char path[4096];
  snprintf(path, sizeof path, "%s", test_tmp_path("tiny-hw.ini"));
  FILE *f = fopen(path, "w");
  fprintf(f,
          "[gpu]\nname = tiny-gpu\nfp16_tflops = 1\nhbm_gbs = 1\nhbm_gib = 1\nnvlink_gbs = 1\n"
          "allreduce_latency_us = 0\nprice_per_hour = 1\n"
          "[host]\npcie_h2d_gbs = 0.512\npcie_d2h_gbs = 0.512\npcie_latency_us = 0\n"
          "dram_gib = 1\ndram_price_per_gib_hour = 0\nssd_gib = 1\nssd_read_gbs = 0.512\n"
          "ssd_write_gbs = 0.512\nssd_latency_us = 0\nssd_price_per_gib_hour = 0\n%s",
          extra ? extra : "");
  fclose(f);
  return path;
}

int sim_fixture_params(const char *text, const char *model, const char *hw, kv_config **cfg,
                       sim_params *p, kv_error *e) {
  char buf[8192];
  snprintf(buf, sizeof buf, "[sim]\nmodel = %s\nhardware = %s\n%s", model, hw, text);
  int rc = kv_config_parse(buf, "test.ini", cfg, e);
  if (rc) return rc;
  return sim_params_from_config(*cfg, p, e);
}

int sim_fixture_run(const char *config, const char *overrides, const char *outdir,
                    sim_summary *out) {
  kv_config *cfg = NULL;
  sim_params p;
  kv_error e = {0};
  char path[4096];
  snprintf(path, sizeof path, "%s/%s", test_source_dir(), config);
  int rc = kv_config_load(path, &cfg, &e);
  char buf[4096];
  snprintf(buf, sizeof buf, "%s", overrides);
  for (char *tok = strtok(buf, " "); !rc && tok; tok = strtok(NULL, " ")) {
    rc = kv_config_override(cfg, tok, &e);
  }
  int have = 0;
  if (!rc) {
    rc = sim_params_from_config(cfg, &p, &e);
    have = !rc;
  }
  trace t;
  trace_init(&t);
  if (!rc) rc = sim_workload_build(cfg, p.seed, &t, &e);
  if (!rc) rc = kv_config_check_unused(cfg, &e);
  sim_result r;
  memset(&r, 0, sizeof r);
  if (!rc) rc = sim_run(&p, &t, NULL, &r, &e);
  if (!rc && outdir) rc = sim_result_write(&r, &p, &t, cfg, outdir, &e);
  if (!rc && out) rc = sim_summarize(&r, &p, out, &e);
  if (rc) printf("  run %s '%s': %s\n", config, overrides, e.msg);
  sim_result_free(&r);
  trace_free(&t);
  if (have) sim_params_free(&p);
  kv_config_free(cfg);
  return rc;
}

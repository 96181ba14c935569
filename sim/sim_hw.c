#include "sim_hw.h"

#include <stdio.h>
#include <string.h>

#define SIM_GIB 1073741824.0

int sim_hw_from_config(const kv_config *cfg, const char *what, sim_hw *hw, kv_error *err) {
  memset(hw, 0, sizeof *hw);
  const char *s = NULL;
  int rc;
  if ((rc = kv_config_str(cfg, "gpu", "name", NULL, &s, err))) return rc;
  if (!s || !s[0]) return kv_error_set(err, KV_ENOENT, "%s: [gpu] name is required", what);
  snprintf(hw->name, sizeof hw->name, "%s", s);
  if ((rc = kv_config_str(cfg, "gpu", "source", "", &s, err))) return rc;
  snprintf(hw->source, sizeof hw->source, "%s", s);
  struct {
    const char *sec, *key;
    double *dst, scale, lo, hi;
  } v[] = {
      {"gpu", "fp16_tflops", &hw->flops, 1e12, 1e-3, 1e6},
      {"gpu", "hbm_gbs", &hw->hbm_bw, 1e9, 1e-3, 1e6},
      {"gpu", "hbm_gib", &hw->hbm_bytes, SIM_GIB, 1e-3, 1e6},
      {"gpu", "nvlink_gbs", &hw->nvlink_bw, 1e9, 1e-3, 1e6},
      {"gpu", "allreduce_latency_us", &hw->allreduce_latency_ns, 1e3, 0, 1e6},
      {"gpu", "price_per_hour", &hw->gpu_price_per_hour, 1, 0, 1e6},
      {"host", "pcie_h2d_gbs", &hw->pcie_h2d_bw, 1e9, 1e-3, 1e6},
      {"host", "pcie_d2h_gbs", &hw->pcie_d2h_bw, 1e9, 1e-3, 1e6},
      {"host", "pcie_latency_us", &hw->pcie_latency_ns, 1e3, 0, 1e6},
      {"host", "dram_gib", &hw->dram_bytes, SIM_GIB, 0, 1e9},
      {"host", "dram_price_per_gib_hour", &hw->dram_price_per_gib_hour, 1, 0, 1e6},
      {"host", "ssd_gib", &hw->ssd_bytes, SIM_GIB, 0, 1e12},
      {"host", "ssd_read_gbs", &hw->ssd_read_bw, 1e9, 1e-3, 1e6},
      {"host", "ssd_write_gbs", &hw->ssd_write_bw, 1e9, 1e-3, 1e6},
      {"host", "ssd_latency_us", &hw->ssd_latency_ns, 1e3, 0, 1e9},
      {"host", "ssd_price_per_gib_hour", &hw->ssd_price_per_gib_hour, 1, 0, 1e6},
  };
  for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
    double x;
    rc = kv_config_double_req(cfg, v[i].sec, v[i].key, v[i].lo, v[i].hi, &x, err);
    if (rc) {
      if (rc == KV_ENOENT) {
        kv_error_set(err, rc, "%s: [%s] %s is required", what, v[i].sec, v[i].key);
      }
      return rc;
    }
    *v[i].dst = x * v[i].scale;
  }
  /* optional: the SSD array (sim_hw.h) */
  if ((rc = kv_config_double(cfg, "host", "ssd_devices", 1, 1, 1024, &hw->ssd_devices, err))) {
    return rc;
  }
  double mixed;
  if ((rc = kv_config_double(cfg, "host", "ssd_mixed_gbs", (hw->ssd_read_bw + hw->ssd_write_bw) / 1e9,
                             1e-3, 1e6, &mixed, err))) {
    return rc;
  }
  hw->ssd_mixed_bw = mixed * 1e9;
  if ((rc = kv_config_check_unused(cfg, err))) {
    kv_error_prefix(err, "%s: unknown key", what);
    return rc;
  }
  return 0;
}

int sim_hw_load(const char *path, sim_hw *hw, kv_error *err) {
  kv_config *cfg = NULL;
  int rc = kv_config_load(path, &cfg, err);
  if (rc) return rc;
  rc = sim_hw_from_config(cfg, path, hw, err);
  kv_config_free(cfg);
  return rc;
}

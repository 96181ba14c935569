/* sim_hw.h — a serving node as data (sim/data/hardware/<name>.ini): one GPU type (replicated
 * n_gpus times by the experiment for tensor parallelism), host DRAM, SSD, the links between
 * them, and prices.
 *
 * Units are in the key names: _tflops = 1e12 FLOP/s, _gbs = 1e9 bytes/s, _gib = 2^30 bytes,
 * _us = microseconds, prices in US$ per hour or per GiB-hour. All keys required except
 * `source`; unknown keys are an error.
 *   [gpu]  name, fp16_tflops (dense tensor-core peak), hbm_gbs, hbm_gib, nvlink_gbs (per
 *          direction, per GPU), allreduce_latency_us, price_per_hour
 *   [host] pcie_h2d_gbs, pcie_d2h_gbs (one GPU's PCIe link, per direction), pcie_latency_us,
 *          dram_gib, dram_price_per_gib_hour,
 *          ssd_gib, ssd_read_gbs, ssd_write_gbs, ssd_latency_us, ssd_price_per_gib_hour;
 *          optional: ssd_devices (1) and ssd_mixed_gbs (read + write).
 * The SSD tier is an array of ssd_devices identical devices striped together (the tier's
 * capacity is ssd_gib in all): ssd_read_gbs / ssd_write_gbs are ONE device's sequential read /
 * write bandwidth, and ssd_mixed_gbs what one device delivers when reads and writes mix (their
 * sum; the default read + write means they do not compete). The node's figures are the
 * per-device ones times ssd_devices (sim_config.h [links]).
 */
#ifndef SIM_HW_H
#define SIM_HW_H

#include "kv_config.h"
#include "kv_err.h"

typedef struct sim_hw {
  char name[64];
  char source[512];
  double flops;           /* FLOP/s per GPU (dense fp16) */
  double hbm_bw;          /* bytes/s per GPU */
  double hbm_bytes;       /* per GPU */
  double nvlink_bw;       /* bytes/s per GPU per direction */
  double allreduce_latency_ns;
  double gpu_price_per_hour;
  double pcie_h2d_bw, pcie_d2h_bw;   /* bytes/s */
  double pcie_latency_ns;
  double dram_bytes, dram_price_per_gib_hour;
  double ssd_bytes, ssd_read_bw, ssd_write_bw, ssd_latency_ns, ssd_price_per_gib_hour;
  double ssd_devices;     /* devices in the SSD array (>= 1) */
  double ssd_mixed_bw;    /* one device's read + write bandwidth when both run, bytes/s */
} sim_hw;

int sim_hw_load(const char *path, sim_hw *hw, kv_error *err);
int sim_hw_from_config(const kv_config *cfg, const char *what, sim_hw *hw, kv_error *err);

#endif /* SIM_HW_H */

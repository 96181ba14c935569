/* sim_fixtures.h — what the engine's tests share: a tiny model and node written to the build's
 * scratch folder, config text read into sim_params, and a full run of a config file with
 * overrides (the workload built by the config's [workload], summarised). */
#ifndef SIM_FIXTURES_H
#define SIM_FIXTURES_H

#include "kv_config.h"
#include "sim.h"

/* A tiny model: `layers` layers of 1 head x 64 dims, KV = 2 * 64 * 2 bytes * layers per token,
 * context window `window`. Returns its path (valid until the next call). */
const char *sim_fixture_model(int layers, int window);
/* A node whose PCIe and SSD move 0.512 GB/s (512 bytes, one token of a 2-layer tiny model, per
 * us), 1 GiB of HBM, DRAM and SSD; `extra` (may be NULL) is appended to the file. Returns its
 * path (valid until the next call). */
const char *sim_fixture_hw(const char *extra);
/* Parses "[sim] model, hardware" + text as test.ini and reads the params (*cfg: caller frees). */
int sim_fixture_params(const char *text, const char *model, const char *hw, kv_config **cfg,
                       sim_params *p, kv_error *e);
/* Runs `config` (relative to the source tree) with space-separated section.key=value overrides:
 * builds its workload, checks unused keys, runs, writes outputs to outdir (may be NULL) and
 * fills *out (may be NULL). Returns 0 or the first error's status (printed). */
int sim_fixture_run(const char *config, const char *overrides, const char *outdir,
                    sim_summary *out);

#endif /* SIM_FIXTURES_H */

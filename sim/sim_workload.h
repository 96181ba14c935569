/* sim_workload.h — the simulator's workload: the one reader of [workload], shared by both
 * engines. `source` selects it: synthetic (default; sim_synth.h), longctx (sim_longctx.h),
 * sharegpt (the project's generator, traces/trace_gen.h, its keys under their own names), or a
 * trace file — a format whose importer claims the path's ending (traces/trace_importers.h:
 * ".jsonl" is Mooncake), else the project's HDF5 or CSV (traces/trace_io.h). `decode`
 * (full | first_token) applies to every source but longctx; `seed` defaults to [sim] seed. Each
 * source's keys and their defaults are listed once in docs/sim.md.
 */
#ifndef SIM_WORKLOAD_H
#define SIM_WORKLOAD_H

#include <stdint.h>

#include "kv_config.h"
#include "kv_err.h"
#include "trace.h"

/* Builds the workload named by [workload] source into t (initialised here; empty on error),
 * reading the [workload] keys of that source. `default_seed` is [sim] seed. */
int sim_workload_build(kv_config *cfg, uint64_t default_seed, trace *t, kv_error *err);

#endif /* SIM_WORKLOAD_H */

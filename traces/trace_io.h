/* trace_io.h — the on-disk trace format: HDF5 (the format) and CSV (an export that reads back).
 *
 * Both hold exactly the in-memory model of trace.h; docs/trace-format.md is the specification.
 * Version: TRACE_FORMAT_VERSION (trace.h). A reader accepts files of its own version or older and
 * refuses newer ones with KV_ENOTSUP.
 *
 * HDF5 layout (all datasets 1-D, little-endian):
 *   /                attributes format="kvlab-trace", format_version, name, source, tokenizer,
 *                    flags, block_tokens, n_sessions, n_turns, n_hashes
 *   /sessions/{id i64, arrival_ns i64, first_turn i64, n_turns i32}          (n_sessions)
 *   /turns/{arrival_ns i64, think_ns i64, input_tokens i32, new_tokens i32, output_tokens i32,
 *           session i32, index i32, n_hashes i32, hash_off i64}             (n_turns)
 *   /hashes u64                                                             (n_hashes)
 *
 * CSV: '#'-comment header lines with the metadata, then one row per turn (a session without
 * turns is one row with empty turn fields):
 *   session_id,session_arrival_ns,turn,arrival_ns,think_ns,input_tokens,new_tokens,
 *   output_tokens,hashes            (hashes: space-separated decimal u64, may be empty)
 *
 * Every reader validates the whole trace with trace_check() before returning, so a caller never
 * sees an inconsistent trace. Writers never leave a partial file: they write a temporary file
 * and rename it over the destination (kv_fs.h).
 */
#ifndef TRACE_IO_H
#define TRACE_IO_H

#include <stdio.h>

#include "kv_err.h"
#include "trace.h"

/* Reads a trace from `path`, HDF5 or CSV (recognised by content: the HDF5 signature, else CSV).
 * `t` must be initialised (trace_init) and empty; on failure it is left empty. */
int trace_read(const char *path, trace *t, kv_error *err);

/* HDF5. trace_write checks the trace (trace_check) first and refuses an invalid one. */
int trace_write(const char *path, const trace *t, kv_error *err);
int trace_read_h5(const char *path, trace *t, kv_error *err);

/* CSV. `name` names the stream in messages (the file path for the path forms). */
int trace_write_csv(const char *path, const trace *t, kv_error *err);
int trace_write_csv_stream(FILE *f, const trace *t, kv_error *err);
int trace_read_csv(const char *path, trace *t, kv_error *err);
int trace_read_csv_stream(FILE *f, const char *name, trace *t, kv_error *err);

#endif /* TRACE_IO_H */

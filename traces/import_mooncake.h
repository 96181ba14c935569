/* import_mooncake.h — Mooncake (FAST'25) JSONL traces: one request per line,
 *   {"timestamp": ms, "input_length": tokens, "output_length": tokens, "hash_ids": [ids...]}
 * where hash_ids are remapped hashes of the input's blocks of 512 tokens (the last block may be
 * partial) and equal ids mean a reusable prefix. Other keys are ignored; blank lines are skipped.
 *
 * Validation per line: valid JSON object; the four keys present with integer values (no
 * fractions, exponents or overflow); input_length and output_length in [0, 2^31); every hash
 * id a non-negative integer < 2^64; at most ceil(input_length / block_tokens) hashes; timestamps
 * non-decreasing and ms -> ns without overflow.
 *
 * Sessions (the traces carry no session ids) are inferred from shared prefixes:
 *   the parent of request r is the most recent earlier request among those that share the
 *   longest common prefix of hash ids with r (found with a trie over the hash sequences). When
 *   that common prefix has at least min_shared_blocks blocks, r is the next turn of its
 *   parent's session; otherwise r starts a new session.
 * The default min_shared_blocks = 2 because block 0 is shared by all 12,031 requests of the
 * public conversation trace (a common system prompt), so one shared block says nothing about a
 * conversation. For a continuation, new_tokens = input_length - min(shared * block_tokens,
 * input_length): the shared prefix is the history a cache may hold. think_ns is unknown (-1).
 * Session ids are the 1-based line numbers of the sessions' first requests. Hashes are kept,
 * flags = TRACE_FLAG_OPEN_LOOP | TRACE_FLAG_HAS_HASHES, block_tokens as given.
 */
#ifndef IMPORT_MOONCAKE_H
#define IMPORT_MOONCAKE_H

#include <stdio.h>

#include "trace.h"
#include "trace_import.h"
#include "trace_importers.h"

typedef struct trace_mooncake_opts {
  trace_import_opts base;
  int32_t block_tokens;       /* tokens per hash block; 512 in the published traces */
  int32_t min_shared_blocks;  /* see above; 0 disables session inference (one session per
                                 request) */
} trace_mooncake_opts;

typedef struct trace_mooncake_stats {
  trace_import_stats base;
  int64_t continuations;      /* requests attached to an earlier request's session */
  int64_t branches;           /* continuations whose parent already had a later turn */
  int64_t shared_blocks;      /* sum over continuations of the shared prefix (blocks) */
} trace_mooncake_stats;

void trace_mooncake_opts_init(trace_mooncake_opts *o);

/* Imports `path` into `t` (initialised, empty) through the importer registry
 * (trace_importers.h). opts/st may be NULL. */
static inline int trace_import_mooncake(const char *path, const trace_mooncake_opts *opts,
                                        trace *t, trace_mooncake_stats *st, kv_error *err) {
  return trace_import_named("mooncake", path, opts, t, st, err);
}
int trace_import_mooncake_stream(FILE *f, const char *name, const trace_mooncake_opts *opts,
                                 trace *t, trace_mooncake_stats *st, kv_error *err);

#endif /* IMPORT_MOONCAKE_H */

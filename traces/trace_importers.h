/* trace_importers.h — the registry of trace importers: name -> streaming reader, its options and
 * their help, the suffix that makes a trace file of that format. kvtrace's `import` command and
 * the simulator's [workload] source go through it; trace_import_file is the one place that opens
 * an input for an importer.
 *
 * Adding an importer touches: the registry (a row in trace_importers.c and the adapter above it:
 * options into the importer's own opts struct, the stream call, the report line), its module
 * (traces/import_<name>.{c,h}: a stream reader, opts and stats structs, and the one-line
 * path wrapper in its header) and its test (tests/traces/test_import_*.c). Nothing else: kvtrace
 * lists, parses and runs importers from the registry, docs/trace-format.md describes formats.
 */
#ifndef TRACE_IMPORTERS_H
#define TRACE_IMPORTERS_H

#include <stddef.h>
#include <stdio.h>

#include "kv_err.h"
#include "trace.h"
#include "trace_import.h"

/* One option an importer takes beyond the common ones (--on-bad, --max-records). */
typedef struct trace_importer_opt {
  const char *name;   /* without the leading "--", e.g. "block-tokens" */
  const char *arg;    /* the value's form for help ("N", "none|prev"), NULL for a flag */
  const char *help;
} trace_importer_opt;

typedef struct trace_importer {
  const char *name;            /* "mooncake" */
  const char *input;           /* the input's form for help ("IN.jsonl") */
  const char *source_suffix;   /* a [workload] source path ending so is read by this importer;
                                  NULL: the project's own format claims such paths */
  const trace_importer_opt *opts; /* NULL-terminated by name */
  size_t opts_size, stats_size;   /* bytes of its opts and stats structs */
  /* Default opts (opts->base included), one option (value NULL for a flag; KV_ENOENT for an
   * option it does not take, KV_EINVAL naming the accepted values), the common options' place in
   * its opts and stats. */
  void (*init)(void *opts);
  int (*set)(void *opts, const char *name, const char *value, kv_error *err);
  trace_import_opts *(*base)(void *opts);
  const trace_import_stats *(*base_stats)(const void *stats);
  /* Reads stream f (named `name` in messages) into t (initialised, empty): the module's stream
   * reader, with whatever the options ask before and after it (tokenizer, re-timing). opts NULL:
   * defaults; stats may be NULL. */
  int (*read)(FILE *f, const char *name, const void *opts, trace *t, void *stats, kv_error *err);
  /* Importer-specific figures from its stats, and warnings its options and the result call for,
   * as lines without a final newline, or "" (buf of cap bytes). */
  void (*report)(const void *opts, const void *stats, const trace *t, char *buf, size_t cap);
} trace_importer;

/* Registry access: by name (NULL when unknown), by a [workload] source path's suffix (NULL: the
 * project's own format), and in order (i < trace_importer_count()). */
const trace_importer *trace_importer_find(const char *name);
const trace_importer *trace_importer_for_source(const char *path);
int trace_importer_count(void);
const trace_importer *trace_importer_at(int i);

/* Opens `path` and reads it with importer imp into t (trace_init'ed here; freed on error).
 * opts: NULL or the importer's own opts struct; stats: NULL or its stats struct. An input that
 * cannot be opened is KV_EIO naming the path. */
int trace_import_file(const trace_importer *imp, const char *path, const void *opts, trace *t,
                      void *stats, kv_error *err);
/* The same by importer name (KV_EINVAL for an unknown name): the modules' path wrappers. */
int trace_import_named(const char *name, const char *path, const void *opts, trace *t,
                       void *stats, kv_error *err);

#endif /* TRACE_IMPORTERS_H */

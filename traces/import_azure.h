/* import_azure.h — Azure LLM inference traces (Azure/AzurePublicDataset, 2023 and 2024 releases).
 *
 * Input: CSV with a header naming the columns TIMESTAMP, ContextTokens, GeneratedTokens (in any
 * order, other columns ignored). TIMESTAMP is "YYYY-MM-DD HH:MM:SS[.fraction][+HH:MM]" (UTC
 * unless an offset is given); the 2023 files carry 7 fractional digits (100 ns).
 *
 * Output: one single-turn session per row (the traces carry no session information), arrival
 * = timestamp - the first row's timestamp, input = new = ContextTokens, output = GeneratedTokens,
 * flags TRACE_FLAG_OPEN_LOOP. Session ids are the rows' 1-based line numbers in the file.
 * A row whose timestamp is earlier than the previous good row's is malformed (the published
 * files are sorted; a silent reorder would hide a damaged file).
 */
#ifndef IMPORT_AZURE_H
#define IMPORT_AZURE_H

#include <stdio.h>

#include "trace.h"
#include "trace_import.h"
#include "trace_importers.h"

/* Imports `path` into `t` (initialised, empty). opts may be NULL (defaults); st may be NULL.
 * Through the importer registry (trace_importers.h), which opens the file. */
static inline int trace_import_azure(const char *path, const trace_import_opts *opts, trace *t,
                                     trace_import_stats *st, kv_error *err) {
  return trace_import_named("azure", path, opts, t, st, err);
}
int trace_import_azure_stream(FILE *f, const char *name, const trace_import_opts *opts, trace *t,
                              trace_import_stats *st, kv_error *err);

#endif /* IMPORT_AZURE_H */

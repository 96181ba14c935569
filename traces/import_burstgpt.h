/* import_burstgpt.h — BurstGPT traces (HPMLL/BurstGPT, Azure OpenAI GPT service logs).
 *
 * Input: CSV with a header; columns are located by name, so both releases parse:
 *   v1.x (BurstGPT_1.csv, _2.csv):  Timestamp,Model,Request tokens,Response tokens,Total tokens,
 *                                    Log Type
 *   v2.0 (BurstGPT_3.csv):          Timestamp,Session ID,Elapsed time,Model,Request tokens,
 *                                    Response tokens,Total tokens,Log Type
 * Timestamp: seconds (integer or decimal, e.g. "19440110.0") from an origin the release
 * chooses; arrival = timestamp - the first kept row's timestamp. Required columns: Timestamp,
 * Request tokens, Response tokens. Optional: Session ID (rows with the same non-empty value form
 * one session, in row order; an empty value — API log rows — is a single-turn session), Total
 * tokens (when present it must equal request + response, else the row is malformed), Model and
 * Log Type (filters), Elapsed time (ignored: its meaning is not documented by the release).
 * Rows must be in non-decreasing time order. Response tokens = 0 marks a failed request in the
 * published data; such rows are kept unless drop_failed is set.
 *
 * Token accounting: Request tokens is the request's whole prompt (input_tokens). Whether it
 * includes the session's history is not stated by the release, so history is a choice:
 *   TRACE_BURSTGPT_HISTORY_NONE (default): new_tokens = input_tokens (no claim of reuse);
 *   TRACE_BURSTGPT_HISTORY_PREV: history = min(previous turn's input + output, input_tokens),
 *     the ChatGPT-style full-context assumption.
 * think_ns is unknown (-1) for later turns. Session ids are the 1-based line numbers of each
 * session's first row. Flags: TRACE_FLAG_OPEN_LOOP.
 */
#ifndef IMPORT_BURSTGPT_H
#define IMPORT_BURSTGPT_H

#include <stdio.h>

#include "trace.h"
#include "trace_import.h"
#include "trace_importers.h"

typedef enum trace_burstgpt_history {
  TRACE_BURSTGPT_HISTORY_NONE = 0,
  TRACE_BURSTGPT_HISTORY_PREV = 1
} trace_burstgpt_history;

typedef enum trace_burstgpt_log {
  TRACE_BURSTGPT_LOG_ALL = 0,
  TRACE_BURSTGPT_LOG_CONVERSATION = 1,  /* "Conversation log" rows only */
  TRACE_BURSTGPT_LOG_API = 2            /* "API log" rows only */
} trace_burstgpt_log;

typedef struct trace_burstgpt_opts {
  trace_import_opts base;
  trace_burstgpt_history history;
  trace_burstgpt_log log_type;
  const char *model;   /* keep only rows whose Model equals this (NULL: all) */
  int drop_failed;     /* drop rows with Response tokens = 0 (counted as filtered) */
} trace_burstgpt_opts;

void trace_burstgpt_opts_init(trace_burstgpt_opts *o);

/* Imports `path` through the importer registry (trace_importers.h). opts/st may be NULL. */
static inline int trace_import_burstgpt(const char *path, const trace_burstgpt_opts *opts,
                                        trace *t, trace_import_stats *st, kv_error *err) {
  return trace_import_named("burstgpt", path, opts, t, st, err);
}
int trace_import_burstgpt_stream(FILE *f, const char *name, const trace_burstgpt_opts *opts,
                                 trace *t, trace_import_stats *st, kv_error *err);

#endif /* IMPORT_BURSTGPT_H */

/* trace_import.h — what every importer shares: the bad-record policy, the counters an import
 * reports, and the step that groups time-ordered requests into consecutive sessions.
 *
 * Bad records. A record (a CSV/JSONL line, a ShareGPT conversation) that is malformed — a
 * syntax error, a missing or non-numeric field, a negative or overflowing count, a timestamp
 * earlier than the previous record's — is described in a kv_error whose message starts with
 * "file:line:" (or "file: byte N:" for JSON) and names the field and the problem. With
 * TRACE_ON_BAD_STOP the import fails with that error. With TRACE_ON_BAD_SKIP the record is
 * dropped, counted in stats->skipped, the first message is kept in stats->first_bad, and the
 * optional callback sees each message (a tool prints them). Either way no value is ever guessed.
 * Errors that make the rest of the input unreadable (I/O, a JSON syntax error inside a ShareGPT
 * array) always stop.
 *
 * CSV files carry their own evidence of truncation: every row ends in a newline, so a last row
 * without one is a bad record ("the file may be cut short") unless allow_unterminated is set
 * (for files known to be complete that were published without a final newline, such as the
 * Azure LLM inference traces). A header naming a column twice, or lacking a required one, is an
 * error naming the columns.
 */
#ifndef TRACE_IMPORT_H
#define TRACE_IMPORT_H

#include <stdint.h>

#include "kv_err.h"
#include "trace.h"
#include "trace_text.h"

typedef enum trace_on_bad {
  TRACE_ON_BAD_STOP = 0,  /* the first malformed record fails the import */
  TRACE_ON_BAD_SKIP = 1   /* malformed records are skipped and counted */
} trace_on_bad;

/* Called once per skipped record with its message (valid during the call only). */
typedef void (*trace_bad_fn)(void *ctx, const kv_error *e);

typedef struct trace_import_opts {
  trace_on_bad on_bad;
  trace_bad_fn bad_fn;   /* may be NULL */
  void *bad_ctx;
  int64_t max_records;   /* stop after this many good records (0 = no limit) */
  int allow_unterminated; /* CSV: accept a last row without a newline */
} trace_import_opts;

typedef struct trace_import_stats {
  int64_t records;       /* records read (good + skipped), not counting headers/blank lines */
  int64_t skipped;       /* malformed records skipped */
  int64_t filtered;      /* good records dropped by a filter option (model, log type, ...) */
  int64_t sessions;      /* sessions in the output trace */
  int64_t turns;         /* turns in the output trace */
  kv_error first_bad;    /* the first malformed record (code 0 when there was none) */
} trace_import_stats;

/* Defaults: stop on the first bad record, no callback, no limit. */
void trace_import_opts_init(trace_import_opts *o);
void trace_import_stats_init(trace_import_stats *st);

/* Handles one malformed record described by (code, fmt...): STOP -> fills err, returns code;
 * SKIP -> counts it, keeps the first message, calls bad_fn, returns 0. */
int trace_import_bad(const trace_import_opts *o, trace_import_stats *st, kv_error *err, int code,
                     const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 5, 6)))
#endif
    ;

/* Reads the header of a CSV importer from the current line of lr: splits it (a UTF-8 byte-order
 * mark before the first name is dropped), finds each of names[0..n_names) (case-insensitive) and
 * stores its column in col[] (-1 when absent). A name that appears twice (any name, known or
 * not), or a missing name whose required[i] is set, is KV_EFORMAT naming the columns and
 * file:line. *n_cols receives the header's field count. */
int trace_import_csv_header(trace_lines *lr, const char *name, const char *const *names,
                            const int *required, int n_names, int *col, int *n_cols,
                            kv_error *err);

/* Splits the current data line of a CSV importer into at most `cap` fields and checks it: a line
 * too long or holding a NUL byte, a last line without a newline (unless allow_unterminated),
 * malformed quoting, or a field count other than n_cols is a bad record (trace_import_bad, with
 * file:line). Returns n_cols when the record is good, 0 when it was bad and skipped, or a
 * negative status to stop. */
int trace_import_csv_record(const trace_import_opts *o, trace_import_stats *st,
                            trace_lines *lr, const char *name, char **fields, int cap,
                            int n_cols, kv_error *err);

/* One imported request before grouping. */
typedef struct trace_import_req {
  int64_t arrival_ns;    /* from the trace's start */
  int64_t think_ns;      /* 0 for a session's first turn, -1 unknown */
  int64_t input_tokens, new_tokens, output_tokens;
  int64_t session;       /* dense session number 0..n_sessions-1, numbered in order of first
                            appearance */
  int64_t hash_off;      /* into the caller's hash array */
  int32_t n_hashes;
} trace_import_req;

/* Appends the requests (sorted by arrival, each session numbered by first appearance) to `t`,
 * grouped by session: session s gets id session_ids[s] and the arrival of its first request;
 * its turns keep the requests' order. A session's first turn gets think_ns 0. */
int trace_import_group(trace *t, const trace_import_req *reqs, int64_t n_reqs,
                       const int64_t *session_ids, int64_t n_sessions, const uint64_t *hashes,
                       kv_error *err);

/* Growable arrays used by the importers (internal helpers with a public prefix). */
int trace_import_push_req(trace_import_req **a, int64_t *n, int64_t *cap,
                          const trace_import_req *r);
int trace_import_push_i64(int64_t **a, int64_t *n, int64_t *cap, int64_t v);
int trace_import_push_u64(uint64_t **a, int64_t *n, int64_t *cap, uint64_t v);

/* The end of every importer's stream reader: on an error (rc < 0) the trace is freed and rc
 * returned; on success the stats count the trace's sessions and turns and 0 is returned. */
int trace_import_finish(trace *t, trace_import_stats *st, int rc);

/* Last path component of `path` (pointer into path). */
const char *trace_import_basename(const char *path);

#endif /* TRACE_IMPORT_H */

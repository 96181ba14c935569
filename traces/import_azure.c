#include "import_azure.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "kv_fs.h"
#include "trace_text.h"

#define AZURE_MAX_FIELDS 64

int trace_import_azure_stream(FILE *f, const char *name, const trace_import_opts *opts, trace *t,
                              trace_import_stats *st, kv_error *err) {
  trace_import_opts dflt;
  trace_import_stats st_local;
  if (!opts) {
    trace_import_opts_init(&dflt);
    opts = &dflt;
  }
  if (!st) st = &st_local;
  trace_import_stats_init(st);
  trace_init(t);
  snprintf(t->name, sizeof t->name, "azure %s", trace_import_basename(name));
  snprintf(t->source, sizeof t->source, "%s", name);
  snprintf(t->tokenizer, sizeof t->tokenizer, "as recorded (Azure ContextTokens/GeneratedTokens)");
  t->flags = TRACE_FLAG_OPEN_LOOP;

  trace_lines lr;
  int rc = trace_lines_init(&lr, f, name, 1 << 20, err);
  if (rc) return rc;
  int c_ts = -1, c_in = -1, c_out = -1, n_cols = 0;
  int64_t t0 = 0, prev = 0, n_good = 0;
  int more;
  while ((more = trace_lines_next(&lr, err)) == 1) {
    long long ln = (long long)lr.lineno;
    if (lr.len == 0 && !lr.too_long) continue; /* blank line */
    if (n_cols == 0) {
      static const char *const names[3] = {"TIMESTAMP", "ContextTokens", "GeneratedTokens"};
      static const int required[3] = {1, 1, 1};
      int col[3];
      if ((rc = trace_import_csv_header(&lr, name, names, required, 3, col, &n_cols, err))) break;
      c_ts = col[0];
      c_in = col[1];
      c_out = col[2];
      continue;
    }
    st->records++;
    char *fld[AZURE_MAX_FIELDS];
    int nf = trace_import_csv_record(opts, st, &lr, name, fld, AZURE_MAX_FIELDS, n_cols, err);
    if (nf < 0) {
      rc = nf;
      break;
    }
    if (nf == 0) continue;
    int64_t ts, in, out;
    int prc;
    if ((prc = trace_parse_datetime_ns(fld[c_ts], &ts))) {
      rc = trace_import_bad(opts, st, err, prc, "%s:%lld: TIMESTAMP '%.64s' is not a valid date "
                            "and time%s", name, ln, fld[c_ts],
                            prc == KV_ERANGE ? " in 1970..2261" : "");
      if (rc) break;
      continue;
    }
    if ((prc = trace_parse_count(fld[c_in], &in)) || in > INT32_MAX) {
      rc = trace_import_bad(opts, st, err, prc ? prc : KV_ERANGE, "%s:%lld: ContextTokens '%.64s' "
                            "is not a count in [0, 2^31)", name, ln, fld[c_in]);
      if (rc) break;
      continue;
    }
    if ((prc = trace_parse_count(fld[c_out], &out)) || out > INT32_MAX) {
      rc = trace_import_bad(opts, st, err, prc ? prc : KV_ERANGE, "%s:%lld: GeneratedTokens "
                            "'%.64s' is not a count in [0, 2^31)", name, ln, fld[c_out]);
      if (rc) break;
      continue;
    }
    if (n_good == 0) t0 = prev = ts;
    if (ts < prev) {
      rc = trace_import_bad(opts, st, err, KV_EFORMAT, "%s:%lld: TIMESTAMP '%.64s' is earlier "
                            "than the previous row's (rows must be in time order)", name, ln,
                            fld[c_ts]);
      if (rc) break;
      continue;
    }
    prev = ts;
    int64_t r = trace_add_session(t, (int64_t)ln, ts - t0, err);
    if (r >= 0) r = trace_add_turn(t, ts - t0, 0, in, in, out, NULL, 0, err);
    if (r < 0) {
      rc = (int)r;
      kv_error_prefix(err, "%s:%lld", name, ln);
      break;
    }
    n_good++;
    if (opts->max_records && n_good >= opts->max_records) break;
  }
  if (more < 0) rc = more;
  if (!rc && n_cols == 0) {
    rc = kv_error_set(err, KV_EFORMAT, "%s: empty file (no header)", name);
  }
  trace_lines_free(&lr);
  return trace_import_finish(t, st, rc);
}

#include "import_burstgpt.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "kv_fs.h"
#include "trace_map.h"
#include "trace_text.h"

#define BURST_MAX_FIELDS 64

void trace_burstgpt_opts_init(trace_burstgpt_opts *o) {
  memset(o, 0, sizeof *o);
  trace_import_opts_init(&o->base);
}

enum { BG_TS, BG_SESSION, BG_MODEL, BG_REQ, BG_RESP, BG_TOTAL, BG_LOG, BG_N };
static const char *const bg__names[BG_N] = {"Timestamp", "Session ID", "Model", "Request tokens",
                                            "Response tokens", "Total tokens", "Log Type"};

typedef struct bg__sess {
  int64_t last_in, last_out;
} bg__sess;

/* The trace's name, source (with the options), tokenizer and flags. */
static void bg__describe(trace *t, const char *name, const trace_burstgpt_opts *bo) {
  trace_init(t);
  snprintf(t->name, sizeof t->name, "burstgpt %s", trace_import_basename(name));
  snprintf(t->source, sizeof t->source, "%s (history %s%s%s%s%s)", name,
           bo->history == TRACE_BURSTGPT_HISTORY_PREV ? "prev" : "none",
           bo->log_type == TRACE_BURSTGPT_LOG_CONVERSATION ? ", conversation log only"
           : bo->log_type == TRACE_BURSTGPT_LOG_API ? ", API log only" : "",
           bo->model ? ", model " : "", bo->model ? bo->model : "",
           bo->drop_failed ? ", failed requests dropped" : "");
  snprintf(t->tokenizer, sizeof t->tokenizer, "as recorded (BurstGPT Request/Response tokens)");
  t->flags = TRACE_FLAG_OPEN_LOOP;
}

/* A row's timestamp (ns) and token counts, Total tokens checked when present. Returns 0 for a
 * good row, 1 for a bad one that was skipped (trace_import_bad), or a negative status to stop. */
static int bg__numbers(const trace_import_opts *opts, trace_import_stats *st, const char *name,
                       long long ln, char **fld, const int *col, int64_t *ts, int64_t *in,
                       int64_t *out, kv_error *err) {
  int64_t total;
  int prc, rc;
  if ((prc = trace_parse_fixed(fld[col[BG_TS]], 1000000000, ts))) {
    rc = trace_import_bad(opts, st, err, prc, "%s:%lld: Timestamp '%.64s' is not %s", name, ln,
                          fld[col[BG_TS]], prc == KV_ERANGE ? "below 2^63 ns"
                                                            : "a non-negative number of seconds");
    return rc ? rc : 1;
  }
  if ((prc = trace_parse_count(fld[col[BG_REQ]], in)) || *in > INT32_MAX) {
    rc = trace_import_bad(opts, st, err, prc ? prc : KV_ERANGE, "%s:%lld: Request tokens "
                          "'%.64s' is not a count in [0, 2^31)", name, ln, fld[col[BG_REQ]]);
    return rc ? rc : 1;
  }
  if ((prc = trace_parse_count(fld[col[BG_RESP]], out)) || *out > INT32_MAX) {
    rc = trace_import_bad(opts, st, err, prc ? prc : KV_ERANGE, "%s:%lld: Response tokens "
                          "'%.64s' is not a count in [0, 2^31)", name, ln, fld[col[BG_RESP]]);
    return rc ? rc : 1;
  }
  if (col[BG_TOTAL] >= 0 && fld[col[BG_TOTAL]][0] != '\0' &&
      (trace_parse_count(fld[col[BG_TOTAL]], &total) || total != *in + *out)) {
    rc = trace_import_bad(opts, st, err, KV_EFORMAT, "%s:%lld: Total tokens '%.64s' is not "
                          "Request + Response tokens (%lld)", name, ln, fld[col[BG_TOTAL]],
                          (long long)(*in + *out));
    return rc ? rc : 1;
  }
  return 0;
}

int trace_import_burstgpt_stream(FILE *f, const char *name, const trace_burstgpt_opts *bo,
                                 trace *t, trace_import_stats *st, kv_error *err) {
  trace_burstgpt_opts dflt;
  trace_import_stats st_local;
  if (!bo) {
    trace_burstgpt_opts_init(&dflt);
    bo = &dflt;
  }
  if (!st) st = &st_local;
  trace_import_stats_init(st);
  const trace_import_opts *opts = &bo->base;
  bg__describe(t, name, bo);

  trace_lines lr;
  int rc = trace_lines_init(&lr, f, name, 1 << 20, err);
  if (rc) return rc;
  int col[BG_N];
  for (int i = 0; i < BG_N; i++) col[i] = -1;
  int n_cols = 0;
  trace_strmap sessions;
  trace_strmap_init(&sessions);
  bg__sess *sess = NULL;
  int64_t n_sess = 0, cap_sess = 0;
  int64_t *session_ids = NULL, n_ids = 0, cap_ids = 0;
  trace_import_req *reqs = NULL;
  int64_t n_reqs = 0, cap_reqs = 0;
  int64_t t0 = 0, prev = 0;
  int more;
  while ((more = trace_lines_next(&lr, err)) == 1) {
    long long ln = (long long)lr.lineno;
    if (lr.len == 0 && !lr.too_long) continue;
    if (n_cols == 0) {
      static const int required[BG_N] = {[BG_TS] = 1, [BG_REQ] = 1, [BG_RESP] = 1};
      if ((rc = trace_import_csv_header(&lr, name, bg__names, required, BG_N, col, &n_cols,
                                        err))) {
        break;
      }
      if ((bo->model && col[BG_MODEL] < 0) || (bo->log_type && col[BG_LOG] < 0)) {
        rc = kv_error_set(err, KV_EINVAL, "%s:%lld: a filter needs the %s column, which the "
                          "header lacks", name, ln, bo->model && col[BG_MODEL] < 0 ? "Model"
                                                                                    : "Log Type");
        break;
      }
      continue;
    }
    st->records++;
    char *fld[BURST_MAX_FIELDS];
    int nf = trace_import_csv_record(opts, st, &lr, name, fld, BURST_MAX_FIELDS, n_cols, err);
    if (nf < 0) {
      rc = nf;
      break;
    }
    if (nf == 0) continue;
    int64_t ts, in, out;
    int bad = bg__numbers(opts, st, name, ln, fld, col, &ts, &in, &out, err);
    if (bad < 0) {
      rc = bad;
      break;
    }
    if (bad) continue;
    /* filters */
    const char *logt = col[BG_LOG] >= 0 ? fld[col[BG_LOG]] : "";
    if ((bo->log_type == TRACE_BURSTGPT_LOG_CONVERSATION && strcmp(logt, "Conversation log")) ||
        (bo->log_type == TRACE_BURSTGPT_LOG_API && strcmp(logt, "API log")) ||
        (bo->model && strcmp(fld[col[BG_MODEL]], bo->model)) || (bo->drop_failed && out == 0)) {
      st->filtered++;
      continue;
    }
    if (n_reqs == 0) t0 = prev = ts;
    if (ts < prev) {
      rc = trace_import_bad(opts, st, err, KV_EFORMAT, "%s:%lld: Timestamp '%.64s' is earlier "
                            "than the previous row's (rows must be in time order)", name, ln,
                            fld[col[BG_TS]]);
      if (rc) break;
      continue;
    }
    prev = ts;
    trace_import_req q = {.arrival_ns = ts - t0, .think_ns = -1, .input_tokens = in,
                          .new_tokens = in, .output_tokens = out, .session = -1};
    const char *sid = col[BG_SESSION] >= 0 ? fld[col[BG_SESSION]] : "";
    int64_t *known = sid[0] ? trace_strmap_get(&sessions, sid, strlen(sid)) : NULL;
    int arc = 0;
    if (known) {
      q.session = *known;
      if (bo->history == TRACE_BURSTGPT_HISTORY_PREV) {
        int64_t hist = sess[q.session].last_in + sess[q.session].last_out;
        q.new_tokens = in - (hist < in ? hist : in);
      }
    } else {
      q.session = n_sess;
      if (n_sess == cap_sess) {
        int64_t nc = cap_sess ? cap_sess * 2 : 1024;
        bg__sess *nb = realloc(sess, (size_t)nc * sizeof *nb);
        if (!nb) arc = 1;
        else sess = nb, cap_sess = nc;
      }
      if (!arc) {
        n_sess++;
        arc = trace_import_push_i64(&session_ids, &n_ids, &cap_ids, (int64_t)ln);
      }
      if (!arc && sid[0]) arc = trace_strmap_put(&sessions, sid, strlen(sid), q.session);
    }
    if (!arc) {
      sess[q.session].last_in = in;
      sess[q.session].last_out = out;
      arc = trace_import_push_req(&reqs, &n_reqs, &cap_reqs, &q);
    }
    if (arc) {
      rc = kv_error_set(err, KV_ENOMEM, "%s:%lld: out of memory", name, ln);
      break;
    }
    if (opts->max_records && n_reqs >= opts->max_records) break;
  }
  if (more < 0) rc = more;
  if (!rc && n_cols == 0) rc = kv_error_set(err, KV_EFORMAT, "%s: empty file (no header)", name);
  if (!rc) rc = trace_import_group(t, reqs, n_reqs, session_ids, n_sess, NULL, err);
  trace_lines_free(&lr);
  trace_strmap_free(&sessions);
  free(sess);
  free(session_ids);
  free(reqs);
  return trace_import_finish(t, st, rc);
}

#include "trace_import.h"

#include "trace_text.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

void trace_import_opts_init(trace_import_opts *o) { memset(o, 0, sizeof *o); }

void trace_import_stats_init(trace_import_stats *st) { memset(st, 0, sizeof *st); }

int trace_import_bad(const trace_import_opts *o, trace_import_stats *st, kv_error *err, int code,
                     const char *fmt, ...) {
  kv_error e = {0};
  e.code = code;
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(e.msg, sizeof e.msg, fmt, ap);
  va_end(ap);
  if (n >= (int)sizeof e.msg) memcpy(e.msg + sizeof e.msg - 4, "...", 4);
  if (o->on_bad != TRACE_ON_BAD_SKIP) {
    if (err) *err = e;
    return code;
  }
  st->skipped++;
  if (st->first_bad.code == 0) st->first_bad = e;
  if (o->bad_fn) o->bad_fn(o->bad_ctx, &e);
  return 0;
}

#define TRACE__HEADER_MAX 64

int trace_import_csv_header(trace_lines *lr, const char *name, const char *const *names,
                            const int *required, int n_names, int *col, int *n_cols,
                            kv_error *err) {
  long long ln = (long long)lr->lineno;
  for (int k = 0; k < n_names; k++) col[k] = -1;
  if (lr->too_long || lr->has_nul) {
    return kv_error_set(err, KV_EFORMAT, "%s:%lld: the header line is not text", name, ln);
  }
  char *fld[TRACE__HEADER_MAX];
  int nf = trace_csv_split(lr->line, fld, TRACE__HEADER_MAX);
  if (nf < 0) {
    return kv_error_set(err, KV_EFORMAT, "%s:%lld: cannot split the header (malformed quoting "
                        "or more than %d columns)", name, ln, TRACE__HEADER_MAX);
  }
  const unsigned char *b = (const unsigned char *)fld[0];
  if (b[0] == 0xEF && b[1] == 0xBB && b[2] == 0xBF) fld[0] += 3; /* UTF-8 byte-order mark */
  for (int i = 0; i < nf; i++) {
    for (int j = 0; j < i; j++) {
      if (fld[i][0] && !strcasecmp(fld[i], fld[j])) {
        return kv_error_set(err, KV_EFORMAT, "%s:%lld: column '%.64s' appears twice (columns %d "
                            "and %d): which one holds the data is not known", name, ln, fld[i],
                            j + 1, i + 1);
      }
    }
    for (int k = 0; k < n_names; k++) {
      if (!strcasecmp(fld[i], names[k])) col[k] = i;
    }
  }
  char missing[512] = "";
  size_t used = 0;
  for (int k = 0; k < n_names; k++) {
    if (col[k] >= 0 || !required[k] || used >= sizeof missing) continue;
    used += (size_t)snprintf(missing + used, sizeof missing - used, "%s'%s'", used ? ", " : "",
                             names[k]);
  }
  if (missing[0]) {
    return kv_error_set(err, KV_EFORMAT, "%s:%lld: the header lacks the column%s %s", name, ln,
                        strchr(missing, ',') ? "s" : "", missing);
  }
  *n_cols = nf;
  return 0;
}

int trace_import_csv_record(const trace_import_opts *o, trace_import_stats *st,
                            trace_lines *lr, const char *name, char **fields, int cap,
                            int n_cols, kv_error *err) {
  long long ln = (long long)lr->lineno;
  int rc;
  if (lr->too_long || lr->has_nul) {
    rc = trace_import_bad(o, st, err, KV_EFORMAT, "%s:%lld: %s", name, ln,
                          lr->too_long ? "line longer than 1 MiB" : "NUL byte in line");
    return rc ? rc : 0;
  }
  if (lr->unterminated && !o->allow_unterminated) {
    rc = trace_import_bad(o, st, err, KV_EFORMAT, "%s:%lld: the last row has no newline: the "
                          "file may be cut short (if it is complete, allow it: "
                          "allow_unterminated, kvtrace --allow-unterminated)", name, ln);
    return rc ? rc : 0;
  }
  int nf = trace_csv_split(lr->line, fields, cap);
  if (nf == n_cols) return nf;
  if (nf < 0) {
    rc = trace_import_bad(o, st, err, KV_EFORMAT, "%s:%lld: malformed quoting or too many fields",
                          name, ln);
  } else {
    rc = trace_import_bad(o, st, err, KV_EFORMAT, "%s:%lld: %d fields, the header has %d", name,
                          ln, nf, n_cols);
  }
  return rc ? rc : 0;
}

int trace_import_group(trace *t, const trace_import_req *reqs, int64_t n_reqs,
                       const int64_t *session_ids, int64_t n_sessions, const uint64_t *hashes,
                       kv_error *err) {
  /* Counting sort of requests by session (stable, so each session keeps arrival order). */
  int64_t *start = calloc((size_t)n_sessions + 1, sizeof *start);
  int64_t *order = malloc((size_t)(n_reqs ? n_reqs : 1) * sizeof *order);
  if (!start || !order) {
    free(start);
    free(order);
    return kv_error_set(err, KV_ENOMEM, "trace import: out of memory grouping %lld requests",
                        (long long)n_reqs);
  }
  for (int64_t i = 0; i < n_reqs; i++) {
    if (reqs[i].session < 0 || reqs[i].session >= n_sessions) {
      free(start);
      free(order);
      return kv_error_set(err, KV_EINVAL, "trace import: request %lld has session %lld of %lld",
                          (long long)i, (long long)reqs[i].session, (long long)n_sessions);
    }
    start[reqs[i].session + 1]++;
  }
  for (int64_t s = 0; s < n_sessions; s++) start[s + 1] += start[s];
  for (int64_t i = 0; i < n_reqs; i++) order[start[reqs[i].session]++] = i;
  /* start[s] is now the end of session s; its begin is start[s-1] (0 for s = 0). */
  int rc = 0;
  int64_t begin = 0;
  for (int64_t s = 0; s < n_sessions && !rc; s++) {
    int64_t end = start[s];
    if (end == begin) continue; /* a session number with no request (cannot happen here) */
    const trace_import_req *first = &reqs[order[begin]];
    int64_t r = trace_add_session(t, session_ids[s], first->arrival_ns, err);
    if (r < 0) rc = (int)r;
    for (int64_t k = begin; k < end && !rc; k++) {
      const trace_import_req *q = &reqs[order[k]];
      r = trace_add_turn(t, q->arrival_ns, k == begin ? 0 : q->think_ns, q->input_tokens,
                         q->new_tokens, q->output_tokens,
                         q->n_hashes ? hashes + q->hash_off : NULL, q->n_hashes, err);
      if (r < 0) rc = (int)r;
    }
    begin = end;
  }
  free(start);
  free(order);
  return rc;
}

#define TRACE__PUSH(a, n, cap, v)                                         \
  do {                                                                    \
    if (*(n) == *(cap)) {                                                 \
      int64_t nc = *(cap) ? *(cap) * 2 : 1024;                            \
      void *nb = realloc(*(a), (size_t)nc * sizeof **(a));                \
      if (!nb) return KV_ENOMEM;                                          \
      *(a) = nb;                                                          \
      *(cap) = nc;                                                        \
    }                                                                     \
    (*(a))[(*(n))++] = (v);                                               \
  } while (0)

int trace_import_push_req(trace_import_req **a, int64_t *n, int64_t *cap,
                          const trace_import_req *r) {
  TRACE__PUSH(a, n, cap, *r);
  return 0;
}

int trace_import_push_i64(int64_t **a, int64_t *n, int64_t *cap, int64_t v) {
  TRACE__PUSH(a, n, cap, v);
  return 0;
}

int trace_import_push_u64(uint64_t **a, int64_t *n, int64_t *cap, uint64_t v) {
  TRACE__PUSH(a, n, cap, v);
  return 0;
}

const char *trace_import_basename(const char *path) {
  const char *s = strrchr(path, '/');
  return s ? s + 1 : path;
}

int trace_import_finish(trace *t, trace_import_stats *st, int rc) {
  if (rc) {
    trace_free(t);
    return rc;
  }
  st->sessions = t->n_sessions;
  st->turns = t->n_turns;
  return 0;
}

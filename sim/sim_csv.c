#include "sim_csv.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kv_fs.h"

/* Reads the next line into buf (without its end of line); 1 read, 0 end of file, <0 error.
 * r->unterminated says whether it ended without a newline (at the end of the file). */
static int sim__csv_line(sim_csv *r, char *buf, kv_error *err) {
  errno = 0;
  ssize_t n = getline(&r->lbuf, &r->lcap, r->f);
  if (n < 0) {
    if (ferror(r->f) || (errno && errno != EINVAL)) {
      return kv_error_set(err, errno == ENOMEM ? KV_ENOMEM : KV_EIO, "%s: read error", r->path);
    }
    return 0;
  }
  r->line++;
  r->unterminated = n == 0 || r->lbuf[n - 1] != '\n';
  if (memchr(r->lbuf, 0, (size_t)n)) {
    return kv_error_set(err, KV_EFORMAT, "%s:%lld: the line holds a NUL byte", r->path,
                        (long long)r->line);
  }
  while (n > 0 && (r->lbuf[n - 1] == '\n' || r->lbuf[n - 1] == '\r')) n--;
  if (n > SIM_CSV_LINE - 2) {
    return kv_error_set(err, KV_EFORMAT, "%s:%lld: line longer than %d bytes", r->path,
                        (long long)r->line, SIM_CSV_LINE - 2);
  }
  memcpy(buf, r->lbuf, (size_t)n);
  buf[n] = '\0';
  return 1;
}

/* A header or data row must end in a newline: without one the file may be cut short. */
static int sim__cut(const sim_csv *r, const char *what, kv_error *err) {
  return kv_error_set(err, KV_EFORMAT, "%s:%lld: the %s has no newline: the file may be cut "
                      "short", r->path, (long long)r->line, what);
}

static int sim__blank(const char *s) {
  while (*s == ' ' || *s == '\t') s++;
  return *s == '\0' || *s == '#';
}

/* Splits s at commas in place, trimming spaces; returns the field count (or cap + 1 when
 * there are more than cap fields). */
static int sim__split(char *s, char **out, int cap) {
  int n = 0;
  for (;;) {
    while (*s == ' ' || *s == '\t') s++;
    char *end = strchr(s, ',');
    if (n == cap) return cap + 1;
    out[n++] = s;
    char *e = end ? end : s + strlen(s);
    while (e > s && (e[-1] == ' ' || e[-1] == '\t')) e--;
    char *next = end ? end + 1 : NULL;
    *e = '\0';
    if (!next) return n;
    s = next;
  }
}

/* The header's names: each non-empty and named once. */
static int sim__check_header(const sim_csv *r, kv_error *err) {
  for (int i = 0; i < r->ncol; i++) {
    if (!r->names[i][0]) {
      return kv_error_set(err, KV_EFORMAT, "%s:%lld: header column %d has no name", r->path,
                          (long long)r->line, i + 1);
    }
    for (int j = 0; j < i; j++) {
      if (strcmp(r->names[i], r->names[j]) == 0) {
        return kv_error_set(err, KV_EFORMAT, "%s:%lld: column '%.64s' appears twice (columns %d "
                            "and %d)", r->path, (long long)r->line, r->names[i], j + 1, i + 1);
      }
    }
  }
  return 0;
}

int sim_csv_open(sim_csv *r, const char *path, kv_error *err) {
  memset(r, 0, sizeof *r);
  snprintf(r->path, sizeof r->path, "%s", path);
  r->f = fopen(path, "r");
  if (!r->f) return kv_error_set(err, KV_EIO, "%s: cannot open: %s", path, strerror(errno));
  kv_fs_note_input(path); /* sweeps key their points by what they read */
  int rc;
  while ((rc = sim__csv_line(r, r->header, err)) == 1) {
    if (sim__blank(r->header)) continue;
    r->header_line = r->line;
    if (r->unterminated) {
      rc = sim__cut(r, "header", err);
      break;
    }
    r->ncol = sim__split(r->header, r->names, SIM_CSV_MAX_COLS);
    if (r->ncol > SIM_CSV_MAX_COLS) {
      rc = kv_error_set(err, KV_EFORMAT, "%s:%lld: more than %d columns", path,
                        (long long)r->line, SIM_CSV_MAX_COLS);
      break;
    }
    rc = sim__check_header(r, err);
    if (rc == 0) return 0;
    break;
  }
  if (rc == 0) rc = kv_error_set(err, KV_EFORMAT, "%s: no header line (empty file)", path);
  sim_csv_close(r);
  return rc;
}

int sim_csv_col_opt(const sim_csv *r, const char *name) {
  for (int i = 0; i < r->ncol; i++) {
    if (strcmp(r->names[i], name) == 0) return i;
  }
  return -1;
}

int sim_csv_col(const sim_csv *r, const char *name, int *idx, kv_error *err) {
  *idx = sim_csv_col_opt(r, name);
  if (*idx < 0) {
    return kv_error_set(err, KV_EFORMAT, "%s: the header has no column '%s' (line %lld)", r->path,
                        name, (long long)r->header_line);
  }
  return 0;
}

int sim_csv_next(sim_csv *r, kv_error *err) {
  int rc;
  while ((rc = sim__csv_line(r, r->row, err)) == 1) {
    if (sim__blank(r->row)) continue;
    if (r->unterminated) return sim__cut(r, "last row", err);
    int n = sim__split(r->row, r->fields, SIM_CSV_MAX_COLS);
    if (n != r->ncol) {
      return kv_error_set(err, KV_EFORMAT, "%s:%lld: %d fields, the header has %d", r->path,
                          (long long)r->line, n > SIM_CSV_MAX_COLS ? SIM_CSV_MAX_COLS + 1 : n,
                          r->ncol);
    }
    return 1;
  }
  return rc;
}

const char *sim_csv_str(const sim_csv *r, int idx) { return r->fields[idx]; }

int sim_csv_i64(const sim_csv *r, int idx, int64_t lo, int64_t hi, int64_t *out,
                kv_error *err) {
  const char *s = r->fields[idx];
  char *end = NULL;
  errno = 0;
  long long v = strtoll(s, &end, 10);
  if (!s[0] || *end || errno) {
    return kv_error_set(err, KV_EFORMAT, "%s:%lld: column '%s': '%s' is not an integer",
                        r->path, (long long)r->line, r->names[idx], s);
  }
  if (v < lo || v > hi) {
    return kv_error_set(err, KV_ERANGE, "%s:%lld: column '%s': %lld is outside [%lld, %lld]",
                        r->path, (long long)r->line, r->names[idx], v, (long long)lo,
                        (long long)hi);
  }
  *out = v;
  return 0;
}

int sim_csv_f64(const sim_csv *r, int idx, double lo, double hi, double *out, kv_error *err) {
  const char *s = r->fields[idx];
  char *end = NULL;
  errno = 0;
  double v = strtod(s, &end);
  if (!s[0] || *end || errno == ERANGE || !isfinite(v)) {
    return kv_error_set(err, KV_EFORMAT, "%s:%lld: column '%s': '%s' is not a finite number",
                        r->path, (long long)r->line, r->names[idx], s);
  }
  if (v < lo || v > hi) {
    return kv_error_set(err, KV_ERANGE, "%s:%lld: column '%s': %g is outside [%g, %g]", r->path,
                        (long long)r->line, r->names[idx], v, lo, hi);
  }
  *out = v;
  return 0;
}

void sim_csv_close(sim_csv *r) {
  if (r->f) fclose(r->f);
  r->f = NULL;
  free(r->lbuf);
  r->lbuf = NULL;
  r->lcap = 0;
}

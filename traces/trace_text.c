#include "trace_text.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* ---- line reader --------------------------------------------------------------------------- */

int trace_lines_init(trace_lines *r, FILE *f, const char *name, size_t max_len, kv_error *err) {
  memset(r, 0, sizeof *r);
  r->f = f;
  r->name = name ? name : "<stream>";
  r->max_len = max_len ? max_len : (size_t)64 << 20;
  r->cap = 4096;
  r->line = malloc(r->cap);
  if (!r->line) return kv_error_set(err, KV_ENOMEM, "%s: out of memory", r->name);
  r->line[0] = '\0';
  return 0;
}

void trace_lines_free(trace_lines *r) {
  free(r->line);
  r->line = NULL;
  r->cap = r->len = 0;
}

/* Refills the read buffer; 0 at EOF, 1 when bytes are available, negative on error. */
static int trace__lines_fill(trace_lines *r, kv_error *err) {
  if (r->eof) return 0;
  r->rlen = fread(r->rbuf, 1, sizeof r->rbuf, r->f);
  r->rpos = 0;
  if (r->rlen == 0) {
    if (ferror(r->f)) return kv_error_set(err, KV_EIO, "%s: read error", r->name);
    r->eof = 1;
    return 0;
  }
  return 1;
}

int trace_lines_next(trace_lines *r, kv_error *err) {
  r->len = 0;
  r->too_long = 0;
  r->has_nul = 0;
  r->unterminated = 0;
  r->offset = r->consumed;
  int got_any = 0, got_nl = 0;
  for (;;) {
    if (r->rpos == r->rlen) {
      int rc = trace__lines_fill(r, err);
      if (rc < 0) return rc;
      if (rc == 0) break;
    }
    const char *start = r->rbuf + r->rpos;
    size_t avail = r->rlen - r->rpos;
    const char *nl = memchr(start, '\n', avail);
    size_t take = nl ? (size_t)(nl - start) : avail;
    got_any = 1;
    if (memchr(start, '\0', take)) r->has_nul = 1;
    /* Store up to max_len bytes; count the rest but drop it. */
    size_t room = r->len < r->max_len ? r->max_len - r->len : 0;
    size_t store = take < room ? take : room;
    if (take > room) r->too_long = 1;
    if (store) {
      if (r->len + store + 1 > r->cap) {
        size_t nc = r->cap;
        while (nc < r->len + store + 1) nc *= 2;
        char *nb = realloc(r->line, nc);
        if (!nb) return kv_error_set(err, KV_ENOMEM, "%s: out of memory", r->name);
        r->line = nb;
        r->cap = nc;
      }
      memcpy(r->line + r->len, start, store);
      r->len += store;
    }
    r->rpos += take + (nl ? 1 : 0);
    r->consumed += (int64_t)(take + (nl ? 1 : 0));
    if (nl) {
      got_nl = 1;
      break;
    }
  }
  if (!got_any) return 0;
  r->unterminated = !got_nl;
  if (r->len > 0 && r->line[r->len - 1] == '\r') r->len--;
  r->line[r->len] = '\0';
  r->lineno++;
  return 1;
}

/* ---- CSV ----------------------------------------------------------------------------------- */

int trace_csv_split(char *line, char **fields, int cap) {
  int n = 0;
  char *p = line;
  for (;;) {
    if (n == cap) return -1;
    if (*p == '"') {
      /* Quoted field: unescape in place. */
      char *w = p, *q = p + 1;
      fields[n++] = w;
      for (;;) {
        if (*q == '\0') return -1; /* unterminated quote */
        if (*q == '"') {
          if (q[1] == '"') {
            *w++ = '"';
            q += 2;
            continue;
          }
          q++;
          break;
        }
        *w++ = *q++;
      }
      if (*q != ',' && *q != '\0') return -1; /* text after the closing quote */
      char end = *q;
      *w = '\0';
      if (end == '\0') return n;
      p = q + 1;
    } else {
      fields[n++] = p;
      char *c = strchr(p, ',');
      if (!c) return n;
      *c = '\0';
      p = c + 1;
    }
  }
}

/* ---- numbers ------------------------------------------------------------------------------- */

static const char *trace__skip_spaces(const char *s) {
  while (*s == ' ' || *s == '\t') s++;
  return s;
}

/* Parses digits into *v (unsigned, with overflow check against lim); returns the end pointer or
 * NULL when there is no digit. *ovf is set on overflow. */
static const char *trace__digits(const char *s, uint64_t lim, uint64_t *v, int *ovf) {
  const char *p = s;
  uint64_t acc = 0;
  *ovf = 0;
  while (*p >= '0' && *p <= '9') {
    unsigned d = (unsigned)(*p - '0');
    if (acc > (lim - d) / 10) *ovf = 1;
    else acc = acc * 10 + d;
    p++;
  }
  if (p == s) return NULL;
  *v = acc;
  return p;
}

int trace_parse_i64(const char *s, int64_t *out) {
  s = trace__skip_spaces(s);
  int neg = 0;
  if (*s == '-') {
    neg = 1;
    s++;
  }
  uint64_t v;
  int ovf;
  const char *e = trace__digits(s, neg ? (uint64_t)INT64_MAX + 1u : (uint64_t)INT64_MAX, &v, &ovf);
  if (!e) return KV_EFORMAT;
  e = trace__skip_spaces(e);
  if (*e) return KV_EFORMAT;
  if (ovf) return KV_ERANGE;
  if (neg) *out = v == (uint64_t)INT64_MAX + 1u ? INT64_MIN : -(int64_t)v;
  else *out = (int64_t)v;
  return 0;
}

int trace_parse_count(const char *s, int64_t *out) {
  s = trace__skip_spaces(s);
  uint64_t v;
  int ovf;
  const char *e = trace__digits(s, (uint64_t)INT64_MAX, &v, &ovf);
  if (!e) return KV_EFORMAT;
  if (*e == '.') {
    e++;
    if (*e < '0' || *e > '9') return KV_EFORMAT;
    while (*e == '0') e++;
    if (*e >= '1' && *e <= '9') return KV_EFORMAT; /* a fractional count */
  }
  e = trace__skip_spaces(e);
  if (*e) return KV_EFORMAT;
  if (ovf) return KV_ERANGE;
  *out = (int64_t)v;
  return 0;
}

int trace_parse_u64(const char *s, uint64_t *out) {
  s = trace__skip_spaces(s);
  uint64_t v;
  int ovf;
  const char *e = trace__digits(s, UINT64_MAX, &v, &ovf);
  if (!e) return KV_EFORMAT;
  e = trace__skip_spaces(e);
  if (*e) return KV_EFORMAT;
  if (ovf) return KV_ERANGE;
  *out = v;
  return 0;
}

int trace_parse_fixed(const char *s, int64_t scale, int64_t *out) {
  if (scale <= 0) return KV_EFORMAT;
  s = trace__skip_spaces(s);
  uint64_t ip = 0;
  int ovf = 0;
  const char *e = trace__digits(s, (uint64_t)INT64_MAX, &ip, &ovf);
  int have_int = e != NULL;
  if (!e) e = s;
  int64_t frac = 0;
  int have_frac = 0;
  if (*e == '.') {
    e++;
    int64_t unit = scale;
    while (*e >= '0' && *e <= '9') {
      have_frac = 1;
      if (unit >= 10) {
        unit /= 10;
        frac += (int64_t)(*e - '0') * unit;
      }
      e++;
    }
  }
  if (!have_int && !have_frac) return KV_EFORMAT;
  e = trace__skip_spaces(e);
  if (*e) return KV_EFORMAT;
  if (ovf) return KV_ERANGE;
  int64_t whole;
  if (trace_mul_i64((int64_t)ip, scale, &whole) || trace_add_i64(whole, frac, out)) {
    return KV_ERANGE;
  }
  return 0;
}

/* Exactly n digits at s into *v; 0 or -1. */
static int trace__fixed_digits(const char *s, int n, int *v) {
  int acc = 0;
  for (int i = 0; i < n; i++) {
    if (s[i] < '0' || s[i] > '9') return -1;
    acc = acc * 10 + (s[i] - '0');
  }
  *v = acc;
  return 0;
}

/* Days from 1970-01-01 to y-m-d in the proleptic Gregorian calendar (H. Hinnant's algorithm). */
static int64_t trace__days_from_civil(int64_t y, int m, int d) {
  y -= m <= 2;
  int64_t era = (y >= 0 ? y : y - 399) / 400;
  int64_t yoe = y - era * 400;
  int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + doe - 719468;
}

int trace_parse_datetime_ns(const char *s, int64_t *out) {
  s = trace__skip_spaces(s);
  int y, mo, d, h, mi, se;
  if (trace__fixed_digits(s, 4, &y) || s[4] != '-' || trace__fixed_digits(s + 5, 2, &mo) ||
      s[7] != '-' || trace__fixed_digits(s + 8, 2, &d) || (s[10] != ' ' && s[10] != 'T') ||
      trace__fixed_digits(s + 11, 2, &h) || s[13] != ':' || trace__fixed_digits(s + 14, 2, &mi) ||
      s[16] != ':' || trace__fixed_digits(s + 17, 2, &se)) {
    return KV_EFORMAT;
  }
  static const int mdays[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
  if (mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] + (mo == 2 && leap) || h > 23 || mi > 59 ||
      se > 60) {
    return KV_EFORMAT;
  }
  if (y < 1970 || y > 2261) return KV_ERANGE;
  const char *p = s + 19;
  int64_t frac = 0;
  if (*p == '.') {
    p++;
    int64_t unit = 1000000000;
    if (*p < '0' || *p > '9') return KV_EFORMAT;
    while (*p >= '0' && *p <= '9') {
      if (unit >= 10) {
        unit /= 10;
        frac += (int64_t)(*p - '0') * unit;
      }
      p++;
    }
  }
  int64_t tz = 0;
  if (*p == 'Z') {
    p++;
  } else if (*p == '+' || *p == '-') {
    int th, tm;
    if (trace__fixed_digits(p + 1, 2, &th) || p[3] != ':' || trace__fixed_digits(p + 4, 2, &tm) ||
        th > 23 || tm > 59) {
      return KV_EFORMAT;
    }
    tz = (int64_t)(th * 3600 + tm * 60) * (*p == '+' ? 1 : -1);
    p += 6;
  }
  p = trace__skip_spaces(p);
  if (*p) return KV_EFORMAT;
  int64_t secs = trace__days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + se - tz;
  if (secs < 0) return KV_ERANGE;
  int64_t ns;
  if (trace_mul_i64(secs, 1000000000, &ns) || trace_add_i64(ns, frac, out)) return KV_ERANGE;
  return 0;
}

int trace_mul_i64(int64_t a, int64_t b, int64_t *out) {
  if (__builtin_mul_overflow(a, b, out)) return KV_ERANGE;
  return 0;
}

int trace_add_i64(int64_t a, int64_t b, int64_t *out) {
  if (__builtin_add_overflow(a, b, out)) return KV_ERANGE;
  return 0;
}

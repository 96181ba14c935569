/* trace_text.h — text-input helpers shared by the trace CSV reader and the importers: a bounded
 * line reader that knows line numbers and byte offsets, a CSV field splitter, and strict number
 * parsers that never accept a partial, negative-when-unsigned or overflowing value.
 *
 * Every parser returns 0, KV_EFORMAT (not a number of the expected form) or KV_ERANGE (too
 * large); none of them fills a kv_error, because the caller knows the file:line and the field
 * name to put in the message.
 */
#ifndef TRACE_TEXT_H
#define TRACE_TEXT_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "kv_err.h"

/* ---- line reader --------------------------------------------------------------------------- */

typedef struct trace_lines {
  FILE *f;              /* borrowed; not closed by trace_lines_free */
  const char *name;     /* borrowed; names the stream in messages */
  char *line;           /* current line, NUL-terminated, without "\n" or "\r\n" */
  size_t len;           /* bytes in line */
  size_t cap;
  size_t max_len;       /* lines longer than this are flagged too_long and not stored whole */
  int64_t lineno;       /* 1-based number of the current line */
  int64_t offset;       /* byte offset of the current line's first byte */
  int too_long;         /* the current line exceeded max_len: line holds only its start */
  int has_nul;          /* the current line contains a NUL byte */
  int unterminated;     /* the current line ended at the end of input, without a newline (in a
                           CSV file: the evidence of a file cut short) */
  /* internal read buffer */
  char rbuf[65536];
  size_t rpos, rlen;
  int64_t consumed;     /* bytes consumed from f so far */
  int eof;
} trace_lines;

/* Initialises a reader over `f` (borrowed). max_len 0 means 64 MiB. */
int trace_lines_init(trace_lines *r, FILE *f, const char *name, size_t max_len, kv_error *err);
/* Reads the next line: 1 when a line is available in r->line, 0 at end of input, or a negative
 * status (KV_EIO read error, KV_ENOMEM). A final line without a newline is still a line, with
 * `unterminated` set. */
int trace_lines_next(trace_lines *r, kv_error *err);
void trace_lines_free(trace_lines *r);

/* ---- CSV ----------------------------------------------------------------------------------- */

/* Splits `line` in place into at most `cap` fields (RFC 4180: fields may be double-quoted, ""
 * inside quotes is a quote). Returns the number of fields, or -1 when there are more than cap
 * fields or a quoted field is malformed. Field pointers point into line. */
int trace_csv_split(char *line, char **fields, int cap);

/* ---- numbers ------------------------------------------------------------------------------- */

/* Decimal integer with an optional leading '-', surrounding spaces allowed; nothing else. */
int trace_parse_i64(const char *s, int64_t *out);
/* Non-negative decimal integer; also accepts a fractional part made only of zeros ("472.0"),
 * which spreadsheet and pandas exports produce. "-0" is rejected. */
int trace_parse_count(const char *s, int64_t *out);
/* Unsigned 64-bit decimal integer (hash values). */
int trace_parse_u64(const char *s, uint64_t *out);
/* Non-negative decimal number of units ("12", "12.5", "0.0001") converted exactly (no floating
 * point) to an integer count of 1/scale units, e.g. seconds -> ns with scale 1e9. Digits finer
 * than 1/scale are truncated (documented in docs/trace-format.md). Exponents are rejected. */
int trace_parse_fixed(const char *s, int64_t scale, int64_t *out);
/* Calendar timestamp "YYYY-MM-DD HH:MM:SS[.fraction][Z|+HH:MM|-HH:MM]" (a 'T' may replace the
 * space) in UTC (or the given offset) -> nanoseconds since 1970-01-01T00:00:00Z. Fractions up
 * to 9 digits are exact; further digits are truncated. Years 1970..2261. */
int trace_parse_datetime_ns(const char *s, int64_t *out);

/* ---- checked arithmetic -------------------------------------------------------------------- */

/* *out = a * b, or KV_ERANGE on int64 overflow. */
int trace_mul_i64(int64_t a, int64_t b, int64_t *out);
/* *out = a + b, or KV_ERANGE on int64 overflow. */
int trace_add_i64(int64_t a, int64_t b, int64_t *out);

#endif /* TRACE_TEXT_H */

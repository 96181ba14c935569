/* sim_csv.h — reading the simulator's measured tables: CSV with a header line, '#' comment
 * lines anywhere (the provenance of the measurement), comma-separated fields without quoting.
 *
 * Columns are found by name, so a file may carry more columns than a reader needs and in any
 * order. Every error names the file and line ("gemm.csv:14: column 'us': 'x' is not a
 * number"). Lines are at most SIM_CSV_LINE - 2 bytes; a longer line is an error, never cut.
 *
 * Evidence of damage, as the trace importers have it (traces/trace_import.h): every row ends in
 * a newline, so a header or data row without one is refused as the sign of a file cut short (a
 * '#' or blank last line may lack it); a header naming a column twice, or a column without a
 * name, is refused; a NUL byte in a line is refused; a row's field count must be the header's.
 *
 *   sim_csv r;
 *   if ((rc = sim_csv_open(&r, path, err))) return rc;
 *   int cm;
 *   if ((rc = sim_csv_col(&r, "m", &cm, err))) goto done;
 *   while ((rc = sim_csv_next(&r, err)) == 1) { ... sim_csv_i64(&r, cm, 1, 1 << 30, &m, err) ... }
 *   done: sim_csv_close(&r);      // rc == 0 at the end of the file
 */
#ifndef SIM_CSV_H
#define SIM_CSV_H

#include <stdint.h>
#include <stdio.h>

#include "kv_err.h"

#define SIM_CSV_LINE 8192
#define SIM_CSV_MAX_COLS 64

typedef struct sim_csv {
  FILE *f;
  char path[1024];
  int64_t line;                      /* line number of the current row (1-based) */
  int64_t header_line;
  int unterminated;                  /* the last line read ended without a newline */
  char *lbuf;                        /* getline's buffer */
  size_t lcap;
  int ncol;
  char header[SIM_CSV_LINE];         /* split in place: names point into it */
  char *names[SIM_CSV_MAX_COLS];
  char row[SIM_CSV_LINE];            /* the current row, split in place */
  char *fields[SIM_CSV_MAX_COLS];
} sim_csv;

/* Opens path and reads up to its header (the first line that is neither empty nor '#').
 * KV_EIO when it cannot be opened, KV_EFORMAT when it has no header or a damaged one (above).
 * On error nothing stays open. */
int sim_csv_open(sim_csv *r, const char *path, kv_error *err);
/* Index of the named column; KV_EFORMAT naming the file, the column and the header's line when
 * absent. */
int sim_csv_col(const sim_csv *r, const char *name, int *idx, kv_error *err);
/* Index of the named column, or -1 when absent (optional columns). */
int sim_csv_col_opt(const sim_csv *r, const char *name);
/* Next data row: 1 read, 0 end of file, negative status (a row whose field count differs
 * from the header's, a row without its newline, a line too long or holding a NUL byte, a read
 * error). */
int sim_csv_next(sim_csv *r, kv_error *err);
/* Field idx of the current row as a string (borrowed until the next row). */
const char *sim_csv_str(const sim_csv *r, int idx);
/* Field idx parsed completely as an integer / a finite double within [lo, hi]; an empty field
 * is an error too. */
int sim_csv_i64(const sim_csv *r, int idx, int64_t lo, int64_t hi, int64_t *out, kv_error *err);
int sim_csv_f64(const sim_csv *r, int idx, double lo, double hi, double *out, kv_error *err);
void sim_csv_close(sim_csv *r);

#endif /* SIM_CSV_H */

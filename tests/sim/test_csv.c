/* Tests of the simulator's CSV reader (sim/sim_csv.h) for the damage a file can carry: a row or
 * header cut short (no final newline), a column named twice or without a name, a missing
 * column, a NUL byte, a short row; and what it must still accept (CRLF, '#' and blank lines, a
 * comment as the unterminated last line, columns in any order). */
#include <stdio.h>
#include <string.h>

#include "sim_csv.h"
#include "test.h"

static const char *put(const char *name, const char *text, size_t len) {
  const char *p = test_tmp_path(name);
  FILE *f = fopen(p, "wb");
  if (!f) return NULL;
  fwrite(text, 1, len, f);
  fclose(f);
  return p;
}
#define PUT(name, s) put(name, s, sizeof(s) - 1)

/* Reads every row of columns a and b; returns 0 and the row count, or the first error. */
static int read_all(const char *path, int64_t *rows, kv_error *e) {
  sim_csv r;
  int rc = sim_csv_open(&r, path, e);
  if (rc) return rc;
  int ca, cb;
  if ((rc = sim_csv_col(&r, "a", &ca, e)) || (rc = sim_csv_col(&r, "b", &cb, e))) {
    sim_csv_close(&r);
    return rc;
  }
  *rows = 0;
  while ((rc = sim_csv_next(&r, e)) == 1) {
    int64_t v;
    if ((rc = sim_csv_i64(&r, ca, 0, 100, &v, e))) break;
    ++*rows;
  }
  sim_csv_close(&r);
  return rc;
}

static void expect_error(const char *name, const char *path, const char *want) {
  int64_t rows = 0;
  kv_error e = {0};
  int rc = read_all(path, &rows, &e);
  if (rc != KV_EFORMAT) TEST_FAIL_AT("%s: rc %d (%s)", name, rc, e.msg);
  CHECK_STR_CONTAINS(e.msg, name);
  CHECK_STR_CONTAINS(e.msg, want);
}

static void test_accepted(void) {
  int64_t rows = 0;
  kv_error e = {0};
  /* comments, blank lines, CRLF, extra and reordered columns */
  const char *p = PUT("ok.csv", "# provenance\n\nb,x,a\r\n1,y,2\r\n# mid\n3,z,4\r\n");
  REQUIRE(p);
  REQUIRE_OK(read_all(p, &rows, &e), &e);
  CHECK_EQ_INT(rows, 2);
  /* a comment may be the last line without a newline */
  p = PUT("ok2.csv", "a,b\n1,2\n# end");
  REQUIRE_OK(read_all(p, &rows, &e), &e);
  CHECK_EQ_INT(rows, 1);
  /* a header alone is an empty table */
  p = PUT("ok3.csv", "a,b\n");
  REQUIRE_OK(read_all(p, &rows, &e), &e);
  CHECK_EQ_INT(rows, 0);
}

static void test_damage(void) {
  /* the last row cut short: before, it was read as a whole row */
  expect_error("cut.csv:3", PUT("cut.csv", "a,b\n1,2\n3,4"),
               "the last row has no newline: the file may be cut short");
  /* ... even when the cut leaves a number that parses */
  expect_error("cut2.csv:2", PUT("cut2.csv", "a,b\n1,2"), "the last row has no newline");
  expect_error("cuthead.csv:2", PUT("cuthead.csv", "# c\na,b"), "the header has no newline");
  /* a duplicated column: before, the first was used silently */
  expect_error("dup.csv:1", PUT("dup.csv", "a,b,a\n1,2,3\n"),
               "column 'a' appears twice (columns 1 and 3)");
  expect_error("noname.csv:1", PUT("noname.csv", "a,,b\n1,2,3\n"), "header column 2 has no name");
  expect_error("missing.csv", PUT("missing.csv", "# c\na,c\n1,2\n"),
               "the header has no column 'b' (line 2)");
  expect_error("short.csv:3", PUT("short.csv", "a,b\n1,2\n3\n"), "1 fields, the header has 2");
  static const char nul[] = "a,b\n1,2\n3\0,4\n";
  expect_error("nul.csv:3", put("nul.csv", nul, sizeof nul - 1), "NUL byte");
  expect_error("empty.csv", PUT("empty.csv", "# only\n\n"), "no header line");
  char big[SIM_CSV_LINE + 16];
  memset(big, '1', sizeof big);
  memcpy(big, "a,b\n", 4);
  big[sizeof big - 1] = '\n';
  expect_error("long.csv:2", put("long.csv", big, sizeof big), "line longer than");
}

TEST_LIST = {TEST(test_accepted), TEST(test_damage), {0}};
TEST_MAIN

/* Tests of the trace file format (traces/trace_io.h) and the text helpers (traces/trace_text.h):
 * round trips through HDF5 and CSV, version checks, and malformed files reported with file:line. */
#include <hdf5.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "kv_fs.h"
#include "kv_h5.h"
#include "test.h"
#include "trace_io.h"
#include "trace_text.h"

/* A small trace that exercises every field: two sessions with hashes, an empty session, metadata
 * with characters that need escaping in CSV. */
static void build_sample(trace *t) {
  kv_error e = {0};
  trace_init(t);
  snprintf(t->name, sizeof t->name, "sample, with comma");
  snprintf(t->source, sizeof t->source, "line1\nline2 100%% sure");
  snprintf(t->tokenizer, sizeof t->tokenizer, "gpt2-bpe");
  t->flags = TRACE_FLAG_FULL_HISTORY | TRACE_FLAG_HAS_HASHES;
  t->block_tokens = 4;
  uint64_t h1[3] = {1, 2, 3}, h2[5] = {1, 2, 4, 18446744073709551615ull, 7};
  trace_add_session(t, 42, 1000, &e);
  trace_add_turn(t, 1000, 0, 10, 10, 5, h1, 3, &e);
  trace_add_turn(t, 9000, 7000, 18, 3, 2, h2, 5, &e);
  trace_add_session(t, -7, 1000, &e);
  trace_add_session(t, 8, 5000, &e);
  trace_add_turn(t, 5000, -1, 0, 0, 0, NULL, 0, &e);
}

static void check_same(const trace *a, const trace *b) {
  CHECK(strcmp(a->name, b->name) == 0);
  CHECK(strcmp(a->source, b->source) == 0);
  CHECK(strcmp(a->tokenizer, b->tokenizer) == 0);
  CHECK_EQ_INT(a->flags, b->flags);
  CHECK_EQ_INT(a->block_tokens, b->block_tokens);
  REQUIRE_EQ_INT(a->n_sessions, b->n_sessions);
  REQUIRE_EQ_INT(a->n_turns, b->n_turns);
  REQUIRE_EQ_INT(a->n_hashes, b->n_hashes);
  for (int64_t i = 0; i < a->n_sessions; i++) {
    CHECK_EQ_INT(a->sessions[i].id, b->sessions[i].id);
    CHECK_EQ_INT(a->sessions[i].arrival_ns, b->sessions[i].arrival_ns);
    CHECK_EQ_INT(a->sessions[i].first_turn, b->sessions[i].first_turn);
    CHECK_EQ_INT(a->sessions[i].n_turns, b->sessions[i].n_turns);
  }
  for (int64_t i = 0; i < a->n_turns; i++) {
    CHECK(memcmp(&a->turns[i], &b->turns[i], sizeof a->turns[i]) == 0);
  }
  for (int64_t i = 0; i < a->n_hashes; i++) CHECK(a->hashes[i] == b->hashes[i]);
}

static void test_h5_round_trip(void) {
  trace a, b;
  kv_error e = {0};
  build_sample(&a);
  REQUIRE_OK(trace_check(&a, &e), &e);
  const char *p = test_tmp_path("rt.h5");
  REQUIRE_OK(trace_write(p, &a, &e), &e);
  REQUIRE_OK(trace_read(p, &b, &e), &e);
  check_same(&a, &b);
  trace_free(&b);
  REQUIRE_OK(trace_read_h5(p, &b, &e), &e);
  check_same(&a, &b);
  trace_free(&a);
  trace_free(&b);
  remove(p);
}

static void test_csv_round_trip(void) {
  trace a, b, c;
  kv_error e = {0};
  build_sample(&a);
  const char *p = test_tmp_path("rt.csv");
  REQUIRE_OK(trace_write_csv(p, &a, &e), &e);
  REQUIRE_OK(trace_read(p, &b, &e), &e);
  check_same(&a, &b);
  /* CSV -> HDF5 -> CSV gives the same bytes */
  const char *p2 = test_tmp_path("rt2.h5"), *p3 = test_tmp_path("rt3.csv");
  REQUIRE_OK(trace_write(p2, &b, &e), &e);
  REQUIRE_OK(trace_read(p2, &c, &e), &e);
  REQUIRE_OK(trace_write_csv(p3, &c, &e), &e);
  char *x = NULL, *y = NULL;
  size_t nx = 0, ny = 0;
  REQUIRE_OK(kv_read_file(p, &x, &nx, &e), &e);
  REQUIRE_OK(kv_read_file(p3, &y, &ny, &e), &e);
  CHECK(nx == ny && memcmp(x, y, nx) == 0);
  /* the documented row for an empty session and the hash list */
  CHECK_STR_CONTAINS(x, "\n-7,1000,,,,,,,\n");
  CHECK_STR_CONTAINS(x, "42,1000,1,9000,7000,18,3,2,1 2 4 18446744073709551615 7\n");
  CHECK_STR_CONTAINS(x, "# source: line1%0Aline2 100%25 sure\n");
  free(x);
  free(y);
  trace_free(&a);
  trace_free(&b);
  trace_free(&c);
  remove(p);
  remove(p2);
  remove(p3);
}

static void test_empty_trace(void) {
  trace a, b;
  kv_error e = {0};
  trace_init(&a);
  const char *p = test_tmp_path("empty.h5"), *q = test_tmp_path("empty.csv");
  REQUIRE_OK(trace_write(p, &a, &e), &e);
  REQUIRE_OK(trace_read(p, &b, &e), &e);
  CHECK_EQ_INT(b.n_sessions, 0);
  trace_free(&b);
  REQUIRE_OK(trace_write_csv(q, &a, &e), &e);
  REQUIRE_OK(trace_read(q, &b, &e), &e);
  CHECK_EQ_INT(b.n_turns, 0);
  trace_free(&b);
  remove(p);
  remove(q);
}

/* Reads CSV text and expects failure with a message containing `want`. */
static void expect_csv_error(const char *text, int code, const char *want) {
  FILE *f = fmemopen((void *)text, strlen(text), "r");
  REQUIRE(f);
  trace t;
  kv_error e = {0};
  int rc = trace_read_csv_stream(f, "bad.csv", &t, &e);
  fclose(f);
  if (rc != code) TEST_FAIL_AT("expected %d, got %d (%s) for: %s", code, rc, e.msg, text);
  CHECK_STR_CONTAINS(e.msg, want);
  CHECK_EQ_INT(t.n_sessions, 0);
}

#define HDR "# kvlab-trace-csv 1\n# flags: 0\n# block_tokens: 0\n"                              \
            "session_id,session_arrival_ns,turn,arrival_ns,think_ns,input_tokens,new_tokens,"   \
            "output_tokens,hashes\n"

static void test_csv_errors(void) {
  expect_csv_error("", KV_EFORMAT, "no header");
  expect_csv_error("hello\n", KV_EFORMAT, "bad.csv:1: not a kvlab trace CSV");
  expect_csv_error("# kvlab-trace-csv 2\n", KV_ENOTSUP, "version 2");
  expect_csv_error(HDR "1,0,0,0,0,5,5,x,\n", KV_EFORMAT, "bad.csv:5: output_tokens 'x'");
  expect_csv_error(HDR "1,0,0,0,0,5,5,1\n", KV_EFORMAT, "bad.csv:5: expected 9 fields, found 8");
  expect_csv_error(HDR "1,0,0,0,0,-5,0,1,\n", KV_ERANGE, "bad.csv:5: session 1 turn 0: negative");
  expect_csv_error(HDR "1,0,0,0,0,5,5,1,\n1,0,2,0,0,5,5,1,\n", KV_EFORMAT,
                   "bad.csv:6: turn 2 of session 1 does not follow turn 0");
  expect_csv_error(HDR "1,10,0,10,0,5,5,1,\n2,5,0,5,0,5,5,1,\n", KV_ERANGE,
                   "bad.csv:6: session 2: arrival 5 ns is before");
  expect_csv_error(HDR "1,0,0,0,0,99999999999,5,1,\n", KV_ERANGE, "exceeds 2^31-1");
  expect_csv_error(HDR "1,0,0,0,0,5,5,1,12 x\n", KV_EFORMAT, "bad.csv:5: bad hash list");
  expect_csv_error(HDR "1,0,0,0,0,5,5,1,1 2 3\n", KV_EFORMAT, "hashes without block size");
  expect_csv_error(HDR "1,0,0,0,0,5,5,1,99999999999999999999\n", KV_EFORMAT, "bad hash list");
  expect_csv_error(HDR "1,0,0,5,0,5,5,1,\n", KV_EFORMAT, "inconsistent with the session");
  expect_csv_error("# kvlab-trace-csv 1\n# flags: -1\n", KV_EFORMAT, "bad.csv:2: flags");
  expect_csv_error("# kvlab-trace-csv 1\n# name: %G1\n", KV_EFORMAT, "bad.csv:2: bad %-escape");
  /* cut short: inside the last row (every field still present), or at a row boundary */
  expect_csv_error(HDR "1,0,0,0,0,5,5,1,1\n1,0,1,0,0,7,1,1,1 2", KV_EFORMAT,
                   "bad.csv:6: the last line has no newline");
  expect_csv_error(HDR "1,0,0,0,0,5,5,1,", KV_EFORMAT, "bad.csv:5: the last line has no newline");
  expect_csv_error("# kvlab-trace-csv 1\n# sessions: 2\n# turns: 3\n"
                   "session_id,session_arrival_ns,turn,arrival_ns,think_ns,input_tokens,new_tokens,"
                   "output_tokens,hashes\n1,0,0,0,0,5,5,1,\n1,0,1,0,0,7,1,1,\n", KV_EFORMAT,
                   "declares 2 sessions and 3 turns, the rows hold 1 and 2");
  expect_csv_error("# kvlab-trace-csv 1\n# turns: x\n", KV_EFORMAT, "bad.csv:2: turns 'x'");
  /* comments after the header are ignored; a valid continuation row is accepted */
  static const char ok[] = HDR "1,0,0,0,0,5,5,1,\n# note\n1,0,1,0,0,7,1,1,\n";
  FILE *f = fmemopen((void *)ok, sizeof ok - 1, "r");
  trace t;
  kv_error e = {0};
  CHECK_OK(trace_read_csv_stream(f, "ok.csv", &t, &e), &e);
  CHECK_EQ_INT(t.n_turns, 2);
  trace_free(&t);
  fclose(f);
}

static void test_h5_errors(void) {
  trace t;
  kv_error e = {0};
  const char *p = test_tmp_path("notrace.h5");
  /* a file that is not HDF5 and not a CSV trace */
  FILE *f = fopen(p, "w");
  REQUIRE(f);
  fputs("garbage", f);
  fclose(f);
  CHECK(trace_read(p, &t, &e) == KV_EFORMAT);
  CHECK_STR_CONTAINS(e.msg, "not a kvlab trace CSV");
  CHECK(trace_read_h5(p, &t, &e) == KV_EFORMAT);
  CHECK_STR_CONTAINS(e.msg, "not an HDF5 file");
  CHECK(trace_read("/nonexistent/x.h5", &t, &e) == KV_EIO);
  /* a newer version is refused */
  trace a;
  build_sample(&a);
  REQUIRE_OK(trace_write(p, &a, &e), &e);
  hid_t h = H5Fopen(p, H5F_ACC_RDWR, H5P_DEFAULT);
  REQUIRE(h >= 0);
  REQUIRE_OK(kv_h5_attr_write_i64(h, "format_version", 99, p, &e), &e);
  H5Fclose(h);
  CHECK(trace_read(p, &t, &e) == KV_ENOTSUP);
  CHECK_STR_CONTAINS(e.msg, "version 99");
  /* an inconsistent file (a turn's back-reference broken) is refused by the check */
  REQUIRE_OK(trace_write(p, &a, &e), &e);
  h = H5Fopen(p, H5F_ACC_RDWR, H5P_DEFAULT);
  REQUIRE(h >= 0);
  hid_t d = H5Dopen2(h, "turns/index", H5P_DEFAULT);
  int32_t idx[3] = {0, 0, 0};
  H5Dwrite(d, H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, idx);
  H5Dclose(d);
  H5Fclose(h);
  CHECK(trace_read(p, &t, &e) == KV_EFORMAT);
  CHECK_STR_CONTAINS(e.msg, "session 42 turn 1: wrong back-reference");
  /* a missing dataset is named */
  REQUIRE_OK(trace_write(p, &a, &e), &e);
  h = H5Fopen(p, H5F_ACC_RDWR, H5P_DEFAULT);
  H5Ldelete(h, "turns/think_ns", H5P_DEFAULT);
  H5Fclose(h);
  CHECK(trace_read(p, &t, &e) == KV_ENOENT);
  CHECK_STR_CONTAINS(e.msg, "/turns/think_ns: missing dataset");
  /* an invalid trace is not written, and an existing file survives */
  a.turns[0].new_tokens = 99;
  CHECK(trace_write(p, &a, &e) == KV_EFORMAT);
  CHECK_STR_CONTAINS(e.msg, "refusing to write an invalid trace");
  trace_free(&a);
  remove(p);
}

/* Offset of the first occurrence of pat[0..n) in buf[0..len), or -1. */
static long find_bytes(const unsigned char *buf, long len, const void *pat, size_t n) {
  for (long i = 0; i + (long)n <= len; i++) {
    if (memcmp(buf + i, pat, n) == 0) return i;
  }
  return -1;
}

static unsigned char *slurp(const char *p, long *len) {
  char *b;
  size_t n;
  kv_error e = {0};
  if (kv_read_file(p, &b, &n, &e)) return NULL;
  *len = (long)n;
  return (unsigned char *)b;
}

static void spill(const char *p, const unsigned char *b, long len) {
  remove(p); /* a new file, not a truncated one (ext4 flushes those on close) */
  FILE *f = fopen(p, "wb");
  if (f) {
    fwrite(b, 1, (size_t)len, f);
    fclose(f);
  }
}

/* 1 when a and b hold the same trace. */
static int same_trace(const trace *a, const trace *b) {
  if (strcmp(a->name, b->name) || strcmp(a->source, b->source) ||
      strcmp(a->tokenizer, b->tokenizer) || a->flags != b->flags ||
      a->block_tokens != b->block_tokens || a->n_sessions != b->n_sessions ||
      a->n_turns != b->n_turns || a->n_hashes != b->n_hashes) {
    return 0;
  }
  for (int64_t i = 0; i < a->n_sessions; i++) {
    const trace_session *x = &a->sessions[i], *y = &b->sessions[i];
    if (x->id != y->id || x->arrival_ns != y->arrival_ns || x->first_turn != y->first_turn ||
        x->n_turns != y->n_turns) {
      return 0;
    }
  }
  if (a->n_turns && memcmp(a->turns, b->turns, (size_t)a->n_turns * sizeof *a->turns)) return 0;
  return !a->n_hashes || !memcmp(a->hashes, b->hashes, (size_t)a->n_hashes * 8);
}

/* HDF5 traces carry their own evidence: every dataset is chunked with a Fletcher32 checksum,
 * the metadata (HDF5 >= 1.10 format) carry checksums, and a damaged byte is reported with the
 * file and the dataset. */
static void test_h5_checksums(void) {
  kv_error e = {0};
  trace a, t;
  trace_init(&a);
  snprintf(a.name, sizeof a.name, "checksums");
  a.flags = TRACE_FLAG_HAS_HASHES;
  a.block_tokens = 16;
  /* distinctive values, so that their bytes can be found in the file */
  uint64_t h[4] = {0x4b564c4142000001ull, 0x4b564c4142000002ull, 0x4b564c4142000003ull,
                   0x4b564c4142000004ull};
  uint64_t h2[4] = {0x4b564c4142000011ull, 0x4b564c4142000012ull, 0x4b564c4142000013ull,
                    0x4b564c4142000014ull};
  trace_add_session(&a, 1, 0, &e);
  trace_add_turn(&a, 0, 0, 50 + 0x01230000, 5, 7, h, 4, &e);
  trace_add_session(&a, 2, 10, &e);
  trace_add_turn(&a, 10, 0, 60 + 0x01230000, 6, 8, h2, 4, &e);
  REQUIRE_OK(trace_check(&a, &e), &e);
  const char *p = test_tmp_path("checksums.h5"), *q = test_tmp_path("checksums-bad.h5");
  REQUIRE_OK(trace_write(p, &a, &e), &e);
  /* the datasets are chunked with the Fletcher32 filter */
  hid_t f = H5Fopen(p, H5F_ACC_RDONLY, H5P_DEFAULT);
  REQUIRE(f >= 0);
  const char *names[] = {"hashes", "turns/input_tokens", "sessions/id"};
  for (int i = 0; i < 3; i++) {
    hid_t d = H5Dopen2(f, names[i], H5P_DEFAULT);
    hid_t dcpl = H5Dget_create_plist(d);
    unsigned flags;
    size_t nelm = 0;
    CHECK(H5Pget_layout(dcpl) == H5D_CHUNKED);
    CHECK(H5Pget_filter_by_id2(dcpl, H5Z_FILTER_FLETCHER32, &flags, &nelm, NULL, 0, NULL,
                               NULL) >= 0);
    H5Pclose(dcpl);
    H5Dclose(d);
  }
  H5Fclose(f);
  long len;
  unsigned char *buf = slurp(p, &len);
  REQUIRE(buf);
  /* a flipped byte in /hashes and in /turns/input_tokens: named, and the file's name too */
  struct {
    const void *pat;
    size_t n;
    const char *dataset;
  } cases[] = {{&h[2], 8, ": /hashes"}, {&a.turns[1].input_tokens, 4, ": /turns/input_tokens"}};
  for (int c = 0; c < 2; c++) {
    long at = find_bytes(buf, len, cases[c].pat, cases[c].n);
    REQUIRE(at > 0);
    REQUIRE(find_bytes(buf + at + 1, len - at - 1, cases[c].pat, cases[c].n) < 0);
    buf[at + 1] ^= 0x04;
    spill(q, buf, len);
    buf[at + 1] ^= 0x04;
    memset(&e, 0, sizeof e);
    CHECK_EQ_INT(trace_read(q, &t, &e), KV_EFORMAT);
    CHECK_STR_CONTAINS(e.msg, q);
    CHECK_STR_CONTAINS(e.msg, cases[c].dataset);
    CHECK_STR_CONTAINS(e.msg, "checksum");
  }
  /* Every 5th byte of the file flipped in turn: each read fails or gives back the same trace
   * (bytes HDF5 does not use); none gives a different trace. */
  int errors = 0, same = 0, different = 0;
  for (long i = 0; i < len; i += 5) {
    buf[i] ^= 0x10;
    spill(q, buf, len);
    buf[i] ^= 0x10;
    if (trace_read(q, &t, &e) != 0) {
      errors++;
      continue;
    }
    if (same_trace(&a, &t)) same++;
    else {
      different++;
      if (different < 4) TEST_FAIL_AT("a flip at byte %ld gave a different trace", i);
    }
    trace_free(&t);
  }
  CHECK_EQ_INT(different, 0);
  CHECK(errors > (errors + same) / 2);
  /* The same trace written again in a later second gives the same bytes: the HDF5 1.10 format
   * would store object times in every header unless they are switched off. */
  struct timespec pause = {1, 100000000};
  nanosleep(&pause, NULL);
  REQUIRE_OK(trace_write(q, &a, &e), &e);
  long len2;
  unsigned char *again = slurp(q, &len2);
  REQUIRE(again);
  CHECK(len2 == len && memcmp(again, buf, (size_t)len) == 0);
  free(again);
  printf("  %ld bytes, %d flips: %d refused, %d read back unchanged, %d different\n", len,
         errors + same + different, errors, same, different);
  free(buf);
  trace_free(&a);
  remove(p);
  remove(q);
}

static void test_text_numbers(void) {
  int64_t v;
  uint64_t u;
  CHECK(trace_parse_i64(" 12 ", &v) == 0 && v == 12);
  CHECK(trace_parse_i64("-9223372036854775808", &v) == 0 && v == INT64_MIN);
  CHECK(trace_parse_i64("9223372036854775808", &v) == KV_ERANGE);
  CHECK(trace_parse_i64("12a", &v) == KV_EFORMAT);
  CHECK(trace_parse_i64("", &v) == KV_EFORMAT);
  CHECK(trace_parse_i64("-", &v) == KV_EFORMAT);
  CHECK(trace_parse_count("472.0", &v) == 0 && v == 472);
  CHECK(trace_parse_count("472.5", &v) == KV_EFORMAT);
  CHECK(trace_parse_count("-1", &v) == KV_EFORMAT);
  CHECK(trace_parse_count("1e3", &v) == KV_EFORMAT);
  CHECK(trace_parse_count("472.", &v) == KV_EFORMAT);
  CHECK(trace_parse_u64("18446744073709551615", &u) == 0 && u == UINT64_MAX);
  CHECK(trace_parse_u64("18446744073709551616", &u) == KV_ERANGE);
  CHECK(trace_parse_fixed("19440110.25", 1000000000, &v) == 0 && v == 19440110250000000LL);
  CHECK(trace_parse_fixed(".5", 1000, &v) == 0 && v == 500);
  CHECK(trace_parse_fixed("1.0009", 1000, &v) == 0 && v == 1000); /* sub-unit digits dropped */
  CHECK(trace_parse_fixed("9300000000.0", 1000000000, &v) == KV_ERANGE);
  CHECK(trace_parse_fixed("1e5", 1000, &v) == KV_EFORMAT);
  CHECK(trace_parse_fixed(".", 1000, &v) == KV_EFORMAT);
  /* reference values from `date -u -d "..." +%s` */
  CHECK(trace_parse_datetime_ns("2023-11-16 18:15:46.6805900", &v) == 0);
  CHECK_EQ_INT(v, 1700158546LL * 1000000000 + 680590000);
  CHECK(trace_parse_datetime_ns("2000-02-29T23:59:59Z", &v) == 0 && v == 951868799LL * 1000000000);
  CHECK(trace_parse_datetime_ns("2000-03-01 01:59:59+02:00", &v) == 0 &&
        v == 951868799LL * 1000000000);
  CHECK(trace_parse_datetime_ns("2261-12-31 23:59:59.999999999", &v) == 0 &&
        v == 9214646399LL * 1000000000 + 999999999);
  CHECK(trace_parse_datetime_ns("2023-02-29 00:00:00", &v) == KV_EFORMAT);
  CHECK(trace_parse_datetime_ns("2023-11-16 24:00:00", &v) == KV_EFORMAT);
  CHECK(trace_parse_datetime_ns("2023-11-16 18:15", &v) == KV_EFORMAT);
  CHECK(trace_parse_datetime_ns("1969-12-31 23:59:59", &v) == KV_ERANGE);
  CHECK(trace_parse_datetime_ns("2023-11-16 18:15:46.", &v) == KV_EFORMAT);
  int64_t r;
  CHECK(trace_mul_i64(INT64_MAX / 2 + 1, 2, &r) == KV_ERANGE);
  CHECK(trace_add_i64(INT64_MAX, 1, &r) == KV_ERANGE);
}

static void test_text_csv_and_lines(void) {
  char line[] = "a,\"b,\"\"c\"\"\",,d";
  char *f[8];
  CHECK_EQ_INT(trace_csv_split(line, f, 8), 4);
  CHECK(strcmp(f[1], "b,\"c\"") == 0 && f[2][0] == '\0' && strcmp(f[3], "d") == 0);
  char bad[] = "\"open,x";
  CHECK_EQ_INT(trace_csv_split(bad, f, 8), -1);
  char bad2[] = "\"x\"y,1";
  CHECK_EQ_INT(trace_csv_split(bad2, f, 8), -1);
  char many[] = "1,2,3";
  CHECK_EQ_INT(trace_csv_split(many, f, 2), -1);
  /* CRLF, a final line without newline, an over-long line, a NUL byte; offsets */
  static const char text[] = "ab\r\n0123456789\nx\0y\nlast";
  FILE *fp = fmemopen((void *)text, sizeof text - 1, "r");
  trace_lines r;
  kv_error e = {0};
  REQUIRE_OK(trace_lines_init(&r, fp, "t", 5, &e), &e);
  CHECK(trace_lines_next(&r, &e) == 1 && strcmp(r.line, "ab") == 0 && r.lineno == 1);
  CHECK(trace_lines_next(&r, &e) == 1 && r.too_long && r.offset == 4 && r.lineno == 2);
  CHECK(trace_lines_next(&r, &e) == 1 && r.has_nul && r.offset == 15);
  CHECK(trace_lines_next(&r, &e) == 1 && strcmp(r.line, "last") == 0 && r.lineno == 4);
  CHECK(trace_lines_next(&r, &e) == 0);
  trace_lines_free(&r);
  fclose(fp);
}

TEST_LIST = {TEST(test_h5_round_trip), TEST(test_csv_round_trip), TEST(test_empty_trace),
             TEST(test_csv_errors), TEST(test_h5_errors), TEST(test_h5_checksums), TEST(test_text_numbers),
             TEST(test_text_csv_and_lines), {0}};
TEST_MAIN

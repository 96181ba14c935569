/* fuzz_common.h — shared by the libFuzzer targets in traces/fuzz (built with -DKVLAB_FUZZ=ON and
 * clang; see docs/trace-format.md, "Fuzzing"). Each target feeds the input to one parser in both
 * bad-record modes and aborts when a successful parse returns a trace that fails trace_check():
 * a parser may reject input, but must never crash, leak, or accept an inconsistent value. */
#ifndef FUZZ_COMMON_H
#define FUZZ_COMMON_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "trace.h"

/* A read-only stream over the fuzzer's bytes (fmemopen refuses size 0: /dev/null instead). */
static inline FILE *fuzz_stream(const uint8_t *data, size_t size) {
  if (size == 0) return fopen("/dev/null", "rb");
  return fmemopen((void *)data, size, "rb");
}

/* 1 when a CSV parse that refuses unterminated rows may succeed on these bytes: the input ends
 * in a newline, or what follows the last newline is blank ("" or "\r"), or no non-blank line
 * precedes it (it is the header). */
static inline int fuzz_csv_tail_ok(const uint8_t *data, size_t size) {
  size_t last = size;
  while (last > 0 && data[last - 1] != '\n') last--;
  size_t tail = size - last;
  if (tail == 0 || (tail == 1 && data[size - 1] == '\r')) return 1;
  for (size_t i = 0; i < last; i++) {
    if (data[i] != '\n' && data[i] != '\r') return 0; /* a non-blank line before the tail */
  }
  return 1;
}

/* Two successful parses of the same input with different leniency must agree. */
static inline void fuzz_expect_same(const trace *a, const trace *b, const char *what) {
  if (a->n_sessions != b->n_sessions || a->n_turns != b->n_turns ||
      a->n_hashes != b->n_hashes ||
      (a->n_turns && memcmp(a->turns, b->turns, (size_t)a->n_turns * sizeof *a->turns)) ||
      (a->n_hashes && memcmp(a->hashes, b->hashes, (size_t)a->n_hashes * sizeof *a->hashes))) {
    fprintf(stderr, "%s: the two parses disagree\n", what);
    abort();
  }
}

static inline void fuzz_expect_valid(const trace *t) {
  kv_error e = {0};
  if (trace_check(t, &e) != 0) {
    fprintf(stderr, "parser returned an invalid trace: %s\n", e.msg);
    abort();
  }
}

#endif /* FUZZ_COMMON_H */

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

static inline void fuzz_expect_valid(const trace *t) {
  kv_error e = {0};
  if (trace_check(t, &e) != 0) {
    fprintf(stderr, "parser returned an invalid trace: %s\n", e.msg);
    abort();
  }
}

#endif /* FUZZ_COMMON_H */

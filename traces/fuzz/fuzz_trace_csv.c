/* libFuzzer target: the trace CSV reader (traces/trace_io.h). A trace that reads must come from
 * an input that ends in a newline (a cut file is refused), and must write and read back to the
 * same content. */
#include "fuzz_common.h"
#include "trace_io.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  FILE *f = fuzz_stream(data, size);
  if (!f) return 0;
  trace t;
  kv_error e = {0};
  if (trace_read_csv_stream(f, "fuzz.csv", &t, &e) == 0) {
    fuzz_expect_valid(&t);
    if (size == 0 || data[size - 1] != '\n') {
      fprintf(stderr, "an input without a final newline was accepted\n");
      abort();
    }
    char *buf = NULL;
    size_t len = 0;
    FILE *w = open_memstream(&buf, &len);
    if (w && trace_write_csv_stream(w, &t, &e) == 0) {
      fclose(w);
      w = NULL;
      FILE *r = fuzz_stream((const uint8_t *)buf, len);
      trace u;
      if (!r || trace_read_csv_stream(r, "again.csv", &u, &e) != 0 || u.n_turns != t.n_turns ||
          u.n_sessions != t.n_sessions || u.n_hashes != t.n_hashes ||
          (t.n_turns && memcmp(u.turns, t.turns, (size_t)t.n_turns * sizeof *t.turns)) ||
          (t.n_hashes && memcmp(u.hashes, t.hashes, (size_t)t.n_hashes * sizeof *t.hashes))) {
        fprintf(stderr, "CSV round trip changed the trace: %s\n", e.msg);
        abort();
      }
      trace_free(&u);
      fclose(r);
    }
    if (w) fclose(w);
    free(buf);
    trace_free(&t);
  }
  fclose(f);
  return 0;
}

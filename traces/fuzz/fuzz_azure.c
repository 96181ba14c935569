/* libFuzzer target: the Azure CSV importer (traces/import_azure.h), in both bad-record modes.
 * A strict parse (a last row without a newline refused) may succeed only when the input's tail
 * allows it, and must then equal the lenient parse (allow_unterminated). */
#include "fuzz_common.h"
#include "import_azure.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int parse(const uint8_t *data, size_t size, int mode, int lenient, trace *t) {
  FILE *f = fuzz_stream(data, size);
  if (!f) return -1;
  trace_import_opts o;
  trace_import_opts_init(&o);
  o.on_bad = mode ? TRACE_ON_BAD_SKIP : TRACE_ON_BAD_STOP;
  o.allow_unterminated = lenient;
  kv_error e = {0};
  int rc = trace_import_azure_stream(f, "fuzz.csv", &o, t, NULL, &e);
  fclose(f);
  if (rc == 0) fuzz_expect_valid(t);
  return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  for (int mode = 0; mode < 2; mode++) {
    trace strict, lenient;
    int rs = parse(data, size, mode, 0, &strict);
    int rl = parse(data, size, mode, 1, &lenient);
    if (rs == 0 && mode == 0) {
      if (!fuzz_csv_tail_ok(data, size)) {
        fprintf(stderr, "a last row without a newline was accepted\n");
        abort();
      }
      if (rl != 0) abort(); /* lenient refuses what strict accepts */
      fuzz_expect_same(&strict, &lenient, "azure strict vs lenient");
    }
    if (rs == 0) trace_free(&strict);
    if (rl == 0) trace_free(&lenient);
  }
  return 0;
}

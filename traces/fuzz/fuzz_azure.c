/* libFuzzer target: the Azure CSV importer (traces/import_azure.h). */
#include "fuzz_common.h"
#include "import_azure.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  for (int mode = 0; mode < 2; mode++) {
    FILE *f = fuzz_stream(data, size);
    if (!f) return 0;
    trace_import_opts o;
    trace_import_opts_init(&o);
    o.on_bad = mode ? TRACE_ON_BAD_SKIP : TRACE_ON_BAD_STOP;
    trace t;
    kv_error e = {0};
    if (trace_import_azure_stream(f, "fuzz.csv", &o, &t, NULL, &e) == 0) {
      fuzz_expect_valid(&t);
      trace_free(&t);
    }
    fclose(f);
  }
  return 0;
}

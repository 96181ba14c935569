/* libFuzzer target: the BurstGPT CSV importer (traces/import_burstgpt.h); the first input byte
 * picks the options (history, log filter, drop-failed). */
#include "fuzz_common.h"
#include "import_burstgpt.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size == 0) return 0;
  uint8_t sel = data[0];
  for (int mode = 0; mode < 2; mode++) {
    FILE *f = fuzz_stream(data + 1, size - 1);
    if (!f) return 0;
    trace_burstgpt_opts o;
    trace_burstgpt_opts_init(&o);
    o.base.on_bad = mode ? TRACE_ON_BAD_SKIP : TRACE_ON_BAD_STOP;
    o.history = (sel & 1) ? TRACE_BURSTGPT_HISTORY_PREV : TRACE_BURSTGPT_HISTORY_NONE;
    o.log_type = (trace_burstgpt_log)((sel >> 1) % 3);
    o.drop_failed = (sel >> 3) & 1;
    o.model = (sel >> 4) & 1 ? "GPT-4" : NULL;
    trace t;
    kv_error e = {0};
    if (trace_import_burstgpt_stream(f, "fuzz.csv", &o, &t, NULL, &e) == 0) {
      fuzz_expect_valid(&t);
      trace_free(&t);
    }
    fclose(f);
  }
  return 0;
}

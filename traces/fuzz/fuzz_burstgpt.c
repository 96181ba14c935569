/* libFuzzer target: the BurstGPT CSV importer (traces/import_burstgpt.h); the first input byte
 * picks the options (history, log filter, drop-failed). As for Azure: a strict parse succeeds
 * only when the input's tail allows it, and then equals the lenient one (allow_unterminated). */
#include "fuzz_common.h"
#include "import_burstgpt.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int parse(const uint8_t *data, size_t size, uint8_t sel, int mode, int lenient, trace *t) {
  FILE *f = fuzz_stream(data, size);
  if (!f) return -1;
  trace_burstgpt_opts o;
  trace_burstgpt_opts_init(&o);
  o.base.on_bad = mode ? TRACE_ON_BAD_SKIP : TRACE_ON_BAD_STOP;
  o.base.allow_unterminated = lenient;
  o.history = (sel & 1) ? TRACE_BURSTGPT_HISTORY_PREV : TRACE_BURSTGPT_HISTORY_NONE;
  o.log_type = (trace_burstgpt_log)((sel >> 1) % 3);
  o.drop_failed = (sel >> 3) & 1;
  o.model = (sel >> 4) & 1 ? "GPT-4" : NULL;
  kv_error e = {0};
  int rc = trace_import_burstgpt_stream(f, "fuzz.csv", &o, t, NULL, &e);
  fclose(f);
  if (rc == 0) fuzz_expect_valid(t);
  return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size == 0) return 0;
  uint8_t sel = data[0];
  data++;
  size--;
  for (int mode = 0; mode < 2; mode++) {
    trace strict, lenient;
    int rs = parse(data, size, sel, mode, 0, &strict);
    int rl = parse(data, size, sel, mode, 1, &lenient);
    if (rs == 0 && mode == 0) {
      if (!fuzz_csv_tail_ok(data, size)) {
        fprintf(stderr, "a last row without a newline was accepted\n");
        abort();
      }
      if (rl != 0) abort();
      fuzz_expect_same(&strict, &lenient, "burstgpt strict vs lenient");
    }
    if (rs == 0) trace_free(&strict);
    if (rl == 0) trace_free(&lenient);
  }
  return 0;
}

/* libFuzzer target: the Mooncake JSONL importer (traces/import_mooncake.h); the first input byte
 * picks block_tokens and min_shared_blocks so that session inference is exercised on small
 * inputs. */
#include "fuzz_common.h"
#include "import_mooncake.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size == 0) return 0;
  uint8_t sel = data[0];
  for (int mode = 0; mode < 2; mode++) {
    FILE *f = fuzz_stream(data + 1, size - 1);
    if (!f) return 0;
    trace_mooncake_opts o;
    trace_mooncake_opts_init(&o);
    o.base.on_bad = mode ? TRACE_ON_BAD_SKIP : TRACE_ON_BAD_STOP;
    o.block_tokens = (sel & 3) == 0 ? 512 : 1 << (sel & 3);
    o.min_shared_blocks = (sel >> 2) & 3;
    trace t;
    kv_error e = {0};
    if (trace_import_mooncake_stream(f, "fuzz.jsonl", &o, &t, NULL, &e) == 0) {
      fuzz_expect_valid(&t);
      trace_free(&t);
    }
    fclose(f);
  }
  return 0;
}

/* libFuzzer target: loading tokenizer files (traces/tokenizer.h). The input is split at its
 * first NUL byte into an encoder.json part and a vocab.bpe part; the whole input is also loaded
 * as a Hugging Face tokenizer.json. A vocabulary that loads must encode and decode a fixed text
 * exactly. */
#include "fuzz_common.h"
#include "tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Encodes and decodes a fixed text; aborts unless it comes back exactly. Frees t. */
static void fuzz__round_trip(trace_tok *t) {
  static const char text[] = "the fuzzer's text: 123 \xc3\xa9\n\n  x";
  int32_t *ids = NULL;
  int64_t n = 0, cap = 0;
  char *back = NULL;
  size_t len = 0;
  kv_error e = {0};
  if (trace_tok_encode(t, text, sizeof text - 1, &ids, &n, &cap, &e) != 0 ||
      trace_tok_decode(t, ids, n, &back, &len, &e) != 0 || len != sizeof text - 1 ||
      memcmp(back, text, len) != 0) {
    abort();
  }
  free(ids);
  free(back);
  trace_tok_free(t);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const uint8_t *nul = memchr(data, 0, size);
  size_t a = nul ? (size_t)(nul - data) : size;
  const char *mer = nul ? (const char *)nul + 1 : "";
  size_t b = nul ? size - a - 1 : 0;
  trace_tok *t = NULL;
  kv_error e = {0};
  if (trace_tok_load_mem((const char *)data, a, "f.json", mer, b, "f.bpe", &t, &e) == 0) {
    fuzz__round_trip(t);
  }
  if (trace_tok_load_hf_mem((const char *)data, size, "tokenizer.json", &t, &e) == 0) {
    fuzz__round_trip(t);
  }
  return 0;
}

/* libFuzzer target: BPE encoding of arbitrary bytes (traces/tokenizer.h). Checks that decode
 * gives back the input exactly, that count() agrees with encode(), and that every id is in the
 * vocabulary. */
#include "fuzz_common.h"
#include "fuzz_tok.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  trace_tok *tok = fuzz_tokenizer();
  int32_t *ids = NULL;
  int64_t n = 0, cap = 0;
  kv_error e = {0};
  if (trace_tok_encode(tok, (const char *)data, size, &ids, &n, &cap, &e) != 0) abort();
  if (trace_tok_count(tok, (const char *)data, size, &e) != n) abort();
  char *back = NULL;
  size_t len = 0;
  if (trace_tok_decode(tok, ids, n, &back, &len, &e) != 0) abort();
  if (len != size || (size && memcmp(back, data, size) != 0)) abort();
  if ((int64_t)size < n) abort(); /* a token covers at least one byte */
  free(back);
  free(ids);
  (void)trace_tok_approx_count(TRACE_TOK_APPROX_CHARS4, (const char *)data, size);
  (void)trace_tok_approx_count(TRACE_TOK_APPROX_WORDS, (const char *)data, size);
  return 0;
}

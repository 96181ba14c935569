/* libFuzzer target: BPE encoding of arbitrary bytes (traces/tokenizer.h). Checks that decode
 * gives back the input exactly, that count() agrees with encode(), and that every id is in the
 * vocabulary; and that the script estimate's features account for every byte (each feature unit
 * is one byte or one code point, runs never outnumber their units) and its count is >= 1 for a
 * non-empty input. GPT-2's files with KVLAB_FUZZ_GPT2_DIR (fuzz_tok.h). */
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
  int64_t f[TRACE_TOK_F_COUNT], units = 0;
  trace_tok_features((const char *)data, size, f);
  for (int k = 0; k < TRACE_TOK_F_COUNT; k++) {
    if (f[k] < 0) abort();
    if (k != TRACE_TOK_F_WORDS && k != TRACE_TOK_F_NUMBERS && k != TRACE_TOK_F_PUNCT_RUNS) units += f[k];
  }
  if (f[TRACE_TOK_F_WORDS] > f[TRACE_TOK_F_LETTERS] || f[TRACE_TOK_F_NUMBERS] > f[TRACE_TOK_F_DIGITS] ||
      f[TRACE_TOK_F_PUNCT_RUNS] > f[TRACE_TOK_F_PUNCT] || units > (int64_t)size) {
    abort();
  }
  int64_t est = trace_tok_approx_count(TRACE_TOK_APPROX_SCRIPT, (const char *)data, size);
  if (size ? est < 1 : est != 0) abort();
  (void)trace_tok_approx_count(TRACE_TOK_APPROX_CHARS4, (const char *)data, size);
  (void)trace_tok_approx_count(TRACE_TOK_APPROX_WORDS, (const char *)data, size);
  return 0;
}

/* tok_approx.c - token counts without a tokenizer (tokenizer.h, "approximations"): chars / 4,
 * words x 4 / 3, and the script-aware estimate from per-script features whose weights
 * traces/tools/tok_calibrate.py fits against a BPE tokenizer. */
#include "tokenizer.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "tok_utf8.h"

/* ---- approximations ---------------------------------------------------------------------------- */

const char *const trace_tok_feature_names[] = {
    "letters", "words", "digits", "numbers", "punct", "punct_runs", "space", "two_byte", "han",
    "kana", "hangul", "cjk_punct", "other"};

/* Tokens per unit of each feature (trace_tok_feature). Fitted by traces/tools/tok_calibrate.py:
 * see docs/trace-format.md section 4 for the text, the tokenizer and the held-out error. */
const double trace_tok_script_weights[TRACE_TOK_F_COUNT] = {
    0.109, 0.622, 0.361, 0.782, 0.248, 0.936, 1.012, 1.242, 2.243, 1.030, 2.857, 2.129, 1.926};

/* The feature class of code point cp outside ASCII. */
static trace_tok_feature tok__script(uint32_t cp) {
  if (cp < 0x800) return TRACE_TOK_F_TWO_BYTE;
  if ((cp >= 0x4E00 && cp <= 0x9FFF) || (cp >= 0x3400 && cp <= 0x4DBF) ||
      (cp >= 0xF900 && cp <= 0xFAFF) || (cp >= 0x20000 && cp <= 0x3FFFF)) {
    return TRACE_TOK_F_HAN;
  }
  if (cp >= 0x3040 && cp <= 0x30FF) return TRACE_TOK_F_KANA;
  if ((cp >= 0xAC00 && cp <= 0xD7AF) || (cp >= 0x1100 && cp <= 0x11FF) ||
      (cp >= 0x3130 && cp <= 0x318F)) {
    return TRACE_TOK_F_HANGUL;
  }
  if ((cp >= 0x3000 && cp <= 0x303F) || (cp >= 0xFF00 && cp <= 0xFFEF) ||
      (cp >= 0xFE30 && cp <= 0xFE4F)) {
    return TRACE_TOK_F_CJK_PUNCT;
  }
  return TRACE_TOK_F_OTHER;
}

int trace_tok_script_rough(uint32_t cp) {
  if (cp < 0x530) return 0;        /* ASCII, Latin, Greek, Cyrillic */
  if (cp < 0x800) return 1;        /* Armenian, Hebrew, Arabic, Syriac, Thaana, NKo */
  if (cp >= 0x2000 && cp <= 0x2BFF) return 0; /* general punctuation, symbols, arrows */
  return tok__script(cp) == TRACE_TOK_F_OTHER;
}

static int tok__space(unsigned c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

void trace_tok_features(const char *text, size_t len, int64_t f[TRACE_TOK_F_COUNT]) {
  const unsigned char *s = (const unsigned char *)text;
  for (int k = 0; k < TRACE_TOK_F_COUNT; k++) f[k] = 0;
  int prev = -1; /* ASCII run class of the previous character: letters, digits, punct; -1 none */
  for (size_t i = 0; i < len;) {
    unsigned c = s[i];
    if (c < 0x80) {
      i++;
      if (tok__space(c)) {
        /* a single space directly before a non-space joins that piece (" word") */
        if (!(c == ' ' && i < len && !tok__space(s[i]))) f[TRACE_TOK_F_SPACE]++;
        prev = -1;
        continue;
      }
      int k = ((c | 0x20) >= 'a' && (c | 0x20) <= 'z') ? TRACE_TOK_F_LETTERS
              : (c >= '0' && c <= '9')                  ? TRACE_TOK_F_DIGITS
                                                        : TRACE_TOK_F_PUNCT;
      f[k]++;
      if (k != prev) f[k + 1]++; /* WORDS, NUMBERS, PUNCT_RUNS follow their unit */
      prev = k;
      continue;
    }
    uint32_t cp;
    int l = tok__utf8(s + i, len - i, &cp);
    i += l ? (size_t)l : 1;
    f[l ? tok__script(cp) : TRACE_TOK_F_OTHER]++;
    prev = -1;
  }
}

int64_t trace_tok_approx_count(trace_tok_approx m, const char *text, size_t len) {
  const unsigned char *s = (const unsigned char *)text;
  if (m == TRACE_TOK_APPROX_SCRIPT) {
    if (len == 0) return 0;
    int64_t f[TRACE_TOK_F_COUNT];
    trace_tok_features(text, len, f);
    double x = 0;
    for (int k = 0; k < TRACE_TOK_F_COUNT; k++) x += trace_tok_script_weights[k] * (double)f[k];
    int64_t n = (int64_t)llround(x);
    return n > 0 ? n : 1;
  }
  if (m == TRACE_TOK_APPROX_WORDS) {
    int64_t words = 0;
    int in = 0;
    for (size_t i = 0; i < len; i++) {
      int space = tok__space(s[i]);
      if (!space && !in) words++;
      in = !space;
    }
    return (words * 4 + 1) / 3;
  }
  int64_t cps = 0;
  for (size_t i = 0; i < len; i++) cps += (s[i] & 0xC0) != 0x80;
  return (cps + 3) / 4;
}

const char *trace_tok_approx_name(trace_tok_approx m) {
  return m == TRACE_TOK_APPROX_WORDS ? "words*4/3" : m == TRACE_TOK_APPROX_SCRIPT ? "script"
                                                                                  : "chars/4";
}

int trace_tok_approx_parse(const char *name) {
  return !strcmp(name, "chars4") ? TRACE_TOK_APPROX_CHARS4
         : !strcmp(name, "words") ? TRACE_TOK_APPROX_WORDS
         : !strcmp(name, "script") ? TRACE_TOK_APPROX_SCRIPT
                                   : -1;
}

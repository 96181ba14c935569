/* fuzz_tok.h — the tokenizer the fuzz targets use: GPT-2's files when KVLAB_FUZZ_GPT2_DIR names
 * a directory holding encoder.json and vocab.bpe, otherwise a small vocabulary built here (the
 * 256 bytes and a few dozen English merges), so that the targets run without any data files. */
#ifndef FUZZ_TOK_H
#define FUZZ_TOK_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer.h"

/* Writes byte b in GPT-2's printable alphabet (JSON-escaped) to o; returns the length. */
static size_t fuzz__alpha(int b, char *o, int json) {
  int printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
  unsigned cp = (unsigned)b;
  if (!printable) {
    int n = 0;
    for (int x = 0; x < b; x++) {
      n += !((x >= '!' && x <= '~') || (x >= 0xA1 && x <= 0xAC) || (x >= 0xAE && x <= 0xFF));
    }
    cp = 256u + (unsigned)n;
  }
  if (json && (cp == '"' || cp == '\\')) {
    o[0] = '\\';
    o[1] = (char)cp;
    return 2;
  }
  if (cp < 0x80) {
    o[0] = (char)cp;
    return 1;
  }
  o[0] = (char)(0xC0 | (cp >> 6));
  o[1] = (char)(0x80 | (cp & 0x3F));
  return 2;
}

static trace_tok *fuzz_tokenizer(void) {
  static trace_tok *tok;
  if (tok) return tok;
  const char *dir = getenv("KVLAB_FUZZ_GPT2_DIR");
  kv_error e = {0};
  if (dir) {
    char a[4096], b[4096];
    snprintf(a, sizeof a, "%s/encoder.json", dir);
    snprintf(b, sizeof b, "%s/vocab.bpe", dir);
    if (trace_tok_load(a, b, &tok, &e)) {
      fprintf(stderr, "fuzz: %s\n", e.msg);
      abort();
    }
    return tok;
  }
  static const char *const merges[][2] = {
      {"t", "h"}, {"th", "e"}, {" ", "t"}, {" ", "the"}, {"i", "n"}, {"in", "g"}, {"e", "r"},
      {"a", "n"}, {"an", "d"}, {" ", "a"}, {" ", "and"}, {"o", "n"}, {"r", "e"}, {" ", "s"},
      {"e", "s"}, {"\n", "\n"}, {" ", " "}, {"  ", "  "}, {"0", "0"}, {"00", "00"}, {"'", "s"},
      {"\xc3", "\xa9"}, {"\xe6", "\x97"}, {"\xe6\x97", "\xa5"}};
  size_t nm = sizeof merges / sizeof merges[0];
  static char enc[16384], mer[4096];
  size_t k = 0, m = 0;
  enc[k++] = '{';
  for (int b = 0; b < 256; b++) {
    k += (size_t)snprintf(enc + k, sizeof enc - k, "%s\"", b ? "," : "");
    k += fuzz__alpha(b, enc + k, 1);
    k += (size_t)snprintf(enc + k, sizeof enc - k, "\":%d", b);
  }
  for (size_t i = 0; i < nm; i++) {
    enc[k++] = ',';
    enc[k++] = '"';
    for (int s = 0; s < 2; s++) {
      for (const char *p = merges[i][s]; *p; p++) {
        k += fuzz__alpha((unsigned char)*p, enc + k, 1);
        m += fuzz__alpha((unsigned char)*p, mer + m, 0);
      }
      mer[m++] = s ? '\n' : ' ';
    }
    k += (size_t)snprintf(enc + k, sizeof enc - k, "\":%d", 256 + (int)i);
  }
  enc[k++] = '}';
  if (trace_tok_load_mem(enc, k, "fuzz.json", mer, m, "fuzz.bpe", &tok, &e)) {
    fprintf(stderr, "fuzz: %s\n", e.msg);
    abort();
  }
  return tok;
}

#endif /* FUZZ_TOK_H */

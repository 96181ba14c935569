/* tok_utf8.h - the UTF-8 decoder the tokenizer modules share (internal to traces/: tokenizer.c's
 * byte alphabet and tok_approx.c's script features). Not part of the public API. */
#ifndef KV_TOK_UTF8_H
#define KV_TOK_UTF8_H

#include <stddef.h>
#include <stdint.h>

/* Decodes one UTF-8 code point at s[0..n); returns its length or 0 when invalid. */
static inline int tok__utf8(const unsigned char *s, size_t n, uint32_t *cp) {
  if (n == 0) return 0;
  unsigned c = s[0];
  if (c < 0x80) {
    *cp = c;
    return 1;
  }
  int len = (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 0;
  if (!len || (size_t)len > n) return 0;
  uint32_t v = c & (0x7Fu >> len);
  for (int i = 1; i < len; i++) {
    if ((s[i] & 0xC0) != 0x80) return 0;
    v = (v << 6) | (s[i] & 0x3Fu);
  }
  static const uint32_t min[5] = {0, 0, 0x80, 0x800, 0x10000};
  if (v < min[len] || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) return 0;
  *cp = v;
  return len;
}

#endif

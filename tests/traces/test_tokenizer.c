/* Tests of the BPE tokenizer (traces/tokenizer.h).
 *
 * A tiny hand-made byte-level vocabulary whose encodings are worked out by hand, the
 * pre-tokeniser's splits, and malformed vocabulary/merges files.
 * The same vocabulary as a Hugging Face tokenizer.json (both merge spellings) gives the same ids;
 * tokenizer.json files this code would count differently are refused; trace_tok_load_path finds
 * either form in a folder. The script estimate's features and count on hand-worked texts.
 * With GPT-2's files from ../shared/data/tokenizers/gpt2 (KVLAB_SHARED_DIR; skipped when absent,
 * none ships with the repository): published GPT-2 encodings (tiktoken's test suite for the
 * "gpt2" encoding, Hugging Face's GPT2Tokenizer docstring, tiktoken r50k_base cases), decode(encode
 * (x)) == x on real text and random bytes, and a slow, literal transcription of encoder.py's
 * bpe() loop (merge every occurrence of the best pair, repeat) compared id for id on real text. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kv_fs.h"
#include "test.h"
#include "tokenizer.h"
#include "trace_map.h"

/* GPT-2's bytes_to_unicode, written out again from its definition (independent of the library). */
static unsigned byte_cp(int b) {
  int printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
  if (printable) return (unsigned)b;
  int n = 0;
  for (int x = 0; x < 256; x++) {
    int px = (x >= '!' && x <= '~') || (x >= 0xA1 && x <= 0xAC) || (x >= 0xAE && x <= 0xFF);
    if (!px) {
      if (x == b) return 256u + (unsigned)n;
      n++;
    }
  }
  return 0;
}

/* Appends the UTF-8 form of code point cp, JSON-escaped when needed. */
static size_t put_cp(char *o, unsigned cp, int json) {
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

/* Writes "{" and the 256 byte tokens (id = byte value) as JSON members to o, then `tail`;
 * returns the length. */
static size_t byte_vocab(char *o, const char *tail) {
  size_t k = 0;
  o[k++] = '{';
  for (int b = 0; b < 256; b++) {
    k += (size_t)sprintf(o + k, "%s\"", b ? "," : "");
    k += put_cp(o + k, byte_cp(b), 1);
    k += (size_t)sprintf(o + k, "\":%d", b);
  }
  return k + (size_t)sprintf(o + k, "%s", tail);
}

/* A vocabulary of the 256 bytes (id = byte value) plus "bc" (256), "ab" (257), "abc" (258),
 * with merges in rank order: "b c", "a b", "ab c". */
static trace_tok *tiny(kv_error *e) {
  static char enc[8192];
  size_t k = byte_vocab(enc, ",\"bc\":256,\"ab\":257,\"abc\":258}");
  static const char merges[] = "#version: 0.2\nb c\na b\nab c\n";
  trace_tok *t = NULL;
  int rc = trace_tok_load_mem(enc, k, "tiny.json", merges, sizeof merges - 1, "tiny.bpe", &t, e);
  return rc ? NULL : t;
}

static int encode_eq(trace_tok *t, const char *s, size_t len, const int32_t *want, int64_t nw) {
  int32_t *ids = NULL;
  int64_t n = 0, cap = 0;
  kv_error e = {0};
  int ok = trace_tok_encode(t, s, len, &ids, &n, &cap, &e) == 0 && n == nw;
  for (int64_t i = 0; ok && i < n; i++) ok = ids[i] == want[i];
  if (!ok) {
    fprintf(stderr, "  encode(\"%.*s\") =", (int)len, s);
    for (int64_t i = 0; i < n; i++) fprintf(stderr, " %d", ids[i]);
    fprintf(stderr, " (%s)\n", e.msg);
  }
  ok = ok && trace_tok_count(t, s, len, &e) == nw;
  free(ids);
  return ok;
}
#define ENC(t, s, ...)                                                                      \
  do {                                                                                      \
    static const int32_t w_[] = {__VA_ARGS__};                                              \
    CHECK(encode_eq(t, s, sizeof(s) - 1, w_, (int64_t)(sizeof w_ / sizeof w_[0])));         \
  } while (0)

static void test_tiny_vocabulary(void) {
  kv_error e = {0};
  trace_tok *t = tiny(&e);
  REQUIRE(t);
  CHECK_EQ_INT(trace_tok_vocab_size(t), 259);
  CHECK_EQ_INT(trace_tok_n_merges(t), 3);
  /* "abc": pairs (a,b) rank 1 and (b,c) rank 0 -> "bc" first, then (a,bc) has no rank */
  ENC(t, "abc", 'a', 256);
  /* "abab": (a,b) at 0 and 2 both rank 1 -> leftmost first, then the other */
  ENC(t, "abab", 257, 257);
  /* "abd c": pieces "abd", " c"; "ab" merges, then (ab,d) has no rank; " c" stays two bytes */
  ENC(t, "abd c", 257, 'd', ' ', 'c');
  /* "xabc": (a,b) r1, (b,c) r0 -> x,a,bc */
  ENC(t, "xabc", 'x', 'a', 256);
  /* "abxc" -> ab,x,c */
  ENC(t, "abxc", 257, 'x', 'c');
  int32_t ids[2] = {257, 'c'};
  char *out;
  size_t len;
  REQUIRE_OK(trace_tok_decode(t, ids, 2, &out, &len, &e), &e);
  CHECK(len == 3 && memcmp(out, "abc", 3) == 0);
  free(out);
  ids[0] = 259;
  CHECK(trace_tok_decode(t, ids, 2, &out, &len, &e) == KV_EINVAL);
  trace_tok_free(t);
}

typedef struct pieces {
  int n;
  char s[16][32];
} pieces;

static int grab(void *ctx, const char *p, size_t n) {
  pieces *ps = ctx;
  if (ps->n < 16) snprintf(ps->s[ps->n], 32, "%.*s", (int)n, p);
  ps->n++;
  return 0;
}

static void check_split(trace_tok *t, const char *s, int n, const char *const *want) {
  pieces ps = {0};
  kv_error e = {0};
  CHECK_OK(trace_tok_split(t, s, strlen(s), grab, &ps, &e), &e);
  CHECK_EQ_INT(ps.n, n);
  for (int i = 0; i < n && i < ps.n; i++) {
    if (strcmp(ps.s[i], want[i]) != 0) TEST_FAIL_AT("piece %d of '%s': '%s' vs '%s'", i, s,
                                                     ps.s[i], want[i]);
  }
}

static void test_pretokenizer(void) {
  kv_error e = {0};
  trace_tok *t = tiny(&e);
  REQUIRE(t);
  /* worked out from the pattern: contractions, a leading space joins the next run, the last
   * white-space character before a word is left for it (\s+(?!\S)), trailing white space */
  static const char *const a[] = {"I", "'m", " here", " ", " now", "\n\n"};
  check_split(t, "I'm here  now\n\n", 6, a);
  static const char *const b[] = {"Hello", ",", " world", "!", " 123", "abc", " ...?!"};
  check_split(t, "Hello, world! 123abc ...?!", 7, b);
  static const char *const c[] = {"caf\xc3\xa9", " \xe6\x97\xa5\xe6\x9c\xac", " \xe2\x82\xac",
                                  "5"};
  check_split(t, "caf\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac \xe2\x82\xac" "5", 4, c);
  /* invalid UTF-8: each bad byte is its own piece, text around it is split as usual */
  static const char *const d[] = {"ab", "\xff", "\xfe", "cd"};
  check_split(t, "ab\xff\xfe" "cd", 4, d);
  trace_tok_free(t);
}

static void expect_load_error(const char *enc, const char *merges, int code, const char *want) {
  trace_tok *t = NULL;
  kv_error e = {0};
  int rc = trace_tok_load_mem(enc, strlen(enc), "v.json", merges, strlen(merges), "m.bpe", &t, &e);
  if (rc != code) TEST_FAIL_AT("expected %d, got %d (%s)", code, rc, e.msg);
  CHECK(t == NULL);
  CHECK_STR_CONTAINS(e.msg, want);
}

static void test_bad_files(void) {
  expect_load_error("[1,2]", "", KV_EFORMAT, "v.json: byte 1: expected an object");
  expect_load_error("{\"a\": 1.5}", "", KV_EFORMAT, "id 1.5 is not an integer");
  expect_load_error("{\"a\": 1, \"b\": 1}", "", KV_EFORMAT, "id 1 is assigned twice");
  expect_load_error("{\"a\": \"x\"}", "", KV_EFORMAT, "not strings");
  expect_load_error("{\"a\": 1", "", KV_EFORMAT, "v.json: byte");
  expect_load_error("{\"a b\": 1}", "", KV_EFORMAT, "outside GPT-2's byte alphabet");
  expect_load_error("{\"a\": 0}", "", KV_EFORMAT, "no token for the single byte 0x00");
  /* merges errors need a complete byte vocabulary */
  kv_error e = {0};
  trace_tok *t = tiny(&e);
  REQUIRE(t);
  trace_tok_free(t);
  static char enc[8192];
  size_t k = byte_vocab(enc, ",\"ab\":256}");
  expect_load_error(enc, "a b\nx y\n", KV_EFORMAT, "m.bpe:2: merge 'x y' uses or makes a token");
  expect_load_error(enc, "a b c\n", KV_EFORMAT, "m.bpe:1: expected two tokens");
  expect_load_error(enc, "a b\na b\n", KV_EFORMAT, "m.bpe:2: the merge 'a b' appears twice");
  trace_tok *ok = NULL;
  CHECK_OK(trace_tok_load_mem(enc, k, "v", "a b\r\n\n", 6, "m", &ok, &e), &e);
  trace_tok_free(ok);
}

static void test_approximations(void) {
  /* 4 code points ("é" is one) -> 1; 9 -> 3 (ceil); words: 3 -> 4, 1 -> 1, 2 -> 3 */
  CHECK_EQ_INT(trace_tok_approx_count(TRACE_TOK_APPROX_CHARS4, "caf\xc3\xa9", 5), 1);
  CHECK_EQ_INT(trace_tok_approx_count(TRACE_TOK_APPROX_CHARS4, "123456789", 9), 3);
  CHECK_EQ_INT(trace_tok_approx_count(TRACE_TOK_APPROX_CHARS4, "", 0), 0);
  CHECK_EQ_INT(trace_tok_approx_count(TRACE_TOK_APPROX_WORDS, " a bb\tc\n", 8), 4);
  CHECK_EQ_INT(trace_tok_approx_count(TRACE_TOK_APPROX_WORDS, "word", 4), 1);
  CHECK_EQ_INT(trace_tok_approx_count(TRACE_TOK_APPROX_WORDS, "two words", 9), 3);
}


/* The tiny vocabulary as a tokenizer.json; merges as "a b" strings (pairs = 0) or [a, b] arrays. */
static size_t tiny_hf(char *o, size_t cap, int pairs, const char *pre, const char *extra) {
  size_t k = (size_t)snprintf(o, cap, "{\"version\": \"1.0\", \"added_tokens\": [], %s"
                              "\"pre_tokenizer\": %s, \"model\": {\"type\": \"BPE\", "
                              "\"dropout\": null, \"vocab\": ", extra, pre);
  k += byte_vocab(o + k, ",\"bc\":256,\"ab\":257,\"abc\":258}");
  k += (size_t)snprintf(o + k, cap - k, ", \"merges\": %s}}",
                        pairs ? "[[\"b\", \"c\"], [\"a\", \"b\"], [\"ab\", \"c\"]]"
                              : "[\"b c\", \"a b\", \"ab c\"]");
  return k;
}

static const char tiny_pre[] = "{\"type\": \"ByteLevel\", \"add_prefix_space\": false, "
                               "\"trim_offsets\": true, \"use_regex\": true}";

static void test_hf_tokenizer_json(void) {
  static char buf[16384];
  kv_error e = {0};
  for (int pairs = 0; pairs < 2; pairs++) {
    size_t n = tiny_hf(buf, sizeof buf, pairs, tiny_pre, "\"normalizer\": null, ");
    trace_tok *t = NULL;
    REQUIRE_OK(trace_tok_load_hf_mem(buf, n, "tiny-tokenizer.json", &t, &e), &e);
    CHECK_EQ_INT(trace_tok_vocab_size(t), 259);
    CHECK_EQ_INT(trace_tok_n_merges(t), 3);
    /* the encodings worked out for the encoder.json form (test_tiny_vocabulary) */
    ENC(t, "abc", 'a', 256);
    ENC(t, "abab", 257, 257);
    ENC(t, "abd c", 257, 'd', ' ', 'c');
    ENC(t, "abxc", 257, 'x', 'c');
    trace_tok_free(t);
  }
  /* what this code would count differently is refused, naming the field */
  struct {
    const char *pre, *extra, *want;
    int code;
  } bad[] = {
      {"{\"type\": \"ByteLevel\", \"add_prefix_space\": true}", "", "add_prefix_space", KV_ENOTSUP},
      {"{\"type\": \"ByteLevel\"}", "", "add_prefix_space", KV_ENOTSUP},
      {"{\"type\": \"Metaspace\"}", "", "pre_tokenizer is not ByteLevel", KV_ENOTSUP},
      {"{\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"use_regex\": false}", "",
       "use_regex", KV_ENOTSUP},
      {tiny_pre, "\"normalizer\": {\"type\": \"NFC\"}, ", "a normalizer is set", KV_ENOTSUP},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    size_t n = tiny_hf(buf, sizeof buf, 0, bad[i].pre, bad[i].extra);
    trace_tok *t = NULL;
    int rc = trace_tok_load_hf_mem(buf, n, "x.json", &t, &e);
    if (rc != bad[i].code) TEST_FAIL_AT("case %zu: rc %d (%s)", i, rc, e.msg);
    CHECK(t == NULL);
    CHECK_STR_CONTAINS(e.msg, "x.json: ");
    CHECK_STR_CONTAINS(e.msg, bad[i].want);
  }
  struct {
    const char *json, *want;
    int code;
  } bad2[] = {
      {"[1]", "expected a JSON object", KV_EFORMAT},
      {"{\"model\": 1}", "no \"model\" object", KV_EFORMAT},
      {"{\"model\": {\"type\": \"WordPiece\"}}", "model.type is not \"BPE\"", KV_ENOTSUP},
      {"{\"model\": {\"type\": \"BPE\", \"ignore_merges\": true}}", "model.ignore_merges",
       KV_ENOTSUP},
      {"{\"pre_tokenizer\": {\"type\": \"ByteLevel\", \"add_prefix_space\": false}, \"model\": "
       "{\"vocab\": {\"a\": \"x\"}, \"merges\": []}}", "the id is not an integer", KV_EFORMAT},
      {"{\"pre_tokenizer\": {\"type\": \"ByteLevel\", \"add_prefix_space\": false}, \"model\": "
       "{\"vocab\": {\"a\": 0}, \"merges\": []}}", "no token for the single byte 0x00", KV_EFORMAT},
      {"{\"model\": ", "JSON error", KV_EFORMAT},
  };
  for (size_t i = 0; i < sizeof bad2 / sizeof bad2[0]; i++) {
    trace_tok *t = NULL;
    int rc = trace_tok_load_hf_mem(bad2[i].json, strlen(bad2[i].json), "y.json", &t, &e);
    if (rc != bad2[i].code) TEST_FAIL_AT("case %zu: rc %d (%s)", i, rc, e.msg);
    CHECK(t == NULL);
    CHECK_STR_CONTAINS(e.msg, bad2[i].want);
  }
  /* merges: a malformed entry and an unknown token are named by index */
  size_t n = tiny_hf(buf, sizeof buf, 0, tiny_pre, "");
  char *m = strstr(buf, "\"ab c\"");
  REQUIRE(m);
  memcpy(m, "\"abc \"", 6);
  trace_tok *t = NULL;
  CHECK(trace_tok_load_hf_mem(buf, n, "z.json", &t, &e) == KV_EFORMAT);
  CHECK_STR_CONTAINS(e.msg, "z.json: model.merges[2]: expected");
  memcpy(m, "\"x  y\"", 6);
  CHECK(trace_tok_load_hf_mem(buf, n, "z.json", &t, &e) == KV_EFORMAT);
  memcpy(m, "\"xy z\"", 6);
  CHECK(trace_tok_load_hf_mem(buf, n, "z.json", &t, &e) == KV_EFORMAT);
  CHECK_STR_CONTAINS(e.msg, "z.json: model.merges[2]: merge 'xy z' uses or makes a token");
}

/* trace_tok_load_path: a tokenizer.json, a folder with one (taken first), a folder with
 * encoder.json + vocab.bpe, a folder with neither. */
static void test_load_path(void) {
  static char buf[16384];
  kv_error e = {0};
  const char *dir = test_tmp_path("tokdir");
  char cmd[4200], p[4200];
  snprintf(cmd, sizeof cmd, "rm -rf '%s' && mkdir -p '%s'", dir, dir);
  REQUIRE(system(cmd) == 0);
  trace_tok *t = NULL;
  CHECK(trace_tok_load_path(dir, &t, &e) == KV_ENOENT);
  CHECK_STR_CONTAINS(e.msg, "holds neither tokenizer.json nor encoder.json and vocab.bpe");
  snprintf(p, sizeof p, "%s/missing", dir);
  CHECK(trace_tok_load_path(p, &t, &e) == KV_ENOENT);
  CHECK_STR_CONTAINS(e.msg, "missing: cannot open");
  /* encoder.json + vocab.bpe: the tiny vocabulary without the "ab c" merge */
  size_t k = byte_vocab(buf, ",\"bc\":256,\"ab\":257}");
  snprintf(p, sizeof p, "%s/encoder.json", dir);
  FILE *f = fopen(p, "w");
  REQUIRE(f);
  fwrite(buf, 1, k, f);
  fclose(f);
  snprintf(p, sizeof p, "%s/vocab.bpe", dir);
  f = fopen(p, "w");
  REQUIRE(f);
  fputs("#version: 0.2\nb c\na b\n", f);
  fclose(f);
  REQUIRE_OK(trace_tok_load_path(dir, &t, &e), &e);
  CHECK_EQ_INT(trace_tok_n_merges(t), 2);
  trace_tok_free(t);
  /* a tokenizer.json beside them is taken first; and named directly */
  size_t n = tiny_hf(buf, sizeof buf, 1, tiny_pre, "");
  snprintf(p, sizeof p, "%s/tokenizer.json", dir);
  f = fopen(p, "w");
  REQUIRE(f);
  fwrite(buf, 1, n, f);
  fclose(f);
  REQUIRE_OK(trace_tok_load_path(dir, &t, &e), &e);
  CHECK_EQ_INT(trace_tok_n_merges(t), 3);
  trace_tok_free(t);
  REQUIRE_OK(trace_tok_load_path(p, &t, &e), &e);
  CHECK_EQ_INT(trace_tok_n_merges(t), 3);
  trace_tok_free(t);
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  CHECK(system(cmd) == 0);
}

/* The script estimate's features, worked out by hand, and its count from the weights. */
static void test_script_features(void) {
  int64_t f[TRACE_TOK_F_COUNT];
  /* "Hi  there, 42!\n": letters H,i,t,h,e,r,e (7) in 2 words; digits 4,2 in 1 number; punct
   * ",", "!" in 2 runs; white space: the first of the two spaces counts, the second joins
   * "there", the space before "42" joins it, the final newline counts -> 2 */
  static const char a[] = "Hi  there, 42!\n";
  trace_tok_features(a, sizeof a - 1, f);
  int64_t want_a[TRACE_TOK_F_COUNT] = {7, 2, 2, 1, 2, 2, 2, 0, 0, 0, 0, 0, 0};
  for (int k = 0; k < TRACE_TOK_F_COUNT; k++) {
    if (f[k] != want_a[k]) TEST_FAIL_AT("'%s': %s = %lld, want %lld", a, trace_tok_feature_names[k],
                                        (long long)f[k], (long long)want_a[k]);
  }
  /* "café 中文，かなカナ 한국 привет 😀\xff": é and the 6 Cyrillic letters are two-byte; 中文 han;
   * ， cjk punct; 4 kana; 2 hangul; the emoji and the invalid byte other; "caf" one word; the
   * spaces before 中, か, 한, п, 😀 join them */
  static const char b[] = "caf\xc3\xa9 \xe4\xb8\xad\xe6\x96\x87\xef\xbc\x8c\xe3\x81\x8b\xe3\x81\xaa"
                          "\xe3\x82\xab\xe3\x83\x8a \xed\x95\x9c\xea\xb5\xad \xd0\xbf\xd1\x80\xd0"
                          "\xb8\xd0\xb2\xd0\xb5\xd1\x82 \xf0\x9f\x98\x80\xff";
  trace_tok_features(b, sizeof b - 1, f);
  int64_t want_b[TRACE_TOK_F_COUNT] = {3, 1, 0, 0, 0, 0, 0, 7, 2, 4, 2, 1, 2};
  for (int k = 0; k < TRACE_TOK_F_COUNT; k++) {
    if (f[k] != want_b[k]) TEST_FAIL_AT("mixed text: %s = %lld, want %lld",
                                        trace_tok_feature_names[k], (long long)f[k],
                                        (long long)want_b[k]);
  }
  /* the count: round(sum of weight x feature), at least 1 for a non-empty text */
  double x = 0;
  for (int k = 0; k < TRACE_TOK_F_COUNT; k++) x += trace_tok_script_weights[k] * (double)want_b[k];
  CHECK_EQ_INT(trace_tok_approx_count(TRACE_TOK_APPROX_SCRIPT, b, sizeof b - 1), llround(x));
  CHECK_EQ_INT(trace_tok_approx_count(TRACE_TOK_APPROX_SCRIPT, "", 0), 0);
  CHECK_EQ_INT(trace_tok_approx_count(TRACE_TOK_APPROX_SCRIPT, " ", 1), 1);
  /* Chinese costs about two GPT-2 tokens a character, not a quarter (chars/4) */
  static const char zh[] = "\xe6\x98\x8e\xe5\xa4\xa9\xe5\x8c\x97\xe4\xba\xac\xe7\x9a\x84\xe5\xa4"
                           "\xa9\xe6\xb0\x94\xe6\x80\x8e\xe4\xb9\x88\xe6\xa0\xb7"; /* 10 han */
  int64_t z = trace_tok_approx_count(TRACE_TOK_APPROX_SCRIPT, zh, sizeof zh - 1);
  CHECK(z >= 18 && z <= 26);
  CHECK_EQ_INT(trace_tok_approx_count(TRACE_TOK_APPROX_CHARS4, zh, sizeof zh - 1), 3);
  CHECK_EQ_INT(trace_tok_approx_parse("script"), TRACE_TOK_APPROX_SCRIPT);
  CHECK_EQ_INT(trace_tok_approx_parse("chars4"), TRACE_TOK_APPROX_CHARS4);
  CHECK_EQ_INT(trace_tok_approx_parse("bytes"), -1);
  /* scripts without a fitted weight */
  CHECK(!trace_tok_script_rough('a') && !trace_tok_script_rough(0x43F) &&
        !trace_tok_script_rough(0x4E2D) && !trace_tok_script_rough(0x2014));
  CHECK(trace_tok_script_rough(0x5D0) && trace_tok_script_rough(0x627) &&
        trace_tok_script_rough(0x915) && trace_tok_script_rough(0xE01) &&
        trace_tok_script_rough(0x1F600));
}

/* ---- with the GPT-2 files ---------------------------------------------------------------------- */

/* GPT-2's files from ../shared; NULL when absent (the case skips) or unreadable (a failure). */
#define GPT2_SKIP_WHY "GPT-2's tokenizer files are not in ../shared/data/tokenizers/gpt2"
static trace_tok *gpt2(void) {
  const char *enc = test_shared_path("data/tokenizers/gpt2/encoder.json");
  const char *mer = test_shared_path("data/tokenizers/gpt2/vocab.bpe");
  if (!enc || !mer) return NULL;
  trace_tok *t = NULL;
  kv_error e = {0};
  if (trace_tok_load(enc, mer, &t, &e)) {
    TEST_FAIL_AT("loading GPT-2 files: %s", e.msg);
    return NULL;
  }
  return t;
}

static void test_gpt2_published(void) {
  int f0 = test__failures;
  trace_tok *t = gpt2();
  if (!t && test__failures == f0) TEST_SKIP(GPT2_SKIP_WHY);
  if (!t) return;
  CHECK_EQ_INT(trace_tok_vocab_size(t), 50257);
  CHECK_EQ_INT(trace_tok_n_merges(t), 50000);
  /* tiktoken tests/test_encoding.py, encoding "gpt2" */
  ENC(t, "hello world", 31373, 995);
  ENC(t, "hello ", 31373, 220);
  ENC(t, "0", 15);
  ENC(t, "00", 405);
  ENC(t, "000", 830);
  ENC(t, "0000", 2388);
  ENC(t, "00000", 20483);
  ENC(t, "000000", 10535);
  ENC(t, "0000000", 24598);
  ENC(t, "00000000", 8269);
  ENC(t, "000000000", 10535, 830);
  ENC(t, "0000000000", 8269, 405);
  ENC(t, "00000000000", 8269, 830);
  ENC(t, "000000000000", 8269, 2388);
  ENC(t, "0000000000000", 8269, 20483);
  ENC(t, "00000000000000", 8269, 10535);
  ENC(t, "000000000000000", 8269, 24598);
  ENC(t, "0000000000000000", 25645);
  ENC(t, "00000000000000000", 8269, 10535, 830);
  /* Hugging Face GPT2Tokenizer docstring */
  ENC(t, "Hello world", 15496, 995);
  ENC(t, " Hello world", 18435, 995);
  /* tiktoken r50k_base (the same ranks and pattern as gpt2) cases */
  ENC(t, " \xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e\xe3\x81\xa8" "English 12345!\n", 10545, 245, 98,
      17312, 105, 45739, 252, 30201, 15823, 17031, 2231, 0, 198);
  ENC(t, "\x1c" "a", 216, 64);
  ENC(t, "a\n\n", 64, 628);
  ENC(t, "<|endoftext|>", 27, 91, 437, 1659, 5239, 91, 29);
  trace_tok_free(t);
}

/* ---- the slow twin: encoder.py's bpe() on byte strings -------------------------------------- */

typedef struct twin {
  trace_strmap rank;   /* "len(a) a b" -> rank */
  trace_strmap id;     /* token bytes -> id */
} twin;

static int twin_init(twin *w, trace_tok *t, const char *merges_path) {
  trace_strmap_init(&w->rank);
  trace_strmap_init(&w->id);
  for (int32_t i = 0; i < trace_tok_vocab_size(t); i++) {
    char *b;
    size_t n;
    kv_error e = {0};
    if (trace_tok_decode(t, &i, 1, &b, &n, &e)) continue;
    trace_strmap_put(&w->id, b, n, i);
    free(b);
  }
  char *m;
  size_t mn;
  kv_error e = {0};
  if (kv_read_file(merges_path, &m, &mn, &e)) return -1;
  /* invert the byte alphabet */
  int inv[512];
  for (int i = 0; i < 512; i++) inv[i] = -1;
  for (int b = 0; b < 256; b++) inv[byte_cp(b)] = b;
  int64_t rank = 0;
  char *save = NULL;
  for (char *line = strtok_r(m, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
    if (!strncmp(line, "#version", 8)) continue;
    char key[512];
    unsigned char raw[2][256];
    int rl[2] = {0, 0}, part = 0;
    for (unsigned char *p = (unsigned char *)line; *p; p++) {
      if (*p == ' ') {
        part = 1;
        continue;
      }
      unsigned cp = *p;
      if (*p >= 0xC0) {
        cp = ((unsigned)(*p & 0x1F) << 6) | (p[1] & 0x3Fu);
        p++;
      }
      raw[part][rl[part]++] = (unsigned char)inv[cp];
    }
    key[0] = (char)rl[0];
    memcpy(key + 1, raw[0], (size_t)rl[0]);
    memcpy(key + 1 + rl[0], raw[1], (size_t)rl[1]);
    trace_strmap_put(&w->rank, key, (size_t)(1 + rl[0] + rl[1]), rank++);
  }
  free(m);
  return 0;
}

static int64_t twin_rank(twin *w, const char *a, int la, const char *b, int lb) {
  char key[512];
  if (la + lb + 1 > (int)sizeof key || la > 127) return -1;
  key[0] = (char)la;
  memcpy(key + 1, a, (size_t)la);
  memcpy(key + 1 + la, b, (size_t)lb);
  int64_t *r = trace_strmap_get(&w->rank, key, (size_t)(1 + la + lb));
  return r ? *r : -1;
}

typedef struct twin_ctx {
  twin *w;
  int32_t *ids;
  int64_t n, cap;
} twin_ctx;

/* word = list of symbols (offset, length) into the piece; literal encoder.py bpe(). */
static int twin_piece(void *ctx, const char *p, size_t n) {
  twin_ctx *c = ctx;
  int off[4096], len[4096], k = (int)n;
  if (n > 4096) return -1;
  for (int i = 0; i < k; i++) off[i] = i, len[i] = 1;
  for (;;) {
    int64_t best = -1;
    int bi = -1;
    for (int i = 0; i + 1 < k; i++) {
      int64_t r = twin_rank(c->w, p + off[i], len[i], p + off[i + 1], len[i + 1]);
      if (r >= 0 && (best < 0 || r < best)) best = r, bi = i;
    }
    if (best < 0) break;
    /* merge every occurrence of the pair (first, second), scanning left to right */
    int fo = off[bi], fl = len[bi], so = off[bi + 1], sl = len[bi + 1];
    int nk = 0;
    for (int i = 0; i < k;) {
      if (i + 1 < k && len[i] == fl && len[i + 1] == sl && !memcmp(p + off[i], p + fo, (size_t)fl) &&
          !memcmp(p + off[i + 1], p + so, (size_t)sl)) {
        off[nk] = off[i];
        len[nk] = fl + sl;
        nk++;
        i += 2;
      } else {
        off[nk] = off[i];
        len[nk] = len[i];
        nk++;
        i++;
      }
    }
    k = nk;
  }
  for (int i = 0; i < k; i++) {
    int64_t *id = trace_strmap_get(&c->w->id, p + off[i], (size_t)len[i]);
    if (!id) return -2;
    if (c->n == c->cap) {
      c->cap = c->cap ? c->cap * 2 : 1024;
      c->ids = realloc(c->ids, (size_t)c->cap * sizeof *c->ids);
    }
    c->ids[c->n++] = (int32_t)*id;
  }
  return 0;
}

/* Real English text available on a Debian machine, used when present. */
static const char *const real_text[] = {"/usr/share/common-licenses/GPL-3",
                                        "/usr/share/common-licenses/Apache-2.0",
                                        "/usr/share/vim/vim90/doc/usr_01.txt",
                                        "/usr/share/vim/vim90/doc/usr_02.txt", NULL};

static void test_gpt2_twin_and_round_trip(void) {
  int f0 = test__failures;
  trace_tok *t = gpt2();
  if (!t && test__failures == f0) TEST_SKIP(GPT2_SKIP_WHY);
  if (!t) return;
  twin w;
  REQUIRE(twin_init(&w, t, test_shared_path("data/tokenizers/gpt2/vocab.bpe")) == 0);
  static const char sample[] =
      "The quick brown fox can't jump over 1,234,567 lazy dogs!!  It's 3.14159... "
      "\xe2\x80\x9cQuoted\xe2\x80\x9d text, \xc3\xa9t\xc3\xa9, na\xc3\xafve, \xe4\xb8\xad\xe6\x96"
      "\x87 \xf0\x9f\x98\x80 emoji\n\n\tTabs\r\nand    spaces   \n";
  int files = 0;
  for (int f = -1; f < 0 || real_text[f]; f++) {
    char *text = NULL;
    size_t len = 0;
    kv_error e = {0};
    if (f < 0) {
      text = strdup(sample);
      len = strlen(sample);
    } else if (kv_read_file(real_text[f], &text, &len, &e) != 0) {
      continue;
    } else {
      files++;
    }
    int32_t *ids = NULL;
    int64_t n = 0, cap = 0;
    REQUIRE_OK(trace_tok_encode(t, text, len, &ids, &n, &cap, &e), &e);
    twin_ctx c = {&w, NULL, 0, 0};
    CHECK(trace_tok_split(t, text, len, twin_piece, &c, &e) == 0);
    int same = c.n == n;
    for (int64_t i = 0; same && i < n; i++) same = c.ids[i] == ids[i];
    if (!same) TEST_FAIL_AT("%s: heap BPE and encoder.py loop differ (%lld vs %lld tokens)",
                            f < 0 ? "sample" : real_text[f], (long long)n, (long long)c.n);
    char *back;
    size_t bl;
    REQUIRE_OK(trace_tok_decode(t, ids, n, &back, &bl, &e), &e);
    CHECK(bl == len && memcmp(back, text, len) == 0);
    free(back);
    free(ids);
    free(c.ids);
    free(text);
  }
  printf("  twin compared on the sample and %d real text files\n", files);
  /* random bytes (mostly invalid UTF-8) still round-trip */
  uint64_t s = 12345;
  char buf[4096];
  for (int rep = 0; rep < 20; rep++) {
    for (size_t i = 0; i < sizeof buf; i++) {
      s = s * 6364136223846793005ull + 1442695040888963407ull;
      buf[i] = (char)(s >> 56);
    }
    int32_t *ids = NULL;
    int64_t n = 0, cap = 0;
    kv_error e = {0};
    REQUIRE_OK(trace_tok_encode(t, buf, sizeof buf, &ids, &n, &cap, &e), &e);
    char *back;
    size_t bl;
    REQUIRE_OK(trace_tok_decode(t, ids, n, &back, &bl, &e), &e);
    CHECK(bl == sizeof buf && memcmp(back, buf, bl) == 0);
    free(back);
    free(ids);
  }
  trace_strmap_free(&w.rank);
  trace_strmap_free(&w.id);
  trace_tok_free(t);
}

TEST_LIST = {TEST(test_tiny_vocabulary), TEST(test_pretokenizer), TEST(test_bad_files),
             TEST(test_approximations), TEST(test_hf_tokenizer_json), TEST(test_load_path),
             TEST(test_script_features), TEST(test_gpt2_published),
             TEST(test_gpt2_twin_and_round_trip), {0}};
TEST_MAIN

#include "tokenizer.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <errno.h>
#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yajl/yajl_parse.h>
#include <yajl/yajl_tree.h>

#include "kv_fs.h"
#include "tok_utf8.h"
#include "trace_map.h"

/* GPT-2's pre-tokenisation pattern (encoder.py), anchored so that JIT matching starts exactly at
 * the given offset. */
static const char tok__pattern[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

#define TOK_CACHE_MAX_PIECE 256       /* longer pieces are not cached */
#define TOK_CACHE_MAX_ENTRIES 262144  /* the cache is cleared when it grows past this */

struct trace_tok {
  /* vocabulary: id -> bytes */
  char *bytes;
  size_t bytes_len, bytes_cap;
  int64_t *off;        /* (n_ids) offset into bytes, -1 for an unused id */
  int32_t *len;        /* (n_ids) */
  int32_t n_ids;
  trace_strmap by_bytes;   /* bytes -> id */
  int32_t byte_id[256];
  /* merges: (a << 32 | b) -> (rank << 32 | merged id) */
  trace_u64map merges;
  int32_t n_merges;
  /* pre-tokeniser */
  pcre2_code *re;
  pcre2_match_data *md;
  /* piece cache: bytes -> (offset << 20 | count) into cache_ids */
  trace_strmap cache;
  int32_t *cache_ids;
  int64_t cache_n, cache_cap;
  /* BPE work arrays (grown as needed) */
  int32_t *w_tok, *w_prev, *w_next;
  uint8_t *w_alive;
  uint64_t *w_heap;
  int64_t w_cap, heap_cap;
};

/* ---- GPT-2's byte alphabet -------------------------------------------------------------------- */

/* Code point that stands for byte b in token strings (GPT-2's bytes_to_unicode). */
static uint32_t tok__byte_cp(int b) {
  if ((b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF)) {
    return (uint32_t)b;
  }
  int n = 0;
  for (int x = 0; x < b; x++) {
    if (!((x >= 0x21 && x <= 0x7E) || (x >= 0xA1 && x <= 0xAC) || (x >= 0xAE && x <= 0xFF))) n++;
  }
  return 256u + (uint32_t)n;
}

/* Converts a token string in the byte alphabet to raw bytes (out must hold n bytes); returns
 * the byte count or -1 when a character is not in the alphabet. */
static int64_t tok__unalphabet(const int16_t *inv, const char *s, size_t n, char *out) {
  int64_t k = 0;
  size_t i = 0;
  while (i < n) {
    uint32_t cp;
    int l = tok__utf8((const unsigned char *)s + i, n - i, &cp);
    if (!l || cp >= 512 || inv[cp] < 0) return -1;
    out[k++] = (char)inv[cp];
    i += (size_t)l;
  }
  return k;
}

static void tok__inverse(int16_t inv[512]) {
  for (int i = 0; i < 512; i++) inv[i] = -1;
  for (int b = 0; b < 256; b++) inv[tok__byte_cp(b)] = (int16_t)b;
}

/* ---- encoder.json ------------------------------------------------------------------------------ */

typedef struct tok__jctx {
  trace_tok *t;
  const int16_t *inv;
  int depth;
  char key[1024];
  int64_t key_len;      /* -1: no pending key */
  char why[300];
  int64_t cap_ids;
} tok__jctx;

static int tok__jfail(tok__jctx *c, const char *msg) {
  snprintf(c->why, sizeof c->why, "%s", msg);
  return 0;
}

static int tok__jnull(void *ctx) { return tok__jfail(ctx, "values must be integer ids, not null"); }
static int tok__jbool(void *ctx, int b) {
  (void)b;
  return tok__jfail(ctx, "values must be integer ids, not booleans");
}
static int tok__jstr(void *ctx, const unsigned char *s, size_t n) {
  (void)s;
  (void)n;
  return tok__jfail(ctx, "values must be integer ids, not strings");
}
static int tok__jstart_map(void *ctx) {
  tok__jctx *c = ctx;
  if (c->depth != 0) return tok__jfail(c, "values must be integer ids, not objects");
  c->depth = 1;
  return 1;
}
static int tok__jend_map(void *ctx) {
  tok__jctx *c = ctx;
  c->depth = 2; /* done; anything after is an error caught by yajl */
  return 1;
}
static int tok__jarray(void *ctx) {
  return tok__jfail(ctx, "expected an object mapping token strings to ids, found an array");
}
static int tok__jkey(void *ctx, const unsigned char *k, size_t n) {
  tok__jctx *c = ctx;
  if (n >= sizeof c->key) return tok__jfail(c, "a token string is longer than 1023 bytes");
  int64_t bl = tok__unalphabet(c->inv, (const char *)k, n, c->key);
  if (bl < 0) {
    snprintf(c->why, sizeof c->why, "token \"%.*s\" has a character outside GPT-2's byte "
             "alphabet", (int)(n < 60 ? n : 60), (const char *)k);
    return 0;
  }
  if (bl == 0) return tok__jfail(c, "empty token string");
  c->key_len = bl;
  return 1;
}

/* Adds the token of `n` bytes `b` with `id` to the vocabulary; *cap_ids is the capacity of
 * t->off / t->len (grown here). 0, or -1 with the reason in why (KV_ENOMEM's "out of memory"). */
static int tok__vocab_add(trace_tok *t, const char *b, int64_t n, long long id, int64_t *cap_ids,
                          char *why, size_t why_cap) {
  if (id < 0 || id >= (1 << 24)) {
    snprintf(why, why_cap, "id %lld is not an integer in [0, 2^24)", id);
    return -1;
  }
  if (id >= *cap_ids) {
    int64_t nc = *cap_ids ? *cap_ids : 65536;
    while (nc <= id) nc *= 2;
    int64_t *no = realloc(t->off, (size_t)nc * sizeof *no);
    if (no) t->off = no;
    int32_t *nl = no ? realloc(t->len, (size_t)nc * sizeof *nl) : NULL;
    if (nl) t->len = nl;
    if (!no || !nl) return snprintf(why, why_cap, "out of memory"), -1;
    for (int64_t i = *cap_ids; i < nc; i++) {
      t->off[i] = -1;
      t->len[i] = 0;
    }
    *cap_ids = nc;
  }
  if (t->off[id] >= 0) return snprintf(why, why_cap, "id %lld is assigned twice", id), -1;
  if (trace_strmap_get(&t->by_bytes, b, (size_t)n)) {
    return snprintf(why, why_cap, "a token appears twice"), -1;
  }
  if (t->bytes_len + (size_t)n > t->bytes_cap) {
    size_t nc = t->bytes_cap ? t->bytes_cap * 2 : 1 << 20;
    while (nc < t->bytes_len + (size_t)n) nc *= 2;
    char *nb = realloc(t->bytes, nc);
    if (!nb) return snprintf(why, why_cap, "out of memory"), -1;
    t->bytes = nb;
    t->bytes_cap = nc;
  }
  memcpy(t->bytes + t->bytes_len, b, (size_t)n);
  t->off[id] = (int64_t)t->bytes_len;
  t->len[id] = (int32_t)n;
  t->bytes_len += (size_t)n;
  if (id + 1 > t->n_ids) t->n_ids = (int32_t)(id + 1);
  if (trace_strmap_put(&t->by_bytes, b, (size_t)n, id)) {
    return snprintf(why, why_cap, "out of memory"), -1;
  }
  return 0;
}

static int tok__jnumber(void *ctx, const char *s, size_t n) {
  tok__jctx *c = ctx;
  if (c->depth != 1 || c->key_len < 0) return tok__jfail(c, "a number outside the object");
  long long id = 0;
  int ok = n > 0 && n < 10;
  for (size_t i = 0; ok && i < n; i++) {
    if (s[i] < '0' || s[i] > '9') ok = 0;
    else id = id * 10 + (s[i] - '0');
  }
  if (!ok) {
    snprintf(c->why, sizeof c->why, "id %.*s is not an integer in [0, 2^24)", (int)(n < 30 ? n : 30),
             s);
    return 0;
  }
  if (tok__vocab_add(c->t, c->key, c->key_len, id, &c->cap_ids, c->why, sizeof c->why)) return 0;
  c->key_len = -1;
  return 1;
}

/* The 256 single-byte tokens a byte-level vocabulary must hold. */
static int tok__byte_ids(trace_tok *t, const char *name, kv_error *err) {
  for (int b = 0; b < 256; b++) {
    char ch = (char)b;
    int64_t *id = trace_strmap_get(&t->by_bytes, &ch, 1);
    if (!id) {
      return kv_error_set(err, KV_EFORMAT, "%s: no token for the single byte 0x%02X (a byte-level "
                          "vocabulary needs all 256)", name, b);
    }
    t->byte_id[b] = (int32_t)*id;
  }
  return 0;
}

static const yajl_callbacks tok__jcb = {tok__jnull, tok__jbool, NULL, NULL, tok__jnumber,
                                        tok__jstr, tok__jstart_map, tok__jkey, tok__jend_map,
                                        tok__jarray, tok__jarray};

static int tok__load_vocab(trace_tok *t, const int16_t *inv, const char *enc, size_t n,
                           const char *name, kv_error *err) {
  tok__jctx c;
  memset(&c, 0, sizeof c);
  c.t = t;
  c.inv = inv;
  c.key_len = -1;
  yajl_handle h = yajl_alloc(&tok__jcb, NULL, &c);
  if (!h) return kv_error_set(err, KV_ENOMEM, "%s: out of memory", name);
  yajl_status s = yajl_parse(h, (const unsigned char *)enc, n);
  size_t at = yajl_get_bytes_consumed(h);
  if (s == yajl_status_ok) s = yajl_complete_parse(h);
  int rc = 0;
  if (s == yajl_status_client_canceled) {
    rc = kv_error_set(err, strcmp(c.why, "out of memory") ? KV_EFORMAT : KV_ENOMEM,
                      "%s: byte %zu: %s", name, at, c.why);
  } else if (s != yajl_status_ok) {
    unsigned char *e = yajl_get_error(h, 0, (const unsigned char *)enc, n);
    rc = kv_error_set(err, KV_EFORMAT, "%s: byte %zu: JSON error: %s", name, at,
                      e ? (const char *)e : "?");
    size_t ml = err ? strlen(err->msg) : 0;
    while (err && ml && (err->msg[ml - 1] == '\n' || err->msg[ml - 1] == ' ')) err->msg[--ml] = 0;
    if (e) yajl_free_error(h, e);
  } else if (c.depth != 2) {
    rc = kv_error_set(err, KV_EFORMAT, "%s: expected a JSON object of token ids", name);
  }
  yajl_free(h);
  return rc ? rc : tok__byte_ids(t, name, err);
}

/* ---- merges ---------------------------------------------------------------------------------- */

/* Appends the merge (a, b) — token strings in the byte alphabet — with the next rank. buf holds
 * la + lb bytes. 0, or a negative status with why set ("where" prefixes err's message). */
static int tok__merge_add(trace_tok *t, const int16_t *inv, const char *a, size_t la,
                          const char *b, size_t lb, char *buf, const char *where, kv_error *err) {
  int64_t ba = tok__unalphabet(inv, a, la, buf);
  int64_t bb = ba < 0 ? -1 : tok__unalphabet(inv, b, lb, buf + ba);
  if (ba <= 0 || bb <= 0) {
    return kv_error_set(err, KV_EFORMAT, "%s: %s", where, ba == 0 || bb == 0
                        ? "an empty token" : "a character outside GPT-2's byte alphabet");
  }
  int64_t *ia = trace_strmap_get(&t->by_bytes, buf, (size_t)ba);
  int64_t *ib = trace_strmap_get(&t->by_bytes, buf + ba, (size_t)bb);
  int64_t *im = trace_strmap_get(&t->by_bytes, buf, (size_t)(ba + bb));
  if (!ia || !ib || !im) {
    return kv_error_set(err, KV_EFORMAT, "%s: merge '%.*s %.*s' uses or makes a token that is not "
                        "in the vocabulary", where, (int)(la < 40 ? la : 40), a,
                        (int)(lb < 40 ? lb : 40), b);
  }
  uint64_t key = (uint64_t)*ia << 32 | (uint64_t)*ib;
  if (trace_u64map_get(&t->merges, key)) {
    return kv_error_set(err, KV_EFORMAT, "%s: the merge '%.*s %.*s' appears twice", where,
                        (int)(la < 40 ? la : 40), a, (int)(lb < 40 ? lb : 40), b);
  }
  if (t->n_merges == INT32_MAX - 1) return kv_error_set(err, KV_ERANGE, "%s: too many merges", where);
  if (trace_u64map_put(&t->merges, key, (int64_t)t->n_merges << 32 | *im)) {
    return kv_error_set(err, KV_ENOMEM, "%s: out of memory", where);
  }
  t->n_merges++;
  return 0;
}

/* ---- vocab.bpe --------------------------------------------------------------------------------- */

static int tok__load_merges(trace_tok *t, const int16_t *inv, const char *m, size_t n,
                            const char *name, kv_error *err) {
  size_t i = 0;
  int64_t lineno = 0;
  char *buf = malloc(n + 1);
  if (!buf) return kv_error_set(err, KV_ENOMEM, "%s: out of memory", name);
  int rc = 0;
  while (i < n && !rc) {
    size_t e = i;
    while (e < n && m[e] != '\n') e++;
    size_t len = e - i;
    const char *line = m + i;
    i = e + 1;
    lineno++;
    if (len && line[len - 1] == '\r') len--;
    if (len == 0) continue;
    if (lineno == 1 && len >= 8 && memcmp(line, "#version", 8) == 0) continue;
    char where[1100];
    snprintf(where, sizeof where, "%s:%lld", name, (long long)lineno);
    const char *sp = memchr(line, ' ', len);
    if (!sp || sp == line || sp == line + len - 1 || memchr(sp + 1, ' ', len - (size_t)(sp + 1 - line))) {
      rc = kv_error_set(err, KV_EFORMAT, "%s: expected two tokens separated by one space", where);
      break;
    }
    size_t la = (size_t)(sp - line);
    rc = tok__merge_add(t, inv, line, la, sp + 1, len - la - 1, buf, where, err);
  }
  free(buf);
  return rc;
}

/* ---- load -------------------------------------------------------------------------------------- */

static trace_tok *tok__new(void) {
  trace_tok *t = calloc(1, sizeof *t);
  if (!t) return NULL;
  trace_strmap_init(&t->by_bytes);
  trace_strmap_init(&t->cache);
  trace_u64map_init(&t->merges);
  return t;
}

/* The pre-tokeniser, once the vocabulary and merges are in; frees t on error. */
static int tok__finish(trace_tok *t, int rc, trace_tok **out, kv_error *err) {
  if (!rc) {
    int ec;
    PCRE2_SIZE eo;
    t->re = pcre2_compile((PCRE2_SPTR)tok__pattern, PCRE2_ZERO_TERMINATED,
                          PCRE2_UTF | PCRE2_UCP | PCRE2_ANCHORED | PCRE2_MATCH_INVALID_UTF, &ec,
                          &eo, NULL);
    if (!t->re) {
      PCRE2_UCHAR msg[200];
      pcre2_get_error_message(ec, msg, sizeof msg);
      rc = kv_error_set(err, KV_ENOTSUP, "tokenizer: PCRE2 cannot compile GPT-2's pattern at "
                        "offset %zu: %s", (size_t)eo, (const char *)msg);
    } else {
      /* JIT is an optimisation; the interpreter gives the same matches when it is missing. */
      (void)pcre2_jit_compile(t->re, PCRE2_JIT_COMPLETE);
      t->md = pcre2_match_data_create_from_pattern(t->re, NULL);
      if (!t->md) rc = kv_error_set(err, KV_ENOMEM, "tokenizer: out of memory");
    }
  }
  if (rc) {
    trace_tok_free(t);
    return rc;
  }
  *out = t;
  return 0;
}

int trace_tok_load_mem(const char *enc, size_t enc_len, const char *enc_name, const char *merges,
                       size_t merges_len, const char *merges_name, trace_tok **out,
                       kv_error *err) {
  *out = NULL;
  trace_tok *t = tok__new();
  if (!t) return kv_error_set(err, KV_ENOMEM, "tokenizer: out of memory");
  int16_t inv[512];
  tok__inverse(inv);
  int rc = tok__load_vocab(t, inv, enc, enc_len, enc_name, err);
  if (!rc) rc = tok__load_merges(t, inv, merges, merges_len, merges_name, err);
  return tok__finish(t, rc, out, err);
}

int trace_tok_load(const char *encoder_json, const char *merges, trace_tok **out, kv_error *err) {
  char *a = NULL, *b = NULL;
  size_t na = 0, nb = 0;
  *out = NULL;
  int rc = kv_read_file(encoder_json, &a, &na, err);
  if (!rc) rc = kv_read_file(merges, &b, &nb, err);
  if (!rc) rc = trace_tok_load_mem(a, na, encoder_json, b, nb, merges, out, err);
  free(a);
  free(b);
  return rc;
}

/* ---- tokenizer.json (Hugging Face tokenizers) -------------------------------------------------- */

static yajl_val tok__hf_get(yajl_val obj, const char *key) {
  if (!YAJL_IS_OBJECT(obj)) return NULL;
  for (size_t i = 0; i < obj->u.object.len; i++) {
    if (strcmp(obj->u.object.keys[i], key) == 0) return obj->u.object.values[i];
  }
  return NULL;
}

/* v's string, or NULL when v is absent or not a string. */
static const char *tok__hf_str(yajl_val v) { return YAJL_IS_STRING(v) ? v->u.string : NULL; }

/* 1 when v is absent, null, or false. */
static int tok__hf_off(yajl_val v) { return !v || YAJL_IS_NULL(v) || YAJL_IS_FALSE(v); }

/* What this tokenizer reproduces: model BPE over GPT-2's byte alphabet, pre-tokeniser ByteLevel
 * (GPT-2's pattern, no prefix space), no normaliser, no dropout or word affixes. Anything else is
 * KV_ENOTSUP naming the field, so that a tokenizer.json we would count differently is refused
 * rather than approximated. */
static int tok__hf_check(yajl_val root, const char *name, kv_error *err) {
  yajl_val model = tok__hf_get(root, "model"), v;
  if (!YAJL_IS_OBJECT(model)) {
    return kv_error_set(err, KV_EFORMAT, "%s: no \"model\" object (expected a Hugging Face "
                        "tokenizer.json)", name);
  }
  const char *type = tok__hf_str(v = tok__hf_get(model, "type"));
  if (v && !(type && !strcmp(type, "BPE"))) {
    return kv_error_set(err, KV_ENOTSUP, "%s: model.type is not \"BPE\" (only byte-level BPE "
                        "tokenizers are supported)", name);
  }
  static const char *const off[] = {"dropout", "continuing_subword_prefix", "end_of_word_suffix",
                                    "ignore_merges"};
  for (size_t i = 0; i < sizeof off / sizeof off[0]; i++) {
    if (!tok__hf_off(tok__hf_get(model, off[i]))) {
      return kv_error_set(err, KV_ENOTSUP, "%s: model.%s is set: not supported", name, off[i]);
    }
  }
  if (!tok__hf_off(tok__hf_get(root, "normalizer"))) {
    return kv_error_set(err, KV_ENOTSUP, "%s: a normalizer is set: not supported (byte-level BPE "
                        "without normalisation only)", name);
  }
  yajl_val pre = tok__hf_get(root, "pre_tokenizer");
  type = tok__hf_str(tok__hf_get(pre, "type"));
  if (!type || strcmp(type, "ByteLevel") != 0) {
    return kv_error_set(err, KV_ENOTSUP, "%s: pre_tokenizer is not ByteLevel (GPT-2's pattern): "
                        "not supported", name);
  }
  /* Hugging Face's default for a missing add_prefix_space is true */
  v = tok__hf_get(pre, "add_prefix_space");
  if (!v || !YAJL_IS_FALSE(v)) {
    return kv_error_set(err, KV_ENOTSUP, "%s: pre_tokenizer.add_prefix_space is not false: not "
                        "supported", name);
  }
  v = tok__hf_get(pre, "use_regex");
  if (v && !YAJL_IS_TRUE(v)) {
    return kv_error_set(err, KV_ENOTSUP, "%s: pre_tokenizer.use_regex is false: not supported",
                        name);
  }
  return 0;
}

static int tok__hf_vocab(trace_tok *t, const int16_t *inv, yajl_val vocab, const char *name,
                         kv_error *err) {
  if (!YAJL_IS_OBJECT(vocab)) {
    return kv_error_set(err, KV_EFORMAT, "%s: model.vocab is not an object of token ids", name);
  }
  int64_t cap_ids = 0;
  char key[1024], why[300];
  for (size_t i = 0; i < vocab->u.object.len; i++) {
    const char *k = vocab->u.object.keys[i];
    yajl_val v = vocab->u.object.values[i];
    size_t kn = strlen(k);
    int64_t bl = kn < sizeof key ? tok__unalphabet(inv, k, kn, key) : -2;
    if (bl <= 0) {
      return kv_error_set(err, KV_EFORMAT, "%s: model.vocab: token \"%.60s\" %s", name, k,
                          bl == -2 ? "is longer than 1023 bytes" : bl == 0 ? "is empty"
                          : "has a character outside GPT-2's byte alphabet");
    }
    if (!YAJL_IS_INTEGER(v)) {
      return kv_error_set(err, KV_EFORMAT, "%s: model.vocab: token \"%.60s\": the id is not an "
                          "integer", name, k);
    }
    if (tok__vocab_add(t, key, bl, YAJL_GET_INTEGER(v), &cap_ids, why, sizeof why)) {
      return kv_error_set(err, strcmp(why, "out of memory") ? KV_EFORMAT : KV_ENOMEM,
                          "%s: model.vocab: token \"%.60s\": %s", name, k, why);
    }
  }
  return tok__byte_ids(t, name, err);
}

/* model.merges: "a b" strings (tokenizers < 0.20) or [a, b] pairs (later versions). */
static int tok__hf_merges(trace_tok *t, const int16_t *inv, yajl_val merges, const char *name,
                          kv_error *err) {
  if (!YAJL_IS_ARRAY(merges)) {
    return kv_error_set(err, KV_EFORMAT, "%s: model.merges is not an array", name);
  }
  char *buf = NULL;
  size_t cap = 0;
  int rc = 0;
  for (size_t i = 0; i < merges->u.array.len && !rc; i++) {
    yajl_val m = merges->u.array.values[i];
    const char *a = NULL, *b = NULL;
    size_t la = 0, lb = 0;
    if (YAJL_IS_STRING(m)) {
      a = tok__hf_str(m);
      const char *sp = strchr(a, ' ');
      if (sp && sp > a && sp[1] && !strchr(sp + 1, ' ')) {
        la = (size_t)(sp - a);
        b = sp + 1;
        lb = strlen(b);
      }
    } else if (YAJL_IS_ARRAY(m) && m->u.array.len == 2 && YAJL_IS_STRING(m->u.array.values[0]) &&
               YAJL_IS_STRING(m->u.array.values[1])) {
      a = tok__hf_str(m->u.array.values[0]);
      b = tok__hf_str(m->u.array.values[1]);
      la = strlen(a);
      lb = strlen(b);
    }
    char where[1100];
    snprintf(where, sizeof where, "%s: model.merges[%zu]", name, i);
    if (!b) {
      rc = kv_error_set(err, KV_EFORMAT, "%s: expected \"a b\" or [\"a\", \"b\"]", where);
      break;
    }
    if (la + lb > cap) {
      cap = (la + lb) * 2;
      char *nb = realloc(buf, cap);
      if (!nb) {
        rc = kv_error_set(err, KV_ENOMEM, "%s: out of memory", name);
        break;
      }
      buf = nb;
    }
    rc = tok__merge_add(t, inv, a, la, b, lb, buf, where, err);
  }
  free(buf);
  return rc;
}

int trace_tok_load_hf_mem(const char *json, size_t len, const char *name, trace_tok **out,
                          kv_error *err) {
  *out = NULL;
  if (memchr(json, 0, len)) return kv_error_set(err, KV_EFORMAT, "%s: holds a NUL byte", name);
  char *text = malloc(len + 1);
  if (!text) return kv_error_set(err, KV_ENOMEM, "%s: out of memory", name);
  memcpy(text, json, len);
  text[len] = '\0';
  char why[512] = "";
  yajl_val root = yajl_tree_parse(text, why, sizeof why);
  free(text);
  if (!root) {
    size_t n = strlen(why);
    while (n && (why[n - 1] == '\n' || why[n - 1] == ' ')) why[--n] = '\0';
    for (char *c = why; *c; c++) {
      if (*c == '\n') *c = ' ';
    }
    return kv_error_set(err, KV_EFORMAT, "%s: JSON error: %s", name, why[0] ? why : "?");
  }
  int rc = YAJL_IS_OBJECT(root) ? tok__hf_check(root, name, err)
           : kv_error_set(err, KV_EFORMAT, "%s: expected a JSON object (a Hugging Face "
                          "tokenizer.json)", name);
  trace_tok *t = rc ? NULL : tok__new();
  if (!rc && !t) rc = kv_error_set(err, KV_ENOMEM, "tokenizer: out of memory");
  if (!rc) {
    int16_t inv[512];
    tok__inverse(inv);
    yajl_val model = tok__hf_get(root, "model");
    rc = tok__hf_vocab(t, inv, tok__hf_get(model, "vocab"), name, err);
    if (!rc) rc = tok__hf_merges(t, inv, tok__hf_get(model, "merges"), name, err);
    rc = tok__finish(t, rc, out, err);
  }
  yajl_tree_free(root);
  return rc;
}

int trace_tok_load_hf(const char *path, trace_tok **out, kv_error *err) {
  char *a = NULL;
  size_t na = 0;
  *out = NULL;
  int rc = kv_read_file(path, &a, &na, err);
  if (!rc) rc = trace_tok_load_hf_mem(a, na, path, out, err);
  free(a);
  return rc;
}

int trace_tok_load_path(const char *path, trace_tok **out, kv_error *err) {
  struct stat st;
  *out = NULL;
  if (stat(path, &st) != 0) {
    return kv_error_set(err, KV_ENOENT, "%s: cannot open: %s (a tokenizer: a folder with "
                        "tokenizer.json or encoder.json + vocab.bpe, or a tokenizer.json)", path,
                        strerror(errno));
  }
  if (!S_ISDIR(st.st_mode)) return trace_tok_load_hf(path, out, err);
  char a[4200], b[4200];
  snprintf(a, sizeof a, "%s/tokenizer.json", path);
  if (access(a, F_OK) == 0) return trace_tok_load_hf(a, out, err);
  snprintf(a, sizeof a, "%s/encoder.json", path);
  snprintf(b, sizeof b, "%s/vocab.bpe", path);
  if (access(a, F_OK) == 0 && access(b, F_OK) == 0) return trace_tok_load(a, b, out, err);
  return kv_error_set(err, KV_ENOENT, "%s: holds neither tokenizer.json nor encoder.json and "
                      "vocab.bpe", path);
}

void trace_tok_free(trace_tok *t) {
  if (!t) return;
  free(t->bytes);
  free(t->off);
  free(t->len);
  trace_strmap_free(&t->by_bytes);
  trace_u64map_free(&t->merges);
  trace_strmap_free(&t->cache);
  free(t->cache_ids);
  free(t->w_tok);
  free(t->w_prev);
  free(t->w_next);
  free(t->w_alive);
  free(t->w_heap);
  if (t->md) pcre2_match_data_free(t->md);
  if (t->re) pcre2_code_free(t->re);
  free(t);
}

int32_t trace_tok_vocab_size(const trace_tok *t) { return t->n_ids; }
int32_t trace_tok_n_merges(const trace_tok *t) { return t->n_merges; }

/* ---- BPE on one piece -------------------------------------------------------------------------- */

/* Rank of the pair (a, b) and the merged id, or -1. */
static int64_t tok__pair(const trace_tok *t, int32_t a, int32_t b, int32_t *merged) {
  int64_t *v = trace_u64map_get(&t->merges, (uint64_t)(uint32_t)a << 32 | (uint32_t)b);
  if (!v) return -1;
  *merged = (int32_t)(*v & 0xFFFFFFFF);
  return *v >> 32;
}

/* Heap of (rank << 32 | position), smallest first: lowest rank, then leftmost. */
static void tok__heap_push(uint64_t *h, int64_t *n, uint64_t v) {
  int64_t i = (*n)++;
  while (i > 0) {
    int64_t p = (i - 1) / 2;
    if (h[p] <= v) break;
    h[i] = h[p];
    i = p;
  }
  h[i] = v;
}

static uint64_t tok__heap_pop(uint64_t *h, int64_t *n) {
  uint64_t top = h[0], v = h[--(*n)];
  int64_t i = 0;
  for (;;) {
    int64_t c = 2 * i + 1;
    if (c >= *n) break;
    if (c + 1 < *n && h[c + 1] < h[c]) c++;
    if (v <= h[c]) break;
    h[i] = h[c];
    i = c;
  }
  if (*n > 0) h[i] = v;
  return top;
}

static int tok__work(trace_tok *t, int64_t n) {
  if (n <= t->w_cap) return 0;
  int64_t nc = t->w_cap ? t->w_cap : 256;
  while (nc < n) nc *= 2;
  int32_t *a = realloc(t->w_tok, (size_t)nc * 4);
  if (a) t->w_tok = a;
  int32_t *b = realloc(t->w_prev, (size_t)nc * 4);
  if (b) t->w_prev = b;
  int32_t *c = realloc(t->w_next, (size_t)nc * 4);
  if (c) t->w_next = c;
  uint8_t *d = realloc(t->w_alive, (size_t)nc);
  if (d) t->w_alive = d;
  uint64_t *e = realloc(t->w_heap, (size_t)nc * 3 * 8);
  if (e) t->w_heap = e;
  if (!a || !b || !c || !d || !e) return KV_ENOMEM;
  t->w_cap = nc;
  return 0;
}

/* Encodes one piece; the ids are left in t->w_tok at the alive positions, in order from 0.
 * Returns the token count or KV_ENOMEM. */
static int64_t tok__bpe(trace_tok *t, const unsigned char *p, int64_t n) {
  if (n == 0) return 0;
  if (tok__work(t, n)) return KV_ENOMEM;
  int32_t *tok = t->w_tok, *prev = t->w_prev, *next = t->w_next;
  uint8_t *alive = t->w_alive;
  uint64_t *heap = t->w_heap;
  int64_t hn = 0, count = n;
  for (int64_t i = 0; i < n; i++) {
    tok[i] = t->byte_id[p[i]];
    prev[i] = (int32_t)(i - 1);
    next[i] = i + 1 < n ? (int32_t)(i + 1) : -1;
    alive[i] = 1;
  }
  int32_t m;
  for (int64_t i = 0; i + 1 < n; i++) {
    int64_t r = tok__pair(t, tok[i], tok[i + 1], &m);
    if (r >= 0) tok__heap_push(heap, &hn, (uint64_t)r << 32 | (uint64_t)i);
  }
  while (hn > 0) {
    uint64_t top = tok__heap_pop(heap, &hn);
    int64_t rank = (int64_t)(top >> 32);
    int32_t i = (int32_t)(top & 0xFFFFFFFF);
    if (!alive[i] || next[i] < 0) continue;
    int32_t j = next[i];
    if (tok__pair(t, tok[i], tok[j], &m) != rank) continue; /* stale entry */
    tok[i] = m;
    alive[j] = 0;
    next[i] = next[j];
    if (next[j] >= 0) prev[next[j]] = i;
    count--;
    int32_t merged;
    if (prev[i] >= 0) {
      int64_t r = tok__pair(t, tok[prev[i]], tok[i], &merged);
      if (r >= 0) tok__heap_push(heap, &hn, (uint64_t)r << 32 | (uint64_t)(uint32_t)prev[i]);
    }
    if (next[i] >= 0) {
      int64_t r = tok__pair(t, tok[i], tok[next[i]], &merged);
      if (r >= 0) tok__heap_push(heap, &hn, (uint64_t)r << 32 | (uint64_t)(uint32_t)i);
    }
  }
  /* compact the alive tokens to the front */
  int64_t k = 0;
  for (int32_t i = 0; i >= 0; i = next[i]) tok[k++] = tok[i];
  return count;
}

/* Token ids of one piece: from the cache, or encoded (and cached when short). On success *ids
 * points to *n ids valid until the next call. */
static int tok__piece(trace_tok *t, const char *p, size_t len, const int32_t **ids, int64_t *n) {
  if (len <= TOK_CACHE_MAX_PIECE) {
    int64_t *c = trace_strmap_get(&t->cache, p, len);
    if (c) {
      *ids = t->cache_ids + (*c >> 20);
      *n = *c & 0xFFFFF;
      return 0;
    }
  }
  int64_t cnt = tok__bpe(t, (const unsigned char *)p, (int64_t)len);
  if (cnt < 0) return (int)cnt;
  *ids = t->w_tok;
  *n = cnt;
  if (len <= TOK_CACHE_MAX_PIECE) {
    if (t->cache.n >= TOK_CACHE_MAX_ENTRIES) {
      trace_strmap_free(&t->cache);
      trace_strmap_init(&t->cache);
      t->cache_n = 0;
    }
    if (t->cache_n + cnt > t->cache_cap) {
      int64_t nc = t->cache_cap ? t->cache_cap * 2 : 65536;
      while (nc < t->cache_n + cnt) nc *= 2;
      int32_t *nb = realloc(t->cache_ids, (size_t)nc * sizeof *nb);
      if (!nb) return 0; /* caching is optional */
      t->cache_ids = nb;
      t->cache_cap = nc;
    }
    memcpy(t->cache_ids + t->cache_n, t->w_tok, (size_t)cnt * sizeof *t->w_tok);
    if (trace_strmap_put(&t->cache, p, len, t->cache_n << 20 | cnt) == 0) t->cache_n += cnt;
  }
  return 0;
}

/* ---- pre-tokenisation and the public API ------------------------------------------------------- */

int trace_tok_split(trace_tok *t, const char *text, size_t len,
                    int (*fn)(void *ctx, const char *piece, size_t n), void *ctx, kv_error *err) {
  size_t off = 0;
  while (off < len) {
    int rc = pcre2_match(t->re, (PCRE2_SPTR)text, len, off, 0, t->md, NULL);
    size_t end;
    if (rc > 0) {
      PCRE2_SIZE *ov = pcre2_get_ovector_pointer(t->md);
      end = ov[1] > off ? ov[1] : off + 1;
    } else if (rc == PCRE2_ERROR_NOMATCH) {
      end = off + 1; /* a byte of an invalid UTF-8 sequence */
    } else {
      PCRE2_UCHAR msg[200];
      pcre2_get_error_message(rc, msg, sizeof msg);
      return kv_error_set(err, KV_EINVAL, "tokenizer: PCRE2 match failed at byte %zu: %s", off,
                          (const char *)msg);
    }
    int r = fn(ctx, text + off, end - off);
    if (r) return r;
    off = end;
  }
  return 0;
}

typedef struct tok__enc_ctx {
  trace_tok *t;
  int32_t **ids;
  int64_t *n, *cap;
  int64_t count;
} tok__enc_ctx;

static int tok__enc_piece(void *ctx, const char *p, size_t len) {
  tok__enc_ctx *c = ctx;
  const int32_t *ids = NULL;
  int64_t n = 0;
  if (tok__piece(c->t, p, len, &ids, &n)) return KV_ENOMEM;
  if (c->ids) {
    if (*c->n + n > *c->cap) {
      int64_t nc = *c->cap ? *c->cap : 1024;
      while (nc < *c->n + n) nc *= 2;
      int32_t *nb = realloc(*c->ids, (size_t)nc * sizeof *nb);
      if (!nb) return KV_ENOMEM;
      *c->ids = nb;
      *c->cap = nc;
    }
    memcpy(*c->ids + *c->n, ids, (size_t)n * sizeof *ids);
    *c->n += n;
  }
  c->count += n;
  return 0;
}

int trace_tok_encode(trace_tok *t, const char *text, size_t len, int32_t **ids, int64_t *n,
                     int64_t *cap, kv_error *err) {
  tok__enc_ctx c = {t, ids, n, cap, 0};
  int rc = trace_tok_split(t, text, len, tok__enc_piece, &c, err);
  if (rc == KV_ENOMEM) return kv_error_set(err, KV_ENOMEM, "tokenizer: out of memory");
  return rc;
}

int64_t trace_tok_count(trace_tok *t, const char *text, size_t len, kv_error *err) {
  tok__enc_ctx c = {t, NULL, NULL, NULL, 0};
  int rc = trace_tok_split(t, text, len, tok__enc_piece, &c, err);
  if (rc == KV_ENOMEM) return kv_error_set(err, KV_ENOMEM, "tokenizer: out of memory");
  return rc ? rc : c.count;
}

int trace_tok_decode(const trace_tok *t, const int32_t *ids, int64_t n, char **out, size_t *len,
                     kv_error *err) {
  size_t total = 0;
  for (int64_t i = 0; i < n; i++) {
    if (ids[i] < 0 || ids[i] >= t->n_ids || t->off[ids[i]] < 0) {
      return kv_error_set(err, KV_EINVAL, "tokenizer: id %d at position %lld is not in the "
                          "vocabulary", (int)ids[i], (long long)i);
    }
    total += (size_t)t->len[ids[i]];
  }
  char *b = malloc(total + 1);
  if (!b) return kv_error_set(err, KV_ENOMEM, "tokenizer: out of memory");
  size_t k = 0;
  for (int64_t i = 0; i < n; i++) {
    memcpy(b + k, t->bytes + t->off[ids[i]], (size_t)t->len[ids[i]]);
    k += (size_t)t->len[ids[i]];
  }
  b[k] = '\0';
  *out = b;
  *len = k;
  return 0;
}

/* tokenizer.h — token counting for the importers: a GPT-2-style byte-level BPE tokenizer whose
 * files the user names, and two documented approximations for when no tokenizer is given.
 *
 * BPE (the algorithm of OpenAI's GPT-2 encoder.py, as also implemented by tiktoken's r50k/gpt2
 * encodings and Hugging Face's ByteLevelBPETokenizer):
 *   1. Pre-tokenisation splits the text with GPT-2's pattern
 *        's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 *      (PCRE2, UTF + UCP: \p{L} letters, \p{N} numbers, \s Unicode white space).
 *   2. Each piece's UTF-8 bytes start as single-byte tokens; the adjacent pair with the lowest
 *      merge rank (the line number in the merges file) is merged, leftmost first among equal
 *      ranks, until no adjacent pair has a rank.
 *   3. Tokens map to ids through the vocabulary (encoder.json: token string -> id, token strings
 *      written in GPT-2's printable byte alphabet, e.g. "Ġ" for the byte 0x20).
 * This is "ordinary" encoding: special tokens such as "<|endoftext|>" are encoded as text.
 * Input should be UTF-8; bytes of an invalid UTF-8 sequence (which a Python str cannot hold)
 * are each their own piece, so every input still round-trips through decode.
 * Possible divergence: PCRE2's \s class and Unicode tables may differ from those of Python's
 * `regex` module (which GPT-2 used) on rare code points; not observed on the tested texts.
 *
 * Files: GPT-2's pair (encoder.json + vocab.bpe) or a Hugging Face tokenizer.json of a byte-level
 * BPE (the form traces/record/tokenize_corpus.py trains and saves); trace_tok_load_path takes
 * either file or a folder holding one. None ships with the repository: the user names them.
 *
 * Approximations (no tokenizer files):
 *   TRACE_TOK_APPROX_SCRIPT: the script-aware estimate below (the importers' default);
 *   TRACE_TOK_APPROX_CHARS4: ceil(Unicode code points / 4) — OpenAI's rule of thumb of about
 *     4 characters per token of English text;
 *   TRACE_TOK_APPROX_WORDS:  round(4/3 x words), words = runs of non-white-space — the same
 *     source's "100 tokens ~= 75 words".
 * Their error against the GPT-2 tokenizer is measured by `kvtrace tokenizer-eval` and
 * traces/tools/tok_calibrate.py and reported in docs/trace-format.md.
 *
 * A trace_tok is not thread-safe (it caches encoded pieces); use one per thread.
 */
#ifndef TOKENIZER_H
#define TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "kv_err.h"

typedef struct trace_tok trace_tok;

/* The environment variable the importers read for a tokenizer when none is named on the command
 * line (a path as trace_tok_load_path takes). */
#define TRACE_TOKENIZER_ENV "KVLAB_TOKENIZER"

/* Loads encoder.json (vocabulary) and vocab.bpe (merges; an optional "#version" first line).
 * On success *out is a new tokenizer the caller frees with trace_tok_free. Malformed files are
 * reported with the file and the line (merges) or byte offset (JSON). */
int trace_tok_load(const char *encoder_json, const char *merges, trace_tok **out, kv_error *err);
/* The same from memory; the names stand for the files in messages. */
int trace_tok_load_mem(const char *enc, size_t enc_len, const char *enc_name, const char *merges,
                       size_t merges_len, const char *merges_name, trace_tok **out,
                       kv_error *err);
/* A Hugging Face tokenizer.json: model BPE with vocab and merges ("a b" strings or [a, b] pairs),
 * pre_tokenizer ByteLevel with add_prefix_space false, no normalizer. Other tokenizers are
 * KV_ENOTSUP naming the field (so that nothing is counted by rules this code does not follow).
 * Special tokens (added_tokens) are not split out: text is encoded as ordinary text. */
int trace_tok_load_hf(const char *path, trace_tok **out, kv_error *err);
int trace_tok_load_hf_mem(const char *json, size_t len, const char *name, trace_tok **out,
                          kv_error *err);
/* The tokenizer `path` names: a tokenizer.json file, or a folder holding tokenizer.json (taken
 * first) or encoder.json + vocab.bpe. KV_ENOENT naming the path when it holds neither. */
int trace_tok_load_path(const char *path, trace_tok **out, kv_error *err);
void trace_tok_free(trace_tok *t);

/* Number of ids (largest id + 1) and number of merges. */
int32_t trace_tok_vocab_size(const trace_tok *t);
int32_t trace_tok_n_merges(const trace_tok *t);

/* Appends the ids of text[0..len) to *ids (a malloc'ed array of *cap elements the function
 * grows; the caller frees it) starting at index *n, which it advances. 0 or a negative status. */
int trace_tok_encode(trace_tok *t, const char *text, size_t len, int32_t **ids, int64_t *n,
                     int64_t *cap, kv_error *err);
/* Number of tokens of text[0..len) (no id array), or a negative status. */
int64_t trace_tok_count(trace_tok *t, const char *text, size_t len, kv_error *err);
/* Bytes of ids[0..n) into a malloc'ed buffer (*out, *len; NUL-terminated for convenience).
 * An id outside the vocabulary is KV_EINVAL. */
int trace_tok_decode(const trace_tok *t, const int32_t *ids, int64_t n, char **out, size_t *len,
                     kv_error *err);

/* Calls fn(ctx, piece, piece_len) for each pre-tokenisation piece of text, in order; stops early
 * when fn returns non-zero (that value is returned). 0 or a negative status. */
int trace_tok_split(trace_tok *t, const char *text, size_t len,
                    int (*fn)(void *ctx, const char *piece, size_t n), void *ctx,
                    kv_error *err);

typedef enum trace_tok_approx {
  TRACE_TOK_APPROX_CHARS4 = 0,
  TRACE_TOK_APPROX_WORDS = 1,
  TRACE_TOK_APPROX_SCRIPT = 2   /* the importers' default when no tokenizer is given */
} trace_tok_approx;

/* Approximate token count of text[0..len) (never negative). */
int64_t trace_tok_approx_count(trace_tok_approx m, const char *text, size_t len);
/* "chars/4" / "words*4/3" / "script". */
const char *trace_tok_approx_name(trace_tok_approx m);
/* The approximation named "chars4", "words" or "script"; -1 for any other name. */
int trace_tok_approx_parse(const char *name);

/* The script estimate: tokens = sum over features of weight x count, rounded (at least 1 for a
 * non-empty text). The features follow GPT-2-style pre-tokenisation on ASCII (each run of
 * letters, digits or punctuation is a piece that costs about one token plus its length; a single
 * space before a piece joins it) and count code points per script elsewhere (a CJK ideograph is
 * about two GPT-2 tokens, a Cyrillic letter about one). The weights are fitted by
 * traces/tools/tok_calibrate.py against a BPE tokenizer (GPT-2's) on translated message catalogs;
 * the fit, its held-out error and the text it used are in docs/trace-format.md section 4. */
typedef enum trace_tok_feature {
  /* each unit count is followed by its runs (LETTERS/WORDS, DIGITS/NUMBERS, PUNCT/PUNCT_RUNS) */
  TRACE_TOK_F_LETTERS = 0, /* ASCII letters */
  TRACE_TOK_F_WORDS,       /* runs of ASCII letters */
  TRACE_TOK_F_DIGITS,      /* ASCII digits */
  TRACE_TOK_F_NUMBERS,     /* runs of ASCII digits */
  TRACE_TOK_F_PUNCT,       /* other ASCII (punctuation, symbols, control characters) */
  TRACE_TOK_F_PUNCT_RUNS,  /* runs of them */
  TRACE_TOK_F_SPACE,       /* ASCII white space, less each single space that joins the piece after it */
  TRACE_TOK_F_TWO_BYTE,    /* U+0080..U+07FF: Latin-1 and Latin Extended, Greek, Cyrillic, Hebrew, Arabic, ... */
  TRACE_TOK_F_HAN,         /* CJK ideographs: U+3400..U+4DBF, U+4E00..U+9FFF, U+F900..U+FAFF, U+20000..U+3FFFF */
  TRACE_TOK_F_KANA,        /* hiragana and katakana: U+3040..U+30FF */
  TRACE_TOK_F_HANGUL,      /* U+1100..U+11FF, U+3130..U+318F, U+AC00..U+D7AF */
  TRACE_TOK_F_CJK_PUNCT,   /* CJK and full-width punctuation and forms: U+3000..U+303F, U+FE30..U+FE4F, U+FF00..U+FFEF */
  TRACE_TOK_F_OTHER,       /* every other code point (Indic, Thai, symbols, emoji, ...); each byte of invalid UTF-8 */
  TRACE_TOK_F_COUNT
} trace_tok_feature;
extern const char *const trace_tok_feature_names[]; /* "letters", "words", ... (TRACE_TOK_F_COUNT) */
extern const double trace_tok_script_weights[TRACE_TOK_F_COUNT]; /* tokens per unit */

/* Counts the features of text[0..len) into f (zeroed first). */
void trace_tok_features(const char *text, size_t len, int64_t f[TRACE_TOK_F_COUNT]);
/* 1 when code point cp is in a script no weight was fitted to (Armenian, Hebrew, Arabic and the
 * rest of U+0530..U+07FF; Indic, Thai and the other scripts outside CJK; emoji): the estimate
 * of such text is rough (the importers warn). ASCII, Latin, Greek, Cyrillic, CJK, kana, Hangul,
 * general punctuation and symbols are 0. */
int trace_tok_script_rough(uint32_t cp);
#endif /* TOKENIZER_H */

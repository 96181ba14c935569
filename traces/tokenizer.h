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
 * Approximations (no tokenizer files):
 *   TRACE_TOK_APPROX_CHARS4: ceil(Unicode code points / 4) — OpenAI's rule of thumb of about
 *     4 characters per token of English text;
 *   TRACE_TOK_APPROX_WORDS:  round(4/3 x words), words = runs of non-white-space — the same
 *     source's "100 tokens ~= 75 words".
 * Their error against the GPT-2 tokenizer is measured by `kvtrace tokenizer-eval` and reported
 * in docs/trace-format.md.
 *
 * A trace_tok is not thread-safe (it caches encoded pieces); use one per thread.
 */
#ifndef TOKENIZER_H
#define TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "kv_err.h"

typedef struct trace_tok trace_tok;

/* Loads encoder.json (vocabulary) and vocab.bpe (merges; an optional "#version" first line).
 * On success *out is a new tokenizer the caller frees with trace_tok_free. Malformed files are
 * reported with the file and the line (merges) or byte offset (JSON). */
int trace_tok_load(const char *encoder_json, const char *merges, trace_tok **out, kv_error *err);
/* The same from memory; the names stand for the files in messages. */
int trace_tok_load_mem(const char *enc, size_t enc_len, const char *enc_name, const char *merges,
                       size_t merges_len, const char *merges_name, trace_tok **out,
                       kv_error *err);
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
  TRACE_TOK_APPROX_WORDS = 1
} trace_tok_approx;

/* Approximate token count of text[0..len) (never negative). */
int64_t trace_tok_approx_count(trace_tok_approx m, const char *text, size_t len);
/* "chars/4" / "words*4/3". */
const char *trace_tok_approx_name(trace_tok_approx m);

#endif /* TOKENIZER_H */

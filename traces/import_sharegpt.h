/* import_sharegpt.h — ShareGPT conversation dumps:
 *   [{"id": "QWJhYvA_0", "conversations": [{"from": "human", "value": "..."}, ...]}, ...]
 * (also accepted: one such object per line (JSONL), "role"/"content" for "from"/"value",
 * "conversation"/"messages" for "conversations"; other keys are ignored).
 *
 * Streaming: the file is fed to yajl's callback parser in 64 KiB chunks, and a conversation is
 * reduced to per-message token counts as soon as each message string is complete, so memory is
 * bounded by the longest single message plus one conversation's message counts, whatever the
 * file size.
 *
 * Roles: human, user -> prompt; gpt, chatgpt, bard, model, assistant -> output (model);
 * system -> prompt context: its tokens join the next prompt's new tokens. Any other role makes
 * the record malformed. Roles are matched case-insensitively.
 *
 * Turns: consecutive messages of one side are merged; a turn is a prompt run followed by an
 * output run: new_tokens = the prompt run's tokens, output_tokens = the output run's tokens,
 * input_tokens = previous input + previous output + new (flag TRACE_FLAG_FULL_HISTORY).
 *   - A conversation that starts with the model: with TRACE_SHAREGPT_LEAD_AS_PROMPT (default)
 *     the leading model messages count as context of the first prompt (their tokens join the
 *     first turn's new tokens: the model sees them before it answers); with
 *     TRACE_SHAREGPT_LEAD_DROP they are dropped. Both are counted in stats.
 *   - A final prompt without an answer is dropped (no output length exists), and counted.
 *   - A conversation without any complete turn is dropped, and counted.
 * Token counts are of the message text only (no chat template), plus msg_overhead tokens per
 * message when set.
 *
 * Continuation segments: ids ending in "_<digits>" are segments of one conversation split by
 * length (e.g. by FastChat). A record whose id has the same base as the conversation being
 * built, with a larger suffix, is appended to it (gaps in the suffixes are counted). A segment
 * whose base was already finished earlier in the file (not adjacent) starts a new session and
 * is counted as non-adjacent. A malformed segment drops its whole conversation.
 *
 * Times: ShareGPT has none. Every session arrives at 0, first turns have think_ns 0 and later
 * turns -1 (unknown); assign arrivals and think times with trace_gen_retime (trace_gen.h).
 * Session ids are the 0-based positions of each conversation's first record in the file.
 *
 * Errors: a malformed record is reported as "file: record N (id "...", line L, byte B): why"
 * and skipped or fatal per opts; a JSON syntax error is always fatal ("file: line L, byte B:
 * JSON syntax error: ..."), since a streaming parser cannot resynchronise.
 */
#ifndef IMPORT_SHAREGPT_H
#define IMPORT_SHAREGPT_H

#include <stdio.h>

#include "tokenizer.h"
#include "trace.h"
#include "trace_import.h"

typedef enum trace_sharegpt_lead {
  TRACE_SHAREGPT_LEAD_AS_PROMPT = 0,
  TRACE_SHAREGPT_LEAD_DROP = 1
} trace_sharegpt_lead;

typedef struct trace_sharegpt_opts {
  trace_import_opts base;
  trace_tok *tok;               /* borrowed; NULL: count with `approx` */
  trace_tok_approx approx;
  const char *tokenizer_name;   /* recorded in trace.tokenizer (e.g. the files' directory) */
  trace_sharegpt_lead lead;
  int32_t msg_overhead;         /* tokens added per message (>= 0) */
} trace_sharegpt_opts;

typedef struct trace_sharegpt_stats {
  trace_import_stats base;      /* records = JSON records (segments) read */
  int64_t conversations;        /* conversations after joining segments */
  int64_t joined_segments;      /* records appended to the previous record's conversation */
  int64_t segment_gaps;         /* joins where the suffix skipped numbers */
  int64_t nonadjacent_segments; /* segments whose conversation was finished earlier */
  int64_t model_first;          /* conversations whose first message is the model's */
  int64_t trailing_prompts;     /* final prompts without an answer, dropped */
  int64_t system_messages;
  int64_t empty;                /* conversations without a complete turn, dropped */
  int64_t messages;
  int64_t text_bytes;           /* bytes of message text tokenised */
  int64_t tokens;               /* tokens counted over all messages */
} trace_sharegpt_stats;

void trace_sharegpt_opts_init(trace_sharegpt_opts *o);

/* Imports `path` through the importer registry (trace_importers.c, which holds this wrapper).
 * opts/st may be NULL. */
int trace_import_sharegpt(const char *path, const trace_sharegpt_opts *opts, trace *t,
                          trace_sharegpt_stats *st, kv_error *err);
int trace_import_sharegpt_stream(FILE *f, const char *name, const trace_sharegpt_opts *opts,
                                 trace *t, trace_sharegpt_stats *st, kv_error *err);

#endif /* IMPORT_SHAREGPT_H */

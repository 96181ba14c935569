/* trace.h — the project's workload model: sessions of turns (multi-turn conversations) or single
 * requests, with arrival times, token counts and optional prefix-block hashes.
 *
 * This header is the in-memory contract shared by the importers and generator (traces/) and the
 * simulator (sim/). The on-disk format (HDF5 with a CSV export) is in trace_io.h and
 * docs/trace-format.md.
 *
 * Token accounting of a turn:
 *   input_tokens  = the whole prompt the model sees for this turn (history + new text)
 *   new_tokens    = tokens that are new in this turn (the user's message); the rest,
 *                   input_tokens - new_tokens, is history that a KV cache may hold
 *   output_tokens = tokens generated
 * For a conversation replayed in full (ShareGPT-style) turn i's history is turn i-1's
 * input_tokens + output_tokens; trace_check() verifies that when flags has
 * TRACE_FLAG_FULL_HISTORY. Production traces (Mooncake) carry their own input lengths and
 * prefix hashes instead.
 *
 * Time: integer nanoseconds from the trace's start.
 *   arrival_ns  = when the turn's request arrives in an open-loop replay (as recorded)
 *   think_ns    = user think time between the previous turn's completion and this turn's
 *                 arrival in a closed-loop replay; 0 for a session's first turn; -1 unknown.
 * A session's first turn arrives at the session's arrival_ns in both replays.
 *
 * Hashes: when block_tokens > 0 a turn may list the hashes of its input's blocks of
 * block_tokens tokens (the last block may be partial); equal hashes mean equal prefixes.
 */
#ifndef TRACE_H
#define TRACE_H

#include <stdint.h>

#include "kv_err.h"

#define TRACE_FORMAT_VERSION 1

enum {
  TRACE_FLAG_FULL_HISTORY = 1u << 0,  /* history of turn i = input + output of turn i-1 */
  TRACE_FLAG_OPEN_LOOP = 1u << 1,     /* arrival_ns is authoritative (recorded timestamps) */
  TRACE_FLAG_HAS_HASHES = 1u << 2     /* turns carry prefix-block hashes */
};

typedef struct trace_turn {
  int64_t arrival_ns;
  int64_t think_ns;
  int32_t input_tokens;
  int32_t new_tokens;
  int32_t output_tokens;
  int32_t session;        /* index into sessions */
  int32_t index;          /* turn index within the session, 0-based */
  int32_t n_hashes;
  int64_t hash_off;       /* offset into trace.hashes */
} trace_turn;

typedef struct trace_session {
  int64_t id;             /* id from the source (or a generated one) */
  int64_t arrival_ns;     /* arrival of the first turn */
  int64_t first_turn;     /* index into turns; a session's turns are consecutive */
  int32_t n_turns;
} trace_session;

typedef struct trace {
  char name[256];         /* e.g. "sharegpt-gen seed=1", "mooncake conversation" */
  char source[512];       /* file or generator description */
  char tokenizer[256];    /* how tokens were counted */
  uint32_t flags;
  int32_t block_tokens;   /* tokens per hash block (0 = no hashes) */
  trace_session *sessions;
  int64_t n_sessions, cap_sessions;
  trace_turn *turns;      /* grouped by session, in session order */
  int64_t n_turns, cap_turns;
  uint64_t *hashes;
  int64_t n_hashes, cap_hashes;
} trace;

/* Initialises an empty trace (no allocation). */
void trace_init(trace *t);
void trace_free(trace *t);

/* Starts a new session; subsequent trace_add_turn calls append to it. Returns its index or a
 * negative status. Sessions must be added in order of arrival_ns (ties allowed). */
int64_t trace_add_session(trace *t, int64_t id, int64_t arrival_ns, kv_error *err);
/* Appends a turn to the last session (copies `n_hashes` hashes; hashes may be NULL when 0).
 * Rejects negative or overflowing token counts, new_tokens > input_tokens, and arrival before
 * the session's arrival. Returns the turn index or a negative status. */
int64_t trace_add_turn(trace *t, int64_t arrival_ns, int64_t think_ns, int64_t input_tokens,
                       int64_t new_tokens, int64_t output_tokens, const uint64_t *hashes,
                       int32_t n_hashes, kv_error *err);

/* Checks every invariant listed above (and hash counts vs block_tokens); the first violation
 * is reported with the session id and turn index. */
int trace_check(const trace *t, kv_error *err);

/* A session's total tokens: its last turn's input + output (the final context), 0 when it has
 * no turns. For a TRACE_FLAG_FULL_HISTORY trace this is the sum of all new and output tokens. */
int64_t trace_session_tokens(const trace *t, int64_t s);

/* 1 when the trace says when things happen: some session arrives after 0, or some turn has a
 * positive think time. 0 for an untimed trace (a ShareGPT import without --rate: every session
 * at t = 0, think times unknown), which a timed replay would start all at once. */
int trace_has_timing(const trace *t);

/* Replays responses as given text instead of generated tokens ("teacher forcing"): in a
 * TRACE_FLAG_FULL_HISTORY trace, every turn generates only its first output token and the rest
 * of its recorded response enters the next turn's new tokens (it must be prefilled there, since
 * no KV was generated for it); a session's last turn drops the rest. Input tokens and the
 * history invariant are unchanged. Prefix-block hashes, which describe the input, stay valid.
 * KV_EINVAL when the trace lacks TRACE_FLAG_FULL_HISTORY. */
int trace_teacher_force(trace *t, kv_error *err);

/* Turn i's hashes (NULL when it has none). */
static inline const uint64_t *trace_turn_hashes(const trace *t, const trace_turn *u) {
  return u->n_hashes ? t->hashes + u->hash_off : (const uint64_t *)0;
}

#endif /* TRACE_H */

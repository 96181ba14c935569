#include "trace.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void trace_init(trace *t) { memset(t, 0, sizeof *t); }

void trace_free(trace *t) {
  free(t->sessions);
  free(t->turns);
  free(t->hashes);
  trace_init(t);
}

/* Grows *p (elements of size sz) to hold at least need elements. */
static int trace__grow(void **p, int64_t *cap, int64_t need, size_t sz) {
  if (need <= *cap) return 0;
  int64_t nc = *cap ? *cap : 64;
  while (nc < need) nc *= 2;
  void *np = realloc(*p, (size_t)nc * sz);
  if (!np) return KV_ENOMEM;
  *p = np;
  *cap = nc;
  return 0;
}

int64_t trace_add_session(trace *t, int64_t id, int64_t arrival_ns, kv_error *err) {
  if (arrival_ns < 0) {
    return kv_error_set(err, KV_ERANGE, "session %lld: negative arrival time %lld", (long long)id,
                        (long long)arrival_ns);
  }
  if (t->n_sessions > 0 && arrival_ns < t->sessions[t->n_sessions - 1].arrival_ns) {
    return kv_error_set(err, KV_ERANGE,
                        "session %lld: arrival %lld ns is before the previous session's %lld ns",
                        (long long)id, (long long)arrival_ns,
                        (long long)t->sessions[t->n_sessions - 1].arrival_ns);
  }
  if (trace__grow((void **)&t->sessions, &t->cap_sessions, t->n_sessions + 1,
                  sizeof *t->sessions)) {
    return kv_error_set(err, KV_ENOMEM, "trace: out of memory (sessions)");
  }
  trace_session *s = &t->sessions[t->n_sessions];
  s->id = id;
  s->arrival_ns = arrival_ns;
  s->first_turn = t->n_turns;
  s->n_turns = 0;
  return t->n_sessions++;
}

int64_t trace_add_turn(trace *t, int64_t arrival_ns, int64_t think_ns, int64_t input_tokens,
                       int64_t new_tokens, int64_t output_tokens, const uint64_t *hashes,
                       int32_t n_hashes, kv_error *err) {
  if (t->n_sessions == 0) return kv_error_set(err, KV_ESTATE, "trace: turn before any session");
  trace_session *s = &t->sessions[t->n_sessions - 1];
  long long sid = (long long)s->id;
  int idx = s->n_turns;
  if (input_tokens < 0 || new_tokens < 0 || output_tokens < 0) {
    return kv_error_set(err, KV_ERANGE, "session %lld turn %d: negative token count", sid, idx);
  }
  if (input_tokens > INT32_MAX || output_tokens > INT32_MAX) {
    return kv_error_set(err, KV_ERANGE, "session %lld turn %d: token count exceeds 2^31-1", sid,
                        idx);
  }
  if (new_tokens > input_tokens) {
    return kv_error_set(err, KV_ERANGE,
                        "session %lld turn %d: new tokens %lld exceed input tokens %lld", sid,
                        idx, (long long)new_tokens, (long long)input_tokens);
  }
  if (arrival_ns < s->arrival_ns) {
    return kv_error_set(err, KV_ERANGE, "session %lld turn %d: arrival before its session's",
                        sid, idx);
  }
  if (think_ns < -1) {
    return kv_error_set(err, KV_ERANGE, "session %lld turn %d: negative think time", sid, idx);
  }
  if (n_hashes < 0 || (n_hashes > 0 && !hashes)) {
    return kv_error_set(err, KV_EINVAL, "session %lld turn %d: bad hash list", sid, idx);
  }
  if (s->n_turns == INT32_MAX) {
    return kv_error_set(err, KV_ERANGE, "session %lld: too many turns", sid);
  }
  if (trace__grow((void **)&t->turns, &t->cap_turns, t->n_turns + 1, sizeof *t->turns) ||
      trace__grow((void **)&t->hashes, &t->cap_hashes, t->n_hashes + n_hashes,
                  sizeof *t->hashes)) {
    return kv_error_set(err, KV_ENOMEM, "trace: out of memory (turns)");
  }
  trace_turn *u = &t->turns[t->n_turns];
  u->arrival_ns = arrival_ns;
  u->think_ns = think_ns;
  u->input_tokens = (int32_t)input_tokens;
  u->new_tokens = (int32_t)new_tokens;
  u->output_tokens = (int32_t)output_tokens;
  u->session = (int32_t)(t->n_sessions - 1);
  u->index = idx;
  u->n_hashes = n_hashes;
  u->hash_off = t->n_hashes;
  if (n_hashes) memcpy(t->hashes + t->n_hashes, hashes, (size_t)n_hashes * sizeof *hashes);
  t->n_hashes += n_hashes;
  s->n_turns++;
  return t->n_turns++;
}

int trace_check(const trace *t, kv_error *err) {
  int64_t expect_turn = 0;
  for (int64_t i = 0; i < t->n_sessions; i++) {
    const trace_session *s = &t->sessions[i];
    long long sid = (long long)s->id;
    if (s->first_turn != expect_turn || s->n_turns < 0 ||
        s->first_turn + s->n_turns > t->n_turns) {
      return kv_error_set(err, KV_EFORMAT, "session %lld: turn range is inconsistent", sid);
    }
    if (i > 0 && s->arrival_ns < t->sessions[i - 1].arrival_ns) {
      return kv_error_set(err, KV_EFORMAT, "session %lld: sessions not in arrival order", sid);
    }
    expect_turn += s->n_turns;
    for (int32_t k = 0; k < s->n_turns; k++) {
      const trace_turn *u = &t->turns[s->first_turn + k];
      if (u->session != i || u->index != k) {
        return kv_error_set(err, KV_EFORMAT, "session %lld turn %d: wrong back-reference", sid, k);
      }
      if (u->input_tokens < 0 || u->new_tokens < 0 || u->output_tokens < 0 ||
          u->new_tokens > u->input_tokens) {
        return kv_error_set(err, KV_EFORMAT, "session %lld turn %d: bad token counts", sid, k);
      }
      if (u->arrival_ns < s->arrival_ns || (k == 0 && u->arrival_ns != s->arrival_ns)) {
        return kv_error_set(err, KV_EFORMAT, "session %lld turn %d: arrival %lld ns inconsistent "
                            "with the session's %lld ns", sid, k, (long long)u->arrival_ns,
                            (long long)s->arrival_ns);
      }
      if (k > 0 && u->arrival_ns < t->turns[s->first_turn + k - 1].arrival_ns) {
        return kv_error_set(err, KV_EFORMAT, "session %lld turn %d: arrives before turn %d", sid,
                            k, k - 1);
      }
      if (k == 0 && u->think_ns > 0) {
        return kv_error_set(err, KV_EFORMAT, "session %lld: first turn has a think time", sid);
      }
      if ((t->flags & TRACE_FLAG_FULL_HISTORY) && k > 0) {
        const trace_turn *p = &t->turns[s->first_turn + k - 1];
        int64_t hist = (int64_t)p->input_tokens + p->output_tokens;
        if ((int64_t)u->input_tokens - u->new_tokens != hist) {
          return kv_error_set(err, KV_EFORMAT,
                              "session %lld turn %d: history %d tokens, expected %lld (previous "
                              "input + output)", sid, k, u->input_tokens - u->new_tokens,
                              (long long)hist);
        }
      }
      if (u->n_hashes < 0 || u->hash_off < 0 || u->hash_off + u->n_hashes > t->n_hashes) {
        return kv_error_set(err, KV_EFORMAT, "session %lld turn %d: hash range out of bounds",
                            sid, k);
      }
      if (u->n_hashes > 0) {
        if (t->block_tokens <= 0) {
          return kv_error_set(err, KV_EFORMAT, "session %lld turn %d: hashes without block size",
                              sid, k);
        }
        int64_t need = ((int64_t)u->input_tokens + t->block_tokens - 1) / t->block_tokens;
        if (u->n_hashes > need) {
          return kv_error_set(err, KV_EFORMAT,
                              "session %lld turn %d: %d hashes for %d input tokens (at most %lld "
                              "blocks of %d)", sid, k, u->n_hashes, u->input_tokens,
                              (long long)need, t->block_tokens);
        }
      }
    }
  }
  if (expect_turn != t->n_turns) {
    return kv_error_set(err, KV_EFORMAT, "trace: %lld turns belong to no session",
                        (long long)(t->n_turns - expect_turn));
  }
  return 0;
}

int64_t trace_session_tokens(const trace *t, int64_t s) {
  const trace_session *ss = &t->sessions[s];
  if (ss->n_turns == 0) return 0;
  const trace_turn *u = &t->turns[ss->first_turn + ss->n_turns - 1];
  return (int64_t)u->input_tokens + u->output_tokens;
}

int trace_has_timing(const trace *t) {
  for (int64_t i = 0; i < t->n_sessions; i++) {
    if (t->sessions[i].arrival_ns > 0) return 1;
  }
  for (int64_t i = 0; i < t->n_turns; i++) {
    if (t->turns[i].think_ns > 0) return 1;
  }
  return 0;
}

int trace_teacher_force(trace *t, kv_error *err) {
  if (!(t->flags & TRACE_FLAG_FULL_HISTORY)) {
    return kv_error_set(err, KV_EINVAL, "%s: teacher forcing needs a full-history trace (each "
                        "turn's history is the previous turn's input + output)", t->name);
  }
  for (int64_t s = 0; s < t->n_sessions; s++) {
    const trace_session *ss = &t->sessions[s];
    for (int32_t k = 0; k < ss->n_turns; k++) {
      trace_turn *u = &t->turns[ss->first_turn + k];
      if (u->output_tokens <= 1) continue;
      int32_t rest = u->output_tokens - 1;
      u->output_tokens = 1;
      if (k + 1 < ss->n_turns) {
        trace_turn *v = &t->turns[ss->first_turn + k + 1];
        v->new_tokens += rest; /* input_tokens already counts the response */
      }
    }
  }
  snprintf(t->tokenizer + strlen(t->tokenizer), sizeof t->tokenizer - strlen(t->tokenizer),
           "%s", strstr(t->tokenizer, "; teacher-forced") ? "" : "; teacher-forced");
  return trace_check(t, err);
}

#include "import_mooncake.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <yajl/yajl_parse.h>

#include "kv_fs.h"
#include "trace_map.h"
#include "trace_text.h"

void trace_mooncake_opts_init(trace_mooncake_opts *o) {
  memset(o, 0, sizeof *o);
  trace_import_opts_init(&o->base);
  o->block_tokens = 512;
  o->min_shared_blocks = 2;
}

/* ---- one line: a JSON object parsed with yajl's callback parser -------------------------------- */

enum { MOON_K_NONE, MOON_K_TS, MOON_K_IN, MOON_K_OUT, MOON_K_HASH, MOON_K_OTHER };

typedef struct moon__line {
  int level;            /* JSON nesting depth */
  int key;              /* key whose value is being parsed (at level 1) */
  int in_hash;          /* inside the hash_ids array (level 2) */
  int seen[5];
  int64_t v[4];         /* indexed by MOON_K_TS..MOON_K_OUT */
  uint64_t *hashes;     /* growable, reused across lines */
  int64_t n_hashes, cap_hashes;
  char why[200];        /* why a callback cancelled the parse */
} moon__line;

static const char *const moon__names[] = {"", "timestamp", "input_length", "output_length",
                                         "hash_ids", ""};

static int moon__fail(moon__line *L, const char *msg) {
  snprintf(L->why, sizeof L->why, "%s", msg);
  return 0;
}

static int moon__scalar(moon__line *L, const char *what) {
  if (L->level == 0) return moon__fail(L, "the line is not a JSON object");
  if (L->level == 1 && L->key >= MOON_K_TS && L->key <= MOON_K_HASH) {
    snprintf(L->why, sizeof L->why, "%s must be %s, not %s", moon__names[L->key],
             L->key == MOON_K_HASH ? "an array of integers" : "an integer", what);
    return 0;
  }
  if (L->in_hash && L->level == 2) {
    snprintf(L->why, sizeof L->why, "hash_ids must hold integers, not %s", what);
    return 0;
  }
  return 1; /* a value of an ignored key */
}

static int moon__null(void *ctx) { return moon__scalar(ctx, "null"); }
static int moon__bool(void *ctx, int b) {
  (void)b;
  return moon__scalar(ctx, "a boolean");
}
static int moon__string(void *ctx, const unsigned char *s, size_t n) {
  (void)s;
  (void)n;
  return moon__scalar(ctx, "a string");
}

static int moon__number(void *ctx, const char *s, size_t n) {
  moon__line *L = ctx;
  if (L->level == 0) return moon__fail(L, "the line is not a JSON object");
  int target = 0;
  if (L->level == 1 && L->key >= MOON_K_TS && L->key <= MOON_K_OUT) target = L->key;
  else if (L->level == 1 && L->key == MOON_K_HASH) return moon__fail(L, "hash_ids is not an array");
  else if (L->in_hash && L->level == 2) target = MOON_K_HASH;
  else return 1;
  char buf[64];
  if (n >= sizeof buf) {
    snprintf(L->why, sizeof L->why, "%s: number with more than 63 characters",
             moon__names[target]);
    return 0;
  }
  memcpy(buf, s, n);
  buf[n] = '\0';
  if (target == MOON_K_HASH) {
    uint64_t h;
    int rc = trace_parse_u64(buf, &h);
    if (rc) {
      snprintf(L->why, sizeof L->why, "hash_ids[%lld] = %s is not %s", (long long)L->n_hashes,
               buf, rc == KV_ERANGE ? "below 2^64" : "a non-negative integer");
      return 0;
    }
    if (trace_import_push_u64(&L->hashes, &L->n_hashes, &L->cap_hashes, h)) {
      return moon__fail(L, "out of memory");
    }
    return 1;
  }
  int64_t v;
  int rc = trace_parse_i64(buf, &v);
  if (rc) {
    snprintf(L->why, sizeof L->why, "%s = %s is not %s", moon__names[target], buf,
             rc == KV_ERANGE ? "within 64 bits" : "an integer");
    return 0;
  }
  if (v < 0) {
    snprintf(L->why, sizeof L->why, "%s = %s is negative", moon__names[target], buf);
    return 0;
  }
  if (target != MOON_K_TS && v > INT32_MAX) {
    snprintf(L->why, sizeof L->why, "%s = %s exceeds 2^31-1", moon__names[target], buf);
    return 0;
  }
  L->v[target - MOON_K_TS] = v;
  return 1;
}

static int moon__start_map(void *ctx) {
  moon__line *L = ctx;
  if (L->level == 1 && L->key >= MOON_K_TS && L->key <= MOON_K_HASH) {
    return moon__scalar(L, "an object");
  }
  if (L->in_hash && L->level == 2) return moon__scalar(L, "an object");
  L->level++;
  return 1;
}

static int moon__map_key(void *ctx, const unsigned char *k, size_t n) {
  moon__line *L = ctx;
  if (L->level != 1) return 1;
  int key = MOON_K_OTHER;
  for (int i = MOON_K_TS; i <= MOON_K_HASH; i++) {
    if (strlen(moon__names[i]) == n && memcmp(k, moon__names[i], n) == 0) key = i;
  }
  if (key != MOON_K_OTHER) {
    if (L->seen[key]) {
      snprintf(L->why, sizeof L->why, "duplicate key '%s'", moon__names[key]);
      return 0;
    }
    L->seen[key] = 1;
  }
  L->key = key;
  return 1;
}

static int moon__end_map(void *ctx) {
  moon__line *L = ctx;
  L->level--;
  return 1;
}

static int moon__start_array(void *ctx) {
  moon__line *L = ctx;
  if (L->level == 0) return moon__fail(L, "the line is not a JSON object");
  if (L->level == 1 && L->key >= MOON_K_TS && L->key <= MOON_K_OUT) {
    return moon__scalar(L, "an array");
  }
  if (L->in_hash && L->level == 2) return moon__scalar(L, "an array");
  if (L->level == 1 && L->key == MOON_K_HASH) L->in_hash = 1;
  L->level++;
  return 1;
}

static int moon__end_array(void *ctx) {
  moon__line *L = ctx;
  L->level--;
  if (L->level == 1) L->in_hash = 0;
  return 1;
}

static const yajl_callbacks moon__callbacks = {
    moon__null, moon__bool, NULL, NULL, moon__number, moon__string, moon__start_map,
    moon__map_key, moon__end_map, moon__start_array, moon__end_array};

/* Parses one line into L. Returns 0, or KV_EFORMAT with `msg` (cap bytes) saying why. */
static int moon__parse_line(moon__line *L, const char *line, size_t len, char *msg, size_t cap) {
  L->level = 0;
  L->key = MOON_K_NONE;
  L->in_hash = 0;
  memset(L->seen, 0, sizeof L->seen);
  L->n_hashes = 0;
  L->why[0] = '\0';
  yajl_handle h = yajl_alloc(&moon__callbacks, NULL, L);
  if (!h) {
    snprintf(msg, cap, "out of memory");
    return KV_ENOMEM;
  }
  yajl_status s = yajl_parse(h, (const unsigned char *)line, len);
  if (s == yajl_status_ok) s = yajl_complete_parse(h);
  int rc = 0;
  if (s == yajl_status_client_canceled) {
    snprintf(msg, cap, "%s", L->why);
    rc = strcmp(L->why, "out of memory") == 0 ? KV_ENOMEM : KV_EFORMAT;
  } else if (s != yajl_status_ok) {
    unsigned char *e = yajl_get_error(h, 0, (const unsigned char *)line, len);
    snprintf(msg, cap, "JSON syntax error at byte %zu of the line: %s",
             yajl_get_bytes_consumed(h), e ? (const char *)e : "?");
    /* strip yajl's trailing newline */
    size_t ml = strlen(msg);
    while (ml && (msg[ml - 1] == '\n' || msg[ml - 1] == ' ')) msg[--ml] = '\0';
    if (e) yajl_free_error(h, e);
    rc = KV_EFORMAT;
  } else {
    for (int k = MOON_K_TS; k <= MOON_K_HASH; k++) {
      if (!L->seen[k]) {
        snprintf(msg, cap, "missing key '%s'", moon__names[k]);
        rc = KV_EFORMAT;
        break;
      }
    }
  }
  yajl_free(h);
  return rc;
}

/* ---- trie over hash sequences: (parent node, hash) -> child node ---------------------------- */

typedef struct moon__trie {
  int64_t *e_parent;   /* edge table, open addressing (cap) */
  uint64_t *e_hash;
  int64_t *e_child;    /* -1 = empty */
  int64_t cap, n_edges;
  int64_t *last;       /* per node: most recent request through it */
  int64_t n_nodes, cap_nodes;
} moon__trie;

static uint64_t moon__edge_hash(int64_t parent, uint64_t h) {
  return trace_mix64((uint64_t)parent * 0x9e3779b97f4a7c15ull ^ trace_mix64(h));
}

static int64_t moon__trie_child(const moon__trie *T, int64_t parent, uint64_t h) {
  int64_t mask = T->cap - 1;
  for (int64_t i = (int64_t)(moon__edge_hash(parent, h) & (uint64_t)mask);; i = (i + 1) & mask) {
    if (T->e_child[i] < 0) return -1;
    if (T->e_parent[i] == parent && T->e_hash[i] == h) return T->e_child[i];
  }
}

static int moon__trie_init(moon__trie *T, int64_t expect_edges) {
  memset(T, 0, sizeof *T);
  int64_t cap = 1024;
  while (cap < expect_edges * 2) cap *= 2;
  T->cap = cap;
  T->e_parent = malloc((size_t)cap * sizeof *T->e_parent);
  T->e_hash = malloc((size_t)cap * sizeof *T->e_hash);
  T->e_child = malloc((size_t)cap * sizeof *T->e_child);
  T->cap_nodes = expect_edges + 1;
  T->last = malloc((size_t)T->cap_nodes * sizeof *T->last);
  if (!T->e_parent || !T->e_hash || !T->e_child || !T->last) return KV_ENOMEM;
  for (int64_t i = 0; i < cap; i++) T->e_child[i] = -1;
  T->n_nodes = 1; /* root */
  T->last[0] = -1;
  return 0;
}

static void moon__trie_free(moon__trie *T) {
  free(T->e_parent);
  free(T->e_hash);
  free(T->e_child);
  free(T->last);
}

/* Adds edge parent -h-> new node (the table is sized for all edges up front). */
static int64_t moon__trie_add(moon__trie *T, int64_t parent, uint64_t h) {
  if (T->n_nodes == T->cap_nodes || (T->n_edges + 1) * 2 > T->cap) return -1;
  int64_t mask = T->cap - 1;
  int64_t i = (int64_t)(moon__edge_hash(parent, h) & (uint64_t)mask);
  while (T->e_child[i] >= 0) i = (i + 1) & mask;
  int64_t node = T->n_nodes++;
  T->e_parent[i] = parent;
  T->e_hash[i] = h;
  T->e_child[i] = node;
  T->last[node] = -1;
  T->n_edges++;
  return node;
}

/* ---- import ---------------------------------------------------------------------------------- */

/* Session inference over the requests in arrival order: a request continues the session of the
 * latest earlier request with which it shares its longest hash prefix, when that prefix has at
 * least min_shared_blocks blocks (its new tokens are then the input beyond the shared prefix);
 * otherwise it starts a session whose id is its line number (*session_ids, *n_sessions, caller
 * frees). Counts continuations, branches and shared blocks in mst. */
static int moon__sessions(const trace_mooncake_opts *mo, trace_mooncake_stats *mst,
                          trace_import_req *reqs, int64_t n_reqs, const uint64_t *hashes,
                          int64_t n_hashes, const int64_t *lines, int64_t **session_ids,
                          int64_t *n_sessions, const char *name, kv_error *err) {
  int64_t cap_sessions = 0;
  int64_t *sess_last = malloc((size_t)(n_reqs ? n_reqs : 1) * sizeof *sess_last);
  moon__trie T;
  memset(&T, 0, sizeof T);
  int rc = 0;
  if (!sess_last || moon__trie_init(&T, n_hashes)) {
    rc = kv_error_set(err, KV_ENOMEM, "%s: out of memory building the prefix trie", name);
  }
  for (int64_t r = 0; r < n_reqs && !rc; r++) {
    trace_import_req *q = &reqs[r];
    const uint64_t *h = q->n_hashes ? hashes + q->hash_off : NULL;
    int64_t node = 0, depth = 0;
    while (depth < q->n_hashes) {
      int64_t c = moon__trie_child(&T, node, h[depth]);
      if (c < 0) break;
      node = c;
      depth++;
    }
    int64_t parent = depth > 0 ? T.last[node] : -1;
    if (mo->min_shared_blocks > 0 && depth >= mo->min_shared_blocks && parent >= 0) {
      int64_t s = reqs[parent].session;
      q->session = s;
      int64_t shared = depth * (int64_t)mo->block_tokens;
      q->new_tokens = q->input_tokens - (shared < q->input_tokens ? shared : q->input_tokens);
      mst->continuations++;
      mst->shared_blocks += depth;
      if (sess_last[s] != parent) mst->branches++;
      sess_last[s] = r;
    } else {
      q->session = *n_sessions;
      sess_last[*n_sessions] = r;
      if (trace_import_push_i64(session_ids, n_sessions, &cap_sessions, lines[r])) {
        rc = kv_error_set(err, KV_ENOMEM, "%s: out of memory", name);
        break;
      }
    }
    /* Record r on its whole path (existing nodes, then new ones). */
    node = 0;
    for (int64_t j = 0; j < q->n_hashes; j++) {
      int64_t c = j < depth ? moon__trie_child(&T, node, h[j]) : moon__trie_add(&T, node, h[j]);
      if (c < 0) {
        rc = kv_error_set(err, KV_ENOMEM, "%s: prefix trie overflow", name);
        break;
      }
      T.last[c] = r;
      node = c;
    }
  }
  moon__trie_free(&T);
  free(sess_last);
  return rc;
}


int trace_import_mooncake_stream(FILE *f, const char *name, const trace_mooncake_opts *mo,
                                 trace *t, trace_mooncake_stats *mst, kv_error *err) {
  trace_mooncake_opts dflt;
  trace_mooncake_stats st_local;
  if (!mo) {
    trace_mooncake_opts_init(&dflt);
    mo = &dflt;
  }
  if (!mst) mst = &st_local;
  memset(mst, 0, sizeof *mst);
  trace_import_stats *st = &mst->base;
  const trace_import_opts *opts = &mo->base;
  trace_init(t);
  if (mo->block_tokens <= 0 || mo->min_shared_blocks < 0) {
    return kv_error_set(err, KV_EINVAL, "%s: block_tokens must be > 0 and min_shared_blocks >= 0",
                        name);
  }
  snprintf(t->name, sizeof t->name, "mooncake %s", trace_import_basename(name));
  snprintf(t->source, sizeof t->source, "%s (sessions: longest shared hash prefix >= %d blocks)",
           name, (int)mo->min_shared_blocks);
  snprintf(t->tokenizer, sizeof t->tokenizer, "as recorded (Mooncake input_length/output_length)");
  t->flags = TRACE_FLAG_OPEN_LOOP | TRACE_FLAG_HAS_HASHES;
  t->block_tokens = mo->block_tokens;

  trace_lines lr;
  int rc = trace_lines_init(&lr, f, name, 64 << 20, err);
  if (rc) return rc;
  moon__line L;
  memset(&L, 0, sizeof L);
  trace_import_req *reqs = NULL;
  int64_t n_reqs = 0, cap_reqs = 0;
  int64_t *lines = NULL, n_lines = 0, cap_lines = 0;
  uint64_t *hashes = NULL;
  int64_t n_hashes = 0, cap_hashes = 0;
  int64_t prev_ts = 0;
  char msg[400];
  int more;
  while ((more = trace_lines_next(&lr, err)) == 1) {
    long long ln = (long long)lr.lineno;
    size_t k = 0;
    while (k < lr.len && (lr.line[k] == ' ' || lr.line[k] == '\t')) k++;
    if (k == lr.len && !lr.too_long && !lr.has_nul) continue; /* blank line */
    st->records++;
    if (lr.too_long || lr.has_nul) {
      rc = trace_import_bad(opts, st, err, KV_EFORMAT, "%s:%lld: %s", name, ln,
                            lr.too_long ? "line longer than 64 MiB" : "NUL byte in line");
      if (rc) break;
      continue;
    }
    int prc = moon__parse_line(&L, lr.line, lr.len, msg, sizeof msg);
    if (prc == KV_ENOMEM) {
      rc = kv_error_set(err, KV_ENOMEM, "%s:%lld: out of memory", name, ln);
      break;
    }
    if (prc) {
      rc = trace_import_bad(opts, st, err, prc, "%s:%lld: %s", name, ln, msg);
      if (rc) break;
      continue;
    }
    int64_t ts_ms = L.v[0], in = L.v[1], out = L.v[2];
    int64_t need = (in + mo->block_tokens - 1) / mo->block_tokens;
    if (L.n_hashes > need) {
      rc = trace_import_bad(opts, st, err, KV_EFORMAT, "%s:%lld: %lld hash_ids for input_length "
                            "%lld (at most %lld blocks of %d tokens)", name, ln,
                            (long long)L.n_hashes, (long long)in, (long long)need,
                            (int)mo->block_tokens);
      if (rc) break;
      continue;
    }
    int64_t ts_ns;
    if (trace_mul_i64(ts_ms, 1000000, &ts_ns)) {
      rc = trace_import_bad(opts, st, err, KV_ERANGE, "%s:%lld: timestamp %lld ms overflows "
                            "64-bit nanoseconds", name, ln, (long long)ts_ms);
      if (rc) break;
      continue;
    }
    if (n_reqs > 0 && ts_ns < prev_ts) {
      rc = trace_import_bad(opts, st, err, KV_EFORMAT, "%s:%lld: timestamp %lld ms is earlier "
                            "than the previous request's %lld ms (lines must be in time order)",
                            name, ln, (long long)ts_ms, (long long)(prev_ts / 1000000));
      if (rc) break;
      continue;
    }
    prev_ts = ts_ns;
    trace_import_req q = {.arrival_ns = ts_ns, .think_ns = -1, .input_tokens = in,
                          .new_tokens = in, .output_tokens = out, .session = -1,
                          .hash_off = n_hashes, .n_hashes = (int32_t)L.n_hashes};
    int arc = trace_import_push_req(&reqs, &n_reqs, &cap_reqs, &q) ||
              trace_import_push_i64(&lines, &n_lines, &cap_lines, (int64_t)ln);
    for (int64_t j = 0; j < L.n_hashes && !arc; j++) {
      arc = trace_import_push_u64(&hashes, &n_hashes, &cap_hashes, L.hashes[j]);
    }
    if (arc) {
      rc = kv_error_set(err, KV_ENOMEM, "%s:%lld: out of memory", name, ln);
      break;
    }
    if (opts->max_records && n_reqs >= opts->max_records) break;
  }
  if (more < 0) rc = more;
  trace_lines_free(&lr);
  free(L.hashes);

  /* Session inference. */
  int64_t *session_ids = NULL, n_sessions = 0;
  if (!rc) {
    rc = moon__sessions(mo, mst, reqs, n_reqs, hashes, n_hashes, lines, &session_ids, &n_sessions,
                        name, err);
  }
  if (!rc) rc = trace_import_group(t, reqs, n_reqs, session_ids, n_sessions, hashes, err);
  free(session_ids);
  free(reqs);
  free(lines);
  free(hashes);
  return trace_import_finish(t, st, rc);
}

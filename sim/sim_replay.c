#include "sim_replay.h"

#include <stdlib.h>
#include <string.h>

#include "sim_store.h"

/* ---- a small open-addressing map uint64 -> int64 (independent of the store's table) ------- */

typedef struct sim__map {
  uint64_t *k;
  int64_t *v;
  uint8_t *used;
  int64_t cap, n;
} sim__map;

static uint64_t sim__h(uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdull;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ull;
  return x ^ (x >> 33);
}

static int sim__map_init(sim__map *m, int64_t cap) {
  m->cap = 16;
  while (m->cap < cap * 2) m->cap *= 2;
  m->n = 0;
  m->k = calloc((size_t)m->cap, sizeof *m->k);
  m->v = calloc((size_t)m->cap, sizeof *m->v);
  m->used = calloc((size_t)m->cap, 1);
  return (m->k && m->v && m->used) ? 0 : KV_ENOMEM;
}

static void sim__map_free(sim__map *m) {
  free(m->k);
  free(m->v);
  free(m->used);
}

/* Slot of key (existing or the empty slot where it would go). */
static int64_t sim__map_slot(const sim__map *m, uint64_t key) {
  int64_t i = (int64_t)(sim__h(key) & (uint64_t)(m->cap - 1));
  while (m->used[i] && m->k[i] != key) i = (i + 1) & (m->cap - 1);
  return i;
}

static int64_t *sim__map_get(sim__map *m, uint64_t key) {
  int64_t i = sim__map_slot(m, key);
  return m->used[i] ? &m->v[i] : NULL;
}

/* Inserts (the map is sized for all keys up front, so it never fills). */
static void sim__map_put(sim__map *m, uint64_t key, int64_t v) {
  int64_t i = sim__map_slot(m, key);
  if (!m->used[i]) {
    m->used[i] = 1;
    m->k[i] = key;
    m->n++;
  }
  m->v[i] = v;
}

/* ---- order -------------------------------------------------------------------------------- */

static const trace *sim__sort_trace;

static int sim__cmp_turn(const void *a, const void *b) {
  const trace_turn *x = &sim__sort_trace->turns[*(const int64_t *)a];
  const trace_turn *y = &sim__sort_trace->turns[*(const int64_t *)b];
  if (x->arrival_ns != y->arrival_ns) return x->arrival_ns < y->arrival_ns ? -1 : 1;
  if (x->session != y->session) return x->session < y->session ? -1 : 1;
  return (x->index > y->index) - (x->index < y->index);
}

int sim_trace_order(const trace *t, int64_t **order, kv_error *err) {
  int64_t *o = malloc((size_t)(t->n_turns ? t->n_turns : 1) * sizeof *o);
  if (!o) return kv_error_set(err, KV_ENOMEM, "replay: out of memory");
  for (int64_t i = 0; i < t->n_turns; i++) o[i] = i;
  /* qsort with a file-scope pointer: the library is single-threaded per call and the
   * comparison is a total order, so the result does not depend on qsort's algorithm. */
  sim__sort_trace = t;
  qsort(o, (size_t)t->n_turns, sizeof *o, sim__cmp_turn);
  sim__sort_trace = NULL;
  *order = o;
  return 0;
}

static int64_t sim__block_tokens(const trace *t, const trace_turn *u, int32_t k) {
  int64_t b = t->block_tokens, start = (int64_t)k * b;
  int64_t end = start + b < u->input_tokens ? start + b : u->input_tokens;
  return end > start ? end - start : 0;
}

static int sim__check_hashes(const trace *t, kv_error *err) {
  if (!(t->flags & TRACE_FLAG_HAS_HASHES) || t->block_tokens <= 0) {
    return kv_error_set(err, KV_EINVAL, "trace '%s': no prefix-block hashes (flag or block size "
                        "missing)", t->name);
  }
  return 0;
}

static void sim__finish(sim_replay_result *r) {
  r->block_hit_ratio = r->blocks ? (double)r->hit_blocks / (double)r->blocks : 0;
  r->token_hit_ratio = r->tokens ? (double)r->hit_tokens / (double)r->tokens : 0;
}

int sim_prefix_reuse(const trace *t, sim_replay_result *r, kv_error *err) {
  memset(r, 0, sizeof *r);
  int rc = sim__check_hashes(t, err);
  if (rc) return rc;
  int64_t *order = NULL;
  if ((rc = sim_trace_order(t, &order, err))) return rc;
  sim__map seen;
  if (sim__map_init(&seen, t->n_hashes)) {
    free(order);
    sim__map_free(&seen);
    return kv_error_set(err, KV_ENOMEM, "prefix reuse: out of memory");
  }
  for (int64_t q = 0; q < t->n_turns; q++) {
    const trace_turn *u = &t->turns[order[q]];
    const uint64_t *h = trace_turn_hashes(t, u);
    int leading = 1;
    for (int32_t k = 0; k < u->n_hashes; k++) {
      int64_t bt = sim__block_tokens(t, u, k);
      r->blocks++;
      r->tokens += bt;
      if (leading && sim__map_get(&seen, h[k])) {
        r->hit_blocks++;
        r->hit_tokens += bt;
      } else {
        leading = 0;
      }
    }
    for (int32_t k = 0; k < u->n_hashes; k++) sim__map_put(&seen, h[k], 1);
    r->requests++;
  }
  sim__map_free(&seen);
  free(order);
  sim__finish(r);
  return 0;
}

int sim_replay_blocks(const trace *t, const sim_policy *pol, int64_t capacity_tokens,
                      sim_replay_result *r, kv_error *err) {
  memset(r, 0, sizeof *r);
  int rc = sim__check_hashes(t, err);
  if (rc) return rc;
  if (pol->uses_queue) {
    return kv_error_set(err, KV_ENOTSUP, "replay: policy '%s' needs a job queue; the "
                        "trace-order replay has none (use lru, fifo or opt)", pol->name);
  }
  int64_t *order = NULL;
  if ((rc = sim_trace_order(t, &order, err))) return rc;
  int64_t *next_use = NULL;
  sim__map last;
  memset(&last, 0, sizeof last);
  if (pol->uses_future) {
    /* next_use[hash position] = replay index of the next request holding that hash */
    next_use = malloc((size_t)(t->n_hashes ? t->n_hashes : 1) * sizeof *next_use);
    if (!next_use || sim__map_init(&last, t->n_hashes)) {
      rc = kv_error_set(err, KV_ENOMEM, "replay: out of memory");
      goto done;
    }
    for (int64_t q = t->n_turns - 1; q >= 0; q--) {
      const trace_turn *u = &t->turns[order[q]];
      const uint64_t *h = trace_turn_hashes(t, u);
      for (int32_t k = 0; k < u->n_hashes; k++) {
        int64_t *p = sim__map_get(&last, h[k]);
        next_use[u->hash_off + k] = p ? *p : INT64_MAX;
      }
      for (int32_t k = 0; k < u->n_hashes; k++) sim__map_put(&last, h[k], q);
    }
  }
  sim_store st;
  int64_t cap[SIM_TIER_COUNT] = {0, capacity_tokens > 0 ? capacity_tokens : INT64_MAX / 4, 0};
  if ((rc = sim_store_init(&st, SIM_STORE_BLOCK, pol, cap, 1, 0, NULL, NULL, NULL, err))) goto done;
  int32_t *units = NULL;
  int32_t cap_units = 0;
  for (int64_t q = 0; q < t->n_turns; q++) {
    const trace_turn *u = &t->turns[order[q]];
    const uint64_t *h = trace_turn_hashes(t, u);
    if (u->n_hashes > cap_units) {
      int32_t *nu = realloc(units, (size_t)u->n_hashes * sizeof *nu);
      if (!nu) {
        rc = kv_error_set(err, KV_ENOMEM, "replay: out of memory");
        break;
      }
      units = nu;
      cap_units = u->n_hashes;
    }
    int leading = 1;
    for (int32_t k = 0; k < u->n_hashes; k++) {
      int64_t bt = sim__block_tokens(t, u, k);
      int32_t x = sim_store_find(&st, h[k], q);
      units[k] = x;
      r->blocks++;
      r->tokens += bt;
      if (leading && x >= 0) {
        r->hit_blocks++;
        r->hit_tokens += bt;
      } else {
        leading = 0;
      }
    }
    for (int32_t k = u->n_hashes - 1; k >= 0; k--) {
      int32_t x = sim_store_find(&st, h[k], q);
      if (x >= 0) {
        sim_store_touch(&st, x, q);
      } else {
        int64_t bt = sim__block_tokens(t, u, k);
        int64_t before = st.n_live;
        x = sim_store_create(&st, h[k], bt > 0 ? bt : 1, SIM_TIER_DRAM, q, SIM_QPOS_ANY);
        if (x == KV_ENOMEM) {
          rc = kv_error_set(err, KV_ENOMEM, "replay: out of memory");
          break;
        }
        if (x >= 0) r->evictions += before + 1 - st.n_live;
      }
      if (x >= 0 && next_use) sim_store_set_next_use(&st, x, next_use[u->hash_off + k]);
    }
    if (rc) break;
    r->requests++;
  }
  if (!rc) rc = sim_store_check(&st, err);
  free(units);
  sim_store_free(&st);
done:
  free(next_use);
  sim__map_free(&last);
  free(order);
  sim__finish(r);
  return rc;
}

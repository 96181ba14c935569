#include "sim_store.h"

#include <assert.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "sim_stats.h"

const char *const sim_store_kind_names[] = {"session", "block", NULL};

static void sim__stat(sim_store *s, int stat, int64_t v) {
  if (s->stats && stat >= 0) s->stats[stat] += v;
}

static uint64_t sim__mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

/* A never-used unit is in no tier. */
static void sim__unit_fresh(void *rec) { ((sim_unit *)rec)->tier = -1; }

int sim_store_init(sim_store *s, sim_store_kind kind, const sim_policy *pol,
                   const int64_t capacity[SIM_TIER_COUNT], int64_t bytes_per_token,
                   int64_t ttl_ns, sim_net *net, const int32_t *link, int64_t *stats,
                   kv_error *err) {
  memset(s, 0, sizeof *s);
  s->kind = kind;
  s->pol = pol;
  s->bytes_per_token = bytes_per_token;
  s->ttl_ns = ttl_ns;
  s->net = net;
  s->stats = stats;
  sim_slots_init(&s->pool, sizeof(sim_unit), offsetof(sim_unit, hnext), 1024, sim__unit_fresh);
  s->stage_cap = INT64_MAX / 4;
  s->inclusive = 1;
  s->moving = -1;
  for (int i = 0; i < SIM_LINK_ROLE_COUNT; i++) s->link[i] = link ? link[i] : -1;
  for (int t = 0; t < SIM_TIER_COUNT; t++) sim_tier_init(&s->tiers[t], sim_tier_names[t], capacity[t]);
  s->n_buckets = 1024;
  s->buckets = malloc((size_t)s->n_buckets * sizeof *s->buckets);
  if (!s->buckets) return kv_error_set(err, KV_ENOMEM, "store: out of memory");
  for (int64_t i = 0; i < s->n_buckets; i++) s->buckets[i] = -1;
  return 0;
}

void sim_store_free(sim_store *s) {
  sim_slots_free(&s->pool);
  free(s->buckets);
  for (int t = 0; t < SIM_TIER_COUNT; t++) free(s->heap[t]);
  memset(s, 0, sizeof *s);
}

int sim_store_top_tier(const sim_store *s) { return sim_store_next_tier(s, -1); }

int sim_store_next_tier(const sim_store *s, int t) {
  for (int k = t + 1; k < SIM_TIER_COUNT; k++) {
    if (s->tiers[k].capacity > 0) return k;
  }
  return -1;
}

/* The last enabled tier (where shadows live), or -1. */
static int sim__last_tier(const sim_store *s) {
  for (int k = SIM_TIER_COUNT - 1; k >= 0; k--) {
    if (s->tiers[k].capacity > 0) return k;
  }
  return -1;
}

int sim_store_route(const sim_store *s, int from, int to, int32_t r[SIM_ROUTE_MAX]) {
  int hbm_from = from == SIM_TIER_HBM || from == SIM_LOC_GPU;
  int hbm_to = to == SIM_TIER_HBM || to == SIM_LOC_GPU;
  int n = 0;
  int32_t shared = s->link[SIM_LINK_SSD];
  if (from == to || (hbm_from && hbm_to)) return 0;
  if (hbm_from) {
    r[n++] = s->link[SIM_LINK_D2H];
    if (to == SIM_TIER_SSD) {
      r[n++] = s->link[SIM_LINK_SSD_WRITE];
      if (shared >= 0) r[n++] = shared;
    }
  } else if (from == SIM_TIER_DRAM) {
    r[n++] = to == SIM_TIER_SSD ? s->link[SIM_LINK_SSD_WRITE] : s->link[SIM_LINK_H2D];
    if (to == SIM_TIER_SSD && shared >= 0) r[n++] = shared;
  } else { /* SSD */
    r[n++] = s->link[SIM_LINK_SSD_READ];
    if (shared >= 0) r[n++] = shared;
    if (hbm_to) r[n++] = s->link[SIM_LINK_H2D];
  }
  return n;
}

void sim_store_count_route(sim_store *s, const int32_t *route, int n, int64_t bytes) {
  for (int k = 0; k < n; k++) {
    for (int r = 0; r < SIM_LINK_ROLE_COUNT; r++) {
      if (route[k] == s->link[r]) {
        static const int stat[SIM_LINK_ROLE_COUNT] = {SIM_STAT_BYTES_H2D, SIM_STAT_BYTES_D2H,
                                                      SIM_STAT_BYTES_SSD_READ,
                                                      SIM_STAT_BYTES_SSD_WRITE, -1};
        if (stat[r] >= 0) sim__stat(s, stat[r], bytes);
      }
    }
  }
}

/* ---- policy heap per tier ----------------------------------------------------------------- */

static int sim__before(const sim_store *s, int32_t a, int32_t b) {
  const sim_unit *x = &s->u[a], *y = &s->u[b];
  if (x->k0 != y->k0) return x->k0 < y->k0;
  if (x->k1 != y->k1) return x->k1 < y->k1;
  if (x->access_seq != y->access_seq) return x->access_seq < y->access_seq;
  return a < b;
}

static void sim__heap_set(sim_store *s, int t, int32_t pos, int32_t i) {
  s->heap[t][pos] = i;
  s->u[i].heap_pos = pos;
}

static void sim__heap_up(sim_store *s, int t, int32_t pos) {
  int32_t i = s->heap[t][pos];
  while (pos > 0) {
    int32_t p = (pos - 1) / 2;
    if (!sim__before(s, i, s->heap[t][p])) break;
    sim__heap_set(s, t, pos, s->heap[t][p]);
    pos = p;
  }
  sim__heap_set(s, t, pos, i);
}

static void sim__heap_down(sim_store *s, int t, int32_t pos) {
  int32_t n = s->n_heap[t];
  int32_t i = s->heap[t][pos];
  for (;;) {
    int32_t c = 2 * pos + 1;
    if (c >= n) break;
    if (c + 1 < n && sim__before(s, s->heap[t][c + 1], s->heap[t][c])) c++;
    if (!sim__before(s, s->heap[t][c], i)) break;
    sim__heap_set(s, t, pos, s->heap[t][c]);
    pos = c;
  }
  sim__heap_set(s, t, pos, i);
}

static void sim__attach(sim_store *s, int32_t i) {
  sim_unit *u = &s->u[i];
  assert(u->heap_pos < 0 && u->tier >= 0);
  int t = u->tier;
  if (s->n_heap[t] == s->cap_heap[t]) {
    int32_t nc = s->cap_heap[t] ? s->cap_heap[t] * 2 : 256;
    int32_t *nh = realloc(s->heap[t], (size_t)nc * sizeof *nh);
    if (!nh) {
      s->failed = 1;
      return;
    }
    s->heap[t] = nh;
    s->cap_heap[t] = nc;
  }
  int64_t k[2];
  s->pol->key(u, k);
  u->k0 = k[0];
  u->k1 = k[1];
  int32_t pos = s->n_heap[t]++;
  sim__heap_set(s, t, pos, i);
  sim__heap_up(s, t, pos);
}

static void sim__detach(sim_store *s, int32_t i) {
  sim_unit *u = &s->u[i];
  if (u->heap_pos < 0) return;
  int t = u->tier;
  int32_t pos = u->heap_pos;
  int32_t last = s->heap[t][--s->n_heap[t]];
  u->heap_pos = -1;
  if (last != i) {
    sim__heap_set(s, t, pos, last);
    sim__heap_up(s, t, s->u[last].heap_pos);
    sim__heap_down(s, t, s->u[last].heap_pos);
  }
}

/* Recomputes the key of an evictable unit after a change. */
static void sim__rekey(sim_store *s, int32_t i) {
  if (s->u[i].heap_pos < 0) return;
  sim__detach(s, i);
  sim__attach(s, i);
}

static int sim__evictable(const sim_unit *u) { return u->tier >= 0 && u->pins == 0 && u->busy == 0; }

/* ---- hash table --------------------------------------------------------------------------- */

static int sim__rehash(sim_store *s) {
  int64_t nb = s->n_buckets * 2;
  int32_t *b = malloc((size_t)nb * sizeof *b);
  if (!b) return KV_ENOMEM;
  for (int64_t k = 0; k < nb; k++) b[k] = -1;
  for (int32_t i = 0; i < s->cap_u; i++) {
    if (s->u[i].tier < 0) continue;
    int64_t h = (int64_t)(sim__mix(s->u[i].key) & (uint64_t)(nb - 1));
    s->u[i].hnext = b[h];
    b[h] = i;
  }
  free(s->buckets);
  s->buckets = b;
  s->n_buckets = nb;
  return 0;
}

static int32_t sim__lookup(const sim_store *s, uint64_t key) {
  int64_t h = (int64_t)(sim__mix(key) & (uint64_t)(s->n_buckets - 1));
  for (int32_t i = s->buckets[h]; i >= 0; i = s->u[i].hnext) {
    if (s->u[i].key == key) return i;
  }
  return -1;
}

static void sim__unhash(sim_store *s, int32_t i) {
  int64_t h = (int64_t)(sim__mix(s->u[i].key) & (uint64_t)(s->n_buckets - 1));
  int32_t *p = &s->buckets[h];
  while (*p != i) p = &s->u[*p].hnext;
  *p = s->u[i].hnext;
}

/* ---- units -------------------------------------------------------------------------------- */

static int sim__expired(const sim_store *s, const sim_unit *u, int64_t now) {
  return s->ttl_ns > 0 && now - u->last_access_ns > s->ttl_ns;
}

int32_t sim_store_find(sim_store *s, uint64_t key, int64_t now) {
  int32_t i = sim__lookup(s, key);
  if (i < 0) return -1;
  sim_unit *u = &s->u[i];
  if (sim__expired(s, u, now) && u->pins == 0 && u->busy == 0) {
    sim_store_drop(s, i, SIM_STAT_TTL_EXPIRED);
    return -1;
  }
  return i;
}

void sim_store_drop_shadow(sim_store *s, int32_t i) {
  sim_unit *u = &s->u[i];
  if (u->shadow == 0) return;
  sim_tier_release(&s->tiers[sim__last_tier(s)], u->shadow);
  s->shadow_bytes -= u->shadow;
  u->shadow = 0;
}

/* Frees shadow space in the last tier t until `bytes` are free or no shadow is left: the least
 * recently used units' shadows go first. */
static void sim__reclaim_shadows(sim_store *s, int t, int64_t bytes) {
  while (s->shadow_bytes > 0 && sim_tier_free_bytes(&s->tiers[t]) < bytes) {
    int32_t best = -1;
    for (int32_t i = 0; i < s->cap_u; i++) {
      const sim_unit *u = &s->u[i];
      if (u->tier < 0 || u->shadow == 0 || u->busy || i == s->moving) continue;
      if (best < 0 || u->access_seq < s->u[best].access_seq) best = i;
    }
    if (best < 0) return;
    sim_store_drop_shadow(s, best);
  }
}

void sim_store_drop(sim_store *s, int32_t i, int stat) {
  sim_unit *u = &s->u[i];
  assert(u->tier >= 0 && u->pins == 0 && u->busy == 0 && "dropping a unit in use");
  sim_store_drop_shadow(s, i);
  sim__detach(s, i);
  sim_tier_release(&s->tiers[u->tier], u->bytes);
  sim__unhash(s, i);
  u->tier = -1;
  sim_slots_release(&s->pool, i);
  s->n_live--;
  sim__stat(s, stat, 1);
}

static int sim__demote_stat(int from, int to) {
  if (from == SIM_TIER_HBM && to == SIM_TIER_DRAM) return SIM_STAT_DEMOTE_HBM_DRAM;
  if (from == SIM_TIER_DRAM && to == SIM_TIER_SSD) return SIM_STAT_DEMOTE_DRAM_SSD;
  return SIM_STAT_DEMOTE_OTHER;
}

static void sim__busy_end(sim_store *s, int32_t i);

static void sim__move_done(void *ctx, int64_t arg) {
  sim_store *s = ctx;
  int32_t i = (int32_t)arg;
  sim_unit *u = &s->u[i];
  if (u->staged) {
    s->stage_used -= u->staged;
    u->staged = 0;
  }
  sim__busy_end(s, i);
}

static void sim__busy_end(sim_store *s, int32_t i) {
  sim_unit *u = &s->u[i];
  assert(u->busy > 0);
  if (--u->busy == 0) {
    if (u->pins == 0) sim__attach(s, i);
    if (s->on_ready) s->on_ready(s->ready_ctx, i);
  }
}

/* Moves unit i from its tier to dst: dst must already have room. `staged`: the transfer
 * occupies the staging buffer (demotions). */
/* Bytes unit i needs in tier dst: into the last tier, a shadow already holds part of it. */
static int64_t sim__need(const sim_store *s, const sim_unit *u, int dst) {
  return dst == sim__last_tier(s) ? u->bytes - u->shadow : u->bytes;
}

/* Moves unit i from its tier to dst: dst must already have room for sim__need(). `staged`: the
 * transfer occupies the staging buffer (demotions). Only the bytes dst lacks travel. */
static void sim__relocate(sim_store *s, int32_t i, int dst, int flow, int staged) {
  sim_unit *u = &s->u[i];
  int src = u->tier;
  int last = sim__last_tier(s);
  int64_t move = sim__need(s, u, dst);
  sim__detach(s, i);
  if (src == last && s->inclusive && dst != last) {
    /* Leaving the last tier: its copy stays, as the unit's shadow. */
    u->shadow = u->bytes;
    s->shadow_bytes += u->bytes;
  } else {
    sim_tier_release(&s->tiers[src], u->bytes);
  }
  int rc = sim_tier_alloc(&s->tiers[dst], move);
  assert(rc == 0);
  (void)rc;
  if (dst == last) { /* the shadow becomes part of the resident copy */
    s->shadow_bytes -= u->shadow;
    u->shadow = 0;
  }
  u->tier = dst;
  u->moved_from = src;
  int32_t route[SIM_ROUTE_MAX];
  int n = sim_store_route(s, src, dst, route);
  if (flow && n > 0 && s->net && move > 0) {
    sim_store_count_route(s, route, n, move);
    kv_error e = {0};
    if (sim_net_start(s->net, route, n, (double)move, 0, sim__move_done, s, i, NULL, &e)) {
      s->failed = 1;
    } else {
      u->busy++;
      if (staged) {
        u->staged = move;
        s->stage_used += move;
      }
      return;
    }
  } else if (flow && n > 0) {
    sim_store_count_route(s, route, n, move);
  }
  if (sim__evictable(u)) sim__attach(s, i);
}

int sim_store_make_room(sim_store *s, int t, int64_t bytes, int64_t qpos_limit) {
  sim_tier *tier = &s->tiers[t];
  if (bytes > tier->capacity) return KV_ERANGE;
  if (t == sim__last_tier(s)) sim__reclaim_shadows(s, t, bytes);
  while (sim_tier_free_bytes(tier) < bytes) {
    if (s->n_heap[t] == 0) return KV_ERANGE;
    int32_t v = s->heap[t][0];
    sim_unit *u = &s->u[v];
    if (u->qpos >= 0 && u->qpos < qpos_limit && s->pol->uses_queue) return KV_ERANGE;
    int next = sim_store_next_tier(s, t);
    int64_t need = next >= 0 ? sim__need(s, u, next) : u->bytes;
    int can_stage = !s->net || s->stage_used + need <= s->stage_cap;
    if (next >= 0 && can_stage) {
      /* Demote: the victim leaves this tier's heap first so that the recursion cannot pick it. */
      sim__detach(s, v);
      int32_t outer = s->moving;
      s->moving = v;
      int rc = sim_store_make_room(s, next, need, qpos_limit);
      s->moving = outer;
      if (rc == 0) {
        sim__stat(s, sim__demote_stat(t, next), 1);
        sim__relocate(s, v, next, 1, 1);
        continue;
      }
      sim__attach(s, v);
    }
    if (s->no_drop || !s->pol->may_drop(u)) return KV_ERANGE;
    sim_store_drop(s, v, SIM_STAT_DROPPED);
  }
  return 0;
}

int32_t sim_store_create(sim_store *s, uint64_t key, int64_t tokens, int tier, int64_t now,
                         int64_t qpos_limit) {
  assert(sim__lookup(s, key) < 0);
  int64_t bytes = tokens * s->bytes_per_token;
  int t = tier;
  if (t < 0 || s->tiers[t].capacity == 0) t = sim_store_next_tier(s, t);
  for (; t >= 0; t = sim_store_next_tier(s, t)) {
    if (sim_store_make_room(s, t, bytes, qpos_limit) == 0) break;
  }
  if (t < 0) return KV_ERANGE;
  if (s->n_live + 1 > s->n_buckets && sim__rehash(s)) return KV_ENOMEM;
  int32_t i = sim_slots_alloc(&s->pool);
  if (i < 0) return KV_ENOMEM;
  s->u = s->pool.items;
  s->cap_u = s->pool.cap;
  sim_unit *u = &s->u[i];
  memset(u, 0, sizeof *u);
  u->key = key;
  u->tokens = tokens;
  u->bytes = bytes;
  u->tier = t;
  u->heap_pos = -1;
  u->waiter = -1;
  u->qpos = -1;
  u->moved_from = -1;
  u->next_use = INT64_MAX;
  u->last_access_ns = now;
  u->access_seq = u->insert_seq = ++s->seq;
  int rc = sim_tier_alloc(&s->tiers[t], bytes);
  assert(rc == 0);
  (void)rc;
  int64_t h = (int64_t)(sim__mix(key) & (uint64_t)(s->n_buckets - 1));
  u->hnext = s->buckets[h];
  s->buckets[h] = i;
  s->n_live++;
  sim__attach(s, i);
  return i;
}

int sim_store_resize(sim_store *s, int32_t i, int64_t tokens, int64_t qpos_limit) {
  sim_unit *u = &s->u[i];
  int64_t nb = tokens * s->bytes_per_token;
  if (nb > u->bytes) {
    int was = u->heap_pos >= 0;
    sim__detach(s, i); /* never pick the unit itself as a victim */
    int rc = sim_store_make_room(s, u->tier, nb - u->bytes, qpos_limit);
    if (was) sim__attach(s, i);
    if (rc) return rc;
    rc = sim_tier_alloc(&s->tiers[u->tier], nb - u->bytes);
    assert(rc == 0);
  } else if (nb < u->bytes) {
    sim_tier_release(&s->tiers[u->tier], u->bytes - nb);
    /* Truncation keeps the newest tokens: the shadow (an old prefix) no longer matches. */
    sim_store_drop_shadow(s, i);
  }
  u->bytes = nb;
  u->tokens = tokens;
  return 0;
}

void sim_store_touch(sim_store *s, int32_t i, int64_t now) {
  sim_unit *u = &s->u[i];
  u->last_access_ns = now;
  u->access_seq = ++s->seq;
  sim__rekey(s, i);
}

void sim_store_pin(sim_store *s, int32_t i) {
  sim_unit *u = &s->u[i];
  if (u->pins++ == 0) sim__detach(s, i);
}

void sim_store_unpin(sim_store *s, int32_t i) {
  sim_unit *u = &s->u[i];
  assert(u->pins > 0);
  if (--u->pins == 0 && u->busy == 0) sim__attach(s, i);
}

void sim_store_set_qpos(sim_store *s, int32_t i, int64_t qpos) {
  if (s->u[i].qpos == qpos) return;
  s->u[i].qpos = qpos;
  if (s->pol->uses_queue) sim__rekey(s, i);
}

void sim_store_set_next_use(sim_store *s, int32_t i, int64_t next_use) {
  if (s->u[i].next_use == next_use) return;
  s->u[i].next_use = next_use;
  if (s->pol->uses_future) sim__rekey(s, i);
}

int sim_store_move(sim_store *s, int32_t i, int dst, int flow, int64_t qpos_limit) {
  sim_unit *u = &s->u[i];
  if (u->tier == dst) return 0;
  int was = u->heap_pos >= 0;
  sim__detach(s, i);
  int32_t outer = s->moving;
  s->moving = i;
  s->no_drop++;
  int rc = sim_store_make_room(s, dst, sim__need(s, u, dst), qpos_limit);
  s->no_drop--;
  s->moving = outer;
  if (rc) {
    if (was) sim__attach(s, i);
    return rc;
  }
  sim__relocate(s, i, dst, flow, 0);
  return 0;
}

void sim_store_busy_begin(sim_store *s, int32_t i) {
  sim_unit *u = &s->u[i];
  if (u->busy++ == 0) sim__detach(s, i);
}

void sim_store_busy_end(sim_store *s, int32_t i) { sim__busy_end(s, i); }

int64_t sim_store_expire(sim_store *s, int64_t now) {
  if (s->ttl_ns <= 0) return 0;
  int64_t n = 0;
  for (int32_t i = 0; i < s->cap_u; i++) {
    sim_unit *u = &s->u[i];
    if (u->tier >= 0 && u->pins == 0 && u->busy == 0 && sim__expired(s, u, now)) {
      sim_store_drop(s, i, SIM_STAT_TTL_EXPIRED);
      n++;
    }
  }
  return n;
}

int sim_store_check(const sim_store *s, kv_error *err) {
  if (s->failed) return kv_error_set(err, KV_ENOMEM, "store: out of memory in an event");
  int64_t sum[SIM_TIER_COUNT] = {0};
  int64_t live = 0, evictable[SIM_TIER_COUNT] = {0}, staged = 0, shadows = 0;
  int last = sim__last_tier(s);
  for (int32_t i = 0; i < s->cap_u; i++) {
    const sim_unit *u = &s->u[i];
    if (u->tier < 0) continue;
    live++;
    staged += u->staged;
    sum[u->tier] += u->bytes;
    if (u->shadow) {
      if (u->tier == last || u->shadow < 0 || u->shadow > u->bytes) {
        return kv_error_set(err, KV_ESTATE, "store: unit %d has a shadow of %lld bytes for %lld "
                            "bytes in tier %d", i, (long long)u->shadow, (long long)u->bytes,
                            u->tier);
      }
      sum[last] += u->shadow;
      shadows += u->shadow;
    }
    if (u->bytes != u->tokens * s->bytes_per_token) {
      return kv_error_set(err, KV_ESTATE, "store: unit %d holds %lld bytes for %lld tokens", i,
                          (long long)u->bytes, (long long)u->tokens);
    }
    int ev = sim__evictable(u);
    if (ev != (u->heap_pos >= 0)) {
      return kv_error_set(err, KV_ESTATE, "store: unit %d evictable=%d but heap_pos=%d", i, ev,
                          u->heap_pos);
    }
    if (ev) {
      evictable[u->tier]++;
      if (s->heap[u->tier][u->heap_pos] != i) {
        return kv_error_set(err, KV_ESTATE, "store: heap position of unit %d is stale", i);
      }
    }
  }
  if (staged != s->stage_used || s->stage_used < 0) {
    return kv_error_set(err, KV_ESTATE, "store: staging buffer holds %lld bytes, units say %lld",
                        (long long)s->stage_used, (long long)staged);
  }
  if (shadows != s->shadow_bytes) {
    return kv_error_set(err, KV_ESTATE, "store: shadows hold %lld bytes, counter says %lld",
                        (long long)shadows, (long long)s->shadow_bytes);
  }
  if (live != s->n_live) {
    return kv_error_set(err, KV_ESTATE, "store: %lld live units, counter says %lld",
                        (long long)live, (long long)s->n_live);
  }
  for (int t = 0; t < SIM_TIER_COUNT; t++) {
    int rc = sim_tier_check(&s->tiers[t], sum[t], err);
    if (rc) return rc;
    if (evictable[t] != s->n_heap[t]) {
      return kv_error_set(err, KV_ESTATE, "store: tier %s heap holds %d units, %lld evictable",
                          sim_tier_names[t], s->n_heap[t], (long long)evictable[t]);
    }
    for (int32_t p = 1; p < s->n_heap[t]; p++) {
      if (sim__before(s, s->heap[t][p], s->heap[t][(p - 1) / 2])) {
        return kv_error_set(err, KV_ESTATE, "store: tier %s heap order broken",
                            sim_tier_names[t]);
      }
    }
  }
  return 0;
}

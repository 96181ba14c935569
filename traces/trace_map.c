#include "trace_map.h"

#include <stdlib.h>
#include <string.h>

#include "kv_err.h"

uint64_t trace_hash_bytes(const void *p, size_t len) {
  const unsigned char *b = p;
  uint64_t h = 0xcbf29ce484222325ull;
  for (size_t i = 0; i < len; i++) {
    h ^= b[i];
    h *= 0x100000001b3ull;
  }
  return trace_mix64(h ^ len);
}

/* ---- byte string -> int64 ------------------------------------------------------------------ */

void trace_strmap_init(trace_strmap *m) { memset(m, 0, sizeof *m); }

void trace_strmap_free(trace_strmap *m) {
  free(m->hash);
  free(m->val);
  free(m->key_off);
  free(m->key_len);
  free(m->arena);
  memset(m, 0, sizeof *m);
}

static int64_t trace__strmap_find(const trace_strmap *m, uint64_t h, const char *key, size_t len) {
  if (!m->cap) return -1;
  int64_t mask = m->cap - 1;
  for (int64_t i = (int64_t)(h & (uint64_t)mask);; i = (i + 1) & mask) {
    if (m->hash[i] == 0) return -1 - i; /* empty slot i: encoded as -1-i */
    if (m->hash[i] == h && m->key_len[i] == len &&
        (len == 0 || memcmp(m->arena + m->key_off[i], key, len) == 0)) {
      return i;
    }
  }
}

int64_t *trace_strmap_get(const trace_strmap *m, const char *key, size_t len) {
  uint64_t h = trace_hash_bytes(key, len) | (1ull << 63);
  int64_t i = trace__strmap_find(m, h, key, len);
  return i >= 0 ? &m->val[i] : NULL;
}

static int trace__strmap_grow(trace_strmap *m) {
  int64_t nc = m->cap ? m->cap * 2 : 64;
  uint64_t *nh = calloc((size_t)nc, sizeof *nh);
  int64_t *nv = malloc((size_t)nc * sizeof *nv);
  int64_t *no = malloc((size_t)nc * sizeof *no);
  uint32_t *nl = malloc((size_t)nc * sizeof *nl);
  if (!nh || !nv || !no || !nl) {
    free(nh);
    free(nv);
    free(no);
    free(nl);
    return KV_ENOMEM;
  }
  for (int64_t i = 0; i < m->cap; i++) {
    if (!m->hash[i]) continue;
    int64_t j = (int64_t)(m->hash[i] & (uint64_t)(nc - 1));
    while (nh[j]) j = (j + 1) & (nc - 1);
    nh[j] = m->hash[i];
    nv[j] = m->val[i];
    no[j] = m->key_off[i];
    nl[j] = m->key_len[i];
  }
  free(m->hash);
  free(m->val);
  free(m->key_off);
  free(m->key_len);
  m->hash = nh;
  m->val = nv;
  m->key_off = no;
  m->key_len = nl;
  m->cap = nc;
  return 0;
}

int trace_strmap_put(trace_strmap *m, const char *key, size_t len, int64_t val) {
  if (len > UINT32_MAX) return KV_ERANGE;
  uint64_t h = trace_hash_bytes(key, len) | (1ull << 63);
  int64_t i = trace__strmap_find(m, h, key, len);
  if (i >= 0) {
    m->val[i] = val;
    return 0;
  }
  if ((m->n + 1) * 4 > m->cap * 3) {
    if (trace__strmap_grow(m)) return KV_ENOMEM;
    i = trace__strmap_find(m, h, key, len);
  }
  if (m->arena_len + len > m->arena_cap) {
    size_t nc = m->arena_cap ? m->arena_cap : 4096;
    while (nc < m->arena_len + len) nc *= 2;
    char *na = realloc(m->arena, nc);
    if (!na) return KV_ENOMEM;
    m->arena = na;
    m->arena_cap = nc;
  }
  int64_t slot = -1 - i;
  if (len) memcpy(m->arena + m->arena_len, key, len);
  m->hash[slot] = h;
  m->val[slot] = val;
  m->key_off[slot] = (int64_t)m->arena_len;
  m->key_len[slot] = (uint32_t)len;
  m->arena_len += len;
  m->n++;
  return 0;
}

int trace_strmap_slot(const trace_strmap *m, int64_t slot, const char **key, size_t *len,
                      int64_t *val) {
  if (slot < 0 || slot >= m->cap || !m->hash[slot]) return 0;
  *key = m->arena ? m->arena + m->key_off[slot] : "";
  *len = m->key_len[slot];
  *val = m->val[slot];
  return 1;
}

/* ---- uint64 -> int64 ----------------------------------------------------------------------- */

void trace_u64map_init(trace_u64map *m) { memset(m, 0, sizeof *m); }

void trace_u64map_free(trace_u64map *m) {
  free(m->key);
  free(m->val);
  free(m->used);
  memset(m, 0, sizeof *m);
}

int64_t *trace_u64map_get(const trace_u64map *m, uint64_t key) {
  if (!m->cap) return NULL;
  int64_t mask = m->cap - 1;
  for (int64_t i = (int64_t)(trace_mix64(key) & (uint64_t)mask);; i = (i + 1) & mask) {
    if (!m->used[i]) return NULL;
    if (m->key[i] == key) return &m->val[i];
  }
}

int trace_u64map_put(trace_u64map *m, uint64_t key, int64_t val) {
  int64_t *v = trace_u64map_get(m, key);
  if (v) {
    *v = val;
    return 0;
  }
  if ((m->n + 1) * 4 > m->cap * 3) {
    int64_t nc = m->cap ? m->cap * 2 : 64;
    uint64_t *nk = malloc((size_t)nc * sizeof *nk);
    int64_t *nv = malloc((size_t)nc * sizeof *nv);
    uint8_t *nu = calloc((size_t)nc, 1);
    if (!nk || !nv || !nu) {
      free(nk);
      free(nv);
      free(nu);
      return KV_ENOMEM;
    }
    for (int64_t i = 0; i < m->cap; i++) {
      if (!m->used[i]) continue;
      int64_t j = (int64_t)(trace_mix64(m->key[i]) & (uint64_t)(nc - 1));
      while (nu[j]) j = (j + 1) & (nc - 1);
      nu[j] = 1;
      nk[j] = m->key[i];
      nv[j] = m->val[i];
    }
    free(m->key);
    free(m->val);
    free(m->used);
    m->key = nk;
    m->val = nv;
    m->used = nu;
    m->cap = nc;
  }
  int64_t mask = m->cap - 1;
  int64_t i = (int64_t)(trace_mix64(key) & (uint64_t)mask);
  while (m->used[i]) i = (i + 1) & mask;
  m->used[i] = 1;
  m->key[i] = key;
  m->val[i] = val;
  m->n++;
  return 0;
}

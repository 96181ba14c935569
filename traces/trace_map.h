/* trace_map.h — two small open-addressing hash maps used by the importers and the tokenizer:
 * byte string -> int64 (session ids, vocabulary) and uint64 -> int64 (merge pairs, trie edges).
 *
 * Keys of the string map are copied into an arena the map owns. Neither map supports deletion.
 * Lookups never allocate; inserts return KV_ENOMEM on allocation failure and leave the map usable.
 */
#ifndef TRACE_MAP_H
#define TRACE_MAP_H

#include <stddef.h>
#include <stdint.h>

/* ---- byte string -> int64 ------------------------------------------------------------------ */

typedef struct trace_strmap {
  uint64_t *hash;      /* (cap) 0 = empty slot; stored hashes have bit 63 set */
  int64_t *val;        /* (cap) */
  int64_t *key_off;    /* (cap) offset of the key in arena */
  uint32_t *key_len;   /* (cap) */
  char *arena;
  size_t arena_len, arena_cap;
  int64_t cap, n;
} trace_strmap;

void trace_strmap_init(trace_strmap *m);
void trace_strmap_free(trace_strmap *m);
/* Pointer to the value of key (len bytes) or NULL when absent; valid until the next insert. */
int64_t *trace_strmap_get(const trace_strmap *m, const char *key, size_t len);
/* Inserts key -> val, or replaces the value when the key exists. Returns 0, KV_ENOMEM or
 * KV_ERANGE. */
int trace_strmap_put(trace_strmap *m, const char *key, size_t len, int64_t val);
/* Key of entry `slot` (0 <= slot < cap) when occupied: 1 with key, len and val set, else 0. */
int trace_strmap_slot(const trace_strmap *m, int64_t slot, const char **key, size_t *len,
                      int64_t *val);

/* ---- uint64 -> int64 ----------------------------------------------------------------------- */

typedef struct trace_u64map {
  uint64_t *key;
  int64_t *val;
  uint8_t *used;
  int64_t cap, n;
} trace_u64map;

void trace_u64map_init(trace_u64map *m);
void trace_u64map_free(trace_u64map *m);
int64_t *trace_u64map_get(const trace_u64map *m, uint64_t key);
int trace_u64map_put(trace_u64map *m, uint64_t key, int64_t val);

/* A 64-bit mix (splitmix64 finaliser); also used to hash ids and build hash chains. */
static inline uint64_t trace_mix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

/* FNV-1a over bytes, then mixed. */
uint64_t trace_hash_bytes(const void *p, size_t len);

#endif /* TRACE_MAP_H */

/* sim_slots.h — records allocated by index from a growable array, the free ones chained through
 * an int32 field of the record (an intrusive free list): the event kernel's payload slots and
 * the engine's jobs and save records. Indices are stable for a record's life; the array may move
 * when it grows, so callers hold indices, never pointers, across an allocation.
 *
 * Order: a fresh array links its records so that the lowest index is handed out first; a
 * released record is handed out next (LIFO). The same calls therefore give the same indices, and
 * a run that depends on them is reproducible.
 */
#ifndef SIM_SLOTS_H
#define SIM_SLOTS_H

#include <stddef.h>
#include <stdint.h>

typedef struct sim_slots {
  void *items;            /* [cap] records of `size` bytes */
  size_t size;            /* bytes per record */
  size_t link;            /* offset of the record's int32_t next-free field */
  int32_t cap, free_head; /* free_head: first free record, -1 when none */
  int32_t first_cap;      /* capacity of the first allocation; then it doubles */
  void (*fresh)(void *rec); /* initialises a never-used record after zeroing (may be NULL) */
} sim_slots;

/* An empty array of records of `size` bytes whose next-free field is at offset `link`. */
void sim_slots_init(sim_slots *s, size_t size, size_t link, int32_t first_cap,
                    void (*fresh)(void *rec));
/* Frees the array (not what records point to). */
void sim_slots_free(sim_slots *s);
/* Index of a free record (growing the array when none is free), or -1 when memory (or the
 * int32 index range) runs out. The record's content is what it held when released (or zeros
 * plus `fresh` for a never-used one); the caller re-initialises it. */
int32_t sim_slots_alloc(sim_slots *s);
/* Returns record i to the free list. */
void sim_slots_release(sim_slots *s, int32_t i);

static inline void *sim_slots_at(const sim_slots *s, int32_t i) {
  return (char *)s->items + (size_t)i * s->size;
}

#endif /* SIM_SLOTS_H */

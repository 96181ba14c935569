/* sim_slots.c — records by index with an intrusive free list (sim_slots.h). */
#include "sim_slots.h"

#include <stdlib.h>
#include <string.h>

static int32_t *sim__link(const sim_slots *s, int32_t i) {
  return (int32_t *)((char *)sim_slots_at(s, i) + s->link);
}

void sim_slots_init(sim_slots *s, size_t size, size_t link, int32_t first_cap,
                    void (*fresh)(void *rec)) {
  memset(s, 0, sizeof *s);
  s->size = size;
  s->link = link;
  s->first_cap = first_cap;
  s->fresh = fresh;
  s->free_head = -1;
}

void sim_slots_free(sim_slots *s) {
  free(s->items);
  s->items = NULL;
  s->cap = 0;
  s->free_head = -1;
}

int32_t sim_slots_alloc(sim_slots *s) {
  if (s->free_head < 0) {
    const int64_t want = s->cap ? 2 * (int64_t)s->cap : s->first_cap;
    if (want > INT32_MAX) return -1; /* the index range is exhausted */
    const int32_t nc = (int32_t)want;
    void *ni = realloc(s->items, (size_t)nc * s->size);
    if (!ni) return -1;
    s->items = ni;
    /* link the new records so that the lowest index comes out first */
    for (int32_t i = nc - 1; i >= s->cap; i--) {
      memset(sim_slots_at(s, i), 0, s->size);
      if (s->fresh) s->fresh(sim_slots_at(s, i));
      *sim__link(s, i) = s->free_head;
      s->free_head = i;
    }
    s->cap = nc;
  }
  int32_t i = s->free_head;
  s->free_head = *sim__link(s, i);
  return i;
}

void sim_slots_release(sim_slots *s, int32_t i) {
  *sim__link(s, i) = s->free_head;
  s->free_head = i;
}

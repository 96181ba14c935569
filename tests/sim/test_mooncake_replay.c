/* The public Mooncake conversation trace (traces/data) through the block-granular cache: with unbounded capacity the replay's token hit ratio equals the
 * prefix-reuse ratio computed here directly from hash_ids (independently of sim_replay.c); an
 * LRU capacity sweep from 1e5 to 1e8 tokens gives a monotone curve that ends at that ratio. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "import_mooncake.h"
#include "sim_policy.h"
#include "sim_replay.h"
#include "test.h"

/* Open-addressing set of uint64 ids. */
typedef struct {
  uint64_t *k;
  size_t cap, n;
} idset;

static int idset_has(const idset *s, uint64_t x) {
  for (size_t i = (x * 0x9e3779b97f4a7c15ULL) & (s->cap - 1);; i = (i + 1) & (s->cap - 1)) {
    if (s->k[i] == 0) return 0;
    if (s->k[i] == x + 1) return 1;
  }
}

static void idset_add(idset *s, uint64_t x) {
  size_t i = (x * 0x9e3779b97f4a7c15ULL) & (s->cap - 1);
  while (s->k[i] != 0 && s->k[i] != x + 1) i = (i + 1) & (s->cap - 1);
  if (s->k[i] == 0) {
    s->k[i] = x + 1;
    s->n++;
  }
}

static void test_mooncake_reuse_and_lru_curve(void) {
  const char *path = test_repo_path("traces/data/mooncake_conversation_trace.jsonl");
  trace t;
  trace_init(&t);
  kv_error e = {0};
  trace_mooncake_opts o;
  trace_mooncake_opts_init(&o);
  REQUIRE_OK(trace_import_mooncake(path, &o, &t, NULL, &e), &e);
  REQUIRE_EQ_INT(t.n_turns, 12031);
  /* Direct: requests in arrival order; a request's leading blocks already seen are reused. */
  int64_t *order;
  REQUIRE_OK(sim_trace_order(&t, &order, &e), &e);
  idset seen = {calloc(1 << 22, sizeof(uint64_t)), 1 << 22, 0};
  int64_t tokens = 0, reused = 0;
  for (int64_t i = 0; i < t.n_turns; i++) {
    const trace_turn *u = &t.turns[order[i]];
    const uint64_t *h = trace_turn_hashes(&t, u);
    int lead = 1;
    for (int32_t b = 0; b < u->n_hashes; b++) {
      int64_t btok = (int64_t)u->input_tokens - (int64_t)b * t.block_tokens;
      if (btok > t.block_tokens) btok = t.block_tokens;
      tokens += btok;
      if (lead && idset_has(&seen, h[b])) reused += btok;
      else lead = 0;
    }
    for (int32_t b = 0; b < u->n_hashes; b++) idset_add(&seen, h[b]);
  }
  double direct = (double)reused / (double)tokens;
  sim_replay_result r;
  REQUIRE_OK(sim_replay_blocks(&t, sim_policy_find("lru"), 0, &r, &e), &e);
  CHECK_EQ_INT(r.tokens, tokens);
  CHECK_EQ_INT(r.hit_tokens, reused);
  printf("direct prefix reuse %.4f (%lld of %lld tokens); unbounded replay %.4f (blocks: %.4f)\n", direct,
         (long long)reused, (long long)tokens, r.token_hit_ratio, r.block_hit_ratio);
  /* LRU sweep: monotone non-decreasing in capacity, bounded by the unbounded ratio. */
  const double caps[] = {1e5, 3e5, 1e6, 3e6, 1e7, 3e7, 1e8};
  double prev = -1;
  for (size_t i = 0; i < sizeof caps / sizeof caps[0]; i++) {
    sim_replay_result c;
    REQUIRE_OK(sim_replay_blocks(&t, sim_policy_find("lru"), (int64_t)caps[i], &c, &e), &e);
    printf("LRU capacity %.0e tokens: token hit ratio %.4f\n", caps[i], c.token_hit_ratio);
    CHECK(c.token_hit_ratio >= prev);
    CHECK(c.token_hit_ratio <= direct + 1e-12);
    prev = c.token_hit_ratio;
  }
  CHECK_NEAR(prev, direct, 1e-12, 0); /* 1e8 tokens hold the whole trace's blocks */
  free(seen.k);
  free(order);
  trace_free(&t);
}

TEST_LIST = {TEST(test_mooncake_reuse_and_lru_curve), {0}};
TEST_MAIN

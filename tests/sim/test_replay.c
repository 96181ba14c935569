/* Block-granular cache on prefix-hash traces: the trace-order replay against the direct
 * prefix-reuse computation, a hand-counted example, and LRU monotonicity in capacity. The
 * Mooncake conversation trace check needs the JSONL importer (traces/, after the merge). */
#include "sim_replay.h"
#include "test.h"

/* Three requests, block size 4:
 *   r0: 10 tokens, hashes [1 2 3]      -> nothing cached: 0 hit
 *   r1: 12 tokens, hashes [1 2 9]      -> leading 1,2 hit: 8 tokens
 *   r2:  6 tokens, hashes [1 5]        -> leading 1 hit: 4 tokens
 *   r3: 11 tokens, hashes [7 2 3]      -> 7 unseen, so 2 and 3 do not count: 0
 * total tokens 39, hit 12; blocks 11, hit 3. */
static void build_small(trace *t) {
  trace_init(t);
  t->flags = TRACE_FLAG_HAS_HASHES;
  t->block_tokens = 4;
  uint64_t h0[] = {1, 2, 3}, h1[] = {1, 2, 9}, h2[] = {1, 5}, h3[] = {7, 2, 3};
  kv_error e = {0};
  trace_add_session(t, 0, 0, &e);
  trace_add_turn(t, 0, 0, 10, 10, 1, h0, 3, &e);
  trace_add_session(t, 1, 10, &e);
  trace_add_turn(t, 10, 0, 12, 12, 1, h1, 3, &e);
  trace_add_session(t, 2, 20, &e);
  trace_add_turn(t, 20, 0, 6, 6, 1, h2, 2, &e);
  trace_add_session(t, 3, 30, &e);
  trace_add_turn(t, 30, 0, 11, 11, 1, h3, 3, &e);
}

static void test_hand_counted(void) {
  trace t;
  build_small(&t);
  sim_replay_result d, r;
  kv_error e = {0};
  REQUIRE_OK(sim_prefix_reuse(&t, &d, &e), &e);
  CHECK_EQ_INT(d.tokens, 39);
  CHECK_EQ_INT(d.hit_tokens, 12);
  CHECK_EQ_INT(d.blocks, 11);
  CHECK_EQ_INT(d.hit_blocks, 3);
  REQUIRE_OK(sim_replay_blocks(&t, sim_policy_find("lru"), 0, &r, &e), &e);
  CHECK_EQ_INT(r.hit_tokens, 12);
  CHECK_EQ_INT(r.hit_blocks, 3);
  /* capacity 4 tokens = one block: r1 finds block 1 (r0 inserted deepest first, so the root
   * was touched last and survives), r2 finds 1 again, r3 nothing */
  REQUIRE_OK(sim_replay_blocks(&t, sim_policy_find("lru"), 4, &r, &e), &e);
  CHECK_EQ_INT(r.hit_blocks, 2);
  CHECK_EQ_INT(r.hit_tokens, 8);
  CHECK(sim_replay_blocks(&t, sim_policy_find("sa"), 0, &r, &e) == KV_ENOTSUP);
  t.flags = 0;
  CHECK(sim_prefix_reuse(&t, &d, &e) == KV_EINVAL);
  trace_free(&t);
}

/* A random forest of prefixes (shared system prompts, conversations that extend earlier
 * requests), like Mooncake's: hashes are prefix hashes, so equal hashes imply equal prefixes. */
static void build_random(trace *t, uint64_t seed, int n_req) {
  trace_init(t);
  t->flags = TRACE_FLAG_HAS_HASHES;
  t->block_tokens = 16;
  uint64_t x = seed;
#define RND() (x = x * 6364136223846793005ull + 1442695040888963407ull, (x >> 33))
  /* each request: a root (one of 5 system prompts) then either an extension of an earlier
   * request's chain or fresh blocks */
  static uint64_t chains[4000][40];
  static int lens[4000];
  uint64_t next_id = 1000;
  kv_error e = {0};
  for (int r = 0; r < n_req; r++) {
    uint64_t *h = chains[r];
    int len = 0;
    if (r > 0 && RND() % 100 < 60) {
      int p = (int)(RND() % (uint64_t)r);
      int keep = 1 + (int)(RND() % (uint64_t)lens[p]);
      for (int k = 0; k < keep; k++) h[len++] = chains[p][k];
    } else {
      h[len++] = RND() % 5;
    }
    int extra = 1 + (int)(RND() % 8);
    for (int k = 0; k < extra && len < 40; k++) h[len++] = next_id++;
    lens[r] = len;
    int64_t tokens = (int64_t)(len - 1) * 16 + 1 + (int64_t)(RND() % 16);
    trace_add_session(t, r, r * 1000, &e);
    trace_add_turn(t, r * 1000, 0, tokens, tokens, 10, h, len, &e);
  }
#undef RND
}

static void test_unbounded_equals_direct(void) {
  for (uint64_t seed = 1; seed <= 5; seed++) {
    trace t;
    build_random(&t, seed, 3000);
    kv_error e = {0};
    REQUIRE_OK(trace_check(&t, &e), &e);
    sim_replay_result d, r;
    REQUIRE_OK(sim_prefix_reuse(&t, &d, &e), &e);
    REQUIRE_OK(sim_replay_blocks(&t, sim_policy_find("lru"), 0, &r, &e), &e);
    CHECK_EQ_INT(r.hit_tokens, d.hit_tokens);
    CHECK_EQ_INT(r.hit_blocks, d.hit_blocks);
    CHECK_EQ_INT(r.tokens, d.tokens);
    CHECK(d.hit_tokens > 0 && d.hit_tokens < d.tokens);
    CHECK_EQ_INT(r.evictions, 0);
    REQUIRE_OK(sim_replay_blocks(&t, sim_policy_find("opt"), 0, &r, &e), &e);
    CHECK_EQ_INT(r.hit_tokens, d.hit_tokens);
    trace_free(&t);
  }
}

/* LRU is a stack algorithm on the fixed reference string the replay produces, so the hit
 * count can only grow with capacity; the unbounded value is the ceiling. */
static void test_lru_monotone_in_capacity(void) {
  trace t;
  build_random(&t, 42, 4000);
  kv_error e = {0};
  sim_replay_result d, r;
  REQUIRE_OK(sim_prefix_reuse(&t, &d, &e), &e);
  int64_t prev = -1;
  int64_t caps[] = {16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1 << 22};
  for (size_t i = 0; i < sizeof caps / sizeof caps[0]; i++) {
    REQUIRE_OK(sim_replay_blocks(&t, sim_policy_find("lru"), caps[i], &r, &e), &e);
    CHECK(r.hit_tokens >= prev);
    CHECK(r.hit_tokens <= d.hit_tokens);
    prev = r.hit_tokens;
  }
  CHECK_EQ_INT(prev, d.hit_tokens); /* 4M tokens hold the whole trace */
  trace_free(&t);
}

TEST_LIST = {TEST(test_hand_counted), TEST(test_unbounded_equals_direct),
             TEST(test_lru_monotone_in_capacity), {0}};
TEST_MAIN

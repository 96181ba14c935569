/* The tiered store and its policies: victim order of each policy on crafted sequences,
 * demotion down the tiers, scheduler-aware protection, TTL, the staging buffer, invariants. */
#include "sim_stats.h"
#include "sim_store.h"
#include "test.h"

static sim_store st;
static int64_t stats[SIM_STAT_COUNT];

static void mk(const char *policy, int64_t hbm, int64_t dram, int64_t ssd, int64_t ttl,
               sim_net *net, const int32_t *links) {
  int64_t cap[SIM_TIER_COUNT] = {hbm, dram, ssd};
  memset(stats, 0, sizeof stats);
  kv_error e = {0};
  int rc = sim_store_init(&st, SIM_STORE_SESSION, sim_policy_find(policy), cap, 1, ttl, net,
                          links, stats, &e);
  if (rc) printf("init: %s\n", e.msg);
}

static int32_t add(uint64_t key, int64_t tokens, int64_t now) {
  return sim_store_create(&st, key, tokens, sim_store_top_tier(&st), now, SIM_QPOS_ANY);
}
static int where(uint64_t key) {
  int32_t i = sim_store_find(&st, key, 0);
  return i < 0 ? -1 : st.u[i].tier;
}
static void check_invariants(void) {
  kv_error e = {0};
  CHECK_OK(sim_store_check(&st, &e), &e);
}

enum { A = 1, B, C, D, E, F };

static void test_lru(void) {
  mk("lru", 0, 3, 0, 0, NULL, NULL);
  add(A, 1, 0);
  add(B, 1, 0);
  add(C, 1, 0);
  sim_store_touch(&st, sim_store_find(&st, A, 0), 1);
  add(D, 1, 2); /* LRU order B, C, A: B goes */
  CHECK_EQ_INT(where(B), -1);
  sim_store_touch(&st, sim_store_find(&st, C, 0), 3);
  add(E, 1, 4); /* order A, D, C: A goes */
  CHECK_EQ_INT(where(A), -1);
  CHECK_EQ_INT(where(C), SIM_TIER_DRAM);
  CHECK_EQ_INT(stats[SIM_STAT_DROPPED], 2);
  check_invariants();
  sim_store_free(&st);
}

static void test_fifo(void) {
  mk("fifo", 0, 3, 0, 0, NULL, NULL);
  add(A, 1, 0);
  add(B, 1, 0);
  add(C, 1, 0);
  sim_store_touch(&st, sim_store_find(&st, A, 0), 1); /* does not matter for FIFO */
  add(D, 1, 2);
  CHECK_EQ_INT(where(A), -1);
  add(E, 1, 3);
  CHECK_EQ_INT(where(B), -1);
  CHECK_EQ_INT(where(C), SIM_TIER_DRAM);
  check_invariants();
  sim_store_free(&st);
}

static void test_opt(void) {
  mk("opt", 0, 3, 0, 0, NULL, NULL);
  sim_store_set_next_use(&st, add(A, 1, 0), 100);
  sim_store_set_next_use(&st, add(B, 1, 0), 50);
  add(C, 1, 0); /* never used again */
  add(D, 1, 1);
  CHECK_EQ_INT(where(C), -1); /* never used: first victim */
  sim_store_set_next_use(&st, sim_store_find(&st, D, 0), 70);
  add(E, 1, 2);
  CHECK_EQ_INT(where(A), -1); /* farthest next use (100) */
  CHECK_EQ_INT(where(B), SIM_TIER_DRAM);
  check_invariants();
  sim_store_free(&st);
}

/* DRAM (2) -> SSD (2) -> dropped, each step in LRU order; sizes in tokens = bytes. */
static void test_demotion_chain(void) {
  mk("lru", 0, 2, 2, 0, NULL, NULL);
  add(A, 1, 0);
  add(B, 1, 1);
  add(C, 1, 2); /* A -> SSD */
  CHECK_EQ_INT(where(A), SIM_TIER_SSD);
  add(D, 1, 3); /* B -> SSD */
  add(E, 1, 4); /* C -> SSD, which drops its LRU (A) */
  CHECK_EQ_INT(where(A), -1);
  CHECK_EQ_INT(where(B), SIM_TIER_SSD);
  CHECK_EQ_INT(where(C), SIM_TIER_SSD);
  CHECK_EQ_INT(where(E), SIM_TIER_DRAM);
  CHECK_EQ_INT(stats[SIM_STAT_DEMOTE_DRAM_SSD], 3);
  CHECK_EQ_INT(stats[SIM_STAT_DROPPED], 1);
  /* a unit larger than every tier is refused, nothing is evicted for it */
  CHECK_EQ_INT(add(F, 3, 5), KV_ERANGE);
  CHECK_EQ_INT(where(E), SIM_TIER_DRAM);
  /* pinned units are never victims */
  sim_store_pin(&st, sim_store_find(&st, E, 0));
  sim_store_pin(&st, sim_store_find(&st, D, 0));
  sim_store_pin(&st, sim_store_find(&st, B, 0));
  sim_store_pin(&st, sim_store_find(&st, C, 0));
  CHECK_EQ_INT(add(F, 1, 6), KV_ERANGE);
  check_invariants();
  sim_store_free(&st);
}

/* Scheduler-aware: protected (in-window) units are demoted only after all unprotected ones,
 * the one nearest the window's tail (largest queue position) first, and never dropped. */
static void test_scheduler_aware(void) {
  mk("sa", 0, 3, 2, 0, NULL, NULL);
  int32_t a = add(A, 1, 0), b = add(B, 1, 1), c = add(C, 1, 2);
  sim_store_set_qpos(&st, a, 3);
  sim_store_set_qpos(&st, c, 9);
  add(D, 1, 3); /* unprotected B goes first although it is not the LRU */
  CHECK_EQ_INT(where(B), SIM_TIER_SSD);
  sim_store_set_qpos(&st, sim_store_find(&st, D, 0), 5);
  add(E, 1, 4); /* all protected: the farthest (C, position 9) is demoted */
  CHECK_EQ_INT(where(C), SIM_TIER_SSD);
  CHECK_EQ_INT(where(A), SIM_TIER_DRAM);
  /* SSD holds B (unprotected) and C (protected): the next demotion drops B, not C */
  add(F, 1, 5); /* DRAM victim: E (unprotected) -> SSD; SSD full -> drops B */
  CHECK_EQ_INT(where(B), -1);
  CHECK_EQ_INT(where(C), SIM_TIER_SSD);
  CHECK_EQ_INT(where(E), SIM_TIER_SSD);
  (void)b;
  /* protect E too: SSD holds only protected units (C 9, E 11), DRAM holds A 3, D 5, F */
  sim_store_set_qpos(&st, sim_store_find(&st, E, 0), 11);
  CHECK(add(7, 1, 6) >= 0); /* F (unprotected) cannot be demoted (SSD protected): dropped */
  CHECK_EQ_INT(where(F), -1);
  CHECK_EQ_INT(where(C), SIM_TIER_SSD);
  CHECK_EQ_INT(where(E), SIM_TIER_SSD);
  sim_store_set_qpos(&st, sim_store_find(&st, 7, 0), 13);
  /* everything protected: nothing may be dropped, so a new unit finds no room */
  CHECK_EQ_INT(add(8, 1, 7), KV_ERANGE);
  CHECK_EQ_INT(where(7), SIM_TIER_DRAM);
  CHECK_EQ_INT(where(A), SIM_TIER_DRAM);
  check_invariants();
  sim_store_free(&st);
  /* qpos_limit: a requester at queue position 4 may not evict units of jobs nearer the head */
  mk("sa", 0, 2, 0, 0, NULL, NULL);
  sim_store_set_qpos(&st, add(A, 1, 0), 2);
  sim_store_set_qpos(&st, add(B, 1, 0), 6);
  CHECK_EQ_INT(sim_store_make_room(&st, SIM_TIER_DRAM, 1, 4), KV_ERANGE); /* B protected, not dropped */
  CHECK_EQ_INT(where(A), SIM_TIER_DRAM);
  check_invariants();
  sim_store_free(&st);
}

static void test_ttl(void) {
  mk("lru", 0, 10, 0, 100, NULL, NULL);
  add(A, 1, 0);
  add(B, 1, 80);
  CHECK(sim_store_find(&st, A, 100) >= 0);  /* exactly 100 ns old: still valid */
  CHECK(sim_store_find(&st, A, 101) < 0);   /* expired, dropped on lookup */
  CHECK_EQ_INT(stats[SIM_STAT_TTL_EXPIRED], 1);
  CHECK_EQ_INT(sim_store_expire(&st, 181), 1); /* the sweep drops B */
  CHECK_EQ_INT(st.n_live, 0);
  check_invariants();
  sim_store_free(&st);
}

/* With a link model: a demotion is a transfer; the unit is busy (not evictable, not readable)
 * until it arrives; the staging buffer bounds demotions in flight, beyond it victims drop. */
static int32_t ready_unit = -1;
static void on_ready(void *ctx, int32_t u) {
  (void)ctx;
  ready_unit = u;
}


/* Inclusive SSD: a unit fetched up keeps its SSD copy as a shadow; growing it above and demoting
 * it again needs (and would write) only the bytes the shadow lacks; shrinking drops the shadow;
 * a full SSD discards shadows before evicting anything. Byte counts by hand, 1 byte per token. */
static void test_inclusive_shadows(void) {
  mk("lru", 0, 10, 20, 0, NULL, NULL);
  int32_t a = add(A, 6, 0);
  REQUIRE(a >= 0);
  CHECK_OK(sim_store_move(&st, a, SIM_TIER_SSD, 1, SIM_QPOS_ANY), &(kv_error){0});
  CHECK_EQ_INT(st.tiers[SIM_TIER_SSD].used, 6);
  CHECK_OK(sim_store_move(&st, a, SIM_TIER_DRAM, 1, SIM_QPOS_ANY), &(kv_error){0});
  CHECK_EQ_INT(st.u[a].shadow, 6);               /* SSD copy kept */
  CHECK_EQ_INT(st.tiers[SIM_TIER_SSD].used, 6);
  CHECK_EQ_INT(st.tiers[SIM_TIER_DRAM].used, 6);
  check_invariants();
  CHECK_OK(sim_store_resize(&st, a, 9, SIM_QPOS_ANY), &(kv_error){0}); /* a new turn's KV */
  CHECK_EQ_INT(st.u[a].shadow, 6);
  CHECK_OK(sim_store_move(&st, a, SIM_TIER_SSD, 1, SIM_QPOS_ANY), &(kv_error){0});
  CHECK_EQ_INT(st.tiers[SIM_TIER_SSD].used, 9); /* 3 more bytes, not 9 */
  CHECK_EQ_INT(st.u[a].shadow, 0);
  CHECK_EQ_INT(st.tiers[SIM_TIER_DRAM].used, 0);
  check_invariants();
  /* Fetch again, then shrink (truncation): the shadow no longer matches and is dropped. */
  CHECK_OK(sim_store_move(&st, a, SIM_TIER_DRAM, 1, SIM_QPOS_ANY), &(kv_error){0});
  CHECK_EQ_INT(st.u[a].shadow, 9);
  CHECK_OK(sim_store_resize(&st, a, 5, SIM_QPOS_ANY), &(kv_error){0});
  CHECK_EQ_INT(st.u[a].shadow, 0);
  CHECK_EQ_INT(st.tiers[SIM_TIER_SSD].used, 0);
  check_invariants();
  /* SSD full of B's resident copy and A's shadow: making room discards the shadow first. */
  CHECK_OK(sim_store_move(&st, a, SIM_TIER_SSD, 1, SIM_QPOS_ANY), &(kv_error){0});
  CHECK_OK(sim_store_move(&st, a, SIM_TIER_DRAM, 1, SIM_QPOS_ANY), &(kv_error){0}); /* shadow 5 */
  int32_t b = add(B, 4, 1);
  CHECK_OK(sim_store_move(&st, b, SIM_TIER_SSD, 1, SIM_QPOS_ANY), &(kv_error){0});
  int32_t c = add(C, 10, 2); /* DRAM: A (5) + C (10) > 10: A is demoted, needing 0 new bytes */
  REQUIRE(c >= 0);
  CHECK_EQ_INT(where(A), SIM_TIER_SSD);
  CHECK_EQ_INT(st.tiers[SIM_TIER_SSD].used, 9);
  check_invariants();
  int32_t d = add(D, 10, 3); /* C (10) goes down: SSD 9 + 10 > 20? no: 19 fits */
  REQUIRE(d >= 0);
  CHECK_EQ_INT(where(C), SIM_TIER_SSD);
  CHECK_EQ_INT(stats[SIM_STAT_DROPPED], 0);
  check_invariants();
  /* Dropping a fetched unit frees its shadow too. */
  int32_t x = sim_store_find(&st, C, 4);
  sim_store_move(&st, d, SIM_TIER_SSD, 1, SIM_QPOS_ANY); /* SSD full: the LRU victim goes */
  check_invariants();
  (void)x;
  sim_store_free(&st);
  /* Exclusive mode: a fetch frees the SSD copy and a demotion rewrites everything. */
  mk("lru", 0, 10, 20, 0, NULL, NULL);
  st.inclusive = 0;
  a = add(A, 6, 0);
  sim_store_move(&st, a, SIM_TIER_SSD, 1, SIM_QPOS_ANY);
  sim_store_move(&st, a, SIM_TIER_DRAM, 1, SIM_QPOS_ANY);
  CHECK_EQ_INT(st.u[a].shadow, 0);
  CHECK_EQ_INT(st.tiers[SIM_TIER_SSD].used, 0);
  check_invariants();
  sim_store_free(&st);
}

static void test_transfers_and_staging(void) {
  sim_events ev;
  sim_net net;
  sim_events_init(&ev);
  sim_net_init(&net, &ev);
  int32_t links[SIM_LINK_ROLE_COUNT];
  links[SIM_LINK_H2D] = sim_net_add_link(&net, "h2d", 1e9, 0, NULL);
  links[SIM_LINK_D2H] = sim_net_add_link(&net, "d2h", 1e9, 0, NULL);
  links[SIM_LINK_SSD_READ] = sim_net_add_link(&net, "ssd_read", 1e9, 0, NULL);
  links[SIM_LINK_SSD_WRITE] = sim_net_add_link(&net, "ssd_write", 1e9, 0, NULL); /* 1 B/ns */
  links[SIM_LINK_SSD] = sim_net_add_link(&net, "ssd", 2e9, 0, NULL); /* read + write: no sharing */
  mk("lru", 0, 2000, 100000, 0, &net, links);
  st.stage_cap = 1000;
  st.on_ready = on_ready;
  add(A, 1000, 0);
  add(B, 1000, 0);
  int32_t c = add(C, 1000, 0); /* A demoted: in flight for 1000 ns */
  CHECK(c >= 0);
  int32_t a = sim_store_find(&st, A, 0);
  REQUIRE(a >= 0);
  CHECK_EQ_INT(st.u[a].tier, SIM_TIER_SSD);
  CHECK_EQ_INT(st.u[a].busy, 1);
  CHECK_EQ_INT(st.stage_used, 1000);
  CHECK_EQ_INT(stats[SIM_STAT_BYTES_SSD_WRITE], 1000);
  add(D, 1000, 0); /* B cannot be staged (buffer full): dropped */
  CHECK_EQ_INT(where(B), -1);
  CHECK_EQ_INT(stats[SIM_STAT_DROPPED], 1);
  check_invariants();
  sim_events_run(&ev, SIM_TIME_MAX, NULL);
  CHECK_EQ_INT(ev.now, 1000);
  CHECK_EQ_INT(ready_unit, a);
  CHECK_EQ_INT(st.u[a].busy, 0);
  CHECK_EQ_INT(st.stage_used, 0);
  /* routes */
  int32_t r[SIM_ROUTE_MAX];
  CHECK_EQ_INT(sim_store_route(&st, SIM_TIER_SSD, SIM_LOC_GPU, r), 3);
  CHECK_EQ_INT(r[0], links[SIM_LINK_SSD_READ]);
  CHECK_EQ_INT(r[1], links[SIM_LINK_SSD]);
  CHECK_EQ_INT(r[2], links[SIM_LINK_H2D]);
  CHECK_EQ_INT(sim_store_route(&st, SIM_TIER_DRAM, SIM_TIER_SSD, r), 2);
  CHECK_EQ_INT(r[0], links[SIM_LINK_SSD_WRITE]);
  CHECK_EQ_INT(r[1], links[SIM_LINK_SSD]);
  CHECK_EQ_INT(sim_store_route(&st, SIM_LOC_GPU, SIM_TIER_SSD, r), 3);
  CHECK_EQ_INT(sim_store_route(&st, SIM_TIER_HBM, SIM_LOC_GPU, r), 0);
  CHECK_EQ_INT(sim_store_route(&st, SIM_LOC_GPU, SIM_TIER_DRAM, r), 1);
  CHECK_EQ_INT(r[0], links[SIM_LINK_D2H]);
  /* resize grows in place (making room) and shrinks */
  int32_t d = sim_store_find(&st, D, 0);
  CHECK_OK(sim_store_resize(&st, d, 1500, SIM_QPOS_ANY), &(kv_error){0});
  CHECK_EQ_INT(st.tiers[SIM_TIER_DRAM].used, 1500); /* C (the LRU) made room: demoted */
  CHECK_EQ_INT(where(C), SIM_TIER_SSD);
  check_invariants();
  sim_store_free(&st);
  sim_net_free(&net);
  sim_events_free(&ev);
}

TEST_LIST = {TEST(test_lru), TEST(test_fifo), TEST(test_opt), TEST(test_demotion_chain),
             TEST(test_scheduler_aware), TEST(test_ttl), TEST(test_transfers_and_staging),
             TEST(test_inclusive_shadows), {0}};
TEST_MAIN

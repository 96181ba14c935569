/* Tests of the in-memory workload model (traces/trace.h). */
#include "test.h"
#include "trace.h"

static void test_build_and_check(void) {
  trace t;
  trace_init(&t);
  kv_error e = {0};
  t.flags = TRACE_FLAG_FULL_HISTORY;
  REQUIRE(trace_add_session(&t, 10, 0, &e) == 0);
  REQUIRE(trace_add_turn(&t, 0, 0, 100, 100, 50, NULL, 0, &e) == 0);
  REQUIRE(trace_add_turn(&t, 5000, 4000, 170, 20, 30, NULL, 0, &e) == 1);
  REQUIRE(trace_add_session(&t, 11, 100, &e) == 1);
  REQUIRE(trace_add_turn(&t, 100, 0, 10, 10, 5, NULL, 0, &e) == 2);
  CHECK_OK(trace_check(&t, &e), &e);
  CHECK_EQ_INT(t.sessions[0].n_turns, 2);
  CHECK_EQ_INT(t.turns[2].session, 1);
  /* history mismatch is reported with the session id and turn */
  t.turns[1].input_tokens = 171;
  CHECK(trace_check(&t, &e) == KV_EFORMAT);
  CHECK_STR_CONTAINS(e.msg, "session 10 turn 1");
  trace_free(&t);
}

static void test_rejects_bad_values(void) {
  trace t;
  trace_init(&t);
  kv_error e = {0};
  CHECK(trace_add_turn(&t, 0, 0, 1, 1, 1, NULL, 0, &e) == KV_ESTATE);
  REQUIRE(trace_add_session(&t, 1, 1000, &e) == 0);
  CHECK(trace_add_turn(&t, 1000, 0, -1, 0, 1, NULL, 0, &e) == KV_ERANGE);
  CHECK(trace_add_turn(&t, 1000, 0, 5, 6, 1, NULL, 0, &e) == KV_ERANGE);
  CHECK_STR_CONTAINS(e.msg, "new tokens 6 exceed input tokens 5");
  CHECK(trace_add_turn(&t, 999, 0, 5, 5, 1, NULL, 0, &e) == KV_ERANGE);
  CHECK(trace_add_turn(&t, 1000, 0, 3000000000LL, 5, 1, NULL, 0, &e) == KV_ERANGE);
  CHECK(trace_add_session(&t, 2, 999, &e) == KV_ERANGE);
  CHECK(trace_add_session(&t, 2, -1, &e) == KV_ERANGE);
  trace_free(&t);
}

static void test_hashes(void) {
  trace t;
  trace_init(&t);
  kv_error e = {0};
  t.block_tokens = 512;
  t.flags = TRACE_FLAG_HAS_HASHES;
  uint64_t h[3] = {1, 2, 3};
  REQUIRE(trace_add_session(&t, 1, 0, &e) == 0);
  REQUIRE(trace_add_turn(&t, 0, 0, 1100, 1100, 10, h, 3, &e) == 0);
  CHECK_OK(trace_check(&t, &e), &e);
  CHECK(trace_turn_hashes(&t, &t.turns[0])[2] == 3);
  t.turns[0].input_tokens = 1000; /* 2 blocks but 3 hashes */
  CHECK(trace_check(&t, &e) == KV_EFORMAT);
  trace_free(&t);
}


static void test_teacher_force(void) {
  trace t;
  trace_init(&t);
  kv_error e = {0};
  t.flags = TRACE_FLAG_FULL_HISTORY;
  /* turn 0: 100 new, 50 out; turn 1: history 150, 20 new (input 170), 30 out; turn 2: 10 new */
  REQUIRE(trace_add_session(&t, 1, 0, &e) == 0);
  REQUIRE(trace_add_turn(&t, 0, 0, 100, 100, 50, NULL, 0, &e) == 0);
  REQUIRE(trace_add_turn(&t, 10, 5, 170, 20, 30, NULL, 0, &e) == 1);
  REQUIRE(trace_add_turn(&t, 20, 5, 210, 10, 7, NULL, 0, &e) == 2);
  REQUIRE_OK(trace_teacher_force(&t, &e), &e);
  /* every turn generates 1 token; the other 49 / 29 tokens are prefilled next turn */
  CHECK_EQ_INT(t.turns[0].output_tokens, 1);
  CHECK_EQ_INT(t.turns[1].new_tokens, 20 + 49);
  CHECK_EQ_INT(t.turns[1].input_tokens, 170);
  CHECK_EQ_INT(t.turns[2].new_tokens, 10 + 29);
  CHECK_EQ_INT(t.turns[2].output_tokens, 1);
  CHECK_OK(trace_check(&t, &e), &e);
  t.flags = 0;
  CHECK_EQ_INT(trace_teacher_force(&t, &e), KV_EINVAL);
  trace_free(&t);
}

TEST_LIST = {TEST(test_teacher_force), TEST(test_build_and_check), TEST(test_rejects_bad_values), TEST(test_hashes), {0}};
TEST_MAIN

/* Tests of the production-trace importers: Azure CSV, Mooncake JSONL, BurstGPT CSV, on small
 * crafted files in tests/traces/data (expected values worked out by hand in the comments), plus
 * the public traces that ship in traces/data (checked against published figures). */
#include <stdio.h>
#include <string.h>

#include "import_azure.h"
#include "import_burstgpt.h"
#include "import_mooncake.h"
#include "import_test.h"
#include "test.h"

#define S(x) (x##LL * 1000000000LL)

/* ---- Azure ---------------------------------------------------------------------------------- */

static void test_azure_good(void) {
  trace t;
  kv_error e = {0};
  trace_import_stats st;
  REQUIRE_OK(trace_import_azure(data("azure_good.csv"), NULL, &t, &st, &e), &e);
  REQUIRE_EQ_INT(t.n_sessions, 4);
  CHECK_EQ_INT(st.records, 4);
  CHECK_EQ_INT(t.flags, TRACE_FLAG_OPEN_LOOP);
  /* 18:15:50.9951690 - 18:15:46.6805900 = 4.3145790 s; 18:16:46.6805901 - ... = 60.0000001 s */
  CHECK_EQ_INT(t.turns[0].arrival_ns, 0);
  CHECK_EQ_INT(t.turns[1].arrival_ns, 4314579000LL);
  CHECK_EQ_INT(t.turns[2].arrival_ns, 4314579000LL);
  CHECK_EQ_INT(t.turns[3].arrival_ns, 60000000100LL);
  CHECK_EQ_INT(t.turns[0].input_tokens, 374);
  CHECK_EQ_INT(t.turns[0].new_tokens, 374);
  CHECK_EQ_INT(t.turns[1].output_tokens, 109);
  CHECK_EQ_INT(t.turns[3].input_tokens, 2147483647);
  CHECK_EQ_INT(t.sessions[2].id, 5); /* line numbers; line 4 is blank */
  CHECK_OK(trace_check(&t, &e), &e);
  trace_free(&t);
}

static void test_azure_bad(void) {
  trace t;
  kv_error e = {0};
  trace_import_opts o;
  trace_import_opts_init(&o);
  CHECK(trace_import_azure(data("azure_bad.csv"), &o, &t, NULL, &e) == KV_EFORMAT);
  CHECK_STR_CONTAINS(e.msg, "azure_bad.csv:3: ContextTokens '-5'");
  CHECK_EQ_INT(t.n_sessions, 0);
  bad_log log = {0};
  o.on_bad = TRACE_ON_BAD_SKIP;
  o.bad_fn = collect;
  o.bad_ctx = &log;
  trace_import_stats st;
  REQUIRE_OK(trace_import_azure(data("azure_bad.csv"), &o, &t, &st, &e), &e);
  CHECK_EQ_INT(t.n_turns, 2);
  CHECK_EQ_INT(st.skipped, 7); /* lines 3..9 */
  CHECK_EQ_INT(st.records, 9);
  CHECK_EQ_INT(log.n, 7);
  CHECK_STR_CONTAINS(st.first_bad.msg, ":3: ContextTokens '-5'");
  CHECK_STR_CONTAINS(log.msg[1], ":4: ContextTokens '10.5'");
  CHECK_STR_CONTAINS(log.msg[2], ":5: TIMESTAMP '2023-13-16 18:15:48.0000000' is not a valid");
  CHECK_STR_CONTAINS(log.msg[3], ":6: 2 fields, the header has 3");
  CHECK_STR_CONTAINS(log.msg[4], ":7: TIMESTAMP '2023-11-16 18:15:45.0000000' is earlier");
  CHECK_STR_CONTAINS(log.msg[5], ":8: ContextTokens '2147483648' is not a count in [0, 2^31)");
  CHECK_STR_CONTAINS(log.msg[6], ":9: GeneratedTokens '99999999999999999999'");
  CHECK_EQ_INT(t.turns[1].arrival_ns, S(6));
  CHECK_EQ_INT(t.turns[1].input_tokens, 20);
  trace_free(&t);
  /* missing header columns */
  static const char hdr[] = "TIMESTAMP,Context,GeneratedTokens\n";
  FILE *f = fmemopen((void *)hdr, sizeof hdr - 1, "r");
  CHECK(trace_import_azure_stream(f, "h.csv", NULL, &t, NULL, &e) == KV_EFORMAT);
  CHECK_STR_CONTAINS(e.msg, "h.csv:1: the header lacks the column 'ContextTokens'");
  fclose(f);
}

/* Runs one importer on text held in memory. */
typedef int (*import_fn)(FILE *f, const char *name, const trace_import_opts *o, trace *t,
                         trace_import_stats *st, kv_error *err);

static int burst_stream(FILE *f, const char *name, const trace_import_opts *o, trace *t,
                        trace_import_stats *st, kv_error *err) {
  trace_burstgpt_opts bo;
  trace_burstgpt_opts_init(&bo);
  bo.base = *o;
  return trace_import_burstgpt_stream(f, name, &bo, t, st, err);
}

static int run_text(import_fn fn, const char *text, size_t len, const trace_import_opts *o,
                    trace *t, trace_import_stats *st, kv_error *e) {
  FILE *f = fmemopen((void *)text, len, "r");
  if (!f) return -100;
  int rc = fn(f, "x.csv", o, t, st, e);
  fclose(f);
  return rc;
}

/* CSV files carry their own evidence: a last row without a newline (a file cut short, even one
 * whose cut row still has every field) is refused unless allowed; a duplicated or missing
 * header column is refused naming the columns. */
static void test_csv_truncated_and_headers(void) {
  static const char azure[] =
      "TIMESTAMP,ContextTokens,GeneratedTokens\n"
      "2023-11-16 18:15:46.6805900,374,44\n"
      "2023-11-16 18:15:47.0000000,1234,109\n";
  static const char burst[] =
      "Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n"
      "5,ChatGPT,472,18,490,Conversation log\n"
      "7,ChatGPT,1155,3,1158,Conversation log\n";
  struct {
    import_fn fn;
    const char *text;
    const char *count; /* the last row's input token count (unique in the text) */
  } files[2] = {{trace_import_azure_stream, azure, "1234"}, {burst_stream, burst, "1155"}};
  for (int k = 0; k < 2; k++) {
    const char *text = files[k].text;
    size_t len = strlen(text);
    trace t;
    trace_import_stats st;
    trace_import_opts o;
    trace_import_opts_init(&o);
    kv_error e = {0};
    REQUIRE_OK(run_text(files[k].fn, text, len, &o, &t, &st, &e), &e);
    CHECK_EQ_INT(t.n_turns, 2);
    trace_free(&t);
    /* cut inside the last row's token count: every field present, the value wrong */
    size_t cut = (size_t)(strstr(text, files[k].count) - text) + 2;
    CHECK_EQ_INT(run_text(files[k].fn, text, cut, &o, &t, &st, &e), KV_EFORMAT);
    CHECK_STR_CONTAINS(e.msg, "x.csv:3: the last row has no newline");
    CHECK_EQ_INT(t.n_sessions, 0);
    /* the same with only the final newline missing */
    CHECK_EQ_INT(run_text(files[k].fn, text, len - 1, &o, &t, &st, &e), KV_EFORMAT);
    CHECK_STR_CONTAINS(e.msg, "x.csv:3: the last row has no newline");
    /* skipped and counted in skip mode; accepted when declared complete */
    o.on_bad = TRACE_ON_BAD_SKIP;
    REQUIRE_OK(run_text(files[k].fn, text, len - 1, &o, &t, &st, &e), &e);
    CHECK_EQ_INT(t.n_turns, 1);
    CHECK_EQ_INT(st.skipped, 1);
    trace_free(&t);
    o.on_bad = TRACE_ON_BAD_STOP;
    o.allow_unterminated = 1;
    REQUIRE_OK(run_text(files[k].fn, text, len - 1, &o, &t, &st, &e), &e);
    CHECK_EQ_INT(t.n_turns, 2);
    trace_free(&t);
    /* a short last row is still a wrong field count when unterminated rows are allowed */
    const char *comma = strrchr(text, ',');
    CHECK_EQ_INT(run_text(files[k].fn, text, (size_t)(comma - text), &o, &t, &st, &e),
                 KV_EFORMAT);
    CHECK_STR_CONTAINS(e.msg, "x.csv:3:");
    CHECK_STR_CONTAINS(e.msg, "fields, the header has");
  }
  /* duplicated and missing columns, named */
  static const char dup_a[] = "TIMESTAMP,ContextTokens,GeneratedTokens,contexttokens\n";
  static const char dup_b[] = "Timestamp,Model,Request tokens,Response tokens,Model\n";
  static const char dup_other[] = "TIMESTAMP,ContextTokens,GeneratedTokens,note,note\n";
  static const char miss[] = "\xEF\xBB\xBFTIMESTAMP,Context,Generated\n";
  trace t;
  trace_import_opts o;
  trace_import_opts_init(&o);
  kv_error e = {0};
  CHECK_EQ_INT(run_text(trace_import_azure_stream, dup_a, strlen(dup_a), &o, &t, NULL, &e),
               KV_EFORMAT);
  CHECK_STR_CONTAINS(e.msg, "x.csv:1: column 'contexttokens' appears twice (columns 2 and 4)");
  CHECK_EQ_INT(run_text(burst_stream, dup_b, strlen(dup_b), &o, &t, NULL, &e), KV_EFORMAT);
  CHECK_STR_CONTAINS(e.msg, "column 'Model' appears twice (columns 2 and 5)");
  CHECK_EQ_INT(run_text(trace_import_azure_stream, dup_other, strlen(dup_other), &o, &t, NULL,
                        &e), KV_EFORMAT);
  CHECK_STR_CONTAINS(e.msg, "column 'note' appears twice");
  CHECK_EQ_INT(run_text(trace_import_azure_stream, miss, strlen(miss), &o, &t, NULL, &e),
               KV_EFORMAT);
  CHECK_STR_CONTAINS(e.msg, "lacks the columns 'ContextTokens', 'GeneratedTokens'");
}

static void test_azure_public(void) {
  const char *p = test_repo_path("traces/data/azure_llm_2023_conv.csv");
  trace t;
  kv_error e = {0};
  /* the published file ends without a newline after its last row: refused by default */
  CHECK_EQ_INT(trace_import_azure(p, NULL, &t, NULL, &e), KV_EFORMAT);
  CHECK_STR_CONTAINS(e.msg, ":19367: the last row has no newline");
  trace_import_opts o;
  trace_import_opts_init(&o);
  o.allow_unterminated = 1;
  REQUIRE_OK(trace_import_azure(p, &o, &t, NULL, &e), &e);
  /* traces/data/README.md: 19,366 requests, 2023-11-16 18:15-19:14 */
  CHECK_EQ_INT(t.n_turns, 19366);
  double span_min = (double)t.turns[t.n_turns - 1].arrival_ns / 60e9;
  CHECK(span_min > 58.0 && span_min < 59.0);
  trace_free(&t);
}

/* ---- Mooncake ------------------------------------------------------------------------------- */

static void test_mooncake_good(void) {
  trace t;
  kv_error e = {0};
  trace_mooncake_stats st;
  REQUIRE_OK(trace_import_mooncake(data("mooncake_good.jsonl"), NULL, &t, &st, &e), &e);
  CHECK_OK(trace_check(&t, &e), &e);
  CHECK_EQ_INT(t.block_tokens, 512);
  CHECK_EQ_INT(t.flags, TRACE_FLAG_OPEN_LOOP | TRACE_FLAG_HAS_HASHES);
  /* Sessions by hand (min_shared_blocks 2): lines 1,4,5,7,8 | 2,6 | 9 (shares only block 0) |
   * 10 (no hashes). Line 8 shares [0,1,3,4] with line 5 while line 7 is its session's latest
   * turn: a branch. */
  REQUIRE_EQ_INT(t.n_sessions, 4);
  CHECK_EQ_INT(st.base.records, 9);
  CHECK_EQ_INT(st.continuations, 5);
  CHECK_EQ_INT(st.branches, 1);
  CHECK_EQ_INT(st.shared_blocks, 2 + 3 + 2 + 2 + 4);
  static const int64_t ids[4] = {1, 2, 9, 10}, nt[4] = {5, 2, 1, 1};
  for (int i = 0; i < 4; i++) {
    CHECK_EQ_INT(t.sessions[i].id, ids[i]);
    CHECK_EQ_INT(t.sessions[i].n_turns, nt[i]);
  }
  /* session 1: inputs and new tokens = input - 512 * shared blocks */
  static const int in1[5] = {1000, 1500, 2100, 1100, 2500}, new1[5] = {1000, 476, 564, 76, 452};
  static const int64_t arr1[5] = {0, 1000, 2000, 4000, 5000};
  for (int k = 0; k < 5; k++) {
    const trace_turn *u = &t.turns[t.sessions[0].first_turn + k];
    CHECK_EQ_INT(u->input_tokens, in1[k]);
    CHECK_EQ_INT(u->new_tokens, new1[k]);
    CHECK_EQ_INT(u->arrival_ns, arr1[k] * 1000000);
    CHECK_EQ_INT(u->think_ns, k == 0 ? 0 : -1);
  }
  const trace_turn *u = &t.turns[t.sessions[1].first_turn + 1];
  CHECK_EQ_INT(u->new_tokens, 176);
  CHECK_EQ_INT(u->output_tokens, 50);
  CHECK_EQ_INT(u->n_hashes, 3);
  CHECK(trace_turn_hashes(&t, u)[2] == 6);
  CHECK_EQ_INT(t.sessions[2].arrival_ns, S(5));
  CHECK_EQ_INT(t.turns[t.sessions[3].first_turn].input_tokens, 0);
  trace_free(&t);
  /* min_shared_blocks 0: one session per request */
  trace_mooncake_opts o;
  trace_mooncake_opts_init(&o);
  o.min_shared_blocks = 0;
  REQUIRE_OK(trace_import_mooncake(data("mooncake_good.jsonl"), &o, &t, &st, &e), &e);
  CHECK_EQ_INT(t.n_sessions, 9);
  trace_free(&t);
  /* min_shared_blocks 1: every request with hashes shares block 0, so lines 1-9 form one
   * session of 8 turns and line 10 (no hashes) another */
  o.min_shared_blocks = 1;
  REQUIRE_OK(trace_import_mooncake(data("mooncake_good.jsonl"), &o, &t, &st, &e), &e);
  CHECK_EQ_INT(t.n_sessions, 2);
  CHECK_EQ_INT(t.sessions[0].n_turns, 8);
  trace_free(&t);
}

static void test_mooncake_bad(void) {
  trace t;
  kv_error e = {0};
  CHECK(trace_import_mooncake(data("mooncake_bad.jsonl"), NULL, &t, NULL, &e) == KV_EFORMAT);
  CHECK_STR_CONTAINS(e.msg, "mooncake_bad.jsonl:2: input_length = -1 is negative");
  trace_mooncake_opts o;
  trace_mooncake_opts_init(&o);
  bad_log log = {0};
  o.base.on_bad = TRACE_ON_BAD_SKIP;
  o.base.bad_fn = collect;
  o.base.bad_ctx = &log;
  trace_mooncake_stats st;
  REQUIRE_OK(trace_import_mooncake(data("mooncake_bad.jsonl"), &o, &t, &st, &e), &e);
  CHECK_EQ_INT(t.n_turns, 2);
  CHECK_EQ_INT(t.n_sessions, 2); /* line 17 shares only block 0 with line 1 */
  CHECK_EQ_INT(st.base.skipped, 15);
  CHECK_EQ_INT(st.base.records, 17);
  static const char *const want[15] = {
      ":2: input_length = -1 is negative",
      ":3: input_length = 1.5 is not an integer",
      ":4: missing key 'hash_ids'",
      ":5: 2 hash_ids for input_length 100 (at most 1 blocks of 512 tokens)",
      ":6: timestamp 9 ms is earlier than the previous request's 10 ms",
      ":7: hash_ids[0] = -3 is not a non-negative integer",
      ":8: JSON syntax error",
      ":9: the line is not a JSON object",
      ":10: timestamp 99999999999999999 ms overflows",
      ":11: input_length must be an integer, not a string",
      ":12: JSON syntax error",
      ":13: duplicate key 'timestamp'",
      ":14: input_length = 3000000000 exceeds 2^31-1",
      ":15: hash_ids[0] = 18446744073709551616 is not below 2^64",
      ":16: hash_ids must hold integers, not an array"};
  REQUIRE_EQ_INT(log.n, 15);
  for (int i = 0; i < 15; i++) {
    CHECK_STR_CONTAINS(log.msg[i], "mooncake_bad.jsonl");
    CHECK_STR_CONTAINS(log.msg[i], want[i]);
  }
  trace_free(&t);
}

static void test_mooncake_public(void) {
  const char *p = test_repo_path("traces/data/mooncake_conversation_trace.jsonl");
  trace t;
  kv_error e = {0};
  trace_mooncake_stats st;
  REQUIRE_OK(trace_import_mooncake(p, NULL, &t, &st, &e), &e);
  /* Mooncake FAST'25 Table 2: 12,031 requests, average input 12,035, average output 343 */
  CHECK_EQ_INT(t.n_turns, 12031);
  double in = 0, out = 0;
  for (int64_t i = 0; i < t.n_turns; i++) {
    in += t.turns[i].input_tokens;
    out += t.turns[i].output_tokens;
  }
  CHECK_NEAR(in / t.n_turns, 12035, 1.0, 0);
  CHECK_NEAR(out / t.n_turns, 343, 1.0, 0);
  /* every request either starts a session or continues one */
  CHECK_EQ_INT(t.n_sessions + st.continuations, 12031);
  CHECK(st.base.skipped == 0);
  CHECK_OK(trace_check(&t, &e), &e);
  printf("  mooncake: %lld sessions, %lld continuations (%lld branches)\n",
         (long long)t.n_sessions, (long long)st.continuations, (long long)st.branches);
  trace_free(&t);
}

/* ---- BurstGPT ------------------------------------------------------------------------------- */

static void test_burstgpt_v1(void) {
  trace t;
  kv_error e = {0};
  trace_import_stats st;
  REQUIRE_OK(trace_import_burstgpt(data("burstgpt_v1.csv"), NULL, &t, &st, &e), &e);
  REQUIRE_EQ_INT(t.n_sessions, 4);
  CHECK_EQ_INT(t.turns[1].arrival_ns, S(40));
  CHECK_EQ_INT(t.turns[2].arrival_ns, S(113));
  CHECK_EQ_INT(t.turns[1].input_tokens, 1087);
  CHECK_EQ_INT(t.turns[3].output_tokens, 0);
  trace_free(&t);
  trace_burstgpt_opts o;
  trace_burstgpt_opts_init(&o);
  o.drop_failed = 1;
  REQUIRE_OK(trace_import_burstgpt(data("burstgpt_v1.csv"), &o, &t, &st, &e), &e);
  CHECK_EQ_INT(t.n_turns, 3);
  CHECK_EQ_INT(st.filtered, 1);
  trace_free(&t);
  o.drop_failed = 0;
  o.log_type = TRACE_BURSTGPT_LOG_CONVERSATION;
  REQUIRE_OK(trace_import_burstgpt(data("burstgpt_v1.csv"), &o, &t, &st, &e), &e);
  CHECK_EQ_INT(t.n_turns, 2);
  trace_free(&t);
  o.log_type = TRACE_BURSTGPT_LOG_ALL;
  o.model = "GPT-4";
  REQUIRE_OK(trace_import_burstgpt(data("burstgpt_v1.csv"), &o, &t, &st, &e), &e);
  CHECK_EQ_INT(t.n_turns, 2);
  CHECK_EQ_INT(t.turns[0].arrival_ns, 0); /* time origin = first kept row */
  trace_free(&t);
}

static void test_burstgpt_v2_sessions(void) {
  trace t;
  kv_error e = {0};
  trace_burstgpt_opts o;
  trace_burstgpt_opts_init(&o);
  REQUIRE_OK(trace_import_burstgpt(data("burstgpt_v2.csv"), &o, &t, NULL, &e), &e);
  /* session A (lines 2, 5, 6), B (line 3), API row (line 4) */
  REQUIRE_EQ_INT(t.n_sessions, 3);
  CHECK_EQ_INT(t.sessions[0].id, 2);
  CHECK_EQ_INT(t.sessions[0].n_turns, 3);
  CHECK_EQ_INT(t.sessions[1].arrival_ns, S(51));
  CHECK_EQ_INT(t.sessions[2].arrival_ns, S(60) + 500000000);
  CHECK_EQ_INT(t.turns[1].arrival_ns, S(90) + 250000000);
  CHECK_EQ_INT(t.turns[1].new_tokens, 1400); /* history NONE */
  CHECK_EQ_INT(t.turns[1].think_ns, -1);
  trace_free(&t);
  o.history = TRACE_BURSTGPT_HISTORY_PREV;
  REQUIRE_OK(trace_import_burstgpt(data("burstgpt_v2.csv"), &o, &t, NULL, &e), &e);
  CHECK_EQ_INT(t.turns[1].new_tokens, 1400 - (906 + 446));
  CHECK_EQ_INT(t.turns[2].new_tokens, 0); /* history 1400 + 300 >= 1000 */
  trace_free(&t);
}

static void test_burstgpt_bad(void) {
  trace t;
  kv_error e = {0};
  CHECK(trace_import_burstgpt(data("burstgpt_bad.csv"), NULL, &t, NULL, &e) == KV_EFORMAT);
  CHECK_STR_CONTAINS(e.msg, "burstgpt_bad.csv:3: Total tokens '491' is not Request + Response");
  trace_burstgpt_opts o;
  trace_burstgpt_opts_init(&o);
  bad_log log = {0};
  o.base.on_bad = TRACE_ON_BAD_SKIP;
  o.base.bad_fn = collect;
  o.base.bad_ctx = &log;
  trace_import_stats st;
  REQUIRE_OK(trace_import_burstgpt(data("burstgpt_bad.csv"), &o, &t, &st, &e), &e);
  CHECK_EQ_INT(t.n_turns, 2);
  CHECK_EQ_INT(st.skipped, 6);
  REQUIRE_EQ_INT(log.n, 6);
  CHECK_STR_CONTAINS(log.msg[1], ":4: Request tokens '-3'");
  CHECK_STR_CONTAINS(log.msg[2], ":5: Timestamp '4' is earlier");
  CHECK_STR_CONTAINS(log.msg[3], ":6: Timestamp '1e3' is not a non-negative number");
  CHECK_STR_CONTAINS(log.msg[4], ":7: malformed quoting");
  CHECK_STR_CONTAINS(log.msg[5], ":8: 5 fields, the header has 6");
  trace_free(&t);
  /* a filter on a column the file lacks is refused */
  o.model = "x";
  static const char hdr[] = "Timestamp,Request tokens,Response tokens\n1,2,3\n";
  FILE *f = fmemopen((void *)hdr, sizeof hdr - 1, "r");
  CHECK(trace_import_burstgpt_stream(f, "m.csv", &o, &t, NULL, &e) == KV_EINVAL);
  CHECK_STR_CONTAINS(e.msg, "needs the Model column");
  fclose(f);
}

TEST_LIST = {TEST(test_azure_good),       TEST(test_azure_bad),
             TEST(test_azure_public),     TEST(test_csv_truncated_and_headers),
             TEST(test_mooncake_good),
             TEST(test_mooncake_bad),     TEST(test_mooncake_public),
             TEST(test_burstgpt_v1),      TEST(test_burstgpt_v2_sessions),
             TEST(test_burstgpt_bad),     {0}};
TEST_MAIN

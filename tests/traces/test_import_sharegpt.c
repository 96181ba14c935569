/* Tests of the ShareGPT importer (traces/import_sharegpt.h) on crafted files in
 * tests/traces/data. Token counts use the chars/4 approximation so that every expected value
 * can be worked out by hand: a value of 4k ASCII characters is k tokens. */
#include <stdio.h>
#include <string.h>

#include "import_sharegpt.h"
#include "import_test.h"
#include "test.h"


/* Checks session s's turns: new, output and (FULL_HISTORY) input tokens. */
static void check_turns(const trace *t, int64_t s, int n, const int *nw, const int *out,
                        const int *in) {
  REQUIRE(s < t->n_sessions);
  CHECK_EQ_INT(t->sessions[s].n_turns, n);
  if (t->sessions[s].n_turns != n) return;
  for (int k = 0; k < n; k++) {
    const trace_turn *u = &t->turns[t->sessions[s].first_turn + k];
    CHECK_EQ_INT(u->new_tokens, nw[k]);
    CHECK_EQ_INT(u->output_tokens, out[k]);
    CHECK_EQ_INT(u->input_tokens, in[k]);
    CHECK_EQ_INT(u->think_ns, k == 0 ? 0 : -1);
  }
}

static void test_good(void) {
  trace t;
  kv_error e = {0};
  trace_sharegpt_stats st;
  REQUIRE_OK(trace_import_sharegpt(data("sharegpt_good.json"), NULL, &t, &st, &e), &e);
  CHECK_OK(trace_check(&t, &e), &e);
  CHECK_EQ_INT(t.flags, TRACE_FLAG_FULL_HISTORY);
  CHECK_STR_CONTAINS(t.tokenizer, "chars/4");
  /* A_0 + A_1 joined: P2 O3 P1 | O4 P1 O1 -> (2,3) (1,4) (1,1); inputs 2, 2+3+1, 6+4+1 */
  REQUIRE_EQ_INT(t.n_sessions, 5);
  CHECK_EQ_INT(t.sessions[0].id, 0);
  check_turns(&t, 0, 3, (int[]){2, 1, 1}, (int[]){3, 4, 1}, (int[]){2, 6, 11});
  /* B starts with the model (2 tokens, prompt context), then P1 O2, then a trailing prompt */
  CHECK_EQ_INT(t.sessions[1].id, 2);
  check_turns(&t, 1, 1, (int[]){3}, (int[]){2}, (int[]){3});
  /* C: system 1 + user 2 | O1 | P1 | O1 | P1 P1 | O1 -> (3,1) (1,1) (2,1); inputs 3, 5, 8 */
  check_turns(&t, 2, 3, (int[]){3, 1, 2}, (int[]){1, 1, 1}, (int[]){3, 5, 8});
  /* D is empty (dropped); A_2 comes after A was finished: its own session */
  CHECK_EQ_INT(t.sessions[3].id, 5);
  check_turns(&t, 3, 1, (int[]){1}, (int[]){1}, (int[]){1});
  /* numeric id, extra keys, escaped UTF-8 "\u00e9t\u00e9!" = 4 code points = 1 token */
  CHECK_EQ_INT(t.sessions[4].id, 6);
  check_turns(&t, 4, 1, (int[]){1}, (int[]){1}, (int[]){1});
  CHECK_EQ_INT(st.base.records, 7);
  CHECK_EQ_INT(st.conversations, 6);
  CHECK_EQ_INT(st.joined_segments, 1);
  CHECK_EQ_INT(st.nonadjacent_segments, 1);
  CHECK_EQ_INT(st.model_first, 1);
  CHECK_EQ_INT(st.trailing_prompts, 1);
  CHECK_EQ_INT(st.system_messages, 1);
  CHECK_EQ_INT(st.empty, 1);
  CHECK_EQ_INT(st.messages, 22);
  CHECK_EQ_INT(st.base.skipped, 0);
  trace_free(&t);

  /* leading model messages dropped instead */
  trace_sharegpt_opts o;
  trace_sharegpt_opts_init(&o);
  o.lead = TRACE_SHAREGPT_LEAD_DROP;
  o.msg_overhead = 2;
  REQUIRE_OK(trace_import_sharegpt(data("sharegpt_good.json"), &o, &t, &st, &e), &e);
  /* B: new = 1 + 2 (overhead of its one prompt message), output 2 + 2 */
  check_turns(&t, 1, 1, (int[]){3}, (int[]){4}, (int[]){3});
  trace_free(&t);

  /* words approximation: "xxxx" is one word -> round(4/3) = 1 */
  o.lead = TRACE_SHAREGPT_LEAD_AS_PROMPT;
  o.msg_overhead = 0;
  o.approx = TRACE_TOK_APPROX_WORDS;
  REQUIRE_OK(trace_import_sharegpt(data("sharegpt_good.json"), &o, &t, &st, &e), &e);
  CHECK_STR_CONTAINS(t.tokenizer, "words*4/3");
  check_turns(&t, 0, 3, (int[]){1, 1, 1}, (int[]){1, 1, 1}, (int[]){1, 3, 5});
  trace_free(&t);

  /* JSONL with role/content and "messages" */
  REQUIRE_OK(trace_import_sharegpt(data("sharegpt_good.jsonl"), NULL, &t, &st, &e), &e);
  REQUIRE_EQ_INT(t.n_sessions, 2);
  check_turns(&t, 0, 1, (int[]){1}, (int[]){2}, (int[]){1});
  check_turns(&t, 1, 1, (int[]){2}, (int[]){1}, (int[]){2});
  trace_free(&t);

  /* record limit */
  o.approx = TRACE_TOK_APPROX_CHARS4;
  o.base.max_records = 2;
  REQUIRE_OK(trace_import_sharegpt(data("sharegpt_good.json"), &o, &t, &st, &e), &e);
  CHECK_EQ_INT(t.n_sessions, 2);
  trace_free(&t);
}

static void test_bad_records(void) {
  trace t;
  kv_error e = {0};
  CHECK(trace_import_sharegpt(data("sharegpt_bad.json"), NULL, &t, NULL, &e) == KV_EFORMAT);
  CHECK_STR_CONTAINS(e.msg, "sharegpt_bad.json: record 1 (id \"r1\", line 3, byte ");
  CHECK_STR_CONTAINS(e.msg, "unknown role \"alien\"");
  CHECK_EQ_INT(t.n_sessions, 0);
  trace_sharegpt_opts o;
  trace_sharegpt_opts_init(&o);
  bad_log log = {0};
  o.base.on_bad = TRACE_ON_BAD_SKIP;
  o.base.bad_fn = collect;
  o.base.bad_ctx = &log;
  trace_sharegpt_stats st;
  REQUIRE_OK(trace_import_sharegpt(data("sharegpt_bad.json"), &o, &t, &st, &e), &e);
  REQUIRE_EQ_INT(t.n_sessions, 2);
  CHECK_EQ_INT(t.sessions[1].id, 11);
  CHECK_EQ_INT(t.turns[1].output_tokens, 2);
  CHECK_EQ_INT(st.base.records, 12);
  CHECK_EQ_INT(st.base.skipped, 10);
  static const char *const want[10] = {
      "record 1 (id \"r1\", line 3", "record 2 (id \"r2\", line 4",
      "record 3 (id \"r3\", line 5", "record 4 (id \"r4\", line 6",
      "record 5 (id \"r5\", line 7", "record 6 (id \"\", line 8",
      "record 7 (id \"S_0\", line 9", "record 8 (id \"S_1\", line 10",
      "record 9 (id \"r6\", line 11", "record 10 (id \"\", line 12"};
  static const char *const why[10] = {"unknown role \"alien\"",
                                      "a message has no \"value\"",
                                      "\"value\" must be a string",
                                      "no \"conversations\" array",
                                      "\"conversations\" must be an array",
                                      "a record must be an object, not a number",
                                      "\"value\" must be a string",
                                      "segment of a conversation whose earlier segment is malformed",
                                      "a message must be an object",
                                      "\"id\" must be a string or a number"};
  REQUIRE_EQ_INT(log.n, 10);
  for (int i = 0; i < 10; i++) {
    CHECK_STR_CONTAINS(log.msg[i], want[i]);
    CHECK_STR_CONTAINS(log.msg[i], why[i]);
  }
  trace_free(&t);
}

static void test_syntax_and_structure(void) {
  trace t;
  kv_error e = {0};
  trace_sharegpt_opts o;
  trace_sharegpt_opts_init(&o);
  o.base.on_bad = TRACE_ON_BAD_SKIP; /* syntax errors stop even when skipping */
  CHECK(trace_import_sharegpt(data("sharegpt_syntax.json"), &o, &t, NULL, &e) == KV_EFORMAT);
  CHECK_STR_CONTAINS(e.msg, "sharegpt_syntax.json: line 2, byte ");
  CHECK_STR_CONTAINS(e.msg, "JSON syntax error");
  static const struct {
    const char *text, *want;
  } cases[] = {
      {"", "empty input"},
      {"[]  [1]", "content after the top-level array"},
      {"[{\"id\": \"x\", \"conversations\": [", "JSON syntax error"},
      {"{\"id\": \"x\"", "JSON syntax error"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    FILE *f = fmemopen((void *)cases[i].text, strlen(cases[i].text) + (cases[i].text[0] ? 0 : 1),
                       "r");
    REQUIRE(f);
    if (!cases[i].text[0]) {
      fclose(f);
      f = fopen("/dev/null", "r");
    }
    int rc = trace_import_sharegpt_stream(f, "s.json", &o, &t, NULL, &e);
    fclose(f);
    if (rc == 0) TEST_FAIL_AT("case %zu accepted", i);
    CHECK_STR_CONTAINS(e.msg, cases[i].want);
  }
  /* an empty array is a valid, empty trace */
  static const char empty[] = "[ ]";
  FILE *f = fmemopen((void *)empty, 3, "r");
  CHECK_OK(trace_import_sharegpt_stream(f, "e.json", NULL, &t, NULL, &e), &e);
  CHECK_EQ_INT(t.n_sessions, 0);
  fclose(f);
  trace_free(&t);
}

/* A generated file larger than many read chunks: conversation i has (i % 7) + 1 turns, prompt
 * 4*(i%5+1) characters and output 8*(i%3+1), so every total is known in closed form. A string
 * that crosses chunk boundaries and line counting across chunks are exercised. */
static void test_streaming_many_chunks(void) {
  const char *p = test_tmp_path("big_sharegpt.json");
  FILE *f = fopen(p, "w");
  REQUIRE(f);
  const int n = 20000;
  int64_t want_turns = 0, want_in_last = 0;
  fputs("[\n", f);
  for (int i = 0; i < n; i++) {
    int turns = i % 7 + 1, pl = 4 * (i % 5 + 1), ol = 8 * (i % 3 + 1);
    fprintf(f, "%s{\"id\": \"c%d\", \"conversations\": [", i ? ",\n" : "", i);
    for (int k = 0; k < turns; k++) {
      fprintf(f, "%s{\"from\": \"human\", \"value\": \"%.*s\"}, {\"from\": \"gpt\", \"value\": "
              "\"%.*s\"}", k ? ", " : "", pl, "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", ol,
              "yyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy");
    }
    fputs("]}", f);
    want_turns += turns;
    if (i == n - 1) want_in_last = (int64_t)turns * (pl / 4 + ol / 4) - ol / 4;
  }
  /* a final conversation with one 200 KB message (spans several 64 KiB chunks) */
  fputs(",\n{\"id\": \"long\", \"conversations\": [{\"from\": \"human\", \"value\": \"", f);
  for (int i = 0; i < 50000; i++) fputs("abcd", f);
  fputs("\"}, {\"from\": \"gpt\", \"value\": \"ok!!\"}]}\n]\n", f);
  fclose(f);
  trace t;
  kv_error e = {0};
  trace_sharegpt_stats st;
  REQUIRE_OK(trace_import_sharegpt(p, NULL, &t, &st, &e), &e);
  CHECK_EQ_INT(t.n_sessions, n + 1);
  CHECK_EQ_INT(t.n_turns, want_turns + 1);
  const trace_session *s = &t.sessions[n - 1];
  CHECK_EQ_INT(t.turns[s->first_turn + s->n_turns - 1].input_tokens, want_in_last);
  CHECK_EQ_INT(t.turns[t.n_turns - 1].new_tokens, 50000);
  trace_free(&t);
  /* a syntax error after many chunks is reported with its line (n + 2) */
  f = fopen(p, "r+");
  REQUIRE(f);
  fseek(f, -4, SEEK_END);
  fputs("]}]]", f); /* breaks the last record's closing */
  fclose(f);
  CHECK(trace_import_sharegpt(p, NULL, &t, NULL, &e) == KV_EFORMAT);
  CHECK_STR_CONTAINS(e.msg, "line 20002");
  remove(p);
}

static void test_gpt2_counts(void) {
  const char *enc = test_repo_path("traces/data/tokenizers/gpt2/encoder.json");
  const char *mer = test_repo_path("traces/data/tokenizers/gpt2/vocab.bpe");
  trace_tok *tok = NULL;
  kv_error e = {0};
  REQUIRE_OK(trace_tok_load(enc, mer, &tok, &e), &e);
  trace_sharegpt_opts o;
  trace_sharegpt_opts_init(&o);
  o.tok = tok;
  o.tokenizer_name = "gpt2";
  trace t;
  REQUIRE_OK(trace_import_sharegpt(data("sharegpt_good.jsonl"), &o, &t, NULL, &e), &e);
  CHECK_STR_CONTAINS(t.tokenizer, "bpe gpt2");
  /* each value's count is the tokenizer's count of that exact text */
  CHECK_EQ_INT(t.turns[0].new_tokens, trace_tok_count(tok, "xxxx", 4, &e));
  CHECK_EQ_INT(t.turns[0].output_tokens, trace_tok_count(tok, "xxxxxxxx", 8, &e));
  trace_free(&t);
  trace_tok_free(tok);
}

TEST_LIST = {TEST(test_good), TEST(test_bad_records), TEST(test_syntax_and_structure),
             TEST(test_streaming_many_chunks), TEST(test_gpt2_counts), {0}};
TEST_MAIN

/* Tests of the ShareGPT-style generator (traces/trace_gen.h) and the summary (trace_summary.h).
 *
 * Tolerances. A sample of N = 100,000 sessions (about 575,000 turns) is drawn with the default
 * parameters. A proportion near 0.47 then has a standard error sqrt(0.47 * 0.53 / N) = 0.0016;
 * the default parameters were themselves fitted on a 200,000-session Monte Carlo sample (standard
 * error 0.0011), so a tolerance of 0.01 is about five combined standard errors. The number of
 * turns per session has a standard deviation of about 5.9 (geometric tail), so its mean has a
 * standard error of 0.019: tolerance 0.1. Means of exponential quantities over n draws have a
 * relative standard error of 1/sqrt(n); tolerances are five or more of those. */
#include <gsl/gsl_cdf.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "kv_config.h"
#include "kv_fs.h"
#include "test.h"
#include "trace_gen.h"
#include "trace_map.h"
#include "trace_summary.h"

static double capped_mean(double mu, double s, double c) {
  double lc = log(c);
  return exp(mu + s * s / 2) * gsl_cdf_ugaussian_P((lc - mu - s * s) / s) +
         c * (1 - gsl_cdf_ugaussian_P((lc - mu) / s));
}

static void test_published_statistics(void) {
  trace_gen_params p;
  trace_gen_params_default(&p);
  p.n_sessions = 100000;
  p.seed = 7;
  trace t;
  kv_error e = {0};
  REQUIRE_OK(trace_gen_generate(&p, &t, &e), &e);
  REQUIRE_OK(trace_check(&t, &e), &e);
  CHECK_EQ_INT(t.flags, TRACE_FLAG_FULL_HISTORY);
  trace_summary s;
  REQUIRE_OK(trace_summarize(&t, &s, &e), &e);
  /* CachedAttention: 5.75 turns on average, 73% multi-turn, 47% of sessions over 2K tokens,
   * 30% over 4K */
  CHECK_NEAR(s.turns.mean, 5.75, 0.1, 0);
  CHECK_NEAR(s.multi_turn_frac, 0.73, 0.01, 0);
  CHECK_NEAR(s.frac_over_2k, 0.47, 0.01, 0);
  CHECK_NEAR(s.frac_over_4k, 0.30, 0.01, 0);
  /* per-turn means against the mean of a log-normal capped at c (the default caps, 4096):
   * E[min(X, c)] = exp(mu + s^2/2) Phi((ln c - mu - s^2) / s) + c (1 - Phi((ln c - mu) / s));
   * rounding to integers moves it by well under 1%, the sample mean's relative standard error
   * is under 0.5% */
  CHECK_NEAR(s.new_tokens.mean, capped_mean(p.prompt_mu, p.prompt_sigma, p.prompt_max), 0, 0.03);
  CHECK_NEAR(s.output.mean, capped_mean(p.output_mu, p.output_sigma, p.output_max), 0, 0.03);
  /* Poisson arrivals at 1/s: mean gap 1 s and a coefficient of variation of 1 */
  double sum = 0, sum2 = 0;
  for (int64_t i = 1; i < t.n_sessions; i++) {
    double g = (double)(t.sessions[i].arrival_ns - t.sessions[i - 1].arrival_ns) * 1e-9;
    sum += g;
    sum2 += g * g;
  }
  double n = (double)(t.n_sessions - 1), mean = sum / n;
  CHECK_NEAR(mean, 1.0, 0, 0.02);
  CHECK_NEAR(sqrt(sum2 / n - mean * mean) / mean, 1.0, 0.03, 0);
  /* think times: exponential, mean 60 s, and arrival = previous arrival + think */
  double th = 0;
  int64_t nth = 0, bad_arrival = 0;
  for (int64_t i = 0; i < t.n_turns; i++) {
    const trace_turn *u = &t.turns[i];
    if (u->index == 0) continue;
    th += (double)u->think_ns * 1e-9;
    nth++;
    bad_arrival += u->arrival_ns != t.turns[i - 1].arrival_ns + u->think_ns;
  }
  CHECK_NEAR(th / (double)nth, 60.0, 0, 0.015);
  CHECK_EQ_INT(bad_arrival, 0);
  printf("  N=100000: turns %.3f, multi %.4f, >2K %.4f, >4K %.4f, prompt %.1f, output %.1f\n",
         s.turns.mean, s.multi_turn_frac, s.frac_over_2k, s.frac_over_4k, s.new_tokens.mean,
         s.output.mean);
  trace_free(&t);
}

static void test_determinism(void) {
  trace_gen_params p;
  trace_gen_params_default(&p);
  p.n_sessions = 500;
  trace a, b, c;
  kv_error e = {0};
  REQUIRE_OK(trace_gen_generate(&p, &a, &e), &e);
  REQUIRE_OK(trace_gen_generate(&p, &b, &e), &e);
  p.seed = 2;
  REQUIRE_OK(trace_gen_generate(&p, &c, &e), &e);
  REQUIRE_EQ_INT(a.n_turns, b.n_turns);
  CHECK(memcmp(a.turns, b.turns, (size_t)a.n_turns * sizeof *a.turns) == 0);
  CHECK(a.n_turns != c.n_turns || memcmp(a.turns, c.turns, (size_t)a.n_turns * sizeof *a.turns));
  /* changing the length distribution leaves arrivals and turn counts unchanged (separate
   * streams) */
  trace d;
  p.seed = 1;
  p.prompt_mu += 1;
  REQUIRE_OK(trace_gen_generate(&p, &d, &e), &e);
  REQUIRE_EQ_INT(d.n_turns, a.n_turns);
  for (int64_t i = 0; i < a.n_sessions; i++) {
    CHECK_EQ_INT(d.sessions[i].arrival_ns, a.sessions[i].arrival_ns);
  }
  CHECK(d.turns[0].new_tokens != a.turns[0].new_tokens || d.turns[1].new_tokens != a.turns[1].new_tokens);
  trace_free(&a);
  trace_free(&b);
  trace_free(&c);
  trace_free(&d);
}

static void test_hash_chains(void) {
  trace_gen_params p;
  trace_gen_params_default(&p);
  p.n_sessions = 300;
  p.block_tokens = 16;
  trace t;
  kv_error e = {0};
  REQUIRE_OK(trace_gen_generate(&p, &t, &e), &e);
  REQUIRE_OK(trace_check(&t, &e), &e);
  CHECK(t.flags & TRACE_FLAG_HAS_HASHES);
  trace_u64map owner;
  trace_u64map_init(&owner);
  int64_t bad_prefix = 0, bad_partial = 0, shared_across = 0, bad_count = 0;
  for (int64_t s = 0; s < t.n_sessions; s++) {
    const trace_session *ss = &t.sessions[s];
    for (int32_t k = 0; k < ss->n_turns; k++) {
      const trace_turn *u = &t.turns[ss->first_turn + k];
      const uint64_t *h = trace_turn_hashes(&t, u);
      bad_count += u->n_hashes != (u->input_tokens + 15) / 16;
      for (int32_t j = 0; j < u->n_hashes; j++) {
        int64_t *o = trace_u64map_get(&owner, h[j]);
        if (o && *o != s) shared_across++;
        trace_u64map_put(&owner, h[j], s);
      }
      if (k == 0) continue;
      /* the previous turn's full blocks are this turn's prefix; its partial block is not */
      const trace_turn *q = &t.turns[ss->first_turn + k - 1];
      const uint64_t *hq = trace_turn_hashes(&t, q);
      int32_t full = q->input_tokens / 16;
      for (int32_t j = 0; j < full; j++) bad_prefix += hq[j] != h[j];
      if (q->input_tokens % 16) bad_partial += hq[full] == h[full];
    }
  }
  CHECK_EQ_INT(bad_count, 0);
  CHECK_EQ_INT(bad_prefix, 0);
  CHECK_EQ_INT(bad_partial, 0);
  CHECK_EQ_INT(shared_across, 0);
  /* an infinite prefix cache can reuse at most the history, and loses at most one partial block
   * plus the previous output per turn */
  trace_summary s;
  REQUIRE_OK(trace_summarize(&t, &s, &e), &e);
  CHECK(s.has_hashes);
  CHECK(s.prefix_reuse_tokens <= s.history_share + 1e-12);
  CHECK(s.prefix_reuse_tokens > 0.3 * s.history_share);
  trace_u64map_free(&owner);
  trace_free(&t);
}

static void test_fit_recovers_parameters(void) {
  trace_gen_params p;
  trace_gen_params_default(&p);
  p.n_sessions = 50000;
  p.p_single = 0.4;
  p.p_geom = 0.3;
  p.prompt_mu = 5.0;
  p.prompt_sigma = 0.8;
  p.output_mu = 4.0;
  p.output_sigma = 0.5;
  p.think_mean_s = 30;
  trace t;
  kv_error e = {0};
  REQUIRE_OK(trace_gen_generate(&p, &t, &e), &e);
  trace_gen_params q;
  trace_gen_params_default(&q);
  REQUIRE_OK(trace_gen_fit_trace(&t, &q, &e), &e);
  /* standard errors: p_single 0.0022, p_geom ~0.002, mu ~0.002, think ~0.3% */
  CHECK_NEAR(q.p_single, 0.4, 0.012, 0);
  CHECK_NEAR(q.p_geom, 0.3, 0.012, 0);
  CHECK_NEAR(q.prompt_mu, 5.0, 0.02, 0);
  CHECK_NEAR(q.prompt_sigma, 0.8, 0.02, 0);
  CHECK_NEAR(q.output_mu, 4.0, 0.02, 0);
  CHECK_NEAR(q.output_sigma, 0.5, 0.02, 0);
  CHECK_NEAR(q.think_mean_s, 30, 0, 0.02);
  trace_free(&t);
  trace empty;
  trace_init(&empty);
  CHECK(trace_gen_fit_trace(&empty, &q, &e) == KV_EINVAL);
}

static void test_fit_published_small(void) {
  trace_gen_targets tg;
  trace_gen_targets_default(&tg);
  trace_gen_params p;
  trace_gen_params_default(&p);
  trace_gen_fit_report r;
  kv_error e = {0};
  REQUIRE_OK(trace_gen_fit_published(&tg, 4000, 3, &p, &r, &e), &e);
  /* the turn model is closed form: 1 - 0.73 and 1 / ((5.75 - 0.27) / 0.73 - 1) */
  CHECK_NEAR(p.p_single, 0.27, 1e-12, 0);
  CHECK_NEAR(p.p_geom, 1.0 / ((5.75 - 0.27) / 0.73 - 1.0), 1e-12, 0);
  CHECK_NEAR(p.output_mu - p.prompt_mu, log(2.0), 1e-12, 0);
  /* bisection hits its own sample's targets to within a session or two */
  CHECK_NEAR(r.frac_over_long, 0.47, 0.001, 0);
  CHECK_NEAR(r.frac_over_longer, 0.30, 0.001, 0);
  /* an independent sample drawn with the fitted parameters meets the targets; the fit's own
   * sample of 4,000 sessions has standard errors of about 0.008 on each share, and mu and sigma
   * move together along a ridge, so the tolerance is 0.03 */
  p.n_sessions = 40000;
  p.seed = 11;
  trace t;
  trace_summary s;
  REQUIRE_OK(trace_gen_generate(&p, &t, &e), &e);
  REQUIRE_OK(trace_summarize(&t, &s, &e), &e);
  CHECK_NEAR(s.frac_over_2k, 0.47, 0.03, 0);
  CHECK_NEAR(s.frac_over_4k, 0.30, 0.03, 0);
  trace_free(&t);
  tg.frac_over_longer = 0.5; /* above frac_over_long: impossible */
  CHECK(trace_gen_fit_published(&tg, 4000, 3, &p, &r, &e) == KV_EINVAL);
}

static void test_retime(void) {
  trace t;
  trace_init(&t);
  kv_error e = {0};
  for (int i = 0; i < 20000; i++) {
    REQUIRE(trace_add_session(&t, i, 0, &e) >= 0);
    REQUIRE(trace_add_turn(&t, 0, 0, 10, 10, 5, NULL, 0, &e) >= 0);
    REQUIRE(trace_add_turn(&t, 0, -1, 20, 5, 5, NULL, 0, &e) >= 0);
  }
  t.flags = TRACE_FLAG_OPEN_LOOP;
  REQUIRE_OK(trace_gen_retime(&t, 2.0, 10.0, 5, &e), &e);
  CHECK_EQ_INT(t.flags & TRACE_FLAG_OPEN_LOOP, 0);
  double span = (double)t.sessions[t.n_sessions - 1].arrival_ns * 1e-9;
  CHECK_NEAR(span / 20000, 0.5, 0, 0.03);
  double th = 0;
  for (int64_t i = 1; i < t.n_turns; i += 2) th += (double)t.turns[i].think_ns * 1e-9;
  CHECK_NEAR(th / 20000, 10.0, 0, 0.03);
  CHECK_EQ_INT(t.turns[1].arrival_ns, t.turns[0].arrival_ns + t.turns[1].think_ns);
  CHECK(trace_gen_retime(&t, 0, 1, 1, &e) == KV_EINVAL);
  trace_free(&t);
}

static void test_config(void) {
  static const char ini[] = "[sharegpt_gen]\nn_sessions = 12\nrate = 0.5\nblock_tokens = 16\n";
  kv_config *cfg = NULL;
  kv_error e = {0};
  REQUIRE_OK(kv_config_parse(ini, "g.ini", &cfg, &e), &e);
  trace_gen_params p;
  trace_gen_params_default(&p);
  REQUIRE_OK(trace_gen_params_from_config(cfg, "sharegpt_gen", &p, &e), &e);
  CHECK_EQ_INT(p.n_sessions, 12);
  CHECK_NEAR(p.rate, 0.5, 0, 0);
  CHECK_EQ_INT(p.block_tokens, 16);
  CHECK_OK(kv_config_check_unused(cfg, &e), &e);
  kv_config_free(cfg);
  /* written parameters read back identically */
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  trace_gen_params_write(f, "g", &p);
  fclose(f);
  REQUIRE_OK(kv_config_parse(buf, "w.ini", &cfg, &e), &e);
  trace_gen_params q;
  trace_gen_params_default(&q);
  q.n_sessions = 1;
  REQUIRE_OK(trace_gen_params_from_config(cfg, "g", &q, &e), &e);
  CHECK(memcmp(&p, &q, sizeof p) == 0);
  kv_config_free(cfg);
  free(buf);
  /* a bad value names the file and line */
  static const char bad[] = "[sharegpt_gen]\n\np_single = 1.5\n";
  REQUIRE_OK(kv_config_parse(bad, "b.ini", &cfg, &e), &e);
  CHECK(trace_gen_params_from_config(cfg, "sharegpt_gen", &q, &e) != 0);
  CHECK_STR_CONTAINS(e.msg, "b.ini:3");
  kv_config_free(cfg);
  trace_gen_params_default(&q);
  q.rate = 0;
  CHECK(trace_gen_generate(&q, &(trace){0}, &e) == KV_EINVAL);
}

static void test_summary_by_hand(void) {
  trace t;
  trace_init(&t);
  kv_error e = {0};
  t.block_tokens = 4;
  t.flags = TRACE_FLAG_HAS_HASHES;
  uint64_t h1[2] = {1, 2}, h2[3] = {1, 2, 3}, h3[2] = {1, 9};
  /* session A at 0 s: turns of input 8 (new 8) and 10 (new 2); session B at 2 s: input 6 */
  trace_add_session(&t, 0, 0, &e);
  trace_add_turn(&t, 0, 0, 8, 8, 1, h1, 2, &e);
  trace_add_turn(&t, 4000000000LL, -1, 10, 2, 3000, h2, 3, &e);
  trace_add_session(&t, 1, 2000000000LL, &e);
  trace_add_turn(&t, 2000000000LL, 0, 6, 6, 5, h3, 2, &e);
  trace_add_session(&t, 2, 3000000000LL, &e);
  trace_summary s;
  REQUIRE_OK(trace_summarize(&t, &s, &e), &e);
  CHECK_EQ_INT(s.empty_sessions, 1);
  CHECK_EQ_INT(s.turns.n, 2);
  CHECK_EQ_INT(s.turns.max, 2);
  CHECK_NEAR(s.multi_turn_frac, 0.5, 1e-12, 0);
  CHECK_EQ_INT(s.input.p50, 8);  /* ranks: {6, 8, 10}, ceil(0.5 * 3) = 2nd */
  CHECK_EQ_INT(s.input.p90, 10);
  CHECK_EQ_INT(s.session_tokens.max, 3010);
  CHECK_NEAR(s.frac_over_2k, 0.5, 1e-12, 0);
  CHECK_NEAR(s.duration_s, 4.0, 1e-12, 0);
  CHECK_NEAR(s.request_rate, 3 / 4.0, 1e-12, 0);
  CHECK_NEAR(s.history_share, 8.0 / 24.0, 1e-12, 0);
  /* replay order: A0 (nothing seen), B0 at 2 s (block 1 seen: 4 tokens), A1 at 4 s (blocks 1, 2
   * seen: 8 tokens) -> 12 of 24 input tokens; blocks seen before: 1 (B0) + 2 (A1) of 7 */
  CHECK(s.has_hashes);
  CHECK_NEAR(s.prefix_reuse_tokens, 12.0 / 24.0, 1e-12, 0);
  CHECK_NEAR(s.block_reuse, 3.0 / 7.0, 1e-12, 0);
  CHECK_EQ_INT(s.unique_blocks, 4);
  /* plots: data files and a script; the CDF of input tokens ends at 1 */
  char script[4400];
  const char *dir = test_tmp_path("plots");
  REQUIRE_OK(trace_summary_write_plots(&t, dir, "x", script, sizeof script, &e), &e);
  char path[4400], *text = NULL;
  size_t len;
  snprintf(path, sizeof path, "%s/x_input.dat", dir);
  REQUIRE_OK(kv_read_file(path, &text, &len, &e), &e);
  CHECK_STR_CONTAINS(text, "6 0.333333\n8 0.666667\n10 1.000000\n");
  free(text);
  REQUIRE_OK(kv_read_file(script, &text, &len, &e), &e);
  CHECK_STR_CONTAINS(text, "set output 'x.png'");
  CHECK_STR_CONTAINS(text, "set output 'x.svg'");
  free(text);
  CHECK(trace_summary_write_plots(&t, dir, "a/b", script, sizeof script, &e) == KV_EINVAL);
  trace_free(&t);
}

TEST_LIST = {TEST(test_published_statistics), TEST(test_determinism), TEST(test_hash_chains),
             TEST(test_fit_recovers_parameters), TEST(test_fit_published_small),
             TEST(test_retime), TEST(test_config), TEST(test_summary_by_hand), {0}};
TEST_MAIN

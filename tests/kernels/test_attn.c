/* Tests of the CPU attention reference (kernels/attn.h).
 *
 * Independent checks: hand-computable cases for dense attention; the Quest score is an upper
 * bound of every q.k in its block; a sparse result equals dense attention recomputed over the
 * gathered tokens it says it read; top-k with a budget >= the context and PSA/oracle with
 * epsilon = 1 equal dense; covered mass is monotone in budget and epsilon; results do not depend
 * on the thread count. Cases run over many shapes (head_dim, GQA group, block size, context). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "attn.h"
#include "kv_rng.h"
#include "qkv.h"
#include "test.h"

typedef struct {
  attn_shape s;
  int64_t n;   /* keys */
  float *q, *K, *V;
} prob;

/* Heavy-tailed random problem: a few keys aligned with q so attention is peaked. */
static void prob_make(prob *p, int hq, int hkv, int d, int64_t n, uint64_t seed, double peak) {
  p->s.n_heads = hq;
  p->s.n_kv_heads = hkv;
  p->s.head_dim = d;
  p->n = n;
  p->q = malloc((size_t)hq * d * sizeof(float));
  p->K = malloc((size_t)n * hkv * d * sizeof(float));
  p->V = malloc((size_t)n * hkv * d * sizeof(float));
  kv_rng r;
  kv_rng_seed(&r, seed);
  for (int i = 0; i < hq * d; i++) p->q[i] = (float)kv_rng_normal(&r);
  int g = hq / hkv;
  for (int64_t t = 0; t < n; t++) {
    int hot = kv_rng_uniform(&r) < 0.03;
    for (int h = 0; h < hkv; h++) {
      for (int i = 0; i < d; i++) {
        size_t o = ((size_t)t * hkv + h) * d + i;
        p->K[o] = (float)kv_rng_normal(&r) + (hot ? (float)(peak * p->q[(size_t)h * g * d + i]) : 0.f);
        p->V[o] = (float)kv_rng_normal(&r);
      }
    }
  }
}

static void prob_free(prob *p) {
  free(p->q);
  free(p->K);
  free(p->V);
}

static double max_abs_diff(const float *a, const float *b, size_t n) {
  double m = 0;
  for (size_t i = 0; i < n; i++) {
    double x = fabs((double)a[i] - b[i]);
    if (x > m || isnan(x)) m = isnan(x) ? INFINITY : x;
  }
  return m;
}

static void test_dense_hand_cases(void) {
  /* One key: the output is V. Two keys with equal scores: the mean of the two V rows. */
  attn_shape s = {2, 1, 2};
  float q[4] = {1, 0, 0, 1};
  float K1[2] = {3, 4}, V1[2] = {5, -6};
  float out[4];
  double lse[2], probs[4];
  REQUIRE(attn_dense(&s, q, K1, V1, 1, out, lse, NULL) == 0);
  CHECK_NEAR(out[0], 5, 0, 0);
  CHECK_NEAR(out[3], -6, 0, 0);
  CHECK_NEAR(lse[0], 3 / sqrt(2.0), 1e-12, 0);
  float K2[4] = {1, 1, 1, 1}, V2[4] = {2, 0, 4, 8};
  REQUIRE(attn_dense(&s, q, K2, V2, 2, out, lse, probs) == 0);
  CHECK_NEAR(out[0], 3, 1e-6, 0);
  CHECK_NEAR(out[1], 4, 1e-6, 0);
  CHECK_NEAR(probs[0], 0.5, 1e-12, 0);
  /* Scores 0 and ln 3 * sqrt(2) (scale 1/sqrt 2): weights 1/4 and 3/4. */
  float K3[4] = {0, 0, (float)(log(3.0) * sqrt(2.0)), 0};
  REQUIRE(attn_dense(&s, q, K3, V2, 2, out, lse, probs) == 0);
  CHECK_NEAR(probs[1], 0.75, 1e-7, 0);
  CHECK_NEAR(out[0], 0.25 * 2 + 0.75 * 4, 1e-6, 0);
  CHECK_NEAR(lse[0], log(4.0), 1e-7, 0);
}

static void test_dense_gqa_mapping(void) {
  /* Query heads 0,1 use KV head 0 and 2,3 use KV head 1: with identical queries, the output of
   * heads 0/1 must differ from 2/3 exactly as V of the two KV heads differ. */
  prob p;
  prob_make(&p, 4, 2, 8, 50, 3, 0);
  memcpy(p.q + 8, p.q, 8 * sizeof(float));
  memcpy(p.q + 16, p.q, 8 * sizeof(float));
  memcpy(p.q + 24, p.q, 8 * sizeof(float));
  for (int64_t t = 0; t < p.n; t++) memcpy(p.K + (t * 2 + 1) * 8, p.K + t * 2 * 8, 8 * sizeof(float));
  float out[32];
  REQUIRE(attn_dense(&p.s, p.q, p.K, p.V, p.n, out, NULL, NULL) == 0);
  CHECK(max_abs_diff(out, out + 8, 8) == 0);
  CHECK(max_abs_diff(out + 16, out + 24, 8) == 0);
  CHECK(max_abs_diff(out, out + 16, 8) > 1e-3);
  prob_free(&p);
}

static void test_blockmeta_build_append_and_bound(void) {
  int bss[3] = {1, 16, 7};
  for (int c = 0; c < 3; c++) {
    prob p;
    prob_make(&p, 4, 2, 16, 101, 10 + c, 2.0);
    kv_error e = {0};
    attn_blockmeta a, b;
    REQUIRE_OK(attn_blockmeta_init(&a, bss[c], 2, 16, p.n, &e), &e);
    REQUIRE_OK(attn_blockmeta_init(&b, bss[c], 2, 16, p.n, &e), &e);
    REQUIRE_OK(attn_blockmeta_build(&a, p.K, p.n, &e), &e);
    for (int64_t t = 0; t < p.n; t++) REQUIRE_OK(attn_blockmeta_append(&b, p.K + t * 32, &e), &e);
    CHECK_EQ_INT(a.n_blocks, (101 + bss[c] - 1) / bss[c]);
    CHECK_EQ_INT(b.n_blocks, a.n_blocks);
    size_t n = (size_t)a.n_blocks * 32;
    CHECK(max_abs_diff(a.kmin, b.kmin, n) == 0);
    CHECK(max_abs_diff(a.kmax, b.kmax, n) == 0);
    CHECK(max_abs_diff(a.kmean, b.kmean, n) < 1e-6);
    CHECK(max_abs_diff(a.kvar, b.kvar, n) < 1e-5);
    CHECK_EQ_INT(attn_block_tokens(&a, a.n_blocks - 1), 101 - (a.n_blocks - 1) * bss[c]);
    CHECK_EQ_INT(attn_blockmeta_append(&b, p.K, &e) == 0, (a.n_blocks * bss[c]) > 101);
    /* Hand check of block 0, KV head 1, channel 3 for block size 7. */
    if (bss[c] == 7) {
      float mn = 1e30f, mx = -1e30f;
      double sm = 0;
      for (int t = 0; t < 7; t++) {
        float x = p.K[(t * 2 + 1) * 16 + 3];
        mn = x < mn ? x : mn;
        mx = x > mx ? x : mx;
        sm += x;
      }
      CHECK(a.kmin[16 + 3] == mn && a.kmax[16 + 3] == mx);
      CHECK_NEAR(a.kmean[16 + 3], sm / 7, 1e-6, 0);
    }
    /* Quest score is an upper bound of q.k for every key of the block. */
    int viol = 0;
    for (int64_t blk = 0; blk < a.n_blocks; blk++) {
      for (int h = 0; h < 2; h++) {
        const float *q = p.q + h * 2 * 16;
        double ub = 0;
        for (int d = 0; d < 16; d++) {
          double x = (double)q[d] * a.kmin[(blk * 2 + h) * 16 + d];
          double y = (double)q[d] * a.kmax[(blk * 2 + h) * 16 + d];
          ub += x > y ? x : y;
        }
        for (int64_t t = blk * bss[c]; t < (blk + 1) * bss[c] && t < p.n; t++) {
          double dot = 0;
          for (int d = 0; d < 16; d++) dot += (double)q[d] * p.K[(t * 2 + h) * 16 + d];
          if (dot > ub + 1e-9) viol++;
        }
      }
    }
    CHECK_EQ_INT(viol, 0);
    attn_blockmeta_free(&a);
    attn_blockmeta_free(&b);
    prob_free(&p);
  }
}

/* Recomputes attention over the tokens of the blocks a result says it read (gathered into a
 * compact K/V) with attn_dense and compares with the result's output. */
static double gathered_error(const prob *p, const attn_method *m, const attn_result *r) {
  const int D = p->s.head_dim, Hkv = p->s.n_kv_heads, G = p->s.n_heads / Hkv;
  double worst = 0;
  float *K = malloc((size_t)p->n * D * sizeof(float)), *V = malloc((size_t)p->n * D * sizeof(float));
  float out[1024];
  for (int h = 0; h < Hkv; h++) {
    int64_t n = 0;
    for (int64_t t = 0; t < p->n; t++) {
      if (!r->block_read[(size_t)h * r->max_blocks + t / m->block_size]) continue;
      memcpy(K + n * D, p->K + ((size_t)t * Hkv + h) * D, D * sizeof(float));
      memcpy(V + n * D, p->V + ((size_t)t * Hkv + h) * D, D * sizeof(float));
      n++;
    }
    if (n != r->tokens_read[h]) return INFINITY;
    attn_shape s1 = {G, 1, D};
    attn_dense(&s1, p->q + (size_t)h * G * D, K, V, n, out, NULL, NULL);
    double e = max_abs_diff(out, r->out + (size_t)h * G * D, (size_t)G * D);
    worst = e > worst ? e : worst;
  }
  free(K);
  free(V);
  return worst;
}

typedef struct {
  int hq, hkv, d, bs;
  int64_t n;
} shape_case;

static const shape_case cases[] = {
    {4, 1, 16, 16, 300}, {8, 2, 64, 16, 1000}, {8, 8, 32, 8, 257}, {32, 8, 128, 16, 700},
    {2, 1, 64, 32, 33},  {4, 2, 8, 1, 64},     {6, 2, 24, 5, 97},
};

static void test_sparse_equals_gathered_dense(void) {
  const char *specs[] = {"topk:64", "topk:128:mean", "topk:96:sum", "psa:0.9", "psa:0.8:bound",
                         "psa:0.95:lognormal", "psa:0.9:rank=quest:group=2", "oracle:0.9",
                         "psa:0.99:sink=0:recent=0", "topk:64:sink=2:recent=3",
                         "psa:0.95:selfcal:minrank=1:ucb=1.25", "psa:0.9:lognormal:gqa=head",
                         "psa:0.95:selfcal:gqa=head:group=2:sink=0:recent=0"};
  for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
    const shape_case *sc = &cases[c];
    prob p;
    prob_make(&p, sc->hq, sc->hkv, sc->d, sc->n, 100 + c, 1.5);
    kv_error e = {0};
    attn_blockmeta meta;
    double *probs = malloc((size_t)sc->hq * sc->n * sizeof(double));
    float *dense = malloc((size_t)sc->hq * sc->d * sizeof(float));
    attn_dense(&p.s, p.q, p.K, p.V, p.n, dense, NULL, probs);
    for (size_t k = 0; k < sizeof specs / sizeof specs[0]; k++) {
      attn_method m;
      if (attn_method_parse(specs[k], &m, &e)) {
        TEST_FAIL_AT("%s: %s", specs[k], e.msg);
        continue;
      }
      m.block_size = sc->bs;
      if (m.kind == ATTN_TOPK && m.token_budget < sc->bs) m.token_budget = sc->bs;
      REQUIRE_OK(attn_blockmeta_init(&meta, sc->bs, sc->hkv, sc->d, p.n, &e), &e);
      REQUIRE_OK(attn_blockmeta_build(&meta, p.K, p.n, &e), &e);
      attn_result r;
      REQUIRE_OK(attn_result_alloc(&r, &p.s, meta.n_blocks, &e), &e);
      REQUIRE_OK(attn_decode(&p.s, &m, p.q, p.K, p.V, p.n, &meta, probs, &r, &e), &e);
      double err = gathered_error(&p, &m, &r);
      if (!(err < 2e-6)) {
        TEST_FAIL_AT("case %zu (hq %d hkv %d d %d bs %d n %lld) %s: gathered error %g", c, sc->hq,
                     sc->hkv, sc->d, sc->bs, (long long)sc->n, specs[k], err);
      }
      int64_t nb = meta.n_blocks;
      for (int h = 0; h < sc->hkv; h++) {
        const uint8_t *mask = r.block_read + (size_t)h * r.max_blocks;
        for (int b = 0; b < m.keep_sink_blocks && b < nb; b++) CHECK(mask[b]);
        for (int b = 0; b < m.keep_recent_blocks && b < nb; b++) CHECK(mask[nb - 1 - b]);
        if (m.kind == ATTN_TOPK) {
          int64_t forced = m.keep_sink_blocks + m.keep_recent_blocks;
          int64_t want = m.token_budget / sc->bs;
          if (want < forced) want = forced;
          if (want > nb) want = nb;
          CHECK_EQ_INT(r.blocks_read[h], want);
        }
      }
      attn_head_metrics mh[64];
      attn_metrics(&p.s, &m, p.n, &r, dense, probs, mh);
      for (int h = 0; h < sc->hq; h++) {
        /* PSA's stop test: every head reached epsilon, or every block was read. */
        if (m.kind == ATTN_PSA || m.kind == ATTN_ORACLE) {
          int all = r.blocks_read[h / (sc->hq / sc->hkv)] == nb;
          if (!all && !(mh[h].est_mass >= m.epsilon)) {
            TEST_FAIL_AT("%s head %d stopped at estimate %g < eps", specs[k], h, mh[h].est_mass);
          }
          if (m.kind == ATTN_ORACLE && !(mh[h].mass_covered >= m.epsilon - 1e-9)) {
            TEST_FAIL_AT("oracle head %d covers %g < eps", h, mh[h].mass_covered);
          }
        }
        CHECK(mh[h].mass_covered >= 0 && mh[h].mass_covered <= 1);
      }
      attn_result_free(&r);
      attn_blockmeta_free(&meta);
    }
    free(probs);
    free(dense);
    prob_free(&p);
  }
}

static void test_full_budget_equals_dense(void) {
  const char *specs[] = {"topk:100000", "psa:1", "psa:1:bound", "psa:1:lognormal", "oracle:1",
                         "psa:1:rank=quest:group=1", "dense"};
  for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
    const shape_case *sc = &cases[c];
    prob p;
    prob_make(&p, sc->hq, sc->hkv, sc->d, sc->n, 200 + c, 2.0);
    kv_error e = {0};
    double *probs = malloc((size_t)sc->hq * sc->n * sizeof(double));
    float *dense = malloc((size_t)sc->hq * sc->d * sizeof(float));
    attn_dense(&p.s, p.q, p.K, p.V, p.n, dense, NULL, probs);
    for (size_t k = 0; k < sizeof specs / sizeof specs[0]; k++) {
      attn_method m;
      REQUIRE_OK(attn_method_parse(specs[k], &m, &e), &e);
      m.block_size = sc->bs;
      attn_blockmeta meta;
      REQUIRE_OK(attn_blockmeta_init(&meta, sc->bs, sc->hkv, sc->d, p.n, &e), &e);
      REQUIRE_OK(attn_blockmeta_build(&meta, p.K, p.n, &e), &e);
      attn_result r;
      REQUIRE_OK(attn_result_alloc(&r, &p.s, meta.n_blocks, &e), &e);
      REQUIRE_OK(attn_decode(&p.s, &m, p.q, p.K, p.V, p.n, &meta, probs, &r, &e), &e);
      double err = max_abs_diff(r.out, dense, (size_t)sc->hq * sc->d);
      if (!(err < 1e-6)) TEST_FAIL_AT("case %zu %s: |out - dense| = %g", c, specs[k], err);
      for (int h = 0; h < sc->hkv; h++) CHECK_EQ_INT(r.tokens_read[h], p.n);
      attn_result_free(&r);
      attn_blockmeta_free(&meta);
    }
    free(probs);
    free(dense);
    prob_free(&p);
  }
}

static void test_mass_monotone_in_budget_and_epsilon(void) {
  const int64_t budgets[] = {16, 32, 64, 128, 256, 512, 1024};
  const double eps[] = {0.5, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0};
  const char *est[] = {"mean", "bound", "lognormal"};
  int viol = 0, checks = 0;
  for (uint64_t seed = 0; seed < 12; seed++) {
    prob p;
    prob_make(&p, 8, 2, 32, 600 + 37 * (int64_t)seed, 300 + seed, 1.0 + 0.2 * (double)seed);
    kv_error e = {0};
    double *probs = malloc((size_t)8 * p.n * sizeof(double));
    float dense[8 * 32];
    attn_dense(&p.s, p.q, p.K, p.V, p.n, dense, NULL, probs);
    attn_blockmeta meta;
    REQUIRE_OK(attn_blockmeta_init(&meta, 16, 2, 32, p.n, &e), &e);
    REQUIRE_OK(attn_blockmeta_build(&meta, p.K, p.n, &e), &e);
    attn_result r;
    REQUIRE_OK(attn_result_alloc(&r, &p.s, meta.n_blocks, &e), &e);
    for (int variant = 0; variant < 4; variant++) {
      double prev_mass[8];
      int64_t prev_tok[8];
      for (int h = 0; h < 8; h++) {
        prev_mass[h] = -1;
        prev_tok[h] = -1;
      }
      int nsteps = variant == 0 ? 7 : 7;
      for (int k = 0; k < nsteps; k++) {
        attn_method m;
        char spec[64];
        if (variant == 0) snprintf(spec, sizeof spec, "topk:%lld", (long long)budgets[k]);
        else snprintf(spec, sizeof spec, "psa:%g:%s", eps[k], est[variant - 1]);
        REQUIRE_OK(attn_method_parse(spec, &m, &e), &e);
        REQUIRE_OK(attn_decode(&p.s, &m, p.q, p.K, p.V, p.n, &meta, probs, &r, &e), &e);
        attn_head_metrics mh[8];
        attn_metrics(&p.s, &m, p.n, &r, dense, probs, mh);
        for (int h = 0; h < 8; h++) {
          checks++;
          if (mh[h].mass_covered < prev_mass[h] - 1e-12 || mh[h].tokens_read < prev_tok[h]) {
            viol++;
            TEST_FAIL_AT("seed %llu %s head %d: mass %g after %g", (unsigned long long)seed, spec,
                         h, mh[h].mass_covered, prev_mass[h]);
          }
          prev_mass[h] = mh[h].mass_covered;
          prev_tok[h] = mh[h].tokens_read;
        }
      }
    }
    attn_result_free(&r);
    attn_blockmeta_free(&meta);
    free(probs);
    prob_free(&p);
  }
  CHECK_EQ_INT(viol, 0);
  CHECK(checks > 1000);
}

static void test_psa_adapts_budget(void) {
  /* A peaked head needs far fewer tokens than a flat one at the same epsilon. No GQA here: with a
   * group, the KV head stops only when every query head of the group is satisfied. */
  prob peaked, flat;
  prob_make(&peaked, 1, 1, 64, 2048, 7, 4.0);
  prob_make(&flat, 1, 1, 64, 2048, 7, 0.0);
  for (int i = 0; i < 64; i++) flat.q[i] *= 0.05f;
  kv_error e = {0};
  attn_method m;
  REQUIRE_OK(attn_method_parse("psa:0.9", &m, &e), &e);
  int64_t tok[2];
  prob *ps[2] = {&peaked, &flat};
  for (int i = 0; i < 2; i++) {
    attn_blockmeta meta;
    REQUIRE_OK(attn_blockmeta_init(&meta, 16, 1, 64, 2048, &e), &e);
    REQUIRE_OK(attn_blockmeta_build(&meta, ps[i]->K, 2048, &e), &e);
    attn_result r;
    REQUIRE_OK(attn_result_alloc(&r, &ps[i]->s, meta.n_blocks, &e), &e);
    REQUIRE_OK(attn_decode(&ps[i]->s, &m, ps[i]->q, ps[i]->K, ps[i]->V, 2048, &meta, NULL, &r, &e), &e);
    tok[i] = r.tokens_read[0];
    attn_result_free(&r);
    attn_blockmeta_free(&meta);
  }
  /* Peaked: ~3% hot keys whose score exceeds the others' by ~30 nats: the first hot block read
   * settles 90% long before the context is covered. Flat: scores within ~0.1 of each other, so
   * 90% of the mass needs ~90% of the 2048 tokens. */
  if (!(tok[0] * 4 < tok[1])) TEST_FAIL_AT("peaked head read %lld tokens, flat %lld", (long long)tok[0], (long long)tok[1]);
  CHECK(tok[1] > 1700);
  prob_free(&peaked);
  prob_free(&flat);
}

static void test_method_parse_and_errors(void) {
  attn_method m;
  kv_error e = {0};
  char lab[64];
  REQUIRE_OK(attn_method_parse("psa:0.95:lognormal:group=8:bs=32", &m, &e), &e);
  CHECK(m.kind == ATTN_PSA && m.psa_estimate == ATTN_EST_LOGNORMAL && m.group_blocks == 8 &&
        m.block_size == 32);
  attn_method_label(&m, lab, sizeof lab);
  CHECK(strcmp(lab, "psa-0.95-lognormal-bs32-g8") == 0);
  REQUIRE_OK(attn_method_parse("topk:2048", &m, &e), &e);
  attn_method_label(&m, lab, sizeof lab);
  CHECK(strcmp(lab, "topk-2048") == 0);
  CHECK(attn_method_parse("psa:1.5", &m, &e) == KV_EINVAL);
  CHECK_STR_CONTAINS(e.msg, "epsilon");
  CHECK(attn_method_parse("topk", &m, &e) == KV_EINVAL);
  CHECK(attn_method_parse("topk:8", &m, &e) == KV_EINVAL); /* below one block */
  CHECK(attn_method_parse("sparse:3", &m, &e) == KV_EINVAL);
  CHECK_STR_CONTAINS(e.msg, "unknown method 'sparse'");
  CHECK(attn_method_parse("psa:0.9:est=weird", &m, &e) == KV_EINVAL);
  CHECK(attn_method_parse("psa:0.9:group=0", &m, &e) == KV_EINVAL);
  attn_shape bad = {6, 4, 64};
  CHECK(attn_shape_check(&bad, &e) == KV_EINVAL);
  /* Metadata that does not match the call is refused. */
  prob p;
  prob_make(&p, 2, 1, 8, 40, 1, 0);
  attn_blockmeta meta;
  REQUIRE_OK(attn_blockmeta_init(&meta, 16, 1, 8, 40, &e), &e);
  REQUIRE_OK(attn_blockmeta_build(&meta, p.K, 30, &e), &e);
  attn_result r;
  REQUIRE_OK(attn_result_alloc(&r, &p.s, 3, &e), &e);
  REQUIRE_OK(attn_method_parse("psa:0.9", &m, &e), &e);
  CHECK(attn_decode(&p.s, &m, p.q, p.K, p.V, 40, &meta, NULL, &r, &e) == KV_EINVAL);
  CHECK_STR_CONTAINS(e.msg, "does not match");
  REQUIRE_OK(attn_method_parse("oracle:0.9", &m, &e), &e);
  REQUIRE_OK(attn_blockmeta_build(&meta, p.K, 40, &e), &e);
  CHECK(attn_decode(&p.s, &m, p.q, p.K, p.V, 40, &meta, NULL, &r, &e) == KV_EINVAL);
  attn_result_free(&r);
  attn_blockmeta_free(&meta);
  prob_free(&p);
}

/* Canonical specs: for every registry method and every option it takes (and pairs of them),
 * parse(spec(m)) gives m back field for field, spec is idempotent and names each non-default
 * field once in the documented order; options a method does not take are refused. */
static int same_method(const attn_method *a, const attn_method *b) {
  return a->kind == b->kind && a->block_size == b->block_size &&
         a->keep_sink_blocks == b->keep_sink_blocks &&
         a->keep_recent_blocks == b->keep_recent_blocks && a->token_budget == b->token_budget &&
         a->topk_rank == b->topk_rank && a->topk_combine == b->topk_combine &&
         a->epsilon == b->epsilon && a->group_blocks == b->group_blocks &&
         a->psa_rank == b->psa_rank && a->psa_estimate == b->psa_estimate &&
         a->max_tokens == b->max_tokens;
}

static void check_round_trip(const char *in, const char *want) {
  attn_method m, m2;
  kv_error e = {0};
  char spec[160], spec2[160];
  if (attn_method_parse(in, &m, &e)) {
    TEST_FAIL_AT("%s: %s", in, e.msg);
    return;
  }
  CHECK(attn_method_spec(&m, spec, sizeof spec) > 0);
  if (want && strcmp(spec, want) != 0) TEST_FAIL_AT("spec of '%s' is '%s', want '%s'", in, spec, want);
  if (attn_method_parse(spec, &m2, &e)) {
    TEST_FAIL_AT("canonical spec '%s' of '%s' does not parse: %s", spec, in, e.msg);
    return;
  }
  if (!same_method(&m, &m2)) TEST_FAIL_AT("parse(spec(m)) != m for '%s' (spec '%s')", in, spec);
  CHECK(attn_method_equal(&m, &m2));
  CHECK(attn_method_spec(&m2, spec2, sizeof spec2) > 0);
  if (strcmp(spec, spec2) != 0) TEST_FAIL_AT("spec not idempotent: '%s' then '%s'", spec, spec2);
}

static void test_method_spec_round_trip(void) {
  static const struct {
    const char *in, *want;
  } table[] = {
      {"dense", "dense"},
      {"DENSE:bs=32", "dense:bs=32"},
      {"topk:512", "topk:512"},
      {"topk:512:mean", "topk:512:mean"},
      {"topk:512:rank=mean", "topk:512:mean"},
      {"topk:512:quest:max", "topk:512"},
      {"topk:512:sum:mean", "topk:512:mean:sum"},
      {"topk:64:sink=2:recent=3", "topk:64:sink=2:recent=3"},
      {"topk:64:recent=3:bs=8:sink=0", "topk:64:bs=8:sink=0:recent=3"},
      {"psa:0.9", "psa:0.9"},
      {"psa:0.90", "psa:0.9"},
      {"psa:0.9:sink=0:recent=0", "psa:0.9:sink=0:recent=0"},
      {"psa:0.95:lognormal:group=8:bs=32", "psa:0.95:lognormal:bs=32:group=8"},
      {"psa:0.95:est=bound:rank=quest", "psa:0.95:bound:rank=quest"},
      {"psa:0.95:mean:rank=mean", "psa:0.95"},
      {"psa:0.99:cap=4096", "psa:0.99:cap=4096"},
      {"psa:0.1234567890123", "psa:0.1234567890123"},
      {"psa:1", "psa:1"},
      {"oracle:0.9", "oracle:0.9"},
      {"psa:0.95:ucb=1.25:selfcal:minrank=1", "psa:0.95:selfcal:minrank=1:ucb=1.25"},
      {"psa:0.95:gqa=head:ucb=1:minrank=0:gqa=group", "psa:0.95"},
      {"psa:0.9:gqa=head:lognormal:selfcal", "psa:0.9:lognormal:selfcal:gqa=head"},
      {"oracle:0.9:group=2:cap=100:sink=0:recent=2:bs=4", "oracle:0.9:bs=4:sink=0:recent=2:group=2:cap=100"},
  };
  for (size_t i = 0; i < sizeof table / sizeof table[0]; i++) check_round_trip(table[i].in, table[i].want);
  /* every method with every option it takes, alone and with every other one */
  static const struct {
    unsigned opt;
    const char *vals[3];
  } opts[] = {
      {ATTN_OPT_BS, {"bs=1", "bs=32", "bs=4096"}},      {ATTN_OPT_SINK, {"sink=0", "sink=1", "sink=7"}},
      {ATTN_OPT_RECENT, {"recent=0", "recent=5", NULL}}, {ATTN_OPT_GROUP, {"group=1", "group=16", NULL}},
      {ATTN_OPT_CAP, {"cap=0", "cap=2048", NULL}},     {ATTN_OPT_RANK, {"rank=quest", "rank=mean", NULL}},
      {ATTN_OPT_EST, {"est=bound", "est=mean", "est=lognormal"}},
      {ATTN_OPT_COMBINE, {"max", "sum", NULL}},
      {ATTN_OPT_STOP, {"minrank=2", "ucb=1.5", "gqa=head"}},
      {ATTN_OPT_STOP, {"selfcal", "ucb=0.75", "minrank=0"}},
  };
  const int n_opts = (int)(sizeof opts / sizeof opts[0]);
  int n_checked = 0;
  for (int k = 0; k < attn_method_count(); k++) {
    const attn_method_desc *d = attn_method_desc_of((attn_method_kind)k);
    CHECK(d != NULL && d->kind == (attn_method_kind)k && d->cpu != NULL);
    CHECK(attn_method_find(d->name) == d);
    char base[64];
    snprintf(base, sizeof base, "%s%s", d->name,
             !d->param ? "" : d->cost == ATTN_COST_FIXED ? ":4096" : ":0.875");
    check_round_trip(base, base);
    for (int i = 0; i < n_opts; i++) {
      for (int a = 0; a < 3 && opts[i].vals[a]; a++) {
        char spec[160];
        snprintf(spec, sizeof spec, "%s:%s", base, opts[i].vals[a]);
        attn_method m;
        kv_error e = {0};
        if (!(d->options & opts[i].opt)) {
          /* an option the method does not read is refused, not silently dropped */
          if (attn_method_parse(spec, &m, &e) != KV_EINVAL) TEST_FAIL_AT("'%s' accepted", spec);
          continue;
        }
        check_round_trip(spec, NULL);
        n_checked++;
        for (int j = i + 1; j < n_opts; j++) {
          if (!(d->options & opts[j].opt)) continue;
          for (int b = 0; b < 3 && opts[j].vals[b]; b++) {
            char two[200];
            snprintf(two, sizeof two, "%s:%s", spec, opts[j].vals[b]);
            check_round_trip(two, NULL);
            n_checked++;
          }
        }
      }
    }
  }
  CHECK(n_checked > 100);
  /* labels are unique per spec (the profile finds methods by label) */
  const char *distinct[] = {"psa:0.9", "psa:0.9:sink=0:recent=0", "psa:0.9:sink=0", "psa:0.9:cap=64",
                            "topk:512", "topk:512:mean", "topk:512:sink=0", "oracle:0.9:recent=0",
                            "psa:0.9:selfcal", "psa:0.9:minrank=1", "psa:0.9:ucb=2",
                            "psa:0.9:gqa=head"};
  enum { N_DISTINCT = sizeof distinct / sizeof distinct[0] };
  char labels[N_DISTINCT][64];
  for (int i = 0; i < N_DISTINCT; i++) {
    attn_method m;
    kv_error e = {0};
    REQUIRE_OK(attn_method_parse(distinct[i], &m, &e), &e);
    attn_method_label(&m, labels[i], 64);
    for (int j = 0; j < i; j++) {
      if (!strcmp(labels[i], labels[j])) TEST_FAIL_AT("'%s' and '%s' share the label %s", distinct[i], distinct[j], labels[i]);
    }
  }
  CHECK(strcmp(labels[1], "psa-0.9-mean-sink0-recent0") == 0);
  /* the figures that price a method */
  attn_method m;
  kv_error e = {0};
  REQUIRE_OK(attn_method_parse("topk:512:mean", &m, &e), &e);
  CHECK_EQ_INT(attn_method_cost_class(&m), ATTN_COST_FIXED);
  CHECK_EQ_INT(attn_method_meta_vectors(&m), 1);
  CHECK_EQ_INT(attn_method_full_upto(&m), 512);
  REQUIRE_OK(attn_method_parse("topk:512", &m, &e), &e);
  CHECK_EQ_INT(attn_method_meta_vectors(&m), 2);
  REQUIRE_OK(attn_method_parse("psa:1:lognormal", &m, &e), &e);
  CHECK_EQ_INT(attn_method_cost_class(&m), ATTN_COST_PROGRESSIVE);
  CHECK_EQ_INT(attn_method_meta_vectors(&m), 2);
  CHECK(attn_method_full_upto(&m) == INT64_MAX);
  REQUIRE_OK(attn_method_parse("oracle:0.99", &m, &e), &e);
  CHECK_EQ_INT(attn_method_meta_vectors(&m), 0);
  CHECK_EQ_INT(attn_method_full_upto(&m), 0);
}

static void test_bytes_read(void) {
  attn_shape s = {8, 2, 64};
  attn_method m;
  kv_error e = {0};
  REQUIRE_OK(attn_method_parse("dense", &m, &e), &e);
  CHECK_EQ_INT(attn_bytes_read(&s, &m, 1000, 1000, 2), 1000 * 2 * 64 * 2);
  REQUIRE_OK(attn_method_parse("topk:512", &m, &e), &e); /* quest: min + max per block */
  CHECK_EQ_INT(attn_bytes_read(&s, &m, 1000, 512, 2), 512 * 256 + 63 * 2 * 64 * 2);
  REQUIRE_OK(attn_method_parse("psa:0.9", &m, &e), &e); /* mean only */
  CHECK_EQ_INT(attn_bytes_read(&s, &m, 1000, 512, 2), 512 * 256 + 63 * 64 * 2);
  REQUIRE_OK(attn_method_parse("psa:0.9:lognormal", &m, &e), &e); /* mean + var */
  CHECK_EQ_INT(attn_bytes_read(&s, &m, 1000, 512, 2), 512 * 256 + 63 * 2 * 64 * 2);
  REQUIRE_OK(attn_method_parse("psa:0.9:bound", &m, &e), &e); /* mean rank + min/max bound */
  CHECK_EQ_INT(attn_bytes_read(&s, &m, 1000, 512, 2), 512 * 256 + 63 * 3 * 64 * 2);
}

static void test_tokens_for_mass(void) {
  double p[5] = {0.05, 0.5, 0.1, 0.3, 0.05}, scratch[5];
  CHECK_EQ_INT(attn_tokens_for_mass(p, 5, 0.5, scratch), 1);
  CHECK_EQ_INT(attn_tokens_for_mass(p, 5, 0.8, scratch), 2);
  CHECK_EQ_INT(attn_tokens_for_mass(p, 5, 0.85, scratch), 3);
  CHECK_EQ_INT(attn_tokens_for_mass(p, 5, 1.0, scratch), 5);
}

static void test_eval_layer_thread_independent(void) {
  const char *path = test_tmp_path("eval.h5");
  qkv_synth_params sp;
  qkv_synth_defaults(&sp);
  sp.n_tokens = 700;
  sp.n_positions = 9;
  sp.n_layers = 2;
  kv_error e = {0};
  REQUIRE_OK(qkv_synth_write(path, &sp, &e), &e);
  qkv_file *f;
  REQUIRE_OK(qkv_open(path, &f, &e), &e);
  qkv_layer l;
  REQUIRE_OK(qkv_read_layer(f, 0, 1, 0, &l, &e), &e);
  attn_shape s = {l.n_heads, l.n_kv_heads, l.head_dim};
  const char *specs[] = {"dense", "topk:128", "psa:0.9", "psa:0.95:lognormal", "oracle:0.9"};
  attn_method ms[5];
  for (int i = 0; i < 5; i++) REQUIRE_OK(attn_method_parse(specs[i], &ms[i], &e), &e);
  size_t nm = 5 * 9 * 8, nb = 5 * 9 * 2;
  attn_head_metrics *a = calloc(nm, sizeof *a), *b = calloc(nm, sizeof *b);
  int64_t *ba = calloc(nb, 8), *bb = calloc(nb, 8), *na = calloc(9 * 8 * 3, 8), *nn = calloc(9 * 8 * 3, 8);
  REQUIRE_OK(attn_eval_layer(&s, ms, 5, l.Q, l.positions, 9, l.K, l.V, 2, 1, a, ba, NULL, na, &e), &e);
  REQUIRE_OK(attn_eval_layer(&s, ms, 5, l.Q, l.positions, 9, l.K, l.V, 2, 2, b, bb, NULL, nn, &e), &e);
  CHECK(memcmp(a, b, nm * sizeof *a) == 0);
  CHECK(memcmp(ba, bb, nb * 8) == 0);
  CHECK(memcmp(na, nn, 9 * 8 * 3 * 8) == 0);
  /* dense row: mass 1, error 0; need is ordered 90 <= 95 <= 99 <= keys */
  for (int p = 0; p < 9; p++) {
    for (int h = 0; h < 8; h++) {
      CHECK(a[p * 8 + h].mass_covered == 1.0 && a[p * 8 + h].rel_l2_err == 0.0);
      int64_t *nd = na + (p * 8 + h) * 3;
      CHECK(nd[0] <= nd[1] && nd[1] <= nd[2] && nd[2] <= l.positions[p] + 1);
    }
  }
  free(a);
  free(b);
  free(ba);
  free(bb);
  free(na);
  free(nn);
  qkv_layer_free(&l);
  qkv_close(f);
  remove(path);
}

TEST_LIST = {TEST(test_dense_hand_cases),
             TEST(test_dense_gqa_mapping),
             TEST(test_blockmeta_build_append_and_bound),
             TEST(test_sparse_equals_gathered_dense),
             TEST(test_full_budget_equals_dense),
             TEST(test_mass_monotone_in_budget_and_epsilon),
             TEST(test_psa_adapts_budget),
             TEST(test_method_parse_and_errors),
             TEST(test_method_spec_round_trip),
             TEST(test_bytes_read),
             TEST(test_tokens_for_mass),
             TEST(test_eval_layer_thread_independent),
             {0}};
TEST_MAIN

/* test_kvc_host.c — the CUDA kernels' host-side logic, on the CPU (no GPU needed):
 * split-K planning, the arithmetic the kernels share (kvc_math.h) checked against the CPU
 * reference, an emulation of the GPU PSA pipeline's decomposition (per-iteration partials merged
 * in order, the stop test on suffix sums) against attn_decode, and the pool accounting on a
 * hand-computed case. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "attn.h"
#include "kv_rng.h"
#include "kvc_math.h"
#include "kvc_plan.h"
#include "kvc_pool.h"
#include "kvc_ring.h"
#include "kvc_score_map.h"
#include "test.h"

/* The split plan: every pair's blocks are covered exactly once by its splits (the kernels'
 * expression), no split exceeds the shared-memory page list, and the chosen size is no worse under
 * the plan's own wave model than cutting the largest pair into 1..8 splits or into splits of the
 * minimum size (the heuristics it replaced). */
static double plan_cost(const int64_t *blocks, int n, int slots, int64_t bps, int64_t max_pair) {
  int64_t work = 0;
  for (int i = 0; i < n; i++) work += (blocks[i] + bps - 1) / bps;
  const int64_t waves = (work + slots - 1) / slots;
  return (double)waves * (double)(bps + KVC_PLAN_STARTUP_BLOCKS) +
         0.1 * (double)((max_pair + bps - 1) / bps);
}

static void test_plan_covers_every_block_once(void) {
  kv_rng r;
  kv_rng_seed(&r, 7);
  kv_error err = {0};
  for (int trial = 0; trial < 200; trial++) {
    const int n = 1 + (int)kv_rng_below(&r, 72);
    int64_t blocks[72], max_pair = 0;
    const int uniform = trial % 2;
    for (int i = 0; i < n; i++) {
      blocks[i] = uniform && i > 0 ? blocks[0] : (int64_t)kv_rng_below(&r, trial % 5 ? 3000 : 70000);
      if (blocks[i] > max_pair) max_pair = blocks[i];
    }
    const int slots = 1 + (int)kv_rng_below(&r, 600);
    kvc_split_size p;
    REQUIRE_OK(kvc_plan_split_size(blocks, n, slots, &p, &err), &err);
    CHECK(p.blocks_per_split >= 1 && p.blocks_per_split <= KVC_MAX_SPLIT_BLOCKS);
    int64_t work = 0;
    int32_t max_splits = 0;
    for (int i = 0; i < n; i++) {
      const int32_t ns = kvc_plan_pair_splits(blocks[i], p.blocks_per_split);
      /* splits [s * bps, min(n, (s + 1) * bps)) tile [0, n) without gaps or empty splits */
      CHECK(ns == 0 ? blocks[i] == 0
                    : (int64_t)(ns - 1) * p.blocks_per_split < blocks[i] &&
                          (int64_t)ns * p.blocks_per_split >= blocks[i]);
      work += ns;
      if (ns > max_splits) max_splits = ns;
    }
    CHECK_EQ_INT(work, p.n_work);
    CHECK_EQ_INT(max_splits > 0 ? max_splits : 1, p.max_splits);
    if (max_pair > 0) {
      const double chosen = plan_cost(blocks, n, slots, p.blocks_per_split, max_pair);
      for (int ns = 1; ns <= 8; ns++) {
        const int64_t bps = (max_pair + ns - 1) / ns;
        if (bps <= KVC_MAX_SPLIT_BLOCKS) CHECK(chosen <= plan_cost(blocks, n, slots, bps, max_pair) + 1e-9);
      }
    }
  }
  int64_t one = 5;
  kvc_split_size p;
  CHECK_EQ_INT(kvc_plan_split_size(&one, 1, 0, &p, &err), KV_EINVAL);
  one = -1;
  CHECK_EQ_INT(kvc_plan_split_size(&one, 1, 10, &p, &err), KV_ERANGE);
}

/* The pipelined PSA fold: an inclusive scan of kvc_lse_combine over iterations, with the
 * accumulator in front, equals the sequential kvc_lse_merge fold of the reference decomposition
 * at every prefix (to double rounding), including empty (-inf) states. */
static void test_lse_scan_matches_sequential_fold(void) {
  kv_rng r;
  kv_rng_seed(&r, 17);
  for (int trial = 0; trial < 300; trial++) {
    const int n = 1 + (int)kv_rng_below(&r, 32);
    double m[32], l[32];
    for (int i = 0; i < n; i++) {
      const int empty = kv_rng_uniform(&r) < 0.1;
      m[i] = empty ? -INFINITY : kv_rng_normal(&r) * 30.0;
      l[i] = empty ? 0.0 : 0.5 + 100.0 * kv_rng_uniform(&r);
    }
    const double am = trial % 3 == 0 ? -INFINITY : kv_rng_normal(&r) * 30.0;
    const double al = am == -INFINITY ? 0.0 : 1.0 + kv_rng_uniform(&r);
    /* Hillis-Steele scan as warp 0 runs it: step off, lane i combines lane i - off in front. */
    double sm[32], sl[32];
    for (int i = 0; i < n; i++) sm[i] = m[i], sl[i] = l[i];
    for (int off = 1; off < 32; off <<= 1) {
      double nm[32], nl[32];
      for (int i = 0; i < n; i++) {
        nm[i] = sm[i], nl[i] = sl[i];
        if (i >= off) kvc_lse_combine(sm[i - off], sl[i - off], sm[i], sl[i], &nm[i], &nl[i]);
      }
      for (int i = 0; i < n; i++) sm[i] = nm[i], sl[i] = nl[i];
    }
    double qm = am, ql = al;
    for (int i = 0; i < n; i++) {
      double a_old, a_new, pm, pl;
      kvc_lse_merge(&qm, &ql, m[i], l[i], &a_old, &a_new);
      kvc_lse_combine(am, al, sm[i], sl[i], &pm, &pl);
      if (qm == -INFINITY) {
        CHECK(pm == -INFINITY && pl == 0.0);
      } else {
        CHECK_NEAR(pm, qm, 0.0, 1e-15);
        /* both relative to the same max: compare the sums */
        CHECK_NEAR(pl, ql, 0.0, 1e-12);
      }
    }
  }
}

/* The lookahead of the PSA work queue stays inside the ring and never below spec. */
static void test_psa_lookahead_bounds(void) {
  for (int W = 2; W <= 64; W *= 2) {
    for (int spec = 0; spec < W; spec++) {
      for (int c = 0; c < 300; c += 7) {
        for (int active = 0; active < 600; active += 37) {
          const int la = kvc_psa_lookahead(c, spec, W, 528, active);
          CHECK(la >= (spec < W - 1 ? spec : W - 1) && la <= W - 1);
        }
      }
    }
  }
  CHECK_EQ_INT(kvc_psa_lookahead(100, 2, 32, 528, 1), 31);  /* one pair left: up to the ring */
  CHECK_EQ_INT(kvc_psa_lookahead(100, 2, 32, 528, 512), 2); /* GPU busy: speculation only */
  CHECK_EQ_INT(kvc_psa_lookahead(10, 2, 32, 528, 1), 5);    /* grows with progress: c / 2 */
}

static void test_forced_and_budget_brute_force(void) {
  for (int nb = 1; nb < 40; nb++) {
    for (int sink = 0; sink < 4; sink++) {
      for (int rec = 0; rec < 4; rec++) {
        int64_t n = 0;
        for (int b = 0; b < nb; b++) n += kvc_is_forced(b, nb, sink, rec);
        CHECK_EQ_INT(kvc_n_forced(nb, sink, rec), n);
        /* Iterations partition the visit order: contiguous, non-empty, ending at nb. */
        for (int gb = 1; gb < 6; gb++) {
          int64_t it = kvc_psa_n_iters(n, gb, nb), prev = 0;
          for (int64_t i = 0; i < it; i++) {
            CHECK_EQ_INT(kvc_psa_iter_begin(i, n, gb, nb), prev);
            int64_t e = kvc_psa_iter_end(i, n, gb, nb);
            CHECK(e > prev);
            prev = e;
          }
          CHECK_EQ_INT(prev, nb);
        }
      }
    }
  }
  CHECK_EQ_INT(kvc_topk_blocks(1000, 16, 256, 1, 1), 16);
  CHECK_EQ_INT(kvc_topk_blocks(100, 16, 4096, 1, 1), 7);   /* budget >= context: all blocks */
  CHECK_EQ_INT(kvc_topk_blocks(1000, 16, 16, 2, 2), 4);    /* at least the forced blocks */
}

static void test_lse_merge_matches_direct_sum(void) {
  kv_rng r;
  kv_rng_seed(&r, 3);
  for (int t = 0; t < 200; t++) {
    int n = 1 + (int)kv_rng_below(&r, 50), cut = (int)kv_rng_below(&r, (uint64_t)n + 1);
    double s[50], mx = -INFINITY, m1 = -INFINITY, m2 = -INFINITY;
    for (int i = 0; i < n; i++) {
      s[i] = 20.0 * (kv_rng_uniform(&r) - 0.5);
      mx = fmax(mx, s[i]);
      if (i < cut) m1 = fmax(m1, s[i]);
      else m2 = fmax(m2, s[i]);
    }
    double l1 = 0, l2 = 0, l = 0;
    for (int i = 0; i < n; i++) {
      l += exp(s[i] - mx);
      if (i < cut) l1 += exp(s[i] - m1);
      else l2 += exp(s[i] - m2);
    }
    double a, b;
    kvc_lse_merge(&m1, &l1, m2, l2, &a, &b);
    CHECK_NEAR(m1, mx, 0, 0);
    CHECK_NEAR(l1, l, 1e-12, 1e-12);
  }
}

/* ---- emulation of the GPU PSA pipeline ---------------------------------------------------- */
typedef struct {
  double key;
  int b;
} kb_t;
static int cmp_kb(const void *x, const void *y) { /* descending, ties to the lower block */
  const kb_t *a = x, *c = y;
  if (a->key > c->key) return -1;
  if (a->key < c->key) return 1;
  return (a->b > c->b) - (a->b < c->b);
}

/* One KV head, as the GPU does it: keys (forced = +inf), stable descending order, suffix sums of
 * the estimate, per-iteration partial states merged in order with the stop test after each. */
static void emulate_psa(const attn_shape *s, const attn_method *m, const float *q, const float *K,
                        const float *V, int64_t n, const attn_blockmeta *meta, int kvh,
                        int64_t *blocks_read, int *iters, double *pacc_out, float *out) {
  const int D = s->head_dim, G = s->n_heads / s->n_kv_heads, Hkv = s->n_kv_heads, bs = m->block_size;
  const int nb = (int)kvc_n_blocks(n, bs);
  const double scale = 1.0 / sqrt((double)D);
  kb_t *kb = malloc((size_t)nb * sizeof *kb);
  double *est = malloc((size_t)G * nb * sizeof *est), *suf = malloc((size_t)G * (nb + 1) * sizeof *suf);
  double frame[8], M[8], L[8], pacc[8], *o = calloc((size_t)G * D, sizeof *o);
  for (int b = 0; b < nb; b++) kb[b].key = 0.0, kb[b].b = b;
  for (int g = 0; g < G; g++) {
    const float *qh = q + (size_t)(kvh * G + g) * D;
    double lg[4096], mx = -INFINITY, z = 0.0;
    for (int b = 0; b < nb; b++) {
      const float *mu = meta->kmean + ((size_t)b * Hkv + kvh) * D;
      double dm = 0.0;
      for (int d = 0; d < D; d++) dm += (double)qh[d] * mu[d];
      lg[b] = log((double)kvc_block_tokens(n, bs, b)) + scale * dm; /* mean rank = mean estimate */
      est[(size_t)g * nb + b] = lg[b];
      mx = fmax(mx, lg[b]);
    }
    for (int b = 0; b < nb; b++) z += exp(lg[b] - mx);
    for (int b = 0; b < nb; b++) kb[b].key += exp(lg[b] - mx) / z;
  }
  for (int b = 0; b < nb; b++) {
    if (kvc_is_forced(b, nb, m->keep_sink_blocks, m->keep_recent_blocks)) kb[b].key = INFINITY;
  }
  qsort(kb, (size_t)nb, sizeof *kb, cmp_kb);
  for (int g = 0; g < G; g++) {
    frame[g] = -INFINITY;
    for (int b = 0; b < nb; b++) frame[g] = fmax(frame[g], est[(size_t)g * nb + b]);
    suf[(size_t)g * (nb + 1) + nb] = 0.0;
    for (int i = nb - 1; i >= 0; i--) {
      suf[(size_t)g * (nb + 1) + i] = suf[(size_t)g * (nb + 1) + i + 1] + exp(est[(size_t)g * nb + kb[i].b] - frame[g]);
    }
    M[g] = -INFINITY;
    L[g] = 0.0;
  }
  const int64_t nf = kvc_n_forced(nb, m->keep_sink_blocks, m->keep_recent_blocks);
  const int64_t nit = kvc_psa_n_iters(nf, m->group_blocks, nb);
  int64_t it = 0, end = 0;
  for (; it < nit; it++) {
    const int64_t b0 = kvc_psa_iter_begin(it, nf, m->group_blocks, nb);
    end = kvc_psa_iter_end(it, nf, m->group_blocks, nb);
    int all = 1;
    for (int g = 0; g < G; g++) {
      /* The iteration's own partial state (what a CTA writes to its ring slot). */
      const float *qh = q + (size_t)(kvh * G + g) * D;
      double pm = -INFINITY, pl = 0.0, po[256] = {0};
      for (int64_t i = b0; i < end; i++) {
        for (int64_t t = (int64_t)kb[i].b * bs; t < n && t < ((int64_t)kb[i].b + 1) * bs; t++) {
          const float *k = K + ((size_t)t * Hkv + kvh) * D, *v = V + ((size_t)t * Hkv + kvh) * D;
          double sc = 0.0;
          for (int d = 0; d < D; d++) sc += (double)qh[d] * k[d];
          sc *= scale;
          double mn = fmax(pm, sc), c = exp(pm - mn), p = exp(sc - mn);
          pl = pl * c + p;
          for (int d = 0; d < D; d++) po[d] = po[d] * c + p * v[d];
          pm = mn;
        }
      }
      double a, bw;
      kvc_lse_merge(&M[g], &L[g], pm, pl, &a, &bw);
      for (int d = 0; d < D; d++) o[(size_t)g * D + d] = o[(size_t)g * D + d] * a + po[d] * bw;
      pacc[g] = kvc_psa_pacc(M[g], L[g], suf[(size_t)g * (nb + 1) + end], frame[g]);
      if (!(pacc[g] >= m->epsilon)) all = 0;
    }
    if (all || end >= nb) break;
  }
  *blocks_read = end;
  *iters = (int)it + 1;
  for (int g = 0; g < G; g++) {
    pacc_out[g] = pacc[g];
    for (int d = 0; d < D; d++) out[(size_t)g * D + d] = (float)(o[(size_t)g * D + d] / L[g]);
  }
  free(kb), free(est), free(suf), free(o);
}

static void test_psa_decomposition_matches_reference(void) {
  kv_rng r;
  kv_rng_seed(&r, 11);
  kv_error err = {0};
  int checked = 0, early = 0;
  for (int trial = 0; trial < 24; trial++) {
    attn_shape s = {8, 2, 64};
    const int D = 64, Hkv = 2, G = 4;
    const int64_t n = 50 + (int64_t)kv_rng_below(&r, 1500);
    float *K = malloc((size_t)n * Hkv * D * sizeof *K), *V = malloc((size_t)n * Hkv * D * sizeof *V);
    float q[8 * 64];
    /* Heavy-tailed: a few keys aligned with the query direction. */
    for (int64_t i = 0; i < n * Hkv * D; i++) {
      K[i] = (float)kv_rng_normal(&r);
      V[i] = (float)kv_rng_normal(&r);
    }
    for (int i = 0; i < 8 * 64; i++) q[i] = (float)(kv_rng_normal(&r) * 0.5 + (i % 64 < 8 ? 1.5 : 0));
    for (int64_t t = 0; t < n; t += 1 + (int64_t)kv_rng_below(&r, 60)) {
      for (int h = 0; h < Hkv; h++) {
        for (int d = 0; d < 8; d++) K[((size_t)t * Hkv + h) * D + d] += 3.0f;
      }
    }
    attn_method m;
    attn_method_defaults(&m, ATTN_PSA);
    const double eps_list[3] = {0.8, 0.95, 0.99};
    m.epsilon = eps_list[trial % 3];
    m.group_blocks = 1 + trial % 5;
    m.keep_recent_blocks = trial % 3;
    attn_blockmeta meta;
    REQUIRE_OK(attn_blockmeta_init(&meta, m.block_size, Hkv, D, n, &err), &err);
    REQUIRE_OK(attn_blockmeta_build(&meta, K, n, &err), &err);
    attn_result res;
    REQUIRE_OK(attn_result_alloc(&res, &s, meta.n_blocks, &err), &err);
    REQUIRE_OK(attn_decode(&s, &m, q, K, V, n, &meta, NULL, &res, &err), &err);
    for (int kvh = 0; kvh < Hkv; kvh++) {
      int64_t br;
      int it;
      double pacc[8];
      float out[4 * 64];
      emulate_psa(&s, &m, q, K, V, n, &meta, kvh, &br, &it, pacc, out);
      CHECK_EQ_INT(br, res.blocks_read[kvh]);
      early += br < meta.n_blocks;
      CHECK_EQ_INT(it, res.iterations[kvh]);
      for (int g = 0; g < G; g++) {
        CHECK_NEAR(pacc[g], res.est_mass[kvh * G + g], 1e-9, 1e-9);
        for (int d = 0; d < D; d++) {
          CHECK_NEAR(out[g * D + d], res.out[(size_t)(kvh * G + g) * D + d], 1e-5, 1e-5);
        }
      }
      /* Tokens: the cut-off last block counts only its tokens. */
      const int nb = (int)meta.n_blocks;
      const uint8_t *mask = res.block_read + (size_t)kvh * res.max_blocks;
      int64_t tok = br * m.block_size - (mask[nb - 1] ? m.block_size - kvc_block_tokens(n, m.block_size, nb - 1) : 0);
      CHECK_EQ_INT(tok, res.tokens_read[kvh]);
      checked++;
    }
    attn_result_free(&res);
    attn_blockmeta_free(&meta);
    free(K);
    free(V);
  }
  CHECK_EQ_INT(checked, 48);
  CHECK(early >= 12); /* the cases exercise the stop test, not only full scans */
  printf("  psa emulation: %d of %d KV heads stopped early\n", early, checked);
}

static void test_topk_budget_matches_reference(void) {
  kv_rng r;
  kv_rng_seed(&r, 5);
  kv_error err = {0};
  attn_shape s = {4, 2, 64};
  for (int trial = 0; trial < 20; trial++) {
    const int64_t n = 1 + (int64_t)kv_rng_below(&r, 900);
    float *K = malloc((size_t)n * 2 * 64 * sizeof *K), *V = malloc((size_t)n * 2 * 64 * sizeof *V);
    float q[4 * 64];
    for (int64_t i = 0; i < n * 128; i++) K[i] = (float)kv_rng_normal(&r), V[i] = (float)kv_rng_normal(&r);
    for (int i = 0; i < 256; i++) q[i] = (float)kv_rng_normal(&r);
    attn_method m;
    attn_method_defaults(&m, ATTN_TOPK);
    m.token_budget = 16 * (1 + (int64_t)kv_rng_below(&r, 40));
    m.keep_sink_blocks = (int)kv_rng_below(&r, 3);
    attn_blockmeta meta;
    REQUIRE_OK(attn_blockmeta_init(&meta, 16, 2, 64, n, &err), &err);
    REQUIRE_OK(attn_blockmeta_build(&meta, K, n, &err), &err);
    attn_result res;
    REQUIRE_OK(attn_result_alloc(&res, &s, meta.n_blocks, &err), &err);
    REQUIRE_OK(attn_decode(&s, &m, q, K, V, n, &meta, NULL, &res, &err), &err);
    for (int h = 0; h < 2; h++) {
      CHECK_EQ_INT(res.blocks_read[h], kvc_topk_blocks(n, 16, m.token_budget, m.keep_sink_blocks,
                                                       m.keep_recent_blocks));
    }
    attn_result_free(&res);
    attn_blockmeta_free(&meta);
    free(K);
    free(V);
  }
}

static void test_pool_hand_computed(void) {
  /* 3 steps x 2 layers. Sums 11, 10, 4 -> unified 11; layer peaks 10 and 8 -> equal 2*10 = 20,
   * sized 18; mean 25/3. With 11 blocks split equally (5.5 per layer), steps 0 and 1 overflow. */
  const int64_t need[6] = {10, 1, 2, 8, 2, 2};
  kvc_pool_report rep;
  kv_error err = {0};
  REQUIRE_OK(kvc_pool_compare(need, 3, 2, 100, &rep, &err), &err);
  CHECK_EQ_INT(rep.unified_blocks, 11);
  CHECK_EQ_INT(rep.equal_blocks, 20);
  CHECK_EQ_INT(rep.sized_blocks, 18);
  CHECK_EQ_INT(rep.peak_layer[1], 0);
  CHECK_NEAR(rep.mean_total, 25.0 / 3.0, 1e-12, 0);
  CHECK_NEAR(rep.unified_util, 25.0 / 33.0, 1e-12, 0);
  CHECK_NEAR(rep.equal_util, 25.0 / 60.0, 1e-12, 0);
  CHECK_EQ_INT(rep.equal_overflow_steps, 2);
  CHECK_EQ_INT(rep.unified_p99, 11); /* 99% of 3 steps is all 3 */
  CHECK_EQ_INT(kvc_pool_block_bytes(16, 128, 2, 1), 128 * 2 * 33);
  const int64_t bad[2] = {1, -1};
  CHECK_EQ_INT(kvc_pool_compare(bad, 1, 2, 1, &rep, &err), KV_EINVAL);
  CHECK_STR_CONTAINS(err.msg, "layer 1");
}

/* v5 ring of bulk-copy slots (kvc_ring.h) against a model of the mbarrier: a producer that refills
 * a slot only after its previous load was consumed, per-slot phase counters (completed phases),
 * and try_wait.parity(P) = "the current phase's parity differs from P". The consumer's wait for
 * load k must fail before the load's phase completed and pass after it, for every interleaving the
 * refill rule allows (here: the producer as far ahead as it may be, and only just in time). The
 * round-robin deal covers each item once; padded tile rows are disjoint, 16-byte aligned and 8
 * consecutive rows at one 16-byte column fall in 8 different bank groups (ldmatrix conflict-free). */
static void test_ring_parity_model(void) {
  for (int stages = 1; stages <= 8; stages++) {
    for (int ahead = 0; ahead < 2; ahead++) {
      int64_t done_phases[8] = {0}; /* completed phases per slot */
      const int64_t n = 40;
      int64_t issued = 0;
      for (int64_t k = 0; k < n; k++) {
        /* producer: issue up to (ahead ? k + stages - 1 : k), never past the refill rule */
        const int64_t want = ahead ? k + stages - 1 : k;
        while (issued <= want && issued < n) {
          CHECK(issued - stages < k); /* load issued - stages was consumed (its slot is free) */
          issued++;
        }
        const int s = kvc_ring_slot(k, stages);
        const uint32_t P = kvc_ring_parity(k, stages);
        CHECK_EQ_INT(done_phases[s], k / stages); /* the phase of load k is the current one */
        CHECK(((uint32_t)(done_phases[s] & 1)) == P); /* before completion: wait fails */
        done_phases[s]++;                              /* the load's bytes arrive */
        CHECK(((uint32_t)(done_phases[s] & 1)) != P); /* after: wait passes */
      }
    }
  }
  for (int64_t n = 0; n < 50; n++) {
    for (int64_t grid = 1; grid < 9; grid++) {
      int64_t tot = 0;
      for (int64_t c = 0; c < grid; c++) {
        const int64_t cnt = kvc_ring_count(n, c, grid);
        tot += cnt;
        if (cnt > 0) CHECK(c + (cnt - 1) * grid < n && c + cnt * grid >= n);
      }
      CHECK_EQ_INT(tot, n);
    }
  }
  for (int rb = 128; rb <= 256; rb += 128) {
    const int pitch = rb + 16;
    for (int r = 0; r < 16; r++) {
      CHECK(kvc_ring_tile_off(r, 0, pitch) % 16 == 0);
      if (r > 0) CHECK(kvc_ring_tile_off(r, 0, pitch) >= kvc_ring_tile_off(r - 1, rb - 1, pitch) + 1);
    }
    for (int c = 0; c < rb / 16; c++) {
      for (int r0 = 0; r0 + 8 <= 16; r0++) {
        int seen = 0;
        for (int r = r0; r < r0 + 8; r++) seen |= 1 << ((kvc_ring_tile_off(r, c * 16, pitch) / 16) % 8);
        CHECK_EQ_INT(seen, 255);
      }
    }
  }
}

/* v6: the paged-pool read probes (kvc_probe.cu) modelled on the CPU with their item mapping
 * (kvc_ring.h kvc_pool_item_off) and loop structure: the per-thread-load probe (items in groups
 * of 8, 16-byte words dealt to the threads) and the bulk probe (one page per item through a ring
 * of slots) must both read every K and V page (whole page, partial last blocks too) of every
 * (request, KV head) exactly once, and so fold to the same XOR as a direct pass over the pages;
 * and the argument check must accept mode 0 with stages 0 (kvbench's pool-ldg8 row). */
static void test_pool_probe_model(void) {
  CHECK(kvc_probe_pool_args_ok(0, 0, 16)); /* the H200's "FAILED: probe: stages" */
  CHECK(kvc_probe_pool_args_ok(1, 8, 16));
  CHECK(kvc_probe_pool_args_ok(1, 16, 16));
  CHECK(!kvc_probe_pool_args_ok(1, 0, 16));
  CHECK(!kvc_probe_pool_args_ok(1, 17, 16));
  CHECK(kvc_probe_pool_args_ok(2, 4, 16)); /* v7: per-thread loads with a hint; no ring */
  CHECK(kvc_probe_pool_args_ok(3, 0, 16)); /* v10: the metadata rows; no ring */
  CHECK(kvc_probe_pool_args_ok(4, 0, 16)); /* v10: the same bytes, min|max interleaved */
  CHECK(kvc_probe_pool_args_ok(5, 0, 16)); /* v10: the metadata, 256 blocks per CTA */
  CHECK(kvc_probe_pool_args_ok(6, 0, 16));  /* v10: and 16 loads per thread in flight */
  CHECK(kvc_probe_pool_args_ok(7, 0, 16));  /* v10: a page's rows of every head as one piece */
  CHECK(kvc_probe_pool_args_ok(8, 0, 16));  /* v10: K/V pages of 1/16 of the requests */
  CHECK(kvc_probe_pool_args_ok(9, 0, 16));  /* K/V pages at a 1/16 block stride, metadata's grid */
  CHECK(kvc_probe_pool_args_ok(9, 4, 16));  /* stages: mode 1 only */
  CHECK(!kvc_probe_pool_args_ok(10, 0, 16));
  CHECK(!kvc_probe_pool_args_ok(-1, 0, 16));
  /* v8: the heads-per-CTA score kernel runs where a CTA's row groups cover the KV heads evenly */
  CHECK(kvc_score_heads_ok(1, 8, 8));   /* D 128 (8 row groups), Hkv 8 */
  CHECK(kvc_score_heads_ok(1, 16, 2));  /* D 64, Hkv 2 */
  CHECK(!kvc_score_heads_ok(0, 8, 8));  /* the default */
  CHECK(!kvc_score_heads_ok(1, 8, 32)); /* MHA with 32 KV heads: one pair per CTA */
  CHECK(!kvc_score_heads_ok(1, 8, 3));
  CHECK(!kvc_score_heads_ok(1, 8, 0));
  kv_rng rng;
  kv_rng_seed(&rng, 77);
  for (int trial = 0; trial < 40; trial++) {
    const int Hkv = 1 + (int)kv_rng_below(&rng, 4), bs = 4 << kv_rng_below(&rng, 2);
    const int D = 8 << kv_rng_below(&rng, 2), es = 2;
    const int page_bytes = bs * D * es, words = page_bytes / 16;
    const int n_req = 1 + (int)kv_rng_below(&rng, 4), max_blocks = 9;
    const int bpc = 1 + (int)kv_rng_below(&rng, 4); /* blocks per CTA (the kernel: 64) */
    int len[4], nb[4], max_nb = 0;
    const int n_pages = n_req * max_blocks;
    int32_t *bt = malloc(sizeof *bt * (size_t)n_pages);
    for (int i = 0; i < n_pages; i++) bt[i] = i;
    for (int i = n_pages - 1; i > 0; i--) { /* shuffled pages, as kvbench's pool */
      const int j = (int)kv_rng_below(&rng, (uint64_t)i + 1);
      const int32_t t = bt[i];
      bt[i] = bt[j], bt[j] = t;
    }
    for (int r = 0; r < n_req; r++) {
      len[r] = 1 + (int)kv_rng_below(&rng, (uint64_t)max_blocks * bs);
      nb[r] = (len[r] + bs - 1) / bs;
      if (nb[r] > max_nb) max_nb = nb[r];
    }
    const size_t pool_bytes = (size_t)n_pages * Hkv * page_bytes;
    uint32_t *kp = malloc(pool_bytes), *vp = malloc(pool_bytes);
    unsigned char *cov_t = calloc(2 * pool_bytes / 16, 1), *cov_b = calloc(2 * pool_bytes / 16, 1);
    for (size_t i = 0; i < pool_bytes / 4; i++) {
      kp[i] = (uint32_t)kv_rng_u64(&rng);
      vp[i] = (uint32_t)kv_rng_u64(&rng);
    }
    /* the dense kernels' address of token 0 of (page, kvh): ((page * Hkv + kvh) * bs) * D elements */
    int is_v = -1;
    CHECK_EQ_INT((int)kvc_pool_item_off(bt, 0, 1, Hkv, Hkv - 1, page_bytes, &is_v),
                 (int)(((int64_t)bt[0] * Hkv + Hkv - 1) * bs * D * es));
    CHECK_EQ_INT(is_v, 1);
    uint32_t x_ref = 0, x_thr = 0, x_bulk = 0;
    for (int r = 0; r < n_req; r++) {
      for (int h = 0; h < Hkv; h++) {
        for (int b = 0; b < nb[r]; b++) {
          const size_t o = ((size_t)bt[r * max_blocks + b] * Hkv + h) * page_bytes / 4;
          for (int w = 0; w < page_bytes / 4; w++) x_ref ^= kp[o + w] ^ vp[o + w];
        }
        /* CTAs (x, pair) of the probe's grid */
        for (int cx = 0; cx < (max_nb + bpc - 1) / bpc; cx++) {
          const int b0 = cx * bpc, b1 = b0 + bpc < nb[r] ? b0 + bpc : nb[r];
          if (b0 >= b1) continue;
          const int n_items = 2 * (b1 - b0);
          const int32_t *row = bt + (size_t)r * max_blocks;
          /* per-thread loads: groups of up to 8 items, word w of the group by some thread */
          for (int k0 = 0; k0 < n_items; k0 += 8) {
            const int ngw = (n_items - k0 < 8 ? n_items - k0 : 8) * words;
            for (int w = 0; w < ngw; w++) {
              const int it = w / words;
              const int64_t off = kvc_pool_item_off(row, b0, k0 + it, Hkv, h, page_bytes, &is_v);
              const size_t wi = (size_t)off / 16 + (size_t)(w - it * words);
              const uint32_t *src = (is_v ? vp : kp) + wi * 4;
              x_thr ^= src[0] ^ src[1] ^ src[2] ^ src[3];
              cov_t[(size_t)is_v * pool_bytes / 16 + wi]++;
            }
          }
          /* bulk: item k into slot k % stages, the whole page folded */
          const int stages = 1 + (int)kv_rng_below(&rng, 8);
          uint32_t *slots = malloc((size_t)stages * page_bytes);
          for (int k = 0; k < n_items; k++) {
            const int sl = kvc_ring_slot(k, stages);
            const int64_t off = kvc_pool_item_off(row, b0, k, Hkv, h, page_bytes, &is_v);
            memcpy(slots + (size_t)sl * page_bytes / 4, (is_v ? vp : kp) + off / 4, (size_t)page_bytes);
            for (int w = 0; w < page_bytes / 4; w++) x_bulk ^= slots[(size_t)sl * page_bytes / 4 + w];
            for (int w = 0; w < words; w++) cov_b[(size_t)is_v * pool_bytes / 16 + off / 16 + w]++;
          }
          free(slots);
        }
      }
    }
    CHECK(x_thr == x_ref);
    CHECK(x_bulk == x_ref);
    /* every word of every listed page once, nothing else */
    size_t bad = 0;
    for (size_t i = 0; i < 2 * pool_bytes / 16; i++) bad += cov_t[i] != cov_b[i] || cov_t[i] > 1;
    size_t listed = 0, covered = 0;
    for (int r = 0; r < n_req; r++) listed += (size_t)nb[r] * Hkv * 2 * words;
    for (size_t i = 0; i < 2 * pool_bytes / 16; i++) covered += cov_t[i];
    CHECK(bad == 0);
    CHECK(covered == listed);
    free(bt), free(kp), free(vp), free(cov_t), free(cov_b);
  }
}

/* v8: the block-score kernel's thread mapping (kvc_score_map.h), both launch shapes, over the
 * launch grid kvc__launch_score builds: every (request, head, block < blocks of that request) is
 * scored exactly once, nothing outside is, and in the all-heads shape the row groups of one unit
 * of a CTA cover one block's heads 0..Hkv-1 (the contiguous metadata rows). */
static void test_score_map_covers_each_pair_block_once(void) {
  const int shapes[5][2] = {{8, 8}, {16, 2}, {8, 2}, {8, 1}, {8, 32}}; /* rows, Hkv */
  const int per = 4;
  for (int si = 0; si < 5; si++) {
    const int rows = shapes[si][0], Hkv = shapes[si][1];
    const int lens[3] = {37, 1, 129}; /* blocks per request; max 129 */
    const int n_req = 3, mb = 129;
    for (int tune = 0; tune <= 1; tune++) {
      const int hi = kvc_score_heads_ok(tune, rows, Hkv);
      CHECK(hi == (tune == 1 && Hkv <= rows)); /* the shapes above: rows % Hkv == 0 iff Hkv <= rows */
      const int bpc = kvc_score_blocks_per_cta(hi, rows, per, Hkv);
      const int gx = (mb + bpc - 1) / bpc, gy = hi ? n_req : n_req * Hkv;
      int *seen = calloc((size_t)n_req * Hkv * mb, sizeof *seen);
      REQUIRE(seen != NULL);
      int bad = 0, unit_heads_ok = 1;
      for (int y = 0; y < gy; y++) {
        for (int x = 0; x < gx; x++) {
          for (int u = 0; u < per; u++) {
            int b_first = -1;
            for (int row = 0; row < rows; row++) {
              int r, h, b;
              kvc_score_map(hi, rows, per, Hkv, x, y, row, u, &r, &h, &b);
              if (r < 0 || r >= n_req || h < 0 || h >= Hkv || b < 0) {
                bad++;
                continue;
              }
              /* all heads: row groups row0 .. row0 + Hkv - 1 (row0 a multiple of Hkv) share a
               * block and take heads 0 .. Hkv - 1 in order */
              if (hi && row % Hkv == 0) b_first = b;
              if (hi && (h != row % Hkv || b != b_first)) unit_heads_ok = 0;
              if (b >= lens[r]) continue; /* past the request's blocks: not written */
              seen[((size_t)r * Hkv + h) * mb + b]++;
            }
          }
        }
      }
      for (int r = 0; r < n_req; r++) {
        for (int h = 0; h < Hkv; h++) {
          for (int b = 0; b < mb; b++) {
            const int want = b < lens[r];
            if (seen[((size_t)r * Hkv + h) * mb + b] != want) bad++;
          }
        }
      }
      CHECK(bad == 0);
      CHECK(unit_heads_ok);
      if (bad) printf("  rows %d Hkv %d tune %d: %d bad\n", rows, Hkv, tune, bad);
      free(seen);
    }
  }
}

/* v9: batches per CTA (kvc_score_iters) and the loop kernel's walk over them (CTA x of a pair
 * scores batches x * iters + it while their first block is below the request's blocks, units
 * mapped by kvc_score_map with hi = 0, as kvc__score_loop_kernel does): every (request, head,
 * block) is scored exactly once for every iteration count the launch can choose; the count is
 * 1 for small grids, at most 16 and never more than the batches of a pair. */
static void test_score_loop_covers_each_block_once(void) {
  CHECK(kvc_score_iters(64, 8, 132 * 3) == 1);      /* B1 L32K (D 128): 512 batches, 1 wave */
  CHECK(kvc_score_iters(64, 256, 132 * 3) == 16);   /* B32: 16,384 batches, capped */
  CHECK(kvc_score_iters(64, 64, 132 * 3) == 5);     /* B8: 4,096 / (2 x 396) */
  CHECK(kvc_score_iters(3, 4096, 132) == 3);        /* never more than a pair's batches */
  CHECK(kvc_score_iters(0, 8, 132) == 1 && kvc_score_iters(8, 8, 0) == 1);
  const int rows = 8, per = 4, Hkv = 2, n_req = 3, mb = 129, bpc = rows * per;
  const int lens[3] = {37, 1, 129}; /* blocks per request */
  const int batches = (mb + bpc - 1) / bpc;
  for (int iters = 1; iters <= batches + 1; iters++) {
    const int gx = (batches + iters - 1) / iters, gy = n_req * Hkv;
    int *seen = calloc((size_t)n_req * Hkv * mb, sizeof *seen);
    REQUIRE(seen != NULL);
    int bad = 0;
    for (int y = 0; y < gy; y++) {
      for (int x = 0; x < gx; x++) {
        for (int it = 0; it < iters; it++) {
          const int xi = x * iters + it;
          if (xi * bpc >= lens[y / Hkv]) break; /* the kernel's per-batch stop */
          for (int u = 0; u < per; u++) {
            for (int row = 0; row < rows; row++) {
              int r, h, b;
              kvc_score_map(0, rows, per, Hkv, xi, y, row, u, &r, &h, &b);
              if (r != y / Hkv || h != y % Hkv || b < 0) bad++;
              else if (b < lens[r]) seen[((size_t)r * Hkv + h) * mb + b]++;
            }
          }
        }
      }
    }
    for (int i = 0; i < n_req * Hkv * mb; i++) {
      const int r = i / (Hkv * mb), b = i % mb;
      if (seen[i] != (b < lens[r])) bad++;
    }
    CHECK(bad == 0);
    if (bad) printf("  iters %d: %d bad\n", iters, bad);
    free(seen);
  }
}

TEST_LIST = {
    TEST(test_plan_covers_every_block_once),
    TEST(test_score_map_covers_each_pair_block_once),
    TEST(test_score_loop_covers_each_block_once),
    TEST(test_lse_scan_matches_sequential_fold),
    TEST(test_psa_lookahead_bounds),
    TEST(test_forced_and_budget_brute_force),
    TEST(test_lse_merge_matches_direct_sum),
    TEST(test_psa_decomposition_matches_reference),
    TEST(test_topk_budget_matches_reference),
    TEST(test_pool_hand_computed),
    TEST(test_ring_parity_model),
    TEST(test_pool_probe_model),
    {0}};
TEST_MAIN

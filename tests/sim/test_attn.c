/* [attention] (sim/sim_attn.h): decode attention priced by measured budgets.
 *
 * What is checked, and against what:
 *   - sampling and the extension rules against values computed by hand from a hand-written
 *     profile (constant and piecewise-linear quantiles, a power-law fit);
 *   - one iteration's bytes, iterations and times for dense, top-k, PSA pipelined and
 *     host-synchronised against the formulas of sim_attn.h evaluated by hand;
 *   - block-cache hits and misses (reuse, retention) against hand arithmetic;
 *   - sparsity switched off (top-k budget >= context, PSA epsilon 1) reduces to dense: every
 *     request's times identical without offload and with an infinitely fast PCIe; with a real
 *     PCIe within the measured block-load stall, itself bounded by one flow per layer and step;
 *   - the unified pool never needs more blocks than equal per-layer partitions, and admits
 *     whenever partitions admit;
 *   - directions: more budget -> more bytes and time; more PCIe bandwidth -> less time; a larger
 *     cache -> less PCIe traffic; host-synchronised PSA slower than pipelined;
 *   - a measured kernel profile replaces the assumed overheads (least-squares fit by hand);
 *   - reuse tables, config errors, the long-context workload, determinism. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "attn_profile.h"
#include "kv_config.h"
#include "kv_h5.h"
#include "sim.h"
#include "sim_attn.h"
#include "sim_longctx.h"
#include "sim_workload.h"
#include "test.h"

/* ---- fixtures ----------------------------------------------------------------------------- */

/* Model "mini": `layers` layers, 4 query / 2 KV heads of 64, fp16: 512 * layers KV bytes/token. */
static const char *mini_model(int layers) {
  static char path[4096];
  snprintf(path, sizeof path, "%s", test_tmp_path("mini-model.ini"));
  FILE *f = fopen(path, "w");
  fprintf(f,
          "[model]\nname = mini\nlayers = %d\nheads = 4\nkv_heads = 2\nhead_dim = 64\n"
          "hidden = 256\nffn = 512\nffn_matrices = 2\nvocab = 1000\nbytes_per_elem = 2\n"
          "context_window = 65536\n", layers);
  fclose(f);
  return path;
}

/* HBM hbm_gbs GB/s, 1 GiB; PCIe pcie_gbs each way. */
static const char *mini_hw(double hbm_gbs, double pcie_gbs, double pcie_lat_us) {
  static char path[4096];
  snprintf(path, sizeof path, "%s", test_tmp_path("mini-hw.ini"));
  FILE *f = fopen(path, "w");
  fprintf(f,
          "[gpu]\nname = mini-gpu\nfp16_tflops = 10\nhbm_gbs = %g\nhbm_gib = 1\nnvlink_gbs = 10\n"
          "allreduce_latency_us = 0\nprice_per_hour = 1\n"
          "[host]\npcie_h2d_gbs = %g\npcie_d2h_gbs = %g\npcie_latency_us = %g\n"
          "dram_gib = 4\ndram_price_per_gib_hour = 0\nssd_gib = 16\nssd_read_gbs = 1\n"
          "ssd_write_gbs = 1\nssd_latency_us = 0\nssd_price_per_gib_hour = 0\n",
          hbm_gbs, pcie_gbs, pcie_gbs, pcie_lat_us);
  fclose(f);
  return path;
}

typedef struct {
  const char *label;
  attn_method_kind kind;
  int64_t budget;
  double eps;
  double q[2][3];   /* per recorded layer: quantiles at u = 0, 0.5, 1 */
  double fit_b;
  double err;
} pm_spec;

/* Writes a profile of a 2-layer recording (layers 0 and 1), one context bin [1000, 100000),
 * 3 quantiles, 100 queries x KV heads per cell. */
/* A kernel profile whose timings write_profile carries along (attn-profile --kernel-profile). */
static const char *g_carry_kprof = NULL;

static void write_profile(const char *path, const pm_spec *sp, int n) {
  attn_profile p;
  memset(&p, 0, sizeof p);
  if (g_carry_kprof) {
    kv_error ek = {0};
    if (attn_profile_read_timings(g_carry_kprof, &p, &ek)) fprintf(stderr, "carry: %s\n", ek.msg);
  }
  snprintf(p.source, sizeof p.source, "test");
  snprintf(p.model_name, sizeof p.model_name, "mini");
  p.model_layers = 2;
  p.n_heads = 4;
  p.n_kv_heads = 2;
  p.head_dim = 64;
  p.elem_bytes = 2;
  p.n_layers = 2;
  int32_t layers[2] = {0, 1};
  int64_t edges[2] = {1000, 100000};
  p.layers = layers;
  p.n_bins = 1;
  p.ctx_edges = edges;
  p.n_quantiles = 3;
  p.n_methods = n;
  attn_profile_method pm[8];
  int64_t cnt[8][2];
  double fq[8][6], mf[8][2], mi[8][2], mm[8][2], me[8][2], fa[8][2], fb[8][2];
  for (int i = 0; i < n; i++) {
    memset(&pm[i], 0, sizeof pm[i]);
    attn_method_defaults(&pm[i].method, sp[i].kind);
    pm[i].method.token_budget = sp[i].budget;
    pm[i].method.epsilon = sp[i].eps;
    snprintf(pm[i].label, sizeof pm[i].label, "%s", sp[i].label);
    for (int l = 0; l < 2; l++) {
      cnt[i][l] = 100;
      for (int k = 0; k < 3; k++) fq[i][l * 3 + k] = sp[i].q[l][k];
      mf[i][l] = (sp[i].q[l][0] + 2 * sp[i].q[l][1] + sp[i].q[l][2]) / 4;
      mi[i][l] = 1;
      mm[i][l] = 1;
      me[i][l] = sp[i].err;
      fa[i][l] = 1;
      fb[i][l] = sp[i].fit_b;
    }
    pm[i].t.count = cnt[i];
    pm[i].t.frac_q = fq[i];
    pm[i].t.mean_frac = mf[i];
    pm[i].t.mean_iters = mi[i];
    pm[i].t.mean_mass = mm[i];
    pm[i].t.mean_err = me[i];
    pm[i].t.fit_a = fa[i];
    pm[i].t.fit_b = fb[i];
  }
  p.methods = pm;
  kv_error e = {0};
  if (attn_profile_write(path, &p, &e)) fprintf(stderr, "write_profile: %s\n", e.msg);
  kv_profile_timings_free(&p.timings);
}

#define CONST_Q(a, b) {{a, a, a}, {b, b, b}}

static const pm_spec k_specs[] = {
    {"dense", ATTN_DENSE, 0, 0.95, CONST_Q(1, 1), 1.0, 0},
    {"topk-200", ATTN_TOPK, 200, 0.95, CONST_Q(0.05, 0.05), 0.0, 0.3},
    {"topk-400", ATTN_TOPK, 400, 0.95, CONST_Q(0.10, 0.10), 0.0, 0.2},
    {"topk-1048576", ATTN_TOPK, 1 << 20, 0.95, CONST_Q(1, 1), 1.0, 0},
    {"psa-0.9-mean", ATTN_PSA, 1024, 0.9, CONST_Q(0.5, 0.5), 1.0, 0.1},
    {"psa-1-mean", ATTN_PSA, 1024, 1.0, CONST_Q(1, 1), 1.0, 0},
    {"psa-uneven", ATTN_PSA, 1024, 0.95, {{0.6, 0.6, 0.6}, {0.05, 0.05, 0.05}}, 1.0, 0.1},
    {"psa-spread", ATTN_PSA, 1024, 0.95, {{0.02, 0.1, 0.5}, {0.01, 0.05, 0.3}}, 0.5, 0.1},
};

static const char *profile_path(void) {
  static char path[4096];
  if (!path[0]) {
    snprintf(path, sizeof path, "%s", test_tmp_path("attn-profile.h5"));
    write_profile(path, k_specs, (int)(sizeof k_specs / sizeof k_specs[0]));
  }
  return path;
}

/* Loads a model + attention parameters directly (unit level). */
static int load_am(sim_attn_model *am, const sim_attn_params *ap, int layers, double hbm_gbs,
                   kv_error *e) {
  sim_model m;
  sim_hw hw;
  int rc = sim_model_load(mini_model(layers), &m, e);
  if (!rc) rc = sim_hw_load(mini_hw(hbm_gbs, 1, 0), &hw, e);
  if (!rc) rc = sim_attn_model_load(am, ap, &m, &hw, 1, e);
  return rc;
}

static void base_params(sim_attn_params *ap, const char *method) {
  sim_attn_params_defaults(ap);
  ap->mode = strcmp(method, "dense") == 0 ? SIM_ATTN_DENSE : SIM_ATTN_PSA;
  snprintf(ap->method, sizeof ap->method, "%s", method);
  snprintf(ap->profile_path, sizeof ap->profile_path, "%s", profile_path());
  ap->hbm_eff = 1.0;
  ap->head_draws = 2;
  ap->host_bytes = (int64_t)1 << 40;
}

/* ---- sampling ------------------------------------------------------------------------------ */

static void test_sampling_and_extension(void) {
  kv_error e = {0};
  sim_attn_params ap;
  base_params(&ap, "psa-spread");
  sim_attn_model am;
  REQUIRE_OK(load_am(&am, &ap, 2, 1, &e), &e);
  /* inside the bin: piecewise-linear inverse CDF through (0, .02) (.5, .1) (1, .5) for layer 0 */
  CHECK_EQ_INT(sim_attn_draw_tokens(&am, 0, 10000, 0.0), 200);
  CHECK_EQ_INT(sim_attn_draw_tokens(&am, 0, 10000, 0.25), 600);
  CHECK_EQ_INT(sim_attn_draw_tokens(&am, 0, 10000, 0.75), 3000);
  CHECK_EQ_INT(sim_attn_draw_tokens(&am, 1, 10000, 0.5), 500);
  /* the mean: (q0 + 2 q1 + q2) / 4 = 0.18 */
  CHECK_NEAR(sim_attn_mean_tokens(&am, 0, 10000), 1800, 1e-6, 0);
  /* outside (n = 400000 > 99999): fit rule rescales from the bin's geometric centre with b = 0.5 */
  double c = sqrt(1000.0 * 99999.0);
  double want = 0.1 * c * sqrt(400000.0 / c);
  CHECK_NEAR((double)sim_attn_draw_tokens(&am, 0, 400000, 0.5), want, 1, 0);
  sim_attn_model_free(&am);
  /* constant fraction: 0.1 * 400000; constant tokens: 0.1 * 99999 */
  ap.extension = SIM_ATTN_EXT_FRAC;
  REQUIRE_OK(load_am(&am, &ap, 2, 1, &e), &e);
  CHECK_EQ_INT(sim_attn_draw_tokens(&am, 0, 400000, 0.5), 40000);
  sim_attn_model_free(&am);
  ap.extension = SIM_ATTN_EXT_TOKENS;
  REQUIRE_OK(load_am(&am, &ap, 2, 1, &e), &e);
  CHECK_EQ_INT(sim_attn_draw_tokens(&am, 0, 400000, 0.5), 10000);
  /* a model with 4 layers maps layer 0 to recorded layer 0 and the others by depth to layer 1 */
  sim_attn_model_free(&am);
  REQUIRE_OK(load_am(&am, &ap, 4, 1, &e), &e);
  CHECK_EQ_INT(am.row[0], 0);
  CHECK_EQ_INT(am.row[1], 1);
  CHECK_EQ_INT(am.row[3], 1);
  sim_attn_model_free(&am);
  /* statically full methods read everything */
  base_params(&ap, "topk-1048576");
  REQUIRE_OK(load_am(&am, &ap, 2, 1, &e), &e);
  CHECK(sim_attn_static_full(&am, 50000));
  CHECK_EQ_INT(sim_attn_draw_tokens(&am, 0, 5000, 0.3), 5000);
  sim_attn_model_free(&am);
  base_params(&ap, "topk-200");
  REQUIRE_OK(load_am(&am, &ap, 2, 1, &e), &e);
  CHECK(!sim_attn_static_full(&am, 5000));
  CHECK(sim_attn_static_full(&am, 150));
  /* top-k keeps its token count beyond the measured range whatever the PSA rule (0.05 x 99999),
   * or its fraction with topk_extension = frac (0.05 x 400000) */
  CHECK_EQ_INT(sim_attn_draw_tokens(&am, 0, 400000, 0.5), 5000);
  sim_attn_model_free(&am);
  ap.topk_extension = SIM_ATTN_EXT_FRAC;
  REQUIRE_OK(load_am(&am, &ap, 2, 1, &e), &e);
  CHECK_EQ_INT(sim_attn_draw_tokens(&am, 0, 400000, 0.5), 20000);
  CHECK_EQ_INT(sim_attn_draw_tokens_fast(&am, 0, 400000, 0.5), 20000);
  sim_attn_model_free(&am);
  /* or it grows like a PSA method's tokens (topk_extension = fit): psa-spread's b = 0.5 from the
   * bin's geometric centre, 0.05 x c x (400000 / c)^0.5; inside the range it is the recorded 5% */
  ap.topk_extension = SIM_ATTN_EXT_FIT;
  snprintf(ap.topk_scale_method, sizeof ap.topk_scale_method, "psa-spread");
  REQUIRE_OK(load_am(&am, &ap, 2, 1, &e), &e);
  double cc = sqrt(1000.0 * 99999.0);
  CHECK_NEAR((double)sim_attn_draw_tokens(&am, 1, 400000, 0.3), 0.05 * cc * sqrt(400000.0 / cc), 1,
             0);
  CHECK_NEAR((double)sim_attn_draw_tokens_fast(&am, 1, 400000, 0.3),
             0.05 * cc * sqrt(400000.0 / cc), 1, 0);
  CHECK_NEAR(sim_attn_mean_tokens(&am, 1, 400000), 0.05 * cc * sqrt(400000.0 / cc), 1e-6, 1e-9);
  CHECK_EQ_INT(sim_attn_draw_tokens(&am, 1, 5000, 0.3), 250);
  sim_attn_model_free(&am);
  snprintf(ap.topk_scale_method, sizeof ap.topk_scale_method, "topk-400");
  CHECK_EQ_INT(load_am(&am, &ap, 2, 1, &e), KV_EINVAL);
  CHECK_STR_CONTAINS(e.msg, "topk_scale_method");
  ap.topk_extension = SIM_ATTN_EXT_TOKENS;
  REQUIRE_OK(load_am(&am, &ap, 2, 1, &e), &e);
  sim_attn_model_free(&am);
  base_params(&ap, "psa-1-mean");
  REQUIRE_OK(load_am(&am, &ap, 2, 1, &e), &e);
  CHECK(sim_attn_static_full(&am, 5000));
  sim_attn_model_free(&am);
}

/* The simulator's cached draw equals the per-call one (sim_attn_profile_sample_frac) bit for bit,
 * inside and outside the measured range, for every extension rule, and for a layer row whose
 * middle bin has no data. */
static void test_fast_draw_equals_library(void) {
  kv_error e = {0};
  const char *methods[] = {"psa-spread", "psa-0.9-mean", "topk-200"};
  const int64_t ns[] = {1, 17, 999, 1000, 1001, 5000, 31622, 99998, 99999, 100000, 400000, 131072};
  int mismatches = 0;
  for (int mi = 0; mi < 3; mi++) {
    for (int ext = 0; ext < 3; ext++) {
      sim_attn_params ap;
      base_params(&ap, methods[mi]);
      ap.extension = (sim_attn_ext)ext;
      ap.topk_extension = ext == 1 ? SIM_ATTN_EXT_FRAC : SIM_ATTN_EXT_TOKENS;
      sim_attn_model am;
      REQUIRE_OK(load_am(&am, &ap, 4, 1, &e), &e);
      for (int l = 0; l < 4; l++) {
        for (size_t k = 0; k < sizeof ns / sizeof ns[0]; k++) {
          for (int q = 0; q <= 40; q++) {
            double u = q / 40.0 * 0.999999;
            int64_t a = sim_attn_draw_tokens(&am, l, ns[k], u);
            int64_t b = sim_attn_draw_tokens_fast(&am, l, ns[k], u);
            if (a != b && mismatches++ < 10) {
              fprintf(stderr, "  %s ext %d layer %d n %lld u %g: %lld vs %lld\n", methods[mi], ext,
                      l, (long long)ns[k], u, (long long)a, (long long)b);
            }
          }
        }
      }
      sim_attn_model_free(&am);
    }
  }
  CHECK_EQ_INT(mismatches, 0);
}

/* Dense through [attention] (launch 0, hbm_eff = the roofline's memory_eff) reproduces the
 * roofline's decode-only layer time — both charge weights + KV read and written over the same
 * bandwidth when decode is memory-bound — to within rounding (1 ns each side), on Llama-3.1-8B /
 * H100 from batch 1 to 64 and context 1K to 128K. */
static void test_dense_matches_roofline(void) {
  char mp[4096], hp[4096];
  snprintf(mp, sizeof mp, "%s/sim/data/models/llama-3.1-8b.ini", test_source_dir());
  snprintf(hp, sizeof hp, "%s/sim/data/hardware/h100.ini", test_source_dir());
  kv_error e = {0};
  sim_model m;
  sim_hw hw;
  REQUIRE_OK(sim_model_load(mp, &m, &e), &e);
  REQUIRE_OK(sim_hw_load(hp, &hw, &e), &e);
  sim_cost c;
  sim_cost_init_roofline(&c, &m, &hw, 1, 0.6, 0.8);
  sim_attn_params ap;
  sim_attn_params_defaults(&ap);
  ap.mode = SIM_ATTN_DENSE;
  snprintf(ap.method, sizeof ap.method, "dense");
  ap.launch_ns = 0;
  ap.hbm_eff = 0.8;
  sim_attn_model am;
  REQUIRE_OK(sim_attn_model_load(&am, &ap, &m, &hw, 1, &e), &e);
  const int64_t batches[] = {1, 4, 16, 64}, ctxs[] = {1024, 8192, 32768, 131072};
  sim_attn_seq seqs[64];
  for (int bi = 0; bi < 4; bi++) {
    for (int ci = 0; ci < 4; ci++) {
      int64_t B = batches[bi], n = ctxs[ci];
      sim_stats st;
      memset(&st, 0, sizeof st);
      sim_attn_run r;
      REQUIRE_OK(sim_attn_run_init(&r, &am, 1, 0, st.v, &e), &e);
      for (int64_t i = 0; i < B; i++) {
        seqs[i] = (sim_attn_seq){(int32_t)i, n};
        REQUIRE_OK(sim_attn_admit(&r, (int32_t)i, n), &e);
      }
      sim_iter_work w = {0, NULL, NULL, B, B * n}, w0 = {0, NULL, NULL, B, 0};
      int64_t legacy, post, head;
      sim_cost_iter(&c, &w, &legacy, &head);
      sim_cost_iter(&c, &w0, &post, &head);
      REQUIRE_OK(sim_attn_iter(&r, seqs, B, post, B, 0, &e), &e);
      int64_t mine = r.plan.plain_ns[0];
      if (llabs(mine - legacy) > 2) {
        CHECK(!"dense through [attention] differs from the roofline");
        fprintf(stderr, "  batch %lld ctx %lld: roofline %lld ns, [attention] %lld ns\n",
                (long long)B, (long long)n, (long long)legacy, (long long)mine);
      }
      sim_attn_run_free(&r);
    }
  }
  sim_attn_model_free(&am);
  sim_cost_free(&c);
}

/* ---- one iteration by hand ------------------------------------------------------------------ */

/* One sequence of 1600 keys, 1 layer, 2 KV heads, 1 GB/s HBM at efficiency 1. */
static void plan_one(const char *method, int loop, int64_t iter_p, int64_t *pre, int64_t *att,
                     double *hbm_bytes) {
  kv_error e = {0};
  sim_attn_params ap;
  base_params(&ap, method);
  ap.loop = (sim_attn_loop)loop;
  ap.iter_pipelined_ns = iter_p;
  sim_attn_model am;
  *pre = *att = -1;
  if (load_am(&am, &ap, 1, 1, &e)) {
    fprintf(stderr, "plan_one: %s\n", e.msg);
    return;
  }
  sim_stats st;
  memset(&st, 0, sizeof st);
  sim_attn_run r;
  if (!sim_attn_run_init(&r, &am, 7, 0, st.v, &e) && !sim_attn_admit(&r, 0, 1600)) {
    sim_attn_seq s = {0, 1600};
    if (!sim_attn_iter(&r, &s, 1, 100, 1, 0, &e)) {
      *pre = r.plan.pre_ns[0];
      *att = r.plan.att_ns[0];
      *hbm_bytes = (double)st.v[SIM_STAT_ATTN_HBM_BYTES];
      CHECK_EQ_INT(r.plan.post_ns[0], 100);
      CHECK_EQ_INT(r.plan.plain_ns[0], *pre + *att + 100);
      CHECK_EQ_INT(r.plan.h2d_bytes[0], 0);
    }
    sim_attn_run_free(&r);
  }
  sim_attn_model_free(&am);
}

static void test_iteration_by_hand(void) {
  int64_t pre, att;
  double bytes;
  /* dense: 2 heads x 1600 tokens x (K+V) 2 x 64 x 2 bytes = 819200 bytes = 819200 ns at 1 GB/s */
  plan_one("dense", 0, 1000, &pre, &att, &bytes);
  CHECK_EQ_INT(pre, 3000);
  CHECK_EQ_INT(att, 819200);
  CHECK_NEAR(bytes, 819200, 0, 0);
  /* top-k budget >= context: the dense kernel */
  plan_one("topk-1048576", 0, 1000, &pre, &att, &bytes);
  CHECK_EQ_INT(pre, 3000);
  CHECK_EQ_INT(att, 819200);
  /* PSA reading half: 800 tokens = 50 blocks per head; 204800 bytes of K+V + 100 blocks x 1 mean
   * vector x 64 x 2 = 12800 bytes of metadata per head -> 435200 bytes for 2 heads;
   * iterations 1 + ceil((50 - 2) / 4) = 13 */
  plan_one("psa-0.9-mean", SIM_ATTN_LOOP_HOSTSYNC, 1000, &pre, &att, &bytes);
  CHECK_EQ_INT(pre, 3000 + 8000);
  CHECK_EQ_INT(att, 435200 + 13 * 15000);
  CHECK_NEAR(bytes, 435200, 0, 0);
  plan_one("psa-0.9-mean", SIM_ATTN_LOOP_PIPELINED, 1000, &pre, &att, &bytes);
  CHECK_EQ_INT(att, 435200); /* 13 x 1 us < 435 us: bandwidth-bound */
  plan_one("psa-0.9-mean", SIM_ATTN_LOOP_PIPELINED, 50000, &pre, &att, &bytes);
  CHECK_EQ_INT(att, 13 * 50000); /* the commit chain is the critical path */
  /* top-k 200 reading 5%: 80 tokens = 5 blocks per head; Quest metadata = min + max */
  plan_one("topk-200", 0, 1000, &pre, &att, &bytes);
  CHECK_EQ_INT(att, 2 * (80 * 2 * 64 * 2 + 100 * 2 * 64 * 2));
}

static void test_block_cache_by_hand(void) {
  kv_error e = {0};
  sim_attn_params ap;
  base_params(&ap, "psa-0.9-mean");
  ap.offload = 1;
  ap.reuse_frac = 0.9;
  sim_attn_model am;
  REQUIRE_OK(load_am(&am, &ap, 1, 1, &e), &e);
  CHECK_EQ_INT(am.block_bytes, 16 * 2 * 64 * 2);
  sim_stats st;
  memset(&st, 0, sizeof st);
  sim_attn_run r;
  /* a pool of 1000 blocks: need 2 heads x 50 blocks = 100 fits */
  REQUIRE_OK(sim_attn_run_init(&r, &am, 1, 1000 * am.block_bytes, st.v, &e), &e);
  REQUIRE_OK(sim_attn_admit(&r, 3, 1600), &e);
  sim_attn_seq s = {3, 1600};
  /* first step: seeded by the prefill (prev = need): hits 0.9 * 100, misses 10 blocks */
  REQUIRE_OK(sim_attn_iter(&r, &s, 1, 0, 1, 0, &e), &e);
  CHECK_EQ_INT(r.plan.h2d_bytes[0], 10 * am.block_bytes);
  CHECK_EQ_INT(r.plan.d2h_bytes, (int64_t)llround(am.model.kv_bytes_per_token));
  REQUIRE_OK(sim_attn_iter(&r, &s, 1, 0, 1, 1, &e), &e);
  CHECK_EQ_INT(r.plan.h2d_bytes[0], 10 * am.block_bytes);
  CHECK_EQ_INT(r.plan.d2h_bytes, 0); /* a store writes the KV back instead */
  sim_attn_run_free(&r);
  /* a pool of 50 blocks keeps half of the previous step's 100: hits 0.5 * 90, misses 55 */
  REQUIRE_OK(sim_attn_run_init(&r, &am, 1, 50 * am.block_bytes, st.v, &e), &e);
  REQUIRE_OK(sim_attn_admit(&r, 0, 1600), &e);
  s.job = 0;
  REQUIRE_OK(sim_attn_iter(&r, &s, 1, 0, 1, 0, &e), &e);
  CHECK_EQ_INT(r.plan.h2d_bytes[0], 10 * am.block_bytes); /* no previous step: rho = 1 */
  REQUIRE_OK(sim_attn_iter(&r, &s, 1, 0, 1, 0, &e), &e);
  CHECK_EQ_INT(r.plan.h2d_bytes[0], 55 * am.block_bytes);
  CHECK_EQ_INT(st.v[SIM_STAT_ATTN_H2D_BYTES], (10 + 10 + 10 + 55) * am.block_bytes);
  sim_attn_run_free(&r);
  sim_attn_model_free(&am);
}

/* Unified admits whenever equal partitions admit (same pool, same running set). */
static void test_unified_admits_superset(void) {
  kv_error e = {0};
  sim_attn_params ap;
  base_params(&ap, "psa-uneven");
  ap.offload = 1;
  sim_attn_model am;
  REQUIRE_OK(load_am(&am, &ap, 2, 1, &e), &e);
  sim_stats st;
  memset(&st, 0, sizeof st);
  sim_attn_run ru, rp;
  int64_t pool = 4000 * am.block_bytes;
  REQUIRE_OK(sim_attn_run_init(&ru, &am, 1, pool, st.v, &e), &e);
  sim_attn_model amp = am;
  amp.prm.pool = SIM_ATTN_POOL_PARTITIONED;
  REQUIRE_OK(sim_attn_run_init(&rp, &amp, 1, pool, st.v, &e), &e);
  int n_part = 0, n_uni = 0, both_checked = 0;
  for (int32_t j = 0; j < 200; j++) {
    int64_t ctx = 1000 + 137 * (j % 23);
    int a_u = sim_attn_can_admit(&ru, ctx, 0), a_p = sim_attn_can_admit(&rp, ctx, 0);
    if (a_p && !a_u) CHECK(!"partitions admitted a job the unified pool refused");
    both_checked++;
    /* admit into both the same job while partitions accept, so states stay equal */
    if (a_p) {
      REQUIRE_OK(sim_attn_admit(&ru, j, ctx), &e);
      REQUIRE_OK(sim_attn_admit(&rp, j, ctx), &e);
      n_part++;
    }
  }
  /* now fill the unified pool further: it takes jobs partitions refuse (layer 0 needs 12x more) */
  for (int32_t j = 200; j < 400; j++) {
    if (sim_attn_can_admit(&ru, 2000, 0)) {
      REQUIRE_OK(sim_attn_admit(&ru, j, 2000), &e);
      n_uni++;
    }
  }
  CHECK(both_checked == 200);
  CHECK(n_part > 0);
  CHECK(n_uni > 0);
  CHECK(sim_attn_can_admit(&rp, 1 << 20, 1)); /* an empty batch always admits */
  sim_attn_run_free(&ru);
  sim_attn_run_free(&rp);
  sim_attn_model_free(&am);
}

/* ---- engine runs ---------------------------------------------------------------------------- */

typedef struct {
  sim_summary s;
  sim_result r;
  double row[128];
  char names[128][48];
  int n_rows;
} run_out;

static double row_of(const run_out *o, const char *name) {
  for (int i = 0; i < o->n_rows; i++) {
    if (!strcmp(o->names[i], name)) return o->row[i];
  }
  return NAN;
}

/* Runs kvsim (library) on the mini model: longctx workload with `extra` config text appended. */
static int run_cfg(const char *extra, int layers, double pcie_gbs, double lat_us, run_out *o,
                   kv_error *e) {
  memset(o, 0, sizeof *o);
  char model[4096], hw[4096], buf[8192];
  snprintf(model, sizeof model, "%s", mini_model(layers));
  snprintf(hw, sizeof hw, "%s", mini_hw(100, pcie_gbs, lat_us));
  snprintf(buf, sizeof buf,
           "[sim]\nmodel = %s\nhardware = %s\nseed = 3\n"
           "[engine]\nbatch_limit = 4\nwrite_buffer_gib = 0.05\n"
           "[cache]\nmode = re\n"
           "[workload]\nsource = longctx\nsessions = 8\nturns = 2\ndoc_min = 2000\n"
           "doc_max = 6000\nout_median = 40\nout_sigma = 0\nthink_mean_s = 0.2\n"
           "session_rate = 20\n%s",
           model, hw, extra);
  kv_config *cfg;
  int rc = kv_config_parse(buf, "test.ini", &cfg, e);
  if (rc) return rc;
  sim_params p;
  trace t;
  trace_init(&t);
  rc = sim_params_from_config(cfg, &p, e);
  int have_p = rc == 0;
  if (!rc) rc = sim_workload_build(cfg, p.seed, &t, e);
  if (!rc) rc = kv_config_check_unused(cfg, e);
  if (!rc) rc = sim_run(&p, &t, NULL, &o->r, e);
  if (!rc) rc = sim_summarize(&o->r, &p, &o->s, e);
  if (!rc) {
    int64_t ms[SIM_STAT_COUNT];
    for (int i = 0; i < SIM_STAT_COUNT; i++) ms[i] = o->r.final.v[i] - o->r.warm.v[i];
    sim_attn_row ar[128];
    o->n_rows = sim_attn_summary_rows(&p.attn.prm, &o->r.attn, ms, o->s.served_s, ar, 128);
    for (int i = 0; i < o->n_rows; i++) {
      snprintf(o->names[i], sizeof o->names[i], "%s", ar[i].name);
      o->row[i] = ar[i].v;
    }
  }
  trace_free(&t);
  if (have_p) sim_params_free(&p);
  kv_config_free(cfg);
  return rc;
}

static int same_requests(const sim_result *a, const sim_result *b) {
  if (a->n_req != b->n_req) return 0;
  for (int64_t i = 0; i < a->n_req; i++) {
    const sim_request *x = &a->req[i], *y = &b->req[i];
    if (x->admit_ns != y->admit_ns || x->first_token_ns != y->first_token_ns ||
        x->finish_ns != y->finish_ns || x->tbt_max_ns != y->tbt_max_ns) {
      fprintf(stderr, "  request %lld differs: admit %lld/%lld first %lld/%lld finish %lld/%lld\n",
              (long long)i, (long long)x->admit_ns, (long long)y->admit_ns,
              (long long)x->first_token_ns, (long long)y->first_token_ns,
              (long long)x->finish_ns, (long long)y->finish_ns);
      return 0;
    }
  }
  return 1;
}

static void test_sparsity_off_is_dense(void) {
  kv_error e = {0};
  char extra[2048];
  run_out d, o;
  REQUIRE_OK(run_cfg("[attention]\nmethod = dense\n", 2, 1, 5, &d, &e), &e);
  CHECK(d.r.n_req == 16);
  const char *sparse[] = {"topk-1048576", "psa-1-mean"};
  for (int k = 0; k < 2; k++) {
    /* offload off: identical request times */
    snprintf(extra, sizeof extra, "[attention]\nmethod = %s\nprofile = %s\n", sparse[k],
             profile_path());
    REQUIRE_OK(run_cfg(extra, 2, 1, 5, &o, &e), &e);
    CHECK(same_requests(&d.r, &o.r));
    CHECK_NEAR(row_of(&o, "attn_read_frac"), 1, 0, 0);
    sim_result_free(&o.r);
    /* offload on, a PCIe that moves anything in under 1 ns: identical again */
    snprintf(extra, sizeof extra,
             "[attention]\nmethod = %s\nprofile = %s\noffload = true\nhost_gib = 4\n", sparse[k],
             profile_path());
    REQUIRE_OK(run_cfg(extra, 2, 1e6, 0, &o, &e), &e);
    CHECK(same_requests(&d.r, &o.r));
    CHECK_NEAR(row_of(&o, "attn_block_hit_rate"), 1, 0.02, 0); /* only new blocks miss */
    sim_result_free(&o.r);
    /* offload on, a slow PCIe (0.02 GB/s, 5 us): only blocks that are new since the previous
     * step load (one every 16 tokens per head), at most one flow per layer and step of
     * batch (4) x heads (2) blocks; the run is slower than dense by at most the time layers
     * waited for them (shifted batch boundaries aside: 1% of the span) */
    REQUIRE_OK(run_cfg(extra, 2, 0.02, 5, &o, &e), &e);
    int64_t stall = o.r.final.v[SIM_STAT_ATTN_PCIE_STALL_NS];
    int64_t steps = o.r.final.v[SIM_STAT_ATTN_STEPS];
    double per_load = 5e3 + 4.0 * 2 * (16 * 2 * 64 * 2) / 0.02 + 1;
    CHECK(stall > 0);
    CHECK(stall <= (double)steps * 2 * per_load);
    double dt = o.s.served_s - d.s.served_s;
    CHECK(dt <= (double)stall * 1e-9 + 0.01 * d.s.served_s);
    CHECK(dt >= -0.01 * d.s.served_s);
    double rel = (double)stall * 1e-9 / d.s.served_s + 0.01;
    CHECK_NEAR(row_of(&o, "throughput_tok_s"), row_of(&d, "throughput_tok_s"), 0, rel);
    sim_result_free(&o.r);
  }
  sim_result_free(&d.r);
}

static void test_unified_needs_fewer_blocks(void) {
  kv_error e = {0};
  char extra[2048];
  run_out o;
  snprintf(extra, sizeof extra,
           "[attention]\nmethod = psa-uneven\nprofile = %s\noffload = true\nhost_gib = 4\n",
           profile_path());
  REQUIRE_OK(run_cfg(extra, 2, 1, 5, &o, &e), &e);
  double u = row_of(&o, "pool_need_unified_blocks"), q = row_of(&o, "pool_need_equal_blocks");
  double z = row_of(&o, "pool_need_sized_blocks");
  CHECK(u > 0);
  CHECK(u <= z);
  CHECK(z <= q);
  /* layer 0 reads 0.6 and layer 1 0.05 of every context: at the peak step partitions must give
   * both layers layer 0's need, 2 x 0.6 / 0.65 = 1.85x the unified pool (block rounding aside) */
  CHECK_NEAR(q / u, 2 * 0.6 / 0.65, 0, 0.03);
  sim_result_free(&o.r);
}

/* Runs `extra` twice with one setting changed; returns the two outputs. */
static void test_directions(void) {
  kv_error e = {0};
  char extra[2048];
  run_out a, b;
  /* budget: top-k reading 10% vs 5% of every context */
  snprintf(extra, sizeof extra, "[attention]\nmethod = topk-200\nprofile = %s\n", profile_path());
  REQUIRE_OK(run_cfg(extra, 2, 1, 5, &a, &e), &e);
  snprintf(extra, sizeof extra, "[attention]\nmethod = topk-400\nprofile = %s\n", profile_path());
  REQUIRE_OK(run_cfg(extra, 2, 1, 5, &b, &e), &e);
  CHECK(row_of(&b, "attn_hbm_bytes_per_token") > row_of(&a, "attn_hbm_bytes_per_token"));
  CHECK(b.r.final.v[SIM_STAT_ATTN_NS] > a.r.final.v[SIM_STAT_ATTN_NS]);
  CHECK(b.s.gpu_busy_s > a.s.gpu_busy_s);
  sim_result_free(&a.r);
  sim_result_free(&b.r);
  /* PCIe bandwidth: offloaded PSA with 50% reuse, 0.5 vs 4 GB/s */
  snprintf(extra, sizeof extra,
           "[attention]\nmethod = psa-0.9-mean\nprofile = %s\noffload = true\nreuse_frac = 0.5\n"
           "host_gib = 4\n", profile_path());
  REQUIRE_OK(run_cfg(extra, 2, 0.5, 5, &a, &e), &e);
  REQUIRE_OK(run_cfg(extra, 2, 4, 5, &b, &e), &e);
  CHECK(b.s.gpu_busy_s < a.s.gpu_busy_s);
  CHECK(b.r.final.v[SIM_STAT_ATTN_PCIE_STALL_NS] < a.r.final.v[SIM_STAT_ATTN_PCIE_STALL_NS]);
  sim_result_free(&a.r);
  sim_result_free(&b.r);
  /* cache size: a pool smaller than the working set keeps less of the previous step */
  snprintf(extra, sizeof extra,
           "[attention]\nmethod = psa-0.9-mean\nprofile = %s\noffload = true\nreuse_frac = 0.9\n"
           "host_gib = 4\nadmit = none\npool_gib = 0.002\n", profile_path());
  REQUIRE_OK(run_cfg(extra, 2, 1, 5, &a, &e), &e);
  snprintf(extra, sizeof extra,
           "[attention]\nmethod = psa-0.9-mean\nprofile = %s\noffload = true\nreuse_frac = 0.9\n"
           "host_gib = 4\nadmit = none\npool_gib = 0.2\n", profile_path());
  REQUIRE_OK(run_cfg(extra, 2, 1, 5, &b, &e), &e);
  CHECK(row_of(&b, "attn_h2d_bytes_per_token") < row_of(&a, "attn_h2d_bytes_per_token"));
  CHECK(row_of(&b, "attn_block_hit_rate") > row_of(&a, "attn_block_hit_rate"));
  CHECK_NEAR(row_of(&b, "attn_block_hit_rate"), 0.9, 0.02, 0);
  sim_result_free(&a.r);
  sim_result_free(&b.r);
  /* host-synchronised PSA is slower than pipelined (same draws: constant quantiles) */
  snprintf(extra, sizeof extra, "[attention]\nmethod = psa-0.9-mean\nprofile = %s\nloop = %s\n",
           profile_path(), "pipelined");
  REQUIRE_OK(run_cfg(extra, 2, 1, 5, &a, &e), &e);
  snprintf(extra, sizeof extra, "[attention]\nmethod = psa-0.9-mean\nprofile = %s\nloop = %s\n",
           profile_path(), "hostsync");
  REQUIRE_OK(run_cfg(extra, 2, 1, 5, &b, &e), &e);
  CHECK(b.s.gpu_busy_s > a.s.gpu_busy_s);
  CHECK(b.s.tbt_mean_s > a.s.tbt_mean_s);
  CHECK(row_of(&b, "throughput_tok_s") < row_of(&a, "throughput_tok_s"));
  sim_result_free(&a.r);
  sim_result_free(&b.r);
}

static void test_determinism(void) {
  kv_error e = {0};
  char extra[2048];
  run_out a, b, c;
  snprintf(extra, sizeof extra,
           "[attention]\nmethod = psa-spread\nprofile = %s\noffload = true\nhost_gib = 4\n",
           profile_path());
  REQUIRE_OK(run_cfg(extra, 2, 1, 5, &a, &e), &e);
  REQUIRE_OK(run_cfg(extra, 2, 1, 5, &b, &e), &e);
  CHECK(same_requests(&a.r, &b.r));
  CHECK(memcmp(a.r.final.v, b.r.final.v, sizeof a.r.final.v) == 0);
  char extra2[2100];
  snprintf(extra2, sizeof extra2, "%sredraw = request\n", extra);
  REQUIRE_OK(run_cfg(extra2, 2, 1, 5, &c, &e), &e);
  CHECK(c.r.final.v[SIM_STAT_ATTN_TOKENS] != a.r.final.v[SIM_STAT_ATTN_TOKENS]);
  sim_result_free(&a.r);
  sim_result_free(&b.r);
  sim_result_free(&c.r);
}

/* ---- kernel profile ------------------------------------------------------------------------- */

static void write_kernel_profile(const char *path, int n, const char *const *sec,
                                 const char *const *meth, const double *t, const double *b) {
  kv_error e = {0};
  hid_t f = kv_h5_create(path, &e);
  kv_h5_attr_write_str(f, "format", "kvlab-kernel-profile", path, &e);
  kv_h5_attr_write_i64(f, "schema_version", 1, path, &e);
  kv_h5_attr_write_str(f, "device", "Test GPU", path, &e);
  hid_t g = H5Gcreate2(f, "attention", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  hid_t st = H5Tcopy(H5T_C_S1);
  H5Tset_size(st, H5T_VARIABLE);
  hsize_t d[1] = {(hsize_t)n};
  kv_h5_write(g, "section", st, st, 1, d, sec, path, &e);
  kv_h5_write(g, "method", st, st, 1, d, meth, path, &e);
  kv_h5_write(g, "time_s", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 1, d, t, path, &e);
  kv_h5_write(g, "bytes", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 1, d, b, path, &e);
  H5Tclose(st);
  H5Gclose(g);
  H5Fclose(f);
}

static void test_kernel_profile(void) {
  /* dense: 5 us + bytes / 3 TB/s (two exact points); top-k through the origin; PSA pipelined
   * 20 us + bytes / 2 TB/s; "attend" rows are phases and must be ignored */
  const char *sec[] = {"dense", "dense", "topk", "topk", "psa", "psa", "psa", "psa"};
  const char *meth[] = {"dense", "dense", "topk-512", "topk-512 attend", "psa-0.90 pipelined",
                        "psa-0.95 pipelined", "psa-0.90 pipe attend", "psa-0.90 hostsync"};
  double b[] = {3e6, 3e9, 1e6, 1e9, 2e6, 4e6, 1e3, 2e6};
  double t[] = {5e-6 + 1e-6, 5e-6 + 1e-3, 1e-6, 1, 20e-6 + 1e-6, 20e-6 + 2e-6, 1, 1e-3};
  char path[4096]; /* test_tmp_path's buffers rotate: keep a copy */
  snprintf(path, sizeof path, "%s", test_tmp_path("kprof.h5"));
  write_kernel_profile(path, 8, sec, meth, t, b);
  double c0[SIM_ATTN_KCLASS_COUNT], c1[SIM_ATTN_KCLASS_COUNT];
  kv_error e = {0};
  char dev[96] = "x";
  REQUIRE_OK(sim_attn_kernel_profile_fit(path, c0, c1, dev, sizeof dev, &e), &e);
  CHECK_STR_CONTAINS(dev, "Test GPU");
  CHECK_NEAR(c0[SIM_ATTN_KCLASS_DENSE], 5000, 1e-3, 1e-9);
  CHECK_NEAR(c1[SIM_ATTN_KCLASS_DENSE], 1.0 / 3000, 0, 1e-9);
  CHECK_NEAR(c0[SIM_ATTN_KCLASS_TOPK], 0, 1e-9, 0);
  CHECK_NEAR(c1[SIM_ATTN_KCLASS_TOPK], 1.0 / 1000, 0, 1e-9);
  CHECK_NEAR(c0[SIM_ATTN_KCLASS_PSA_PIPE], 20000, 1e-3, 1e-9);
  CHECK_NEAR(c1[SIM_ATTN_KCLASS_PSA_PIPE], 1.0 / 2000, 0, 1e-9);
  CHECK_NEAR(c1[SIM_ATTN_KCLASS_PSA_HOST], 1e-3 * 1e9 / 2e6, 0, 1e-9);
  /* used in the plan: dense 819200 bytes -> 5 us + 819200 / 3000 ns, no separate overheads */
  sim_attn_params ap;
  base_params(&ap, "dense");
  snprintf(ap.kernel_profile, sizeof ap.kernel_profile, "%s", path);
  sim_attn_model am;
  REQUIRE_OK(load_am(&am, &ap, 1, 1, &e), &e);
  sim_stats st;
  memset(&st, 0, sizeof st);
  sim_attn_run r;
  REQUIRE_OK(sim_attn_run_init(&r, &am, 1, 0, st.v, &e), &e);
  REQUIRE_OK(sim_attn_admit(&r, 0, 1600), &e);
  sim_attn_seq s = {0, 1600};
  REQUIRE_OK(sim_attn_iter(&r, &s, 1, 0, 1, 0, &e), &e);
  CHECK_EQ_INT(r.plan.pre_ns[0], 0);
  CHECK_EQ_INT(r.plan.att_ns[0], (int64_t)llround(5000 + 819200.0 / 3000));
  sim_attn_run_free(&r);
  sim_attn_model_free(&am);
  /* kernel_timings = assumed: the model's launch overhead and bandwidth, and a named kernel
   * profile is a contradiction */
  ap.kernel_assumed = 1;
  CHECK_EQ_INT(load_am(&am, &ap, 1, 1, &e), KV_EINVAL);
  CHECK_STR_CONTAINS(e.msg, "has no effect with kernel_timings = assumed");
  ap.kernel_profile[0] = 0;
  REQUIRE_OK(load_am(&am, &ap, 1, 1, &e), &e);
  CHECK_EQ_INT(am.have_kprof, 0);
  REQUIRE_OK(sim_attn_run_init(&r, &am, 1, 0, st.v, &e), &e);
  REQUIRE_OK(sim_attn_admit(&r, 0, 1600), &e);
  REQUIRE_OK(sim_attn_iter(&r, &s, 1, 0, 1, 0, &e), &e);
  CHECK_EQ_INT(r.plan.pre_ns[0], ap.launch_ns);
  CHECK(r.plan.att_ns[0] != (int64_t)llround(5000 + 819200.0 / 3000));
  sim_attn_run_free(&r);
  sim_attn_model_free(&am);
  /* timings carried by the attention profile apply by default, to dense too (which names no
   * method of it), with the device they were measured on; assumed switches them off */
  char carried[4096];
  snprintf(carried, sizeof carried, "%s", test_tmp_path("attn-profile-timed.h5"));
  g_carry_kprof = path;
  write_profile(carried, k_specs, 2);
  g_carry_kprof = NULL;
  const char *meths[2] = {"dense", "topk-200"};
  for (int i = 0; i < 2; i++) {
    base_params(&ap, meths[i]);
    snprintf(ap.profile_path, sizeof ap.profile_path, "%s", carried);
    REQUIRE_OK(load_am(&am, &ap, 1, 1, &e), &e);
    CHECK_EQ_INT(am.have_kprof, 1);
    CHECK_STR_CONTAINS(am.kprof_device, "Test GPU");
    CHECK_NEAR(am.kc0[SIM_ATTN_KCLASS_DENSE], 5000, 1e-3, 1e-9);
    sim_attn_model_free(&am);
    ap.kernel_assumed = 1;
    REQUIRE_OK(load_am(&am, &ap, 1, 1, &e), &e);
    CHECK_EQ_INT(am.have_kprof, 0);
    sim_attn_model_free(&am);
  }
  /* errors name the file and the row */
  double bad[] = {3e6, -1, 1e6, 1e9, 2e6, 4e6, 1e3, 2e6};
  write_kernel_profile(path, 8, sec, meth, t, bad);
  CHECK_EQ_INT(sim_attn_kernel_profile_fit(path, c0, c1, NULL, 0, &e), KV_EFORMAT);
  CHECK_STR_CONTAINS(e.msg, "row 1");
  CHECK_STR_CONTAINS(e.msg, "kprof.h5");
}

/* ---- reuse table, config errors, workload ---------------------------------------------------- */

static void test_reuse_csv(void) {
  const char *csv = test_tmp_path("reuse.csv");
  FILE *f = fopen(csv, "w");
  fprintf(f, "# comment\nmethod,layer,gap,pairs,overlap,overlap_all\n"
             "psa-0.9-mean,0,66.0,10,0.70,0.6\npsa-0.9-mean,0,33.0,10,0.80,0.7\n"
             "psa-0.9-mean,1,33.0,10,0.95,0.9\ntopk-200,0,1.0,10,0.10,0.1\n");
  fclose(f);
  kv_error e = {0};
  sim_attn_params ap;
  base_params(&ap, "psa-0.9-mean");
  snprintf(ap.reuse_csv, sizeof ap.reuse_csv, "%s", csv);
  ap.offload = 1;
  sim_attn_model am;
  REQUIRE_OK(load_am(&am, &ap, 4, 1, &e), &e);
  CHECK_NEAR(am.reuse[0], 0.80, 0, 0); /* the smallest gap of recorded layer 0 */
  CHECK_NEAR(am.reuse[2], 0.95, 0, 0);
  sim_attn_model_free(&am);
  base_params(&ap, "psa-spread");
  snprintf(ap.reuse_csv, sizeof ap.reuse_csv, "%s", csv);
  REQUIRE_OK(load_am(&am, &ap, 4, 1, &e), &e); /* KV in HBM: the table is not consulted */
  sim_attn_model_free(&am);
  ap.offload = 1;
  CHECK_EQ_INT(load_am(&am, &ap, 4, 1, &e), KV_EFORMAT);
  CHECK_STR_CONTAINS(e.msg, "psa-spread");
  f = fopen(csv, "w");
  fprintf(f, "method,layer,gap,pairs,overlap\npsa-0.9-mean,0,x,1,0.5\n");
  fclose(f);
  base_params(&ap, "psa-0.9-mean");
  snprintf(ap.reuse_csv, sizeof ap.reuse_csv, "%s", csv);
  ap.offload = 1;
  CHECK_EQ_INT(load_am(&am, &ap, 4, 1, &e), KV_EFORMAT);
  CHECK_STR_CONTAINS(e.msg, ":2:");
}

static void test_config_errors(void) {
  kv_error e = {0};
  run_out o;
  char extra[2048];
  CHECK(run_cfg("[attention]\noffload = true\n", 2, 1, 5, &o, &e) == KV_EINVAL);
  CHECK_STR_CONTAINS(e.msg, "method = off");
  CHECK_STR_CONTAINS(e.msg, "test.ini:");
  CHECK(run_cfg("[attention]\nmethod = dense\noffload = true\n", 2, 1, 5, &o, &e) == KV_EINVAL);
  CHECK_STR_CONTAINS(e.msg, "sparse method");
  CHECK(run_cfg("[attention]\nmethod = psa-0.9-mean\n", 2, 1, 5, &o, &e) == KV_EINVAL);
  CHECK_STR_CONTAINS(e.msg, "profile");
  snprintf(extra, sizeof extra, "[attention]\nmethod = psa-0.42\nprofile = %s\n", profile_path());
  CHECK(run_cfg(extra, 2, 1, 5, &o, &e) == KV_ENOENT);
  CHECK_STR_CONTAINS(e.msg, "psa-0.9-mean");
  snprintf(extra, sizeof extra, "[attention]\nmethod = dense\nbogus = 1\n");
  CHECK(run_cfg(extra, 2, 1, 5, &o, &e) != 0);
  CHECK_STR_CONTAINS(e.msg, "bogus");
  snprintf(extra, sizeof extra, "[attention]\nmethod = topk-200\nprofile = %s\nloop = fast\n",
           profile_path());
  CHECK(run_cfg(extra, 2, 1, 5, &o, &e) != 0);
  CHECK_STR_CONTAINS(e.msg, "hostsync");
  snprintf(extra, sizeof extra, "[attention]\nmethod = topk-200\nprofile = %s\noffload = true\n"
           "pool_gib = 5\n", profile_path());
  CHECK(run_cfg(extra, 2, 1, 5, &o, &e) == KV_ERANGE);
  CHECK_STR_CONTAINS(e.msg, "block cache");
}

static void test_longctx_workload(void) {
  sim_longctx w;
  sim_longctx_defaults(&w);
  w.sessions = 200;
  w.turns = 3;
  trace t;
  trace_init(&t);
  kv_error e = {0};
  REQUIRE_OK(sim_longctx_generate(&w, &t, &e), &e);
  CHECK_EQ_INT(t.n_sessions, 200);
  CHECK_EQ_INT(t.n_turns, 600);
  double lsum = 0;
  for (int64_t s = 0; s < t.n_sessions; s++) {
    const trace_turn *u = &t.turns[t.sessions[s].first_turn];
    int64_t doc = u->new_tokens;
    CHECK(doc >= w.doc_min && doc <= w.doc_max + w.new_max);
    CHECK_EQ_INT(u->input_tokens, u->new_tokens);
    lsum += log((double)doc);
    /* turn k's input = turn k-1's input + output + its new tokens */
    for (int k = 1; k < 3; k++) {
      const trace_turn *a = u + k - 1, *b = u + k;
      CHECK_EQ_INT(b->input_tokens, a->input_tokens + a->output_tokens + b->new_tokens);
      CHECK(b->new_tokens <= w.new_max);
    }
  }
  /* log-uniform documents: mean of log(D) is the midpoint of [log 16384, log 120000] (the
   * question adds < 1%); 200 draws: standard error (log range)/sqrt(12 * 200) = 0.04 */
  CHECK_NEAR(lsum / 200, 0.5 * (log(16384.0) + log(120000.0)), 0.15, 0);
  trace_free(&t);
  w.doc_max = 10;
  trace_init(&t);
  CHECK_EQ_INT(sim_longctx_generate(&w, &t, &e), KV_EINVAL);
  trace_free(&t);
}

TEST_LIST = {
    TEST(test_sampling_and_extension),
    TEST(test_fast_draw_equals_library),
    TEST(test_dense_matches_roofline),
    TEST(test_iteration_by_hand),
    TEST(test_block_cache_by_hand),
    TEST(test_unified_admits_superset),
    TEST(test_sparsity_off_is_dense),
    TEST(test_unified_needs_fewer_blocks),
    TEST(test_directions),
    TEST(test_determinism),
    TEST(test_kernel_profile),
    TEST(test_reuse_csv),
    TEST(test_config_errors),
    TEST(test_longctx_workload),
    {NULL, NULL},
};
TEST_MAIN

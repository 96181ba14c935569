/* The GPU profile (sim_profile.h): loading, errors naming file and line, interpolation on and
 * off the grid, the measured cost model composed by hand, and [cost] model = measured through
 * the config and one simulation. The tables are written here from simple functions (power
 * laws, which log-log interpolation reproduces exactly; attention at grid points only), so
 * every expected value is computed from the same formula, not typed in. */
#include <errno.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "kv_config.h"
#include "sim.h"
#include "sim_csv.h"
#include "sim_profile.h"
#include "sim_validate.h"
#include "sim_workload.h"
#include "test.h"

static const char *data_path(const char *rel) {
  static char buf[4][4096];
  static int k = 0;
  char *b = buf[k++ % 4];
  snprintf(b, 4096, "%s/sim/data/%s", test_source_dir(), rel);
  return b;
}

static void put(const char *dir, const char *name, const char *text) {
  char p[4200];
  snprintf(p, sizeof p, "%s/%s", dir, name);
  FILE *f = fopen(p, "w");
  if (!f) {
    fprintf(stderr, "cannot write %s\n", p);
    exit(1);
  }
  fputs(text, f);
  fclose(f);
}

/* LLaMA-2-13B on one GPU: projection (n, k) and the LM head. GEMM time = n k m / 1e8 us. */
static const int64_t GEMMS[][2] = {{5120, 5120}, {13824, 5120}, {5120, 13824}, {32000, 5120}};
static double f_gemm(double n, double k, double m) { return n * k * m / 1e8; }
/* elementwise: width * tokens * 1e-5 us (rmsnorm/add/embed 5120, rope 80 x 128, silu_mul,
 * kv_update 2 x 40 x 128) */
static double f_elem(double w, double t) { return w * t * 1e-5; }
/* attention: 1 ns per attended (query, key) pair in prefill; decode 1 ns per key read (b x ctx),
 * 0.5 ns for the "kvbench" source */
static double pairs(double n, double h) { return n * h + 0.5 * n * (n + 1); }
static double f_prefill(double h, double n) { return 1e-3 * pairs(n, h); }
static double f_decode(double b, double c) { return 1e-3 * b * c; }

/* A complete, valid profile in a fresh directory; skip_lm_head leaves the LM head out. */
static const char *write_profile(const char *tag, int skip_lm_head) {
  const char *dir = test_tmp_path(tag);
  mkdir(dir, 0777);
  put(dir, "meta.ini",
      "; test fixture\n[profile]\nformat = kvlab-gpu-profile\nversion = 1\ndevice = Test GPU\n"
      "date_utc = 2026-01-01T00:00:00Z\ncommit = 0123456789abcdef\nsmoke = false\n"
      "torch = 0.0\nextra_key = ignored\n");
  char buf[1 << 16];
  size_t k = 0;
  k += (size_t)snprintf(buf + k, sizeof buf - k, "# device: Test GPU\nn,k,m,us,method\n");
  int64_t ms[] = {1, 16, 256, 4096};
  for (size_t g = 0; g < sizeof GEMMS / sizeof GEMMS[0]; g++) {
    if (skip_lm_head && GEMMS[g][0] == 32000) continue;
    for (size_t i = 0; i < 4; i++) {
      k += (size_t)snprintf(buf + k, sizeof buf - k, "%lld,%lld,%lld,%.17g,graph\n",
                            (long long)GEMMS[g][0], (long long)GEMMS[g][1], (long long)ms[i],
                            f_gemm((double)GEMMS[g][0], (double)GEMMS[g][1], (double)ms[i]));
    }
  }
  put(dir, "gemm.csv", buf);
  k = 0;
  k += (size_t)snprintf(buf + k, sizeof buf - k, "op,width,tokens,us\n");
  struct {
    const char *op;
    int w;
  } el[] = {{"rmsnorm", 5120}, {"add", 5120}, {"embed", 5120}, {"rope", 10240},
            {"silu_mul", 13824}, {"kv_update", 10240}};
  int64_t ts[] = {1, 64, 4096};
  for (size_t e = 0; e < 6; e++) {
    for (size_t i = 0; i < 3; i++) {
      k += (size_t)snprintf(buf + k, sizeof buf - k, "%s,%d,%lld,%.17g\n", el[e].op, el[e].w,
                            (long long)ts[i], f_elem(el[e].w, (double)ts[i]));
    }
  }
  put(dir, "elementwise.csv", buf);
  k = 0;
  /* columns in another order than the loader lists them, plus one it does not read */
  k += (size_t)snprintf(buf + k, sizeof buf - k, "new,hist,head_dim,kv_heads,heads,us,p10_us\n");
  int64_t hs[] = {0, 1024}, ns[] = {16, 256, 4096};
  for (size_t h = 0; h < 2; h++) {
    for (size_t n = 0; n < 3; n++) {
      double v = f_prefill((double)hs[h], (double)ns[n]);
      k += (size_t)snprintf(buf + k, sizeof buf - k, "%lld,%lld,128,40,40,%.17g,%.17g\n",
                            (long long)ns[n], (long long)hs[h], v, v);
    }
  }
  put(dir, "attn_prefill.csv", buf);
  k = 0;
  k += (size_t)snprintf(buf + k, sizeof buf - k,
                        "heads,kv_heads,head_dim,batch,context,us,source\n");
  int64_t bs[] = {1, 4, 16}, cs[] = {128, 1024, 8192};
  for (int src = 0; src < 2; src++) {
    for (size_t b = 0; b < 3; b++) {
      for (size_t c = 0; c < 3; c++) {
        double v = f_decode((double)bs[b], (double)cs[c]) * (src ? 0.5 : 1.0);
        k += (size_t)snprintf(buf + k, sizeof buf - k, "40,40,128,%lld,%lld,%.17g,%s\n",
                              (long long)bs[b], (long long)cs[c], v, src ? "kvbench" : "sdpa");
      }
    }
  }
  put(dir, "attn_decode.csv", buf);
  put(dir, "host.csv",
      "path,layers,us,fixed_us,per_layer_us\nhf_decode,2,210,,\nhf_decode,8,510,,\n"
      "hf_decode,fit,,100,50\nmanual,fit,,-3,20\n");
  return dir;
}

static void load_13b(sim_model *m, sim_hw *hw) {
  kv_error e = {0};
  if (sim_model_load(data_path("models/llama-2-13b.ini"), m, &e) ||
      sim_hw_load(data_path("hardware/h100.ini"), hw, &e)) {
    fprintf(stderr, "%s\n", e.msg);
    exit(1);
  }
}

/* Curve evaluation: exact at points, log-log between, edge below, scaled above; flags. */
static void test_curve_interpolation(void) {
  double x[] = {1, 4, 16}, us[] = {10, 20, 80};
  sim_prof_curve c = {3, x, us};
  unsigned f = 0;
  CHECK_NEAR(sim_prof_curve_eval(&c, 4, SIM_PROF_CLAMP, 0, &f), 20, 0, 1e-15);
  CHECK_EQ_INT(f, 0);
  /* between (1, 10) and (4, 20) at x = 2: half way in log x, so the geometric mean */
  CHECK_NEAR(sim_prof_curve_eval(&c, 2, SIM_PROF_CLAMP, 0, &f), sqrt(10.0 * 20.0), 0, 1e-14);
  /* (4, 20) - (16, 80) is a line of slope 1 in log-log: x = 8 gives 40 */
  CHECK_NEAR(sim_prof_curve_eval(&c, 8, SIM_PROF_CLAMP, 0, &f), 40, 0, 1e-14);
  CHECK_EQ_INT(f, 0);
  CHECK_NEAR(sim_prof_curve_eval(&c, 0.5, SIM_PROF_PROPORTIONAL, 0, &f), 10, 0, 0);
  CHECK_EQ_INT(f, SIM_PROF_BELOW);
  f = 0;
  CHECK_NEAR(sim_prof_curve_eval(&c, 32, SIM_PROF_CLAMP, 0, &f), 80, 0, 0);
  CHECK_EQ_INT(f, SIM_PROF_ABOVE);
  CHECK_NEAR(sim_prof_curve_eval(&c, 32, SIM_PROF_PROPORTIONAL, 0, &f), 160, 0, 1e-15);
  /* pairs: 128 new tokens after 100 cached vs the edge's 16 */
  CHECK_NEAR(sim_prof_curve_eval(&c, 128, SIM_PROF_PAIRS, 100, &f),
             80 * pairs(128, 100) / pairs(16, 100), 0, 1e-14);
  double x1[] = {7}, u1[] = {3};
  sim_prof_curve one = {1, x1, u1};
  f = 0;
  CHECK_NEAR(sim_prof_curve_eval(&one, 7, SIM_PROF_CLAMP, 0, &f), 3, 0, 0);
  CHECK_EQ_INT(f, 0);
}

/* Tables from the fixture: linear in hist, log-log in batch, affine / proportional above. */
static void test_table_interpolation(void) {
  const char *dir = write_profile("prof-interp", 0);
  sim_profile p;
  kv_error e = {0};
  REQUIRE_OK(sim_profile_load(dir, &p, &e), &e);
  CHECK_EQ_INT(p.n[SIM_PROF_GEMM], 4);
  CHECK_EQ_INT(p.n[SIM_PROF_PREFILL], 1);
  CHECK_EQ_INT(p.n[SIM_PROF_DECODE], 2);
  CHECK_EQ_INT(p.n[SIM_PROF_ELEM], 6);
  CHECK_EQ_INT(p.n_host, 2);
  CHECK(strcmp(p.device, "Test GPU") == 0 && !p.smoke);
  const sim_prof_table *g = sim_profile_find(&p, SIM_PROF_GEMM, 13824, 5120, 0, "");
  REQUIRE(g != NULL);
  CHECK(sim_profile_find(&p, SIM_PROF_GEMM, 5120, 5121, 0, "") == NULL);
  unsigned f = 0;
  /* a power law of degree 1 in m: exact anywhere inside, and above (proportional) */
  CHECK_NEAR(sim_prof_table_eval(g, 0, 100, 0, SIM_PROF_CLAMP, SIM_PROF_PROPORTIONAL, &f),
             f_gemm(13824, 5120, 100), 0, 1e-12);
  CHECK_EQ_INT(f, 0);
  CHECK_NEAR(sim_prof_table_eval(g, 0, 10000, 0, SIM_PROF_CLAMP, SIM_PROF_PROPORTIONAL, &f),
             f_gemm(13824, 5120, 10000), 0, 1e-12);
  CHECK_EQ_INT(f, SIM_PROF_ABOVE);
  const sim_prof_table *pf = sim_profile_find(&p, SIM_PROF_PREFILL, 40, 40, 128, "");
  REQUIRE(pf != NULL);
  f = 0;
  /* time is affine in hist at fixed new: linear interpolation between hist 0 and 1024 is
   * exact, and so is the affine continuation above 1024 */
  CHECK_NEAR(sim_prof_table_eval(pf, 300, 256, 0, SIM_PROF_AFFINE, SIM_PROF_PAIRS, &f),
             f_prefill(300, 256), 0, 1e-12);
  CHECK_EQ_INT(f, 0);
  CHECK_NEAR(sim_prof_table_eval(pf, 3000, 256, 0, SIM_PROF_AFFINE, SIM_PROF_PAIRS, &f),
             f_prefill(3000, 256), 0, 1e-12);
  CHECK_EQ_INT(f, SIM_PROF_ABOVE);
  /* new above 4096 scales with the attended pairs of the hist-1024 curve */
  f = 0;
  CHECK_NEAR(sim_prof_table_eval(pf, 1024, 8192, 0, SIM_PROF_AFFINE, SIM_PROF_PAIRS, &f),
             f_prefill(1024, 8192), 0, 1e-12);
  CHECK_EQ_INT(f, SIM_PROF_ABOVE);
  const sim_prof_table *d = sim_profile_find(&p, SIM_PROF_DECODE, 40, 40, 128, "sdpa");
  const sim_prof_table *kb = sim_profile_find(&p, SIM_PROF_DECODE, 40, 40, 128, "kvbench");
  REQUIRE(d != NULL && kb != NULL);
  f = 0;
  /* b x ctx is a power law in both: exact in log-log between batches and contexts */
  CHECK_NEAR(sim_prof_table_eval(d, 2, 300, 1, SIM_PROF_PROPORTIONAL, SIM_PROF_PROPORTIONAL, &f),
             f_decode(2, 300), 0, 1e-12);
  CHECK_NEAR(sim_prof_table_eval(kb, 2, 300, 1, SIM_PROF_PROPORTIONAL, SIM_PROF_PROPORTIONAL, &f),
             0.5 * f_decode(2, 300), 0, 1e-12);
  CHECK_EQ_INT(f, 0);
  CHECK_NEAR(sim_prof_table_eval(d, 64, 20000, 1, SIM_PROF_PROPORTIONAL, SIM_PROF_PROPORTIONAL,
                                 &f),
             f_decode(64, 20000), 0, 1e-12);
  CHECK_EQ_INT(f, SIM_PROF_ABOVE);
  const sim_prof_host *h = sim_profile_host(&p, "hf_decode");
  REQUIRE(h != NULL);
  CHECK_NEAR(h->per_layer_us, 50, 0, 0);
  CHECK(sim_profile_host(&p, "hf_prefill") == NULL);
  sim_profile_free(&p);
}

/* A host path measured at one layer count only: per-layer time of the first fitted path, the
 * rest of its point is fixed; a path with two points and no fit is not made up. */
static void test_host_derived(void) {
  const char *dir = write_profile("prof-host-derived", 0);
  put(dir, "host.csv",
      "path,layers,us,fixed_us,per_layer_us\nhf_prefill,2,2600,,\nhf_prefill,8,7400,,\n"
      "hf_prefill,fit,,1000,800\nhf_decode,2,3600,,\nmanual,2,3000,,\nmanual,8,9000,,\n"
      "tiny,2,900,,\n");
  sim_profile p;
  kv_error e = {0};
  REQUIRE_OK(sim_profile_load(dir, &p, &e), &e);
  const sim_prof_host *h = sim_profile_host(&p, "hf_decode");
  REQUIRE(h != NULL);
  CHECK_NEAR(h->per_layer_us, 800, 0, 0);
  CHECK_NEAR(h->fixed_us, 3600 - 2 * 800, 0, 0);
  CHECK_STR_CONTAINS(h->derived, "hf_prefill's per-layer time, fixed from its 2-layer point");
  CHECK(sim_profile_host(&p, "manual") == NULL);
  h = sim_profile_host(&p, "tiny"); /* its point is under 2 layers of the reference: fixed 0 */
  REQUIRE(h != NULL);
  CHECK_NEAR(h->fixed_us, 0, 0, 0);
  CHECK(sim_profile_host(&p, "hf_prefill")->derived[0] == 0);
  sim_profile_free(&p);
  /* the measured model names the derivation */
  sim_model m;
  sim_hw hw;
  load_13b(&m, &hw);
  sim_cost c;
  sim_prof_opts o = {NULL, "hf_decode", 0, 0, NULL, NULL};
  REQUIRE_OK(sim_cost_init_measured(&c, &m, &hw, 1, dir, &o, &e), &e);
  char d[1536];
  sim_cost_describe(&c, d, sizeof d);
  CHECK_STR_CONTAINS(d, "host overhead hf_decode (derived: hf_prefill's per-layer time");
  sim_cost_free(&c);
}

/* One malformed file at a time: the loader fails with the right code and names file:line. */
static void check_bad(const char *tag, const char *file, const char *text, int code,
                      const char *where) {
  const char *dir = write_profile(tag, 0);
  put(dir, file, text);
  sim_profile p;
  kv_error e = {0};
  int rc = sim_profile_load(dir, &p, &e);
  CHECK_EQ_INT(rc, code);
  CHECK_STR_CONTAINS(e.msg, where);
  if (rc != code || !strstr(e.msg, where)) printf("  case %s: %s\n", tag, e.msg);
  if (rc == 0) sim_profile_free(&p);
}

static void test_malformed(void) {
  check_bad("bad-nocol", "gemm.csv", "n,k,m,time\n1,1,1,1\n", KV_EFORMAT,
            "gemm.csv: the header has no column 'us'");
  check_bad("bad-num", "gemm.csv", "# c\n\nn,k,m,us\n5120,5120,1,1\n5120,5120,2,abc\n",
            KV_EFORMAT, "gemm.csv:5: column 'us': 'abc' is not a finite number");
  check_bad("bad-nan", "gemm.csv", "n,k,m,us\n5120,5120,1,nan\n", KV_EFORMAT,
            "gemm.csv:2: column 'us'");
  check_bad("bad-neg", "gemm.csv", "n,k,m,us\n5120,5120,1,-2\n", KV_ERANGE,
            "gemm.csv:2: column 'us': -2 is outside");
  check_bad("bad-zero-m", "gemm.csv", "n,k,m,us\n5120,5120,0,2\n", KV_ERANGE,
            "gemm.csv:2: column 'm': 0 is outside");
  check_bad("bad-int", "gemm.csv", "n,k,m,us\n5120,5120,1.5,2\n", KV_EFORMAT,
            "gemm.csv:2: column 'm': '1.5' is not an integer");
  check_bad("bad-fields", "attn_prefill.csv",
            "heads,kv_heads,head_dim,hist,new,us\n40,40,128,0,16,1\n40,40,128,0,32\n", KV_EFORMAT,
            "attn_prefill.csv:3: 5 fields, the header has 6");
  check_bad("bad-dup", "elementwise.csv", "op,width,tokens,us\nadd,5120,1,1\nadd,5120,2,2\n"
            "add,5120,1,1.5\n", KV_EFORMAT, "elementwise.csv:4: the same point as line 2");
  check_bad("bad-empty", "attn_decode.csv", "# only comments\n\n", KV_EFORMAT,
            "attn_decode.csv: no header line");
  check_bad("bad-norows", "attn_decode.csv", "heads,kv_heads,head_dim,batch,context,us,source\n",
            KV_EFORMAT, "attn_decode.csv: no data rows");
  check_bad("bad-source", "attn_decode.csv",
            "heads,kv_heads,head_dim,batch,context,us,source\n40,40,128,1,128,1,\n", KV_EFORMAT,
            "attn_decode.csv:2: column 'source': '' must have 1 to 23 characters");
  check_bad("bad-hist", "attn_prefill.csv", "heads,kv_heads,head_dim,hist,new,us\n"
            "40,40,128,-1,16,1\n", KV_ERANGE, "attn_prefill.csv:2: column 'hist'");
  check_bad("bad-host", "host.csv", "path,layers,fixed_us,per_layer_us\nx,fit,1,2\nx,fit,1,3\n",
            KV_EFORMAT, "host.csv:3: a second fit for path 'x'");
  check_bad("bad-format", "meta.ini", "[profile]\nformat = something\nversion = 1\n", KV_EFORMAT,
            "meta.ini: [profile] format is 'something'");
  check_bad("bad-version", "meta.ini",
            "[profile]\nformat = kvlab-gpu-profile\nversion = 2\ndevice = x\n", KV_ENOTSUP,
            "profile version 2");
  check_bad("bad-device", "meta.ini", "[profile]\nformat = kvlab-gpu-profile\nversion = 1\n",
            KV_EFORMAT, "[profile] device is required");
  /* a line too long to read whole is an error, never cut */
  static char longline[SIM_CSV_LINE + 200];
  size_t n = (size_t)snprintf(longline, sizeof longline, "n,k,m,us\n5120,5120,1,1");
  while (n < sizeof longline - 3) longline[n++] = '0';
  longline[n++] = '\n';
  longline[n] = '\0';
  check_bad("bad-long", "gemm.csv", longline, KV_EFORMAT, "gemm.csv:2: line longer than");
  /* a missing table */
  const char *dir = write_profile("bad-missing", 0);
  char p[4200];
  snprintf(p, sizeof p, "%s/attn_decode.csv", dir);
  remove(p);
  sim_profile pr;
  kv_error e = {0};
  CHECK_EQ_INT(sim_profile_load(dir, &pr, &e), KV_EIO);
  CHECK_STR_CONTAINS(e.msg, "attn_decode.csv: cannot open");
  /* host.csv is optional */
  dir = write_profile("ok-nohost", 0);
  snprintf(p, sizeof p, "%s/host.csv", dir);
  remove(p);
  REQUIRE_OK(sim_profile_load(dir, &pr, &e), &e);
  CHECK_EQ_INT(pr.n_host, 0);
  sim_profile_free(&pr);
}

/* The measured layer of a mixed iteration against the sum of its operators by hand. */
static void test_measured_by_hand(void) {
  sim_model m;
  sim_hw hw;
  load_13b(&m, &hw);
  const char *dir = write_profile("prof-hand", 0);
  sim_cost c;
  kv_error e = {0};
  REQUIRE_OK(sim_cost_init_measured(&c, &m, &hw, 1, dir, NULL, &e), &e);
  /* one prefill of 256 new tokens after 1024 cached + 4 decode sequences of 1024 tokens:
   * T = 260 tokens through 4 projections of 5120 x 5120 and 3 of 13824 x 5120 (gate, up) /
   * 5120 x 13824 (down), 2 rmsnorm + rope + silu_mul + 2 add at T, prefill attention at
   * (1024, 256), decode attention at (4, 1024), the KV write of the 4 decode tokens; head:
   * embed + rmsnorm at T, LM head at 5 rows */
  int64_t hist = 1024, nw = 256, layer, head;
  sim_iter_work w = {1, &hist, &nw, 4, 4 * 1024};
  unsigned f = 99;
  sim_prof_cost_iter(c.measured, &w, &layer, &head, &f);
  double T = 260;
  double expect = 4 * f_gemm(5120, 5120, T) + 2 * f_gemm(13824, 5120, T) +
                  f_gemm(5120, 13824, T) + 2 * f_elem(5120, T) + f_elem(10240, T) +
                  f_elem(13824, T) + 2 * f_elem(5120, T) + f_prefill(1024, 256) +
                  f_decode(4, 1024) + f_elem(10240, 4);
  CHECK_NEAR(layer, expect * 1e3, 1, 0);
  CHECK_NEAR(head, (2 * f_elem(5120, T) + f_gemm(32000, 5120, 5)) * 1e3, 1, 0);
  CHECK_EQ_INT(f, 0);
  /* operator by operator: the attentions and the KV write are where the hand sum puts them,
   * and the operators add up to the layer and the head */
  double lo[SIM_OP_COUNT], ho[SIM_OP_COUNT], ls = 0, hs = 0;
  sim_prof_cost_ops(c.measured, &w, lo, ho, NULL);
  for (int op = 0; op < SIM_OP_COUNT; op++) ls += lo[op], hs += ho[op];
  CHECK_NEAR(ls * 1e3, (double)layer, 1, 0);
  CHECK_NEAR(hs * 1e3, (double)head, 1, 0);
  CHECK_NEAR(lo[SIM_OP_ATTN_PREFILL], f_prefill(1024, 256), 0, 1e-12);
  CHECK_NEAR(lo[SIM_OP_ATTN_DECODE], f_decode(4, 1024), 0, 1e-12);
  CHECK_NEAR(lo[SIM_OP_KV_UPDATE], f_elem(10240, 4), 0, 1e-12);
  CHECK_NEAR(ho[SIM_OP_LM_HEAD], f_gemm(32000, 5120, 5), 0, 1e-12);
  /* sim_cost_iter gives the same */
  int64_t l2, h2;
  sim_cost_iter(&c, &w, &l2, &h2);
  CHECK_EQ_INT(l2, layer);
  CHECK_EQ_INT(h2, head);
  char d[1536];
  sim_cost_describe(&c, d, sizeof d);
  CHECK_STR_CONTAINS(d, "measured: profile ");
  CHECK_STR_CONTAINS(d, "Test GPU");
  CHECK_STR_CONTAINS(d, "for: nothing");
  /* decode only with no context (sim_attn asks for the layer without decode attention) */
  w = (sim_iter_work){0, NULL, NULL, 4, 0};
  sim_prof_cost_iter(c.measured, &w, &layer, &head, &f);
  expect = 4 * f_gemm(5120, 5120, 4) + 2 * f_gemm(13824, 5120, 4) + f_gemm(5120, 13824, 4) +
           4 * f_elem(5120, 4) + f_elem(10240, 4) + f_elem(13824, 4) + f_elem(10240, 4);
  CHECK_NEAR(layer, expect * 1e3, 1, 0);
  /* an empty iteration costs nothing */
  w = (sim_iter_work){0, NULL, NULL, 0, 0};
  sim_prof_cost_iter(c.measured, &w, &layer, &head, &f);
  CHECK_EQ_INT(layer + head, 0);
  sim_cost_free(&c);
  CHECK(c.measured == NULL);
}

/* sustain.csv: the layer ratio by tokens (log-linear between points, edges outside, never
 * below 1), the model's own curve or the mean of all, power_state = short, bad rows. */
static void test_sustain(void) {
  sim_model m;
  sim_hw hw;
  load_13b(&m, &hw); /* name LLaMA-2-13B: matches the stem-like "llama-2-13b" below */
  const char *dir = write_profile("prof-sustain", 0);
  /* rows out of token order, a non-layer row (information, ignored), another model */
  put(dir, "sustain.csv",
      "# test\nmodel,op,tokens,short_us,sustained_us,ratio\n"
      "llama-2-13b,layer,1024,1,1,1.2\nllama-2-13b,layer,16,1,1,0.98\n"
      "llama-2-13b,gemm,1024,1,1,3.5\nllama-2-13b,layer,4096,1,1,1.1\n"
      "other-model,layer,16,1,1,1.0\nother-model,layer,4096,1,1,1.4\n");
  sim_profile p;
  kv_error e = {0};
  REQUIRE_OK(sim_profile_load(dir, &p, &e), &e);
  CHECK_EQ_INT(p.n_sustain, 2);
  const sim_prof_tcurve *s = &p.sustain[0];
  CHECK_EQ_INT(s->n, 3);
  CHECK_NEAR(sim_prof_tcurve_eval(s, 1024), 1.2, 0, 1e-12);
  CHECK_NEAR(sim_prof_tcurve_eval(s, 2048), 1.15, 0, 1e-12); /* halfway in log tokens */
  CHECK_NEAR(sim_prof_tcurve_eval(s, 8), 0.98, 0, 1e-12);
  CHECK_NEAR(sim_prof_tcurve_eval(s, 1 << 20), 1.1, 0, 1e-12);
  CHECK_NEAR(sim_prof_tcurve_eval(s, 128), 0.98 + 0.5 * 0.22, 0, 1e-12); /* 128 = 16 x 8 of 16 x 64 */
  sim_profile_free(&p);
  /* the cost model: a prefill of 2048 tokens costs 1.15 x its short layer; a decode of 4
   * sequences costs its short layer (0.98 -> 1); the head is not scaled */
  sim_prof_opts shrt = {NULL, NULL, 0, 0, "short", NULL};
  sim_cost a, b;
  REQUIRE_OK(sim_cost_init_measured(&a, &m, &hw, 1, dir, NULL, &e), &e);
  REQUIRE_OK(sim_cost_init_measured(&b, &m, &hw, 1, dir, &shrt, &e), &e);
  int64_t h0 = 0, n0 = 2048, la, ha, lb, hb;
  sim_iter_work w = {1, &h0, &n0, 0, 0};
  sim_cost_iter(&a, &w, &la, &ha);
  sim_cost_iter(&b, &w, &lb, &hb);
  CHECK_NEAR((double)la, 1.15 * (double)lb, 2, 1e-9);
  CHECK_EQ_INT(ha, hb);
  w = (sim_iter_work){0, NULL, NULL, 4, 4 * 1024};
  sim_cost_iter(&a, &w, &la, &ha);
  sim_cost_iter(&b, &w, &lb, &hb);
  CHECK_EQ_INT(la, lb);
  char d[1536];
  sim_cost_describe(&a, d, sizeof d);
  CHECK_STR_CONTAINS(d, "sustained (sustain.csv: llama-2-13b's layer ratios)");
  sim_cost_describe(&b, d, sizeof d);
  CHECK_STR_CONTAINS(d, "short timings (power_state = short)");
  sim_cost_free(&a);
  sim_cost_free(&b);
  /* a model the table lacks: the mean of the curves (at 4096: (1.1 + 1.4) / 2) */
  put(dir, "sustain.csv", "model,op,tokens,ratio\nm1,layer,16,1.0\nm1,layer,4096,1.1\n"
      "m2,layer,16,1.0\nm2,layer,4096,1.4\n");
  REQUIRE_OK(sim_cost_init_measured(&a, &m, &hw, 1, dir, NULL, &e), &e);
  REQUIRE_OK(sim_cost_init_measured(&b, &m, &hw, 1, dir, &shrt, &e), &e);
  n0 = 4096;
  w = (sim_iter_work){1, &h0, &n0, 0, 0};
  sim_cost_iter(&a, &w, &la, &ha);
  sim_cost_iter(&b, &w, &lb, &hb);
  CHECK_NEAR((double)la, 1.25 * (double)lb, 2, 1e-9);
  sim_cost_describe(&a, d, sizeof d);
  CHECK_STR_CONTAINS(d, "the mean of 2 measured models' layer ratios; LLaMA-2-13B not measured");
  sim_cost_free(&a);
  sim_cost_free(&b);
  /* bad options and rows name what is wrong */
  sim_prof_opts bad = {NULL, NULL, 0, 0, "hot", NULL};
  CHECK_EQ_INT(sim_cost_init_measured(&a, &m, &hw, 1, dir, &bad, &e), KV_EINVAL);
  CHECK_STR_CONTAINS(e.msg, "power_state 'hot'");
  check_bad("bad-sus-dup", "sustain.csv", "model,op,tokens,ratio\nx,layer,16,1\nx,layer,16,1.1\n",
            KV_EFORMAT, "sustain.csv:3: a second layer row for model 'x' at 16 tokens");
  check_bad("bad-sus-ratio", "sustain.csv", "model,op,tokens,ratio\nx,layer,16,9\n", KV_ERANGE,
            "sustain.csv:2: column 'ratio'");
  check_bad("bad-sus-col", "sustain.csv", "model,op,tokens,us\nx,layer,16,9\n", KV_EFORMAT,
            "sustain.csv: the header has no column 'ratio'");
  /* without sustain.csv: short timings, said so */
  dir = write_profile("prof-nosustain", 0);
  REQUIRE_OK(sim_cost_init_measured(&a, &m, &hw, 1, dir, NULL, &e), &e);
  sim_cost_describe(&a, d, sizeof d);
  CHECK_STR_CONTAINS(d, "short timings (no sustain.csv in the profile)");
  sim_cost_free(&a);
}

/* launch_gap.csv: the layer's gap by tokens (log-linear between points, edges outside), added
 * to the layer after the sustain ratio and not scaled by it; the model's own curve or the mean
 * of all; launch_gaps = none; the operator breakdown shows it; bad rows and options. */
static void test_launch_gap(void) {
  sim_model m;
  sim_hw hw;
  load_13b(&m, &hw);
  const char *dir = write_profile("prof-gap", 0);
  put(dir, "sustain.csv", "model,op,tokens,ratio\nllama-2-13b,layer,1,2.0\n");
  put(dir, "launch_gap.csv",
      "# test\nmodel,kind,batch,context,tokens,kernels_per_layer,gap_per_kernel_us,gap_us\n"
      "llama-2-13b,decode,8,8192,8,50,0.4,20\nllama-2-13b,decode,2,2048,2,50,0.2,10\n"
      "llama-2-13b,prefill,1,0,2048,40,0,0\nother-model,decode,2,2048,2,50,1,50\n");
  sim_profile p;
  kv_error e = {0};
  REQUIRE_OK(sim_profile_load(dir, &p, &e), &e);
  CHECK_EQ_INT(p.n_gap, 2);
  const sim_prof_tcurve *g = &p.gap[0];
  CHECK_EQ_INT(g->n, 3);
  CHECK_NEAR(sim_prof_tcurve_eval(g, 1), 10, 0, 1e-12);
  CHECK_NEAR(sim_prof_tcurve_eval(g, 4), 15, 0, 1e-12);   /* halfway in log tokens */
  CHECK_NEAR(sim_prof_tcurve_eval(g, 128), 10, 0, 1e-12); /* 128 = 8 x 16 of 8 x 256: 20 - 10 x 1/2 */
  CHECK_NEAR(sim_prof_tcurve_eval(g, 1 << 20), 0, 0, 1e-12);
  sim_profile_free(&p);
  /* a decode step of 4 sequences: the layer is 2 x its short operators + 15 us, by hand */
  sim_prof_opts none = {NULL, NULL, 0, 0, NULL, "none"};
  sim_prof_opts shrt = {NULL, NULL, 0, 0, "short", "none"};
  sim_cost a, b, s;
  REQUIRE_OK(sim_cost_init_measured(&a, &m, &hw, 1, dir, NULL, &e), &e);
  REQUIRE_OK(sim_cost_init_measured(&b, &m, &hw, 1, dir, &none, &e), &e);
  REQUIRE_OK(sim_cost_init_measured(&s, &m, &hw, 1, dir, &shrt, &e), &e);
  sim_iter_work w = {0, NULL, NULL, 4, 4 * 1024};
  int64_t la, ha, lb, hb, ls, hs;
  sim_cost_iter(&a, &w, &la, &ha);
  sim_cost_iter(&b, &w, &lb, &hb);
  sim_cost_iter(&s, &w, &ls, &hs);
  CHECK_NEAR((double)lb, 2.0 * (double)ls, 2, 1e-9);
  CHECK_NEAR((double)la, (double)lb + 15000.0, 2, 1e-9);
  CHECK_EQ_INT(ha, hb);
  double lo[SIM_OP_COUNT], ho[SIM_OP_COUNT];
  sim_prof_cost_ops(a.measured, &w, lo, ho, NULL);
  CHECK_NEAR(lo[SIM_OP_LAUNCH_GAP], 15.0, 0, 1e-12);
  CHECK_NEAR(ho[SIM_OP_LAUNCH_GAP], 0.0, 0, 0);
  CHECK(!strcmp(sim_prof_op_names[SIM_OP_LAUNCH_GAP], "launch_gap"));
  char d[1536];
  sim_cost_describe(&a, d, sizeof d);
  CHECK_STR_CONTAINS(d, "launch gaps (launch_gap.csv: llama-2-13b's)");
  CHECK(strstr(d, "launch_gap") == NULL || strstr(d, "for: nothing") != NULL); /* not a roofline op */
  sim_cost_describe(&b, d, sizeof d);
  CHECK_STR_CONTAINS(d, "no launch gaps (launch_gaps = none)");
  sim_cost_free(&a);
  sim_cost_free(&b);
  sim_cost_free(&s);
  /* a model the table lacks: the mean of the curves (at 2 tokens: (10 + 50) / 2) */
  put(dir, "launch_gap.csv", "model,tokens,gap_us\nm1,2,10\nm2,2,50\n");
  REQUIRE_OK(sim_cost_init_measured(&a, &m, &hw, 1, dir, NULL, &e), &e);
  REQUIRE_OK(sim_cost_init_measured(&b, &m, &hw, 1, dir, &none, &e), &e);
  w = (sim_iter_work){0, NULL, NULL, 2, 2 * 1024};
  sim_cost_iter(&a, &w, &la, &ha);
  sim_cost_iter(&b, &w, &lb, &hb);
  CHECK_NEAR((double)la, (double)lb + 30000.0, 2, 1e-9);
  sim_cost_describe(&a, d, sizeof d);
  CHECK_STR_CONTAINS(d, "the mean of 2 measured models'; LLaMA-2-13B not measured");
  sim_cost_free(&a);
  sim_cost_free(&b);
  /* bad options and rows name what is wrong */
  sim_prof_opts bad = {NULL, NULL, 0, 0, NULL, "some"};
  CHECK_EQ_INT(sim_cost_init_measured(&a, &m, &hw, 1, dir, &bad, &e), KV_EINVAL);
  CHECK_STR_CONTAINS(e.msg, "launch_gaps 'some'");
  check_bad("bad-gap-dup", "launch_gap.csv", "model,tokens,gap_us\nx,16,1\nx,16,2\n",
            KV_EFORMAT, "launch_gap.csv:3: a second gap row for model 'x' at 16 tokens");
  check_bad("bad-gap-neg", "launch_gap.csv", "model,tokens,gap_us\nx,16,-1\n", KV_ERANGE,
            "launch_gap.csv:2: column 'gap_us'");
  check_bad("bad-gap-col", "launch_gap.csv", "model,tokens,us\nx,16,9\n", KV_EFORMAT,
            "launch_gap.csv: the header has no column 'gap_us'");
  check_bad("bad-gap-tok", "launch_gap.csv", "model,tokens,gap_us\nx,0,1\n", KV_ERANGE,
            "launch_gap.csv:2: column 'tokens'");
  /* without launch_gap.csv: no gaps, said so */
  dir = write_profile("prof-nogap", 0);
  REQUIRE_OK(sim_cost_init_measured(&a, &m, &hw, 1, dir, NULL, &e), &e);
  sim_cost_describe(&a, d, sizeof d);
  CHECK_STR_CONTAINS(d, "no launch gaps (no launch_gap.csv in the profile)");
  sim_cost_free(&a);
}

/* Sources, host floors, missing operators, tensor parallelism, bad options. */
static void test_measured_options(void) {
  sim_model m;
  sim_hw hw;
  load_13b(&m, &hw);
  const char *dir = write_profile("prof-opts", 1);
  kv_error e = {0};
  sim_cost c;
  sim_prof_opts o = {"kvbench", "hf_decode", 0.5, 0.9, NULL, NULL};
  REQUIRE_OK(sim_cost_init_measured(&c, &m, &hw, 1, dir, &o, &e), &e);
  /* one decode sequence of 128 tokens: the GPU layer (~3.8 us) is under the host's 50 us per
   * layer; the LM head is missing: the roofline prices it (its 328 MB of weights at 0.9 of
   * H100's bandwidth take longer than the host's fixed 100 us) */
  int64_t layer, head;
  sim_iter_work w = {0, NULL, NULL, 1, 128};
  unsigned f = 0;
  sim_prof_cost_iter(c.measured, &w, &layer, &head, &f);
  CHECK_EQ_INT(layer, 50000);
  double by1 = (32000.0 * 5120 + 5120 + 32000) * 2;
  double roof1 = fmax(2.0 * 32000 * 5120 / (hw.flops * 0.5), by1 / (hw.hbm_bw * 0.9)) * 1e9;
  CHECK_NEAR(head, fmax(2 * f_elem(5120, 1) * 1e3 + roof1, 100000), 1, 0);
  CHECK_EQ_INT(f, SIM_PROF_ROOFLINE);
  /* a host floor above the GPU head: hf_decode's fixed time with a profile that has the head */
  sim_cost c2;
  REQUIRE_OK(sim_cost_init_measured(&c2, &m, &hw, 1, write_profile("prof-opts-head", 0), &o, &e),
             &e);
  sim_prof_cost_iter(c2.measured, &w, &layer, &head, &f);
  CHECK_EQ_INT(head, 100000);
  CHECK_EQ_INT(f, 0);
  sim_cost_free(&c2);
  char d[1536];
  sim_cost_describe(&c, d, sizeof d);
  CHECK_STR_CONTAINS(d, "decode attention kvbench; host overhead hf_decode");
  CHECK_STR_CONTAINS(d, "compute_eff 0.5, memory_eff 0.9, assumed) for: lm_head 32000x5120");
  /* the roofline's LM head: 2 x 32000 x 5120 x 64 FLOPs vs its bytes, at the given effs */
  sim_cost_free(&c);
  o = (sim_prof_opts){"kvbench", NULL, 0.5, 0.9, NULL, NULL};
  REQUIRE_OK(sim_cost_init_measured(&c, &m, &hw, 1, dir, &o, &e), &e);
  w = (sim_iter_work){0, NULL, NULL, 64, 64 * 1024};
  sim_prof_cost_iter(c.measured, &w, &layer, &head, &f);
  double fl = 2.0 * 32000 * 5120 * 64, by = (32000.0 * 5120 + 64 * 5120 + 64 * 32000) * 2;
  double roof = fmax(fl / (hw.flops * 0.5), by / (hw.hbm_bw * 0.9)) * 1e9;
  CHECK_NEAR(head, 2 * f_elem(5120, 64) * 1e3 + roof, 1, 0);
  /* decode of 64 sequences is above the measured 16: proportional, flagged */
  CHECK_EQ_INT(f, SIM_PROF_ROOFLINE | SIM_PROF_ABOVE);
  double expect = 4 * f_gemm(5120, 5120, 64) + 2 * f_gemm(13824, 5120, 64) +
                  f_gemm(5120, 13824, 64) + 4 * f_elem(5120, 64) + f_elem(10240, 64) +
                  f_elem(13824, 64) + 0.5 * f_decode(64, 1024) + f_elem(10240, 64);
  CHECK_NEAR(layer, expect * 1e3, 1, 0);
  sim_cost_free(&c);
  /* two GPUs: no tp = 2 shapes in the profile, so every operator falls back and is named */
  REQUIRE_OK(sim_cost_init_measured(&c, &m, &hw, 2, dir, NULL, &e), &e);
  sim_cost_describe(&c, d, sizeof d);
  CHECK_STR_CONTAINS(d, "q 2560x5120");
  CHECK_STR_CONTAINS(d, "attn_decode 20/20/128");
  CHECK_STR_CONTAINS(d, "all-reduce assumed");
  sim_cost_free(&c);
  /* errors */
  CHECK_EQ_INT(sim_cost_init_measured(&c, &m, &hw, 3, dir, NULL, &e), KV_ENOTSUP);
  CHECK_STR_CONTAINS(e.msg, "do not split over 3 GPUs");
  o = (sim_prof_opts){"flash", NULL, 0, 0, NULL, NULL};
  CHECK_EQ_INT(sim_cost_init_measured(&c, &m, &hw, 1, dir, &o, &e), KV_ENOENT);
  CHECK_STR_CONTAINS(e.msg, "source 'flash' (present: kvbench, sdpa)");
  o = (sim_prof_opts){NULL, "hf_prefill", 0, 0, NULL, NULL};
  CHECK_EQ_INT(sim_cost_init_measured(&c, &m, &hw, 1, dir, &o, &e), KV_ENOENT);
  CHECK_STR_CONTAINS(e.msg, "host.csv: no fit for host path 'hf_prefill'");
  CHECK(c.measured == NULL);
}

/* [cost] model = measured through the experiment config, labelled in the outputs, and a short
 * simulation that runs on it. */
static void test_measured_config(void) {
  const char *dir = write_profile("prof-cfg", 0);
  const char *out = test_tmp_path("prof-cfg-out");
  char text[4096];
  snprintf(text, sizeof text,
           "[sim]\nmodel = llama-2-13b\nhardware = h100\ndata_dir = %s/sim/data\nseed = 3\n"
           "[engine]\nbatch_limit = 4\n[cache]\nmode = re\n"
           "[workload]\nsource = longctx\nsessions = 4\nturns = 2\ndoc_min = 1000\n"
           "doc_max = 3000\nout_median = 8\nout_sigma = 0\nthink_mean_s = 0.2\n"
           "session_rate = 20\n"
           "[cost]\nmodel = measured\nprofile = %s\ndecode_attention = kvbench\n",
           test_source_dir(), dir);
  kv_config *cfg = NULL;
  kv_error e = {0};
  REQUIRE_OK(kv_config_parse(text, "test.ini", &cfg, &e), &e);
  sim_params p;
  REQUIRE_OK(sim_params_from_config(cfg, &p, &e), &e);
  CHECK_EQ_INT(p.cost.kind, SIM_COST_MEASURED);
  trace t;
  trace_init(&t);
  sim_result r;
  REQUIRE_OK(sim_workload_build(cfg, p.seed, &t, &e), &e);
  REQUIRE_OK(kv_config_check_unused(cfg, &e), &e);
  REQUIRE_OK(sim_run(&p, &t, NULL, &r, &e), &e);
  CHECK(r.n_req == 8);
  CHECK(r.end_ns > 0);
  mkdir(out, 0777);
  REQUIRE_OK(sim_result_write(&r, &p, &t, cfg, out, &e), &e);
  char path[4200], line[2048];
  snprintf(path, sizeof path, "%s/summary.csv", out);
  FILE *f = fopen(path, "r");
  REQUIRE(f != NULL);
  int found = 0;
  while (fgets(line, sizeof line, f)) {
    if (strncmp(line, "# cost_model: measured: profile ", 32) == 0) found = 1;
  }
  fclose(f);
  CHECK(found);
  sim_result_free(&r);
  trace_free(&t);
  sim_params_free(&p);
  kv_config_free(cfg);
  /* a profile that is not there: the error names the config line */
  snprintf(text, sizeof text,
           "[sim]\nmodel = llama-2-13b\nhardware = h100\ndata_dir = %s/sim/data\n"
           "[cost]\nmodel = measured\nprofile = no-such-gpu\n",
           test_source_dir());
  REQUIRE_OK(kv_config_parse(text, "test.ini", &cfg, &e), &e);
  CHECK_EQ_INT(sim_params_from_config(cfg, &p, &e), KV_EIO);
  CHECK_STR_CONTAINS(e.msg, "test.ini:7: [cost] profile");
  CHECK_STR_CONTAINS(e.msg, "profiles/no-such-gpu/meta.ini");
  kv_config_free(cfg);
  snprintf(text, sizeof text,
           "[sim]\nmodel = llama-2-13b\nhardware = h100\n[cost]\nmodel = measured\n");
  REQUIRE_OK(kv_config_parse(text, "test.ini", &cfg, &e), &e);
  CHECK_EQ_INT(sim_params_from_config(cfg, &p, &e), KV_ENOENT);
  CHECK_STR_CONTAINS(e.msg, "needs [cost] profile");
  kv_config_free(cfg);
  /* power_state: a value it does not know names the config line */
  snprintf(text, sizeof text,
           "[sim]\nmodel = llama-2-13b\nhardware = h100\ndata_dir = %s/sim/data\n"
           "[cost]\nmodel = measured\nprofile = %s\npower_state = warm\n",
           test_source_dir(), dir);
  REQUIRE_OK(kv_config_parse(text, "test.ini", &cfg, &e), &e);
  CHECK_EQ_INT(sim_params_from_config(cfg, &p, &e), KV_EINVAL);
  CHECK_STR_CONTAINS(e.msg, "test.ini:8: [cost] power_state = 'warm'");
  kv_config_free(cfg);
}

/* The validation kinds through a linear cost model, where every time is exact: the iteration
 * shapes, and the engine's pre-loading recurrence with a load-bound and a compute-bound layer. */
static void test_validate_recurrence(void) {
  sim_model m;
  sim_hw hw;
  load_13b(&m, &hw);
  REQUIRE_EQ_INT(m.layers, 40);
  sim_cost c;
  kv_error e = {0};
  /* layer = 1000 + 10 / prefill token + 7 / decode sequence + 1 / context token; head 500 */
  sim_cost_init_linear(&c, &m, 1000, 10, 7, 1, 500);
  int64_t ns;
  unsigned f = 9;
  sim_val_iter it = {SIM_VAL_PREFILL, 3, 100, 0, 0};
  REQUIRE_OK(sim_val_predict(&c, &it, 1e9, 0, &ns, &f, &e), &e);
  CHECK_EQ_INT(ns, 40 * (1000 + 10 * 300 + 300) + 500);
  CHECK_EQ_INT(f, 0);
  it = (sim_val_iter){SIM_VAL_DECODE, 4, 1, 99, 0}; /* context 99 + the new token */
  REQUIRE_OK(sim_val_predict(&c, &it, 1e9, 0, &ns, NULL, &e), &e);
  CHECK_EQ_INT(ns, 40 * (1000 + 7 * 4 + 400) + 500);
  it = (sim_val_iter){SIM_VAL_MIXED, 2, 50, 9, 0};
  REQUIRE_OK(sim_val_predict(&c, &it, 1e9, 0, &ns, NULL, &e), &e);
  CHECK_EQ_INT(ns, 40 * (1000 + 10 * 50 + 7 * 2 + (50 + 2 * 10)) + 500);
  /* pre-loading 1024 history tokens: 20480 bytes per token and layer over 20.97152 GB/s is
   * exactly 1 ms per layer; the prefill of 10 new tokens costs 1000 + 100 + 1034 ns a layer */
  double bw = 1024.0 * 20480 * 1000;
  int64_t layer = 1000 + 10 * 10 + (1024 + 10);
  it = (sim_val_iter){SIM_VAL_RESIDENT, 1, 10, 1024, 0};
  REQUIRE_OK(sim_val_predict(&c, &it, bw, 0, &ns, NULL, &e), &e);
  CHECK_EQ_INT(ns, 40 * layer + 500);
  it = (sim_val_iter){SIM_VAL_SYNC, 1, 10, 1024, 0};
  REQUIRE_OK(sim_val_predict(&c, &it, bw, 0, &ns, NULL, &e), &e);
  CHECK_EQ_INT(ns, 40000000 + 40 * layer + 500);
  /* load-bound: the last layer starts when its KV arrives, (40 - r) ms after the start */
  for (int64_t r = 0; r <= 15; r += 5) {
    it = (sim_val_iter){SIM_VAL_PRELOAD, 1, 10, 1024, r};
    REQUIRE_OK(sim_val_predict(&c, &it, bw, 0, &ns, NULL, &e), &e);
    CHECK_EQ_INT(ns, (40 - r) * 1000000 + layer + 500);
  }
  /* with 5 us of latency per transfer */
  it = (sim_val_iter){SIM_VAL_PRELOAD, 1, 10, 1024, 0};
  REQUIRE_OK(sim_val_predict(&c, &it, bw, 5000, &ns, NULL, &e), &e);
  CHECK_EQ_INT(ns, 40 * 1005000 + layer + 500);
  /* compute-bound (2 ms a layer): only the first layer waits for its load */
  sim_cost_init_linear(&c, &m, 2000000, 0, 0, 0, 500);
  REQUIRE_OK(sim_val_predict(&c, &it, bw, 0, &ns, NULL, &e), &e);
  CHECK_EQ_INT(ns, 1000000 + 40 * 2000000 + 500);
  it.read_buffer = 1; /* the first layer resident: no wait at all */
  REQUIRE_OK(sim_val_predict(&c, &it, bw, 0, &ns, NULL, &e), &e);
  CHECK_EQ_INT(ns, 40 * 2000000 + 500);
  /* what the grid does not define */
  it = (sim_val_iter){SIM_VAL_DECODE, 0, 1, 10, 0};
  CHECK_EQ_INT(sim_val_predict(&c, &it, bw, 0, &ns, NULL, &e), KV_EINVAL);
  sim_cost_free(&c);
  /* an eager (host-bound) measured model: the host launches a layer in 50 us, the GPU needs
   * g < 50 us, the copies 10 us a layer; the launches set the pace, so pre-loading at any read
   * buffer and even load-then-compute end when the last launch does: 40 x 50 us + the head
   * (the engine's serial sync would add the 400 us of copies) */
  const char *dir = write_profile("prof-recur", 0);
  sim_prof_opts o = {NULL, "hf_decode", 0, 0, NULL, NULL};
  REQUIRE_OK(sim_cost_init_measured(&c, &m, &hw, 1, dir, &o, &e), &e);
  int64_t h1 = 10, n1 = 10;
  sim_iter_work w1 = {1, &h1, &n1, 0, 0};
  double g, gh;
  sim_prof_cost_gpu(c.measured, &w1, &g, &gh, NULL);
  REQUIRE(g + 10 < 50 && gh < 100);
  bw = 10.0 * m.kv_bytes_per_token_layer / 10e-6; /* 10 tokens of history in 10 us */
  const sim_val_kind kinds[3] = {SIM_VAL_RESIDENT, SIM_VAL_PRELOAD, SIM_VAL_SYNC};
  for (int k = 0; k < 3; k++) {
    it = (sim_val_iter){kinds[k], 1, 10, 10, 0};
    REQUIRE_OK(sim_val_predict(&c, &it, bw, 0, &ns, NULL, &e), &e);
    CHECK_NEAR(ns, 40 * 50000 + 100000, 1, 0);
  }
  sim_cost_free(&c);
  /* the same GPU work in graph mode (no host path): copies and compute in series for sync */
  o.host_path = NULL;
  REQUIRE_OK(sim_cost_init_measured(&c, &m, &hw, 1, dir, &o, &e), &e);
  it = (sim_val_iter){SIM_VAL_SYNC, 1, 10, 10, 0};
  REQUIRE_OK(sim_val_predict(&c, &it, bw, 0, &ns, NULL, &e), &e);
  CHECK_NEAR(ns, 40 * 10000 + 40 * g * 1e3 + gh * 1e3, 2, 0);
  sim_cost_free(&c);
  sim_cost_init_linear(&c, &m, 1000, 10, 7, 1, 500);
  it = (sim_val_iter){SIM_VAL_DECODE, 0, 1, 10, 0};
  CHECK_EQ_INT(sim_val_predict(&c, &it, bw, 0, &ns, NULL, &e), KV_EINVAL);
  it = (sim_val_iter){SIM_VAL_PRELOAD, 1, 10, 1024, 0};
  CHECK_EQ_INT(sim_val_predict(&c, &it, 0, 0, &ns, NULL, &e), KV_EINVAL);
  CHECK_EQ_INT(sim_val_kind_find("sync"), SIM_VAL_SYNC);
  CHECK_EQ_INT(sim_val_kind_find("bogus"), -1);
}

static int run_tool(const char *args, char *out, size_t cap) {
  const char *b = getenv("KVLAB_BUILD_DIR");
  char cmd[8192];
  snprintf(cmd, sizeof cmd, "%s/bin/kvsim-predict %s 2>&1", b ? b : "build", args);
  FILE *p = popen(cmd, "r");
  if (!p) return -1;
  size_t n = fread(out, 1, cap - 1, p);
  out[n] = '\0';
  int st = pclose(p);
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* kvsim-predict on a small grid: each row equals the library's prediction with the options
 * the tool documents (stand-ins named when the profile lacks them); errors and usage. */
static void test_predict_tool(void) {
  static char out[65536];
  const char *dir = write_profile("prof-tool", 0);
  const char *grid = test_tmp_path("prof-tool-grid.csv");
  const char *res = test_tmp_path("prof-tool-validation.csv");
  FILE *g = fopen(grid, "w");
  REQUIRE(g != NULL);
  fprintf(g, "# device: Test GPU\n"
             "model,kind,impl,mode,batch,tokens,context,read_buffer,measured_us,note\n"
             "llama-2-13b,prefill,hf,eager,1,256,0,,1000,x\n"
             "llama-2-13b,decode,hf,graph,4,1,1023,,500,x\n"
             "llama-2-13b,mixed,manual,eager,4,256,1023,,1500,x\n"
             "llama-2-13b,preload,manual,eager,1,100,1024,5,20000,x\n");
  fclose(g);
  char args[8192];
  snprintf(args, sizeof args, "--grid %s --profile %s --hardware h100 -o %s", grid, dir, res);
  REQUIRE_EQ_INT(run_tool(args, out, sizeof out), 0);
  sim_csv r;
  kv_error e = {0};
  REQUIRE_OK(sim_csv_open(&r, res, &e), &e);
  int cp, cr, co, cx;
  REQUIRE_OK(sim_csv_col(&r, "predicted_us", &cp, &e), &e);
  REQUIRE_OK(sim_csv_col(&r, "predicted_roofline_us", &cr, &e), &e);
  REQUIRE_OK(sim_csv_col(&r, "options", &co, &e), &e);
  REQUIRE_OK(sim_csv_col(&r, "out_of_range", &cx, &e), &e);
  sim_model m;
  sim_hw hw;
  load_13b(&m, &hw);
  const sim_val_iter its[4] = {{SIM_VAL_PREFILL, 1, 256, 0, 0}, {SIM_VAL_DECODE, 4, 1, 1023, 0},
                               {SIM_VAL_MIXED, 4, 256, 1023, 0},
                               {SIM_VAL_PRELOAD, 1, 100, 1024, 5}};
  /* hf_prefill is not in the fixture's host.csv, sdpa_masked not among its sources */
  const sim_prof_opts opts[4] = {{"sdpa", "none", 0, 0, NULL, NULL}, {"sdpa", "none", 0, 0, NULL, NULL},
                                 {"sdpa", "manual", 0, 0, NULL, NULL}, {"sdpa", "manual", 0, 0, NULL, NULL}};
  const char *expect_opts[4] = {"sdpa+hf_prefill;host hf_prefill absent: none",
                                "sdpa_masked+none;sdpa_masked absent: sdpa", "sdpa+manual",
                                "sdpa+manual"};
  int i = 0;
  while (sim_csv_next(&r, &e) == 1 && i < 4) {
    sim_cost c, rf;
    REQUIRE_OK(sim_cost_init_measured(&c, &m, &hw, 1, dir, &opts[i], &e), &e);
    sim_cost_init_roofline(&rf, &m, &hw, 1, 0.6, 0.8);
    int64_t pm, pr;
    REQUIRE_OK(sim_val_predict(&c, &its[i], hw.pcie_h2d_bw, hw.pcie_latency_ns, &pm, NULL, &e),
               &e);
    REQUIRE_OK(sim_val_predict(&rf, &its[i], hw.pcie_h2d_bw, hw.pcie_latency_ns, &pr, NULL, &e),
               &e);
    double vp, vr;
    REQUIRE_OK(sim_csv_f64(&r, cp, 0, 1e15, &vp, &e), &e);
    REQUIRE_OK(sim_csv_f64(&r, cr, 0, 1e15, &vr, &e), &e);
    CHECK_NEAR(vp, (double)pm / 1e3, 0, 1e-5);
    CHECK_NEAR(vr, (double)pr / 1e3, 0, 1e-5);
    CHECK(strcmp(sim_csv_str(&r, co), expect_opts[i]) == 0);
    if (strcmp(sim_csv_str(&r, co), expect_opts[i]) != 0) {
      printf("  row %d options '%s'\n", i, sim_csv_str(&r, co));
    }
    sim_cost_free(&c);
    i++;
  }
  CHECK_EQ_INT(i, 4);
  sim_csv_close(&r);
  /* the provenance lines travel with the predictions */
  FILE *f = fopen(res, "r");
  REQUIRE(f != NULL);
  size_t n = fread(out, 1, sizeof out - 1, f);
  out[n] = '\0';
  fclose(f);
  CHECK_STR_CONTAINS(out, "# grid: device: Test GPU");
  CHECK_STR_CONTAINS(out, "# cost llama-2-13b|roofline|: roofline (assumed");
  /* --ops: the graph row (no host floor) is its layers' operators x 40 + the head's */
  const char *opsf = test_tmp_path("prof-tool-ops.csv");
  snprintf(args, sizeof args, "--grid %s --profile %s --hardware h100 -o %s --ops %s", grid, dir,
           res, opsf);
  REQUIRE_EQ_INT(run_tool(args, out, sizeof out), 0);
  REQUIRE_OK(sim_csv_open(&r, opsf, &e), &e);
  int cpu, clay, cq, chead, cattn;
  REQUIRE_OK(sim_csv_col(&r, "predicted_us", &cpu, &e), &e);
  REQUIRE_OK(sim_csv_col(&r, "layers", &clay, &e), &e);
  REQUIRE_OK(sim_csv_col(&r, "layer_q", &cq, &e), &e);
  REQUIRE_OK(sim_csv_col(&r, "layer_attn_decode", &cattn, &e), &e);
  REQUIRE_OK(sim_csv_col(&r, "head_lm_head", &chead, &e), &e);
  int rows = 0;
  while (sim_csv_next(&r, &e) == 1) {
    if (rows++ != 1) continue;
    double sum_l = 0, sum_h = 0, v, pu, L;
    for (int col = cq; col < chead; col++) {
      REQUIRE_OK(sim_csv_f64(&r, col, 0, 1e15, &v, &e), &e);
      sum_l += v;
    }
    for (int col = chead; col < chead + 3; col++) {
      REQUIRE_OK(sim_csv_f64(&r, col, 0, 1e15, &v, &e), &e);
      sum_h += v;
    }
    REQUIRE_OK(sim_csv_f64(&r, cpu, 0, 1e15, &pu, &e), &e);
    REQUIRE_OK(sim_csv_f64(&r, clay, 1, 1e3, &L, &e), &e);
    CHECK_NEAR(L * sum_l + sum_h, pu, 0, 1e-4);
    REQUIRE_OK(sim_csv_f64(&r, cattn, 0, 1e15, &v, &e), &e);
    CHECK_NEAR(v, f_decode(4, 1024), 0, 1e-4);
  }
  CHECK_EQ_INT(rows, 4);
  sim_csv_close(&r);
  /* a row the tool cannot read names its line; usage errors exit 2 */
  g = fopen(grid, "a");
  fprintf(g, "llama-2-13b,bogus,hf,eager,1,1,1,,1,x\n");
  fclose(g);
  CHECK_EQ_INT(run_tool(args, out, sizeof out), 1);
  CHECK_STR_CONTAINS(out, "prof-tool-grid.csv:7: kind 'bogus'");
  CHECK_EQ_INT(run_tool("--grid x.csv", out, sizeof out), 2);
  CHECK_STR_CONTAINS(out, "--grid, --profile and --hardware are required");
  /* --power-state: sustain.csv scales the prefill row by its ratio unless "short" */
  put(dir, "sustain.csv", "model,op,tokens,ratio\nllama-2-13b,layer,16,1.5\n");
  const char *grid2 = test_tmp_path("prof-tool-grid2.csv");
  g = fopen(grid2, "w");
  REQUIRE(g != NULL);
  fprintf(g, "model,kind,impl,mode,batch,tokens,context,read_buffer,measured_us,note\n"
             "llama-2-13b,prefill,hf,graph,1,256,0,,1000,x\n");
  fclose(g);
  double pv[2];
  for (int k = 0; k < 2; k++) {
    snprintf(args, sizeof args, "--grid %s --profile %s --hardware h100 -o %s%s", grid2, dir, res,
             k ? " --power-state short" : "");
    REQUIRE_EQ_INT(run_tool(args, out, sizeof out), 0);
    REQUIRE_OK(sim_csv_open(&r, res, &e), &e);
    REQUIRE_OK(sim_csv_col(&r, "predicted_us", &cp, &e), &e);
    REQUIRE(sim_csv_next(&r, &e) == 1);
    REQUIRE_OK(sim_csv_f64(&r, cp, 0, 1e15, &pv[k], &e), &e);
    sim_csv_close(&r);
  }
  CHECK(pv[0] > 1.4 * pv[1] && pv[0] < 1.5 * pv[1]); /* the layers x 1.5, the head not */
  CHECK_EQ_INT(run_tool("--grid x.csv --profile y --hardware h100 --power-state hot", out,
                        sizeof out), 2);
  CHECK_STR_CONTAINS(out, "--power-state hot: sustained or short is expected");
  CHECK_EQ_INT(run_tool("--grid x.csv --profile y --hardware h100 --launch-gaps some", out,
                        sizeof out), 2);
  CHECK_STR_CONTAINS(out, "--launch-gaps some: measured or none is expected");
}

TEST_LIST = {TEST(test_curve_interpolation), TEST(test_table_interpolation),
             TEST(test_host_derived), TEST(test_malformed), TEST(test_measured_by_hand), TEST(test_sustain),
             TEST(test_launch_gap),
             TEST(test_measured_options),
             TEST(test_measured_config), TEST(test_validate_recurrence),
             TEST(test_predict_tool), {0}};
TEST_MAIN

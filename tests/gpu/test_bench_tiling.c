/* test_bench_tiling.c — the benchmark's recorded data (kvc_fill_tiled: the recording tiled to the
 * benchmark shape) keeps the recording's attention, checked on the CPU with the reference
 * (kernels/attn.h) on traces/data/qkv_sample.h5:
 *   1. widening head_dim (every dimension repeated, q scaled by sqrt(rec_dim / head_dim)) and the
 *      KV heads (head h reads recorded head h % rec_kv_heads) preserves every score, so PSA reads
 *      the same blocks per KV head as on the recording (up to stop decisions within rounding);
 *   2. lengthening the context 4x (kvc_tile_token) keeps PSA's budget as a fraction of the
 *      context within a factor 1.5 of the recording's (mean over KV heads and queries), for
 *      epsilon 0.9 and 0.95: the budget distribution the GPU benchmark times is the recorded one,
 *      not a degenerate one (the synthetic generator's sink-dominated data read ~1 block per pair).
 * The tiling here is written against the same kvc_math.h function the GPU kernel uses; the GPU
 * kernel's copy of the index arithmetic is checked by test_gpu_attn (kvc_fill_tiled case).
 * Skips when the sample is absent. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attn.h"
#include "kvc_math.h"
#include "qkv.h"
#include "test.h"

/* Host copy of kvc_fill_tiled's mapping for one request: K, V [len, Hkv, D], q [Hq, D]. */
static void tile(const qkv_layer *L, int64_t qi, const attn_shape *s, int64_t len, float *K,
                 float *V, float *q) {
  const int rH = L->n_kv_heads, rD = L->head_dim, rHq = L->n_heads, rG = rHq / rH;
  const int G = s->n_heads / s->n_kv_heads;
  const int64_t pos = L->positions[qi];
  for (int64_t t = 0; t < len; t++) {
    const int64_t src_t = kvc_tile_token(t, len, pos);
    for (int h = 0; h < s->n_kv_heads; h++) {
      for (int d = 0; d < s->head_dim; d++) {
        const size_t src = ((size_t)src_t * rH + h % rH) * rD + d % rD;
        K[((size_t)t * s->n_kv_heads + h) * s->head_dim + d] = L->K[src];
        V[((size_t)t * s->n_kv_heads + h) * s->head_dim + d] = L->V[src];
      }
    }
  }
  const float scale = (float)sqrt((double)rD / s->head_dim);
  for (int hq = 0; hq < s->n_heads; hq++) {
    const int h = hq / G, g = hq % G, src_head = (h % rH) * rG + g % rG;
    for (int d = 0; d < s->head_dim; d++) {
      q[(size_t)hq * s->head_dim + d] = L->Q[((size_t)qi * rHq + src_head) * rD + d % rD] * scale;
    }
  }
}

/* PSA on one request: fraction of blocks read per KV head (mean over heads). */
static double psa_fraction(const attn_shape *s, const attn_method *m, const float *q,
                           const float *K, const float *V, int64_t n, int64_t *blocks,
                           kv_error *err) {
  attn_blockmeta meta;
  attn_result res;
  double frac = NAN;
  if (attn_blockmeta_init(&meta, m->block_size, s->n_kv_heads, s->head_dim, n, err)) return NAN;
  if (!attn_blockmeta_build(&meta, K, n, err) && !attn_result_alloc(&res, s, meta.n_blocks, err)) {
    if (!attn_decode(s, m, q, K, V, n, &meta, NULL, &res, err)) {
      frac = 0;
      for (int h = 0; h < s->n_kv_heads; h++) {
        frac += (double)res.blocks_read[h] / (double)meta.n_blocks;
        if (blocks) blocks[h] = res.blocks_read[h];
      }
      frac /= s->n_kv_heads;
    }
    attn_result_free(&res);
  }
  attn_blockmeta_free(&meta);
  return frac;
}

static void test_tiling_keeps_recorded_budgets(void) {
  char path[4096];
  snprintf(path, sizeof path, "%s/traces/data/qkv_sample.h5", test_source_dir());
  FILE *f = fopen(path, "rb");
  if (!f) TEST_SKIP("traces/data/qkv_sample.h5 absent");
  fclose(f);
  kv_error err = {0};
  qkv_file *qf;
  REQUIRE_OK(qkv_open(path, &qf, &err), &err);
  const qkv_model *md = qkv_file_model(qf);
  const qkv_seq_info *si = qkv_file_seq(qf, 0);
  const attn_shape rs = {md->n_heads, md->n_kv_heads, md->head_dim};
  /* The benchmark widens heads and dims (2x here, 2x and 4x KV heads on the GPU). */
  const attn_shape ws = {md->n_heads * 2, md->n_kv_heads * 2, md->head_dim * 2};
  int same = 0, total = 0, cases = 0;
  for (int li = 0; li < si->n_layers && li < 2; li++) {
    qkv_layer L;
    REQUIRE_OK(qkv_read_layer(qf, 0, si->layers[li], 0, &L, &err), &err);
    for (int e = 0; e < 2; e++) {
      attn_method m;
      attn_method_defaults(&m, ATTN_PSA);
      m.epsilon = e ? 0.95 : 0.9;
      double f_rec = 0, f_tiled = 0;
      int n = 0;
      for (int64_t qi = L.n_positions - 1; qi >= 0 && n < 4; qi -= L.n_positions / 4, n++) {
        const int64_t len = L.positions[qi] + 1;
        /* 1. widened, same length: the same blocks per KV head */
        float *K = malloc((size_t)4 * len * ws.n_kv_heads * ws.head_dim * sizeof(float));
        float *V = malloc((size_t)4 * len * ws.n_kv_heads * ws.head_dim * sizeof(float));
        float *q = malloc((size_t)ws.n_heads * ws.head_dim * sizeof(float));
        REQUIRE(K && V && q);
        int64_t b_rec[64], b_wide[64];
        const double fr = psa_fraction(&rs, &m, L.Q + (size_t)qi * rs.n_heads * rs.head_dim, L.K,
                                       L.V, len, b_rec, &err);
        tile(&L, qi, &ws, len, K, V, q);
        const double fw = psa_fraction(&ws, &m, q, K, V, len, b_wide, &err);
        REQUIRE(!isnan(fr) && !isnan(fw));
        for (int h = 0; h < ws.n_kv_heads; h++) {
          same += b_wide[h] == b_rec[h % rs.n_kv_heads];
          total++;
        }
        /* 2. four times the context */
        tile(&L, qi, &ws, 4 * len, K, V, q);
        const double f4 = psa_fraction(&ws, &m, q, K, V, 4 * len, NULL, &err);
        REQUIRE(!isnan(f4));
        f_rec += fr;
        f_tiled += f4;
        free(K), free(V), free(q);
        cases++;
      }
      f_rec /= n;
      f_tiled /= n;
      printf("  layer %d eps %.2f: recorded reads %.3f of the blocks, tiled 4x %.3f\n", li,
             m.epsilon, f_rec, f_tiled);
      CHECK(f_tiled <= 1.5 * f_rec && f_tiled >= f_rec / 1.5);
    }
    qkv_layer_free(&L);
  }
  qkv_close(qf);
  printf("  widened: %d of %d KV heads read the recorded block count (%d cases)\n", same, total, cases);
  CHECK(same * 20 >= total * 19); /* score ties / stops within rounding may move a few */
}

static void test_tile_token_mapping(void) {
  /* sink once, the last token is the query's own, the recent window in order before it */
  CHECK_EQ_INT(kvc_tile_token(0, 100, 9), 0);
  CHECK_EQ_INT(kvc_tile_token(99, 100, 9), 9);
  CHECK_EQ_INT(kvc_tile_token(98, 100, 9), 8);
  CHECK_EQ_INT(kvc_tile_token(91, 100, 9), 1);
  CHECK_EQ_INT(kvc_tile_token(90, 100, 9), 9);
  for (int64_t t = 1; t < 1000; t++) {
    const int64_t s = kvc_tile_token(t, 1000, 37);
    CHECK(s >= 1 && s <= 37);
  }
  for (int64_t t = 0; t < 38; t++) CHECK_EQ_INT(kvc_tile_token(t, 38, 37), t); /* identity */
}

TEST_LIST = {
    TEST(test_tile_token_mapping),
    TEST(test_tiling_keeps_recorded_budgets),
    {0}};
TEST_MAIN

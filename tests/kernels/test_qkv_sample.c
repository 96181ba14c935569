/* The committed recording (traces/data/qkv_sample.h5, a CPU-trained stand-in model) through the C
 * reader, and properties real attention has that synthetic data need not: the first layer is far
 * denser than the deeper ones, and within a deep layer some heads need tens of tokens for 95% of
 * the mass while others need hundreds (the spread PSA's adaptive budget exploits). Bounds are
 * deliberately loose: they assert structure, not the numbers of one training run. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "attn.h"
#include "qkv.h"
#include "test.h"

static const char *sample_path(void) {
  static char p[4096];
  snprintf(p, sizeof p, "%s/traces/data/qkv_sample.h5", test_source_dir());
  FILE *f = fopen(p, "rb");
  if (!f) return NULL;
  fclose(f);
  return p;
}

static void test_sample_loads(void) {
  const char *p = sample_path();
  if (!p) TEST_SKIP("traces/data/qkv_sample.h5 is absent");
  kv_error e = {0};
  CHECK_OK(qkv_validate(p, &e), &e);
  qkv_file *f;
  REQUIRE_OK(qkv_open(p, &f, &e), &e);
  const qkv_model *m = qkv_file_model(f);
  CHECK(m->k_post_rope == 1);
  CHECK(m->n_heads % m->n_kv_heads == 0 && m->n_heads / m->n_kv_heads >= 4); /* GQA group >= 4 */
  CHECK(m->head_dim >= 64);
  CHECK(strstr(m->name, "stand-in") != NULL); /* labelled as what it is */
  REQUIRE(qkv_file_n_seqs(f) >= 2);
  int prose = 0, code = 0;
  for (int s = 0; s < qkv_file_n_seqs(f); s++) {
    const qkv_seq_info *si = qkv_file_seq(f, s);
    prose |= strcmp(si->text_kind, "prose") == 0;
    code |= strcmp(si->text_kind, "code") == 0;
    CHECK(si->n_tokens >= 2048);
    CHECK(si->n_layers >= 2 && si->layers[0] == 0); /* the first layer and deeper ones */
  }
  CHECK(prose && code);
  qkv_close(f);
}

static void test_sample_has_real_attention_structure(void) {
  const char *p = sample_path();
  if (!p) TEST_SKIP("traces/data/qkv_sample.h5 is absent");
  kv_error e = {0};
  qkv_file *f;
  REQUIRE_OK(qkv_open(p, &f, &e), &e);
  const qkv_model *m = qkv_file_model(f);
  attn_shape s = {m->n_heads, m->n_kv_heads, m->head_dim};
  attn_method dense;
  attn_method_defaults(&dense, ATTN_DENSE);
  const qkv_seq_info *si = qkv_file_seq(f, 0);
  double frac95[64];
  double head_min = 1e30, head_max = 0;
  int nl = si->n_layers < 64 ? si->n_layers : 64;
  for (int k = 0; k < nl; k++) {
    qkv_layer l;
    REQUIRE_OK(qkv_read_layer(f, 0, si->layers[k], 0, &l, &e), &e);
    int64_t np = l.n_positions < 8 ? l.n_positions : 8;
    attn_head_metrics *mh = calloc((size_t)np * s.n_heads, sizeof *mh);
    int64_t *by = calloc((size_t)np * s.n_kv_heads, sizeof *by);
    int64_t *need = calloc((size_t)np * s.n_heads * 3, sizeof *need);
    REQUIRE_OK(attn_eval_layer(&s, &dense, 1, l.Q, l.positions, np, l.K, l.V, 2, 0, mh, by, NULL,
                               need, &e), &e);
    double sum = 0;
    for (int h = 0; h < s.n_heads; h++) {
      double hs = 0;
      for (int64_t q = 0; q < np; q++) {
        double fr = (double)need[(q * s.n_heads + h) * 3 + 1] / (double)(l.positions[q] + 1);
        hs += fr;
        sum += fr;
      }
      hs /= (double)np;
      if (k > 0) {
        head_min = hs < head_min ? hs : head_min;
        head_max = hs > head_max ? hs : head_max;
      }
    }
    frac95[k] = sum / (double)(np * s.n_heads);
    printf("layer %d: tokens for 95%% of the mass = %.3f of the context\n", si->layers[k],
           frac95[k]);
    free(mh);
    free(by);
    free(need);
    qkv_layer_free(&l);
  }
  double deep = 0;
  for (int k = 1; k < nl; k++) deep += frac95[k] / (nl - 1);
  /* the first layer attends broadly, the deeper layers sparsely */
  CHECK(frac95[0] > 1.5 * deep);
  CHECK(deep < 0.5);
  /* and heads differ: the sparsest deep head needs a fraction of the densest one's tokens */
  printf("deep heads: %.4f .. %.4f of the context\n", head_min, head_max);
  CHECK(head_min < 0.5 * head_max);
  qkv_close(f);
}

TEST_LIST = {TEST(test_sample_loads), TEST(test_sample_has_real_attention_structure), {0}};
TEST_MAIN

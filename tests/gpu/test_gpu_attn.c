/* test_gpu_attn.c — every CUDA kernel against the CPU reference (kernels/attn.h), llm.c style:
 * fresh seeded random inputs of many shapes and the recorded Q/K/V sample (or a synthetic file
 * when traces/data/qkv_sample.h5 is absent), outputs poisoned (0xFF bytes = NaN) before each run
 * so unwritten elements fail, tolerances by type, the first mismatches printed.
 *
 * Tolerances. The GPU reads K/V in fp16/bf16; the reference runs on the same values dequantised to
 * fp32 and accumulates in double, the GPU in fp32, so the strict check allows fp32 accumulation
 * error only (|gpu - ref| <= 2e-5 + 1e-3 |ref|). A second check against the reference on the
 * original fp32 inputs bounds the storage type's effect (relative L2 <= 1e-2 fp16, 5e-2 bf16).
 * Sparse methods: top-k and PSA get the reference's metadata (rounded to the pool's type) so both
 * rank from identical inputs; a block set may still differ where two keys tie within fp32/double
 * rounding, or a PSA stop decision sits within 1e-3 of epsilon: such cases are counted and
 * printed, and must stay rare; any other difference fails. PSA pipelined and host-synchronised
 * runs share the kernels and the stop test (they differ in how iterations are grouped into work
 * items, i.e. in fp32 rounding of the per-iteration states only): they must read exactly the same
 * blocks and agree on P_acc to 1e-6.
 *
 * Dense runs every execution variant (kvc_tune_set); the tensor-core core (KVC_TUNE_DENSE_CORE = 1,
 * and KVC_TUNE_TOPK_CORE = 1 for top-k's attention) under the same tolerances, in the
 * test_dense_mma_* and test_topk_mma_random cases at the end of the list (its Q and P are split
 * into three 16-bit parts, so its scores and weights carry ~2^-24 relative error like fp32).
 * v5: the same core with 1-D bulk-copy staging (KVC_TUNE_DENSE_CORE = 2, sm_90) under the same
 * tolerances in test_dense_bulk_shapes / test_dense_bulk_lse, then (v6) with register staging
 * (KVC_TUNE_DENSE_CORE = 3) in test_dense_regs_shapes / test_dense_regs_lse, last in the list (the pool's unused
 * slots are NaN-poisoned: a copied invalid row would show up as NaN).
 *
 * Skips (exit 77) when no CUDA device is present. KVLAB_GPU_TEST_SMALL=1 runs fewer, shorter
 * cases (memcheck, synccheck); KVLAB_GPU_TEST_TINY=1 a handful of tiny cases per test (racecheck,
 * which instruments every shared-memory access and is orders of magnitude slower).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attn.h"
#include "attn_cuda.h"
#include "kv_half.h"
#include "kv_rng.h"
#include "kvc_math.h"
#ifndef KVLAB_NO_HDF5
#include "qkv.h"
#endif
#include "test.h"

static kvc_ctx *g_ctx;
static int g_small, g_tiny;

static int gpu_ready(void) {
  if (g_ctx) return 1;
  if (kvc_device_count() < 1) return 0;
  kv_error err = {0};
  if (kvc_ctx_init(&g_ctx, 0, &err)) {
    fprintf(stderr, "  CUDA context: %s\n", err.msg);
    return 0;
  }
  g_tiny = getenv("KVLAB_GPU_TEST_TINY") != NULL;
  g_small = g_tiny || getenv("KVLAB_GPU_TEST_SMALL") != NULL;
  kvc_device_info di;
  kvc_ctx_info(g_ctx, &di);
  printf("  device: %s (sm_%d%d, %d SMs)\n", di.name, di.cc_major, di.cc_minor, di.n_sm);
  return 1;
}
#define NEED_GPU()                                        \
  do {                                                    \
    if (!gpu_ready()) TEST_SKIP("no CUDA device present"); \
  } while (0)

static float round_to(kvc_dtype t, float x) {
  return t == KVC_DTYPE_F16 ? kv_f16_to_f32(kv_f32_to_f16(x)) : kv_bf16_to_f32(kv_f32_to_bf16(x));
}

/* Compares n values; prints the first 10 mismatches (with a label); returns mismatches. NaN in
 * the GPU output (unwritten, poisoned) always mismatches. */
static int compare(const char *what, const float *gpu, const float *ref, int64_t n, double atol,
                   double rtol) {
  int bad = 0;
  for (int64_t i = 0; i < n; i++) {
    double a = gpu[i], b = ref[i];
    if (!(fabs(a - b) <= atol + rtol * fabs(b))) {
      if (bad < 10) printf("  MISMATCH %s [%lld]: gpu %.8g ref %.8g\n", what, (long long)i, a, b);
      bad++;
    }
  }
  if (bad) printf("  %s: %d of %lld mismatches\n", what, bad, (long long)n);
  return bad;
}

static double rel_l2(const float *a, const float *b, int64_t n) {
  double num = 0, den = 0;
  for (int64_t i = 0; i < n; i++) {
    num += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
    den += (double)b[i] * b[i];
  }
  return sqrt(num / (den > 0 ? den : 1));
}

/* ---- a batch of requests on host and device ---------------------------------------------------- */
typedef struct {
  attn_shape s;
  kvc_dtype dtype;
  int bs, n_req, max_blocks;
  int32_t *len;        /* host [n_req] */
  float **K, **V;      /* host per request [len, Hkv, D], values representable in dtype */
  float **K32, **V32;  /* the original fp32 values */
  float *q;            /* host [n_req, Hq, D] */
  int32_t *bt;         /* host [n_req, max_blocks] */
  kvc_kv kv;
  kvc_batch b;
  void *d_bt, *d_len, *d_q, *d_out;
} batch_t;

static void batch_free(batch_t *B) {
  for (int r = 0; r < B->n_req; r++) {
    free(B->K[r]), free(B->V[r]), free(B->K32[r]), free(B->V32[r]);
  }
  free(B->K), free(B->V), free(B->K32), free(B->V32), free(B->q), free(B->bt), free(B->len);
  kvc_kv_free(g_ctx, &B->kv);
  kvc_free(g_ctx, B->d_bt), kvc_free(g_ctx, B->d_len), kvc_free(g_ctx, B->d_q), kvc_free(g_ctx, B->d_out);
  memset(B, 0, sizeof *B);
}

/* Random inputs with heavy hitters (a few keys aligned with the queries, a sink at token 0) so
 * sparse methods have something to find. Pages are shuffled across requests. */
static int batch_make(batch_t *B, attn_shape s, kvc_dtype dt, int bs, int n_req, const int *lens,
                      uint64_t seed, int extra_tokens, kv_error *err) {
  memset(B, 0, sizeof *B);
  kv_rng r;
  kv_rng_seed(&r, seed);
  B->s = s;
  B->dtype = dt;
  B->bs = bs;
  B->n_req = n_req;
  const int Hkv = s.n_kv_heads, D = s.head_dim;
  B->len = malloc((size_t)n_req * sizeof *B->len);
  B->K = calloc((size_t)n_req, sizeof *B->K), B->V = calloc((size_t)n_req, sizeof *B->V);
  B->K32 = calloc((size_t)n_req, sizeof *B->K32), B->V32 = calloc((size_t)n_req, sizeof *B->V32);
  int64_t pages = 0;
  for (int i = 0; i < n_req; i++) {
    B->len[i] = lens[i];
    int64_t nb = kvc_n_blocks(lens[i] + extra_tokens, bs);
    if (nb > B->max_blocks) B->max_blocks = (int)nb;
    pages += nb;
  }
  B->q = malloc((size_t)n_req * s.n_heads * D * sizeof *B->q);
  B->bt = malloc((size_t)n_req * B->max_blocks * sizeof *B->bt);
  int32_t *perm = malloc((size_t)pages * sizeof *perm);
  for (int64_t i = 0; i < pages; i++) perm[i] = (int32_t)i;
  for (int64_t i = pages - 1; i > 0; i--) {
    int64_t j = (int64_t)kv_rng_below(&r, (uint64_t)i + 1);
    int32_t t = perm[i];
    perm[i] = perm[j], perm[j] = t;
  }
  int64_t next = 0;
  for (int i = 0; i < n_req; i++) {
    int64_t nb = kvc_n_blocks(lens[i] + extra_tokens, bs);
    for (int b = 0; b < B->max_blocks; b++) B->bt[(size_t)i * B->max_blocks + b] = b < nb ? perm[next + b] : 0;
    next += nb;
  }
  free(perm);
  for (int i = 0; i < n_req; i++) {
    const int64_t n = lens[i] + extra_tokens, e = n * Hkv * D;
    B->K[i] = malloc((size_t)e * sizeof(float)), B->V[i] = malloc((size_t)e * sizeof(float));
    B->K32[i] = malloc((size_t)e * sizeof(float)), B->V32[i] = malloc((size_t)e * sizeof(float));
    for (int64_t j = 0; j < e; j++) {
      B->K32[i][j] = (float)kv_rng_normal(&r);
      B->V32[i][j] = (float)kv_rng_normal(&r);
    }
    for (int64_t t = 0; t < n; t++) {
      double mult = t == 0 ? 4.0 : (kv_rng_uniform(&r) < 0.03 ? 1.0 + 3.0 * kv_rng_uniform(&r) : 0.0);
      for (int h = 0; h < Hkv; h++) {
        for (int d = 0; d < 8; d++) B->K32[i][((size_t)t * Hkv + h) * D + d] += (float)mult;
      }
    }
    for (int64_t j = 0; j < e; j++) {
      B->K[i][j] = round_to(dt, B->K32[i][j]);
      B->V[i][j] = round_to(dt, B->V32[i][j]);
    }
    for (int j = 0; j < s.n_heads * D; j++) {
      B->q[(size_t)i * s.n_heads * D + j] = (float)(kv_rng_normal(&r) * 0.7 + (j % D < 8 ? 0.8 : 0.0));
    }
  }
  int rc = kvc_kv_alloc(g_ctx, &B->kv, dt, Hkv, D, bs, pages, KVC_META_ALL, err);
  if (!rc) rc = kvc_malloc(g_ctx, &B->d_bt, (size_t)n_req * B->max_blocks * 4, err);
  if (!rc) rc = kvc_malloc(g_ctx, &B->d_len, (size_t)n_req * 4, err);
  if (!rc) rc = kvc_malloc(g_ctx, &B->d_q, (size_t)n_req * s.n_heads * D * 4, err);
  if (!rc) rc = kvc_malloc(g_ctx, &B->d_out, (size_t)n_req * s.n_heads * D * 4, err);
  if (!rc) rc = kvc_memset(g_ctx, B->kv.k, 0xff, (size_t)pages * Hkv * bs * D * 2, err); /* poison */
  if (!rc) rc = kvc_memset(g_ctx, B->kv.v, 0xff, (size_t)pages * Hkv * bs * D * 2, err);
  for (int i = 0; i < n_req && !rc; i++) {
    rc = kvc_kv_upload(g_ctx, &B->kv, B->bt + (size_t)i * B->max_blocks, B->K[i], B->V[i], lens[i], err);
  }
  if (!rc) rc = kvc_h2d(g_ctx, B->d_bt, B->bt, (size_t)n_req * B->max_blocks * 4, err);
  if (!rc) rc = kvc_h2d(g_ctx, B->d_len, B->len, (size_t)n_req * 4, err);
  if (!rc) rc = kvc_h2d(g_ctx, B->d_q, B->q, (size_t)n_req * s.n_heads * D * 4, err);
  B->b.n_req = n_req;
  B->b.max_blocks = B->max_blocks;
  B->b.block_table = B->d_bt;
  B->b.seq_len = B->d_len;
  B->b.h_seq_len = B->len;
  B->b.q = B->d_q;
  return rc;
}

/* Reference attention of one request over a block set per KV head (mask [Hkv, nb]), double. */
static void ref_attend_set(const attn_shape *s, const float *q, const float *K, const float *V,
                           int64_t n, int bs, const uint8_t *mask, int64_t nb_stride, float *out) {
  const int D = s->head_dim, Hkv = s->n_kv_heads, G = s->n_heads / Hkv;
  const double scale = 1.0 / sqrt((double)D);
  double *o = malloc((size_t)D * sizeof *o);
  for (int hq = 0; hq < s->n_heads; hq++) {
    const int h = hq / G;
    double m = -INFINITY, l = 0;
    for (int d = 0; d < D; d++) o[d] = 0;
    for (int64_t t = 0; t < n; t++) {
      if (!mask[(size_t)h * nb_stride + t / bs]) continue;
      double sc = 0;
      for (int d = 0; d < D; d++) sc += (double)q[(size_t)hq * D + d] * K[((size_t)t * Hkv + h) * D + d];
      sc *= scale;
      double mn = fmax(m, sc), c = exp(m - mn), p = exp(sc - mn);
      l = l * c + p;
      for (int d = 0; d < D; d++) o[d] = o[d] * c + p * V[((size_t)t * Hkv + h) * D + d];
      m = mn;
    }
    for (int d = 0; d < D; d++) out[(size_t)hq * D + d] = (float)(o[d] / l);
  }
  free(o);
}

/* ---- dense ----------------------------------------------------------------------------------- */
/* One dense run on the GPU against the references ref / ref32 [n_req, Hq, D] (the same inputs
 * in the pool's type, and the original fp32 inputs). */
static int check_dense_one(batch_t *B, const char *label, const float *ref, const float *ref32) {
  kv_error err = {0};
  const int Hq = B->s.n_heads, D = B->s.head_dim;
  const int64_t n_out = (int64_t)B->n_req * Hq * D;
  float *out = malloc((size_t)n_out * sizeof *out);
  int bad = 0;
  if (kvc_memset(g_ctx, B->d_out, 0xff, (size_t)n_out * 4, &err) ||
      kvc_dense(g_ctx, &B->s, &B->kv, &B->b, B->d_out, NULL, &err) ||
      kvc_d2h(g_ctx, out, B->d_out, (size_t)n_out * 4, &err)) {
    printf("  %s: %s\n", label, err.msg);
    bad = 1;
  }
  const double tol_type = B->dtype == KVC_DTYPE_F16 ? 1e-2 : 5e-2;
  for (int r = 0; r < B->n_req && !bad; r++) {
    char what[240];
    snprintf(what, sizeof what, "%s dense req %d (len %d)", label, r, (int)B->len[r]);
    bad += compare(what, out + (size_t)r * Hq * D, ref + (size_t)r * Hq * D, (int64_t)Hq * D, 2e-5, 1e-3);
    double e = rel_l2(out + (size_t)r * Hq * D, ref32 + (size_t)r * Hq * D, (int64_t)Hq * D);
    if (!(e <= tol_type)) {
      printf("  %s: rel L2 vs fp32 inputs %.3g > %.3g\n", what, e, tol_type);
      bad++;
    }
  }
  free(out);
  return bad;
}

/* Which dense cores check_dense runs: 0 the CUDA-core variants (ring depth, fused or separate
 * combine), 1 the tensor-core variants (KVC_TUNE_DENSE_CORE = 1; groups of more than 4 heads run
 * the CUDA-core path under it). The tensor-core checks are separate cases at the end of the list
 * (test_dense_mma_*), so that a fault of that newer core cannot take the other cases with it. */
static int g_mma;

/* Dense under every execution variant of the selected core (kvc_tune_set): each must match the
 * reference (computed once). Leaves the defaults set. */
static int check_dense(batch_t *B, const char *label) {
  /* stages, fused, core; defaults first */
  const int cuda_core[4][3] = {{4, 1, 0}, {4, 0, 0}, {3, 1, 0}, {6, 1, 0}};
  const int tensor_core[3][3] = {{4, 1, 1}, {3, 1, 1}, {3, 0, 1}};
  const int bulk_core[3][3] = {{3, 1, 2}, {4, 1, 2}, {3, 0, 2}}; /* v5: bulk-copy staging */
  /* v6: register staging (2 slots always); v7: the same with the L2::256B load hint (core 4) */
  const int regs_core[3][3] = {{4, 1, 3}, {4, 0, 4}, {4, 0, 3}}; /* tiny (racecheck): the first two */
  const int (*variants)[3] = g_mma == 3   ? regs_core
                             : g_mma == 2 ? bulk_core
                             : g_mma      ? tensor_core
                                          : cuda_core;
  const int nvar = g_tiny ? (g_mma == 3 ? 2 : 1) : g_mma ? 3 : 4;
  const int Hq = B->s.n_heads, D = B->s.head_dim;
  float *ref = malloc((size_t)B->n_req * Hq * D * sizeof *ref);
  float *ref32 = malloc((size_t)B->n_req * Hq * D * sizeof *ref32);
  for (int r = 0; r < B->n_req; r++) {
    attn_dense(&B->s, B->q + (size_t)r * Hq * D, B->K[r], B->V[r], B->len[r],
               ref + (size_t)r * Hq * D, NULL, NULL);
    attn_dense(&B->s, B->q + (size_t)r * Hq * D, B->K32[r], B->V32[r], B->len[r],
               ref32 + (size_t)r * Hq * D, NULL, NULL);
  }
  kv_error err = {0};
  int bad = 0;
  for (int v = 0; v < nvar; v++) {
    if (kvc_tune_set(g_ctx, KVC_TUNE_DENSE_STAGES, variants[v][0], &err) ||
        kvc_tune_set(g_ctx, KVC_TUNE_DENSE_FUSED_COMBINE, variants[v][1], &err) ||
        kvc_tune_set(g_ctx, KVC_TUNE_DENSE_CORE, variants[v][2], &err)) {
      printf("  %s: %s\n", label, err.msg);
      bad++;
      continue;
    }
    char l2[200];
    snprintf(l2, sizeof l2, "%s [%s cores, stages %d, %s combine]", label,
             variants[v][2] == 4   ? "tensor+regs+pf256"
             : variants[v][2] == 3 ? "tensor+regs"
             : variants[v][2] == 2 ? "tensor+bulk"
             : variants[v][2]      ? "tensor"
                                   : "CUDA",
             variants[v][2] >= 3 ? 2 : variants[v][0],
             variants[v][1] ? "fused" : "separate");
    bad += check_dense_one(B, l2, ref, ref32);
  }
  kvc_tune_set(g_ctx, KVC_TUNE_DENSE_STAGES, 4, &err);
  kvc_tune_set(g_ctx, KVC_TUNE_DENSE_FUSED_COMBINE, 1, &err);
  kvc_tune_set(g_ctx, KVC_TUNE_DENSE_CORE, 0, &err);
  free(ref), free(ref32);
  return bad;
}

static void test_dense_shapes(void) {
  NEED_GPU();
  const attn_shape shapes[4] = {{8, 2, 64}, {32, 8, 128}, {8, 8, 64}, {16, 2, 128}};
  kv_rng r;
  kv_rng_seed(&r, 101);
  int cases = 0;
  for (int si = 0; si < 4; si++) {
    for (int dt = 1; dt <= 2; dt++) {
      for (int bsi = 0; bsi < 2; bsi++) {
        const int bs = bsi ? 32 : 16, n_req = 1 + (int)kv_rng_below(&r, g_small ? 2 : 5);
        int lens[8];
        const int fixed[6] = {1, 15, 16, 17, 255, 4000};
        for (int i = 0; i < n_req; i++) {
          lens[i] = kv_rng_uniform(&r) < 0.5 ? fixed[kv_rng_below(&r, 6)] : 1 + (int)kv_rng_below(&r, g_small ? 600 : 5000);
          if (g_small && lens[i] > 600) lens[i] = 600;
        }
        batch_t B;
        kv_error err = {0};
        char label[128];
        snprintf(label, sizeof label, "Hq %d Hkv %d D %d %s bs %d batch %d", shapes[si].n_heads,
                 shapes[si].n_kv_heads, shapes[si].head_dim, kvc_dtype_name((kvc_dtype)dt), bs, n_req);
        if (batch_make(&B, shapes[si], (kvc_dtype)dt, bs, n_req, lens, kv_rng_u64(&r), 0, &err)) {
          TEST_FAIL_AT("%s: %s", label, err.msg);
          batch_free(&B);
          continue;
        }
        int bad = check_dense(&B, label);
        if (bad) TEST_FAIL_AT("%s: %d mismatches", label, bad);
        batch_free(&B);
        cases++;
      }
    }
  }
  printf("  dense: %d cases\n", cases);
}

/* ---- metadata ---------------------------------------------------------------------------------- */
static int check_meta(batch_t *B, const char *label) {
  kv_error err = {0};
  const int Hkv = B->s.n_kv_heads, D = B->s.head_dim;
  const double ulp = B->dtype == KVC_DTYPE_F16 ? 1.0 / 1024 : 1.0 / 128;
  int bad = 0;
  for (int r = 0; r < B->n_req; r++) {
    attn_blockmeta m;
    if (attn_blockmeta_init(&m, B->bs, Hkv, D, B->len[r], &err) ||
        attn_blockmeta_build(&m, B->K[r], B->len[r], &err)) {
      printf("  %s\n", err.msg);
      return 1;
    }
    const size_t ne = (size_t)m.n_blocks * Hkv * D;
    float *g[4];
    for (int a = 0; a < 4; a++) g[a] = malloc(ne * sizeof(float));
    if (kvc_kv_download_meta(g_ctx, &B->kv, B->bt + (size_t)r * B->max_blocks, m.n_blocks, g[0],
                             g[1], g[2], g[3], &err)) {
      printf("  %s\n", err.msg);
      bad++;
    } else {
      char what[200];
      snprintf(what, sizeof what, "%s req %d min", label, r);
      bad += compare(what, g[0], m.kmin, (int64_t)ne, 0, 0);
      snprintf(what, sizeof what, "%s req %d max", label, r);
      bad += compare(what, g[1], m.kmax, (int64_t)ne, 0, 0);
      snprintf(what, sizeof what, "%s req %d mean", label, r);
      bad += compare(what, g[2], m.kmean, (int64_t)ne, 1e-6, 2 * ulp);
      snprintf(what, sizeof what, "%s req %d var", label, r);
      bad += compare(what, g[3], m.kvar, (int64_t)ne, 1e-4, 2 * ulp + 1e-5);
    }
    for (int a = 0; a < 4; a++) free(g[a]);
    attn_blockmeta_free(&m);
  }
  return bad;
}

static void test_meta_build_and_append(void) {
  NEED_GPU();
  kv_rng r;
  kv_rng_seed(&r, 202);
  const attn_shape shapes[2] = {{8, 2, 64}, {32, 8, 128}};
  for (int si = 0; si < 2; si++) {
    for (int dt = 1; dt <= 2; dt++) {
      const int n_req = 3, bs = 16, steps = g_small ? 3 : 20;
      int lens[3] = {1 + (int)kv_rng_below(&r, 300), 16, 33};
      batch_t B;
      kv_error err = {0};
      char label[96];
      snprintf(label, sizeof label, "meta D %d %s", shapes[si].head_dim, kvc_dtype_name((kvc_dtype)dt));
      if (batch_make(&B, shapes[si], (kvc_dtype)dt, bs, n_req, lens, kv_rng_u64(&r), steps, &err) ||
          kvc_meta_build(g_ctx, &B.kv, &B.b, &err) || kvc_sync(g_ctx, &err)) {
        TEST_FAIL_AT("%s: %s", label, err.msg);
        batch_free(&B);
        continue;
      }
      int bad = check_meta(&B, label);
      /* Append `steps` tokens one at a time (the K/V arrays already hold them). */
      const int Hkv = shapes[si].n_kv_heads, D = shapes[si].head_dim;
      void *dk = NULL, *dv = NULL;
      float *hk = malloc((size_t)n_req * Hkv * D * 4), *hv = malloc((size_t)n_req * Hkv * D * 4);
      REQUIRE_OK(kvc_malloc(g_ctx, &dk, (size_t)n_req * Hkv * D * 4, &err), &err);
      REQUIRE_OK(kvc_malloc(g_ctx, &dv, (size_t)n_req * Hkv * D * 4, &err), &err);
      for (int st = 0; st < steps && !bad; st++) {
        for (int i = 0; i < n_req; i++) {
          memcpy(hk + (size_t)i * Hkv * D, B.K[i] + (size_t)B.len[i] * Hkv * D, (size_t)Hkv * D * 4);
          memcpy(hv + (size_t)i * Hkv * D, B.V[i] + (size_t)B.len[i] * Hkv * D, (size_t)Hkv * D * 4);
          B.len[i]++;
        }
        if (kvc_h2d(g_ctx, dk, hk, (size_t)n_req * Hkv * D * 4, &err) ||
            kvc_h2d(g_ctx, dv, hv, (size_t)n_req * Hkv * D * 4, &err) ||
            kvc_h2d(g_ctx, B.d_len, B.len, (size_t)n_req * 4, &err) ||
            kvc_meta_append(g_ctx, &B.kv, &B.b, dk, dv, &err) || kvc_sync(g_ctx, &err)) {
          TEST_FAIL_AT("%s append: %s", label, err.msg);
          bad++;
        }
      }
      if (!bad) bad += check_meta(&B, label);
      if (!bad) bad += check_dense(&B, label); /* the appended K/V are in the pages */
      if (bad) TEST_FAIL_AT("%s: %d mismatches", label, bad);
      kvc_free(g_ctx, dk), kvc_free(g_ctx, dv), free(hk), free(hv);
      batch_free(&B);
    }
  }
}

/* ---- sparse: top-k and PSA --------------------------------------------------------------------- */
/* Rounds the reference metadata to the pool's type (both sides rank from identical values) and
 * uploads it. */
static int share_meta(batch_t *B, attn_blockmeta *metas, kv_error *err) {
  for (int r = 0; r < B->n_req; r++) {
    attn_blockmeta *m = &metas[r];
    int rc = attn_blockmeta_init(m, B->bs, B->s.n_kv_heads, B->s.head_dim, B->len[r], err);
    if (!rc) rc = attn_blockmeta_build(m, B->K[r], B->len[r], err);
    if (rc) return rc;
    const size_t ne = (size_t)m->n_blocks * m->n_kv_heads * m->head_dim;
    for (size_t i = 0; i < ne; i++) {
      m->kmin[i] = round_to(B->dtype, m->kmin[i]);
      m->kmax[i] = round_to(B->dtype, m->kmax[i]);
      m->kmean[i] = round_to(B->dtype, m->kmean[i]);
      m->kvar[i] = round_to(B->dtype, m->kvar[i]);
    }
    rc = kvc_kv_upload_meta(g_ctx, &B->kv, B->bt + (size_t)r * B->max_blocks, m, err);
    if (rc) return rc;
  }
  return 0;
}

typedef struct {
  int pairs, marginal, bad;
} sparse_tally;

/* Runs method m on the GPU (PSA in `mode`) and checks it against attn_decode per request. */
static void check_sparse(batch_t *B, attn_blockmeta *metas, const attn_method *m,
                         const kvc_psa_opts *opts, const char *label, sparse_tally *t,
                         int32_t *blocks_out, float *est_out) {
  kv_error err = {0};
  const int Hq = B->s.n_heads, Hkv = B->s.n_kv_heads, D = B->s.head_dim, G = Hq / Hkv;
  const int pairs = B->n_req * Hkv, mb = B->max_blocks;
  const int64_t n_out = (int64_t)B->n_req * Hq * D;
  void *d_br = NULL, *d_it = NULL, *d_fe = NULL, *d_est = NULL, *d_ord = NULL;
  int32_t *br = malloc((size_t)pairs * 4), *it = malloc((size_t)pairs * 4), *fe = malloc((size_t)pairs * 4);
  int32_t *ord = malloc((size_t)pairs * mb * 4);
  float *est = malloc((size_t)B->n_req * Hq * 4), *out = malloc((size_t)n_out * 4);
  float *ref_set = malloc((size_t)Hq * D * 4);
  int rc = kvc_malloc(g_ctx, &d_br, (size_t)pairs * 4, &err);
  if (!rc) rc = kvc_malloc(g_ctx, &d_it, (size_t)pairs * 4, &err);
  if (!rc) rc = kvc_malloc(g_ctx, &d_fe, (size_t)pairs * 4, &err);
  if (!rc) rc = kvc_malloc(g_ctx, &d_est, (size_t)B->n_req * Hq * 4, &err);
  if (!rc) rc = kvc_malloc(g_ctx, &d_ord, (size_t)pairs * mb * 4, &err);
  if (!rc) rc = kvc_memset(g_ctx, B->d_out, 0xff, (size_t)n_out * 4, &err);
  if (!rc) rc = kvc_memset(g_ctx, d_br, 0xff, (size_t)pairs * 4, &err);
  if (!rc) rc = kvc_memset(g_ctx, d_it, 0xff, (size_t)pairs * 4, &err);
  if (!rc) rc = kvc_memset(g_ctx, d_fe, 0xff, (size_t)pairs * 4, &err);
  if (!rc) rc = kvc_memset(g_ctx, d_est, 0xff, (size_t)B->n_req * Hq * 4, &err);
  if (!rc) rc = kvc_memset(g_ctx, d_ord, 0xff, (size_t)pairs * mb * 4, &err);
  kvc_sparse_out so = {d_br, d_it, d_fe, d_est, d_ord};
  if (!rc) {
    if (m->kind == ATTN_TOPK) {
      rc = kvc_tune_set(g_ctx, KVC_TUNE_TOPK_CORE, g_mma, &err);
      if (!rc) rc = kvc_topk(g_ctx, &B->s, m, &B->kv, &B->b, B->d_out, &so, &err);
      kv_error e0 = {0};
      kvc_tune_set(g_ctx, KVC_TUNE_TOPK_CORE, 0, &e0);
    } else {
      rc = kvc_psa(g_ctx, &B->s, m, &B->kv, &B->b, opts, B->d_out, &so, NULL, &err);
    }
  }
  if (!rc) rc = kvc_d2h(g_ctx, out, B->d_out, (size_t)n_out * 4, &err);
  if (!rc) rc = kvc_d2h(g_ctx, br, d_br, (size_t)pairs * 4, &err);
  if (!rc) rc = kvc_d2h(g_ctx, it, d_it, (size_t)pairs * 4, &err);
  if (!rc) rc = kvc_d2h(g_ctx, fe, d_fe, (size_t)pairs * 4, &err);
  if (!rc) rc = kvc_d2h(g_ctx, est, d_est, (size_t)B->n_req * Hq * 4, &err);
  if (!rc) rc = kvc_d2h(g_ctx, ord, d_ord, (size_t)pairs * mb * 4, &err);
  if (rc) {
    printf("  %s: %s\n", label, err.msg);
    t->bad++;
  }
  for (int r = 0; r < B->n_req && !rc; r++) {
    attn_result res;
    const int64_t nb = metas[r].n_blocks;
    if (attn_result_alloc(&res, &B->s, nb, &err) ||
        attn_decode(&B->s, m, B->q + (size_t)r * Hq * D, B->K[r], B->V[r], B->len[r], &metas[r],
                    NULL, &res, &err)) {
      printf("  %s: reference: %s\n", label, err.msg);
      t->bad++;
      break;
    }
    /* The GPU's block set per KV head (first blocks_read entries of its order). */
    uint8_t *mask = calloc((size_t)Hkv * nb, 1);
    for (int h = 0; h < Hkv; h++) {
      const int pr = r * Hkv + h;
      t->pairs++;
      if (br[pr] < 1 || br[pr] > nb || it[pr] < 1 || (m->kind == ATTN_PSA && fe[pr] < br[pr])) {
        printf("  %s req %d head %d: blocks_read %d iterations %d fetched %d of %lld blocks\n",
               label, r, h, br[pr], it[pr], fe[pr], (long long)nb);
        t->bad++;
        continue;
      }
      int bad_order = 0;
      for (int i = 0; i < br[pr]; i++) {
        const int32_t blk = ord[(size_t)pr * mb + i];
        if (blk < 0 || blk >= nb || mask[(size_t)h * nb + blk]) bad_order = 1; /* a set, in range */
        else mask[(size_t)h * nb + blk] = 1;
      }
      if (bad_order) {
        printf("  %s req %d head %d: order holds an out-of-range or repeated block\n", label, r, h);
        t->bad++;
        continue;
      }
      int same = br[pr] == res.blocks_read[h];
      if (same && it[pr] != res.iterations[h]) { /* PSA iterations (top-k: 1) */
        printf("  %s req %d head %d: gpu %d iterations, reference %d\n", label, r, h, it[pr],
               (int)res.iterations[h]);
        t->bad++;
      }
      if (m->kind == ATTN_TOPK && fe[pr] != br[pr]) {
        printf("  %s req %d head %d: top-k fetched %d != read %d\n", label, r, h, fe[pr], br[pr]);
        t->bad++;
      }
      for (int64_t b = 0; same && b < nb; b++) same = mask[(size_t)h * nb + b] == res.block_read[(size_t)h * nb + b];
      if (!same) {
        /* Allowed only when marginal: a PSA stop within 1e-3 of epsilon (at the earlier stop), or
         * a top-k/PSA order tie; otherwise a failure. */
        int marginal = 0;
        if (m->kind == ATTN_PSA && br[pr] != res.blocks_read[h]) {
          for (int g = 0; g < G; g++) {
            const double e = br[pr] < res.blocks_read[h] ? est[(size_t)r * Hq + h * G + g]
                                                         : res.est_mass[h * G + g];
            if (fabs(e - m->epsilon) < 1e-3) marginal = 1;
          }
        } else if (br[pr] == res.blocks_read[h]) {
          marginal = 1; /* same count, different set: a tie in the ranking (output still checked) */
        }
        if (t->marginal + t->bad < 10) {
          printf("  %s req %d head %d: gpu reads %d blocks, reference %lld (%s)\n", label, r, h,
                 br[pr], (long long)res.blocks_read[h], marginal ? "marginal" : "MISMATCH");
        }
        if (marginal) t->marginal++;
        else t->bad++;
      }
    }
    /* Output over the GPU's own block set, strict. */
    ref_attend_set(&B->s, B->q + (size_t)r * Hq * D, B->K[r], B->V[r], B->len[r], B->bs, mask, nb, ref_set);
    char what[200];
    snprintf(what, sizeof what, "%s req %d out", label, r);
    t->bad += compare(what, out + (size_t)r * Hq * D, ref_set, (int64_t)Hq * D, 2e-5, 1e-3);
    if (m->kind == ATTN_PSA) {
      for (int hq = 0; hq < Hq; hq++) {
        const int pr = r * Hkv + hq / G;
        if (br[pr] == res.blocks_read[hq / G] && !(fabs(est[(size_t)r * Hq + hq] - res.est_mass[hq]) <= 1e-4)) {
          printf("  %s req %d head %d: P_acc gpu %.6f ref %.6f\n", label, r, hq,
                 est[(size_t)r * Hq + hq], res.est_mass[hq]);
          t->bad++;
        }
      }
    }
    free(mask);
    attn_result_free(&res);
  }
  if (blocks_out) memcpy(blocks_out, br, (size_t)pairs * 4);
  if (est_out) memcpy(est_out, est, (size_t)B->n_req * Hq * 4);
  kvc_free(g_ctx, d_br), kvc_free(g_ctx, d_it), kvc_free(g_ctx, d_fe), kvc_free(g_ctx, d_est), kvc_free(g_ctx, d_ord);
  free(br), free(it), free(fe), free(ord), free(est), free(out), free(ref_set);
}

static void run_sparse_suite(batch_t *B, const char *label, sparse_tally *t) {
  kv_error err = {0};
  attn_blockmeta *metas = calloc((size_t)B->n_req, sizeof *metas);
  if (share_meta(B, metas, &err)) {
    TEST_FAIL_AT("%s: %s", label, err.msg);
  } else {
    const char *methods[] = {"topk:512", "topk:2048:mean", "topk:1024:sum", "psa:0.9", "psa:0.95",
                             "psa:0.99:lognormal", "psa:0.95:bound", "psa:0.9:group=2:recent=0",
                             "psa:0.95:bound:rank=quest"};
    const char *tiny[] = {"topk:128", "psa:0.9", "psa:0.95:bound"};
    const char **meths = g_tiny ? tiny : methods;
    const size_t n_meths = g_tiny ? sizeof tiny / sizeof *tiny : sizeof methods / sizeof *methods;
    const int pairs = B->n_req * B->s.n_kv_heads;
    const int psa_fma = kvc_tune_get(g_ctx, KVC_TUNE_PSA_CORE) == 0; /* test_psa_fma_random */
    int32_t *b1 = malloc((size_t)pairs * 4), *b2 = malloc((size_t)pairs * 4);
    float *e1 = malloc((size_t)B->n_req * B->s.n_heads * 4), *e2 = malloc((size_t)B->n_req * B->s.n_heads * 4);
    for (size_t k = 0; k < n_meths; k++) {
      attn_method m;
      if (attn_method_parse(meths[k], &m, &err)) {
        TEST_FAIL_AT("%s", err.msg);
        continue;
      }
      if (g_mma && m.kind != ATTN_TOPK) continue; /* tensor-core cases: top-k only */
      if (psa_fma && m.kind != ATTN_PSA) continue; /* PSA on CUDA cores: PSA only */
      m.block_size = B->bs;
      char l2[256];
      snprintf(l2, sizeof l2, "%s %s%s", label, meths[k],
               g_mma ? " [tensor cores]" : psa_fma ? " [PSA on CUDA cores]" : "");
      kvc_psa_opts op;
      kvc_psa_opts_defaults(&op);
      check_sparse(B, metas, &m, &op, l2, t, b1, e1);
      if (m.kind == ATTN_PSA) {
        snprintf(l2, sizeof l2, "%s %s hostsync", label, meths[k]);
        op.mode = KVC_PSA_HOSTSYNC;
        check_sparse(B, metas, &m, &op, l2, t, b2, e2);
        for (int i = 0; i < pairs; i++) {
          if (b1[i] != b2[i]) {
            printf("  %s: pair %d pipelined %d vs host-synced %d blocks\n", l2, i, b1[i], b2[i]);
            t->bad++;
          }
        }
        for (int i = 0; i < B->n_req * B->s.n_heads; i++) {
          if (!(fabsf(e1[i] - e2[i]) <= 1e-6f)) {
            printf("  %s: head %d P_acc pipelined %.9g vs host-synced %.9g\n", l2, i, e1[i], e2[i]);
            t->bad++;
          }
        }
      }
    }
    free(b1), free(b2), free(e1), free(e2);
  }
  for (int r = 0; r < B->n_req; r++) attn_blockmeta_free(&metas[r]);
  free(metas);
}

static void test_sparse_random(void) {
  NEED_GPU();
  kv_rng r;
  kv_rng_seed(&r, 303);
  const attn_shape shapes[3] = {{8, 2, 64}, {32, 8, 128}, {16, 2, 128}};
  sparse_tally t = {0, 0, 0};
  for (int si = 0; si < 3; si++) {
    for (int dt = 1; dt <= 2; dt++) {
      if (g_tiny && (si == 2 || dt == 1 + si)) continue; /* tiny: bf16 at D 64, fp16 at D 128 */
      const int n_req = g_tiny ? 1 : g_small ? 2 : 4;
      int lens[4];
      for (int i = 0; i < n_req; i++) {
        lens[i] = 40 + (int)kv_rng_below(&r, g_tiny ? 200 : g_small ? 800 : 6000);
      }
      batch_t B;
      kv_error err = {0};
      char label[96];
      snprintf(label, sizeof label, "Hq %d Hkv %d D %d %s", shapes[si].n_heads,
               shapes[si].n_kv_heads, shapes[si].head_dim, kvc_dtype_name((kvc_dtype)dt));
      if (batch_make(&B, shapes[si], (kvc_dtype)dt, 16, n_req, lens, kv_rng_u64(&r), 0, &err)) {
        TEST_FAIL_AT("%s: %s", label, err.msg);
      } else {
        run_sparse_suite(&B, label, &t);
      }
      batch_free(&B);
    }
  }
  printf("  sparse: %d pair checks, %d marginal, %d bad\n", t.pairs, t.marginal, t.bad);
  CHECK_EQ_INT(t.bad, 0);
  CHECK(t.marginal * 20 <= t.pairs); /* ties and marginal stops must stay rare (< 5%) */
}

/* One recorded layer in memory (from HDF5 through traces/qkv.h, or from the raw export of
 * kernels/bench/qkv_to_raw.py when KVLAB_QKV_RAW names its directory: the GPU machine's no-HDF5
 * build uses that). */
typedef struct {
  int64_t n_tokens, n_pos;
  float *K, *V, *Q;
  int64_t *pos;
} rec_layer;

static void rec_free(rec_layer *L) {
  free(L->K), free(L->V), free(L->Q), free(L->pos);
  memset(L, 0, sizeof *L);
}

/* Raw export: returns layers read (0 when absent), fills shape. */
static int rec_load_raw(const char *dir, attn_shape *s, rec_layer *out, int cap) {
  char p[4096];
  snprintf(p, sizeof p, "%s/meta.txt", dir);
  FILE *f = fopen(p, "r");
  int nl = 0;
  if (!f || fscanf(f, "%d %d %d %d", &nl, &s->n_heads, &s->n_kv_heads, &s->head_dim) != 4) {
    if (f) fclose(f);
    return 0;
  }
  fclose(f);
  int got = 0;
  for (int l = 0; l < nl && got < cap; l++) {
    rec_layer *L = &out[got];
    memset(L, 0, sizeof *L);
    snprintf(p, sizeof p, "%s/layer%d.txt", dir, l);
    f = fopen(p, "r");
    if (!f || fscanf(f, "%lld %lld", (long long *)&L->n_tokens, (long long *)&L->n_pos) != 2) {
      if (f) fclose(f);
      continue;
    }
    L->pos = malloc((size_t)L->n_pos * sizeof *L->pos);
    for (int64_t i = 0; i < L->n_pos; i++) {
      if (fscanf(f, "%lld", (long long *)&L->pos[i]) != 1) L->pos[i] = L->n_tokens - 1;
    }
    fclose(f);
    const size_t nk = (size_t)L->n_tokens * s->n_kv_heads * s->head_dim, nq = (size_t)L->n_pos * s->n_heads * s->head_dim;
    L->K = malloc(nk * 4), L->V = malloc(nk * 4), L->Q = malloc(nq * 4);
    const char *nm[3] = {"K", "V", "Q"};
    float *arr[3] = {L->K, L->V, L->Q};
    const size_t cnt[3] = {nk, nk, nq};
    int ok = 1;
    for (int a = 0; a < 3; a++) {
      snprintf(p, sizeof p, "%s/%s%d.f32", dir, nm[a], l);
      FILE *g = fopen(p, "rb");
      ok &= g && fread(arr[a], 4, cnt[a], g) == cnt[a];
      if (g) fclose(g);
    }
    if (ok) got++;
    else rec_free(L);
  }
  return got;
}

#ifndef KVLAB_NO_HDF5
static int rec_load_h5(const char *path, attn_shape *s, rec_layer *out, int cap, kv_error *err) {
  qkv_file *qf;
  if (qkv_open(path, &qf, err)) return -1;
  const qkv_model *md = qkv_file_model(qf);
  s->n_heads = md->n_heads, s->n_kv_heads = md->n_kv_heads, s->head_dim = md->head_dim;
  const qkv_seq_info *si = qkv_file_seq(qf, 0);
  int got = 0;
  for (int li = 0; li < si->n_layers && got < cap; li++) {
    qkv_layer L;
    if (qkv_read_layer(qf, 0, si->layers[li], 0, &L, err)) break;
    rec_layer *R = &out[got++];
    R->n_tokens = L.n_tokens, R->n_pos = L.n_positions;
    R->K = L.K, R->V = L.V, R->Q = L.Q, R->pos = L.positions;
    L.K = L.V = L.Q = NULL;
    L.positions = NULL;
    qkv_layer_free(&L);
  }
  qkv_close(qf);
  return got;
}
#endif

/* The recorded sample (or a synthetic file): every layer, the last few positions as one batch. */
static void test_recorded_sample(void) {
  NEED_GPU();
  kv_error err = {0};
  attn_shape s = {0, 0, 0};
  rec_layer layers[64];
  int nl = 0;
  const char *raw = getenv("KVLAB_QKV_RAW");
  if (raw) nl = rec_load_raw(raw, &s, layers, 64);
#ifndef KVLAB_NO_HDF5
  if (nl == 0) {
    char path[4096];
    snprintf(path, sizeof path, "%s/traces/data/qkv_sample.h5", test_source_dir());
    FILE *f = fopen(path, "rb");
    if (f) {
      fclose(f);
    } else {
      snprintf(path, sizeof path, "%s", test_tmp_path("gpu_qkv_synth.h5"));
      qkv_synth_params sp;
      qkv_synth_defaults(&sp);
      sp.n_tokens = g_small ? 512 : 4096;
      sp.n_layers = 2;
      REQUIRE_OK(qkv_synth_write(path, &sp, &err), &err);
      printf("  no traces/data/qkv_sample.h5: using a synthetic file\n");
    }
    nl = rec_load_h5(path, &s, layers, 64, &err);
    REQUIRE(nl > 0);
  }
#endif
  if (nl <= 0) TEST_SKIP("no recorded data (built without HDF5 and KVLAB_QKV_RAW unset)");
  if ((s.head_dim != 64 && s.head_dim != 128) || s.n_heads / s.n_kv_heads > 8) {
    for (int l = 0; l < nl; l++) rec_free(&layers[l]);
    TEST_SKIP("recorded shape not supported by the kernels");
  }
  sparse_tally t = {0, 0, 0};
  int dense_bad = 0;
  for (int li = 0; li < nl; li++) {
    rec_layer *L = &layers[li];
    const int n_req = L->n_pos < 4 ? (int)L->n_pos : 4;
    for (int dt = 1; dt <= 2; dt++) {
      int lens[4];
      for (int i = 0; i < n_req; i++) lens[i] = (int)L->pos[L->n_pos - n_req + i] + 1;
      batch_t B;
      if (batch_make(&B, s, (kvc_dtype)dt, 16, n_req, lens, 1, 0, &err)) {
        TEST_FAIL_AT("%s", err.msg);
        batch_free(&B);
        continue;
      }
      for (int i = 0; i < n_req; i++) { /* replace the random data with the recording */
        const size_t e = (size_t)lens[i] * s.n_kv_heads * s.head_dim;
        for (size_t j = 0; j < e; j++) {
          B.K32[i][j] = L->K[j], B.V32[i][j] = L->V[j];
          B.K[i][j] = round_to((kvc_dtype)dt, L->K[j]), B.V[i][j] = round_to((kvc_dtype)dt, L->V[j]);
        }
        memcpy(B.q + (size_t)i * s.n_heads * s.head_dim,
               L->Q + (size_t)(L->n_pos - n_req + i) * s.n_heads * s.head_dim,
               (size_t)s.n_heads * s.head_dim * 4);
        REQUIRE_OK(kvc_kv_upload(g_ctx, &B.kv, B.bt + (size_t)i * B.max_blocks, B.K[i], B.V[i], lens[i], &err), &err);
      }
      REQUIRE_OK(kvc_h2d(g_ctx, B.d_q, B.q, (size_t)n_req * s.n_heads * s.head_dim * 4, &err), &err);
      char label[96];
      snprintf(label, sizeof label, "recorded layer %d %s", li, kvc_dtype_name((kvc_dtype)dt));
      dense_bad += check_dense(&B, label);
      run_sparse_suite(&B, label, &t); /* g_mma: top-k only, on tensor cores */
      batch_free(&B);
    }
    rec_free(L);
  }
  printf("  recorded: %d pair checks, %d marginal, %d bad; dense mismatches %d\n", t.pairs,
         t.marginal, t.bad, dense_bad);
  CHECK_EQ_INT(dense_bad, 0);
  CHECK_EQ_INT(t.bad, 0);
  CHECK(t.marginal * 20 <= t.pairs);
}

/* ---- dense lse, PSA options, tiled fill -------------------------------------------------------- */
static void test_dense_lse(void) {
  NEED_GPU();
  kv_rng r;
  kv_rng_seed(&r, 505);
  const attn_shape shapes[3] = {{8, 8, 64}, {32, 8, 128}, {16, 2, 128}};
  int cases = 0;
  for (int si = 0; si < 3; si++) {
    for (int dt = 1; dt <= 2; dt++) {
      /* one long request (several splits) and short ones (one split: written directly) */
      const int bs = dt == 1 ? 32 : 16, n_req = 3;
      int lens[3] = {g_small ? 700 : 9000, 1 + (int)kv_rng_below(&r, 40), 17};
      batch_t B;
      kv_error err = {0};
      char label[128];
      snprintf(label, sizeof label, "lse Hq %d Hkv %d D %d %s bs %d%s", shapes[si].n_heads,
               shapes[si].n_kv_heads, shapes[si].head_dim, kvc_dtype_name((kvc_dtype)dt), bs,
               g_mma == 3   ? " [tensor cores + regs]"
               : g_mma == 2 ? " [tensor cores + bulk]"
               : g_mma      ? " [tensor cores]"
                            : "");
      if (batch_make(&B, shapes[si], (kvc_dtype)dt, bs, n_req, lens, kv_rng_u64(&r), 0, &err)) {
        TEST_FAIL_AT("%s: %s", label, err.msg);
        batch_free(&B);
        continue;
      }
      const int Hq = shapes[si].n_heads, D = shapes[si].head_dim;
      void *d_lse = NULL;
      float *lse = malloc((size_t)n_req * Hq * 4), *out = malloc((size_t)n_req * Hq * D * 4);
      float *ref = malloc((size_t)Hq * D * 4);
      double *rl = malloc((size_t)Hq * sizeof(double));
      REQUIRE_OK(kvc_malloc(g_ctx, &d_lse, (size_t)n_req * Hq * 4, &err), &err);
      REQUIRE_OK(kvc_memset(g_ctx, d_lse, 0xff, (size_t)n_req * Hq * 4, &err), &err);
      REQUIRE_OK(kvc_memset(g_ctx, B.d_out, 0xff, (size_t)n_req * Hq * D * 4, &err), &err);
      REQUIRE_OK(kvc_tune_set(g_ctx, KVC_TUNE_DENSE_CORE, g_mma, &err), &err);
      const int rc_dense = kvc_dense(g_ctx, &B.s, &B.kv, &B.b, B.d_out, d_lse, &err);
      kv_error e0 = {0};
      kvc_tune_set(g_ctx, KVC_TUNE_DENSE_CORE, 0, &e0);
      REQUIRE_OK(rc_dense, &err);
      REQUIRE_OK(kvc_d2h(g_ctx, lse, d_lse, (size_t)n_req * Hq * 4, &err), &err);
      REQUIRE_OK(kvc_d2h(g_ctx, out, B.d_out, (size_t)n_req * Hq * D * 4, &err), &err);
      int bad = 0;
      for (int q = 0; q < n_req; q++) {
        attn_dense(&B.s, B.q + (size_t)q * Hq * D, B.K[q], B.V[q], B.len[q], ref, rl, NULL);
        float rlf[64];
        for (int h = 0; h < Hq; h++) rlf[h] = (float)rl[h];
        char what[200];
        snprintf(what, sizeof what, "%s req %d (len %d) lse", label, q, (int)B.len[q]);
        bad += compare(what, lse + (size_t)q * Hq, rlf, Hq, 1e-4, 1e-5);
        snprintf(what, sizeof what, "%s req %d (len %d) out", label, q, (int)B.len[q]);
        bad += compare(what, out + (size_t)q * Hq * D, ref, (int64_t)Hq * D, 2e-5, 1e-3);
      }
      if (bad) TEST_FAIL_AT("%s: %d mismatches", label, bad);
      kvc_free(g_ctx, d_lse);
      free(lse), free(out), free(ref), free(rl);
      batch_free(&B);
      cases++;
    }
  }
  printf("  dense lse: %d cases\n", cases);
}

/* PSA (and top-k) under non-default settings: block size 32, group 1 and 7, no recent block,
 * a token cap, items of 2-32 iterations, speculation short of and past the stop in 1-4 rounds, a
 * fixed number of CTAs; both head
 * dims and both types. Every run is checked against the reference (blocks, iterations, P_acc,
 * output over the GPU's own set) and the pipelined runs against the host-synchronised one. */
static void test_psa_options(void) {
  NEED_GPU();
  kv_rng r;
  kv_rng_seed(&r, 606);
  const attn_shape shapes[2] = {{8, 2, 64}, {32, 8, 128}};
  const char *methods[] = {"psa:0.9:group=1", "psa:0.95:group=7:recent=0", "psa:0.99",
                           "psa:0.95:cap=300:sink=2", "topk:256", "topk:2048:sum"};
  /* window (iterations per item), spec_iters, ctas_per_pair, spec_scale (%), rounds: speculation
   * far short of the stop (several rounds), past it, one round that covers everything; the last
   * row is the defaults (4 iterations per item since 2026-12-03; run also at tiny sizes, for
   * racecheck) */
  const int wins[5][5] = {{2, 0, 0, 100, 4}, {5, 4, 0, 30, 4}, {32, 0, 1, 100, 1}, {8, 2, 3, 10, 3},
                          {4, 2, 0, 100, 4}};
  const int n_wins = (int)(sizeof wins / sizeof *wins);
  const int psa_fma = kvc_tune_get(g_ctx, KVC_TUNE_PSA_CORE) == 0; /* test_psa_fma_options */
  sparse_tally t = {0, 0, 0};
  for (int si = 0; si < 2; si++) {
    for (int dt = 1; dt <= 2; dt++) {
      if (g_tiny && dt != 1 + si) continue; /* tiny: fp16 at D 64 (block 32), bf16 at D 128 (32) */
      const int bs = (si + dt) % 2 ? 32 : 16, n_req = g_tiny ? 1 : g_small ? 2 : 3;
      int lens[3];
      for (int i = 0; i < n_req; i++) {
        lens[i] = 40 + (int)kv_rng_below(&r, g_tiny ? 300 : g_small ? 900 : 5000);
      }
      batch_t B;
      kv_error err = {0};
      char label[128];
      snprintf(label, sizeof label, "opts Hq %d Hkv %d D %d %s bs %d", shapes[si].n_heads,
               shapes[si].n_kv_heads, shapes[si].head_dim, kvc_dtype_name((kvc_dtype)dt), bs);
      if (batch_make(&B, shapes[si], (kvc_dtype)dt, bs, n_req, lens, kv_rng_u64(&r), 0, &err)) {
        TEST_FAIL_AT("%s: %s", label, err.msg);
        batch_free(&B);
        continue;
      }
      attn_blockmeta *metas = calloc((size_t)n_req, sizeof *metas);
      if (share_meta(&B, metas, &err)) {
        TEST_FAIL_AT("%s: %s", label, err.msg);
      } else {
        const int pairs = n_req * shapes[si].n_kv_heads;
        int32_t *b1 = malloc((size_t)pairs * 4), *b2 = malloc((size_t)pairs * 4);
        float *e1 = malloc((size_t)n_req * shapes[si].n_heads * 4);
        float *e2 = malloc((size_t)n_req * shapes[si].n_heads * 4);
        for (size_t k = 0; k < sizeof methods / sizeof *methods; k++) {
          if (g_tiny && k != 0 && k != 3 && k != 4) continue; /* group=1, cap+sink, top-k */
          attn_method m;
          if (attn_method_parse(methods[k], &m, &err)) {
            TEST_FAIL_AT("%s: %s", methods[k], err.msg);
            continue;
          }
          m.block_size = bs;
          kvc_psa_opts op;
          kvc_psa_opts_defaults(&op);
          char l2[256];
          if (m.kind == ATTN_TOPK) {
            if (psa_fma) continue; /* PSA on CUDA cores: PSA only */
            snprintf(l2, sizeof l2, "%s %s", label, methods[k]);
            check_sparse(&B, metas, &m, &op, l2, &t, b1, e1);
            continue;
          }
          op.mode = KVC_PSA_HOSTSYNC;
          snprintf(l2, sizeof l2, "%s %s hostsync", label, methods[k]);
          check_sparse(&B, metas, &m, &op, l2, &t, b2, e2);
          for (int w = 0; w < n_wins; w++) {
            if (g_tiny && w >= 2 && w != n_wins - 1) continue;
            op.mode = KVC_PSA_PIPELINED;
            op.window = wins[w][0], op.spec_iters = wins[w][1], op.ctas_per_pair = wins[w][2];
            op.spec_scale = (float)wins[w][3] / 100.0f, op.rounds = wins[w][4];
            snprintf(l2, sizeof l2, "%s %s window %d spec %d+%.2fx ctas/pair %d rounds %d", label,
                     methods[k], op.window, op.spec_iters, (double)op.spec_scale, op.ctas_per_pair,
                     op.rounds);
            check_sparse(&B, metas, &m, &op, l2, &t, b1, e1);
            for (int i = 0; i < pairs; i++) {
              if (b1[i] != b2[i]) {
                printf("  %s: pair %d pipelined %d vs host-synced %d blocks\n", l2, i, b1[i], b2[i]);
                t.bad++;
              }
            }
            for (int i = 0; i < n_req * shapes[si].n_heads; i++) {
              if (!(fabsf(e1[i] - e2[i]) <= 1e-6f)) {
                printf("  %s: head %d P_acc pipelined %.9g vs host-synced %.9g\n", l2, i, e1[i], e2[i]);
                t.bad++;
              }
            }
          }
        }
        free(b1), free(b2), free(e1), free(e2);
      }
      for (int i = 0; i < n_req; i++) attn_blockmeta_free(&metas[i]);
      free(metas);
      batch_free(&B);
    }
  }
  printf("  psa options: %d pair checks, %d marginal, %d bad\n", t.pairs, t.marginal, t.bad);
  CHECK_EQ_INT(t.bad, 0);
  CHECK(t.marginal * 20 <= t.pairs);
  /* Bad options are errors, not undefined behaviour. */
  kv_error err = {0};
  const int lens[1] = {100};
  batch_t B;
  REQUIRE_OK(batch_make(&B, (attn_shape){8, 2, 64}, KVC_DTYPE_BF16, 16, 1, lens, 9, 0, &err), &err);
  attn_method m;
  attn_method_defaults(&m, ATTN_PSA);
  kvc_psa_opts op;
  kvc_psa_opts_defaults(&op);
  op.window = 0;
  CHECK_EQ_INT(kvc_psa(g_ctx, &B.s, &m, &B.kv, &B.b, &op, B.d_out, NULL, NULL, &err), KV_EINVAL);
  kvc_psa_opts_defaults(&op);
  op.rounds = 0;
  CHECK_EQ_INT(kvc_psa(g_ctx, &B.s, &m, &B.kv, &B.b, &op, B.d_out, NULL, NULL, &err), KV_EINVAL);
  kvc_psa_opts_defaults(&op);
  op.spec_scale = 0.0f;
  CHECK_EQ_INT(kvc_psa(g_ctx, &B.s, &m, &B.kv, &B.b, &op, B.d_out, NULL, NULL, &err), KV_EINVAL);
  batch_free(&B);
}

/* kvc_fill_tiled writes the recording's values where kvc_tile_token, the head and the dimension
 * mapping say (random "recording", poisoned pool), and the query scaled by sqrt(rec_dim / D). */
static void test_fill_tiled(void) {
  NEED_GPU();
  kv_rng r;
  kv_rng_seed(&r, 707);
  kv_error err = {0};
  const attn_shape rec = {4, 2, 64}, s = {16, 8, 128};
  const int n_rec = 300, n_req = 2, lens[2] = {1000, 333};
  const int32_t pos[2] = {299, 150};
  const size_t nk = (size_t)n_rec * rec.n_kv_heads * rec.head_dim;
  float *rk = malloc(nk * 4), *rv = malloc(nk * 4), *rq = malloc((size_t)n_req * rec.n_heads * rec.head_dim * 4);
  for (size_t i = 0; i < nk; i++) rk[i] = (float)kv_rng_normal(&r), rv[i] = (float)kv_rng_normal(&r);
  for (int i = 0; i < n_req * rec.n_heads * rec.head_dim; i++) rq[i] = (float)kv_rng_normal(&r);
  batch_t B;
  REQUIRE_OK(batch_make(&B, s, KVC_DTYPE_BF16, 16, n_req, lens, 5, 0, &err), &err);
  void *dk, *dv, *dq;
  REQUIRE_OK(kvc_malloc(g_ctx, &dk, nk * 4, &err), &err);
  REQUIRE_OK(kvc_malloc(g_ctx, &dv, nk * 4, &err), &err);
  REQUIRE_OK(kvc_malloc(g_ctx, &dq, (size_t)n_req * rec.n_heads * rec.head_dim * 4, &err), &err);
  REQUIRE_OK(kvc_h2d(g_ctx, dk, rk, nk * 4, &err), &err);
  REQUIRE_OK(kvc_h2d(g_ctx, dv, rv, nk * 4, &err), &err);
  REQUIRE_OK(kvc_h2d(g_ctx, dq, rq, (size_t)n_req * rec.n_heads * rec.head_dim * 4, &err), &err);
  REQUIRE_OK(kvc_memset(g_ctx, B.d_q, 0xff, (size_t)n_req * s.n_heads * s.head_dim * 4, &err), &err);
  REQUIRE_OK(kvc_fill_tiled(g_ctx, &s, &B.kv, &B.b, B.d_q, dk, dv, dq, &rec, pos, &err), &err);
  const size_t pool = (size_t)B.kv.n_pages * s.n_kv_heads * 16 * s.head_dim;
  uint16_t *hk = malloc(pool * 2), *hv = malloc(pool * 2);
  float *q = malloc((size_t)n_req * s.n_heads * s.head_dim * 4);
  REQUIRE_OK(kvc_d2h(g_ctx, hk, B.kv.k, pool * 2, &err), &err);
  REQUIRE_OK(kvc_d2h(g_ctx, hv, B.kv.v, pool * 2, &err), &err);
  REQUIRE_OK(kvc_d2h(g_ctx, q, B.d_q, (size_t)n_req * s.n_heads * s.head_dim * 4, &err), &err);
  int bad = 0;
  for (int i = 0; i < n_req; i++) {
    for (int t = 0; t < lens[i]; t++) {
      const int page = B.bt[(size_t)i * B.max_blocks + t / 16];
      const int64_t st = kvc_tile_token(t, lens[i], pos[i]);
      for (int h = 0; h < s.n_kv_heads; h++) {
        for (int d = 0; d < s.head_dim; d++) {
          const size_t o = (((size_t)page * s.n_kv_heads + h) * 16 + t % 16) * s.head_dim + d;
          const size_t src = ((size_t)st * rec.n_kv_heads + h % rec.n_kv_heads) * rec.head_dim + d % rec.head_dim;
          if (kv_bf16_to_f32(hk[o]) != round_to(KVC_DTYPE_BF16, rk[src]) ||
              kv_bf16_to_f32(hv[o]) != round_to(KVC_DTYPE_BF16, rv[src])) {
            if (bad < 5) printf("  tiled fill: req %d token %d head %d dim %d differs\n", i, t, h, d);
            bad++;
          }
        }
      }
    }
    const int G = s.n_heads / s.n_kv_heads, rG = rec.n_heads / rec.n_kv_heads;
    for (int hq = 0; hq < s.n_heads; hq++) {
      const int src_head = (hq / G % rec.n_kv_heads) * rG + (hq % G) % rG;
      for (int d = 0; d < s.head_dim; d++) {
        const double want = rq[((size_t)i * rec.n_heads + src_head) * rec.head_dim + d % rec.head_dim] *
                            sqrt((double)rec.head_dim / s.head_dim);
        if (!(fabs(q[((size_t)i * s.n_heads + hq) * s.head_dim + d] - want) <= 1e-6 * (1 + fabs(want)))) bad++;
      }
    }
  }
  CHECK_EQ_INT(bad, 0);
  const int32_t zero[2] = {0, 0};
  CHECK_EQ_INT(kvc_fill_tiled(g_ctx, &s, &B.kv, &B.b, B.d_q, dk, dv, dq, &rec, zero, &err), KV_EINVAL);
  kvc_free(g_ctx, dk), kvc_free(g_ctx, dv), kvc_free(g_ctx, dq);
  free(rk), free(rv), free(rq), free(hk), free(hv), free(q);
  batch_free(&B);
}

static void test_group_scores_cublas(void) {
  NEED_GPU();
  kv_rng r;
  kv_rng_seed(&r, 404);
  kv_error err = {0};
  const attn_shape s = {8, 2, 64};
  const int nq = 5, nt = 300, G = 4;
  for (int dt = 1; dt <= 2; dt++) {
    uint16_t *hq = malloc((size_t)nq * 8 * 64 * 2), *hk = malloc((size_t)nt * 2 * 64 * 2);
    float *fq = malloc((size_t)nq * 8 * 64 * 4), *fk = malloc((size_t)nt * 2 * 64 * 4);
    for (int i = 0; i < nq * 8 * 64; i++) {
      fq[i] = round_to((kvc_dtype)dt, (float)kv_rng_normal(&r));
      hq[i] = dt == 1 ? kv_f32_to_f16(fq[i]) : kv_f32_to_bf16(fq[i]);
    }
    for (int i = 0; i < nt * 2 * 64; i++) {
      fk[i] = round_to((kvc_dtype)dt, (float)kv_rng_normal(&r));
      hk[i] = dt == 1 ? kv_f32_to_f16(fk[i]) : kv_f32_to_bf16(fk[i]);
    }
    void *dq, *dk, *ds;
    REQUIRE_OK(kvc_malloc(g_ctx, &dq, (size_t)nq * 8 * 64 * 2, &err), &err);
    REQUIRE_OK(kvc_malloc(g_ctx, &dk, (size_t)nt * 2 * 64 * 2, &err), &err);
    REQUIRE_OK(kvc_malloc(g_ctx, &ds, (size_t)8 * nq * nt * 4, &err), &err);
    REQUIRE_OK(kvc_h2d(g_ctx, dq, hq, (size_t)nq * 8 * 64 * 2, &err), &err);
    REQUIRE_OK(kvc_h2d(g_ctx, dk, hk, (size_t)nt * 2 * 64 * 2, &err), &err);
    REQUIRE_OK(kvc_memset(g_ctx, ds, 0xff, (size_t)8 * nq * nt * 4, &err), &err);
    REQUIRE_OK(kvc_group_scores(g_ctx, &s, (kvc_dtype)dt, dq, nq, dk, nt, ds, &err), &err);
    float *S = malloc((size_t)8 * nq * nt * 4), *R = malloc((size_t)8 * nq * nt * 4);
    REQUIRE_OK(kvc_d2h(g_ctx, S, ds, (size_t)8 * nq * nt * 4, &err), &err);
    for (int h = 0; h < 8; h++) {
      for (int i = 0; i < nq; i++) {
        for (int t = 0; t < nt; t++) {
          double a = 0;
          for (int d = 0; d < 64; d++) a += (double)fq[((size_t)i * 8 + h) * 64 + d] * fk[((size_t)t * 2 + h / G) * 64 + d];
          R[((size_t)h * nq + i) * nt + t] = (float)(a / 8.0);
        }
      }
    }
    CHECK_EQ_INT(compare("group scores", S, R, (int64_t)8 * nq * nt, 1e-4, 1e-4), 0);
    kvc_free(g_ctx, dq), kvc_free(g_ctx, dk), kvc_free(g_ctx, ds);
    free(hq), free(hk), free(fq), free(fk), free(S), free(R);
  }
}

static void test_unsupported_shapes_are_errors(void) {
  NEED_GPU();
  kv_error err = {0};
  const int lens[1] = {100};
  batch_t B;
  REQUIRE_OK(batch_make(&B, (attn_shape){8, 2, 64}, KVC_DTYPE_F16, 16, 1, lens, 9, 0, &err), &err);
  attn_shape bad = {8, 2, 96};
  CHECK_EQ_INT(kvc_dense(g_ctx, &bad, &B.kv, &B.b, B.d_out, NULL, &err), KV_ENOTSUP);
  attn_method m;
  attn_method_defaults(&m, ATTN_ORACLE);
  CHECK_EQ_INT(kvc_psa(g_ctx, &B.s, &m, &B.kv, &B.b, NULL, B.d_out, NULL, NULL, &err), KV_ENOTSUP);
  batch_free(&B);
}

/* Runs a case with g_mma = core (the attend core the cases select), then back to 0. */
static void with_core(int core, void (*test)(void)) {
  g_mma = core;
  test();
  g_mma = 0;
}
/* The tensor-core dense core (KVC_TUNE_DENSE_CORE = 1) on the dense cases: last in the list. */
static void test_dense_mma_shapes(void) { with_core(1, test_dense_shapes); }
static void test_dense_mma_lse(void) { with_core(1, test_dense_lse); }
static void test_dense_mma_recorded(void) { /* dense and top-k on tensor cores (PSA: its own) */
  with_core(1, test_recorded_sample);
}
/* v5: the tensor-core core with 1-D bulk-copy staging (KVC_TUNE_DENSE_CORE = 2, sm_90; dense only)
 * on the dense cases, after every other case (a fault or a hung barrier, which traps, cannot take
 * the others with it). Skipped below sm_90 (tune_set answers KV_ENOTSUP). */
static int bulk_supported(void) {
  kv_error e = {0};
  const int rc = kvc_tune_set(g_ctx, KVC_TUNE_DENSE_CORE, 2, &e);
  kvc_tune_set(g_ctx, KVC_TUNE_DENSE_CORE, 0, &e);
  if (rc) printf("  skip  bulk-copy core: %s\n", e.msg);
  return rc == 0;
}
static void test_dense_bulk_shapes(void) {
  NEED_GPU();
  if (bulk_supported()) with_core(2, test_dense_shapes);
}
static void test_dense_bulk_lse(void) {
  NEED_GPU();
  if (bulk_supported()) with_core(2, test_dense_lse);
}
/* v6: the tensor-core core with register staging (KVC_TUNE_DENSE_CORE = 3; dense only) on the
 * dense cases, last in the list (after the bulk cases: a fault cannot take the others with it). */
static void test_dense_regs_shapes(void) { with_core(3, test_dense_shapes); }
static void test_dense_regs_lse(void) { with_core(3, test_dense_lse); }
/* A case (the random sparse cases: top-k and PSA against the C reference; or PSA's option
 * cases) with one execution variant set, then the default restored (`dflt`); a variant the
 * context refuses fails the case. */
static void with_tune(kvc_tune_key key, int value, int dflt, const char *name,
                      void (*test)(void)) {
  NEED_GPU();
  kv_error e = {0};
  if (kvc_tune_set(g_ctx, key, value, &e)) {
    printf("  %s: %s\n", name, e.msg);
    CHECK(0);
    return;
  }
  test();
  kvc_tune_set(g_ctx, key, dflt, &e);
}
/* PSA's rank kernel at every context size it handles (items per thread 2, 4, 8 of the fused
 * block sort: 513-4,096 blocks; beyond that the keys kernel, CUB's segmented sort and the prep
 * kernel) and top-k's selection at the same lengths: the random sparse cases stop at ~300 blocks,
 * where only the one-item path runs. Hq 32 / Hkv 8 / D 128, bf16, 16-token blocks, two requests
 * per batch (the longest decides the path), checked like every sparse case. */
static void test_psa_long(void) {
  NEED_GPU();
  const attn_shape s = {32, 8, 128};
  /* under KVC_TUNE_PSA_RANK_CTAS 2 (test_psa_rank2_long): the fused kernel's four paths (one
   * item per thread too) and PSA only; the segmented-sort path and top-k do not change */
  const int rank2 = kvc_tune_get(g_ctx, KVC_TUNE_PSA_RANK_CTAS) == 2;
  const int blocks_dflt[4] = {600, 1500, 3000, 5000}, blocks_rank2[4] = {300, 600, 1500, 3000};
  const int *blocks = rank2 ? blocks_rank2 : blocks_dflt;
  const int n_paths = g_tiny ? 1 : g_small ? 2 : 4;
  const char *methods[] = {"psa:0.95", "psa:0.9:group=1:sink=2", "topk:1024"};
  sparse_tally t = {0, 0, 0};
  kv_rng r;
  kv_rng_seed(&r, 707);
  for (int pi = 0; pi < n_paths; pi++) {
    const int lens[2] = {blocks[pi] * 16 - 5, blocks[pi] * 16 / 3 + 7};
    batch_t B;
    kv_error err = {0};
    char label[128];
    snprintf(label, sizeof label, "long %d blocks", blocks[pi]);
    if (batch_make(&B, s, KVC_DTYPE_BF16, 16, 2, lens, kv_rng_u64(&r), 0, &err)) {
      TEST_FAIL_AT("%s: %s", label, err.msg);
      batch_free(&B);
      continue;
    }
    attn_blockmeta metas[2];
    memset(metas, 0, sizeof metas);
    if (share_meta(&B, metas, &err)) {
      TEST_FAIL_AT("%s: %s", label, err.msg);
    } else {
      int32_t b1[16]; /* pairs: 2 requests x 8 KV heads */
      float e1[64];   /* 2 requests x 32 query heads */
      for (size_t k = 0; k < sizeof methods / sizeof *methods; k++) {
        attn_method m;
        if (attn_method_parse(methods[k], &m, &err)) {
          TEST_FAIL_AT("%s: %s", methods[k], err.msg);
          continue;
        }
        if ((g_tiny || rank2) && m.kind == ATTN_TOPK) continue;
        m.block_size = 16;
        kvc_psa_opts op;
        kvc_psa_opts_defaults(&op);
        char l2[256];
        snprintf(l2, sizeof l2, "%s %s", label, methods[k]);
        check_sparse(&B, metas, &m, &op, l2, &t, b1, e1);
      }
    }
    for (int i = 0; i < 2; i++) attn_blockmeta_free(&metas[i]);
    batch_free(&B);
  }
  printf("  long: %d pair checks, %d marginal, %d bad\n", t.pairs, t.marginal, t.bad);
  CHECK(t.pairs > 0);
  CHECK_EQ_INT(t.bad, 0);
  CHECK(t.marginal * 20 <= t.pairs);
}
/* v12: PSA's rank kernel compiled for two CTAs per SM (KVC_TUNE_PSA_RANK_CTAS = 2, at most 64
 * registers) on every path of the fused kernel (1, 2, 4, 8 items per thread). */
static void test_psa_rank2_long(void) {
  with_tune(KVC_TUNE_PSA_RANK_CTAS, 2, 1, "KVC_TUNE_PSA_RANK_CTAS", test_psa_long);
}
/* v8: block scores with every KV head of a request in one CTA (KVC_TUNE_SCORE_HEADS = 1; all
 * three shapes of the random sparse cases qualify: Hkv 2 at D 64 and 128, Hkv 8 at D 128). */
static void test_sparse_score_heads(void) {
  with_tune(KVC_TUNE_SCORE_HEADS, 1, 0, "KVC_TUNE_SCORE_HEADS", test_sparse_random);
}
/* The v2-v8 block-score kernel (KVC_TUNE_SCORE_LOOP = 0), every method through it (by default the
 * other estimates and the small grids run it; Quest min/max and the mean at large grids run v9's
 * loop kernel: test_sparse_score_loop). */
static void test_sparse_score_v2(void) {
  with_tune(KVC_TUNE_SCORE_LOOP, 0, 1, "KVC_TUNE_SCORE_LOOP", test_sparse_random);
}
/* v9's loop kernel with 3 batches per CTA forced (KVC_TUNE_SCORE_LOOP = 2: the automatic choice
 * runs the v2 kernel on these small grids), so its software pipeline (next batch's metadata and
 * block-table entries in flight, the last batch partial, batches past a request's blocks) runs
 * on the random sparse cases. */
static void test_sparse_score_loop(void) {
  with_tune(KVC_TUNE_SCORE_LOOP, 2, 1, "KVC_TUNE_SCORE_LOOP", test_sparse_random);
}
/* Top-k's attention on tensor cores (KVC_TUNE_TOPK_CORE = 1) on the random sparse cases. */
static void test_topk_mma_random(void) { with_core(1, test_sparse_random); }
/* PSA's items on CUDA cores (KVC_TUNE_PSA_CORE = 0, the v2-v10 default; since v11 tensor cores
 * are the default and run in test_sparse_random and test_psa_options) on the random sparse
 * cases and on every option case (block sizes 16 and 32, head dims 64 and 128, fp16 and bf16,
 * several windows, speculation and rounds, host-synchronised against pipelined). */
static void test_psa_fma_random(void) {
  with_tune(KVC_TUNE_PSA_CORE, 0, 1, "KVC_TUNE_PSA_CORE", test_sparse_random);
}
static void test_psa_fma_options(void) {
  with_tune(KVC_TUNE_PSA_CORE, 0, 1, "KVC_TUNE_PSA_CORE", test_psa_options);
}

TEST_LIST = {
    TEST(test_dense_shapes),
    TEST(test_meta_build_and_append),
    TEST(test_sparse_random),
    TEST(test_recorded_sample),
    TEST(test_dense_lse),
    TEST(test_psa_options),
    TEST(test_fill_tiled),
    TEST(test_group_scores_cublas),
    TEST(test_unsupported_shapes_are_errors),
    TEST(test_dense_mma_shapes),
    TEST(test_dense_mma_lse),
    TEST(test_dense_mma_recorded),
    TEST(test_topk_mma_random),
    TEST(test_dense_bulk_shapes),
    TEST(test_dense_bulk_lse),
    TEST(test_dense_regs_shapes),
    TEST(test_dense_regs_lse),
    TEST(test_sparse_score_heads),
    TEST(test_sparse_score_v2),
    TEST(test_sparse_score_loop),
    TEST(test_psa_fma_random),
    TEST(test_psa_fma_options),
    TEST(test_psa_long),
    TEST(test_psa_rank2_long),
    {0}};
TEST_MAIN

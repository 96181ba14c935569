/* kvbench — decode-attention kernels on the GPU against the memory-bandwidth limit.
 *
 * Prints per shape: time, bytes actually read, achieved bandwidth, its ratio to the device-to-
 * device copy bandwidth measured in the same run, and PyTorch SDPA's time on the same shape (from
 * the CSV that sdpa_bench.py wrote earlier in the same device run, --sdpa). Sections:
 *   dense   bf16 (and fp16 on a subset), Hq 32 / Hkv 8 / D 128, batch 1-64, context 4K-128K
 *   topk    budgets 512-4096 tokens: whole op and the attention phase alone
 *   psa     epsilon 0.9-0.99 on heavy-tailed synthetic data (kvc_fill_synth) at 32K, pipelined (one
 *           CUDA graph of the whole step) and host-synchronised; and on recorded Q/K/V (--raw)
 *   gemm    cuBLAS GEMM timings for the simulator's cost model (--gemm-csv)
 * Every timed run starts with a flushed L2; the median of --reps runs is reported, after a warm-up.
 * Writes the rows to --csv. Targets (issue 4) are checked and printed at the end.
 *
 * Usage: kvbench [--quick] [--reps N] [--sdpa FILE] [--csv FILE] [--gemm-csv FILE] [--raw DIR]
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attn.h"
#include "attn_cuda.h"
#include "kv_rng.h"
#include "kvc_math.h"

typedef struct {
  kvc_ctx *c;
  int reps, quick;
  double copy_gbps;
  FILE *csv;
  /* SDPA times from sdpa_bench.py: rows "B,L,Hq,Hkv,D,dtype,us" */
  int n_sdpa;
  int sdpa_key[512][3];
  double sdpa_us[512];
  int targets_checked, targets_missed;
} bench;

#define DIE(...)                      \
  do {                                \
    fprintf(stderr, "kvbench: ");     \
    fprintf(stderr, __VA_ARGS__);     \
    fprintf(stderr, "\n");            \
    exit(1);                          \
  } while (0)
/* Dies with the message of the kv_error named e_ (declared by the calling function). */
#define CK(call)                                         \
  do {                                                   \
    if ((call) != 0) DIE("%s: %s", #call, e_.msg);       \
  } while (0)

static int cmp_d(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static double sdpa_lookup(const bench *B, int batch, int len, int dtype_bf16) {
  for (int i = 0; i < B->n_sdpa; i++) {
    if (B->sdpa_key[i][0] == batch && B->sdpa_key[i][1] == len && B->sdpa_key[i][2] == dtype_bf16) return B->sdpa_us[i];
  }
  return NAN;
}

static void load_sdpa(bench *B, const char *path) {
  FILE *f = fopen(path, "r");
  if (!f) {
    fprintf(stderr, "kvbench: no SDPA timings (%s): the SDPA column stays empty\n", path);
    return;
  }
  char line[512];
  while (fgets(line, sizeof line, f) && B->n_sdpa < 512) {
    int b, l, hq, hkv, d;
    char dt[16];
    double us;
    if (sscanf(line, "%d,%d,%d,%d,%d,%15[^,],%lf", &b, &l, &hq, &hkv, &d, dt, &us) == 7) {
      B->sdpa_key[B->n_sdpa][0] = b;
      B->sdpa_key[B->n_sdpa][1] = l;
      B->sdpa_key[B->n_sdpa][2] = strcmp(dt, "bf16") == 0;
      B->sdpa_us[B->n_sdpa++] = us;
    }
  }
  fclose(f);
}

/* A batch of n_req requests of `len` tokens with shuffled pages, random or synthetic contents. */
typedef struct {
  attn_shape s;
  kvc_kv kv;
  kvc_batch b;
  int32_t *h_len, *h_bt;
  void *d_len, *d_bt, *d_q, *d_out;
  int64_t kv_bytes;
} setup;

static void setup_free(bench *B, setup *S) {
  kvc_kv_free(B->c, &S->kv);
  kvc_free(B->c, S->d_len), kvc_free(B->c, S->d_bt), kvc_free(B->c, S->d_q), kvc_free(B->c, S->d_out);
  free(S->h_len), free(S->h_bt);
  memset(S, 0, sizeof *S);
}

static int setup_make(bench *B, setup *S, attn_shape s, kvc_dtype dt, int n_req, const int *lens,
                      int synth, uint64_t seed) {
  kv_error e_ = {0};
  memset(S, 0, sizeof *S);
  S->s = s;
  const int bs = 16;
  int mb = 0;
  int64_t pages = 0;
  for (int r = 0; r < n_req; r++) {
    int nb = (int)kvc_n_blocks(lens[r], bs);
    mb = nb > mb ? nb : mb;
    pages += nb;
    S->kv_bytes += (int64_t)lens[r] * s.n_kv_heads * s.head_dim * 2 * 2;
  }
  S->h_len = malloc((size_t)n_req * 4);
  S->h_bt = malloc((size_t)n_req * mb * 4);
  int32_t *perm = malloc((size_t)pages * 4);
  kv_rng rg;
  kv_rng_seed(&rg, seed);
  for (int64_t i = 0; i < pages; i++) perm[i] = (int32_t)i;
  for (int64_t i = pages - 1; i > 0; i--) {
    int64_t j = (int64_t)kv_rng_below(&rg, (uint64_t)i + 1);
    int32_t t = perm[i];
    perm[i] = perm[j], perm[j] = t;
  }
  int64_t next = 0;
  for (int r = 0; r < n_req; r++) {
    int nb = (int)kvc_n_blocks(lens[r], bs);
    S->h_len[r] = lens[r];
    for (int i = 0; i < mb; i++) S->h_bt[(size_t)r * mb + i] = i < nb ? perm[next + i] : 0;
    next += nb;
  }
  free(perm);
  if (kvc_kv_alloc(B->c, &S->kv, dt, s.n_kv_heads, s.head_dim, bs, pages, KVC_META_ALL, &e_) ||
      kvc_malloc(B->c, &S->d_len, (size_t)n_req * 4, &e_) ||
      kvc_malloc(B->c, &S->d_bt, (size_t)n_req * mb * 4, &e_) ||
      kvc_malloc(B->c, &S->d_q, (size_t)n_req * s.n_heads * s.head_dim * 4, &e_) ||
      kvc_malloc(B->c, &S->d_out, (size_t)n_req * s.n_heads * s.head_dim * 4, &e_) ||
      kvc_h2d(B->c, S->d_len, S->h_len, (size_t)n_req * 4, &e_) ||
      kvc_h2d(B->c, S->d_bt, S->h_bt, (size_t)n_req * mb * 4, &e_)) {
    fprintf(stderr, "kvbench: setup (batch %d, len %d): %s\n", n_req, lens[0], e_.msg);
    setup_free(B, S);
    return -1;
  }
  S->b.n_req = n_req;
  S->b.max_blocks = mb;
  S->b.block_table = S->d_bt;
  S->b.seq_len = S->d_len;
  S->b.h_seq_len = S->h_len;
  S->b.q = S->d_q;
  const int64_t el = pages * s.n_kv_heads * 16 * s.head_dim;
  if (synth) {
    CK(kvc_fill_synth(B->c, &S->s, &S->kv, &S->b, S->d_q, seed, &e_));
  } else {
    CK(kvc_fill_normal(B->c, S->kv.k, dt, el, seed, 1.0f, &e_));
    CK(kvc_fill_normal(B->c, S->kv.v, dt, el, seed + 1, 1.0f, &e_));
    CK(kvc_fill_normal(B->c, S->d_q, 0, (int64_t)n_req * s.n_heads * s.head_dim, seed + 2, 1.0f, &e_));
  }
  CK(kvc_meta_build(B->c, &S->kv, &S->b, &e_));
  CK(kvc_sync(B->c, &e_));
  return 0;
}

/* Kinds of timed op. */
enum { OP_DENSE, OP_TOPK, OP_PSA_PIPE, OP_PSA_HOST };

typedef struct {
  double ms, sel_ms, att_ms;   /* medians */
  double blocks_read, blocks_fetched; /* mean per pair */
} timing;

static int run_op(bench *B, setup *S, int op, const attn_method *m, kvc_sparse_out *so,
                  kv_error *err) {
  if (op == OP_DENSE) return kvc_dense(B->c, &S->s, &S->kv, &S->b, S->d_out, NULL, err);
  if (op == OP_TOPK) return kvc_topk(B->c, &S->s, m, &S->kv, &S->b, S->d_out, so, err);
  kvc_psa_opts o;
  kvc_psa_opts_defaults(&o);
  o.mode = op == OP_PSA_HOST ? KVC_PSA_HOSTSYNC : KVC_PSA_PIPELINED;
  return kvc_psa(B->c, &S->s, m, &S->kv, &S->b, &o, S->d_out, so, NULL, err);
}

static timing time_op(bench *B, setup *S, int op, const attn_method *m) {
  kv_error e_ = {0};
  timing t = {0};
  const int pairs = S->b.n_req * S->s.n_kv_heads;
  void *d_br = NULL, *d_fe = NULL;
  kvc_sparse_out so = {0};
  if (op != OP_DENSE) {
    CK(kvc_malloc(B->c, &d_br, (size_t)pairs * 4, &e_));
    CK(kvc_malloc(B->c, &d_fe, (size_t)pairs * 4, &e_));
    so.blocks_read = d_br;
    so.blocks_fetched = d_fe;
  }
  CK(run_op(B, S, op, m, op == OP_DENSE ? NULL : &so, &e_)); /* warm-up: scratch, module load */
  CK(kvc_sync(B->c, &e_));
  kvc_graph *g = NULL;
  if (op == OP_PSA_PIPE || op == OP_DENSE) { /* the whole step as one graph: no launch gaps */
    int rc = kvc_graph_begin(B->c, &e_);
    if (!rc) {
      int rc2 = run_op(B, S, op, m, op == OP_DENSE ? NULL : &so, &e_);
      kv_error e2 = {0};
      rc = kvc_graph_end(B->c, &g, &e2);
      if (rc2) rc = rc2;
      else if (rc) e_ = e2;
    }
    if (rc) { /* time plain launches instead, and say so */
      fprintf(stderr, "kvbench: graph capture failed (%s): timing plain launches\n", e_.msg);
      kvc_graph_free(g);
      g = NULL;
      CK(kvc_sync(B->c, &e_));
    }
  }
  double *ts = malloc((size_t)B->reps * sizeof *ts), *ss = malloc((size_t)B->reps * sizeof *ss);
  double *as = malloc((size_t)B->reps * sizeof *as);
  int have_phase = 0;
  for (int i = 0; i < B->reps; i++) {
    CK(kvc_l2_flush(B->c, &e_));
    CK(kvc_time_begin(B->c, &e_));
    if (g) CK(kvc_graph_launch(B->c, g, &e_));
    else CK(run_op(B, S, op, m, op == OP_DENSE ? NULL : &so, &e_));
    CK(kvc_time_end(B->c, &ts[i], &e_));
    if (op == OP_TOPK || op == OP_PSA_HOST) {
      have_phase = kvc_phase_times(B->c, &ss[i], &as[i], &e_) == 0;
    }
  }
  if (op == OP_PSA_PIPE) { /* phases from plain (not captured) runs */
    for (int i = 0; i < B->reps; i++) {
      CK(kvc_l2_flush(B->c, &e_));
      CK(run_op(B, S, op, m, &so, &e_));
      have_phase = kvc_phase_times(B->c, &ss[i], &as[i], &e_) == 0;
    }
  }
  qsort(ts, (size_t)B->reps, sizeof *ts, cmp_d);
  t.ms = ts[B->reps / 2];
  if (have_phase) {
    qsort(ss, (size_t)B->reps, sizeof *ss, cmp_d);
    qsort(as, (size_t)B->reps, sizeof *as, cmp_d);
    t.sel_ms = ss[B->reps / 2];
    t.att_ms = as[B->reps / 2];
  } else {
    t.sel_ms = t.att_ms = NAN;
  }
  if (op != OP_DENSE) {
    int32_t *br = malloc((size_t)pairs * 4), *fe = malloc((size_t)pairs * 4);
    CK(kvc_d2h(B->c, br, d_br, (size_t)pairs * 4, &e_));
    CK(kvc_d2h(B->c, fe, d_fe, (size_t)pairs * 4, &e_));
    for (int i = 0; i < pairs; i++) t.blocks_read += br[i], t.blocks_fetched += fe[i];
    t.blocks_read /= pairs;
    t.blocks_fetched /= pairs;
    free(br), free(fe);
  }
  kvc_graph_free(g);
  kvc_free(B->c, d_br), kvc_free(B->c, d_fe);
  free(ts), free(ss), free(as);
  return t;
}

static void row(bench *B, const char *sec, const char *dt, int batch, int len, const char *method,
                double us, double bytes, double sdpa_us, const char *note) {
  const double gbps = bytes / (us * 1e-6) / 1e9;
  printf("%-6s %-4s %4d %7d %-22s %10.1f %10.2f %8.0f %6.2f %9.1f  %s\n", sec, dt, batch, len,
         method, us, bytes / 1e6, gbps, gbps / B->copy_gbps, sdpa_us, note);
  if (B->csv) {
    fprintf(B->csv, "%s,%s,%d,%d,%s,%.3f,%.0f,%.1f,%.4f,%.3f,%s\n", sec, dt, batch, len, method,
            us, bytes, gbps, gbps / B->copy_gbps, sdpa_us, note);
  }
}

static void target(bench *B, int ok, const char *fmt, double have, double want) {
  B->targets_checked++;
  if (!ok) B->targets_missed++;
  printf("  target %-58s %s (%.3g vs %.3g)\n", fmt, ok ? "met" : "MISSED", have, want);
}

static void bench_dense(bench *B) {
  const attn_shape s = {32, 8, 128};
  const int batches[5] = {1, 8, 16, 32, 64}, lens[4] = {4096, 16384, 32768, 131072};
  printf("\n== dense decode (Hq 32 / Hkv 8 / D 128; bytes = K+V read) ==\n");
  for (int bi = 0; bi < 5; bi++) {
    for (int li = 0; li < 4; li++) {
      const int batch = batches[bi], len = lens[li];
      if ((double)batch * len * 8 * 128 * 4 > 36e9) continue; /* memory */
      if (B->quick && (len == 131072 || batch == 16)) continue;
      for (int dt = 2; dt >= 1; dt--) {
        if (dt == 1 && !(batch == 8 && len == 32768) && !(batch == 1 && len == 32768)) continue;
        int *ls = malloc((size_t)batch * sizeof *ls);
        for (int i = 0; i < batch; i++) ls[i] = len;
        setup S;
        if (setup_make(B, &S, s, (kvc_dtype)dt, batch, ls, 0, 1000 + (uint64_t)bi * 10 + li)) {
          free(ls);
          continue;
        }
        timing t = time_op(B, &S, OP_DENSE, NULL);
        const double us = t.ms * 1e3, sd = sdpa_lookup(B, batch, len, dt == 2);
        row(B, "dense", dt == 2 ? "bf16" : "fp16", batch, len, "dense", us, (double)S.kv_bytes, sd, "");
        const double ratio = (double)S.kv_bytes / (us * 1e-6) / 1e9 / B->copy_gbps;
        if (batch >= 8 && len >= 16384) {
          char what[128];
          snprintf(what, sizeof what, "dense B%d L%d %s >= 0.90 x copy", batch, len, dt == 2 ? "bf16" : "fp16");
          target(B, ratio >= 0.90, what, ratio, 0.90);
        }
        if (!isnan(sd)) {
          char what[128];
          snprintf(what, sizeof what, "dense B%d L%d %s not slower than SDPA (us)", batch, len, dt == 2 ? "bf16" : "fp16");
          target(B, us <= sd, what, us, sd);
        }
        setup_free(B, &S);
        free(ls);
      }
    }
  }
}

static double meta_bytes(const setup *S, const attn_method *m, int selection_only) {
  (void)selection_only;
  int vecs = 0, set = kvc_method_meta(m);
  for (int i = 0; i < 4; i++) vecs += (set >> i) & 1;
  double nb = 0;
  for (int r = 0; r < S->b.n_req; r++) nb += (double)kvc_n_blocks(S->h_len[r], 16);
  return nb * S->s.n_kv_heads * vecs * S->s.head_dim * 2;
}

static void bench_topk(bench *B) {
  const attn_shape s = {32, 8, 128};
  const int batches[3] = {1, 8, 32}, budgets[4] = {512, 1024, 2048, 4096};
  const int len = 32768;
  printf("\n== top-k (bf16, L 32K; bytes: selected K+V (+ min/max metadata for the whole op)) ==\n");
  for (int bi = 0; bi < 3; bi++) {
    int *ls = malloc((size_t)batches[bi] * sizeof *ls);
    for (int i = 0; i < batches[bi]; i++) ls[i] = len;
    setup S;
    if (setup_make(B, &S, s, KVC_DTYPE_BF16, batches[bi], ls, 1, 2000 + (uint64_t)bi)) {
      free(ls);
      continue;
    }
    for (int k = 0; k < 4; k++) {
      if (B->quick && (budgets[k] == 1024 || budgets[k] == 4096)) continue;
      attn_method m;
      attn_method_defaults(&m, ATTN_TOPK);
      m.token_budget = budgets[k];
      timing t = time_op(B, &S, OP_TOPK, &m);
      const double kvb = t.blocks_read * 16 * 128 * 2 * 2 * S.b.n_req * 8;
      char name[64];
      snprintf(name, sizeof name, "topk-%d", budgets[k]);
      row(B, "topk", "bf16", batches[bi], len, name, t.ms * 1e3, kvb + meta_bytes(&S, &m, 0), NAN, "whole op");
      snprintf(name, sizeof name, "topk-%d attend", budgets[k]);
      row(B, "topk", "bf16", batches[bi], len, name, t.att_ms * 1e3, kvb, NAN, "attention phase");
      const double r = kvb / (t.att_ms * 1e-3) / 1e9 / B->copy_gbps;
      char what[128];
      snprintf(what, sizeof what, "topk-%d B%d attention >= 0.75 x copy", budgets[k], batches[bi]);
      target(B, r >= 0.75, what, r, 0.75);
    }
    setup_free(B, &S);
    free(ls);
  }
}

static void bench_psa_one(bench *B, setup *S, const char *dt, int len, double eps, const char *data) {
  attn_method m;
  attn_method_defaults(&m, ATTN_PSA);
  m.epsilon = eps;
  timing tp = time_op(B, S, OP_PSA_PIPE, &m);
  timing th = time_op(B, S, OP_PSA_HOST, &m);
  const int pairs = S->b.n_req * S->s.n_kv_heads;
  const double blk = 16.0 * S->s.head_dim * 2 * 2;
  const double read = tp.blocks_read * blk * pairs + meta_bytes(S, &m, 0);
  const double fetched = tp.blocks_fetched * blk * pairs + meta_bytes(S, &m, 0);
  char name[96], note[160];
  snprintf(name, sizeof name, "psa-%.2f pipelined", eps);
  snprintf(note, sizeof note, "%s; blocks/pair read %.1f fetched %.1f of %d", data, tp.blocks_read,
           tp.blocks_fetched, (int)kvc_n_blocks(len, 16));
  row(B, "psa", dt, S->b.n_req, len, name, tp.ms * 1e3, read, NAN, note);
  snprintf(name, sizeof name, "psa-%.2f pipe attend", eps);
  row(B, "psa", dt, S->b.n_req, len, name, tp.att_ms * 1e3, tp.blocks_fetched * blk * pairs, NAN,
      "attention phase over bytes fetched");
  snprintf(name, sizeof name, "psa-%.2f hostsync", eps);
  row(B, "psa", dt, S->b.n_req, len, name, th.ms * 1e3, read, NAN, data);
  const double r = tp.blocks_fetched * blk * pairs / (tp.att_ms * 1e-3) / 1e9 / B->copy_gbps;
  char what[160];
  snprintf(what, sizeof what, "psa-%.2f B%d L%d attention >= 0.75 x copy", eps, S->b.n_req, len);
  target(B, r >= 0.75, what, r, 0.75);
  if (len == 32768) {
    const double bound_us = 1.3 * fetched / (B->copy_gbps * 1e9) * 1e6 + 10.0;
    snprintf(what, sizeof what, "psa-%.2f B%d step <= 1.3 x bytes/copy + 10 us (us)", eps, S->b.n_req);
    target(B, tp.ms * 1e3 <= bound_us, what, tp.ms * 1e3, bound_us);
    snprintf(what, sizeof what, "psa-%.2f B%d pipelined >= 2x host-synced (speedup)", eps, S->b.n_req);
    target(B, th.ms / tp.ms >= 2.0, what, th.ms / tp.ms, 2.0);
  }
  (void)fetched;
}

static void bench_psa(bench *B) {
  const attn_shape s = {32, 8, 128};
  const int batches[3] = {1, 8, 32};
  const double eps[3] = {0.9, 0.95, 0.99};
  printf("\n== PSA (bf16, heavy-tailed synthetic, L 32K; bytes: K+V of blocks + metadata) ==\n");
  for (int bi = 0; bi < 3; bi++) {
    if (B->quick && bi == 2) continue;
    int *ls = malloc((size_t)batches[bi] * sizeof *ls);
    for (int i = 0; i < batches[bi]; i++) ls[i] = 32768;
    setup S;
    if (setup_make(B, &S, s, KVC_DTYPE_BF16, batches[bi], ls, 1, 3000 + (uint64_t)bi)) {
      free(ls);
      continue;
    }
    for (int e = 0; e < 3; e++) bench_psa_one(B, &S, "bf16", 32768, eps[e], "synthetic");
    setup_free(B, &S);
    free(ls);
  }
}

/* Recorded Q/K/V exported by qkv_to_raw.py: DIR/meta.txt ("n_layers Hq Hkv D"), then per layer
 * l: DIR/layer<l>.txt ("n_tokens n_positions" and the positions), K<l>.f32, V<l>.f32, Q<l>.f32. */
static void bench_recorded(bench *B, const char *dir) {
  char p[4096];
  snprintf(p, sizeof p, "%s/meta.txt", dir);
  FILE *f = fopen(p, "r");
  int nl, hq, hkv, d;
  if (!f || fscanf(f, "%d %d %d %d", &nl, &hq, &hkv, &d) != 4) {
    fprintf(stderr, "kvbench: %s: no recorded data\n", p);
    if (f) fclose(f);
    return;
  }
  fclose(f);
  printf("\n== PSA and top-k on recorded Q/K/V (%s: %d layers, Hq %d / Hkv %d / D %d, bf16) ==\n", dir, nl, hq, hkv, d);
  const attn_shape s = {hq, hkv, d};
  for (int l = 0; l < nl; l++) {
    int64_t nt, np;
    snprintf(p, sizeof p, "%s/layer%d.txt", dir, l);
    f = fopen(p, "r");
    if (!f || fscanf(f, "%lld %lld", (long long *)&nt, (long long *)&np) != 2) {
      if (f) fclose(f);
      continue;
    }
    int64_t *pos = malloc((size_t)np * sizeof *pos);
    for (int64_t i = 0; i < np; i++) {
      if (fscanf(f, "%lld", (long long *)&pos[i]) != 1) pos[i] = nt - 1;
    }
    fclose(f);
    float *K = malloc((size_t)nt * hkv * d * 4), *V = malloc((size_t)nt * hkv * d * 4);
    float *Q = malloc((size_t)np * hq * d * 4);
    const char *nm[3] = {"K", "V", "Q"};
    float *arr[3] = {K, V, Q};
    size_t cnt[3] = {(size_t)nt * hkv * d, (size_t)nt * hkv * d, (size_t)np * hq * d};
    int ok = 1;
    for (int a = 0; a < 3; a++) {
      snprintf(p, sizeof p, "%s/%s%d.f32", dir, nm[a], l);
      FILE *g = fopen(p, "rb");
      ok &= g && fread(arr[a], 4, cnt[a], g) == cnt[a];
      if (g) fclose(g);
    }
    /* Requests = every recorded position (up to 64), each over keys 0..pos. */
    const int n_req = np < 64 ? (int)np : 64;
    int *ls = malloc((size_t)n_req * sizeof *ls);
    for (int i = 0; i < n_req; i++) ls[i] = (int)pos[np - n_req + i] + 1;
    setup S;
    if (ok && setup_make(B, &S, s, KVC_DTYPE_BF16, n_req, ls, 0, 4000 + (uint64_t)l) == 0) {
      kv_error e_ = {0};
      for (int i = 0; i < n_req; i++) {
        CK(kvc_kv_upload(B->c, &S.kv, S.h_bt + (size_t)i * S.b.max_blocks, K, V, ls[i], &e_));
      }
      CK(kvc_h2d(B->c, S.d_q, Q + (size_t)(np - n_req) * hq * d, (size_t)n_req * hq * d * 4, &e_));
      CK(kvc_meta_build(B->c, &S.kv, &S.b, &e_));
      char data[64];
      snprintf(data, sizeof data, "recorded layer %d", l);
      const double eps[3] = {0.9, 0.95, 0.99};
      for (int e = 0; e < 3; e++) bench_psa_one(B, &S, "bf16", ls[n_req - 1], eps[e], data);
      setup_free(B, &S);
    }
    free(ls), free(K), free(V), free(Q), free(pos);
  }
}

static void bench_gemm(bench *B, const char *path) {
  FILE *f = path ? fopen(path, "w") : NULL;
  if (f) fprintf(f, "m,n,k,dtype,ms,tflops\n");
  const int ms[6] = {1, 16, 64, 256, 1024, 4096};
  const int nk[4][2] = {{4096, 4096}, {6144, 4096}, {28672, 4096}, {4096, 14336}};
  printf("\n== cuBLAS GEMM (bf16 in/out, fp32 accumulate) for the cost model ==\n");
  printf("%6s %6s %6s %10s %8s\n", "m", "n", "k", "ms", "TFLOP/s");
  for (int i = 0; i < 6; i++) {
    for (int j = 0; j < 4; j++) {
      kv_error e_ = {0};
      double t;
      CK(kvc_gemm_time(B->c, KVC_DTYPE_BF16, ms[i], nk[j][0], nk[j][1], B->reps, &t, &e_));
      const double tf = 2.0 * ms[i] * nk[j][0] * nk[j][1] / (t * 1e-3) / 1e12;
      printf("%6d %6d %6d %10.4f %8.1f\n", ms[i], nk[j][0], nk[j][1], t, tf);
      if (f) fprintf(f, "%d,%d,%d,bf16,%.6f,%.3f\n", ms[i], nk[j][0], nk[j][1], t, tf);
    }
  }
  if (f) fclose(f);
}

int main(int argc, char **argv) {
  bench B;
  memset(&B, 0, sizeof B);
  B.reps = 20;
  const char *sdpa = NULL, *csv = NULL, *gemm = NULL, *raw = NULL;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--quick")) B.quick = 1;
    else if (!strcmp(argv[i], "--reps") && i + 1 < argc) B.reps = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--sdpa") && i + 1 < argc) sdpa = argv[++i];
    else if (!strcmp(argv[i], "--csv") && i + 1 < argc) csv = argv[++i];
    else if (!strcmp(argv[i], "--gemm-csv") && i + 1 < argc) gemm = argv[++i];
    else if (!strcmp(argv[i], "--raw") && i + 1 < argc) raw = argv[++i];
    else {
      fprintf(stderr, "usage: kvbench [--quick] [--reps N] [--sdpa FILE] [--csv FILE] "
                      "[--gemm-csv FILE] [--raw DIR]\n");
      return 2;
    }
  }
  if (B.reps < 3) B.reps = 3;
  if (kvc_device_count() < 1) {
    fprintf(stderr, "kvbench: no CUDA device present\n");
    return 77;
  }
  kv_error e_ = {0};
  CK(kvc_ctx_init(&B.c, 0, &e_));
  kvc_device_info di;
  kvc_ctx_info(B.c, &di);
  printf("device: %s, sm_%d%d, %d SMs, L2 %lld MB, %.1f GB; driver %d runtime %d\n", di.name,
         di.cc_major, di.cc_minor, di.n_sm, (long long)di.l2_bytes >> 20, di.mem_bytes / 1e9,
         di.driver_version, di.runtime_version);
  CK(kvc_copy_bandwidth(B.c, (size_t)1 << 30, B.reps, &B.copy_gbps, &e_));
  printf("device-to-device copy (1 GiB, read + written): %.0f GB/s\n", B.copy_gbps);
  if (sdpa) load_sdpa(&B, sdpa);
  if (csv) {
    B.csv = fopen(csv, "w");
    if (!B.csv) DIE("cannot write %s", csv);
    fprintf(B.csv, "section,dtype,batch,len,method,us,bytes,gbps,ratio_copy,sdpa_us,note\n");
  }
  printf("%-6s %-4s %4s %7s %-22s %10s %10s %8s %6s %9s  %s\n", "sect", "type", "B", "L",
         "method", "us", "MB read", "GB/s", "x copy", "SDPA us", "note");
  bench_dense(&B);
  bench_topk(&B);
  bench_psa(&B);
  if (raw) bench_recorded(&B, raw);
  bench_gemm(&B, gemm);
  printf("\ntargets: %d checked, %d missed (copy bandwidth %.0f GB/s)\n", B.targets_checked,
         B.targets_missed, B.copy_gbps);
  if (B.csv) fclose(B.csv);
  kvc_ctx_free(B.c);
  return 0;
}

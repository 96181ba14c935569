/* kv-pool-compare — unified cross-layer KV block pool vs equal per-layer partitions (PSA's
 * "unified memory management"), from PSA budgets measured by the CPU reference on recorded Q/K/V.
 *
 * For every recorded layer and query position, PSA (CPU reference, kernels/attn.h) gives the
 * blocks each KV head reads; a decode step of a batch of B requests (B consecutive recorded
 * positions standing for B concurrent requests) needs, per layer, the sum over heads and requests.
 * kvc_pool_compare (kernels/cuda/kvc_pool.h) turns these needs into the capacity each scheme must
 * hold (blocks, peak memory), utilisation and overflow counts. Prints a table; -o writes a CSV.
 *
 * Usage: kv-pool-compare QKV.h5 [-e 0.9,0.95,0.99] [-p MAX_POSITIONS] [-B BATCH] [-o OUT.csv]
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attn.h"
#include "kv_fs.h"
#include "kvc_pool.h"
#include "qkv.h"

int main(int argc, char **argv) {
  double eps[16] = {0.9, 0.95, 0.99};
  int n_eps = 3, max_pos = 64, batch = 1;
  const char *out = NULL;
  int opt;
  while ((opt = getopt(argc, argv, "e:p:B:o:h")) != -1) {
    char *end;
    if (opt == 'e') {
      n_eps = 0;
      char *save = NULL;
      for (char *t = strtok_r(optarg, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        double v = strtod(t, &end);
        if (end == t || *end || !(v > 0 && v <= 1) || n_eps == 16) {
          fprintf(stderr, "kv-pool-compare: -e: '%s' is not an epsilon in (0, 1] (at most 16)\n", t);
          return 2;
        }
        eps[n_eps++] = v;
      }
    } else if (opt == 'p' || opt == 'B') {
      long v = strtol(optarg, &end, 10);
      if (end == optarg || *end || v < 1 || v > 1000000000L) {
        fprintf(stderr, "kv-pool-compare: -%c: '%s' is not a positive integer\n", opt, optarg);
        return 2;
      }
      if (opt == 'p') max_pos = (int)v;
      else batch = (int)v;
    } else if (opt == 'o') {
      out = optarg;
    } else {
      fprintf(stderr, "usage: kv-pool-compare QKV.h5 [-e EPS_LIST] [-p MAX_POSITIONS] [-B BATCH] [-o OUT.csv]\n");
      return opt == 'h' ? 0 : 2;
    }
  }
  if (optind != argc - 1 || n_eps < 1) {
    fprintf(stderr, "usage: kv-pool-compare QKV.h5 [-e EPS_LIST] [-p MAX_POSITIONS] [-B BATCH] [-o OUT.csv]\n");
    return 2;
  }
  kv_error err = {0};
  if (out && kv_out_check(out, &err)) { /* refused before the work, not after */
    fprintf(stderr, "kv-pool-compare: %s\n", err.msg);
    return 1;
  }
  qkv_file *f;
  if (qkv_open(argv[optind], &f, &err)) {
    fprintf(stderr, "kv-pool-compare: %s\n", err.msg);
    return 1;
  }
  const qkv_model *md = qkv_file_model(f);
  const qkv_seq_info *si = qkv_file_seq(f, 0);
  const attn_shape s = {md->n_heads, md->n_kv_heads, md->head_dim};
  const int L = si->n_layers, Hq = s.n_heads, Hkv = s.n_kv_heads, G = Hq / Hkv;
  attn_method *ms = calloc((size_t)n_eps, sizeof *ms);
  for (int e = 0; e < n_eps; e++) {
    attn_method_defaults(&ms[e], ATTN_PSA);
    ms[e].epsilon = eps[e];
    if (attn_method_check(&ms[e], &err)) {
      fprintf(stderr, "kv-pool-compare: %s\n", err.msg);
      return 2;
    }
  }
  int64_t P = -1;
  int64_t *blocks = NULL; /* [eps, pos, layer] summed over KV heads */
  int64_t n_tok_max = 0;
  for (int li = 0; li < L; li++) {
    qkv_layer ql;
    if (qkv_read_layer(f, 0, si->layers[li], 0, &ql, &err)) {
      fprintf(stderr, "kv-pool-compare: %s\n", err.msg);
      return 1;
    }
    int64_t np = ql.n_positions < max_pos ? ql.n_positions : max_pos;
    if (P < 0) {
      P = np;
      blocks = calloc((size_t)n_eps * P * L, sizeof *blocks);
    } else if (np < P) {
      fprintf(stderr, "kv-pool-compare: layer %d has %lld positions, using %lld\n", si->layers[li],
              (long long)np, (long long)np);
      P = np;
    }
    /* Evenly spaced positions (the same indices in every layer). */
    int64_t *pos = malloc((size_t)P * sizeof *pos);
    float *Q = malloc((size_t)P * Hq * s.head_dim * sizeof *Q);
    for (int64_t i = 0; i < P; i++) {
      int64_t k = P == 1 ? ql.n_positions - 1 : i * (ql.n_positions - 1) / (P - 1);
      pos[i] = ql.positions[k];
      memcpy(Q + (size_t)i * Hq * s.head_dim, ql.Q + (size_t)k * Hq * s.head_dim, (size_t)Hq * s.head_dim * 4);
      if (pos[i] + 1 > n_tok_max) n_tok_max = pos[i] + 1;
    }
    attn_head_metrics *mh = malloc((size_t)n_eps * P * Hq * sizeof *mh);
    int64_t *bytes = malloc((size_t)n_eps * P * Hkv * sizeof *bytes);
    if (attn_eval_layer(&s, ms, n_eps, Q, pos, P, ql.K, ql.V, 2, 0, mh, bytes, NULL, NULL, &err)) {
      fprintf(stderr, "kv-pool-compare: layer %d: %s\n", si->layers[li], err.msg);
      return 1;
    }
    for (int e = 0; e < n_eps; e++) {
      for (int64_t i = 0; i < P; i++) {
        int64_t sum = 0;
        for (int h = 0; h < Hkv; h++) sum += mh[((size_t)e * P + i) * Hq + h * G].blocks_read;
        blocks[((size_t)e * P + i) * L + li] = sum;
      }
    }
    free(pos), free(Q), free(mh), free(bytes);
    qkv_layer_free(&ql);
  }
  kv_atomic_file csv_out; /* through the output helper: the CSV appears whole or not at all */
  FILE *csv = NULL;
  if (out) {
    if (kv_atomic_open(&csv_out, out, &err)) {
      fprintf(stderr, "kv-pool-compare: %s\n", err.msg);
      return 1;
    }
    csv = csv_out.f;
  }
  if (csv) fprintf(csv, "epsilon,batch,steps,layers,unified_blocks,equal_blocks,sized_blocks,unified_p99,equal_p99,sized_p99,unified_util,equal_util,sized_util,equal_overflow_steps,block_bytes\n");
  const int64_t bb = kvc_pool_block_bytes(16, s.head_dim, 2, 1);
  printf("kv-pool-compare: %s, model %s (%d layers recorded, Hq %d / Hkv %d / D %d), %lld positions "
         "up to %lld tokens, batch %d; block = 16 tokens of one KV head, K+V+mean fp16 = %lld B\n",
         argv[optind], md->name, L, Hq, Hkv, s.head_dim, (long long)P, (long long)n_tok_max, batch,
         (long long)bb);
  printf("%6s %6s | %9s %9s %9s | %9s %9s | %6s %6s %6s | %s\n", "eps", "steps", "unified", "equal",
         "per-layer", "MB unif", "MB equal", "u-util", "e-util", "s-util", "equal/unified");
  for (int e = 0; e < n_eps; e++) {
    const int64_t steps = P / batch;
    if (steps < 1) break;
    int64_t *need = calloc((size_t)steps * L, sizeof *need);
    for (int64_t t = 0; t < steps; t++) {
      for (int b = 0; b < batch; b++) {
        for (int l = 0; l < L; l++) need[t * L + l] += blocks[((size_t)e * P + t * batch + b) * L + l];
      }
    }
    kvc_pool_report r;
    if (kvc_pool_compare(need, steps, L, bb, &r, &err)) {
      fprintf(stderr, "kv-pool-compare: %s\n", err.msg);
      if (csv) kv_atomic_abort(&csv_out);
      return 1;
    }
    printf("%6.3g %6lld | %9lld %9lld %9lld | %9.2f %9.2f | %6.3f %6.3f %6.3f | %.2fx (p99 %.2fx); "
           "equal split of the unified capacity overflows in %lld of %lld steps\n",
           eps[e], (long long)steps, (long long)r.unified_blocks, (long long)r.equal_blocks,
           (long long)r.sized_blocks, r.unified_blocks * bb / 1e6, r.equal_blocks * bb / 1e6,
           r.unified_util, r.equal_util, r.sized_util,
           (double)r.equal_blocks / (double)r.unified_blocks,
           (double)r.equal_p99 / (double)r.unified_p99, (long long)r.equal_overflow_steps,
           (long long)steps);
    if (csv) {
      fprintf(csv, "%g,%d,%lld,%d,%lld,%lld,%lld,%lld,%lld,%lld,%.4f,%.4f,%.4f,%lld,%lld\n", eps[e],
              batch, (long long)steps, L, (long long)r.unified_blocks, (long long)r.equal_blocks,
              (long long)r.sized_blocks, (long long)r.unified_p99, (long long)r.equal_p99,
              (long long)r.sized_p99, r.unified_util, r.equal_util, r.sized_util,
              (long long)r.equal_overflow_steps, (long long)bb);
    }
    free(need);
  }
  if (csv && kv_atomic_commit(&csv_out, &err)) {
    fprintf(stderr, "kv-pool-compare: %s\n", err.msg);
    return 1;
  }
  free(blocks);
  free(ms);
  qkv_close(f);
  return 0;
}

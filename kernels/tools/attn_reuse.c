/* attn-reuse — how much of a decode step's KV block set the previous step also read: the block
 * reuse a GPU block cache can exploit between consecutive decode steps (sim_attn.h, reuse_csv).
 *
 *   attn-reuse QKV.h5 [-m METHODS] [-d MAX_STEPS] [-p MAX_POSITIONS] [-o OUT.csv] [-q]
 *
 * For each recorded layer and sequence, each sparse method runs on every recorded query (CPU
 * reference, kernels/attn.h) and keeps the set of blocks each KV head read. For recorded
 * positions i < j (j - i <= MAX_STEPS apart in the recording) it measures, per KV head,
 *   overlap     = |S_j ∩ S_i| / |S_j ∩ blocks that existed at p_i|
 *   overlap_all = |S_j ∩ S_i| / |S_j|
 * and reports their means per method, layer and position gap p_j - p_i, with size_corr, the
 * correlation of log(blocks read) at i and at j over the same pairs (KV heads and sequences
 * pooled, so it includes the persistence of a head's typical budget). Consecutive decode
 * steps are gap 1. Recordings usually hold queries tens of tokens apart, so the smallest gap
 * measured stands in for gap 1: if reuse falls as the gap grows (check the rows of larger gaps),
 * it is a lower bound of the reuse between consecutive steps. The CSV's first five columns
 * (method,layer,gap,pairs,overlap) are what kvsim reads ([attention] reuse_csv).
 */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attn.h"
#include "kv_fs.h"
#include "qkv.h"

static void usage(FILE *f) {
  fprintf(f,
          "usage: attn-reuse QKV.h5 [-m METHODS] [-d MAX_STEPS] [-p MAX_POSITIONS] [-o OUT.csv] "
          "[-q]\n\n"
          "  -m LIST   sparse methods (default topk:512,topk:1024,topk:2048,psa:0.9,psa:0.95,"
          "psa:0.99)\n"
          "  -d N      compare recorded positions up to N apart (default 3)\n"
          "  -p N      at most N queries per layer and sequence, evenly spaced (default all)\n"
          "  -o FILE   CSV output (default: stdout)\n"
          "  -q        no table on stderr\n");
}

typedef struct {
  double ov, ov_all, gap;
  int64_t pairs;
  double sx, sy, sxx, syy, sxy; /* log(blocks read) at i and at j, for size_corr */
} acc;

int main(int argc, char **argv) {
  const char *methods_arg = "topk:512,topk:1024,topk:2048,psa:0.9,psa:0.95,psa:0.99";
  const char *out = NULL;
  long max_d = 3, max_pos = 0;
  int quiet = 0, c;
  while ((c = getopt(argc, argv, "m:d:p:o:qh")) != -1) {
    char *end = NULL;
    switch (c) {
      case 'm': methods_arg = optarg; break;
      case 'o': out = optarg; break;
      case 'q': quiet = 1; break;
      case 'd':
      case 'p': {
        long v = strtol(optarg, &end, 10);
        if (!*optarg || *end || v < (c == 'd' ? 1 : 0)) {
          fprintf(stderr, "attn-reuse: -%c: bad value '%s'\n", c, optarg);
          return 2;
        }
        if (c == 'd') max_d = v;
        else max_pos = v;
        break;
      }
      case 'h': usage(stdout); return 0;
      default: usage(stderr); return 2;
    }
  }
  if (optind != argc - 1) {
    usage(stderr);
    return 2;
  }
  kv_error err = {0};
  attn_method ms[32];
  char labels[32][64];
  int nm = 0;
  {
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", methods_arg);
    char *save = NULL;
    for (char *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
      if (nm == 32 || attn_method_parse(t, &ms[nm], &err)) {
        fprintf(stderr, "attn-reuse: -m: %s\n", nm == 32 ? "too many methods" : err.msg);
        return 2;
      }
      if (ms[nm].kind != ATTN_TOPK && ms[nm].kind != ATTN_PSA) {
        fprintf(stderr, "attn-reuse: -m: '%s' is not a top-k or PSA method\n", t);
        return 2;
      }
      attn_method_label(&ms[nm], labels[nm], 64);
      nm++;
    }
  }
  qkv_file *f;
  if (qkv_open(argv[optind], &f, &err)) {
    fprintf(stderr, "attn-reuse: %s\n", err.msg);
    return 1;
  }
  const qkv_model *md = qkv_file_model(f);
  const attn_shape s = {md->n_heads, md->n_kv_heads, md->head_dim};
  const int Hkv = s.n_kv_heads;
  /* accumulators per (method, model layer, step distance d) */
  const int ML = md->n_layers > 0 ? md->n_layers : 1;
  acc *A = calloc((size_t)nm * ML * (max_d + 1), sizeof *A);
  int *seen_layer = calloc((size_t)ML, sizeof *seen_layer);
  if (!A || !seen_layer) {
    fprintf(stderr, "attn-reuse: out of memory\n");
    return 1;
  }
  int rc = 0;
  for (int q = 0; q < qkv_file_n_seqs(f) && !rc; q++) {
    const qkv_seq_info *si = qkv_file_seq(f, q);
    for (int k = 0; k < si->n_layers && !rc; k++) {
      qkv_layer l;
      if ((rc = qkv_read_layer(f, q, si->layers[k], 0, &l, &err))) break;
      if (l.layer < 0 || l.layer >= ML) {
        rc = kv_error_set(&err, KV_EFORMAT, "layer %d outside the model's %d layers", l.layer, ML);
        qkv_layer_free(&l);
        break;
      }
      seen_layer[l.layer] = 1;
      int64_t np = max_pos > 0 && l.n_positions > max_pos ? max_pos : l.n_positions;
      int64_t *pos = malloc((size_t)np * sizeof *pos), *src = malloc((size_t)np * sizeof *src);
      for (int64_t i = 0; i < np; i++) {
        src[i] = np == l.n_positions ? i : (np > 1 ? i * (l.n_positions - 1) / (np - 1) : 0);
        pos[i] = l.positions[src[i]];
      }
      for (int m = 0; m < nm && !rc; m++) {
        const int bs = ms[m].block_size;
        const int64_t maxb = (l.n_tokens + bs - 1) / bs;
        uint8_t *sets = calloc((size_t)np * Hkv * maxb, 1);
        if (!sets) {
          rc = kv_error_set(&err, KV_ENOMEM, "out of memory");
          break;
        }
        int failed = 0;
#pragma omp parallel for schedule(dynamic)
        for (int64_t i = 0; i < np; i++) {
          int ok = 0;
          kv_error e2 = {0};
          attn_blockmeta meta;
          attn_result r;
          int64_t nk = pos[i] + 1;
          if (attn_blockmeta_init(&meta, bs, Hkv, s.head_dim, nk, &e2) == 0) {
            if (attn_result_alloc(&r, &s, maxb, &e2) == 0) {
              if (attn_blockmeta_build(&meta, l.K, nk, &e2) == 0 &&
                  attn_decode(&s, &ms[m], l.Q + (size_t)src[i] * s.n_heads * s.head_dim, l.K, l.V,
                              nk, &meta, NULL, &r, &e2) == 0) {
                memcpy(sets + (size_t)i * Hkv * maxb, r.block_read, (size_t)Hkv * maxb);
                ok = 1;
              }
              attn_result_free(&r);
            }
            attn_blockmeta_free(&meta);
          }
          if (!ok) {
#pragma omp atomic write
            failed = 1;
          }
        }
        if (failed) {
          rc = kv_error_set(&err, KV_ENOMEM, "seq %d layer %d: a query failed (out of memory?)",
                            q, l.layer);
          free(sets);
          break;
        }
        for (int64_t i = 0; i < np; i++) {
          for (int64_t d = 1; d <= max_d && i + d < np; d++) {
            int64_t j = i + d, nbi = (pos[i] + 1 + bs - 1) / bs, nbj = (pos[j] + 1 + bs - 1) / bs;
            acc *a = &A[((size_t)m * ML + l.layer) * (max_d + 1) + d];
            for (int h = 0; h < Hkv; h++) {
              const uint8_t *si_ = sets + ((size_t)i * Hkv + h) * maxb;
              const uint8_t *sj = sets + ((size_t)j * Hkv + h) * maxb;
              int64_t both = 0, nj = 0, nj_old = 0;
              for (int64_t b = 0; b < nbj; b++) {
                if (!sj[b]) continue;
                nj++;
                if (b < nbi) {
                  nj_old++;
                  both += si_[b] != 0;
                }
              }
              if (nj_old == 0 || nj == 0) continue;
              int64_t ni = 0;
              for (int64_t b = 0; b < nbi; b++) ni += si_[b] != 0;
              double x = log((double)(ni > 0 ? ni : 1)), y = log((double)nj);
              a->sx += x, a->sy += y, a->sxx += x * x, a->syy += y * y, a->sxy += x * y;
              a->ov += (double)both / (double)nj_old;
              a->ov_all += (double)both / (double)nj;
              a->gap += (double)(pos[j] - pos[i]);
              a->pairs++;
            }
          }
        }
        free(sets);
      }
      free(pos);
      free(src);
      qkv_layer_free(&l);
    }
  }
  qkv_close(f);
  if (rc) {
    fprintf(stderr, "attn-reuse: %s\n", err.msg);
    free(A);
    free(seen_layer);
    return 1;
  }
  kv_atomic_file af;
  FILE *o = stdout;
  if (out) {
    if (kv_atomic_open(&af, out, &err)) {
      fprintf(stderr, "attn-reuse: %s\n", err.msg);
      return 1;
    }
    o = af.f;
  }
  fprintf(o, "# attn-reuse %s: block-set overlap between recorded decode positions (CPU "
             "reference); overlap = |S_j & S_i| / |S_j & blocks existing at p_i|\n", argv[optind]);
  fprintf(o, "method,layer,gap,pairs,overlap,overlap_all,size_corr\n");
  if (!quiet) fprintf(stderr, "%-20s %5s %8s %7s %8s %11s %9s\n", "method", "layer", "gap",
                      "pairs", "overlap", "overlap_all", "size_corr");
  for (int m = 0; m < nm; m++) {
    for (int ly = 0; ly < ML; ly++) {
      if (!seen_layer[ly]) continue;
      for (long d = 1; d <= max_d; d++) {
        const acc *a = &A[((size_t)m * ML + ly) * (max_d + 1) + d];
        if (a->pairs == 0) continue;
        double n = (double)a->pairs;
        double vx = a->sxx - a->sx * a->sx / n, vy = a->syy - a->sy * a->sy / n;
        double corr = vx > 1e-12 && vy > 1e-12 ? (a->sxy - a->sx * a->sy / n) / sqrt(vx * vy) : NAN;
        fprintf(o, "%s,%d,%.1f,%lld,%.6f,%.6f,%.4f\n", labels[m], ly, a->gap / n,
                (long long)a->pairs, a->ov / n, a->ov_all / n, corr);
        if (!quiet) fprintf(stderr, "%-20s %5d %8.1f %7lld %8.4f %11.4f %9.4f\n", labels[m], ly,
                            a->gap / n, (long long)a->pairs, a->ov / n, a->ov_all / n, corr);
      }
    }
  }
  free(A);
  free(seen_layer);
  if (out && kv_atomic_commit(&af, &err)) {
    fprintf(stderr, "attn-reuse: %s\n", err.msg);
    return 1;
  }
  return 0;
}

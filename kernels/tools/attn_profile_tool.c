/* attn-profile — measures how many KV tokens each attention method reads per decode step on
 * recorded Q/K/V, per layer and context length, and writes the attention profile the simulator
 * prices methods from (kernels/attn_profile.h; the binning, quantiles and fits are the library's
 * attn_profile_builder, this tool only reads the recording and runs attn_eval_layer).
 *
 * --check-split N: the extension rule's check. Fits the power law on queries with fewer than N
 * keys only, predicts the mean tokens read by queries with N keys or more, and prints the
 * relative error per method and layer (two context lengths of the same recording). */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attn.h"
#include "attn_profile.h"
#include "kv_progress.h"
#include "qkv.h"

static void usage(FILE *f) {
  fprintf(f,
          "usage: attn-profile [options] QKV.h5 -o PROFILE.h5\n"
          "\n"
          "  -m, --methods LIST   methods (default dense,topk:512,topk:1024,topk:2048,psa:0.9,\n"
          "                       psa:0.95,psa:0.99); see psa-compare --help for the syntax\n"
          "  -o, --out FILE       the profile (HDF5)\n"
          "      --bins N         context-length bins, log-spaced over the recorded range (4)\n"
          "      --quantiles N    quantiles per bin (21)\n"
          "      --check-split N  fit on queries with < N keys, predict those with >= N\n"
          "      --kernel-profile FILE  carry measured kernel timings (kvlab-kernel-profile,\n"
          "                       docs/kernels.md) in the profile, for the simulator\n"
          "  -p, --max-positions N  at most N queries per layer and sequence\n"
          "  -t, --threads N      OpenMP threads\n"
          "  -q, --quiet          no progress\n"
          "  -h, --help\n");
}

int main(int argc, char **argv) {
  const char *methods_arg = "dense,topk:512,topk:1024,topk:2048,psa:0.9,psa:0.95,psa:0.99";
  const char *out = NULL, *kprof = NULL;
  long bins = 4, nq = 21, split = 0, max_pos = 0, threads = 0;
  int quiet = 0;
  static const struct option opts[] = {
      {"methods", required_argument, 0, 'm'}, {"out", required_argument, 0, 'o'},
      {"bins", required_argument, 0, 'B'},    {"quantiles", required_argument, 0, 'Q'},
      {"check-split", required_argument, 0, 'S'}, {"max-positions", required_argument, 0, 'p'},
      {"threads", required_argument, 0, 't'}, {"quiet", no_argument, 0, 'q'},
      {"kernel-profile", required_argument, 0, 'K'},
      {"help", no_argument, 0, 'h'},          {0, 0, 0, 0}};
  int c;
  while ((c = getopt_long(argc, argv, "m:o:p:t:qh", opts, NULL)) != -1) {
    char *end;
    long v;
    switch (c) {
      case 'm': methods_arg = optarg; break;
      case 'o': out = optarg; break;
      case 'K': kprof = optarg; break;
      case 'q': quiet = 1; break;
      case 'h': usage(stdout); return 0;
      case 'B': case 'Q': case 'S': case 'p': case 't':
        errno = 0;
        v = strtol(optarg, &end, 10);
        if (end == optarg || *end || errno || v < 0 || (c == 'B' && v < 1) || (c == 'Q' && v < 2)) {
          fprintf(stderr, "attn-profile: %s: bad value '%s'\n", argv[optind - 1], optarg);
          return 2;
        }
        if (c == 'B') bins = v;
        else if (c == 'Q') nq = v;
        else if (c == 'S') split = v;
        else if (c == 'p') max_pos = v;
        else threads = v;
        break;
      default: usage(stderr); return 2;
    }
  }
  if (optind != argc - 1 || (!out && !split)) {
    fprintf(stderr, "attn-profile: expected one Q/K/V file and -o PROFILE.h5 (see --help)\n");
    return 2;
  }
  kv_error err = {0};
  attn_method methods[64];
  int nm = 0;
  {
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", methods_arg);
    char *save = NULL;
    for (char *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
      if (nm == 64 || attn_method_parse(t, &methods[nm], &err)) {
        fprintf(stderr, "attn-profile: --methods: %s\n", nm == 64 ? "too many" : err.msg);
        return 2;
      }
      nm++;
    }
  }
  qkv_file *f;
  if (qkv_open(argv[optind], &f, &err)) {
    fprintf(stderr, "attn-profile: %s\n", err.msg);
    return 1;
  }
  const qkv_model *mdl = qkv_file_model(f);
  attn_shape s = {mdl->n_heads, mdl->n_kv_heads, mdl->head_dim};
  const int Hq = s.n_heads, Hkv = s.n_kv_heads;
  /* Distinct recorded layers over all sequences (the builder sorts them). */
  int32_t layers[1024];
  int L = 0;
  for (int q = 0; q < qkv_file_n_seqs(f); q++) {
    const qkv_seq_info *si = qkv_file_seq(f, q);
    for (int k = 0; k < si->n_layers; k++) {
      int seen = 0;
      for (int i = 0; i < L; i++) seen |= layers[i] == si->layers[k];
      if (!seen && L < 1024) layers[L++] = si->layers[k];
    }
  }
  attn_profile_builder bld;
  if (attn_profile_builder_init(&bld, methods, nm, layers, L, &err)) {
    fprintf(stderr, "attn-profile: %s\n", err.msg);
    return 2;
  }
  int64_t total = 0;
  int eb = 2;
  for (int q = 0; q < qkv_file_n_seqs(f); q++) {
    const qkv_seq_info *si = qkv_file_seq(f, q);
    int64_t np = 0;
    for (int k = 0; k < si->n_layers; k++) {
      qkv_layer l;
      if (qkv_read_layer(f, q, si->layers[k], 0, &l, &err)) {
        fprintf(stderr, "attn-profile: %s\n", err.msg);
        return 1;
      }
      np = l.n_positions;
      qkv_layer_free(&l);
      total += max_pos > 0 && np > max_pos ? max_pos : np;
    }
  }
  kv_progress prog;
  kv_progress_init(&prog, "attn-profile", total, quiet);
  for (int q = 0; q < qkv_file_n_seqs(f); q++) {
    const qkv_seq_info *si = qkv_file_seq(f, q);
    for (int k = 0; k < si->n_layers; k++) {
      qkv_layer l;
      if (qkv_read_layer(f, q, si->layers[k], 0, &l, &err)) {
        fprintf(stderr, "attn-profile: %s\n", err.msg);
        return 1;
      }
      eb = qkv_dtype_size(l.dtype);
      int64_t np = max_pos > 0 && l.n_positions > max_pos ? max_pos : l.n_positions;
      float *Q = malloc((size_t)np * Hq * s.head_dim * sizeof *Q);
      int64_t *pos = malloc((size_t)np * sizeof *pos);
      for (int64_t i = 0; i < np; i++) {
        int64_t src = np == l.n_positions ? i : (np > 1 ? i * (l.n_positions - 1) / (np - 1) : 0);
        pos[i] = l.positions[src];
        memcpy(Q + (size_t)i * Hq * s.head_dim, l.Q + (size_t)src * Hq * s.head_dim,
               (size_t)Hq * s.head_dim * sizeof *Q);
      }
      attn_head_metrics *mh = calloc((size_t)nm * np * Hq, sizeof *mh);
      int32_t *it = calloc((size_t)nm * np * Hkv, sizeof *it);
      /* in chunks of 8 queries, for the progress line */
      for (int64_t p0 = 0; p0 < np; p0 += 8) {
        int64_t pn = np - p0 < 8 ? np - p0 : 8;
        attn_head_metrics *mh2 = calloc((size_t)nm * pn * Hq, sizeof *mh2);
        int64_t *by2 = calloc((size_t)nm * pn * Hkv, sizeof *by2);
        int32_t *it2 = calloc((size_t)nm * pn * Hkv, sizeof *it2);
        if (attn_eval_layer(&s, methods, nm, Q + (size_t)p0 * Hq * s.head_dim, pos + p0, pn,
                            l.K, l.V, eb, (int)threads, mh2, by2, it2, NULL, &err)) {
          fprintf(stderr, "attn-profile: %s\n", err.msg);
          return 1;
        }
        for (int m = 0; m < nm; m++) {
          memcpy(mh + ((size_t)m * np + p0) * Hq, mh2 + (size_t)m * pn * Hq, (size_t)pn * Hq * sizeof *mh);
          memcpy(it + ((size_t)m * np + p0) * Hkv, it2 + (size_t)m * pn * Hkv, (size_t)pn * Hkv * sizeof *it);
        }
        free(mh2);
        free(by2);
        free(it2);
        kv_progress_add(&prog, pn);
      }
      if (attn_profile_builder_add(&bld, si->layers[k], &s, np, pos, mh, it, &err)) {
        fprintf(stderr, "attn-profile: %s\n", err.msg);
        return 1;
      }
      free(mh);
      free(it);
      free(Q);
      free(pos);
      qkv_layer_free(&l);
    }
  }
  kv_progress_finish(&prog);
  attn_profile p = {0};
  snprintf(p.source, sizeof p.source, "%s", argv[optind]);
  snprintf(p.model_name, sizeof p.model_name, "%s", mdl->name);
  p.model_layers = mdl->n_layers;
  p.n_heads = Hq;
  p.n_kv_heads = Hkv;
  p.head_dim = s.head_dim;
  p.elem_bytes = eb;
  if (attn_profile_builder_finish(&bld, (int)bins, (int)nq, &p, &err) ||
      (kprof && attn_profile_read_timings(kprof, &p, &err))) {
    fprintf(stderr, "attn-profile: %s\n", err.msg);
    return 1;
  }
  if (split) {
    printf("# check of the context-length extension: fit on queries with < %ld keys, predict the "
           "mean tokens read by queries with >= %ld keys\n", split, split);
    printf("%-24s %5s %9s %9s %9s %8s\n", "method", "layer", "fit_b", "predicted", "measured",
           "rel_err");
    for (int m = 0; m < nm; m++) {
      for (int li = 0; li < L; li++) {
        double b2, pred, meas;
        if (attn_profile_split_check(&bld, m, li, split, &b2, &pred, &meas)) {
          printf("%-24s %5d %9.3f %9.1f %9.1f %8.3f\n", p.methods[m].label, p.layers[li], b2,
                 pred, meas, (pred - meas) / meas);
        }
      }
    }
  }
  int rc = 0;
  if (out && attn_profile_write(out, &p, &err)) {
    fprintf(stderr, "attn-profile: %s\n", err.msg);
    rc = 1;
  }
  if (!rc && out && !quiet) {
    printf("# %s: %d methods x %d layers x %ld context bins [%lld, %lld] keys\n", out, nm, L, bins,
           (long long)bld.n_min, (long long)bld.n_max);
    printf("%-24s %5s %10s %8s %8s %8s\n", "method", "layer", "mean_frac", "fit_b", "mass", "err");
    for (int m = 0; m < nm; m++) {
      for (int li = 0; li < L; li++) {
        double mf = 0, cnt = 0;
        for (long b = 0; b < bins; b++) {
          mf += p.methods[m].t.mean_frac[(size_t)li * bins + b] * (double)p.methods[m].t.count[(size_t)li * bins + b];
          cnt += (double)p.methods[m].t.count[(size_t)li * bins + b];
        }
        printf("%-24s %5d %10.4f %8.3f %8.4f %8.4f\n", p.methods[m].label, p.layers[li],
               cnt ? mf / cnt : NAN, p.methods[m].t.fit_b[li], p.methods[m].t.mean_mass[li],
               p.methods[m].t.mean_err[li]);
      }
    }
  }
  attn_profile_builder_free(&bld);
  attn_profile_free(&p);
  qkv_close(f);
  return rc;
}

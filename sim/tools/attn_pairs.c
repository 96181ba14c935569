/* attn-pairs — methods of an attention profile at equal accuracy: for each fixed top-k budget,
 * the PSA method that reads the fewest tokens while its mean output error (relative L2 vs dense,
 * the profile's mean_err, averaged over the recorded layers) is no larger than the top-k's. These
 * are the pairs the serving experiments compare (docs/psa-serving.md).
 *
 *   attn-pairs PROFILE.h5 [-o OUT.csv]
 *
 * Prints every method (kind, mean error, mean fraction of the context read, weighted by the
 * queries of each layer and context bin), then the pairs. Reads the profile through the
 * simulator's reader (sim_attn_profile.h), as kvsim does. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "kv_fs.h"
#include "sim_attn_profile.h"

static double mean_err(const sim_attn_profile *p, int m) {
  double s = 0;
  for (int l = 0; l < p->n_layers; l++) s += p->methods[m].t.mean_err[l];
  return s / p->n_layers;
}

static double mean_frac(const sim_attn_profile *p, int m) {
  double s = 0, n = 0;
  for (int i = 0; i < p->n_layers * p->n_bins; i++) {
    s += p->methods[m].t.mean_frac[i] * (double)p->methods[m].t.count[i];
    n += (double)p->methods[m].t.count[i];
  }
  return n > 0 ? s / n : NAN;
}

int main(int argc, char **argv) {
  const char *out = NULL, *in = NULL;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "-o") && i + 1 < argc) out = argv[++i];
    else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
      printf("usage: attn-pairs PROFILE.h5 [-o OUT.csv]\n");
      return 0;
    } else if (!in && argv[i][0] != '-') in = argv[i];
    else {
      fprintf(stderr, "usage: attn-pairs PROFILE.h5 [-o OUT.csv]\n");
      return 2;
    }
  }
  if (!in) {
    fprintf(stderr, "usage: attn-pairs PROFILE.h5 [-o OUT.csv]\n");
    return 2;
  }
  kv_error err = {0};
  sim_attn_profile p;
  if (sim_attn_profile_read(in, &p, &err)) {
    fprintf(stderr, "attn-pairs: %s\n", err.msg);
    return 1;
  }
  printf("# %s: %d methods, %d recorded layers, contexts %lld-%lld keys\n", in, p.n_methods,
         p.n_layers, (long long)p.ctx_edges[0], (long long)p.ctx_edges[p.n_bins] - 1);
  printf("%-24s %-6s %10s %10s\n", "method", "kind", "mean_err", "mean_frac");
  for (int m = 0; m < p.n_methods; m++) {
    printf("%-24s %-6s %10.4f %10.4f\n", p.methods[m].desc.label, p.methods[m].desc.kind,
           mean_err(&p, m), mean_frac(&p, m));
  }
  kv_atomic_file af;
  FILE *o = NULL;
  if (out) {
    if (kv_atomic_open(&af, out, &err)) {
      fprintf(stderr, "attn-pairs: %s\n", err.msg);
      sim_attn_profile_free(&p);
      return 1;
    }
    o = af.f;
    fprintf(o, "# attn-pairs %s: PSA reading the fewest tokens at mean error <= the top-k's\n", in);
    fprintf(o, "topk,topk_err,topk_frac,psa,psa_err,psa_frac,frac_ratio\n");
  }
  printf("\n%-14s %9s %9s  %-20s %9s %9s %9s\n", "top-k", "err", "frac", "PSA at <= err", "err",
         "frac", "k/PSA");
  for (int t = 0; t < p.n_methods; t++) {
    if (strcmp(p.methods[t].desc.kind, "topk") != 0) continue;
    double et = mean_err(&p, t), ft = mean_frac(&p, t);
    int best = -1;
    for (int m = 0; m < p.n_methods; m++) {
      if (strcmp(p.methods[m].desc.kind, "psa") != 0 || mean_err(&p, m) > et) continue;
      if (best < 0 || mean_frac(&p, m) < mean_frac(&p, best)) best = m;
    }
    if (best < 0) {
      printf("%-14s %9.4f %9.4f  %-20s\n", p.methods[t].desc.label, et, ft, "(none as accurate)");
      if (o) fprintf(o, "%s,%.6f,%.6f,,,,\n", p.methods[t].desc.label, et, ft);
      continue;
    }
    double eb = mean_err(&p, best), fb = mean_frac(&p, best);
    printf("%-14s %9.4f %9.4f  %-20s %9.4f %9.4f %9.3f\n", p.methods[t].desc.label, et, ft,
           p.methods[best].desc.label, eb, fb, ft / fb);
    if (o) fprintf(o, "%s,%.6f,%.6f,%s,%.6f,%.6f,%.6f\n", p.methods[t].desc.label, et, ft,
                   p.methods[best].desc.label, eb, fb, ft / fb);
  }
  sim_attn_profile_free(&p);
  if (o && kv_atomic_commit(&af, &err)) {
    fprintf(stderr, "attn-pairs: %s\n", err.msg);
    return 1;
  }
  return 0;
}

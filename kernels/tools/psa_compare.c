/* psa-compare — dense vs fixed top-k vs PSA on recorded Q/K/V (CPU reference).
 *
 * Runs every method for every recorded query of the chosen sequences and layers of a Q/K/V HDF5
 * file (kernels/qkv.h), prints a table of KV read vs mass covered vs output error per method and
 * layer, and writes the per-(query, head) records to <out>.csv and <out>.h5 plus a summary
 * <out>-summary.csv. Also: --stats (tokens needed for 90/95/99% of the mass per layer and head),
 * --validate (full file check), --synthetic (write a seeded synthetic file).
 */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "attn.h"
#include "kv_fs.h"
#include "kv_h5.h"
#include "kv_progress.h"
#include "qkv.h"

#define MAX_METHODS 256
#define MAX_LIST 64

static void usage(FILE *f) {
  fprintf(f,
          "usage: psa-compare [options] QKV.h5\n"
          "       psa-compare --validate QKV.h5\n"
          "       psa-compare --synthetic OUT.h5 [--seed N] [--tokens N] [--n-layers N]\n"
          "\n"
          "Compares dense attention, fixed top-k (Quest-style) and Progressive Sparse Attention\n"
          "on recorded queries (CPU reference, exact). Methods come from -m and from the lists.\n"
          "\n"
          "  -m, --methods LIST     comma-separated method specs: dense, topk:<tokens>[:mean|:sum],\n"
          "                         psa:<eps>[:mean|:bound|:lognormal][:selfcal][:rank=quest]\n"
          "                         [:group=N][:cap=N][:minrank=N][:ucb=X][:gqa=head],\n"
          "                         oracle:<eps>[:group=N][:cap=N]; bs=N sink=N recent=N for\n"
          "                         every sparse method (kernels/attn_method.h)\n"
          "  -b, --budgets LIST     add topk:<b> for each budget (tokens)\n"
          "  -e, --epsilons LIST    add psa:<eps> for each epsilon and each --estimates entry\n"
          "      --estimates LIST   PSA mass estimates for -e (default: mean)\n"
          "      --block-sizes LIST block sizes applied to every sparse method (default: 16)\n"
          "      --groups LIST      PSA blocks per iteration (default: 4)\n"
          "      --oracle           add oracle:<eps> for each -e epsilon\n"
          "  -l, --layers LIST      model layers to use (default: all recorded)\n"
          "  -s, --seqs LIST        sequence indices (default: all)\n"
          "  -p, --max-positions N  use at most N queries per layer (evenly spaced)\n"
          "  -t, --threads N        OpenMP threads (default: all cores)\n"
          "      --elem-bytes N     bytes per K/V element for byte counts (default: the file's)\n"
          "  -o, --out PREFIX       write PREFIX.csv, PREFIX.h5 and PREFIX-summary.csv (checked\n"
          "                         to be writable before anything is computed)\n"
          "      --stats            print tokens needed for 90/95/99%% of the mass per layer/head\n"
          "                         (with -o also PREFIX-stats.csv)\n"
          "  -q, --quiet            no progress on stderr\n"
          "  -h, --help             this text\n"
          "\n"
          "Token counts: kv_tokens is the KV head's block set, read once for its whole query\n"
          "group (what costs bytes); head_tokens is what the query head's own ranking asked for\n"
          "(equal to kv_tokens except with psa gqa=head, where the KV head reads the union).\n");
}

/* Parses a comma list of doubles into out (at most cap); returns count or -1. */
static int parse_doubles(const char *s, double *out, int cap) {
  char buf[4096];
  snprintf(buf, sizeof buf, "%s", s);
  int n = 0;
  char *save = NULL;
  for (char *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
    char *end;
    errno = 0;
    double v = strtod(t, &end);
    if (end == t || *end || errno || n == cap) return -1;
    out[n++] = v;
  }
  return n;
}

static int parse_ints(const char *s, long *out, int cap) {
  double d[MAX_LIST];
  int n = parse_doubles(s, d, cap < MAX_LIST ? cap : MAX_LIST);
  for (int i = 0; i < n; i++) {
    if (d[i] != floor(d[i]) || d[i] < 0 || d[i] > 1e12) return -1;
    out[i] = (long)d[i];
  }
  return n;
}

static int split_list(const char *s, char items[][128], int cap) {
  char buf[8192];
  snprintf(buf, sizeof buf, "%s", s);
  int n = 0;
  char *save = NULL;
  for (char *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
    if (n == cap || strlen(t) >= 128) return -1;
    snprintf(items[n++], 128, "%s", t);
  }
  return n;
}

typedef struct {
  int seq, layer;
  int64_t n_pos;
  int64_t *positions;
  attn_head_metrics *mh; /* [M, P, Hq] */
  int64_t *bytes;        /* [M, P, Hkv] */
  int32_t *iters;        /* [M, P, Hkv] */
  int64_t *need;         /* [P, Hq, 3] */
} layer_run;

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static double quantile(double *v, size_t n, double q) {
  if (n == 0) return NAN;
  qsort(v, n, sizeof *v, cmp_double);
  double pos = q * (double)(n - 1);
  size_t i = (size_t)pos;
  double f = pos - (double)i;
  return i + 1 < n ? v[i] * (1 - f) + v[i + 1] * f : v[i];
}

/* Sorted distinct layers of the runs. */
static int distinct_layers(const layer_run *runs, int nr, int *list) {
  int nl = 0;
  for (int r = 0; r < nr; r++) {
    int seen = 0;
    for (int i = 0; i < nl; i++) seen |= list[i] == runs[r].layer;
    if (!seen) list[nl++] = runs[r].layer;
  }
  for (int i = 1; i < nl; i++) {
    for (int j = i; j > 0 && list[j - 1] > list[j]; j--) {
      int t = list[j];
      list[j] = list[j - 1];
      list[j - 1] = t;
    }
  }
  return nl;
}

/* Prints the table (per method: all layers pooled, then each layer) and writes
 * <out>-summary.csv atomically. */
static int report_summary(const char *path, const qkv_model *model, const attn_shape *shape,
                          int eb, const attn_method *methods, char labels[][64], int nm,
                          const layer_run *runs, int nr, const char *out) {
  const int64_t Hq = shape->n_heads, Hkv = shape->n_kv_heads;
  static int layer_list[4096];
  int nl = distinct_layers(runs, nr, layer_list);
  kv_error err = {0};
  kv_atomic_file af;
  FILE *sumf = NULL;
  if (out) {
    char p[4096];
    snprintf(p, sizeof p, "%s-summary.csv", out);
    if (kv_atomic_open(&af, p, &err)) {
      fprintf(stderr, "psa-compare: %s\n", err.msg);
      return 1;
    }
    sumf = af.f;
    fprintf(sumf, "method,kind,layer,queries,mean_tokens_read,mean_kv_fraction,mean_bytes_read,"
                  "mean_mass_covered,p10_mass_covered,mean_rel_l2_err,p90_rel_l2_err,"
                  "mean_iterations,mean_head_tokens,calibration\n");
  }
  printf("# %s: model %s, %d query heads / %d KV heads x %d, %d-byte elements\n", path,
         model->name, model->n_heads, model->n_kv_heads, model->head_dim, eb);
  printf("# kv_tokens: mean tokens of the KV head's block set (read once per group); head_tok: "
         "tokens the query head's ranking asked for; kv_frac: of the context; mass: true "
         "softmax mass covered; err: relative L2 output error vs dense\n");
  printf("%-30s %5s %7s %9s %9s %8s %8s %8s %9s %9s\n", "method", "layer", "queries",
         "kv_tokens", "head_tok", "kv_frac", "mass", "mass_p10", "err_mean", "err_p90");
  for (int m = 0; m < nm; m++) {
    for (int li = -1; li < nl; li++) { /* li = -1: all layers pooled */
      size_t cnt = 0, qcnt = 0, k = 0;
      for (int r = 0; r < nr; r++) {
        if (li < 0 || runs[r].layer == layer_list[li]) cnt += (size_t)runs[r].n_pos * Hq;
      }
      double *errs = malloc((cnt ? cnt : 1) * sizeof *errs);
      double *mass = malloc((cnt ? cnt : 1) * sizeof *mass);
      if (!errs || !mass) {
        fprintf(stderr, "psa-compare: out of memory\n");
        return 1;
      }
      double tok = 0, htok = 0, frac = 0, msum = 0, esum = 0, bsum = 0, isum = 0, ncal = 0;
      const int progressive = attn_method_cost_class(&methods[m]) == ATTN_COST_PROGRESSIVE;
      for (int r = 0; r < nr; r++) {
        if (li >= 0 && runs[r].layer != layer_list[li]) continue;
        for (int64_t p = 0; p < runs[r].n_pos; p++) {
          qcnt++;
          for (int64_t h = 0; h < Hq; h++) {
            const attn_head_metrics *x = &runs[r].mh[((size_t)m * runs[r].n_pos + p) * Hq + h];
            tok += (double)x->tokens_read;
            htok += (double)x->tokens_head;
            frac += (double)x->tokens_read / (double)(runs[r].positions[p] + 1);
            msum += x->mass_covered;
            ncal += x->mass_covered >= methods[m].epsilon - 1e-12;
            esum += x->rel_l2_err;
            errs[k] = x->rel_l2_err;
            mass[k] = x->mass_covered;
            k++;
          }
          for (int64_t h = 0; h < Hkv; h++) {
            bsum += (double)runs[r].bytes[((size_t)m * runs[r].n_pos + p) * Hkv + h];
            isum += runs[r].iters[((size_t)m * runs[r].n_pos + p) * Hkv + h];
          }
        }
      }
      double nh = (double)(k ? k : 1), nkv = (double)(qcnt ? qcnt * (size_t)Hkv : 1);
      double p90 = quantile(errs, k, 0.9), p10m = quantile(mass, k, 0.1);
      char lay[16];
      if (li < 0) snprintf(lay, sizeof lay, "all");
      else snprintf(lay, sizeof lay, "%d", layer_list[li]);
      if (li < 0 || nl > 1) {
        printf("%-30s %5s %7zu %9.1f %9.1f %8.4f %8.4f %8.4f %9.5f %9.5f\n", labels[m], lay,
               qcnt, tok / nh, htok / nh, frac / nh, msum / nh, p10m, esum / nh, p90);
      }
      if (sumf) {
        fprintf(sumf, "%s,%s,%s,%zu,%.3f,%.6f,%.1f,%.6f,%.6f,%.6f,%.6f,%.3f,%.3f,%.6f\n", labels[m],
                attn_method_name(&methods[m]), lay, qcnt, tok / nh, frac / nh, bsum / nkv, msum / nh,
                p10m, esum / nh, p90, isum / nkv, htok / nh, progressive ? ncal / nh : NAN);
      }
      free(errs);
      free(mass);
    }
  }
  if (sumf && kv_atomic_commit(&af, &err)) {
    fprintf(stderr, "psa-compare: %s\n", err.msg);
    return 1;
  }
  return 0;
}

/* Per-(sequence, layer, query, head, method) records: <out>.csv and <out>.h5 (columns as
 * datasets under /records, with the source file and model as attributes). */
static int write_records(const char *out, const char *path, const qkv_model *model,
                         const attn_shape *shape, char labels[][64], int nm,
                         const layer_run *runs, int nr, int eb) {
  const int64_t Hq = shape->n_heads, Hkv = shape->n_kv_heads, G = Hq / Hkv;
  size_t n = 0;
  for (int r = 0; r < nr; r++) n += (size_t)nm * runs[r].n_pos * Hq;
  int32_t *c_seq = malloc(n * 4), *c_layer = malloc(n * 4), *c_method = malloc(n * 4);
  int32_t *c_head = malloc(n * 4), *c_iter = malloc(n * 4);
  int64_t *c_pos = malloc(n * 8), *c_tok = malloc(n * 8), *c_blk = malloc(n * 8), *c_bytes = malloc(n * 8);
  int64_t *c_htok = malloc(n * 8);
  double *c_mass = malloc(n * 8), *c_err = malloc(n * 8), *c_est = malloc(n * 8);
  if (!c_seq || !c_layer || !c_method || !c_head || !c_iter || !c_pos || !c_tok || !c_blk ||
      !c_bytes || !c_mass || !c_err || !c_est || !c_htok) {
    fprintf(stderr, "psa-compare: out of memory (%zu records)\n", n);
    return 1;
  }
  kv_error err = {0};
  kv_atomic_file af;
  char p[4096];
  snprintf(p, sizeof p, "%s.csv", out);
  if (kv_atomic_open(&af, p, &err)) {
    fprintf(stderr, "psa-compare: %s\n", err.msg);
    return 1;
  }
  fprintf(af.f, "seq,layer,position,n_keys,method,head,kv_head,tokens_read,blocks_read,"
                "kv_bytes_read,iterations,mass_covered,rel_l2_err,est_mass,head_tokens\n");
  size_t k = 0;
  for (int r = 0; r < nr; r++) {
    for (int m = 0; m < nm; m++) {
      for (int64_t q = 0; q < runs[r].n_pos; q++) {
        for (int64_t h = 0; h < Hq; h++) {
          const attn_head_metrics *x = &runs[r].mh[((size_t)m * runs[r].n_pos + q) * Hq + h];
          size_t kv = ((size_t)m * runs[r].n_pos + q) * Hkv + (size_t)(h / G);
          c_seq[k] = runs[r].seq;
          c_layer[k] = runs[r].layer;
          c_method[k] = m;
          c_head[k] = (int32_t)h;
          c_pos[k] = runs[r].positions[q];
          c_tok[k] = x->tokens_read;
          c_blk[k] = x->blocks_read;
          c_bytes[k] = runs[r].bytes[kv];
          c_iter[k] = runs[r].iters[kv];
          c_mass[k] = x->mass_covered;
          c_err[k] = x->rel_l2_err;
          c_est[k] = x->est_mass;
          c_htok[k] = x->tokens_head;
          fprintf(af.f, "%d,%d,%lld,%lld,%s,%lld,%lld,%lld,%lld,%lld,%d,%.9g,%.9g,%.9g,%lld\n",
                  runs[r].seq, runs[r].layer, (long long)c_pos[k], (long long)c_pos[k] + 1,
                  labels[m], (long long)h, (long long)(h / G), (long long)x->tokens_read,
                  (long long)x->blocks_read, (long long)c_bytes[k], c_iter[k], c_mass[k],
                  c_err[k], c_est[k], (long long)c_htok[k]);
          k++;
        }
      }
    }
  }
  if (kv_atomic_commit(&af, &err)) {
    fprintf(stderr, "psa-compare: %s\n", err.msg);
    return 1;
  }
  /* HDF5: written to a temporary name, renamed into place when complete. */
  char h5[4096];
  snprintf(h5, sizeof h5, "%s.h5", out);
  kv_atomic_file h5f;
  int rc = kv_atomic_reserve(&h5f, h5, &err);
  const char *tmp = h5f.tmp;
  hid_t fid = rc ? -1 : kv_h5_create(tmp, &err);
  if (!rc && fid < 0) rc = 1;
  hid_t g = rc ? -1 : H5Gcreate2(fid, "records", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  if (!rc && g < 0) rc = kv_error_set(&err, KV_EIO, "%s: cannot create /records", tmp);
  hsize_t dims[1] = {n};
  struct {
    const char *name;
    hid_t ft, mt;
    const void *buf;
  } cols[] = {
      {"seq", H5T_STD_I32LE, H5T_NATIVE_INT32, c_seq},
      {"layer", H5T_STD_I32LE, H5T_NATIVE_INT32, c_layer},
      {"position", H5T_STD_I64LE, H5T_NATIVE_INT64, c_pos},
      {"method", H5T_STD_I32LE, H5T_NATIVE_INT32, c_method},
      {"head", H5T_STD_I32LE, H5T_NATIVE_INT32, c_head},
      {"tokens_read", H5T_STD_I64LE, H5T_NATIVE_INT64, c_tok},
      {"blocks_read", H5T_STD_I64LE, H5T_NATIVE_INT64, c_blk},
      {"kv_bytes_read", H5T_STD_I64LE, H5T_NATIVE_INT64, c_bytes},
      {"iterations", H5T_STD_I32LE, H5T_NATIVE_INT32, c_iter},
      {"mass_covered", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, c_mass},
      {"rel_l2_err", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, c_err},
      {"est_mass", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, c_est},
      {"head_tokens", H5T_STD_I64LE, H5T_NATIVE_INT64, c_htok},
  };
  for (size_t i = 0; !rc && i < sizeof cols / sizeof cols[0]; i++) {
    rc = kv_h5_write(g, cols[i].name, cols[i].ft, cols[i].mt, 1, dims, cols[i].buf, tmp, &err);
  }
  /* Method labels as one newline-separated string attribute (index = the method column). */
  char *lab = malloc((size_t)nm * 65 + 1);
  if (lab) {
    lab[0] = '\0';
    for (int m = 0; m < nm; m++) {
      strcat(lab, labels[m]);
      strcat(lab, "\n");
    }
  }
  if (!rc) rc = kv_h5_attr_write_str(fid, "methods", lab ? lab : "", tmp, &err);
  if (!rc) rc = kv_h5_attr_write_str(fid, "source", path, tmp, &err);
  if (!rc) rc = kv_h5_attr_write_str(fid, "model_name", model->name, tmp, &err);
  if (!rc) rc = kv_h5_attr_write_i64(fid, "elem_bytes", eb, tmp, &err);
  if (!rc) rc = kv_h5_attr_write_str(fid, "kvlab_version", kv_version(), tmp, &err);
  free(lab);
  if (g >= 0) H5Gclose(g);
  if (fid >= 0 && H5Fclose(fid) < 0 && !rc) rc = kv_error_set(&err, KV_EIO, "%s: close failed", tmp);
  if (!rc) rc = kv_atomic_commit(&h5f, &err);
  else kv_atomic_abort(&h5f);
  free(c_seq); free(c_layer); free(c_method); free(c_head); free(c_iter); free(c_pos);
  free(c_tok); free(c_blk); free(c_bytes); free(c_mass); free(c_err); free(c_est); free(c_htok);
  if (rc) {
    fprintf(stderr, "psa-compare: %s\n", err.msg);
    return 1;
  }
  return 0;
}

/* Tokens needed for 90/95/99% of the mass, per layer and head (mean and percentiles over the
 * queries), printed and (with out) written to <out>-stats.csv. */
static int report_stats(const attn_shape *shape, const layer_run *runs, int nr, const char *out,
                        qkv_file *f) {
  const int64_t Hq = shape->n_heads;
  static int layer_list[4096];
  int nl = distinct_layers(runs, nr, layer_list);
  kv_error err = {0};
  kv_atomic_file af;
  FILE *sf = NULL;
  if (out) {
    char p[4096];
    snprintf(p, sizeof p, "%s-stats.csv", out);
    if (kv_atomic_open(&af, p, &err)) {
      fprintf(stderr, "psa-compare: %s\n", err.msg);
      return 1;
    }
    sf = af.f;
    fprintf(sf, "text_kind,layer,head,queries,mean_context,mean_tokens_90,mean_tokens_95,"
                "mean_tokens_99,p10_tokens_95,p50_tokens_95,p90_tokens_95,mean_frac_95\n");
  }
  printf("\n# tokens needed for 90/95/99%% of the softmax mass (mean over queries), per layer "
         "and head; frac95 = tokens for 95%% / context\n");
  printf("%-10s %5s %5s %7s %9s %9s %9s %9s %9s %9s %8s\n", "text", "layer", "head", "queries",
         "t90", "t95", "t99", "t95_p10", "t95_p50", "t95_p90", "frac95");
  /* Pool per text kind of the sequences (e.g. prose, code). */
  char kinds[64][64];
  int nk = 0;
  for (int r = 0; r < nr; r++) {
    const char *tk = qkv_file_seq(f, runs[r].seq)->text_kind;
    int seen = 0;
    for (int i = 0; i < nk; i++) seen |= strcmp(kinds[i], tk) == 0;
    if (!seen && nk < 64) snprintf(kinds[nk++], 64, "%s", tk);
  }
  for (int ki = 0; ki < nk; ki++) {
    for (int li = 0; li < nl; li++) {
      for (int64_t h = -1; h < Hq; h++) { /* h = -1: all heads */
        size_t cnt = 0;
        for (int r = 0; r < nr; r++) cnt += (size_t)runs[r].n_pos * (size_t)Hq;
        double *v95 = malloc((cnt ? cnt : 1) * sizeof *v95);
        double s[3] = {0, 0, 0}, ctx = 0, frac = 0;
        size_t k = 0;
        for (int r = 0; r < nr; r++) {
          if (runs[r].layer != layer_list[li]) continue;
          if (strcmp(qkv_file_seq(f, runs[r].seq)->text_kind, kinds[ki]) != 0) continue;
          for (int64_t q = 0; q < runs[r].n_pos; q++) {
            for (int64_t hh = 0; hh < Hq; hh++) {
              if (h >= 0 && hh != h) continue;
              const int64_t *nd = runs[r].need + ((size_t)q * Hq + hh) * 3;
              for (int j = 0; j < 3; j++) s[j] += (double)nd[j];
              ctx += (double)(runs[r].positions[q] + 1);
              frac += (double)nd[1] / (double)(runs[r].positions[q] + 1);
              v95[k++] = (double)nd[1];
            }
          }
        }
        if (k == 0) {
          free(v95);
          continue;
        }
        double nk_ = (double)k;
        double p10 = quantile(v95, k, 0.1), p50 = quantile(v95, k, 0.5), p90 = quantile(v95, k, 0.9);
        char hs[16];
        if (h < 0) snprintf(hs, sizeof hs, "all");
        else snprintf(hs, sizeof hs, "%lld", (long long)h);
        printf("%-10s %5d %5s %7zu %9.1f %9.1f %9.1f %9.1f %9.1f %9.1f %8.4f\n", kinds[ki],
               layer_list[li], hs, h < 0 ? k / (size_t)Hq : k, s[0] / nk_, s[1] / nk_,
               s[2] / nk_, p10, p50, p90, frac / nk_);
        if (sf) {
          fprintf(sf, "%s,%d,%s,%zu,%.1f,%.2f,%.2f,%.2f,%.1f,%.1f,%.1f,%.6f\n", kinds[ki],
                  layer_list[li], hs, h < 0 ? k / (size_t)Hq : k, ctx / nk_, s[0] / nk_,
                  s[1] / nk_, s[2] / nk_, p10, p50, p90, frac / nk_);
        }
        free(v95);
      }
    }
  }
  if (sf && kv_atomic_commit(&af, &err)) {
    fprintf(stderr, "psa-compare: %s\n", err.msg);
    return 1;
  }
  return 0;
}

/* Checks, before any work, that every output the run will write can be created: a temporary
 * file beside each target is opened and removed (a wrong -o must not discard a long run). */
static int check_outputs(const char *out, int stats, kv_error *err) {
  const char *suffix[] = {".csv", ".h5", "-summary.csv", "-stats.csv"};
  for (int i = 0; i < (stats ? 4 : 3); i++) {
    char p[4096];
    snprintf(p, sizeof p, "%s%s", out, suffix[i]);
    kv_atomic_file af;
    if (kv_atomic_open(&af, p, err)) return err->code;
    kv_atomic_abort(&af);
  }
  return 0;
}

int main(int argc, char **argv) {
  const char *methods_arg = NULL, *budgets_arg = NULL, *eps_arg = NULL, *est_arg = "mean";
  const char *bs_arg = NULL, *groups_arg = NULL, *layers_arg = NULL, *seqs_arg = NULL;
  const char *out = NULL, *synth_out = NULL;
  long max_pos = 0, threads = 0, elem_bytes = 0, seed = 1, synth_tokens = 4096, synth_layers = 4;
  int stats = 0, validate = 0, quiet = 0, oracle = 0;
  enum { O_EST = 1000, O_BS, O_GROUPS, O_ELEM, O_STATS, O_VALIDATE, O_SYNTH, O_SEED, O_TOKENS,
         O_ORACLE, O_NLAYERS };
  static const struct option opts[] = {
      {"methods", required_argument, 0, 'm'},  {"budgets", required_argument, 0, 'b'},
      {"epsilons", required_argument, 0, 'e'}, {"estimates", required_argument, 0, O_EST},
      {"block-sizes", required_argument, 0, O_BS}, {"groups", required_argument, 0, O_GROUPS},
      {"layers", required_argument, 0, 'l'},   {"seqs", required_argument, 0, 's'},
      {"max-positions", required_argument, 0, 'p'}, {"threads", required_argument, 0, 't'},
      {"elem-bytes", required_argument, 0, O_ELEM}, {"out", required_argument, 0, 'o'},
      {"stats", no_argument, 0, O_STATS},      {"validate", no_argument, 0, O_VALIDATE},
      {"synthetic", required_argument, 0, O_SYNTH}, {"seed", required_argument, 0, O_SEED},
      {"tokens", required_argument, 0, O_TOKENS}, {"n-layers", required_argument, 0, O_NLAYERS},
      {"oracle", no_argument, 0, O_ORACLE},    {"quiet", no_argument, 0, 'q'},
      {"help", no_argument, 0, 'h'},           {0, 0, 0, 0}};
  int c;
  char *end;
  while ((c = getopt_long(argc, argv, "m:b:e:l:s:p:t:o:qh", opts, NULL)) != -1) {
    switch (c) {
      case 'm': methods_arg = optarg; break;
      case 'b': budgets_arg = optarg; break;
      case 'e': eps_arg = optarg; break;
      case O_EST: est_arg = optarg; break;
      case O_BS: bs_arg = optarg; break;
      case O_GROUPS: groups_arg = optarg; break;
      case 'l': layers_arg = optarg; break;
      case 's': seqs_arg = optarg; break;
      case 'o': out = optarg; break;
      case 'q': quiet = 1; break;
      case O_STATS: stats = 1; break;
      case O_VALIDATE: validate = 1; break;
      case O_ORACLE: oracle = 1; break;
      case O_SYNTH: synth_out = optarg; break;
      case 'p': case 't': case O_ELEM: case O_SEED: case O_TOKENS: case O_NLAYERS: {
        errno = 0;
        long v = strtol(optarg, &end, 10);
        if (end == optarg || *end || errno || v < 0) {
          fprintf(stderr, "psa-compare: option %s: '%s' is not a non-negative integer\n",
                  argv[optind - 1], optarg);
          return 2;
        }
        if (c == 'p') max_pos = v;
        else if (c == 't') threads = v;
        else if (c == O_ELEM) elem_bytes = v;
        else if (c == O_SEED) seed = v;
        else if (c == O_TOKENS) synth_tokens = v;
        else synth_layers = v;
        break;
      }
      case 'h': usage(stdout); return 0;
      default: usage(stderr); return 2;
    }
  }
  kv_error err = {0};
  if (synth_out && (methods_arg || budgets_arg || eps_arg || bs_arg || groups_arg || layers_arg ||
                    seqs_arg || out || stats || validate || oracle || max_pos || optind < argc)) {
    fprintf(stderr, "psa-compare: --synthetic takes only --seed, --tokens and --n-layers (the "
                    "number of layers to write; --layers selects layers of an existing file)\n");
    return 2;
  }
  if (!synth_out && (synth_tokens != 4096 || synth_layers != 4 || seed != 1)) {
    fprintf(stderr, "psa-compare: --seed, --tokens and --n-layers apply only with --synthetic\n");
    return 2;
  }
  if (synth_out) {
    qkv_synth_params sp;
    qkv_synth_defaults(&sp);
    sp.seed = (uint64_t)seed;
    sp.n_tokens = synth_tokens;
    sp.n_layers = (int)synth_layers;
    sp.n_seqs = 2;
    sp.n_positions = 32;
    if (qkv_synth_write(synth_out, &sp, &err)) {
      fprintf(stderr, "psa-compare: %s\n", err.msg);
      return 1;
    }
    return 0;
  }
  if (optind != argc - 1) {
    fprintf(stderr, "psa-compare: expected one Q/K/V file (see --help)\n");
    return 2;
  }
  const char *path = argv[optind];
  if (validate) {
    if (qkv_validate(path, &err)) {
      fprintf(stderr, "psa-compare: %s\n", err.msg);
      return 1;
    }
    printf("%s: valid\n", path);
    return 0;
  }

  if (out && check_outputs(out, stats, &err)) {
    fprintf(stderr, "psa-compare: %s\n", err.msg);
    return 1;
  }

  /* ---- methods ---- */
  static attn_method methods[MAX_METHODS];
  int nm = 0;
  char items[MAX_LIST][128];
  int n;
  if (methods_arg) {
    n = split_list(methods_arg, items, MAX_LIST);
    if (n < 0) {
      fprintf(stderr, "psa-compare: --methods: too many or too long entries\n");
      return 2;
    }
    for (int i = 0; i < n; i++) {
      if (attn_method_parse(items[i], &methods[nm], &err)) {
        fprintf(stderr, "psa-compare: --methods: %s\n", err.msg);
        return 2;
      }
      nm++;
    }
  }
  if (budgets_arg) {
    long b[MAX_LIST];
    n = parse_ints(budgets_arg, b, MAX_LIST);
    if (n <= 0) {
      fprintf(stderr, "psa-compare: --budgets: expected a list of token counts, got '%s'\n",
              budgets_arg);
      return 2;
    }
    for (int i = 0; i < n && nm < MAX_METHODS; i++) {
      attn_method_defaults(&methods[nm], ATTN_TOPK);
      methods[nm].token_budget = b[i];
      if (attn_method_check(&methods[nm], &err)) {
        fprintf(stderr, "psa-compare: --budgets: %s\n", err.msg);
        return 2;
      }
      nm++;
    }
  }
  if (eps_arg) {
    double e[MAX_LIST];
    char ests[8][128];
    n = parse_doubles(eps_arg, e, MAX_LIST);
    int ne = split_list(est_arg, ests, 8);
    if (n <= 0 || ne <= 0) {
      fprintf(stderr, "psa-compare: --epsilons/--estimates: bad list\n");
      return 2;
    }
    for (int k = 0; k < ne; k++) {
      for (int i = 0; i < n && nm < MAX_METHODS; i++) {
        char spec[160];
        snprintf(spec, sizeof spec, "psa:%.17g:%s", e[i], ests[k]);
        if (attn_method_parse(spec, &methods[nm], &err)) {
          fprintf(stderr, "psa-compare: --epsilons/--estimates: %s\n", err.msg);
          return 2;
        }
        nm++;
      }
    }
    for (int i = 0; oracle && i < n && nm < MAX_METHODS; i++) {
      char spec[64];
      snprintf(spec, sizeof spec, "oracle:%.17g", e[i]);
      if (attn_method_parse(spec, &methods[nm], &err)) {
        fprintf(stderr, "psa-compare: --oracle: %s\n", err.msg);
        return 2;
      }
      nm++;
    }
  }
  if (nm == 0 && !stats) {
    /* Default comparison. */
    const char *def[] = {"dense", "topk:512", "topk:1024", "topk:2048", "psa:0.9", "psa:0.95",
                         "psa:0.99", "psa:0.95:lognormal"};
    for (size_t i = 0; i < sizeof def / sizeof def[0]; i++) attn_method_parse(def[i], &methods[nm++], &err);
  }
  /* Expand block sizes and PSA group sizes. */
  if (bs_arg || groups_arg) {
    long bs[MAX_LIST] = {16}, gs[MAX_LIST] = {4};
    int nbs = bs_arg ? parse_ints(bs_arg, bs, MAX_LIST) : 1;
    int ngs = groups_arg ? parse_ints(groups_arg, gs, MAX_LIST) : 1;
    if (nbs <= 0 || ngs <= 0) {
      fprintf(stderr, "psa-compare: --block-sizes/--groups: bad list\n");
      return 2;
    }
    static attn_method expanded[MAX_METHODS];
    int ne = 0;
    for (int i = 0; i < nm; i++) {
      const attn_cost_class cc = attn_method_cost_class(&methods[i]);
      const int is_psa = cc == ATTN_COST_PROGRESSIVE;
      for (int a = 0; a < (cc == ATTN_COST_DENSE ? 1 : nbs); a++) {
        for (int g = 0; g < (is_psa ? ngs : 1); g++) {
          if (ne == MAX_METHODS) {
            fprintf(stderr, "psa-compare: more than %d methods after expansion\n", MAX_METHODS);
            return 2;
          }
          expanded[ne] = methods[i];
          if (bs_arg && cc != ATTN_COST_DENSE) expanded[ne].block_size = (int)bs[a];
          if (groups_arg && is_psa) expanded[ne].group_blocks = (int)gs[g];
          if (attn_method_check(&expanded[ne], &err)) {
            fprintf(stderr, "psa-compare: %s\n", err.msg);
            return 2;
          }
          ne++;
        }
      }
    }
    memcpy(methods, expanded, (size_t)ne * sizeof *methods);
    nm = ne;
  }
  char labels[MAX_METHODS][64];
  for (int i = 0; i < nm; i++) attn_method_label(&methods[i], labels[i], 64);

  /* ---- file, sequences, layers ---- */
  qkv_file *f;
  if (qkv_open(path, &f, &err)) {
    fprintf(stderr, "psa-compare: %s\n", err.msg);
    return 1;
  }
  const qkv_model *model = qkv_file_model(f);
  attn_shape shape = {model->n_heads, model->n_kv_heads, model->head_dim};
  long seq_sel[MAX_LIST], layer_sel[MAX_LIST];
  int n_seq_sel = -1, n_layer_sel = -1;
  if (seqs_arg && (n_seq_sel = parse_ints(seqs_arg, seq_sel, MAX_LIST)) <= 0) {
    fprintf(stderr, "psa-compare: --seqs: bad list '%s'\n", seqs_arg);
    return 2;
  }
  if (layers_arg && (n_layer_sel = parse_ints(layers_arg, layer_sel, MAX_LIST)) <= 0) {
    fprintf(stderr, "psa-compare: --layers: bad list '%s'\n", layers_arg);
    return 2;
  }
  for (int i = 0; i < n_seq_sel; i++) {
    if (seq_sel[i] >= qkv_file_n_seqs(f)) {
      fprintf(stderr, "psa-compare: --seqs: %s has %d sequences, no sequence %ld\n", path,
              qkv_file_n_seqs(f), seq_sel[i]);
      return 2;
    }
  }
  /* Work list: (seq, layer) pairs. */
  static layer_run runs[4096];
  int nr = 0;
  int64_t total_queries = 0;
  for (int s = 0; s < qkv_file_n_seqs(f); s++) {
    int take = n_seq_sel < 0;
    for (int i = 0; i < n_seq_sel; i++) take |= seq_sel[i] == s;
    if (!take) continue;
    const qkv_seq_info *si = qkv_file_seq(f, s);
    for (int k = 0; k < si->n_layers; k++) {
      int lt = n_layer_sel < 0;
      for (int i = 0; i < n_layer_sel; i++) lt |= layer_sel[i] == si->layers[k];
      if (!lt || nr == 4096) continue;
      runs[nr].seq = s;
      runs[nr].layer = si->layers[k];
      nr++;
    }
  }
  for (int i = 0; i < n_layer_sel; i++) {
    int found = 0;
    for (int r = 0; r < nr; r++) found |= runs[r].layer == layer_sel[i];
    if (!found) {
      fprintf(stderr, "psa-compare: --layers: layer %ld is not recorded in %s\n", layer_sel[i],
              path);
      return 2;
    }
  }
  if (nr == 0) {
    fprintf(stderr, "psa-compare: nothing selected\n");
    return 2;
  }
  /* Read each layer once to learn query counts (cheap relative to the run). */
  kv_progress prog;
  for (int r = 0; r < nr; r++) {
    qkv_layer l;
    if (qkv_read_layer(f, runs[r].seq, runs[r].layer, 0, &l, &err)) {
      fprintf(stderr, "psa-compare: %s\n", err.msg);
      return 1;
    }
    int64_t np = l.n_positions;
    if (max_pos > 0 && np > max_pos) np = max_pos;
    runs[r].n_pos = np;
    total_queries += np;
    qkv_layer_free(&l);
  }
  kv_progress_init(&prog, "psa-compare", total_queries, quiet);
  int eb = elem_bytes > 0 ? (int)elem_bytes : 0;
  for (int r = 0; r < nr; r++) {
    qkv_layer l;
    if (qkv_read_layer(f, runs[r].seq, runs[r].layer, 0, &l, &err)) {
      fprintf(stderr, "psa-compare: %s\n", err.msg);
      return 1;
    }
    if (!eb) eb = qkv_dtype_size(l.dtype);
    int64_t np = runs[r].n_pos, Hq = shape.n_heads, Hkv = shape.n_kv_heads, D = shape.head_dim;
    /* Evenly spaced subset of the recorded queries. */
    float *Q = malloc((size_t)np * Hq * D * sizeof *Q);
    runs[r].positions = malloc((size_t)np * sizeof(int64_t));
    runs[r].mh = calloc((size_t)(nm ? nm : 1) * np * Hq, sizeof(attn_head_metrics));
    runs[r].bytes = calloc((size_t)(nm ? nm : 1) * np * Hkv, sizeof(int64_t));
    runs[r].iters = calloc((size_t)(nm ? nm : 1) * np * Hkv, sizeof(int32_t));
    runs[r].need = calloc((size_t)np * Hq * 3, sizeof(int64_t));
    if (!Q || !runs[r].positions || !runs[r].mh || !runs[r].bytes || !runs[r].iters ||
        !runs[r].need) {
      fprintf(stderr, "psa-compare: out of memory\n");
      return 1;
    }
    for (int64_t i = 0; i < np; i++) {
      int64_t src = np == l.n_positions ? i : (np > 1 ? i * (l.n_positions - 1) / (np - 1) : l.n_positions - 1);
      runs[r].positions[i] = l.positions[src];
      memcpy(Q + (size_t)i * Hq * D, l.Q + (size_t)src * Hq * D, (size_t)Hq * D * sizeof *Q);
    }
    /* In chunks so progress moves. */
    int64_t chunk = 8;
    for (int64_t p0 = 0; p0 < np; p0 += chunk) {
      int64_t pn = np - p0 < chunk ? np - p0 : chunk;
      /* eval writes [M, pn, H] blocks: run into temporaries, then scatter. */
      attn_head_metrics *mh = calloc((size_t)(nm ? nm : 1) * pn * Hq, sizeof *mh);
      int64_t *by = calloc((size_t)(nm ? nm : 1) * pn * Hkv, sizeof *by);
      int32_t *it = calloc((size_t)(nm ? nm : 1) * pn * Hkv, sizeof *it);
      if (!mh || !by || !it) {
        fprintf(stderr, "psa-compare: out of memory\n");
        return 1;
      }
      if (attn_eval_layer(&shape, methods, nm, Q + (size_t)p0 * Hq * D, runs[r].positions + p0,
                          pn, l.K, l.V, eb, (int)threads, mh, by, it,
                          runs[r].need + (size_t)p0 * Hq * 3, &err)) {
        fprintf(stderr, "psa-compare: seq %d layer %d: %s\n", runs[r].seq, runs[r].layer,
                err.msg);
        return 1;
      }
      for (int m = 0; m < nm; m++) {
        memcpy(runs[r].mh + ((size_t)m * np + p0) * Hq, mh + (size_t)m * pn * Hq,
               (size_t)pn * Hq * sizeof *mh);
        memcpy(runs[r].bytes + ((size_t)m * np + p0) * Hkv, by + (size_t)m * pn * Hkv,
               (size_t)pn * Hkv * sizeof *by);
        memcpy(runs[r].iters + ((size_t)m * np + p0) * Hkv, it + (size_t)m * pn * Hkv,
               (size_t)pn * Hkv * sizeof *it);
      }
      free(mh);
      free(by);
      free(it);
      kv_progress_add(&prog, pn);
    }
    free(Q);
    qkv_layer_free(&l);
  }
  kv_progress_finish(&prog);

  int rc = 0;
  if (nm) rc = report_summary(path, model, &shape, eb, methods, labels, nm, runs, nr, out);
  if (!rc && nm && out) rc = write_records(out, path, model, &shape, labels, nm, runs, nr, eb);
  if (!rc && stats) rc = report_stats(&shape, runs, nr, out, f);
  qkv_close(f);
  return rc ? 1 : 0;
}

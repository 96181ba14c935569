/* sim_attn.c — decode attention priced by measured budgets (sim_attn.h). */
#include "sim_attn.h"

#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kv_fs.h"
#include "kv_h5.h"
#include "sim_stats.h"

const char *const sim_attn_mode_names[] = {"off", "dense", "topk", "psa", NULL};
const char *const sim_attn_pool_names[] = {"unified", "partitioned", NULL};
const char *const sim_attn_loop_names[] = {"pipelined", "hostsync", NULL};
const char *const sim_attn_ext_names[] = {"fit", "frac", "tokens", NULL};
const char *const sim_attn_redraw_names[] = {"step", "request", NULL};

void sim_attn_params_defaults(sim_attn_params *ap) {
  memset(ap, 0, sizeof *ap);
  ap->mode = SIM_ATTN_OFF;
  snprintf(ap->method, sizeof ap->method, "off");
  ap->pool = SIM_ATTN_POOL_UNIFIED;
  ap->pool_frac = 0.5;
  ap->loop = SIM_ATTN_LOOP_PIPELINED;
  ap->load_overlap = 1;
  ap->hbm_eff = 0.8;
  ap->launch_ns = 3000;
  ap->select_ns = 8000;
  ap->iter_pipelined_ns = 250;
  ap->iter_hostsync_ns = 15000;
  ap->reuse_frac = 0.7;
  ap->head_draws = 4;
  ap->extension = SIM_ATTN_EXT_FIT;
  ap->topk_extension = SIM_ATTN_EXT_TOKENS;
  ap->redraw = SIM_ATTN_REDRAW_STEP;
  ap->admit_ws = 1;
  ap->admit_headroom = 1.0;
  ap->host_bytes = 0;
}

/* ---- the loaded model ------------------------------------------------------------------- */

void sim_attn_model_free(sim_attn_model *am) {
  if (am->have_prof) attn_profile_free(&am->prof);
  free(am->row);
  free(am->reuse);
  free(am->rng_lo);
  free(am->rng_hi);
  am->row = NULL;
  am->reuse = NULL;
  am->rng_lo = am->rng_hi = NULL;
  am->have_prof = 0;
}

/* Measured context range [lo, hi] (keys) of method m in layer row l; 0 when it has no data. */
static int sim__range(const sim_attn_model *am, int l, int64_t *lo, int64_t *hi) {
  const attn_profile *p = &am->prof;
  int first = -1, last = -1;
  for (int b = 0; b < p->n_bins; b++) {
    if (p->methods[am->m].count[(size_t)l * p->n_bins + b] == 0) continue;
    if (first < 0) first = b;
    last = b;
  }
  if (first < 0) return 0;
  *lo = p->ctx_edges[first];
  *hi = p->ctx_edges[last + 1] - 1;
  return 1;
}

int sim_attn_static_full(const sim_attn_model *am, int64_t n) {
  switch (am->prm.mode) {
    case SIM_ATTN_DENSE: return 1;
    case SIM_ATTN_TOPK: return am->method.token_budget >= n;
    case SIM_ATTN_PSA: return am->method.epsilon >= 1.0;
    default: return 1;
  }
}

typedef struct sim__rowdraw {
  const double *q;   /* the bin's quantiles, or NULL: no data (the fit alone) */
  double scale;      /* factor applied to the interpolated quantile */
  double lo;         /* lower clamp 1 / n_eval */
  double post;       /* factor after clamping (extension = tokens), 1 otherwise */
  double fit_frac;   /* q == NULL: the fit's fraction */
  int bin;           /* the bin of q, -1 without data */
} sim__rowdraw;
static void sim__rowdraw_init(const sim_attn_model *am, int l, int64_t n, sim__rowdraw *d);
static double sim__draw_fast(const sim_attn_model *am, const sim__rowdraw *d, double u);
static double sim__mean_fast(const sim_attn_model *am, int l, const sim__rowdraw *d);

/* Fraction of the context read for draw u (u < 0: the mean) under the extension rule, through
 * the profile library (the reference the fast path is tested against); top-k grown with a PSA
 * method's fit (topk_extension = fit), which the library cannot express, goes through the fast
 * path (tested against hand-computed values). */
static double sim__frac(const sim_attn_model *am, int layer, int64_t n, double u) {
  const attn_profile *p = &am->prof;
  int l = am->row[layer];
  if (am->m_scale >= 0) {
    sim__rowdraw d;
    sim__rowdraw_init(am, l, n, &d);
    return u < 0 ? sim__mean_fast(am, l, &d) : sim__draw_fast(am, &d, u);
  }
  int64_t lo = am->rng_lo[l], hi = am->rng_hi[l];
  int in = lo == 0 || (n >= lo && n <= hi);
  /* top-k: its budget is fixed by definition (tokens), or scaled with the context to keep the
   * accuracy measured on the recording (frac; topk_extension) */
  sim_attn_ext ext = am->prm.mode == SIM_ATTN_TOPK ? am->prm.topk_extension : am->prm.extension;
  if (ext == SIM_ATTN_EXT_FIT || in) {
    return u < 0 ? attn_profile_mean_frac(p, am->m, l, n)
                 : attn_profile_sample_frac(p, am->m, l, n, u);
  }
  int64_t nc = n < lo ? lo : hi;
  double f = u < 0 ? attn_profile_mean_frac(p, am->m, l, nc)
                   : attn_profile_sample_frac(p, am->m, l, nc, u);
  if (ext == SIM_ATTN_EXT_FRAC) return f;
  double fr = f * (double)nc / (double)n; /* constant tokens */
  return fr > 1 ? 1 : fr;
}

/* ---- the fast path of the draws ----------------------------------------------------------
 * A decode step draws head_draws fractions for every (sequence, layer); what depends only on
 * (recorded row, context) — the bin and the extension's scale, a pow() — is computed once per
 * (sequence, row) here, the per-draw part is the quantile interpolation. sim__bin and
 * sim__draw_fast mirror attn_profile_sample_frac (kernels/attn_profile.c) operation for
 * operation; tests/sim/test_attn.c checks they give the same bits over a grid of contexts and
 * draws, so a change of the profile's rule cannot go unnoticed. */

/* attn__bin of kernels/attn_profile.c: the bin holding n among bins with data, else the nearest
 * edge bin with the fit's rescaling from its geometric centre. */
static const double *sim__bin(const sim_attn_model *am, int l, int64_t n, double *scale,
                              int *bin) {
  const attn_profile *p = &am->prof;
  const attn_profile_method *pm = &p->methods[am->m];
  /* top-k with topk_extension = fit grows like the named PSA method's token count */
  const double fit_b = am->m_scale >= 0 ? p->methods[am->m_scale].fit_b[l] : pm->fit_b[l];
  int first = -1, last = -1, hit = -1;
  for (int b = 0; b < p->n_bins; b++) {
    if (pm->count[(size_t)l * p->n_bins + b] == 0) continue;
    if (first < 0) first = b;
    last = b;
    if (n >= p->ctx_edges[b] && n < p->ctx_edges[b + 1]) hit = b;
  }
  *scale = 1.0;
  *bin = -1;
  if (first < 0) return NULL;
  int b = hit;
  if (hit < 0) {
    b = n < p->ctx_edges[first] ? first : last;
    double centre = sqrt((double)p->ctx_edges[b] * (double)(p->ctx_edges[b + 1] - 1));
    double tok_ratio = pow((double)n / centre, fit_b);
    *scale = tok_ratio * centre / (double)n;
  }
  *bin = b;
  return pm->frac_q + ((size_t)l * p->n_bins + b) * p->n_quantiles;
}

static void sim__rowdraw_init(const sim_attn_model *am, int l, int64_t n, sim__rowdraw *d) {
  const attn_profile *p = &am->prof;
  int64_t lo = am->rng_lo[l], hi = am->rng_hi[l];
  int in = lo == 0 || (n >= lo && n <= hi);
  sim_attn_ext ext = am->prm.mode == SIM_ATTN_TOPK ? am->prm.topk_extension : am->prm.extension;
  int64_t ne = (ext == SIM_ATTN_EXT_FIT || in) ? n : (n < lo ? lo : hi);
  d->q = sim__bin(am, l, ne, &d->scale, &d->bin);
  d->lo = 1.0 / (double)ne;
  d->post = (ext == SIM_ATTN_EXT_TOKENS && ne != n) ? (double)ne / (double)n : 1.0;
  d->fit_frac = 0;
  if (!d->q) {
    const attn_profile_method *pm = &p->methods[am->m];
    double t = pm->fit_a[l] * pow((double)ne, pm->fit_b[l]);
    double fr = t / (double)ne;
    d->fit_frac = fr > 1 ? 1 : (fr <= 0 ? 1.0 / (double)ne : fr);
  }
}

static double sim__draw_fast(const sim_attn_model *am, const sim__rowdraw *d, double u) {
  double fr;
  if (!d->q) {
    fr = d->fit_frac;
  } else {
    const int Q = am->prof.n_quantiles;
    double pos = u * (Q - 1);
    int i = (int)pos;
    if (i >= Q - 1) i = Q - 2;
    double t = pos - i;
    fr = (d->q[i] * (1 - t) + d->q[i + 1] * t) * d->scale;
    fr = fr > 1 ? 1 : (fr < d->lo ? d->lo : fr);
  }
  if (d->post != 1.0) {
    fr *= d->post;
    if (fr > 1) fr = 1;
  }
  return fr;
}

/* attn_profile_mean_frac's rule on the fast path's bin and scale. */
static double sim__mean_fast(const sim_attn_model *am, int l, const sim__rowdraw *d) {
  double fr;
  if (!d->q) {
    fr = d->fit_frac;
  } else {
    fr = am->prof.methods[am->m].mean_frac[(size_t)l * am->prof.n_bins + d->bin] * d->scale;
    if (fr > 1) fr = 1;
  }
  if (d->post != 1.0) {
    fr *= d->post;
    if (fr > 1) fr = 1;
  }
  return fr;
}

static int64_t sim__tokens(double frac, int64_t n) {
  int64_t t = (int64_t)llround(frac * (double)n);
  return t < 1 ? 1 : (t > n ? n : t);
}

int64_t sim_attn_draw_tokens_fast(const sim_attn_model *am, int layer, int64_t n, double u) {
  if (n < 1) return 0;
  if (sim_attn_static_full(am, n)) return n;
  sim__rowdraw d;
  sim__rowdraw_init(am, am->row[layer], n, &d);
  return sim__tokens(sim__draw_fast(am, &d, u), n);
}

double sim_attn_mean_tokens(const sim_attn_model *am, int layer, int64_t n) {
  if (n < 1) return 0;
  if (sim_attn_static_full(am, n)) return (double)n;
  double t = sim__frac(am, layer, n, -1.0) * (double)n;
  return t < 1 ? 1 : (t > (double)n ? (double)n : t);
}

int64_t sim_attn_draw_tokens(const sim_attn_model *am, int layer, int64_t n, double u) {
  if (n < 1) return 0;
  if (sim_attn_static_full(am, n)) return n;
  int64_t t = (int64_t)llround(sim__frac(am, layer, n, u) * (double)n);
  return t < 1 ? 1 : (t > n ? n : t);
}

int64_t sim_attn_meta_bytes(const sim_attn_model *am, int64_t n) {
  if (am->prm.mode == SIM_ATTN_OFF || am->prm.mode == SIM_ATTN_DENSE) return 0;
  int64_t bs = am->method.block_size;
  return (n + bs - 1) / bs * am->meta_bytes_per_block * am->model.kv_heads * am->model.layers;
}

/* ---- reuse table (attn-reuse CSV: method,layer,gap,pairs,overlap) --------------------------- */

static int sim__load_reuse(sim_attn_model *am, const char *path, kv_error *err) {
  FILE *f = fopen(path, "r");
  if (!f) return kv_error_set(err, KV_ENOENT, "%s: cannot open the reuse table", path);
  kv_fs_note_input(path);
  const attn_profile *p = &am->prof;
  double *best_gap = malloc((size_t)p->n_layers * sizeof *best_gap);
  double *val = malloc((size_t)p->n_layers * sizeof *val);
  if (!best_gap || !val) {
    fclose(f);
    free(best_gap);
    free(val);
    return kv_error_set(err, KV_ENOMEM, "out of memory");
  }
  for (int i = 0; i < p->n_layers; i++) best_gap[i] = INFINITY, val[i] = NAN;
  char line[1024];
  int ln = 0, rc = 0, header = 0;
  while (!rc && fgets(line, sizeof line, f)) {
    ln++;
    if (line[0] == '#' || line[0] == '\n') continue;
    if (!header) {
      header = 1;
      if (strncmp(line, "method,layer,gap,pairs,overlap", 30) != 0) {
        rc = kv_error_set(err, KV_EFORMAT, "%s:%d: expected the header "
                          "'method,layer,gap,pairs,overlap' (an attn-reuse table)", path, ln);
      }
      continue;
    }
    char meth[128];
    int layer;
    double gap, ov;
    long pairs;
    if (sscanf(line, "%127[^,],%d,%lf,%ld,%lf", meth, &layer, &gap, &pairs, &ov) != 5 ||
        !(gap > 0) || !(ov >= 0 && ov <= 1)) {
      rc = kv_error_set(err, KV_EFORMAT, "%s:%d: malformed row (want method,layer,gap>0,pairs,"
                        "overlap in [0,1])", path, ln);
      break;
    }
    if (strcmp(meth, am->prm.method) != 0 || pairs <= 0) continue;
    for (int i = 0; i < p->n_layers; i++) {
      if (p->layers[i] == layer && gap < best_gap[i]) {
        best_gap[i] = gap;
        val[i] = ov;
      }
    }
  }
  fclose(f);
  for (int i = 0; !rc && i < p->n_layers; i++) {
    if (isnan(val[i])) {
      rc = kv_error_set(err, KV_EFORMAT, "%s: no overlap row for method %s and recorded layer %d",
                        path, am->prm.method, p->layers[i]);
    }
  }
  for (int64_t l = 0; !rc && l < am->model.layers; l++) am->reuse[l] = val[am->row[l]];
  free(best_gap);
  free(val);
  return rc;
}

/* ---- kernel profile (docs/kernels.md "Profile for the simulator") -------------------------- */

/* Reads a 1-D string dataset (variable or fixed length) into n malloc'ed strings. */
static int sim__read_strings(hid_t g, const char *name, hsize_t n, char ***out, const char *what,
                             kv_error *err) {
  hsize_t dims[1];
  hid_t d = kv_h5_open_dataset(g, name, 1, dims, what, err);
  if (d < 0) return (int)d;
  int rc = 0;
  if (dims[0] != n) {
    rc = kv_error_set(err, KV_EFORMAT, "%s/%s: %llu rows, expected %llu", what, name,
                      (unsigned long long)dims[0], (unsigned long long)n);
  }
  char **s = rc ? NULL : calloc(n ? n : 1, sizeof *s);
  if (!rc && !s) rc = kv_error_set(err, KV_ENOMEM, "out of memory");
  hid_t ft = rc ? -1 : H5Dget_type(d);
  if (!rc && (ft < 0 || H5Tget_class(ft) != H5T_STRING)) {
    rc = kv_error_set(err, KV_EFORMAT, "%s/%s: not a string dataset", what, name);
  }
  if (!rc && H5Tis_variable_str(ft) > 0) {
    hid_t mt = H5Tcopy(H5T_C_S1);
    H5Tset_size(mt, H5T_VARIABLE);
    char **tmp = calloc(n ? n : 1, sizeof *tmp);
    if (!tmp || (n && H5Dread(d, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, tmp) < 0)) {
      rc = kv_error_set(err, KV_EIO, "%s/%s: cannot read strings", what, name);
    }
    for (hsize_t i = 0; !rc && i < n; i++) {
      s[i] = strdup(tmp[i] ? tmp[i] : "");
      if (!s[i]) rc = kv_error_set(err, KV_ENOMEM, "out of memory");
    }
    if (tmp && n) {
      hid_t sp = H5Dget_space(d);
#if H5_VERSION_GE(1, 12, 0)
      H5Treclaim(mt, sp, H5P_DEFAULT, tmp);
#else
      H5Dvlen_reclaim(mt, sp, H5P_DEFAULT, tmp);
#endif
      H5Sclose(sp);
    }
    free(tmp);
    H5Tclose(mt);
  } else if (!rc) {
    size_t w = H5Tget_size(ft);
    hid_t mt = H5Tcopy(H5T_C_S1);
    H5Tset_size(mt, w);
    char *buf = malloc(n * w + 1);
    if (!buf || (n && H5Dread(d, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0)) {
      rc = kv_error_set(err, KV_EIO, "%s/%s: cannot read strings", what, name);
    }
    for (hsize_t i = 0; !rc && i < n; i++) {
      s[i] = strndup(buf + i * w, w);
      if (!s[i]) rc = kv_error_set(err, KV_ENOMEM, "out of memory");
    }
    free(buf);
    H5Tclose(mt);
  }
  if (ft >= 0) H5Tclose(ft);
  H5Dclose(d);
  if (rc && s) {
    for (hsize_t i = 0; i < n; i++) free(s[i]);
    free(s);
    s = NULL;
  }
  *out = s;
  return rc;
}

static int sim__kclass(const char *section, const char *method) {
  size_t n = strlen(method);
  if (strstr(method, "attend")) return -1; /* phase rows, not whole decode steps */
  if (!strcmp(section, "dense")) return SIM_ATTN_KCLASS_DENSE;
  if (!strcmp(section, "topk")) return SIM_ATTN_KCLASS_TOPK;
  if (!strcmp(section, "psa")) {
    if (n >= 9 && !strcmp(method + n - 9, "pipelined")) return SIM_ATTN_KCLASS_PSA_PIPE;
    if (n >= 8 && !strcmp(method + n - 8, "hostsync")) return SIM_ATTN_KCLASS_PSA_HOST;
  }
  return -1;
}

int sim_attn_kernel_profile_fit(const char *path, double c0_ns[SIM_ATTN_KCLASS_COUNT],
                                double c1_ns_per_byte[SIM_ATTN_KCLASS_COUNT], kv_error *err) {
  for (int k = 0; k < SIM_ATTN_KCLASS_COUNT; k++) c0_ns[k] = 0, c1_ns_per_byte[k] = -1;
  hid_t f = kv_h5_open_read(path, err);
  if (f < 0) return (int)f;
  char what[1200], fmt[64] = "";
  snprintf(what, sizeof what, "%s: /", path);
  int rc = kv_h5_attr_read_str(f, "format", fmt, sizeof fmt, what, err);
  if (!rc && strcmp(fmt, "kvlab-kernel-profile") != 0) {
    rc = kv_error_set(err, KV_EFORMAT, "%s: format '%s' is not kvlab-kernel-profile", what, fmt);
  }
  int64_t ver = 0;
  if (!rc) rc = kv_h5_attr_read_i64(f, "schema_version", &ver, what, err);
  if (!rc && ver != 1) rc = kv_error_set(err, KV_ENOTSUP, "%s: schema_version %lld not supported",
                                         what, (long long)ver);
  hid_t g = -1;
  if (!rc) {
    if (!kv_h5_exists(f, "attention")) {
      rc = kv_error_set(err, KV_EFORMAT, "%s: no /attention group", path);
    } else {
      g = H5Gopen2(f, "attention", H5P_DEFAULT);
      if (g < 0) rc = kv_error_set(err, KV_EIO, "%s: cannot open /attention", path);
    }
  }
  snprintf(what, sizeof what, "%s: /attention", path);
  hsize_t n = 0;
  double *t = NULL, *b = NULL;
  char **sec = NULL, **meth = NULL;
  if (!rc) {
    hsize_t dims[1];
    hid_t d = kv_h5_open_dataset(g, "time_s", 1, dims, what, err);
    if (d < 0) rc = (int)d;
    else {
      n = dims[0];
      t = malloc((n ? n : 1) * sizeof *t);
      rc = t ? kv_h5_read_all(d, H5T_NATIVE_DOUBLE, t, n, what, err)
             : kv_error_set(err, KV_ENOMEM, "out of memory");
      H5Dclose(d);
    }
  }
  if (!rc) {
    hsize_t dims[1];
    hid_t d = kv_h5_open_dataset(g, "bytes", 1, dims, what, err);
    if (d < 0) rc = (int)d;
    else {
      if (dims[0] != n) {
        rc = kv_error_set(err, KV_EFORMAT, "%s/bytes: %llu rows, time_s has %llu", what,
                          (unsigned long long)dims[0], (unsigned long long)n);
      }
      b = malloc((n ? n : 1) * sizeof *b);
      if (!rc) rc = b ? kv_h5_read_all(d, H5T_NATIVE_DOUBLE, b, n, what, err)
                      : kv_error_set(err, KV_ENOMEM, "out of memory");
      H5Dclose(d);
    }
  }
  if (!rc) rc = sim__read_strings(g, "section", n, &sec, what, err);
  if (!rc) rc = sim__read_strings(g, "method", n, &meth, what, err);
  /* least squares per class: time_ns = c0 + c1 * bytes */
  for (int k = 0; !rc && k < SIM_ATTN_KCLASS_COUNT; k++) {
    double sx = 0, sy = 0, sxx = 0, sxy = 0, cnt = 0;
    for (hsize_t i = 0; i < n; i++) {
      if (sim__kclass(sec[i], meth[i]) != k) continue;
      if (!(isfinite(t[i]) && t[i] > 0 && isfinite(b[i]) && b[i] > 0)) {
        rc = kv_error_set(err, KV_EFORMAT, "%s: row %llu (%s %s) has time_s %g and bytes %g "
                          "(both must be finite and > 0)", what, (unsigned long long)i, sec[i],
                          meth[i], t[i], b[i]);
        break;
      }
      double x = b[i], y = t[i] * 1e9;
      sx += x, sy += y, sxx += x * x, sxy += x * y, cnt += 1;
    }
    if (rc || cnt == 0) continue;
    double den = cnt * sxx - sx * sx;
    double c1 = cnt >= 2 && den > 1e-9 * sxx * cnt ? (cnt * sxy - sx * sy) / den : sy / sx;
    double c0 = cnt >= 2 && den > 1e-9 * sxx * cnt ? (sy - c1 * sx) / cnt : 0;
    if (!(c1 > 0)) { /* a flat or decreasing fit: fall back to the mean rate through 0 */
      c1 = sy / sx;
      c0 = 0;
    }
    if (c0 < 0) { /* negative intercept: refit through the origin */
      c1 = sxy / sxx;
      c0 = 0;
    }
    c0_ns[k] = c0;
    c1_ns_per_byte[k] = c1;
  }
  for (hsize_t i = 0; i < n; i++) {
    if (sec) free(sec[i]);
    if (meth) free(meth[i]);
  }
  free(sec);
  free(meth);
  free(t);
  free(b);
  if (g >= 0) H5Gclose(g);
  H5Fclose(f);
  return rc;
}

int sim_attn_model_load(sim_attn_model *am, const sim_attn_params *prm, const sim_model *m,
                        const sim_hw *hw, int64_t tp, kv_error *err) {
  memset(am, 0, sizeof *am);
  am->prm = *prm;
  am->model = *m;
  am->hw = *hw;
  am->tp = tp;
  attn_method_defaults(&am->method, ATTN_DENSE);
  am->m_scale = -1;
  if (prm->mode == SIM_ATTN_OFF) return 0;
  int rc = 0;
  am->row = calloc((size_t)m->layers, sizeof *am->row);
  am->reuse = calloc((size_t)m->layers, sizeof *am->reuse);
  if (!am->row || !am->reuse) {
    sim_attn_model_free(am);
    return kv_error_set(err, KV_ENOMEM, "out of memory");
  }
  for (int64_t l = 0; l < m->layers; l++) am->reuse[l] = prm->reuse_frac;
  if (strcmp(prm->method, "dense") != 0) {
    if (!prm->profile_path[0]) {
      sim_attn_model_free(am);
      return kv_error_set(err, KV_EINVAL, "[attention] method = %s needs [attention] profile = "
                          "<attn-profile output .h5>", prm->method);
    }
    if ((rc = attn_profile_read(prm->profile_path, &am->prof, err))) {
      sim_attn_model_free(am);
      return rc;
    }
    am->have_prof = 1;
    am->m = attn_profile_find(&am->prof, prm->method);
    if (am->m < 0) {
      char list[1024] = "";
      for (int i = 0; i < am->prof.n_methods; i++) {
        size_t k = strlen(list);
        snprintf(list + k, sizeof list - k, "%s%s", i ? ", " : "", am->prof.methods[i].label);
      }
      rc = kv_error_set(err, KV_ENOENT, "%s: no method '%s' (it has: %s)", prm->profile_path,
                        prm->method, list);
      sim_attn_model_free(am);
      return rc;
    }
    am->method = am->prof.methods[am->m].method;
    if (am->method.kind == ATTN_TOPK && prm->topk_extension == SIM_ATTN_EXT_FIT) {
      am->m_scale = attn_profile_find(&am->prof, prm->topk_scale_method);
      if (am->m_scale < 0 || (am->prof.methods[am->m_scale].method.kind != ATTN_PSA &&
                              am->prof.methods[am->m_scale].method.kind != ATTN_ORACLE)) {
        rc = kv_error_set(err, KV_EINVAL, "%s: topk_extension = fit needs topk_scale_method = a PSA "
                          "method of the profile ('%s' is %s)", prm->profile_path,
                          prm->topk_scale_method, am->m_scale < 0 ? "absent" : "not PSA");
        sim_attn_model_free(am);
        return rc;
      }
    }
    for (int l = 0; l < am->prof.n_layers; l++) am->mean_err += am->prof.methods[am->m].mean_err[l];
    am->mean_err /= am->prof.n_layers;
    switch (am->method.kind) {
      case ATTN_DENSE: am->prm.mode = SIM_ATTN_DENSE; break;
      case ATTN_TOPK: am->prm.mode = SIM_ATTN_TOPK; break;
      default: am->prm.mode = SIM_ATTN_PSA; break;
    }
    for (int64_t l = 0; l < m->layers; l++) {
      am->row[l] = attn_profile_layer_row(&am->prof, (int)l, (int)m->layers);
    }
    am->rng_lo = calloc((size_t)am->prof.n_layers, sizeof *am->rng_lo);
    am->rng_hi = calloc((size_t)am->prof.n_layers, sizeof *am->rng_hi);
    if (!am->rng_lo || !am->rng_hi) {
      sim_attn_model_free(am);
      return kv_error_set(err, KV_ENOMEM, "out of memory");
    }
    for (int l = 0; l < am->prof.n_layers; l++) {
      if (!sim__range(am, l, &am->rng_lo[l], &am->rng_hi[l])) am->rng_lo[l] = am->rng_hi[l] = 0;
    }
    /* reuse matters only to the block cache: without offload the table is not consulted */
    if (prm->offload && prm->reuse_csv[0] && (rc = sim__load_reuse(am, prm->reuse_csv, err))) {
      sim_attn_model_free(am);
      return rc;
    }
  } else {
    am->prm.mode = SIM_ATTN_DENSE; /* profile and reuse table, if named, are not needed */
  }
  if (am->prm.mode == SIM_ATTN_DENSE && prm->offload) {
    sim_attn_model_free(am);
    return kv_error_set(err, KV_EINVAL, "[attention] offload = true needs a sparse method (top-k "
                        "or PSA); dense attention keeps all KV in HBM");
  }
  attn_shape s = {(int)m->heads, (int)m->kv_heads, (int)m->head_dim};
  int elem = (int)m->bytes_per_elem;
  am->block_bytes = (int64_t)am->method.block_size * 2 * m->head_dim * elem;
  am->meta_bytes_per_block = attn_bytes_read(&s, &am->method, am->method.block_size, 0, elem);
  if (prm->kernel_profile[0]) {
    if ((rc = sim_attn_kernel_profile_fit(prm->kernel_profile, am->kc0, am->kc1, err))) {
      sim_attn_model_free(am);
      return rc;
    }
    am->have_kprof = 1;
  }
  return 0;
}

/* ---- a run ------------------------------------------------------------------------------- */

void sim_attn_run_free(sim_attn_run *r) {
  free(r->plan.pre_ns);
  free(r->plan.att_ns);
  free(r->plan.post_ns);
  free(r->plan.h2d_bytes);
  free(r->plan.plain_ns);
  free(r->prev_need);
  free(r->ws);
  free(r->u_fixed);
  free(r->host_used);
  free(r->admitted);
  free(r->ws_sum);
  free(r->wprev_l);
  free(r->need_l);
  free(r->need_log);
  free(r->rowdraw);
  free(r->rowdraw_ok);
  memset(r, 0, sizeof *r);
}

int sim_attn_run_init(sim_attn_run *r, const sim_attn_model *am, uint64_t seed,
                      int64_t pool_bytes, int64_t *stats, kv_error *err) {
  memset(r, 0, sizeof *r);
  r->am = am;
  r->stats = stats;
  r->L = am->model.layers;
  r->kvh = am->model.kv_heads;
  kv_rng_seed(&r->rng, seed ^ 0x7073612d73696dULL);
  size_t L = (size_t)r->L;
  r->plan.pre_ns = calloc(L, sizeof(int64_t));
  r->plan.att_ns = calloc(L, sizeof(int64_t));
  r->plan.post_ns = calloc(L, sizeof(int64_t));
  r->plan.h2d_bytes = calloc(L, sizeof(int64_t));
  r->plan.plain_ns = calloc(L, sizeof(int64_t));
  r->ws_sum = calloc(L, sizeof(double));
  r->wprev_l = calloc(L, sizeof(double));
  r->need_l = calloc(L, sizeof(double));
  if (!r->plan.pre_ns || !r->plan.att_ns || !r->plan.post_ns || !r->plan.h2d_bytes ||
      !r->plan.plain_ns || !r->ws_sum || !r->wprev_l || !r->need_l) {
    sim_attn_run_free(r);
    return kv_error_set(err, KV_ENOMEM, "attention: out of memory");
  }
  r->pool_blocks = am->block_bytes > 0 ? (double)pool_bytes / (double)am->block_bytes : 0;
  r->n_rows = am->have_prof ? am->prof.n_layers : 0;
  return 0;
}

static int sim__ensure_job(sim_attn_run *r, int32_t job) {
  if (job < r->cap_jobs) return 0;
  int32_t nc = r->cap_jobs ? r->cap_jobs : 64;
  while (nc <= job) nc *= 2;
  size_t L = (size_t)r->L, H = (size_t)r->am->prm.head_draws;
  double *pn = realloc(r->prev_need, (size_t)nc * L * sizeof *pn);
  if (pn) r->prev_need = pn;
  double *ws = realloc(r->ws, (size_t)nc * L * sizeof *ws);
  if (ws) r->ws = ws;
  double *uf = realloc(r->u_fixed, (size_t)nc * L * H * sizeof *uf);
  if (uf) r->u_fixed = uf;
  int64_t *hu = realloc(r->host_used, (size_t)nc * sizeof *hu);
  if (hu) r->host_used = hu;
  uint8_t *ad = realloc(r->admitted, (size_t)nc);
  if (ad) r->admitted = ad;
  if (!pn || !ws || !uf || !hu || !ad) return KV_ENOMEM;
  for (int32_t j = r->cap_jobs; j < nc; j++) {
    r->admitted[j] = 0;
    r->host_used[j] = 0;
  }
  r->cap_jobs = nc;
  return 0;
}

static int64_t sim__bpt(const sim_attn_model *am) {
  return (int64_t)llround(am->model.kv_bytes_per_token);
}

int64_t sim_attn_reserve_bytes(const sim_attn_model *am, int64_t input, int64_t output) {
  if (!am->prm.offload || am->prm.mode == SIM_ATTN_OFF) return (input + output) * sim__bpt(am);
  return input * sim__bpt(am) + sim_attn_meta_bytes(am, input + output);
}

int64_t sim_attn_after_prefill(const sim_attn_model *am, int64_t input, int64_t output) {
  if (!am->prm.offload || am->prm.mode == SIM_ATTN_OFF) return (input + output) * sim__bpt(am);
  return sim_attn_meta_bytes(am, input + output);
}

/* Expected working set (blocks of all KV heads) of a request at final context n in layer l. */
static double sim__ws_layer(const sim_attn_run *r, int layer, int64_t n) {
  const sim_attn_model *am = r->am;
  double t = sim_attn_mean_tokens(am, layer, n);
  return (double)r->kvh * ceil(t / (double)am->method.block_size);
}

int sim_attn_can_admit(const sim_attn_run *r, int64_t final_ctx, int batch_empty) {
  const sim_attn_model *am = r->am;
  if (!am->prm.offload || batch_empty) return 1;
  if (r->host_sum + final_ctx * sim__bpt(am) > am->prm.host_bytes) return 0;
  if (!am->prm.admit_ws) return 1;
  double cap = am->prm.admit_headroom * r->pool_blocks;
  if (am->prm.pool == SIM_ATTN_POOL_UNIFIED) {
    double tot = 0;
    for (int64_t l = 0; l < r->L; l++) tot += r->ws_sum[l] + sim__ws_layer(r, (int)l, final_ctx);
    return tot <= cap;
  }
  for (int64_t l = 0; l < r->L; l++) {
    if (r->ws_sum[l] + sim__ws_layer(r, (int)l, final_ctx) > cap / (double)r->L) return 0;
  }
  return 1;
}

int sim_attn_admit(sim_attn_run *r, int32_t job, int64_t final_ctx) {
  if (sim__ensure_job(r, job)) return KV_ENOMEM;
  const sim_attn_model *am = r->am;
  size_t L = (size_t)r->L, H = (size_t)am->prm.head_draws;
  for (size_t l = 0; l < L; l++) {
    r->prev_need[(size_t)job * L + l] = -1.0;
    double w = am->prm.offload ? sim__ws_layer(r, (int)l, final_ctx) : 0.0;
    r->ws[(size_t)job * L + l] = w;
    r->ws_sum[l] += w;
    if (am->prm.redraw == SIM_ATTN_REDRAW_REQUEST) {
      for (size_t h = 0; h < H; h++) r->u_fixed[((size_t)job * L + l) * H + h] = kv_rng_uniform(&r->rng);
    }
  }
  r->host_used[job] = am->prm.offload ? final_ctx * sim__bpt(am) : 0;
  r->host_sum += r->host_used[job];
  r->admitted[job] = 1;
  return 0;
}

void sim_attn_release(sim_attn_run *r, int32_t job) {
  if (job >= r->cap_jobs || !r->admitted[job]) return;
  size_t L = (size_t)r->L;
  for (size_t l = 0; l < L; l++) {
    r->ws_sum[l] -= r->ws[(size_t)job * L + l];
    if (r->ws_sum[l] < 1e-6) r->ws_sum[l] = 0; /* rounding of the running sum */
  }
  r->host_sum -= r->host_used[job];
  r->host_used[job] = 0;
  r->admitted[job] = 0;
}

static int64_t sim__ns(double t) {
  if (!(t > 0)) return 0;
  if (t > 9e18) return INT64_MAX / 4;
  return (int64_t)llround(t);
}

int sim_attn_iter(sim_attn_run *r, const sim_attn_seq *seqs, int64_t n, int64_t post_ns,
                  int64_t new_kv_tokens, int has_store, kv_error *err) {
  const sim_attn_model *am = r->am;
  const sim_attn_params *ap = &am->prm;
  const int64_t L = r->L, kvh = r->kvh, H = ap->head_draws;
  const int64_t bs = am->method.block_size, D = am->model.head_dim;
  const int elem = (int)am->model.bytes_per_elem;
  const attn_shape shape = {(int)am->model.heads, (int)kvh, (int)D};
  const int psa = ap->mode == SIM_ATTN_PSA;
  const int64_t forced = am->method.keep_sink_blocks + am->method.keep_recent_blocks;
  const double per_draw = (double)kvh / (double)H;
  sim_attn_plan *pl = &r->plan;
  for (int64_t i = 0; i < n; i++) {
    if (sim__ensure_job(r, seqs[i].job)) return kv_error_set(err, KV_ENOMEM, "attention: out of memory");
  }
  if (am->have_prof && n * r->n_rows > r->cap_rowdraw) {
    int64_t nc = n * r->n_rows * 2;
    void *a = realloc(r->rowdraw, (size_t)nc * sizeof(sim__rowdraw));
    if (a) r->rowdraw = a;
    uint8_t *b = realloc(r->rowdraw_ok, (size_t)nc);
    if (b) r->rowdraw_ok = b;
    if (!a || !b) return kv_error_set(err, KV_ENOMEM, "attention: out of memory");
    r->cap_rowdraw = nc;
  }
  if (am->have_prof && n > 0) memset(r->rowdraw_ok, 0, (size_t)(n * r->n_rows));
  double tok_all = 0, dense_all = 0, bytes_all = 0, hits_all = 0, miss_all = 0, h2d_all = 0;
  int64_t ns_all = 0;
  for (int64_t l = 0; l < L; l++) {
    double bytes = 0, need = 0, hits = 0, tok = 0;
    int64_t imax = 0;
    int sparse = 0;
    for (int64_t i = 0; i < n; i++) {
      const int64_t ctx = seqs[i].ctx;
      const int32_t j = seqs[i].job;
      double blocks_il = 0;
      int full = sim_attn_static_full(am, ctx);
      dense_all += (double)(kvh * ctx);
      if (full) {
        tok += (double)(kvh * ctx);
        bytes += (double)(kvh * ctx * 2 * D * elem);
        blocks_il = (double)(kvh * ((ctx + bs - 1) / bs));
      } else {
        sparse = 1;
        int64_t tsum = 0, bsum = 0;
        const int row = am->row[l];
        sim__rowdraw *rd = (sim__rowdraw *)r->rowdraw + (size_t)i * r->n_rows + row;
        if (!r->rowdraw_ok[(size_t)i * r->n_rows + row]) {
          sim__rowdraw_init(am, row, ctx, rd);
          r->rowdraw_ok[(size_t)i * r->n_rows + row] = 1;
        }
        for (int64_t h = 0; h < H; h++) {
          double u = ap->redraw == SIM_ATTN_REDRAW_REQUEST
                         ? r->u_fixed[((size_t)j * L + l) * H + h]
                         : kv_rng_uniform(&r->rng);
          int64_t t = sim__tokens(sim__draw_fast(am, rd, u), ctx);
          int64_t b = (t + bs - 1) / bs;
          tsum += t;
          bsum += b;
          if (psa) {
            int64_t it = 1 + (b > forced ? (b - forced + am->method.group_blocks - 1) /
                                               am->method.group_blocks : 0);
            if (it > imax) imax = it;
          }
        }
        /* attn_bytes_read is affine in the tokens: K+V of the tokens plus the metadata of all
         * blocks, the same for every draw */
        tok += per_draw * (double)tsum;
        bytes += per_draw * (double)(attn_bytes_read(&shape, &am->method, ctx, tsum, elem) +
                                     (H - 1) * attn_bytes_read(&shape, &am->method, ctx, 0, elem));
        blocks_il += per_draw * (double)bsum;
      }
      need += blocks_il;
      if (ap->offload) {
        double *prev = &r->prev_need[(size_t)j * L + l];
        double before = *prev < 0 ? blocks_il : *prev;
        double rr = full ? 1.0 : am->reuse[l];
        double x = rr * blocks_il < before ? rr * blocks_il : before;
        double rho = 1.0;
        if (ap->pool == SIM_ATTN_POOL_UNIFIED) {
          if (r->wprev > r->pool_blocks) rho = r->pool_blocks / r->wprev;
        } else {
          double c = r->pool_blocks / (double)L;
          if (r->wprev_l[l] > c) rho = c / r->wprev_l[l];
        }
        hits += rho * x;
        *prev = blocks_il;
      }
    }
    r->need_l[l] = need;
    /* time */
    int64_t pre = 0, att = 0;
    if (n > 0) {
      int kc = !sparse ? SIM_ATTN_KCLASS_DENSE
               : !psa ? SIM_ATTN_KCLASS_TOPK
               : ap->loop == SIM_ATTN_LOOP_PIPELINED ? SIM_ATTN_KCLASS_PSA_PIPE
                                                      : SIM_ATTN_KCLASS_PSA_HOST;
      if (am->have_kprof && am->kc1[kc] > 0) {
        att = sim__ns(am->kc0[kc] + am->kc1[kc] * bytes / (double)am->tp);
      } else {
        pre = ap->launch_ns + (sparse ? ap->select_ns : 0);
        double t_hbm = bytes / ((double)am->tp * am->hw.hbm_bw * ap->hbm_eff) * 1e9;
        if (sparse && psa) {
          if (ap->loop == SIM_ATTN_LOOP_PIPELINED) {
            double t_it = (double)imax * (double)ap->iter_pipelined_ns;
            t_hbm = t_hbm > t_it ? t_hbm : t_it;
          } else {
            t_hbm += (double)imax * (double)ap->iter_hostsync_ns;
          }
        }
        att = sim__ns(t_hbm);
      }
    }
    double miss = need - hits;
    if (miss < 0) miss = 0;
    pl->pre_ns[l] = pre;
    pl->att_ns[l] = att;
    pl->post_ns[l] = post_ns;
    pl->plain_ns[l] = pre + att + post_ns;
    pl->h2d_bytes[l] = ap->offload ? (int64_t)llround(miss * (double)am->block_bytes) : 0;
    tok_all += tok;
    bytes_all += bytes;
    hits_all += hits;
    miss_all += ap->offload ? miss : 0;
    h2d_all += (double)pl->h2d_bytes[l];
    ns_all += pre + att;
  }
  pl->decode_ns = ns_all;
  pl->d2h_bytes = ap->offload && !has_store ? new_kv_tokens * sim__bpt(am) : 0;
  if (n > 0) {
    /* the previous step for the next one; recorded needs for the capacity comparison */
    r->wprev = 0;
    for (int64_t l = 0; l < L; l++) {
      r->wprev_l[l] = r->need_l[l];
      r->wprev += r->need_l[l];
    }
    if (r->n_steps == r->cap_steps) {
      int64_t nc = r->cap_steps ? r->cap_steps * 2 : 1024;
      int64_t *nl = realloc(r->need_log, (size_t)(nc * L) * sizeof *nl);
      if (!nl) return kv_error_set(err, KV_ENOMEM, "attention: out of memory (need log)");
      r->need_log = nl;
      r->cap_steps = nc;
    }
    for (int64_t l = 0; l < L; l++) r->need_log[r->n_steps * L + l] = (int64_t)llround(r->need_l[l]);
    r->n_steps++;
    int64_t *st = r->stats;
    st[SIM_STAT_ATTN_STEPS] += 1;
    st[SIM_STAT_ATTN_DECODE_SEQS] += n;
    st[SIM_STAT_ATTN_TOKENS] += (int64_t)llround(tok_all);
    st[SIM_STAT_ATTN_DENSE_TOKENS] += (int64_t)llround(dense_all);
    st[SIM_STAT_ATTN_HBM_BYTES] += (int64_t)llround(bytes_all);
    st[SIM_STAT_ATTN_HIT_BLOCKS] += (int64_t)llround(hits_all);
    st[SIM_STAT_ATTN_MISS_BLOCKS] += (int64_t)llround(miss_all);
    st[SIM_STAT_ATTN_NS] += ns_all;
    st[SIM_STAT_ATTN_H2D_BYTES] += (int64_t)llround(h2d_all);
  }
  r->stats[SIM_STAT_ATTN_D2H_BYTES] += pl->d2h_bytes;
  return 0;
}

int sim_attn_finish(sim_attn_run *r, int64_t gpu_kv_peak_bytes, sim_attn_result *res,
                    kv_error *err) {
  memset(res, 0, sizeof *res);
  res->pool_bytes = (int64_t)llround(r->pool_blocks * (double)r->am->block_bytes);
  res->pool_blocks = (int64_t)floor(r->pool_blocks);
  res->gpu_kv_peak_bytes = gpu_kv_peak_bytes;
  res->mean_err = r->am->mean_err;
  if (r->n_steps > 0) {
    int rc = kvc_pool_compare(r->need_log, r->n_steps, (int)r->L, r->am->block_bytes,
                              &res->pool_report, err);
    if (rc) return rc;
    res->have_pool_report = 1;
  }
  return 0;
}

int sim_attn_summary_rows(const sim_attn_params *ap, const sim_attn_result *res,
                          const int64_t *ms, double served_s, sim_attn_row *out, int cap) {
  int n = 0;
#define ROW(nm, val)                                 \
  do {                                               \
    if (n < cap) out[n++] = (sim_attn_row){nm, (double)(val)}; \
  } while (0)
  double dec = (double)ms[SIM_STAT_DECODE_TOKENS];
  double steps = (double)ms[SIM_STAT_ATTN_STEPS];
  double on = ap->mode != SIM_ATTN_OFF;
  ROW("throughput_tok_s", served_s > 0 ? dec / served_s : NAN);
  ROW("time_per_token_s", dec > 0 ? served_s / dec : NAN);
  ROW("throughput_sat_tok_s", ms[SIM_STAT_SAT_NS] > 0
                                  ? (double)ms[SIM_STAT_SAT_TOKENS] / ((double)ms[SIM_STAT_SAT_NS] * 1e-9)
                                  : NAN);
  ROW("sat_time_frac", served_s > 0 ? (double)ms[SIM_STAT_SAT_NS] * 1e-9 / served_s : NAN);
  ROW("attn_mode", ap->mode);
  ROW("attn_offload", ap->offload);
  ROW("attn_pool", ap->pool);
  ROW("attn_loop", ap->loop);
  ROW("attn_mean_err", on ? res->mean_err : NAN);
  ROW("attn_batch_mean", on && steps > 0 ? (double)ms[SIM_STAT_ATTN_DECODE_SEQS] / steps : NAN);
  ROW("attn_read_frac", on && ms[SIM_STAT_ATTN_DENSE_TOKENS] > 0
                            ? (double)ms[SIM_STAT_ATTN_TOKENS] / (double)ms[SIM_STAT_ATTN_DENSE_TOKENS]
                            : NAN);
  ROW("attn_hbm_bytes", on ? (double)ms[SIM_STAT_ATTN_HBM_BYTES] : NAN);
  ROW("attn_hbm_bytes_per_token", on && dec > 0 ? (double)ms[SIM_STAT_ATTN_HBM_BYTES] / dec : NAN);
  ROW("attn_h2d_bytes", on ? (double)ms[SIM_STAT_ATTN_H2D_BYTES] : NAN);
  ROW("attn_h2d_bytes_per_token", on && dec > 0 ? (double)ms[SIM_STAT_ATTN_H2D_BYTES] / dec : NAN);
  ROW("attn_d2h_bytes", on ? (double)ms[SIM_STAT_ATTN_D2H_BYTES] : NAN);
  double hm = (double)(ms[SIM_STAT_ATTN_HIT_BLOCKS] + ms[SIM_STAT_ATTN_MISS_BLOCKS]);
  ROW("attn_block_hit_rate", on && ap->offload && hm > 0 ? (double)ms[SIM_STAT_ATTN_HIT_BLOCKS] / hm : NAN);
  double busy = (double)ms[SIM_STAT_GPU_BUSY_NS];
  ROW("attn_time_frac", on && busy > 0 ? (double)ms[SIM_STAT_ATTN_NS] / busy : NAN);
  ROW("attn_pcie_stall_frac", on && busy > 0 ? (double)ms[SIM_STAT_ATTN_PCIE_STALL_NS] / busy : NAN);
  ROW("gpu_kv_peak_bytes", res->gpu_kv_peak_bytes);
  ROW("pool_bytes", on && ap->offload ? (double)res->pool_bytes : NAN);
  const kvc_pool_report *pr = &res->pool_report;
  int pool = on && res->have_pool_report;
  ROW("pool_block_bytes", pool ? (double)pr->block_bytes : NAN);
  ROW("pool_need_unified_blocks", pool ? (double)pr->unified_blocks : NAN);
  ROW("pool_need_equal_blocks", pool ? (double)pr->equal_blocks : NAN);
  ROW("pool_need_sized_blocks", pool ? (double)pr->sized_blocks : NAN);
  ROW("pool_need_unified_p99", pool ? (double)pr->unified_p99 : NAN);
  ROW("pool_need_equal_p99", pool ? (double)pr->equal_p99 : NAN);
  ROW("pool_equal_over_unified", pool && pr->unified_blocks > 0
                                     ? (double)pr->equal_blocks / (double)pr->unified_blocks
                                     : NAN);
  ROW("pool_unified_util", pool ? pr->unified_util : NAN);
  ROW("pool_equal_util", pool ? pr->equal_util : NAN);
#undef ROW
  return n;
}

/* attn_profile.c — measured attention budgets: HDF5 I/O and sampling (attn_profile.h). */
#include "attn_profile.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kv_fs.h"
#include "kv_h5.h"

static const char *const attn__kind_names[] = {"dense", "topk", "psa", "oracle"};
static const char *const attn__est_names2[] = {"bound", "mean", "lognormal"};

static void attn__pm_free(attn_profile_method *m) {
  free(m->count);
  free(m->frac_q);
  free(m->mean_frac);
  free(m->mean_iters);
  free(m->mean_mass);
  free(m->mean_err);
  free(m->fit_a);
  free(m->fit_b);
}

void attn_profile_free(attn_profile *p) {
  for (int i = 0; i < p->n_methods; i++) attn__pm_free(&p->methods[i]);
  free(p->methods);
  free(p->layers);
  free(p->ctx_edges);
  memset(p, 0, sizeof *p);
}

int attn_profile_find(const attn_profile *p, const char *label) {
  for (int i = 0; i < p->n_methods; i++) {
    if (strcmp(p->methods[i].label, label) == 0) return i;
  }
  return -1;
}

int attn_profile_write(const char *path, const attn_profile *p, kv_error *err) {
  kv_atomic_file af;
  int arc = kv_atomic_reserve(&af, path, err);
  if (arc) return arc;
  const char *tmp = af.tmp;
  hid_t f = kv_h5_create(tmp, err);
  if (f < 0) {
    kv_atomic_abort(&af);
    return (int)f;
  }
  const int L = p->n_layers, B = p->n_bins, Q = p->n_quantiles;
  int rc = kv_h5_attr_write_str(f, "format", "kvlab-attn-profile", path, err);
  if (!rc) rc = kv_h5_attr_write_i64(f, "schema_version", ATTN_PROFILE_VERSION, path, err);
  if (!rc) rc = kv_h5_attr_write_str(f, "source", p->source, path, err);
  if (!rc) rc = kv_h5_attr_write_str(f, "model_name", p->model_name, path, err);
  if (!rc) rc = kv_h5_attr_write_i64(f, "model_layers", p->model_layers, path, err);
  if (!rc) rc = kv_h5_attr_write_i64(f, "n_heads", p->n_heads, path, err);
  if (!rc) rc = kv_h5_attr_write_i64(f, "n_kv_heads", p->n_kv_heads, path, err);
  if (!rc) rc = kv_h5_attr_write_i64(f, "head_dim", p->head_dim, path, err);
  if (!rc) rc = kv_h5_attr_write_i64(f, "elem_bytes", p->elem_bytes, path, err);
  if (!rc) rc = kv_h5_attr_write_i64(f, "n_quantiles", Q, path, err);
  hsize_t dl[1] = {(hsize_t)L}, de[1] = {(hsize_t)B + 1};
  if (!rc) rc = kv_h5_write(f, "layers", H5T_STD_I32LE, H5T_NATIVE_INT32, 1, dl, p->layers, path, err);
  if (!rc) rc = kv_h5_write(f, "ctx_edges", H5T_STD_I64LE, H5T_NATIVE_INT64, 1, de, p->ctx_edges, path, err);
  for (int i = 0; i < p->n_methods && !rc; i++) {
    const attn_profile_method *m = &p->methods[i];
    char g[64];
    snprintf(g, sizeof g, "method_%d", i);
    hid_t gid = H5Gcreate2(f, g, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (gid < 0) {
      rc = kv_error_set(err, KV_EIO, "%s: cannot create /%s", path, g);
      break;
    }
    char what[4300];
    snprintf(what, sizeof what, "%s: /%s", path, g);
    rc = kv_h5_attr_write_str(gid, "label", m->label, what, err);
    if (!rc) rc = kv_h5_attr_write_str(gid, "kind", attn__kind_names[m->method.kind], what, err);
    if (!rc) rc = kv_h5_attr_write_i64(gid, "token_budget", m->method.token_budget, what, err);
    if (!rc) rc = kv_h5_attr_write_f64(gid, "epsilon", m->method.epsilon, what, err);
    if (!rc) rc = kv_h5_attr_write_i64(gid, "block_size", m->method.block_size, what, err);
    if (!rc) rc = kv_h5_attr_write_i64(gid, "group_blocks", m->method.group_blocks, what, err);
    if (!rc) rc = kv_h5_attr_write_str(gid, "estimate", attn__est_names2[m->method.psa_estimate], what, err);
    hsize_t d2[2] = {(hsize_t)L, (hsize_t)B}, d3[3] = {(hsize_t)L, (hsize_t)B, (hsize_t)Q};
    if (!rc) rc = kv_h5_write(gid, "count", H5T_STD_I64LE, H5T_NATIVE_INT64, 2, d2, m->count, what, err);
    if (!rc) rc = kv_h5_write(gid, "frac_q", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 3, d3, m->frac_q, what, err);
    if (!rc) rc = kv_h5_write(gid, "mean_frac", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 2, d2, m->mean_frac, what, err);
    if (!rc) rc = kv_h5_write(gid, "mean_iters", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 2, d2, m->mean_iters, what, err);
    if (!rc) rc = kv_h5_write(gid, "mean_mass", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 1, dl, m->mean_mass, what, err);
    if (!rc) rc = kv_h5_write(gid, "mean_err", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 1, dl, m->mean_err, what, err);
    if (!rc) rc = kv_h5_write(gid, "fit_a", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 1, dl, m->fit_a, what, err);
    if (!rc) rc = kv_h5_write(gid, "fit_b", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 1, dl, m->fit_b, what, err);
    H5Gclose(gid);
  }
  if (H5Fclose(f) < 0 && !rc) rc = kv_error_set(err, KV_EIO, "%s: close failed", tmp);
  if (rc) {
    kv_atomic_abort(&af);
    return rc;
  }
  return kv_atomic_commit(&af, err);
}

/* Reads dataset `name` of exactly `n` elements (rank `rank`, dims checked against want). */
static int attn__read(hid_t loc, const char *name, int rank, const hsize_t *want, hid_t mt,
                      void *buf, const char *what, kv_error *err) {
  hsize_t dims[3];
  hid_t d = kv_h5_open_dataset(loc, name, rank, dims, what, err);
  if (d < 0) return (int)d;
  hsize_t n = 1;
  for (int i = 0; i < rank; i++) {
    if (dims[i] != want[i]) {
      H5Dclose(d);
      return kv_error_set(err, KV_EFORMAT, "%s/%s: dimension %d is %llu, expected %llu", what,
                          name, i, (unsigned long long)dims[i], (unsigned long long)want[i]);
    }
    n *= dims[i];
  }
  char w[4400];
  snprintf(w, sizeof w, "%s/%s", what, name);
  int rc = kv_h5_read_all(d, mt, buf, n, w, err);
  H5Dclose(d);
  return rc;
}

static int attn__geti(hid_t loc, const char *name, int lo, int hi, int *out, const char *what,
                      kv_error *err) {
  int64_t v;
  int rc = kv_h5_attr_read_i64(loc, name, &v, what, err);
  if (rc) return rc;
  if (v < lo || v > hi) {
    return kv_error_set(err, KV_ERANGE, "%s: %s = %lld outside [%d, %d]", what, name,
                        (long long)v, lo, hi);
  }
  *out = (int)v;
  return 0;
}

int attn_profile_read(const char *path, attn_profile *p, kv_error *err) {
  memset(p, 0, sizeof *p);
  hid_t f = kv_h5_open_read(path, err);
  if (f < 0) return (int)f;
  char what[4200], fmt[64] = "";
  snprintf(what, sizeof what, "%s: /", path);
  int ver = 0, rc = kv_h5_attr_read_str(f, "format", fmt, sizeof fmt, what, err);
  if (!rc && strcmp(fmt, "kvlab-attn-profile") != 0) {
    rc = kv_error_set(err, KV_EFORMAT, "%s: format '%s' is not kvlab-attn-profile", what, fmt);
  }
  if (!rc) rc = attn__geti(f, "schema_version", 0, 1 << 20, &ver, what, err);
  if (!rc && ver != ATTN_PROFILE_VERSION) {
    rc = kv_error_set(err, KV_ENOTSUP, "%s: schema_version %d not supported", what, ver);
  }
  if (!rc) rc = kv_h5_attr_read_str(f, "source", p->source, sizeof p->source, what, err);
  if (!rc) rc = kv_h5_attr_read_str(f, "model_name", p->model_name, sizeof p->model_name, what, err);
  if (!rc) rc = attn__geti(f, "model_layers", 1, 100000, &p->model_layers, what, err);
  if (!rc) rc = attn__geti(f, "n_heads", 1, 4096, &p->n_heads, what, err);
  if (!rc) rc = attn__geti(f, "n_kv_heads", 1, 4096, &p->n_kv_heads, what, err);
  if (!rc) rc = attn__geti(f, "head_dim", 1, 1024, &p->head_dim, what, err);
  if (!rc) rc = attn__geti(f, "elem_bytes", 1, 8, &p->elem_bytes, what, err);
  if (!rc) rc = attn__geti(f, "n_quantiles", 2, 10000, &p->n_quantiles, what, err);
  hsize_t dims[3];
  if (!rc) {
    hid_t d = kv_h5_open_dataset(f, "layers", 1, dims, what, err);
    if (d < 0) rc = (int)d;
    else {
      p->n_layers = (int)dims[0];
      H5Dclose(d);
    }
  }
  if (!rc) {
    hid_t d = kv_h5_open_dataset(f, "ctx_edges", 1, dims, what, err);
    if (d < 0) rc = (int)d;
    else {
      p->n_bins = (int)dims[0] - 1;
      H5Dclose(d);
    }
  }
  if (!rc && (p->n_layers < 1 || p->n_bins < 1 || p->n_layers > 100000 || p->n_bins > 100000)) {
    rc = kv_error_set(err, KV_EFORMAT, "%s: %d layers and %d bins (need at least one each)", what,
                      p->n_layers, p->n_bins);
  }
  const int L = p->n_layers, B = p->n_bins, Q = p->n_quantiles;
  if (!rc) {
    p->layers = malloc((size_t)L * sizeof *p->layers);
    p->ctx_edges = malloc((size_t)(B + 1) * sizeof *p->ctx_edges);
    if (!p->layers || !p->ctx_edges) rc = kv_error_set(err, KV_ENOMEM, "out of memory");
  }
  hsize_t wl[1] = {(hsize_t)L}, we[1] = {(hsize_t)B + 1};
  if (!rc) rc = attn__read(f, "layers", 1, wl, H5T_NATIVE_INT32, p->layers, what, err);
  if (!rc) rc = attn__read(f, "ctx_edges", 1, we, H5T_NATIVE_INT64, p->ctx_edges, what, err);
  for (int b = 0; !rc && b < B; b++) {
    if (p->ctx_edges[b] < 1 || p->ctx_edges[b + 1] <= p->ctx_edges[b]) {
      rc = kv_error_set(err, KV_EFORMAT, "%s/ctx_edges: not positive and increasing at %d", what, b);
    }
  }
  int nm = 0;
  while (!rc) {
    char g[64];
    snprintf(g, sizeof g, "method_%d", nm);
    if (!kv_h5_exists(f, g)) break;
    nm++;
  }
  if (!rc && nm == 0) rc = kv_error_set(err, KV_EFORMAT, "%s: no method_<m> groups", what);
  if (!rc) {
    p->methods = calloc((size_t)nm, sizeof *p->methods);
    if (!p->methods) rc = kv_error_set(err, KV_ENOMEM, "out of memory");
  }
  for (int i = 0; i < nm && !rc; i++) {
    attn_profile_method *m = &p->methods[i];
    p->n_methods = i + 1;
    char g[64], w[4300], kind[32] = "", est[32] = "";
    snprintf(g, sizeof g, "method_%d", i);
    snprintf(w, sizeof w, "%s: /%s", path, g);
    hid_t gid = H5Gopen2(f, g, H5P_DEFAULT);
    rc = kv_h5_attr_read_str(gid, "label", m->label, sizeof m->label, w, err);
    if (!rc) rc = kv_h5_attr_read_str(gid, "kind", kind, sizeof kind, w, err);
    int k = -1;
    for (int j = 0; j < 4; j++) k = strcmp(kind, attn__kind_names[j]) == 0 ? j : k;
    if (!rc && k < 0) rc = kv_error_set(err, KV_EFORMAT, "%s: unknown kind '%s'", w, kind);
    if (!rc) {
      attn_method_defaults(&m->method, (attn_method_kind)k);
      int64_t v;
      rc = kv_h5_attr_read_i64(gid, "token_budget", &v, w, err);
      m->method.token_budget = v;
      if (!rc) rc = kv_h5_attr_read_f64(gid, "epsilon", &m->method.epsilon, w, err);
      if (!rc) rc = attn__geti(gid, "block_size", 1, 4096, &m->method.block_size, w, err);
      if (!rc) rc = attn__geti(gid, "group_blocks", 1, 1 << 20, &m->method.group_blocks, w, err);
      if (!rc) rc = kv_h5_attr_read_str(gid, "estimate", est, sizeof est, w, err);
      for (int j = 0; j < 3; j++) {
        if (!strcmp(est, attn__est_names2[j])) m->method.psa_estimate = (attn_estimate)j;
      }
    }
    size_t lb = (size_t)L * B;
    m->count = malloc(lb * sizeof *m->count);
    m->frac_q = malloc(lb * Q * sizeof *m->frac_q);
    m->mean_frac = malloc(lb * sizeof(double));
    m->mean_iters = malloc(lb * sizeof(double));
    m->mean_mass = malloc((size_t)L * sizeof(double));
    m->mean_err = malloc((size_t)L * sizeof(double));
    m->fit_a = malloc((size_t)L * sizeof(double));
    m->fit_b = malloc((size_t)L * sizeof(double));
    if (!rc && (!m->count || !m->frac_q || !m->mean_frac || !m->mean_iters || !m->mean_mass ||
                !m->mean_err || !m->fit_a || !m->fit_b)) {
      rc = kv_error_set(err, KV_ENOMEM, "out of memory");
    }
    hsize_t d2[2] = {(hsize_t)L, (hsize_t)B}, d3[3] = {(hsize_t)L, (hsize_t)B, (hsize_t)Q};
    if (!rc) rc = attn__read(gid, "count", 2, d2, H5T_NATIVE_INT64, m->count, w, err);
    if (!rc) rc = attn__read(gid, "frac_q", 3, d3, H5T_NATIVE_DOUBLE, m->frac_q, w, err);
    if (!rc) rc = attn__read(gid, "mean_frac", 2, d2, H5T_NATIVE_DOUBLE, m->mean_frac, w, err);
    if (!rc) rc = attn__read(gid, "mean_iters", 2, d2, H5T_NATIVE_DOUBLE, m->mean_iters, w, err);
    if (!rc) rc = attn__read(gid, "mean_mass", 1, wl, H5T_NATIVE_DOUBLE, m->mean_mass, w, err);
    if (!rc) rc = attn__read(gid, "mean_err", 1, wl, H5T_NATIVE_DOUBLE, m->mean_err, w, err);
    if (!rc) rc = attn__read(gid, "fit_a", 1, wl, H5T_NATIVE_DOUBLE, m->fit_a, w, err);
    if (!rc) rc = attn__read(gid, "fit_b", 1, wl, H5T_NATIVE_DOUBLE, m->fit_b, w, err);
    /* Quantiles in [0, 1] and non-decreasing where the bin has data. */
    for (size_t c = 0; !rc && c < lb; c++) {
      if (m->count[c] == 0) continue;
      for (int q = 0; q < Q && !rc; q++) {
        double x = m->frac_q[c * Q + q];
        if (!(x >= 0 && x <= 1) || (q && x < m->frac_q[c * Q + q - 1])) {
          rc = kv_error_set(err, KV_EFORMAT, "%s/frac_q: quantile %d of layer row %zu bin %zu "
                            "is %g (must lie in [0, 1] and not decrease)", w, q, c / B, c % B, x);
        }
      }
    }
    for (int l = 0; !rc && l < L; l++) {
      if (!isfinite(m->fit_a[l]) || !isfinite(m->fit_b[l]) || m->fit_a[l] <= 0) {
        rc = kv_error_set(err, KV_EFORMAT, "%s: fit of layer row %d is not finite/positive", w, l);
      }
    }
    H5Gclose(gid);
  }
  H5Fclose(f);
  if (rc) attn_profile_free(p);
  return rc;
}

/* The bin holding n_keys, clamped to the measured bins that have data for (m, l). Sets *scale
 * to the fit's factor when n_keys lies outside that bin. */
static int attn__bin(const attn_profile *p, int m, int l, int64_t n, double *scale) {
  const attn_profile_method *pm = &p->methods[m];
  int first = -1, last = -1, hit = -1;
  for (int b = 0; b < p->n_bins; b++) {
    if (pm->count[(size_t)l * p->n_bins + b] == 0) continue;
    if (first < 0) first = b;
    last = b;
    if (n >= p->ctx_edges[b] && n < p->ctx_edges[b + 1]) hit = b;
  }
  *scale = 1.0;
  if (first < 0) return -1;
  if (hit >= 0) return hit;
  int b = n < p->ctx_edges[first] ? first : last;
  /* Rescale tokens by the fit from the bin's geometric centre; the caller divides by n. */
  double centre = sqrt((double)p->ctx_edges[b] * (double)(p->ctx_edges[b + 1] - 1));
  double tok_ratio = pow((double)n / centre, pm->fit_b[l]);
  *scale = tok_ratio * centre / (double)n;
  return b;
}

double attn_profile_sample_frac(const attn_profile *p, int m, int l, int64_t n_keys, double u) {
  const attn_profile_method *pm = &p->methods[m];
  double scale;
  int b = attn__bin(p, m, l, n_keys, &scale);
  if (b < 0) { /* no data: the fit alone */
    double t = pm->fit_a[l] * pow((double)n_keys, pm->fit_b[l]);
    double fr = t / (double)n_keys;
    return fr > 1 ? 1 : (fr <= 0 ? 1.0 / (double)n_keys : fr);
  }
  const int Q = p->n_quantiles;
  const double *q = pm->frac_q + ((size_t)l * p->n_bins + b) * Q;
  double pos = u * (Q - 1);
  int i = (int)pos;
  if (i >= Q - 1) i = Q - 2;
  double t = pos - i;
  double fr = (q[i] * (1 - t) + q[i + 1] * t) * scale;
  double lo = 1.0 / (double)n_keys;
  return fr > 1 ? 1 : (fr < lo ? lo : fr);
}

double attn_profile_mean_frac(const attn_profile *p, int m, int l, int64_t n_keys) {
  const attn_profile_method *pm = &p->methods[m];
  double scale;
  int b = attn__bin(p, m, l, n_keys, &scale);
  if (b < 0) return attn_profile_sample_frac(p, m, l, n_keys, 0.5);
  double fr = pm->mean_frac[(size_t)l * p->n_bins + b] * scale;
  return fr > 1 ? 1 : fr;
}

int attn_profile_layer_row(const attn_profile *p, int layer, int model_layers) {
  if (layer == 0 && p->layers[0] == 0) return 0;
  double want = model_layers > 1 ? (double)layer / (model_layers - 1) : 0.0;
  int best = 0;
  double bd = 1e30;
  for (int i = 0; i < p->n_layers; i++) {
    double r = p->model_layers > 1 ? (double)p->layers[i] / (p->model_layers - 1) : 0.0;
    /* Layer 0 is special (dense-like); other layers never map onto it. */
    if (p->layers[i] == 0 && layer != 0 && p->n_layers > 1) continue;
    double d = fabs(r - want);
    if (d < bd) {
      bd = d;
      best = i;
    }
  }
  return best;
}

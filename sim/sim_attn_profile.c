/* sim_attn_profile.c — reading and sampling the attention profile (sim_attn_profile.h). */
#include "sim_attn_profile.h"

#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kv_h5.h"

#define SIM_ATTN_PROFILE_VERSION 2

const char *const sim_attn_cost_names[] = {"dense", "fixed", "progressive", NULL};

void sim_attn_desc_dense(sim_attn_desc *d) {
  memset(d, 0, sizeof *d);
  snprintf(d->spec, sizeof d->spec, "dense");
  snprintf(d->label, sizeof d->label, "dense");
  snprintf(d->kind, sizeof d->kind, "dense");
  d->cost = SIM_ATTN_COST_DENSE;
  d->block_size = 16;
  d->forced_blocks = 2;
  d->group_blocks = 4;
  d->meta_vectors = 0;
  d->full_upto = INT64_MAX;
}

int64_t sim_attn_bytes_read(const sim_attn_desc *d, int64_t head_dim, int64_t elem_bytes,
                            int64_t n_keys, int64_t tokens) {
  int64_t nb = (n_keys + d->block_size - 1) / d->block_size;
  return tokens * 2 * head_dim * elem_bytes + nb * d->meta_vectors * head_dim * elem_bytes;
}

/* ---- reading ------------------------------------------------------------------------------- */

void sim_attn_profile_free(sim_attn_profile *p) {
  for (int i = 0; i < p->n_methods; i++) kv_profile_tables_free(&p->methods[i].t);
  free(p->methods);
  free(p->layers);
  free(p->ctx_edges);
  kv_profile_timings_free(&p->timings);
  memset(p, 0, sizeof *p);
}

/* Reads dataset `name` of exactly the dims `want` (rank `rank`). */
static int sim__read(hid_t loc, const char *name, int rank, const hsize_t *want, hid_t mt,
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

static int sim__geti(hid_t loc, const char *name, int64_t lo, int64_t hi, int64_t *out,
                     const char *what, kv_error *err) {
  int64_t v;
  int rc = kv_h5_attr_read_i64(loc, name, &v, what, err);
  if (rc) return rc;
  if (v < lo || v > hi) {
    return kv_error_set(err, KV_ERANGE, "%s: %s = %lld outside [%lld, %lld]", what, name,
                        (long long)v, (long long)lo, (long long)hi);
  }
  *out = v;
  return 0;
}

static int sim__geti32(hid_t loc, const char *name, int lo, int hi, int *out, const char *what,
                       kv_error *err) {
  int64_t v = 0;
  int rc = sim__geti(loc, name, lo, hi, &v, what, err);
  *out = (int)v;
  return rc;
}

/* The attributes of /method_<i>: the descriptor. */
static int sim__read_desc(hid_t gid, sim_attn_desc *d, const char *w, kv_error *err) {
  char cost[32] = "";
  int rc = kv_h5_attr_read_str(gid, "spec", d->spec, sizeof d->spec, w, err);
  if (!rc) rc = kv_h5_attr_read_str(gid, "label", d->label, sizeof d->label, w, err);
  if (!rc) rc = kv_h5_attr_read_str(gid, "kind", d->kind, sizeof d->kind, w, err);
  if (!rc) rc = kv_h5_attr_read_str(gid, "cost_class", cost, sizeof cost, w, err);
  int k = -1;
  for (int j = 0; !rc && sim_attn_cost_names[j]; j++) k = strcmp(cost, sim_attn_cost_names[j]) ? k : j;
  if (!rc && k < 0) rc = kv_error_set(err, KV_EFORMAT, "%s: unknown cost_class '%s'", w, cost);
  d->cost = (sim_attn_cost)k;
  if (!rc) rc = sim__geti(gid, "block_size", 1, 4096, &d->block_size, w, err);
  if (!rc) rc = sim__geti(gid, "forced_blocks", 0, 1 << 21, &d->forced_blocks, w, err);
  if (!rc) rc = sim__geti(gid, "group_blocks", 1, 1 << 20, &d->group_blocks, w, err);
  if (!rc) rc = sim__geti(gid, "meta_vectors", 0, 64, &d->meta_vectors, w, err);
  if (!rc) rc = sim__geti(gid, "full_upto", 0, INT64_MAX, &d->full_upto, w, err);
  return rc;
}

/* Quantiles in [0, 1] and non-decreasing where a bin has data; finite positive fits. */
static int sim__check_method(const sim_attn_profile *p, const sim_attn_prof_method *m,
                             const char *w, kv_error *err) {
  const int L = p->n_layers, B = p->n_bins, Q = p->n_quantiles;
  for (size_t c = 0; c < (size_t)L * B; c++) {
    if (m->t.count[c] == 0) continue;
    for (int q = 0; q < Q; q++) {
      double x = m->t.frac_q[c * Q + q];
      if (!(x >= 0 && x <= 1) || (q && x < m->t.frac_q[c * Q + q - 1])) {
        return kv_error_set(err, KV_EFORMAT, "%s/frac_q: quantile %d of layer row %zu bin %zu "
                            "is %g (must lie in [0, 1] and not decrease)", w, q, c / B, c % B, x);
      }
    }
  }
  for (int l = 0; l < L; l++) {
    if (!isfinite(m->t.fit_a[l]) || !isfinite(m->t.fit_b[l]) || m->t.fit_a[l] <= 0) {
      return kv_error_set(err, KV_EFORMAT, "%s: fit of layer row %d is not finite/positive", w, l);
    }
  }
  return 0;
}

static int sim__read_method(hid_t f, const char *path, sim_attn_profile *p, int i, kv_error *err) {
  sim_attn_prof_method *m = &p->methods[i];
  const int L = p->n_layers, B = p->n_bins, Q = p->n_quantiles;
  char g[64], w[4300];
  snprintf(g, sizeof g, "method_%d", i);
  snprintf(w, sizeof w, "%s: /%s", path, g);
  hid_t gid = H5Gopen2(f, g, H5P_DEFAULT);
  if (gid < 0) return kv_error_set(err, KV_EFORMAT, "%s: cannot open the group", w);
  int rc = sim__read_desc(gid, &m->desc, w, err);
  if (!rc && kv_profile_tables_alloc(&m->t, L, B, Q)) rc = kv_error_set(err, KV_ENOMEM, "out of memory");
  kv_profile_field fl[KV_PROFILE_N_FIELDS];
  kv_profile_fields(&m->t, L, B, Q, fl);
  for (int k = 0; !rc && k < KV_PROFILE_N_FIELDS; k++) {
    hsize_t dims[3] = {fl[k].dims[0], fl[k].dims[1], fl[k].dims[2]};
    rc = sim__read(gid, fl[k].name, fl[k].rank, dims,
                   fl[k].is_int ? H5T_NATIVE_INT64 : H5T_NATIVE_DOUBLE, fl[k].data, w, err);
  }
  if (!rc) rc = sim__check_method(p, m, w, err);
  H5Gclose(gid);
  return rc;
}

int sim_attn_timings_read(const char *path, sim_attn_timings *t, kv_error *err) {
  return kv_profile_timings_read_file(path, t, err);
}

/* The root attributes, /layers and /ctx_edges. */
static int sim__read_head(hid_t f, const char *path, sim_attn_profile *p, kv_error *err) {
  char what[4200], fmt[64] = "";
  snprintf(what, sizeof what, "%s: /", path);
  int ver = 0, rc = kv_h5_attr_read_str(f, "format", fmt, sizeof fmt, what, err);
  if (!rc && strcmp(fmt, "kvlab-attn-profile") != 0) {
    rc = kv_error_set(err, KV_EFORMAT, "%s: format '%s' is not kvlab-attn-profile", what, fmt);
  }
  if (!rc) rc = sim__geti32(f, "schema_version", 0, 1 << 20, &ver, what, err);
  if (!rc && ver != SIM_ATTN_PROFILE_VERSION) {
    rc = kv_error_set(err, KV_ENOTSUP, "%s: schema_version %d not supported (this simulator reads "
                      "%d; rebuild the profile with attn-profile)", what, ver,
                      SIM_ATTN_PROFILE_VERSION);
  }
  if (!rc) rc = kv_h5_attr_read_str(f, "source", p->source, sizeof p->source, what, err);
  if (!rc) rc = kv_h5_attr_read_str(f, "model_name", p->model_name, sizeof p->model_name, what, err);
  if (!rc) rc = sim__geti32(f, "model_layers", 1, 100000, &p->model_layers, what, err);
  if (!rc) rc = sim__geti32(f, "n_heads", 1, 4096, &p->n_heads, what, err);
  if (!rc) rc = sim__geti32(f, "n_kv_heads", 1, 4096, &p->n_kv_heads, what, err);
  if (!rc) rc = sim__geti32(f, "head_dim", 1, 1024, &p->head_dim, what, err);
  if (!rc) rc = sim__geti32(f, "elem_bytes", 1, 8, &p->elem_bytes, what, err);
  if (!rc) rc = sim__geti32(f, "n_quantiles", 2, 10000, &p->n_quantiles, what, err);
  hsize_t dims[3];
  const char *names[2] = {"layers", "ctx_edges"};
  int64_t len[2] = {0, 0};
  for (int k = 0; k < 2 && !rc; k++) {
    hid_t d = kv_h5_open_dataset(f, names[k], 1, dims, what, err);
    if (d < 0) rc = (int)d;
    else H5Dclose(d);
    len[k] = (int64_t)dims[0];
  }
  p->n_layers = (int)len[0];
  p->n_bins = (int)len[1] - 1;
  if (!rc && (p->n_layers < 1 || p->n_bins < 1 || p->n_layers > 100000 || p->n_bins > 100000)) {
    rc = kv_error_set(err, KV_EFORMAT, "%s: %d layers and %d bins (need at least one each)", what,
                      p->n_layers, p->n_bins);
  }
  if (!rc) {
    p->layers = malloc((size_t)p->n_layers * sizeof *p->layers);
    p->ctx_edges = malloc((size_t)(p->n_bins + 1) * sizeof *p->ctx_edges);
    if (!p->layers || !p->ctx_edges) rc = kv_error_set(err, KV_ENOMEM, "out of memory");
  }
  hsize_t wl[1] = {(hsize_t)p->n_layers}, we[1] = {(hsize_t)p->n_bins + 1};
  if (!rc) rc = sim__read(f, "layers", 1, wl, H5T_NATIVE_INT32, p->layers, what, err);
  if (!rc) rc = sim__read(f, "ctx_edges", 1, we, H5T_NATIVE_INT64, p->ctx_edges, what, err);
  for (int b = 0; !rc && b < p->n_bins; b++) {
    if (p->ctx_edges[b] < 1 || p->ctx_edges[b + 1] <= p->ctx_edges[b]) {
      rc = kv_error_set(err, KV_EFORMAT, "%s/ctx_edges: not positive and increasing at %d", what, b);
    }
  }
  return rc;
}

int sim_attn_profile_read(const char *path, sim_attn_profile *p, kv_error *err) {
  memset(p, 0, sizeof *p);
  hid_t f = kv_h5_open_read(path, err);
  if (f < 0) return (int)f;
  int rc = sim__read_head(f, path, p, err);
  int nm = 0;
  while (!rc) {
    char g[64];
    snprintf(g, sizeof g, "method_%d", nm);
    if (!kv_h5_exists(f, g)) break;
    nm++;
  }
  if (!rc && nm == 0) rc = kv_error_set(err, KV_EFORMAT, "%s: / has no method_<m> groups", path);
  if (!rc) {
    p->methods = calloc((size_t)nm, sizeof *p->methods);
    if (!p->methods) rc = kv_error_set(err, KV_ENOMEM, "out of memory");
  }
  for (int i = 0; i < nm && !rc; i++) {
    p->n_methods = i + 1;
    rc = sim__read_method(f, path, p, i, err);
  }
  if (!rc && kv_h5_exists(f, "kernel_timings")) {
    char what[4300];
    snprintf(what, sizeof what, "%s: /kernel_timings", path);
    hid_t g = H5Gopen2(f, "kernel_timings", H5P_DEFAULT);
    rc = g < 0 ? kv_error_set(err, KV_EIO, "%s: cannot open", what)
               : kv_profile_timings_read_group(g, &p->timings, what, err);
    if (g >= 0) H5Gclose(g);
  }
  H5Fclose(f);
  if (rc) sim_attn_profile_free(p);
  return rc;
}

int sim_attn_profile_find(const sim_attn_profile *p, const char *name) {
  for (int i = 0; i < p->n_methods; i++) {
    if (strcmp(p->methods[i].desc.label, name) == 0) return i;
  }
  for (int i = 0; i < p->n_methods; i++) {
    if (strcmp(p->methods[i].desc.spec, name) == 0) return i;
  }
  return -1;
}

int sim_attn_profile_layer_row(const sim_attn_profile *p, int layer, int model_layers) {
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

/* ---- sampling ------------------------------------------------------------------------------ */

int sim_attn_profile_bin(const sim_attn_profile *p, int m, int l, int64_t n, double fit_b,
                         double *scale) {
  const sim_attn_prof_method *pm = &p->methods[m];
  int first = -1, last = -1, hit = -1;
  for (int b = 0; b < p->n_bins; b++) {
    if (pm->t.count[(size_t)l * p->n_bins + b] == 0) continue;
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
  double tok_ratio = pow((double)n / centre, fit_b);
  *scale = tok_ratio * centre / (double)n;
  return b;
}

double sim_attn_profile_interp(const double *q, int n_quantiles, double u, double scale,
                               double lo) {
  const int Q = n_quantiles;
  double pos = u * (Q - 1);
  int i = (int)pos;
  if (i >= Q - 1) i = Q - 2;
  double t = pos - i;
  double fr = (q[i] * (1 - t) + q[i + 1] * t) * scale;
  return fr > 1 ? 1 : (fr < lo ? lo : fr);
}

double sim_attn_profile_fit_frac(const sim_attn_profile *p, int m, int l, int64_t n) {
  const sim_attn_prof_method *pm = &p->methods[m];
  double t = pm->t.fit_a[l] * pow((double)n, pm->t.fit_b[l]);
  double fr = t / (double)n;
  return fr > 1 ? 1 : (fr <= 0 ? 1.0 / (double)n : fr);
}

double sim_attn_profile_sample_frac(const sim_attn_profile *p, int m, int l, int64_t n,
                                    double u) {
  const sim_attn_prof_method *pm = &p->methods[m];
  double scale;
  int b = sim_attn_profile_bin(p, m, l, n, pm->t.fit_b[l], &scale);
  if (b < 0) return sim_attn_profile_fit_frac(p, m, l, n);
  const double *q = pm->t.frac_q + ((size_t)l * p->n_bins + b) * p->n_quantiles;
  return sim_attn_profile_interp(q, p->n_quantiles, u, scale, 1.0 / (double)n);
}

double sim_attn_profile_mean_frac(const sim_attn_profile *p, int m, int l, int64_t n) {
  const sim_attn_prof_method *pm = &p->methods[m];
  double scale;
  int b = sim_attn_profile_bin(p, m, l, n, pm->t.fit_b[l], &scale);
  if (b < 0) return sim_attn_profile_fit_frac(p, m, l, n);
  double fr = pm->t.mean_frac[(size_t)l * p->n_bins + b] * scale;
  return fr > 1 ? 1 : fr;
}

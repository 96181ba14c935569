/* attn_profile.c — the attention profile's builder and HDF5 writer (attn_profile.h). The reader
 * and sampler are the simulator's (sim/sim_attn_profile.c). */
#include "attn_profile.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kv_fs.h"
#include "kv_h5.h"

void attn_profile_free(attn_profile *p) {
  for (int i = 0; i < p->n_methods; i++) kv_profile_tables_free(&p->methods[i].t);
  free(p->methods);
  free(p->layers);
  free(p->ctx_edges);
  kv_profile_timings_free(&p->timings);
  memset(p, 0, sizeof *p);
}

/* ---- writing ------------------------------------------------------------------------------- */

/* The attributes of /method_<i>: identity (spec, label, kind) and the figures that price it. */
static int attn__write_method_attrs(hid_t gid, const attn_profile *p,
                                    const attn_profile_method *pm, const char *what,
                                    kv_error *err) {
  const attn_method *m = &pm->method;
  char spec[160];
  if (attn_method_spec(m, spec, sizeof spec) < 0) {
    return kv_error_set(err, KV_EINVAL, "%s: method of kind %d has no spec", what, (int)m->kind);
  }
  const int vecs = attn_method_meta_vectors(m);
  int rc = kv_h5_attr_write_str(gid, "spec", spec, what, err);
  if (!rc) rc = kv_h5_attr_write_str(gid, "label", pm->label, what, err);
  if (!rc) rc = kv_h5_attr_write_str(gid, "kind", attn_method_name(m), what, err);
  if (!rc) {
    rc = kv_h5_attr_write_str(gid, "cost_class",
                              attn_cost_class_names[attn_method_cost_class(m)], what, err);
  }
  const struct {
    const char *name;
    int64_t v;
  } ints[] = {
      {"block_size", m->block_size},
      {"sink_blocks", m->keep_sink_blocks},
      {"recent_blocks", m->keep_recent_blocks},
      {"forced_blocks", (int64_t)m->keep_sink_blocks + m->keep_recent_blocks},
      {"group_blocks", m->group_blocks},
      {"token_budget", m->token_budget},
      {"meta_vectors", vecs},
      {"meta_bytes_per_block", (int64_t)vecs * p->head_dim * p->elem_bytes},
      {"full_upto", attn_method_full_upto(m)},
  };
  for (size_t i = 0; !rc && i < sizeof ints / sizeof ints[0]; i++) {
    rc = kv_h5_attr_write_i64(gid, ints[i].name, ints[i].v, what, err);
  }
  if (!rc) rc = kv_h5_attr_write_f64(gid, "epsilon", m->epsilon, what, err);
  return rc;
}

static int attn__write_method(hid_t f, const char *path, const attn_profile *p, int i,
                              kv_error *err) {
  const attn_profile_method *m = &p->methods[i];
  const int L = p->n_layers, B = p->n_bins, Q = p->n_quantiles;
  char g[64], what[4300];
  snprintf(g, sizeof g, "method_%d", i);
  snprintf(what, sizeof what, "%s: /%s", path, g);
  hid_t gid = H5Gcreate2(f, g, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  if (gid < 0) return kv_error_set(err, KV_EIO, "%s: cannot create /%s", path, g);
  int rc = attn__write_method_attrs(gid, p, m, what, err);
  kv_profile_field fl[KV_PROFILE_N_FIELDS];
  kv_profile_fields(&m->t, L, B, Q, fl);
  for (int k = 0; !rc && k < KV_PROFILE_N_FIELDS; k++) {
    hsize_t dims[3] = {fl[k].dims[0], fl[k].dims[1], fl[k].dims[2]};
    rc = fl[k].is_int ? kv_h5_write(gid, fl[k].name, H5T_STD_I64LE, H5T_NATIVE_INT64, fl[k].rank,
                                    dims, fl[k].data, what, err)
                      : kv_h5_write(gid, fl[k].name, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE,
                                    fl[k].rank, dims, fl[k].data, what, err);
  }
  H5Gclose(gid);
  return rc;
}

static int attn__write_timings(hid_t f, const char *path, const kv_profile_timings *t,
                               kv_error *err) {
  char what[4300];
  snprintf(what, sizeof what, "%s: /kernel_timings", path);
  hid_t g = H5Gcreate2(f, "kernel_timings", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  if (g < 0) return kv_error_set(err, KV_EIO, "%s: cannot create the group", what);
  int rc = kv_profile_timings_write_group(g, t, what, err);
  H5Gclose(g);
  return rc;
}

/* Labels are how configs name methods: they must be unique. */
static int attn__check_labels(const attn_profile *p, const char *path, kv_error *err) {
  for (int i = 0; i < p->n_methods; i++) {
    for (int j = 0; j < i; j++) {
      if (strcmp(p->methods[i].label, p->methods[j].label) == 0) {
        return kv_error_set(err, KV_EINVAL, "%s: methods %d and %d share the label '%s'", path,
                            j, i, p->methods[i].label);
      }
    }
  }
  return 0;
}

int attn_profile_write(const char *path, const attn_profile *p, kv_error *err) {
  int rc = attn__check_labels(p, path, err);
  if (rc) return rc;
  kv_atomic_file af;
  if ((rc = kv_atomic_reserve(&af, path, err))) return rc;
  const char *tmp = af.tmp;
  hid_t f = kv_h5_create(tmp, err);
  if (f < 0) {
    kv_atomic_abort(&af);
    return (int)f;
  }
  const int L = p->n_layers, B = p->n_bins, Q = p->n_quantiles;
  rc = kv_h5_attr_write_str(f, "format", "kvlab-attn-profile", path, err);
  if (!rc) rc = kv_h5_attr_write_i64(f, "schema_version", ATTN_PROFILE_VERSION, path, err);
  if (!rc) rc = kv_h5_attr_write_str(f, "source", p->source, path, err);
  if (!rc) rc = kv_h5_attr_write_str(f, "model_name", p->model_name, path, err);
  const struct {
    const char *name;
    int64_t v;
  } ints[] = {{"model_layers", p->model_layers}, {"n_heads", p->n_heads},
              {"n_kv_heads", p->n_kv_heads},     {"head_dim", p->head_dim},
              {"elem_bytes", p->elem_bytes},     {"n_quantiles", Q}};
  for (size_t i = 0; !rc && i < sizeof ints / sizeof ints[0]; i++) {
    rc = kv_h5_attr_write_i64(f, ints[i].name, ints[i].v, path, err);
  }
  hsize_t dl[1] = {(hsize_t)L}, de[1] = {(hsize_t)B + 1};
  if (!rc) rc = kv_h5_write(f, "layers", H5T_STD_I32LE, H5T_NATIVE_INT32, 1, dl, p->layers, path, err);
  if (!rc) rc = kv_h5_write(f, "ctx_edges", H5T_STD_I64LE, H5T_NATIVE_INT64, 1, de, p->ctx_edges, path, err);
  for (int i = 0; i < p->n_methods && !rc; i++) rc = attn__write_method(f, path, p, i, err);
  if (!rc && p->timings.n > 0) rc = attn__write_timings(f, path, &p->timings, err);
  if (H5Fclose(f) < 0 && !rc) rc = kv_error_set(err, KV_EIO, "%s: close failed", tmp);
  if (rc) {
    kv_atomic_abort(&af);
    return rc;
  }
  return kv_atomic_commit(&af, err);
}

int attn_profile_read_timings(const char *path, attn_profile *p, kv_error *err) {
  kv_profile_timings_free(&p->timings);
  return kv_profile_timings_read_file(path, &p->timings, err);
}

/* ---- building ------------------------------------------------------------------------------ */

void attn_profile_fit_power(const attn_profile_record *r, size_t n, int64_t below,
                            int64_t at_least, double *a, double *b) {
  double sx = 0, sy = 0, sxx = 0, sxy = 0, cnt = 0;
  for (size_t i = 0; i < n; i++) {
    if (below > 0 && r[i].n_keys >= below) continue;
    if (r[i].n_keys < at_least) continue;
    double x = log((double)r[i].n_keys), y = log((double)(r[i].tokens > 0 ? r[i].tokens : 1));
    sx += x;
    sy += y;
    sxx += x * x;
    sxy += x * y;
    cnt += 1;
  }
  double den = cnt * sxx - sx * sx;
  if (cnt < 2 || fabs(den) < 1e-12) {
    *b = 1.0;
    *a = cnt > 0 ? exp(sy / cnt - sx / cnt) : 1.0;
    return;
  }
  *b = (cnt * sxy - sx * sy) / den;
  *a = exp((sy - *b * sx) / cnt);
}

void attn_profile_builder_free(attn_profile_builder *b) {
  for (int i = 0; b->recs && i < b->n_methods * b->n_layers; i++) free(b->recs[i]);
  free(b->recs);
  free(b->n_recs);
  free(b->cap_recs);
  free(b->mass);
  free(b->err);
  free(b->heads);
  free(b->methods);
  free(b->layers);
  memset(b, 0, sizeof *b);
}

int attn_profile_builder_init(attn_profile_builder *b, const attn_method *methods, int n_methods,
                              const int32_t *layers, int n_layers, kv_error *err) {
  memset(b, 0, sizeof *b);
  if (n_methods < 1 || n_layers < 1) {
    return kv_error_set(err, KV_EINVAL, "profile: %d methods and %d layers (need >= 1 each)",
                        n_methods, n_layers);
  }
  for (int i = 0; i < n_methods; i++) {
    int rc = attn_method_check(&methods[i], err);
    if (rc) return rc;
  }
  const size_t ml = (size_t)n_methods * n_layers;
  b->n_methods = n_methods;
  b->n_layers = n_layers;
  b->methods = malloc((size_t)n_methods * sizeof *b->methods);
  b->layers = malloc((size_t)n_layers * sizeof *b->layers);
  b->recs = calloc(ml, sizeof *b->recs);
  b->n_recs = calloc(ml, sizeof *b->n_recs);
  b->cap_recs = calloc(ml, sizeof *b->cap_recs);
  b->mass = calloc(ml, sizeof *b->mass);
  b->err = calloc(ml, sizeof *b->err);
  b->heads = calloc(ml, sizeof *b->heads);
  if (!b->methods || !b->layers || !b->recs || !b->n_recs || !b->cap_recs || !b->mass ||
      !b->err || !b->heads) {
    attn_profile_builder_free(b);
    return kv_error_set(err, KV_ENOMEM, "profile: out of memory");
  }
  memcpy(b->methods, methods, (size_t)n_methods * sizeof *methods);
  for (int i = 0; i < n_layers; i++) {
    int32_t v = layers[i];
    int j = i;
    for (; j > 0 && b->layers[j - 1] > v; j--) b->layers[j] = b->layers[j - 1];
    b->layers[j] = v;
  }
  b->n_min = INT64_MAX;
  b->n_max = 0;
  return 0;
}

static int attn__builder_push(attn_profile_builder *b, size_t ix, attn_profile_record r) {
  if (b->n_recs[ix] == b->cap_recs[ix]) {
    size_t nc = b->cap_recs[ix] ? 2 * b->cap_recs[ix] : 256;
    attn_profile_record *nr = realloc(b->recs[ix], nc * sizeof *nr);
    if (!nr) return KV_ENOMEM;
    b->recs[ix] = nr;
    b->cap_recs[ix] = nc;
  }
  b->recs[ix][b->n_recs[ix]++] = r;
  return 0;
}

int attn_profile_builder_add(attn_profile_builder *b, int layer, const attn_shape *s,
                             int64_t n_pos, const int64_t *positions,
                             const attn_head_metrics *mh, const int32_t *iters, kv_error *err) {
  int li = 0;
  while (li < b->n_layers && b->layers[li] != layer) li++;
  if (li == b->n_layers) return kv_error_set(err, KV_EINVAL, "profile: layer %d was not declared", layer);
  const int Hq = s->n_heads, Hkv = s->n_kv_heads;
  for (int m = 0; m < b->n_methods; m++) {
    const size_t ix = (size_t)m * b->n_layers + li;
    for (int64_t i = 0; i < n_pos; i++) {
      const int64_t n = positions[i] + 1;
      b->n_min = n < b->n_min ? n : b->n_min;
      b->n_max = n > b->n_max ? n : b->n_max;
      for (int h = 0; h < Hkv; h++) {
        const attn_head_metrics *x = &mh[((size_t)m * n_pos + i) * Hq + (size_t)h * (Hq / Hkv)];
        attn_profile_record r = {n, (int32_t)x->tokens_read, iters[((size_t)m * n_pos + i) * Hkv + h]};
        if (attn__builder_push(b, ix, r)) return kv_error_set(err, KV_ENOMEM, "profile: out of memory");
      }
      for (int h = 0; h < Hq; h++) {
        b->mass[ix] += mh[((size_t)m * n_pos + i) * Hq + h].mass_covered;
        b->err[ix] += mh[((size_t)m * n_pos + i) * Hq + h].rel_l2_err;
        b->heads[ix] += 1;
      }
    }
  }
  return 0;
}

static int attn__cmp_d(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* One method's tables from its records: per layer row the fit, per bin the quantiles (linear
 * interpolation between order statistics, never below the previous quantile: the reader checks
 * monotony) and the means. tmp holds at least the largest record count. */
static void attn__method_tables(const attn_profile_builder *b, int m, const attn_profile *p,
                                attn_profile_method *pm, double *tmp) {
  const int L = b->n_layers, bins = p->n_bins, nq = p->n_quantiles;
  for (int li = 0; li < L; li++) {
    size_t ix = (size_t)m * L + li;
    const attn_profile_record *r = b->recs[ix];
    size_t n = b->n_recs[ix];
    pm->t.mean_mass[li] = b->heads[ix] ? b->mass[ix] / b->heads[ix] : NAN;
    pm->t.mean_err[li] = b->heads[ix] ? b->err[ix] / b->heads[ix] : NAN;
    attn_profile_fit_power(r, n, 0, 0, &pm->t.fit_a[li], &pm->t.fit_b[li]);
    for (int bn = 0; bn < bins; bn++) {
      size_t k = 0;
      double fs = 0, is = 0;
      for (size_t i = 0; i < n; i++) {
        if (r[i].n_keys < p->ctx_edges[bn] || r[i].n_keys >= p->ctx_edges[bn + 1]) continue;
        tmp[k] = (double)r[i].tokens / (double)r[i].n_keys;
        fs += tmp[k];
        is += r[i].iters;
        k++;
      }
      size_t c2 = (size_t)li * bins + bn;
      pm->t.count[c2] = (int64_t)k;
      if (!k) continue;
      qsort(tmp, k, sizeof *tmp, attn__cmp_d);
      for (int qq = 0; qq < nq; qq++) {
        double pos = (double)qq / (nq - 1) * (double)(k - 1);
        size_t i0 = (size_t)pos;
        double t = pos - (double)i0;
        double v = i0 + 1 < k ? tmp[i0] + t * (tmp[i0 + 1] - tmp[i0]) : tmp[i0];
        if (qq > 0 && v < pm->t.frac_q[c2 * nq + qq - 1]) v = pm->t.frac_q[c2 * nq + qq - 1];
        pm->t.frac_q[c2 * nq + qq] = v;
      }
      pm->t.mean_frac[c2] = fs / (double)k;
      pm->t.mean_iters[c2] = is / (double)k;
    }
  }
}

int attn_profile_builder_finish(const attn_profile_builder *b, int n_bins, int n_quantiles,
                                attn_profile *out, kv_error *err) {
  if (n_bins < 1 || n_quantiles < 2) {
    return kv_error_set(err, KV_EINVAL, "profile: %d bins, %d quantiles (need >= 1, >= 2)",
                        n_bins, n_quantiles);
  }
  if (b->n_max < b->n_min) return kv_error_set(err, KV_EINVAL, "profile: no measurements");
  const int L = b->n_layers, M = b->n_methods;
  out->n_layers = L;
  out->n_bins = n_bins;
  out->n_quantiles = n_quantiles;
  out->layers = malloc((size_t)L * sizeof *out->layers);
  out->ctx_edges = malloc((size_t)(n_bins + 1) * sizeof *out->ctx_edges);
  out->methods = calloc((size_t)M, sizeof *out->methods);
  size_t most = 1;
  for (size_t i = 0; i < (size_t)M * L; i++) most = b->n_recs[i] > most ? b->n_recs[i] : most;
  double *tmp = malloc(most * sizeof *tmp);
  int rc = 0;
  if (!out->layers || !out->ctx_edges || !out->methods || !tmp) rc = KV_ENOMEM;
  else out->n_methods = M;
  for (int m = 0; !rc && m < M; m++) {
    rc = kv_profile_tables_alloc(&out->methods[m].t, L, n_bins, n_quantiles);
  }
  if (rc) {
    free(tmp);
    attn_profile_free(out);
    return kv_error_set(err, KV_ENOMEM, "profile: out of memory");
  }
  memcpy(out->layers, b->layers, (size_t)L * sizeof *out->layers);
  /* log-spaced edges over the contexts seen; the last edge just past the longest */
  const double lo = log((double)b->n_min), hi = log((double)b->n_max + 1);
  for (int bn = 0; bn <= n_bins; bn++) {
    out->ctx_edges[bn] = (int64_t)llround(exp(lo + (hi - lo) * bn / n_bins));
    if (bn > 0 && out->ctx_edges[bn] <= out->ctx_edges[bn - 1]) {
      out->ctx_edges[bn] = out->ctx_edges[bn - 1] + 1;
    }
  }
  out->ctx_edges[n_bins] = b->n_max + 1;
  for (int m = 0; m < M; m++) {
    out->methods[m].method = b->methods[m];
    attn_method_label(&b->methods[m], out->methods[m].label, sizeof out->methods[m].label);
    attn__method_tables(b, m, out, &out->methods[m], tmp);
  }
  free(tmp);
  return 0;
}

int attn_profile_split_check(const attn_profile_builder *b, int m, int li, int64_t split,
                             double *fit_b, double *predicted, double *measured) {
  const size_t ix = (size_t)m * b->n_layers + li;
  const attn_profile_record *r = b->recs[ix];
  const size_t n = b->n_recs[ix];
  double a;
  attn_profile_fit_power(r, n, split, 0, &a, fit_b);
  double pred = 0, meas = 0, cnt = 0;
  for (size_t i = 0; i < n; i++) {
    if (r[i].n_keys < split) continue;
    pred += a * pow((double)r[i].n_keys, *fit_b);
    meas += r[i].tokens;
    cnt += 1;
  }
  if (cnt == 0) return 0;
  *predicted = pred / cnt;
  *measured = meas / cnt;
  return 1;
}

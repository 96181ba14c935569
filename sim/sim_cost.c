#include "sim_cost.h"

#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kv_h5.h"
#include "sim_profile.h"

const char *const sim_cost_kind_names[] = {"roofline", "linear", "profile", "measured", NULL};

void sim_cost_init_roofline(sim_cost *c, const sim_model *m, const sim_hw *hw, int64_t tp,
                            double compute_eff, double memory_eff) {
  memset(c, 0, sizeof *c);
  c->kind = SIM_COST_ROOFLINE;
  c->model = *m;
  c->hw = *hw;
  c->tp = tp;
  c->compute_eff = compute_eff;
  c->memory_eff = memory_eff;
}

void sim_cost_init_linear(sim_cost *c, const sim_model *m, int64_t base_ns,
                          int64_t prefill_ns_per_token, int64_t decode_ns_per_seq,
                          int64_t ctx_ns_per_token, int64_t head_ns) {
  memset(c, 0, sizeof *c);
  c->kind = SIM_COST_LINEAR;
  c->model = *m;
  c->tp = 1;
  c->lin_base_ns = base_ns;
  c->lin_prefill_ns_per_token = prefill_ns_per_token;
  c->lin_decode_ns_per_seq = decode_ns_per_seq;
  c->lin_ctx_ns_per_token = ctx_ns_per_token;
  c->lin_head_ns = head_ns;
}

static void sim__grid_free(sim_grid2 *g) {
  free(g->x);
  free(g->y);
  free(g->v);
  memset(g, 0, sizeof *g);
}

void sim_cost_free(sim_cost *c) {
  if (c->measured) sim_prof_cost_free(c->measured);
  free(c->measured);
  c->measured = NULL;
  sim__grid_free(&c->prefill);
  sim__grid_free(&c->decode);
  free(c->head_batch);
  free(c->head_ns);
  c->head_batch = NULL;
  c->head_ns = NULL;
  c->head_n = 0;
}

/* Index i such that the segment [a[i], a[i+1]] is used for x (edge segments extrapolate). */
static int64_t sim__seg(const int64_t *a, int64_t n, double x) {
  int64_t lo = 0, hi = n - 2;
  while (lo < hi) {
    int64_t mid = (lo + hi + 1) / 2;
    if ((double)a[mid] <= x) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

double sim_grid2_eval(const sim_grid2 *g, double x, double y) {
  int64_t i = sim__seg(g->x, g->nx, x), j = sim__seg(g->y, g->ny, y);
  double tx = (x - (double)g->x[i]) / (double)(g->x[i + 1] - g->x[i]);
  double ty = (y - (double)g->y[j]) / (double)(g->y[j + 1] - g->y[j]);
  const double *v = g->v;
  int64_t ny = g->ny;
  double v00 = v[i * ny + j], v01 = v[i * ny + j + 1];
  double v10 = v[(i + 1) * ny + j], v11 = v[(i + 1) * ny + j + 1];
  return (1 - tx) * (1 - ty) * v00 + (1 - tx) * ty * v01 + tx * (1 - ty) * v10 + tx * ty * v11;
}

static double sim__interp1(const int64_t *x, const double *v, int64_t n, double q) {
  if (n == 1) return v[0];
  int64_t i = sim__seg(x, n, q);
  double t = (q - (double)x[i]) / (double)(x[i + 1] - x[i]);
  return (1 - t) * v[i] + t * v[i + 1];
}

static int64_t sim__ns(double t) {
  if (!(t > 0)) return 0;
  if (t > 9e18) return INT64_MAX / 4;
  return (int64_t)llround(t);
}

/* Roofline time (ns) of `flops` and `bytes` spread over tp GPUs. */
static double sim__roof(const sim_cost *c, double flops, double bytes) {
  double tc = flops / ((double)c->tp * c->hw.flops * c->compute_eff);
  double tm = bytes / ((double)c->tp * c->hw.hbm_bw * c->memory_eff);
  return (tc > tm ? tc : tm) * 1e9;
}

void sim_cost_iter(const sim_cost *c, const sim_iter_work *w, int64_t *layer_ns,
                   int64_t *head_ns) {
  const sim_model *m = &c->model;
  int64_t sum_new = 0, sum_ctx_p = 0;
  double pairs = 0; /* attended (query, key) pairs in prefills */
  for (int32_t i = 0; i < w->n_prefill; i++) {
    int64_t h = w->prefill_hist[i], n = w->prefill_new[i];
    sum_new += n;
    sum_ctx_p += h + n;
    pairs += (double)n * (double)h + 0.5 * (double)n * (double)(n + 1);
  }
  int64_t tokens = sum_new + w->n_decode;
  int64_t seqs = w->n_prefill + w->n_decode;
  if (tokens == 0) {
    *layer_ns = 0;
    *head_ns = 0;
    return;
  }
  switch (c->kind) {
    case SIM_COST_LINEAR:
      *layer_ns = c->lin_base_ns + c->lin_prefill_ns_per_token * sum_new +
                  c->lin_decode_ns_per_seq * w->n_decode +
                  c->lin_ctx_ns_per_token * (sum_ctx_p + w->decode_ctx_sum);
      *head_ns = c->lin_head_ns;
      return;
    case SIM_COST_ROOFLINE: {
      double bpe = (double)m->bytes_per_elem;
      pairs += (double)w->decode_ctx_sum;
      double flops = 2.0 * m->layer_params * (double)tokens +
                     4.0 * (double)(m->heads * m->head_dim) * pairs;
      /* weights once; KV: prefill reads history + new and writes new, decode reads context
       * (its own new token included) and writes one token */
      double kv_tok = (double)sum_ctx_p + (double)sum_new + (double)w->decode_ctx_sum +
                      (double)w->n_decode;
      double bytes = m->layer_params * bpe + m->kv_bytes_per_token_layer * kv_tok;
      double t = sim__roof(c, flops, bytes);
      if (c->tp > 1) {
        /* two ring all-reduces of the activations (after attention and after the FFN) */
        double act = (double)tokens * (double)m->hidden * bpe;
        double one = c->hw.allreduce_latency_ns +
                     2.0 * (double)(c->tp - 1) / (double)c->tp * act / c->hw.nvlink_bw * 1e9;
        t += 2 * one;
      }
      *layer_ns = sim__ns(t);
      double hflops = 2.0 * (double)m->vocab * (double)m->hidden * (double)seqs;
      double hbytes = (double)m->vocab * (double)m->hidden * bpe;
      *head_ns = sim__ns(sim__roof(c, hflops, hbytes));
      return;
    }
    case SIM_COST_PROFILE: {
      double t = 0;
      for (int32_t i = 0; i < w->n_prefill; i++) {
        double v = sim_grid2_eval(&c->prefill, (double)w->prefill_hist[i],
                                  (double)w->prefill_new[i]);
        t += v > 0 ? v : 0;
      }
      if (w->n_decode > 0) {
        double v = sim_grid2_eval(&c->decode, (double)w->n_decode,
                                  (double)w->decode_ctx_sum / (double)w->n_decode);
        t += v > 0 ? v : 0;
      }
      *layer_ns = sim__ns(t);
      double h = c->head_n ? sim__interp1(c->head_batch, c->head_ns, c->head_n, (double)seqs) : 0;
      *head_ns = sim__ns(h);
      return;
    }
    case SIM_COST_MEASURED:
      sim_prof_cost_iter(c->measured, w, layer_ns, head_ns, NULL);
      return;
    default:
      *layer_ns = 0;
      *head_ns = 0;
  }
}

void sim_cost_describe(const sim_cost *c, char *buf, size_t cap) {
  switch (c->kind) {
    case SIM_COST_ROOFLINE:
      snprintf(buf, cap, "roofline (assumed: compute_eff %g, memory_eff %g of %s's %g TFLOP/s "
               "and %g GB/s)", c->compute_eff, c->memory_eff, c->hw.name, c->hw.flops / 1e12,
               c->hw.hbm_bw / 1e9);
      return;
    case SIM_COST_LINEAR:
      snprintf(buf, cap, "linear (hand-set coefficients)");
      return;
    case SIM_COST_PROFILE:
      snprintf(buf, cap, "profile: per-layer tables %s", c->profile_path);
      return;
    case SIM_COST_MEASURED:
      sim_prof_cost_describe(c->measured, buf, cap);
      return;
    default:
      snprintf(buf, cap, "unknown");
  }
}

/* ---- profile I/O -------------------------------------------------------------------------- */

static int sim__read_axis(hid_t f, const char *path, const char *name, int64_t lo, int64_t **out,
                          int64_t *n, kv_error *err) {
  char what[1200];
  snprintf(what, sizeof what, "%s: /%s", path, name);
  hsize_t dims[1];
  hid_t d = kv_h5_open_dataset(f, name, 1, dims, path, err);
  if (d < 0) return (int)d;
  int rc = 0;
  if (dims[0] < 2) {
    rc = kv_error_set(err, KV_EFORMAT, "%s: needs at least 2 points, has %llu", what,
                      (unsigned long long)dims[0]);
  }
  int64_t *a = rc ? NULL : malloc(dims[0] * sizeof *a);
  if (!rc && !a) rc = kv_error_set(err, KV_ENOMEM, "%s: out of memory", what);
  if (!rc) rc = kv_h5_read_all(d, H5T_NATIVE_INT64, a, dims[0], what, err);
  H5Dclose(d);
  for (hsize_t i = 0; !rc && i < dims[0]; i++) {
    if (a[i] < lo) {
      rc = kv_error_set(err, KV_EFORMAT, "%s[%llu] = %lld is below %lld", what,
                        (unsigned long long)i, (long long)a[i], (long long)lo);
    } else if (i > 0 && a[i] <= a[i - 1]) {
      rc = kv_error_set(err, KV_EFORMAT, "%s is not strictly increasing at index %llu", what,
                        (unsigned long long)i);
    }
  }
  if (rc) {
    free(a);
    return rc;
  }
  *out = a;
  *n = (int64_t)dims[0];
  return 0;
}

static int sim__read_values(hid_t f, const char *path, const char *name, int rank,
                            const int64_t *expect, double **out, kv_error *err) {
  char what[1200];
  snprintf(what, sizeof what, "%s: /%s", path, name);
  hsize_t dims[2];
  hid_t d = kv_h5_open_dataset(f, name, rank, dims, path, err);
  if (d < 0) return (int)d;
  int rc = 0;
  hsize_t n = 1;
  for (int i = 0; i < rank; i++) {
    if ((int64_t)dims[i] != expect[i]) {
      rc = kv_error_set(err, KV_EFORMAT, "%s: dimension %d is %llu, its axis has %lld points",
                        what, i, (unsigned long long)dims[i], (long long)expect[i]);
    }
    n *= dims[i];
  }
  double *v = rc ? NULL : malloc(n * sizeof *v);
  if (!rc && !v) rc = kv_error_set(err, KV_ENOMEM, "%s: out of memory", what);
  if (!rc) rc = kv_h5_read_all(d, H5T_NATIVE_DOUBLE, v, n, what, err);
  H5Dclose(d);
  for (hsize_t i = 0; !rc && i < n; i++) {
    if (!isfinite(v[i]) || v[i] < 0) {
      rc = kv_error_set(err, KV_EFORMAT, "%s: element %llu is %g (must be finite and >= 0)",
                        what, (unsigned long long)i, v[i]);
    }
  }
  if (rc) {
    free(v);
    return rc;
  }
  *out = v;
  return 0;
}

int sim_cost_load_profile(sim_cost *c, const sim_model *m, const sim_hw *hw, int64_t tp,
                          const char *path, kv_error *err) {
  memset(c, 0, sizeof *c);
  c->kind = SIM_COST_PROFILE;
  c->model = *m;
  c->hw = *hw;
  c->tp = tp;
  snprintf(c->profile_path, sizeof c->profile_path, "%s", path);
  hid_t f = kv_h5_open_read(path, err);
  if (f < 0) return (int)f;
  int rc = 0;
  char fmt[64] = "";
  int64_t ver = 0, ptp = 0;
  if ((rc = kv_h5_attr_read_str(f, "format", fmt, sizeof fmt, path, err))) goto fail;
  if (strcmp(fmt, "kvlab-sim-profile") != 0) {
    rc = kv_error_set(err, KV_EFORMAT, "%s: format attribute is '%s', expected "
                      "'kvlab-sim-profile'", path, fmt);
    goto fail;
  }
  if ((rc = kv_h5_attr_read_i64(f, "version", &ver, path, err))) goto fail;
  if (ver != 1) {
    rc = kv_error_set(err, KV_ENOTSUP, "%s: profile version %lld (this build reads 1)", path,
                      (long long)ver);
    goto fail;
  }
  if ((rc = kv_h5_attr_read_i64(f, "tp", &ptp, path, err))) goto fail;
  if (ptp != tp) {
    rc = kv_error_set(err, KV_EINVAL, "%s: measured with tp = %lld, the experiment uses %lld "
                      "GPUs", path, (long long)ptp, (long long)tp);
    goto fail;
  }
  if ((rc = sim__read_axis(f, path, "prefill/hist_tokens", 0, &c->prefill.x, &c->prefill.nx,
                           err)) ||
      (rc = sim__read_axis(f, path, "prefill/new_tokens", 1, &c->prefill.y, &c->prefill.ny,
                           err)) ||
      (rc = sim__read_values(f, path, "prefill/layer_ns", 2,
                             (int64_t[]){c->prefill.nx, c->prefill.ny}, &c->prefill.v, err)) ||
      (rc = sim__read_axis(f, path, "decode/batch", 1, &c->decode.x, &c->decode.nx, err)) ||
      (rc = sim__read_axis(f, path, "decode/ctx_tokens", 1, &c->decode.y, &c->decode.ny, err)) ||
      (rc = sim__read_values(f, path, "decode/layer_ns", 2,
                             (int64_t[]){c->decode.nx, c->decode.ny}, &c->decode.v, err))) {
    goto fail;
  }
  if (kv_h5_exists(f, "head/batch")) {
    if ((rc = sim__read_axis(f, path, "head/batch", 1, &c->head_batch, &c->head_n, err)) ||
        (rc = sim__read_values(f, path, "head/ns", 1, (int64_t[]){c->head_n}, &c->head_ns,
                               err))) {
      goto fail;
    }
  }
  H5Fclose(f);
  return 0;
fail:
  H5Fclose(f);
  sim_cost_free(c);
  return rc;
}

static int sim__write_grid(hid_t f, const char *grp, const char *xn, const char *yn,
                           const sim_grid2 *g, const char *path, kv_error *err) {
  hid_t gid = H5Gcreate2(f, grp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  if (gid < 0) return kv_error_set(err, KV_EIO, "%s: cannot create group /%s", path, grp);
  hsize_t dx[1] = {(hsize_t)g->nx}, dy[1] = {(hsize_t)g->ny};
  hsize_t dv[2] = {(hsize_t)g->nx, (hsize_t)g->ny};
  int rc = kv_h5_write(gid, xn, H5T_STD_I64LE, H5T_NATIVE_INT64, 1, dx, g->x, path, err);
  if (!rc) rc = kv_h5_write(gid, yn, H5T_STD_I64LE, H5T_NATIVE_INT64, 1, dy, g->y, path, err);
  if (!rc) rc = kv_h5_write(gid, "layer_ns", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 2, dv, g->v, path, err);
  H5Gclose(gid);
  return rc;
}

int sim_cost_write_profile(const char *path, const char *model, const char *hardware,
                           int64_t tp, const sim_grid2 *prefill, const sim_grid2 *decode,
                           int64_t head_n, const int64_t *head_batch, const double *head_ns,
                           kv_error *err) {
  hid_t f = kv_h5_create(path, err);
  if (f < 0) return (int)f;
  int rc = kv_h5_attr_write_str(f, "format", "kvlab-sim-profile", path, err);
  if (!rc) rc = kv_h5_attr_write_i64(f, "version", 1, path, err);
  if (!rc) rc = kv_h5_attr_write_str(f, "model", model, path, err);
  if (!rc) rc = kv_h5_attr_write_str(f, "hardware", hardware, path, err);
  if (!rc) rc = kv_h5_attr_write_i64(f, "tp", tp, path, err);
  if (!rc) rc = sim__write_grid(f, "prefill", "hist_tokens", "new_tokens", prefill, path, err);
  if (!rc) rc = sim__write_grid(f, "decode", "batch", "ctx_tokens", decode, path, err);
  if (!rc && head_n > 0) {
    hid_t g = H5Gcreate2(f, "head", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (g < 0) {
      rc = kv_error_set(err, KV_EIO, "%s: cannot create group /head", path);
    } else {
      hsize_t d[1] = {(hsize_t)head_n};
      rc = kv_h5_write(g, "batch", H5T_STD_I64LE, H5T_NATIVE_INT64, 1, d, head_batch, path, err);
      if (!rc) rc = kv_h5_write(g, "ns", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 1, d, head_ns, path, err);
      H5Gclose(g);
    }
  }
  if (H5Fclose(f) < 0 && !rc) rc = kv_error_set(err, KV_EIO, "%s: close failed", path);
  return rc;
}

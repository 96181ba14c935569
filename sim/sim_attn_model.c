/* sim_attn_model.c — the loaded [attention] model and its draws (sim_attn_model.h). */
#include "sim_attn_model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kv_fs.h"
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
  if (am->have_prof) sim_attn_profile_free(&am->prof);
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
  const sim_attn_profile *p = &am->prof;
  int first = -1, last = -1;
  for (int b = 0; b < p->n_bins; b++) {
    if (p->methods[am->m].t.count[(size_t)l * p->n_bins + b] == 0) continue;
    if (first < 0) first = b;
    last = b;
  }
  if (first < 0) return 0;
  *lo = p->ctx_edges[first];
  *hi = p->ctx_edges[last + 1] - 1;
  return 1;
}

int sim_attn_static_full(const sim_attn_model *am, int64_t n) {
  if (am->prm.mode == SIM_ATTN_OFF) return 1;
  return n <= am->method.full_upto; /* dense, top-k budget >= n, PSA/oracle epsilon >= 1 */
}

static double sim__mean_fast(const sim_attn_model *am, int l, const sim_attn_rowdraw *d);

/* Fraction of the context read for draw u (u < 0: the mean) under the extension rule, through
 * the profile library (the reference the fast path is tested against); top-k grown with a PSA
 * method's fit (topk_extension = fit), which the library cannot express, goes through the fast
 * path (tested against hand-computed values). */
static double sim__frac(const sim_attn_model *am, int layer, int64_t n, double u) {
  const sim_attn_profile *p = &am->prof;
  int l = am->row[layer];
  if (am->m_scale >= 0) {
    sim_attn_rowdraw d;
    sim_attn_rowdraw_init(am, l, n, &d);
    return u < 0 ? sim__mean_fast(am, l, &d) : sim_attn_rowdraw_frac(am, &d, u);
  }
  int64_t lo = am->rng_lo[l], hi = am->rng_hi[l];
  int in = lo == 0 || (n >= lo && n <= hi);
  /* top-k: its budget is fixed by definition (tokens), or scaled with the context to keep the
   * accuracy measured on the recording (frac; topk_extension) */
  sim_attn_ext ext = am->prm.mode == SIM_ATTN_TOPK ? am->prm.topk_extension : am->prm.extension;
  if (ext == SIM_ATTN_EXT_FIT || in) {
    return u < 0 ? sim_attn_profile_mean_frac(p, am->m, l, n)
                 : sim_attn_profile_sample_frac(p, am->m, l, n, u);
  }
  int64_t nc = n < lo ? lo : hi;
  double f = u < 0 ? sim_attn_profile_mean_frac(p, am->m, l, nc)
                   : sim_attn_profile_sample_frac(p, am->m, l, nc, u);
  if (ext == SIM_ATTN_EXT_FRAC) return f;
  double fr = f * (double)nc / (double)n; /* constant tokens */
  return fr > 1 ? 1 : fr;
}

/* ---- the fast path of the draws ----------------------------------------------------------
 * A decode step draws head_draws fractions for every (sequence, layer); what depends only on
 * (recorded row, context) is computed once per (sequence, row) by sim_attn_rowdraw_init, through
 * the same bin lookup and interpolation as the profile's sampler (sim_attn_profile.c);
 * tests/sim/test_attn.c checks that the cached draws equal the per-call ones (sim__frac) bit for
 * bit over a grid of contexts and draws, for every extension rule. */

void sim_attn_rowdraw_init(const sim_attn_model *am, int l, int64_t n, sim_attn_rowdraw *d) {
  const sim_attn_profile *p = &am->prof;
  int64_t lo = am->rng_lo[l], hi = am->rng_hi[l];
  int in = lo == 0 || (n >= lo && n <= hi);
  sim_attn_ext ext = am->prm.mode == SIM_ATTN_TOPK ? am->prm.topk_extension : am->prm.extension;
  int64_t ne = (ext == SIM_ATTN_EXT_FIT || in) ? n : (n < lo ? lo : hi);
  /* top-k with topk_extension = fit grows like the named PSA method's token count */
  const double fit_b = p->methods[am->m_scale >= 0 ? am->m_scale : am->m].t.fit_b[l];
  d->bin = sim_attn_profile_bin(p, am->m, l, ne, fit_b, &d->scale);
  d->q = d->bin < 0 ? NULL
                    : p->methods[am->m].t.frac_q + ((size_t)l * p->n_bins + d->bin) * p->n_quantiles;
  d->lo = 1.0 / (double)ne;
  d->post = (ext == SIM_ATTN_EXT_TOKENS && ne != n) ? (double)ne / (double)n : 1.0;
  d->fit_frac = d->q ? 0 : sim_attn_profile_fit_frac(p, am->m, l, ne);
}

double sim_attn_rowdraw_frac(const sim_attn_model *am, const sim_attn_rowdraw *d, double u) {
  double fr = !d->q ? d->fit_frac
                    : sim_attn_profile_interp(d->q, am->prof.n_quantiles, u, d->scale, d->lo);
  if (d->post != 1.0) {
    fr *= d->post;
    if (fr > 1) fr = 1;
  }
  return fr;
}

/* sim_attn_profile_mean_frac's rule on the fast path's bin and scale. */
static double sim__mean_fast(const sim_attn_model *am, int l, const sim_attn_rowdraw *d) {
  double fr;
  if (!d->q) {
    fr = d->fit_frac;
  } else {
    fr = am->prof.methods[am->m].t.mean_frac[(size_t)l * am->prof.n_bins + d->bin] * d->scale;
    if (fr > 1) fr = 1;
  }
  if (d->post != 1.0) {
    fr *= d->post;
    if (fr > 1) fr = 1;
  }
  return fr;
}

int64_t sim_attn_frac_tokens(double frac, int64_t n) {
  int64_t t = (int64_t)llround(frac * (double)n);
  return t < 1 ? 1 : (t > n ? n : t);
}

int64_t sim_attn_draw_tokens_fast(const sim_attn_model *am, int layer, int64_t n, double u) {
  if (n < 1) return 0;
  if (sim_attn_static_full(am, n)) return n;
  sim_attn_rowdraw d;
  sim_attn_rowdraw_init(am, am->row[layer], n, &d);
  return sim_attn_frac_tokens(sim_attn_rowdraw_frac(am, &d, u), n);
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

/* ---- reuse table (attn-reuse CSV: method,layer,gap,pairs,overlap; the method by its label) */

static int sim__load_reuse(sim_attn_model *am, const char *path, kv_error *err) {
  FILE *f = fopen(path, "r");
  if (!f) return kv_error_set(err, KV_ENOENT, "%s: cannot open the reuse table", path);
  kv_fs_note_input(path); /* sweeps key their points by what they read */
  const sim_attn_profile *p = &am->prof;
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
    if (strcmp(meth, am->method.label) != 0 || pairs <= 0) continue;
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
                        path, am->method.label, p->layers[i]);
    }
  }
  for (int64_t l = 0; !rc && l < am->model.layers; l++) am->reuse[l] = val[am->row[l]];
  free(best_gap);
  free(val);
  return rc;
}

/* ---- kernel timings (docs/kernels.md "Profile for the simulator") ------------------------- */

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

int sim_attn_kernel_fit(const sim_attn_timings *tm, double c0_ns[SIM_ATTN_KCLASS_COUNT],
                        double c1_ns_per_byte[SIM_ATTN_KCLASS_COUNT], const char *what,
                        kv_error *err) {
  for (int k = 0; k < SIM_ATTN_KCLASS_COUNT; k++) c0_ns[k] = 0, c1_ns_per_byte[k] = -1;
  const double *t = tm->time_s, *b = tm->bytes;
  /* least squares per class: time_ns = c0 + c1 * bytes */
  for (int k = 0; k < SIM_ATTN_KCLASS_COUNT; k++) {
    double sx = 0, sy = 0, sxx = 0, sxy = 0, cnt = 0;
    for (int64_t i = 0; i < tm->n; i++) {
      if (sim__kclass(tm->section[i], tm->method[i]) != k) continue;
      if (!(isfinite(t[i]) && t[i] > 0 && isfinite(b[i]) && b[i] > 0)) {
        return kv_error_set(err, KV_EFORMAT, "%s: row %lld (%s %s) has time_s %g and bytes %g "
                            "(both must be finite and > 0)", what, (long long)i, tm->section[i],
                            tm->method[i], t[i], b[i]);
      }
      double x = b[i], y = t[i] * 1e9;
      sx += x, sy += y, sxx += x * x, sxy += x * y, cnt += 1;
    }
    if (cnt == 0) continue;
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
  return 0;
}

int sim_attn_kernel_profile_fit(const char *path, double c0_ns[SIM_ATTN_KCLASS_COUNT],
                                double c1_ns_per_byte[SIM_ATTN_KCLASS_COUNT], char *device,
                                size_t device_cap, kv_error *err) {
  for (int k = 0; k < SIM_ATTN_KCLASS_COUNT; k++) c0_ns[k] = 0, c1_ns_per_byte[k] = -1;
  sim_attn_timings tm;
  int rc = sim_attn_timings_read(path, &tm, err);
  if (rc) return rc;
  if (device && device_cap) snprintf(device, device_cap, "%s", tm.device);
  char what[1200];
  snprintf(what, sizeof what, "%s: /attention", path);
  rc = sim_attn_kernel_fit(&tm, c0_ns, c1_ns_per_byte, what, err);
  kv_profile_timings_free(&tm);
  return rc;
}

/* The method named by prm in its profile: descriptor, scale method, accuracy, layer mapping,
 * measured ranges and reuse. The caller frees am on error. */
static int sim__load_profile(sim_attn_model *am, const sim_attn_params *prm, const sim_model *m,
                             kv_error *err) {
  if (!prm->profile_path[0]) {
    return kv_error_set(err, KV_EINVAL, "[attention] method = %s needs [attention] profile = "
                        "<attn-profile output .h5>", prm->method);
  }
  int rc = sim_attn_profile_read(prm->profile_path, &am->prof, err);
  if (rc) return rc;
  am->have_prof = 1;
  am->m = sim_attn_profile_find(&am->prof, prm->method);
  if (am->m < 0) {
    char list[1024] = "";
    for (int i = 0; i < am->prof.n_methods; i++) {
      size_t k = strlen(list);
      snprintf(list + k, sizeof list - k, "%s%s", i ? ", " : "", am->prof.methods[i].desc.label);
    }
    return kv_error_set(err, KV_ENOENT, "%s: no method '%s' by label or spec (it has: %s)",
                        prm->profile_path, prm->method, list);
  }
  am->method = am->prof.methods[am->m].desc;
  if (am->method.cost == SIM_ATTN_COST_FIXED && prm->topk_extension == SIM_ATTN_EXT_FIT) {
    am->m_scale = sim_attn_profile_find(&am->prof, prm->topk_scale_method);
    if (am->m_scale < 0 || am->prof.methods[am->m_scale].desc.cost != SIM_ATTN_COST_PROGRESSIVE) {
      return kv_error_set(err, KV_EINVAL, "%s: topk_extension = fit needs topk_scale_method = a PSA "
                          "method of the profile ('%s' is %s)", prm->profile_path,
                          prm->topk_scale_method, am->m_scale < 0 ? "absent" : "not PSA");
    }
  }
  for (int l = 0; l < am->prof.n_layers; l++) am->mean_err += am->prof.methods[am->m].t.mean_err[l];
  am->mean_err /= am->prof.n_layers;
  am->prm.mode = am->method.cost == SIM_ATTN_COST_DENSE   ? SIM_ATTN_DENSE
                 : am->method.cost == SIM_ATTN_COST_FIXED ? SIM_ATTN_TOPK
                                                          : SIM_ATTN_PSA;
  for (int64_t l = 0; l < m->layers; l++) {
    am->row[l] = sim_attn_profile_layer_row(&am->prof, (int)l, (int)m->layers);
  }
  am->rng_lo = calloc((size_t)am->prof.n_layers, sizeof *am->rng_lo);
  am->rng_hi = calloc((size_t)am->prof.n_layers, sizeof *am->rng_hi);
  if (!am->rng_lo || !am->rng_hi) return kv_error_set(err, KV_ENOMEM, "out of memory");
  for (int l = 0; l < am->prof.n_layers; l++) {
    if (!sim__range(am, l, &am->rng_lo[l], &am->rng_hi[l])) am->rng_lo[l] = am->rng_hi[l] = 0;
  }
  /* reuse matters only to the block cache: without offload the table is not consulted */
  if (prm->offload && prm->reuse_csv[0]) return sim__load_reuse(am, prm->reuse_csv, err);
  return 0;
}

int sim_attn_model_load(sim_attn_model *am, const sim_attn_params *prm, const sim_model *m,
                        const sim_hw *hw, int64_t tp, kv_error *err) {
  memset(am, 0, sizeof *am);
  am->prm = *prm;
  am->model = *m;
  am->hw = *hw;
  am->tp = tp;
  sim_attn_desc_dense(&am->method);
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
    if ((rc = sim__load_profile(am, prm, m, err))) {
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
  const int64_t elem = m->bytes_per_elem;
  am->block_bytes = am->method.block_size * 2 * m->head_dim * elem;
  am->meta_bytes_per_block = sim_attn_bytes_read(&am->method, m->head_dim, elem,
                                                 am->method.block_size, 0);
  if (prm->kernel_assumed) {
    if (prm->kernel_profile[0]) {
      rc = kv_error_set(err, KV_EINVAL, "kernel_profile = %s has no effect with kernel_timings = "
                        "assumed", prm->kernel_profile);
    }
  } else if (prm->kernel_profile[0]) {
    rc = sim_attn_kernel_profile_fit(prm->kernel_profile, am->kc0, am->kc1, am->kprof_device,
                                     sizeof am->kprof_device, err);
    am->have_kprof = 1;
  } else if (am->have_prof && am->prof.timings.n > 0) {
    char what[1200];
    snprintf(what, sizeof what, "%s: /kernel_timings", prm->profile_path);
    rc = sim_attn_kernel_fit(&am->prof.timings, am->kc0, am->kc1, what, err);
    am->have_kprof = 1;
    snprintf(am->kprof_device, sizeof am->kprof_device, "%s", am->prof.timings.device);
  } else if (!am->have_prof && prm->profile_path[0]) {
    /* dense names no method of the profile, but its measured timings apply to it too */
    sim_attn_profile pr;
    rc = sim_attn_profile_read(prm->profile_path, &pr, err);
    if (!rc && pr.timings.n > 0) {
      char what[1200];
      snprintf(what, sizeof what, "%s: /kernel_timings", prm->profile_path);
      rc = sim_attn_kernel_fit(&pr.timings, am->kc0, am->kc1, what, err);
      am->have_kprof = 1;
      snprintf(am->kprof_device, sizeof am->kprof_device, "%s", pr.timings.device);
    }
    if (!rc) sim_attn_profile_free(&pr);
  }
  if (rc) sim_attn_model_free(am);
  return rc;
}

int64_t sim_attn_bytes_per_token(const sim_attn_model *am) {
  return (int64_t)llround(am->model.kv_bytes_per_token);
}

int64_t sim_attn_reserve_bytes(const sim_attn_model *am, int64_t input, int64_t output) {
  const int64_t bpt = sim_attn_bytes_per_token(am);
  if (!am->prm.offload || am->prm.mode == SIM_ATTN_OFF) return (input + output) * bpt;
  return input * bpt + sim_attn_meta_bytes(am, input + output);
}

int64_t sim_attn_after_prefill(const sim_attn_model *am, int64_t input, int64_t output) {
  const int64_t bpt = sim_attn_bytes_per_token(am);
  if (!am->prm.offload || am->prm.mode == SIM_ATTN_OFF) return (input + output) * bpt;
  return sim_attn_meta_bytes(am, input + output);
}


#include "sim_profile.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "sim_csv.h"

const char *const sim_prof_op_names[] = {
    "q", "k", "v", "o", "gate", "up", "down", "lm_head", "rmsnorm", "rope", "act", "add",
    "embed", "kv_update", "attn_prefill", "attn_decode", "launch_gap"};

/* ---- loading ------------------------------------------------------------------------------ */

typedef struct sim__row {
  int64_t key[3];
  char name[24];
  double z, x, us;
  int64_t line;
} sim__row;

typedef struct sim__rows {
  sim__row *a;
  int64_t n, cap;
} sim__rows;

static int sim__push(sim__rows *r, const sim__row *x, kv_error *err) {
  if (r->n == r->cap) {
    int64_t cap = r->cap ? 2 * r->cap : 256;
    sim__row *a = realloc(r->a, (size_t)cap * sizeof *a);
    if (!a) return kv_error_set(err, KV_ENOMEM, "profile: out of memory");
    r->a = a;
    r->cap = cap;
  }
  r->a[r->n++] = *x;
  return 0;
}

static int sim__same_table(const sim__row *a, const sim__row *b) {
  return a->key[0] == b->key[0] && a->key[1] == b->key[1] && a->key[2] == b->key[2] &&
         strcmp(a->name, b->name) == 0;
}

static int sim__cmp_row(const void *pa, const void *pb) {
  const sim__row *a = pa, *b = pb;
  for (int i = 0; i < 3; i++) {
    if (a->key[i] != b->key[i]) return a->key[i] < b->key[i] ? -1 : 1;
  }
  int c = strcmp(a->name, b->name);
  if (c) return c;
  if (a->z != b->z) return a->z < b->z ? -1 : 1;
  if (a->x != b->x) return a->x < b->x ? -1 : 1;
  return a->line < b->line ? -1 : (a->line > b->line);
}

static void sim__tables_free(sim_prof_table *t, int32_t n) {
  for (int32_t i = 0; t && i < n; i++) {
    for (int32_t j = 0; t[i].c && j < t[i].nz; j++) {
      free(t[i].c[j].x);
      free(t[i].c[j].us);
    }
    free(t[i].c);
    free(t[i].z);
  }
  free(t);
}

/* Groups rows (sorted here) into tables of curves; a repeated (table, z, x) is an error
 * naming both lines. */
static int sim__build(sim__rows *r, const char *path, sim_prof_table **out, int32_t *nout,
                      kv_error *err) {
  *out = NULL;
  *nout = 0;
  if (r->n == 0) return kv_error_set(err, KV_EFORMAT, "%s: no data rows", path);
  qsort(r->a, (size_t)r->n, sizeof *r->a, sim__cmp_row);
  for (int64_t i = 1; i < r->n; i++) {
    const sim__row *a = &r->a[i - 1], *b = &r->a[i];
    if (sim__same_table(a, b) && a->z == b->z && a->x == b->x) {
      int64_t l0 = a->line < b->line ? a->line : b->line, l1 = a->line < b->line ? b->line : a->line;
      return kv_error_set(err, KV_EFORMAT, "%s:%lld: the same point as line %lld", path,
                          (long long)l1, (long long)l0);
    }
  }
  int32_t nt = 1;
  for (int64_t i = 1; i < r->n; i++) nt += !sim__same_table(&r->a[i - 1], &r->a[i]);
  sim_prof_table *t = calloc((size_t)nt, sizeof *t);
  if (!t) return kv_error_set(err, KV_ENOMEM, "%s: out of memory", path);
  int64_t i = 0;
  for (int32_t ti = 0; ti < nt; ti++) {
    int64_t j = i;
    while (j < r->n && sim__same_table(&r->a[i], &r->a[j])) j++;
    sim_prof_table *T = &t[ti];
    memcpy(T->key, r->a[i].key, sizeof T->key);
    memcpy(T->name, r->a[i].name, sizeof T->name);
    int32_t nz = 1;
    for (int64_t k = i + 1; k < j; k++) nz += r->a[k].z != r->a[k - 1].z;
    T->z = malloc((size_t)nz * sizeof *T->z);
    T->c = calloc((size_t)nz, sizeof *T->c);
    if (!T->z || !T->c) {
      sim__tables_free(t, nt);
      return kv_error_set(err, KV_ENOMEM, "%s: out of memory", path);
    }
    T->nz = nz;
    int64_t k = i;
    for (int32_t zi = 0; zi < nz; zi++) {
      int64_t e = k;
      while (e < j && r->a[e].z == r->a[k].z) e++;
      sim_prof_curve *c = &T->c[zi];
      T->z[zi] = r->a[k].z;
      c->n = (int32_t)(e - k);
      c->x = malloc((size_t)c->n * sizeof *c->x);
      c->us = malloc((size_t)c->n * sizeof *c->us);
      if (!c->x || !c->us) {
        sim__tables_free(t, nt);
        return kv_error_set(err, KV_ENOMEM, "%s: out of memory", path);
      }
      for (int32_t q = 0; q < c->n; q++) {
        c->x[q] = r->a[k + q].x;
        c->us[q] = r->a[k + q].us;
      }
      k = e;
    }
    i = j;
  }
  *out = t;
  *nout = nt;
  return 0;
}

/* One table file: key columns (up to 3, NULL ends), an optional name column, z (NULL: z = 0)
 * and x columns and `us`. */
typedef struct sim__spec {
  const char *file;
  const char *keys[3];
  const char *name;     /* column whose string is the table's name, or NULL */
  const char *z;        /* NULL: one curve per table */
  int64_t z_lo;
  const char *x;
} sim__spec;

static const sim__spec sim__specs[SIM_PROF_KINDS] = {
    [SIM_PROF_GEMM] = {"gemm.csv", {"n", "k", NULL}, NULL, NULL, 0, "m"},
    [SIM_PROF_PREFILL] = {"attn_prefill.csv", {"heads", "kv_heads", "head_dim"}, NULL, "hist", 0,
                          "new"},
    [SIM_PROF_DECODE] = {"attn_decode.csv", {"heads", "kv_heads", "head_dim"}, "source", "batch",
                         1, "context"},
    [SIM_PROF_ELEM] = {"elementwise.csv", {"width", NULL, NULL}, "op", NULL, 0, "tokens"},
};

static int sim__read_table(const char *dir, sim_prof_kind kind, sim_prof_table **out,
                           int32_t *nout, kv_error *err) {
  const sim__spec *s = &sim__specs[kind];
  char path[1200];
  snprintf(path, sizeof path, "%s/%s", dir, s->file);
  sim_csv r;
  int rc = sim_csv_open(&r, path, err);
  if (rc) return rc;
  int ck[3] = {-1, -1, -1}, cn = -1, cz = -1, cx, cu;
  for (int i = 0; i < 3 && s->keys[i] && !rc; i++) rc = sim_csv_col(&r, s->keys[i], &ck[i], err);
  if (!rc && s->name) rc = sim_csv_col(&r, s->name, &cn, err);
  if (!rc && s->z) rc = sim_csv_col(&r, s->z, &cz, err);
  if (!rc) rc = sim_csv_col(&r, s->x, &cx, err);
  if (!rc) rc = sim_csv_col(&r, "us", &cu, err);
  sim__rows rows = {0};
  while (!rc && (rc = sim_csv_next(&r, err)) == 1) {
    sim__row x = {.line = r.line};
    rc = 0;
    for (int i = 0; i < 3 && ck[i] >= 0 && !rc; i++) {
      rc = sim_csv_i64(&r, ck[i], 1, (int64_t)1 << 40, &x.key[i], err);
    }
    if (!rc && cn >= 0) {
      const char *nm = sim_csv_str(&r, cn);
      if (!nm[0] || strlen(nm) >= sizeof x.name) {
        rc = kv_error_set(err, KV_EFORMAT, "%s:%lld: column '%s': '%s' must have 1 to %zu "
                          "characters", path, (long long)r.line, s->name, nm, sizeof x.name - 1);
      } else {
        snprintf(x.name, sizeof x.name, "%s", nm);
      }
    }
    int64_t v;
    if (!rc && cz >= 0 && !(rc = sim_csv_i64(&r, cz, s->z_lo, (int64_t)1 << 40, &v, err))) {
      x.z = (double)v;
    }
    if (!rc && !(rc = sim_csv_i64(&r, cx, 1, (int64_t)1 << 40, &v, err))) x.x = (double)v;
    if (!rc) rc = sim_csv_f64(&r, cu, 1e-9, 1e12, &x.us, err);
    if (!rc) rc = sim__push(&rows, &x, err);
  }
  sim_csv_close(&r);
  if (!rc) rc = sim__build(&rows, path, out, nout, err);
  free(rows.a);
  return rc;
}

/* Opens dir/file, an optional table: *present = 0 (and 0 returned) when it does not exist,
 * else the result of sim_csv_open (r->path names it in later messages, also after close). */
static int sim__open_optional(const char *dir, const char *file, sim_csv *r, int *present,
                              kv_error *err) {
  char path[1200];
  snprintf(path, sizeof path, "%s/%s", dir, file);
  FILE *probe = fopen(path, "r");
  *present = probe != NULL;
  if (!probe) return 0;
  fclose(probe);
  return sim_csv_open(r, path, err);
}

static int sim__read_host(const char *dir, sim_profile *p, kv_error *err) {
  sim_csv r;
  int present;
  int rc = sim__open_optional(dir, "host.csv", &r, &present, err);
  if (rc || !present) return rc;
  const char *path = r.path;
  int cp, cl, cf, cpl;
  if ((rc = sim_csv_col(&r, "path", &cp, err)) || (rc = sim_csv_col(&r, "layers", &cl, err)) ||
      (rc = sim_csv_col(&r, "fixed_us", &cf, err)) ||
      (rc = sim_csv_col(&r, "per_layer_us", &cpl, err))) {
    sim_csv_close(&r);
    return rc;
  }
  /* single points (layers = a number) of paths without a fit: derived below */
  char pt_path[8][32];
  double pt_layers[8], pt_us[8];
  int n_pt = 0, cu = sim_csv_col_opt(&r, "us");
  int have_us = cu >= 0;
  kv_error scratch = {0};
  while ((rc = sim_csv_next(&r, err)) == 1) {
    rc = 0;
    const char *ls = sim_csv_str(&r, cl);
    if (strcmp(ls, "fit") != 0) {
      double L, us;
      if (have_us && n_pt < 8 && sim_csv_f64(&r, cl, 1, 1e6, &L, &scratch) == 0 &&
          sim_csv_f64(&r, cu, 1e-9, 1e12, &us, &scratch) == 0 &&
          strlen(sim_csv_str(&r, cp)) < sizeof pt_path[0]) {
        snprintf(pt_path[n_pt], sizeof pt_path[0], "%s", sim_csv_str(&r, cp));
        pt_layers[n_pt] = L;
        pt_us[n_pt++] = us;
      }
      continue;
    }
    sim_prof_host h = {0};
    const char *nm = sim_csv_str(&r, cp);
    if (!nm[0] || strlen(nm) >= sizeof h.path) {
      rc = kv_error_set(err, KV_EFORMAT, "%s:%lld: column 'path': '%s' must have 1 to %zu "
                        "characters", path, (long long)r.line, nm, sizeof h.path - 1);
      break;
    }
    snprintf(h.path, sizeof h.path, "%s", nm);
    if ((rc = sim_csv_f64(&r, cf, -1e9, 1e9, &h.fixed_us, err)) ||
        (rc = sim_csv_f64(&r, cpl, -1e9, 1e9, &h.per_layer_us, err))) {
      break;
    }
    if (sim_profile_host(p, h.path)) {
      rc = kv_error_set(err, KV_EFORMAT, "%s:%lld: a second fit for path '%s'", path,
                        (long long)r.line, h.path);
      break;
    }
    sim_prof_host *a = realloc(p->host, (size_t)(p->n_host + 1) * sizeof *a);
    if (!a) {
      rc = kv_error_set(err, KV_ENOMEM, "%s: out of memory", path);
      break;
    }
    p->host = a;
    p->host[p->n_host++] = h;
  }
  sim_csv_close(&r);
  /* A path measured at one layer count only (its other point cut by the budget): the per-layer
   * launch cost is taken from a fitted path (the same decoder-layer code runs in every path of
   * one framework), the rest of its one point is its fixed cost. Marked derived. */
  const sim_prof_host *ref = p->n_host ? &p->host[0] : NULL;
  for (int i = 0; !rc && ref && i < n_pt; i++) {
    if (sim_profile_host(p, pt_path[i])) continue;
    int n_same = 0, first = i;
    for (int j = 0; j < n_pt; j++) {
      if (!strcmp(pt_path[j], pt_path[i])) {
        if (n_same++ == 0) first = j;
      }
    }
    if (n_same != 1 || first != i) continue; /* two points and no fit: left alone */
    sim_prof_host h = {0};
    snprintf(h.path, sizeof h.path, "%s", pt_path[i]);
    h.per_layer_us = ref->per_layer_us;
    h.fixed_us = pt_us[i] - pt_layers[i] * ref->per_layer_us;
    if (h.fixed_us < 0) h.fixed_us = 0;
    snprintf(h.derived, sizeof h.derived, "%s's per-layer time, fixed from its %g-layer point",
             ref->path, pt_layers[i]);
    sim_prof_host *a = realloc(p->host, (size_t)(p->n_host + 1) * sizeof *a);
    if (!a) {
      rc = kv_error_set(err, KV_ENOMEM, "%s: out of memory", path);
      break;
    }
    p->host = a;
    ref = &p->host[0];
    p->host[p->n_host++] = h;
  }
  return rc;
}

/* A curve table (optional): one curve per model of column `vcol` (in [lo, hi]) against
 * `tokens`, sorted by tokens; with `op`, only the rows whose column "op" is that value.
 * `what` names a row in errors ("layer", "gap"). */
static int sim__read_tcurves(const char *dir, const char *file, const char *op, const char *vcol,
                             double lo, double hi, const char *what, sim_prof_tcurve **out,
                             int32_t *n_out, kv_error *err) {
  sim_csv r;
  int present;
  int rc = sim__open_optional(dir, file, &r, &present, err);
  if (rc || !present) return rc;
  const char *path = r.path;
  int cm, co = -1, ct, cv;
  if ((rc = sim_csv_col(&r, "model", &cm, err)) ||
      (op && (rc = sim_csv_col(&r, "op", &co, err))) ||
      (rc = sim_csv_col(&r, "tokens", &ct, err)) || (rc = sim_csv_col(&r, vcol, &cv, err))) {
    sim_csv_close(&r);
    return rc;
  }
  sim_prof_tcurve *cv_all = NULL;
  int32_t n = 0;
  while ((rc = sim_csv_next(&r, err)) == 1) {
    rc = 0;
    if (op && strcmp(sim_csv_str(&r, co), op) != 0) continue;
    const char *nm = sim_csv_str(&r, cm);
    int64_t tok;
    double v;
    if (!nm[0] || strlen(nm) >= sizeof cv_all[0].model) {
      rc = kv_error_set(err, KV_EFORMAT, "%s:%lld: column 'model': '%s' must have 1 to %zu "
                        "characters", path, (long long)r.line, nm, sizeof cv_all[0].model - 1);
      break;
    }
    if ((rc = sim_csv_i64(&r, ct, 1, (int64_t)1 << 40, &tok, err)) ||
        (rc = sim_csv_f64(&r, cv, lo, hi, &v, err))) {
      break;
    }
    sim_prof_tcurve *cur = NULL;
    for (int32_t i = 0; i < n; i++) {
      if (!strcmp(cv_all[i].model, nm)) cur = &cv_all[i];
    }
    if (!cur) {
      sim_prof_tcurve *a = realloc(cv_all, (size_t)(n + 1) * sizeof *a);
      if (!a) {
        rc = kv_error_set(err, KV_ENOMEM, "%s: out of memory", path);
        break;
      }
      cv_all = a;
      cur = &cv_all[n++];
      memset(cur, 0, sizeof *cur);
      snprintf(cur->model, sizeof cur->model, "%s", nm);
    }
    if (cur->n >= (int32_t)(sizeof cur->tokens / sizeof cur->tokens[0])) {
      rc = kv_error_set(err, KV_EFORMAT, "%s:%lld: more than %zu %s rows for model '%s'", path,
                        (long long)r.line, sizeof cur->tokens / sizeof cur->tokens[0], what, nm);
      break;
    }
    int32_t j = cur->n; /* insertion in token order */
    while (j > 0 && cur->tokens[j - 1] > (double)tok) {
      cur->tokens[j] = cur->tokens[j - 1], cur->v[j] = cur->v[j - 1];
      j--;
    }
    if (j > 0 && cur->tokens[j - 1] == (double)tok) {
      rc = kv_error_set(err, KV_EFORMAT, "%s:%lld: a second %s row for model '%s' at %lld "
                        "tokens", path, (long long)r.line, what, nm, (long long)tok);
      break;
    }
    cur->tokens[j] = (double)tok, cur->v[j] = v;
    cur->n++;
  }
  sim_csv_close(&r);
  if (rc) {
    free(cv_all);
    return rc;
  }
  *out = cv_all;
  *n_out = n;
  return 0;
}

double sim_prof_tcurve_eval(const sim_prof_tcurve *s, double tokens) {
  if (s->n <= 0) return 1.0;
  if (tokens <= s->tokens[0]) return s->v[0];
  if (tokens >= s->tokens[s->n - 1]) return s->v[s->n - 1];
  int32_t i = 1;
  while (s->tokens[i] < tokens) i++;
  double f = log(tokens / s->tokens[i - 1]) / log(s->tokens[i] / s->tokens[i - 1]);
  return s->v[i - 1] + f * (s->v[i] - s->v[i - 1]);
}

static int sim__read_meta(const char *dir, sim_profile *p, kv_error *err) {
  char path[1200];
  snprintf(path, sizeof path, "%s/meta.ini", dir);
  kv_config *cfg = NULL;
  int rc = kv_config_load(path, &cfg, err);
  if (rc) return rc;
  const char *s = NULL;
  int64_t ver = 0;
  if ((rc = kv_config_str(cfg, "profile", "format", "", &s, err))) goto done;
  if (strcmp(s, "kvlab-gpu-profile") != 0) {
    rc = kv_error_set(err, KV_EFORMAT, "%s: [profile] format is '%s', expected "
                      "'kvlab-gpu-profile'", path, s);
    goto done;
  }
  if ((rc = kv_config_int(cfg, "profile", "version", 0, 0, 1 << 20, &ver, err))) goto done;
  if (ver != 1) {
    rc = kv_error_set(err, KV_ENOTSUP, "%s: profile version %lld (this build reads 1)", path,
                      (long long)ver);
    goto done;
  }
  if ((rc = kv_config_str(cfg, "profile", "device", "", &s, err))) goto done;
  if (!s[0]) {
    rc = kv_error_set(err, KV_EFORMAT, "%s: [profile] device is required", path);
    goto done;
  }
  snprintf(p->device, sizeof p->device, "%s", s);
  if ((rc = kv_config_str(cfg, "profile", "date_utc", "?", &s, err))) goto done;
  snprintf(p->date, sizeof p->date, "%s", s);
  if ((rc = kv_config_str(cfg, "profile", "commit", "?", &s, err))) goto done;
  snprintf(p->commit, sizeof p->commit, "%s", s);
  if ((rc = kv_config_str(cfg, "profile", "torch", "?", &s, err))) goto done;
  snprintf(p->torch, sizeof p->torch, "%s", s);
  rc = kv_config_bool(cfg, "profile", "smoke", 0, &p->smoke, err);
done:
  kv_config_free(cfg);
  return rc;
}

int sim_profile_load(const char *dir, sim_profile *p, kv_error *err) {
  memset(p, 0, sizeof *p);
  snprintf(p->dir, sizeof p->dir, "%s", dir);
  int rc = sim__read_meta(dir, p, err);
  for (int k = 0; !rc && k < SIM_PROF_KINDS; k++) {
    rc = sim__read_table(dir, (sim_prof_kind)k, &p->t[k], &p->n[k], err);
  }
  if (!rc) rc = sim__read_host(dir, p, err);
  if (!rc) {
    rc = sim__read_tcurves(dir, "sustain.csv", "layer", "ratio", 0.25, 4.0, "layer", &p->sustain,
                           &p->n_sustain, err);
  }
  if (!rc) {
    rc = sim__read_tcurves(dir, "launch_gap.csv", NULL, "gap_us", 0.0, 1e5, "gap", &p->gap,
                           &p->n_gap, err);
  }
  if (rc) sim_profile_free(p);
  return rc;
}

void sim_profile_free(sim_profile *p) {
  for (int k = 0; k < SIM_PROF_KINDS; k++) sim__tables_free(p->t[k], p->n[k]);
  free(p->host);
  free(p->sustain);
  free(p->gap);
  memset(p, 0, sizeof *p);
}

const sim_prof_table *sim_profile_find(const sim_profile *p, sim_prof_kind kind, int64_t k0,
                                       int64_t k1, int64_t k2, const char *name) {
  for (int32_t i = 0; i < p->n[kind]; i++) {
    const sim_prof_table *t = &p->t[kind][i];
    if (t->key[0] == k0 && t->key[1] == k1 && t->key[2] == k2 &&
        strcmp(t->name, name ? name : "") == 0) {
      return t;
    }
  }
  return NULL;
}

const sim_prof_host *sim_profile_host(const sim_profile *p, const char *path) {
  for (int32_t i = 0; i < p->n_host; i++) {
    if (strcmp(p->host[i].path, path) == 0) return &p->host[i];
  }
  return NULL;
}

/* ---- interpolation ------------------------------------------------------------------------ */

static double sim__pairs(double x, double z) { return x * z + 0.5 * x * (x + 1); }

double sim_prof_curve_eval(const sim_prof_curve *c, double x, sim_prof_beyond above, double z,
                           unsigned *flags) {
  int32_t n = c->n;
  if (x < c->x[0]) {
    *flags |= SIM_PROF_BELOW;
    return c->us[0];
  }
  if (x > c->x[n - 1]) {
    *flags |= SIM_PROF_ABOVE;
    double e = c->x[n - 1], v = c->us[n - 1];
    switch (above) {
      case SIM_PROF_PROPORTIONAL: return v * x / e;
      case SIM_PROF_PAIRS: return v * sim__pairs(x, z) / sim__pairs(e, z);
      default: return v;
    }
  }
  if (n == 1) return c->us[0];
  int32_t lo = 0, hi = n - 1; /* x[lo] <= x <= x[hi] */
  while (hi - lo > 1) {
    int32_t mid = (lo + hi) / 2;
    if (c->x[mid] <= x) lo = mid;
    else hi = mid;
  }
  double t = (log(x) - log(c->x[lo])) / (log(c->x[hi]) - log(c->x[lo]));
  return exp((1 - t) * log(c->us[lo]) + t * log(c->us[hi]));
}

double sim_prof_table_eval(const sim_prof_table *t, double z, double x, int z_log,
                           sim_prof_beyond z_above, sim_prof_beyond x_above, unsigned *flags) {
  int32_t n = t->nz;
  if (n == 1) return sim_prof_curve_eval(&t->c[0], x, x_above, t->z[0], flags);
  if (z < t->z[0]) {
    *flags |= SIM_PROF_BELOW;
    return sim_prof_curve_eval(&t->c[0], x, x_above, t->z[0], flags);
  }
  if (z > t->z[n - 1]) {
    *flags |= SIM_PROF_ABOVE;
    double v = sim_prof_curve_eval(&t->c[n - 1], x, x_above, t->z[n - 1], flags);
    if (z_above == SIM_PROF_PROPORTIONAL) return v * z / t->z[n - 1];
    if (z_above == SIM_PROF_AFFINE) {
      double u = sim_prof_curve_eval(&t->c[n - 2], x, x_above, t->z[n - 2], flags);
      double slope = (v - u) / (t->z[n - 1] - t->z[n - 2]);
      return slope > 0 ? v + slope * (z - t->z[n - 1]) : v;
    }
    return v;
  }
  int32_t lo = 0, hi = n - 1;
  while (hi - lo > 1) {
    int32_t mid = (lo + hi) / 2;
    if (t->z[mid] <= z) lo = mid;
    else hi = mid;
  }
  double a = sim_prof_curve_eval(&t->c[lo], x, x_above, t->z[lo], flags);
  double b = sim_prof_curve_eval(&t->c[hi], x, x_above, t->z[hi], flags);
  if (z_log) {
    double s = (log(z) - log(t->z[lo])) / (log(t->z[hi]) - log(t->z[lo]));
    return exp((1 - s) * log(a) + s * log(b));
  }
  double s = (z - t->z[lo]) / (t->z[hi] - t->z[lo]);
  return (1 - s) * a + s * b;
}

/* ---- the measured cost model -------------------------------------------------------------- */

/* Bytes read + written per element of an elementwise operator (roofline fallback). */
static double sim__elem_rw(sim_prof_op op) {
  return (op == SIM_OP_ACT || op == SIM_OP_ADD) ? 3.0 : 2.0;
}

static const char *sim__elem_name(const sim_prof_cost *c, sim_prof_op op) {
  switch (op) {
    case SIM_OP_NORM: return "rmsnorm";
    case SIM_OP_ROPE: return "rope";
    case SIM_OP_ACT: return c->model.ffn_matrices == 3 ? "silu_mul" : "gelu";
    case SIM_OP_ADD: return "add";
    case SIM_OP_EMBED: return "embed";
    case SIM_OP_KV_UPDATE: return "kv_update";
    default: return "";
  }
}

static int sim__is_gemm(sim_prof_op op) { return op <= SIM_OP_LM_HEAD; }
static int sim__is_elem(sim_prof_op op) { return op >= SIM_OP_NORM && op <= SIM_OP_KV_UPDATE; }

/* The curve of `model` (case-insensitive; the last if repeated), NULL when none. */
static const sim_prof_tcurve *sim__model_curve(const sim_prof_tcurve *cv, int32_t n,
                                               const char *model) {
  const sim_prof_tcurve *hit = NULL;
  for (int32_t i = 0; i < n; i++) {
    if (!strcasecmp(cv[i].model, model)) hit = &cv[i];
  }
  return hit;
}

/* A model's curve at T, or the mean of all n curves when it has none (one == NULL). */
static double sim__curve_or_mean(const sim_prof_tcurve *one, const sim_prof_tcurve *all,
                                 int32_t n, double T) {
  if (one) return sim_prof_tcurve_eval(one, T);
  double v = 0;
  for (int32_t i = 0; i < n; i++) v += sim_prof_tcurve_eval(&all[i], T);
  return v / (double)n;
}

int sim_prof_cost_init(sim_prof_cost *c, const char *dir, const sim_model *m, const sim_hw *hw,
                       int64_t tp, const sim_prof_opts *o, kv_error *err) {
  memset(c, 0, sizeof *c);
  int64_t H = m->heads, Hk = m->kv_heads, D = m->head_dim, h = m->hidden, F = m->ffn;
  if (tp < 1 || H % tp || F % tp || (Hk >= tp && Hk % tp)) {
    return kv_error_set(err, KV_ENOTSUP, "%s: %lld heads, %lld KV heads and FFN %lld do not "
                        "split over %lld GPUs", m->name, (long long)H, (long long)Hk,
                        (long long)F, (long long)tp);
  }
  c->model = *m;
  c->hw = *hw;
  c->tp = tp;
  c->compute_eff = o && o->compute_eff > 0 ? o->compute_eff : 0.6;
  c->memory_eff = o && o->memory_eff > 0 ? o->memory_eff : 0.8;
  snprintf(c->decode_source, sizeof c->decode_source, "%s",
           o && o->decode_source && o->decode_source[0] ? o->decode_source : "sdpa");
  snprintf(c->host_path, sizeof c->host_path, "%s",
           o && o->host_path && o->host_path[0] ? o->host_path : "none");
  c->host_derived[0] = 0;
  const char *ps = o && o->power_state && o->power_state[0] ? o->power_state : "sustained";
  if (strcmp(ps, "sustained") != 0 && strcmp(ps, "short") != 0) {
    return kv_error_set(err, KV_EINVAL, "power_state '%s' (expected sustained or short)", ps);
  }
  const char *lg = o && o->launch_gaps && o->launch_gaps[0] ? o->launch_gaps : "measured";
  if (strcmp(lg, "measured") != 0 && strcmp(lg, "none") != 0) {
    return kv_error_set(err, KV_EINVAL, "launch_gaps '%s' (expected measured or none)", lg);
  }
  int rc = sim_profile_load(dir, &c->prof, err);
  if (rc) return rc;
  c->gaps = !strcmp(lg, "measured") && c->prof.n_gap > 0;
  if (!strcmp(lg, "none")) {
    snprintf(c->gap_note, sizeof c->gap_note, "no launch gaps (launch_gaps = none)");
  } else if (!c->gaps) {
    snprintf(c->gap_note, sizeof c->gap_note, "no launch gaps (no launch_gap.csv in the profile)");
  } else {
    c->gap = sim__model_curve(c->prof.gap, c->prof.n_gap, m->name);
    if (c->gap) {
      snprintf(c->gap_note, sizeof c->gap_note, "launch gaps (launch_gap.csv: %s's)", c->gap->model);
    } else {
      snprintf(c->gap_note, sizeof c->gap_note, "launch gaps (launch_gap.csv: the mean of %d "
               "measured models'; %s not measured)", (int)c->prof.n_gap, m->name);
    }
  }
  c->sustained = !strcmp(ps, "sustained") && c->prof.n_sustain > 0;
  if (!strcmp(ps, "short")) {
    snprintf(c->sus_note, sizeof c->sus_note, "short timings (power_state = short)");
  } else if (!c->sustained) {
    snprintf(c->sus_note, sizeof c->sus_note, "short timings (no sustain.csv in the profile)");
  } else {
    c->sus = sim__model_curve(c->prof.sustain, c->prof.n_sustain, m->name);
    if (c->sus) {
      snprintf(c->sus_note, sizeof c->sus_note, "sustained (sustain.csv: %s's layer ratios)",
               c->sus->model);
    } else {
      snprintf(c->sus_note, sizeof c->sus_note, "sustained (sustain.csv: the mean of %d measured "
               "models' layer ratios; %s not measured)", (int)c->prof.n_sustain, m->name);
    }
  }
  int64_t Hs = H / tp, Hks = Hk >= tp ? Hk / tp : 1, Fs = F / tp;
  int64_t Vs = (m->vocab + tp - 1) / tp;
  int64_t sh[SIM_OP_COUNT][3] = {
      [SIM_OP_Q] = {Hs * D, h}, [SIM_OP_K] = {Hks * D, h}, [SIM_OP_V] = {Hks * D, h},
      [SIM_OP_O] = {h, Hs * D}, [SIM_OP_GATE] = {Fs, h}, [SIM_OP_UP] = {Fs, h},
      [SIM_OP_DOWN] = {h, Fs}, [SIM_OP_LM_HEAD] = {Vs, h}, [SIM_OP_NORM] = {h},
      [SIM_OP_ROPE] = {(Hs + Hks) * D}, [SIM_OP_ACT] = {Fs}, [SIM_OP_ADD] = {h},
      [SIM_OP_EMBED] = {h}, [SIM_OP_KV_UPDATE] = {2 * Hks * D}, [SIM_OP_ATTN_PREFILL] = {Hs, Hks, D},
      [SIM_OP_ATTN_DECODE] = {Hs, Hks, D}};
  memcpy(c->shape, sh, sizeof sh);
  for (int op = 0; op < SIM_OP_LAUNCH_GAP; op++) { /* the gap is no table's (c->gaps) */
    c->used[op] = op != SIM_OP_GATE || m->ffn_matrices == 3;
    const int64_t *s = c->shape[op];
    if (sim__is_gemm((sim_prof_op)op)) {
      c->tab[op] = sim_profile_find(&c->prof, SIM_PROF_GEMM, s[0], s[1], 0, "");
    } else if (sim__is_elem((sim_prof_op)op)) {
      c->tab[op] = sim_profile_find(&c->prof, SIM_PROF_ELEM, s[0], 0, 0,
                                    sim__elem_name(c, (sim_prof_op)op));
    } else if (op == SIM_OP_ATTN_PREFILL) {
      c->tab[op] = sim_profile_find(&c->prof, SIM_PROF_PREFILL, s[0], s[1], s[2], "");
    } else {
      c->tab[op] = sim_profile_find(&c->prof, SIM_PROF_DECODE, s[0], s[1], s[2],
                                    c->decode_source);
    }
  }
  /* a decode source that no table has is a typo, not a shape the profile lacks */
  int known = 0;
  char srcs[256] = "";
  for (int32_t i = 0; i < c->prof.n[SIM_PROF_DECODE]; i++) {
    const char *nm = c->prof.t[SIM_PROF_DECODE][i].name;
    known |= strcmp(nm, c->decode_source) == 0;
    if (!strstr(srcs, nm) && strlen(srcs) + strlen(nm) + 3 < sizeof srcs) {
      if (srcs[0]) strcat(srcs, ", ");
      strcat(srcs, nm);
    }
  }
  if (!known) {
    rc = kv_error_set(err, KV_ENOENT, "%s: no decode attention measured with source '%s' "
                      "(present: %s)", dir, c->decode_source, srcs);
  } else if (strcmp(c->host_path, "none") != 0) {
    const sim_prof_host *hp = sim_profile_host(&c->prof, c->host_path);
    if (!hp) {
      rc = kv_error_set(err, KV_ENOENT, "%s/host.csv: no fit for host path '%s'", dir,
                        c->host_path);
    } else {
      c->host_fixed_us = hp->fixed_us > 0 ? hp->fixed_us : 0;
      c->host_layer_us = hp->per_layer_us > 0 ? hp->per_layer_us : 0;
      snprintf(c->host_derived, sizeof c->host_derived, "%s", hp->derived);
    }
  }
  if (rc) sim_prof_cost_free(c);
  return rc;
}

void sim_prof_cost_free(sim_prof_cost *c) {
  sim_profile_free(&c->prof);
  memset(c->tab, 0, sizeof c->tab);
}

/* Roofline time (us) of one operator on one GPU. */
static double sim__roof_us(const sim_prof_cost *c, double flops, double bytes) {
  double tc = flops / (c->hw.flops * c->compute_eff);
  double tm = bytes / (c->hw.hbm_bw * c->memory_eff);
  return (tc > tm ? tc : tm) * 1e6;
}

static double sim__gemm_us(const sim_prof_cost *c, sim_prof_op op, double m, unsigned *fl) {
  if (m <= 0 || !c->used[op]) return 0;
  if (c->tab[op]) {
    return sim_prof_table_eval(c->tab[op], 0, m, 0, SIM_PROF_CLAMP, SIM_PROF_PROPORTIONAL, fl);
  }
  *fl |= SIM_PROF_ROOFLINE;
  double n = (double)c->shape[op][0], k = (double)c->shape[op][1];
  return sim__roof_us(c, 2 * m * n * k, (n * k + m * k + m * n) * (double)c->model.bytes_per_elem);
}

static double sim__elem_us(const sim_prof_cost *c, sim_prof_op op, double tokens, unsigned *fl) {
  if (tokens <= 0) return 0;
  if (c->tab[op]) {
    return sim_prof_table_eval(c->tab[op], 0, tokens, 0, SIM_PROF_CLAMP, SIM_PROF_PROPORTIONAL,
                               fl);
  }
  *fl |= SIM_PROF_ROOFLINE;
  double bytes = tokens * (double)c->shape[op][0] * (double)c->model.bytes_per_elem *
                 sim__elem_rw(op);
  return sim__roof_us(c, 0, bytes);
}

/* Causal attention of n new tokens after h cached ones (one sequence). */
static double sim__prefill_us(const sim_prof_cost *c, double h, double n, unsigned *fl) {
  if (n <= 0) return 0;
  if (c->tab[SIM_OP_ATTN_PREFILL]) {
    return sim_prof_table_eval(c->tab[SIM_OP_ATTN_PREFILL], h, n, 0, SIM_PROF_AFFINE,
                               SIM_PROF_PAIRS, fl);
  }
  *fl |= SIM_PROF_ROOFLINE;
  const int64_t *s = c->shape[SIM_OP_ATTN_PREFILL];
  double H = (double)s[0], Hk = (double)s[1], D = (double)s[2];
  double bpe = (double)c->model.bytes_per_elem;
  return sim__roof_us(c, 4 * H * D * sim__pairs(n, h),
                      (2 * n * H * D + 2 * (h + n) * Hk * D) * bpe);
}

/* One decode query per sequence, b sequences of mean context ctx (new token included). */
static double sim__decode_us(const sim_prof_cost *c, double b, double ctx, unsigned *fl) {
  if (b <= 0 || ctx <= 0) return 0;
  if (c->tab[SIM_OP_ATTN_DECODE]) {
    return sim_prof_table_eval(c->tab[SIM_OP_ATTN_DECODE], b, ctx, 1, SIM_PROF_PROPORTIONAL,
                               SIM_PROF_PROPORTIONAL, fl);
  }
  *fl |= SIM_PROF_ROOFLINE;
  const int64_t *s = c->shape[SIM_OP_ATTN_DECODE];
  double H = (double)s[0], Hk = (double)s[1], D = (double)s[2];
  double bpe = (double)c->model.bytes_per_elem;
  return sim__roof_us(c, 4 * H * D * b * ctx, (b * ctx * 2 * Hk * D + 2 * b * H * D) * bpe);
}

static int64_t sim__ns_of_us(double us) {
  if (!(us > 0)) return 0;
  if (us > 9e15) return INT64_MAX / 4;
  return (int64_t)llround(us * 1e3);
}

/* The layer's measured gaps between kernels at T tokens (us; 0 without them). */
static double sim__launch_gap(const sim_prof_cost *c, double T) {
  return c->gaps ? sim__curve_or_mean(c->gap, c->prof.gap, c->prof.n_gap, T) : 0.0;
}

/* The layer's sustained / short ratio at T tokens (1 when short timings are priced). */
static double sim__sustain_ratio(const sim_prof_cost *c, double T) {
  if (!c->sustained) return 1.0;
  const double r = sim__curve_or_mean(c->sus, c->prof.sustain, c->prof.n_sustain, T);
  return r > 1.0 ? r : 1.0;
}

void sim_prof_cost_ops(const sim_prof_cost *c, const sim_iter_work *w, double *layer_us,
                       double *head_us, unsigned *flags) {
  unsigned fl = 0;
  for (int op = 0; op < SIM_OP_COUNT; op++) layer_us[op] = head_us[op] = 0;
  double T = (double)w->n_decode, seqs = (double)w->n_prefill + (double)w->n_decode;
  for (int32_t i = 0; i < w->n_prefill; i++) T += (double)w->prefill_new[i];
  if (T <= 0) {
    if (flags) *flags = 0;
    return;
  }
  for (int op = SIM_OP_Q; op <= SIM_OP_DOWN; op++) {
    layer_us[op] = sim__gemm_us(c, (sim_prof_op)op, T, &fl);
  }
  layer_us[SIM_OP_NORM] = 2 * sim__elem_us(c, SIM_OP_NORM, T, &fl);
  layer_us[SIM_OP_ROPE] = sim__elem_us(c, SIM_OP_ROPE, T, &fl);
  layer_us[SIM_OP_ACT] = sim__elem_us(c, SIM_OP_ACT, T, &fl);
  layer_us[SIM_OP_ADD] = 2 * sim__elem_us(c, SIM_OP_ADD, T, &fl);
  for (int32_t i = 0; i < w->n_prefill; i++) {
    layer_us[SIM_OP_ATTN_PREFILL] +=
        sim__prefill_us(c, (double)w->prefill_hist[i], (double)w->prefill_new[i], &fl);
  }
  if (w->n_decode > 0 && w->decode_ctx_sum > 0) {
    layer_us[SIM_OP_ATTN_DECODE] = sim__decode_us(
        c, (double)w->n_decode, (double)w->decode_ctx_sum / (double)w->n_decode, &fl);
  }
  layer_us[SIM_OP_KV_UPDATE] = sim__elem_us(c, SIM_OP_KV_UPDATE, (double)w->n_decode, &fl);
  double ratio = sim__sustain_ratio(c, T);
  for (int op = 0; ratio != 1.0 && op < SIM_OP_COUNT; op++) layer_us[op] *= ratio;
  layer_us[SIM_OP_LAUNCH_GAP] = sim__launch_gap(c, T); /* idle time: not scaled */
  head_us[SIM_OP_EMBED] = sim__elem_us(c, SIM_OP_EMBED, T, &fl);
  head_us[SIM_OP_NORM] = sim__elem_us(c, SIM_OP_NORM, T, &fl);
  head_us[SIM_OP_LM_HEAD] = sim__gemm_us(c, SIM_OP_LM_HEAD, seqs, &fl);
  if (flags) *flags = fl;
}

void sim_prof_cost_gpu(const sim_prof_cost *c, const sim_iter_work *w, double *layer_us,
                       double *head_us, unsigned *flags) {
  double lo[SIM_OP_COUNT], ho[SIM_OP_COUNT];
  unsigned fl = 0;
  sim_prof_cost_ops(c, w, lo, ho, &fl);
  double us = 0, head = 0;
  for (int op = 0; op < SIM_OP_COUNT; op++) {
    us += lo[op];
    head += ho[op];
  }
  if (us > 0 && c->tp > 1) { /* two ring all-reduces of the activations: the roofline's (assumed) term */
    double T = (double)w->n_decode;
    for (int32_t i = 0; i < w->n_prefill; i++) T += (double)w->prefill_new[i];
    double act = T * (double)c->model.hidden * (double)c->model.bytes_per_elem;
    double one = c->hw.allreduce_latency_ns / 1e3 +
                 2.0 * (double)(c->tp - 1) / (double)c->tp * act / c->hw.nvlink_bw * 1e6;
    us += 2 * one;
  }
  *layer_us = us;
  *head_us = head;
  if (flags) *flags = fl;
}

void sim_prof_cost_iter(const sim_prof_cost *c, const sim_iter_work *w, int64_t *layer_ns,
                        int64_t *head_ns, unsigned *flags) {
  double us = 0, head = 0;
  sim_prof_cost_gpu(c, w, &us, &head, flags);
  if (us > 0) {
    if (us < c->host_layer_us) us = c->host_layer_us;
    if (head < c->host_fixed_us) head = c->host_fixed_us;
  }
  *layer_ns = sim__ns_of_us(us);
  *head_ns = sim__ns_of_us(head);
}

void sim_prof_cost_describe(const sim_prof_cost *c, char *buf, size_t cap) {
  char fb[512] = "";
  size_t k = 0;
  for (int op = 0; op < SIM_OP_COUNT; op++) {
    if (!c->used[op] || c->tab[op]) continue;
    const int64_t *s = c->shape[op];
    int w;
    if (sim__is_gemm((sim_prof_op)op)) {
      w = snprintf(fb + k, sizeof fb - k, "%s%s %lldx%lld", k ? ", " : "", sim_prof_op_names[op],
                   (long long)s[0], (long long)s[1]);
    } else if (sim__is_elem((sim_prof_op)op)) {
      w = snprintf(fb + k, sizeof fb - k, "%s%s %lld", k ? ", " : "",
                   sim__elem_name(c, (sim_prof_op)op), (long long)s[0]);
    } else {
      w = snprintf(fb + k, sizeof fb - k, "%s%s %lld/%lld/%lld", k ? ", " : "",
                   sim_prof_op_names[op], (long long)s[0], (long long)s[1], (long long)s[2]);
    }
    if (w < 0 || (size_t)w >= sizeof fb - k) break;
    k += (size_t)w;
  }
  snprintf(buf, cap,
           "measured: profile %s (%s, %s, commit %.12s%s); %s; %s; decode attention %s; host "
           "overhead %s%s%s%s; roofline (compute_eff %g, memory_eff %g, assumed) for: %s%s",
           c->prof.dir, c->prof.device, c->prof.date, c->prof.commit,
           c->prof.smoke ? ", SMOKE TEST: CPU numbers, not a measurement" : "", c->sus_note,
           c->gap_note, c->decode_source,
           c->host_path, c->host_derived[0] ? " (derived: " : "", c->host_derived,
           c->host_derived[0] ? ")" : "", c->compute_eff, c->memory_eff, k ? fb : "nothing",
           c->tp > 1 ? "; all-reduce assumed (roofline formula)" : "");
}

/* ---- config ------------------------------------------------------------------------------- */

int sim_cost_measured_from_config(const kv_config *cfg, const char *data_dir, const sim_model *m,
                                  const sim_hw *hw, int64_t tp, sim_cost *cost, kv_error *err) {
  static const char *const power_states[] = {"sustained", "short", NULL};
  static const char *const gap_modes[] = {"measured", "none", NULL};
  const char *name = NULL, *src = NULL, *host = NULL;
  int ps, lg;
  double ce, me;
  int rc;
  if ((rc = kv_config_str(cfg, "cost", "profile", NULL, &name, err)) ||
      (rc = kv_config_str(cfg, "cost", "decode_attention", "sdpa", &src, err)) ||
      (rc = kv_config_str(cfg, "cost", "host_overhead", "none", &host, err)) ||
      (rc = kv_config_enum(cfg, "cost", "power_state", 0, power_states, &ps, err)) ||
      (rc = kv_config_enum(cfg, "cost", "launch_gaps", 0, gap_modes, &lg, err)) ||
      (rc = kv_config_double(cfg, "cost", "compute_eff", 0.6, 1e-3, 1.0, &ce, err)) ||
      (rc = kv_config_double(cfg, "cost", "memory_eff", 0.8, 1e-3, 1.0, &me, err))) {
    return rc;
  }
  if (!name || !name[0]) {
    return kv_error_set(err, KV_ENOENT, "config: [cost] model = measured needs [cost] profile "
                        "= <a directory, or a name in %s/profiles>", data_dir);
  }
  char dir[1200];
  if (strchr(name, '/')) snprintf(dir, sizeof dir, "%s", name);
  else snprintf(dir, sizeof dir, "%s/profiles/%s", data_dir, name);
  sim_prof_opts o = {src, host, ce, me, power_states[ps], gap_modes[lg]};
  rc = sim_cost_init_measured(cost, m, hw, tp, dir, &o, err);
  if (rc) kv_error_prefix(err, "%s: [cost] profile", kv_config_where(cfg, "cost", "profile"));
  return rc;
}

int sim_cost_init_measured(sim_cost *c, const sim_model *m, const sim_hw *hw, int64_t tp,
                           const char *dir, const sim_prof_opts *o, kv_error *err) {
  memset(c, 0, sizeof *c);
  c->kind = SIM_COST_MEASURED;
  c->model = *m;
  c->hw = *hw;
  c->tp = tp;
  snprintf(c->profile_path, sizeof c->profile_path, "%s", dir);
  c->measured = malloc(sizeof *c->measured);
  if (!c->measured) return kv_error_set(err, KV_ENOMEM, "%s: out of memory", dir);
  int rc = sim_prof_cost_init(c->measured, dir, m, hw, tp, o, err);
  if (rc) {
    free(c->measured);
    c->measured = NULL;
  }
  return rc;
}

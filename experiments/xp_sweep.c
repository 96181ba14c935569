/* xp_sweep.c — sweep files: loading, list expansion, points, per-point configs and commands. */
#include "xp_sweep.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void xp__trim(char *s) {
  char *p = s;
  while (*p && isspace((unsigned char)*p)) p++;
  memmove(s, p, strlen(p) + 1);
  size_t n = strlen(s);
  while (n > 0 && isspace((unsigned char)s[n - 1])) s[--n] = '\0';
}

static int xp__num(const char *s, double *out) {
  char *end;
  errno = 0;
  double v = strtod(s, &end);
  while (*end && isspace((unsigned char)*end)) end++;
  if (end == s || *end || errno || !isfinite(v)) return -1;
  *out = v;
  return 0;
}

/* Formats a generated number: integers without a fraction, others with %.6g. */
static void xp__fmt(double v, char *buf) {
  char tmp[64];
  snprintf(tmp, sizeof tmp, "%.12g", v); /* absorb rounding of exp/log: 999999.9999999 -> 1e6 */
  v = strtod(tmp, NULL);
  if (fabs(v) < 1e15 && v == floor(v)) snprintf(buf, 128, "%.0f", v);
  else snprintf(buf, 128, "%.6g", v);
}

int xp_expand_list(const char *expr, char out[][128], int cap, const char *what, kv_error *err) {
  char buf[4096];
  if (strlen(expr) >= sizeof buf) return kv_error_set(err, KV_ERANGE, "%s: list too long", what);
  snprintf(buf, sizeof buf, "%s", expr);
  xp__trim(buf);
  const char *fns[3] = {"range(", "lin(", "geom("};
  for (int f = 0; f < 3; f++) {
    size_t fl = strlen(fns[f]);
    if (strncmp(buf, fns[f], fl) != 0) continue;
    size_t n = strlen(buf);
    if (buf[n - 1] != ')') {
      return kv_error_set(err, KV_EINVAL, "%s: '%s': missing ')'", what, expr);
    }
    buf[n - 1] = '\0';
    char *args[3];
    int na = 0;
    char *save = NULL;
    for (char *t = strtok_r(buf + fl, ",", &save); t && na < 3; t = strtok_r(NULL, ",", &save)) {
      args[na++] = t;
    }
    double a, b, c;
    if (na != 3 || xp__num(args[0], &a) || xp__num(args[1], &b) || xp__num(args[2], &c)) {
      return kv_error_set(err, KV_EINVAL, "%s: '%s': expected %s<a>, <b>, <c>)", what, expr,
                          fns[f]);
    }
    int count = 0;
    if (f == 0) { /* range(start, stop, step) */
      if (c == 0 || (b - a) / c < 0) {
        return kv_error_set(err, KV_EINVAL, "%s: '%s': step does not move from start to stop",
                            what, expr);
      }
      double steps = floor((b - a) / c + 1e-9);
      if (steps + 1 > cap) {
        return kv_error_set(err, KV_ERANGE, "%s: '%s': more than %d values", what, expr, cap);
      }
      for (int i = 0; i <= (int)steps; i++) xp__fmt(a + c * i, out[count++]);
    } else {
      if (c != floor(c) || c < 1 || c > cap) {
        return kv_error_set(err, KV_ERANGE, "%s: '%s': count must be an integer in [1, %d]", what,
                            expr, cap);
      }
      if (f == 2 && (a <= 0 || b <= 0)) {
        return kv_error_set(err, KV_EINVAL, "%s: '%s': geom needs positive ends", what, expr);
      }
      int n2 = (int)c;
      for (int i = 0; i < n2; i++) {
        double t = n2 == 1 ? 0.0 : (double)i / (n2 - 1);
        double v = f == 1 ? a + (b - a) * t : exp(log(a) + (log(b) - log(a)) * t);
        if (f == 2 && i == n2 - 1) v = b;
        xp__fmt(v, out[count++]);
      }
    }
    return count;
  }
  int count = 0;
  for (char *t = buf;;) {
    char *comma = strchr(t, ',');
    if (comma) *comma = '\0';
    char item[4096];
    snprintf(item, sizeof item, "%s", t);
    xp__trim(item);
    if (!item[0]) return kv_error_set(err, KV_EINVAL, "%s: '%s': empty list item", what, expr);
    if (strlen(item) >= 128) return kv_error_set(err, KV_ERANGE, "%s: value too long", what);
    if (count == cap) {
      return kv_error_set(err, KV_ERANGE, "%s: more than %d values", what, cap);
    }
    snprintf(out[count++], 128, "%s", item);
    if (!comma) break;
    t = comma + 1;
  }
  if (count == 0) return kv_error_set(err, KV_EINVAL, "%s: empty list", what);
  return count;
}

void xp_sweep_free(xp_sweep *s) {
  kv_config_free(s->fixed);
  s->fixed = NULL;
}

/* Sets parameter `key` to the list `expr` (replacing an existing one). */
static int xp__set_param(xp_sweep *s, const char *key, const char *expr, const char *where,
                         kv_error *err) {
  int i;
  for (i = 0; i < s->n_params; i++) {
    if (strcmp(s->params[i].key, key) == 0) break;
  }
  if (i == s->n_params) {
    if (s->n_params == XP_MAX_PARAMS) {
      return kv_error_set(err, KV_ERANGE, "%s: more than %d swept parameters", where,
                          XP_MAX_PARAMS);
    }
    if (strlen(key) >= sizeof s->params[i].key) {
      return kv_error_set(err, KV_ERANGE, "%s: key too long", where);
    }
    snprintf(s->params[i].key, sizeof s->params[i].key, "%s", key);
    s->n_params++;
  }
  char what[600];
  snprintf(what, sizeof what, "%s: [vary] %s", where, key);
  int n = xp_expand_list(expr, s->params[i].values, XP_MAX_VALUES, what, err);
  if (n < 0) return n;
  s->params[i].n_values = n;
  int nk = 1;
  for (const char *c = key; *c; c++) nk += *c == '+';
  if (nk > XP_MAX_ZIPPED) {
    return kv_error_set(err, KV_EINVAL, "%s: %d zipped keys (at most %d)", what, nk,
                        XP_MAX_ZIPPED);
  }
  for (int v = 0; v < n && nk > 1; v++) {
    int nv = 1;
    for (const char *c = s->params[i].values[v]; *c; c++) nv += *c == '/';
    if (nv != nk) {
      return kv_error_set(err, KV_EINVAL, "%s: value '%s' has %d '/'-separated parts for %d "
                          "zipped keys", what, s->params[i].values[v], nv, nk);
    }
  }
  return 0;
}

static int xp__set_seeds(xp_sweep *s, const char *expr, const char *where, kv_error *err) {
  static char vals[XP_MAX_SEEDS][128];
  char what[600];
  snprintf(what, sizeof what, "%s: seeds", where);
  int n = xp_expand_list(expr, vals, XP_MAX_SEEDS, what, err);
  if (n < 0) return n;
  for (int i = 0; i < n; i++) {
    char *end;
    errno = 0;
    long long v = strtoll(vals[i], &end, 10);
    if (*end || errno || v < 0) {
      return kv_error_set(err, KV_EINVAL, "%s: seed '%s' is not a non-negative integer", what,
                          vals[i]);
    }
    s->seeds[i] = v;
  }
  s->n_seeds = n;
  return 0;
}

int xp_sweep_load(const char *path, const char *scale, xp_sweep *s, kv_error *err) {
  memset(s, 0, sizeof *s);
  snprintf(s->path, sizeof s->path, "%s", path);
  snprintf(s->dir, sizeof s->dir, "%s", path);
  char *slash = strrchr(s->dir, '/');
  if (slash) *slash = '\0';
  else snprintf(s->dir, sizeof s->dir, ".");
  if (scale) snprintf(s->scale, sizeof s->scale, "%s", scale);
  kv_config *c;
  int rc = kv_config_load(path, &c, err);
  if (rc) return rc;
  s->fixed = kv_config_new();
  if (!s->fixed) {
    kv_config_free(c);
    return kv_error_set(err, KV_ENOMEM, "out of memory");
  }
  const char *v;
  const char *need[3] = {"name", "tool", "args"};
  char *dst[3] = {s->name, s->tool, s->args};
  size_t cap[3] = {sizeof s->name, sizeof s->tool, sizeof s->args};
  for (int i = 0; i < 3 && !rc; i++) {
    v = kv_config_get(c, "sweep", need[i]);
    if (!v || !v[0]) {
      rc = kv_error_set(err, KV_ENOENT, "%s: [sweep] %s is required", path, need[i]);
    } else if (strlen(v) >= cap[i]) {
      rc = kv_error_set(err, KV_ERANGE, "%s: [sweep] %s is too long", path, need[i]);
    } else {
      snprintf(dst[i], cap[i], "%s", v);
    }
  }
  for (const char *p = s->name; !rc && *p; p++) {
    if (!isalnum((unsigned char)*p) && *p != '-' && *p != '_' && *p != '.') {
      rc = kv_error_set(err, KV_EINVAL, "%s: [sweep] name '%s' may hold only letters, digits, "
                        "'-', '_' and '.'", kv_config_where(c, "sweep", "name"), s->name);
    }
  }
  if (!rc && strchr(s->tool, '/')) {
    rc = kv_error_set(err, KV_EINVAL, "%s: [sweep] tool must be a name in the tools directory",
                      kv_config_where(c, "sweep", "tool"));
  }
  if (!rc && (v = kv_config_get(c, "sweep", "config")) != NULL) {
    snprintf(s->base_config, sizeof s->base_config, "%s%s%s", v[0] == '/' ? "" : s->dir,
             v[0] == '/' ? "" : "/", v);
    FILE *t = fopen(s->base_config, "r");
    if (!t) {
      rc = kv_error_set(err, KV_EIO, "%s: [sweep] config: cannot open %s",
                        kv_config_where(c, "sweep", "config"), s->base_config);
    } else {
      fclose(t);
    }
  }
  if (!rc && (v = kv_config_get(c, "sweep", "results")) != NULL) {
    snprintf(s->results, sizeof s->results, "%s", v);
  }
  if (!rc && (v = kv_config_get(c, "sweep", "seeds")) != NULL) {
    rc = xp__set_seeds(s, v, kv_config_where(c, "sweep", "seeds"), err);
  }
  int n = kv_config_count(c);
  for (int i = 0; i < n && !rc; i++) {
    const char *sec, *key, *val;
    kv_config_entry(c, i, &sec, &key, &val);
    if (strcmp(sec, "vary") == 0) {
      kv_config_get(c, sec, key);
      rc = xp__set_param(s, key, val, kv_config_where(c, sec, key), err);
    } else if (strcmp(sec, "fixed") == 0) {
      kv_config_get(c, sec, key);
      if (!strchr(key, '.')) {
        rc = kv_error_set(err, KV_EINVAL, "%s: [fixed] %s: keys must be section.key",
                          kv_config_where(c, sec, key), key);
      } else {
        rc = kv_config_set(s->fixed, "fixed", key, val, kv_config_where(c, sec, key));
      }
    }
  }
  /* Scale sections: [quick], [full], ... only the chosen one applies; the others are read so
   * that they do not count as unknown. */
  for (int i = 0; i < n && !rc; i++) {
    const char *sec, *key, *val;
    kv_config_entry(c, i, &sec, &key, &val);
    if (!strcmp(sec, "sweep") || !strcmp(sec, "vary") || !strcmp(sec, "fixed")) continue;
    kv_config_get(c, sec, key);
    if (!s->scale[0] || strcmp(sec, s->scale) != 0) continue;
    const char *where = kv_config_where(c, sec, key);
    if (!strcmp(key, "seeds")) {
      rc = xp__set_seeds(s, val, where, err);
      continue;
    }
    int is_param = 0;
    for (int k = 0; k < s->n_params; k++) is_param |= !strcmp(s->params[k].key, key);
    if (is_param) {
      rc = xp__set_param(s, key, val, where, err);
    } else if (strchr(key, '.')) {
      rc = kv_config_set(s->fixed, "fixed", key, val, where);
    } else {
      rc = kv_error_set(err, KV_EINVAL, "%s: [%s] %s is neither a [vary] parameter, seeds, nor "
                        "a section.key override", where, sec, key);
    }
  }
  if (!rc) {
    /* Every other key of [sweep] is a mistake. */
    const char *known[] = {"name", "tool", "args", "config", "seeds", "results"};
    for (int i = 0; i < n && !rc; i++) {
      const char *sec, *key, *val;
      kv_config_entry(c, i, &sec, &key, &val);
      if (strcmp(sec, "sweep")) continue;
      int ok = 0;
      for (size_t k = 0; k < sizeof known / sizeof known[0]; k++) ok |= !strcmp(known[k], key);
      if (!ok) {
        rc = kv_error_set(err, KV_EINVAL, "%s: [sweep] unknown key '%s'",
                          kv_config_where(c, sec, key), key);
      }
    }
  }
  if (!rc && s->scale[0]) {
    int found = 0;
    for (int i = 0; i < n; i++) {
      const char *sec, *key, *val;
      kv_config_entry(c, i, &sec, &key, &val);
      found |= !strcmp(sec, s->scale);
    }
    if (!found) {
      rc = kv_error_set(err, KV_ENOENT, "%s: no [%s] section for scale '%s'", path, s->scale,
                        s->scale);
    }
  }
  kv_config_free(c);
  if (rc) xp_sweep_free(s);
  return rc;
}

/* Component c of a zipped "k1+k2" key or "v1/v2" value into out; returns 0 when it exists. */
static int xp__component(const char *str, char sep, int c, char *out, size_t cap) {
  const char *p = str;
  for (int k = 0; k < c; k++) {
    p = strchr(p, sep);
    if (!p) return -1;
    p++;
  }
  const char *end = strchr(p, sep);
  size_t n = end ? (size_t)(end - p) : strlen(p);
  if (n >= cap) return -1;
  memcpy(out, p, n);
  out[n] = '\0';
  return 0;
}

static int xp__n_components(const char *str, char sep) {
  int n = 1;
  for (; *str; str++) n += *str == sep;
  return n;
}

int64_t xp_sweep_n_points(const xp_sweep *s) {
  int64_t n = s->n_seeds > 0 ? s->n_seeds : 1;
  for (int i = 0; i < s->n_params; i++) n *= s->params[i].n_values;
  return n;
}

/* Replaces characters unsafe in file names. */
static void xp__slug(char *s) {
  for (; *s; s++) {
    if (!isalnum((unsigned char)*s) && *s != '.' && *s != '-' && *s != '=' && *s != '_' &&
        *s != '+') {
      *s = '-';
    }
  }
}

void xp_sweep_point(const xp_sweep *s, int64_t i, xp_point *p) {
  memset(p, 0, sizeof *p);
  p->index = i;
  int64_t r = i;
  if (s->n_seeds > 0) {
    p->seed_idx = (int)(r % s->n_seeds);
    r /= s->n_seeds;
  } else {
    p->seed_idx = -1;
  }
  for (int k = s->n_params - 1; k >= 0; k--) {
    p->value_idx[k] = (int)(r % s->params[k].n_values);
    r /= s->params[k].n_values;
  }
  size_t len = 0;
  for (int k = 0; k < s->n_params && len < sizeof p->id; k++) {
    char key[128];
    xp__component(s->params[k].key, '+', 0, key, sizeof key);
    const char *dot = strrchr(key, '.');
    len += (size_t)snprintf(p->id + len, sizeof p->id - len, "%s%s=%s", k ? "_" : "",
                            dot ? dot + 1 : key, s->params[k].values[p->value_idx[k]]);
  }
  if (p->seed_idx >= 0 && len < sizeof p->id) {
    snprintf(p->id + len, sizeof p->id - len, "%sseed=%lld", len ? "_" : "",
             (long long)s->seeds[p->seed_idx]);
  }
  if (!p->id[0]) snprintf(p->id, sizeof p->id, "point");
  xp__slug(p->id);
}

int xp_point_assignment(const xp_sweep *s, const xp_point *p, xp_assign *out, int cap) {
  int n = 0;
  for (int k = 0; k < s->n_params; k++) {
    const char *key = s->params[k].key, *val = s->params[k].values[p->value_idx[k]];
    int nk = xp__n_components(key, '+');
    for (int cpt = 0; cpt < nk && n < cap; cpt++, n++) {
      if (nk == 1) {
        snprintf(out[n].key, sizeof out[n].key, "%s", key);
        snprintf(out[n].value, sizeof out[n].value, "%s", val);
      } else {
        xp__component(key, '+', cpt, out[n].key, sizeof out[n].key);
        xp__component(val, '/', cpt, out[n].value, sizeof out[n].value);
      }
    }
  }
  return n;
}

int xp_point_config(const xp_sweep *s, const xp_point *p, kv_config **out, kv_error *err) {
  kv_config *c = NULL;
  int rc = 0;
  if (s->base_config[0]) {
    rc = kv_config_load(s->base_config, &c, err);
    if (rc) return rc;
  } else {
    c = kv_config_new();
    if (!c) return kv_error_set(err, KV_ENOMEM, "out of memory");
  }
  char assign[1200];
  int n = kv_config_count(s->fixed);
  for (int i = 0; i < n && !rc; i++) {
    const char *sec, *key, *val;
    kv_config_entry(s->fixed, i, &sec, &key, &val);
    snprintf(assign, sizeof assign, "%s=%s", key, val);
    rc = kv_config_override(c, assign, err);
  }
  xp_assign as[XP_MAX_ASSIGN];
  int na = xp_point_assignment(s, p, as, XP_MAX_ASSIGN);
  for (int i = 0; i < na && !rc; i++) {
    if (!strchr(as[i].key, '.')) continue;
    snprintf(assign, sizeof assign, "%s=%s", as[i].key, as[i].value);
    rc = kv_config_override(c, assign, err);
  }
  if (!rc && p->seed_idx >= 0) {
    snprintf(assign, sizeof assign, "sim.seed=%lld", (long long)s->seeds[p->seed_idx]);
    rc = kv_config_override(c, assign, err);
  }
  /* Directory placeholders in values. */
  char cdir[4096];
  snprintf(cdir, sizeof cdir, "%s", s->base_config[0] ? s->base_config : s->dir);
  if (s->base_config[0]) {
    char *sl = strrchr(cdir, '/');
    if (sl) *sl = '\0';
    else snprintf(cdir, sizeof cdir, ".");
  }
  if (!rc) rc = kv_config_expand(c, "{sweepdir}", s->dir, err);
  if (!rc) rc = kv_config_expand(c, "{configdir}", cdir, err);
  if (!rc) rc = kv_config_expand(c, "{src}", s->src[0] ? s->src : ".", err);
  if (rc) {
    kv_config_free(c);
    return rc;
  }
  *out = c;
  return 0;
}

int xp_point_argv(const xp_sweep *s, const xp_point *p, const char *config_path,
                  const char *out_dir, const char *src_dir, const char *bin_dir, char **words,
                  int cap, char *store, size_t store_cap, kv_error *err) {
  char expanded[8192];
  size_t len = 0;
  const char *a = s->args;
  while (*a) {
    if (*a != '{') {
      if (len + 1 >= sizeof expanded) return kv_error_set(err, KV_ERANGE, "args too long");
      expanded[len++] = *a++;
      continue;
    }
    const char *close = strchr(a, '}');
    if (!close) return kv_error_set(err, KV_EINVAL, "%s: [sweep] args: unclosed '{'", s->path);
    char var[128];
    size_t vl = (size_t)(close - a - 1);
    if (vl >= sizeof var) return kv_error_set(err, KV_EINVAL, "%s: args: long variable", s->path);
    memcpy(var, a + 1, vl);
    var[vl] = '\0';
    char seed[32];
    const char *val = NULL;
    if (!strcmp(var, "config")) val = config_path;
    else if (!strcmp(var, "out")) val = out_dir;
    else if (!strcmp(var, "src")) val = src_dir;
    else if (!strcmp(var, "bin")) val = bin_dir;
    else if (!strcmp(var, "sweepdir")) val = s->dir;
    else if (!strncmp(var, "env:", 4)) {
      val = getenv(var + 4);
      if (!val || !val[0]) {
        return kv_error_set(err, KV_ENOENT, "%s: [sweep] args use {%s} but the environment "
                            "variable %s is not set", s->path, var, var + 4);
      }
    }
    else if (!strcmp(var, "seed")) {
      if (p->seed_idx < 0) {
        return kv_error_set(err, KV_EINVAL, "%s: args use {seed} but [sweep] has no seeds",
                            s->path);
      }
      snprintf(seed, sizeof seed, "%lld", (long long)s->seeds[p->seed_idx]);
      val = seed;
    } else {
      static xp_assign as[XP_MAX_ASSIGN];
      int na = xp_point_assignment(s, p, as, XP_MAX_ASSIGN);
      for (int i = 0; i < na && !val; i++) {
        if (!strcmp(as[i].key, var)) val = as[i].value;
      }
    }
    if (!val) {
      return kv_error_set(err, KV_EINVAL, "%s: [sweep] args: unknown variable {%s}", s->path,
                          var);
    }
    size_t l = strlen(val);
    if (len + l >= sizeof expanded) return kv_error_set(err, KV_ERANGE, "args too long");
    memcpy(expanded + len, val, l);
    len += l;
    a = close + 1;
  }
  expanded[len] = '\0';
  if (len + 1 > store_cap) return kv_error_set(err, KV_ERANGE, "args too long");
  memcpy(store, expanded, len + 1);
  int n = 0;
  char *save = NULL;
  for (char *t = strtok_r(store, " \t", &save); t; t = strtok_r(NULL, " \t", &save)) {
    if (n == cap - 1) return kv_error_set(err, KV_ERANGE, "args: too many words");
    words[n++] = t;
  }
  words[n] = NULL;
  return n;
}

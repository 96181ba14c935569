#include "kv_config.h"

#include <ctype.h>
#include <errno.h>
#include <ini.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "kv_fs.h"

typedef struct kv__entry {
  char *section, *key, *value;
  char where[160]; /* "file:line" or origin */
  int used;        /* set by getters (logically const access, hence the cast in kv__find) */
} kv__entry;

struct kv_config {
  kv__entry *e;
  int n, cap;
};

/* State of one parse: line counting reader plus the first error. */
typedef struct {
  kv_config *cfg;
  const char *name;
  const char *text; /* for string parsing */
  size_t pos;
  FILE *file;
  int line;
  int too_long;
  kv_error *err;
  int rc;
} kv__parse;

static char *kv__strdup(const char *s) {
  size_t n = strlen(s) + 1;
  char *d = malloc(n);
  if (d) memcpy(d, s, n);
  return d;
}

kv_config *kv_config_new(void) { return calloc(1, sizeof(kv_config)); }

void kv_config_free(kv_config *cfg) {
  if (!cfg) return;
  for (int i = 0; i < cfg->n; i++) {
    free(cfg->e[i].section);
    free(cfg->e[i].key);
    free(cfg->e[i].value);
  }
  free(cfg->e);
  free(cfg);
}

static kv__entry *kv__find(const kv_config *cfg, const char *sec, const char *key) {
  for (int i = 0; i < cfg->n; i++) {
    if (strcmp(cfg->e[i].section, sec) == 0 && strcmp(cfg->e[i].key, key) == 0) {
      return &((kv_config *)cfg)->e[i];
    }
  }
  return NULL;
}

int kv_config_set(kv_config *cfg, const char *section, const char *key, const char *value,
                  const char *origin) {
  kv__entry *e = kv__find(cfg, section, key);
  if (e) {
    char *v = kv__strdup(value);
    if (!v) return KV_ENOMEM;
    free(e->value);
    e->value = v;
  } else {
    if (cfg->n == cfg->cap) {
      int nc = cfg->cap ? cfg->cap * 2 : 32;
      kv__entry *ne = realloc(cfg->e, (size_t)nc * sizeof *ne);
      if (!ne) return KV_ENOMEM;
      cfg->e = ne;
      cfg->cap = nc;
    }
    e = &cfg->e[cfg->n];
    memset(e, 0, sizeof *e);
    e->section = kv__strdup(section);
    e->key = kv__strdup(key);
    e->value = kv__strdup(value);
    if (!e->section || !e->key || !e->value) {
      free(e->section);
      free(e->key);
      free(e->value);
      return KV_ENOMEM;
    }
    cfg->n++;
  }
  snprintf(e->where, sizeof e->where, "%s", origin ? origin : "<code>");
  return 0;
}

kv_config *kv_config_clone(const kv_config *cfg) {
  kv_config *c = kv_config_new();
  if (!c) return NULL;
  for (int i = 0; i < cfg->n; i++) {
    if (kv_config_set(c, cfg->e[i].section, cfg->e[i].key, cfg->e[i].value, cfg->e[i].where)) {
      kv_config_free(c);
      return NULL;
    }
    c->e[i].used = cfg->e[i].used;
  }
  return c;
}

static int kv__handler(void *user, const char *section, const char *name, const char *value) {
  kv__parse *p = user;
  if (p->rc) return 0;
  if (p->too_long) {
    p->rc = kv_error_set(p->err, KV_EFORMAT, "%s:%d: line too long (limit 4000 bytes)", p->name,
                         p->line);
    return 0;
  }
  if (!section[0]) {
    p->rc = kv_error_set(p->err, KV_EFORMAT, "%s:%d: key '%s' outside any [section]", p->name,
                         p->line, name);
    return 0;
  }
  kv__entry *old = kv__find(p->cfg, section, name);
  if (old) {
    p->rc = kv_error_set(p->err, KV_EFORMAT, "%s:%d: [%s] %s given twice (first at %s)", p->name,
                         p->line, section, name, old->where);
    return 0;
  }
  char where[160];
  snprintf(where, sizeof where, "%s:%d", p->name, p->line);
  if (kv_config_set(p->cfg, section, name, value, where)) {
    p->rc = kv_error_set(p->err, KV_ENOMEM, "%s: out of memory", p->name);
  }
  return 1;
}

/* fgets-like reader that counts lines and flags lines longer than the buffer. */
static char *kv__reader(char *str, int num, void *stream) {
  kv__parse *p = stream;
  int i = 0;
  int c;
  for (;;) {
    if (p->file) {
      c = fgetc(p->file);
    } else {
      c = p->text[p->pos] ? (unsigned char)p->text[p->pos++] : EOF;
    }
    if (c == EOF) break;
    if (i < num - 1) {
      str[i++] = (char)c;
    } else if (c != '\n' && c != '\r') {
      p->too_long = 1;
    }
    if (c == '\n') break;
  }
  if (i == 0 && c == EOF) return NULL;
  str[i] = '\0';
  p->line++;
  return str;
}

static int kv__parse_any(kv__parse *p, kv_config **out) {
  /* Debian's libinih takes its limits at run time; with the heap buffer the reader is handed
   * ini_initial_alloc bytes (no realloc), so lines up to 4000 bytes fit. */
  ini_use_stack = false;
  ini_max_line = 4003;
  ini_initial_alloc = 4003;
  ini_allow_realloc = false;
  ini_allow_multiline = false;
  ini_stop_on_first_error = true;
  p->cfg = kv_config_new();
  if (!p->cfg) return kv_error_set(p->err, KV_ENOMEM, "%s: out of memory", p->name);
  int r = ini_parse_stream(kv__reader, p, kv__handler, p);
  if (!p->rc && p->too_long) {
    p->rc = kv_error_set(p->err, KV_EFORMAT, "%s:%d: line too long (limit 4000 bytes)", p->name,
                         p->line);
  }
  if (!p->rc && r > 0) {
    p->rc = kv_error_set(p->err, KV_EFORMAT,
                         "%s:%d: syntax error (expected [section], key = value or a comment)",
                         p->name, r);
  } else if (!p->rc && r < 0) {
    p->rc = kv_error_set(p->err, KV_ENOMEM, "%s: parser could not allocate memory", p->name);
  }
  if (p->rc) {
    kv_config_free(p->cfg);
    return p->rc;
  }
  *out = p->cfg;
  return 0;
}

int kv_config_load(const char *path, kv_config **out, kv_error *err) {
  FILE *f = fopen(path, "r");
  if (!f) return kv_error_set(err, KV_EIO, "%s: cannot open config: %s", path, strerror(errno));
  kv_fs_note_input(path);
  kv__parse p = {.name = path, .file = f, .err = err};
  int rc = kv__parse_any(&p, out);
  fclose(f);
  return rc;
}

int kv_config_parse(const char *text, const char *name, kv_config **out, kv_error *err) {
  kv__parse p = {.name = name, .text = text, .err = err};
  return kv__parse_any(&p, out);
}

int kv_config_override(kv_config *cfg, const char *a, kv_error *err) {
  const char *dot = strchr(a, '.');
  const char *eq = strchr(a, '=');
  if (!dot || !eq || dot > eq || dot == a || eq == dot + 1) {
    return kv_error_set(err, KV_EINVAL, "override '%s': expected section.key=value", a);
  }
  char sec[128], key[128];
  size_t ls = (size_t)(dot - a), lk = (size_t)(eq - dot - 1);
  if (ls >= sizeof sec || lk >= sizeof key) {
    return kv_error_set(err, KV_EINVAL, "override '%s': name too long", a);
  }
  memcpy(sec, a, ls);
  sec[ls] = '\0';
  memcpy(key, dot + 1, lk);
  key[lk] = '\0';
  if (kv_config_set(cfg, sec, key, eq + 1, "<command line>")) {
    return kv_error_set(err, KV_ENOMEM, "out of memory");
  }
  return 0;
}

const char *kv_config_get(const kv_config *cfg, const char *section, const char *key) {
  kv__entry *e = kv__find(cfg, section, key);
  if (!e) return NULL;
  e->used = 1;
  return e->value;
}

const char *kv_config_where(const kv_config *cfg, const char *section, const char *key) {
  kv__entry *e = kv__find(cfg, section, key);
  return e ? e->where : "<default>";
}

int kv_config_int(const kv_config *cfg, const char *sec, const char *key, int64_t def,
                  int64_t lo, int64_t hi, int64_t *out, kv_error *err) {
  const char *v = kv_config_get(cfg, sec, key);
  if (!v) {
    *out = def;
    return 0;
  }
  char *end;
  errno = 0;
  long long x = strtoll(v, &end, 0);
  while (*end && isspace((unsigned char)*end)) end++;
  /* Accept a float written without fraction in scientific notation ("1e6"). */
  if (*end && end != v) {
    char *e2;
    double d = strtod(v, &e2);
    while (*e2 && isspace((unsigned char)*e2)) e2++;
    if (!*e2 && d == floor(d) && fabs(d) < 9.2e18) {
      x = (long long)d;
      end = e2;
    }
  }
  if (end == v || *end || errno == ERANGE) {
    return kv_error_set(err, KV_EINVAL, "%s: [%s] %s = '%s' is not an integer",
                        kv_config_where(cfg, sec, key), sec, key, v);
  }
  if (x < lo || x > hi) {
    return kv_error_set(err, KV_ERANGE, "%s: [%s] %s = %lld is outside [%lld, %lld]",
                        kv_config_where(cfg, sec, key), sec, key, x, (long long)lo,
                        (long long)hi);
  }
  *out = x;
  return 0;
}

int kv_config_double(const kv_config *cfg, const char *sec, const char *key, double def,
                     double lo, double hi, double *out, kv_error *err) {
  const char *v = kv_config_get(cfg, sec, key);
  if (!v) {
    *out = def;
    return 0;
  }
  char *end;
  errno = 0;
  double x = strtod(v, &end);
  while (*end && isspace((unsigned char)*end)) end++;
  if (end == v || *end || errno == ERANGE || !isfinite(x)) {
    return kv_error_set(err, KV_EINVAL, "%s: [%s] %s = '%s' is not a finite number",
                        kv_config_where(cfg, sec, key), sec, key, v);
  }
  if (x < lo || x > hi) {
    return kv_error_set(err, KV_ERANGE, "%s: [%s] %s = %g is outside [%g, %g]",
                        kv_config_where(cfg, sec, key), sec, key, x, lo, hi);
  }
  *out = x;
  return 0;
}

int kv_config_bool(const kv_config *cfg, const char *sec, const char *key, int def, int *out,
                   kv_error *err) {
  const char *v = kv_config_get(cfg, sec, key);
  if (!v) {
    *out = def;
    return 0;
  }
  static const char *yes[] = {"1", "true", "yes", "on"};
  static const char *no[] = {"0", "false", "no", "off"};
  for (int i = 0; i < 4; i++) {
    if (strcasecmp(v, yes[i]) == 0) {
      *out = 1;
      return 0;
    }
    if (strcasecmp(v, no[i]) == 0) {
      *out = 0;
      return 0;
    }
  }
  return kv_error_set(err, KV_EINVAL, "%s: [%s] %s = '%s' is not a boolean (true/false)",
                      kv_config_where(cfg, sec, key), sec, key, v);
}

int kv_config_str(const kv_config *cfg, const char *sec, const char *key, const char *def,
                  const char **out, kv_error *err) {
  (void)err;
  const char *v = kv_config_get(cfg, sec, key);
  *out = v ? v : def;
  return 0;
}

int kv_config_enum(const kv_config *cfg, const char *sec, const char *key, int def,
                   const char *const *names, int *out, kv_error *err) {
  const char *v = kv_config_get(cfg, sec, key);
  if (!v) {
    *out = def;
    return 0;
  }
  char list[512] = "";
  size_t len = 0;
  for (int i = 0; names[i]; i++) {
    if (strcasecmp(v, names[i]) == 0) {
      *out = i;
      return 0;
    }
    int n = snprintf(list + len, sizeof list - len, "%s%s", i ? ", " : "", names[i]);
    if (n > 0 && (size_t)n < sizeof list - len) len += (size_t)n;
  }
  return kv_error_set(err, KV_EINVAL, "%s: [%s] %s = '%s' is not one of: %s",
                      kv_config_where(cfg, sec, key), sec, key, v, list);
}

int kv_config_int_req(const kv_config *cfg, const char *sec, const char *key, int64_t lo,
                      int64_t hi, int64_t *out, kv_error *err) {
  if (!kv__find(cfg, sec, key)) {
    return kv_error_set(err, KV_ENOENT, "config: [%s] %s is required", sec, key);
  }
  return kv_config_int(cfg, sec, key, 0, lo, hi, out, err);
}

int kv_config_double_req(const kv_config *cfg, const char *sec, const char *key, double lo,
                         double hi, double *out, kv_error *err) {
  if (!kv__find(cfg, sec, key)) {
    return kv_error_set(err, KV_ENOENT, "config: [%s] %s is required", sec, key);
  }
  return kv_config_double(cfg, sec, key, 0, lo, hi, out, err);
}

int kv_config_f64_table(const kv_config *cfg, const char *sec, const kv_config_f64_key *keys,
                        size_t n, kv_error *err) {
  for (size_t i = 0; i < n; i++) {
    int rc = kv_config_double(cfg, sec, keys[i].key, *keys[i].dst, keys[i].lo, keys[i].hi,
                              keys[i].dst, err);
    if (rc) return rc;
  }
  return 0;
}

int kv_config_i64_table(const kv_config *cfg, const char *sec, const kv_config_i64_key *keys,
                        size_t n, kv_error *err) {
  for (size_t i = 0; i < n; i++) {
    int rc = kv_config_int(cfg, sec, keys[i].key, *keys[i].dst, keys[i].lo, keys[i].hi,
                           keys[i].dst, err);
    if (rc) return rc;
  }
  return 0;
}

int kv_config_list(const char *value, char **items, int cap, char *store, size_t store_cap) {
  size_t n = strlen(value);
  if (n + 1 > store_cap) return KV_ERANGE;
  memcpy(store, value, n + 1);
  int count = 0;
  char *p = store;
  for (;;) {
    char *comma = strchr(p, ',');
    if (comma) *comma = '\0';
    while (*p && isspace((unsigned char)*p)) p++;
    char *end = p + strlen(p);
    while (end > p && isspace((unsigned char)end[-1])) *--end = '\0';
    if (count == cap) return KV_ERANGE;
    items[count++] = p;
    if (!comma) break;
    p = comma + 1;
  }
  return count;
}

int kv_config_count(const kv_config *cfg) { return cfg->n; }

void kv_config_entry(const kv_config *cfg, int i, const char **section, const char **key,
                     const char **value) {
  *section = cfg->e[i].section;
  *key = cfg->e[i].key;
  *value = cfg->e[i].value;
}

int kv_config_expand(kv_config *cfg, const char *placeholder, const char *value, kv_error *err) {
  size_t pl = strlen(placeholder), vl = strlen(value);
  if (pl == 0) return 0;
  for (int i = 0; i < cfg->n; i++) {
    kv__entry *e = &cfg->e[i];
    if (!strstr(e->value, placeholder)) continue;
    char out[4001];
    size_t len = 0;
    for (const char *q = e->value; *q;) {
      int hit = strncmp(q, placeholder, pl) == 0;
      size_t n = hit ? vl : 1;
      if (len + n >= sizeof out) {
        return kv_error_set(err, KV_ERANGE, "%s: [%s] %s: value too long after expanding %s",
                            e->where, e->section, e->key, placeholder);
      }
      memcpy(out + len, hit ? value : q, n);
      len += n;
      q += hit ? pl : 1;
    }
    out[len] = '\0';
    char *nv = kv__strdup(out);
    if (!nv) return kv_error_set(err, KV_ENOMEM, "out of memory");
    free(e->value);
    e->value = nv;
  }
  return 0;
}

int kv_config_check_unused(const kv_config *cfg, kv_error *err) {
  char msg[700] = "";
  size_t len = 0;
  int bad = 0;
  for (int i = 0; i < cfg->n; i++) {
    if (cfg->e[i].used) continue;
    if (bad < 4) {
      int n = snprintf(msg + len, sizeof msg - len, "%s%s: [%s] %s", bad ? "; " : "",
                       cfg->e[i].where, cfg->e[i].section, cfg->e[i].key);
      if (n > 0 && (size_t)n < sizeof msg - len) len += (size_t)n;
    }
    bad++;
  }
  if (!bad) return 0;
  return kv_error_set(err, KV_EINVAL, "unknown config key%s (misspelt?): %s%s", bad > 1 ? "s" : "",
                      msg, bad > 4 ? "; ..." : "");
}

int kv_config_write(const kv_config *cfg, FILE *f) {
  /* Sections in order of first appearance; keys in insertion order within each. */
  for (int i = 0; i < cfg->n; i++) {
    int seen = 0;
    for (int j = 0; j < i; j++) {
      if (strcmp(cfg->e[j].section, cfg->e[i].section) == 0) {
        seen = 1;
        break;
      }
    }
    if (seen) continue;
    if (fprintf(f, "%s[%s]\n", i ? "\n" : "", cfg->e[i].section) < 0) return KV_EIO;
    for (int j = i; j < cfg->n; j++) {
      if (strcmp(cfg->e[j].section, cfg->e[i].section) != 0) continue;
      if (fprintf(f, "%s = %s\n", cfg->e[j].key, cfg->e[j].value) < 0) return KV_EIO;
    }
  }
  return 0;
}

char *kv_config_to_string(const kv_config *cfg) {
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  if (!f) return NULL;
  kv_config_write(cfg, f);
  if (fclose(f) != 0) {
    free(buf);
    return NULL;
  }
  return buf;
}

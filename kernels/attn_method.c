/* attn_method.c — the registry of decode-attention methods, their defaults, checks, specs and
 * labels (attn_method.h).
 *
 * Adding a method touches exactly:
 *   1. this registry: its kind in attn_method_kind (attn_method.h; and a field in attn_method
 *      if it has a parameter no method has yet), a row in attn__registry below (name, cost class,
 *      positional parameter, options, CPU function, CUDA entry point or NULL), and its
 *      defaults/checks where the switch statements below need one;
 *   2. its module: the CPU function, kernels/attn_<name>.c (declared at the end of attn_method.h);
 *   3. its test: its specs in the spec round trip and the sparse-vs-gathered-dense cases of
 *      tests/kernels/test_attn.c.
 * Nothing else: tools parse methods through attn_method_parse, the attention profile stores the
 * spec and the cost class (kernels/attn_profile.c), the simulator prices by cost class
 * (sim/sim_attn_profile.h), Python binds through specs (traces/record/kvattn.py). A new cost
 * class would need the simulator's pricing too (docs/architecture.md).
 */
#include "attn_method.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define ATTN__FORCED (ATTN_OPT_BS | ATTN_OPT_SINK | ATTN_OPT_RECENT)

/* Indexed by attn_method_kind. */
static const attn_method_desc attn__registry[ATTN_METHOD_COUNT] = {
    {"dense", ATTN_DENSE, ATTN_COST_DENSE, NULL, ATTN_OPT_BS, attn__cpu_dense, "kvc_dense",
     "dense: every key"},
    {"topk", ATTN_TOPK, ATTN_COST_FIXED, "tokens", ATTN__FORCED | ATTN_OPT_RANK | ATTN_OPT_COMBINE,
     attn__cpu_topk, "kvc_topk", "topk:<tokens>: the best blocks by score (Quest)"},
    {"psa", ATTN_PSA, ATTN_COST_PROGRESSIVE, "epsilon",
     ATTN__FORCED | ATTN_OPT_GROUP | ATTN_OPT_CAP | ATTN_OPT_RANK | ATTN_OPT_EST | ATTN_OPT_STOP,
     attn__cpu_progressive, "kvc_psa", "psa:<epsilon>: progressive sparse attention"},
    {"oracle", ATTN_ORACLE, ATTN_COST_PROGRESSIVE, "epsilon",
     ATTN__FORCED | ATTN_OPT_GROUP | ATTN_OPT_CAP, attn__cpu_progressive, NULL,
     "oracle:<epsilon>: PSA with the true block masses (an upper bound)"},
};

const char *const attn_cost_class_names[] = {"dense", "fixed", "progressive", NULL};
static const char *const attn__est_names[] = {"bound", "mean", "lognormal", NULL};
static const char *const attn__rank_names[] = {"quest", "mean", NULL};
static const char *const attn__combine_names[] = {"max", "sum", NULL};
static const char *const attn__gqa_names[] = {"group", "head", NULL};

const attn_method_desc *attn_method_desc_of(attn_method_kind kind) {
  if ((int)kind < 0 || kind >= ATTN_METHOD_COUNT) return NULL;
  return &attn__registry[kind];
}

const attn_method_desc *attn_method_find(const char *name) {
  for (int i = 0; i < ATTN_METHOD_COUNT; i++) {
    if (strcasecmp(name, attn__registry[i].name) == 0) return &attn__registry[i];
  }
  return NULL;
}

int attn_method_count(void) { return ATTN_METHOD_COUNT; }

void attn_method_defaults(attn_method *m, attn_method_kind kind) {
  memset(m, 0, sizeof *m);
  m->kind = kind;
  m->block_size = 16;
  m->keep_sink_blocks = 1;
  m->keep_recent_blocks = 1;
  m->token_budget = 1024;
  m->topk_rank = ATTN_RANK_QUEST;
  m->topk_combine = ATTN_GQA_MAX;
  m->epsilon = 0.95;
  m->group_blocks = 4;
  m->psa_rank = ATTN_RANK_MEAN;
  m->psa_estimate = ATTN_EST_MEAN;
  m->max_tokens = 0;
  m->psa_min_groups = 0;
  m->psa_selfcal = 0;
  m->psa_ucb = 1.0;
  m->psa_gqa = ATTN_PSA_GQA_GROUP;
}

int attn_method_check(const attn_method *m, kv_error *err) {
  const attn_method_desc *d = attn_method_desc_of(m->kind);
  if (!d) return kv_error_set(err, KV_EINVAL, "method: unknown kind %d", (int)m->kind);
  if (m->block_size < 1 || m->block_size > 4096) {
    return kv_error_set(err, KV_EINVAL, "method: block_size %d outside [1, 4096]", m->block_size);
  }
  if (m->keep_sink_blocks < 0 || m->keep_recent_blocks < 0) {
    return kv_error_set(err, KV_EINVAL, "method: negative sink/recent block count");
  }
  if (d->cost == ATTN_COST_FIXED && m->token_budget < m->block_size) {
    return kv_error_set(err, KV_EINVAL, "method: top-k token budget %lld is below one block (%d)",
                        (long long)m->token_budget, m->block_size);
  }
  if (d->cost == ATTN_COST_PROGRESSIVE && !(m->epsilon > 0.0 && m->epsilon <= 1.0)) {
    return kv_error_set(err, KV_EINVAL, "method: epsilon %g outside (0, 1]", m->epsilon);
  }
  if (d->cost == ATTN_COST_PROGRESSIVE && m->group_blocks < 1) {
    return kv_error_set(err, KV_EINVAL, "method: group_blocks %d must be >= 1", m->group_blocks);
  }
  if (m->max_tokens < 0) return kv_error_set(err, KV_EINVAL, "method: negative max_tokens");
  if (m->psa_min_groups < 0) return kv_error_set(err, KV_EINVAL, "method: negative minrank");
  if (!(m->psa_ucb > 0.0 && m->psa_ucb < 1e6)) {
    return kv_error_set(err, KV_EINVAL, "method: ucb %g outside (0, 1e6)", m->psa_ucb);
  }
  if (m->psa_gqa != ATTN_PSA_GQA_GROUP && m->psa_gqa != ATTN_PSA_GQA_HEAD) {
    return kv_error_set(err, KV_EINVAL, "method: unknown gqa mode %d", (int)m->psa_gqa);
  }
  return 0;
}

/* ---- parsing ------------------------------------------------------------------------------- */

static int attn__parse_int(const char *v, int64_t lo, int64_t hi, int64_t *out) {
  char *end;
  long long x = strtoll(v, &end, 10);
  if (end == v || *end || x < lo || x > hi) return -1;
  *out = x;
  return 0;
}

static int attn__name_index(const char *v, const char *const *names) {
  for (int i = 0; names[i]; i++) {
    if (strcasecmp(v, names[i]) == 0) return i;
  }
  return -1;
}

/* A bare word: 1 when it named a value of m's method, 0 when the method has no such word. */
static int attn__parse_word(const char *f, attn_method *m) {
  int k;
  if (m->kind == ATTN_PSA && (k = attn__name_index(f, attn__est_names)) >= 0) {
    m->psa_estimate = (attn_estimate)k;
    return 1;
  }
  if (m->kind == ATTN_TOPK && (k = attn__name_index(f, attn__rank_names)) >= 0) {
    m->topk_rank = (attn_rank)k;
    return 1;
  }
  if (m->kind == ATTN_TOPK && (k = attn__name_index(f, attn__combine_names)) >= 0) {
    m->topk_combine = (attn_gqa_combine)k;
    return 1;
  }
  if (m->kind == ATTN_PSA && !strcasecmp(f, "selfcal")) {
    m->psa_selfcal = 1;
    return 1;
  }
  return 0;
}

/* key=value. Returns 0, or -1 for a bad value, or -2 for a key the method does not take. */
static int attn__parse_option(const char *key, const char *val, unsigned allowed,
                              attn_method *m) {
  int64_t x = 0;
  int k;
  struct {
    const char *key;
    unsigned opt;
    int64_t lo, hi;
  } ints[] = {{"bs", ATTN_OPT_BS, 1, 4096},         {"sink", ATTN_OPT_SINK, 0, 1 << 20},
              {"recent", ATTN_OPT_RECENT, 0, 1 << 20}, {"group", ATTN_OPT_GROUP, 1, 1 << 20},
              {"cap", ATTN_OPT_CAP, 0, INT64_MAX / 2},  {"minrank", ATTN_OPT_STOP, 0, 1 << 20}};
  for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++) {
    if (strcmp(key, ints[i].key) != 0) continue;
    if (!(allowed & ints[i].opt)) return -2;
    if (attn__parse_int(val, ints[i].lo, ints[i].hi, &x)) return -1;
    switch (ints[i].opt) {
      case ATTN_OPT_BS: m->block_size = (int)x; break;
      case ATTN_OPT_SINK: m->keep_sink_blocks = (int)x; break;
      case ATTN_OPT_RECENT: m->keep_recent_blocks = (int)x; break;
      case ATTN_OPT_GROUP: m->group_blocks = (int)x; break;
      case ATTN_OPT_STOP: m->psa_min_groups = (int)x; break;
      default: m->max_tokens = x; break;
    }
    return 0;
  }
  if (!strcmp(key, "ucb")) {
    if (!(allowed & ATTN_OPT_STOP)) return -2;
    char *end = NULL;
    double u = strtod(val, &end);
    if (end == val || *end || !(u > 0.0 && u < 1e6)) return -1;
    m->psa_ucb = u;
    return 0;
  }
  if (!strcmp(key, "gqa")) {
    if (!(allowed & ATTN_OPT_STOP)) return -2;
    if ((k = attn__name_index(val, attn__gqa_names)) < 0) return -1;
    m->psa_gqa = (attn_psa_gqa)k;
    return 0;
  }
  if (!strcmp(key, "rank")) {
    if (!(allowed & ATTN_OPT_RANK)) return -2;
    if ((k = attn__name_index(val, attn__rank_names)) < 0) return -1;
    if (m->kind == ATTN_TOPK) m->topk_rank = (attn_rank)k;
    else m->psa_rank = (attn_rank)k;
    return 0;
  }
  if (!strcmp(key, "est")) {
    if (!(allowed & ATTN_OPT_EST)) return -2;
    if ((k = attn__name_index(val, attn__est_names)) < 0) return -1;
    m->psa_estimate = (attn_estimate)k;
    return 0;
  }
  return -2;
}

/* The positional parameter of a method (fields[1]); 0 or an error naming the spec. */
static int attn__parse_param(const attn_method_desc *d, const char *s, char **fields, int nf,
                             attn_method *m, kv_error *err) {
  if (!d->param) return 0;
  if (d->cost == ATTN_COST_FIXED) {
    int64_t b;
    if (nf < 2 || attn__parse_int(fields[1], 1, INT64_MAX / 2, &b)) {
      return kv_error_set(err, KV_EINVAL, "method '%s': %s needs a token budget (%s:1024)", s,
                          d->name, d->name);
    }
    m->token_budget = b;
    return 0;
  }
  char *end = NULL;
  double e = nf >= 2 ? strtod(fields[1], &end) : NAN;
  if (nf < 2 || *end || !(e > 0 && e <= 1)) {
    return kv_error_set(err, KV_EINVAL, "method '%s': needs an epsilon in (0, 1] (%s:0.95)", s,
                        d->name);
  }
  m->epsilon = e;
  return 0;
}

int attn_method_parse(const char *s, attn_method *m, kv_error *err) {
  char buf[256];
  if (strlen(s) >= sizeof buf) return kv_error_set(err, KV_EINVAL, "method '%s': too long", s);
  memcpy(buf, s, strlen(s) + 1);
  char *fields[16];
  int nf = 0;
  char *save = NULL;
  for (char *p = strtok_r(buf, ":", &save); p && nf < 16; p = strtok_r(NULL, ":", &save)) {
    fields[nf++] = p;
  }
  if (nf == 0) return kv_error_set(err, KV_EINVAL, "method '%s': empty", s);
  const attn_method_desc *d = attn_method_find(fields[0]);
  if (!d) {
    return kv_error_set(err, KV_EINVAL, "method '%s': unknown method '%s' (dense, topk:<tokens>, "
                        "psa:<epsilon>, oracle:<epsilon>)", s, fields[0]);
  }
  attn_method_defaults(m, d->kind);
  int rc = attn__parse_param(d, s, fields, nf, m, err);
  if (rc) return rc;
  for (int i = d->param ? 2 : 1; i < nf; i++) {
    char *f = fields[i];
    char *eq = strchr(f, '=');
    if (!eq) {
      if (attn__parse_word(f, m)) continue;
      return kv_error_set(err, KV_EINVAL, "method '%s': unknown option '%s'", s, f);
    }
    *eq = '\0';
    int bad = attn__parse_option(f, eq + 1, d->options, m);
    if (bad == -2) {
      return kv_error_set(err, KV_EINVAL, "method '%s': %s takes no option '%s'", s, d->name, f);
    }
    if (bad) return kv_error_set(err, KV_EINVAL, "method '%s': bad option %s=%s", s, f, eq + 1);
  }
  return attn_method_check(m, err);
}

/* ---- canonical spec, equality, label ---------------------------------------------------------- */

/* Shortest %g form that reads back as exactly x. */
static void attn__fmt_double(double x, char *buf, size_t cap) {
  for (int prec = 1; prec <= 17; prec++) {
    snprintf(buf, cap, "%.*g", prec, x);
    if (strtod(buf, NULL) == x) return;
  }
}

int attn_method_spec(const attn_method *m, char *buf, int cap) {
  const attn_method_desc *d = attn_method_desc_of(m->kind);
  if (cap < 1) return KV_ERANGE;
  buf[0] = '\0';
  if (!d) return KV_EINVAL;
  attn_method def;
  attn_method_defaults(&def, m->kind);
  char num[64];
  int n = snprintf(buf, (size_t)cap, "%s", d->name);
#define ATTN__PUT(...)                                                              \
  do {                                                                              \
    if (n >= 0 && n < cap) n += snprintf(buf + n, (size_t)(cap - n), __VA_ARGS__); \
  } while (0)
  if (d->param && d->cost == ATTN_COST_FIXED) ATTN__PUT(":%lld", (long long)m->token_budget);
  if (d->param && d->cost == ATTN_COST_PROGRESSIVE) {
    attn__fmt_double(m->epsilon, num, sizeof num);
    ATTN__PUT(":%s", num);
  }
  /* bare words first, then key=value options, each only where the method reads the field */
  unsigned o = d->options;
  if (m->kind == ATTN_TOPK && m->topk_rank != def.topk_rank) {
    ATTN__PUT(":%s", attn__rank_names[m->topk_rank]);
  }
  if ((o & ATTN_OPT_COMBINE) && m->topk_combine != def.topk_combine) {
    ATTN__PUT(":%s", attn__combine_names[m->topk_combine]);
  }
  if ((o & ATTN_OPT_EST) && m->psa_estimate != def.psa_estimate) {
    ATTN__PUT(":%s", attn__est_names[m->psa_estimate]);
  }
  if ((o & ATTN_OPT_STOP) && m->psa_selfcal) ATTN__PUT(":selfcal");
  if ((o & ATTN_OPT_RANK) && m->kind != ATTN_TOPK && m->psa_rank != def.psa_rank) {
    ATTN__PUT(":rank=%s", attn__rank_names[m->psa_rank]);
  }
  if ((o & ATTN_OPT_BS) && m->block_size != def.block_size) ATTN__PUT(":bs=%d", m->block_size);
  if ((o & ATTN_OPT_SINK) && m->keep_sink_blocks != def.keep_sink_blocks) {
    ATTN__PUT(":sink=%d", m->keep_sink_blocks);
  }
  if ((o & ATTN_OPT_RECENT) && m->keep_recent_blocks != def.keep_recent_blocks) {
    ATTN__PUT(":recent=%d", m->keep_recent_blocks);
  }
  if ((o & ATTN_OPT_GROUP) && m->group_blocks != def.group_blocks) {
    ATTN__PUT(":group=%d", m->group_blocks);
  }
  if ((o & ATTN_OPT_CAP) && m->max_tokens != def.max_tokens) {
    ATTN__PUT(":cap=%lld", (long long)m->max_tokens);
  }
  if ((o & ATTN_OPT_STOP) && m->psa_min_groups != def.psa_min_groups) {
    ATTN__PUT(":minrank=%d", m->psa_min_groups);
  }
  if ((o & ATTN_OPT_STOP) && m->psa_ucb != def.psa_ucb) {
    attn__fmt_double(m->psa_ucb, num, sizeof num);
    ATTN__PUT(":ucb=%s", num);
  }
  if ((o & ATTN_OPT_STOP) && m->psa_gqa != def.psa_gqa) {
    ATTN__PUT(":gqa=%s", attn__gqa_names[m->psa_gqa]);
  }
#undef ATTN__PUT
  return n >= 0 && n < cap ? n : KV_ERANGE;
}

int attn_method_equal(const attn_method *a, const attn_method *b) {
  if (a->kind != b->kind) return 0;
  char sa[160], sb[160];
  return attn_method_spec(a, sa, sizeof sa) >= 0 && attn_method_spec(b, sb, sizeof sb) >= 0 &&
         strcmp(sa, sb) == 0;
}

void attn_method_label(const attn_method *m, char *buf, int cap) {
  attn_method d;
  attn_method_defaults(&d, m->kind);
  int n = 0;
  switch (m->kind) {
    case ATTN_TOPK:
      n = snprintf(buf, (size_t)cap, "topk-%lld%s%s", (long long)m->token_budget,
                   m->topk_rank != d.topk_rank ? "-mean" : "",
                   m->topk_combine != d.topk_combine ? "-sum" : "");
      break;
    case ATTN_PSA:
      n = snprintf(buf, (size_t)cap, "psa-%g-%s%s", m->epsilon, attn__est_names[m->psa_estimate],
                   m->psa_rank != d.psa_rank ? "-rquest" : "");
      break;
    case ATTN_ORACLE: n = snprintf(buf, (size_t)cap, "oracle-%g", m->epsilon); break;
    default: n = snprintf(buf, (size_t)cap, "dense"); break;
  }
  const unsigned o = attn_method_desc_of(m->kind) ? attn_method_desc_of(m->kind)->options : 0;
  struct {
    unsigned opt;
    const char *fmt;
    long long v, def;
  } suffix[] = {
      {ATTN_OPT_BS, "-bs%lld", m->block_size, d.block_size},
      {ATTN_OPT_GROUP, "-g%lld", m->group_blocks, d.group_blocks},
      {ATTN_OPT_SINK, "-sink%lld", m->keep_sink_blocks, d.keep_sink_blocks},
      {ATTN_OPT_RECENT, "-recent%lld", m->keep_recent_blocks, d.keep_recent_blocks},
      {ATTN_OPT_CAP, "-cap%lld", (long long)m->max_tokens, (long long)d.max_tokens},
  };
  for (size_t i = 0; i < sizeof suffix / sizeof suffix[0]; i++) {
    if (n < 0 || n >= cap) return;
    if (!(o & suffix[i].opt) || suffix[i].v == suffix[i].def) continue;
    n += snprintf(buf + n, (size_t)(cap - n), suffix[i].fmt, suffix[i].v);
  }
  if (!(o & ATTN_OPT_STOP)) return;
  if (n >= 0 && n < cap && m->psa_selfcal) n += snprintf(buf + n, (size_t)(cap - n), "-selfcal");
  if (n >= 0 && n < cap && m->psa_min_groups != d.psa_min_groups) {
    n += snprintf(buf + n, (size_t)(cap - n), "-min%d", m->psa_min_groups);
  }
  if (n >= 0 && n < cap && m->psa_ucb != d.psa_ucb) {
    n += snprintf(buf + n, (size_t)(cap - n), "-ucb%g", m->psa_ucb);
  }
  if (n >= 0 && n < cap && m->psa_gqa != d.psa_gqa) {
    n += snprintf(buf + n, (size_t)(cap - n), "-gqahead");
  }
}

/* ---- what prices a method --------------------------------------------------------------------- */

attn_cost_class attn_method_cost_class(const attn_method *m) {
  const attn_method_desc *d = attn_method_desc_of(m->kind);
  return d ? d->cost : ATTN_COST_DENSE;
}

int attn_method_meta_vectors(const attn_method *m) {
  enum { MIN = 1, MAX = 2, MEAN = 4, VAR = 8 };
  int set = 0;
  if (m->kind == ATTN_TOPK) {
    set |= m->topk_rank == ATTN_RANK_QUEST ? (MIN | MAX) : MEAN;
  } else if (m->kind == ATTN_PSA) {
    set |= m->psa_rank == ATTN_RANK_QUEST ? (MIN | MAX) : MEAN;
    switch (m->psa_estimate) {
      case ATTN_EST_BOUND: set |= MIN | MAX; break;
      case ATTN_EST_MEAN: set |= MEAN; break;
      case ATTN_EST_LOGNORMAL: set |= MEAN | VAR; break;
    }
  }
  /* dense reads no metadata; the oracle is hypothetical and is charged none */
  return ((set & MIN) != 0) + ((set & MAX) != 0) + ((set & MEAN) != 0) + ((set & VAR) != 0);
}

int64_t attn_method_full_upto(const attn_method *m) {
  switch (attn_method_cost_class(m)) {
    case ATTN_COST_FIXED: return m->token_budget;
    case ATTN_COST_PROGRESSIVE: return m->epsilon >= 1.0 ? INT64_MAX : 0;
    default: return INT64_MAX;
  }
}

/* ---- accessors for bindings ------------------------------------------------------------------- */

int attn_method_sizeof(void) { return (int)sizeof(attn_method); }

const char *attn_method_name(const attn_method *m) {
  const attn_method_desc *d = attn_method_desc_of(m->kind);
  return d ? d->name : "?";
}

int attn_method_block_size(const attn_method *m) { return m->block_size; }

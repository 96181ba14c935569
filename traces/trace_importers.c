/* trace_importers.c — the registry of trace importers (trace_importers.h): one adapter per
 * importer (options into its opts struct, its stream reader, its report line) and the table.
 * How to add one: trace_importers.h. */
#include "trace_importers.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "import_azure.h"
#include "import_burstgpt.h"
#include "import_mooncake.h"
#include "import_sharegpt.h"
#include "kv_fs.h"
#include "tokenizer.h"
#include "trace_gen.h"

/* ---- option values ------------------------------------------------------------------------- */

static int imp__int(const char *name, const char *v, long long lo, long long hi, long long *out,
                    kv_error *err) {
  char *end;
  errno = 0;
  long long x = v ? strtoll(v, &end, 10) : 0;
  if (!v || errno || *end || end == v || x < lo || x > hi) {
    return kv_error_set(err, KV_EINVAL, "--%s: '%s' is not an integer in [%lld, %lld]", name,
                        v ? v : "", lo, hi);
  }
  *out = x;
  return 0;
}

static int imp__dbl(const char *name, const char *v, double lo, double hi, double *out,
                    kv_error *err) {
  char *end;
  errno = 0;
  double x = v ? strtod(v, &end) : 0;
  if (!v || errno || *end || end == v || !(x >= lo && x <= hi)) {
    return kv_error_set(err, KV_EINVAL, "--%s: '%s' is not a number in [%g, %g]", name,
                        v ? v : "", lo, hi);
  }
  *out = x;
  return 0;
}

/* One of `names` ("a|b|c"): its index, or KV_EINVAL naming them. */
static int imp__choice(const char *name, const char *v, const char *const *names, int *out,
                       kv_error *err) {
  for (int i = 0; v && names[i]; i++) {
    if (!strcmp(v, names[i])) {
      *out = i;
      return 0;
    }
  }
  char list[200] = "";
  for (int i = 0; names[i]; i++) {
    size_t k = strlen(list);
    snprintf(list + k, sizeof list - k, "%s%s", i ? (names[i + 1] ? ", " : " or ") : "", names[i]);
  }
  return kv_error_set(err, KV_EINVAL, "--%s takes %s", name, list);
}

static const trace_import_stats *imp__plain_stats(const void *st) { return st; }
static void imp__no_report(const void *opts, const void *st, const trace *t, char *buf,
                           size_t cap) {
  (void)opts;
  (void)st;
  (void)t;
  if (cap) buf[0] = '\0';
}

/* ---- azure: no options of its own ------------------------------------------------------------ */

static void imp__azure_init(void *o) { trace_import_opts_init(o); }
static int imp__azure_set(void *o, const char *name, const char *v, kv_error *err) {
  (void)o;
  (void)v;
  return kv_error_set(err, KV_ENOENT, "--%s: not an option of this importer", name);
}
static trace_import_opts *imp__azure_base(void *o) { return o; }
static int imp__azure_read(FILE *f, const char *name, const void *o, trace *t, void *st,
                           kv_error *err) {
  return trace_import_azure_stream(f, name, o, t, st, err);
}

/* ---- burstgpt -------------------------------------------------------------------------------- */

static const trace_importer_opt imp__burstgpt_opts[] = {
    {"history", "none|prev", "history of a session's later turns: none, or the previous turn"},
    {"log", "all|conv|api", "keep rows of this Log Type"},
    {"model", "NAME", "keep rows of this Model"},
    {"drop-failed", NULL, "drop rows with 0 response tokens"},
    {NULL, NULL, NULL}};

static void imp__burstgpt_init(void *o) { trace_burstgpt_opts_init(o); }
static int imp__burstgpt_set(void *opts, const char *name, const char *v, kv_error *err) {
  static const char *const history[] = {"none", "prev", NULL}, *const log[] = {"all", "conv", "api", NULL};
  trace_burstgpt_opts *o = opts;
  int k = 0, rc = 0;
  if (!strcmp(name, "history")) {
    rc = imp__choice(name, v, history, &k, err);
    o->history = (trace_burstgpt_history)k;
  } else if (!strcmp(name, "log")) {
    rc = imp__choice(name, v, log, &k, err);
    o->log_type = (trace_burstgpt_log)k;
  } else if (!strcmp(name, "model")) {
    o->model = v;
  } else if (!strcmp(name, "drop-failed")) {
    o->drop_failed = 1;
  } else {
    rc = kv_error_set(err, KV_ENOENT, "--%s: not an option of this importer", name);
  }
  return rc;
}
static trace_import_opts *imp__burstgpt_base(void *o) { return &((trace_burstgpt_opts *)o)->base; }
static int imp__burstgpt_read(FILE *f, const char *name, const void *o, trace *t, void *st,
                              kv_error *err) {
  return trace_import_burstgpt_stream(f, name, o, t, st, err);
}

/* ---- mooncake -------------------------------------------------------------------------------- */

static const trace_importer_opt imp__mooncake_opts[] = {
    {"block-tokens", "N", "tokens per hash block (512)"},
    {"min-shared-blocks", "N", "shared leading blocks that continue a session (2; 0: none)"},
    {NULL, NULL, NULL}};

static void imp__mooncake_init(void *o) { trace_mooncake_opts_init(o); }
static int imp__mooncake_set(void *opts, const char *name, const char *v, kv_error *err) {
  trace_mooncake_opts *o = opts;
  long long x = 0;
  int rc;
  if (!strcmp(name, "block-tokens")) {
    if (!(rc = imp__int(name, v, 1, 1 << 20, &x, err))) o->block_tokens = (int32_t)x;
  } else if (!strcmp(name, "min-shared-blocks")) {
    if (!(rc = imp__int(name, v, 0, 1 << 20, &x, err))) o->min_shared_blocks = (int32_t)x;
  } else {
    rc = kv_error_set(err, KV_ENOENT, "--%s: not an option of this importer", name);
  }
  return rc;
}
static trace_import_opts *imp__mooncake_base(void *o) { return &((trace_mooncake_opts *)o)->base; }
static const trace_import_stats *imp__mooncake_stats(const void *st) {
  return &((const trace_mooncake_stats *)st)->base;
}
static int imp__mooncake_read(FILE *f, const char *name, const void *o, trace *t, void *st,
                              kv_error *err) {
  return trace_import_mooncake_stream(f, name, o, t, st, err);
}
static void imp__mooncake_report(const void *opts, const void *stats, const trace *t, char *buf,
                                 size_t cap) {
  (void)opts;
  (void)t;
  const trace_mooncake_stats *s = stats;
  snprintf(buf, cap, "mooncake: %lld continuations (%lld branches), mean shared prefix %.1f "
           "blocks", (long long)s->continuations, (long long)s->branches,
           s->continuations ? (double)s->shared_blocks / (double)s->continuations : 0.0);
}

/* ---- sharegpt: a tokenizer loaded from files, roles, arrivals assigned after the import ----- */

typedef struct imp__sharegpt {
  trace_sharegpt_opts o;       /* the module's options (tok borrowed from here) */
  const char *tokpath, *enc, *mer;
  int approx_set;              /* --approx given: no tokenizer, not even KVLAB_TOKENIZER's */
  char tname[8500];
  double rate, think;          /* rate > 0: trace_gen_retime after the import */
  long long seed;
} imp__sharegpt;

static const trace_importer_opt imp__sharegpt_opts[] = {
    {"tokenizer", "PATH", "a BPE tokenizer: tokenizer.json, or a folder with it or with GPT-2's "
                          "encoder.json + vocab.bpe (default: $" TRACE_TOKENIZER_ENV ", else the "
                          "script-aware estimate)"},
    {"encoder", "F", "encoder.json (with --merges)"},
    {"merges", "F", "vocab.bpe (with --encoder)"},
    {"approx", "script|chars4|words", "token count without a tokenizer (default script)"},
    {"lead", "prompt|drop", "text before the first user message"},
    {"msg-overhead", "N", "tokens added per message"},
    {"role", "NAME=prompt|output|drop|reject", "the side of a role (repeatable; by default "
                                               "function_call/tool_call -> output, "
                                               "observation/tool/function -> prompt)"},
    {"no-tools", NULL, "the record's \"tools\" and \"system\" are not counted as a system prompt"},
    {"rate", "R", "assign Poisson session arrivals at R/s"},
    {"think-mean", "S", "mean think time with --rate (60)"},
    {"seed", "N", "seed of --rate"},
    {NULL, NULL, NULL}};

static void imp__sharegpt_init(void *opts) {
  imp__sharegpt *s = opts;
  memset(s, 0, sizeof *s);
  trace_sharegpt_opts_init(&s->o);
  s->think = 60;
  s->seed = 1;
}
static int imp__sharegpt_set(void *opts, const char *name, const char *v, kv_error *err) {
  static const char *const approx[] = {"script", "chars4", "words", NULL},
                           *const lead[] = {"prompt", "drop", NULL};
  imp__sharegpt *s = opts;
  long long x = 0;
  int k = 0, rc = 0;
  if (!strcmp(name, "tokenizer")) s->tokpath = v;
  else if (!strcmp(name, "encoder")) s->enc = v;
  else if (!strcmp(name, "merges")) s->mer = v;
  else if (!strcmp(name, "approx")) {
    if (!(rc = imp__choice(name, v, approx, &k, err))) {
      s->o.approx = (trace_tok_approx)trace_tok_approx_parse(approx[k]);
      s->approx_set = 1;
    }
  } else if (!strcmp(name, "lead")) {
    if (!(rc = imp__choice(name, v, lead, &k, err))) {
      s->o.lead = k == 0 ? TRACE_SHAREGPT_LEAD_AS_PROMPT : TRACE_SHAREGPT_LEAD_DROP;
    }
  } else if (!strcmp(name, "msg-overhead")) {
    if (!(rc = imp__int(name, v, 0, 1000000, &x, err))) s->o.msg_overhead = (int32_t)x;
  } else if (!strcmp(name, "role")) rc = trace_sharegpt_parse_role(&s->o, v ? v : "", err);
  else if (!strcmp(name, "no-tools")) s->o.ignore_tools = 1;
  else if (!strcmp(name, "rate")) rc = imp__dbl(name, v, 1e-9, 1e9, &s->rate, err);
  else if (!strcmp(name, "think-mean")) rc = imp__dbl(name, v, 0, 1e6, &s->think, err);
  else if (!strcmp(name, "seed")) rc = imp__int(name, v, 0, INT64_MAX, &s->seed, err);
  else rc = kv_error_set(err, KV_ENOENT, "--%s: not an option of this importer", name);
  return rc;
}
static trace_import_opts *imp__sharegpt_base(void *o) { return &((imp__sharegpt *)o)->o.base; }
static const trace_import_stats *imp__sharegpt_stats(const void *st) {
  return &((const trace_sharegpt_stats *)st)->base;
}

/* The tokenizer: --tokenizer PATH or --encoder/--merges, else $KVLAB_TOKENIZER unless --approx
 * asks for an estimate; none of them: the estimate (o.approx, script by default). No tokenizer
 * ships with the repository. */
static int imp__sharegpt_tok(imp__sharegpt *s, kv_error *err) {
  const char *path = s->tokpath, *enc = s->enc, *mer = s->mer, *from = "";
  if ((enc || mer) && path) {
    return kv_error_set(err, KV_EINVAL, "--tokenizer and --encoder/--merges exclude each other");
  }
  if (s->approx_set && (path || enc || mer)) {
    return kv_error_set(err, KV_EINVAL, "--approx and a tokenizer exclude each other");
  }
  if (!s->approx_set && !path && !enc && !mer) {
    const char *env = getenv(TRACE_TOKENIZER_ENV);
    if (env && env[0]) path = env, from = " (from $" TRACE_TOKENIZER_ENV ")";
  }
  int rc;
  if (path) {
    snprintf(s->tname, sizeof s->tname, "%s%s", path, from);
    rc = trace_tok_load_path(path, &s->o.tok, err);
    if (rc && from[0]) kv_error_prefix(err, "$" TRACE_TOKENIZER_ENV);
  } else if (enc && mer) {
    snprintf(s->tname, sizeof s->tname, "%s + %s", enc, mer);
    rc = trace_tok_load(enc, mer, &s->o.tok, err);
  } else if (enc || mer) {
    return kv_error_set(err, KV_EINVAL, "--encoder and --merges go together");
  } else {
    return 0;
  }
  s->o.tokenizer_name = s->tname;
  return rc;
}
/* The tokenizer lives for one read (in a copy of the options). */
static int imp__sharegpt_read(FILE *f, const char *name, const void *opts, trace *t, void *st,
                              kv_error *err) {
  static imp__sharegpt s; /* 8.5 KB of names: not on the stack; imports are not concurrent */
  if (opts) s = *(const imp__sharegpt *)opts;
  else imp__sharegpt_init(&s);
  int rc = s.o.tok ? 0 : imp__sharegpt_tok(&s, err);
  int own = !rc && s.o.tok && !(opts && ((const imp__sharegpt *)opts)->o.tok);
  if (!rc) rc = trace_import_sharegpt_stream(f, name, &s.o, t, st, err);
  if (!rc && s.rate > 0) rc = trace_gen_retime(t, s.rate, s.think, (uint64_t)s.seed, err);
  if (own) trace_tok_free(s.o.tok);
  return rc;
}

int trace_import_sharegpt(const char *path, const trace_sharegpt_opts *opts, trace *t,
                          trace_sharegpt_stats *st, kv_error *err) {
  static imp__sharegpt a;
  imp__sharegpt_init(&a);
  if (opts) a.o = *opts;
  a.approx_set = 1; /* the module's own defaults: no tokenizer unless opts names one */
  return trace_import_named("sharegpt", path, &a, t, st, err);
}

static void imp__sharegpt_report(const void *opts, const void *stats, const trace *t, char *buf,
                                 size_t cap) {
  const imp__sharegpt *o = opts;
  const trace_sharegpt_stats *s = stats;
  int n = snprintf(buf, cap, "sharegpt: %lld records, %lld conversations (%lld segments joined, "
                   "%lld gaps, %lld non-adjacent), %lld model-first, %lld trailing prompts "
                   "dropped, %lld system messages, %lld tool calls, %lld tool results, %lld "
                   "dropped, %lld tools and %lld system fields, %lld empty; %lld messages, %lld "
                   "bytes -> %lld tokens (%s)",
                   (long long)s->base.records, (long long)s->conversations,
                   (long long)s->joined_segments, (long long)s->segment_gaps,
                   (long long)s->nonadjacent_segments, (long long)s->model_first,
                   (long long)s->trailing_prompts, (long long)s->system_messages,
                   (long long)s->tool_calls, (long long)s->tool_results,
                   (long long)s->dropped_messages, (long long)s->tools_fields,
                   (long long)s->system_fields, (long long)s->empty, (long long)s->messages,
                   (long long)s->text_bytes, (long long)s->tokens, t->tokenizer);
  const int approx = strncmp(t->tokenizer, "approx", 6) == 0;
#define IMP__LINE(...)                                                                \
  do {                                                                                \
    if (n >= 0 && (size_t)n < cap) n += snprintf(buf + n, cap - (size_t)n, __VA_ARGS__); \
  } while (0)
  if (approx && o->o.approx == TRACE_TOK_APPROX_SCRIPT && s->chars > 0 &&
      (double)s->rough_chars > TRACE_SHAREGPT_NON_LATIN_WARN * (double)s->chars) {
    IMP__LINE("\nwarning: %.1f%% of the text's characters are in scripts the script estimate "
              "was not calibrated on (Arabic, Hebrew, Indic, Thai, emoji, ...): its count of them "
              "is rough; name a tokenizer for exact counts (--tokenizer PATH or $"
              TRACE_TOKENIZER_ENV ")", 100.0 * (double)s->rough_chars / (double)s->chars);
  } else if (approx && o->o.approx != TRACE_TOK_APPROX_SCRIPT && s->chars > 0 &&
             (double)s->non_latin_chars > TRACE_SHAREGPT_NON_LATIN_WARN * (double)s->chars) {
    IMP__LINE("\nwarning: %.1f%% of the text's characters are in non-Latin scripts (CJK, Arabic, "
              "Indic, ...), which the %s estimate undercounts several-fold (about 7x for Chinese "
              "against GPT-2's BPE): use the script estimate (the default) or a tokenizer "
              "(--tokenizer PATH)", 100.0 * (double)s->non_latin_chars / (double)s->chars,
              trace_tok_approx_name(o->o.approx));
  }
  if (o->rate <= 0 && t->n_sessions > 1) {
    IMP__LINE("\nwarning: ShareGPT has no times and no --rate was given: all %lld sessions "
              "arrive at t = 0 and think times are unknown, so a replay starts every session at "
              "once; --rate R [--think-mean S] assigns Poisson arrivals and think times (or "
              "kvtrace retime later)", (long long)t->n_sessions);
  }
#undef IMP__LINE
}

/* ---- the registry ------------------------------------------------------------------------------ */

static const trace_importer imp__registry[] = {
    {"sharegpt", "IN.json|IN.jsonl", NULL, imp__sharegpt_opts, sizeof(imp__sharegpt),
     sizeof(trace_sharegpt_stats), imp__sharegpt_init, imp__sharegpt_set, imp__sharegpt_base,
     imp__sharegpt_stats, imp__sharegpt_read, imp__sharegpt_report},
    {"mooncake", "IN.jsonl", ".jsonl", imp__mooncake_opts, sizeof(trace_mooncake_opts),
     sizeof(trace_mooncake_stats), imp__mooncake_init, imp__mooncake_set, imp__mooncake_base,
     imp__mooncake_stats, imp__mooncake_read, imp__mooncake_report},
    {"azure", "IN.csv", NULL, NULL, sizeof(trace_import_opts), sizeof(trace_import_stats),
     imp__azure_init, imp__azure_set, imp__azure_base, imp__plain_stats, imp__azure_read,
     imp__no_report},
    {"burstgpt", "IN.csv", NULL, imp__burstgpt_opts, sizeof(trace_burstgpt_opts),
     sizeof(trace_import_stats), imp__burstgpt_init, imp__burstgpt_set, imp__burstgpt_base,
     imp__plain_stats, imp__burstgpt_read, imp__no_report},
};

int trace_importer_count(void) { return (int)(sizeof imp__registry / sizeof imp__registry[0]); }

const trace_importer *trace_importer_at(int i) {
  return i >= 0 && i < trace_importer_count() ? &imp__registry[i] : NULL;
}

const trace_importer *trace_importer_find(const char *name) {
  for (int i = 0; i < trace_importer_count(); i++) {
    if (!strcmp(imp__registry[i].name, name)) return &imp__registry[i];
  }
  return NULL;
}

const trace_importer *trace_importer_for_source(const char *path) {
  size_t n = strlen(path);
  for (int i = 0; i < trace_importer_count(); i++) {
    const char *suf = imp__registry[i].source_suffix;
    size_t k = suf ? strlen(suf) : 0;
    if (suf && n > k && strcmp(path + n - k, suf) == 0) return &imp__registry[i];
  }
  return NULL;
}

int trace_import_file(const trace_importer *imp, const char *path, const void *opts, trace *t,
                      void *stats, kv_error *err) {
  trace_init(t);
  FILE *f = fopen(path, "rb");
  if (!f) return kv_error_set(err, KV_EIO, "%s: cannot open: %s", path, strerror(errno));
  kv_fs_note_input(path); /* sweeps key their points by what they read */
  int rc = imp->read(f, path, opts, t, stats, err);
  fclose(f);
  if (rc) trace_free(t);
  return rc;
}

int trace_import_named(const char *name, const char *path, const void *opts, trace *t,
                       void *stats, kv_error *err) {
  const trace_importer *imp = trace_importer_find(name);
  if (!imp) return kv_error_set(err, KV_EINVAL, "no importer '%s'", name);
  return trace_import_file(imp, path, opts, t, stats, err);
}

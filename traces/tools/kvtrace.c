/* kvtrace — workload traces from the command line: import public traces, generate ShareGPT-style
 * sessions, fit the generator, summarise with CDF plots, convert between HDF5 and CSV, and
 * measure token-count approximations against a real tokenizer. `kvtrace help` lists commands. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kv_config.h"
#include "kv_fs.h"
#include "kv_progress.h"
#include "tokenizer.h"
#include "trace_gen.h"
#include "trace_importers.h"
#include "trace_io.h"
#include "trace_summary.h"

static const char usage_head[] =
    "usage: kvtrace <command> [options]\n"
    "\n";
/* (the import lines come from the importer registry, trace_importers.h) */
static const char usage[] =
    "     every import: [--on-bad stop|skip] [--max-records N] [--csv OUT.csv] [--quiet]\n"
    "         [--allow-unterminated]   (CSV: accept a last row without a newline; by default\n"
    "                                   refused as the sign of a file cut short)\n"
    "  gen -o OUT [--config FILE [--section S]] [--set key=value]... [--sessions N]\n"
    "      [--rate R] [--seed N] [--think-mean S] [--block-tokens N] [--fit-from TRACE]\n"
    "      [--csv OUT.csv]\n"
    "  fit TRACE [-o params.ini]             fit the generator to a trace (maximum likelihood)\n"
    "  fit-published [--n-mc N] [--seed N] [--output-ratio X] [-o params.ini]\n"
    "                                        fit to CachedAttention's ShareGPT statistics\n"
    "  summary TRACE [--plot DIR] [--prefix NAME] [--no-gnuplot]\n"
    "  convert IN OUT                        HDF5 <-> CSV (OUT ending in .csv writes CSV)\n"
    "  retime IN OUT --rate R [--think-mean S] [--seed N]\n"
    "  tokenize (--tokenizer PATH | --encoder F --merges F) [--ids] [--records] FILE...\n"
    "                                        PATH: a tokenizer.json, or a folder holding one or\n"
    "                                        encoder.json + vocab.bpe; --records: per NUL-separated\n"
    "                                        record, tokens, the script estimate and its features\n"
    "  tokenizer-eval (--tokenizer PATH | --encoder F --merges F) FILE...\n"
    "                                        error of the script estimate, chars/4 and words*4/3\n"
    "\n"
    "OUT ending in .csv is written as CSV, '-' as CSV on standard output, anything else as\n"
    "HDF5; -o of fit and fit-published takes '-' (the default) for standard output. An output\n"
    "replaces only a regular file or nothing: a symbolic link, FIFO, device or directory at OUT\n"
    "is refused. Exit status: 0 ok, 1 error, 2 usage.\n";

/* ---- argument helpers ------------------------------------------------------------------------ */

typedef struct args {
  int argc;
  char **argv;
  int i;
} args;

/* The usage text: a line per importer and its options from the registry, then the rest. */
static void print_usage(FILE *f) {
  fputs(usage_head, f);
  for (int i = 0; i < trace_importer_count(); i++) {
    const trace_importer *imp = trace_importer_at(i);
    int col = fprintf(f, "  import %s %s -o OUT", imp->name, imp->input);
    for (const trace_importer_opt *o = imp->opts; o && o->name; o++) {
      char opt[128];
      snprintf(opt, sizeof opt, " [--%s%s%s]", o->name, o->arg ? " " : "", o->arg ? o->arg : "");
      if (col + (int)strlen(opt) > 96) col = fprintf(f, "\n        ") - 1;
      col += fprintf(f, "%s", opt);
    }
    fputc('\n', f);
  }
  fputs(usage, f);
}

static void die_usage(const char *msg) {
  fprintf(stderr, "kvtrace: %s\n\n", msg);
  print_usage(stderr);
  exit(2);
}

static void die(const kv_error *e) {
  fprintf(stderr, "kvtrace: %s\n", e->msg);
  exit(1);
}

/* Value of option argv[i] (the next argument). */
static const char *optval(args *a) {
  if (a->i + 1 >= a->argc) {
    char m[200];
    snprintf(m, sizeof m, "option %s needs a value", a->argv[a->i]);
    die_usage(m);
  }
  return a->argv[++a->i];
}

static long long optint(args *a, long long lo, long long hi) {
  const char *name = a->argv[a->i];
  const char *v = optval(a);
  char *end;
  errno = 0;
  long long x = strtoll(v, &end, 10);
  if (errno || *end || end == v || x < lo || x > hi) {
    char m[300];
    snprintf(m, sizeof m, "%s: '%s' is not an integer in [%lld, %lld]", name, v, lo, hi);
    die_usage(m);
  }
  return x;
}

static double optdbl(args *a, double lo, double hi) {
  const char *name = a->argv[a->i];
  const char *v = optval(a);
  char *end;
  errno = 0;
  double x = strtod(v, &end);
  if (errno || *end || end == v || !(x >= lo && x <= hi)) {
    char m[300];
    snprintf(m, sizeof m, "%s: '%s' is not a number in [%g, %g]", name, v, lo, hi);
    die_usage(m);
  }
  return x;
}

static int is(const args *a, const char *opt) { return strcmp(a->argv[a->i], opt) == 0; }

static int ends_with(const char *s, const char *suf) {
  size_t n = strlen(s), m = strlen(suf);
  return n >= m && strcmp(s + n - m, suf) == 0;
}

/* OUT: "-" is CSV on standard output, *.csv a CSV file, anything else HDF5. */
static void write_trace(const char *path, const trace *t) {
  kv_error e = {0};
  int rc;
  if (!strcmp(path, "-")) {
    rc = trace_write_csv_stream(stdout, t, &e);
    if (!rc && fflush(stdout) != 0) rc = kv_error_set(&e, KV_EIO, "standard output: write failed");
  } else {
    rc = ends_with(path, ".csv") ? trace_write_csv(path, t, &e) : trace_write(path, t, &e);
  }
  if (rc) die(&e);
}

/* Refuses an output path before any work is done (the writers check it again). */
static void check_out(const char *path) {
  kv_error e = {0};
  if (path && strcmp(path, "-") && kv_out_check(path, &e)) die(&e);
}

static void read_trace(const char *path, trace *t) {
  kv_error e = {0};
  if (trace_read(path, t, &e)) die(&e);
}

/* Tokenizer from --tokenizer PATH (a folder with tokenizer.json or encoder.json + vocab.bpe, or a
 * tokenizer.json) or --encoder/--merges. */
static trace_tok *load_tok(const char *path, const char *enc, const char *mer) {
  trace_tok *t = NULL;
  kv_error e = {0};
  if (path) {
    if (trace_tok_load_path(path, &t, &e)) die(&e);
  } else if (enc && mer) {
    if (trace_tok_load(enc, mer, &t, &e)) die(&e);
  } else if (enc || mer) {
    die_usage("--encoder and --merges go together");
  }
  return t;
}

static void print_bad(void *ctx, const kv_error *e) {
  int *quiet = ctx;
  if (!*quiet) fprintf(stderr, "kvtrace: skipped: %s\n", e->msg);
}

/* ---- import ---------------------------------------------------------------------------------- */

static int cmd_import(args *a) {
  if (a->argc < 3) die_usage("import needs a format and an input file");
  const char *fmt = a->argv[1], *in = a->argv[2], *out = NULL, *csv = NULL;
  const trace_importer *imp = trace_importer_find(fmt);
  if (!imp) {
    char m[300] = "import format must be one of:";
    for (int i = 0; i < trace_importer_count(); i++) {
      size_t k = strlen(m);
      snprintf(m + k, sizeof m - k, "%s %s", i ? "," : "", trace_importer_at(i)->name);
    }
    die_usage(m);
  }
  /* the importer's opts and stats, sized by its registry entry */
  void *opts = calloc(1, imp->opts_size), *stats = calloc(1, imp->stats_size);
  if (!opts || !stats) die_usage("out of memory");
  imp->init(opts);
  trace_import_opts *base = imp->base(opts);
  int quiet = 0;
  kv_error e = {0};
  for (a->i = 3; a->i < a->argc; a->i++) {
    if (is(a, "-o")) out = optval(a);
    else if (is(a, "--csv")) csv = optval(a);
    else if (is(a, "--on-bad")) {
      const char *v = optval(a);
      if (!strcmp(v, "skip")) base->on_bad = TRACE_ON_BAD_SKIP;
      else if (!strcmp(v, "stop")) base->on_bad = TRACE_ON_BAD_STOP;
      else die_usage("--on-bad takes stop or skip");
    } else if (is(a, "--max-records")) base->max_records = optint(a, 0, INT64_MAX);
    else if (is(a, "--allow-unterminated")) base->allow_unterminated = 1;
    else if (is(a, "--quiet")) quiet = 1;
    else {
      /* an option of this importer (its registry entry lists them) */
      const char *name = a->argv[a->i] + (strncmp(a->argv[a->i], "--", 2) ? 0 : 2);
      const trace_importer_opt *o = imp->opts;
      while (o && o->name && strcmp(o->name, name) != 0) o++;
      if (!o || !o->name) {
        char m[300];
        snprintf(m, sizeof m, "unknown option '%s' for import %s", a->argv[a->i], imp->name);
        die_usage(m);
      }
      if (imp->set(opts, name, o->arg ? optval(a) : NULL, &e)) die_usage(e.msg);
    }
  }
  if (!out) die_usage("import needs -o OUT");
  check_out(out);
  check_out(csv);
  base->bad_fn = print_bad;
  base->bad_ctx = &quiet;
  trace t;
  double t0 = kv_now_s();
  if (trace_import_file(imp, in, opts, &t, stats, &e)) die(&e);
  char report[4096];
  imp->report(opts, stats, &t, report, sizeof report);
  for (char *l = report, *nl; *l; l = nl ? nl + 1 : l + strlen(l)) {
    nl = strchr(l, '\n');
    if (nl) *nl = '\0';
    fprintf(stderr, "%s%s\n", strncmp(l, "warning:", 8) ? "" : "kvtrace: ", l);
  }
  const trace_import_stats *st = imp->base_stats(stats);
  fprintf(stderr, "%s: %lld records read, %lld skipped as malformed, %lld filtered -> %lld "
          "sessions, %lld turns in %.1f s\n", in, (long long)st->records, (long long)st->skipped,
          (long long)st->filtered, (long long)t.n_sessions, (long long)t.n_turns,
          kv_now_s() - t0);
  if (st->skipped) fprintf(stderr, "first malformed record: %s\n", st->first_bad.msg);
  write_trace(out, &t);
  if (csv) write_trace(csv, &t);
  trace_free(&t);
  free(opts);
  free(stats);
  return 0;
}

/* ---- gen / fit ------------------------------------------------------------------------------- */

static int cmd_gen(args *a) {
  const char *out = NULL, *csv = NULL, *config = NULL, *section = "sharegpt_gen", *fit = NULL;
  trace_gen_params p;
  trace_gen_params_default(&p);
  kv_config *cfg = kv_config_new();
  kv_error e = {0};
  if (!cfg) die_usage("out of memory");
  /* command-line values become overrides so that they win over the config file */
  char ov[64][300];
  const char *ov_key[64], *ov_val[64];
  int n_ov = 0, n_kv = 0;
  for (a->i = 1; a->i < a->argc; a->i++) {
    const char *key = NULL;
    if (is(a, "-o")) out = optval(a);
    else if (is(a, "--csv")) csv = optval(a);
    else if (is(a, "--config")) config = optval(a);
    else if (is(a, "--section")) section = optval(a);
    else if (is(a, "--fit-from")) fit = optval(a);
    else if (is(a, "--set")) {
      if (n_ov == 64) die_usage("too many --set");
      snprintf(ov[n_ov++], sizeof ov[0], "%s", optval(a));
    } else if (is(a, "--sessions")) key = "n_sessions";
    else if (is(a, "--rate")) key = "rate";
    else if (is(a, "--seed")) key = "seed";
    else if (is(a, "--think-mean")) key = "think_mean_s";
    else if (is(a, "--block-tokens")) key = "block_tokens";
    else {
      char m[300];
      snprintf(m, sizeof m, "unknown option '%s' for gen", a->argv[a->i]);
      die_usage(m);
    }
    if (key) {
      if (n_kv == 64) die_usage("too many options");
      ov_key[n_kv] = key;
      ov_val[n_kv++] = optval(a);
    }
  }
  for (int i = 0; i < n_kv; i++) {
    if (n_ov == 64) die_usage("too many options");
    snprintf(ov[n_ov++], sizeof ov[0], "%s.%s=%s", section, ov_key[i], ov_val[i]);
  }
  if (!out) die_usage("gen needs -o OUT");
  check_out(out);
  check_out(csv);
  if (config) {
    kv_config_free(cfg);
    if (kv_config_load(config, &cfg, &e)) die(&e);
  }
  for (int i = 0; i < n_ov; i++) {
    if (kv_config_override(cfg, ov[i], &e)) die(&e);
  }
  if (fit) {
    trace src;
    read_trace(fit, &src);
    if (trace_gen_fit_trace(&src, &p, &e)) die(&e);
    fprintf(stderr, "fitted to %s\n", fit);
    trace_free(&src);
  }
  if (trace_gen_params_from_config(cfg, section, &p, &e)) die(&e);
  if (kv_config_check_unused(cfg, &e)) die(&e);
  kv_config_free(cfg);
  trace t;
  if (trace_gen_generate(&p, &t, &e)) die(&e);
  fprintf(stderr, "generated %lld sessions, %lld turns\n", (long long)t.n_sessions,
          (long long)t.n_turns);
  write_trace(out, &t);
  if (csv) write_trace(csv, &t);
  trace_free(&t);
  return 0;
}

/* -o PATH, or standard output when PATH is NULL or "-". */
static FILE *open_out(const char *path, kv_atomic_file *af) {
  kv_error e = {0};
  if (kv_atomic_open2(af, path ? path : "-", KV_OUT_STDOUT, &e)) die(&e);
  return af->f;
}

static void close_out(const char *path, kv_atomic_file *af) {
  (void)path;
  kv_error e = {0};
  if (kv_atomic_commit(af, &e)) die(&e);
}

static int cmd_fit(args *a) {
  if (a->argc < 2) die_usage("fit needs a trace");
  const char *in = a->argv[1], *out = NULL;
  for (a->i = 2; a->i < a->argc; a->i++) {
    if (is(a, "-o")) out = optval(a);
    else die_usage("fit takes only -o");
  }
  check_out(out);
  trace t;
  read_trace(in, &t);
  trace_gen_params p;
  trace_gen_params_default(&p);
  kv_error e = {0};
  if (trace_gen_fit_trace(&t, &p, &e)) die(&e);
  kv_atomic_file af;
  FILE *f = open_out(out, &af);
  fprintf(f, "; generator parameters fitted by maximum likelihood to %s\n", in);
  trace_gen_params_write(f, "sharegpt_gen", &p);
  close_out(out, &af);
  trace_free(&t);
  return 0;
}

static int cmd_fit_published(args *a) {
  const char *out = NULL;
  long long n_mc = 200000, seed = 1;
  trace_gen_targets tg;
  trace_gen_targets_default(&tg);
  for (a->i = 1; a->i < a->argc; a->i++) {
    if (is(a, "-o")) out = optval(a);
    else if (is(a, "--n-mc")) n_mc = optint(a, 1000, 100000000);
    else if (is(a, "--seed")) seed = optint(a, 0, INT64_MAX);
    else if (is(a, "--output-ratio")) tg.output_ratio = optdbl(a, 1e-3, 1e3);
    else die_usage("fit-published takes -o, --n-mc, --seed, --output-ratio");
  }
  check_out(out);
  trace_gen_params p;
  trace_gen_params_default(&p);
  trace_gen_fit_report rep;
  kv_error e = {0};
  double t0 = kv_now_s();
  if (trace_gen_fit_published(&tg, n_mc, (uint64_t)seed, &p, &rep, &e)) die(&e);
  kv_atomic_file af;
  FILE *f = open_out(out, &af);
  fprintf(f, "; fitted to CachedAttention's ShareGPT statistics: mean turns %.2f, multi-turn "
          "%.2f, P(S > %lld) %.2f, P(S > %lld) %.2f, output/prompt ratio %.2f\n", tg.mean_turns,
          tg.multi_turn_frac, (long long)tg.long_tokens, tg.frac_over_long,
          (long long)tg.longer_tokens, tg.frac_over_longer, tg.output_ratio);
  fprintf(f, "; Monte Carlo: %lld sessions, seed %lld, %.1f s; achieved mean turns %.4f, "
          "multi-turn %.4f, P(S > long) %.4f, P(S > longer) %.4f, mean prompt %.1f, mean "
          "output %.1f tokens per turn\n", (long long)rep.n_mc, seed, kv_now_s() - t0,
          rep.mean_turns, rep.multi_turn_frac, rep.frac_over_long, rep.frac_over_longer,
          rep.mean_prompt, rep.mean_output);
  trace_gen_params_write(f, "sharegpt_gen", &p);
  close_out(out, &af);
  return 0;
}

/* ---- summary / convert / retime -------------------------------------------------------------- */

static int run_gnuplot(const char *script) {
  pid_t pid = fork();
  if (pid < 0) return -1;
  if (pid == 0) {
    execlp("gnuplot", "gnuplot", script, (char *)NULL);
    _exit(127);
  }
  int status;
  if (waitpid(pid, &status, 0) < 0) return -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static int cmd_summary(args *a) {
  if (a->argc < 2) die_usage("summary needs a trace");
  const char *in = a->argv[1], *dir = NULL, *prefix = NULL;
  int no_gp = 0;
  for (a->i = 2; a->i < a->argc; a->i++) {
    if (is(a, "--plot")) dir = optval(a);
    else if (is(a, "--prefix")) prefix = optval(a);
    else if (is(a, "--no-gnuplot")) no_gp = 1;
    else die_usage("summary takes --plot DIR, --prefix NAME, --no-gnuplot");
  }
  trace t;
  read_trace(in, &t);
  trace_summary s;
  kv_error e = {0};
  if (trace_summarize(&t, &s, &e)) die(&e);
  trace_summary_print(stdout, &t, &s);
  if (dir) {
    char pre[256], script[4400];
    if (!prefix) {
      const char *b = strrchr(in, '/');
      snprintf(pre, sizeof pre, "%s", b ? b + 1 : in);
      char *dot = strrchr(pre, '.');
      if (dot && dot != pre) *dot = '\0';
      prefix = pre;
    }
    if (trace_summary_write_plots(&t, dir, prefix, script, sizeof script, &e)) die(&e);
    if (!no_gp) {
      int rc = run_gnuplot(script);
      if (rc != 0) {
        fprintf(stderr, "kvtrace: gnuplot %s failed (status %d); the data and script are in %s\n",
                script, rc, dir);
        return 1;
      }
      printf("plots: %s/%s.png, %s/%s.svg\n", dir, prefix, dir, prefix);
    } else {
      printf("plot script: %s\n", script);
    }
  }
  trace_free(&t);
  return 0;
}

static int cmd_convert(args *a) {
  if (a->argc != 3) die_usage("convert needs IN and OUT");
  check_out(a->argv[2]);
  trace t;
  read_trace(a->argv[1], &t);
  write_trace(a->argv[2], &t);
  trace_free(&t);
  return 0;
}

static int cmd_retime(args *a) {
  if (a->argc < 3) die_usage("retime needs IN and OUT");
  double rate = 0, think = 60;
  long long seed = 1;
  for (a->i = 3; a->i < a->argc; a->i++) {
    if (is(a, "--rate")) rate = optdbl(a, 1e-9, 1e9);
    else if (is(a, "--think-mean")) think = optdbl(a, 0, 1e6);
    else if (is(a, "--seed")) seed = optint(a, 0, INT64_MAX);
    else die_usage("retime takes --rate, --think-mean, --seed");
  }
  if (rate <= 0) die_usage("retime needs --rate");
  check_out(a->argv[2]);
  trace t;
  kv_error e = {0};
  read_trace(a->argv[1], &t);
  if (trace_gen_retime(&t, rate, think, (uint64_t)seed, &e)) die(&e);
  write_trace(a->argv[2], &t);
  trace_free(&t);
  return 0;
}

/* ---- tokenizer commands ---------------------------------------------------------------------- */

static trace_tok *tok_from_args(args *a, int first, int *files_from, int *ids, int *records) {
  const char *path = NULL, *enc = NULL, *mer = NULL;
  *files_from = a->argc;
  for (a->i = first; a->i < a->argc; a->i++) {
    if (is(a, "--tokenizer")) path = optval(a);
    else if (is(a, "--encoder")) enc = optval(a);
    else if (is(a, "--merges")) mer = optval(a);
    else if (ids && is(a, "--ids")) *ids = 1;
    else if (records && is(a, "--records")) *records = 1;
    else if (a->argv[a->i][0] == '-' && a->argv[a->i][1] == '-') die_usage("unknown option");
    else {
      *files_from = a->i;
      break;
    }
  }
  if (path && (enc || mer)) die_usage("--tokenizer and --encoder/--merges exclude each other");
  trace_tok *t = load_tok(path, enc, mer);
  if (!t) die_usage("a tokenizer is needed: --tokenizer PATH or --encoder F --merges F");
  if (*files_from >= a->argc) die_usage("no input files");
  return t;
}

/* --records: each NUL-separated record of each file on one line: the tokenizer's count, the
 * script estimate's, and the estimate's features (traces/tools/tok_calibrate.py fits them). */
static void tokenize_records(trace_tok *t, const char *path, const char *text, size_t len) {
  kv_error e = {0};
  int64_t rec = 0;
  for (size_t s0 = 0; s0 < len;) {
    const char *nul = memchr(text + s0, 0, len - s0);
    size_t e0 = nul ? (size_t)(nul - text) : len;
    int64_t n = trace_tok_count(t, text + s0, e0 - s0, &e);
    if (n < 0) die(&e);
    int64_t f[TRACE_TOK_F_COUNT];
    trace_tok_features(text + s0, e0 - s0, f);
    printf("%s\t%lld\t%lld\t%lld", path, (long long)rec++, (long long)n,
           (long long)trace_tok_approx_count(TRACE_TOK_APPROX_SCRIPT, text + s0, e0 - s0));
    for (int k = 0; k < TRACE_TOK_F_COUNT; k++) printf("\t%lld", (long long)f[k]);
    putchar('\n');
    s0 = e0 + 1;
  }
}

static int cmd_tokenize(args *a) {
  int from, ids = 0, records = 0;
  trace_tok *t = tok_from_args(a, 1, &from, &ids, &records);
  if (records) {
    printf("# script estimate weights:");
    for (int k = 0; k < TRACE_TOK_F_COUNT; k++) printf(" %.17g", trace_tok_script_weights[k]);
    printf("\nfile\trecord\ttokens\tscript");
    for (int k = 0; k < TRACE_TOK_F_COUNT; k++) printf("\t%s", trace_tok_feature_names[k]);
    putchar('\n');
  }
  for (int i = from; i < a->argc; i++) {
    char *text;
    size_t len;
    kv_error e = {0};
    if (kv_read_file(a->argv[i], &text, &len, &e)) die(&e);
    if (records) {
      tokenize_records(t, a->argv[i], text, len);
      free(text);
      continue;
    }
    int32_t *v = NULL;
    int64_t n = 0, cap = 0;
    if (trace_tok_encode(t, text, len, &v, &n, &cap, &e)) die(&e);
    printf("%s: %zu bytes, %lld tokens, %lld script estimate, %lld chars/4, %lld words*4/3\n",
           a->argv[i], len, (long long)n,
           (long long)trace_tok_approx_count(TRACE_TOK_APPROX_SCRIPT, text, len),
           (long long)trace_tok_approx_count(TRACE_TOK_APPROX_CHARS4, text, len),
           (long long)trace_tok_approx_count(TRACE_TOK_APPROX_WORDS, text, len));
    if (ids) {
      for (int64_t k = 0; k < n; k++) printf("%d%c", v[k], k + 1 == n ? '\n' : ' ');
    }
    free(v);
    free(text);
  }
  trace_tok_free(t);
  return 0;
}

static int cmp_dbl(const void *x, const void *y) {
  double a = *(const double *)x, b = *(const double *)y;
  return (a > b) - (a < b);
}

/* Error of the approximations: per file (whole text) and per paragraph (text between blank
 * lines with at least 8 real tokens: message-sized pieces). */
#define EVAL_N 3
static int cmd_tokenizer_eval(args *a) {
  static const trace_tok_approx ms[EVAL_N] = {TRACE_TOK_APPROX_SCRIPT, TRACE_TOK_APPROX_CHARS4,
                                              TRACE_TOK_APPROX_WORDS};
  int from;
  trace_tok *t = tok_from_args(a, 1, &from, NULL, NULL);
  double tot_real = 0, tot_app[EVAL_N] = {0};
  double *rel[EVAL_N] = {NULL};
  int64_t n_par = 0, cap_par = 0;
  printf("%-48s %9s", "file", "tokens");
  for (int m = 0; m < EVAL_N; m++) printf(" %9s %8s", trace_tok_approx_name(ms[m]), "err");
  putchar('\n');
  for (int i = from; i < a->argc; i++) {
    char *text;
    size_t len;
    kv_error e = {0};
    if (kv_read_file(a->argv[i], &text, &len, &e)) die(&e);
    int64_t real = trace_tok_count(t, text, len, &e);
    if (real < 0) die(&e);
    printf("%-48s %9lld", a->argv[i], (long long)real);
    for (int m = 0; m < EVAL_N; m++) {
      int64_t ap = trace_tok_approx_count(ms[m], text, len);
      printf(" %9lld %+7.1f%%", (long long)ap,
             real ? 100.0 * (double)(ap - real) / (double)real : 0.0);
      tot_app[m] += (double)ap;
    }
    putchar('\n');
    tot_real += (double)real;
    /* paragraphs */
    size_t s0 = 0;
    while (s0 < len) {
      size_t e0 = s0;
      while (e0 < len && !(text[e0] == '\n' && e0 + 1 < len && text[e0 + 1] == '\n')) e0++;
      int64_t r = trace_tok_count(t, text + s0, e0 - s0, &e);
      if (r >= 8) {
        if (n_par == cap_par) {
          cap_par = cap_par ? cap_par * 2 : 1024;
          for (int m = 0; m < EVAL_N; m++) {
            double *nb = realloc(rel[m], (size_t)cap_par * sizeof *nb);
            if (!nb) die_usage("out of memory");
            rel[m] = nb;
          }
        }
        for (int m = 0; m < EVAL_N; m++) {
          int64_t ap = trace_tok_approx_count(ms[m], text + s0, e0 - s0);
          rel[m][n_par] = (double)(ap - r) / (double)r;
        }
        n_par++;
      }
      s0 = e0 + 2;
    }
    free(text);
  }
  printf("total: %.0f tokens;", tot_real);
  for (int m = 0; m < EVAL_N; m++) {
    printf(" %s %+.2f%%%s", trace_tok_approx_name(ms[m]),
           tot_real > 0 ? 100 * (tot_app[m] - tot_real) / tot_real : 0.0, m + 1 < EVAL_N ? "," : "");
  }
  printf(" (signed error of the sums)\n");
  if (n_par) {
    for (int m = 0; m < EVAL_N; m++) {
      double mean = 0, mabs = 0;
      for (int64_t k = 0; k < n_par; k++) mean += rel[m][k], mabs += fabs(rel[m][k]);
      for (int64_t k = 0; k < n_par; k++) rel[m][k] = fabs(rel[m][k]);
      qsort(rel[m], (size_t)n_par, sizeof *rel[m], cmp_dbl);
      printf("paragraphs (%lld with >= 8 tokens), %s: mean error %+.1f%%, mean |error| %.1f%%, "
             "median |error| %.1f%%, p90 |error| %.1f%%\n", (long long)n_par,
             trace_tok_approx_name(ms[m]), 100 * mean / (double)n_par,
             100 * mabs / (double)n_par, 100 * rel[m][(n_par - 1) / 2],
             100 * rel[m][(int64_t)(0.9 * (double)(n_par - 1))]);
    }
  }
  for (int m = 0; m < EVAL_N; m++) free(rel[m]);
  trace_tok_free(t);
  return 0;
}

int main(int argc, char **argv) {
  if (argc < 2 || !strcmp(argv[1], "help") || !strcmp(argv[1], "--help") ||
      !strcmp(argv[1], "-h")) {
    print_usage(argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  args a = {argc - 1, argv + 1, 0};
  const char *cmd = argv[1];
  if (!strcmp(cmd, "import")) return cmd_import(&a);
  if (!strcmp(cmd, "gen")) return cmd_gen(&a);
  if (!strcmp(cmd, "fit")) return cmd_fit(&a);
  if (!strcmp(cmd, "fit-published")) return cmd_fit_published(&a);
  if (!strcmp(cmd, "summary")) return cmd_summary(&a);
  if (!strcmp(cmd, "convert")) return cmd_convert(&a);
  if (!strcmp(cmd, "retime")) return cmd_retime(&a);
  if (!strcmp(cmd, "tokenize")) return cmd_tokenize(&a);
  if (!strcmp(cmd, "tokenizer-eval")) return cmd_tokenizer_eval(&a);
  char m[200];
  snprintf(m, sizeof m, "unknown command '%s'", cmd);
  die_usage(m);
  return 2;
}

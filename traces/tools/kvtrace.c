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

#include "import_azure.h"
#include "import_burstgpt.h"
#include "import_mooncake.h"
#include "import_sharegpt.h"
#include "kv_config.h"
#include "kv_fs.h"
#include "kv_progress.h"
#include "tokenizer.h"
#include "trace_gen.h"
#include "trace_io.h"
#include "trace_summary.h"

static const char usage[] =
    "usage: kvtrace <command> [options]\n"
    "\n"
    "  import sharegpt IN.json -o OUT [--tokenizer DIR | --encoder F --merges F]\n"
    "         [--approx chars4|words] [--lead prompt|drop] [--msg-overhead N]\n"
    "         [--role NAME=prompt|output|drop|reject]... [--no-tools]\n"
    "         [--rate R --think-mean S --seed N]   (assign Poisson arrivals, think times)\n"
    "     tokens: GPT-2's BPE (traces/data/tokenizers/gpt2) unless --tokenizer or --approx says\n"
    "     otherwise; roles: function_call/tool_call -> output, observation/tool/function ->\n"
    "     prompt by default; the record's \"tools\" and \"system\" count as a system prompt\n"
    "  import mooncake IN.jsonl -o OUT [--block-tokens 512] [--min-shared-blocks 2]\n"
    "  import azure IN.csv -o OUT\n"
    "  import burstgpt IN.csv -o OUT [--history none|prev] [--log all|conv|api]\n"
    "         [--model NAME] [--drop-failed]\n"
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
    "  tokenize (--tokenizer DIR | --encoder F --merges F) [--ids] FILE...\n"
    "  tokenizer-eval (--tokenizer DIR | --encoder F --merges F) FILE...\n"
    "                                        error of chars/4 and words*4/3 vs the tokenizer\n"
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

static void die_usage(const char *msg) {
  fprintf(stderr, "kvtrace: %s\n\n%s", msg, usage);
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

/* The GPT-2 files that ship with the source tree: beside the build (bin/../../traces/data), or
 * in the source tree this binary was built from. NULL when neither holds them. */
static const char *default_tokenizer_dir(char *buf, size_t cap) {
  char exe[4096];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (n > 0) {
    exe[n] = '\0';
    char *s = strrchr(exe, '/');
    if (s) *s = '\0';
    snprintf(buf, cap, "%s/../../traces/data/tokenizers/gpt2", exe);
    char probe[4300];
    snprintf(probe, sizeof probe, "%s/vocab.bpe", buf);
    if (access(probe, R_OK) == 0) return buf;
  }
#ifdef KVLAB_SOURCE_DIR
  snprintf(buf, cap, "%s/traces/data/tokenizers/gpt2", KVLAB_SOURCE_DIR);
  char probe[4300];
  snprintf(probe, sizeof probe, "%s/vocab.bpe", buf);
  if (access(probe, R_OK) == 0) return buf;
#endif
  return NULL;
}

/* Tokenizer from --tokenizer DIR (DIR/encoder.json, DIR/vocab.bpe) or --encoder/--merges. */
static trace_tok *load_tok(const char *dir, const char *enc, const char *mer, char *name,
                           size_t cap) {
  char pe[4200], pm[4200];
  if (dir) {
    snprintf(pe, sizeof pe, "%s/encoder.json", dir);
    snprintf(pm, sizeof pm, "%s/vocab.bpe", dir);
    enc = pe;
    mer = pm;
    snprintf(name, cap, "%s", dir);
  } else if (enc && mer) {
    snprintf(name, cap, "%s + %s", enc, mer);
  } else if (enc || mer) {
    die_usage("--encoder and --merges go together");
  } else {
    return NULL;
  }
  trace_tok *t = NULL;
  kv_error e = {0};
  if (trace_tok_load(enc, mer, &t, &e)) die(&e);
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
  const char *tokdir = NULL, *enc = NULL, *mer = NULL, *model = NULL;
  int on_bad = TRACE_ON_BAD_STOP, quiet = 0, lead = TRACE_SHAREGPT_LEAD_AS_PROMPT;
  int approx = TRACE_TOK_APPROX_CHARS4, history = TRACE_BURSTGPT_HISTORY_NONE, approx_set = 0;
  int no_tools = 0;
  const char *roles[TRACE_SHAREGPT_MAX_ROLES];
  int n_roles = 0;
  int log_type = TRACE_BURSTGPT_LOG_ALL, drop_failed = 0, allow_unterminated = 0;
  long long max_records = 0, overhead = 0, block = 512, min_shared = 2, seed = 1;
  double rate = 0, think = 60;
  for (a->i = 3; a->i < a->argc; a->i++) {
    if (is(a, "-o")) out = optval(a);
    else if (is(a, "--csv")) csv = optval(a);
    else if (is(a, "--on-bad")) {
      const char *v = optval(a);
      if (!strcmp(v, "skip")) on_bad = TRACE_ON_BAD_SKIP;
      else if (!strcmp(v, "stop")) on_bad = TRACE_ON_BAD_STOP;
      else die_usage("--on-bad takes stop or skip");
    } else if (is(a, "--max-records")) max_records = optint(a, 0, INT64_MAX);
    else if (is(a, "--quiet")) quiet = 1;
    else if (is(a, "--allow-unterminated")) allow_unterminated = 1;
    else if (is(a, "--tokenizer")) tokdir = optval(a);
    else if (is(a, "--encoder")) enc = optval(a);
    else if (is(a, "--merges")) mer = optval(a);
    else if (is(a, "--approx")) {
      const char *v = optval(a);
      if (!strcmp(v, "chars4")) approx = TRACE_TOK_APPROX_CHARS4;
      else if (!strcmp(v, "words")) approx = TRACE_TOK_APPROX_WORDS;
      else die_usage("--approx takes chars4 or words");
      approx_set = 1;
    } else if (is(a, "--role")) {
      if (n_roles == TRACE_SHAREGPT_MAX_ROLES) die_usage("too many --role options");
      roles[n_roles++] = optval(a);
    } else if (is(a, "--no-tools")) no_tools = 1;
    else if (is(a, "--lead")) {
      const char *v = optval(a);
      if (!strcmp(v, "prompt")) lead = TRACE_SHAREGPT_LEAD_AS_PROMPT;
      else if (!strcmp(v, "drop")) lead = TRACE_SHAREGPT_LEAD_DROP;
      else die_usage("--lead takes prompt or drop");
    } else if (is(a, "--msg-overhead")) overhead = optint(a, 0, 1000000);
    else if (is(a, "--rate")) rate = optdbl(a, 1e-9, 1e9);
    else if (is(a, "--think-mean")) think = optdbl(a, 0, 1e6);
    else if (is(a, "--seed")) seed = optint(a, 0, INT64_MAX);
    else if (is(a, "--block-tokens")) block = optint(a, 1, 1 << 20);
    else if (is(a, "--min-shared-blocks")) min_shared = optint(a, 0, 1 << 20);
    else if (is(a, "--history")) {
      const char *v = optval(a);
      if (!strcmp(v, "none")) history = TRACE_BURSTGPT_HISTORY_NONE;
      else if (!strcmp(v, "prev")) history = TRACE_BURSTGPT_HISTORY_PREV;
      else die_usage("--history takes none or prev");
    } else if (is(a, "--log")) {
      const char *v = optval(a);
      if (!strcmp(v, "all")) log_type = TRACE_BURSTGPT_LOG_ALL;
      else if (!strcmp(v, "conv")) log_type = TRACE_BURSTGPT_LOG_CONVERSATION;
      else if (!strcmp(v, "api")) log_type = TRACE_BURSTGPT_LOG_API;
      else die_usage("--log takes all, conv or api");
    } else if (is(a, "--model")) model = optval(a);
    else if (is(a, "--drop-failed")) drop_failed = 1;
    else {
      char m[300];
      snprintf(m, sizeof m, "unknown option '%s' for import", a->argv[a->i]);
      die_usage(m);
    }
  }
  if (!out) die_usage("import needs -o OUT");
  check_out(out);
  check_out(csv);
  trace_import_opts base;
  trace_import_opts_init(&base);
  base.on_bad = on_bad;
  base.bad_fn = print_bad;
  base.bad_ctx = &quiet;
  base.max_records = max_records;
  base.allow_unterminated = allow_unterminated;
  trace t;
  kv_error e = {0};
  trace_import_stats *st = NULL;
  double t0 = kv_now_s();
  if (!strcmp(fmt, "sharegpt")) {
    char tname[8500] = "", ddir[4200];
    if ((enc || mer) && tokdir) die_usage("--tokenizer and --encoder/--merges exclude each other");
    if (approx_set && (tokdir || enc || mer)) die_usage("--approx and a tokenizer exclude each other");
    if (!approx_set && !tokdir && !enc && !mer) {
      tokdir = default_tokenizer_dir(ddir, sizeof ddir);
      if (!tokdir) {
        fprintf(stderr, "kvtrace: warning: GPT-2's tokenizer files (traces/data/tokenizers/gpt2) "
                "were not found beside this build: counting tokens with the chars/4 estimate "
                "(--tokenizer DIR names the files)\n");
      }
    }
    trace_tok *tok = load_tok(tokdir, enc, mer, tname, sizeof tname);
    if (tokdir == ddir) snprintf(tname, sizeof tname, "gpt2 (traces/data/tokenizers/gpt2)");
    trace_sharegpt_opts o;
    trace_sharegpt_opts_init(&o);
    o.base = base;
    o.tok = tok;
    o.tokenizer_name = tname;
    o.approx = (trace_tok_approx)approx;
    o.lead = (trace_sharegpt_lead)lead;
    o.msg_overhead = (int32_t)overhead;
    o.ignore_tools = no_tools;
    for (int i = 0; i < n_roles; i++) {
      if (trace_sharegpt_parse_role(&o, roles[i], &e)) die(&e);
    }
    static trace_sharegpt_stats s;
    int rc = trace_import_sharegpt(in, &o, &t, &s, &e);
    trace_tok_free(tok);
    if (rc) die(&e);
    st = &s.base;
    fprintf(stderr, "sharegpt: %lld records, %lld conversations (%lld segments joined, %lld gaps, "
            "%lld non-adjacent), %lld model-first, %lld trailing prompts dropped, %lld system "
            "messages, %lld tool calls, %lld tool results, %lld dropped, %lld tools and %lld "
            "system fields, %lld empty; %lld messages, %lld bytes -> %lld tokens (%s)\n",
            (long long)s.base.records, (long long)s.conversations, (long long)s.joined_segments,
            (long long)s.segment_gaps, (long long)s.nonadjacent_segments,
            (long long)s.model_first, (long long)s.trailing_prompts,
            (long long)s.system_messages, (long long)s.tool_calls, (long long)s.tool_results,
            (long long)s.dropped_messages, (long long)s.tools_fields, (long long)s.system_fields,
            (long long)s.empty, (long long)s.messages, (long long)s.text_bytes,
            (long long)s.tokens, t.tokenizer);
    if (!tok && s.chars > 0 &&
        (double)s.non_latin_chars > TRACE_SHAREGPT_NON_LATIN_WARN * (double)s.chars) {
      fprintf(stderr, "kvtrace: warning: %.1f%% of the text's characters are in non-Latin scripts "
              "(CJK, Arabic, Indic, ...), which the %s estimate undercounts several-fold (about "
              "6x for Chinese against GPT-2's BPE): use a tokenizer (the default, or --tokenizer "
              "DIR)\n", 100.0 * (double)s.non_latin_chars / (double)s.chars,
              trace_tok_approx_name((trace_tok_approx)approx));
    }
    if (rate > 0) {
      if (trace_gen_retime(&t, rate, think, (uint64_t)seed, &e)) die(&e);
    } else if (t.n_sessions > 1) {
      fprintf(stderr, "kvtrace: warning: ShareGPT has no times and no --rate was given: all %lld "
              "sessions arrive at t = 0 and think times are unknown, so a replay starts every "
              "session at once; --rate R [--think-mean S] assigns Poisson arrivals and think "
              "times (or kvtrace retime later)\n", (long long)t.n_sessions);
    }
  } else if (!strcmp(fmt, "mooncake")) {
    trace_mooncake_opts o;
    trace_mooncake_opts_init(&o);
    o.base = base;
    o.block_tokens = (int32_t)block;
    o.min_shared_blocks = (int32_t)min_shared;
    static trace_mooncake_stats s;
    if (trace_import_mooncake(in, &o, &t, &s, &e)) die(&e);
    st = &s.base;
    fprintf(stderr, "mooncake: %lld continuations (%lld branches), mean shared prefix %.1f "
            "blocks\n", (long long)s.continuations, (long long)s.branches,
            s.continuations ? (double)s.shared_blocks / (double)s.continuations : 0.0);
  } else if (!strcmp(fmt, "azure")) {
    static trace_import_stats s;
    if (trace_import_azure(in, &base, &t, &s, &e)) die(&e);
    st = &s;
  } else if (!strcmp(fmt, "burstgpt")) {
    trace_burstgpt_opts o;
    trace_burstgpt_opts_init(&o);
    o.base = base;
    o.history = (trace_burstgpt_history)history;
    o.log_type = (trace_burstgpt_log)log_type;
    o.model = model;
    o.drop_failed = drop_failed;
    static trace_import_stats s;
    if (trace_import_burstgpt(in, &o, &t, &s, &e)) die(&e);
    st = &s;
  } else {
    die_usage("import format must be sharegpt, mooncake, azure or burstgpt");
  }
  fprintf(stderr, "%s: %lld records read, %lld skipped as malformed, %lld filtered -> %lld "
          "sessions, %lld turns in %.1f s\n", in, (long long)st->records, (long long)st->skipped,
          (long long)st->filtered, (long long)t.n_sessions, (long long)t.n_turns,
          kv_now_s() - t0);
  if (st->skipped) fprintf(stderr, "first malformed record: %s\n", st->first_bad.msg);
  write_trace(out, &t);
  if (csv) write_trace(csv, &t);
  trace_free(&t);
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

static trace_tok *tok_from_args(args *a, int first, int *files_from, int *ids) {
  const char *dir = NULL, *enc = NULL, *mer = NULL;
  *files_from = a->argc;
  for (a->i = first; a->i < a->argc; a->i++) {
    if (is(a, "--tokenizer")) dir = optval(a);
    else if (is(a, "--encoder")) enc = optval(a);
    else if (is(a, "--merges")) mer = optval(a);
    else if (ids && is(a, "--ids")) *ids = 1;
    else if (a->argv[a->i][0] == '-' && a->argv[a->i][1] == '-') die_usage("unknown option");
    else {
      *files_from = a->i;
      break;
    }
  }
  char name[8500];
  trace_tok *t = load_tok(dir, enc, mer, name, sizeof name);
  if (!t) die_usage("a tokenizer is needed: --tokenizer DIR or --encoder F --merges F");
  if (*files_from >= a->argc) die_usage("no input files");
  return t;
}

static int cmd_tokenize(args *a) {
  int from, ids = 0;
  trace_tok *t = tok_from_args(a, 1, &from, &ids);
  for (int i = from; i < a->argc; i++) {
    char *text;
    size_t len;
    kv_error e = {0};
    if (kv_read_file(a->argv[i], &text, &len, &e)) die(&e);
    int32_t *v = NULL;
    int64_t n = 0, cap = 0;
    if (trace_tok_encode(t, text, len, &v, &n, &cap, &e)) die(&e);
    printf("%s: %zu bytes, %lld tokens, %lld chars/4, %lld words*4/3\n", a->argv[i], len,
           (long long)n, (long long)trace_tok_approx_count(TRACE_TOK_APPROX_CHARS4, text, len),
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
static int cmd_tokenizer_eval(args *a) {
  int from;
  trace_tok *t = tok_from_args(a, 1, &from, NULL);
  double tot_real = 0, tot_app[2] = {0, 0};
  double *rel[2] = {NULL, NULL};
  int64_t n_par = 0, cap_par = 0;
  printf("%-48s %9s %9s %8s %9s %8s\n", "file", "tokens", "chars/4", "err", "words4/3", "err");
  for (int i = from; i < a->argc; i++) {
    char *text;
    size_t len;
    kv_error e = {0};
    if (kv_read_file(a->argv[i], &text, &len, &e)) die(&e);
    int64_t real = trace_tok_count(t, text, len, &e);
    if (real < 0) die(&e);
    int64_t c4 = trace_tok_approx_count(TRACE_TOK_APPROX_CHARS4, text, len);
    int64_t w = trace_tok_approx_count(TRACE_TOK_APPROX_WORDS, text, len);
    printf("%-48s %9lld %9lld %+7.1f%% %9lld %+7.1f%%\n", a->argv[i], (long long)real,
           (long long)c4, real ? 100.0 * (double)(c4 - real) / (double)real : 0.0, (long long)w,
           real ? 100.0 * (double)(w - real) / (double)real : 0.0);
    tot_real += (double)real;
    tot_app[0] += (double)c4;
    tot_app[1] += (double)w;
    /* paragraphs */
    size_t s0 = 0;
    while (s0 < len) {
      size_t e0 = s0;
      while (e0 < len && !(text[e0] == '\n' && e0 + 1 < len && text[e0 + 1] == '\n')) e0++;
      int64_t r = trace_tok_count(t, text + s0, e0 - s0, &e);
      if (r >= 8) {
        if (n_par == cap_par) {
          cap_par = cap_par ? cap_par * 2 : 1024;
          for (int m = 0; m < 2; m++) {
            double *nb = realloc(rel[m], (size_t)cap_par * sizeof *nb);
            if (!nb) die_usage("out of memory");
            rel[m] = nb;
          }
        }
        for (int m = 0; m < 2; m++) {
          int64_t ap = trace_tok_approx_count((trace_tok_approx)m, text + s0, e0 - s0);
          rel[m][n_par] = (double)(ap - r) / (double)r;
        }
        n_par++;
      }
      s0 = e0 + 2;
    }
    free(text);
  }
  printf("total: %.0f tokens; chars/4 %+.2f%%, words*4/3 %+.2f%% (signed error of the sums)\n",
         tot_real, 100 * (tot_app[0] - tot_real) / tot_real,
         100 * (tot_app[1] - tot_real) / tot_real);
  if (n_par) {
    for (int m = 0; m < 2; m++) {
      double mean = 0, mabs = 0;
      for (int64_t k = 0; k < n_par; k++) mean += rel[m][k], mabs += fabs(rel[m][k]);
      for (int64_t k = 0; k < n_par; k++) rel[m][k] = fabs(rel[m][k]);
      qsort(rel[m], (size_t)n_par, sizeof *rel[m], cmp_dbl);
      printf("paragraphs (%lld with >= 8 tokens), %s: mean error %+.1f%%, mean |error| %.1f%%, "
             "median |error| %.1f%%, p90 |error| %.1f%%\n", (long long)n_par,
             trace_tok_approx_name((trace_tok_approx)m), 100 * mean / (double)n_par,
             100 * mabs / (double)n_par, 100 * rel[m][(n_par - 1) / 2],
             100 * rel[m][(int64_t)(0.9 * (double)(n_par - 1))]);
    }
  }
  free(rel[0]);
  free(rel[1]);
  trace_tok_free(t);
  return 0;
}

int main(int argc, char **argv) {
  if (argc < 2 || !strcmp(argv[1], "help") || !strcmp(argv[1], "--help") ||
      !strcmp(argv[1], "-h")) {
    fputs(usage, argc < 2 ? stderr : stdout);
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

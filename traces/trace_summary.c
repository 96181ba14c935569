#include "trace_summary.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "kv_fs.h"
#include "trace_map.h"

static int sum__cmp_i64(const void *a, const void *b) {
  int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return (x > y) - (x < y);
}

/* Index of the nearest-rank p-th percentile of n sorted values: ceil(p n / 100) - 1. */
static int64_t sum__rank(int64_t n, int p) {
  int64_t r = (p * n + 99) / 100 - 1;
  return r < 0 ? 0 : r >= n ? n - 1 : r;
}

/* Sorts v in place and fills d (nearest-rank percentiles). */
static void sum__dist(int64_t *v, int64_t n, trace_dist *d) {
  memset(d, 0, sizeof *d);
  d->n = n;
  if (n == 0) return;
  qsort(v, (size_t)n, sizeof *v, sum__cmp_i64);
  double s = 0;
  for (int64_t i = 0; i < n; i++) s += (double)v[i];
  d->mean = s / (double)n;
  d->min = v[0];
  d->max = v[n - 1];
  d->p50 = v[sum__rank(n, 50)];
  d->p90 = v[sum__rank(n, 90)];
  d->p99 = v[sum__rank(n, 99)];
}

/* Turn order for replay: arrival, then session, then turn index. */
static const trace *sum__t;
static int sum__cmp_turn(const void *a, const void *b) {
  const trace_turn *x = &sum__t->turns[*(const int64_t *)a];
  const trace_turn *y = &sum__t->turns[*(const int64_t *)b];
  if (x->arrival_ns != y->arrival_ns) return x->arrival_ns < y->arrival_ns ? -1 : 1;
  if (x->session != y->session) return x->session < y->session ? -1 : 1;
  return (x->index > y->index) - (x->index < y->index);
}

/* Returns a malloc'ed array of turn indices in replay order, or NULL. */
static int64_t *sum__replay_order(const trace *t) {
  int64_t *ord = malloc((size_t)(t->n_turns ? t->n_turns : 1) * sizeof *ord);
  if (!ord) return NULL;
  for (int64_t i = 0; i < t->n_turns; i++) ord[i] = i;
  sum__t = t;
  qsort(ord, (size_t)t->n_turns, sizeof *ord, sum__cmp_turn);
  return ord;
}

int trace_summarize(const trace *t, trace_summary *s, kv_error *err) {
  memset(s, 0, sizeof *s);
  s->n_sessions = t->n_sessions;
  s->n_turns = t->n_turns;
  int64_t nt = t->n_turns ? t->n_turns : 1, ns = t->n_sessions ? t->n_sessions : 1;
  int64_t *a = malloc((size_t)nt * sizeof *a), *b = malloc((size_t)ns * sizeof *b);
  int64_t *order = NULL;
  trace_u64map seen;
  trace_u64map_init(&seen);
  int rc = 0;
  if (!a || !b) {
    rc = kv_error_set(err, KV_ENOMEM, "summary: out of memory");
    goto done;
  }
  /* per session */
  int64_t k = 0, multi = 0, over2 = 0, over4 = 0;
  for (int64_t i = 0; i < t->n_sessions; i++) {
    if (t->sessions[i].n_turns == 0) {
      s->empty_sessions++;
      continue;
    }
    b[k++] = t->sessions[i].n_turns;
    multi += t->sessions[i].n_turns > 1;
  }
  sum__dist(b, k, &s->turns);
  s->multi_turn_frac = k ? (double)multi / (double)k : 0;
  k = 0;
  for (int64_t i = 0; i < t->n_sessions; i++) {
    if (t->sessions[i].n_turns == 0) continue;
    int64_t st = trace_session_tokens(t, i);
    over2 += st > 2048;
    over4 += st > 4096;
    b[k++] = st;
  }
  sum__dist(b, k, &s->session_tokens);
  s->frac_over_2k = k ? (double)over2 / (double)k : 0;
  s->frac_over_4k = k ? (double)over4 / (double)k : 0;
  /* per turn */
  double sin = 0, shist = 0;
  int64_t first = INT64_MAX, last = INT64_MIN;
  for (int64_t i = 0; i < t->n_turns; i++) {
    const trace_turn *u = &t->turns[i];
    sin += u->input_tokens;
    shist += u->input_tokens - u->new_tokens;
    if (u->arrival_ns < first) first = u->arrival_ns;
    if (u->arrival_ns > last) last = u->arrival_ns;
  }
  s->history_share = sin > 0 ? shist / sin : 0;
  if (t->n_turns) {
    s->duration_s = (double)(last - first) * 1e-9;
    if (s->duration_s > 0) s->request_rate = (double)t->n_turns / s->duration_s;
    /* sessions: over the span of session arrivals (think times after the last arrival would
     * otherwise dilute the rate) */
    double span = (double)(t->sessions[t->n_sessions - 1].arrival_ns - t->sessions[0].arrival_ns) * 1e-9;
    if (span > 0) s->session_rate = (double)(t->n_sessions - 1) / span;
  }
  for (int64_t i = 0; i < t->n_turns; i++) a[i] = t->turns[i].input_tokens;
  sum__dist(a, t->n_turns, &s->input);
  for (int64_t i = 0; i < t->n_turns; i++) a[i] = t->turns[i].new_tokens;
  sum__dist(a, t->n_turns, &s->new_tokens);
  for (int64_t i = 0; i < t->n_turns; i++) a[i] = t->turns[i].output_tokens;
  sum__dist(a, t->n_turns, &s->output);
  /* prefix reuse from hashes */
  if (t->n_hashes > 0 && t->block_tokens > 0) {
    s->has_hashes = 1;
    order = sum__replay_order(t);
    if (!order) {
      rc = kv_error_set(err, KV_ENOMEM, "summary: out of memory");
      goto done;
    }
    double reused = 0, total_in = 0;
    int64_t seen_blocks = 0;
    for (int64_t i = 0; i < t->n_turns; i++) {
      const trace_turn *u = &t->turns[order[i]];
      const uint64_t *h = trace_turn_hashes(t, u);
      int64_t pre = 0;
      while (pre < u->n_hashes && trace_u64map_get(&seen, h[pre])) pre++;
      for (int32_t j = 0; j < u->n_hashes; j++) {
        if (trace_u64map_get(&seen, h[j])) {
          seen_blocks++;
        } else if (trace_u64map_put(&seen, h[j], 1)) {
          rc = kv_error_set(err, KV_ENOMEM, "summary: out of memory");
          goto done;
        }
      }
      int64_t tok = pre * (int64_t)t->block_tokens;
      reused += (double)(tok < u->input_tokens ? tok : u->input_tokens);
      total_in += u->input_tokens;
      s->blocks += u->n_hashes;
    }
    s->unique_blocks = seen.n;
    s->prefix_reuse_tokens = total_in > 0 ? reused / total_in : 0;
    s->block_reuse = s->blocks ? (double)seen_blocks / (double)s->blocks : 0;
  }
done:
  free(a);
  free(b);
  free(order);
  trace_u64map_free(&seen);
  return rc;
}

static void sum__print_dist(FILE *f, const char *name, const trace_dist *d) {
  fprintf(f, "  %-22s n %-9lld mean %-10.1f min %-7lld p50 %-7lld p90 %-7lld p99 %-7lld max %lld\n",
          name, (long long)d->n, d->mean, (long long)d->min, (long long)d->p50, (long long)d->p90,
          (long long)d->p99, (long long)d->max);
}

void trace_summary_print(FILE *f, const trace *t, const trace_summary *s) {
  fprintf(f, "trace: %s\n  source: %s\n  tokens: %s\n  flags:%s%s%s%s  block_tokens %d\n",
          t->name, t->source, t->tokenizer, t->flags & TRACE_FLAG_FULL_HISTORY ? " full-history" : "",
          t->flags & TRACE_FLAG_OPEN_LOOP ? " open-loop" : "",
          t->flags & TRACE_FLAG_HAS_HASHES ? " hashes" : "", t->flags ? "" : " none",
          (int)t->block_tokens);
  fprintf(f, "sessions %lld (%lld without turns), turns %lld, multi-turn %.1f%%\n",
          (long long)s->n_sessions, (long long)s->empty_sessions, (long long)s->n_turns,
          100 * s->multi_turn_frac);
  sum__print_dist(f, "turns per session", &s->turns);
  sum__print_dist(f, "input tokens/turn", &s->input);
  sum__print_dist(f, "new tokens/turn", &s->new_tokens);
  sum__print_dist(f, "output tokens/turn", &s->output);
  sum__print_dist(f, "session tokens", &s->session_tokens);
  fprintf(f, "sessions over 2K (2048) tokens %.1f%%, over 4K (4096) %.1f%%\n",
          100 * s->frac_over_2k, 100 * s->frac_over_4k);
  fprintf(f, "duration %.1f s, %.3f sessions/s, %.3f requests/s\n", s->duration_s,
          s->session_rate, s->request_rate);
  fprintf(f, "history share of input tokens %.1f%%\n", 100 * s->history_share);
  if (s->has_hashes) {
    fprintf(f, "prefix reuse (infinite cache, arrival order): %.1f%% of input tokens; %.1f%% of "
            "%lld blocks seen before (%lld unique)\n", 100 * s->prefix_reuse_tokens,
            100 * s->block_reuse, (long long)s->blocks, (long long)s->unique_blocks);
  }
}

/* ---- plots -------------------------------------------------------------------------------------- */

/* Writes an empirical CDF of v (sorted in place) with at most 1000 points. */
static int sum__write_cdf(const char *path, int64_t *v, int64_t n, double scale, kv_error *err) {
  qsort(v, (size_t)n, sizeof *v, sum__cmp_i64);
  kv_atomic_file af;
  int rc = kv_atomic_open(&af, path, err);
  if (rc) return rc;
  fprintf(af.f, "# value cdf\n");
  if (n > 0) {
    int64_t pts = n < 1000 ? n : 1000;
    int64_t prev = -1;
    for (int64_t j = 0; j < pts; j++) {
      int64_t i = pts == 1 ? n - 1 : (int64_t)((double)j * (double)(n - 1) / (double)(pts - 1));
      if (i == prev) continue;
      prev = i;
      /* the CDF at v[i] is the share of values <= v[i]: take the last equal element */
      int64_t e = i;
      while (e + 1 < n && v[e + 1] == v[i]) e++;
      fprintf(af.f, "%.9g %.6f\n", (double)v[i] * scale, (double)(e + 1) / (double)n);
    }
  }
  return kv_atomic_commit(&af, err);
}

int trace_summary_write_plots(const trace *t, const char *dir, const char *prefix, char *script,
                              size_t cap, kv_error *err) {
  if (strchr(dir, '\'') || strchr(prefix, '\'') || strchr(prefix, '/')) {
    return kv_error_set(err, KV_EINVAL, "plots: directory and prefix must not contain quotes, "
                        "and the prefix no '/'");
  }
  int rc = kv_mkdirs(dir, err);
  if (rc) return rc;
  int64_t nt = t->n_turns ? t->n_turns : 1, ns = t->n_sessions ? t->n_sessions : 1;
  int64_t *v = malloc((size_t)(nt > ns ? nt : ns) * sizeof *v);
  if (!v) return kv_error_set(err, KV_ENOMEM, "plots: out of memory");
  char p[4200];
  static const char *const names[] = {"input", "new", "output", "session", "turns", "arrivals"};
  for (int w = 0; w < 6 && !rc; w++) {
    int64_t n = 0;
    double scale = 1;
    if (w < 3) {
      for (int64_t i = 0; i < t->n_turns; i++) {
        const trace_turn *u = &t->turns[i];
        v[n++] = w == 0 ? u->input_tokens : w == 1 ? u->new_tokens : u->output_tokens;
      }
    } else if (w == 3 || w == 4) {
      for (int64_t i = 0; i < t->n_sessions; i++) {
        if (t->sessions[i].n_turns == 0) continue;
        v[n++] = w == 3 ? trace_session_tokens(t, i) : t->sessions[i].n_turns;
      }
    } else {
      for (int64_t i = 0; i < t->n_turns; i++) v[n++] = t->turns[i].arrival_ns;
      scale = 1e-9;
    }
    snprintf(p, sizeof p, "%s/%s_%s.dat", dir, prefix, names[w]);
    rc = sum__write_cdf(p, v, n, scale, err);
  }
  free(v);
  if (rc) return rc;
  /* gnuplot writes the images itself: refuse paths it must not replace before it runs */
  static const char *const ext[] = {"png", "svg"};
  for (int k = 0; k < 2 && !rc; k++) {
    snprintf(p, sizeof p, "%s/%s.%s", dir, prefix, ext[k]);
    rc = kv_out_check(p, err);
  }
  if (rc) return rc;
  snprintf(script, cap, "%s/%s.gp", dir, prefix);
  kv_atomic_file af;
  if ((rc = kv_atomic_open(&af, script, err))) return rc;
  FILE *f = af.f;
  /* gnuplot runs in `dir` (cd below), so data files are named relative to it. */
  char title[300];
  snprintf(title, sizeof title, "%s", t->name);
  for (char *c = title; *c; c++) {
    if (*c == '"' || *c == '\\' || *c == '\n') *c = ' ';
  }
  fprintf(f, "# gnuplot script written by kvtrace summary; run: gnuplot %s.gp\n", prefix);
  fprintf(f, "cd '%s'\n", dir);
  int64_t amax = 0;
  for (int64_t i = 0; i < t->n_turns; i++) amax = t->turns[i].arrival_ns > amax ? t->turns[i].arrival_ns : amax;
  fprintf(f, "has_times = %d\n", amax > 0);
  for (int term = 0; term < 2; term++) {
    if (term == 0) fprintf(f, "set terminal pngcairo size 1400,1000 font 'sans,11'\n"
                              "set output '%s.png'\n", prefix);
    else fprintf(f, "set terminal svg size 1400,1000 font 'sans,11'\nset output '%s.svg'\n",
                 prefix);
    fprintf(f,
            "set multiplot layout 2,2 title \"%s: %lld sessions, %lld turns\" noenhanced\n"
            "set grid\nset key bottom right\nset yrange [0:1]\nset ylabel 'CDF'\n"
            "set logscale x\nset format x '10^{%%L}'\n"
            "set title 'tokens per turn'\nset xlabel 'tokens'\n"
            "plot '%s_input.dat' u 1:2 w l lw 2 t 'input', '%s_new.dat' u 1:2 w l lw 2 t 'new', "
            "'%s_output.dat' u 1:2 w l lw 2 t 'output'\n"
            "set title 'session tokens (last input + output)'\n"
            "set arrow 1 from 2048,0 to 2048,1 nohead dt 2 lc rgb 'gray40'\n"
            "set arrow 2 from 4096,0 to 4096,1 nohead dt 2 lc rgb 'gray40'\n"
            "plot '%s_session.dat' u 1:2 w l lw 2 t 'sessions'\n"
            "unset arrow 1\nunset arrow 2\n"
            "set title 'turns per session'\nset xlabel 'turns'\nset format x '%%g'\n"
            "plot '%s_turns.dat' u 1:2 w steps lw 2 t 'sessions'\n"
            "set title 'request arrival times'\nset xlabel 'seconds from the start'\n"
            "unset logscale x\nset ylabel 'share of requests arrived'\n"
            "if (has_times) { plot '%s_arrivals.dat' u 1:2 w l lw 2 t 'requests' } "
            "else { set label 1 'no arrival times in this trace (all at 0)' at graph 0.2,0.5; "
            "plot [0:1] NaN notitle; unset label 1 }\n"
            "unset multiplot\n",
            title, (long long)t->n_sessions, (long long)t->n_turns, prefix, prefix, prefix, prefix,
            prefix, prefix);
  }
  return kv_atomic_commit(&af, err);
}

#include "trace_gen.h"

#include <gsl/gsl_errno.h>
#include <gsl/gsl_randist.h>
#include <gsl/gsl_rng.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "trace_map.h"

/* Fitted by `kvtrace fit-published` (trace_gen_fit_published, default targets, n_mc 200000,
 * seed 1); see docs/trace-format.md. */
#define GEN_DEFAULT_P_SINGLE 0.27
#define GEN_DEFAULT_P_GEOM 0.15368421052631578
#define GEN_DEFAULT_PROMPT_MU 3.8347374664115819
#define GEN_DEFAULT_SIGMA 1.817509532338522
#define GEN_DEFAULT_OUTPUT_MU (GEN_DEFAULT_PROMPT_MU + 0.69314718055994531)

void trace_gen_params_default(trace_gen_params *p) {
  memset(p, 0, sizeof *p);
  p->n_sessions = 9000;
  p->rate = 1.0;
  p->p_single = GEN_DEFAULT_P_SINGLE;
  p->p_geom = GEN_DEFAULT_P_GEOM;
  p->max_turns = 200;
  p->prompt_mu = GEN_DEFAULT_PROMPT_MU;
  p->prompt_sigma = GEN_DEFAULT_SIGMA;
  p->output_mu = GEN_DEFAULT_OUTPUT_MU;
  p->output_sigma = GEN_DEFAULT_SIGMA;
  p->prompt_max = 4096;
  p->output_max = 4096;
  p->think_mean_s = 60.0;
  p->block_tokens = 0;
  p->seed = 1;
}

void trace_gen_targets_default(trace_gen_targets *tg) {
  tg->mean_turns = 5.75;
  tg->multi_turn_frac = 0.73;
  tg->long_tokens = 2048;
  tg->frac_over_long = 0.47;
  tg->longer_tokens = 4096;
  tg->frac_over_longer = 0.30;
  tg->output_ratio = 2.0;
}

int trace_gen_params_check(const trace_gen_params *p, kv_error *err) {
  if (p->n_sessions < 0 || p->n_sessions > INT32_MAX) {
    return kv_error_set(err, KV_EINVAL, "generator: n_sessions %lld not in [0, 2^31)",
                        (long long)p->n_sessions);
  }
  if (!(p->rate > 0) || !isfinite(p->rate)) {
    return kv_error_set(err, KV_EINVAL, "generator: rate %g must be > 0", p->rate);
  }
  if (!(p->p_single >= 0 && p->p_single <= 1)) {
    return kv_error_set(err, KV_EINVAL, "generator: p_single %g not in [0, 1]", p->p_single);
  }
  if (!(p->p_geom > 0 && p->p_geom <= 1)) {
    return kv_error_set(err, KV_EINVAL, "generator: p_geom %g not in (0, 1]", p->p_geom);
  }
  if (p->max_turns < 1) return kv_error_set(err, KV_EINVAL, "generator: max_turns must be >= 1");
  if (!isfinite(p->prompt_mu) || !isfinite(p->output_mu) || !(p->prompt_sigma >= 0) ||
      !(p->output_sigma >= 0) || p->prompt_sigma > 10 || p->output_sigma > 10 ||
      fabs(p->prompt_mu) > 30 || fabs(p->output_mu) > 30) {
    return kv_error_set(err, KV_EINVAL, "generator: length parameters out of range (mu in "
                        "[-30, 30], sigma in [0, 10])");
  }
  if (p->prompt_max < 0 || p->output_max < 0 || p->block_tokens < 0) {
    return kv_error_set(err, KV_EINVAL, "generator: caps and block_tokens must be >= 0");
  }
  if (!(p->think_mean_s >= 0) || !isfinite(p->think_mean_s) || p->think_mean_s > 1e6) {
    return kv_error_set(err, KV_EINVAL, "generator: think_mean_s %g not in [0, 1e6]",
                        p->think_mean_s);
  }
  if (!(p->think_sigma >= 0) || p->think_sigma > 5) {
    return kv_error_set(err, KV_EINVAL, "generator: think_sigma %g not in [0, 5]",
                        p->think_sigma);
  }
  return 0;
}

int trace_gen_params_from_config(const kv_config *cfg, const char *sec, trace_gen_params *p,
                                 kv_error *err) {
  int64_t v;
  double d;
  int rc;
#define GEN_I(key, lo, hi, field)                                                            \
  if ((rc = kv_config_int(cfg, sec, key, (int64_t)p->field, lo, hi, &v, err))) return rc;  \
  p->field = v
#define GEN_D(key, lo, hi, field)                                                            \
  if ((rc = kv_config_double(cfg, sec, key, p->field, lo, hi, &d, err))) return rc;        \
  p->field = d
  GEN_I("n_sessions", 0, INT32_MAX, n_sessions);
  GEN_D("rate", 1e-9, 1e9, rate);
  GEN_D("p_single", 0, 1, p_single);
  GEN_D("p_geom", 1e-9, 1, p_geom);
  GEN_I("max_turns", 1, 1000000, max_turns);
  GEN_D("prompt_mu", -30, 30, prompt_mu);
  GEN_D("prompt_sigma", 0, 10, prompt_sigma);
  GEN_D("output_mu", -30, 30, output_mu);
  GEN_D("output_sigma", 0, 10, output_sigma);
  GEN_I("prompt_max", 0, INT32_MAX, prompt_max);
  GEN_I("output_max", 0, INT32_MAX, output_max);
  GEN_D("think_mean_s", 0, 1e6, think_mean_s);
  GEN_D("think_sigma", 0, 5, think_sigma);
  GEN_I("block_tokens", 0, 1 << 20, block_tokens);
  if ((rc = kv_config_int(cfg, sec, "seed", (int64_t)(p->seed & INT64_MAX), 0, INT64_MAX, &v,
                          err))) {
    return rc;
  }
  p->seed = (uint64_t)v;
#undef GEN_I
#undef GEN_D
  return trace_gen_params_check(p, err);
}

void trace_gen_params_write(FILE *f, const char *section, const trace_gen_params *p) {
  fprintf(f, "[%s]\n", section);
  fprintf(f, "n_sessions = %lld\nrate = %.17g\np_single = %.17g\np_geom = %.17g\n",
          (long long)p->n_sessions, p->rate, p->p_single, p->p_geom);
  fprintf(f, "max_turns = %d\nprompt_mu = %.17g\nprompt_sigma = %.17g\noutput_mu = %.17g\n",
          (int)p->max_turns, p->prompt_mu, p->prompt_sigma, p->output_mu);
  fprintf(f, "output_sigma = %.17g\nprompt_max = %d\noutput_max = %d\nthink_mean_s = %.17g\n",
          p->output_sigma, (int)p->prompt_max, (int)p->output_max, p->think_mean_s);
  if (p->think_sigma > 0) fprintf(f, "think_sigma = %.17g\n", p->think_sigma);
  fprintf(f, "block_tokens = %d\nseed = %llu\n", (int)p->block_tokens,
          (unsigned long long)p->seed);
}

/* ---- generation ------------------------------------------------------------------------------ */

enum { GEN_R_ARRIVAL, GEN_R_TURNS, GEN_R_LENGTH, GEN_R_THINK, GEN_R_N };

static int gen__rngs(gsl_rng *r[GEN_R_N], uint64_t seed) {
  uint64_t s = seed;
  for (int i = 0; i < GEN_R_N; i++) {
    r[i] = gsl_rng_alloc(gsl_rng_mt19937);
    if (!r[i]) {
      for (int j = 0; j < i; j++) gsl_rng_free(r[j]);
      return KV_ENOMEM;
    }
    s = trace_mix64(s + (uint64_t)i);
    gsl_rng_set(r[i], (unsigned long)(s & 0xFFFFFFFFu) | 1u);
  }
  return 0;
}

static void gen__rngs_free(gsl_rng *r[GEN_R_N]) {
  for (int i = 0; i < GEN_R_N; i++) gsl_rng_free(r[i]);
}

static int32_t gen__turns(const trace_gen_params *p, gsl_rng *r) {
  if (gsl_rng_uniform(r) < p->p_single) return 1;
  unsigned g = p->p_geom >= 1 ? 1u : gsl_ran_geometric(r, p->p_geom);
  int64_t turns = 1 + (int64_t)g;
  return turns > p->max_turns ? p->max_turns : (int32_t)turns;
}

/* round(exp(mu + sigma z)) clamped to [1, cap]. */
static int64_t gen__len(double mu, double sigma, double z, int32_t cap) {
  double x = exp(mu + sigma * z);
  double lim = cap > 0 ? (double)cap : (double)INT32_MAX;
  if (!(x < lim)) return (int64_t)lim;
  int64_t v = llround(x);
  return v < 1 ? 1 : v;
}

static int64_t gen__exp_ns(gsl_rng *r, double mean_s) {
  if (mean_s <= 0) return 0;
  double ns = gsl_ran_exponential(r, mean_s) * 1e9;
  return ns > 9e18 ? (int64_t)9e18 : llround(ns);
}

/* A think time of mean mean_s: exponential (sigma = 0) or log-normal with log-space sd sigma
 * (mu = ln(mean) - sigma^2 / 2 keeps the mean). */
static int64_t gen__think_ns(gsl_rng *r, double mean_s, double sigma) {
  if (sigma <= 0 || mean_s <= 0) return gen__exp_ns(r, mean_s);
  double ns = exp(log(mean_s) - 0.5 * sigma * sigma + sigma * gsl_ran_gaussian_ziggurat(r, 1.0)) * 1e9;
  return ns > 9e18 ? (int64_t)9e18 : llround(ns);
}

/* Hash of block j (fill tokens) of the session keyed `key`, chained on the previous block. */
static uint64_t gen__block_hash(uint64_t prev, uint64_t key, int64_t j, int64_t fill) {
  return trace_mix64(prev ^ trace_mix64(key ^ trace_mix64((uint64_t)j * 2 + 1)) ^
                     (uint64_t)fill * 0x9e3779b97f4a7c15ull);
}

/* ---- the session skeleton (trace_gen.h) ------------------------------------------------------ */

int trace_gen_sessions(const trace_gen_model *m, int64_t n_sessions, trace *t, kv_error *err) {
  int rc = 0;
  for (int64_t i = 0; i < n_sessions && !rc; i++) {
    int64_t arrival = 0, n_turns = 0;
    if ((rc = m->session(m->ctx, i, &arrival, &n_turns, err))) break;
    int64_t sid = trace_add_session(t, i, arrival, err);
    if (sid < 0) {
      rc = (int)sid;
      break;
    }
    int64_t hist = 0, at = arrival;
    for (int64_t k = 0; k < n_turns; k++) {
      trace_gen_turn u = {0, 0, 0, NULL, 0};
      int s = m->turn(m->ctx, i, k, hist, &u, err);
      if (s < 0) rc = s;
      if (s) break; /* an error, or the session ends here */
      if (__builtin_add_overflow(at, u.think_ns, &at)) {
        rc = kv_error_set(err, KV_ERANGE, "generator: session %lld turn %d arrives after 2^63 ns",
                          (long long)i, (int)k);
        break;
      }
      int64_t tr = trace_add_turn(t, at, u.think_ns, hist + u.new_tokens, u.new_tokens,
                                  u.output_tokens, u.hashes, u.n_hashes, err);
      if (tr < 0) {
        rc = (int)tr;
        break;
      }
      hist += u.new_tokens + u.output_tokens;
    }
  }
  return rc;
}

int64_t trace_gen_poisson_ns(gsl_rng *r, double rate, double *clock_s) {
  *clock_s += gsl_ran_exponential(r, 1.0 / rate);
  return (int64_t)llround(*clock_s * 1e9);
}

int64_t trace_gen_lognormal(gsl_rng *r, double median, double sigma, int64_t max) {
  int64_t v = (int64_t)llround(gsl_ran_lognormal(r, log(median), sigma));
  return v < 1 ? 1 : (v > max ? max : v);
}

/* ---- the ShareGPT-style generator on the skeleton -------------------------------------------- */

typedef struct gen__ctx {
  const trace_gen_params *p;
  gsl_rng *r[GEN_R_N];
  int64_t now;             /* the last session's arrival (ns) */
  uint64_t key;            /* the current session's hash key */
  uint64_t *hashes;        /* (cap_h) the current turn's block hashes */
  int64_t cap_h;
} gen__ctx;

static int gen__session(void *ctx, int64_t i, int64_t *arrival_ns, int64_t *n_turns,
                        kv_error *err) {
  gen__ctx *c = ctx;
  int64_t gap = gen__exp_ns(c->r[GEN_R_ARRIVAL], 1.0 / c->p->rate);
  if (__builtin_add_overflow(c->now, gap, &c->now)) {
    return kv_error_set(err, KV_ERANGE, "generator: session %lld arrives after 2^63 ns",
                        (long long)i);
  }
  *arrival_ns = c->now;
  *n_turns = gen__turns(c->p, c->r[GEN_R_TURNS]);
  c->key = trace_mix64(c->p->seed ^ trace_mix64((uint64_t)i + 0x5151));
  return 0;
}

/* Chained block hashes of a turn's `in` input tokens into c->hashes. */
static int gen__hashes(gen__ctx *c, int64_t in, trace_gen_turn *u, kv_error *err) {
  const int64_t B = c->p->block_tokens;
  int64_t nb = (in + B - 1) / B;
  if (nb > c->cap_h) {
    int64_t nc = c->cap_h ? c->cap_h : 256;
    while (nc < nb) nc *= 2;
    uint64_t *h2 = realloc(c->hashes, (size_t)nc * sizeof *h2);
    if (!h2) return kv_error_set(err, KV_ENOMEM, "generator: out of memory");
    c->hashes = h2;
    c->cap_h = nc;
  }
  uint64_t prev = c->key;
  for (int64_t j = 0; j < nb; j++) {
    int64_t fill = in - j * B;
    if (fill > B) fill = B;
    c->hashes[j] = prev = gen__block_hash(prev, c->key, j, fill);
  }
  u->hashes = c->hashes;
  u->n_hashes = (int32_t)nb;
  return 0;
}

static int gen__turn(void *ctx, int64_t i, int64_t k, int64_t history, trace_gen_turn *u,
                     kv_error *err) {
  gen__ctx *c = ctx;
  const trace_gen_params *p = c->p;
  u->new_tokens = gen__len(p->prompt_mu, p->prompt_sigma,
                           gsl_ran_gaussian_ziggurat(c->r[GEN_R_LENGTH], 1.0), p->prompt_max);
  u->output_tokens = gen__len(p->output_mu, p->output_sigma,
                              gsl_ran_gaussian_ziggurat(c->r[GEN_R_LENGTH], 1.0), p->output_max);
  u->think_ns = k == 0 ? 0 : gen__think_ns(c->r[GEN_R_THINK], p->think_mean_s, p->think_sigma);
  int64_t in = history + u->new_tokens;
  if (in + u->output_tokens > INT32_MAX) {
    return kv_error_set(err, KV_ERANGE, "generator: session %lld turn %d exceeds 2^31-1 tokens "
                        "(lower the length parameters or set caps)", (long long)i, (int)k);
  }
  return p->block_tokens > 0 ? gen__hashes(c, in, u, err) : 0;
}

int trace_gen_generate(const trace_gen_params *p, trace *t, kv_error *err) {
  trace_init(t);
  int rc = trace_gen_params_check(p, err);
  if (rc) return rc;
  gsl_set_error_handler_off();
  gen__ctx c = {p, {NULL}, 0, 0, NULL, 0};
  if (gen__rngs(c.r, p->seed)) return kv_error_set(err, KV_ENOMEM, "generator: out of memory");
  snprintf(t->name, sizeof t->name, "sharegpt-gen seed=%llu", (unsigned long long)p->seed);
  char think[96];
  if (p->think_sigma > 0) {
    snprintf(think, sizeof think, "lognormal(mean %g s, sigma %g)", p->think_mean_s, p->think_sigma);
  } else {
    snprintf(think, sizeof think, "exp(%g s)", p->think_mean_s);
  }
  snprintf(t->source, sizeof t->source,
           "trace_gen: n=%lld rate=%g/s p_single=%g p_geom=%g max_turns=%d prompt=LN(%g,%g) "
           "output=LN(%g,%g) caps=%d/%d think=%s block=%d",
           (long long)p->n_sessions, p->rate, p->p_single, p->p_geom, (int)p->max_turns,
           p->prompt_mu, p->prompt_sigma, p->output_mu, p->output_sigma, (int)p->prompt_max,
           (int)p->output_max, think, (int)p->block_tokens);
  snprintf(t->tokenizer, sizeof t->tokenizer, "synthetic");
  t->flags = TRACE_FLAG_FULL_HISTORY | (p->block_tokens > 0 ? TRACE_FLAG_HAS_HASHES : 0u);
  t->block_tokens = p->block_tokens;
  const trace_gen_model m = {&c, gen__session, gen__turn};
  rc = trace_gen_sessions(&m, p->n_sessions, t, err);
  free(c.hashes);
  gen__rngs_free(c.r);
  if (rc) trace_free(t);
  return rc;
}

/* ---- fit to the published statistics --------------------------------------------------------- */

typedef struct gen__mc {
  int64_t n;          /* sessions */
  int32_t *turns;     /* (n) */
  int64_t *first;     /* (n) index of the session's first turn in z */
  double *zp, *zo;    /* (total turns) standard normals */
} gen__mc;

/* Fraction of MC sessions whose total tokens exceed `thr`, at (mu_p, sigma). */
static void gen__mc_tail(const gen__mc *m, const trace_gen_params *p, double mu_p, double sigma,
                         double ln_ratio, int64_t thr1, int64_t thr2, double *f1, double *f2) {
  int64_t c1 = 0, c2 = 0;
  for (int64_t i = 0; i < m->n; i++) {
    int64_t s = 0;
    for (int32_t k = 0; k < m->turns[i]; k++) {
      int64_t j = m->first[i] + k;
      s += gen__len(mu_p, sigma, m->zp[j], p->prompt_max) +
           gen__len(mu_p + ln_ratio, sigma, m->zo[j], p->output_max);
    }
    c1 += s > thr1;
    c2 += s > thr2;
  }
  *f1 = (double)c1 / (double)m->n;
  *f2 = (double)c2 / (double)m->n;
}

int trace_gen_fit_published(const trace_gen_targets *tg, int64_t n_mc, uint64_t seed,
                            trace_gen_params *p, trace_gen_fit_report *rep, kv_error *err) {
  if (!(tg->multi_turn_frac > 0 && tg->multi_turn_frac < 1) || !(tg->output_ratio > 0) ||
      tg->mean_turns <= 1 + tg->multi_turn_frac - 1e-12 || tg->long_tokens <= 0 ||
      tg->longer_tokens <= tg->long_tokens || !(tg->frac_over_long > tg->frac_over_longer) ||
      !(tg->frac_over_longer > 0) || !(tg->frac_over_long < 1)) {
    return kv_error_set(err, KV_EINVAL, "fit: inconsistent targets (need 0 < multi < 1, mean "
                        "turns > 1 + multi, longer > long, 0 < frac(longer) < frac(long) < 1)");
  }
  if (n_mc < 1000 || n_mc > 100000000) {
    return kv_error_set(err, KV_EINVAL, "fit: n_mc %lld not in [1000, 1e8]", (long long)n_mc);
  }
  /* Turns, closed form: E[T] = p_single + (1 - p_single) * E[T | T >= 2], E[T | T >= 2] =
   * 1 + 1/p_geom. */
  p->p_single = 1 - tg->multi_turn_frac;
  double m2 = (tg->mean_turns - p->p_single) / tg->multi_turn_frac;
  p->p_geom = 1.0 / (m2 - 1.0);
  int rc = trace_gen_params_check(p, err);
  if (rc) return rc;
  gsl_set_error_handler_off();
  gsl_rng *r[GEN_R_N];
  if (gen__rngs(r, seed)) return kv_error_set(err, KV_ENOMEM, "fit: out of memory");
  gen__mc m = {0};
  m.n = n_mc;
  m.turns = malloc((size_t)n_mc * sizeof *m.turns);
  m.first = malloc((size_t)n_mc * sizeof *m.first);
  int64_t total = 0;
  if (m.turns && m.first) {
    for (int64_t i = 0; i < n_mc; i++) {
      m.turns[i] = gen__turns(p, r[GEN_R_TURNS]);
      m.first[i] = total;
      total += m.turns[i];
    }
    m.zp = malloc((size_t)total * sizeof *m.zp);
    m.zo = malloc((size_t)total * sizeof *m.zo);
  }
  if (!m.turns || !m.first || !m.zp || !m.zo) {
    rc = kv_error_set(err, KV_ENOMEM, "fit: out of memory (%lld sessions)", (long long)n_mc);
  } else {
    for (int64_t j = 0; j < total; j++) {
      m.zp[j] = gsl_ran_gaussian_ziggurat(r[GEN_R_LENGTH], 1.0);
      m.zo[j] = gsl_ran_gaussian_ziggurat(r[GEN_R_LENGTH], 1.0);
    }
    double lr = log(tg->output_ratio);
    /* Outer bisection on sigma: with mu chosen so that P(S > long) is on target, P(S > longer)
     * grows with sigma (a wider per-turn spread fattens the tail of S). */
    double s_lo = 0.01, s_hi = 4.0, mu = 0, f1 = 0, f2 = 0;
    for (int it = 0; it < 40; it++) {
      double sigma = 0.5 * (s_lo + s_hi);
      /* Inner bisection on mu: P(S > long) grows with mu. */
      double mu_lo = -5, mu_hi = 15;
      for (int jt = 0; jt < 45; jt++) {
        mu = 0.5 * (mu_lo + mu_hi);
        gen__mc_tail(&m, p, mu, sigma, lr, tg->long_tokens, tg->longer_tokens, &f1, &f2);
        if (f1 < tg->frac_over_long) mu_lo = mu;
        else mu_hi = mu;
      }
      mu = 0.5 * (mu_lo + mu_hi);
      gen__mc_tail(&m, p, mu, sigma, lr, tg->long_tokens, tg->longer_tokens, &f1, &f2);
      if (f2 < tg->frac_over_longer) s_lo = sigma;
      else s_hi = sigma;
    }
    double sigma = 0.5 * (s_lo + s_hi);
    p->prompt_sigma = p->output_sigma = sigma;
    p->prompt_mu = mu;
    p->output_mu = mu + lr;
    if (rep) {
      gen__mc_tail(&m, p, mu, sigma, lr, tg->long_tokens, tg->longer_tokens, &f1, &f2);
      memset(rep, 0, sizeof *rep);
      rep->n_mc = n_mc;
      int64_t multi = 0;
      double sp = 0, so = 0;
      for (int64_t i = 0; i < n_mc; i++) multi += m.turns[i] > 1;
      for (int64_t j = 0; j < total; j++) {
        sp += (double)gen__len(p->prompt_mu, sigma, m.zp[j], p->prompt_max);
        so += (double)gen__len(p->output_mu, sigma, m.zo[j], p->output_max);
      }
      rep->mean_turns = (double)total / (double)n_mc;
      rep->multi_turn_frac = (double)multi / (double)n_mc;
      rep->frac_over_long = f1;
      rep->frac_over_longer = f2;
      rep->mean_prompt = sp / (double)total;
      rep->mean_output = so / (double)total;
    }
    if (sigma > 3.99 || sigma < 0.011 || mu > 14.9 || mu < -4.9) {
      rc = kv_error_set(err, KV_ERANGE, "fit: no solution inside the search box (sigma %.3f, mu "
                        "%.3f); the targets cannot be met by this model", sigma, mu);
    }
  }
  free(m.turns);
  free(m.first);
  free(m.zp);
  free(m.zo);
  gen__rngs_free(r);
  return rc;
}

/* ---- fit to a trace -------------------------------------------------------------------------- */

int trace_gen_fit_trace(const trace *t, trace_gen_params *p, kv_error *err) {
  int64_t sessions = 0, single = 0, multi_turns = 0, nturn = 0, nthink = 0;
  double sp = 0, sp2 = 0, so = 0, so2 = 0, think = 0;
  int32_t max_t = 1;
  for (int64_t i = 0; i < t->n_sessions; i++) {
    const trace_session *s = &t->sessions[i];
    if (s->n_turns == 0) continue;
    sessions++;
    if (s->n_turns == 1) single++;
    else multi_turns += s->n_turns;
    if (s->n_turns > max_t) max_t = s->n_turns;
    for (int32_t k = 0; k < s->n_turns; k++) {
      const trace_turn *u = &t->turns[s->first_turn + k];
      double lp = log(u->new_tokens < 1 ? 1.0 : (double)u->new_tokens);
      double lo = log(u->output_tokens < 1 ? 1.0 : (double)u->output_tokens);
      sp += lp, sp2 += lp * lp, so += lo, so2 += lo * lo;
      nturn++;
      if (k > 0 && u->think_ns > 0) think += (double)u->think_ns * 1e-9, nthink++;
    }
  }
  if (sessions == 0) return kv_error_set(err, KV_EINVAL, "fit: the trace has no turns");
  p->p_single = (double)single / (double)sessions;
  int64_t n_multi = sessions - single;
  /* MLE of a geometric on {1, 2, ...} for T - 1: p = 1 / mean(T - 1). */
  p->p_geom = n_multi ? (double)n_multi / (double)(multi_turns - n_multi) : 1.0;
  if (p->p_geom > 1) p->p_geom = 1;
  if (max_t > p->max_turns) p->max_turns = max_t;
  double mp = sp / (double)nturn, mo = so / (double)nturn;
  p->prompt_mu = mp;
  p->prompt_sigma = sqrt(fmax(0.0, sp2 / (double)nturn - mp * mp));
  p->output_mu = mo;
  p->output_sigma = sqrt(fmax(0.0, so2 / (double)nturn - mo * mo));
  if (nthink) p->think_mean_s = think / (double)nthink;
  return trace_gen_params_check(p, err);
}

/* ---- re-timing ------------------------------------------------------------------------------- */

int trace_gen_retime(trace *t, double rate, double think_mean_s, uint64_t seed, kv_error *err) {
  if (!(rate > 0) || !isfinite(rate) || !(think_mean_s >= 0) || !isfinite(think_mean_s)) {
    return kv_error_set(err, KV_EINVAL, "retime: rate must be > 0 and think mean >= 0");
  }
  gsl_set_error_handler_off();
  gsl_rng *r[GEN_R_N];
  if (gen__rngs(r, seed)) return kv_error_set(err, KV_ENOMEM, "retime: out of memory");
  int64_t now = 0;
  int rc = 0;
  for (int64_t i = 0; i < t->n_sessions && !rc; i++) {
    trace_session *s = &t->sessions[i];
    int64_t gap = gen__exp_ns(r[GEN_R_ARRIVAL], 1.0 / rate);
    if (__builtin_add_overflow(now, gap, &now)) rc = KV_ERANGE;
    s->arrival_ns = now;
    int64_t at = now;
    for (int32_t k = 0; k < s->n_turns && !rc; k++) {
      trace_turn *u = &t->turns[s->first_turn + k];
      int64_t think = k == 0 ? 0 : gen__exp_ns(r[GEN_R_THINK], think_mean_s);
      if (__builtin_add_overflow(at, think, &at)) rc = KV_ERANGE;
      u->arrival_ns = at;
      u->think_ns = think;
    }
  }
  gen__rngs_free(r);
  if (rc) return kv_error_set(err, rc, "retime: arrival times overflow 2^63 ns");
  t->flags &= ~(uint32_t)TRACE_FLAG_OPEN_LOOP;
  return trace_check(t, err);
}

/* qkv_synth.c — seeded synthetic Q/K/V with heavy-tailed attention, for tests and the quick main
 * job when no recording is at hand. Not a substitute for recorded tensors (traces/record/).
 *
 * Construction per (layer, KV head): a shared "topic" direction u; keys are Gaussian noise plus,
 * for a sparse set of heavy-hitter tokens (about 2%), a Pareto-distributed multiple of u; token 0
 * (the attention sink) carries a large multiple of u. Queries are a random multiple of u plus
 * noise, scaled by a per-head temperature drawn log-uniformly, so some heads are peaked and some
 * flat. A RoPE-style rotation (theta 10000) applied to a constant component gives some heads a
 * recency preference (only that component is rotated, so the topic part's q.k does not depend
 * on distance). Layer 0 is made flat (low temperature), as in trained models, where the
 * first layer attends broadly.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kv_rng.h"
#include "qkv.h"

void qkv_synth_defaults(qkv_synth_params *p) {
  memset(p, 0, sizeof *p);
  p->seed = 1;
  p->n_seqs = 1;
  p->n_tokens = 2048;
  p->n_layers = 2;
  p->n_heads = 8;
  p->n_kv_heads = 2;
  p->head_dim = 64;
  p->n_positions = 16;
  p->dtype = QKV_DTYPE_F16;
}

/* Rotates x [D] in place by RoPE at position pos (pairs (i, i + D/2), theta 10000). */
static void qkv__rope(float *x, int d, int64_t pos) {
  int half = d / 2;
  for (int i = 0; i < half; i++) {
    double freq = pow(10000.0, -2.0 * i / d);
    double a = (double)pos * freq;
    double c = cos(a), s = sin(a);
    double x0 = x[i], x1 = x[i + half];
    x[i] = (float)(x0 * c - x1 * s);
    x[i + half] = (float)(x0 * s + x1 * c);
  }
}

typedef struct {
  float *u;        /* [D] topic direction, unit norm */
  float *loc;      /* [D] constant component rotated by RoPE (recency) */
  double w_local;  /* weight of the recency component */
} qkv__head;

static void qkv__unit(kv_rng *r, float *v, int d) {
  double n = 0;
  for (int i = 0; i < d; i++) {
    v[i] = (float)kv_rng_normal(r);
    n += (double)v[i] * v[i];
  }
  n = sqrt(n);
  for (int i = 0; i < d; i++) v[i] = (float)(v[i] / n);
}

int qkv_synth_write(const char *path, const qkv_synth_params *p, kv_error *err) {
  if (p->n_seqs < 1 || p->n_tokens < 2 || p->n_layers < 1 || p->n_heads < 1 ||
      p->n_kv_heads < 1 || p->n_heads % p->n_kv_heads || p->head_dim < 2 || p->head_dim % 2 ||
      p->n_positions < 1 || p->n_positions > p->n_tokens) {
    return kv_error_set(err, KV_EINVAL, "synthetic Q/K/V: inconsistent parameters");
  }
  qkv_model m = {0};
  snprintf(m.name, sizeof m.name, "synthetic-heavy-tail");
  snprintf(m.creator, sizeof m.creator, "kvlab qkv_synth seed=%llu",
           (unsigned long long)p->seed);
  m.n_layers = p->n_layers;
  m.n_heads = p->n_heads;
  m.n_kv_heads = p->n_kv_heads;
  m.head_dim = p->head_dim;
  m.rope_theta = 10000.0;
  m.k_post_rope = 1;
  qkv_writer *w;
  int rc = qkv_writer_open(path, &m, &w, err);
  if (rc) return rc;
  const int D = p->head_dim, Hkv = p->n_kv_heads, Hq = p->n_heads, G = Hq / Hkv;
  const int64_t T = p->n_tokens;
  const int64_t P = p->n_positions;
  float *K = malloc((size_t)T * Hkv * D * sizeof *K);
  float *V = malloc((size_t)T * Hkv * D * sizeof *V);
  float *Q = malloc((size_t)P * Hq * D * sizeof *Q);
  int64_t *pos = malloc((size_t)P * sizeof *pos);
  qkv__head *hd = calloc((size_t)Hkv, sizeof *hd);
  float *vecs = malloc((size_t)Hkv * 2 * D * sizeof *vecs);
  if (!K || !V || !Q || !pos || !hd || !vecs) {
    rc = kv_error_set(err, KV_ENOMEM, "synthetic Q/K/V: out of memory");
    goto done;
  }
  kv_rng r;
  kv_rng_seed(&r, p->seed);
  for (int64_t i = 0; i < P; i++) {
    int64_t lo = T / 2, span = T - 1 - lo;
    pos[i] = lo + (P > 1 ? span * i / (P - 1) : span);
    if (i > 0 && pos[i] <= pos[i - 1]) pos[i] = pos[i - 1] + 1;
  }
  for (int s = 0; s < p->n_seqs && !rc; s++) {
    char name[64];
    snprintf(name, sizeof name, "synthetic-%d", s);
    int si = qkv_writer_add_seq(w, name, "synthetic", "kvlab qkv_synth", T, NULL, err);
    if (si < 0) {
      rc = si;
      break;
    }
    for (int l = 0; l < p->n_layers && !rc; l++) {
      for (int h = 0; h < Hkv; h++) {
        hd[h].u = vecs + (size_t)h * 2 * D;
        hd[h].loc = hd[h].u + D;
        qkv__unit(&r, hd[h].u, D);
        qkv__unit(&r, hd[h].loc, D);
        /* Recency: q.k of this part is up to w^2 / sqrt(D) nats at distance 0. */
        hd[h].w_local = kv_rng_uniform(&r) < 0.4 ? 3.0 + 3.0 * kv_rng_uniform(&r) : 0.0;
      }
      for (int64_t t = 0; t < T; t++) {
        for (int h = 0; h < Hkv; h++) {
          float *k = K + ((size_t)t * Hkv + h) * D;
          float *v = V + ((size_t)t * Hkv + h) * D;
          /* Topic weight: the score of this key for a query of strength tau*a is about
           * tau * a * ak nats (q carries sqrt(D) to cancel the 1/sqrt(D) scale). */
          double ak = 0.0;
          if (t == 0) {
            ak = 6.0; /* attention sink */
          } else if (kv_rng_uniform(&r) < 0.02) {
            ak = 1.0 / pow(1.0 - kv_rng_uniform(&r), 1.0 / 1.2); /* Pareto, alpha 1.2 */
            if (ak > 12.0) ak = 12.0;
          }
          /* Recency part: RoPE-rotated constant, so q.k of that part depends on t - p. */
          for (int i = 0; i < D; i++) k[i] = (float)(hd[h].w_local * hd[h].loc[i]);
          qkv__rope(k, D, t);
          for (int i = 0; i < D; i++) {
            k[i] += (float)(0.6 * kv_rng_normal(&r) + ak * hd[h].u[i]);
            v[i] = (float)kv_rng_normal(&r);
          }
        }
      }
      for (int64_t i = 0; i < P; i++) {
        for (int hq = 0; hq < Hq; hq++) {
          const qkv__head *H = &hd[hq / G];
          /* Temperature: log-uniform in [0.2, 2]; layer 0 flat. */
          double tau = l == 0 ? 0.1 : 0.2 * pow(10.0, kv_rng_uniform(&r));
          double a = 0.5 + kv_rng_uniform(&r);
          float *q = Q + ((size_t)i * Hq + hq) * D;
          for (int d = 0; d < D; d++) q[d] = (float)(H->w_local * H->loc[d]);
          double sd = sqrt((double)D);
          qkv__rope(q, D, pos[i]);
          for (int d = 0; d < D; d++) {
            q[d] += (float)(tau * sd * (a * H->u[d] + 0.3 / sd * kv_rng_normal(&r)));
          }
        }
      }
      rc = qkv_writer_add_layer(w, si, l, p->dtype, K, V, Q, pos, P, NULL, err);
    }
  }
done:
  free(K);
  free(V);
  free(Q);
  free(pos);
  free(hd);
  free(vecs);
  {
    kv_error e2 = {0};
    int rc2 = qkv_writer_close(w, rc ? &e2 : err);
    if (!rc) rc = rc2;
  }
  return rc;
}

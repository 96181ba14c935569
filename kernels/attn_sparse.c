/* attn_sparse.c — fixed top-k (Quest-style) and Progressive Sparse Attention, CPU reference.
 *
 * Both methods choose one block set per KV head (GQA: the KV of a block is read once for the
 * whole query group) and then compute exact attention of each query head over that set.
 *
 * Top-k: k = max(forced, token_budget / block_size) blocks; the forced blocks (sink, recent)
 * first, the rest by the group-combined score (max or sum over the group's heads of the Quest
 * bound or of q.mean), ties to the lower block index.
 *
 * PSA (Figure 4 of the paper, with our design choices in attn.h): blocks are visited in a fixed
 * order — forced blocks as iteration 0, then groups of group_blocks blocks by descending rank key
 * (the group's sum of per-head estimated probabilities). After each iteration, for every head,
 *   P_acc = S_visited / (S_visited + U),  U = estimated mass of the unvisited blocks
 * in one exponent frame (online-softmax state m, l for S_visited; U from the estimator); the
 * KV head stops when every head of its group has P_acc >= epsilon. U after k visited blocks is a
 * suffix sum over the fixed visit order, computed once, so there is no cancellation.
 * With epsilon = 1 the test can only pass when U = 0, i.e. after every block: dense attention.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attn.h"

int attn_result_alloc(attn_result *r, const attn_shape *s, int64_t max_blocks, kv_error *err) {
  memset(r, 0, sizeof *r);
  r->max_blocks = max_blocks;
  r->out = malloc((size_t)s->n_heads * s->head_dim * sizeof *r->out);
  r->blocks_read = calloc((size_t)s->n_kv_heads, sizeof *r->blocks_read);
  r->tokens_read = calloc((size_t)s->n_kv_heads, sizeof *r->tokens_read);
  r->iterations = calloc((size_t)s->n_kv_heads, sizeof *r->iterations);
  r->block_read = calloc((size_t)s->n_kv_heads * (size_t)(max_blocks > 0 ? max_blocks : 1), 1);
  r->est_mass = calloc((size_t)s->n_heads, sizeof *r->est_mass);
  if (!r->out || !r->blocks_read || !r->tokens_read || !r->iterations || !r->block_read ||
      !r->est_mass) {
    attn_result_free(r);
    return kv_error_set(err, KV_ENOMEM, "attention result: out of memory");
  }
  return 0;
}

void attn_result_free(attn_result *r) {
  free(r->out);
  free(r->blocks_read);
  free(r->tokens_read);
  free(r->iterations);
  free(r->block_read);
  free(r->est_mass);
  memset(r, 0, sizeof *r);
}

/* ---- per-block scores ------------------------------------------------------------------- */

static double attn__quest(const float *q, const attn_blockmeta *m, int64_t b, int kvh) {
  const int D = m->head_dim;
  const float *mn = m->kmin + ((size_t)b * m->n_kv_heads + kvh) * D;
  const float *mx = m->kmax + ((size_t)b * m->n_kv_heads + kvh) * D;
  double s = 0.0;
  for (int d = 0; d < D; d++) {
    double a = (double)q[d] * mn[d], c = (double)q[d] * mx[d];
    s += a > c ? a : c;
  }
  return s;
}

static double attn__dot_mean(const float *q, const attn_blockmeta *m, int64_t b, int kvh) {
  const int D = m->head_dim;
  const float *mu = m->kmean + ((size_t)b * m->n_kv_heads + kvh) * D;
  double s = 0.0;
  for (int d = 0; d < D; d++) s += (double)q[d] * mu[d];
  return s;
}

static double attn__qvar(const float *q, const attn_blockmeta *m, int64_t b, int kvh) {
  const int D = m->head_dim;
  const float *v = m->kvar + ((size_t)b * m->n_kv_heads + kvh) * D;
  double s = 0.0;
  for (int d = 0; d < D; d++) s += (double)q[d] * q[d] * v[d];
  return s;
}

/* Scaled rank score of block b for one head (a logit: per-token score estimate). */
static double attn__rank_score(attn_rank r, const float *q, const attn_blockmeta *m, int64_t b,
                               int kvh, double scale) {
  return scale * (r == ATTN_RANK_QUEST ? attn__quest(q, m, b, kvh) : attn__dot_mean(q, m, b, kvh));
}

/* log of the estimated unnormalised mass of block b for one head. */
static double attn__log_est(attn_estimate e, const float *q, const attn_blockmeta *m, int64_t b,
                            int kvh, double scale) {
  double n = (double)attn_block_tokens(m, b);
  switch (e) {
    case ATTN_EST_BOUND: return log(n) + scale * attn__quest(q, m, b, kvh);
    case ATTN_EST_MEAN: return log(n) + scale * attn__dot_mean(q, m, b, kvh);
    case ATTN_EST_LOGNORMAL:
      return log(n) + scale * attn__dot_mean(q, m, b, kvh) +
             0.5 * scale * scale * attn__qvar(q, m, b, kvh);
  }
  return 0.0;
}

/* ---- exact attention over blocks, online softmax ----------------------------------------- */

typedef struct {
  double m, l;
  double *o; /* [D] unnormalised */
} attn__acc;

static void attn__acc_block(attn__acc *a, const float *q, const float *K, const float *V,
                            int Hkv, int D, int kvh, int64_t t0, int64_t t1, double scale) {
  for (int64_t t = t0; t < t1; t++) {
    const float *k = K + ((size_t)t * Hkv + kvh) * D;
    double s = 0.0;
    for (int d = 0; d < D; d++) s += (double)q[d] * (double)k[d];
    s *= scale;
    const float *v = V + ((size_t)t * Hkv + kvh) * D;
    if (s > a->m) {
      double c = exp(a->m - s); /* exp(-inf) = 0 on the first token */
      a->l = a->l * c + 1.0;
      for (int d = 0; d < D; d++) a->o[d] = a->o[d] * c + (double)v[d];
      a->m = s;
    } else {
      double p = exp(s - a->m);
      a->l += p;
      for (int d = 0; d < D; d++) a->o[d] += p * (double)v[d];
    }
  }
}

/* Sort helpers: order block indices by key descending, ties by index ascending. */
typedef struct {
  double key;
  int64_t b;
} attn__kb;

static int attn__cmp_kb(const void *x, const void *y) {
  const attn__kb *a = x, *c = y;
  if (a->key > c->key) return -1;
  if (a->key < c->key) return 1;
  return (a->b > c->b) - (a->b < c->b);
}

static int attn__is_forced(const attn_method *m, int64_t b, int64_t nb) {
  return b < m->keep_sink_blocks || b >= nb - m->keep_recent_blocks;
}

/* Builds the visit order for one KV head: forced blocks first (ascending), then the others by
 * key descending. Returns the number of forced blocks. order has nb entries. */
static int64_t attn__order(const attn_method *m, int64_t nb, const double *key, int64_t *order,
                           attn__kb *tmp) {
  int64_t nf = 0, nr = 0;
  for (int64_t b = 0; b < nb; b++) {
    if (attn__is_forced(m, b, nb)) {
      order[nf++] = b;
    } else {
      tmp[nr].key = key[b];
      tmp[nr].b = b;
      nr++;
    }
  }
  qsort(tmp, (size_t)nr, sizeof *tmp, attn__cmp_kb);
  for (int64_t i = 0; i < nr; i++) order[nf + i] = tmp[i].b;
  return nf;
}

typedef struct {
  double *key;      /* [nb] */
  double *logit;    /* [G, nb] */
  double *suffix;   /* [G, nb + 1] */
  int64_t *order;   /* [nb] */
  attn__kb *tmp;    /* [nb] */
  double *o;        /* [G, D] */
  double *head_mass;/* [G, nb] oracle */
} attn__ws;

static void attn__ws_free(attn__ws *w) {
  free(w->key);
  free(w->logit);
  free(w->suffix);
  free(w->order);
  free(w->tmp);
  free(w->o);
  free(w->head_mass);
}

static int attn__ws_alloc(attn__ws *w, int64_t nb, int G, int D) {
  memset(w, 0, sizeof *w);
  w->key = malloc((size_t)nb * sizeof *w->key);
  w->logit = malloc((size_t)G * nb * sizeof *w->logit);
  w->suffix = malloc((size_t)G * (nb + 1) * sizeof *w->suffix);
  w->order = malloc((size_t)nb * sizeof *w->order);
  w->tmp = malloc((size_t)nb * sizeof *w->tmp);
  w->o = malloc((size_t)G * D * sizeof *w->o);
  w->head_mass = malloc((size_t)G * nb * sizeof *w->head_mass);
  if (!w->key || !w->logit || !w->suffix || !w->order || !w->tmp || !w->o || !w->head_mass) {
    attn__ws_free(w);
    return KV_ENOMEM;
  }
  return 0;
}

/* Normalises per-head logits into estimated probabilities and sums them over the group. */
static void attn__group_key(const double *logit, int G, int64_t nb, double *key) {
  for (int64_t b = 0; b < nb; b++) key[b] = 0.0;
  for (int g = 0; g < G; g++) {
    const double *lg = logit + (size_t)g * nb;
    double mx = -INFINITY, z = 0.0;
    for (int64_t b = 0; b < nb; b++) mx = lg[b] > mx ? lg[b] : mx;
    for (int64_t b = 0; b < nb; b++) z += exp(lg[b] - mx);
    for (int64_t b = 0; b < nb; b++) key[b] += exp(lg[b] - mx) / z;
  }
}

int attn_decode(const attn_shape *s, const attn_method *m, const float *q, const float *K,
                const float *V, int64_t n_keys, const attn_blockmeta *meta, const double *probs,
                attn_result *r, kv_error *err) {
  int rc = attn_shape_check(s, err);
  if (rc) return rc;
  if ((rc = attn_method_check(m, err))) return rc;
  if (n_keys < 1) return kv_error_set(err, KV_EINVAL, "attention: no keys");
  return attn_method_desc_of(m->kind)->cpu(s, m, q, K, V, n_keys, meta, probs, r, err);
}

/* Checks shared by the sparse methods and the workspace for one call; 0 or an error. */
static int attn__sparse_begin(const attn_shape *s, const attn_method *m, int64_t n_keys,
                              const attn_blockmeta *meta, const double *probs,
                              const attn_result *r, attn__ws *w, kv_error *err) {
  const int D = s->head_dim, Hkv = s->n_kv_heads, G = s->n_heads / s->n_kv_heads;
  if (!meta || meta->n_tokens != n_keys || meta->block_size != m->block_size ||
      meta->n_kv_heads != Hkv || meta->head_dim != D) {
    return kv_error_set(err, KV_EINVAL, "attention: block metadata does not match (%lld tokens, "
                        "block %d) the call (%lld keys, block %d)",
                        meta ? (long long)meta->n_tokens : -1LL, meta ? meta->block_size : -1,
                        (long long)n_keys, m->block_size);
  }
  if (m->kind == ATTN_ORACLE && !probs) {
    return kv_error_set(err, KV_EINVAL, "attention: the oracle needs dense probabilities");
  }
  const int64_t nb = meta->n_blocks;
  if (nb > r->max_blocks) {
    return kv_error_set(err, KV_ERANGE, "attention: %lld blocks exceed the result's %lld",
                        (long long)nb, (long long)r->max_blocks);
  }
  if (attn__ws_alloc(w, nb, G, D)) return kv_error_set(err, KV_ENOMEM, "attention: out of memory");
  return 0;
}

/* Marks the first nread blocks of the visit order as read by KV head kvh. */
static void attn__record_read(const attn_blockmeta *meta, const attn__ws *w, int64_t nread,
                              int32_t iters, int kvh, attn_result *r) {
  uint8_t *mask = r->block_read + (size_t)kvh * r->max_blocks;
  for (int64_t i = 0; i < nread; i++) mask[w->order[i]] = 1;
  int64_t tokens_read = 0;
  for (int64_t i = 0; i < nread; i++) tokens_read += attn_block_tokens(meta, w->order[i]);
  r->blocks_read[kvh] = nread;
  r->tokens_read[kvh] = tokens_read;
  r->iterations[kvh] = iters;
}

/* Top-k (registry entry "topk"): per KV head, the group-combined score of every block, the
 * forced blocks plus the best blocks up to the token budget, then exact attention over them in
 * block order. */
int attn__cpu_topk(const attn_shape *s, const attn_method *m, const float *q, const float *K,
                   const float *V, int64_t n_keys, const attn_blockmeta *meta,
                   const double *probs, attn_result *r, kv_error *err) {
  attn__ws w;
  int rc = attn__sparse_begin(s, m, n_keys, meta, probs, r, &w, err);
  if (rc) return rc;
  const int D = s->head_dim, Hkv = s->n_kv_heads, G = s->n_heads / s->n_kv_heads;
  const double scale = 1.0 / sqrt((double)D);
  const int64_t nb = meta->n_blocks;
  for (int kvh = 0; kvh < Hkv; kvh++) {
    uint8_t *mask = r->block_read + (size_t)kvh * r->max_blocks;
    memset(mask, 0, (size_t)r->max_blocks);
    const float *qg = q + (size_t)kvh * G * D; /* the group's query heads are consecutive */
    for (int64_t b = 0; b < nb; b++) {
      double k = m->topk_combine == ATTN_GQA_MAX ? -INFINITY : 0.0;
      for (int g = 0; g < G; g++) {
        double sc = attn__rank_score(m->topk_rank, qg + (size_t)g * D, meta, b, kvh, scale);
        k = m->topk_combine == ATTN_GQA_MAX ? (sc > k ? sc : k) : k + sc;
      }
      w.key[b] = k;
    }
    int64_t nforced = attn__order(m, nb, w.key, w.order, w.tmp);
    int64_t k = m->token_budget / m->block_size;
    if (m->token_budget >= n_keys) k = nb;
    if (k < nforced) k = nforced;
    attn__record_read(meta, &w, k < nb ? k : nb, 1, kvh, r);
    for (int g = 0; g < G; g++) {
      attn__acc a = {-INFINITY, 0.0, w.o};
      for (int d = 0; d < D; d++) w.o[d] = 0.0;
      for (int64_t b = 0; b < nb; b++) {
        if (!mask[b]) continue;
        int64_t t0 = b * m->block_size;
        int64_t t1 = t0 + m->block_size < n_keys ? t0 + m->block_size : n_keys;
        attn__acc_block(&a, qg + (size_t)g * D, K, V, Hkv, D, kvh, t0, t1, scale);
      }
      float *oh = r->out + (size_t)(kvh * G + g) * D;
      for (int d = 0; d < D; d++) oh[d] = (float)(w.o[d] / a.l);
      r->est_mass[kvh * G + g] = NAN;
    }
  }
  attn__ws_free(&w);
  return 0;
}

/* The visit order's ranking key of KV head kvh (PSA: the group's estimated probabilities;
 * oracle: the true block masses, kept per head in w->head_mass) and the per-head suffix sums of
 * the estimated (PSA) or true (oracle) mass in visit order, for the stop test. Returns the
 * number of forced blocks. */
static int64_t attn__progressive_order(const attn_shape *s, const attn_method *m,
                                       const float *qg, int64_t n_keys,
                                       const attn_blockmeta *meta, const double *probs, int kvh,
                                       double scale, attn__ws *w) {
  const int D = s->head_dim, G = s->n_heads / s->n_kv_heads;
  const int64_t nb = meta->n_blocks;
  if (m->kind == ATTN_PSA) {
    for (int g = 0; g < G; g++) {
      for (int64_t b = 0; b < nb; b++) {
        double lr = log((double)attn_block_tokens(meta, b)) +
                    attn__rank_score(m->psa_rank, qg + (size_t)g * D, meta, b, kvh, scale);
        w->logit[(size_t)g * nb + b] = lr;
      }
    }
    attn__group_key(w->logit, G, nb, w->key);
  } else {
    for (int64_t b = 0; b < nb; b++) w->key[b] = 0.0;
    for (int g = 0; g < G; g++) {
      const double *p = probs + (size_t)(kvh * G + g) * n_keys;
      for (int64_t b = 0; b < nb; b++) {
        double sm = 0.0;
        int64_t t1 = (b + 1) * m->block_size < n_keys ? (b + 1) * m->block_size : n_keys;
        for (int64_t t = b * m->block_size; t < t1; t++) sm += p[t];
        w->head_mass[(size_t)g * nb + b] = sm;
        w->key[b] += sm;
      }
    }
  }
  int64_t nforced = attn__order(m, nb, w->key, w->order, w->tmp);
  for (int g = 0; g < G; g++) {
    double *suf = w->suffix + (size_t)g * (nb + 1);
    if (m->kind == ATTN_PSA) {
      double *lg = w->logit + (size_t)g * nb; /* reuse: now the estimator's log-mass */
      double mx = -INFINITY;
      for (int64_t i = 0; i < nb; i++) {
        lg[i] = attn__log_est(m->psa_estimate, qg + (size_t)g * D, meta, w->order[i], kvh, scale);
        mx = lg[i] > mx ? lg[i] : mx;
      }
      suf[nb] = 0.0;
      for (int64_t i = nb - 1; i >= 0; i--) suf[i] = suf[i + 1] + exp(lg[i] - mx);
      lg[0] = mx; /* the exponent frame of suf[], kept for the stop test */
    } else {
      suf[nb] = 0.0;
      for (int64_t i = nb - 1; i >= 0; i--) {
        suf[i] = suf[i + 1] + w->head_mass[(size_t)g * nb + w->order[i]];
      }
    }
  }
  return nforced;
}

/* PSA and the oracle (registry entries "psa", "oracle"): per KV head, visit the forced blocks as
 * iteration 0, then groups of group_blocks blocks in rank order, accumulating exact attention,
 * until every head of the group has P_acc >= epsilon (or the token cap, or the last block). */
int attn__cpu_progressive(const attn_shape *s, const attn_method *m, const float *q,
                          const float *K, const float *V, int64_t n_keys,
                          const attn_blockmeta *meta, const double *probs, attn_result *r,
                          kv_error *err) {
  attn__ws w;
  int rc = attn__sparse_begin(s, m, n_keys, meta, probs, r, &w, err);
  if (rc) return rc;
  const int D = s->head_dim, Hkv = s->n_kv_heads, G = s->n_heads / s->n_kv_heads;
  const double scale = 1.0 / sqrt((double)D);
  const int64_t nb = meta->n_blocks;
  double mst[64], lst[64];
  double *mh = G <= 64 ? mst : malloc((size_t)G * sizeof *mh);
  double *lh = G <= 64 ? lst : malloc((size_t)G * sizeof *lh);
  if (!mh || !lh) {
    if (mh != mst) free(mh);
    attn__ws_free(&w);
    return kv_error_set(err, KV_ENOMEM, "attention: out of memory");
  }
  for (int kvh = 0; kvh < Hkv; kvh++) {
    memset(r->block_read + (size_t)kvh * r->max_blocks, 0, (size_t)r->max_blocks);
    const float *qg = q + (size_t)kvh * G * D; /* the group's query heads are consecutive */
    int64_t nforced = attn__progressive_order(s, m, qg, n_keys, meta, probs, kvh, scale, &w);
    for (int g = 0; g < G; g++) {
      mh[g] = -INFINITY;
      lh[g] = 0.0;
      for (int d = 0; d < D; d++) w.o[(size_t)g * D + d] = 0.0;
    }
    int64_t tokens = 0, next = 0;
    int32_t iters = 0;
    for (;;) {
      int64_t end = (iters == 0 && nforced > 0) ? nforced : next + m->group_blocks;
      if (end > nb) end = nb;
      for (int64_t i = next; i < end; i++) {
        int64_t b = w.order[i];
        int64_t t0 = b * m->block_size;
        int64_t t1 = t0 + m->block_size < n_keys ? t0 + m->block_size : n_keys;
        for (int g = 0; g < G; g++) {
          attn__acc a = {mh[g], lh[g], w.o + (size_t)g * D};
          attn__acc_block(&a, qg + (size_t)g * D, K, V, Hkv, D, kvh, t0, t1, scale);
          mh[g] = a.m;
          lh[g] = a.l;
        }
        tokens += t1 - t0;
      }
      next = end;
      iters++;
      /* Stop test: every head of the group. */
      int done = next >= nb;
      if (!done && m->max_tokens > 0 && tokens >= m->max_tokens) done = 1;
      int all = 1;
      for (int g = 0; g < G; g++) {
        const double *suf = w.suffix + (size_t)g * (nb + 1);
        double pacc;
        if (m->kind == ATTN_PSA) {
          double u = suf[next];
          double frame = w.logit[(size_t)g * nb];
          if (u <= 0.0) {
            pacc = 1.0;
          } else {
            double la = log(lh[g]) + mh[g];
            double lb = log(u) + frame;
            pacc = 1.0 / (1.0 + exp(lb - la));
          }
        } else {
          pacc = 1.0 - suf[next];
          if (next >= nb) pacc = 1.0;
        }
        r->est_mass[kvh * G + g] = pacc;
        if (pacc < m->epsilon) all = 0;
      }
      if (all || done) break;
    }
    for (int g = 0; g < G; g++) {
      float *oh = r->out + (size_t)(kvh * G + g) * D;
      for (int d = 0; d < D; d++) oh[d] = (float)(w.o[(size_t)g * D + d] / lh[g]);
    }
    attn__record_read(meta, &w, next, iters, kvh, r);
  }
  if (mh != mst) free(mh);
  if (lh != lst) free(lh);
  attn__ws_free(&w);
  return 0;
}

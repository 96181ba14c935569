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
  r->tokens_head = calloc((size_t)s->n_heads, sizeof *r->tokens_head);
  if (!r->out || !r->blocks_read || !r->tokens_read || !r->iterations || !r->block_read ||
      !r->est_mass || !r->tokens_head) {
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
  free(r->tokens_head);
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
  double *logit;    /* [G, nb] rank logits, by block */
  double *est;      /* [G, nb] PSA: estimated log-mass minus the head's frame, by block */
  double *suffix;   /* [G, nb + 1] estimated (PSA) or true (oracle) mass in visit order */
  int64_t *order;   /* [nb] */
  int64_t *horder;  /* [G, nb] gqa=head: each query head's own visit order */
  attn__kb *tmp;    /* [nb] */
  double *o;        /* [G, D] */
  double *head_mass;/* [G, nb] oracle */
} attn__ws;

static void attn__ws_free(attn__ws *w) {
  free(w->key);
  free(w->logit);
  free(w->est);
  free(w->suffix);
  free(w->order);
  free(w->horder);
  free(w->tmp);
  free(w->o);
  free(w->head_mass);
}

static int attn__ws_alloc(attn__ws *w, int64_t nb, int G, int D) {
  memset(w, 0, sizeof *w);
  w->key = malloc((size_t)nb * sizeof *w->key);
  w->logit = malloc((size_t)G * nb * sizeof *w->logit);
  w->est = malloc((size_t)G * nb * sizeof *w->est);
  w->suffix = malloc((size_t)G * (nb + 1) * sizeof *w->suffix);
  w->order = malloc((size_t)nb * sizeof *w->order);
  w->horder = malloc((size_t)G * nb * sizeof *w->horder);
  w->tmp = malloc((size_t)nb * sizeof *w->tmp);
  w->o = malloc((size_t)G * D * sizeof *w->o);
  w->head_mass = malloc((size_t)G * nb * sizeof *w->head_mass);
  if (!w->key || !w->logit || !w->est || !w->suffix || !w->order || !w->horder || !w->tmp ||
      !w->o || !w->head_mass) {
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

/* log sum_t exp(score_t) over tokens t0..t1-1 of KV head kvh for one query head (selfcal). */
static double attn__block_lse(const float *q, const float *K, int Hkv, int D, int kvh,
                              int64_t t0, int64_t t1, double scale) {
  double mx = -INFINITY, l = 0.0;
  for (int64_t t = t0; t < t1; t++) {
    const float *k = K + ((size_t)t * Hkv + kvh) * D;
    double sc = 0.0;
    for (int d = 0; d < D; d++) sc += (double)q[d] * (double)k[d];
    sc *= scale;
    if (sc > mx) {
      l = l * exp(mx - sc) + 1.0;
      mx = sc;
    } else {
      l += exp(sc - mx);
    }
  }
  return mx + log(l);
}

static double attn__logaddexp(double a, double b) {
  if (a == -INFINITY) return b;
  if (b == -INFINITY) return a;
  return a > b ? a + log1p(exp(b - a)) : b + log1p(exp(a - b));
}

/* The visit order of KV head kvh and the inputs of its stop test.
 *   PSA: rank logits per head (w->logit), the group's order by summed normalised estimated
 *        probabilities (w->order; gqa=head: each head's own order in w->horder), each head's
 *        estimated log-mass per block relative to its own frame (w->est, by block; the frame
 *        itself in w->key... not needed: estimates only enter as ratios to exact masses through
 *        frames[g]) and the suffix sums of the estimate in the group's visit order (w->suffix).
 *   oracle: the true block masses (w->head_mass) and their suffix sums in visit order.
 * Returns the number of forced blocks; frames[g] receives head g's estimate frame (PSA). */
static int64_t attn__progressive_order(const attn_shape *s, const attn_method *m,
                                       const float *qg, int64_t n_keys,
                                       const attn_blockmeta *meta, const double *probs, int kvh,
                                       double scale, attn__ws *w, double *frames) {
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
    if (m->psa_gqa == ATTN_PSA_GQA_HEAD) {
      for (int g = 0; g < G; g++) {
        attn__order(m, nb, w->logit + (size_t)g * nb, w->horder + (size_t)g * nb, w->tmp);
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
    suf[nb] = 0.0;
    if (m->kind == ATTN_PSA) {
      double *est = w->est + (size_t)g * nb;
      double mx = -INFINITY;
      for (int64_t b = 0; b < nb; b++) {
        est[b] = attn__log_est(m->psa_estimate, qg + (size_t)g * D, meta, b, kvh, scale);
        mx = est[b] > mx ? est[b] : mx;
      }
      for (int64_t b = 0; b < nb; b++) est[b] -= mx;
      frames[g] = mx;
      for (int64_t i = nb - 1; i >= 0; i--) suf[i] = suf[i + 1] + exp(est[w->order[i]]);
    } else {
      for (int64_t i = nb - 1; i >= 0; i--) {
        suf[i] = suf[i + 1] + w->head_mass[(size_t)g * nb + w->order[i]];
      }
    }
  }
  return nforced;
}

/* State of one query head in the progressive loop of one KV head. */
typedef struct {
  double m, l;       /* online-softmax max and sum over every block read (o in w->o) */
  double est_read;   /* estimated mass of the blocks read, relative to the head's frame */
  double est_ranked; /* ... of the ranked (not forced) blocks read */
  double lse_ranked; /* log of the exact mass of the ranked blocks read (-inf before any) */
  int64_t ptr;       /* gqa=head: next position in the head's own order */
  int64_t own_tokens;/* tokens of the blocks the head's own ranking asked for */
} attn__phead;

/* Reads block b for every query head of KV head kvh: exact attention into (m, l, o), the
 * estimated mass read, and for a ranked block the selfcal sums. */
static void attn__psa_read(const attn_method *m, const float *qg, const float *K,
                           const float *V, int Hkv, int D, int G, int kvh, int64_t n_keys,
                           int64_t nb, int64_t b, int ranked, double scale, attn__ws *w,
                           attn__phead *hs) {
  int64_t t0 = b * m->block_size;
  int64_t t1 = t0 + m->block_size < n_keys ? t0 + m->block_size : n_keys;
  for (int g = 0; g < G; g++) {
    attn__acc a = {hs[g].m, hs[g].l, w->o + (size_t)g * D};
    attn__acc_block(&a, qg + (size_t)g * D, K, V, Hkv, D, kvh, t0, t1, scale);
    hs[g].m = a.m;
    hs[g].l = a.l;
    if (m->kind != ATTN_PSA) continue;
    double e = exp(w->est[(size_t)g * nb + b]);
    hs[g].est_read += e;
    if (ranked) {
      hs[g].est_ranked += e;
      if (m->psa_selfcal) {
        hs[g].lse_ranked = attn__logaddexp(
            hs[g].lse_ranked, attn__block_lse(qg + (size_t)g * D, K, Hkv, D, kvh, t0, t1, scale));
      }
    }
  }
}

/* P_acc of query head g: the exact mass read over itself plus the (scaled) estimate of the mass
 * not read. u: the estimate of the unread mass relative to the head's frame. */
static double attn__psa_pacc(const attn_method *m, const attn__phead *h, double u, double frame) {
  if (u <= 0.0) return 1.0;
  double la = log(h->l) + h->m;
  double lb = log(u) + frame + log(m->psa_ucb);
  if (m->psa_selfcal && h->est_ranked > 0.0) {
    double ratio = h->lse_ranked - (log(h->est_ranked) + frame); /* log(exact / estimated) */
    if (ratio > 0.0) lb += ratio;
  }
  return 1.0 / (1.0 + exp(lb - la));
}

/* PSA and the oracle (registry entries "psa", "oracle"): per KV head, visit the forced blocks as
 * iteration 0, then groups of group_blocks blocks in rank order, accumulating exact attention,
 * until every head of the group has P_acc >= epsilon (after at least psa_min_groups ranked
 * groups), or the token cap, or the last block.
 *   gqa=group (default): one order per KV head; iteration i reads its next group_blocks blocks.
 *   gqa=head: every query head ranks by its own estimate; in an iteration each head that has
 *     not reached epsilon adds its next group_blocks blocks not yet read; a head's stop test
 *     counts every block read for its KV head. The KV head reads the union once.
 * P_acc = A / (A + ucb * rho * U): A the exact mass read, U the estimated mass not read, rho =
 * max(1, exact / estimated mass of the ranked blocks read) with selfcal, else 1. */
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
  attn__phead *hs = calloc((size_t)G, sizeof *hs);
  double *frames = calloc((size_t)G, sizeof *frames);
  if (!hs || !frames) {
    free(hs);
    free(frames);
    attn__ws_free(&w);
    return kv_error_set(err, KV_ENOMEM, "attention: out of memory");
  }
  const int per_head = m->kind == ATTN_PSA && m->psa_gqa == ATTN_PSA_GQA_HEAD;
  for (int kvh = 0; kvh < Hkv; kvh++) {
    uint8_t *mask = r->block_read + (size_t)kvh * r->max_blocks;
    memset(mask, 0, (size_t)r->max_blocks);
    const float *qg = q + (size_t)kvh * G * D; /* the group's query heads are consecutive */
    int64_t nforced =
        attn__progressive_order(s, m, qg, n_keys, meta, probs, kvh, scale, &w, frames);
    int64_t forced_tokens = 0;
    for (int64_t i = 0; i < nforced; i++) forced_tokens += attn_block_tokens(meta, w.order[i]);
    for (int g = 0; g < G; g++) {
      hs[g] = (attn__phead){-INFINITY, 0.0, 0.0, 0.0, -INFINITY, nforced, forced_tokens};
      r->est_mass[kvh * G + g] = 0.0;
      for (int d = 0; d < D; d++) w.o[(size_t)g * D + d] = 0.0;
    }
    int64_t tokens = 0, next = 0, nread = 0;
    int32_t iters = 0, ranked_groups = 0;
    for (;;) {
      /* One iteration: the forced blocks first, then ranked groups. */
      if (iters == 0 && nforced > 0) {
        for (int64_t i = 0; i < nforced; i++) {
          attn__psa_read(m, qg, K, V, Hkv, D, G, kvh, n_keys, nb, w.order[i], 0, scale, &w, hs);
          mask[w.order[i]] = 1;
          tokens += attn_block_tokens(meta, w.order[i]);
        }
        next = nread = nforced;
      } else if (!per_head) {
        int64_t end = next + m->group_blocks < nb ? next + m->group_blocks : nb;
        for (int64_t i = next; i < end; i++) {
          attn__psa_read(m, qg, K, V, Hkv, D, G, kvh, n_keys, nb, w.order[i], 1, scale, &w, hs);
          mask[w.order[i]] = 1;
          tokens += attn_block_tokens(meta, w.order[i]);
        }
        next = nread = end;
        for (int g = 0; g < G; g++) hs[g].own_tokens = tokens;
        ranked_groups++;
      } else {
        for (int g = 0; g < G; g++) { /* heads that have not stopped add their next blocks */
          if (r->est_mass[kvh * G + g] >= m->epsilon && ranked_groups >= m->psa_min_groups) {
            continue;
          }
          const int64_t *ho = w.horder + (size_t)g * nb;
          for (int added = 0; added < m->group_blocks && hs[g].ptr < nb;) {
            int64_t b = ho[hs[g].ptr++];
            hs[g].own_tokens += attn_block_tokens(meta, b);
            if (mask[b]) continue;
            attn__psa_read(m, qg, K, V, Hkv, D, G, kvh, n_keys, nb, b, 1, scale, &w, hs);
            mask[b] = 1;
            tokens += attn_block_tokens(meta, b);
            nread++;
            added++;
          }
        }
        ranked_groups++;
      }
      iters++;
      /* Stop test: every head of the group. */
      int done = nread >= nb;
      if (!done && m->max_tokens > 0 && tokens >= m->max_tokens) done = 1;
      int all = 1;
      for (int g = 0; g < G; g++) {
        const double *suf = w.suffix + (size_t)g * (nb + 1);
        double pacc;
        if (m->kind == ATTN_PSA) {
          double u = per_head ? suf[0] - hs[g].est_read : suf[next];
          pacc = attn__psa_pacc(m, &hs[g], u, frames[g]);
        } else {
          pacc = next >= nb ? 1.0 : 1.0 - suf[next];
        }
        r->est_mass[kvh * G + g] = pacc;
        if (pacc < m->epsilon) all = 0;
      }
      if ((all && ranked_groups >= m->psa_min_groups) || done) break;
    }
    for (int g = 0; g < G; g++) {
      float *oh = r->out + (size_t)(kvh * G + g) * D;
      for (int d = 0; d < D; d++) oh[d] = (float)(w.o[(size_t)g * D + d] / hs[g].l);
      r->tokens_head[kvh * G + g] = hs[g].own_tokens < tokens ? hs[g].own_tokens : tokens;
    }
    int64_t tokens_read = 0;
    for (int64_t b = 0; b < nb; b++) tokens_read += mask[b] ? attn_block_tokens(meta, b) : 0;
    r->blocks_read[kvh] = nread;
    r->tokens_read[kvh] = tokens_read;
    r->iterations[kvh] = iters;
  }
  free(hs);
  free(frames);
  attn__ws_free(&w);
  return 0;
}

/* attn.h — CPU reference of decode attention: dense, fixed top-k block selection (Quest-style)
 * and Progressive Sparse Attention (PSA), with the metrics every method is judged by.
 *
 * This is the oracle that the CUDA kernels (kernels/cuda/) and the simulator's attention cost
 * model are checked against. It favours exactness over speed: inputs are fp32, every dot product
 * and softmax sum is accumulated in double, and results do not depend on thread count (each
 * (query, head) is computed by one thread in a fixed order).
 *
 * Shapes (row-major, as in the Q/K/V files, kernels/qkv.h):
 *   q  [n_heads, head_dim]                 one decode query (all query heads)
 *   K  [n_keys, n_kv_heads, head_dim]      keys 0..n_keys-1 (the query attends to all of them)
 *   V  [n_keys, n_kv_heads, head_dim]
 *   out[n_heads, head_dim]
 * Query head h uses KV head h / (n_heads / n_kv_heads) (grouped-query attention, "GQA group").
 * Scores are q.k * scale with scale = 1/sqrt(head_dim).
 *
 * Blocks: keys are split into blocks of `block_size` consecutive tokens (the last may be
 * partial). Block metadata per KV head: per-channel min and max of the keys (Quest's bound), the
 * mean key, and the per-channel variance (for the log-normal mass estimate).
 *
 * GQA: KV is read once per KV head for its whole query group, so sparse methods choose one block
 * set per KV head. Top-k combines the group's block scores by max (default; the block is kept if
 * any head may attend to it) or by sum. PSA ranks by the group's summed estimated probability
 * (each head's estimate normalised by its own estimated total) and stops when every head of the
 * group has reached epsilon. Budgets therefore vary per KV head, per query and per layer.
 */
#ifndef ATTN_H
#define ATTN_H

#include <stdint.h>

#include "attn_method.h"
#include "kv_err.h"

typedef struct attn_shape {
  int n_heads;     /* query heads */
  int n_kv_heads;  /* KV heads; n_heads % n_kv_heads == 0 */
  int head_dim;
} attn_shape;

/* Checks a shape (positive, divisible, head_dim <= 1024). */
int attn_shape_check(const attn_shape *s, kv_error *err);

/* ---- dense ------------------------------------------------------------------------------- */

/* Dense decode attention over keys 0..n_keys-1 (n_keys >= 1).
 * out [n_heads, head_dim]; lse [n_heads] (natural log of sum_j exp(score_j), may be NULL);
 * probs [n_heads, n_keys] softmax weights (may be NULL). */
int attn_dense(const attn_shape *s, const float *q, const float *K, const float *V,
               int64_t n_keys, float *out, double *lse, double *probs);

/* ---- block metadata ------------------------------------------------------------------------ */

typedef struct attn_blockmeta {
  int block_size;
  int n_kv_heads, head_dim;
  int64_t n_tokens;      /* tokens summarised so far */
  int64_t n_blocks;      /* ceil(n_tokens / block_size) */
  int64_t cap_blocks;    /* allocated blocks */
  float *kmin;           /* [cap_blocks, n_kv_heads, head_dim] per-channel minimum */
  float *kmax;           /* [cap_blocks, n_kv_heads, head_dim] per-channel maximum */
  float *kmean;          /* [cap_blocks, n_kv_heads, head_dim] per-channel mean */
  float *kvar;           /* [cap_blocks, n_kv_heads, head_dim] per-channel population variance */
  double *ksum, *ksq;    /* [cap_blocks, n_kv_heads, head_dim] running sums for append */
} attn_blockmeta;

/* Allocates metadata for up to cap_tokens tokens. Free with attn_blockmeta_free. */
int attn_blockmeta_init(attn_blockmeta *m, int block_size, int n_kv_heads, int head_dim,
                        int64_t cap_tokens, kv_error *err);
void attn_blockmeta_free(attn_blockmeta *m);
/* Rebuilds from K [n_tokens, n_kv_heads, head_dim] (n_tokens <= capacity). */
int attn_blockmeta_build(attn_blockmeta *m, const float *K, int64_t n_tokens, kv_error *err);
/* Appends one token's keys k [n_kv_heads, head_dim] (decode-time update). The result equals
 * a rebuild over all tokens appended so far. KV_ERANGE when full. */
int attn_blockmeta_append(attn_blockmeta *m, const float *k, kv_error *err);
/* Tokens in block b (block_size, or fewer for the last block). */
int64_t attn_block_tokens(const attn_blockmeta *m, int64_t b);

/* ---- sparse methods ------------------------------------------------------------------------ */

/* Methods, their registry and spec strings: attn_method.h (included above). */

/* What a sparse call read, per KV head (arrays sized by the caller, see attn_result_alloc). */
typedef struct attn_result {
  float *out;              /* [n_heads, head_dim] */
  int64_t *blocks_read;    /* [n_kv_heads] */
  int64_t *tokens_read;    /* [n_kv_heads] */
  int32_t *iterations;     /* [n_kv_heads] PSA groups processed (forced blocks count as one) */
  uint8_t *block_read;     /* [n_kv_heads, max_blocks] 1 where the block was read */
  double *est_mass;        /* [n_heads] PSA's final accumulated-mass estimate (P_acc) */
  int64_t max_blocks;
  int64_t *tokens_head;    /* [n_heads] tokens of the blocks the query head's own ranking asked
                            * for (PSA gqa=head; otherwise its KV head's tokens_read): the union
                            * over the group is what the KV head reads (tokens_read) */
} attn_result;

int attn_result_alloc(attn_result *r, const attn_shape *s, int64_t max_blocks, kv_error *err);
void attn_result_free(attn_result *r);

/* Runs method m for one query over keys 0..n_keys-1 through its registry entry's CPU function
 * (attn_method.c). `meta` must summarise exactly n_keys tokens of K with m->block_size (ignored
 * for ATTN_DENSE, may be NULL then). ATTN_ORACLE needs the dense probabilities `probs`
 * [n_heads, n_keys] (from attn_dense); other kinds ignore it. */
int attn_decode(const attn_shape *s, const attn_method *m, const float *q, const float *K,
                const float *V, int64_t n_keys, const attn_blockmeta *meta, const double *probs,
                attn_result *r, kv_error *err);

/* ---- metrics ------------------------------------------------------------------------------- */

/* Per query head: how the sparse result compares with dense attention. */
typedef struct attn_head_metrics {
  int64_t tokens_read;     /* tokens of its KV head's block set (what is read, in bytes) */
  int64_t tokens_head;     /* tokens its own ranking asked for (attn_result.tokens_head) */
  int64_t blocks_read;
  double mass_covered;     /* sum of the dense softmax weights of the tokens read, in [0, 1] */
  double rel_l2_err;       /* ||out - dense|| / ||dense|| */
  double est_mass;         /* PSA's own estimate of the mass it covered (NaN for others) */
} attn_head_metrics;

/* Bytes a kernel reading this block set would move for KV head h: K and V rows of the tokens
 * read plus the block metadata the method scans (min+max for Quest ranking/bound, mean for mean
 * ranking/estimate, mean+var for log-normal), with elem_bytes per element (2 for fp16/bf16). */
int64_t attn_bytes_read(const attn_shape *s, const attn_method *m, int64_t n_keys,
                        int64_t tokens_read, int elem_bytes);

/* Fills mh [n_heads] from a result, the dense output dense_out [n_heads, head_dim] and dense
 * probabilities probs [n_heads, n_keys]. */
void attn_metrics(const attn_shape *s, const attn_method *m, int64_t n_keys,
                  const attn_result *r, const float *dense_out, const double *probs,
                  attn_head_metrics *mh);

/* Tokens needed to cover `frac` of the mass of one head's probabilities p [n_keys] when reading
 * tokens in descending weight order (the ideal token-level budget). */
int64_t attn_tokens_for_mass(const double *p, int64_t n_keys, double frac, double *scratch);

/* ---- evaluating methods over recorded queries ----------------------------------------------- */

/* Runs n_methods methods for every query of one recorded layer and measures them against dense
 * attention. Query i (Q[i], shape [n_heads, head_dim]) sits at positions[i] and attends to keys
 * 0..positions[i] of K, V [>= positions[i]+1, n_kv_heads, head_dim]. Work is spread over
 * n_threads OpenMP threads (0: the OpenMP default) by query; results do not depend on it.
 * Outputs (caller-allocated):
 *   mh    [n_methods, n_pos, n_heads]     per-head metrics
 *   bytes [n_methods, n_pos, n_kv_heads]  bytes read (attn_bytes_read with elem_bytes)
 *   iters [n_methods, n_pos, n_kv_heads]  iterations (may be NULL)
 *   need  [n_pos, n_heads, 3]             tokens needed for 90/95/99% of the mass (may be NULL) */
int attn_eval_layer(const attn_shape *s, const attn_method *methods, int n_methods,
                    const float *Q, const int64_t *positions, int64_t n_pos, const float *K,
                    const float *V, int elem_bytes, int n_threads, attn_head_metrics *mh,
                    int64_t *bytes, int32_t *iters, int64_t *need, kv_error *err);

#endif /* ATTN_H */

/* attn_method.h — decode-attention methods: their parameters, the registry that names them, and
 * their canonical spec strings. The registry (attn_method.c) is the one list of methods: the CPU
 * reference dispatches through it, tools parse and print specs through it, the attention
 * profile stores each method by its spec and cost class, and Python (traces/record/kvattn.py)
 * reads methods only through specs and the accessors below.
 *
 * Spec syntax: NAME[:PARAM][:OPTION]...  where NAME is a registry name, PARAM the method's
 * positional parameter (top-k: the token budget; PSA and oracle: epsilon in (0, 1]) and each
 * OPTION either key=value or a bare word the method defines:
 *   bs=N      tokens per block (default 16)              dense, topk, psa, oracle
 *   sink=N    leading blocks always read (default 1)     topk, psa, oracle
 *   recent=N  trailing blocks always read (default 1)    topk, psa, oracle
 *   group=N   blocks per PSA iteration (default 4)       psa, oracle
 *   cap=N     hard cap of tokens per KV head (0 = none)  psa, oracle
 *   rank=R    block ranking quest | mean                 topk (default quest), psa (mean)
 *   est=E     mass estimate bound | mean | lognormal     psa (default mean)
 *   minrank=N ranked groups read before a stop (0)       psa
 *   ucb=X     multiplier of the unread-mass estimate (1) psa
 *   gqa=G     group | head: one ranking per KV head, or  psa (default group)
 *             one per query head with the union read
 *   bare words: topk quest | mean (rank), max | sum (GQA combine); psa bound | mean | lognormal,
 *             selfcal (scale the unread estimate by the exact/estimated mass of the ranked
 *             blocks read, when above 1)
 * An option that does not apply to the method is an error. The canonical spec
 * (attn_method_spec) names every non-default field once, in a fixed order:
 *   NAME[:PARAM][:bare words][:rank=R][:bs=N][:sink=N][:recent=N][:group=N][:cap=N]
 *       [:minrank=N][:ucb=X][:gqa=G]
 * e.g. "dense", "topk:512", "topk:512:mean", "psa:0.9:sink=0:recent=0", "psa:0.95:lognormal",
 * and attn_method_parse(attn_method_spec(m)) reproduces m field for field (tested for every
 * method and option in tests/kernels/test_attn.c).
 */
#ifndef ATTN_METHOD_H
#define ATTN_METHOD_H

#include <stdint.h>

#include "kv_err.h"

/* Registry order (attn_method.c); files store a method by its name and spec, never this number. */
typedef enum attn_method_kind {
  ATTN_DENSE = 0,
  ATTN_TOPK,        /* fixed token budget, best blocks by score (Quest-style) */
  ATTN_PSA,         /* progressive: ranked groups of blocks until the mass estimate >= epsilon */
  ATTN_ORACLE,      /* PSA with the true block masses (ranking and stop test): an upper bound */
  ATTN_METHOD_COUNT
} attn_method_kind;

/* How a method's cost behaves, which is all the simulator needs to price it. */
typedef enum attn_cost_class {
  ATTN_COST_DENSE = 0,   /* reads every key */
  ATTN_COST_FIXED,       /* a fixed token budget per KV head (one selection, one pass) */
  ATTN_COST_PROGRESSIVE, /* iterations of group_blocks blocks until a stop test passes */
  ATTN_COST_COUNT
} attn_cost_class;
extern const char *const attn_cost_class_names[]; /* "dense", "fixed", "progressive", NULL */

typedef enum attn_rank {
  ATTN_RANK_QUEST = 0,  /* sum_d max(q_d*min_d, q_d*max_d): upper bound of q.k in the block */
  ATTN_RANK_MEAN        /* q . mean key */
} attn_rank;

typedef enum attn_estimate {
  ATTN_EST_BOUND = 0,   /* unvisited block mass <= n_tok * exp(quest bound): conservative */
  ATTN_EST_MEAN,        /* n_tok * exp(q . mean key): tighter, may stop early */
  ATTN_EST_LOGNORMAL    /* n_tok * exp(q.mean + scale^2/2 * sum_d q_d^2 var_d): keys ~ Gaussian */
} attn_estimate;

typedef enum attn_gqa_combine {
  ATTN_GQA_MAX = 0,     /* top-k: block score = max over the group's query heads */
  ATTN_GQA_SUM          /* top-k: sum over the group's query heads */
} attn_gqa_combine;

typedef enum attn_psa_gqa {
  ATTN_PSA_GQA_GROUP = 0, /* one order per KV head by the group's summed estimated probability */
  ATTN_PSA_GQA_HEAD       /* each query head ranks and stops on its own; the union is read */
} attn_psa_gqa;

typedef struct attn_method {
  attn_method_kind kind;
  int block_size;           /* tokens per block (default 16) */
  int keep_sink_blocks;     /* blocks at the start always read (default 1) */
  int keep_recent_blocks;   /* blocks at the end always read (default 1) */
  /* top-k */
  int64_t token_budget;     /* tokens read per KV head, forced blocks included (>= block_size) */
  attn_rank topk_rank;      /* default ATTN_RANK_QUEST */
  attn_gqa_combine topk_combine;
  /* PSA / oracle */
  double epsilon;           /* stop when accumulated mass >= epsilon * estimated total, (0, 1] */
  int group_blocks;         /* blocks per iteration (default 4) */
  attn_rank psa_rank;       /* default ATTN_RANK_MEAN */
  attn_estimate psa_estimate; /* default ATTN_EST_MEAN */
  int64_t max_tokens;       /* PSA hard cap of tokens per KV head; 0 = none */
  /* PSA stop rule (kernels/attn_sparse.c, docs/psa-estimators.md) */
  int psa_min_groups;       /* ranked groups read before the stop test may end the loop (0) */
  int psa_selfcal;          /* 1: unread estimate x max(1, exact / estimated mass of the ranked
                             * blocks read so far) (0) */
  double psa_ucb;           /* multiplier of the unread-mass estimate in the stop test, > 0 (1) */
  attn_psa_gqa psa_gqa;     /* default ATTN_PSA_GQA_GROUP */
} attn_method;

struct attn_shape;
struct attn_blockmeta;
struct attn_result;

/* The CPU reference of one method: attn_decode (attn.h) checks its arguments and calls it. */
typedef int (*attn_cpu_fn)(const struct attn_shape *s, const attn_method *m, const float *q,
                           const float *K, const float *V, int64_t n_keys,
                           const struct attn_blockmeta *meta, const double *probs,
                           struct attn_result *r, kv_error *err);

/* One registry entry (attn_method.c). */
typedef struct attn_method_desc {
  const char *name;         /* the spec's first field, e.g. "topk" */
  attn_method_kind kind;
  attn_cost_class cost;
  const char *param;        /* positional parameter: NULL, "tokens" or "epsilon" */
  unsigned options;         /* ATTN_OPT_* the spec accepts */
  attn_cpu_fn cpu;          /* CPU reference (the oracle of the CUDA kernels) */
  const char *cuda;         /* entry point in kernels/cuda/attn_cuda.h, or NULL when none */
  const char *help;         /* one line for --help */
} attn_method_desc;

enum {
  ATTN_OPT_BS = 1u << 0, ATTN_OPT_SINK = 1u << 1, ATTN_OPT_RECENT = 1u << 2,
  ATTN_OPT_GROUP = 1u << 3, ATTN_OPT_CAP = 1u << 4, ATTN_OPT_RANK = 1u << 5,
  ATTN_OPT_EST = 1u << 6, ATTN_OPT_COMBINE = 1u << 7, ATTN_OPT_STOP = 1u << 8 /* psa: minrank,
  ucb, gqa, selfcal */
};

/* Registry access: the entry of a kind (NULL when out of range), by name (case-insensitive,
 * NULL when unknown), and the number of entries (entries 0..n-1 are kinds 0..n-1). */
const attn_method_desc *attn_method_desc_of(attn_method_kind kind);
const attn_method_desc *attn_method_find(const char *name);
int attn_method_count(void);

/* Defaults for a method kind (block 16, sink 1, recent 1, budget 1024, eps 0.95, group 4,
 * quest ranking for top-k, mean ranking and mean estimate for PSA). */
void attn_method_defaults(attn_method *m, attn_method_kind kind);
/* Validates parameters; messages name the parameter. */
int attn_method_check(const attn_method *m, kv_error *err);
/* Parses a spec (syntax above); fields the spec does not name keep their defaults. KV_EINVAL
 * with the reason otherwise. */
int attn_method_parse(const char *s, attn_method *m, kv_error *err);
/* The canonical spec of m into buf (cap >= 128 holds any spec). Returns the length, or a
 * negative status when it does not fit (buf then holds a truncated string). */
int attn_method_spec(const attn_method *m, char *buf, int cap);
/* 1 when a and b have the same kind and the same value in every field their method reads. */
int attn_method_equal(const attn_method *a, const attn_method *b);
/* Short label for tables and plots, unique per canonical spec up to %g of epsilon, e.g.
 * "topk-1024", "psa-0.95-mean", "dense", "oracle-0.95", "psa-0.9-mean-sink0-recent0" (buf >= 64). */
void attn_method_label(const attn_method *m, char *buf, int cap);

/* Figures that price a method (what the attention profile records besides its budgets). */
attn_cost_class attn_method_cost_class(const attn_method *m);
/* Metadata vectors of head_dim elements per block and KV head that the method scans (min+max
 * for Quest ranking/bound, mean for mean ranking/estimate, mean+var for log-normal). */
int attn_method_meta_vectors(const attn_method *m);
/* Largest context (keys) that the method reads whole by construction: INT64_MAX for dense and
 * for PSA/oracle with epsilon >= 1, the token budget for top-k. */
int64_t attn_method_full_upto(const attn_method *m);

/* Accessors for bindings that hold a method as opaque bytes (traces/record/kvattn.py). */
int attn_method_sizeof(void);
const char *attn_method_name(const attn_method *m);
int attn_method_block_size(const attn_method *m);

/* ---- internal: the CPU functions the registry points to, one per module ---------------------- */
int attn__cpu_dense(const struct attn_shape *s, const attn_method *m, const float *q,
                    const float *K, const float *V, int64_t n_keys,
                    const struct attn_blockmeta *meta, const double *probs,
                    struct attn_result *r, kv_error *err);       /* attn_dense.c */
int attn__cpu_topk(const struct attn_shape *s, const attn_method *m, const float *q,
                   const float *K, const float *V, int64_t n_keys,
                   const struct attn_blockmeta *meta, const double *probs,
                   struct attn_result *r, kv_error *err);        /* attn_sparse.c */
int attn__cpu_progressive(const struct attn_shape *s, const attn_method *m, const float *q,
                          const float *K, const float *V, int64_t n_keys,
                          const struct attn_blockmeta *meta, const double *probs,
                          struct attn_result *r, kv_error *err); /* attn_sparse.c: PSA, oracle */

#endif /* ATTN_METHOD_H */

/* kvc_topk.cuh — block scoring and the on-GPU ordering of blocks, shared by top-k and PSA. */
#ifndef KVC_TOPK_CUH
#define KVC_TOPK_CUH

#include "kvc_internal.cuh"

typedef enum kvc_score_mode {
  KVC_SCORE_TOPK = 0, /* key[pair, b] = group-combined rank score; forced blocks +inf */
  KVC_SCORE_PSA       /* logit[pair, g, b] = log(n_tok) + rank score of head g;
                         est[pair, g, b] = log of the estimated unnormalised mass of head g */
} kvc_score_mode;

/* Scores every block of every (request, KV head) pair from the pool's metadata and writes
 * idx[pair, b] = b when idx is not NULL. Layouts use row stride max_blocks; entries past a
 * request's block count are not written. Asynchronous. */
int kvc__block_scores(kvc_ctx *c, const attn_shape *s, const attn_method *m, const kvc_kv *kv,
                      const kvc_batch *b, kvc_score_mode mode, double *key, float *logit,
                      float *est, int32_t *idx, kv_error *err);

/* Stable descending order of keys within each pair's segment [pair * max_blocks, + n_blocks):
 * order[pair, i] = block index (ties keep the lower block first, as the reference). Pairs of at
 * most KVC_BLOCK_SORT_MAX blocks: one CTA per pair (cub::BlockRadixSort), no scratch; longer:
 * CUB's segmented sort with scratch carved from `tmp` (kvc__sort_bytes). Asynchronous. */
#define KVC_BLOCK_SORT_MAX 4096
size_t kvc__sort_bytes(const kvc_batch *b, int n_kv_heads, int block_size);
int kvc__sort_blocks(kvc_ctx *c, const kvc_batch *b, int n_kv_heads, int block_size,
                     const double *key, int32_t *order, char *tmp, size_t tmp_bytes,
                     kv_error *err);

#endif /* KVC_TOPK_CUH */

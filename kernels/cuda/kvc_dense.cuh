/* kvc_dense.cuh — split-K attention over per-pair block lists (dense decode and top-k use it). */
#ifndef KVC_DENSE_CUH
#define KVC_DENSE_CUH

#include "kvc_internal.cuh"

/* Attention of every (request, KV head) pair over its block list, split-K as planned from
 * pair_blocks (host [n_req * n_kv_heads]): dense when list is NULL (pair reads logical blocks
 * 0..pair_blocks-1), else over list[pair * list_stride + i] (logical block indices, device).
 * Writes out [n_req, n_heads, head_dim] and lse (natural log, may be NULL). Asynchronous. */
int kvc__split_attention(kvc_ctx *c, const attn_shape *s, const kvc_kv *kv, const kvc_batch *b,
                         const int64_t *pair_blocks, const int32_t *list, int list_stride,
                         float *out, float *lse, kv_error *err);

#endif /* KVC_DENSE_CUH */

/* kvc_dense.cuh — split-K attention over per-pair block lists (dense decode and top-k use it). */
#ifndef KVC_DENSE_CUH
#define KVC_DENSE_CUH

#include "kvc_internal.cuh"

/* Split-K attention of every (request, KV head) pair over its block list, in two steps so that
 * callers can reserve one scratch arena for everything they launch:
 * kvc__split_prepare plans the launch from pair_blocks (host [n_req * n_kv_heads]: blocks each
 * pair reads; kvc_plan.h) into *plan and returns the device scratch it needs; kvc__split_launch
 * runs it with that scratch at `base`: dense when list is NULL (a pair reads logical blocks
 * 0..n-1, n from seq_len), else over list[pair * list_stride + i], i < list_count[pair] (logical
 * block indices and counts, device; the counts must equal the host's pair_blocks). Writes out
 * [n_req, n_heads, head_dim] and lse (natural log, may be NULL). Asynchronous; uploads nothing.
 * prepare's `dense` is 1 for a launch without a list, else 0: it names the attend core the launch
 * will run (KVC_TUNE_DENSE_CORE or KVC_TUNE_TOPK_CORE), whose occupancy the plan uses. */
int kvc__split_prepare(kvc_ctx *c, const attn_shape *s, kvc_dtype dtype, const kvc_batch *b,
                       const int64_t *pair_blocks, int dense, kvc_split_size *plan, size_t *bytes,
                       kv_error *err);
int kvc__split_launch(kvc_ctx *c, const attn_shape *s, const kvc_kv *kv, const kvc_batch *b,
                      const int32_t *list, int list_stride, const int32_t *list_count,
                      const kvc_split_size *plan, char *base, float *out, float *lse,
                      kv_error *err);

#endif /* KVC_DENSE_CUH */

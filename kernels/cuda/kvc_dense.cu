/* kvc_dense.cu — dense decode attention: split-K over paged KV (flash-decoding), GQA-aware.
 *
 * v1 (this file): one CTA per split of one (request, KV head) pair; the CTA computes every query
 * head of the group from one read of the split's K and V (kvc_attend.cuh), writes a partial
 * (unnormalised output, max, sum) or, when the pair has one split, the final output; a combine
 * kernel merges the partials (log-sum-exp). Split size is planned on the host (kvc_plan.h) so the
 * grid has about 4 waves of CTAs. Unmeasured on a GPU as of this commit: docs/kernels.md.
 */
#include "kvc_attend.cuh"
#include "kvc_dense.cuh"

struct kvc__split_params {
  const void *k, *v;
  int Hkv, Hq, G, bs, max_blocks;
  const int32_t *block_table, *seq_len;
  const float *q;
  const int32_t *list;
  int list_stride;
  const kvc_work *work;
  float *part_o;   /* [slot, G, D] */
  float *part_ml;  /* [slot, G, 2] (max in log2 units, sum) */
  float *out, *lse;
  float scale_log2;
};

template <typename T, int D, int GT>
__global__ void __launch_bounds__(KVC_THREADS) kvc__split_kernel(kvc__split_params p) {
  using A = kvc_attend<T, D, GT>;
  __shared__ typename A::smem_t sm;
  const kvc_work w = p.work[blockIdx.x];
  const int len = p.seq_len[w.req];
  const int nblk = w.blk_end - w.blk_begin;
  const int pair = w.req * p.Hkv + w.kvh;
  for (int i = threadIdx.x; i < nblk; i += KVC_THREADS) {
    const int lb = p.list ? p.list[(size_t)pair * p.list_stride + w.blk_begin + i] : w.blk_begin + i;
    sm.page[i] = p.block_table[(size_t)w.req * p.max_blocks + lb];
    sm.ntok[i] = kvc_block_tokens(len, p.bs, lb);
  }
  float q[GT][A::VEC];
  A::load_q(p.q + ((size_t)w.req * p.Hq + w.kvh * p.G) * D, p.G, p.scale_log2, q);
  __syncthreads();
  A::run(sm, (const T *)p.k, (const T *)p.v, p.Hkv, p.bs, w.kvh, nblk, p.G, q);
  for (int idx = threadIdx.x; idx < p.G * D; idx += KVC_THREADS) {
    const int g = idx / D, d = idx - g * D;
    if (w.n_splits == 1) {
      const float L = sm.L[g];
      const size_t hq = (size_t)w.req * p.Hq + w.kvh * p.G + g;
      p.out[hq * D + d] = L > 0.0f ? sm.o[0][g][d] / L : 0.0f;
      if (d == 0 && p.lse) p.lse[hq] = (float)((sm.M[g] + log2f(L)) * KVC_LN2);
    } else {
      p.part_o[((size_t)w.slot * p.G + g) * D + d] = sm.o[0][g][d];
      if (d == 0) {
        p.part_ml[((size_t)w.slot * p.G + g) * 2] = sm.M[g];
        p.part_ml[((size_t)w.slot * p.G + g) * 2 + 1] = sm.L[g];
      }
    }
  }
}

/* One CTA per pair: merges its splits' partials (nothing to do for a single split). */
__global__ void __launch_bounds__(KVC_THREADS)
kvc__combine_kernel(const int32_t *pair_first, const int32_t *pair_splits, const float *part_o,
                    const float *part_ml, int Hkv, int Hq, int G, int D, float *out, float *lse) {
  const int pair = blockIdx.x;
  const int ns = pair_splits[pair], first = pair_first[pair];
  if (ns <= 1) return;
  const int r = pair / Hkv, h = pair % Hkv;
  for (int idx = threadIdx.x; idx < G * D; idx += blockDim.x) {
    const int g = idx / D, d = idx - g * D;
    float M = -CUDART_INF_F;
    for (int s = 0; s < ns; s++) M = fmaxf(M, part_ml[((size_t)(first + s) * G + g) * 2]);
    float L = 0.0f, O = 0.0f;
    if (M != -CUDART_INF_F) {
      for (int s = 0; s < ns; s++) {
        const size_t pg = (size_t)(first + s) * G + g;
        const float ms = part_ml[pg * 2];
        const float wgt = ms == -CUDART_INF_F ? 0.0f : exp2f(ms - M);
        L = fmaf(part_ml[pg * 2 + 1], wgt, L);
        O = fmaf(part_o[pg * D + d], wgt, O);
      }
    }
    const size_t hq = (size_t)r * Hq + h * G + g;
    out[hq * D + d] = L > 0.0f ? O / L : 0.0f;
    if (d == 0 && lse) lse[hq] = (float)((M + log2f(L)) * KVC_LN2);
  }
}

template <typename T, int D, int GT>
static int kvc__launch_split(kvc_ctx *c, const kvc__split_params &p, int n_work, kv_error *err) {
  kvc__split_kernel<T, D, GT><<<n_work, KVC_THREADS, 0, c->stream>>>(p);
  KVC_CHECK(err, cudaGetLastError());
  return 0;
}

/* Arena layout of a planned launch (offsets into the caller's scratch). */
typedef struct {
  uint64_t work, first, ns, po, pml, total;
} kvc__split_layout;

static kvc__split_layout kvc__layout(const kvc_split_plan *plan, int G, int D) {
  kvc_arena ar = {0};
  kvc__split_layout l;
  l.work = kvc_arena_take(&ar, (uint64_t)plan->n_work * sizeof(kvc_work));
  l.first = kvc_arena_take(&ar, (uint64_t)plan->n_pairs * sizeof(int32_t));
  l.ns = kvc_arena_take(&ar, (uint64_t)plan->n_pairs * sizeof(int32_t));
  l.po = kvc_arena_take(&ar, (uint64_t)plan->n_work * G * D * sizeof(float));
  l.pml = kvc_arena_take(&ar, (uint64_t)plan->n_work * G * 2 * sizeof(float));
  l.total = ar.used + 256;
  return l;
}

int kvc__split_prepare(kvc_ctx *c, const attn_shape *s, const kvc_batch *b,
                       const int64_t *pair_blocks, size_t *bytes, kv_error *err) {
  KVC_TRY(kvc_plan_splits(pair_blocks, b->n_req, s->n_kv_heads, c->target_ctas, 8, &c->plan, err));
  *bytes = (size_t)kvc__layout(&c->plan, s->n_heads / s->n_kv_heads, s->head_dim).total;
  return 0;
}

int kvc__split_launch(kvc_ctx *c, const attn_shape *s, const kvc_kv *kv, const kvc_batch *b,
                      const int32_t *list, int list_stride, char *base, float *out, float *lse,
                      kv_error *err) {
  const int Hkv = s->n_kv_heads, G = s->n_heads / Hkv, D = s->head_dim;
  const kvc_split_plan *plan = &c->plan;
  if (plan->n_work == 0) return 0;
  base = (char *)(((uintptr_t)base + 255) & ~(uintptr_t)255);
  const kvc__split_layout l = kvc__layout(plan, G, D);
  KVC_TRY(kvc__upload_async(c, base + l.work, plan->work, plan->n_work * sizeof(kvc_work), err));
  KVC_TRY(kvc__upload_async(c, base + l.first, plan->pair_first, plan->n_pairs * sizeof(int32_t),
                            err));
  KVC_TRY(kvc__upload_async(c, base + l.ns, plan->pair_splits, plan->n_pairs * sizeof(int32_t),
                            err));
  kvc__split_params p;
  p.k = kv->k;
  p.v = kv->v;
  p.Hkv = Hkv;
  p.Hq = s->n_heads;
  p.G = G;
  p.bs = kv->block_size;
  p.max_blocks = b->max_blocks;
  p.block_table = b->block_table;
  p.seq_len = b->seq_len;
  p.q = b->q;
  p.list = list;
  p.list_stride = list_stride;
  p.work = (const kvc_work *)(base + l.work);
  p.part_o = (float *)(base + l.po);
  p.part_ml = (float *)(base + l.pml);
  p.out = out;
  p.lse = lse;
  p.scale_log2 = (float)(1.0 / sqrt((double)D)) * KVC_LOG2E;
  KVC_TRY(KVC_DISPATCH(kv->dtype, D, G, kvc__launch_split, c, p, plan->n_work, err));
  kvc__combine_kernel<<<plan->n_pairs, KVC_THREADS, 0, c->stream>>>(
      (const int32_t *)(base + l.first), (const int32_t *)(base + l.ns), p.part_o, p.part_ml, Hkv,
      s->n_heads, G, D, out, lse);
  KVC_CHECK(err, cudaGetLastError());
  return 0;
}

extern "C" int kvc_dense(kvc_ctx *c, const attn_shape *s, const kvc_kv *kv, const kvc_batch *b,
                         float *out, float *lse, kv_error *err) {
  KVC_TRY(kvc__check_common(s, kv, b, err));
  const int Hkv = s->n_kv_heads;
  int64_t *pb;
  KVC_TRY(kvc__pair_blocks(c, (int64_t)b->n_req * Hkv, &pb, err));
  for (int r = 0; r < b->n_req; r++) {
    for (int h = 0; h < Hkv; h++) pb[(int64_t)r * Hkv + h] = kvc_n_blocks(b->h_seq_len[r], kv->block_size);
  }
  size_t bytes;
  char *base;
  KVC_TRY(kvc__split_prepare(c, s, b, pb, &bytes, err));
  KVC_TRY(kvc__scratch(c, bytes, &base, err));
  return kvc__split_launch(c, s, kv, b, NULL, 0, base, out, lse, err);
}

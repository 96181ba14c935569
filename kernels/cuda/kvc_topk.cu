/* kvc_topk.cu — fixed top-k (Quest-style) decode attention on the GPU, and the block scoring and
 * ordering that PSA shares.
 *
 * 1. Scores: one row group of threads per block reads the block's metadata rows (16-byte loads,
 *    head_dim / 8 threads) and computes, for every query head of the group, the Quest bound
 *    sum_d max(q_d min_d, q_d max_d) or q . mean (and q^2 . var for the log-normal estimate).
 * 2. Selection without a host round trip: a stable descending segmented sort (CUB) of the
 *    group-combined keys per (request, KV head), forced blocks keyed +inf so they come first in
 *    ascending order, as attn_sparse.c orders them; the first k entries are the selection.
 * 3. Split-K attention over the selected blocks (kvc_dense.cu's kernel with a block list).
 * The number of selected blocks per pair is known on the host from the lengths (kvc_topk_blocks),
 * so the split plan needs no device data. Not yet run on a GPU: docs/kernels.md.
 */
#include <cub/device/device_segmented_sort.cuh>
#include <math_constants.h>

#include <vector>

#include "kvc_dense.cuh"
#include "kvc_topk.cuh"

struct kvc__score_params {
  const void *kmin, *kmax, *kmean, *kvar;
  int Hkv, Hq, G, bs, max_blocks;
  const int32_t *block_table, *seq_len;
  const float *q;
  float scale;
  int mode, rank, combine, estimate, sink, recent;
  double *key;
  float *logit, *est;
  int32_t *idx;
};

template <typename T, int D, int GT>
__global__ void __launch_bounds__(128) kvc__score_kernel(kvc__score_params p) {
  constexpr int VEC = 8, LANES = D / VEC, ROWS = 128 / LANES;
  const int pair = blockIdx.y, r = pair / p.Hkv, h = pair % p.Hkv;
  const int lane = threadIdx.x % LANES, row = threadIdx.x / LANES;
  const int len = p.seq_len[r];
  const int nb = (int)kvc_n_blocks(len, p.bs);
  float q[GT][VEC];
  const float *qg = p.q + ((size_t)r * p.Hq + h * p.G) * D + lane * VEC;
#pragma unroll
  for (int g = 0; g < GT; g++) {
#pragma unroll
    for (int j = 0; j < VEC; j++) q[g][j] = g < p.G ? qg[g * D + j] : 0.0f;
  }
  const bool need_minmax = p.rank == ATTN_RANK_QUEST || (p.mode == KVC_SCORE_PSA && p.estimate == ATTN_EST_BOUND);
  const bool need_mean = p.rank == ATTN_RANK_MEAN || (p.mode == KVC_SCORE_PSA && p.estimate != ATTN_EST_BOUND);
  const bool need_var = p.mode == KVC_SCORE_PSA && p.estimate == ATTN_EST_LOGNORMAL;
  for (int b0 = blockIdx.x * ROWS * 4; b0 < (int)(blockIdx.x + 1) * ROWS * 4; b0 += ROWS) {
    const int b = b0 + row;
    const bool live = b < nb; /* uniform within a row group; shuffles stay full-warp */
    const int page = live ? p.block_table[(size_t)r * p.max_blocks + b] : 0;
    const size_t off = ((size_t)page * p.Hkv + h) * D + lane * VEC;
    float mn[VEC], mx[VEC], mu[VEC], va[VEC];
    if (live && need_minmax) {
      kvc_unpack8<T>(__ldg(reinterpret_cast<const uint4 *>((const T *)p.kmin + off)), mn);
      kvc_unpack8<T>(__ldg(reinterpret_cast<const uint4 *>((const T *)p.kmax + off)), mx);
    } else {
#pragma unroll
      for (int j = 0; j < VEC; j++) mn[j] = mx[j] = 0.0f;
    }
    if (live && need_mean) {
      kvc_unpack8<T>(__ldg(reinterpret_cast<const uint4 *>((const T *)p.kmean + off)), mu);
    } else {
#pragma unroll
      for (int j = 0; j < VEC; j++) mu[j] = 0.0f;
    }
    if (live && need_var) {
      kvc_unpack8<T>(__ldg(reinterpret_cast<const uint4 *>((const T *)p.kvar + off)), va);
    } else {
#pragma unroll
      for (int j = 0; j < VEC; j++) va[j] = 0.0f;
    }
    float quest[GT], dmean[GT], qvar[GT];
#pragma unroll
    for (int g = 0; g < GT; g++) {
      float a = 0.0f, c = 0.0f, e = 0.0f;
#pragma unroll
      for (int j = 0; j < VEC; j++) {
        a += fmaxf(q[g][j] * mn[j], q[g][j] * mx[j]);
        c = fmaf(q[g][j], mu[j], c);
        e = fmaf(q[g][j] * q[g][j], va[j], e);
      }
      quest[g] = a;
      dmean[g] = c;
      qvar[g] = e;
    }
#pragma unroll
    for (int o = LANES / 2; o > 0; o >>= 1) {
#pragma unroll
      for (int g = 0; g < GT; g++) {
        quest[g] += __shfl_xor_sync(0xffffffffu, quest[g], o);
        dmean[g] += __shfl_xor_sync(0xffffffffu, dmean[g], o);
        qvar[g] += __shfl_xor_sync(0xffffffffu, qvar[g], o);
      }
    }
    if (!live || lane != 0) continue;
    const size_t kb = (size_t)pair * p.max_blocks + b;
    p.idx[kb] = b;
    const double sc = p.scale;
    if (p.mode == KVC_SCORE_TOPK) {
      double k = p.combine == ATTN_GQA_MAX ? -CUDART_INF : 0.0;
      for (int g = 0; g < p.G; g++) {
        const double v = sc * (p.rank == ATTN_RANK_QUEST ? quest[g] : dmean[g]);
        k = p.combine == ATTN_GQA_MAX ? fmax(k, v) : k + v;
      }
      if (kvc_is_forced(b, nb, p.sink, p.recent)) k = CUDART_INF;
      p.key[kb] = k;
    } else {
      const double ln = log((double)kvc_block_tokens(len, p.bs, b));
      for (int g = 0; g < p.G; g++) {
        const size_t o = ((size_t)pair * p.G + g) * p.max_blocks + b;
        p.logit[o] = (float)(ln + sc * (p.rank == ATTN_RANK_QUEST ? quest[g] : dmean[g]));
        double e;
        if (p.estimate == ATTN_EST_BOUND) e = ln + sc * quest[g];
        else if (p.estimate == ATTN_EST_MEAN) e = ln + sc * dmean[g];
        else e = ln + sc * dmean[g] + 0.5 * sc * sc * qvar[g];
        p.est[o] = (float)e;
      }
    }
  }
}

template <typename T, int D, int GT>
static int kvc__launch_score(kvc_ctx *c, const kvc__score_params &p, int n_pairs, kv_error *err) {
  constexpr int ROWS = 128 / (D / 8);
  dim3 grid((p.max_blocks + ROWS * 4 - 1) / (ROWS * 4), n_pairs);
  kvc__score_kernel<T, D, GT><<<grid, 128, 0, c->stream>>>(p);
  KVC_CHECK(err, cudaGetLastError());
  return 0;
}

int kvc__block_scores(kvc_ctx *c, const attn_shape *s, const attn_method *m, const kvc_kv *kv,
                      const kvc_batch *b, kvc_score_mode mode, double *key, float *logit,
                      float *est, int32_t *idx, kv_error *err) {
  kvc__score_params p;
  memset(&p, 0, sizeof p);
  p.kmin = kv->kmin;
  p.kmax = kv->kmax;
  p.kmean = kv->kmean;
  p.kvar = kv->kvar;
  p.Hkv = s->n_kv_heads;
  p.Hq = s->n_heads;
  p.G = s->n_heads / s->n_kv_heads;
  p.bs = kv->block_size;
  p.max_blocks = b->max_blocks;
  p.block_table = b->block_table;
  p.seq_len = b->seq_len;
  p.q = b->q;
  p.scale = (float)(1.0 / sqrt((double)s->head_dim));
  p.mode = mode;
  p.rank = mode == KVC_SCORE_TOPK ? m->topk_rank : m->psa_rank;
  p.combine = m->topk_combine;
  p.estimate = m->psa_estimate;
  p.sink = m->keep_sink_blocks;
  p.recent = m->keep_recent_blocks;
  p.key = key;
  p.logit = logit;
  p.est = est;
  p.idx = idx;
  const int need = kvc_method_meta(m);
  if ((need & kv->meta_mask) != need) {
    return kv_error_set(err, KV_EINVAL, "block scores: method needs metadata 0x%x, pool keeps 0x%x",
                        need, kv->meta_mask);
  }
  return KVC_DISPATCH(kv->dtype, s->head_dim, p.G, kvc__launch_score, c, p,
                      b->n_req * s->n_kv_heads, err);
}

size_t kvc__sort_bytes(int n_pairs, int max_blocks) {
  size_t bytes = 0;
  (void)cub::DeviceSegmentedSort::StableSortPairsDescending(
      (void *)NULL, bytes, (const double *)NULL, (double *)NULL, (const int32_t *)NULL,
      (int32_t *)NULL, (int64_t)n_pairs * max_blocks, n_pairs, (const int32_t *)NULL,
      (const int32_t *)NULL, (cudaStream_t)0);
  return bytes + 2 * (size_t)n_pairs * sizeof(int32_t) + 512;
}

int kvc__sort_blocks(kvc_ctx *c, const kvc_batch *b, int n_kv_heads, int block_size,
                     const double *key_in, double *key_out, const int32_t *idx_in, int32_t *order,
                     char *tmp, size_t tmp_bytes, kv_error *err) {
  const int pairs = b->n_req * n_kv_heads;
  std::vector<int32_t> seg(2 * (size_t)pairs);
  for (int pr = 0; pr < pairs; pr++) {
    seg[pr] = pr * b->max_blocks;
    seg[pairs + pr] = pr * b->max_blocks + (int32_t)kvc_n_blocks(b->h_seq_len[pr / n_kv_heads], block_size);
  }
  int32_t *dseg = (int32_t *)tmp;
  char *ctmp = tmp + (((2 * (size_t)pairs * sizeof(int32_t)) + 255) & ~(size_t)255);
  size_t cbytes = tmp_bytes - (size_t)(ctmp - tmp);
  KVC_TRY(kvc__upload_async(c, dseg, seg.data(), seg.size() * sizeof(int32_t), err));
  size_t need = 0;
  KVC_CHECK(err, cub::DeviceSegmentedSort::StableSortPairsDescending(
                     (void *)NULL, need, key_in, key_out, idx_in, order,
                     (int64_t)pairs * b->max_blocks, pairs, dseg, dseg + pairs, c->stream));
  if (need > cbytes) {
    return kv_error_set(err, KV_ESTATE, "block sort: scratch %zu < %zu bytes", cbytes, need);
  }
  KVC_CHECK(err, cub::DeviceSegmentedSort::StableSortPairsDescending(
                     (void *)ctmp, cbytes, key_in, key_out, idx_in, order,
                     (int64_t)pairs * b->max_blocks, pairs, dseg, dseg + pairs, c->stream));
  KVC_CHECK(err, cudaGetLastError());
  return 0;
}

extern "C" int kvc_topk(kvc_ctx *c, const attn_shape *s, const attn_method *m, const kvc_kv *kv,
                        const kvc_batch *b, float *out, kvc_sparse_out *so, kv_error *err) {
  KVC_TRY(kvc__check_common(s, kv, b, err));
  KVC_TRY(attn_method_check(m, err));
  if (m->kind != ATTN_TOPK) return kv_error_set(err, KV_EINVAL, "kvc_topk: method is not top-k");
  if (m->block_size != kv->block_size) {
    return kv_error_set(err, KV_EINVAL, "kvc_topk: method block %d, pool block %d",
                        m->block_size, kv->block_size);
  }
  const int Hkv = s->n_kv_heads, pairs = b->n_req * Hkv, mb = b->max_blocks;
  kvc_arena ar = {0};
  const uint64_t o_key = kvc_arena_take(&ar, (uint64_t)pairs * mb * sizeof(double));
  const uint64_t o_key2 = kvc_arena_take(&ar, (uint64_t)pairs * mb * sizeof(double));
  const uint64_t o_idx = kvc_arena_take(&ar, (uint64_t)pairs * mb * sizeof(int32_t));
  const uint64_t o_ord = kvc_arena_take(&ar, (uint64_t)pairs * mb * sizeof(int32_t));
  const size_t sort_bytes = kvc__sort_bytes(pairs, mb);
  const uint64_t o_sort = kvc_arena_take(&ar, sort_bytes);
  /* Selected blocks per pair (host, from the lengths), and the split plan over them: one arena
   * holds the selection and the split-K launch's scratch. */
  int64_t *pb;
  KVC_TRY(kvc__pair_blocks(c, pairs, &pb, err));
  std::vector<int32_t> cnt(pairs), ones(pairs, 1);
  for (int pr = 0; pr < pairs; pr++) {
    pb[pr] = kvc_topk_blocks(b->h_seq_len[pr / Hkv], m->block_size, m->token_budget,
                             m->keep_sink_blocks, m->keep_recent_blocks);
    cnt[pr] = (int32_t)pb[pr];
  }
  size_t split_bytes;
  KVC_TRY(kvc__split_prepare(c, s, b, pb, &split_bytes, err));
  const uint64_t o_split = kvc_arena_take(&ar, split_bytes);
  char *base;
  KVC_TRY(kvc__scratch(c, ar.used, &base, err));
  double *key = (double *)(base + o_key), *key2 = (double *)(base + o_key2);
  int32_t *idx = (int32_t *)(base + o_idx), *ord = (int32_t *)(base + o_ord);
  KVC_TRY(kvc__phase(c, 0, err));
  KVC_TRY(kvc__block_scores(c, s, m, kv, b, KVC_SCORE_TOPK, key, NULL, NULL, idx, err));
  KVC_TRY(kvc__sort_blocks(c, b, Hkv, kv->block_size, key, key2, idx, ord, base + o_sort,
                           sort_bytes, err));
  if (so) {
    if (so->order) KVC_CHECK(err, cudaMemcpyAsync(so->order, ord, (size_t)pairs * mb * sizeof(int32_t),
                                                  cudaMemcpyDeviceToDevice, c->stream));
    if (so->blocks_read) KVC_TRY(kvc__upload_async(c, so->blocks_read, cnt.data(), pairs * sizeof(int32_t), err));
    if (so->blocks_fetched) KVC_TRY(kvc__upload_async(c, so->blocks_fetched, cnt.data(), pairs * sizeof(int32_t), err));
    if (so->iterations) KVC_TRY(kvc__upload_async(c, so->iterations, ones.data(), pairs * sizeof(int32_t), err));
    if (so->est_mass) KVC_CHECK(err, cudaMemsetAsync(so->est_mass, 0xff, (size_t)b->n_req * s->n_heads * sizeof(float), c->stream));
  }
  KVC_TRY(kvc__phase(c, 1, err));
  KVC_TRY(kvc__split_launch(c, s, kv, b, ord, mb, base + o_split, out, NULL, err));
  return kvc__phase(c, 2, err);
}

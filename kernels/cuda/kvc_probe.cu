/* kvc_probe.cu — read-bandwidth probes (v5; kvbench's `bandwidth` rows, used by no op): the same
 * bytes read by per-thread 16-byte loads (8 independent loads in flight per thread) or by 1-D
 * bulk asynchronous copies (cp.async.bulk, kvc_bulk.cuh) into a ring of shared-memory slots, over
 * a contiguous buffer or over the page-scattered K/V of a paged pool. Every probe folds what it
 * read into an XOR of 32-bit words (one atomicXor per CTA), which the caller compares between
 * probes of the same bytes: a wrong copy (slot, offset, phase) shows up as a checksum mismatch. */
#include <algorithm>
#include <vector>

#include "kvc_bulk.cuh"
#include "kvc_internal.cuh"

#define KVC_PROBE_THREADS 128
#define KVC_PROBE_MAX_STAGES 16

__device__ __forceinline__ uint32_t kvc__xor4(uint4 u) { return u.x ^ u.y ^ u.z ^ u.w; }

__device__ __forceinline__ void kvc__xor_out(uint32_t x, uint32_t *out) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) x ^= __shfl_xor_sync(0xffffffffu, x, o);
  if (threadIdx.x % 32 == 0) atomicXor(out, x);
}

/* Defined contents: word i = a hash of i. */
__global__ void kvc__probe_fill(uint32_t *p, size_t n) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
       i += (size_t)gridDim.x * blockDim.x) {
    uint32_t x = (uint32_t)i * 0x9e3779b1u ^ (uint32_t)(i >> 32);
    x ^= x >> 15, x *= 0x2c1b3c6du, x ^= x >> 12;
    p[i] = x;
  }
}

/* Per-thread loads: 8 independent 16-byte __ldcg per iteration (PF: with the L2::256B hint). */
template <bool PF>
__device__ __forceinline__ uint4 kvc__probe_ld(const uint4 *p) {
  if constexpr (PF) return kvc_ldcg_pf256(p);
  else return __ldcg(p);
}
template <bool PF>
__global__ void __launch_bounds__(KVC_PROBE_THREADS) kvc__probe_ldg(const uint4 *__restrict__ p,
                                                                    size_t n, uint32_t *out) {
  uint32_t x = 0;
  const size_t stride = (size_t)gridDim.x * blockDim.x;
  size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
  for (; i + 7 * stride < n; i += 8 * stride) {
    uint4 u[8];
#pragma unroll
    for (int j = 0; j < 8; j++) u[j] = kvc__probe_ld<PF>(p + i + j * stride);
#pragma unroll
    for (int j = 0; j < 8; j++) x ^= kvc__xor4(u[j]);
  }
  for (; i < n; i += stride) x ^= kvc__xor4(kvc__probe_ld<PF>(p + i));
  kvc__xor_out(x, out);
}

/* Consumes one slot: every thread XORs its 16-byte words of the stage (stage_bytes, laid out as
 * pieces of piece_bytes at pitch). */
__device__ __forceinline__ uint32_t kvc__fold_slot(const unsigned char *slot, int stage_bytes,
                                                   int piece_bytes, int pitch) {
  uint32_t x = 0;
  const int wpp = piece_bytes / 16;
  for (int w = threadIdx.x; w < stage_bytes / 16; w += KVC_PROBE_THREADS) {
    const int pc = w / wpp, r = w - pc * wpp;
    x ^= kvc__xor4(*reinterpret_cast<const uint4 *>(slot + kvc_ring_tile_off(pc, r * 16, pitch)));
  }
  return x;
}

/* Bulk copies, contiguous: stage j of this CTA = bytes [(cta + j * grid) * stage_bytes, +
 * stage_bytes), copied by warp 0 as stage_bytes / piece_bytes (<= 32) pieces, one per lane, into
 * slot j % stages (pieces at pitch). Completion: full[slot] (1 arrival: lane 0's expect_tx). */
__global__ void __launch_bounds__(KVC_PROBE_THREADS) kvc__probe_bulk(const unsigned char *__restrict__ p,
                                                                     int64_t n_stage, int stage_bytes,
                                                                     int piece_bytes, int pitch,
                                                                     int stages, uint32_t *out) {
  extern __shared__ __align__(128) unsigned char kvc__probe_dyn[];
  __shared__ __align__(8) uint64_t full[KVC_PROBE_MAX_STAGES];
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const int npc = stage_bytes / piece_bytes;
  const int slot_bytes = npc * pitch;
  const int64_t nk = kvc_ring_count(n_stage, blockIdx.x, gridDim.x);
  if (threadIdx.x == 0) {
    for (int s = 0; s < stages; s++) kvc_mbar_init(&full[s], 1);
    kvc_mbar_init_fence();
  }
  __syncthreads();
  auto issue = [&](int64_t k) { /* warp 0 */
    const int s = kvc_ring_slot(k, stages);
    if (lane == 0) kvc_mbar_expect_tx(&full[s], (uint32_t)stage_bytes);
    __syncwarp();
    if (lane < npc) {
      const unsigned char *src = p + (blockIdx.x + k * gridDim.x) * (int64_t)stage_bytes +
                                 (int64_t)lane * piece_bytes;
      kvc_bulk_g2s(kvc__probe_dyn + (size_t)s * slot_bytes + kvc_ring_tile_off(lane, 0, pitch), src,
                   (uint32_t)piece_bytes, &full[s]);
    }
  };
  if (warp == 0) {
    for (int64_t k = 0; k < stages && k < nk; k++) issue(k);
  }
  uint32_t x = 0;
  for (int64_t k = 0; k < nk; k++) {
    const int s = kvc_ring_slot(k, stages);
    kvc_mbar_wait(&full[s], kvc_ring_parity(k, stages));
    x ^= kvc__fold_slot(kvc__probe_dyn + (size_t)s * slot_bytes, stage_bytes, piece_bytes, pitch);
    __syncthreads(); /* every thread is done with slot s */
    if (warp == 0 && k + stages < nk) {
      kvc_fence_proxy_async();
      issue(k + stages);
    }
  }
  kvc__xor_out(x, out);
}

/* Paged pool: CTA (x, pair) reads the K and V pages of blocks [x * bstride, x * bstride + bpc)
 * (bstride = bpc: every block) of pair =
 * (request, KV head): item 2i = K of block i, 2i + 1 = V, each page_bytes contiguous (one page of
 * one KV head; or kmin / kmax rows of one KV head, v10). BULK: one bulk copy per item into the
 * ring; else per-thread 16-byte loads, `group` items' words per step. */
template <bool BULK, bool PF = false, int UNR = 8>
__global__ void __launch_bounds__(KVC_PROBE_THREADS)
    kvc__probe_pool(const unsigned char *__restrict__ kp, const unsigned char *__restrict__ vp,
                    const int32_t *__restrict__ bt, const int32_t *__restrict__ seq_len,
                    int max_blocks, int Hkv, int bs, int page_bytes, int bpc, int bstride,
                    int stages, int group, int per_block, uint32_t *out) {
  extern __shared__ __align__(128) unsigned char kvc__probe_dyn[];
  __shared__ __align__(8) uint64_t full[KVC_PROBE_MAX_STAGES];
  const int r = blockIdx.y / Hkv, kvh = blockIdx.y % Hkv;
  const int nb = (seq_len[r] + bs - 1) / bs;
  const int b0 = blockIdx.x * bstride, b1 = min(nb, b0 + bpc);
  if (b0 >= b1) return; /* the whole CTA, before any barrier */
  const int n_items = per_block * (b1 - b0);
  const int32_t *bt_row = bt + (int64_t)r * max_blocks;
  auto src_of = [&](int k) { /* kvc_ring.h, CPU-checked */
    int is_v;
    if (per_block == 1) return kp + kvc_pool_item_off(bt_row, b0, 2 * k, Hkv, kvh, page_bytes, &is_v);
    const int64_t off = kvc_pool_item_off(bt_row, b0, k, Hkv, kvh, page_bytes, &is_v);
    return (is_v ? vp : kp) + off;
  };
  uint32_t x = 0;
  if (!BULK) {
    const int words = page_bytes / 16;
    for (int k0 = 0; k0 < n_items; k0 += group) {
      const int ngw = min(group, n_items - k0) * words; /* 16-byte words of up to `group` items */
#pragma unroll UNR
      for (int w = threadIdx.x; w < ngw; w += KVC_PROBE_THREADS) {
        const int it = w / words;
        x ^= kvc__xor4(kvc__probe_ld<PF>(reinterpret_cast<const uint4 *>(src_of(k0 + it)) +
                                         (w - it * words)));
      }
    }
  } else {
    const int lane = threadIdx.x % 32;
    if (threadIdx.x == 0) {
      for (int s = 0; s < stages; s++) kvc_mbar_init(&full[s], 1);
      kvc_mbar_init_fence();
    }
    __syncthreads();
    if (threadIdx.x == 0) {
      for (int k = 0; k < stages && k < n_items; k++) {
        kvc_mbar_expect_tx(&full[k], (uint32_t)page_bytes);
        kvc_bulk_g2s(kvc__probe_dyn + (size_t)k * page_bytes, src_of(k), (uint32_t)page_bytes, &full[k]);
      }
    }
    (void)lane;
    for (int k = 0; k < n_items; k++) {
      const int s = kvc_ring_slot(k, stages);
      kvc_mbar_wait(&full[s], kvc_ring_parity(k, stages));
      x ^= kvc__fold_slot(kvc__probe_dyn + (size_t)s * page_bytes, page_bytes, page_bytes, page_bytes);
      __syncthreads();
      if (threadIdx.x == 0 && k + stages < n_items) {
        kvc_fence_proxy_async();
        kvc_mbar_expect_tx(&full[s], (uint32_t)page_bytes);
        kvc_bulk_g2s(kvc__probe_dyn + (size_t)s * page_bytes, src_of(k + stages), (uint32_t)page_bytes,
                     &full[s]);
      }
    }
  }
  kvc__xor_out(x, out);
}

static int kvc__probe_check_dev(kvc_ctx *c, int mode, kv_error *err) {
  if (mode == 1 && c->prop.major < 9) {
    return kv_error_set(err, KV_ENOTSUP, "bulk-copy probe: needs sm_90 (device is sm_%d%d)",
                        c->prop.major, c->prop.minor);
  }
  return 0;
}

/* Median of reps timed launches of `launch` (after one warm-up), and the warm-up's checksum. */
template <typename F>
static int kvc__probe_time(kvc_ctx *c, int reps, uint32_t *d_x, F launch, double *ms_med,
                           uint32_t *xsum, kv_error *err) {
  std::vector<double> t;
  KVC_CHECK(err, cudaMemsetAsync(d_x, 0, 4, c->stream));
  launch();
  KVC_CHECK(err, cudaGetLastError());
  KVC_CHECK(err, cudaMemcpyAsync(xsum, d_x, 4, cudaMemcpyDeviceToHost, c->stream));
  KVC_CHECK(err, cudaStreamSynchronize(c->stream));
  for (int i = 0; i < (reps > 0 ? reps : 1); i++) {
    double ms;
    int rc;
    if ((rc = kvc_time_begin(c, err))) return rc;
    launch();
    KVC_CHECK(err, cudaGetLastError());
    if ((rc = kvc_time_end(c, &ms, err))) return rc;
    t.push_back(ms);
  }
  std::sort(t.begin(), t.end());
  *ms_med = t[t.size() / 2];
  return 0;
}

extern "C" int kvc_probe_read(kvc_ctx *c, const kvc_probe_cfg *cfg, size_t bytes, int reps,
                              double *gbps, uint32_t *xsum, kv_error *err) {
  int rc = kvc__probe_check_dev(c, cfg->mode, err);
  if (rc) return rc;
  const int stage = cfg->stage_bytes, piece = cfg->piece_bytes;
  const int pitch = piece + (cfg->pad ? 16 : 0);
  if (cfg->mode < 0 || cfg->mode > 2) return kv_error_set(err, KV_EINVAL, "probe: mode %d", cfg->mode);
  if (cfg->mode == 1 &&
      (stage < 16 || piece < 16 || stage % piece || piece % 16 || stage / piece > 32 ||
       cfg->stages < 1 || cfg->stages > KVC_PROBE_MAX_STAGES || cfg->ctas_per_sm < 1)) {
    return kv_error_set(err, KV_EINVAL, "probe: bad configuration");
  }
  bytes -= bytes % (size_t)(cfg->mode == 1 ? stage : 16);
  void *a = NULL;
  uint32_t *d_x = NULL;
  double ms = 0;
  KVC_CHECK_GO(err, rc, done, cudaMalloc(&a, bytes));
  KVC_CHECK_GO(err, rc, done, cudaMalloc(&d_x, 4));
  kvc__probe_fill<<<4 * c->prop.multiProcessorCount, 256, 0, c->stream>>>((uint32_t *)a, bytes / 4);
  KVC_CHECK_GO(err, rc, done, cudaGetLastError());
  if (cfg->mode != 1) {
    const int grid = 8 * c->prop.multiProcessorCount;
    rc = kvc__probe_time(c, reps, d_x, [&] {
      if (cfg->mode == 2) {
        kvc__probe_ldg<true><<<grid, KVC_PROBE_THREADS, 0, c->stream>>>((const uint4 *)a, bytes / 16, d_x);
      } else {
        kvc__probe_ldg<false><<<grid, KVC_PROBE_THREADS, 0, c->stream>>>((const uint4 *)a, bytes / 16, d_x);
      }
    }, &ms, xsum, err);
  } else {
    const size_t dyn = (size_t)cfg->stages * (stage / piece) * pitch;
    KVC_CHECK_GO(err, rc, done, cudaFuncSetAttribute(kvc__probe_bulk,
                                                     cudaFuncAttributeMaxDynamicSharedMemorySize, (int)dyn));
    int occ = 0;
    KVC_CHECK_GO(err, rc, done, cudaOccupancyMaxActiveBlocksPerMultiprocessor(&occ, kvc__probe_bulk,
                                                                               KVC_PROBE_THREADS, dyn));
    if (occ < 1) {
      rc = kv_error_set(err, KV_ENOTSUP, "probe: %zu bytes of shared memory per CTA do not fit", dyn);
      goto done;
    }
    const int grid = c->prop.multiProcessorCount * std::min(occ, cfg->ctas_per_sm);
    const int64_t n_stage = (int64_t)(bytes / stage);
    rc = kvc__probe_time(c, reps, d_x, [&] {
      kvc__probe_bulk<<<grid, KVC_PROBE_THREADS, dyn, c->stream>>>((const unsigned char *)a, n_stage,
                                                                   stage, piece, pitch, cfg->stages, d_x);
    }, &ms, xsum, err);
  }
  if (!rc) *gbps = (double)bytes / (ms * 1e-3) / 1e9;
done:
  if (a) (void)cudaFree(a);
  if (d_x) (void)cudaFree(d_x);
  return rc;
}

extern "C" int kvc_probe_read_pool(kvc_ctx *c, int mode, int stages, const kvc_kv *kv,
                                   const kvc_batch *b, int reps, double *gbps, double *bytes,
                                   uint32_t *xsum, kv_error *err) {
  int rc = kvc__probe_check_dev(c, mode, err);
  if (rc) return rc;
  if (!kvc_probe_pool_args_ok(mode, stages, KVC_PROBE_MAX_STAGES)) { /* v6: stages only for mode 1 */
    return kv_error_set(err, KV_EINVAL, "probe: mode %d, stages %d", mode, stages);
  }
  /* What each mode reads and how (attn_cuda.h): the metadata arrays or K and V; a piece of
   * `rows` elements x head_dim per (block, KV head) (heads: 1 = every KV head of a page as one
   * piece); `group` pieces per step (with 8 per-thread 16-byte loads in flight; 16 in mode 6,
   * unroll 16); `bpc` blocks per CTA; 1/`req_div` of the requests. K+V pages: 512 KB per CTA at
   * 4 KB pages; metadata: the v2 score kernel's 32 blocks per CTA (16 KB), or 256 (modes 5, 6:
   * is the metadata read bound by CTA churn?). */
  struct pool_mode {
    bool meta, inter; /* kmin / kmax rows as pages; one min|max piece per block and head (mode 4) */
    bool all_heads;   /* one piece per page holding every KV head's row (mode 7) */
    int group, bpc, req_div;
    int bstride;      /* blocks between two CTAs' first blocks (0: bpc, every block read) */
  };
  static const pool_mode modes[] = {
      {false, false, false, 8, 64, 1, 0},   /* 0 K and V pages, per-thread loads */
      {false, false, false, 8, 64, 1, 0},   /* 1 the same by bulk copies */
      {false, false, false, 8, 64, 1, 0},   /* 2 per-thread loads with the L2::256B hint */
      {true, false, false, 64, 32, 1, 0},   /* 3 the metadata rows */
      {false, true, false, 32, 32, 1, 0},   /* 4 their bytes as interleaved 512 B pieces */
      {true, false, false, 64, 256, 1, 0},  /* 5 the metadata, 256 blocks per CTA */
      {true, false, false, 128, 256, 1, 0}, /* 6 the same, 16 loads per thread in flight */
      {true, false, true, 8, 32, 1, 0},     /* 7 a page's rows of every KV head as one piece */
      {false, false, false, 8, 64, 16, 0},  /* 8 K and V pages of 1/16 of the requests */
      {false, false, false, 4, 2, 1, 32},   /* 9 K and V of every 16th block, mode 3's grid */
  };
  static_assert(sizeof modes / sizeof modes[0] == KVC_PROBE_POOL_MODES, "one row per mode");
  const pool_mode &md = modes[mode];
  const int es = kvc_dtype_size(kv->dtype);
  const bool meta = md.meta, inter = md.inter;
  const int hkv = md.all_heads ? 1 : kv->n_kv_heads;
  const int n_req = (b->n_req + md.req_div - 1) / md.req_div;
  if (meta && (!kv->kmin || !kv->kmax)) {
    return kv_error_set(err, KV_EINVAL, "probe: the pool keeps no kmin / kmax");
  }
  if (inter && kv->block_size < 2) {
    return kv_error_set(err, KV_ENOTSUP, "probe: block size %d < 2", kv->block_size);
  }
  const int rows = meta ? (md.all_heads ? kv->n_kv_heads : 1) : inter ? 2 : kv->block_size;
  const int page_bytes = rows * kv->head_dim * es;
  const int per_block = inter ? 1 : 2;
  const unsigned char *kp = (const unsigned char *)(meta ? kv->kmin : kv->k);
  const unsigned char *vp = (const unsigned char *)(meta ? kv->kmax : kv->v);
  if (page_bytes % 16) return kv_error_set(err, KV_ENOTSUP, "probe: page of %d bytes", page_bytes);
  int max_nb = 0;
  double tot = 0;
  const int group = md.group, bpc = md.bpc, bstride = md.bstride ? md.bstride : bpc;
  for (int r = 0; r < n_req; r++) {
    const int nb = (b->h_seq_len[r] + kv->block_size - 1) / kv->block_size;
    max_nb = std::max(max_nb, nb);
    int read = 0; /* blocks read: [x * bstride, x * bstride + bpc) clipped to nb, every x */
    for (int b0 = 0; b0 < nb; b0 += bstride) read += std::min(bpc, nb - b0);
    tot += (double)per_block * read * hkv * page_bytes;
  }
  const dim3 grid((max_nb + bstride - 1) / bstride, n_req * hkv);
  const size_t dyn = mode == 1 ? (size_t)stages * page_bytes : 0;
  uint32_t *d_x = NULL;
  double ms = 0;
  KVC_CHECK_GO(err, rc, done, cudaMalloc(&d_x, 4));
  if (mode == 1) {
    KVC_CHECK_GO(err, rc, done, cudaFuncSetAttribute(kvc__probe_pool<true>,
                                                     cudaFuncAttributeMaxDynamicSharedMemorySize, (int)dyn));
  }
  rc = kvc__probe_time(c, reps, d_x, [&] {
    auto *kern = mode == 1 ? kvc__probe_pool<true>
                 : mode == 2 ? kvc__probe_pool<false, true>
                 : mode == 6 ? kvc__probe_pool<false, false, 16> /* 16 loads issued before use */
                             : kvc__probe_pool<false>;
    kern<<<grid, KVC_PROBE_THREADS, dyn, c->stream>>>(kp, vp, b->block_table, b->seq_len,
                                                      b->max_blocks, hkv, kv->block_size,
                                                      page_bytes, bpc, bstride, stages, group,
                                                      per_block, d_x);
  }, &ms, xsum, err);
  if (!rc) {
    *bytes = tot;
    *gbps = tot / (ms * 1e-3) / 1e9;
  }
done:
  if (d_x) (void)cudaFree(d_x);
  return rc;
}

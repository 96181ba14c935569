/* kvc_ctx.cu — context, device memory, timing, graphs, the paged pool and test data fills. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <algorithm>
#include <vector>

#include "kv_half.h"
#include "kvc_internal.cuh"

extern "C" int kvc_dtype_size(kvc_dtype t) { return t == KVC_DTYPE_F16 || t == KVC_DTYPE_BF16 ? 2 : 0; }
extern "C" const char *kvc_dtype_name(kvc_dtype t) {
  return t == KVC_DTYPE_F16 ? "fp16" : t == KVC_DTYPE_BF16 ? "bf16" : "?";
}

extern "C" int kvc_device_count(void) {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    (void)cudaGetLastError(); /* clear the sticky-free error of "no driver/device" */
    return 0;
  }
  return n;
}

extern "C" int kvc_ctx_init(kvc_ctx **out, int device, kv_error *err) {
  *out = NULL;
  int n = kvc_device_count();
  if (n < 1) return kv_error_set(err, KV_EDEVICE, "CUDA: no device present");
  if (device < 0 || device >= n) {
    return kv_error_set(err, KV_EINVAL, "CUDA: device %d out of range (%d devices)", device, n);
  }
  kvc_ctx *c = (kvc_ctx *)calloc(1, sizeof *c);
  if (!c) return kv_error_set(err, KV_ENOMEM, "CUDA context: out of memory");
  int rc = 0;
  c->device = device;
  c->tune[KVC_TUNE_DENSE_STAGES] = 4;
  c->tune[KVC_TUNE_DENSE_FUSED_COMBINE] = 1;
  c->tune[KVC_TUNE_DENSE_CORE] = 0;
  c->tune[KVC_TUNE_TOPK_CORE] = 0;
  c->tune[KVC_TUNE_SCORE_HEADS] = 0;
  c->tune[KVC_TUNE_SCORE_LOOP] = 1;
  c->tune[KVC_TUNE_PSA_CORE] = 1;
  c->tune[KVC_TUNE_PSA_RANK_CTAS] = 1;
  KVC_CHECK_GO(err, rc, fail, cudaSetDevice(device));
  KVC_CHECK_GO(err, rc, fail, cudaGetDeviceProperties(&c->prop, device));
  KVC_CHECK_GO(err, rc, fail, cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking));
  KVC_CHECK_GO(err, rc, fail, cublasCreate(&c->blas));
  KVC_CHECK_GO(err, rc, fail, cublasSetStream(c->blas, c->stream));
  KVC_CHECK_GO(err, rc, fail, cudaEventCreate(&c->ev0));
  KVC_CHECK_GO(err, rc, fail, cudaEventCreate(&c->ev1));
  for (int i = 0; i < 3; i++) KVC_CHECK_GO(err, rc, fail, cudaEventCreate(&c->ph[i]));
  *out = c;
  return 0;
fail:
  kvc_ctx_free(c);
  return rc;
}

extern "C" void kvc_ctx_free(kvc_ctx *c) {
  if (!c) return;
  if (c->stream) (void)cudaStreamSynchronize(c->stream);
  if (c->scratch) (void)cudaFree(c->scratch);
  if (c->split_cnt) (void)cudaFree(c->split_cnt);
  if (c->flush) (void)cudaFree(c->flush);
  if (c->flush_sink) (void)cudaFree(c->flush_sink);
  for (int i = 0; i < 3; i++) {
    if (c->ph[i]) (void)cudaEventDestroy(c->ph[i]);
  }
  if (c->ev0) (void)cudaEventDestroy(c->ev0);
  if (c->ev1) (void)cudaEventDestroy(c->ev1);
  if (c->blas) (void)cublasDestroy(c->blas);
  if (c->stream) (void)cudaStreamDestroy(c->stream);
  free(c->pair_blocks);
  free(c);
}

extern "C" void kvc_ctx_info(const kvc_ctx *c, kvc_device_info *info) {
  memset(info, 0, sizeof *info);
  snprintf(info->name, sizeof info->name, "%s", c->prop.name);
  info->cc_major = c->prop.major;
  info->cc_minor = c->prop.minor;
  info->n_sm = c->prop.multiProcessorCount;
  info->l2_bytes = c->prop.l2CacheSize;
  info->mem_bytes = (int64_t)c->prop.totalGlobalMem;
  (void)cudaDriverGetVersion(&info->driver_version);
  (void)cudaRuntimeGetVersion(&info->runtime_version);
}

extern "C" int kvc_malloc(kvc_ctx *c, void **p, size_t bytes, kv_error *err) {
  (void)c;
  *p = NULL;
  cudaError_t e = cudaMalloc(p, bytes ? bytes : 1);
  if (e != cudaSuccess) {
    *p = NULL;
    return kv_error_set(err, KV_EDEVICE, "cudaMalloc(%zu bytes): %s", bytes, cudaGetErrorString(e));
  }
  return 0;
}

extern "C" void kvc_free(kvc_ctx *c, void *p) {
  (void)c;
  if (p) (void)cudaFree(p);
}

extern "C" int kvc_h2d(kvc_ctx *c, void *dst, const void *src, size_t bytes, kv_error *err) {
  KVC_CHECK(err, cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, c->stream));
  KVC_CHECK(err, cudaStreamSynchronize(c->stream));
  return 0;
}

extern "C" int kvc_d2h(kvc_ctx *c, void *dst, const void *src, size_t bytes, kv_error *err) {
  KVC_CHECK(err, cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, c->stream));
  KVC_CHECK(err, cudaStreamSynchronize(c->stream));
  return 0;
}

extern "C" int kvc_memset(kvc_ctx *c, void *p, int byte, size_t bytes, kv_error *err) {
  KVC_CHECK(err, cudaMemsetAsync(p, byte, bytes, c->stream));
  return 0;
}

extern "C" int kvc_sync(kvc_ctx *c, kv_error *err) {
  KVC_CHECK(err, cudaStreamSynchronize(c->stream));
  KVC_CHECK(err, cudaGetLastError());
  return 0;
}

extern "C" int kvc_time_begin(kvc_ctx *c, kv_error *err) {
  KVC_CHECK(err, cudaEventRecord(c->ev0, c->stream));
  return 0;
}

extern "C" int kvc_time_end(kvc_ctx *c, double *ms, kv_error *err) {
  float f = 0.0f;
  KVC_CHECK(err, cudaEventRecord(c->ev1, c->stream));
  KVC_CHECK(err, cudaEventSynchronize(c->ev1));
  KVC_CHECK(err, cudaEventElapsedTime(&f, c->ev0, c->ev1));
  *ms = f;
  return 0;
}

/* Reads n 16-byte words and folds them into one value per thread; writes only if the fold hits
 * an impossible pattern, so the read cannot be optimised away and nearly nothing is written (a
 * write-based flush leaves dirty lines whose write-back lands inside the next timed region). */
__global__ void __launch_bounds__(256) kvc__read_kernel(const uint4 *__restrict__ p, size_t n,
                                                        float *sink) {
  uint32_t x = 0;
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
       i += (size_t)gridDim.x * blockDim.x) {
    const uint4 u = __ldcg(p + i);
    x ^= u.x ^ u.y ^ u.z ^ u.w;
  }
  if (x == 0x9e3779b9u && threadIdx.x == 0x7fffffff) *sink = (float)x; /* never true */
}

static int kvc__read(kvc_ctx *c, const void *buf, size_t bytes, kv_error *err) {
  if (!c->flush_sink) KVC_CHECK(err, cudaMalloc(&c->flush_sink, sizeof(float)));
  const int grid = 4 * c->prop.multiProcessorCount;
  kvc__read_kernel<<<grid, 256, 0, c->stream>>>((const uint4 *)buf, bytes / 16, c->flush_sink);
  KVC_CHECK(err, cudaGetLastError());
  return 0;
}

extern "C" int kvc_l2_flush(kvc_ctx *c, kv_error *err) {
  size_t want = (size_t)c->prop.l2CacheSize * 4;
  if (want < ((size_t)256 << 20)) want = (size_t)256 << 20;
  if (c->flush_bytes < want) {
    if (kvc__capturing(c)) {
      return kv_error_set(err, KV_ESTATE, "L2 flush: first call while capturing a graph");
    }
    if (c->flush) KVC_CHECK(err, cudaFree(c->flush));
    c->flush = NULL;
    c->flush_bytes = 0;
    KVC_CHECK(err, cudaMalloc(&c->flush, want));
    c->flush_bytes = want;
    KVC_CHECK(err, cudaMemsetAsync(c->flush, 0x5a, want, c->stream)); /* defined contents, once */
    KVC_CHECK(err, cudaStreamSynchronize(c->stream));
  }
  return kvc__read(c, c->flush, c->flush_bytes, err);
}

extern "C" int kvc_read_bandwidth(kvc_ctx *c, size_t bytes, int reps, double *gbps,
                                  kv_error *err) {
  void *a = NULL;
  int rc = 0;
  std::vector<double> t;
  bytes &= ~(size_t)15;
  KVC_CHECK_GO(err, rc, done, cudaMalloc(&a, bytes));
  KVC_CHECK_GO(err, rc, done, cudaMemsetAsync(a, 1, bytes, c->stream));
  if ((rc = kvc__read(c, a, bytes, err))) goto done;
  for (int i = 0; i < (reps > 0 ? reps : 1); i++) {
    double ms;
    if ((rc = kvc_time_begin(c, err))) goto done;
    if ((rc = kvc__read(c, a, bytes, err))) goto done;
    if ((rc = kvc_time_end(c, &ms, err))) goto done;
    t.push_back(ms);
  }
  std::sort(t.begin(), t.end());
  *gbps = (double)bytes / (t[t.size() / 2] * 1e-3) / 1e9;
done:
  if (a) (void)cudaFree(a);
  return rc;
}

extern "C" int kvc_copy_bandwidth(kvc_ctx *c, size_t bytes, int reps, double *gbps,
                                  kv_error *err) {
  void *a = NULL, *b = NULL;
  int rc = 0;
  std::vector<double> t;
  KVC_CHECK_GO(err, rc, done, cudaMalloc(&a, bytes));
  KVC_CHECK_GO(err, rc, done, cudaMalloc(&b, bytes));
  KVC_CHECK_GO(err, rc, done, cudaMemsetAsync(a, 1, bytes, c->stream));
  KVC_CHECK_GO(err, rc, done, cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice, c->stream));
  for (int i = 0; i < (reps > 0 ? reps : 1); i++) {
    double ms;
    if ((rc = kvc_time_begin(c, err))) goto done;
    KVC_CHECK_GO(err, rc, done, cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice, c->stream));
    if ((rc = kvc_time_end(c, &ms, err))) goto done;
    t.push_back(ms);
  }
  std::sort(t.begin(), t.end());
  *gbps = 2.0 * (double)bytes / (t[t.size() / 2] * 1e-3) / 1e9;
done:
  if (a) (void)cudaFree(a);
  if (b) (void)cudaFree(b);
  return rc;
}

/* ---- graphs --------------------------------------------------------------------------------- */
struct kvc_graph {
  cudaGraph_t g;
  cudaGraphExec_t x;
};

extern "C" int kvc_graph_begin(kvc_ctx *c, kv_error *err) {
  KVC_CHECK(err, cudaStreamBeginCapture(c->stream, cudaStreamCaptureModeThreadLocal));
  return 0;
}

extern "C" int kvc_graph_end(kvc_ctx *c, kvc_graph **out, kv_error *err) {
  *out = NULL;
  kvc_graph *g = (kvc_graph *)calloc(1, sizeof *g);
  if (!g) return kv_error_set(err, KV_ENOMEM, "graph: out of memory");
  int rc = 0;
  KVC_CHECK_GO(err, rc, fail, cudaStreamEndCapture(c->stream, &g->g));
  KVC_CHECK_GO(err, rc, fail, cudaGraphInstantiate(&g->x, g->g, 0));
  *out = g;
  return 0;
fail:
  /* The capture has ended (EndCapture ends it even when it reports an invalidated capture):
   * drop what was captured and clear the last-error slot, which a failed call during capture
   * leaves set and the next launch check would otherwise report. */
  kvc_graph_free(g);
  (void)cudaGetLastError();
  return rc;
}

extern "C" int kvc_graph_launch(kvc_ctx *c, kvc_graph *g, kv_error *err) {
  KVC_CHECK(err, cudaGraphLaunch(g->x, c->stream));
  return 0;
}

extern "C" void kvc_graph_free(kvc_graph *g) {
  if (!g) return;
  if (g->x) (void)cudaGraphExecDestroy(g->x);
  if (g->g) (void)cudaGraphDestroy(g->g);
  free(g);
}

/* ---- scratch -------------------------------------------------------------------------------- */
int kvc__capturing(kvc_ctx *c) {
  cudaStreamCaptureStatus st = cudaStreamCaptureStatusNone;
  if (cudaStreamIsCapturing(c->stream, &st) != cudaSuccess) return 0;
  return st != cudaStreamCaptureStatusNone;
}

int kvc__scratch(kvc_ctx *c, size_t bytes, char **p, kv_error *err) {
  if (bytes > c->scratch_bytes) {
    if (kvc__capturing(c)) {
      return kv_error_set(err, KV_ESTATE, "scratch must grow to %zu bytes during graph capture: "
                          "run the op once before capturing", bytes);
    }
    KVC_CHECK(err, cudaStreamSynchronize(c->stream));
    if (c->scratch) KVC_CHECK(err, cudaFree(c->scratch));
    c->scratch = NULL;
    c->scratch_bytes = 0;
    size_t want = bytes + bytes / 4;
    KVC_CHECK(err, cudaMalloc(&c->scratch, want));
    c->scratch_bytes = want;
  }
  *p = (char *)c->scratch;
  return 0;
}

int kvc__split_counters(kvc_ctx *c, int64_t n_pairs, int **out, kv_error *err) {
  if (n_pairs > c->cap_split_cnt) {
    if (kvc__capturing(c)) {
      return kv_error_set(err, KV_ESTATE, "split counters must grow during graph capture: run the "
                          "op once before capturing");
    }
    KVC_CHECK(err, cudaStreamSynchronize(c->stream));
    if (c->split_cnt) KVC_CHECK(err, cudaFree(c->split_cnt));
    c->split_cnt = NULL;
    c->cap_split_cnt = 0;
    KVC_CHECK(err, cudaMalloc(&c->split_cnt, (size_t)n_pairs * sizeof(int)));
    KVC_CHECK(err, cudaMemsetAsync(c->split_cnt, 0, (size_t)n_pairs * sizeof(int), c->stream));
    c->cap_split_cnt = n_pairs;
  }
  *out = c->split_cnt;
  return 0;
}

extern "C" int kvc_tune_set(kvc_ctx *c, kvc_tune_key key, int value, kv_error *err) {
  int ok = 0;
  switch (key) {
    case KVC_TUNE_DENSE_STAGES: ok = value == 3 || value == 4 || value == 6; break;
    case KVC_TUNE_DENSE_FUSED_COMBINE: ok = value == 0 || value == 1; break;
    case KVC_TUNE_DENSE_CORE:
      ok = value >= 0 && value <= 4;
      if (value == 2 && c->prop.major < 9) {
        return kv_error_set(err, KV_ENOTSUP, "tune: dense core 2 (bulk copies) needs sm_90");
      }
      break;
    case KVC_TUNE_TOPK_CORE: ok = value == 0 || value == 1; break;
    case KVC_TUNE_SCORE_HEADS: ok = value == 0 || value == 1; break;
    case KVC_TUNE_SCORE_LOOP: ok = value >= 0 && value <= 2; break;
    case KVC_TUNE_PSA_CORE: ok = value == 0 || value == 1; break;
    case KVC_TUNE_PSA_RANK_CTAS: ok = value >= 0 && value <= 2; break;
    default: break;
  }
  if (!ok) return kv_error_set(err, KV_EINVAL, "tune: key %d does not take value %d", (int)key, value);
  c->tune[key] = value;
  return 0;
}

extern "C" int kvc_tune_get(const kvc_ctx *c, kvc_tune_key key) {
  return key >= 0 && key < KVC_TUNE_N ? c->tune[key] : -1;
}

int kvc__phase(kvc_ctx *c, int i, kv_error *err) {
  if (kvc__capturing(c)) {
    c->ph_valid = 0;
    return 0;
  }
  KVC_CHECK(err, cudaEventRecord(c->ph[i], c->stream));
  c->ph_valid = i == 0 ? 1 : c->ph_valid + 1;
  return 0;
}

extern "C" int kvc_phase_times(kvc_ctx *c, double *select_ms, double *attend_ms, kv_error *err) {
  if (c->ph_valid != 3) return kv_error_set(err, KV_ESTATE, "phase times: the last op recorded none");
  float a = 0, b = 0;
  KVC_CHECK(err, cudaEventSynchronize(c->ph[2]));
  KVC_CHECK(err, cudaEventElapsedTime(&a, c->ph[0], c->ph[1]));
  KVC_CHECK(err, cudaEventElapsedTime(&b, c->ph[1], c->ph[2]));
  *select_ms = a;
  *attend_ms = b;
  return 0;
}

int kvc__pair_blocks(kvc_ctx *c, int64_t n_pairs, int64_t **out, kv_error *err) {
  if (n_pairs > c->cap_pairs) {
    int64_t *p = (int64_t *)realloc(c->pair_blocks, (size_t)n_pairs * sizeof *p);
    if (!p) return kv_error_set(err, KV_ENOMEM, "plan: out of memory");
    c->pair_blocks = p;
    c->cap_pairs = n_pairs;
  }
  *out = c->pair_blocks;
  return 0;
}

int kvc__check_common(const attn_shape *s, const kvc_kv *kv, const kvc_batch *b, kv_error *err) {
  KVC_TRY(attn_shape_check(s, err));
  const int G = s->n_heads / s->n_kv_heads;
  if (s->head_dim != 64 && s->head_dim != 128) {
    return kv_error_set(err, KV_ENOTSUP, "CUDA attention: head_dim %d (supported: 64, 128)",
                        s->head_dim);
  }
  if (G > 8) {
    return kv_error_set(err, KV_ENOTSUP, "CUDA attention: GQA group %d (supported: <= 8)", G);
  }
  if (kv->n_kv_heads != s->n_kv_heads || kv->head_dim != s->head_dim) {
    return kv_error_set(err, KV_EINVAL, "CUDA attention: pool has %d KV heads of %d, shape %d of "
                        "%d", kv->n_kv_heads, kv->head_dim, s->n_kv_heads, s->head_dim);
  }
  if (kv->block_size % 16 || kv->block_size < 16 || kv->block_size > 256) {
    return kv_error_set(err, KV_ENOTSUP, "CUDA attention: block_size %d (supported: multiples of "
                        "16 up to 256)", kv->block_size);
  }
  if (kv->dtype != KVC_DTYPE_F16 && kv->dtype != KVC_DTYPE_BF16) {
    return kv_error_set(err, KV_EINVAL, "CUDA attention: unknown dtype %d", (int)kv->dtype);
  }
  if (b->n_req < 1 || b->max_blocks < 1 || !b->h_seq_len) {
    return kv_error_set(err, KV_EINVAL, "CUDA attention: empty batch");
  }
  for (int r = 0; r < b->n_req; r++) {
    int64_t nb = kvc_n_blocks(b->h_seq_len[r], kv->block_size);
    if (b->h_seq_len[r] < 1 || nb > b->max_blocks) {
      return kv_error_set(err, KV_EINVAL, "CUDA attention: request %d has %d tokens (1..%lld "
                          "allowed by its block table)", r, (int)b->h_seq_len[r],
                          (long long)b->max_blocks * kv->block_size);
    }
  }
  return 0;
}

/* ---- paged pool ----------------------------------------------------------------------------- */
extern "C" int kvc_method_meta(const attn_method *m) {
  int set = 0;
  if (m->kind == ATTN_TOPK) {
    set |= m->topk_rank == ATTN_RANK_QUEST ? (KVC_META_MIN | KVC_META_MAX) : KVC_META_MEAN;
  } else if (m->kind == ATTN_PSA) {
    set |= m->psa_rank == ATTN_RANK_QUEST ? (KVC_META_MIN | KVC_META_MAX) : KVC_META_MEAN;
    if (m->psa_estimate == ATTN_EST_BOUND) set |= KVC_META_MIN | KVC_META_MAX;
    if (m->psa_estimate == ATTN_EST_MEAN) set |= KVC_META_MEAN;
    if (m->psa_estimate == ATTN_EST_LOGNORMAL) set |= KVC_META_MEAN | KVC_META_VAR;
  }
  return set;
}

extern "C" void kvc_kv_free(kvc_ctx *c, kvc_kv *kv) {
  void *ptrs[6] = {kv->k, kv->v, kv->kmin, kv->kmax, kv->kmean, kv->kvar};
  for (int i = 0; i < 6; i++) kvc_free(c, ptrs[i]);
  memset(kv, 0, sizeof *kv);
}

extern "C" int kvc_kv_alloc(kvc_ctx *c, kvc_kv *kv, kvc_dtype dtype, int n_kv_heads,
                            int head_dim, int block_size, int64_t n_pages, int meta_mask,
                            kv_error *err) {
  memset(kv, 0, sizeof *kv);
  if (kvc_dtype_size(dtype) == 0 || n_kv_heads < 1 || head_dim < 1 || block_size < 1 ||
      n_pages < 1) {
    return kv_error_set(err, KV_EINVAL, "KV pool: dtype %d, %d KV heads, head_dim %d, block %d, "
                        "%lld pages", (int)dtype, n_kv_heads, head_dim, block_size,
                        (long long)n_pages);
  }
  kv->dtype = dtype;
  kv->n_kv_heads = n_kv_heads;
  kv->head_dim = head_dim;
  kv->block_size = block_size;
  kv->n_pages = n_pages;
  kv->meta_mask = meta_mask;
  const size_t page = (size_t)n_kv_heads * block_size * head_dim * 2;
  const size_t meta = (size_t)n_pages * n_kv_heads * head_dim * 2;
  int rc = 0;
  if ((rc = kvc_malloc(c, &kv->k, page * (size_t)n_pages, err))) goto fail;
  if ((rc = kvc_malloc(c, &kv->v, page * (size_t)n_pages, err))) goto fail;
  if ((meta_mask & KVC_META_MIN) && (rc = kvc_malloc(c, &kv->kmin, meta, err))) goto fail;
  if ((meta_mask & KVC_META_MAX) && (rc = kvc_malloc(c, &kv->kmax, meta, err))) goto fail;
  if ((meta_mask & KVC_META_MEAN) && (rc = kvc_malloc(c, &kv->kmean, meta, err))) goto fail;
  if ((meta_mask & KVC_META_VAR) && (rc = kvc_malloc(c, &kv->kvar, meta, err))) goto fail;
  return 0;
fail:
  kvc_kv_free(c, kv);
  return rc;
}

static uint16_t kvc__to16(kvc_dtype t, float x) {
  return t == KVC_DTYPE_F16 ? kv_f32_to_f16(x) : kv_f32_to_bf16(x);
}
static float kvc__from16(kvc_dtype t, uint16_t x) {
  return t == KVC_DTYPE_F16 ? kv_f16_to_f32(x) : kv_bf16_to_f32(x);
}

extern "C" int kvc_kv_upload(kvc_ctx *c, const kvc_kv *kv, const int32_t *pages, const float *K,
                             const float *V, int64_t n_tokens, kv_error *err) {
  const int Hkv = kv->n_kv_heads, D = kv->head_dim, bs = kv->block_size;
  const int64_t nb = kvc_n_blocks(n_tokens, bs);
  const size_t page_elems = (size_t)Hkv * bs * D;
  std::vector<uint16_t> hk(page_elems), hv(page_elems);
  for (int64_t b = 0; b < nb; b++) {
    if (pages[b] < 0 || pages[b] >= kv->n_pages) {
      return kv_error_set(err, KV_ERANGE, "KV upload: block %lld maps to page %d of %lld",
                          (long long)b, (int)pages[b], (long long)kv->n_pages);
    }
    std::fill(hk.begin(), hk.end(), (uint16_t)0);
    std::fill(hv.begin(), hv.end(), (uint16_t)0);
    for (int t = 0; t < bs && b * bs + t < n_tokens; t++) {
      for (int h = 0; h < Hkv; h++) {
        const size_t src = ((size_t)(b * bs + t) * Hkv + h) * D;
        const size_t dst = ((size_t)h * bs + t) * D;
        for (int d = 0; d < D; d++) {
          hk[dst + d] = kvc__to16(kv->dtype, K[src + d]);
          hv[dst + d] = kvc__to16(kv->dtype, V[src + d]);
        }
      }
    }
    const size_t off = (size_t)pages[b] * page_elems * 2;
    KVC_TRY(kvc_h2d(c, (char *)kv->k + off, hk.data(), page_elems * 2, err));
    KVC_TRY(kvc_h2d(c, (char *)kv->v + off, hv.data(), page_elems * 2, err));
  }
  return 0;
}

extern "C" int kvc_kv_upload_meta(kvc_ctx *c, const kvc_kv *kv, const int32_t *pages,
                                  const attn_blockmeta *m, kv_error *err) {
  const int Hkv = kv->n_kv_heads, D = kv->head_dim;
  if (m->n_kv_heads != Hkv || m->head_dim != D || m->block_size != kv->block_size) {
    return kv_error_set(err, KV_EINVAL, "metadata upload: metadata (%d heads, dim %d, block %d) "
                        "does not match the pool", m->n_kv_heads, m->head_dim, m->block_size);
  }
  const float *src[4] = {m->kmin, m->kmax, m->kmean, m->kvar};
  void *dst[4] = {kv->kmin, kv->kmax, kv->kmean, kv->kvar};
  std::vector<uint16_t> h((size_t)Hkv * D);
  for (int a = 0; a < 4; a++) {
    if (!dst[a]) continue;
    for (int64_t b = 0; b < m->n_blocks; b++) {
      if (pages[b] < 0 || pages[b] >= kv->n_pages) {
        return kv_error_set(err, KV_ERANGE, "metadata upload: block %lld maps to page %d",
                            (long long)b, (int)pages[b]);
      }
      for (size_t i = 0; i < h.size(); i++) h[i] = kvc__to16(kv->dtype, src[a][(size_t)b * h.size() + i]);
      KVC_TRY(kvc_h2d(c, (char *)dst[a] + (size_t)pages[b] * h.size() * 2, h.data(), h.size() * 2,
                      err));
    }
  }
  return 0;
}

extern "C" int kvc_kv_download_meta(kvc_ctx *c, const kvc_kv *kv, const int32_t *pages,
                                    int64_t n_blocks, float *kmin, float *kmax, float *kmean,
                                    float *kvar, kv_error *err) {
  const size_t row = (size_t)kv->n_kv_heads * kv->head_dim;
  float *dst[4] = {kmin, kmax, kmean, kvar};
  const void *src[4] = {kv->kmin, kv->kmax, kv->kmean, kv->kvar};
  std::vector<uint16_t> h(row);
  for (int a = 0; a < 4; a++) {
    if (!dst[a]) continue;
    if (!src[a]) return kv_error_set(err, KV_EINVAL, "metadata download: array %d not kept", a);
    for (int64_t b = 0; b < n_blocks; b++) {
      KVC_TRY(kvc_d2h(c, h.data(), (const char *)src[a] + (size_t)pages[b] * row * 2, row * 2,
                      err));
      for (size_t i = 0; i < row; i++) dst[a][(size_t)b * row + i] = kvc__from16(kv->dtype, h[i]);
    }
  }
  return 0;
}

/* ---- seeded fills --------------------------------------------------------------------------- */
__device__ __forceinline__ uint64_t kvc__mix(uint64_t z) {
  z += 0x9e3779b97f4a7c15ull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}
/* A standard normal from a counter (Box-Muller on two hashed uniforms). */
__device__ __forceinline__ float kvc__normal(uint64_t seed, uint64_t i) {
  uint64_t h = kvc__mix(seed ^ kvc__mix(i));
  float u1 = ((h >> 40) + 1) * (1.0f / 16777217.0f), u2 = ((h >> 16) & 0xffffff) * (1.0f / 16777216.0f);
  return sqrtf(-2.0f * logf(u1)) * cospif(2.0f * u2);
}
__device__ __forceinline__ float kvc__uniform(uint64_t seed, uint64_t i) {
  return ((kvc__mix(seed ^ kvc__mix(i)) >> 40) + 0.5f) * (1.0f / 16777216.0f);
}

template <typename T>
__global__ void kvc__fill_normal_kernel(T *p, int64_t n, uint64_t seed, float scale) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
       i += (int64_t)gridDim.x * blockDim.x) {
    p[i] = kvc_elem<T>::from_f(kvc__normal(seed, (uint64_t)i) * scale);
  }
}
__global__ void kvc__fill_normal_f32(float *p, int64_t n, uint64_t seed, float scale) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
       i += (int64_t)gridDim.x * blockDim.x) {
    p[i] = kvc__normal(seed, (uint64_t)i) * scale;
  }
}

extern "C" int kvc_fill_normal(kvc_ctx *c, void *p, int dtype, int64_t n, uint64_t seed,
                               float scale, kv_error *err) {
  const int grid = 8 * c->prop.multiProcessorCount;
  if (dtype == KVC_DTYPE_F16) {
    kvc__fill_normal_kernel<__half><<<grid, 256, 0, c->stream>>>((__half *)p, n, seed, scale);
  } else if (dtype == KVC_DTYPE_BF16) {
    kvc__fill_normal_kernel<__nv_bfloat16><<<grid, 256, 0, c->stream>>>((__nv_bfloat16 *)p, n,
                                                                         seed, scale);
  } else {
    kvc__fill_normal_f32<<<grid, 256, 0, c->stream>>>((float *)p, n, seed, scale);
  }
  KVC_CHECK(err, cudaGetLastError());
  return 0;
}

/* Synthetic heavy-tailed K/V: grid (max_blocks, n_req), block (head_dim) threads; each CTA fills
 * one page of every KV head. */
template <typename T>
__global__ void kvc__synth_kv_kernel(T *k, T *v, const int32_t *bt, const int32_t *seq_len,
                                     int max_blocks, int Hkv, int bs, int D, uint64_t seed) {
  const int r = blockIdx.y, b = blockIdx.x, d = threadIdx.x;
  const int len = seq_len[r];
  if (b * bs >= len) return;
  const int page = bt[(size_t)r * max_blocks + b];
  const float inv = rsqrtf((float)D);
  for (int h = 0; h < Hkv; h++) {
    const uint64_t sh = seed ^ ((uint64_t)(r * 131 + h) << 32);
    const float u = kvc__normal(sh, 7u * D + d) * inv; /* topic direction (unnormalised ~ unit) */
    for (int t = 0; t < bs; t++) {
      const int64_t tok = (int64_t)b * bs + t;
      const size_t off = (((size_t)page * Hkv + h) * bs + t) * D + d;
      float x = kvc__normal(sh + 1, (uint64_t)tok * D + d);
      float mult = 0.0f;
      if (tok == 0) {
        mult = 12.0f;
      } else if (kvc__uniform(sh + 2, (uint64_t)tok) < 0.02f) {
        mult = 2.0f / sqrtf(kvc__uniform(sh + 3, (uint64_t)tok)); /* Pareto, alpha 2 */
        mult = fminf(mult, 10.0f);
      }
      k[off] = kvc_elem<T>::from_f(x + mult * u * sqrtf((float)D));
      v[off] = kvc_elem<T>::from_f(kvc__normal(sh + 4, (uint64_t)tok * D + d));
    }
  }
}

__global__ void kvc__synth_q_kernel(float *q, int n_heads, int G, int D, uint64_t seed) {
  const int r = blockIdx.y, hq = blockIdx.x, d = threadIdx.x;
  const int h = hq / G;
  const uint64_t sh = seed ^ ((uint64_t)(r * 131 + h) << 32);
  const float inv = rsqrtf((float)D);
  const float u = kvc__normal(sh, 7u * D + d) * inv;
  const float temp = 0.3f + 1.2f * kvc__uniform(sh + 5, (uint64_t)hq); /* per-head temperature */
  q[((size_t)r * n_heads + hq) * D + d] = temp * u * sqrtf((float)D) * 0.5f +
                                          0.5f * kvc__normal(sh + 6, (uint64_t)hq * D + d);
}

extern "C" int kvc_fill_synth(kvc_ctx *c, const attn_shape *s, const kvc_kv *kv,
                              const kvc_batch *b, float *q, uint64_t seed, kv_error *err) {
  KVC_TRY(kvc__check_common(s, kv, b, err));
  dim3 g1(b->max_blocks, b->n_req);
  if (kv->dtype == KVC_DTYPE_F16) {
    kvc__synth_kv_kernel<__half><<<g1, kv->head_dim, 0, c->stream>>>(
        (__half *)kv->k, (__half *)kv->v, b->block_table, b->seq_len, b->max_blocks,
        kv->n_kv_heads, kv->block_size, kv->head_dim, seed);
  } else {
    kvc__synth_kv_kernel<__nv_bfloat16><<<g1, kv->head_dim, 0, c->stream>>>(
        (__nv_bfloat16 *)kv->k, (__nv_bfloat16 *)kv->v, b->block_table, b->seq_len,
        b->max_blocks, kv->n_kv_heads, kv->block_size, kv->head_dim, seed);
  }
  KVC_CHECK(err, cudaGetLastError());
  dim3 g2(s->n_heads, b->n_req);
  kvc__synth_q_kernel<<<g2, s->head_dim, 0, c->stream>>>(q, s->n_heads,
                                                         s->n_heads / s->n_kv_heads,
                                                         s->head_dim, seed);
  KVC_CHECK(err, cudaGetLastError());
  return 0;
}

/* Tiled recording: grid (max_blocks, n_req), one thread per output dimension (loop). */
template <typename T>
__global__ void kvc__tiled_kv_kernel(T *k, T *v, const int32_t *bt, const int32_t *seq_len,
                                     int max_blocks, int Hkv, int bs, int D, const float *rk,
                                     const float *rv, int rHkv, int rD, const int32_t *rpos) {
  const int r = blockIdx.y, b = blockIdx.x;
  const int len = seq_len[r];
  if (b * bs >= len) return;
  const int page = bt[(size_t)r * max_blocks + b];
  const int pos = rpos[r];
  for (int i = threadIdx.x; i < Hkv * bs * D; i += blockDim.x) {
    const int d = i % D, t = (i / D) % bs, h = i / (D * bs);
    const int64_t tok = (int64_t)b * bs + t;
    const size_t off = (((size_t)page * Hkv + h) * bs + t) * D + d;
    if (tok >= len) {
      k[off] = kvc_elem<T>::from_f(0.0f);
      v[off] = kvc_elem<T>::from_f(0.0f);
      continue;
    }
    const size_t src = ((size_t)kvc_tile_token(tok, len, pos) * rHkv + h % rHkv) * rD + d % rD;
    k[off] = kvc_elem<T>::from_f(rk[src]);
    v[off] = kvc_elem<T>::from_f(rv[src]);
  }
}

__global__ void kvc__tiled_q_kernel(float *q, int Hq, int G, int D, const float *rq, int rHq,
                                    int rG, int rD, float scale) {
  const int r = blockIdx.y, hq = blockIdx.x;
  const int h = hq / G, g = hq % G;
  const int rhkv = rHq / rG;
  const int src_head = (h % rhkv) * rG + g % rG;
  for (int d = threadIdx.x; d < D; d += blockDim.x) {
    q[((size_t)r * Hq + hq) * D + d] = rq[((size_t)r * rHq + src_head) * rD + d % rD] * scale;
  }
}

extern "C" int kvc_fill_tiled(kvc_ctx *c, const attn_shape *s, const kvc_kv *kv,
                              const kvc_batch *b, float *q, const float *rec_k,
                              const float *rec_v, const float *rec_q, const attn_shape *rec,
                              const int32_t *rec_pos, kv_error *err) {
  KVC_TRY(kvc__check_common(s, kv, b, err));
  KVC_TRY(attn_shape_check(rec, err));
  if (s->head_dim % rec->head_dim) {
    return kv_error_set(err, KV_EINVAL, "tiled fill: head_dim %d is not a multiple of the "
                        "recording's %d", s->head_dim, rec->head_dim);
  }
  for (int r = 0; r < b->n_req; r++) {
    if (rec_pos[r] < 1) {
      return kv_error_set(err, KV_EINVAL, "tiled fill: request %d: recorded position %d < 1", r,
                          (int)rec_pos[r]);
    }
  }
  char *base;
  KVC_TRY(kvc__scratch(c, (size_t)b->n_req * sizeof(int32_t) + 256, &base, err));
  KVC_CHECK(err, cudaMemcpyAsync(base, rec_pos, (size_t)b->n_req * sizeof(int32_t),
                                 cudaMemcpyHostToDevice, c->stream));
  dim3 g1(b->max_blocks, b->n_req);
  if (kv->dtype == KVC_DTYPE_F16) {
    kvc__tiled_kv_kernel<__half><<<g1, 256, 0, c->stream>>>(
        (__half *)kv->k, (__half *)kv->v, b->block_table, b->seq_len, b->max_blocks,
        kv->n_kv_heads, kv->block_size, kv->head_dim, rec_k, rec_v, rec->n_kv_heads,
        rec->head_dim, (const int32_t *)base);
  } else {
    kvc__tiled_kv_kernel<__nv_bfloat16><<<g1, 256, 0, c->stream>>>(
        (__nv_bfloat16 *)kv->k, (__nv_bfloat16 *)kv->v, b->block_table, b->seq_len,
        b->max_blocks, kv->n_kv_heads, kv->block_size, kv->head_dim, rec_k, rec_v,
        rec->n_kv_heads, rec->head_dim, (const int32_t *)base);
  }
  KVC_CHECK(err, cudaGetLastError());
  dim3 g2(s->n_heads, b->n_req);
  kvc__tiled_q_kernel<<<g2, 128, 0, c->stream>>>(
      q, s->n_heads, s->n_heads / s->n_kv_heads, s->head_dim, rec_q, rec->n_heads,
      rec->n_heads / rec->n_kv_heads, rec->head_dim,
      (float)sqrt((double)rec->head_dim / (double)s->head_dim));
  KVC_CHECK(err, cudaGetLastError());
  KVC_CHECK(err, cudaStreamSynchronize(c->stream)); /* rec_pos staging is reused scratch */
  return 0;
}

/* kvc_internal.cuh — what the .cu files of kernels/cuda/ share: the one checking macro for CUDA
 * and cuBLAS calls, the context, the scratch arena and pinned staging, element types.
 * Not a public header. */
#ifndef KVC_INTERNAL_CUH
#define KVC_INTERNAL_CUH

#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <stdint.h>

/* The project's C headers declare C functions: give them C linkage here, before anything else
 * includes them. */
extern "C" {
#include "attn.h"
#include "kv_err.h"
#include "kvc_plan.h"
}
#include "attn_cuda.h"
#include "kvc_math.h"

/* ---- the checking macro --------------------------------------------------------------------- */
static inline bool kvc__ok(cudaError_t e) { return e == cudaSuccess; }
static inline bool kvc__ok(cublasStatus_t s) { return s == CUBLAS_STATUS_SUCCESS; }
static inline const char *kvc__str(cudaError_t e) { return cudaGetErrorString(e); }
static inline const char *kvc__str(cublasStatus_t s) { return cublasGetStatusString(s); }

/* KVC_CHECK(err, call): on failure returns KV_EDEVICE from the enclosing function with
 * "file:line: call: reason" in *err. KVC_CHECK_GO: the same, but sets rc and jumps to a label for
 * cleanup. Kernel launches are checked with KVC_CHECK(err, cudaGetLastError()). */
#define KVC_CHECK(err, call)                                                                   \
  do {                                                                                         \
    auto kvc__s = (call);                                                                      \
    if (!kvc__ok(kvc__s)) {                                                                    \
      return kv_error_set((err), KV_EDEVICE, "%s:%d: %s: %s", __FILE__, __LINE__, #call,       \
                          kvc__str(kvc__s));                                                   \
    }                                                                                          \
  } while (0)
#define KVC_CHECK_GO(err, rc, label, call)                                                     \
  do {                                                                                         \
    auto kvc__s = (call);                                                                      \
    if (!kvc__ok(kvc__s)) {                                                                    \
      (rc) = kv_error_set((err), KV_EDEVICE, "%s:%d: %s: %s", __FILE__, __LINE__, #call,       \
                          kvc__str(kvc__s));                                                   \
      goto label;                                                                              \
    }                                                                                          \
  } while (0)
#define KVC_TRY(expr)           \
  do {                          \
    int kvc__rc = (expr);       \
    if (kvc__rc) return kvc__rc; \
  } while (0)

/* ---- context -------------------------------------------------------------------------------- */
struct kvc_ctx {
  int device;
  cudaDeviceProp prop;
  cudaStream_t stream;
  cublasHandle_t blas;
  cudaEvent_t ev0, ev1;
  void *scratch;                 /* device arena, grows on demand (never while capturing) */
  size_t scratch_bytes;
  void *flush;                   /* L2 flush buffer (read, never written, by kvc_l2_flush) */
  size_t flush_bytes;
  float *flush_sink;             /* device [1]: where the flush read's sum goes (never read) */
  int64_t *pair_blocks;          /* host [cap_pairs] */
  int64_t cap_pairs;
  cudaEvent_t ph[3];             /* phase events of the last sparse op */
  int ph_valid;
  int tune[KVC_TUNE_N];          /* kvc_tune_set */
  int *split_cnt;                /* device [cap_split_cnt], zero between calls: arrivals per pair
                                    of the fused split-K combine (the last CTA resets it) */
  int64_t cap_split_cnt;
};

/* Device array of n_pairs zeroed counters (grows; KV_ESTATE if it must grow during capture). */
int kvc__split_counters(kvc_ctx *c, int64_t n_pairs, int **out, kv_error *err);

/* Device scratch of at least `bytes` (previous contents lost when it grows; KV_ESTATE when it
 * would have to grow while the stream is capturing a graph). */
int kvc__scratch(kvc_ctx *c, size_t bytes, char **p, kv_error *err);
/* Host array of n_pairs int64 (grows). */
int kvc__pair_blocks(kvc_ctx *c, int64_t n_pairs, int64_t **out, kv_error *err);
/* Records phase event i (0 start, 1 selection done, 2 end) unless capturing a graph. */
int kvc__phase(kvc_ctx *c, int i, kv_error *err);
/* Whether the context's stream is capturing a graph. */
int kvc__capturing(kvc_ctx *c);
/* Validates a shape/pool/batch combination the kernels support. */
int kvc__check_common(const attn_shape *s, const kvc_kv *kv, const kvc_batch *b, kv_error *err);

/* ---- element types -------------------------------------------------------------------------- */
template <typename T>
struct kvc_elem;

template <>
struct kvc_elem<__half> {
  static __device__ __forceinline__ float2 to_f2(uint32_t u) {
    __half2 h;
    memcpy(&h, &u, 4);
    return __half22float2(h);
  }
  static __device__ __forceinline__ float to_f(__half x) { return __half2float(x); }
  static __device__ __forceinline__ __half from_f(float x) { return __float2half_rn(x); }
};

template <>
struct kvc_elem<__nv_bfloat16> {
  static __device__ __forceinline__ float2 to_f2(uint32_t u) {
    __nv_bfloat162 h;
    memcpy(&h, &u, 4);
    return __bfloat1622float2(h);
  }
  static __device__ __forceinline__ float to_f(__nv_bfloat16 x) { return __bfloat162float(x); }
  static __device__ __forceinline__ __nv_bfloat16 from_f(float x) { return __float2bfloat16_rn(x); }
};

/* 8 elements in one 16-byte word -> fp32. */
template <typename T>
__device__ __forceinline__ void kvc_unpack8(const uint4 &u, float *f) {
  float2 a = kvc_elem<T>::to_f2(u.x), b = kvc_elem<T>::to_f2(u.y);
  float2 c = kvc_elem<T>::to_f2(u.z), d = kvc_elem<T>::to_f2(u.w);
  f[0] = a.x, f[1] = a.y, f[2] = b.x, f[3] = b.y, f[4] = c.x, f[5] = c.y, f[6] = d.x, f[7] = d.y;
}

#define KVC_LOG2E 1.4426950408889634f
#define KVC_LN2 0.6931471805599453

/* Dispatches a templated launcher on (dtype, head_dim, group bound): instantiations are limited to
 * {fp16, bf16} x {64, 128} x {4, 8} (a group of G <= 4 runs the 4 variant). */
#define KVC_DISPATCH(dtype, D, G, FN, ...)                                                     \
  ((dtype) == KVC_DTYPE_F16                                                                    \
       ? ((D) == 64 ? ((G) <= 4 ? FN<__half, 64, 4>(__VA_ARGS__) : FN<__half, 64, 8>(__VA_ARGS__)) \
                    : ((G) <= 4 ? FN<__half, 128, 4>(__VA_ARGS__)                               \
                                : FN<__half, 128, 8>(__VA_ARGS__)))                             \
       : ((D) == 64 ? ((G) <= 4 ? FN<__nv_bfloat16, 64, 4>(__VA_ARGS__)                         \
                                : FN<__nv_bfloat16, 64, 8>(__VA_ARGS__))                        \
                    : ((G) <= 4 ? FN<__nv_bfloat16, 128, 4>(__VA_ARGS__)                        \
                                : FN<__nv_bfloat16, 128, 8>(__VA_ARGS__))))
#define KVC_DISPATCH_TD(dtype, D, FN, ...)                                                     \
  ((dtype) == KVC_DTYPE_F16                                                                    \
       ? ((D) == 64 ? FN<__half, 64>(__VA_ARGS__) : FN<__half, 128>(__VA_ARGS__))               \
       : ((D) == 64 ? FN<__nv_bfloat16, 64>(__VA_ARGS__) : FN<__nv_bfloat16, 128>(__VA_ARGS__)))

#endif /* KVC_INTERNAL_CUH */

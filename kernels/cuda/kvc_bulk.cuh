/* kvc_bulk.cuh — Hopper (sm_90) 1-D bulk asynchronous copies (TMA without a tensor map) and the
 * mbarriers that complete them (v5). PTX ISA 8.0:
 *   mbarrier.init.shared::cta.b64 [bar], count;          (phase 0, `count` arrivals per phase)
 *   fence.mbarrier_init.release.cluster;                  (the init visible to the async proxy)
 *   mbarrier.arrive.expect_tx.shared::cta.b64 _, [bar], bytes;   (one arrival + bytes expected)
 *   cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [dst], [src], bytes, [bar];
 *       (dst, src 16-byte aligned, bytes a multiple of 16; completes `bytes` on bar)
 *   mbarrier.try_wait.parity.shared::cta.b64 p, [bar], parity;  (p: the phase of that parity
 *       completed)
 *   fence.proxy.async.shared::cta;  (orders this thread's generic-proxy shared accesses before its
 *       later async-proxy ones: issued before a slot that was read is refilled)
 * The phase of a barrier completes when its arrivals AND its expected bytes are all in. The wait
 * is bounded: after ~2^34 clocks (~9 s at 1.98 GHz) the kernel traps instead of hanging, so a
 * bookkeeping error shows up as a launch failure (kvbench row FAILED / test failure), not as a
 * hung process.
 * On architectures below sm_90 the wrappers trap (the host refuses those devices first). */
#ifndef KVC_BULK_CUH
#define KVC_BULK_CUH

#include <stdint.h>

#include "kvc_ring.h"

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
#define KVC_HAVE_BULK 1
#else
#define KVC_HAVE_BULK 0
#endif

__device__ __forceinline__ uint32_t kvc_smem_u32(const void *p) {
  return (uint32_t)__cvta_generic_to_shared(p);
}

__device__ __forceinline__ void kvc_mbar_init(uint64_t *bar, uint32_t count) {
#if KVC_HAVE_BULK
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(kvc_smem_u32(bar)), "r"(count)
               : "memory");
#else
  __trap();
#endif
}

__device__ __forceinline__ void kvc_mbar_init_fence() {
#if KVC_HAVE_BULK
  asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
#endif
}

__device__ __forceinline__ void kvc_mbar_expect_tx(uint64_t *bar, uint32_t bytes) {
#if KVC_HAVE_BULK
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(kvc_smem_u32(bar)),
               "r"(bytes)
               : "memory");
#else
  __trap();
#endif
}

/* A plain arrival (no bytes expected). */
__device__ __forceinline__ void kvc_mbar_arrive(uint64_t *bar) {
#if KVC_HAVE_BULK
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(kvc_smem_u32(bar)) : "memory");
#else
  __trap();
#endif
}

__device__ __forceinline__ void kvc_bulk_g2s(void *dst, const void *src, uint32_t bytes,
                                             uint64_t *bar) {
#if KVC_HAVE_BULK
  asm volatile(
      "cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];\n" ::"r"(
          kvc_smem_u32(dst)),
      "l"(src), "r"(bytes), "r"(kvc_smem_u32(bar))
      : "memory");
#else
  __trap();
#endif
}

__device__ __forceinline__ void kvc_fence_proxy_async() {
#if KVC_HAVE_BULK
  asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
#endif
}

__device__ __forceinline__ bool kvc_mbar_try_wait(uint64_t *bar, uint32_t parity) {
#if KVC_HAVE_BULK
  uint32_t ok;
  asm volatile(
      "{\n .reg .pred p;\n mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\n selp.u32 %0, 1, 0, p;\n}\n"
      : "=r"(ok)
      : "r"(kvc_smem_u32(bar)), "r"(parity)
      : "memory");
  return ok != 0;
#else
  __trap();
  return false;
#endif
}

/* Waits until the phase of parity `parity` of bar has completed; traps after ~2^34 clocks. */
__device__ __forceinline__ void kvc_mbar_wait(uint64_t *bar, uint32_t parity) {
  if (kvc_mbar_try_wait(bar, parity)) return;
  const long long t0 = clock64();
  while (!kvc_mbar_try_wait(bar, parity)) {
    if (clock64() - t0 > (1ll << 34)) __trap();
  }
}

/* v7: a 16-byte ld.global.cg with the L2::256B prefetch-size hint (sm_80+): the L2 fetches the
 * 256-byte sector group around the word, not only its 32-byte sector, so neighbouring lanes' and
 * the next pieces' loads find their lines in flight (read-only data: no memory clobber). */
__device__ __forceinline__ uint4 kvc_ldcg_pf256(const uint4 *p) {
  uint4 r;
  asm("ld.global.cg.L2::256B.v4.u32 {%0, %1, %2, %3}, [%4];\n"
      : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w)
      : "l"(p));
  return r;
}

#endif /* KVC_BULK_CUH */

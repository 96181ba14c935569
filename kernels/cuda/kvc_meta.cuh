/* kvc_meta.cuh — block metadata (per-channel min, max, mean, variance of a page's keys). */
#ifndef KVC_META_CUH
#define KVC_META_CUH

#include "kvc_internal.cuh"

/* Metadata of one page of one KV head from its first ntok keys; thread d of the CTA handles
 * channel d (blockDim.x >= D, extra threads idle). Writes the arrays that are non-NULL. */
template <typename T>
__device__ void kvc__meta_page(const T *k, T *kmin, T *kmax, T *kmean, T *kvar, int page, int Hkv,
                               int bs, int D, int h, int ntok) {
  const int d = threadIdx.x;
  if (d >= D) return;
  const T *kp = k + ((size_t)page * Hkv + h) * bs * D + d;
  float mn = kvc_elem<T>::to_f(kp[0]), mx = mn, sum = 0.0f;
  for (int t = 0; t < ntok; t++) {
    const float x = kvc_elem<T>::to_f(kp[(size_t)t * D]);
    mn = fminf(mn, x);
    mx = fmaxf(mx, x);
    sum += x;
  }
  const float mean = sum / (float)ntok;
  float var = 0.0f;
  for (int t = 0; t < ntok; t++) {
    const float dx = kvc_elem<T>::to_f(kp[(size_t)t * D]) - mean;
    var = fmaf(dx, dx, var);
  }
  const size_t o = ((size_t)page * Hkv + h) * D + d;
  if (kmin) kmin[o] = kvc_elem<T>::from_f(mn);
  if (kmax) kmax[o] = kvc_elem<T>::from_f(mx);
  if (kmean) kmean[o] = kvc_elem<T>::from_f(mean);
  if (kvar) kvar[o] = kvc_elem<T>::from_f(var / (float)ntok);
}

#endif /* KVC_META_CUH */

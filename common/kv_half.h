/* kv_half.h — IEEE fp16 and bfloat16 <-> fp32 conversion on the host (round to nearest even).
 * Header-only so that both C and CUDA host code can use it; bit patterns match CUDA's
 * __float2half_rn / __float2bfloat16_rn for finite inputs, and NaN stays NaN. */
#ifndef KV_HALF_H
#define KV_HALF_H

#include <stdint.h>
#include <string.h>

static inline float kv_bits_to_f32(uint32_t u) {
  float f;
  memcpy(&f, &u, 4);
  return f;
}
static inline uint32_t kv_f32_to_bits(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  return u;
}

static inline float kv_bf16_to_f32(uint16_t h) { return kv_bits_to_f32((uint32_t)h << 16); }

static inline uint16_t kv_f32_to_bf16(float f) {
  uint32_t u = kv_f32_to_bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40); /* quiet NaN */
  u += 0x7fffu + ((u >> 16) & 1u);
  return (uint16_t)(u >> 16);
}

static inline float kv_f16_to_f32(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t man = h & 0x3ffu;
  uint32_t u;
  if (exp == 0) {
    if (man == 0) {
      u = sign;
    } else { /* subnormal: normalise */
      int e = -1;
      do {
        e++;
        man <<= 1;
      } while (!(man & 0x400u));
      u = sign | ((uint32_t)(127 - 15 - e) << 23) | ((man & 0x3ffu) << 13);
    }
  } else if (exp == 31) {
    u = sign | 0x7f800000u | (man << 13);
  } else {
    u = sign | ((exp + 127 - 15) << 23) | (man << 13);
  }
  return kv_bits_to_f32(u);
}

static inline uint16_t kv_f32_to_f16(float f) {
  uint32_t u = kv_f32_to_bits(f);
  uint32_t sign = (u >> 16) & 0x8000u;
  uint32_t a = u & 0x7fffffffu;
  if (a > 0x7f800000u) return (uint16_t)(sign | 0x7e00u);      /* NaN */
  if (a >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u);     /* overflow -> inf */
  if (a < 0x38800000u) {                                       /* subnormal or zero */
    if (a < 0x33000000u) return (uint16_t)sign;                /* below half the min subnormal */
    uint32_t man = (a & 0x7fffffu) | 0x800000u;
    int shift = 126 - (int)(a >> 23);                          /* 14..24 */
    uint32_t half = man >> shift;
    uint32_t rem = man & ((1u << shift) - 1u);
    uint32_t mid = 1u << (shift - 1);
    if (rem > mid || (rem == mid && (half & 1u))) half++;
    return (uint16_t)(sign | half);
  }
  uint32_t h = ((a >> 13) - ((127u - 15u) << 10));
  uint32_t rem = a & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) h++;
  return (uint16_t)(sign | h);
}

#endif /* KV_HALF_H */

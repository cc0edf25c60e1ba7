// K/V rows of the paged cache as the attention kernels read them (cpu::PagedKv's layout): head_dim
// elements of fp32 / fp16 / bf16, or for the quantized caches (tags I8Codes, F8Codes) head_dim
// codes followed by the row's fp32 scale.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <type_traits>

#include "backend/cuda/common.cuh"

namespace jinx::cuda::detail {

// Tags for the quantized caches: a row is head_dim codes, then its fp32 scale (cpu::PagedKv).
struct I8Codes {};
struct F8Codes {};

template <typename KV>
constexpr bool kQuantized = std::is_same_v<KV, I8Codes> || std::is_same_v<KV, F8Codes>;

// Bytes of one K/V row (one token, one KV head); a multiple of 4 (head_dim is of 8).
template <typename KV>
__host__ __device__ constexpr int64_t row_bytes(int64_t hd) {
  if constexpr (kQuantized<KV>)
    return hd + 4;
  else
    return hd * static_cast<int64_t>(sizeof(KV));
}

// fp8 e4m3 to fp32, exactly (the 7 magnitude bits placed in a float's exponent and mantissa,
// rescaled by 2^120: core/half.h's decoding).
__device__ __forceinline__ float fp8_to_f32(uint32_t x) {
  return __uint_as_float((x & 0x80u) << 24 | (x & 0x7fu) << 20) * 0x1p120f;
}

// Eight consecutive elements of a K/V row as fp32 (rows are 16-byte aligned: head_dim is a
// multiple of 8).
__device__ __forceinline__ void load8(const float* p, float* f) {
  const float4 a = *reinterpret_cast<const float4*>(p), b = *reinterpret_cast<const float4*>(p + 4);
  f[0] = a.x, f[1] = a.y, f[2] = a.z, f[3] = a.w, f[4] = b.x, f[5] = b.y, f[6] = b.z, f[7] = b.w;
}
__device__ __forceinline__ void load8(const __nv_bfloat16* p, float* f) {
  const uint4 u = *reinterpret_cast<const uint4*>(p);
  const __nv_bfloat162* h = reinterpret_cast<const __nv_bfloat162*>(&u);
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const float2 v = __bfloat1622float2(h[i]);
    f[2 * i] = v.x, f[2 * i + 1] = v.y;
  }
}
__device__ __forceinline__ void load8(const __half* p, float* f) {
  const uint4 u = *reinterpret_cast<const uint4*>(p);
  const __half2* h = reinterpret_cast<const __half2*>(&u);
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const float2 v = __half22float2(h[i]);
    f[2 * i] = v.x, f[2 * i + 1] = v.y;
  }
}

// Element access to a K/V row at its first byte r: eight elements from d (a multiple of 8), one
// element, and the row's scale (1 for the unquantized types). Quantized rows are only 4-byte
// aligned (head_dim + 4 bytes), hence 4-byte loads there.
template <typename KV>
__device__ __forceinline__ void row_load8(const uint8_t* r, int d, float* f) {
  if constexpr (std::is_same_v<KV, I8Codes>) {
    const char4 a = *reinterpret_cast<const char4*>(r + d);
    const char4 b = *reinterpret_cast<const char4*>(r + d + 4);
    f[0] = a.x, f[1] = a.y, f[2] = a.z, f[3] = a.w, f[4] = b.x, f[5] = b.y, f[6] = b.z, f[7] = b.w;
  } else if constexpr (std::is_same_v<KV, F8Codes>) {
    const uint32_t a = *reinterpret_cast<const uint32_t*>(r + d);
    const uint32_t b = *reinterpret_cast<const uint32_t*>(r + d + 4);
#pragma unroll
    for (int i = 0; i < 4; ++i)
      f[i] = fp8_to_f32(a >> (8 * i)), f[4 + i] = fp8_to_f32(b >> (8 * i));
  } else {
    load8(reinterpret_cast<const KV*>(r) + d, f);
  }
}
template <typename KV>
__device__ __forceinline__ float row_at(const uint8_t* r, int d) {
  if constexpr (std::is_same_v<KV, I8Codes>)
    return static_cast<float>(static_cast<int8_t>(r[d]));
  else if constexpr (std::is_same_v<KV, F8Codes>)
    return fp8_to_f32(r[d]);
  else
    return to_f32(reinterpret_cast<const KV*>(r)[d]);
}
template <typename KV>
__device__ __forceinline__ float row_scale(const uint8_t* r, int hd) {
  if constexpr (kQuantized<KV>)
    return *reinterpret_cast<const float*>(r + hd);
  else
    return 1.0f;
}

}  // namespace jinx::cuda::detail

// IEEE half, bfloat16 and fp8 e4m3 conversions (scalar; the SIMD kernels convert 16 at a time).
#pragma once

#include <cstdint>
#include <cstring>

namespace jinx {

inline float bf16_to_f32(uint16_t h) {
  uint32_t u = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// Round to nearest even, NaN kept quiet.
inline uint16_t f32_to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40);
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

inline float f16_to_f32(uint16_t h) {
  uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t mant = h & 0x3ffu;
  uint32_t u;
  if (exp == 0) {
    if (mant == 0) {
      u = sign;
    } else {  // subnormal: normalise
      int e = -1;
      do {
        mant <<= 1;
        ++e;
      } while ((mant & 0x400u) == 0);
      u = sign | static_cast<uint32_t>(127 - 15 - e) << 23 | (mant & 0x3ffu) << 13;
    }
  } else if (exp == 31) {
    u = sign | 0x7f800000u | mant << 13;
  } else {
    u = sign | (exp + 112) << 23 | mant << 13;
  }
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

uint16_t f32_to_f16(float f);

// fp8 e4m3 ("e4m3fn": 4 exponent bits, bias 7, 3 mantissa bits, no infinities, 0x7f / 0xff
// NaN, largest finite 448). Decoding places the 7 magnitude bits in a float's exponent and
// mantissa fields (shifted by 20) and rescales by 2^120, which is exact for normals and
// subnormals alike.
inline float fp8_e4m3_to_f32(uint8_t x) {
  if ((x & 0x7fu) == 0x7fu) return (x & 0x80u) ? -__builtin_nanf("") : __builtin_nanf("");
  const uint32_t u = static_cast<uint32_t>(x & 0x80u) << 24 | static_cast<uint32_t>(x & 0x7fu)
                                                                  << 20;
  float f;
  std::memcpy(&f, &u, 4);
  return f * 0x1p120f;
}

// Round to nearest even; magnitudes past 448 saturate to +-448 (as a KV cache wants: no NaN
// from a large value), NaN -> 0x7f.
uint8_t f32_to_fp8_e4m3(float f);

}  // namespace jinx

// Scalar reference dequantization, written from the GGML block definitions (core/quant_blocks.h).
//
// Exactness: every product below (f16 scale x small integer, f16 scale x 6-bit scale x 5-bit
// quant, ...) fits in the 24-bit float mantissa, so it is exact; the only rounding is the final
// add/subtract of the min. The results are therefore bit-identical whether or not the compiler
// fuses multiply-adds, and identical to gguf-py's numpy reference.
//
// `src` may sit at any address (a safetensors tensor may start at an odd offset): it is read as
// bytes through backend/cpu/unaligned.h, never through a typed pointer or block reference.
#include "backend/cpu/dequant.h"

#include <cstddef>
#include <cstring>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include "backend/cpu/kernels.h"
#include "backend/cpu/unaligned.h"
#include "core/check.h"
#include "core/half.h"
#include "core/quant_blocks.h"

namespace jinx::cpu {
namespace {

using detail::block_at;
using detail::f16_field;
using detail::load_u16;

// src: [n] f32 -> dst: [n]
void dequant_f32(const void* src, float* dst, int64_t n) {
  std::memcpy(dst, src, static_cast<size_t>(n) * sizeof(float));
}

#if defined(__x86_64__)
// The F16C conversion (exact, as the scalar one): the blocked matmul converts every weight of an
// F16 model once per prefill chunk, which at a scalar value per nanosecond cost more than the
// products themselves.
__attribute__((target("avx,f16c"))) void dequant_f16_f16c(const void* src, float* dst,
                                                          int64_t n) {
  const auto* s = static_cast<const uint8_t*>(src);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(dst + i,
                     _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(s + 2 * i))));
  for (; i < n; ++i) dst[i] = f16_to_f32(detail::u16_at(src, i));
}
#endif

void dequant_f16(const void* src, float* dst, int64_t n) {
#if defined(__x86_64__)
  if (active_isa() != Isa::kScalar) return dequant_f16_f16c(src, dst, n);  // both have F16C
#endif
  for (int64_t i = 0; i < n; ++i) dst[i] = f16_to_f32(detail::u16_at(src, i));
}

void dequant_bf16(const void* src, float* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dst[i] = bf16_to_f32(detail::u16_at(src, i));
}

// x = d * q
void dequant_q8_0(const void* src, float* dst, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, dst += kQK8_0) {
    const uint8_t* b = block_at<BlockQ8_0>(src, i);
    const float d = f16_field(b, offsetof(BlockQ8_0, d));
    const uint8_t* qs = b + offsetof(BlockQ8_0, qs);
    for (int j = 0; j < kQK8_0; ++j) dst[j] = d * static_cast<float>(static_cast<int8_t>(qs[j]));
  }
}

// x = d * (q - 8); element j: low nibble of qs[j], element j + 16: high nibble of qs[j]
void dequant_q4_0(const void* src, float* dst, int64_t nb) {
  constexpr int kHalf = kQK4_0 / 2;
  for (int64_t i = 0; i < nb; ++i, dst += kQK4_0) {
    const uint8_t* b = block_at<BlockQ4_0>(src, i);
    const float d = f16_field(b, offsetof(BlockQ4_0, d));
    const uint8_t* qs = b + offsetof(BlockQ4_0, qs);
    for (int j = 0; j < kHalf; ++j) {
      dst[j] = d * static_cast<float>((qs[j] & 0xF) - 8);
      dst[j + kHalf] = d * static_cast<float>((qs[j] >> 4) - 8);
    }
  }
}

// x = d * q + m; nibble layout as Q4_0
void dequant_q4_1(const void* src, float* dst, int64_t nb) {
  constexpr int kHalf = kQK4_1 / 2;
  for (int64_t i = 0; i < nb; ++i, dst += kQK4_1) {
    const uint8_t* b = block_at<BlockQ4_1>(src, i);
    const float d = f16_field(b, offsetof(BlockQ4_1, d));
    const float m = f16_field(b, offsetof(BlockQ4_1, m));
    const uint8_t* qs = b + offsetof(BlockQ4_1, qs);
    for (int j = 0; j < kHalf; ++j) {
      dst[j] = d * static_cast<float>(qs[j] & 0xF) + m;
      dst[j + kHalf] = d * static_cast<float>(qs[j] >> 4) + m;
    }
  }
}

// The 32 signed codes q - 16 of a Q5_0 block.
void q5_0_block_codes(const uint8_t* b, int8_t* q) {
  constexpr int kHalf = kQK5_0 / 2;
  uint32_t qh;
  std::memcpy(&qh, b + offsetof(BlockQ5_0, qh), sizeof qh);
  const uint8_t* qs = b + offsetof(BlockQ5_0, qs);
  for (int j = 0; j < kHalf; ++j) {
    q[j] = static_cast<int8_t>(((qs[j] & 0xF) | (((qh >> j) & 1) << 4)) - 16);
    q[j + kHalf] = static_cast<int8_t>(((qs[j] >> 4) | (((qh >> (j + kHalf)) & 1) << 4)) - 16);
  }
}

void dequant_q5_0(const void* src, float* dst, int64_t nb) {
  int8_t q[kQK5_0];
  for (int64_t i = 0; i < nb; ++i, dst += kQK5_0) {
    const uint8_t* b = block_at<BlockQ5_0>(src, i);
    const float d = f16_field(b, offsetof(BlockQ5_0, d));
    q5_0_block_codes(b, q);
    for (int j = 0; j < kQK5_0; ++j) dst[j] = d * static_cast<float>(q[j]);
  }
}

// 6-bit scale and min of sub-block j (0..7) of a Q4_K / Q5_K super-block.
void k_scale_min(const uint8_t* scales, int j, int* sc, int* m) {
  if (j < 4) {
    *sc = scales[j] & 63;
    *m = scales[j + 4] & 63;
  } else {
    *sc = (scales[j + 4] & 0xF) | ((scales[j - 4] >> 6) << 4);
    *m = (scales[j + 4] >> 4) | ((scales[j] >> 6) << 4);
  }
}

// 8 sub-blocks of 32: x = d * sc * q - dmin * m. Sub-blocks 2k and 2k + 1 share qs[32k .. 32k+31]:
// low nibbles for 2k, high nibbles for 2k + 1.
void dequant_q4_k(const void* src, float* dst, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, dst += kQK_K) {
    const uint8_t* b = block_at<BlockQ4_K>(src, i);
    const float d = f16_field(b, offsetof(BlockQ4_K, d));
    const float dmin = f16_field(b, offsetof(BlockQ4_K, dmin));
    for (int j = 0; j < kQK_K / 32; ++j) {
      int sc, m;
      k_scale_min(b + offsetof(BlockQ4_K, scales), j, &sc, &m);
      const float ds = d * static_cast<float>(sc);
      const float dm = dmin * static_cast<float>(m);
      const uint8_t* qs = b + offsetof(BlockQ4_K, qs) + 32 * (j / 2);
      const int shift = 4 * (j % 2);
      for (int l = 0; l < 32; ++l)
        dst[32 * j + l] = ds * static_cast<float>((qs[l] >> shift) & 0xF) - dm;
    }
  }
}

// As Q4_K with a fifth (high) bit: bit j of qh[l] for element l of sub-block j.
void dequant_q5_k(const void* src, float* dst, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, dst += kQK_K) {
    const uint8_t* b = block_at<BlockQ5_K>(src, i);
    const float d = f16_field(b, offsetof(BlockQ5_K, d));
    const float dmin = f16_field(b, offsetof(BlockQ5_K, dmin));
    const uint8_t* qh = b + offsetof(BlockQ5_K, qh);
    for (int j = 0; j < kQK_K / 32; ++j) {
      int sc, m;
      k_scale_min(b + offsetof(BlockQ5_K, scales), j, &sc, &m);
      const float ds = d * static_cast<float>(sc);
      const float dm = dmin * static_cast<float>(m);
      const uint8_t* qs = b + offsetof(BlockQ5_K, qs) + 32 * (j / 2);
      const int shift = 4 * (j % 2);
      for (int l = 0; l < 32; ++l) {
        int q = ((qs[l] >> shift) & 0xF) | (((qh[l] >> j) & 1) << 4);
        dst[32 * j + l] = ds * static_cast<float>(q) - dm;
      }
    }
  }
}

// 16 sub-blocks of 16: x = d * scales[e / 16] * (q - 32). In each half h (128 elements), element
// 128h + 32k + l (k = 0..3, l = 0..31) takes its low 4 bits from ql[64h + 32(k % 2) + l] (low
// nibble for k < 2, high for k >= 2) and its high 2 bits from bits 2k of qh[32h + l].
void dequant_q6_k(const void* src, float* dst, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, dst += kQK_K) {
    const uint8_t* b = block_at<BlockQ6_K>(src, i);
    const float d = f16_field(b, offsetof(BlockQ6_K, d));
    const uint8_t* ql = b + offsetof(BlockQ6_K, ql);
    const uint8_t* qh = b + offsetof(BlockQ6_K, qh);
    const uint8_t* scales = b + offsetof(BlockQ6_K, scales);
    for (int e = 0; e < kQK_K; ++e) {
      const int h = e / 128, k = (e % 128) / 32, l = e % 32;
      const int lo = (ql[64 * h + 32 * (k % 2) + l] >> (4 * (k / 2))) & 0xF;
      const int hi = (qh[32 * h + l] >> (2 * k)) & 3;
      const float ds = d * static_cast<float>(static_cast<int8_t>(scales[e / 16]));
      dst[e] = ds * static_cast<float>((lo | (hi << 4)) - 32);
    }
  }
}

// Q5_0's layout with x = d * q + m.
void dequant_q5_1(const void* src, float* dst, int64_t nb) {
  constexpr int kHalf = kQK5_1 / 2;
  for (int64_t i = 0; i < nb; ++i, dst += kQK5_1) {
    const uint8_t* b = block_at<BlockQ5_1>(src, i);
    const float d = f16_field(b, offsetof(BlockQ5_1, d));
    const float m = f16_field(b, offsetof(BlockQ5_1, m));
    uint32_t qh;
    std::memcpy(&qh, b + offsetof(BlockQ5_1, qh), sizeof qh);
    const uint8_t* qs = b + offsetof(BlockQ5_1, qs);
    for (int j = 0; j < kHalf; ++j) {
      const int lo = (qs[j] & 0xF) | static_cast<int>(((qh >> j) & 1) << 4);
      const int hi = (qs[j] >> 4) | static_cast<int>(((qh >> (j + kHalf)) & 1) << 4);
      dst[j] = d * static_cast<float>(lo) + m;
      dst[j + kHalf] = d * static_cast<float>(hi) + m;
    }
  }
}

// Element 128h + 32k + l (h = 0..1, k = 0..3, l = 0..31): bits 2k of qs[32h + l], scale and min
// of its 16-element sub-block in scales[e / 16] (low, high nibble).
void dequant_q2_k(const void* src, float* dst, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, dst += kQK_K) {
    const uint8_t* b = block_at<BlockQ2_K>(src, i);
    const float d = f16_field(b, offsetof(BlockQ2_K, d));
    const float dmin = f16_field(b, offsetof(BlockQ2_K, dmin));
    const uint8_t* scales = b + offsetof(BlockQ2_K, scales);
    const uint8_t* qs = b + offsetof(BlockQ2_K, qs);
    for (int e = 0; e < kQK_K; ++e) {
      const int h = e / 128, k = (e % 128) / 32, l = e % 32;
      const float dl = d * static_cast<float>(scales[e / 16] & 0xF);
      const float ml = dmin * static_cast<float>(scales[e / 16] >> 4);
      dst[e] = dl * static_cast<float>((qs[32 * h + l] >> (2 * k)) & 3) - ml;
    }
  }
}

// Q2_K's 2-bit layout minus 4 where bit e / 32 of hmask[e % 32] is clear; x = d * scale * q.
void dequant_q3_k(const void* src, float* dst, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, dst += kQK_K) {
    const uint8_t* b = block_at<BlockQ3_K>(src, i);
    const float d = f16_field(b, offsetof(BlockQ3_K, d));
    const uint8_t* hmask = b + offsetof(BlockQ3_K, hmask);
    const uint8_t* qs = b + offsetof(BlockQ3_K, qs);
    const uint8_t* scales = b + offsetof(BlockQ3_K, scales);
    for (int e = 0; e < kQK_K; ++e) {
      const int h = e / 128, k = (e % 128) / 32, l = e % 32;
      const int lo = (qs[32 * h + l] >> (2 * k)) & 3;
      const int q = lo - (((hmask[l] >> (e / 32)) & 1) ? 0 : 4);
      const float dl = d * static_cast<float>(q3_k_scale(scales, e / 16));
      dst[e] = dl * static_cast<float>(q);
    }
  }
}

void dequant_iq4_nl(const void* src, float* dst, int64_t nb) {
  constexpr int kHalf = kQK4_NL / 2;
  for (int64_t i = 0; i < nb; ++i, dst += kQK4_NL) {
    const uint8_t* b = block_at<BlockIQ4_NL>(src, i);
    const float d = f16_field(b, offsetof(BlockIQ4_NL, d));
    const uint8_t* qs = b + offsetof(BlockIQ4_NL, qs);
    for (int j = 0; j < kHalf; ++j) {
      dst[j] = d * static_cast<float>(kIq4nlValues[qs[j] & 0xF]);
      dst[j + kHalf] = d * static_cast<float>(kIq4nlValues[qs[j] >> 4]);
    }
  }
}

// IQ4_NL's layout with the E2M1 grid and a power-of-two scale.
void dequant_mxfp4(const void* src, float* dst, int64_t nb) {
  constexpr int kHalf = kQK_MXFP4 / 2;
  for (int64_t i = 0; i < nb; ++i, dst += kQK_MXFP4) {
    const uint8_t* b = block_at<BlockMXFP4>(src, i);
    const float d = e8m0_to_f32_half(b[offsetof(BlockMXFP4, e)]);
    const uint8_t* qs = b + offsetof(BlockMXFP4, qs);
    for (int j = 0; j < kHalf; ++j) {
      dst[j] = d * static_cast<float>(kMxfp4Values[qs[j] & 0xF]);
      dst[j + kHalf] = d * static_cast<float>(kMxfp4Values[qs[j] >> 4]);
    }
  }
}

// 8 sub-blocks of 32 in IQ4_NL's layout (qs[16j ..]), each with its own scale.
void dequant_iq4_xs(const void* src, float* dst, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, dst += kQK_K) {
    const uint8_t* b = block_at<BlockIQ4_XS>(src, i);
    const float d = f16_field(b, offsetof(BlockIQ4_XS, d));
    for (int j = 0; j < kQK_K / 32; ++j) {
      const float dl = d * static_cast<float>(iq4_xs_scale(
          load_u16(b + offsetof(BlockIQ4_XS, scales_h)), b + offsetof(BlockIQ4_XS, scales_l), j));
      const uint8_t* qs = b + offsetof(BlockIQ4_XS, qs) + 16 * j;
      for (int l = 0; l < 16; ++l) {
        dst[32 * j + l] = dl * static_cast<float>(kIq4nlValues[qs[l] & 0xF]);
        dst[32 * j + l + 16] = dl * static_cast<float>(kIq4nlValues[qs[l] >> 4]);
      }
    }
  }
}

}  // namespace

void dequantize_row(DType t, const void* src, float* dst, int64_t n) {
  const int64_t block = traits(t).block_elems;
  JINX_CHECK(n >= 0 && n % block == 0, "dequantize_row: ", n, " elements is not a multiple of the ",
             name(t), " block size ", block);
  const int64_t nb = n / block;
  switch (t) {
    case DType::F32:
      return dequant_f32(src, dst, n);
    case DType::F16:
      return dequant_f16(src, dst, n);
    case DType::BF16:
      return dequant_bf16(src, dst, n);
    case DType::Q8_0:
      return dequant_q8_0(src, dst, nb);
    case DType::Q4_0:
      return dequant_q4_0(src, dst, nb);
    case DType::Q4_1:
      return dequant_q4_1(src, dst, nb);
    case DType::Q5_0:
      return dequant_q5_0(src, dst, nb);
    case DType::Q4_K:
      return dequant_q4_k(src, dst, nb);
    case DType::Q5_K:
      return dequant_q5_k(src, dst, nb);
    case DType::Q6_K:
      return dequant_q6_k(src, dst, nb);
    case DType::Q5_1:
      return dequant_q5_1(src, dst, nb);
    case DType::Q2_K:
      return dequant_q2_k(src, dst, nb);
    case DType::Q3_K:
      return dequant_q3_k(src, dst, nb);
    case DType::IQ4_NL:
      return dequant_iq4_nl(src, dst, nb);
    case DType::IQ4_XS:
      return dequant_iq4_xs(src, dst, nb);
    case DType::MXFP4:
      return dequant_mxfp4(src, dst, nb);
    default:
      fail("dequantize_row: unsupported dtype ", name(t));
  }
}

void q5_0_codes(const void* block, int8_t* codes) {
  q5_0_block_codes(static_cast<const uint8_t*>(block), codes);
}

}  // namespace jinx::cpu

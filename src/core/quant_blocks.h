// Storage layout of the GGML block-quantized types, as found in GGUF files. Each block is a
// POD struct whose size is fixed by the file format (checked below).
#pragma once

#include <bit>
#include <cstdint>

namespace jinx {

constexpr int kQK8_0 = 32;
constexpr int kQK4_0 = 32;
constexpr int kQK4_1 = 32;
constexpr int kQK5_0 = 32;
constexpr int kQK5_1 = 32;
constexpr int kQK4_NL = 32;
constexpr int kQK_MXFP4 = 32;
constexpr int kQK_K = 256;       // super-block size of the k-quants
constexpr int kKScaleBytes = 12;  // packed 6-bit scales and mins of Q4_K / Q5_K

// x = d * q, q in [-128, 127]
struct BlockQ8_0 {
  uint16_t d;  // f16
  int8_t qs[kQK8_0];
};
// x = d * (q - 8); element j in the low nibble of qs[j], element j+16 in the high nibble
struct BlockQ4_0 {
  uint16_t d;  // f16
  uint8_t qs[kQK4_0 / 2];
};
// x = d * q + m; same nibble layout as Q4_0
struct BlockQ4_1 {
  uint16_t d;  // f16
  uint16_t m;  // f16
  uint8_t qs[kQK4_1 / 2];
};
// x = d * (q - 16), q 5-bit: element j's low 4 bits in the low nibble of qs[j] (element j+16:
// the high nibble), its fifth bit is bit j (j+16: bit j+16) of qh read as a little-endian uint32
struct BlockQ5_0 {
  uint16_t d;  // f16
  uint8_t qh[4];
  uint8_t qs[kQK5_0 / 2];
};
// x = d * q + m, q 5-bit in Q5_0's layout
struct BlockQ5_1 {
  uint16_t d;  // f16
  uint16_t m;  // f16
  uint8_t qh[4];
  uint8_t qs[kQK5_1 / 2];
};
// 16 sub-blocks of 16: x = d * (scales[j] & 15) * q - dmin * (scales[j] >> 4), q 2-bit. Values
// 32h + l (h = 0..7, l = 0..31) are bits 2(h % 4) of qs[32(h / 4) + l]; value i takes scale i / 16.
struct BlockQ2_K {
  uint8_t scales[kQK_K / 16];
  uint8_t qs[kQK_K / 4];
  uint16_t d;     // f16
  uint16_t dmin;  // f16
};
// 16 sub-blocks of 16: x = d * (sc_j - 32) * (q - 4), q = 2 low bits (Q2_K's layout) plus bit h of
// hmask[l] as bit 2 (value 32h + l), sc_j 6-bit: low 4 bits in scales[j % 8] (nibble j / 8), high
// 2 bits at bit 2(j / 4) of scales[8 + j % 4].
struct BlockQ3_K {
  uint8_t hmask[kQK_K / 8];
  uint8_t qs[kQK_K / 4];
  uint8_t scales[12];
  uint16_t d;  // f16
};
// x = d * kIq4nlValues[q], q 4-bit in Q4_0's nibble layout
struct BlockIQ4_NL {
  uint16_t d;  // f16
  uint8_t qs[kQK4_NL / 2];
};
// 8 sub-blocks of 32 in IQ4_NL's layout: x = d * (ls_j - 32) * kIq4nlValues[q], ls_j 6-bit: low 4
// bits at nibble j of scales_l (as a little-endian uint32), high 2 bits at bit 2j of scales_h.
struct BlockIQ4_XS {
  uint16_t d;  // f16
  uint16_t scales_h;
  uint8_t scales_l[kQK_K / 64];
  uint8_t qs[kQK_K / 2];
};
// The non-linear 4-bit grid of IQ4_NL / IQ4_XS (ggml's kvalues_iq4nl).
inline constexpr int8_t kIq4nlValues[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                            1,    13,   25,  38,  53,  69,  89,  113};
// OCP microscaling FP4: x = 2^(e - 128) * kMxfp4Values[q], q 4-bit in Q4_0's nibble layout, e an
// E8M0 exponent (ggml's block_mxfp4; gpt-oss's expert weights)
struct BlockMXFP4 {
  uint8_t e;
  uint8_t qs[kQK_MXFP4 / 2];
};
// The E2M1 values doubled (ggml's kvalues_mxfp4), hence the half scale below.
inline constexpr int8_t kMxfp4Values[16] = {0, 1,  2,  3,  4,  6,  8,  12,
                                            0, -1, -2, -3, -4, -6, -8, -12};
// 2^(e - 128) as ggml's GGML_E8M0_TO_FP32_HALF builds it, bit for bit: denormal for e < 2, and
// no NaN (e = 255 is 2^127).
constexpr float e8m0_to_f32_half(uint8_t e) {
  return std::bit_cast<float>(e < 2 ? 0x00200000u << e : static_cast<uint32_t>(e - 1) << 23);
}
// Scale j (0..15) of a Q3_K super-block's `scales`, minus 32.
inline int q3_k_scale(const uint8_t* scales, int j) {
  const int lo = (scales[j % 8] >> (4 * (j / 8))) & 0xF;
  const int hi = (scales[8 + j % 4] >> (2 * (j / 4))) & 3;
  return (lo | (hi << 4)) - 32;
}
// Scale j (0..7) of an IQ4_XS super-block, minus 32.
inline int iq4_xs_scale(uint16_t scales_h, const uint8_t* scales_l, int j) {
  const int lo = (scales_l[j / 2] >> (4 * (j % 2))) & 0xF;
  const int hi = (scales_h >> (2 * j)) & 3;
  return (lo | (hi << 4)) - 32;
}
// 8 sub-blocks of 32: x = d * sc * q - dmin * m, 6-bit sc/m packed in `scales`
struct BlockQ4_K {
  uint16_t d;     // f16
  uint16_t dmin;  // f16
  uint8_t scales[kKScaleBytes];
  uint8_t qs[kQK_K / 2];
};
// As Q4_K with a fifth bit per element in qh
struct BlockQ5_K {
  uint16_t d;
  uint16_t dmin;
  uint8_t scales[kKScaleBytes];
  uint8_t qh[kQK_K / 8];
  uint8_t qs[kQK_K / 2];
};
// 16 sub-blocks of 16: x = d * scales[i] * (q - 32), q 6-bit (4 low bits in ql, 2 in qh)
struct BlockQ6_K {
  uint8_t ql[kQK_K / 2];
  uint8_t qh[kQK_K / 4];
  int8_t scales[kQK_K / 16];
  uint16_t d;
};

static_assert(sizeof(BlockQ8_0) == 34);
static_assert(sizeof(BlockQ4_0) == 18);
static_assert(sizeof(BlockQ4_1) == 20);
static_assert(sizeof(BlockQ5_0) == 22);
static_assert(sizeof(BlockQ4_K) == 144);
static_assert(sizeof(BlockQ5_K) == 176);
static_assert(sizeof(BlockQ6_K) == 210);
static_assert(sizeof(BlockQ5_1) == 24);
static_assert(sizeof(BlockQ2_K) == 84);
static_assert(sizeof(BlockQ3_K) == 110);
static_assert(sizeof(BlockIQ4_NL) == 18);
static_assert(sizeof(BlockIQ4_XS) == 136);
static_assert(sizeof(BlockMXFP4) == 17);
static_assert(e8m0_to_f32_half(128) == 1.0f && e8m0_to_f32_half(0) == 0x1p-128f);

}  // namespace jinx

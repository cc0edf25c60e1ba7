// Storage layout of the GGML block-quantized types, as found in GGUF files. Each block is a
// POD struct whose size is fixed by the file format (checked below).
#pragma once

#include <cstdint>

namespace jinx {

constexpr int kQK8_0 = 32;
constexpr int kQK4_0 = 32;
constexpr int kQK4_1 = 32;
constexpr int kQK5_0 = 32;
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

}  // namespace jinx

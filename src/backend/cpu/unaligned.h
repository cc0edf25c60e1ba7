// Internal: loads from weight bytes at any address.
//
// A tensor in a safetensors file may start at any byte offset (MLX writes them so), so a
// `const uint16_t*`, `const float*` or `const BlockQ8_0&` into weight data can be misaligned:
// undefined behaviour (UBSan's -fsanitize=alignment reports it), even where x86 would not mind.
// Weight data is therefore read as bytes: scalars by memcpy (2 or 4 bytes: one plain load on
// x86, no call), vectors by unaligned SIMD loads, GGML block fields by offsetof from the start
// of the block.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "core/half.h"

namespace jinx::cpu::detail {

inline uint16_t load_u16(const uint8_t* p) {
  uint16_t v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

inline float load_f32(const uint8_t* p) {
  float v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

// Element i of an array of uint16 (f16 / bf16 bits) or f32 starting at `base`.
inline uint16_t u16_at(const void* base, int64_t i) {
  return load_u16(static_cast<const uint8_t*>(base) + static_cast<size_t>(i) * 2);
}
inline float f32_at(const void* base, int64_t i) {
  return load_f32(static_cast<const uint8_t*>(base) + static_cast<size_t>(i) * 4);
}

// Block i of a row of GGML blocks (core/quant_blocks.h), as bytes. Its fields are at
// offsetof(Block, field): f16 ones read by load_u16, byte arrays used as pointers.
template <class Block>
inline const uint8_t* block_at(const void* row, int64_t i) {
  return static_cast<const uint8_t*>(row) + static_cast<size_t>(i) * sizeof(Block);
}

// The f16 field at byte `offset` of a block, as fp32 (portable conversion).
inline float f16_field(const uint8_t* block, size_t offset) {
  return f16_to_f32(load_u16(block + offset));
}

}  // namespace jinx::cpu::detail

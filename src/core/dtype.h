// Element types of tensors and their storage traits. Dtype dispatch happens through this one
// table; quantized types are blocks of `block_elems` elements stored in `block_bytes` bytes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace jinx {

enum class DType : uint8_t {
  F32,
  F16,
  BF16,
  F64,
  I8,
  U8,
  I16,
  I32,
  U32,
  I64,
  Q8_0,
  Q4_0,
  Q4_1,
  Q4_K,
  Q5_K,
  Q6_K,
  F8_E4M3,  // fp8, 4 exponent bits (the quantized KV cache; not a weight format)
  Q5_0,     // x = d * (q - 16), q 5-bit (llama.cpp's fallback for k-quants on odd widths)
  Q5_1,     // x = d * q + m, q 5-bit (the fallback for Q5_K on odd widths)
  Q2_K,     // 2-bit k-quant: 16 values per 4-bit scale and min
  Q3_K,     // 3-bit k-quant: 16 values per signed 6-bit scale
  IQ4_NL,   // x = d * table[q], q 4-bit index into a fixed non-linear table of 16 int8 values
  IQ4_XS,   // IQ4_NL's table under a 6-bit scale per 32 values, 256-value super-blocks
  MXFP4,    // x = 2^(e - 128) * table[q], q a 4-bit E2M1 code (doubled), e 8-bit per 32 values
  kCount,
};

struct DTypeTraits {
  std::string_view name;
  int64_t block_elems;  // elements per block (1 for plain types)
  size_t block_bytes;   // bytes per block
  bool quantized;
};

const DTypeTraits& traits(DType t);
inline std::string_view name(DType t) { return traits(t).name; }
std::optional<DType> dtype_from_name(std::string_view name);

// Bytes needed for n elements of type t. Returns nullopt when n is negative, not a multiple of
// the block size, or the byte count overflows 64 bits.
std::optional<size_t> bytes_for(DType t, int64_t n);

}  // namespace jinx

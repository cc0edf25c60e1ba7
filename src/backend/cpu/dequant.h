// Reference dequantization of one row of any DType to fp32 (scalar, the ground truth that the
// SIMD kernels are tested against).
#pragma once

#include <cstdint>

#include "core/dtype.h"

namespace jinx::cpu {

// src holds n elements of type t (n a multiple of the block size); writes n floats to dst.
void dequantize_row(DType t, const void* src, float* dst, int64_t n);

// The 32 codes q - 16 of one Q5_0 block (its values are d * code): what a Q8_0 block of the
// same d holds, exactly.
void q5_0_codes(const void* block, int8_t* codes);

}  // namespace jinx::cpu

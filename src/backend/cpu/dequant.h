// Reference dequantization of one row of any DType to fp32 (scalar, the ground truth that the
// SIMD kernels are tested against).
#pragma once

#include <cstdint>

#include "core/dtype.h"

namespace jinx::cpu {

// src holds n elements of type t (n a multiple of the block size); writes n floats to dst.
void dequantize_row(DType t, const void* src, float* dst, int64_t n);

}  // namespace jinx::cpu

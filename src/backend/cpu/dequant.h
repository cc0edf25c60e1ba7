// Reference dequantization of one row of any DType to fp32 (scalar, the ground truth that the
// SIMD kernels are tested against).
#pragma once

#include <cstdint>

#include "core/dtype.h"

namespace jinx::cpu {

// src holds n elements of type t (n a multiple of the block size); writes n floats to dst.
void dequantize_row(DType t, const void* src, float* dst, int64_t n);

// Rewrites nb Q5_0 blocks as Q8_0 blocks (the same scale, the codes q - 16 as int8): the same
// values exactly, 34 bytes a block instead of 22, for the kernels that have no Q5_0 form.
void repack_q5_0_as_q8_0(const void* src, void* dst, int64_t nb);

}  // namespace jinx::cpu

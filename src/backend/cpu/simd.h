// Internal: the SIMD row-dot kernels behind matmul, one set per ISA level.
//
// A row-dot computes out[j] = dot(w_row, x[j]) for nx <= 4 activation vectors at once, so a
// weight block is loaded and dequantized once for up to four tokens.
#pragma once

#include <cstdint>

#include "backend/weight.h"

namespace jinx::cpu::detail {

constexpr int kMaxNx = 4;
using RowDotFn = void (*)(const void* row, const float* const* xs, int nx, int64_t cols,
                          float* out);

// Returns the fused kernel for this dtype at this ISA, or nullptr when the dtype has none
// (the caller then dequantizes rows to fp32 and uses the F32 kernel).
RowDotFn row_dot_avx512(DType t);
RowDotFn row_dot_avx2(DType t);
RowDotFn row_dot_scalar(DType t);

// Dequantize a row of an MLX-quantized matrix to fp32.
void mlx_dequant_row(const WeightMatrix& w, int64_t row, float* out);

}  // namespace jinx::cpu::detail

// Internal: the SIMD row-dot kernels behind matmul, one set per ISA level.
//
// A row-dot computes out[j] = dot(w_row, x[j]) for nx <= 4 activation vectors at once, so a
// weight block is loaded and dequantized once for up to four tokens.
#pragma once

#include <cstdint>

#include "backend/cpu/quant_act.h"
#include "backend/weight.h"

namespace jinx::cpu::detail {

constexpr int kMaxNx = 4;
constexpr int kTileRows = 3;    // weight rows per fp32 register tile (TileFn)
constexpr int kTileTokens = 8;  // tokens per fp32 register tile
using RowDotFn = void (*)(const void* row, const float* const* xs, int nx, int64_t cols,
                          float* out);

// fp32 register tile: out[i * kTileTokens + j] = dot(rows + i * ld, xs[j]) for kTileRows rows
// x kTileTokens tokens, each
// sum bit-identical to the F32 row-dot's, so a token's result never depends on which kernel
// (or how many other tokens) computed it.
using TileFn = void (*)(const float* rows, int64_t ld, const float* const* xs, int64_t cols,
                        float* out);
TileFn tile_f32_avx512();

// Returns the fused kernel for this dtype at this ISA, or nullptr when the dtype has none
// (the caller then dequantizes rows to fp32 and uses the F32 kernel).
RowDotFn row_dot_avx512(DType t);
RowDotFn row_dot_avx2(DType t);
RowDotFn row_dot_scalar(DType t);

// a[i] = silu(a[i]) * b[i] with AVX-512 (ops_avx512.cpp).
void silu_mul_avx512(float* a, const float* b, int64_t n);
void gelu_tanh_mul_avx512(float* a, const float* b, int64_t n);

// Dequantize a row of an MLX-quantized matrix to fp32.
void mlx_dequant_row(const WeightMatrix& w, int64_t row, float* out);

// ---- Integer-dot kernels over 8-bit activations (qdot_*.cpp) ----
//
// Every weight format is read as 32-value chunks of small integers u with a float scale and
// offset per 16 or 32 values: w = dw * u + ow. A chunk dotted with an activation block (x ~= dx
// * q) is dw * dx * sum(u * q) + ow * dx * sum(q): an integer dot product (vpdpbusd or
// pmaddubsw) and two float multiply-adds per lane (see quant_act.h for the lane arrays).

enum class QFormat {
  kNone,
  kQ8_0,
  kQ4_0,
  kQ4_1,
  kQ5_0,
  kQ5_1,
  kQ2_K,
  kQ3_K,
  kQ4_K,
  kQ5_K,
  kQ6_K,
  kIQ4_NL,
  kIQ4_XS,
  kMXFP4,
  kMlx4,
  kMlx8
};

// The integer-kernel format of w, or kNone when w has none (dense types, other MLX widths).
QFormat qformat(const WeightMatrix& w);

// y[t * ldy + r] = dot(w[r], activations of token t) for r in [r0, r1) and every token of a.
using QMatmulFn = void (*)(const WeightMatrix& w, int64_t r0, int64_t r1, const QuantActs& a,
                           float* y, int64_t ldy);

struct QKernels {
  QMatmulFn gemv = nullptr;  // a.n_tokens <= kMaxNx: straight off the stored weights
  QMatmulFn gemm = nullptr;  // any token count: rows decoded once per tile of tokens
};

// Empty kernels when the CPU lacks what the level needs (qdot_avx512 needs AVX512-VNNI).
QKernels qdot_avx512(QFormat f);
QKernels qdot_avx2(QFormat f);
QKernels qdot_scalar(QFormat f);

// 6-bit scale and min of sub-block j (0..7) of a Q4_K / Q5_K super-block.
inline void kquant_scale_min(const uint8_t* scales, int j, int* sc, int* m) {
  if (j < 4) {
    *sc = scales[j] & 63;
    *m = scales[j + 4] & 63;
  } else {
    *sc = (scales[j + 4] & 0xF) | ((scales[j - 4] >> 6) << 4);
    *m = (scales[j + 4] >> 4) | ((scales[j] >> 6) << 4);
  }
}

// One MLX scale or bias as fp32 (dtype checked by qformat).
float mlx_scale_at(DType t, const void* base, int64_t i);

}  // namespace jinx::cpu::detail

// fp32 -> GGML block quantization (Q8_0, Q4_0), with llama.cpp's reference rounding so that a
// row quantized here is byte-identical to ggml's quantize_row_*_ref and gguf-py's quantize().
// Used to quantize F32/F16/BF16 checkpoints at load (--quantize).
#pragma once

#include <cstdint>
#include <vector>

#include "backend/weight.h"
#include "core/dtype.h"
#include "core/thread_pool.h"

namespace jinx::cpu {

// True for the formats quantize_row can produce (Q8_0, Q4_0).
bool can_quantize_to(DType t);

// Q8_0: per block of 32, d = max|x| / 127, q = round-half-away(x / d) (x * (1/d) in fp32).
// x: [n] fp32, n a multiple of 32 -> dst: n / 32 BlockQ8_0 (any alignment).
void quantize_row_q8_0(const float* x, void* dst, int64_t n);
// Q4_0: per block of 32, m = the value of largest magnitude (first one on a tie), d = m / -8,
// q = min(15, trunc(x / d + 8.5)); element j in the low nibble of byte j, j + 16 in the high.
// x: [n] fp32, n a multiple of 32 -> dst: n / 32 BlockQ4_0 (any alignment).
void quantize_row_q4_0(const float* x, void* dst, int64_t n);
// Either of the above by type; throws jinx::Error for another type or a bad n.
void quantize_row(DType t, const float* x, void* dst, int64_t n);

// True when w (dense F32/F16/BF16, not MLX) can become type t: its rows are a whole number of
// t's blocks.
bool can_quantize_matrix(const WeightMatrix& w, DType t);

// Quantizes every row of w ([rows, cols], F32/F16/BF16) to t into *storage (resized to
// rows * bytes_for(t, cols)) and returns the view of it; rows split over the pool. Throws
// jinx::Error when !can_quantize_matrix(w, t). The result points into *storage: keep it alive
// and unmoved-from (moving the vector keeps its buffer).
WeightMatrix quantize_matrix(const WeightMatrix& w, DType t, std::vector<uint8_t>* storage,
                             ThreadPool& pool);

}  // namespace jinx::cpu

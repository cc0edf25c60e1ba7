// fp32 -> GGML block quantization (Q8_0, Q4_0, Q4_K), with llama.cpp's reference rounding so that
// a row quantized here is byte-identical to ggml's quantize_row_*_ref (and gguf-py's quantize()),
// and fp32 -> MLX affine quantization, byte-identical to mlx.core.quantize. Used to quantize
// F32/F16/BF16 checkpoints at load (--quantize) and by `jinx quantize`.
#pragma once

#include <cstdint>
#include <vector>

#include "backend/weight.h"
#include "core/dtype.h"
#include "core/thread_pool.h"

namespace jinx::cpu {

// True for the formats quantize_row can produce (Q8_0, Q4_0, Q4_K).
bool can_quantize_to(DType t);

// Q8_0: per block of 32, d = max|x| / 127, q = round-half-away(x / d) (x * (1/d) in fp32).
// x: [n] fp32, n a multiple of 32 -> dst: n / 32 BlockQ8_0 (any alignment).
void quantize_row_q8_0(const float* x, void* dst, int64_t n);
// Q4_0: per block of 32, m = the value of largest magnitude (first one on a tie), d = m / -8,
// q = min(15, trunc(x / d + 8.5)); element j in the low nibble of byte j, j + 16 in the high.
// x: [n] fp32, n a multiple of 32 -> dst: n / 32 BlockQ4_0 (any alignment).
void quantize_row_q4_0(const float* x, void* dst, int64_t n);
// Q4_K: per super-block of 256, eight sub-blocks of 32 each fitted as x ~ scale * q + min by
// weighted least squares (weights rms + |x|, 21 candidate scales), scales and mins then
// quantized to 6 bits against d = max scale / 63 and dmin = max min / 63 (f16), and the values
// re-quantized with the stored scales (llama.cpp's quantize_row_q4_K_ref, no importance matrix).
// x: [n] fp32, n a multiple of 256 -> dst: n / 256 BlockQ4_K (any alignment).
void quantize_row_q4_k(const float* x, void* dst, int64_t n);
// Any of the above by type; throws jinx::Error for another type or a bad n.
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

// MLX affine quantization of one row (mlx.core.quantize, mode "affine"): per group of
// group_size values, scale = (max - min) / (2^bits - 1) snapped so that the endpoint of larger
// magnitude is a whole number of steps, bias = that endpoint (or 0), q = rint((x - bias) /
// scale) clamped to [0, 2^bits - 1], packed least-significant first into uint32 words.
// x: [n] fp32, n a multiple of group_size -> words: [n * bits / 32], scales, biases:
// [n / group_size] stored as scale_dtype (F32, F16 or BF16). bits 2, 4 or 8; group_size 32, 64
// or 128. Throws jinx::Error on anything else, or a non-finite x.
void quantize_row_mlx(const float* x, int64_t n, int bits, int group_size, DType scale_dtype,
                      uint32_t* words, void* scales, void* biases);

// True when w (dense F32/F16/BF16, not MLX) has rows of whole groups.
bool can_quantize_matrix_mlx(const WeightMatrix& w, int group_size);

// Every row of w ([rows, cols], F32/F16/BF16) MLX-quantized into *storage (words, then scales,
// then biases, all in one buffer); the scales and biases are stored in w's own type, as
// mlx_lm.convert -q writes them for a checkpoint of that type. Returns a U32 WeightMatrix with
// .mlx set (the MLX kernels run it). Same lifetime rule as quantize_matrix.
WeightMatrix quantize_matrix_mlx(const WeightMatrix& w, int bits, int group_size,
                                 std::vector<uint8_t>* storage, ThreadPool& pool);

}  // namespace jinx::cpu

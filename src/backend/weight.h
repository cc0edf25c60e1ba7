// A 2-D weight matrix as the kernels see it: [rows = out_features, cols = in_features],
// rows contiguous, in any storage format. No model knowledge here.
#pragma once

#include <cstddef>
#include <cstdint>

#include "core/dtype.h"

namespace jinx {

// MLX affine quantization (mlx.core.quantize): each row of `cols` values is split in groups of
// `group_size`; value = scale * q + bias with q an unsigned `bits`-bit integer, packed little-end
// first into uint32 words (32 / bits values per word).
struct MlxQuant {
  int bits = 0;                   // 0: not MLX-quantized; else 2, 3, 4, 6 or 8
  int group_size = 0;             // 32, 64 or 128
  DType scale_dtype = DType::F32;  // F32, F16 or BF16
  const void* scales = nullptr;   // [rows, cols / group_size]
  const void* biases = nullptr;   // [rows, cols / group_size]
};

struct WeightMatrix {
  DType dtype = DType::F32;   // storage of `data` (U32 for MLX-packed)
  const void* data = nullptr;
  int64_t rows = 0;
  int64_t cols = 0;           // logical columns (elements), not storage words
  size_t row_bytes = 0;       // stride between rows of `data`
  MlxQuant mlx;

  bool is_mlx() const { return mlx.bits != 0; }
};

}  // namespace jinx

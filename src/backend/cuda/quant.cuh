// Element access to the device weight formats (see DeviceMatrix in ops.h).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

#include "backend/cuda/ops.h"

namespace jinx::cuda::detail {

constexpr int kQBlock = 32;  // elements per Q8_0 / Q4_0 / Q4A block

__device__ __forceinline__ float scale_at(const DeviceMatrix& w, int64_t row, int64_t block) {
  const __half* s = static_cast<const __half*>(w.scales);
  return __half2float(s[row * (w.cols / kQBlock) + block]);
}

// Nibble j (0..31) of a Q4_0 / Q4A block: element j in the low nibble of byte j, j + 16 high.
__device__ __forceinline__ int nibble_at(const uint8_t* block, int64_t j) {
  const uint8_t byte = block[j & 15];
  return j < 16 ? (byte & 15) : (byte >> 4);
}

// Element (row, col) of w as fp32 (gathers and dequantization; the GEMV reads whole blocks).
__device__ __forceinline__ float load_weight(const DeviceMatrix& w, int64_t row, int64_t col) {
  const uint8_t* base = static_cast<const uint8_t*>(w.data) + row * w.row_bytes;
  switch (w.dtype) {
    case DType::Q8_0:
      return scale_at(w, row, col / kQBlock) * static_cast<float>(
                 reinterpret_cast<const int8_t*>(base)[col]);
    case DType::Q4_0: {
      const int64_t b = col / kQBlock, j = col % kQBlock;
      const uint8_t byte = base[b * 16 + (j & 15)];
      const int q = j < 16 ? (byte & 15) : (byte >> 4);
      return scale_at(w, row, b) * static_cast<float>(q - 8);
    }
    case kQ4A: {  // x = s * q + m, s and m fp32
      const int64_t b = col / kQBlock, i = row * (w.cols / kQBlock) + b;
      const float s = static_cast<const float*>(w.scales)[i];
      const float m = static_cast<const float*>(w.offsets)[i];
      return fmaf(s, static_cast<float>(nibble_at(base + b * 16, col % kQBlock)), m);
    }
    default:  // BF16
      return __bfloat162float(reinterpret_cast<const __nv_bfloat16*>(base)[col]);
  }
}

}  // namespace jinx::cuda::detail

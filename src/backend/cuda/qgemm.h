// The tensor-core GEMM that dequantizes weights on its way into shared memory (qgemm.cu):
// matmul() runs it for token counts past the GEMV's instead of expanding a quantized matrix to
// bf16 in scratch for cuBLAS.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "backend/cuda/ops.h"

namespace jinx::cuda {

// Which matmuls past the GEMV take it (JINX_QGEMM at start: 0 off, all, else quantized):
// kQgemmQuantized (the default) Q8_0, Q4_0 and Q4A weights, BF16 staying on cuBLAS;
// kQgemmAll BF16 too (an A/B against cuBLAS); kQgemmOff none (the dequantize + cuBLAS path).
// Set it before sizing scratch: matmul_scratch_bytes() depends on it.
constexpr int kQgemmOff = 0, kQgemmQuantized = 1, kQgemmAll = 2;
int qgemm_mode();
void set_qgemm_mode(int mode);

// Whether the kernel can read w and x: 32 | w.cols, rows of a multiple of 16 bytes, w.data and x
// 16-byte aligned, a format it knows (BF16, Q8_0, Q4_0, Q4A with offsets).
bool qgemm_supported(const DeviceMatrix& w, const float* x);
// Whether the mode sends w's format to the kernel.
bool qgemm_takes(const DeviceMatrix& w);

// y[t, r] (+)= sum_c w[r, c] * x[t, c] + bias[r] for t < n_tokens: x [n_tokens, w.cols] fp32,
// y [n_tokens, ldy] fp32, bias [w.rows] or null; accumulate adds to y. Both operands are rounded
// to bf16 (weights after dequantization in fp32), the sums are fp32.
void qgemm(const DeviceMatrix& w, const float* x, int64_t n_tokens, float* y, int64_t ldy,
           const float* bias, bool accumulate, cudaStream_t s);

}  // namespace jinx::cuda

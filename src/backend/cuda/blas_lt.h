// BF16 GEMMs through cuBLASLt (blas_lt.cpp): the bias added in the GEMM's epilogue (no kernel
// of its own), an algorithm chosen once per shape by cuBLASLt's heuristic and kept.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

namespace jinx::cuda {

// Whether matmul() tries cuBLASLt first for its BF16 GEMMs (JINX_CUBLASLT=0 at start: never;
// cublasGemmEx then does them, the bias a kernel of its own).
bool blas_lt_enabled();
void set_blas_lt_enabled(bool on);
// GEMMs cuBLASLt has done in this process (tests check that it, not the fallback, ran).
int64_t blas_lt_gemms();

// y[t, r] (+)= sum_c w[r, c] * x[t, c] + bias[r] for r < rows, t < n, c < k: w bf16 rows of lda
// elements, x bf16 [n, k], y fp32 [n, ldy], bias fp32 [rows] or null, fp32 sums; accumulate
// adds to y. workspace: device memory cuBLASLt may use (null / 0: none). False, having done
// nothing, where cuBLASLt has no algorithm for it or refuses the call (the caller then uses
// cuBLAS); every shape is asked once.
bool blas_lt_gemm(const void* w, int64_t lda, const void* x, int64_t rows, int64_t n, int64_t k,
                  float* y, int64_t ldy, const float* bias, bool accumulate, void* workspace,
                  size_t workspace_bytes, cudaStream_t s);

}  // namespace jinx::cuda

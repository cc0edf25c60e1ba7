// The decode GEMV of matmul.cu compiled at run time (NVRTC) for the shapes a model uses: rows,
// columns and row stride become compile-time constants (the column loop unrolls fully, strides
// are immediates); the code and arithmetic are those of the precompiled kernel (both are
// backend/cuda/gemv.cuh). On by default (JINX_NVRTC=0 turns it off: measured on an H200, batch-1
// decode of the Qwen2-0.5B shape ran 13-19% faster with it, bench/RESULTS.md); without NVRTC, or
// when a build fails, matmul() keeps the precompiled kernel (said once in the log).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace jinx::cuda {

// One GEMV shape: weight format (gemv::Weight: 0 BF16, 1 Q8_0, 2 Q4_0, 3 Q4A), the matrix
// [rows, cols] with row_bytes between rows, and warps per row (1 or 4, as matmul.cu picks).
struct GemvJitShape {
  int weight = 0;
  int64_t rows = 0, cols = 0, row_bytes = 0;
  int wpr = 1;
  bool gated = false;  // [gate; up] stacked, the output silu(gate) * up (gemv.cuh's GATED)
};

// The GEMV's chunk loads per lane in flight (gemv.cuh's G) for a row of `cols` columns taken by
// `wpr` warps: BF16 4 where that covers the row in one group (32 * 8 * wpr columns per load),
// else 8; the quantized formats (weight != 0: 8-byte chunks, few registers) 8. The precompiled
// and the run-time compiled kernels choose alike.
inline int gemv_group(int weight, int64_t cols, int wpr) {
  return weight == 0 && cols <= 4 * 32 * 8 * static_cast<int64_t>(wpr) ? 4 : 8;
}

// The loaded kernels of one shape, for 1..8 tokens (kernel[nt - 1]): cudaKernel_t handles as
// the runtime's launch functions take them. Kept loaded for the life of the process.
struct GemvJitKernels {
  const void* kernel[8] = {};
};

// Whether matmul() uses the run-time compiled GEMV: unless JINX_NVRTC=0 in the environment (read
// once), or as last set by gemv_jit_enable() (for A/B comparisons in one process).
bool gemv_jit_enabled();
void gemv_jit_enable(bool on);

// The whole program for one shape (gemv.cuh followed by one extern "C" kernel per token count,
// named gemv_jit_kernel_name(nt)), the NVRTC options it is built with (the arch comes apart),
// and the program name used in NVRTC's messages. Throws jinx::Error for a shape the kernel
// cannot take (cols % 32, row_bytes % 16, rows, wpr).
std::string gemv_jit_source(const GemvJitShape& s);
std::string gemv_jit_kernel_name(int n_tokens);
std::vector<std::string> gemv_jit_options();
std::string gemv_jit_program_name(const GemvJitShape& s);

// The arch NVRTC builds for on this device: "sm_<major><minor>", "sm_90a" on compute 9.0.
std::string device_arch(int device);

// The kernels of shape s on the current device, built now (from the kernel cache or compiled,
// then loaded) if build is true; null when the JIT is unavailable, failed for this shape
// (logged once), or not built yet and build is false (also logged once).
const GemvJitKernels* gemv_jit_kernels(const GemvJitShape& s, bool build);

// For a description of the executor: "" while the JIT is off, else how many shapes were built
// and failed so far (or why NVRTC is unavailable).
std::string gemv_jit_describe();

}  // namespace jinx::cuda

// Weight x activation products. Decode (a few tokens): one warp per output row streams the row
// once with 16-byte loads and dequantizes in registers, for up to kGemvMaxTokens tokens at a
// time; that is the memory-bound case and the one batch-1 decode lives in. Prefill and large
// batches: quantized weights on the tensor-core GEMM that dequantizes them in shared memory
// (qgemm.cu), BF16 weights on cuBLASLt with the bias in its epilogue (blas_lt.cpp; cuBLAS where
// it has no algorithm), activations rounded to bf16 in scratch, fp32 sums.
#include <cublas_v2.h>

#include <atomic>
#include <cstdlib>
#include <string>

#include "backend/cuda/blas_lt.h"
#include "backend/cuda/common.cuh"
#include "backend/cuda/gemv.cuh"
#include "backend/cuda/gemv_jit.h"
#include "backend/cuda/qgemm.h"
#include "backend/cuda/quant.cuh"
#include "core/check.h"

namespace jinx::cuda {

using namespace detail;

bool supported_weight_dtype(DType t) {
  return t == DType::BF16 || t == DType::Q8_0 || t == DType::Q4_0 || t == kQ4A;
}

namespace {

constexpr int kRowsPerBlock = gemv::kRowsPerBlock;  // warps per block, one output row each
static_assert(int(gemv::kPlain) == MatmulInput::kPlain &&
              int(gemv::kRmsNorm) == MatmulInput::kRmsNorm &&
              int(gemv::kSiluMul) == MatmulInput::kSiluMul);
using GemvIo = gemv::Io;

// A/B switch (JINX_GEMV_ROW_PAIRS=1, or set_gemv_row_pairs()): single-token precompiled GEMVs
// take two adjacent rows per warp (each input chunk read once for both). Off by default: not
// yet measured.
std::atomic<bool>& row_pairs_switch() {
  static std::atomic<bool> on{[] {
    const char* v = std::getenv("JINX_GEMV_ROW_PAIRS");
    return v != nullptr && std::string(v) == "1";
  }()};
  return on;
}
bool gemv_row_pairs() {
  return row_pairs_switch().load(std::memory_order_relaxed);
}

// Input rows a block may stage in shared memory (the default dynamic limit, no opt-in).
constexpr int64_t kMaxStageBytes = 48 * 1024;

// The precompiled GEMV, for any shape (backend/cuda/gemv.cuh; gemv_jit.h builds the same code
// for fixed shapes at run time).
template <gemv::Weight D, int NT, int WPR, int MODE, int G>
__global__ void gemv_kernel(gemv::Matrix w, const float* x, float* y, int64_t ldy,
                            const float* bias, GemvIo io) {
  gemv::gemv_block<D, NT, WPR, MODE, G>(gemv::RuntimeShape{w.rows, w.cols, w.row_bytes}, w, x, y,
                                         ldy, bias, io);
}

// Any shape: one element at a time (odd column counts; correctness over speed).
__global__ void gemv_scalar_kernel(DeviceMatrix w, const float* x, int64_t n_tokens, float* y,
                                   int64_t ldy, const float* bias, bool accumulate) {
  pdl_begin();
  const int lane = threadIdx.x & 31;
  const int64_t row = blockIdx.x * static_cast<int64_t>(kRowsPerBlock) + (threadIdx.x >> 5);
  if (row >= w.rows) return;
  for (int64_t t = 0; t < n_tokens; ++t) {
    float s = 0.0f;
    for (int64_t c = lane; c < w.cols; c += 32) s += load_weight(w, row, c) * x[t * w.cols + c];
    s = warp_sum(s);
    if (lane == 0) {
      const float v = bias ? s + bias[row] : s;
      y[t * ldy + row] = accumulate ? y[t * ldy + row] + v : v;
    }
  }
}

__global__ void dequant_bf16_kernel(DeviceMatrix w, __nv_bfloat16* out) {
  pdl_begin();
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= w.rows * w.cols) return;
  out[i] = __float2bfloat16_rn(load_weight(w, i / w.cols, i % w.cols));
}

gemv::Matrix gemv_matrix(const DeviceMatrix& w) {
  return {w.data, w.scales, w.offsets, w.rows, w.cols, static_cast<int64_t>(w.row_bytes)};
}

// A run-time compiled GEMV (gemv_jit.h) launched as launch() launches the precompiled one:
// cudaLaunchKernelEx with programmatic stream serialization where enabled, so that it can be
// captured into a CUDA graph like every other kernel.
void launch_jit(const void* kernel, unsigned grid, size_t smem, cudaStream_t s, gemv::Matrix w,
                const float* x, float* y, int64_t ldy, const float* bias, GemvIo io) {
  void* args[] = {&w, &x, &y, &ldy, &bias, &io};
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[0].val.programmaticStreamSerializationAllowed = 1;
  cudaLaunchConfig_t cfg{};
  cfg.gridDim = dim3(grid);
  cfg.blockDim = dim3(gemv::kThreads);
  cfg.dynamicSmemBytes = smem;
  cfg.stream = s;
  cfg.attrs = attr;
  cfg.numAttrs = pdl_enabled() ? 1 : 0;
  cudaError_t e = cudaLaunchKernelExC(&cfg, kernel, args);
  if (e != cudaSuccess && cfg.numAttrs == 1) {
    cudaGetLastError();
    pdl_disable();
    cfg.numAttrs = 0;
    e = cudaLaunchKernelExC(&cfg, kernel, args);
  }
  check(e, "gemv (run-time compiled)");
}

// Blocks of a GEMV of w in this mode (gemv.cuh's gemv_block: a warp's, or WPR warps', unit is
// a row, a gate/up pair or a pair of rows).
unsigned gemv_grid(const DeviceMatrix& w, int mode, int wpr) {
  const int64_t units = mode == gemv::kGated     ? w.rows / 2
                        : mode == gemv::kRowPair ? (w.rows + 1) / 2
                                                 : w.rows;
  return blocks_for(units, kRowsPerBlock / wpr);
}

// The precompiled kernel of this mode: G = 4 or 8 loads in flight per lane (gemv_group; the
// quantized kernels always 8).
template <gemv::Weight D, int NT, int WPR, int MODE>
void launch_precompiled(const DeviceMatrix& w, const float* x, float* y, int64_t ldy,
                        const float* bias, const GemvIo& io, size_t smem, cudaStream_t s) {
  const unsigned grid = gemv_grid(w, MODE, WPR);
  if constexpr (D == gemv::Weight::kBF16) {
    if (gemv_group(0, w.cols, WPR) == 4) {
      launch(gemv_kernel<D, NT, WPR, MODE, 4>, grid, 32 * kRowsPerBlock, smem, s, "gemv",
             gemv_matrix(w), x, y, ldy, bias, io);
      return;
    }
  }
  launch(gemv_kernel<D, NT, WPR, MODE, 8>, grid, 32 * kRowsPerBlock, smem, s, "gemv",
         gemv_matrix(w), x, y, ldy, bias, io);
}

// jit: the run-time compiled kernels for this matrix's shape, or null (precompiled).
template <gemv::Weight D, int NT, int WPR, bool GATED>
void launch_gemv_nt(const DeviceMatrix& w, const float* x, float* y, int64_t ldy, const float* bias,
                    const GemvIo& io, const GemvJitKernels* jit, cudaStream_t s) {
  const size_t smem =
      io.kind == MatmulInput::kPlain ? 0 : static_cast<size_t>(NT * w.cols) * sizeof(float);
  if (jit != nullptr) {
    launch_jit(jit->kernel[NT - 1], gemv_grid(w, GATED ? gemv::kGated : gemv::kOneRow, WPR), smem,
               s, gemv_matrix(w), x, y, ldy, bias, io);
    return;
  }
  if constexpr (GATED) {
    launch_precompiled<D, NT, WPR, gemv::kGated>(w, x, y, ldy, bias, io, smem, s);
  } else if constexpr (NT == 1) {
    if (gemv_row_pairs()) {
      launch_precompiled<D, 1, WPR, gemv::kRowPair>(w, x, y, ldy, bias, io, smem, s);
    } else {
      launch_precompiled<D, 1, WPR, gemv::kOneRow>(w, x, y, ldy, bias, io, smem, s);
    }
  } else {
    launch_precompiled<D, NT, WPR, gemv::kOneRow>(w, x, y, ldy, bias, io, smem, s);
  }
}

template <gemv::Weight D, int WPR, bool GATED>
void launch_gemv_split(const DeviceMatrix& w, const float* x, int64_t n, float* y, int64_t ldy,
                       const float* bias, const GemvIo& io, const GemvJitKernels* jit,
                       cudaStream_t s) {
  const int64_t x_ld = io.kind == MatmulInput::kSiluMul ? 2 * w.cols : w.cols;
  for (int64_t t0 = 0; t0 < n; t0 += kGemvMaxTokens) {
    const int64_t nt = std::min<int64_t>(kGemvMaxTokens, n - t0);
    const float* xt = x + t0 * x_ld;
    float* yt = y + t0 * ldy;
    switch (nt) {
      case 1:
        launch_gemv_nt<D, 1, WPR, GATED>(w, xt, yt, ldy, bias, io, jit, s);
        break;
      case 2:
        launch_gemv_nt<D, 2, WPR, GATED>(w, xt, yt, ldy, bias, io, jit, s);
        break;
      case 3:
        launch_gemv_nt<D, 3, WPR, GATED>(w, xt, yt, ldy, bias, io, jit, s);
        break;
      case 4:
        launch_gemv_nt<D, 4, WPR, GATED>(w, xt, yt, ldy, bias, io, jit, s);
        break;
      case 5:
        launch_gemv_nt<D, 5, WPR, GATED>(w, xt, yt, ldy, bias, io, jit, s);
        break;
      case 6:
        launch_gemv_nt<D, 6, WPR, GATED>(w, xt, yt, ldy, bias, io, jit, s);
        break;
      case 7:
        launch_gemv_nt<D, 7, WPR, GATED>(w, xt, yt, ldy, bias, io, jit, s);
        break;
      default:
        launch_gemv_nt<D, 8, WPR, GATED>(w, xt, yt, ldy, bias, io, jit, s);
        break;
    }
  }
}

// Fewer rows than ~8 warps per SM's worth: four warps per row.
constexpr int64_t kSplitBelowRows = 8192;

int gemv_warps_per_row(const DeviceMatrix& w) {
  return w.rows < kSplitBelowRows ? 4 : 1;
}

template <gemv::Weight D, bool GATED>
void launch_gemv(const DeviceMatrix& w, const float* x, int64_t n, float* y, int64_t ldy,
                 const float* bias, const GemvIo& io, const GemvJitKernels* jit, cudaStream_t s) {
  if (gemv_warps_per_row(w) == 4) {
    launch_gemv_split<D, 4, GATED>(w, x, n, y, ldy, bias, io, jit, s);
  } else {
    launch_gemv_split<D, 1, GATED>(w, x, n, y, ldy, bias, io, jit, s);
  }
}

template <bool GATED>
void launch_gemv_any(const DeviceMatrix& w, const float* x, int64_t n, float* y, int64_t ldy,
                     const float* bias, const GemvIo& io, const GemvJitKernels* jit,
                     cudaStream_t s) {
  if (w.dtype == DType::BF16) {
    launch_gemv<gemv::Weight::kBF16, GATED>(w, x, n, y, ldy, bias, io, jit, s);
  } else if (w.dtype == DType::Q8_0) {
    launch_gemv<gemv::Weight::kQ8_0, GATED>(w, x, n, y, ldy, bias, io, jit, s);
  } else if (w.dtype == DType::Q4_0) {
    launch_gemv<gemv::Weight::kQ4_0, GATED>(w, x, n, y, ldy, bias, io, jit, s);
  } else {
    launch_gemv<gemv::Weight::kQ4A, GATED>(w, x, n, y, ldy, bias, io, jit, s);
  }
}

gemv::Weight gemv_weight(DType t) {
  return t == DType::BF16   ? gemv::Weight::kBF16
         : t == DType::Q8_0 ? gemv::Weight::kQ8_0
         : t == DType::Q4_0 ? gemv::Weight::kQ4_0
                            : gemv::Weight::kQ4A;
}

GemvJitShape jit_shape(const DeviceMatrix& w, bool gated) {
  return {static_cast<int>(gemv_weight(w.dtype)), w.rows, w.cols, static_cast<int64_t>(w.row_bytes),
          gemv_warps_per_row(w), gated};
}

// The run-time compiled GEMVs for w (unless JINX_NVRTC=0), built here unless the stream is being
// captured into a graph (nothing may be compiled or loaded then: matmul_prepare() builds them
// before capture); null: the precompiled kernel.
const GemvJitKernels* jit_kernels(const DeviceMatrix& w, bool gated, cudaStream_t s) {
  if (!gemv_jit_enabled()) return nullptr;
  cudaStreamCaptureStatus st = cudaStreamCaptureStatusNone;
  const bool capturing =
      cudaStreamIsCapturing(s, &st) != cudaSuccess || st != cudaStreamCaptureStatusNone;
  return gemv_jit_kernels(jit_shape(w, gated), !capturing);
}

void check_blas(cublasStatus_t st, const char* what) {
  if (st != CUBLAS_STATUS_SUCCESS) fail("cuBLAS: ", what, " failed (status ", int(st), ")");
}

bool vector_path(const DeviceMatrix& w, const float* x) {
  return w.cols % 32 == 0 && w.row_bytes % 16 == 0 &&
         reinterpret_cast<uintptr_t>(w.data) % 16 == 0 && reinterpret_cast<uintptr_t>(x) % 16 == 0;
}

// The input transform `in` for a matmul of w: inside the GEMV where it can be (the returned
// Io says so), else run now into in.tmp, which x then points to.
GemvIo input_transform(const DeviceMatrix& w, const float*& x, int64_t n_tokens,
                       const MatmulInput& in, cudaStream_t s) {
  const bool fuse = matmul_fuses_input(w, in, n_tokens) && vector_path(w, x);
  if (in.kind != MatmulInput::kPlain && !fuse) {
    JINX_CHECK(in.tmp != nullptr, "cuda matmul: an unfused input transform needs tmp");
    if (in.kind == MatmulInput::kRmsNorm) {
      rmsnorm(x, in.norm_w, in.tmp, n_tokens, w.cols, in.eps, s);
    } else {
      silu_mul(x, n_tokens, w.cols, in.tmp, s);
    }
    x = in.tmp;
  }
  GemvIo io{};
  io.kind = fuse ? in.kind : MatmulInput::kPlain;
  io.norm_w = in.norm_w;
  io.eps = in.eps;
  return io;
}

}  // namespace

void set_gemv_row_pairs(bool on) {
  row_pairs_switch().store(on);
}

bool matmul_gates(const DeviceMatrix& w, int64_t n_tokens) {
  return supported_weight_dtype(w.dtype) && n_tokens > 0 && n_tokens <= kGemvMaxTokens &&
         w.rows > 0 && w.rows % 2 == 0 && w.cols % 32 == 0 && w.row_bytes % 16 == 0 &&
         reinterpret_cast<uintptr_t>(w.data) % 16 == 0;
}

void matmul_gated_silu(const DeviceMatrix& w, const float* x, int64_t n_tokens, float* y,
                       int64_t ldy, const MatmulContext& ctx, const float* bias,
                       const MatmulInput& in) {
  JINX_CHECK(matmul_gates(w, n_tokens), "cuda matmul_gated_silu: ", w.rows, "x", w.cols, " ",
             name(w.dtype), " for ", n_tokens, " tokens is not a GEMV of stacked [gate; up]");
  JINX_CHECK(ldy >= w.rows / 2, "cuda matmul_gated_silu: ldy ", ldy, " < ", w.rows / 2);
  JINX_CHECK(in.kind != MatmulInput::kSiluMul, "cuda matmul_gated_silu: a SiLU input");
  JINX_CHECK(in.kind != MatmulInput::kRmsNorm || in.norm_w != nullptr,
             "cuda matmul: a norm without weights");
  JINX_CHECK(w.dtype != kQ4A || (w.scales && w.offsets), "cuda matmul: Q4A without offsets");
  cudaStream_t s = ctx.stream;
  const GemvIo io = input_transform(w, x, n_tokens, in, s);
  JINX_CHECK(reinterpret_cast<uintptr_t>(x) % 16 == 0, "cuda matmul_gated_silu: unaligned input");
  launch_gemv_any<true>(w, x, n_tokens, y, ldy, bias, io, jit_kernels(w, true, s), s);
}

bool matmul_uses_gemv(const DeviceMatrix& w, int64_t n_tokens) {
  if (n_tokens <= kGemvMaxTokens) return true;
  // Bytes per weight in 32nds: Q8_0 34, Q4_0 18, Q4A 24 (quants + scales (+ offsets)).
  const int64_t b32 = w.dtype == DType::Q8_0 ? 34 : w.dtype == DType::Q4_0 ? 18
                      : w.dtype == kQ4A      ? 24
                                             : 0;
  if (b32 == 0) return false;
  const int64_t passes = (n_tokens + kGemvMaxTokens - 1) / kGemvMaxTokens;
  return passes * b32 <= b32 + 4 * 32;  // passes * b <= b + 4
}

size_t matmul_scratch_bytes(const DeviceMatrix& w, int64_t n_tokens) {
  if (matmul_uses_gemv(w, n_tokens) || qgemm_takes(w)) return 0;
  size_t b = static_cast<size_t>(n_tokens * w.cols) * 2 + 256;
  if (w.dtype != DType::BF16) b += static_cast<size_t>(w.rows * w.cols) * 2;
  return b;
}

bool matmul_fuses_input(const DeviceMatrix& w, const MatmulInput& in, int64_t n_tokens) {
  return in.kind != MatmulInput::kPlain && in.fuse && n_tokens <= kGemvMaxTokens &&
         w.cols % 32 == 0 && w.row_bytes % 16 == 0 &&
         std::min(n_tokens, kGemvMaxTokens) * w.cols * static_cast<int64_t>(sizeof(float)) <=
             kMaxStageBytes;
}

void matmul_prepare(const DeviceMatrix& w, bool gated) {
  static_assert(kGemvMaxTokens == sizeof(GemvJitKernels::kernel) / sizeof(void*));
  if (!gemv_jit_enabled() || !supported_weight_dtype(w.dtype) || w.rows <= 0) return;
  if (w.cols % 32 != 0 || w.row_bytes % 16 != 0) return;  // the scalar kernel's shapes
  if (gated && w.rows % 2 != 0) return;
  gemv_jit_kernels(jit_shape(w, gated), true);
}

void matmul(const DeviceMatrix& w, const float* x, int64_t n_tokens, float* y, int64_t ldy,
            const MatmulContext& ctx, const float* bias, const MatmulInput& in, bool accumulate) {
  if (n_tokens <= 0 || w.rows <= 0) return;
  JINX_CHECK(supported_weight_dtype(w.dtype), "cuda matmul: weight dtype ", name(w.dtype));
  JINX_CHECK(ldy >= w.rows, "cuda matmul: ldy ", ldy, " < rows ", w.rows);
  JINX_CHECK(in.kind != MatmulInput::kRmsNorm || in.norm_w != nullptr,
             "cuda matmul: a norm without weights");
  JINX_CHECK(w.dtype != kQ4A || (w.scales && w.offsets), "cuda matmul: Q4A without offsets");
  cudaStream_t s = ctx.stream;
  GemvIo io = input_transform(w, x, n_tokens, in, s);
  io.accumulate = accumulate;
  const bool few_tokens = matmul_uses_gemv(w, n_tokens);
  if (!few_tokens && qgemm_takes(w) && qgemm_supported(w, x)) {
    qgemm(w, x, n_tokens, y, ldy, bias, accumulate, s);
    return;
  }
  // The GEMV also takes what the GEMM kernel would but cannot (an unaligned x: scratch was not
  // sized for cuBLAS), one pass per kGemvMaxTokens tokens.
  if (few_tokens || ctx.blas == nullptr || qgemm_takes(w)) {
    if (!vector_path(w, x)) {
      launch(gemv_scalar_kernel, blocks_for(w.rows, kRowsPerBlock), 32 * kRowsPerBlock, 0, s,
             "gemv_scalar", w, x, n_tokens, y, ldy, bias, accumulate);
    } else {
      launch_gemv_any<false>(w, x, n_tokens, y, ldy, bias, io, jit_kernels(w, false, s), s);
    }
    return;
  }
  JINX_CHECK(ctx.scratch_bytes >= matmul_scratch_bytes(w, n_tokens),
             "cuda matmul: scratch too small");
  auto* x16 = static_cast<__nv_bfloat16*>(ctx.scratch);
  convert_f32_to_bf16(x, reinterpret_cast<uint16_t*>(x16), n_tokens * w.cols, s);
  const void* a = w.data;
  int64_t lda = static_cast<int64_t>(w.row_bytes / 2);
  if (w.dtype != DType::BF16) {
    // After the activations, 256-byte aligned.
    const size_t off = (static_cast<size_t>(n_tokens * w.cols) * 2 + 255) / 256 * 256;
    auto* w16 = reinterpret_cast<__nv_bfloat16*>(static_cast<uint8_t*>(ctx.scratch) + off);
    launch(dequant_bf16_kernel, blocks_for(w.rows * w.cols, 256), 256, 0, s, "dequant_bf16", w,
           w16);
    a = w16;
    lda = w.cols;
  }
  if (blas_lt_gemm(a, lda, x16, w.rows, n_tokens, w.cols, y, ldy, bias, accumulate, ctx.workspace,
                   ctx.workspace_bytes, s)) {
    return;
  }
  // Column-major view: y^T [rows, n] = W^T' ... i.e. C(rows x n) = A^T(rows x cols) * B(cols x n)
  // with A = W (row-major [rows, cols] = column-major [cols, rows]) and B = x likewise.
  const float alpha = 1.0f, beta = accumulate ? 1.0f : 0.0f;
  check_blas(cublasSetStream(ctx.blas, s), "set stream");
  check_blas(
      cublasGemmEx(ctx.blas, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(w.rows),
                   static_cast<int>(n_tokens), static_cast<int>(w.cols), &alpha, a, CUDA_R_16BF,
                   static_cast<int>(lda), x16, CUDA_R_16BF, static_cast<int>(w.cols), &beta, y,
                   CUDA_R_32F, static_cast<int>(ldy), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
      "gemm");
  if (bias) add_bias(y, ldy, bias, n_tokens, w.rows, s);
}

}  // namespace jinx::cuda

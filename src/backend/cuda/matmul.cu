// Weight x activation products. Decode (a few tokens): one warp per output row streams the row
// once with 16-byte loads and dequantizes in registers, for up to kGemvMaxTokens tokens at a
// time; that is the memory-bound case and the one batch-1 decode lives in. Prefill and large
// batches: cuBLAS on bf16 (quantized weights are expanded to bf16 in scratch first), fp32
// accumulation.
#include <cublas_v2.h>

#include "backend/cuda/common.cuh"
#include "backend/cuda/quant.cuh"
#include "core/check.h"

namespace jinx::cuda {

using namespace detail;

bool supported_weight_dtype(DType t) {
  return t == DType::BF16 || t == DType::Q8_0 || t == DType::Q4_0 || t == kQ4A;
}

namespace {

constexpr int kRowsPerBlock = 4;  // warps per block, one output row each

__device__ __forceinline__ void bf16x8_to_f32(const uint4& u, float* f) {
  const __nv_bfloat162* h = reinterpret_cast<const __nv_bfloat162*>(&u);
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const float2 p = __bfloat1622float2(h[i]);
    f[2 * i] = p.x;
    f[2 * i + 1] = p.y;
  }
}

// NV (values per chunk) is a template argument so that the loops unroll and w stays in
// registers (a runtime count puts it in local memory).
template <int NT, int NV>
__device__ __forceinline__ void dot_chunk(const float* w, const float* x, int64_t cols, int64_t c,
                                          float* acc) {
#pragma unroll
  for (int t = 0; t < NT; ++t) {
    const float* xt = x + t * cols + c;
    float s = 0.0f;
#pragma unroll
    for (int i = 0; i < NV; i += 4) {
      const float4 v = *reinterpret_cast<const float4*>(xt + i);
      s += w[i] * v.x + w[i + 1] * v.y + w[i + 2] * v.z + w[i + 3] * v.w;
    }
    acc[t] += s;
  }
}

// What the GEMV does around its dot products (the same for every block): the input transform
// (MatmulInput) and whether y accumulates.
struct GemvIo {
  int kind = MatmulInput::kPlain;
  const float* norm_w = nullptr;
  float eps = 0.0f;
  bool accumulate = false;
};

// Input rows a block may stage in shared memory (the default dynamic limit, no opt-in).
constexpr int64_t kMaxStageBytes = 48 * 1024;

// The block's NT input rows, transformed as io.kind says, into xs [NT, cols] (shared memory).
// A block reads x once either way (its warps would otherwise each read it through L1); the
// arithmetic is that of rmsnorm_kernel / silu_mul_kernel, value for value (the norm's sum of
// squares is added in another order). Every thread of the block must call it.
template <int NT>
__device__ void stage_input(const float* x, int64_t cols, const GemvIo& io, float* xs) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  float ss[NT];
#pragma unroll
  for (int t = 0; t < NT; ++t) ss[t] = 0.0f;
  for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) {
#pragma unroll
    for (int t = 0; t < NT; ++t) {
      float v;
      if (io.kind == MatmulInput::kSiluMul) {
        const float g = x[t * 2 * cols + c];
        v = g / (1.0f + expf(-g)) * x[t * 2 * cols + cols + c];
      } else {
        v = x[t * cols + c];
        ss[t] += v * v;
      }
      xs[t * cols + c] = v;
    }
  }
  if (io.kind == MatmulInput::kRmsNorm) {
    __shared__ float part[NT][kRowsPerBlock];
#pragma unroll
    for (int t = 0; t < NT; ++t) {
      const float s = warp_sum(ss[t]);
      if (lane == 0) part[t][warp] = s;
    }
    __syncthreads();
    float inv[NT];
#pragma unroll
    for (int t = 0; t < NT; ++t) {
      float total = 0.0f;
      for (int k = 0; k < kRowsPerBlock; ++k) total += part[t][k];
      inv[t] = rsqrtf(total / static_cast<float>(cols) + io.eps);
    }
    // Each thread rescales the elements it wrote.
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) {
#pragma unroll
      for (int t = 0; t < NT; ++t) xs[t * cols + c] = xs[t * cols + c] * inv[t] * io.norm_w[c];
    }
  }
  __syncthreads();
}

// Vector path: cols % 32 == 0, x 16-byte aligned (the callers' buffers are). WPR warps share
// a row (each a slice of the columns, summed through shared memory): matrices with few rows
// (the down and output projections) would otherwise leave most of the GPU idle. With an input
// transform the block first stages its input rows (dynamic shared memory, NT * cols floats).
template <DType D, int NT, int WPR>
__global__ void gemv_kernel(DeviceMatrix w, const float* x, float* y, int64_t ldy,
                            const float* bias, GemvIo io) {
  pdl_begin();
  extern __shared__ __align__(16) float xs[];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, sub = warp % WPR;
  const int64_t row = blockIdx.x * static_cast<int64_t>(kRowsPerBlock / WPR) + warp / WPR;
  const bool valid = row < w.rows;
  if (io.kind != MatmulInput::kPlain) {
    stage_input<NT>(x, w.cols, io, xs);
    x = xs;
  }
  if (WPR == 1 && !valid) return;
  const uint8_t* base = static_cast<const uint8_t*>(w.data) + row * w.row_bytes;
  float acc[NT];
#pragma unroll
  for (int t = 0; t < NT; ++t) acc[t] = 0.0f;
  float wf[32];
  if constexpr (D == DType::BF16) {
    // Four 16-byte loads in flight per lane before any math: decode is latency-bound on the
    // loads, not on the FMAs.
    constexpr int64_t kStep = 32 * 8 * WPR;
    int64_t c = valid ? (sub * 32 + lane) * 8 : w.cols;
    for (; c + 3 * kStep < w.cols; c += 4 * kStep) {
      uint4 u[4];
#pragma unroll
      for (int k = 0; k < 4; ++k)
        u[k] = *reinterpret_cast<const uint4*>(base + (c + k * kStep) * 2);
#pragma unroll
      for (int k = 0; k < 4; ++k) {
        bf16x8_to_f32(u[k], wf);
        dot_chunk<NT, 8>(wf, x, w.cols, c + k * kStep, acc);
      }
    }
    for (; c < w.cols; c += kStep) {
      bf16x8_to_f32(*reinterpret_cast<const uint4*>(base + c * 2), wf);
      dot_chunk<NT, 8>(wf, x, w.cols, c, acc);
    }
  } else {
    const int64_t nb = w.cols / kQBlock;
    const __half* sc = static_cast<const __half*>(w.scales) + row * nb;
    // Q4A: fp32 scale and offset per block (x = s * q + m).
    const float *sf = nullptr, *of = nullptr;
    if constexpr (D == kQ4A) {
      sf = static_cast<const float*>(w.scales) + row * nb;
      of = static_cast<const float*>(w.offsets) + row * nb;
    }
    constexpr int kQBytes = D == DType::Q8_0 ? 32 : 16;
    // Two blocks' loads in flight per lane.
    for (int64_t b0 = valid ? sub * 32 + lane : nb; b0 < nb; b0 += 64 * WPR) {
      uint4 q[2][2];
      float d[2], m[2];
#pragma unroll
      for (int k = 0; k < 2; ++k) {
        const int64_t b = b0 + 32 * WPR * k;
        if (b < nb) {
          if constexpr (D == kQ4A) {
            d[k] = sf[b];
            m[k] = of[b];
          } else {
            d[k] = __half2float(sc[b]);
          }
          q[k][0] = *reinterpret_cast<const uint4*>(base + b * kQBytes);
          if constexpr (D == DType::Q8_0)
            q[k][1] = *reinterpret_cast<const uint4*>(base + b * kQBytes + 16);
        }
      }
#pragma unroll
      for (int k = 0; k < 2; ++k) {
        const int64_t b = b0 + 32 * WPR * k;
        if (b >= nb) break;
        if constexpr (D == DType::Q8_0) {
          const int8_t* lo = reinterpret_cast<const int8_t*>(&q[k][0]);
          const int8_t* hi = reinterpret_cast<const int8_t*>(&q[k][1]);
#pragma unroll
          for (int i = 0; i < 16; ++i) {
            wf[i] = d[k] * static_cast<float>(lo[i]);
            wf[i + 16] = d[k] * static_cast<float>(hi[i]);
          }
        } else if constexpr (D == kQ4A) {
          const uint8_t* qb = reinterpret_cast<const uint8_t*>(&q[k][0]);
#pragma unroll
          for (int i = 0; i < 16; ++i) {
            wf[i] = fmaf(d[k], static_cast<float>(qb[i] & 15), m[k]);
            wf[i + 16] = fmaf(d[k], static_cast<float>(qb[i] >> 4), m[k]);
          }
        } else {  // Q4_0
          const uint8_t* qb = reinterpret_cast<const uint8_t*>(&q[k][0]);
#pragma unroll
          for (int i = 0; i < 16; ++i) {
            wf[i] = d[k] * static_cast<float>((qb[i] & 15) - 8);
            wf[i + 16] = d[k] * static_cast<float>((qb[i] >> 4) - 8);
          }
        }
        dot_chunk<NT, 32>(wf, x, w.cols, b * kQBlock, acc);
      }
    }
  }
  if constexpr (WPR == 1) {
#pragma unroll
    for (int t = 0; t < NT; ++t) {
      const float s = warp_sum(acc[t]);
      if (lane == 0) {
        const float v = bias ? s + bias[row] : s;
        y[t * ldy + row] = io.accumulate ? y[t * ldy + row] + v : v;
      }
    }
  } else {
    __shared__ float part[kRowsPerBlock][NT];
#pragma unroll
    for (int t = 0; t < NT; ++t) {
      const float s = warp_sum(acc[t]);
      if (lane == 0) part[warp][t] = s;
    }
    __syncthreads();
    if (valid && sub == 0 && lane < NT) {
      float s = 0.0f;
#pragma unroll
      for (int k = 0; k < WPR; ++k) s += part[warp + k][lane];
      const float v = bias ? s + bias[row] : s;
      y[lane * ldy + row] = io.accumulate ? y[lane * ldy + row] + v : v;
    }
  }
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

template <DType D, int NT, int WPR>
void launch_gemv_nt(const DeviceMatrix& w, const float* x, float* y, int64_t ldy, const float* bias,
                    const GemvIo& io, cudaStream_t s) {
  const size_t smem =
      io.kind == MatmulInput::kPlain ? 0 : static_cast<size_t>(NT * w.cols) * sizeof(float);
  launch(gemv_kernel<D, NT, WPR>, blocks_for(w.rows, kRowsPerBlock / WPR), 32 * kRowsPerBlock, smem,
         s, "gemv", w, x, y, ldy, bias, io);
}

template <DType D, int WPR>
void launch_gemv_split(const DeviceMatrix& w, const float* x, int64_t n, float* y, int64_t ldy,
                       const float* bias, const GemvIo& io, cudaStream_t s) {
  const int64_t x_ld = io.kind == MatmulInput::kSiluMul ? 2 * w.cols : w.cols;
  for (int64_t t0 = 0; t0 < n; t0 += kGemvMaxTokens) {
    const int64_t nt = std::min<int64_t>(kGemvMaxTokens, n - t0);
    const float* xt = x + t0 * x_ld;
    float* yt = y + t0 * ldy;
    switch (nt) {
      case 1:
        launch_gemv_nt<D, 1, WPR>(w, xt, yt, ldy, bias, io, s);
        break;
      case 2:
        launch_gemv_nt<D, 2, WPR>(w, xt, yt, ldy, bias, io, s);
        break;
      case 3:
        launch_gemv_nt<D, 3, WPR>(w, xt, yt, ldy, bias, io, s);
        break;
      case 4:
        launch_gemv_nt<D, 4, WPR>(w, xt, yt, ldy, bias, io, s);
        break;
      case 5:
        launch_gemv_nt<D, 5, WPR>(w, xt, yt, ldy, bias, io, s);
        break;
      case 6:
        launch_gemv_nt<D, 6, WPR>(w, xt, yt, ldy, bias, io, s);
        break;
      case 7:
        launch_gemv_nt<D, 7, WPR>(w, xt, yt, ldy, bias, io, s);
        break;
      default:
        launch_gemv_nt<D, 8, WPR>(w, xt, yt, ldy, bias, io, s);
        break;
    }
  }
}

// Fewer rows than ~8 warps per SM's worth: four warps per row.
constexpr int64_t kSplitBelowRows = 8192;

template <DType D>
void launch_gemv(const DeviceMatrix& w, const float* x, int64_t n, float* y, int64_t ldy,
                 const float* bias, const GemvIo& io, cudaStream_t s) {
  if (w.rows < kSplitBelowRows) {
    launch_gemv_split<D, 4>(w, x, n, y, ldy, bias, io, s);
  } else {
    launch_gemv_split<D, 1>(w, x, n, y, ldy, bias, io, s);
  }
}

void check_blas(cublasStatus_t st, const char* what) {
  if (st != CUBLAS_STATUS_SUCCESS) fail("cuBLAS: ", what, " failed (status ", int(st), ")");
}

bool vector_path(const DeviceMatrix& w, const float* x) {
  return w.cols % 32 == 0 && w.row_bytes % 16 == 0 &&
         reinterpret_cast<uintptr_t>(w.data) % 16 == 0 && reinterpret_cast<uintptr_t>(x) % 16 == 0;
}

}  // namespace

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
  if (matmul_uses_gemv(w, n_tokens)) return 0;
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

void matmul(const DeviceMatrix& w, const float* x, int64_t n_tokens, float* y, int64_t ldy,
            const MatmulContext& ctx, const float* bias, const MatmulInput& in, bool accumulate) {
  if (n_tokens <= 0 || w.rows <= 0) return;
  JINX_CHECK(supported_weight_dtype(w.dtype), "cuda matmul: weight dtype ", name(w.dtype));
  JINX_CHECK(ldy >= w.rows, "cuda matmul: ldy ", ldy, " < rows ", w.rows);
  JINX_CHECK(in.kind != MatmulInput::kRmsNorm || in.norm_w != nullptr,
             "cuda matmul: a norm without weights");
  JINX_CHECK(w.dtype != kQ4A || (w.scales && w.offsets), "cuda matmul: Q4A without offsets");
  cudaStream_t s = ctx.stream;
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
  GemvIo io;
  io.kind = fuse ? in.kind : MatmulInput::kPlain;
  io.norm_w = in.norm_w;
  io.eps = in.eps;
  io.accumulate = accumulate;
  if (matmul_uses_gemv(w, n_tokens) || ctx.blas == nullptr) {
    if (!vector_path(w, x)) {
      launch(gemv_scalar_kernel, blocks_for(w.rows, kRowsPerBlock), 32 * kRowsPerBlock, 0, s,
             "gemv_scalar", w, x, n_tokens, y, ldy, bias, accumulate);
    } else if (w.dtype == DType::BF16) {
      launch_gemv<DType::BF16>(w, x, n_tokens, y, ldy, bias, io, s);
    } else if (w.dtype == DType::Q8_0) {
      launch_gemv<DType::Q8_0>(w, x, n_tokens, y, ldy, bias, io, s);
    } else if (w.dtype == DType::Q4_0) {
      launch_gemv<DType::Q4_0>(w, x, n_tokens, y, ldy, bias, io, s);
    } else {
      launch_gemv<kQ4A>(w, x, n_tokens, y, ldy, bias, io, s);
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

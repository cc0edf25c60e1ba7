// The decode GEMV (one warp per output row, or WPR warps sharing a row), written once for two
// compilers: nvcc builds it into matmul.cu for any shape (RuntimeShape), and NVRTC builds it at
// run time for one model's shapes (StaticShape: rows, columns and row stride as compile-time
// constants, so the column loop unrolls fully; backend/cuda/gemv_jit.cpp embeds this file).
// So it includes nothing and uses only what NVRTC has built in: no CUDA headers, no std.
// Both builds do the same arithmetic in the same order, so their outputs agree bit for bit
// (up to the compiler's choice of FMA contraction, which is the same for the same expression).
#pragma once

#ifndef __CUDACC_RTC__
#include <cstdint>
#endif

namespace jinx::cuda::gemv {

#ifdef __CUDACC_RTC__
using int64_t = long long;
using uint32_t = unsigned int;
using uint8_t = unsigned char;
using int8_t = signed char;
using uint16_t = unsigned short;
#endif

enum class Weight : int { kBF16 = 0, kQ8_0 = 1, kQ4_0 = 2, kQ4A = 3 };
// As MatmulInput::Kind (ops.h; matmul.cu checks they agree).
enum Input : int { kPlain = 0, kRmsNorm = 1, kSiluMul = 2 };

constexpr int kRowsPerBlock = 4;  // warps per block, one output row each (WPR warps share one)
constexpr int kThreads = 32 * kRowsPerBlock;
constexpr int kQBlock = 32;

// The weight matrix as the kernel reads it (DeviceMatrix of ops.h, without the dtype).
struct Matrix {
  const void* data;
  const void* scales;   // quantized: f16 (Q8_0, Q4_0) or fp32 (Q4A) [rows, cols / 32]
  const void* offsets;  // Q4A: fp32 [rows, cols / 32]
  int64_t rows, cols, row_bytes;
};

// What the GEMV does around its dot products (the same for every block): the input transform
// and whether y accumulates.
struct Io {
  int kind;
  const float* norm_w;
  float eps;
  bool accumulate;
};

struct RuntimeShape {
  static constexpr bool kStatic = false;
  int64_t rows, cols, row_bytes;
};
template <int64_t R, int64_t C, int64_t RB>
struct StaticShape {
  static constexpr bool kStatic = true;
  static constexpr int64_t rows = R, cols = C, row_bytes = RB;
};

// Programmatic dependent launch: as pdl_begin() of common.cuh.
__device__ __forceinline__ void wait_previous_kernel() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

__device__ __forceinline__ float lane_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// bf16 -> fp32 is exact: the 16 bits become the high half of the float.
__device__ __forceinline__ void bf16x8_to_f32(const uint4& u, float* f) {
  const uint32_t p[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    f[2 * i] = __uint_as_float(p[i] << 16);
    f[2 * i + 1] = __uint_as_float(p[i] & 0xffff0000u);
  }
}

__device__ __forceinline__ float f16_to_f32(uint16_t h) {
  float f;
  asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h));
  return f;
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

// The block's NT input rows, transformed as io.kind says, into xs [NT, cols] (shared memory).
// A block reads x once either way (its warps would otherwise each read it through L1); the
// arithmetic is that of rmsnorm_kernel / silu_mul_kernel, value for value (the norm's sum of
// squares is added in another order). Every thread of the block must call it.
template <int NT, class S>
__device__ void stage_input(const float* x, const S& sh, const Io& io, float* xs) {
  const int64_t cols = sh.cols;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  float ss[NT];
#pragma unroll
  for (int t = 0; t < NT; ++t) ss[t] = 0.0f;
  for (int64_t c = threadIdx.x; c < cols; c += kThreads) {
#pragma unroll
    for (int t = 0; t < NT; ++t) {
      float v;
      if (io.kind == kSiluMul) {
        const float g = x[t * 2 * cols + c];
        v = g / (1.0f + expf(-g)) * x[t * 2 * cols + cols + c];
      } else {
        v = x[t * cols + c];
        ss[t] += v * v;
      }
      xs[t * cols + c] = v;
    }
  }
  if (io.kind == kRmsNorm) {
    __shared__ float part[NT][kRowsPerBlock];
#pragma unroll
    for (int t = 0; t < NT; ++t) {
      const float s = lane_sum(ss[t]);
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
    for (int64_t c = threadIdx.x; c < cols; c += kThreads) {
#pragma unroll
      for (int t = 0; t < NT; ++t) xs[t * cols + c] = xs[t * cols + c] * inv[t] * io.norm_w[c];
    }
  }
  __syncthreads();
}

// Weights are read once per step: loaded around L1 (which keeps the block's input rows), without
// the coherence the inputs need (nothing writes weights while a kernel runs).
__device__ __forceinline__ uint4 load_weights(const uint8_t* p) {
  uint4 u;
  asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
               : "=r"(u.x), "=r"(u.y), "=r"(u.z), "=r"(u.w)
               : "l"(p));
  return u;
}

__device__ __forceinline__ uint2 load_weights8(const uint8_t* p) {
  uint2 u;
  asm volatile("ld.global.nc.L1::no_allocate.v2.u32 {%0, %1}, [%2];"
               : "=r"(u.x), "=r"(u.y)
               : "l"(p));
  return u;
}

// Rows are read in chunks of 8 consecutive columns, in every format: a lane's chunks are at
// c0, c0 + kStep, ... (c0 = 8 * lane, kStep = 256 columns per warp; WPR warps sharing a row
// interleave theirs), so a warp's loads of codes and of the input x are contiguous across its
// lanes (x, fp32, is read 4 bytes per weight: in blocks of 32 per lane its reads would stride 128
// bytes across the warp). Chunks are taken G at a time: a group's loads are all issued before
// any math (decode is bound by the loads' latency, not by the FMAs), predicated on being inside
// the row, so a row of up to G * kStep columns costs one memory latency whatever the lane. The
// first group is loaded before the kernel waits for its predecessor (gemv_block), so that
// latency overlaps the previous kernel's tail. G (gemv_group() of gemv_jit.h): BF16 4 where a
// row fits in one such group (fewer registers, more warps per SM), else 8. With a static shape
// the bounds fold and every loop unrolls; the chunks are added in the same order either way.
//
// A chunk as loaded: BF16 8 values; Q8_0 8 codes and the block's scale; Q4_0 / Q4A the 8 bytes
// of the block (32 values: byte i holds value i in its low and value i + 16 in its high
// nibble) whose low or high nibbles are the chunk, and the block's scale (and Q4A's offset:
// x = s * q + m).
template <Weight D>
struct Chunk {
  uint2 q;
  float d, m;
};
template <>
struct Chunk<Weight::kBF16> {
  uint4 q;
};

// Where row `row` of w starts: its codes, and its blocks' scales (and offsets).
struct RowPtr {
  const uint8_t* codes;
  const void* scales;
  const float* offsets;
};

template <Weight D>
__device__ __forceinline__ RowPtr row_ptr(const Matrix& w, int64_t row, int64_t row_bytes,
                                          int64_t cols) {
  const int64_t nb = cols / kQBlock;
  RowPtr p{static_cast<const uint8_t*>(w.data) + row * row_bytes, nullptr, nullptr};
  if constexpr (D == Weight::kQ4A) {
    p.scales = static_cast<const float*>(w.scales) + row * nb;
    p.offsets = static_cast<const float*>(w.offsets) + row * nb;
  } else if constexpr (D != Weight::kBF16) {
    p.scales = static_cast<const uint16_t*>(w.scales) + row * nb;
  }
  return p;
}

// The chunk at column c, in block b = c / 32; half: 8 for the chunks whose 4-bit codes are in
// bytes 8..15 of their block (the second and fourth of the block), else 0. A lane's chunks are
// all at the same place in their blocks (the step is a whole number of blocks), so the callers
// compute b and half once and step them, which keeps the index arithmetic out of the registers.
template <Weight D>
__device__ __forceinline__ void load_chunk(const RowPtr& r, int64_t c, int64_t b, int half,
                                           Chunk<D>& ch) {
  if constexpr (D == Weight::kBF16) {
    ch.q = load_weights(r.codes + c * 2);
  } else {
    if constexpr (D == Weight::kQ8_0) {
      ch.q = load_weights8(r.codes + c);
    } else {  // 16 bytes per block; chunks 0 and 2 in bytes 0..7, 1 and 3 in bytes 8..15
      ch.q = load_weights8(r.codes + b * 16 + half);
    }
    if constexpr (D == Weight::kQ4A) {
      ch.d = static_cast<const float*>(r.scales)[b];
      ch.m = r.offsets[b];
    } else {
      ch.d = f16_to_f32(static_cast<const uint16_t*>(r.scales)[b]);
    }
  }
}

// The chunk's 8 values as fp32: the CPU's dequantization, value for value. shift: 4 for the
// chunks in the high nibbles (the third and fourth of their block), else 0.
template <Weight D>
__device__ __forceinline__ void decode_chunk(const Chunk<D>& ch, int shift, float* f) {
  if constexpr (D == Weight::kBF16) {
    bf16x8_to_f32(ch.q, f);
  } else if constexpr (D == Weight::kQ8_0) {
    const uint32_t p[2] = {ch.q.x, ch.q.y};
#pragma unroll
    for (int i = 0; i < 8; ++i)
      f[i] = ch.d * static_cast<float>(static_cast<int8_t>(p[i / 4] >> (8 * (i % 4))));
  } else {
    const uint32_t p[2] = {ch.q.x, ch.q.y};
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      const int q = static_cast<int>((p[i / 4] >> (8 * (i % 4) + shift)) & 15u);
      if constexpr (D == Weight::kQ4A)
        f[i] = fmaf(ch.d, static_cast<float>(q), ch.m);
      else
        f[i] = ch.d * static_cast<float>(q - 8);
    }
  }
}

template <int WPR>
constexpr int64_t kStepCols = 32 * 8 * WPR;

template <int WPR, int G, class S>
__device__ __forceinline__ int64_t n_groups(const S& sh) {
  return (sh.cols + G * kStepCols<WPR> - 1) / (G * kStepCols<WPR>);
}

template <Weight D, int WPR, int G, class S>
__device__ __forceinline__ void load_group(const S& sh, const RowPtr& r, int64_t c0, int64_t g,
                                           Chunk<D>* u) {
  constexpr int64_t kStep = kStepCols<WPR>;
  const int64_t b0 = c0 >> 5;                      // c0 >= 0
  const int half = static_cast<int>((c0 >> 3) & 1) * 8;
#pragma unroll
  for (int k = 0; k < G; ++k) {
    const int64_t i = G * g + k, c = c0 + i * kStep;
    // Whole steps inside the row need no check (c0 < kStep): with a static shape it folds away.
    if ((i + 1) * kStep <= sh.cols || c < sh.cols)
      load_chunk<D>(r, c, b0 + i * (kStep / kQBlock), half, u[k]);
  }
}

template <Weight D, int NT, int WPR, int G, class S>
__device__ __forceinline__ void dot_group(const S& sh, const Chunk<D>* u, const float* x,
                                          int64_t c0, int64_t g, float* acc) {
  constexpr int64_t kStep = kStepCols<WPR>;
  const int shift = (c0 & 31) >= 16 ? 4 : 0;
  float wf[8];
#pragma unroll
  for (int k = 0; k < G; ++k) {
    const int64_t c = c0 + (G * g + k) * kStep;
    if ((G * g + k + 1) * kStep <= sh.cols || c < sh.cols) {
      decode_chunk<D>(u[k], shift, wf);
      dot_chunk<NT, 8>(wf, x, sh.cols, c, acc);
    }
  }
}

// A warp's R rows after their first groups (u[r]: row r's, already loaded): each further group
// is loaded for every row before any of it is used.
template <Weight D, int NT, int WPR, int R, int G, class S>
__device__ __forceinline__ void rows_dot(const S& sh, const RowPtr* rp, const float* x, int64_t c0,
                                         Chunk<D> (*u)[G], float (*acc)[NT]) {
#pragma unroll
  for (int r = 0; r < R; ++r) dot_group<D, NT, WPR, G>(sh, u[r], x, c0, 0, acc[r]);
  if constexpr (S::kStatic) {
    constexpr int64_t kGroups = (S::cols + G * kStepCols<WPR> - 1) / (G * kStepCols<WPR>);
#pragma unroll
    for (int64_t g = 1; g < kGroups; ++g) {
#pragma unroll
      for (int r = 0; r < R; ++r) load_group<D, WPR, G>(sh, rp[r], c0, g, u[r]);
#pragma unroll
      for (int r = 0; r < R; ++r) dot_group<D, NT, WPR, G>(sh, u[r], x, c0, g, acc[r]);
    }
  } else {
    const int64_t groups = n_groups<WPR, G>(sh);
    for (int64_t g = 1; g < groups; ++g) {
#pragma unroll
      for (int r = 0; r < R; ++r) load_group<D, WPR, G>(sh, rp[r], c0, g, u[r]);
#pragma unroll
      for (int r = 0; r < R; ++r) dot_group<D, NT, WPR, G>(sh, u[r], x, c0, g, acc[r]);
    }
  }
}

// silu(g) * u with the arithmetic of silu_mul_kernel (elementwise.cu) and the CPU's.
__device__ __forceinline__ float silu_times(float g, float u) {
  return g / (1.0f + expf(-g)) * u;
}

// What a warp computes (gemv_block's MODE): one row; the MLP's gate/up pair (kGated); or two
// adjacent rows (kRowPair: each input chunk read once for both, half the warps).
enum Rows : int { kOneRow = 0, kGated = 1, kRowPair = 2 };

// One block's rows of y[t, row] (+)= w[row, :] . x[t, :] (+ bias[row]) for t < NT.
// Vector path: cols % 32 == 0, x 16-byte aligned (the callers' buffers are). WPR warps share
// a row (each a slice of the columns, summed through shared memory): matrices with few rows
// (the down and output projections) would otherwise leave most of the GPU idle. With an input
// transform the block first stages its input rows (dynamic shared memory, NT * cols floats).
// MODE kGated: w is [gate; up] stacked (rows = 2 * n) and the output is the MLP's activation,
// y[t, r] = silu(gate_r . x_t + bias[r]) * (up_r . x_t + bias[n + r]) for r < n: a warp takes
// both rows (their loads together), so no gate/up product is written or read back and no SiLU
// kernel runs. kRowPair: a warp takes rows 2u and 2u + 1. G: chunk loads per lane in flight
// (gemv_group()). Launch: kThreads threads, gemv_units(rows, MODE) / (kRowsPerBlock / WPR)
// blocks.
template <Weight D, int NT, int WPR, int MODE, int G, class S>
__device__ __forceinline__ void gemv_block(const S& sh, const Matrix& w, const float* x, float* y,
                                           int64_t ldy, const float* bias, const Io& io) {
  constexpr bool GATED = MODE == kGated;
  constexpr int R = MODE == kOneRow ? 1 : 2;  // rows per warp
  extern __shared__ __align__(16) float xs[];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, sub = warp % WPR;
  // Work units (a warp's, or WPR warps'): rows, gate/up pairs or row pairs.
  const int64_t n_out = MODE == kGated ? sh.rows / 2 : MODE == kRowPair ? (sh.rows + 1) / 2 : sh.rows;
  const int64_t out_row = blockIdx.x * static_cast<int64_t>(kRowsPerBlock / WPR) + warp / WPR;
  const bool valid = out_row < n_out;
  int64_t row[R];
  bool keep[R];  // the row exists (a pair's second row may not); else row[r] aliases row[0]
  RowPtr rp[R];
#pragma unroll
  for (int r = 0; r < R; ++r) {
    const int64_t u = valid ? out_row : 0;
    row[r] = MODE == kGated ? u + r * n_out : MODE == kRowPair ? 2 * u + r : u;
    keep[r] = valid && row[r] < sh.rows;
    if (!keep[r]) row[r] = MODE == kRowPair ? 2 * u : row[r];
    rp[r] = row_ptr<D>(w, row[r], sh.row_bytes, sh.cols);
  }
  // The first loads of the rows' weights, which no kernel writes, before the wait for the
  // previous kernel (whose output is x): with programmatic dependent launch they overlap it.
  const int64_t c0 = (sub * 32 + lane) * 8;
  Chunk<D> u[R][G];
  if (valid) {
#pragma unroll
    for (int r = 0; r < R; ++r) load_group<D, WPR, G>(sh, rp[r], c0, 0, u[r]);
  }
  wait_previous_kernel();
  if (io.kind != kPlain) {
    stage_input<NT>(x, sh, io, xs);
    x = xs;
  }
  if (WPR == 1 && !valid) return;
  float acc[R][NT];
#pragma unroll
  for (int r = 0; r < R; ++r)
#pragma unroll
    for (int t = 0; t < NT; ++t) acc[r][t] = 0.0f;
  if (valid) rows_dot<D, NT, WPR, R, G>(sh, rp, x, c0, u, acc);
  // The unit's outputs for token t from its rows' sums s[r] (each over the whole row).
  const auto out = [&](const float* s, int t) {
    if constexpr (GATED) {
      const float v = silu_times(bias ? s[0] + bias[row[0]] : s[0],
                                 bias ? s[1] + bias[row[1]] : s[1]);
      y[t * ldy + out_row] = io.accumulate ? y[t * ldy + out_row] + v : v;
    } else {
#pragma unroll
      for (int r = 0; r < R; ++r) {
        if (!keep[r]) continue;
        const float v = bias ? s[r] + bias[row[r]] : s[r];
        y[t * ldy + row[r]] = io.accumulate ? y[t * ldy + row[r]] + v : v;
      }
    }
  };
  if constexpr (WPR == 1) {
#pragma unroll
    for (int t = 0; t < NT; ++t) {
      float s[R];
#pragma unroll
      for (int r = 0; r < R; ++r) s[r] = lane_sum(acc[r][t]);
      if (lane == 0) out(s, t);
    }
  } else {
    __shared__ float part[kRowsPerBlock][R][NT];
#pragma unroll
    for (int r = 0; r < R; ++r)
#pragma unroll
      for (int t = 0; t < NT; ++t) {
        const float s = lane_sum(acc[r][t]);
        if (lane == 0) part[warp][r][t] = s;
      }
    __syncthreads();
    if (valid && sub == 0 && lane < NT) {
      float s[R];
#pragma unroll
      for (int r = 0; r < R; ++r) {
        s[r] = 0.0f;
#pragma unroll
        for (int k = 0; k < WPR; ++k) s[r] += part[warp + k][r][lane];
      }
      out(s, lane);
    }
  }
}

}  // namespace jinx::cuda::gemv

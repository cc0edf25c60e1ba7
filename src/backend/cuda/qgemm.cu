// Weight-only quantized GEMM on tensor cores, for the token counts past the GEMV's (prefill
// chunks, large decode batches): y[t, r] = sum_c w[r, c] * x[t, c] with w in Q8_0, Q4_0 or Q4A
// (or BF16, for comparisons with cuBLAS) and x fp32.
//
// A block of 8 warps computes a tile of 128 weight rows x 64 tokens. It walks the columns 64 at
// a time: each thread loads its share of the next step's packed weights (16-byte loads: 8 bf16,
// 16 Q8_0 codes or one whole 4-bit block of 32) and fp32 activations into registers while the
// warps multiply the current step, then dequantizes them to bf16 in shared memory (the packed
// matrix is read once per token tile, never expanded in global memory). Warps multiply 32 x 32
// sub-tiles with bf16 mma (wmma 16x16x16, fp32 accumulation) and the block writes its tile
// through shared memory, adding the bias and, for a residual, what y holds.
//
// The arithmetic is that of the path it replaces (weights dequantized in fp32 exactly as
// load_weight() does, then both operands rounded to bf16 once; fp32 sums), only the order of
// the sums differs.
#include <mma.h>

#include <atomic>
#include <cstdlib>
#include <string>

#include "backend/cuda/common.cuh"
#include "backend/cuda/gemv.cuh"
#include "backend/cuda/qgemm.h"
#include "backend/cuda/quant.cuh"
#include "core/check.h"

namespace jinx::cuda {

using namespace detail;
namespace wmma = nvcuda::wmma;

namespace {

constexpr int kBM = 128;  // weight rows per block
constexpr int kBN = 64;   // tokens per block
constexpr int kBK = 64;   // columns per step
constexpr int kThreads = 256;
constexpr int kLdT = kBK + 8;  // bf16 stride of the W and X tiles (a multiple of 8 for wmma)
constexpr int kLdC = kBM + 4;  // fp32 stride of the output tile
constexpr size_t kTileBytes = sizeof(__nv_bfloat16) * (kBM + kBN) * kLdT;
constexpr size_t kOutBytes = sizeof(float) * kBN * kLdC;
constexpr size_t kSmemBytes = kTileBytes > kOutBytes ? kTileBytes : kOutBytes;
static_assert(kSmemBytes <= 48 * 1024, "no opt-in for more shared memory");

enum class Fmt { kBF16, kQ8_0, kQ4_0, kQ4A };

// A thread's share of one step's weights: N pieces of 16 bytes (128 rows x 64 columns in all),
// each with its block's scale d (and Q4A offset m). A piece is BF16 8 values, Q8_0 16 codes of
// one block, Q4_0 / Q4A one whole block of 32 (value j in the low nibble of byte j, j + 16 in
// the high one).
template <Fmt F>
struct WPieces {
  static constexpr int kValues = F == Fmt::kBF16 ? 8 : F == Fmt::kQ8_0 ? 16 : 32;
  static constexpr int kPerRow = kBK / kValues;       // pieces in a row of the step
  static constexpr int N = kBM * kPerRow / kThreads;  // pieces per thread
  uint4 q[N];
  float d[N], m[N];
};

// Piece i of this thread: its row in the tile and its first column in the step.
template <Fmt F>
__device__ __forceinline__ void piece_at(int i, int& r, int& c) {
  constexpr int per_row = WPieces<F>::kPerRow;
  const int idx = threadIdx.x + i * kThreads;
  r = idx / per_row;
  c = (idx % per_row) * WPieces<F>::kValues;
}

// The step at column k0 of rows [m0, m0 + kBM): pieces past the matrix load as zeros.
template <Fmt F>
__device__ __forceinline__ void load_w(const DeviceMatrix& w, int64_t m0, int64_t k0,
                                       WPieces<F>& p) {
  const int64_t n_blocks = w.cols / kQBlock;
#pragma unroll
  for (int i = 0; i < WPieces<F>::N; ++i) {
    int r, c;
    piece_at<F>(i, r, c);
    const int64_t row = m0 + r, col = k0 + c;
    p.q[i] = make_uint4(0, 0, 0, 0);
    p.d[i] = 0.0f;
    p.m[i] = 0.0f;
    if (row >= w.rows || col >= w.cols) continue;
    const uint8_t* base = static_cast<const uint8_t*>(w.data) + row * w.row_bytes;
    using gemv::load_weights;  // past L1, no coherence: weights are never written
    const int64_t blk = row * n_blocks + col / kQBlock;
    if constexpr (F == Fmt::kBF16) {
      p.q[i] = load_weights(base + 2 * col);
    } else if constexpr (F == Fmt::kQ8_0) {
      p.q[i] = load_weights(base + col);
      p.d[i] = __half2float(static_cast<const __half*>(w.scales)[blk]);
    } else if constexpr (F == Fmt::kQ4_0) {
      p.q[i] = load_weights(base + col / 2);
      p.d[i] = __half2float(static_cast<const __half*>(w.scales)[blk]);
    } else {
      p.q[i] = load_weights(base + col / 2);
      p.d[i] = static_cast<const float*>(w.scales)[blk];
      p.m[i] = static_cast<const float*>(w.offsets)[blk];
    }
  }
}

__device__ __forceinline__ uint32_t pack_bf16(float a, float b) {
  const __nv_bfloat162 h = __floats2bfloat162_rn(a, b);
  return *reinterpret_cast<const uint32_t*>(&h);
}

// Value of a 4-bit code as load_weight() computes it.
template <Fmt F>
__device__ __forceinline__ float q4_value(int q, float d, float m) {
  if constexpr (F == Fmt::kQ4_0) {
    return d * static_cast<float>(q - 8);
  } else {
    return fmaf(d, static_cast<float>(q), m);
  }
}

// Writes the pieces into the W tile (bf16, [kBM][kLdT]) dequantized.
template <Fmt F>
__device__ __forceinline__ void store_w(const WPieces<F>& p, __nv_bfloat16* ws) {
#pragma unroll
  for (int i = 0; i < WPieces<F>::N; ++i) {
    int r, c;
    piece_at<F>(i, r, c);
    __nv_bfloat16* dst = ws + r * kLdT + c;
    if constexpr (F == Fmt::kBF16) {
      *reinterpret_cast<uint4*>(dst) = p.q[i];
    } else if constexpr (F == Fmt::kQ8_0) {
      const int8_t* q = reinterpret_cast<const int8_t*>(&p.q[i]);
      uint32_t o[8];
#pragma unroll
      for (int j = 0; j < 8; ++j)
        o[j] = pack_bf16(p.d[i] * static_cast<float>(q[2 * j]),
                         p.d[i] * static_cast<float>(q[2 * j + 1]));
      reinterpret_cast<uint4*>(dst)[0] = make_uint4(o[0], o[1], o[2], o[3]);
      reinterpret_cast<uint4*>(dst)[1] = make_uint4(o[4], o[5], o[6], o[7]);
    } else {
      const uint8_t* b = reinterpret_cast<const uint8_t*>(&p.q[i]);
      uint32_t lo[8], hi[8];  // values 0..15 and 16..31
#pragma unroll
      for (int j = 0; j < 8; ++j) {
        lo[j] = pack_bf16(q4_value<F>(b[2 * j] & 15, p.d[i], p.m[i]),
                          q4_value<F>(b[2 * j + 1] & 15, p.d[i], p.m[i]));
        hi[j] = pack_bf16(q4_value<F>(b[2 * j] >> 4, p.d[i], p.m[i]),
                          q4_value<F>(b[2 * j + 1] >> 4, p.d[i], p.m[i]));
      }
      uint4* d4 = reinterpret_cast<uint4*>(dst);
      d4[0] = make_uint4(lo[0], lo[1], lo[2], lo[3]);
      d4[1] = make_uint4(lo[4], lo[5], lo[6], lo[7]);
      d4[2] = make_uint4(hi[0], hi[1], hi[2], hi[3]);
      d4[3] = make_uint4(hi[4], hi[5], hi[6], hi[7]);
    }
  }
}

// A thread's share of one step's activations: 64 tokens x 64 columns fp32, 4 float4 each.
constexpr int kXPieces = kBN * kBK / 4 / kThreads;
struct XPieces {
  float4 v[kXPieces];
};

__device__ __forceinline__ void x_piece_at(int i, int& t, int& c) {
  const int idx = threadIdx.x + i * kThreads;
  t = idx / (kBK / 4);
  c = (idx % (kBK / 4)) * 4;
}

__device__ __forceinline__ void load_x(const float* x, int64_t n_tokens, int64_t cols, int64_t n0,
                                       int64_t k0, XPieces& p) {
#pragma unroll
  for (int i = 0; i < kXPieces; ++i) {
    int t, c;
    x_piece_at(i, t, c);
    p.v[i] = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    if (n0 + t < n_tokens && k0 + c < cols)
      p.v[i] = *reinterpret_cast<const float4*>(x + (n0 + t) * cols + k0 + c);
  }
}

__device__ __forceinline__ void store_x(const XPieces& p, __nv_bfloat16* xs) {
#pragma unroll
  for (int i = 0; i < kXPieces; ++i) {
    int t, c;
    x_piece_at(i, t, c);
    *reinterpret_cast<uint2*>(xs + t * kLdT + c) =
        make_uint2(pack_bf16(p.v[i].x, p.v[i].y), pack_bf16(p.v[i].z, p.v[i].w));
  }
}

struct GemmArgs {
  const float* x;  // [n_tokens, w.cols]
  int64_t n_tokens;
  float* y;  // [n_tokens, ldy]
  int64_t ldy;
  const float* bias;  // [w.rows] or null
  bool accumulate;
};

// Warp (wm, wn) of the 4 x 2 grid: weight rows [32 wm, +32) x tokens [32 wn, +32) of the tile.
template <Fmt F>
__global__ void __launch_bounds__(kThreads, 2) qgemm_kernel(DeviceMatrix w, GemmArgs a) {
  extern __shared__ __align__(128) uint8_t smem[];
  auto* ws = reinterpret_cast<__nv_bfloat16*>(smem);
  auto* xs = ws + kBM * kLdT;
  auto* cs = reinterpret_cast<float*>(smem);  // after the last step

  const int warp = threadIdx.x >> 5, wm = warp & 3, wn = warp >> 2;
  const int64_t m0 = static_cast<int64_t>(blockIdx.x) * kBM;
  const int64_t n0 = static_cast<int64_t>(blockIdx.y) * kBN;

  WPieces<F> wp;
  XPieces xp;
  load_w<F>(w, m0, 0, wp);  // weights are never written: read before the previous kernel ends
  pdl_begin();
  load_x(a.x, a.n_tokens, w.cols, n0, 0, xp);

  wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc[2][2];
#pragma unroll
  for (int i = 0; i < 2; ++i)
#pragma unroll
    for (int j = 0; j < 2; ++j) wmma::fill_fragment(acc[i][j], 0.0f);

  for (int64_t k0 = 0; k0 < w.cols; k0 += kBK) {
    __syncthreads();  // the previous step's tiles are no longer read
    store_w<F>(wp, ws);
    store_x(xp, xs);
    __syncthreads();
    if (k0 + kBK < w.cols) {  // the next step's loads fly while this one multiplies
      load_w<F>(w, m0, k0 + kBK, wp);
      load_x(a.x, a.n_tokens, w.cols, n0, k0 + kBK, xp);
    }
#pragma unroll
    for (int k = 0; k < kBK / 16; ++k) {
      wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> fa[2];
      wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::col_major> fb[2];
#pragma unroll
      for (int i = 0; i < 2; ++i)
        wmma::load_matrix_sync(fa[i], ws + (32 * wm + 16 * i) * kLdT + 16 * k, kLdT);
#pragma unroll
      for (int j = 0; j < 2; ++j)
        wmma::load_matrix_sync(fb[j], xs + (32 * wn + 16 * j) * kLdT + 16 * k, kLdT);
#pragma unroll
      for (int i = 0; i < 2; ++i)
#pragma unroll
        for (int j = 0; j < 2; ++j) wmma::mma_sync(acc[i][j], fa[i], fb[j], acc[i][j]);
    }
  }

  __syncthreads();  // the tiles become the output tile: cs[t * kLdC + r]
#pragma unroll
  for (int i = 0; i < 2; ++i)
#pragma unroll
    for (int j = 0; j < 2; ++j)
      wmma::store_matrix_sync(cs + (32 * wn + 16 * j) * kLdC + 32 * wm + 16 * i, acc[i][j], kLdC,
                              wmma::mem_col_major);
  __syncthreads();
  for (int idx = threadIdx.x; idx < kBM * kBN; idx += kThreads) {
    const int t = idx / kBM, r = idx % kBM;
    const int64_t row = m0 + r, tok = n0 + t;
    if (row >= w.rows || tok >= a.n_tokens) continue;
    float v = cs[t * kLdC + r];
    if (a.bias) v += a.bias[row];
    float* dst = a.y + tok * a.ldy + row;
    *dst = a.accumulate ? *dst + v : v;
  }
}

template <Fmt F>
void launch_qgemm(const DeviceMatrix& w, const GemmArgs& a, cudaStream_t s) {
  const dim3 grid(blocks_for(w.rows, kBM), blocks_for(a.n_tokens, kBN));
  launch(qgemm_kernel<F>, grid, kThreads, kSmemBytes, s, "qgemm", w, a);
}

int mode_from_env() {
  const char* v = std::getenv("JINX_QGEMM");
  if (v == nullptr) return kQgemmQuantized;
  const std::string s(v);
  return s == "0" ? kQgemmOff : s == "all" ? kQgemmAll : kQgemmQuantized;
}

std::atomic<int>& mode_switch() {
  static std::atomic<int> mode{mode_from_env()};
  return mode;
}

}  // namespace

int qgemm_mode() {
  return mode_switch().load(std::memory_order_relaxed);
}

void set_qgemm_mode(int mode) {
  mode_switch().store(mode);
}

bool qgemm_supported(const DeviceMatrix& w, const float* x) {
  const bool fmt =
      w.dtype == DType::Q8_0 || w.dtype == DType::Q4_0 || w.dtype == kQ4A || w.dtype == DType::BF16;
  return fmt && w.cols % 32 == 0 && w.row_bytes % 16 == 0 &&
         reinterpret_cast<uintptr_t>(w.data) % 16 == 0 &&
         reinterpret_cast<uintptr_t>(x) % 16 == 0 && (w.dtype != kQ4A || w.offsets != nullptr);
}

bool qgemm_takes(const DeviceMatrix& w) {
  const int mode = qgemm_mode();
  return mode == kQgemmAll || (mode == kQgemmQuantized && w.dtype != DType::BF16);
}

void qgemm(const DeviceMatrix& w, const float* x, int64_t n_tokens, float* y, int64_t ldy,
           const float* bias, bool accumulate, cudaStream_t s) {
  if (n_tokens <= 0 || w.rows <= 0) return;
  JINX_CHECK(qgemm_supported(w, x), "cuda qgemm: ", w.rows, "x", w.cols, " ", name(w.dtype),
             " (needs 32 | cols and 16-byte aligned rows and input)");
  JINX_CHECK(ldy >= w.rows, "cuda qgemm: ldy ", ldy, " < rows ", w.rows);
  const GemmArgs a{x, n_tokens, y, ldy, bias, accumulate};
  switch (w.dtype) {
    case DType::Q8_0:
      launch_qgemm<Fmt::kQ8_0>(w, a, s);
      break;
    case DType::Q4_0:
      launch_qgemm<Fmt::kQ4_0>(w, a, s);
      break;
    case DType::BF16:
      launch_qgemm<Fmt::kBF16>(w, a, s);
      break;
    default:
      launch_qgemm<Fmt::kQ4A>(w, a, s);
      break;
  }
}

}  // namespace jinx::cuda

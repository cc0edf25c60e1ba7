// Prefill attention on tensor cores, FlashAttention-2 style, over the paged KV cache (bf16, or
// int8 / fp8 rows, which are scaled and rounded to bf16 on their way into shared memory).
//
// A block of four warps takes 64 query rows of one sequence (a "tile") and one query head. It
// walks the KV positions the tile can see in steps of 64: K and V rows are gathered from their
// paged blocks into shared memory, each warp computes the 16 x 64 scores of its 16 rows with
// bf16 mma (wmma 16x16x16, fp32 accumulation), applies the causal mask and the online softmax
// (running max and sum per row, the output rescaled), and adds P V into its rows of the fp32
// output kept in shared memory. Each warp only touches its own rows of S, P and O, so the block
// synchronizes only around the K/V loads.
//
// GQA: query head h reads kv head h / group; the K/V tiles of a group are read once per query
// head, from L2 after the first.
#include <mma.h>

#include "backend/cuda/common.cuh"
#include "backend/cuda/kv_rows.cuh"
#include "core/check.h"

namespace jinx::cuda {

using namespace detail;
namespace wmma = nvcuda::wmma;

namespace {

constexpr int kBM = static_cast<int>(kPrefillTileRows);  // query rows per block
constexpr int kBN = 64;                                  // KV positions per step
constexpr int kThreads = 128;                            // 4 warps x 16 rows

template <int HD>
struct Smem {
  static constexpr int kLdh = HD + 8;   // bf16 row stride (a multiple of 8 for wmma)
  static constexpr int kLdS = kBN + 4;  // fp32 score stride
  static constexpr int kLdP = kBN + 8;
  static constexpr int kLdO = HD + 4;
  static constexpr size_t kQ = 0;
  static constexpr size_t kK = kQ + sizeof(__nv_bfloat16) * kBM * kLdh;
  static constexpr size_t kV = kK + sizeof(__nv_bfloat16) * kBN * kLdh;
  static constexpr size_t kS = kV + sizeof(__nv_bfloat16) * kBN * kLdh;
  static constexpr size_t kP = kS + sizeof(float) * kBM * kLdS;
  static constexpr size_t kO = kP + sizeof(__nv_bfloat16) * kBM * kLdP;
  static constexpr size_t kBytes = kO + sizeof(float) * kBM * kLdO;
};

struct PrefillArgs {
  const float* q;
  int64_t ldq;
  float* out;
  int64_t n_heads, group;
  float scale;
};

// Eight elements [d, d + 8) of a K/V row (at its first byte r) as bf16, for shared memory.
template <typename KV>
__device__ __forceinline__ uint4 bf16x8(const uint8_t* r, int d, int hd) {
  if constexpr (std::is_same_v<KV, __nv_bfloat16>) {
    return *reinterpret_cast<const uint4*>(r + 2 * d);
  } else {
    float f[8];
    row_load8<KV>(r, d, f);
    const float sc = row_scale<KV>(r, hd);
    uint4 u;
    __nv_bfloat162* h = reinterpret_cast<__nv_bfloat162*>(&u);
#pragma unroll
    for (int i = 0; i < 4; ++i) h[i] = __floats2bfloat162_rn(f[2 * i] * sc, f[2 * i + 1] * sc);
    return u;
  }
}

template <int HD, typename KV>
__global__ void __launch_bounds__(kThreads) prefill_kernel(PrefillArgs a, PagedKv kv, AttnBatch b) {
  pdl_begin();
  using L = Smem<HD>;
  extern __shared__ __align__(128) uint8_t smem[];
  auto* Qs = reinterpret_cast<__nv_bfloat16*>(smem + L::kQ);
  auto* Ks = reinterpret_cast<__nv_bfloat16*>(smem + L::kK);
  auto* Vs = reinterpret_cast<__nv_bfloat16*>(smem + L::kV);
  auto* Ss = reinterpret_cast<float*>(smem + L::kS);
  auto* Ps = reinterpret_cast<__nv_bfloat16*>(smem + L::kP);
  auto* Os = reinterpret_cast<float*>(smem + L::kO);

  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int64_t s = b.prefill_tiles[2 * blockIdx.x], row0 = b.prefill_tiles[2 * blockIdx.x + 1];
  const int64_t h = blockIdx.y, kvh = h / a.group;
  const int64_t q0 = b.query_start[s], n_new = b.query_start[s + 1] - q0;
  const int64_t n_rows = n_new - row0 < kBM ? n_new - row0 : kBM;
  const int64_t pos0 = b.context_len[s] - n_new + row0;  // position of the tile's first row
  const int64_t kv_end = pos0 + n_rows;                  // positions the last row sees
  const int32_t* bt = b.block_tables + s * b.max_blocks_per_seq;

  for (int i = tid; i < kBM * HD; i += kThreads) {
    const int r = i / HD, d = i % HD;
    const float v = r < n_rows ? a.q[(q0 + row0 + r) * a.ldq + h * HD + d] * a.scale : 0.0f;
    Qs[r * L::kLdh + d] = __float2bfloat16_rn(v);
  }
  for (int i = tid; i < kBM * HD; i += kThreads) Os[(i / HD) * L::kLdO + i % HD] = 0.0f;
  // Row statistics: lanes 2i and 2i+1 of a warp share row 16 * warp + i, half the columns each.
  const int my_row = 16 * warp + lane / 2, half = lane & 1;
  const int64_t my_pos = pos0 + my_row;
  const bool row_valid = my_row < n_rows;
  float m = -INFINITY, l = 0.0f;

  const int64_t rb = row_bytes<KV>(HD);
  const auto* kbase = static_cast<const uint8_t*>(kv.k);
  const auto* vbase = static_cast<const uint8_t*>(kv.v);
  for (int64_t j0 = 0; j0 < kv_end; j0 += kBN) {
    __syncthreads();                 // the previous step's K/V are no longer read
    constexpr int kChunks = HD / 8;  // 16-byte pieces of a row
    for (int i = tid; i < kBN * kChunks; i += kThreads) {
      const int p = i / kChunks, c = i % kChunks;
      const int64_t pos = j0 + p;
      uint4 kval = make_uint4(0, 0, 0, 0), vval = kval;
      if (pos < kv_end) {
        const int64_t slot = int64_t{bt[pos / kv.block_size]} * kv.block_size + pos % kv.block_size;
        const int64_t off = (slot * kv.n_kv_heads + kvh) * rb;
        kval = bf16x8<KV>(kbase + off, c * 8, HD);
        vval = bf16x8<KV>(vbase + off, c * 8, HD);
      }
      *reinterpret_cast<uint4*>(Ks + p * L::kLdh + c * 8) = kval;
      *reinterpret_cast<uint4*>(Vs + p * L::kLdh + c * 8) = vval;
    }
    __syncthreads();

    // S[16 rows of this warp, 64] = Q K^T
    for (int n = 0; n < kBN / 16; ++n) {
      wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
      wmma::fill_fragment(acc, 0.0f);
#pragma unroll
      for (int k = 0; k < HD / 16; ++k) {
        wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> fa;
        wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::col_major> fb;
        wmma::load_matrix_sync(fa, Qs + (16 * warp) * L::kLdh + 16 * k, L::kLdh);
        wmma::load_matrix_sync(fb, Ks + (16 * n) * L::kLdh + 16 * k, L::kLdh);
        wmma::mma_sync(acc, fa, fb, acc);
      }
      wmma::store_matrix_sync(Ss + (16 * warp) * L::kLdS + 16 * n, acc, L::kLdS,
                              wmma::mem_row_major);
    }
    __syncwarp();

    // Online softmax over this step's columns; P to shared (bf16), O rescaled.
    float* srow = Ss + my_row * L::kLdS + half * 32;
    float tile_max = -INFINITY;
    for (int c = 0; c < 32; ++c) {
      const int64_t pos = j0 + half * 32 + c;
      const bool ok = row_valid && pos <= my_pos;
      if (!ok) srow[c] = -INFINITY;
      tile_max = fmaxf(tile_max, srow[c]);
    }
    tile_max = fmaxf(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, 1));
    const float m_new = fmaxf(m, tile_max);
    const float corr = m_new == -INFINITY ? 1.0f : __expf(m - m_new);
    float sum = 0.0f;
    __nv_bfloat16* prow = Ps + my_row * L::kLdP + half * 32;
    for (int c = 0; c < 32; ++c) {
      const float p = m_new == -INFINITY ? 0.0f : __expf(srow[c] - m_new);
      sum += p;
      prow[c] = __float2bfloat16_rn(p);
    }
    sum += __shfl_xor_sync(0xffffffffu, sum, 1);
    l = l * corr + sum;
    m = m_new;
    float* orow = Os + my_row * L::kLdO + half * (HD / 2);
    for (int d = 0; d < HD / 2; ++d) orow[d] *= corr;
    __syncwarp();

    // O[16 rows, HD] += P V
    for (int n = 0; n < HD / 16; ++n) {
      wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
      float* optr = Os + (16 * warp) * L::kLdO + 16 * n;
      wmma::load_matrix_sync(acc, optr, L::kLdO, wmma::mem_row_major);
#pragma unroll
      for (int k = 0; k < kBN / 16; ++k) {
        wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> fa;
        wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::row_major> fb;
        wmma::load_matrix_sync(fa, Ps + (16 * warp) * L::kLdP + 16 * k, L::kLdP);
        wmma::load_matrix_sync(fb, Vs + (16 * k) * L::kLdh + 16 * n, L::kLdh);
        wmma::mma_sync(acc, fa, fb, acc);
      }
      wmma::store_matrix_sync(optr, acc, L::kLdO, wmma::mem_row_major);
    }
    __syncwarp();
  }

  if (!row_valid) return;
  const float inv = l > 0.0f ? 1.0f / l : 0.0f;
  const float* orow = Os + my_row * L::kLdO + half * (HD / 2);
  float* dst = a.out + ((q0 + row0 + my_row) * a.n_heads + h) * HD + half * (HD / 2);
  for (int d = 0; d < HD / 2; ++d) dst[d] = orow[d] * inv;
}

template <int HD, typename KV>
void launch_prefill(const PrefillArgs& a, const PagedKv& kv, const AttnBatch& b, cudaStream_t s) {
  // Above the default 48 KiB of shared memory: opt in once per instantiation.
  static const cudaError_t opt_in =
      cudaFuncSetAttribute(prefill_kernel<HD, KV>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                           static_cast<int>(Smem<HD>::kBytes));
  check(opt_in, "prefill attention: shared memory");
  const dim3 grid(static_cast<unsigned>(b.n_prefill_tiles), static_cast<unsigned>(a.n_heads));
  launch(prefill_kernel<HD, KV>, grid, kThreads, Smem<HD>::kBytes, s, "prefill_kernel", a, kv, b);
}

template <typename KV>
void launch_prefill_hd(const PrefillArgs& a, const PagedKv& kv, const AttnBatch& b,
                       cudaStream_t s) {
  if (kv.head_dim == 64) {
    launch_prefill<64, KV>(a, kv, b, s);
  } else {
    launch_prefill<128, KV>(a, kv, b, s);
  }
}

}  // namespace

bool prefill_kernel_supported(const PagedKv& kv) {
  return (kv.dtype == DType::BF16 || kv.dtype == DType::I8 || kv.dtype == DType::F8_E4M3) &&
         (kv.head_dim == 64 || kv.head_dim == 128);
}

std::vector<int32_t> make_prefill_tiles(const int32_t* query_start, int64_t n_seqs,
                                        const PagedKv& kv) {
  std::vector<int32_t> tiles;
  if (!prefill_kernel_supported(kv)) return tiles;
  for (int64_t s = 0; s < n_seqs; ++s) {
    const int64_t n_new = int64_t{query_start[s + 1]} - query_start[s];
    if (n_new < kPrefillMinRows) continue;
    for (int64_t r = 0; r < n_new; r += kPrefillTileRows) {
      tiles.push_back(static_cast<int32_t>(s));
      tiles.push_back(static_cast<int32_t>(r));
    }
  }
  return tiles;
}

void paged_attention_prefill(const float* q, int64_t ldq, float* out, int64_t n_heads,
                             const PagedKv& kv, const AttnBatch& b, float scale, cudaStream_t s) {
  if (b.n_prefill_tiles <= 0) return;
  JINX_CHECK(prefill_kernel_supported(kv),
             "prefill attention: needs bf16, int8 or fp8 KV and head_dim 64/128");
  PrefillArgs a{q, ldq, out, n_heads, n_heads / kv.n_kv_heads, scale};
  if (kv.dtype == DType::I8) {
    launch_prefill_hd<I8Codes>(a, kv, b, s);
  } else if (kv.dtype == DType::F8_E4M3) {
    launch_prefill_hd<F8Codes>(a, kv, b, s);
  } else {
    launch_prefill_hd<__nv_bfloat16>(a, kv, b, s);
  }
}

}  // namespace jinx::cuda

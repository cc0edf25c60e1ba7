// Paged attention on the GPU: the KV store and one flash-attention style kernel for prefill
// chunks and decode, reading K/V straight from the paged blocks.
//
// A thread block handles one query row, one KV head and up to kHeadsPerBlock of the query heads
// that share it (GQA: each K/V row is read once for the whole group), over one range of KV
// positions. Its four warps take positions in turn; per position a warp computes the group's
// scores with warp reductions and updates a running max, sum and fp32 output per head (online
// softmax). The warps' states are merged through shared memory. When few query rows would leave
// SMs idle (decode), the KV range is split over more blocks and a second kernel merges the
// partial states ("flash decoding").
#include <algorithm>
#include <cmath>

#include "backend/cuda/common.cuh"
#include "core/check.h"

namespace jinx::cuda {

using namespace detail;

// attention_prefill.cu
void paged_attention_prefill(const float* q, int64_t ldq, float* out, int64_t n_heads,
                             const PagedKv& kv, const AttnBatch& b, float scale, cudaStream_t s);

namespace {

constexpr int kWarps = 4;
constexpr int kHeadsPerBlock = 8;
constexpr int64_t kMinSplit = 32;  // fewest KV positions worth a block of their own

template <typename KV>
__global__ void kv_store_kernel(PagedKv kv, const float* k, const float* v, int64_t ld,
                                const int64_t* slots) {
  const int64_t t = blockIdx.x, slot = slots[t], dim = kv.n_kv_heads * kv.head_dim;
  if (slot < 0 || slot >= kv.n_blocks * kv.block_size) return;
  KV* kd = static_cast<KV*>(kv.k) + slot * dim;
  KV* vd = static_cast<KV*>(kv.v) + slot * dim;
  for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) {
    kd[i] = from_f32<KV>(k[t * ld + i]);
    vd[i] = from_f32<KV>(v[t * ld + i]);
  }
}

struct AttnArgs {
  const float* q;
  int64_t ldq;
  float* out;
  float* part_ml;   // [n_splits, n_tokens, n_heads, 2] (max, sum) when split
  float* part_acc;  // [n_splits, n_tokens, n_heads, head_dim]
  int64_t n_heads, n_tokens, group, n_gchunks, split_len, n_splits;
  float scale;
  bool skip_prefill;  // rows of sequences with >= kPrefillMinRows new rows: the prefill kernel's
};

// The last s with query_start[s] <= t.
__device__ __forceinline__ int64_t seq_of_row(const AttnBatch& b, int64_t t) {
  int64_t lo = 0, hi = b.n_seqs - 1;
  while (lo < hi) {
    const int64_t mid = (lo + hi + 1) / 2;
    if (b.query_start[mid] <= t) lo = mid; else hi = mid - 1;
  }
  return lo;
}

template <typename KV, int HD>
__global__ void __launch_bounds__(kWarps * 32)
    attention_kernel(AttnArgs a, PagedKv kv, AttnBatch b) {
  constexpr int kEpl = (HD + 31) / 32;  // elements per lane
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int64_t t = blockIdx.x;
  const int64_t kvh = blockIdx.y / a.n_gchunks, gchunk = blockIdx.y % a.n_gchunks;
  const int64_t h0 = kvh * a.group + gchunk * kHeadsPerBlock;
  const int64_t rem = a.group - gchunk * kHeadsPerBlock;
  const int nh = static_cast<int>(rem < kHeadsPerBlock ? rem : kHeadsPerBlock);
  const int64_t s = seq_of_row(b, t), q0 = b.query_start[s], n_new = b.query_start[s + 1] - q0;
  if (a.skip_prefill && n_new >= kPrefillMinRows) return;  // the whole block: uniform
  const int64_t kv_len = b.context_len[s] - n_new + (t - q0) + 1;
  // split_len 0: this row's own context in n_splits near-equal pieces (a graph's launch shape
  // is fixed, the contexts are not).
  int64_t split = a.split_len;
  if (split == 0) {
    split = (kv_len + a.n_splits - 1) / a.n_splits;
    split = split < kMinSplit ? kMinSplit : split;
  }
  const int64_t kv0 = blockIdx.z * split;
  const int64_t kv1 = kv_len < kv0 + split ? kv_len : kv0 + split;
  const int32_t* bt = b.block_tables + s * b.max_blocks_per_seq;

  __shared__ float qs[kHeadsPerBlock][HD];
  for (int i = threadIdx.x; i < nh * HD; i += blockDim.x)
    qs[i / HD][i % HD] = a.q[t * a.ldq + (h0 + i / HD) * HD + i % HD] * a.scale;
  __syncthreads();

  float m[kHeadsPerBlock], l[kHeadsPerBlock], acc[kHeadsPerBlock][kEpl];
#pragma unroll
  for (int h = 0; h < kHeadsPerBlock; ++h) {
    m[h] = -INFINITY;
    l[h] = 0.0f;
#pragma unroll
    for (int j = 0; j < kEpl; ++j) acc[h][j] = 0.0f;
  }
  const int64_t row_stride = kv.n_kv_heads * HD;
  for (int64_t p = kv0 + warp; p < kv1; p += kWarps) {
    const int64_t slot = int64_t{bt[p / kv.block_size]} * kv.block_size + p % kv.block_size;
    const KV* kp = static_cast<const KV*>(kv.k) + slot * row_stride + kvh * HD;
    const KV* vp = static_cast<const KV*>(kv.v) + slot * row_stride + kvh * HD;
    float kr[kEpl], vr[kEpl];
#pragma unroll
    for (int j = 0; j < kEpl; ++j) {
      const int d = lane + 32 * j;
      kr[j] = d < HD ? to_f32(kp[d]) : 0.0f;
      vr[j] = d < HD ? to_f32(vp[d]) : 0.0f;
    }
#pragma unroll
    for (int h = 0; h < kHeadsPerBlock; ++h) {
      if (h >= nh) break;
      float dot = 0.0f;
#pragma unroll
      for (int j = 0; j < kEpl; ++j) {
        const int d = lane + 32 * j;
        if (d < HD) dot += kr[j] * qs[h][d];
      }
      dot = warp_sum(dot);
      const float m_new = fmaxf(m[h], dot);
      const float corr = __expf(m[h] - m_new), pw = __expf(dot - m_new);
      l[h] = l[h] * corr + pw;
#pragma unroll
      for (int j = 0; j < kEpl; ++j) acc[h][j] = acc[h][j] * corr + pw * vr[j];
      m[h] = m_new;
    }
  }

  // Merge the warps' states.
  __shared__ float wm[kWarps][kHeadsPerBlock], wl[kWarps][kHeadsPerBlock];
  __shared__ float wacc[kWarps][kHeadsPerBlock][HD];
#pragma unroll
  for (int h = 0; h < kHeadsPerBlock; ++h) {
    if (h >= nh) break;
    if (lane == 0) {
      wm[warp][h] = m[h];
      wl[warp][h] = l[h];
    }
#pragma unroll
    for (int j = 0; j < kEpl; ++j) {
      const int d = lane + 32 * j;
      if (d < HD) wacc[warp][h][d] = acc[h][j];
    }
  }
  __syncthreads();
  for (int i = threadIdx.x; i < nh * HD; i += blockDim.x) {
    const int h = i / HD, d = i % HD;
    float mx = -INFINITY;
    for (int w = 0; w < kWarps; ++w) mx = fmaxf(mx, wm[w][h]);
    float sum = 0.0f, o = 0.0f;
    if (mx != -INFINITY) {
      for (int w = 0; w < kWarps; ++w) {
        const float f = __expf(wm[w][h] - mx);
        sum += wl[w][h] * f;
        o += wacc[w][h][d] * f;
      }
    }
    const int64_t head = h0 + h;
    if (a.n_splits == 1) {
      a.out[(t * a.n_heads + head) * HD + d] = sum > 0.0f ? o / sum : 0.0f;
    } else {
      const int64_t idx = (blockIdx.z * a.n_tokens + t) * a.n_heads + head;
      a.part_acc[idx * HD + d] = o;
      if (d == 0) {
        a.part_ml[idx * 2] = mx;
        a.part_ml[idx * 2 + 1] = sum;
      }
    }
  }
}

__global__ void merge_kernel(AttnArgs a, AttnBatch b, int64_t head_dim) {
  const int64_t t = blockIdx.x, h = blockIdx.y;
  if (a.skip_prefill) {
    const int64_t s = seq_of_row(b, t);
    if (b.query_start[s + 1] - b.query_start[s] >= kPrefillMinRows) return;
  }
  float mx = -INFINITY;
  for (int64_t z = 0; z < a.n_splits; ++z)
    mx = fmaxf(mx, a.part_ml[((z * a.n_tokens + t) * a.n_heads + h) * 2]);
  for (int64_t d = threadIdx.x; d < head_dim; d += blockDim.x) {
    float sum = 0.0f, o = 0.0f;
    for (int64_t z = 0; z < a.n_splits && mx != -INFINITY; ++z) {
      const int64_t idx = (z * a.n_tokens + t) * a.n_heads + h;
      const float mz = a.part_ml[idx * 2];
      if (mz == -INFINITY) continue;
      const float f = __expf(mz - mx);
      sum += a.part_ml[idx * 2 + 1] * f;
      o += a.part_acc[idx * head_dim + d] * f;
    }
    a.out[(t * a.n_heads + h) * head_dim + d] = sum > 0.0f ? o / sum : 0.0f;
  }
}

int sm_count() {
  static const int n = [] {
    int dev = 0, v = 0;
    cudaGetDevice(&dev);
    if (cudaDeviceGetAttribute(&v, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess) v = 1;
    return v;
  }();
  return n;
}

template <typename KV>
void launch(const AttnArgs& a, const PagedKv& kv, const AttnBatch& b, dim3 grid, int64_t hd,
            cudaStream_t s) {
  const dim3 block(kWarps * 32);
  switch (hd) {
    case 64: attention_kernel<KV, 64><<<grid, block, 0, s>>>(a, kv, b); break;
    case 80: attention_kernel<KV, 80><<<grid, block, 0, s>>>(a, kv, b); break;
    case 96: attention_kernel<KV, 96><<<grid, block, 0, s>>>(a, kv, b); break;
    case 128: attention_kernel<KV, 128><<<grid, block, 0, s>>>(a, kv, b); break;
    case 256: attention_kernel<KV, 256><<<grid, block, 0, s>>>(a, kv, b); break;
    default: fail("cuda attention: head_dim ", hd, " is not 64, 80, 96, 128 or 256");
  }
}

}  // namespace

void kv_store(const PagedKv& kv, const float* k, const float* v, int64_t ld,
              const int64_t* slot_mapping, int64_t n_tokens, cudaStream_t s) {
  if (n_tokens <= 0) return;
  const unsigned grid = static_cast<unsigned>(n_tokens);
  switch (kv.dtype) {
    case DType::F32: kv_store_kernel<float><<<grid, 128, 0, s>>>(kv, k, v, ld, slot_mapping); break;
    case DType::F16: kv_store_kernel<__half><<<grid, 128, 0, s>>>(kv, k, v, ld, slot_mapping); break;
    case DType::BF16:
      kv_store_kernel<__nv_bfloat16><<<grid, 128, 0, s>>>(kv, k, v, ld, slot_mapping);
      break;
    default: fail("cuda kv_store: KV dtype ", name(kv.dtype), " is not f32, f16 or bf16");
  }
  check_launch("kv_store");
}

size_t attention_work_bytes(int64_t n_tokens, int64_t n_heads, int64_t head_dim) {
  if (n_tokens > kMaxSplitTokens) return 0;
  return static_cast<size_t>(kMaxSplits * n_tokens * n_heads * (head_dim + 2)) * sizeof(float);
}

void paged_attention(const float* q, int64_t ldq, float* out, int64_t n_heads, const PagedKv& kv,
                     const AttnBatch& b, float scale, void* work, cudaStream_t s) {
  if (b.n_seqs <= 0 || b.n_tokens <= 0) return;
  JINX_CHECK(n_heads > 0 && kv.n_kv_heads > 0 && n_heads % kv.n_kv_heads == 0,
             "cuda attention: ", n_heads, " heads over ", kv.n_kv_heads, " kv heads");
  JINX_CHECK(b.max_context_len > 0, "cuda attention: max_context_len must be positive");
  AttnArgs a{};
  a.q = q;
  a.ldq = ldq;
  a.out = out;
  a.n_heads = n_heads;
  a.group = n_heads / kv.n_kv_heads;
  a.n_gchunks = (a.group + kHeadsPerBlock - 1) / kHeadsPerBlock;
  a.scale = scale > 0.0f ? scale : 1.0f / std::sqrt(static_cast<float>(kv.head_dim));
  a.n_tokens = b.n_tokens;
  a.skip_prefill = b.n_prefill_tiles > 0;
  // Split the KV range when the rows alone leave SMs idle.
  a.n_splits = 1;
  a.split_len = b.max_context_len;
  const int64_t blocks = a.n_tokens * kv.n_kv_heads * a.n_gchunks;
  if (b.fixed_split_len > 0) {
    JINX_CHECK(a.n_tokens <= kMaxSplitTokens && work != nullptr,
               "cuda attention: a fixed split needs work memory and at most ", kMaxSplitTokens,
               " rows");
    a.split_len = 0;  // per row, in the kernel
    a.n_splits = std::clamp<int64_t>((b.max_context_len + kMinSplit - 1) / kMinSplit, 1,
                                     b.fixed_split_len);
  } else if (a.n_tokens <= kMaxSplitTokens && work != nullptr) {
    const int64_t want = std::clamp<int64_t>((2 * sm_count() + blocks - 1) / blocks, 1, kMaxSplits);
    int64_t len = (b.max_context_len + want - 1) / want;
    len = std::max<int64_t>(64, (len + 15) / 16 * 16);
    a.n_splits = (b.max_context_len + len - 1) / len;
    a.split_len = len;
  }
  if (a.n_splits > 1) {
    a.part_ml = static_cast<float*>(work);
    a.part_acc = a.part_ml + a.n_splits * a.n_tokens * n_heads * 2;
  }
  const dim3 grid(static_cast<unsigned>(a.n_tokens),
                  static_cast<unsigned>(kv.n_kv_heads * a.n_gchunks),
                  static_cast<unsigned>(a.n_splits));
  switch (kv.dtype) {
    case DType::F32: launch<float>(a, kv, b, grid, kv.head_dim, s); break;
    case DType::F16: launch<__half>(a, kv, b, grid, kv.head_dim, s); break;
    case DType::BF16: launch<__nv_bfloat16>(a, kv, b, grid, kv.head_dim, s); break;
    default: fail("cuda attention: KV dtype ", name(kv.dtype), " is not f32, f16 or bf16");
  }
  check_launch("paged_attention");
  if (a.n_splits > 1) {
    merge_kernel<<<dim3(static_cast<unsigned>(a.n_tokens), static_cast<unsigned>(n_heads)), 64,
                   0, s>>>(a, b, kv.head_dim);
    check_launch("attention merge");
  }
  paged_attention_prefill(q, ldq, out, n_heads, kv, b, a.scale, s);
}

}  // namespace jinx::cuda

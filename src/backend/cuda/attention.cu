// Paged attention on the GPU: the KV store and one flash-attention style kernel for prefill
// chunks and decode, reading K/V straight from the paged blocks.
//
// A thread block handles one query row, one KV head and up to kHeadsPerBlock of the query heads
// that share it (GQA: each K/V row is read once per block for the whole group), over one range
// of KV positions: one warp per query head, 32 positions at a time (one score per lane), online
// softmax. When few query rows would leave SMs idle (decode), the KV range is split over more
// blocks ("flash decoding") whose partial states a second kernel merges (JINX_ATTN_MERGE=
// last-block: the last block of each row and head group to finish merges them, counted with an
// atomic per (row, group); one launch fewer, but measured slower on an H200).
#include <cuda_fp8.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <type_traits>

#include "backend/cuda/common.cuh"
#include "backend/cuda/kv_rows.cuh"
#include "core/check.h"

namespace jinx::cuda {

using namespace detail;

// attention_prefill.cu
void paged_attention_prefill(const float* q, int64_t ldq, float* out, int64_t n_heads,
                             const PagedKv& kv, const AttnBatch& b, float scale, cudaStream_t s);

namespace {

constexpr int kHeadsPerBlock = 8;
constexpr int kVBatch = 8;         // V rows loaded together in the decode kernel's weighted sum
constexpr int64_t kMinSplit = 32;  // fewest KV positions worth a block of their own

// One quantized row of n values from x into dst: codes, then the fp32 scale amax / qmax, with
// the CPU's arithmetic (backend/cpu/attention.cpp store_quantized): x * (1 / scale), int8
// rounded half away from zero and clamped to +-127, fp8 rounded to nearest even and saturated
// at +-448. One warp.
template <typename KV>
__device__ void store_quantized_row(const float* x, uint8_t* dst, int64_t n, int lane) {
  float amax = 0.0f;
  for (int64_t i = lane; i < n; i += 32) amax = fmaxf(amax, fabsf(x[i]));
  amax = warp_max(amax);
  constexpr bool kI8 = std::is_same_v<KV, I8Codes>;
  const float scale = amax / (kI8 ? 127.0f : 448.0f);
  const float inv = scale > 0.0f ? 1.0f / scale : 0.0f;
  for (int64_t i = lane; i < n; i += 32) {
    const float y = __fmul_rn(x[i], inv);
    if constexpr (kI8) {
      dst[i] = static_cast<uint8_t>(static_cast<int8_t>(fminf(fmaxf(roundf(y), -127.0f), 127.0f)));
    } else {
      dst[i] = static_cast<uint8_t>(__nv_cvt_float_to_fp8(y, __NV_SATFINITE, __NV_E4M3));
    }
  }
  if (lane == 0) *reinterpret_cast<float*>(dst + n) = scale;
}

// One block per token, one warp per (K or V, head) row.
template <typename KV>
__global__ void kv_store_quant_kernel(PagedKv kv, const float* k, const float* v, int64_t ld,
                                      const int64_t* slots) {
  pdl_begin();
  const int64_t t = blockIdx.x, slot = slots[t], hd = kv.head_dim, nk = kv.n_kv_heads;
  if (slot < 0 || slot >= kv.n_blocks * kv.block_size) return;
  const int lane = threadIdx.x & 31, n_warps = static_cast<int>(blockDim.x >> 5);
  for (int64_t job = threadIdx.x >> 5; job < 2 * nk; job += n_warps) {
    const bool is_v = job >= nk;
    const int64_t h = is_v ? job - nk : job;
    uint8_t* dst = static_cast<uint8_t*>(is_v ? kv.v : kv.k) + (slot * nk + h) * row_bytes<KV>(hd);
    store_quantized_row<KV>((is_v ? v : k) + t * ld + h * hd, dst, hd, lane);
  }
}

template <typename KV>
__global__ void kv_store_kernel(PagedKv kv, const float* k, const float* v, int64_t ld,
                                const int64_t* slots) {
  pdl_begin();
  const int64_t t = blockIdx.x, slot = slots[t], dim = kv.n_kv_heads * kv.head_dim;
  if (slot < 0 || slot >= kv.n_blocks * kv.block_size) return;
  KV* kd = static_cast<KV*>(kv.k) + slot * dim;
  KV* vd = static_cast<KV*>(kv.v) + slot * dim;
  for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) {
    kd[i] = from_f32<KV>(k[t * ld + i]);
    vd[i] = from_f32<KV>(v[t * ld + i]);
  }
}

template <typename KV>
__global__ void rope_kv_store_kernel(float* q, const float* k, const float* v, int64_t ld,
                                     int64_t n_q, PagedKv kv, const int32_t* positions,
                                     const float* inv_freq, bool interleaved,
                                     const int64_t* slots) {
  pdl_begin();
  const int64_t t = blockIdx.x, hd = kv.head_dim, half = hd / 2, n_k = kv.n_kv_heads;
  const int64_t slot = slots[t], dim = n_k * hd;
  const bool store = slot >= 0 && slot < kv.n_blocks * kv.block_size;
  KV* kd = static_cast<KV*>(kv.k) + (store ? slot : 0) * dim;
  KV* vd = static_cast<KV*>(kv.v) + (store ? slot : 0) * dim;
  const float pos = static_cast<float>(positions[t]);
  for (int64_t j = threadIdx.x; j < (n_q + n_k) * half; j += blockDim.x) {
    const int64_t h = j / half, i = j % half;
    float sn, cs;
    sincosf(pos * inv_freq[i], &sn, &cs);
    const int64_t ia = interleaved ? 2 * i : i, ib = interleaved ? 2 * i + 1 : i + half;
    if (h < n_q) {
      float* x = q + t * ld + h * hd;
      const float x0 = x[ia], x1 = x[ib];
      x[ia] = x0 * cs - x1 * sn;
      x[ib] = x1 * cs + x0 * sn;
    } else if (store) {
      const float* x = k + t * ld + (h - n_q) * hd;
      const float x0 = x[ia], x1 = x[ib];
      KV* o = kd + (h - n_q) * hd;
      o[ia] = from_f32<KV>(x0 * cs - x1 * sn);
      o[ib] = from_f32<KV>(x1 * cs + x0 * sn);
    }
  }
  if (store)
    for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) vd[i] = from_f32<KV>(v[t * ld + i]);
}

struct AttnArgs {
  const float* q;
  int64_t ldq;
  float* out;
  float* part_ml;   // [n_splits, n_tokens, n_heads, 2] (max, sum) when split
  float* part_acc;  // [n_splits, n_tokens, n_heads, head_dim]
  // Split and merged in the attention kernel: blocks done per (row, kv head and head chunk),
  // [n_tokens, gridDim.y]; zero between launches (the last block resets its count). Null: the
  // merge kernel merges.
  int* counters;
  // Decode steps with RoPE and the KV store done here (AttnNewKv; k_new null: done before).
  const float* k_new;
  const float* v_new;
  int64_t ld_new;
  const int32_t* positions;
  const float* inv_freq;
  const int64_t* slots;
  bool interleaved;
  int64_t n_heads, n_tokens, group, n_gchunks, split_len, n_splits;
  float scale;
  bool skip_prefill;  // rows of sequences with >= kPrefillMinRows new rows: the prefill kernel's
};

// The last s with query_start[s] <= t.
__device__ __forceinline__ int64_t seq_of_row(const AttnBatch& b, int64_t t) {
  int64_t lo = 0, hi = b.n_seqs - 1;
  while (lo < hi) {
    const int64_t mid = (lo + hi + 1) / 2;
    if (b.query_start[mid] <= t)
      lo = mid;
    else
      hi = mid - 1;
  }
  return lo;
}

// Element d of the head vector x (head_dim HD) rotated by position pos: the arithmetic of
// rope_kv_store_kernel, element by element.
template <int HD>
__device__ __forceinline__ float rotated(const float* x, int d, float pos, const float* inv_freq,
                                         bool interleaved) {
  constexpr int kHalf = HD / 2;
  const int i = interleaved ? d / 2 : d % kHalf;
  const int ia = interleaved ? 2 * i : i, ib = interleaved ? 2 * i + 1 : i + kHalf;
  float sn, cs;
  sincosf(pos * inv_freq[i], &sn, &cs);
  const float x0 = x[ia], x1 = x[ib];
  return d == ia ? x0 * cs - x1 * sn : x1 * cs + x0 * sn;
}

// Row t, head h: the n_splits partial states into out (threads i, i + n, ... take the head's
// dimensions). Loads through L2 (__ldcg): the partial states come from other blocks.
__device__ void merge_head(const AttnArgs& a, int64_t t, int64_t h, int64_t head_dim, int i,
                           int n) {
  float mx = -INFINITY;
  for (int64_t z = 0; z < a.n_splits; ++z)
    mx = fmaxf(mx, __ldcg(a.part_ml + ((z * a.n_tokens + t) * a.n_heads + h) * 2));
  for (int64_t d = i; d < head_dim; d += n) {
    float sum = 0.0f, o = 0.0f;
    for (int64_t z = 0; z < a.n_splits && mx != -INFINITY; ++z) {
      const int64_t idx = (z * a.n_tokens + t) * a.n_heads + h;
      const float mz = __ldcg(a.part_ml + idx * 2);
      if (mz == -INFINITY) continue;
      const float f = __expf(mz - mx);
      sum += __ldcg(a.part_ml + idx * 2 + 1) * f;
      o += __ldcg(a.part_acc + idx * head_dim + d) * f;
    }
    a.out[(t * a.n_heads + h) * head_dim + d] = sum > 0.0f ? o / sum : 0.0f;
  }
}

// The 16 / sizeof(KV) elements of a 16-byte vector of a K/V row, as fp32.
template <typename KV>
__device__ __forceinline__ void vec_to_f32(const uint4& u, float* f) {
  if constexpr (std::is_same_v<KV, float>) {
    f[0] = __uint_as_float(u.x), f[1] = __uint_as_float(u.y);
    f[2] = __uint_as_float(u.z), f[3] = __uint_as_float(u.w);
  } else {
    load8(reinterpret_cast<const KV*>(&u), f);
  }
}

// One block per (query row, kv head, KV range); one warp per query head of the group. A warp
// takes its KV range 32 positions at a time, one per lane: each lane computes its position's
// full score (K row from memory, q from shared memory), the warp folds the 32 scores into its
// running max and sum, then adds the 32 weighted V rows to the output (as 16-byte vectors, a
// lane's share of the rows loaded together with the K rows, where the row size allows; see
// kVecV). No cross-warp merge: a warp holds the complete state of its head.
template <typename KV, int HD>
__global__ void __launch_bounds__(kHeadsPerBlock * 32)
    attention_kernel(AttnArgs a, PagedKv kv, AttnBatch b) {
  pdl_begin();
  constexpr int kEpl = (HD + 31) / 32;  // output dimensions per lane
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

  __shared__ __align__(16) float qs[kHeadsPerBlock][HD];
  // Fused decode (a.k_new): the row's own new K and V rows, rotated and rounded to the cache's
  // type, as the cache will hold them; the block whose range ends the context uses these for the
  // last position, and the first head chunk's block stores them.
  constexpr bool kCanFuse = !kQuantized<KV>;
  __shared__ __align__(16) uint8_t new_rows[kCanFuse ? 2 : 1][kCanFuse ? HD * sizeof(KV) : 16];
  const bool fused = kCanFuse && a.k_new != nullptr;
  const int64_t last = kv_len - 1;
  const bool has_last = fused && kv0 <= last && last < kv1;
  const float pos = fused ? static_cast<float>(a.positions[t]) : 0.0f;
  for (int i = threadIdx.x; i < nh * HD; i += blockDim.x) {
    const float* qh = a.q + t * a.ldq + (h0 + i / HD) * HD;
    const float v = fused ? rotated<HD>(qh, i % HD, pos, a.inv_freq, a.interleaved) : qh[i % HD];
    qs[i / HD][i % HD] = v * a.scale;
  }
  if constexpr (kCanFuse) {
    if (has_last) {
      const float* kh = a.k_new + t * a.ld_new + kvh * HD;
      const float* vh = a.v_new + t * a.ld_new + kvh * HD;
      KV* kn = reinterpret_cast<KV*>(new_rows[0]);
      KV* vn = reinterpret_cast<KV*>(new_rows[1]);
      for (int d = threadIdx.x; d < HD; d += blockDim.x) {
        kn[d] = from_f32<KV>(rotated<HD>(kh, d, pos, a.inv_freq, a.interleaved));
        vn[d] = from_f32<KV>(vh[d]);
      }
    }
  }
  __syncthreads();
  if constexpr (kCanFuse) {
    const int64_t slot = has_last && gchunk == 0 ? a.slots[t] : -1;
    if (slot >= 0 && slot < kv.n_blocks * kv.block_size) {
      const int64_t at = (slot * kv.n_kv_heads + kvh) * HD;
      for (int d = threadIdx.x; d < HD; d += blockDim.x) {
        static_cast<KV*>(kv.k)[at + d] = reinterpret_cast<const KV*>(new_rows[0])[d];
        static_cast<KV*>(kv.v)[at + d] = reinterpret_cast<const KV*>(new_rows[1])[d];
      }
    }
  }
  // Warps past the group's heads have nothing to compute; they stay for the barriers of the
  // in-kernel merge.
  const bool has_head = warp < nh;
  const float* qv = qs[has_head ? warp : 0];

  // V rows as 16-byte vectors where a row is a whole number of them and 32 lanes hold a whole
  // number of rows (bf16/f16 with head_dim 64, 128 or 256, fp32 with 64 or 128): lane = (r, e)
  // takes vector e of the rows of positions r, r + kPpl, ..., kVLoads rows per batch, all
  // loaded before the first multiply-add; the kPpl partial sums of each dimension are added
  // across lanes once, after the last position. The other caches: a lane owns dimensions
  // lane, lane + 32, ... and the warp reads V rows element by element, kVBatch rows at a time.
  constexpr bool kVecV = !kQuantized<KV> && (HD * sizeof(KV)) % 16 == 0 &&
                         32 % (HD * sizeof(KV) / 16) == 0;
  constexpr int kVec = kVecV ? static_cast<int>(16 / sizeof(KV)) : 1;  // elements per vector
  constexpr int kLpr = kVecV ? HD / kVec : 32;                         // lanes per V row
  constexpr int kPpl = 32 / kLpr;                                      // rows per warp load
  constexpr int kVLoads = kVecV ? (32 / kPpl < 8 ? 32 / kPpl : 8) : 1;  // loads per lane, batch
  constexpr int kVPos = kPpl * kVLoads;                                // positions per batch
  constexpr int kOut = kVecV ? kVec : kEpl;  // output values a lane holds
  const int vr_lane = lane / kLpr, ve = lane % kLpr;

  float m = -INFINITY, l = 0.0f, o[kOut];
#pragma unroll
  for (int j = 0; j < kOut; ++j) o[j] = 0.0f;
  // Rows in bytes: slot s, head h at (s * n_kv_heads + h) * row_bytes.
  const int64_t rb = row_bytes<KV>(HD), row_stride = kv.n_kv_heads * rb;
  const uint8_t* kbase = static_cast<const uint8_t*>(kv.k) + kvh * rb;
  const uint8_t* vbase = static_cast<const uint8_t*>(kv.v) + kvh * rb;
  for (int64_t c0 = kv0; has_head && c0 < kv1; c0 += 32) {
    const int64_t p = c0 + lane;
    const bool valid = p < kv1;
    const int n_valid = static_cast<int>(kv1 - c0 < 32 ? kv1 - c0 : 32);
    const int64_t slot =
        valid ? int64_t{bt[p / kv.block_size]} * kv.block_size + p % kv.block_size : 0;
    // The vector path's first batch of V rows, loaded with the K rows (their addresses need
    // only the slots).
    uint4 vu[kVLoads];
    const auto load_v = [&](int jb) {
#pragma unroll
      for (int i = 0; i < kVLoads; ++i) {
        const int j = jb + i * kPpl + vr_lane;
        const int64_t sj = __shfl_sync(0xffffffffu, slot, j & 31);
        if (j < n_valid) {
          const uint8_t* vr = has_last && c0 + j == last ? new_rows[1] : vbase + sj * row_stride;
          vu[i] = *reinterpret_cast<const uint4*>(vr + ve * 16);
        } else {
          vu[i] = make_uint4(0, 0, 0, 0);  // the pool's unused rows may hold anything
        }
      }
    };
    if constexpr (kVecV) load_v(0);
    float score = -INFINITY, vscale = 0.0f;
    if (valid) {
      const uint8_t* kr = has_last && p == last ? new_rows[0] : kbase + slot * row_stride;
      float s0 = 0.0f, s1 = 0.0f, f[8];
#pragma unroll
      for (int d = 0; d < HD; d += 8) {
        row_load8<KV>(kr, d, f);
        const float4 qa = *reinterpret_cast<const float4*>(qv + d);
        const float4 qb = *reinterpret_cast<const float4*>(qv + d + 4);
        s0 += f[0] * qa.x + f[1] * qa.y + f[2] * qa.z + f[3] * qa.w;
        s1 += f[4] * qb.x + f[5] * qb.y + f[6] * qb.z + f[7] * qb.w;
      }
      score = (s0 + s1) * row_scale<KV>(kr, HD);
      vscale = row_scale<KV>(vbase + slot * row_stride, HD);
    }
    const float m_new = fmaxf(m, warp_max(score));
    const float corr = __expf(m - m_new);  // m_new is finite: lane 0's position is valid
    const float pw = valid ? __expf(score - m_new) : 0.0f;
    l = l * corr + warp_sum(pw);
    m = m_new;
#pragma unroll
    for (int j = 0; j < kOut; ++j) o[j] *= corr;
    const float pv = pw * vscale;  // a quantized V row's scale folded into its weight
    if constexpr (kVecV) {
      for (int jb = 0; jb < n_valid; jb += kVPos) {
        if (jb > 0) load_v(jb);
#pragma unroll
        for (int i = 0; i < kVLoads; ++i) {
          const float pj = __shfl_sync(0xffffffffu, pv, (jb + i * kPpl + vr_lane) & 31);
          float f[kVec];
          vec_to_f32<KV>(vu[i], f);
#pragma unroll
          for (int k = 0; k < kVec; ++k) o[k] += pj * f[k];
        }
      }
    } else {
      // The weighted V rows, kVBatch positions at a time: all their loads are issued before
      // the first multiply-add waits on one (a warp issues in order, so one position per step
      // would pay a full memory latency per position). The sums keep their order.
      for (int j0 = 0; j0 < n_valid; j0 += kVBatch) {
        float pj[kVBatch], vv[kVBatch][kOut];
#pragma unroll
        for (int u = 0; u < kVBatch; ++u) {
          const int j = j0 + u;  // the same for the whole warp
          pj[u] = __shfl_sync(0xffffffffu, pv, j & 31);
          const int64_t sj = __shfl_sync(0xffffffffu, slot, j & 31);
          const uint8_t* vr = has_last && c0 + j == last ? new_rows[1] : vbase + sj * row_stride;
#pragma unroll
          for (int k = 0; k < kOut; ++k) {
            const int d = lane + 32 * k;
            vv[u][k] = j < n_valid && d < HD ? row_at<KV>(vr, d) : 0.0f;
          }
        }
#pragma unroll
        for (int u = 0; u < kVBatch; ++u)
#pragma unroll
          for (int k = 0; k < kOut; ++k)
            if (j0 + u < n_valid) o[k] += pj[u] * vv[u][k];
      }
    }
  }
  if constexpr (kVecV) {
    // The kPpl lanes holding the same dimensions (lanes e, e + kLpr, ...) add their sums.
#pragma unroll
    for (int off = kLpr; off < 32; off <<= 1)
#pragma unroll
      for (int k = 0; k < kOut; ++k) o[k] += __shfl_xor_sync(0xffffffffu, o[k], off);
  }
  // The head dimension of this lane's output value k (-1: none).
  const auto out_dim = [&](int k) -> int {
    if constexpr (kVecV) return lane < kLpr ? lane * kVec + k : -1;
    const int d = lane + 32 * k;
    return d < HD ? d : -1;
  };
  const int64_t head = h0 + warp;
  if (a.n_splits == 1) {
    if (!has_head) return;
    const float inv = l > 0.0f ? 1.0f / l : 0.0f;
#pragma unroll
    for (int k = 0; k < kOut; ++k) {
      const int d = out_dim(k);
      if (d >= 0) a.out[(t * a.n_heads + head) * HD + d] = o[k] * inv;
    }
    return;
  }
  if (has_head) {
    const int64_t idx = (blockIdx.z * a.n_tokens + t) * a.n_heads + head;
#pragma unroll
    for (int k = 0; k < kOut; ++k) {
      const int d = out_dim(k);
      if (d >= 0) a.part_acc[idx * HD + d] = o[k];
    }
    if (lane == 0) {
      a.part_ml[idx * 2] = kv0 < kv1 ? m : -INFINITY;
      a.part_ml[idx * 2 + 1] = l;
    }
  }
  if (a.counters == nullptr) return;  // merge_kernel merges
  // The last of the row's n_splits blocks (for this head group) to get here merges: every
  // block makes its partial state visible device-wide before it counts itself.
  __threadfence();
  __syncthreads();
  __shared__ bool last_block;
  int* count = a.counters + t * gridDim.y + blockIdx.y;
  if (threadIdx.x == 0) last_block = atomicAdd(count, 1) == static_cast<int>(a.n_splits) - 1;
  __syncthreads();
  if (!last_block) return;
  __threadfence();
  if (threadIdx.x == 0) *count = 0;  // for the next launch (a graph replays this one)
  if (has_head) merge_head(a, t, head, HD, lane, 32);
}

__global__ void merge_kernel(AttnArgs a, AttnBatch b, int64_t head_dim) {
  pdl_begin();
  const int64_t t = blockIdx.x, h = blockIdx.y;
  if (a.skip_prefill) {
    const int64_t s = seq_of_row(b, t);
    if (b.query_start[s + 1] - b.query_start[s] >= kPrefillMinRows) return;
  }
  merge_head(a, t, h, head_dim, threadIdx.x, blockDim.x);
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
void launch_rows(const AttnArgs& a, const PagedKv& kv, const AttnBatch& b, dim3 grid, int64_t hd,
                 cudaStream_t s) {
  const dim3 block(static_cast<unsigned>(32 * std::min<int64_t>(a.group, kHeadsPerBlock)));
  switch (hd) {
    case 64:
      launch(attention_kernel<KV, 64>, grid, block, 0, s, "attention_kernel", a, kv, b);
      break;
    case 80:
      launch(attention_kernel<KV, 80>, grid, block, 0, s, "attention_kernel", a, kv, b);
      break;
    case 96:
      launch(attention_kernel<KV, 96>, grid, block, 0, s, "attention_kernel", a, kv, b);
      break;
    case 128:
      launch(attention_kernel<KV, 128>, grid, block, 0, s, "attention_kernel", a, kv, b);
      break;
    case 256:
      launch(attention_kernel<KV, 256>, grid, block, 0, s, "attention_kernel", a, kv, b);
      break;
    default:
      fail("cuda attention: head_dim ", hd, " is not 64, 80, 96, 128 or 256");
  }
}

}  // namespace

void kv_store(const PagedKv& kv, const float* k, const float* v, int64_t ld,
              const int64_t* slot_mapping, int64_t n_tokens, cudaStream_t s) {
  if (n_tokens <= 0) return;
  const unsigned grid = static_cast<unsigned>(n_tokens);
  switch (kv.dtype) {
    case DType::F32:
      launch(kv_store_kernel<float>, grid, 128, 0, s, "kv_store_kernel", kv, k, v, ld,
             slot_mapping);
      break;
    case DType::F16:
      launch(kv_store_kernel<__half>, grid, 128, 0, s, "kv_store_kernel", kv, k, v, ld,
             slot_mapping);
      break;
    case DType::BF16:
      launch(kv_store_kernel<__nv_bfloat16>, grid, 128, 0, s, "kv_store_kernel", kv, k, v, ld,
             slot_mapping);
      break;
    case DType::I8:
      launch(kv_store_quant_kernel<I8Codes>, grid, 256, 0, s, "kv_store_quant_kernel", kv, k, v, ld,
             slot_mapping);
      break;
    case DType::F8_E4M3:
      launch(kv_store_quant_kernel<F8Codes>, grid, 256, 0, s, "kv_store_quant_kernel", kv, k, v, ld,
             slot_mapping);
      break;
    default:
      fail("cuda kv_store: KV dtype ", name(kv.dtype), " is not f32, f16, bf16, int8 or fp8");
  }
}

void rope_kv_store(float* q, const float* k, const float* v, int64_t ld, int64_t n_tokens,
                   int64_t n_q_heads, const int32_t* positions, const float* inv_freq,
                   bool interleaved, const PagedKv& kv, const int64_t* slot_mapping,
                   cudaStream_t s) {
  if (n_tokens <= 0) return;
  if (kv.dtype == DType::I8 || kv.dtype == DType::F8_E4M3) {
    // A quantized row's scale needs the whole rotated row: rotate in place, then store.
    rope(q, const_cast<float*>(k), ld, n_tokens, n_q_heads, kv.n_kv_heads, kv.head_dim, positions,
         inv_freq, interleaved, s);
    kv_store(kv, k, v, ld, slot_mapping, n_tokens, s);
    return;
  }
  const unsigned grid = static_cast<unsigned>(n_tokens);
  switch (kv.dtype) {
    case DType::F32:
      launch(rope_kv_store_kernel<float>, grid, 256, 0, s, "rope_kv_store_kernel", q, k, v, ld,
             n_q_heads, kv, positions, inv_freq, interleaved, slot_mapping);
      break;
    case DType::F16:
      launch(rope_kv_store_kernel<__half>, grid, 256, 0, s, "rope_kv_store_kernel", q, k, v, ld,
             n_q_heads, kv, positions, inv_freq, interleaved, slot_mapping);
      break;
    case DType::BF16:
      launch(rope_kv_store_kernel<__nv_bfloat16>, grid, 256, 0, s, "rope_kv_store_kernel", q, k, v,
             ld, n_q_heads, kv, positions, inv_freq, interleaved, slot_mapping);
      break;
    default:
      fail("cuda rope_kv_store: KV dtype ", name(kv.dtype), " is not f32, f16 or bf16");
  }
}

namespace {

// The merge counters at the front of the work memory (n_tokens * n_heads bounds the blocks of
// a row's grid), then the partial states.
size_t counter_bytes(int64_t n_tokens, int64_t n_heads) {
  return (static_cast<size_t>(n_tokens * n_heads) * sizeof(int) + 255) / 256 * 256;
}

bool merge_in_kernel_default() {
  const char* v = std::getenv("JINX_ATTN_MERGE");
  return v && std::strcmp(v, "last-block") == 0;
}

bool g_merge_in_kernel = merge_in_kernel_default();

}  // namespace

bool attention_merge_in_kernel() {
  return g_merge_in_kernel;
}

void set_attention_merge_in_kernel(bool on) {
  g_merge_in_kernel = on;
}

size_t attention_work_bytes(int64_t n_tokens, int64_t n_heads, int64_t head_dim) {
  if (n_tokens > kMaxSplitTokens) return 0;
  return counter_bytes(kMaxSplitTokens, n_heads) +
         static_cast<size_t>(kMaxSplits * n_tokens * n_heads * (head_dim + 2)) * sizeof(float);
}

bool attention_fuses_rope(const PagedKv& kv) {
  return kv.dtype == DType::F32 || kv.dtype == DType::F16 || kv.dtype == DType::BF16;
}

void paged_attention(const float* q, int64_t ldq, float* out, int64_t n_heads, const PagedKv& kv,
                     const AttnBatch& b, float scale, void* work, cudaStream_t s,
                     const AttnNewKv* new_kv) {
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
  if (new_kv) {
    JINX_CHECK(attention_fuses_rope(kv) && b.n_prefill_tiles == 0 && b.n_tokens == b.n_seqs,
               "cuda attention: RoPE and the KV store fuse only into decode steps over bf16, "
               "f16 or f32 KV");
    JINX_CHECK(new_kv->k && new_kv->v && new_kv->positions && new_kv->inv_freq && new_kv->slots,
               "cuda attention: incomplete AttnNewKv");
    a.k_new = new_kv->k;
    a.v_new = new_kv->v;
    a.ld_new = new_kv->ld;
    a.positions = new_kv->positions;
    a.inv_freq = new_kv->inv_freq;
    a.interleaved = new_kv->interleaved;
    a.slots = new_kv->slots;
  }
  // Split the KV range when the rows alone leave SMs idle.
  a.n_splits = 1;
  a.split_len = b.max_context_len;
  const int64_t blocks = a.n_tokens * kv.n_kv_heads * a.n_gchunks;
  if (b.fixed_split_len > 0) {
    JINX_CHECK(a.n_tokens <= kMaxSplitTokens && work != nullptr,
               "cuda attention: a fixed split needs work memory and at most ", kMaxSplitTokens,
               " rows");
    a.split_len = 0;  // per row, in the kernel
    a.n_splits =
        std::clamp<int64_t>((b.max_context_len + kMinSplit - 1) / kMinSplit, 1, b.fixed_split_len);
  } else if (a.n_tokens <= kMaxSplitTokens && work != nullptr) {
    const int64_t want = std::clamp<int64_t>((2 * sm_count() + blocks - 1) / blocks, 1, kMaxSplits);
    int64_t len = (b.max_context_len + want - 1) / want;
    len = std::max<int64_t>(64, (len + 15) / 16 * 16);
    a.n_splits = (b.max_context_len + len - 1) / len;
    a.split_len = len;
  }
  if (a.n_splits > 1) {
    uint8_t* w = static_cast<uint8_t*>(work);
    if (g_merge_in_kernel) a.counters = reinterpret_cast<int*>(w);
    a.part_ml = reinterpret_cast<float*>(w + counter_bytes(kMaxSplitTokens, n_heads));
    a.part_acc = a.part_ml + a.n_splits * a.n_tokens * n_heads * 2;
  }
  const dim3 grid(static_cast<unsigned>(a.n_tokens),
                  static_cast<unsigned>(kv.n_kv_heads * a.n_gchunks),
                  static_cast<unsigned>(a.n_splits));
  switch (kv.dtype) {
    case DType::F32:
      launch_rows<float>(a, kv, b, grid, kv.head_dim, s);
      break;
    case DType::F16:
      launch_rows<__half>(a, kv, b, grid, kv.head_dim, s);
      break;
    case DType::BF16:
      launch_rows<__nv_bfloat16>(a, kv, b, grid, kv.head_dim, s);
      break;
    case DType::I8:
      launch_rows<I8Codes>(a, kv, b, grid, kv.head_dim, s);
      break;
    case DType::F8_E4M3:
      launch_rows<F8Codes>(a, kv, b, grid, kv.head_dim, s);
      break;
    default:
      fail("cuda attention: KV dtype ", name(kv.dtype), " is not f32, f16, bf16, int8 or fp8");
  }
  if (a.n_splits > 1 && a.counters == nullptr) {
    launch(merge_kernel, dim3(static_cast<unsigned>(a.n_tokens), static_cast<unsigned>(n_heads)),
           64, 0, s, "merge_kernel", a, b, kv.head_dim);
  }
  paged_attention_prefill(q, ldq, out, n_heads, kv, b, a.scale, s);
}

}  // namespace jinx::cuda

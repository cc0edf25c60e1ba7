// The small kernels of a layer: embedding gather, RMSNorm (with the residual add fused), bias,
// RoPE, SiLU x gate, argmax, conversions; and the device queries.
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <string>

#include "backend/cuda/common.cuh"
#include "backend/cuda/quant.cuh"
#include "core/check.h"

namespace jinx::cuda {

using namespace detail;

void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) fail("CUDA: ", what, ": ", cudaGetErrorString(e));
}

namespace {
std::atomic<int> pdl_state{-1};  // -1: not decided yet, 0: off, 1: on
}

bool pdl_enabled() {
  if (pdl_state < 0) {
    const char* env = std::getenv("JINX_PDL");
    int dev = 0, major = 0;
    const bool ok =
        cudaGetDevice(&dev) == cudaSuccess &&
        cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) == cudaSuccess;
    if (!ok) cudaGetLastError();
    pdl_state = ok && major >= 9 && !(env && std::string(env) == "0") ? 1 : 0;
  }
  return pdl_state == 1;
}

void pdl_disable() {
  pdl_state = 0;
}

int device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky "no device" error
    return 0;
  }
  return n;
}

std::string describe_device(int device) {
  cudaDeviceProp p{};
  check(cudaGetDeviceProperties(&p, device), "cudaGetDeviceProperties");
  return str(p.name, " (sm_", p.major, p.minor, ", ", p.multiProcessorCount, " SMs, ",
             p.totalGlobalMem >> 30, " GiB)");
}

namespace {

__global__ void embed_kernel(DeviceMatrix w, const int32_t* tokens, const int32_t* prev,
                             float* out) {
  pdl_begin();
  const int64_t t = blockIdx.x;
  int32_t id = tokens[t];
  if (id < 0 && prev) id = prev[-(id + 1)];  // a placeholder: the previous step's pick
  float* o = out + t * w.cols;
  if (id < 0 || id >= w.rows) {
    for (int64_t c = threadIdx.x; c < w.cols; c += blockDim.x) o[c] = 0.0f;
    return;
  }
  for (int64_t c = threadIdx.x; c < w.cols; c += blockDim.x) o[c] = load_weight(w, id, c);
}

__global__ void rmsnorm_kernel(const float* x, const float* r, float* xr, const float* w,
                               float* out, int64_t n, float eps) {
  pdl_begin();
  const int64_t row = blockIdx.x;
  const float* xi = x + row * n;
  float ss = 0.0f;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
    float v = xi[i];
    if (r) {
      v += r[row * n + i];
      xr[row * n + i] = v;  // same thread reads it back below
    }
    ss += v * v;
  }
  const float inv = rsqrtf(block_sum(ss) / static_cast<float>(n) + eps);
  const float* src = r ? xr + row * n : xi;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) out[row * n + i] = src[i] * inv * w[i];
}

__global__ void add_bias_kernel(float* y, int64_t ldy, const float* bias, int64_t total,
                                int64_t n) {
  pdl_begin();
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i < total) y[(i / n) * ldy + i % n] += bias[i % n];
}

__global__ void rmsnorm_heads_kernel(float* x, int64_t ld, int64_t n_heads, int64_t hd,
                                     const float* w, float eps) {
  pdl_begin();
  // One warp per head; blockIdx.x = token, threadIdx.y = head within a group of 4.
  const int64_t h = blockIdx.y * 4 + threadIdx.y;
  if (h >= n_heads) return;
  float* v = x + blockIdx.x * ld + h * hd;
  float ss = 0.0f;
  for (int64_t i = threadIdx.x; i < hd; i += 32) ss += v[i] * v[i];
  const float inv = rsqrtf(warp_sum(ss) / static_cast<float>(hd) + eps);
  for (int64_t i = threadIdx.x; i < hd; i += 32) v[i] = v[i] * inv * w[i];
}

__global__ void rope_kernel(float* q, float* k, int64_t ld, int64_t n_q, int64_t n_k,
                            int64_t head_dim, const int32_t* positions, const float* inv_freq,
                            bool interleaved) {
  pdl_begin();
  const int64_t t = blockIdx.x, half = head_dim / 2;
  const float pos = static_cast<float>(positions[t]);
  for (int64_t j = threadIdx.x; j < (n_q + n_k) * half; j += blockDim.x) {
    const int64_t h = j / half, i = j % half;
    float sn, cs;
    sincosf(pos * inv_freq[i], &sn, &cs);
    float* v = h < n_q ? q + t * ld + h * head_dim : k + t * ld + (h - n_q) * head_dim;
    const int64_t a = interleaved ? 2 * i : i, b = interleaved ? 2 * i + 1 : i + half;
    const float x0 = v[a], x1 = v[b];
    v[a] = x0 * cs - x1 * sn;
    v[b] = x1 * cs + x0 * sn;
  }
}

__global__ void silu_mul_kernel(const float* gu, int64_t n_tokens, int64_t n, float* out) {
  pdl_begin();
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= n_tokens * n) return;
  const int64_t t = i / n, c = i % n;
  const float g = gu[t * 2 * n + c];
  out[i] = g / (1.0f + expf(-g)) * gu[t * 2 * n + n + c];
}

// Argmax in two kernels: blocks over (row, chunk of the row) fold their best (value, index)
// into one 64-bit key per row with atomicMax (value bits made order-preserving in the high
// word, the complemented index in the low word so that ties go to the lowest index); then the
// keys become indices. A row of 152k logits is read by ~37 blocks instead of one.
constexpr int kArgmaxChunk = 4096;

__device__ __forceinline__ unsigned long long argmax_key(float v, int64_t i) {
  uint32_t u = __float_as_uint(v);
  u = (u & 0x80000000u) ? ~u : (u | 0x80000000u);  // monotone in v
  return (static_cast<unsigned long long>(u) << 32) | (0xffffffffu - static_cast<uint32_t>(i));
}

__global__ void argmax_partial_kernel(const float* x, int64_t n, unsigned long long* keys) {
  pdl_begin();
  const float* xr = x + blockIdx.x * n;
  const int64_t c0 = blockIdx.y * static_cast<int64_t>(kArgmaxChunk);
  const int64_t c1 = c0 + kArgmaxChunk < n ? c0 + kArgmaxChunk : n;
  unsigned long long best = 0;
  for (int64_t i = c0 + threadIdx.x; i < c1; i += blockDim.x) {
    const float v = xr[i];
    if (v == v) best = max(best, argmax_key(v, i));  // NaN never wins
  }
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) best = max(best, __shfl_xor_sync(0xffffffffu, best, o));
  __shared__ unsigned long long warp_best[32];
  if ((threadIdx.x & 31) == 0) warp_best[threadIdx.x >> 5] = best;
  __syncthreads();
  if (threadIdx.x == 0) {
    for (int w = 1; w < static_cast<int>(blockDim.x >> 5); ++w) best = max(best, warp_best[w]);
    atomicMax(&keys[blockIdx.x], best);
  }
}

__global__ void argmax_finish_kernel(const unsigned long long* keys, int64_t n_rows, int32_t* out) {
  pdl_begin();
  const int64_t r = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (r >= n_rows) return;
  const unsigned long long k = keys[r];
  out[r] = k == 0 ? 0 : static_cast<int32_t>(0xffffffffu - static_cast<uint32_t>(k & 0xffffffffu));
}

__global__ void gather_rows_kernel(const float* x, int64_t n, const int32_t* rows, float* out) {
  pdl_begin();
  const float* src = x + int64_t{rows[blockIdx.x]} * n;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) out[blockIdx.x * n + i] = src[i];
}

__global__ void f32_to_bf16_kernel(const float* in, __nv_bfloat16* out, int64_t n) {
  pdl_begin();
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i < n) out[i] = __float2bfloat16_rn(in[i]);
}

int norm_threads(int64_t n) {
  return n >= 1024 ? 1024 : n >= 256 ? 256 : 128;
}

}  // namespace

void embed(const DeviceMatrix& table, const int32_t* tokens, int64_t n, float* out,
           cudaStream_t s, const int32_t* prev_picks) {
  if (n <= 0) return;
  launch(embed_kernel, static_cast<unsigned>(n), 256, 0, s, "embed_kernel", table, tokens,
         prev_picks, out);
  check_launch("embed");
}

void rmsnorm(const float* x, const float* w, float* out, int64_t n_rows, int64_t n, float eps,
             cudaStream_t s) {
  if (n_rows <= 0) return;
  launch(rmsnorm_kernel, static_cast<unsigned>(n_rows), norm_threads(n), 0, s, "rmsnorm_kernel", x,
         nullptr, nullptr, w, out, n, eps);
  check_launch("rmsnorm");
}

void add_rmsnorm(float* x, const float* r, const float* w, float* out, int64_t n_rows, int64_t n,
                 float eps, cudaStream_t s) {
  if (n_rows <= 0) return;
  launch(rmsnorm_kernel, static_cast<unsigned>(n_rows), norm_threads(n), 0, s, "rmsnorm_kernel", x,
         r, x, w, out, n, eps);
  check_launch("add_rmsnorm");
}

void add_bias(float* y, int64_t ldy, const float* bias, int64_t n_tokens, int64_t n,
              cudaStream_t s) {
  const int64_t total = n_tokens * n;
  if (total <= 0) return;
  launch(add_bias_kernel, blocks_for(total, 256), 256, 0, s, "add_bias_kernel", y, ldy, bias, total,
         n);
  check_launch("add_bias");
}

void rmsnorm_heads(float* x, int64_t ld, int64_t n_tokens, int64_t n_heads, int64_t head_dim,
                   const float* w, float eps, cudaStream_t s) {
  if (n_tokens <= 0) return;
  const dim3 grid(static_cast<unsigned>(n_tokens), blocks_for(n_heads, 4));
  launch(rmsnorm_heads_kernel, grid, dim3(32, 4), 0, s, "rmsnorm_heads_kernel", x, ld, n_heads,
         head_dim, w, eps);
  check_launch("rmsnorm_heads");
}

void rope(float* q, float* k, int64_t ld, int64_t n_tokens, int64_t n_q_heads, int64_t n_k_heads,
          int64_t head_dim, const int32_t* positions, const float* inv_freq, bool interleaved,
          cudaStream_t s) {
  if (n_tokens <= 0) return;
  launch(rope_kernel, static_cast<unsigned>(n_tokens), 256, 0, s, "rope_kernel", q, k, ld,
         n_q_heads, n_k_heads, head_dim, positions, inv_freq, interleaved);
  check_launch("rope");
}

void silu_mul(const float* gu, int64_t n_tokens, int64_t n, float* out, cudaStream_t s) {
  if (n_tokens * n <= 0) return;
  launch(silu_mul_kernel, blocks_for(n_tokens * n, 256), 256, 0, s, "silu_mul_kernel", gu, n_tokens,
         n, out);
  check_launch("silu_mul");
}

void argmax_rows(const float* x, int64_t n_rows, int64_t n, int32_t* out, unsigned long long* keys,
                 cudaStream_t s) {
  if (n_rows <= 0) return;
  check(cudaMemsetAsync(keys, 0, static_cast<size_t>(n_rows) * sizeof(*keys), s), "argmax keys");
  const dim3 grid(static_cast<unsigned>(n_rows), blocks_for(n, kArgmaxChunk));
  launch(argmax_partial_kernel, grid, 256, 0, s, "argmax_partial_kernel", x, n, keys);
  launch(argmax_finish_kernel, blocks_for(n_rows, 128), 128, 0, s, "argmax_finish_kernel", keys,
         n_rows, out);
  check_launch("argmax_rows");
}

void gather_rows(const float* x, int64_t n, const int32_t* rows, int64_t n_rows, float* out,
                 cudaStream_t s) {
  if (n_rows <= 0) return;
  launch(gather_rows_kernel, static_cast<unsigned>(n_rows), 256, 0, s, "gather_rows_kernel", x, n,
         rows, out);
  check_launch("gather_rows");
}

void convert_f32_to_bf16(const float* in, uint16_t* out, int64_t n, cudaStream_t s) {
  if (n <= 0) return;
  launch(f32_to_bf16_kernel, blocks_for(n, 256), 256, 0, s, "f32_to_bf16_kernel", in,
         reinterpret_cast<__nv_bfloat16*>(out), n);
  check_launch("convert_f32_to_bf16");
}

}  // namespace jinx::cuda

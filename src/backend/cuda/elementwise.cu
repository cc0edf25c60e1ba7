// The small kernels of a layer: embedding gather, RMSNorm (with the residual add fused), bias,
// RoPE, SiLU x gate, argmax, conversions; and the device queries.
#include <cmath>
#include <string>

#include "backend/cuda/common.cuh"
#include "backend/cuda/quant.cuh"
#include "core/check.h"

namespace jinx::cuda {

using namespace detail;

void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) fail("CUDA: ", what, ": ", cudaGetErrorString(e));
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

__global__ void embed_kernel(DeviceMatrix w, const int32_t* tokens, float* out) {
  const int64_t t = blockIdx.x;
  const int32_t id = tokens[t];
  float* o = out + t * w.cols;
  if (id < 0 || id >= w.rows) {
    for (int64_t c = threadIdx.x; c < w.cols; c += blockDim.x) o[c] = 0.0f;
    return;
  }
  for (int64_t c = threadIdx.x; c < w.cols; c += blockDim.x) o[c] = load_weight(w, id, c);
}

__global__ void rmsnorm_kernel(const float* x, const float* r, float* xr, const float* w,
                               float* out, int64_t n, float eps) {
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
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i < total) y[(i / n) * ldy + i % n] += bias[i % n];
}

__global__ void rmsnorm_heads_kernel(float* x, int64_t ld, int64_t n_heads, int64_t hd,
                                     const float* w, float eps) {
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
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= n_tokens * n) return;
  const int64_t t = i / n, c = i % n;
  const float g = gu[t * 2 * n + c];
  out[i] = g / (1.0f + expf(-g)) * gu[t * 2 * n + n + c];
}

__global__ void argmax_kernel(const float* x, int64_t n, int32_t* out) {
  const float* xr = x + blockIdx.x * n;
  float best = -INFINITY;
  int64_t arg = n;  // "none yet": loses every tie
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
    const float v = xr[i];
    if (arg == n || v > best) {  // ascending i: a tie keeps the lowest index
      best = v;
      arg = i;
    }
  }
  __shared__ float sv[1024];
  __shared__ int64_t si[1024];
  sv[threadIdx.x] = best;
  si[threadIdx.x] = arg;
  __syncthreads();
  for (int o = blockDim.x / 2; o > 0; o >>= 1) {
    if (threadIdx.x < o) {
      const float v = sv[threadIdx.x + o];
      const int64_t i = si[threadIdx.x + o];
      if (v > sv[threadIdx.x] || (v == sv[threadIdx.x] && i < si[threadIdx.x])) {
        sv[threadIdx.x] = v;
        si[threadIdx.x] = i;
      }
    }
    __syncthreads();
  }
  if (threadIdx.x == 0) out[blockIdx.x] = static_cast<int32_t>(si[0] < n ? si[0] : 0);
}

__global__ void gather_rows_kernel(const float* x, int64_t n, const int32_t* rows, float* out) {
  const float* src = x + int64_t{rows[blockIdx.x]} * n;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) out[blockIdx.x * n + i] = src[i];
}

__global__ void f32_to_bf16_kernel(const float* in, __nv_bfloat16* out, int64_t n) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i < n) out[i] = __float2bfloat16_rn(in[i]);
}

int norm_threads(int64_t n) { return n >= 1024 ? 1024 : n >= 256 ? 256 : 128; }

}  // namespace

void embed(const DeviceMatrix& table, const int32_t* tokens, int64_t n, float* out,
           cudaStream_t s) {
  if (n <= 0) return;
  embed_kernel<<<static_cast<unsigned>(n), 256, 0, s>>>(table, tokens, out);
  check_launch("embed");
}

void rmsnorm(const float* x, const float* w, float* out, int64_t n_rows, int64_t n, float eps,
             cudaStream_t s) {
  if (n_rows <= 0) return;
  rmsnorm_kernel<<<static_cast<unsigned>(n_rows), norm_threads(n), 0, s>>>(x, nullptr, nullptr, w,
                                                                           out, n, eps);
  check_launch("rmsnorm");
}

void add_rmsnorm(float* x, const float* r, const float* w, float* out, int64_t n_rows, int64_t n,
                 float eps, cudaStream_t s) {
  if (n_rows <= 0) return;
  rmsnorm_kernel<<<static_cast<unsigned>(n_rows), norm_threads(n), 0, s>>>(x, r, x, w, out, n,
                                                                           eps);
  check_launch("add_rmsnorm");
}

void add_bias(float* y, int64_t ldy, const float* bias, int64_t n_tokens, int64_t n,
              cudaStream_t s) {
  const int64_t total = n_tokens * n;
  if (total <= 0) return;
  add_bias_kernel<<<blocks_for(total, 256), 256, 0, s>>>(y, ldy, bias, total, n);
  check_launch("add_bias");
}

void rmsnorm_heads(float* x, int64_t ld, int64_t n_tokens, int64_t n_heads, int64_t head_dim,
                   const float* w, float eps, cudaStream_t s) {
  if (n_tokens <= 0) return;
  const dim3 grid(static_cast<unsigned>(n_tokens), blocks_for(n_heads, 4));
  rmsnorm_heads_kernel<<<grid, dim3(32, 4), 0, s>>>(x, ld, n_heads, head_dim, w, eps);
  check_launch("rmsnorm_heads");
}

void rope(float* q, float* k, int64_t ld, int64_t n_tokens, int64_t n_q_heads, int64_t n_k_heads,
          int64_t head_dim, const int32_t* positions, const float* inv_freq, bool interleaved,
          cudaStream_t s) {
  if (n_tokens <= 0) return;
  rope_kernel<<<static_cast<unsigned>(n_tokens), 256, 0, s>>>(
      q, k, ld, n_q_heads, n_k_heads, head_dim, positions, inv_freq, interleaved);
  check_launch("rope");
}

void silu_mul(const float* gu, int64_t n_tokens, int64_t n, float* out, cudaStream_t s) {
  if (n_tokens * n <= 0) return;
  silu_mul_kernel<<<blocks_for(n_tokens * n, 256), 256, 0, s>>>(gu, n_tokens, n, out);
  check_launch("silu_mul");
}

void argmax_rows(const float* x, int64_t n_rows, int64_t n, int32_t* out, cudaStream_t s) {
  if (n_rows <= 0) return;
  argmax_kernel<<<static_cast<unsigned>(n_rows), 1024, 0, s>>>(x, n, out);
  check_launch("argmax_rows");
}

void gather_rows(const float* x, int64_t n, const int32_t* rows, int64_t n_rows, float* out,
                 cudaStream_t s) {
  if (n_rows <= 0) return;
  gather_rows_kernel<<<static_cast<unsigned>(n_rows), 256, 0, s>>>(x, n, rows, out);
  check_launch("gather_rows");
}

void convert_f32_to_bf16(const float* in, uint16_t* out, int64_t n, cudaStream_t s) {
  if (n <= 0) return;
  f32_to_bf16_kernel<<<blocks_for(n, 256), 256, 0, s>>>(
      in, reinterpret_cast<__nv_bfloat16*>(out), n);
  check_launch("convert_f32_to_bf16");
}

}  // namespace jinx::cuda

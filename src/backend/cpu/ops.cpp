// Element-wise and reduction ops. Plain loops written so the compiler vectorizes them; they
// are a small share of a forward pass next to the matmuls.
#include <cmath>
#include <limits>

#include "backend/cpu/kernels.h"
#include "backend/cpu/simd.h"

namespace jinx::cpu {

void rmsnorm(const float* x, const float* weight, float* out, int64_t n_tokens, int64_t n,
             float eps) {
  for (int64_t t = 0; t < n_tokens; ++t) {
    const float* xt = x + t * n;
    float* ot = out + t * n;
    float ss = 0.0f;
#pragma omp simd reduction(+ : ss)
    for (int64_t i = 0; i < n; ++i) ss += xt[i] * xt[i];
    const float scale = 1.0f / std::sqrt(ss / static_cast<float>(n) + eps);
    for (int64_t i = 0; i < n; ++i) ot[i] = xt[i] * scale * weight[i];
  }
}

void silu_mul(float* a, const float* b, int64_t n) {
  if (active_isa() == Isa::kAvx512) return detail::silu_mul_avx512(a, b, n);
  for (int64_t i = 0; i < n; ++i) a[i] = a[i] / (1.0f + std::exp(-a[i])) * b[i];
}

void gelu_tanh_mul(float* a, const float* b, int64_t n) {
  if (active_isa() == Isa::kAvx512) return detail::gelu_tanh_mul_avx512(a, b, n);
  // 0.5 x (1 + tanh(z)) as x / (1 + exp(-2z)): no cancellation where tanh(z) is near -1.
  constexpr float kC = 0.7978845608028654f;  // sqrt(2 / pi)
  for (int64_t i = 0; i < n; ++i) {
    const float x = a[i];
    a[i] = x / (1.0f + std::exp(-2.0f * kC * (x + 0.044715f * x * x * x))) * b[i];
  }
}

void softmax(float* x, int64_t n) {
  float mx = -std::numeric_limits<float>::infinity();
  for (int64_t i = 0; i < n; ++i) mx = x[i] > mx ? x[i] : mx;
  if (mx == -std::numeric_limits<float>::infinity()) {
    for (int64_t i = 0; i < n; ++i) x[i] = 1.0f / static_cast<float>(n);
    return;
  }
  float sum = 0.0f;
  for (int64_t i = 0; i < n; ++i) {
    x[i] = std::exp(x[i] - mx);
    sum += x[i];
  }
  const float inv = 1.0f / sum;
  for (int64_t i = 0; i < n; ++i) x[i] *= inv;
}

void softmax_with_sink(float* x, int64_t n, float sink) {
  float mx = sink;
  for (int64_t i = 0; i < n; ++i) mx = x[i] > mx ? x[i] : mx;
  float sum = std::exp(sink - mx);
  for (int64_t i = 0; i < n; ++i) {
    x[i] = std::exp(x[i] - mx);
    sum += x[i];
  }
  const float inv = 1.0f / sum;
  for (int64_t i = 0; i < n; ++i) x[i] *= inv;
}

float dot_f32(const float* a, const float* b, int64_t n) {
  float s = 0.0f;
#pragma omp simd reduction(+ : s)
  for (int64_t i = 0; i < n; ++i) s += a[i] * b[i];
  return s;
}

void axpy_f32(float a, const float* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] += a * x[i];
}

}  // namespace jinx::cpu

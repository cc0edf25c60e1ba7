// Element ops at every ISA level against double-precision references.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "backend/cpu/kernels.h"

namespace jinx::cpu {
namespace {

std::vector<Isa> levels() {
  std::vector<Isa> v;
  for (Isa i : {Isa::kScalar, Isa::kAvx2, Isa::kAvx512})
    if (static_cast<int>(i) <= static_cast<int>(detected_isa())) v.push_back(i);
  return v;
}

// silu(a) * b for every length 1..50 (vector tails) and values from tiny to saturating.
TEST(ElementOps, SiluMulMatchesDoubleAtEveryLevel) {
  std::mt19937 rng(3);
  std::normal_distribution<float> nd(0.0f, 4.0f);
  for (Isa isa : levels()) {
    set_isa(isa);
    for (int64_t n = 1; n <= 50; ++n) {
      std::vector<float> a(n), b(n);
      for (auto& x : a) x = nd(rng);
      for (auto& x : b) x = nd(rng);
      if (n > 4) a[0] = 100.0f, a[1] = -100.0f, a[2] = 0.0f, a[3] = -1e-30f;
      std::vector<float> got = a;
      silu_mul(got.data(), b.data(), n);
      for (int64_t i = 0; i < n; ++i) {
        const double want = a[i] / (1.0 + std::exp(-double{a[i]})) * b[i];
        ASSERT_NEAR(got[i], want, 2e-6 * std::fabs(want) + 1e-30)
            << isa_name(isa) << " n " << n << " a " << a[i] << " b " << b[i];
      }
    }
  }
  set_isa(detected_isa());
}

// gelu_tanh(a) * b the same way (Gemma's gelu_pytorch_tanh).
TEST(ElementOps, GeluTanhMulMatchesDoubleAtEveryLevel) {
  std::mt19937 rng(4);
  std::normal_distribution<float> nd(0.0f, 3.0f);
  for (Isa isa : levels()) {
    set_isa(isa);
    for (int64_t n = 1; n <= 50; ++n) {
      std::vector<float> a(n), b(n);
      for (auto& x : a) x = nd(rng);
      for (auto& x : b) x = nd(rng);
      if (n > 4) a[0] = 100.0f, a[1] = -100.0f, a[2] = 0.0f, a[3] = -1e-30f;
      std::vector<float> got = a;
      gelu_tanh_mul(got.data(), b.data(), n);
      for (int64_t i = 0; i < n; ++i) {
        // 0.5 x (1 + tanh(z)) = x / (1 + exp(-2z)), the second free of cancellation for x << 0
        const double x = a[i];
        const double z = 0.7978845608028654 * (x + 0.044715 * x * x * x);
        const double want = x / (1.0 + std::exp(-2.0 * z)) * b[i];
        ASSERT_NEAR(got[i], want, 4e-6 * std::fabs(want) + 1e-30)
            << isa_name(isa) << " n " << n << " a " << a[i] << " b " << b[i];
      }
    }
  }
  set_isa(detected_isa());
}

}  // namespace
}  // namespace jinx::cpu

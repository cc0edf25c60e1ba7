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

// op(a, b) against `want` (in double) for every length 1..50 (vector tails) and values from tiny
// to saturating, at every ISA level.
template <class Op, class Want>
void expect_elementwise(Op op, Want want, float spread, double rel_tol, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, spread);
  for (Isa isa : levels()) {
    set_isa(isa);
    for (int64_t n = 1; n <= 50; ++n) {
      std::vector<float> a(n), b(n);
      for (auto& x : a) x = nd(rng);
      for (auto& x : b) x = nd(rng);
      if (n > 4) a[0] = 100.0f, a[1] = -100.0f, a[2] = 0.0f, a[3] = -1e-30f;
      std::vector<float> got = a;
      op(got.data(), b.data(), n);
      for (int64_t i = 0; i < n; ++i) {
        const double w = want(double{a[i]}) * b[i];
        ASSERT_NEAR(got[i], w, rel_tol * std::fabs(w) + 1e-30)
            << isa_name(isa) << " n " << n << " a " << a[i] << " b " << b[i];
      }
    }
  }
  set_isa(detected_isa());
}

TEST(ElementOps, SiluMulMatchesDoubleAtEveryLevel) {
  expect_elementwise(silu_mul, [](double x) { return x / (1.0 + std::exp(-x)); }, 4.0f, 2e-6, 3);
}

// Gemma's gelu_pytorch_tanh: 0.5 x (1 + tanh(z)) = x / (1 + exp(-2z)), the second free of
// cancellation for x << 0.
TEST(ElementOps, GeluTanhMulMatchesDoubleAtEveryLevel) {
  expect_elementwise(
      gelu_tanh_mul,
      [](double x) {
        const double z = 0.7978845608028654 * (x + 0.044715 * x * x * x);
        return x / (1.0 + std::exp(-2.0 * z));
      },
      3.0f, 4e-6, 4);
}

}  // namespace
}  // namespace jinx::cpu

// Weights at odd addresses. A tensor in a safetensors file may start at any byte offset (MLX
// files do this), so the kernels must read f16/bf16/f32 values, GGML blocks and MLX scales
// without assuming alignment. Each case places the same bytes once at an aligned and once at an
// odd address (offset 1) and requires identical results from weight_row and matmul at every ISA
// level, in both activation modes. The sanitizer build (-fsanitize=undefined includes
// alignment; UBSAN_OPTIONS=halt_on_error=1) turns any misaligned typed access into a failure.
#include <gtest/gtest.h>

#include <cmath>
#include <cstddef>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "backend/cpu/dequant.h"
#include "backend/cpu/kernels.h"
#include "core/check.h"
#include "core/half.h"
#include "core/quant_blocks.h"

namespace jinx::cpu {
namespace {

// `bytes` copied to `offset` bytes past a 64-byte boundary inside an owned buffer.
class Placed {
 public:
  Placed(const std::vector<uint8_t>& bytes, size_t offset)
      : buf_(std::make_unique<uint8_t[]>(bytes.size() + 64 + offset)) {
    const auto addr = reinterpret_cast<uintptr_t>(buf_.get());
    ptr_ = buf_.get() + (64 - addr % 64) % 64 + offset;
    std::memcpy(ptr_, bytes.data(), bytes.size());
  }
  const uint8_t* data() const { return ptr_; }

 private:
  std::unique_ptr<uint8_t[]> buf_;
  uint8_t* ptr_ = nullptr;
};

void put_f16(uint8_t* p, float v) {
  const uint16_t h = f32_to_f16(v);
  std::memcpy(p, &h, 2);
}

// Random rows of `t`, every f16 scale of the GGML blocks set to a small finite value.
std::vector<uint8_t> random_rows(DType t, int64_t rows, int64_t cols, std::mt19937& rng) {
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  const auto& tr = traits(t);
  const int64_t n_blocks = rows * cols / tr.block_elems;
  std::vector<uint8_t> buf(static_cast<size_t>(n_blocks) * tr.block_bytes);
  for (auto& b : buf) b = static_cast<uint8_t>(rng());
  for (int64_t i = 0; i < n_blocks; ++i) {
    uint8_t* blk = buf.data() + i * tr.block_bytes;
    switch (t) {
      case DType::F32: {
        const float v = u(rng);
        std::memcpy(blk, &v, 4);
        break;
      }
      case DType::F16:
        put_f16(blk, u(rng));
        break;
      case DType::BF16: {
        const uint16_t h = f32_to_bf16(u(rng));
        std::memcpy(blk, &h, 2);
        break;
      }
      case DType::Q8_0:
        put_f16(blk + offsetof(BlockQ8_0, d), 0.01f * u(rng));
        break;
      case DType::Q4_0:
        put_f16(blk + offsetof(BlockQ4_0, d), 0.1f * u(rng));
        break;
      case DType::Q4_1:
        put_f16(blk + offsetof(BlockQ4_1, d), 0.1f * u(rng));
        put_f16(blk + offsetof(BlockQ4_1, m), 0.5f * u(rng));
        break;
      case DType::Q4_K:
      case DType::Q5_K:
        put_f16(blk + offsetof(BlockQ4_K, d), 0.01f * u(rng));
        put_f16(blk + offsetof(BlockQ4_K, dmin), 0.01f * u(rng));
        break;
      case DType::Q6_K:
        put_f16(blk + offsetof(BlockQ6_K, d), 0.001f * u(rng));
        break;
      default:
        break;
    }
  }
  return buf;
}

class ExactMode {
 public:
  explicit ExactMode(bool exact) { set_exact_activations(exact); }
  ~ExactMode() { set_exact_activations(false); }
};

// y = w x for n tokens at every ISA level this CPU has, in one activation mode, concatenated.
std::vector<float> products(const WeightMatrix& w, const std::vector<float>& x, int64_t n,
                            bool exact, ThreadPool& pool) {
  ExactMode mode(exact);
  std::vector<float> all;
  for (Isa isa : {Isa::kScalar, Isa::kAvx2, Isa::kAvx512}) {
    if (static_cast<int>(isa) > static_cast<int>(detected_isa())) continue;
    set_isa(isa);
    std::vector<float> y(static_cast<size_t>(n * w.rows), NAN);
    matmul(w, x.data(), n, y.data(), w.rows, pool);
    all.insert(all.end(), y.begin(), y.end());
  }
  set_isa(detected_isa());
  return all;
}

std::vector<float> rows_fp32(const WeightMatrix& w) {
  std::vector<float> out(static_cast<size_t>(w.rows * w.cols));
  for (int64_t r = 0; r < w.rows; ++r) weight_row(w, r, out.data() + r * w.cols);
  return out;
}

// weight_row and matmul give the same bits for `aligned` and `odd` (same matrix, other
// address); the exact-mode products also match a double-precision reference.
void expect_same_results(const WeightMatrix& aligned, const WeightMatrix& odd,
                         const std::string& what) {
  const std::vector<float> wa = rows_fp32(aligned), wo = rows_fp32(odd);
  ASSERT_EQ(0, std::memcmp(wa.data(), wo.data(), wa.size() * sizeof(float))) << what;
  std::mt19937 rng(99);
  std::normal_distribution<float> nd;
  ThreadPool pool(2);
  const int64_t cols = aligned.cols;
  for (int64_t n : {1, 3, 8}) {  // GEMV, GEMV with several tokens, GEMM / blocked fp32
    std::vector<float> x(static_cast<size_t>(n * cols));
    for (auto& v : x) v = nd(rng);
    for (bool exact : {false, true}) {
      const std::vector<float> ya = products(aligned, x, n, exact, pool);
      const std::vector<float> yo = products(odd, x, n, exact, pool);
      ASSERT_EQ(ya.size(), yo.size());
      for (size_t i = 0; i < ya.size(); ++i)
        ASSERT_EQ(ya[i], yo[i]) << what << " n " << n << " exact " << exact << " at " << i;
      if (!exact) continue;
      for (int64_t t = 0; t < n; ++t)
        for (int64_t r = 0; r < aligned.rows; ++r) {
          double ref = 0, mag = 0;
          for (int64_t c = 0; c < cols; ++c) {
            const double p = double(wa[r * cols + c]) * x[t * cols + c];
            ref += p;
            mag += std::fabs(p);
          }
          ASSERT_NEAR(yo[t * aligned.rows + r], ref, 1e-6 * cols * mag + 1e-30)
              << what << " n " << n << " t " << t << " r " << r;
        }
    }
  }
}

struct DenseCase {
  DType dtype;
  int64_t cols;
};

class UnalignedWeights : public ::testing::TestWithParam<DenseCase> {};

TEST_P(UnalignedWeights, OddAddressGivesAlignedResults) {
  const auto [dtype, cols] = GetParam();
  const int64_t rows = 7;
  std::mt19937 rng(42 + static_cast<int>(dtype));
  const std::vector<uint8_t> bytes = random_rows(dtype, rows, cols, rng);
  const Placed at0(bytes, 0), at1(bytes, 1);
  const size_t row_bytes = *bytes_for(dtype, cols);
  const WeightMatrix a{dtype, at0.data(), rows, cols, row_bytes, {}};
  const WeightMatrix o{dtype, at1.data(), rows, cols, row_bytes, {}};
  ASSERT_EQ(reinterpret_cast<uintptr_t>(o.data) % 2, 1u);
  expect_same_results(a, o, std::string(name(dtype)));
  // dequantize_row (the loaders' path for norm weights and biases) on one odd row.
  std::vector<float> ra(cols), ro(cols);
  dequantize_row(dtype, at0.data() + row_bytes, ra.data(), cols);
  dequantize_row(dtype, at1.data() + row_bytes, ro.data(), cols);
  EXPECT_EQ(0, std::memcmp(ra.data(), ro.data(), ra.size() * sizeof(float)));
}

INSTANTIATE_TEST_SUITE_P(Formats, UnalignedWeights,
                         ::testing::Values(DenseCase{DType::F32, 67}, DenseCase{DType::F16, 67},
                                           DenseCase{DType::BF16, 131}, DenseCase{DType::F16, 256},
                                           DenseCase{DType::BF16, 256}, DenseCase{DType::Q8_0, 96},
                                           DenseCase{DType::Q4_0, 160}, DenseCase{DType::Q4_1, 64},
                                           DenseCase{DType::Q4_K, 512}, DenseCase{DType::Q5_K, 256},
                                           DenseCase{DType::Q6_K, 256}),
                         [](const auto& info) {
                           return std::string(name(info.param.dtype)) + "_" +
                                  std::to_string(info.param.cols);
                         });

// MLX affine weights: packed words, scales and biases each at an odd address, for every scale
// type and both integer-kernel widths (4, 8) and one general width (3: the bit-stream path).
TEST(UnalignedWeights, MlxPackedAndScalesAtOddAddresses) {
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> u(-0.1f, 0.1f);
  for (int bits : {3, 4, 8}) {
    for (DType st : {DType::F32, DType::F16, DType::BF16}) {
      const int64_t rows = 5, cols = 256, group = 64, ng = cols / group;
      const size_t row_bytes = cols * bits / 8;
      std::vector<uint8_t> packed(rows * row_bytes);
      for (auto& b : packed) b = static_cast<uint8_t>(rng());
      const size_t sb = st == DType::F32 ? 4 : 2;
      std::vector<uint8_t> scales(rows * ng * sb), biases(rows * ng * sb);
      for (std::vector<uint8_t>* v : {&scales, &biases})
        for (int64_t i = 0; i < rows * ng; ++i) {
          const float f = u(rng);
          if (st == DType::F32) std::memcpy(v->data() + 4 * i, &f, 4);
          if (st == DType::F16) put_f16(v->data() + 2 * i, f);
          if (st == DType::BF16) {
            const uint16_t h = f32_to_bf16(f);
            std::memcpy(v->data() + 2 * i, &h, 2);
          }
        }
      const Placed p0(packed, 0), s0(scales, 0), b0(biases, 0);
      const Placed p1(packed, 1), s1(scales, 3), b1(biases, 5);
      auto matrix = [&](const Placed& q, const Placed& sc, const Placed& bi) {
        WeightMatrix w{DType::U32, q.data(), rows, cols, row_bytes, {}};
        w.mlx = {bits, static_cast<int>(group), st, sc.data(), bi.data()};
        return w;
      };
      const std::string what = str("mlx", bits, " ", name(st));
      expect_same_results(matrix(p0, s0, b0), matrix(p1, s1, b1), what);
    }
  }
}

}  // namespace
}  // namespace jinx::cpu

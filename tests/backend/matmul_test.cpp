// Op parity: matmul in exact mode (fp32 activations) for every weight format, ISA level and
// batch size against the scalar reference (dequantize_row + a double-precision dot product).
// The default mode (8-bit activations, integer kernels) is tested in qdot_test.cpp.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>

#include "backend/cpu/dequant.h"
#include "backend/cpu/kernels.h"
#include "backend/cpu/quant_act.h"
#include "core/half.h"
#include "core/quant_blocks.h"

namespace jinx::cpu {
namespace {

// Random bytes for a row of `t`, with every f16 scale field set to a sane small value so that
// dequantized weights are finite and O(1).
std::vector<uint8_t> random_rows(DType t, int64_t rows, int64_t cols, std::mt19937& rng) {
  const size_t rb = *bytes_for(t, cols);
  std::vector<uint8_t> buf(rb * rows);
  std::uniform_int_distribution<int> byte(0, 255);
  for (auto& b : buf) b = static_cast<uint8_t>(byte(rng));
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  auto set_f16 = [&](uint8_t* p, float v) {
    uint16_t h = f32_to_f16(v);
    std::memcpy(p, &h, 2);
  };
  const auto& tr = traits(t);
  const int64_t n_blocks = cols / tr.block_elems * rows;
  for (int64_t i = 0; i < n_blocks; ++i) {
    uint8_t* blk = buf.data() + i * tr.block_bytes;
    switch (t) {
      case DType::F32:
        for (int64_t k = 0; k < 1; ++k) {
          float v = u(rng);
          std::memcpy(blk, &v, 4);
        }
        break;
      case DType::F16:
        set_f16(blk, u(rng));
        break;
      case DType::BF16: {
        uint16_t h = f32_to_bf16(u(rng));
        std::memcpy(blk, &h, 2);
        break;
      }
      case DType::Q8_0:
        set_f16(blk, 0.01f * u(rng));
        break;
      case DType::Q4_0:
        set_f16(blk, 0.1f * u(rng));
        break;
      case DType::Q4_1:
        set_f16(blk, 0.1f * u(rng));
        set_f16(blk + 2, 0.5f * u(rng));
        break;
      case DType::Q5_0:
        set_f16(blk, 0.05f * u(rng));
        break;
      case DType::Q4_K:
      case DType::Q5_K:
        set_f16(blk, 0.01f * u(rng));
        set_f16(blk + 2, 0.01f * u(rng));
        break;
      case DType::Q6_K:
        set_f16(blk + offsetof(BlockQ6_K, d), 0.001f * u(rng));
        break;
      case DType::Q5_1:
        set_f16(blk, 0.05f * u(rng));
        set_f16(blk + 2, 0.5f * u(rng));
        break;
      case DType::Q2_K:
        set_f16(blk + offsetof(BlockQ2_K, d), 0.02f * u(rng));
        set_f16(blk + offsetof(BlockQ2_K, dmin), 0.02f * u(rng));
        break;
      case DType::Q3_K:
        set_f16(blk + offsetof(BlockQ3_K, d), 0.002f * u(rng));
        break;
      case DType::IQ4_NL:
        set_f16(blk, 0.002f * u(rng));
        break;
      case DType::IQ4_XS:
        set_f16(blk, 0.0002f * u(rng));
        break;
      case DType::MXFP4:  // scale 2^(e - 128) in 2^-10 .. 2^-5
        blk[0] = static_cast<uint8_t>(118 + rng() % 6);
        break;
      default:
        break;
    }
  }
  return buf;
}

// A WeightMatrix over rows stored back to back in `data`.
WeightMatrix matrix_of(DType t, int64_t rows, int64_t cols, const std::vector<uint8_t>& data) {
  WeightMatrix w;
  w.dtype = t;
  w.data = data.data();
  w.rows = rows;
  w.cols = cols;
  w.row_bytes = *bytes_for(t, cols);
  return w;
}

struct Param {
  DType dtype;
  int64_t cols;
};

// Exact (fp32-activation) mode for the duration of a test.
class ExactMode {
 public:
  ExactMode() { set_exact_activations(true); }
  ~ExactMode() { set_exact_activations(false); }
};

class MatmulParity : public ::testing::TestWithParam<Param> {
  ExactMode exact_;
};

TEST_P(MatmulParity, AllIsaLevelsAndBatchSizes) {
  const auto [dtype, cols] = GetParam();
  std::mt19937 rng(1234 + static_cast<int>(dtype));
  const int64_t rows = 37;
  auto data = random_rows(dtype, rows, cols, rng);
  const WeightMatrix w = matrix_of(dtype, rows, cols, data);
  std::vector<float> wf(rows * cols);
  for (int64_t r = 0; r < rows; ++r)
    dequantize_row(dtype, data.data() + r * w.row_bytes, &wf[r * cols], cols);
  ThreadPool pool(2);
  std::normal_distribution<float> nd;
  for (int64_t n : {1, 2, 3, 4, 5, 9, 64, 70}) {
    std::vector<float> x(n * cols);
    for (auto& v : x) v = nd(rng);
    for (Isa isa : {Isa::kScalar, Isa::kAvx2, Isa::kAvx512}) {
      if (static_cast<int>(isa) > static_cast<int>(detected_isa())) continue;
      set_isa(isa);
      std::vector<float> y(n * rows, NAN);
      matmul(w, x.data(), n, y.data(), rows, pool);
      for (int64_t t = 0; t < n; ++t)
        for (int64_t r = 0; r < rows; ++r) {
          double ref = 0, mag = 0;
          for (int64_t c = 0; c < cols; ++c) {
            ref += double(wf[r * cols + c]) * x[t * cols + c];
            mag += std::fabs(double(wf[r * cols + c]) * x[t * cols + c]);
          }
          // fp32 accumulation in another order: error bounded by ~cols * eps * sum|w x|.
          ASSERT_NEAR(y[t * rows + r], ref, 1e-6 * cols * mag + 1e-30)
              << name(dtype) << " isa " << isa_name(isa) << " n " << n << " t " << t << " r " << r;
        }
    }
  }
  set_isa(detected_isa());
}

INSTANTIATE_TEST_SUITE_P(Formats, MatmulParity,
                         ::testing::Values(Param{DType::F32, 67}, Param{DType::F32, 256},
                                           Param{DType::F16, 67}, Param{DType::BF16, 131},
                                           Param{DType::Q8_0, 96}, Param{DType::Q4_0, 160},
                                           Param{DType::Q4_1, 64}, Param{DType::Q5_0, 96},
                                           Param{DType::Q4_K, 512},
                                           Param{DType::Q5_K, 256}, Param{DType::Q6_K, 256},
                                           Param{DType::Q5_1, 96}, Param{DType::Q2_K, 512},
                                           Param{DType::Q3_K, 256}, Param{DType::IQ4_NL, 160},
                                           Param{DType::IQ4_XS, 256},
                                           Param{DType::MXFP4, 160}),
                         [](const auto& info) {
                           return std::string(name(info.param.dtype)) + "_" +
                                  std::to_string(info.param.cols);
                         });

// Batch invariance of the fp32-activation paths (the default for F32/F16/BF16 weights): a
// token's output row is bit-identical alone and at any place in a batch of any size (the fused
// row kernel for <= 16 tokens, the blocked GEMM beyond: 3 x 8 register tiles, row kernels for
// the rows and tokens left over). See QdotParity.RowsDoNotDependOnTheBatch.
TEST_P(MatmulParity, RowsDoNotDependOnTheBatch) {
  const auto [dtype, cols] = GetParam();
  std::mt19937 rng(77 + static_cast<int>(dtype));
  const int64_t rows = 37;
  auto data = random_rows(dtype, rows, cols, rng);
  const WeightMatrix w = matrix_of(dtype, rows, cols, data);
  ThreadPool pool(2);
  std::normal_distribution<float> nd;
  std::vector<float> x0(cols);
  for (auto& v : x0) v = nd(rng);
  for (Isa isa : {Isa::kScalar, Isa::kAvx2, Isa::kAvx512}) {
    if (static_cast<int>(isa) > static_cast<int>(detected_isa())) continue;
    set_isa(isa);
    std::vector<float> alone(rows);
    matmul(w, x0.data(), 1, alone.data(), rows, pool);
    for (int64_t n : {2, 4, 5, 9, 16, 17, 24, 64, 70, 131}) {
      for (int64_t at : {int64_t{0}, n / 2, n - 1}) {
        std::vector<float> x(n * cols);
        for (auto& v : x) v = nd(rng);
        std::copy(x0.begin(), x0.end(), x.begin() + at * cols);
        std::vector<float> y(n * rows, NAN);
        matmul(w, x.data(), n, y.data(), rows, pool);
        for (int64_t r = 0; r < rows; ++r)
          ASSERT_EQ(std::memcmp(&y[at * rows + r], &alone[r], 4), 0)
              << name(dtype) << " isa " << isa_name(isa) << " n " << n << " at " << at << " r "
              << r << ": " << y[at * rows + r] << " vs " << alone[r];
      }
    }
  }
  set_isa(detected_isa());
}

// matmul_many (q/k/v, gate/up in one call) gives each matrix's matmul() output bit for bit, in
// both activation modes, with matrices of different formats and row counts.
TEST(MatmulMany, EqualsOneMatmulEach) {
  std::mt19937 rng(31);
  const int64_t cols = 256;
  const DType types[] = {DType::Q4_1, DType::Q8_0, DType::Q4_K, DType::F16};
  const int64_t rows[] = {40, 16, 33, 7};
  std::vector<std::vector<uint8_t>> data;
  std::vector<WeightMatrix> ws;
  for (int i = 0; i < 4; ++i) {
    data.push_back(random_rows(types[i], rows[i], cols, rng));
    ws.push_back(matrix_of(types[i], rows[i], cols, data.back()));
  }
  ThreadPool pool(2);
  std::normal_distribution<float> nd;
  for (bool exact : {false, true}) {
    set_exact_activations(exact);
    for (int64_t n : {1, 3, 5, 40}) {
      std::vector<float> x(n * cols);
      for (auto& v : x) v = nd(rng);
      for (int count : {3, 4}) {  // the quantized three; with the F16 one (a call each)
        std::vector<std::vector<float>> want, got;
        std::vector<MatmulPart> parts;
        for (int i = 0; i < count; ++i) {
          want.emplace_back(n * rows[i]);
          got.emplace_back(n * rows[i], NAN);
          matmul(ws[i], x.data(), n, want.back().data(), rows[i], pool);
        }
        for (size_t i = 0; i < got.size(); ++i) parts.push_back({&ws[i], got[i].data(), rows[i]});
        matmul_many(parts, x.data(), n, pool);
        for (size_t i = 0; i < got.size(); ++i)
          ASSERT_EQ(std::memcmp(got[i].data(), want[i].data(), got[i].size() * 4), 0)
              << "exact " << exact << " n " << n << " matrix " << i;
      }
    }
  }
  set_exact_activations(false);
}

// MLX 4-bit and 8-bit rows against a direct evaluation of the MLX definition.
TEST(MlxMatmul, MatchesDefinition) {
  ExactMode exact;
  std::mt19937 rng(7);
  for (int bits : {4, 8}) {
    for (int group : {32, 64, 128}) {
      const int64_t rows = 5, cols = 256, per_word = 32 / bits, ng = cols / group;
      std::vector<uint32_t> packed(rows * cols / per_word);
      for (auto& v : packed) v = rng();
      std::vector<uint16_t> scales(rows * ng), biases(rows * ng);
      std::uniform_real_distribution<float> u(-0.1f, 0.1f);
      for (auto& s : scales) s = f32_to_bf16(u(rng));
      for (auto& b : biases) b = f32_to_bf16(u(rng));
      WeightMatrix w;
      w.dtype = DType::U32;
      w.data = packed.data();
      w.rows = rows;
      w.cols = cols;
      w.row_bytes = cols / per_word * 4;
      w.mlx = {bits, group, DType::BF16, scales.data(), biases.data()};
      std::vector<float> x(cols);
      for (auto& v : x) v = u(rng);
      std::vector<float> y(rows);
      ThreadPool pool(1);
      matmul(w, x.data(), 1, y.data(), rows, pool);
      for (int64_t r = 0; r < rows; ++r) {
        double ref = 0;
        for (int64_t c = 0; c < cols; ++c) {
          uint32_t word = packed[r * cols / per_word + c / per_word];
          uint32_t q = (word >> (bits * (c % per_word))) & ((1u << bits) - 1);
          float wv =
              bf16_to_f32(scales[r * ng + c / group]) * q + bf16_to_f32(biases[r * ng + c / group]);
          ref += double(wv) * x[c];
        }
        EXPECT_NEAR(y[r], ref, 1e-4) << bits << "-bit group " << group;
      }
    }
  }
}

// The mode switch: dense weights ignore it; quantized weights meet 8-bit activations by
// default (the product of the dequantized weights and d * q, up to fp32 rounding) and fp32
// activations in exact mode.
TEST(MatmulMode, DefaultRoundsActivationsOnlyForQuantizedWeights) {
  std::mt19937 rng(11);
  const int64_t rows = 9, cols = 128, n = 3;
  ThreadPool pool(2);
  std::normal_distribution<float> nd;
  std::vector<float> x(n * cols);
  for (auto& v : x) v = nd(rng);
  QuantActBuffer qb;
  const QuantActs a = qb.quantize(x.data(), n, cols);
  for (DType t : {DType::F32, DType::Q4_0}) {
    auto data = random_rows(t, rows, cols, rng);
    WeightMatrix w{t, data.data(), rows, cols, *bytes_for(t, cols), {}};
    std::vector<float> y_default(n * rows), y_exact(n * rows);
    matmul(w, x.data(), n, y_default.data(), rows, pool);
    set_exact_activations(true);
    EXPECT_TRUE(exact_activations());
    matmul(w, x.data(), n, y_exact.data(), rows, pool);
    set_exact_activations(false);
    std::vector<float> wf(cols);
    double max_shift = 0;
    for (int64_t r = 0; r < rows; ++r) {
      dequantize_row(t, data.data() + r * w.row_bytes, wf.data(), cols);
      for (int64_t j = 0; j < n; ++j) {
        double exact = 0, rounded = 0, mag = 0;
        for (int64_t c = 0; c < cols; ++c) {
          exact += double(wf[c]) * x[j * cols + c];
          rounded += double(wf[c]) * a.value(j, c);
          mag += std::fabs(double(wf[c]) * x[j * cols + c]);
        }
        EXPECT_NEAR(y_exact[j * rows + r], exact, 1e-6 * cols * mag);
        EXPECT_NEAR(y_default[j * rows + r], t == DType::F32 ? exact : rounded, 1e-6 * cols * mag);
        max_shift = std::max(max_shift, std::fabs(double(y_default[j * rows + r]) - exact));
      }
    }
    if (t == DType::F32)
      EXPECT_EQ(y_default, y_exact);
    else
      EXPECT_GT(max_shift, 1e-4) << "the 8-bit rounding should show";
  }
}

}  // namespace
}  // namespace jinx::cpu

// The Q4_K quantizer against llama.cpp's own output (llama_model_quantize, i.e. ggml's
// quantize_row_q4_K_ref) and the MLX affine quantizer against mlx.core.quantize, byte for byte.
// Fixtures: tools/make_quant_fixtures.py.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <iterator>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "backend/cpu/dequant.h"
#include "backend/cpu/kernels.h"
#include "backend/cpu/quantize.h"
#include "../support/quant_fixtures.h"
#include "core/check.h"
#include "core/half.h"
#include "core/quant_blocks.h"

namespace jinx::cpu {
namespace {

const std::string& kDir = test::kQuantDir;
using test::read_bytes;

nlohmann::json read_json(const std::string& path) {
  std::ifstream in(path);
  if (!in) {
    ADD_FAILURE() << "missing fixture " << path;
    return nlohmann::json::object();
  }
  return nlohmann::json::parse(in);
}

std::vector<float> floats(const std::vector<uint8_t>& bytes) {
  std::vector<float> x(bytes.size() / 4);
  std::memcpy(x.data(), bytes.data(), x.size() * 4);
  return x;
}

double max_abs_diff(const float* a, const float* b, int64_t n) {
  double m = 0;
  for (int64_t i = 0; i < n; ++i) m = std::max(m, std::fabs(double(a[i]) - b[i]));
  return m;
}

// Every super-block identical to llama.cpp's; were one not, the share of identical blocks and
// the largest dequantized difference are printed to say how close it came.
TEST(QuantizeQ4K, RowsMatchLlamaCppByteForByte) {
  const auto meta = read_json(kDir + "rows_q4k.json");
  ASSERT_TRUE(meta.contains("n_rows"));
  const int64_t n_rows = meta["n_rows"], n_cols = meta["n_cols"];
  const auto x = floats(read_bytes(kDir + "rows_q4k.f32"));
  const auto want = read_bytes(kDir + "rows.q4_k");
  const size_t rb = *bytes_for(DType::Q4_K, n_cols);
  ASSERT_EQ(x.size(), static_cast<size_t>(n_rows * n_cols));
  ASSERT_EQ(want.size(), rb * n_rows);
  std::vector<uint8_t> got(rb);
  std::vector<float> a(n_cols), b(n_cols);
  int64_t blocks = 0, same = 0;
  double max_deq = 0;
  for (int64_t r = 0; r < n_rows; ++r) {
    quantize_row_q4_k(&x[r * n_cols], got.data(), n_cols);
    for (size_t o = 0; o < rb; o += sizeof(BlockQ4_K), ++blocks)
      same += std::memcmp(&got[o], &want[r * rb + o], sizeof(BlockQ4_K)) == 0;
    dequantize_row(DType::Q4_K, got.data(), a.data(), n_cols);
    dequantize_row(DType::Q4_K, &want[r * rb], b.data(), n_cols);
    max_deq = std::max(max_deq, max_abs_diff(a.data(), b.data(), n_cols));
  }
  std::printf("Q4_K: %lld/%lld super-blocks identical to llama.cpp's, max dequantized diff %.3g\n",
              static_cast<long long>(same), static_cast<long long>(blocks), max_deq);
  EXPECT_EQ(same, blocks);
}

// The error of our Q4_K (dequantized) against the fp32 source is no worse than llama.cpp's,
// row by row (equal when the bytes are), and Q4_K beats Q4_0 on typical weights.
TEST(QuantizeQ4K, ErrorNoWorseThanLlamaCpp) {
  const auto meta = read_json(kDir + "rows_q4k.json");
  ASSERT_TRUE(meta.contains("n_rows"));
  const int64_t n_rows = meta["n_rows"], n_cols = meta["n_cols"];
  const auto x = floats(read_bytes(kDir + "rows_q4k.f32"));
  const auto want = read_bytes(kDir + "rows.q4_k");
  const size_t rb = *bytes_for(DType::Q4_K, n_cols);
  ASSERT_EQ(want.size(), rb * n_rows);
  std::vector<uint8_t> got(rb);
  std::vector<float> ours(n_cols), theirs(n_cols);
  for (int64_t r = 0; r < n_rows; ++r) {
    const float* src = &x[r * n_cols];
    quantize_row_q4_k(src, got.data(), n_cols);
    dequantize_row(DType::Q4_K, got.data(), ours.data(), n_cols);
    dequantize_row(DType::Q4_K, &want[r * rb], theirs.data(), n_cols);
    double e_ours = 0, e_theirs = 0;
    for (int64_t i = 0; i < n_cols; ++i) {
      e_ours += (ours[i] - src[i]) * double(ours[i] - src[i]);
      e_theirs += (theirs[i] - src[i]) * double(theirs[i] - src[i]);
    }
    EXPECT_LE(e_ours, e_theirs * (1 + 1e-6) + 1e-30) << "row " << r;
  }
  std::mt19937 rng(3);
  std::normal_distribution<float> nd(0.0f, 0.05f);
  std::vector<float> w(4096), back(4096);
  for (auto& v : w) v = nd(rng);
  std::vector<uint8_t> qk(*bytes_for(DType::Q4_K, 4096)), q0(*bytes_for(DType::Q4_0, 4096));
  quantize_row(DType::Q4_K, w.data(), qk.data(), 4096);
  quantize_row(DType::Q4_0, w.data(), q0.data(), 4096);
  double ek = 0, e0 = 0;
  dequantize_row(DType::Q4_K, qk.data(), back.data(), 4096);
  for (int i = 0; i < 4096; ++i) ek += (back[i] - w[i]) * double(back[i] - w[i]);
  dequantize_row(DType::Q4_0, q0.data(), back.data(), 4096);
  for (int i = 0; i < 4096; ++i) e0 += (back[i] - w[i]) * double(back[i] - w[i]);
  EXPECT_LT(ek, e0);
}

TEST(QuantizeQ4K, MatrixPathAndRefusals) {
  ThreadPool pool(2);
  std::vector<float> m(3 * 512);
  std::mt19937 rng(5);
  std::normal_distribution<float> nd(0.0f, 0.1f);
  for (auto& v : m) v = nd(rng);
  WeightMatrix w{DType::F32, m.data(), 3, 512, 512 * 4, {}};
  ASSERT_TRUE(can_quantize_matrix(w, DType::Q4_K));
  std::vector<uint8_t> storage, row(*bytes_for(DType::Q4_K, 512));
  const WeightMatrix q = quantize_matrix(w, DType::Q4_K, &storage, pool);
  EXPECT_EQ(q.dtype, DType::Q4_K);
  EXPECT_EQ(q.row_bytes, row.size());
  for (int r = 0; r < 3; ++r) {
    quantize_row_q4_k(&m[r * 512], row.data(), 512);
    EXPECT_EQ(0, std::memcmp(row.data(), &storage[r * row.size()], row.size())) << r;
  }
  WeightMatrix narrow{DType::F32, m.data(), 6, 128, 128 * 4, {}};  // 128: not a super-block
  EXPECT_FALSE(can_quantize_matrix(narrow, DType::Q4_K));
  EXPECT_TRUE(can_quantize_matrix(narrow, DType::Q8_0));
  EXPECT_THROW(quantize_row(DType::Q4_K, m.data(), row.data(), 128), Error);
  m[100] = std::numeric_limits<float>::infinity();
  EXPECT_THROW(quantize_row_q4_k(m.data(), row.data(), 256), Error);
}

// --- MLX affine 4-bit, group 64 ---

struct MlxType {
  const char* name;
  DType dtype;
};

class QuantizeMlx : public ::testing::TestWithParam<MlxType> {};

TEST_P(QuantizeMlx, RowsMatchMlxByteForByte) {
  const MlxType t = GetParam();
  const auto meta = read_json(kDir + "mlx_rows.json");
  ASSERT_TRUE(meta.contains("n_rows"));
  const int64_t n_rows = meta["n_rows"], n_cols = meta["n_cols"];
  const int bits = meta["bits"], group = meta["group_size"];
  const auto stored = read_bytes(kDir + "mlx_rows." + t.name);
  const auto want = read_bytes(kDir + "mlx_rows." + t.name + ".q4g64");
  const size_t eb = traits(t.dtype).block_bytes;
  ASSERT_EQ(stored.size(), static_cast<size_t>(n_rows * n_cols) * eb);
  const size_t words_bytes = n_rows * n_cols * bits / 8, groups = n_rows * n_cols / group;
  ASSERT_EQ(want.size(), words_bytes + 2 * groups * eb);

  // Row path: fp32 values of the stored rows -> words, scales, biases.
  std::vector<float> x(n_cols);
  std::vector<uint32_t> words(n_cols * bits / 32);
  std::vector<uint8_t> scales(n_cols / group * eb), biases(scales.size());
  const size_t wrb = words.size() * 4, srb = scales.size();
  for (int64_t r = 0; r < n_rows; ++r) {
    dequantize_row(t.dtype, &stored[r * n_cols * eb], x.data(), n_cols);
    quantize_row_mlx(x.data(), n_cols, bits, group, t.dtype, words.data(), scales.data(),
                     biases.data());
    EXPECT_EQ(0, std::memcmp(words.data(), &want[r * wrb], wrb)) << t.name << " words, row " << r;
    EXPECT_EQ(0, std::memcmp(scales.data(), &want[words_bytes + r * srb], srb))
        << t.name << " scales, row " << r;
    EXPECT_EQ(0, std::memcmp(biases.data(), &want[words_bytes + groups * eb + r * srb], srb))
        << t.name << " biases, row " << r;
  }

  // Matrix path: one buffer laid out as the fixture (words, scales, biases), source misaligned.
  ThreadPool pool(2);
  std::vector<uint8_t> src(stored.size() + 1);
  std::memcpy(&src[1], stored.data(), stored.size());
  WeightMatrix w{t.dtype, &src[1], n_rows, n_cols, static_cast<size_t>(n_cols) * eb, {}};
  ASSERT_TRUE(can_quantize_matrix_mlx(w, group));
  std::vector<uint8_t> storage;
  const WeightMatrix q = quantize_matrix_mlx(w, bits, group, &storage, pool);
  EXPECT_EQ(q.dtype, DType::U32);
  EXPECT_EQ(q.mlx.bits, bits);
  EXPECT_EQ(q.mlx.group_size, group);
  EXPECT_EQ(q.mlx.scale_dtype, t.dtype);
  EXPECT_EQ(q.row_bytes, wrb);
  EXPECT_EQ(storage, want) << t.name;
}

// The quantized matrix runs through the MLX kernel: y = W x within the quantization error of
// the dense product, and exactly the dequantized product (up to fp32 summation order).
TEST_P(QuantizeMlx, KernelRunsTheResult) {
  const MlxType t = GetParam();
  constexpr int64_t kRows = 40, kCols = 512;
  std::mt19937 rng(11);
  std::normal_distribution<float> nd(0.0f, 0.05f);
  const size_t eb = traits(t.dtype).block_bytes;
  std::vector<uint8_t> dense(kRows * kCols * eb);
  for (int64_t i = 0; i < kRows * kCols; ++i) {
    const float v = nd(rng);
    if (t.dtype == DType::F32) {
      std::memcpy(&dense[i * 4], &v, 4);
    } else {
      const uint16_t h = t.dtype == DType::F16 ? f32_to_f16(v) : f32_to_bf16(v);
      std::memcpy(&dense[i * 2], &h, 2);
    }
  }
  WeightMatrix w{t.dtype, dense.data(), kRows, kCols, kCols * eb, {}};
  ThreadPool pool(2);
  std::vector<uint8_t> storage;
  const WeightMatrix q = quantize_matrix_mlx(w, 4, 64, &storage, pool);
  std::vector<float> x(kCols), y(kRows), row(kCols);
  for (auto& v : x) v = nd(rng);
  set_exact_activations(true);
  matmul(q, x.data(), 1, y.data(), kRows, pool);
  set_exact_activations(false);
  for (int64_t r = 0; r < kRows; ++r) {
    weight_row(q, r, row.data());
    double ref = 0, scale = 0;
    for (int64_t c = 0; c < kCols; ++c) {
      ref += double(row[c]) * x[c];
      scale += std::fabs(double(row[c]) * x[c]);
    }
    EXPECT_NEAR(y[r], ref, 1e-5 * scale + 1e-6) << "row " << r;
  }
}

INSTANTIATE_TEST_SUITE_P(Types, QuantizeMlx,
                         ::testing::Values(MlxType{"f32", DType::F32}, MlxType{"f16", DType::F16},
                                           MlxType{"bf16", DType::BF16}),
                         [](const auto& info) { return std::string(info.param.name); });

TEST(QuantizeMlxArgs, RefusesWhatItCannotDo) {
  std::vector<float> x(128, 0.5f);
  std::vector<uint32_t> words(64);
  std::vector<uint8_t> s(16), b(16);
  EXPECT_THROW(
      quantize_row_mlx(x.data(), 100, 4, 64, DType::BF16, words.data(), s.data(), b.data()), Error);
  EXPECT_THROW(
      quantize_row_mlx(x.data(), 128, 3, 64, DType::BF16, words.data(), s.data(), b.data()), Error);
  EXPECT_THROW(
      quantize_row_mlx(x.data(), 128, 4, 48, DType::BF16, words.data(), s.data(), b.data()), Error);
  EXPECT_THROW(
      quantize_row_mlx(x.data(), 128, 4, 64, DType::Q8_0, words.data(), s.data(), b.data()), Error);
  x[3] = std::numeric_limits<float>::quiet_NaN();
  EXPECT_THROW(quantize_row_mlx(x.data(), 128, 4, 64, DType::F32, words.data(), s.data(), b.data()),
               Error);
  std::vector<float> m(4 * 96, 0.25f);
  WeightMatrix odd{DType::F32, m.data(), 4, 96, 96 * 4, {}};  // 96: not whole groups of 64
  EXPECT_FALSE(can_quantize_matrix_mlx(odd, 64));
}

}  // namespace
}  // namespace jinx::cpu

// The Q8_0 / Q4_0 quantizer against gguf-py's quants.quantize (the numpy port of ggml's
// quantize_row_*_ref), byte for byte. Fixtures: tools/make_quant_fixtures.py.
#include "backend/cpu/quantize.h"

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
#include "../support/quant_fixtures.h"
#include "core/check.h"
#include "core/half.h"
#include "core/quant_blocks.h"

namespace jinx::cpu {
namespace {

const std::string& kDir = test::kQuantDir;
using test::read_bytes;

struct Rows {
  int64_t n_rows = 0, n_cols = 0;
  std::vector<float> x;  // [n_rows, n_cols]
};

Rows load_rows() {
  std::ifstream in(kDir + "rows.json");
  Rows r;
  if (!in) {
    ADD_FAILURE() << "missing fixture " << kDir << "rows.json";
    return r;
  }
  auto j = nlohmann::json::parse(in);
  r.n_rows = j["n_rows"].get<int64_t>();
  r.n_cols = j["n_cols"].get<int64_t>();
  auto bytes = read_bytes(kDir + "rows.f32");
  EXPECT_EQ(bytes.size(), static_cast<size_t>(r.n_rows * r.n_cols) * 4);
  r.x.resize(bytes.size() / 4);
  std::memcpy(r.x.data(), bytes.data(), r.x.size() * 4);
  return r;
}

struct Format {
  DType dtype;
  const char* file;
};

class QuantizeFixture : public ::testing::TestWithParam<Format> {};

TEST_P(QuantizeFixture, RowsMatchGgufPyByteForByte) {
  const Format f = GetParam();
  const Rows r = load_rows();
  ASSERT_GT(r.n_rows, 0);
  const auto expected = read_bytes(kDir + f.file);
  const size_t rb = *bytes_for(f.dtype, r.n_cols);
  ASSERT_EQ(expected.size(), rb * static_cast<size_t>(r.n_rows));
  std::vector<uint8_t> got(rb);
  int bad_rows = 0;
  for (int64_t i = 0; i < r.n_rows; ++i) {
    quantize_row(f.dtype, &r.x[i * r.n_cols], got.data(), r.n_cols);
    const uint8_t* want = &expected[i * rb];
    for (size_t b = 0; b < rb; ++b) {
      if (got[b] != want[b]) {
        ADD_FAILURE() << name(f.dtype) << " row " << i << " byte " << b << " (block "
                      << b / traits(f.dtype).block_bytes << "): ours " << int(got[b])
                      << ", gguf-py " << int(want[b]);
        ++bad_rows;
        break;
      }
    }
  }
  EXPECT_EQ(bad_rows, 0);
}

// The whole-matrix path (stored format -> fp32 row -> blocks, rows over threads, source at an
// odd address) gives the same bytes as the row path, for each dense storage format.
TEST_P(QuantizeFixture, MatrixFromEveryDenseFormatMatchesRows) {
  const Format f = GetParam();
  const Rows r = load_rows();
  ASSERT_GT(r.n_rows, 0);
  const size_t rb = *bytes_for(f.dtype, r.n_cols);
  ThreadPool pool(2);
  for (DType src : {DType::F32, DType::F16, DType::BF16}) {
    const size_t eb = src == DType::F32 ? 4 : 2;
    std::vector<uint8_t> stored(1 + r.x.size() * eb);  // +1: misaligned start
    std::vector<float> as_read(r.x.size());            // the values the stored format holds
    for (size_t i = 0; i < r.x.size(); ++i) {
      uint8_t* p = &stored[1 + i * eb];
      if (src == DType::F32) {
        std::memcpy(p, &r.x[i], 4);
        as_read[i] = r.x[i];
      } else {
        const uint16_t h = src == DType::F16 ? f32_to_f16(r.x[i]) : f32_to_bf16(r.x[i]);
        std::memcpy(p, &h, 2);
        as_read[i] = src == DType::F16 ? f16_to_f32(h) : bf16_to_f32(h);
      }
    }
    // Every fixture value is finite in F16 (|x| <= 1e3); the tiny ones may flush to zero.
    WeightMatrix w{src, &stored[1], r.n_rows, r.n_cols, r.n_cols * eb, {}};
    ASSERT_TRUE(can_quantize_matrix(w, f.dtype));
    std::vector<uint8_t> storage;
    const WeightMatrix q = quantize_matrix(w, f.dtype, &storage, pool);
    EXPECT_EQ(q.dtype, f.dtype);
    EXPECT_EQ(q.rows, r.n_rows);
    EXPECT_EQ(q.cols, r.n_cols);
    EXPECT_EQ(q.row_bytes, rb);
    EXPECT_EQ(q.data, storage.data());
    ASSERT_EQ(storage.size(), rb * static_cast<size_t>(r.n_rows));
    std::vector<uint8_t> want(rb);
    for (int64_t i = 0; i < r.n_rows; ++i) {
      quantize_row(f.dtype, &as_read[i * r.n_cols], want.data(), r.n_cols);
      ASSERT_EQ(0, std::memcmp(want.data(), &storage[i * rb], rb))
          << name(src) << " -> " << name(f.dtype) << " row " << i;
    }
  }
}

// What the blocks promise: Q8_0 is within d/2 of x (d = max|x|/127), Q4_0 within d/2 except at
// the clipped top (within d there, d = max|x|/8); plus the f16 rounding of d, at most 2^-11 of
// d times |q| (<= 127 or 8).
TEST_P(QuantizeFixture, DequantizedRowsStayWithinHalfAStep) {
  const Format f = GetParam();
  std::mt19937 rng(7);
  std::normal_distribution<float> nd(0.0f, 0.3f);
  constexpr int64_t kN = 32 * 64;
  std::vector<float> x(kN), back(kN);
  for (auto& v : x) v = nd(rng);
  std::vector<uint8_t> q(*bytes_for(f.dtype, kN));
  quantize_row(f.dtype, x.data(), q.data(), kN);
  dequantize_row(f.dtype, q.data(), back.data(), kN);
  for (int64_t b = 0; b < kN / 32; ++b) {
    float amax = 0;
    for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(x[b * 32 + j]));
    const float step = f.dtype == DType::Q8_0 ? amax / 127 : amax / 8;
    const float bound = f.dtype == DType::Q8_0 ? (0.5f + 127.0f / 2048) * step * 1.001f
                                               : (1.0f + 8.0f / 2048) * step * 1.001f;
    for (int j = 0; j < 32; ++j)
      ASSERT_LE(std::fabs(back[b * 32 + j] - x[b * 32 + j]), bound) << "block " << b;
  }
}

INSTANTIATE_TEST_SUITE_P(Formats, QuantizeFixture,
                         ::testing::Values(Format{DType::Q8_0, "rows.q8_0"},
                                           Format{DType::Q4_0, "rows.q4_0"}),
                         [](const auto& info) { return std::string(name(info.param.dtype)); });

TEST(Quantize, RefusesWhatItCannotDo) {
  std::vector<float> x(64, 0.5f);
  std::vector<uint8_t> out(64);
  EXPECT_THROW(quantize_row(DType::Q8_0, x.data(), out.data(), 33), Error);
  EXPECT_THROW(quantize_row(DType::Q4_0, x.data(), out.data(), -32), Error);
  EXPECT_THROW(quantize_row(DType::Q4_1, x.data(), out.data(), 32), Error);
  x[7] = std::numeric_limits<float>::quiet_NaN();
  EXPECT_THROW(quantize_row(DType::Q8_0, x.data(), out.data(), 32), Error);
  x[7] = std::numeric_limits<float>::infinity();
  EXPECT_THROW(quantize_row(DType::Q4_0, x.data(), out.data(), 32), Error);

  ThreadPool pool(2);
  std::vector<uint8_t> storage;
  std::vector<float> m(4 * 48, 0.25f);
  WeightMatrix odd{DType::F32, m.data(), 4, 48, 48 * 4, {}};  // 48: not a whole block
  EXPECT_FALSE(can_quantize_matrix(odd, DType::Q8_0));
  EXPECT_THROW(quantize_matrix(odd, DType::Q8_0, &storage, pool), Error);
  WeightMatrix ok{DType::F32, m.data(), 6, 32, 32 * 4, {}};
  EXPECT_TRUE(can_quantize_matrix(ok, DType::Q4_0));
  WeightMatrix mlx = ok;
  mlx.dtype = DType::U32;
  mlx.mlx.bits = 4;
  EXPECT_FALSE(can_quantize_matrix(mlx, DType::Q4_0));
  WeightMatrix already{DType::Q8_0, m.data(), 1, 32, sizeof(BlockQ8_0), {}};
  EXPECT_FALSE(can_quantize_matrix(already, DType::Q4_0));
  m[5 * 32 + 3] = std::numeric_limits<float>::quiet_NaN();  // row 5
  try {
    quantize_matrix(ok, DType::Q4_0, &storage, pool);
    ADD_FAILURE() << "a NaN weight was quantized";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("row 5"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace jinx::cpu

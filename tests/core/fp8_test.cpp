// fp8 e4m3 conversions (the quantized KV cache) against torch's float8_e4m3fn: every code's
// value, and the rounding of random values, exact midpoints (ties to even) and subnormals
// (fixture from tools/make_kv_fixtures.py). Past 448 Jinx saturates where torch gives NaN.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <limits>

#include <nlohmann/json.hpp>

#include "core/half.h"

namespace jinx {
namespace {

nlohmann::json fixture() {
  std::ifstream f(std::string(JINX_FIXTURES) + "/kv/fp8_e4m3.json");
  EXPECT_TRUE(f.good()) << "missing fixture: run tools/make_kv_fixtures.py";
  return nlohmann::json::parse(f);
}

TEST(Fp8E4m3, DecodesEveryCodeLikeTorch) {
  const auto j = fixture();
  ASSERT_EQ(j["decode"].size(), 256u);
  for (int c = 0; c < 256; ++c) {
    const float got = fp8_e4m3_to_f32(static_cast<uint8_t>(c));
    if (j["decode"][c].is_null()) {
      EXPECT_TRUE(std::isnan(got)) << "code " << c;
    } else {
      const float want = j["decode"][c].get<float>();
      EXPECT_EQ(got, want) << "code " << c;
      EXPECT_EQ(std::signbit(got), std::signbit(want)) << "code " << c;
    }
  }
}

TEST(Fp8E4m3, EncodesLikeTorch) {
  const auto j = fixture();
  ASSERT_GT(j["encode"].size(), 500u);
  int mismatches = 0;
  for (const auto& e : j["encode"]) {
    const float x = e[0].get<float>();
    const int want = e[1].get<int>();
    const int got = f32_to_fp8_e4m3(x);
    if (got != want && ++mismatches <= 10)
      ADD_FAILURE() << "x=" << x << " got 0x" << std::hex << got << " want 0x" << want;
  }
  EXPECT_EQ(mismatches, 0);
}

TEST(Fp8E4m3, SaturatesInsteadOfNan) {
  EXPECT_EQ(f32_to_fp8_e4m3(448.0f), 0x7e);
  EXPECT_EQ(f32_to_fp8_e4m3(470.0f), 0x7e);
  EXPECT_EQ(f32_to_fp8_e4m3(1e30f), 0x7e);
  EXPECT_EQ(f32_to_fp8_e4m3(-std::numeric_limits<float>::infinity()), 0xfe);
  EXPECT_EQ(f32_to_fp8_e4m3(std::numeric_limits<float>::quiet_NaN()) & 0x7f, 0x7f);
  EXPECT_EQ(fp8_e4m3_to_f32(0x7e), 448.0f);
}

}  // namespace
}  // namespace jinx

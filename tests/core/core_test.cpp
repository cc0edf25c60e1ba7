#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <cstring>
#include <vector>

#include <immintrin.h>

#include "core/dtype.h"
#include "core/half.h"
#include "core/thread_pool.h"

namespace jinx {
namespace {

TEST(ThreadPool, EveryIndexExactlyOnceOverManyJobs) {
  for (int threads : {1, 2, 3}) {
    ThreadPool pool(threads);
    for (int64_t n : {1, 2, 7, 64, 1000, 4097}) {
      for (int64_t grain : {1, 3, 64}) {
        for (int rep = 0; rep < 50; ++rep) {
          std::vector<std::atomic<int>> hits(n);
          pool.parallel_for(n, grain, [&](int64_t b, int64_t e) {
            ASSERT_LE(e - b, grain);
            for (int64_t i = b; i < e; ++i) hits[i].fetch_add(1);
          });
          for (int64_t i = 0; i < n; ++i) ASSERT_EQ(hits[i].load(), 1) << n << " " << grain;
        }
      }
    }
  }
}

TEST(ThreadPool, EvenSplitCoversRange) {
  ThreadPool pool(2);
  std::atomic<int64_t> sum{0};
  pool.parallel_for(100001, [&](int64_t b, int64_t e) {
    int64_t s = 0;
    for (int64_t i = b; i < e; ++i) s += i;
    sum += s;
  });
  EXPECT_EQ(sum.load(), int64_t{100000} * 100001 / 2);
}

// Every f16 bit pattern converts to f32 and back unchanged (NaNs stay NaN), and agrees with the
// F16C hardware conversion.
TEST(Half, F16RoundTripsEveryValue) {
  for (uint32_t h = 0; h < 65536; ++h) {
    float f = f16_to_f32(static_cast<uint16_t>(h));
    float hw = _cvtsh_ss(static_cast<uint16_t>(h));
    if (std::isnan(hw)) {
      EXPECT_TRUE(std::isnan(f));
      continue;
    }
    ASSERT_EQ(std::memcmp(&f, &hw, 4), 0) << h;
    ASSERT_EQ(f32_to_f16(f), h) << h;
  }
}

TEST(Half, F32ToF16RoundsLikeHardware) {
  uint32_t state = 12345;
  for (int i = 0; i < 200000; ++i) {
    state = state * 1664525u + 1013904223u;
    float f;
    uint32_t bits = state;
    std::memcpy(&f, &bits, 4);
    if (std::isnan(f)) continue;
    ASSERT_EQ(f32_to_f16(f), _cvtss_sh(f, 0)) << f;
  }
}

TEST(Half, Bf16RoundsToNearestEven) {
  EXPECT_EQ(f32_to_bf16(1.0f), 0x3f80);
  EXPECT_EQ(bf16_to_f32(0x3f80), 1.0f);
  uint32_t halfway = 0x3f808000u;  // exactly between 0x3f80 and 0x3f81: to even
  float f;
  std::memcpy(&f, &halfway, 4);
  EXPECT_EQ(f32_to_bf16(f), 0x3f80);
  uint32_t above = 0x3f808001u;
  std::memcpy(&f, &above, 4);
  EXPECT_EQ(f32_to_bf16(f), 0x3f81);
}

TEST(DType, BytesForChecksBlocksAndOverflow) {
  EXPECT_EQ(bytes_for(DType::F32, 10), 40u);
  EXPECT_EQ(bytes_for(DType::Q4_0, 64), 36u);
  EXPECT_FALSE(bytes_for(DType::Q4_0, 33).has_value());
  EXPECT_FALSE(bytes_for(DType::F32, -1).has_value());
  EXPECT_FALSE(bytes_for(DType::Q6_K, int64_t{1} << 62).has_value() &&
               *bytes_for(DType::Q6_K, int64_t{1} << 62) < 210);
  EXPECT_FALSE(bytes_for(DType::F64, INT64_MAX).has_value());
  EXPECT_EQ(dtype_from_name("Q4_K"), DType::Q4_K);
}

}  // namespace
}  // namespace jinx

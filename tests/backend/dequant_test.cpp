// dequantize_row against gguf-py's gguf.quants.dequantize (fixtures from
// tools/make_gguf_fixtures.py). Every path is exact (see dequant.cpp), so values must match bit for
// bit; NaNs only need to be NaN.
#include "backend/cpu/dequant.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string>
#include <vector>

#include "core/check.h"
#include "core/dtype.h"
#include "core/half.h"
#include "core/quant_blocks.h"

namespace jinx::cpu {
namespace {

const std::string kDir = std::string(JINX_FIXTURES) + "/gguf/dequant/";

std::vector<uint8_t> read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in.good()) << "missing fixture " << path
                         << " (run /work/refvenv/bin/python tools/make_gguf_fixtures.py)";
  return {std::istreambuf_iterator<char>(in), {}};
}

struct Case {
  DType dtype;
  int64_t n;
  std::string stem;
};

std::vector<Case> manifest() {
  std::ifstream in(kDir + "manifest.txt");
  std::vector<Case> cases;
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    std::istringstream ls(line);
    std::string dtype, stem;
    int64_t n = 0;
    ls >> dtype >> n >> stem;
    auto t = dtype_from_name(dtype);
    if (!t) ADD_FAILURE() << "unknown dtype in manifest: " << dtype;
    if (t) cases.push_back({*t, n, stem});
  }
  return cases;
}

uint32_t bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

TEST(Dequant, ManifestCoversEverySupportedType) {
  auto cases = manifest();
  for (DType t : {DType::F32, DType::F16, DType::BF16, DType::Q8_0, DType::Q4_0, DType::Q4_1,
                  DType::Q4_K, DType::Q5_K, DType::Q6_K, DType::Q5_1, DType::Q2_K, DType::Q3_K,
                  DType::IQ4_NL, DType::IQ4_XS, DType::MXFP4}) {
    bool found = false;
    for (const Case& c : cases) found |= c.dtype == t;
    EXPECT_TRUE(found) << name(t);
  }
}

TEST(Dequant, MatchesGgufPyReferenceExactly) {
  auto cases = manifest();
  ASSERT_GE(cases.size(), 15u);
  for (const Case& c : cases) {
    SCOPED_TRACE(c.stem);
    auto raw = read_bytes(kDir + c.stem + ".raw.bin");
    auto want_bytes = read_bytes(kDir + c.stem + ".f32.bin");
    ASSERT_EQ(raw.size(), *bytes_for(c.dtype, c.n));
    ASSERT_EQ(want_bytes.size(), static_cast<size_t>(c.n) * 4);
    std::vector<float> want(c.n), got(c.n, -12345.f);
    std::memcpy(want.data(), want_bytes.data(), want_bytes.size());
    dequantize_row(c.dtype, raw.data(), got.data(), c.n);
    int64_t bad = 0;
    for (int64_t i = 0; i < c.n; ++i) {
      bool ok = std::isnan(want[i]) ? std::isnan(got[i]) : bits(want[i]) == bits(got[i]);
      if (!ok && ++bad <= 5)
        ADD_FAILURE() << name(c.dtype) << " element " << i << ": got " << got[i] << " want "
                      << want[i];
    }
    EXPECT_EQ(bad, 0) << name(c.dtype);
  }
}

// Row by row equals all at once: dequantize_row carries no state between blocks.
TEST(Dequant, RowsAreIndependent) {
  for (const Case& c : manifest()) {
    const int64_t block = traits(c.dtype).block_elems;
    if (c.n < 2 * block) continue;
    auto raw = read_bytes(kDir + c.stem + ".raw.bin");
    std::vector<float> all(c.n), part(c.n);
    dequantize_row(c.dtype, raw.data(), all.data(), c.n);
    const int64_t half = (c.n / block / 2) * block;
    const size_t half_bytes = *bytes_for(c.dtype, half);
    dequantize_row(c.dtype, raw.data(), part.data(), half);
    dequantize_row(c.dtype, raw.data() + half_bytes, part.data() + half, c.n - half);
    EXPECT_EQ(0, std::memcmp(all.data(), part.data(), c.n * 4)) << c.stem;
  }
}

// Hand-built blocks, checked against values worked out from the format definition.
TEST(Dequant, HandBuiltQ4KAndQ6K) {
  BlockQ4_K q4{};
  q4.d = f32_to_f16(0.5f);
  q4.dmin = f32_to_f16(0.25f);
  // sub-block 1: sc = 3, m = 5 (low 6 bits of scales[1] / scales[5]);
  // sub-block 5: sc = (scales[9] & 15) | (scales[1] >> 6) << 4 = 2 | 16, m = 4 | (scales[5]>>6)<<4
  q4.scales[1] = 3 | (1 << 6);
  q4.scales[5] = 5 | (2 << 6);
  q4.scales[9] = 2 | (4 << 4);
  q4.qs[0] = 0x70;       // sub-block 1, element 0 (high nibble of qs[0]): q = 7
  q4.qs[64 + 3] = 0xA0;  // sub-block 5, element 3 (high nibble of qs[64 + 3]): q = 10
  std::vector<float> out(kQK_K);
  dequantize_row(DType::Q4_K, &q4, out.data(), kQK_K);
  EXPECT_EQ(out[32], 0.5f * 3 * 7 - 0.25f * 5);
  EXPECT_EQ(out[33], -0.25f * 5);
  EXPECT_EQ(out[5 * 32 + 3], 0.5f * 18 * 10 - 0.25f * (4 + 32));
  EXPECT_EQ(out[0], 0.0f);

  BlockQ6_K q6{};
  q6.d = f32_to_f16(2.0f);
  for (auto& s : q6.scales) s = 1;
  q6.scales[(128 + 64 + 5) / 16] = -3;
  // element 128 + 64 + 5: half 1, k = 2, l = 5 -> high nibble of ql[64 + 5], bits 4-5 of qh[32 + 5]
  q6.ql[64 + 5] = 0x90;
  q6.qh[32 + 5] = 0x3 << 4;
  dequantize_row(DType::Q6_K, &q6, out.data(), kQK_K);
  EXPECT_EQ(out[128 + 64 + 5], 2.0f * -3 * ((9 | (3 << 4)) - 32));
  EXPECT_EQ(out[0], 2.0f * -32);
}

// Q5_0 as ggml lays it out (d, then the fifth bits as a little-endian uint32, then nibbles):
// element j = d * (((qs[j] & 15) | bit j of qh << 4) - 16), element j + 16 the high nibble with
// bit j + 16. Values set by hand.
TEST(Dequant, HandBuiltQ5_0) {
  BlockQ5_0 b[2];
  std::vector<float> want;
  for (int blk = 0; blk < 2; ++blk) {
    const float d = blk == 0 ? 0.5f : -0.125f;
    b[blk].d = f32_to_f16(d);
    uint32_t qh = 0;
    int q[32];
    for (int j = 0; j < 32; ++j) q[j] = (j * 7 + blk * 3) % 32;  // 0..31, every code
    for (int j = 0; j < 16; ++j) {
      b[blk].qs[j] = static_cast<uint8_t>((q[j] & 15) | ((q[j + 16] & 15) << 4));
      qh |= static_cast<uint32_t>(q[j] >> 4) << j;
      qh |= static_cast<uint32_t>(q[j + 16] >> 4) << (j + 16);
    }
    std::memcpy(b[blk].qh, &qh, 4);
    for (int j = 0; j < 32; ++j) want.push_back(d * static_cast<float>(q[j] - 16));
  }
  std::vector<float> got(64);
  cpu::dequantize_row(DType::Q5_0, b, got.data(), 64);
  EXPECT_EQ(got, want);
}

// MXFP4 as ggml lays it out (e, then Q4_0's nibbles): element j = 2^(e - 128) * E2M1 code
// doubled, worked out by hand: 1.5 = code 3 (doubled 3), -6 = code 15 (doubled -12), with e = 127
// (2^-1); the scale is a denormal for e < 2 and e = 255 is 2^127, so 12 * 2^127 overflows.
TEST(Dequant, HandBuiltMxfp4) {
  BlockMXFP4 b[3] = {};
  b[0].e = 127;
  b[0].qs[0] = 0xF3;  // element 0: code 3, element 16: code 15
  b[1].e = 0;
  b[1].qs[5] = 0x09;  // element 5: code 9 (-1), element 21: 0
  b[2].e = 255;
  b[2].qs[1] = 0x71;  // element 1: code 1, element 17: code 7 (12)
  std::vector<float> got(96);
  cpu::dequantize_row(DType::MXFP4, b, got.data(), 96);
  EXPECT_EQ(got[0], 1.5f);
  EXPECT_EQ(got[16], -6.0f);
  EXPECT_EQ(got[1], 0.0f);
  EXPECT_EQ(got[32 + 5], -0x1p-128f);
  EXPECT_EQ(got[32 + 21], 0.0f);
  EXPECT_EQ(got[64 + 1], 0x1p127f);
  EXPECT_EQ(got[64 + 17], INFINITY);
}

TEST(Dequant, RejectsBadLengthsAndTypes) {
  std::vector<uint8_t> src(1024);
  std::vector<float> dst(256);
  EXPECT_THROW(dequantize_row(DType::Q4_0, src.data(), dst.data(), 33), Error);
  EXPECT_THROW(dequantize_row(DType::Q4_K, src.data(), dst.data(), 128), Error);
  EXPECT_THROW(dequantize_row(DType::F32, src.data(), dst.data(), -1), Error);
  EXPECT_THROW(dequantize_row(DType::I32, src.data(), dst.data(), 4), Error);
  dequantize_row(DType::Q8_0, src.data(), dst.data(), 0);  // empty is fine
}

}  // namespace
}  // namespace jinx::cpu

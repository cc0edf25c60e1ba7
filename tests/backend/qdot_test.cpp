// Op parity of the default (quantized-activation) matmul: every weight format with an integer
// kernel x ISA level x token count (GEMV 1-4, GEMM beyond) on random shapes, against
//  (a) the exact product of the dequantized weights (dequantize_row, the reference checked
//      against gguf-py) and the dequantized 8-bit activations, in double: only fp32 rounding
//      separates them, bound (cols / 16 + 32) * 2^-23 * sum of the partial products' sizes;
//  (b) the fp32 activations: the 8-bit rounding moves each x by at most d / 2 (d = max|x| / 127
//      of its block of 32), so the product moves by at most sum_c |w_c| * d_c / 2.
// The activation rounding itself is checked against its definition.
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

std::vector<Isa> isa_levels() {
  std::vector<Isa> v;
  for (Isa isa : {Isa::kScalar, Isa::kAvx2, Isa::kAvx512})
    if (static_cast<int>(isa) <= static_cast<int>(detected_isa())) v.push_back(isa);
  return v;
}

struct IsaGuard {
  ~IsaGuard() { set_isa(detected_isa()); }
};

TEST(QuantAct, RoundsEachBlockOfThirtyTwoToItsMaxOver127) {
  std::mt19937 rng(3);
  std::normal_distribution<float> nd;
  IsaGuard guard;
  for (int64_t cols : {32, 96, 128, 4864}) {
    std::vector<float> x(cols);
    for (auto& v : x) v = nd(rng) * (rng() % 2 ? 1.0f : 100.0f);
    std::fill_n(x.begin(), 32, 0.0f);  // an all-zero block
    if (cols > 64) x[40] = -1e30f;     // a huge one
    std::vector<int8_t> q0;
    std::vector<float> d0, s0;
    for (Isa isa : isa_levels()) {
      set_isa(isa);
      QuantActBuffer buf;
      const QuantActs a = buf.quantize(x.data(), 1, cols);
      ASSERT_EQ(a.n_pairs, (cols + 63) / 64);
      for (int64_t b = 0; b < cols / 32; ++b) {
        float amax = 0;
        for (int i = 0; i < 32; ++i) amax = std::max(amax, std::fabs(x[b * 32 + i]));
        const float d = amax / 127.0f;
        for (int i = 0; i < 32; ++i) {
          const int64_t c = b * 32 + i;
          ASSERT_EQ(a.dl[c / 4], d);
          ASSERT_LE(std::fabs(a.value(0, c) - x[c]), d * 0.5f * (1 + 1e-6f)) << c;
        }
        for (int l = 0; l < 8; ++l) {
          const int64_t c = b * 32 + 4 * l;
          const int s = a.q[c] + a.q[c + 1] + a.q[c + 2] + a.q[c + 3];
          ASSERT_EQ(a.sl[c / 4], d * static_cast<float>(s));
        }
      }
      if (cols % 64) {  // padding of the last pair
        for (int i = 0; i < 32; ++i) ASSERT_EQ(a.q[cols + i], 0);
        for (int l = 0; l < 8; ++l) ASSERT_EQ(a.dl[cols / 4 + l], 0.0f);
      }
      const size_t nq = a.n_pairs * 64, nl = a.n_pairs * 16;
      if (isa == Isa::kScalar) {
        q0.assign(a.q, a.q + nq);
        d0.assign(a.dl, a.dl + nl);
        s0.assign(a.sl, a.sl + nl);
      } else {  // every level rounds identically
        EXPECT_TRUE(std::equal(q0.begin(), q0.end(), a.q)) << isa_name(isa);
        EXPECT_TRUE(std::equal(d0.begin(), d0.end(), a.dl)) << isa_name(isa);
        EXPECT_TRUE(std::equal(s0.begin(), s0.end(), a.sl)) << isa_name(isa);
      }
    }
  }
}

// A weight matrix with its storage and its dequantized fp32 copy.
struct TestMatrix {
  WeightMatrix w;
  std::vector<uint8_t> data;
  std::vector<uint8_t> scales, biases;  // MLX
  std::vector<float> wf;                // [rows, cols]
};

void put_f16(uint8_t* p, float v) {
  const uint16_t h = f32_to_f16(v);
  std::memcpy(p, &h, 2);
}

// GGUF blocks of random bytes with sane f16 scales (d, dmin) so that weights are O(0.1-1).
TestMatrix gguf_matrix(DType t, int64_t rows, int64_t cols, std::mt19937& rng) {
  TestMatrix m;
  const size_t rb = *bytes_for(t, cols);
  m.data.resize(rb * rows);
  for (auto& b : m.data) b = static_cast<uint8_t>(rng());
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  const auto& tr = traits(t);
  for (int64_t i = 0; i < cols / tr.block_elems * rows; ++i) {
    uint8_t* blk = m.data.data() + i * tr.block_bytes;
    switch (t) {
      case DType::Q8_0:
        put_f16(blk, 0.01f * u(rng));
        break;
      case DType::Q4_0:
        put_f16(blk, 0.1f * u(rng));
        break;
      case DType::Q4_1:
        put_f16(blk, 0.1f * u(rng)), put_f16(blk + 2, 0.5f * u(rng));
        break;
      case DType::Q5_0:
        put_f16(blk, 0.05f * u(rng));
        break;
      case DType::Q4_K:
      case DType::Q5_K:
        put_f16(blk, 0.01f * u(rng)), put_f16(blk + 2, 0.01f * u(rng));
        break;
      case DType::Q6_K:
        put_f16(blk + offsetof(BlockQ6_K, d), 0.001f * u(rng));
        break;
      case DType::Q5_1:
        put_f16(blk, 0.05f * u(rng));
        put_f16(blk + 2, 0.5f * u(rng));
        break;
      case DType::Q2_K:
        put_f16(blk + offsetof(BlockQ2_K, d), 0.02f * u(rng));
        put_f16(blk + offsetof(BlockQ2_K, dmin), 0.02f * u(rng));
        break;
      case DType::Q3_K:
        put_f16(blk + offsetof(BlockQ3_K, d), 0.002f * u(rng));
        break;
      case DType::IQ4_NL:
        put_f16(blk, 0.002f * u(rng));
        break;
      case DType::IQ4_XS:
        put_f16(blk, 0.0002f * u(rng));
        break;
      case DType::MXFP4:  // 2^-10 .. 2^-5, and 1 block in 8 at the denormal scales 2^-128 .. 2^-126
        blk[0] = static_cast<uint8_t>(rng() % 8 ? 118 + rng() % 6 : rng() % 3);
        break;
      default:
        break;
    }
  }
  m.w = {t, m.data.data(), rows, cols, rb, {}};
  m.wf.resize(rows * cols);
  for (int64_t r = 0; r < rows; ++r)
    dequantize_row(t, m.data.data() + r * rb, &m.wf[r * cols], cols);
  return m;
}

// MLX affine: random packed words, scales and biases in `st`; the reference is the definition.
TestMatrix mlx_matrix(int bits, int group, DType st, int64_t rows, int64_t cols,
                      std::mt19937& rng) {
  TestMatrix m;
  const int64_t ng = cols / group, rb = cols * bits / 8;
  m.data.resize(rb * rows);
  for (auto& b : m.data) b = static_cast<uint8_t>(rng());
  const size_t sb = st == DType::F32 ? 4 : 2;
  m.scales.resize(rows * ng * sb);
  m.biases.resize(rows * ng * sb);
  std::vector<float> sf(rows * ng), bf(rows * ng);
  std::uniform_real_distribution<float> u(-0.1f, 0.1f);
  for (int64_t i = 0; i < rows * ng; ++i) {
    float v[2] = {u(rng) / (1 << (bits - 4)), u(rng) * 5};
    for (int k = 0; k < 2; ++k) {
      uint8_t* p = (k ? m.biases : m.scales).data() + i * sb;
      if (st == DType::F32) std::memcpy(p, &v[k], 4);
      if (st == DType::F16) put_f16(p, v[k]), v[k] = f16_to_f32(f32_to_f16(v[k]));
      if (st == DType::BF16) {
        const uint16_t h = f32_to_bf16(v[k]);
        std::memcpy(p, &h, 2);
        v[k] = bf16_to_f32(h);
      }
    }
    sf[i] = v[0], bf[i] = v[1];
  }
  m.w = {DType::U32, m.data.data(),           rows,
         cols,       static_cast<size_t>(rb), {bits, group, st, m.scales.data(), m.biases.data()}};
  m.wf.resize(rows * cols);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) {
      const int64_t bit = c * bits;
      const uint32_t q = (m.data[r * rb + bit / 8] >> (bit % 8)) & ((1u << bits) - 1);
      m.wf[r * cols + c] = sf[r * ng + c / group] * static_cast<float>(q) + bf[r * ng + c / group];
    }
  return m;
}

struct Case {
  const char* label;
  DType dtype;        // GGUF type, or U32 for MLX
  int bits, group;    // MLX
  DType scale_dtype;  // MLX
  int64_t rows, cols;
};

class QdotParity : public ::testing::TestWithParam<Case> {};

TestMatrix case_matrix(const Case& k, std::mt19937& rng) {
  return k.dtype == DType::U32 ? mlx_matrix(k.bits, k.group, k.scale_dtype, k.rows, k.cols, rng)
                               : gguf_matrix(k.dtype, k.rows, k.cols, rng);
}

TEST_P(QdotParity, AllIsaLevelsAndTokenCounts) {
  const Case& k = GetParam();
  std::mt19937 rng(99 + k.cols + k.rows);
  TestMatrix m = case_matrix(k, rng);
  const int64_t rows = k.rows, cols = k.cols;
  ThreadPool pool(2);
  IsaGuard guard;
  std::normal_distribution<float> nd;
  double worst_a = 0, worst_b = 0, fp32_err = 0, fp32_mag = 0;
  for (int64_t n : {1, 2, 3, 4, 5, 7, 16, 33, 64}) {
    std::vector<float> x(n * cols);
    for (auto& v : x) v = nd(rng);
    QuantActBuffer qb;
    const QuantActs a = qb.quantize(x.data(), n, cols);
    // References per (token, row): exact on the rounded activations, and on fp32 activations.
    std::vector<double> ref_q(n * rows), ref_f(n * rows), tol_a(n * rows), tol_b(n * rows);
    for (int64_t t = 0; t < n; ++t)
      for (int64_t r = 0; r < rows; ++r) {
        const float* wr = &m.wf[r * cols];
        double sq = 0, sf = 0, sxa = 0, drift = 0, wmax = 0;
        for (int64_t c = 0; c < cols; ++c) wmax = std::max(wmax, std::fabs(double(wr[c])));
        for (int64_t c = 0; c < cols; ++c) {
          sq += double(wr[c]) * a.value(t, c);
          sf += double(wr[c]) * x[t * cols + c];
          sxa += std::fabs(a.value(t, c));
          drift += std::fabs(double(wr[c])) * a.dl_row(t)[c / 4] * 0.5;
        }
        ref_q[t * rows + r] = sq;
        ref_f[t * rows + r] = sf;
        // Partial products (scale * integer part, offset part) are at most ~3 max|w| per value.
        tol_a[t * rows + r] = (cols / 16.0 + 32) * 0x1p-23 * 3 * wmax * sxa + 1e-30;
        tol_b[t * rows + r] = drift * (1 + 1e-5) + tol_a[t * rows + r];
      }
    for (Isa isa : isa_levels()) {
      set_isa(isa);
      std::vector<float> y(n * rows, NAN);
      matmul(m.w, x.data(), n, y.data(), rows, pool);
      for (int64_t t = 0; t < n; ++t)
        for (int64_t r = 0; r < rows; ++r) {
          const int64_t i = t * rows + r;
          worst_a = std::max(worst_a, std::fabs(y[i] - ref_q[i]) / tol_a[i]);
          worst_b = std::max(worst_b, std::fabs(y[i] - ref_f[i]) / tol_b[i]);
          fp32_err = std::max(fp32_err, std::fabs(y[i] - ref_f[i]));
          fp32_mag = std::max(fp32_mag, std::fabs(ref_f[i]));
          ASSERT_NEAR(y[i], ref_q[i], tol_a[i])
              << k.label << " isa " << isa_name(isa) << " n " << n << " t " << t << " r " << r;
          ASSERT_NEAR(y[i], ref_f[i], tol_b[i])
              << k.label << " isa " << isa_name(isa) << " n " << n << " t " << t << " r " << r;
        }
    }
  }
  // How much of each bound was used; and the 8-bit rounding's effect relative to max |y|.
  std::printf("%-18s worst |err| / bound: (a) %.3f (b) %.3f; vs fp32: %.2g of max |y|\n", k.label,
              worst_a, worst_b, fp32_err / fp32_mag);
}

// Batch invariance: a token's output row is bit-identical whatever else shares its batch and
// wherever it sits in it (GEMV for <= 4 tokens, GEMM panels beyond, any tile position). The
// engine relies on it: a seeded request samples the same tokens alone, batched, or after a
// prefix-cache hit that leaves only a few prompt tokens to compute.
TEST_P(QdotParity, RowsDoNotDependOnTheBatch) {
  const Case& k = GetParam();
  std::mt19937 rng(7 + k.cols + k.rows);
  TestMatrix m = case_matrix(k, rng);
  const int64_t rows = k.rows, cols = k.cols;
  ThreadPool pool(2);
  IsaGuard guard;
  std::normal_distribution<float> nd;
  std::vector<float> x0(cols);
  for (auto& v : x0) v = nd(rng);
  for (Isa isa : isa_levels()) {
    set_isa(isa);
    std::vector<float> alone(rows);
    matmul(m.w, x0.data(), 1, alone.data(), rows, pool);
    for (int64_t n : {2, 3, 4, 5, 8, 9, 16, 33, 64, 65}) {
      for (int64_t at : {int64_t{0}, n / 2, n - 1}) {
        std::vector<float> x(n * cols);
        for (auto& v : x) v = nd(rng);
        std::copy(x0.begin(), x0.end(), x.begin() + at * cols);
        std::vector<float> y(n * rows, NAN);
        matmul(m.w, x.data(), n, y.data(), rows, pool);
        for (int64_t r = 0; r < rows; ++r)
          ASSERT_EQ(std::memcmp(&y[at * rows + r], &alone[r], 4), 0)
              << k.label << " isa " << isa_name(isa) << " n " << n << " at " << at << " r " << r
              << ": " << y[at * rows + r] << " vs " << alone[r];
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(
    Formats, QdotParity,
    ::testing::Values(Case{"q8_0_odd", DType::Q8_0, 0, 0, DType::F32, 37, 96},
                      Case{"q8_0", DType::Q8_0, 0, 0, DType::F32, 19, 256},
                      Case{"q4_0_odd", DType::Q4_0, 0, 0, DType::F32, 37, 160},
                      Case{"q4_1", DType::Q4_1, 0, 0, DType::F32, 21, 64},
                      Case{"q4_1_odd", DType::Q4_1, 0, 0, DType::F32, 5, 224},
                      Case{"q5_0", DType::Q5_0, 0, 0, DType::F32, 19, 640},
                      Case{"q5_0_odd", DType::Q5_0, 0, 0, DType::F32, 37, 96},
                      Case{"q4_k", DType::Q4_K, 0, 0, DType::F32, 37, 512},
                      Case{"q5_k", DType::Q5_K, 0, 0, DType::F32, 23, 768},
                      Case{"q6_k", DType::Q6_K, 0, 0, DType::F32, 37, 256},
                      Case{"q6_k_wide", DType::Q6_K, 0, 0, DType::F32, 9, 1024},
                      Case{"q5_1", DType::Q5_1, 0, 0, DType::F32, 19, 640},
                      Case{"q5_1_odd", DType::Q5_1, 0, 0, DType::F32, 37, 96},
                      Case{"q2_k", DType::Q2_K, 0, 0, DType::F32, 37, 512},
                      Case{"q3_k", DType::Q3_K, 0, 0, DType::F32, 23, 768},
                      Case{"iq4_nl", DType::IQ4_NL, 0, 0, DType::F32, 19, 640},
                      Case{"iq4_nl_odd", DType::IQ4_NL, 0, 0, DType::F32, 37, 96},
                      Case{"iq4_xs", DType::IQ4_XS, 0, 0, DType::F32, 37, 512},
                      Case{"mxfp4", DType::MXFP4, 0, 0, DType::F32, 19, 640},
                      Case{"mxfp4_odd", DType::MXFP4, 0, 0, DType::F32, 37, 96},
                      Case{"mlx4_g32_odd_bf16", DType::U32, 4, 32, DType::BF16, 37, 96},
                      Case{"mlx4_g64_f16", DType::U32, 4, 64, DType::F16, 19, 320},
                      Case{"mlx4_g128_f32", DType::U32, 4, 128, DType::F32, 7, 256},
                      Case{"mlx8_g32_odd_f16", DType::U32, 8, 32, DType::F16, 37, 160},
                      Case{"mlx8_g64_bf16", DType::U32, 8, 64, DType::BF16, 11, 128},
                      Case{"mlx8_g128_f32", DType::U32, 8, 128, DType::F32, 13, 384}),
    [](const auto& info) { return std::string(info.param.label); });

}  // namespace
}  // namespace jinx::cpu

// The host side of the GPU weight upload (model/device_repack.h), against the CPU's own
// dequantization (cpu::weight_row, the reference every CPU kernel is tested against): a weight
// repacked to Q4A and read back as s * q + m must give the CPU's values bit for bit, for Q4_K,
// Q4_0, Q4_1 and MLX 4-bit rows; stacks land every part's rows in order.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "backend/cpu/kernels.h"
#include "backend/cpu/quantize.h"
#include "core/check.h"
#include "core/half.h"
#include "core/quant_blocks.h"
#include "model/device_repack.h"
#include "model/model.h"

namespace jinx {
namespace {

// A weight matrix with its own storage (data may start at an odd offset, as in safetensors).
struct Owned {
  std::vector<uint8_t> bytes, scales, biases;
  WeightMatrix w;
};

void put_u16(uint8_t* p, uint16_t v) {
  std::memcpy(p, &v, 2);
}

// Finite f16 of either sign, magnitudes from 2^-14 (denormals below) to 8.
uint16_t random_f16(std::mt19937& rng) {
  std::uniform_real_distribution<float> mag(-14.0f, 3.0f);
  const float v = std::exp2(mag(rng)) * (rng() % 2 ? 1.0f : -1.0f);
  return f32_to_f16(v);
}

// Random GGML blocks: every byte random, then each f16 field set to a finite value.
Owned random_blocks(DType t, int64_t rows, int64_t cols, std::mt19937& rng) {
  Owned o;
  const size_t row_bytes = *bytes_for(t, cols);
  o.bytes.resize(row_bytes * rows);
  for (auto& b : o.bytes) b = static_cast<uint8_t>(rng());
  const size_t bb = traits(t).block_bytes;
  std::vector<size_t> f16_fields;
  switch (t) {
    case DType::Q4_K:
      f16_fields = {offsetof(BlockQ4_K, d), offsetof(BlockQ4_K, dmin)};
      break;
    case DType::Q4_1:
      f16_fields = {offsetof(BlockQ4_1, d), offsetof(BlockQ4_1, m)};
      break;
    case DType::Q6_K:
      f16_fields = {offsetof(BlockQ6_K, d)};
      break;
    default:
      f16_fields = {0};
      break;  // Q4_0, Q8_0: d first
  }
  for (size_t b = 0; b < o.bytes.size(); b += bb)
    for (size_t f : f16_fields) put_u16(&o.bytes[b + f], random_f16(rng));
  o.w = {t, o.bytes.data(), rows, cols, row_bytes, {}};
  return o;
}

// Q4_K rows from llama.cpp's reference quantizer (realistic scales: d, dmin > 0).
Owned quantized_q4_k(int64_t rows, int64_t cols, std::mt19937& rng) {
  Owned o;
  const size_t row_bytes = *bytes_for(DType::Q4_K, cols);
  o.bytes.resize(row_bytes * rows);
  std::normal_distribution<float> nd(0.0f, 0.05f);
  std::vector<float> x(static_cast<size_t>(cols));
  for (int64_t r = 0; r < rows; ++r) {
    for (auto& v : x) v = nd(rng);
    cpu::quantize_row_q4_k(x.data(), &o.bytes[r * row_bytes], cols);
  }
  o.w = {DType::Q4_K, o.bytes.data(), rows, cols, row_bytes, {}};
  return o;
}

// MLX 4-bit: random packed words and scales / biases in scale_dtype; data at byte offset `skew`.
Owned random_mlx4(int64_t rows, int64_t cols, int group, DType scale_dtype, int skew,
                  std::mt19937& rng) {
  Owned o;
  const size_t row_bytes = static_cast<size_t>(cols / 2);
  o.bytes.resize(row_bytes * rows + skew);
  for (auto& b : o.bytes) b = static_cast<uint8_t>(rng());
  const int64_t n = rows * (cols / group);
  const size_t es = scale_dtype == DType::F32 ? 4 : 2;
  o.scales.resize(n * es + skew);
  o.biases.resize(n * es + skew);
  std::uniform_real_distribution<float> s(-0.05f, 0.05f);
  for (int64_t i = 0; i < n; ++i) {
    for (auto* arr : {&o.scales, &o.biases}) {
      uint8_t* p = arr->data() + skew + i * es;
      const float v = s(rng);
      if (scale_dtype == DType::F32) std::memcpy(p, &v, 4);
      if (scale_dtype == DType::F16) put_u16(p, f32_to_f16(v));
      if (scale_dtype == DType::BF16) put_u16(p, f32_to_bf16(v));
    }
  }
  const MlxQuant q{4, group, scale_dtype, o.scales.data() + skew, o.biases.data() + skew};
  o.w = {DType::U32, o.bytes.data() + skew, rows, cols, row_bytes, q};
  return o;
}

std::string describe(const WeightMatrix& w) {
  return str(w.is_mlx() ? str("MLX4 g", w.mlx.group_size, " ", name(w.mlx.scale_dtype))
                        : std::string(name(w.dtype)),
             " ", w.rows, "x", w.cols);
}

// Number of values that differ in their bits (also prints the first). signed_zero: a zero may
// differ in sign only (Q4_0: the CPU's d * (q - 8) is -0 for q = 8 and d < 0, Q4A's d * 8 - 8d
// is +0; equal as numbers, and a dot product cannot tell them apart).
int64_t bit_mismatches(const std::vector<float>& got, const std::vector<float>& want,
                       const std::string& what, bool signed_zero = false) {
  int64_t bad = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    if (std::memcmp(&got[i], &want[i], 4) == 0) continue;
    if (signed_zero && got[i] == 0.0f && want[i] == 0.0f) continue;
    if (bad++ == 0)
      ADD_FAILURE() << what << ": element " << i << " is " << got[i] << ", CPU " << want[i];
  }
  return bad;
}

// Repacks all rows of w, reads each back as s * q + m, compares with cpu::weight_row.
void expect_q4a_exact(const WeightMatrix& w) {
  ASSERT_TRUE(q4a_compatible(w)) << describe(w);
  const int64_t nb = w.cols / 32;
  std::vector<uint8_t> q(w.rows * nb * 16);
  std::vector<float> s(w.rows * nb), m(w.rows * nb);
  repack_q4a(w, 0, w.rows, q.data(), s.data(), m.data());
  std::vector<float> got(w.rows * w.cols), want(w.rows * w.cols);
  for (int64_t r = 0; r < w.rows; ++r) {
    dequant_q4a_row(&q[r * nb * 16], &s[r * nb], &m[r * nb], w.cols, &got[r * w.cols]);
    cpu::weight_row(w, r, &want[r * w.cols]);
  }
  const bool q4_0 = !w.is_mlx() && w.dtype == DType::Q4_0;
  EXPECT_EQ(bit_mismatches(got, want, describe(w), q4_0), 0) << describe(w);
  // A sub-range lands at the start of the arrays.
  if (w.rows > 2) {
    std::vector<uint8_t> q2((w.rows - 1) * nb * 16);
    std::vector<float> s2((w.rows - 1) * nb), m2((w.rows - 1) * nb);
    repack_q4a(w, 1, w.rows, q2.data(), s2.data(), m2.data());
    EXPECT_TRUE(std::equal(q2.begin(), q2.end(), q.begin() + nb * 16)) << describe(w);
    EXPECT_EQ(std::memcmp(s2.data(), &s[nb], s2.size() * 4), 0) << describe(w);
    EXPECT_EQ(std::memcmp(m2.data(), &m[nb], m2.size() * 4), 0) << describe(w);
  }
}

TEST(DeviceRepack, Q4KRowsMatchCpuDequantBitForBit) {
  std::mt19937 rng(11);
  for (int64_t cols : {256, 512, 1536}) {
    expect_q4a_exact(random_blocks(DType::Q4_K, 7, cols, rng).w);
    expect_q4a_exact(quantized_q4_k(5, cols, rng).w);
  }
}

TEST(DeviceRepack, Q4_0AndQ4_1RowsMatchCpuDequant) {
  std::mt19937 rng(12);
  for (DType t : {DType::Q4_0, DType::Q4_1})
    for (int64_t cols : {32, 96, 896}) expect_q4a_exact(random_blocks(t, 6, cols, rng).w);
}

TEST(DeviceRepack, Mlx4RowsMatchCpuDequantBitForBit) {
  std::mt19937 rng(13);
  for (DType st : {DType::F16, DType::BF16, DType::F32})
    for (int group : {32, 64, 128})
      for (int skew : {0, 1}) expect_q4a_exact(random_mlx4(5, 128 * 3, group, st, skew, rng).w);
}

// Made by the CPU's MLX quantizer (mlx.core.quantize's rounding) from random values.
TEST(DeviceRepack, QuantizedMlx4MatrixMatchesCpuDequant) {
  std::mt19937 rng(14);
  std::normal_distribution<float> nd(0.0f, 0.1f);
  std::vector<float> x(9 * 256);
  for (auto& v : x) v = nd(rng);
  WeightMatrix dense{DType::F32, x.data(), 9, 256, 256 * 4, {}};
  ThreadPool pool(1);
  std::vector<uint8_t> storage;
  for (int group : {32, 64, 128})
    expect_q4a_exact(cpu::quantize_matrix_mlx(dense, 4, group, &storage, pool));
}

TEST(DeviceRepack, CompatibilityAndBadInput) {
  std::mt19937 rng(15);
  EXPECT_FALSE(q4a_compatible(random_blocks(DType::Q6_K, 2, 256, rng).w));
  EXPECT_FALSE(q4a_compatible(random_blocks(DType::Q8_0, 2, 64, rng).w));
  Owned m8 = random_mlx4(2, 128, 64, DType::F16, 0, rng);
  m8.w.mlx.bits = 8;
  EXPECT_FALSE(q4a_compatible(m8.w));
  Owned mg = random_mlx4(2, 128, 64, DType::F16, 0, rng);
  mg.w.mlx.group_size = 16;
  EXPECT_FALSE(q4a_compatible(mg.w));
  mg.w.mlx.group_size = 128;
  mg.w.cols = 96;  // not whole groups
  EXPECT_FALSE(q4a_compatible(mg.w));

  Owned k = random_blocks(DType::Q4_K, 3, 256, rng);
  std::vector<uint8_t> q(3 * 8 * 16);
  std::vector<float> s(3 * 8), m(3 * 8);
  EXPECT_THROW(repack_q4a(k.w, 2, 4, q.data(), s.data(), m.data()), Error);
  EXPECT_THROW(repack_q4a(k.w, -1, 1, q.data(), s.data(), m.data()), Error);
  WeightMatrix shortrows = k.w;
  shortrows.row_bytes = 100;
  EXPECT_THROW(repack_q4a(shortrows, 0, 1, q.data(), s.data(), m.data()), Error);
  EXPECT_THROW(
      repack_q4a(random_blocks(DType::Q8_0, 1, 32, rng).w, 0, 1, q.data(), s.data(), m.data()),
      Error);
}

// Row r of a packed stack, dequantized from the device layout.
std::vector<float> packed_row(const HostDeviceMatrix& m, int64_t r) {
  std::vector<float> out(static_cast<size_t>(m.cols));
  const int64_t nb = m.cols / 32;
  const uint8_t* row = &m.data[r * m.row_bytes];
  if (m.dtype == DType::BF16) {
    for (int64_t c = 0; c < m.cols; ++c) {
      uint16_t h;
      std::memcpy(&h, row + 2 * c, 2);
      out[c] = bf16_to_f32(h);
    }
  } else if (m.dtype == kDeviceQ4A) {
    const auto* s = reinterpret_cast<const float*>(m.scales.data());
    dequant_q4a_row(row, s + r * nb, &m.offsets[r * nb], m.cols, out.data());
  } else {
    for (int64_t c = 0; c < m.cols; ++c) {
      uint16_t d;
      std::memcpy(&d, &m.scales[(r * nb + c / 32) * 2], 2);
      const int64_t j = c % 32;
      int q;
      if (m.dtype == DType::Q8_0) {
        q = static_cast<int8_t>(row[c]);
      } else {
        const uint8_t byte = row[(c / 32) * 16 + (j & 15)];
        q = (j < 16 ? byte & 15 : byte >> 4) - 8;
      }
      out[c] = f16_to_f32(d) * static_cast<float>(q);
    }
  }
  return out;
}

// Every row of every part, in order: part i's row r is stack row (rows of parts < i) + r.
void expect_stack(const std::vector<const WeightMatrix*>& parts, DType want_dtype,
                  const std::string& want_label) {
  const HostDeviceMatrix m = pack_stacked(parts);
  ASSERT_EQ(m.dtype, want_dtype) << want_label;
  EXPECT_EQ(m.label, want_label);
  int64_t rows = 0;
  for (const WeightMatrix* p : parts) rows += p->rows;
  ASSERT_EQ(m.rows, rows);
  ASSERT_EQ(m.cols, parts[0]->cols);
  ASSERT_EQ(m.data.size(), m.row_bytes * rows);
  std::vector<float> want(static_cast<size_t>(m.cols));
  int64_t r0 = 0;
  for (size_t i = 0; i < parts.size(); ++i) {
    for (int64_t r = 0; r < parts[i]->rows; ++r) {
      cpu::weight_row(*parts[i], r, want.data());
      if (want_dtype == DType::BF16)
        for (float& v : want) v = bf16_to_f32(f32_to_bf16(v));
      const bool q4_0 = want_dtype == kDeviceQ4A && parts[i]->dtype == DType::Q4_0;
      EXPECT_EQ(bit_mismatches(packed_row(m, r0 + r), want, want_label, q4_0), 0)
          << want_label << ": part " << i << " row " << r;
    }
    r0 += parts[i]->rows;
  }
}

TEST(DeviceRepack, StacksLandRowsInOrder) {
  std::mt19937 rng(16);
  // q|k|v with 8, 3 and 5 rows
  Owned q = random_blocks(DType::Q4_K, 8, 512, rng), k = quantized_q4_k(3, 512, rng),
        v = random_blocks(DType::Q4_K, 5, 512, rng);
  expect_stack({&q.w, &k.w, &v.w}, kDeviceQ4A, "Q4A from Q4_K");
  // Mixed 4-bit sources share Q4A.
  Owned m = random_mlx4(4, 512, 64, DType::BF16, 1, rng),
        z = random_blocks(DType::Q4_0, 2, 512, rng);
  expect_stack({&m.w, &q.w, &z.w}, kDeviceQ4A, "Q4A from MLX4+Q4_K+Q4_0");
  expect_stack({&m.w}, kDeviceQ4A, "Q4A from MLX4");
  Owned one = random_blocks(DType::Q4_1, 3, 512, rng);
  expect_stack({&one.w, &one.w}, kDeviceQ4A, "Q4A from Q4_1");
  // Formats with their own device layout stay in it.
  Owned a = random_blocks(DType::Q4_0, 6, 512, rng), b = random_blocks(DType::Q4_0, 1, 512, rng);
  expect_stack({&a.w, &b.w}, DType::Q4_0, "Q4_0");
  Owned c = random_blocks(DType::Q8_0, 2, 512, rng), d = random_blocks(DType::Q8_0, 7, 512, rng);
  expect_stack({&c.w, &d.w}, DType::Q8_0, "Q8_0");
  // Q5_0 (llama.cpp's Q4_K_M fallback on odd widths) goes to Q8_0 with every value kept.
  Owned f = random_blocks(DType::Q5_0, 4, 640, rng), g = random_blocks(DType::Q5_0, 3, 640, rng);
  expect_stack({&f.w, &g.w}, DType::Q8_0, "Q8_0 from Q5_0");
  Owned h = random_blocks(DType::Q8_0, 2, 640, rng);
  expect_stack({&f.w, &h.w}, DType::Q8_0, "Q8_0 from Q5_0+Q8_0");
  // Anything else is expanded to BF16 (Q6_K, a Q4_K + Q6_K mix, Q8_0 with Q4_0, MLX 8-bit).
  Owned six = random_blocks(DType::Q6_K, 3, 512, rng);
  expect_stack({&q.w, &six.w}, DType::BF16, "BF16 from Q4_K+Q6_K");
  expect_stack({&c.w, &a.w}, DType::BF16, "BF16 from Q8_0+Q4_0");
  Owned m8 = random_mlx4(2, 512, 64, DType::F16, 0, rng);
  m8.w.mlx.bits = 8;
  m8.w.row_bytes = 512;
  m8.bytes.resize(2 * 512);
  m8.w.data = m8.bytes.data();
  expect_stack({&m8.w}, DType::BF16, "BF16 from MLX8");
  // Mismatched columns are refused.
  Owned narrow = random_blocks(DType::Q4_K, 2, 256, rng);
  EXPECT_THROW(pack_stacked({&q.w, &narrow.w}), Error);
}

// The stacks the CUDA executor uploads for the tiny 4-bit fixtures (the same ones its GPU test
// runs): every matrix of the Q4_K and MLX 4-bit models goes to Q4A; in the Q4_K_M file only the
// stacks with a Q6_K part (and the Q6_K output head) go to BF16.
TEST(DeviceRepack, TinyModelStacksStayFourBit) {
  const std::string dir = std::string(JINX_FIXTURES) + "/models/";
  struct Want {
    const char* model;
    int n_bf16;  // stacks expected in BF16
  };
  for (const Want& c : {Want{"tiny-llama-q4_k.gguf", 0}, Want{"tiny-qwen2-mlx4", 0},
                        Want{"tiny-llama-q4_k_m.gguf", 3}}) {
    auto model = Model::load(dir + c.model);
    const ModelWeights& w = model->weights();
    std::vector<std::vector<const WeightMatrix*>> stacks = {{&w.embed}, {&w.lm_head}};
    for (const LayerWeights& L : w.layers) {
      stacks.push_back({&L.q.w, &L.k.w, &L.v.w});
      stacks.push_back({&L.o.w});
      stacks.push_back({&L.gate.w, &L.up.w});
      stacks.push_back({&L.down.w});
    }
    int n_bf16 = 0;
    for (const auto& st : stacks) {
      const DType d = device_format(st);
      EXPECT_TRUE(d == kDeviceQ4A || d == DType::BF16) << c.model;
      n_bf16 += d == DType::BF16;
    }
    EXPECT_EQ(n_bf16, c.n_bf16) << c.model;
  }
}

TEST(DeviceRepack, FormatNames) {
  EXPECT_EQ(device_format_name(kDeviceQ4A), "Q4A");
  EXPECT_EQ(device_format_name(DType::Q8_0), "Q8_0");
  EXPECT_EQ(device_format_name(DType::BF16), "BF16");
}

}  // namespace
}  // namespace jinx

// Op parity: paged_attention at every ISA level and KV dtype against a naive reference (full
// softmax in double over a contiguous copy of each sequence's K/V, rounded to the cache dtype by
// the core conversions, or quantized per row by this file's reference for int8 / fp8), on random
// varlen batches with shuffled block tables.
//
// Tolerances: the kernel accumulates in fp32 and the reference in double over the same (rounded)
// K/V values, so the only differences are fp32 rounding of dot products, exp and sums; outputs are
// averages of V values in [-1, 1], and we allow 1e-5 absolute (relative to max |V| = 1) for every
// dtype. The cache memory outside the written positions is filled with NaN, so a read of any
// position a query may not see, or of a block the sequence does not own, poisons the output.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <random>
#include <vector>

#include "backend/cpu/attention.h"
#include "backend/cpu/kernels.h"
#include "core/check.h"
#include "core/half.h"

namespace jinx::cpu {
namespace {

bool quantized(DType t) {
  return t == DType::I8 || t == DType::F8_E4M3;
}

// The bytes a cache row of x[0, n) must hold: plain types by the core conversions; I8 / F8_E4M3
// as the row layout says (codes of x / scale, scale = amax / 127 or 448, then the fp32 scale),
// with fp8 rounding by the core conversion (checked against torch in core tests).
std::vector<uint8_t> reference_row(const float* x, int64_t n, DType t) {
  std::vector<uint8_t> r(kv_row_bytes(t, n));
  if (!quantized(t)) {
    for (int64_t i = 0; i < n; ++i) {
      if (t == DType::F32) std::memcpy(&r[4 * i], &x[i], 4);
      const uint16_t h = t == DType::F16 ? f32_to_f16(x[i]) : f32_to_bf16(x[i]);
      if (t != DType::F32) std::memcpy(&r[2 * i], &h, 2);
    }
    return r;
  }
  float amax = 0.0f;
  for (int64_t i = 0; i < n; ++i) amax = std::max(amax, std::fabs(x[i]));
  const float scale = amax / (t == DType::I8 ? 127.0f : 448.0f);
  for (int64_t i = 0; i < n; ++i) {
    const float y = scale > 0.0f ? x[i] * (1.0f / scale) : 0.0f;
    r[i] = t == DType::I8 ? static_cast<uint8_t>(static_cast<int8_t>(std::lround(y)))
                          : f32_to_fp8_e4m3(y);
  }
  std::memcpy(&r[n], &scale, 4);
  return r;
}

// The values a cache row of x[0, n) holds, decoded from reference_row.
std::vector<double> reference_values(const float* x, int64_t n, DType t) {
  const std::vector<uint8_t> r = reference_row(x, n, t);
  std::vector<double> y(n);
  float scale = 0.0f;
  if (quantized(t)) std::memcpy(&scale, &r[n], 4);
  for (int64_t i = 0; i < n; ++i) {
    if (t == DType::F32) {
      float f;
      std::memcpy(&f, &r[4 * i], 4);
      y[i] = f;
    } else if (t == DType::F16 || t == DType::BF16) {
      uint16_t h;
      std::memcpy(&h, &r[2 * i], 2);
      y[i] = t == DType::F16 ? f16_to_f32(h) : bf16_to_f32(h);
    } else {
      const double c = t == DType::I8 ? static_cast<int8_t>(r[i]) : fp8_e4m3_to_f32(r[i]);
      y[i] = double{scale} * c;
    }
  }
  return y;
}

struct Cache {
  std::vector<uint8_t> k, v;
  PagedKv kv;
  Cache(DType t, int64_t n_blocks, int64_t bs, int64_t n_kv, int64_t d)
      : k(n_blocks * bs * n_kv * kv_row_bytes(t, d), 0xff),  // all-ones: NaN in every dtype
        v(k.size(), 0xff),                                   // (a NaN scale when quantized)
        kv{k.data(), v.data(), t, n_blocks, bs, n_kv, d} {}
};

struct SeqSpec {
  int32_t ctx, n_new;
};

struct Case {
  DType dtype = DType::F32;
  int64_t block_size = 16, n_kv = 1, group = 1, head_dim = 64;
  std::vector<SeqSpec> seqs;
  float scale = 0.0f;  // 0: default
  float q_amp = 1.0f;
  int64_t window = 0;  // sliding window (0: none)
  bool sinks = false;  // a random sink logit per query head (gpt-oss)
};

std::string describe(const Case& c) {
  std::string s = str(name(c.dtype), " bs=", c.block_size, " kv=", c.n_kv, " g=", c.group,
                      " d=", c.head_dim, " window=", c.window, " seqs=");
  for (auto& q : c.seqs) s += str("(", q.ctx, ",", q.n_new, ")");
  return s;
}

// Fills a cache for the batch (blocks handed out in a random order, padded block tables), runs
// paged_attention and returns the largest absolute difference to the double reference.
double run_case(const Case& c, ThreadPool& pool, std::mt19937& rng) {
  const int64_t n_seqs = c.seqs.size(), d_n = c.head_dim, n_heads = c.n_kv * c.group;
  const int64_t row = c.n_kv * d_n;
  std::vector<int64_t> n_blk(n_seqs);
  int64_t total_blocks = 0, max_blocks = 1;
  for (int64_t s = 0; s < n_seqs; ++s) {
    n_blk[s] = (c.seqs[s].ctx + c.block_size - 1) / c.block_size;
    total_blocks += n_blk[s];
    max_blocks = std::max(max_blocks, n_blk[s] + static_cast<int64_t>(rng() % 3));
  }
  const int64_t pool_blocks = total_blocks + 3;  // some blocks nobody owns
  std::vector<int32_t> ids(pool_blocks);
  std::iota(ids.begin(), ids.end(), 0);
  std::shuffle(ids.begin(), ids.end(), rng);
  std::vector<int32_t> tables(n_seqs * max_blocks, -1);
  for (int64_t s = 0, next = 0; s < n_seqs; ++s)
    for (int64_t i = 0; i < n_blk[s]; ++i) tables[s * max_blocks + i] = ids[next++];

  // K/V of every cached position, stored in one kv_store call in a shuffled order with skips.
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  std::vector<std::vector<float>> ks(n_seqs), vs(n_seqs);
  std::vector<float> kin, vin;
  std::vector<int64_t> slots;
  for (int64_t s = 0; s < n_seqs; ++s) {
    ks[s].resize(c.seqs[s].ctx * row);
    vs[s].resize(c.seqs[s].ctx * row);
    for (auto& x : ks[s]) x = u(rng);
    for (auto& x : vs[s]) x = u(rng);
    for (int64_t p = 0; p < c.seqs[s].ctx; ++p) {
      kin.insert(kin.end(), ks[s].begin() + p * row, ks[s].begin() + (p + 1) * row);
      vin.insert(vin.end(), vs[s].begin() + p * row, vs[s].begin() + (p + 1) * row);
      slots.push_back(tables[s * max_blocks + p / c.block_size] * c.block_size + p % c.block_size);
      if (rng() % 8 == 0) {  // a padding token
        kin.insert(kin.end(), row, 1e30f);
        vin.insert(vin.end(), row, 1e30f);
        slots.push_back(-1);
      }
    }
  }
  Cache cache(c.dtype, pool_blocks, c.block_size, c.n_kv, d_n);
  kv_store(cache.kv, kin.data(), vin.data(), slots.data(), slots.size(), pool);

  std::vector<int32_t> qstart(n_seqs + 1, 0), ctx(n_seqs);
  for (int64_t s = 0; s < n_seqs; ++s) {
    qstart[s + 1] = qstart[s] + c.seqs[s].n_new;
    ctx[s] = c.seqs[s].ctx;
  }
  const int64_t n_q = qstart[n_seqs];
  std::vector<float> q(n_q * n_heads * d_n), out(q.size(), NAN);
  for (auto& x : q) x = c.q_amp * u(rng);
  std::vector<float> sinks;
  if (c.sinks)
    for (int64_t h = 0; h < n_heads; ++h) sinks.push_back(3.0f * u(rng) + 1.0f);
  AttnBatch b{n_seqs, qstart.data(), ctx.data(), tables.data(), max_blocks};
  paged_attention(q.data(), out.data(), n_heads, cache.kv, b, c.scale, pool, c.window,
                  c.sinks ? sinks.data() : nullptr);

  const double scale = c.scale > 0 ? c.scale : 1.0 / std::sqrt(static_cast<double>(d_n));
  double worst = 0.0;
  std::vector<double> w, acc(d_n);
  for (int64_t s = 0; s < n_seqs; ++s) {
    // What the cache holds for this sequence, row (position, kv head) by row.
    std::vector<double> kr(ks[s].size()), vr(vs[s].size());
    for (size_t o = 0; o < ks[s].size(); o += d_n) {
      const auto kq = reference_values(&ks[s][o], d_n, c.dtype);
      const auto vq = reference_values(&vs[s][o], d_n, c.dtype);
      std::copy(kq.begin(), kq.end(), kr.begin() + o);
      std::copy(vq.begin(), vq.end(), vr.begin() + o);
    }
    const int64_t past = ctx[s] - c.seqs[s].n_new;
    for (int64_t i = 0; i < c.seqs[s].n_new; ++i) {
      for (int64_t h = 0; h < n_heads; ++h) {
        const int64_t kvh = h / c.group, pos = past + i;
        const float* qr = q.data() + ((qstart[s] + i) * n_heads + h) * d_n;
        const int64_t first = c.window > 0 ? std::max<int64_t>(0, pos - c.window + 1) : 0;
        w.assign(pos + 1, -INFINITY);
        double mx = -INFINITY, sum = 0.0;
        for (int64_t j = first; j <= pos; ++j) {
          double dot = 0.0;
          for (int64_t d = 0; d < d_n; ++d) dot += double{qr[d]} * kr[j * row + kvh * d_n + d];
          w[j] = dot * scale;
          mx = std::max(mx, w[j]);
        }
        if (c.sinks) mx = std::max(mx, double{sinks[h]});
        for (auto& x : w) sum += (x = std::exp(x - mx));
        if (c.sinks) sum += std::exp(sinks[h] - mx);  // in the sum, not in the output
        std::fill(acc.begin(), acc.end(), 0.0);
        for (int64_t j = first; j <= pos; ++j)
          for (int64_t d = 0; d < d_n; ++d) acc[d] += w[j] / sum * vr[j * row + kvh * d_n + d];
        const float* o = out.data() + ((qstart[s] + i) * n_heads + h) * d_n;
        for (int64_t d = 0; d < d_n; ++d) {
          const double err = std::fabs(o[d] - acc[d]);
          worst = std::isnan(err) ? INFINITY : std::max(worst, err);
        }
      }
    }
  }
  return worst;
}

constexpr double kTol = 1e-5;

struct Level {
  Isa isa;
  DType dtype;
};

void PrintTo(const Level& l, std::ostream* os) {
  *os << isa_name(l.isa) << "/" << name(l.dtype);
}

class AttentionTest : public ::testing::TestWithParam<Level> {
 protected:
  void SetUp() override {
    if (static_cast<int>(GetParam().isa) > static_cast<int>(detected_isa()))
      GTEST_SKIP() << isa_name(GetParam().isa) << " not supported by this CPU";
    set_isa(GetParam().isa);
  }
  void TearDown() override { set_isa(detected_isa()); }
  void check(Case c, ThreadPool& pool, std::mt19937& rng) {
    c.dtype = GetParam().dtype;
    const double err = run_case(c, pool, rng);
    EXPECT_LE(err, kTol) << describe(c);
  }
};

TEST_P(AttentionTest, DecodeBatch) {
  std::mt19937 rng(1);
  ThreadPool pool(3);
  for (int64_t bs : {1, 16, 32}) {
    for (int64_t g : {1, 2, 7}) {
      Case c{.block_size = bs, .n_kv = 2, .group = g, .head_dim = g == 7 ? 64 : 128, .seqs = {}};
      for (int s = 0; s < 5; ++s) c.seqs.push_back({static_cast<int32_t>(1 + rng() % 300), 1});
      check(c, pool, rng);
    }
  }
}

TEST_P(AttentionTest, PrefillChunks) {
  std::mt19937 rng(2);
  ThreadPool pool(3);
  for (int64_t bs : {1, 16, 32}) {
    for (int64_t g : {1, 2, 7}) {
      Case c{.block_size = bs, .n_kv = g == 7 ? 1 : 2, .group = g, .head_dim = 64, .seqs = {}};
      const int32_t n_new = static_cast<int32_t>(1 + rng() % 100);
      c.seqs.push_back({n_new, n_new});                                     // fresh prompt
      c.seqs.push_back({n_new + static_cast<int32_t>(rng() % 90), n_new});  // later chunk
      c.seqs.push_back({static_cast<int32_t>(17 + rng() % 70), 1});         // a decode beside
      check(c, pool, rng);
    }
  }
}

// Every row count from 1 to 8 in one item (the register-blocked row groups), at each block size.
TEST_P(AttentionTest, SmallChunks) {
  std::mt19937 rng(9);
  ThreadPool pool(2);
  for (int64_t bs : {1, 16, 32}) {
    Case c{.block_size = bs, .n_kv = 2, .group = 1, .head_dim = 64, .seqs = {}};
    for (int32_t n = 1; n <= 8; ++n) c.seqs.push_back({n + static_cast<int32_t>(rng() % 80), n});
    check(c, pool, rng);
    c.group = 2;
    c.head_dim = 128;
    check(c, pool, rng);
  }
}

TEST_P(AttentionTest, LongChunk512) {
  std::mt19937 rng(3);
  ThreadPool pool(2);
  check(Case{.block_size = 16, .n_kv = 1, .group = 2, .head_dim = 64, .seqs = {{700, 512}}}, pool,
        rng);
  check(Case{.block_size = 32, .n_kv = 1, .group = 1, .head_dim = 128, .seqs = {{512, 512}}}, pool,
        rng);
}

// Sliding-window attention (Gemma 3): each query sees its last `window` positions, in prefill
// chunks and decodes, across blocks and across the 512-position split boundaries.
TEST_P(AttentionTest, SlidingWindow) {
  std::mt19937 rng(11);
  ThreadPool pool(2);
  check(Case{.block_size = 16, .n_kv = 1, .group = 4, .head_dim = 256,
             .seqs = {{700, 200}, {30, 30}, {1300, 1}, {513, 1}}, .window = 512},
        pool, rng);
  check(Case{.block_size = 4, .n_kv = 2, .group = 2, .head_dim = 64,
             .seqs = {{90, 90}, {41, 3}, {7, 1}}, .window = 13},
        pool, rng);
  check(Case{.block_size = 32, .n_kv = 1, .group = 1, .head_dim = 128,
             .seqs = {{1100, 1}, {600, 600}}, .window = 1},
        pool, rng);
}

// One long decode beside short ones: the long one is split over KV ranges and merged.
TEST_P(AttentionTest, SplitLongDecode) {
  std::mt19937 rng(4);
  ThreadPool pool(4);
  check(Case{.block_size = 16,
             .n_kv = 2,
             .group = 7,
             .head_dim = 64,
             .seqs = {{3001, 1}, {5, 1}, {70, 1}}},
        pool, rng);
  check(Case{.block_size = 32, .n_kv = 1, .group = 1, .head_dim = 128, .seqs = {{2049, 1}}}, pool,
        rng);
  check(Case{.block_size = 1, .n_kv = 1, .group = 2, .head_dim = 64, .seqs = {{1500, 40}}}, pool,
        rng);
}

// gpt-oss's sinks: one more logit per query head in every softmax, whole rows, split rows
// merged, sliding windows.
TEST_P(AttentionTest, Sinks) {
  std::mt19937 rng(21);
  ThreadPool pool(4);
  check(Case{.block_size = 16, .n_kv = 2, .group = 4, .head_dim = 64,
             .seqs = {{3001, 1}, {5, 1}, {70, 7}}, .sinks = true},
        pool, rng);
  check(Case{.block_size = 4, .n_kv = 2, .group = 2, .head_dim = 64,
             .seqs = {{90, 90}, {41, 3}, {7, 1}}, .window = 13, .sinks = true},
        pool, rng);
  check(Case{.block_size = 16, .n_kv = 1, .group = 8, .head_dim = 64,
             .seqs = {{1300, 1}, {600, 20}}, .window = 128, .sinks = true},
        pool, rng);
}

TEST_P(AttentionTest, OddHeadDims) {
  std::mt19937 rng(5);
  ThreadPool pool(2);
  for (int64_t d : {8, 40, 80, 96, 136}) {
    Case c{.block_size = 16, .n_kv = 2, .group = 2, .head_dim = d, .seqs = {}};
    c.seqs = {{static_cast<int32_t>(20 + rng() % 100), 1}, {90, 33}};
    check(c, pool, rng);
  }
}

// Peaked softmax: large scores whose running max grows across tiles (rescaling exercised).
TEST_P(AttentionTest, LargeScores) {
  std::mt19937 rng(6);
  ThreadPool pool(2);
  Case c{.block_size = 16,
         .n_kv = 1,
         .group = 2,
         .head_dim = 64,
         .seqs = {},
         .scale = 1.0f,
         .q_amp = 4.0f};
  c.seqs = {{400, 1}, {300, 150}};
  check(c, pool, rng);
}

TEST_P(AttentionTest, RandomShapes) {
  std::mt19937 rng(7);
  ThreadPool pool(2);
  for (int iter = 0; iter < 12; ++iter) {
    Case c;
    c.block_size = std::vector<int64_t>{1, 16, 32}[rng() % 3];
    c.group = std::vector<int64_t>{1, 2, 7}[rng() % 3];
    c.n_kv = 1 + rng() % 3;
    c.head_dim = std::vector<int64_t>{64, 128, 32, 48}[rng() % 4];
    for (int s = 0, n = 1 + rng() % 4; s < n; ++s) {
      const int32_t n_new = rng() % 3 == 0 ? 1 : static_cast<int32_t>(1 + rng() % 64);
      c.seqs.push_back({n_new + static_cast<int32_t>(rng() % 200), n_new});
    }
    check(c, pool, rng);
  }
}

TEST_P(AttentionTest, KvStoreRoundTrip) {
  const DType t = GetParam().dtype;
  std::mt19937 rng(8);
  ThreadPool pool(2);
  const int64_t n_kv = 3, d_n = 40, row = n_kv * d_n, n_tokens = 9;
  const size_t head_bytes = kv_row_bytes(t, d_n), slot_bytes = n_kv * head_bytes;
  Cache cache(t, 5, 4, n_kv, d_n);
  std::vector<float> k(n_tokens * row), v(k.size());
  std::uniform_real_distribution<float> u(-2.0f, 2.0f);
  for (auto& x : k) x = u(rng);
  for (auto& x : v) x = u(rng) * 1e-6f;                             // f16 subnormals
  k[5] = 1e6f, k[6] = -7e4f, k[7] = 65519.0f, v[8] = 0.0f;          // f16 overflow and edges
  std::fill(v.begin() + 2 * row, v.begin() + 2 * row + d_n, 0.0f);  // an all-zero row
  std::vector<int64_t> slots = {19, 0, -1, 7, 8, 3, -1, 12, 1};
  kv_store(cache.kv, k.data(), v.data(), slots.data(), n_tokens, pool);
  std::vector<bool> written(20, false);
  for (int64_t i = 0; i < n_tokens; ++i) {
    if (slots[i] < 0) continue;
    written[slots[i]] = true;
    for (int64_t h = 0; h < n_kv; ++h) {
      const size_t off = slots[i] * slot_bytes + h * head_bytes;
      for (auto [src, mem] : {std::pair{&k, &cache.k}, std::pair{&v, &cache.v}}) {
        const auto want = reference_row(src->data() + i * row + h * d_n, d_n, t);
        const std::vector<uint8_t> got(mem->begin() + off, mem->begin() + off + head_bytes);
        ASSERT_EQ(got, want) << "token " << i << " head " << h;
      }
    }
  }
  for (int64_t slot = 0; slot < 20; ++slot) {
    if (written[slot]) continue;
    for (size_t b = 0; b < slot_bytes; ++b)
      ASSERT_EQ(cache.k[slot * slot_bytes + b], 0xff) << "slot " << slot;
  }
}

// Batch invariance: a query row's output is bit-identical whatever shares its call (alone, in a
// decode batch, as the last row of a prefill chunk) and whatever the thread count, also where
// its KV range is split (contexts past 512, 1024).
TEST_P(AttentionTest, RowsDoNotDependOnTheBatch) {
  const DType t = GetParam().dtype;
  constexpr int64_t kBs = 16, kNkv = 2, kGroup = 3, kD = 64, kHeads = kNkv * kGroup;
  const std::vector<int32_t> ctx = {1300, 700, 90, 2000};  // sequence 0 is the one compared
  std::vector<int32_t> tables;
  int64_t max_blocks = 0, n_blocks = 0;
  for (int32_t c : ctx) max_blocks = std::max<int64_t>(max_blocks, (c + kBs - 1) / kBs);
  tables.assign(ctx.size() * max_blocks, -1);
  for (size_t s = 0; s < ctx.size(); ++s)
    for (int64_t i = 0; i < (ctx[s] + kBs - 1) / kBs; ++i) tables[s * max_blocks + i] = n_blocks++;
  std::mt19937 rng(17);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  Cache cache(t, n_blocks, kBs, kNkv, kD);
  std::vector<float> kin, vin;
  std::vector<int64_t> slots;
  for (size_t s = 0; s < ctx.size(); ++s)
    for (int32_t p = 0; p < ctx[s]; ++p) {
      for (int64_t i = 0; i < kNkv * kD; ++i) kin.push_back(u(rng)), vin.push_back(u(rng));
      slots.push_back(tables[s * max_blocks + p / kBs] * kBs + p % kBs);
    }
  ThreadPool pool2(2), pool1(1);
  kv_store(cache.kv, kin.data(), vin.data(), slots.data(), slots.size(), pool2);
  // The query of (sequence, position): the same values in every batch.
  auto query = [&](size_t s, int32_t pos, float* dst) {
    std::mt19937 qr(static_cast<uint32_t>(s * 100003 + pos));
    for (int64_t i = 0; i < kHeads * kD; ++i) dst[i] = u(qr);
  };
  // Runs (sequence, new tokens) pairs; returns the output row of sequence 0's last position.
  auto run = [&](const std::vector<std::pair<size_t, int32_t>>& batch, ThreadPool& pool) {
    std::vector<int32_t> qstart{0}, cl, bt;
    for (auto [s, n] : batch) {
      qstart.push_back(qstart.back() + n);
      cl.push_back(ctx[s]);
      bt.insert(bt.end(), tables.begin() + s * max_blocks, tables.begin() + (s + 1) * max_blocks);
    }
    std::vector<float> q(qstart.back() * kHeads * kD), out(q.size(), NAN);
    int64_t row0 = -1;
    for (size_t i = 0; i < batch.size(); ++i)
      for (int32_t j = 0; j < batch[i].second; ++j) {
        const int32_t pos = ctx[batch[i].first] - batch[i].second + j;
        query(batch[i].first, pos, &q[(qstart[i] + j) * kHeads * kD]);
        if (batch[i].first == 0 && pos == ctx[0] - 1) row0 = qstart[i] + j;
      }
    AttnBatch b{static_cast<int64_t>(batch.size()), qstart.data(), cl.data(), bt.data(),
                max_blocks};
    paged_attention(q.data(), out.data(), kHeads, cache.kv, b, 0.0f, pool);
    return std::vector<float>(out.begin() + row0 * kHeads * kD,
                              out.begin() + (row0 + 1) * kHeads * kD);
  };
  const std::vector<float> alone = run({{0, 1}}, pool2);
  const std::pair<const char*, std::vector<float>> variants[] = {
      {"alone, 1 thread", run({{0, 1}}, pool1)},
      {"decode batch", run({{1, 1}, {0, 1}, {2, 1}, {3, 1}}, pool2)},
      {"prefill chunk of 23", run({{0, 23}}, pool2)},
      {"prefill chunk of 5 with others", run({{3, 40}, {0, 5}, {2, 1}}, pool2)},
      {"prefill chunk of 300, 1 thread", run({{0, 300}, {1, 1}}, pool1)}};
  for (const auto& [name, out] : variants)
    for (size_t i = 0; i < alone.size(); ++i)
      ASSERT_EQ(std::memcmp(&out[i], &alone[i], 4), 0)
          << name << ": element " << i << " " << out[i] << " vs " << alone[i];
}

std::vector<Level> all_levels() {
  std::vector<Level> v;
  for (Isa isa : {Isa::kScalar, Isa::kAvx2, Isa::kAvx512})
    for (DType t : {DType::F32, DType::F16, DType::BF16, DType::I8, DType::F8_E4M3})
      v.push_back({isa, t});
  return v;
}

INSTANTIATE_TEST_SUITE_P(Levels, AttentionTest, ::testing::ValuesIn(all_levels()),
                         [](const ::testing::TestParamInfo<Level>& i) {
                           return str(isa_name(i.param.isa), "_", name(i.param.dtype));
                         });

// Quantized rows against the unquantized values: the error a row's codes carry is at most half
// a step of its scale (int8: amax / 254) or half an fp8 ulp (e4m3: 2^-4 relative, plus the
// subnormal step amax / 448 * 2^-10).
TEST(KvQuant, RowErrorIsBounded) {
  for (DType t : {DType::I8, DType::F8_E4M3}) {
    std::mt19937 rng(10);
    std::normal_distribution<float> nd(0.0f, 1.0f);
    for (int iter = 0; iter < 200; ++iter) {
      std::vector<float> x(64);
      for (auto& e : x) e = nd(rng) * (iter % 7 == 0 ? 300.0f : 1.0f);
      float amax = 0.0f;
      for (float e : x) amax = std::max(amax, std::fabs(e));
      const auto y = reference_values(x.data(), 64, t);
      for (int i = 0; i < 64; ++i) {
        const double bound =
            t == DType::I8 ? amax / 254.0 * 1.0001 : std::fabs(x[i]) / 16.0 + amax / 448.0 / 1024.0;
        ASSERT_LE(std::fabs(y[i] - x[i]), bound) << name(t) << " x=" << x[i] << " amax=" << amax;
      }
    }
  }
}

TEST(AttentionErrors, BadInputsThrow) {
  ThreadPool pool(1);
  Cache cache(DType::F32, 4, 4, 2, 16);
  std::vector<float> q(3 * 4 * 16), out(q.size());
  std::vector<int32_t> qs = {0, 3}, ctx = {5}, bt = {2, 0};
  AttnBatch b{1, qs.data(), ctx.data(), bt.data(), 2};
  EXPECT_NO_THROW(paged_attention(q.data(), out.data(), 4, cache.kv, b, 0.0f, pool));
  EXPECT_THROW(paged_attention(q.data(), out.data(), 3, cache.kv, b, 0.0f, pool), Error);
  bt[1] = -1;  // position 4 lives in a missing block
  EXPECT_THROW(paged_attention(q.data(), out.data(), 4, cache.kv, b, 0.0f, pool), Error);
  bt[1] = 4;
  EXPECT_THROW(paged_attention(q.data(), out.data(), 4, cache.kv, b, 0.0f, pool), Error);
  bt[1] = 1;
  ctx[0] = 2;  // fewer cached tokens than new ones
  EXPECT_THROW(paged_attention(q.data(), out.data(), 4, cache.kv, b, 0.0f, pool), Error);
  ctx[0] = 9;  // beyond the block table
  EXPECT_THROW(paged_attention(q.data(), out.data(), 4, cache.kv, b, 0.0f, pool), Error);
  ctx[0] = 5;
  PagedKv bad = cache.kv;
  bad.dtype = DType::Q8_0;
  EXPECT_THROW(paged_attention(q.data(), out.data(), 4, bad, b, 0.0f, pool), Error);
  std::vector<int64_t> slots = {0, 16, 1};
  EXPECT_THROW(kv_store(cache.kv, q.data(), q.data(), slots.data(), 3, pool), Error);
  slots[1] = -2;
  EXPECT_THROW(kv_store(cache.kv, q.data(), q.data(), slots.data(), 3, pool), Error);
}

}  // namespace
}  // namespace jinx::cpu

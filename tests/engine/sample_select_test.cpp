// The block-parallel sampler of backend/sample_select.h (the code the GPU runs, executed here
// thread by thread by HostBlock) against a plain reference that sorts the vocabulary in double
// precision, and against jinx::Sampler's distribution.
#include "backend/sample_select.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <random>
#include <vector>

#include "engine/sampler.h"

namespace jinx::sampling {
namespace {

std::vector<float> normal_logits(int32_t n, uint32_t seed, float scale) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> d(0.0f, scale);
  std::vector<float> x(static_cast<size_t>(n));
  for (float& v : x) v = d(gen);
  return x;
}

int32_t run(const std::vector<float>& x, const RowSampling& p) {
  HostBlock blk;
  Shared s{};
  int32_t out = -2;
  sample_row(blk, s, x.data(), static_cast<int32_t>(x.size()), p, &out);
  return out;
}

// The reference: sort by (logit desc, id asc), cut, then inverse CDF over ids.
struct Reference {
  std::vector<int32_t> kept;  // ids, increasing
  std::vector<double> w;      // their weights
  bool near_boundary = false;  // a top-p cut within 1e-6 of the target: either answer is fine

  Reference(const std::vector<float>& x, const RowSampling& p) {
    const int32_t n = static_cast<int32_t>(x.size());
    std::vector<int32_t> order(static_cast<size_t>(n));
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return x[a] > x[b]; });
    const double mx = x[order[0]];
    auto weight = [&](int32_t i) { return std::exp((x[i] - mx) / p.temperature); };
    size_t m = order.size();
    if (p.top_k > 0 && p.top_k < n) m = static_cast<size_t>(p.top_k);
    if (p.top_p < 1.0f) {
      double z = 0.0;
      for (size_t i = 0; i < m; ++i) z += weight(order[i]);
      const double target = static_cast<double>(p.top_p) * z;
      double cum = 0.0;
      for (size_t i = 0; i < m; ++i) {
        cum += weight(order[i]);
        if (std::fabs(cum - target) < 1e-6 * z) near_boundary = true;
        if (cum >= target) {
          m = i + 1;
          break;
        }
      }
    }
    for (size_t i = 0; i < m; ++i)
      if (weight(order[i]) >= p.min_p) kept.push_back(order[i]);
    std::sort(kept.begin(), kept.end());
    for (int32_t i : kept) w.push_back(weight(i));
  }

  // The token at u, or -1 when u falls within 1e-9 of a boundary between two tokens.
  int32_t draw(double u) const {
    const double total = std::accumulate(w.begin(), w.end(), 0.0);
    const double target = u * total;
    double cum = 0.0;
    for (size_t i = 0; i < kept.size(); ++i) {
      cum += w[i];
      if (std::fabs(cum - target) < 1e-9 * total) return -1;
      if (cum > target) return kept[i];
    }
    return kept.back();
  }
};

// The prefix radix_cut keeps, as a sorted id list.
std::vector<int32_t> ids_at_or_above(const std::vector<float>& x, u64 cut) {
  std::vector<int32_t> ids;
  for (int32_t i = 0; i < static_cast<int32_t>(x.size()); ++i)
    if (token_ord(x[i], i) >= cut) ids.push_back(i);
  return ids;
}

TEST(SampleSelect, FloatKeyIsMonotone) {
  const float v[] = {-std::numeric_limits<float>::infinity(), -3.5f, -1e-30f, -0.0f, 0.0f,
                     1e-30f, 2.0f, 3e38f, std::numeric_limits<float>::infinity()};
  for (size_t i = 0; i + 1 < std::size(v); ++i) {
    EXPECT_LE(float_key(v[i]), float_key(v[i + 1])) << v[i];
    EXPECT_EQ(key_float(float_key(v[i])), v[i]);
  }
  EXPECT_GT(token_ord(1.0f, 5), token_ord(1.0f, 6));  // ties: the lower id comes first
  EXPECT_GT(token_ord(1.5f, 9), token_ord(1.0f, 0));
}

TEST(SampleSelect, TopKCutMatchesSortIncludingTies) {
  for (int32_t n : {1, 7, 513, 5000, 151936}) {
    for (bool ties : {false, true}) {
      std::vector<float> x = normal_logits(n, 17u + static_cast<uint32_t>(n), 3.0f);
      if (ties)
        for (float& v : x) v = std::round(v);  // ~20 distinct values: cuts inside tie groups
      for (int32_t k : {1, 2, 40, 500, n - 1}) {
        if (k < 1 || k >= n) continue;
        HostBlock blk;
        Shared s{};
        const Weigher w{*std::max_element(x.begin(), x.end()), 1.0f, 0.0f};
        const u64 cut = radix_cut(blk, s, x.data(), n, w, false, static_cast<u64>(k), 0);
        RowSampling p;
        p.top_k = k;
        EXPECT_EQ(ids_at_or_above(x, cut), Reference(x, p).kept)
            << "n " << n << " k " << k << " ties " << ties;
      }
    }
  }
}

TEST(SampleSelect, DrawsMatchTheReference) {
  struct Case {
    int32_t n;
    float temperature, top_p, min_p;
    int32_t top_k;
  };
  const Case cases[] = {{151936, 1.0f, 1.0f, 0.0f, 0},  {151936, 0.7f, 0.9f, 0.0f, 0},
                        {32000, 1.3f, 0.95f, 0.05f, 50}, {32000, 0.5f, 1.0f, 0.0f, 20},
                        {49152, 1.0f, 0.5f, 0.0f, 0},   {5000, 2.0f, 0.8f, 0.1f, 0},
                        {300, 0.9f, 1.0f, 0.3f, 0},     {7, 1.0f, 0.6f, 0.0f, 3},
                        {1, 1.0f, 0.9f, 0.0f, 0}};
  std::mt19937_64 gen(99);
  std::uniform_real_distribution<double> uni(0.0, 1.0);
  int compared = 0;
  for (const Case& c : cases) {
    for (float scale : {1.0f, 4.0f}) {
      const std::vector<float> x = normal_logits(c.n, static_cast<uint32_t>(c.n) + 3, scale);
      RowSampling p;
      p.temperature = c.temperature;
      p.top_k = c.top_k;
      p.top_p = c.top_p;
      p.min_p = c.min_p;
      const Reference ref(x, p);
      if (ref.near_boundary) continue;
      for (int d = 0; d < 12; ++d) {
        p.u = d == 0 ? 0.0 : d == 1 ? std::nextafter(1.0, 0.0) : uni(gen);
        const int32_t want = ref.draw(p.u);
        if (want < 0) continue;
        EXPECT_EQ(run(x, p), want) << "n " << c.n << " T " << c.temperature << " u " << p.u;
        ++compared;
      }
    }
  }
  EXPECT_GT(compared, 180);
}

TEST(SampleSelect, MaskedVocabularyAndTopKBeyondIt) {
  // Half the vocabulary at -inf (as a grammar mask leaves it): never drawn, even when top_k
  // reaches into it.
  std::vector<float> x = normal_logits(4096, 5, 2.0f);
  for (size_t i = 0; i < x.size(); i += 2) x[i] = -std::numeric_limits<float>::infinity();
  RowSampling p;
  p.top_k = 3000;
  for (int d = 0; d < 64; ++d) {
    p.u = d / 64.0;  // u = 0 too: the zero-weight id 0 must not be taken
    const int32_t t = run(x, p);
    ASSERT_GE(t, 0);
    EXPECT_EQ(t % 2, 1) << t;
  }
}

TEST(SampleSelect, BadLogitsGiveMinusOne) {
  RowSampling p;
  p.u = 0.5;
  std::vector<float> x = normal_logits(1000, 1, 1.0f);
  x[700] = std::numeric_limits<float>::quiet_NaN();
  EXPECT_EQ(run(x, p), -1);
  std::vector<float> ninf(100, -std::numeric_limits<float>::infinity());
  EXPECT_EQ(run(ninf, p), -1);
  std::vector<float> pinf = normal_logits(100, 2, 1.0f);
  pinf[3] = std::numeric_limits<float>::infinity();
  EXPECT_EQ(run(pinf, p), -1);
}

TEST(SampleSelect, SameDistributionAsTheHostSampler) {
  // 40000 draws each from this sampler (fresh uniforms) and from jinx::Sampler: every token's
  // frequency agrees within 5 standard errors of the difference.
  const std::vector<float> x = normal_logits(64, 8, 1.5f);
  SamplingParams sp;
  sp.temperature = 0.8f;
  sp.top_k = 30;
  sp.top_p = 0.9f;
  sp.min_p = 0.02f;
  sp.seed = 4;
  RowSampling p;
  p.temperature = sp.temperature;
  p.top_k = sp.top_k;
  p.top_p = sp.top_p;
  p.min_p = sp.min_p;
  constexpr int kDraws = 40000;
  std::vector<int> ours(x.size()), theirs(x.size());
  Sampler host(sp, {});
  std::mt19937_64 gen(11);
  std::uniform_real_distribution<double> uni(0.0, 1.0);
  for (int d = 0; d < kDraws; ++d) {
    p.u = uni(gen);
    ++ours[static_cast<size_t>(run(x, p))];
    std::vector<float> row = x;
    ++theirs[static_cast<size_t>(host.sample(row.data(), static_cast<int32_t>(row.size())).token)];
  }
  int kept = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    const double a = ours[i] / double(kDraws), b = theirs[i] / double(kDraws);
    const double se = std::sqrt((a * (1 - a) + b * (1 - b)) / kDraws) + 1e-12;
    EXPECT_LE(std::fabs(a - b), 5 * se + 1e-9) << "token " << i << ": " << a << " vs " << b;
    EXPECT_EQ(ours[i] == 0, theirs[i] == 0) << "token " << i;
    kept += ours[i] > 0;
  }
  EXPECT_GT(kept, 3);  // the case does truncate but leaves a real choice
  EXPECT_LT(kept, 30);
}

}  // namespace
}  // namespace jinx::sampling

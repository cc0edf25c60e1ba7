// Sampler tests on constructed logits. Expected values come from plain double-precision math in
// this file (std::exp, full sorts), never from the sampler itself.
#include "engine/sampler.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <limits>
#include <numeric>
#include <random>
#include <set>

#include "core/check.h"

namespace jinx {
namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

std::vector<float> random_logits(int32_t n, uint32_t seed, float scale = 1.0f) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> dist(0.0f, scale);
  std::vector<float> l(n);
  for (float& v : l) v = dist(gen);
  return l;
}

// softmax(l / t) in double; -inf logits get probability 0.
std::vector<double> softmax(const std::vector<float>& l, double t = 1.0) {
  const double m = *std::max_element(l.begin(), l.end());
  std::vector<double> p(l.size());
  double z = 0.0;
  for (size_t i = 0; i < l.size(); ++i) z += p[i] = std::exp((l[i] - m) / t);
  for (double& v : p) v /= z;
  return p;
}

// Token ids sorted by decreasing logit, ties to the lowest id.
std::vector<int32_t> ranked(const std::vector<float>& l) {
  std::vector<int32_t> ids(l.size());
  std::iota(ids.begin(), ids.end(), 0);
  std::stable_sort(ids.begin(), ids.end(), [&](int32_t a, int32_t b) { return l[a] > l[b]; });
  return ids;
}

// Keeps only `keep` of p and renormalizes.
std::vector<double> restrict_to(const std::vector<double>& p, const std::set<int32_t>& keep) {
  std::vector<double> q(p.size(), 0.0);
  double z = 0.0;
  for (int32_t id : keep) z += p[id];
  for (int32_t id : keep) q[id] = p[id] / z;
  return q;
}

SamplingParams seeded(uint64_t seed) {
  SamplingParams p;
  p.seed = seed;
  return p;
}

std::vector<int> draw_counts(Sampler& s, const std::vector<float>& logits, int n_draws) {
  std::vector<int> counts(logits.size(), 0);
  for (int i = 0; i < n_draws; ++i) {
    std::vector<float> l = logits;
    ++counts.at(s.sample(l.data(), static_cast<int32_t>(l.size())).token);
  }
  return counts;
}

std::set<int32_t> support(const std::vector<int>& counts) {
  std::set<int32_t> s;
  for (size_t i = 0; i < counts.size(); ++i)
    if (counts[i] > 0) s.insert(static_cast<int32_t>(i));
  return s;
}

// Chi-square goodness of fit against p at a 5-sigma level (upper quantile from the
// Wilson-Hilferty approximation, z = 5), plus a 5-sigma check per token; zero-probability
// tokens must never be drawn.
void expect_distribution(const std::vector<int>& counts, const std::vector<double>& p) {
  const double n = std::accumulate(counts.begin(), counts.end(), 0.0);
  double chi2 = 0.0;
  int bins = 0;
  for (size_t i = 0; i < p.size(); ++i) {
    if (p[i] == 0.0) {
      EXPECT_EQ(counts[i], 0) << "token " << i << " has probability 0";
      continue;
    }
    const double e = n * p[i];
    const double d = counts[i] - e;
    chi2 += d * d / e;
    ++bins;
    EXPECT_LE(std::abs(d), 5.0 * std::sqrt(e * (1.0 - p[i])) + 1.0) << "token " << i;
  }
  if (bins < 2) return;  // one token: nothing to fit
  const double df = bins - 1;
  const double a = 2.0 / (9.0 * df);
  const double limit = df * std::pow(1.0 - a + 5.0 * std::sqrt(a), 3.0);
  EXPECT_LT(chi2, limit) << "df " << df;
}

// ---------------------------------------------------------------------------------- greedy

TEST(Sampler, GreedyPicksArgmax) {
  std::vector<float> l = random_logits(1000, 1);
  l[777] = 50.0f;
  SamplingParams p = seeded(1);
  p.temperature = 0.0f;
  p.top_k = 3;  // ignored by greedy
  p.top_p = 0.1f;
  Sampler s(p, {});
  for (int i = 0; i < 10; ++i) EXPECT_EQ(s.sample(l.data(), 1000).token, 777);
}

TEST(Sampler, GreedyTiesGoToLowestId) {
  SamplingParams p = seeded(1);
  p.temperature = 0.0f;
  Sampler s(p, {});
  std::vector<float> l(10, 0.0f);
  l[5] = 2.0f;
  l[3] = 2.0f;
  EXPECT_EQ(s.sample(l.data(), 10).token, 3);
  std::vector<float> big = random_logits(151936, 2);
  big[150000] = 40.0f;
  big[100003] = 40.0f;
  EXPECT_EQ(s.sample(big.data(), 151936).token, 100003);
}

TEST(Sampler, TinyTemperatureIsGreedy) {
  std::vector<float> l = {0.0f, 1.0f, 0.999f, -3.0f};
  SamplingParams p;  // unseeded: greedy draws nothing at random
  p.temperature = 0.5f * kGreedyTemperature;
  Sampler s(p, {});
  for (int i = 0; i < 50; ++i) EXPECT_EQ(s.sample(l.data(), 4).token, 1);
}

// ---------------------------------------------------------------------------------- top-k

TEST(Sampler, TopKNeverDrawsOutsideTheKBest) {
  const std::vector<float> l = random_logits(1000, 3, 0.3f);  // flat: the tail matters
  SamplingParams p = seeded(3);
  p.top_k = 5;
  Sampler s(p, {});
  const std::vector<int> counts = draw_counts(s, l, 20000);
  const std::vector<int32_t> order = ranked(l);
  const std::set<int32_t> best(order.begin(), order.begin() + 5);
  EXPECT_EQ(support(counts), best);
  expect_distribution(counts, restrict_to(softmax(l), best));
}

TEST(Sampler, TopKTieAtTheBoundaryKeepsLowestIds) {
  const std::vector<float> l = {3.0f, 1.0f, 2.0f, 2.0f, 2.0f, 0.5f};
  SamplingParams p = seeded(4);
  p.top_k = 2;
  Sampler s(p, {});
  EXPECT_EQ(support(draw_counts(s, l, 2000)), (std::set<int32_t>{0, 2}));
}

TEST(Sampler, TopKAtLeastVocabIsDisabled) {
  const std::vector<float> l = {0.0f, 0.1f, 0.2f};
  SamplingParams p = seeded(5);
  p.top_k = 3;
  Sampler s(p, {});
  const std::vector<int> counts = draw_counts(s, l, 20000);
  expect_distribution(counts, softmax(l));
}

// ---------------------------------------------------------------------------------- top-p

// Four equal tokens (probability 0.25 each, exactly: the others are -inf): the nucleus for
// top_p = 0.5 is exactly two of them, cumulative probability == top_p.
TEST(Sampler, TopPBoundaryWhereCumulativeEqualsTopP) {
  std::vector<float> l(16, kNegInf);
  for (int32_t id : {3, 7, 9, 12}) l[id] = 0.0f;
  struct Case {
    float top_p;
    std::set<int32_t> nucleus;
  };
  for (const Case& c : {Case{0.5f, {3, 7}}, Case{0.75f, {3, 7, 9}}, Case{0.5001f, {3, 7, 9}},
                        Case{0.25f, {3}}, Case{1.0f, {3, 7, 9, 12}}}) {
    SamplingParams p = seeded(6);
    p.top_p = c.top_p;
    p.temperature = 0.7f;  // exp(0 / T) is still exactly 1
    Sampler s(p, {});
    const std::vector<int> counts = draw_counts(s, l, 4000);
    EXPECT_EQ(support(counts), c.nucleus) << "top_p " << c.top_p;
    expect_distribution(counts, restrict_to(softmax(l), c.nucleus));
  }
}

TEST(Sampler, TopPAroundADistinctBoundary) {
  const std::vector<float> l = {std::log(0.4f), std::log(0.3f), std::log(0.2f), std::log(0.1f)};
  struct Case {
    float top_p;
    std::set<int32_t> nucleus;
  };
  for (const Case& c : {Case{0.69f, {0, 1}}, Case{0.71f, {0, 1, 2}}, Case{1e-6f, {0}},
                        Case{0.39f, {0}}, Case{0.41f, {0, 1}}, Case{0.95f, {0, 1, 2, 3}}}) {
    SamplingParams p = seeded(7);
    p.top_p = c.top_p;
    Sampler s(p, {});
    EXPECT_EQ(support(draw_counts(s, l, 3000)), c.nucleus) << "top_p " << c.top_p;
  }
}

// The reference nucleus of a real-size vocabulary by a full sort in double.
std::set<int32_t> reference_nucleus(const std::vector<float>& l, double t, double top_p) {
  const std::vector<double> prob = softmax(l, t);
  std::set<int32_t> keep;
  double cum = 0.0;
  for (int32_t id : ranked(l)) {
    keep.insert(id);
    cum += prob[id];
    if (cum >= top_p) break;
  }
  return keep;
}

TEST(Sampler, TopPOnAFullVocabularyMatchesAFullSort) {
  // A few hundred likely tokens over a 151,936 tail: the nucleus outgrows the first guess.
  std::vector<float> l = random_logits(151936, 8, 1.0f);
  std::mt19937 gen(8);
  for (int i = 0; i < 400; ++i) l[gen() % l.size()] += 14.0f;
  for (float top_p : {0.9f, 0.5f}) {
    const std::set<int32_t> nucleus = reference_nucleus(l, 0.8, top_p);
    std::printf("top_p %.2f: nucleus of %zu tokens\n", top_p, nucleus.size());
    SamplingParams p = seeded(8);
    p.temperature = 0.8f;
    p.top_p = top_p;
    Sampler s(p, {});
    const std::vector<int> counts = draw_counts(s, l, 6000);
    for (int32_t id : support(counts)) EXPECT_TRUE(nucleus.count(id)) << id;
    expect_distribution(counts, restrict_to(softmax(l, 0.8), nucleus));
  }
}

// Nuclei wider than the sampler's first guess (256 best) go through its histogram cutoff.
TEST(Sampler, WideNucleusMatchesAFullSort) {
  std::mt19937 gen(30);
  std::uniform_real_distribution<float> dist(0.0f, 3.0f);
  std::vector<float> l(2000);
  for (float& v : l) v = dist(gen);
  struct Case {
    float t, top_p, min_p;
  };
  for (const Case& c : {Case{1.0f, 0.6f, 0.0f}, Case{0.7f, 0.8f, 0.0f}, Case{1.3f, 0.9f, 0.3f}}) {
    const std::vector<double> prob = softmax(l, c.t);
    const double p_max = *std::max_element(prob.begin(), prob.end());
    std::set<int32_t> keep;
    for (int32_t id : reference_nucleus(l, c.t, c.top_p))
      if (prob[id] >= c.min_p * p_max) keep.insert(id);
    ASSERT_GT(keep.size(), 256u);
    SamplingParams p = seeded(30);
    p.temperature = c.t;
    p.top_p = c.top_p;
    p.min_p = c.min_p;
    Sampler s(p, {});
    const std::vector<int> counts = draw_counts(s, l, 20000);
    expect_distribution(counts, restrict_to(prob, keep));
  }
}

TEST(Sampler, WideNucleusTiesAtTheBoundary) {
  const std::vector<float> l(1000, 0.25f);  // 1000 equal tokens: top_p 0.5 keeps ids 0..499
  SamplingParams p = seeded(31);
  p.top_p = 0.5f;
  Sampler s(p, {});
  std::set<int32_t> want;
  for (int32_t i = 0; i < 500; ++i) want.insert(i);
  EXPECT_EQ(support(draw_counts(s, l, 20000)), want);
}

TEST(Sampler, WideNucleusOnAFullVocabulary) {
  const std::vector<float> l = random_logits(151936, 32, 1.0f);
  const std::set<int32_t> nucleus = reference_nucleus(l, 1.0, 0.9);
  ASSERT_GT(nucleus.size(), 10000u);
  SamplingParams p = seeded(32);
  p.top_p = 0.9f;
  Sampler s(p, {});
  std::vector<float> x = l;  // unchanged by sample(): no penalties or bias
  for (int i = 0; i < 3000; ++i) {
    const int32_t t = s.sample(x.data(), 151936).token;
    ASSERT_TRUE(nucleus.count(t)) << "token " << t << " is outside the nucleus";
  }
}

TEST(Sampler, TopKThenTopPRenormalizesAfterTopK) {
  // probs 0.4 0.3 0.2 0.1; top_k = 2 leaves 4/7, 3/7; top_p = 0.5 then keeps token 0 only,
  // whereas top-p over the full distribution would keep 0 and 1.
  const std::vector<float> l = {std::log(0.4f), std::log(0.3f), std::log(0.2f), std::log(0.1f)};
  SamplingParams p = seeded(9);
  p.top_k = 2;
  p.top_p = 0.55f;
  Sampler s(p, {});
  EXPECT_EQ(support(draw_counts(s, l, 2000)), (std::set<int32_t>{0}));
  p.top_k = 3;
  p.top_p = 0.8f;  // after top-k: 4/9 + 3/9 = 0.778 < 0.8, so token 2 is in
  Sampler s3(p, {});
  EXPECT_EQ(support(draw_counts(s3, l, 3000)), (std::set<int32_t>{0, 1, 2}));
}

// ---------------------------------------------------------------------------------- min-p

TEST(Sampler, MinPKeepsTokensAboveTheFractionOfTheMax) {
  const std::vector<float> l = {std::log(0.05f), 0.0f, std::log(0.5f), std::log(0.2f),
                                std::log(0.09f)};
  SamplingParams p = seeded(10);
  p.min_p = 0.1f;
  Sampler s(p, {});
  const std::vector<int> counts = draw_counts(s, l, 20000);
  const std::set<int32_t> keep = {1, 2, 3};
  EXPECT_EQ(support(counts), keep);
  expect_distribution(counts, restrict_to(softmax(l), keep));
}

TEST(Sampler, MinPAppliesAfterTemperature) {
  // Ratios to the max 1, 0.5, 0.2, 0.09 become 1, 0.707, 0.447, 0.3 at T = 2.
  const std::vector<float> l = {0.0f, std::log(0.5f), std::log(0.2f), std::log(0.09f)};
  SamplingParams p = seeded(11);
  p.temperature = 2.0f;
  p.min_p = 0.35f;
  Sampler s(p, {});
  EXPECT_EQ(support(draw_counts(s, l, 3000)), (std::set<int32_t>{0, 1, 2}));
  p.min_p = 1.0f;  // only the max survives
  Sampler s1(p, {});
  EXPECT_EQ(support(draw_counts(s1, l, 500)), (std::set<int32_t>{0}));
}

TEST(Sampler, MinPWithTopKAndTopP) {
  std::vector<float> l = random_logits(5000, 12, 2.0f);
  const std::vector<int32_t> order = ranked(l);
  const std::vector<double> prob = softmax(l);
  SamplingParams p = seeded(12);
  p.top_k = 40;
  p.top_p = 0.97f;
  p.min_p = 0.2f;
  std::set<int32_t> keep;
  double z = 0.0;
  for (int i = 0; i < 40; ++i) z += prob[order[i]];
  double cum = 0.0;
  for (int i = 0; i < 40 && cum < 0.97 * z; ++i) {
    if (prob[order[i]] < 0.2 * prob[order[0]]) break;
    keep.insert(order[i]);
    cum += prob[order[i]];
  }
  Sampler s(p, {});
  const std::vector<int> counts = draw_counts(s, l, 20000);
  expect_distribution(counts, restrict_to(prob, keep));
}

// ---------------------------------------------------------------------------------- penalties

// Values are powers of two times small integers so that the expected arithmetic is exact.
TEST(Sampler, RepetitionPenaltyOverPromptAndOutputOnce) {
  SamplingParams p = seeded(13);
  p.temperature = 0.0f;
  p.repetition_penalty = 2.0f;
  const std::vector<int32_t> prompt = {1, 3, 3, 5};
  Sampler s(p, prompt);
  s.accept(5);
  s.accept(7);
  s.accept(7);
  std::vector<float> l = {0.5f, 2.0f, 3.0f, -1.0f, 1.5f, 4.0f, 0.25f, -0.5f};
  std::vector<float> want = l;
  want[1] = 1.0f;   // prompt, positive: divided
  want[3] = -2.0f;  // prompt, negative: multiplied, once despite appearing twice
  want[5] = 2.0f;   // prompt and output: once
  want[7] = -1.0f;  // output, negative
  const SampleResult r = s.sample(l.data(), 8);
  for (size_t i = 0; i < l.size(); ++i) EXPECT_EQ(l[i], want[i]) << "token " << i;
  EXPECT_EQ(r.token, 2);  // 3.0 is now the max
}

TEST(Sampler, PresenceAndFrequencyOverOutputOnly) {
  SamplingParams p = seeded(14);
  p.presence_penalty = 0.25f;
  p.frequency_penalty = 0.5f;
  const std::vector<int32_t> prompt = {1, 2};
  Sampler s(p, prompt);
  for (int32_t t : {2, 4, 4, 4}) s.accept(t);
  std::vector<float> l = {1.0f, 1.0f, 1.0f, 1.0f, 1.0f, 1.0f};
  std::vector<float> want = l;
  want[2] = 1.0f - 0.5f - 0.25f;
  want[4] = 1.0f - 1.5f - 0.25f;
  s.sample(l.data(), 6);
  for (size_t i = 0; i < l.size(); ++i) EXPECT_EQ(l[i], want[i]) << "token " << i;
}

TEST(Sampler, BiasThenRepetitionThenFrequencyAndPresence) {
  SamplingParams p = seeded(15);
  p.logit_bias = {{4, 1.0f}, {0, -2.0f}, {4, 1.0f}};  // a repeated id adds up
  p.repetition_penalty = 2.0f;
  p.presence_penalty = -0.5f;
  p.frequency_penalty = 0.25f;
  const std::vector<int32_t> prompt = {0};
  Sampler s(p, prompt);
  s.accept(4);
  s.accept(4);
  std::vector<float> l = {1.0f, 0.0f, 0.0f, 0.0f, 2.0f};
  std::vector<float> want = l;
  want[0] = (1.0f - 2.0f) * 2.0f;                     // bias, then negative -> multiplied
  want[4] = (2.0f + 2.0f) / 2.0f - 2 * 0.25f + 0.5f;  // bias, divided, frequency, presence
  s.sample(l.data(), 5);
  for (size_t i = 0; i < l.size(); ++i) EXPECT_EQ(l[i], want[i]) << "token " << i;
}

TEST(Sampler, NoPenaltiesLeaveLogitsUntouched) {
  SamplingParams p = seeded(16);
  const std::vector<int32_t> prompt = {0, 1, 2};
  Sampler s(p, prompt);
  s.accept(1);
  std::vector<float> l = random_logits(300, 16);
  const std::vector<float> before = l;
  s.sample(l.data(), 300);
  EXPECT_EQ(l, before);
}

TEST(Sampler, LogitBiasSteersGreedy) {
  std::vector<float> l = random_logits(1000, 17);
  const int32_t best = ranked(l)[0];
  SamplingParams p = seeded(17);
  p.temperature = 0.0f;
  p.logit_bias = {{best, -100.0f}, {12, 100.0f}};
  Sampler s(p, {});
  std::vector<float> x = l;
  EXPECT_EQ(s.sample(x.data(), 1000).token, 12);
  EXPECT_EQ(x[12], l[12] + 100.0f);
  EXPECT_EQ(x[best], l[best] - 100.0f);
  p.logit_bias = {{best, -100.0f}};
  Sampler s2(p, {});
  x = l;
  EXPECT_EQ(s2.sample(x.data(), 1000).token, ranked(l)[1]);
}

// ---------------------------------------------------------------------------------- RNG

std::vector<int32_t> draw_sequence(Sampler& s, const std::vector<float>& l, int n) {
  std::vector<int32_t> out;
  for (int i = 0; i < n; ++i) {
    std::vector<float> x = l;
    out.push_back(s.sample(x.data(), static_cast<int32_t>(x.size())).token);
  }
  return out;
}

TEST(Sampler, SeededDrawsAreReproducibleWhateverElseIsSampled) {
  const std::vector<float> l = random_logits(1000, 18, 0.5f);
  SamplingParams p = seeded(42);
  p.top_p = 0.95f;
  Sampler a(p, {});
  const std::vector<int32_t> alone = draw_sequence(a, l, 200);
  // The same seed again, interleaved with an unseeded and a differently seeded sampler.
  Sampler b(p, {});
  Sampler noise1(SamplingParams{}, {});
  Sampler noise2(seeded(43), {});
  std::vector<int32_t> mixed, other;
  for (int i = 0; i < 200; ++i) {
    draw_sequence(noise1, l, 1);
    mixed.push_back(draw_sequence(b, l, 1)[0]);
    other.push_back(draw_sequence(noise2, l, 1)[0]);
  }
  EXPECT_EQ(alone, mixed);
  EXPECT_NE(alone, other);
  Sampler u1(SamplingParams{}, {}), u2(SamplingParams{}, {});
  EXPECT_NE(draw_sequence(u1, l, 200), draw_sequence(u2, l, 200));
}

// ---------------------------------------------------------------------------------- distribution

TEST(Sampler, FullVocabularyFrequenciesMatchSoftmaxWithTemperature) {
  // 1000 tokens: three full blocks of 256 and a partial one.
  const std::vector<float> l = random_logits(1000, 19, 0.5f);
  SamplingParams p = seeded(19);
  p.temperature = 0.7f;
  Sampler s(p, {});
  expect_distribution(draw_counts(s, l, 20000), softmax(l, 0.7));
}

TEST(Sampler, SmallVocabularyFrequenciesMatchSoftmax) {
  const std::vector<float> l = {1.0f, -0.5f, 2.0f, 0.0f, 1.5f, -2.0f, 0.7f};
  for (float t : {1.0f, 0.3f, 2.0f}) {
    SamplingParams p = seeded(20);
    p.temperature = t;
    Sampler s(p, {});
    expect_distribution(draw_counts(s, l, 20000), softmax(l, t));
  }
}

TEST(Sampler, MaskedTokensAreNeverDrawn) {
  std::vector<float> l = random_logits(700, 21, 0.2f);
  for (size_t i = 0; i < l.size(); i += 2) l[i] = kNegInf;
  for (int top_k : {0, 100}) {
    SamplingParams p = seeded(21);
    p.top_k = top_k;
    p.temperature = 1.5f;
    Sampler s(p, {});
    for (int32_t id : support(draw_counts(s, l, 5000))) EXPECT_EQ(id % 2, 1);
  }
}

// ---------------------------------------------------------------------------------- logprobs

TEST(Sampler, LogprobsAreTheRawLogSoftmax) {
  const std::vector<float> l = random_logits(20, 22, 3.0f);
  const std::vector<double> prob = softmax(l);
  SamplingParams p = seeded(22);
  p.logprobs = 20;
  p.temperature = 0.5f;        // raw logprobs ignore temperature...
  p.logit_bias = {{5, 7.0f}};  // ...and bias
  Sampler s(p, {});
  std::vector<float> x = l;
  const SampleResult r = s.sample(x.data(), 20);
  ASSERT_EQ(r.top.size(), 20u);
  double sum = 0.0;
  std::set<int32_t> ids;
  for (size_t i = 0; i < r.top.size(); ++i) {
    if (i > 0) {
      EXPECT_GE(r.top[i - 1].logprob, r.top[i].logprob);
    }
    EXPECT_NEAR(r.top[i].logprob, std::log(prob[r.top[i].id]), 1e-5);
    sum += std::exp(r.top[i].logprob);
    ids.insert(r.top[i].id);
  }
  EXPECT_EQ(ids.size(), 20u);
  EXPECT_NEAR(sum, 1.0, 1e-5);
  EXPECT_NEAR(r.logprob, std::log(prob[r.token]), 1e-5);
}

TEST(Sampler, LogprobsOfAChosenPenalizedToken) {
  const std::vector<float> l = {2.0f, 1.0f, 3.0f, -1.0f};
  const std::vector<double> prob = softmax(l);
  SamplingParams p = seeded(23);
  p.temperature = 0.0f;
  p.logit_bias = {{3, 50.0f}};
  p.repetition_penalty = 1.5f;
  const std::vector<int32_t> prompt = {3};
  p.logprobs = 0;
  Sampler s(p, prompt);
  std::vector<float> x = l;
  const SampleResult r = s.sample(x.data(), 4);
  EXPECT_EQ(r.token, 3);
  EXPECT_NEAR(r.logprob, std::log(prob[3]), 1e-5);
  EXPECT_TRUE(r.top.empty());
  p.logprobs = -1;  // not asked for: NaN, no list
  Sampler none(p, prompt);
  x = l;
  const SampleResult r2 = none.sample(x.data(), 4);
  EXPECT_EQ(r2.token, 3);
  EXPECT_TRUE(std::isnan(r2.logprob));
  EXPECT_TRUE(r2.top.empty());
}

// The sampler's own exp must be float-accurate: logprobs over logits spread across [-20, 0]
// within a few float ulps of the double reference.
TEST(Sampler, LogprobsAreFloatAccurate) {
  std::vector<float> l(4096);
  for (size_t i = 0; i < l.size(); ++i) l[i] = -20.0f * static_cast<float>(i) / 4096.0f;
  const std::vector<double> prob = softmax(l);
  SamplingParams p = seeded(33);
  p.logprobs = 20;
  Sampler s(p, {});
  for (int rep = 0; rep < 50; ++rep) {
    const SampleResult r = s.sample(l.data(), 4096);
    const double want = std::log(prob[r.token]);
    EXPECT_NEAR(r.logprob, want, 1e-6 + 4e-7 * std::abs(want)) << "token " << r.token;
    for (const TokenLogprob& t : r.top) EXPECT_NEAR(t.logprob, std::log(prob[t.id]), 1e-6);
  }
}

TEST(Sampler, TopLogprobsOnALargeVocabulary) {
  const std::vector<float> l = random_logits(151936, 24, 4.0f);
  const std::vector<double> prob = softmax(l);
  const std::vector<int32_t> order = ranked(l);
  for (int n : {0, 1, 3, 20}) {
    SamplingParams p = seeded(24);
    p.logprobs = n;
    Sampler s(p, {});
    std::vector<float> x = l;
    const SampleResult r = s.sample(x.data(), 151936);
    ASSERT_EQ(r.top.size(), static_cast<size_t>(n));
    for (int i = 0; i < n; ++i) {
      EXPECT_EQ(r.top[i].id, order[i]);
      EXPECT_NEAR(r.top[i].logprob, std::log(prob[order[i]]), 1e-4);
    }
    EXPECT_NEAR(r.logprob, std::log(prob[r.token]), 1e-4);
  }
}

// ---------------------------------------------------------------------------------- validation

TEST(SamplingParams, DefaultsAreValid) {
  EXPECT_EQ(SamplingParams{}.validate(100), "");
  SamplingParams p;
  p.temperature = 2.0f;
  p.top_k = -1;
  p.top_p = 1.0f;
  p.min_p = 1.0f;
  p.repetition_penalty = 2.0f;
  p.presence_penalty = -2.0f;
  p.frequency_penalty = 2.0f;
  p.logit_bias = {{0, -100.0f}, {99, 100.0f}};
  p.stop_token_ids = {0, 99};
  p.stop = {"\n\n"};
  p.logprobs = 20;
  p.max_tokens = 1;
  EXPECT_EQ(p.validate(100), "");
}

TEST(SamplingParams, RejectsEachBadValue) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  struct Case {
    const char* field;
    void (*set)(SamplingParams&, float);
    std::vector<float> bad;
  };
  const std::vector<Case> cases = {
      {"temperature", [](SamplingParams& p, float v) { p.temperature = v; }, {-0.1f, 2.01f, nan}},
      {"top_k", [](SamplingParams& p, float v) { p.top_k = static_cast<int>(v); }, {-2.0f}},
      {"top_p", [](SamplingParams& p, float v) { p.top_p = v; }, {0.0f, -0.5f, 1.01f, nan}},
      {"min_p", [](SamplingParams& p, float v) { p.min_p = v; }, {-0.01f, 1.5f, nan}},
      {"repetition_penalty",
       [](SamplingParams& p, float v) { p.repetition_penalty = v; },
       {0.0f, -1.0f, 2.5f, nan}},
      {"presence_penalty",
       [](SamplingParams& p, float v) { p.presence_penalty = v; },
       {-2.1f, 2.1f, nan}},
      {"frequency_penalty",
       [](SamplingParams& p, float v) { p.frequency_penalty = v; },
       {-2.1f, 2.1f, nan}},
      {"logit_bias",
       [](SamplingParams& p, float v) {
         p.logit_bias = {{1, v}};
       },
       {-100.5f, 101.0f, nan}},
      {"logit_bias",
       [](SamplingParams& p, float v) {
         p.logit_bias = {{int32_t(v), 1.0f}};
       },
       {-1.0f, 100.0f}},
      {"max_tokens",
       [](SamplingParams& p, float v) { p.max_tokens = static_cast<int>(v); },
       {0.0f, -5.0f}},
      {"stop_token_ids",
       [](SamplingParams& p, float v) { p.stop_token_ids = {int32_t(v)}; },
       {-1.0f, 100.0f}},
      {"logprobs", [](SamplingParams& p, float v) { p.logprobs = static_cast<int>(v); }, {21.0f}},
  };
  for (const Case& c : cases) {
    for (float v : c.bad) {
      SamplingParams p;
      c.set(p, v);
      const std::string msg = p.validate(100);
      EXPECT_NE(msg.find(c.field), std::string::npos) << c.field << " = " << v << ": " << msg;
    }
  }
  SamplingParams p;
  p.stop = {"ok", ""};
  EXPECT_NE(p.validate(100).find("stop"), std::string::npos);
  EXPECT_NE(SamplingParams{}.validate(0), "");
}

TEST(Sampler, BadInputThrowsInsteadOfCrashing) {
  SamplingParams p = seeded(25);
  Sampler s(p, {});
  std::vector<float> l = {0.0f, std::numeric_limits<float>::quiet_NaN(), 1.0f};
  EXPECT_THROW(s.sample(l.data(), 3), Error);
  l = {kNegInf, kNegInf, kNegInf};
  EXPECT_THROW(s.sample(l.data(), 3), Error);
  l = {0.0f, std::numeric_limits<float>::infinity(), 1.0f};
  EXPECT_THROW(s.sample(l.data(), 3), Error);
  EXPECT_THROW(s.sample(l.data(), 0), Error);
  EXPECT_THROW(s.accept(-1), Error);
  const std::vector<int32_t> negative = {1, -3};
  EXPECT_THROW({ Sampler bad(p, negative); }, Error);
  p.repetition_penalty = 1.2f;
  const std::vector<int32_t> too_big = {1, 10};
  Sampler s2(p, too_big);
  l = {0.0f, 1.0f, 2.0f};
  EXPECT_THROW(s2.sample(l.data(), 3), Error);
  p.repetition_penalty = 1.0f;
  p.logit_bias = {{3, 1.0f}};
  Sampler s3(p, {});
  EXPECT_THROW(s3.sample(l.data(), 3), Error);
}

// ---------------------------------------------------------------------------------- benchmark

double thread_cpu_us() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return ts.tv_sec * 1e6 + ts.tv_nsec * 1e-3;
}

// Prints sample() time on a Qwen-size vocabulary (wall and thread CPU time, the latter being
// steadier on a shared machine); run with --gtest_also_run_disabled_tests
// --gtest_filter='*Benchmark*'. No timing is asserted.
TEST(Sampler, DISABLED_Benchmark) {
  const int32_t n = 151936;
  const std::vector<float> flat = random_logits(n, 26, 3.0f);
  // A typical LM step: a few tokens far above the bulk (top-p 0.9 keeps a handful).
  std::vector<float> peaked = random_logits(n, 27, 2.0f);
  for (int i = 0; i < 20; ++i) peaked[(i * 7919) % n] += 14.0f + 0.2f * i;
  struct Config {
    const char* name;
    const std::vector<float>* logits;
    SamplingParams p;
  };
  auto make = [](float t, int top_k, float top_p, int logprobs) {
    SamplingParams p;
    p.temperature = t;
    p.top_k = top_k;
    p.top_p = top_p;
    p.logprobs = logprobs;
    p.seed = 1;
    return p;
  };
  const std::vector<Config> configs = {
      {"greedy", &flat, make(0.0f, 0, 1.0f, -1)},
      {"T=0.8 full vocabulary", &flat, make(0.8f, 0, 1.0f, -1)},
      {"top_k=50 top_p=0.9 peaked", &peaked, make(1.0f, 50, 0.9f, -1)},
      {"top_k=50 top_p=0.9 flat", &flat, make(1.0f, 50, 0.9f, -1)},
      {"top_k=50 top_p=0.9 logprobs=5", &flat, make(1.0f, 50, 0.9f, 5)},
      {"top_p=0.9 peaked", &peaked, make(1.0f, 0, 0.9f, -1)},
      {"top_p=0.9 flat (wide nucleus)", &flat, make(1.0f, 0, 0.9f, -1)},
  };
  for (const Config& c : configs) {
    Sampler s(c.p, {});
    std::vector<float> l = *c.logits;  // no penalties or bias: sample() leaves it unchanged
    int64_t checksum = 0;
    const int iters = 2000;
    const auto t0 = std::chrono::steady_clock::now();
    const double c0 = thread_cpu_us();
    for (int i = 0; i < iters; ++i) checksum += s.sample(l.data(), n).token;
    const double cpu = (thread_cpu_us() - c0) / iters;
    const auto t1 = std::chrono::steady_clock::now();
    const double wall = std::chrono::duration<double, std::micro>(t1 - t0).count() / iters;
    std::printf("%-32s wall %7.1f us  cpu %7.1f us  (checksum %lld)\n", c.name, wall, cpu,
                static_cast<long long>(checksum));
  }
}

}  // namespace
}  // namespace jinx

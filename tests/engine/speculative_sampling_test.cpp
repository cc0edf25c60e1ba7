// Speculative sampling with a draft model (EngineOptions::speculative_sampling = kRejection):
// guesses drawn from the draft's distribution q stand with probability min(1, p / q), else the
// token comes from max(0, p - q). Checked: the drafter's distributions are sampling_probs of
// its own logits; with the target as its own draft every guess stands; with an unrelated
// draft (and a mask the draft does not know) the tokens still follow the target's exact
// distribution, computed here from the single-sequence path.
#include <algorithm>
#include <cmath>
#include <map>
#include <random>
#include <vector>

#include <gtest/gtest.h>

#include "core/check.h"
#include "engine/draft_model.h"
#include "engine/llm.h"

namespace jinx {
namespace {

const std::string kModels = std::string(JINX_FIXTURES) + "/models/";

std::shared_ptr<const Model> load(const std::string& name) { return Model::load(kModels + name); }

EngineOptions rejection_options(std::shared_ptr<const Model> draft, int k) {
  EngineOptions o;
  o.threads = 2;
  o.kv_dtype = DType::F32;
  o.max_num_seqs = 64;
  o.max_num_batched_tokens = 512;
  o.kv_cache_tokens = 16384;
  o.draft_model = std::move(draft);
  o.num_speculative_tokens = k;
  o.speculative_sampling = SpeculativeSampling::kRejection;
  return o;
}

TEST(SamplingProbs, FiltersAsTheSamplerDoes) {
  std::vector<float> logits = {1.0f, 3.0f, 2.0f, -1.0f, 3.0f, 0.5f};
  std::vector<float> p;
  SamplingParams sp;
  sp.temperature = 1.0f;
  sampling_probs(logits.data(), 6, sp, &p);
  double z = 0;
  for (float x : logits) z += std::exp(x - 3.0);
  for (size_t i = 0; i < 6; ++i) EXPECT_NEAR(p[i], std::exp(logits[i] - 3.0) / z, 1e-5) << i;
  sp.top_k = 2;  // the two 3.0s (ties by lower id)
  sampling_probs(logits.data(), 6, sp, &p);
  EXPECT_EQ(p, (std::vector<float>{0, 0.5f, 0, 0, 0.5f, 0}));
  sp.top_k = 0;
  sp.min_p = 0.5f;  // weight >= 0.5 of the best: e^-1 = 0.37 is out, so only the 3.0s
  sampling_probs(logits.data(), 6, sp, &p);
  EXPECT_EQ(p, (std::vector<float>{0, 0.5f, 0, 0, 0.5f, 0}));
  sp.min_p = 0;
  sp.top_p = 0.8f;  // 3.0, 3.0 make 0.74 of the mass, 2.0 crosses 0.8: three kept
  sampling_probs(logits.data(), 6, sp, &p);
  const double z3 = 2 + std::exp(-1.0);
  EXPECT_NEAR(p[1], 1 / z3, 1e-6);
  EXPECT_NEAR(p[2], std::exp(-1.0) / z3, 1e-6);
  EXPECT_EQ(p[0] + p[3] + p[5], 0.0f);
  // A large vocabulary under top-p alone (only the heavy tokens are sorted): the nucleus of a
  // full sort, written out here.
  {
    std::mt19937 rng(3);
    std::normal_distribution<float> nd(0.0f, 3.0f);
    std::vector<float> big(20000);
    for (float& x : big) x = nd(rng);
    SamplingParams tp;
    tp.temperature = 0.7f;
    tp.top_p = 0.9f;
    sampling_probs(big.data(), 20000, tp, &p);
    std::vector<int32_t> order(big.size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = static_cast<int32_t>(i);
    std::sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return big[a] > big[b]; });
    std::vector<double> w(big.size());
    double z = 0;
    for (size_t i = 0; i < big.size(); ++i) z += w[i] = std::exp((big[i] - big[order[0]]) / 0.7);
    double cum = 0, kept = 0;
    size_t n = 0;
    while (cum < 0.9 * z) cum += w[order[n++]];
    for (size_t i = 0; i < n; ++i) kept += w[order[i]];
    for (size_t i = 0; i < order.size(); ++i) {
      const double want = i < n ? w[order[i]] / kept : 0.0;
      ASSERT_NEAR(p[order[i]], want, 1e-6) << "rank " << i << " of nucleus " << n;
    }
  }
  sp.temperature = 0;  // greedy: the first best
  sampling_probs(logits.data(), 6, sp, &p);
  EXPECT_EQ(p, (std::vector<float>{0, 1, 0, 0, 0, 0}));
}

TEST(SpeculativeSampling, DraftEqualToTargetKeepsEveryGuess) {
  auto m = load("tiny-llama");
  std::vector<Request> reqs;
  for (int i = 0; i < 8; ++i) {
    Request r;
    r.prompt = {1, static_cast<int32_t>(5 + i), 9, 33};
    r.params.temperature = 1.0f;
    r.params.seed = static_cast<uint64_t>(i);
    r.params.max_tokens = 33;
    r.params.ignore_eos = true;
    reqs.push_back(std::move(r));
  }
  double keep[2];
  for (int mode = 0; mode < 2; ++mode) {
    EngineOptions o = rejection_options(m, 4);
    if (mode == 0) o.speculative_sampling = SpeculativeSampling::kMatch;
    LLM llm(m, nullptr, o);
    const auto outs = llm.generate(reqs);
    for (const auto& out : outs) EXPECT_EQ(out.token_ids.size(), 33u);
    keep[mode] = static_cast<double>(llm.stats().accepted_tokens) / llm.stats().draft_tokens;
  }
  std::printf("guesses kept at temperature 1: greedy guesses %.2f, sampled guesses %.2f\n",
              keep[0], keep[1]);
  // The same logits on both sides (batch-invariant kernels): p == q, every guess stands
  // (the 33rd token ends a request inside its last step's guesses, hence not exactly 1).
  EXPECT_GT(keep[1], 0.95);
  EXPECT_LT(keep[0], 0.6);
}

// The rejection path with penalties, logprobs and a small KV pool that preempts (a preempted
// sequence drops its guesses and their distributions): every request finishes with its
// logprobs. (It once divided by zero here: distributions left behind by kept guesses.)
TEST(SpeculativeSampling, WithPenaltiesLogprobsAndPreemption) {
  auto m = load("tiny-llama");
  EngineOptions o = rejection_options(load("tiny-llama-q8_0.gguf"), 3);
  o.kv_cache_tokens = 96;  // 6 requests of ~40 tokens: some are preempted and recomputed
  o.block_size = 4;
  LLM llm(m, nullptr, o);
  std::vector<Request> reqs;
  for (int i = 0; i < 6; ++i) {
    Request r;
    r.prompt = {1, static_cast<int32_t>(20 + i), 9, 33, 7};
    r.params.temperature = 0.9f;
    r.params.top_k = 20;
    r.params.seed = static_cast<uint64_t>(50 + i);
    r.params.max_tokens = 30;
    r.params.ignore_eos = true;
    r.params.repetition_penalty = 1.2f;
    r.params.presence_penalty = 0.5f;
    r.params.logprobs = 2;
    reqs.push_back(std::move(r));
  }
  const auto outs = llm.generate(reqs);
  for (const auto& out : outs) {
    ASSERT_EQ(out.token_ids.size(), 30u);
    ASSERT_EQ(out.logprobs.size(), 30u);
    for (size_t k = 0; k < out.token_ids.size(); ++k) {
      EXPECT_EQ(out.logprobs[k].token, out.token_ids[k]);
      EXPECT_LE(out.logprobs[k].logprob, 0.0f);
      EXPECT_EQ(out.logprobs[k].top.size(), 2u);
    }
  }
  EXPECT_GT(llm.stats().preemptions, 0);
  EXPECT_GT(llm.stats().accepted_tokens, 0);
}

// Exact distribution of the target's first three tokens after the prompt, sampling at
// temperature 1 among `allowed` (when given) or among the top_k best.
struct Exact {
  std::map<int32_t, double> first, second, third;
};

std::vector<std::pair<int32_t, double>> support_probs(const std::vector<float>& logits,
                                                      const std::vector<int32_t>& allowed,
                                                      int top_k) {
  std::vector<int32_t> ids = allowed;
  if (ids.empty()) {
    for (int32_t t = 0; t < static_cast<int32_t>(logits.size()); ++t) ids.push_back(t);
    std::partial_sort(ids.begin(), ids.begin() + top_k, ids.end(), [&](int32_t a, int32_t b) {
      return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
    });
    ids.resize(static_cast<size_t>(top_k));
  }
  double mx = -1e30, z = 0;
  for (int32_t t : ids) mx = std::max<double>(mx, logits[t]);
  for (int32_t t : ids) z += std::exp(logits[t] - mx);
  std::vector<std::pair<int32_t, double>> p;
  for (int32_t t : ids) p.push_back({t, std::exp(logits[t] - mx) / z});
  return p;
}

Exact exact_distribution(const Model& m, const std::vector<int32_t>& prompt,
                         const std::vector<int32_t>& allowed, int top_k) {
  ThreadPool pool(2);
  std::vector<float> logits(m.config().vocab_size);
  auto next = [&](const std::vector<int32_t>& ctx) {
    KvCache cache = m.new_cache(static_cast<int64_t>(ctx.size()));
    m.forward(ctx, cache, logits.data(), false, pool);
    return support_probs(logits, allowed, top_k);
  };
  Exact e;
  for (const auto& [a, pa] : next(prompt)) {
    e.first[a] += pa;
    std::vector<int32_t> c1 = prompt;
    c1.push_back(a);
    for (const auto& [b, pb] : next(c1)) {
      e.second[b] += pa * pb;
      std::vector<int32_t> c2 = c1;
      c2.push_back(b);
      for (const auto& [c, pc] : next(c2)) e.third[c] += pa * pb * pc;
    }
  }
  return e;
}

// The total variation distance expected of n draws from `exact`, about:
// 1/2 sum_i E|f_i - p_i| with f_i ~ N(p_i, p_i (1 - p_i) / n), E|x| = sigma sqrt(2 / pi).
double expected_tv(const std::map<int32_t, double>& exact, int n) {
  double s = 0;
  for (const auto& [t, p] : exact) s += std::sqrt(2 * p * (1 - p) / (M_PI * n));
  return s / 2;
}

double tv(const std::map<int32_t, double>& exact, const std::map<int32_t, int>& counts, int n) {
  double d = 0;
  for (const auto& [t, p] : exact) {
    auto it = counts.find(t);
    d += std::abs(p - (it == counts.end() ? 0 : it->second) / static_cast<double>(n));
  }
  for (const auto& [t, c] : counts)
    if (!exact.count(t)) d += c / static_cast<double>(n);
  return d / 2;
}

// kN seeded requests of three tokens, without guesses and with speculative sampling; the
// three positions' frequencies against the exact distribution.
void expect_target_distribution(const std::string& draft_name, const std::vector<int32_t>& allowed,
                                int top_k, double min_kept) {
  auto target = load("tiny-llama");
  const std::vector<int32_t> prompt = {1, 17, 230, 44, 9};
  const Exact e = exact_distribution(*target, prompt, allowed, top_k);
  constexpr int kN = 3000;
  std::vector<Request> reqs;
  for (int i = 0; i < kN; ++i) {
    Request r;
    r.prompt = prompt;
    r.params.temperature = 1.0f;
    r.params.top_k = allowed.empty() ? top_k : 0;
    r.params.seed = static_cast<uint64_t>(1000 + i);
    r.params.max_tokens = 3;
    r.params.ignore_eos = true;
    r.params.allowed_token_ids = allowed;
    reqs.push_back(std::move(r));
  }
  for (int mode = 0; mode < 2; ++mode) {  // 0: no guesses at all, 1: speculative sampling
    EngineOptions o = rejection_options(load(draft_name), 2);
    if (mode == 0) {
      o.draft_model = nullptr;
      o.num_speculative_tokens = 0;
    }
    LLM llm(target, nullptr, o);
    const auto outs = llm.generate(reqs);
    std::map<int32_t, int> c1, c2, c3;
    for (const auto& out : outs) {
      ASSERT_EQ(out.token_ids.size(), 3u);
      ++c1[out.token_ids[0]];
      ++c2[out.token_ids[1]];
      ++c3[out.token_ids[2]];
    }
    const double d1 = tv(e.first, c1, kN), d2 = tv(e.second, c2, kN), d3 = tv(e.third, c3, kN);
    const double kept = mode ? static_cast<double>(llm.stats().accepted_tokens) /
                                   static_cast<double>(llm.stats().draft_tokens)
                             : 0.0;
    std::printf("draft %s, %s: total variation from the exact distribution %.3f / %.3f / %.3f"
                " (noise alone: %.3f / %.3f / %.3f); %lld guesses, %.2f kept\n",
                draft_name.c_str(), mode ? "speculative sampling" : "no guesses", d1, d2, d3,
                expected_tv(e.first, kN), expected_tv(e.second, kN), expected_tv(e.third, kN),
                static_cast<long long>(llm.stats().draft_tokens), kept);
    // Within twice the distance sampling noise alone gives (0.01-0.04 here).
    EXPECT_LT(d1, 2 * expected_tv(e.first, kN) + 0.01) << draft_name;
    EXPECT_LT(d2, 2 * expected_tv(e.second, kN) + 0.01) << draft_name;
    EXPECT_LT(d3, 2 * expected_tv(e.third, kN) + 0.01) << draft_name;
    if (mode == 1) {
      EXPECT_GE(llm.stats().draft_tokens, kN);
      EXPECT_GE(kept, min_kept) << draft_name;
    }
  }
}

TEST(SpeculativeSampling, TokensFollowTheTargetsDistribution) {
  // An unrelated draft, and a mask it does not know (the target samples among six tokens, the
  // draft guesses from all): nearly every guess falls and the residual max(0, p - q) decides.
  expect_target_distribution("tiny-qwen2", {7, 42, 99, 130, 300, 411}, 0, 0.0);
  // A draft close to the target (its Q8_0 copy), both among their top 6: most guesses stand.
  expect_target_distribution("tiny-llama-q8_0.gguf", {}, 6, 0.6);
  // A coarser copy (Q4_0): q differs from p, so keeping guesses too often would show.
  expect_target_distribution("tiny-llama-q4_0.gguf", {}, 6, 0.3);
}

}  // namespace
}  // namespace jinx

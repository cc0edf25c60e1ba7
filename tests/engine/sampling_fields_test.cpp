// vLLM's extra sampling fields through the engine: min_tokens, allowed_token_ids, bad_words and
// include_stop_str_in_output, each against what the plain single-sequence path computes.
#include <algorithm>
#include <limits>
#include <vector>

#include <gtest/gtest.h>

#include "core/check.h"
#include "engine/llm.h"
#include "tokenizer/tokenizer.h"

namespace jinx {
namespace {

const std::string kModels = std::string(JINX_FIXTURES) + "/models/";

// Greedy tokens of the single-sequence path with only `allowed` tokens (all when empty).
std::vector<int32_t> greedy_alone(const Model& m, const std::vector<int32_t>& prompt, int n,
                                  const std::vector<int32_t>& allowed) {
  ThreadPool pool(2);
  KvCache cache = m.new_cache(static_cast<int64_t>(prompt.size()) + n);
  std::vector<float> logits(m.config().vocab_size);
  m.forward(prompt, cache, logits.data(), false, pool);
  std::vector<int32_t> out;
  for (int i = 0; i < n; ++i) {
    int32_t best = -1;
    for (int32_t t = 0; t < static_cast<int32_t>(logits.size()); ++t) {
      if (!allowed.empty() && std::find(allowed.begin(), allowed.end(), t) == allowed.end()) continue;
      if (best < 0 || logits[t] > logits[best]) best = t;
    }
    out.push_back(best);
    m.forward(std::span<const int32_t>(&best, 1), cache, logits.data(), false, pool);
  }
  return out;
}

Request greedy(std::vector<int32_t> prompt, int max_tokens) {
  Request r;
  r.prompt = std::move(prompt);
  r.params.temperature = 0;
  r.params.max_tokens = max_tokens;
  return r;
}

TEST(SamplingFields, MinTokensHoldsBackStopTokens) {
  std::shared_ptr<const Model> model = Model::load(kModels + "tiny-llama");
  EngineOptions o;
  o.threads = 2;
  o.kv_dtype = DType::F32;
  LLM llm(model, nullptr, o);
  const std::vector<int32_t> prompt = {1, 5, 9, 33, 100};
  const int32_t first = llm.generate({greedy(prompt, 1)})[0].token_ids.at(0);
  Request stop = greedy(prompt, 8);
  stop.params.stop_token_ids = {first};
  EXPECT_EQ(llm.generate({stop})[0].token_ids, std::vector<int32_t>{first});  // ends at once
  Request held = stop;
  held.params.min_tokens = 3;
  const RequestOutput out = llm.generate({held})[0];
  ASSERT_GE(out.token_ids.size(), 3u);
  for (size_t i = 0; i < 3; ++i) EXPECT_NE(out.token_ids[i], first) << i;
  // The first three are the greedy tokens with `first` banned, and an allowed `first` after
  // them ends the request there.
  std::vector<int32_t> others;
  for (int32_t t = 0; t < model->config().vocab_size; ++t)
    if (t != first) others.push_back(t);
  const auto want = greedy_alone(*model, prompt, 3, others);
  EXPECT_EQ(std::vector<int32_t>(out.token_ids.begin(), out.token_ids.begin() + 3), want);
  if (out.token_ids.size() < 8) {
    EXPECT_EQ(out.token_ids.back(), first);
  }
  // min_tokens above max_tokens is refused.
  Request bad = greedy(prompt, 2);
  bad.params.min_tokens = 3;
  EXPECT_THROW(llm.generate({bad}), Error);
}

// vLLM's bad_words (as token sequences): a sequence's last token is masked where the output
// ends with the rest of it; checked against greedy decoding with that rule written out here.
TEST(SamplingFields, BadWordsAreNeverWritten) {
  std::shared_ptr<const Model> model = Model::load(kModels + "tiny-llama");
  EngineOptions o;
  o.threads = 2;
  o.kv_dtype = DType::F32;
  LLM llm(model, nullptr, o);
  const std::vector<int32_t> prompt = {1, 7, 19, 200, 44};
  Request plain = greedy(prompt, 12);
  plain.params.ignore_eos = true;
  const std::vector<int32_t> free_run = llm.generate({plain})[0].token_ids;
  ASSERT_EQ(free_run.size(), 12u);
  const std::vector<std::vector<int32_t>> bad = {{free_run[3], free_run[4]}, {free_run[7]}};
  // Reference: greedy with the rule applied by hand.
  ThreadPool pool(2);
  KvCache cache = model->new_cache(static_cast<int64_t>(prompt.size()) + 12);
  std::vector<float> logits(model->config().vocab_size);
  model->forward(prompt, cache, logits.data(), false, pool);
  std::vector<int32_t> want;
  for (int i = 0; i < 12; ++i) {
    int32_t best = -1;
    for (int32_t t = 0; t < static_cast<int32_t>(logits.size()); ++t) {
      bool banned = false;
      for (const auto& w : bad) {
        const bool tail = w.size() == 1 || (!want.empty() && want.back() == w[0]);
        banned = banned || (tail && t == w.back());
      }
      if (!banned && (best < 0 || logits[t] > logits[best])) best = t;
    }
    want.push_back(best);
    model->forward(std::span<const int32_t>(&best, 1), cache, logits.data(), false, pool);
  }
  Request r = plain;
  r.params.bad_words_ids = bad;
  const auto outs = llm.generate({r, plain});  // batched beside a request without them
  EXPECT_EQ(outs[0].token_ids, want);
  EXPECT_EQ(outs[1].token_ids, free_run);
  EXPECT_NE(outs[0].token_ids, free_run);
  for (size_t i = 0; i < want.size(); ++i) {
    EXPECT_NE(outs[0].token_ids[i], free_run[7]);
    if (i > 0 && outs[0].token_ids[i - 1] == free_run[3]) EXPECT_NE(outs[0].token_ids[i], free_run[4]);
  }
  Request invalid = plain;
  invalid.params.bad_words_ids = {{}};
  EXPECT_THROW(llm.generate({invalid}), Error);
  invalid.params.bad_words_ids = {{model->config().vocab_size}};
  EXPECT_THROW(llm.generate({invalid}), Error);
}

TEST(SamplingFields, AllowedTokenIdsRestrictTheChoice) {
  std::shared_ptr<const Model> model = Model::load(kModels + "tiny-qwen2");
  EngineOptions o;
  o.threads = 2;
  o.kv_dtype = DType::F32;
  LLM llm(model, nullptr, o);
  const std::vector<int32_t> prompt = {3, 17, 250, 9};
  const std::vector<int32_t> allowed = {7, 42, 99, 300};
  Request r = greedy(prompt, 10);
  r.params.ignore_eos = true;
  r.params.allowed_token_ids = allowed;
  Request sampled = r;  // sampled: every token still one of them
  sampled.params.temperature = 1.0f;
  sampled.params.seed = 3;
  const auto outs = llm.generate({r, sampled});
  EXPECT_EQ(outs[0].token_ids, greedy_alone(*model, prompt, 10, allowed));
  for (int32_t t : outs[1].token_ids)
    EXPECT_NE(std::find(allowed.begin(), allowed.end(), t), allowed.end()) << t;
  Request bad = greedy(prompt, 2);
  bad.params.allowed_token_ids = {model->config().vocab_size};
  EXPECT_THROW(llm.generate({bad}), Error);
}

TEST(SamplingFields, StopStringsCountFromMinTokensOn) {
  StopStringMatcher m({"ab"});
  m.set_active(false);
  EXPECT_EQ(m.push("xxab").text, "xxab");  // not searched yet
  m.set_active(true);
  EXPECT_EQ(m.push("cda").text, "cd");  // "a" held: it may start "ab"
  const auto out = m.push("b tail");
  EXPECT_TRUE(out.stopped);
  EXPECT_EQ(out.text, "");
}

TEST(SamplingFields, StopStringKeptWhenAsked) {
  StopStringMatcher cut({"END", "EN"}), kept({"END", "EN"}, true);
  EXPECT_EQ(cut.push("abc E").text, "abc ");
  const auto a = cut.push("ND more");
  EXPECT_TRUE(a.stopped);
  EXPECT_EQ(a.text, "");
  EXPECT_EQ(kept.push("abc E").text, "abc ");
  const auto b = kept.push("ND more");
  EXPECT_TRUE(b.stopped);
  EXPECT_EQ(b.text, "EN");  // the earliest stop, the shortest at that place
}

}  // namespace
}  // namespace jinx

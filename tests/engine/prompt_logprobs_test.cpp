// Prompt logprobs (SamplingParams::prompt_logprobs, vLLM's): every prompt token's logprob given
// the ones before it, against the log-softmax of transformers' logits on the same prompt
// (tests/fixtures/models/*.ref.json), whatever the chunking, the batch or the prefix cache.
#include <algorithm>
#include <cmath>
#include <fstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "engine/llm.h"

namespace jinx {
namespace {

const std::string kModels = std::string(JINX_FIXTURES) + "/models/";

struct Reference {
  std::vector<int32_t> ids;
  std::vector<std::vector<float>> logits;  // [position][vocab], transformers
};

Reference load_ref(const std::string& name) {
  nlohmann::json j;
  std::ifstream(kModels + name + ".ref.json") >> j;
  return {j["input_ids"].get<std::vector<int32_t>>(),
          j["logits"].get<std::vector<std::vector<float>>>()};
}

double ref_logprob(const std::vector<float>& row, int32_t token) {
  double m = *std::max_element(row.begin(), row.end()), s = 0;
  for (float x : row) s += std::exp(x - m);
  return row[token] - m - std::log(s);
}

int32_t ref_rank(const std::vector<float>& row, int32_t token) {
  return 1 + static_cast<int32_t>(std::count_if(row.begin(), row.end(),
                                                [&](float x) { return x > row[token]; }));
}

void expect_matches_reference(const RequestOutput& out, const Reference& ref, int n_top,
                              const std::string& what) {
  ASSERT_EQ(out.prompt_logprobs.size(), ref.ids.size() - 1) << what;
  for (size_t i = 0; i + 1 < ref.ids.size(); ++i) {
    const PromptLogprob& lp = out.prompt_logprobs[i];
    const std::vector<float>& row = ref.logits[i];
    EXPECT_EQ(lp.token, ref.ids[i + 1]) << what << " position " << i;
    EXPECT_NEAR(lp.logprob, ref_logprob(row, ref.ids[i + 1]), 2e-4) << what << " position " << i;
    EXPECT_EQ(lp.rank, ref_rank(row, ref.ids[i + 1])) << what << " position " << i;
    ASSERT_EQ(lp.top.size(), static_cast<size_t>(n_top)) << what;
    std::vector<int32_t> order(row.size());
    for (size_t t = 0; t < row.size(); ++t) order[t] = static_cast<int32_t>(t);
    std::partial_sort(order.begin(), order.begin() + n_top, order.end(),
                      [&](int32_t a, int32_t b) { return row[a] > row[b]; });
    for (int k = 0; k < n_top; ++k) {
      EXPECT_EQ(lp.top[k].id, order[k]) << what << " position " << i << " top " << k;
      EXPECT_NEAR(lp.top[k].logprob, ref_logprob(row, order[k]), 2e-4) << what;
    }
  }
}

Request with_prompt_logprobs(const std::vector<int32_t>& ids, int n_top) {
  Request r;
  r.prompt = ids;
  r.params.temperature = 0;
  r.params.max_tokens = 3;
  r.params.prompt_logprobs = n_top;
  return r;
}

TEST(PromptLogprobs, MatchTransformersWholeChunkedAndBatched) {
  for (const char* name : {"tiny-llama", "tiny-qwen2"}) {
    const Reference ref = load_ref(name);
    std::shared_ptr<const Model> model = Model::load(kModels + name);
    for (int32_t budget : {512, 4}) {  // the prompt in one step, then in chunks of 4
      EngineOptions o;
      o.threads = 2;
      o.kv_dtype = DType::F32;
      o.max_num_seqs = 4;
      o.max_num_batched_tokens = budget;
      LLM llm(model, nullptr, o);
      const std::string what = std::string(name) + " budget " + std::to_string(budget);
      // Alone, then beside a request without them (which is unchanged by the company), after
      // that request put the prompt's blocks in the prefix cache.
      const auto alone = llm.generate({with_prompt_logprobs(ref.ids, 3)});
      expect_matches_reference(alone[0], ref, 3, what + " alone");
      Request plain;
      plain.prompt = ref.ids;
      plain.params.temperature = 0;
      plain.params.max_tokens = 3;
      const auto plain_alone = llm.generate({plain});
      EXPECT_TRUE(plain_alone[0].prompt_logprobs.empty());
      const auto both = llm.generate({plain, with_prompt_logprobs(ref.ids, 2)});
      EXPECT_EQ(both[0].token_ids, plain_alone[0].token_ids) << what;
      expect_matches_reference(both[1], ref, 2, what + " batched, prefix cached");
      EXPECT_EQ(both[1].n_cached_prompt, 0) << what;  // computed whole, not from the cache
      EXPECT_EQ(both[1].token_ids, alone[0].token_ids) << what;
    }
  }
}

TEST(PromptLogprobs, StreamedOnceWithTheFirstToken) {
  std::shared_ptr<const Model> model = Model::load(kModels + "tiny-llama");
  EngineOptions o;
  o.threads = 2;
  o.max_num_batched_tokens = 64;  // the prompt in 4 chunks
  LLM llm(model, nullptr, o);
  std::vector<int32_t> prompt;
  for (int i = 0; i < 240; ++i) prompt.push_back(3 + (i * 37) % 400);
  Request r = with_prompt_logprobs(prompt, 0);
  int updates_with_prompt = 0;
  size_t streamed = 0, tokens_then = 0;
  r.on_update = [&](const StreamUpdate& u) {
    if (!u.prompt_logprobs.empty()) {
      ++updates_with_prompt;
      streamed = u.prompt_logprobs.size();
      tokens_then = static_cast<size_t>(u.n_generated);
    }
  };
  const auto out = llm.generate({std::move(r)});
  ASSERT_EQ(out[0].prompt_logprobs.size(), prompt.size() - 1);
  EXPECT_EQ(updates_with_prompt, 1);
  EXPECT_EQ(streamed, prompt.size() - 1);
  EXPECT_EQ(tokens_then, 1u);
  for (size_t i = 0; i + 1 < prompt.size(); ++i) {
    EXPECT_EQ(out[0].prompt_logprobs[i].token, prompt[i + 1]);
    EXPECT_LE(out[0].prompt_logprobs[i].logprob, 0.0f);
    EXPECT_GE(out[0].prompt_logprobs[i].rank, 1);
    EXPECT_TRUE(out[0].prompt_logprobs[i].top.empty());
  }
}

TEST(PromptLogprobs, Validated) {
  SamplingParams p;
  p.prompt_logprobs = kMaxLogprobs + 1;
  EXPECT_NE(p.validate(100).find("prompt_logprobs"), std::string::npos);
}

}  // namespace
}  // namespace jinx

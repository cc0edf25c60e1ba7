// Shared by the speculative decoding tests (prompt lookup and draft model): prompts worth
// guessing, and the check that guesses changed no output.
#pragma once

#include <gtest/gtest.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "engine/llm.h"

namespace jinx::test {

// Six prompts: five repeat a run of tokens `reps` or `reps + 1` times (so prompt lookup has
// something to find), one does not; a tiny random model also tends to loop, which guesses
// catch.
inline std::vector<Request> speculative_requests(const SamplingParams& sp, int reps) {
  std::vector<Request> reqs;
  for (int r = 0; r < 6; ++r) {
    std::vector<int32_t> p;
    for (int rep = 0; rep < reps + r % 2; ++rep)
      for (int i = 0; i < 5 + r; ++i) p.push_back(20 + 7 * r + i);
    if (r == 5) p = {3, 141, 59, 265, 35, 89, 79};
    Request q;
    q.prompt = p;
    q.params = sp;
    reqs.push_back(std::move(q));
  }
  return reqs;
}

// The speculative_requests(sp, reps) run on `model` (small batches, a kv_tokens pool) without
// guesses ([0]) and then with `speculative` applied to the engine options ([1]).
struct SpeculativeRuns {
  std::vector<RequestOutput> out[2];
  EngineStats stats[2];
};
inline SpeculativeRuns run_with_and_without(
    const std::shared_ptr<const Model>& model, const SamplingParams& sp, int reps,
    int64_t kv_tokens, const std::function<void(EngineOptions*)>& speculative) {
  SpeculativeRuns runs;
  for (int spec = 0; spec < 2; ++spec) {
    EngineOptions o;
    o.threads = 2;
    o.max_num_seqs = 4;
    o.max_num_batched_tokens = 32;
    o.kv_cache_tokens = kv_tokens;
    if (spec) speculative(&o);
    LLM llm(model, nullptr, o);
    runs.out[spec] = llm.generate(speculative_requests(sp, reps));
    runs.stats[spec] = llm.stats();
  }
  return runs;
}

// The same tokens, finish reasons and logprobs, request by request.
inline void expect_same_tokens(const std::vector<RequestOutput>& want,
                               const std::vector<RequestOutput>& got, const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (size_t i = 0; i < want.size(); ++i) {
    EXPECT_EQ(got[i].token_ids, want[i].token_ids) << what << " request " << i;
    EXPECT_EQ(got[i].finish_reason, want[i].finish_reason) << what << " request " << i;
    EXPECT_EQ(got[i].logprobs.size(), want[i].logprobs.size()) << what << " request " << i;
    for (size_t t = 0; t < want[i].logprobs.size() && t < got[i].logprobs.size(); ++t)
      EXPECT_EQ(got[i].logprobs[t].logprob, want[i].logprobs[t].logprob) << what << " " << i;
  }
}

}  // namespace jinx::test

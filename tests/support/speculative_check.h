// Shared by the speculative decoding tests (prompt lookup and draft model): prompts worth
// guessing, and the check that guesses changed no output.
#pragma once

#include <gtest/gtest.h>

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

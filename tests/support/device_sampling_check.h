// One check of sampling where the logits are (kPickSample rows), shared by the engine tests (a
// CPU stand-in executor that draws with the GPU's code) and the CUDA tests (the GPU itself):
// plain seeded requests draw the same tokens alone and batched next to rows the host samples
// (logprobs, a repetition penalty) and greedy rows, and again on a second engine; another seed
// or greedy gives other tokens.
#pragma once

#include <gtest/gtest.h>

#include <functional>
#include <memory>

#include "engine/llm.h"

namespace jinx::test_support {

inline Request sampled_request(uint64_t seed, int first) {
  Request r;
  for (int t = 0; t < 12; ++t) r.prompt.push_back(first + 7 * t);
  r.params.temperature = 1.0f;
  r.params.top_k = 50;
  r.params.top_p = 0.9f;
  r.params.min_p = 0.01f;
  r.params.max_tokens = 16;
  r.params.ignore_eos = true;
  r.params.seed = seed;
  return r;
}

// options: the engine to test (8 sequences at most). sampled_rows, when not null, counts the
// rows the executor drew; it must see exactly the plain requests' tokens.
inline void check_seeded_device_sampling(std::shared_ptr<const Model> model,
                                         const EngineOptions& options, int* sampled_rows) {
  LLM llm(model, nullptr, options);
  if (sampled_rows) *sampled_rows = 0;
  const auto alone = llm.generate({sampled_request(7, 3)});
  if (sampled_rows) {
    EXPECT_EQ(*sampled_rows, 16);  // every token of the plain request was drawn there
  }
  std::vector<Request> batch;
  for (int i = 0; i < 6; ++i) {
    Request r = sampled_request(100 + i, 5 + i);
    if (i == 1) r.params.logprobs = 2;
    if (i == 2) r.params.repetition_penalty = 1.3f;
    if (i == 3) r.params.temperature = 0.0f;
    batch.push_back(r);
  }
  batch.insert(batch.begin() + 2, sampled_request(7, 3));
  if (sampled_rows) *sampled_rows = 0;
  const auto together = llm.generate(batch);
  EXPECT_EQ(together[2].token_ids, alone[0].token_ids);
  if (sampled_rows) {
    EXPECT_EQ(*sampled_rows, 4 * 16);  // the plain requests; not logprobs, penalty, greedy rows
  }
  for (const auto& out : together) {
    EXPECT_EQ(out.finish_reason, "length");
    for (int32_t t : out.token_ids) EXPECT_TRUE(t >= 0 && t < model->config().vocab_size);
  }
  LLM llm2(model, nullptr, options);
  EXPECT_EQ(llm2.generate({sampled_request(7, 3)})[0].token_ids, alone[0].token_ids);
  EXPECT_NE(llm2.generate({sampled_request(8, 3)})[0].token_ids, alone[0].token_ids);
  Request greedy = sampled_request(7, 3);
  greedy.params.temperature = 0.0f;
  EXPECT_NE(llm2.generate({greedy})[0].token_ids, alone[0].token_ids);
}

}  // namespace jinx::test_support

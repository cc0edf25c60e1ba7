// The engine's side of sampling on a device, run on the CPU: an executor wrapper stands in for a
// GPU that samples (Executor::samples_on_device), drawing each kPickSample row with the code the
// GPU runs (backend/sample_select.h, executed by HostBlock) and poisoning that row's logits so
// that the engine cannot have sampled it on the host. The CUDA tests check the device side.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "backend/sample_select.h"
#include "core/check.h"
#include "engine/llm.h"

namespace jinx {
namespace {

const std::string kModels = std::string(JINX_FIXTURES) + "/models/";

class SamplingDevice final : public Executor {
 public:
  SamplingDevice(std::unique_ptr<Executor> inner, int64_t vocab, int* sampled_rows,
                 bool nan_rows)
      : inner_(std::move(inner)), vocab_(vocab), sampled_rows_(sampled_rows), nan_rows_(nan_rows) {}

  void forward_batch(const ForwardBatch& b, float* logits, int32_t* tokens) override {
    ForwardBatch fb = b;
    std::vector<uint8_t> pick(b.pick.begin(), b.pick.end());
    for (uint8_t& p : pick)
      if (p == sampling::kPickSample) p = sampling::kPickLogits;  // the CPU computes logits
    fb.pick = pick;
    inner_->forward_batch(fb, logits, tokens);
    for (size_t k = 0; k < b.pick.size(); ++k) {
      if (b.pick[k] != sampling::kPickSample) continue;
      JINX_CHECK(b.sampling.size() == b.pick.size() && tokens != nullptr, "bad sampled batch");
      float* row = logits + static_cast<int64_t>(k) * vocab_;
      if (nan_rows_) row[vocab_ / 2] = std::numeric_limits<float>::quiet_NaN();
      sampling::HostBlock blk;
      sampling::Shared s{};
      sampling::sample_row(blk, s, row, static_cast<int32_t>(vocab_), b.sampling[k], &tokens[k]);
      std::fill(row, row + vocab_, std::numeric_limits<float>::quiet_NaN());
      ++*sampled_rows_;
    }
  }
  bool samples_on_device() const override { return true; }
  int64_t n_kv_blocks() const override { return inner_->n_kv_blocks(); }
  size_t kv_bytes() const override { return inner_->kv_bytes(); }
  std::string describe() const override { return "sampling stand-in over " + inner_->describe(); }

 private:
  std::unique_ptr<Executor> inner_;
  int64_t vocab_;
  int* sampled_rows_;
  bool nan_rows_;
};

Request sampled_request(uint64_t seed, int first) {
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

EngineOptions options(std::shared_ptr<const Model> model, int* sampled_rows, bool nan_rows) {
  EngineOptions o;
  o.threads = 2;
  o.max_num_seqs = 8;
  o.kv_cache_tokens = 4096;
  const int64_t vocab = model->config().vocab_size;
  o.wrap_executor = [=](std::unique_ptr<Executor> inner) -> std::unique_ptr<Executor> {
    return std::make_unique<SamplingDevice>(std::move(inner), vocab, sampled_rows, nan_rows);
  };
  return o;
}

// Plain sampled rows go to the device with their own generator's uniform: the same seed gives
// the same tokens alone and batched (next to greedy rows, rows with logprobs and penalties,
// which the host samples), and on a second engine; a different seed or greedy differs.
TEST(DeviceSampling, SeededRowsRepeatAloneAndBatched) {
  std::shared_ptr<const Model> model = Model::load(kModels + "tiny-qwen2");
  int sampled = 0;
  LLM llm(model, nullptr, options(model, &sampled, false));
  const auto alone = llm.generate({sampled_request(7, 3)});
  EXPECT_EQ(sampled, 16);  // every token of the plain request was drawn "on the device"
  std::vector<Request> batch;
  for (int i = 0; i < 6; ++i) {
    Request r = sampled_request(100 + i, 5 + i);
    if (i == 1) r.params.logprobs = 2;
    if (i == 2) r.params.repetition_penalty = 1.3f;
    if (i == 3) r.params.temperature = 0.0f;
    batch.push_back(r);
  }
  batch.insert(batch.begin() + 2, sampled_request(7, 3));
  sampled = 0;
  const auto together = llm.generate(batch);
  EXPECT_EQ(together[2].token_ids, alone[0].token_ids);
  EXPECT_EQ(sampled, 4 * 16);  // the four plain requests; not logprobs, penalty or greedy rows
  EXPECT_EQ(together[2].token_ids.size(), 16u);
  int sampled2 = 0;
  LLM llm2(model, nullptr, options(model, &sampled2, false));
  EXPECT_EQ(llm2.generate({sampled_request(7, 3)})[0].token_ids, alone[0].token_ids);
  EXPECT_NE(llm2.generate({sampled_request(8, 3)})[0].token_ids, alone[0].token_ids);
  Request greedy = sampled_request(7, 3);
  greedy.params.temperature = 0.0f;
  EXPECT_NE(llm2.generate({greedy})[0].token_ids, alone[0].token_ids);
  for (const auto& out : together) EXPECT_EQ(out.finish_reason, "length");
}

// A device row whose logits hold a NaN comes back as -1: the engine fails the step with the
// host sampler's kind of error instead of emitting a token.
TEST(DeviceSampling, NanLogitsOnTheDeviceAreAnError) {
  std::shared_ptr<const Model> model = Model::load(kModels + "tiny-qwen2");
  int sampled = 0;
  LLM llm(model, nullptr, options(model, &sampled, true));
  try {
    llm.generate({sampled_request(1, 3)});
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("NaN"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace jinx

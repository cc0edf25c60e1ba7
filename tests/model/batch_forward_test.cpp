// Model::forward_batch over a paged KV cache: several sequences in one flat batch, prefill in
// chunks mixed with single-token steps, must give each position the logits of the reference
// (transformers fp32) — whatever else is in the batch and however the prompt is split.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>

#include <nlohmann/json.hpp>

#include "../support/batch_step.h"
#include "model/model.h"

namespace jinx {
namespace {

const std::string kModels = std::string(JINX_FIXTURES) + "/models/";

using test::Seq;

// Runs one step: seq i gets tokens ids[n_cached, n_cached + take[i]). Returns logits of every new
// row, [total new rows, vocab], rows in batch order.
std::vector<float> step(const Model& m, PagedKvStorage& kv, std::vector<Seq>& seqs,
                        const std::vector<int32_t>& ids, const std::vector<int>& take,
                        ThreadPool& pool) {
  test::StepBatch b = test::make_step(seqs, ids, take, kv.block_size());
  std::vector<float> logits(b.rows.size() * m.config().vocab_size);
  m.forward_batch(b.fb, kv, logits.data(), pool);
  return logits;
}

// Largest |logit - reference| allowed, as a share of the largest |reference logit|. fp32 KV:
// summation order only. The others round K/V: f16 to 11 bits of mantissa, bf16 to 8, int8 to
// half a step of amax / 127 per token and head, fp8 e4m3 to 4 bits (measured on these random
// tiny models: f16 0.04%, bf16 0.3%, int8 ~1%, fp8 ~4.5%).
double relative_tolerance(DType kv) {
  switch (kv) {
    case DType::F32:
      return 2e-5;
    case DType::F16:
      return 1e-3;
    case DType::BF16:
      return 5e-3;
    case DType::I8:
      return 2e-2;
    default:
      return 8e-2;
  }
}

TEST(ForwardBatch, MixedChunksAndSequencesMatchReference) {
  for (const char* name :
       {"tiny-llama", "tiny-qwen2", "tiny-qwen3", "tiny-qwen3-moe", "tiny-qwen2-moe",
        "tiny-gpt-oss"}) {
    std::ifstream in(kModels + name + ".ref.json");
    auto ref = nlohmann::json::parse(in);
    auto ids = ref["input_ids"].get<std::vector<int32_t>>();  // 12 tokens
    auto model = Model::load(kModels + name);
    const int64_t V = model->config().vocab_size;
    // MoE models amplify a KV cache's rounding where the router's k-th and (k+1)-th scores are
    // close (an expert swapped: 6% of the logits' range with int8 KV on tiny-qwen3-moe), so
    // they are held to the float caches only.
    const bool moe = model->config().n_experts > 0;
    for (DType dt : {DType::F32, DType::F16, DType::BF16, DType::I8, DType::F8_E4M3}) {
      if (moe && (dt == DType::I8 || dt == DType::F8_E4M3)) continue;
      PagedKvStorage kv(model->config(), 16, 4, dt);
      ThreadPool pool(2);
      // Three copies of the prompt with scattered blocks, fed in different splits.
      std::vector<Seq> seqs = {{{3, 0, 9}, 0}, {{1, 7, 12}, 0}, {{15, 2, 5}, 0}};
      std::vector<std::vector<int>> plan = {{12, 5, 1}, {0, 7, 1}, {0, 0, 3}, {0, 0, 7}};
      std::vector<int> seen(3, 0);
      double max_err = 0, max_ref = 0;
      for (const auto& take : plan) {
        auto logits = step(*model, kv, seqs, ids, take, pool);
        size_t row = 0;
        for (int s = 0; s < 3; ++s)
          for (int i = 0; i < take[s]; ++i, ++row) {
            auto r = ref["logits"][seen[s] + i].get<std::vector<float>>();
            for (int64_t j = 0; j < V; ++j) {
              max_err = std::max(max_err, std::fabs(double(logits[row * V + j]) - r[j]));
              max_ref = std::max(max_ref, std::fabs(double(r[j])));
            }
          }
        for (int s = 0; s < 3; ++s) seen[s] += take[s];
      }
      ASSERT_EQ(seen, (std::vector<int>{12, 12, 12}));
      EXPECT_LT(max_err, relative_tolerance(dt) * max_ref) << name << " " << jinx::name(dt);
      std::printf("%s KV %s: max |logit diff| vs transformers %.3g (%.3g%% of max |logit|)\n", name,
                  std::string(jinx::name(dt)).c_str(), max_err, 100 * max_err / max_ref);
    }
  }
}

}  // namespace
}  // namespace jinx
